//! `orbis-agent`: reads its settings from the environment and runs until stopped.

use orbis_agent::config::Settings;
use orbis_agent::startup::Application;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (settings, bad) = Settings::from_env();
    use tracing_subscriber::prelude::*;
    let filter = orbis_agent::north::admin::filter_for(&settings.log_level);
    let (filter, reload) = tracing_subscriber::reload::Layer::new(
        tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
    );
    tracing_subscriber::registry().with(filter).with(tracing_subscriber::fmt::layer()).init();
    // `PUT /admin/log` changes the level through this hook.
    orbis_agent::north::admin::install_reload(Box::new(move |level| {
        reload.reload(tracing_subscriber::EnvFilter::new(level)).map_err(|e| e.to_string())
    }));
    for b in bad {
        tracing::warn!(variable = %b.name, value = %b.value, "ignoring an unreadable setting");
    }
    let app = Application::build(settings).await.map_err(std::io::Error::other)?;
    tracing::info!(north = app.north_port(), http = ?app.http_port(), "orbis-agent started");
    app.run_until_stopped().await
}
