//! The HTTP listener end to end: Prometheus `/metrics` and the tenant
//! dialplan API (`/v1/tenants/T/dialplan`), against the built switch.
//!
//! - `/metrics` must pass `promtool check metrics` (Debian's prometheus
//!   package, `scripts/install-peers.sh`) on a fresh switch and after calls,
//!   when the labelled families have samples, and its counters must move
//!   with the calls SIPp places.
//! - A component uploaded while SIPp places calls at 10 a second to the
//!   echo extension (`9196`) replaces the running one without a failed
//!   call; the CDRs show calls routed by both versions.
//! - Refused uploads (no token, wrong token, unknown tenant, too large, a
//!   forbidden import, not a component, too many, a failing dry run) change
//!   nothing: the running version keeps serving calls.
//! - An upload may be staged, activated, and rolled back; the event socket
//!   (`dialplan versions`) agrees with the HTTP API.
//!
//! The HTTP client is a plain `std::net::TcpStream` speaking HTTP/1.1
//! (`Connection: close`, `Expect: 100-continue` before a body, so a
//! refused upload is answered before it is sent). Which version routed a
//! call is read from its CDR (`dialplan_version`, in
//! `<state_dir>/cdr.jsonl`): the switch sets it to the routing version's
//! name, and `versioned_dialplan.wasm` overwrites it with its own digits.
//!
//! Nothing here measures time: every wait polls for what must appear and
//! gives up after a generous bound, printing what it saw.
//!
//! Ports: switches on 6080 and 6090 (SIP 6080-6083 / 6090-6093, ESL 9080 /
//! 9090, HTTP 10080 / 10090), RTP from 28600 and 28800. Each switch base
//! has a lock, so the tests stay correct when run in parallel. SIPp: the
//! single calls of the 6080 switch on 6170 (control 6171, media
//! 6172-6175), of the 6090 switch on 6180 (6181, 6182-6185); the load on
//! 6190 (6191, 6192-6195).
//!
//! Needs sipp and promtool (`scripts/install-peers.sh`).

mod common;

use common::Running;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long any one wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// The tenant's API token (its SHA-256 goes into the tenant file).
const TOKEN: &str = "dialtone-http-test-token-7f3a";
const TENANT: &str = "dialtone.local";

static BASE_6080: Mutex<()> = Mutex::new(());
static BASE_6090: Mutex<()> = Mutex::new(());

/// A switch the test started, its base's lock, and the SIPp ports of its
/// single calls.
struct Switch {
    sw: Running,
    /// SIP, control and media port of the single-call SIPp.
    sipp: (u16, u16, u16),
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Switch {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.sw
    }
}

/// Starts a switch on `base` (6080 or 6090) with the test token, while
/// holding that base's lock; `edits` change conf/dialtone.toml.
fn switch(base: u16, edits: &[(&str, &str)]) -> Switch {
    let (lock, rtp, sipp) = match base {
        6080 => (&BASE_6080, 28600, (6170, 6171, 6172)),
        6090 => (&BASE_6090, 28800, (6180, 6181, 6182)),
        _ => panic!("this file uses switch bases 6080 and 6090 only"),
    };
    tool("sipp", "-v");
    let turn = lock.lock().unwrap_or_else(|e| e.into_inner());
    let top = format!(
        "api_tokens_sha256 = [\"{}\"]",
        hex::encode(Sha256::digest(TOKEN.as_bytes()))
    );
    let sw = Running::start_full(tempfile::tempdir().unwrap(), base, rtp, &top, "", "", edits);
    let s = Switch {
        sw,
        sipp,
        _turn: turn,
    };
    // The HTTP listener is up once it answers.
    poll("the HTTP listener", || {
        let r = try_request(s.http, "GET", "/healthz", None, b"").map_err(|e| e.to_string())?;
        (r.status == 200).then_some(()).ok_or(r.show())
    });
    s
}

/// Fails loudly when `name` is missing.
fn tool(name: &str, arg: &str) {
    let ok = Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "{name} is not installed (not on PATH): run scripts/install-peers.sh"
    );
}

/// Polls `probe` until it gives a value, at most [`WAIT`]; panics with the
/// last reason otherwise.
fn poll<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + WAIT;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) if Instant::now() >= end => panic!("waited {WAIT:?} for {what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn components() -> PathBuf {
    common::components()
}

fn component(name: &str) -> Vec<u8> {
    let p = components().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (build the components)", p.display()))
}

fn scenario(name: &str) -> String {
    common::repo()
        .join("tests/sip/sipp")
        .join(name)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------
// HTTP

/// An HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.show()))
    }

    fn show(&self) -> String {
        let h: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!("{} {}\n{}", self.status, h.join("\n"), self.body)
    }
}

/// One request on a new connection, `token` as a bearer token; a body is
/// sent after the server's `100 Continue` (or after 10 s without an
/// answer), not at all when the server answers at once.
fn try_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<Reply> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/wasm\r\nExpect: 100-continue\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let mut buf = Vec::new();
    if !body.is_empty() {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        match read_head(&mut s, &mut buf) {
            Ok((100, _, end)) => {
                buf.drain(..end);
                s.write_all(body)?;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                s.write_all(body)?
            }
            Err(e) => return Err(e),
        }
    }
    // Compiling a large component (the JavaScript dialplan is 12 MB) takes
    // a while on a busy machine.
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let (status, headers, end) = loop {
        let (status, headers, end) = read_head(&mut s, &mut buf)?;
        if status == 100 {
            buf.drain(..end);
            continue;
        }
        break (status, headers, end);
    };
    buf.drain(..end);
    let len: Option<usize> = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    let mut chunk = [0u8; 65536];
    while len.is_none_or(|l| buf.len() < l) {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if let Some(l) = len {
        buf.truncate(l);
    }
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&buf).into_owned(),
    })
}

/// A response head: status, headers, where it ends in the buffer.
type Head = (u16, Vec<(String, String)>, usize);

/// Reads until `buf` holds a whole response head; returns its status, its
/// headers and where it ends in `buf`.
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Head> {
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..i]).into_owned();
            let mut lines = text.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            return Ok((status, headers, i + 4));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a response: {:?}",
                    String::from_utf8_lossy(buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn request(sw: &Switch, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    try_request(sw.http, method, path, token, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\nswitch:\n{}", sw.log_tail()))
}

fn dialplan_path(tenant: &str) -> String {
    format!("/v1/tenants/{tenant}/dialplan")
}

/// `GET /v1/tenants/dialtone.local/dialplan`, which must answer 200.
fn versions(sw: &Switch) -> Value {
    let r = request(sw, "GET", &dialplan_path(TENANT), Some(TOKEN), b"");
    assert_eq!(r.status, 200, "GET dialplan: {}", r.show());
    let v = r.json();
    assert_eq!(v["tenant"], TENANT, "{v}");
    v
}

/// The running version, checked to be the one `versions` marks active.
fn active(sw: &Switch) -> String {
    let v = versions(sw);
    let a = v["active"]
        .as_str()
        .unwrap_or_else(|| panic!("no active version: {v}"))
        .to_string();
    let marked: Vec<&Value> = v["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions: {v}"))
        .iter()
        .filter(|i| i["active"] == true)
        .collect();
    assert_eq!(marked.len(), 1, "one version must be active: {v}");
    assert_eq!(marked[0]["version"], a.as_str(), "{v}");
    a
}

fn upload(sw: &Switch, query: &str, body: &[u8]) -> Reply {
    request(
        sw,
        "POST",
        &format!("{}{query}", dialplan_path(TENANT)),
        Some(TOKEN),
        body,
    )
}

// ---------------------------------------------------------------------------
// Metrics

fn metrics(sw: &Switch) -> String {
    let r = request(sw, "GET", "/metrics", None, b"");
    assert_eq!(r.status, 200, "/metrics: {}", r.show());
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
        "/metrics content type {ct:?}"
    );
    r.body
}

/// `promtool check metrics` on `text`: must exit 0 and report nothing.
fn promtool_check(text: &str) {
    tool("promtool", "--version");
    let mut child = Command::new("timeout")
        .args(["60", "promtool", "check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-peers.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}):\n{said}\non:\n{text}",
        out.status
    );
}

/// The sample's labels, parsed from `{a="x",b="y"}` (with `\"`, `\\`, `\n`
/// escapes).
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches(',').trim().to_string();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name, value));
        rest = &rest[end..];
    }
    out
}

/// Every sample of `name` whose labels include `labels`, with its labels.
fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(Vec<(String, String)>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, ls) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v));
            all.then(|| Some((ls, value.parse::<f64>().ok()?)))?
        })
        .collect()
}

/// The one sample of `name` with exactly `labels`; `None` when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples(text, name, labels)
        .into_iter()
        .filter(|(ls, _)| ls.len() == labels.len())
        .map(|(_, v)| v)
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} twice:\n{text}");
    found.first().copied()
}

const INBOUND: &[(&str, &str)] = &[("tenant", TENANT), ("direction", "inbound")];

// ---------------------------------------------------------------------------
// SIPp

/// One call from 1000 (digest auth, password 1234) to `dest` through the
/// internal profile, answered and hung up by the caller after `-d`
/// milliseconds. Returns SIPp's exit code and output.
fn call(sw: &Switch, dest: &str, extra: &[&str]) -> (i32, String) {
    let (port, control, media) = sw.sipp;
    let out = Command::new("timeout")
        .arg("40")
        .arg("sipp")
        .arg("-sf")
        .arg(scenario("uac_auth_call.xml"))
        .arg(format!("127.0.0.1:{}", sw.internal))
        .args(["-i", "127.0.0.1", "-t", "u1"])
        .args(["-p", &port.to_string()])
        .args(["-cp", &control.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media.to_string()])
        .args([
            "-s", dest, "-key", "caller", "1000", "-key", "domain", TENANT,
        ])
        .args(["-au", "1000", "-ap", "1234", "-auth_uri"])
        .arg(format!("{dest}@127.0.0.1:{}", sw.internal))
        .args(["-d", "300", "-m", "1", "-nostdin", "-recv_timeout", "10000"])
        .args(["-timeout", "30s", "-timeout_error"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("timeout sipp");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A call to the echo extension must be answered and end normally.
fn echo_call_completes(sw: &Switch, after: &str) {
    let (rc, out) = call(sw, "9196", &[]);
    assert_eq!(
        rc,
        0,
        "after {after}: the call to 9196 failed:\n{out}\nswitch:\n{}",
        sw.log_tail()
    );
}

/// SIPp placing calls in the background; stopped by its PID if the test
/// ends early.
struct Load {
    child: Option<Child>,
    control: u16,
    stats: PathBuf,
    out: PathBuf,
    errors: PathBuf,
}

impl Load {
    /// Calls from 1000 to 9196, `rate` a second, each `hold_ms` long, at
    /// most `max` of them (the bound on its life, with `timeout`).
    fn start(sw: &Switch, work: &Path, rate: u32, hold_ms: u32, max: u32) -> Load {
        let (port, control, media) = (6190u16, 6191u16, 6192u16);
        let stats = work.join("load.csv");
        let out = work.join("load.out");
        let errors = work.join("load.err");
        let log = std::fs::File::create(&out).unwrap();
        let child = Command::new("timeout")
            .arg((max / rate + 60).to_string())
            .arg("sipp")
            .arg("-sf")
            .arg(scenario("uac_auth_call.xml"))
            .arg(format!("127.0.0.1:{}", sw.internal))
            .args(["-i", "127.0.0.1", "-t", "u1"])
            .args(["-p", &port.to_string()])
            .args(["-cp", &control.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media.to_string()])
            .args([
                "-s", "9196", "-key", "caller", "1000", "-key", "domain", TENANT,
            ])
            .args(["-au", "1000", "-ap", "1234", "-auth_uri"])
            .arg(format!("9196@127.0.0.1:{}", sw.internal))
            .args(["-d", &hold_ms.to_string()])
            .args(["-r", &rate.to_string(), "-m", &max.to_string(), "-l", "100"])
            .args(["-nostdin", "-recv_timeout", "10000"])
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(&stats)
            .args(["-trace_err", "-error_file"])
            .arg(&errors)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("timeout sipp");
        Load {
            child: Some(child),
            control,
            stats,
            out,
            errors,
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Asks SIPp to stop placing calls and end once its calls are over
    /// (`q` on its control port), waits for that (at most [`WAIT`], then
    /// SIGTERM); returns its exit code, its final counters and its output.
    fn finish(mut self) -> (Option<i32>, Counters, String) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + WAIT;
        let mut code = None;
        let mut asked = Instant::now() - Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(st) = child.try_wait().unwrap() {
                code = st.code();
                break;
            }
            // Again every few seconds: a UDP datagram may be lost.
            if asked.elapsed() >= Duration::from_secs(5) {
                let _ = sock.send_to(b"q", ("127.0.0.1", self.control));
                asked = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if code.is_none() {
            common::signal_and_reap(&mut child, "-TERM");
        }
        // Reaped either way (try_wait above, or signal_and_reap).
        let _ = child.wait();
        let text = format!(
            "{}\nerrors:\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.errors).unwrap_or_default()
        );
        (code, Counters::read(&self.stats), text)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            common::signal_and_reap(c, "-TERM");
        }
    }
}

/// SIPp's cumulative counters, from the last line of its `-trace_stat`
/// file.
#[derive(Debug, Default)]
struct Counters {
    created: u64,
    successful: u64,
    failed: u64,
}

impl Counters {
    fn read(path: &Path) -> Counters {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(head) = lines.next() else {
            return Counters::default();
        };
        let Some(last) = lines.next_back() else {
            return Counters::default();
        };
        let names: Vec<&str> = head.split(';').collect();
        let values: Vec<&str> = last.split(';').collect();
        let get = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .and_then(|i| values.get(i))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Counters {
            created: get("TotalCallCreated"),
            successful: get("SuccessfulCall(C)"),
            failed: get("FailedCall(C)"),
        }
    }
}

// ---------------------------------------------------------------------------
// CDRs

/// The committed CDRs, from the JSON-lines copy of the journal.
fn cdrs(sw: &Switch) -> Vec<Value> {
    let path = sw._dir.path().join("var/cdr.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a CDR ({e}): {l}")))
        .collect()
}

/// The CDRs of inbound calls to `dest`.
fn cdrs_to(sw: &Switch, dest: &str) -> Vec<Value> {
    cdrs(sw)
        .into_iter()
        .filter(|c| c["destination"] == dest && c["direction"] == "inbound")
        .collect()
}

/// Waits until `n` CDRs of calls to `dest` are committed; returns them.
fn wait_for_cdrs(sw: &Switch, dest: &str, n: usize) -> Vec<Value> {
    poll(&format!("{n} CDRs of calls to {dest}"), || {
        let c = cdrs_to(sw, dest);
        if c.len() >= n {
            Ok(c)
        } else {
            Err(format!("{} so far", c.len()))
        }
    })
}

fn short(c: &Value) -> String {
    format!(
        "{} {} {} sip={} version={}",
        c["destination"], c["hangup_cause"], c["uuid"], c["sip_code"], c["dialplan_version"]
    )
}

// ---------------------------------------------------------------------------
// Components

/// A component whose only content is an import of the instance `name`
/// exporting one function `handle` — in WAT
/// `(component (import "NAME" (instance (export "handle" (func)))))`,
/// encoded by hand (names shorter than 128 bytes).
fn component_importing(name: &str) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 128);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
        assert!(body.len() < 128);
        out.push(id);
        out.push(body.len() as u8);
        out.extend_from_slice(body);
    }
    // Type section: one instance type with two declarations, a type
    // (func with no parameters or results) and an export of it.
    let mut types = vec![0x01, 0x42, 0x02, 0x01, 0x40, 0x00, 0x01, 0x00, 0x04, 0x00];
    string(&mut types, "handle");
    types.extend_from_slice(&[0x01, 0x00]);
    // Import section: one import of that instance type.
    let mut imports = vec![0x01, 0x00];
    string(&mut imports, name);
    imports.extend_from_slice(&[0x05, 0x00]);
    // The component preamble: magic, version 0x0d, layer 1.
    let mut out = b"\0asm\x0d\x00\x01\x00".to_vec();
    section(&mut out, 7, &types);
    section(&mut out, 10, &imports);
    out
}

/// `dialtone ctl -x CMD` against the switch's event socket.
fn ctl(sw: &Switch, cmd: &str) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_dialtone"))
        .args(["ctl", "--port", &sw.esl.to_string(), "-x", cmd])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dialtone ctl -x {cmd:?} failed ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `dialplan versions dialtone.local` over the event socket: (active,
/// version) in order.
fn esl_versions(sw: &Switch) -> Vec<(bool, String)> {
    ctl(sw, &format!("dialplan versions {TENANT}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let active = l.starts_with('*');
            let version = l[1..].split_whitespace().next().unwrap_or_default();
            (active, version.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn metrics_pass_promtool_and_count_calls() {
    tool("promtool", "--version");
    let sw = switch(6080, &[]);

    let before = metrics(&sw);
    promtool_check(&before);
    for family in [
        "dialtone_channels gauge",
        "dialtone_channels_created_total counter",
        "dialtone_registrations gauge",
        "dialtone_rtp_packets_received_total counter",
        "dialtone_rtp_ports_in_use gauge",
        "dialtone_sip_calls gauge",
        "dialtone_events_published_total counter",
        "dialtone_cdr_records_total counter",
    ] {
        assert!(
            before.contains(&format!("# TYPE {family}\n")),
            "no `# TYPE {family}`:\n{before}"
        );
    }
    let calls_before = sample(&before, "dialtone_calls_total", INBOUND).unwrap_or(0.0);
    let cdrs_before = sample(&before, "dialtone_cdr_records_total", &[]).expect("cdr records");

    // Three calls to the echo extension, one after the other.
    const CALLS: usize = 3;
    for i in 0..CALLS {
        echo_call_completes(&sw, &format!("{i} calls"));
    }
    // Counters follow the events: wait for the CDRs, then for the counters.
    // The CDR journal and the metrics are two taps on
    // CHANNEL_HANGUP_COMPLETE; the journal commits in its own time: wait
    // for both.
    wait_for_cdrs(&sw, "9196", CALLS);
    let hangups_before = sample(
        &before,
        "dialtone_hangups_total",
        &[("cause", "NORMAL_CLEARING")],
    )
    .unwrap_or(0.0);
    let after = poll("the counters to count the calls", || {
        let m = metrics(&sw);
        let calls = sample(&m, "dialtone_calls_total", INBOUND).unwrap_or(0.0);
        let cdrs = sample(&m, "dialtone_cdr_records_total", &[]).unwrap_or(0.0);
        let hangups = sample(
            &m,
            "dialtone_hangups_total",
            &[("cause", "NORMAL_CLEARING")],
        )
        .unwrap_or(0.0);
        if calls >= calls_before + CALLS as f64
            && cdrs >= cdrs_before + CALLS as f64
            && hangups >= hangups_before + CALLS as f64
        {
            Ok(m)
        } else {
            Err(format!(
                "calls {calls}, CDRs {cdrs}, hangups {hangups}:\n{m}"
            ))
        }
    });
    promtool_check(&after);
    for family in [
        "dialtone_calls_total counter",
        "dialtone_hangups_total counter",
        "dialtone_route_duration_seconds histogram",
        "dialtone_dialplan_invocations_total counter",
        "dialtone_dialplan_inline_invocations_total counter",
    ] {
        assert!(
            after.contains(&format!("# TYPE {family}\n")),
            "no `# TYPE {family}`:\n{after}"
        );
    }

    // The inbound counter moved by exactly the calls made.
    assert_eq!(
        sample(&after, "dialtone_calls_total", INBOUND),
        Some(calls_before + CALLS as f64),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "dialtone_hangups_total",
            &[("cause", "NORMAL_CLEARING")]
        )
        .is_some_and(|v| v >= CALLS as f64),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "dialtone_dialplan_invocations_total",
            &[("tenant", TENANT)]
        )
        .is_some_and(|v| v >= CALLS as f64),
        "{after}"
    );
    // The route histogram: cumulative buckets ending in +Inf = count.
    let tenant = [("tenant", TENANT)];
    let count = sample(&after, "dialtone_route_duration_seconds_count", &tenant)
        .unwrap_or_else(|| panic!("no route duration count:\n{after}"));
    assert!(count >= CALLS as f64, "{after}");
    let sum = sample(&after, "dialtone_route_duration_seconds_sum", &tenant)
        .unwrap_or_else(|| panic!("no route duration sum:\n{after}"));
    assert!(sum > 0.0, "{after}");
    let mut buckets: Vec<(f64, f64)> =
        samples(&after, "dialtone_route_duration_seconds_bucket", &tenant)
            .into_iter()
            .map(|(ls, v)| {
                let le = ls.iter().find(|(k, _)| k == "le").expect("le").1.clone();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, v)
            })
            .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 1, "{after}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count), "{after}");
    // Every call is over; its RTP ports are back.
    let idle = poll("no live channels", || {
        let m = metrics(&sw);
        let ch = sample(&m, "dialtone_channels", &[]);
        let ports = sample(&m, "dialtone_rtp_ports_in_use", &[]);
        if ch == Some(0.0) && ports == Some(0.0) {
            Ok(m)
        } else {
            Err(format!("channels {ch:?}, RTP ports {ports:?}"))
        }
    });
    assert!(
        sample(&idle, "dialtone_events_published_total", &[]).unwrap_or(0.0)
            > sample(&before, "dialtone_events_published_total", &[]).unwrap_or(0.0),
        "{idle}"
    );
    promtool_check(&idle);
}

#[test]
fn an_upload_under_load_swaps_without_failing_a_call() {
    let sw = switch(6090, &[]);
    let work = tempfile::tempdir().unwrap();
    let v0 = active(&sw);

    // 10 calls a second to the echo extension, 2 s each.
    let mut load = Load::start(&sw, work.path(), 10, 2000, 2400);
    poll("calls in progress", || {
        let ch = sample(&metrics(&sw), "dialtone_channels", &[]).unwrap_or(0.0);
        if ch >= 5.0 {
            Ok(())
        } else {
            Err(format!(
                "{ch} channels; SIPp: {:?}",
                Counters::read(&load.stats)
            ))
        }
    });

    let r = upload(&sw, "", &component("default_dialplan_js.wasm"));
    assert_eq!(
        r.status,
        201,
        "upload: {}\nswitch:\n{}",
        r.show(),
        sw.log_tail()
    );
    let j = r.json();
    let v1 = j["active"]
        .as_str()
        .unwrap_or_else(|| panic!("no active version: {j}"))
        .to_string();
    assert_ne!(v1, v0, "{j}");
    assert_eq!(j["previous"], v0.as_str(), "{j}");
    assert!(
        load.running(),
        "SIPp ended before the upload was answered: nothing tested under load"
    );

    // Calls go on through the new version.
    poll("calls routed by the uploaded version", || {
        let n = cdrs_to(&sw, "9196")
            .iter()
            .filter(|c| c["dialplan_version"] == v1.as_str())
            .count();
        if n >= 20 {
            Ok(())
        } else {
            Err(format!("{n} CDRs name {v1}"))
        }
    });
    assert!(load.running(), "SIPp ended before the test stopped it");
    let (code, counters, out) = load.finish();
    assert_eq!(code, Some(0), "SIPp: {counters:?}\n{out}");
    assert_eq!(counters.failed, 0, "failed calls: {counters:?}\n{out}");
    assert!(counters.successful > 0, "{counters:?}\n{out}");
    assert_eq!(
        counters.successful, counters.created,
        "every call placed succeeded: {counters:?}\n{out}"
    );

    // One CDR per call, each answered and ended normally, by either
    // version; both versions routed calls.
    let all = wait_for_cdrs(&sw, "9196", counters.successful as usize);
    assert_eq!(all.len() as u64, counters.successful);
    let mut by = (0, 0);
    for c in &all {
        assert_eq!(c["hangup_cause"], "NORMAL_CLEARING", "{}", short(c));
        assert!(c["answer_us"].is_u64(), "not answered: {}", short(c));
        match c["dialplan_version"].as_str() {
            Some(v) if v == v0 => by.0 += 1,
            Some(v) if v == v1 => by.1 += 1,
            _ => panic!("routed by neither {v0} nor {v1}: {}", short(c)),
        }
    }
    assert!(by.0 > 0 && by.1 > 0, "calls by {v0}, {v1}: {by:?}");

    let v = versions(&sw);
    assert_eq!(v["active"], v1.as_str(), "{v}");
    let listed: Vec<(String, bool)> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["version"].as_str().unwrap().to_string(),
                i["active"] == true,
            )
        })
        .collect();
    assert_eq!(listed, [(v1.clone(), true), (v0.clone(), false)], "{v}");
    assert_eq!(v["versions"][0]["source"], "upload", "{v}");
    echo_call_completes(&sw, "the load");
    sw.assert_no_leaks();
}

#[test]
fn refused_requests_leave_the_running_version_serving() {
    // Uploads that reach validation count against uploads_per_minute: the
    // forbidden import and the two non-components are three.
    let sw = switch(
        6080,
        &[
            ("upload_max_mb = 16", "upload_max_mb = 1"),
            ("uploads_per_minute = 10", "uploads_per_minute = 3"),
        ],
    );
    let v0 = active(&sw);
    let listed = versions(&sw);
    let unchanged = |after: &str| {
        let v = versions(&sw);
        assert_eq!(v, listed, "after {after}");
        echo_call_completes(&sw, after);
    };
    let good = component("versioned_dialplan.wasm");
    let path = dialplan_path(TENANT);

    // No token.
    let r = request(&sw, "POST", &path, None, &good);
    assert_eq!(r.status, 401, "{}", r.show());
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{}", r.show());
    assert!(r.json()["error"].is_string(), "{}", r.show());
    let r = request(&sw, "GET", &path, None, b"");
    assert_eq!(r.status, 401, "{}", r.show());
    unchanged("an upload without a token");

    // A wrong token, on every route.
    for (method, p, body) in [
        ("POST", path.clone(), &good[..]),
        ("GET", path.clone(), &b""[..]),
        ("POST", format!("{path}/activate"), &b""[..]),
        ("POST", format!("{path}/rollback"), &b""[..]),
    ] {
        let r = request(&sw, method, &p, Some("not-the-token"), body);
        assert_eq!(r.status, 403, "{method} {p}: {}", r.show());
    }
    unchanged("an upload with a wrong token");

    // The right token for another tenant, one that does not exist: 403, as
    // a wrong token (no tenant enumeration).
    for tenant in ["no-such-tenant.example", "dialtone.local.example"] {
        let r = request(&sw, "POST", &dialplan_path(tenant), Some(TOKEN), &good);
        assert_eq!(r.status, 403, "{tenant}: {}", r.show());
        let r = request(&sw, "GET", &dialplan_path(tenant), Some(TOKEN), b"");
        assert_eq!(r.status, 403, "{tenant}: {}", r.show());
    }
    unchanged("an upload for an unknown tenant");

    // Over upload_max_mb (1 MiB): a valid component of 12 MB, refused
    // before its body is read.
    let big = component("default_dialplan_js.wasm");
    assert!(big.len() > 1 << 20);
    let r = upload(&sw, "", &big);
    assert_eq!(r.status, 413, "{}", r.show());
    // One byte over the limit, too.
    let r = upload(&sw, "", &vec![0u8; (1 << 20) + 1]);
    assert_eq!(r.status, 413, "{}", r.show());
    unchanged("an oversized upload");

    // A component importing an interface the switch does not provide.
    let forbidden = "wasi:http/outgoing-handler@0.2.0";
    let r = upload(&sw, "", &component_importing(forbidden));
    assert_eq!(r.status, 422, "{}", r.show());
    let e = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains(forbidden), "error does not name the import: {e}");
    unchanged("an upload with a forbidden import");

    // Not components: a core module, a shell script.
    for (what, bytes) in [
        ("a core module", b"\0asm\x01\0\0\0".to_vec()),
        ("a shell script", b"#!/bin/sh\necho hi\n".to_vec()),
    ] {
        let r = upload(&sw, "", &bytes);
        assert_eq!(r.status, 422, "{what}: {}", r.show());
        let e = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(e.contains("not a valid dialplan component"), "{what}: {e}");
        unchanged(what);
    }

    // A fourth upload within the minute: 429, even for a valid component.
    let r = upload(&sw, "", &good);
    assert_eq!(r.status, 429, "{}", r.show());
    let retry = r.header("retry-after").unwrap_or_default();
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After {retry:?}: {}",
        r.show()
    );
    unchanged("too many uploads");
    assert_eq!(active(&sw), v0);

    // Nothing staged either.
    let r = request(&sw, "POST", &format!("{path}/activate"), Some(TOKEN), b"");
    assert_eq!(r.status, 409, "{}", r.show());
    assert_eq!(active(&sw), v0);
}

#[test]
fn a_staged_upload_is_activated_then_rolled_back() {
    let sw = switch(6090, &[]);
    let path = dialplan_path(TENANT);
    let v0 = active(&sw);
    assert_eq!(esl_versions(&sw), [(true, v0.clone())]);
    // The default dialplan answers 9196.
    echo_call_completes(&sw, "start");

    // Staged: validated and dry-run, not serving.
    let r = upload(&sw, "?activate=0", &component("versioned_dialplan.wasm"));
    assert_eq!(r.status, 201, "{}", r.show());
    let j = r.json();
    let v1 = j["staged"]
        .as_str()
        .unwrap_or_else(|| panic!("no staged version: {j}"))
        .to_string();
    assert_ne!(v1, v0);
    assert!(j.get("active").is_none_or(Value::is_null), "{j}");
    // The dry run's actions: set dialplan_version, hang up.
    assert!(j["dry_run"].to_string().contains("dialplan_version"), "{j}");
    let v = versions(&sw);
    assert_eq!(v["active"], v0.as_str(), "{v}");
    assert_eq!(v["staged"], v1.as_str(), "{v}");
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "{v}");
    echo_call_completes(&sw, "staging");
    // Both calls so far were routed by the running version.
    for c in wait_for_cdrs(&sw, "9196", 2) {
        assert_eq!(c["dialplan_version"], v0.as_str(), "{}", short(&c));
        assert!(c["answer_us"].is_u64(), "{}", short(&c));
    }

    // Activated: the versioned dialplan sets dialplan_version and hangs up
    // every call, so 9196 is no longer answered.
    let r = request(&sw, "POST", &format!("{path}/activate"), Some(TOKEN), b"");
    assert_eq!(r.status, 200, "{}", r.show());
    assert_eq!(r.json()["active"], v1.as_str(), "{}", r.show());
    let v = versions(&sw);
    assert_eq!(v["active"], v1.as_str(), "{v}");
    assert!(v["staged"].is_null(), "{v}");
    assert_eq!(esl_versions(&sw), [(true, v1.clone()), (false, v0.clone())]);
    let before = cdrs_to(&sw, "9196").len();
    let (rc, out) = call(&sw, "9196", &[]);
    assert_ne!(rc, 0, "9196 answered by the versioned dialplan:\n{out}");
    let c = wait_for_cdrs(&sw, "9196", before + 1);
    let last = c.last().unwrap();
    assert_eq!(last["dialplan_version"], "0000000001", "{}", short(last));
    assert!(last["answer_us"].is_null(), "{}", short(last));
    // Nothing is staged any more.
    let r = request(&sw, "POST", &format!("{path}/activate"), Some(TOKEN), b"");
    assert_eq!(r.status, 409, "{}", r.show());

    // Rolled back: the default dialplan again.
    let r = request(&sw, "POST", &format!("{path}/rollback"), Some(TOKEN), b"");
    assert_eq!(r.status, 200, "{}", r.show());
    assert_eq!(r.json()["active"], v0.as_str(), "{}", r.show());
    assert_eq!(active(&sw), v0);
    assert_eq!(esl_versions(&sw).first(), Some(&(true, v0.clone())));
    let before = cdrs_to(&sw, "9196").len();
    echo_call_completes(&sw, "the rollback");
    let c = wait_for_cdrs(&sw, "9196", before + 1);
    let last = c.last().unwrap();
    assert_eq!(last["dialplan_version"], v0.as_str(), "{}", short(last));

    // The event socket rolls back too: stage and activate again, then
    // `dialplan rollback` over ESL.
    let r = upload(&sw, "", &component("versioned_dialplan.wasm"));
    assert_eq!(r.status, 201, "{}", r.show());
    let v2 = r.json()["active"].as_str().unwrap().to_string();
    assert_eq!(r.json()["previous"], v0.as_str(), "{}", r.show());
    let said = ctl(&sw, &format!("dialplan rollback {TENANT}"));
    assert_eq!(said.trim(), format!("+OK {v0}"), "{said}");
    let v = versions(&sw);
    assert_eq!(v["active"], v0.as_str(), "{v}");
    assert_ne!(v["active"], v2.as_str(), "{v}");
    echo_call_completes(&sw, "the rollback over ESL");
}

#[test]
fn a_component_failing_its_dry_run_is_refused() {
    let sw = switch(6080, &[]);
    let v0 = active(&sw);
    let listed = versions(&sw);
    let hostile = component("hostile_dialplan.wasm");
    // `panic` traps; `loop` spins until the sandbox's deadline; `oom`
    // allocates until the memory limit.
    for destination in ["panic", "loop", "oom"] {
        for query in [
            format!("?destination={destination}"),
            format!("?activate=0&destination={destination}"),
        ] {
            let r = upload(&sw, &query, &hostile);
            assert_eq!(r.status, 422, "{query}: {}", r.show());
            let e = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(e.contains("routing dry run failed"), "{query}: {e}");
            assert_eq!(versions(&sw), listed, "after {query}");
        }
        echo_call_completes(&sw, &format!("a dry run of {destination}"));
    }
    assert_eq!(active(&sw), v0);
    // The same component passes a dry run it survives (destination 1000
    // by default): staged, not served.
    let r = upload(&sw, "?activate=0", &hostile);
    assert_eq!(r.status, 201, "{}", r.show());
    assert!(r.json()["staged"].is_string(), "{}", r.show());
    assert_eq!(active(&sw), v0);
    echo_call_completes(&sw, "staging the hostile component");
}
