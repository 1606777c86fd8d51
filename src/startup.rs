//! Builds the broker from settings: opens the store, loads hosted contexts, binds the listener
//! and assembles the HTTP server. Tests use the same entry point on port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, Service, ServiceRequest};
use actix_web::middleware::{Condition, DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};

use crate::config::Settings;
use crate::http::{self, AppState};
use crate::jsonld::resolver::{Resolver, ResolverSettings};
use crate::notify::Notifier;
use crate::ops::{Broker, contexts};
use crate::registry::Registrations;
use crate::store::embedded::EmbeddedStore;

/// A built broker: its bound port and the server future.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Opens everything and binds the listener (port 0 picks a free port).
    pub async fn build(mut settings: Settings) -> Result<Application, String> {
        let store = EmbeddedStore::open_with(&settings.data_dir, settings.log_config())
            .map_err(|e| format!("cannot open the store in {}: {e}", settings.data_dir.display()))?;
        let resolver = Resolver::new(ResolverSettings {
            fetch_timeout: Duration::from_millis(settings.context_timeout_ms.max(1)),
            ..Default::default()
        });
        let store: Arc<dyn crate::store::Store> = Arc::new(store);
        let resolver = Arc::new(resolver);
        contexts::load(store.as_ref(), &resolver).await.map_err(|e| format!("cannot load hosted contexts: {e}"))?;
        let notifier =
            Notifier::start(store.clone(), resolver.clone(), settings.notify_settings(), settings.public_base())
                .await
                .map_err(|e| format!("cannot start the notifier: {e}"))?;
        let registry = Registrations::start(store.clone())
            .await
            .map_err(|e| format!("cannot load the context source registrations: {e}"))?;
        registry.set_notifier(notifier.clone());
        notifier.set_registrations(&registry);
        let forwarder = Arc::new(crate::forward::Forwarder::new(
            registry.clone(),
            resolver.clone(),
            Duration::from_millis(settings.forward_timeout_ms.max(1)),
        ));
        let entity_maps = Arc::new(crate::entity_maps::EntityMaps::new(settings.entity_map_settings()));
        let temporal = crate::temporal::TemporalStore::load(store.clone(), settings.troe)
            .await
            .map_err(|e| format!("cannot load the temporal history: {e}"))?;
        if settings.troe {
            // History is recorded beside the notifications, in the same group commits; without
            // troe the notifier stays the store's only observer.
            store.set_observer(Arc::new(crate::store::Observers::new(vec![notifier.clone(), temporal.clone()])));
        }
        let broker = Broker { store, resolver, notifier, registry, forwarder, entity_maps, temporal };
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .map_err(|e| format!("cannot listen on {}:{}: {e}", settings.host, settings.port))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        settings.port = port;
        let workers = settings.workers;
        let cors = cors_headers(&settings);
        let state = web::Data::new(AppState { broker, settings, started: Instant::now() });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(Condition::new(cors.is_some(), cors_middleware(cors.as_deref().unwrap_or_default())))
                .wrap_fn(|mut req, srv| {
                    trim_trailing_slash(&mut req);
                    srv.call(req)
                })
                .wrap(from_fn(http::reject_empty_segments))
                .wrap(from_fn(http::prefer_version))
                .wrap(from_fn(http::forward_warnings))
                .configure(http::routes)
        })
        .listen(listener)
        .map_err(|e| e.to_string())?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Application { port, server: server.disable_signals().run() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until the server stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// The server handle, to stop it.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// The CORS headers to add, when `cors_origin` is set.
fn cors_headers(s: &Settings) -> Option<Vec<(&'static str, String)>> {
    if s.cors_origin.is_empty() {
        return None;
    }
    let origin = if s.cors_origin == "__ALL" { "*".to_owned() } else { s.cors_origin.clone() };
    Some(vec![
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS".into()),
        (
            "Access-Control-Allow-Headers",
            "Content-Type, Accept, Link, NGSILD-Tenant, Fiware-Service, Fiware-ServicePath, NGSILD-Path".into(),
        ),
        ("Access-Control-Expose-Headers", "Location, Link, NGSILD-Results-Count, NGSILD-Tenant".into()),
        ("Access-Control-Max-Age", s.cors_max_age.to_string()),
    ])
}

fn cors_middleware(headers: &[(&'static str, String)]) -> DefaultHeaders {
    headers.iter().fold(DefaultHeaders::new(), |d, (k, v)| d.add((*k, v.clone())))
}

/// Routes `/path/` like `/path` (FIWARE agents send trailing slashes). A plain string check:
/// actix's NormalizePath runs a regular expression on every request.
fn trim_trailing_slash(req: &mut ServiceRequest) {
    let path = req.path();
    if path.len() <= 1 || !path.ends_with('/') {
        return;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let pq = match req.query_string() {
        "" => trimmed.to_owned(),
        q => format!("{trimmed}?{q}"),
    };
    let mut parts = req.head().uri.clone().into_parts();
    let Ok(pq) = pq.parse() else { return };
    parts.path_and_query = Some(pq);
    if let Ok(uri) = actix_web::http::Uri::from_parts(parts) {
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
}
