//! The real binary under test, for what only a process shows: its logs on
//! stderr, its answer to SIGTERM, its exit code. Also a webhook receiver
//! that can hold a delivery in flight for as long as a test wants.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use scim_gateway::store::AnyConnection;
use scim_gateway::store::jobs::{self, JobRow};
use tokio::sync::Semaphore;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_scim-gateway");

/// A running `scim-gateway serve`, killed when dropped.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub database_url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A database for a spawned gateway: a fresh PostgreSQL database when the
/// test server is configured, else a SQLite file in `dir`.
pub fn database(dir: &Path) -> (String, Option<PgDatabase>) {
    match std::env::var(PG_ENV).ok().filter(|u| !u.is_empty()) {
        Some(server) => {
            let db = PgDatabase::create(&server);
            (db.url(), Some(db))
        }
        None => (format!("sqlite://{}", dir.join("gw.db").display()), None),
    }
}

impl Gateway {
    /// Starts `serve` with `config` on a free port, stdout and stderr
    /// appended to `log`, the given environment on top of a clean one, and
    /// waits until `/readyz` answers 200.
    pub async fn start(
        config: &Path,
        database_url: &str,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", database_url)
            .env_remove("SCIM_GATEWAY_CONFIG")
            .env_remove("SCIM_GATEWAY_LISTEN")
            .env_remove("SCIM_GATEWAY_BASE_URL")
            .env_remove("SCIM_GATEWAY_TOKEN")
            .env_remove("SCIM_GATEWAY_ADMIN_TOKEN")
            .env_remove("SCIM_GATEWAY_METRICS_TOKEN")
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut gw = Gateway {
            child: cmd.spawn().unwrap(),
            port,
            log: log.to_path_buf(),
            database_url: database_url.to_string(),
        };
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/readyz");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = gw.child.try_wait().unwrap() {
                panic!("the gateway exited ({status}):\n{}", gw.log_text());
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return gw;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway is not ready:\n{}",
                gw.log_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as a container runtime or systemd does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself (panics after `secs`).
    pub async fn exited(&mut self, secs: u64) -> ExitStatus {
        let child = &mut self.child;
        let log = &self.log;
        eventually(secs, "the gateway to exit", || {
            let r = child.try_wait().unwrap().ok_or_else(|| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                format!("still running; log:\n{text}")
            });
            async move { r }
        })
        .await
    }

    /// Every job of `app`, read from the database behind the gateway's back.
    pub fn jobs(&self, app: &str) -> Vec<JobRow> {
        use diesel::Connection;
        let mut conn = if self.database_url.starts_with("postgres") {
            AnyConnection::Postgresql(diesel::PgConnection::establish(&self.database_url).unwrap())
        } else {
            let path = self.database_url.trim_start_matches("sqlite://");
            AnyConnection::Sqlite(diesel::SqliteConnection::establish(path).unwrap())
        };
        jobs::list_jobs(&mut conn, app, None, None, 1000).unwrap()
    }
}

/// A webhook receiver. While `hold` is on, each delivery waits inside the
/// handler until the test lets it go, so it is in flight on the gateway's side.
#[derive(Clone)]
pub struct Hook {
    pub url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    gate: Arc<Semaphore>,
}

async fn receive(
    body: actix_web::web::Bytes,
    hook: actix_web::web::Data<Hook>,
) -> actix_web::HttpResponse {
    hook.bodies
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).to_string());
    // A permit per delivery; the test adds them (or made plenty).
    hook.gate.acquire().await.unwrap().forget();
    actix_web::HttpResponse::NoContent().finish()
}

impl Hook {
    /// Starts a receiver; with `hold`, deliveries wait for [`Hook::release`].
    pub fn start(hold: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let permits = if hold { 0 } else { Semaphore::MAX_PERMITS };
        let hook = Hook {
            url: format!("http://127.0.0.1:{port}/hook"),
            bodies: Arc::default(),
            gate: Arc::new(Semaphore::new(permits)),
        };
        let data = actix_web::web::Data::new(hook.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .route("/hook", actix_web::web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        hook
    }

    /// The bodies received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries have arrived.
    pub async fn arrived(&self, n: usize) -> Vec<String> {
        eventually(30, "webhook deliveries", || async {
            let b = self.bodies();
            if b.len() >= n {
                Ok(b)
            } else {
                Err(format!("{b:?}"))
            }
        })
        .await
    }

    /// Lets the held deliveries (and all later ones) answer.
    pub fn release(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}
