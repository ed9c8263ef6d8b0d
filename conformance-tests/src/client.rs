//! A small blocking SCIM HTTP client. It knows the base URL and the bearer
//! token, sends `application/scim+json`, never follows redirects (a check
//! must see exactly what the server answered) and turns every transport
//! problem into an `Err(String)` that becomes the check's failure reason.
//! A [`Reply`] keeps status, headers and raw body so checks can assert on
//! all three, and describes itself compactly for failure messages.

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Client as Http;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The SCIM media type (RFC 7644 §8.1).
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

/// Longest body excerpt quoted in a failure message.
const EXCERPT_CHARS: usize = 300;

/// The service provider under test: base URL, token and HTTP connection pool.
pub struct Client {
    http: Http,
    base: String,
    token: String,
}

impl Client {
    /// Builds a client for `base_url` (e.g. `http://host/scim/v2`); every
    /// request gives up after `timeout`.
    pub fn new(base_url: &str, token: &str, timeout: Duration) -> Result<Self, String> {
        let http = Http::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Starts a request to `path`, relative to the base URL (`/Users/123`).
    pub fn request(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            client: self,
            method,
            path: path.to_owned(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            token: Some(self.token.clone()),
        }
    }

    /// Starts a `GET`.
    pub fn get(&self, path: &str) -> Req<'_> {
        self.request(Method::GET, path)
    }

    /// Starts a `POST` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Req<'_> {
        self.request(Method::POST, path).json(body)
    }

    /// Starts a `PUT` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Req<'_> {
        self.request(Method::PUT, path).json(body)
    }

    /// Starts a `PATCH` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> Req<'_> {
        self.request(Method::PATCH, path).json(body)
    }

    /// Starts a `DELETE`.
    pub fn delete(&self, path: &str) -> Req<'_> {
        self.request(Method::DELETE, path)
    }
}

/// One request being built; [`Req::send`] performs it.
pub struct Req<'a> {
    client: &'a Client,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<(String, String)>,
    token: Option<String>,
}

impl Req<'_> {
    /// Adds a query parameter (URL-encoded on sending).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a JSON body sent as `application/scim+json`.
    pub fn json(self, body: &Value) -> Self {
        self.raw_body(SCIM_MEDIA_TYPE, &body.to_string())
    }

    /// Sets a body verbatim, e.g. deliberately malformed JSON.
    pub fn raw_body(mut self, content_type: &str, body: &str) -> Self {
        self.body = Some((content_type.to_owned(), body.to_owned()));
        self
    }

    /// Sends no `Authorization` header at all.
    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Sends this bearer token instead of the configured one.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Performs the request and reads the whole answer.
    pub fn send(self) -> Result<Reply, String> {
        let mut what = format!("{} {}", self.method, self.path);
        for (k, v) in &self.query {
            what.push(if what.contains('?') { '&' } else { '?' });
            what.push_str(&format!("{k}={v}"));
        }
        let url = format!("{}{}", self.client.base, self.path);
        let mut rb = self
            .client
            .http
            .request(self.method, url)
            .header("Accept", SCIM_MEDIA_TYPE)
            .query(&self.query);
        if let Some(token) = &self.token {
            rb = rb.bearer_auth(token);
        }
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some((content_type, body)) = self.body {
            rb = rb.header("Content-Type", content_type).body(body);
        }
        let resp = rb.send().map_err(|e| format!("{what}: {}", chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .map_err(|e| format!("{what}: reading the body: {}", chain(&e)))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).ok();
        Ok(Reply {
            what,
            status,
            headers,
            text,
            json,
        })
    }
}

/// Renders an error with its causes on one line (reqwest hides the useful
/// part, e.g. "connection refused", in the source chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A complete HTTP answer.
pub struct Reply {
    /// The request that produced it, e.g. `GET /Users?filter=…`.
    pub what: String,
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as text (lossily decoded).
    pub text: String,
    json: Option<Value>,
}

impl Reply {
    /// A header's value, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON.
    pub fn body(&self) -> Result<&Value, String> {
        self.json
            .as_ref()
            .ok_or_else(|| format!("body is not JSON ({})", self.describe()))
    }

    /// Fails unless the status is `want`.
    pub fn expect_status(&self, want: u16) -> Result<(), String> {
        if self.status == want {
            Ok(())
        } else {
            Err(format!(
                "expected status {want}, got {} ({})",
                self.status,
                self.describe()
            ))
        }
    }

    /// Fails unless the status is `want`, the Content-Type is
    /// `application/scim+json` and the body is JSON; returns the body.
    pub fn json_with(&self, want: u16) -> Result<&Value, String> {
        self.expect_status(want)?;
        let content_type = self.header("content-type").unwrap_or("(none)");
        if !is_media_type(content_type, SCIM_MEDIA_TYPE) {
            return Err(format!(
                "Content-Type is {content_type}, want {SCIM_MEDIA_TYPE} ({})",
                self.describe()
            ));
        }
        self.body()
    }

    /// `GET /x -> 400: {"detail":…}` with the body cut short.
    pub fn describe(&self) -> String {
        let mut excerpt: String = self
            .text
            .chars()
            .take(EXCERPT_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if self.text.chars().count() > EXCERPT_CHARS {
            excerpt.push('…');
        }
        format!("{} -> {}: {}", self.what, self.status, excerpt.trim())
    }
}

/// Whether a Content-Type header names `want`, ignoring parameters and case.
pub fn is_media_type(header: &str, want: &str) -> bool {
    header
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_ignores_parameters_and_case() {
        assert!(is_media_type("application/scim+json", SCIM_MEDIA_TYPE));
        assert!(is_media_type(
            "Application/SCIM+JSON; charset=utf-8",
            SCIM_MEDIA_TYPE
        ));
        assert!(!is_media_type("application/json", SCIM_MEDIA_TYPE));
        assert!(!is_media_type("", SCIM_MEDIA_TYPE));
    }
}
