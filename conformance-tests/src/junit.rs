//! JUnit XML for CI systems: one `<testsuite>` named `scim-conformance`,
//! one `<testcase>` per check (classname = the area before the `/`), a
//! `<failure>` carrying the reason. Written by hand to keep dependencies
//! small, so escaping lives here too.

use std::fmt::Write as _;

use crate::runner::{CaseResult, Outcome, count};

/// Renders the results as a JUnit XML document.
pub fn render(results: &[CaseResult]) -> String {
    let (_, failed) = count(results);
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"scim-conformance\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{total:.3}\">",
        results.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"scim-conformance\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{total:.3}\">",
        results.len()
    );
    for r in results {
        let area = r.name.split_once('/').map_or("scim", |(area, _)| area);
        let open = format!(
            "    <testcase classname=\"scim-conformance.{}\" name=\"{}\" time=\"{:.3}\"",
            escape(area),
            escape(&r.name),
            r.duration.as_secs_f64()
        );
        match &r.outcome {
            Outcome::Pass => {
                let _ = writeln!(out, "{open}/>");
            }
            Outcome::Fail(reason) => {
                let reason = escape(reason);
                let _ = writeln!(out, "{open}>");
                let _ = writeln!(
                    out,
                    "      <failure message=\"{reason}\">{reason}</failure>"
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Escapes text for XML content and attribute values alike. Characters
/// XML 1.0 cannot carry at all (most C0 controls, U+FFFE/U+FFFF) become
/// U+FFFD; tab, newline and carriage return become character references so
/// attribute-value normalisation keeps them.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.push('\u{FFFD}');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escape_covers_markup_quotes_and_controls() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape("x\ny\tz"), "x&#10;y&#9;z");
        assert_eq!(escape("bell\u{7}\u{FFFF}"), "bell\u{FFFD}\u{FFFD}");
        assert_eq!(escape("ünïcödé ✓"), "ünïcödé ✓");
    }

    #[test]
    fn render_counts_and_escapes_failures() {
        let results = [
            CaseResult {
                name: "users/create".into(),
                outcome: Outcome::Pass,
                duration: Duration::from_millis(12),
            },
            CaseResult {
                name: "filter/eq".into(),
                outcome: Outcome::Fail("got <html> & \"oops\"".into()),
                duration: Duration::from_millis(3),
            },
        ];
        let xml = render(&results);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains(
            "<testcase classname=\"scim-conformance.users\" name=\"users/create\" time=\"0.012\"/>"
        ));
        assert!(xml.contains(
            "<failure message=\"got &lt;html&gt; &amp; &quot;oops&quot;\">got &lt;html&gt; &amp; &quot;oops&quot;</failure>"
        ));
        assert!(!xml.contains("<html>"));
        assert!(xml.ends_with("</testsuites>\n"));
    }
}
