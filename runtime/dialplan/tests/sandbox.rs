//! The sandbox: hostile and broken guests cost only their own call.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dialtone_core::events::{Delivery, EventFilter};
use dialtone_core::routing::{Action, Dialplan, Direction, OutboundDecision, OutboundRequest};
use dialtone_core::HangupCause;
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{LoadError, Role, SandboxSettings};

fn hostile(h: &Host, tenant: &str, settings: SandboxSettings) {
    let t = h.tenants.configure(tenant, settings);
    let _ = t;
    h.tenants
        .load_file(tenant, Role::Dialplan, &component("hostile_dialplan.wasm"))
        .expect("hostile guest loads");
}

fn wat_component(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid wat")
}

#[test]
fn refuses_forbidden_imports_and_non_components() {
    let h = host(1);
    let engine = h.tenants.engine().clone();
    let http = wat_component(
        r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func)))))"#,
    );
    match engine.load(&http, Role::Dialplan) {
        Err(LoadError::ForbiddenImport(name)) => assert!(name.starts_with("wasi:http/"), "{name}"),
        other => panic!("expected ForbiddenImport, got {other:?}"),
    }
    let unknown = wat_component(
        r#"(component (import "acme:evil/api@1.0.0" (instance (export "f" (func)))))"#,
    );
    let err = engine.load(&unknown, Role::Dialplan).unwrap_err();
    assert!(
        matches!(err, LoadError::ForbiddenImport(ref n) if n == "acme:evil/api@1.0.0"),
        "{err}"
    );
    assert!(err.to_string().contains("acme:evil/api@1.0.0"));

    let core = wat::parse_str("(module)").unwrap();
    assert!(matches!(
        engine.load(&core, Role::Dialplan),
        Err(LoadError::NotAComponent(_))
    ));
    assert!(matches!(
        engine.load(b"#!/bin/sh\necho hi\n", Role::Dialplan),
        Err(LoadError::NotAComponent(_))
    ));
    // Right names, wrong types (a component built against another WIT).
    let wrong = wat_component(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $r (export "route" (func $f)) (export "route-outbound" (func $f)) (export "route-message" (func $f)))
            (export "dialtone:switch/router@0.1.0" (instance $r)))"#,
    );
    let err = engine.load(&wrong, Role::Dialplan).unwrap_err();
    assert!(
        matches!(err, LoadError::Compile(_) | LoadError::MissingExport(_)),
        "{err}"
    );
    let empty = wat_component("(component)");
    assert!(matches!(
        engine.load(&empty, Role::Dialplan),
        Err(LoadError::MissingExport(_))
    ));
    assert!(matches!(
        engine.load(&empty, Role::Helpers),
        Err(LoadError::MissingExport(_))
    ));
}

#[test]
fn refused_upload_keeps_the_running_version() {
    let h = host(1);
    hostile(&h, "a.test", SandboxSettings::default());
    let before = h.tenants.info()[0].dialplan.clone().unwrap();
    let dir = tempdir::Dir::new("bad");
    let bad = dir.path().join("bad.wasm");
    std::fs::write(
        &bad,
        wat_component(r#"(component (import "wasi:http/types@0.2.0" (instance)))"#),
    )
    .unwrap();
    assert!(h.tenants.load_file("a.test", Role::Dialplan, &bad).is_err());
    std::fs::write(&bad, b"not wasm at all").unwrap();
    assert!(h.tenants.load_file("a.test", Role::Dialplan, &bad).is_err());
    assert_eq!(h.tenants.info()[0].dialplan.clone().unwrap(), before);
    let actions = h
        .tenants
        .route_blocking(snapshot("a.test", "default", "ok"))
        .unwrap();
    assert_eq!(
        actions.last(),
        Some(&Action::Hangup {
            cause: HangupCause::NormalClearing
        })
    );
}

/// Runs `dest` on a hostile tenant and checks the failure, then checks that
/// the same tenant still routes a good call.
fn expect_failure(h: &Host, dest: &str, kind: &str) {
    let mut sub = h.events.subscribe(
        EventFilter::none().with_subclass("dialtone::dialplan_failure"),
        16,
    );
    let started = Instant::now();
    let err = h
        .tenants
        .route_blocking(snapshot("bad.test", "default", dest))
        .expect_err("hostile call must fail");
    assert_eq!(
        err.cause,
        HangupCause::DestinationOutOfOrder,
        "{dest}: {}",
        err.reason
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{dest} took {:?}",
        started.elapsed()
    );
    match sub.try_recv() {
        Ok(Delivery::Event(e)) => {
            assert_eq!(e.get("Tenant"), Some("bad.test"));
            // Rust keeps its stack in linear memory: running off its end is
            // an out-of-bounds access, a trap like any other.
            let got = e.get("Failure-Kind");
            assert!(
                got == Some(kind) || (kind == "stack" && got == Some("trap")),
                "{dest}: {got:?} {:?}",
                e.get("Failure-Reason")
            );
            assert!(e.get("Version").is_some_and(|v| !v.is_empty()));
        }
        other => panic!("no failure event for {dest}: {other:?}"),
    }
    let ok = h
        .tenants
        .route_blocking(snapshot("bad.test", "default", "ok"))
        .unwrap();
    assert_eq!(
        ok[0],
        Action::Set {
            name: "hostile_ok".into(),
            value: "true".into()
        }
    );
}

#[test]
fn each_hostile_behaviour_costs_only_its_call() {
    let h = host(1);
    hostile(&h, "bad.test", SandboxSettings::default());
    let started = Instant::now();
    expect_failure(&h, "loop", "timeout");
    // Epoch deadline of 50 ms with a 5 ms tick.
    assert!(started.elapsed() < Duration::from_millis(1000));
    expect_failure(&h, "oom", "memory");
    expect_failure(&h, "stack", "stack");
    expect_failure(&h, "panic", "trap");
    expect_failure(&h, "sleepy", "timeout");
    // Two million actions do not even fit in 16 MiB of guest memory.
    expect_failure(&h, "huge", "memory");
}

#[test]
fn huge_answers_are_refused_as_malformed() {
    let h = host(1);
    hostile(
        &h,
        "bad.test",
        SandboxSettings {
            memory_bytes: 400 << 20,
            deadline: Duration::from_secs(5),
            ..SandboxSettings::default()
        },
    );
    expect_failure(&h, "huge", "malformed");
}

#[test]
fn fuel_budget_stops_a_loop() {
    let h = host(1);
    hostile(
        &h,
        "bad.test",
        SandboxSettings {
            fuel: Some(5_000_000),
            deadline: Duration::from_secs(10),
            ..SandboxSettings::default()
        },
    );
    expect_failure(&h, "loop", "fuel");
}

#[test]
fn log_spam_is_capped() {
    use std::sync::Mutex;
    #[derive(Clone, Default)]
    struct Count(Arc<Mutex<usize>>);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.iter().filter(|b| **b == b'\n').count();
            *self.0.lock().unwrap() += n;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Count::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter("dialplan=trace")
        .finish();
    let h = host(1);
    hostile(
        &h,
        "bad.test",
        SandboxSettings {
            deadline: Duration::from_secs(10),
            ..SandboxSettings::default()
        },
    );
    let result = tracing::subscriber::with_default(subscriber, || {
        h.tenants
            .route_blocking(snapshot("bad.test", "default", "logspam"))
    });
    // A million log calls: the call completes, 64 lines reach the log.
    let actions = result.expect("logspam completes within 10 s");
    assert_eq!(
        actions,
        vec![Action::Hangup {
            cause: HangupCause::NormalClearing
        }]
    );
    assert_eq!(*lines.0.lock().unwrap(), 64);
}

#[test]
fn warm_instances_are_reused_and_dropped_after_a_trap() {
    let h = host(1);
    hostile(
        &h,
        "bad.test",
        SandboxSettings {
            warm_reuse: 5,
            ..SandboxSettings::default()
        },
    );
    for _ in 0..12 {
        let a = h
            .tenants
            .route_blocking(snapshot("bad.test", "default", "ok"))
            .unwrap();
        assert_eq!(a.len(), 2);
    }
    expect_failure(&h, "panic", "trap");
    expect_failure(&h, "loop", "timeout");
    for _ in 0..3 {
        assert!(h
            .tenants
            .route_blocking(snapshot("bad.test", "default", "ok"))
            .is_ok());
    }
}

#[test]
fn configurable_failure_cause() {
    let h = host(1);
    hostile(
        &h,
        "bad.test",
        SandboxSettings {
            on_failure: HangupCause::NormalTemporaryFailure,
            ..SandboxSettings::default()
        },
    );
    let err = h
        .tenants
        .route_blocking(snapshot("bad.test", "default", "panic"))
        .unwrap_err();
    assert_eq!(err.cause, HangupCause::NormalTemporaryFailure);
}

fn outbound(tenant: &str, target: &str) -> OutboundRequest {
    let mut channel = snapshot(tenant, "default", target);
    channel.direction = Direction::Outbound;
    OutboundRequest {
        channel,
        target: target.into(),
        originator: String::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_outbound_hook_decides_and_a_failing_one_costs_only_its_leg() {
    let h = host(1);
    hostile(&h, "bad.test", SandboxSettings::default());
    let dp = WasmDialplan(h.tenants.clone());
    let rt = runtime();
    assert!(dp.wants_outbound("bad.test"));
    let ask = |target: &str| rt.block_on(dp.route_outbound(outbound("bad.test", target)));
    assert_eq!(
        ask("1000@bad.test").unwrap(),
        OutboundDecision::Accept {
            variables: vec![("hostile_outbound".into(), "1000@bad.test".into())]
        }
    );
    assert_eq!(
        ask("refuse").unwrap(),
        OutboundDecision::Refuse {
            cause: HangupCause::CallRejected
        }
    );
    assert_eq!(
        ask("rewrite").unwrap(),
        OutboundDecision::Rewrite {
            target: "error/USER_BUSY".into(),
            variables: vec![("hostile_rewritten".into(), "true".into())]
        }
    );
    for (target, kind) in [("loop", "timeout"), ("panic", "trap")] {
        let mut sub = h.events.subscribe(
            EventFilter::none().with_subclass("dialtone::dialplan_failure"),
            16,
        );
        let started = Instant::now();
        let err = ask(target).expect_err("a failing hook fails its leg");
        assert_eq!(err.cause, HangupCause::DestinationOutOfOrder, "{target}");
        assert!(started.elapsed() < Duration::from_secs(5), "{target}");
        match sub.try_recv() {
            Ok(Delivery::Event(e)) => {
                assert_eq!(e.get("Tenant"), Some("bad.test"));
                assert_eq!(e.get("Failure-Kind"), Some(kind), "{target}");
            }
            other => panic!("no failure event for {target}: {other:?}"),
        }
        // The next leg and the next call are served as before.
        assert!(matches!(
            ask("1001").unwrap(),
            OutboundDecision::Accept { .. }
        ));
        assert_eq!(
            h.tenants
                .route_blocking(snapshot("bad.test", "default", "ok"))
                .unwrap()
                .last(),
            Some(&Action::Hangup {
                cause: HangupCause::NormalClearing
            })
        );
    }
}

#[test]
fn a_dialplan_without_the_hook_is_not_asked_about_outbound_legs() {
    let h = host(1);
    h.tenants
        .configure("plain.test", SandboxSettings::default());
    let load = |file: &str| {
        h.tenants
            .load_file("plain.test", Role::Dialplan, &component(file))
            .unwrap()
    };
    load("versioned_dialplan.wasm");
    let dp = WasmDialplan(h.tenants.clone());
    let rt = runtime();
    assert!(!dp.wants_outbound("plain.test"));
    let before = invocations(&h, "plain.test");
    assert_eq!(
        rt.block_on(dp.route_outbound(outbound("plain.test", "refuse")))
            .unwrap(),
        OutboundDecision::Accept { variables: vec![] }
    );
    assert_eq!(invocations(&h, "plain.test"), before);

    // A swap to a version with the hook takes effect on the next leg, and
    // a swap back removes it again.
    load("hostile_dialplan.wasm");
    assert!(dp.wants_outbound("plain.test"));
    assert_eq!(
        rt.block_on(dp.route_outbound(outbound("plain.test", "refuse")))
            .unwrap(),
        OutboundDecision::Refuse {
            cause: HangupCause::CallRejected
        }
    );
    assert_eq!(invocations(&h, "plain.test"), before + 1);
    load("versioned_dialplan.wasm");
    assert!(!dp.wants_outbound("plain.test"));

    // A tenant with no dialplan at all is still asked, and fails the leg
    // for want of a component, as routing without one does.
    h.tenants
        .configure("empty.test", SandboxSettings::default());
    assert!(dp.wants_outbound("empty.test"));
    assert!(rt
        .block_on(dp.route_outbound(outbound("empty.test", "1000")))
        .is_err());
}

/// A component built before the hook had its own interface, with
/// `route-outbound` inside `router`: a stand-in module from the older WIT
/// whose every function traps. It loads, and its hook is called (the trap
/// is the proof).
#[test]
fn a_hook_inside_router_from_an_older_build_is_still_called() {
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let body = |f: &str| {
        std::fs::read_to_string(wit.join(f))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("package "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let src = format!(
        "package dialtone:switch@0.1.0;\n{}\n{}\n{}",
        body("types.wit"),
        body("host.wit"),
        r#"
        interface router {
            use types.{channel-info, action, outbound-request, outbound-decision, text-message, message-decision};
            route: func(channel: channel-info) -> list<action>;
            route-outbound: func(request: outbound-request) -> outbound-decision;
            route-message: func(message: text-message) -> message-decision;
        }
        world older-dialplan {
            import host;
            export router;
        }"#
    );
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("older.wit", &src).unwrap();
    let world = resolve
        .select_world(&[pkg], Some("older-dialplan"))
        .unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap();

    let h = host(1);
    h.tenants.configure("old.test", SandboxSettings::default());
    let dir = tempdir::Dir::new("older");
    let file = dir.path().join("older.wasm");
    std::fs::write(&file, bytes).unwrap();
    h.tenants
        .load_file("old.test", Role::Dialplan, &file)
        .expect("a component of the older shape loads");
    let dp = WasmDialplan(h.tenants.clone());
    assert!(dp.wants_outbound("old.test"));
    let before = invocations(&h, "old.test");
    let err = runtime()
        .block_on(dp.route_outbound(outbound("old.test", "1000")))
        .expect_err("the stand-in hook traps");
    assert_eq!(err.cause, HangupCause::DestinationOutOfOrder);
    assert!(err.reason.contains("trap"), "{}", err.reason);
    assert_eq!(invocations(&h, "old.test"), before + 1);
}
