//! `@context` handling: Link header, inline context, remote download with cache, and the
//! `/ngsi-ld/v1/jsonldContexts` API (GS CIM 009 §5.13, §6.3.5).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{LD_CONTEXT_REL, assert_problem, spawn_app};

fn link(url: &str) -> String {
    format!("<{url}>; rel=\"{LD_CONTEXT_REL}\"; type=\"application/ld+json\"")
}

/// A one-document HTTP server counting its hits.
async fn serve_context(doc: Value) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ctx.jsonld", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            h.fetch_add(1, Ordering::SeqCst);
            let body = doc.to_string();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn link_header_context_expands_and_compacts() {
    let app = spawn_app().await;
    let (url, hits) =
        serve_context(json!({"@context": {"ex": "http://example.org/", "Car": "ex:Car", "brand": "ex:brand"}})).await;
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/json")
        .header("Link", link(&url))
        .body(json!({"id": "urn:car:1", "type": "Car", "brand": "Volvo"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Without the context the stored IRIs show.
    let plain: Value = app.get("/ngsi-ld/v1/entities/urn:car:1").await.json().await.unwrap();
    assert_eq!(plain["type"], "http://example.org/Car");
    assert_eq!(plain["http://example.org/brand"]["value"], "Volvo");
    // With it, the short terms; and the response echoes the context in a Link header.
    let r = app.client.get(app.url("/ngsi-ld/v1/entities/urn:car:1")).header("Link", link(&url)).send().await.unwrap();
    assert!(r.headers()["link"].to_str().unwrap().contains(&url));
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "Car");
    assert_eq!(e["brand"]["value"], "Volvo");
    // Queries expand the type with the same context.
    let r = app.client.get(app.url("/ngsi-ld/v1/entities?type=Car")).header("Link", link(&url)).send().await.unwrap();
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the remote context is downloaded once and cached");
}

#[tokio::test]
async fn inline_context_with_ld_json() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/ld+json")
        .body(
            json!({"id": "urn:i:1", "type": "Bike", "@context": [{"Bike": "http://example.org/Bike"},
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:i:1").await.json().await.unwrap();
    assert_eq!(e["type"], "http://example.org/Bike");
    let r = app
        .client
        .get(app.url("/ngsi-ld/v1/entities/urn:i:1"))
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    assert!(r.headers().get("link").is_none());
    let e: Value = r.json().await.unwrap();
    assert!(e["@context"].as_str().unwrap().contains("ngsi-ld-core-context"));
}

#[tokio::test]
async fn context_rules_by_content_type() {
    let app = spawn_app().await;
    // @context in a JSON body.
    let r = app.post_json("/ngsi-ld/v1/entities", &json!({"id": "urn:r:1", "type": "T", "@context": {}})).await;
    assert_problem(r, 400, "BadRequestData").await;
    // JSON-LD body with a Link header.
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/ld+json")
        .header("Link", link("http://example.org/ctx.jsonld"))
        .body(json!({"id": "urn:r:1", "type": "T", "@context": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    // JSON-LD body without @context.
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/ld+json")
        .body(json!({"id": "urn:r:1", "type": "T"}).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    // Unsupported media type, unacceptable Accept.
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = app.client.get(app.url("/ngsi-ld/v1/entities/urn:r:1")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 406);
    // An unreachable context.
    let r = app
        .client
        .get(app.url("/ngsi-ld/v1/entities?type=T"))
        .header("Link", link("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-non-existing.jsonld"))
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 503 | 504), "status {}", r.status());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable");
    // Nothing was stored by the rejected requests.
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:r:1").await.status(), 404);
}

#[tokio::test]
async fn jsonld_contexts_api() {
    let app = spawn_app().await;
    let doc = json!({"@context": {"Car": "http://example.org/Car"}});
    let r = app.post_json("/ngsi-ld/v1/jsonldContexts", &doc).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();
    let served: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(served, doc);
    let urls: Vec<String> = app.get("/ngsi-ld/v1/jsonldContexts").await.json().await.unwrap();
    let url = urls.iter().find(|u| u.ends_with(&id)).expect("listed").clone();
    let details: Vec<Value> =
        app.get("/ngsi-ld/v1/jsonldContexts?details=true&kind=Hosted").await.json().await.unwrap();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0]["kind"], "Hosted");
    assert_eq!(details[0]["localId"], id);
    // The hosted URL works as a Link context without any download.
    app.client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/json")
        .header("Link", link(&url))
        .body(json!({"id": "urn:h:1", "type": "Car"}).to_string())
        .send()
        .await
        .unwrap();
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:h:1").await.json().await.unwrap();
    assert_eq!(e["type"], "http://example.org/Car");
    // A document without @context is malformed, not bad data (ETSI 050_02_01).
    let r = app.post_json("/ngsi-ld/v1/jsonldContexts", &json!({"no": "context"})).await;
    assert_problem(r, 400, "InvalidRequest").await;
    let r = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get(&location).await.status(), 404);
    let r = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn core_context_can_be_reloaded_not_deleted() {
    let app = spawn_app().await;
    let core = "https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.6.jsonld";
    let r = app.client.delete(app.url(&format!("/ngsi-ld/v1/jsonldContexts/{core}"))).send().await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    let r = app.client.delete(app.url(&format!("/ngsi-ld/v1/jsonldContexts/{core}?reload=true"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
}
