//! Where invocations run: a quick component without WASI moves from the
//! guest pool to the caller's thread after its probation, and a version that
//! turns slow there goes back to the pool for good.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dialtone_core::events::{Delivery, EventFilter};
use dialtone_core::limits::LimitConfig;
use dialtone_core::routing::{Action, Dialplan, RouteFailure};
use dialtone_core::HangupCause;
use dialtone_dialplan::inline::{DEMOTE_AT, PROMOTE_AFTER, SLOW_WEIGHT};
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{Role, SandboxSettings, TenantInfo};

const TENANT: &str = "quick.test";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn info(h: &Host, tenant: &str) -> TenantInfo {
    h.tenants
        .info()
        .into_iter()
        .find(|t| t.name == tenant)
        .expect("a configured tenant")
}

fn quick(h: &Host, tenant: &str, settings: SandboxSettings) {
    h.tenants.configure(tenant, settings);
    h.tenants
        .load_file(tenant, Role::Dialplan, &component("quick_dialplan.wasm"))
        .expect("quick guest loads");
}

/// Routes `dest` through the core's interface, as a channel does.
fn route(
    h: &Host,
    rt: &tokio::runtime::Runtime,
    tenant: &str,
    dest: &str,
) -> Result<Vec<Action>, RouteFailure> {
    let d = WasmDialplan(h.tenants.clone());
    rt.block_on(d.route(snapshot(tenant, "default", dest)))
}

fn expect_ok(h: &Host, rt: &tokio::runtime::Runtime, tenant: &str) {
    let a = route(h, rt, tenant, "ok").expect("a quick call routes");
    assert_eq!(
        a[0],
        Action::Set {
            name: "quick_ok".into(),
            value: "true".into()
        }
    );
}

/// Routes the probation's worth of quick calls and checks the version is
/// inline afterwards, and not one call before.
fn promote(h: &Host, rt: &tokio::runtime::Runtime, tenant: &str) {
    let before = info(h, tenant).inline_invocations;
    for _ in 0..PROMOTE_AFTER - 1 {
        expect_ok(h, rt, tenant);
    }
    assert_eq!(info(h, tenant).dialplan_inline, Some(false));
    expect_ok(h, rt, tenant);
    let i = info(h, tenant);
    assert_eq!(
        i.dialplan_inline,
        Some(true),
        "promoted after {PROMOTE_AFTER} quick calls"
    );
    assert_eq!(i.inline_invocations, before, "probation runs on the pool");
}

#[test]
fn a_quick_component_runs_on_the_callers_thread_after_its_probation() {
    let rt = rt();
    // One pool worker, which a looping tenant keeps busy below.
    let h = host(1);
    quick(&h, TENANT, SandboxSettings::default());
    promote(&h, &rt, TENANT);
    for n in 1..=10 {
        expect_ok(&h, &rt, TENANT);
        assert_eq!(info(&h, TENANT).inline_invocations, n);
    }

    // While the only pool worker spins in another tenant's 2 s loop, the
    // promoted tenant still routes: its calls do not go through the pool.
    h.tenants.configure(
        "busy.test",
        SandboxSettings {
            deadline: Duration::from_secs(2),
            ..SandboxSettings::default()
        },
    );
    h.tenants
        .load_file(
            "busy.test",
            Role::Dialplan,
            &component("quick_dialplan.wasm"),
        )
        .expect("loads");
    let tenants = h.tenants.clone();
    let looping = std::thread::spawn(move || {
        let rt = crate::rt();
        let d = WasmDialplan(tenants);
        let started = Instant::now();
        let r = rt.block_on(d.route(snapshot("busy.test", "default", "loop")));
        (r, started.elapsed())
    });
    // Until the loop holds the worker (its invocation is counted when it
    // starts).
    let waiting = Instant::now();
    while info(&h, "busy.test").invocations == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the loop never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    for _ in 0..20 {
        expect_ok(&h, &rt, TENANT);
    }
    let inline_took = started.elapsed();
    let (r, loop_took) = looping.join().expect("loop thread");
    assert!(r.is_err(), "the loop ends at its deadline");
    assert!(loop_took >= Duration::from_secs(2), "{loop_took:?}");
    assert!(
        inline_took < Duration::from_secs(1),
        "20 inline calls took {inline_took:?} while the pool was busy"
    );
    assert_eq!(info(&h, TENANT).inline_invocations, 30);
}

#[test]
fn a_deadline_on_the_callers_thread_sends_the_version_back_to_the_pool() {
    let rt = rt();
    let h = host(2);
    quick(&h, TENANT, SandboxSettings::default());
    promote(&h, &rt, TENANT);
    let mut sub = h.events.subscribe(
        EventFilter::none().with_subclass("dialtone::dialplan_failure"),
        16,
    );
    let started = Instant::now();
    let err = route(&h, &rt, TENANT, "loop").expect_err("a loop fails its call");
    // The same answer the pool gives: the tenant's failure cause, at the
    // 50 ms deadline.
    assert_eq!(
        err.cause,
        HangupCause::DestinationOutOfOrder,
        "{}",
        err.reason
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    match sub.try_recv() {
        Ok(Delivery::Event(e)) => assert_eq!(e.get("Failure-Kind"), Some("timeout")),
        other => panic!("no failure event: {other:?}"),
    }
    let i = info(&h, TENANT);
    assert_eq!(i.dialplan_inline, Some(false), "demoted");
    let inline_so_far = i.inline_invocations;
    assert_eq!(inline_so_far, 1, "the loop itself ran inline");

    // For good: quick calls keep working, on the pool.
    for _ in 0..PROMOTE_AFTER * 2 {
        expect_ok(&h, &rt, TENANT);
    }
    let i = info(&h, TENANT);
    assert_eq!(i.dialplan_inline, Some(false));
    assert_eq!(i.inline_invocations, inline_so_far);

    // A new version starts its own probation.
    h.tenants
        .load_file(TENANT, Role::Dialplan, &component("quick_dialplan.wasm"))
        .expect("reload");
    promote(&h, &rt, TENANT);
    expect_ok(&h, &rt, TENANT);
    assert_eq!(info(&h, TENANT).inline_invocations, inline_so_far + 1);
}

#[test]
fn slow_calls_that_keep_coming_send_the_version_back_and_quick_ones_forgive() {
    let rt = rt();
    let h = host(2);
    // "slow" spins for milliseconds: well over the quick limit, well under
    // this deadline.
    quick(
        &h,
        TENANT,
        SandboxSettings {
            deadline: Duration::from_secs(5),
            ..SandboxSettings::default()
        },
    );
    promote(&h, &rt, TENANT);
    let to_demote = DEMOTE_AT.div_ceil(SLOW_WEIGHT);
    for _ in 0..to_demote - 1 {
        route(&h, &rt, TENANT, "slow").expect("a slow call still routes");
    }
    assert_eq!(info(&h, TENANT).dialplan_inline, Some(true));
    // Quick calls take the score back down ...
    for _ in 0..SLOW_WEIGHT {
        expect_ok(&h, &rt, TENANT);
    }
    route(&h, &rt, TENANT, "slow").expect("a slow call still routes");
    assert_eq!(
        info(&h, TENANT).dialplan_inline,
        Some(true),
        "the quick calls forgave one"
    );
    // ... until slow ones keep coming.
    let a = route(&h, &rt, TENANT, "slow").expect("a slow call still routes");
    assert_eq!(a.len(), 2);
    let i = info(&h, TENANT);
    assert_eq!(
        i.dialplan_inline,
        Some(false),
        "{to_demote} slow calls, net"
    );
    let inline_so_far = i.inline_invocations;
    expect_ok(&h, &rt, TENANT);
    assert_eq!(
        info(&h, TENANT).inline_invocations,
        inline_so_far,
        "back on the pool"
    );
}

#[test]
fn a_stack_overflow_on_the_callers_thread_fails_only_its_call() {
    // A test thread's stack (2 MiB unless RUST_MIN_STACK says otherwise)
    // holds the 512 KiB wasm stack above the test's own frames.
    let rt = rt();
    let h = host(1);
    quick(&h, TENANT, SandboxSettings::default());
    promote(&h, &rt, TENANT);
    let mut sub = h.events.subscribe(
        EventFilter::none().with_subclass("dialtone::dialplan_failure"),
        16,
    );
    let err = route(&h, &rt, TENANT, "stack").expect_err("unbounded recursion fails its call");
    assert_eq!(
        err.cause,
        HangupCause::DestinationOutOfOrder,
        "{}",
        err.reason
    );
    match sub.try_recv() {
        Ok(Delivery::Event(e)) => {
            let kind = e.get("Failure-Kind");
            // Rust keeps its stack in linear memory: running off its end is
            // an out-of-bounds access, a trap like any other.
            assert!(kind == Some("stack") || kind == Some("trap"), "{kind:?}");
        }
        other => panic!("no failure event: {other:?}"),
    }
    assert_eq!(info(&h, TENANT).inline_invocations, 1);
    // A quick trap is no reason to leave the caller's thread.
    assert_eq!(info(&h, TENANT).dialplan_inline, Some(true));
    expect_ok(&h, &rt, TENANT);
    assert_eq!(info(&h, TENANT).inline_invocations, 2);
}

#[test]
fn a_component_that_imports_wasi_always_runs_on_the_pool() {
    let rt = rt();
    let h = host(1);
    h.tenants.configure(TENANT, SandboxSettings::default());
    h.tenants
        .load_file(
            TENANT,
            Role::Dialplan,
            &component("versioned_dialplan.wasm"),
        )
        .expect("loads");
    for _ in 0..PROMOTE_AFTER * 2 {
        route(&h, &rt, TENANT, "ok").expect("routes");
    }
    let i = info(&h, TENANT);
    assert_eq!(i.invocations, u64::from(PROMOTE_AFTER * 2));
    assert_eq!(i.inline_invocations, 0);
    assert_eq!(i.dialplan_inline, Some(false));
}

#[test]
fn with_inline_off_every_invocation_runs_on_the_pool() {
    let rt = rt();
    let h = host_full(1, LimitConfig::UNLIMITED, false);
    quick(&h, TENANT, SandboxSettings::default());
    for _ in 0..PROMOTE_AFTER * 2 {
        expect_ok(&h, &rt, TENANT);
    }
    let i = info(&h, TENANT);
    assert_eq!(i.inline_invocations, 0);
    assert_eq!(i.dialplan_inline, Some(false));
}

#[test]
fn the_shipped_helpers_run_inline_after_their_probation_and_answer_the_same() {
    let rt = rt();
    let h = host(1);
    h.tenants.configure(TENANT, SandboxSettings::default());
    h.tenants.set_default_helpers(
        h.tenants
            .engine()
            .load_file(&component("contact_helpers.wasm"), Role::Helpers)
            .expect("helpers load"),
    );
    h.services
        .register(TENANT, "1001", "sip:1001@127.0.0.1:5100");
    let d = WasmDialplan(h.tenants.clone());
    let calls = vec![("sofia_contact".to_string(), format!("*/1001@{TENANT}"))];
    let first = rt.block_on(d.call_helpers(TENANT, &calls));
    let first = first[0].clone().expect("sofia_contact answers");
    assert_eq!(first, r"sofia/internal/sip\:1001@127.0.0.1\:5100");
    for _ in 0..PROMOTE_AFTER * 2 {
        let a = rt.block_on(d.call_helpers(TENANT, &calls));
        assert_eq!(a[0].as_ref().expect("answers"), &first);
    }
    let i = info(&h, TENANT);
    assert_eq!(i.invocations, u64::from(PROMOTE_AFTER * 2 + 1));
    assert_eq!(i.inline_invocations, u64::from(PROMOTE_AFTER + 1));
}
