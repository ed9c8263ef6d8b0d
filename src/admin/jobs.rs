//! Jobs and accounts of one app: listing and reading jobs, reading the
//! account as last applied, and retrying dead letters.

use serde_json::json;

use super::{AdminError, AdminService, Caller, record};
use crate::format::now;
use crate::store::jobs::{self, JobRow, state};
use crate::store::{self, AccountRow};

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in this state (`pending`, `running` or `dead`).
    pub state: Option<String>,
    /// Only jobs of identities after this id.
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// One page of an app's jobs, in identity-id order.
#[derive(Debug)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobRow>,
    /// The `after` of the next page, when this one is full.
    pub next: Option<String>,
}

impl AdminService {
    /// The app's jobs, a page at a time.
    pub async fn list_jobs(
        &self,
        caller: &Caller,
        app: &str,
        filter: JobFilter,
    ) -> Result<JobPage, AdminError> {
        self.known_app(caller, app)?;
        if let Some(s) = &filter.state
            && ![state::PENDING, state::RUNNING, state::DEAD].contains(&s.as_str())
        {
            return Err(AdminError::JobState);
        }
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let app = app.to_string();
        let rows = self
            .db
            .run(move |conn| {
                jobs::list_jobs(
                    conn,
                    &app,
                    filter.state.as_deref(),
                    filter.after.as_deref(),
                    limit,
                )
            })
            .await?;
        let next = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| r.resource_id.clone()))
            .flatten();
        Ok(JobPage { jobs: rows, next })
    }

    /// The job of identity `id` in the app, with its last error.
    pub async fn get_job(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
    ) -> Result<JobRow, AdminError> {
        self.known_app(caller, app)?;
        let (app, id) = (app.to_string(), id.to_string());
        self.db
            .run(move |conn| jobs::find_job(conn, &app, &id))
            .await?
            .ok_or(AdminError::NoJob)
    }

    /// The account of identity `id` in the app, as last applied.
    pub async fn get_account(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
    ) -> Result<AccountRow, AdminError> {
        self.known_app(caller, app)?;
        let (app, id) = (app.to_string(), id.to_string());
        self.db
            .run(move |conn| store::find_account(conn, &app, &id))
            .await?
            .ok_or(AdminError::NoAccount)
    }

    /// Makes the app's dead letters due now (of identity `id` only, or every
    /// one when `None`), audited as `admin.jobs.retry`; returns how many.
    pub async fn retry_jobs(
        &self,
        caller: &Caller,
        app: &str,
        id: Option<String>,
    ) -> Result<usize, AdminError> {
        let policy = self.known_app(caller, app)?;
        let c = caller.clone();
        let n = self
            .db
            .write(move |conn| {
                let n = jobs::retry_dead(conn, &policy.name, id.as_deref(), &now())?;
                let detail = json!({ "retried": n });
                record(conn, &c, "admin.jobs.retry", &policy, id.as_deref(), detail)?;
                Ok(n)
            })
            .await?;
        self.fanout.wake(app);
        Ok(n)
    }
}
