//! The metrics registry and its text exposition.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dialtone_http::metrics::{
    exponential_buckets, linear_buckets, Histogram, Registry, DEFAULT_BUCKETS,
};

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn counter_renders_help_type_and_value() {
    let registry = Registry::new();
    let calls = registry.counter("dialtone_calls_total", "Calls the switch placed.");
    assert_eq!(
        lines(&registry.render()),
        [
            "# HELP dialtone_calls_total Calls the switch placed.",
            "# TYPE dialtone_calls_total counter",
            "dialtone_calls_total 0",
        ]
    );
    calls.inc();
    calls.add(41);
    assert_eq!(calls.get(), 42);
    // A clone is the same counter.
    calls.clone().inc();
    assert_eq!(
        lines(&registry.render())[2],
        "dialtone_calls_total 43",
        "{}",
        registry.render()
    );
    assert!(registry.render().ends_with('\n'));
}

#[test]
fn gauge_goes_up_and_down() {
    let registry = Registry::new();
    let g = registry.gauge("dialtone_registrations", "Registered endpoints.");
    g.inc();
    g.inc();
    g.dec();
    g.add(10);
    g.sub(20);
    assert_eq!(g.get(), -9);
    assert_eq!(
        lines(&registry.render()),
        [
            "# HELP dialtone_registrations Registered endpoints.",
            "# TYPE dialtone_registrations gauge",
            "dialtone_registrations -9",
        ]
    );
    g.set(7);
    assert_eq!(lines(&registry.render())[2], "dialtone_registrations 7");
}

#[test]
fn histogram_buckets_are_cumulative_with_sum_and_count() {
    let registry = Registry::new();
    let h = registry.histogram(
        "dialtone_setup_seconds",
        "Time from INVITE to answer.",
        &[0.125, 0.5, 1.0],
    );
    // Binary fractions, so the sum is exact; a value on a bound goes in
    // that bound's bucket.
    for v in [0.0625, 0.125, 0.25, 2.0] {
        h.observe(v);
    }
    h.observe(f64::NAN);
    assert_eq!(
        lines(&registry.render()),
        [
            "# HELP dialtone_setup_seconds Time from INVITE to answer.",
            "# TYPE dialtone_setup_seconds histogram",
            "dialtone_setup_seconds_bucket{le=\"0.125\"} 2",
            "dialtone_setup_seconds_bucket{le=\"0.5\"} 3",
            "dialtone_setup_seconds_bucket{le=\"1\"} 3",
            "dialtone_setup_seconds_bucket{le=\"+Inf\"} 4",
            "dialtone_setup_seconds_sum 2.4375",
            "dialtone_setup_seconds_count 4",
        ]
    );
    let snap = h.snapshot();
    assert_eq!(snap.count, 4);
    assert_eq!(snap.sum, 2.4375);
    assert!(snap.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    assert_eq!(snap.buckets.last(), Some(&(f64::INFINITY, 4)));
}

#[test]
fn histogram_cumulativeness_over_many_observations() {
    let h = Histogram::new(DEFAULT_BUCKETS);
    for i in 0..=2000 {
        h.observe_duration(Duration::from_millis(i * 7));
    }
    let snap = h.snapshot();
    assert_eq!(snap.buckets.len(), DEFAULT_BUCKETS.len() + 1);
    for (i, &(bound, count)) in snap.buckets.iter().enumerate() {
        let expected = (0..=2000u64)
            .filter(|ms| (ms * 7) as f64 / 1000.0 <= bound)
            .count() as u64;
        assert_eq!(count, expected, "bucket {i} (le {bound})");
    }
    assert_eq!(snap.count, 2001);
}

#[test]
fn labelled_families_sort_children_and_escape_values() {
    let registry = Registry::new();
    let requests = registry.counter_vec(
        "dialtone_api_requests_total",
        "API requests.\nBy tenant and code; a \\ and \"quotes\".",
        &["tenant", "code"],
    );
    requests.with(&["tenant-b", "200"]).inc();
    requests.with(&["tenant-a", "404"]).add(2);
    requests.with(&["tenant-a", "200"]).add(3);
    requests.with(&["odd \"name\"\\\nx", "500"]).inc();
    // The same child each time.
    requests.with(&["tenant-b", "200"]).inc();
    assert_eq!(
        lines(&registry.render()),
        [
            "# HELP dialtone_api_requests_total API requests.\\nBy tenant and code; a \\\\ and \"quotes\".",
            "# TYPE dialtone_api_requests_total counter",
            "dialtone_api_requests_total{tenant=\"odd \\\"name\\\"\\\\\\nx\",code=\"500\"} 1",
            "dialtone_api_requests_total{tenant=\"tenant-a\",code=\"200\"} 3",
            "dialtone_api_requests_total{tenant=\"tenant-a\",code=\"404\"} 2",
            "dialtone_api_requests_total{tenant=\"tenant-b\",code=\"200\"} 2",
        ]
    );
    assert!(requests.remove(&["tenant-a", "404"]));
    assert!(!requests.remove(&["tenant-a", "404"]));
    assert!(!registry.render().contains("404"));
}

#[test]
fn gauge_and_histogram_families() {
    let registry = Registry::new();
    let channels = registry.gauge_vec("dialtone_tenant_channels", "Channels.", &["tenant"]);
    let setup = registry.histogram_vec(
        "dialtone_tenant_setup_seconds",
        "Setup time.",
        &["tenant"],
        &[0.5, 1.0, f64::INFINITY],
    );
    channels.with(&["b"]).set(2);
    channels.with(&["a"]).set(-1);
    setup.with(&["b"]).observe(0.75);
    setup.with(&["a"]).observe(3.0);
    assert_eq!(
        lines(&registry.render()),
        [
            "# HELP dialtone_tenant_channels Channels.",
            "# TYPE dialtone_tenant_channels gauge",
            "dialtone_tenant_channels{tenant=\"a\"} -1",
            "dialtone_tenant_channels{tenant=\"b\"} 2",
            "# HELP dialtone_tenant_setup_seconds Setup time.",
            "# TYPE dialtone_tenant_setup_seconds histogram",
            "dialtone_tenant_setup_seconds_bucket{tenant=\"a\",le=\"0.5\"} 0",
            "dialtone_tenant_setup_seconds_bucket{tenant=\"a\",le=\"1\"} 0",
            "dialtone_tenant_setup_seconds_bucket{tenant=\"a\",le=\"+Inf\"} 1",
            "dialtone_tenant_setup_seconds_sum{tenant=\"a\"} 3",
            "dialtone_tenant_setup_seconds_count{tenant=\"a\"} 1",
            "dialtone_tenant_setup_seconds_bucket{tenant=\"b\",le=\"0.5\"} 0",
            "dialtone_tenant_setup_seconds_bucket{tenant=\"b\",le=\"1\"} 1",
            "dialtone_tenant_setup_seconds_bucket{tenant=\"b\",le=\"+Inf\"} 1",
            "dialtone_tenant_setup_seconds_sum{tenant=\"b\"} 0.75",
            "dialtone_tenant_setup_seconds_count{tenant=\"b\"} 1",
        ]
    );
}

#[test]
fn families_render_in_registration_order_and_empty_ones_are_left_out() {
    let registry = Registry::new();
    registry.gauge("zeta", "Last letter, first registered.");
    let unused = registry.counter_vec("middle_total", "No children yet.", &["x"]);
    registry.gauge("alpha", "First letter, registered last.");
    let render = registry.render();
    assert_eq!(
        lines(&render)
            .iter()
            .filter(|l| l.starts_with("# TYPE"))
            .collect::<Vec<_>>(),
        [&"# TYPE zeta gauge", &"# TYPE alpha gauge"]
    );
    unused.with(&["1"]).inc();
    let render = registry.render();
    let types: Vec<&str> = lines(&render)
        .into_iter()
        .filter(|l| l.starts_with("# TYPE"))
        .collect();
    assert_eq!(
        types,
        [
            "# TYPE zeta gauge",
            "# TYPE middle_total counter",
            "# TYPE alpha gauge"
        ]
    );
}

#[test]
fn callback_metrics_are_read_at_each_render() {
    let registry = Registry::new();
    let active = Arc::new(AtomicI64::new(3));
    let source = active.clone();
    registry.gauge_fn(
        "dialtone_channels_active",
        "Channels up now.",
        &["profile"],
        Box::new(move || {
            let n = source.load(Ordering::Relaxed) as f64;
            vec![
                (vec!["internal".to_string()], n),
                (vec!["external".to_string()], 1.0),
                // Left out: wrong arity, and a repeat.
                (vec![], 5.0),
                (vec!["external".to_string()], 9.0),
            ]
        }),
    );
    registry.counter_fn(
        "dialtone_cdrs_written_total",
        "CDRs written.",
        &[],
        Box::new(|| vec![(vec![], 12.0)]),
    );
    let expected = |n: &str| {
        vec![
            "# HELP dialtone_channels_active Channels up now.".to_string(),
            "# TYPE dialtone_channels_active gauge".to_string(),
            "dialtone_channels_active{profile=\"external\"} 1".to_string(),
            format!("dialtone_channels_active{{profile=\"internal\"}} {n}"),
            "# HELP dialtone_cdrs_written_total CDRs written.".to_string(),
            "# TYPE dialtone_cdrs_written_total counter".to_string(),
            "dialtone_cdrs_written_total 12".to_string(),
        ]
    };
    assert_eq!(lines(&registry.render()), expected("3"));
    active.store(4, Ordering::Relaxed);
    assert_eq!(lines(&registry.render()), expected("4"));
}

#[test]
fn a_callback_may_use_the_registry() {
    // Callbacks run without the registry's lock held: this one registers
    // a family the first time it is read, which would deadlock otherwise.
    let registry = Registry::new();
    let inner = registry.clone();
    let once = std::sync::Once::new();
    registry.gauge_fn(
        "lazy",
        "Registers another family when first read.",
        &[],
        Box::new(move || {
            once.call_once(|| inner.gauge("late", "Registered during a render.").set(5));
            vec![(vec![], 1.0)]
        }),
    );
    let first = registry.render();
    assert!(first.contains("\nlazy 1\n"), "{first}");
    assert!(!first.contains("late"));
    assert!(registry.render().ends_with("\nlate 5\n"));
}

#[test]
fn floats_render_as_prometheus_reads_them() {
    let registry = Registry::new();
    let values = [
        ("a", 1.0),
        ("b", 0.5),
        ("c", -2.25),
        ("d", 1e-7),
        ("e", 1e20),
        ("f", f64::INFINITY),
        ("g", f64::NEG_INFINITY),
        ("h", f64::NAN),
        ("i", 123456.789),
        ("j", 9007199254740992.0),
        ("k", -0.0),
        ("l", 0.1 + 0.2),
    ];
    registry.gauge_fn(
        "values",
        "Floats.",
        &["v"],
        Box::new(move || {
            values
                .iter()
                .map(|(k, v)| (vec![k.to_string()], *v))
                .collect()
        }),
    );
    let render = registry.render();
    let got: Vec<&str> = lines(&render)[2..]
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        got,
        [
            "1",
            "0.5",
            "-2.25",
            "1e-7",
            "1e20",
            "+Inf",
            "-Inf",
            "NaN",
            "123456.789",
            "9007199254740992",
            "0",
            "0.30000000000000004",
        ]
    );
    // Bucket bounds go through the same formatting.
    let h = registry.histogram("bounds_seconds", "Bounds.", &[0.005, 2.5, 10.0]);
    h.observe(1.0);
    let render = registry.render();
    assert!(render.contains("bounds_seconds_bucket{le=\"0.005\"} 0\n"));
    assert!(render.contains("bounds_seconds_bucket{le=\"2.5\"} 1\n"));
    assert!(render.contains("bounds_seconds_bucket{le=\"10\"} 1\n"));
}

#[test]
fn bad_names_panic_at_registration() {
    type Case = (&'static str, fn(&Registry));
    let cases: [Case; 12] = [
        ("metric name starting with a digit", |r| {
            r.gauge("1abc", "");
        }),
        ("metric name with a dash", |r| {
            r.gauge("a-b", "");
        }),
        ("empty metric name", |r| {
            r.gauge("", "");
        }),
        ("counter without _total", |r| {
            r.counter("calls", "");
        }),
        ("label with a dash", |r| {
            r.gauge_vec("g", "", &["a-b"]);
        }),
        ("reserved label", |r| {
            r.gauge_vec("g", "", &["__name"]);
        }),
        ("label twice", |r| {
            r.gauge_vec("g", "", &["a", "a"]);
        }),
        ("le on a histogram", |r| {
            r.histogram_vec("h", "", &["le"], &[1.0]);
        }),
        ("duplicate name", |r| {
            r.gauge("g", "");
            r.gauge_vec("g", "", &["x"]);
        }),
        ("a histogram's sample name", |r| {
            r.histogram("h", "", &[1.0]);
            r.gauge("h_count", "");
        }),
        ("unsorted bounds", |r| {
            r.histogram("h", "", &[1.0, 0.5]);
        }),
        ("NaN bound", |r| {
            r.histogram("h", "", &[f64::NAN]);
        }),
    ];
    for (what, case) in cases {
        let r = Registry::new();
        assert!(
            catch_unwind(AssertUnwindSafe(|| case(&r))).is_err(),
            "{what} did not panic"
        );
    }
    // The wrong number of label values panics too.
    let r = Registry::new();
    let v = r.counter_vec("v_total", "", &["a", "b"]);
    assert!(catch_unwind(AssertUnwindSafe(|| v.with(&["only one"]))).is_err());
    // Colons and underscores are fine.
    r.gauge("_a:b_c", "");
    r.gauge_vec("ok", "", &["_x", "y1"]);
}

#[test]
fn bucket_helpers() {
    assert_eq!(
        exponential_buckets(0.001, 2.0, 4),
        [0.001, 0.002, 0.004, 0.008]
    );
    assert_eq!(linear_buckets(1.0, 0.5, 3), [1.0, 1.5, 2.0]);
}

#[test]
fn concurrent_updates_sum_exactly() {
    const THREADS: usize = 8;
    const EACH: u64 = 100_000;
    let registry = Registry::new();
    let counter = registry.counter("c_total", "");
    let gauge = registry.gauge("g", "");
    let hist = registry.histogram("h_seconds", "", &[0.25, 1.0]);
    let family = registry.counter_vec("f_total", "", &["t"]);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (counter, gauge, hist, family) = (&counter, &gauge, &hist, &family);
            s.spawn(move || {
                for i in 0..EACH {
                    counter.inc();
                    gauge.inc();
                    if i % 2 == 0 {
                        gauge.dec();
                    }
                    // 0.5 and 0.125 are exact, so the sum must be too.
                    hist.observe(if t % 2 == 0 { 0.5 } else { 0.125 });
                    family
                        .with(&[if i % 2 == 0 { "even" } else { "odd" }])
                        .inc();
                }
            });
        }
    });
    let n = THREADS as u64 * EACH;
    assert_eq!(counter.get(), n);
    assert_eq!(gauge.get(), (n / 2) as i64);
    let snap = hist.snapshot();
    assert_eq!(snap.count, n);
    assert_eq!(snap.buckets[0], (0.25, n / 2));
    assert_eq!(snap.buckets[1], (1.0, n));
    assert_eq!(snap.sum, (n / 2) as f64 * 0.5 + (n / 2) as f64 * 0.125);
    assert_eq!(family.with(&["even"]).get(), n / 2);
    assert_eq!(family.with(&["odd"]).get(), n / 2);
    let render = registry.render();
    assert!(render.contains(&format!("c_total {n}\n")));
    assert!(render.contains(&format!("f_total{{t=\"even\"}} {}\n", n / 2)));
}
