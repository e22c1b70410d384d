//! What a dialplan context may reach, enforced by the host after the guest
//! answers, whatever the guest asked for.
//!
//! The rule (safe by default, since `public` is where unauthenticated
//! callers land):
//! - from `public`, a leg may go only to the tenant's own users and
//!   extensions: `user/` and `group/` of the tenant, `error/`, `null/`,
//!   `loopback/` into `public` itself, and endpoint legs whose target is a
//!   current registration of one of the tenant's users (what `sofia_contact`
//!   produces) or, for `sofia/PROFILE/USER` without a host, a user of the
//!   tenant's directory. Gateways, arbitrary SIP hosts and loopback into
//!   another context are refused with CALL_REJECTED;
//! - a transfer out of `public` into another context is refused;
//! - other contexts may reach anything their endpoints can dial.
//!
//! Tenants are separate in every context: `user/` and `group/` of another
//! domain are refused where they are resolved (see [`crate::switch`]).

use crate::directory::Directory;
use crate::registrations::{unix_now, Registrations};
use crate::HangupCause;

/// The context unauthenticated callers land in.
pub const PUBLIC: &str = "public";

/// Checks one concrete leg against the originator's context.
pub fn check_leg(
    context: &str,
    tenant: &str,
    endpoint: &str,
    data: &str,
    directory: &Directory,
    registrations: &Registrations,
) -> Result<(), HangupCause> {
    if context != PUBLIC {
        return Ok(());
    }
    let allowed = match endpoint {
        "user" | "group" | "error" | "null" => true,
        "loopback" => {
            let mut parts = data.splitn(3, '/');
            let _ext = parts.next();
            matches!(parts.next(), None | Some("") | Some(PUBLIC))
        }
        _ => is_local_target(tenant, endpoint, data, directory, registrations),
    };
    if allowed {
        Ok(())
    } else {
        tracing::warn!(
            tenant,
            context,
            endpoint,
            target = data,
            "leg refused: the public context reaches only local users"
        );
        Err(HangupCause::CallRejected)
    }
}

/// Whether `endpoint/data` names a registered contact of the tenant, or (for
/// `PROFILE/USER` with no host part) a user of its directory.
fn is_local_target(
    tenant: &str,
    endpoint: &str,
    data: &str,
    directory: &Directory,
    registrations: &Registrations,
) -> bool {
    let now = unix_now();
    // sofia/PROFILE/CONTACT, rtmp/SESSION/USER@DOMAIN, verto.rtc/u:SESSION
    let (first, rest) = data.split_once('/').unwrap_or((data, ""));
    if first == "gateway" {
        return false;
    }
    if !rest.is_empty() {
        if registrations.is_registered_contact(tenant, endpoint, rest, now) {
            return true;
        }
        // PROFILE/USER (the endpoint looks the registration up itself).
        if !rest.contains(['@', ':', '%', ';'])
            && directory
                .tenant(tenant)
                .and_then(|t| t.user(rest))
                .is_some()
        {
            return true;
        }
    }
    let session = data.strip_prefix("u:").unwrap_or(first);
    registrations.is_registered_contact(tenant, endpoint, session, now)
}

/// The tenant of a new inbound channel, decided by the endpoint that heard
/// it: the authenticated user's domain when there is one; else the domain the
/// request names, when it is a configured tenant; else the configured
/// default tenant (a request to an IP address, or to an unknown domain, lands
/// there, in the context its profile gives — `public` for unauthenticated
/// profiles).
pub fn inbound_tenant(
    authenticated_domain: Option<&str>,
    request_domain: &str,
    directory: &Directory,
    default_domain: &str,
) -> String {
    if let Some(d) = authenticated_domain {
        return d.to_ascii_lowercase();
    }
    let host = request_domain
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or_default();
    let host = if request_domain.starts_with('[') {
        host
    } else {
        request_domain
            .rsplit_once(':')
            .map_or(request_domain, |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') {
                    h
                } else {
                    request_domain
                }
            })
    };
    let lower = host.to_ascii_lowercase();
    if lower.parse::<std::net::IpAddr>().is_err() && directory.tenant(&lower).is_some() {
        return lower;
    }
    default_domain.to_string()
}

/// Checks a transfer from one context to another.
pub fn check_transfer(from: &str, to: &str) -> Result<(), HangupCause> {
    if from == PUBLIC && to != PUBLIC {
        Err(HangupCause::CallRejected)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrations::Registration;

    fn regs() -> Registrations {
        let r = Registrations::new();
        r.upsert(Registration {
            endpoint: "sofia".into(),
            profile: "internal".into(),
            user: "1000".into(),
            domain: "a.test".into(),
            contact: "sip:1000@192.0.2.7:5060".into(),
            expires: unix_now() + 3600,
            user_agent: String::new(),
            network_addr: String::new(),
        });
        r
    }

    #[test]
    fn public_reaches_only_local_targets() {
        let d = Directory::default();
        let r = regs();
        let chk = |e: &str, data: &str| check_leg("public", "a.test", e, data, &d, &r);
        assert!(chk("user", "1000@a.test").is_ok());
        assert!(chk("error", "USER_BUSY").is_ok());
        assert!(chk("loopback", "1000").is_ok());
        assert!(chk("loopback", "1000/public").is_ok());
        assert_eq!(
            chk("loopback", "1000/default"),
            Err(HangupCause::CallRejected)
        );
        assert_eq!(
            chk("sofia", "gateway/carrier/15551234567"),
            Err(HangupCause::CallRejected)
        );
        assert_eq!(
            chk("sofia", "external/1000@evil.example.com"),
            Err(HangupCause::CallRejected)
        );
        assert!(chk("sofia", "internal/sip:1000@192.0.2.7:5060").is_ok());
        // Registered in a.test, not in b.test.
        assert_eq!(
            check_leg(
                "public",
                "b.test",
                "sofia",
                "internal/sip:1000@192.0.2.7:5060",
                &d,
                &r
            ),
            Err(HangupCause::CallRejected)
        );
        // Other contexts are not restricted here.
        assert!(check_leg("default", "a.test", "sofia", "gateway/x/1", &d, &r).is_ok());
    }

    #[test]
    fn inbound_tenant_choice() {
        use crate::directory::{TenantDirectory, VANILLA_DIAL_STRING};
        let t = TenantDirectory::new(
            "a.test",
            vec![],
            vec![],
            Default::default(),
            VANILLA_DIAL_STRING,
        )
        .unwrap();
        let d = Directory::new([t]).unwrap();
        assert_eq!(
            inbound_tenant(Some("a.test"), "127.0.0.1", &d, "dflt"),
            "a.test"
        );
        assert_eq!(inbound_tenant(None, "A.test", &d, "dflt"), "a.test");
        assert_eq!(inbound_tenant(None, "a.test:5060", &d, "dflt"), "a.test");
        assert_eq!(inbound_tenant(None, "127.0.0.1", &d, "dflt"), "dflt");
        assert_eq!(inbound_tenant(None, "127.0.0.1:5060", &d, "dflt"), "dflt");
        assert_eq!(inbound_tenant(None, "[::1]:5060", &d, "dflt"), "dflt");
        assert_eq!(inbound_tenant(None, "::1", &d, "dflt"), "dflt");
        assert_eq!(inbound_tenant(None, "unknown.test", &d, "dflt"), "dflt");
    }

    #[test]
    fn transfers_out_of_public_refused() {
        assert_eq!(
            check_transfer("public", "default"),
            Err(HangupCause::CallRejected)
        );
        assert!(check_transfer("public", "public").is_ok());
        assert!(check_transfer("default", "public").is_ok());
    }
}
