//! The host imports' data: the directory snapshot, the registrations and the
//! variables, seen through the tenant the dialplan host names.

use std::sync::Arc;

use arc_swap::ArcSwap;
use dialtone_core::directory::split_user_domain;
use dialtone_core::registrations::{unix_now, Registration, Registrations};
use dialtone_core::switch::SharedDirectory;
use dialtone_dialplan::{DirectoryUser, TenantServices};

/// [`TenantServices`] over the switch's live data.
pub struct SwitchServices {
    /// The directory snapshot (shared with the core).
    pub directory: SharedDirectory,
    /// Registrations of every endpoint.
    pub registrations: Arc<Registrations>,
    /// Switch-wide `[variables]`.
    pub globals: ArcSwap<Vec<(String, String)>>,
}

impl TenantServices for SwitchServices {
    fn registrations(
        &self,
        tenant: &str,
        endpoint: &str,
        profile: &str,
        user: &str,
    ) -> Vec<Registration> {
        self.registrations
            .lookup(tenant, endpoint, profile, user, unix_now())
    }

    fn lookup_user(&self, tenant: &str, user: &str) -> Option<DirectoryUser> {
        let dir = self.directory.load();
        let t = dir.tenant(tenant)?;
        let u = t.user(user)?;
        Some(DirectoryUser {
            id: u.id.clone(),
            params: u.params.clone(),
            variables: u.variables.clone(),
            groups: t.user_groups(&u.id).map(|g| g.to_vec()).unwrap_or_default(),
        })
    }

    fn group_members(&self, tenant: &str, group: &str) -> Option<Vec<String>> {
        let dir = self.directory.load();
        let t = dir.tenant(tenant)?;
        t.group_members(group).map(|m| {
            m.iter()
                .map(|u| format!("{}@{}", split_user_domain(u).0, tenant))
                .collect()
        })
    }

    fn global_variable(&self, tenant: &str, name: &str) -> Option<String> {
        if name == "domain" || name == "domain_name" {
            return Some(tenant.to_string());
        }
        let dir = self.directory.load();
        if let Some(v) = dir.tenant(tenant).and_then(|t| t.variable(name)) {
            return Some(v.to_string());
        }
        self.globals
            .load()
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}
