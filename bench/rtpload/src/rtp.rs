//! The RTP side: the paced sender, the caller's receiver with its per-stream
//! loss meter, and the callee's echo. None of them allocates per packet.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use crate::sys::{self, Mmsg};
use crate::Shared;

/// SSRC of call `i` is `SSRC_BASE + i`.
pub const SSRC_BASE: u32 = 0x5EED_0000;
/// 12-byte header + 160 bytes of PCMU (20 ms at 8 kHz).
pub const PKT_LEN: usize = 172;
const PAYLOAD_LEN: usize = PKT_LEN - 12;
const BATCH: usize = 64;
const RX_BUF: usize = 2048;
/// Packet interval per stream, in sender ticks of 1 ms.
const PTIME_MS: u64 = 20;
/// The sender catches up at most this far after being descheduled; older
/// slots are skipped (not sent, so not counted as lost) and reported.
const MAX_CATCHUP_MS: u64 = 100;

/// Destination of a call's RTP packed into one atomic word: IPv4 (host
/// order) << 16 | port. 0 means "do not send".
pub fn pack_dest(ip: std::net::Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(ip)) << 16) | u64::from(port)
}

/// First sequence number of call `i` in this run.
pub fn seq0(seed: u64, i: usize) -> u16 {
    sys::mix(seed ^ ((i as u64) << 1)) as u16
}

fn ts0(seed: u64, i: usize) -> u32 {
    (sys::mix(seed ^ ((i as u64) << 1) ^ 1) >> 32) as u32
}

fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && (s & mask) == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// 160 samples of a 1 kHz tone in μ-law.
fn tone_payload() -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    for (n, b) in p.iter_mut().enumerate() {
        // 8 samples per period at 8 kHz: 1 kHz.
        let x = (n % 8) as f64 * std::f64::consts::FRAC_PI_4;
        *b = linear_to_ulaw((x.sin() * 8000.0) as i16);
    }
    p
}

pub struct SenderResult {
    /// Packets the kernel accepted, per stream.
    pub sent: Vec<u64>,
    pub send_errors: u64,
    pub skipped_ms: u64,
}

struct Batch {
    m: Mmsg,
    owner: [usize; BATCH],
    fill: usize,
}

impl Batch {
    /// Sends what is queued; returns the number of datagrams that failed.
    fn flush(&mut self, fd: RawFd, sent: &mut [u64], sh: &Shared) -> u64 {
        let owner = &self.owner;
        let (ok, errors) = self.m.send(fd, self.fill, |j| sent[owner[j]] += 1);
        self.fill = 0;
        sh.sent_total.fetch_add(ok, Relaxed);
        errors
    }
}

/// One thread paces every stream. Each call has a phase (index % 20 ms); on
/// tick `m` (ms since start) the calls of phase `m % 20` that have a
/// destination get their next packet, so about N/20 packets leave per ms.
/// Each tick is processed exactly once, so a stream never gets two packets
/// for one 20 ms slot; a late thread processes the missed ticks in order.
pub fn run_sender(fd: RawFd, sh: &Shared) -> SenderResult {
    let n = sh.n;
    let seq0s: Vec<u16> = (0..n).map(|i| seq0(sh.seed, i)).collect();
    let ts0s: Vec<u32> = (0..n).map(|i| ts0(sh.seed, i)).collect();
    let mut next_k = vec![0u64; n];
    let mut sent = vec![0u64; n];
    let mut b = Batch {
        m: Mmsg::new(BATCH, PKT_LEN),
        owner: [0; BATCH],
        fill: 0,
    };
    let payload = tone_payload();
    for j in 0..BATCH {
        b.m.slot_mut(j)[12..PKT_LEN].copy_from_slice(&payload);
    }
    let mut send_errors = 0u64;
    let mut skipped_ms = 0u64;
    let t0 = Instant::now();
    let mut next_ms = 0u64;
    loop {
        if sh.stop_rtp.load(Acquire) || sh.stop_all.load(Acquire) {
            break;
        }
        // Window snapshots: record, per stream, the index of the next packet
        // before sending anything more.
        let req = sh.snap_req.load(Acquire);
        if (req == 1 || req == 2) && req != sh.snap_ack.load(Relaxed) {
            let marks = if req == 1 { &sh.win_start } else { &sh.win_end };
            for (mark, k) in marks.iter().zip(next_k.iter()) {
                mark.store(*k, Release);
            }
            sh.snap_sent[req as usize].store(sh.sent_total.load(Relaxed), Relaxed);
            sh.snap_ack.store(req, Release);
        }
        let now_ms = t0.elapsed().as_millis() as u64;
        if now_ms > next_ms + MAX_CATCHUP_MS {
            skipped_ms += now_ms - MAX_CATCHUP_MS - next_ms;
            next_ms = now_ms - MAX_CATCHUP_MS;
        }
        while next_ms <= now_ms {
            let mut i = (next_ms % PTIME_MS) as usize;
            while i < n {
                let d = sh.dest[i].load(Relaxed);
                if d != 0 {
                    let k = next_k[i];
                    next_k[i] = k + 1;
                    let seq = seq0s[i].wrapping_add(k as u16);
                    let ts = ts0s[i].wrapping_add((k as u32).wrapping_mul(160));
                    let ssrc = SSRC_BASE.wrapping_add(i as u32);
                    let j = b.fill;
                    let p = b.m.slot_mut(j);
                    p[0] = 0x80;
                    p[1] = if k == 0 { 0x80 } else { 0x00 };
                    p[2..4].copy_from_slice(&seq.to_be_bytes());
                    p[4..8].copy_from_slice(&ts.to_be_bytes());
                    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
                    b.m.set_send(j, PKT_LEN, (d >> 16) as u32, d as u16);
                    b.owner[j] = i;
                    b.fill += 1;
                    if b.fill == BATCH {
                        send_errors += b.flush(fd, &mut sent, sh);
                    }
                }
                i += PTIME_MS as usize;
            }
            next_ms += 1;
        }
        if b.fill > 0 {
            send_errors += b.flush(fd, &mut sent, sh);
        }
        let due = t0 + Duration::from_millis(next_ms);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
    SenderResult {
        sent,
        send_errors,
        skipped_ms,
    }
}

const WIN: u64 = 1024;

/// Per-stream receive meter. Packets are identified by their index `k`
/// (0 for the stream's first packet), recovered from the 16-bit sequence
/// number relative to the highest index seen so far, so wrap-around is
/// transparent. A 1024-packet bitmap behind the highest index tells
/// duplicates from late (reordered) packets.
#[derive(Clone, Debug, Default)]
pub struct StreamRx {
    started: bool,
    pub max_k: u64,
    bits: [u64; (WIN / 64) as usize],
    /// Unique packets.
    pub received: u64,
    pub duplicates: u64,
    /// Unique packets that arrived after a higher one.
    pub reordered: u64,
    /// Packets too old for the bitmap (or before the stream's start):
    /// not counted as received.
    pub stale: u64,
    /// Unique packets with index >= the window-start mark.
    pub rx_ge_start: u64,
    /// Unique packets with index >= the window-end mark.
    pub rx_ge_end: u64,
}

impl StreamRx {
    fn word_bit(k: u64) -> (usize, u64) {
        (((k % WIN) / 64) as usize, 1u64 << (k % 64))
    }

    fn is_set(&self, k: u64) -> bool {
        let (w, b) = Self::word_bit(k);
        self.bits[w] & b != 0
    }

    fn set(&mut self, k: u64) {
        let (w, b) = Self::word_bit(k);
        self.bits[w] |= b;
    }

    fn clear(&mut self, k: u64) {
        let (w, b) = Self::word_bit(k);
        self.bits[w] &= !b;
    }

    /// Accounts one packet with sequence number `seq` of a stream whose
    /// first packet had `seq0`. Returns the packet index if it is new.
    pub fn on_packet(&mut self, seq: u16, seq0: u16) -> Option<u64> {
        if !self.started {
            let k = u64::from(seq.wrapping_sub(seq0));
            if k >= 0x8000 {
                self.stale += 1;
                return None;
            }
            self.started = true;
            self.max_k = k;
            self.set(k);
            self.received += 1;
            return Some(k);
        }
        let expected = seq0.wrapping_add(self.max_k as u16);
        let delta = i64::from(seq.wrapping_sub(expected) as i16);
        let k = self.max_k as i64 + delta;
        if k < 0 {
            self.stale += 1;
            return None;
        }
        let k = k as u64;
        if k > self.max_k {
            if k - self.max_k >= WIN {
                self.bits = [0; (WIN / 64) as usize];
            } else {
                for x in self.max_k + 1..=k {
                    self.clear(x);
                }
            }
            self.set(k);
            self.max_k = k;
            self.received += 1;
            Some(k)
        } else if self.max_k - k >= WIN {
            self.stale += 1;
            None
        } else if self.is_set(k) {
            self.duplicates += 1;
            None
        } else {
            self.set(k);
            self.received += 1;
            self.reordered += 1;
            Some(k)
        }
    }

    /// Counts a new packet against the window marks (u64::MAX = not set).
    pub fn count_window(&mut self, k: u64, start: u64, end: u64) {
        if k >= start {
            self.rx_ge_start += 1;
        }
        if k >= end {
            self.rx_ge_end += 1;
        }
    }
}

pub struct RxResult {
    pub streams: Vec<StreamRx>,
    pub unknown_ssrc: u64,
    pub malformed: u64,
}

/// The caller's RTP receiver: every datagram on the RTP socket is counted
/// (`rx_total`), then attributed to its stream by SSRC.
pub fn run_receiver(fd: RawFd, sh: &Shared) -> RxResult {
    let n = sh.n;
    let seq0s: Vec<u16> = (0..n).map(|i| seq0(sh.seed, i)).collect();
    let mut streams = vec![StreamRx::default(); n];
    let mut unknown_ssrc = 0u64;
    let mut malformed = 0u64;
    let mut m = Mmsg::new(BATCH, RX_BUF);
    while !sh.stop_all.load(Acquire) {
        if !sys::poll_readable(fd, 20) {
            continue;
        }
        for _ in 0..64 {
            let got = m.recv(fd);
            if got == 0 {
                break;
            }
            sh.rx_total.fetch_add(got as u64, Relaxed);
            for j in 0..got {
                let p = m.received(j);
                if p.len() < 12 || p[0] >> 6 != 2 {
                    malformed += 1;
                    continue;
                }
                let seq = u16::from_be_bytes([p[2], p[3]]);
                let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
                let idx = ssrc.wrapping_sub(SSRC_BASE) as usize;
                if ssrc < SSRC_BASE || idx >= n {
                    unknown_ssrc += 1;
                    continue;
                }
                let st = &mut streams[idx];
                if let Some(k) = st.on_packet(seq, seq0s[idx]) {
                    st.count_window(
                        k,
                        sh.win_start[idx].load(Acquire),
                        sh.win_end[idx].load(Acquire),
                    );
                }
            }
            if got < m.cap() {
                break;
            }
        }
    }
    RxResult {
        streams,
        unknown_ssrc,
        malformed,
    }
}

pub struct EchoResult {
    pub echoed: u64,
    pub send_errors: u64,
}

/// The callee's media: every datagram goes back unchanged to its source.
pub fn run_echo(fd: RawFd, sh: &Shared) -> EchoResult {
    let mut m = Mmsg::new(BATCH, RX_BUF);
    let mut echoed = 0u64;
    let mut send_errors = 0u64;
    while !sh.stop_all.load(Acquire) {
        if !sys::poll_readable(fd, 20) {
            continue;
        }
        for _ in 0..64 {
            let got = m.recv(fd);
            if got == 0 {
                break;
            }
            echoed += got as u64;
            sh.echoed_total.fetch_add(got as u64, Relaxed);
            for j in 0..got {
                m.echo_back(j);
            }
            let (_, e) = m.send(fd, got, |_| {});
            send_errors += e;
            if got < m.cap() {
                break;
            }
        }
    }
    EchoResult {
        echoed,
        send_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(st: &mut StreamRx, seq0: u16, ks: &[u64]) {
        for &k in ks {
            st.on_packet(seq0.wrapping_add(k as u16), seq0);
        }
    }

    #[test]
    fn in_order() {
        let mut st = StreamRx::default();
        feed(&mut st, 1000, &(0..500).collect::<Vec<_>>());
        assert_eq!(st.received, 500);
        assert_eq!((st.duplicates, st.reordered, st.stale), (0, 0, 0));
        assert_eq!(st.max_k, 499);
    }

    #[test]
    fn one_lost() {
        let mut st = StreamRx::default();
        feed(&mut st, 7, &[0, 1, 2, 4, 5]);
        assert_eq!(st.received, 5);
        assert_eq!(6 - st.received, 1, "k=3 missing");
        assert_eq!((st.duplicates, st.reordered), (0, 0));
    }

    #[test]
    fn duplicate() {
        let mut st = StreamRx::default();
        feed(&mut st, 7, &[0, 1, 1, 2, 0]);
        assert_eq!(st.received, 3);
        assert_eq!(st.duplicates, 2);
        assert_eq!(st.reordered, 0);
    }

    #[test]
    fn reordered_pair_is_not_lost() {
        let mut st = StreamRx::default();
        feed(&mut st, 7, &[0, 1, 3, 2, 4]);
        assert_eq!(st.received, 5);
        assert_eq!(st.reordered, 1);
        assert_eq!(st.duplicates, 0);
        // The late one again is a duplicate.
        feed(&mut st, 7, &[2]);
        assert_eq!(st.duplicates, 1);
        assert_eq!(st.received, 5);
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let mut st = StreamRx::default();
        let seq0 = 65530u16;
        let mut got = Vec::new();
        for k in 0..70_000u64 {
            if k == 8 {
                continue; // seq 2 after the first wrap: lost
            }
            if let Some(x) = st.on_packet(seq0.wrapping_add(k as u16), seq0) {
                got.push(x);
            }
        }
        assert_eq!(st.received, 69_999);
        assert_eq!(st.max_k, 69_999);
        assert_eq!((st.duplicates, st.reordered, st.stale), (0, 0, 0));
        assert_eq!(got[5], 5); // seq 65535
        assert_eq!(got[6], 6); // seq 0
        assert_eq!(got[8], 9);
        // A reordered pair across the wrap.
        let mut st = StreamRx::default();
        for seq in [65534u16, 0, 65535, 1] {
            st.on_packet(seq, 65534);
        }
        assert_eq!(st.received, 4);
        assert_eq!(st.reordered, 1);
        assert_eq!(st.max_k, 3);
    }

    #[test]
    fn first_packet_late_and_old_packets() {
        let mut st = StreamRx::default();
        // First arrival is k=5: 0..4 come later, reordered, not lost.
        feed(&mut st, 100, &[5, 0, 1, 2, 3, 4, 6]);
        assert_eq!(st.received, 7);
        assert_eq!(st.reordered, 5);
        // Far beyond the bitmap: stale, not counted.
        feed(&mut st, 100, &(7..3000).collect::<Vec<_>>());
        feed(&mut st, 100, &[10]);
        assert_eq!(st.stale, 1);
        assert_eq!(st.received, 3000);
    }

    #[test]
    fn window_marks() {
        let mut st = StreamRx::default();
        let (ws, we) = (10u64, 20u64);
        for k in 0..30u64 {
            if k == 15 {
                continue;
            }
            if let Some(k) = st.on_packet(k as u16, 0) {
                st.count_window(k, ws, we);
            }
        }
        let in_window = st.rx_ge_start - st.rx_ge_end;
        assert_eq!(in_window, 9);
        assert_eq!((we - ws) - in_window, 1);
    }

    #[test]
    fn dest_packing_and_payload() {
        let d = pack_dest(std::net::Ipv4Addr::LOCALHOST, 5636);
        assert_eq!((d >> 16) as u32, 0x7F00_0001);
        assert_eq!(d as u16, 5636);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(tone_payload().len(), 160);
    }
}
