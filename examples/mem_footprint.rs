//! Memory per stored entity, measured as the broker allocates (mimalloc, size-class rounding
//! included): the five-attribute Vehicles of the load test, either built and held in a vector
//! (`entities`: what an entity and its attributes cost) or written to an embedded store
//! (`store`: entities, indexes, and what the writer keeps), reported as resident memory added
//! per entity. `MEM_DROP=location,speed` leaves attributes out, to see what each one costs.
//!
//! `cargo run --release --example mem_footprint -- [N] [entities|store]` (default 100,000,
//! store).

use std::sync::Arc;

use mimalloc::MiMalloc;
use orbis::jsonld::CORE;
use orbis::model::parse::{Purpose, parse_entity};
use orbis::model::{Attribute, Entity};
use orbis::store::embedded::EmbeddedStore;
use orbis::store::{Mutation, Store, Write};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .unwrap_or(0)
        * 1024
}

fn vehicle(i: usize) -> serde_json::Value {
    let x = (i * 7919 % 1000) as f64;
    let mut v = serde_json::json!({"id": format!("urn:ngsi-ld:Vehicle:m{i}"), "type": "Vehicle",
      "speed": {"type": "Property", "value": x / 10.0, "unitCode": "KMH", "observedAt": "2026-01-15T10:00:00.000Z"},
      "brandName": {"type": "Property", "value": "Ford"},
      "isParked": {"type": "Relationship", "object": format!("urn:ngsi-ld:OffStreetParking:{i}"), "observedAt": "2026-01-15T10:00:00.000Z"},
      "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-3.8 + x / 5000.0, 40.35 + x / 7000.0]}, "observedAt": "2026-01-15T10:00:00.000Z"},
      "category": {"type": "Property", "value": ["commercial", "municipalServices"]}});
    if let (Ok(names), Some(members)) = (std::env::var("MEM_DROP"), v.as_object_mut()) {
        for name in names.split(',') {
            members.remove(name);
        }
    }
    v
}

fn entity(i: usize) -> Entity {
    let now = 1_768_471_200_000 + (i / 1000) as i64;
    let mut e = parse_entity(&vehicle(i), &CORE, Purpose::Create, now)
        .unwrap()
        .into_entity(format!("urn:ngsi-ld:Vehicle:m{i}"), now);
    e.attrs.shrink_to_fit();
    e
}

/// `mem_footprint [N] [entities|store]`: the entities alone in a vector, or stored (entities
/// and indexes), as the writer thread holds them.
fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mode = args.next().unwrap_or_else(|| "store".into());
    println!(
        "size_of: Entity {} Attribute {} AttrMap {}",
        std::mem::size_of::<Entity>(),
        std::mem::size_of::<Attribute>(),
        std::mem::size_of::<orbis::model::AttrMap>()
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut held: Vec<Arc<Entity>> = Vec::with_capacity(n);
    let base = rss();
    if mode == "entities" {
        held.extend((0..n).map(|i| Arc::new(entity(i))));
    } else {
        rt.block_on(async {
            for k in (0..n).step_by(1000) {
                let writes = (k..(k + 1000).min(n))
                    .map(|i| {
                        let e = entity(i);
                        Write::new(e.id.to_string(), move |_| Ok(Mutation::Put(e.clone())))
                    })
                    .collect();
                store.write("", false, writes).await.unwrap();
            }
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = rss();
    println!("{mode}: {:.0} B/entity", (after as f64 - base as f64) / n as f64);
    drop(held);
}
