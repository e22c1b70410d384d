//! The dialstring helpers, as plain functions over registrations.
//!
//! FreeSWITCH builds "ring every device of this user" dialstrings with
//! `${sofia_contact(...)}` and friends (`mod_sofia.c`, `mod_verto.c`,
//! `mod_rtmp.c`, `mod_dptools.c`). A Dialtone contact-helper component asks
//! the host for the tenant's registrations or group members and hands them to
//! the functions here, which pick and format them:
//!
//! | helper | argument | one leg per match | none |
//! |---|---|---|---|
//! | [`sofia_contact`] | `[profile\|*/]user[@domain]` | `sofia/<profile>/<contact-uri>` | `error/user_not_registered` |
//! | [`verto_contact`] | `user[@domain]` | `verto.rtc/u:<session>` | `error/user_not_registered` |
//! | [`rtmp_contact`] | `[profile\|*/]user[@domain]` | `rtmp/<session>/<user@domain>` | `error/user_not_registered` |
//! | [`user_contact`] | `user[@domain]` | any of the three above | `error/user_not_registered` |
//! | [`group_call`] | `group[@domain][+F\|+A\|+E]` | `user/<member>` | `error/NO_ROUTE_DESTINATION` |
//!
//! Legs are joined with `,` (ring them all), except `group_call` with `+F`
//! (`|`, one after the other) or `+E` (`:_:`, enterprise). The text differs
//! from FreeSWITCH's only by escapes: `sofia/internal/sip\:1000@192.0.2.7`,
//! `verto.rtc/u\:<session>`; the host removes them, so the endpoints see
//! FreeSWITCH's exact data.
//!
//! **Everything that came from a device is escaped.** A contact URI, a
//! session id, a profile name is written through the
//! [`dialstring`](crate::dialstring) builder, so a phone that registers the
//! contact `sip:x@h,sofia/gateway/g/1` produces one (unreachable) leg, never a
//! call through a gateway. The host removes the backslashes when it splits
//! the leg, so the endpoint still receives the plain URI. The helper's
//! *result* is the one place dialstring syntax (`,`, `|`, `:_:`) comes from.
//!
//! Domains: the host scopes every lookup to the tenant and returns nothing for
//! another domain. The functions here also keep only registrations whose user
//! matches and, when a domain is given, whose domain matches (ASCII
//! case-insensitively), so they are correct even over an unfiltered list.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::dialstring::{Dialstring, Leg};

/// What a helper returns when the user has no registration.
pub const NOT_REGISTERED: &str = "error/user_not_registered";

/// What `group_call` returns for a missing or empty group.
pub const NO_ROUTE: &str = "error/NO_ROUTE_DESTINATION";

/// The `endpoint` of a SIP registration.
pub const SOFIA: &str = "sofia";
/// The `endpoint` of a Verto websocket login.
pub const VERTO: &str = "verto.rtc";
/// The `endpoint` of an RTMP registration.
pub const RTMP: &str = "rtmp";

/// One current registration of a user: the plain-Rust twin of the WIT
/// `host.registration` record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The endpoint that holds it: `sofia`, `verto.rtc`, `rtmp`, ...
    pub endpoint: String,
    /// The endpoint profile it arrived on (`internal`, ...), empty if none.
    pub profile: String,
    /// The user part, e.g. `1000`.
    pub user: String,
    /// The domain (the tenant).
    pub domain: String,
    /// How to reach it: a SIP contact URI for `sofia`, a session id for
    /// `verto.rtc` and `rtmp`.
    pub contact: String,
    /// Expiry, in seconds since the Unix epoch.
    pub expires: u64,
    /// The client's User-Agent, empty if none.
    pub user_agent: String,
    /// The address the registration came from (`ip:port`).
    pub network_addr: String,
}

/// A helper's argument could not be understood. The component returns it
/// as the `err` string (the leg fails with `invalid-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperError {
    /// The helper, e.g. `sofia_contact`.
    pub helper: &'static str,
    /// What was wrong, with the expected form.
    pub message: String,
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.helper, self.message)
    }
}

impl core::error::Error for HelperError {}

/// Which contact helper a [`ContactRequest`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactHelper {
    /// `sofia_contact`
    Sofia,
    /// `verto_contact`
    Verto,
    /// `rtmp_contact`
    Rtmp,
    /// `user_contact`
    User,
}

impl ContactHelper {
    /// The helper's name in a dialstring (`sofia_contact`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ContactHelper::Sofia => "sofia_contact",
            ContactHelper::Verto => "verto_contact",
            ContactHelper::Rtmp => "rtmp_contact",
            ContactHelper::User => "user_contact",
        }
    }

    /// The accepted argument form, for error messages.
    fn usage(self) -> &'static str {
        match self {
            ContactHelper::Sofia | ContactHelper::Rtmp => "expected [profile|*/]user[@domain]",
            ContactHelper::Verto | ContactHelper::User => "expected user[@domain]",
        }
    }

    /// The endpoint whose registrations it reads; `None` for all.
    fn endpoint(self) -> Option<&'static str> {
        match self {
            ContactHelper::Sofia => Some(SOFIA),
            ContactHelper::Verto => Some(VERTO),
            ContactHelper::Rtmp => Some(RTMP),
            ContactHelper::User => None,
        }
    }

    /// Whether its argument may start with `profile/`.
    fn takes_profile(self) -> bool {
        matches!(self, ContactHelper::Sofia | ContactHelper::Rtmp)
    }
}

/// The arguments of the host's `registrations(endpoint, profile, user)` call
/// that a contact helper needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationQuery {
    /// The endpoint, empty for every endpoint.
    pub endpoint: &'static str,
    /// The profile, empty for every profile.
    pub profile: String,
    /// `user` or `user@domain`, exactly as the helper was given it.
    pub user: String,
}

/// A parsed contact-helper call: which registrations it wants and how to
/// format them.
///
/// Use [`ContactRequest::parse`], ask the host with
/// [`ContactRequest::query`], then [`ContactRequest::render`] what it
/// returned. The free functions ([`sofia_contact`], ...) do parse and render
/// in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    helper: ContactHelper,
    /// `None` for every profile (no profile, or `*`).
    profile: Option<String>,
    /// `user[@domain]` as given.
    user_spec: String,
    /// Length of the user part of `user_spec`.
    user_len: usize,
    /// Whether `user_spec` has a domain.
    has_domain: bool,
}

impl ContactRequest {
    /// Parse a helper's argument (surrounding whitespace is ignored).
    ///
    /// `sofia_contact` and `rtmp_contact` take `[profile|*/]user[@domain]`
    /// (no profile means every profile, like `*`); `verto_contact` and
    /// `user_contact` take `user[@domain]`. FreeSWITCH's optional suffixes
    /// (`/prefix`, `~ua`, `/nick`) are not supported and are refused.
    pub fn parse(helper: ContactHelper, args: &str) -> Result<ContactRequest, HelperError> {
        let fail = |what: &str| HelperError {
            helper: helper.name(),
            message: format!("{what} in {args:?}: {}", helper.usage()),
        };
        let args = args.trim();
        let (profile, user_spec) = match args.split_once('/') {
            Some((profile, rest)) if helper.takes_profile() => {
                if profile.is_empty() {
                    return Err(fail("empty profile"));
                }
                (Some(profile).filter(|p| *p != "*"), rest)
            }
            Some(_) => return Err(fail("unexpected '/'")),
            None => (None, args),
        };
        if user_spec.contains('/') {
            return Err(fail("unsupported suffix"));
        }
        let (user, domain) = match user_spec.split_once('@') {
            Some((user, domain)) => (user, Some(domain)),
            None => (user_spec, None),
        };
        if user.is_empty() {
            return Err(fail("empty user"));
        }
        if domain.is_some_and(|d| d.is_empty() || d.contains('@')) {
            return Err(fail("bad domain"));
        }
        Ok(ContactRequest {
            helper,
            profile: profile.map(str::to_owned),
            user_spec: user_spec.to_owned(),
            user_len: user.len(),
            has_domain: domain.is_some(),
        })
    }

    /// The helper this request is for.
    pub fn helper(&self) -> ContactHelper {
        self.helper
    }

    /// The user part (`1000`).
    pub fn user(&self) -> &str {
        self.user_spec.get(..self.user_len).unwrap_or_default()
    }

    /// The domain, if one was given.
    pub fn domain(&self) -> Option<&str> {
        if self.has_domain {
            self.user_spec.get(self.user_len + 1..)
        } else {
            None
        }
    }

    /// The profile filter; `None` for every profile.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// What to ask the host's `registrations` for.
    pub fn query(&self) -> RegistrationQuery {
        RegistrationQuery {
            endpoint: self.helper.endpoint().unwrap_or(""),
            profile: self.profile.clone().unwrap_or_default(),
            user: self.user_spec.clone(),
        }
    }

    /// Whether `reg` belongs to this request (endpoint, profile, user,
    /// domain).
    pub fn matches(&self, reg: &Registration) -> bool {
        self.helper.endpoint().is_none_or(|e| reg.endpoint == e)
            && self.profile.as_deref().is_none_or(|p| reg.profile == p)
            && reg.user == self.user()
            && self
                .domain()
                .is_none_or(|d| reg.domain.eq_ignore_ascii_case(d))
    }

    /// The dialstring fragment for these registrations: one leg per
    /// matching registration (in the given order, duplicates removed)
    /// joined with `,`, or [`NOT_REGISTERED`] if there is none.
    /// Registrations that cannot be dialled (an empty contact, a `sofia` or
    /// `rtmp` one without a profile, an endpoint with no contact form) are
    /// skipped.
    pub fn render(&self, regs: &[Registration]) -> String {
        let mut seen: Vec<String> = Vec::new();
        for reg in regs.iter().filter(|r| self.matches(r)) {
            if let Some(leg) = contact_leg(reg) {
                let text = leg.to_string();
                if !seen.contains(&text) {
                    seen.push(text);
                }
            }
        }
        if seen.is_empty() {
            NOT_REGISTERED.to_owned()
        } else {
            seen.join(",")
        }
    }
}

/// The leg that reaches one registration, if it can be dialled.
pub fn contact_leg(reg: &Registration) -> Option<Leg> {
    let contact = reg.contact.trim();
    if contact.is_empty() {
        return None;
    }
    match reg.endpoint.as_str() {
        SOFIA if !reg.profile.is_empty() => Some(Leg::sofia(&reg.profile, sip_uri(contact))),
        VERTO => Some(Leg::verto(contact)),
        RTMP if !reg.profile.is_empty() => {
            Some(Leg::rtmp(contact, &format!("{}@{}", reg.user, reg.domain)))
        }
        _ => None,
    }
}

/// The URI of a contact: the part inside `<...>` if it has one
/// (`"Alice" <sip:1000@h>` gives `sip:1000@h`), else the whole text.
fn sip_uri(contact: &str) -> &str {
    contact
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(contact, |(uri, _)| uri.trim())
}

/// `sofia_contact([profile|*/]user[@domain])`: one
/// `sofia/<profile>/<contact-uri>` per SIP registration, joined with `,`;
/// [`NOT_REGISTERED`] if there is none. A missing profile or `*` means every
/// profile; identical legs are written once.
///
/// ```
/// use dialtone_sdk::contact::{sofia_contact, Registration};
/// let reg = Registration {
///     endpoint: "sofia".into(),
///     profile: "internal".into(),
///     user: "1000".into(),
///     domain: "example.com".into(),
///     contact: "sip:1000@192.0.2.7:5060".into(),
///     ..Registration::default()
/// };
/// assert_eq!(
///     sofia_contact("*/1000@example.com", &[reg]).unwrap(),
///     r"sofia/internal/sip\:1000@192.0.2.7\:5060"
/// );
/// assert_eq!(sofia_contact("1001", &[]).unwrap(), "error/user_not_registered");
/// ```
pub fn sofia_contact(args: &str, regs: &[Registration]) -> Result<String, HelperError> {
    Ok(ContactRequest::parse(ContactHelper::Sofia, args)?.render(regs))
}

/// `verto_contact(user[@domain])`: one `verto.rtc/u:<session>` per Verto
/// login, joined with `,`; [`NOT_REGISTERED`] if there is none.
pub fn verto_contact(args: &str, regs: &[Registration]) -> Result<String, HelperError> {
    Ok(ContactRequest::parse(ContactHelper::Verto, args)?.render(regs))
}

/// `rtmp_contact([profile|*/]user[@domain])`: one
/// `rtmp/<session>/<user@domain>` per RTMP registration, joined with `,`;
/// [`NOT_REGISTERED`] if there is none.
pub fn rtmp_contact(args: &str, regs: &[Registration]) -> Result<String, HelperError> {
    Ok(ContactRequest::parse(ContactHelper::Rtmp, args)?.render(regs))
}

/// `user_contact(user[@domain])`: every registration of the user on an
/// endpoint with a contact form (`sofia`, `verto.rtc`, `rtmp`), in the given
/// order, joined with `,`; [`NOT_REGISTERED`] if there is none.
pub fn user_contact(args: &str, regs: &[Registration]) -> Result<String, HelperError> {
    Ok(ContactRequest::parse(ContactHelper::User, args)?.render(regs))
}

/// How `group_call` joins a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupMode {
    /// `+A` (the default): ring everyone at once, `,`.
    #[default]
    All,
    /// `+F`: one after the other, `|`.
    Failover,
    /// `+E`: enterprise, `:_:`.
    Enterprise,
}

/// A parsed `group_call(group[@domain][+F|+A|+E])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCall {
    group: String,
    mode: GroupMode,
}

impl GroupCall {
    /// Parse the argument (surrounding whitespace is ignored). As in
    /// FreeSWITCH, the text after the last `+` is the mode: `F`, `E`, and
    /// anything else (normally `A`) means ring all.
    pub fn parse(args: &str) -> Result<GroupCall, HelperError> {
        let args = args.trim();
        let (group, mode) = match args.rsplit_once('+') {
            Some((group, flag)) => (
                group,
                match flag {
                    "F" | "f" => GroupMode::Failover,
                    "E" | "e" => GroupMode::Enterprise,
                    _ => GroupMode::All,
                },
            ),
            None => (args, GroupMode::All),
        };
        let name = group.split_once('@').map_or(group, |(name, _)| name);
        if name.is_empty() {
            return Err(HelperError {
                helper: "group_call",
                message: format!("empty group in {args:?}: expected group[@domain][+F|+A|+E]"),
            });
        }
        Ok(GroupCall {
            group: group.to_owned(),
            mode,
        })
    }

    /// `group` or `group@domain`, as given: what to ask the host's
    /// `group-members` for.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// How the members are joined.
    pub fn mode(&self) -> GroupMode {
        self.mode
    }

    /// One `user/<member>` leg per member (members are `user@domain`, each
    /// escaped), joined by the mode's separator; [`NO_ROUTE`] for a missing
    /// (`None`) or empty group. Empty member names are skipped.
    pub fn render<S: AsRef<str>>(&self, members: Option<&[S]>) -> String {
        let mut ds = Dialstring::new();
        for member in members.unwrap_or_default() {
            let member = member.as_ref().trim();
            if member.is_empty() {
                continue;
            }
            let leg = match member.split_once('@') {
                Some((user, domain)) => Leg::user(user, domain),
                None => Leg::build("user", "", &[member], None),
            };
            ds = match self.mode {
                GroupMode::All => ds,
                GroupMode::Failover => ds.failover(),
                GroupMode::Enterprise => ds.enterprise(),
            }
            .leg(leg);
        }
        if ds.is_empty() {
            NO_ROUTE.to_owned()
        } else {
            ds.to_string()
        }
    }
}

/// `group_call(group[@domain][+F|+A|+E])` over the group's members
/// (`user@domain` strings, `None` if there is no such group): `user/` legs
/// joined with `,` (`+A`, default), `|` (`+F`) or `:_:` (`+E`);
/// [`NO_ROUTE`] for a missing or empty group.
///
/// ```
/// use dialtone_sdk::contact::group_call;
/// let members = ["1000@example.com".to_string(), "1001@example.com".to_string()];
/// assert_eq!(
///     group_call("sales+F", Some(&members)).unwrap(),
///     "user/1000@example.com|user/1001@example.com"
/// );
/// assert_eq!(group_call("nobody", None::<&[String]>).unwrap(), "error/NO_ROUTE_DESTINATION");
/// ```
pub fn group_call<S: AsRef<str>>(args: &str, members: Option<&[S]>) -> Result<String, HelperError> {
    Ok(GroupCall::parse(args)?.render(members))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialstring::tests::{all_legs, parse};

    fn reg(endpoint: &str, profile: &str, user: &str, contact: &str) -> Registration {
        Registration {
            endpoint: endpoint.into(),
            profile: profile.into(),
            user: user.into(),
            domain: "example.com".into(),
            contact: contact.into(),
            expires: 1_900_000_000,
            user_agent: "test".into(),
            network_addr: "192.0.2.7:5060".into(),
        }
    }

    fn regs() -> Vec<Registration> {
        vec![
            reg(
                "sofia",
                "internal",
                "1000",
                "sip:1000@192.0.2.7:5060;transport=udp",
            ),
            reg("sofia", "external", "1000", "sip:1000@198.51.100.9:5070"),
            reg(
                "sofia",
                "external",
                "1000",
                "sip:1000@192.0.2.7:5060;transport=udp",
            ),
            reg(
                "verto.rtc",
                "",
                "1000",
                "5a8e7d5c-7b0e-4d5f-9a3e-1c2b3d4e5f60",
            ),
            reg(
                "rtmp",
                "default",
                "1000",
                "c0ffee00-0000-4000-8000-000000000001",
            ),
            reg("sofia", "internal", "1001", "sip:1001@192.0.2.8"),
            reg("skinny", "internal", "1000", "device1"),
        ]
    }

    #[test]
    fn sofia_none_one_several() {
        assert_eq!(
            sofia_contact("*/1002@example.com", &regs()).unwrap(),
            NOT_REGISTERED
        );
        assert_eq!(sofia_contact("1000", &[]).unwrap(), NOT_REGISTERED);
        assert_eq!(
            sofia_contact("internal/1001@example.com", &regs()).unwrap(),
            r"sofia/internal/sip\:1001@192.0.2.8"
        );
        assert_eq!(
            sofia_contact("*/1000@example.com", &regs()).unwrap(),
            r"sofia/internal/sip\:1000@192.0.2.7\:5060;transport\=udp,sofia/external/sip\:1000@198.51.100.9\:5070,sofia/external/sip\:1000@192.0.2.7\:5060;transport\=udp"
        );
        // No profile behaves like `*`.
        assert_eq!(
            sofia_contact("1000", &regs()).unwrap(),
            sofia_contact("*/1000", &regs()).unwrap()
        );
    }

    #[test]
    fn sofia_profile_filter() {
        assert_eq!(
            sofia_contact("external/1000", &regs()).unwrap(),
            r"sofia/external/sip\:1000@198.51.100.9\:5070,sofia/external/sip\:1000@192.0.2.7\:5060;transport\=udp"
        );
        assert_eq!(
            sofia_contact("nosuch/1000", &regs()).unwrap(),
            NOT_REGISTERED
        );
    }

    #[test]
    fn sofia_dedupes_identical_contacts() {
        let mut r = regs();
        r.push(reg(
            "sofia",
            "internal",
            "1000",
            "sip:1000@192.0.2.7:5060;transport=udp",
        ));
        r.push(reg(
            "sofia",
            "internal",
            "1000",
            " <sip:1000@192.0.2.7:5060;transport=udp> ",
        ));
        let out = sofia_contact("internal/1000", &r).unwrap();
        assert_eq!(
            out,
            r"sofia/internal/sip\:1000@192.0.2.7\:5060;transport\=udp"
        );
    }

    #[test]
    fn sofia_takes_the_uri_out_of_a_name_addr() {
        let r = [reg(
            "sofia",
            "internal",
            "1000",
            "\"Alice\" <sip:1000@192.0.2.7>;expires=60",
        )];
        assert_eq!(
            sofia_contact("1000", &r).unwrap(),
            r"sofia/internal/sip\:1000@192.0.2.7"
        );
    }

    #[test]
    fn domain_must_match() {
        assert_eq!(
            sofia_contact("1000@other.example", &regs()).unwrap(),
            NOT_REGISTERED
        );
        assert_ne!(
            sofia_contact("1000@EXAMPLE.com", &regs()).unwrap(),
            NOT_REGISTERED
        );
        let req = ContactRequest::parse(ContactHelper::Sofia, " */1000@example.com ").unwrap();
        assert_eq!(
            (req.user(), req.domain(), req.profile()),
            ("1000", Some("example.com"), None)
        );
        assert_eq!(
            req.query(),
            RegistrationQuery {
                endpoint: "sofia",
                profile: String::new(),
                user: "1000@example.com".into()
            }
        );
        let req = ContactRequest::parse(ContactHelper::Rtmp, "default/1000").unwrap();
        assert_eq!(req.query().profile, "default");
        assert_eq!(req.domain(), None);
        assert_eq!(
            ContactRequest::parse(ContactHelper::User, "1000")
                .unwrap()
                .query()
                .endpoint,
            ""
        );
    }

    #[test]
    fn malicious_contact_is_one_leg() {
        let r = [reg(
            "sofia",
            "internal",
            "1000",
            "sip:x@h,sofia/gateway/g/1",
        )];
        let out = sofia_contact("1000", &r).unwrap();
        assert_eq!(out, r"sofia/internal/sip\:x@h\,sofia\/gateway\/g\/1");
        let legs = all_legs(&parse(&out));
        assert_eq!(legs.len(), 1);
        assert_eq!(legs[0].endpoint, "sofia");
        assert_eq!(legs[0].data, "internal/sip:x@h,sofia/gateway/g/1");

        // Every kind of delimiter, in every field a device controls.
        let evil = "a:_:b|c,d[e]{f}<g>^^h${i}'j'\\k/l";
        let evil_uri = "sip:a:_:b|c,d[e]{f}^^h${i}'j'\\k/l";
        let r = [
            Registration {
                domain: evil.into(),
                ..reg("sofia", evil, "1000", evil_uri)
            },
            Registration {
                domain: evil.into(),
                ..reg("verto.rtc", evil, "1000", evil)
            },
            Registration {
                domain: evil.into(),
                ..reg("rtmp", evil, "1000", evil)
            },
        ];
        let out = user_contact("1000", &r).unwrap();
        let legs = all_legs(&parse(&out));
        assert_eq!(legs.len(), 3, "{out}");
        assert_eq!(legs[0].data, format!("{evil}/{evil_uri}"));
        assert_eq!(legs[1].data, format!("u:{evil}"));
        assert_eq!(legs[2].data, format!("{evil}/1000@{evil}"));
    }

    #[test]
    fn verto_and_rtmp() {
        assert_eq!(
            verto_contact("1000@example.com", &regs()).unwrap(),
            r"verto.rtc/u\:5a8e7d5c-7b0e-4d5f-9a3e-1c2b3d4e5f60"
        );
        assert_eq!(verto_contact("1001", &regs()).unwrap(), NOT_REGISTERED);
        assert_eq!(
            rtmp_contact("default/1000@example.com", &regs()).unwrap(),
            "rtmp/c0ffee00-0000-4000-8000-000000000001/1000@example.com"
        );
        assert_eq!(
            rtmp_contact("other/1000@example.com", &regs()).unwrap(),
            NOT_REGISTERED
        );
        assert_eq!(
            rtmp_contact("*/1000", &regs()).unwrap(),
            rtmp_contact("1000", &regs()).unwrap()
        );
    }

    #[test]
    fn user_contact_joins_every_endpoint() {
        assert_eq!(
            user_contact("1000", &regs()).unwrap(),
            [
                r"sofia/internal/sip\:1000@192.0.2.7\:5060;transport\=udp",
                r"sofia/external/sip\:1000@198.51.100.9\:5070",
                r"sofia/external/sip\:1000@192.0.2.7\:5060;transport\=udp",
                r"verto.rtc/u\:5a8e7d5c-7b0e-4d5f-9a3e-1c2b3d4e5f60",
                "rtmp/c0ffee00-0000-4000-8000-000000000001/1000@example.com",
            ]
            .join(",")
        );
        assert_eq!(user_contact("1002", &regs()).unwrap(), NOT_REGISTERED);
    }

    #[test]
    fn undiallable_registrations_are_skipped() {
        let r = [
            reg("sofia", "", "1000", "sip:1000@h"),
            reg("sofia", "internal", "1000", "  "),
            reg("rtmp", "", "1000", "sess"),
            reg("skinny", "internal", "1000", "dev"),
        ];
        assert_eq!(user_contact("1000", &r).unwrap(), NOT_REGISTERED);
    }

    #[test]
    fn bad_arguments_are_errors() {
        for (helper, args) in [
            (ContactHelper::Sofia, ""),
            (ContactHelper::Sofia, "*/"),
            (ContactHelper::Sofia, "/1000"),
            (ContactHelper::Sofia, "*/1000@"),
            (ContactHelper::Sofia, "*/1000@a@b"),
            (ContactHelper::Sofia, "*/1000@example.com/prefix"),
            (ContactHelper::Sofia, "@example.com"),
            (ContactHelper::Verto, "internal/1000"),
            (ContactHelper::User, "*/1000"),
            (ContactHelper::Rtmp, "default/1000@example.com/nick"),
        ] {
            let err = ContactRequest::parse(helper, args).unwrap_err();
            assert_eq!(err.helper, helper.name());
            assert!(err.to_string().starts_with(helper.name()), "{err}");
        }
        assert!(sofia_contact("", &[]).is_err());
        assert!(verto_contact("a/b", &[]).is_err());
        assert!(rtmp_contact("", &[]).is_err());
        assert!(user_contact("", &[]).is_err());
    }

    fn members(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn group_joins() {
        let m = members(&["1000@example.com", "1001@example.com", "1002@example.com"]);
        assert_eq!(
            group_call("sales", Some(&m)).unwrap(),
            "user/1000@example.com,user/1001@example.com,user/1002@example.com"
        );
        assert_eq!(
            group_call("sales@example.com+A", Some(&m)).unwrap(),
            "user/1000@example.com,user/1001@example.com,user/1002@example.com"
        );
        assert_eq!(
            group_call("sales+F", Some(&m)).unwrap(),
            "user/1000@example.com|user/1001@example.com|user/1002@example.com"
        );
        assert_eq!(
            group_call("sales+E", Some(&m)).unwrap(),
            "user/1000@example.com:_:user/1001@example.com:_:user/1002@example.com"
        );
        assert_eq!(
            group_call("sales+F", Some(&m[..1])).unwrap(),
            "user/1000@example.com"
        );
    }

    #[test]
    fn group_missing_or_empty() {
        assert_eq!(group_call("sales", None::<&[String]>).unwrap(), NO_ROUTE);
        assert_eq!(
            group_call("sales+E", Some(&members(&[]))).unwrap(),
            NO_ROUTE
        );
        assert_eq!(
            group_call("sales", Some(&members(&["", " "]))).unwrap(),
            NO_ROUTE
        );
        assert!(group_call("", None::<&[String]>).is_err());
        assert!(group_call("+F", None::<&[String]>).is_err());
        assert!(group_call("@example.com", None::<&[String]>).is_err());
    }

    #[test]
    fn group_parse() {
        let g = GroupCall::parse(" sales@example.com+F ").unwrap();
        assert_eq!(
            (g.group(), g.mode()),
            ("sales@example.com", GroupMode::Failover)
        );
        let g = GroupCall::parse("sales+x").unwrap();
        assert_eq!((g.group(), g.mode()), ("sales", GroupMode::All));
        let g = GroupCall::parse("sales+e").unwrap();
        assert_eq!(g.mode(), GroupMode::Enterprise);
    }

    #[test]
    fn group_member_injection_is_one_leg_each() {
        let m = members(&["1000@example.com,sofia/gateway/g/1", "x|y@z:_:w", "bare"]);
        let out = group_call("sales", Some(&m)).unwrap();
        assert_eq!(
            out,
            r"user/1000@example.com\,sofia\/gateway\/g\/1,user/x\|y@z\:_\:w,user/bare"
        );
        let legs = all_legs(&parse(&out));
        let data: Vec<&str> = legs.iter().map(|l| l.data.as_str()).collect();
        assert_eq!(
            data,
            ["1000@example.com,sofia/gateway/g/1", "x|y@z:_:w", "bare"]
        );
    }
}
