//! The accept loop and the per-connection state machine.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};

use super::{
    reason_phrase, Handler, HandlerFuture, HttpError, Limits, Request, RequestParser, Response,
};

/// How long a closing connection keeps reading (and dropping) what the
/// client still sends, so that the client reads our last response instead
/// of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// How much it reads (and drops) at most meanwhile.
const LINGER_BYTES: usize = 256 * 1024;
/// How long a refused connection's 503 may take to write.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after a failed accept (out of file descriptors, mostly).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// What one read asks for.
const READ_CHUNK: usize = 8 * 1024;

/// Serves `listener` forever (see the [module docs](super) for the
/// protocol and its limits): one task per connection, at most
/// `limits.max_connections` of them.
pub async fn serve(listener: TcpListener, handler: Arc<dyn Handler>, limits: Limits) {
    serve_with_shutdown(listener, handler, limits, std::future::pending()).await
}

/// [`serve`] until `shutdown` completes. Then it stops accepting and
/// returns; open connections finish the request they are on, answer it
/// with `Connection: close`, and close (idle ones close at once).
pub async fn serve_with_shutdown(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    // The refusals in flight are bounded too; past them a connection is
    // just dropped.
    let refusals = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            let conn = Connection {
                stream,
                peer,
                handler: handler.clone(),
                limits,
                stop: stop_rx.clone(),
            };
            tokio::spawn(async move {
                conn.run().await;
                drop(permit);
            });
        } else if let Ok(permit) = refusals.clone().try_acquire_owned() {
            tracing::debug!(%peer, "http: too many connections, refusing");
            tokio::spawn(async move {
                refuse(stream).await;
                drop(permit);
            });
        } else {
            tracing::debug!(%peer, "http: too many connections, dropping");
        }
    }
    let _ = stop_tx.send(true);
}

/// Answers 503 to a connection over the cap and closes it.
async fn refuse(mut stream: TcpStream) {
    let resp = Response::text(503, "too many connections\n");
    let bytes = encode(&resp, false, false);
    if let Ok(Ok(())) = timeout(REJECT_WRITE_TIMEOUT, stream.write_all(&bytes)).await {
        linger_close(stream).await;
    }
}

/// Sends FIN, then reads and drops what the client still sends (for
/// [`LINGER`], up to [`LINGER_BYTES`]) before closing: closing a socket
/// with unread data sends a reset, which can destroy the response the
/// client has not read yet.
async fn linger_close(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match timeout_at(deadline, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Serialises a response: status line, the handler's headers less those
/// the server owns (and less any with a bad name or a control character
/// in the value), `Content-Length` (not for 204 and 304), `Connection:
/// close` when closing, then the body (none for HEAD, 204 and 304).
fn encode(resp: &Response, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let status = resp.status;
    let no_body = status == 204 || status == 304;
    let send_body = !no_body && !head_only;
    let mut out = Vec::with_capacity(256 + if send_body { resp.body.len() } else { 0 });
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    for (name, value) in resp.headers.iter() {
        if ["content-length", "connection", "transfer-encoding"]
            .iter()
            .any(|owned| name.eq_ignore_ascii_case(owned))
        {
            continue;
        }
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let value_ok = !value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
        if !(name_ok && value_ok) {
            tracing::warn!(name, "http: dropping an invalid response header");
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !no_body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", resp.body.len()).as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if send_body {
        out.extend_from_slice(&resp.body);
    }
    out
}

/// A future that turns a panic while polling into `Err`.
struct CatchUnwind<'a>(HandlerFuture<'a>);

impl Future for CatchUnwind<'_> {
    type Output = Result<Response, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(resp)) => Poll::Ready(Ok(resp)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(not a string)"
    }
}

/// Why a connection stops.
enum Close {
    /// Answer this error, then close gracefully.
    Answer(HttpError),
    /// Close gracefully without a word.
    Quietly,
    /// The client is gone or stuck: drop the socket.
    Drop,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self) {
        let close = self.serve_requests().await;
        match close {
            Close::Answer(err) => {
                tracing::debug!(peer = %self.peer, error = %err, "http: refusing a request");
                let resp = Response::text(err.status(), format!("{err}\n"));
                if self.write(&encode(&resp, false, false)).await {
                    linger_close(self.stream).await;
                }
            }
            Close::Quietly => linger_close(self.stream).await,
            Close::Drop => {}
        }
    }

    /// Serves requests until the connection is to close.
    async fn serve_requests(&mut self) -> Close {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut parser = RequestParser::new(&self.limits);
        let mut first = true;
        loop {
            // Between requests: wait for the next one's first byte.
            if !first && buf.is_empty() {
                let read = tokio::select! {
                    read = timeout(self.limits.idle_timeout, read_some(&mut self.stream, &mut buf)) => read,
                    _ = self.stop.wait_for(|stop| *stop) => return Close::Quietly,
                };
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return Close::Drop,
                    Err(_) => return Close::Quietly,
                    Ok(Ok(_)) => {}
                }
            }
            first = false;

            // The head.
            let deadline = Instant::now() + self.limits.head_timeout;
            let (head, used) = loop {
                match parser.parse_head(&buf) {
                    Ok(Some(done)) => break done,
                    Ok(None) => {}
                    Err(err) => return Close::Answer(err),
                }
                match timeout_at(deadline, read_some(&mut self.stream, &mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Close::Drop,
                    Ok(Ok(_)) => {}
                    Err(_) if buf.is_empty() => return Close::Quietly,
                    Err(_) => return Close::Answer(HttpError::Timeout),
                }
            };
            buf.drain(..used);

            // The body.
            let length = head.content_length;
            let mut body = Vec::new();
            if length > 0 {
                let have = buf.len().min(length);
                body.extend(buf.drain(..have));
                if body.len() < length {
                    if head.expect_continue
                        && body.is_empty()
                        && !self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await
                    {
                        return Close::Drop;
                    }
                    body.reserve(length.min(64 * 1024));
                    let rest = (length - body.len()) as u64;
                    let mut rest = (&mut self.stream).take(rest);
                    let read = rest.read_to_end(&mut body);
                    match timeout(self.limits.body_timeout, read).await {
                        Err(_) => return Close::Answer(HttpError::Timeout),
                        Ok(Err(_)) => return Close::Drop,
                        Ok(Ok(_)) if body.len() < length => return Close::Drop,
                        Ok(Ok(_)) => {}
                    }
                }
            }

            // The handler.
            let head_only = head.method == "HEAD";
            let req = Request {
                method: head.method,
                target: head.target,
                path: head.path,
                query: head.query,
                version: head.version,
                headers: head.headers,
                body,
                peer: self.peer,
            };
            let (resp, panicked) = match self.call(req).await {
                Ok(resp) if (200..=999).contains(&resp.status) => (resp, false),
                Ok(resp) => {
                    tracing::error!(
                        status = resp.status,
                        "http: handler returned an invalid status"
                    );
                    (Response::text(500, "internal server error\n"), false)
                }
                Err(message) => {
                    tracing::error!(peer = %self.peer, panic = %message, "http: handler panicked");
                    (Response::text(500, "internal server error\n"), true)
                }
            };
            let keep_alive = head.keep_alive
                && !panicked
                && !resp.headers.has_token("connection", "close")
                && !*self.stop.borrow();
            if !self.write(&encode(&resp, keep_alive, head_only)).await {
                return Close::Drop;
            }
            if !keep_alive {
                return Close::Quietly;
            }
        }
    }

    /// Runs the handler, catching a panic in `handle` or in its future.
    async fn call(&self, req: Request) -> Result<Response, String> {
        let handler = &self.handler;
        let fut = catch_unwind(AssertUnwindSafe(|| handler.handle(req)))
            .map_err(|p| panic_message(&*p).to_string())?;
        CatchUnwind(fut)
            .await
            .map_err(|p| panic_message(&*p).to_string())
    }

    /// Writes within the write timeout; `false` if the connection is lost.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        matches!(
            timeout(self.limits.write_timeout, self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }
}

/// Reads what is there onto the end of `buf`. Cancel-safe: if dropped,
/// `buf` has not changed.
async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await
}
