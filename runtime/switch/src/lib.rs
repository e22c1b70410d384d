//! The Dialtone soft switch: configuration, wiring and reload.
//!
//! - [`config`]: the one TOML schema of the whole switch, loaded into an
//!   immutable snapshot whose errors name file, line and field.
//! - [`app`]: builds the engine, the tenants, the core and the endpoints from
//!   a snapshot, and applies new snapshots on reload.
//! - [`services`]: the data behind the dialplan host imports.
//! - [`api`]: the API commands of the event socket and `dialtone ctl`.
//! - [`control`]: starts the control plane (event socket, CDRs, heartbeat).
//! - [`http`]: `/metrics` and the tenant dialplan API.
//! - [`tls`]: the SIP profiles' certificates, checked (and the switch's own
//!   self-signed one generated) before the switch starts.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod config;
pub mod control;
pub mod http;
pub mod services;
pub mod tls;
