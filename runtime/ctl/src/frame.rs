//! The ESL wire framing, without I/O.
//!
//! Owns cutting the byte stream of an event socket into frames: header lines
//! `Name: value\n` up to a blank line, then `Content-Length` bytes of body when
//! that header is present. [`FrameParser`] is fed whatever the socket returned
//! ([`FrameParser::push`]) and hands back whole frames
//! ([`FrameParser::next_frame`]), so split reads, several frames in one read
//! and oversized lengths are all testable without a socket.
//!
//! It also owns the header-block reader shared with event bodies
//! ([`parse_header_block`]) and URL decoding ([`url_decode`]). Outer frame
//! headers are taken as sent; only the headers inside `text/event-plain`
//! bodies are URL-encoded, and [`crate::event`] decodes those.

use std::fmt;

/// The largest `Content-Length` accepted (64 MiB). A larger one is an error:
/// the stream is either hostile or out of step.
pub const MAX_CONTENT_LENGTH: usize = 64 * 1024 * 1024;

/// The largest header block accepted (1 MiB) before its blank line.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// One message of the event socket: ordered headers and an optional body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// Headers in the order sent, values as sent (not URL-decoded).
    pub headers: Vec<(String, String)>,
    /// The `Content-Length` bytes after the headers, when that header was sent.
    pub body: Option<Vec<u8>>,
}

impl Frame {
    /// The first header of that name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// `Content-Type`, or `""` when absent.
    pub fn content_type(&self) -> &str {
        self.header("Content-Type").unwrap_or("")
    }

    /// The body as text (lossy UTF-8), or `""` when there is none.
    pub fn body_text(&self) -> String {
        self.body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }
}

/// Looks a header up by name, ASCII case-insensitively; the first one wins.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why the byte stream cannot be framed. After one of these the parser's
/// state is undefined: the connection should be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// `Content-Length` above [`MAX_CONTENT_LENGTH`].
    TooLong(usize),
    /// `Content-Length` that is not a decimal number.
    BadLength(String),
    /// A header line without `:`.
    BadHeader(String),
    /// No blank line within [`MAX_HEADER_BYTES`].
    HeadersTooLong,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong(n) => write!(
                f,
                "Content-Length {n} is over the {MAX_CONTENT_LENGTH}-byte limit"
            ),
            FrameError::BadLength(v) => write!(f, "Content-Length `{v}` is not a number"),
            FrameError::BadHeader(l) => write!(f, "malformed header line `{l}`"),
            FrameError::HeadersTooLong => write!(
                f,
                "header block over {MAX_HEADER_BYTES} bytes without a blank line"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits one header line into name and value: `Name: value`, the spaces
/// after the colon dropped, a trailing `\r` dropped.
fn split_header(line: &[u8]) -> Result<(String, String), FrameError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    match text.split_once(':') {
        Some((name, value)) => Ok((
            name.trim().to_string(),
            value.trim_start_matches([' ', '\t']).to_string(),
        )),
        None => Err(FrameError::BadHeader(text.into_owned())),
    }
}

/// Reads a header block at the start of `bytes`: lines up to the first blank
/// line (or the end of `bytes`). Returns the headers and the offset just past
/// the blank line (or `bytes.len()`). Leading blank lines are skipped.
pub fn parse_header_block(bytes: &[u8]) -> Result<(Vec<(String, String)>, usize), FrameError> {
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| pos + i);
        let line = &bytes[pos..end];
        pos = (end + 1).min(bytes.len());
        if line.is_empty() || line == b"\r" {
            if headers.is_empty() {
                continue;
            }
            return Ok((headers, pos));
        }
        headers.push(split_header(line)?);
    }
    Ok((headers, bytes.len()))
}

/// Reads `Content-Length` from headers: `None` when absent.
pub fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, FrameError> {
    let Some(v) = header_in(headers, "Content-Length") else {
        return Ok(None);
    };
    let n: usize = v
        .trim()
        .parse()
        .map_err(|_| FrameError::BadLength(v.to_string()))?;
    if n > MAX_CONTENT_LENGTH {
        return Err(FrameError::TooLong(n));
    }
    Ok(Some(n))
}

#[derive(Debug)]
enum State {
    /// Reading header lines; `headers` holds the complete ones so far.
    Headers { headers: Vec<(String, String)> },
    /// Headers done; waiting for `len` body bytes.
    Body {
        headers: Vec<(String, String)>,
        len: usize,
    },
}

/// Sans-IO frame reader: [`push`](Self::push) bytes in, take frames out with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
#[derive(Debug)]
pub struct FrameParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
    /// Where the search for the next `\n` resumes (never before `start`).
    scan: usize,
    state: State,
}

impl Default for FrameParser {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameParser {
    pub fn new() -> Self {
        FrameParser {
            buf: Vec::new(),
            start: 0,
            scan: 0,
            state: State::Headers {
                headers: Vec::new(),
            },
        }
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes pushed but not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            match &mut self.state {
                State::Headers { headers } => {
                    let Some(i) = self.buf[self.scan..].iter().position(|&b| b == b'\n') else {
                        self.scan = self.buf.len();
                        if self.buf.len() - self.start > MAX_HEADER_BYTES {
                            return Err(FrameError::HeadersTooLong);
                        }
                        return Ok(None);
                    };
                    let end = self.scan + i;
                    let line = &self.buf[self.start..end];
                    let blank = line.is_empty() || line == b"\r";
                    if !blank {
                        headers.push(split_header(line)?);
                    }
                    self.start = end + 1;
                    self.scan = self.start;
                    if blank && !headers.is_empty() {
                        let headers = std::mem::take(headers);
                        match content_length(&headers)? {
                            None => {
                                return Ok(Some(Frame {
                                    headers,
                                    body: None,
                                }))
                            }
                            Some(len) => self.state = State::Body { headers, len },
                        }
                    }
                }
                State::Body { headers, len } => {
                    let len = *len;
                    if self.buf.len() - self.start < len {
                        return Ok(None);
                    }
                    let body = self.buf[self.start..self.start + len].to_vec();
                    let headers = std::mem::take(headers);
                    self.start += len;
                    self.scan = self.start;
                    self.state = State::Headers {
                        headers: Vec::new(),
                    };
                    return Ok(Some(Frame {
                        headers,
                        body: Some(body),
                    }));
                }
            }
        }
    }
}

/// Decodes `%XX` escapes (a malformed escape is kept as is). `+` stays `+`,
/// as FreeSWITCH's own decoder leaves it. Invalid UTF-8 is replaced.
pub fn url_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(p: &mut FrameParser) -> Vec<Frame> {
        let mut v = Vec::new();
        while let Some(f) = p.next_frame().unwrap() {
            v.push(f);
        }
        v
    }

    #[test]
    fn header_only_frame() {
        let mut p = FrameParser::new();
        p.push(b"Content-Type: auth/request\n\n");
        let f = frames(&mut p);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].content_type(), "auth/request");
        assert_eq!(f[0].body, None);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn several_frames_in_one_read_and_crlf() {
        let mut p = FrameParser::new();
        p.push(
            b"Content-Type: command/reply\r\nReply-Text: +OK accepted\r\n\r\n\
              Content-Type: api/response\nContent-Length: 3\n\nabc\
              Content-Type: command/reply\nReply-Text: -ERR invalid\n\n",
        );
        let f = frames(&mut p);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].header("reply-text"), Some("+OK accepted"));
        assert_eq!(f[1].body.as_deref(), Some(&b"abc"[..]));
        assert_eq!(f[2].header("Reply-Text"), Some("-ERR invalid"));
    }

    /// Every split point of a stream of frames, fed one byte at a time and in
    /// two halves, gives the same frames as one read.
    #[test]
    fn split_reads_give_the_same_frames() {
        let stream: &[u8] = b"Content-Type: api/response\nContent-Length: 12\n\n+OK 1 line\n\n\
              Content-Type: text/event-plain\nContent-Length: 30\n\n\
              Event-Name: HEARTBEAT\nA: b%20c\n\n\
              Content-Type: text/disconnect-notice\n\n";
        let mut whole = FrameParser::new();
        whole.push(stream);
        let expected = frames(&mut whole);
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[0].body_text(), "+OK 1 line\n\n");

        let mut bytewise = FrameParser::new();
        let mut got = Vec::new();
        for b in stream {
            bytewise.push(std::slice::from_ref(b));
            got.extend(frames(&mut bytewise));
        }
        assert_eq!(got, expected);

        for cut in 0..stream.len() {
            let mut p = FrameParser::new();
            p.push(&stream[..cut]);
            let mut got = frames(&mut p);
            p.push(&stream[cut..]);
            got.extend(frames(&mut p));
            assert_eq!(got, expected, "cut at {cut}");
        }
    }

    #[test]
    fn body_bytes_that_look_like_headers_stay_in_the_body() {
        let mut p = FrameParser::new();
        let body = b"Content-Type: x\n\nContent-Length: 99\n\n";
        p.push(
            format!(
                "Content-Type: api/response\nContent-Length: {}\n\n",
                body.len()
            )
            .as_bytes(),
        );
        p.push(body);
        p.push(b"Content-Type: auth/request\n\n");
        let f = frames(&mut p);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].body.as_deref(), Some(&body[..]));
        assert_eq!(f[1].content_type(), "auth/request");
    }

    #[test]
    fn leading_blank_lines_are_skipped() {
        let mut p = FrameParser::new();
        p.push(b"\n\r\nContent-Type: auth/request\n\n");
        assert_eq!(frames(&mut p)[0].content_type(), "auth/request");
    }

    #[test]
    fn oversized_content_length_is_an_error() {
        let mut p = FrameParser::new();
        p.push(b"Content-Type: api/response\nContent-Length: 67108865\n\n");
        assert_eq!(p.next_frame(), Err(FrameError::TooLong(67_108_865)));

        let mut p = FrameParser::new();
        p.push(format!("Content-Length: {MAX_CONTENT_LENGTH}\n\n").as_bytes());
        assert_eq!(p.next_frame(), Ok(None), "exactly the limit is allowed");

        let mut p = FrameParser::new();
        p.push(b"Content-Length: 12x\n\n");
        assert!(matches!(p.next_frame(), Err(FrameError::BadLength(_))));
    }

    #[test]
    fn malformed_and_endless_headers_are_errors() {
        let mut p = FrameParser::new();
        p.push(b"no colon here\n\n");
        assert!(matches!(p.next_frame(), Err(FrameError::BadHeader(_))));

        let mut p = FrameParser::new();
        p.push(&vec![b'a'; MAX_HEADER_BYTES + 1]);
        assert_eq!(p.next_frame(), Err(FrameError::HeadersTooLong));
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("plain"), "plain");
        assert_eq!(url_decode("a%20b%3Ac"), "a b:c");
        assert_eq!(url_decode("%E2%82%AC"), "€");
        assert_eq!(url_decode("1+1"), "1+1");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("%41%"), "A%");
    }

    #[test]
    fn header_block_reader() {
        let (h, end) = parse_header_block(b"A: 1\nB:2\n\nrest").unwrap();
        assert_eq!(h, vec![("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert_eq!(end, 10);
        let (h, end) = parse_header_block(b"A: 1\nB: 2").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(end, 9);
    }
}
