//! Current registrations of every tenant's users, whatever endpoint holds
//! them (SIP REGISTER, a Verto login, an RTMP session).
//!
//! Endpoints write here; the dialplan host reads here to answer the
//! `registrations` import that contact helpers (`sofia_contact`, ...) use.
//! Reads are lock-free snapshots per tenant; writes copy the tenant's small
//! table. Persistence across restarts belongs to the endpoint that owns the
//! registrations (the SIP endpoint keeps its own database) and reloads them
//! here at start.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

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

type TenantTable = Arc<Vec<Registration>>;

/// Every tenant's registrations.
#[derive(Default)]
pub struct Registrations {
    tenants: Mutex<HashMap<String, Arc<ArcSwap<Vec<Registration>>>>>,
}

impl Registrations {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self, tenant: &str) -> Arc<ArcSwap<Vec<Registration>>> {
        let mut map = self.tenants.lock();
        map.entry(tenant.to_string()).or_default().clone()
    }

    /// Adds or refreshes a registration (same endpoint, profile, user and
    /// contact replace the old one).
    pub fn upsert(&self, reg: Registration) {
        let table = self.table(&reg.domain);
        table.rcu(|cur| {
            let mut next: Vec<Registration> = cur
                .iter()
                .filter(|r| {
                    !(r.endpoint == reg.endpoint
                        && r.profile == reg.profile
                        && r.user == reg.user
                        && r.contact == reg.contact)
                })
                .cloned()
                .collect();
            next.push(reg.clone());
            next
        });
    }

    /// Removes a registration; returns whether it existed.
    pub fn remove(&self, domain: &str, endpoint: &str, user: &str, contact: &str) -> bool {
        let table = self.table(domain);
        let mut removed = false;
        table.rcu(|cur| {
            let next: Vec<Registration> = cur
                .iter()
                .filter(|r| !(r.endpoint == endpoint && r.user == user && r.contact == contact))
                .cloned()
                .collect();
            removed = next.len() != cur.len();
            next
        });
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
        let table: TenantTable = match self.tenants.lock().get(tenant) {
            Some(t) => t.load_full(),
            None => return Vec::new(),
        };
        table
            .iter()
            .filter(|r| {
                r.user == user
                    && r.expires > now_unix
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
        match self.tenants.lock().get(tenant) {
            Some(t) => t
                .load()
                .iter()
                .any(|r| r.endpoint == endpoint && r.contact == contact && r.expires > now_unix),
            None => false,
        }
    }

    /// Number of unexpired registrations across tenants.
    pub fn count(&self, now_unix: u64) -> usize {
        self.tenants
            .lock()
            .values()
            .map(|t| t.load().iter().filter(|r| r.expires > now_unix).count())
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
        assert_eq!(r.count(10), 2);
    }
}
