//! Context source registrations: Register / Update / Delete (§5.9.2–§5.9.4), Retrieve and
//! Query (§5.10.1, §5.10.2), the CSourceRegistration data type (§5.2.9, with RegistrationInfo
//! §5.2.10, KeyValuePair §5.2.22 and RegistrationManagementInfo §5.2.34), the registration
//! modes (§4.3.6) and the HTTP binding (§6.8, §6.9).
//!
//! Every test registers entity types and ids of its own ([`unique_id`], [`unique_type`]), and
//! tests that list registrations use their own tenant, so they run in parallel and against a
//! broker that holds other registrations. The sources registered are never contacted.

use conformance_tests::*;

fn regs_path() -> String {
    format!("{API}/csourceRegistrations")
}

fn reg_path(id: &str) -> String {
    format!("{API}/csourceRegistrations/{}", encode(id))
}

/// An entity type no other test uses.
fn unique_type(prefix: &str) -> String {
    format!("{prefix}{}", unique_suffix())
}

/// A registration of entities of type `ty` with the property `speed`, plus `extra` members.
fn registration(ty: &str, extra: Value) -> Value {
    let mut r = json!({
        "id": unique_id("ContextSourceRegistration"),
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": ty}], "propertyNames": ["speed"]}],
        "endpoint": "http://127.0.0.1:9/source"
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut r, extra) {
        m.extend(e);
    }
    r
}

/// POST /csourceRegistrations (application/json), insisting on 201; returns the id.
async fn must_register(b: &Broker, tenant: Option<&str>, body: &Value) -> String {
    let r = b.json(Method::POST, &regs_path(), tenant, body).await;
    assert_eq!(r.status, 201, "registering {body}: {}", r.text);
    match body["id"].as_str() {
        Some(id) => id.to_owned(),
        None => location_id(&r),
    }
}

/// The registration id named by the last segment of a Location header.
fn location_id(r: &Resp) -> String {
    let path = location_path(r.header("location").expect("a Location header on 201"));
    let last = path.rsplit('/').next().unwrap_or("").to_owned();
    last.replace("%3A", ":").replace("%3a", ":")
}

/// GET /csourceRegistrations/{id} as application/json, insisting on 200.
async fn must_get(b: &Broker, tenant: Option<&str>, id: &str) -> Value {
    let r = b.get_json(&reg_path(id), tenant).await;
    assert_eq!(r.status, 200, "retrieving registration {id}: {}", r.text);
    r.json()
}

/// GET /csourceRegistrations?{query} in `tenant`, insisting on 200; the ids found, in order.
async fn query_ids(b: &Broker, tenant: &str, query: &str) -> Vec<String> {
    let r = b.get_json(&format!("{}?{query}", regs_path()), Some(tenant)).await;
    assert_eq!(r.status, 200, "query {query}: {}", r.text);
    let body = r.json();
    body.as_array()
        .unwrap_or_else(|| panic!("query {query} answers an array: {body}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Register, retrieve, update, delete.

/// §5.9.2, §6.8.3.1 (ETSI TP 033_01, 033_11): Register Context Source answers 201 with an
/// empty body and a Location naming the registration; without an id the broker assigns one.
/// Retrieve (§5.10.1) gives the members back, `mode` and `operations` defaulting to
/// `inclusive` and `federationOps` (§5.2.9).
#[tokio::test]
async fn register_answers_201_with_location_and_retrieve_returns_it() {
    let b = Broker::get();
    let ty = unique_type("Vehicle");
    let body = registration(&ty, json!({"registrationName": "cars", "expiresAt": "2099-11-29T14:53:15Z"}));
    let id = body["id"].as_str().unwrap().to_owned();
    let r = b.json(Method::POST, &regs_path(), None, &body).await;
    r.expect(201);
    assert!(r.text.is_empty(), "201 has no body: {}", r.text);
    assert_eq!(location_id(&r), id);
    let got = must_get(&b, None, &id).await;
    assert_eq!(got["id"], json!(id));
    assert_eq!(got["type"], "ContextSourceRegistration");
    assert_eq!(got["information"], body["information"]);
    assert_eq!(got["endpoint"], body["endpoint"]);
    assert_eq!(got["registrationName"], "cars");
    assert_eq!(got["expiresAt"].as_str().map(|s| s.replace(".000Z", "Z")), Some("2099-11-29T14:53:15Z".into()));
    if let Some(m) = got.get("mode") {
        assert_eq!(m, "inclusive");
    }
    if let Some(o) = got.get("operations") {
        assert_eq!(o, &json!(["federationOps"]));
    }

    let mut anonymous = registration(&ty, json!({}));
    anonymous.as_object_mut().unwrap().remove("id");
    let r = b.json(Method::POST, &regs_path(), None, &anonymous).await;
    r.expect(201);
    let generated = location_id(&r);
    assert!(generated.contains(':') && !generated.contains('/'), "a generated id is a URI: {generated}");
    assert_eq!(must_get(&b, None, &generated).await["id"], json!(generated));
    b.delete(&reg_path(&id), None).await;
    b.delete(&reg_path(&generated), None).await;
}

/// §5.9.2.4 (ETSI TP 033_03): registering an id that exists is AlreadyExists (409).
#[tokio::test]
async fn registering_an_existing_id_is_409() {
    let b = Broker::get();
    let body = registration(&unique_type("Vehicle"), json!({}));
    let id = must_register(&b, None, &body).await;
    b.json(Method::POST, &regs_path(), None, &body).await.expect_problem(409, "AlreadyExists");
    b.delete(&reg_path(&id), None).await;
}

/// §5.2.9, §5.9.2.4 (ETSI TP 033_02, 033_10, 033_12, 5234_01): a body that is not a valid
/// CSourceRegistration is BadRequestData: no `information` or `endpoint`, a `null` or empty
/// `information`, an EntityInfo without type, a past `expiresAt`, another `type`, an id that
/// is not a URI, KeyValuePairs with non-string values, a non-positive management timeout.
/// Malformed JSON is InvalidRequest (§6.3.4).
#[tokio::test]
async fn invalid_registrations_are_bad_request_data() {
    let b = Broker::get();
    let ty = unique_type("Vehicle");
    let mut no_information = registration(&ty, json!({}));
    no_information.as_object_mut().unwrap().remove("information");
    let mut no_endpoint = registration(&ty, json!({}));
    no_endpoint.as_object_mut().unwrap().remove("endpoint");
    let cases = [
        no_information,
        no_endpoint,
        registration(&ty, json!({"information": null})),
        registration(&ty, json!({"information": []})),
        registration(&ty, json!({"information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:1"}]}]})),
        registration(&ty, json!({"expiresAt": "2018-11-29T14:53:15Z"})),
        registration(&ty, json!({"type": "Building"})),
        registration(&ty, json!({"id": "not a uri"})),
        registration(&ty, json!({"contextSourceInfo": [{"key": "X-Custom", "value": 123}]})),
        registration(&ty, json!({"management": {"timeout": -5}})),
    ];
    for body in cases {
        b.json(Method::POST, &regs_path(), None, &body).await.expect_problem(400, "BadRequestData");
    }
    let rb = b.request(Method::POST, &regs_path()).header("Content-Type", "application/json").body("{\"type\": ,}");
    b.send(rb).await.expect_problem(400, "InvalidRequest");
}

/// §6.3.5 (ETSI TP 033_06, 033_08, 033_09): an `@context` in an application/json body, an
/// application/ld+json body without `@context`, or one with a Link header, is BadRequestData.
#[tokio::test]
async fn context_placement_rules_apply_to_registrations() {
    let b = Broker::get();
    let ty = unique_type("Vehicle");
    let core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld";
    let with_ctx = registration(&ty, json!({"@context": core}));
    b.json(Method::POST, &regs_path(), None, &with_ctx).await.expect_problem(400, "BadRequestData");
    b.ld_json(Method::POST, &regs_path(), None, &registration(&ty, json!({})))
        .await
        .expect_problem(400, "BadRequestData");
    let rb = b
        .request(Method::POST, &regs_path())
        .header("Content-Type", "application/ld+json")
        .header("Link", link_header(core))
        .body(with_ctx.to_string());
    b.send(rb).await.expect_problem(400, "BadRequestData");
}

/// §5.10.1, §6.3.5 (ETSI TP 033_04, 036_05): names are expanded with the context of the
/// registration and compacted with the context of the request; without one, the core context
/// leaves them expanded.
#[tokio::test]
async fn names_are_compacted_with_the_request_context() {
    let b = Broker::get();
    let ty = unique_type("Car");
    let mut terms = serde_json::Map::new();
    terms.insert(ty.clone(), json!(format!("https://example.org/{ty}")));
    terms.insert("velocity".into(), json!("https://example.org/velocity"));
    let (url, _) = b.host_context(&Value::Object(terms)).await;
    let mut body = registration(&ty, json!({}));
    body["information"][0]["propertyNames"] = json!(["velocity"]);
    let rb = b
        .request(Method::POST, &regs_path())
        .header("Content-Type", "application/json")
        .header("Link", link_header(&url))
        .body(body.to_string());
    b.send(rb).await.expect(201);
    let id = body["id"].as_str().unwrap();
    let rb = b.request(Method::GET, &reg_path(id)).header("Link", link_header(&url));
    let got = b.send(rb).await;
    got.expect(200);
    assert_eq!(got.json()["information"], body["information"]);
    let expanded = must_get(&b, None, id).await;
    assert_eq!(expanded["information"][0]["entities"][0]["type"], json!(format!("https://example.org/{ty}")));
    assert_eq!(expanded["information"][0]["propertyNames"], json!(["https://example.org/velocity"]));
    b.delete(&reg_path(id), None).await;
}

/// §5.9.3, §6.9.3.2 (ETSI TP 034_01, 034_05): Update answers 204; the members of the fragment
/// replace the stored ones and `null` removes an optional member.
#[tokio::test]
async fn update_replaces_members_and_null_removes_them() {
    let b = Broker::get();
    let body = registration(&unique_type("Vehicle"), json!({"expiresAt": "2099-01-01T00:00:00Z"}));
    let id = must_register(&b, None, &body).await;
    let r = b.json(Method::PATCH, &reg_path(&id), None, &json!({"endpoint": "http://127.0.0.1:9/moved"})).await;
    r.expect(204);
    assert!(r.text.is_empty());
    let got = must_get(&b, None, &id).await;
    assert_eq!(got["endpoint"], "http://127.0.0.1:9/moved");
    assert_eq!(got["information"], body["information"]);
    b.json(Method::PATCH, &reg_path(&id), None, &json!({"expiresAt": null})).await.expect(204);
    assert!(must_get(&b, None, &id).await.get("expiresAt").is_none());
    b.delete(&reg_path(&id), None).await;
}

/// §5.9.3.4 (ETSI TP 034_02, 034_03, 034_04): an update with another `type`, one removing a
/// mandatory member, or with an id that is not a URI is BadRequestData; an unknown
/// registration is ResourceNotFound; malformed JSON is InvalidRequest. A refused update
/// changes nothing.
#[tokio::test]
async fn invalid_updates_are_refused() {
    let b = Broker::get();
    let body = registration(&unique_type("Vehicle"), json!({}));
    let id = must_register(&b, None, &body).await;
    for fragment in [json!({"type": "Building"}), json!({"information": null}), json!({"endpoint": null})] {
        b.json(Method::PATCH, &reg_path(&id), None, &fragment).await.expect_problem(400, "BadRequestData");
    }
    b.json(Method::PATCH, &reg_path("invalidURI"), None, &json!({"endpoint": "http://x.org"}))
        .await
        .expect_problem(400, "BadRequestData");
    let unknown = unique_id("ContextSourceRegistration");
    b.json(Method::PATCH, &reg_path(&unknown), None, &json!({"endpoint": "http://x.org"}))
        .await
        .expect_problem(404, "ResourceNotFound");
    let rb = b.request(Method::PATCH, &reg_path(&id)).header("Content-Type", "application/json").body("{,");
    b.send(rb).await.expect_problem(400, "InvalidRequest");
    assert_eq!(must_get(&b, None, &id).await["information"], body["information"]);
    b.delete(&reg_path(&id), None).await;
}

/// §5.9.4, §5.10.1, §6.9.3.3 (ETSI TP 035_01–035_03, 036_01, 036_02): Delete answers 204 and
/// the registration is gone; an unknown id is ResourceNotFound, an id that is not a URI is
/// BadRequestData, and without an id the collection does not allow DELETE (405).
#[tokio::test]
async fn delete_removes_the_registration() {
    let b = Broker::get();
    let id = must_register(&b, None, &registration(&unique_type("Vehicle"), json!({}))).await;
    let r = b.delete(&reg_path(&id), None).await;
    r.expect(204);
    b.get_json(&reg_path(&id), None).await.expect_problem(404, "ResourceNotFound");
    b.delete(&reg_path(&id), None).await.expect_problem(404, "ResourceNotFound");
    b.delete(&reg_path("invalidURI"), None).await.expect_problem(400, "BadRequestData");
    b.get_json(&reg_path("invalidURI"), None).await.expect_problem(400, "BadRequestData");
    assert_eq!(b.delete(&format!("{}/", regs_path()), None).await.status, 405);
}

// ---------------------------------------------------------------------------------------------
// Discovery.

/// §5.10.2.4 (ETSI TP 037_01, 037_05, 037_06, 037_10): a query finds the registrations that
/// can provide the entity types, ids, id patterns and attributes asked for; an information
/// item without entities covers any entity, one without attribute names any attribute.
#[tokio::test]
async fn query_matches_entities_and_attributes() {
    let b = Broker::get();
    let t = unique_tenant();
    let (vehicle, parking) = (unique_type("Vehicle"), unique_type("Parking"));
    let by_id = json!({"information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:A456", "type": vehicle}],
                                        "propertyNames": ["speed"], "relationshipNames": ["isParked"]}]});
    let a = must_register(&b, Some(&t), &registration(&vehicle, by_id)).await;
    let pattern = json!({"information": [{"entities": [{"idPattern": ".*downtown$", "type": parking}]}]});
    let p = must_register(&b, Some(&t), &registration(&parking, pattern)).await;
    let names_only = json!({"information": [{"propertyNames": ["availableSpots"]}]});
    let n = must_register(&b, Some(&t), &registration(&vehicle, names_only)).await;
    assert_eq!(query_ids(&b, &t, &format!("type={vehicle}")).await, [a.as_str(), n.as_str()]);
    assert_eq!(query_ids(&b, &t, &format!("type={vehicle},{parking}")).await, [a.as_str(), p.as_str(), n.as_str()]);
    assert_eq!(query_ids(&b, &t, "id=urn:ngsi-ld:Vehicle:A456").await, [a.as_str(), n.as_str()]);
    assert_eq!(query_ids(&b, &t, "id=urn:ngsi-ld:Parking:downtown").await, [p.as_str(), n.as_str()]);
    assert_eq!(query_ids(&b, &t, &format!("type={parking}&idPattern=.*downtown$")).await, [p.as_str(), n.as_str()]);
    assert_eq!(query_ids(&b, &t, "attrs=speed").await, [a.as_str(), p.as_str()]);
    assert_eq!(query_ids(&b, &t, "attrs=isParked,availableSpots").await, [a.as_str(), p.as_str(), n.as_str()]);
    assert!(query_ids(&b, &t, &format!("type={vehicle}&attrs=colour")).await.is_empty());
}

/// §5.10.2.4 (ETSI TP 037_07, 037_09, 037_10_02, 51024_01): `q` and `csf` are matched against
/// the registration's properties, `scopeQ` against its scope, a geo-query against its location
/// and a temporal query against its observation (timeproperty observedAt) or management
/// (createdAt, modifiedAt) interval.
#[tokio::test]
async fn query_filters_on_registration_properties() {
    let b = Broker::get();
    let t = unique_tenant();
    let ty = unique_type("Building");
    let a = must_register(
        &b,
        Some(&t),
        &registration(
            &ty,
            json!({"csourceProperty1": "aValue", "scope": "/Madrid/Centro", "endpoint": "http://127.0.0.1:9/a",
                "location": {"type": "Point", "coordinates": [-8.521, 41.2]},
                "observationInterval": {"startAt": "2020-08-01T22:07:00Z", "endAt": "2099-08-01T21:07:00Z"}}),
        ),
    )
    .await;
    let z = must_register(
        &b,
        Some(&t),
        &registration(
            &ty,
            json!({"csourceProperty1": "other", "scope": "/Berlin",
                "managementInterval": {"startAt": "2020-08-01T22:07:00Z", "endAt": "2021-08-01T21:07:00Z"}}),
        ),
    )
    .await;
    let q = |query: String| {
        let (b, t) = (b.clone(), t.clone());
        async move { query_ids(&b, &t, &query).await }
    };
    assert_eq!(q(format!("type={ty}&q=csourceProperty1==%22aValue%22")).await, [a.as_str()]);
    assert_eq!(q(format!("type={ty}&csf=endpoint==%22http://127.0.0.1:9/a%22")).await, [a.as_str()]);
    assert_eq!(q(format!("type={ty}&scopeQ=/Madrid/%23")).await, [a.as_str()]);
    assert_eq!(
        q(format!("type={ty}&georel=near;maxDistance==2000&geometry=Point&coordinates=[-8.503,41.202]")).await,
        [a.as_str()]
    );
    let polygon = "[[[-13.503,47.202],[6.541,52.961],[20.37,44.653],[9.46,32.57],[-15.23,21.37],[-13.503,47.202]]]";
    assert_eq!(q(format!("type={ty}&georel=within&geometry=Polygon&coordinates={polygon}")).await, [a.as_str()]);
    let before = "timerel=before&timeAt=2021-08-01T22:00:00Z";
    assert_eq!(q(format!("type={ty}&{before}")).await, [a.as_str()]);
    assert_eq!(q(format!("type={ty}&{before}&timeproperty=observedAt")).await, [a.as_str()]);
    assert_eq!(q(format!("type={ty}&{before}&timeproperty=modifiedAt")).await, [z.as_str()]);
}

/// §5.10.2.4 (ETSI TP 037_02, 037_03): a query that names nothing to look for, an id that is
/// not a URI, or a malformed q, geo-query or temporal query is BadRequestData.
#[tokio::test]
async fn malformed_queries_are_bad_request_data() {
    let b = Broker::get();
    for query in ["", "?id=invalidUri", "?q=(invalidQuery", "?georel=within", "?timerel=before"] {
        b.get_json(&format!("{}{query}", regs_path()), None).await.expect_problem(400, "BadRequestData");
    }
}

/// §5.5.9, §6.3.20 (ETSI TP 037_11): limit and offset page the results in a stable order, with
/// `prev` and `next` Links that repeat the query; `count=true` gives NGSILD-Results-Count.
#[tokio::test]
async fn query_is_paged_with_links() {
    let b = Broker::get();
    let t = unique_tenant();
    let ty = unique_type("Building");
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(must_register(&b, Some(&t), &registration(&ty, json!({}))).await);
    }
    let r = b.get_json(&format!("{}?type={ty}&limit=1&offset=1&count=true", regs_path()), Some(&t)).await;
    r.expect(200);
    assert_eq!(r.header("ngsild-results-count"), Some("3"));
    let page = r.json();
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert_eq!(page[0]["id"], json!(all[1]));
    let links: Vec<String> = r
        .headers
        .get_all("link")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(',').map(|l| l.replace(' ', "")).collect::<Vec<_>>())
        .filter(|l| !l.contains(LD_CONTEXT_REL))
        .collect();
    let prev = links.iter().find(|l| l.contains("rel=\"prev\"")).expect("a prev link");
    let next = links.iter().find(|l| l.contains("rel=\"next\"")).expect("a next link");
    for (link, offset) in [(prev, 0), (next, 2)] {
        assert!(link.starts_with(&format!("<{}?", regs_path())), "{link}");
        assert!(link.contains(&format!("type={ty}")) && link.contains("limit=1"), "{link}");
        assert!(link.contains(&format!("offset={offset}")), "{link}");
    }
    let last = query_ids(&b, &t, &format!("type={ty}&limit=2&offset=2")).await;
    assert_eq!(last, [all[2].as_str()]);
}

/// §4.14, §6.3.14: registrations belong to the tenant of the request that made them.
#[tokio::test]
async fn registrations_are_per_tenant() {
    let b = Broker::get();
    let (t1, t2) = (unique_tenant(), unique_tenant());
    let ty = unique_type("Vehicle");
    let body = registration(&ty, json!({}));
    let id = must_register(&b, Some(&t1), &body).await;
    assert_eq!(query_ids(&b, &t1, &format!("type={ty}")).await, [id.as_str()]);
    assert!(query_ids(&b, &t2, &format!("type={ty}")).await.is_empty());
    b.get_json(&reg_path(&id), Some(&t2)).await.expect(404);
    // The same id in another tenant is another registration.
    must_register(&b, Some(&t2), &body).await;
    b.delete(&reg_path(&id), Some(&t1)).await.expect(204);
    must_get(&b, Some(&t2), &id).await;
}

// ---------------------------------------------------------------------------------------------
// Registration modes.

/// §4.3.6.3, §5.9.2.4 (ETSI TP 436_03, 5922_01): an exclusive registration names entity ids
/// and attributes; once it exists, no exclusive or redirect registration may cover the same
/// entity and attribute (409), while redirect registrations may overlap each other; an
/// auxiliary registration only serves retrievals.
#[tokio::test]
async fn proxied_registration_rules() {
    let b = Broker::get();
    let t = unique_tenant();
    let ty = unique_type("Robot");
    let robot = unique_id("Robot");
    let exclusive = |attr: &str| {
        registration(
            &ty,
            json!({"mode": "exclusive", "operations": ["updateOps"],
                "information": [{"entities": [{"id": robot, "type": ty}], "propertyNames": [attr]}]}),
        )
    };
    let bare =
        registration(&ty, json!({"mode": "exclusive", "information": [{"entities": [{"id": robot, "type": ty}]}]}));
    b.json(Method::POST, &regs_path(), Some(&t), &bare).await.expect_problem(400, "BadRequestData");
    let typed = registration(&ty, json!({"mode": "exclusive"}));
    b.json(Method::POST, &regs_path(), Some(&t), &typed).await.expect_problem(400, "BadRequestData");
    must_register(&b, Some(&t), &exclusive("position")).await;
    assert_eq!(b.json(Method::POST, &regs_path(), Some(&t), &exclusive("position")).await.status, 409);
    let redirect = registration(&ty, json!({"mode": "redirect", "information": [{"entities": [{"type": ty}]}]}));
    assert_eq!(b.json(Method::POST, &regs_path(), Some(&t), &redirect).await.status, 409);
    must_register(&b, Some(&t), &exclusive("orientation")).await;
    let other = unique_type("Drone");
    let drones = || registration(&other, json!({"mode": "redirect", "information": [{"entities": [{"type": other}]}]}));
    must_register(&b, Some(&t), &drones()).await;
    must_register(&b, Some(&t), &drones()).await;
    let auxiliary = registration(&ty, json!({"mode": "auxiliary", "operations": ["updateEntity"]}));
    b.json(Method::POST, &regs_path(), Some(&t), &auxiliary).await.expect_problem(400, "BadRequestData");
}

/// §5.9.2.4 (ETSI TP 5922_01): a registration that would shadow what the broker holds is a
/// Conflict (409): an exclusive one naming an attribute the broker's entity has, a redirect one
/// covering an entity the broker holds. An exclusive registration of an attribute the entity
/// does not have is created (ETSI D011_01_exc registers entities the broker holds that way).
#[tokio::test]
async fn registrations_shadowing_local_data_are_conflicts() {
    let b = Broker::get();
    let t = unique_tenant();
    let ty = unique_type("Building");
    let id = unique_id("Building");
    b.must_create(Some(&t), &json!({"id": id, "type": ty, "subCategory": {"type": "Property", "value": "office"}}))
        .await;
    let exclusive = |attr: &str| {
        registration(
            &ty,
            json!({"mode": "exclusive", "operations": ["retrieveOps"],
                "information": [{"entities": [{"id": id, "type": ty}], "propertyNames": [attr]}]}),
        )
    };
    let r = b.json(Method::POST, &regs_path(), Some(&t), &exclusive("subCategory")).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let redirect = registration(
        &ty,
        json!({"mode": "redirect", "operations": ["retrieveOps"], "information": [{"entities": [{"type": ty}]}]}),
    );
    let r = b.json(Method::POST, &regs_path(), Some(&t), &redirect).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let free = exclusive("height");
    let r = b.json(Method::POST, &regs_path(), Some(&t), &free).await;
    assert_eq!(r.status, 201, "{}", r.text);
    b.get_json(&reg_path(free["id"].as_str().unwrap()), Some(&t)).await.expect(200);
}

// ---------------------------------------------------------------------------------------------
// Distributed operations with a source that cannot be reached.

/// §4.23, §5.7.2.4 (ETSI TP D011_05): entities merged from several sources have no common
/// order, so `orderBy` on a query some registration serves is BadRequestData; with
/// `local=true` the broker orders its own entities.
#[tokio::test]
async fn order_by_on_a_distributed_query_is_bad_request_data() {
    let b = Broker::get();
    let tenant = unique_tenant();
    let ty = unique_type("Ordered");
    b.must_create(Some(&tenant), &json!({"id": unique_id(&ty), "type": ty, "speed": {"type": "Property", "value": 1}}))
        .await;
    must_register(&b, Some(&tenant), &registration(&ty, json!({}))).await;
    let r = b.get_json(&format!("{API}/entities?type={ty}&orderBy=speed"), Some(&tenant)).await;
    r.expect_problem(400, "BadRequestData");
    b.get_json(&format!("{API}/entities?type={ty}&orderBy=speed&local=true"), Some(&tenant)).await.expect(200);
}

/// §6.3.17 (ETSI TP 6317_01): a source that cannot be reached does not fail the query; the
/// answer carries an `NGSILD-Warning` with code 199 naming the registration.
#[tokio::test]
async fn an_unreachable_source_is_reported_in_ngsild_warning() {
    let b = Broker::get();
    let tenant = unique_tenant();
    let ty = unique_type("Warned");
    b.must_create(Some(&tenant), &json!({"id": unique_id(&ty), "type": ty})).await;
    let reg = must_register(&b, Some(&tenant), &registration(&ty, json!({}))).await;
    let r = b.get_json(&format!("{API}/entities?type={ty}"), Some(&tenant)).await;
    r.expect(200);
    let w = r.header("ngsild-warning").unwrap_or_else(|| panic!("no NGSILD-Warning: {}", r.text));
    assert!(w.starts_with(&format!("199 {reg} \"")), "{w}");
}

/// §5.6.1.4 (ETSI TP 5614_01): an entity held whole by a redirect registration that does not
/// serve Create Entity cannot be created: 409 Conflict, nothing stored.
#[tokio::test]
async fn creating_what_a_redirect_source_holds_without_create_is_a_conflict() {
    let b = Broker::get();
    let tenant = unique_tenant();
    let ty = unique_type("Redirected");
    let id = unique_id(&ty);
    let reg = json!({"type": "ContextSourceRegistration", "mode": "redirect", "operations": ["retrieveOps"],
                     "information": [{"entities": [{"id": id, "type": ty}]}], "endpoint": "http://127.0.0.1:9/source"});
    must_register(&b, Some(&tenant), &reg).await;
    let r =
        b.create_entity(Some(&tenant), &json!({"id": id, "type": ty, "speed": {"type": "Property", "value": 1}})).await;
    r.expect_problem(409, "Conflict");
    b.retrieve(Some(&tenant), &id, "local=true").await.expect(404);
}
