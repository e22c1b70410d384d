//! The sans-IO request head parser: bytes in, a [`Head`] or an
//! [`HttpError`] out. The server feeds it what it has read so far.

use super::{Headers, HttpError, Limits, Version};

/// A parsed request line and header section, with what the server needs
/// to read the body and decide on keep-alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// The percent-decoded path.
    pub path: String,
    /// The decoded query pairs.
    pub query: Vec<(String, String)>,
    pub version: Version,
    pub headers: Headers,
    /// The body's length, 0 without `Content-Length`; never over
    /// [`Limits::max_body_bytes`].
    pub content_length: usize,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
    /// HTTP/1.1 with `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Parses a request head from the bytes read so far, remembering how far
/// it has looked for the blank line so that a head arriving a byte at a
/// time costs linear, not quadratic, time.
#[derive(Clone, Debug)]
pub struct RequestParser {
    limits: Limits,
    scanned: usize,
}

impl RequestParser {
    pub fn new(limits: &Limits) -> Self {
        RequestParser {
            limits: *limits,
            scanned: 0,
        }
    }

    /// `Ok(None)` while the head is incomplete; `Ok(Some((head, n)))` once
    /// it is, `n` being its length in `buf` (the body starts at `buf[n]`).
    /// `buf` must start where the last complete head ended and only grow
    /// between calls; the parser resets itself after a complete head or an
    /// error.
    pub fn parse_head(&mut self, buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
        let max = self.limits.max_head_bytes;
        let start = leading_blank_lines(buf);
        let from = self.scanned.max(start);
        match find_head_end(buf, from) {
            Scan::Complete(end) => {
                self.scanned = 0;
                if end > max {
                    return Err(HttpError::HeadTooLarge);
                }
                let head = parse_complete(&buf[start..end], &self.limits)?;
                Ok(Some((head, end)))
            }
            Scan::Incomplete(resume) => {
                if buf.len() >= max {
                    self.scanned = 0;
                    return Err(HttpError::HeadTooLarge);
                }
                self.scanned = resume;
                Ok(None)
            }
        }
    }
}

/// [`RequestParser::parse_head`] without the remembered scan position.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HttpError> {
    RequestParser::new(limits).parse_head(buf)
}

/// RFC 9112 §2.2: a server ignores empty lines before the request line.
fn leading_blank_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        if buf[i..].starts_with(b"\r\n") {
            i += 2;
        } else if buf[i..].starts_with(b"\n") {
            i += 1;
        } else {
            return i;
        }
    }
}

enum Scan {
    /// The head ends (blank line included) at this offset.
    Complete(usize),
    /// Not yet; look again from this offset.
    Incomplete(usize),
}

/// Looks for the blank line (`\n\r\n` or `\n\n`) from `from` on.
fn find_head_end(buf: &[u8], from: usize) -> Scan {
    let mut i = from;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1) {
            None => return Scan::Incomplete(nl),
            Some(b'\n') => return Scan::Complete(nl + 2),
            Some(b'\r') => match buf.get(nl + 2) {
                None => return Scan::Incomplete(nl),
                Some(b'\n') => return Scan::Complete(nl + 3),
                Some(_) => {}
            },
            Some(_) => {}
        }
        i = nl + 1;
    }
    Scan::Incomplete(buf.len())
}

/// Parses a complete head (request line to blank line).
fn parse_complete(bytes: &[u8], limits: &Limits) -> Result<Head, HttpError> {
    let mut lines = bytes.split(|&b| b == b'\n').map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b'\r') {
            Err(HttpError::Malformed("bare CR in the head"))
        } else {
            Ok(line)
        }
    });
    let request_line = lines.next().ok_or(HttpError::Malformed("empty head"))??;
    let (method, target, version) = parse_request_line(request_line)?;

    let mut headers = Headers::new();
    for line in lines {
        let line = line?;
        if line.is_empty() {
            break;
        }
        if headers.len() == limits.max_headers {
            return Err(HttpError::TooManyHeaders);
        }
        let (name, value) = parse_header_line(line)?;
        headers.append(name, value);
    }

    let (path, query) = parse_target(&target)?;

    let http11 = version == Version::Http11;
    if http11 && headers.get_all("host").count() != 1 {
        return Err(HttpError::Malformed(
            "HTTP/1.1 needs exactly one Host header",
        ));
    }
    if headers.get("transfer-encoding").is_some() {
        return Err(HttpError::LengthRequired);
    }
    let content_length = content_length(&headers, limits)?;
    let expect_continue = match headers.get("expect") {
        None => false,
        // RFC 9110 §10.1.1: an HTTP/1.0 expectation is ignored.
        Some(_) if !http11 => false,
        Some(v) if v.trim().eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return Err(HttpError::ExpectationFailed),
    };
    let keep_alive = http11 && !headers.has_token("connection", "close");

    Ok(Head {
        method,
        target,
        path,
        query,
        version,
        headers,
        content_length,
        keep_alive,
        expect_continue,
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::VersionNotSupported)
        }
        _ => return Err(HttpError::Malformed("bad HTTP version")),
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::Malformed("bad method"));
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(HttpError::Malformed("bad request target"));
    }
    // Both are ASCII by now.
    let method = String::from_utf8_lossy(method).into_owned();
    let target = String::from_utf8_lossy(target).into_owned();
    Ok((method, target, version))
}

fn parse_header_line(line: &[u8]) -> Result<(String, String), HttpError> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(HttpError::Malformed("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::Malformed("header line without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::Malformed("bad header name"));
    }
    let value = line[colon + 1..].trim_ascii();
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HttpError::Malformed("control character in a header value"));
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// The body's length from `Content-Length`: every field and every element
/// of a list must agree (RFC 9112 §6.3), and it must be within the limit.
fn content_length(headers: &Headers, limits: &Limits) -> Result<usize, HttpError> {
    let mut length: Option<u64> = None;
    for element in headers.get_all("content-length").flat_map(|v| v.split(',')) {
        let element = element.trim();
        if element.is_empty() || element.len() > 19 || !element.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(HttpError::Malformed("bad Content-Length"));
        }
        let n: u64 = element
            .parse()
            .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(HttpError::Malformed("conflicting Content-Length"));
        }
        length = Some(n);
    }
    let length = length.unwrap_or(0);
    if length > limits.max_body_bytes as u64 {
        return Err(HttpError::BodyTooLarge {
            length,
            limit: limits.max_body_bytes,
        });
    }
    Ok(length as usize)
}

/// Splits a request target into its decoded path and query pairs. Takes
/// origin form (`/p?q`), asterisk form (`*`) and absolute form
/// (`http://host/p?q`, whose authority is dropped).
fn parse_target(target: &str) -> Result<(String, Vec<(String, String)>), HttpError> {
    if target == "*" {
        return Ok(("*".to_string(), Vec::new()));
    }
    if target.contains('#') {
        return Err(HttpError::Malformed("fragment in the request target"));
    }
    let origin = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(HttpError::Malformed("bad request target"));
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if authority_end == 0 {
            return Err(HttpError::Malformed("absolute target without a host"));
        }
        &rest[authority_end..]
    };
    let (raw_path, raw_query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin, None),
    };
    let path = if raw_path.is_empty() {
        "/".to_string()
    } else {
        percent_decode(raw_path, false)?
    };
    let query = match raw_query {
        Some(q) => parse_query(q)?,
        None => Vec::new(),
    };
    Ok((path, query))
}

/// Decodes `application/x-www-form-urlencoded` pairs (`a=1&b=x+y`).
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, HttpError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space if `plus_is_space`). The
/// result must be UTF-8 without control characters.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, HttpError> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(HttpError::Malformed("bad percent-encoding"));
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let out =
        String::from_utf8(out).map_err(|_| HttpError::Malformed("path or query not UTF-8"))?;
    if out.chars().any(char::is_control) {
        return Err(HttpError::Malformed("control character in path or query"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(s: &str) -> Result<Option<(Head, usize)>, HttpError> {
        parse_head(s.as_bytes(), &limits())
    }

    fn complete(s: &str) -> Head {
        let (head, used) = parse(s).unwrap().expect("complete head");
        assert_eq!(used, s.len(), "the head is all of {s:?}");
        head
    }

    fn status(s: &str) -> u16 {
        parse(s).expect_err("an error").status()
    }

    #[test]
    fn get_request() {
        let head = complete("GET /metrics HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n");
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/metrics");
        assert_eq!(head.path, "/metrics");
        assert!(head.query.is_empty());
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.headers.get("host"), Some("localhost:8080"));
        assert_eq!(head.headers.get("accept"), Some("*/*"));
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.content_length, 0);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
    }

    #[test]
    fn post_with_body_reports_where_the_body_starts() {
        let head_text =
            "POST /v1/tenants/a/dialplan HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
        let buf = format!("{head_text}hello");
        let (head, used) = parse(&buf).unwrap().unwrap();
        assert_eq!(used, head_text.len());
        assert_eq!(&buf[used..], "hello");
        assert_eq!(head.method, "POST");
        assert_eq!(head.content_length, 5);
    }

    #[test]
    fn a_head_split_across_many_reads() {
        let text = "PUT /a%20b?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Long: "
            .to_string()
            + &"v".repeat(300)
            + "\r\n\r\nabc";
        let bytes = text.as_bytes();
        let head_len = text.len() - 3;
        let mut parser = RequestParser::new(&limits());
        for n in 0..head_len {
            assert_eq!(parser.parse_head(&bytes[..n]), Ok(None), "after {n} bytes");
        }
        let (head, used) = parser.parse_head(&bytes[..head_len]).unwrap().unwrap();
        assert_eq!(used, head_len);
        assert_eq!(head.path, "/a b");
        assert_eq!(head.headers.get("x-long").unwrap().len(), 300);
        // The same head in uneven pieces, whole body included.
        let mut parser = RequestParser::new(&limits());
        let mut end = 0;
        let mut result = None;
        for step in [1, 7, 2, 13, 5, 40, 1, 1, 1000] {
            end = (end + step).min(bytes.len());
            if let Some(done) = parser.parse_head(&bytes[..end]).unwrap() {
                result = Some(done);
                break;
            }
        }
        assert_eq!(result, Some((head, head_len)));
    }

    #[test]
    fn bare_lf_line_ends_and_leading_blank_lines_are_accepted() {
        let text = "\r\n\nGET / HTTP/1.1\nHost: x\n\n";
        let head = complete(text);
        assert_eq!(head.path, "/");
        assert_eq!(head.headers.get("Host"), Some("x"));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let head =
            complete("GET / HTTP/1.1\r\nhOsT: x\r\nCONTENT-length: 0\r\nX-Thing:  a b \r\n\r\n");
        assert_eq!(head.headers.get("Host"), Some("x"));
        assert_eq!(head.headers.get("HOST"), Some("x"));
        assert_eq!(head.headers.get("x-thing"), Some("a b"), "OWS trimmed");
        assert_eq!(head.content_length, 0);
    }

    #[test]
    fn percent_decoding_and_query() {
        let head = complete(
            "GET /v1/tenants/caf%C3%A9/a%2Fb?name=x+y&flag&enc=%26%3D&empty=&name=second HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(head.path, "/v1/tenants/café/a/b");
        assert_eq!(
            head.query,
            vec![
                ("name".into(), "x y".into()),
                ("flag".into(), "".into()),
                ("enc".into(), "&=".into()),
                ("empty".into(), "".into()),
                ("name".into(), "second".into()),
            ]
        );
        // `+` is a space in the query only.
        assert_eq!(
            complete("GET /a+b HTTP/1.1\r\nHost: x\r\n\r\n").path,
            "/a+b"
        );
        for bad in ["/%", "/%4", "/%zz", "/%ff", "/%00", "/a?b=%0a"] {
            let req = format!("GET {bad} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(status(&req), 400, "{bad}");
        }
    }

    #[test]
    fn absolute_and_asterisk_targets() {
        let head = complete("GET http://127.0.0.1:9000/metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(head.path, "/metrics");
        assert_eq!(head.query, vec![("x".into(), "1".into())]);
        assert_eq!(
            complete("GET HTTP://h HTTP/1.1\r\nHost: x\r\n\r\n").path,
            "/"
        );
        assert_eq!(complete("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").path, "*");
        assert_eq!(status("GET metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status("GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status("GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    }

    #[test]
    fn keep_alive_and_expect() {
        assert!(
            !complete("GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n")
                .keep_alive
        );
        let http10 = complete("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(http10.version, Version::Http10);
        assert!(
            !http10.keep_alive,
            "HTTP/1.0 is served one request per connection"
        );
        let head = complete(
            "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nExpect: 100-Continue\r\n\r\n",
        );
        assert!(head.expect_continue);
        assert!(
            !complete("PUT / HTTP/1.0\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n")
                .expect_continue,
            "HTTP/1.0 expectations are ignored"
        );
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n"),
            417
        );
    }

    #[test]
    fn malformed_requests_are_400() {
        for bad in [
            "GET\r\n\r\n",
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            "GET / http/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1\r\nHost: x\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /é HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nBad name: v\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
        ] {
            match parse(bad) {
                Err(HttpError::Malformed(_)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
            assert_eq!(status(bad), 400);
        }
        // Repeated, equal lengths are one length.
        let head = complete(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n",
        );
        assert_eq!(head.content_length, 3);
    }

    #[test]
    fn head_too_large_is_431() {
        let small = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        // No blank line within the limit: refused without waiting for more.
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
        assert_eq!(
            parse_head(long.as_bytes(), &small),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        // A complete head one byte over.
        let head = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let exact = Limits {
            max_head_bytes: head.len(),
            ..Limits::default()
        };
        assert!(parse_head(head.as_bytes(), &exact).unwrap().is_some());
        let under = Limits {
            max_head_bytes: head.len() - 1,
            ..Limits::default()
        };
        assert_eq!(
            parse_head(head.as_bytes(), &under),
            Err(HttpError::HeadTooLarge)
        );
        // The default limit: 16 KiB.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "v".repeat(16 * 1024)
        );
        assert_eq!(status(&big), 431);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut text = "GET / HTTP/1.1\r\nHost: x\r\n".to_string();
        for i in 0..99 {
            text += &format!("X-{i}: v\r\n");
        }
        let hundred = text.clone() + "\r\n";
        assert_eq!(complete(&hundred).headers.len(), 100);
        let over = text + "X-last: v\r\n\r\n";
        assert_eq!(parse(&over), Err(HttpError::TooManyHeaders));
        assert_eq!(status(&over), 431);
    }

    #[test]
    fn body_too_large_is_413_from_content_length() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        let ok = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(
            parse_head(ok.as_bytes(), &limits)
                .unwrap()
                .unwrap()
                .0
                .content_length,
            10
        );
        let over = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
        let err = parse_head(over.as_bytes(), &limits).unwrap_err();
        assert_eq!(
            err,
            HttpError::BodyTooLarge {
                length: 11,
                limit: 10
            }
        );
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn transfer_encoding_is_411() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            411
        );
    }

    #[test]
    fn other_versions_are_505() {
        for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0"] {
            assert_eq!(status(&format!("GET / {v}\r\nHost: x\r\n\r\n")), 505, "{v}");
        }
        // The HTTP/2 connection preface.
        assert_eq!(status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
    }

    #[test]
    fn parser_resets_after_a_head() {
        let mut parser = RequestParser::new(&limits());
        let two = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
        let (first, used) = parser.parse_head(two).unwrap().unwrap();
        assert_eq!(first.path, "/1");
        let (second, used2) = parser.parse_head(&two[used..]).unwrap().unwrap();
        assert_eq!(second.path, "/2");
        assert_eq!(used + used2, two.len());
    }
}
