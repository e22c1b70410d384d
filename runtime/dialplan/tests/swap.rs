//! Hot swap under concurrent routing: every call gets a version that was
//! current while it ran, and none fails.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dialtone_core::routing::{Action, Dialplan};
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{Role, SandboxSettings};

const MARKER: &[u8] = b"DTVER:";

/// The versioned guest with its 10-digit version patched to `v`.
fn versioned(base: &[u8], v: u64) -> Vec<u8> {
    let at = base
        .windows(MARKER.len() + 10)
        .position(|w| w.starts_with(MARKER) && w[MARKER.len()..].iter().all(u8::is_ascii_digit))
        .expect("version marker in the versioned guest");
    let mut out = base.to_vec();
    out[at + MARKER.len()..at + MARKER.len() + 10].copy_from_slice(format!("{v:010}").as_bytes());
    out
}

fn version_of(actions: &[Action]) -> u64 {
    match actions.first() {
        Some(Action::Set { name, value }) if name == "dialplan_version" => {
            value.parse().expect("numeric version")
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn hot_swap_under_load_loses_nothing() {
    let h = host(2);
    h.tenants.configure("swap.test", SandboxSettings::default());
    let base = std::fs::read(component("versioned_dialplan.wasm")).unwrap();
    let dir = tempdir::Dir::new("swap");
    let file = dir.path().join("dialplan.wasm");
    std::fs::write(&file, versioned(&base, 1)).unwrap();
    h.tenants
        .load_file("swap.test", Role::Dialplan, &file)
        .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dp = WasmDialplan(h.tenants.clone());
    // The newest version whose install has completed, and the newest one
    // that may be in force (its install has started).
    let installed = Arc::new(AtomicU64::new(1));
    let installing = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let routed = Arc::new(AtomicU64::new(0));
    let mut routers = Vec::new();
    for _ in 0..4 {
        let dp = dp.clone();
        let installed = installed.clone();
        let installing = installing.clone();
        let stop = stop.clone();
        let routed = routed.clone();
        routers.push(rt.spawn(async move {
            let mut last_seen = 0u64;
            let mut failures = 0u64;
            let mut mismatched = 0u64;
            while !stop.load(Ordering::Acquire) {
                let floor = installed.load(Ordering::Acquire);
                match dp.route(snapshot("swap.test", "default", "1000")).await {
                    Ok(actions) => {
                        let v = version_of(&actions);
                        // Never older than what was installed before the
                        // call started, never newer than what exists, and
                        // never going backwards for one router.
                        if v < floor || v > installing.load(Ordering::Acquire) || v < last_seen {
                            mismatched += 1;
                        }
                        last_seen = v;
                    }
                    Err(_) => failures += 1,
                }
                routed.fetch_add(1, Ordering::Relaxed);
            }
            (failures, mismatched)
        }));
    }
    let swaps = 120u64;
    for v in 2..=swaps + 1 {
        std::fs::write(&file, versioned(&base, v)).unwrap();
        installing.store(v, Ordering::Release);
        let version = h
            .tenants
            .load_file("swap.test", Role::Dialplan, &file)
            .unwrap();
        assert!(!version.is_empty());
        installed.store(v, Ordering::Release);
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Release);
    let mut failures = 0;
    let mut mismatched = 0;
    for r in routers {
        let (f, m) = rt.block_on(r).unwrap();
        failures += f;
        mismatched += m;
    }
    let total = routed.load(Ordering::Relaxed);
    eprintln!("{swaps} swaps, {total} routes, {failures} failed, {mismatched} mismatched");
    assert_eq!(failures, 0);
    assert_eq!(mismatched, 0);
    assert!(total > swaps, "routing kept going during the swaps");
    let last = rt
        .block_on(dp.route(snapshot("swap.test", "default", "1000")))
        .unwrap();
    assert_eq!(version_of(&last), swaps + 1);
}

#[test]
fn compiled_components_are_cached_by_content() {
    let h = host(1);
    let engine = h.tenants.engine().clone();
    let bytes = std::fs::read(component("versioned_dialplan.wasm")).unwrap();
    let first = engine.load(&bytes, Role::Dialplan).unwrap();
    assert!(!first.from_cache);
    let second = engine.load(&bytes, Role::Dialplan).unwrap();
    assert!(second.from_cache);
    assert_eq!(first.hash, second.hash);
    assert_ne!(first.sequence, second.sequence);
    let other = engine.load(&versioned(&bytes, 77), Role::Dialplan).unwrap();
    assert!(!other.from_cache);
    assert_ne!(other.hash, first.hash);
}
