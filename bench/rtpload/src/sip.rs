//! A small, tolerant SIP parser and the few message builders rtpload needs.
//!
//! Nothing here panics on malformed input: parsing returns `None` and the
//! caller counts the datagram as malformed. Header names are stored in lower
//! case with compact forms expanded; values keep their original text.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The first line of a SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// A parsed SIP message: start line, headers in order (continuation lines
/// unfolded, names lower-case and expanded), and the body cut to
/// Content-Length.
#[derive(Debug, Clone)]
pub struct Msg {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn expand_compact(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let full = match lower.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        "o" => "event",
        "r" => "refer-to",
        "u" => "allow-events",
        "x" => "session-expires",
        _ => return lower,
    };
    full.to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_start(line: &str) -> Option<StartLine> {
    if line.len() >= 7 && line[..7].eq_ignore_ascii_case("SIP/2.0") {
        let rest = line[7..].trim_start();
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.trim().parse().ok()?;
        if !(100..=699).contains(&code) {
            return None;
        }
        return Some(StartLine::Response {
            code,
            reason: reason.trim().to_string(),
        });
    }
    let mut it = line.split_whitespace();
    let method = it.next()?;
    let uri = it.next()?;
    let version = it.next()?;
    if it.next().is_some()
        || !version.eq_ignore_ascii_case("SIP/2.0")
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return None;
    }
    Some(StartLine::Request {
        method: method.to_ascii_uppercase(),
        uri: uri.to_string(),
    })
}

/// Parses one datagram. `None` means malformed (the caller counts it).
pub fn parse(buf: &[u8]) -> Option<Msg> {
    let lead = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let buf = &buf[lead..];
    if buf.is_empty() {
        return None;
    }
    let (head, rest): (&[u8], &[u8]) = match find(buf, b"\r\n\r\n") {
        Some(p) => (&buf[..p], &buf[p + 4..]),
        None => match find(buf, b"\n\n") {
            Some(p) => (&buf[..p], &buf[p + 2..]),
            None => (buf, &[]),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = parse_start(lines.next()?.trim())?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Continuation of the previous header line (folding).
            let (_, value) = headers.last_mut()?;
            let t = line.trim();
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(t);
            continue;
        }
        let colon = line.find(':')?;
        let name = line[..colon].trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            return None;
        }
        headers.push((expand_compact(name), line[colon + 1..].trim().to_string()));
    }
    let mut msg = Msg {
        start,
        headers,
        body: Vec::new(),
    };
    let mut body = rest;
    if let Some(cl) = msg.header("content-length") {
        let n: usize = cl.trim().parse().ok()?;
        if n > body.len() {
            return None;
        }
        body = &body[..n];
    }
    msg.body = body.to_vec();
    Some(msg)
}

impl Msg {
    /// The first value of a header (lower-case full name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order: repeated lines and comma-separated
    /// values within a line (commas inside `<...>` or quotes do not split).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("call-id")
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// CSeq number and method (method upper-cased by the caller if needed).
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("cseq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = it.next()?;
        Some((n, m))
    }
}

/// Splits a header value on commas that are outside `<...>` and quotes.
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_angle = false;
    let mut in_quote = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, ch) in v.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quote = false;
            }
            continue;
        }
        match ch {
            '"' => in_quote = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                let part = v[start..i].trim();
                if !part.is_empty() {
                    out.push(part);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let part = v[start..].trim();
    if !part.is_empty() {
        out.push(part);
    }
    out
}

/// Byte positions of `<` and `>` of a name-addr, skipping a quoted display name.
fn angle_span(v: &str) -> Option<(usize, usize)> {
    let mut in_quote = false;
    let mut escaped = false;
    let mut open = None;
    for (i, ch) in v.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quote = false;
            }
            continue;
        }
        match ch {
            '"' if open.is_none() => in_quote = true,
            '<' if open.is_none() => open = Some(i),
            '>' => {
                if let Some(o) = open {
                    return Some((o, i));
                }
            }
            _ => {}
        }
    }
    None
}

/// The URI of a name-addr (`"x" <sip:a@b;lr>;tag=1` gives `sip:a@b;lr`) or an
/// addr-spec (`sip:a@b;tag=1` gives `sip:a@b`).
pub fn uri_of(v: &str) -> &str {
    match angle_span(v) {
        Some((o, c)) => v[o + 1..c].trim(),
        None => v.split(';').next().unwrap_or("").trim(),
    }
}

/// A header parameter (after the `>` of a name-addr, or after the first `;`
/// otherwise), e.g. `tag`, `branch`, `received`. A flag parameter gives "".
pub fn header_param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    let params = match angle_span(v) {
        Some((_, c)) => &v[c + 1..],
        None => match v.find(';') {
            Some(p) => &v[p..],
            None => "",
        },
    };
    for p in params.split(';') {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(val.trim());
        }
    }
    None
}

pub fn tag_of(v: &str) -> Option<&str> {
    header_param(v, "tag").filter(|t| !t.is_empty())
}

/// `host:port`, `host`, `[v6]:port` or `[v6]`.
pub fn split_hostport(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Some((host, None));
        }
        let port = after.strip_prefix(':')?.parse().ok()?;
        return Some((host, Some(port)));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => {
            if h.is_empty() {
                return None;
            }
            Some((h, Some(p.parse().ok()?)))
        }
        None => Some((s, None)),
    }
}

/// An IP literal, or a name resolved through the system (IPv4 preferred).
pub fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

/// Where a response to a request with this top Via goes: `received` and
/// `rport` when present, otherwise the sent-by host and port (default 5060).
pub fn via_response_addr(via: &str) -> Option<SocketAddr> {
    let (proto_sent_by, params) = match via.find(';') {
        Some(p) => (&via[..p], &via[p + 1..]),
        None => (via, ""),
    };
    let sent_by = proto_sent_by.split_whitespace().last()?;
    let (mut host, port) = split_hostport(sent_by)?;
    let mut port = port.unwrap_or(5060);
    for p in params.split(';') {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if k.eq_ignore_ascii_case("received") {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                host = v;
            }
        } else if k.eq_ignore_ascii_case("rport") {
            if let Some(v) = v.and_then(|v| v.parse::<u16>().ok()) {
                port = v;
            }
        }
    }
    resolve(host, port)
}

/// The parts of a SIP URI that decide where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub lr: bool,
}

pub fn parse_uri(uri: &str) -> Option<Uri> {
    let (scheme, rest) = uri.trim().split_once(':')?;
    let default_port = if scheme.eq_ignore_ascii_case("sip") {
        5060
    } else if scheme.eq_ignore_ascii_case("sips") {
        5061
    } else {
        return None;
    };
    let rest = rest.split('?').next().unwrap_or("");
    let rest = match rest.find('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let mut parts = rest.split(';');
    let (host, port) = split_hostport(parts.next()?)?;
    let mut lr = false;
    let mut maddr = None;
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let k = k.trim();
        if k.eq_ignore_ascii_case("lr") {
            lr = true;
        } else if k.eq_ignore_ascii_case("maddr") && !v.trim().is_empty() {
            maddr = Some(v.trim());
        }
    }
    Some(Uri {
        host: maddr.unwrap_or(host).to_string(),
        port: port.unwrap_or(default_port),
        lr,
    })
}

/// Request-URI, Route headers and next hop of in-dialog requests (ACK for a
/// 2xx, BYE), from the 2xx's Record-Route values (in header order) and its
/// Contact URI (RFC 3261 12.1.2 and 12.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    pub ruri: String,
    pub routes: Vec<String>,
    pub host: String,
    pub port: u16,
}

pub fn route_for_2xx(record_route: &[&str], contact_uri: &str) -> Option<RouteTarget> {
    let mut routes: Vec<String> = record_route
        .iter()
        .rev()
        .map(|s| s.trim().to_string())
        .collect();
    let Some(first) = routes.first() else {
        let u = parse_uri(contact_uri)?;
        return Some(RouteTarget {
            ruri: contact_uri.to_string(),
            routes,
            host: u.host,
            port: u.port,
        });
    };
    let first_uri = uri_of(first).to_string();
    let hop = parse_uri(&first_uri)?;
    if hop.lr {
        Some(RouteTarget {
            ruri: contact_uri.to_string(),
            routes,
            host: hop.host,
            port: hop.port,
        })
    } else {
        // Strict router: its URI becomes the Request-URI, the remote target
        // goes last in the Route set.
        routes.remove(0);
        routes.push(format!("<{contact_uri}>"));
        Some(RouteTarget {
            ruri: first_uri,
            routes,
            host: hop.host,
            port: hop.port,
        })
    }
}

/// A response to `req`: every Via and Record-Route copied in order, From,
/// To (a `;tag=` added when `to_tag` is given and To has none), Call-ID and
/// CSeq, then an optional Contact and body.
pub fn build_response(
    req: &Msg,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    contact: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut s = String::with_capacity(512);
    s.push_str(&format!("SIP/2.0 {code} {reason}\r\n"));
    for v in req.header_values("via") {
        s.push_str("Via: ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    for v in req.header_values("record-route") {
        s.push_str("Record-Route: ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("From: ");
    s.push_str(req.header("from").unwrap_or(""));
    s.push_str("\r\n");
    let to = req.header("to").unwrap_or("");
    s.push_str("To: ");
    s.push_str(to);
    if let Some(tag) = to_tag {
        if tag_of(to).is_none() {
            s.push_str(";tag=");
            s.push_str(tag);
        }
    }
    s.push_str("\r\n");
    s.push_str("Call-ID: ");
    s.push_str(req.header("call-id").unwrap_or(""));
    s.push_str("\r\nCSeq: ");
    s.push_str(req.header("cseq").unwrap_or(""));
    s.push_str("\r\n");
    if let Some(c) = contact {
        s.push_str("Contact: ");
        s.push_str(c);
        s.push_str("\r\n");
    }
    let mut out;
    match body {
        Some((ctype, data)) => {
            s.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                data.len()
            ));
            out = s.into_bytes();
            out.extend_from_slice(data);
        }
        None => {
            s.push_str("Content-Length: 0\r\n\r\n");
            out = s.into_bytes();
        }
    }
    out
}

/// What rtpload needs from an SDP: the connection address and port of the
/// first audio stream and its payload types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub fmts: Vec<u16>,
}

fn parse_c_line(rest: &str) -> Option<IpAddr> {
    let mut it = rest.split_whitespace();
    if !it.next()?.eq_ignore_ascii_case("IN") {
        return None;
    }
    let _addrtype = it.next()?;
    let addr = it.next()?.split('/').next()?;
    addr.parse().ok()
}

pub fn parse_sdp(body: &[u8]) -> Option<Sdp> {
    let text = String::from_utf8_lossy(body);
    let mut session_c = None;
    let mut media_c = None;
    let mut seen_m = false;
    let mut in_audio = false;
    let mut audio: Option<(u16, Vec<u16>)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("m=") {
            seen_m = true;
            in_audio = false;
            if audio.is_some() {
                continue;
            }
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if parts
                .first()
                .is_some_and(|m| m.eq_ignore_ascii_case("audio"))
            {
                let port: u16 = parts.get(1)?.split('/').next()?.parse().ok()?;
                let fmts = parts
                    .iter()
                    .skip(3)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                audio = Some((port, fmts));
                in_audio = true;
            }
        } else if let Some(rest) = line.strip_prefix("c=") {
            if !seen_m {
                session_c = parse_c_line(rest);
            } else if in_audio {
                media_c = parse_c_line(rest);
            }
        }
    }
    let (port, fmts) = audio?;
    Some(Sdp {
        addr: media_c.or(session_c),
        port,
        fmts,
    })
}

/// The SDP rtpload offers and answers with: PCMU (0) and, when listed,
/// telephone-event (101), 20 ms packets, 127.0.0.1.
pub fn build_sdp(session_id: u64, port: u16, fmts: &[u16]) -> String {
    let mut s = format!(
        "v=0\r\no=- {session_id} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP"
    );
    for f in fmts {
        s.push_str(&format!(" {f}"));
    }
    s.push_str("\r\n");
    if fmts.contains(&0) {
        s.push_str("a=rtpmap:0 PCMU/8000\r\n");
    }
    if fmts.contains(&101) {
        s.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n");
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESP: &str = "SIP/2.0 200 OK\r\n\
v: SIP/2.0/UDP 127.0.0.1:5631;branch=z9hG4bKaaa;rport=5631;received=127.0.0.1, SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKbbb\r\n\
Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKccc\r\n\
Record-Route: <sip:127.0.0.1:5650;lr;ftag=a,b>,\r\n <sip:10.0.0.9:5651;lr>\r\n\
Record-Route: <sip:10.0.0.10;lr>\r\n\
f: \"Load, Gen\" <sip:rtpload@127.0.0.1>;tag=from1\r\n\
t: <sip:1001@127.0.0.1:5650>;tag=to1\r\n\
i: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
m: <sip:1001@127.0.0.1:5632;transport=udp>\r\n\
c: application/sdp\r\n\
l: 13\r\n\
\r\n\
v=0\r\ns=-\r\nc=trailing junk beyond content-length";

    #[test]
    fn parses_compact_folded_multi_value_response() {
        let m = parse(RESP.as_bytes()).expect("parses");
        assert_eq!(m.code(), Some(200));
        assert_eq!(m.call_id(), Some("call-1@127.0.0.1"));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        let vias = m.header_values("via");
        assert_eq!(vias.len(), 3);
        assert!(vias[0].contains("z9hG4bKaaa"));
        assert!(vias[1].contains("z9hG4bKbbb"));
        assert!(vias[2].contains("z9hG4bKccc"));
        let rr = m.header_values("record-route");
        assert_eq!(
            rr,
            vec![
                "<sip:127.0.0.1:5650;lr;ftag=a,b>",
                "<sip:10.0.0.9:5651;lr>",
                "<sip:10.0.0.10;lr>"
            ]
        );
        assert_eq!(tag_of(m.header("to").unwrap()), Some("to1"));
        assert_eq!(tag_of(m.header("from").unwrap()), Some("from1"));
        assert_eq!(m.header_values("from").len(), 1, "comma in quotes kept");
        assert_eq!(
            uri_of(m.header("contact").unwrap()),
            "sip:1001@127.0.0.1:5632;transport=udp"
        );
        assert_eq!(m.header("content-type"), Some("application/sdp"));
        assert_eq!(m.body, b"v=0\r\ns=-\r\nc=t");
        assert_eq!(
            via_response_addr(vias[0]),
            Some("127.0.0.1:5631".parse().unwrap())
        );
        assert_eq!(
            via_response_addr(vias[1]),
            Some("10.0.0.2:5070".parse().unwrap())
        );
        assert_eq!(
            via_response_addr(vias[2]),
            Some("10.0.0.3:5060".parse().unwrap())
        );
    }

    #[test]
    fn malformed_is_rejected_not_panicking() {
        assert!(parse(b"").is_none());
        assert!(parse(b"\r\n\r\n").is_none());
        assert!(parse(b"hello").is_none());
        assert!(parse(b"SIP/2.0 abc OK\r\n\r\n").is_none());
        assert!(parse(b"INVITE sip:a SIP/2.0\r\nno colon here\r\n\r\n").is_none());
        // Content-Length larger than the datagram: truncated message.
        assert!(parse(b"SIP/2.0 200 OK\r\nContent-Length: 50\r\n\r\nabc").is_none());
        assert!(parse("SIP/2.0 200 OK\r\nTo: \u{fffd}\u{1F600}\r\n\r\n".as_bytes()).is_some());
        for n in 0..RESP.len() {
            let _ = parse(&RESP.as_bytes()[..n]);
        }
    }

    #[test]
    fn route_set_is_reversed_and_first_hop_is_first_route() {
        let m = parse(RESP.as_bytes()).unwrap();
        let rr = m.header_values("record-route");
        let contact = uri_of(m.header("contact").unwrap());
        let t = route_for_2xx(&rr, contact).unwrap();
        assert_eq!(
            t.routes,
            vec![
                "<sip:10.0.0.10;lr>",
                "<sip:10.0.0.9:5651;lr>",
                "<sip:127.0.0.1:5650;lr;ftag=a,b>"
            ]
        );
        assert_eq!(t.ruri, "sip:1001@127.0.0.1:5632;transport=udp");
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.10", 5060));

        // No Record-Route: straight to the Contact.
        let t = route_for_2xx(&[], "sip:1001@127.0.0.1:5632").unwrap();
        assert!(t.routes.is_empty());
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5632));

        // Strict router: its URI is the Request-URI, Contact goes last.
        let t = route_for_2xx(&["<sip:10.0.0.1:5080>"], "sip:b@10.0.0.2").unwrap();
        assert_eq!(t.ruri, "sip:10.0.0.1:5080");
        assert_eq!(t.routes, vec!["<sip:b@10.0.0.2>"]);
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.1", 5080));
    }

    #[test]
    fn response_copies_vias_and_record_routes_in_order() {
        let req = "INVITE sip:1001@127.0.0.1:5632 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5650;branch=z9hG4bK1, SIP/2.0/UDP 127.0.0.1:5631;branch=z9hG4bK2;rport=5631\r\n\
Record-Route: <sip:127.0.0.1:5650;lr;r2=on>\r\n\
Record-Route: <sip:127.0.0.1:5651;lr>, <sip:127.0.0.1:5652;lr>\r\n\
From: <sip:rtpload@127.0.0.1>;tag=abc\r\n\
To: <sip:1001@127.0.0.1>\r\n\
Call-ID: xyz\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let req = parse(req.as_bytes()).unwrap();
        let out = build_response(
            &req,
            200,
            "OK",
            Some("t1"),
            Some("<sip:1001@127.0.0.1:5632>"),
            Some(("application/sdp", b"v=0\r\n")),
        );
        let text = String::from_utf8(out.clone()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "SIP/2.0 200 OK");
        assert_eq!(lines[1], "Via: SIP/2.0/UDP 127.0.0.1:5650;branch=z9hG4bK1");
        assert_eq!(
            lines[2],
            "Via: SIP/2.0/UDP 127.0.0.1:5631;branch=z9hG4bK2;rport=5631"
        );
        assert_eq!(lines[3], "Record-Route: <sip:127.0.0.1:5650;lr;r2=on>");
        assert_eq!(lines[4], "Record-Route: <sip:127.0.0.1:5651;lr>");
        assert_eq!(lines[5], "Record-Route: <sip:127.0.0.1:5652;lr>");
        let resp = parse(&out).unwrap();
        assert_eq!(resp.code(), Some(200));
        assert_eq!(tag_of(resp.header("to").unwrap()), Some("t1"));
        assert_eq!(tag_of(resp.header("from").unwrap()), Some("abc"));
        assert_eq!(resp.call_id(), Some("xyz"));
        assert_eq!(resp.cseq(), Some((1, "INVITE")));
        assert_eq!(resp.body, b"v=0\r\n");
    }

    #[test]
    fn sdp_round_trip() {
        let s = build_sdp(7, 5634, &[0, 101]);
        assert!(s.contains("m=audio 5634 RTP/AVP 0 101\r\n"));
        let p = parse_sdp(s.as_bytes()).unwrap();
        assert_eq!(p.port, 5634);
        assert_eq!(p.fmts, vec![0, 101]);
        assert_eq!(p.addr, Some("127.0.0.1".parse().unwrap()));
        let p = parse_sdp(
            b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 9 RTP/AVP 96\r\nc=IN IP4 10.0.0.3\r\nm=audio 4000 RTP/AVP 8 0\r\nc=IN IP4 10.0.0.2\r\n",
        )
        .unwrap();
        assert_eq!(p.port, 4000);
        assert_eq!(p.fmts, vec![8, 0]);
        assert_eq!(p.addr, Some("10.0.0.2".parse().unwrap()));
        assert!(parse_sdp(b"v=0\r\n").is_none());
    }
}
