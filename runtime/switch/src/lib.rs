//! The Dialtone soft switch: configuration, wiring and reload.
//!
//! - [`config`]: the one TOML schema of the whole switch, loaded into an
//!   immutable snapshot whose errors name file, line and field.
//! - [`app`]: builds the engine, the tenants, the core and the endpoints from
//!   a snapshot, and applies new snapshots on reload.
//! - [`services`]: the data behind the dialplan host imports.
#![deny(missing_docs)]

pub mod app;
pub mod config;
pub mod services;
