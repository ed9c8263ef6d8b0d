//! The binary's one-shot commands that read or repair what the gateway
//! manages without starting a server: `plan`, `access-report` and
//! `reconcile`. Each calls the admin service ([`crate::admin`]) that its
//! admin endpoint calls, on the database and adapters of the configuration
//! file, so an operator can run it from a shell or a cron job (and a change
//! can be reviewed before it is deployed). What is the command line's own
//! stays here: opening one plain connection, the text form of a plan, and
//! error messages that name the configuration.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use crate::admin::{self, AdminError, AdminService, Caller, PlanOutcome};
use crate::config::Settings;
use crate::delivery::{AppAdapters, Fanout, Report};
use crate::lifecycle::{Apps, report};
use crate::scim::schema::Registry;
use crate::store::{AnyConnection, Db, Target, run_migrations};

/// Opens one database connection (migrations applied). A plain connection,
/// not a pool: a pool's background threads could still be opening
/// connections when the process exits.
pub fn with_conn<T>(
    settings: &Settings,
    f: impl FnOnce(&mut AnyConnection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let mut conn = match Target::parse(&settings.database.url) {
        Target::Sqlite(path) => {
            let mut c = diesel::SqliteConnection::establish(&path)
                .with_context(|| format!("opening {path}"))?;
            c.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")?;
            AnyConnection::Sqlite(c)
        }
        Target::Postgres(url) => AnyConnection::Postgresql(
            diesel::PgConnection::establish(&url).context("connecting to PostgreSQL")?,
        ),
    };
    run_migrations(&mut conn).context("migrating the database")?;
    f(&mut conn)
}

/// How `plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// A summary line per app and a line per operation.
    Text,
    /// `{"apps": {name: {counts, operations}}, "unmanaged": [...]}`, as
    /// `POST /admin/plan` answers plus the apps the candidate drops.
    Json,
}

impl std::str::FromStr for PlanFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("format must be text or json, not '{other}'")),
        }
    }
}

/// A plan in `format`.
pub fn render_plan(outcome: &PlanOutcome, format: PlanFormat) -> String {
    match format {
        PlanFormat::Json => {
            json!({ "apps": outcome.apps, "unmanaged": outcome.unmanaged }).to_string() + "\n"
        }
        PlanFormat::Text => plan_text(outcome),
    }
}

fn plan_text(outcome: &PlanOutcome) -> String {
    let mut out = String::new();
    for (app, p) in &outcome.apps {
        if p.operations.is_empty() {
            let _ = writeln!(out, "{app}: no changes");
            continue;
        }
        let counts: Vec<String> = p.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(out, "{app}: {}", counts.join(", "));
        for op in &p.operations {
            let name = op.name.as_deref().unwrap_or("(deleted)");
            let _ = write!(out, "  {:<8} {name} ({}): {}", op.op, op.id, op.reason);
            if !op.changes.is_empty() {
                let _ = write!(out, "; changes {}", op.changes.join(", "));
            }
            for g in &op.grants_added {
                let _ = write!(out, "; +{}", grant(g));
            }
            for g in &op.grants_revoked {
                let _ = write!(out, "; -{}", grant(g));
            }
            out.push('\n');
        }
    }
    for app in &outcome.unmanaged {
        let _ = writeln!(
            out,
            "{app}: no longer configured; the gateway would stop managing it and leave its \
             accounts as they are"
        );
    }
    if !outcome.changes() && outcome.unmanaged.is_empty() {
        out.push_str("Nothing would change.\n");
    }
    out
}

/// A grant (`rule/entitlement`, an empty entitlement for the account
/// itself) as `entitlement (rule)` or `account (rule)`.
fn grant(g: &str) -> String {
    match g.split_once('/') {
        Some((rule, "")) => format!("account ({rule})"),
        Some((rule, ent)) => format!("{ent} ({rule})"),
        None => g.to_string(),
    }
}

/// What `candidate` (its apps, rules and lifecycle) would do to every app,
/// against the identities and the state last applied in the database of
/// `current`. Performs nothing.
pub fn plan(current: &Settings, candidate: &Settings) -> anyhow::Result<PlanOutcome> {
    let registry = Registry::load(&current.scim).context("loading schemas")?;
    let apps = admin::compile_candidate(&registry, candidate).map_err(|e| match e {
        AdminError::Candidate(e) => e.context("the candidate configuration"),
        other => other.into(),
    })?;
    let names: Vec<String> = current.apps.iter().map(|a| a.name.clone()).collect();
    with_conn(current, |conn| {
        Ok(admin::plan(conn, &registry, &apps, &names)?)
    })
}

/// Writes the access report of `tenant` (every tenant when `None`) and
/// returns how many grants it holds.
pub fn access_report(
    settings: &Settings,
    tenant: Option<&str>,
    format: report::Format,
    out: &mut impl std::io::Write,
) -> anyhow::Result<usize> {
    let caller = Caller::unrestricted(cli_actor());
    with_conn(settings, |conn| {
        admin::write_access_report(conn, &caller, tenant.map(str::to_string), format, out)
    })
}

/// How the command line's admin actions are audited: `cli/<user>`.
pub fn cli_actor() -> String {
    format!(
        "cli/{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// How `reconcile` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileFormat {
    /// The report as JSON (as the admin API answers).
    Json,
    /// One line per finding.
    Csv,
}

impl std::str::FromStr for ReconcileFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(format!("format must be json or csv, not '{other}'")),
        }
    }
}

/// Reconciles `app` of the configuration: lists its accounts through its
/// adapter and reports orphans, missing and drifted accounts; with
/// `remediate`, repairs them (orphans at once through the adapter, missing
/// and drifted accounts by queueing a convergence that a running gateway
/// carries out). Audited as `actor`.
pub async fn reconcile(
    settings: &Settings,
    app: &str,
    remediate: bool,
    actor: &str,
) -> anyhow::Result<Report> {
    let app_settings = settings
        .apps
        .iter()
        .find(|a| a.name == app)
        .with_context(|| {
            let names: Vec<&str> = settings.apps.iter().map(|a| a.name.as_str()).collect();
            format!(
                "no app is named '{app}' (configured: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })?;
    let registry = Arc::new(Registry::load(&settings.scim).context("loading schemas")?);
    let apps = Apps::compile(
        &registry,
        &settings.apps,
        &settings.rules,
        &settings.lifecycle,
    )
    .context("in [[apps]]")?;
    let adapter = crate::adapters::build(app_settings, &settings.delivery)
        .with_context(|| format!("app {app}"))?
        .with_context(|| format!("app {app} has no adapter: there is nothing to list"))?;
    let db = Db::open(&settings.database).context("opening the database")?;
    let service = AdminService::new(
        db,
        registry,
        Fanout::new(Arc::new(apps)),
        AppAdapters::new(HashMap::from([(app.to_string(), adapter)])),
    );
    Ok(service
        .reconcile_app(&Caller::unrestricted(actor), app, remediate)
        .await?)
}
