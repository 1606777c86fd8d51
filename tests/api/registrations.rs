//! Context source registrations, black-box: the `/csourceRegistrations` API (create, retrieve,
//! query with every filter and paging, update, delete), validation errors, the conflict rules
//! of exclusive and redirect registrations, tenants and @context handling.

use serde_json::{Value, json};

use crate::helpers::{LD_CONTEXT_REL, TestApp, assert_problem, spawn_app};

const REGS: &str = "/ngsi-ld/v1/csourceRegistrations";

/// A registration of `Vehicle` entities with `speed`, plus `extra` members.
fn reg(extra: Value) -> Value {
    let mut r = json!({"type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}],
        "endpoint": "http://source.example.org:1026"});
    if let (Value::Object(m), Value::Object(e)) = (&mut r, extra) {
        m.extend(e);
    }
    r
}

async fn register(app: &TestApp, tenant: Option<&str>, body: &Value) -> reqwest::Response {
    let mut rb = app.client.post(app.url(REGS)).json(body);
    if let Some(t) = tenant {
        rb = rb.header("NGSILD-Tenant", t);
    }
    rb.send().await.expect("request")
}

/// Creates a registration, insisting on 201; returns its id.
async fn must_register(app: &TestApp, tenant: Option<&str>, body: &Value) -> String {
    let r = register(app, tenant, body).await;
    assert_eq!(r.status(), 201, "registration refused: {:?}", r.text().await);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    loc.strip_prefix(&format!("{REGS}/")).expect("Location names the registration").to_owned()
}

async fn get_json(app: &TestApp, path: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut rb = app.client.get(app.url(path));
    if let Some(t) = tenant {
        rb = rb.header("NGSILD-Tenant", t);
    }
    let r = rb.send().await.expect("request");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().expect("an array").iter().map(|r| r["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn registration_crud_round_trip() {
    let app = spawn_app().await;
    let body = reg(json!({"id": "urn:ngsi-ld:ContextSourceRegistration:crud", "registrationName": "cars",
        "expiresAt": "2099-01-01T00:00:00Z", "contextSourceInfo": [{"key": "X-Auth", "value": "t"}],
        "management": {"localOnly": true, "timeout": 500}, "refreshRate": "PT10S", "status": "failed"}));
    let id = must_register(&app, None, &body).await;
    assert_eq!(id, "urn:ngsi-ld:ContextSourceRegistration:crud");
    let path = format!("{REGS}/{id}");
    let (status, got) = get_json(&app, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        got,
        json!({"id": id, "type": "ContextSourceRegistration", "registrationName": "cars",
            "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}],
            "endpoint": "http://source.example.org:1026", "expiresAt": "2099-01-01T00:00:00Z",
            "contextSourceInfo": [{"key": "X-Auth", "value": "t"}], "management": {"localOnly": true, "timeout": 500},
            "refreshRate": "PT10S", "mode": "inclusive", "operations": ["federationOps"]}),
        "read-only members sent by the client are dropped; defaults are shown"
    );
    let (_, with_sys) = get_json(&app, &format!("{path}?options=sysAttrs"), None).await;
    assert!(with_sys["createdAt"].is_string() && with_sys["modifiedAt"].is_string());

    // The same id again.
    assert_problem(register(&app, None, &body).await, 409, "AlreadyExists").await;

    // PATCH replaces the members it names; null removes one.
    let r = app.patch_json(&path, &json!({"endpoint": "http://new.example.org", "expiresAt": null})).await;
    assert_eq!(r.status(), 204);
    let (_, got) = get_json(&app, &path, None).await;
    assert_eq!(got["endpoint"], "http://new.example.org");
    assert!(got.get("expiresAt").is_none());
    assert_eq!(got["registrationName"], "cars");
    let r = app.patch_json(&path, &json!({"information": [{"entities": [{"type": "Bus"}]}]})).await;
    assert_eq!(r.status(), 204);
    let (_, got) = get_json(&app, &path, None).await;
    assert_eq!(got["information"], json!([{"entities": [{"type": "Bus"}]}]));

    let r = app.delete(&path).await;
    assert_eq!(r.status(), 204);
    assert_problem(app.get(&path).await, 404, "ResourceNotFound").await;
    assert_problem(app.delete(&path).await, 404, "ResourceNotFound").await;
    assert_problem(app.patch_json(&path, &json!({"endpoint": "http://x.org"})).await, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn a_registration_without_id_gets_one() {
    let app = spawn_app().await;
    let r = register(&app, None, &reg(json!({}))).await;
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(&format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:")), "{loc}");
    assert!(r.text().await.unwrap().is_empty());
    let (status, got) = get_json(&app, &loc, None).await;
    assert_eq!(status, 200);
    assert_eq!(format!("{REGS}/{}", got["id"].as_str().unwrap()), loc);
}

#[tokio::test]
async fn invalid_registrations_are_rejected_with_problem_details() {
    let app = spawn_app().await;
    let info = json!([{"entities": [{"type": "V"}]}]);
    let cases = [
        json!({}),
        json!({"type": "ContextSourceRegistration", "information": info}),
        json!({"type": "ContextSourceRegistration", "endpoint": "http://x.org"}),
        json!({"type": "Registration", "information": info, "endpoint": "http://x.org"}),
        reg(json!({"id": "not a uri"})),
        reg(json!({"information": null})),
        reg(json!({"information": []})),
        reg(json!({"information": [{"entities": []}]})),
        reg(json!({"information": [{"entities": [{"id": "urn:x:1"}]}]})),
        reg(json!({"information": [{"entities": [{"type": "V", "idPattern": "[unclosed"}]}]})),
        reg(json!({"endpoint": "not a uri"})),
        reg(json!({"expiresAt": "2018-11-29T14:53:15Z"})),
        reg(json!({"expiresAt": " 2018-11-29T14:53:15Z"})),
        reg(json!({"mode": "always"})),
        reg(json!({"operations": ["flyOps"]})),
        reg(json!({"location": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}})),
        reg(json!({"observationInterval": {"startAt": "yesterday"}})),
        reg(json!({"contextSourceInfo": [{"key": "X-Custom", "value": 123}]})),
        reg(json!({"contextSourceInfo": [{"key": "X-Custom"}]})),
        reg(json!({"management": "yes"})),
        reg(json!({"management": {"cacheDuration": "bogus"}})),
        reg(json!({"management": {"cooldown": 0}})),
        reg(json!({"scope": "Madrid"})),
        // §4.3.6.3: an exclusive registration names entity ids and attributes.
        reg(json!({"mode": "exclusive"})),
        reg(json!({"mode": "exclusive", "information": [{"entities": [{"id": "urn:x:1", "type": "V"}]}]})),
        // §5.9.2.4: an auxiliary registration only serves retrievals.
        reg(json!({"mode": "auxiliary", "operations": ["updateEntity"]})),
    ];
    for c in cases {
        let r = register(&app, None, &c).await;
        assert_eq!(r.status(), 400, "accepted: {c}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "{c}: {p}");
    }
    let r =
        app.client.post(app.url(REGS)).header("content-type", "application/json").body("{,,}").send().await.unwrap();
    assert_problem(r, 400, "InvalidRequest").await;
    // JSON with an @context, JSON-LD without one, JSON-LD with a Link header.
    let r = app
        .client
        .post(app.url(REGS))
        .json(&reg(json!({"@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"})))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    let r = app
        .client
        .post(app.url(REGS))
        .header("content-type", "application/ld+json")
        .body(reg(json!({})).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    let r = app.client.post(app.url(REGS)).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(r.status(), 415);
    assert_problem(app.get(&format!("{REGS}/not-a-uri")).await, 400, "BadRequestData").await;
    assert_problem(app.delete(&format!("{REGS}/not-a-uri")).await, 400, "BadRequestData").await;
    // Without an id, the collection does not allow PATCH or DELETE.
    let r = app.client.delete(app.url(&format!("{REGS}/"))).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // Nothing was stored.
    let (_, all) = get_json(&app, &format!("{REGS}?type=V,Vehicle"), None).await;
    assert_eq!(all, json!([]));
}

#[tokio::test]
async fn invalid_updates_are_rejected_and_change_nothing() {
    let app = spawn_app().await;
    let id = must_register(&app, None, &reg(json!({}))).await;
    let path = format!("{REGS}/{id}");
    let cases = [
        json!({}),
        json!({"type": "Building"}),
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:other"}),
        json!({"information": null}),
        json!({"endpoint": null}),
        json!({"endpoint": "nope"}),
        json!({"expiresAt": "2000-01-01T00:00:00Z"}),
        json!({"mode": "exclusive"}),
    ];
    for c in cases {
        let r = app.patch_json(&path, &c).await;
        assert_eq!(r.status(), 400, "accepted: {c}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "{c}: {p}");
    }
    let r = app.client.patch(app.url(&path)).header("content-type", "application/json").body("[").send().await.unwrap();
    assert_problem(r, 400, "InvalidRequest").await;
    let r = app.patch_json(&format!("{REGS}/nope"), &json!({"endpoint": "http://x.org"})).await;
    assert_problem(r, 400, "BadRequestData").await;
    let (_, got) = get_json(&app, &path, None).await;
    assert_eq!(got["endpoint"], "http://source.example.org:1026");
    assert_eq!(got["mode"], "inclusive");
}

#[tokio::test]
async fn names_follow_the_request_context() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/jsonldContexts",
            &json!({"@context": {"Car": "http://example.org/Car", "velocity": "http://example.org/velocity"}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let ctx_url = app.url(r.headers()["location"].to_str().unwrap());
    let link = format!("<{ctx_url}>; rel=\"{LD_CONTEXT_REL}\"; type=\"application/ld+json\"");
    let body = json!({"type": "ContextSourceRegistration", "endpoint": "http://s.org",
        "information": [{"entities": [{"type": "Car"}], "propertyNames": ["velocity"]}], "owner": "me"});
    let r = app.client.post(app.url(REGS)).header("Link", link.clone()).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    // With the same context: as given; without: expanded.
    let got: Value =
        app.client.get(app.url(&loc)).header("Link", link.clone()).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["information"], json!([{"entities": [{"type": "Car"}], "propertyNames": ["velocity"]}]));
    assert_eq!(got["owner"], "me");
    let (_, got) = get_json(&app, &loc, None).await;
    assert_eq!(
        got["information"],
        json!([{"entities": [{"type": "http://example.org/Car"}], "propertyNames": ["http://example.org/velocity"]}])
    );
    // Queries expand their names with their own context.
    let (_, found) = get_json(&app, &format!("{REGS}?type=http://example.org/Car"), None).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    let found: Value = app
        .client
        .get(app.url(&format!("{REGS}?type=Car&attrs=velocity")))
        .header("Link", link)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (_, found) = get_json(&app, &format!("{REGS}?type=Car"), None).await;
    assert_eq!(found, json!([]), "Car without the context is another type");
    // JSON-LD answers carry the @context in the body.
    let r = app.client.get(app.url(&loc)).header("Accept", "application/ld+json").send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    let got: Value = r.json().await.unwrap();
    assert!(got.get("@context").is_some());
}

#[tokio::test]
async fn queries_filter_on_entities_attributes_properties_geometry_and_time() {
    let app = spawn_app().await;
    let t = Some("discovery");
    let a = must_register(
        &app,
        t,
        &reg(json!({"information": [{"entities": [{"id": "urn:v:1", "type": "Vehicle"}], "propertyNames": ["speed"],
            "relationshipNames": ["owner"]}], "scope": "/Madrid/Centro", "source": "a",
            "location": {"type": "Point", "coordinates": [-8.521, 41.2]},
            "observationInterval": {"startAt": "2020-08-01T22:07:00Z", "endAt": "2099-01-01T00:00:00Z"}})),
    )
    .await;
    let b = must_register(
        &app,
        t,
        &reg(json!({"information": [{"entities": [{"idPattern": ".*downtown$", "type": "OffStreetParking"}]}],
            "scope": "/Berlin", "source": "b", "endpoint": "http://b.example.org",
            "managementInterval": {"startAt": "2020-08-01T22:07:00Z", "endAt": "2021-08-01T21:07:00Z"}})),
    )
    .await;
    let c = must_register(&app, t, &reg(json!({"information": [{"propertyNames": ["name"]}]}))).await;
    let q = |query: &str| {
        let app = &app;
        let query = query.to_owned();
        async move {
            let (status, body) = get_json(app, &format!("{REGS}?{query}"), t).await;
            assert_eq!(status, 200, "{query}: {body}");
            ids(&body).into_iter().map(str::to_owned).collect::<Vec<String>>()
        }
    };
    assert_eq!(q("type=Vehicle").await, [a.as_str(), c.as_str()]);
    assert_eq!(q("type=Vehicle,OffStreetParking").await, [a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(q("type=Bus").await, [c.as_str()], "an information item without entities covers any type");
    assert_eq!(q("id=urn:v:1").await, [a.as_str(), c.as_str()]);
    assert_eq!(q("id=urn:v:2").await, [c.as_str()]);
    assert_eq!(q("id=urn:p:downtown").await, [b.as_str(), c.as_str()]);
    assert_eq!(q("type=OffStreetParking&idPattern=.*downtown$").await, [b.as_str(), c.as_str()]);
    assert_eq!(q("attrs=speed").await, [a.as_str(), b.as_str()]);
    assert_eq!(q("attrs=owner,name").await, [a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(q("type=Vehicle&attrs=brand").await, Vec::<String>::new());
    assert_eq!(q("q=source==%22b%22").await, [b.as_str()]);
    assert_eq!(q("type=OffStreetParking&csf=endpoint==%22http://b.example.org%22").await, [b.as_str()]);
    assert_eq!(q("scopeQ=/Madrid/%23").await, [a.as_str()]);
    assert_eq!(q("georel=near;maxDistance==2000&geometry=Point&coordinates=[-8.503,41.202]").await, [a.as_str()]);
    assert_eq!(
        q("georel=near;maxDistance==200&geometry=Point&coordinates=[-8.503,41.202]").await,
        Vec::<String>::new()
    );
    let within = "[[[-13.5,47.2],[6.5,52.9],[20.3,44.6],[9.4,32.5],[-15.2,21.3],[-13.5,47.2]]]";
    assert_eq!(
        q(&format!("georel=within&geometry=Polygon&coordinates={within}&geoproperty=location")).await,
        [a.as_str()]
    );
    assert_eq!(q("timerel=before&timeAt=2021-08-01T22:00:00Z").await, [a.as_str()]);
    assert_eq!(q("timerel=before&timeAt=2021-08-01T22:00:00Z&timeproperty=modifiedAt").await, [b.as_str()]);
    assert_eq!(q("timerel=after&timeAt=2022-01-01T00:00:00Z&timeproperty=createdAt").await, Vec::<String>::new());
    assert_eq!(q("timerel=between&timeAt=2019-01-01T00:00:00Z&endTimeAt=2020-09-01T00:00:00Z").await, [a.as_str()]);
    // Other tenants see none of them.
    let (_, other) = get_json(&app, &format!("{REGS}?type=Vehicle"), None).await;
    assert_eq!(other, json!([]));
    // Malformed queries.
    for bad in [
        "",
        "id=invalidUri",
        "q=(invalidQuery",
        "csf=a==",
        "georel=within",
        "georel=near;maxDistance==1&geometry=Point&coordinates=[0,0]&geoproperty=position",
        "timerel=before",
        "timerel=during&timeAt=2021-08-01T22:00:00Z",
        "timerel=before&timeAt=2021-08-01T22:00:00Z&timeproperty=deletedAt",
        "type=Vehicle&limit=0",
    ] {
        let (status, p) = get_json(&app, &format!("{REGS}?{bad}"), t).await;
        assert_eq!(status, 400, "{bad}: {p}");
        assert_eq!(p["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "{bad}: {p}");
    }
    let (status, p) = get_json(&app, &format!("{REGS}?type=Vehicle&limit=5000"), t).await;
    assert_eq!(status, 403);
    assert_eq!(p["type"], "https://uri.etsi.org/ngsi-ld/errors/TooManyResults");
    let (status, p) = get_json(&app, &format!("{REGS}?type=Vehicle&colour=red"), t).await;
    assert_eq!(status, 400);
    assert_eq!(p["type"], "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest");
}

#[tokio::test]
async fn queries_are_paged_with_links_and_counted() {
    let app = spawn_app().await;
    let t = Some("paging");
    let mut all = Vec::new();
    for i in 0..3 {
        all.push(
            must_register(&app, t, &reg(json!({"id": format!("urn:ngsi-ld:ContextSourceRegistration:p{i}")}))).await,
        );
    }
    let r = app
        .client
        .get(app.url(&format!("{REGS}?type=Vehicle&limit=1&offset=1&count=true")))
        .header("NGSILD-Tenant", "paging")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    let links: Vec<String> = r
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().replace(' ', ""))
        .filter(|l| !l.contains(LD_CONTEXT_REL))
        .collect();
    assert_eq!(
        links,
        [
            "</ngsi-ld/v1/csourceRegistrations?type=Vehicle&count=true&limit=1&offset=0>;rel=\"prev\";type=\"application/ld+json\"",
            "</ngsi-ld/v1/csourceRegistrations?type=Vehicle&count=true&limit=1&offset=2>;rel=\"next\";type=\"application/ld+json\""
        ]
    );
    let page: Value = r.json().await.unwrap();
    assert_eq!(ids(&page), [all[1].as_str()]);
    let (_, last) = get_json(&app, &format!("{REGS}?type=Vehicle&limit=2&offset=2"), t).await;
    assert_eq!(ids(&last), [all[2].as_str()]);
    let r = app
        .client
        .get(app.url(&format!("{REGS}?type=Vehicle&limit=0&count=true")))
        .header("NGSILD-Tenant", "paging")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn tenants_are_isolated() {
    let app = spawn_app().await;
    let body = reg(json!({"id": "urn:ngsi-ld:ContextSourceRegistration:shared"}));
    let r = register(&app, Some("acme"), &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["ngsild-tenant"], "acme");
    // The same id in another tenant is another registration.
    must_register(&app, None, &body).await;
    let path = format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:shared");
    let r = app.client.delete(app.url(&path)).header("NGSILD-Tenant", "acme").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = get_json(&app, &path, Some("acme")).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&app, &path, None).await;
    assert_eq!(status, 200);
    let (status, _) = get_json(&app, &path, Some("other")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn proxied_registrations_conflict_with_each_other_and_with_local_data() {
    let app = spawn_app().await;
    let exclusive = |attr: &str| {
        reg(json!({"mode": "exclusive", "operations": ["updateOps"],
            "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}], "propertyNames": [attr]}]}))
    };
    // An IoT agent registers the commands of a device (fiware-iot-agents.md §4.6).
    must_register(&app, None, &exclusive("position")).await;
    let r = register(&app, None, &exclusive("position")).await;
    let p = assert_problem(r, 409, "AlreadyExists").await;
    assert!(p["detail"].as_str().unwrap().contains("Conflict"), "{p}");
    let redirect = reg(json!({"mode": "redirect", "information": [{"entities": [{"type": "Robot"}]}]}));
    assert_problem(register(&app, None, &redirect).await, 409, "AlreadyExists").await;
    must_register(&app, None, &exclusive("orientation")).await;
    // Overlapping redirect registrations are allowed.
    let drones = reg(json!({"mode": "redirect", "information": [{"entities": [{"type": "Drone"}]}]}));
    must_register(&app, None, &drones).await;
    must_register(&app, None, &drones).await;
    // Local data the registration would shadow blocks it (§5.9.2.4): an exclusive one naming an
    // attribute the broker's entity has, a redirect one covering an entity the broker holds.
    app.create(
        json!({"id": "urn:ngsi-ld:Building:b1", "type": "Building", "name": {"type": "Property", "value": "x"}}),
    )
    .await;
    let exclusive = |attr: &str| {
        reg(json!({"mode": "exclusive",
            "information": [{"entities": [{"id": "urn:ngsi-ld:Building:b1", "type": "Building"}], "propertyNames": [attr]}]}))
    };
    let p = assert_problem(register(&app, None, &exclusive("name")).await, 409, "AlreadyExists").await;
    assert!(p["detail"].as_str().unwrap().contains("urn:ngsi-ld:Building:b1"), "{p}");
    let over =
        reg(json!({"mode": "redirect", "information": [{"entities": [{"idPattern": ".*b1$", "type": "Building"}]}]}));
    assert_problem(register(&app, None, &over).await, 409, "AlreadyExists").await;
    let id = must_register(&app, None, &exclusive("height")).await;
    // An update that would make a registration conflict is refused and changes nothing.
    let inclusive =
        must_register(&app, None, &reg(json!({"information": [{"entities": [{"type": "Building"}]}]}))).await;
    let r = app.patch_json(&format!("{REGS}/{inclusive}"), &json!({"mode": "redirect"})).await;
    assert_problem(r, 409, "AlreadyExists").await;
    let (_, got) = get_json(&app, &format!("{REGS}/{inclusive}"), None).await;
    assert_eq!(got["mode"], "inclusive");
    assert_eq!(app.delete(&format!("{REGS}/{id}")).await.status(), 204);
}
