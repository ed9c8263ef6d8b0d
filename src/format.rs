//! Text formats shared by the store, exports and reports: the one timestamp
//! format the gateway stores and prints, and CSV cells.

use chrono::{DateTime, Utc};

/// A time as the gateway stores and prints it: RFC 3339, UTC, milliseconds
/// (`2026-01-31T09:15:00.000Z`). Stored times compare correctly as text.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The current time, as [`timestamp`] writes it.
pub fn now() -> String {
    timestamp(Utc::now())
}

/// One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line
/// break, with quotes doubled. For files that programs read.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV cell of a report that people open in a spreadsheet: as
/// [`csv_field`], but a value that a spreadsheet would run as a formula
/// (one starting with `=`, `+`, `-`, `@`, a tab or a carriage return, such as
/// a `userName` an attacker chose) is prefixed with `'` so it shows as text.
pub fn csv_report_field(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        csv_field(&format!("'{s}"))
    } else {
        csv_field(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_zulu() {
        let t = DateTime::parse_from_rfc3339("2026-01-31T09:15:00.5+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2026-01-31T07:15:00.500Z");
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn report_cells_never_start_a_formula() {
        assert_eq!(
            csv_report_field("=HYPERLINK(\"x\")"),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(csv_report_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_report_field("-1+1"), "'-1+1");
        assert_eq!(csv_report_field("alice@example.com"), "alice@example.com");
    }
}
