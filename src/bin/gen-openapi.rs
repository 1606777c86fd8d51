//! Writes `openapi/openapi.json` from the handlers' utoipa annotations (`cargo xtask codegen`).

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let doc = orbis::openapi::document();
    if let Err(e) = std::fs::write(&path, format!("{doc}\n")) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    println!("wrote {}", path.display());
}
