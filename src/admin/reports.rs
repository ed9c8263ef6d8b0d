//! The access report: every grant in force (identity, app, entitlement,
//! rule, since and until when), read a page at a time so the admin API can
//! stream it; `crate::lifecycle::report` formats the pages. A
//! tenant-scoped caller gets its own tenant's grants only.

use super::{AdminError, AdminService, Caller};
use crate::lifecycle::report::{self, Cursor, Format, Page};
use crate::store::{AnyConnection, Db};

/// An access report being read: the tenant it covers and its format.
#[derive(Clone)]
pub struct AccessReport {
    db: Db,
    tenant: Option<String>,
    format: Format,
}

impl AccessReport {
    /// The CSV header line, when the format has one.
    pub fn header(&self) -> Option<&'static str> {
        (self.format == Format::Csv).then_some(report::CSV_HEADER)
    }

    /// The page of grants after `after` (from the first when `None`).
    pub async fn page(&self, after: Option<Cursor>) -> Result<Page, AdminError> {
        let (tenant, format) = (self.tenant.clone(), self.format);
        Ok(self
            .db
            .run(move |conn| report::page(conn, tenant.as_deref(), after.as_ref(), format))
            .await?)
    }
}

impl AdminService {
    /// The access report of `tenant` (every tenant when `None`, as far as
    /// the caller may see).
    pub fn access_report(
        &self,
        caller: &Caller,
        tenant: Option<String>,
        format: Format,
    ) -> Result<AccessReport, AdminError> {
        Ok(AccessReport {
            db: self.db.clone(),
            tenant: caller.tenant_filter(tenant)?,
            format,
        })
    }
}

/// Writes the whole access report (header included) on one connection and
/// returns how many grants it holds: the command line's form, which needs
/// no pool.
pub fn write_access_report(
    conn: &mut AnyConnection,
    caller: &Caller,
    tenant: Option<String>,
    format: Format,
    out: &mut impl std::io::Write,
) -> anyhow::Result<usize> {
    let tenant = caller.tenant_filter(tenant)?;
    report::write(conn, tenant.as_deref(), format, out)
}
