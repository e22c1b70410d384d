//! The event socket: FreeSWITCH's ESL protocol.
//!
//! - [`frame`]: the wire format, sans IO;
//! - [`server`]: the inbound listener (127.0.0.1:8021 by default) that
//!   modesl, genesis, fs_cli-style tools and `dialtone ctl` connect to;
//! - [`logs`]: the log lines the `log` command streams;
//! - [`outbound`]: the `socket` action, FreeSWITCH's outbound mode.

pub mod frame;
pub mod logs;
pub mod outbound;
pub mod server;

pub use server::{serve, EslSettings};

use std::future::Future;
use std::pin::Pin;

/// The API commands `api` and `bgapi` run (implemented by the switch, which
/// owns the core, the endpoints and the tenants).
pub trait Api: Send + Sync + 'static {
    /// Runs `command` with `args` and returns its text output. FreeSWITCH's
    /// conventions hold: a failure starts with `-ERR`, success often with
    /// `+OK`; an unknown command is `-ERR <command> Command not found!`.
    fn execute<'a>(
        &'a self,
        command: &'a str,
        args: &'a str,
    ) -> Pin<Box<dyn Future<Output = String> + Send + 'a>>;
}
