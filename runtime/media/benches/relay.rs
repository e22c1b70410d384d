//! Relay throughput and cost through one bridged pair on loopback.
//!
//! Two phones (plain UDP sockets on 127.0.0.1) talk through two legs of a
//! one-worker engine. The phones keep a window of packets in flight (send a
//! window, read it back), so loopback never overflows a socket buffer. Per
//! scenario it prints one JSON line: packets relayed, wall time, packets per
//! second, CPU time of the media worker thread per packet (the relay's own
//! cost: epoll_wait, recvfrom, sendto) and CPU time of the whole process
//! per packet (the phones included). A last line does the same exchange
//! phone to phone without the relay, as a baseline for the machine.
//!
//! `DIALTONE_BENCH_SMOKE=1` relays a few hundred packets only. Every run is
//! bounded in packets and in time (10 s per scenario).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dialtone_media::{LegHandle, MediaConfig, MediaEngine};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WINDOW: usize = 64;
const TIME_LIMIT: Duration = Duration::from_secs(10);
const PAYLOAD: usize = 172; // 12-byte RTP header + 20 ms of G.711

static WORKER_THREAD: AtomicU64 = AtomicU64::new(0);
static WORKER_KNOWN: AtomicBool = AtomicBool::new(false);

/// CPU time consumed so far by the media worker thread, in ns.
fn worker_cpu_ns() -> u64 {
    assert!(WORKER_KNOWN.load(Ordering::Acquire));
    let thread = WORKER_THREAD.load(Ordering::Acquire) as libc::pthread_t;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` is the live worker thread (it runs until the engine
    // is dropped, after the last call); `clock` is a valid out pointer.
    let r = unsafe { libc::pthread_getcpuclockid(thread, &mut clock) };
    assert_eq!(r, 0, "pthread_getcpuclockid");
    cpu_ns(clock)
}

/// CPU time of the whole process, in ns.
fn process_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn phone() -> UdpSocket {
    let s = UdpSocket::bind((LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

struct Pair {
    a: LegHandle,
    b: LegHandle,
    pa: UdpSocket,
    pb: UdpSocket,
}

/// Send `total` packets (from A only, or from both), a window at a time.
/// Returns (packets relayed, packets lost).
fn run(pair: &Pair, total: u64, both_ways: bool, deadline: Instant) -> (u64, u64) {
    let packet = {
        let mut p = vec![0u8; PAYLOAD];
        p[0] = 0x80;
        p
    };
    let mut buf = [0u8; 2048];
    let (a_addr, b_addr) = (pair.a.rtp_addr(), pair.b.rtp_addr());
    let mut relayed = 0u64;
    let mut lost = 0u64;
    let per_round = if both_ways { 2 } else { 1 };
    while relayed + lost < total && Instant::now() < deadline {
        let window = (WINDOW as u64)
            .min((total - relayed - lost) / per_round)
            .max(1);
        for _ in 0..window {
            pair.pa.send_to(&packet, a_addr).unwrap();
            if both_ways {
                pair.pb.send_to(&packet, b_addr).unwrap();
            }
        }
        let mut recv = |s: &UdpSocket| match s.recv_from(&mut buf) {
            Ok(_) => relayed += 1,
            Err(_) => lost += 1,
        };
        for _ in 0..window {
            recv(&pair.pb);
            if both_ways {
                recv(&pair.pa);
            }
        }
    }
    (relayed, lost)
}

fn scenario(pair: &Pair, name: &str, total: u64, both_ways: bool) {
    let dropped_before = pair.a.stats().snapshot().rtp.packets_dropped
        + pair.b.stats().snapshot().rtp.packets_dropped;
    let (w0, p0, t0) = (worker_cpu_ns(), process_cpu_ns(), Instant::now());
    let (relayed, lost) = run(pair, total, both_ways, t0 + TIME_LIMIT);
    let secs = t0.elapsed().as_secs_f64();
    let (w1, p1) = (worker_cpu_ns(), process_cpu_ns());
    let dropped = pair.a.stats().snapshot().rtp.packets_dropped
        + pair.b.stats().snapshot().rtp.packets_dropped
        - dropped_before;
    let per = |ns: u64| {
        if relayed == 0 {
            0.0
        } else {
            ns as f64 / relayed as f64
        }
    };
    println!(
        "{{\"bench\":\"media_relay\",\"scenario\":\"{name}\",\"packets\":{relayed},\"lost\":{lost},\
         \"dropped_by_relay\":{dropped},\"payload_bytes\":{PAYLOAD},\"window\":{WINDOW},\
         \"seconds\":{secs:.4},\"packets_per_second\":{:.0},\
         \"worker_cpu_ns_per_packet\":{:.1},\"process_cpu_ns_per_packet\":{:.1}}}",
        relayed as f64 / secs.max(1e-9),
        per(w1 - w0),
        per(p1 - p0),
    );
}

/// The same windowed exchange straight from phone to phone, no relay: the
/// cost of the phones and of loopback alone, to read the others against.
fn baseline(total: u64) {
    let (pa, pb) = (phone(), phone());
    let packet = [0x80u8; PAYLOAD];
    let mut buf = [0u8; 2048];
    let to = pb.local_addr().unwrap();
    let (p0, t0) = (process_cpu_ns(), Instant::now());
    let (mut delivered, mut lost) = (0u64, 0u64);
    while delivered + lost < total && t0.elapsed() < TIME_LIMIT {
        let window = (WINDOW as u64).min(total - delivered - lost);
        for _ in 0..window {
            pa.send_to(&packet, to).unwrap();
        }
        for _ in 0..window {
            match pb.recv_from(&mut buf) {
                Ok(_) => delivered += 1,
                Err(_) => lost += 1,
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let p1 = process_cpu_ns();
    println!(
        "{{\"bench\":\"media_relay\",\"scenario\":\"direct_no_relay\",\"packets\":{delivered},\"lost\":{lost},\
         \"payload_bytes\":{PAYLOAD},\"window\":{WINDOW},\"seconds\":{secs:.4},\
         \"packets_per_second\":{:.0},\"process_cpu_ns_per_packet\":{:.1}}}",
        delivered as f64 / secs.max(1e-9),
        (p1 - p0) as f64 / delivered.max(1) as f64,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let smoke = std::env::var_os("DIALTONE_BENCH_SMOKE").is_some_and(|v| v == "1");
    let total: u64 = if smoke { 300 } else { 200_000 };

    let config = MediaConfig::new(LO, 25000, 25099)
        .workers(1)
        .on_worker_start(|_| {
            // SAFETY: pthread_self has no preconditions.
            let me = unsafe { libc::pthread_self() };
            WORKER_THREAD.store(me as u64, Ordering::Release);
            WORKER_KNOWN.store(true, Ordering::Release);
        });
    let engine = MediaEngine::start(config).expect("start the media engine");
    let a = engine.allocate().expect("allocate leg A");
    let b = engine.allocate_beside(&a).expect("allocate leg B");
    let (pa, pb) = (phone(), phone());
    engine.set_remote(&a, pa.local_addr().unwrap()).unwrap();
    engine.set_remote(&b, pb.local_addr().unwrap()).unwrap();
    engine.bridge(&a, &b).unwrap();
    let start = Instant::now();
    while !(a.stats().is_relaying()
        && b.stats().is_relaying()
        && WORKER_KNOWN.load(Ordering::Acquire))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "bridge never took effect"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let pair = Pair { a, b, pa, pb };
    // Warm-up, not reported.
    run(&pair, total.min(2000), true, Instant::now() + TIME_LIMIT);
    scenario(&pair, "one_way", total, false);
    scenario(&pair, "both_ways", total, true);
    // The same packets (payload type 0) between a PCMU leg and a PCMA
    // leg: each one converted in place (one table lookup a byte) and
    // renumbered.
    use dialtone_media::codec::Codec;
    use dialtone_media::Format;
    let f = |codec, payload_type| Format {
        codec,
        payload_type,
        event_payload_type: Some(101),
    };
    engine.set_format(&pair.a, f(Codec::Pcmu, 0)).unwrap();
    engine.set_format(&pair.b, f(Codec::Pcma, 0)).unwrap();
    run(&pair, total.min(2000), true, Instant::now() + TIME_LIMIT);
    scenario(&pair, "both_ways_transcoded_pcmu_pcma", total, true);
    baseline(total);
    let _: SocketAddr = pair.a.rtp_addr();
    drop(pair);
    drop(engine);
}
