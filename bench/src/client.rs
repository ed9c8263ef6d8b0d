//! One keep-alive HTTP/1.1 connection to the gateway on loopback, and the
//! requests the benchmark sends over it. Each benchmark connection owns one
//! of these and issues its requests back to back, as a load generator such
//! as wrk does; there is no pool in between, so the number of connections
//! the gateway sees is exactly the number asked for.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Media type of SCIM request bodies.
const SCIM_JSON: &str = "application/scim+json";

/// Where the gateway listens and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The gateway's loopback address.
    pub addr: SocketAddr,
    /// `Host` header value (`127.0.0.1:port`).
    host: HeaderValue,
    /// `Authorization: Bearer …` header value.
    auth: HeaderValue,
}

impl Target {
    /// A target at `addr` using bearer `token`.
    pub fn new(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            auth: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }
}

/// One request: method, path (with query) and optional JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path and query, e.g. `/scim/v2/Users?filter=…`.
    pub path: String,
    /// JSON body, if any.
    pub body: Option<Bytes>,
    /// Sends `Prefer: return=minimal` (the gateway answers a PATCH with 204).
    pub minimal: bool,
}

impl Call {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: None,
            minimal: false,
        }
    }

    /// A request with a JSON body.
    pub fn with_body(method: Method, path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            method,
            path: path.into(),
            body: Some(body.into()),
            minimal: false,
        }
    }

    /// The same request asking for `Prefer: return=minimal`.
    pub fn minimal(mut self) -> Self {
        self.minimal = true;
        self
    }
}

/// A response: status and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response body.
    pub body: Bytes,
}

impl Reply {
    /// Status and the start of the body, for error messages.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let short: String = text.chars().take(300).collect();
        format!("{} {short}", self.status)
    }
}

/// One open keep-alive connection.
pub struct Conn {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection (TCP_NODELAY, HTTP/1.1 keep-alive).
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, driver) = handshake(TokioIo::new(stream)).await?;
        // The driver ends when the connection closes; a failure shows up on
        // the next send, where the caller counts it and reconnects.
        tokio::spawn(driver);
        Ok(Self {
            target: target.clone(),
            sender,
        })
    }

    /// Sends `call` and reads the whole response, failing after `timeout`.
    pub async fn send(&mut self, call: &Call, timeout: Duration) -> anyhow::Result<Reply> {
        tokio::time::timeout(timeout, self.exchange(call))
            .await
            .with_context(|| format!("{} {} timed out", call.method, call.path))?
    }

    async fn exchange(&mut self, call: &Call) -> anyhow::Result<Reply> {
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(call.path.as_str())
            .header(header::HOST, self.target.host.clone())
            .header(header::AUTHORIZATION, self.target.auth.clone());
        if call.body.is_some() {
            req = req.header(header::CONTENT_TYPE, SCIM_JSON);
        }
        if call.minimal {
            req = req.header("prefer", "return=minimal");
        }
        let req = req.body(Full::new(call.body.clone().unwrap_or_default()))?;
        self.sender.ready().await?;
        let res = self.sender.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }
}
