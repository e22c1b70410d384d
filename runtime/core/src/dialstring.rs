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
//! This module owns parsing ([`parse`]) and expansion ([`expand`]) and the
//! scope rules ([`Leg::effective_vars`]). It never creates a channel.
//!
//! **Expansion is done once, before parsing, and only helper output is
//! syntax.** `${name}` is replaced by the variable's value *escaped*, so a
//! value such as `1000,sofia/gateway/x/1` stays one literal leg target and can
//! never add a leg. `${helper(args)}` is replaced by what the dialstring helper
//! returns, unescaped, because building dialstring syntax (several contacts
//! joined with `,`) is exactly what helpers are for. Expanded text is never
//! expanded again.

use serde::Serialize;

/// FreeSWITCH's `MAX_PEERS`: entries per level of a dialstring.
pub const MAX_PEERS: usize = 128;

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
