//! `cargo xtask <command>`: the project's scripts, in Rust so they run wherever cargo does.
//!
//! * `ci`      — everything CI runs: format check, clippy with warnings denied, every test.
//! * `codegen` — regenerates `openapi/openapi.json` from the broker's annotations.
//! * `bench`   — release build, broker pinned to core 0, `wrk` workloads on core 1, RSS and
//!   create flatness, notifications (`--only notify`: that part alone); prints a table with the
//!   targets (see BENCHMARKS.md); `--only agent` measures the IoT agent.

mod agent_bench;
mod bench;
mod fanout_bench;
mod httpc;
mod notify_bench;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("codegen") => run("cargo", &["run", "--quiet", "--bin", "gen-openapi"]),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci|codegen|bench [--help]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("+ {cmd} {}", args.join(" "));
    let status = Command::new(cmd).args(args).status().map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{cmd} {} failed ({status})", args.join(" "))) }
}

fn ci() -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    run("cargo", &["test", "--workspace", "--no-fail-fast"])
}
