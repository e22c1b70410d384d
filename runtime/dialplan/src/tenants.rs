//! Tenants, their components, hot swap, and the [`Dialplan`] the core calls.
//!
//! Each tenant has a dialplan slot and a helper slot, each an
//! `ArcSwapOption<Loaded>`. An invocation takes `load_full()` once and runs on
//! that version to the end, so a swap never disturbs a running call: new
//! invocations simply get the new version. Loading (compiling) happens off the
//! invocation path; only a component that loaded cleanly is installed.
//!
//! When an invocation fails (trap, timeout, memory, malformed answer), the
//! call fails with the tenant's `on_failure` cause, a `CUSTOM
//! dialtone::dialplan_failure` event is published and a warning is logged
//! with tenant and version. Nothing else is affected.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;

use dialtone_core::events::{Event, EventBus};
use dialtone_core::limits::Admission;
use dialtone_core::routing::{
    Action, BoxFuture, ChannelSnapshot, Dialplan, HelperError, MessageDecision, OutboundDecision,
    OutboundRequest, RouteFailure, TextMessage,
};
use dialtone_core::HangupCause;

use crate::convert;
use crate::engine::{Engine, LoadError, Loaded, Role};
use crate::inline::Outcome;
use crate::pool::GuestPool;
use crate::sandbox::{self, check_len, InvokeCtx, InvokeError, Live, SandboxSettings};
use crate::services::TenantServices;

/// One tenant's runtime state.
pub struct Tenant {
    name: Arc<str>,
    dialplan: ArcSwapOption<Loaded>,
    helpers: ArcSwapOption<Loaded>,
    settings: ArcSwap<SandboxSettings>,
    /// Instances of the dialplan kept for reuse (`warm_reuse`).
    warm: Mutex<Vec<Live>>,
    /// Instances of the helper component kept for reuse: the switch's own
    /// ([`SHIPPED_HELPERS_REUSE`]) or, with `warm_reuse`, the tenant's.
    warm_helpers: Mutex<Vec<Live>>,
    invocations: AtomicU64,
    /// Invocations that ran on the caller's thread (see [`crate::inline`]).
    inline_invocations: AtomicU64,
    failures: AtomicU64,
    /// Dialplan versions replaced by later ones, newest last (at most
    /// [`HISTORY`]): what `dialplan rollback` goes back to.
    history: Mutex<Vec<Arc<Loaded>>>,
}

/// How many invocations one instance of the switch's own helper component
/// ([`Tenants::set_default_helpers`]) serves before it is replaced. It keeps
/// no state between calls (it only formats what the host's lookups answer),
/// so its instances are reused within a tenant, never across tenants, and
/// dropped after any failure; the tenants' own components follow their
/// `warm_reuse` setting.
pub const SHIPPED_HELPERS_REUSE: u32 = 1000;

/// Earlier dialplan versions kept per tenant for rollback.
pub const HISTORY: usize = 8;

/// One version in `dialplan versions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// `"<sequence>-<hash>"`.
    pub version: String,
    /// Where it came from (a file path, or `upload`).
    pub source: String,
    /// Whether it is the running one.
    pub active: bool,
}

/// What `dialplan versions` and metrics show of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantInfo {
    /// The tenant (domain).
    pub name: String,
    /// Running dialplan version, if any.
    pub dialplan: Option<String>,
    /// Running helper version, if any.
    pub helpers: Option<String>,
    /// Invocations so far.
    pub invocations: u64,
    /// Of those, the ones that ran on the caller's thread instead of the
    /// guest pool (see [`crate::inline`]).
    pub inline_invocations: u64,
    /// Whether the running dialplan version runs inline now; `None` without
    /// one.
    pub dialplan_inline: Option<bool>,
    /// Failed invocations so far.
    pub failures: u64,
}

/// Every tenant's components, and the machinery to run them.
pub struct Tenants {
    engine: Arc<Engine>,
    pool: GuestPool,
    services: Arc<dyn TenantServices>,
    admission: Arc<Admission>,
    events: EventBus,
    tenants: ArcSwap<HashMap<String, Arc<Tenant>>>,
    default_helpers: ArcSwapOption<Loaded>,
}

enum Call {
    Route(ChannelSnapshot),
    Outbound(OutboundRequest),
    Message(TextMessage),
    /// One dialstring's helper calls, in order, on one instance.
    Helpers(Vec<(String, String)>),
}

/// Which of a tenant's components a call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Dialplan,
    Helpers,
}

impl Slot {
    fn of(call: &Call) -> Slot {
        match call {
            Call::Helpers(_) => Slot::Helpers,
            _ => Slot::Dialplan,
        }
    }
}

/// The version a call runs on.
struct Target {
    loaded: Arc<Loaded>,
    /// The switch's own helper component (reused per
    /// [`SHIPPED_HELPERS_REUSE`]).
    shipped: bool,
}

enum Answer {
    Route(Vec<Action>),
    Outbound(OutboundDecision),
    Message(MessageDecision),
    Helpers(Vec<Result<String, String>>),
}

impl Tenants {
    /// A host with no tenants yet.
    pub fn new(
        engine: Arc<Engine>,
        pool: GuestPool,
        services: Arc<dyn TenantServices>,
        admission: Arc<Admission>,
        events: EventBus,
    ) -> Arc<Tenants> {
        Arc::new(Tenants {
            engine,
            pool,
            services,
            admission,
            events,
            tenants: ArcSwap::from_pointee(HashMap::new()),
            default_helpers: ArcSwapOption::empty(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Creates the tenant or updates its sandbox settings (running
    /// invocations keep the settings they started with).
    pub fn configure(&self, name: &str, settings: SandboxSettings) -> Arc<Tenant> {
        if let Some(t) = self.tenants.load().get(name) {
            t.settings.store(Arc::new(settings));
            t.warm.lock().clear();
            t.warm_helpers.lock().clear();
            return t.clone();
        }
        let tenant = Arc::new(Tenant {
            name: Arc::from(name),
            dialplan: ArcSwapOption::empty(),
            helpers: ArcSwapOption::empty(),
            settings: ArcSwap::from_pointee(settings),
            warm: Mutex::new(Vec::new()),
            warm_helpers: Mutex::new(Vec::new()),
            invocations: AtomicU64::new(0),
            inline_invocations: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            history: Mutex::new(Vec::new()),
        });
        self.tenants.rcu(|cur| {
            let mut next = HashMap::clone(cur);
            next.entry(name.to_string())
                .or_insert_with(|| tenant.clone());
            next
        });
        self.tenants.load().get(name).cloned().unwrap_or(tenant)
    }

    /// Removes tenants not in `keep` (config reload).
    pub fn retain(&self, keep: &[String]) {
        self.tenants.rcu(|cur| {
            cur.iter()
                .filter(|(k, _)| keep.iter().any(|n| n == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        });
    }

    /// A tenant, if configured.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.load().get(name).cloned()
    }

    /// Names of all tenants.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tenants.load().keys().cloned().collect();
        v.sort();
        v
    }

    /// Sets the helper component used by tenants without their own.
    pub fn set_default_helpers(&self, loaded: Loaded) {
        self.default_helpers.store(Some(Arc::new(loaded)));
    }

    /// Loads a component file and, only if it loads, installs it for the
    /// tenant (which must be configured). Returns the new version. Compiles
    /// on the calling thread: call it from a blocking context.
    pub fn load_file(&self, tenant: &str, role: Role, path: &Path) -> Result<String, LoadError> {
        let t = self.tenant(tenant).ok_or_else(|| LoadError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such tenant"),
        })?;
        match self.engine.load_file(path, role) {
            Ok(loaded) => Ok(self.install(&t, loaded)),
            Err(e) => {
                tracing::warn!(tenant, path = %path.display(), error = %e, "component refused; the running version stays");
                self.events.publish(
                    Event::custom("dialtone::dialplan_refused")
                        .header("Tenant", tenant.to_owned())
                        .header("Path", path.display().to_string())
                        .header("Reason", e.to_string()),
                );
                Err(e)
            }
        }
    }

    /// Installs an already loaded component, replacing the running one.
    /// Returns the new version.
    pub fn install(&self, tenant: &Arc<Tenant>, loaded: Loaded) -> String {
        self.install_arc(tenant, Arc::new(loaded), true)
    }

    fn install_arc(&self, tenant: &Arc<Tenant>, loaded: Arc<Loaded>, keep_old: bool) -> String {
        let version = loaded.version();
        let role = loaded.role;
        let slot = match role {
            Role::Dialplan => &tenant.dialplan,
            Role::Helpers => &tenant.helpers,
        };
        let old = slot.swap(Some(loaded));
        tenant.warm_helpers.lock().clear();
        if role == Role::Dialplan {
            tenant.warm.lock().clear();
            if let (Some(o), true) = (&old, keep_old) {
                let mut h = tenant.history.lock();
                h.push(o.clone());
                if h.len() > HISTORY {
                    h.remove(0);
                }
            }
        }
        let old_version = old.map(|o| o.version()).unwrap_or_default();
        tracing::info!(tenant = %tenant.name, version, old_version, ?role, "component installed");
        self.events.publish(
            Event::custom(if old_version.is_empty() {
                "dialtone::dialplan_load"
            } else {
                "dialtone::dialplan_swap"
            })
            .header("Tenant", tenant.name.to_string())
            .header("Role", format!("{role:?}").to_ascii_lowercase())
            .header("Version", version.clone())
            .header("Old-Version", old_version),
        );
        version
    }

    /// A tenant's dialplan versions: the running one first, then earlier
    /// ones newest first. `None` if there is no such tenant.
    pub fn versions(&self, tenant: &str) -> Option<Vec<VersionInfo>> {
        let t = self.tenant(tenant)?;
        let source = |l: &Loaded| {
            l.source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "upload".into())
        };
        let mut v = Vec::new();
        if let Some(cur) = t.dialplan.load().as_ref() {
            v.push(VersionInfo {
                version: cur.version(),
                source: source(cur),
                active: true,
            });
        }
        for l in t.history.lock().iter().rev() {
            v.push(VersionInfo {
                version: l.version(),
                source: source(l),
                active: false,
            });
        }
        Some(v)
    }

    /// Puts the previous dialplan version back in force (calls in progress
    /// keep theirs); the replaced one is dropped from the history. Returns
    /// the version now running.
    pub fn rollback(&self, tenant: &str) -> Result<String, String> {
        let t = self
            .tenant(tenant)
            .ok_or_else(|| format!("no tenant `{tenant}`"))?;
        let prev = t
            .history
            .lock()
            .pop()
            .ok_or_else(|| format!("tenant `{tenant}` has no earlier dialplan version"))?;
        tracing::info!(tenant, version = %prev.version(), "dialplan rolled back");
        Ok(self.install_arc(&t, prev, false))
    }

    /// Routes `channel` with `loaded` (not installed) in the tenant's
    /// sandbox: the dry run an upload must pass before it may serve. Runs
    /// on the calling thread (call it from a blocking context). `Ok` with
    /// the actions, `Err` with why the component failed.
    pub fn dry_run(
        &self,
        tenant: &str,
        loaded: &Loaded,
        channel: ChannelSnapshot,
    ) -> Result<Vec<Action>, String> {
        let t = self
            .tenant(tenant)
            .ok_or_else(|| format!("no tenant `{tenant}`"))?;
        let settings = t.settings.load_full();
        let uuid = channel.uuid.clone();
        let ctx = InvokeCtx {
            tenant: &t.name,
            channel: &uuid,
            services: &self.services,
            settings: &settings,
        };
        let mut live =
            sandbox::instantiate(&self.engine, loaded, &ctx).map_err(|e| e.to_string())?;
        match call_guest(loaded, &mut live, Call::Route(channel), &settings) {
            Ok(Answer::Route(a)) => Ok(a),
            Ok(_) => Err("the component answered something else than a route".into()),
            Err(CallError::Wasm(e)) => {
                Err(sandbox::classify(e, live.store.data(), &settings).to_string())
            }
            Err(CallError::Invalid(e)) => Err(e.to_string()),
        }
    }

    /// Instances a tenant keeps for reuse between invocations: (dialplan,
    /// helpers). `None` if there is no such tenant.
    pub fn warm_instances(&self, tenant: &str) -> Option<(usize, usize)> {
        let t = self.tenant(tenant)?;
        let n = (t.warm.lock().len(), t.warm_helpers.lock().len());
        Some(n)
    }

    /// Versions and counters of every tenant.
    pub fn info(&self) -> Vec<TenantInfo> {
        let map = self.tenants.load();
        let mut v: Vec<TenantInfo> = map
            .values()
            .map(|t| TenantInfo {
                name: t.name.to_string(),
                dialplan: t.dialplan.load().as_ref().map(|l| l.version()),
                helpers: t.helpers.load().as_ref().map(|l| l.version()),
                invocations: t.invocations.load(Ordering::Relaxed),
                inline_invocations: t.inline_invocations.load(Ordering::Relaxed),
                dialplan_inline: t.dialplan.load().as_ref().map(|l| l.gate.inline()),
                failures: t.failures.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Routes on the calling thread, bypassing the pool and the concurrency
    /// caps: for the CLI's `dialplan test` and for benchmarks.
    pub fn route_blocking(&self, channel: ChannelSnapshot) -> Result<Vec<Action>, RouteFailure> {
        let t = self.tenant_or_fail(&channel.tenant)?;
        let uuid = channel.uuid.clone();
        let Some(target) = self.target(&t, Slot::Dialplan) else {
            return Err(self.fail(&t, &uuid, InvokeError::NoComponent));
        };
        match self.run(&t, &target, Call::Route(channel)) {
            Ok(Answer::Route(a)) => Ok(a),
            Ok(_) => Err(self.fail(&t, &uuid, InvokeError::NoComponent)),
            Err(e) => Err(self.fail(&t, &uuid, e)),
        }
    }

    /// Whether an outbound channel of `tenant` must be put to its dialplan:
    /// the component in force exports the outbound hook, or there is none
    /// (and asking fails the leg with the tenant's failure cause, as any
    /// routing without a component does).
    pub fn wants_outbound(&self, tenant: &str) -> bool {
        let tenants = self.tenants.load();
        let Some(t) = tenants.get(tenant) else {
            return true;
        };
        let d = t.dialplan.load();
        match d.as_ref() {
            Some(l) => l.router.as_ref().is_some_and(|r| r.has_outbound()),
            None => true,
        }
    }

    fn tenant_or_fail(&self, name: &str) -> Result<Arc<Tenant>, RouteFailure> {
        self.tenant(name).ok_or_else(|| RouteFailure {
            cause: HangupCause::NoRouteDestination,
            reason: format!("no tenant `{name}`"),
        })
    }

    /// Runs a call under the tenant's guest cap: inline when the version
    /// has earned it (see [`crate::inline`]), otherwise on the pool.
    async fn submit(
        self: &Arc<Self>,
        tenant: &str,
        channel: &str,
        call: Call,
    ) -> Result<Answer, RouteFailure> {
        let t = self.tenant_or_fail(tenant)?;
        let permit = match self.admission.acquire_guest(tenant) {
            Ok(p) => p,
            Err(o) => {
                return Err(RouteFailure {
                    cause: o.cause(),
                    reason: o.to_string(),
                })
            }
        };
        let target = self.target(&t, Slot::of(&call));
        if let Some(target) = target.as_ref().filter(|x| x.loaded.gate.inline()) {
            let loaded = &target.loaded;
            t.inline_invocations.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            // The pool's workers survive a host bug's panic; so does the
            // caller here.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.run(&t, target, call)))
                .unwrap_or_else(|_| Err(InvokeError::Trap("host panic in an invocation".into())));
            drop(permit);
            let outcome = outcome_of(started, &result);
            if loaded.gate.after_inline(outcome) {
                tracing::warn!(tenant = %t.name, version = loaded.version(), ?outcome, "dialplan version demoted to the guest pool: an invocation on the caller's thread was slow");
            }
            return match result {
                Ok(answer) => Ok(answer),
                Err(e) => Err(self.fail(&t, channel, e)),
            };
        }
        let this = self.clone();
        let t2 = t.clone();
        let rx = self
            .pool
            .try_submit(move || {
                let _permit = permit;
                let Some(target) = target else {
                    return Err(InvokeError::NoComponent);
                };
                let started = Instant::now();
                let result = this.run(&t2, &target, call);
                target.loaded.gate.after_pool(outcome_of(started, &result));
                result
            })
            .map_err(|_| RouteFailure {
                cause: HangupCause::SwitchCongestion,
                reason: "dialplan worker queue full".into(),
            })?;
        match rx.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(self.fail(&t, channel, e)),
            Err(_) => Err(self.fail(&t, channel, InvokeError::Trap("worker lost".into()))),
        }
    }

    /// The version a call of `slot` runs on: the tenant's, or for helpers
    /// the dialplan's own helpers or the switch's shipped ones.
    fn target(&self, t: &Tenant, slot: Slot) -> Option<Target> {
        let own = match slot {
            Slot::Helpers => t
                .helpers
                .load_full()
                .or_else(|| t.dialplan.load_full().filter(|d| d.helpers.is_some())),
            Slot::Dialplan => t.dialplan.load_full(),
        };
        match (own, slot) {
            (Some(loaded), _) => Some(Target {
                loaded,
                shipped: false,
            }),
            (None, Slot::Helpers) => self.default_helpers.load_full().map(|loaded| Target {
                loaded,
                shipped: true,
            }),
            (None, Slot::Dialplan) => None,
        }
    }

    fn fail(&self, t: &Tenant, channel: &str, e: InvokeError) -> RouteFailure {
        let settings = t.settings.load();
        let version = t
            .dialplan
            .load()
            .as_ref()
            .map(|l| l.version())
            .unwrap_or_default();
        let cause = match &e {
            InvokeError::Overload(_) => HangupCause::SwitchCongestion,
            InvokeError::NoComponent => HangupCause::NoRouteDestination,
            _ => {
                t.failures.fetch_add(1, Ordering::Relaxed);
                settings.on_failure
            }
        };
        tracing::warn!(tenant = %t.name, version, channel, kind = e.kind(), error = %e, %cause, "dialplan invocation failed");
        self.events.publish(
            Event::custom("dialtone::dialplan_failure")
                .header("Tenant", t.name.to_string())
                .header("Version", version)
                .header("Unique-ID", channel.to_string())
                .header("Failure-Kind", e.kind())
                .header("Failure-Reason", e.to_string())
                .header("Hangup-Cause", cause.name()),
        );
        RouteFailure {
            cause,
            reason: e.to_string(),
        }
    }

    /// Runs one call on `target`'s version on the current thread. Never
    /// panics on guest behaviour.
    fn run(&self, t: &Tenant, target: &Target, call: Call) -> Result<Answer, InvokeError> {
        t.invocations.fetch_add(1, Ordering::Relaxed);
        let settings = t.settings.load_full();
        let loaded = &target.loaded;
        // How many invocations one instance serves, and where instances
        // wait for reuse.
        let (reuse, warm) = match Slot::of(&call) {
            Slot::Helpers if target.shipped => (SHIPPED_HELPERS_REUSE, &t.warm_helpers),
            Slot::Helpers => (settings.warm_reuse, &t.warm_helpers),
            Slot::Dialplan => (settings.warm_reuse, &t.warm),
        };
        let channel: String = match &call {
            Call::Route(c) => c.uuid.clone(),
            Call::Outbound(r) => r.channel.uuid.clone(),
            _ => String::new(),
        };
        let ctx = InvokeCtx {
            tenant: &t.name,
            channel: &channel,
            services: &self.services,
            settings: &settings,
        };
        let warm_ok = reuse > 0;
        let mut live = None;
        if warm_ok {
            let mut pool = warm.lock();
            while let Some(l) = pool.pop() {
                if l.sequence == loaded.sequence && l.uses < reuse {
                    live = Some(l);
                    break;
                }
            }
        }
        let mut live = match live {
            Some(mut l) => {
                sandbox::arm(&self.engine, &mut l.store, &ctx)?;
                l
            }
            None => sandbox::instantiate(&self.engine, loaded, &ctx)?,
        };
        live.uses += 1;
        let result = call_guest(loaded, &mut live, call, &settings);
        let dropped = sandbox::dropped_logs(&live.store);
        if dropped > 0 {
            tracing::warn!(tenant = %t.name, version = loaded.version(), dropped, "dialplan log lines over the per-call cap were dropped");
        }
        match result {
            Ok(answer) => {
                if warm_ok && live.uses < reuse {
                    // A kept instance holds none of this call's variables
                    // (the caller may take their list back, an `Arc`).
                    live.store
                        .data_mut()
                        .set_channel_variables(sandbox::no_variables());
                    let mut pool = warm.lock();
                    if pool.len() < self.pool.workers() {
                        pool.push(live);
                    }
                }
                Ok(answer)
            }
            Err(CallError::Wasm(e)) => Err(sandbox::classify(e, live.store.data(), &settings)),
            Err(CallError::Invalid(e)) => Err(e),
        }
    }
}

/// How an invocation that started at `started` ended, for its version's
/// [`InlineGate`](crate::inline::InlineGate).
fn outcome_of(started: Instant, result: &Result<Answer, InvokeError>) -> Outcome {
    Outcome::of(
        started.elapsed(),
        matches!(result, Err(InvokeError::Timeout(_))),
    )
}

enum CallError {
    Wasm(wasmtime::Error),
    Invalid(InvokeError),
}

impl From<wasmtime::Error> for CallError {
    fn from(e: wasmtime::Error) -> Self {
        CallError::Wasm(e)
    }
}

fn call_guest(
    loaded: &Loaded,
    live: &mut Live,
    call: Call,
    settings: &SandboxSettings,
) -> Result<Answer, CallError> {
    let Live {
        store, instance, ..
    } = live;
    match call {
        Call::Route(channel) => {
            let idx = loaded
                .router
                .as_ref()
                .ok_or(CallError::Invalid(InvokeError::NoComponent))?;
            let (info, vars) = convert::channel_into_wit(channel);
            store.data_mut().set_channel_variables(vars);
            let actions = idx.route(store, instance, &info)?;
            if actions.len() > settings.max_actions {
                return Err(CallError::Invalid(InvokeError::Malformed(format!(
                    "{} actions (limit {})",
                    actions.len(),
                    settings.max_actions
                ))));
            }
            let actions: Vec<Action> = actions.into_iter().map(convert::action_from_wit).collect();
            validate_actions(&actions).map_err(CallError::Invalid)?;
            Ok(Answer::Route(actions))
        }
        Call::Outbound(req) => {
            let idx = loaded
                .router
                .as_ref()
                .ok_or(CallError::Invalid(InvokeError::NoComponent))?;
            let (req, vars) = convert::outbound_into_wit(req);
            store.data_mut().set_channel_variables(vars);
            let d = match idx.route_outbound(store, instance, &req) {
                Some(d) => convert::outbound_from_wit(d?),
                // A version without the hook, swapped in after the caller
                // looked: the leg goes ahead as its dialstring built it.
                None => OutboundDecision::Accept {
                    variables: Vec::new(),
                },
            };
            match &d {
                OutboundDecision::Accept { variables } => check_vars(variables),
                OutboundDecision::Rewrite { target, variables } => {
                    check_len("rewrite target", target).and_then(|_| check_vars(variables))
                }
                OutboundDecision::Refuse { .. } => Ok(()),
            }
            .map_err(CallError::Invalid)?;
            Ok(Answer::Outbound(d))
        }
        Call::Message(msg) => {
            let idx = loaded
                .router
                .as_ref()
                .ok_or(CallError::Invalid(InvokeError::NoComponent))?;
            store
                .data_mut()
                .set_channel_variables(crate::sandbox::no_variables());
            let d = idx.route_message(store, instance, &convert::message_into_wit(msg))?;
            let d = convert::message_from_wit(d);
            match &d {
                MessageDecision::Reply { body } => check_len("reply", body),
                MessageDecision::Forward { target } => check_len("forward target", target),
                MessageDecision::Drop => Ok(()),
            }
            .map_err(CallError::Invalid)?;
            Ok(Answer::Message(d))
        }
        Call::Helpers(calls) => {
            let idx = loaded
                .helpers
                .as_ref()
                .ok_or(CallError::Invalid(InvokeError::NoComponent))?;
            store
                .data_mut()
                .set_channel_variables(crate::sandbox::no_variables());
            // Every helper of one dialstring on the same fresh instance,
            // under the invocation's one deadline: `${sofia_contact(..)},
            // ${verto_contact(..)}` (the default user dial-string) is one
            // instance, not two.
            let mut answers = Vec::with_capacity(calls.len());
            for (name, args) in &calls {
                let out = match idx.call(store, instance, name, args) {
                    Some(r) => r?,
                    None => Err(format!("unknown dialstring helper `{name}`")),
                };
                if let Ok(s) = &out {
                    check_len("helper output", s).map_err(CallError::Invalid)?;
                }
                answers.push(out);
            }
            Ok(Answer::Helpers(answers))
        }
    }
}

fn check_vars(vars: &[(String, String)]) -> Result<(), InvokeError> {
    if vars.len() > 1024 {
        return Err(InvokeError::Malformed(format!("{} variables", vars.len())));
    }
    for (k, v) in vars {
        check_name(k)?;
        check_len("variable value", v)?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), InvokeError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control() || c == '=') {
        return Err(InvokeError::Malformed(format!(
            "bad variable name {:?}",
            name.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// The host's checks on a route answer.
fn validate_actions(actions: &[Action]) -> Result<(), InvokeError> {
    for a in actions {
        match a {
            Action::Set { name, value } | Action::Export { name, value } => {
                check_name(name)?;
                check_len("variable value", value)?;
            }
            Action::Unset { name } => check_name(name)?,
            Action::Bridge { dialstring } => check_len("dialstring", dialstring)?,
            Action::Transfer { extension, context } => {
                check_len("extension", extension)?;
                if let Some(c) = context {
                    check_len("context", c)?;
                }
            }
            Action::Playback { file } => check_len("playback", file)?,
            Action::Record { path, .. } => check_len("record path", path)?,
            Action::Respond { code, reason } => {
                if !(100..=699).contains(code) {
                    return Err(InvokeError::Malformed(format!("SIP code {code}")));
                }
                if let Some(r) = reason {
                    check_len("reason", r)?;
                }
            }
            Action::Collect(c) => {
                check_name(&c.variable)?;
                if c.min_digits > c.max_digits || c.max_digits == 0 || c.max_digits > 128 {
                    return Err(InvokeError::Malformed(format!(
                        "collect digits {}..{}",
                        c.min_digits, c.max_digits
                    )));
                }
            }
            Action::Socket { address, .. } => check_len("socket address", address)?,
            Action::Sleep { .. }
            | Action::Answer
            | Action::PreAnswer
            | Action::RingReady
            | Action::Echo
            | Action::Park
            | Action::Hangup { .. } => {}
        }
    }
    Ok(())
}

/// The handle the core holds: [`Dialplan`] over an `Arc<Tenants>`.
#[derive(Clone)]
pub struct WasmDialplan(pub Arc<Tenants>);

impl Dialplan for WasmDialplan {
    fn version(&self, tenant: &str) -> Option<String> {
        let t = self.0.tenant(tenant)?;
        let v = t.dialplan.load().as_ref().map(|l| l.version());
        v
    }

    fn route(&self, channel: ChannelSnapshot) -> BoxFuture<'_, Result<Vec<Action>, RouteFailure>> {
        Box::pin(async move {
            let tenant = channel.tenant.clone();
            let uuid = channel.uuid.clone();
            match self.0.submit(&tenant, &uuid, Call::Route(channel)).await? {
                Answer::Route(a) => Ok(a),
                _ => Err(unexpected()),
            }
        })
    }

    fn wants_outbound(&self, tenant: &str) -> bool {
        self.0.wants_outbound(tenant)
    }

    fn route_outbound(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<'_, Result<OutboundDecision, RouteFailure>> {
        Box::pin(async move {
            if !self.0.wants_outbound(&request.channel.tenant) {
                return Ok(OutboundDecision::Accept {
                    variables: Vec::new(),
                });
            }
            let tenant = request.channel.tenant.clone();
            let uuid = request.channel.uuid.clone();
            match self
                .0
                .submit(&tenant, &uuid, Call::Outbound(request))
                .await?
            {
                Answer::Outbound(d) => Ok(d),
                _ => Err(unexpected()),
            }
        })
    }

    fn route_message(
        &self,
        message: TextMessage,
    ) -> BoxFuture<'_, Result<MessageDecision, RouteFailure>> {
        Box::pin(async move {
            let tenant = message.tenant.clone();
            match self.0.submit(&tenant, "", Call::Message(message)).await? {
                Answer::Message(d) => Ok(d),
                _ => Err(unexpected()),
            }
        })
    }

    fn call_helper(
        &self,
        tenant: &str,
        name: &str,
        args: &str,
    ) -> BoxFuture<'_, Result<String, HelperError>> {
        let tenant = tenant.to_string();
        let calls = vec![(name.to_string(), args.to_string())];
        Box::pin(async move {
            self.helpers(&tenant, calls)
                .await
                .pop()
                .unwrap_or_else(|| Err("no answer".to_string().into()))
        })
    }

    fn call_helpers<'a>(
        &'a self,
        tenant: &'a str,
        calls: &'a [(String, String)],
    ) -> BoxFuture<'a, Vec<Result<String, HelperError>>> {
        Box::pin(self.helpers(tenant, calls.to_vec()))
    }
}

impl WasmDialplan {
    /// One pool job, one fresh instance, every call in order.
    async fn helpers(
        &self,
        tenant: &str,
        calls: Vec<(String, String)>,
    ) -> Vec<Result<String, HelperError>> {
        let n = calls.len();
        match self.0.submit(tenant, "", Call::Helpers(calls)).await {
            Ok(Answer::Helpers(r)) if r.len() == n => r
                .into_iter()
                .map(|a| a.map_err(HelperError::from))
                .collect(),
            Ok(_) => vec![Err("unexpected answer".to_string().into()); n],
            Err(f) => vec![
                Err(HelperError {
                    cause: f.cause,
                    message: f.reason,
                });
                n
            ],
        }
    }
}

fn unexpected() -> RouteFailure {
    RouteFailure {
        cause: HangupCause::DestinationOutOfOrder,
        reason: "unexpected answer kind".into(),
    }
}
