//! Media applications on real SIP calls: SIPp callers that authenticate on
//! the internal profile and play recorded RTP (`tests/sip/sipp/
//! uac_auth_pcap.xml`: an RFC 4733 digit, then 236 PCMA packets), with
//! tshark counting the packets on loopback independently of both ends.
//!
//! - `9196` (echo): every RTP packet the caller sends comes back,
//!   telephone-events included, and the digit is reported to the core.
//! - `5000` (the default dialplan's IVR): the caller presses `1` or `2` in
//!   RFC 4733; `collect` puts it in `ivr_choice` and the dialplan routes
//!   again: `1` transfers to the echo (the caller's own stream comes back),
//!   `2` to `9664`, the switch's tone (a stream of the switch's own, in
//!   the caller's codec, at the pace of the media clock).
//! - `9181` (ringback as early media): a 183 with the switch's SDP, one
//!   cadence of UK ringback on the caller's RTP port (counted and checked
//!   frame by frame by the test), then 480: never answered.
//!
//! Needs sipp and tshark (`scripts/install-peers.sh`) and the right to
//! capture on `lo`. The tests take turns.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn tool(name: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{name} is not installed: run scripts/install-peers.sh (the test command does)"
    );
}

/// tshark capturing the switch's RTP range on `lo` until stopped.
struct Capture {
    child: Child,
    file: PathBuf,
    rtp: (u16, u16),
}

impl Capture {
    fn start(dir: &Path, rtp: (u16, u16)) -> Capture {
        let file = dir.join("rtp.pcapng");
        let log = dir.join("tshark.log");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-f"])
            .arg(format!("udp portrange {}-{}", rtp.0, rtp.1))
            .args(["-a", "duration:60", "-q", "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("tshark");
        let mut c = Capture { child, file, rtp };
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Capturing on") {
                return c;
            }
            if let Ok(Some(st)) = c.child.try_wait() {
                panic!("tshark exited ({st}) (needs root or CAP_NET_RAW on lo):\n{text}");
            }
            assert!(Instant::now() < end, "tshark did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the capture and lists its RTP packets.
    fn packets(mut self) -> Vec<Packet> {
        // tshark writes what it buffered on SIGINT.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(Instant::now() < end, "tshark did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .arg("-d")
            .arg(format!("udp.port=={}-{},rtp", self.rtp.0, self.rtp.1))
            .args([
                "-o",
                "rtp.heuristic_rtp:TRUE",
                "-Y",
                "rtp",
                "-T",
                "fields",
                "-e",
                "udp.srcport",
                "-e",
                "udp.dstport",
                "-e",
                "rtp.p_type",
                "-e",
                "rtp.ssrc",
                "-e",
                "rtp.seq",
            ])
            .output()
            .expect("tshark -r");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Some(Packet {
                    src: f.first()?.parse().ok()?,
                    dst: f.get(1)?.parse().ok()?,
                    pt: f.get(2)?.parse().ok()?,
                    ssrc: f.get(3)?.to_string(),
                    seq: f.get(4)?.parse().ok()?,
                })
            })
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Packet {
    src: u16,
    dst: u16,
    pt: u8,
    ssrc: String,
    seq: u16,
}

/// Runs uac_auth_pcap.xml against the switch's internal profile: user 1000
/// dials `dest`, presses `digit`, plays 7 s of PCMA. Returns SIPp's exit
/// code and output.
fn call(
    sw: &Running,
    work: &Path,
    dest: &str,
    digit: char,
    sip_port: u16,
    media_port: u16,
) -> (i32, String) {
    let pcap = work.join("pcap");
    let _ = std::fs::remove_dir_all(&pcap);
    std::fs::create_dir_all(&pcap).unwrap();
    let dir = Path::new("/usr/share/sip-tester");
    std::os::unix::fs::symlink(dir.join("g711a.pcap"), pcap.join("g711a.pcap")).unwrap();
    std::os::unix::fs::symlink(
        dir.join(format!("dtmf_2833_{digit}.pcap")),
        pcap.join("dtmf.pcap"),
    )
    .unwrap();
    let out = Command::new("timeout")
        .arg("60")
        .arg("sipp")
        .arg("-sf")
        .arg(repo().join("tests/sip/sipp/uac_auth_pcap.xml"))
        .arg(format!("127.0.0.1:{}", sw.internal))
        .args(["-i", "127.0.0.1", "-p", &sip_port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
        .args([
            "-s",
            dest,
            "-key",
            "caller",
            "1000",
            "-key",
            "domain",
            "dialtone.local",
        ])
        .args(["-au", "1000", "-ap", "1234", "-auth_uri"])
        .arg(format!("{dest}@127.0.0.1:{}", sw.internal))
        .args([
            "-m",
            "1",
            "-nostdin",
            "-recv_timeout",
            "20000",
            "-timeout",
            "40s",
            "-timeout_error",
        ])
        .current_dir(work)
        .output()
        .expect("sipp");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn setup() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir) {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    tool("sipp");
    tool("tshark");
    assert!(
        Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap").exists(),
        "SIPp's pcap files are missing: run scripts/install-peers.sh"
    );
    (turn, tempfile::tempdir().unwrap())
}

#[test]
fn echo_returns_every_rtp_packet_and_reports_the_digit() {
    let (_turn, work) = setup();
    let mut sw = Running::start(5900, 25000);
    let cap = Capture::start(work.path(), sw.rtp);
    let (rc, out) = call(&sw, work.path(), "9196", '1', 5910, 25300);
    let packets = cap.packets();
    assert_eq!(rc, 0, "sipp failed:\n{out}\nswitch:\n{}", sw.log_tail());
    sw.wait_for("DTMF received");
    // The caller's media port is 25300 (outside the switch's range, so the
    // capture sees it only as the other end).
    let sent: Vec<&Packet> = packets.iter().filter(|p| p.src == 25300).collect();
    let back: Vec<&Packet> = packets.iter().filter(|p| p.dst == 25300).collect();
    let count = |v: &[&Packet], pt: u8| v.iter().filter(|p| p.pt == pt).count();
    assert_eq!(count(&sent, 8), 236, "PCMA sent: {sent:?}");
    assert_eq!(count(&sent, 101), 10, "telephone-events sent");
    assert_eq!(count(&back, 8), 236, "every PCMA packet echoed");
    assert_eq!(count(&back, 101), 10, "every telephone-event echoed");
    // Echoed unchanged: same SSRC and sequence numbers, in order.
    let key = |v: &[&Packet]| {
        v.iter()
            .map(|p| (p.ssrc.clone(), p.seq))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&sent), key(&back));
    let log = std::fs::read_to_string(&sw.log_path).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("DTMF received") && l.contains("digit=1") && l.contains("RTP")),
        "digit not reported:\n{}",
        sw.log_tail()
    );
    sw.assert_no_leaks();
}

#[test]
fn the_ivr_routes_by_the_digit_the_caller_presses() {
    let (_turn, work) = setup();
    let mut sw = Running::start(5920, 25400);
    // "1": transfer to the echo, so the caller's own packets come back.
    let cap = Capture::start(work.path(), sw.rtp);
    let (rc, out) = call(&sw, work.path(), "5000", '1', 5930, 25700);
    let packets = cap.packets();
    assert_eq!(rc, 0, "sipp failed:\n{out}\nswitch:\n{}", sw.log_tail());
    sw.wait_for("digits collected");
    let log = std::fs::read_to_string(&sw.log_path).unwrap();
    assert!(
        log.lines().any(|l| l.contains("digits collected")
            && l.contains("ivr_choice")
            && l.contains("digits=\"1\"")),
        "{}",
        sw.log_tail()
    );
    let sent: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.src == 25700 && p.pt == 8)
        .collect();
    let back: Vec<&Packet> = packets.iter().filter(|p| p.dst == 25700).collect();
    assert_eq!(sent.len(), 236);
    let caller_ssrc = &sent[0].ssrc;
    let echoed = back
        .iter()
        .filter(|p| &p.ssrc == caller_ssrc && p.pt == 8)
        .count();
    assert_eq!(
        echoed, 236,
        "after `1`, the echo returns the caller's audio"
    );
    // Before the digit the switch played the IVR prompt (a stream of its
    // own, PCMA as negotiated), and stopped it for the digit.
    let prompt = back.iter().filter(|p| &p.ssrc != caller_ssrc).count();
    assert!(
        (1..=20).contains(&prompt),
        "prompt packets before the digit: {prompt}"
    );

    // "2": transfer to 9664, the switch's tone for the rest of the call.
    let cap = Capture::start(work.path(), sw.rtp);
    let (rc, out) = call(&sw, work.path(), "5000", '2', 5931, 25702);
    let packets = cap.packets();
    assert_eq!(rc, 0, "sipp failed:\n{out}\nswitch:\n{}", sw.log_tail());
    let log = std::fs::read_to_string(&sw.log_path).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("digits collected") && l.contains("digits=\"2\"")),
        "{}",
        sw.log_tail()
    );
    let sent: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.src == 25702 && p.pt == 8)
        .collect();
    let back: Vec<&Packet> = packets.iter().filter(|p| p.dst == 25702).collect();
    let caller_ssrc = &sent[0].ssrc;
    assert_eq!(
        back.iter().filter(|p| &p.ssrc == caller_ssrc).count(),
        0,
        "no echo after `2`"
    );
    // About 15 s of tone at 50 packets/s (the call lasts ~17 s after the
    // digit's route); PCMA, one stream, consecutive sequence numbers.
    let tone: Vec<&&Packet> = back.iter().filter(|p| p.pt == 8).collect();
    assert!(tone.len() >= 400, "tone packets: {}", tone.len());
    let ssrcs: std::collections::BTreeSet<&str> = tone.iter().map(|p| p.ssrc.as_str()).collect();
    assert!(
        ssrcs.len() <= 2,
        "prompt then tone, one stream each: {ssrcs:?}"
    );
    let last = tone.last().unwrap();
    let same: Vec<&&&Packet> = tone.iter().filter(|p| p.ssrc == last.ssrc).collect();
    for w in same.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence continuity");
    }
    sw.assert_no_leaks();
}

#[test]
fn an_answered_call_without_rtp_is_hung_up_with_media_timeout() {
    let (_turn, work) = setup();
    let sw = Running::start_edited(
        tempfile::tempdir().unwrap(),
        5940,
        25800,
        "",
        "",
        &[("rtp_timeout_s = 300", "rtp_timeout_s = 2")],
    );
    let trace = work.path().join("msgs.log");
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("40")
        .arg("sipp")
        .arg("-sf")
        .arg(repo().join("tests/sip/sipp/uac_auth_expect_bye.xml"))
        .arg(format!("127.0.0.1:{}", sw.internal))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            "5950",
            "-mi",
            "127.0.0.1",
            "-mp",
            "25990",
        ])
        .args([
            "-s",
            "9196",
            "-key",
            "caller",
            "1000",
            "-key",
            "domain",
            "dialtone.local",
        ])
        .args(["-au", "1000", "-ap", "1234", "-auth_uri"])
        .arg(format!("9196@127.0.0.1:{}", sw.internal))
        .args([
            "-m",
            "1",
            "-nostdin",
            "-recv_timeout",
            "15000",
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&trace)
        .current_dir(work.path())
        .output()
        .expect("sipp");
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the switch did not end the silent call:\n{}{}\nswitch:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sw.log_tail()
    );
    // Two seconds of silence (checked once a second), not at once.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let msgs = std::fs::read_to_string(&trace).unwrap();
    assert!(
        msgs.contains("Reason: Q.850;cause=804;text=\"MEDIA_TIMEOUT\""),
        "BYE without the MEDIA_TIMEOUT reason:\n{msgs}"
    );
    sw.assert_no_leaks();
}

/// `9181` in the default dialplan: pre-answer, one cadence of UK ringback
/// as early media, then `no-answer`. The caller (uac_auth_early_media.xml)
/// must get a 183 whose SDP points at the switch, the ringback on its RTP
/// port before any final response (0.8 s of 400+450 Hz and 2.2 s of
/// silence, in PCMU at 50 packets a second, one SSRC, consecutive sequence
/// numbers), and then a 480, never a 200.
#[test]
fn ringback_is_played_as_early_media_before_the_call_is_refused() {
    let (_turn, work) = setup();
    let sw = Running::start(5960, 24600);
    let rtp = std::net::UdpSocket::bind("127.0.0.1:24990").unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let listener = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        got
    });
    let log = work.path().join("early.log");
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("40")
        .arg("sipp")
        .arg("-sf")
        .arg(repo().join("tests/sip/sipp/uac_auth_early_media.xml"))
        .arg(format!("127.0.0.1:{}", sw.internal))
        .args(["-i", "127.0.0.1", "-p", "5966"])
        .args(["-s", "9181", "-key", "caller", "1000"])
        .args([
            "-key",
            "domain",
            "dialtone.local",
            "-key",
            "rtp_port",
            "24990",
        ])
        .args(["-au", "1000", "-ap", "1234", "-auth_uri"])
        .arg(format!("9181@127.0.0.1:{}", sw.internal))
        .args(["-m", "1", "-nostdin", "-recv_timeout", "15000"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-trace_logs",
            "-log_file",
        ])
        .arg(&log)
        .current_dir(work.path())
        .output()
        .expect("sipp");
    let took = started.elapsed();
    // Whatever arrives after the 480 is not early media: stop listening.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let packets = listener.join().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "no 183 with SDP then 480:\n{}{}\n{text}\nswitch:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sw.log_tail()
    );
    assert!(text.contains("final: 480"), "{text}");
    sw.assert_early_sdp_is_ours(&text);
    assert!(took >= Duration::from_millis(2900), "480 after {took:?}");
    // One cadence: 150 frames of 20 ms, 40 of them tone.
    let headers: Vec<_> = packets
        .iter()
        .filter_map(|p| dialtone_media::rtp::Header::parse(p).map(|h| (h, p)))
        .collect();
    assert!(
        (140..=152).contains(&headers.len()),
        "{} RTP packets of early media",
        headers.len()
    );
    let ssrc = headers[0].0.ssrc;
    for w in headers.windows(2) {
        assert_eq!(w[1].0.ssrc, ssrc);
        assert_eq!(w[1].0.sequence, w[0].0.sequence.wrapping_add(1));
        assert_eq!(w[1].0.payload_type, 0, "PCMU");
    }
    let loud = headers
        .iter()
        .filter(|(h, p)| {
            let pcm: Vec<i32> = p[h.payload_start..h.payload_end]
                .iter()
                .map(|&b| dialtone_media::codec::ulaw_decode(b) as i32)
                .collect();
            pcm.iter().map(|s| s.abs()).max().unwrap_or(0) > 1000
        })
        .count();
    assert!((38..=42).contains(&loud), "{loud} frames of ringback tone");
    sw.assert_no_leaks();
}
