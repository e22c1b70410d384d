//! The inbound event socket listener.
//!
//! One task per connection. A connection starts unauthenticated
//! (`auth/request`); until `auth PASSWORD` succeeds every command but
//! `auth` and `exit` is answered `-ERR command not found`, as FreeSWITCH
//! does. A wrong password is answered `-ERR invalid` and the connection is
//! closed (with `text/disconnect-notice`); the listener keeps serving
//! others. An unauthenticated connection is closed after
//! [`AUTH_TIMEOUT`]; at most [`MAX_CONNECTIONS`] connections are served at
//! once (more get `text/rude-rejection`).
//!
//! # Events
//!
//! `event plain|json NAMES...` subscribes the connection to the core's
//! event bus with a bounded queue (`[events] subscriber_queue`). The
//! publisher never waits for a connection: when its queue is full, newer
//! events are dropped for that connection only, and the connection is told
//! exactly where and how many with a `CUSTOM` event of subclass
//! `dialtone::events_lost` carrying `Events-Lost: N`, delivered in the
//! stream at the place of the gap. A client that keeps up loses nothing.
//!
//! # Commands
//!
//! `auth`, `api`, `bgapi` (result as a BACKGROUND_JOB event on the bus,
//! `Job-UUID` as given or generated), `event`, `nixevent`, `noevents`,
//! `filter [add] H V`, `filter delete H [V]|all`, `myevents UUID [fmt]`,
//! `sendevent NAME` (headers and body from the frame), `log [LEVEL]`,
//! `nolog`, `exit`. `api` runs while the connection's events wait in its
//! queue, as in FreeSWITCH.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use dialtone_core::events::{Delivery, Event, EventBus, EventFilter, EventName, Subscription};

use super::frame::{self, Command, CommandParser};
use super::logs::{level_from_str, LogHub, LogLine};
use super::Api;

/// How long a connection may stay unauthenticated.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(25);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// The subclass of the event that tells a connection it lost events.
pub const EVENTS_LOST: &str = "dialtone::events_lost";

/// What the listener needs.
#[derive(Clone)]
pub struct EslSettings {
    /// The `auth` password.
    pub password: String,
    /// Events queued per connection before the overflow policy applies.
    pub subscriber_queue: usize,
    /// The switch instance's id (`Core-UUID`).
    pub core_uuid: String,
    /// The API.
    pub api: Arc<dyn Api>,
    /// The event bus.
    pub bus: EventBus,
    /// Log lines for `log`.
    pub logs: LogHub,
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, settings: EslSettings) {
    let settings = Arc::new(settings);
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut sock, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "event socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if live.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, "event socket: too many connections");
            let msg = "Too many connections, go away.\n";
            let frame = format!(
                "Content-Type: text/rude-rejection\nContent-Length: {}\n\n{msg}",
                msg.len()
            );
            tokio::spawn(async move {
                let _ = sock.write_all(frame.as_bytes()).await;
            });
            continue;
        }
        let settings = settings.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            tracing::debug!(%peer, "event socket connection");
            if let Err(e) = Connection::new(settings).run(sock).await {
                tracing::debug!(%peer, error = %e, "event socket connection ended");
            }
            live.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Json => "json",
        }
    }
}

pub(crate) struct Connection {
    settings: Arc<EslSettings>,
    authed: bool,
    format: Format,
    /// The bus subscription, from the first `event` command on.
    sub: Option<Subscription>,
    /// `filter` headers, kept here so a later `event` keeps them.
    filter: EventFilter,
    logs: Option<(u8, broadcast::Receiver<Arc<LogLine>>)>,
    out: Vec<u8>,
    /// Reused for each event's body.
    scratch: String,
    closing: bool,
    /// Outbound mode: the channel this connection controls.
    session: Option<super::outbound::Session>,
    /// Outbound mode: when to close after the channel left the socket.
    ending: Option<tokio::time::Instant>,
}

/// What the read side produced.
enum Input {
    Bytes(usize),
    Closed,
}

impl Connection {
    fn new(settings: Arc<EslSettings>) -> Connection {
        Connection {
            settings,
            authed: false,
            format: Format::Plain,
            sub: None,
            filter: EventFilter::none(),
            logs: None,
            out: Vec::with_capacity(4096),
            scratch: String::with_capacity(2048),
            closing: false,
            session: None,
            ending: None,
        }
    }

    /// A connection the switch opened to an application for a channel:
    /// authenticated from the start, no `auth/request`.
    pub(crate) fn outbound(
        settings: Arc<EslSettings>,
        session: super::outbound::Session,
    ) -> Connection {
        let mut c = Connection::new(settings);
        c.authed = true;
        c.session = Some(session);
        c
    }

    pub(crate) async fn run(mut self, sock: TcpStream) -> std::io::Result<()> {
        let (mut rd, mut wr) = sock.into_split();
        if self.session.is_none() {
            wr.write_all(&frame::auth_request()).await?;
        }
        let mut parser = CommandParser::new();
        let mut buf = vec![0u8; 16 * 1024];
        let auth_deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
        loop {
            // Everything already parsed is handled before reading more.
            loop {
                match parser.next_command() {
                    Ok(Some(cmd)) => {
                        self.handle(cmd).await;
                        if self.closing {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(error = %e, "event socket: bad frame");
                        self.out.extend(frame::reply("-ERR command parse error."));
                        self.closing = true;
                        break;
                    }
                }
            }
            if !self.out.is_empty() {
                wr.write_all(&self.out).await?;
                self.out.clear();
            }
            if self.closing {
                wr.write_all(&frame::disconnect_notice()).await?;
                let _ = wr.shutdown().await;
                return Ok(());
            }
            let authed = self.authed;
            // The channel may have left the socket while a command ran.
            let gone = self.session.as_ref().is_some_and(|s| s.orders.is_closed());
            if gone && self.ending.is_none() {
                match self.session.as_ref().and_then(|s| s.linger) {
                    Some(d) => self.ending = Some(tokio::time::Instant::now() + d),
                    None => {
                        self.closing = true;
                        continue;
                    }
                }
            }
            let in_session = self.session.is_some() && !gone;
            let ending = self.ending;
            let input = tokio::select! {
                _ = session_closed(&self.session), if in_session => {
                    // The channel left the socket (hung up, transferred).
                    let linger = self.session.as_ref().and_then(|s| s.linger);
                    match linger {
                        Some(d) => self.ending = Some(tokio::time::Instant::now() + d),
                        None => self.closing = true,
                    }
                    continue;
                }
                _ = sleep_until_opt(ending) => {
                    self.closing = true;
                    continue;
                }
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => Input::Closed,
                    Ok(n) => Input::Bytes(n),
                },
                _ = tokio::time::sleep_until(auth_deadline), if !authed => {
                    self.closing = true;
                    continue;
                }
                d = recv_event(&mut self.sub) => {
                    self.deliver(d);
                    // Whatever else is queued goes out in the same write.
                    for _ in 0..256 {
                        match self.sub.as_mut().map(|s| s.try_recv()) {
                            Some(Ok(d)) => self.deliver(Some(d)),
                            _ => break,
                        }
                    }
                    continue;
                }
                l = recv_log(&mut self.logs) => {
                    self.log_line(l);
                    continue;
                }
            };
            match input {
                Input::Closed => return Ok(()),
                Input::Bytes(n) => parser.push(&buf[..n]),
            }
        }
    }

    fn deliver(&mut self, d: Option<Delivery>) {
        match d {
            Some(Delivery::Event(ev)) => self.write_event(&ev),
            Some(Delivery::Lost { count }) => {
                tracing::warn!(
                    count,
                    "event socket subscriber fell behind; events dropped for it"
                );
                let ev = Event::custom(EVENTS_LOST).header("Events-Lost", count.to_string());
                self.write_event(&ev);
            }
            None => {
                // The bus is gone (the switch is stopping).
                self.sub = None;
            }
        }
    }

    fn write_event(&mut self, ev: &Event) {
        let core = &self.settings.core_uuid;
        match self.format {
            Format::Plain => {
                frame::event_plain_body_into(ev, core, &mut self.scratch);
                frame::event_frame_into("plain", &self.scratch, &mut self.out);
            }
            Format::Json => {
                let body = frame::event_json_body(ev, core);
                frame::event_frame_into("json", &body, &mut self.out);
            }
        }
    }

    fn log_line(&mut self, l: Option<Result<Arc<LogLine>, u64>>) {
        let Some((level, _)) = &self.logs else { return };
        let level = *level;
        match l {
            Some(Ok(line)) if line.level <= level => self.out.extend(frame::log_data(
                line.level, &line.file, &line.func, line.line, &line.uuid, &line.text,
            )),
            Some(Ok(_)) => {}
            Some(Err(n)) => {
                let text = format!("{n} log lines dropped: this listener fell behind\n");
                self.out
                    .extend(frame::log_data(4, "esl", "log", 0, "", &text));
            }
            None => self.logs = None,
        }
    }

    fn reply(&mut self, text: &str) {
        self.out.extend(frame::reply(text));
    }

    async fn handle(&mut self, cmd: Command) {
        let verb = cmd.verb();
        if verb == "exit" || cmd.line.starts_with("...") {
            self.reply("+OK bye");
            self.closing = true;
            return;
        }
        if !self.authed {
            if verb == "auth" {
                if constant_time_eq(cmd.rest().as_bytes(), self.settings.password.as_bytes()) {
                    self.authed = true;
                    self.reply("+OK accepted");
                } else {
                    tracing::warn!("event socket: wrong password");
                    self.reply("-ERR invalid");
                    self.closing = true;
                }
            } else {
                self.reply("-ERR command not found");
            }
            return;
        }
        if self.session.is_some() && self.session_command(&verb, &cmd).await {
            return;
        }
        match verb.as_str() {
            "auth" => self.reply("-ERR already authenticated"),
            "api" => {
                let (c, a) = split_command(cmd.rest());
                let out = if c.is_empty() {
                    "-ERR no command\n".to_string()
                } else {
                    self.settings.api.execute(c, a).await
                };
                self.out.extend(frame::api_response(&out));
            }
            "bgapi" => {
                let job = cmd
                    .header("Job-UUID")
                    .map(str::to_string)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let (c, a) = split_command(cmd.rest());
                let (c, a) = (c.to_string(), a.to_string());
                self.out.extend(frame::reply_with(
                    &format!("+OK Job-UUID: {job}"),
                    &[("Job-UUID", &job)],
                ));
                let settings = self.settings.clone();
                tokio::spawn(async move {
                    let out = settings.api.execute(&c, &a).await;
                    let mut ev = Event::new(EventName::BackgroundJob)
                        .header("Job-UUID", job)
                        .header("Job-Command", c);
                    if !a.is_empty() {
                        ev.push_header("Job-Command-Arg", a);
                    }
                    settings.bus.publish(ev.with_body(out));
                });
            }
            "event" => self.event(cmd.rest()),
            "nixevent" => self.nixevent(cmd.rest()),
            "noevents" => {
                if self.sub.take().is_some() {
                    self.filter = EventFilter::none();
                    self.reply("+OK no longer listening for events");
                } else {
                    self.reply("-ERR not listening for events");
                }
            }
            "myevents" => {
                let mut words = cmd.rest().split_whitespace();
                let Some(uuid) = words.next().map(str::to_string) else {
                    self.reply("-ERR invalid uuid");
                    return;
                };
                let fmt = words.next().map(str::to_string);
                self.myevents(&uuid, fmt.as_deref());
            }
            "filter" => self.filter_cmd(cmd.rest()),
            "sendevent" => {
                let name = cmd.rest();
                let Some(name) = EventName::parse(name) else {
                    self.reply("-ERR invalid event name");
                    return;
                };
                let mut ev = Event::new(name);
                for (k, v) in &cmd.headers {
                    if k.eq_ignore_ascii_case("Content-Length") {
                        continue;
                    }
                    if k.eq_ignore_ascii_case("Event-Subclass") {
                        ev.subclass = Some(v.clone());
                        continue;
                    }
                    ev.push_header(k.clone(), v.clone());
                }
                let id = uuid::Uuid::new_v4().to_string();
                ev.push_header("Event-UUID", id.clone());
                ev.body = cmd.body.clone();
                self.settings.bus.publish(ev);
                self.reply(&format!("+OK {id}"));
            }
            "log" => {
                let arg = cmd.rest();
                match level_from_str(arg) {
                    Some(level) => {
                        let rx = match self.logs.take() {
                            Some((_, rx)) => rx,
                            None => self.settings.logs.subscribe(),
                        };
                        self.logs = Some((level, rx));
                        self.reply(&format!("+OK log level {arg} [{level}]"));
                    }
                    None => self.reply("-ERR invalid log level"),
                }
            }
            "nolog" => {
                if self.logs.take().is_some() {
                    self.reply("+OK no longer logging");
                } else {
                    self.reply("-ERR not loging");
                }
            }
            "linger" | "nolinger" | "connect" | "sendmsg" | "getvar" | "resume"
            | "divert_events" => self.reply("-ERR not controlling a session"),
            _ => self.reply("-ERR command not found"),
        }
    }

    /// Commands of outbound mode; false if `verb` is not one of them.
    async fn session_command(&mut self, verb: &str, cmd: &Command) -> bool {
        let Some(sess) = self.session.as_mut() else {
            return false;
        };
        match verb {
            "connect" => {
                let data = sess.data.clone();
                self.out.extend(data);
            }
            "linger" => {
                let secs = cmd.rest().parse::<u64>().ok();
                sess.linger = Some(Duration::from_secs(secs.unwrap_or(30).min(3600)));
                match secs {
                    Some(n) => self.reply(&format!("+OK will linger {n} seconds")),
                    None => self.reply("+OK will linger"),
                }
            }
            "nolinger" => {
                sess.linger = None;
                self.reply("+OK will not linger");
            }
            "resume" => {
                let _ = sess
                    .orders
                    .try_send(dialtone_core::routing::SocketOrder::Resume);
                self.reply("+OK");
            }
            "getvar" => {
                let name = cmd.rest().to_string();
                let value = sess.getvar(&name).await.unwrap_or_default();
                self.reply(&value);
            }
            "myevents" => {
                let uuid = sess.uuid.clone();
                let mut words = cmd.rest().split_whitespace();
                let first = words.next();
                // `myevents [plain|json]` or `myevents UUID [plain|json]`.
                let fmt = match first.map(str::to_ascii_lowercase).as_deref() {
                    Some("plain") | Some("json") => first,
                    _ => words.next(),
                };
                self.myevents(&uuid, fmt);
            }
            "sendmsg" => {
                let target = cmd.rest();
                let uuid = if target.is_empty() {
                    cmd.header("session-id").unwrap_or("")
                } else {
                    target
                };
                if !uuid.is_empty() && uuid != sess.uuid {
                    self.reply(&format!("-ERR invalid session id [{uuid}]"));
                    return true;
                }
                let reply = sess.sendmsg(cmd);
                self.reply(&reply);
            }
            _ => return false,
        }
        true
    }

    /// `myevents UUID [fmt]`: this channel's events.
    fn myevents(&mut self, uuid: &str, fmt: Option<&str>) {
        match fmt.map(str::to_ascii_lowercase).as_deref() {
            Some("json") => self.format = Format::Json,
            Some("plain") | None => self.format = Format::Plain,
            Some(_) => {}
        }
        let mut f = EventFilter::none();
        for n in MYEVENTS {
            f.add_name(*n);
        }
        f.add_header("Unique-ID", uuid);
        self.filter = f.clone();
        self.subscribe(f);
        self.reply("+OK Events Enabled");
    }

    fn subscribe(&mut self, filter: EventFilter) {
        match &self.sub {
            Some(s) => s.set_filter(filter),
            None => {
                self.sub = Some(
                    self.settings
                        .bus
                        .subscribe(filter, self.settings.subscriber_queue),
                )
            }
        }
    }

    /// `event [plain|json|xml] NAME... [CUSTOM subclass...]`.
    fn event(&mut self, rest: &str) {
        let mut words = rest.split_whitespace().peekable();
        match words.peek().map(|w| w.to_ascii_lowercase()).as_deref() {
            Some("plain") => {
                self.format = Format::Plain;
                words.next();
            }
            Some("json") => {
                self.format = Format::Json;
                words.next();
            }
            Some("xml") => {
                self.reply("-ERR xml event format is not supported; use plain or json");
                return;
            }
            _ => {}
        }
        let mut f = self.filter.clone();
        let mut keys = 0;
        let mut custom = false;
        for w in words {
            if custom && EventName::parse(w).is_none() {
                f.add_subclass(w);
                continue;
            }
            if w.eq_ignore_ascii_case("ALL") {
                f = all_keeping_headers(&f);
                keys += 1;
                continue;
            }
            if let Some(n) = EventName::parse(w) {
                keys += 1;
                if n == EventName::Custom {
                    // Named subclasses follow; alone, CUSTOM means every one.
                    custom = true;
                }
                f.add_name(n);
            }
        }
        if keys == 0 {
            self.reply("-ERR no keywords supplied");
            return;
        }
        // `CUSTOM a::b` subscribes to subclass a::b only, as FreeSWITCH.
        if custom && f.subclasses().next().is_some() && !f.is_all() {
            f.remove_name(EventName::Custom);
        }
        self.filter = f.clone();
        self.subscribe(f);
        let fmt = self.format.name();
        self.reply(&format!("+OK event listener enabled {fmt}"));
    }

    fn nixevent(&mut self, rest: &str) {
        let mut f = self.filter.clone();
        let mut keys = 0;
        let mut custom = false;
        for w in rest.split_whitespace() {
            if custom {
                f.remove_subclass(w);
                continue;
            }
            if w.eq_ignore_ascii_case("ALL") {
                keys += 1;
                let headers: Vec<(String, String)> = f.header_filters().to_vec();
                f = EventFilter::none();
                for (k, v) in headers {
                    f.add_header(k, v);
                }
                continue;
            }
            if let Some(n) = EventName::parse(w) {
                keys += 1;
                if n == EventName::Custom {
                    custom = true;
                } else {
                    f.remove_name(n);
                }
            }
        }
        if keys == 0 {
            self.reply("-ERR no keywords supplied");
            return;
        }
        self.filter = f.clone();
        self.subscribe(f);
        self.reply("+OK events nixed");
    }

    fn filter_cmd(&mut self, rest: &str) {
        let mut parts = rest.splitn(2, ' ');
        let first = parts.next().unwrap_or("").trim();
        let tail = parts.next().map(str::trim).filter(|s| !s.is_empty());
        if first.eq_ignore_ascii_case("delete") {
            let Some(tail) = tail else {
                self.reply("-ERR invalid syntax");
                return;
            };
            let (h, v) = match tail.split_once(' ') {
                Some((h, v)) => (h.trim(), Some(v.trim())),
                None => (tail, None),
            };
            if h.eq_ignore_ascii_case("all") {
                let names = self.filter.clone();
                let headers: Vec<String> = names
                    .header_filters()
                    .iter()
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in headers {
                    self.filter.remove_header(&k, None);
                }
            } else {
                self.filter.remove_header(h, v);
            }
            if let Some(s) = &self.sub {
                s.set_filter(self.filter.clone());
            }
            self.reply(&format!("+OK filter deleted. [{h}][{}]", v.unwrap_or("")));
            return;
        }
        let (h, v) = if first.eq_ignore_ascii_case("add") {
            match tail.and_then(|t| t.split_once(' ')) {
                Some((h, v)) => (h.trim().to_string(), v.trim().to_string()),
                None => {
                    self.reply("-ERR invalid syntax");
                    return;
                }
            }
        } else {
            match tail {
                Some(v) if !first.is_empty() => (first.to_string(), v.to_string()),
                _ => {
                    self.reply("-ERR invalid syntax");
                    return;
                }
            }
        };
        self.filter.add_header(h.clone(), v.clone());
        if let Some(s) = &self.sub {
            s.set_filter(self.filter.clone());
        }
        self.reply(&format!("+OK filter added. [{h}]=[{v}]"));
    }
}

/// The events `myevents` subscribes to (FreeSWITCH's list, as far as the
/// switch has them).
const MYEVENTS: &[EventName] = &[
    EventName::ChannelAnswer,
    EventName::ChannelBridge,
    EventName::ChannelCreate,
    EventName::ChannelDestroy,
    EventName::ChannelExecute,
    EventName::ChannelExecuteComplete,
    EventName::ChannelHangup,
    EventName::ChannelHangupComplete,
    EventName::ChannelOriginate,
    EventName::ChannelProgress,
    EventName::ChannelProgressMedia,
    EventName::ChannelState,
    EventName::ChannelUnbridge,
    EventName::Dtmf,
];

fn all_keeping_headers(f: &EventFilter) -> EventFilter {
    let mut all = EventFilter::all();
    for (k, v) in f.header_filters() {
        all.add_header(k.clone(), v.clone());
    }
    all
}

async fn session_closed(s: &Option<super::outbound::Session>) {
    match s {
        Some(s) => s.orders.closed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn recv_event(sub: &mut Option<Subscription>) -> Option<Delivery> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_log(
    logs: &mut Option<(u8, broadcast::Receiver<Arc<LogLine>>)>,
) -> Option<Result<Arc<LogLine>, u64>> {
    match logs {
        Some((_, rx)) => match rx.recv().await {
            Ok(l) => Some(Ok(l)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        },
        None => std::future::pending().await,
    }
}

/// `originate sofia/... 9196` -> (`originate`, `sofia/... 9196`).
pub fn split_command(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
