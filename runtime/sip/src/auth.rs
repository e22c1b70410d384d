//! Digest authentication for SIP (RFC 3261 section 22, RFC 7616, RFC 8760),
//! without sockets or clocks.
//!
//! This module owns everything about the `Digest` scheme that the switch
//! needs on both sides of a challenge:
//!
//! - **Header values.** [`Challenge`] is a `WWW-Authenticate` /
//!   `Proxy-Authenticate` value and [`Credentials`] an `Authorization` /
//!   `Proxy-Authorization` value. Both parse from and format to the text
//!   after the header name. The parser takes one `Digest` challenge or
//!   credentials per value, matches the scheme and parameter names without
//!   regard to case, undoes backslash escapes in quoted strings, allows
//!   optional whitespace around `=` and `,` and empty list elements, ignores
//!   parameters it does not know, and rejects duplicates, unterminated
//!   quotes, control characters and stray text with an [`AuthError`]. It
//!   never panics.
//! - **Hashing.** [`Algorithm`] covers MD5, SHA-256 and SHA-512-256 and their
//!   `-sess` variants. SHA-512-256 is the FIPS 180-4 SHA-512/256 function
//!   (its own initial values), not a truncated SHA-512. [`Qop`] covers `auth`
//!   and `auth-int`, where `auth-int` hashes the message body into A2
//!   (`method:uri:H(body)`). A response without `qop` (RFC 2069) is only
//!   computed and accepted for plain MD5: RFC 7616 makes `qop` mandatory, and
//!   the `-sess` variants need the `cnonce` that only comes with `qop`.
//! - **Client side.** [`respond`] answers a challenge from a gateway or
//!   upstream proxy. It picks `qop=auth` when offered, `auth-int` only when
//!   `auth` is not, and honours `userhash=true`. The caller supplies the
//!   client nonce and nonce count ([`generate_cnonce`] makes a random one).
//! - **Server side.** [`DigestServer`] issues challenges for the registrar
//!   and for INVITE authentication and checks the credentials that come
//!   back, returning an [`Outcome`].
//!
//! # Nonces
//!
//! Nonces carry their own proof of origin, so the server keeps no table of
//! issued nonces. A nonce is 64 lowercase hex digits encoding 32 bytes:
//!
//! ```text
//! issued (u64 unix seconds, big endian) | salt (8 bytes) | tag (16 bytes)
//! ```
//!
//! `tag` is HMAC-SHA256, truncated to 128 bits, keyed with the server's
//! 32-byte secret, over a version label, `issued`, `salt`, the realm and the
//! algorithm name. Nobody without the key can mint a nonce, change its
//! timestamp, or move it to another realm or algorithm: answering a SHA-256
//! challenge with MD5 and the same nonce fails. `salt` comes from a keyed
//! counter seeded at random, so nonces are unique and unpredictable. A
//! server that keeps its key across restarts keeps its outstanding nonces
//! valid; one that starts with [`DigestServer::with_random_key`] turns them
//! into `Failed`, and clients have to be challenged again.
//!
//! # Expiry
//!
//! A nonce is valid for [`DEFAULT_NONCE_LIFETIME`] (300 s) after it was
//! issued, configurable with [`DigestServer::with_nonce_lifetime`]. Time is
//! whatever `u64` unix seconds the caller passes in; nothing here reads a
//! clock. Correct credentials with an expired nonce give [`Outcome::Stale`],
//! and the caller challenges again with `stale=true` so the client retries
//! without asking its user. Wrong credentials with an expired nonce give
//! [`Outcome::Failed`], so `Stale` never confirms a guessed password.
//!
//! # Replay protection
//!
//! The server remembers the nonces that have been answered correctly, with
//! the highest nonce count seen for each, in a map bounded by
//! [`DEFAULT_REPLAY_CAPACITY`] entries (65,536, configurable with
//! [`DigestServer::with_replay_capacity`]).
//!
//! - With `qop`, every use of a nonce must carry a strictly higher `nc` than
//!   the uses before it, starting from 1. Gaps are allowed: requests can be lost or reordered
//!   in flight, and skipping a count cannot replay anything.
//! - Without `qop` (RFC 2069) there is no count, so a nonce is good for one
//!   request only.
//! - A replayed `(nonce, nc)`, or a second use of a nonce without `qop`,
//!   gives [`Outcome::Stale`], not `Failed`. A replay carries a response that
//!   was correct once, so rejecting it as stale tells an attacker nothing they
//!   did not already have, and gives them only a fresh nonce they cannot
//!   answer. A legitimate client that lost count re-authenticates
//!   transparently instead of being told its password is wrong.
//! - Entries for expired nonces are dropped whenever a new nonce is
//!   recorded. When the map is full, the oldest entry is evicted. The server
//!   then remembers the newest evicted nonce and answers `Stale` for every
//!   nonce issued no later than it, whether or not the nonce has expired.
//!   Without that, an evicted nonce could be replayed. Under memory pressure
//!   clients are re-challenged sooner; nothing becomes replayable.
//!
//! # What else is checked
//!
//! - `realm` must equal the realm the caller expects, byte for byte.
//! - `uri` must equal the Request-URI of the request being authenticated,
//!   byte for byte. A client copies its Request-URI into `uri` verbatim when
//!   it computes the response, so an exact comparison accepts every honest
//!   client and stops credentials for one resource being used for another.
//!   Nothing is normalised: RFC 3261 URI equivalence would let different
//!   strings match, and the response hash covers the exact string anyway.
//! - The response is compared in constant time.
//! - An unknown user (the caller passes no secret) is checked against a dummy
//!   secret and gives `Failed`, the same outcome and about the same work as a
//!   wrong password.
//! - [`DigestServer`] never offers `userhash`, so credentials that claim
//!   `userhash=true` are [`Outcome::Malformed`].
//! - The server's challenges offer `qop="auth"`. Answers using `auth-int`
//!   are accepted too, since they also protect the body.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

/// How long a nonce issued by [`DigestServer`] stays valid unless
/// configured otherwise, in seconds.
pub const DEFAULT_NONCE_LIFETIME: u64 = 300;

/// How many answered nonces [`DigestServer`] tracks for replay protection
/// unless configured otherwise.
pub const DEFAULT_REPLAY_CAPACITY: usize = 65_536;

/// Why a header value could not be parsed, or a challenge not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The value does not use the `Digest` scheme.
    #[error("not a Digest header value")]
    NotDigest,
    /// The value is not a well-formed list of parameters.
    #[error("syntax error at byte {at}: {what}")]
    Syntax {
        /// Byte offset into the value where the problem was found.
        at: usize,
        /// What was expected or found there.
        what: &'static str,
    },
    /// A parameter occurs more than once.
    #[error("parameter {0} occurs more than once")]
    DuplicateParam(String),
    /// A parameter that must be present is missing.
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    /// A parameter has a value that is not allowed.
    #[error("invalid value for parameter {0}")]
    InvalidParam(&'static str),
    /// The algorithm is not one this module implements.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The challenge offers only quality-of-protection values this module
    /// does not implement, or the credentials use one.
    #[error("unsupported qop {0}")]
    UnsupportedQop(String),
    /// The algorithm cannot be used without `qop`: anything other than MD5.
    #[error("algorithm {0} requires qop")]
    QopRequired(Algorithm),
    /// The operating system's random number generator failed.
    #[error("random number generator unavailable")]
    Random,
}

/// A digest algorithm, as named in the `algorithm` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617), the default when `algorithm` is absent.
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`: FIPS 180-4 SHA-512/256.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Md5,
        Algorithm::Md5Sess,
    ];

    /// The name used in the `algorithm` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Looks an algorithm up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether this is a `-sess` variant, where A1 also covers the server
    /// and client nonces.
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Lowercase hex digest of `data`.
    pub fn hex_digest(self, data: &[u8]) -> String {
        self.hash_joined(&[data])
    }

    /// Length of a hex digest in characters.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 32,
            _ => 64,
        }
    }

    /// Lowercase hex digest of `parts` joined by `:`.
    fn hash_joined(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => joined_digest::<Md5>(parts),
            Algorithm::Sha256 | Algorithm::Sha256Sess => joined_digest::<Sha256>(parts),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => joined_digest::<Sha512_256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(s).ok_or_else(|| AuthError::UnsupportedAlgorithm(s.to_owned()))
    }
}

fn joined_digest<D: Digest>(parts: &[&[u8]]) -> String {
    let mut hasher = D::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Quality of protection, as named in the `qop` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: the response covers the method and URI.
    Auth,
    /// `auth-int`: the response also covers the message body.
    AuthInt,
}

impl Qop {
    /// The name used in the `qop` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }

    /// Looks a qop value up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Qop> {
        [Qop::Auth, Qop::AuthInt]
            .into_iter()
            .find(|q| q.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks that `algorithm` may be used with (or without) `qop`.
fn check_qop(algorithm: Algorithm, qop: Option<Qop>) -> Result<(), AuthError> {
    if qop.is_none() && algorithm != Algorithm::Md5 {
        return Err(AuthError::QopRequired(algorithm));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Response computation
// ---------------------------------------------------------------------------

/// The HA1 for `username`, `realm` and `password`: `H(username:realm:password)`.
///
/// A registrar that does not want to store passwords can store this per
/// algorithm and verify with [`Secret::Ha1`]. For `-sess` algorithms this is
/// still the hash of the plain A1. The session part is added per request.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The hashed username sent in place of the username when `userhash=true`
/// (RFC 7616 section 3.4.4): `H(username:realm)`.
pub fn userhash(algorithm: Algorithm, username: &str, realm: &str) -> String {
    algorithm.hash_joined(&[username.as_bytes(), realm.as_bytes()])
}

/// The per-request inputs to a response, other than the secret.
struct ResponseInput<'a> {
    nonce: &'a str,
    /// `qop`, `nc` as its eight hex digits, and `cnonce`.
    qop: Option<(Qop, &'a str, &'a str)>,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
}

/// Computes the `response` value from a plain HA1 using `h`, which hashes
/// its parts joined with `:`. Kept generic in the hash so that the tests can
/// reproduce published examples made with other hash functions.
fn response_with(
    h: &dyn Fn(&[&[u8]]) -> String,
    session: bool,
    plain_ha1: &str,
    input: &ResponseInput<'_>,
) -> String {
    let cnonce = input.qop.map_or("", |(_, _, c)| c);
    let ha1 = if session {
        h(&[
            plain_ha1.as_bytes(),
            input.nonce.as_bytes(),
            cnonce.as_bytes(),
        ])
    } else {
        plain_ha1.to_owned()
    };
    let ha2 = match input.qop {
        Some((Qop::AuthInt, _, _)) => {
            let body_hash = h(&[input.body]);
            h(&[
                input.method.as_bytes(),
                input.uri.as_bytes(),
                body_hash.as_bytes(),
            ])
        }
        _ => h(&[input.method.as_bytes(), input.uri.as_bytes()]),
    };
    match input.qop {
        Some((qop, nc, cnonce)) => h(&[
            ha1.as_bytes(),
            input.nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            qop.as_str().as_bytes(),
            ha2.as_bytes(),
        ]),
        None => h(&[ha1.as_bytes(), input.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

fn response(algorithm: Algorithm, plain_ha1: &str, input: &ResponseInput<'_>) -> String {
    response_with(
        &|parts| algorithm.hash_joined(parts),
        algorithm.is_session(),
        plain_ha1,
        input,
    )
}

fn format_nc(nc: u32) -> String {
    format!("{nc:08x}")
}

/// Constant-time equality of two byte strings of equal length. The length
/// itself is not secret (it follows from the algorithm).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------------------
// Parsing and formatting
// ---------------------------------------------------------------------------

/// One `name=value` pair with the name lowercased and quotes undone.
struct Param {
    name: String,
    value: String,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Characters allowed in an unquoted value: tokens, and the `/`, `:`, `@`,
/// `=`, `?`, `[`, `]` that appear unquoted in nonces and URIs from lenient
/// peers.
fn is_bare_value_char(b: u8) -> bool {
    is_tchar(b) || matches!(b, b'/' | b':' | b'@' | b'=' | b'?' | b'[' | b']')
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits `Digest name=value, ...` into its parameters.
fn parse_params(input: &str) -> Result<Vec<Param>, AuthError> {
    let bytes = input.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && is_ws(bytes[*i]) {
            *i += 1;
        }
    };

    skip_ws(&mut i);
    let scheme_start = i;
    while i < bytes.len() && is_tchar(bytes[i]) {
        i += 1;
    }
    if !input[scheme_start..i].eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    if i < bytes.len() && !is_ws(bytes[i]) {
        return Err(AuthError::Syntax {
            at: i,
            what: "expected whitespace after the scheme",
        });
    }

    let mut params: Vec<Param> = Vec::new();
    loop {
        // Optional whitespace and empty list elements.
        while i < bytes.len() && (is_ws(bytes[i]) || bytes[i] == b',') {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }

        let name_start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(AuthError::Syntax {
                at: i,
                what: "expected a parameter name",
            });
        }
        let name = input[name_start..i].to_ascii_lowercase();

        skip_ws(&mut i);
        if bytes.get(i) != Some(&b'=') {
            return Err(AuthError::Syntax {
                at: i,
                what: "expected '='",
            });
        }
        i += 1;
        skip_ws(&mut i);

        let value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut out = Vec::new();
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(AuthError::Syntax {
                            at: i,
                            what: "unterminated quoted string",
                        })
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => match bytes.get(i + 1) {
                        Some(&c) if c == b'\t' || (c >= 0x20 && c != 0x7f) => {
                            out.push(c);
                            i += 2;
                        }
                        _ => {
                            return Err(AuthError::Syntax {
                                at: i,
                                what: "invalid escape in quoted string",
                            })
                        }
                    },
                    Some(&c) if c == b'\t' || (c >= 0x20 && c != 0x7f) => {
                        out.push(c);
                        i += 1;
                    }
                    Some(_) => {
                        return Err(AuthError::Syntax {
                            at: i,
                            what: "control character in quoted string",
                        })
                    }
                }
            }
            // Only ASCII backslashes were removed from valid UTF-8, so this
            // cannot fail; map the error rather than unwrap all the same.
            String::from_utf8(out).map_err(|_| AuthError::Syntax {
                at: i,
                what: "invalid UTF-8 in quoted string",
            })?
        } else {
            let value_start = i;
            while i < bytes.len() && is_bare_value_char(bytes[i]) {
                i += 1;
            }
            if i == value_start {
                return Err(AuthError::Syntax {
                    at: i,
                    what: "expected a token or quoted string",
                });
            }
            input[value_start..i].to_owned()
        };

        if params.iter().any(|p| p.name == name) {
            return Err(AuthError::DuplicateParam(name));
        }
        params.push(Param { name, value });

        skip_ws(&mut i);
        match bytes.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => {
                return Err(AuthError::Syntax {
                    at: i,
                    what: "expected ',' between parameters",
                })
            }
        }
    }
    Ok(params)
}

fn take(params: &mut Vec<Param>, name: &str) -> Option<String> {
    let pos = params.iter().position(|p| p.name == name)?;
    Some(params.swap_remove(pos).value)
}

fn require(params: &mut Vec<Param>, name: &'static str) -> Result<String, AuthError> {
    take(params, name).ok_or(AuthError::MissingParam(name))
}

fn parse_bool(value: &str, name: &'static str) -> Result<bool, AuthError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(AuthError::InvalidParam(name))
    }
}

/// Parses `nc`: exactly eight lowercase hex digits (RFC 7616 `8LHEX`). The
/// digits enter the response hash as sent, so accepting any other spelling
/// would only turn a syntax error into a wrong response.
fn parse_nc(value: &str) -> Result<u32, AuthError> {
    let ok = value.len() == 8
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(AuthError::InvalidParam("nc"));
    }
    u32::from_str_radix(value, 16).map_err(|_| AuthError::InvalidParam("nc"))
}

/// Writes `value` as a quoted string, escaping `"` and `\`. Control
/// characters other than tab cannot appear in a quoted string at all and
/// are left out, so that no value can break the header line.
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in value.chars() {
        match c {
            '"' | '\\' => write!(f, "\\{c}")?,
            '\t' => f.write_str("\t")?,
            c if c.is_control() => {}
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A `Digest` challenge: the value of a `WWW-Authenticate` or
/// `Proxy-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`: the protection space, shown to users and hashed into A1.
    pub realm: String,
    /// `nonce`: the server's nonce.
    pub nonce: String,
    /// `opaque`: echoed back unchanged by the client, if present.
    pub opaque: Option<String>,
    /// `algorithm`; MD5 when the parameter is absent.
    pub algorithm: Algorithm,
    /// `qop`: the supported quality-of-protection values the server offers,
    /// in its order. Empty when the parameter is absent (RFC 2069 style).
    pub qop: Vec<Qop>,
    /// `stale=true`: the previous nonce expired but the credentials were good.
    pub stale: bool,
    /// `domain`: the space-separated URIs of the protection space, if given.
    pub domain: Option<String>,
    /// `userhash=true`: the server wants the username hashed.
    pub userhash: bool,
}

impl Challenge {
    /// Parses a challenge header value such as
    /// `Digest realm="example.com", nonce="abc", qop="auth,auth-int"`.
    ///
    /// Unknown parameters are ignored, and so are unknown values inside
    /// `qop`. It is an error if `qop` is present but names nothing this
    /// module supports, or if `algorithm` is unsupported. A gateway that
    /// sends one challenge per algorithm gets one header per challenge. Try
    /// them in turn.
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let mut params = parse_params(value)?;
        let realm = require(&mut params, "realm")?;
        let nonce = require(&mut params, "nonce")?;
        let opaque = take(&mut params, "opaque");
        let algorithm = match take(&mut params, "algorithm") {
            Some(name) => name.parse()?,
            None => Algorithm::Md5,
        };
        let qop = match take(&mut params, "qop") {
            Some(list) => {
                let mut qop = Vec::new();
                for q in list.split(',').map(|q| q.trim_matches([' ', '\t'])) {
                    if let Some(q) = Qop::from_name(q) {
                        if !qop.contains(&q) {
                            qop.push(q);
                        }
                    }
                }
                if qop.is_empty() {
                    return Err(AuthError::UnsupportedQop(list));
                }
                qop
            }
            None => Vec::new(),
        };
        let stale = match take(&mut params, "stale") {
            Some(v) => parse_bool(&v, "stale")?,
            None => false,
        };
        let domain = take(&mut params, "domain");
        let userhash = match take(&mut params, "userhash") {
            Some(v) => parse_bool(&v, "userhash")?,
            None => false,
        };
        Ok(Challenge {
            realm,
            nonce,
            opaque,
            algorithm,
            qop,
            stale,
            domain,
            userhash,
        })
    }
}

impl FromStr for Challenge {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Challenge::parse(s)
    }
}

impl fmt::Display for Challenge {
    /// Formats the header value, always with an explicit `algorithm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest realm=")?;
        write_quoted(f, &self.realm)?;
        if let Some(domain) = &self.domain {
            f.write_str(", domain=")?;
            write_quoted(f, domain)?;
        }
        f.write_str(", nonce=")?;
        write_quoted(f, &self.nonce)?;
        if let Some(opaque) = &self.opaque {
            f.write_str(", opaque=")?;
            write_quoted(f, opaque)?;
        }
        if self.stale {
            f.write_str(", stale=TRUE")?;
        }
        write!(f, ", algorithm={}", self.algorithm)?;
        if !self.qop.is_empty() {
            f.write_str(", qop=\"")?;
            for (i, q) in self.qop.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(q.as_str())?;
            }
            f.write_str("\"")?;
        }
        if self.userhash {
            f.write_str(", userhash=true")?;
        }
        Ok(())
    }
}

/// `Digest` credentials: the value of an `Authorization` or
/// `Proxy-Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`, or its hash when `userhash` is set.
    pub username: String,
    /// `realm`, copied from the challenge.
    pub realm: String,
    /// `nonce`, copied from the challenge.
    pub nonce: String,
    /// `uri`: the digest URI, the Request-URI of the request.
    pub uri: String,
    /// `response`: the hex digest proving knowledge of the password.
    pub response: String,
    /// `algorithm`; MD5 when the parameter is absent.
    pub algorithm: Algorithm,
    /// `cnonce`: the client nonce, present exactly when `qop` is.
    pub cnonce: Option<String>,
    /// `opaque`, copied from the challenge.
    pub opaque: Option<String>,
    /// `qop`: the quality of protection chosen, absent for RFC 2069 answers.
    pub qop: Option<Qop>,
    /// `nc`: the nonce count, present exactly when `qop` is.
    pub nc: Option<u32>,
    /// `userhash=true`: `username` holds [`userhash`] of the real username.
    pub userhash: bool,
}

impl Credentials {
    /// Parses a credentials header value such as
    /// `Digest username="alice", realm="example.com", nonce="abc",
    /// uri="sip:example.com", response="...", qop=auth, nc=00000001,
    /// cnonce="xyz"`.
    ///
    /// `username`, `realm`, `nonce`, `uri` and `response` are required.
    /// With `qop`, `cnonce` and `nc` are required too, and `nc` must be
    /// eight lowercase hex digits. `qop` may be quoted. Only MD5 may omit
    /// `qop`. Unknown parameters, including RFC 7616's `username*`, are
    /// ignored.
    pub fn parse(value: &str) -> Result<Credentials, AuthError> {
        let mut params = parse_params(value)?;
        let username = require(&mut params, "username")?;
        let realm = require(&mut params, "realm")?;
        let nonce = require(&mut params, "nonce")?;
        let uri = require(&mut params, "uri")?;
        let response = require(&mut params, "response")?;
        let algorithm = match take(&mut params, "algorithm") {
            Some(name) => name.parse()?,
            None => Algorithm::Md5,
        };
        let cnonce = take(&mut params, "cnonce");
        let opaque = take(&mut params, "opaque");
        let qop = match take(&mut params, "qop") {
            Some(q) => Some(Qop::from_name(&q).ok_or(AuthError::UnsupportedQop(q))?),
            None => None,
        };
        let nc = take(&mut params, "nc").map(|v| parse_nc(&v)).transpose()?;
        let userhash = match take(&mut params, "userhash") {
            Some(v) => parse_bool(&v, "userhash")?,
            None => false,
        };
        check_qop(algorithm, qop)?;
        if qop.is_some() {
            if cnonce.is_none() {
                return Err(AuthError::MissingParam("cnonce"));
            }
            if nc.is_none() {
                return Err(AuthError::MissingParam("nc"));
            }
        }
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            userhash,
        })
    }
}

impl FromStr for Credentials {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Credentials::parse(s)
    }
}

impl fmt::Display for Credentials {
    /// Formats the header value, always with an explicit `algorithm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest username=")?;
        write_quoted(f, &self.username)?;
        f.write_str(", realm=")?;
        write_quoted(f, &self.realm)?;
        f.write_str(", nonce=")?;
        write_quoted(f, &self.nonce)?;
        f.write_str(", uri=")?;
        write_quoted(f, &self.uri)?;
        f.write_str(", response=")?;
        write_quoted(f, &self.response)?;
        write!(f, ", algorithm={}", self.algorithm)?;
        if let Some(cnonce) = &self.cnonce {
            f.write_str(", cnonce=")?;
            write_quoted(f, cnonce)?;
        }
        if let Some(opaque) = &self.opaque {
            f.write_str(", opaque=")?;
            write_quoted(f, opaque)?;
        }
        if let Some(qop) = self.qop {
            write!(f, ", qop={qop}")?;
        }
        if let Some(nc) = self.nc {
            write!(f, ", nc={}", format_nc(nc))?;
        }
        if self.userhash {
            f.write_str(", userhash=true")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// What the client knows about the request it is authenticating.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    /// The username (plain, even when the server asks for `userhash`).
    pub username: &'a str,
    /// The password.
    pub password: &'a str,
    /// The request method, e.g. `REGISTER` or `INVITE`.
    pub method: &'a str,
    /// The Request-URI, exactly as it appears in the request line.
    pub uri: &'a str,
    /// The message body, hashed when `auth-int` is chosen.
    pub body: &'a [u8],
    /// The client nonce; see [`generate_cnonce`].
    pub cnonce: &'a str,
    /// The nonce count: 1 for the first request with this challenge's nonce,
    /// then one more for each further request that reuses it.
    pub nc: u32,
}

/// Answers `challenge`: computes the credentials to send in the
/// `Authorization` (for a 401) or `Proxy-Authorization` (for a 407) header
/// of the retried request.
///
/// Chooses `qop=auth` when offered, `auth-int` only when `auth` is not, and
/// no `qop` when none is offered, which only MD5 allows. With
/// `userhash=true` in the challenge, the username is sent hashed. `cnonce`
/// and `nc` are only sent with `qop`.
pub fn respond(challenge: &Challenge, req: &ClientRequest<'_>) -> Result<Credentials, AuthError> {
    let algorithm = challenge.algorithm;
    let qop = if challenge.qop.contains(&Qop::Auth) {
        Some(Qop::Auth)
    } else if challenge.qop.contains(&Qop::AuthInt) {
        Some(Qop::AuthInt)
    } else {
        None
    };
    check_qop(algorithm, qop)?;
    let nc = format_nc(req.nc);
    let plain_ha1 = ha1(algorithm, req.username, &challenge.realm, req.password);
    let response = response(
        algorithm,
        &plain_ha1,
        &ResponseInput {
            nonce: &challenge.nonce,
            qop: qop.map(|q| (q, nc.as_str(), req.cnonce)),
            method: req.method,
            uri: req.uri,
            body: req.body,
        },
    );
    let username = if challenge.userhash {
        userhash(algorithm, req.username, &challenge.realm)
    } else {
        req.username.to_owned()
    };
    Ok(Credentials {
        username,
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: req.uri.to_owned(),
        response,
        algorithm,
        cnonce: qop.map(|_| req.cnonce.to_owned()),
        opaque: challenge.opaque.clone(),
        qop,
        nc: qop.map(|_| req.nc),
        userhash: challenge.userhash,
    })
}

/// A fresh client nonce: 128 bits from the operating system's random
/// number generator, as 32 hex digits.
pub fn generate_cnonce() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| AuthError::Random)?;
    Ok(hex::encode(bytes))
}

// ---------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

/// Label mixed into every nonce tag, so that a key shared with other uses
/// cannot produce valid nonces by accident.
const NONCE_LABEL: &[u8] = b"dialtone sip digest nonce v1\0";
const SALT_LABEL: &[u8] = b"dialtone sip digest salt v1\0";
const SALT_LEN: usize = 8;
const TAG_LEN: usize = 16;
const NONCE_BYTES: usize = 8 + SALT_LEN + TAG_LEN;

/// A nonce's identity for replay tracking, ordered by issue time.
type NonceKey = (u64, [u8; SALT_LEN]);

/// Recorded for a nonce used without `qop`: higher than any count, so no
/// later use of the nonce, with or without `qop`, gets through.
const USED_WITHOUT_QOP: u32 = u32::MAX;

/// The secret the caller holds for the user named in the credentials.
#[derive(Debug, Clone, Copy)]
pub enum Secret<'a> {
    /// The user's password.
    Password(&'a str),
    /// The precomputed [`ha1`] for the credentials' algorithm, username and
    /// realm, in lowercase hex.
    Ha1(&'a str),
}

/// The request whose credentials are being verified, as the server sees it.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// The realm the server challenged with.
    pub realm: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The Request-URI from the request line, compared byte for byte with
    /// the credentials' `uri`.
    pub uri: &'a str,
    /// The message body, needed when the client used `auth-int`.
    pub body: &'a [u8],
}

/// The result of checking credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The credentials are good: let the request through.
    Ok,
    /// The credentials were computed with the right secret but the nonce
    /// has expired, or this nonce count was already used: challenge again
    /// with `stale=true`.
    Stale,
    /// The credentials are wrong, for any reason: wrong password, unknown
    /// user, forged or foreign nonce, realm or URI mismatch. Challenge again
    /// (or reject) without saying why.
    Failed,
    /// The credentials are not well-formed Digest credentials: answer 400.
    Malformed,
}

/// The server side of digest authentication: issues self-validating
/// nonces and verifies credentials against them.
///
/// See the [module documentation](self) for the nonce format, expiry and
/// replay policy.
pub struct DigestServer {
    key: [u8; 32],
    lifetime: u64,
    capacity: usize,
    counter: AtomicU64,
    /// Answered nonces and the highest nonce count seen for each.
    seen: BTreeMap<NonceKey, u32>,
    /// The newest nonce evicted from `seen`. It and every older nonce are
    /// stale.
    floor: Option<NonceKey>,
}

impl fmt::Debug for DigestServer {
    /// Shows the configuration and the replay state, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("lifetime", &self.lifetime)
            .field("capacity", &self.capacity)
            .field("tracked", &self.seen.len())
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl DigestServer {
    /// A server keyed with `key`, which should be 32 random bytes kept
    /// secret. Keeping the same key across restarts keeps outstanding nonces
    /// valid.
    pub fn new(key: [u8; 32]) -> DigestServer {
        // The seed only keeps salts distinct across restarts with the same
        // key; if randomness is unavailable, the salts are still
        // unpredictable (they are keyed), only possibly repeated.
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            tracing::warn!("no randomness for the digest nonce salt seed");
        }
        DigestServer {
            key,
            lifetime: DEFAULT_NONCE_LIFETIME,
            capacity: DEFAULT_REPLAY_CAPACITY,
            counter: AtomicU64::new(u64::from_be_bytes(seed)),
            seen: BTreeMap::new(),
            floor: None,
        }
    }

    /// A server with a fresh random key.
    pub fn with_random_key() -> Result<DigestServer, AuthError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| AuthError::Random)?;
        Ok(DigestServer::new(key))
    }

    /// Sets how long nonces stay valid after issue, in seconds.
    pub fn with_nonce_lifetime(mut self, seconds: u64) -> DigestServer {
        self.lifetime = seconds;
        self
    }

    /// Sets how many answered nonces are tracked for replay protection (at
    /// least 1).
    pub fn with_replay_capacity(mut self, entries: usize) -> DigestServer {
        self.capacity = entries.max(1);
        self
    }

    /// How long nonces stay valid after issue, in seconds.
    pub fn nonce_lifetime(&self) -> u64 {
        self.lifetime
    }

    /// How many answered nonces are currently tracked.
    pub fn tracked_nonces(&self) -> usize {
        self.seen.len()
    }

    /// A new nonce for `realm` and `algorithm`, issued at `now` (unix
    /// seconds).
    pub fn issue_nonce(&self, realm: &str, algorithm: Algorithm, now: u64) -> String {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut mac = self.mac();
        mac.update(SALT_LABEL);
        mac.update(&count.to_be_bytes());
        let salt_full = mac.finalize().into_bytes();
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&salt_full[..SALT_LEN]);

        let tag = self.nonce_tag(now, &salt, realm, algorithm);
        let mut raw = Vec::with_capacity(NONCE_BYTES);
        raw.extend_from_slice(&now.to_be_bytes());
        raw.extend_from_slice(&salt);
        raw.extend_from_slice(&tag[..TAG_LEN]);
        hex::encode(raw)
    }

    /// A challenge for `realm` with a new nonce, offering `qop="auth"`.
    /// Pass `stale = true` when re-challenging after [`Outcome::Stale`].
    pub fn issue_challenge(
        &self,
        realm: &str,
        algorithm: Algorithm,
        stale: bool,
        now: u64,
    ) -> Challenge {
        Challenge {
            realm: realm.to_owned(),
            nonce: self.issue_nonce(realm, algorithm, now),
            opaque: None,
            algorithm,
            qop: vec![Qop::Auth],
            stale,
            domain: None,
            userhash: false,
        }
    }

    /// The `WWW-Authenticate` / `Proxy-Authenticate` header value of
    /// [`DigestServer::issue_challenge`].
    pub fn challenge(&self, realm: &str, algorithm: Algorithm, stale: bool, now: u64) -> String {
        self.issue_challenge(realm, algorithm, stale, now)
            .to_string()
    }

    /// Checks `creds` for the request described by `req` at `now` (unix
    /// seconds).
    ///
    /// `secret` is the secret of the user named in `creds.username`, or
    /// `None` when there is no such user. That case gives `Failed` after the
    /// same work as a wrong password. Credentials that did not parse are the
    /// caller's [`Outcome::Malformed`]. On `Ok` the nonce count is recorded,
    /// so the same `(nonce, nc)` is not accepted twice.
    pub fn verify(
        &mut self,
        creds: &Credentials,
        req: &VerifyRequest<'_>,
        secret: Option<Secret<'_>>,
        now: u64,
    ) -> Outcome {
        let algorithm = creds.algorithm;
        if check_qop(algorithm, creds.qop).is_err() || creds.userhash {
            return Outcome::Malformed;
        }
        let (qop_input, nc) = match (creds.qop, creds.cnonce.as_deref(), creds.nc) {
            (Some(qop), Some(cnonce), Some(nc)) => (Some((qop, format_nc(nc), cnonce)), Some(nc)),
            (Some(_), _, _) => return Outcome::Malformed,
            (None, _, _) => (None, None),
        };

        if creds.realm != req.realm || creds.uri != req.uri {
            return Outcome::Failed;
        }
        let Some(key) = self.check_nonce(&creds.nonce, req.realm, algorithm) else {
            return Outcome::Failed;
        };

        let plain_ha1 = match secret {
            Some(Secret::Password(password)) => {
                ha1(algorithm, &creds.username, req.realm, password)
            }
            Some(Secret::Ha1(h)) if h.len() == algorithm.hex_len() => h.to_ascii_lowercase(),
            // Unknown user or an HA1 for another algorithm: do the same work
            // against a secret that cannot match, then fail.
            Some(Secret::Ha1(_)) | None => ha1(algorithm, &creds.username, req.realm, ""),
        };
        let expected = response(
            algorithm,
            &plain_ha1,
            &ResponseInput {
                nonce: &creds.nonce,
                qop: qop_input.as_ref().map(|(q, nc, c)| (*q, nc.as_str(), *c)),
                method: req.method,
                uri: req.uri,
                body: req.body,
            },
        );
        let given = creds.response.to_ascii_lowercase();
        let matches = ct_eq(expected.as_bytes(), given.as_bytes());
        let known_secret = match secret {
            Some(Secret::Password(_)) => true,
            Some(Secret::Ha1(h)) => h.len() == algorithm.hex_len(),
            None => false,
        };
        if !(matches && known_secret) {
            return Outcome::Failed;
        }

        if now.saturating_sub(key.0) >= self.lifetime {
            return Outcome::Stale;
        }
        if self.floor.is_some_and(|floor| key <= floor) {
            return Outcome::Stale;
        }
        let count = nc.unwrap_or(USED_WITHOUT_QOP);
        match self.seen.get(&key) {
            Some(_) if nc.is_none() => return Outcome::Stale,
            Some(&highest) if count <= highest => return Outcome::Stale,
            None if count == 0 => return Outcome::Stale,
            _ => {}
        }
        self.record(key, count, now);
        Outcome::Ok
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }

    fn nonce_mac(
        &self,
        issued: u64,
        salt: &[u8; SALT_LEN],
        realm: &str,
        algorithm: Algorithm,
    ) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(NONCE_LABEL);
        mac.update(&issued.to_be_bytes());
        mac.update(salt);
        mac.update(&(realm.len() as u64).to_be_bytes());
        mac.update(realm.as_bytes());
        mac.update(algorithm.as_str().as_bytes());
        mac
    }

    fn nonce_tag(
        &self,
        issued: u64,
        salt: &[u8; SALT_LEN],
        realm: &str,
        algorithm: Algorithm,
    ) -> Vec<u8> {
        self.nonce_mac(issued, salt, realm, algorithm)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Decodes `nonce` and checks its tag for `realm` and `algorithm`.
    fn check_nonce(&self, nonce: &str, realm: &str, algorithm: Algorithm) -> Option<NonceKey> {
        if nonce.len() != 2 * NONCE_BYTES {
            return None;
        }
        let raw = hex::decode(nonce).ok()?;
        let issued = u64::from_be_bytes(raw[..8].try_into().ok()?);
        let salt: [u8; SALT_LEN] = raw[8..8 + SALT_LEN].try_into().ok()?;
        let tag = &raw[8 + SALT_LEN..];
        self.nonce_mac(issued, &salt, realm, algorithm)
            .verify_truncated_left(tag)
            .ok()?;
        Some((issued, salt))
    }

    /// Records `count` as the highest nonce count for `key`, making room
    /// first: expired entries go, then the oldest while the map is full.
    fn record(&mut self, key: NonceKey, count: u32, now: u64) {
        if let Some(highest) = self.seen.get_mut(&key) {
            *highest = count;
            return;
        }
        while let Some((&oldest, _)) = self.seen.first_key_value() {
            let expired = now.saturating_sub(oldest.0) >= self.lifetime;
            if !expired && self.seen.len() < self.capacity {
                break;
            }
            self.seen.pop_first();
            if self.floor.is_none_or(|floor| oldest > floor) {
                self.floor = Some(oldest);
            }
        }
        self.seen.insert(key, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const T0: u64 = 1_700_000_000;

    fn req<'a>(realm: &'a str, method: &'a str, uri: &'a str, body: &'a [u8]) -> VerifyRequest<'a> {
        VerifyRequest {
            realm,
            method,
            uri,
            body,
        }
    }

    /// The client side of a REGISTER for alice at `example.com`.
    fn client<'a>(password: &'a str, nc: u32) -> ClientRequest<'a> {
        ClientRequest {
            username: "alice",
            password,
            method: "REGISTER",
            uri: "sip:example.com",
            body: b"",
            cnonce: "0a4f113b",
            nc,
        }
    }

    const REGISTER: VerifyRequest<'static> = VerifyRequest {
        realm: "example.com",
        method: "REGISTER",
        uri: "sip:example.com",
        body: b"",
    };

    fn answer(
        server: &DigestServer,
        alg: Algorithm,
        now: u64,
        c: &ClientRequest<'_>,
    ) -> Credentials {
        let challenge =
            Challenge::parse(&server.challenge("example.com", alg, false, now)).unwrap();
        // Through the header text and back, as on the wire.
        Credentials::parse(&respond(&challenge, c).unwrap().to_string()).unwrap()
    }

    // --- Published examples -------------------------------------------------

    const RFC7616_CHALLENGE_MD5: &str = "Digest\n    realm=\"http-auth@example.org\",\n    qop=\"auth, auth-int\",\n    algorithm=MD5,\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    fn rfc7616_request() -> ClientRequest<'static> {
        ClientRequest {
            username: "Mufasa",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            body: b"",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        }
    }

    #[test]
    fn rfc7616_section_3_9_1_md5_and_sha256() {
        // The RFC's header is folded across lines; a message parser unfolds
        // it to spaces before it gets here.
        let unfolded = RFC7616_CHALLENGE_MD5.replace("\n", " ");
        let md5 = Challenge::parse(&unfolded).unwrap();
        assert_eq!(md5.realm, "http-auth@example.org");
        assert_eq!(md5.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert_eq!(md5.algorithm, Algorithm::Md5);
        let creds = respond(&md5, &rfc7616_request()).unwrap();
        assert_eq!(creds.response, "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(creds.qop, Some(Qop::Auth));
        assert_eq!(creds.nc, Some(1));
        assert_eq!(
            creds.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        let text = creds.to_string();
        assert!(text.contains("nc=00000001"), "{text}");
        assert!(text.contains("qop=auth,"), "{text}");
        assert_eq!(Credentials::parse(&text).unwrap(), creds);

        let sha =
            Challenge::parse(&unfolded.replace("algorithm=MD5", "algorithm=SHA-256")).unwrap();
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        let creds = respond(&sha, &rfc7616_request()).unwrap();
        assert_eq!(
            creds.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn sha512_256_is_the_fips_function_not_truncated_sha512() {
        // FIPS 180-4 example "abc" for SHA-512/256.
        assert_eq!(
            Algorithm::Sha512_256.hex_digest(b"abc"),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
    }

    /// Lowercase hex of the first 256 bits of SHA-512 over `parts` joined by `:`.
    fn truncated_sha512(parts: &[&[u8]]) -> String {
        let full = joined_digest::<sha2::Sha512>(parts);
        full[..64].to_owned()
    }

    #[test]
    fn rfc7616_section_3_9_2_sha512_256_userhash() {
        let username = "J\u{e4}s\u{f8}n Doe";
        let realm = "api@example.org";
        let nonce = "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK";
        let cnonce = "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v";
        let challenge = Challenge::parse(&format!(
            "Digest realm=\"{realm}\", qop=\"auth\", algorithm=SHA-512-256, \
             nonce=\"{nonce}\", opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\", \
             charset=UTF-8, userhash=true"
        ))
        .unwrap();
        assert!(challenge.userhash);
        let request = ClientRequest {
            username,
            password: "Secret, or not?",
            method: "GET",
            uri: "/doe.json",
            body: b"",
            cnonce,
            nc: 1,
        };
        let creds = respond(&challenge, &request).unwrap();
        assert!(creds.userhash);
        assert!(creds.to_string().contains("userhash=true"));

        // The RFC's published values were computed with SHA-512 truncated to
        // 256 bits, not with SHA-512/256 as its section 3.2 specifies (a
        // known flaw in the example). The same computation with that hash
        // reproduces both published values exactly, which confirms that
        // A1 uses the plain username and only the `username` parameter is
        // hashed...
        let input = ResponseInput {
            nonce,
            qop: Some((Qop::Auth, "00000001", cnonce)),
            method: "GET",
            uri: "/doe.json",
            body: b"",
        };
        let rfc_ha1 =
            truncated_sha512(&[username.as_bytes(), realm.as_bytes(), b"Secret, or not?"]);
        assert_eq!(
            response_with(&truncated_sha512, false, &rfc_ha1, &input),
            "ae66e67d6b427bd3f120414a82e4acff38e8ecd9101d6c861229025f607a79dd"
        );
        assert_eq!(
            truncated_sha512(&[username.as_bytes(), realm.as_bytes()]),
            "488869477bf257147b804c45308cd62ac4e25eb717b12b298c79e62dcea254ec"
        );

        // ...and with the real SHA-512/256, the client gives these values,
        // cross-checked against OpenSSL's sha512-256.
        assert_eq!(
            creds.response,
            "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
        );
        assert_eq!(
            creds.username,
            "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
        );
        assert_eq!(
            creds.username,
            userhash(Algorithm::Sha512_256, username, realm)
        );
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let value = "Digest username=\"Mufasa\",\n                 realm=\"testrealm@host.com\",\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\n                 uri=\"/dir/index.html\",\n                 qop=auth,\n                 nc=00000001,\n                 cnonce=\"0a4f113b\",\n                 response=\"6629fae49393a05397450978507c4ef1\",\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let creds = Credentials::parse(&value.replace("\n", " ")).unwrap();
        assert_eq!(creds.username, "Mufasa");
        assert_eq!(creds.algorithm, Algorithm::Md5);
        assert_eq!(creds.qop, Some(Qop::Auth));
        assert_eq!(creds.nc, Some(1));
        let expected = response(
            Algorithm::Md5,
            &ha1(
                Algorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life",
            ),
            &ResponseInput {
                nonce: &creds.nonce,
                qop: Some((Qop::Auth, "00000001", "0a4f113b")),
                method: "GET",
                uri: &creds.uri,
                body: b"",
            },
        );
        assert_eq!(expected, "6629fae49393a05397450978507c4ef1");
        assert_eq!(expected, creds.response);

        let challenge = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let mut request = rfc7616_request();
        request.password = "Circle Of Life";
        request.cnonce = "0a4f113b";
        assert_eq!(
            respond(&challenge, &request).unwrap().response,
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc2069_without_qop() {
        // Same inputs as RFC 2617 section 3.5 without qop; the expected
        // value was computed independently with Python's hashlib.
        let challenge = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        )
        .unwrap();
        assert!(challenge.qop.is_empty());
        let mut request = rfc7616_request();
        request.password = "Circle Of Life";
        let creds = respond(&challenge, &request).unwrap();
        assert_eq!(creds.response, "670fd8c2df070c60b045671b8b24ff02");
        assert_eq!(
            (creds.qop, creds.nc, creds.cnonce.as_deref()),
            (None, None, None)
        );
        let text = creds.to_string();
        assert!(!text.contains("nc=") && !text.contains("cnonce") && !text.contains("qop"));

        // Other algorithms need qop.
        let sha = Challenge {
            algorithm: Algorithm::Sha256,
            ..challenge
        };
        assert_eq!(
            respond(&sha, &request),
            Err(AuthError::QopRequired(Algorithm::Sha256))
        );
    }

    // --- Server round trips --------------------------------------------------

    #[test]
    fn round_trip_every_algorithm() {
        let mut server = DigestServer::new(KEY);
        for alg in Algorithm::ALL {
            let creds = answer(&server, alg, T0, &client("secret", 1));
            assert_eq!(creds.algorithm, alg);
            assert_eq!(creds.response.len(), alg.hex_len());
            assert_eq!(
                server.verify(&creds, &REGISTER, Some(Secret::Password("secret")), T0 + 1),
                Outcome::Ok,
                "{alg}"
            );
        }
    }

    #[test]
    fn challenge_header_offers_auth() {
        let server = DigestServer::new(KEY);
        let value = server.challenge("example.com", Algorithm::Sha256, false, T0);
        assert!(value.starts_with("Digest realm=\"example.com\""), "{value}");
        assert!(value.contains("qop=\"auth\""), "{value}");
        assert!(value.contains("algorithm=SHA-256"), "{value}");
        assert!(!value.contains("stale"), "{value}");
        let stale = server.challenge("example.com", Algorithm::Sha256, true, T0);
        assert!(stale.contains("stale=TRUE"), "{stale}");
        let parsed = Challenge::parse(&stale).unwrap();
        assert!(parsed.stale);
        assert_eq!(parsed.nonce.len(), 64);
        // Every nonce is new.
        assert_ne!(
            server.issue_nonce("example.com", Algorithm::Md5, T0),
            server.issue_nonce("example.com", Algorithm::Md5, T0)
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_fail() {
        let mut server = DigestServer::new(KEY);
        let creds = answer(&server, Algorithm::Sha256, T0, &client("guess", 1));
        assert_eq!(
            server.verify(&creds, &REGISTER, Some(Secret::Password("secret")), T0),
            Outcome::Failed
        );
        assert_eq!(server.verify(&creds, &REGISTER, None, T0), Outcome::Failed);
        // Even an expired nonce does not reveal a wrong password as Stale.
        assert_eq!(
            server.verify(
                &creds,
                &REGISTER,
                Some(Secret::Password("secret")),
                T0 + 10_000
            ),
            Outcome::Failed
        );
        // A failed attempt does not burn the nonce count for the real user.
        let good = answer(&server, Algorithm::Sha256, T0, &client("secret", 1));
        assert_eq!(
            server.verify(&good, &REGISTER, Some(Secret::Password("secret")), T0),
            Outcome::Ok
        );
    }

    #[test]
    fn precomputed_ha1() {
        let mut server = DigestServer::new(KEY);
        for alg in [Algorithm::Md5, Algorithm::Sha256Sess] {
            let stored = ha1(alg, "alice", "example.com", "secret");
            let creds = answer(&server, alg, T0, &client("secret", 1));
            assert_eq!(
                server.verify(&creds, &REGISTER, Some(Secret::Ha1(&stored)), T0),
                Outcome::Ok
            );
        }
        // An HA1 for another algorithm never matches.
        let md5_ha1 = ha1(Algorithm::Md5, "alice", "example.com", "secret");
        let creds = answer(&server, Algorithm::Sha256, T0, &client("secret", 1));
        assert_eq!(
            server.verify(&creds, &REGISTER, Some(Secret::Ha1(&md5_ha1)), T0),
            Outcome::Failed
        );
    }

    #[test]
    fn garbled_unknown_and_foreign_nonces_fail() {
        let mut server = DigestServer::new(KEY);
        let good = answer(&server, Algorithm::Md5, T0, &client("secret", 1));
        let secret = Some(Secret::Password("secret"));
        let not_hex = "g".repeat(64);
        for nonce in ["", "zzzz", "dcd98b7102dd2f0e8b11d0f600bfb0c093", &not_hex] {
            // Recompute the response for the bad nonce so only the nonce is wrong.
            let challenge = Challenge {
                realm: "example.com".into(),
                nonce: nonce.into(),
                opaque: None,
                algorithm: Algorithm::Md5,
                qop: vec![Qop::Auth],
                stale: false,
                domain: None,
                userhash: false,
            };
            let creds = respond(&challenge, &client("secret", 1)).unwrap();
            assert_eq!(
                server.verify(&creds, &REGISTER, secret, T0),
                Outcome::Failed,
                "{nonce:?}"
            );
        }
        // A nonce from a server with another key.
        let other = DigestServer::new([8; 32]);
        let foreign = answer(&other, Algorithm::Md5, T0, &client("secret", 1));
        assert_eq!(
            server.verify(&foreign, &REGISTER, secret, T0),
            Outcome::Failed
        );
        // The genuine one still works.
        assert_eq!(server.verify(&good, &REGISTER, secret, T0), Outcome::Ok);
    }

    #[test]
    fn forged_timestamp_fails() {
        let mut server = DigestServer::new(KEY);
        let challenge =
            Challenge::parse(&server.challenge("example.com", Algorithm::Sha256, false, T0))
                .unwrap();
        // Push the issue time forward by one second to extend the lifetime.
        let mut raw = hex::decode(&challenge.nonce).unwrap();
        raw[7] = raw[7].wrapping_add(1);
        let forged = Challenge {
            nonce: hex::encode(raw),
            ..challenge
        };
        let creds = respond(&forged, &client("secret", 1)).unwrap();
        assert_eq!(
            server.verify(&creds, &REGISTER, Some(Secret::Password("secret")), T0),
            Outcome::Failed
        );
    }

    #[test]
    fn expiry_gives_stale() {
        let mut server = DigestServer::new(KEY).with_nonce_lifetime(60);
        assert_eq!(server.nonce_lifetime(), 60);
        assert_eq!(DigestServer::new(KEY).nonce_lifetime(), 300);
        let secret = Some(Secret::Password("secret"));
        let creds = answer(&server, Algorithm::Sha256, T0, &client("secret", 1));
        assert_eq!(
            server.verify(&creds, &REGISTER, secret, T0 + 60),
            Outcome::Stale
        );
        assert_eq!(
            server.verify(&creds, &REGISTER, secret, T0 + 59),
            Outcome::Ok
        );
        let later = answer(&server, Algorithm::Sha256, T0, &client("secret", 2));
        assert_eq!(
            server.verify(&later, &REGISTER, secret, T0 + 3600),
            Outcome::Stale
        );
    }

    #[test]
    fn nonce_counts_must_increase() {
        let mut server = DigestServer::new(KEY);
        let secret = Some(Secret::Password("secret"));
        let challenge =
            Challenge::parse(&server.challenge("example.com", Algorithm::Sha256, false, T0))
                .unwrap();
        let with_nc = |nc| respond(&challenge, &client("secret", nc)).unwrap();
        let mut check = |nc| server.verify(&with_nc(nc), &REGISTER, secret, T0 + 1);
        assert_eq!(check(0), Outcome::Stale, "counting starts at 1");
        assert_eq!(check(1), Outcome::Ok);
        assert_eq!(check(1), Outcome::Stale, "replay");
        assert_eq!(check(2), Outcome::Ok);
        assert_eq!(check(5), Outcome::Ok, "gaps are allowed");
        assert_eq!(check(3), Outcome::Stale, "going back is a replay");
        assert_eq!(check(5), Outcome::Stale);
        assert_eq!(check(6), Outcome::Ok);
        assert_eq!(server.tracked_nonces(), 1);
    }

    #[test]
    fn without_qop_a_nonce_is_single_use() {
        let mut server = DigestServer::new(KEY);
        let secret = Some(Secret::Password("secret"));
        let mut challenge =
            Challenge::parse(&server.challenge("example.com", Algorithm::Md5, false, T0)).unwrap();
        challenge.qop.clear();
        let creds = respond(&challenge, &client("secret", 1)).unwrap();
        assert_eq!(creds.qop, None);
        assert_eq!(server.verify(&creds, &REGISTER, secret, T0), Outcome::Ok);
        assert_eq!(server.verify(&creds, &REGISTER, secret, T0), Outcome::Stale);
        // Nor can it be used again with qop.
        challenge.qop = vec![Qop::Auth];
        let creds = respond(&challenge, &client("secret", 7)).unwrap();
        assert_eq!(server.verify(&creds, &REGISTER, secret, T0), Outcome::Stale);
    }

    #[test]
    fn realm_uri_and_algorithm_must_match() {
        let mut server = DigestServer::new(KEY);
        let secret = Some(Secret::Password("secret"));
        let creds = answer(&server, Algorithm::Sha256, T0, &client("secret", 1));

        let other_realm = req("other.example.com", "REGISTER", "sip:example.com", b"");
        assert_eq!(
            server.verify(&creds, &other_realm, secret, T0),
            Outcome::Failed
        );
        let other_uri = req("example.com", "REGISTER", "sip:EXAMPLE.com", b"");
        assert_eq!(
            server.verify(&creds, &other_uri, secret, T0),
            Outcome::Failed
        );
        let other_method = req("example.com", "INVITE", "sip:example.com", b"");
        assert_eq!(
            server.verify(&creds, &other_method, secret, T0),
            Outcome::Failed
        );

        // A consistent answer for another realm with our nonce: the nonce is
        // bound to the realm it was issued for.
        let challenge =
            Challenge::parse(&server.challenge("example.com", Algorithm::Sha256, false, T0))
                .unwrap();
        let moved = Challenge {
            realm: "other.example.com".into(),
            ..challenge.clone()
        };
        let creds = respond(&moved, &client("secret", 1)).unwrap();
        assert_eq!(
            server.verify(&creds, &other_realm, secret, T0),
            Outcome::Failed
        );

        // Downgrade: answering a SHA-256 challenge with MD5 and its nonce.
        let downgraded = Challenge {
            algorithm: Algorithm::Md5,
            ..challenge.clone()
        };
        let creds = respond(&downgraded, &client("secret", 1)).unwrap();
        assert_eq!(
            server.verify(&creds, &REGISTER, secret, T0),
            Outcome::Failed
        );

        // The untouched challenge still works after all that.
        let creds = respond(&challenge, &client("secret", 1)).unwrap();
        assert_eq!(server.verify(&creds, &REGISTER, secret, T0), Outcome::Ok);
    }

    #[test]
    fn auth_int_covers_the_body() {
        let mut server = DigestServer::new(KEY);
        let secret = Some(Secret::Password("secret"));
        let mut challenge =
            Challenge::parse(&server.challenge("example.com", Algorithm::Sha256, false, T0))
                .unwrap();
        challenge.qop = vec![Qop::AuthInt];
        let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";
        let c = ClientRequest {
            method: "INVITE",
            uri: "sip:bob@example.com",
            body: sdp,
            ..client("secret", 1)
        };
        let creds = respond(&challenge, &c).unwrap();
        assert_eq!(creds.qop, Some(Qop::AuthInt));
        assert!(creds.to_string().contains("qop=auth-int"));

        // The expected value by the RFC formula: H(method:uri:H(body)).
        let ha1 = ha1(Algorithm::Sha256, "alice", "example.com", "secret");
        let body_hash = Algorithm::Sha256.hex_digest(sdp);
        let ha2 = Algorithm::Sha256
            .hex_digest(format!("INVITE:sip:bob@example.com:{body_hash}").as_bytes());
        let expected = Algorithm::Sha256.hex_digest(
            format!("{ha1}:{}:00000001:0a4f113b:auth-int:{ha2}", challenge.nonce).as_bytes(),
        );
        assert_eq!(creds.response, expected);

        let tampered = req("example.com", "INVITE", "sip:bob@example.com", b"v=0\r\n");
        assert_eq!(
            server.verify(&creds, &tampered, secret, T0),
            Outcome::Failed
        );
        let genuine = req("example.com", "INVITE", "sip:bob@example.com", sdp);
        assert_eq!(server.verify(&creds, &genuine, secret, T0), Outcome::Ok);

        // With both offered, the client prefers auth.
        challenge.qop = vec![Qop::AuthInt, Qop::Auth];
        assert_eq!(respond(&challenge, &c).unwrap().qop, Some(Qop::Auth));
    }

    #[test]
    fn replay_map_is_bounded_and_stays_safe() {
        let mut server = DigestServer::new(KEY).with_replay_capacity(3);
        let secret = Some(Secret::Password("secret"));
        let challenges: Vec<Challenge> = (0..5)
            .map(|i| {
                Challenge::parse(&server.challenge("example.com", Algorithm::Sha256, false, T0 + i))
                    .unwrap()
            })
            .collect();
        for ch in &challenges[1..] {
            let creds = respond(ch, &client("secret", 1)).unwrap();
            assert_eq!(
                server.verify(&creds, &REGISTER, secret, T0 + 10),
                Outcome::Ok
            );
            assert!(server.tracked_nonces() <= 3);
        }
        assert_eq!(server.tracked_nonces(), 3);
        // challenges[1] was evicted: replaying it, or even first use of the
        // older challenges[0], is stale rather than accepted.
        for ch in &challenges[..2] {
            let creds = respond(ch, &client("secret", 1)).unwrap();
            assert_eq!(
                server.verify(&creds, &REGISTER, secret, T0 + 10),
                Outcome::Stale
            );
        }
        // The tracked ones still count.
        let creds = respond(&challenges[4], &client("secret", 1)).unwrap();
        assert_eq!(
            server.verify(&creds, &REGISTER, secret, T0 + 10),
            Outcome::Stale
        );
        let creds = respond(&challenges[4], &client("secret", 2)).unwrap();
        assert_eq!(
            server.verify(&creds, &REGISTER, secret, T0 + 10),
            Outcome::Ok
        );

        // Expired entries are dropped when a new nonce is recorded.
        let late = T0 + 1000;
        let creds = answer(&server, Algorithm::Sha256, late, &client("secret", 1));
        assert_eq!(server.verify(&creds, &REGISTER, secret, late), Outcome::Ok);
        assert_eq!(server.tracked_nonces(), 1);
    }

    #[test]
    fn server_rejects_malformed_credentials() {
        let mut server = DigestServer::new(KEY);
        let secret = Some(Secret::Password("secret"));
        let good = answer(&server, Algorithm::Sha256, T0, &client("secret", 1));
        let no_qop = Credentials {
            qop: None,
            ..good.clone()
        };
        assert_eq!(
            server.verify(&no_qop, &REGISTER, secret, T0),
            Outcome::Malformed
        );
        let no_cnonce = Credentials {
            cnonce: None,
            ..good.clone()
        };
        assert_eq!(
            server.verify(&no_cnonce, &REGISTER, secret, T0),
            Outcome::Malformed
        );
        let hashed = Credentials {
            userhash: true,
            ..good.clone()
        };
        assert_eq!(
            server.verify(&hashed, &REGISTER, secret, T0),
            Outcome::Malformed
        );
        // Uppercase hex in the response is the same digest.
        let upper = Credentials {
            response: good.response.to_ascii_uppercase(),
            ..good
        };
        assert_eq!(server.verify(&upper, &REGISTER, secret, T0), Outcome::Ok);
    }

    // --- Parsing -------------------------------------------------------------

    #[test]
    fn parses_tricky_challenges() {
        let ch = Challenge::parse(
            "  dIgEsT   REALM = \"a \\\"quoted\\\" realm, with commas\" ,, \
             Nonce=abc/def+==,QOP=\"auth-conf , AUTH ,auth-int\",\tStale=true, \
             unknown=\"x, y=z\", other=token, Algorithm=sha-256-SESS, opaque=\"\\\\back\\slash\"",
        )
        .unwrap();
        assert_eq!(ch.realm, "a \"quoted\" realm, with commas");
        assert_eq!(ch.nonce, "abc/def+==");
        assert_eq!(ch.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert!(ch.stale);
        assert_eq!(ch.algorithm, Algorithm::Sha256Sess);
        assert_eq!(ch.opaque.as_deref(), Some("\\backslash"));
        assert_eq!(ch.domain, None);
        assert!(!ch.userhash);
        // Formatting escapes again and parses back to the same thing.
        let text = ch.to_string();
        assert!(
            text.contains(r#"realm="a \"quoted\" realm, with commas""#),
            "{text}"
        );
        assert_eq!(Challenge::parse(&text).unwrap(), ch);

        let minimal = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert_eq!(minimal.algorithm, Algorithm::Md5);
        assert!(minimal.qop.is_empty());
        assert!(!minimal.stale);
        assert_eq!(
            "Digest realm=\"r\", nonce=\"n\", stale=false, domain=\"sip:a sip:b\""
                .parse::<Challenge>()
                .unwrap()
                .domain
                .as_deref(),
            Some("sip:a sip:b")
        );
    }

    #[test]
    fn parses_tricky_credentials() {
        let creds = Credentials::parse(
            "Digest USERNAME=\"bob \\\"the builder\\\"\",realm=\"example.com\",  nonce=\"n,1\", \
             uri=\"sip:bob@example.com;transport=tcp\", Response=\"ABCDEF\", qop=\"Auth\", \
             NC=0000001a, cnonce=\"c\\\\n\", algorithm=MD5-sess, foo=bar, userhash=FALSE",
        )
        .unwrap();
        assert_eq!(creds.username, "bob \"the builder\"");
        assert_eq!(creds.nonce, "n,1");
        assert_eq!(creds.uri, "sip:bob@example.com;transport=tcp");
        assert_eq!(creds.response, "ABCDEF");
        assert_eq!(creds.qop, Some(Qop::Auth));
        assert_eq!(creds.nc, Some(26));
        assert_eq!(creds.cnonce.as_deref(), Some("c\\n"));
        assert_eq!(creds.algorithm, Algorithm::Md5Sess);
        assert!(!creds.userhash);
        assert_eq!(Credentials::parse(&creds.to_string()).unwrap(), creds);
    }

    #[test]
    fn formatting_cannot_break_the_header_line() {
        let creds = Credentials {
            username: "eve\r\nVia: evil".into(),
            realm: "r".into(),
            nonce: "n".into(),
            uri: "sip:r".into(),
            response: "00".into(),
            algorithm: Algorithm::Md5,
            cnonce: None,
            opaque: None,
            qop: None,
            nc: None,
            userhash: false,
        };
        let text = creds.to_string();
        assert!(!text.contains('\r') && !text.contains('\n'), "{text}");
        assert_eq!(Credentials::parse(&text).unwrap().username, "eveVia: evil");
    }

    #[test]
    fn malformed_values_are_errors() {
        use AuthError::*;
        type Check = fn(&AuthError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| *e == NotDigest),
            ("Basic realm=\"x\"", |e| *e == NotDigest),
            ("Digestrealm=\"x\", nonce=\"n\"", |e| *e == NotDigest),
            ("Digest", |e| *e == MissingParam("realm")),
            ("Digest realm=\"x\"", |e| *e == MissingParam("nonce")),
            ("Digest realm=\"x, nonce=\"n\"", |e| {
                matches!(e, Syntax { .. })
            }),
            ("Digest realm=\"x\\", |e| matches!(e, Syntax { .. })),
            ("Digest realm", |e| matches!(e, Syntax { .. })),
            ("Digest realm=, nonce=n", |e| matches!(e, Syntax { .. })),
            ("Digest realm=\"x\" nonce=\"n\"", |e| {
                matches!(e, Syntax { .. })
            }),
            ("Digest realm=x y, nonce=n", |e| matches!(e, Syntax { .. })),
            ("Digest =x, nonce=n", |e| matches!(e, Syntax { .. })),
            ("Digest realm=\"a\rb\", nonce=n", |e| {
                matches!(e, Syntax { .. })
            }),
            ("Digest realm=\"a\", nonce=n, REALM=b", |e| {
                *e == DuplicateParam("realm".into())
            }),
            ("Digest realm=x, nonce=n, algorithm=SHA-1", |e| {
                *e == UnsupportedAlgorithm("SHA-1".into())
            }),
            ("Digest realm=x, nonce=n, qop=\"auth-conf\"", |e| {
                matches!(e, UnsupportedQop(_))
            }),
            ("Digest realm=x, nonce=n, stale=maybe", |e| {
                *e == InvalidParam("stale")
            }),
        ];
        for (value, check) in cases {
            let err = Challenge::parse(value).expect_err(value);
            assert!(check(&err), "{value:?} gave {err:?}");
        }

        let base = "Digest username=u, realm=r, nonce=n, uri=\"sip:r\", response=\"00\"";
        assert!(Credentials::parse(base).is_ok());
        let cred_cases: &[(&str, AuthError)] = &[
            (
                "Digest realm=r, nonce=n, uri=u, response=x",
                MissingParam("username"),
            ),
            (
                "Digest username=u, realm=r, nonce=n, response=x",
                MissingParam("uri"),
            ),
            (
                "Digest username=u, realm=r, nonce=n, uri=u",
                MissingParam("response"),
            ),
            (", qop=auth, nc=00000001", MissingParam("cnonce")),
            (", qop=auth, cnonce=c", MissingParam("nc")),
            (", qop=auth, cnonce=c, nc=1", InvalidParam("nc")),
            (", qop=auth, cnonce=c, nc=0000000A", InvalidParam("nc")),
            (", qop=auth, cnonce=c, nc=00000001f", InvalidParam("nc")),
            (", qop=auth, cnonce=c, nc=+0000001", InvalidParam("nc")),
            (
                ", qop=auth-conf, cnonce=c, nc=00000001",
                UnsupportedQop("auth-conf".into()),
            ),
            (", algorithm=SHA-256", QopRequired(Algorithm::Sha256)),
            (", algorithm=MD5-sess", QopRequired(Algorithm::Md5Sess)),
            (", userhash=yes", InvalidParam("userhash")),
        ];
        for (value, expected) in cred_cases {
            let value = if value.starts_with(',') {
                format!("{base}{value}")
            } else {
                value.to_string()
            };
            assert_eq!(
                Credentials::parse(&value).as_ref(),
                Err(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn parser_never_panics() {
        let valid = "Digest username=\"M\u{e4}\\\"x\", realm=\"r,r\", nonce=n, uri=\"sip:a\", \
                     response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"";
        for (i, _) in valid.char_indices() {
            let _ = Credentials::parse(&valid[..i]);
            let _ = Challenge::parse(&valid[..i]);
        }
        // Pseudo-random mutations drawn from the characters that matter.
        let alphabet: Vec<char> = "Digest=\",\\ \tanrq\u{e4}\r\n\0".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let _ = Credentials::parse(&s);
            let _ = Challenge::parse(&format!("Digest {s}"));
        }
    }

    #[test]
    fn random_helpers() {
        let debug = format!("{:?}", DigestServer::new([0xab; 32]));
        assert!(
            !debug.contains("171") && !debug.contains("ab, ab"),
            "{debug}"
        );
        let a = generate_cnonce().unwrap();
        let b = generate_cnonce().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let mut server = DigestServer::with_random_key().unwrap();
        let creds = answer(&server, Algorithm::Md5, T0, &client("secret", 1));
        assert_eq!(
            server.verify(&creds, &REGISTER, Some(Secret::Password("secret")), T0),
            Outcome::Ok
        );
    }
}
