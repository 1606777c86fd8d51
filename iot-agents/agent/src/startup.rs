//! Builds the agent from its settings: the registry, the broker client, the listeners (the
//! provisioning API on the northbound port, the HTTP southbound on its own port) and the
//! background tasks (MQTT and AMQP consumers, the northbound writer, command expiry).

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::ngsi::client::BrokerClient;
use crate::ngsi::writer::Writer;
use crate::registry::Registry;
use crate::south::Downlink;

/// What every handler and task shares.
pub struct Agent {
    pub settings: Settings,
    pub registry: Arc<dyn Registry>,
    pub broker: BrokerClient,
    pub metrics: Arc<Metrics>,
    /// Batches measures into upserts and retries them until the broker accepts them.
    pub writer: Writer,
    /// The durable buffer MQTT and AMQP measures go through (`None` when turned off).
    pub buffer: Option<crate::ngsi::buffer::Buffer>,
    /// Publishes to devices over MQTT, once the MQTT transport is connected.
    pub mqtt: OnceLock<Arc<dyn Downlink>>,
    /// Publishes to devices over AMQP, once the AMQP transport is connected.
    pub amqp: OnceLock<Arc<dyn Downlink>>,
    /// The command state kept for the agent's lifetime (status writer, push client).
    pub commands: crate::commands::Commands,
}

/// A built agent, listening, not yet running.
pub struct Application {
    north_port: u16,
    http_port: Option<u16>,
    servers: Vec<Server>,
    pub agent: Arc<Agent>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, String> {
        crate::north::check_settings(&settings)?;
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| format!("data directory: {e}"))?;
        let registry: Arc<dyn Registry> =
            Arc::new(crate::registry::embedded::EmbeddedRegistry::open(&settings.data_dir.join("registry.redb"))?);
        let broker = BrokerClient::new(&settings.cb_url, settings.cb_timeout_ms);
        let north = TcpListener::bind((settings.host.as_str(), settings.north_port))
            .map_err(|e| format!("northbound port {}: {e}", settings.north_port))?;
        let north_port = north.local_addr().map_err(|e| e.to_string())?.port();
        let mut settings = settings;
        if settings.provider_url.is_empty() {
            settings.provider_url = format!("http://127.0.0.1:{north_port}");
        }
        let metrics = Arc::new(Metrics::default());
        let writer = Writer::new(broker.clone(), settings.batch_max, settings.queue_capacity, metrics.clone());
        let buffer = if settings.buffer_max_bytes > 0 {
            Some(crate::ngsi::buffer::Buffer::open(
                &settings.data_dir.join("buffer"),
                settings.buffer_max_bytes,
                writer.clone(),
                metrics.clone(),
            )?)
        } else {
            None
        };
        let agent = Arc::new(Agent {
            settings: settings.clone(),
            registry,
            broker,
            metrics,
            writer,
            buffer,
            mqtt: OnceLock::new(),
            amqp: OnceLock::new(),
            commands: crate::commands::Commands::new(&settings),
        });
        crate::commands::start(agent.clone());

        let data = web::Data::from(agent.clone());
        let limit = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(limit))
                .app_data(web::PayloadConfig::new(limit))
                .configure(crate::north::configure)
                .configure(crate::commands::configure)
        })
        .workers(2)
        .listen(north)
        .map_err(|e| e.to_string())?
        .run();
        let mut servers = vec![server];
        let mut http_port = None;
        if let Some(port) = settings.http_port {
            let south = TcpListener::bind((settings.host.as_str(), port))
                .map_err(|e| format!("southbound HTTP port {port}: {e}"))?;
            http_port = Some(south.local_addr().map_err(|e| e.to_string())?.port());
            let data = web::Data::from(agent.clone());
            let server =
                HttpServer::new(move || App::new().app_data(data.clone()).configure(crate::south::http::configure))
                    .workers(2)
                    .listen(south)
                    .map_err(|e| e.to_string())?
                    .run();
            servers.push(server);
        }
        crate::south::mqtt::start(&agent);
        crate::south::amqp::start(&agent);
        Ok(Application { north_port, http_port, servers, agent })
    }

    pub fn north_port(&self) -> u16 {
        self.north_port
    }

    pub fn http_port(&self) -> Option<u16> {
        self.http_port
    }

    pub fn handles(&self) -> Vec<ServerHandle> {
        self.servers.iter().map(|s| s.handle()).collect()
    }

    /// Runs every listener until one stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let results = futures_util::future::join_all(self.servers).await;
        // Measures not yet written are left to their transports (unacknowledged, requeued).
        self.agent.writer.shutdown();
        results.into_iter().collect()
    }
}
