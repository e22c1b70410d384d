//! G.711 (PCMU, PCMA) and L16: the codecs the media engine decodes and
//! encodes itself.
//!
//! Both G.711 laws are table-driven: decoding is one 256-entry table
//! lookup, encoding one lookup in a table indexed by the sample's top 14
//! (μ-law) or 13 (A-law) bits, which is all the precision either law keeps.
//! The tables are computed at compile time from ITU-T G.711's segment
//! rules, so there is no start-up cost and nothing to get out of step.

/// An audio encoding the engine can produce and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, RTP payload type 0, 8 kHz.
    Pcmu,
    /// G.711 A-law, RTP payload type 8, 8 kHz.
    Pcma,
    /// 16-bit linear PCM, big-endian (RFC 3551), 8 kHz mono here.
    L16,
}

impl Codec {
    /// The codec an SDP `a=rtpmap` encoding name stands for.
    pub fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else if name.eq_ignore_ascii_case("L16") {
            Some(Codec::L16)
        } else {
            None
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::L16 => "L16",
        }
    }

    /// Bytes one sample takes on the wire.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Codec::Pcmu | Codec::Pcma => 1,
            Codec::L16 => 2,
        }
    }

    /// Encodes `pcm` into `out` (which must hold `pcm.len() *
    /// bytes_per_sample()` bytes); returns the bytes written.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self {
            Codec::Pcmu => {
                for (o, &s) in out.iter_mut().zip(pcm) {
                    *o = ulaw_encode(s);
                }
                pcm.len().min(out.len())
            }
            Codec::Pcma => {
                for (o, &s) in out.iter_mut().zip(pcm) {
                    *o = alaw_encode(s);
                }
                pcm.len().min(out.len())
            }
            Codec::L16 => {
                let n = pcm.len().min(out.len() / 2);
                for (o, &s) in out.chunks_exact_mut(2).zip(&pcm[..n]) {
                    o.copy_from_slice(&s.to_be_bytes());
                }
                n * 2
            }
        }
    }

    /// Decodes `payload` into `out`; returns the samples written.
    pub fn decode(self, payload: &[u8], out: &mut [i16]) -> usize {
        match self {
            Codec::Pcmu => {
                for (o, &b) in out.iter_mut().zip(payload) {
                    *o = ulaw_decode(b);
                }
                payload.len().min(out.len())
            }
            Codec::Pcma => {
                for (o, &b) in out.iter_mut().zip(payload) {
                    *o = alaw_decode(b);
                }
                payload.len().min(out.len())
            }
            Codec::L16 => {
                let n = (payload.len() / 2).min(out.len());
                for (o, b) in out.iter_mut().zip(payload.chunks_exact(2)).take(n) {
                    *o = i16::from_be_bytes([b[0], b[1]]);
                }
                n
            }
        }
    }
}

const fn ulaw_decode_calc(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + 0x84;
    t <<= ((u & 0x70) >> 4) as i32;
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// μ-law of a 14-bit magnitude-and-sign sample (`pcm >> 2`).
const fn ulaw_encode_calc(pcm14: i32) -> u8 {
    const SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let (mut v, mask) = if pcm14 < 0 {
        (-pcm14, 0x7Fu8)
    } else {
        (pcm14, 0xFFu8)
    };
    if v > 8159 {
        v = 8159;
    }
    v += 0x84 >> 2;
    let mut seg = 0;
    while seg < 8 && v > SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    (((seg as i32) << 4) | ((v >> (seg + 1)) & 0x0F)) as u8 ^ mask
}

/// A-law of a 13-bit sample (`pcm >> 3`).
const fn alaw_encode_calc(pcm13: i32) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let (v, mask) = if pcm13 >= 0 {
        (pcm13, 0xD5u8)
    } else {
        (-pcm13 - 1, 0x55u8)
    };
    let mut seg = 0;
    while seg < 8 && v > SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut a = (seg as i32) << 4;
    if seg < 2 {
        a |= (v >> 1) & 0x0F;
    } else {
        a |= (v >> seg) & 0x0F;
    }
    a as u8 ^ mask
}

const fn ulaw_decode_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_calc(i as u8);
        i += 1;
    }
    t
}

const fn alaw_decode_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_calc(i as u8);
        i += 1;
    }
    t
}

const fn ulaw_encode_table() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        // Index is the sample's top 14 bits as an unsigned number.
        let pcm14 = ((i as i32) << 18) >> 18;
        t[i] = ulaw_encode_calc(pcm14);
        i += 1;
    }
    t
}

const fn alaw_encode_table() -> [u8; 8192] {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        let pcm13 = ((i as i32) << 19) >> 19;
        t[i] = alaw_encode_calc(pcm13);
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = ulaw_decode_table();
static ALAW_DECODE: [i16; 256] = alaw_decode_table();
static ULAW_ENCODE: [u8; 16384] = ulaw_encode_table();
static ALAW_ENCODE: [u8; 8192] = alaw_encode_table();

const fn ulaw_to_alaw_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_encode_calc((ulaw_decode_calc(i as u8) as i32) >> 3);
        i += 1;
    }
    t
}

const fn alaw_to_ulaw_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_encode_calc((alaw_decode_calc(i as u8) as i32) >> 2);
        i += 1;
    }
    t
}

static ULAW_TO_ALAW: [u8; 256] = ulaw_to_alaw_table();
static ALAW_TO_ULAW: [u8; 256] = alaw_to_ulaw_table();

/// μ-law code to linear sample.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// A-law code to linear sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Linear sample to μ-law code.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[((sample as u16) >> 2) as usize]
}

/// Linear sample to A-law code.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[((sample as u16) >> 3) as usize]
}

/// Converts a μ-law payload to A-law in place (one table lookup a byte).
#[inline]
pub fn ulaw_to_alaw(buf: &mut [u8]) {
    for b in buf {
        *b = ULAW_TO_ALAW[*b as usize];
    }
}

/// Converts an A-law payload to μ-law in place.
#[inline]
pub fn alaw_to_ulaw(buf: &mut [u8]) {
    for b in buf {
        *b = ALAW_TO_ULAW[*b as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ulaw_code_decodes_and_encodes_back() {
        // Published values of the G.711 μ-law table.
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x7E), -8);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        for code in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(code));
            // 0x7F is "negative zero", which encodes as positive zero.
            let want = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, want, "code {code:#04x}");
            assert_eq!(ulaw_encode_calc((ulaw_decode(code) as i32) >> 2), want);
        }
    }

    #[test]
    fn every_alaw_code_decodes_and_encodes_back() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "code {code:#04x}");
        }
    }

    #[test]
    fn tables_match_the_segment_rules_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(s), ulaw_encode_calc((s as i32) >> 2), "{s}");
            assert_eq!(alaw_encode(s), alaw_encode_calc((s as i32) >> 3), "{s}");
        }
    }

    #[test]
    fn encoding_is_monotonic_and_close() {
        // Decoding what was encoded stays within the law's step size.
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "{s}");
            prev_u = u;
            prev_a = a;
            let tol = (s as i32).abs() / 16 + 16;
            assert!((u as i32 - s as i32).abs() <= tol.max(132), "μ {s} -> {u}");
            assert!((a as i32 - s as i32).abs() <= tol.max(64), "A {s} -> {a}");
        }
    }

    #[test]
    fn law_to_law_tables_agree_with_decode_then_encode() {
        for code in 0..=255u8 {
            let mut b = [code];
            ulaw_to_alaw(&mut b);
            assert_eq!(b[0], alaw_encode(ulaw_decode(code)));
            let mut b = [code];
            alaw_to_ulaw(&mut b);
            assert_eq!(b[0], ulaw_encode(alaw_decode(code)));
        }
    }

    #[test]
    fn l16_is_big_endian() {
        let mut out = [0u8; 4];
        assert_eq!(Codec::L16.encode(&[0x1234, -2], &mut out), 4);
        assert_eq!(out, [0x12, 0x34, 0xFF, 0xFE]);
        let mut pcm = [0i16; 2];
        assert_eq!(Codec::L16.decode(&out, &mut pcm), 2);
        assert_eq!(pcm, [0x1234, -2]);
        assert_eq!(Codec::from_name("pcmu"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_name("G729"), None);
    }
}
