//! `orbis-agent`: reads its settings from the environment and runs until stopped.

use orbis_agent::config::Settings;
use orbis_agent::startup::Application;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (settings, bad) = Settings::from_env();
    let filter = match settings.log_level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .init();
    for b in bad {
        tracing::warn!(variable = %b.name, value = %b.value, "ignoring an unreadable setting");
    }
    let app = Application::build(settings).await.map_err(std::io::Error::other)?;
    tracing::info!(north = app.north_port(), http = ?app.http_port(), "orbis-agent started");
    app.run_until_stopped().await
}
