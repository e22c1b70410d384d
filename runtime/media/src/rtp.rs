//! RTP packets (RFC 3550) and telephone-events (RFC 4733), read and written
//! in place: nothing here allocates.

/// The fixed part of an RTP header.
pub const HEADER_LEN: usize = 12;

/// What the engine reads from an RTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Where the payload starts (after CSRCs and any header extension).
    pub payload_start: usize,
    /// Where it ends (before any padding).
    pub payload_end: usize,
}

impl Header {
    /// Parses a datagram; `None` if it is not a well-formed RTP version 2
    /// packet. RTCP (payload types 72-76 with the marker, RFC 5761) is not
    /// told apart here: the engine receives RTCP on its own port.
    pub fn parse(packet: &[u8]) -> Option<Header> {
        if packet.len() < HEADER_LEN || packet[0] >> 6 != 2 {
            return None;
        }
        let csrc = (packet[0] & 0x0F) as usize;
        let mut start = HEADER_LEN + 4 * csrc;
        if packet[0] & 0x10 != 0 {
            let ext = packet.get(start + 2..start + 4)?;
            start += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
        }
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            let pad = *packet.last()? as usize;
            end = end.checked_sub(pad)?;
        }
        if start > end {
            return None;
        }
        Some(Header {
            payload_type: packet[1] & 0x7F,
            marker: packet[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            payload_start: start,
            payload_end: end,
        })
    }
}

/// Writes a 12-byte header (no CSRC, no extension, no padding) at the
/// start of `out`.
pub fn write_header(
    out: &mut [u8],
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out[0] = 0x80;
    out[1] = (payload_type & 0x7F) | if marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// One RFC 4733 telephone-event payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9, 10 `*`, 11 `#`, 12-15 `A`-`D`.
    pub event: u8,
    /// The end bit.
    pub end: bool,
    /// Volume, 0 to 63 (-dBm0).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first four bytes of a payload.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let p = payload.get(..4)?;
        Some(TelephoneEvent {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3F,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    /// Writes the four payload bytes.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = self.event;
        out[1] = (self.volume & 0x3F) | if self.end { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
    }

    /// The DTMF digit of the event, if it is one.
    pub fn digit(&self) -> Option<char> {
        event_digit(self.event)
    }
}

/// The DTMF digit of an RFC 4733 event code.
pub fn event_digit(code: u8) -> Option<char> {
    Some(match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => return None,
    })
}

/// The RFC 4733 event code of a DTMF digit.
pub fn digit_event(digit: char) -> Option<u8> {
    Some(match digit.to_ascii_uppercase() {
        d @ '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        d @ 'A'..='D' => d as u8 - b'A' + 12,
        _ => return None,
    })
}

/// Turns a leg's received telephone-event packets into digits: one per
/// event, reported when its first end packet arrives (senders repeat the
/// end packet three times, RFC 4733 2.5.1.4), or when a new event starts
/// before the previous one was seen to end (its end packets were lost).
#[derive(Clone, Copy, Debug, Default)]
pub struct DtmfDetector {
    /// Timestamp and code of the event in progress, and whether it was
    /// reported.
    current: Option<(u32, u8, u16, bool)>,
}

/// A digit the detector recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digit {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// Duration in milliseconds (8 kHz clock).
    pub duration_ms: u32,
}

impl DtmfDetector {
    /// Feeds one telephone-event packet's timestamp and payload. Returns up
    /// to two digits: an unfinished previous event and this one.
    pub fn feed(&mut self, timestamp: u32, ev: TelephoneEvent) -> [Option<Digit>; 2] {
        let mut out = [None, None];
        let digit = |code: u8, duration: u16| {
            event_digit(code).map(|digit| Digit {
                digit,
                duration_ms: duration as u32 / 8,
            })
        };
        match self.current {
            Some((ts, _, _, true)) if ts == timestamp => return out,
            Some((ts, code, dur, false)) if ts != timestamp => {
                out[0] = digit(code, dur);
            }
            _ => {}
        }
        self.current = Some((timestamp, ev.event, ev.duration, ev.end));
        if ev.end {
            out[1] = digit(ev.event, ev.duration);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_with_csrc_extension_and_padding() {
        let mut p = [0u8; 40];
        write_header(&mut p, 8, true, 0xBEEF, 0x01020304, 0xCAFEBABE);
        let h = Header::parse(&p[..20]).unwrap();
        assert_eq!(
            (h.payload_type, h.marker, h.sequence, h.timestamp, h.ssrc),
            (8, true, 0xBEEF, 0x01020304, 0xCAFEBABE)
        );
        assert_eq!((h.payload_start, h.payload_end), (12, 20));
        // One CSRC, a one-word extension, 3 bytes of padding.
        p[0] = 0x80 | 0x20 | 0x10 | 1;
        p[16..20].copy_from_slice(&[0xBE, 0xDE, 0, 1]);
        p[39] = 3;
        let h = Header::parse(&p).unwrap();
        assert_eq!((h.payload_start, h.payload_end), (24, 37));
        assert!(Header::parse(&p[..11]).is_none());
        p[0] = 0x40;
        assert!(Header::parse(&p).is_none());
        // Padding longer than the packet.
        let mut q = [0u8; 13];
        write_header(&mut q, 0, false, 1, 1, 1);
        q[0] |= 0x20;
        q[12] = 200;
        assert!(Header::parse(&q).is_none());
    }

    #[test]
    fn digits_and_codes() {
        for (c, d) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(event_digit(c as u8), Some(d));
            assert_eq!(digit_event(d), Some(c as u8));
        }
        assert_eq!(event_digit(16), None);
        assert_eq!(digit_event('x'), None);
    }

    #[test]
    fn detector_reports_each_event_once() {
        let ev = |event, end, duration| TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        };
        let mut d = DtmfDetector::default();
        assert_eq!(d.feed(1000, ev(1, false, 160)), [None, None]);
        assert_eq!(d.feed(1000, ev(1, false, 320)), [None, None]);
        let one = Some(Digit {
            digit: '1',
            duration_ms: 100,
        });
        assert_eq!(d.feed(1000, ev(1, true, 800)), [None, one]);
        assert_eq!(d.feed(1000, ev(1, true, 800)), [None, None]);
        assert_eq!(d.feed(1000, ev(1, true, 800)), [None, None]);
        // Next event whose end packets are all lost: reported when the one
        // after it starts.
        assert_eq!(d.feed(3000, ev(11, false, 160)), [None, None]);
        let r = d.feed(5000, ev(2, false, 160));
        assert_eq!(r[0].unwrap().digit, '#');
        assert_eq!(r[1], None);
        let mut buf = [0u8; 4];
        ev(12, true, 1234).write(&mut buf);
        assert_eq!(TelephoneEvent::parse(&buf), Some(ev(12, true, 1234)));
        assert_eq!(TelephoneEvent::parse(&buf).unwrap().digit(), Some('A'));
    }
}
