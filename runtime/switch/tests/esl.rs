//! The event socket end to end: the built switch driven by real
//! third-party ESL clients, npm `modesl` (Node.js) and PyPI `genesis`
//! (Python asyncio), plus raw TCP for the protocol's error paths.
//!
//! The clients run as child processes from `tests/esl/` and print JSON
//! lines that the tests assert on; each script has its own hard timeout and
//! runs under `timeout` too. They are installed by
//! `scripts/install-esl-clients.sh` (which `scripts/install-peers.sh`, and
//! so the test command, runs): `tests/esl/node_modules` and the venv
//! `build/venv-esl`. A missing client fails the tests loudly. Calls go to
//! SIPp (`scripts/install-peers.sh`) answering as `uas_answer.xml`.
//!
//! Ports: switches on 6000, 6010, 6020, 6030 (ESL on base + 3000); SIPp
//! on 6100-6139; RTP from 27000, 27200, 27400, 27600. Tests that share a
//! base take its lock first.

mod common;

use common::*;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const INSTALL: &str =
    "run scripts/install-esl-clients.sh (make test does, through scripts/install-peers.sh)";

/// Tests that share switch base 6020 (no calls).
static BASE_6020: Mutex<()> = Mutex::new(());
/// Tests that share switch base 6030 (calls).
static BASE_6030: Mutex<()> = Mutex::new(());

fn take(lock: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

fn esl_dir() -> PathBuf {
    repo().join("tests/esl")
}

/// `node`, with modesl installed in tests/esl/node_modules.
fn node() -> PathBuf {
    let modesl = esl_dir().join("node_modules/modesl/package.json");
    assert!(
        modesl.exists(),
        "modesl is not installed ({} is missing): {INSTALL}",
        modesl.display()
    );
    let ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "node is not installed: {INSTALL}");
    PathBuf::from("node")
}

/// The venv's Python, with genesis importable.
fn python() -> PathBuf {
    let py = repo().join("build/venv-esl/bin/python");
    assert!(
        py.exists(),
        "the genesis venv is missing ({} does not exist): {INSTALL}",
        py.display()
    );
    let ok = Command::new(&py)
        .args(["-c", "import genesis"])
        .env("OTEL_SDK_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "genesis does not import in {}: {INSTALL}", py.display());
    py
}

/// What a client script printed.
struct Script {
    code: i32,
    lines: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Script {
    /// The first line with `"step": step`.
    fn step(&self, step: &str) -> &Value {
        self.lines
            .iter()
            .find(|v| v["step"] == step)
            .unwrap_or_else(|| panic!("the script printed no `{step}` step:\n{self}"))
    }

    /// A string field of a step.
    fn str(&self, step: &str, field: &str) -> &str {
        self.step(step)[field]
            .as_str()
            .unwrap_or_else(|| panic!("`{step}` has no string `{field}`:\n{self}"))
    }

    fn assert_done(&self) {
        assert!(
            self.code == 0 && self.lines.iter().any(|v| v["done"] == true),
            "the client script failed (exit {}):\n{self}",
            self.code
        );
    }
}

impl std::fmt::Display for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- stdout\n{}--- stderr\n{}---",
            self.stdout, self.stderr
        )
    }
}

/// Runs a client script from tests/esl under `timeout` (the script's own
/// hard timeout comes first).
fn run_script(interpreter: PathBuf, script: &str, args: &[String]) -> Script {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "90"])
        .arg(interpreter)
        .arg(esl_dir().join(script))
        .args(args)
        .current_dir(esl_dir())
        .env("OTEL_SDK_DISABLED", "true")
        .env("GENESIS_LOG_LEVEL", "WARNING")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdin(Stdio::null());
    let out = cmd.output().expect("running a client script");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let script = Script {
        code: out.status.code().unwrap_or(-1),
        lines,
        stdout,
        stderr,
    };
    // Shown by the test harness when the test fails (or with --nocapture).
    eprintln!("{script}");
    script
}

/// A client, checked to be installed before the test starts anything.
struct Client(PathBuf);

impl Client {
    fn modesl() -> Client {
        Client(node())
    }

    fn genesis() -> Client {
        Client(python())
    }

    fn run(&self, script: &str, args: &[String]) -> Script {
        run_script(self.0.clone(), script, args)
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

// --- SIPp -------------------------------------------------------------------

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

/// SIPp answering calls as uas_answer.xml in the background; killed (by
/// PID) if the test ends before [`Uas::assert_ok`].
struct Uas {
    child: Option<Child>,
    out: tempfile::NamedTempFile,
}

impl Uas {
    /// `calls` calls on 127.0.0.1:`port` (media on `port + 4` and up), for
    /// at most 60 s; SIPp exits 0 when every call ended with a BYE it
    /// answered.
    fn start(port: u16, calls: u32) -> Uas {
        let scenario = repo().join("tests/sip/sipp/uas_answer.xml");
        let out = tempfile::NamedTempFile::new().unwrap();
        // One file description for both, so their writes append.
        let log = out.reopen().unwrap();
        let child = Command::new("timeout")
            .args(["-k", "5", "60", sipp_bin(), "-sf"])
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &(port + 4).to_string()])
            .args(["-m", &calls.to_string(), "-nostdin"])
            .args([
                "-recv_timeout",
                "45000",
                "-timeout",
                "50s",
                "-timeout_error",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting sipp");
        std::thread::sleep(Duration::from_millis(500));
        Uas {
            child: Some(child),
            out,
        }
    }

    /// Waits for SIPp (its own timeouts bound this) and asserts it
    /// succeeded.
    fn assert_ok(mut self, sw: &Running) {
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        let out = std::fs::read_to_string(self.out.path()).unwrap_or_default();
        assert!(
            status.success(),
            "SIPp (uas_answer.xml) did not end successfully ({status}), so it did not get its BYE:\n{out}\n--- switch log\n{}",
            sw.log_tail()
        );
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // `timeout` passes the TERM on to sipp.
            signal_and_reap(child, "-TERM");
        }
    }
}

// --- raw ESL over TCP --------------------------------------------------------

/// One frame as the switch sent it.
#[derive(Debug)]
struct Frame {
    headers: Vec<(String, String)>,
    body: String,
}

impl Frame {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// FIN, or a reset after the switch closed with our bytes unread.
    Closed,
}

/// A plain TCP client speaking the event socket's framing, every read
/// bounded by a 15 s timeout.
struct Raw {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to the event socket");
        sock.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut r = Raw {
            sock,
            buf: Vec::new(),
        };
        let f = r.frame().expect("auth/request");
        assert_eq!(f.get("Content-Type"), Some("auth/request"), "{f:?}");
        r
    }

    fn send(&mut self, bytes: &[u8]) {
        self.sock
            .write_all(bytes)
            .expect("write to the event socket");
    }

    /// More bytes, or `Err(End::Closed)`; panics on a timeout.
    fn fill(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; 16 * 1024];
        match self.sock.read(&mut chunk) {
            Ok(0) => Err(End::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                Err(End::Closed)
            }
            Err(e) => panic!(
                "reading the event socket: {e} (buffered: {:?})",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next frame, or `Err(End::Closed)` when the connection ends
    /// before one is complete.
    fn frame(&mut self) -> Result<Frame, End> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\n\n") {
                break i;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 2);
        let headers: Vec<(String, String)> = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.parse().expect("Content-Length"))
            .unwrap_or(0);
        while self.buf.len() < len {
            self.fill()?;
        }
        let body = String::from_utf8_lossy(&self.buf[..len]).into_owned();
        self.buf.drain(..len);
        Ok(Frame { headers, body })
    }

    /// Sends `line` as a command and returns the reply frame.
    fn command(&mut self, line: &str) -> Frame {
        self.send(format!("{line}\n\n").as_bytes());
        self.frame()
            .unwrap_or_else(|e| panic!("no reply to `{line}`: {e:?}"))
    }

    /// The `Reply-Text` of `line`'s command/reply.
    fn reply(&mut self, line: &str) -> String {
        let f = self.command(line);
        assert_eq!(
            f.get("Content-Type"),
            Some("command/reply"),
            "`{line}`: {f:?}"
        );
        f.get("Reply-Text").unwrap_or_default().to_string()
    }

    /// After a refusal: frames until the connection closes, which must
    /// happen (within the read timeout); returns them.
    fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            match self.frame() {
                Ok(f) => {
                    assert!(frames.len() < 10, "the switch keeps talking: {frames:?}");
                    frames.push(f);
                }
                Err(End::Closed) => return frames,
            }
        }
    }
}

fn assert_status_body(body: &str, who: &str) {
    assert!(
        body.starts_with("UP "),
        "{who}: `api status` body: {body:?}"
    );
    assert!(
        body.contains("is ready"),
        "{who}: `api status` body: {body:?}"
    );
}

// --- the tests -------------------------------------------------------------

/// Test 1: modesl authenticates, runs `api status`, subscribes, originates
/// with bgapi to SIPp, sees BACKGROUND_JOB `+OK <uuid>`, CHANNEL_CREATE and
/// CHANNEL_ANSWER for it, kills it with `api uuid_kill` and sees
/// CHANNEL_HANGUP_COMPLETE; SIPp gets the BYE.
#[test]
fn modesl_originate_answer_and_kill() {
    let client = Client::modesl();
    let sw = Running::start(6000, 27000);
    let uas = Uas::start(6100, 1);
    let out = client.run(
        "modesl_call.js",
        &args(&["--port", &sw.esl.to_string(), "--target", "127.0.0.1:6100"]),
    );
    out.assert_done();
    check_call(&out, "modesl");
    uas.assert_ok(&sw);
    sw.assert_no_leaks();
}

/// Test 2: the same with genesis's asyncio `Inbound` client (which also
/// shows the bgapi reply's `+OK Job-UUID`).
#[test]
fn genesis_originate_answer_and_kill() {
    let client = Client::genesis();
    let sw = Running::start(6010, 27200);
    let uas = Uas::start(6110, 1);
    let out = client.run(
        "genesis_call.py",
        &args(&["--port", &sw.esl.to_string(), "--target", "127.0.0.1:6110"]),
    );
    out.assert_done();
    check_call(&out, "genesis");
    let job = out.str("bgapi", "job");
    assert_eq!(
        out.str("bgapi", "reply"),
        format!("+OK Job-UUID: {job}"),
        "{out}"
    );
    assert_eq!(out.str("background_job", "job"), job, "{out}");
    uas.assert_ok(&sw);
    sw.assert_no_leaks();
}

/// What tests 1 and 2 share.
fn check_call(out: &Script, who: &str) {
    assert_eq!(out.step("auth")["ok"], true, "{out}");
    assert_status_body(out.str("status", "body"), who);
    assert_eq!(
        out.str("event", "reply"),
        "+OK event listener enabled plain",
        "{who}:\n{out}"
    );
    let body = out.str("background_job", "body");
    let uuid = body
        .strip_prefix("+OK ")
        .map(str::trim_end)
        .unwrap_or_else(|| panic!("{who}: BACKGROUND_JOB body {body:?}"));
    assert_eq!(uuid.len(), 36, "{who}: not a uuid: {uuid:?}");
    assert_eq!(
        out.step("background_job")["event"],
        "BACKGROUND_JOB",
        "{out}"
    );
    for step in ["create", "answer", "hangup_complete"] {
        assert_eq!(out.str(step, "uuid"), uuid, "{who} `{step}`:\n{out}");
    }
    assert_eq!(out.str("create", "event"), "CHANNEL_CREATE", "{out}");
    assert_eq!(out.str("answer", "event"), "CHANNEL_ANSWER", "{out}");
    assert_eq!(
        out.str("hangup_complete", "event"),
        "CHANNEL_HANGUP_COMPLETE",
        "{out}"
    );
    assert_eq!(
        out.str("kill", "body").trim_end(),
        "+OK",
        "{who}: uuid_kill:\n{out}"
    );
    assert_eq!(
        out.str("hangup_complete", "cause"),
        "NORMAL_CLEARING",
        "{out}"
    );
}

/// Test 3: a wrong password gets `-ERR invalid`, `text/disconnect-notice`
/// and the end of the connection, over raw TCP and through modesl; the
/// listener goes on serving: the next connection logs in and runs `api
/// status` (raw and with modesl).
#[test]
fn wrong_password_is_refused_and_the_listener_keeps_serving() {
    let client = Client::modesl();
    let _base = take(&BASE_6020);
    let sw = Running::start(6020, 27400);

    let mut c = Raw::connect(sw.esl);
    let f = c.command("auth NotThePassword");
    assert_eq!(f.get("Content-Type"), Some("command/reply"), "{f:?}");
    assert_eq!(f.get("Reply-Text"), Some("-ERR invalid"), "{f:?}");
    let rest = c.until_closed();
    assert!(
        rest.first()
            .is_some_and(|f| f.get("Content-Type") == Some("text/disconnect-notice")),
        "after -ERR invalid: {rest:?}"
    );
    assert_eq!(rest.len(), 1, "after the disconnect notice: {rest:?}");

    let mut c = Raw::connect(sw.esl);
    assert_eq!(c.reply("auth ClueCon"), "+OK accepted");
    let f = c.command("api status");
    assert_eq!(f.get("Content-Type"), Some("api/response"), "{f:?}");
    assert_status_body(&f.body, "raw TCP after a refused login");

    let refused = client.run(
        "modesl_auth.js",
        &args(&[
            "--port",
            &sw.esl.to_string(),
            "--password",
            "wrong",
            "--expect-fail",
        ]),
    );
    refused.assert_done();
    assert_eq!(refused.str("refused", "reply"), "-ERR invalid", "{refused}");
    assert_eq!(
        refused.step("refused")["disconnect_notice"],
        true,
        "{refused}"
    );
    assert_eq!(refused.step("refused")["closed"], true, "{refused}");

    let ok = client.run("modesl_auth.js", &args(&["--port", &sw.esl.to_string()]));
    ok.assert_done();
    assert_status_body(ok.str("status", "body"), "modesl after a refused login");
    // The raw connection is still there and serving.
    assert_eq!(
        c.command("api status").get("Content-Type"),
        Some("api/response")
    );
}

/// Test 4: commands before `auth` get `-ERR command not found` and the
/// connection stays usable; a head of 70 KiB without an empty line, and a
/// `Content-Length` of 99999999999, get `-ERR command parse error.` and the
/// connection is closed (before and after auth); the listener serves on.
#[test]
fn commands_before_auth_and_malformed_frames() {
    let _base = take(&BASE_6020);
    let sw = Running::start(6020, 27400);

    let mut c = Raw::connect(sw.esl);
    assert_eq!(c.reply("api status"), "-ERR command not found");
    assert_eq!(c.reply("event plain ALL"), "-ERR command not found");
    assert_eq!(c.reply("auth ClueCon"), "+OK accepted");
    let f = c.command("api status");
    assert_eq!(f.get("Content-Type"), Some("api/response"), "{f:?}");
    assert_status_body(&f.body, "raw TCP after commands before auth");

    // 70 KiB without a blank line, after auth.
    let mut line = b"api ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 70 * 1024));
    line.push(b'\n');
    c.send(&line);
    parse_error_then_close(&mut c, "70 KiB head");

    // A huge Content-Length, before auth.
    let mut c = Raw::connect(sw.esl);
    c.send(b"sendevent CUSTOM\nContent-Length: 99999999999\n\n");
    parse_error_then_close(&mut c, "Content-Length: 99999999999");

    // And after auth.
    let mut c = Raw::connect(sw.esl);
    assert_eq!(c.reply("auth ClueCon"), "+OK accepted");
    c.send(b"sendevent CUSTOM\nContent-Length: 99999999999\n\n");
    parse_error_then_close(&mut c, "Content-Length: 99999999999 after auth");

    // The listener still serves.
    let mut c = Raw::connect(sw.esl);
    assert_eq!(c.reply("auth ClueCon"), "+OK accepted");
    let f = c.command("api status");
    assert_status_body(&f.body, "raw TCP after malformed frames");
    assert_eq!(c.reply("exit"), "+OK bye");
}

fn parse_error_then_close(c: &mut Raw, what: &str) {
    let frames = c.until_closed();
    let first = frames
        .first()
        .unwrap_or_else(|| panic!("{what}: the connection closed without a reply"));
    assert_eq!(
        first.get("Content-Type"),
        Some("command/reply"),
        "{what}: {frames:?}"
    );
    assert_eq!(
        first.get("Reply-Text"),
        Some("-ERR command parse error."),
        "{what}: {frames:?}"
    );
    for f in &frames[1..] {
        assert_eq!(
            f.get("Content-Type"),
            Some("text/disconnect-notice"),
            "{what}: after the parse error: {frames:?}"
        );
    }
}

/// Test 5 with genesis: `event json ALL` frames parse as JSON objects with
/// Event-Name; `filter Unique-ID <A>` keeps a second call's events (and a
/// BACKGROUND_JOB) from the filtered connection while A's still arrive;
/// `nixevent` and `noevents` replies; `bgapi` of an unknown command gives
/// BACKGROUND_JOB `-ERR <cmd> Command not found!`.
#[test]
fn json_events_filter_nixevent_and_unknown_bgapi() {
    let client = Client::genesis();
    let _base = take(&BASE_6030);
    let sw = Running::start(6030, 27600);
    let uas = Uas::start(6130, 2);
    let out = client.run(
        "genesis_events.py",
        &args(&["--port", &sw.esl.to_string(), "--target", "127.0.0.1:6130"]),
    );
    out.assert_done();
    assert_eq!(
        out.str("event_json", "reply"),
        "+OK event listener enabled json",
        "{out}"
    );

    let job = out.str("bgapi_unknown_reply", "job");
    assert_eq!(
        out.str("bgapi_unknown_reply", "reply"),
        format!("+OK Job-UUID: {job}"),
        "{out}"
    );
    assert_eq!(
        out.str("bgapi_unknown", "body").trim_end(),
        "-ERR no_such_command_xyz Command not found!",
        "{out}"
    );

    let ua = out.str("call_a", "uuid");
    let ub = out.str("call_b", "uuid");
    assert_ne!(ua, ub);
    assert_eq!(
        out.str("filter", "reply"),
        format!("+OK filter added. [Unique-ID]=[{ua}]"),
        "{out}"
    );
    assert_eq!(out.str("kill_a", "body").trim_end(), "+OK", "{out}");
    assert_eq!(out.str("kill_b", "body").trim_end(), "+OK", "{out}");
    let filtered = out.step("filtered");
    assert_eq!(
        filtered["b_events"],
        Value::Array(vec![]),
        "the filtered connection got events of call B:\n{out}"
    );
    let watch_b = filtered["watch_b_events"].as_array().unwrap();
    for name in [
        "CHANNEL_CREATE",
        "CHANNEL_ANSWER",
        "CHANNEL_HANGUP_COMPLETE",
    ] {
        assert!(
            watch_b.iter().any(|n| n == name),
            "the unfiltered connection has no {name} of call B:\n{out}"
        );
    }
    for e in filtered["late_events"].as_array().unwrap() {
        assert_eq!(
            e[1], ua,
            "an event not of call A passed `filter Unique-ID {ua}`: {e}\n{out}"
        );
    }
    assert!(
        filtered["a_events_after_filter"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "CHANNEL_HANGUP_COMPLETE"),
        "call A's events stopped after the filter:\n{out}"
    );

    assert_eq!(out.str("nixevent", "reply"), "+OK events nixed", "{out}");
    assert_eq!(
        out.str("noevents", "reply"),
        "+OK no longer listening for events",
        "{out}"
    );
    assert_eq!(
        out.str("noevents_again", "reply"),
        "-ERR not listening for events",
        "{out}"
    );

    let json = out.step("json");
    assert_eq!(
        json["bad"],
        Value::Array(vec![]),
        "frames that are not JSON events:\n{out}"
    );
    assert!(json["watch_events"].as_u64().unwrap() > 0, "{out}");
    let names = json["names"].as_array().unwrap();
    for name in [
        "BACKGROUND_JOB",
        "CHANNEL_CREATE",
        "CHANNEL_ANSWER",
        "CHANNEL_HANGUP_COMPLETE",
    ] {
        assert!(names.iter().any(|n| n == name), "no {name} in json:\n{out}");
    }
    uas.assert_ok(&sw);
    sw.assert_no_leaks();
}

/// Test 6 with modesl on a live call: `show channels as json` (raw and
/// through modesl's show()), `uuid_getvar`/`uuid_setvar`, `uuid_dump` plain
/// and json, `uuid_transfer` to 9664 (the channel's events and uuid_dump
/// show the new destination), `sofia status` lists both profiles; then
/// `uuid_kill`, and `uuid_kill` again is `-ERR No such channel!`.
#[test]
fn channel_api_on_a_live_call() {
    let client = Client::modesl();
    let _base = take(&BASE_6030);
    let sw = Running::start(6030, 27600);
    let uas = Uas::start(6120, 1);
    let out = client.run(
        "modesl_channel_api.js",
        &args(&["--port", &sw.esl.to_string(), "--target", "127.0.0.1:6120"]),
    );
    out.assert_done();
    assert_eq!(
        out.str("event", "reply"),
        "+OK event listener enabled json",
        "{out}"
    );
    let orig = out.str("originate", "body");
    let uuid = orig
        .strip_prefix("+OK ")
        .map(str::trim_end)
        .unwrap_or_else(|| panic!("originate: {orig:?}"));

    for step in ["show_channels", "show_helper"] {
        let v = out.step(step);
        assert!(
            v["row_count"].as_u64().unwrap_or(0) >= 1,
            "`{step}`:\n{out}"
        );
        assert!(
            v["uuids"].as_array().unwrap().iter().any(|u| u == uuid),
            "`{step}` does not list {uuid}:\n{out}"
        );
    }
    let row = &out.step("show_channels")["row"];
    assert_eq!(row["direction"], "outbound", "{out}");
    assert_eq!(row["dest"], "9196", "{out}");

    assert_eq!(
        out.str("getvar_unset", "body").trim_end(),
        "_undef_",
        "{out}"
    );
    assert_eq!(out.str("setvar", "body").trim_end(), "+OK", "{out}");
    assert_eq!(
        out.str("getvar", "body").trim_end(),
        "hello modesl",
        "{out}"
    );
    assert_eq!(
        out.str("getvar_missing_channel", "body").trim_end(),
        "-ERR No such channel!",
        "{out}"
    );

    for step in ["dump", "dump_json"] {
        let f = &out.step(step)["fields"];
        assert_eq!(f["Unique-ID"], uuid, "`{step}`:\n{out}");
        assert_eq!(f["Caller-Destination-Number"], "9196", "`{step}`:\n{out}");
        assert_eq!(
            f["variable_esl_test_var"], "hello modesl",
            "`{step}`:\n{out}"
        );
        assert_eq!(f["Channel-Call-State"], "ACTIVE", "`{step}`:\n{out}");
    }

    assert_eq!(out.str("transfer", "body").trim_end(), "+OK", "{out}");
    assert_eq!(out.str("transferred", "uuid"), uuid, "{out}");
    assert_eq!(out.str("transferred", "destination"), "9664", "{out}");
    assert_eq!(
        out.str("dump_after_transfer", "destination"),
        "9664",
        "{out}"
    );

    let sofia = out.str("sofia_status", "body");
    for p in ["internal", "external"] {
        assert!(
            sofia
                .lines()
                .any(|l| l.contains(p) && l.contains("profile")),
            "`sofia status` does not list profile {p}:\n{sofia}"
        );
    }
    assert!(
        sofia.contains(&format!("127.0.0.1:{}", sw.internal)),
        "{sofia}"
    );

    assert_eq!(out.str("kill", "body").trim_end(), "+OK", "{out}");
    assert_eq!(out.str("hangup_complete", "uuid"), uuid, "{out}");
    assert_eq!(
        out.str("kill_again", "body").trim_end(),
        "-ERR No such channel!",
        "{out}"
    );
    uas.assert_ok(&sw);
    sw.assert_no_leaks();
}
