//! A small, bounded HTTP/1.1 server for the switch's control plane.
//!
//! It owns the wire: parsing requests ([`parse_head`], [`RequestParser`]),
//! reading bodies, keep-alive, timeouts, the connection cap, framing the
//! responses ([`serve`]). The routes are the switch's: it passes an
//! `Arc<dyn` [`Handler`]`>` that turns each [`Request`] into a [`Response`].
//!
//! What it accepts, and what it answers otherwise:
//!
//! | request | answer |
//! | --- | --- |
//! | malformed request line, header, `Content-Length`, path encoding; HTTP/1.1 without one `Host` | 400, then close |
//! | head (request line + headers) over [`Limits::max_head_bytes`] (16 KiB) or more than [`Limits::max_headers`] (100) headers | 431, then close |
//! | `Content-Length` over [`Limits::max_body_bytes`] (1 MiB by default) | 413 before reading the body, then close |
//! | any `Transfer-Encoding` (chunked bodies) | 411 Length Required, then close |
//! | a version other than HTTP/1.0 and HTTP/1.1 | 505, then close |
//! | an `Expect` other than `100-continue` | 417, then close |
//! | head not complete within [`Limits::head_timeout`] (10 s), body within [`Limits::body_timeout`] (30 s) | 408, then close |
//! | more than [`Limits::max_connections`] (64) connections open | 503, then close |
//! | the handler panics | 500, then close; the server goes on |
//!
//! Bodies need a `Content-Length`: chunked requests are refused, as the
//! control plane's clients (curl, Prometheus, `dialtone ctl`) all send
//! one. `Expect: 100-continue` is answered with `100 Continue` before the
//! body is read (curl sends it for uploads over 1 KiB). HTTP/1.1
//! connections are kept alive unless either side says `Connection: close`;
//! an idle one is closed after [`Limits::idle_timeout`] (30 s). HTTP/1.0
//! connections are closed after one response.
//!
//! The whole body is read into memory before the handler runs, so one
//! connection holds at most `max_head_bytes + max_body_bytes` of request,
//! and the server `max_connections` times that. There is no TLS: the
//! server listens on loopback unless the switch is told otherwise.

mod parse;
mod server;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use parse::{parse_head, Head, RequestParser};
pub use server::{serve, serve_with_shutdown};

/// What the server lets one client spend.
///
/// `Limits::default()` has the documented defaults; a server that takes
/// uploads raises `max_body_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers together, terminating blank line
    /// included. Default 16 KiB; over it: 431.
    pub max_head_bytes: usize,
    /// Header fields in one request. Default 100; over it: 431.
    pub max_headers: usize,
    /// A request body (its `Content-Length`). Default 1 MiB; over it: 413.
    pub max_body_bytes: usize,
    /// Connections served at once; the next ones get a 503 (0 is taken as
    /// 1). Default 64.
    pub max_connections: usize,
    /// From a request's first byte (or the connection's accept) to the end
    /// of its head. Default 10 s; past it: 408.
    pub head_timeout: Duration,
    /// From the end of the head to the end of the body. Default 30 s; past
    /// it: 408.
    pub body_timeout: Duration,
    /// Between a response and the next request's first byte on a kept-alive
    /// connection. Default 30 s; past it the connection is closed.
    pub idle_timeout: Duration,
    /// Writing one response (or `100 Continue`). Default 30 s; past it the
    /// connection is dropped.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            max_connections: 64,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a request was refused before it reached the handler. Each maps to
/// the status the server answers with ([`HttpError::status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// 400: the request line, a header or the path is not valid HTTP/1.1.
    Malformed(&'static str),
    /// 431: the head is over [`Limits::max_head_bytes`].
    HeadTooLarge,
    /// 431: more than [`Limits::max_headers`] header fields.
    TooManyHeaders,
    /// 413: `Content-Length` over [`Limits::max_body_bytes`].
    BodyTooLarge { length: u64, limit: usize },
    /// 411: a `Transfer-Encoding`; bodies need a `Content-Length`.
    LengthRequired,
    /// 417: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// 505: an HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
    /// 408: the head or body did not arrive in time.
    Timeout,
}

impl HttpError {
    /// The status code the server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::LengthRequired => 411,
            HttpError::ExpectationFailed => 417,
            HttpError::VersionNotSupported => 505,
            HttpError::Timeout => 408,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed(what) => write!(f, "bad request: {what}"),
            HttpError::HeadTooLarge => f.write_str("request head too large"),
            HttpError::TooManyHeaders => f.write_str("too many header fields"),
            HttpError::BodyTooLarge { length, limit } => {
                write!(f, "body of {length} bytes is over the limit of {limit}")
            }
            HttpError::LengthRequired => {
                f.write_str("Transfer-Encoding is not supported: send a Content-Length")
            }
            HttpError::ExpectationFailed => f.write_str("only Expect: 100-continue is supported"),
            HttpError::VersionNotSupported => {
                f.write_str("only HTTP/1.0 and HTTP/1.1 are supported")
            }
            HttpError::Timeout => f.write_str("request not received in time"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Header fields in arrival order. Names compare case-insensitively and
/// keep the case they were given in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first field named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field named `name` (case-insensitive), in order.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether any field named `name` lists `token` in its comma-separated
    /// value (case-insensitive), as `Connection: keep-alive, close` does.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Adds a field, keeping those of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Sets a field, replacing those of the same name.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.entries.push((name, value.into()));
    }

    /// Removes every field named `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A request as the handler gets it: head parsed, body read in full.
#[derive(Clone, Debug)]
pub struct Request {
    /// As sent, case-sensitive (`GET`, `POST`, ...).
    pub method: String,
    /// The request target as sent (`/v1/x%20y?a=1`).
    pub target: String,
    /// The percent-decoded path (`/v1/x y`); `*` for `OPTIONS *`. A `%2F`
    /// decodes to `/` like any other escape: routes that take a segment
    /// from the path must not expect it to be free of `/`.
    pub path: String,
    /// The decoded query pairs in order (`+` is a space); a name without
    /// `=` has an empty value.
    pub query: Vec<(String, String)>,
    pub version: Version,
    pub headers: Headers,
    /// Exactly `Content-Length` bytes; empty without one.
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Request {
    /// The first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The first query value named `name` (case-sensitive).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The token of `Authorization: Bearer <token>` (scheme
    /// case-insensitive). `None` without one, for another scheme, an empty
    /// token, or more than one `Authorization` field.
    pub fn bearer_token(&self) -> Option<&str> {
        let mut all = self.headers.get_all("authorization");
        let value = all.next()?;
        if all.next().is_some() {
            return None;
        }
        let (scheme, token) = value.trim().split_once([' ', '\t'])?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
        (!token.is_empty() && token.chars().all(token68)).then_some(token)
    }
}

/// A response as the handler returns it. The server owns the framing:
/// it adds `Content-Length` and, when it closes, `Connection: close`, and
/// drops those (and `Transfer-Encoding`) if the handler set them; a
/// handler's `Connection: close` still closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::bytes(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }

    /// An `application/json` response; `body` is already JSON.
    pub fn json(status: u16, body: String) -> Self {
        Self::bytes(status, "application/json", body.into_bytes())
    }

    /// A response with this `Content-Type`.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = Headers::new();
        headers.append("Content-Type", content_type);
        Response {
            status,
            headers,
            body,
        }
    }

    /// A response without a body (and without `Content-Type`).
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// The future a [`Handler`] returns.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// What the server calls for each request. Object-safe: the server takes
/// an `Arc<dyn Handler>`. Any `Fn(Request) -> impl Future<Output =
/// Response>` closure is a handler.
///
/// A panic in `handle` or in its future is caught: the client gets a 500
/// and its connection is closed, and the server goes on. The server puts
/// no time limit on a handler.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> HandlerFuture<'_>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    fn handle(&self, req: Request) -> HandlerFuture<'_> {
        Box::pin(self(req))
    }
}

/// A closure as an `Arc<dyn Handler>`, for [`serve`].
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    Arc::new(f)
}

/// The reason phrase of a status code ("" for one it does not know).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
