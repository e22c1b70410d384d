//! DTMF carried in SIP INFO requests.
//!
//! Two bodies are in use: `application/dtmf-relay` (Cisco's, the common one:
//! `Signal=5` and `Duration=160` lines, duration in milliseconds) and
//! `application/dtmf` (the digit alone). Some phones send the telephone-event
//! code instead of the character (`10` for `*`, `11` for `#`, `12`..`15`
//! for `A`..`D`, as in RFC 4733); both forms are accepted.

/// Duration when the body gives none: 250 ms, FreeSWITCH's default of 2000
/// samples at 8 kHz.
pub const DEFAULT_DURATION_MS: u32 = 250;

/// A digit and its duration in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoDtmf {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// How long the key was held.
    pub duration_ms: u32,
}

/// The DTMF digit in an INFO body of this Content-Type, if it carries one.
pub fn parse_info(content_type: &str, body: &[u8]) -> Option<InfoDtmf> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = std::str::from_utf8(body).ok()?;
    match media.as_str() {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut duration_ms = DEFAULT_DURATION_MS;
            for line in body.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("signal") {
                    digit = Some(signal(v)?);
                } else if k.eq_ignore_ascii_case("duration") {
                    // A digit with an odd duration is still a digit.
                    duration_ms = v
                        .parse::<u32>()
                        .ok()
                        .filter(|d| *d > 0)
                        .map_or(DEFAULT_DURATION_MS, |d| d.min(10_000));
                }
            }
            digit.map(|digit| InfoDtmf { digit, duration_ms })
        }
        "application/dtmf" => Some(InfoDtmf {
            digit: signal(body.trim())?,
            duration_ms: DEFAULT_DURATION_MS,
        }),
        _ => None,
    }
}

/// A `Signal=` value: the character itself or its telephone-event code.
fn signal(v: &str) -> Option<char> {
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => {
            let c = c.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => match v.parse::<u8>().ok()? {
            10 => Some('*'),
            11 => Some('#'),
            n @ 12..=15 => Some((b'A' + (n - 12)) as char),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(digit: char, duration_ms: u32) -> Option<InfoDtmf> {
        Some(InfoDtmf { digit, duration_ms })
    }

    #[test]
    fn dtmf_relay_bodies() {
        let ct = "application/dtmf-relay";
        assert_eq!(parse_info(ct, b"Signal=5\r\nDuration=160\r\n"), d('5', 160));
        assert_eq!(parse_info(ct, b"Signal= #\nDuration= 100"), d('#', 100));
        assert_eq!(parse_info(ct, b"signal=*\r\n"), d('*', DEFAULT_DURATION_MS));
        assert_eq!(
            parse_info(ct, b"Signal=11\r\nDuration=250\r\n"),
            d('#', 250)
        );
        assert_eq!(parse_info(ct, b"Signal=10"), d('*', DEFAULT_DURATION_MS));
        assert_eq!(parse_info(ct, b"Signal=12"), d('A', DEFAULT_DURATION_MS));
        assert_eq!(parse_info(ct, b"Signal=d"), d('D', DEFAULT_DURATION_MS));
        assert_eq!(
            parse_info("Application/DTMF-Relay; charset=utf-8", b"Signal=7"),
            d('7', DEFAULT_DURATION_MS)
        );
        // A very long press is capped; the body's order does not matter.
        assert_eq!(
            parse_info(ct, b"Duration=999999\r\nSignal=1"),
            d('1', 10_000)
        );
        assert_eq!(
            parse_info(ct, b"Signal=5\r\nDuration=0"),
            d('5', DEFAULT_DURATION_MS)
        );
        assert_eq!(
            parse_info(ct, b"Signal=5\r\nDuration=ten"),
            d('5', DEFAULT_DURATION_MS)
        );
    }

    #[test]
    fn dtmf_bodies() {
        assert_eq!(
            parse_info("application/dtmf", b"9\r\n"),
            d('9', DEFAULT_DURATION_MS)
        );
        assert_eq!(
            parse_info("application/dtmf", b"11"),
            d('#', DEFAULT_DURATION_MS)
        );
    }

    #[test]
    fn not_dtmf() {
        let ct = "application/dtmf-relay";
        assert_eq!(parse_info(ct, b""), None);
        assert_eq!(parse_info(ct, b"Duration=160"), None);
        assert_eq!(parse_info(ct, b"Signal=E"), None);
        assert_eq!(parse_info(ct, b"Signal=16"), None);
        assert_eq!(parse_info(ct, b"Signal=55"), None);
        assert_eq!(parse_info(ct, &[0xff, 0xfe]), None);
        assert_eq!(parse_info("application/media_control+xml", b"<x/>"), None);
        assert_eq!(parse_info("text/plain", b"5"), None);
    }
}
