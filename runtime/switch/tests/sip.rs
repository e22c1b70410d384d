//! SIP end to end: the built switch against SIPp, a peer nobody here wrote.
//!
//! Each test starts `dialtone run` on a copy of the default configuration
//! with its own SIP ports, RTP range and state directory, then drives it
//! with SIPp scenarios from `tests/sip/sipp/`. SIPp must be installed
//! (`scripts/install-peers.sh`, which the test command runs); a missing
//! SIPp fails the tests loudly.

mod common;

use common::*;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scenario(name: &str) -> PathBuf {
    repo().join("tests/sip/sipp").join(name)
}

fn sipp_bin() -> &'static str {
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
    "sipp"
}

/// Runs one SIPp instance to completion (at most 40 s); returns its exit
/// code and output.
fn sipp(args: &[&str]) -> (i32, String) {
    sipp_with(args, &["-m", "1", "-timeout_error"])
}

/// Runs SIPp with `extra` instead of the one-call defaults.
fn sipp_with(args: &[&str], extra: &[&str]) -> (i32, String) {
    sipp_in(None, args, extra)
}

/// Runs SIPp (at most 40 s) in `dir` when given.
fn sipp_in(dir: Option<&Path>, args: &[&str], extra: &[&str]) -> (i32, String) {
    let mut cmd = Command::new("timeout");
    cmd.arg("40")
        .arg(sipp_bin())
        .args(args)
        .arg("-nostdin")
        .args(extra);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Starts SIPp in the background for a bounded time, any number of calls
/// (exit 0 at `-timeout` when no call failed).
fn sipp_bg_open(args: Vec<String>) -> std::thread::JoinHandle<(i32, String)> {
    std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        sipp_with(&a, &[])
    })
}

/// Starts SIPp in the background.
fn sipp_bg(args: Vec<String>) -> std::thread::JoinHandle<(i32, String)> {
    std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        sipp(&a)
    })
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Registers `user` (password 1234) from 127.0.0.1:`port`, so calls to it
/// reach whatever SIPp listens there next.
fn register(sw: &Running, user: &str, port: u16, transport: &str) {
    let (rc, out) = sipp(&[
        "-sf",
        &s(&scenario("uac_register.xml")),
        &format!("127.0.0.1:{}", sw.internal),
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        transport,
        "-s",
        user,
        "-key",
        "domain",
        "dialtone.local",
        "-key",
        "expires",
        "3600",
        "-au",
        user,
        "-ap",
        "1234",
        "-recv_timeout",
        "10000",
        "-timeout",
        "20s",
    ]);
    assert_eq!(rc, 0, "REGISTER with digest failed:\n{out}");
}

fn callee(
    scn: &str,
    port: u16,
    transport: &str,
    extra: &[&str],
) -> std::thread::JoinHandle<(i32, String)> {
    let mut a = vec![
        "-sf".to_string(),
        s(&scenario(scn)),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        transport.into(),
        "-recv_timeout".into(),
        "20000".into(),
        "-timeout".into(),
        "30s".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    let h = sipp_bg(a);
    std::thread::sleep(Duration::from_millis(500));
    h
}

fn call(
    sw_port: u16,
    port: u16,
    transport: &str,
    scn: &str,
    dest: &str,
    extra: &[&str],
) -> (i32, String) {
    let a = call_args(sw_port, port, transport, scn, dest, extra);
    let r: Vec<&str> = a.iter().map(String::as_str).collect();
    sipp(&r)
}

/// The SIPp arguments of [`call`].
fn call_args(
    sw_port: u16,
    port: u16,
    transport: &str,
    scn: &str,
    dest: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-sf".into(),
        s(&scenario(scn)),
        format!("127.0.0.1:{sw_port}"),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        transport.into(),
        "-s".into(),
        dest.into(),
        "-key".into(),
        "caller".into(),
        "2000".into(),
        "-recv_timeout".into(),
        "15000".into(),
        "-timeout".into(),
        "30s".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A call from 1000 (digest-authenticated, password 1234) to `dest`
/// through the internal profile, with `extra` SIPp arguments.
fn auth_call(sw: &Running, port: u16, dest: &str, extra: &[&str]) -> (i32, String) {
    // SIPp's digest uri is host-only by default; RFC 3261 has it equal the
    // Request-URI, which the switch checks.
    let auth_uri = format!("{dest}@127.0.0.1:{}", sw.internal);
    let mut a = vec![
        "-key",
        "domain",
        "dialtone.local",
        "-au",
        "1000",
        "-ap",
        "1234",
        "-key",
        "caller",
        "1000",
        "-auth_uri",
        &auth_uri,
    ];
    a.extend_from_slice(extra);
    call(sw.internal, port, "u1", "uac_auth_call.xml", dest, &a)
}

#[test]
fn register_then_call_through_the_dialplan_over_udp_and_tcp() {
    let sw = Running::start(5200, 20000);
    register(&sw, "1001", 5302, "u1");
    // UDP caller on the external profile (public context reaches local
    // users), callee registered.
    let uas = callee("uas_answer.xml", 5302, "u1", &[]);
    let (rc, out) = call(
        sw.external,
        5301,
        "u1",
        "uac_call.xml",
        "1001",
        &["-d", "1000"],
    );
    assert_eq!(rc, 0, "UDP call failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "callee side failed:\n{uout}");
    // The same with the caller on TCP.
    let uas = callee("uas_answer.xml", 5302, "u1", &[]);
    let (rc, out) = call(
        sw.external,
        5303,
        "t1",
        "uac_call.xml",
        "1001",
        &["-d", "1000"],
    );
    assert_eq!(rc, 0, "TCP call failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "callee side failed:\n{uout}");
    sw.assert_no_leaks();
}

#[test]
fn cancel_before_answer_and_busy_callee() {
    let sw = Running::start(5210, 20200);
    register(&sw, "1002", 5312, "u1");
    // CANCEL: the caller gets 487, the ringing callee gets the CANCEL.
    let uas = callee("uas_ring_forever.xml", 5312, "u1", &[]);
    let (rc, out) = call(
        sw.external,
        5311,
        "u1",
        "uac_cancel.xml",
        "1002",
        &["-d", "1000"],
    );
    assert_eq!(rc, 0, "CANCEL scenario failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "ringing callee did not see the CANCEL:\n{uout}");
    // 486 from the callee: USER_BUSY, and 486 to the caller.
    let uas = callee("uas_busy.xml", 5312, "u1", &[]);
    let (rc, out) = call(
        sw.external,
        5313,
        "u1",
        "uac_busy_expect_486.xml",
        "1002",
        &[],
    );
    assert_eq!(rc, 0, "busy not relayed as 486:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "busy callee side failed:\n{uout}");
    sw.assert_no_leaks();
}

#[test]
fn internal_profile_demands_digest_and_refuses_unknown_callers_alike() {
    let sw = Running::start(5220, 20400);
    // No credentials: 407.
    let (rc, out) = call(
        sw.internal,
        5321,
        "u1",
        "uac_expect_final.xml",
        "1001",
        &["-key", "expect", "407"],
    );
    assert_eq!(rc, 0, "unauthenticated INVITE not challenged:\n{out}");
    // With credentials the call is routed to the registered callee.
    register(&sw, "1003", 5324, "u1");
    let uas = callee("uas_answer.xml", 5324, "u1", &[]);
    let (rc, out) = auth_call(&sw, 5322, "1003", &[]);
    assert_eq!(rc, 0, "authenticated call failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "callee side failed:\n{uout}");
    // A wrong password and an unknown user get the same answer.
    for (user, pass) in [("1000", "wrong"), ("no-such-user", "1234")] {
        let (rc, out) = sipp(&[
            "-sf",
            &s(&scenario("uac_register.xml")),
            &format!("127.0.0.1:{}", sw.internal),
            "-i",
            "127.0.0.1",
            "-p",
            "5323",
            "-s",
            user,
            "-key",
            "domain",
            "dialtone.local",
            "-key",
            "expires",
            "3600",
            "-au",
            user,
            "-ap",
            pass,
            "-recv_timeout",
            "5000",
            "-timeout",
            "15s",
        ]);
        assert_ne!(rc, 0, "REGISTER as {user}/{pass} must not succeed:\n{out}");
    }
}

#[test]
fn malformed_messages_get_400_or_are_dropped_and_the_switch_keeps_serving() {
    let sw = Running::start(5230, 20600);
    let sock = UdpSocket::bind("127.0.0.1:5331").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let target = format!("127.0.0.1:{}", sw.external);
    let garbage: &[&[u8]] = &[
        b"\x00\x01\x02garbage",
        b"INVITE\r\n\r\n",
        b"NOTSIP / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"INVITE sip:x@[::1 SIP/2.0\r\n\r\n",
        &[b'A'; 3000],
    ];
    for g in garbage {
        sock.send_to(g, &target).unwrap();
    }
    // A request with readable headers but a lying Content-Length: 400.
    let bad = "MESSAGE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5331;branch=z9hG4bKbad1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: bad1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 500\r\n\r\nshort";
    sock.send_to(bad.as_bytes(), &target).unwrap();
    // Missing Call-ID: 400 naming it.
    let bad2 = "OPTIONS sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5331;branch=z9hG4bKbad2\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:1000@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    sock.send_to(bad2.as_bytes(), &target).unwrap();
    // An unknown method: 501. Compact headers and IPv6-free torture bits.
    let ext = "FOO sip:1000@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5331;branch=z9hG4bKfoo\r\nf: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:1000@127.0.0.1>\r\ni: foo1\r\nCSeq: 1 FOO\r\nl: 0\r\n\r\n";
    sock.send_to(ext.as_bytes(), &target).unwrap();
    let mut codes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if let Some(code) = text.strip_prefix("SIP/2.0 ").and_then(|t| t.get(..3)) {
            codes.push(code.to_string());
        }
        if codes.len() >= 3 {
            break;
        }
    }
    codes.sort();
    assert_eq!(
        codes,
        vec!["400", "400", "501"],
        "answers to the bad requests"
    );
    // Still serving: an OPTIONS from SIPp is answered.
    let (rc, out) = sipp(&[
        "-sf",
        &s(&scenario("uac_options.xml")),
        &format!("127.0.0.1:{}", sw.external),
        "-i",
        "127.0.0.1",
        "-p",
        "5332",
        "-s",
        "1000",
        "-recv_timeout",
        "5000",
        "-timeout",
        "15s",
    ]);
    assert_eq!(rc, 0, "OPTIONS after garbage not answered:\n{out}");
}

/// Reads datagrams until `pred` matches one (at most 5 s).
fn recv_until(sock: &UdpSocket, pred: impl Fn(&str) -> bool) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if pred(&text) {
                return Some(text);
            }
        }
    }
    None
}

#[test]
fn messages_are_routed_by_the_dialplan() {
    let sw = Running::start(5240, 20800);
    register(&sw, "1004", 5342, "u1");
    let phone = UdpSocket::bind("127.0.0.1:5342").unwrap();
    let sender = UdpSocket::bind("127.0.0.1:5341").unwrap();
    let target = format!("127.0.0.1:{}", sw.external);
    let msg = |to: &str, id: &str, body: &str| {
        format!(
            "MESSAGE sip:{to}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5341;branch=z9hG4bK{id}\r\nFrom: <sip:2000@127.0.0.1:5341>;tag={id}\r\nTo: <sip:{to}@dialtone.local>\r\nCall-ID: {id}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            port = sw.external
        )
    };
    // To a registered user: forwarded (the default dialplan's
    // route-message says user/1004@dialtone.local), 202 to the sender.
    sender
        .send_to(msg("1004", "m1", "hello 1004").as_bytes(), &target)
        .unwrap();
    let answer = recv_until(&sender, |t| t.starts_with("SIP/2.0 ")).expect("an answer");
    assert!(answer.starts_with("SIP/2.0 202"), "{answer}");
    let delivered =
        recv_until(&phone, |t| t.starts_with("MESSAGE ")).expect("delivered to the phone");
    assert!(delivered.ends_with("hello 1004"), "{delivered}");
    // To nobody: the dialplan replies to the sender.
    sender
        .send_to(msg("4711", "m2", "anyone?").as_bytes(), &target)
        .unwrap();
    let reply = recv_until(&sender, |t| t.starts_with("MESSAGE ")).expect("a reply MESSAGE");
    assert!(reply.ends_with("no such user: 4711"), "{reply}");
}

#[test]
fn hold_and_unhold_by_reinvite() {
    let sw = Running::start(5250, 21000);
    register(&sw, "1005", 5352, "u1");
    let uas = callee("uas_answer.xml", 5352, "u1", &[]);
    let (rc, out) = call(
        sw.external,
        5351,
        "u1",
        "uac_hold.xml",
        "1005",
        &["-d", "500"],
    );
    assert_eq!(rc, 0, "hold/unhold failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "callee side failed:\n{uout}");
    sw.assert_no_leaks();
}

#[test]
fn a_phone_behind_nat_is_reached_at_its_source_address() {
    let sw = Running::start(5260, 21200);
    // Its Contact says 10.9.9.9:5060; it is really at 127.0.0.1:5362.
    let (rc, out) = sipp(&[
        "-sf",
        &s(&scenario("uac_register_nat.xml")),
        &format!("127.0.0.1:{}", sw.internal),
        "-i",
        "127.0.0.1",
        "-p",
        "5362",
        "-s",
        "1006",
        "-key",
        "domain",
        "dialtone.local",
        "-key",
        "expires",
        "3600",
        "-au",
        "1006",
        "-ap",
        "1234",
        "-recv_timeout",
        "10000",
        "-timeout",
        "20s",
    ]);
    assert_eq!(rc, 0, "NAT REGISTER failed:\n{out}");
    let uas = callee("uas_answer.xml", 5362, "u1", &[]);
    let (rc, out) = call(
        sw.external,
        5361,
        "u1",
        "uac_call.xml",
        "1006",
        &["-d", "500"],
    );
    assert_eq!(rc, 0, "call to the NATed phone failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "the NATed phone did not get the call:\n{uout}");
}

#[test]
fn registrations_survive_kill_9() {
    let sw = Running::start(5270, 21400);
    register(&sw, "1007", 5372, "u1");
    let dir = sw.kill9();
    let sw = Running::start_in(dir, 5270, 21400, "");
    // No new REGISTER: the call still reaches the contact.
    let uas = callee("uas_answer.xml", 5372, "u1", &[]);
    let (rc, out) = call(
        sw.external,
        5371,
        "u1",
        "uac_call.xml",
        "1007",
        &["-d", "500"],
    );
    assert_eq!(rc, 0, "call after restart failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "the contact was not reached after restart:\n{uout}");
}

#[test]
fn failover_from_a_503_leg_to_a_working_leg() {
    // User 1019's dial-string: a leg that answers 503, then (`|`) one that
    // answers. The default dialplan bridges user/1019.
    let extra = "[users.1019]\npassword = \"1234\"\nparams = { \"dial-string\" = \"sofia/external/1019@127.0.0.1:5383|sofia/external/1019@127.0.0.1:5384\" }\n";
    let sw = Running::start_in(tempfile::tempdir().unwrap(), 5280, 21600, extra);
    let bad = callee("uas_503.xml", 5383, "u1", &[]);
    let good = callee("uas_answer.xml", 5384, "u1", &[]);
    let (rc, out) = auth_call(&sw, 5381, "1019", &["-d", "500"]);
    assert_eq!(rc, 0, "failover call failed:\n{out}");
    let (brc, bout) = bad.join().unwrap();
    assert_eq!(brc, 0, "the 503 leg was not tried first:\n{bout}");
    let (grc, gout) = good.join().unwrap();
    assert_eq!(grc, 0, "the working leg was not reached:\n{gout}");
    sw.assert_no_leaks();
}

#[test]
fn sipsak_options_and_svwar_find_no_extension() {
    let sw = Running::start(5290, 21800);
    let out = Command::new("timeout")
        .args(["20", "sipsak", "-s"])
        .arg(format!("sip:ping@127.0.0.1:{}", sw.external))
        .args(["-H", "127.0.0.1", "-l", "5391", "-vv"])
        .output()
        .expect("sipsak is not installed: run scripts/install-peers.sh");
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipsak OPTIONS: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // svwar: answers, not timeouts, and no extension found.
    let svwar = repo().join("build/venv-sipvicious/bin/sipvicious_svwar");
    assert!(
        svwar.exists(),
        "sipvicious missing: run scripts/install-peers.sh"
    );
    let out = Command::new("timeout")
        .arg("60")
        .arg(&svwar)
        .args([
            "-e1000-1019",
            "-m",
            "REGISTER",
            "-b",
            "127.0.0.1",
            "-P",
            "5392",
            "-x",
            "127.0.0.1",
            "--maximumtime",
            "10",
        ])
        .arg(format!("udp://127.0.0.1:{}", sw.internal))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "svwar found something or failed:\n{text}"
    );
    assert!(!text.contains("| 10"), "svwar listed an extension:\n{text}");
    // A correct REGISTER from another source works right after.
    register(&sw, "1008", 5393, "u1");
}

#[test]
fn gateways_register_ping_and_fail_over() {
    // The carrier (SIPp) demands digest on REGISTER (verified) and INVITE.
    let carrier_log = tempfile::NamedTempFile::new().unwrap();
    let carrier = sipp_bg_open(vec![
        "-sf".into(),
        s(&scenario("uas_register_auth_carrier.xml")),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        "5410".into(),
        "-key".into(),
        "auth_user".into(),
        "gw".into(),
        "-key".into(),
        "auth_pass".into(),
        "s3cret".into(),
        "-recv_timeout".into(),
        "20000".into(),
        "-timeout".into(),
        "25s".into(),
        "-trace_logs".into(),
        "-log_file".into(),
        carrier_log.path().display().to_string(),
    ]);
    let gateways = "[sip.gateways.carrier]\nprofile = \"external\"\nproxy = \"127.0.0.1:5410\"\nusername = \"gw\"\npassword = \"s3cret\"\nrealm = \"carrier\"\nregister = true\nexpires_s = 3600\n\n[sip.gateways.backup]\nprofile = \"external\"\nproxy = \"127.0.0.1:5411\"\nping_s = 1\nping_failures = 2\n";
    let user = "[users.1019]\npassword = \"1234\"\nparams = { \"dial-string\" = \"sofia/gateway/backup/15551234567|sofia/gateway/carrier/15551234567\" }\n";
    let mut sw = Running::start_with(tempfile::tempdir().unwrap(), 5400, 22000, user, gateways);
    sw.wait_for("gateway registered");
    // Nothing answers the backup's pings: DOWN.
    sw.wait_for("gateway DOWN");
    // A call to 1019: the backup is DOWN (GATEWAY_DOWN at once), `|` moves
    // on to the carrier, which challenges the INVITE; the switch answers it.
    let (rc, out) = auth_call(&sw, 5405, "1019", &["-d", "500"]);
    assert_eq!(
        rc,
        0,
        "call through the carrier failed:\n{out}\nswitch:\n{}\ncarrier:\n{}",
        sw.log_tail(),
        std::fs::read_to_string(carrier_log.path()).unwrap_or_default()
    );
    // The backup comes back: UP again.
    let backup = sipp_bg_open(vec![
        "-sf".into(),
        s(&scenario("uas_options.xml")),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        "5411".into(),
        "-timeout".into(),
        "6s".into(),
    ]);
    sw.wait_for("gateway UP");
    let _ = backup.join();
    let (crc, cout) = carrier.join().unwrap();
    let log = std::fs::read_to_string(carrier_log.path()).unwrap_or_default();
    assert!(
        log.contains("REGISTER username=\"gw\" auth=ok"),
        "carrier log:\n{log}\n{cout}"
    );
    assert!(
        log.contains("auth=ok") && log.contains("INVITE"),
        "carrier log:\n{log}"
    );
    assert_eq!(crc, 0, "the carrier saw a failed exchange:\n{cout}");
    sw.assert_no_leaks_but(true);
}

#[test]
fn repeated_auth_failures_from_one_source_are_refused_without_locking_out_others() {
    let sw = Running::start(5420, 22200);
    let sock = UdpSocket::bind("127.0.0.1:5421")
        .unwrap_or_else(|_| UdpSocket::bind("127.0.0.1:5425").unwrap());
    let me = sock.local_addr().unwrap();
    let target = format!("127.0.0.1:{}", sw.internal);
    let register = |n: u32, auth: Option<&str>| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:dialtone.local SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKrl{n}\r\nFrom: <sip:1000@dialtone.local>;tag=rl\r\nTo: <sip:1000@dialtone.local>\r\nCall-ID: ratelimit\r\nCSeq: {n} REGISTER\r\nContact: <sip:1000@{me}>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    sock.send_to(register(1, None).as_bytes(), &target).unwrap();
    let challenge = recv_until(&sock, |t| t.starts_with("SIP/2.0 ")).expect("a challenge");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce")
        .to_string();
    // Wrong answers, one after the other: challenged again until the
    // per-source limit (20 a minute), then refused outright.
    let mut codes = Vec::new();
    for n in 2..26u32 {
        let bad = format!("Digest username=\"1000\", realm=\"dialtone.local\", nonce=\"{nonce}\", uri=\"sip:dialtone.local\", response=\"00000000000000000000000000000000\", algorithm=MD5");
        sock.send_to(register(n, Some(&bad)).as_bytes(), &target)
            .unwrap();
        let r = recv_until(&sock, |t| t.starts_with("SIP/2.0 ")).expect("an answer, not a timeout");
        codes.push(r[8..11].to_string());
    }
    assert!(codes[..20].iter().all(|c| c == "401"), "{codes:?}");
    assert!(codes[20..].iter().all(|c| c == "403"), "{codes:?}");
    // Another source registers at once.
    let (rc, out) = sipp(&[
        "-sf",
        &s(&scenario("uac_register.xml")),
        &target,
        "-i",
        "127.0.0.2",
        "-p",
        "5426",
        "-s",
        "1000",
        "-key",
        "domain",
        "dialtone.local",
        "-key",
        "expires",
        "3600",
        "-au",
        "1000",
        "-ap",
        "1234",
        "-recv_timeout",
        "10000",
        "-timeout",
        "20s",
    ]);
    assert_eq!(rc, 0, "a good REGISTER from another source failed:\n{out}");
}

/// User 1019's directory entry with `dial_string` (the default dialplan
/// bridges `user/1019`).
fn user_1019(dial_string: &str) -> String {
    format!(
        "[users.1019]\npassword = \"1234\"\nparams = {{ \"dial-string\" = \"{dial_string}\" }}\n"
    )
}

/// A SIPp `-trace_logs` file's text, for what a scenario logged.
fn log_file() -> (tempfile::NamedTempFile, String) {
    let f = tempfile::NamedTempFile::new().unwrap();
    let p = s(f.path());
    (f, p)
}

#[test]
fn info_is_relayed_in_dialog_and_old_cseq_options_and_target_refresh_are_honoured() {
    // Caller 5442 -> switch (external 5441) -> callee 1010 registered at
    // 5443, which expects the caller's INFO (body and Content-Type checked
    // by the scenario), then hangs up: the switch's BYE must reach the
    // target the caller's re-INVITE refreshed.
    let sw = Running::start(5440, 23000);
    register(&sw, "1010", 5443, "u1");
    let (uas_log, uas_log_path) = log_file();
    let uas = callee(
        "uas_info_bye.xml",
        5443,
        "u1",
        &["-d", "1500", "-trace_logs", "-log_file", &uas_log_path],
    );
    let (uac_log, uac_log_path) = log_file();
    let (rc, out) = call(
        sw.external,
        5442,
        "u1",
        "uac_info.xml",
        "1010",
        &["-trace_logs", "-log_file", &uac_log_path],
    );
    let uac_text = std::fs::read_to_string(uac_log.path()).unwrap_or_default();
    let (urc, uout) = uas.join().unwrap();
    let uas_text = std::fs::read_to_string(uas_log.path()).unwrap_or_default();
    assert_eq!(
        rc,
        0,
        "caller side failed:\n{out}\n{uac_text}\n{}",
        sw.log_tail()
    );
    assert_eq!(urc, 0, "callee side failed:\n{uout}\n{uas_text}");
    assert!(uac_text.contains("info: SIP/2.0 200"), "{uac_text}");
    assert!(uac_text.contains("old cseq: 500"), "{uac_text}");
    assert!(uac_text.contains("bye: BYE sip:refreshed@"), "{uac_text}");
    assert!(
        uas_text.contains("info: Signal=5 Duration=160 application/dtmf-relay"),
        "{uas_text}"
    );
    // The digit also reached the caller's channel as a DTMF event (logged
    // with it); the INFO refused for its old CSeq (Signal=6) did not.
    let log = std::fs::read_to_string(&sw.log_path).unwrap_or_default();
    let dtmf: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("DTMF received"))
        .collect();
    assert_eq!(dtmf.len(), 1, "DTMF log lines: {dtmf:?}\n{}", sw.log_tail());
    assert!(
        dtmf[0].contains("digit=5")
            && dtmf[0].contains("duration_ms=160")
            && dtmf[0].contains("ENDPOINT"),
        "{}",
        dtmf[0]
    );
    sw.assert_no_leaks();
}

/// A callee SIPp run in a folder where `pcap/g711a.pcap` exists (the
/// sip-tester package's audio), for scenarios that play it.
fn callee_with_pcap(
    dir: &Path,
    scn: &str,
    port: u16,
    extra: &[&str],
) -> std::thread::JoinHandle<(i32, String)> {
    let link = dir.join("pcap");
    if !link.exists() {
        std::os::unix::fs::symlink("/usr/share/sip-tester", &link).unwrap();
    }
    assert!(
        link.join("g711a.pcap").exists(),
        "no /usr/share/sip-tester/g711a.pcap: run scripts/install-peers.sh"
    );
    let mut args = vec![
        "-sf".to_string(),
        s(&scenario(scn)),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-mp".into(),
        (port + 3).to_string(),
        "-recv_timeout".into(),
        "20000".into(),
        "-timeout".into(),
        "30s".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let dir = dir.to_path_buf();
    let h = std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        sipp_in(Some(&dir), &a, &["-m", "1", "-timeout_error"])
    });
    std::thread::sleep(Duration::from_millis(500));
    h
}

/// Counts the RTP packets that reach `sock` until `stop` is set.
fn count_rtp(
    sock: UdpSocket,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut n = 0;
        let mut buf = [0u8; 2048];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(len) = sock.recv(&mut buf) {
                // RTP version 2.
                if len >= 12 && buf[0] >> 6 == 2 {
                    n += 1;
                }
            }
        }
        n
    })
}

#[test]
fn early_media_reaches_the_caller_with_the_switch_sdp() {
    // The callee (1019, registered at 5463) answers 183 with SDP and plays
    // an announcement; the caller (5462, its RTP on 5465, where this test
    // listens) must get a 183 whose SDP points at the switch, and the
    // audio, before any answer: the first call ends in 486 after three
    // seconds of early media, the second is answered.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let sw = Running::start_in(
        tempfile::tempdir().unwrap(),
        5460,
        23200,
        &user_1019("sofia/internal/1019"),
    );
    register(&sw, "1019", 5463, "u1");
    let pcap_dir = tempfile::tempdir().unwrap();
    for (uas_scn, final_code) in [
        ("uas_early_media_busy.xml", 486),
        ("uas_early_media.xml", 200),
    ] {
        let rtp = UdpSocket::bind("127.0.0.1:5465").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counter = count_rtp(rtp, stop.clone());
        let uas = callee_with_pcap(pcap_dir.path(), uas_scn, 5463, &["-d", "3000"]);
        let (log, log_path) = log_file();
        let (rc, out) = call(
            sw.external,
            5462,
            "u1",
            "uac_early_media.xml",
            "1019",
            &[
                "-key",
                "rtp_port",
                "5465",
                "-d",
                "500",
                "-trace_logs",
                "-log_file",
                &log_path,
            ],
        );
        stop.store(true, Ordering::Relaxed);
        let packets = counter.join().unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let (urc, uout) = uas.join().unwrap();
        assert_eq!(
            rc,
            0,
            "caller side failed:\n{out}\n{text}\n{}",
            sw.log_tail()
        );
        assert_eq!(urc, 0, "callee side failed:\n{uout}");
        assert!(text.contains(&format!("final: {final_code}")), "{text}");
        // The 183's SDP is the switch's: a port of its RTP range, not the
        // callee's 5466.
        sw.assert_early_sdp_is_ours(&text);
        assert!(text.contains("c=IN IP4 127.0.0.1"), "{text}");
        // About 100 packets of 30 ms in the three seconds before the 486.
        assert!(
            packets >= 30,
            "{packets} RTP packets reached the caller during early media ({uas_scn})"
        );
    }
    sw.assert_no_leaks();
}

#[test]
fn ignore_early_media_keeps_the_callee_early_media_from_the_caller() {
    // `ignore_early_media=true`: the caller gets no 183 and no ringing,
    // only the answer; `ignore_early_media=ring_ready`: ringing (180)
    // instead of the 183 (FreeSWITCH's originate options).
    for (mode, ringing) in [("true", false), ("ring_ready", true)] {
        let sw = Running::start_in(
            tempfile::tempdir().unwrap(),
            5480,
            23400,
            &user_1019(&format!("{{ignore_early_media={mode}}}sofia/internal/1019")),
        );
        register(&sw, "1019", 5483, "u1");
        let pcap_dir = tempfile::tempdir().unwrap();
        let uas = callee_with_pcap(
            pcap_dir.path(),
            "uas_early_media.xml",
            5483,
            &["-d", "1500"],
        );
        let (log, log_path) = log_file();
        let (rc, out) = call(
            sw.external,
            5482,
            "u1",
            "uac_expect_no_early_media.xml",
            "1019",
            &[
                "-key",
                "rtp_port",
                "5485",
                "-d",
                "300",
                "-trace_logs",
                "-log_file",
                &log_path,
            ],
        );
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let (urc, uout) = uas.join().unwrap();
        assert_eq!(
            rc,
            0,
            "ignore_early_media={mode}: the caller got early media or no answer:\n{out}\n{}",
            sw.log_tail()
        );
        assert_eq!(urc, 0, "callee side failed:\n{uout}");
        assert!(text.contains("final: 200"), "{text}");
        assert_eq!(
            text.contains("ringing"),
            ringing,
            "ignore_early_media={mode}: ringing expected {ringing}:\n{text}"
        );
        sw.assert_no_leaks();
    }
}

/// Kamailio as a record-routing proxy (tests/sip/kamailio/record-route.cfg),
/// ended by its PID when dropped.
struct Kamailio {
    child: std::process::Child,
    _run: tempfile::TempDir,
    log: PathBuf,
}

impl Kamailio {
    fn start(listen: u16, switch_uri: &str, registrar_uri: &str) -> Kamailio {
        let run = tempfile::tempdir().unwrap();
        let log = run.path().join("kamailio.log");
        let bin = if Path::new("/usr/sbin/kamailio").exists() {
            "/usr/sbin/kamailio"
        } else {
            "kamailio"
        };
        let child = Command::new(bin)
            .arg("-f")
            .arg(repo().join("tests/sip/kamailio/record-route.cfg"))
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(run.path())
            .arg("-l")
            .arg(format!("udp:127.0.0.1:{listen}"))
            .arg("-A")
            .arg(format!("SWITCH_URI=\"{switch_uri}\""))
            .arg("-A")
            .arg(format!("REGISTRAR_URI=\"{registrar_uri}\""))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio is not installed: run scripts/install-peers.sh");
        let k = Kamailio {
            child,
            _run: run,
            log,
        };
        // Up once its UDP socket is bound.
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ss").args(["-Huanl"]).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(&format!("127.0.0.1:{listen} ")) {
                break;
            }
            assert!(Instant::now() < end, "kamailio did not start:\n{}", k.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        k
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        signal_and_reap(&mut self.child, "-TERM");
    }
}

#[test]
fn in_dialog_requests_follow_the_route_set_through_kamailio() {
    // caller 5476 -> Kamailio 5475 -> switch (external 5471) -> Kamailio ->
    // callee 1011 at 5477, registered through Kamailio (so the switch
    // reaches it there). Kamailio record-routes both INVITEs and refuses
    // in-dialog requests without its Route (404). The caller's INFO is
    // relayed to the callee; the callee hangs up; the switch's BYE to the
    // caller goes through Kamailio, to the target the caller's re-INVITE
    // refreshed.
    let sw = Running::start(5470, 23600);
    let kam = Kamailio::start(
        5475,
        &format!("sip:127.0.0.1:{}", sw.external),
        &format!("sip:127.0.0.1:{}", sw.internal),
    );
    let (rc, out) = sipp(&[
        "-sf",
        &s(&scenario("uac_register.xml")),
        "127.0.0.1:5475",
        "-i",
        "127.0.0.1",
        "-p",
        "5477",
        "-s",
        "1011",
        "-key",
        "domain",
        "dialtone.local",
        "-key",
        "expires",
        "3600",
        "-au",
        "1011",
        "-ap",
        "1234",
        "-recv_timeout",
        "10000",
        "-timeout",
        "20s",
    ]);
    assert_eq!(
        rc,
        0,
        "REGISTER through Kamailio failed:\n{out}\n{}",
        kam.log()
    );
    let (uas_log, uas_log_path) = log_file();
    let uas = callee(
        "uas_info_bye.xml",
        5477,
        "u1",
        &["-d", "1500", "-trace_logs", "-log_file", &uas_log_path],
    );
    let (uac_log, uac_log_path) = log_file();
    let (rc, out) = call(
        5475,
        5476,
        "u1",
        "uac_info.xml",
        "1011",
        &["-trace_logs", "-log_file", &uac_log_path],
    );
    let uac_text = std::fs::read_to_string(uac_log.path()).unwrap_or_default();
    let (urc, uout) = uas.join().unwrap();
    let uas_text = std::fs::read_to_string(uas_log.path()).unwrap_or_default();
    assert_eq!(
        rc,
        0,
        "caller side failed:\n{out}\n{uac_text}\n{}\n{}",
        sw.log_tail(),
        kam.log()
    );
    assert_eq!(urc, 0, "callee side failed:\n{uout}\n{uas_text}");
    // The relayed INFO reached Kamailio with its Route, and came on.
    assert!(
        uas_text.contains("info: Signal=5 Duration=160 application/dtmf-relay"),
        "{uas_text}"
    );
    assert!(
        uas_text.contains("info route:") && uas_text.contains("sip:127.0.0.1:5475;lr"),
        "the relayed INFO did not carry Kamailio's Route:\n{uas_text}"
    );
    assert!(
        uas_text
            .lines()
            .any(|l| l.starts_with("info via:") && l.contains("SIP/2.0/UDP 127.0.0.1:5475;")),
        "the relayed INFO did not come through Kamailio:\n{uas_text}"
    );
    // The switch's BYE: through Kamailio (its Route seen there), to the
    // refreshed target.
    assert!(uac_text.contains("bye: BYE sip:refreshed@"), "{uac_text}");
    assert!(
        uac_text.contains("bye route:") && uac_text.contains("sip:127.0.0.1:5475;lr"),
        "the switch's BYE did not go through Kamailio:\n{uac_text}"
    );
    assert!(uac_text.contains("old cseq: 500"), "{uac_text}");
    drop(kam);
    sw.assert_no_leaks();
}

/// SIPp from `[::1]` with `args` (scenario, target, ports...).
fn sipp6(args: &[String]) -> (i32, String) {
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend(["-i", "::1", "-mi", "::1"]);
    sipp(&a)
}

#[test]
fn ipv6_profile_registers_and_calls_over_udp_and_tcp_with_ipv6_media() {
    // The conf's commented internal-ipv6 profile, switched on: [::1]:5704
    // (UDP, TCP) and [::1]:5705 (TLS); RTP on ::1.
    let sw = Running::start_edited(
        tempfile::tempdir().unwrap(),
        5700,
        24400,
        "",
        "",
        &[
            (
                "# [sip.profiles.internal-ipv6]\n# listen = \"[::1]:5060\"\n# tls_listen = \"[::1]:5061\"\n# context = \"default\"\n# auth_calls = true\n# accept_register = true",
                "[sip.profiles.internal-ipv6]\nlisten = \"[::1]:5704\"\ntls_listen = \"[::1]:5705\"\ncontext = \"default\"\nauth_calls = true\naccept_register = true",
            ),
            ("rtp_ip = \"127.0.0.1\"", "rtp_ip = \"::1\""),
        ],
    );
    let v6 = "[::1]:5704".to_string();
    let reg = |user: &str, port: u16, transport: &str| {
        let (rc, out) = sipp6(&[
            "-sf".into(),
            s(&scenario("uac_register.xml")),
            v6.clone(),
            "-p".into(),
            port.to_string(),
            "-t".into(),
            transport.into(),
            "-s".into(),
            user.into(),
            "-key".into(),
            "domain".into(),
            "dialtone.local".into(),
            "-key".into(),
            "expires".into(),
            "3600".into(),
            "-au".into(),
            user.into(),
            "-ap".into(),
            "1234".into(),
            // SIPp writes an IPv6 digest uri without brackets
            // (`sip:::1:5704`), which is no URI; give it the right one.
            "-auth_uri".into(),
            "[::1]:5704".into(),
            "-recv_timeout".into(),
            "10000".into(),
            "-timeout".into(),
            "20s".into(),
        ]);
        assert_eq!(rc, 0, "REGISTER over [::1] {transport} failed:\n{out}");
        out
    };
    // Over TCP: the 200 comes back on the phone's connection.
    reg("1004", 5709, "t1");
    // The callee registers over UDP; calls to 1003 reach it at [::1]:5706.
    reg("1003", 5706, "u1");
    let work = tempfile::tempdir().unwrap();
    for (round, (port, transport, mp)) in [(5707u16, "u1", 24700u16), (5708, "t1", 24710)]
        .into_iter()
        .enumerate()
    {
        let trace = work.path().join(format!("callee{round}.msg"));
        let uas = callee(
            "uas_answer.xml",
            5706,
            "u1",
            &[
                "-i",
                "::1",
                "-mi",
                "::1",
                "-mp",
                &(mp + 100).to_string(),
                "-trace_msg",
                "-message_file",
                &s(&trace),
            ],
        );
        let (rc, out) = sipp6(&[
            "-sf".into(),
            s(&scenario("uac_auth_call.xml")),
            v6.clone(),
            "-p".into(),
            port.to_string(),
            "-t".into(),
            transport.into(),
            "-mp".into(),
            mp.to_string(),
            "-s".into(),
            "1003".into(),
            "-key".into(),
            "caller".into(),
            "1000".into(),
            "-key".into(),
            "domain".into(),
            "dialtone.local".into(),
            "-au".into(),
            "1000".into(),
            "-ap".into(),
            "1234".into(),
            "-auth_uri".into(),
            "1003@[::1]:5704".into(),
            "-d".into(),
            "500".into(),
            "-recv_timeout".into(),
            "15000".into(),
            "-timeout".into(),
            "30s".into(),
        ]);
        assert_eq!(
            rc,
            0,
            "call over [::1] {transport} failed:\n{out}\nswitch:\n{}",
            sw.log_tail()
        );
        let (urc, uout) = uas.join().unwrap();
        assert_eq!(urc, 0, "IPv6 callee side failed:\n{uout}");
        // What the callee got: Via, Contact and SDP in IPv6 form.
        let msgs = std::fs::read_to_string(&trace).unwrap_or_default();
        let invite = msgs
            .split("INVITE sip:")
            .nth(1)
            .unwrap_or_else(|| panic!("no INVITE in the callee's trace:\n{msgs}"));
        for want in [
            "Via: SIP/2.0/UDP [::1]:5704;",
            "<sip:dialtone@[::1]:5704>",
            "c=IN IP6 ::1",
        ] {
            assert!(
                invite.contains(want),
                "round {round}: no `{want}` in the INVITE the callee got:\n{invite}"
            );
        }
    }
    sw.assert_no_leaks();
}

/// RFC 3261 13.3.1.4: the switch retransmits its 2xx to an INVITE over UDP
/// (T1, then doubling) until the ACK comes, and not after it. The caller
/// is a bare UDP socket that withholds its ACK; the callee is SIPp.
#[test]
fn a_2xx_is_retransmitted_until_the_ack_and_not_after() {
    let sw = Running::start(6400, 29800);
    register(&sw, "1001", 6406, "u1");
    let uas = callee("uas_answer.xml", 6406, "u1", &[]);
    let caller = UdpSocket::bind("127.0.0.1:6405").unwrap();
    let target = format!("127.0.0.1:{}", sw.external);
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6407 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sip:1001@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6405;branch=z9hG4bKretx1\r\nFrom: <sip:2000@127.0.0.1:6405>;tag=retx\r\nTo: <sip:1001@127.0.0.1:{port}>\r\nCall-ID: retx-2xx\r\nCSeq: 1 INVITE\r\nContact: <sip:2000@127.0.0.1:6405>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        port = sw.external
    );
    caller.send_to(invite.as_bytes(), &target).unwrap();
    let first = recv_until(&caller, |t| t.starts_with("SIP/2.0 200")).expect("a 200");
    // No ACK: the same 200 again after T1 (500 ms) and again after 2*T1.
    let again = recv_until(&caller, |t| t.starts_with("SIP/2.0 200")).expect("a retransmission");
    let third = recv_until(&caller, |t| t.starts_with("SIP/2.0 200")).expect("a second one");
    assert_eq!(again, first, "a retransmission is the same response");
    assert_eq!(third, first);
    let to = first
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .expect("To")
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .to_owned();
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} sip:1001@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6405;branch=z9hG4bK{branch}\r\nFrom: <sip:2000@127.0.0.1:6405>;tag=retx\r\nTo: {to}\r\nCall-ID: retx-2xx\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            port = sw.external
        )
    };
    caller
        .send_to(in_dialog("ACK", 1, "retxack").as_bytes(), &target)
        .unwrap();
    // After the ACK: nothing more for longer than the next interval (2 s).
    caller
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let quiet_until = Instant::now() + Duration::from_millis(2500);
    let mut buf = [0u8; 8192];
    while Instant::now() < quiet_until {
        if let Ok((n, _)) = caller.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                !text.starts_with("SIP/2.0 200"),
                "200 retransmitted after the ACK: {text}"
            );
        }
    }
    caller
        .send_to(in_dialog("BYE", 2, "retxbye").as_bytes(), &target)
        .unwrap();
    let bye_ok = recv_until(&caller, |t| t.starts_with("SIP/2.0 ") && t.contains("BYE"))
        .expect("the BYE answered");
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "callee side failed:\n{uout}");
    sw.assert_no_leaks();
}

/// With every RTP pair in use, a new call waits for one to come free
/// (100 Trying at once, its channel and B-leg when a call ends) instead of
/// a 503; a waiting call can be cancelled; a call that would wait past the
/// switch's limit (1 s) gets 503.
#[test]
fn a_call_waits_for_a_free_rtp_pair_and_is_refused_only_after_the_wait() {
    // Two RTP pairs: one bridged call holds both.
    let sw = Running::start_edited(
        tempfile::tempdir().unwrap(),
        6420,
        30200,
        "",
        "",
        &[("rtp_port_max = 30399", "rtp_port_max = 30203")],
    );
    register(&sw, "1003", 6432, "u1");
    // Two calls 200 ms apart, each held 300 ms: the second finds no pair
    // for its caller's leg, then none for its B-leg, and goes through once
    // the first ends.
    let uas = callee("uas_answer.xml", 6432, "u1", &["-m", "2"]);
    let (rc, out) = call(
        sw.external,
        6431,
        "u1",
        "uac_call.xml",
        "1003",
        &["-m", "2", "-r", "5", "-d", "300"],
    );
    assert_eq!(rc, 0, "a call that waited for an RTP pair failed:\n{out}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "the callee did not get both calls:\n{uout}");
    sw.assert_no_leaks();

    // A call held 4 s holds both pairs: a call that waits for one can be
    // cancelled, and the next waits its second, then gets 503.
    let uas = callee("uas_answer.xml", 6432, "u1", &["-m", "1"]);
    let long = sipp_bg(call_args(
        sw.external,
        6431,
        "u1",
        "uac_call.xml",
        "1003",
        &["-m", "1", "-d", "4000"],
    ));
    // Until the long call holds both pairs.
    let until = Instant::now() + Duration::from_secs(10);
    while !sw.last_load().is_some_and(|l| l.contains("rtp_ports=2")) {
        assert!(
            Instant::now() < until,
            "the long call never held both pairs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A waiting INVITE cancelled after its 100 Trying: 487 at once.
    let (rc, out) = call(
        sw.external,
        6433,
        "u1",
        "uac_cancel_trying.xml",
        "1003",
        &["-d", "300"],
    );
    assert_eq!(rc, 0, "CANCEL of a call waiting for a pair:\n{out}");
    let t0 = Instant::now();
    let (rc, out) = call(
        sw.external,
        6433,
        "u1",
        "uac_expect_final.xml",
        "1003",
        &["-key", "expect", "503"],
    );
    let waited = t0.elapsed();
    assert_eq!(
        rc, 0,
        "no 503 when the wait for an RTP pair ran out:\n{out}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "the 503 came after {waited:?}, without waiting for a pair"
    );
    let (lrc, lout) = long.join().unwrap();
    assert_eq!(lrc, 0, "the long call failed:\n{lout}");
    let (urc, uout) = uas.join().unwrap();
    assert_eq!(urc, 0, "callee side of the long call failed:\n{uout}");
    sw.assert_no_leaks();
}
