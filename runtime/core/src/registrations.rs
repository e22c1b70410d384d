//! Current registrations of every tenant's users, whatever endpoint holds
//! them (SIP REGISTER, a Verto login, an RTMP session).
//!
//! Endpoints write here; the dialplan host reads here to answer the
//! `registrations` import that contact helpers (`sofia_contact`, ...) use.
//! Each tenant's table is indexed by user and by contact, so what a call
//! asks (a user's registrations, whether a contact is registered) costs the
//! same with ten registrations or a hundred thousand; readers share a lock
//! held only for that lookup. Persistence across restarts belongs to the endpoint that owns the
//! registrations (the SIP endpoint keeps its own database) and reloads them
//! here at start.

use std::collections::HashMap;

use parking_lot::RwLock;

/// One registration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Registration {
    /// `sofia`, `verto.rtc`, `rtmp`, ...
    pub endpoint: String,
    /// The endpoint profile, empty if none.
    pub profile: String,
    /// User part.
    pub user: String,
    /// Domain (the tenant).
    pub domain: String,
    /// Endpoint-specific contact (SIP URI, session UUID).
    pub contact: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires: u64,
    /// User-Agent, empty if none.
    pub user_agent: String,
    /// Source `ip:port`.
    pub network_addr: String,
}

/// One tenant's registrations, indexed for the two questions asked on every
/// call: a user's registrations, and whether a contact is registered.
#[derive(Default)]
struct TenantTable {
    /// User -> that user's registrations (a handful each).
    users: HashMap<String, Vec<Registration>>,
    /// Endpoint -> contact -> the users holding it (almost always one).
    contacts: HashMap<String, HashMap<String, Vec<String>>>,
}

impl TenantTable {
    fn upsert(&mut self, reg: Registration) {
        let list = self.users.entry(reg.user.clone()).or_default();
        let same = |r: &Registration| {
            r.endpoint == reg.endpoint && r.profile == reg.profile && r.contact == reg.contact
        };
        let holders = self
            .contacts
            .entry(reg.endpoint.clone())
            .or_default()
            .entry(reg.contact.clone())
            .or_default();
        if !holders.contains(&reg.user) {
            holders.push(reg.user.clone());
        }
        match list.iter_mut().find(|r| same(r)) {
            Some(r) => *r = reg,
            None => list.push(reg),
        }
    }

    fn remove(&mut self, endpoint: &str, user: &str, contact: &str) -> bool {
        let Some(list) = self.users.get_mut(user) else {
            return false;
        };
        let before = list.len();
        list.retain(|r| !(r.endpoint == endpoint && r.contact == contact));
        let removed = list.len() != before;
        if list.is_empty() {
            self.users.remove(user);
        }
        if removed {
            if let Some(by_contact) = self.contacts.get_mut(endpoint) {
                if let Some(holders) = by_contact.get_mut(contact) {
                    holders.retain(|u| u != user);
                    if holders.is_empty() {
                        by_contact.remove(contact);
                    }
                }
                if by_contact.is_empty() {
                    self.contacts.remove(endpoint);
                }
            }
        }
        removed
    }
}

/// Every tenant's registrations.
#[derive(Default)]
pub struct Registrations {
    tenants: RwLock<HashMap<String, TenantTable>>,
}

impl Registrations {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or refreshes a registration (same endpoint, profile, user and
    /// contact replace the old one).
    pub fn upsert(&self, reg: Registration) {
        let mut tenants = self.tenants.write();
        match tenants.get_mut(&reg.domain) {
            Some(t) => t.upsert(reg),
            None => tenants.entry(reg.domain.clone()).or_default().upsert(reg),
        }
    }

    /// Removes a registration; returns whether it existed.
    pub fn remove(&self, domain: &str, endpoint: &str, user: &str, contact: &str) -> bool {
        let mut tenants = self.tenants.write();
        let Some(t) = tenants.get_mut(domain) else {
            return false;
        };
        let removed = t.remove(endpoint, user, contact);
        if t.users.is_empty() {
            tenants.remove(domain);
        }
        removed
    }

    /// Unexpired registrations of `user` in `tenant`; an empty `endpoint` or
    /// `profile` matches any.
    pub fn lookup(
        &self,
        tenant: &str,
        endpoint: &str,
        profile: &str,
        user: &str,
        now_unix: u64,
    ) -> Vec<Registration> {
        let tenants = self.tenants.read();
        let Some(list) = tenants.get(tenant).and_then(|t| t.users.get(user)) else {
            return Vec::new();
        };
        list.iter()
            .filter(|r| {
                r.expires > now_unix
                    && (endpoint.is_empty() || r.endpoint == endpoint)
                    && (profile.is_empty() || r.profile == profile)
            })
            .cloned()
            .collect()
    }

    /// Whether `contact` on `endpoint` is a current registration of any user
    /// of `tenant` (the host's check that a `public` leg goes to a local
    /// user).
    pub fn is_registered_contact(
        &self,
        tenant: &str,
        endpoint: &str,
        contact: &str,
        now_unix: u64,
    ) -> bool {
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else {
            return false;
        };
        let Some(holders) = t.contacts.get(endpoint).and_then(|c| c.get(contact)) else {
            return false;
        };
        holders.iter().any(|u| {
            t.users.get(u).is_some_and(|list| {
                list.iter()
                    .any(|r| r.endpoint == endpoint && r.contact == contact && r.expires > now_unix)
            })
        })
    }

    /// Number of unexpired registrations across tenants.
    pub fn count(&self, now_unix: u64) -> usize {
        self.tenants
            .read()
            .values()
            .flat_map(|t| t.users.values())
            .map(|list| list.iter().filter(|r| r.expires > now_unix).count())
            .sum()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(user: &str, domain: &str, contact: &str, expires: u64) -> Registration {
        Registration {
            endpoint: "sofia".into(),
            profile: "internal".into(),
            user: user.into(),
            domain: domain.into(),
            contact: contact.into(),
            expires,
            user_agent: String::new(),
            network_addr: String::new(),
        }
    }

    #[test]
    fn tenants_are_separate_and_expiry_applies() {
        let r = Registrations::new();
        r.upsert(reg("1000", "a.test", "sip:1000@10.0.0.1", 100));
        r.upsert(reg("1000", "a.test", "sip:1000@10.0.0.2", 50));
        r.upsert(reg("1000", "b.test", "sip:1000@10.0.0.3", 100));
        assert_eq!(r.lookup("a.test", "", "", "1000", 10).len(), 2);
        assert_eq!(r.lookup("a.test", "sofia", "internal", "1000", 60).len(), 1);
        assert_eq!(r.lookup("c.test", "", "", "1000", 10).len(), 0);
        assert!(r.is_registered_contact("a.test", "sofia", "sip:1000@10.0.0.1", 10));
        assert!(!r.is_registered_contact("b.test", "sofia", "sip:1000@10.0.0.1", 10));
        r.upsert(reg("1000", "a.test", "sip:1000@10.0.0.1", 200));
        assert_eq!(r.lookup("a.test", "", "", "1000", 150).len(), 1);
        assert!(r.remove("a.test", "sofia", "1000", "sip:1000@10.0.0.1"));
        assert!(!r.remove("a.test", "sofia", "1000", "sip:1000@10.0.0.1"));
        assert!(!r.is_registered_contact("a.test", "sofia", "sip:1000@10.0.0.1", 10));
        assert_eq!(r.count(10), 2);
    }

    #[test]
    fn a_contact_shared_by_two_users_stays_registered_until_both_leave() {
        let r = Registrations::new();
        r.upsert(reg("1000", "a.test", "sip:shared@10.0.0.9", 100));
        r.upsert(reg("1001", "a.test", "sip:shared@10.0.0.9", 100));
        assert!(r.remove("a.test", "sofia", "1000", "sip:shared@10.0.0.9"));
        assert!(r.is_registered_contact("a.test", "sofia", "sip:shared@10.0.0.9", 10));
        assert!(!r.is_registered_contact("a.test", "sofia", "sip:shared@10.0.0.9", 100));
        assert!(r.remove("a.test", "sofia", "1001", "sip:shared@10.0.0.9"));
        assert!(!r.is_registered_contact("a.test", "sofia", "sip:shared@10.0.0.9", 10));
        assert_eq!(r.count(0), 0);
        // Another profile's binding of the same contact is another entry.
        let mut other = reg("1000", "a.test", "sip:1000@10.0.0.1", 100);
        r.upsert(other.clone());
        other.profile = "external".into();
        r.upsert(other);
        assert_eq!(r.lookup("a.test", "", "", "1000", 10).len(), 2);
        assert_eq!(r.lookup("a.test", "", "external", "1000", 10).len(), 1);
    }

    #[test]
    fn many_users_refresh_in_place() {
        let r = Registrations::new();
        for round in 0..3u64 {
            for u in 0..5000 {
                r.upsert(reg(
                    &u.to_string(),
                    "a.test",
                    &format!("sip:{u}@10.0.0.1"),
                    100 + round,
                ));
            }
        }
        assert_eq!(r.count(0), 5000);
        let got = r.lookup("a.test", "sofia", "", "4321", 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].expires, 102);
    }
}
