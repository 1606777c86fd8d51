//! Tenants: `NGSILD-Tenant` and `Fiware-Service` (GS CIM 009 §4.14, Orion-LD's rules).

use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn tenants_are_isolated_and_created_on_first_write() {
    let app = spawn_app().await;
    let body = json!({"id": "urn:t:1", "type": "T"});
    let r =
        app.client.get(app.url("/ngsi-ld/v1/entities/urn:t:1")).header("NGSILD-Tenant", "acme").send().await.unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("NGSILD-Tenant", "acme")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["ngsild-tenant"], "acme");
    // Fiware-Service names the same tenant.
    let r =
        app.client.get(app.url("/ngsi-ld/v1/entities/urn:t:1")).header("Fiware-Service", "acme").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The default tenant does not see it.
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:t:1").await.status(), 404);
    // Conflicting headers.
    let r = app
        .client
        .get(app.url("/ngsi-ld/v1/entities/urn:t:1"))
        .header("NGSILD-Tenant", "acme")
        .header("Fiware-Service", "other")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    let r = app
        .client
        .get(app.url("/ngsi-ld/v1/entities/urn:t:1"))
        .header("NGSILD-Tenant", "bad tenant!")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    // A non-creating write to an unknown tenant does not create it.
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities/urn:t:1/attrs"))
        .header("NGSILD-Tenant", "ghost")
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
    let tenants: Value = app.get("/ngsi-ld/ex/v1/tenants").await.json().await.unwrap();
    assert_eq!(tenants, json!(["acme"]));
}
