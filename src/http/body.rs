//! Reading request bodies: media type (415), size (413, also when the
//! client lies about or omits Content-Length), a deadline for the whole body
//! (408, so a stalled upload frees its connection), JSON syntax and nesting
//! depth (400 `invalidSyntax`) — all before anything touches the store.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde_json::Value;

use crate::error::ScimError;

/// Body limits, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body in bytes.
    pub max_bytes: usize,
    /// Deepest JSON nesting.
    pub max_depth: usize,
    /// Longest the client may take to send the body.
    pub read_timeout: Duration,
}

/// Reads and parses a JSON request body.
pub async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    limits: BodyLimits,
) -> Result<Value, ScimError> {
    check_media_type(req)?;
    let too_large = || {
        ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The request body is larger than {} bytes.",
                limits.max_bytes
            ),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limits.max_bytes
    {
        return Err(too_large());
    }
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ScimError::invalid_syntax(format!("The request body could not be read: {e}"))
            })?;
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(limits.read_timeout, read)
        .await
        .map_err(|_| {
            ScimError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The request body did not arrive within {} s.",
                    limits.read_timeout.as_secs_f64()
                ),
            )
        })??;
    parse_json(&body, limits.max_depth)
}

/// Parses JSON after checking its nesting depth.
pub fn parse_json(bytes: &[u8], max_depth: usize) -> Result<Value, ScimError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax("The request body is empty."));
    }
    if depth(bytes) > max_depth {
        return Err(ScimError::invalid_syntax(format!(
            "JSON nesting is deeper than {max_depth} levels."
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("The request body is not valid JSON: {e}")))
}

/// Maximum nesting depth of a JSON text (strings skipped).
fn depth(bytes: &[u8]) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                d += 1;
                max = max.max(d);
            }
            b'}' | b']' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Accepts `application/scim+json` and `application/json` (any parameters);
/// a missing Content-Type is tolerated, anything else is 415: another
/// JSON-based type (`application/json-patch+json`) means something else,
/// and a type without its `application/` is not one.
fn check_media_type(req: &HttpRequest) -> Result<(), ScimError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence == "application/scim+json" {
        Ok(())
    } else {
        Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type '{essence}' is not supported; use application/scim+json."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(depth(br#"{"a":"[[[[{{{"}"#), 1);
        assert_eq!(depth(br#"[[{"a":[1]}]]"#), 4);
        assert_eq!(depth(br#"{"a":"\"[["}"#), 1);
    }

    #[test]
    fn deep_json_is_invalid_syntax() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let e = parse_json(deep.as_bytes(), 32).unwrap_err();
        assert_eq!(e.scim_type().map(|t| t.as_str()), Some("invalidSyntax"));
        assert!(parse_json(b"{bad", 32).is_err());
        assert!(parse_json(b"  ", 32).is_err());
    }
}
