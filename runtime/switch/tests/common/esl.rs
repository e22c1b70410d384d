//! A minimal blocking event socket client, the wire format by hand (no
//! code shared with the switch), for tests that drive the switch over ESL.
//! The tests that hold real clients to the protocol (modesl, genesis) and
//! send it malformed frames are in `esl.rs`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A frame's headers in order.
pub type Headers = Vec<(String, String)>;

pub struct Esl {
    r: BufReader<TcpStream>,
    w: TcpStream,
    /// Events read while waiting for an API response, oldest first.
    events: VecDeque<Headers>,
}

impl Esl {
    /// Connects to 127.0.0.1:`port` and authenticates with the default
    /// password.
    pub fn connect(port: u16) -> Esl {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut e = Esl {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            events: VecDeque::new(),
        };
        assert_eq!(header(&e.frame().0, "Content-Type"), Some("auth/request"));
        e.send("auth ClueCon");
        assert_eq!(header(&e.frame().0, "Reply-Text"), Some("+OK accepted"));
        e
    }

    pub fn send(&mut self, cmd: &str) {
        write!(self.w, "{cmd}\n\n").unwrap();
    }

    /// The next frame: headers and body.
    pub fn frame(&mut self) -> (Headers, String) {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .r
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("event socket read: {e}"));
            assert!(n > 0, "closed");
            let line = line.trim_end();
            if line.is_empty() {
                if headers.is_empty() {
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(": ") {
                headers.push((k.to_string(), v.to_string()));
            }
        }
        let len: usize = header(&headers, "Content-Length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).unwrap();
        (headers, String::from_utf8(body).unwrap())
    }

    /// `api CMD`'s response body; events that arrive first are kept for
    /// [`Esl::event`].
    pub fn api(&mut self, cmd: &str) -> String {
        self.send(&format!("api {cmd}"));
        loop {
            let (h, body) = self.frame();
            match header(&h, "Content-Type") {
                Some("api/response") => return body,
                Some("text/event-plain") => self.events.push_back(parse_event(&body)),
                _ => {}
            }
        }
    }

    /// The next event (plain), those kept by [`Esl::api`] first.
    pub fn event(&mut self) -> Headers {
        if let Some(ev) = self.events.pop_front() {
            return ev;
        }
        loop {
            let (h, body) = self.frame();
            if header(&h, "Content-Type") == Some("text/event-plain") {
                return parse_event(&body);
            }
        }
    }
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A plain event's headers, the values' URL encoding undone for the
/// characters UUIDs and names carry.
pub fn parse_event(body: &str) -> Headers {
    body.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%20", " ")))
        .collect()
}
