//! Admission control: caps, CPS on a virtual clock, permits, concurrency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_core::limits::{
    Admission, CpsBucket, LimitConfig, Overload, OverloadKind, Scope, Usage, DEFAULT_MAX_RECURSION,
    MAX_LEGS_PER_GROUP,
};
use dialtone_core::HangupCause;

fn cfg(max_channels: u32, max_cps: u32, max_guest_invocations: u32) -> LimitConfig {
    LimitConfig {
        max_channels,
        max_cps,
        max_guest_invocations,
    }
}

fn channels(max: u32) -> LimitConfig {
    cfg(max, 0, u32::MAX)
}

fn usage(channels: u32, guest_invocations: u32) -> Usage {
    Usage {
        channels,
        guest_invocations,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn constants() {
    assert_eq!(MAX_LEGS_PER_GROUP, 128);
    assert_eq!(DEFAULT_MAX_RECURSION, 8);
    assert_eq!(LimitConfig::default(), LimitConfig::UNLIMITED);
}

#[test]
fn cps_bucket_on_a_virtual_clock() {
    let t0 = Instant::now();
    let mut b = CpsBucket::new(10);
    for i in 0..10 {
        assert!(b.try_take(t0), "burst call {i}");
    }
    assert!(!b.try_take(t0), "11th refused");
    assert_eq!(b.retry_after(t0), ms(100));
    assert!(!b.try_take(t0 + ms(99)));
    assert_eq!(b.retry_after(t0 + ms(99)), ms(1));
    assert!(b.try_take(t0 + ms(100)), "one more after 100 ms");
    assert!(!b.try_take(t0 + ms(100)));
    // Continuous refill: 250 ms later, 2.5 tokens -> 2 calls.
    assert!(b.try_take(t0 + ms(350)));
    assert!(b.try_take(t0 + ms(350)));
    assert!(!b.try_take(t0 + ms(350)));
    assert_eq!(b.retry_after(t0 + ms(350)), ms(50));
    // Burst never exceeds one second's worth, however long it was idle.
    assert_eq!(b.available(t0 + Duration::from_secs(3600)), 10);
    // A clock that goes backwards takes nothing and gives nothing.
    let mut c = CpsBucket::new(1);
    assert!(c.try_take(t0 + ms(500)));
    assert!(!c.try_take(t0));
    assert!(c.try_take(t0 + ms(1500)));
}

#[test]
fn cps_bucket_unlimited_and_rate_changes() {
    let t0 = Instant::now();
    let mut u = CpsBucket::new(0);
    assert!((0..10_000).all(|_| u.try_take(t0)));
    assert_eq!(u.retry_after(t0), Duration::ZERO);

    let mut b = CpsBucket::new(10);
    for _ in 0..8 {
        assert!(b.try_take(t0));
    }
    // Raising the rate keeps the 2 tokens left; lowering caps the burst.
    b.set_rate(100, t0);
    assert_eq!(b.available(t0), 2);
    assert_eq!(b.available(t0 + ms(50)), 7);
    b.set_rate(3, t0 + ms(50));
    assert_eq!(b.rate(), 3);
    assert_eq!(b.available(t0 + ms(50)), 3);
    b.set_rate(0, t0 + ms(50));
    assert!(b.try_take(t0 + ms(50)));
    b.set_rate(2, t0 + ms(50));
    assert_eq!(b.available(t0 + ms(50)), 2, "from unlimited it starts full");
}

#[test]
fn admission_cps_global() {
    let t0 = Instant::now();
    let adm = Admission::new(cfg(u32::MAX, 10, u32::MAX));
    for i in 0..10 {
        let p = adm
            .admit_channel("t", t0)
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        drop(p);
    }
    let err = adm.admit_channel("t", t0).unwrap_err();
    assert_eq!(
        err,
        Overload {
            scope: Scope::Global,
            kind: OverloadKind::Cps,
            retry_after: ms(100)
        }
    );
    assert_eq!(adm.usage(), usage(0, 0), "a refused call holds nothing");
    let _p = adm.admit_channel("t", t0 + ms(100)).unwrap();
    assert!(adm.admit_channel("t", t0 + ms(100)).is_err());
}

#[test]
fn admission_cps_per_tenant() {
    let t0 = Instant::now();
    let adm = Admission::new(cfg(u32::MAX, 100, u32::MAX));
    adm.set_tenant("small", cfg(u32::MAX, 2, u32::MAX), t0);
    let _a = adm.admit_channel("small", t0).unwrap();
    let _b = adm.admit_channel("small", t0).unwrap();
    let err = adm.admit_channel("small", t0).unwrap_err();
    assert_eq!(err.scope, Scope::Tenant("small".into()));
    assert_eq!(err.kind, OverloadKind::Cps);
    assert_eq!(err.retry_after, ms(500));
    assert_eq!(adm.tenant_usage("small"), Some(usage(2, 0)));
    // Others are unaffected.
    let _c = adm.admit_channel("other", t0).unwrap();
    let _d = adm.admit_channel("other", t0).unwrap();
    let _e = adm.admit_channel("other", t0).unwrap();
    assert_eq!(adm.usage().channels, 5);
    assert!(adm.admit_channel("small", t0 + ms(500)).is_ok());
}

#[test]
fn channel_caps_global_versus_tenant() {
    let t0 = Instant::now();
    let adm = Admission::new(channels(5));
    adm.set_tenant("a", channels(2), t0);
    adm.set_tenant("b", channels(10), t0);

    let a1 = adm.admit_channel("a", t0).unwrap();
    let a2 = adm.admit_channel("a", t0).unwrap();
    assert_eq!(a1.tenant(), Some("a"));
    let err = adm.admit_channel("a", t0).unwrap_err();
    assert_eq!(err.scope, Scope::Tenant("a".into()));
    assert_eq!(err.kind, OverloadKind::Channels);
    assert!(err.retry_after > Duration::ZERO);

    let mut bs: Vec<_> = (0..3)
        .map(|_| adm.admit_channel("b", t0).unwrap())
        .collect();
    assert_eq!(adm.usage().channels, 5);
    let err = adm.admit_channel("b", t0).unwrap_err();
    assert_eq!(
        (err.scope, err.kind),
        (Scope::Global, OverloadKind::Channels)
    );
    // A tenant without limits is held to the global ones only.
    let err = adm.admit_channel("unconfigured", t0).unwrap_err();
    assert_eq!(err.scope, Scope::Global);

    assert_eq!(adm.tenant_usage("a"), Some(usage(2, 0)));
    assert_eq!(adm.tenant_usage("b"), Some(usage(3, 0)));
    assert_eq!(adm.tenant_usage("unconfigured"), None);

    // Releasing a global slot lets b in; a is still at its own cap.
    drop(bs.pop());
    assert_eq!(
        adm.admit_channel("a", t0).unwrap_err().scope,
        Scope::Tenant("a".into())
    );
    let u = adm.admit_channel("unconfigured", t0).unwrap();
    assert_eq!(u.tenant(), None);
    drop(u);
    bs.push(adm.admit_channel("b", t0).unwrap());

    drop(a1);
    let a3 = adm.admit_channel("a", t0).unwrap();
    drop((a2, a3, bs));
    assert_eq!(adm.usage(), usage(0, 0));
    assert_eq!(adm.tenant_usage("a"), Some(usage(0, 0)));
    assert_eq!(adm.tenant_usage("b"), Some(usage(0, 0)));
}

#[test]
fn zero_channel_cap_admits_nothing() {
    let t0 = Instant::now();
    let adm = Admission::new(LimitConfig::UNLIMITED);
    adm.set_tenant("suspended", cfg(0, 0, 0), t0);
    assert_eq!(
        adm.admit_channel("suspended", t0).unwrap_err().kind,
        OverloadKind::Channels
    );
    assert_eq!(
        adm.acquire_guest("suspended").unwrap_err().kind,
        OverloadKind::GuestInvocations
    );
    assert_eq!(adm.usage(), usage(0, 0));
}

#[test]
fn guest_invocation_caps() {
    let t0 = Instant::now();
    let adm = Admission::new(cfg(u32::MAX, 0, 3));
    adm.set_tenant("t", cfg(u32::MAX, 0, 1), t0);
    adm.set_tenant("u", LimitConfig::UNLIMITED, t0);

    let g1 = adm.acquire_guest("t").unwrap();
    assert_eq!(g1.tenant(), Some("t"));
    let err = adm.acquire_guest("t").unwrap_err();
    assert_eq!(
        (err.scope.clone(), err.kind),
        (Scope::Tenant("t".into()), OverloadKind::GuestInvocations)
    );
    let g2 = adm.acquire_guest("u").unwrap();
    let g3 = adm.acquire_guest("u").unwrap();
    let err = adm.acquire_guest("u").unwrap_err();
    assert_eq!(
        (err.scope, err.kind),
        (Scope::Global, OverloadKind::GuestInvocations)
    );
    assert_eq!(adm.usage(), usage(0, 3));
    assert_eq!(adm.tenant_usage("u"), Some(usage(0, 2)));

    // Guest invocations do not use channel slots or CPS and vice versa.
    let c = adm.admit_channel("t", t0).unwrap();
    assert_eq!(adm.usage(), usage(1, 3));

    drop(g2);
    let g4 = adm.acquire_guest("u").unwrap();
    drop((g1, g3, g4, c));
    assert_eq!(adm.usage(), usage(0, 0));
    assert_eq!(adm.tenant_usage("t"), Some(usage(0, 0)));
    assert!(adm.acquire_guest("t").is_ok());
}

#[test]
fn overload_cause_and_display() {
    let t0 = Instant::now();
    let adm = Admission::new(channels(0));
    let err = adm.admit_channel("acme", t0).unwrap_err();
    assert_eq!(err.cause(), HangupCause::SwitchCongestion);
    assert_eq!(err.cause().to_sip(), 503);
    assert_eq!(
        err.to_string(),
        "global channel limit reached (retry after 1s)"
    );

    let adm = Admission::new(LimitConfig::UNLIMITED);
    adm.set_tenant("acme", cfg(10, 1, 10), t0);
    let _p = adm.admit_channel("acme", t0).unwrap();
    let err = adm.admit_channel("acme", t0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenant \"acme\" calls-per-second limit reached (retry after 1s)"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(boxed.to_string().contains("acme"));
}

#[test]
fn replacing_tenants_keeps_live_counts() {
    let t0 = Instant::now();
    let adm = Admission::new(LimitConfig::UNLIMITED);
    adm.set_tenant("a", channels(3), t0);
    let mut held: Vec<_> = (0..3)
        .map(|_| adm.admit_channel("a", t0).unwrap())
        .collect();

    adm.set_tenant("a", channels(5), t0);
    assert_eq!(adm.tenant_limits("a"), Some(channels(5)));
    assert_eq!(adm.tenant_usage("a"), Some(usage(3, 0)));
    held.push(adm.admit_channel("a", t0).unwrap());
    held.push(adm.admit_channel("a", t0).unwrap());
    assert!(adm.admit_channel("a", t0).is_err());

    // Lowering below the live count refuses new calls until enough end.
    adm.set_tenant("a", channels(2), t0);
    assert_eq!(adm.tenant_usage("a"), Some(usage(5, 0)));
    held.truncate(2);
    assert_eq!(adm.tenant_usage("a"), Some(usage(2, 0)));
    assert!(adm.admit_channel("a", t0).is_err());
    held.truncate(1);
    held.push(adm.admit_channel("a", t0).unwrap());

    // Removal lifts the caps but keeps counting, so re-adding is exact.
    assert!(adm.remove_tenant("a"));
    assert!(!adm.remove_tenant("a"));
    assert_eq!(adm.tenant_limits("a"), None);
    held.push(adm.admit_channel("a", t0).unwrap());
    held.push(adm.admit_channel("a", t0).unwrap());
    assert_eq!(adm.tenant_usage("a"), Some(usage(4, 0)));
    adm.set_tenant("a", channels(4), t0);
    assert!(adm.admit_channel("a", t0).is_err());

    // A reload with a different tenant set.
    adm.replace_tenants([("b", channels(1)), ("c", channels(1))], t0);
    assert_eq!(adm.tenant_limits("a"), None);
    assert_eq!(adm.tenant_limits("b"), Some(channels(1)));
    let b = adm.admit_channel("b", t0).unwrap();
    assert!(adm.admit_channel("b", t0).is_err());
    adm.replace_tenants([("a", channels(5)), ("b", channels(2))], t0);
    assert_eq!(adm.tenant_limits("c"), None);
    assert_eq!(adm.tenant_usage("a"), Some(usage(4, 0)));
    assert_eq!(adm.tenant_usage("b"), Some(usage(1, 0)));
    let b2 = adm.admit_channel("b", t0).unwrap();
    assert!(adm.admit_channel("b", t0).is_err());

    drop((held, b, b2));
    assert_eq!(adm.usage(), usage(0, 0));
    assert_eq!(adm.tenant_usage("a"), Some(usage(0, 0)));
    assert_eq!(adm.tenant_usage("b"), Some(usage(0, 0)));
}

#[test]
fn global_reload_keeps_counts() {
    let t0 = Instant::now();
    let adm = Admission::new(channels(2));
    let p1 = adm.admit_channel("x", t0).unwrap();
    let _p2 = adm.admit_channel("x", t0).unwrap();
    assert!(adm.admit_channel("x", t0).is_err());
    adm.set_global(channels(3), t0);
    assert_eq!(adm.global_limits(), channels(3));
    let _p3 = adm.admit_channel("x", t0).unwrap();
    assert_eq!(adm.usage().channels, 3);
    adm.set_global(cfg(3, 1, 1), t0);
    drop(p1);
    let p4 = adm.admit_channel("x", t0).unwrap();
    drop(p4);
    assert_eq!(
        adm.admit_channel("x", t0).unwrap_err().kind,
        OverloadKind::Cps
    );
}

#[test]
fn concurrent_admit_and_drop_end_at_zero() {
    const THREADS: usize = 8;
    const ITERS: usize = 20_000;
    const GLOBAL_MAX: u32 = 40;
    const TENANT_MAX: u32 = 15;
    let t0 = Instant::now();
    let adm = Arc::new(Admission::new(cfg(GLOBAL_MAX, 0, GLOBAL_MAX)));
    let tenants = ["t0", "t1", "t2", "t3"];
    for t in tenants {
        adm.set_tenant(t, cfg(TENANT_MAX, 0, TENANT_MAX), t0);
    }
    let reloading = Arc::new(AtomicBool::new(true));

    // Reloads while calls come and go: counts must survive.
    let reloader = {
        let adm = Arc::clone(&adm);
        let reloading = Arc::clone(&reloading);
        std::thread::spawn(move || {
            let mut n = 0u32;
            while reloading.load(Ordering::Relaxed) {
                let max = TENANT_MAX - (n % 2) * 5;
                adm.replace_tenants(tenants.iter().map(|t| (*t, cfg(max, 0, max))), t0);
                n += 1;
                std::thread::yield_now();
            }
        })
    };

    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            let adm = Arc::clone(&adm);
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut guests = Vec::new();
                let mut admitted = 0u64;
                let mut refused = 0u64;
                let mut x = w as u64 + 1;
                for i in 0..ITERS {
                    // xorshift: which tenant, hold or release.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let pick = (x % 5) as usize;
                    let tenant = if pick == 4 {
                        "unconfigured"
                    } else {
                        tenants[pick]
                    };
                    match adm.admit_channel(tenant, t0) {
                        Ok(p) => {
                            admitted += 1;
                            let u = adm.usage();
                            assert!(u.channels <= GLOBAL_MAX, "global cap passed: {u:?}");
                            held.push(p);
                        }
                        Err(e) => {
                            refused += 1;
                            assert_eq!(e.cause(), HangupCause::SwitchCongestion);
                        }
                    }
                    if let Ok(g) = adm.acquire_guest(tenant) {
                        guests.push(g);
                    }
                    if !(x >> 8).is_multiple_of(3) || held.len() > 6 {
                        let k = (x >> 16) as usize % held.len().max(1);
                        if k < held.len() {
                            drop(held.swap_remove(k));
                        }
                    }
                    if i.is_multiple_of(2) {
                        guests.pop();
                    }
                    if guests.len() > 4 {
                        guests.clear();
                    }
                }
                (admitted, refused)
            })
        })
        .collect();

    let mut admitted = 0;
    let mut refused = 0;
    for w in workers {
        let (a, r) = w.join().unwrap();
        admitted += a;
        refused += r;
    }
    reloading.store(false, Ordering::Relaxed);
    reloader.join().unwrap();

    assert_eq!(admitted + refused, (THREADS * ITERS) as u64);
    assert!(admitted > 0);
    assert_eq!(adm.usage(), usage(0, 0));
    for t in tenants {
        assert_eq!(adm.tenant_usage(t), Some(usage(0, 0)), "tenant {t}");
    }
}

#[test]
fn tenant_counts_never_pass_their_cap_under_contention() {
    const THREADS: usize = 8;
    const CAP: u32 = 3;
    let t0 = Instant::now();
    let adm = Arc::new(Admission::new(LimitConfig::UNLIMITED));
    adm.set_tenant("hot", channels(CAP), t0);
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let adm = Arc::clone(&adm);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut ok = 0;
                for _ in 0..5_000 {
                    if let Ok(p) = adm.admit_channel("hot", t0) {
                        ok += 1;
                        let n = adm.tenant_usage("hot").unwrap().channels;
                        assert!(n <= CAP, "tenant count {n} passed cap {CAP}");
                        drop(p);
                    }
                }
                ok
            })
        })
        .collect();
    let total: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(adm.tenant_usage("hot"), Some(usage(0, 0)));
    assert_eq!(adm.usage(), usage(0, 0));
}
