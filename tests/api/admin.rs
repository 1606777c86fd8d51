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
