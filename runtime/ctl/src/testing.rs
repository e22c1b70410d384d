//! A scripted fake event socket for the unit tests (test builds only).
//!
//! Owns [`FakeServer`]: a listener on an ephemeral loopback port, on its own
//! thread and runtime (so both async tests and tests of the blocking
//! [`crate::run`] can use it), that speaks the inbound ESL login itself
//! (password `ClueCon`), answers `exit` with `+OK bye` and a disconnect
//! notice, and hands every other command to the test's script, which says
//! what to send back. Every command received is recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does in answer to a command.
pub enum Act {
    Send(Vec<u8>),
    Sleep(u64),
    Close,
}

type Script = dyn Fn(&str) -> Vec<Act> + Send + Sync;

pub struct FakeServer {
    pub port: u16,
    commands: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    pub fn start(script: impl Fn(&str) -> Vec<Act> + Send + Sync + 'static) -> FakeServer {
        let script: Arc<Script> = Arc::new(script);
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let recorded = commands.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap().port()).unwrap();
                loop {
                    let Ok((s, _)) = l.accept().await else { return };
                    tokio::spawn(serve(s, script.clone(), recorded.clone()));
                }
            });
        });
        let port = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        FakeServer { port, commands }
    }

    /// The commands received so far, in order, across connections.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }
}

async fn serve(mut s: TcpStream, script: Arc<Script>, commands: Arc<Mutex<Vec<String>>>) {
    if s.write_all(b"Content-Type: auth/request\n\n")
        .await
        .is_err()
    {
        return;
    }
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(i) = pending.windows(2).position(|w| w == b"\n\n") {
            let cmd = String::from_utf8_lossy(&pending[..i]).trim().to_string();
            pending.drain(..i + 2);
            commands.lock().unwrap().push(cmd.clone());
            let acts = if let Some(pw) = cmd.strip_prefix("auth ") {
                if pw == "ClueCon" {
                    vec![Act::Send(reply("+OK accepted"))]
                } else {
                    vec![
                        Act::Send(reply("-ERR invalid")),
                        Act::Send(disconnect_notice("Disconnected, goodbye.\n")),
                        Act::Close,
                    ]
                }
            } else if cmd == "exit" {
                vec![
                    Act::Send(reply("+OK bye")),
                    Act::Send(disconnect_notice("Disconnected, goodbye.\n")),
                    Act::Close,
                ]
            } else {
                script(&cmd)
            };
            for act in acts {
                match act {
                    Act::Send(b) => {
                        if s.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    Act::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    Act::Close => return,
                }
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

pub fn reply(text: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: {text}\n\n").into_bytes()
}

pub fn bgapi_reply(job: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n")
        .into_bytes()
}

pub fn api_response(body: &str) -> Vec<u8> {
    format!(
        "Content-Type: api/response\nContent-Length: {}\n\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn disconnect_notice(body: &str) -> Vec<u8> {
    format!(
        "Content-Type: text/disconnect-notice\nContent-Length: {}\n\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn log_line(body: &str) -> Vec<u8> {
    format!(
        "Content-Type: log/data\nContent-Length: {}\nLog-Level: 7\n\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Percent-encodes what FreeSWITCH's encoder does not leave alone.
fn url_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `text/event-plain` frame with these headers and an optional nested body.
pub fn event_with_body(headers: &[(&str, &str)], body: Option<&str>) -> Vec<u8> {
    let mut inner = String::new();
    for (k, v) in headers {
        inner.push_str(&format!("{k}: {}\n", url_encode(v)));
    }
    if let Some(b) = body {
        inner.push_str(&format!("Content-Length: {}\n\n{b}", b.len()));
    } else {
        inner.push('\n');
    }
    format!(
        "Content-Type: text/event-plain\nContent-Length: {}\n\n{inner}",
        inner.len()
    )
    .into_bytes()
}

pub fn event(headers: &[(&str, &str)]) -> Vec<u8> {
    event_with_body(headers, None)
}

pub fn background_job(job: &str, cmd: &str, result: &str) -> Vec<u8> {
    event_with_body(
        &[
            ("Event-Name", "BACKGROUND_JOB"),
            ("Job-UUID", job),
            ("Job-Command", cmd),
        ],
        Some(result),
    )
}
