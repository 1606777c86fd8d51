//! The store test suite, written once and run against every backend: a backend is correct
//! when it passes this, whatever it does inside.

use std::sync::Arc;

use super::{EntityFilter, Mutation, Store, Write};
use crate::error::{ErrorKind, NgsiError};
use crate::model::Entity;

fn entity(id: &str, ty: &str, created: i64) -> Entity {
    Entity {
        id: id.into(),
        types: [crate::model::intern(ty)].into_iter().collect(),
        scope: None,
        attrs: Default::default(),
        created_at: created,
        modified_at: created,
    }
}

fn create(e: Entity) -> Write {
    Write::new(e.id.to_string(), move |cur| match cur {
        Some(_) => Err(NgsiError::new(ErrorKind::AlreadyExists, "exists")),
        None => Ok(Mutation::Put(e.clone())),
    })
}

/// Runs the suite. `open` must return a store over the same persistent location each time it
/// is called, after the previous store was dropped.
pub async fn run<F: Fn() -> Arc<dyn Store>>(open: F) {
    let store = open();
    let mut changes = store.changes();

    // Creating, conflicting, reading back.
    let r = store
        .write("", false, vec![create(entity("urn:e:1", "T", 1)), create(entity("urn:e:1", "T", 2))])
        .await
        .unwrap();
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().kind, ErrorKind::AlreadyExists);
    let got = store.get("", "urn:e:1").await.unwrap().unwrap();
    assert_eq!(got.created_at, 1);
    let c = changes.recv().await.unwrap();
    assert_eq!(c.id, "urn:e:1");
    assert!(c.old.is_none() && c.new.is_some());

    // Tenants: unknown tenants reject non-creating writes and spring up on creating ones.
    assert!(!store.tenant_exists("t1").await.unwrap());
    let r = store.write("t1", false, vec![create(entity("urn:e:2", "T", 3))]).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().kind, ErrorKind::NonexistentTenant);
    let r = store.write("t1", true, vec![create(entity("urn:e:2", "T", 3))]).await.unwrap();
    assert!(r[0].is_ok());
    assert!(store.tenant_exists("t1").await.unwrap());
    assert!(store.get("", "urn:e:2").await.unwrap().is_none(), "tenants are isolated");

    // Queries: order, types, paging, counting.
    let mut writes = Vec::new();
    for i in 0..30 {
        let ty = if i % 3 == 0 { "A" } else { "B" };
        writes.push(create(entity(&format!("urn:q:{i:02}"), ty, 100 + i)));
    }
    store.write("q", true, writes).await.unwrap();
    let all = store.query("q", &EntityFilter::default(), 0, 1000, true).await.unwrap();
    assert_eq!(all.total, Some(30));
    let ids: Vec<&str> = all.entities.iter().map(|e| &*e.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "creation order");
    let f = EntityFilter { types: Some(vec!["A".into()]), ..Default::default() };
    let p1 = store.query("q", &f, 0, 4, true).await.unwrap();
    let p2 = store.query("q", &f, 4, 4, false).await.unwrap();
    assert_eq!(p1.total, Some(10));
    assert_eq!(p1.entities.len(), 4);
    assert_eq!(p2.entities.len(), 4);
    assert!(p1.entities.iter().all(|e| !p2.entities.iter().any(|x| x.id == e.id)));
    let f = EntityFilter { ids: Some(vec!["urn:q:05".into(), "urn:q:01".into()]), ..Default::default() };
    let p = store.query("q", &f, 0, 10, false).await.unwrap();
    assert_eq!(p.entities.iter().map(|e| &*e.id).collect::<Vec<_>>(), vec!["urn:q:01", "urn:q:05"]);
    let f = EntityFilter { id_pattern: Some(regex::Regex::new("0[0-3]$").unwrap()), ..Default::default() };
    assert_eq!(store.query("q", &f, 0, 10, true).await.unwrap().total, Some(4));

    // The catalogue counts types and attributes and forgets them when they go.
    let cat = store.catalogue("q").await.unwrap();
    assert_eq!(cat.types["A"].entities, 10);
    assert_eq!(cat.types["B"].entities, 20);
    let mut with_attr = entity("urn:q:attr", "A", 999);
    with_attr.attrs.insert(
        "p".into(),
        crate::model::Instances::one(crate::model::Attribute::new(
            crate::model::AttrKind::Property,
            &serde_json::json!(1),
            0,
        )),
    );
    store.write("q", false, vec![create(with_attr)]).await.unwrap();
    let cat = store.catalogue("q").await.unwrap();
    assert_eq!(cat.attrs["p"].entities, 1);
    assert!(cat.attrs["p"].types.contains("A"));
    assert!(cat.types["A"].attrs.contains_key("p"));
    store.write("q", false, vec![Write::new("urn:q:attr", |_| Ok(Mutation::Delete))]).await.unwrap();
    let cat = store.catalogue("q").await.unwrap();
    assert!(!cat.attrs.contains_key("p"));
    assert!(!cat.types["A"].attrs.contains_key("p"));

    // Read-modify-write and delete.
    let r = store
        .write(
            "",
            false,
            vec![Write::new("urn:e:1", |cur| {
                let mut e = cur.cloned().ok_or_else(|| NgsiError::not_found("x"))?;
                e.types.push("U".into());
                Ok(Mutation::Put(e))
            })],
        )
        .await
        .unwrap();
    assert!(r[0].is_ok());
    let f = EntityFilter { types: Some(vec!["U".into()]), ..Default::default() };
    assert_eq!(store.query("", &f, 0, 10, true).await.unwrap().total, Some(1));
    store.write("q", false, vec![Write::new("urn:q:00", |_| Ok(Mutation::Delete))]).await.unwrap();
    assert!(store.get("q", "urn:q:00").await.unwrap().is_none());

    // Meta documents.
    store.put_meta("contexts", "k1", serde_json::json!({"a": 1})).await.unwrap();
    assert_eq!(store.list_meta("contexts").await.unwrap().len(), 1);

    // Concurrent writers all land.
    let mut handles = Vec::new();
    for i in 0..50 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            s.write("c", true, vec![create(entity(&format!("urn:c:{i}"), "C", i))]).await.unwrap()
        }));
    }
    for h in handles {
        assert!(h.await.unwrap()[0].is_ok());
    }

    // Everything survives a restart.
    drop(changes);
    drop(store);
    let store = open();
    assert_eq!(store.get("", "urn:e:1").await.unwrap().unwrap().type_names(), vec!["T", "U"]);
    assert!(store.tenant_exists("t1").await.unwrap());
    assert_eq!(store.query("q", &EntityFilter::default(), 0, 100, true).await.unwrap().total, Some(29));
    assert_eq!(store.query("c", &EntityFilter::default(), 0, 100, true).await.unwrap().total, Some(50));
    assert!(store.delete_meta("contexts", "k1").await.unwrap());
    assert!(store.list_meta("contexts").await.unwrap().is_empty());
}
