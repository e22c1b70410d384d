//! SDP (RFC 4566 / RFC 8866) offer/answer handling for a B2BUA that anchors
//! media.
//!
//! Dialtone puts itself in the media path of every call: for each leg it
//! allocates an RTP port on the switch (RTCP on port + 1), tells each phone
//! to send its RTP there, and relays packets between the legs. This module
//! is the sans-IO part of that job, pure functions over strings and structs:
//!
//! - [`SessionDescription::parse`] reads a session description into a
//!   model that writes back faithfully ([`SessionDescription`]'s `Display`
//!   always writes CRLF line endings; CRLF and bare LF are both accepted).
//!   Lines the model has no field for are kept verbatim and in order, and
//!   attributes are typed only when their typed form writes back byte for
//!   byte, so a parse/write round trip of a well-formed description is
//!   identical (lines are written in the RFC 4566 order, which is the order
//!   every real user agent already uses). Errors name the line number;
//!   nothing here panics on malformed input.
//! - Read-only helpers: the effective RTP destination of an m-line
//!   ([`SessionDescription::media_address`]), its direction
//!   ([`SessionDescription::direction`]), its codecs including static payload
//!   types without `a=rtpmap` ([`MediaDescription::codecs`]) and hold
//!   detection ([`SessionDescription::is_hold`]).
//! - [`SessionDescription::rewrite_for_relay`]: the description to send to
//!   the other leg, pointing every anchored stream at the switch, with the
//!   switch's own `o=` line kept per leg by an [`OriginState`].
//! - [`SessionDescription::answer_with_codecs`]: the answer the switch gives
//!   by itself when there is no far end to ask (parked calls, playback).
//!
//! What this module does not own:
//!
//! - **SRTP.** Streams with a secure profile (`RTP/SAVP`, `RTP/SAVPF`,
//!   `UDP/TLS/RTP/SAVPF`, anything with DTLS) are not relayed yet: the
//!   rewrite passes them through untouched, so their media flows end to end
//!   around the switch. `a=crypto` offered on a plain `RTP/AVP` stream
//!   (best-effort SRTP) is dropped from anchored streams, so both legs fall
//!   back to plain RTP through the relay.
//! - **ICE.** The switch gathers no candidates and runs no connectivity
//!   checks. ICE attributes are stripped from anchored streams because
//!   their candidates would route media around the anchor. An ICE-only
//!   offer that puts `c=IN IP4 0.0.0.0` on its m-lines reads as RFC 2543
//!   hold to [`SessionDescription::is_hold`].
//! - Sockets, port allocation and the relay itself: callers pass in the
//!   switch address and the ports they allocated.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use compact_str::ToCompactString as _;

/// The text fields of a session description: inline up to 24 bytes, so
/// parsing and copying the usual SDP allocates little.
pub type Text = compact_str::CompactString;

/// The username the switch writes in the `o=` lines it originates.
pub const ORIGIN_USERNAME: &str = "dialtone";

/// The session name the switch writes in descriptions it builds itself.
pub const SESSION_NAME: &str = "dialtone";

/// A parse failure, with the 1-based line number it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number (a missing line is reported on the line where it
    /// was due: the first `m=` line, or one past the end).
    pub line: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

/// What went wrong while parsing a session description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The line is not of the form `<letter>=<value>`.
    #[error("expected a `<type>=<value>` line")]
    Malformed,
    /// The description is empty or does not start with `v=`.
    #[error("the description must start with a v= line")]
    MissingVersion,
    /// `v=` is not `0`.
    #[error("unsupported protocol version {0:?}")]
    BadVersion(String),
    /// A line that may appear once appeared again.
    #[error("duplicate {0}= line")]
    Duplicate(char),
    /// A session-level line appeared inside a media description.
    #[error("{0}= line is not allowed in a media description")]
    Misplaced(char),
    /// No `o=` line before the first media description.
    #[error("missing o= line")]
    MissingOrigin,
    /// No `s=` line before the first media description.
    #[error("missing s= line")]
    MissingSessionName,
    /// No `t=` line before the first media description.
    #[error("missing t= line")]
    MissingTiming,
    /// `o=` does not have its six fields.
    #[error("malformed o= line")]
    BadOrigin,
    /// `c=` does not have its three fields.
    #[error("malformed c= line")]
    BadConnection,
    /// `b=` is not `<bwtype>:<bandwidth>`.
    #[error("malformed b= line")]
    BadBandwidth,
    /// `t=` is not two decimal times.
    #[error("malformed t= line")]
    BadTiming,
    /// `m=` does not have media, port and proto fields.
    #[error("malformed m= line")]
    BadMedia,
    /// The port (or port count) of an `m=` line is not a number in range.
    #[error("bad port {0:?} in m= line")]
    BadPort(String),
}

fn error(line: usize, kind: ParseErrorKind) -> ParseError {
    ParseError { line, kind }
}

/// The `o=` line: who originated the session and which version this is.
///
/// Session id and version are kept as the decimal strings the far end sent
/// (some user agents exceed 64 bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `<username>`, `-` when the originator has none.
    pub username: Text,
    /// `<sess-id>`.
    pub session_id: Text,
    /// `<sess-version>`.
    pub session_version: Text,
    /// `<nettype>`, normally `IN`.
    pub net_type: Text,
    /// `<addrtype>`, `IP4` or `IP6`.
    pub addr_type: Text,
    /// `<unicast-address>`.
    pub address: Text,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

/// A `c=` line (also the address part of `a=rtcp`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    /// `<nettype>`, normally `IN`.
    pub net_type: Text,
    /// `<addrtype>`, `IP4` or `IP6`.
    pub addr_type: Text,
    /// `<connection-address>`: an IP literal, possibly with a multicast
    /// `/ttl[/count]` suffix, or (rarely) a host name.
    pub address: Text,
}

impl Connection {
    /// `IN IP4 <ip>` or `IN IP6 <ip>`, the family chosen by the address.
    pub fn from_ip(ip: IpAddr) -> Self {
        Connection {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_compact_string(),
        }
    }

    /// The address as an IP, ignoring any multicast suffix; `None` for a
    /// host name or garbage.
    pub fn ip(&self) -> Option<IpAddr> {
        let literal = self.address.split('/').next().unwrap_or("");
        literal.parse().ok()
    }

    /// Whether the address is `0.0.0.0` or `::` (RFC 2543 hold).
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }

    fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split_whitespace();
        let connection = Connection {
            net_type: fields.next()?.into(),
            addr_type: fields.next()?.into(),
            address: fields.next()?.into(),
        };
        fields.next().is_none().then_some(connection)
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

/// A `b=<bwtype>:<bandwidth>` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bandwidth {
    /// `<bwtype>`, e.g. `AS`, `CT`, `TIAS`.
    pub bw_type: Text,
    /// `<bandwidth>`, in the unit the type defines (kbit/s for `AS`).
    pub bandwidth: u64,
}

impl Bandwidth {
    fn parse(value: &str) -> Option<Self> {
        let (bw_type, bandwidth) = value.split_once(':')?;
        if bw_type.is_empty() || !is_decimal(bandwidth) {
            return None;
        }
        Some(Bandwidth {
            bw_type: bw_type.into(),
            bandwidth: bandwidth.parse().ok()?,
        })
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bw_type, self.bandwidth)
    }
}

/// A `t=<start-time> <stop-time>` line (NTP seconds, `0 0` for unbounded,
/// which is also the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Timing {
    /// `<start-time>`.
    pub start: u64,
    /// `<stop-time>`.
    pub stop: u64,
}

impl Timing {
    fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split_whitespace();
        let (start, stop) = (fields.next()?, fields.next()?);
        if fields.next().is_some() || !is_decimal(start) || !is_decimal(stop) {
            return None;
        }
        Some(Timing {
            start: start.parse().ok()?,
            stop: stop.parse().ok()?,
        })
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.start, self.stop)
    }
}

/// A line the model has no field for, kept verbatim (`i=`, `u=`, `e=`,
/// `p=`, `r=`, `z=`, `k=`, second and later `t=`, unknown letters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Line {
    /// The type letter before `=`.
    pub kind: char,
    /// Everything after `=`.
    pub value: Text,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind, self.value)
    }
}

/// A stream direction attribute (RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`, the default.
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction named by an attribute name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answerer mirrors this offered direction with:
    /// sendonly ↔ recvonly, sendrecv and inactive unchanged.
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(sends: bool, receives: bool) -> Self {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rtpmap {
    /// The RTP payload type.
    pub payload_type: u8,
    /// The encoding name as written (compare case-insensitively).
    pub encoding: Text,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// The encoding parameter (channel count for audio), if written.
    pub channels: Option<u16>,
}

impl Rtpmap {
    fn parse(value: &str) -> Option<Self> {
        let (pt, rest) = value.trim().split_once(char::is_whitespace)?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next()?.trim();
        let clock_rate = parts.next()?.trim().parse().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.trim().parse().ok()?),
            None => None,
        };
        if encoding.is_empty() || parts.next().is_some() {
            return None;
        }
        Some(Rtpmap {
            payload_type: pt.parse().ok()?,
            encoding: encoding.into(),
            clock_rate,
            channels,
        })
    }
}

impl fmt::Display for Rtpmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(channels) = self.channels {
            write!(f, "/{channels}")?;
        }
        Ok(())
    }
}

/// `a=fmtp:<format> <format specific parameters>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fmtp {
    /// The format (payload type, for RTP) the parameters apply to.
    pub format: Text,
    /// The parameters, verbatim.
    pub parameters: Text,
}

impl Fmtp {
    fn parse(value: &str) -> Option<Self> {
        let (format, parameters) = value.trim().split_once(char::is_whitespace)?;
        Some(Fmtp {
            format: format.into(),
            parameters: parameters.trim().into(),
        })
    }
}

impl fmt::Display for Fmtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.format, self.parameters)
    }
}

/// `a=rtcp:<port>[ <nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rtcp {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when it differs from the RTP one.
    pub connection: Option<Connection>,
}

impl Rtcp {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (port, rest) = match value.split_once(char::is_whitespace) {
            Some((port, rest)) => (port, Some(rest)),
            None => (value, None),
        };
        Some(Rtcp {
            port: port.parse().ok()?,
            connection: match rest {
                Some(rest) => Some(Connection::parse(rest)?),
                None => None,
            },
        })
    }
}

impl fmt::Display for Rtcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(connection) = &self.connection {
            write!(f, " {connection}")?;
        }
        Ok(())
    }
}

/// An `a=` line. The typed variants are used only when their written form is
/// byte-identical to the input; anything else (unknown attributes, odd
/// spacing) is [`Attribute::Other`] and written back verbatim. The accessor
/// methods look through `Other` leniently, so `a=rtpmap:0  PCMU/8000` still
/// counts as an rtpmap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// `a=rtpmap:…`.
    Rtpmap(Rtpmap),
    /// `a=fmtp:…`.
    Fmtp(Fmtp),
    /// `a=sendrecv`, `a=sendonly`, `a=recvonly`, `a=inactive`.
    Direction(Direction),
    /// `a=rtcp:…`.
    Rtcp(Rtcp),
    /// `a=ptime:<milliseconds>`.
    Ptime(u32),
    /// `a=crypto:…` (RFC 4568 SDES), verbatim.
    Crypto(Text),
    /// Any other attribute, verbatim: `a=<name>` or `a=<name>:<value>`.
    Other {
        /// Text before the first `:`.
        name: Text,
        /// Text after the first `:`, if there is one.
        value: Option<Text>,
    },
}

impl Attribute {
    /// Parses the text after `a=`. Never fails: what is not a well-formed
    /// known attribute becomes [`Attribute::Other`].
    pub fn parse(text: &str) -> Self {
        let (name, value) = match text.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        if let Some(typed) = Self::typed(name, value) {
            if renders_as(&typed, text) {
                return typed;
            }
        }
        Attribute::Other {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    fn typed(name: &str, value: Option<&str>) -> Option<Self> {
        let name = name.trim();
        Some(match (name, value) {
            ("rtpmap", Some(v)) => Attribute::Rtpmap(Rtpmap::parse(v)?),
            ("fmtp", Some(v)) => Attribute::Fmtp(Fmtp::parse(v)?),
            ("rtcp", Some(v)) => Attribute::Rtcp(Rtcp::parse(v)?),
            ("ptime", Some(v)) => Attribute::Ptime(v.trim().parse().ok()?),
            ("crypto", Some(v)) if !v.trim().is_empty() => Attribute::Crypto(v.into()),
            (name, None) => Attribute::Direction(Direction::from_name(name)?),
            _ => return None,
        })
    }

    /// The typed reading of this attribute, looking through `Other`.
    fn view(&self) -> Option<Cow<'_, Attribute>> {
        match self {
            Attribute::Other { name, value } => Self::typed(name, value.as_deref()).map(Cow::Owned),
            typed => Some(Cow::Borrowed(typed)),
        }
    }

    /// The attribute name (`rtpmap`, `sendonly`, `ice-ufrag`, …).
    pub fn name(&self) -> &str {
        match self {
            Attribute::Rtpmap(_) => "rtpmap",
            Attribute::Fmtp(_) => "fmtp",
            Attribute::Direction(d) => d.as_str(),
            Attribute::Rtcp(_) => "rtcp",
            Attribute::Ptime(_) => "ptime",
            Attribute::Crypto(_) => "crypto",
            Attribute::Other { name, .. } => name.trim(),
        }
    }

    /// The rtpmap this attribute carries, if it is one.
    pub fn rtpmap(&self) -> Option<Rtpmap> {
        match self.view()? {
            Cow::Borrowed(Attribute::Rtpmap(r)) => Some(r.clone()),
            Cow::Owned(Attribute::Rtpmap(r)) => Some(r),
            _ => None,
        }
    }

    /// The fmtp this attribute carries, if it is one.
    pub fn fmtp(&self) -> Option<Fmtp> {
        match self.view()? {
            Cow::Borrowed(Attribute::Fmtp(f)) => Some(f.clone()),
            Cow::Owned(Attribute::Fmtp(f)) => Some(f),
            _ => None,
        }
    }

    /// The direction this attribute states, if it is one.
    pub fn direction(&self) -> Option<Direction> {
        match self.view()?.as_ref() {
            Attribute::Direction(d) => Some(*d),
            _ => None,
        }
    }

    /// The ptime this attribute carries, if it is one.
    pub fn ptime(&self) -> Option<u32> {
        match self.view()?.as_ref() {
            Attribute::Ptime(p) => Some(*p),
            _ => None,
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Rtpmap(r) => write!(f, "rtpmap:{r}"),
            Attribute::Fmtp(p) => write!(f, "fmtp:{p}"),
            Attribute::Direction(d) => f.write_str(d.as_str()),
            Attribute::Rtcp(r) => write!(f, "rtcp:{r}"),
            Attribute::Ptime(p) => write!(f, "ptime:{p}"),
            Attribute::Crypto(c) => write!(f, "crypto:{c}"),
            Attribute::Other { name, value: None } => f.write_str(name),
            Attribute::Other {
                name,
                value: Some(value),
            } => write!(f, "{name}:{value}"),
        }
    }
}

/// One codec offered on an RTP m-line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Codec {
    /// The RTP payload type.
    pub payload_type: u8,
    /// The encoding name (from `a=rtpmap`, or the RFC 3551 name of a static
    /// payload type).
    pub encoding: Text,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// The channel count (1 unless the rtpmap says otherwise).
    pub channels: u16,
    /// The `a=fmtp` parameters for this payload type, if any.
    pub fmtp: Option<Text>,
}

/// The RFC 3551 static payload types: `(encoding, clock rate, channels)`.
pub fn static_payload_type(payload_type: u8) -> Option<(&'static str, u32, u16)> {
    Some(match payload_type {
        0 => ("PCMU", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        9 => ("G722", 8000, 1),
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        25 => ("CelB", 90000, 1),
        26 => ("JPEG", 90000, 1),
        28 => ("nv", 90000, 1),
        31 => ("H261", 90000, 1),
        32 => ("MPV", 90000, 1),
        33 => ("MP2T", 90000, 1),
        34 => ("H263", 90000, 1),
        _ => return None,
    })
}

/// One media description: an `m=` line and the lines under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaDescription {
    /// `<media>`: `audio`, `video`, `image`, `application`, ….
    pub media: Text,
    /// `<port>`; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The `/<number of ports>` suffix, if written.
    pub port_count: Option<u32>,
    /// `<proto>`: `RTP/AVP`, `RTP/SAVP`, `udptl`, ….
    pub proto: Text,
    /// `<fmt>` list: payload types for RTP, `t38` for udptl.
    pub formats: Vec<Text>,
    /// The media-level `c=` line, overriding the session one.
    pub connection: Option<Connection>,
    /// `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// Other lines (`i=`, `k=`, unknown letters), verbatim and in order.
    pub other_lines: Vec<Line>,
}

impl MediaDescription {
    /// A media description with no `c=`, `b=` or `a=` lines.
    pub fn new(media: &str, port: u16, proto: &str, formats: Vec<Text>) -> Self {
        MediaDescription {
            media: media.into(),
            port,
            port_count: None,
            proto: proto.into(),
            formats,
            connection: None,
            bandwidths: Vec::new(),
            attributes: Vec::new(),
            other_lines: Vec::new(),
        }
    }

    /// Whether the port is non-zero.
    pub fn is_enabled(&self) -> bool {
        self.port != 0
    }

    /// Whether the profile is a secure one (SRTP via SDES or DTLS), which the
    /// switch does not relay yet.
    pub fn is_secure(&self) -> bool {
        contains_ignore_case(&self.proto, "SAVP") || contains_ignore_case(&self.proto, "TLS")
    }

    /// The direction attribute of this m-line itself, if it has one.
    pub fn direction_attribute(&self) -> Option<Direction> {
        self.attributes.iter().find_map(Attribute::direction)
    }

    /// The first `a=ptime`, if any.
    pub fn ptime(&self) -> Option<u32> {
        self.attributes.iter().find_map(Attribute::ptime)
    }

    /// The codecs of this m-line, in the order of its format list. Formats
    /// that are not payload types (`t38`) are skipped, as are dynamic payload
    /// types with no `a=rtpmap`. Static payload types without an rtpmap get
    /// their RFC 3551 name and rate; an rtpmap always wins.
    pub fn codecs(&self) -> Vec<Codec> {
        // Typed attributes are read in place; only an `Other` that reads
        // as an rtpmap or fmtp is parsed into a copy.
        let rtpmaps = || {
            self.attributes.iter().filter_map(|a| match a {
                Attribute::Rtpmap(r) => Some(Cow::Borrowed(r)),
                Attribute::Other { .. } => a.rtpmap().map(Cow::Owned),
                _ => None,
            })
        };
        let fmtps = || {
            self.attributes.iter().filter_map(|a| match a {
                Attribute::Fmtp(f) => Some(Cow::Borrowed(f)),
                Attribute::Other { .. } => a.fmtp().map(Cow::Owned),
                _ => None,
            })
        };
        let mut codecs = Vec::with_capacity(self.formats.len());
        for format in &self.formats {
            let Ok(payload_type) = format.parse::<u8>() else {
                continue;
            };
            let fmtp = fmtps()
                .find(|f| f.format.parse::<u8>().ok() == Some(payload_type))
                .map(|f| f.parameters.clone());
            let codec = if let Some(map) = rtpmaps().find(|m| m.payload_type == payload_type) {
                Codec {
                    payload_type,
                    encoding: map.encoding.clone(),
                    clock_rate: map.clock_rate,
                    channels: map.channels.unwrap_or(1),
                    fmtp,
                }
            } else if let Some((encoding, clock_rate, channels)) = static_payload_type(payload_type)
            {
                Codec {
                    payload_type,
                    encoding: encoding.into(),
                    clock_rate,
                    channels,
                    fmtp,
                }
            } else {
                continue;
            };
            codecs.push(codec);
        }
        codecs
    }

    fn parse(value: &str, line: usize) -> Result<Self, ParseError> {
        let mut fields = value.split_whitespace();
        let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(error(line, ParseErrorKind::BadMedia));
        };
        let bad_port = || error(line, ParseErrorKind::BadPort(port.into()));
        let (port_text, count_text) = match port.split_once('/') {
            Some((p, c)) => (p, Some(c)),
            None => (port, None),
        };
        if !is_decimal(port_text) {
            return Err(bad_port());
        }
        let port_number: u16 = port_text.parse().map_err(|_| bad_port())?;
        let port_count = match count_text {
            Some(c) if is_decimal(c) => Some(c.parse::<u32>().map_err(|_| bad_port())?),
            Some(_) => return Err(bad_port()),
            None => None,
        };
        let mut description =
            MediaDescription::new(media, port_number, proto, fields.map(Into::into).collect());
        description.port_count = port_count;
        Ok(description)
    }
}

impl fmt::Display for MediaDescription {
    /// Writes the `m=` line and everything under it, each line ending CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.proto)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        for line in self.other_lines.iter().filter(|l| l.kind == 'i') {
            write!(f, "{line}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        for line in self.other_lines.iter().filter(|l| l.kind != 'i') {
            write!(f, "{line}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        Ok(())
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionDescription {
    /// `v=`, always 0.
    pub version: u32,
    /// `o=`.
    pub origin: Origin,
    /// `s=`.
    pub session_name: Text,
    /// The session-level `c=` line.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// The first `t=` line (later ones are in [`Self::other_lines`]).
    pub timing: Timing,
    /// Session-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// Other session-level lines, verbatim and in order. `i=`, `u=`, `e=`
    /// and `p=` are written before `c=`; the rest (`r=`, `z=`, `k=`, later
    /// `t=`, unknown letters) after the first `t=`.
    pub other_lines: Vec<Line>,
    /// The media descriptions, in order.
    pub media: Vec<MediaDescription>,
}

/// Whether `haystack` contains `needle`, ASCII case ignored.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Whether `value` is written exactly as `text`, compared piece by piece
/// as it is formatted (no string is built).
fn renders_as(value: &impl fmt::Display, text: &str) -> bool {
    struct Match<'a>(&'a str);
    impl fmt::Write for Match<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match self.0.strip_prefix(s) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(())
                }
                None => Err(fmt::Error),
            }
        }
    }
    let mut m = Match(text);
    fmt::write(&mut m, format_args!("{value}")).is_ok() && m.0.is_empty()
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits `x=value`; `None` when the line is not of that form.
fn split_line(line: &str) -> Option<(char, &str)> {
    let bytes = line.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'=' {
        Some((bytes[0] as char, &line[2..]))
    } else {
        None
    }
}

const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
];

fn is_ice(attribute: &Attribute) -> bool {
    ICE_ATTRIBUTES.contains(&attribute.name())
}

impl SessionDescription {
    /// Parses a session description. Lines may end in CRLF or bare LF; empty
    /// lines are skipped. Required: `v=0` first, then `o=`, `s=` and `t=`
    /// before the first `m=`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut version = None;
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut bandwidths = Vec::new();
        let mut timing = None;
        let mut attributes = Vec::new();
        let mut other_lines = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut last_line = 0;

        let missing =
            |origin: &Option<Origin>, name: &Option<Text>, timing: &Option<Timing>, line: usize| {
                if origin.is_none() {
                    Err(error(line, ParseErrorKind::MissingOrigin))
                } else if name.is_none() {
                    Err(error(line, ParseErrorKind::MissingSessionName))
                } else if timing.is_none() {
                    Err(error(line, ParseErrorKind::MissingTiming))
                } else {
                    Ok(())
                }
            };

        for (index, raw) in text.split('\n').enumerate() {
            let n = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            last_line = n;
            let (kind, value) = split_line(line).ok_or(error(n, ParseErrorKind::Malformed))?;
            if version.is_none() {
                if kind != 'v' {
                    return Err(error(n, ParseErrorKind::MissingVersion));
                }
                if value != "0" {
                    return Err(error(n, ParseErrorKind::BadVersion(value.into())));
                }
                version = Some(0);
                continue;
            }
            if let Some(m) = media.last_mut() {
                match kind {
                    'm' => media.push(MediaDescription::parse(value, n)?),
                    'c' if m.connection.is_some() => {
                        return Err(error(n, ParseErrorKind::Duplicate('c')))
                    }
                    'c' => {
                        m.connection = Some(
                            Connection::parse(value)
                                .ok_or(error(n, ParseErrorKind::BadConnection))?,
                        )
                    }
                    'b' => m.bandwidths.push(
                        Bandwidth::parse(value).ok_or(error(n, ParseErrorKind::BadBandwidth))?,
                    ),
                    'a' => m.attributes.push(Attribute::parse(value)),
                    'v' | 'o' | 's' | 't' | 'r' | 'z' | 'u' | 'e' | 'p' => {
                        return Err(error(n, ParseErrorKind::Misplaced(kind)))
                    }
                    _ => m.other_lines.push(Line {
                        kind,
                        value: value.into(),
                    }),
                }
                continue;
            }
            match kind {
                'v' => return Err(error(n, ParseErrorKind::Duplicate('v'))),
                'o' if origin.is_some() => return Err(error(n, ParseErrorKind::Duplicate('o'))),
                'o' => {
                    let mut f = value.split_whitespace();
                    let fields = [f.next(), f.next(), f.next(), f.next(), f.next(), f.next()];
                    let (
                        [Some(username), Some(session_id), Some(session_version), Some(net_type), Some(addr_type), Some(address)],
                        None,
                    ) = (fields, f.next())
                    else {
                        return Err(error(n, ParseErrorKind::BadOrigin));
                    };
                    origin = Some(Origin {
                        username: username.into(),
                        session_id: session_id.into(),
                        session_version: session_version.into(),
                        net_type: net_type.into(),
                        addr_type: addr_type.into(),
                        address: address.into(),
                    });
                }
                's' if session_name.is_some() => {
                    return Err(error(n, ParseErrorKind::Duplicate('s')))
                }
                's' => session_name = Some(value.into()),
                'c' if connection.is_some() => {
                    return Err(error(n, ParseErrorKind::Duplicate('c')))
                }
                'c' => {
                    connection = Some(
                        Connection::parse(value).ok_or(error(n, ParseErrorKind::BadConnection))?,
                    )
                }
                'b' => bandwidths
                    .push(Bandwidth::parse(value).ok_or(error(n, ParseErrorKind::BadBandwidth))?),
                't' => {
                    let parsed = Timing::parse(value).ok_or(error(n, ParseErrorKind::BadTiming))?;
                    if timing.is_none() {
                        timing = Some(parsed);
                    } else {
                        other_lines.push(Line {
                            kind,
                            value: value.into(),
                        });
                    }
                }
                'a' => attributes.push(Attribute::parse(value)),
                'm' => {
                    missing(&origin, &session_name, &timing, n)?;
                    media.push(MediaDescription::parse(value, n)?);
                }
                _ => other_lines.push(Line {
                    kind,
                    value: value.into(),
                }),
            }
        }

        if version.is_none() {
            return Err(error(1, ParseErrorKind::MissingVersion));
        }
        missing(&origin, &session_name, &timing, last_line + 1)?;
        let (Some(origin), Some(session_name), Some(timing)) = (origin, session_name, timing)
        else {
            return Err(error(last_line + 1, ParseErrorKind::MissingOrigin));
        };
        Ok(SessionDescription {
            version: 0,
            origin,
            session_name,
            connection,
            bandwidths,
            timing,
            attributes,
            other_lines,
            media,
        })
    }

    /// The connection that applies to m-line `index`: its own `c=`, else the
    /// session one.
    pub fn connection_for(&self, index: usize) -> Option<&Connection> {
        let media = self.media.get(index)?;
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// Where RTP for m-line `index` should be sent: the effective connection
    /// address and the m-line's port. `None` when the index is out of range,
    /// the port is 0 (stream disabled), there is no connection line, the
    /// address is not an IP literal, or it is `0.0.0.0`/`::` (RFC 2543 hold:
    /// nowhere to send).
    pub fn media_address(&self, index: usize) -> Option<SocketAddr> {
        let media = self.media.get(index)?;
        if media.port == 0 {
            return None;
        }
        let ip = self.connection_for(index)?.ip()?;
        if ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, media.port))
    }

    /// The session-level direction attribute, if any.
    pub fn session_direction(&self) -> Option<Direction> {
        self.attributes.iter().find_map(Attribute::direction)
    }

    /// The direction of m-line `index`: its own attribute, else the session
    /// one, else sendrecv. `None` when the index is out of range.
    pub fn direction(&self, index: usize) -> Option<Direction> {
        let media = self.media.get(index)?;
        Some(
            media
                .direction_attribute()
                .or(self.session_direction())
                .unwrap_or(Direction::SendRecv),
        )
    }

    /// The codecs of m-line `index` (see [`MediaDescription::codecs`]);
    /// empty when the index is out of range.
    pub fn codecs(&self, index: usize) -> Vec<Codec> {
        self.media
            .get(index)
            .map(MediaDescription::codecs)
            .unwrap_or_default()
    }

    /// Whether m-line `index` puts the peer on hold: its direction is
    /// sendonly or inactive, or its connection address is `0.0.0.0`/`::`
    /// (RFC 2543 style). False for disabled m-lines and out-of-range indices.
    pub fn is_media_hold(&self, index: usize) -> bool {
        let Some(media) = self.media.get(index) else {
            return false;
        };
        if !media.is_enabled() {
            return false;
        }
        matches!(
            self.direction(index),
            Some(Direction::SendOnly | Direction::Inactive)
        ) || self
            .connection_for(index)
            .is_some_and(Connection::is_unspecified)
    }

    /// Whether the whole description is a hold: it has at least one enabled
    /// m-line and every enabled m-line is on hold
    /// ([`Self::is_media_hold`]).
    pub fn is_hold(&self) -> bool {
        let mut enabled = (0..self.media.len()).filter(|&i| self.media[i].is_enabled());
        let mut any = false;
        let all = enabled.all(|i| {
            any = true;
            self.is_media_hold(i)
        });
        any && all
    }

    /// The description to send to the other leg of a media-anchoring B2BUA.
    ///
    /// `switch` is the switch's media address toward that leg; `ports[i]` is
    /// the RTP port the switch allocated for m-line `i` (RTCP on port + 1).
    /// The result has the same m-lines in the same order (RFC 3264 section
    /// 8), and:
    ///
    /// - every enabled, non-secure m-line gets the relay port (any
    ///   `/<count>` dropped); its media-level `c=` (if it had one) is
    ///   rewritten to the switch; `a=rtcp` is rewritten to relay port + 1 on
    ///   the switch address (dropped if the relay port is 65535); ICE
    ///   attributes and `a=crypto` are dropped; other attributes, including
    ///   the direction, pass through so hold and unhold reach the other leg.
    ///   If its effective address was `0.0.0.0`/`::` (RFC 2543 hold), it gets
    ///   a media-level `c=` with the unspecified address of the switch's
    ///   family instead, so that hold passes through too;
    /// - an enabled m-line with no port in `ports` (`None` or index beyond
    ///   the slice) is rejected with port 0;
    /// - rejected m-lines (port 0) stay rejected; a media-level `c=` on them
    ///   is rewritten to the switch too, so no phone address leaks;
    /// - m-lines with a secure profile (SRTP, DTLS) are copied untouched with
    ///   their original port and address (a media-level `c=` is added when
    ///   they relied on the session one): SRTP is not relayed yet, so their
    ///   media flows end to end. Session-level ICE attributes are kept only
    ///   when such an m-line is present;
    /// - the session-level `c=` is the switch address (`IN IP4`/`IN IP6` by
    ///   family) and `o=` is the leg's own origin from `origin`, whose
    ///   version increments only when the content changes.
    pub fn rewrite_for_relay(
        &self,
        switch: IpAddr,
        ports: &[Option<u16>],
        origin: &mut OriginState,
    ) -> SessionDescription {
        let switch_connection = Connection::from_ip(switch);
        let unspecified = || {
            Connection::from_ip(match switch {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            })
        };
        let mut out = self.clone();
        let mut keeps_secure = false;
        for (index, media) in out.media.iter_mut().enumerate() {
            if media.is_secure() && media.is_enabled() {
                keeps_secure = true;
                if media.connection.is_none() {
                    media.connection = self.connection.clone();
                }
                continue;
            }
            media.attributes.retain(|a| !is_ice(a));
            if let Some(c) = &mut media.connection {
                *c = switch_connection.clone();
            }
            let relay_port = ports.get(index).copied().flatten();
            match relay_port {
                Some(port) if media.is_enabled() && !media.is_secure() => {
                    media.port = port;
                    media.port_count = None;
                    if self
                        .connection_for(index)
                        .is_some_and(Connection::is_unspecified)
                    {
                        media.connection = Some(unspecified());
                    }
                    let rtcp = port.checked_add(1);
                    media.attributes.retain_mut(|a| {
                        if a.name() == "crypto" {
                            return false;
                        }
                        if a.name() != "rtcp" {
                            return true;
                        }
                        match rtcp {
                            Some(rtcp_port) => {
                                *a = Attribute::Rtcp(Rtcp {
                                    port: rtcp_port,
                                    connection: Some(switch_connection.clone()),
                                });
                                true
                            }
                            None => false,
                        }
                    });
                }
                _ => {
                    media.port = 0;
                    media.port_count = None;
                }
            }
        }
        if !keeps_secure {
            out.attributes.retain(|a| !is_ice(a));
        }
        out.connection = Some(switch_connection);
        origin.stamp(&mut out, switch);
        out
    }

    /// The answer the switch gives by itself to this offer when there is no
    /// far end to ask (a parked call, an announcement).
    ///
    /// For each audio m-line that is enabled, has a plain RTP profile and a
    /// port in `ports`, the answer picks the first offered codec whose
    /// encoding name is in `supported` (case-insensitive, e.g.
    /// `&["PCMU", "PCMA"]`), in the offerer's order of preference, plus the
    /// first offered `telephone-event` at the same clock rate (with its
    /// fmtp), and copies the offered `a=ptime`. The direction mirrors the
    /// offer's (sendonly → recvonly, recvonly → sendonly, inactive and
    /// sendrecv unchanged) and is written explicitly; when the offer's
    /// address is `0.0.0.0`/`::` the answer also stops sending to it. Every
    /// other m-line (video, image, secure, no common codec, no port) is
    /// rejected with port 0 and the offered formats, as RFC 3264 section 6
    /// requires. The answer has the offer's `t=`, the switch's `c=` and the
    /// leg's origin from `origin`.
    pub fn answer_with_codecs(
        &self,
        supported: &[&str],
        switch: IpAddr,
        ports: &[Option<u16>],
        origin: &mut OriginState,
    ) -> SessionDescription {
        let media = self
            .media
            .iter()
            .enumerate()
            .map(|(index, offered)| {
                self.answer_media(
                    index,
                    offered,
                    supported,
                    ports.get(index).copied().flatten(),
                )
                .unwrap_or_else(|| {
                    let mut formats = offered.formats.clone();
                    if formats.is_empty() {
                        formats.push("0".into());
                    }
                    MediaDescription::new(&offered.media, 0, &offered.proto, formats)
                })
            })
            .collect();
        let mut answer = SessionDescription {
            version: 0,
            origin: Origin {
                username: ORIGIN_USERNAME.into(),
                session_id: Text::default(),
                session_version: Text::default(),
                net_type: Text::default(),
                addr_type: Text::default(),
                address: Text::default(),
            },
            session_name: SESSION_NAME.into(),
            connection: Some(Connection::from_ip(switch)),
            bandwidths: Vec::new(),
            timing: self.timing,
            attributes: Vec::new(),
            other_lines: Vec::new(),
            media,
        };
        origin.stamp(&mut answer, switch);
        answer
    }

    /// Adds the codecs the switch can transcode to (`PCMU`, `PCMA`) and
    /// `telephone-event/8000` to the first audio m-line of an offer, after
    /// what is already there, when they are missing: the far end may then
    /// pick a codec the original offerer did not offer, and the switch
    /// converts. Static payload types (0, 8) are used when free; the
    /// telephone-event takes 101 or the first free dynamic type.
    pub fn add_transcodable_codecs(&mut self) {
        let Some(m) = self
            .media
            .iter_mut()
            .find(|m| m.media == "audio" && m.is_enabled() && !m.is_secure())
        else {
            return;
        };
        if !m.proto.starts_with("RTP/") {
            return;
        }
        let codecs = m.codecs();
        let has = |name: &str| {
            codecs
                .iter()
                .any(|c| c.encoding.eq_ignore_ascii_case(name) && c.clock_rate == 8000)
        };
        let taken = |m: &MediaDescription, pt: u8| m.formats.iter().any(|f| renders_as(&pt, f));
        let add = |m: &mut MediaDescription, pt: u8, name: &str, fmtp: Option<&str>| {
            m.formats.push(pt.to_compact_string());
            m.attributes.push(Attribute::Rtpmap(Rtpmap {
                payload_type: pt,
                encoding: name.to_compact_string(),
                clock_rate: 8000,
                channels: None,
            }));
            if let Some(p) = fmtp {
                m.attributes.push(Attribute::Fmtp(Fmtp {
                    format: pt.to_compact_string(),
                    parameters: p.to_compact_string(),
                }));
            }
        };
        for (pt, name) in [(0u8, "PCMU"), (8, "PCMA")] {
            if !has(name) && !taken(m, pt) {
                add(m, pt, name, None);
            }
        }
        if !has("telephone-event") {
            if let Some(pt) = std::iter::once(101u8)
                .chain(96..=127)
                .find(|&pt| !taken(m, pt))
            {
                add(m, pt, "telephone-event", Some("0-16"));
            }
        }
        // Attributes after the rtpmaps (ptime, direction) stay valid where
        // they are: SDP does not order a= lines of one m-line.
    }

    fn answer_media(
        &self,
        index: usize,
        offered: &MediaDescription,
        supported: &[&str],
        port: Option<u16>,
    ) -> Option<MediaDescription> {
        let port = port?;
        if offered.media != "audio" || !offered.is_enabled() || offered.is_secure() || port == 0 {
            return None;
        }
        let codecs = offered.codecs();
        let chosen = codecs.iter().find(|c| {
            supported
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&c.encoding))
        })?;
        let event = codecs.iter().find(|c| {
            c.encoding.eq_ignore_ascii_case("telephone-event") && c.clock_rate == chosen.clock_rate
        });
        let mut answer = MediaDescription::new(
            &offered.media,
            port,
            &offered.proto,
            std::iter::once(chosen)
                .chain(event)
                .map(|c| c.payload_type.to_compact_string())
                .collect(),
        );
        for codec in std::iter::once(chosen).chain(event) {
            answer.attributes.push(Attribute::Rtpmap(Rtpmap {
                payload_type: codec.payload_type,
                encoding: codec.encoding.clone(),
                clock_rate: codec.clock_rate,
                channels: (codec.channels != 1).then_some(codec.channels),
            }));
            if let Some(parameters) = &codec.fmtp {
                answer.attributes.push(Attribute::Fmtp(Fmtp {
                    format: codec.payload_type.to_compact_string(),
                    parameters: parameters.clone(),
                }));
            }
        }
        if let Some(ptime) = offered.ptime() {
            answer.attributes.push(Attribute::Ptime(ptime));
        }
        let mut direction = self.direction(index)?.reversed();
        if self
            .connection_for(index)
            .is_some_and(Connection::is_unspecified)
        {
            direction = Direction::from_flags(false, direction.receives());
        }
        answer.attributes.push(Attribute::Direction(direction));
        Some(answer)
    }
}

impl FromStr for SessionDescription {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionDescription::parse(s)
    }
}

impl SessionDescription {
    /// The description as text ([`fmt::Display`]) in one buffer sized up
    /// front: `to_string` starts from an empty one and grows it several
    /// times for every description a call sends.
    pub fn render(&self) -> String {
        use fmt::Write as _;
        // About 48 bytes a line covers the attributes phones and the
        // switch write (rtpmap, fmtp, ptime, rtcp, candidates).
        let lines = 6
            + self.attributes.len()
            + self.other_lines.len()
            + self.bandwidths.len()
            + self
                .media
                .iter()
                .map(|m| 2 + m.attributes.len() + m.other_lines.len() + m.bandwidths.len())
                .sum::<usize>();
        let mut out = String::with_capacity(lines * 48);
        let _ = write!(out, "{self}");
        out
    }
}

impl fmt::Display for SessionDescription {
    /// Writes the description with CRLF line endings, lines in RFC 4566
    /// order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let before_connection = |l: &&Line| matches!(l.kind, 'i' | 'u' | 'e' | 'p');
        write!(f, "v={}\r\n", self.version)?;
        write!(f, "o={}\r\n", self.origin)?;
        write!(f, "s={}\r\n", self.session_name)?;
        for line in self.other_lines.iter().filter(before_connection) {
            write!(f, "{line}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        write!(f, "t={}\r\n", self.timing)?;
        for line in self.other_lines.iter().filter(|l| !before_connection(l)) {
            write!(f, "{line}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

/// The switch's own `o=` line toward one leg (RFC 3264 section 8).
///
/// A leg keeps one of these for the life of the dialog so that every
/// description the switch sends it (the first offer or answer, re-INVITEs
/// for hold and unhold) carries the same session id, and a version that
/// goes up by one exactly when the content differs from the previous one
/// sent. Sans-IO: the caller picks the session id (RFC 4566 suggests an NTP
/// timestamp; anything unique per leg will do).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginState {
    session_id: u64,
    version: u64,
    /// A digest of the previous description stamped (its version left
    /// out), to tell whether the next one differs.
    last: Option<u64>,
}

/// The seed of the digests [`OriginState::stamp`] compares: a fast hash
/// (SipHash was a visible share of the per-call path), seeded once per
/// process so that a far end cannot aim its descriptions at a collision.
static DIGEST_SEED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    // Without the system's randomness the seed stays 0: changes are still
    // told apart, only a collision could then be aimed at.
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    u64::from_ne_bytes(seed)
});

impl OriginState {
    /// A new origin with the given session id; the first version equals the
    /// session id, as many user agents do.
    pub fn new(session_id: u64) -> Self {
        OriginState {
            session_id,
            version: session_id,
            last: None,
        }
    }

    /// The session id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The version last stamped (or the one the first stamp will use).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Writes this leg's `o=` line into `sdp` (username
    /// [`ORIGIN_USERNAME`], `address` as the unicast address) and bumps the
    /// version if anything in `sdp` other than the version differs from the
    /// previous description stamped.
    pub fn stamp(&mut self, sdp: &mut SessionDescription, address: IpAddr) {
        let connection = Connection::from_ip(address);
        sdp.origin = Origin {
            username: ORIGIN_USERNAME.into(),
            session_id: self.session_id.to_compact_string(),
            session_version: Text::default(),
            net_type: connection.net_type,
            addr_type: connection.addr_type,
            address: connection.address,
        };
        let mut digest = std::hash::BuildHasher::build_hasher(
            &foldhash::quality::FixedState::with_seed(*DIGEST_SEED),
        );
        std::hash::Hash::hash(&*sdp, &mut digest);
        let content = std::hash::Hasher::finish(&digest);
        if self.last.is_some_and(|last| last != content) {
            self.version = self.version.wrapping_add(1);
        }
        self.last = Some(content);
        sdp.origin.session_version = self.version.to_compact_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    const BARESIP: &str = "v=0\r\n\
o=- 1689171213 3219564562 IN IP4 192.168.1.10\r\n\
s=-\r\n\
c=IN IP4 192.168.1.10\r\n\
t=0 0\r\n\
a=tool:baresip 3.4.0\r\n\
m=audio 10386 RTP/AVP 96 97 9 0 8 101\r\n\
b=AS:128\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:97 L16/48000/2\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp:10387 IN IP4 192.168.1.10\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:1372948531 cname:4f2a6c\r\n\
a=rtcp-rsize\r\n\
a=ptime:20\r\n";

    #[test]
    fn attributes_are_typed_only_when_written_back_byte_for_byte() {
        let typed = Attribute::parse("rtpmap:0 PCMU/8000");
        assert!(matches!(typed, Attribute::Rtpmap(_)), "{typed:?}");
        assert_eq!(typed.to_string(), "rtpmap:0 PCMU/8000");
        for verbatim in ["rtpmap:0  PCMU/8000", "rtpmap:0 PCMU/8000 ", "ptime:020"] {
            let a = Attribute::parse(verbatim);
            assert!(matches!(a, Attribute::Other { .. }), "{verbatim}: {a:?}");
            assert_eq!(a.to_string(), verbatim);
        }
        // A prefix of the written form is not a match either way round.
        assert!(!renders_as(&Attribute::Ptime(20), "ptime:2"));
        assert!(!renders_as(&Attribute::Ptime(2), "ptime:20"));
        assert!(renders_as(&Attribute::Ptime(20), "ptime:20"));
        // Looking through `Other` still reads the rtpmap.
        let lenient = Attribute::parse("rtpmap:0  PCMU/8000");
        assert_eq!(lenient.rtpmap().map(|r| r.payload_type), Some(0));
        assert_eq!(Attribute::parse("ptime:020").ptime(), Some(20));
    }

    #[test]
    fn secure_profiles_are_found_in_any_case() {
        let sdp = |proto: &str| {
            SessionDescription::parse(&format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 {proto} 0\r\n"
            ))
            .unwrap()
        };
        assert!(sdp("RTP/SAVP").media[0].is_secure());
        assert!(sdp("udp/tls/rtp/savpf").media[0].is_secure());
        assert!(sdp("RTP/savp").media[0].is_secure());
        assert!(!sdp("RTP/AVP").media[0].is_secure());
        assert!(!sdp("RTP/AVPF").media[0].is_secure());
    }

    #[test]
    fn render_writes_what_display_writes_in_one_buffer() {
        for text in [SIPP, BARESIP] {
            let sdp = SessionDescription::parse(text).unwrap();
            let out = sdp.render();
            assert_eq!(out, sdp.to_string());
            assert_eq!(out, text);
            assert!(out.capacity() >= out.len());
            assert!(
                out.capacity() < 2 * out.len() + 512,
                "{} for {}",
                out.capacity(),
                out.len()
            );
        }
    }

    #[test]
    fn transcodable_codecs_are_added_once_after_the_offered_ones() {
        let mut sdp = SessionDescription::parse(SIPP).unwrap();
        sdp.add_transcodable_codecs();
        let names: Vec<(u8, String)> = sdp
            .codecs(0)
            .into_iter()
            .map(|c| (c.payload_type, c.encoding.into_string()))
            .collect();
        assert_eq!(
            names,
            [
                (0, "PCMU".to_string()),
                (8, "PCMA".to_string()),
                (101, "telephone-event".to_string())
            ]
        );
        let again = sdp.to_string();
        let mut twice = SessionDescription::parse(&again).unwrap();
        twice.add_transcodable_codecs();
        assert_eq!(twice.to_string(), again, "idempotent");
        // baresip offers both and an event already: nothing changes.
        let mut b = SessionDescription::parse(BARESIP).unwrap();
        let before = b.to_string();
        b.add_transcodable_codecs();
        assert_eq!(b.to_string(), before);
    }

    const WEBRTC: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 192.168.1.5 54321 typ host generation 0 network-id 1\r\n\
a=ice-ufrag:Ab3d\r\n\
a=ice-pwd:q1w2e3r4t5y6u7i8o9p0a1s2\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:stream track\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1001 cname:abcdefgh\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=sctp-port:5000\r\n\
a=max-message-size:262144\r\n";

    const T38: &str = "v=0\r\n\
o=- 1 2 IN IP4 10.0.0.1\r\n\
s=-\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=image 40000 udptl t38\r\n\
a=T38FaxVersion:0\r\n\
a=T38MaxBitRate:14400\r\n\
a=T38FaxRateManagement:transferredTCF\r\n\
a=T38FaxMaxBuffer:262\r\n\
a=T38FaxMaxDatagram:176\r\n\
a=T38FaxUdpEC:t38UDPRedundancy\r\n";

    const IPV6: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP6 ::1\r\n\
s=Call\r\n\
c=IN IP6 ::1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 8 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
m=video 51372 RTP/AVP 31\r\n\
c=IN IP6 2001:db8::7\r\n\
a=recvonly\r\n";

    /// Every line type the model keeps verbatim, in RFC 4566 order.
    const KITCHEN_SINK: &str = "v=0\r\n\
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\n\
s=SDP Seminar\r\n\
i=A Seminar on the session description protocol\r\n\
u=http://www.example.com/seminars/sdp.pdf\r\n\
e=j.doe@example.com (Jane Doe)\r\n\
p=+1 617 555-6011\r\n\
c=IN IP4 224.2.17.12/127\r\n\
b=CT:1000\r\n\
t=2873397496 2873404696\r\n\
r=604800 3600 0 90000\r\n\
t=2873397497 2873404697\r\n\
z=2882844526 -1h 2898848070 0\r\n\
k=prompt\r\n\
x=unknown letter kept\r\n\
a=recvonly\r\n\
m=audio 49170/2 RTP/AVP 0\r\n\
i=audio stream\r\n\
c=IN IP4 224.2.17.13/127\r\n\
b=AS:64\r\n\
k=prompt\r\n\
a=rtpmap:0  PCMU/8000\r\n\
a=ptime:20.5\r\n\
a=sendrecv\r\n\
m=video 51372 RTP/AVP 99\r\n\
a=rtpmap:99 h263-1998/90000\r\n";

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn round_trips_are_byte_identical() {
        for text in [SIPP, BARESIP, WEBRTC, T38, IPV6, KITCHEN_SINK] {
            let sdp = parse(text);
            assert_eq!(sdp.to_string(), text);
            assert_eq!(parse(&sdp.to_string()), sdp);
        }
    }

    #[test]
    fn sipp_offer_fields() {
        let sdp = parse(SIPP);
        assert_eq!(sdp.origin.username, "user1");
        assert_eq!(sdp.origin.session_id, "53655765");
        assert_eq!(sdp.origin.session_version, "2353687637");
        assert_eq!(sdp.origin.address, "127.0.0.1");
        assert_eq!(sdp.session_name, "-");
        assert_eq!(sdp.timing, Timing { start: 0, stop: 0 });
        assert_eq!(sdp.media.len(), 1);
        let m = &sdp.media[0];
        assert_eq!(
            (m.media.as_str(), m.port, m.proto.as_str()),
            ("audio", 6000, "RTP/AVP")
        );
        assert_eq!(m.formats, ["0"]);
        assert_eq!(
            m.attributes,
            [Attribute::Rtpmap(Rtpmap {
                payload_type: 0,
                encoding: "PCMU".into(),
                clock_rate: 8000,
                channels: None
            })]
        );
        assert_eq!(
            sdp.media_address(0),
            Some("127.0.0.1:6000".parse().unwrap())
        );
        assert_eq!(sdp.media_address(1), None);
        assert_eq!(sdp.direction(0), Some(Direction::SendRecv));
        assert!(!sdp.is_hold());
    }

    #[test]
    fn baresip_offer_typed_attributes_and_codecs() {
        let sdp = parse(BARESIP);
        assert_eq!(sdp.attributes[0].name(), "tool");
        let m = &sdp.media[0];
        assert_eq!(
            m.bandwidths,
            [Bandwidth {
                bw_type: "AS".into(),
                bandwidth: 128
            }]
        );
        assert!(m.attributes.contains(&Attribute::Ptime(20)));
        assert!(m
            .attributes
            .contains(&Attribute::Direction(Direction::SendRecv)));
        assert!(m.attributes.contains(&Attribute::Rtcp(Rtcp {
            port: 10387,
            connection: Some(Connection::from_ip(v4(192, 168, 1, 10)))
        })));
        let codecs = sdp.codecs(0);
        let summary: Vec<(u8, &str, u32, u16)> = codecs
            .iter()
            .map(|c| {
                (
                    c.payload_type,
                    c.encoding.as_str(),
                    c.clock_rate,
                    c.channels,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (96, "opus", 48000, 2),
                (97, "L16", 48000, 2),
                (9, "G722", 8000, 1),
                (0, "PCMU", 8000, 1),
                (8, "PCMA", 8000, 1),
                (101, "telephone-event", 8000, 1),
            ]
        );
        assert_eq!(codecs[0].fmtp.as_deref(), Some("stereo=1;sprop-stereo=1"));
        assert_eq!(codecs[5].fmtp.as_deref(), Some("0-15"));
        assert_eq!(codecs[3].fmtp, None);
    }

    #[test]
    fn static_payload_types_without_rtpmap() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 8 9 18 3 13 96 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        let codecs: Vec<(u8, String, u32)> = sdp
            .codecs(0)
            .into_iter()
            .map(|c| (c.payload_type, c.encoding.into_string(), c.clock_rate))
            .collect();
        let expected: Vec<(u8, String, u32)> = [
            (0, "PCMU", 8000),
            (8, "PCMA", 8000),
            (9, "G722", 8000),
            (18, "G729", 8000),
            (3, "GSM", 8000),
            (13, "CN", 8000),
            (101, "telephone-event", 8000),
        ]
        .into_iter()
        .map(|(pt, e, r)| (pt, e.to_string(), r))
        .collect();
        // 96 has no rtpmap and no static meaning: skipped.
        assert_eq!(codecs, expected);
    }

    #[test]
    fn webrtc_lines_kept_verbatim() {
        let sdp = parse(WEBRTC);
        assert_eq!(
            sdp.attributes[2],
            Attribute::Other {
                name: "msid-semantic".into(),
                value: Some(" WMS stream".into())
            }
        );
        assert!(sdp.media[0].is_secure());
        assert!(sdp.media[1].is_secure());
        assert_eq!(sdp.media[1].formats, ["webrtc-datachannel"]);
        // ICE-only offers carry 0.0.0.0: nowhere to send without ICE.
        assert_eq!(sdp.media_address(0), None);
        let codecs = sdp.codecs(0);
        assert_eq!(codecs.len(), 8);
        assert_eq!(codecs[1].fmtp.as_deref(), Some("111/111"));
    }

    #[test]
    fn t38_offer() {
        let sdp = parse(T38);
        assert_eq!(sdp.media.len(), 2);
        assert_eq!(sdp.media_address(0), None, "port 0 is disabled");
        assert_eq!(
            sdp.media_address(1),
            Some("10.0.0.1:40000".parse().unwrap())
        );
        assert_eq!(sdp.media[1].proto, "udptl");
        assert_eq!(sdp.media[1].formats, ["t38"]);
        assert!(sdp.codecs(1).is_empty());
        assert_eq!(sdp.media[1].attributes[1].name(), "T38MaxBitRate");
    }

    #[test]
    fn ipv6_offer() {
        let sdp = parse(IPV6);
        assert_eq!(sdp.media_address(0), Some("[::1]:49170".parse().unwrap()));
        assert_eq!(
            sdp.media_address(1),
            Some("[2001:db8::7]:51372".parse().unwrap()),
            "media-level c= overrides the session one"
        );
        assert_eq!(sdp.direction(1), Some(Direction::RecvOnly));
        assert_eq!(sdp.direction(0), Some(Direction::SendRecv));
    }

    #[test]
    fn kitchen_sink_orders_and_leniency() {
        let sdp = parse(KITCHEN_SINK);
        assert_eq!(sdp.other_lines.len(), 9);
        assert_eq!(sdp.media[0].port_count, Some(2));
        assert_eq!(
            sdp.media_address(0),
            Some("224.2.17.13:49170".parse().unwrap())
        );
        // Odd spacing stays verbatim but still reads as an rtpmap.
        assert!(matches!(
            sdp.media[0].attributes[0],
            Attribute::Other { .. }
        ));
        assert_eq!(sdp.codecs(0)[0].encoding, "PCMU");
        assert!(matches!(
            sdp.media[0].attributes[1],
            Attribute::Other { .. }
        ));
        // Session-level direction is inherited by m-lines without their own.
        assert_eq!(sdp.direction(0), Some(Direction::SendRecv));
        assert_eq!(sdp.direction(1), Some(Direction::RecvOnly));
    }

    #[test]
    fn lf_only_input_is_written_with_crlf() {
        let lf = BARESIP.replace("\r\n", "\n");
        let sdp = parse(&lf);
        assert_eq!(sdp.to_string(), BARESIP);
        // Mixed endings and a trailing blank line are fine too.
        let mixed = format!("{}\n", SIPP.replacen("\r\n", "\n", 3));
        assert_eq!(parse(&mixed).to_string(), SIPP);
        // No final newline.
        assert_eq!(parse(SIPP.trim_end()).to_string(), SIPP);
    }

    #[test]
    fn hold_detection() {
        let with = |extra: &str, addr: &str| {
            parse(&format!(
                "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\n{extra}"
            ))
        };
        assert!(!with("", "10.0.0.1").is_hold());
        assert!(!with("a=sendrecv\r\n", "10.0.0.1").is_hold());
        assert!(!with("a=recvonly\r\n", "10.0.0.1").is_hold());
        assert!(with("a=sendonly\r\n", "10.0.0.1").is_hold());
        assert!(with("a=inactive\r\n", "10.0.0.1").is_hold());
        let old_style = with("", "0.0.0.0");
        assert!(old_style.is_hold());
        assert!(old_style.is_media_hold(0));
        assert_eq!(old_style.media_address(0), None);
        // Session-level direction is inherited.
        let session_level = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
             a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n",
        );
        assert_eq!(session_level.direction(0), Some(Direction::SendOnly));
        assert!(session_level.is_hold());
        // The media-level attribute wins over the session one.
        let overridden = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
             a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n",
        );
        assert!(!overridden.is_hold());
        // Disabled streams are neither held nor active.
        assert!(!parse(T38.replace("40000", "0").as_str()).is_hold());
        // IPv6 unspecified.
        assert!(parse(&IPV6.replace("c=IN IP6 ::1", "c=IN IP6 ::")).is_media_hold(0));
    }

    #[test]
    fn rewrite_points_every_stream_at_the_switch() {
        let offer = parse(BARESIP);
        let mut origin = OriginState::new(1_000);
        let switch = v4(203, 0, 113, 5);
        let out = offer.rewrite_for_relay(switch, &[Some(30000)], &mut origin);
        let text = out.to_string();
        assert!(text.starts_with(
            "v=0\r\no=dialtone 1000 1000 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
        ));
        assert!(text.contains("m=audio 30000 RTP/AVP 96 97 9 0 8 101\r\n"));
        assert!(text.contains("a=rtcp:30001 IN IP4 203.0.113.5\r\n"));
        assert!(!text.contains("192.168.1.10"), "{text}");
        assert_eq!(
            out.media_address(0),
            Some("203.0.113.5:30000".parse().unwrap())
        );
        // Everything else passes through.
        assert_eq!(out.media[0].formats, offer.media[0].formats);
        assert_eq!(out.codecs(0), offer.codecs(0));
        assert!(text.contains("a=fmtp:101 0-15\r\na=rtcp:30001"));
        assert!(text.contains("a=sendrecv\r\na=label:1\r\n"));
        assert!(text.contains("a=ptime:20\r\n"));
        assert_eq!(out.attributes, offer.attributes);
        assert_eq!(parse(&text), out);
    }

    #[test]
    fn rewrite_ipv6_and_per_media_connections() {
        let offer = parse(IPV6);
        let mut origin = OriginState::new(7);
        let switch: IpAddr = "2001:db8::53".parse().unwrap();
        let out = offer.rewrite_for_relay(switch, &[Some(20000), Some(20002)], &mut origin);
        assert_eq!(out.origin.addr_type, "IP6");
        assert_eq!(out.origin.address, "2001:db8::53");
        assert_eq!(out.connection, Some(Connection::from_ip(switch)));
        assert_eq!(out.media[1].connection, Some(Connection::from_ip(switch)));
        assert_eq!(out.media[0].connection, None);
        assert_eq!(
            out.media_address(0),
            Some("[2001:db8::53]:20000".parse().unwrap())
        );
        assert_eq!(
            out.media_address(1),
            Some("[2001:db8::53]:20002".parse().unwrap())
        );
        assert_eq!(out.direction(1), Some(Direction::RecvOnly));
        let text = out.to_string();
        assert!(text.contains("c=IN IP6 2001:db8::53\r\n"));
        assert!(!text.contains("::1"));
        assert!(!text.contains("2001:db8::7"));

        // An IPv4 offer relayed to an IPv6 leg, and the other way round.
        let out = parse(SIPP).rewrite_for_relay(switch, &[Some(20004)], &mut OriginState::new(1));
        assert!(out.to_string().contains("c=IN IP6 2001:db8::53\r\n"));
        let out = offer.rewrite_for_relay(
            v4(10, 1, 1, 1),
            &[Some(4000), Some(4002)],
            &mut OriginState::new(1),
        );
        let text = out.to_string();
        assert!(!text.contains("IP6"), "{text}");
        assert!(text.contains("m=video 4002 RTP/AVP 31\r\nc=IN IP4 10.1.1.1\r\n"));
    }

    #[test]
    fn rewrite_keeps_rejected_and_count_and_order() {
        let offer = parse(T38);
        let mut origin = OriginState::new(5);
        let out =
            offer.rewrite_for_relay(v4(10, 9, 9, 9), &[Some(31000), Some(31002)], &mut origin);
        assert_eq!(out.media.len(), 2);
        assert_eq!(out.media[0].media, "audio");
        assert_eq!(out.media[0].port, 0, "rejected stays rejected");
        assert_eq!(out.media[1].media, "image");
        assert_eq!(out.media[1].port, 31002);
        assert_eq!(out.media[1].attributes, offer.media[1].attributes);
        assert!(out
            .to_string()
            .contains("m=audio 0 RTP/AVP 0\r\nm=image 31002 udptl t38\r\n"));

        // No relay port for an enabled stream: it is rejected, not dropped.
        let out = parse(IPV6).rewrite_for_relay(v4(10, 9, 9, 9), &[Some(31000)], &mut origin);
        assert_eq!(out.media.len(), 2);
        assert_eq!((out.media[0].port, out.media[1].port), (31000, 0));
        assert_eq!(out.media[1].media, "video");
        assert_eq!(out.media_address(1), None);
    }

    #[test]
    fn rewrite_passes_hold_through() {
        let mut origin = OriginState::new(9);
        let switch = v4(10, 0, 0, 2);
        let held = parse(&SIPP.replace(
            "a=rtpmap:0 PCMU/8000\r\n",
            "a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n",
        ));
        let out = held.rewrite_for_relay(switch, &[Some(4000)], &mut origin);
        assert!(out.is_hold());
        assert_eq!(out.direction(0), Some(Direction::SendOnly));

        let old_style = parse(&SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"));
        let out = old_style.rewrite_for_relay(switch, &[Some(4000)], &mut origin);
        assert!(out.is_hold());
        assert_eq!(out.connection, Some(Connection::from_ip(switch)));
        assert_eq!(out.media[0].connection.as_ref().unwrap().address, "0.0.0.0");
        let out =
            old_style.rewrite_for_relay("fd00::2".parse().unwrap(), &[Some(4000)], &mut origin);
        assert!(out.is_hold());
        assert_eq!(
            out.media[0].connection.as_ref().unwrap().to_string(),
            "IN IP6 ::"
        );
    }

    #[test]
    fn rewrite_leaves_srtp_alone_and_strips_ice_and_crypto() {
        let switch = v4(10, 0, 0, 2);
        let webrtc = parse(WEBRTC);
        let out =
            webrtc.rewrite_for_relay(switch, &[Some(4000), Some(4002)], &mut OriginState::new(1));
        assert_eq!(
            out.media, webrtc.media,
            "secure m-lines pass through untouched"
        );
        assert_eq!(out.attributes, webrtc.attributes);

        let savp = "v=0\r\no=- 1 1 IN IP4 10.5.5.5\r\ns=-\r\nc=IN IP4 10.5.5.5\r\nt=0 0\r\n\
                    m=audio 5000 RTP/SAVP 0\r\n\
                    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
        let out = parse(savp).rewrite_for_relay(switch, &[Some(4000)], &mut OriginState::new(1));
        assert_eq!(out.media[0].port, 5000);
        assert_eq!(out.media_address(0), Some("10.5.5.5:5000".parse().unwrap()));
        assert_eq!(out.media[0].attributes.len(), 1);

        let avp = "v=0\r\no=- 1 1 IN IP4 10.5.5.5\r\ns=-\r\nc=IN IP4 10.5.5.5\r\nt=0 0\r\n\
                   a=ice-ufrag:abc\r\na=ice-pwd:0123456789012345678901\r\n\
                   m=audio 5000 RTP/AVP 0\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
                   a=candidate:1 1 UDP 2130706431 10.5.5.5 5000 typ host\r\n\
                   a=rtcp:5001\r\n\
                   a=ptime:20\r\n";
        let out = parse(avp).rewrite_for_relay(switch, &[Some(4000)], &mut OriginState::new(1));
        let text = out.to_string();
        assert!(!text.contains("crypto"), "{text}");
        assert!(!text.contains("ice-"), "{text}");
        assert!(!text.contains("candidate"), "{text}");
        assert!(text
            .ends_with("m=audio 4000 RTP/AVP 0\r\na=rtcp:4001 IN IP4 10.0.0.2\r\na=ptime:20\r\n"));

        // The top port has no room for RTCP: a=rtcp goes away.
        let out = parse(avp).rewrite_for_relay(switch, &[Some(65535)], &mut OriginState::new(1));
        assert!(!out.to_string().contains("rtcp"));
    }

    #[test]
    fn origin_version_increments_only_on_change() {
        let switch = v4(10, 0, 0, 2);
        let mut origin = OriginState::new(42);
        let offer = parse(SIPP);
        let first = offer.rewrite_for_relay(switch, &[Some(4000)], &mut origin);
        assert_eq!(first.origin.session_id, "42");
        assert_eq!(first.origin.session_version, "42");
        assert_eq!(first.origin.username, "dialtone");
        // The far end bumped its version only: our content is the same.
        let mut bumped = offer.clone();
        bumped.origin.session_version = "2353687638".into();
        let again = bumped.rewrite_for_relay(switch, &[Some(4000)], &mut origin);
        assert_eq!(again.origin.session_version, "42");
        assert_eq!(again, first);
        // Hold: content changes.
        let mut hold = offer.clone();
        hold.media[0]
            .attributes
            .push(Attribute::Direction(Direction::SendOnly));
        let held = hold.rewrite_for_relay(switch, &[Some(4000)], &mut origin);
        assert_eq!(held.origin.session_version, "43");
        assert_eq!(held.origin.session_id, "42");
        // Unhold: changes back, so the version goes up again.
        let unheld = offer.rewrite_for_relay(switch, &[Some(4000)], &mut origin);
        assert_eq!(unheld.origin.session_version, "44");
        assert_eq!(origin.version(), 44);
        assert_eq!(origin.session_id(), 42);
        // A new relay port is a change too.
        let moved = offer.rewrite_for_relay(switch, &[Some(4002)], &mut origin);
        assert_eq!(moved.origin.session_version, "45");
    }

    #[test]
    fn answer_picks_supported_codec_and_telephone_event() {
        let switch = v4(10, 0, 0, 2);
        let offer = parse(BARESIP);
        let mut origin = OriginState::new(100);
        let answer =
            offer.answer_with_codecs(&["PCMU", "PCMA"], switch, &[Some(5000)], &mut origin);
        assert_eq!(
            answer.to_string(),
            "v=0\r\n\
             o=dialtone 100 100 IN IP4 10.0.0.2\r\n\
             s=dialtone\r\n\
             c=IN IP4 10.0.0.2\r\n\
             t=0 0\r\n\
             m=audio 5000 RTP/AVP 0 101\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        // The offerer's preference order decides, not ours.
        let answer =
            offer.answer_with_codecs(&["pcma", "pcmu"], switch, &[Some(5000)], &mut origin);
        assert_eq!(answer.media[0].formats, ["0", "101"]);
        let pcma_first = parse(&SIPP.replace("RTP/AVP 0", "RTP/AVP 8 0"));
        let answer =
            pcma_first.answer_with_codecs(&["PCMU", "PCMA"], switch, &[Some(5000)], &mut origin);
        assert_eq!(answer.media[0].formats, ["8"]);
        assert_eq!(answer.codecs(0)[0].encoding, "PCMA");
        // Nothing in common: rejected with the offered formats.
        let answer = offer.answer_with_codecs(&["G729"], switch, &[Some(5000)], &mut origin);
        assert_eq!(answer.media[0].port, 0);
        assert_eq!(answer.media[0].formats, offer.media[0].formats);
        // WebRTC offer: telephone-event at 8000 matches PCMU, 48000 does not.
        let plain = parse(&WEBRTC.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"));
        let answer =
            plain.answer_with_codecs(&["PCMU"], switch, &[Some(5000), Some(5002)], &mut origin);
        assert_eq!(answer.media[0].formats, ["0", "126"]);
        assert_eq!(answer.media[1].port, 0, "data channel rejected");
        assert_eq!(answer.media[1].formats, ["webrtc-datachannel"]);
    }

    #[test]
    fn answer_rejects_other_streams_and_mirrors_directions() {
        let switch: IpAddr = "fd00::2".parse().unwrap();
        let mut origin = OriginState::new(3);
        let answer = parse(IPV6).answer_with_codecs(
            &["PCMU", "PCMA"],
            switch,
            &[Some(6000), Some(6002)],
            &mut origin,
        );
        assert_eq!(answer.media.len(), 2);
        assert_eq!(answer.media[0].formats, ["8", "101"]);
        assert_eq!(
            answer.media_address(0),
            Some("[fd00::2]:6000".parse().unwrap())
        );
        assert_eq!(answer.media[1].port, 0);
        assert_eq!(answer.media[1].media, "video");
        assert!(answer.to_string().contains("m=video 0 RTP/AVP 31\r\n"));
        assert_eq!(answer.origin.addr_type, "IP6");

        let t38 = parse(T38).answer_with_codecs(
            &["PCMU"],
            v4(1, 1, 1, 1),
            &[Some(1), Some(2)],
            &mut origin,
        );
        assert!(t38.media.iter().all(|m| m.port == 0));

        for (offered, answered) in [
            ("sendrecv", Direction::SendRecv),
            ("sendonly", Direction::RecvOnly),
            ("recvonly", Direction::SendOnly),
            ("inactive", Direction::Inactive),
        ] {
            let offer = parse(&format!("{SIPP}a={offered}\r\n"));
            let answer = offer.answer_with_codecs(&["PCMU"], switch, &[Some(6000)], &mut origin);
            assert_eq!(answer.direction(0), Some(answered), "{offered}");
            assert_eq!(answer.media[0].direction_attribute(), Some(answered));
        }
        // RFC 2543 hold: the offerer does not want media.
        let offer = parse(&SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"));
        let answer = offer.answer_with_codecs(&["PCMU"], switch, &[Some(6000)], &mut origin);
        assert_eq!(answer.direction(0), Some(Direction::RecvOnly));
        // Secure offers are rejected: the switch does not do SRTP.
        let answer = parse(WEBRTC).answer_with_codecs(
            &["PCMU"],
            switch,
            &[Some(6000), Some(6002)],
            &mut origin,
        );
        assert!(answer.media.iter().all(|m| m.port == 0));
        // Answers round-trip.
        assert_eq!(parse(&answer.to_string()), answer);
    }

    #[test]
    fn malformed_input_names_the_line() {
        let err = |text: &str| SessionDescription::parse(text).unwrap_err();
        assert_eq!(err(""), error(1, ParseErrorKind::MissingVersion));
        assert_eq!(err("\r\n\r\n"), error(1, ParseErrorKind::MissingVersion));
        assert_eq!(
            err("o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n"),
            error(1, ParseErrorKind::MissingVersion)
        );
        assert_eq!(
            err("v=1\r\n"),
            error(1, ParseErrorKind::BadVersion("1".into()))
        );
        assert_eq!(err("hello world"), error(1, ParseErrorKind::Malformed));
        assert_eq!(
            err(&SIPP.replace("m=audio 6000 RTP/AVP 0", "m=audio 6000")),
            error(6, ParseErrorKind::BadMedia)
        );
        assert_eq!(
            err(&SIPP.replace("m=audio 6000", "m=audio sixk")),
            error(6, ParseErrorKind::BadPort("sixk".into()))
        );
        assert_eq!(
            err(&SIPP.replace("m=audio 6000", "m=audio 70000")),
            error(6, ParseErrorKind::BadPort("70000".into()))
        );
        assert_eq!(
            err(&SIPP.replace("m=audio 6000", "m=audio 6000/x")),
            error(6, ParseErrorKind::BadPort("6000/x".into()))
        );
        assert_eq!(
            err(&SIPP.replace("a=rtpmap", "garbage\r\na=rtpmap")),
            error(7, ParseErrorKind::Malformed)
        );
        assert_eq!(
            err(&SIPP.replace(
                "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
                "o=user1 1 IN"
            )),
            error(2, ParseErrorKind::BadOrigin)
        );
        assert_eq!(
            err(&SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4")),
            error(4, ParseErrorKind::BadConnection)
        );
        assert_eq!(
            err(&SIPP.replace("t=0 0", "t=now")),
            error(5, ParseErrorKind::BadTiming)
        );
        assert_eq!(
            err(&SIPP.replace("t=0 0\r\n", "")),
            error(5, ParseErrorKind::MissingTiming)
        );
        assert_eq!(
            err(&SIPP.replace("s=-\r\n", "")),
            error(5, ParseErrorKind::MissingSessionName)
        );
        assert_eq!(err("v=0\n"), error(2, ParseErrorKind::MissingOrigin));
        assert_eq!(
            err(&format!("{SIPP}c=IN IP4 1.1.1.1\r\nc=IN IP4 1.1.1.2\r\n")),
            error(9, ParseErrorKind::Duplicate('c'))
        );
        assert_eq!(
            err(&format!("{SIPP}s=late\r\n")),
            error(8, ParseErrorKind::Misplaced('s'))
        );
        assert_eq!(
            err(&format!("{SIPP}b=AS\r\n")),
            error(8, ParseErrorKind::BadBandwidth)
        );
        let message = err(&SIPP.replace("m=audio 6000", "m=audio x")).to_string();
        assert_eq!(message, "SDP line 6: bad port \"x\" in m= line");
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        for text in [SIPP, BARESIP, WEBRTC, T38, IPV6, KITCHEN_SINK] {
            for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                let prefix = &text[..end];
                if let Ok(sdp) = SessionDescription::parse(prefix) {
                    // Whatever parses writes back to something that parses
                    // to the same model.
                    assert_eq!(parse(&sdp.to_string()), sdp);
                    let _ = sdp.rewrite_for_relay(
                        v4(1, 2, 3, 4),
                        &[Some(9)],
                        &mut OriginState::new(u64::MAX),
                    );
                    let _ = sdp.answer_with_codecs(
                        &["PCMU"],
                        v4(1, 2, 3, 4),
                        &[Some(9)],
                        &mut OriginState::new(0),
                    );
                    for i in 0..3 {
                        let _ = (
                            sdp.media_address(i),
                            sdp.direction(i),
                            sdp.codecs(i),
                            sdp.is_media_hold(i),
                        );
                    }
                }
                let _ = SessionDescription::parse(&text[end..]);
            }
            let bytes = text.as_bytes();
            for i in 0..bytes.len() {
                for replacement in [b' ', b'=', b'\n', b'/', b':', b'x', b'9'] {
                    let mut mutated = bytes.to_vec();
                    mutated[i] = replacement;
                    if let Ok(mutated) = String::from_utf8(mutated) {
                        if let Ok(sdp) = SessionDescription::parse(&mutated) {
                            let _ = sdp.rewrite_for_relay(
                                v4(1, 2, 3, 4),
                                &[Some(65535)],
                                &mut OriginState::new(1),
                            );
                            let _ = sdp.is_hold();
                        }
                    }
                }
            }
        }
    }
}
