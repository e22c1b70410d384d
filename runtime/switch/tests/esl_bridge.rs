//! `uuid_bridge` over the event socket: two calls the switch originated to
//! SIPp callees, each parked, are bridged; CHANNEL_BRIDGE names both legs,
//! and killing one ends the other (both callees get their BYE).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, Running};

/// A minimal event socket client (the wire format by hand).
struct Esl {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

type Frame = (Vec<(String, String)>, String);

impl Esl {
    fn connect(port: u16) -> Esl {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut e = Esl {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        assert_eq!(e.frame().0[0].1, "auth/request");
        e.send("auth ClueCon");
        assert_eq!(header(&e.frame().0, "Reply-Text"), Some("+OK accepted"));
        e
    }

    fn send(&mut self, cmd: &str) {
        write!(self.w, "{cmd}\n\n").unwrap();
    }

    fn frame(&mut self) -> Frame {
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

    /// `api CMD`, skipping events that arrive first (kept).
    fn api(&mut self, cmd: &str, events: &mut Vec<Vec<(String, String)>>) -> String {
        self.send(&format!("api {cmd}"));
        loop {
            let (h, body) = self.frame();
            match header(&h, "Content-Type") {
                Some("api/response") => return body,
                Some("text/event-plain") => events.push(parse_event(&body)),
                _ => {}
            }
        }
    }

    fn event(&mut self) -> Vec<(String, String)> {
        loop {
            let (h, body) = self.frame();
            if header(&h, "Content-Type") == Some("text/event-plain") {
                return parse_event(&body);
            }
        }
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn parse_event(body: &str) -> Vec<(String, String)> {
    body.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%20", " ")))
        .collect()
}

fn callee(port: u16, rtp: u16, dir: &std::path::Path) -> Child {
    Command::new("timeout")
        .arg("60")
        .arg("sipp")
        .arg("-sf")
        .arg(repo().join("tests/sip/sipp/uas_answer.xml"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &rtp.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "55s", "-timeout_error"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp")
}

#[test]
fn uuid_bridge_joins_two_parked_calls_and_ends_them_together() {
    let sw = Running::start(6220, 29200);
    let work = tempfile::tempdir().unwrap();
    let mut a_callee = callee(6230, 29500, work.path());
    let mut b_callee = callee(6232, 29510, work.path());
    std::thread::sleep(Duration::from_millis(500));
    let mut esl = Esl::connect(sw.esl);
    esl.send("event plain CHANNEL_BRIDGE CHANNEL_HANGUP_COMPLETE");
    assert_eq!(
        header(&esl.frame().0, "Reply-Text"),
        Some("+OK event listener enabled plain")
    );
    let mut events = Vec::new();
    let a = esl.api(
        "originate sofia/internal/a@127.0.0.1:6230 &park()",
        &mut events,
    );
    let a = a
        .strip_prefix("+OK ")
        .unwrap_or_else(|| panic!("{a}\n{}", sw.log_tail()))
        .trim()
        .to_string();
    let b = esl.api(
        "originate sofia/internal/b@127.0.0.1:6232 &park()",
        &mut events,
    );
    let b = b
        .strip_prefix("+OK ")
        .unwrap_or_else(|| panic!("{b}"))
        .trim()
        .to_string();
    assert_ne!(a, b);
    // Same channel twice, unknown channel: refused.
    assert!(esl
        .api(&format!("uuid_bridge {a} {a}"), &mut events)
        .starts_with("-ERR"));
    assert!(esl
        .api(
            &format!("uuid_bridge {a} 00000000-0000-0000-0000-000000000000"),
            &mut events
        )
        .starts_with("-ERR no such channel"));
    let reply = esl.api(&format!("uuid_bridge {a} {b}"), &mut events);
    assert_eq!(reply.trim(), format!("+OK {b}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = sw.log_path.clone();
    let guard = PrintLogOnPanic(log);
    let bridge = loop {
        assert!(
            Instant::now() < deadline,
            "no CHANNEL_BRIDGE\n{}",
            sw.log_tail()
        );
        let ev = events.pop().unwrap_or_else(|| esl.event());
        if header(&ev, "Event-Name") == Some("CHANNEL_BRIDGE") {
            break ev;
        }
    };
    assert_eq!(header(&bridge, "Unique-ID"), Some(a.as_str()));
    assert_eq!(header(&bridge, "Other-Leg-Unique-ID"), Some(b.as_str()));
    let dump = esl.api(&format!("uuid_getvar {b} bridge_uuid"), &mut events);
    assert_eq!(dump.trim(), a);
    let calls = esl.api("show calls as json", &mut events);
    let calls: serde_json::Value = serde_json::from_str(&calls).unwrap();
    assert!(calls["row_count"].as_u64().unwrap() >= 1, "{calls}");

    assert_eq!(
        esl.api(&format!("uuid_kill {a}"), &mut events).trim(),
        "+OK"
    );
    let mut ended = Vec::new();
    while ended.len() < 2 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "hangups: {ended:?}"
        );
        let ev = esl.event();
        if header(&ev, "Event-Name") == Some("CHANNEL_HANGUP_COMPLETE") {
            ended.push(header(&ev, "Unique-ID").unwrap().to_string());
        }
    }
    ended.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(ended, want);
    for (name, c) in [("a", &mut a_callee), ("b", &mut b_callee)] {
        let status = c.wait().unwrap();
        assert!(
            status.success(),
            "callee {name} did not get its BYE: {status}"
        );
    }
    sw.assert_no_leaks();
    std::mem::forget(guard);
}

/// Prints the switch's log if the test fails before the end.
struct PrintLogOnPanic(std::path::PathBuf);

impl Drop for PrintLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "switch log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
    }
}
