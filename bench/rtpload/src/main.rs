//! `rtpload`: a SIP + RTP load generator that measures a media relay (a
//! switch or proxy that anchors RTP) with N concurrent calls, audio both
//! ways, and an exact per-stream loss count.
//!
//! It depends on nothing of Dialtone's on purpose: its SIP parsing
//! (`sip.rs`) and batched socket calls (`sys.rs`) are its own, so a fault in
//! the switch's SIP stack or media sockets cannot also hide in the meter,
//! and the same tool measures Kamailio + rtpengine unchanged.
//!
//! One process plays both ends of every call, on 127.0.0.1:
//!
//! ```text
//!   caller (UAC, --uac-port)  --INVITE-->  relay (--target)  --INVITE-->  callee (UAS, --uas-port)
//!   caller RTP (--rtp-port)   --RTP---->   relay             --RTP---->   echo (--echo-port)
//!   caller RTP                <--RTP----   relay             <--RTP----   echo
//! ```
//!
//! * The caller places `--calls` calls at `--rate` calls/s (at most
//!   `--max-pending` unanswered INVITEs), ACKs each 2xx along its route set
//!   and reads the answer SDP: that address is where the call's RTP goes.
//! * The callee answers every INVITE with 200 OK at once; its SDP points at
//!   the echo socket. The echo sends every datagram back, unchanged, to the
//!   address it came from (symmetric RTP), so each packet crosses the relay
//!   twice: caller -> relay -> echo -> relay -> caller.
//! * Once a call is ACKed, one sender thread sends it a 172-byte PCMU packet
//!   every 20 ms (SSRC 0x5EED0000 + call index), the calls spread over the
//!   20 ms by index so that about N/20 packets leave every millisecond.
//!
//! Who counts what:
//!
//! * the sender counts, per stream, the packets the kernel accepted
//!   (`packets_sent`);
//! * the echo counts every datagram that reached the callee (`echoed`);
//! * the caller's receiver finds the stream by SSRC and keeps, per stream,
//!   the unique packets back (`received`), duplicates, and packets that
//!   arrived after a later one (`reordered`, not lost). A packet is
//!   identified by its index in the stream, recovered from the RTP sequence
//!   number, so wrap-around does not matter.
//!
//! After the hold window the sender stops, the tool waits `--drain-ms` for
//! packets in flight, and then `lost` = sum over streams of
//! max(0, sent - received unique). The same is computed for the window
//! alone: the sender marks, per stream, the index of its next packet at the
//! window start and end, and the receiver counts unique packets whose index
//! falls between the marks, so packets in flight at either edge are neither
//! lost nor double counted (`window_lost`).
//!
//! The steady-state window (`--hold-s`) starts when every call is set up.
//! Over it the tool reads the CPU time (utime + stime from /proc/PID/stat)
//! of the `--cpu-pids` groups, the machine's busy share (/proc/stat) and its
//! own CPU, and divides each group's CPU by the packets the relay forwarded
//! in the window (`window_relayed_packets` = packets that reached the echo
//! + packets that came back to the caller): `cpu_us_per_relayed_packet`.
//!
//! Then every call is hung up with BYE, one JSON line is printed on stdout
//! and the exit status is 0 only if every call was set up and no packet was
//! lost (1 otherwise, 2 for a usage error). Progress goes to stderr as
//! lines starting with `# `.

mod rtp;
mod sip;
mod sys;
mod uac;
mod uas;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: rtpload --target HOST:PORT [options]

SIP + RTP load generator: places N calls through the relay at --target to a
callee played by this same process, sends 20 ms PCMU both ways (the callee
echoes), counts every packet, hangs up, and prints one JSON line.

  --target HOST:PORT       where the INVITEs go (required)
  --dest-user USER         Request-URI user (default 1001)
  --calls N                number of concurrent calls (default 100)
  --rate R                 new calls and BYEs per second (default 100)
  --max-pending N          INVITEs without a final response at once (default 200)
  --hold-s S               length of the measurement window, seconds (default 30)
  --drain-ms MS            wait after the window for packets in flight (default 500)
  --setup-timeout-s S      calls not set up by then fail (default 120)
  --max-run-s S            bound of the whole run; past it: report, exit 1 (default 600)
  --uac-port P             caller SIP port (default 5631)
  --uas-port P             callee SIP port (default 5632)
  --rtp-port P             caller RTP port, offered in every INVITE (default 5634)
  --echo-port P            callee RTP port, answered in every 200 (default 5636)
  --cpu-pids GROUPS        CPU to measure over the window: 'label=pid,pid;label2=pid'
                           (a bare 'pid,pid' is labelled 'target')
  --label NAME             copied into the JSON as \"target\" (default: the --target value)
  --help                   this text

All sockets bind 127.0.0.1. Exit status: 0 every call set up and no packet
lost, 1 otherwise, 2 usage error.
";

/// State shared by the threads. Per-stream counters live in the threads
/// that own them and are merged at the end; only what must cross threads
/// while running is here.
pub struct Shared {
    pub n: usize,
    pub seed: u64,
    /// Per call: RTP destination (see `rtp::pack_dest`), 0 = do not send.
    pub dest: Vec<AtomicU64>,
    pub stop_rtp: AtomicBool,
    pub stop_all: AtomicBool,
    pub hangup: AtomicBool,
    pub setup_done: AtomicBool,
    pub bye_done: AtomicBool,
    pub established: AtomicUsize,
    pub failed: AtomicUsize,
    pub pending: AtomicUsize,
    pub bye_ok: AtomicUsize,
    pub sent_total: AtomicU64,
    pub echoed_total: AtomicU64,
    pub rx_total: AtomicU64,
    /// Window snapshot handshake with the sender: 1 = start, 2 = end.
    pub snap_req: AtomicU32,
    pub snap_ack: AtomicU32,
    pub snap_sent: [AtomicU64; 3],
    /// Per stream: index of the next packet at window start / end.
    pub win_start: Vec<AtomicU64>,
    pub win_end: Vec<AtomicU64>,
}

impl Shared {
    fn new(n: usize, seed: u64) -> Shared {
        let vec = |v: u64| (0..n).map(|_| AtomicU64::new(v)).collect::<Vec<_>>();
        Shared {
            n,
            seed,
            dest: vec(0),
            stop_rtp: AtomicBool::new(false),
            stop_all: AtomicBool::new(false),
            hangup: AtomicBool::new(false),
            setup_done: AtomicBool::new(false),
            bye_done: AtomicBool::new(false),
            established: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            bye_ok: AtomicUsize::new(0),
            sent_total: AtomicU64::new(0),
            echoed_total: AtomicU64::new(0),
            rx_total: AtomicU64::new(0),
            snap_req: AtomicU32::new(0),
            snap_ack: AtomicU32::new(0),
            snap_sent: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            win_start: vec(u64::MAX),
            win_end: vec(u64::MAX),
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    target: SocketAddr,
    target_hostport: String,
    dest_user: String,
    calls: usize,
    rate: f64,
    max_pending: usize,
    hold_s: f64,
    drain_ms: u64,
    setup_timeout_s: f64,
    max_run_s: f64,
    uac_port: u16,
    uas_port: u16,
    rtp_port: u16,
    echo_port: u16,
    cpu_groups: Vec<(String, Vec<i32>)>,
    label: String,
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: bad value '{v}'"))
}

fn parse_secs(flag: &str, v: &str) -> Result<f64, String> {
    let x: f64 = parse_num(flag, v)?;
    if !x.is_finite() || !(0.0..=1e6).contains(&x) {
        return Err(format!("{flag}: out of range '{v}'"));
    }
    Ok(x)
}

fn parse_cpu_groups(v: &str) -> Result<Vec<(String, Vec<i32>)>, String> {
    let mut out = Vec::new();
    for group in v.split(';').map(str::trim).filter(|g| !g.is_empty()) {
        let (label, pids) = match group.split_once('=') {
            Some((l, p)) => (l.trim().to_string(), p),
            None => ("target".to_string(), group),
        };
        if label.is_empty() {
            return Err(format!("--cpu-pids: empty label in '{group}'"));
        }
        let pids = pids
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.parse::<i32>() {
                Ok(x) if x > 0 => Ok(x),
                _ => Err(format!("--cpu-pids: bad pid '{p}'")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((label, pids));
    }
    Ok(out)
}

/// `Ok(None)` means --help.
fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    let mut target: Option<String> = None;
    let mut a = Args {
        target: SocketAddr::from(([127, 0, 0, 1], 5060)),
        target_hostport: String::new(),
        dest_user: "1001".into(),
        calls: 100,
        rate: 100.0,
        max_pending: 200,
        hold_s: 30.0,
        drain_ms: 500,
        setup_timeout_s: 120.0,
        max_run_s: 600.0,
        uac_port: 5631,
        uas_port: 5632,
        rtp_port: 5634,
        echo_port: 5636,
        cpu_groups: Vec::new(),
        label: String::new(),
    };
    let mut label: Option<String> = None;
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument '{arg}'"));
        }
        let v = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag {
            "--target" => target = Some(v),
            "--dest-user" => {
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '@') {
                    return Err(format!("--dest-user: bad user '{v}'"));
                }
                a.dest_user = v
            }
            "--calls" => a.calls = parse_num(flag, &v)?,
            "--rate" => a.rate = parse_num(flag, &v)?,
            "--max-pending" => a.max_pending = parse_num(flag, &v)?,
            "--hold-s" => a.hold_s = parse_secs(flag, &v)?,
            "--drain-ms" => a.drain_ms = parse_num(flag, &v)?,
            "--setup-timeout-s" => a.setup_timeout_s = parse_secs(flag, &v)?,
            "--max-run-s" => a.max_run_s = parse_secs(flag, &v)?,
            "--uac-port" => a.uac_port = parse_num(flag, &v)?,
            "--uas-port" => a.uas_port = parse_num(flag, &v)?,
            "--rtp-port" => a.rtp_port = parse_num(flag, &v)?,
            "--echo-port" => a.echo_port = parse_num(flag, &v)?,
            "--cpu-pids" => a.cpu_groups = parse_cpu_groups(&v)?,
            "--label" => label = Some(v),
            _ => return Err(format!("unknown option '{flag}'")),
        }
    }
    let target = target.ok_or("--target HOST:PORT is required")?;
    let (host, port) = sip::split_hostport(&target)
        .ok_or_else(|| format!("--target: bad HOST:PORT '{target}'"))?;
    let port = port.ok_or_else(|| format!("--target: port missing in '{target}'"))?;
    a.target =
        sip::resolve(host, port).ok_or_else(|| format!("--target: cannot resolve '{host}'"))?;
    a.target_hostport = target.clone();
    a.label = label.unwrap_or(target);
    if a.calls == 0 || a.calls > 1_000_000 {
        return Err("--calls: must be 1..1000000".into());
    }
    if !a.rate.is_finite() || a.rate <= 0.0 || a.rate > 1e6 {
        return Err("--rate: must be > 0".into());
    }
    if a.max_pending == 0 {
        return Err("--max-pending: must be >= 1".into());
    }
    if a.drain_ms > 600_000 {
        return Err("--drain-ms: at most 600000".into());
    }
    Ok(Some(a))
}

/// Counters and CPU readings at one edge of the window.
struct Snap {
    t: Instant,
    sent: u64,
    echoed: u64,
    rx: u64,
    pids: Vec<Vec<Option<u64>>>,
    machine: Option<(u64, u64)>,
    self_cpu: f64,
}

fn take_snap(sh: &Shared, which: u32, groups: &[(String, Vec<i32>)]) -> Snap {
    sh.snap_req.store(which, Release);
    let waited = Instant::now();
    while sh.snap_ack.load(Acquire) != which && waited.elapsed() < Duration::from_secs(1) {
        thread::sleep(Duration::from_micros(200));
    }
    let sent = if sh.snap_ack.load(Acquire) == which {
        sh.snap_sent[which as usize].load(Relaxed)
    } else {
        sh.sent_total.load(Relaxed)
    };
    Snap {
        t: Instant::now(),
        sent,
        echoed: sh.echoed_total.load(Relaxed),
        rx: sh.rx_total.load(Relaxed),
        pids: groups
            .iter()
            .map(|(_, pids)| pids.iter().map(|&p| sys::proc_ticks(p)).collect())
            .collect(),
        machine: sys::machine_jiffies(),
        self_cpu: sys::self_cpu_s(),
    }
}

/// A JSON object written by hand (std only).
struct Json {
    s: String,
}

fn json_str(v: &str) -> String {
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "null".into()
    }
}

impl Json {
    fn new() -> Json {
        Json { s: "{".into() }
    }
    fn raw(&mut self, k: &str, v: &str) -> &mut Json {
        if self.s.len() > 1 {
            self.s.push(',');
        }
        self.s.push_str(&json_str(k));
        self.s.push(':');
        self.s.push_str(v);
        self
    }
    fn u(&mut self, k: &str, v: u64) -> &mut Json {
        self.raw(k, &v.to_string())
    }
    fn f(&mut self, k: &str, v: f64, decimals: usize) -> &mut Json {
        self.raw(k, &json_f(v, decimals))
    }
    fn opt_f(&mut self, k: &str, v: Option<f64>, decimals: usize) -> &mut Json {
        match v {
            Some(v) => self.f(k, v, decimals),
            None => self.raw(k, "null"),
        }
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Json {
        self.raw(k, &json_str(v))
    }
    fn b(&mut self, k: &str, v: bool) -> &mut Json {
        self.raw(k, if v { "true" } else { "false" })
    }
    fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.s);
        s.push('}');
        s
    }
}

fn bind(port: u16, what: &str) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot bind {what} socket 127.0.0.1:{port}: {e}"))?;
    Ok(s)
}

fn local_port(s: &UdpSocket) -> u16 {
    s.local_addr().map(|a| a.port()).unwrap_or(0)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("rtpload: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let code = match run(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtpload: {e}");
            1
        }
    };
    std::process::exit(code);
}

const SOCK_BUF: i32 = 8 << 20;

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<thread::JoinHandle<T>, String> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

fn join<T>(h: thread::JoinHandle<T>, name: &str) -> Result<T, String> {
    h.join().map_err(|_| format!("thread {name} panicked"))
}

fn progress(sh: &Shared, t0: Instant, what: &str) {
    eprintln!(
        "# {:6.1}s {what}: established {}/{} failed {} pending {} bye_ok {}",
        t0.elapsed().as_secs_f64(),
        sh.established.load(Relaxed),
        sh.n,
        sh.failed.load(Relaxed),
        sh.pending.load(Relaxed),
        sh.bye_ok.load(Relaxed),
    );
}

/// Sleeps until `flag` is set, printing progress every second. Returns
/// false if the run deadline passed first.
fn wait_for(flag: &AtomicBool, sh: &Shared, t0: Instant, deadline: Instant, what: &str) -> bool {
    let mut last = Instant::now();
    while !flag.load(Acquire) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            progress(sh, t0, what);
        }
    }
    true
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

fn run(args: &Args) -> Result<i32, String> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(args.max_run_s);
    let uac_sock = bind(args.uac_port, "caller SIP")?;
    let uas_sock = bind(args.uas_port, "callee SIP")?;
    let rtp_sock = Arc::new(bind(args.rtp_port, "caller RTP")?);
    let echo_sock = Arc::new(bind(args.echo_port, "echo RTP")?);
    for s in [&uac_sock, &uas_sock] {
        s.set_read_timeout(Some(Duration::from_millis(5)))
            .map_err(|e| format!("SIP socket timeout: {e}"))?;
        sys::set_socket_buffers(s.as_raw_fd(), SOCK_BUF);
    }
    let (rcv, snd) = sys::set_socket_buffers(rtp_sock.as_raw_fd(), SOCK_BUF);
    sys::set_socket_buffers(echo_sock.as_raw_fd(), SOCK_BUF);
    let uac_port = local_port(&uac_sock);
    let uas_port = local_port(&uas_sock);
    let rtp_port = local_port(&rtp_sock);
    let echo_port = local_port(&echo_sock);
    eprintln!(
        "# rtpload: {} calls to {} at {}/s, hold {} s; caller SIP {uac_port} RTP {rtp_port}, callee SIP {uas_port} echo {echo_port}; RTP socket buffers rcv {rcv} snd {snd}",
        args.calls, args.target_hostport, args.rate, args.hold_s
    );

    let seed = sys::run_seed();
    let sh = Arc::new(Shared::new(args.calls, seed));

    let echo = {
        let (s, sh) = (echo_sock.clone(), sh.clone());
        spawn("echo", move || rtp::run_echo(s.as_raw_fd(), &sh))?
    };
    let receiver = {
        let (s, sh) = (rtp_sock.clone(), sh.clone());
        spawn("rtp-rx", move || rtp::run_receiver(s.as_raw_fd(), &sh))?
    };
    let sender = {
        let (s, sh) = (rtp_sock.clone(), sh.clone());
        spawn("rtp-tx", move || rtp::run_sender(s.as_raw_fd(), &sh))?
    };
    let uas = {
        let sh = sh.clone();
        let cfg = uas::UasConfig {
            local_port: uas_port,
            echo_port,
            seed: seed ^ 0xCA11EE,
        };
        spawn("uas", move || uas::run(uas_sock, cfg, sh))?
    };
    let uac = {
        let cfg = uac::UacConfig {
            target: args.target,
            target_hostport: args.target_hostport.clone(),
            dest_user: args.dest_user.clone(),
            calls: args.calls,
            rate: args.rate,
            max_pending: args.max_pending,
            setup_timeout: Duration::from_secs_f64(args.setup_timeout_s),
            local_port: uac_port,
            rtp_port,
            seed,
        };
        let u = uac::Uac::new(cfg, uac_sock, sh.clone());
        spawn("uac", move || u.run())?
    };

    // Phase 2: set up the calls.
    let mut timed_out = !wait_for(&sh.setup_done, &sh, t0, deadline, "setup");
    progress(&sh, t0, "setup done");

    // Phase 3: the steady-state window.
    let established_now = sh.established.load(Relaxed);
    let mut window: Option<(Snap, Snap)> = None;
    if !timed_out && established_now > 0 {
        let start = take_snap(&sh, 1, &args.cpu_groups);
        eprintln!(
            "# {:6.1}s window start: {established_now} streams, {} s",
            t0.elapsed().as_secs_f64(),
            args.hold_s
        );
        let end_at = start.t + Duration::from_secs_f64(args.hold_s);
        let mut last = Instant::now();
        while Instant::now() < end_at {
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            thread::sleep(
                Duration::from_millis(10).min(end_at.saturating_duration_since(Instant::now())),
            );
            if last.elapsed() >= Duration::from_secs(5) {
                last = Instant::now();
                eprintln!(
                    "# {:6.1}s window: sent {} echoed {} back {}",
                    t0.elapsed().as_secs_f64(),
                    sh.sent_total.load(Relaxed) - start.sent,
                    sh.echoed_total.load(Relaxed) - start.echoed,
                    sh.rx_total.load(Relaxed) - start.rx
                );
            }
        }
        let end = take_snap(&sh, 2, &args.cpu_groups);
        let ws = end.t.duration_since(start.t).as_secs_f64();
        eprintln!(
            "# {:6.1}s window end: {:.2} s, {:.0} packets/s sent",
            t0.elapsed().as_secs_f64(),
            ws,
            (end.sent - start.sent) as f64 / ws.max(1e-9)
        );
        window = Some((start, end));
    }

    // Phase 4: stop RTP, drain, hang up.
    sh.stop_rtp.store(true, Release);
    let sender_res = join(sender, "rtp-tx")?;
    if established_now > 0 {
        sleep_until((Instant::now() + Duration::from_millis(args.drain_ms)).min(deadline));
    }
    if !timed_out {
        sh.hangup.store(true, Release);
        timed_out = !wait_for(&sh.bye_done, &sh, t0, deadline, "hangup");
        progress(&sh, t0, "hangup done");
    }
    if timed_out {
        eprintln!("# run bound --max-run-s {} reached", args.max_run_s);
    }
    sh.stop_all.store(true, Release);
    let uac_res = join(uac, "uac")?;
    let uas_res = join(uas, "uas")?;
    let rx_res = join(receiver, "rtp-rx")?;
    let echo_res = join(echo, "echo")?;

    // Phase 5: the report.
    let mut lost = 0u64;
    let mut streams_with_loss = 0u64;
    let mut max_stream_loss = 0u64;
    let (mut received, mut duplicates, mut reordered, mut stale) = (0u64, 0u64, 0u64, 0u64);
    let (mut w_lost, mut w_streams_with_loss, mut w_sent_k, mut w_rx) = (0u64, 0u64, 0u64, 0u64);
    for (i, st) in rx_res.streams.iter().enumerate() {
        let sent = sender_res.sent[i];
        let l = sent.saturating_sub(st.received);
        lost += l;
        if l > 0 {
            streams_with_loss += 1;
        }
        max_stream_loss = max_stream_loss.max(l);
        received += st.received;
        duplicates += st.duplicates;
        reordered += st.reordered;
        stale += st.stale;
        let (ws, we) = (sh.win_start[i].load(Relaxed), sh.win_end[i].load(Relaxed));
        if window.is_some() && ws != u64::MAX && we != u64::MAX && we >= ws {
            let wsent = we - ws;
            let wrx = st.rx_ge_start.saturating_sub(st.rx_ge_end);
            let wl = wsent.saturating_sub(wrx);
            w_sent_k += wsent;
            w_rx += wrx;
            w_lost += wl;
            if wl > 0 {
                w_streams_with_loss += 1;
            }
        }
    }
    let packets_sent: u64 = sender_res.sent.iter().sum();
    let ok = !timed_out && uac_res.established == args.calls && lost == 0;

    let mut j = Json::new();
    j.str("bench", "rtpload")
        .str("target", &args.label)
        .u("calls", args.calls as u64)
        .u("established", uac_res.established as u64)
        .u("failed", uac_res.failed.values().sum::<usize>() as u64);
    let failed_by: Vec<String> = uac_res
        .failed
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    j.raw("failed_by", &format!("{{{}}}", failed_by.join(",")))
        .f("setup_s", uac_res.setup_s, 3)
        .u("packets_sent", packets_sent)
        .u("echoed", echo_res.echoed)
        .u("received", received)
        .u("received_raw", sh.rx_total.load(Relaxed))
        .u("lost", lost)
        .u("duplicates", duplicates)
        .u("reordered", reordered)
        .u("stale", stale)
        .u("streams_with_loss", streams_with_loss)
        .u("max_stream_loss", max_stream_loss)
        .u("unknown_ssrc", rx_res.unknown_ssrc)
        .u("rtp_malformed", rx_res.malformed)
        .u("send_errors", sender_res.send_errors)
        .u("echo_send_errors", echo_res.send_errors)
        .u("sender_skipped_ms", sender_res.skipped_ms);

    let mut cpu_sum: Option<f64> = None;
    let mut groups_json = Vec::new();
    match &window {
        Some((a, b)) => {
            let ws = b.t.duration_since(a.t).as_secs_f64();
            let w_sent = b.sent - a.sent;
            let w_echoed = b.echoed - a.echoed;
            let w_back = b.rx - a.rx;
            let relayed = w_echoed + w_back;
            j.f("window_s", ws, 3)
                .u("window_packets_sent", w_sent)
                .f("window_pps_sent", w_sent as f64 / ws.max(1e-9), 1)
                .u("window_echoed", w_echoed)
                .u("window_received", w_back)
                .u("window_relayed_packets", relayed)
                .u("window_stream_packets", w_sent_k)
                .u("window_stream_received", w_rx)
                .u("window_lost", w_lost)
                .u("window_streams_with_loss", w_streams_with_loss);
            let hz = sys::clock_ticks();
            for (g, (label, pids)) in args.cpu_groups.iter().enumerate() {
                let mut ticks = 0u64;
                let mut missing = 0u64;
                for (p, _) in pids.iter().enumerate() {
                    match (a.pids[g][p], b.pids[g][p]) {
                        (Some(x), Some(y)) => ticks += y.saturating_sub(x),
                        _ => missing += 1,
                    }
                }
                let cpu_s = ticks as f64 / hz;
                *cpu_sum.get_or_insert(0.0) += cpu_s;
                let per_pkt = (relayed > 0).then(|| cpu_s * 1e6 / relayed as f64);
                let pid_list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
                let mut gj = Json::new();
                gj.str("label", label)
                    .raw("pids", &format!("[{}]", pid_list.join(",")))
                    .u("pids_missing", missing)
                    .f("cpu_s", cpu_s, 3)
                    .opt_f("cpu_us_per_relayed_packet", per_pkt, 3);
                groups_json.push(gj.finish());
            }
            let busy = match (a.machine, b.machine) {
                (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                    Some(100.0 * b1.saturating_sub(b0) as f64 / (t1 - t0) as f64)
                }
                _ => None,
            };
            j.raw("cpu_groups", &format!("[{}]", groups_json.join(",")))
                .opt_f("cpu_s", cpu_sum, 3)
                .opt_f(
                    "cpu_us_per_relayed_packet",
                    cpu_sum
                        .filter(|_| relayed > 0)
                        .map(|c| c * 1e6 / relayed as f64),
                    3,
                )
                .opt_f("machine_busy_pct", busy, 1)
                .f("rtpload_cpu_s", b.self_cpu - a.self_cpu, 3);
        }
        None => {
            for (label, pids) in &args.cpu_groups {
                let pid_list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
                let mut gj = Json::new();
                gj.str("label", label)
                    .raw("pids", &format!("[{}]", pid_list.join(",")))
                    .raw("pids_missing", "null")
                    .raw("cpu_s", "null")
                    .raw("cpu_us_per_relayed_packet", "null");
                groups_json.push(gj.finish());
            }
            j.f("window_s", 0.0, 3)
                .u("window_packets_sent", 0)
                .f("window_pps_sent", 0.0, 1)
                .u("window_echoed", 0)
                .u("window_received", 0)
                .u("window_relayed_packets", 0)
                .u("window_stream_packets", 0)
                .u("window_stream_received", 0)
                .u("window_lost", 0)
                .u("window_streams_with_loss", 0)
                .raw("cpu_groups", &format!("[{}]", groups_json.join(",")))
                .raw("cpu_s", "null")
                .raw("cpu_us_per_relayed_packet", "null")
                .raw("machine_busy_pct", "null")
                .raw("rtpload_cpu_s", "null");
        }
    }
    j.u("bye_sent", uac_res.bye_sent as u64)
        .u("bye_ok", uac_res.bye_ok as u64)
        .u("bye_failed", uac_res.bye_failed as u64)
        .u("invite_retransmits", uac_res.invite_retx)
        .u("bye_retransmits", uac_res.bye_retx)
        .u("late_2xx", uac_res.late_2xx)
        .u("remote_bye", uac_res.remote_bye)
        .u("sip_malformed", uac_res.malformed + uas_res.malformed)
        .u("sip_unmatched", uac_res.unmatched)
        .u("uas_invites", uas_res.invites)
        .u("uas_200_retransmits", uas_res.final_retx)
        .u("uas_ack_timeouts", uas_res.ack_timeouts)
        .f("run_s", t0.elapsed().as_secs_f64(), 3)
        .b("timed_out", timed_out)
        .b("ok", ok);
    println!("{}", j.finish());
    Ok(if ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_flags_and_cpu_groups() {
        let a = args(&[
            "--target",
            "127.0.0.1:5080",
            "--calls=50",
            "--rate",
            "25",
            "--cpu-pids",
            "kamailio=1,2,3;rtpengine=4",
            "--label",
            "kam",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.target, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(a.calls, 50);
        assert_eq!(a.rate, 25.0);
        assert_eq!(
            a.cpu_groups,
            vec![
                ("kamailio".to_string(), vec![1, 2, 3]),
                ("rtpengine".to_string(), vec![4])
            ]
        );
        assert_eq!(a.label, "kam");
        let a = args(&["--target", "127.0.0.1:5080", "--cpu-pids", "12"])
            .unwrap()
            .unwrap();
        assert_eq!(a.cpu_groups, vec![("target".to_string(), vec![12])]);
        assert_eq!(a.label, "127.0.0.1:5080");
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&[]).is_err());
        assert!(args(&["--target", "127.0.0.1"]).is_err());
        assert!(args(&["--target", "127.0.0.1:1", "--calls", "x"]).is_err());
        assert!(args(&["--target", "127.0.0.1:1", "--bogus", "1"]).is_err());
        assert!(args(&["--target", "127.0.0.1:1", "--cpu-pids", "a=-1"]).is_err());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        let mut j = Json::new();
        j.u("a", 1).f("b", f64::NAN, 2).str("c", "x");
        assert_eq!(j.finish(), "{\"a\":1,\"b\":null,\"c\":\"x\"}");
    }
}
