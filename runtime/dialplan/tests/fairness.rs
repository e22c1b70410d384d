//! Fairness: a hostile tenant does not starve another. A test binary of
//! its own, so no other test shares the CPU while it measures.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dialtone_core::limits::LimitConfig;
use dialtone_core::routing::Dialplan;
use dialtone_core::HangupCause;
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{Role, SandboxSettings};

fn hostile(h: &Host, tenant: &str, settings: SandboxSettings) {
    h.tenants.configure(tenant, settings);
    h.tenants
        .load_file(tenant, Role::Dialplan, &component("hostile_dialplan.wasm"))
        .expect("hostile guest loads");
}

/// While every call of a hostile tenant loops until its deadline, held back
/// by its concurrency cap of 1, a good tenant keeps at least 90 % of the rate
/// it has alone.
#[test]
fn hostile_tenant_does_not_starve_another() {
    let h = host_with(2, LimitConfig::UNLIMITED);
    hostile(&h, "bad.test", SandboxSettings::default());
    hostile(&h, "good.test", SandboxSettings::default());
    let now = Instant::now();
    h.admission.set_tenant(
        "bad.test",
        LimitConfig {
            max_channels: u32::MAX,
            max_cps: 0,
            max_guest_invocations: 1,
        },
        now,
    );
    h.admission.set_tenant(
        "good.test",
        LimitConfig {
            max_channels: u32::MAX,
            max_cps: 0,
            max_guest_invocations: 64,
        },
        now,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dp = WasmDialplan(h.tenants.clone());
    let window = Duration::from_millis(150);
    let measure = |dp: &WasmDialplan| {
        rt.block_on(async {
            let end = Instant::now() + window;
            let mut n = 0u64;
            while Instant::now() < end {
                let a = dp
                    .route(snapshot("good.test", "default", "ok"))
                    .await
                    .expect("good routes");
                assert_eq!(a.len(), 2);
                n += 1;
            }
            n
        })
    };
    // The attacker runs for the whole test, gated by `attack`: the windows
    // alone and under attack alternate quickly, so the machine's own drift
    // (these machines are noisy) falls on both alike.
    let attack = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let looped = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let attacker = {
        let dp = dp.clone();
        let (attack, stop) = (attack.clone(), stop.clone());
        let (in_flight, looped, refused) = (in_flight.clone(), looped.clone(), refused.clone());
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if !attack.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..8 {
                    let dp = dp.clone();
                    let in_flight = in_flight.clone();
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    set.spawn(async move {
                        let r = dp.route(snapshot("bad.test", "default", "loop")).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        r
                    });
                }
                while let Some(r) = set.join_next().await {
                    match r.unwrap() {
                        Err(f) if f.cause == HangupCause::SwitchCongestion => {
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(_) => looped.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => panic!("a looping call cannot succeed"),
                    };
                }
            }
        })
    };
    measure(&dp);
    let mut alone = 0;
    let mut attacked = 0;
    for _ in 0..12 {
        attack.store(false, Ordering::SeqCst);
        while in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        alone += measure(&dp);
        attack.store(true, Ordering::SeqCst);
        while in_flight.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        attacked += measure(&dp);
    }
    stop.store(true, Ordering::SeqCst);
    rt.block_on(attacker).unwrap();
    assert!(
        looped.load(Ordering::Relaxed) >= 12,
        "the attacker really ran"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "its cap of 1 held it back"
    );
    let ratio = attacked as f64 / alone as f64;
    eprintln!("good tenant: alone {alone}, under attack {attacked} routes in 12 windows of {window:?} each (ratio {ratio:.3})");
    assert!(ratio >= 0.9, "good tenant fell to {ratio:.3} of its rate");
}
