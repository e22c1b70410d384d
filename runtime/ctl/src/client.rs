//! The event socket client (FreeSWITCH ESL, inbound mode).
//!
//! Owns one authenticated connection: logging in, sending commands (`api`,
//! `bgapi`, `event`, `noevents`, `log`, `nolog`, `exit`), pairing each with
//! its reply, and handing out what the switch sends unasked (events, log
//! lines, the disconnect notice) as [`Incoming`] values.
//!
//! Replies come back in the order commands were sent, but events may arrive
//! between a command and its reply: those are queued while the reply is
//! awaited and returned first by [`EslClient::next_incoming`] and
//! [`EslClient::next_event`], so none is lost. A reply whose wait timed out
//! is remembered and dropped when it finally arrives, so later commands still
//! get their own replies.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event::Event;
use crate::frame::{Frame, FrameParser};

/// Something the switch sent unasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A `text/event-plain` or `text/event-json` frame, decoded.
    Event(Event),
    /// A `log/data` frame: the log line is its body.
    Log(Frame),
    /// `text/disconnect-notice`: the switch is about to close the connection.
    Disconnect(Frame),
    /// Any other frame (including an event body that could not be read).
    Other(Frame),
}

impl Incoming {
    fn classify(frame: Frame) -> Incoming {
        match frame.content_type() {
            "text/event-plain" | "text/event-json" => match Event::from_frame(&frame) {
                Ok(e) => Incoming::Event(e),
                Err(_) => Incoming::Other(frame),
            },
            "log/data" => Incoming::Log(frame),
            "text/disconnect-notice" => Incoming::Disconnect(frame),
            _ => Incoming::Other(frame),
        }
    }
}

fn is_reply(frame: &Frame) -> bool {
    matches!(frame.content_type(), "api/response" | "command/reply")
}

/// The text of a `command/reply` (`Reply-Text`), or an `api/response` body.
pub fn reply_text(frame: &Frame) -> String {
    if frame.content_type() == "api/response" {
        frame.body_text()
    } else {
        frame.header("Reply-Text").unwrap_or_default().to_string()
    }
}

/// One logged-in connection to the event socket.
#[derive(Debug)]
pub struct EslClient {
    stream: TcpStream,
    parser: FrameParser,
    buf: Vec<u8>,
    /// Events and other frames received while a reply was awaited.
    queue: VecDeque<Incoming>,
    /// Replies still due for commands whose wait timed out.
    stale_replies: usize,
    /// How long to wait for each reply.
    timeout: Duration,
    /// Set once the connection can no longer be used, with the reason.
    broken: Option<String>,
}

impl EslClient {
    /// Connects to `host:port`, waits for `auth/request` and logs in with
    /// `password`. `timeout` bounds the whole login, and later each reply.
    pub async fn connect(
        host: &str,
        port: u16,
        password: &str,
        timeout: Duration,
    ) -> Result<EslClient> {
        check_line(password).context("the password")?;
        let login = async {
            let stream = TcpStream::connect((host, port))
                .await
                .with_context(|| format!("cannot connect to {host}:{port}"))?;
            stream.set_nodelay(true).ok();
            let mut c = EslClient {
                stream,
                parser: FrameParser::new(),
                buf: vec![0; 64 * 1024],
                queue: VecDeque::new(),
                stale_replies: 0,
                timeout,
                broken: None,
            };
            loop {
                let f = c.read_frame().await?;
                match f.content_type() {
                    "auth/request" => break,
                    "text/rude-rejection" | "text/disconnect-notice" => {
                        bail!(
                            "{host}:{port} refused the connection: {}",
                            f.body_text().trim()
                        )
                    }
                    _ => continue,
                }
            }
            c.send(&format!("auth {password}")).await?;
            let reply = c.read_reply().await?;
            let text = reply_text(&reply);
            if !text.starts_with("+OK") {
                bail!("authentication refused by {host}:{port}: {text}");
            }
            Ok(c)
        };
        tokio::time::timeout(timeout, login)
            .await
            .map_err(|_| anyhow!("timed out after {timeout:?} logging in to {host}:{port}"))?
    }

    /// Runs `api CMD` and returns the reply body (which starts with `-ERR` when
    /// the command failed; a `command/reply` such as `-ERR command not found`
    /// is returned as its `Reply-Text`).
    pub async fn api(&mut self, cmd: &str) -> Result<String> {
        let reply = self.command(&format!("api {cmd}")).await?;
        Ok(reply_text(&reply))
    }

    /// Runs `bgapi CMD` and returns its Job-UUID; the result comes later as a
    /// `BACKGROUND_JOB` event with that `Job-UUID` and the result as its body
    /// (subscribe to `BACKGROUND_JOB` to get it).
    pub async fn bgapi(&mut self, cmd: &str) -> Result<String> {
        let reply = self.command(&format!("bgapi {cmd}")).await?;
        let text = reply_text(&reply);
        if !text.starts_with("+OK") {
            bail!("bgapi {cmd}: {text}");
        }
        if let Some(uuid) = reply.header("Job-UUID") {
            return Ok(uuid.to_string());
        }
        text.split_once("Job-UUID:")
            .map(|(_, u)| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| anyhow!("bgapi {cmd}: reply has no Job-UUID: {text}"))
    }

    /// Subscribes to events in the plain format (`event plain NAMES...`).
    /// Subscriptions add up; [`unsubscribe`](Self::unsubscribe) clears them.
    /// `CUSTOM` may be followed by subclass names.
    pub async fn subscribe(&mut self, names: &[&str]) -> Result<()> {
        self.subscribe_as("plain", names).await
    }

    /// Like [`subscribe`](Self::subscribe), with events as JSON
    /// (`event json NAMES...`).
    pub async fn subscribe_json(&mut self, names: &[&str]) -> Result<()> {
        self.subscribe_as("json", names).await
    }

    async fn subscribe_as(&mut self, format: &str, names: &[&str]) -> Result<()> {
        if names.is_empty() {
            bail!("no event names to subscribe to");
        }
        let line = format!("event {format} {}", names.join(" "));
        self.ok_command(&line).await.map(drop)
    }

    /// Stops all events (`noevents`).
    pub async fn unsubscribe(&mut self) -> Result<String> {
        self.ok_command("noevents").await
    }

    /// Asks for log lines at `level` and above (`log LEVEL`).
    pub async fn log(&mut self, level: &str) -> Result<String> {
        self.ok_command(&format!("log {level}")).await
    }

    /// Stops log lines (`nolog`).
    pub async fn nolog(&mut self) -> Result<String> {
        self.ok_command("nolog").await
    }

    /// Says goodbye (`exit`) and waits for `+OK bye`; the switch then closes.
    pub async fn exit(&mut self) -> Result<()> {
        self.ok_command("exit").await.map(drop)
    }

    /// Sends a command line and returns its reply text, an error if it does
    /// not start with `+OK`.
    async fn ok_command(&mut self, line: &str) -> Result<String> {
        let text = reply_text(&self.command(line).await?);
        if !text.starts_with("+OK") {
            bail!("{line}: {text}");
        }
        Ok(text)
    }

    /// Sends any command line (`api status`, `event plain ALL`, ...) and
    /// returns its reply frame, queueing the events that arrive before it.
    pub async fn command(&mut self, line: &str) -> Result<Frame> {
        check_line(line)?;
        self.check_usable()?;
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.send(line)).await {
            Ok(r) => r?,
            Err(_) => {
                self.broken = Some(format!("timed out sending `{line}`"));
                bail!("timed out after {timeout:?} sending `{line}`");
            }
        }
        match tokio::time::timeout(timeout, self.read_reply()).await {
            Ok(r) => r,
            Err(_) => {
                self.stale_replies += 1;
                bail!("no reply to `{line}` within {timeout:?}")
            }
        }
    }

    /// The next event, frame or notice the switch sent unasked: the queued
    /// ones first, then from the socket. Waits as long as it takes.
    ///
    /// Cancel-safe: dropping the future (e.g. in `tokio::select!`) loses nothing.
    pub async fn next_incoming(&mut self) -> Result<Incoming> {
        loop {
            if let Some(i) = self.queue.pop_front() {
                return Ok(i);
            }
            self.check_usable()?;
            let frame = self.read_frame().await?;
            if is_reply(&frame) && self.stale_replies > 0 {
                self.stale_replies -= 1;
                continue;
            }
            return Ok(Incoming::classify(frame));
        }
    }

    /// The next event; log lines and other frames are skipped. A disconnect
    /// notice is an error.
    pub async fn next_event(&mut self) -> Result<Event> {
        loop {
            match self.next_incoming().await? {
                Incoming::Event(e) => return Ok(e),
                Incoming::Disconnect(f) => {
                    let why = f.body_text().trim().to_string();
                    self.broken = Some(format!("the switch disconnected: {why}"));
                    bail!("the switch disconnected: {why}");
                }
                Incoming::Log(_) | Incoming::Other(_) => {}
            }
        }
    }

    /// Takes one event (or other frame) already received, without waiting.
    pub fn take_queued(&mut self) -> Option<Incoming> {
        self.queue.pop_front()
    }

    /// Why the connection is unusable, once it is (closed, out of step).
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    fn check_usable(&self) -> Result<()> {
        match &self.broken {
            Some(why) => bail!("connection unusable: {why}"),
            None => Ok(()),
        }
    }

    async fn send(&mut self, line: &str) -> Result<()> {
        let msg = format!("{line}\n\n");
        if let Err(e) = self.stream.write_all(msg.as_bytes()).await {
            self.broken = Some(format!("write failed: {e}"));
            return Err(e).context("sending to the switch");
        }
        Ok(())
    }

    /// Reads frames until a reply; events and log lines go to the queue.
    async fn read_reply(&mut self) -> Result<Frame> {
        loop {
            let frame = self.read_frame().await?;
            if is_reply(&frame) {
                if self.stale_replies > 0 {
                    self.stale_replies -= 1;
                    continue;
                }
                return Ok(frame);
            }
            match frame.content_type() {
                "auth/request" => {}
                "text/disconnect-notice" => {
                    let why = frame.body_text().trim().to_string();
                    self.broken = Some(format!("the switch disconnected: {why}"));
                    bail!("the switch disconnected: {why}");
                }
                _ => self.queue.push_back(Incoming::classify(frame)),
            }
        }
    }

    /// The next frame off the socket. Cancel-safe: bytes read are kept in the
    /// parser, and a frame is returned as soon as it is whole.
    async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            match self.parser.next_frame() {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => {
                    self.broken = Some(e.to_string());
                    return Err(e.into());
                }
            }
            let n = match self.stream.read(&mut self.buf).await {
                Ok(n) => n,
                Err(e) => {
                    self.broken = Some(format!("read failed: {e}"));
                    return Err(e).context("reading from the switch");
                }
            };
            if n == 0 {
                self.broken = Some("connection closed by the switch".into());
                bail!("connection closed by the switch");
            }
            self.parser.push(&self.buf[..n]);
        }
    }
}

/// A command line or password must not carry a line break: that would end
/// the message early and let the rest be read as another command.
fn check_line(line: &str) -> Result<()> {
    if line.contains(['\n', '\r']) {
        bail!("a line break is not allowed in a command or password");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Act, FakeServer};

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn auth_ok() {
        let s = FakeServer::start(|_| vec![]);
        let c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T).await;
        assert!(c.is_ok(), "{c:?}");
        assert_eq!(s.commands(), ["auth ClueCon"]);
    }

    #[tokio::test]
    async fn auth_refused() {
        let s = FakeServer::start(|_| vec![]);
        let err = EslClient::connect("127.0.0.1", s.port, "wrong", T)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("authentication refused"), "{err}");
        assert!(err.contains("-ERR invalid"), "{err}");
    }

    #[tokio::test]
    async fn connect_refused_and_silent_server() {
        // A port with nothing listening.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let err = EslClient::connect("127.0.0.1", port, "ClueCon", T)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");

        // A listener that never says auth/request: the login times out.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let err = EslClient::connect("127.0.0.1", port, "ClueCon", Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn api_returns_the_body() {
        let s = FakeServer::start(|cmd| match cmd {
            "api status" => vec![Act::Send(testing::api_response("UP 0 years\n3 sessions\n"))],
            "api nope" => vec![Act::Send(testing::api_response(
                "-ERR nope Command not found!\n",
            ))],
            "api blah" => vec![Act::Send(testing::reply("-ERR command not found"))],
            _ => vec![],
        });
        let mut c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T)
            .await
            .unwrap();
        assert_eq!(c.api("status").await.unwrap(), "UP 0 years\n3 sessions\n");
        assert_eq!(
            c.api("nope").await.unwrap(),
            "-ERR nope Command not found!\n"
        );
        assert_eq!(c.api("blah").await.unwrap(), "-ERR command not found");
        assert!(c.api("two\n\nlines").await.is_err());
        assert_eq!(
            s.commands(),
            ["auth ClueCon", "api status", "api nope", "api blah"]
        );
    }

    #[tokio::test]
    async fn bgapi_and_its_background_job() {
        let s = FakeServer::start(|cmd| match cmd {
            "event plain BACKGROUND_JOB" => {
                vec![Act::Send(testing::reply(
                    "+OK event listener enabled plain",
                ))]
            }
            "bgapi status" => vec![
                Act::Send(testing::bgapi_reply("b1a2c3")),
                Act::Sleep(20),
                Act::Send(testing::background_job("b1a2c3", "status", "+OK UP\n")),
            ],
            _ => vec![],
        });
        let mut c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T)
            .await
            .unwrap();
        c.subscribe(&["BACKGROUND_JOB"]).await.unwrap();
        let job = c.bgapi("status").await.unwrap();
        assert_eq!(job, "b1a2c3");
        let e = c.next_event().await.unwrap();
        assert_eq!(e.name(), "BACKGROUND_JOB");
        assert_eq!(e.header("Job-UUID"), Some("b1a2c3"));
        assert_eq!(e.header("Job-Command"), Some("status"));
        assert_eq!(e.body.as_deref(), Some("+OK UP\n"));
    }

    #[tokio::test]
    async fn bgapi_refused_and_subscribe_refused() {
        let s = FakeServer::start(|cmd| match cmd {
            "bgapi" | "bgapi x" => vec![Act::Send(testing::reply("-ERR no command"))],
            _ => vec![Act::Send(testing::reply("-ERR command not found"))],
        });
        let mut c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T)
            .await
            .unwrap();
        let err = c.bgapi("x").await.unwrap_err().to_string();
        assert!(err.contains("-ERR no command"), "{err}");
        let err = c.subscribe(&["BOGUS"]).await.unwrap_err().to_string();
        assert!(err.contains("-ERR command not found"), "{err}");
        assert!(c.subscribe(&[]).await.is_err());
        // Still usable after refused commands.
        assert!(c.broken().is_none());
    }

    #[tokio::test]
    async fn event_interleaved_before_an_api_reply_is_queued() {
        let s = FakeServer::start(|cmd| match cmd {
            "event plain CHANNEL_ANSWER" => {
                vec![Act::Send(testing::reply(
                    "+OK event listener enabled plain",
                ))]
            }
            "api status" => vec![
                Act::Send(testing::event(&[
                    ("Event-Name", "CHANNEL_ANSWER"),
                    ("Unique-ID", "u-1"),
                ])),
                Act::Send(testing::log_line("a log line\n")),
                Act::Send(testing::event(&[
                    ("Event-Name", "CHANNEL_ANSWER"),
                    ("Unique-ID", "u-2"),
                ])),
                Act::Send(testing::api_response("+OK up")),
            ],
            _ => vec![],
        });
        let mut c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T)
            .await
            .unwrap();
        c.subscribe(&["CHANNEL_ANSWER"]).await.unwrap();
        assert_eq!(c.api("status").await.unwrap(), "+OK up");
        let e1 = c.next_event().await.unwrap();
        assert_eq!(e1.header("Unique-ID"), Some("u-1"));
        // next_event skipped the log line; next_incoming would have shown it.
        let e2 = c.next_event().await.unwrap();
        assert_eq!(e2.header("Unique-ID"), Some("u-2"));
        assert!(c.take_queued().is_none());
    }

    #[tokio::test]
    async fn late_reply_after_a_timeout_is_dropped() {
        let s = FakeServer::start(|cmd| match cmd {
            "api slow" => vec![Act::Sleep(300), Act::Send(testing::api_response("slow"))],
            "api fast" => vec![Act::Send(testing::api_response("fast"))],
            _ => vec![],
        });
        let mut c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T)
            .await
            .unwrap();
        c.timeout = Duration::from_millis(100);
        let err = c.api("slow").await.unwrap_err().to_string();
        assert!(err.contains("no reply"), "{err}");
        c.timeout = T;
        assert_eq!(c.api("fast").await.unwrap(), "fast");
    }

    #[tokio::test]
    async fn disconnect_notice_and_close() {
        let s = FakeServer::start(|cmd| match cmd {
            "api shutdown" => vec![
                Act::Send(testing::disconnect_notice("Disconnected, goodbye.\n")),
                Act::Close,
            ],
            _ => vec![],
        });
        let mut c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T)
            .await
            .unwrap();
        let err = c.api("shutdown").await.unwrap_err().to_string();
        assert!(err.contains("disconnected"), "{err}");
        assert!(c.broken().is_some());
        assert!(c.api("status").await.is_err());
    }

    #[tokio::test]
    async fn exit_says_bye() {
        let s = FakeServer::start(|_| vec![]);
        let mut c = EslClient::connect("127.0.0.1", s.port, "ClueCon", T)
            .await
            .unwrap();
        c.exit().await.unwrap();
        match c.next_incoming().await.unwrap() {
            Incoming::Disconnect(_) => {}
            other => panic!("expected the disconnect notice, got {other:?}"),
        }
        let err = c.next_incoming().await.unwrap_err().to_string();
        assert!(err.contains("closed"), "{err}");
    }
}
