//! What HTTP-based adapters share: the client, and the mapping from an HTTP
//! outcome to the engine's error classes.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::{AdapterError, ErrorKind};

/// An HTTP client with the app's timeout (connect and whole request).
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("scim-gateway/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Reads a secret from an environment variable or a file (trimmed).
pub fn read_secret(
    env: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    match (env, file) {
        (Some(var), None) => std::env::var(var)
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{what}: environment variable {var} is not set")),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| anyhow::anyhow!("{what}: reading {}: {e}", path.display())),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => anyhow::bail!("{what}: set one of the environment variable or file"),
    }
}

/// A transport failure (no HTTP status): always transient.
pub fn transport_error(e: &reqwest::Error) -> AdapterError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // reqwest's own message names the URL, never headers or credentials.
    AdapterError::transient(format!("{what}: {e}"))
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The error class of a non-success status.
pub fn status_error(status: StatusCode, headers: &HeaderMap, body: &str) -> AdapterError {
    let kind = match status.as_u16() {
        429 => ErrorKind::RateLimited(retry_after(headers)),
        401 | 403 => ErrorKind::Unauthorized,
        404 | 410 => ErrorKind::NotFound,
        408 | 425 => ErrorKind::Transient,
        s if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    };
    AdapterError {
        kind,
        status: Some(status.as_u16()),
        message: summarize(body),
    }
}

/// A short, single-line excerpt of a response body for error messages: the
/// SCIM `detail` when there is one.
pub fn summarize(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(d) = v.get("detail").and_then(|d| d.as_str())
    {
        return truncate(d);
    }
    if body.trim().is_empty() {
        return "empty response body".into();
    }
    truncate(body)
}

fn truncate(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_map_to_engine_classes() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let e = status_error(StatusCode::TOO_MANY_REQUESTS, &h, "");
        assert_eq!(e.kind, ErrorKind::RateLimited(Some(Duration::from_secs(7))));
        let none = HeaderMap::new();
        assert_eq!(
            status_error(StatusCode::BAD_GATEWAY, &none, "").kind,
            ErrorKind::Transient
        );
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, &none, r#"{"detail":"no"}"#).message,
            "no"
        );
        assert_eq!(
            status_error(StatusCode::UNAUTHORIZED, &none, "").kind,
            ErrorKind::Unauthorized
        );
        assert_eq!(
            status_error(StatusCode::NOT_FOUND, &none, "").kind,
            ErrorKind::NotFound
        );
    }

    #[test]
    fn retry_after_accepts_http_dates() {
        let mut h = HeaderMap::new();
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
    }
}
