//! Dialstrings: FreeSWITCH's grammar for creating outbound legs.
//!
//! ```text
//! dialstring := ENT | STD                 ; ENT when ":_:" appears at top level
//! ENT        := ult* STD (":_:" STD)*     ; branches run in parallel, first answer wins
//! STD        := ult* glob* group ("|" group)*      ; groups tried in order (failover)
//! group      := leg ("," leg)*                     ; legs rung at the same time
//! leg        := local* type "/" data               ; split at the FIRST '/'
//! ult := "<" vlist ">"   glob := "{" vlist "}"   local := "[" vlist "]"
//! vlist      := ["^^" SEP] name "=" value (SEP name "=" value)*   ; SEP defaults to ','
//! ```
//!
//! Lexing follows `switch_separate_string`: `'...'` protects delimiters (the
//! quotes are removed) and `\` escapes the next character. Each level (branches,
//! groups of a branch, legs of a group) holds at most [`MAX_PEERS`] entries.
//!
//! This module owns parsing ([`parse`]) and expansion ([`expand`]), the
//! scope rules ([`Leg::effective_vars`]) and the JSON explanations for APIs
//! ([`Dialstring::explain`], [`ParseError::explain`]). It never creates a
//! channel.
//!
//! **Expansion is done once, before parsing, and only helper output is
//! syntax.** `${name}` is replaced by the variable's value *escaped*, so a
//! value such as `1000,sofia/gateway/x/1` stays one literal leg target and can
//! never add a leg. `${helper(args)}` is replaced by what the dialstring helper
//! returns, unescaped, because building dialstring syntax (several contacts
//! joined with `,`) is exactly what helpers are for. Expanded text is never
//! expanded again.
//!
//! # Parsing rules in detail
//!
//! * **Lexing.** `\x` stands for the character `x` taken literally (the
//!   backslash is removed), everywhere: endpoint, data, variable names and
//!   values. `'...'` makes everything inside literal and the quotes are
//!   removed; `\` still escapes inside quotes, so `'it\'s'` is `it's`. A
//!   literal character never has a meaning in the grammar. A `\` at the very
//!   end is [`ParseErrorKind::TrailingEscape`]; an open quote is
//!   [`ParseErrorKind::UnterminatedQuote`].
//! * **Brackets.** `[]`, `{}` and `<>` must be balanced (and properly nested)
//!   across the whole string, data included, unless escaped or quoted.
//!   Separators (`:_:`, `|`, `,`, a block's own separator) inside brackets
//!   never split. That generalises FreeSWITCH's masking of commas inside
//!   `[...]` and keeps `sofia/internal/1000@[2001:db8::1]` or
//!   `verto.rtc/u:<uuid>` in one piece; a lone `>` in data must be escaped.
//! * **Variable blocks.** `<...>` at the very start of the dialstring goes to
//!   [`Dialstring::enterprise_vars`] (for one branch or many). At the start of
//!   each branch, `{...}` (and `<...>` at the start of a later `:_:` branch,
//!   which `switch_ivr_originate` puts in the same event as `{...}`) goes to
//!   [`Branch::global_vars`]. `[...]` at the start of a leg goes to
//!   [`Leg::local_vars`]. Consecutive blocks of the same scope merge; a name
//!   keeps the position of its first appearance and the last assignment wins.
//!   Empty blocks (`{}`) and empty elements (`{a=1,}`) are allowed; an element
//!   without `=` or with an empty name is [`ParseErrorKind::BadVariable`].
//!   Names and values are trimmed of unescaped whitespace; a value may be
//!   empty and may contain `=`. Names are case-sensitive.
//! * **Legs.** Unescaped whitespace around legs and separators is trimmed;
//!   whitespace inside data is kept. The leg is split at the first unescaped
//!   `/` outside brackets: no `/` is [`ParseErrorKind::MissingEndpoint`]
//!   (FreeSWITCH's `INVALID_URL`), nothing before it is
//!   [`ParseErrorKind::EmptyEndpoint`]. Data may be empty (`null/`) and is
//!   opaque: a `<`, `[` or `{` inside data is data.
//!
//! # Scope precedence
//!
//! [`Leg::effective_vars`] merges `<>` (lowest), then `{}`, then `[]`. As in
//! FreeSWITCH (`switch_ivr_originate.c` lines 3105-3145) `{}` is applied after
//! `[]`, so for a name set in both, `{}` wins unless `local_var_clobber` is
//! true (in any scope; truth as in `switch_true`: `true`, `yes`, `on`, `t`,
//! `enabled`, `active`, `allow`, or a non-zero integer).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::HangupCause;

/// FreeSWITCH's `MAX_PEERS`: entries per level of a dialstring.
pub const MAX_PEERS: usize = 128;

/// Largest output [`expand`] produces, in bytes (64 KiB).
pub const MAX_EXPANDED_LEN: usize = 64 * 1024;

/// Most dialstring-helper calls one [`expand`] makes.
pub const MAX_HELPER_CALLS: usize = 64;

/// Ordered `name=value` pairs of one variable block.
pub type Vars = Vec<(String, String)>;

/// A parsed dialstring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dialstring {
    /// `<...>` variables: they apply to every enterprise branch.
    pub enterprise_vars: Vars,
    /// The branches; more than one means enterprise originate (`:_:`).
    pub branches: Vec<Branch>,
}

/// One standard originate (STD): groups tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Branch {
    /// `{...}` variables: they apply to every leg of this branch.
    pub global_vars: Vars,
    /// Failover groups, separated by `|`.
    pub groups: Vec<Group>,
}

/// Legs rung at the same time (separated by `,`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The legs.
    pub legs: Vec<Leg>,
}

/// One leg: `[vars]endpoint/data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leg {
    /// `[...]` variables of this leg alone.
    pub local_vars: Vars,
    /// The endpoint (the text before the first `/`), e.g. `sofia`, `user`.
    pub endpoint: String,
    /// Everything after the first `/`, unescaped; opaque to the core.
    pub data: String,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Which level of a dialstring went over [`MAX_PEERS`] entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    /// `:_:` branches of the dialstring.
    Branches,
    /// `|` groups of one branch.
    Groups,
    /// `,` legs of one group.
    Legs,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Branches => "':_:' branches in the dialstring",
            Level::Groups => "'|' groups in a branch",
            Level::Legs => "',' legs in a group",
        })
    }
}

/// What is wrong with a dialstring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The dialstring is empty (or only whitespace).
    #[error("empty dialstring")]
    Empty,
    /// A leg, group or branch is empty: `a/b,,c/d`, a trailing `|`, ...
    #[error("empty leg")]
    EmptyLeg,
    /// An opening bracket (the payload) is never closed.
    #[error("unbalanced '{0}': no closing '{close}'", close = closer_of(*.0))]
    Unbalanced(char),
    /// A closing bracket (the payload) with no matching opening bracket.
    #[error("unexpected '{0}' with no matching '{open}'", open = opener_of(*.0))]
    UnexpectedClose(char),
    /// A leg has no `/` between endpoint and data (FreeSWITCH: `INVALID_URL`).
    #[error("leg has no '/' between endpoint and data (INVALID_URL)")]
    MissingEndpoint,
    /// A leg's endpoint (before the `/`) is empty: `/data`.
    #[error("leg has an empty endpoint before '/' (INVALID_URL)")]
    EmptyEndpoint,
    /// A variable without `=`, or with an empty name; the payload is the
    /// offending element.
    #[error("bad variable {0:?}: expected name=value")]
    BadVariable(String),
    /// More than `max` entries at one level.
    #[error("too many {level}: at most {max}")]
    TooManyLegs {
        /// The level that is too long.
        level: Level,
        /// The limit ([`MAX_PEERS`]).
        max: usize,
    },
    /// A `'` is never closed.
    #[error("unterminated single quote")]
    UnterminatedQuote,
    /// The input ends with a lone `\`.
    #[error("'\\' at the end escapes nothing")]
    TrailingEscape,
    /// A variable block (its opening bracket is the payload) where none may
    /// be: `[...]` after a leg's endpoint began, `{...}` or `<...>` in the
    /// middle of a branch.
    #[error("'{0}' variable block after the leg began; '[...]' goes before the endpoint, '{{...}}' and '<...>' at the start of the dialstring or branch")]
    VarsAfterLeg(char),
}

/// A dialstring that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {pos}: {kind}")]
pub struct ParseError {
    /// Byte offset into the input where the problem is.
    pub pos: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    fn new(pos: usize, kind: ParseErrorKind) -> Self {
        ParseError { pos, kind }
    }

    /// The hangup cause an originate of this dialstring fails with:
    /// `INVALID_URL` for a leg without a usable endpoint, otherwise
    /// `DESTINATION_OUT_OF_ORDER` (FreeSWITCH's answer to a parse error).
    pub fn cause(&self) -> HangupCause {
        match self.kind {
            ParseErrorKind::MissingEndpoint | ParseErrorKind::EmptyEndpoint => {
                HangupCause::InvalidUrl
            }
            _ => HangupCause::DestinationOutOfOrder,
        }
    }

    /// A JSON description for APIs and CLIs:
    /// `{"error": message, "position": pos, "cause": name, "context": excerpt}`
    /// where `context` is a window of `input` around the position, a newline,
    /// and a line with `^` under the offending character.
    pub fn explain(&self, input: &str) -> Value {
        json!({
            "error": self.kind.to_string(),
            "position": self.pos,
            "cause": self.cause().name(),
            "context": caret_context(input, self.pos),
        })
    }
}

/// Up to this many characters of context on each side of an error position.
const CONTEXT_CHARS: usize = 30;

/// `input` around byte `pos`, then a newline and a caret line.
fn caret_context(input: &str, pos: usize) -> String {
    let mut pos = pos.min(input.len());
    while !input.is_char_boundary(pos) {
        pos -= 1;
    }
    let before: Vec<char> = input[..pos].chars().collect();
    let skip = before.len().saturating_sub(CONTEXT_CHARS);
    let mut line = String::new();
    let mut caret_col = 0;
    if skip > 0 {
        line.push_str("...");
        caret_col += 3;
    }
    for &c in &before[skip..] {
        line.push(printable(c));
        caret_col += 1;
    }
    let mut after = input[pos..].chars();
    for c in after.by_ref().take(CONTEXT_CHARS) {
        line.push(printable(c));
    }
    if after.next().is_some() {
        line.push_str("...");
    }
    format!("{line}\n{}^", " ".repeat(caret_col))
}

fn printable(c: char) -> char {
    if c.is_control() {
        ' '
    } else {
        c
    }
}

fn closer_of(open: char) -> char {
    match open {
        '[' => ']',
        '{' => '}',
        '<' => '>',
        other => other,
    }
}

fn opener_of(close: char) -> char {
    match close {
        ']' => '[',
        '}' => '{',
        '>' => '<',
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// One character after quote and escape removal.
#[derive(Debug, Clone, Copy)]
struct Tok {
    ch: char,
    /// Byte offset in the input (of the `\` for an escaped character).
    pos: usize,
    /// Escaped or quoted: never syntax.
    lit: bool,
}

fn lex(s: &str) -> Result<Vec<Tok>, ParseError> {
    let mut toks = Vec::with_capacity(s.len());
    let mut quote: Option<usize> = None;
    let mut chars = s.char_indices();
    while let Some((pos, ch)) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some((_, next)) => toks.push(Tok {
                    ch: next,
                    pos,
                    lit: true,
                }),
                None => return Err(ParseError::new(pos, ParseErrorKind::TrailingEscape)),
            },
            '\'' => {
                quote = match quote {
                    Some(_) => None,
                    None => Some(pos),
                }
            }
            _ => toks.push(Tok {
                ch,
                pos,
                lit: quote.is_some(),
            }),
        }
    }
    match quote {
        Some(pos) => Err(ParseError::new(pos, ParseErrorKind::UnterminatedQuote)),
        None => Ok(toks),
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Sep {
    /// `:_:`
    Ent,
    /// One character: `|` or `,` or a block's separator.
    Char(char),
}

type Span = (usize, usize);

struct Parser<'a> {
    input: &'a str,
    toks: Vec<Tok>,
    /// For each unescaped opening bracket, the index of its closing bracket.
    close: Vec<Option<usize>>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, ParseError> {
        let toks = lex(input)?;
        let mut close = vec![None; toks.len()];
        let mut stack: Vec<usize> = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            if t.lit {
                continue;
            }
            match t.ch {
                '[' | '{' | '<' => stack.push(i),
                ']' | '}' | '>' => match stack.pop() {
                    Some(o) if toks.get(o).is_some_and(|ot| closer_of(ot.ch) == t.ch) => {
                        close[o] = Some(i);
                    }
                    _ => {
                        return Err(ParseError::new(
                            t.pos,
                            ParseErrorKind::UnexpectedClose(t.ch),
                        ))
                    }
                },
                _ => {}
            }
        }
        if let Some(t) = stack.first().and_then(|&o| toks.get(o)) {
            return Err(ParseError::new(t.pos, ParseErrorKind::Unbalanced(t.ch)));
        }
        Ok(Parser { input, toks, close })
    }

    fn err(&self, i: usize, kind: ParseErrorKind) -> ParseError {
        ParseError::new(self.pos(i), kind)
    }

    /// Byte offset of token `i` (the input's end past the last token).
    fn pos(&self, i: usize) -> usize {
        self.toks.get(i).map_or(self.input.len(), |t| t.pos)
    }

    /// Token `i` is the unescaped character `c`.
    fn is(&self, i: usize, c: char) -> bool {
        self.toks.get(i).is_some_and(|t| !t.lit && t.ch == c)
    }

    fn is_ws(&self, i: usize) -> bool {
        self.toks
            .get(i)
            .is_some_and(|t| !t.lit && t.ch.is_whitespace())
    }

    /// The closing index if token `i` is an unescaped opening bracket.
    fn block_end(&self, i: usize) -> Option<usize> {
        self.close.get(i).copied().flatten()
    }

    /// The index after token `i`, jumping over a bracketed block.
    fn step(&self, i: usize) -> usize {
        self.block_end(i).map_or(i + 1, |c| c.max(i) + 1)
    }

    fn trim(&self, (mut a, mut b): Span) -> Span {
        while a < b && self.is_ws(a) {
            a += 1;
        }
        while b > a && self.is_ws(b - 1) {
            b -= 1;
        }
        (a, b)
    }

    fn text(&self, (a, b): Span) -> String {
        let Some(ts) = self.toks.get(a..b) else {
            return String::new();
        };
        // One allocation (a byte a token, exact for ASCII).
        let mut out = String::with_capacity(ts.len());
        out.extend(ts.iter().map(|t| t.ch));
        out
    }

    fn sep_len(&self, i: usize, end: usize, sep: Sep) -> Option<usize> {
        match sep {
            Sep::Ent => {
                (i + 2 < end && self.is(i, ':') && self.is(i + 1, '_') && self.is(i + 2, ':'))
                    .then_some(3)
            }
            Sep::Char(c) => self.is(i, c).then_some(1),
        }
    }

    /// Splits `span` at top-level separators, at most [`MAX_PEERS`] parts
    /// when `level` is given.
    fn split(&self, (a, b): Span, sep: Sep, level: Option<Level>) -> Result<Vec<Span>, ParseError> {
        let mut parts = Vec::new();
        let push = |parts: &mut Vec<Span>, span: Span| {
            if let Some(level) = level {
                if parts.len() >= MAX_PEERS {
                    return Err(self.err(
                        span.0,
                        ParseErrorKind::TooManyLegs {
                            level,
                            max: MAX_PEERS,
                        },
                    ));
                }
            }
            parts.push(span);
            Ok(())
        };
        let mut start = a;
        let mut i = a;
        while i < b {
            if let Some(len) = self.sep_len(i, b, sep) {
                push(&mut parts, (start, i))?;
                i += len;
                start = i;
            } else {
                i = self.step(i);
            }
        }
        push(&mut parts, (start, b.max(start)))?;
        Ok(parts)
    }

    /// Parses the variable block opening at `open` into `vars`; returns the
    /// index after its closing bracket.
    fn block(&self, open: usize, vars: &mut VarSet) -> Result<usize, ParseError> {
        let Some(close) = self.block_end(open) else {
            let ch = self.toks.get(open).map_or('[', |t| t.ch);
            return Err(self.err(open, ParseErrorKind::Unbalanced(ch)));
        };
        let mut a = open + 1;
        let mut sep = ',';
        if self.is(a, '^') && self.is(a + 1, '^') {
            match self.toks.get(a + 2) {
                Some(t) if a + 2 < close => {
                    sep = t.ch;
                    a += 3;
                }
                _ => {
                    return Err(self.err(a, ParseErrorKind::BadVariable(self.text((a, close)))));
                }
            }
        }
        for elem in self.split((a, close), Sep::Char(sep), None)? {
            let (ea, eb) = self.trim(elem);
            if ea == eb {
                continue;
            }
            let mut eq = None;
            let mut i = ea;
            while i < eb {
                if self.is(i, '=') {
                    eq = Some(i);
                    break;
                }
                i = self.step(i);
            }
            let bad = || self.err(ea, ParseErrorKind::BadVariable(self.text((ea, eb))));
            let Some(eq) = eq else {
                return Err(bad());
            };
            let name = self.text(self.trim((ea, eq)));
            if name.is_empty() {
                return Err(bad());
            }
            let value = self.text(self.trim((eq + 1, eb)));
            vars.set(&name, &value);
        }
        Ok(close + 1)
    }

    fn dialstring(&self) -> Result<Dialstring, ParseError> {
        let (mut i, end) = self.trim((0, self.toks.len()));
        if i == end {
            return Err(ParseError::new(0, ParseErrorKind::Empty));
        }
        let mut enterprise_vars = VarSet::default();
        while self.is(i, '<') {
            i = self.block(i, &mut enterprise_vars)?;
            i = self.trim((i, end)).0;
        }
        let branches = self
            .split((i, end), Sep::Ent, Some(Level::Branches))?
            .into_iter()
            .map(|span| self.branch(span))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dialstring {
            enterprise_vars: enterprise_vars.vars,
            branches,
        })
    }

    fn branch(&self, span: Span) -> Result<Branch, ParseError> {
        let (mut i, end) = self.trim(span);
        let mut global_vars = VarSet::default();
        while self.is(i, '{') || self.is(i, '<') {
            i = self.block(i, &mut global_vars)?;
            i = self.trim((i, end)).0;
        }
        if i == end {
            return Err(self.err(i, ParseErrorKind::EmptyLeg));
        }
        let groups = self
            .split((i, end), Sep::Char('|'), Some(Level::Groups))?
            .into_iter()
            .map(|span| self.group(span))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Branch {
            global_vars: global_vars.vars,
            groups,
        })
    }

    fn group(&self, span: Span) -> Result<Group, ParseError> {
        let legs = self
            .split(span, Sep::Char(','), Some(Level::Legs))?
            .into_iter()
            .map(|span| self.leg(span))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Group { legs })
    }

    fn leg(&self, span: Span) -> Result<Leg, ParseError> {
        let (mut i, end) = self.trim(span);
        if i == end {
            return Err(self.err(i, ParseErrorKind::EmptyLeg));
        }
        let mut local_vars = VarSet::default();
        while self.is(i, '[') {
            i = self.block(i, &mut local_vars)?;
            i = self.trim((i, end)).0;
        }
        let start = i;
        let mut slash = None;
        while i < end {
            if self.is(i, '/') {
                slash = Some(i);
                break;
            }
            if let Some(open) = ['[', '{', '<'].into_iter().find(|&c| self.is(i, c)) {
                return Err(self.err(i, ParseErrorKind::VarsAfterLeg(open)));
            }
            i += 1;
        }
        let Some(slash) = slash else {
            return Err(self.err(start, ParseErrorKind::MissingEndpoint));
        };
        let endpoint = self.text(self.trim((start, slash)));
        if endpoint.is_empty() {
            return Err(self.err(slash, ParseErrorKind::EmptyEndpoint));
        }
        Ok(Leg {
            local_vars: local_vars.vars,
            endpoint,
            data: self.text((slash + 1, end)),
        })
    }
}

/// [`Vars`] under construction, indexed by name so that long blocks stay
/// linear.
#[derive(Default)]
struct VarSet {
    vars: Vars,
    index: HashMap<String, usize>,
}

impl VarSet {
    /// Sets `name`: a new name goes last, an existing one keeps its place and
    /// takes the new value.
    fn set(&mut self, name: &str, value: &str) {
        match self.index.get(name).and_then(|&i| self.vars.get_mut(i)) {
            Some(slot) => slot.1 = value.to_string(),
            None => {
                self.index.insert(name.to_string(), self.vars.len());
                self.vars.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn extend(&mut self, vars: &Vars) {
        for (n, v) in vars {
            self.set(n, v);
        }
    }
}

/// FreeSWITCH's `switch_true`.
fn is_true(v: &str) -> bool {
    ["yes", "on", "true", "t", "enabled", "active", "allow"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
        || v.trim().parse::<i64>().is_ok_and(|n| n != 0)
}

/// Parses a dialstring (after [`expand`]). See the module docs for the exact
/// rules; the result has at least one branch, every branch at least one
/// group, every group at least one leg. Never panics.
pub fn parse(s: &str) -> Result<Dialstring, ParseError> {
    if let Some(d) = parse_plain(s) {
        return Ok(d);
    }
    Parser::new(s)?.dialstring()
}

/// The common case without the general parser's per-character tokens: one
/// leg, `endpoint/data` in printable ASCII with no blank, quote, escape,
/// bracket, `,`, `|` or `:_:`. `None` for anything else, which
/// [`Parser`] reads (with the same result where both apply: tested).
fn parse_plain(s: &str) -> Option<Dialstring> {
    let plain = s.bytes().all(|c| {
        c.is_ascii_graphic()
            && !matches!(
                c,
                b'\\' | b'\'' | b'[' | b']' | b'{' | b'}' | b'<' | b'>' | b',' | b'|'
            )
    });
    if !plain || s.contains(":_:") {
        return None;
    }
    let slash = s.find('/').filter(|&i| i > 0)?;
    Some(Dialstring {
        enterprise_vars: Vars::new(),
        branches: vec![Branch {
            global_vars: Vars::new(),
            groups: vec![Group {
                legs: vec![Leg {
                    local_vars: Vars::new(),
                    endpoint: s[..slash].to_string(),
                    data: s[slash + 1..].to_string(),
                }],
            }],
        }],
    })
}

impl FromStr for Dialstring {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl Dialstring {
    /// True for enterprise originate: the dialstring has `:_:` branches.
    pub fn is_enterprise(&self) -> bool {
        self.branches.len() > 1
    }

    /// The number of legs over all branches and groups.
    pub fn leg_count(&self) -> usize {
        self.branches
            .iter()
            .flat_map(|b| &b.groups)
            .map(|g| g.legs.len())
            .sum()
    }

    /// Every leg with the branch it belongs to, in order.
    pub fn legs(&self) -> impl Iterator<Item = (&Branch, &Leg)> + '_ {
        self.branches.iter().flat_map(|b| {
            b.groups
                .iter()
                .flat_map(move |g| g.legs.iter().map(move |l| (b, l)))
        })
    }

    /// A JSON description for APIs and CLIs:
    ///
    /// ```text
    /// {"enterprise": bool, "enterprise_vars": {..}, "legs": N,
    ///  "branches": [{"vars": {..}, "groups": [{"legs": [
    ///     {"endpoint": "..", "target": "..", "local_vars": {..}, "vars": {..}}]}]}]}
    /// ```
    ///
    /// `target` is the leg's data and `vars` its [`Leg::effective_vars`].
    /// Variables are JSON objects: names are unique within each of these
    /// maps, so nothing is lost, but key order is not significant (with
    /// serde_json's default features the keys come out sorted); the parsed
    /// [`Vars`] keep the written order.
    pub fn explain(&self) -> Value {
        let branches: Vec<Value> = self
            .branches
            .iter()
            .map(|b| {
                let groups: Vec<Value> = b
                    .groups
                    .iter()
                    .map(|g| {
                        let legs: Vec<Value> = g
                            .legs
                            .iter()
                            .map(|l| {
                                json!({
                                    "endpoint": l.endpoint,
                                    "target": l.data,
                                    "local_vars": vars_json(&l.local_vars),
                                    "vars": vars_json(&l.effective_vars(b, self)),
                                })
                            })
                            .collect();
                        json!({ "legs": legs })
                    })
                    .collect();
                json!({ "vars": vars_json(&b.global_vars), "groups": groups })
            })
            .collect();
        json!({
            "enterprise": self.is_enterprise(),
            "enterprise_vars": vars_json(&self.enterprise_vars),
            "branches": branches,
            "legs": self.leg_count(),
        })
    }
}

fn vars_json(vars: &Vars) -> Value {
    let mut map = Map::new();
    for (n, v) in vars {
        map.insert(n.clone(), Value::String(v.clone()));
    }
    Value::Object(map)
}

impl Leg {
    /// The variables this leg is created with: `<>` of `ds`, then `{}` of
    /// `branch`, then this leg's `[]`, where `{}` beats `[]` for the same name
    /// unless `local_var_clobber` is true in any of the three scopes. Names
    /// keep the order of their first appearance.
    pub fn effective_vars(&self, branch: &Branch, ds: &Dialstring) -> Vars {
        let clobber = [&ds.enterprise_vars, &branch.global_vars, &self.local_vars]
            .iter()
            .any(|vars| {
                vars.iter()
                    .any(|(n, v)| n == "local_var_clobber" && is_true(v))
            });
        let mut global = VarSet::default();
        global.extend(&branch.global_vars);
        let mut out = VarSet::default();
        out.extend(&ds.enterprise_vars);
        out.extend(&branch.global_vars);
        for (n, v) in &self.local_vars {
            if clobber || !global.contains(n) {
                out.set(n, v);
            }
        }
        out.vars
    }
}

/// The canonical text of a dialstring: it parses back to an equal value.
/// Names, values, endpoints and data are written with [`escape`]; empty
/// variable blocks are left out.
impl fmt::Display for Dialstring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_block(f, '<', &self.enterprise_vars)?;
        for (bi, b) in self.branches.iter().enumerate() {
            if bi > 0 {
                f.write_str(":_:")?;
            }
            write_block(f, '{', &b.global_vars)?;
            for (gi, g) in b.groups.iter().enumerate() {
                if gi > 0 {
                    f.write_str("|")?;
                }
                for (li, l) in g.legs.iter().enumerate() {
                    if li > 0 {
                        f.write_str(",")?;
                    }
                    write_block(f, '[', &l.local_vars)?;
                    write!(f, "{}/{}", escape(&l.endpoint), escape(&l.data))?;
                }
            }
        }
        Ok(())
    }
}

fn write_block(f: &mut fmt::Formatter<'_>, open: char, vars: &Vars) -> fmt::Result {
    if vars.is_empty() {
        return Ok(());
    }
    write!(f, "{open}")?;
    for (i, (n, v)) in vars.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{}={}", escape(n), escape(v))?;
    }
    write!(f, "{}", closer_of(open))
}

// ---------------------------------------------------------------------------
// Expansion
// ---------------------------------------------------------------------------

/// Backslash-escapes every character that has a meaning in the grammar, so
/// that [`parse`] yields `s` literally wherever the result lands.
///
/// Escaped are `\ ' , | [ ] { } < > ^ $ = :` (so `:_:` cannot form), `/`
/// and whitespace. `/` matters when a value lands at the start of a leg:
/// unescaped it could become the endpoint separator; in data an escaped `/`
/// is simply a `/`, because the parser unescapes data too. Whitespace is
/// escaped so that leading and trailing blanks of a value survive the
/// parser's trimming.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        if c.is_whitespace()
            || matches!(
                c,
                '\\' | '\''
                    | ','
                    | '|'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '<'
                    | '>'
                    | '^'
                    | '$'
                    | '='
                    | ':'
                    | '/'
            )
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What went wrong in [`expand`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    /// A `${` without its closing `}`.
    #[error("unterminated '${{'")]
    Unterminated,
    /// `${name(` without a matching `)` directly followed by `}`.
    #[error("'${{{name}(' has no matching ')}}'")]
    UnclosedCall {
        /// The helper's name.
        name: String,
    },
    /// The dialstring helper failed.
    #[error("helper {name} failed: {message}")]
    Helper {
        /// The helper's name.
        name: String,
        /// Its error message.
        message: String,
    },
    /// The expansion grew over `max` bytes.
    #[error("expansion longer than {max} bytes")]
    TooLong {
        /// The limit ([`MAX_EXPANDED_LEN`]).
        max: usize,
    },
    /// More than `max` helper calls.
    #[error("more than {max} helper calls")]
    TooManyHelperCalls {
        /// The limit ([`MAX_HELPER_CALLS`]).
        max: usize,
    },
}

/// An [`expand`] failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {pos}: {kind}")]
pub struct ExpandError {
    /// Byte offset into the template of the `${` concerned.
    pub pos: usize,
    /// What went wrong.
    pub kind: ExpandErrorKind,
}

/// Where expanded text goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Into a dialstring: variable values are escaped.
    Dialstring,
    /// Into helper arguments: variable values are plain text.
    Plain,
}

struct Expander<'v, 'h> {
    vars: &'v dyn Fn(&str) -> Option<String>,
    helper: &'h mut dyn FnMut(&str, &str) -> Result<String, String>,
    calls: usize,
}

/// The shape of one `${...}` reference.
enum Ref {
    /// `${name}`; the index after the `}`.
    Var { name_end: usize, end: usize },
    /// `${name(args)}`; args span and the index after the `}`.
    Call {
        name_end: usize,
        args_end: usize,
        end: usize,
    },
}

/// Length of an identifier (`[A-Za-z_][A-Za-z0-9_]*`) at the start of `s`.
fn ident_len(s: &[u8]) -> usize {
    match s.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => s
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .unwrap_or(s.len()),
        _ => 0,
    }
}

/// Finds the reference whose `${` is at `start` (byte index into `t`).
fn scan_ref(t: &[u8], start: usize) -> Result<Ref, ExpandError> {
    let body = start + 2;
    let id = ident_len(t.get(body..).unwrap_or_default());
    if id > 0 && t.get(body + id) == Some(&b'(') {
        let name_end = body + id;
        // Balanced scan of the arguments: nested `${...}` and `(...)`.
        let mut stack: Vec<u8> = vec![b')'];
        let mut i = name_end + 1;
        while i < t.len() {
            match t[i] {
                b'\\' => i += 1,
                b'$' if t.get(i + 1) == Some(&b'{') => {
                    stack.push(b'}');
                    i += 1;
                }
                b'(' => stack.push(b')'),
                c @ (b')' | b'}') if stack.last() == Some(&c) => {
                    stack.pop();
                    if stack.is_empty() {
                        return if t.get(i + 1) == Some(&b'}') {
                            Ok(Ref::Call {
                                name_end,
                                args_end: i,
                                end: i + 2,
                            })
                        } else {
                            Err(unclosed(t, start, body, name_end))
                        };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        return Err(unclosed(t, start, body, name_end));
    }
    match t
        .get(body..)
        .and_then(|rest| rest.iter().position(|&c| c == b'}'))
    {
        Some(off) => Ok(Ref::Var {
            name_end: body + off,
            end: body + off + 1,
        }),
        None => Err(ExpandError {
            pos: start,
            kind: ExpandErrorKind::Unterminated,
        }),
    }
}

fn unclosed(t: &[u8], start: usize, body: usize, name_end: usize) -> ExpandError {
    let name = t
        .get(body..name_end)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    ExpandError {
        pos: start,
        kind: ExpandErrorKind::UnclosedCall { name },
    }
}

/// `text[a..b]`, or "" if that is not a valid slice (it always is: every
/// boundary found by [`scan_ref`] sits next to an ASCII byte).
fn sub(text: &str, a: usize, b: usize) -> &str {
    text.get(a..b).unwrap_or_default()
}

impl Expander<'_, '_> {
    /// Expands `text` (found at byte `base` of the template) into `out`.
    fn run(
        &mut self,
        text: &str,
        base: usize,
        mode: Mode,
        out: &mut String,
    ) -> Result<(), ExpandError> {
        let t = text.as_bytes();
        let mut i = 0;
        let mut lit_start = 0;
        while i < t.len() {
            match t[i] {
                b'\\' => {
                    // `\x` is copied as is: the parser (or the helper) sees it.
                    i += 1;
                    while i < t.len() && !text.is_char_boundary(i + 1) {
                        i += 1;
                    }
                    i += 1;
                }
                b'$' if t.get(i + 1) == Some(&b'{') => {
                    push_limited(out, sub(text, lit_start, i), base + i)?;
                    let r = scan_ref(t, i).map_err(|e| ExpandError {
                        pos: base + e.pos,
                        ..e
                    })?;
                    match r {
                        Ref::Var { name_end, end } => {
                            let name = sub(text, i + 2, name_end);
                            if let Some(value) = (self.vars)(name) {
                                let value = match mode {
                                    Mode::Dialstring => escape(&value),
                                    Mode::Plain => value,
                                };
                                push_limited(out, &value, base + i)?;
                            }
                            i = end;
                        }
                        Ref::Call {
                            name_end,
                            args_end,
                            end,
                        } => {
                            self.calls += 1;
                            if self.calls > MAX_HELPER_CALLS {
                                return Err(ExpandError {
                                    pos: base + i,
                                    kind: ExpandErrorKind::TooManyHelperCalls {
                                        max: MAX_HELPER_CALLS,
                                    },
                                });
                            }
                            let name = sub(text, i + 2, name_end);
                            let mut args = String::with_capacity(args_end - name_end);
                            self.run(
                                sub(text, name_end + 1, args_end),
                                base + name_end + 1,
                                Mode::Plain,
                                &mut args,
                            )?;
                            let output =
                                (self.helper)(name, &args).map_err(|message| ExpandError {
                                    pos: base + i,
                                    kind: ExpandErrorKind::Helper {
                                        name: name.to_string(),
                                        message,
                                    },
                                })?;
                            push_limited(out, &output, base + i)?;
                            i = end;
                        }
                    }
                    lit_start = i;
                }
                _ => i += 1,
            }
        }
        push_limited(
            out,
            sub(text, lit_start, t.len().max(lit_start)),
            base + t.len(),
        )
    }
}

fn push_limited(out: &mut String, s: &str, pos: usize) -> Result<(), ExpandError> {
    if out.len() + s.len() > MAX_EXPANDED_LEN {
        return Err(ExpandError {
            pos,
            kind: ExpandErrorKind::TooLong {
                max: MAX_EXPANDED_LEN,
            },
        });
    }
    out.push_str(s);
    Ok(())
}

/// Expands a dialstring template once, before [`parse`].
///
/// * `${name}` becomes `vars(name)` passed through [`escape`], so a value can
///   never add syntax; an unknown variable becomes the empty string. The name
///   is everything up to the first `}`.
/// * `${name(args)}` (an identifier directly followed by `(`, the matching
///   `)` directly followed by `}`) becomes `helper(name, args)` inserted raw:
///   helper output *is* dialstring syntax. In `args`, `${var}` expands to the
///   plain, unescaped value and nested helper calls are allowed.
/// * Output is never expanded again: a value `${other}` comes out escaped,
///   and parses to the literal text `${other}`.
/// * `\x` is copied unchanged (so `\${x}` is not expanded and parses to the
///   literal `${x}`). `$${name}` is not special: the `$` stays and the inner
///   `${name}` expands.
///
/// Fails on an unterminated `${`, an unclosed call, a helper error, more
/// than [`MAX_HELPER_CALLS`] calls or more than [`MAX_EXPANDED_LEN`] bytes of
/// output (arguments included).
pub fn expand(
    template: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    helper: &mut dyn FnMut(&str, &str) -> Result<String, String>,
) -> Result<String, ExpandError> {
    let mut ex = Expander {
        vars,
        helper,
        calls: 0,
    };
    // Room for what variables and helpers usually add (a contact URI, a
    // domain) without growing the buffer.
    let mut out = String::with_capacity(template.len() + 128);
    ex.run(template, 0, Mode::Dialstring, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_path_agrees_with_the_parser() {
        for s in [
            "sofia/internal/1001@127.0.0.1:5100;transport=tcp",
            "user/1001@dialtone.local",
            "sofia/gateway/carrier/+15551234567",
            "loopback/9999/default",
            "error/USER_BUSY",
            "a/",
            "a//b",
        ] {
            let plain = parse_plain(s).unwrap_or_else(|| panic!("{s} is plain"));
            assert_eq!(
                Ok(plain),
                Parser::new(s).and_then(|p| p.dialstring()),
                "{s}"
            );
        }
        // Random strings over the syntax's characters (every other one from
        // the plain characters only, so that the plain path answers often):
        // wherever the plain path answers, the parser gives the same
        // dialstring.
        let full: Vec<char> = "ab/1:_@. [ ]{}<>,|\\'=^\té%".chars().collect();
        let plainish: Vec<char> = "ab/1:_@.%=^/".chars().collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut answered = 0;
        for round in 0..50_000 {
            let alphabet = if round % 2 == 0 { &plainish } else { &full };
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = (seed >> 59) as usize;
            let mut x = seed;
            let s: String = (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    alphabet[(x >> 33) as usize % alphabet.len()]
                })
                .collect();
            if let Some(plain) = parse_plain(&s) {
                answered += 1;
                assert_eq!(
                    Ok(plain),
                    Parser::new(&s).and_then(|p| p.dialstring()),
                    "{s:?}"
                );
            }
        }
        assert!(answered > 10_000, "only {answered} plain strings drawn");
    }

    #[test]
    fn lexer_removes_quotes_and_escapes() {
        let toks = lex(r"a'b,c'\,d").unwrap_or_default();
        let text: String = toks.iter().map(|t| t.ch).collect();
        assert_eq!(text, "ab,c,d");
        let lits: Vec<bool> = toks.iter().map(|t| t.lit).collect();
        assert_eq!(lits, [false, true, true, true, true, false]);
    }

    #[test]
    fn caret_context_points_at_position() {
        assert_eq!(caret_context("abc", 1), "abc\n ^");
        assert_eq!(caret_context("abc", 3), "abc\n   ^");
        assert_eq!(caret_context("a\tb", 2), "a b\n  ^");
        let long = "x".repeat(100);
        let ctx = caret_context(&long, 50);
        assert!(ctx.starts_with("..."));
        assert!(ctx.ends_with(&format!("\n{}^", " ".repeat(33))));
        // A position inside a multi-byte character does not panic.
        assert_eq!(caret_context("é", 1), "é\n^");
    }

    #[test]
    fn switch_true_values() {
        for t in ["true", "TRUE", "yes", "on", "t", "1", "-3", "allow"] {
            assert!(is_true(t), "{t}");
        }
        for f in ["false", "0", "", "no", "off", "truth"] {
            assert!(!is_true(f), "{f}");
        }
    }

    #[test]
    fn ident_len_rules() {
        assert_eq!(ident_len(b"sofia_contact(x"), 13);
        assert_eq!(ident_len(b"9abc"), 0);
        assert_eq!(ident_len(b""), 0);
        assert_eq!(ident_len(b"_a1"), 3);
    }
}
