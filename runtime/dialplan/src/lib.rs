//! The WebAssembly host: tenant dialplans as sandboxed components.
//!
//! # What this crate owns
//!
//! - **The engine** ([`engine::Engine`]): one wasmtime engine for the whole
//!   switch, with the pooling allocator tuned for per-call instances,
//!   epoch interruption driven by a ticker thread, fuel metering available to
//!   every tenant, and a compiled-artifact cache on disk keyed by the
//!   component's content hash, the engine settings and the wasmtime version.
//! - **Loading** ([`engine::Engine::load`]): a component is refused, with a
//!   clear error, when it imports anything but this package's `host`/`types`
//!   and the WASI 0.2 interfaces the guest toolchains bring along (which are
//!   linked to a context that grants nothing), or when it lacks the export its
//!   role needs.
//! - **Invocations** ([`sandbox`]): a fresh `Store` and instance per
//!   invocation (or, opt-in per tenant, a warm instance reused up to N times
//!   and discarded after any trap), with a wall-clock deadline that covers host
//!   calls too, a memory limit, optional fuel, capped logging and validated
//!   answers. A trap, timeout, memory blow-up or malformed answer fails only
//!   that call, with the tenant's configured cause.
//! - **The guest pool** ([`pool::GuestPool`]): invocations queue (bounded)
//!   for a small set of dedicated threads, so a slow guest (up to its
//!   deadline) does not hold a signalling thread; a full queue is overload,
//!   answered at once.
//! - **Inline invocations** ([`inline`]): a component without WASI that has
//!   been quick on the pool (32 invocations in a row of at most 250 µs)
//!   runs on the caller's thread instead, saving the two hand-offs; one
//!   that then reaches its deadline, or keeps being slow, goes back to the
//!   pool for good.
//! - **Tenants and hot swap** ([`tenants::Tenants`]): one dialplan component
//!   and one helper component per tenant, each behind an `ArcSwap`. An
//!   invocation pins the version it started with; a swap only changes what
//!   the next invocation gets. A component that fails to load never replaces
//!   the running one.
//!
//! # What it does not own
//!
//! Executing the actions a dialplan returns (the core's channel executor),
//! the directory and the registrations (the host imports read them through
//! [`services::TenantServices`]), watching files (the switch binary).

#![deny(missing_docs)]

pub mod engine;
pub mod inline;
pub mod pool;
pub mod sandbox;
pub mod services;
pub mod tenants;

mod bindings;
mod convert;
mod exports;

pub use engine::{Engine, EngineSettings, LoadError, Loaded, Role};
pub use sandbox::{InvokeError, SandboxSettings};
pub use services::{DirectoryUser, TenantServices};
pub use tenants::{Tenant, TenantInfo, Tenants, VersionInfo, WasmDialplan};
