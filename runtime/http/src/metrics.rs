//! The switch's Prometheus metrics: the values, and their text exposition
//! (format 0.0.4) for `/metrics`.
//!
//! It owns the storage of counters, gauges and histograms, their label
//! families and the rendering; the switch owns the names and decides what
//! to count. What it offers:
//!
//! - [`Counter`] (`u64`), [`Gauge`] (`i64`) and [`Histogram`] (fixed `f64`
//!   bucket bounds, seconds by convention): atomics behind an `Arc`, so
//!   updating one takes no lock and cloning one is cheap.
//! - [`CounterVec`], [`GaugeVec`], [`HistogramVec`]: families keyed by
//!   label values. `with(&["tenant-a"])` creates the child once and returns
//!   it (a read lock and a hash lookup, so callers on a hot path keep the
//!   child); `remove` drops one, for a tenant that is gone.
//! - [`Registry::gauge_fn`] and [`Registry::counter_fn`]: values the
//!   switch owns elsewhere (active channels, say), read by a callback at
//!   each render, so nothing is counted twice.
//! - [`Registry::render`]: `# HELP` and `# TYPE` lines, families in
//!   registration order, a family's series sorted by label values,
//!   histograms as cumulative `_bucket{le=..}` series (`le="+Inf"`
//!   included), `_sum` and `_count`. A family without any series (a vec
//!   nobody has used yet) is left out.
//!
//! Names are checked when a family is registered, and a bad one
//! **panics**: names are constants of the program, so a bad one is a bug
//! that the first test building the registry finds. Metric names match
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, counters' end in `_total`; label names match
//! `[a-zA-Z_][a-zA-Z0-9_]*`, do not start with `__`, are unique in their
//! family, and `le` is reserved for histograms. A name (or a histogram's
//! `_bucket`, `_sum`, `_count`) that another family already uses panics
//! too. Label *values* are free text and are escaped.
//!
//! Limits: a labelled family holds a child per distinct label values until
//! it is removed, so label values must come from bounded sets (tenants,
//! not call ids). A histogram's `_sum` and buckets are read one after the
//! other, so a render racing an `observe` may show the observation in one
//! and not the other; `_count` is always the `+Inf` bucket.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

/// The `Content-Type` of [`Registry::render`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus' default buckets, in seconds: 5 ms to 10 s.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `count` bucket bounds from `start`, each `factor` times the last.
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    assert!(
        start > 0.0 && factor > 1.0,
        "exponential buckets need start > 0 and factor > 1"
    );
    (0..count)
        .scan(start, |next, _| {
            let bound = *next;
            *next *= factor;
            Some(bound)
        })
        .collect()
}

/// `count` bucket bounds from `start`, `width` apart.
pub fn linear_buckets(start: f64, width: f64, count: usize) -> Vec<f64> {
    assert!(width > 0.0, "linear buckets need width > 0");
    (0..count).map(|i| start + width * i as f64).collect()
}

/// A value that only goes up.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// A counter of its own, not in a registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// A gauge of its own, not in a registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn dec(&self) {
        self.add(-1);
    }

    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(&self, n: i64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramCore {
    /// Upper bounds, strictly increasing and finite; `+Inf` is implicit.
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative), `bounds.len() + 1` of them, the last
    /// being `+Inf`'s.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

/// Observations counted in buckets with fixed upper bounds.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCore>);

/// A histogram's state at one moment, buckets cumulative.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations <= bound)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    /// Equal to the `+Inf` bucket.
    pub count: u64,
}

impl Histogram {
    /// A histogram of its own, not in a registry. Panics unless `bounds`
    /// are finite and strictly increasing (a trailing `+Inf` is dropped:
    /// it is always there).
    pub fn new(bounds: &[f64]) -> Self {
        Self::with_bounds(check_bounds(bounds))
    }

    fn with_bounds(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCore {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Counts `v` in the first bucket whose bound is `>= v`. A NaN is not
    /// counted (it would make `_sum` NaN for good).
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let core = &*self.0;
        let bucket = core.bounds.partition_point(|&bound| bound < v);
        core.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let mut current = core.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + v).to_bits();
            match core.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }

    /// Observes a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let core = &*self.0;
        let mut cumulative = 0;
        let bounds = core.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(core.counts.iter())
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (bound, cumulative)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            sum: f64::from_bits(core.sum.load(Ordering::Relaxed)),
            count: cumulative,
        }
    }
}

fn check_bounds(bounds: &[f64]) -> Arc<[f64]> {
    let bounds = match bounds.split_last() {
        Some((&last, rest)) if last == f64::INFINITY => rest,
        _ => bounds,
    };
    assert!(
        bounds.iter().all(|b| b.is_finite()),
        "histogram bounds must be finite (+Inf is implicit): {bounds:?}"
    );
    assert!(
        bounds.windows(2).all(|w| w[0] < w[1]),
        "histogram bounds must increase strictly: {bounds:?}"
    );
    bounds.into()
}

/// The children of a labelled family, by label values. Children are
/// found by the hash of their values, so looking up one that exists (what
/// a busy switch does for each call) builds no key.
#[derive(Debug)]
struct Children<M> {
    labels: Box<[String]>,
    hasher: std::hash::RandomState,
    /// By the hash of the values: the children with that hash.
    map: RwLock<HashMap<u64, Bucket<M>>>,
}

/// The children whose values share one hash.
type Bucket<M> = Vec<(Vec<String>, M)>;

fn same_values(key: &[String], values: &[&str]) -> bool {
    key.len() == values.len() && key.iter().zip(values).all(|(k, v)| k == v)
}

impl<M: Clone> Children<M> {
    fn new(labels: &[&str]) -> Self {
        Children {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            hasher: std::hash::RandomState::new(),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The hash of `values` (checked against the labels).
    fn hash(&self, values: &[&str]) -> u64 {
        assert_eq!(
            values.len(),
            self.labels.len(),
            "label values {values:?} for labels {:?}",
            self.labels
        );
        std::hash::BuildHasher::hash_one(&self.hasher, values)
    }

    fn with(&self, values: &[&str], make: impl FnOnce() -> M) -> M {
        let hash = self.hash(values);
        let found = |bucket: &Bucket<M>| {
            bucket
                .iter()
                .find(|(k, _)| same_values(k, values))
                .map(|(_, m)| m.clone())
        };
        if let Some(child) = self.map.read().get(&hash).and_then(found) {
            return child;
        }
        let mut map = self.map.write();
        let bucket = map.entry(hash).or_default();
        if let Some(child) = found(bucket) {
            return child;
        }
        let child = make();
        bucket.push((
            values.iter().map(|v| v.to_string()).collect(),
            child.clone(),
        ));
        child
    }

    fn remove(&self, values: &[&str]) -> bool {
        let hash = self.hash(values);
        let mut map = self.map.write();
        let Some(bucket) = map.get_mut(&hash) else {
            return false;
        };
        let before = bucket.len();
        bucket.retain(|(k, _)| !same_values(k, values));
        let removed = bucket.len() != before;
        if bucket.is_empty() {
            map.remove(&hash);
        }
        removed
    }

    /// The children sorted by label values.
    fn sorted(&self) -> Vec<(Vec<String>, M)> {
        let mut all: Vec<_> = self
            .map
            .read()
            .values()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Counters by label values.
#[derive(Clone, Debug)]
pub struct CounterVec(Arc<Children<Counter>>);

impl CounterVec {
    /// The child for these label values (one per label, in order), created
    /// at the first call. Panics on the wrong number of values.
    pub fn with(&self, values: &[&str]) -> Counter {
        self.0.with(values, Counter::new)
    }

    /// Forgets the child; `false` if there was none.
    pub fn remove(&self, values: &[&str]) -> bool {
        self.0.remove(values)
    }
}

/// Gauges by label values.
#[derive(Clone, Debug)]
pub struct GaugeVec(Arc<Children<Gauge>>);

impl GaugeVec {
    /// The child for these label values, created at the first call. Panics
    /// on the wrong number of values.
    pub fn with(&self, values: &[&str]) -> Gauge {
        self.0.with(values, Gauge::new)
    }

    /// Forgets the child; `false` if there was none.
    pub fn remove(&self, values: &[&str]) -> bool {
        self.0.remove(values)
    }
}

/// Histograms (all with the same bounds) by label values.
#[derive(Clone, Debug)]
pub struct HistogramVec {
    children: Arc<Children<Histogram>>,
    bounds: Arc<[f64]>,
}

impl HistogramVec {
    /// The child for these label values, created at the first call. Panics
    /// on the wrong number of values.
    pub fn with(&self, values: &[&str]) -> Histogram {
        self.children
            .with(values, || Histogram::with_bounds(self.bounds.clone()))
    }

    /// Forgets the child; `false` if there was none.
    pub fn remove(&self, values: &[&str]) -> bool {
        self.children.remove(values)
    }
}

/// What a callback metric returns: one `(label values, value)` per series,
/// the values in the order of the labels given at registration.
pub type Samples = Vec<(Vec<String>, f64)>;

/// A callback metric, called at each render.
pub type SampleFn = Box<dyn Fn() -> Samples + Send + Sync>;

enum Kind {
    Counter(Arc<Children<Counter>>),
    Gauge(Arc<Children<Gauge>>),
    Histogram(Arc<Children<Histogram>>),
    CounterFn(Box<[String]>, SampleFn),
    GaugeFn(Box<[String]>, SampleFn),
}

struct Family {
    name: String,
    help: String,
    kind: Kind,
}

#[derive(Default)]
struct Families {
    list: Vec<Arc<Family>>,
    /// Every family name and sample name in use.
    names: HashSet<String>,
}

/// The metric families of one `/metrics` endpoint. Clones share the
/// families.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<RwLock<Families>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .families
            .read()
            .list
            .iter()
            .map(|f| f.name.clone())
            .collect();
        f.debug_struct("Registry")
            .field("families", &names)
            .finish()
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not
/// starting with `__`, which Prometheus reserves).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the names and adds the family; panics on a bad name (see the
    /// module docs).
    fn add(&self, name: &str, help: &str, labels: &[&str], kind: Kind) {
        assert!(is_valid_metric_name(name), "invalid metric name {name:?}");
        for (i, label) in labels.iter().enumerate() {
            assert!(
                is_valid_label_name(label),
                "metric {name}: invalid label name {label:?}"
            );
            assert!(
                !labels[..i].contains(label),
                "metric {name}: label {label:?} given twice"
            );
        }
        let mut names = vec![name.to_string()];
        match kind {
            Kind::Counter(_) | Kind::CounterFn(..) => {
                assert!(
                    name.ends_with("_total"),
                    "counter {name:?} must end in _total"
                );
            }
            Kind::Histogram(_) => {
                assert!(
                    !labels.contains(&"le"),
                    "histogram {name}: the label le is reserved"
                );
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
            Kind::Gauge(_) | Kind::GaugeFn(..) => {}
        }
        let mut families = self.families.write();
        if let Some(taken) = names.iter().find(|n| families.names.contains(*n)) {
            panic!("metric {name}: the name {taken} is already registered");
        }
        families.names.extend(names);
        families.list.push(Arc::new(Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
        }));
    }

    /// A counter without labels. Panics on a bad or taken name.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_vec(name, help, &[]).with(&[])
    }

    /// A gauge without labels. Panics on a bad or taken name.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.gauge_vec(name, help, &[]).with(&[])
    }

    /// A histogram without labels. Panics on a bad or taken name or bad
    /// bounds.
    pub fn histogram(&self, name: &str, help: &str, bounds: &[f64]) -> Histogram {
        self.histogram_vec(name, help, &[], bounds).with(&[])
    }

    /// A family of counters. Panics on a bad or taken name.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        let children = Arc::new(Children::new(labels));
        self.add(name, help, labels, Kind::Counter(children.clone()));
        CounterVec(children)
    }

    /// A family of gauges. Panics on a bad or taken name.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let children = Arc::new(Children::new(labels));
        self.add(name, help, labels, Kind::Gauge(children.clone()));
        GaugeVec(children)
    }

    /// A family of histograms with these bounds. Panics on a bad or taken
    /// name or bad bounds.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        bounds: &[f64],
    ) -> HistogramVec {
        let bounds = check_bounds(bounds);
        let children = Arc::new(Children::new(labels));
        self.add(name, help, labels, Kind::Histogram(children.clone()));
        HistogramVec { children, bounds }
    }

    /// A gauge family whose series `f` returns at each render. Series with
    /// the wrong number of label values, and repeats of the same label
    /// values, are left out (with a warning). `f` runs without any lock of
    /// the registry held. Panics on a bad or taken name.
    pub fn gauge_fn(&self, name: &str, help: &str, labels: &[&str], f: SampleFn) {
        self.add(name, help, labels, Kind::GaugeFn(owned(labels), f));
    }

    /// A counter family whose series `f` returns at each render, for
    /// counts kept elsewhere; as [`Registry::gauge_fn`], the name ending in
    /// `_total`.
    pub fn counter_fn(&self, name: &str, help: &str, labels: &[&str], f: SampleFn) {
        self.add(name, help, labels, Kind::CounterFn(owned(labels), f));
    }

    /// The text exposition (format 0.0.4) of every family.
    pub fn render(&self) -> String {
        // Callbacks run without the lock, so they may use the registry.
        let families = self.families.read().list.clone();
        let mut out = String::with_capacity(families.len() * 128);
        for family in &families {
            family.render(&mut out);
        }
        out
    }
}

fn owned(labels: &[&str]) -> Box<[String]> {
    labels.iter().map(|l| l.to_string()).collect()
}

impl Family {
    fn render(&self, out: &mut String) {
        let mut body = String::new();
        let name = &self.name;
        let type_name = match &self.kind {
            Kind::Counter(children) => {
                for (values, c) in children.sorted() {
                    sample(&mut body, name, &children.labels, &values, None);
                    let _ = writeln!(body, " {}", c.get());
                }
                "counter"
            }
            Kind::Gauge(children) => {
                for (values, g) in children.sorted() {
                    sample(&mut body, name, &children.labels, &values, None);
                    let _ = writeln!(body, " {}", g.get());
                }
                "gauge"
            }
            Kind::Histogram(children) => {
                for (values, h) in children.sorted() {
                    let snap = h.snapshot();
                    let bucket = format!("{name}_bucket");
                    for (bound, count) in &snap.buckets {
                        sample(&mut body, &bucket, &children.labels, &values, Some(*bound));
                        let _ = writeln!(body, " {count}");
                    }
                    sample(
                        &mut body,
                        &format!("{name}_sum"),
                        &children.labels,
                        &values,
                        None,
                    );
                    body.push(' ');
                    write_f64(&mut body, snap.sum);
                    body.push('\n');
                    sample(
                        &mut body,
                        &format!("{name}_count"),
                        &children.labels,
                        &values,
                        None,
                    );
                    let _ = writeln!(body, " {}", snap.count);
                }
                "histogram"
            }
            Kind::CounterFn(labels, f) => {
                callback_samples(&mut body, name, labels, f);
                "counter"
            }
            Kind::GaugeFn(labels, f) => {
                callback_samples(&mut body, name, labels, f);
                "gauge"
            }
        };
        if body.is_empty() {
            return;
        }
        let _ = write!(out, "# HELP {name} ");
        escape_into(out, &self.help, false);
        let _ = writeln!(out, "\n# TYPE {name} {type_name}");
        out.push_str(&body);
    }
}

fn callback_samples(out: &mut String, name: &str, labels: &[String], f: &SampleFn) {
    let mut samples = f();
    samples.retain(|(values, _)| {
        let ok = values.len() == labels.len();
        if !ok {
            tracing::warn!(
                metric = name,
                ?values,
                "metrics: wrong number of label values"
            );
        }
        ok
    });
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    let before = samples.len();
    samples.dedup_by(|a, b| a.0 == b.0);
    if samples.len() != before {
        tracing::warn!(
            metric = name,
            "metrics: repeated label values, keeping the first"
        );
    }
    for (values, v) in samples {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        sample_str(out, name, labels, &values, None);
        out.push(' ');
        write_f64(out, v);
        out.push('\n');
    }
}

/// Writes a sample's name and labels (and `le`), up to its value.
fn sample(out: &mut String, name: &str, labels: &[String], values: &[String], le: Option<f64>) {
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    sample_str(out, name, labels, &values, le);
}

fn sample_str(out: &mut String, name: &str, labels: &[String], values: &[&str], le: Option<f64>) {
    out.push_str(name);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    for (i, (label, value)) in labels.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(label);
        out.push_str("=\"");
        escape_into(out, value, true);
        out.push('"');
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str("le=\"");
        write_f64(out, le);
        out.push('"');
    }
    out.push('}');
}

/// Escapes `\` and newline (HELP text), and `"` too in a label value.
fn escape_into(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes a float as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, whole
/// numbers without a fraction or exponent (up to 2^53), others in the
/// shortest form that reads back the same, with an exponent when very
/// small or large.
fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
        let _ = write!(out, "{}", v as i64);
    } else if (1e-4..1e15).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}
