//! A media worker: one OS thread, one epoll set, the legs it owns, and the
//! packet loop.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{lock, App, Bells, Format, LegEvent, LegIo, Listener, Registry, Shared, POLL};
use crate::error::LegId;
use crate::prompt::{Player, FRAME};
use crate::record::{Recording, Side};
use crate::rtcp::{self, ReceptionStats, ReportBlock, SenderInfo};
use crate::rtp::{self, DtmfDetector, TelephoneEvent};
use crate::sys::{self, Event, RecvBatch, SendBatch, BATCH};
use std::os::fd::RawFd;

/// The media clock's period: one frame of every prompt per tick.
const TICK: Duration = Duration::from_millis(20);

/// Frames a late tick may send at once to catch up; beyond that the
/// clock skips ahead (the timestamps still advance, so the far end sees a
/// gap, not a squeeze).
const MAX_CATCH_UP: u32 = 3;

/// Token of the worker's doorbell in its epoll set. A socket's token is
/// its port number (RTP even, RTCP odd), which never reaches this value:
/// it stays valid while the pair is parked in the set (see
/// [`crate::ports`]), whatever slot its next leg gets.
const WAKE: u64 = u64::MAX;

/// Room for one frame the engine generates (header and up to 60 ms of
/// L16), with tailroom for an SRTP tag.
const FRAME_BUF: usize = 2048;

/// Converts one RTP packet in place from the codec and payload types of
/// the leg it came from to those of the leg it goes to: G.711 μ-law and
/// A-law one table lookup a byte, L16 widened or narrowed in place (the
/// buffer has room), telephone-events renumbered. Packets of other payload
/// types pass unchanged. Returns the new length.
fn transcode(buf: &mut [u8], len: usize, h: &rtp::Header, from: Format, to: Format) -> usize {
    use crate::codec::{self, Codec};
    if h.payload_type == from.payload_type {
        let (ps, pe) = (h.payload_start, h.payload_end);
        let new_end = match (from.codec, to.codec) {
            (a, b) if a == b => pe,
            (Codec::Pcmu, Codec::Pcma) => {
                codec::ulaw_to_alaw(&mut buf[ps..pe]);
                pe
            }
            (Codec::Pcma, Codec::Pcmu) => {
                codec::alaw_to_ulaw(&mut buf[ps..pe]);
                pe
            }
            (g711, Codec::L16) => {
                let n = pe - ps;
                if ps + 2 * n > buf.len() {
                    return len;
                }
                // Backwards, so each byte is read before it is overwritten.
                for i in (0..n).rev() {
                    let code = buf[ps + i];
                    let s = if g711 == Codec::Pcmu {
                        codec::ulaw_decode(code)
                    } else {
                        codec::alaw_decode(code)
                    };
                    buf[ps + 2 * i..ps + 2 * i + 2].copy_from_slice(&s.to_be_bytes());
                }
                ps + 2 * n
            }
            (Codec::L16, g711) => {
                let n = (pe - ps) / 2;
                for i in 0..n {
                    let s = i16::from_be_bytes([buf[ps + 2 * i], buf[ps + 2 * i + 1]]);
                    buf[ps + i] = if g711 == Codec::Pcmu {
                        codec::ulaw_encode(s)
                    } else {
                        codec::alaw_encode(s)
                    };
                }
                ps + n
            }
            _ => pe,
        };
        buf[1] = (buf[1] & 0x80) | (to.payload_type & 0x7F);
        if new_end == pe {
            return len;
        }
        // Padding does not survive a size change: drop it.
        buf[0] &= !0x20;
        return new_end;
    }
    if Some(h.payload_type) == from.event_payload_type {
        if let Some(pt) = to.event_payload_type {
            buf[1] = (buf[1] & 0x80) | (pt & 0x7F);
        }
    }
    len
}

/// The wall clock as a 64-bit NTP timestamp (seconds since 1900).
fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// A relayed sequence number this far behind the line's means the source
/// restarted its numbering (RFC 3550's MAX_DROPOUT).
const RESTART: u16 = 3000;

/// Readiness reports taken per `epoll_wait`.
const EVENTS: usize = 256;

/// Batches read from one socket per readiness report before moving on to
/// the next socket; epoll is level-triggered, so a socket with more queued
/// is reported again on the next round.
const RECV_ROUNDS: usize = 2;

struct Slot {
    io: LegIo,
    /// The slot of the bridged leg, when this worker holds it too.
    peer: Option<usize>,
    app: SlotApp,
    app_gen: u64,
    format: Format,
    listener: Option<Listener>,
    dtmf: DtmfDetector,
    /// The stream this leg sends when the engine itself is the source.
    out: OutStream,
    /// When the last packet (RTP or RTCP) arrived, to the worker's clock
    /// of the wake-up that read it.
    last_rx: Instant,
    rtp_timeout: Option<Duration>,
    /// The timeout was reported.
    timed_out: bool,
    recording: Option<Arc<Recording>>,
    /// Reception statistics of the phone's RTP.
    rx: ReceptionStats,
    /// The last SR from the phone: its NTP middle bits and when it came.
    last_sr: Option<(u32, Instant)>,
    /// RTP the engine generated for the leg (prompts), for its SRs.
    generated: (u32, u32),
    /// When the engine next reports on this leg (while it terminates the
    /// leg's media).
    next_report: Option<Instant>,
}

/// Decodes an RTP packet (parsed as `h`) of the leg's codec and gives it
/// to the leg's recording as `side`; packets of other payload types are not
/// audio.
#[inline]
fn tap(rec: &Recording, side: Side, now: Instant, format: Format, h: &rtp::Header, packet: &[u8]) {
    if !rec.wants(side) || h.payload_type != format.payload_type {
        return;
    }
    let mut pcm = [0i16; 1024];
    let n = format
        .codec
        .decode(&packet[h.payload_start..h.payload_end], &mut pcm);
    rec.push(side, now, h.sequence, &pcm[..n]);
}

enum SlotApp {
    Idle,
    Echo,
    Play(Box<Player>, u64),
}

/// What a leg takes along when it moves to another worker (when it is
/// bridged to a leg of that worker), so that the phone's stream and the
/// statistics go on as if nothing happened.
pub(crate) struct Carried {
    out: OutStream,
    rx: ReceptionStats,
    generated: (u32, u32),
    last_sr: Option<(u32, Instant)>,
}

/// The RTP stream a leg's phone hears: one SSRC and one line of sequence
/// numbers and timestamps, whatever feeds it (the engine's prompts, the
/// bridged phone, another phone after a transfer, a far phone that changed
/// SSRC on a re-INVITE).
///
/// The first bridged source of a leg that has sent nothing yet is adopted
/// as it is, so plain passthrough leaves the phones' own numbering
/// untouched and costs a comparison per packet. When the source changes
/// (another SSRC, a new peer, prompts in between), the line is rebased:
/// later packets keep the leg's SSRC, their sequence numbers continue from
/// the last one sent, their timestamps advance by the wall-clock gap, and
/// the first one carries the marker bit. Relayed RTCP is renumbered to
/// match (`rtcp::renumber`).
struct OutStream {
    ssrc: u32,
    /// One past the highest sequence number sent.
    sequence: u16,
    /// Timestamp of the last packet sent (of the highest sequence).
    timestamp: u32,
    /// Set the marker bit on the next packet (start of a talkspurt).
    marker: bool,
    /// When the last packet went out; `None` before the first.
    last_at: Option<Instant>,
    /// Samples the last audio packet carried (its ptime at 8 kHz), the
    /// least a resumed line's timestamp moves on by.
    last_samples: u32,
    /// The engine's prompts feed the line frame after frame.
    generating: bool,
    /// The relayed source mapped onto the line, and the offsets added to
    /// its sequence numbers and timestamps.
    source: Option<u32>,
    seq_delta: u16,
    ts_delta: u32,
    /// The mapping is not the identity: headers are rewritten.
    rewrite: bool,
    /// The source's sequence number at the rebase: older packets of the
    /// source are late and dropped.
    base: u16,
    /// Everything on the line so far is the numbering of the phone whose
    /// SSRC the line carries, unchanged: that phone coming back (a leg
    /// moved to another worker, a re-bridge) is not a change.
    own: bool,
}

/// The process id, read once (a system call each time otherwise).
fn pid() -> u64 {
    static PID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PID.get_or_init(|| u64::from(std::process::id()))
}

impl OutStream {
    fn new(id: LegId) -> OutStream {
        // Not cryptographic: distinct per leg and per run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ pid();
        let x = (id.0 ^ t.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        OutStream {
            ssrc: (x >> 32) as u32,
            sequence: (x >> 16) as u16,
            timestamp: x as u32,
            marker: true,
            last_at: None,
            last_samples: FRAME as u32,
            generating: false,
            source: None,
            seq_delta: 0,
            ts_delta: 0,
            rewrite: false,
            base: 0,
            own: false,
        }
    }

    /// The timestamp for a packet that resumes the line at `now`: one
    /// frame after the last, or the wall-clock time since it (8 kHz).
    fn resume_timestamp(&self, now: Instant) -> u32 {
        let Some(at) = self.last_at else {
            return self.timestamp;
        };
        let gap = (now.saturating_duration_since(at).as_micros() as u64 * 8 / 1000) as u32;
        self.timestamp.wrapping_add(gap.max(self.last_samples))
    }

    /// Next (sequence, timestamp) of a generated frame; the caller sends it
    /// and then calls `sent`.
    fn next_frame(&mut self, now: Instant) -> (u16, u32) {
        if !self.generating {
            let ts = self.resume_timestamp(now);
            self.generating = true;
            self.own = false;
            self.source = None;
            self.marker = true;
            (self.sequence, ts)
        } else {
            (self.sequence, self.timestamp.wrapping_add(FRAME as u32))
        }
    }

    /// Record that a packet numbered (sequence, timestamp) went out.
    #[inline]
    fn sent(&mut self, seq: u16, ts: u32, now: Instant) {
        // Ahead, or so far behind that the source restarted its numbering.
        let d = seq.wrapping_sub(self.sequence) as i16;
        if d >= 0 || d < -(RESTART as i16) {
            self.sequence = seq.wrapping_add(1);
            self.timestamp = ts;
        }
        self.last_at = Some(now);
    }

    /// Map the relayed RTP packet in `buf` (parsed as `h`) onto the line,
    /// rewriting its header when the line is not the source's numbering.
    /// False for a late packet from before the rebase (its number on the
    /// line was already used): the caller drops it. `audio` is false for
    /// RFC 4733 events, which never take the marker bit of a new talkspurt
    /// (on an event it means a new event); `samples` is what a packet of
    /// the leg's codec carries (0 for anything else).
    #[inline]
    fn relay(
        &mut self,
        buf: &mut [u8],
        h: &rtp::Header,
        audio: bool,
        samples: u32,
        now: Instant,
    ) -> bool {
        if self.source != Some(h.ssrc) {
            self.rebase(h, now);
        } else if self.rewrite && (h.sequence.wrapping_sub(self.base) as i16) < 0 {
            return false;
        }
        let seq = h.sequence.wrapping_add(self.seq_delta);
        let ts = h.timestamp.wrapping_add(self.ts_delta);
        if self.rewrite {
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&ts.to_be_bytes());
            buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        }
        if self.marker && audio {
            buf[1] |= 0x80;
            self.marker = false;
        }
        if samples > 0 {
            self.last_samples = samples;
        }
        self.sent(seq, ts, now);
        true
    }

    fn rebase(&mut self, h: &rtp::Header, now: Instant) {
        self.generating = false;
        self.source = Some(h.ssrc);
        if self.last_at.is_none() || (self.own && h.ssrc == self.ssrc) {
            if self.last_at.is_none() {
                self.sequence = h.sequence;
                self.timestamp = h.timestamp;
            }
            self.own = true;
            self.ssrc = h.ssrc;
            self.seq_delta = 0;
            self.ts_delta = 0;
            self.rewrite = false;
            // The phone's own first packet keeps its own marker.
            self.marker = false;
        } else {
            self.base = h.sequence;
            self.seq_delta = self.sequence.wrapping_sub(h.sequence);
            self.ts_delta = self.resume_timestamp(now).wrapping_sub(h.timestamp);
            self.rewrite = self.seq_delta != 0 || self.ts_delta != 0 || self.ssrc != h.ssrc;
            self.own = false;
            self.marker = true;
        }
    }

    /// How RTCP from the phone that feeds this line is renumbered for this
    /// line's phone: its sender SSRC and SR timestamp.
    fn rtcp_sender(&self) -> Option<(u32, u32, u32)> {
        match self.source {
            Some(src) if self.rewrite => Some((src, self.ssrc, self.ts_delta)),
            _ => None,
        }
    }

    /// How reports about this line (sent by this line's phone) are
    /// renumbered for the phone that feeds it.
    fn rtcp_blocks(&self) -> Option<(u32, u32, u16)> {
        match self.source {
            Some(src) if self.rewrite => Some((self.ssrc, src, self.seq_delta)),
            _ => None,
        }
    }
}

pub(crate) struct Worker {
    index: usize,
    shared: Arc<Shared>,
    slots: Vec<Option<Slot>>,
    /// By pair index (RTP port less the range's first, halved): the slot
    /// of the leg holding that pair here, plus one; 0 for none.
    by_port: Vec<u32>,
    /// The range's first RTP port.
    first_port: u16,
    free: Vec<usize>,
    by_id: HashMap<LegId, usize>,
    /// Swapped with this worker's dirty list in the registry.
    dirty: Vec<LegId>,
    /// Slots playing a prompt, driven by the media clock.
    playing: Vec<usize>,
    /// The media clock's next tick, while anything plays.
    next_tick: Option<Instant>,
    /// The next look at the dirty list without a doorbell, while the worker
    /// holds legs ([`crate::engine::POLL`]).
    next_poll: Option<Instant>,
    /// This worker's flag in [`Registry::pending`].
    pending: Arc<[AtomicBool]>,
    /// The next once-a-second look at every leg (RTP timeouts, statistics,
    /// RTCP reports), while the worker holds any.
    next_check: Option<Instant>,
    /// Where arrival times are counted from (RTP timestamp units).
    epoch: Instant,
    /// The time of the current wake-up (one clock read per wake-up, not
    /// per packet).
    now: Instant,
}

/// How often the RTP timeouts, statistics and reports are looked at.
const TIMEOUT_CHECK: Duration = Duration::from_secs(1);

/// RTCP report interval of legs whose media the engine terminates (RFC
/// 3550's 5 s minimum).
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The CNAME of the engine's RTCP.
const CNAME: &str = "dialtone";

impl Worker {
    /// Runs on the engine's thread, so setup errors reach the caller.
    pub(crate) fn new(index: usize, shared: Arc<Shared>) -> io::Result<Self> {
        shared.epolls[index].add(shared.bells[index].raw(), WAKE)?;
        let pending = lock(&shared.registry).pending.clone();
        let by_port = vec![0; shared.allocator().capacity()];
        let first_port = shared.allocator().first_port();
        Ok(Worker {
            by_port,
            first_port,
            next_poll: None,
            pending,
            index,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            dirty: Vec::new(),
            playing: Vec::new(),
            next_tick: None,
            next_check: None,
            epoch: Instant::now(),
            now: Instant::now(),
        })
    }

    /// The loop. Returns when the engine shuts down; dropping `self` then
    /// closes every socket this worker holds.
    pub(crate) fn run(mut self) {
        let mut events: Vec<Event> = vec![sys::empty_event(); EVENTS];
        let mut buf = vec![0u8; FRAME_BUF].into_boxed_slice();
        let (mut rb, mut sb) = (RecvBatch::new(), SendBatch::new());
        tracing::debug!(worker = self.index, "media worker running");
        loop {
            let wake = [self.next_tick, self.next_check, self.next_poll]
                .into_iter()
                .flatten()
                .min();
            let timeout = match wake {
                Some(t) => {
                    let left = t.saturating_duration_since(Instant::now());
                    // Round up: waking early would spin.
                    left.as_micros().div_ceil(1000) as i32
                }
                None => -1,
            };
            let n = match self.shared.epolls[self.index].wait(&mut events, timeout) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(worker = self.index, error = %e, "epoll_wait failed; media worker stops");
                    break;
                }
            };
            self.now = Instant::now();
            let ready = &events[..n];
            // Control first: an API call made before a packet was sent takes
            // effect before that packet is relayed.
            let rung = ready.iter().any(|ev| sys::token(ev) == WAKE);
            if rung {
                self.shared.bells[self.index].drain();
                if self.shared.shutdown.load(Ordering::Acquire) {
                    break;
                }
            }
            if rung || self.pending[self.index].load(Ordering::Acquire) {
                self.reconcile();
            } else if self.next_poll.is_some_and(|t| self.now >= t) {
                self.next_poll = Some(self.now + POLL);
            }
            for ev in ready {
                let token = sys::token(ev);
                if token != WAKE {
                    let port = token as u16;
                    match self.slot_of(port & !1) {
                        Some(slot) => self.relay(slot, usize::from(port & 1), &mut rb, &mut sb),
                        None => self.stray(port & !1),
                    }
                }
            }
            if let Some(t) = self.next_tick {
                let now = Instant::now();
                if now >= t {
                    self.tick(now, t, &mut buf);
                }
            }
            if self.next_check.is_some_and(|t| self.now >= t) {
                self.housekeeping();
            }
        }
        for slot in self.slots.iter().flatten() {
            slot.io.stats.set_relaying(false);
        }
        tracing::debug!(
            worker = self.index,
            legs = self.by_id.len(),
            "media worker stopped"
        );
    }

    /// Read what is queued on one socket (up to [`RECV_ROUNDS`] batches of
    /// [`BATCH`] datagrams, one `recvmmsg` each) and forward each datagram
    /// out of the bridged leg's socket of the same stream (or, for an echo,
    /// back out of this one), the whole batch with one `sendmmsg`. No
    /// allocation, no lock, no shared write other than the owner-only
    /// counters.
    #[inline]
    fn relay(&mut self, slot: usize, stream: usize, rb: &mut RecvBatch, sb: &mut SendBatch) {
        let now = self.now;
        for _ in 0..RECV_ROUNDS {
            let Some(Some(leg)) = self.slots.get(slot) else {
                return;
            };
            let n = match rb.recv(leg.io.sockets[stream].as_raw_fd()) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending socket error is cleared by reporting it; if more
                // is queued, level-triggered epoll reports the socket again.
                Err(_) => return,
            };
            // Where this batch goes: one socket, with one sendmmsg.
            let mut out: Option<(RawFd, usize)> = None;
            for i in 0..n {
                let (buf, len, src, truncated) = rb.get(i);
                let Some(Some(leg)) = self.slots.get_mut(slot) else {
                    return;
                };
                leg.io.stats.received(stream, len);
                let Some(src) = src.filter(|_| !truncated) else {
                    // Larger than DATAGRAM_MAX (or no source): not RTP.
                    leg.io.stats.dropped(stream);
                    continue;
                };
                leg.last_rx = now;
                // Symmetric RTP: the phone is wherever its latest packet
                // came from.
                leg.io.latched[stream] = Some(src);
                let peer = leg.peer;
                // One parse per RTP packet serves the statistics, the DTMF
                // detector, the recording and the transcoder.
                // (RTCP multiplexed on the RTP port, RFC 5761: second byte
                // 192..=223, is not RTP.)
                let hdr = if stream == 0 && !(192..=223).contains(&buf[1]) {
                    rtp::Header::parse(&buf[..len])
                } else {
                    None
                };
                if let Some(h) = &hdr {
                    let arrival =
                        (now.duration_since(self.epoch).as_micros() as u64 * 8 / 1000) as u32;
                    leg.rx.update(h.ssrc, h.sequence, h.timestamp, arrival);
                    if let Some(ev_pt) = leg.format.event_payload_type {
                        Self::detect(leg, ev_pt, h, &buf[..len]);
                    }
                    if let Some(rec) = &leg.recording {
                        tap(rec, Side::Received, now, leg.format, h, &buf[..len]);
                    }
                }
                if stream == 0 && peer.is_none() && matches!(leg.app, SlotApp::Echo) {
                    sb.push(buf.as_ptr(), len, src);
                    out = Some((leg.io.sockets[0].as_raw_fd(), slot));
                    if let (Some(rec), Some(h)) = (&leg.recording, &hdr) {
                        tap(rec, Side::Sent, now, leg.format, h, &buf[..len]);
                    }
                    continue;
                }
                if stream == 1 {
                    if let Some(mid) = rtcp::sender_report_ntp_middle(&buf[..len]) {
                        leg.last_sr = Some((mid, now));
                    }
                }
                let in_format = leg.format;
                let queued = match peer.map(|p| (p, self.slots.get_disjoint_mut([slot, p]))) {
                    Some((p, Ok([Some(from), Some(to)]))) => {
                        match to.io.latched[stream].or(to.io.remote[stream]) {
                            Some(dest) => {
                                // `None`: a late packet from before a rebase, dropped.
                                let len = match &hdr {
                                    Some(h) => {
                                        let len = if in_format != to.format {
                                            transcode(buf, len, h, in_format, to.format)
                                        } else {
                                            len
                                        };
                                        let audio =
                                            Some(h.payload_type) != in_format.event_payload_type;
                                        // Samples of a packet of the source's codec.
                                        let samples = if h.payload_type == in_format.payload_type {
                                            ((h.payload_end - h.payload_start)
                                                / in_format.codec.bytes_per_sample())
                                                as u32
                                        } else {
                                            0
                                        };
                                        to.out.relay(buf, h, audio, samples, now).then_some(len)
                                    }
                                    None if stream == 0 => Some(len),
                                    None => {
                                        let r = rtcp::Renumber {
                                            sender: to.out.rtcp_sender(),
                                            blocks: from.out.rtcp_blocks(),
                                        };
                                        if r.sender.is_some() || r.blocks.is_some() {
                                            rtcp::renumber(&mut buf[..len], r);
                                        }
                                        Some(len)
                                    }
                                };
                                if let Some(len) = len {
                                    // What the far leg hears, as converted (parsed
                                    // again only when that leg records).
                                    if let Some(rec) =
                                        to.recording.as_ref().filter(|_| hdr.is_some())
                                    {
                                        if let Some(h) = rtp::Header::parse(&buf[..len]) {
                                            tap(rec, Side::Sent, now, to.format, &h, &buf[..len]);
                                        }
                                    }
                                    sb.push(buf.as_ptr(), len, dest);
                                    out = Some((to.io.sockets[stream].as_raw_fd(), p));
                                    true
                                } else {
                                    false
                                }
                            }
                            None => false,
                        }
                    }
                    _ => false,
                };
                if !queued {
                    if let Some(Some(leg)) = self.slots.get(slot) {
                        leg.io.stats.dropped(stream);
                    }
                }
            }
            if let Some((fd, to)) = out.filter(|_| sb.len() > 0) {
                let slots = &self.slots;
                if let (Some(Some(from)), Some(Some(to))) = (slots.get(slot), slots.get(to)) {
                    sb.send(fd, |sent| match sent {
                        Some(bytes) => to.io.stats.sent(stream, bytes),
                        None => from.io.stats.dropped(stream),
                    });
                }
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Once a second: publish each leg's reception statistics, report the
    /// armed legs that have heard nothing for their timeout, and send the
    /// RTCP reports that are due.
    fn housekeeping(&mut self) {
        let now = self.now;
        let mut buf = [0u8; 256];
        for leg in self.slots.iter_mut().flatten() {
            leg.io
                .stats
                .set_reception(leg.rx.expected(), leg.rx.lost(), leg.rx.jitter());
            if let Some(t) = leg.rtp_timeout {
                if !leg.timed_out && now.duration_since(leg.last_rx) >= t {
                    leg.timed_out = true;
                    tracing::info!(leg = %leg.io.id, timeout_s = t.as_secs(), "no RTP: media timeout");
                    if let Some(l) = &leg.listener {
                        l(LegEvent::MediaTimeout);
                    }
                }
            }
            let terminated = leg.peer.is_none() && !matches!(leg.app, SlotApp::Idle);
            if !terminated {
                leg.next_report = None;
                continue;
            }
            match leg.next_report {
                None => leg.next_report = Some(now + REPORT_INTERVAL),
                Some(t) if now >= t => {
                    leg.next_report = Some(now + REPORT_INTERVAL);
                    Self::report(leg, now, &mut buf);
                }
                Some(_) => {}
            }
        }
        self.next_check = (!self.by_id.is_empty()).then(|| now + TIMEOUT_CHECK);
    }

    /// One compound RTCP report for a leg whose media the engine
    /// terminates: SR if it generated RTP (prompts), else RR.
    fn report(leg: &mut Slot, now: Instant, buf: &mut [u8]) {
        let Some(dest) = leg.io.latched[1].or(leg.io.remote[1]) else {
            return;
        };
        let block = (leg.rx.received() > 0).then(|| {
            let (lsr, dlsr) = match leg.last_sr {
                Some((mid, at)) => (
                    mid,
                    (now.duration_since(at).as_micros() as u64 * 65536 / 1_000_000) as u32,
                ),
                None => (0, 0),
            };
            ReportBlock {
                ssrc: leg.rx.ssrc(),
                fraction_lost: leg.rx.take_fraction_lost(),
                lost: leg.rx.lost() as i32,
                extended_max: leg.rx.extended_max(),
                jitter: leg.rx.jitter(),
                lsr,
                dlsr,
            }
        });
        let sender = (leg.generated.0 > 0).then(|| SenderInfo {
            ntp: ntp_now(),
            rtp_timestamp: leg.out.timestamp,
            packets: leg.generated.0,
            octets: leg.generated.1,
        });
        let n = rtcp::write_report(buf, leg.out.ssrc, sender, block.as_ref(), CNAME);
        if n == 0 {
            return;
        }
        match leg.io.sockets[1].send_to(&buf[..n], dest) {
            Ok(n) => leg.io.stats.sent(1, n),
            Err(_) => leg.io.stats.dropped(1),
        }
    }

    /// Report RFC 4733 digits in a received RTP packet.
    #[inline]
    fn detect(leg: &mut Slot, ev_pt: u8, h: &rtp::Header, packet: &[u8]) {
        if h.payload_type != ev_pt {
            return;
        }
        let Some(ev) = TelephoneEvent::parse(&packet[h.payload_start..h.payload_end]) else {
            return;
        };
        for d in leg.dtmf.feed(h.timestamp, ev).into_iter().flatten() {
            if let Some(l) = &leg.listener {
                l(LegEvent::Dtmf {
                    digit: d.digit,
                    duration_ms: d.duration_ms,
                });
            }
        }
    }

    /// One tick of the media clock: every playing leg sends the frames
    /// that are due.
    fn tick(&mut self, now: Instant, due: Instant, buf: &mut [u8]) {
        let late = now.duration_since(due);
        let mut frames = 1 + (late.as_micros() / TICK.as_micros()) as u32;
        let mut skipped = 0;
        if frames > MAX_CATCH_UP {
            skipped = frames - MAX_CATCH_UP;
            frames = MAX_CATCH_UP;
        }
        let mut i = 0;
        while i < self.playing.len() {
            let slot = self.playing[i];
            let ended = match self.slots.get_mut(slot).and_then(Option::as_mut) {
                Some(leg) => {
                    if leg.out.generating {
                        // (A prompt's first frame resumes by the wall clock.)
                        leg.out.timestamp = leg.out.timestamp.wrapping_add(skipped * FRAME as u32);
                    }
                    let mut ended = false;
                    for _ in 0..frames {
                        if !Self::send_frame(leg, buf, now) {
                            ended = true;
                            break;
                        }
                    }
                    ended
                }
                None => true,
            };
            if ended {
                self.playing.swap_remove(i);
                if let Some(Some(leg)) = self.slots.get_mut(slot) {
                    if let SlotApp::Play(_, token) = std::mem::replace(&mut leg.app, SlotApp::Idle)
                    {
                        if let Some(l) = &leg.listener {
                            l(LegEvent::PlayDone {
                                token,
                                completed: true,
                            });
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
        self.next_tick = if self.playing.is_empty() {
            None
        } else {
            Some(due + TICK * (frames + skipped))
        };
    }

    /// Render, encode and send one frame of a playing leg; false once the
    /// prompt has ended.
    fn send_frame(leg: &mut Slot, buf: &mut [u8], now: Instant) -> bool {
        let SlotApp::Play(player, _) = &mut leg.app else {
            return false;
        };
        let mut pcm = [0i16; FRAME];
        let n = player.render(&mut pcm);
        if n == 0 {
            return false;
        }
        // A short last frame is padded with silence.
        pcm[n..].fill(0);
        let (seq, ts) = leg.out.next_frame(now);
        if let Some(rec) = &leg.recording {
            rec.push(Side::Sent, now, seq, &pcm);
        }
        let f = leg.format;
        let out = &mut leg.out;
        rtp::write_header(buf, f.payload_type, out.marker, seq, ts, out.ssrc);
        let len = rtp::HEADER_LEN + f.codec.encode(&pcm, &mut buf[rtp::HEADER_LEN..]);
        out.marker = false;
        out.last_samples = FRAME as u32;
        out.sent(seq, ts, now);
        leg.generated.0 = leg.generated.0.wrapping_add(1);
        leg.generated.1 = leg.generated.1.wrapping_add((len - rtp::HEADER_LEN) as u32);
        if let Some(dest) = leg.io.latched[0].or(leg.io.remote[0]) {
            match leg.io.sockets[0].send_to(&buf[..len], dest) {
                Ok(n) => leg.io.stats.sent(0, n),
                Err(_) => leg.io.stats.dropped(0),
            }
        }
        n == FRAME
    }

    /// Take on the app the registry wants for `slot`.
    fn apply_app(&mut self, slot: usize, app: &App, generation: u64) {
        let leg = self.slots[slot].as_mut().expect("live slot");
        if leg.app_gen == generation {
            return;
        }
        leg.app_gen = generation;
        let new = match app {
            App::Idle => SlotApp::Idle,
            App::Echo => SlotApp::Echo,
            App::Play(prompt, token) => {
                SlotApp::Play(Box::new(Player::new(Arc::clone(prompt))), *token)
            }
        };
        let old = std::mem::replace(&mut leg.app, new);
        if let SlotApp::Play(_, token) = old {
            if let Some(l) = &leg.listener {
                l(LegEvent::PlayDone {
                    token,
                    completed: false,
                });
            }
        }
        let plays = matches!(leg.app, SlotApp::Play(..));
        if plays {
            // A new prompt resumes the line where the wall clock is.
            leg.out.generating = false;
        }
        let listed = self.playing.iter().position(|&s| s == slot);
        match (plays, listed) {
            (true, None) => {
                self.playing.push(slot);
                if self.next_tick.is_none() {
                    // The first frame goes out now; the clock runs from here.
                    self.next_tick = Some(Instant::now());
                }
            }
            (false, Some(i)) => {
                self.playing.swap_remove(i);
            }
            _ => {}
        }
    }

    /// Apply the registry's desired state to every leg on this worker's
    /// dirty list.
    fn reconcile(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut bells = Bells::default();
        {
            let mut reg = lock(&shared.registry);
            std::mem::swap(&mut reg.dirty[self.index], &mut self.dirty);
            let mut dirty = std::mem::take(&mut self.dirty);
            self.pending[self.index].store(false, Ordering::Relaxed);
            for &id in &dirty {
                self.reconcile_leg(&mut reg, id, &mut bells);
            }
            dirty.clear();
            self.dirty = dirty;
            // Legs only come and go here, under the lock `mark` decides
            // under: an idle worker is rung, a busy one polls.
            let polling = !self.by_id.is_empty();
            reg.polling[self.index] = polling;
            self.next_poll = polling.then(|| self.now + POLL);
        }
        bells.ring(&shared);
    }

    fn reconcile_leg(&mut self, reg: &mut Registry, id: LegId, bells: &mut Bells) {
        let local = self.by_id.get(&id).copied();
        let Some(d) = reg.legs.get_mut(&id) else {
            // Released.
            if let Some(slot) = local {
                drop(self.remove(slot, true));
            }
            return;
        };
        if d.worker != self.index {
            // Moved away: hand the sockets over through the registry.
            if let Some(slot) = local {
                d.transit = Some(self.remove(slot, false));
                d.holder = None;
                let to = d.worker;
                reg.mark(to, id, bells);
            }
            return;
        }
        let slot = match local {
            Some(slot) => slot,
            None => match d.transit.take() {
                Some(io) => match self.insert(io) {
                    Ok(slot) => {
                        d.holder = Some(self.index);
                        slot
                    }
                    Err(e) => {
                        // The sockets are closed; the leg stays registered
                        // but carries no media.
                        tracing::error!(%id, error = %e, "cannot watch media sockets");
                        return;
                    }
                },
                // Still held by the worker it leaves, which will hand it
                // over and queue it here.
                None => return,
            },
        };
        let (remote, peer) = (d.remote, d.peer);
        let leg = self.slots[slot].as_mut().expect("slot just looked up");
        if leg.io.remote != remote {
            leg.io.remote = remote;
            leg.io.latched = [None, None];
        }
        if leg.format != d.format {
            leg.format = d.format;
            leg.dtmf = DtmfDetector::default();
        }
        match (&leg.listener, &d.listener) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
            (None, None) => {}
            _ => leg.listener = d.listener.clone(),
        }
        match (&leg.recording, &d.recording) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
            (None, None) => {}
            _ => leg.recording = d.recording.clone(),
        }
        if leg.rtp_timeout != d.rtp_timeout {
            leg.rtp_timeout = d.rtp_timeout;
            leg.timed_out = false;
            leg.last_rx = Instant::now();
        }
        self.apply_app(slot, &d.app, d.app_gen);
        let want = peer.and_then(|p| self.by_id.get(&p).copied());
        self.link(slot, want);
    }

    /// Make `slot` and `want` point at each other, undoing their previous
    /// links. The registry keeps bridges symmetric, so if `slot` wants
    /// `want`, `want` wants `slot`.
    fn link(&mut self, slot: usize, want: Option<usize>) {
        let old = self.slot(slot).peer;
        if old == want {
            return;
        }
        if let Some(o) = old {
            self.unpoint(o, slot);
        }
        self.set_peer(slot, want);
        if let Some(p) = want {
            let prev = self.slot(p).peer;
            if prev != Some(slot) {
                if let Some(q) = prev {
                    self.unpoint(q, p);
                }
                self.set_peer(p, Some(slot));
            }
        }
    }

    /// Clear `from`'s link if it points at `to`.
    fn unpoint(&mut self, from: usize, to: usize) {
        if self.slots[from]
            .as_ref()
            .is_some_and(|s| s.peer == Some(to))
        {
            self.set_peer(from, None);
        }
    }

    fn set_peer(&mut self, slot: usize, peer: Option<usize>) {
        let s = self.slots[slot].as_mut().expect("live slot");
        if s.peer != peer {
            // A new far end: its first packet rebases the line.
            s.out.source = None;
        }
        s.peer = peer;
        s.io.stats.set_relaying(peer.is_some());
    }

    /// The slot of the leg holding RTP port `port` here.
    #[inline]
    fn slot_of(&self, port: u16) -> Option<usize> {
        match self.by_port[self.pair_index(port)?] {
            0 => None,
            s => Some(s as usize - 1),
        }
    }

    /// Readiness of a pair no leg here holds: one this worker parked and
    /// still watches (drained: late packets of its last call), or one
    /// handed out to a leg on its way to this worker, which the next
    /// wake-up's reconcile takes in before it reads anything.
    #[cold]
    fn stray(&mut self, port: u16) {
        self.shared.allocator().drain_parked(port, self.index);
    }

    fn slot(&self, slot: usize) -> &Slot {
        self.slots[slot].as_ref().expect("live slot")
    }

    fn insert(&mut self, mut io: LegIo) -> io::Result<usize> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        io.parkable = false;
        let token = u64::from(io.port);
        if io.watched_by != Some(self.index) {
            // Parked by another worker: out of its set first.
            self.shared.unwatch(&mut io);
            let epoll = &self.shared.epolls[self.index];
            let rtp = io.sockets[0].as_raw_fd();
            let rtcp = io.sockets[1].as_raw_fd();
            if let Err(e) = epoll.add(rtp, token) {
                self.free.push(slot);
                return Err(e);
            }
            if let Err(e) = epoll.add(rtcp, token | 1) {
                let _ = epoll.delete(rtp);
                self.free.push(slot);
                return Err(e);
            }
            io.watched_by = Some(self.index);
            self.shared.registrations.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = self.pair_index(io.port) {
            self.by_port[i] = slot as u32 + 1;
        }
        self.by_id.insert(io.id, slot);
        if self.next_check.is_none() {
            self.next_check = Some(Instant::now() + TIMEOUT_CHECK);
        }
        let carried = io.carried.take();
        let (out, rx, generated, last_sr) = match carried {
            Some(c) => {
                let c = *c;
                (c.out, c.rx, c.generated, c.last_sr)
            }
            None => (
                OutStream::new(io.id),
                ReceptionStats::default(),
                (0, 0),
                None,
            ),
        };
        self.slots[slot] = Some(Slot {
            io,
            peer: None,
            app: SlotApp::Idle,
            app_gen: 0,
            format: Format::default(),
            listener: None,
            dtmf: DtmfDetector::default(),
            out,
            last_rx: Instant::now(),
            rtp_timeout: None,
            timed_out: false,
            recording: None,
            rx,
            last_sr,
            generated,
            next_report: None,
        });
        Ok(slot)
    }

    /// The index of RTP port `port`'s pair in [`Worker::by_port`].
    #[inline]
    fn pair_index(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(self.first_port)? / 2);
        (i < self.by_port.len()).then_some(i)
    }

    /// Takes a leg out of its slot. A leg that ends (`keep_watch`) stays in
    /// this worker's epoll set, so that the pair, parked, comes back to a
    /// leg here without an `epoll_ctl`; one that moves to another worker
    /// leaves it.
    fn remove(&mut self, slot: usize, keep_watch: bool) -> LegIo {
        let leg = self.slots[slot].take().expect("live slot");
        if let Some(i) = self.playing.iter().position(|&s| s == slot) {
            self.playing.swap_remove(i);
        }
        if self.playing.is_empty() {
            self.next_tick = None;
        }
        let mut parkable = true;
        if !keep_watch {
            for s in leg.io.sockets.iter() {
                parkable &= self.shared.epolls[self.index].delete(s.as_raw_fd()).is_ok();
            }
        }
        if let Some(i) = self.pair_index(leg.io.port) {
            self.by_port[i] = 0;
        }
        if let Some(p) = leg.peer {
            self.unpoint(p, slot);
        }
        leg.io.stats.set_relaying(false);
        self.by_id.remove(&leg.io.id);
        self.free.push(slot);
        let mut io = leg.io;
        io.parkable = parkable;
        if !keep_watch {
            io.watched_by = None;
        }
        io.carried = Some(Box::new(Carried {
            out: leg.out,
            rx: leg.rx,
            generated: leg.generated,
            last_sr: leg.last_sr,
        }));
        io
    }
}
