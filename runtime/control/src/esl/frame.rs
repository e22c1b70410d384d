//! The event socket's wire format, sans IO: commands in, replies and events
//! out, exactly as FreeSWITCH's `mod_event_socket` frames them.
//!
//! A client command is a line (`api status`), optionally followed by
//! `Name: value` header lines (`sendmsg`, `sendevent`), ended by an empty
//! line; a `Content-Length` header adds a body of that many bytes. The
//! switch answers with frames of the same shape: `command/reply` (with
//! `Reply-Text`), `api/response`, `text/event-plain`, `text/event-json`,
//! `log/data`, `auth/request` and `text/disconnect-notice`.
//!
//! Limits: a command's line and headers may take [`MAX_HEAD`] bytes and
//! its body [`MAX_BODY`]; beyond that, or on bytes that are not UTF-8, the
//! parser reports an error and the server answers
//! `-ERR command parse error.` and closes, as FreeSWITCH does for a frame
//! it cannot parse.

use std::fmt::Write as _;

use dialtone_core::events::{header, Event};

/// Longest command line plus headers.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest command body.
pub const MAX_BODY: usize = 1024 * 1024;

/// One client command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// The command line, e.g. `api status` (CR and trailing spaces removed).
    pub line: String,
    /// Headers after the line, in order.
    pub headers: Vec<(String, String)>,
    /// The body, if `Content-Length` announced one.
    pub body: Option<String>,
}

impl Command {
    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The command word (`api`, `event`, ...), lowercased.
    pub fn verb(&self) -> String {
        self.line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    }

    /// Everything after the command word, trimmed.
    pub fn rest(&self) -> &str {
        let l = self.line.trim_start();
        match l.find(char::is_whitespace) {
            Some(i) => l[i..].trim(),
            None => "",
        }
    }
}

/// Why a frame could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The head grew beyond [`MAX_HEAD`] without an empty line.
    HeadTooLong,
    /// `Content-Length` beyond [`MAX_BODY`] or not a number.
    BadLength,
    /// Not UTF-8.
    NotText,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::HeadTooLong => write!(f, "command longer than {MAX_HEAD} bytes"),
            FrameError::BadLength => write!(f, "bad Content-Length (limit {MAX_BODY})"),
            FrameError::NotText => write!(f, "command is not UTF-8"),
        }
    }
}

/// Splits a byte stream into [`Command`]s.
#[derive(Debug, Default)]
pub struct CommandParser {
    buf: Vec<u8>,
    /// A parsed head waiting for its body.
    pending: Option<(Command, usize)>,
}

impl CommandParser {
    /// A parser with an empty buffer.
    pub fn new() -> CommandParser {
        CommandParser::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete command, `Ok(None)` if more bytes are needed.
    pub fn next_command(&mut self) -> Result<Option<Command>, FrameError> {
        loop {
            if let Some((_, len)) = &self.pending {
                let len = *len;
                if self.buf.len() < len {
                    return Ok(None);
                }
                let body: Vec<u8> = self.buf.drain(..len).collect();
                let (mut cmd, _) = self.pending.take().expect("pending");
                cmd.body = Some(String::from_utf8(body).map_err(|_| FrameError::NotText)?);
                return Ok(Some(cmd));
            }
            // Blank lines between commands are ignored.
            let skip = self
                .buf
                .iter()
                .take_while(|b| **b == b'\n' || **b == b'\r')
                .count();
            self.buf.drain(..skip);
            let Some(end) = find_head_end(&self.buf) else {
                if self.buf.len() > MAX_HEAD {
                    return Err(FrameError::HeadTooLong);
                }
                return Ok(None);
            };
            if end.0 > MAX_HEAD {
                return Err(FrameError::HeadTooLong);
            }
            let head: Vec<u8> = self.buf.drain(..end.1).collect();
            let head = std::str::from_utf8(&head[..end.0]).map_err(|_| FrameError::NotText)?;
            let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
            let line = lines.next().unwrap_or("").trim_end().to_string();
            let mut cmd = Command {
                line,
                ..Command::default()
            };
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    cmd.headers
                        .push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            match cmd.header("Content-Length") {
                None => return Ok(Some(cmd)),
                Some(v) => {
                    let len: usize = v.trim().parse().map_err(|_| FrameError::BadLength)?;
                    if len > MAX_BODY {
                        return Err(FrameError::BadLength);
                    }
                    if len == 0 {
                        return Ok(Some(cmd));
                    }
                    self.pending = Some((cmd, len));
                }
            }
        }
    }
}

/// `(head length without the blank line, bytes to consume)`.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            let rest = &buf[i + 1..];
            if rest.first() == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if rest.starts_with(b"\r\n") {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// `Content-Type: auth/request`.
pub fn auth_request() -> Vec<u8> {
    b"Content-Type: auth/request\n\n".to_vec()
}

/// A `command/reply` with `Reply-Text: text`.
pub fn reply(text: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: {text}\n\n").into_bytes()
}

/// A `command/reply` with `Reply-Text` and more headers.
pub fn reply_with(text: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("Content-Type: command/reply\nReply-Text: {text}\n");
    for (k, v) in headers {
        let _ = writeln!(s, "{k}: {v}");
    }
    s.push('\n');
    s.into_bytes()
}

/// An `api/response` carrying `body` (FreeSWITCH sends `-ERR no reply` for
/// an empty one).
pub fn api_response(body: &str) -> Vec<u8> {
    let body = if body.is_empty() {
        "-ERR no reply\n"
    } else {
        body
    };
    let mut out = format!(
        "Content-Type: api/response\nContent-Length: {}\n\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// `text/disconnect-notice`, sent before the switch closes a connection.
pub fn disconnect_notice() -> Vec<u8> {
    let body = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
    let mut out = format!(
        "Content-Type: text/disconnect-notice\nContent-Length: {}\n\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A `log/data` frame.
pub fn log_data(
    level: u8,
    file: &str,
    func: &str,
    line: u32,
    user_data: &str,
    text: &str,
) -> Vec<u8> {
    let mut out = format!(
        "Content-Type: log/data\nContent-Length: {}\nLog-Level: {level}\nText-Channel: 3\nLog-File: {file}\nLog-Func: {func}\nLog-Line: {line}\nUser-Data: {user_data}\n\n",
        text.len()
    )
    .into_bytes();
    out.extend_from_slice(text.as_bytes());
    out
}

/// Writes the headers FreeSWITCH puts first on every event, then the
/// event's own, each through `put(name, value)`.
fn each_header(ev: &Event, core_uuid: &str, mut put: impl FnMut(&str, &str)) {
    put(header::EVENT_NAME, ev.name.as_str());
    if let Some(s) = &ev.subclass {
        put(header::EVENT_SUBCLASS, s);
    }
    put(header::CORE_UUID, core_uuid);
    let mut num = itoa_buf(ev.timestamp_us);
    put(header::EVENT_DATE_TIMESTAMP, num.as_str());
    num = itoa_buf(ev.sequence);
    put(header::EVENT_SEQUENCE, num.as_str());
    ev.each_header(put);
}

/// A small stack buffer holding a number's decimal digits.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        // Only ASCII digits are written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [b'0'; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    d
}

/// The body of a `text/event-plain` frame: `Name: url-encoded value` lines,
/// an empty line, and the event's body after its own `Content-Length`.
pub fn event_plain_body(ev: &Event, core_uuid: &str) -> String {
    let mut s = String::with_capacity(1024);
    event_plain_body_into(ev, core_uuid, &mut s);
    s
}

/// [`event_plain_body`] into a reused buffer (cleared first).
pub fn event_plain_body_into(ev: &Event, core_uuid: &str, s: &mut String) {
    s.clear();
    each_header(ev, core_uuid, |k, v| {
        s.push_str(k);
        s.push_str(": ");
        url_encode_into(v, s);
        s.push('\n');
    });
    match &ev.body {
        Some(b) => {
            let _ = write!(s, "Content-Length: {}\n\n{b}", b.len());
        }
        None => s.push('\n'),
    }
}

/// The body of a `text/event-json` frame: one object, header values as
/// strings, the event's body as `_body`.
pub fn event_json_body(ev: &Event, core_uuid: &str) -> String {
    let mut m = serde_json::Map::new();
    each_header(ev, core_uuid, |k, v| {
        m.entry(k.to_string())
            .or_insert(serde_json::Value::String(v.to_string()));
    });
    if let Some(b) = &ev.body {
        m.insert("Content-Length".into(), b.len().to_string().into());
        m.insert("_body".into(), b.clone().into());
    }
    serde_json::Value::Object(m).to_string()
}

/// Wraps an event body in its `Content-Length` / `Content-Type` frame.
pub fn event_frame(kind: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    event_frame_into(kind, body, &mut out);
    out
}

/// [`event_frame`], appended to `out`.
pub fn event_frame_into(kind: &str, body: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa_buf(body.len() as u64).as_str().as_bytes());
    out.extend_from_slice(b"\nContent-Type: text/event-");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(body.as_bytes());
}

/// Percent-encodes like FreeSWITCH's `switch_url_encode`: everything but
/// ASCII letters, digits and `-_.!~*'()` is escaped.
pub fn url_encode_into(v: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = v.as_bytes();
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b);
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if safe(b) {
            continue;
        }
        // A run of safe bytes is ASCII (valid UTF-8 whatever the bytes
        // around it); `v[run..i]` could split a multi-byte character.
        out.push_str(std::str::from_utf8(&bytes[run..i]).unwrap_or_default());
        out.push('%');
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
        run = i + 1;
    }
    out.push_str(std::str::from_utf8(&bytes[run..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_core::events::EventName;

    fn all(p: &mut CommandParser) -> Vec<Command> {
        let mut v = Vec::new();
        while let Some(c) = p.next_command().unwrap() {
            v.push(c);
        }
        v
    }

    #[test]
    fn commands_split_anywhere() {
        let wire = b"auth ClueCon\n\napi status\r\n\r\nsendmsg abc\ncall-command: execute\nContent-Length: 5\n\nhello\n\nexit\n\n";
        for cut in 0..wire.len() {
            let mut p = CommandParser::new();
            p.push(&wire[..cut]);
            let mut got = all(&mut p);
            p.push(&wire[cut..]);
            got.extend(all(&mut p));
            assert_eq!(got.len(), 4, "cut at {cut}");
            assert_eq!(got[0].line, "auth ClueCon");
            assert_eq!(got[1].verb(), "api");
            assert_eq!(got[1].rest(), "status");
            assert_eq!(got[2].header("CALL-COMMAND"), Some("execute"));
            assert_eq!(got[2].body.as_deref(), Some("hello"));
            assert_eq!(got[3].line, "exit");
        }
    }

    #[test]
    fn oversized_and_bad_frames_are_errors() {
        let mut p = CommandParser::new();
        p.push(&vec![b'a'; MAX_HEAD + 2]);
        assert_eq!(p.next_command(), Err(FrameError::HeadTooLong));
        let mut p = CommandParser::new();
        p.push(b"sendevent x\nContent-Length: 99999999999\n\n");
        assert_eq!(p.next_command(), Err(FrameError::BadLength));
        let mut p = CommandParser::new();
        p.push(b"sendevent x\nContent-Length: ten\n\n");
        assert_eq!(p.next_command(), Err(FrameError::BadLength));
        let mut p = CommandParser::new();
        p.push(b"api \xff\xfe\n\n");
        assert_eq!(p.next_command(), Err(FrameError::NotText));
    }

    #[test]
    fn events_are_framed_as_freeswitch_does() {
        let mut ev = Event::new(EventName::BackgroundJob)
            .header("Job-UUID", "j1")
            .header("Job-Command", "status")
            .with_body("+OK a b\n");
        ev.sequence = 7;
        let body = event_plain_body(&ev, "core");
        assert!(body.starts_with("Event-Name: BACKGROUND_JOB\nCore-UUID: core\n"));
        assert!(body.contains("\nEvent-Sequence: 7\n"));
        assert!(body.ends_with("Job-Command: status\nContent-Length: 8\n\n+OK a b\n"));
        let json: serde_json::Value = serde_json::from_str(&event_json_body(&ev, "core")).unwrap();
        assert_eq!(json["Event-Name"], "BACKGROUND_JOB");
        assert_eq!(json["_body"], "+OK a b\n");
        let frame = String::from_utf8(event_frame("plain", &body)).unwrap();
        assert!(frame.starts_with(&format!(
            "Content-Length: {}\nContent-Type: text/event-plain\n\n",
            body.len()
        )));
        let ev = Event::new(EventName::ChannelCreate).header("Caller-Caller-ID-Name", "A b:c%");
        let body = event_plain_body(&ev, "c");
        assert!(body.contains("Caller-Caller-ID-Name: A%20b%3Ac%25\n"));
        assert!(body.ends_with("%25\n\n"));
        let mut enc = String::new();
        url_encode_into("é-x_y", &mut enc);
        assert_eq!(enc, "%C3%A9-x_y");
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply("+OK accepted"),
            b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
        );
        assert_eq!(
            api_response("x"),
            b"Content-Type: api/response\nContent-Length: 1\n\nx"
        );
        assert!(String::from_utf8(api_response(""))
            .unwrap()
            .ends_with("-ERR no reply\n"));
    }
}
