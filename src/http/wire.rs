//! The connection under the HTTP parser.
//!
//! The HTTP/1 parser answers some requests by itself, before any route or
//! middleware runs: a request head over its 128 KiB buffer (431), a head
//! that is not HTTP at all (400: a NUL byte in the path, a malformed
//! header), a head that arrives too slowly (408). It answers with no body,
//! yet a SCIM client is owed an RFC 7644 error for every 4xx.
//!
//! [`ScimWire`] wraps each connection (below TLS's plaintext, above the
//! socket) and writes a SCIM error in place of such an answer. It knows one
//! by its shape: a 4xx status line whose head says `content-length: 0`,
//! the last bytes written before the connection closes. The gateway's own
//! 4xx answers always carry a body, so they never match. A head that
//! overflowed while its first line was still arriving, or whose first line
//! alone is long, is a URI that is too long: 414 instead of 431.
//!
//! ```text
//!  socket ─▶ ScimWire::poll_read (counts the request line) ─▶ HTTP parser
//!  socket ◀─ ScimWire::poll_write (canned 4xx ─▶ SCIM error) ◀─ HTTP parser
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A request line longer than this is what made a head too large.
const LONG_LINE: usize = 8 * 1024;

/// A connection whose parser-made 4xx answers become SCIM errors.
pub struct ScimWire<T> {
    inner: T,
    /// Bytes of the current request's first line read so far.
    request_line: usize,
    /// Whether that line has ended.
    line_done: bool,
    /// A replacement being written: its bytes, how many are written, and
    /// how many bytes of the caller's buffer it stands for.
    out: Option<(Vec<u8>, usize, usize)>,
    /// Whether answers are looked at (not on HTTP/2, which the parser
    /// answers in frames of its own).
    watch: bool,
}

impl<T> ScimWire<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            request_line: 0,
            line_done: false,
            out: None,
            watch: true,
        }
    }

    /// Wraps a connection whose answers are passed on untouched.
    pub fn passthrough(inner: T) -> Self {
        Self {
            watch: false,
            ..Self::new(inner)
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn saw(&mut self, bytes: &[u8]) {
        if self.line_done {
            return;
        }
        match bytes.iter().position(|b| *b == b'\n') {
            Some(i) => {
                self.request_line += i;
                self.line_done = true;
            }
            None => self.request_line += bytes.len(),
        }
    }

    fn uri_too_long(&self) -> bool {
        !self.line_done || self.request_line > LONG_LINE
    }
}

/// Where a parser-made 4xx starts in `buf`, and its status: a response head
/// that ends `buf`, has a 4xx status and says `content-length: 0`.
fn canned(buf: &[u8]) -> Option<(usize, u16)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = buf
        .windows(9)
        .rposition(|w| w == b"HTTP/1.1 " || w == b"HTTP/1.0 ")?;
    let head = &buf[start..];
    let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    let empty = head
        .windows(19)
        .any(|w| w.eq_ignore_ascii_case(b"content-length: 0\r\n"));
    ((400..500).contains(&status) && empty).then_some((start, status))
}

/// The SCIM error that stands in for a parser's bare answer.
fn scim_error(status: u16, uri_too_long: bool) -> Vec<u8> {
    let (status, reason, detail) = match status {
        431 if uri_too_long => (
            414,
            "URI Too Long",
            "The request URI is too long. Send a long filter in the body of POST /.search.",
        ),
        431 => (
            431,
            "Request Header Fields Too Large",
            "The request headers are too large.",
        ),
        408 => (
            408,
            "Request Timeout",
            "The request head did not arrive in time.",
        ),
        400 => (
            400,
            "Bad Request",
            "The request is not valid HTTP: its request line or a header is malformed.",
        ),
        other => (other, "Client Error", "The request was refused."),
    };
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "detail": detail,
    })
    .to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/scim+json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<T: AsyncRead + Unpin> AsyncRead for ScimWire<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled
            && !this.line_done
        {
            this.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ScimWire<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.watch {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.out.is_none() {
            match canned(buf) {
                // What comes before it goes out as it is first.
                Some((start, _)) if start > 0 => {
                    return Pin::new(&mut this.inner).poll_write(cx, &buf[..start]);
                }
                Some((_, status)) => {
                    this.out = Some((scim_error(status, this.uri_too_long()), 0, buf.len()));
                }
                None => {
                    if buf.starts_with(b"HTTP/1.") {
                        // An answer of its own: the next request starts afresh.
                        this.request_line = 0;
                        this.line_done = false;
                    }
                    return Pin::new(&mut this.inner).poll_write(cx, buf);
                }
            }
        }
        let Some((bytes, written, stands_for)) = &mut this.out else {
            return Poll::Ready(Ok(0));
        };
        while *written < bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = *stands_for;
        this.out = None;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_4xx_at_the_end_is_found_after_what_came_before() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".as_slice();
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";
        let both = [ok, bare.as_slice()].concat();
        assert_eq!(canned(&both), Some((ok.len(), 431)));
        assert_eq!(canned(bare), Some((0, 431)));
        assert_eq!(canned(ok), None);
        // A 4xx of the gateway's own carries a body.
        let own = b"HTTP/1.1 404 Not Found\r\ncontent-length: 90\r\n\r\n".as_slice();
        assert_eq!(canned(own), None);
        let no_content = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n".as_slice();
        assert_eq!(canned(no_content), None);
    }

    #[test]
    fn an_unfinished_or_long_request_line_is_a_uri_too_long() {
        let mut w = ScimWire::new(());
        w.saw(b"GET /scim/v2/Users?filter=");
        assert!(w.uri_too_long());
        w.saw(b"x HTTP/1.1\r\nHost: a\r\n");
        assert!(!w.uri_too_long());
        let e = String::from_utf8(scim_error(431, true)).unwrap();
        assert!(e.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{e}");
        let body = e.split("\r\n\r\n").nth(1).unwrap();
        assert!(e.contains(&format!("content-length: {}\r\n", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], "414");
    }
}
