//! The server over real loopback connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dialtone_http::http::{
    handler_fn, serve, serve_with_shutdown, Handler, HandlerFuture, Limits, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(handler: Arc<dyn Handler>, limits: Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, handler, limits));
    addr
}

/// Answers with what it got: method, path, the query `name`, the bearer
/// token, the peer's IP and the body.
fn echo() -> Arc<dyn Handler> {
    handler_fn(|req: Request| async move {
        let text = format!(
            "{} {} name={:?} token={:?} peer={} body={}",
            req.method,
            req.path,
            req.query("name"),
            req.bearer_token(),
            req.peer.ip(),
            String::from_utf8_lossy(&req.body)
        );
        Response::text(200, text).with_header("X-Echo", "1")
    })
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// A client connection that reads responses off one buffer, so pipelined
/// responses are read in turn.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response; a HEAD's has no body whatever its length says.
    async fn response_to(&mut self, head_request: bool) -> Reply {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await > 0, "EOF before a response head");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end);
        let mut lines = head.trim_end().split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap())
            .unwrap_or(0);
        let length = if head_request { 0 } else { length };
        while self.buf.len() < length {
            assert!(self.fill().await > 0, "EOF in a response body");
        }
        let body = self.buf.drain(..length).collect();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn response(&mut self) -> Reply {
        self.response_to(false).await
    }

    /// Whether the server closed the connection (after what was read).
    async fn at_eof(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.stream.read(&mut [0u8; 64]).await, Ok(0) | Err(_))
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut client = Client::connect(addr).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    client.send(req.as_bytes()).await;
    client.response().await
}

#[tokio::test]
async fn get_round_trip() {
    let addr = start(echo(), Limits::default()).await;
    let mut client = Client::connect(addr).await;
    client
        .send(b"GET /tenants/caf%C3%A9?name=a%20b&x=1 HTTP/1.1\r\nHost: t\r\nauthorization: bearer s3cr3t\r\n\r\n")
        .await;
    let reply = client.response().await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("x-echo"), Some("1"));
    assert_eq!(reply.header("connection"), None, "kept alive");
    assert_eq!(
        reply.text(),
        "GET /tenants/café name=Some(\"a b\") token=Some(\"s3cr3t\") peer=127.0.0.1 body="
    );
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn keep_alive_serves_requests_in_turn_on_one_connection() {
    let addr = start(echo(), Limits::default()).await;
    let mut client = Client::connect(addr).await;
    client.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(client.response().await.text().starts_with("GET /one "));
    client
        .send(b"POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let second = client.response().await;
    assert!(second.text().starts_with("POST /two "));
    assert!(second.text().ends_with("body=hello"));
    // Pipelined: two requests in one write, answered in order.
    client
        .send(b"POST /three HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /four HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(client.response().await.text().ends_with("body=abc"));
    assert!(client.response().await.text().starts_with("GET /four "));
    // A HEAD's answer has the length but no body: the next answer follows.
    client.send(b"HEAD /five HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let head = client.response_to(true).await;
    assert_eq!(head.status, 200);
    assert_ne!(head.header("content-length"), Some("0"));
    client
        .send(b"GET /six HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    let last = client.response().await;
    assert!(last.text().starts_with("GET /six "));
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.at_eof().await);
}

#[tokio::test]
async fn http10_gets_one_response_then_close() {
    let addr = start(echo(), Limits::default()).await;
    let mut client = Client::connect(addr).await;
    client.send(b"GET /old HTTP/1.0\r\n\r\n").await;
    let reply = client.response().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(client.at_eof().await);
}

#[tokio::test]
async fn refused_requests_get_their_status_then_close() {
    let limits = Limits {
        max_head_bytes: 1024,
        ..Limits::default()
    };
    let addr = start(echo(), limits).await;
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(2000)
    );
    for (request, status) in [
        ("GET / HTTP/1.1\r\n\r\n".to_string(), 400),
        ("GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), 400),
        (long_header, 431),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_string(),
            411,
        ),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_string(), 505),
        ("PUT / HTTP/1.1\r\nHost: t\r\nExpect: x\r\n\r\n".to_string(), 417),
    ] {
        let mut client = Client::connect(addr).await;
        client.send(request.as_bytes()).await;
        let reply = client.response().await;
        assert_eq!(reply.status, status, "{request:?}: {}", reply.text());
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(!reply.body.is_empty());
        assert!(client.at_eof().await);
    }
}

/// Counts the requests that reach it.
fn counting(calls: Arc<AtomicUsize>) -> Arc<dyn Handler> {
    handler_fn(move |_req: Request| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Response::text(200, "ok") }
    })
}

#[tokio::test]
async fn oversized_body_is_413_without_being_read() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let addr = start(counting(calls.clone()), limits).await;

    // The client sends a 64 MiB body and reads the answer meanwhile.
    const TOTAL: usize = 64 << 20;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = format!("PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {TOTAL}\r\n\r\n");
        tx.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            tx.write_all(&chunk).await?;
            sent += chunk.len();
        }
        Ok::<usize, std::io::Error>(sent)
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = rx.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF before the answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    // The server closed the connection before taking the whole body: the
    // client's sending fails.
    let sent = writer.await.unwrap();
    assert!(sent.is_err(), "the whole body was taken: {sent:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // With `Expect: 100-continue` the answer is the 413, not a 100.
    let mut client = Client::connect(addr).await;
    client
        .send(b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\nExpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(client.response().await.status, 413);
    assert!(client.at_eof().await);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let addr = start(echo(), Limits::default()).await;
    let mut client = Client::connect(addr).await;
    client
        .send(
            b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
    let interim = client.response().await;
    assert_eq!(interim.status, 100);
    assert!(interim.headers.is_empty() && interim.body.is_empty());
    client.send(b"hello").await;
    let reply = client.response().await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().ends_with("body=hello"), "{}", reply.text());
}

/// Panics in `handle` itself for `/panic-now`, in its future for
/// `/panic-later`.
struct Panicky;

impl Handler for Panicky {
    fn handle(&self, req: Request) -> HandlerFuture<'_> {
        if req.path == "/panic-now" {
            panic!("test panic in handle");
        }
        Box::pin(async move {
            tokio::task::yield_now().await;
            if req.path == "/panic-later" {
                panic!("test panic in the future");
            }
            Response::text(200, "fine")
        })
    }
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_server_goes_on() {
    let addr = start(Arc::new(Panicky), Limits::default()).await;
    for _ in 0..2 {
        for path in ["/panic-now", "/panic-later"] {
            let mut client = Client::connect(addr).await;
            client
                .send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                .await;
            let reply = client.response().await;
            assert_eq!(reply.status, 500, "{path}");
            assert_eq!(reply.header("connection"), Some("close"));
            assert!(client.at_eof().await);
        }
    }
    let reply = get(addr, "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "fine");
}

/// Retries `f` until it returns `Some` (the server frees a slot when the
/// connection's task ends, just after the client sees the close).
async fn eventually<T, Fut: Future<Output = Option<T>>>(mut f: impl FnMut() -> Fut) -> T {
    for _ in 0..500 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened");
}

#[tokio::test]
async fn connections_over_the_cap_get_503() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let addr = start(echo(), limits).await;
    // Two kept-alive connections, each answered once: both hold a slot.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = Client::connect(addr).await;
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(client.response().await.status, 200);
        held.push(client);
    }
    for _ in 0..3 {
        let mut over = Client::connect(addr).await;
        over.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let reply = over.response().await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(over.at_eof().await);
    }
    // The held connections still work.
    for client in &mut held {
        client.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(client.response().await.status, 200);
    }
    // Once one closes, a new connection is served.
    drop(held.pop());
    let status = eventually(|| async {
        let reply = get(addr, "/").await;
        (reply.status == 200).then_some(reply.status)
    })
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(start_paused = true)]
async fn timeouts_on_head_body_and_idle() {
    let addr = start(echo(), Limits::default()).await;

    // A head that never ends: 408 once the (paused) clock passes 10 s.
    let mut client = Client::connect(addr).await;
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n").await;
    let reply = client.response().await;
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(client.at_eof().await);

    // A body that never ends: 408 too.
    let mut client = Client::connect(addr).await;
    client
        .send(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    assert_eq!(client.response().await.status, 408);
    assert!(client.at_eof().await);

    // An idle kept-alive connection is closed without a word.
    let mut client = Client::connect(addr).await;
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(client.response().await.status, 200);
    assert!(client.at_eof().await);

    // So is a connection that never sends anything.
    let mut client = Client::connect(addr).await;
    assert!(client.at_eof().await);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_idle_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with_shutdown(
        listener,
        echo(),
        Limits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = Client::connect(addr).await;
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(client.response().await.status, 200);
    stop.send(()).unwrap();
    server.await.unwrap();
    assert!(client.at_eof().await, "the idle connection is closed");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is gone"
    );
}

/// curl, if it is on PATH, as the switch's users will drive the upload
/// API: a 2 MiB upload (curl sends `Expect: 100-continue` for it), two
/// requests on one kept-alive connection, a chunked upload refused.
#[tokio::test]
async fn curl_uploads_and_reuses_connections() {
    let Some(curl) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("curl"))
            .find(|c| c.is_file())
    }) else {
        eprintln!("curl is not on PATH: the curl test was NOT run");
        return;
    };
    let limits = Limits {
        max_body_bytes: 4 << 20,
        ..Limits::default()
    };
    let handler = handler_fn(|req: Request| async move {
        Response::json(
            200,
            format!(
                "{{\"len\":{},\"expect\":{:?},\"token\":{:?}}}",
                req.body.len(),
                req.header("expect").unwrap_or(""),
                req.bearer_token().unwrap_or("")
            ),
        )
    });
    let addr = start(handler, limits).await;
    let dir = std::env::temp_dir().join(format!("dialtone-http-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("component.wasm");
    std::fs::write(&file, vec![7u8; 2 << 20]).unwrap();

    let run = move |args: Vec<String>| {
        let curl = curl.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(curl)
                .args(["-sS", "-v", "--max-time", "20"])
                .args(args)
                .output()
                .unwrap()
        })
    };
    let url = format!("http://{addr}/v1/tenants/a/dialplan");
    let out = run(vec![
        "-H".into(),
        "Authorization: Bearer tok-123".into(),
        "--data-binary".into(),
        format!("@{}", file.display()),
        url.clone(),
        url.clone(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let one = r#"{"len":2097152,"expect":"100-continue","token":"tok-123"}"#;
    assert_eq!(stdout, format!("{one}{one}"), "{stderr}");
    assert!(stderr.contains("HTTP/1.1 100 Continue"), "{stderr}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");

    let out = run(vec![
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "-H".into(),
        "Transfer-Encoding: chunked".into(),
        "--data-binary".into(),
        format!("@{}", file.display()),
        url,
    ])
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "411");
    std::fs::remove_dir_all(&dir).unwrap();
}
