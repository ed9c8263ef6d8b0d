//! A fresh database for one benchmark run: a SQLite file in the run's
//! temporary directory, or a new database created with `CREATE DATABASE` on
//! a PostgreSQL server and dropped again (`WITH (FORCE)`, so a gateway that
//! was killed mid-run cannot keep it alive) when the run ends.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};

/// Tries to drop the database before giving up (2 s apart).
const DROP_ATTEMPTS: u32 = 10;

/// The database the gateway is started on.
pub enum Database {
    /// A SQLite file (removed with the run's temporary directory).
    Sqlite {
        /// `sqlite://…` URL.
        url: String,
    },
    /// A database created for this run on a PostgreSQL server.
    Postgres {
        /// URL of the server's `postgres` maintenance database.
        admin_url: String,
        /// Name of the created database.
        name: String,
        /// URL of the created database.
        url: String,
    },
}

impl Database {
    /// A SQLite file under `dir`, or a new database on the PostgreSQL server
    /// `server` (a `postgres://` URL; any database name in it is replaced).
    pub async fn create(server: Option<&str>, dir: &Path) -> anyhow::Result<Self> {
        let Some(server) = server else {
            let path = dir.join("gateway.db");
            return Ok(Database::Sqlite {
                url: format!("sqlite://{}", path.display()),
            });
        };
        let name = format!(
            "scim_bench_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let admin_url = with_database(server, "postgres")?;
        execute(&admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let url = with_database(server, &name)?;
        Ok(Database::Postgres {
            admin_url,
            name,
            url,
        })
    }

    /// The URL the gateway gets as `DATABASE_URL`.
    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite { url } | Database::Postgres { url, .. } => url,
        }
    }

    /// Which backend, for the report.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "SQLite",
            Database::Postgres { .. } => "PostgreSQL",
        }
    }

    /// Drops a PostgreSQL database; nothing to do for SQLite. Retries for a
    /// while, so a server that is restarting does not leave the database
    /// behind.
    pub async fn remove(self) -> anyhow::Result<()> {
        let Database::Postgres {
            admin_url, name, ..
        } = self
        else {
            return Ok(());
        };
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let mut attempt = 1;
        loop {
            match execute(&admin_url, &sql).await {
                Ok(()) => return Ok(()),
                Err(_) if attempt < DROP_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    return Err(
                        e.context(format!("dropping database {name}; drop it by hand: {sql}"))
                    );
                }
            }
        }
    }
}

/// One audit row written by the gateway's delivery engine.
#[derive(Debug, Clone, QueryableByName)]
pub struct DeliveryRow {
    /// The downstream app.
    #[diesel(sql_type = Nullable<Text>)]
    pub app: Option<String>,
    /// The identity delivered.
    #[diesel(sql_type = Nullable<Text>)]
    pub resource_id: Option<String>,
    /// `delivery.create`, `delivery.update`, …
    #[diesel(sql_type = Text)]
    pub action: String,
    /// `success` or `failure: …`.
    #[diesel(sql_type = Text)]
    pub outcome: String,
    /// When the outcome was recorded (RFC 3339 UTC, ms).
    #[diesel(sql_type = Text)]
    pub at: String,
}

const DELIVERY_ROWS: &str = "SELECT app, resource_id, action, outcome, at FROM audit_events \
                             WHERE action LIKE 'delivery.%' ORDER BY seq";

impl Database {
    /// Every `delivery.*` audit row the gateway has written, oldest first.
    /// Reads alongside the running gateway (SQLite in WAL mode lets it).
    pub async fn delivery_rows(&self) -> anyhow::Result<Vec<DeliveryRow>> {
        let url = self.url().to_string();
        let sqlite = matches!(self, Database::Sqlite { .. });
        tokio::task::spawn_blocking(move || {
            if sqlite {
                let path = url.strip_prefix("sqlite://").unwrap_or(&url);
                let mut conn =
                    SqliteConnection::establish(path).with_context(|| format!("opening {path}"))?;
                conn.batch_execute("PRAGMA busy_timeout = 10000;")?;
                Ok(diesel::sql_query(DELIVERY_ROWS).load(&mut conn)?)
            } else {
                let mut conn = PgConnection::establish(&url).context("connecting to PostgreSQL")?;
                Ok(diesel::sql_query(DELIVERY_ROWS).load(&mut conn)?)
            }
        })
        .await?
    }
}

/// `pg_database_size` of the connected database.
#[derive(QueryableByName)]
struct DatabaseSize {
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

impl Database {
    /// The database's size on disk now: the SQLite file with its WAL, or
    /// `pg_database_size`. A soak reports it beside the gateway's memory,
    /// whose file-backed part follows it.
    pub async fn size_bytes(&self) -> anyhow::Result<u64> {
        match self {
            Database::Sqlite { url } => {
                let path = url.strip_prefix("sqlite://").unwrap_or(url);
                let len = |p: &str| std::fs::metadata(p).map_or(0, |m| m.len());
                Ok(len(path) + len(&format!("{path}-wal")))
            }
            Database::Postgres { url, .. } => {
                let url = url.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn =
                        PgConnection::establish(&url).context("connecting to PostgreSQL")?;
                    let size: DatabaseSize =
                        diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
                            .get_result(&mut conn)?;
                    Ok(u64::try_from(size.bytes).unwrap_or(0))
                })
                .await?
            }
        }
    }
}

async fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let (url, sql) = (url.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).context("connecting to PostgreSQL")?;
        conn.batch_execute(&sql)?;
        anyhow::Ok(())
    })
    .await?
}

/// `url` with its database name replaced by `name` (query kept).
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base
        .find("://")
        .filter(|_| base.starts_with("postgres://") || base.starts_with("postgresql://"))
        .with_context(|| format!("not a postgres:// URL: {url}"))?
        + 3;
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_query_kept() {
        let url = |u| with_database(u, "db1").ok();
        let plain = url("postgres://postgres@127.0.0.1:5432");
        assert_eq!(
            plain.as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/db1")
        );
        let named = url("postgresql://u:p@h/other?sslmode=disable");
        assert_eq!(
            named.as_deref(),
            Some("postgresql://u:p@h/db1?sslmode=disable")
        );
        assert!(url("mysql://h/x").is_none());
    }
}
