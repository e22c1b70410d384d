//! The contact helpers component, on registrations injected through a fake
//! of the host imports.

mod common;

use common::*;
use dialtone_core::routing::Dialplan;
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{Engine, EngineSettings, Role, SandboxSettings};

fn setup() -> (Host, WasmDialplan, tokio::runtime::Runtime) {
    let h = host(1);
    for t in ["a.test", "b.test"] {
        h.tenants.configure(t, SandboxSettings::default());
        h.tenants
            .load_file(t, Role::Helpers, &component("contact_helpers.wasm"))
            .unwrap();
    }
    let dp = WasmDialplan(h.tenants.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (h, dp, rt)
}

#[test]
fn sofia_contact_none_one_several() {
    let (h, dp, rt) = setup();
    let call = |args: &str| rt.block_on(dp.call_helper("a.test", "sofia_contact", args));
    assert_eq!(call("*/1000@a.test").unwrap(), "error/user_not_registered");
    h.services
        .register("a.test", "1000", "sip:1000@192.0.2.7:5060");
    let one = call("*/1000@a.test").unwrap();
    assert_eq!(one, r"sofia/internal/sip\:1000@192.0.2.7\:5060");
    h.services
        .register("a.test", "1000", "sip:1000@192.0.2.8:5062;transport=tcp");
    let two = call("internal/1000").unwrap();
    let legs: Vec<&str> = two.split(",sofia/").collect();
    assert_eq!(legs.len(), 2, "{two}");
    // Each contact is one leg once parsed, however it is escaped.
    let ds = dialtone_core::dialstring::parse(&two).unwrap();
    assert_eq!(ds.leg_count(), 2);
    let targets: Vec<String> = ds.branches[0].groups[0]
        .legs
        .iter()
        .map(|l| l.data.clone())
        .collect();
    assert_eq!(
        targets,
        vec![
            "internal/sip:1000@192.0.2.7:5060".to_string(),
            "internal/sip:1000@192.0.2.8:5062;transport=tcp".to_string()
        ]
    );
    // Profile filter.
    assert_eq!(call("external/1000").unwrap(), "error/user_not_registered");
}

#[test]
fn the_switchs_own_helpers_are_reused_within_a_tenant_and_answer_afresh() {
    let h = host(1);
    let shipped = h
        .tenants
        .engine()
        .load_file(&component("contact_helpers.wasm"), Role::Helpers)
        .unwrap();
    h.tenants.set_default_helpers(shipped);
    for t in ["c.test", "d.test"] {
        h.tenants.configure(t, SandboxSettings::default());
    }
    let dp = WasmDialplan(h.tenants.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = |t: &str| rt.block_on(dp.call_helper(t, "sofia_contact", "*/1000"));
    assert_eq!(call("c.test").unwrap(), "error/user_not_registered");
    // One instance now waits for the tenant's next helper call.
    assert_eq!(h.tenants.warm_instances("c.test"), Some((0, 1)));
    // It answers from the host's lookups of this call, not the last one's.
    h.services
        .register("c.test", "1000", "sip:1000@192.0.2.7:5060");
    assert_eq!(
        call("c.test").unwrap(),
        r"sofia/internal/sip\:1000@192.0.2.7\:5060"
    );
    assert_eq!(h.tenants.warm_instances("c.test"), Some((0, 1)));
    // Another tenant never gets it: it has its own.
    assert_eq!(h.tenants.warm_instances("d.test"), Some((0, 0)));
    assert_eq!(call("d.test").unwrap(), "error/user_not_registered");
    assert_eq!(h.tenants.warm_instances("d.test"), Some((0, 1)));
    // A tenant's own helper component, with warm_reuse 0, gets a fresh
    // instance every time.
    h.tenants
        .load_file("d.test", Role::Helpers, &component("contact_helpers.wasm"))
        .unwrap();
    assert_eq!(h.tenants.warm_instances("d.test"), Some((0, 0)));
    assert_eq!(call("d.test").unwrap(), "error/user_not_registered");
    assert_eq!(h.tenants.warm_instances("d.test"), Some((0, 0)));
}

#[test]
fn another_tenants_registrations_are_invisible() {
    let (h, dp, rt) = setup();
    h.services
        .register("a.test", "1000", "sip:1000@192.0.2.7:5060");
    let from_b = rt
        .block_on(dp.call_helper("b.test", "sofia_contact", "*/1000@a.test"))
        .unwrap();
    assert_eq!(from_b, "error/user_not_registered");
    let from_b_bare = rt
        .block_on(dp.call_helper("b.test", "sofia_contact", "*/1000"))
        .unwrap();
    assert_eq!(from_b_bare, "error/user_not_registered");
    let from_a = rt
        .block_on(dp.call_helper("a.test", "sofia_contact", "*/1000"))
        .unwrap();
    assert!(from_a.starts_with("sofia/internal/"), "{from_a}");
}

#[test]
fn malicious_contact_cannot_add_a_leg() {
    let (h, dp, rt) = setup();
    h.services.register(
        "a.test",
        "1000",
        "sip:1000@192.0.2.7,sofia/gateway/carrier/15551234567",
    );
    let out = rt
        .block_on(dp.call_helper("a.test", "sofia_contact", "*/1000"))
        .unwrap();
    let ds = dialtone_core::dialstring::parse(&out).unwrap();
    assert_eq!(ds.leg_count(), 1, "{out}");
    assert_eq!(ds.branches[0].groups[0].legs[0].endpoint, "sofia");
}

#[test]
fn group_call_and_unknown_helpers() {
    let (_h, dp, rt) = setup();
    let all = rt
        .block_on(dp.call_helper("a.test", "group_call", "sales@a.test"))
        .unwrap();
    assert_eq!(all, "user/1000@a.test,user/1001@a.test");
    let f = rt
        .block_on(dp.call_helper("a.test", "group_call", "sales@a.test+F"))
        .unwrap();
    assert_eq!(f, "user/1000@a.test|user/1001@a.test");
    let e = rt
        .block_on(dp.call_helper("a.test", "group_call", "sales+E"))
        .unwrap();
    assert_eq!(e, "user/1000@a.test:_:user/1001@a.test");
    let none = rt
        .block_on(dp.call_helper("a.test", "group_call", "nosuch"))
        .unwrap();
    assert_eq!(none, "error/NO_ROUTE_DESTINATION");
    let cross = rt
        .block_on(dp.call_helper("b.test", "group_call", "sales@a.test"))
        .unwrap();
    assert_eq!(cross, "error/NO_ROUTE_DESTINATION");
    assert!(rt.block_on(dp.call_helper("a.test", "nope", "x")).is_err());
    let v = rt
        .block_on(dp.call_helper("a.test", "verto_contact", "1000"))
        .unwrap();
    assert_eq!(v, "error/user_not_registered");
}

#[test]
fn one_dialstrings_helpers_share_one_invocation() {
    let (h, dp, rt) = setup();
    h.services
        .register("a.test", "1000", "sip:1000@192.0.2.7:5060");
    let invocations = || {
        h.tenants
            .info()
            .into_iter()
            .find(|t| t.name == "a.test")
            .unwrap()
            .invocations
    };
    let before = invocations();
    let calls = vec![
        ("sofia_contact".to_string(), "*/1000@a.test".to_string()),
        ("verto_contact".to_string(), "1000@a.test".to_string()),
        ("nope".to_string(), "x".to_string()),
        ("group_call".to_string(), "sales@a.test".to_string()),
    ];
    let out = rt.block_on(dp.call_helpers("a.test", &calls));
    assert_eq!(invocations() - before, 1, "one instance for the dialstring");
    assert_eq!(out.len(), 4);
    assert_eq!(
        out[0].as_deref().unwrap(),
        r"sofia/internal/sip\:1000@192.0.2.7\:5060"
    );
    assert_eq!(out[1].as_deref().unwrap(), "error/user_not_registered");
    // An unknown helper fails its own expansion, with INVALID_URL.
    let e = out[2].as_ref().unwrap_err();
    assert_eq!(e.cause, dialtone_core::HangupCause::InvalidUrl);
    assert_eq!(
        out[3].as_deref().unwrap(),
        "user/1000@a.test,user/1001@a.test"
    );
}

/// The default dialplan and the contact helpers run on every call, so they
/// are built `no_std` (the SDK's component runtime): no WASI imports, one
/// core instance per instantiation instead of the four a `std` component
/// needs (its module, the WASI adapter and the adapter's two shims).
#[test]
fn call_path_components_import_only_the_switch() {
    let engine = Engine::new(EngineSettings {
        pool_instances: 4,
        ..EngineSettings::default()
    })
    .expect("engine");
    for (file, role) in [
        ("default_dialplan.wasm", Role::Dialplan),
        ("contact_helpers.wasm", Role::Helpers),
    ] {
        let loaded = engine.load_file(&component(file), role).expect(file);
        assert!(!loaded.imports.is_empty(), "{file}: no imports listed");
        for name in &loaded.imports {
            assert!(
                name.starts_with("dialtone:switch/"),
                "{file} imports {name}: rebuild it no_std with the SDK's component-runtime feature"
            );
        }
    }
    // A std component (the test guest) does import WASI, and still loads.
    let std_guest = engine
        .load_file(&component("hostile_dialplan.wasm"), Role::Dialplan)
        .expect("hostile guest");
    assert!(std_guest.imports.iter().any(|n| n.starts_with("wasi:")));
}
