//! One guest invocation: store, limits, host imports, and what a failure
//! means.
//!
//! Every invocation gets:
//! - a wall-clock deadline, enforced by epoch interruption inside wasm and by
//!   a check at the start of every host import (so a guest that spins on host
//!   calls is stopped too);
//! - a memory limit (growing past it traps), table and instance caps;
//! - fuel, when the tenant has a CPU budget;
//! - at most [`MAX_LOG_LINES`] log lines of at most [`MAX_LOG_CHARS`]
//!   characters;
//! - a WASI context that grants nothing: no preopened directories, no
//!   environment or arguments, stdin closed, stdout/stderr discarded, no
//!   sockets, no name lookup. It is only created if the guest touches WASI.
//!
//! A trap, timeout, memory blow-up or malformed answer becomes an
//! [`InvokeError`]; the tenant layer turns it into the tenant's failure cause
//! for that one call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_core::HangupCause;
use wasmtime::component::{Instance, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::dialtone::switch::{host, types as wit};
use crate::engine::{Engine, Loaded};
use crate::services::TenantServices;

/// Log lines kept per invocation.
pub const MAX_LOG_LINES: u32 = 64;
/// Characters kept per log line.
pub const MAX_LOG_CHARS: usize = 512;
/// Longest string the host accepts in an answer (a dialstring, a value).
pub const MAX_ANSWER_STRING: usize = 64 * 1024;

/// Per-tenant sandbox settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxSettings {
    /// Wall-clock deadline per invocation, host calls included.
    pub deadline: Duration,
    /// Linear memory limit per invocation, in bytes.
    pub memory_bytes: usize,
    /// CPU budget in fuel units; `None` for no budget.
    pub fuel: Option<u64>,
    /// 0: a fresh instance per invocation. N: reuse an instance for up to N
    /// invocations (discarded after any trap).
    pub warm_reuse: u32,
    /// The cause a call fails with when its invocation fails.
    pub on_failure: HangupCause,
    /// Most actions a route may return.
    pub max_actions: usize,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            deadline: Duration::from_millis(50),
            memory_bytes: 16 << 20,
            fuel: None,
            warm_reuse: 0,
            on_failure: HangupCause::DestinationOutOfOrder,
            max_actions: 256,
        }
    }
}

/// Why an invocation produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The deadline passed (in wasm or in a host call).
    #[error("deadline of {0:?} exceeded")]
    Timeout(Duration),
    /// The fuel budget ran out.
    #[error("CPU budget (fuel) exhausted")]
    OutOfFuel,
    /// Memory growth past the limit.
    #[error("memory limit exceeded: {0}")]
    MemoryLimit(String),
    /// The wasm stack overflowed.
    #[error("stack overflow")]
    StackOverflow,
    /// Any other trap: a panic (`unreachable`), an uncaught exception, a
    /// bad memory access.
    #[error("trap: {0}")]
    Trap(String),
    /// The answer broke a rule (too many actions, oversized strings, bad
    /// codes).
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// No capacity: the tenant's or the switch's cap on concurrent guest
    /// invocations, or the worker queue, is full.
    #[error("overloaded: {0}")]
    Overload(String),
    /// The tenant has no component for this role.
    #[error("no component loaded")]
    NoComponent,
    /// Instantiation failed for another reason.
    #[error("instantiation failed: {0}")]
    Instantiate(String),
}

impl InvokeError {
    /// The short kind used in events and metrics (`timeout`, `trap`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Timeout(_) => "timeout",
            InvokeError::OutOfFuel => "fuel",
            InvokeError::MemoryLimit(_) => "memory",
            InvokeError::StackOverflow => "stack",
            InvokeError::Trap(_) => "trap",
            InvokeError::Malformed(_) => "malformed",
            InvokeError::Overload(_) => "overload",
            InvokeError::NoComponent => "no-component",
            InvokeError::Instantiate(_) => "instantiate",
        }
    }
}

pub(crate) struct Limiter {
    memory_bytes: usize,
    hit: Option<String>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let msg = format!(
                "growing memory from {current} to {desired} bytes, limit {} bytes",
                self.memory_bytes
            );
            self.hit = Some(msg.clone());
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > 200_000 {
            self.hit = Some(format!("table growth to {desired} elements"));
            return Err(wasmtime::Error::msg("table limit exceeded"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

/// Host state of one store.
pub struct State {
    tenant: Arc<str>,
    version: Arc<str>,
    channel: String,
    services: Arc<dyn TenantServices>,
    limiter: Limiter,
    deadline: Instant,
    deadline_hit: bool,
    log_lines: u32,
    log_dropped: u32,
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    vars: Arc<Vec<(String, String)>>,
}

/// The variables of a call that has no channel (helpers, outbound and
/// message routing): one shared empty list.
pub(crate) fn no_variables() -> Arc<Vec<(String, String)>> {
    static EMPTY: std::sync::LazyLock<Arc<Vec<(String, String)>>> =
        std::sync::LazyLock::new(Arc::default);
    EMPTY.clone()
}

impl State {
    /// The variables the `channel-variable` imports answer from.
    pub(crate) fn set_channel_variables(&mut self, vars: Arc<Vec<(String, String)>>) {
        self.vars = vars;
    }

    fn check_deadline(&mut self) -> wasmtime::Result<()> {
        if Instant::now() >= self.deadline {
            self.deadline_hit = true;
            return Err(wasmtime::Error::msg("deadline exceeded during a host call"));
        }
        Ok(())
    }

    /// Splits `user@domain`; `None` if the domain is another tenant's.
    fn own_user<'a>(&self, s: &'a str) -> Option<&'a str> {
        match s.rsplit_once('@') {
            Some((user, domain)) if domain.eq_ignore_ascii_case(&self.tenant) => Some(user),
            Some(_) => None,
            None => Some(s),
        }
    }
}

fn deny_all_wasi() -> WasiCtx {
    WasiCtx::builder()
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .build()
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(deny_all_wasi);
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl wit::Host for State {}

impl host::Host for State {
    fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        self.check_deadline()?;
        if self.log_lines >= MAX_LOG_LINES {
            self.log_dropped = self.log_dropped.saturating_add(1);
            return Ok(());
        }
        self.log_lines += 1;
        let mut msg = message;
        if msg.len() > MAX_LOG_CHARS {
            let mut cut = MAX_LOG_CHARS;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        let (tenant, version, channel) = (&*self.tenant, &*self.version, &self.channel);
        match level {
            host::LogLevel::Trace => {
                tracing::trace!(target: "dialplan", tenant, version, channel, "{msg}")
            }
            host::LogLevel::Debug => {
                tracing::debug!(target: "dialplan", tenant, version, channel, "{msg}")
            }
            host::LogLevel::Info => {
                tracing::info!(target: "dialplan", tenant, version, channel, "{msg}")
            }
            host::LogLevel::Warn => {
                tracing::warn!(target: "dialplan", tenant, version, channel, "{msg}")
            }
            host::LogLevel::Error => {
                tracing::error!(target: "dialplan", tenant, version, channel, "{msg}")
            }
        }
        Ok(())
    }

    fn registrations(
        &mut self,
        endpoint: String,
        profile: String,
        user: String,
    ) -> wasmtime::Result<Vec<host::Registration>> {
        self.check_deadline()?;
        let Some(user) = self.own_user(&user) else {
            return Ok(Vec::new());
        };
        let regs = self
            .services
            .registrations(&self.tenant, &endpoint, &profile, user);
        Ok(regs
            .into_iter()
            .filter(|r| r.domain.eq_ignore_ascii_case(&self.tenant))
            .map(|r| host::Registration {
                endpoint: r.endpoint,
                profile: r.profile,
                user: r.user,
                domain: r.domain,
                contact: r.contact,
                expires: r.expires,
                user_agent: r.user_agent,
                network_addr: r.network_addr,
            })
            .collect())
    }

    fn channel_variable(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        self.check_deadline()?;
        Ok(self
            .vars
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone()))
    }

    fn channel_variables(&mut self) -> wasmtime::Result<Vec<wit::Variable>> {
        self.check_deadline()?;
        Ok(self
            .vars
            .iter()
            .map(|(name, value)| wit::Variable {
                name: name.clone(),
                value: value.clone(),
            })
            .collect())
    }

    fn lookup_user(&mut self, user: String) -> wasmtime::Result<Option<host::DirectoryUser>> {
        self.check_deadline()?;
        let Some(user) = self.own_user(&user) else {
            return Ok(None);
        };
        Ok(self
            .services
            .lookup_user(&self.tenant, user)
            .map(|u| host::DirectoryUser {
                id: u.id,
                domain: self.tenant.to_string(),
                params: u
                    .params
                    .into_iter()
                    .filter(|(k, _)| !is_secret(k))
                    .map(|(name, value)| wit::Variable { name, value })
                    .collect(),
                variables: u
                    .variables
                    .into_iter()
                    .map(|(name, value)| wit::Variable { name, value })
                    .collect(),
                groups: u.groups,
            }))
    }

    fn group_members(&mut self, group: String) -> wasmtime::Result<Option<Vec<String>>> {
        self.check_deadline()?;
        let Some(group) = self.own_user(&group) else {
            return Ok(None);
        };
        Ok(self.services.group_members(&self.tenant, group))
    }

    fn global_variable(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        self.check_deadline()?;
        Ok(self.services.global_variable(&self.tenant, &name))
    }
}

fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n == "a1-hash" || n == "a1_hash" || n.contains("secret")
}

/// A live instance: fresh for one call, or warm for several.
pub(crate) struct Live {
    pub(crate) store: Store<State>,
    pub(crate) instance: Instance,
    pub(crate) sequence: u64,
    pub(crate) uses: u32,
}

/// Who is invoking, for limits and logs.
pub(crate) struct InvokeCtx<'a> {
    pub(crate) tenant: &'a Arc<str>,
    pub(crate) channel: &'a str,
    pub(crate) services: &'a Arc<dyn TenantServices>,
    pub(crate) settings: &'a SandboxSettings,
}

/// Instantiates `loaded` in a new store.
pub(crate) fn instantiate(
    engine: &Engine,
    loaded: &Loaded,
    ctx: &InvokeCtx<'_>,
) -> Result<Live, InvokeError> {
    instantiate_pre(
        engine,
        &loaded.pre,
        loaded.sequence,
        loaded.version_name.clone(),
        ctx,
    )
}

/// Instantiates a prepared component in a new store.
pub(crate) fn instantiate_pre(
    engine: &Engine,
    pre: &wasmtime::component::InstancePre<State>,
    sequence: u64,
    version: Arc<str>,
    ctx: &InvokeCtx<'_>,
) -> Result<Live, InvokeError> {
    let state = State {
        tenant: ctx.tenant.clone(),
        version,
        channel: ctx.channel.to_string(),
        services: ctx.services.clone(),
        limiter: Limiter {
            memory_bytes: ctx.settings.memory_bytes,
            hit: None,
        },
        deadline: Instant::now() + ctx.settings.deadline,
        deadline_hit: false,
        log_lines: 0,
        log_dropped: 0,
        wasi: None,
        table: ResourceTable::new(),
        vars: no_variables(),
    };
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|s| &mut s.limiter);
    arm(engine, &mut store, ctx)?;
    match pre.instantiate(&mut store) {
        Ok(instance) => Ok(Live {
            store,
            instance,
            sequence,
            uses: 0,
        }),
        Err(e) => Err(classify(e, store.data(), ctx.settings)),
    }
}

/// Resets deadline, fuel and counters before a call.
pub(crate) fn arm(
    engine: &Engine,
    store: &mut Store<State>,
    ctx: &InvokeCtx<'_>,
) -> Result<(), InvokeError> {
    let settings = ctx.settings;
    store.set_epoch_deadline(engine.ticks_for(settings.deadline));
    if engine.fuel_enabled() {
        store
            .set_fuel(settings.fuel.unwrap_or(u64::MAX))
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
    }
    let data = store.data_mut();
    data.deadline = Instant::now() + settings.deadline;
    data.deadline_hit = false;
    data.log_lines = 0;
    data.log_dropped = 0;
    data.limiter.hit = None;
    data.limiter.memory_bytes = settings.memory_bytes;
    if data.channel != ctx.channel {
        data.channel.clear();
        data.channel.push_str(ctx.channel);
    }
    Ok(())
}

/// Turns a wasmtime error into what happened.
pub(crate) fn classify(
    err: wasmtime::Error,
    state: &State,
    settings: &SandboxSettings,
) -> InvokeError {
    if let Some(msg) = &state.limiter.hit {
        return InvokeError::MemoryLimit(msg.clone());
    }
    if state.deadline_hit {
        return InvokeError::Timeout(settings.deadline);
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Timeout(settings.deadline),
        Some(Trap::OutOfFuel) => InvokeError::OutOfFuel,
        Some(Trap::StackOverflow) => InvokeError::StackOverflow,
        Some(Trap::AllocationTooLarge) => InvokeError::MemoryLimit("allocation too large".into()),
        Some(t) => InvokeError::Trap(t.to_string()),
        None => {
            let text = format!("{err:#}");
            if text.contains("too much data is being copied") {
                // wasmtime's own cap on what one call may copy across the
                // boundary: the answer is oversized.
                InvokeError::Malformed(format!("answer too large: {text}"))
            } else if text.contains("concurrent") && text.contains("limit") {
                InvokeError::Overload(text)
            } else {
                InvokeError::Trap(text)
            }
        }
    }
}

/// Logs that went over the cap during the last call, if any.
pub(crate) fn dropped_logs(store: &Store<State>) -> u32 {
    store.data().log_dropped
}

/// Checks the strings of an answer against [`MAX_ANSWER_STRING`].
pub(crate) fn check_len(what: &str, s: &str) -> Result<(), InvokeError> {
    if s.len() > MAX_ANSWER_STRING {
        return Err(InvokeError::Malformed(format!(
            "{what} of {} bytes (limit {MAX_ANSWER_STRING})",
            s.len()
        )));
    }
    Ok(())
}
