//! Orion-LD's operator surface: `/version`, `/ngsi-ld/ex/v1/version`, `/openapi.json`.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn version_routes() {
    let app = spawn_app().await;
    let r = app.get("/version").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["orionld version"].is_string());
    assert!(v["uptime"].as_str().unwrap().contains(" d, "));
    let v: Value = app.get("/ngsi-ld/ex/v1/version").await.json().await.unwrap();
    assert!(v["Core Context"].as_str().unwrap().starts_with("https://uri.etsi.org/"));
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}

/// `Prefer: ngsi-ld=1.0` (in any of its spellings) is answered with `Preference-Applied`;
/// other preferences are not.
#[tokio::test]
async fn prefer_ngsi_ld_version_is_applied() {
    let app = crate::helpers::spawn_app().await;
    for p in ["ngsi-ld=1.0", "NGSI-LD=1.0", "ngsi-ld=\"1.0\"", "ngsi-ld=1.0;q=0.1", "respond-async, ngsi-ld=1.0"] {
        let r = app.client.get(app.url("/ngsi-ld/v1/types")).header("Prefer", p).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["preference-applied"], "ngsi-ld=1.0", "{p}");
    }
    let r = app.client.get(app.url("/ngsi-ld/v1/types")).header("Prefer", "respond-async").send().await.unwrap();
    assert!(r.headers().get("preference-applied").is_none());
}
