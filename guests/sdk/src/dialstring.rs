//! Building dialstrings that caller input cannot rewrite.
//!
//! The grammar is FreeSWITCH's (see `runtime/core/src/dialstring.rs` for the
//! host's parser):
//!
//! ```text
//! dialstring := ult* STD (":_:" STD)*        ; enterprise branches
//! STD        := glob* group ("|" group)*     ; failover groups
//! group      := leg ("," leg)*               ; rung at the same time
//! leg        := local* endpoint "/" data
//! ult := "<" vlist ">"   glob := "{" vlist "}"   local := "[" vlist "]"
//! ```
//!
//! The host lexes it like `switch_separate_string`: `\x` is a literal `x` and
//! `'...'` protects delimiters. So this builder writes the syntax itself
//! (`{`, `[`, `=`, `,`, `|`, `:_:`, the `/` after the endpoint and between the
//! fixed parts of a leg's data) and passes everything a caller supplied —
//! leg data parts, variable names and values — through [`escape`], which puts
//! a backslash before each of `\ ' , | [ ] { } < > ^ $ : /`, and also before
//! `=` and whitespace, exactly like the host's own `dialstring::escape`: `=`
//! so a variable *name* cannot end early, whitespace so the parser's trimming
//! of names, values and legs cannot eat it. The host removes those
//! backslashes when it splits the leg, so the endpoint receives exactly the
//! text that went in. (`$` is escaped too, so caller text is never expanded
//! as `${var}` or `${helper(...)}`.)
//!
//! The one way to put unescaped syntax in a dialstring is [`Leg::raw`], for
//! text the dialplan itself wrote or trusts (a `${sofia_contact(...)}` call, a
//! fragment a contact helper returned).

use alloc::borrow::{Cow, ToOwned};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The grammar characters [`escape`] puts a backslash before (it also
/// escapes every whitespace character).
pub const SPECIAL: [char; 15] = [
    '\\', '\'', ',', '|', '[', ']', '{', '}', '<', '>', '^', '$', '=', ':', '/',
];

/// [`SPECIAL`] and ASCII whitespace (as `char::is_whitespace` has it:
/// tab, line feed, vertical tab, form feed, carriage return, space), by
/// ASCII code.
const ASCII_ESCAPED: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < SPECIAL.len() {
        t[SPECIAL[i] as usize] = true;
        i += 1;
    }
    let mut w = 0x09;
    while w <= 0x0d {
        t[w] = true;
        w += 1;
    }
    t[b' ' as usize] = true;
    t
};

/// Whether [`escape`] puts a backslash before `c`.
pub fn needs_escape(c: char) -> bool {
    if c.is_ascii() {
        ASCII_ESCAPED[c as usize]
    } else {
        c.is_whitespace()
    }
}

/// Escape caller-supplied text for use inside a dialstring: a backslash
/// before each character of [`SPECIAL`] and each whitespace character, the
/// same set as the host's `dialstring::escape`. Text without any of them is
/// returned as is, without allocating.
///
/// ```
/// assert_eq!(dialtone_sdk::escape("1000@example.com"), "1000@example.com");
/// assert_eq!(dialtone_sdk::escape("a,b|c d"), r"a\,b\|c\ d");
/// ```
pub fn escape(text: &str) -> Cow<'_, str> {
    if text.contains(needs_escape) {
        let mut out = String::with_capacity(text.len() + 8);
        escape_into(&mut out, text);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Append `text` to `out`, escaped like [`escape`]: runs of plain text are
/// copied whole.
fn escape_into(out: &mut String, text: &str) {
    out.reserve(text.len());
    let mut run = 0;
    for (i, c) in text.char_indices() {
        if needs_escape(c) {
            out.push_str(&text[run..i]);
            out.push('\\');
            run = i;
        }
    }
    out.push_str(&text[run..]);
}

/// Write one `name=value` pair.
fn write_var(out: &mut String, name: &str, value: &str) {
    escape_into(out, name);
    out.push('=');
    escape_into(out, value);
}

/// Write a variable block `open vars close`, nothing if there are none.
fn write_vars(out: &mut String, vars: &[(String, String)], open: char, close: char) {
    if vars.is_empty() {
        return;
    }
    out.push(open);
    for (i, (name, value)) in vars.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_var(out, name, value);
    }
    out.push(close);
}

/// Why a dialstring part was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialstringError {
    /// An endpoint name that is not a plain identifier (`[a-z0-9._]+`).
    InvalidEndpoint(String),
}

impl fmt::Display for DialstringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialstringError::InvalidEndpoint(name) => {
                write!(f, "invalid endpoint name {name:?}: expected [a-z0-9._]+")
            }
        }
    }
}

impl core::error::Error for DialstringError {}

/// Whether `name` is a plain endpoint identifier: `[a-z0-9._]+`.
fn is_endpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
}

/// One leg of a dialstring: `[vars]endpoint/data`.
///
/// Constructors escape every argument; the `/` separators they write
/// themselves are not escaped. Add per-leg (`[...]`) variables with
/// [`Leg::var`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// `[...]` variables, unescaped.
    vars: Vec<(String, String)>,
    /// `endpoint/data`, already escaped (or raw, for [`Leg::raw`]).
    body: String,
}

impl Leg {
    /// `endpoint/` followed by each part escaped, separated by unescaped `/`.
    pub(crate) fn build(
        endpoint: &str,
        prefix: &str,
        parts: &[&str],
        suffix_sep: Option<(&str, &str)>,
    ) -> Leg {
        let mut body = String::with_capacity(
            endpoint.len() + prefix.len() + parts.iter().map(|p| p.len() + 2).sum::<usize>(),
        );
        body.push_str(endpoint);
        body.push('/');
        body.push_str(prefix);
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                body.push('/');
            }
            escape_into(&mut body, part);
        }
        if let Some((sep, tail)) = suffix_sep {
            body.push_str(sep);
            escape_into(&mut body, tail);
        }
        Leg {
            vars: Vec::new(),
            body,
        }
    }

    /// A leg to any endpoint: `endpoint/data`, with `data` escaped.
    ///
    /// `endpoint` must be a plain identifier (`[a-z0-9._]+`, e.g. `sofia`,
    /// `verto.rtc`); anything else is an error, since it would be written
    /// unescaped.
    ///
    /// ```
    /// use dialtone_sdk::Leg;
    /// assert_eq!(Leg::new("pickup", "ext1@x")?.to_string(), "pickup/ext1@x");
    /// assert!(Leg::new("user/1000,sofia", "x").is_err());
    /// # Ok::<(), dialtone_sdk::DialstringError>(())
    /// ```
    pub fn new(endpoint: &str, data: &str) -> Result<Leg, DialstringError> {
        if !is_endpoint_name(endpoint) {
            return Err(DialstringError::InvalidEndpoint(endpoint.to_owned()));
        }
        Ok(Leg::build(endpoint, "", &[data], None))
    }

    /// `sofia/<profile>/<target>`: a SIP call through a profile, to a URI or
    /// a registered user (`1000`, `1000%example.com`, `sip:1000@192.0.2.7`).
    pub fn sofia(profile: &str, target: &str) -> Leg {
        Leg::build("sofia", "", &[profile, target], None)
    }

    /// `sofia/gateway/<gateway>/<number>`: a call through a gateway.
    pub fn sofia_gateway(gateway: &str, number: &str) -> Leg {
        Leg::build("sofia", "gateway/", &[gateway, number], None)
    }

    /// `user/<user>@<domain>`: a directory user, through its `dial-string`.
    pub fn user(user: &str, domain: &str) -> Leg {
        Leg::build("user", "", &[user], Some(("@", domain)))
    }

    /// `group/<name>@<domain>`: a directory group.
    pub fn group(name: &str, domain: &str) -> Leg {
        Leg::build("group", "", &[name], Some(("@", domain)))
    }

    /// `loopback/<extension>/<context>`: route again inside the switch.
    pub fn loopback(extension: &str, context: &str) -> Leg {
        Leg::build("loopback", "", &[extension, context], None)
    }

    /// `error/<cause>`: a leg that fails at once with this hangup cause
    /// (FreeSWITCH names such as `USER_BUSY`, or `user_not_registered`).
    pub fn error(cause_name: &str) -> Leg {
        Leg::build("error", "", &[cause_name], None)
    }

    /// `null/null`: a silent leg that answers. The null endpoint ignores its
    /// data; the builder writes `null` rather than nothing so every leg has
    /// data.
    pub fn null() -> Leg {
        Leg::build("null", "", &["null"], None)
    }

    /// `verto.rtc/u:<session>`: one logged-in Verto websocket.
    ///
    /// Written `verto.rtc/u\:<session>`: the builder's own `:` is escaped
    /// too, since a session starting with `_` followed by a `:_:` separator
    /// would otherwise read `u:_:` as an enterprise split. The endpoint still
    /// receives `u:<session>`.
    pub fn verto(session: &str) -> Leg {
        Leg::build("verto.rtc", "u\\:", &[session], None)
    }

    /// `rtmp/<session>/<user@domain>`: one RTMP session.
    pub fn rtmp(session: &str, user_at_domain: &str) -> Leg {
        Leg::build("rtmp", "", &[session, user_at_domain], None)
    }

    /// A trusted fragment, written **unescaped**: a `${helper(args)}` call,
    /// or text a contact helper returned. It may hold several legs or
    /// groups; variables added with [`Leg::var`] are written before it and
    /// so apply to its first leg only.
    ///
    /// Never pass caller-supplied text here.
    pub fn raw(trusted_fragment: impl Into<String>) -> Leg {
        Leg {
            vars: Vec::new(),
            body: trusted_fragment.into(),
        }
    }

    /// Add a `[name=value]` variable to this leg alone. Name and value are
    /// escaped; the name must not be empty (the host refuses `[=value]`).
    #[must_use]
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Leg {
        self.vars.push((name.into(), value.into()));
        self
    }

    /// Append this leg's text to `out`.
    fn write(&self, out: &mut String) {
        write_vars(out, &self.vars, '[', ']');
        out.push_str(&self.body);
    }
}

impl fmt::Display for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

/// One standard originate: `{vars}` then failover groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Branch {
    /// `{...}` variables.
    vars: Vec<(String, String)>,
    /// Groups separated by `|`; each holds legs separated by `,`. Never
    /// empty: the last group is the one legs are added to.
    groups: Vec<Vec<Leg>>,
}

impl Branch {
    fn new() -> Branch {
        Branch {
            vars: Vec::new(),
            groups: vec![Vec::new()],
        }
    }

    fn has_legs(&self) -> bool {
        self.groups.iter().any(|g| !g.is_empty())
    }
}

/// A dialstring under construction.
///
/// Legs are added to the current group; [`Dialstring::failover`] starts a
/// new `|` group and [`Dialstring::enterprise`] a new `:_:` branch. Render
/// it with `to_string()` (or `{}`).
///
/// ```
/// use dialtone_sdk::{Dialstring, Leg};
/// let ds = Dialstring::new()
///     .leg(Leg::user("1000", "example.com"))
///     .leg(Leg::user("1001", "example.com"))
///     .failover()
///     .leg(Leg::sofia_gateway("carrier1", "+15551234567"))
///     .enterprise()
///     .leg(Leg::loopback("9196", "default"));
/// assert_eq!(
///     ds.to_string(),
///     "user/1000@example.com,user/1001@example.com|sofia/gateway/carrier1/+15551234567:_:loopback/9196/default"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialstring {
    /// `<...>` variables, for every branch.
    enterprise_vars: Vec<(String, String)>,
    /// Never empty: the last branch is the one legs are added to.
    branches: Vec<Branch>,
}

impl Default for Dialstring {
    fn default() -> Self {
        Dialstring::new()
    }
}

impl Dialstring {
    /// An empty dialstring.
    pub fn new() -> Dialstring {
        Dialstring {
            enterprise_vars: Vec::new(),
            branches: vec![Branch::new()],
        }
    }

    fn current_branch(&mut self) -> &mut Branch {
        if self.branches.is_empty() {
            self.branches.push(Branch::new());
        }
        let last = self.branches.len() - 1;
        &mut self.branches[last]
    }

    /// Add a `{name=value}` variable to the current branch: it applies to
    /// every leg of that branch (but, as in FreeSWITCH, to that `:_:` branch
    /// only; use [`Dialstring::enterprise_var`] for all of them). Name and
    /// value are escaped; the name must not be empty.
    #[must_use]
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Dialstring {
        self.current_branch().vars.push((name.into(), value.into()));
        self
    }

    /// Add a `<name=value>` variable: it applies to every `:_:` branch. Name
    /// and value are escaped; the name must not be empty.
    #[must_use]
    pub fn enterprise_var(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Dialstring {
        self.enterprise_vars.push((name.into(), value.into()));
        self
    }

    /// Add a leg to the current group: it rings at the same time as the
    /// group's other legs (`,`).
    #[must_use]
    pub fn leg(mut self, leg: Leg) -> Dialstring {
        let branch = self.current_branch();
        if branch.groups.is_empty() {
            branch.groups.push(Vec::new());
        }
        let last = branch.groups.len() - 1;
        branch.groups[last].push(leg);
        self
    }

    /// Start a new failover group (`|`): its legs are tried if the current
    /// group fails. Does nothing while the current group has no leg, so no
    /// empty group is ever written.
    #[must_use]
    pub fn failover(mut self) -> Dialstring {
        let branch = self.current_branch();
        if branch.groups.last().is_some_and(|g| !g.is_empty()) {
            branch.groups.push(Vec::new());
        }
        self
    }

    /// Start a new enterprise branch (`:_:`): it runs in parallel with the
    /// others and the first to answer wins. Does nothing while the current
    /// branch has no leg.
    #[must_use]
    pub fn enterprise(mut self) -> Dialstring {
        if self.current_branch().has_legs() {
            self.branches.push(Branch::new());
        }
        self
    }

    /// Whether no leg was added.
    pub fn is_empty(&self) -> bool {
        !self.branches.iter().any(Branch::has_legs)
    }

    /// How many legs were added (a [`Leg::raw`] counts as one).
    pub fn leg_count(&self) -> usize {
        self.branches
            .iter()
            .flat_map(|b| b.groups.iter())
            .map(Vec::len)
            .sum()
    }

    /// Append the dialstring's text to `out`.
    fn write(&self, out: &mut String) {
        write_vars(out, &self.enterprise_vars, '<', '>');
        let mut first_branch = true;
        for branch in self.branches.iter().filter(|b| b.has_legs()) {
            if !first_branch {
                out.push_str(":_:");
            }
            first_branch = false;
            write_vars(out, &branch.vars, '{', '}');
            let mut first_group = true;
            for group in branch.groups.iter().filter(|g| !g.is_empty()) {
                if !first_group {
                    out.push('|');
                }
                first_group = false;
                for (i, leg) in group.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    leg.write(out);
                }
            }
        }
    }
}

impl Dialstring {
    /// The dialstring as text: what `to_string()` gives, without going
    /// through the formatting machinery.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

impl fmt::Display for Dialstring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl From<Leg> for Dialstring {
    fn from(leg: Leg) -> Dialstring {
        Dialstring::new().leg(leg)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn needs_escape_is_special_or_whitespace_for_every_char() {
        for c in (0..0x3100u32).filter_map(char::from_u32) {
            assert_eq!(
                needs_escape(c),
                SPECIAL.contains(&c) || c.is_whitespace(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn render_is_to_string() {
        let ds = Dialstring::new()
            .var("a b", "c,d")
            .leg(Leg::user("10 00", "ex\u{3000}ample.com"))
            .failover()
            .leg(Leg::error("USER_BUSY"));
        assert_eq!(ds.render(), ds.to_string());
        assert_eq!(
            ds.render(),
            "{a\\ b=c\\,d}user/10\\ 00@ex\\\u{3000}ample.com|error/USER_BUSY"
        );
    }

    /// A test-only parser that lexes like the host (`\x` is a literal `x`,
    /// `'...'` protects delimiters) and returns every leg as
    /// `(branch, group, leg vars, endpoint, data)`, all unescaped, plus the
    /// enterprise and per-branch variables.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Parsed {
        pub enterprise_vars: Vec<(String, String)>,
        pub branches: Vec<ParsedBranch>,
    }

    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct ParsedBranch {
        pub vars: Vec<(String, String)>,
        pub groups: Vec<Vec<ParsedLeg>>,
    }

    #[derive(Debug, PartialEq, Eq, Clone)]
    pub(crate) struct ParsedLeg {
        pub vars: Vec<(String, String)>,
        pub endpoint: String,
        pub data: String,
    }

    /// A lexed character: `true` if it is syntax, `false` if literal.
    type Tok = (char, bool);

    fn lex(s: &str) -> Vec<Tok> {
        let mut out = Vec::new();
        let mut chars = s.chars();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let next = chars.next().expect("dangling backslash");
                    out.push((next, false));
                }
                '\'' => quoted = !quoted,
                c => out.push((c, !quoted)),
            }
        }
        assert!(!quoted, "unterminated quote");
        out
    }

    fn text(toks: &[Tok]) -> String {
        toks.iter().map(|t| t.0).collect()
    }

    /// Drop syntactic (unescaped) whitespace at both ends, as the host does
    /// for legs, names and values.
    fn trim(mut toks: &[Tok]) -> &[Tok] {
        while toks.first().is_some_and(|t| t.1 && t.0.is_whitespace()) {
            toks = &toks[1..];
        }
        while toks.last().is_some_and(|t| t.1 && t.0.is_whitespace()) {
            toks = &toks[..toks.len() - 1];
        }
        toks
    }

    /// Split at syntactic `sep` (a sequence) outside syntactic brackets.
    fn split<'a>(toks: &'a [Tok], sep: &str) -> Vec<&'a [Tok]> {
        let sep: Vec<char> = sep.chars().collect();
        let mut parts = Vec::new();
        let mut depth = 0i32;
        let mut start = 0;
        let mut i = 0;
        while i < toks.len() {
            let (c, syn) = toks[i];
            if syn && matches!(c, '[' | '{' | '<') {
                depth += 1;
            } else if syn && matches!(c, ']' | '}' | '>') {
                depth -= 1;
            } else if depth == 0
                && i + sep.len() <= toks.len()
                && toks[i..i + sep.len()]
                    .iter()
                    .zip(&sep)
                    .all(|(t, s)| t.1 && t.0 == *s)
            {
                parts.push(&toks[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
            i += 1;
        }
        parts.push(&toks[start..]);
        parts
    }

    /// Take leading `open vlist close` blocks.
    fn take_blocks(mut toks: &[Tok], open: char, close: char) -> (Vec<(String, String)>, &[Tok]) {
        let mut vars = Vec::new();
        while toks.first() == Some(&(open, true)) {
            let end = toks
                .iter()
                .position(|t| *t == (close, true))
                .expect("unterminated block");
            for pair in split(&toks[1..end], ",") {
                let eq = pair
                    .iter()
                    .position(|t| *t == ('=', true))
                    .expect("var without =");
                vars.push((text(trim(&pair[..eq])), text(trim(&pair[eq + 1..]))));
            }
            toks = &toks[end + 1..];
        }
        (vars, toks)
    }

    pub(crate) fn parse(s: &str) -> Parsed {
        let toks = lex(s);
        let (enterprise_vars, rest) = take_blocks(&toks, '<', '>');
        let mut branches = Vec::new();
        for branch in split(rest, ":_:") {
            let (vars, rest) = take_blocks(branch, '{', '}');
            let mut groups = Vec::new();
            for group in split(rest, "|") {
                let mut legs = Vec::new();
                for leg in split(group, ",") {
                    let (vars, rest) = take_blocks(trim(leg), '[', ']');
                    let slash = rest
                        .iter()
                        .position(|t| *t == ('/', true))
                        .expect("leg without /");
                    legs.push(ParsedLeg {
                        vars,
                        endpoint: text(&rest[..slash]),
                        data: text(&rest[slash + 1..]),
                    });
                }
                groups.push(legs);
            }
            branches.push(ParsedBranch { vars, groups });
        }
        Parsed {
            enterprise_vars,
            branches,
        }
    }

    pub(crate) fn all_legs(p: &Parsed) -> Vec<ParsedLeg> {
        p.branches
            .iter()
            .flat_map(|b| b.groups.iter().flatten())
            .cloned()
            .collect()
    }

    fn pl(endpoint: &str, data: &str) -> ParsedLeg {
        ParsedLeg {
            vars: vec![],
            endpoint: endpoint.into(),
            data: data.into(),
        }
    }

    const NASTY: &[&str] = &[
        "1000,sofia/gateway/x/1",
        "1000|sofia/gateway/x/1",
        "1000:_:sofia/gateway/x/1",
        "[a=b]x",
        "{a=b}x",
        "<a=b>x",
        "x',sofia/gateway/x/1,'",
        "x\\",
        "\\,",
        "${sofia_contact(*/1000@example.com)}",
        "^^:a=1:b=2",
        "a=b",
        "",
        "héllo wörld ☎",
        " padded ",
        "\t",
        "''",
        "'",
        "x]y[z",
    ];

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(escape("1000@example.com"), Cow::Borrowed(_)));
        assert_eq!(escape(r"\'a"), r"\\\'a");
    }

    #[test]
    fn escapes_every_special_character() {
        for c in SPECIAL {
            assert_eq!(escape(&c.to_string()), format!("\\{c}"));
        }
        assert_eq!(
            escape(r"a\b'c,d|e[f]g{h}i<j>k^l$m:n/o=p q\tr"),
            r"a\\b\'c\,d\|e\[f\]g\{h\}i\<j\>k\^l\$m\:n\/o\=p\ q\\tr"
        );
        assert_eq!(escape("a\tb\nc\u{a0}d"), "a\\\tb\\\nc\\\u{a0}d");
    }

    #[test]
    fn spec_example() {
        let ds = Dialstring::new()
            .var("ignore_early_media", "true")
            .leg(Leg::user("1000", "example.com").var("leg_timeout", "20"))
            .leg(Leg::user("1001", "example.com"))
            .failover()
            .leg(Leg::sofia_gateway("carrier1", "15551234567"))
            .enterprise()
            .var("origination_caller_id_number", "100")
            .leg(Leg::loopback("9664", "default"));
        assert_eq!(
            ds.to_string(),
            "{ignore_early_media=true}[leg_timeout=20]user/1000@example.com,user/1001@example.com\
             |sofia/gateway/carrier1/15551234567\
             :_:{origination_caller_id_number=100}loopback/9664/default"
        );
        assert_eq!(ds.leg_count(), 4);
    }

    #[test]
    fn injection_through_leg_data_gives_one_leg() {
        let ds = Dialstring::from(Leg::user("1000,sofia/gateway/x/1", "example.com"));
        assert_eq!(
            ds.to_string(),
            r"user/1000\,sofia\/gateway\/x\/1@example.com"
        );
        let p = parse(&ds.to_string());
        assert_eq!(
            all_legs(&p),
            vec![pl("user", "1000,sofia/gateway/x/1@example.com")]
        );

        let ds = Dialstring::from(Leg::user("1000", "example.com:_:sofia/gateway/x/1"));
        assert_eq!(
            ds.to_string(),
            r"user/1000@example.com\:_\:sofia\/gateway\/x\/1"
        );
        assert_eq!(all_legs(&parse(&ds.to_string())).len(), 1);
    }

    #[test]
    fn injection_through_vars_stays_in_the_var() {
        let ds = Dialstring::new()
            .var("a", "1},sofia/gateway/x/1,{b=2")
            .enterprise_var("c=d,e", "f>g")
            .leg(Leg::null().var("x]user/2000@h,[y", "v"));
        let p = parse(&ds.to_string());
        assert_eq!(p.enterprise_vars, vec![("c=d,e".into(), "f>g".into())]);
        assert_eq!(p.branches.len(), 1);
        assert_eq!(
            p.branches[0].vars,
            vec![("a".into(), "1},sofia/gateway/x/1,{b=2".into())]
        );
        let legs = all_legs(&p);
        assert_eq!(legs.len(), 1);
        assert_eq!(legs[0].vars, vec![("x]user/2000@h,[y".into(), "v".into())]);
        assert_eq!(
            (legs[0].endpoint.as_str(), legs[0].data.as_str()),
            ("null", "null")
        );
    }

    #[test]
    fn every_constructor_round_trips_nasty_input() {
        for a in NASTY {
            for b in NASTY {
                let legs = [
                    (Leg::sofia(a, b), "sofia", format!("{a}/{b}")),
                    (
                        Leg::sofia_gateway(a, b),
                        "sofia",
                        format!("gateway/{a}/{b}"),
                    ),
                    (Leg::user(a, b), "user", format!("{a}@{b}")),
                    (Leg::group(a, b), "group", format!("{a}@{b}")),
                    (Leg::loopback(a, b), "loopback", format!("{a}/{b}")),
                    (Leg::rtmp(a, b), "rtmp", format!("{a}/{b}")),
                    (Leg::error(a), "error", a.to_string()),
                    (Leg::verto(a), "verto.rtc", format!("u:{a}")),
                    (
                        Leg::new("pickup", a).expect("valid endpoint"),
                        "pickup",
                        a.to_string(),
                    ),
                ];
                for (leg, endpoint, data) in legs {
                    let ds = Dialstring::new().var(*a, *b).leg(leg.var(*b, *a));
                    let p = parse(&ds.to_string());
                    assert_eq!(p.branches.len(), 1, "{ds}");
                    assert_eq!(p.branches[0].vars, vec![(a.to_string(), b.to_string())]);
                    let got = all_legs(&p);
                    assert_eq!(
                        got,
                        vec![ParsedLeg {
                            vars: vec![(b.to_string(), a.to_string())],
                            endpoint: endpoint.into(),
                            data: data.clone(),
                        }],
                        "{ds}"
                    );
                }
            }
        }
    }

    #[test]
    fn endpoint_must_be_an_identifier() {
        for bad in [
            "",
            "User",
            "user/1000",
            "a,b",
            "sofia internal",
            "x:_:y",
            "é",
        ] {
            assert_eq!(
                Leg::new(bad, "x"),
                Err(DialstringError::InvalidEndpoint(bad.into()))
            );
        }
        for good in ["sofia", "verto.rtc", "free_tdm2"] {
            assert!(Leg::new(good, "x").is_ok());
        }
        assert!(DialstringError::InvalidEndpoint("X".into())
            .to_string()
            .contains("[a-z0-9._]+"));
    }

    #[test]
    fn ordinary_legs_are_written_verbatim() {
        assert_eq!(
            Leg::sofia("internal", "1000%example.com").to_string(),
            "sofia/internal/1000%example.com"
        );
        assert_eq!(
            Leg::sofia_gateway("gw1", "+15551234567").to_string(),
            "sofia/gateway/gw1/+15551234567"
        );
        assert_eq!(
            Leg::group("sales", "example.com").to_string(),
            "group/sales@example.com"
        );
        assert_eq!(Leg::error("USER_BUSY").to_string(), "error/USER_BUSY");
        assert_eq!(Leg::null().to_string(), "null/null");
        assert_eq!(Leg::verto("6f1c").to_string(), r"verto.rtc/u\:6f1c");
        assert_eq!(
            Leg::rtmp("ab12", "1000@example.com").to_string(),
            "rtmp/ab12/1000@example.com"
        );
    }

    #[test]
    fn builder_syntax_cannot_combine_with_caller_text() {
        // `u:` + `_` + `:_:` must not read as `u:_:` + `_:`.
        let ds = Dialstring::new()
            .leg(Leg::verto("_"))
            .enterprise()
            .leg(Leg::verto("_"));
        let p = parse(&ds.to_string());
        assert_eq!(p.branches.len(), 2, "{ds}");
        assert_eq!(
            all_legs(&p),
            vec![pl("verto.rtc", "u:_"), pl("verto.rtc", "u:_")]
        );
    }

    #[test]
    fn raw_is_not_escaped() {
        let ds = Dialstring::new()
            .leg(Leg::raw("${sofia_contact(*/1000@example.com)}"))
            .leg(Leg::raw("a/b,c/d").var("k", "v"));
        assert_eq!(
            ds.to_string(),
            "${sofia_contact(*/1000@example.com)},[k=v]a/b,c/d"
        );
    }

    #[test]
    fn empty_groups_and_branches_are_never_written() {
        assert_eq!(Dialstring::new().to_string(), "");
        assert!(Dialstring::new().failover().enterprise().is_empty());
        let ds = Dialstring::new()
            .failover()
            .enterprise()
            .leg(Leg::null())
            .failover()
            .failover()
            .leg(Leg::error("x"))
            .enterprise()
            .enterprise()
            .leg(Leg::null())
            .failover();
        assert_eq!(ds.to_string(), "null/null|error/x:_:null/null");
        assert!(!ds.is_empty());
        assert_eq!(Dialstring::default(), Dialstring::new());
    }

    /// A small deterministic fuzz: random strings over the special
    /// characters always parse back to exactly what went in.
    #[test]
    fn random_input_round_trips() {
        let alphabet: Vec<char> = SPECIAL.iter().copied().chain("=_a1@ ".chars()).collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut word = || -> String {
                let len = (next() % 12) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            };
            let (user, domain, name, value) = (word(), word(), word(), word());
            let ds =
                Dialstring::new().leg(Leg::user(&user, &domain).var(name.clone(), value.clone()));
            let legs = all_legs(&parse(&ds.to_string()));
            assert_eq!(
                legs,
                vec![ParsedLeg {
                    vars: vec![(name, value)],
                    endpoint: "user".into(),
                    data: format!("{user}@{domain}"),
                }],
                "{ds}"
            );
        }
    }
}
