//! RTCP (RFC 3550): reception statistics of a leg's incoming RTP (loss and
//! interarrival jitter, the algorithms of appendices A.1, A.3 and A.8), and
//! the compound reports the engine sends for legs whose media it
//! terminates (an echo, a prompt): a sender report when it sent RTP since
//! the last one, otherwise a receiver report, each followed by an SDES
//! CNAME. Bridged legs carry the phones' own RTCP end to end.
//!
//! All of it works in place on caller-provided buffers: nothing allocates.

/// Sequence numbers a stream must deliver in order before it counts as
/// started (RFC 3550 A.1 `MIN_SEQUENTIAL`).
const MIN_SEQUENTIAL: u16 = 2;
/// A jump larger than this is a restart, not loss.
const MAX_DROPOUT: u16 = 3000;
/// Packets this far behind are duplicates or very late.
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// Reception statistics of one incoming RTP stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReceptionStats {
    ssrc: u32,
    started: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u16,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Transit of the previous packet, and the jitter estimate ×16.
    transit: Option<i64>,
    jitter16: u64,
}

impl ReceptionStats {
    fn init(&mut self, seq: u16) {
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// One RTP packet: its SSRC, sequence number and timestamp, and its
    /// arrival time in the same clock (timestamp units). A new SSRC starts
    /// the statistics over.
    pub fn update(&mut self, ssrc: u32, seq: u16, timestamp: u32, arrival: u32) {
        if !self.started || ssrc != self.ssrc {
            *self = ReceptionStats {
                ssrc,
                started: true,
                probation: MIN_SEQUENTIAL,
                max_seq: seq.wrapping_sub(1),
                ..Default::default()
            };
        }
        if !self.accept(seq) {
            return;
        }
        self.received += 1;
        // A.8: interarrival jitter.
        let transit = arrival.wrapping_sub(timestamp) as i32 as i64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs();
            // J += (|D| - J) / 16, kept ×16.
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// A.1 `update_seq`: false for a packet that does not count.
    fn accept(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += RTP_SEQ_MOD;
            }
            self.max_seq = seq;
        } else if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            if seq as u32 == self.bad_seq {
                // Two sequential packets after a big jump: the sender
                // restarted.
                self.init(seq);
            } else {
                self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // Duplicates and late packets count as received (as in A.1).
        true
    }

    /// The stream's SSRC (0 before any packet).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets received (duplicates included, as RFC 3550 counts).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Extended highest sequence number received.
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(self.max_seq as u32)
    }

    /// Packets expected from the first to the highest.
    pub fn expected(&self) -> u64 {
        if !self.started || self.probation > 0 {
            return 0;
        }
        (self.extended_max() as u64 + 1).saturating_sub(self.base_seq as u64)
    }

    /// Cumulative packets lost (duplicates can make it negative: clamped
    /// to the 24-bit signed range reports carry).
    pub fn lost(&self) -> i64 {
        (self.expected() as i64 - self.received as i64).clamp(-0x80_0000, 0x7F_FFFF)
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter16 >> 4) as u32
    }

    /// The fraction lost since the previous call (8-bit fixed point, as a
    /// report block carries it), and starts the next interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost = expected_interval as i64 - received_interval as i64;
        if expected_interval == 0 || lost <= 0 {
            0
        } else {
            ((lost << 8) / expected_interval as i64).min(255) as u8
        }
    }
}

/// What a report says about the stream it receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The SSRC reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report (×256).
    pub fraction_lost: u8,
    /// Cumulative lost (24-bit signed).
    pub lost: i32,
    /// Extended highest sequence number.
    pub extended_max: u32,
    /// Interarrival jitter (timestamp units).
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received (0: none).
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// What we sent, for a sender report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 << 32 | fraction).
    pub ntp: u64,
    /// RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

fn put_block(out: &mut [u8], b: &ReportBlock) {
    out[0..4].copy_from_slice(&b.ssrc.to_be_bytes());
    out[4] = b.fraction_lost;
    let lost = (b.lost as u32) & 0x00FF_FFFF;
    out[5..8].copy_from_slice(&lost.to_be_bytes()[1..]);
    out[8..12].copy_from_slice(&b.extended_max.to_be_bytes());
    out[12..16].copy_from_slice(&b.jitter.to_be_bytes());
    out[16..20].copy_from_slice(&b.lsr.to_be_bytes());
    out[20..24].copy_from_slice(&b.dlsr.to_be_bytes());
}

/// Writes a compound report into `out`: an SR (with `sender`) or an RR,
/// with one report block if `block` is given, then an SDES with `cname`.
/// Returns its length (0 if `out` is too small).
pub fn write_report(
    out: &mut [u8],
    ssrc: u32,
    sender: Option<SenderInfo>,
    block: Option<&ReportBlock>,
    cname: &str,
) -> usize {
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let rc = block.is_some() as usize;
    let first = 8 + if sender.is_some() { 20 } else { 0 } + 24 * rc;
    // SDES: header 4, SSRC 4, item 2 + len, end 1, padded to 4.
    let sdes = (4 + 4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    if out.len() < first + sdes {
        return 0;
    }
    out[0] = 0x80 | rc as u8;
    out[1] = if sender.is_some() { 200 } else { 201 };
    out[2..4].copy_from_slice(&((first / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    let mut at = 8;
    if let Some(s) = sender {
        out[at..at + 8].copy_from_slice(&s.ntp.to_be_bytes());
        out[at + 8..at + 12].copy_from_slice(&s.rtp_timestamp.to_be_bytes());
        out[at + 12..at + 16].copy_from_slice(&s.packets.to_be_bytes());
        out[at + 16..at + 20].copy_from_slice(&s.octets.to_be_bytes());
        at += 20;
    }
    if let Some(b) = block {
        put_block(&mut out[at..at + 24], b);
        at += 24;
    }
    let s = &mut out[at..at + sdes];
    s.fill(0);
    s[0] = 0x81;
    s[1] = 202;
    s[2..4].copy_from_slice(&((sdes / 4 - 1) as u16).to_be_bytes());
    s[4..8].copy_from_slice(&ssrc.to_be_bytes());
    s[8] = 1; // CNAME
    s[9] = cname.len() as u8;
    s[10..10 + cname.len()].copy_from_slice(cname);
    at + sdes
}

/// The middle 32 bits of the NTP timestamp of the first SR in a compound
/// packet, for the LSR of our next report.
pub fn sender_report_ntp_middle(packet: &[u8]) -> Option<u32> {
    if packet.len() < 28 || packet[0] >> 6 != 2 || packet[1] != 200 {
        return None;
    }
    Some(u32::from_be_bytes([
        packet[10], packet[11], packet[12], packet[13],
    ]))
}

/// How a relayed RTCP compound is renumbered when the RTP it describes is
/// (see the worker's `OutStream`): the sender's SSRC and its SR timestamp
/// follow the stream the receiving phone hears; report blocks about the
/// stream the sending phone hears name the SSRC and sequence numbers the
/// other phone really sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renumber {
    /// `(from, to, timestamp delta)` for sender SSRCs and SR timestamps.
    pub sender: Option<(u32, u32, u32)>,
    /// `(from, to, sequence delta to subtract)` for report blocks.
    pub blocks: Option<(u32, u32, u16)>,
}

/// Rewrites an RTCP compound packet in place as `r` says: SR, RR, SDES and
/// BYE sender SSRCs, the SR's RTP timestamp, and the SSRC and extended
/// highest sequence of report blocks. A malformed packet is left as far as
/// it parses.
pub fn renumber(packet: &mut [u8], r: Renumber) {
    let get = |p: &[u8], i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let mut at = 0;
    while at + 8 <= packet.len() {
        let p = &mut packet[at..];
        if p[0] >> 6 != 2 {
            return;
        }
        let count = (p[0] & 0x1F) as usize;
        let words = u16::from_be_bytes([p[2], p[3]]) as usize;
        let len = (words + 1) * 4;
        if len > p.len() {
            return;
        }
        let p = &mut p[..len];
        let kind = p[1];
        // SR and RR always name their sender; SDES and BYE name an SSRC
        // only when their count says one follows.
        let named =
            len >= 8 && (matches!(kind, 200 | 201) || (matches!(kind, 202 | 203) && count > 0));
        if let Some((from, to, ts_delta)) = r.sender.filter(|_| named) {
            if get(p, 4) == from {
                p[4..8].copy_from_slice(&to.to_be_bytes());
                if kind == 200 && len >= 28 {
                    let ts = get(p, 16).wrapping_add(ts_delta);
                    p[16..20].copy_from_slice(&ts.to_be_bytes());
                }
            }
        }
        if let (Some((from, to, seq_delta)), Some(first)) = (
            r.blocks,
            match kind {
                200 => Some(28),
                201 => Some(8),
                _ => None,
            },
        ) {
            for i in 0..count {
                let b = first + i * 24;
                if b + 24 > len {
                    break;
                }
                if get(p, b) == from {
                    p[b..b + 4].copy_from_slice(&to.to_be_bytes());
                    let ext = get(p, b + 8).wrapping_sub(seq_delta as u32);
                    p[b + 8..b + 12].copy_from_slice(&ext.to_be_bytes());
                }
            }
        }
        at += len;
    }
}

/// Parses the first report block of an SR or RR (what the far end says of
/// our stream).
pub fn first_report_block(packet: &[u8]) -> Option<ReportBlock> {
    if packet.len() < 8 || packet[0] >> 6 != 2 || packet[0] & 0x1F == 0 {
        return None;
    }
    let at = match packet[1] {
        200 => 28,
        201 => 8,
        _ => return None,
    };
    let b = packet.get(at..at + 24)?;
    let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let lost24 = u32::from_be_bytes([0, b[5], b[6], b[7]]);
    Some(ReportBlock {
        ssrc: u(0),
        fraction_lost: b[4],
        lost: ((lost24 << 8) as i32) >> 8,
        extended_max: u(8),
        jitter: u(12),
        lsr: u(16),
        dlsr: u(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut ReceptionStats, seqs: &[u16]) {
        for &q in seqs {
            let ts = q as u32 * 160;
            s.update(7, q, ts, ts + 1000);
        }
    }

    #[test]
    fn loss_is_expected_minus_received_after_probation() {
        let mut s = ReceptionStats::default();
        let seqs: Vec<u16> = (100..200).filter(|q| q % 10 != 3).collect();
        feed(&mut s, &seqs);
        // 100 sent; probation swallows the first; every tenth lost.
        assert_eq!(s.expected(), 99);
        assert_eq!(s.lost(), 10);
        assert_eq!(s.take_fraction_lost(), (10 * 256 / 99) as u8);
        // Nothing new: the next interval has no loss.
        feed(&mut s, &[200, 201]);
        assert_eq!(s.take_fraction_lost(), 0);
        assert_eq!(s.jitter(), 0, "perfectly paced");
    }

    #[test]
    fn wrap_duplicates_reordering_and_restarts() {
        let mut s = ReceptionStats::default();
        let seqs: Vec<u16> = (65500..=65535).chain(0..40).collect();
        feed(&mut s, &seqs);
        assert_eq!(s.extended_max(), 65536 + 39);
        assert_eq!(s.lost(), 0);
        // A duplicate and a swapped pair.
        feed(&mut s, &[41, 40, 40, 42]);
        assert_eq!(s.lost(), -1, "the duplicate counts, as in RFC 3550");
        // A big jump, then sequential: the sender restarted.
        feed(&mut s, &[30000, 30001, 30002]);
        assert_eq!(s.expected(), 2);
        // A new SSRC starts over.
        s.update(8, 5, 0, 0);
        assert_eq!(s.ssrc(), 8);
        assert_eq!(s.received(), 0);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = ReceptionStats::default();
        // Arrivals alternate 0 and 80 units late: |D| = 80 each time.
        for q in 0..400u16 {
            let ts = q as u32 * 160;
            s.update(1, q, ts, ts + if q % 2 == 0 { 0 } else { 80 });
        }
        let j = s.jitter();
        assert!((75..=80).contains(&j), "{j}");
    }

    #[test]
    fn reports_round_trip() {
        let block = ReportBlock {
            ssrc: 0x1234,
            fraction_lost: 25,
            lost: -3,
            extended_max: 70000,
            jitter: 42,
            lsr: 0xAABBCCDD,
            dlsr: 65536,
        };
        let mut buf = [0u8; 128];
        let n = write_report(&mut buf, 0x9999, None, Some(&block), "dialtone");
        assert_eq!(n % 4, 0);
        assert_eq!((buf[0], buf[1]), (0x81, 201));
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 7, "RR of 32 bytes");
        assert_eq!(first_report_block(&buf[..n]), Some(block));
        assert_eq!(buf[32 + 1], 202, "SDES follows");
        assert_eq!(&buf[32 + 10..32 + 18], b"dialtone");
        let sender = SenderInfo {
            ntp: 0x0102_0304_0506_0708,
            rtp_timestamp: 160,
            packets: 10,
            octets: 1600,
        };
        let n = write_report(&mut buf, 0x9999, Some(sender), Some(&block), "x");
        assert_eq!(buf[1], 200);
        assert_eq!(sender_report_ntp_middle(&buf[..n]), Some(0x0304_0506));
        assert_eq!(first_report_block(&buf[..n]), Some(block));
        assert_eq!(write_report(&mut [0u8; 16], 1, None, None, "x"), 0);
    }

    #[test]
    fn renumber_rewrites_sender_and_blocks_of_a_compound() {
        let block = ReportBlock {
            ssrc: 0xB0B0,
            fraction_lost: 0,
            lost: 0,
            extended_max: 1000,
            jitter: 3,
            lsr: 0,
            dlsr: 0,
        };
        let sender = SenderInfo {
            ntp: 1,
            rtp_timestamp: 16000,
            packets: 10,
            octets: 1600,
        };
        let mut buf = [0u8; 128];
        let n = write_report(&mut buf, 0xA0A0, Some(sender), Some(&block), "x");
        let original = buf;
        // Nothing matches: unchanged.
        renumber(
            &mut buf[..n],
            Renumber {
                sender: Some((1, 2, 3)),
                blocks: Some((4, 5, 6)),
            },
        );
        assert_eq!(buf, original);
        renumber(
            &mut buf[..n],
            Renumber {
                sender: Some((0xA0A0, 0xC0C0, 800)),
                blocks: Some((0xB0B0, 0xD0D0, 100)),
            },
        );
        assert_eq!(&buf[4..8], &0xC0C0u32.to_be_bytes(), "SR sender");
        assert_eq!(&buf[16..20], &16800u32.to_be_bytes(), "SR timestamp");
        let b = first_report_block(&buf[..n]).unwrap();
        assert_eq!((b.ssrc, b.extended_max, b.jitter), (0xD0D0, 900, 3));
        // The SDES chunk that follows names the new sender too.
        let sdes = 4 * (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1);
        assert_eq!(buf[sdes + 1], 202);
        assert_eq!(&buf[sdes + 4..sdes + 8], &0xC0C0u32.to_be_bytes());
        // A sub-packet of 4 bytes (SDES with no chunk) in the middle, and a
        // bare 8-byte SR header: nothing to read past them, no panic.
        let mut odd = [0u8; 20];
        odd[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0xA0, 0xA0]);
        odd[8..12].copy_from_slice(&[0x80, 202, 0, 0]);
        odd[12..20].copy_from_slice(&[0x81, 203, 0, 1, 0, 0, 0xA0, 0xA0]);
        let r = Renumber {
            sender: Some((0xA0A0, 0xC0C0, 1)),
            blocks: Some((0xA0A0, 0xC0C0, 1)),
        };
        renumber(&mut odd, r);
        assert_eq!(&odd[4..8], &0xC0C0u32.to_be_bytes(), "RR sender");
        assert_eq!(&odd[8..12], &[0x80, 202, 0, 0], "empty SDES untouched");
        assert_eq!(&odd[16..20], &0xC0C0u32.to_be_bytes(), "BYE sender");
        let mut bare = [0x80, 200, 0, 0, 0, 0, 0xA0, 0xA0];
        renumber(&mut bare, r);
        renumber(&mut [0x80, 200, 0, 0], r);
        // A truncated compound is left alone past the break, without panic.
        let mut short = original;
        renumber(
            &mut short[..n - 3],
            Renumber {
                sender: Some((0xA0A0, 1, 0)),
                blocks: None,
            },
        );
        assert_eq!(&short[4..8], &1u32.to_be_bytes());
    }

    #[test]
    fn renumber_survives_any_bytes() {
        // Random compounds of every length up to 96 bytes, with version 2
        // forced on the first byte half of the time: no panic.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let r = Renumber {
            sender: Some((0, 1, 2)),
            blocks: Some((0, 1, 2)),
        };
        for i in 0..200_000 {
            let len = (next() % 97) as usize;
            let mut buf = [0u8; 96];
            for b in buf.iter_mut().take(len) {
                *b = (next() & 0xFF) as u8;
            }
            if i % 2 == 0 && len > 0 {
                buf[0] = 0x80 | (buf[0] & 0x3F);
                if len > 3 {
                    buf[2] = 0;
                    buf[3] %= 24;
                }
            }
            renumber(&mut buf[..len], r);
        }
    }
}
