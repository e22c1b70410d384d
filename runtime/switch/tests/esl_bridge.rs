//! `uuid_bridge` over the event socket: two calls the switch originated to
//! SIPp callees, each parked, are bridged; CHANNEL_BRIDGE names both legs,
//! and killing one ends the other (both callees get their BYE).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::esl::{header, Esl};
use common::{repo, Running};

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
    let a = esl.api("originate sofia/internal/a@127.0.0.1:6230 &park()");
    let a = a
        .strip_prefix("+OK ")
        .unwrap_or_else(|| panic!("{a}\n{}", sw.log_tail()))
        .trim()
        .to_string();
    let b = esl.api("originate sofia/internal/b@127.0.0.1:6232 &park()");
    let b = b
        .strip_prefix("+OK ")
        .unwrap_or_else(|| panic!("{b}"))
        .trim()
        .to_string();
    assert_ne!(a, b);
    // Same channel twice, unknown channel: refused.
    assert!(esl.api(&format!("uuid_bridge {a} {a}")).starts_with("-ERR"));
    assert!(esl
        .api(&format!(
            "uuid_bridge {a} 00000000-0000-0000-0000-000000000000"
        ))
        .starts_with("-ERR no such channel"));
    let reply = esl.api(&format!("uuid_bridge {a} {b}"));
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
        let ev = esl.event();
        if header(&ev, "Event-Name") == Some("CHANNEL_BRIDGE") {
            break ev;
        }
    };
    assert_eq!(header(&bridge, "Unique-ID"), Some(a.as_str()));
    assert_eq!(header(&bridge, "Other-Leg-Unique-ID"), Some(b.as_str()));
    let dump = esl.api(&format!("uuid_getvar {b} bridge_uuid"));
    assert_eq!(dump.trim(), a);
    let calls = esl.api("show calls as json");
    let calls: serde_json::Value = serde_json::from_str(&calls).unwrap();
    assert!(calls["row_count"].as_u64().unwrap() >= 1, "{calls}");

    assert_eq!(esl.api(&format!("uuid_kill {a}")).trim(), "+OK");
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
