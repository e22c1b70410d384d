//! Routing benchmarks: the cost of asking a tenant's component about one new
//! channel, and of parsing a dialstring.
//!
//! `cargo bench -p dialtone-dialplan --bench route` prints a JSON line per
//! measurement. `DIALTONE_BENCH_SMOKE=1` runs few iterations (CI).
//! `--callgrind N` routes exactly N times through the Rust default dialplan
//! and nothing else, for instruction counts under valgrind.
//! `--ab A.wasm B.wasm` compares two builds of a dialplan in one process:
//! alternating blocks of 500 fresh-instance routes, so both see the same
//! minute of this noisy machine; prints each one's median and their ratio.

use std::sync::Arc;

/// The switch binary's allocator, so the figures match what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use dialtone_core::dialstring;
use dialtone_core::events::EventBus;
use dialtone_core::limits::Admission;
use dialtone_core::registrations::{unix_now, Registration, Registrations};
use dialtone_core::routing::ChannelSnapshot;
use dialtone_dialplan::pool::GuestPool;
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{
    DirectoryUser, Engine, EngineSettings, Role, SandboxSettings, TenantServices, Tenants,
};

struct Regs(Registrations);

impl TenantServices for Regs {
    fn registrations(&self, t: &str, e: &str, p: &str, u: &str) -> Vec<Registration> {
        self.0.lookup(t, e, p, u, unix_now())
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

fn components() -> std::path::PathBuf {
    std::env::var("DIALTONE_COMPONENTS")
        .map(Into::into)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/components")
        })
}

fn snapshot(tenant: &str, dest: &str) -> ChannelSnapshot {
    snapshot_with(tenant, dest, 40)
}

fn snapshot_with(tenant: &str, dest: &str, vars: usize) -> ChannelSnapshot {
    let mut variables = Vec::new();
    for i in 0..vars {
        variables.push((
            format!("sip_variable_{i:02}"),
            format!("value-{i}-{}", "x".repeat(i % 24)),
        ));
    }
    ChannelSnapshot {
        uuid: "6f1c1e4e-3f7b-4a55-9a34-3f1f0b4e2c11".into(),
        direction: dialtone_core::routing::Direction::Inbound,
        endpoint: "sofia".into(),
        profile: "internal".into(),
        tenant: tenant.into(),
        context: "default".into(),
        caller_id_name: "Extension 1001".into(),
        caller_id_number: "1001".into(),
        destination: dest.into(),
        network_addr: "127.0.0.1".into(),
        variables: variables.into(),
    }
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    let med = us(v[v.len() / 2]);
    let p99 = us(v[(v.len() * 99 / 100).min(v.len() - 1)]);
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / v.len() as f64;
    (med, p99, mean)
}

fn report(name: &str, n: usize, v: Vec<Duration>) {
    let (med, p99, mean) = stats(v);
    println!(
        "{{\"bench\":\"{name}\",\"iterations\":{n},\"median_us\":{med:.2},\"p99_us\":{p99:.2},\"mean_us\":{mean:.2}}}"
    );
}

/// A host whose engine lets quick components run inline (`inline`) or
/// keeps every invocation on the guest pool.
fn setup(pool_instances: u32, inline: bool) -> (Arc<Tenants>, tokio::runtime::Runtime) {
    let cache = std::env::temp_dir().join(format!("dialtone-bench-cache-{}", std::process::id()));
    let engine = Engine::new(EngineSettings {
        epoch_tick: Duration::from_millis(5),
        pool_instances,
        max_memory_bytes: 256 << 20,
        cache_dir: Some(cache),
        inline,
    })
    .expect("engine");
    let regs = Registrations::new();
    for ip in ["192.0.2.7:5060", "192.0.2.8:5062;transport=tcp"] {
        regs.upsert(Registration {
            endpoint: "sofia".into(),
            profile: "internal".into(),
            user: "1000".into(),
            domain: "rust.test".into(),
            contact: format!("sip:1000@{ip}"),
            expires: unix_now() + 3600,
            user_agent: "bench".into(),
            network_addr: "192.0.2.7:5060".into(),
        });
    }
    let tenants = Tenants::new(
        engine,
        GuestPool::new(2, 1024).expect("pool"),
        Arc::new(Regs(regs)),
        Arc::new(Admission::default()),
        EventBus::new(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    (tenants, rt)
}

fn load(tenants: &Tenants, tenant: &str, file: &str, settings: SandboxSettings) -> bool {
    let path = components().join(file);
    if !path.exists() {
        eprintln!("{} missing: build the guests first", path.display());
        return false;
    }
    tenants.configure(tenant, settings);
    tenants
        .load_file(tenant, Role::Dialplan, &path)
        .expect("load dialplan");
    tenants
        .load_file(
            tenant,
            Role::Helpers,
            &components().join("contact_helpers.wasm"),
        )
        .expect("load helpers");
    true
}

/// The 10-leg failover dialstring the parse benchmark reads.
fn failover_dialstring() -> String {
    let ds = (0..10)
        .map(|i| format!("[leg_timeout=15]sofia/gateway/carrier{i}/15551234567"))
        .collect::<Vec<_>>()
        .join("|");
    format!("{{ignore_early_media=true,originate_timeout=60}}{ds}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = std::env::var("DIALTONE_BENCH_SMOKE").is_ok_and(|v| v == "1");
    if let Some(i) = args.iter().position(|a| a == "--parse") {
        let n: usize = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1000);
        let ds = failover_dialstring();
        for _ in 0..n {
            std::hint::black_box(dialstring::parse(std::hint::black_box(&ds)).expect("parse"));
        }
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--ab") {
        let (a, b) = match (args.get(i + 1), args.get(i + 2)) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => panic!("--ab A.wasm B.wasm"),
        };
        let (tenants, _rt) = setup(64, false);
        for (tenant, path) in [("a.test", &a), ("b.test", &b)] {
            tenants.configure(tenant, SandboxSettings::default());
            tenants
                .load_file(tenant, Role::Dialplan, std::path::Path::new(path))
                .expect("load dialplan");
        }
        let (sa, sb) = (snapshot("a.test", "1000"), snapshot("b.test", "1000"));
        let blocks = if smoke { 2 } else { 40 };
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        for _ in 0..blocks {
            for (s, v) in [(&sa, &mut va), (&sb, &mut vb)] {
                for _ in 0..500 {
                    let c = s.clone();
                    let t = Instant::now();
                    std::hint::black_box(tenants.route_blocking(c).expect("route"));
                    v.push(t.elapsed());
                }
            }
        }
        let (ma, _, _) = stats(va);
        let (mb, _, _) = stats(vb);
        println!(
            "{{\"bench\":\"route_ab\",\"a\":{a:?},\"b\":{b:?},\"median_us_a\":{ma:.2},\"median_us_b\":{mb:.2},\"b_over_a\":{:.3}}}",
            mb / ma
        );
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--callgrind") {
        let n: usize = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1000);
        // Valgrind cannot map a large pool: a small one for instruction counts.
        let (tenants, _rt) = setup(4, false);
        assert!(load(
            &tenants,
            "rust.test",
            "default_dialplan.wasm",
            SandboxSettings::default()
        ));
        let s = snapshot("rust.test", "1000");
        for _ in 0..n {
            std::hint::black_box(tenants.route_blocking(s.clone()).expect("route"));
        }
        return;
    }
    // Inline off: the `via_pool` lines go through the guest pool, as they
    // are named; the `inline` lines below use a host that allows it.
    let (tenants, rt) = setup(64, false);
    let n = if smoke { 300 } else { 20_000 };
    assert!(
        load(
            &tenants,
            "rust.test",
            "default_dialplan.wasm",
            SandboxSettings::default()
        ),
        "Rust guest"
    );
    let dp = WasmDialplan(tenants.clone());
    let s = snapshot("rust.test", "1000");
    for _ in 0..n / 10 {
        tenants.route_blocking(s.clone()).expect("warm-up");
    }
    // Route alone, on the calling thread: fresh instance, call, drop.
    let mut v = Vec::with_capacity(n);
    // The snapshot is cloned before the clock starts: the copy is the
    // bench's setup (the switch builds each channel's snapshot once).
    for _ in 0..n {
        let c = s.clone();
        let t = Instant::now();
        std::hint::black_box(tenants.route_blocking(c).expect("route"));
        v.push(t.elapsed());
    }
    report("rust_route_fresh", n, v);
    for vars in [0usize, 5] {
        let s = snapshot_with("rust.test", "1000", vars);
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let c = s.clone();
            let t = Instant::now();
            std::hint::black_box(tenants.route_blocking(c).expect("route"));
            v.push(t.elapsed());
        }
        report(&format!("rust_route_fresh_{vars}_vars"), n, v);
    }
    // Route plus the contact helper that expands the user's dial-string
    // (a second fresh instance whose host call returns 2 registrations).
    use dialtone_core::routing::Dialplan;
    let mut v = Vec::with_capacity(n);
    let mut h = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(tenants.route_blocking(s.clone()).expect("route"));
        let t2 = Instant::now();
        let out = rt.block_on(dp.call_helper("rust.test", "sofia_contact", "*/1000@rust.test"));
        h.push(t2.elapsed());
        assert_eq!(out.expect("helper").matches("sofia/").count(), 2);
        v.push(t.elapsed());
    }
    report("rust_helper_2_registrations_via_pool", n, h);
    report("rust_route_plus_helper", n, v);
    // Through the pool, as the switch does it (queue, worker, oneshot).
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(rt.block_on(dp.route(s.clone())).expect("route"));
        v.push(t.elapsed());
    }
    report("rust_route_fresh_via_pool", n, v);

    // The same route and helper on a host that runs them on the asking
    // thread once they have proven quick (`dialtone_dialplan::inline`), as
    // the switch does by default.
    let (inl, _inl_rt) = setup(64, true);
    assert!(load(
        &inl,
        "rust.test",
        "default_dialplan.wasm",
        SandboxSettings::default()
    ));
    let dpi = WasmDialplan(inl.clone());
    for _ in 0..dialtone_dialplan::inline::PROMOTE_AFTER * 2 {
        rt.block_on(dpi.route(s.clone())).expect("promotion");
        rt.block_on(dpi.call_helper("rust.test", "sofia_contact", "*/1000@rust.test"))
            .expect("promotion");
    }
    let (mut v, mut h) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(rt.block_on(dpi.route(s.clone())).expect("route"));
        v.push(t.elapsed());
        let t = Instant::now();
        let out = rt.block_on(dpi.call_helper("rust.test", "sofia_contact", "*/1000@rust.test"));
        h.push(t.elapsed());
        assert_eq!(out.expect("helper").matches("sofia/").count(), 2);
    }
    let ran_inline = inl
        .info()
        .into_iter()
        .find(|t| t.name == "rust.test")
        .map_or(0, |t| t.inline_invocations);
    assert!(
        ran_inline >= 2 * n as u64,
        "{ran_inline} of {} invocations ran inline",
        2 * n
    );
    report("rust_route_fresh_inline", n, v);
    report("rust_helper_2_registrations_inline", n, h);

    // JavaScript and Python, fresh and warm.
    let big = SandboxSettings {
        memory_bytes: 128 << 20,
        deadline: Duration::from_secs(5),
        ..SandboxSettings::default()
    };
    for (tenant, file, label) in [
        ("js.test", "default_dialplan_js.wasm", "js"),
        ("py.test", "default_dialplan_py.wasm", "python"),
    ] {
        for warm in [0u32, 1000] {
            let settings = SandboxSettings {
                warm_reuse: warm,
                ..big.clone()
            };
            if !load(&tenants, tenant, file, settings) {
                continue;
            }
            let m = if smoke {
                5
            } else if warm > 0 {
                2000
            } else {
                300
            };
            let s = snapshot(tenant, "1000");
            for _ in 0..3 {
                tenants.route_blocking(s.clone()).expect("warm-up");
            }
            let mut v = Vec::with_capacity(m);
            for _ in 0..m {
                let t = Instant::now();
                std::hint::black_box(tenants.route_blocking(s.clone()).expect("route"));
                v.push(t.elapsed());
            }
            report(
                &format!("{label}_route_{}", if warm > 0 { "warm" } else { "fresh" }),
                m,
                v,
            );
        }
    }

    // Dialstring parse of a 10-leg failover string.
    let ds = failover_dialstring();
    let m = if smoke { 2_000 } else { 200_000 };
    let t = Instant::now();
    for _ in 0..m {
        std::hint::black_box(dialstring::parse(std::hint::black_box(&ds)).expect("parse"));
    }
    let ns = t.elapsed().as_nanos() as f64 / m as f64;
    println!("{{\"bench\":\"dialstring_parse_10_leg_failover\",\"iterations\":{m},\"ns_per_parse\":{ns:.0},\"bytes\":{}}}", ds.len());
}
