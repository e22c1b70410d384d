//! The data behind the host imports, provided by the switch.
//!
//! The host layer (not the implementor) scopes every call to the tenant whose
//! component is running: a `user@domain` naming another domain never reaches
//! these methods, so an implementation only ever sees its own tenant's names.

use dialtone_core::registrations::Registration;

/// A directory user as the `lookup-user` import returns it. Secrets are never
/// part of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryUser {
    /// User id.
    pub id: String,
    /// Directory params (no `password`, no `a1-hash`).
    pub params: Vec<(String, String)>,
    /// Directory variables.
    pub variables: Vec<(String, String)>,
    /// Groups the user belongs to.
    pub groups: Vec<String>,
}

/// Tenant data the host imports read. Calls must be quick and must not block
/// on I/O: they run inside a guest invocation, under its deadline.
pub trait TenantServices: Send + Sync {
    /// Unexpired registrations of `user` (no domain part) in `tenant`.
    fn registrations(
        &self,
        tenant: &str,
        endpoint: &str,
        profile: &str,
        user: &str,
    ) -> Vec<Registration>;
    /// A user of `tenant`, by id.
    fn lookup_user(&self, tenant: &str, user: &str) -> Option<DirectoryUser>;
    /// Members of a group of `tenant`, as `user@domain`.
    fn group_members(&self, tenant: &str, group: &str) -> Option<Vec<String>>;
    /// A tenant or switch-wide variable.
    fn global_variable(&self, tenant: &str, name: &str) -> Option<String>;
}

/// Services with no data at all (tests, `dialtone dialplan test` without a
/// directory).
pub struct NoServices;

impl TenantServices for NoServices {
    fn registrations(&self, _: &str, _: &str, _: &str, _: &str) -> Vec<Registration> {
        Vec::new()
    }
    fn lookup_user(&self, _: &str, _: &str) -> Option<DirectoryUser> {
        None
    }
    fn group_members(&self, _: &str, _: &str) -> Option<Vec<String>> {
        None
    }
    fn global_variable(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}
