//! Shared set-up for the dialplan host tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_core::events::EventBus;
use dialtone_core::limits::{Admission, LimitConfig};
use dialtone_core::registrations::{unix_now, Registration, Registrations};
use dialtone_core::routing::{ChannelSnapshot, Direction};
use dialtone_dialplan::pool::GuestPool;
use dialtone_dialplan::{DirectoryUser, Engine, EngineSettings, TenantServices, Tenants};

/// Where the built guest components are (`make guests` puts them there).
pub fn components_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DIALTONE_COMPONENTS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/components")
}

/// A built component; fails loudly when the guests were not built.
pub fn component(name: &str) -> PathBuf {
    let p = components_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the guests first (scripts/build-rust-guests.sh build/components, or `make test`)",
        p.display()
    );
    p
}

/// Registrations and a tiny directory for tests.
pub struct FakeServices {
    pub regs: Registrations,
}

impl FakeServices {
    pub fn new() -> Arc<FakeServices> {
        Arc::new(FakeServices {
            regs: Registrations::new(),
        })
    }

    pub fn register(&self, tenant: &str, user: &str, contact: &str) {
        self.regs.upsert(Registration {
            endpoint: "sofia".into(),
            profile: "internal".into(),
            user: user.into(),
            domain: tenant.into(),
            contact: contact.into(),
            expires: unix_now() + 3600,
            user_agent: "test".into(),
            network_addr: "127.0.0.1:5100".into(),
        });
    }
}

impl TenantServices for FakeServices {
    fn registrations(
        &self,
        tenant: &str,
        endpoint: &str,
        profile: &str,
        user: &str,
    ) -> Vec<Registration> {
        self.regs
            .lookup(tenant, endpoint, profile, user, unix_now())
    }
    fn lookup_user(&self, _tenant: &str, user: &str) -> Option<DirectoryUser> {
        (user.len() == 4 && user.starts_with("10")).then(|| DirectoryUser {
            id: user.into(),
            params: vec![("password".into(), "secret".into())],
            variables: vec![("user_context".into(), "default".into())],
            groups: vec!["sales".into()],
        })
    }
    fn group_members(&self, tenant: &str, group: &str) -> Option<Vec<String>> {
        (group == "sales").then(|| vec![format!("1000@{tenant}"), format!("1001@{tenant}")])
    }
    fn global_variable(&self, tenant: &str, name: &str) -> Option<String> {
        (name == "domain").then(|| tenant.to_string())
    }
}

pub struct Host {
    pub tenants: Arc<Tenants>,
    pub events: EventBus,
    pub admission: Arc<Admission>,
    pub services: Arc<FakeServices>,
    pub cache: tempdir::Dir,
}

pub mod tempdir {
    use std::path::{Path, PathBuf};
    /// A temporary directory removed on drop.
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "dialtone-test-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            std::fs::create_dir_all(&p).expect("create temp dir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn host(workers: usize) -> Host {
    host_with(workers, LimitConfig::UNLIMITED)
}

pub fn host_with(workers: usize, global: LimitConfig) -> Host {
    host_full(workers, global, true)
}

/// A host whose engine does (`inline`) or does not let quick components run
/// on the caller's thread.
pub fn host_full(workers: usize, global: LimitConfig, inline: bool) -> Host {
    let cache = tempdir::Dir::new("cache");
    let engine = Engine::new(EngineSettings {
        epoch_tick: Duration::from_millis(5),
        pool_instances: 64,
        max_memory_bytes: 512 << 20,
        cache_dir: Some(cache.path().join("components")),
        inline,
    })
    .expect("engine");
    let events = EventBus::new();
    let admission = Arc::new(Admission::new(global));
    let services = FakeServices::new();
    let pool = GuestPool::new(workers, 4096).expect("pool");
    let tenants = Tenants::new(
        engine,
        pool,
        services.clone(),
        admission.clone(),
        events.clone(),
    );
    Host {
        tenants,
        events,
        admission,
        services,
        cache,
    }
}

pub fn snapshot(tenant: &str, context: &str, dest: &str) -> ChannelSnapshot {
    ChannelSnapshot {
        uuid: uuid_like(),
        direction: Direction::Inbound,
        endpoint: "sofia".into(),
        profile: "internal".into(),
        tenant: tenant.into(),
        context: context.into(),
        caller_id_name: "Alice".into(),
        caller_id_number: "1001".into(),
        destination: dest.into(),
        network_addr: "127.0.0.1".into(),
        variables: Default::default(),
    }
}

/// A realistic snapshot: about 40 variables, as a SIP channel carries.
pub fn realistic_snapshot(tenant: &str, dest: &str) -> ChannelSnapshot {
    let mut s = snapshot(tenant, "default", dest);
    for (k, v) in [
        ("sip_from_user", "1001"),
        ("sip_from_host", tenant),
        ("sip_to_user", dest),
        ("sip_to_host", tenant),
        ("sip_req_user", dest),
        ("sip_req_host", tenant),
        ("sip_contact_user", "1001"),
        ("sip_contact_host", "127.0.0.1"),
        ("sip_contact_port", "5100"),
        ("sip_via_host", "127.0.0.1"),
        ("sip_via_port", "5100"),
        ("sip_via_protocol", "udp"),
        ("sip_call_id", "a84b4c76e66710@pc33.atlanta.example.com"),
        ("sip_user_agent", "baresip v3"),
        ("sip_network_ip", "127.0.0.1"),
        ("sip_network_port", "5100"),
        ("sip_received_ip", "127.0.0.1"),
        ("sip_received_port", "5100"),
        ("sip_authorized", "true"),
        ("sip_acl_authed_by", ""),
        ("sip_local_network_addr", "127.0.0.1"),
        ("sip_profile_name", "internal"),
        ("user_context", "default"),
        ("effective_caller_id_name", "Extension 1001"),
        ("effective_caller_id_number", "1001"),
        ("outbound_caller_id_name", "Dialtone"),
        ("outbound_caller_id_number", "0000000000"),
        ("callgroup", "techsupport"),
        ("accountcode", "1001"),
        ("toll_allow", "domestic,international,local"),
        ("user_name", "1001"),
        ("domain_name", tenant),
        ("dialed_extension", dest),
        ("rtp_use_codec_string", "PCMU,PCMA"),
        ("remote_media_ip", "127.0.0.1"),
        ("remote_media_port", "10000"),
        ("switch_r_sdp", "v=0 o=- 1 1 IN IP4 127.0.0.1"),
        ("endpoint_disposition", "RECEIVED"),
        ("current_application", ""),
        ("presence_id", "1001@dialtone.local"),
    ] {
        std::sync::Arc::make_mut(&mut s.variables).push((k.to_string(), v.to_string()));
    }
    s
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn elapsed_ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

/// Invocations counted for `tenant` so far.
pub fn invocations(h: &Host, tenant: &str) -> u64 {
    h.tenants
        .info()
        .into_iter()
        .find(|t| t.name == tenant)
        .map(|t| t.invocations)
        .expect("a configured tenant")
}
