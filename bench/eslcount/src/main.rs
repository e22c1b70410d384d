//! `eslcount`: subscribes to every event of a FreeSWITCH-style event socket
//! (`event plain ALL`) and counts what arrives, for the event-throughput
//! benchmark (`scripts/bench-sip.sh` with `BENCH_ESL=1`).
//!
//! ```text
//! eslcount HOST:PORT PASSWORD MAX_SECONDS
//! ```
//!
//! Reads until SIGTERM/SIGINT, until the switch closes the socket, or for
//! MAX_SECONDS, then prints one JSON object: events received, per event
//! name, the events per second over the window from the first to the last
//! event, gaps in `Event-Sequence` (the switch numbers every event it
//! publishes; a subscriber to ALL sees every number, so a gap is a lost
//! event) and the `Events-Lost` the switch reported in its
//! `dialtone::events_lost` events.
//!
//! It shares no code with the switch: it parses the wire format on its own
//! (std only), so it measures what a client sees.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// A frame's headers and body.
type Frame = (Vec<(String, String)>, Vec<u8>);

struct Reader {
    sock: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl Reader {
    /// The next frame: (headers, body). `None` at end of stream or stop.
    fn frame(&mut self) -> Option<Frame> {
        loop {
            let avail = &self.buf[self.start..];
            if let Some(end) = avail.windows(2).position(|w| w == b"\n\n") {
                let head = String::from_utf8_lossy(&avail[..end]).into_owned();
                let headers: Vec<(String, String)> = head
                    .lines()
                    .filter_map(|l| l.split_once(": "))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "Content-Length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                if avail.len() >= end + 2 + len {
                    let body = avail[end + 2..end + 2 + len].to_vec();
                    self.start += end + 2 + len;
                    if self.start > 1 << 20 {
                        self.buf.drain(..self.start);
                        self.start = 0;
                    }
                    return Some((headers, body));
                }
            }
            if STOP.load(Ordering::Relaxed) {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.sock.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: eslcount HOST:PORT PASSWORD MAX_SECONDS");
        std::process::exit(2);
    }
    let max = Duration::from_secs(args[3].parse().expect("MAX_SECONDS"));
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let sock = TcpStream::connect(&args[1]).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut w = sock.try_clone().unwrap();
    let mut r = Reader {
        sock,
        buf: Vec::with_capacity(1 << 20),
        start: 0,
    };
    let (h, _) = r.frame().expect("auth/request");
    assert_eq!(header(&h, "Content-Type"), Some("auth/request"));
    write!(w, "auth {}\n\n", args[2]).unwrap();
    let (h, _) = r.frame().expect("auth reply");
    if header(&h, "Reply-Text") != Some("+OK accepted") {
        eprintln!("eslcount: auth refused: {h:?}");
        std::process::exit(1);
    }
    w.write_all(b"event plain ALL\n\n").unwrap();
    let (h, _) = r.frame().expect("event reply");
    assert_eq!(
        header(&h, "Reply-Text"),
        Some("+OK event listener enabled plain")
    );
    eprintln!("eslcount: subscribed to ALL");

    let begun = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = begun;
    let mut events: u64 = 0;
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    let mut prev_seq: Option<u64> = None;
    let mut gaps: u64 = 0;
    let mut missing: u64 = 0;
    let mut reported_lost: u64 = 0;
    while begun.elapsed() < max {
        let Some((h, body)) = r.frame() else { break };
        if header(&h, "Content-Type") != Some("text/event-plain") {
            continue;
        }
        let body = String::from_utf8_lossy(&body);
        let mut name = "";
        let mut seq = None;
        let mut subclass = "";
        let mut lost = 0;
        for line in body.lines() {
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(": ") {
                match k {
                    "Event-Name" => name = v,
                    "Event-Sequence" => seq = v.parse::<u64>().ok(),
                    "Event-Subclass" => subclass = v,
                    "Events-Lost" => lost = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        events += 1;
        let key = if name == "CUSTOM" {
            format!("CUSTOM {}", subclass.replace("%3A", ":"))
        } else {
            name.to_string()
        };
        *names.entry(key).or_default() += 1;
        if subclass.replace("%3A", ":") == "dialtone::events_lost" {
            reported_lost += lost;
            continue;
        }
        if let Some(s) = seq.filter(|s| *s > 0) {
            if let Some(p) = prev_seq {
                if s > p + 1 {
                    gaps += 1;
                    missing += s - p - 1;
                }
            }
            prev_seq = Some(s);
        }
    }
    let window = first
        .map(|f| last.duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    let rate = if window > 0.0 {
        events as f64 / window
    } else {
        0.0
    };
    let names_json: Vec<String> = names.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!(
        "{{\"events\":{events},\"window_s\":{window:.3},\"events_per_s\":{rate:.1},\"sequence_gaps\":{gaps},\"sequence_missing\":{missing},\"events_lost_reported\":{reported_lost},\"by_name\":{{{}}}}}",
        names_json.join(",")
    );
}
