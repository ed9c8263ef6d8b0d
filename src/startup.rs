//! Building and running the application: store, registry, tokens, HTTP
//! server (plain or TLS), metrics. Tests build it the same way on port 0
//! (`Application::build`).
//!
//! Shutdown ([`Application::run_until`]):
//!
//! ```text
//!  SIGTERM / Ctrl-C ─┬─▶ HTTP: listener closed at once (new connections refused),
//!                    │         in-flight requests finish ─┐
//!                    └─▶ delivery: no more claims,        ├─ within shutdown_timeout_secs
//!                              in-flight jobs finish ─────┘
//!                              ─▶ claims still held are handed back ─▶ exit 0
//! ```

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol};
use actix_service::{ServiceFactoryExt as _, fn_service, map_config};
use actix_tls::accept::TlsError;
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::{AppConfig, Server};
use actix_web::middleware::from_fn;
use actix_web::{App, web};
use anyhow::Context;

use crate::admin::AdminService;
use crate::config::{AppSettings, DeliverySettings, Settings, TokenHash};
use crate::delivery::{AppAdapters, Engine, Fanout};
use crate::http::auth::{AdminTokens, TokenStore};
use crate::http::body::BodyLimits;
use crate::http::jwt::JwtKeys;
use crate::http::metrics::MetricsAccess;
use crate::http::rate_limit::RateLimiter;
use crate::http::wire::ScimWire;
use crate::http::{HttpSettings, configure, middleware};
use crate::lifecycle::Apps;
use crate::metrics::Metrics;
use crate::scim::schema::Registry;
use crate::scim::service::Service;
use crate::store::Db;

/// A built, not yet running, gateway.
pub struct Application {
    port: u16,
    server: Server,
    service: Service,
    apps: Vec<AppSettings>,
    delivery: DeliverySettings,
    metrics: Metrics,
    shutdown_timeout: Duration,
}

impl Application {
    /// Opens the store (applying migrations), loads schemas and the TLS
    /// certificate, and binds the listener.
    pub fn build(settings: &Settings, tokens: Vec<TokenHash>) -> anyhow::Result<Self> {
        // The cheapest mistakes to find come first: a bad certificate
        // should not wait for a database migration.
        let tls = settings
            .server
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        let mut db = Db::open(&settings.database).context("opening the database")?;
        db.start_sealer().context("starting the audit sealer")?;
        let registry = Arc::new(Registry::load(&settings.scim).context("loading schemas")?);
        let apps = Arc::new(
            Apps::compile(
                &registry,
                &settings.apps,
                &settings.rules,
                &settings.lifecycle,
            )
            .context("in [[apps]]")?,
        );
        let fanout = Fanout::new(apps);
        let service = Service {
            registry: registry.clone(),
            db,
            settings: Arc::new(settings.scim.clone()),
            fanout,
        };
        // Adapters are built (secrets read, URLs checked) before anything
        // starts; the admin service keeps them for reconciliations.
        let mut adapters = std::collections::HashMap::new();
        for app in &settings.apps {
            if let Some(a) = crate::adapters::build(app, &settings.delivery)
                .with_context(|| format!("app {}", app.name))?
            {
                adapters.insert(app.name.clone(), a);
            }
        }
        let admin_service = web::Data::new(AdminService::new(
            service.db.clone(),
            registry.clone(),
            service.fanout.clone(),
            AppAdapters::new(adapters),
        ));
        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        let http = HttpSettings {
            base_url: settings.server.base_url.clone(),
            tls: tls.is_some(),
            limits: BodyLimits {
                max_bytes: settings.server.max_body_bytes,
                max_depth: settings.server.max_json_depth,
                read_timeout: Duration::from_secs(settings.server.body_timeout_secs),
            },
            default_page_size: settings.scim.default_page_size,
            max_page_size: settings.scim.max_page_size,
            bulk_max_operations: settings.scim.bulk_max_operations,
            bulk_max_payload_bytes: settings.scim.bulk_max_payload_bytes,
        };
        let tokens = web::Data::new(TokenStore::new(tokens));
        let admin = web::Data::new(AdminTokens::new(
            settings.admin_token_hashes().context("admin tokens")?,
        ));
        let jwt =
            web::Data::new(JwtKeys::from_settings(&settings.auth.jwt).context("in [[auth.jwt]]")?);
        let metrics = Metrics::new().context("registering metrics")?;
        let access = web::Data::new(MetricsAccess {
            tokens: settings
                .metrics_token_hashes()
                .context("metrics tokens")?
                .into_iter()
                .map(|(_, hash)| hash)
                .collect(),
            public: settings.metrics.public,
        });
        let limiter = web::Data::new(RateLimiter::new(settings.rate_limit.clone()));
        let svc = web::Data::new(service.clone());
        let reg = web::Data::from(registry);
        let http = web::Data::new(http);
        let scrape = web::Data::new(metrics.clone());
        let app = move || {
            App::new()
                .wrap(from_fn(middleware::observe))
                .app_data(tokens.clone())
                .app_data(admin.clone())
                .app_data(jwt.clone())
                .app_data(admin_service.clone())
                .app_data(svc.clone())
                .app_data(reg.clone())
                .app_data(http.clone())
                .app_data(scrape.clone())
                .app_data(access.clone())
                .app_data(limiter.clone())
                .configure(configure)
        };
        let timeouts = Timeouts {
            head: Duration::from_millis(settings.server.header_timeout_ms),
            disconnect: Duration::from_millis(settings.server.disconnect_timeout_ms),
        };
        // Signals are `run_until`'s: delivery must stop with the server.
        let mut builder = actix_server::Server::build()
            .disable_signals()
            .shutdown_timeout(settings.server.shutdown_timeout_secs);
        if settings.server.workers > 0 {
            builder = builder.workers(settings.server.workers);
        }
        // The HTTP service of one worker over one connection type.
        macro_rules! http_service {
            () => {
                HttpService::build()
                    .client_request_timeout(timeouts.head)
                    .client_disconnect_timeout(timeouts.disconnect)
                    .finish(map_config(app(), |_| AppConfig::default()))
            };
        }
        // Every HTTP/1 connection goes through ScimWire (the parser's own
        // 4xx answers become SCIM errors); HTTP/2 is negotiated by ALPN.
        let server = match tls {
            None => builder.listen("scim-gateway", listener, move || {
                fn_service(|io: tokio::net::TcpStream| async move {
                    let peer = io.peer_addr().ok();
                    Ok::<_, DispatchError>((ScimWire::new(io), Protocol::Http1, peer))
                })
                .and_then(http_service!())
            })?,
            Some(mut config) => {
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                builder.listen("scim-gateway-tls", listener, move || {
                    Acceptor::new(config.clone())
                        .map_init_err(|_| ())
                        .map_err(TlsError::into_service_error)
                        .and_then(|io: TlsStream<tokio::net::TcpStream>| async move {
                            let h2 = io.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                            let peer = io.get_ref().0.peer_addr().ok();
                            Ok(if h2 {
                                (ScimWire::passthrough(io), Protocol::Http2, peer)
                            } else {
                                (ScimWire::new(io), Protocol::Http1, peer)
                            })
                        })
                        .and_then(http_service!().map_err(TlsError::Service))
                })?
            }
        };
        Ok(Self {
            port,
            server: server.run(),
            service,
            apps: settings.apps.clone(),
            delivery: settings.delivery.clone(),
            metrics,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
        })
    }

    /// Starts the delivery engine (one loop per pushing app). `serve` calls
    /// it before running; tests may leave it off.
    pub async fn start_delivery(&self) -> anyhow::Result<Option<Engine>> {
        if !self.delivery.enabled || self.apps.is_empty() {
            return Ok(None);
        }
        let engine = Engine::start(
            self.service.db.clone(),
            self.service.registry.clone(),
            self.service.fanout.clone(),
            &self.apps,
            &self.delivery,
            self.metrics.clone(),
        )
        .await?;
        Ok(Some(engine))
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The resource service (for tests and the CLI).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until the server is stopped (tests: until the runtime ends).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until `signal` resolves, then shuts down gracefully (see the
    /// module diagram): in-flight requests and `engine`'s deliveries get
    /// `server.shutdown_timeout_secs`, then claims still held are handed back.
    pub async fn run_until(
        self,
        engine: Option<Engine>,
        signal: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let deadline = self.shutdown_timeout;
        let handle = self.server.handle();
        let mut server = self.server;
        let stopped_early = tokio::select! {
            result = &mut server => Some(result),
            () = signal => None,
        };
        if let Some(result) = stopped_early {
            // The server ended by itself (it cannot today): stop delivery too.
            if let Some(engine) = engine {
                engine.shutdown(deadline).await?;
            }
            return Ok(result?);
        }
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "shutting down: refusing new connections, finishing in-flight requests and deliveries"
        );
        let delivery = async {
            match engine {
                Some(engine) => engine.shutdown(deadline).await.map(Some),
                None => Ok(None),
            }
        };
        // `server` carries out the stop command while it is polled.
        let ((), served, delivered) = tokio::join!(handle.stop(true), server, delivery);
        served.context("stopping the HTTP server")?;
        delivered.context("handing back delivery jobs")?;
        tracing::info!("scim-gateway stopped");
        Ok(())
    }
}

/// The HTTP timeouts of a connection.
#[derive(Clone, Copy)]
struct Timeouts {
    /// For a request head to arrive.
    head: Duration,
    /// For a client to close after the answer.
    disconnect: Duration,
}
