//! Per-leg packet counters, written by the worker that owns the leg and
//! readable from any thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Which of a leg's two sockets a packet used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The even port.
    Rtp = 0,
    /// The odd port.
    Rtcp = 1,
}

const RECEIVED: usize = 0;
const RECEIVED_BYTES: usize = 1;
const SENT: usize = 2;
const SENT_BYTES: usize = 3;
const DROPPED: usize = 4;
const FIELDS: usize = 5;

/// Live counters of one leg. Obtain it with
/// [`LegHandle::stats`](crate::LegHandle::stats); it stays readable after
/// the leg is released (and then no longer changes).
///
/// Only the worker thread that owns the leg writes the counters (a leg has
/// exactly one owner at a time and is handed between workers under a
/// mutex), so an increment is a plain load and release store, not a locked
/// read-modify-write. Readers see each counter's latest value soon after it
/// is written; a reader that sees a value also sees everything the worker
/// counted before it. The counters of one snapshot are not taken
/// atomically together, and a packet's `packets_sent` is counted just after
/// `sendto` returns, so a phone can hold the packet a moment before the
/// counter shows it.
#[derive(Debug, Default)]
pub struct LegStats {
    counters: [AtomicU64; 2 * FIELDS],
    relaying: AtomicBool,
    /// The leg's codec as last set ([`crate::codec::Codec`] index + 1; 0
    /// before any), for CDRs and `show channels`.
    codec: std::sync::atomic::AtomicU8,
    /// RFC 3550 reception statistics of the phone's RTP, published by the
    /// owning worker once a second: expected, lost (signed), jitter.
    reception: [AtomicU64; 3],
}

/// Counters of one stream (RTP or RTCP) of a leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Datagrams received on the leg's socket (whatever became of them).
    pub packets_received: u64,
    /// Bytes of those datagrams (UDP payload).
    pub bytes_received: u64,
    /// Datagrams sent out of the leg's socket towards its phone (relayed
    /// from the bridged leg).
    pub packets_sent: u64,
    /// Bytes of those datagrams.
    pub bytes_sent: u64,
    /// Datagrams received on this leg and not relayed: the leg was not
    /// bridged, the bridged leg had no destination yet (no SDP address and
    /// nothing latched), or the send failed (socket buffer full).
    pub packets_dropped: u64,
}

/// RFC 3550 reception statistics of a leg's incoming RTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reception {
    /// Packets expected (highest sequence number minus the first, plus one).
    pub expected: u64,
    /// Expected minus received (negative with duplicates).
    pub lost: i64,
    /// Interarrival jitter, in RTP timestamp units (1/8 ms at 8 kHz).
    pub jitter: u32,
}

/// A snapshot of both streams of a leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegCounters {
    /// The RTP socket.
    pub rtp: StreamCounters,
    /// The RTCP socket.
    pub rtcp: StreamCounters,
}

impl LegStats {
    /// The codec the leg was last set to, if any.
    pub fn codec(&self) -> Option<crate::codec::Codec> {
        use crate::codec::Codec;
        match self.codec.load(Ordering::Relaxed) {
            1 => Some(Codec::Pcmu),
            2 => Some(Codec::Pcma),
            3 => Some(Codec::L16),
            _ => None,
        }
    }

    pub(crate) fn set_codec(&self, c: crate::codec::Codec) {
        use crate::codec::Codec;
        let v = match c {
            Codec::Pcmu => 1,
            Codec::Pcma => 2,
            Codec::L16 => 3,
        };
        self.codec.store(v, Ordering::Relaxed);
    }

    /// Read the counters of both streams.
    pub fn snapshot(&self) -> LegCounters {
        LegCounters {
            rtp: self.stream(Stream::Rtp),
            rtcp: self.stream(Stream::Rtcp),
        }
    }

    /// Read the counters of one stream.
    pub fn stream(&self, stream: Stream) -> StreamCounters {
        let get =
            |field: usize| self.counters[stream as usize * FIELDS + field].load(Ordering::Relaxed);
        StreamCounters {
            packets_received: get(RECEIVED),
            bytes_received: get(RECEIVED_BYTES),
            packets_sent: get(SENT),
            bytes_sent: get(SENT_BYTES),
            packets_dropped: get(DROPPED),
        }
    }

    /// Reception statistics of the phone's RTP (RFC 3550), as of the
    /// owning worker's last once-a-second update.
    pub fn reception(&self) -> Reception {
        let get = |i: usize| self.reception[i].load(Ordering::Relaxed);
        Reception {
            expected: get(0),
            lost: get(1) as i64,
            jitter: get(2) as u32,
        }
    }

    pub(crate) fn set_reception(&self, expected: u64, lost: i64, jitter: u32) {
        self.reception[0].store(expected, Ordering::Relaxed);
        self.reception[1].store(lost as u64, Ordering::Relaxed);
        self.reception[2].store(jitter as u64, Ordering::Relaxed);
    }

    /// True while the leg's worker relays its packets to a bridged leg: the
    /// bridge has taken effect on the worker (both legs are on it and
    /// linked). False before, while a leg of the pair moves between
    /// workers, and after unbridge or release.
    pub fn is_relaying(&self) -> bool {
        self.relaying.load(Ordering::Acquire)
    }

    pub(crate) fn set_relaying(&self, on: bool) {
        self.relaying.store(on, Ordering::Release);
    }

    /// Single-writer increment (see the type's documentation).
    #[inline(always)]
    fn bump(&self, stream: usize, field: usize, by: u64) {
        let c = &self.counters[stream * FIELDS + field];
        c.store(
            c.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }

    #[inline(always)]
    pub(crate) fn received(&self, stream: usize, bytes: usize) {
        self.bump(stream, RECEIVED, 1);
        self.bump(stream, RECEIVED_BYTES, bytes as u64);
    }

    #[inline(always)]
    pub(crate) fn sent(&self, stream: usize, bytes: usize) {
        self.bump(stream, SENT, 1);
        self.bump(stream, SENT_BYTES, bytes as u64);
    }

    #[inline(always)]
    pub(crate) fn dropped(&self, stream: usize) {
        self.bump(stream, DROPPED, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_separate() {
        let s = LegStats::default();
        s.received(0, 100);
        s.received(0, 50);
        s.sent(1, 70);
        s.dropped(1);
        let c = s.snapshot();
        assert_eq!(c.rtp.packets_received, 2);
        assert_eq!(c.rtp.bytes_received, 150);
        assert_eq!(c.rtp.packets_sent, 0);
        assert_eq!(c.rtcp.packets_sent, 1);
        assert_eq!(c.rtcp.bytes_sent, 70);
        assert_eq!(c.rtcp.packets_dropped, 1);
        assert_eq!(c.rtcp.packets_received, 0);
    }
}
