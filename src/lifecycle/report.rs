//! The access report for reviews and recertification: every grant in force
//! (identity, app, entitlement, the rule that grants it, since when and
//! until when), as CSV or NDJSON, read page by page so any number of grants
//! takes the same memory. The admin API streams it; `scim-gateway
//! access-report` writes it to a file.

use std::collections::HashMap;
use std::str::FromStr;

use serde_json::json;

use crate::format::csv_report_field;
use crate::store::{self, AnyConnection, StoreError};

/// Grants read per page.
const PAGE: i64 = 500;

/// The first line of the CSV form.
pub const CSV_HEADER: &str = "app,identity,userName,entitlement,rule,granted_at,expires_at\n";

/// The report's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 with a header line; cells that a spreadsheet would run as
    /// formulas are neutralised.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Self::Csv),
            "ndjson" => Ok(Self::Ndjson),
            other => Err(format!("format must be csv or ndjson, not '{other}'")),
        }
    }
}

impl Format {
    /// The media type of the report.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// Where the next page starts: the last grant's (app, identity,
/// entitlement, rule).
pub type Cursor = (String, String, String, String);

/// One page of the report, formatted.
#[derive(Debug)]
pub struct Page {
    /// The lines of this page.
    pub text: String,
    /// How many grants it holds.
    pub grants: usize,
    /// Where the next page starts; `None` after the last.
    pub next: Option<Cursor>,
}

/// Reads and formats the page of grants after `after` (from the start when
/// `None`), of `tenant` only when given.
pub fn page(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    after: Option<&Cursor>,
    format: Format,
) -> Result<Page, StoreError> {
    let rows = store::grants::list_grants(conn, tenant, after, PAGE)?;
    let ids: Vec<String> = rows.iter().map(|g| g.resource_id.clone()).collect();
    let names: HashMap<String, Option<String>> =
        store::find_displays(conn, &ids)?.into_iter().collect();
    let mut text = String::new();
    for g in &rows {
        let name = names
            .get(&g.resource_id)
            .cloned()
            .flatten()
            .unwrap_or_default();
        match format {
            Format::Csv => {
                let fields = [
                    g.app.as_str(),
                    g.resource_id.as_str(),
                    name.as_str(),
                    g.entitlement.as_str(),
                    g.rule.as_str(),
                    g.granted_at.as_str(),
                    g.expires_at.as_deref().unwrap_or(""),
                ];
                let cells: Vec<String> = fields.iter().map(|f| csv_report_field(f)).collect();
                text.push_str(&cells.join(","));
            }
            Format::Ndjson => text.push_str(
                &json!({
                    "app": g.app, "identity": g.resource_id, "userName": name,
                    "entitlement": g.entitlement, "rule": g.rule,
                    "granted_at": g.granted_at, "expires_at": g.expires_at,
                })
                .to_string(),
            ),
        }
        text.push('\n');
    }
    let next = if rows.len() as i64 == PAGE {
        rows.last().map(|g| {
            (
                g.app.clone(),
                g.resource_id.clone(),
                g.entitlement.clone(),
                g.rule.clone(),
            )
        })
    } else {
        None
    };
    Ok(Page {
        text,
        grants: rows.len(),
        next,
    })
}

/// Writes the whole report (header included) and returns how many grants
/// it holds.
pub fn write(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    format: Format,
    out: &mut impl std::io::Write,
) -> anyhow::Result<usize> {
    if format == Format::Csv {
        out.write_all(CSV_HEADER.as_bytes())?;
    }
    let mut after = None;
    let mut total = 0;
    loop {
        let p = page(conn, tenant, after.as_ref(), format)?;
        out.write_all(p.text.as_bytes())?;
        total += p.grants;
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    out.flush()?;
    Ok(total)
}
