//! CDR durability end to end: bridged calls under load, `kill -9` of the
//! switch while calls are up, restart on the same state directory.
//!
//! A SIPp caller (`tests/sip/sipp/cdr_uac_auth_call.xml`, user 1000 with
//! digest auth) dials 1001 at 10 calls/s; the default dialplan bridges each
//! call to `user/1001`, a SIPp callee (`uas_answer.xml`) registered as 1001:
//! two channels, two CDRs per call. Each call lasts 1 to 3 s. Once enough
//! calls have ended, the switch is killed with SIGKILL, SIPp is stopped,
//! and the switch is started again on the same state directory. Its
//! journal, read back over the event socket (`dialtone ctl -x "cdr list"`),
//! must then hold:
//!
//! * for every call the caller saw end (its BYE answered 200) one CDR per
//!   leg: the caller's inbound leg (found by the From display name
//!   `cdr-<call number>`, its `sip_call_id` the caller's Call-ID when CDRs
//!   carry that field) and one outbound leg linked to it by
//!   `other_leg_uuid` (either names the other); both ended normally
//!   (`NORMAL_CLEARING`, answered, not `cut_by_crash`) unless the call ended
//!   within [`GRACE`] of the kill (the journal commits in groups of up to
//!   100 ms, so a hangup not committed yet is rightly cut instead);
//! * for every call answered at least [`GRACE`] before the kill and not
//!   being hung up then: both legs cut by the crash (`cut_by_crash: true`,
//!   `hangup_cause: "CRASH"`, no answer time, billsec 0, ended at the last
//!   commit: before the kill, within the 10 s heartbeat of it);
//! * for any other call, at most one CDR per leg, and cut if the caller
//!   never saw an answer; no outbound CDR that belongs to no call;
//! * no record with cause `CRASH` that is not `cut_by_crash`, and the
//!   reverse; no UUID twice; `seq` 1, 2, 3, ... in order; nothing left
//!   open (`cdr stats`);
//! * the JSON-lines copy (`<state_dir>/cdr.jsonl`) holds only records the
//!   journal holds, in seq order, the crash CDRs among them;
//! * after another `kill -9` and start, with no call in between, exactly
//!   the same records.
//!
//! Needs sipp (`scripts/install-peers.sh`). Ports: switch 6060.. (ESL
//! 9060), RTP 28400..28599, SIPp 6150..6169.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BASE: u16 = 6060;
const RTP_BASE: u16 = 28400;
/// The caller's SIP port, its media and control ports.
const UAC: (u16, u16, u16) = (6150, 6160, 6159);
/// The callee's (1001's) SIP port, its media and control ports.
const UAS: (u16, u16, u16) = (6152, 6164, 6158);
/// The registering SIPp's media and control ports (its SIP port is the
/// callee's: that is the contact registered).
const REG: (u16, u16) = (6154, 6157);

/// Calls the caller places at most, and per second.
const CALLS: u32 = 150;
const RATE: u32 = 10;
/// Calls that must have ended before the kill.
const ENDED_BEFORE_KILL: usize = 25;
/// How close to the kill (seconds) a call may have ended and still be cut
/// (its CDR not committed yet), or been answered and have no CDR yet.
const GRACE: f64 = 1.0;

fn scenario(name: &str) -> PathBuf {
    repo().join("tests/sip/sipp").join(name)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn sipp_installed() {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "sipp is not installed: run scripts/install-peers.sh (the test command does)"
    );
}

/// SIPp under `timeout` (the hard bound on its life), output to `out`.
fn sipp(limit_s: u32, args: &[String], out: &Path) -> Child {
    let log = std::fs::File::create(out).unwrap();
    Command::new("timeout")
        .arg(limit_s.to_string())
        .arg("sipp")
        .args(args)
        .arg("-nostdin")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("timeout sipp")
}

/// A SIPp the test started, stopped (by its PID) if the test ends early.
struct Sipp {
    child: Option<Child>,
    control: u16,
    out: PathBuf,
}

impl Sipp {
    /// Asks SIPp to quit at once through its control port, then waits (at
    /// most 10 s, then SIGTERM) and returns its output.
    fn quit(mut self) -> String {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = sock.send_to(b"Q", ("127.0.0.1", self.control));
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            signal_and_reap(&mut child, "-TERM");
        }
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            signal_and_reap(c, "-TERM");
        }
    }
}

/// Registers 1001 (password 1234) at 127.0.0.1:`UAS.0`.
fn register_1001(sw: &Running, work: &Path) {
    let args: Vec<String> = [
        "-sf",
        &s(&scenario("uac_register.xml")),
        &format!("127.0.0.1:{}", sw.internal),
        "-i",
        "127.0.0.1",
        "-p",
        &UAS.0.to_string(),
        "-mp",
        &REG.0.to_string(),
        "-cp",
        &REG.1.to_string(),
        "-t",
        "u1",
        "-s",
        "1001",
        "-key",
        "domain",
        "dialtone.local",
        "-key",
        "expires",
        "3600",
        "-au",
        "1001",
        "-ap",
        "1234",
        "-m",
        "1",
        "-recv_timeout",
        "10000",
        "-timeout",
        "20s",
        "-timeout_error",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let out = work.join("register.out");
    let mut child = sipp(40, &args, &out);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "REGISTER of 1001 failed:\n{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
}

/// The callee, 1001: answers every call at once.
fn callee(work: &Path) -> Sipp {
    let args: Vec<String> = [
        "-sf",
        &s(&scenario("uas_answer.xml")),
        "-i",
        "127.0.0.1",
        "-p",
        &UAS.0.to_string(),
        "-mp",
        &UAS.1.to_string(),
        "-cp",
        &UAS.2.to_string(),
        "-t",
        "u1",
        "-recv_timeout",
        "10000",
        "-timeout",
        "90s",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let out = work.join("uas.out");
    let child = sipp(120, &args, &out);
    std::thread::sleep(Duration::from_millis(500));
    Sipp {
        child: Some(child),
        control: UAS.2,
        out,
    }
}

/// The caller, 1000: `CALLS` calls to 1001 at `RATE` per second, each
/// logged to `log` when answered, hung up and ended.
fn caller(sw: &Running, work: &Path, log: &Path) -> Sipp {
    let auth_uri = format!("1001@127.0.0.1:{}", sw.internal);
    let args: Vec<String> = [
        "-sf",
        &s(&scenario("cdr_uac_auth_call.xml")),
        &format!("127.0.0.1:{}", sw.internal),
        "-i",
        "127.0.0.1",
        "-p",
        &UAC.0.to_string(),
        "-mp",
        &UAC.1.to_string(),
        "-cp",
        &UAC.2.to_string(),
        "-t",
        "u1",
        "-s",
        "1001",
        "-key",
        "caller",
        "1000",
        "-key",
        "domain",
        "dialtone.local",
        "-au",
        "1000",
        "-ap",
        "1234",
        "-auth_uri",
        &auth_uri,
        "-r",
        &RATE.to_string(),
        "-m",
        &CALLS.to_string(),
        "-l",
        "80",
        "-recv_timeout",
        "5000",
        "-timeout",
        "90s",
        "-trace_logs",
        "-log_file",
        &s(log),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let out = work.join("uac.out");
    let child = sipp(120, &args, &out);
    Sipp {
        child: Some(child),
        control: UAC.2,
        out,
    }
}

/// What the caller logged about one call.
#[derive(Debug, Default, Clone)]
struct CallLog {
    call_id: String,
    answered: Option<f64>,
    hanging_up: Option<f64>,
    ended: Option<f64>,
}

/// The caller's log: call number -> what happened, with SIPp's wall-clock
/// times (`[timestamp]`: date, time, unix seconds).
fn read_calls(log: &Path) -> BTreeMap<u64, CallLog> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut calls: BTreeMap<u64, CallLog> = BTreeMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 4 {
            continue;
        }
        let (Ok(n), Ok(t)) = (w[1].parse::<u64>(), w[w.len() - 1].parse::<f64>()) else {
            continue;
        };
        let c = calls.entry(n).or_default();
        c.call_id = w[2].to_string();
        match w[0] {
            "ANSWERED" => c.answered = Some(t),
            "HANGING_UP" => c.hanging_up = Some(t),
            "ENDED" => c.ended = Some(t),
            _ => {}
        }
    }
    calls
}

/// Runs `dialtone ctl -x CMD` against the switch's event socket.
fn ctl(sw: &Running, cmd: &str) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_dialtone"))
        .args(["ctl", "--port", &sw.esl.to_string(), "-x", cmd])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dialtone ctl -x {cmd:?} failed ({}):\n{text}{}\nswitch:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        sw.log_tail()
    );
    text
}

/// Every CDR in the journal, through `cdr list`, 1000 at a time.
fn cdr_list(sw: &Running) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |c| c["seq"].as_u64().unwrap());
        let text = ctl(sw, &format!("cdr list {after} 1000"));
        let page: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a CDR ({e}): {l:?}")))
            .collect();
        assert!(page.len() <= 1000, "cdr list gave {} records", page.len());
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// `cdr stats` as name -> number.
fn cdr_stats(sw: &Running) -> BTreeMap<String, u64> {
    ctl(sw, "cdr stats")
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn text<'a>(c: &'a Value, field: &str) -> &'a str {
    c[field].as_str().unwrap_or("")
}

fn cut(c: &Value) -> bool {
    c["cut_by_crash"].as_bool().unwrap()
}

fn short(c: &Value) -> String {
    format!(
        "seq={} uuid={} dir={} name={:?} other={} cause={} cut={}",
        c["seq"],
        text(c, "uuid"),
        text(c, "direction"),
        text(c, "caller_id_name"),
        c["other_leg_uuid"],
        text(c, "hangup_cause"),
        c["cut_by_crash"]
    )
}

/// The call number in a caller ID name `cdr-<n>` (quotes tolerated).
fn call_number(c: &Value) -> Option<u64> {
    text(c, "caller_id_name")
        .trim_matches('"')
        .strip_prefix("cdr-")?
        .parse()
        .ok()
}

/// Checks that hold for any journal: the record shape, seq 1, 2, 3, ...,
/// UUIDs unique, `CRASH` exactly on the records cut by a crash.
fn check_journal(cdrs: &[Value]) {
    let mut uuids = BTreeSet::new();
    for (i, c) in cdrs.iter().enumerate() {
        assert_eq!(
            c["seq"].as_u64(),
            Some(i as u64 + 1),
            "seq is not 1, 2, 3, ... at index {i}: {}",
            short(c)
        );
        for f in ["uuid", "direction", "hangup_cause", "channel_name"] {
            assert!(c[f].is_string(), "no {f}: {c}");
        }
        assert!(c["cut_by_crash"].is_boolean(), "no cut_by_crash: {c}");
        assert!(
            uuids.insert(text(c, "uuid").to_string()),
            "UUID twice in the journal: {}",
            short(c)
        );
        assert_eq!(
            cut(c),
            text(c, "hangup_cause") == "CRASH",
            "CRASH cause and cut_by_crash disagree: {}",
            short(c)
        );
        if cut(c) {
            assert!(
                c["answer_us"].is_null(),
                "a cut record with an answer time: {c}"
            );
            assert_eq!(
                c["billsec_s"].as_u64(),
                Some(0),
                "a cut record with billsec: {c}"
            );
        }
    }
}

/// The JSON-lines copy: each line a record of the journal (same seq, same
/// content), in seq order.
fn check_jsonl(path: &Path, cdrs: &[Value]) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut last = 0u64;
    let mut n = 0;
    for line in text.lines() {
        let c: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("cdr.jsonl line is not JSON ({e}): {line:?}"));
        let seq = c["seq"].as_u64().expect("seq in cdr.jsonl");
        assert!(seq > last, "cdr.jsonl: seq {seq} after {last}");
        last = seq;
        let j = cdrs
            .get(seq as usize - 1)
            .unwrap_or_else(|| panic!("cdr.jsonl has seq {seq}, the journal does not"));
        assert_eq!(&c, j, "cdr.jsonl and the journal differ at seq {seq}");
        n += 1;
    }
    n
}

#[test]
fn every_ended_call_has_one_cdr_per_leg_and_calls_cut_by_kill_9_are_marked() {
    sipp_installed();
    let work = tempfile::tempdir().unwrap();
    let mut sw = Running::start(BASE, RTP_BASE);
    sw.wait_for("event socket listening");
    assert!(cdr_list(&sw).is_empty(), "a new journal is not empty");

    register_1001(&sw, work.path());
    let uas = callee(work.path());
    let log = work.path().join("calls.log");
    let uac = caller(&sw, work.path(), &log);

    // Load until enough calls have ended, then kill -9 with calls up.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let calls = read_calls(&log);
        let ended = calls.values().filter(|c| c.ended.is_some()).count();
        if ended >= ENDED_BEFORE_KILL {
            break;
        }
        assert!(
            Instant::now() < end,
            "only {ended} calls ended in 60 s\ncaller:\n{}\nswitch:\n{}",
            std::fs::read_to_string(work.path().join("uac.out")).unwrap_or_default(),
            sw.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The kill lands between these two times.
    let kill_at = now_s();
    let dir = sw.kill9();
    let killed_by = now_s();
    // Nothing reaches the switch any more: stop SIPp before the restart,
    // so no retransmission or new call meets the new process.
    let uac_out = uac.quit();
    let uas_out = uas.quit();
    let calls = read_calls(&log);

    let mut sw = Running::start_in(dir, BASE, RTP_BASE, "");
    sw.wait_for("event socket listening");
    let cdrs = cdr_list(&sw);
    let report = || {
        format!(
            "{}\ncaller log:\n{}\ncaller:\n{}\ncallee:\n{}\nswitch after restart:\n{}",
            cdrs.iter().map(short).collect::<Vec<_>>().join("\n"),
            std::fs::read_to_string(&log).unwrap_or_default(),
            uac_out
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n"),
            uas_out
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .join("\n"),
            sw.log_tail()
        )
    };
    check_journal(&cdrs);
    let stats = cdr_stats(&sw);
    assert_eq!(
        stats.get("cdrs"),
        Some(&(cdrs.len() as u64)),
        "cdr stats: {stats:?}"
    );
    assert_eq!(stats.get("open_channels"), Some(&0), "cdr stats: {stats:?}");

    // The caller's legs (inbound), by call number.
    let mut inbound: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for c in cdrs.iter().filter(|c| text(c, "direction") == "inbound") {
        let n = call_number(c).unwrap_or_else(|| {
            panic!("an inbound CDR of no test call: {}\n{}", short(c), report())
        });
        inbound.entry(n).or_default().push(c);
    }
    // The outbound legs (to 1001), each linked to an inbound leg: the one
    // it names, or the one that names it.
    let outbound: Vec<&Value> = cdrs
        .iter()
        .filter(|c| text(c, "direction") == "outbound")
        .collect();
    let legs_of = |a: &Value| -> Vec<&Value> {
        outbound
            .iter()
            .copied()
            .filter(|b| {
                b["other_leg_uuid"].as_str() == Some(text(a, "uuid"))
                    || a["other_leg_uuid"].as_str() == Some(text(b, "uuid"))
            })
            .collect()
    };
    let sip_call_id_present = cdrs.iter().any(|c| c.get("sip_call_id").is_some());
    let mut linked: BTreeSet<&str> = BTreeSet::new();
    let (mut ended, mut ended_cut, mut up_cut, mut unchecked) = (0, 0, 0, 0);
    let (mut cut_a_naming_b, mut cut_b_naming_a) = (0, 0);

    // Every call the caller logged, and every call an inbound CDR names.
    let numbers: BTreeSet<u64> = calls.keys().chain(inbound.keys()).copied().collect();
    for n in numbers {
        let call = calls.get(&n).cloned().unwrap_or_default();
        let ins = inbound.get(&n).cloned().unwrap_or_default();
        assert!(
            ins.len() <= 1,
            "call {n} has {} inbound CDRs:\n{}",
            ins.len(),
            report()
        );
        let a = ins.first().copied();
        let outs = a.map(&legs_of).unwrap_or_default();
        assert!(
            outs.len() <= 1,
            "call {n} has {} outbound CDRs: {:?}\n{}",
            outs.len(),
            outs.iter().map(|b| short(b)).collect::<Vec<_>>(),
            report()
        );
        let b = outs.first().copied();
        if let Some(b) = b {
            assert!(
                linked.insert(text(b, "uuid")),
                "outbound leg of two calls: {}",
                short(b)
            );
        }
        if let (Some(a), true) = (a, sip_call_id_present && !call.call_id.is_empty()) {
            assert_eq!(
                a["sip_call_id"].as_str(),
                Some(call.call_id.as_str()),
                "call {n}: the inbound CDR's sip_call_id is not the caller's Call-ID: {a}"
            );
        }
        // Legs that finished (not cut) name each other.
        for (x, y) in [(a, b), (b, a)] {
            if let (Some(x), Some(y)) = (x, y) {
                if !cut(x) {
                    assert_eq!(
                        x["other_leg_uuid"].as_str(),
                        Some(text(y, "uuid")),
                        "call {n}: a finished leg does not name the other: {}",
                        short(x)
                    );
                } else if x["other_leg_uuid"].as_str() == Some(text(y, "uuid")) {
                    if text(x, "direction") == "inbound" {
                        cut_a_naming_b += 1;
                    } else {
                        cut_b_naming_a += 1;
                    }
                }
            }
        }
        if let Some(a) = a.filter(|a| !cut(a)) {
            assert!(
                b.is_some(),
                "call {n}: a finished inbound leg without its outbound leg: {}\n{}",
                short(a),
                report()
            );
        }

        if let Some(t) = call.ended {
            // The caller saw the call end: one CDR per leg.
            ended += 1;
            let (Some(a), Some(b)) = (a, b) else {
                panic!(
                    "ended call {n} lacks a leg's CDR ({a:?}, {b:?}):\n{}",
                    report()
                );
            };
            if t < kill_at - GRACE {
                for leg in [a, b] {
                    assert!(
                        !cut(leg) && text(leg, "hangup_cause") == "NORMAL_CLEARING",
                        "call {n} ended {:.3} s before the kill, its CDR says otherwise: {}\n{}",
                        kill_at - t,
                        short(leg),
                        report()
                    );
                    assert!(
                        !leg["answer_us"].is_null(),
                        "call {n} not answered: {}",
                        short(leg)
                    );
                }
            } else if cut(a) || cut(b) {
                // Hung up, its hangups not (both) journaled yet: cut.
                ended_cut += 1;
            }
        } else if call.hanging_up.is_none() && call.answered.is_some_and(|t| t < kill_at - GRACE) {
            // Up at the kill, long enough to be journaled: both legs cut.
            let (Some(a), Some(b)) = (a, b) else {
                panic!(
                    "call {n}, up at the kill, lacks a leg's CDR ({a:?}, {b:?}):\n{}",
                    report()
                );
            };
            for leg in [a, b] {
                assert!(
                    cut(leg),
                    "call {n} was up at the kill: {}\n{}",
                    short(leg),
                    report()
                );
            }
            up_cut += 1;
        } else {
            // Answered or hung up just before the kill, or being set up: a
            // record, if any, is unique (checked above); cut or not is the
            // race with the group commit. Never answered: never finished.
            unchecked += 1;
            if call.answered.is_none() {
                for leg in [a, b].into_iter().flatten() {
                    assert!(
                        cut(leg),
                        "call {n}, never answered, has a record not cut: {}\n{}",
                        short(leg),
                        report()
                    );
                }
            }
        }
    }
    // No outbound CDR without its call.
    for b in &outbound {
        assert!(
            linked.contains(text(b, "uuid")),
            "an outbound CDR of no call: {}\n{}",
            short(b),
            report()
        );
    }
    // Cut records end at the journal's last commit: before the kill, not
    // before their start, and (the heartbeat) not long before the kill.
    for c in cdrs.iter().filter(|c| cut(c)) {
        let (start, end) = (
            c["start_us"].as_u64().unwrap(),
            c["end_us"].as_u64().unwrap(),
        );
        assert!(start <= end, "cut record ends before it starts: {c}");
        let end_s = end as f64 / 1e6;
        assert!(
            end_s <= killed_by && end_s > kill_at - 12.0,
            "cut record's end {end_s} is not the last commit before the kill \
             ({kill_at}..{killed_by}): {c}"
        );
    }
    let cut_total = cdrs.iter().filter(|c| cut(c)).count();
    eprintln!(
        "cdr: {} calls placed, {ended} ended before the kill ({ended_cut} of them cut: \
         ended within {GRACE} s of it), {up_cut} up and cut, {unchecked} answered, \
         hung up or set up within {GRACE} s of the kill; {} CDRs, {cut_total} cut by the \
         crash; cut legs naming the other leg: {cut_a_naming_b} inbound, {cut_b_naming_a} \
         outbound; sip_call_id in CDRs: {sip_call_id_present}",
        calls.len(),
        cdrs.len(),
    );
    assert!(ended >= ENDED_BEFORE_KILL, "{ended} ended calls");
    assert!(
        up_cut > 0,
        "no call was up at the kill: the test proves nothing\n{}",
        report()
    );

    // The JSON-lines copy: records of the journal, the crash CDRs included.
    let jsonl = sw._dir.path().join("var/cdr.jsonl");
    check_jsonl(&jsonl, &cdrs);
    let first_cut = cdrs.iter().position(cut).unwrap() as u64 + 1;
    let text_jsonl = std::fs::read_to_string(&jsonl).unwrap();
    let jsonl_seqs: BTreeSet<u64> = text_jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for seq in first_cut..=cdrs.len() as u64 {
        assert!(
            jsonl_seqs.contains(&seq),
            "cdr.jsonl lacks crash CDR seq {seq}"
        );
    }
    // It is written after each commit, without fsync: the kill may take
    // the lines of the last commit(s) before it, never an earlier one.
    let missing: Vec<u64> = (1..first_cut).filter(|q| !jsonl_seqs.contains(q)).collect();
    if let Some(&lo) = missing.first() {
        assert_eq!(
            missing,
            (lo..first_cut).collect::<Vec<u64>>(),
            "cdr.jsonl lacks records other than the last ones before the kill"
        );
    }
    eprintln!(
        "cdr: cdr.jsonl has {} of {} records (lacks seq {missing:?}, committed just before the kill)",
        jsonl_seqs.len(),
        cdrs.len()
    );

    // Another kill -9 and start, no call in between: nothing changes.
    let dir = sw.kill9();
    let mut sw = Running::start_in(dir, BASE, RTP_BASE, "");
    sw.wait_for("event socket listening");
    let again = cdr_list(&sw);
    assert_eq!(
        again.len(),
        cdrs.len(),
        "the record count changed on restart"
    );
    assert_eq!(again, cdrs, "the records changed on restart");
    assert_eq!(
        std::fs::read_to_string(sw._dir.path().join("var/cdr.jsonl")).unwrap(),
        text_jsonl,
        "cdr.jsonl changed on restart"
    );
    let stats = cdr_stats(&sw);
    assert_eq!(
        stats.get("cdrs"),
        Some(&(cdrs.len() as u64)),
        "cdr stats: {stats:?}"
    );
    assert_eq!(stats.get("open_channels"), Some(&0), "cdr stats: {stats:?}");
}
