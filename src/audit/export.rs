//! Export for auditors: audit rows as NDJSON or CSV, in chain order, page
//! by page (keyset on `chain_pos`), so a year of events streams in constant
//! memory. Every line carries `chain_pos`, `prev_hash` and `hash`, so an
//! unfiltered NDJSON export verifies offline (`audit verify --file`).
//!
//! Used by `GET /admin/audit` (async, one page per database call) and by
//! `scim-gateway audit export` (blocking, straight to a file).

use std::io::Write;
use std::str::FromStr;

use crate::format::csv_report_field as csv_cell;
use crate::store::{self, AnyConnection, AuditFilter, AuditRecord, StoreError};

/// Rows per database page.
pub const PAGE: i64 = 1000;

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line; verifiable offline.
    Ndjson,
    /// RFC 4180 CSV with a header line; for spreadsheets (not verifiable:
    /// an empty cell may be empty text or absent).
    Csv,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            other => Err(format!("format must be ndjson or csv, not '{other}'")),
        }
    }
}

impl Format {
    /// The response media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// What comes before the first row.
    pub fn header(self) -> &'static str {
        match self {
            Format::Ndjson => "",
            Format::Csv => {
                "chain_pos,seq,at,tenant,actor,action,resource_type,resource_id,outcome,detail,\
                 app,prev_hash,hash\n"
            }
        }
    }

    /// Appends one row, newline-terminated.
    pub fn write_row(self, out: &mut String, r: &AuditRecord) {
        match self {
            Format::Ndjson => {
                // A struct of strings and integers always serialises.
                out.push_str(&serde_json::to_string(r).unwrap_or_default());
            }
            Format::Csv => {
                let pos = r.chain_pos.to_string();
                let seq = r.seq.to_string();
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                let cells = [
                    pos,
                    seq,
                    r.at.clone(),
                    o(&r.tenant),
                    r.actor.clone(),
                    r.action.clone(),
                    o(&r.resource_type),
                    o(&r.resource_id),
                    r.outcome.clone(),
                    o(&r.detail),
                    o(&r.app),
                    o(&r.prev_hash),
                    o(&r.hash),
                ];
                let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
                out.push_str(&line.join(","));
            }
        }
        out.push('\n');
    }
}

/// Parses a time bound (RFC 3339, or a `YYYY-MM-DD` date meaning its UTC
/// midnight) into the stored form, so bounds compare correctly as text.
pub fn parse_time(s: &str) -> Result<String, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .map_err(|_| {
            format!("'{s}' is not an RFC 3339 time (2026-01-31T00:00:00Z) or a date (2026-01-31)")
        })?;
    Ok(crate::format::timestamp(t))
}

/// Writes every row matching `filter` to `out` (blocking), page by page.
/// Returns the number of rows written.
pub fn export_db(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
    format: Format,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    // Every row committed before the export is in it (PostgreSQL).
    store::seal_all(conn)?;
    out.write_all(format.header().as_bytes())?;
    let mut after = 0;
    let mut n = 0;
    let mut buf = String::new();
    loop {
        let page = store::find_audit_page(conn, filter, after, None, PAGE)?;
        buf.clear();
        for r in &page {
            format.write_row(&mut buf, r);
        }
        out.write_all(buf.as_bytes())?;
        n += page.len() as u64;
        match page.last() {
            Some(r) if page.len() as i64 == PAGE => after = r.chain_pos,
            _ => break,
        }
    }
    out.flush()?;
    Ok(n)
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_normalised() {
        assert_eq!(
            parse_time("2026-01-31T01:00:00+01:00").unwrap(),
            "2026-01-31T00:00:00.000Z"
        );
        assert_eq!(
            parse_time("2026-01-31").unwrap(),
            "2026-01-31T00:00:00.000Z"
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let r = AuditRecord {
            chain_pos: 1,
            seq: 1,
            at: "t".into(),
            tenant: None,
            actor: "a".into(),
            action: "scim.create".into(),
            resource_type: None,
            resource_id: None,
            outcome: "failure: x, \"y\"".into(),
            detail: Some(r#"{"a":1,"b":2}"#.into()),
            app: None,
            prev_hash: Some("p".into()),
            hash: Some("h".into()),
        };
        let mut s = String::new();
        Format::Csv.write_row(&mut s, &r);
        assert_eq!(
            s,
            "1,1,t,,a,scim.create,,,\"failure: x, \"\"y\"\"\",\"{\"\"a\"\":1,\"\"b\"\":2}\",,p,h\n"
        );
        assert_eq!(Format::Csv.header().split(',').count(), 13);
    }
}
