//! `@context` handling: the JSON-LD context given by `Link` header or in the body (§6.3.5),
//! media types of requests and responses (§6.3.4, §6.3.6), and the `@context` management API
//! `/ngsi-ld/v1/jsonldContexts` (§5.13, §6.29, §6.30).

use conformance_tests::*;

/// A user context mapping short names onto example.org IRIs.
fn user_context() -> Value {
    let n = unique_suffix();
    json!({
        "Lamp": format!("https://example.org/{n}/Lamp"),
        "brightness": format!("https://example.org/{n}/brightness"),
        "color": format!("https://example.org/{n}/color")
    })
}

fn lamp(id: &str) -> Value {
    json!({"id": id, "type": "Lamp", "brightness": {"type": "Property", "value": 70}})
}

fn expanded(ctx: &Value, term: &str) -> String {
    ctx[term].as_str().expect("term in the test context").to_owned()
}

/// §6.3.5, §5.5.7: an entity created with an inline `@context` (application/ld+json) is
/// expanded with it: read back without that context its terms are full IRIs, read back with
/// it (Link header) they are short names again.
#[tokio::test]
async fn inline_context_expands_and_link_compacts() {
    let b = Broker::get();
    let ctx = user_context();
    let id = unique_id("Lamp");
    let mut body = lamp(&id);
    body["@context"] = json!([ctx.clone(), "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"]);
    b.ld_json(Method::POST, &format!("{API}/entities"), None, &body).await.expect(201);

    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["type"], json!(expanded(&ctx, "Lamp")), "type expanded with the inline context: {e}");
    assert_eq!(e[expanded(&ctx, "brightness")]["value"], json!(70), "{e}");

    let (url, _) = b.host_context(&ctx).await;
    let r = b
        .send(
            b.request(Method::GET, &entity_path(&id, ""))
                .header("Accept", "application/json")
                .header("Link", link_header(&url)),
        )
        .await;
    r.expect(200);
    let e = r.json();
    assert_eq!(e["type"], json!("Lamp"), "compacted with the Link context: {e}");
    assert_eq!(e["brightness"]["value"], json!(70));
    assert_eq!(r.link_context().as_deref(), Some(url.as_str()), "the response Link names the request context");
}

/// §6.3.5: with application/json the context comes from the `Link` header; terms the core
/// context does not define expand with it, and the same Link reads them back.
#[tokio::test]
async fn link_header_context_is_used_for_json_bodies() {
    let b = Broker::get();
    let ctx = user_context();
    let (url, _) = b.host_context(&ctx).await;
    let id = unique_id("Lamp");
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Content-Type", "application/json")
                .header("Link", link_header(&url))
                .body(lamp(&id).to_string()),
        )
        .await;
    r.expect(201);
    let plain = b.must_retrieve(None, &id, "").await;
    assert_eq!(plain["type"], json!(expanded(&ctx, "Lamp")), "{plain}");
    // Query by the short type name through the same context.
    let r = b
        .send(
            b.request(Method::GET, &format!("{API}/entities?type=Lamp&id={}", encode(&id)))
                .header("Accept", "application/json")
                .header("Link", link_header(&url)),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json()[0]["brightness"]["value"], json!(70));
}

/// §6.3.5: without any user context, unknown terms expand with the default vocabulary.
#[tokio::test]
async fn core_context_default_vocabulary() {
    let b = Broker::get();
    let id = unique_id("Thing");
    b.must_create(None, &json!({"id": id, "type": "Thing", "someAttr": {"type": "Property", "value": 1}})).await;
    let r = b.send(b.request(Method::GET, &entity_path(&id, "")).header("Accept", "application/ld+json")).await;
    r.expect(200);
    let e = r.json();
    assert_eq!(e["someAttr"]["value"], json!(1), "compacts back with the core context: {e}");
}

/// §5.5.7 (JSON-LD 1.1 IRI compaction): an attribute stored under the default vocabulary,
/// read through a context that maps the same short name to another IRI, must not come back
/// under the short name (it would mean something else): it is compacted with the core
/// context's `ngsi-ld` prefix, as JSON-LD does and the ETSI suite expects (001_05_02).
#[tokio::test]
async fn redefined_term_is_not_compacted_to_vocab_suffix() {
    let b = Broker::get();
    let id = unique_id("Thing");
    b.must_create(None, &json!({"id": id, "type": "Thing", "someAttr": {"type": "Property", "value": 1}})).await;
    let (url, _) = b.host_context(&json!({"someAttr": "https://example.org/other/someAttr"})).await;
    let r = b
        .send(
            b.request(Method::GET, &entity_path(&id, ""))
                .header("Accept", "application/json")
                .header("Link", link_header(&url)),
        )
        .await;
    r.expect(200);
    let e = r.json();
    assert!(e.get("someAttr").is_none(), "{}", r.text);
    assert_eq!(e["ngsi-ld:default-context/someAttr"]["value"], json!(1), "{}", r.text);
}

/// §6.3.5: a body sent as application/json must not contain `@context`: 400 BadRequestData.
#[tokio::test]
async fn context_in_json_body_is_400() {
    let b = Broker::get();
    let mut body = lamp(&unique_id("Lamp"));
    body["@context"] = json!(user_context());
    b.json(Method::POST, &format!("{API}/entities"), None, &body).await.expect_problem(400, "BadRequestData");
}

/// §6.3.5: with application/ld+json the context is in the body; a context `Link` header as
/// well is 400 BadRequestData.
#[tokio::test]
async fn link_header_with_ld_json_is_400() {
    let b = Broker::get();
    let mut body = lamp(&unique_id("Lamp"));
    body["@context"] = json!(user_context());
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Content-Type", "application/ld+json")
                .header("Link", link_header("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"))
                .body(body.to_string()),
        )
        .await;
    r.expect_problem(400, "BadRequestData");
}

/// §6.3.5: an application/ld+json body without `@context` is 400 BadRequestData.
#[tokio::test]
async fn ld_json_without_context_is_400() {
    let b = Broker::get();
    b.ld_json(Method::POST, &format!("{API}/entities"), None, &lamp(&unique_id("Lamp")))
        .await
        .expect_problem(400, "BadRequestData");
}

/// §6.3.4: a request body in a media type other than JSON / JSON-LD is 415.
#[tokio::test]
async fn unsupported_content_type_is_415() {
    let b = Broker::get();
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Content-Type", "text/plain")
                .body(lamp(&unique_id("Lamp")).to_string()),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
}

/// §6.3.4: `application/merge-patch+json` is only for PATCH; on POST it is 415.
#[tokio::test]
async fn merge_patch_on_post_is_415() {
    let b = Broker::get();
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Content-Type", "application/merge-patch+json")
                .body(lamp(&unique_id("Lamp")).to_string()),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
}

/// §6.3.6: an `Accept` the broker cannot produce is 406.
#[tokio::test]
async fn unsupported_accept_is_406() {
    let b = Broker::get();
    let id = unique_id("Lamp");
    b.must_create(None, &lamp(&id)).await;
    let r = b.send(b.request(Method::GET, &entity_path(&id, "")).header("Accept", "text/html")).await;
    assert_eq!(r.status, 406, "{}", r.text);
    let r =
        b.send(b.request(Method::GET, &format!("{API}/entities?type=Lamp")).header("Accept", "application/xml")).await;
    assert_eq!(r.status, 406, "{}", r.text);
}

/// §6.3.5, §5.5.2: a context URL that cannot be retrieved is 503 LdContextNotAvailable.
#[tokio::test]
async fn unreachable_context_is_503() {
    let b = Broker::get();
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Content-Type", "application/json")
                .header("Link", link_header("http://127.0.0.1:1/no-such-context.jsonld"))
                .body(lamp(&unique_id("Lamp")).to_string()),
        )
        .await;
    r.expect_problem(503, "LdContextNotAvailable");
}

/// §5.13.2, §6.29.3.2: Add @context answers 201 with a Location naming the hosted context and
/// no body; §5.13.4: serving it returns the document.
#[tokio::test]
async fn add_context_is_201_and_served() {
    let b = Broker::get();
    let ctx = user_context();
    let r = b.json(Method::POST, &format!("{API}/jsonldContexts"), None, &json!({"@context": ctx})).await;
    r.expect(201);
    assert!(r.text.is_empty(), "no body on 201: {:?}", r.text);
    let loc = location_path(r.header("location").expect("Location"));
    assert!(loc.starts_with(&format!("{API}/jsonldContexts/")), "Location {loc}");
    let s = b.send(b.request(Method::GET, &loc)).await;
    s.expect(200);
    assert!(s.media_type() == "application/ld+json" || s.media_type() == "application/json", "{}", s.media_type());
    assert_eq!(s.json()["@context"], ctx);
}

/// §5.13.3, §6.29.3.1: List @contexts includes a hosted context's URL; with `kind=Hosted` too;
/// with `details=true` the items carry URL, localId, kind and createdAt.
#[tokio::test]
async fn list_contexts_plain_kind_and_details() {
    let b = Broker::get();
    let (url, path) = b.host_context(&user_context()).await;
    let local_id = path.rsplit('/').next().unwrap_or("").to_owned();

    let r = b.get_json(&format!("{API}/jsonldContexts"), None).await;
    r.expect(200);
    let list = r.json();
    assert!(list.as_array().expect("array").iter().any(|u| u == &json!(url)), "{url} listed in {list}");

    let r = b.get_json(&format!("{API}/jsonldContexts?kind=Hosted"), None).await;
    r.expect(200);
    assert!(r.json().as_array().expect("array").iter().any(|u| u == &json!(url)));

    let r = b.get_json(&format!("{API}/jsonldContexts?details=true"), None).await;
    r.expect(200);
    let details = r.json();
    let item = details
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["URL"] == json!(url))
        .unwrap_or_else(|| panic!("{url} in {details}"))
        .clone();
    assert_eq!(item["kind"], json!("Hosted"));
    assert_eq!(item["localId"], json!(local_id));
    assert!(item["createdAt"].is_string(), "createdAt in {item}");
}

/// §5.13.4: Serve @context with `details=true` gives the details object (kind Hosted).
#[tokio::test]
async fn serve_context_details() {
    let b = Broker::get();
    let (url, path) = b.host_context(&user_context()).await;
    let r = b.get_json(&format!("{path}?details=true"), None).await;
    r.expect(200);
    assert_eq!(r.media_type(), "application/json");
    let d = r.json();
    assert_eq!(d["URL"], json!(url));
    assert_eq!(d["kind"], json!("Hosted"));
    assert!(d["localId"].is_string() && d["createdAt"].is_string(), "{d}");
}

/// §5.13.5, §6.30.3.2: Delete @context answers 204; it is then neither served (404) nor
/// listed.
#[tokio::test]
async fn delete_context_then_404() {
    let b = Broker::get();
    let (url, path) = b.host_context(&user_context()).await;
    let r = b.delete(&path, None).await;
    r.expect(204);
    b.send(b.request(Method::GET, &path)).await.expect_problem(404, "ResourceNotFound");
    let list = b.get_json(&format!("{API}/jsonldContexts"), None).await.json();
    assert!(!list.as_array().expect("array").iter().any(|u| u == &json!(url)), "{url} still listed");
}

/// §5.13.5.4, §5.13.4.4: an unknown context id is 404 ResourceNotFound.
#[tokio::test]
async fn unknown_context_is_404() {
    let b = Broker::get();
    let id = unique_suffix();
    b.delete(&format!("{API}/jsonldContexts/{id}"), None).await.expect_problem(404, "ResourceNotFound");
    b.send(b.request(Method::GET, &format!("{API}/jsonldContexts/{id}"))).await.expect_problem(404, "ResourceNotFound");
}

/// §5.13.2.4: a body that is not an object with `@context` is a malformed request, 400
/// InvalidRequest (as the ETSI suite's 050_02_01 checks).
#[tokio::test]
async fn add_invalid_context_is_400() {
    let b = Broker::get();
    b.json(Method::POST, &format!("{API}/jsonldContexts"), None, &json!(["not", "an", "object"]))
        .await
        .expect_problem(400, "InvalidRequest");
    b.json(Method::POST, &format!("{API}/jsonldContexts"), None, &json!({"no": "context"}))
        .await
        .expect_problem(400, "InvalidRequest");
}

/// §5.13.3: `kind` other than Hosted, Cached, ImplicitlyCreated is 400 BadRequestData.
#[tokio::test]
async fn list_contexts_with_unknown_kind_is_400() {
    let b = Broker::get();
    b.get_json(&format!("{API}/jsonldContexts?kind=Whatever"), None).await.expect_problem(400, "BadRequestData");
}

/// §5.13.2, §6.3.5: a hosted context is usable by its URL in a Link header, for writing (an
/// update through the short names) and reading.
#[tokio::test]
async fn hosted_context_works_in_link_header() {
    let b = Broker::get();
    let ctx = user_context();
    let (url, _) = b.host_context(&ctx).await;
    let id = unique_id("Lamp");
    let link = link_header(&url);
    let post = |body: Value| {
        b.request(Method::POST, &format!("{API}/entities"))
            .header("Content-Type", "application/json")
            .header("Link", link.clone())
            .body(body.to_string())
    };
    b.send(post(lamp(&id))).await.expect(201);
    b.send(
        b.request(Method::POST, &format!("{API}/entities/{}/attrs", encode(&id)))
            .header("Content-Type", "application/json")
            .header("Link", link.clone())
            .body(json!({"color": {"type": "Property", "value": "warm"}}).to_string()),
    )
    .await
    .expect(204);
    let r = b
        .send(
            b.request(Method::GET, &entity_path(&id, "?attrs=color"))
                .header("Accept", "application/json")
                .header("Link", link.clone()),
        )
        .await;
    r.expect(200);
    let e = r.json();
    assert_eq!(e["type"], json!("Lamp"));
    assert_eq!(e["color"]["value"], json!("warm"), "{e}");
    assert!(e.get("brightness").is_none(), "attrs=color projects through the context: {e}");
    let plain = b.must_retrieve(None, &id, "").await;
    assert_eq!(plain[expanded(&ctx, "color")]["value"], json!("warm"), "{plain}");
}
