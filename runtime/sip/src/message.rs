//! SIP messages: model, parser, framing and serializer.
//!
//! # What this module owns
//!
//! - [`Message`]: a request or response with its headers in arrival order
//!   and its body. Header values are kept as text; typed views ([`Via`],
//!   [`NameAddr`], [`CSeq`], [`Uri`]) are parsed on demand, so a message
//!   whose unusual header the switch never reads still gets through.
//! - Parsing a datagram ([`parse_datagram`]) and framing a stream
//!   ([`StreamFramer`]): Content-Length framing on TCP/TLS, RFC 5626
//!   CRLF keep-alives, folded header lines (RFC 3261 7.3.1), bare-LF line
//!   ends, compact header names expanded to their full names, extension
//!   methods (so the switch can answer them 501/405), IPv6 references in
//!   URIs and Via, comma-separated multi-value headers.
//! - Serializing ([`Message::to_bytes`]): headers in order with the
//!   Content-Length always rewritten to the body's length.
//! - Building responses per RFC 3261 8.2.6 ([`Message::response_to`]).
//!
//! The `rsip` crate's message model was the starting point; it cannot
//! parse IPv6 hosts, compact names, unknown methods, folded lines or
//! framed streams (see the crate docs of `dialtone-sip`), so the model here
//! is Dialtone's own, and `rsip` serves as a cross-check in the tests: a
//! well-formed message reads the same through both.
//!
//! # Limits
//!
//! A message's header part is at most [`MAX_HEADER_BYTES`]; its body at
//! most [`MAX_BODY_BYTES`]; at most [`MAX_HEADERS`] header lines. Anything
//! larger is a [`ParseError`], never an allocation the sender chooses.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Largest header part (start line and headers) accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 256;

// ---------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------

/// A SIP method, including extension methods.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// REGISTER
    Register,
    /// OPTIONS
    Options,
    /// INFO
    Info,
    /// MESSAGE
    Message,
    /// UPDATE
    Update,
    /// PRACK
    Prack,
    /// SUBSCRIBE
    Subscribe,
    /// NOTIFY
    Notify,
    /// REFER
    Refer,
    /// PUBLISH
    Publish,
    /// Any other token.
    Other(String),
}

impl Method {
    /// The method's name as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Parses a method token (case-sensitive, as RFC 3261 says).
    pub fn parse(s: &str) -> Option<Method> {
        if s.is_empty() || !s.bytes().all(is_token_byte) {
            return None;
        }
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

// ---------------------------------------------------------------------------
// Hosts and URIs
// ---------------------------------------------------------------------------

/// The host part of a URI or Via.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name (kept as written, compared case-insensitively by users).
    Name(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (written in brackets).
    V6(Ipv6Addr),
}

impl Host {
    /// The host as written in a URI (what `to_string` gives), in one
    /// allocation.
    pub fn text(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::V4(a) => text_in_one(a, 15),
            Host::V6(a) => text_in_one(format_args!("[{a}]"), 47),
        }
    }

    /// Parses `name`, `1.2.3.4` or `[v6]`.
    pub fn parse(s: &str) -> Result<Host, String> {
        HostRef::parse(s).map(HostRef::into_owned)
    }

    /// The address, if the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
            Host::Name(_) => None,
        }
    }
}

/// A host read in place: what [`Host::parse`] checks, without the
/// allocation of a name (validation and matching need no copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostRef<'a> {
    Name(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl<'a> HostRef<'a> {
    fn parse(s: &'a str) -> Result<HostRef<'a>, String> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| format!("unterminated IPv6 reference `{s}`"))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(HostRef::V6)
                .map_err(|_| format!("bad IPv6 address `{inner}`"));
        }
        if s.is_empty() {
            return Err("empty host".into());
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(HostRef::V4(v4));
        }
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            Ok(HostRef::Name(s))
        } else {
            Err(format!("bad host `{s}`"))
        }
    }

    fn into_owned(self) -> Host {
        match self {
            HostRef::Name(n) => Host::Name(n.to_string()),
            HostRef::V4(a) => Host::V4(a),
            HostRef::V6(a) => Host::V6(a),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A URI scheme.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
}

/// A parameter list entry: `name` or `name=value`.
pub type Param = (String, Option<String>);

/// A SIP, SIPS or tel URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part, percent-decoded (for `tel:`, the number).
    pub user: Option<String>,
    /// The password part, if any (deprecated, kept).
    pub password: Option<String>,
    /// The host (for `tel:`, an empty name).
    pub host: Host,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp`, `;lr`), names lower-cased.
    pub params: Vec<Param>,
    /// The `?headers` part, raw.
    pub headers: Option<String>,
}

impl Uri {
    /// A plain `sip:user@host[:port]`.
    pub fn sip(user: Option<&str>, host: Host, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: None,
        }
    }

    /// Parses a URI.
    pub fn parse(s: &str) -> Result<Uri, String> {
        UriParts::split(s).map(UriParts::into_owned)
    }

    /// Whether `s` is a URI [`Uri::parse`] accepts, found without building
    /// it (no allocation unless it is not).
    pub fn is_well_formed(s: &str) -> bool {
        UriParts::split(s).is_ok()
    }

    /// A URI parameter's value (`Some(None)` for a flag like `;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The `transport` parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }

    /// Sets or replaces a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }
}

/// A URI split in place: everything [`Uri::parse`] checks, nothing copied
/// or decoded yet. [`UriParts::into_owned`] builds the [`Uri`].
struct UriParts<'a> {
    scheme: Scheme,
    /// Still percent-encoded.
    user: Option<&'a str>,
    /// Still percent-encoded.
    password: Option<&'a str>,
    host: HostRef<'a>,
    port: Option<u16>,
    /// The part whose `;` parameters after its head are the URI's.
    params: &'a str,
    headers: Option<&'a str>,
}

impl<'a> UriParts<'a> {
    fn split(s: &'a str) -> Result<UriParts<'a>, String> {
        let s = s.trim();
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(s, "sip:") {
            (Scheme::Sip, r)
        } else if let Some(r) = strip_prefix_ci(s, "sips:") {
            (Scheme::Sips, r)
        } else if let Some(r) = strip_prefix_ci(s, "tel:") {
            let number = params_head(r);
            if number.is_empty() {
                return Err(format!("empty tel URI `{s}`"));
            }
            return Ok(UriParts {
                scheme: Scheme::Tel,
                user: Some(number),
                password: None,
                host: HostRef::Name(""),
                port: None,
                params: r,
                headers: None,
            });
        } else {
            return Err(format!("unsupported URI `{}`", truncate(s, 64)));
        };
        let (rest, headers) = match rest.find('?') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        // The userinfo ends at the last '@' before the host part.
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(ui) => {
                let (u, p) = match ui.find(':') {
                    Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err(format!("empty user in `{}`", truncate(s, 64)));
                }
                (Some(u), p)
            }
            None => (None, None),
        };
        let (host, port) = split_host_port_ref(params_head(hostpart))?;
        Ok(UriParts {
            scheme,
            user,
            password,
            host,
            port,
            params: hostpart,
            headers,
        })
    }

    fn into_owned(self) -> Uri {
        Uri {
            scheme: self.scheme,
            user: self.user.map(percent_decode),
            password: self.password.map(percent_decode),
            host: self.host.into_owned(),
            port: self.port,
            params: split_params(self.params).1,
            headers: self.headers.map(str::to_string),
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Sip => f.write_str("sip:")?,
            Scheme::Sips => f.write_str("sips:")?,
            Scheme::Tel => {
                f.write_str("tel:")?;
                if let Some(u) = &self.user {
                    f.write_str(&percent_encode_user(u))?;
                }
                return write_params(f, &self.params);
            }
        }
        if let Some(u) = &self.user {
            f.write_str(&percent_encode_user(u))?;
            if let Some(p) = &self.password {
                write!(f, ":{}", percent_encode_user(p))?;
            }
            f.write_char('@')?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

impl FromStr for Uri {
    type Err = String;
    fn from_str(s: &str) -> Result<Uri, String> {
        Uri::parse(s)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn split_host_port(s: &str) -> Result<(Host, Option<u16>), String> {
    split_host_port_ref(s).map(|(h, p)| (h.into_owned(), p))
}

fn split_host_port_ref(s: &str) -> Result<(HostRef<'_>, Option<u16>), String> {
    let s = s.trim();
    if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| format!("unterminated IPv6 reference `{s}`"))?;
        let host = HostRef::parse(&s[..=end])?;
        let rest = &s[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if rest.is_empty() => None,
            None => return Err(format!("junk after IPv6 host `{s}`")),
        };
        return Ok((host, port));
    }
    match s.rfind(':') {
        Some(i) => Ok((HostRef::parse(&s[..i])?, Some(parse_port(&s[i + 1..])?))),
        None => Ok((HostRef::parse(s)?, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("bad port `{p}`"))
}

/// Splits `a;b=c;d` into `a` and its parameters (names lower-cased).
fn split_params(s: &str) -> (&str, Vec<Param>) {
    let mut parts = split_outside_quotes(s, b';');
    let head = parts.next().unwrap_or("").trim();
    let params = parts.filter_map(parse_param).collect();
    (head, params)
}

/// What [`split_params`] gives as the head, without reading the
/// parameters.
fn params_head(s: &str) -> &str {
    split_outside_quotes(s, b';').next().unwrap_or("").trim()
}

fn parse_param(p: &str) -> Option<Param> {
    let (name, value) = param_parts(p)?;
    Some((name.to_ascii_lowercase(), value.map(str::to_string)))
}

/// One `name[=value]` parameter, trimmed, borrowed (`None` when empty).
fn param_parts(p: &str) -> Option<(&str, Option<&str>)> {
    let p = p.trim();
    if p.is_empty() {
        return None;
    }
    Some(match p.split_once('=') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (p, None),
    })
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

fn set_param(params: &mut Vec<Param>, name: &str, value: Option<&str>) {
    let value = value.map(str::to_string);
    match params
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        Some(slot) => slot.1 = value,
        None => params.push((name.to_ascii_lowercase(), value)),
    }
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for (k, v) in params {
        match v {
            Some(v) => write!(f, ";{k}={v}")?,
            None => write!(f, ";{k}")?,
        }
    }
    Ok(())
}

/// Splits at `sep` (an ASCII byte) outside double quotes and angle
/// brackets.
fn split_outside_quotes(s: &str, sep: u8) -> SplitOutsideQuotes<'_> {
    // A byte of a multi-byte character would split inside it.
    debug_assert!(sep.is_ascii());
    SplitOutsideQuotes {
        s,
        start: 0,
        sep,
        done: false,
    }
}

/// The parts of a string between `sep`s that are outside quotes and angle
/// brackets (lazily: the per-message paths look at the first part most).
struct SplitOutsideQuotes<'a> {
    s: &'a str,
    start: usize,
    sep: u8,
    done: bool,
}

impl<'a> Iterator for SplitOutsideQuotes<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let rest = &self.s[self.start..];
        let mut quotes = Quotes::default();
        let mut angle = 0u32;
        // Bytes, not chars: every byte that matters is ASCII, and no byte
        // of a multi-byte UTF-8 sequence is.
        for (i, &c) in rest.as_bytes().iter().enumerate() {
            if !quotes.outside(c) {
                continue;
            }
            match c {
                b'<' => angle += 1,
                b'>' => angle = angle.saturating_sub(1),
                c if c == self.sep && angle == 0 => {
                    self.start += i + 1;
                    return Some(&rest[..i]);
                }
                _ => {}
            }
        }
        self.done = true;
        Some(rest)
    }
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode_user(s: &str) -> String {
    // RFC 3261 user = unreserved / escaped / user-unreserved.
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b);
    if s.bytes().all(ok) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if ok(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

/// Declares [`CANONICAL`] and [`canonical_spelling`] from one list, so
/// that the exact match and the table cannot drift apart.
macro_rules! header_names {
    ($(($key:literal, $canon:literal)),* $(,)?) => {
        /// Compact forms (RFC 3261 7.3.3 and later RFCs) and canonical
        /// spellings.
        const CANONICAL: &[(&str, &str)] = &[$(($key, $canon)),*];

        /// `name` if it is a canonical spelling, exactly (how most names
        /// arrive: the switch's own literals, and what most peers send).
        #[allow(unreachable_patterns)] // a spelling listed under two keys
        fn canonical_spelling(name: &str) -> Option<&'static str> {
            match name {
                $($canon => Some($canon),)*
                _ => None,
            }
        }
    };
}

header_names! {
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
    ("a", "Accept-Contact"),
    ("j", "Reject-Contact"),
    ("d", "Request-Disposition"),
    ("y", "Identity"),
    ("call-id", "Call-ID"),
    ("contact", "Contact"),
    ("content-encoding", "Content-Encoding"),
    ("content-length", "Content-Length"),
    ("content-type", "Content-Type"),
    ("from", "From"),
    ("subject", "Subject"),
    ("supported", "Supported"),
    ("to", "To"),
    ("via", "Via"),
    ("event", "Event"),
    ("refer-to", "Refer-To"),
    ("referred-by", "Referred-By"),
    ("cseq", "CSeq"),
    ("max-forwards", "Max-Forwards"),
    ("route", "Route"),
    ("record-route", "Record-Route"),
    ("expires", "Expires"),
    ("min-expires", "Min-Expires"),
    ("www-authenticate", "WWW-Authenticate"),
    ("authorization", "Authorization"),
    ("proxy-authenticate", "Proxy-Authenticate"),
    ("proxy-authorization", "Proxy-Authorization"),
    ("user-agent", "User-Agent"),
    ("server", "Server"),
    ("allow", "Allow"),
    ("accept", "Accept"),
    ("require", "Require"),
    ("proxy-require", "Proxy-Require"),
    ("unsupported", "Unsupported"),
    ("retry-after", "Retry-After"),
    ("reason", "Reason"),
    ("rseq", "RSeq"),
    ("rack", "RAck"),
    ("p-asserted-identity", "P-Asserted-Identity"),
    ("session-expires", "Session-Expires"),
    ("min-se", "Min-SE"),
    ("path", "Path"),
    ("warning", "Warning"),
    ("date", "Date"),
    ("timestamp", "Timestamp"),
    ("organization", "Organization"),
    ("allow-events", "Allow-Events"),
}

/// `value` as text in one allocation of `longest` bytes, where
/// `to_string` would grow its buffer as it goes (an address written a
/// piece at a time reallocates two or three times).
pub fn text_in_one(value: impl fmt::Display, longest: usize) -> String {
    let mut s = String::with_capacity(longest);
    let _ = write!(s, "{value}");
    s
}

/// An IP address as text, in one allocation.
pub fn ip_text(ip: IpAddr) -> String {
    text_in_one(ip, if ip.is_ipv4() { 15 } else { 45 })
}

/// The canonical spelling of a header name (compact forms expanded).
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    match known_name(name) {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Borrowed(name),
    }
}

/// The canonical spelling of a name the table knows, as a `'static` str
/// (header lines keep it without allocating).
fn known_name(name: &str) -> Option<&'static str> {
    // Every header line stored and every lookup asks this: an exact match
    // first, then the table bucketed by length, so a name is compared
    // (folding case) with the few entries of its length only. Keyed by both
    // columns (a compact form, and every canonical spelling in lower case).
    static BY_LEN: std::sync::LazyLock<Vec<Vec<(String, &'static str)>>> =
        std::sync::LazyLock::new(|| {
            let mut b: Vec<Vec<(String, &'static str)>> = Vec::new();
            for (k, c) in CANONICAL {
                for key in [k.to_string(), c.to_ascii_lowercase()] {
                    if b.len() <= key.len() {
                        b.resize_with(key.len() + 1, Vec::new);
                    }
                    let bucket = &mut b[key.len()];
                    if !bucket.iter().any(|(have, _)| *have == key) {
                        bucket.push((key, *c));
                    }
                }
            }
            b
        });
    if let Some(c) = canonical_spelling(name) {
        return Some(c);
    }
    BY_LEN
        .get(name.len())?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
}

/// A header name as a line stores it: the table's `'static` spelling, or
/// the name as given.
fn stored_name(name: &str) -> std::borrow::Cow<'static, str> {
    match known_name(name) {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(name.to_string()),
    }
}

/// Headers whose values may not be split at commas.
fn never_comma_split(name: &str) -> bool {
    [
        "WWW-Authenticate",
        "Authorization",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Date",
        "Retry-After",
        "User-Agent",
        "Server",
        "Subject",
        "Warning",
        "Organization",
        "Call-ID",
        "CSeq",
        "From",
        "To",
        "Content-Length",
        "Content-Type",
        "Max-Forwards",
        "Expires",
        "Timestamp",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// One header line: canonical name and raw value (unfolded, trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Canonical name (borrowed from a static table for the names it
    /// knows, so a line costs one allocation, its value). Lookups compare
    /// a known name exactly: add lines through [`Headers`]' methods, which
    /// store the canonical spelling.
    pub name: std::borrow::Cow<'static, str>,
    /// The value, trimmed. Inline up to 24 bytes (CSeq, Max-Forwards,
    /// Content-Length, most Call-IDs): copying a line for a response or an
    /// ACK copies no text then.
    pub value: HeaderValue,
}

/// The text of a header value.
pub type HeaderValue = compact_str::CompactString;

/// The header lines of a message, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// The first value of `name` (any spelling or compact form).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.lines(name).0.next().map(|h| h.value.as_str())
    }

    /// The lines of `name`, in order, and its canonical spelling. A name
    /// the table knows is stored in that spelling (lines are only added
    /// through `push`, `push_front` and `set`), so it is compared exactly;
    /// other names ignoring ASCII case.
    fn lines<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> (impl Iterator<Item = &'s Header> + use<'s, 'n>, &'n str) {
        let known = known_name(name);
        let lines = self.0.iter().filter(move |h| match known {
            Some(canon) => h.name == canon,
            None => h.name.eq_ignore_ascii_case(name),
        });
        (lines, known.unwrap_or(name))
    }

    /// Every value of `name`: comma-separated values split (except for the
    /// headers RFC 3261 says cannot be), across all lines, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        let (lines, canon) = self.lines(name);
        let split = !never_comma_split(canon);
        let mut out = Vec::new();
        for h in lines {
            if split {
                out.extend(
                    split_outside_quotes(&h.value, b',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty()),
                );
            } else {
                out.push(h.value.as_str());
            }
        }
        out
    }

    /// The first of [`Headers::get_all`]'s values, without collecting the
    /// rest.
    pub fn first_value(&self, name: &str) -> Option<&str> {
        let (lines, canon) = self.lines(name);
        let split = !never_comma_split(canon);
        for h in lines {
            if !split {
                return Some(h.value.as_str());
            }
            if let Some(v) = split_outside_quotes(&h.value, b',')
                .map(str::trim)
                .find(|v| !v.is_empty())
            {
                return Some(v);
            }
        }
        None
    }

    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a header line.
    pub fn push(&mut self, name: &str, value: impl Into<HeaderValue>) {
        self.0.push(Header {
            name: stored_name(name),
            value: value.into(),
        });
    }

    /// Inserts a header line first (a new top Via, say).
    pub fn push_front(&mut self, name: &str, value: impl Into<HeaderValue>) {
        self.0.insert(
            0,
            Header {
                name: stored_name(name),
                value: value.into(),
            },
        );
    }

    /// Replaces all lines of `name` with one line (or appends it).
    pub fn set(&mut self, name: &str, value: impl Into<HeaderValue>) {
        let canon = stored_name(name);
        let value = value.into();
        match self
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(&canon))
        {
            Some(i) => {
                self.0[i].value = value;
                let mut j = i + 1;
                while j < self.0.len() {
                    if self.0[j].name.eq_ignore_ascii_case(&canon) {
                        self.0.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => self.0.push(Header { name: canon, value }),
        }
    }

    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &str) {
        let canon = canonical_name(name);
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(&canon));
    }

    /// Removes the first value of a multi-value header (the top Via, say):
    /// from its line if that line holds several, else the whole line.
    pub fn remove_first_value(&mut self, name: &str) -> Option<String> {
        let canon = canonical_name(name);
        let i = self
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(&canon))?;
        let mut parts: Vec<&str> = split_outside_quotes(&self.0[i].value, b',').collect();
        if parts.len() <= 1 {
            return Some(self.0.remove(i).value.into_string());
        }
        let first = parts.remove(0).trim().to_string();
        let rest = parts
            .iter()
            .map(|p| p.trim())
            .collect::<Vec<_>>()
            .join(", ");
        self.0[i].value = rest.into();
        Some(first)
    }

    /// Iterates over the lines.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}

// ---------------------------------------------------------------------------
// Typed header views
// ---------------------------------------------------------------------------

/// A Via header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS`, upper-cased.
    pub transport: String,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`, ...).
    pub params: Vec<Param>,
}

impl Via {
    /// Parses one Via value (`SIP/2.0/UDP host:port;branch=...`).
    pub fn parse(s: &str) -> Result<Via, String> {
        let s = s.trim();
        let (proto, rest) = s
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or_else(|| format!("bad Via `{}`", truncate(s, 64)))?;
        let mut p = proto.split('/').map(str::trim);
        let (name, version, transport) = (p.next(), p.next(), p.next());
        if !name.is_some_and(|n| n.eq_ignore_ascii_case("SIP"))
            || version != Some("2.0")
            || transport.is_none_or(str::is_empty)
        {
            return Err(format!("bad Via protocol `{proto}`"));
        }
        let (sent_by, params) = split_params(rest.trim());
        let (host, port) = split_host_port(sent_by)?;
        Ok(Via {
            transport: transport.unwrap_or_default().to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// Sets or replaces a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)
    }
}

/// A name-addr or addr-spec with parameters: From, To, Contact, Route,
/// Record-Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, ...).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// A bare `<uri>`.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses `"Name" <sip:...>;tag=x`, `Name <sip:...>` or `sip:...;tag=x`.
    pub fn parse(s: &str) -> Result<NameAddr, String> {
        let parts = name_addr_split(s)?;
        let display = parts.display.map(|d| match d.strip_prefix('"') {
            // name_addr_split checked the closing quote.
            Some(q) => unescape_quoted(q.strip_suffix('"').unwrap_or(q)),
            None => d.to_string(),
        });
        let params = match parts.params {
            Some(rest) => split_outside_quotes(rest, b';')
                .filter_map(parse_param)
                .collect(),
            None => Vec::new(),
        };
        Ok(NameAddr {
            display,
            uri: parts.uri.into_owned(),
            params,
        })
    }

    /// Whether `s` is a value [`NameAddr::parse`] accepts, found without
    /// building it (no allocation unless it is not): what a request's
    /// From and To must be before the message is taken.
    pub fn is_well_formed(s: &str) -> bool {
        name_addr_split(s).is_ok()
    }

    /// A header parameter.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Sets or replaces a header parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }
}

/// A name-addr or addr-spec value split in place ([`name_addr_split`]).
struct NameAddrParts<'a> {
    /// The display name as written (quotes included), `None` when empty.
    display: Option<&'a str>,
    uri: UriParts<'a>,
    /// What follows the `;` that starts the header parameters, `None`
    /// when there are none.
    params: Option<&'a str>,
}

/// Splits a name-addr or addr-spec value in place. Every check
/// [`NameAddr::parse`] makes is made here.
fn name_addr_split(s: &str) -> Result<NameAddrParts<'_>, String> {
    let s = s.trim();
    let (display, uri, rest) = if let Some(lt) = find_unquoted(s, b'<') {
        let gt = s[lt..]
            .find('>')
            .map(|i| i + lt)
            .ok_or_else(|| format!("unterminated `<` in `{}`", truncate(s, 64)))?;
        let d = s[..lt].trim();
        let display = if d.is_empty() {
            None
        } else {
            if let Some(q) = d.strip_prefix('"') {
                if q.strip_suffix('"').is_none() {
                    return Err(format!(
                        "unterminated display name in `{}`",
                        truncate(s, 64)
                    ));
                }
            }
            Some(d)
        };
        (display, UriParts::split(&s[lt + 1..gt])?, &s[gt + 1..])
    } else {
        // addr-spec: parameters after the URI belong to the header.
        match s.find(';') {
            Some(i) => (None, UriParts::split(&s[..i])?, &s[i..]),
            None => (None, UriParts::split(s)?, ""),
        }
    };
    let rest = rest.trim();
    let params = if rest.is_empty() {
        None
    } else {
        Some(
            rest.strip_prefix(';')
                .ok_or_else(|| format!("junk after URI in `{}`", truncate(s, 64)))?,
        )
    };
    Ok(NameAddrParts {
        display,
        uri,
        params,
    })
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_char('"')?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_char('\\')?;
                }
                f.write_char(c)?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// A header parameter of a name-addr or addr-spec value (`tag` of a From
/// or To), found without parsing the URI or allocating: the parameters
/// after `>` when the URI is bracketed, else after the first `;`. Returns
/// `None` when the value is not a name-addr at all (an unterminated `<`).
pub fn name_addr_param<'a>(value: &'a str, name: &str) -> Option<Option<&'a str>> {
    let s = value.trim();
    let rest = match find_unquoted(s, b'<') {
        Some(lt) => {
            let gt = s[lt..].find('>')? + lt;
            &s[gt + 1..]
        }
        None => match s.find(';') {
            Some(i) => &s[i..],
            None => return None,
        },
    };
    let rest = rest.trim_start().strip_prefix(';')?;
    split_outside_quotes(rest, b';')
        .filter_map(param_parts)
        .find_map(|(k, v)| k.eq_ignore_ascii_case(name).then_some(v))
}

/// The sent-by and the `branch` of a Via value, read in place (every
/// message is matched by these; a request's whole Via has been checked by
/// [`Message::validate_request_via`] already). `None` without a sent-by.
pub fn via_sent_by_and_branch(via: &str) -> Option<(&str, Option<&str>)> {
    let (_protocol, rest) = via.trim().split_once(|c: char| c.is_ascii_whitespace())?;
    let mut parts = split_outside_quotes(rest, b';');
    let sent_by = parts.next()?.trim();
    if sent_by.is_empty() {
        return None;
    }
    let branch = parts
        .filter_map(param_parts)
        .find_map(|(k, v)| k.eq_ignore_ascii_case("branch").then_some(v))
        .flatten();
    Some((sent_by, branch))
}

/// The first `needle` outside double quotes.
fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    debug_assert!(needle.is_ascii());
    let mut quotes = Quotes::default();
    s.bytes().position(|c| quotes.outside(c) && c == needle)
}

/// Where a scan of a header value stands with respect to quoted strings
/// (RFC 3261 25.1: `"`...`"`, with `\` escaping one character inside).
#[derive(Default)]
struct Quotes {
    quoted: bool,
    escaped: bool,
}

impl Quotes {
    /// Takes the next byte: whether it stands outside any quoted string
    /// (the quote marks and escapes themselves do not). An escaped
    /// multi-byte character leaves its continuation bytes to the quoted
    /// state, where no byte is special.
    fn outside(&mut self, c: u8) -> bool {
        if self.escaped {
            self.escaped = false;
            return false;
        }
        match c {
            b'\\' if self.quoted => {
                self.escaped = true;
                false
            }
            b'"' => {
                self.quoted = !self.quoted;
                false
            }
            _ => !self.quoted,
        }
    }
}

fn unescape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A CSeq value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses `314159 INVITE`.
    pub fn parse(s: &str) -> Result<CSeq, String> {
        let mut it = s.split_ascii_whitespace();
        let seq = it
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| format!("bad CSeq `{}`", truncate(s, 64)))?;
        let method = it
            .next()
            .and_then(Method::parse)
            .ok_or_else(|| format!("bad CSeq method `{}`", truncate(s, 64)))?;
        if it.next().is_some() {
            return Err(format!("junk in CSeq `{}`", truncate(s, 64)));
        }
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`
    Request {
        /// The method.
        method: Method,
        /// The Request-URI.
        uri: Uri,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// Status code, 100-699.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// A SIP request or response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub start: StartLine,
    /// Header lines in order.
    pub headers: Headers,
    /// The body (exactly Content-Length bytes).
    pub body: Vec<u8>,
}

/// Why a message could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// What was wrong, for the log line and a 400's reason.
    pub reason: String,
    /// The request as far as it was readable (start line and headers), when
    /// it is a request whose headers were readable: enough to answer 400.
    pub partial: Option<Box<Message>>,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> ParseError {
        ParseError {
            reason: reason.into(),
            partial: None,
        }
    }
}

impl Message {
    /// A new request with no headers.
    pub fn request(method: Method, uri: Uri) -> Message {
        Message {
            start: StartLine::Request { method, uri },
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// A new response with no headers.
    pub fn response(code: u16, reason: &str) -> Message {
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// A response to `req` per RFC 3261 8.2.6: Via lines, From, To,
    /// Call-ID and CSeq copied; a To tag added if `to_tag` is given and the
    /// To has none yet. 100 Trying also copies Timestamp.
    pub fn response_to(
        req: &Message,
        code: u16,
        reason: Option<&str>,
        to_tag: Option<&str>,
    ) -> Message {
        let mut r = Message::response(code, reason.unwrap_or(reason_phrase(code)));
        for h in req.headers.iter() {
            if h.name == "Via" {
                r.headers.push("Via", h.value.clone());
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.headers.get(name) {
                r.headers.push(name, v.to_string());
            }
        }
        if code == 100 {
            if let Some(v) = req.headers.get("Timestamp") {
                r.headers.push("Timestamp", v.to_string());
            }
        }
        if let (Some(tag), Some(to)) = (to_tag, req.headers.get("To")) {
            if code > 100 {
                if let Ok(mut na) = NameAddr::parse(to) {
                    if na.tag().is_none() {
                        na.set_param("tag", Some(tag));
                        r.headers.set("To", na.to_string());
                    }
                }
            }
        }
        r
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI.
    pub fn uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The top Via.
    pub fn top_via(&self) -> Option<Via> {
        self.headers
            .first_value("Via")
            .and_then(|v| Via::parse(v).ok())
    }

    /// The CSeq.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.get("CSeq").and_then(|v| CSeq::parse(v).ok())
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.get("Call-ID")
    }

    /// The From tag, read without parsing the header into a [`NameAddr`]
    /// (the per-message paths ask for little else of From and To).
    pub fn from_tag(&self) -> Option<&str> {
        self.tag_of("From")
    }

    /// The To tag, read as [`Self::from_tag`] reads the From's.
    pub fn to_tag(&self) -> Option<&str> {
        self.tag_of("To")
    }

    fn tag_of(&self, header: &str) -> Option<&str> {
        name_addr_param(self.headers.get(header)?, "tag")
            .flatten()
            .filter(|t| !t.is_empty())
    }

    /// The From header.
    pub fn from(&self) -> Option<NameAddr> {
        self.headers
            .get("From")
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The To header.
    pub fn to(&self) -> Option<NameAddr> {
        self.headers.get("To").and_then(|v| NameAddr::parse(v).ok())
    }

    /// All Contact values that parse (`*` is skipped; see [`Self::contact_star`]).
    pub fn contacts(&self) -> Vec<NameAddr> {
        self.headers
            .get_all("Contact")
            .into_iter()
            .filter(|v| v.trim() != "*")
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }

    /// Whether Contact is `*` (unregister all).
    pub fn contact_star(&self) -> bool {
        self.headers
            .get_all("Contact")
            .iter()
            .any(|v| v.trim() == "*")
    }

    /// The Expires header as seconds.
    pub fn expires(&self) -> Option<u32> {
        self.headers
            .get("Expires")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Checks the headers every request needs (RFC 3261 8.1.1): To, From,
    /// CSeq (whose method matches), Call-ID, Via; Max-Forwards is optional
    /// here (its absence is tolerated, as most stacks do). The error is the
    /// reason phrase of the 400 to send.
    pub fn validate_request(&self) -> Result<(), String> {
        self.validate_request_via().map(drop)
    }

    /// [`Self::validate_request`], returning the parsed top Via (which the
    /// transport layer stamps with `received`/`rport` next) so that it is
    /// parsed once.
    pub fn validate_request_via(&self) -> Result<Via, String> {
        let method = self.method().ok_or("not a request")?;
        let top = self.headers.first_value("Via").ok_or("Missing Via")?;
        let via = Via::parse(top).map_err(|e| format!("Bad Via: {e}"))?;
        if !self
            .headers
            .get("From")
            .is_some_and(NameAddr::is_well_formed)
        {
            return Err("Missing or bad From".into());
        }
        if !self.headers.get("To").is_some_and(NameAddr::is_well_formed) {
            return Err("Missing or bad To".into());
        }
        if self.call_id().is_none_or(|c| c.trim().is_empty()) {
            return Err("Missing Call-ID".into());
        }
        let cseq = self.cseq().ok_or("Missing or bad CSeq")?;
        if &cseq.method != method && !(method == &Method::Ack && cseq.method == Method::Invite) {
            return Err("CSeq method does not match".into());
        }
        if let Some(mf) = self.headers.get("Max-Forwards") {
            mf.trim()
                .parse::<u8>()
                .map_err(|_| "Bad Max-Forwards".to_string())?;
        }
        Ok(via)
    }

    /// Writes the message, with Content-Length set to the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        // One allocation: the start line's URI and reason are short, the
        // rest is counted.
        let lines: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum();
        let mut out = String::with_capacity(lines + 320 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in self.headers.iter() {
            if h.name == "Content-Length" {
                continue;
            }
            out.push_str(&h.name);
            out.push_str(": ");
            out.push_str(&h.value);
            out.push_str("\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// The body as text, if it is UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// The default reason phrase of a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------
// Parsing and framing
// ---------------------------------------------------------------------------

/// What a transport read produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A message.
    Message(Message),
    /// An RFC 5626 keep-alive: a double CRLF ping (answer with one CRLF
    /// pong on streams) or a single CRLF pong.
    KeepAlive {
        /// Whether it was a ping (`\r\n\r\n`), which wants a pong.
        ping: bool,
    },
}

/// Reads one UDP datagram. Keep-alives are recognized; a message's body
/// is cut to its Content-Length (a missing one means "the rest").
pub fn parse_datagram(data: &[u8]) -> Result<Frame, ParseError> {
    if data
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
    {
        return Ok(Frame::KeepAlive {
            ping: data.windows(4).any(|w| w == b"\r\n\r\n"),
        });
    }
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let data = &data[start..];
    let (head_len, body_start) =
        find_header_end(data).ok_or_else(|| ParseError::new("no end of headers"))?;
    if head_len > MAX_HEADER_BYTES {
        return Err(ParseError::new("headers too large"));
    }
    let mut msg = parse_head(&data[..head_len])?;
    let available = &data[body_start..];
    let body = match content_length(&msg.headers) {
        Ok(Some(n)) if n <= available.len() => &available[..n],
        Ok(Some(n)) => {
            return Err(with_partial(
                format!(
                    "Content-Length {n} exceeds the {} bytes received",
                    available.len()
                ),
                msg,
            ))
        }
        Ok(None) => available,
        Err(e) => return Err(with_partial(e, msg)),
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(with_partial("body too large".to_string(), msg));
    }
    msg.body = body.to_vec();
    Ok(Frame::Message(msg))
}

fn with_partial(reason: String, msg: Message) -> ParseError {
    ParseError {
        reason,
        partial: msg.is_request().then(|| Box::new(msg)),
    }
}

fn content_length(h: &Headers) -> Result<Option<usize>, String> {
    match h.get("Content-Length") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("bad Content-Length `{}`", truncate(v, 32))),
    }
}

/// Where the header part ends: (length of the head, start of the body).
/// Accepts CRLFCRLF and bare LFLF.
fn find_header_end(data: &[u8]) -> Option<(usize, usize)> {
    let limit = data.len().min(MAX_HEADER_BYTES + 4);
    let mut i = 0;
    while i < limit {
        if data[i] == b'\n' {
            // "\n\n" or "\n\r\n"
            if data.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if data.get(i + 1) == Some(&b'\r') && data.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    if data.len() > MAX_HEADER_BYTES + 4 {
        // Report as "too large" rather than "no end".
        return Some((MAX_HEADER_BYTES + 1, MAX_HEADER_BYTES + 1));
    }
    None
}

/// Parses the start line and headers (no body). A header line borrows
/// from `head` until its value is stored; only a folded line (a value
/// continued on the next line) is joined into a new string first.
fn parse_head(head: &[u8]) -> Result<Message, ParseError> {
    let text = std::str::from_utf8(head).map_err(|_| ParseError::new("headers are not UTF-8"))?;
    let mut lines = text
        .split('\n')
        .map(|raw| raw.strip_suffix('\r').unwrap_or(raw))
        .filter(|l| !l.is_empty())
        .peekable();
    let first = lines
        .next()
        .ok_or_else(|| ParseError::new("empty message"))?;
    if first.starts_with([' ', '\t']) {
        return Err(ParseError::new("continuation line without a header"));
    }
    let start = parse_start_line(first)?;
    let mut headers = Headers(Vec::with_capacity(
        text.bytes()
            .filter(|&b| b == b'\n')
            .count()
            .min(MAX_HEADERS),
    ));
    while let Some(line) = lines.next() {
        if line.starts_with([' ', '\t']) {
            return Err(ParseError::new("continuation line without a header"));
        }
        if headers.0.len() >= MAX_HEADERS {
            return Err(ParseError::new("too many headers"));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            ParseError::new(format!("header line without `:`: `{}`", truncate(line, 48)))
        })?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::new(format!(
                "bad header name `{}`",
                truncate(name, 48)
            )));
        }
        if lines.peek().is_some_and(|l| l.starts_with([' ', '\t'])) {
            // Folded: "value" + " " + each continuation, trimmed.
            let mut joined = value.to_string();
            while let Some(cont) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
                joined.push(' ');
                joined.push_str(cont.trim());
            }
            headers.push(name, joined.trim());
        } else {
            headers.push(name, value.trim());
        }
    }
    Ok(Message {
        start,
        headers,
        body: Vec::new(),
    })
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if version != "2.0" {
            return Err(ParseError::new(format!(
                "unsupported version SIP/{}",
                truncate(version, 16)
            )));
        }
        let code = parts
            .next()
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| ParseError::new("bad status code"))?;
        let reason = parts.next().unwrap_or("").trim().to_string();
        return Ok(StartLine::Response { code, reason });
    }
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (m, u, v) = (parts.next(), parts.next(), parts.next());
    if parts.next().is_some() {
        return Err(ParseError::new("junk in request line"));
    }
    let method = m
        .and_then(Method::parse)
        .ok_or_else(|| ParseError::new("bad method"))?;
    let uri = u
        .ok_or_else(|| ParseError::new("missing Request-URI"))
        .and_then(|u| Uri::parse(u).map_err(ParseError::new))?;
    match v {
        Some("SIP/2.0") => Ok(StartLine::Request { method, uri }),
        Some(v) => Err(ParseError::new(format!(
            "unsupported version {}",
            truncate(v, 16)
        ))),
        None => Err(ParseError::new("missing SIP version")),
    }
}

/// Frames messages out of a byte stream (TCP, TLS): Content-Length is
/// required; CRLF keep-alives between messages are reported.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. An
    /// error means the stream is out of sync and should be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        // Keep-alives: CRLFCRLF ping, CRLF pong.
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.drain(..4);
            return Ok(Some(Frame::KeepAlive { ping: true }));
        }
        if self.buf.starts_with(b"\r\n") {
            if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) {
                // Could be the start of a ping; a lone pong is only known
                // once something else follows. Treat a complete "\r\n"
                // followed by a non-CR byte as a pong.
                return Ok(None);
            }
            self.buf.drain(..2);
            return Ok(Some(Frame::KeepAlive { ping: false }));
        }
        let Some((head_len, body_start)) = find_header_end(&self.buf) else {
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(ParseError::new("headers too large"));
            }
            return Ok(None);
        };
        if head_len > MAX_HEADER_BYTES {
            return Err(ParseError::new("headers too large"));
        }
        let mut msg = parse_head(&self.buf[..head_len])?;
        let len = match content_length(&msg.headers) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(with_partial(
                    "Content-Length is required on streams".into(),
                    msg,
                ))
            }
            Err(e) => return Err(with_partial(e, msg)),
        };
        if len > MAX_BODY_BYTES {
            return Err(with_partial("body too large".into(), msg));
        }
        if self.buf.len() < body_start + len {
            return Ok(None);
        }
        msg.body = self.buf[body_start..body_start + len].to_vec();
        self.buf.drain(..body_start + len);
        Ok(Some(Frame::Message(msg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_ip_text_match_display() {
        for h in [
            "example.com",
            "192.0.2.255",
            "[2001:db8::1]",
            "[::ffff:192.0.2.1]",
        ] {
            let host = Host::parse(h).unwrap();
            assert_eq!(host.text(), host.to_string(), "{h}");
            assert_eq!(host.text(), h);
        }
        for ip in [
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn separators_inside_quotes_escapes_and_angle_brackets_do_not_split() {
        let v = r#"a;"b;\";<c";d>;<sip:x;lr>;e"#;
        let parts: Vec<&str> = split_outside_quotes(v, b';').collect();
        assert_eq!(parts, ["a", r#""b;\";<c""#, "d>", "<sip:x;lr>", "e"]);
        // An escaped quote does not close the string: the `<` after it is
        // still quoted; the first bare one is at the name-addr.
        let na = r#""A \"<B>\" C" <sip:a@b>"#;
        assert_eq!(find_unquoted(na, b'<'), na.find(" <sip").map(|i| i + 1));
        assert_eq!(find_unquoted(r#""<only quoted>""#, b'<'), None);
        assert_eq!(split_outside_quotes("", b',').collect::<Vec<_>>(), [""]);
        // Multi-byte characters, quoted, escaped and bare, split at the
        // same places as their ASCII cousins.
        let v = "\"Zoë \\é, ü\" <sip:zoë@b>;tag=ß, <sip:c@d>";
        let parts: Vec<&str> = split_outside_quotes(v, b',').collect();
        assert_eq!(parts, ["\"Zoë \\é, ü\" <sip:zoë@b>;tag=ß", " <sip:c@d>"]);
        assert_eq!(find_unquoted(v, b'<'), v.find(" <sip:zo").map(|i| i + 1));
    }

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn msg(s: &str) -> Message {
        match parse_datagram(s.as_bytes()).expect("parses") {
            Frame::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn parses_rfc3261_invite() {
        let m = msg(INVITE);
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.uri().unwrap().user.as_deref(), Some("bob"));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(
            m.cseq().unwrap(),
            CSeq {
                seq: 314159,
                method: Method::Invite
            }
        );
        assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(m.to().unwrap().display.as_deref(), Some("Bob"));
        assert_eq!(m.body, b"v=0\n");
        m.validate_request().unwrap();
    }

    #[test]
    fn round_trips() {
        let m = msg(INVITE);
        let again = msg(std::str::from_utf8(&m.to_bytes()).unwrap());
        assert_eq!(m, again);
    }

    #[test]
    fn compact_names_folding_and_bare_lf() {
        let s = "OPTIONS sip:x@127.0.0.1 SIP/2.0\n\
v: SIP/2.0/UDP 127.0.0.1:5100;branch=z9hG4bKa\n\
f: <sip:a@127.0.0.1>;tag=1\n\
t: <sip:x@127.0.0.1>\n\
i: abc\n\
Subject: I know you're there,\n   pick up the phone\n\tand talk to me!\n\
CSeq: 1 OPTIONS\n\
l: 0\n\n";
        let m = msg(s);
        assert_eq!(m.call_id(), Some("abc"));
        assert_eq!(m.top_via().unwrap().port, Some(5100));
        assert_eq!(
            m.headers.get("subject"),
            Some("I know you're there, pick up the phone and talk to me!")
        );
        m.validate_request().unwrap();
    }

    #[test]
    fn folded_value_starting_on_the_next_line() {
        let m = msg(
            "OPTIONS sip:x@h SIP/2.0\r\nSubject:\r\n  all of it\r\n\there\r\nCall-ID: a\r\n\r\n",
        );
        assert_eq!(m.headers.get("Subject"), Some("all of it here"));
        assert_eq!(m.call_id(), Some("a"));
    }

    #[test]
    fn header_name_table_lookup() {
        // Every key is lower case (the lookup compares folded bytes with
        // the keys as written) and every canonical spelling names itself.
        for (k, v) in CANONICAL {
            assert_eq!(k.to_ascii_lowercase(), *k);
            assert_eq!(known_name(&v.to_ascii_lowercase()), Some(*v), "{v}");
            assert_eq!(known_name(k), Some(*v), "{k}");
            assert_eq!(known_name(v), Some(*v), "{v}");
            assert_eq!(known_name(&v.to_ascii_uppercase()), Some(*v), "{v}");
        }
        assert_eq!(known_name("V"), Some("Via"));
        assert_eq!(known_name("cAlL-iD"), Some("Call-ID"));
        assert_eq!(known_name("X-Custom"), None);
        assert_eq!(known_name(""), None);
        assert_eq!(known_name("vi"), None);
    }

    #[test]
    fn tags_read_in_place_agree_with_the_parser() {
        for (v, tag) in [
            ("<sip:a@h>;tag=1", Some("1")),
            ("\"A;tag=x <b>\" <sip:a@h;tag=uri>;tag=2", Some("2")),
            ("<sip:a@h;tag=uri>", None),
            ("sip:a@h;TAG=3;x", Some("3")),
            ("sip:a@h", None),
            ("Bob <sip:b@h> ; lr ; tag = 4 ", Some("4")),
            ("<sip:a@h>;tag=", None),
            ("<sip:a@h;tag=x", None),
        ] {
            let m = msg(&format!("SIP/2.0 200 OK\r\nFrom: {v}\r\nTo: {v}\r\n\r\n"));
            assert_eq!(m.from_tag(), tag, "{v}");
            assert_eq!(m.to_tag(), tag, "{v}");
            let parsed = m.to().and_then(|t| t.tag().map(str::to_string));
            assert_eq!(
                parsed.as_deref().filter(|t| !t.is_empty()),
                tag,
                "parser on {v}"
            );
        }
    }

    #[test]
    fn ipv6_hosts() {
        let u = Uri::parse("sip:[2001:db8::10]:5070;transport=tcp").unwrap();
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.to_string(), "sip:[2001:db8::10]:5070;transport=tcp");
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3;received=[2001:db8::9:255]")
                .unwrap();
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.param("received"), Some(Some("[2001:db8::9:255]")));
        assert!(Uri::parse("sip:[2001:db8::10:5070").is_err());
    }

    #[test]
    fn extension_methods_parse() {
        let m = msg("NEWMETHOD sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: 1\r\nCSeq: 8 NEWMETHOD\r\n\r\n");
        assert_eq!(m.method(), Some(&Method::Other("NEWMETHOD".into())));
        m.validate_request().unwrap();
    }

    #[test]
    fn multi_value_headers() {
        let m = msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP c;branch=z9hG4bK3\r\nContact: \"A, B\" <sip:a@h>;expires=60, <sip:b@h;lr>;q=0.5\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\n\r\n");
        assert_eq!(m.headers.get_all("via").len(), 3);
        let c = m.contacts();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].display.as_deref(), Some("A, B"));
        assert_eq!(c[0].param("expires"), Some(Some("60")));
        assert_eq!(c[1].uri.param("lr"), Some(None));
        let mut h = m.headers.clone();
        assert_eq!(
            h.remove_first_value("Via").as_deref(),
            Some("SIP/2.0/UDP a;branch=z9hG4bK1")
        );
        assert_eq!(h.get_all("Via").len(), 2);
    }

    #[test]
    fn escaped_uris_and_tel() {
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user.as_deref(), Some("sips:user@example.com"));
        assert_eq!(u.host, Host::Name("example.net".into()));
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user.as_deref(), Some("+1-201-555-0123"));
    }

    #[test]
    fn content_length_rules() {
        // Shorter body than the datagram: cut.
        let m = msg("MESSAGE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: 1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhello");
        assert_eq!(m.body, b"he");
        // Longer than received: error with a partial request (answer 400).
        let e = parse_datagram(b"MESSAGE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: 1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 9999\r\n\r\nhello").unwrap_err();
        assert!(e.partial.is_some(), "{e}");
        // Negative / garbage.
        assert!(parse_datagram(b"MESSAGE sip:x@h SIP/2.0\r\nContent-Length: -1\r\n\r\n").is_err());
    }

    #[test]
    fn keepalives_and_stream_framing() {
        assert_eq!(
            parse_datagram(b"\r\n\r\n").unwrap(),
            Frame::KeepAlive { ping: true }
        );
        let one = msg(INVITE).to_bytes();
        let mut f = StreamFramer::new();
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&one);
        // Feed byte by byte: frames come out exactly at their ends.
        let mut frames = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            while let Some(fr) = f.next_frame().unwrap() {
                frames.push(fr);
            }
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], Frame::KeepAlive { ping: true });
        assert!(matches!(&frames[2], Frame::Message(m) if m.body == b"v=0\n"));
        assert_eq!(f.buffered(), 0);
        // Missing Content-Length on a stream is fatal.
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:x@h SIP/2.0\r\nCall-ID: 1\r\n\r\n");
        assert!(f.next_frame().is_err());
    }

    #[test]
    fn response_to_copies_and_tags() {
        let req = msg(INVITE);
        let r = Message::response_to(&req, 180, None, Some("xyz"));
        assert_eq!(r.code(), Some(180));
        assert_eq!(r.to().unwrap().tag(), Some("xyz"));
        assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.cseq().unwrap().seq, 314159);
        assert_eq!(r.headers.get_all("Via").len(), 1);
        let t = Message::response_to(&req, 100, None, Some("xyz"));
        assert_eq!(t.to().unwrap().tag(), None);
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"INVITE\r\n\r\n",
            b"INVITE sip:x SIP/3.0\r\n\r\n",
            b"SIP/2.0 99 Low\r\n\r\n",
            b"SIP/2.0 abc OK\r\n\r\n",
            b"INV@TE sip:x@h SIP/2.0\r\n\r\n",
            b"INVITE http://x SIP/2.0\r\n\r\n",
            b"INVITE sip:x@h SIP/2.0\r\nNoColon\r\n\r\n",
            b"INVITE sip:x@h SIP/2.0\r\n continuation first\r\n\r\n",
            b"INVITE sip:x@h SIP/2.0\r\n\xff\xfe: x\r\n\r\n",
            b"INVITE sip:x@[::1 SIP/2.0\r\n\r\n",
            b"INVITE sip:x@h:99999 SIP/2.0\r\n\r\n",
        ];
        for b in bad {
            assert!(
                parse_datagram(b).is_err()
                    || matches!(parse_datagram(b), Ok(Frame::KeepAlive { .. })),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        // Every prefix of a valid message: no panic.
        let full = msg(INVITE).to_bytes();
        for n in 0..full.len() {
            let _ = parse_datagram(&full[..n]);
            let mut f = StreamFramer::new();
            f.push(&full[..n]);
            let _ = f.next_frame();
        }
        // Huge headers are refused.
        let mut huge = b"OPTIONS sip:x@h SIP/2.0\r\nX-Big: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES + 10));
        huge.extend_from_slice(b"\r\n\r\n");
        assert!(parse_datagram(&huge).is_err());
        // A message missing mandatory headers parses but fails validation.
        let m = msg("OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
        assert!(m.validate_request().is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("sip:alice@atlanta.com;tag=88sja8x").unwrap();
        assert_eq!(n.tag(), Some("88sja8x"));
        assert!(n.uri.params.is_empty());
        let n = NameAddr::parse(
            "\"J Rosenberg \\\"Jdrosen\\\"\" <sip:jdrosen@example.com;transport=tcp>;tag=98asjd8",
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \"Jdrosen\""));
        assert_eq!(n.uri.transport().as_deref(), Some("tcp"));
        assert_eq!(n.tag(), Some("98asjd8"));
        let again = NameAddr::parse(&n.to_string()).unwrap();
        assert_eq!(again, n);
        let n = NameAddr::parse("Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8").unwrap();
        assert_eq!(n.display.as_deref(), Some("Anonymous"));
    }

    /// The in-place checks behind request validation accept exactly what
    /// the parsers accept.
    #[test]
    fn well_formed_checks_agree_with_the_parsers() {
        let values = [
            "sip:alice@atlanta.com;tag=88sja8x",
            "\"J Rosenberg \\\"Jdrosen\\\"\" <sip:jdrosen@example.com;transport=tcp>;tag=98asjd8",
            "Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8",
            "<sip:1001@127.0.0.1:5060>",
            "<sip:1001@[2001:db8::10]:5070;transport=tcp>;expires=60",
            "<sip:1001@[2001:db8::10>",
            "<sip:1001@[2001:db8::zz]>",
            "<sip:1001@[::1]x>",
            "<sip:1001@host:0>",
            "<sip:1001@host:99999>",
            "<sip:1001@ho st>",
            "<sip:@host>",
            "<sip:user:pw@host>",
            "<sip:%61lice@host?subject=x>",
            "<tel:+1-201-555-0123;phone-context=x>",
            "<tel:;x>",
            "tel:+15550123",
            "<mailto:a@b>",
            "\"unterminated <sip:a@b>",
            "\" <sip:a@b>",
            "<sip:a@b",
            "<sip:a@b> junk",
            "<sip:a@b> ;tag=1",
            "sip:a@b;tag=1;x=\"q;uoted\"",
            "sip:a@;tag=1",
            "",
            "   ",
            "<>",
            "<sip:>",
            "sip:host_name.example-1",
            "<sip:a@1.2.3.4:5060;lr;maddr=1.2.3.5>",
        ];
        for v in values {
            assert_eq!(
                NameAddr::is_well_formed(v),
                NameAddr::parse(v).is_ok(),
                "name-addr `{v}`"
            );
            let uri = v.trim().trim_start_matches('<').trim_end_matches('>');
            assert_eq!(
                Uri::is_well_formed(uri),
                Uri::parse(uri).is_ok(),
                "URI `{uri}`"
            );
        }
        // Parsing still builds the same values as before the split.
        let n = NameAddr::parse(
            "\"A \\\"B\\\"\" <sip:%61lice:p%77@[::1]:5070;transport=TCP?h=1>;tag=x;lr",
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some("A \"B\""));
        assert_eq!(n.uri.user.as_deref(), Some("alice"));
        assert_eq!(n.uri.password.as_deref(), Some("pw"));
        assert_eq!(n.uri.host, Host::V6("::1".parse().unwrap()));
        assert_eq!(n.uri.port, Some(5070));
        assert_eq!(n.uri.transport().as_deref(), Some("tcp"));
        assert_eq!(n.uri.headers.as_deref(), Some("h=1"));
        assert_eq!(n.tag(), Some("x"));
        assert_eq!(n.param("lr"), Some(None));
        let t = Uri::parse("tel:+1%2D555;phone-context=example.com").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user.as_deref(), Some("+1-555"));
        assert_eq!(t.param("phone-context"), Some(Some("example.com")));
    }
}
