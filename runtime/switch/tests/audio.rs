//! Audio end to end: two baresip softphones call each other through the
//! switch, and each must hear the other's tone.
//!
//! The switch runs `dialtone run` on a copy of the default configuration
//! with its own SIP ports (internal 5500, external 5501), RTP range
//! 22400-22599 and state directory. Phone A (user 1000, SIP 5520, sends a
//! 440 Hz tone) and phone B (user 1001, SIP 5530, sends 1000 Hz, answers by
//! itself) register with digest auth to the internal profile; A dials
//! `sip:1001@dialtone.local`, the dialplan bridges to B's registration and
//! the switch anchors the media (one RTP port per leg, packets relayed).
//! Checked: the tone each phone decoded (baresip's sndfile dumps, measured by
//! `tests/sip/tone_freq.py`), the RTP streams on loopback (tshark: four
//! streams, at least 95 % of each phone's packets relayed to the other) and
//! that the switch's RTP sockets are released after the hang-up.
//!
//! The same pair runs again over TLS: the test makes a CA and a server
//! certificate for 127.0.0.1 with the openssl CLI, the switch's internal
//! profile serves it on its TLS port, and both phones register and call
//! with `;transport=tls`, given that CA (`sip_cafile`). baresip 1.0 (libre)
//! does not enforce server verification (it registers with a wrong CA too),
//! so the test checks the certificate itself: `openssl s_client` must
//! verify what the switch's TLS port serves against the test's CA for
//! 127.0.0.1. Checked on top: baresip's registration went over TLS, and
//! during the call each phone has its one TLS connection to the switch (the
//! switch reached B over the connection B opened).
//!
//! A call to `9178` (answer, record both sides, echo) leaves a stereo WAV
//! in the switch's recordings directory with the caller's tone on the left
//! and its echo on the right.
//!
//! A third run has B speak only PCMA while A speaks only PCMU: the switch
//! offers B the codecs it can convert to, answers A in A's own codec, and
//! the relay transcodes each packet; each phone must still hear the other's
//! tone within 2 %, and tshark must see PCMU on A's side and PCMA on B's.
//!
//! A call to `*71001` plays the tenant's `announce.wav` (a known 2 s tone
//! at 16 kHz the test puts there) to B when B answers, then bridges: B
//! must decode the tone for 2 s (within 10 %) at its frequency (within
//! 2 %), then A's tone; A never hears the announcement.
//!
//! Needs baresip, sox, tshark, openssl and python3
//! (`scripts/install-peers.sh`), and the right to capture on `lo` (root or
//! CAP_NET_RAW). The two tests take turns: each relays two phones' audio on
//! a two-core machine.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sip_dir() -> PathBuf {
    repo().join("tests/sip")
}

/// A running switch on its own ports.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    /// Sends `signal` to the process and waits (at most `within`) for it to
    /// exit; true when it did.
    fn stop(&mut self, signal: &str, within: Duration) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        self.wait_exit(within)
    }

    /// Waits (at most `within`) for the process to exit by itself.
    fn wait_exit(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        loop {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.stop("TERM", Duration::from_secs(5)) {
            eprintln!("{} (pid {}) ignored SIGTERM", self.name, self.child.id());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The test's work folder (tones, phone folders, capture): removed on
/// success, kept for inspection when the test fails.
struct Work(Option<tempfile::TempDir>);

impl Work {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                eprintln!("work folder kept: {}", d.keep().display());
            }
        }
    }
}

/// Fails loudly when a peer tool is not on PATH.
fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = ["baresip", "sox", "tshark", "python3", "ss", "openssl"]
        .into_iter()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {}: run scripts/install-peers.sh",
        missing.join(", ")
    );
}

/// Runs a command to completion; panics with its output when it fails.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (run scripts/install-peers.sh)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed: {text}");
    text
}

fn sox_tone(path: &Path, hz: u32, seconds: u32) {
    run(
        Command::new("sox")
            .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
            .arg(path)
            .args([
                "synth",
                &seconds.to_string(),
                "sine",
                &hz.to_string(),
                "vol",
                "0.5",
            ]),
        "sox",
    );
}

/// One baresip softphone: its folder, ctrl_tcp port, RTP range and process.
struct Phone {
    name: &'static str,
    dir: PathBuf,
    ctrl_port: u16,
    rtp: (u16, u16),
    proc_: Proc,
}

impl Phone {
    /// Renders the config from `tests/sip/baresip/` and starts baresip,
    /// which quits by itself after `life` seconds.
    #[allow(clippy::too_many_arguments)]
    fn start(
        name: &'static str,
        work: &Path,
        sip_port: u16,
        rtp: (u16, u16),
        ctrl_port: u16,
        source: &Path,
        account: &str,
        life: u32,
        extra_config: Option<&str>,
    ) -> Phone {
        let dir = work.join(name);
        run(
            Command::new(sip_dir().join("baresip/render.sh"))
                .arg(&dir)
                .arg(sip_port.to_string())
                .arg(rtp.0.to_string())
                .arg(rtp.1.to_string())
                .arg(ctrl_port.to_string())
                .arg(source)
                .arg(account),
            "tests/sip/baresip/render.sh",
        );
        if let Some(extra) = extra_config {
            let config = dir.join("config");
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("{text}{extra}")).unwrap();
        }
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .arg("-t")
            .arg(life.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip: run scripts/install-peers.sh");
        Phone {
            name,
            dir,
            ctrl_port,
            rtp,
            proc_: Proc {
                name: "baresip",
                child,
            },
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Waits (at most 20 s) until baresip logs the 200 OK to its REGISTER
    /// over `transport` (`UDP`, `TLS`).
    fn wait_registered(&mut self, aor: &str, transport: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        let ok = format!("{aor}: {{0/{transport}/v4}} 200 OK");
        loop {
            let log = self.log();
            if log.contains(&ok) {
                return;
            }
            if let Ok(Some(st)) = self.proc_.child.try_wait() {
                panic!(
                    "baresip {} exited ({st}) before registering:\n{log}",
                    self.name
                );
            }
            assert!(
                Instant::now() < end,
                "baresip {} did not register as {aor} over {transport} within 20 s:\n{log}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The one `dump-*-dec.wav` sndfile wrote (what this phone decoded).
    fn decoded(&self) -> PathBuf {
        let snd = self.dir.join("snd");
        let mut dec: Vec<PathBuf> = std::fs::read_dir(&snd)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        dec.sort();
        assert_eq!(
            dec.len(),
            1,
            "phone {}: want one decoded-audio file in {}, found {dec:?}",
            self.name,
            snd.display()
        );
        dec.pop().unwrap()
    }
}

/// A ctrl_tcp connection to baresip: netstring-framed JSON both ways. Every
/// connected client gets every event, so one connection per phone, opened
/// before the call, sees the whole call.
struct Ctrl {
    name: &'static str,
    sock: TcpStream,
    buf: Vec<u8>,
    seen: Vec<serde_json::Value>,
    token: u32,
}

impl Ctrl {
    fn connect(name: &'static str, port: u16) -> Ctrl {
        let end = Instant::now() + Duration::from_secs(10);
        let sock = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        Instant::now() < end,
                        "ctrl_tcp of baresip {name} on {port}: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        Ctrl {
            name,
            sock,
            buf: Vec::new(),
            seen: Vec::new(),
            token: 0,
        }
    }

    /// Sends a command and waits (at most 5 s) for its response.
    fn command(&mut self, command: &str, params: &str) -> serde_json::Value {
        self.token += 1;
        let token = format!("t{}", self.token);
        let msg =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        self.sock
            .write_all(format!("{}:{msg},", msg.len()).as_bytes())
            .unwrap();
        self.wait(Duration::from_secs(5), |m| {
            m["response"] == true && m["token"] == token.as_str()
        })
        .unwrap_or_else(|| panic!("baresip {}: no response to {command}", self.name))
    }

    /// Waits (at most `within`) for an event of type `kind`.
    fn wait_event(&mut self, kind: &str, within: Duration) -> Option<serde_json::Value> {
        self.wait(within, |m| m["event"] == true && m["type"] == kind)
    }

    /// Messages so far (seen or new) until `pred` holds; consumed on a hit.
    fn wait(
        &mut self,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        if let Some(i) = self.seen.iter().position(&pred) {
            return Some(self.seen.remove(i));
        }
        let end = Instant::now() + within;
        let mut chunk = [0u8; 8192];
        loop {
            // Complete netstrings first.
            while let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let n: usize = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or_else(|| panic!("bad netstring from baresip {}", self.name));
                if self.buf.len() < colon + 1 + n + 1 {
                    break;
                }
                let m: serde_json::Value =
                    serde_json::from_slice(&self.buf[colon + 1..colon + 1 + n]).unwrap();
                self.buf.drain(..colon + 1 + n + 1);
                eprintln!("baresip {}: {m}", self.name);
                if pred(&m) {
                    return Some(m);
                }
                self.seen.push(m);
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            self.sock
                .set_read_timeout(Some((end - now).max(Duration::from_millis(10))))
                .unwrap();
            match self.sock.read(&mut chunk) {
                Ok(0) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }
}

/// One RTP stream from `tshark -z rtp,streams`.
#[derive(Debug)]
struct Stream {
    src_port: u16,
    dst_port: u16,
    ssrc: String,
    /// tshark's payload name (`g711U`, `g711A`, ...).
    payload: String,
    packets: u64,
    lost: String,
}

/// Parses `tshark -q -z rtp,streams` output. A data line: start end src
/// sport dst dport ssrc payload... pkts lost (pct%) ...
fn parse_streams(out: &str) -> Vec<Stream> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || !f[6].starts_with("0x") || f[2].parse::<std::net::IpAddr>().is_err()
            {
                return None;
            }
            let pct = (8..f.len()).find(|&i| f[i].starts_with('(') && f[i].ends_with("%)"))?;
            Some(Stream {
                src_port: f[3].parse().ok()?,
                dst_port: f[5].parse().ok()?,
                ssrc: f[6].to_string(),
                payload: f[7].to_string(),
                packets: f[pct - 2].parse().ok()?,
                lost: f[pct - 1].to_string(),
            })
        })
        .collect()
}

/// Measures the dominant frequency of `wav` (middle half) with
/// tone_freq.py; panics unless it is `hz` within 2 %.
fn assert_tone(wav: &Path, hz: u32, who: &str) -> String {
    let out = Command::new("python3")
        .arg(sip_dir().join("tone_freq.py"))
        .arg(wav)
        .args(["--expect", &hz.to_string(), "--tolerance", "0.02"])
        .output()
        .expect("python3: run scripts/install-peers.sh");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{who} decoded {text:?} (want {hz} Hz within 2 %; exit {:?}) in {}: {}",
        out.status.code(),
        wav.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// One run's ports: the switch's base SIP port and RTP range start, and
/// each phone's SIP port, RTP range and ctrl_tcp port.
struct Ports {
    /// B's only codec (A's is PCMU): `PCMA` makes the switch transcode.
    b_codec: &'static str,
    switch: u16,
    switch_rtp: u16,
    a: (u16, (u16, u16), u16),
    b: (u16, (u16, u16), u16),
}

/// The audio tests take turns (see the module docs).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A CA and a server certificate for 127.0.0.1 and localhost, made with
/// the openssl CLI: (ca.crt, server.crt, server.key).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca_key, ca) = (dir.join("ca.key"), dir.join("ca.crt"));
    let (key, csr, cert) = (
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("server.crt"),
    );
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=Dialtone test CA", "-keyout"])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca),
        "openssl req (CA)",
    );
    run(
        Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        "openssl req (server)",
    );
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
        "openssl x509 (sign)",
    );
    (ca, cert, key)
}

/// Established TCP connections that process `pid` holds to `switch_port`.
fn connections_to(switch_port: u16, pid: u32) -> usize {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .output()
        .expect("ss (iproute2)");
    let pid = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&pid))
        .filter(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|peer| peer.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
                == Some(switch_port)
        })
        .count()
}

#[test]
fn two_baresip_phones_call_through_the_switch_with_audio_both_ways() {
    audio_call(
        false,
        Ports {
            b_codec: "PCMU",
            switch: 5500,
            switch_rtp: 22400,
            a: (5520, (22700, 22710), 5524),
            b: (5530, (22720, 22730), 5534),
        },
    );
}

#[test]
fn the_same_call_over_tls_with_a_certificate_the_test_makes() {
    audio_call(
        true,
        Ports {
            b_codec: "PCMU",
            switch: 5540,
            switch_rtp: 23000,
            a: (5560, (23300, 23310), 5564),
            b: (5570, (23320, 23330), 5574),
        },
    );
}

#[test]
fn a_pcmu_phone_and_a_pcma_phone_hear_each_other_through_transcoding() {
    audio_call(
        false,
        Ports {
            b_codec: "PCMA",
            switch: 5580,
            switch_rtp: 26000,
            a: (5590, (26300, 26310), 5594),
            b: (5596, (26320, 26330), 5599),
        },
    );
}

fn audio_call(tls: bool, ports: Ports) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    require_tools();
    let t0 = Instant::now();
    let work = Work(Some(tempfile::tempdir().unwrap()));
    let w = work.path();
    let certs = tls.then(|| make_certificates(w));
    let sw = match &certs {
        None => Running::start(ports.switch, ports.switch_rtp),
        Some((_, cert, key)) => {
            let cert_line = format!("tls_cert = {:?}", cert.display().to_string());
            let key_line = format!("tls_key = {:?}", key.display().to_string());
            Running::start_edited(
                tempfile::tempdir().unwrap(),
                ports.switch,
                ports.switch_rtp,
                "",
                "",
                &[
                    ("# tls_cert = \"tls/internal.crt\"", &cert_line),
                    ("# tls_key = \"tls/internal.key\"", &key_line),
                ],
            )
        }
    };
    if let Some((ca, _, _)) = &certs {
        // The switch serves the test's certificate, valid for 127.0.0.1.
        let out = run(
            Command::new("openssl")
                .args(["s_client", "-connect"])
                .arg(format!("127.0.0.1:{}", sw.internal_tls))
                .arg("-CAfile")
                .arg(ca)
                .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
                .stdin(Stdio::null()),
            "openssl s_client against the switch's TLS port",
        );
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "the switch's certificate does not verify against the test CA:\n{out}"
        );
    }
    let (tone_a, tone_b) = (w.join("tone440.wav"), w.join("tone1000.wav"));
    sox_tone(&tone_a, 440, 20);
    sox_tone(&tone_b, 1000, 20);

    let (transport, proxy_port) = if tls {
        ("tls", sw.internal_tls)
    } else {
        ("udp", sw.internal)
    };
    let outbound = format!("outbound=\"sip:127.0.0.1:{proxy_port};transport={transport}\"");
    let acct = |user: &str, codec: &str, extra: &str| {
        let aor_params = if tls { ";transport=tls" } else { "" };
        format!(
            "<sip:{user}@dialtone.local{aor_params}>;auth_user={user};auth_pass=1234;{outbound};\
             regint=60;audio_codecs={codec}{extra}"
        )
    };
    // The phones trust the test's CA for the switch's certificate.
    let ca_line = certs
        .as_ref()
        .map(|(ca, _, _)| format!("sip_cafile\t\t{}\n", ca.display()));
    // -t 40: every baresip quits by itself at the latest 40 s after start.
    let mut b = Phone::start(
        "b",
        w,
        ports.b.0,
        ports.b.1,
        ports.b.2,
        &tone_b,
        &acct("1001", ports.b_codec, ";answermode=auto"),
        40,
        ca_line.as_deref(),
    );
    let mut a = Phone::start(
        "a",
        w,
        ports.a.0,
        ports.a.1,
        ports.a.2,
        &tone_a,
        &acct("1000", "PCMU", ""),
        40,
        ca_line.as_deref(),
    );
    let via = transport.to_ascii_uppercase();
    b.wait_registered("1001@dialtone.local", &via);
    a.wait_registered("1000@dialtone.local", &via);
    eprintln!("both phones registered over {via} after {:?}", t0.elapsed());

    // Capture the legs' RTP on loopback: every packet to or from the
    // switch's range (-a duration bounds it; SIGINT ends it earlier).
    let pcap = w.join("rtp.pcapng");
    let tshark_log = w.join("tshark.log");
    let mut tshark = Proc {
        name: "tshark",
        child: Command::new("tshark")
            .args(["-i", "lo", "-f"])
            .arg(format!("udp portrange {}-{}", sw.rtp.0, sw.rtp.1))
            .args(["-a", "duration:60", "-q", "-w"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&tshark_log).unwrap())
            .spawn()
            .expect("tshark: run scripts/install-peers.sh"),
    };
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(&tshark_log).unwrap_or_default();
        if log.contains("Capturing on") {
            break;
        }
        if let Ok(Some(st)) = tshark.child.try_wait() {
            panic!("tshark exited ({st}) (needs root or CAP_NET_RAW on lo):\n{log}");
        }
        assert!(
            Instant::now() < end,
            "tshark did not start capturing:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut ctrl_b = Ctrl::connect("b", b.ctrl_port);
    let mut ctrl_a = Ctrl::connect("a", a.ctrl_port);
    let r = ctrl_a.command("dial", "sip:1001@dialtone.local");
    assert_eq!(r["ok"], true, "dial refused: {r}");
    let established_a = ctrl_a.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    let established_b = ctrl_b.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    assert!(
        established_a.is_some() && established_b.is_some(),
        "call not established (A: {established_a:?}, B: {established_b:?})\n\
         A's log:\n{}\nB's log:\n{}\nswitch:\n{}",
        a.log(),
        b.log(),
        sw.log_tail()
    );
    eprintln!("call established after {:?}", t0.elapsed());
    if tls {
        // Each phone talks to the switch over the one TLS connection it
        // opened to register: B's INVITE came down B's own connection.
        for (who, p) in [("A", &a), ("B", &b)] {
            let n = connections_to(sw.internal_tls, p.proc_.child.id());
            assert_eq!(
                n,
                1,
                "phone {who}: {n} TLS connections to the switch during the call\nswitch:\n{}",
                sw.log_tail()
            );
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let during = sw.rtp_sockets();
    std::thread::sleep(Duration::from_secs(3));

    let r = ctrl_a.command("hangup", "");
    assert_eq!(r["ok"], true, "hangup refused: {r}");
    let closed_a = ctrl_a.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let closed_b = ctrl_b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert!(
        closed_a.is_some() && closed_b.is_some(),
        "hang-up not seen (A: {closed_a:?}, B: {closed_b:?})\nswitch:\n{}",
        sw.log_tail()
    );
    eprintln!("call closed on both phones after {:?}", t0.elapsed());

    // Let both phones quit so that sndfile closes its WAV files, and end the
    // capture.
    for (c, p) in [(&mut ctrl_a, &mut a), (&mut ctrl_b, &mut b)] {
        let _ = c.command("quit", "");
        if !p.proc_.wait_exit(Duration::from_secs(10)) {
            p.proc_.stop("TERM", Duration::from_secs(5));
        }
    }
    assert!(
        tshark.stop("INT", Duration::from_secs(10)),
        "tshark did not stop on SIGINT"
    );

    // RTP: A→switch, switch→B, B→switch, switch→A, each relayed in full.
    let out = run(
        // Decoded as RTP by port too: heuristics alone lose to dissectors
        // that own a port (tshark reads UDP 26000 as Quake).
        Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .arg("-d")
            .arg(format!("udp.port=={}-{},rtp", sw.rtp.0, sw.rtp.1))
            .args(["-o", "rtp.heuristic_rtp:TRUE", "-q", "-z", "rtp,streams"]),
        "tshark -z rtp,streams",
    );
    let streams = parse_streams(&out);
    eprintln!("{out}");
    let in_sw = |p: u16| (sw.rtp.0..=sw.rtp.1).contains(&p);
    let in_range = |p: u16, r: (u16, u16)| (r.0..=r.1).contains(&p);
    let find = |what: &str, pred: &dyn Fn(&Stream) -> bool| -> &Stream {
        let hits: Vec<&Stream> = streams.iter().filter(|s| pred(s)).collect();
        assert_eq!(hits.len(), 1, "want one {what} stream, got {hits:?}\n{out}");
        hits[0]
    };
    let a_sw = find("A→switch", &|s| {
        in_range(s.src_port, a.rtp) && in_sw(s.dst_port)
    });
    let sw_b = find("switch→B", &|s| {
        in_sw(s.src_port) && in_range(s.dst_port, b.rtp)
    });
    let b_sw = find("B→switch", &|s| {
        in_range(s.src_port, b.rtp) && in_sw(s.dst_port)
    });
    let sw_a = find("switch→A", &|s| {
        in_sw(s.src_port) && in_range(s.dst_port, a.rtp)
    });
    assert_eq!(streams.len(), 4, "want 4 RTP streams:\n{out}");
    // Each phone sends and receives its own codec; with B on PCMA the
    // switch converts both ways.
    let b_payload = if ports.b_codec == "PCMA" {
        "g711A"
    } else {
        "g711U"
    };
    for (st, want) in [
        (a_sw, "g711U"),
        (sw_a, "g711U"),
        (b_sw, b_payload),
        (sw_b, b_payload),
    ] {
        assert_eq!(st.payload, want, "{st:?}\n{out}");
    }
    for (from, to, what) in [(a_sw, sw_b, "A→B"), (b_sw, sw_a, "B→A")] {
        // 50 packets/s: about 5 s of talk, give or take setup.
        assert!(from.packets >= 150, "{what}: only {from:?} sent\n{out}");
        assert!(
            to.packets * 100 >= from.packets * 95,
            "{what}: {} packets sent to the switch, {} relayed\n{out}",
            from.packets,
            to.packets
        );
    }
    // Audio: each phone decoded the other one's tone.
    let heard_b = assert_tone(&b.decoded(), 440, "B (1001)");
    let heard_a = assert_tone(&a.decoded(), 1000, "A (1000)");
    eprintln!("B decoded {heard_b} Hz, A decoded {heard_a} Hz");

    eprintln!(
        "RTP {} sockets during the call; A→sw {} ({}), sw→B {} ({}), B→sw {} ({}), sw→A {} ({})",
        during,
        a_sw.packets,
        a_sw.ssrc,
        sw_b.packets,
        sw_b.lost,
        b_sw.packets,
        b_sw.ssrc,
        sw_a.packets,
        sw_a.lost
    );
    assert!(
        during >= 2,
        "the switch held {during} RTP sockets during the call"
    );

    // The switch lets go of the legs' ports.
    sw.assert_no_leaks();
    drop(a);
    drop(b);
    eprintln!("done after {:?}", t0.elapsed());
}

/// `9178` in the default dialplan: answer, record both sides, echo. A
/// baresip phone sends a 440 Hz tone for a few seconds; the switch's WAV
/// must hold it on the left (the caller) and its echo on the right (what
/// the caller hears), as stereo 8 kHz.
#[test]
fn a_call_to_9178_is_recorded_in_stereo_on_the_switch() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    require_tools();
    let work = Work(Some(tempfile::tempdir().unwrap()));
    let w = work.path();
    let sw = Running::start(5610, 26400);
    let tone = w.join("tone440.wav");
    sox_tone(&tone, 440, 20);
    let outbound = format!("outbound=\"sip:127.0.0.1:{};transport=udp\"", sw.internal);
    let account = format!(
        "<sip:1000@dialtone.local>;auth_user=1000;auth_pass=1234;{outbound};regint=60;audio_codecs=PCMU"
    );
    let mut a = Phone::start(
        "a",
        w,
        5620,
        (26700, 26710),
        5624,
        &tone,
        &account,
        30,
        None,
    );
    a.wait_registered("1000@dialtone.local", "UDP");
    let mut ctrl = Ctrl::connect("a", a.ctrl_port);
    let r = ctrl.command("dial", "sip:9178@dialtone.local");
    assert_eq!(r["ok"], true, "dial refused: {r}");
    assert!(
        ctrl.wait_event("CALL_ESTABLISHED", Duration::from_secs(15))
            .is_some(),
        "call to 9178 not established\n{}\nswitch:\n{}",
        a.log(),
        sw.log_tail()
    );
    std::thread::sleep(Duration::from_secs(5));
    let r = ctrl.command("hangup", "");
    assert_eq!(r["ok"], true, "hangup refused: {r}");
    ctrl.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let _ = ctrl.command("quit", "");
    if !a.proc_.wait_exit(Duration::from_secs(10)) {
        a.proc_.stop("TERM", Duration::from_secs(5));
    }

    // The recording: var/recordings/<tenant>/9178-<uuid>.wav in the
    // switch's directory, completed when the call's media was released.
    let dir = sw._dir.path().join("var/recordings/dialtone.local");
    let mut wav = None;
    let end = Instant::now() + Duration::from_secs(10);
    while wav.is_none() && Instant::now() < end {
        wav = std::fs::read_dir(&dir).ok().and_then(|mut d| {
            d.find_map(|e| {
                let p = e.ok()?.path();
                let name = p.file_name()?.to_str()?.to_string();
                let done = std::fs::read(&p).ok().is_some_and(|b| {
                    b.len() > 44 && u32::from_le_bytes([b[40], b[41], b[42], b[43]]) > 0
                });
                (name.starts_with("9178-") && name.ends_with(".wav") && done).then_some(p)
            })
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    let wav = wav.unwrap_or_else(|| {
        panic!(
            "no completed recording in {}\nswitch:\n{}",
            dir.display(),
            sw.log_tail()
        )
    });
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2, "stereo");
    let seconds = (bytes.len() - 44) as f64 / 4.0 / 8000.0;
    assert!(
        (3.5..=7.0).contains(&seconds),
        "{seconds} s recorded of a ~5 s call"
    );
    let right = w.join("right.wav");
    run(
        Command::new("sox")
            .arg(&wav)
            .arg(&right)
            .args(["remix", "2"]),
        "sox remix",
    );
    let left = assert_tone(&wav, 440, "the recording's left channel (the caller)");
    let heard = assert_tone(&right, 440, "the recording's right channel (the echo)");
    eprintln!("recorded {seconds:.2} s: left {left} Hz, right {heard} Hz");
    sw.assert_no_leaks();
}

/// Start, length and frequency of the longest stretch of `hz` in `wav`
/// (`tests/sip/tone_span.py`).
fn tone_span(wav: &Path, hz: u32) -> (f64, f64, f64) {
    let out = run(
        Command::new("python3")
            .arg(sip_dir().join("tone_span.py"))
            .arg(wav)
            .arg(hz.to_string()),
        "tone_span.py",
    );
    let v: Vec<f64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(v.len(), 3, "tone_span.py said {out:?}");
    (v[0], v[1], v[2])
}

/// `*7` + extension in the default dialplan: the callee hears the
/// tenant's `announce.wav` when it answers, then the caller. The test puts
/// a known WAV there (2 s of 1200 Hz, 16 kHz mono, so the switch resamples
/// it), A (1000, 440 Hz) dials `*71001`, B (1001, 1000 Hz, answers by
/// itself) must decode 2 s of 1200 Hz (duration within 10 %, frequency
/// within 2 %) followed by A's 440 Hz; A (answered when B answers) never
/// hears the announcement and hears B once the media joins.
#[test]
fn a_wav_announcement_is_played_to_a_baresip_callee_before_the_bridge() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    require_tools();
    let work = Work(Some(tempfile::tempdir().unwrap()));
    let w = work.path();
    let sw = Running::start(5640, 26800);
    let sounds = sw._dir.path().join("conf/sounds/dialtone.local");
    std::fs::create_dir_all(&sounds).unwrap();
    run(
        Command::new("sox")
            .args(["-n", "-r", "16000", "-c", "1", "-b", "16"])
            .arg(sounds.join("announce.wav"))
            .args(["synth", "2", "sine", "1200", "vol", "0.5"]),
        "sox",
    );
    let (tone_a, tone_b) = (w.join("tone440.wav"), w.join("tone1000.wav"));
    sox_tone(&tone_a, 440, 30);
    sox_tone(&tone_b, 1000, 30);
    let outbound = format!("outbound=\"sip:127.0.0.1:{};transport=udp\"", sw.internal);
    let acct = |user: &str, extra: &str| {
        format!(
            "<sip:{user}@dialtone.local>;auth_user={user};auth_pass=1234;{outbound};\
             regint=60;audio_codecs=PCMU{extra}"
        )
    };
    let mut b = Phone::start(
        "b",
        w,
        5660,
        (26740, 26750),
        5664,
        &tone_b,
        &acct("1001", ";answermode=auto"),
        40,
        None,
    );
    let mut a = Phone::start(
        "a",
        w,
        5650,
        (26720, 26730),
        5654,
        &tone_a,
        &acct("1000", ""),
        40,
        None,
    );
    b.wait_registered("1001@dialtone.local", "UDP");
    a.wait_registered("1000@dialtone.local", "UDP");
    let mut ctrl_b = Ctrl::connect("b", b.ctrl_port);
    let mut ctrl_a = Ctrl::connect("a", a.ctrl_port);
    let r = ctrl_a.command("dial", "sip:*71001@dialtone.local");
    assert_eq!(r["ok"], true, "dial refused: {r}");
    let established_b = ctrl_b.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    let established_a = ctrl_a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    assert!(
        established_a.is_some() && established_b.is_some(),
        "call not established (A: {established_a:?}, B: {established_b:?})\n\
         A's log:\n{}\nB's log:\n{}\nswitch:\n{}",
        a.log(),
        b.log(),
        sw.log_tail()
    );
    // A is answered when B answers; B hears the announcement (2 s), then
    // both are bridged (about 3 s).
    std::thread::sleep(Duration::from_secs(5));
    let r = ctrl_a.command("hangup", "");
    assert_eq!(r["ok"], true, "hangup refused: {r}");
    ctrl_a.wait_event("CALL_CLOSED", Duration::from_secs(10));
    ctrl_b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    for (c, p) in [(&mut ctrl_a, &mut a), (&mut ctrl_b, &mut b)] {
        let _ = c.command("quit", "");
        if !p.proc_.wait_exit(Duration::from_secs(10)) {
            p.proc_.stop("TERM", Duration::from_secs(5));
        }
    }
    let (heard_b, heard_a) = (b.decoded(), a.decoded());
    let (start, secs, hz) = tone_span(&heard_b, 1200);
    eprintln!("B heard 1200 Hz from {start} s for {secs} s ({hz} Hz)");
    assert!(
        (1.8..=2.2).contains(&secs),
        "B heard the 2 s announcement for {secs} s\nswitch:\n{}",
        sw.log_tail()
    );
    assert!((hz - 1200.0).abs() <= 24.0, "announcement at {hz} Hz");
    let (a_start, a_secs, a_hz) = tone_span(&heard_b, 440);
    eprintln!("B heard 440 Hz from {a_start} s for {a_secs} s ({a_hz} Hz)");
    assert!(
        a_start >= start + secs - 0.1 && a_secs >= 2.0,
        "B should hear A (440 Hz) after the announcement: from {a_start} s for {a_secs} s"
    );
    assert!((a_hz - 440.0).abs() <= 8.8, "A's tone at B: {a_hz} Hz");
    let (_, leaked, _) = tone_span(&heard_a, 1200);
    assert!(
        leaked < 0.1,
        "A heard {leaked} s of the callee's announcement"
    );
    let (_, b_secs, b_hz) = tone_span(&heard_a, 1000);
    assert!(
        b_secs >= 2.0 && (b_hz - 1000.0).abs() <= 20.0,
        "A should hear B (1000 Hz) once bridged: {b_secs} s at {b_hz} Hz"
    );
    sw.assert_no_leaks();
}
