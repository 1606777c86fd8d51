//! The distributed-query workload of `cargo xtask bench` ((13), `--only fanout` runs it alone):
//! a query on one broker that fans out to three context sources.
//!
//! Four fresh brokers are started (all pinned to core 0): A, and sources S1..S3 holding 100
//! Vehicles each (ids distinct per source). A holds 5 Vehicles of its own and one inclusive
//! registration per source for type Vehicle. wrk (core 1) sends `GET
//! /ngsi-ld/v1/entities?type=Vehicle&limit=20` to A, which asks the three sources and merges
//! their answers into one page (A's 5 first, then the sources'); the same query with
//! `local=true` on A is the reference figure.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::bench::{Bench, Broker, Opts, Run, cpu, load, ms, precheck};
use crate::httpc;

/// Entities per source.
const PER_SOURCE: u64 = 100;
const SOURCES: usize = 3;

/// The figures of (13).
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) ran: bool,
    pub(crate) local: Run,
    pub(crate) fanout: Run,
}

pub(crate) fn measure(bench: &mut Bench, bin: &Path, f: &mut Figures) -> Result<(), String> {
    eprintln!("brokers F: a query fanning out to {SOURCES} context sources (13)");
    f.ran = true;
    let mut a = Broker::start(bin, "f")?;
    load(&a, 0, 5, &|i| format!("urn:ngsi-ld:Vehicle:a-{i}"))?;
    let mut sources = Vec::new();
    for s in 0..SOURCES {
        let b = Broker::start(bin, &format!("s{s}"))?;
        load(&b, 0, PER_SOURCE, &|i| format!("urn:ngsi-ld:Vehicle:s{s}-{i}"))?;
        let reg = format!(
            r#"{{"type":"ContextSourceRegistration","endpoint":"http://{}","information":[{{"entities":[{{"type":"Vehicle"}}]}}]}}"#,
            b.addr
        );
        let r =
            httpc::request(&a.addr, "POST", "/ngsi-ld/v1/csourceRegistrations", Some(&reg), Duration::from_secs(10))?;
        if r.status != 201 {
            return Err(format!("registering source {s} answered HTTP {}: {}", r.status, r.body));
        }
        sources.push(b);
    }
    // The merged page must hold entities of the sources.
    let path = "/ngsi-ld/v1/entities?type=Vehicle&limit=20";
    let r = httpc::request(&a.addr, "GET", path, None, Duration::from_secs(10))?;
    if r.status != 200 || !r.body.contains("urn:ngsi-ld:Vehicle:s") {
        return Err(format!("the fan-out query did not merge the sources' entities (HTTP {})", r.status));
    }
    bench.query_path = format!("{path}&local=true");
    precheck(&a, "GET", &bench.query_path, None, &[200])?;
    f.local = bench.workload(&mut a, "(13a) type=Vehicle&limit=20, local=true", "query.lua")?;
    bench.query_path = path.to_owned();
    f.fanout = bench.workload(&mut a, "(13b) type=Vehicle&limit=20 over 3 sources", "query.lua")?;
    for s in &mut sources {
        s.check_alive()?;
    }
    Ok(())
}

pub(crate) fn report(_o: &Opts, f: &Figures, s: &mut String) {
    if !f.ran {
        return;
    }
    let _ = writeln!(s);
    let _ =
        writeln!(s, "distributed query: broker A + {SOURCES} context sources (inclusive registrations), all on core 0");
    for (name, r) in [("(13a) local=true (reference)", &f.local), ("(13b) fan-out to 3 sources", &f.fanout)] {
        let _ = writeln!(
            s,
            "  {:<36} {:>8.0} req/s  p50 {:>9}  p99 {:>9}  broker A cpu {:>4}",
            name,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            cpu(r.broker_cpu)
        );
    }
    let ratio = f.fanout.rps / f.local.rps.max(1e-9);
    let _ = writeln!(s, "  fan-out / local: {ratio:.2}x (no target in the issue; four brokers share core 0)");
}
