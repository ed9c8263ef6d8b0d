//! The `scim-gateway` binary: `serve`, `migrate`, `audit verify|export|prune`,
//! `plan`, `access-report` and `reconcile`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use scim_gateway::audit;
use scim_gateway::commands::{self, PlanFormat, ReconcileFormat, with_conn};
use scim_gateway::config::{DEFAULT_TENANT, Settings, TokenHash, hash_token};
use scim_gateway::lifecycle::report;
use scim_gateway::startup::Application;
use scim_gateway::store::{AuditFilter, Db, Target};
use scim_gateway::telemetry;

#[derive(Parser)]
#[command(
    name = "scim-gateway",
    version,
    about = "SCIM 2.0 provisioning gateway"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "SCIM_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Serve {
        /// Address to listen on (overrides configuration and SCIM_GATEWAY_LISTEN).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Verify, export or prune the tamper-evident audit trail.
    Audit {
        #[command(subcommand)]
        command: Box<AuditCommand>,
    },
    /// Preview what a configuration would do to every app, doing nothing.
    ///
    /// Compares the candidate's apps, scopes, mappings and rules, applied to
    /// the current identities, with the state last applied to each app, and
    /// lists the operations per app with their reasons.
    Plan {
        /// The candidate configuration file (default: the current one, which
        /// shows what is still to converge).
        candidate: Option<PathBuf>,
        /// `text` or `json`.
        #[arg(long, default_value = "text")]
        format: String,
        /// Exit with code 2 when the candidate would change anything.
        #[arg(long)]
        exit_code: bool,
    },
    /// Write who holds what, why and since when, for access reviews.
    ///
    /// One line per grant in force: app, identity, userName, entitlement
    /// (empty for the account itself), rule, granted_at, expires_at.
    AccessReport {
        /// `csv` or `ndjson`.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Find an app's orphaned, missing and drifted accounts.
    ///
    /// Lists the app's accounts through its adapter and compares them with
    /// what the gateway wants it to hold. A dry run unless `--remediate`.
    Reconcile {
        /// The app's name in the configuration.
        app: String,
        /// Repair the findings: disable or delete orphans per the app's
        /// `on_leave`, and queue missing and drifted accounts for the engine.
        #[arg(long)]
        remediate: bool,
        /// `json` or `csv`.
        #[arg(long, default_value = "json")]
        format: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain in the database (or an NDJSON export file) and
    /// report the first row where it breaks; exit code 1 when it does.
    Verify {
        /// First chain position to check (default: the first not pruned).
        #[arg(long, conflicts_with = "file")]
        from: Option<i64>,
        /// Last chain position to check (default: the head).
        #[arg(long, conflicts_with = "file")]
        to: Option<i64>,
        /// Verify this NDJSON export instead of the database (offline).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The file is a filtered export: allow gaps, check links where the
        /// predecessor is present.
        #[arg(long, requires = "file")]
        partial: bool,
    },
    /// Write the audit trail (or the rows matching the filters) in chain order.
    Export {
        /// `ndjson` (verifiable) or `csv`.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// Rows at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Rows before this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this identity (resource id).
        #[arg(long)]
        identity: Option<String>,
        /// Only this downstream app.
        #[arg(long)]
        app: Option<String>,
        /// Only this action (e.g. `scim.create`).
        #[arg(long)]
        action: Option<String>,
        /// Only this outcome (e.g. `success`).
        #[arg(long)]
        outcome: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete exported rows older than a cut-off, keeping a checkpoint so the
    /// rest of the chain still verifies.
    Prune {
        /// Cut-off time (RFC 3339 or YYYY-MM-DD); default: now minus
        /// `audit.retention_days`.
        #[arg(long)]
        before: Option<String>,
        /// The last chain position you exported and keep (the `chain_pos` of
        /// the export's last line); nothing after it is deleted.
        #[arg(long)]
        exported_through: i64,
        /// The `hash` of that last line: refuse unless the database agrees.
        #[arg(long)]
        exported_hash: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log.format, &settings.log.level);
    match cli.command {
        Command::Migrate => {
            Db::open(&settings.database).context("migrating the database")?;
            println!("migrations are up to date");
            Ok(())
        }
        Command::Audit { command } => audit_command(&settings, *command),
        Command::Plan {
            candidate,
            format,
            exit_code,
        } => plan_command(&settings, candidate, &format, exit_code),
        Command::AccessReport {
            format,
            tenant,
            out,
        } => {
            let format: report::Format = format.parse().map_err(anyhow::Error::msg)?;
            let n = match &out {
                Some(path) => {
                    let f = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    commands::access_report(
                        &settings,
                        tenant.as_deref(),
                        format,
                        &mut std::io::BufWriter::new(f),
                    )?
                }
                None => commands::access_report(
                    &settings,
                    tenant.as_deref(),
                    format,
                    &mut std::io::BufWriter::new(std::io::stdout().lock()),
                )?,
            };
            eprintln!("{n} grants in force");
            Ok(())
        }
        Command::Reconcile {
            app,
            remediate,
            format,
        } => reconcile_command(&settings, &app, remediate, &format),
        Command::Serve { listen } => {
            if let Some(l) = listen {
                settings.server.listen = l;
            }
            let mut tokens = settings.token_hashes()?;
            // JWT keys are a deliberate configuration: no development token then.
            if tokens.is_empty() && settings.auth.jwt.is_empty() {
                tokens.push(development_token(&settings)?);
            }
            serve(settings, tokens)
        }
    }
}

#[actix_web::main]
async fn serve(settings: Settings, tokens: Vec<TokenHash>) -> anyhow::Result<()> {
    let app = Application::build(&settings, tokens)?;
    let engine = app.start_delivery().await?;
    tracing::info!(
        listen = %settings.server.listen,
        port = app.port(),
        tls = settings.server.tls.is_some(),
        database = %describe(&settings.database.url),
        "scim-gateway listening; SCIM base path /scim/v2"
    );
    app.run_until(engine, shutdown_signal()).await
}

/// Resolves on the first SIGTERM (what container runtimes and systemd
/// send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

fn audit_command(settings: &Settings, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify {
            from,
            to,
            file,
            partial,
        } => {
            let (ok, text) = match file {
                Some(path) => {
                    let f = std::fs::File::open(&path)
                        .with_context(|| format!("opening {}", path.display()))?;
                    let report = audit::verify_file(std::io::BufReader::new(f), partial)
                        .with_context(|| format!("reading {}", path.display()))?;
                    (report.broken.is_none(), report.describe())
                }
                None => {
                    let report = with_conn(settings, |c| Ok(audit::verify_db(c, from, to)?))?;
                    (report.broken.is_none(), report.describe())
                }
            };
            println!("{text}");
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        AuditCommand::Export {
            format,
            from,
            to,
            tenant,
            actor,
            identity,
            app,
            action,
            outcome,
            out,
        } => {
            let format: audit::Format = format.parse().map_err(anyhow::Error::msg)?;
            let time = |t: Option<String>| {
                t.map(|t| audit::parse_time(&t))
                    .transpose()
                    .map_err(anyhow::Error::msg)
            };
            let filter = AuditFilter {
                from: time(from)?,
                to: time(to)?,
                tenant,
                actor,
                resource_id: identity,
                app,
                action,
                outcome,
            };
            let n = with_conn(settings, |c| {
                Ok(match &out {
                    Some(path) => {
                        let f = std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        let mut w = std::io::BufWriter::new(f);
                        audit::export_db(c, &filter, format, &mut w)?
                    }
                    None => {
                        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                        audit::export_db(c, &filter, format, &mut w)?
                    }
                })
            })?;
            let scope = if filter.is_empty() {
                "the whole chain"
            } else {
                "filtered rows: verify with --partial"
            };
            eprintln!("exported {n} audit rows ({scope})");
            Ok(())
        }
        AuditCommand::Prune {
            before,
            exported_through,
            exported_hash,
        } => {
            let before = match (before, settings.audit.retention_days) {
                (Some(b), _) => audit::parse_time(&b).map_err(anyhow::Error::msg)?,
                (None, Some(days)) => scim_gateway::format::timestamp(
                    chrono::Utc::now() - chrono::Duration::days(i64::from(days)),
                ),
                (None, None) => {
                    anyhow::bail!("give --before, or set audit.retention_days in the configuration")
                }
            };
            let r = with_conn(settings, |c| {
                Ok(audit::prune(
                    c,
                    &before,
                    exported_through,
                    exported_hash.as_deref(),
                )?)
            })?;
            println!(
                "pruned {} audit rows older than {before}; checkpoint now at chain position {} \
                 (hash {})",
                r.pruned, r.checkpoint_pos, r.checkpoint_hash
            );
            Ok(())
        }
    }
}

fn plan_command(
    settings: &Settings,
    candidate: Option<PathBuf>,
    format: &str,
    exit_code: bool,
) -> anyhow::Result<()> {
    let format: PlanFormat = format.parse().map_err(anyhow::Error::msg)?;
    let candidate = match candidate.as_deref() {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Settings::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => settings.clone(),
    };
    let outcome = commands::plan(settings, &candidate)?;
    print!("{}", commands::render_plan(&outcome, format));
    if exit_code && outcome.changes() {
        std::process::exit(2);
    }
    Ok(())
}

#[actix_web::main]
async fn reconcile_command(
    settings: &Settings,
    app: &str,
    remediate: bool,
    format: &str,
) -> anyhow::Result<()> {
    let format: ReconcileFormat = format.parse().map_err(anyhow::Error::msg)?;
    let report = commands::reconcile(settings, app, remediate, &commands::cli_actor()).await?;
    match format {
        ReconcileFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReconcileFormat::Csv => print!("{}", report.to_csv()),
    }
    let c = &report.counts;
    eprintln!(
        "{app}: {} accounts listed, {} orphans, {} missing, {} drifted{}",
        c.listed,
        c.orphans,
        c.missing,
        c.drifted,
        if remediate {
            format!(
                "; {} repaired, {} failed or held (missing and drifted accounts are queued \
                 for a running gateway)",
                c.remediated, c.failed
            )
        } else {
            " (dry run: nothing changed)".to_string()
        }
    );
    Ok(())
}

fn describe(url: &str) -> String {
    match Target::parse(url) {
        Target::Sqlite(path) => format!("sqlite {path}"),
        Target::Postgres(_) => "postgres".into(),
    }
}

/// With no token configured, a development token is generated, printed once
/// and remembered by its hash next to the database (`dev-token.sha256`), so
/// a restart keeps it working without printing it again.
fn development_token(settings: &Settings) -> anyhow::Result<TokenHash> {
    let dir = match Target::parse(&settings.database.url) {
        Target::Sqlite(path) => Path::new(&path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        Target::Postgres(_) => PathBuf::from("data"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("dev-token.sha256");
    let hash = match std::fs::read_to_string(&file) {
        Ok(hex_hash) => {
            let bytes = hex::decode(hex_hash.trim()).context("dev-token.sha256 is not hex")?;
            let hash = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("dev-token.sha256 is not a SHA-256"))?;
            eprintln!(
                "Using the development token printed at first start (its hash is in {}; delete that file to get a new one).",
                file.display()
            );
            hash
        }
        Err(_) => {
            use rand::Rng;
            let secret: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(40)
                .map(char::from)
                .collect();
            let hash = hash_token(&secret);
            std::fs::write(&file, hex::encode(hash))
                .with_context(|| format!("writing {}", file.display()))?;
            println!(
                "\nDevelopment bearer token (shown once, tenant \"{DEFAULT_TENANT}\"):\n\n    {secret}\n"
            );
            println!(
                "Try: curl -H 'Authorization: Bearer {secret}' http://{}/scim/v2/Users\n",
                settings.server.listen
            );
            hash
        }
    };
    Ok(TokenHash {
        tenant: DEFAULT_TENANT.into(),
        token_id: "development".into(),
        hash,
        app: None,
    })
}
