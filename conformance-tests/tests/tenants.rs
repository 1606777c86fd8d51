//! Multi-tenancy (§4.14, §6.3.14): the `NGSILD-Tenant` header, the FIWARE `Fiware-Service`
//! header Orion-LD treats as its equivalent, tenant creation on first write, isolation, and
//! the NonexistentTenant error (§5.5.2).

use conformance_tests::*;

fn thing(id: &str, v: i64) -> Value {
    json!({"id": id, "type": "Thing", "v": {"type": "Property", "value": v}})
}

/// §4.14, §6.3.14: a create with an unknown tenant creates the tenant (201) and echoes it in
/// `NGSILD-Tenant`; the entity is then readable in that tenant.
#[tokio::test]
async fn tenant_is_created_on_first_create() {
    let b = Broker::get();
    let t = unique_tenant();
    let id = unique_id("Thing");
    let r = b.create_entity(Some(&t), &thing(&id, 1)).await;
    r.expect(201);
    assert_eq!(r.header("ngsild-tenant").map(str::to_ascii_lowercase), Some(t.clone()), "tenant echoed");
    assert_eq!(b.must_retrieve(Some(&t), &id, "").await["v"]["value"], json!(1));
}

/// §4.14: a batch create (or upsert) also creates an unknown tenant.
#[tokio::test]
async fn batch_create_and_upsert_create_the_tenant() {
    let b = Broker::get();
    for op in ["create", "upsert"] {
        let t = unique_tenant();
        let id = unique_id("Thing");
        let r = b.json(Method::POST, &format!("{API}/entityOperations/{op}"), Some(&t), &json!([thing(&id, 2)])).await;
        r.expect(201);
        b.must_retrieve(Some(&t), &id, "").await;
    }
}

/// §4.14: tenants are isolated: an entity of one tenant is not visible in another or in the
/// default tenant, and the same id can exist in each with different content.
#[tokio::test]
async fn tenants_are_isolated() {
    let b = Broker::get();
    let (t1, t2) = (unique_tenant(), unique_tenant());
    let id = unique_id("Thing");
    b.must_create(Some(&t1), &thing(&id, 1)).await;
    b.retrieve(None, &id, "").await.expect_problem(404, "ResourceNotFound");
    b.must_create(Some(&t2), &thing(&id, 2)).await;
    assert_eq!(b.must_retrieve(Some(&t1), &id, "").await["v"]["value"], json!(1));
    assert_eq!(b.must_retrieve(Some(&t2), &id, "").await["v"]["value"], json!(2));
    let r = b.get_json(&format!("{API}/entities?type=Thing&id={}", encode(&id)), Some(&t1)).await;
    r.expect(200);
    assert_eq!(r.json().as_array().expect("array").len(), 1);
    b.delete(&entity_path(&id, ""), Some(&t1)).await.expect(204);
    assert_eq!(b.must_retrieve(Some(&t2), &id, "").await["v"]["value"], json!(2), "delete in t1 leaves t2");
}

/// §4.14, §5.5.2: reading from a tenant that does not exist is 404 NonexistentTenant.
#[tokio::test]
async fn unknown_tenant_read_is_404_nonexistent_tenant() {
    let b = Broker::get();
    let t = unique_tenant();
    b.retrieve(Some(&t), &unique_id("Thing"), "").await.expect_problem(404, "NonexistentTenant");
    b.get_json(&format!("{API}/entities?type=Thing"), Some(&t)).await.expect_problem(404, "NonexistentTenant");
}

/// §4.14: modifying operations on a tenant that does not exist are 404 NonexistentTenant
/// (they do not create it).
#[tokio::test]
async fn unknown_tenant_update_is_404_nonexistent_tenant() {
    let b = Broker::get();
    let t = unique_tenant();
    let id = unique_id("Thing");
    b.json(
        Method::PATCH,
        &format!("{API}/entities/{}/attrs", encode(&id)),
        Some(&t),
        &json!({"v": {"type": "Property", "value": 3}}),
    )
    .await
    .expect_problem(404, "NonexistentTenant");
    b.delete(&entity_path(&id, ""), Some(&t)).await.expect_problem(404, "NonexistentTenant");
    // Still not created.
    b.get_json(&format!("{API}/entities?type=Thing"), Some(&t)).await.expect_problem(404, "NonexistentTenant");
}

/// Orion-LD compatibility (§3 of the compatibility reference): `Fiware-Service` selects the
/// same tenant as `NGSILD-Tenant`.
#[tokio::test]
async fn fiware_service_is_equivalent_to_ngsild_tenant() {
    let b = Broker::get();
    let t = unique_tenant();
    let id = unique_id("Thing");
    b.must_create(Some(&t), &thing(&id, 5)).await;
    let r = b
        .send(
            b.request(Method::GET, &entity_path(&id, ""))
                .header("Fiware-Service", &t)
                .header("Accept", "application/json"),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json()["v"]["value"], json!(5));
    // And the other way round: created through Fiware-Service, read through NGSILD-Tenant.
    let t2 = unique_tenant();
    let id2 = unique_id("Thing");
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Fiware-Service", &t2)
                .header("Content-Type", "application/json")
                .body(thing(&id2, 6).to_string()),
        )
        .await;
    r.expect(201);
    assert_eq!(b.must_retrieve(Some(&t2), &id2, "").await["v"]["value"], json!(6));
}

/// Orion-LD compatibility: both tenant headers with different values is 400 BadRequestData;
/// with the same value it is accepted.
#[tokio::test]
async fn conflicting_tenant_headers_are_400() {
    let b = Broker::get();
    let (t1, t2) = (unique_tenant(), unique_tenant());
    let id = unique_id("Thing");
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("NGSILD-Tenant", &t1)
                .header("Fiware-Service", &t2)
                .header("Content-Type", "application/json")
                .body(thing(&id, 1).to_string()),
        )
        .await;
    r.expect_problem(400, "BadRequestData");
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("NGSILD-Tenant", &t1)
                .header("Fiware-Service", &t1)
                .header("Content-Type", "application/json")
                .body(thing(&id, 1).to_string()),
        )
        .await;
    r.expect(201);
}

/// §6.3.14: batch operations and attribute operations honour the tenant.
#[tokio::test]
async fn batch_and_attribute_operations_honour_the_tenant() {
    let b = Broker::get();
    let t = unique_tenant();
    let id = unique_id("Thing");
    b.must_create(Some(&t), &thing(&id, 1)).await;
    // The default tenant does not see it: batch update reports it not found.
    let r = b.json(Method::POST, &format!("{API}/entityOperations/update"), None, &json!([thing(&id, 9)])).await;
    r.expect(207);
    b.json(Method::POST, &format!("{API}/entityOperations/update"), Some(&t), &json!([thing(&id, 9)]))
        .await
        .expect(204);
    assert_eq!(b.must_retrieve(Some(&t), &id, "").await["v"]["value"], json!(9));
    b.json(
        Method::POST,
        &format!("{API}/entities/{}/attrs", encode(&id)),
        Some(&t),
        &json!({"w": {"type": "Property", "value": 1}}),
    )
    .await
    .expect(204);
    b.json(Method::POST, &format!("{API}/entityOperations/delete"), Some(&t), &json!([id])).await.expect(204);
    b.retrieve(Some(&t), &id, "").await.expect_problem(404, "ResourceNotFound");
}

/// §4.14: an invalid tenant name is 400 BadRequestData.
#[tokio::test]
async fn invalid_tenant_name_is_400() {
    let b = Broker::get();
    b.create_entity(Some("bad tenant/name"), &thing(&unique_id("Thing"), 1))
        .await
        .expect_problem(400, "BadRequestData");
}
