//! The gateway under test as a child process: started from the release
//! binary on a free loopback port with a fresh database and a random
//! bearer token (or one shared by several nodes, see `cluster.rs`), its log written to a file, ready once `/healthz` answers,
//! and killed when stopped or dropped (so an error or Ctrl-C never leaves
//! it running).

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::StatusCode;
use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::process::{Child, Command};

use crate::client::{Call, Conn, Target};

/// How long the gateway may take to answer `/healthz` after start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Resident memory of the gateway, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`).
    pub peak_kib: u64,
    /// Resident anonymous memory now (heap, stacks).
    pub anon_kib: u64,
    /// Resident file-backed memory now: the binary, and the database file
    /// where SQLite maps it (`mmap_size`, off by default), which is shared
    /// page cache and counted once per mapping.
    pub file_kib: u64,
}

/// A random 40-character bearer token.
pub fn random_token() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// The last `n` lines of the gateway log at `path` (the gateway logs
/// every request, so only the file's end is read); empty if unreadable.
pub fn log_tail(path: &Path, n: usize) -> String {
    let mut tail = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let _ = file.read_to_end(&mut tail);
    }
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    pid: u32,
    log: PathBuf,
    /// Address and token to reach it.
    pub target: Target,
}

impl Gateway {
    /// Starts `binary serve` on `database_url`, logging to `log`, and waits
    /// until `/healthz` answers.
    pub async fn start(binary: &Path, database_url: &str, log: &Path) -> anyhow::Result<Self> {
        Self::start_configured(binary, database_url, log, None).await
    }

    /// As [`Gateway::start`], accepting bearer `token` (several gateways
    /// over one database share one).
    pub async fn start_with_token(
        binary: &Path,
        database_url: &str,
        log: &Path,
        token: &str,
    ) -> anyhow::Result<Self> {
        Self::spawn(binary, database_url, log, None, token).await
    }

    /// As [`Gateway::start`], with the configuration file `config` (passed
    /// as `--config`) when given.
    pub async fn start_configured(
        binary: &Path,
        database_url: &str,
        log: &Path,
        config: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::spawn(binary, database_url, log, config, &random_token()).await
    }

    async fn spawn(
        binary: &Path,
        database_url: &str,
        log: &Path,
        config: Option<&Path>,
        token: &str,
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(binary);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .args(["serve", "--listen", &addr.to_string()])
            .env("SCIM_GATEWAY_TOKEN", token)
            .env("DATABASE_URL", database_url)
            // A configuration file or base URL from the caller's environment
            // would make this a different gateway from the one measured (an
            // explicit `--config` above is the caller's choice).
            .env_remove("SCIM_GATEWAY_CONFIG")
            .env_remove("SCIM_GATEWAY_BASE_URL")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the gateway exited at once")?;
        let mut gateway = Self {
            child,
            pid,
            log: log.to_path_buf(),
            target: Target::new(addr, token)?,
        };
        gateway.wait_healthy().await?;
        Ok(gateway)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                bail!("the gateway exited during start ({status})");
            }
            if let Ok(mut conn) = Conn::open(&self.target).await {
                let reply = conn.send(&Call::get("/healthz"), START_TIMEOUT).await;
                if reply.is_ok_and(|r| r.status == StatusCode::OK) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the gateway did not answer /healthz within {START_TIMEOUT:?}")
    }

    /// The gateway's memory now, from `/proc/<pid>/status`; fails if the
    /// gateway has exited.
    pub fn memory(&mut self) -> anyhow::Result<Memory> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the gateway has exited ({status})");
        }
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in {path}"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS")?,
            peak_kib: field("VmHWM")?,
            anon_kib: field("RssAnon")?,
            file_kib: field("RssFile")?,
        })
    }

    /// The last `n` lines of the gateway's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Kills the gateway and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.start_kill()?;
        }
        self.child.wait().await?;
        Ok(())
    }
}
