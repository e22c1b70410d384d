//! The user directory: who exists in each tenant, with what credentials,
//! params, variables and groups.
//!
//! A tenant is a domain, as in FreeSWITCH. Each tenant has its own users and
//! groups; `user/1000@example.com` and `group/sales@example.com` are resolved
//! against the tenant named after the `@`.
//!
//! This module owns the in-memory model and its lookups only: it does no I/O
//! and parses no files (the switch's configuration loader builds it). A
//! [`Directory`] is immutable once built; a reload builds a new one and
//! swaps it in whole, so a lookup never sees half of an update.
//!
//! Group membership is kept consistent in both directions: a group lists its
//! members and every user lists the groups that contain it, whichever side
//! the configuration named the membership on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The dial-string used for users that have none, and the default tenant
/// dial-string: FreeSWITCH vanilla's (`conf/vanilla/directory/default.xml`).
/// It rings every registered SIP contact and every Verto session of the user.
pub const VANILLA_DIAL_STRING: &str = "{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@${dialed_domain}}${sofia_contact(*/${dialed_user}@${dialed_domain})},${verto_contact(${dialed_user}@${dialed_domain})}";

/// The name of the user param that holds the user's dial-string.
pub const DIAL_STRING_PARAM: &str = "dial-string";

/// Splits `1000@example.com` into `("1000", Some("example.com"))`.
///
/// The split is at the first `@`, as `mod_dptools`'s `user/` endpoint does.
/// Without an `@`, or with nothing after it, the domain is `None`.
pub fn split_user_domain(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((user, domain)) if !domain.is_empty() => (user, Some(domain)),
        Some((user, _)) => (user, None),
        None => (s, None),
    }
}

/// Why a [`Directory`] or [`TenantDirectory`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Two tenants have the same domain.
    #[error("duplicate tenant domain `{0}`")]
    DuplicateDomain(String),
    /// Two users of one tenant have the same id.
    #[error("duplicate user `{user}` in domain `{domain}`")]
    DuplicateUser {
        /// The tenant.
        domain: String,
        /// The user id given twice.
        user: String,
    },
    /// A group names a member that is not a user of the tenant.
    #[error("group `{group}` in domain `{domain}` names `{member}`, which is not a user")]
    UnknownMember {
        /// The tenant.
        domain: String,
        /// The group.
        group: String,
        /// The member that does not exist.
        member: String,
    },
}

/// One user of a tenant.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct User {
    /// The user id: the part before `@` (`1000`).
    pub id: String,
    /// The plain-text SIP password, if the user has one.
    pub password: Option<String>,
    /// The SIP digest `A1` hash (`md5(user:domain:password)`, lower-case hex),
    /// the alternative to a plain-text password.
    pub a1_hash: Option<String>,
    /// Params such as `dial-string`, in configuration order. Credentials are
    /// never params: they live in [`User::password`] and [`User::a1_hash`].
    pub params: Vec<(String, String)>,
    /// Channel variables set for the user's calls (`user_context`,
    /// `effective_caller_id_name`, ...), in configuration order.
    pub variables: Vec<(String, String)>,
    /// The groups that contain this user, sorted by name. When the user is
    /// part of a [`TenantDirectory`], this includes groups that listed the
    /// user as a member.
    pub groups: Vec<String>,
}

impl User {
    /// A user with this id and nothing else.
    pub fn new(id: impl Into<String>) -> User {
        User {
            id: id.into(),
            ..User::default()
        }
    }

    /// The value of a param (the first one, if given twice).
    pub fn param(&self, name: &str) -> Option<&str> {
        lookup(&self.params, name)
    }

    /// The value of a variable (the first one, if given twice).
    pub fn variable(&self, name: &str) -> Option<&str> {
        lookup(&self.variables, name)
    }
}

/// Credentials are not printed.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("a1_hash", &self.a1_hash.as_ref().map(|_| "<redacted>"))
            .field("params", &self.params)
            .field("variables", &self.variables)
            .field("groups", &self.groups)
            .finish()
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The directory of one tenant (domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDirectory {
    domain: String,
    variables: Vec<(String, String)>,
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Vec<String>>,
    default_dial_string: String,
}

impl TenantDirectory {
    /// Builds a tenant's directory.
    ///
    /// `groups` maps a group name to members listed on the group's side, in
    /// ring order. Each user's own [`User::groups`] list adds the user to
    /// those groups (after the listed members, in user-id order), creating
    /// the group if needed. Duplicates are dropped, and every user's
    /// `groups` is rewritten to the sorted list of groups that contain it.
    ///
    /// `default_dial_string` is used for users without a `dial-string`
    /// param; pass [`VANILLA_DIAL_STRING`] for FreeSWITCH's behaviour.
    ///
    /// Fails if a user id is given twice or a group names a member that is
    /// not among `users`.
    pub fn new(
        domain: impl Into<String>,
        variables: Vec<(String, String)>,
        users: impl IntoIterator<Item = User>,
        groups: BTreeMap<String, Vec<String>>,
        default_dial_string: impl Into<String>,
    ) -> Result<TenantDirectory, DirectoryError> {
        let domain = domain.into();
        let mut by_id: BTreeMap<String, User> = BTreeMap::new();
        for user in users {
            if by_id.contains_key(&user.id) {
                return Err(DirectoryError::DuplicateUser {
                    domain,
                    user: user.id,
                });
            }
            by_id.insert(user.id.clone(), user);
        }

        let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, members) in groups {
            let list = merged.entry(group.clone()).or_default();
            for member in members {
                if !by_id.contains_key(&member) {
                    return Err(DirectoryError::UnknownMember {
                        domain,
                        group,
                        member,
                    });
                }
                if !list.contains(&member) {
                    list.push(member);
                }
            }
        }
        for user in by_id.values() {
            for group in &user.groups {
                let list = merged.entry(group.clone()).or_default();
                if !list.contains(&user.id) {
                    list.push(user.id.clone());
                }
            }
        }

        for user in by_id.values_mut() {
            user.groups.clear();
        }
        for (group, members) in &merged {
            for member in members {
                if let Some(user) = by_id.get_mut(member) {
                    // `merged` is iterated in name order, so this stays sorted.
                    user.groups.push(group.clone());
                }
            }
        }

        Ok(TenantDirectory {
            domain,
            variables,
            users: by_id,
            groups: merged,
            default_dial_string: default_dial_string.into(),
        })
    }

    /// The tenant's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The tenant's variables, in configuration order.
    pub fn variables(&self) -> &[(String, String)] {
        &self.variables
    }

    /// The value of a tenant variable (the first one, if given twice).
    pub fn variable(&self, name: &str) -> Option<&str> {
        lookup(&self.variables, name)
    }

    /// A user by id (the part before `@`).
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    /// All users, by id.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// How many users the tenant has.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// The members of a group, in ring order; `None` if there is no such
    /// group.
    pub fn group_members(&self, name: &str) -> Option<&[String]> {
        self.groups.get(name).map(Vec::as_slice)
    }

    /// The names of all groups, sorted.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// The groups that contain a user, sorted; `None` if there is no such
    /// user.
    pub fn user_groups(&self, id: &str) -> Option<&[String]> {
        self.users.get(id).map(|u| u.groups.as_slice())
    }

    /// The dial-string used for users without a `dial-string` param.
    pub fn default_dial_string(&self) -> &str {
        &self.default_dial_string
    }

    /// The dial-string that `user/<id>@<domain>` originates: the user's
    /// `dial-string` param, else the tenant default.
    pub fn dial_string<'a>(&'a self, user: &'a User) -> &'a str {
        user.param(DIAL_STRING_PARAM)
            .unwrap_or(&self.default_dial_string)
    }
}

/// Every tenant's directory, by domain. Cheap to clone: tenants are shared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directory {
    tenants: BTreeMap<String, Arc<TenantDirectory>>,
}

impl Directory {
    /// Builds a directory from tenants; fails if two share a domain.
    pub fn new(
        tenants: impl IntoIterator<Item = TenantDirectory>,
    ) -> Result<Directory, DirectoryError> {
        let mut directory = Directory::default();
        for tenant in tenants {
            directory.insert(tenant)?;
        }
        Ok(directory)
    }

    /// Adds a tenant; fails (and changes nothing) if its domain is taken.
    pub fn insert(&mut self, tenant: TenantDirectory) -> Result<(), DirectoryError> {
        if self.tenants.contains_key(&tenant.domain) {
            return Err(DirectoryError::DuplicateDomain(tenant.domain));
        }
        self.tenants.insert(tenant.domain.clone(), Arc::new(tenant));
        Ok(())
    }

    /// A tenant by domain. Domains are case-insensitive, so a domain with
    /// upper-case letters finds the tenant configured in lower case.
    pub fn tenant(&self, domain: &str) -> Option<&Arc<TenantDirectory>> {
        match self.tenants.get(domain) {
            Some(t) => Some(t),
            None if domain.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.tenants.get(&domain.to_ascii_lowercase())
            }
            None => None,
        }
    }

    /// A user by id and domain.
    pub fn user(&self, domain: &str, id: &str) -> Option<&User> {
        self.tenant(domain)?.user(id)
    }

    /// All tenants, sorted by domain.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<TenantDirectory>> {
        self.tenants.values()
    }

    /// How many tenants there are.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether there is no tenant.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, groups: &[&str]) -> User {
        User {
            id: id.into(),
            password: Some("secret".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    fn tenant() -> TenantDirectory {
        let mut groups = BTreeMap::new();
        groups.insert("sales".to_string(), vec!["1001".to_string()]);
        groups.insert("empty".to_string(), vec![]);
        let mut with_ds = user("1002", &[]);
        with_ds.params = vec![(DIAL_STRING_PARAM.into(), "sofia/internal/1002".into())];
        TenantDirectory::new(
            "example.com",
            vec![("domain_name".into(), "example.com".into())],
            vec![
                user("1000", &["sales", "support"]),
                user("1001", &[]),
                with_ds,
            ],
            groups,
            VANILLA_DIAL_STRING,
        )
        .unwrap()
    }

    #[test]
    fn split() {
        assert_eq!(
            split_user_domain("1000@example.com"),
            ("1000", Some("example.com"))
        );
        assert_eq!(split_user_domain("1000"), ("1000", None));
        assert_eq!(split_user_domain("1000@"), ("1000", None));
        assert_eq!(split_user_domain("a@b@c"), ("a", Some("b@c")));
        assert_eq!(split_user_domain(""), ("", None));
    }

    #[test]
    fn groups_merge_both_sides() {
        let t = tenant();
        // Listed members first, then users that joined by their own list.
        assert_eq!(
            t.group_members("sales").unwrap(),
            &["1001".to_string(), "1000".to_string()]
        );
        assert_eq!(t.group_members("support").unwrap(), &["1000".to_string()]);
        assert_eq!(t.group_members("empty").unwrap(), &[] as &[String]);
        assert_eq!(t.group_members("nope"), None);
        assert_eq!(
            t.user_groups("1000").unwrap(),
            &["sales".to_string(), "support".to_string()]
        );
        assert_eq!(t.user_groups("1001").unwrap(), &["sales".to_string()]);
        assert_eq!(t.user_groups("1002").unwrap(), &[] as &[String]);
        assert_eq!(t.user_groups("9999"), None);
        assert_eq!(
            t.group_names().collect::<Vec<_>>(),
            ["empty", "sales", "support"]
        );
    }

    #[test]
    fn duplicate_group_members_are_dropped() {
        let mut groups = BTreeMap::new();
        groups.insert("g".to_string(), vec!["1".to_string(), "1".to_string()]);
        let t =
            TenantDirectory::new("d", vec![], vec![user("1", &["g", "g"])], groups, "x").unwrap();
        assert_eq!(t.group_members("g").unwrap(), &["1".to_string()]);
        assert_eq!(t.user_groups("1").unwrap(), &["g".to_string()]);
    }

    #[test]
    fn unknown_member_and_duplicate_user() {
        let mut groups = BTreeMap::new();
        groups.insert("g".to_string(), vec!["2".to_string()]);
        assert_eq!(
            TenantDirectory::new("d", vec![], vec![user("1", &[])], groups, "x"),
            Err(DirectoryError::UnknownMember {
                domain: "d".into(),
                group: "g".into(),
                member: "2".into()
            })
        );
        assert_eq!(
            TenantDirectory::new(
                "d",
                vec![],
                vec![user("1", &[]), user("1", &[])],
                BTreeMap::new(),
                "x"
            ),
            Err(DirectoryError::DuplicateUser {
                domain: "d".into(),
                user: "1".into()
            })
        );
    }

    #[test]
    fn dial_strings() {
        let t = tenant();
        assert_eq!(t.dial_string(t.user("1000").unwrap()), VANILLA_DIAL_STRING);
        assert_eq!(
            t.dial_string(t.user("1002").unwrap()),
            "sofia/internal/1002"
        );
        assert_eq!(t.default_dial_string(), VANILLA_DIAL_STRING);
    }

    #[test]
    fn vanilla_dial_string_shape() {
        // The dial-string is a `{^^:...}` global block followed by two
        // helper calls joined with `,`.
        assert!(VANILLA_DIAL_STRING.starts_with("{^^:sip_invite_domain=${dialed_domain}:"));
        assert!(
            VANILLA_DIAL_STRING.contains("}${sofia_contact(*/${dialed_user}@${dialed_domain})},")
        );
        assert!(VANILLA_DIAL_STRING.ends_with("${verto_contact(${dialed_user}@${dialed_domain})}"));
    }

    #[test]
    fn directory_lookups() {
        let d = Directory::new(vec![tenant()]).unwrap();
        assert_eq!(d.len(), 1);
        assert!(!d.is_empty());
        assert_eq!(d.tenant("example.com").unwrap().domain(), "example.com");
        assert_eq!(d.tenant("Example.COM").unwrap().domain(), "example.com");
        assert!(d.tenant("other.com").is_none());
        assert_eq!(d.user("example.com", "1000").unwrap().id, "1000");
        assert!(d.user("example.com", "4242").is_none());
        assert_eq!(
            d.tenant("example.com").unwrap().variable("domain_name"),
            Some("example.com")
        );
        assert_eq!(d.tenants().count(), 1);
        assert_eq!(d.tenant("example.com").unwrap().user_count(), 3);
        assert_eq!(
            Directory::new(vec![tenant(), tenant()]),
            Err(DirectoryError::DuplicateDomain("example.com".into()))
        );
        assert!(Directory::default().is_empty());
    }

    #[test]
    fn user_accessors_and_redacted_debug() {
        let mut u = user("1000", &[]);
        u.variables = vec![
            ("user_context".into(), "default".into()),
            ("user_context".into(), "shadowed".into()),
        ];
        assert_eq!(u.variable("user_context"), Some("default"));
        assert_eq!(u.param("dial-string"), None);
        let dbg = format!("{u:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert_eq!(User::new("7").id, "7");
    }
}
