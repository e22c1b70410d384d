//! Admission control: whether the switch takes on one more call or one more
//! dialplan invocation, decided here once for the whole switch.
//!
//! This module owns the limits ([`LimitConfig`], global and per tenant), the
//! live counts, the calls-per-second token bucket ([`CpsBucket`]) and the
//! structural constants ([`MAX_LEGS_PER_GROUP`], [`DEFAULT_MAX_RECURSION`]).
//!
//! # Policy
//!
//! * A [`ChannelPermit`] is taken with [`Admission::admit_channel`] **before**
//!   a channel is created, and is held by the channel until it is destroyed;
//!   dropping the permit releases the count. A channel that could not get a
//!   permit is never created.
//! * A call is admitted only if the global limits *and* its tenant's limits
//!   allow it: live channels below `max_channels`, and a token in the
//!   calls-per-second bucket (`max_cps`, burst of one second's worth).
//!   Channel caps are checked first, so a call refused for channels does not
//!   use up a CPS token; the tenant's bucket is tried before the global one.
//! * Overload is answered with [`HangupCause::SwitchCongestion`]
//!   ([`Overload::cause`]), which is SIP 503; the SIP layer adds
//!   `Retry-After` from [`Overload::retry_after`] (the time until a CPS token
//!   is available, or [`COUNT_RETRY_AFTER`] for channel/guest caps).
//! * Dialplan guest invocations are capped the same way, without waiting:
//!   [`Admission::acquire_guest`] either returns a [`GuestPermit`] at once or
//!   an [`Overload`].
//! * Tenants are configured with [`Admission::set_tenant`] /
//!   [`Admission::replace_tenants`] at any time (config reload). Replacing a
//!   tenant's limits keeps its live counts; removing a tenant lifts its caps
//!   but keeps counting, so adding it back later still knows its live
//!   channels. A tenant that was never configured is held to the global
//!   limits only and is not counted per tenant.
//!
//! # Concurrency
//!
//! Counts are atomics raised with a compare-and-swap loop that never passes
//! the cap, and lowered only by the permit that raised them, so they can
//! neither leak nor go negative. The per-call path takes no lock except a
//! short `parking_lot` mutex around a CPS bucket, and only when that scope
//! has a CPS limit. The tenant table is read through an `ArcSwap`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::HangupCause;

/// Most legs rung at the same time in one group of a dialstring
/// (FreeSWITCH's `MAX_PEERS`).
pub const MAX_LEGS_PER_GROUP: usize = 128;

/// Default depth limit for nested dialplan transfers/executions.
pub const DEFAULT_MAX_RECURSION: u32 = 8;

/// The `Retry-After` suggested when a channel or guest-invocation cap is
/// reached (nothing says when a slot frees up, so this is a fixed hint).
pub const COUNT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Limits of one scope (the whole switch, or one tenant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitConfig {
    /// Most live channels. A hard cap: 0 admits none, `u32::MAX` is no cap.
    pub max_channels: u32,
    /// New calls per second (burst of one second's worth); 0 = unlimited.
    pub max_cps: u32,
    /// Most concurrent dialplan guest invocations. A hard cap: 0 admits
    /// none, `u32::MAX` is no cap.
    pub max_guest_invocations: u32,
}

impl LimitConfig {
    /// No limits at all.
    pub const UNLIMITED: LimitConfig = LimitConfig {
        max_channels: u32::MAX,
        max_cps: 0,
        max_guest_invocations: u32::MAX,
    };
}

impl Default for LimitConfig {
    /// [`LimitConfig::UNLIMITED`].
    fn default() -> Self {
        LimitConfig::UNLIMITED
    }
}

/// A sans-IO token bucket for calls per second: it holds at most `rate`
/// tokens (one second's worth), starts full, and refills continuously at
/// `rate` tokens per second. Time is whatever `Instant` the caller passes.
#[derive(Clone, Debug)]
pub struct CpsBucket {
    rate: u32,
    /// Tokens in units of 1/1e9 token.
    nano_tokens: u128,
    last: Option<Instant>,
}

const NANOS_PER_TOKEN: u128 = 1_000_000_000;

impl CpsBucket {
    /// A full bucket for `rate` calls per second (0 = unlimited).
    pub fn new(rate: u32) -> CpsBucket {
        CpsBucket {
            rate,
            nano_tokens: Self::capacity_of(rate),
            last: None,
        }
    }

    fn capacity_of(rate: u32) -> u128 {
        u128::from(rate) * NANOS_PER_TOKEN
    }

    /// The rate in calls per second (0 = unlimited).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Changes the rate (config reload), keeping the tokens already there
    /// up to the new burst size. From unlimited, the bucket starts full.
    pub fn set_rate(&mut self, rate: u32, now: Instant) {
        if rate == self.rate {
            return;
        }
        self.refill(now);
        if self.rate == 0 {
            self.nano_tokens = Self::capacity_of(rate);
        }
        self.rate = rate;
        self.nano_tokens = self.nano_tokens.min(Self::capacity_of(rate));
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if now <= last {
            return;
        }
        let elapsed = now.duration_since(last).as_nanos();
        let cap = Self::capacity_of(self.rate);
        self.nano_tokens = elapsed
            .saturating_mul(u128::from(self.rate))
            .saturating_add(self.nano_tokens)
            .min(cap);
        self.last = Some(now);
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u32 {
        if self.rate == 0 {
            return u32::MAX;
        }
        self.refill(now);
        u32::try_from(self.nano_tokens / NANOS_PER_TOKEN).unwrap_or(u32::MAX)
    }

    /// Takes one token if there is one at `now`. Always true when unlimited.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        if self.nano_tokens >= NANOS_PER_TOKEN {
            self.nano_tokens -= NANOS_PER_TOKEN;
            true
        } else {
            false
        }
    }

    /// How long after `now` until a token is available (zero if one is).
    pub fn retry_after(&mut self, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.refill(now);
        let missing = NANOS_PER_TOKEN.saturating_sub(self.nano_tokens);
        let nanos = missing.div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Where a limit was hit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The switch-wide limits.
    Global,
    /// The limits of this tenant.
    Tenant(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Tenant(t) => write!(f, "tenant {t:?}"),
        }
    }
}

/// Which limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OverloadKind {
    /// `max_channels`.
    Channels,
    /// `max_cps`.
    Cps,
    /// `max_guest_invocations`.
    GuestInvocations,
}

impl fmt::Display for OverloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverloadKind::Channels => "channel",
            OverloadKind::Cps => "calls-per-second",
            OverloadKind::GuestInvocations => "guest invocation",
        })
    }
}

/// A refusal: a limit was reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{scope} {kind} limit reached (retry after {retry_after:?})")]
pub struct Overload {
    /// Whose limit.
    pub scope: Scope,
    /// Which limit.
    pub kind: OverloadKind,
    /// When trying again makes sense (SIP `Retry-After`, rounded up to
    /// seconds by the SIP layer).
    pub retry_after: Duration,
}

impl Overload {
    /// The hangup cause for a refused call: always SWITCH_CONGESTION
    /// (SIP 503).
    pub fn cause(&self) -> HangupCause {
        HangupCause::SwitchCongestion
    }
}

/// Live counts of one scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Usage {
    /// Channels holding a [`ChannelPermit`].
    pub channels: u32,
    /// Guest invocations holding a [`GuestPermit`].
    pub guest_invocations: u32,
}

/// Limits and counts of one scope.
#[derive(Debug)]
struct Gate {
    /// `None` for the global gate.
    tenant: Option<Arc<str>>,
    /// False once the tenant was removed: caps are lifted, counting goes on.
    configured: AtomicBool,
    max_channels: AtomicU32,
    max_cps: AtomicU32,
    max_guests: AtomicU32,
    channels: AtomicU32,
    guests: AtomicU32,
    cps: Mutex<CpsBucket>,
}

impl Gate {
    fn new(tenant: Option<Arc<str>>, config: LimitConfig) -> Gate {
        Gate {
            tenant,
            configured: AtomicBool::new(true),
            max_channels: AtomicU32::new(config.max_channels),
            max_cps: AtomicU32::new(config.max_cps),
            max_guests: AtomicU32::new(config.max_guest_invocations),
            channels: AtomicU32::new(0),
            guests: AtomicU32::new(0),
            cps: Mutex::new(CpsBucket::new(config.max_cps)),
        }
    }

    fn set(&self, config: LimitConfig, now: Instant) {
        self.max_channels
            .store(config.max_channels, Ordering::Relaxed);
        self.max_guests
            .store(config.max_guest_invocations, Ordering::Relaxed);
        let mut bucket = self.cps.lock();
        bucket.set_rate(config.max_cps, now);
        self.max_cps.store(config.max_cps, Ordering::Relaxed);
        drop(bucket);
        self.configured.store(true, Ordering::Relaxed);
    }

    fn config(&self) -> LimitConfig {
        LimitConfig {
            max_channels: self.max_channels.load(Ordering::Relaxed),
            max_cps: self.max_cps.load(Ordering::Relaxed),
            max_guest_invocations: self.max_guests.load(Ordering::Relaxed),
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            channels: self.channels.load(Ordering::Relaxed),
            guest_invocations: self.guests.load(Ordering::Relaxed),
        }
    }

    fn scope(&self) -> Scope {
        match &self.tenant {
            None => Scope::Global,
            Some(t) => Scope::Tenant(t.to_string()),
        }
    }

    fn overload(&self, kind: OverloadKind, retry_after: Duration) -> Overload {
        Overload {
            scope: self.scope(),
            kind,
            retry_after,
        }
    }

    /// Raises `count` by one unless that would pass `max` (or the gate caps
    /// nothing because its tenant was removed).
    fn try_inc(&self, count: &AtomicU32, max: &AtomicU32) -> bool {
        let cap = if self.configured.load(Ordering::Relaxed) {
            max.load(Ordering::Relaxed)
        } else {
            u32::MAX
        };
        count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    fn dec(count: &AtomicU32) {
        let prev = count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(prev > 0, "admission count went negative");
    }

    /// Takes a CPS token, or says how long until one is available.
    fn take_cps(&self, now: Instant) -> Result<(), Duration> {
        if self.max_cps.load(Ordering::Relaxed) == 0 || !self.configured.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut bucket = self.cps.lock();
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(bucket.retry_after(now))
        }
    }
}

type TenantMap = HashMap<Box<str>, Arc<Gate>>;

/// The switch's admission control: global limits, per-tenant limits and
/// live counts. Share it (e.g. in an `Arc`); every method takes `&self`.
pub struct Admission {
    global: Arc<Gate>,
    tenants: ArcSwap<TenantMap>,
    /// Serialises changes to `tenants`.
    writer: Mutex<()>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("global", &self.global_limits())
            .field("usage", &self.usage())
            .field("tenants", &self.tenants.load().len())
            .finish()
    }
}

impl Default for Admission {
    /// No global limits and no tenants.
    fn default() -> Self {
        Admission::new(LimitConfig::UNLIMITED)
    }
}

impl Admission {
    /// Admission with these global limits and no tenants.
    pub fn new(global: LimitConfig) -> Admission {
        Admission {
            global: Arc::new(Gate::new(None, global)),
            tenants: ArcSwap::from_pointee(HashMap::new()),
            writer: Mutex::new(()),
        }
    }

    /// The global limits.
    pub fn global_limits(&self) -> LimitConfig {
        self.global.config()
    }

    /// Replaces the global limits; live counts are kept and CPS tokens
    /// already earned are kept up to the new burst size.
    pub fn set_global(&self, config: LimitConfig, now: Instant) {
        self.global.set(config, now);
    }

    /// Adds a tenant or replaces its limits, keeping its live counts.
    pub fn set_tenant(&self, tenant: &str, config: LimitConfig, now: Instant) {
        let _w = self.writer.lock();
        if let Some(gate) = self.tenants.load().get(tenant) {
            gate.set(config, now);
            return;
        }
        let mut map: TenantMap = (**self.tenants.load()).clone();
        map.insert(
            tenant.into(),
            Arc::new(Gate::new(Some(tenant.into()), config)),
        );
        self.tenants.store(Arc::new(map));
    }

    /// Removes a tenant's limits. Its calls are then held to the global
    /// limits only, but its live channels stay counted so that adding the
    /// tenant back keeps an exact count. Returns whether it was configured.
    pub fn remove_tenant(&self, tenant: &str) -> bool {
        let _w = self.writer.lock();
        match self.tenants.load().get(tenant) {
            Some(gate) => gate.configured.swap(false, Ordering::Relaxed),
            None => false,
        }
    }

    /// Config reload: these tenants get these limits (counts kept), every
    /// other tenant is removed as by [`Admission::remove_tenant`].
    pub fn replace_tenants<'a>(
        &self,
        tenants: impl IntoIterator<Item = (&'a str, LimitConfig)>,
        now: Instant,
    ) {
        let _w = self.writer.lock();
        let mut map: TenantMap = (**self.tenants.load()).clone();
        let mut keep: Vec<Arc<Gate>> = Vec::new();
        for (name, config) in tenants {
            match map.get(name) {
                Some(gate) => gate.set(config, now),
                None => {
                    map.insert(name.into(), Arc::new(Gate::new(Some(name.into()), config)));
                }
            }
            keep.push(Arc::clone(&map[name]));
        }
        for gate in map.values() {
            if !keep.iter().any(|k| Arc::ptr_eq(k, gate)) {
                gate.configured.store(false, Ordering::Relaxed);
            }
        }
        self.tenants.store(Arc::new(map));
    }

    /// The limits of a configured tenant.
    pub fn tenant_limits(&self, tenant: &str) -> Option<LimitConfig> {
        self.tenants
            .load()
            .get(tenant)
            .filter(|g| g.configured.load(Ordering::Relaxed))
            .map(|g| g.config())
    }

    /// Switch-wide live counts.
    pub fn usage(&self) -> Usage {
        self.global.usage()
    }

    /// A tenant's live counts (`None` if it was never configured).
    pub fn tenant_usage(&self, tenant: &str) -> Option<Usage> {
        self.tenants.load().get(tenant).map(|g| g.usage())
    }

    fn tenant_gate(&self, tenant: &str) -> Option<Arc<Gate>> {
        self.tenants.load().get(tenant).cloned()
    }

    /// Admits one new channel for `tenant` at `now`: checks the global and
    /// tenant channel caps, then the tenant and global CPS buckets. Hold the
    /// permit for the channel's whole life.
    pub fn admit_channel(&self, tenant: &str, now: Instant) -> Result<ChannelPermit, Overload> {
        let global = &self.global;
        if !global.try_inc(&global.channels, &global.max_channels) {
            return Err(global.overload(OverloadKind::Channels, COUNT_RETRY_AFTER));
        }
        // From here the permit owns the counts it raised: an early return
        // drops it and undoes them.
        let mut permit = ChannelPermit {
            global: Arc::clone(global),
            tenant: None,
        };
        let gate = self.tenant_gate(tenant);
        if let Some(gate) = &gate {
            if !gate.try_inc(&gate.channels, &gate.max_channels) {
                return Err(gate.overload(OverloadKind::Channels, COUNT_RETRY_AFTER));
            }
            permit.tenant = Some(Arc::clone(gate));
            if let Err(wait) = gate.take_cps(now) {
                return Err(gate.overload(OverloadKind::Cps, wait));
            }
        }
        if let Err(wait) = global.take_cps(now) {
            return Err(global.overload(OverloadKind::Cps, wait));
        }
        Ok(permit)
    }

    /// Takes one concurrent dialplan guest invocation slot for `tenant`,
    /// without waiting. Hold the permit for the invocation.
    pub fn acquire_guest(&self, tenant: &str) -> Result<GuestPermit, Overload> {
        let global = &self.global;
        if !global.try_inc(&global.guests, &global.max_guests) {
            return Err(global.overload(OverloadKind::GuestInvocations, COUNT_RETRY_AFTER));
        }
        let mut permit = GuestPermit {
            global: Arc::clone(global),
            tenant: None,
        };
        if let Some(gate) = self.tenant_gate(tenant) {
            if !gate.try_inc(&gate.guests, &gate.max_guests) {
                return Err(gate.overload(OverloadKind::GuestInvocations, COUNT_RETRY_AFTER));
            }
            permit.tenant = Some(gate);
        }
        Ok(permit)
    }
}

/// One admitted channel. Dropping it (when the channel is destroyed)
/// releases the global and tenant channel counts.
#[must_use = "dropping the permit releases the channel slot"]
#[derive(Debug)]
pub struct ChannelPermit {
    global: Arc<Gate>,
    tenant: Option<Arc<Gate>>,
}

impl ChannelPermit {
    /// The tenant this channel is counted against, if it was configured.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_ref().and_then(|g| g.tenant.as_deref())
    }
}

impl Drop for ChannelPermit {
    fn drop(&mut self) {
        if let Some(t) = &self.tenant {
            Gate::dec(&t.channels);
        }
        Gate::dec(&self.global.channels);
    }
}

/// One running dialplan guest invocation. Dropping it releases the global
/// and tenant invocation counts.
#[must_use = "dropping the permit releases the invocation slot"]
#[derive(Debug)]
pub struct GuestPermit {
    global: Arc<Gate>,
    tenant: Option<Arc<Gate>>,
}

impl GuestPermit {
    /// The tenant this invocation is counted against, if it was configured.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_ref().and_then(|g| g.tenant.as_deref())
    }
}

impl Drop for GuestPermit {
    fn drop(&mut self) {
        if let Some(t) = &self.tenant {
            Gate::dec(&t.guests);
        }
        Gate::dec(&self.global.guests);
    }
}
