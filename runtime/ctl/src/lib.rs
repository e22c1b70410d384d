//! `dialtone ctl`: an fs_cli-like client of the Dialtone event socket.
//!
//! The switch's event socket speaks FreeSWITCH's inbound ESL protocol
//! (default 127.0.0.1:8021, password `ClueCon`). This crate is its client:
//!
//! - [`frame`]: the wire framing, sans-IO ([`FrameParser`]);
//! - [`event`]: events, from `text/event-plain` or `text/event-json` bodies;
//! - [`client`]: one logged-in connection ([`EslClient`]): `api`, `bgapi`,
//!   subscriptions, events queued while a reply is awaited;
//! - [`format`](mod@format): the one-line event summaries the CLI prints;
//! - this module: the command-line arguments ([`CtlArgs`]) and [`run`], which
//!   picks one-shot mode (`-x CMD`, in `oneshot`) or the interactive prompt
//!   (in `interactive`).
//!
//! The `dialtone` binary flattens [`CtlArgs`] into its `ctl` subcommand and
//! exits with `run(args)`; `examples/ctl.rs` does the same on its own
//! (`cargo run -p dialtone-ctl --example ctl -- -x status`).

pub mod client;
pub mod event;
pub mod format;
pub mod frame;
mod interactive;
mod oneshot;
#[cfg(test)]
mod testing;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{EslClient, Incoming};
pub use event::Event;
pub use frame::{Frame, FrameError, FrameParser};

/// The events the interactive prompt subscribes to unless `--events` says
/// otherwise: calls starting, answered and ended, background job results,
/// and custom events.
pub const DEFAULT_EVENTS: &str =
    "CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB CUSTOM";

/// `dialtone ctl`'s arguments.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct CtlArgs {
    /// The event socket's host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The event socket's port.
    #[arg(long, default_value_t = 8021)]
    pub port: u16,
    /// The event socket's password.
    #[arg(
        long,
        env = "DIALTONE_ESL_PASSWORD",
        default_value = "ClueCon",
        hide_env_values = true
    )]
    pub password: String,
    /// Run CMD as `api CMD`, print the reply and exit (repeatable: run in
    /// order). Exits 1 if any reply starts with `-ERR`, or on a connection error.
    #[arg(short = 'x', long = "execute", value_name = "CMD")]
    pub execute: Vec<String>,
    /// Events the interactive prompt subscribes to (space- or comma-separated;
    /// `CUSTOM` may be followed by subclasses; `none` for none).
    #[arg(long, value_name = "LIST", default_value = DEFAULT_EVENTS)]
    pub events: String,
    /// No ANSI colours (also off when stdout is not a terminal, or NO_COLOR is set).
    #[arg(long)]
    pub no_color: bool,
    /// The interactive prompt's history file [default: $HOME/.dialtone_ctl_history].
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Seconds to wait to connect and log in, and for each command's reply.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_s: u64,
}

impl Default for CtlArgs {
    fn default() -> Self {
        CtlArgs {
            host: "127.0.0.1".into(),
            port: 8021,
            password: "ClueCon".into(),
            execute: Vec::new(),
            events: DEFAULT_EVENTS.into(),
            no_color: false,
            history: None,
            timeout_s: 30,
        }
    }
}

impl CtlArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }

    /// `--events` as names; empty for `none` or an empty list.
    pub fn event_names(&self) -> Vec<String> {
        parse_event_names(&self.events)
    }

    /// `--history`, else `$HOME/.dialtone_ctl_history`, else none.
    pub fn history_path(&self) -> Option<PathBuf> {
        self.history.clone().or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".dialtone_ctl_history"))
        })
    }

    /// Whether to colour output written to a stream that `is_terminal` says
    /// is (or is not) a terminal.
    pub fn color(&self, is_terminal: bool) -> bool {
        !self.no_color && is_terminal && std::env::var_os("NO_COLOR").is_none()
    }

    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Splits an event list on spaces and commas; `none` means no events.
pub fn parse_event_names(list: &str) -> Vec<String> {
    let names: Vec<String> = list
        .split([' ', ',', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() == 1 && names[0].eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    names
}

/// Runs `dialtone ctl` and returns the process exit code: with `-x`, the
/// one-shot commands (0, or 1 if any failed); else the interactive prompt
/// (0 on `/exit` or Ctrl-D, 1 when the connection is lost or cannot be made).
pub fn run(args: CtlArgs) -> i32 {
    if !args.execute.is_empty() {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        oneshot::run(&args, &mut out, &mut err)
    } else {
        interactive::run(&args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Act, FakeServer};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ctl: CtlArgs,
    }

    #[test]
    fn args_defaults_and_flags() {
        // The env fallback is not exercised here: tests share the process env.
        let a = Cli::try_parse_from(["ctl"]).unwrap().ctl;
        if std::env::var_os("DIALTONE_ESL_PASSWORD").is_none() {
            assert_eq!(a, CtlArgs::default());
        }
        assert_eq!(
            a.event_names(),
            [
                "CHANNEL_CREATE",
                "CHANNEL_ANSWER",
                "CHANNEL_HANGUP_COMPLETE",
                "BACKGROUND_JOB",
                "CUSTOM"
            ]
        );
        let a = Cli::try_parse_from([
            "ctl",
            "--host",
            "::1",
            "--port",
            "9000",
            "--password",
            "pw",
            "-x",
            "status",
            "--execute",
            "show channels",
            "--events",
            "CHANNEL_ANSWER,CUSTOM dialtone::dialplan_swap",
            "--no-color",
            "--history",
            "/tmp/h",
            "--timeout-s",
            "3",
        ])
        .unwrap()
        .ctl;
        assert_eq!(a.host, "::1");
        assert_eq!(a.port, 9000);
        assert_eq!(a.password, "pw");
        assert_eq!(a.execute, ["status", "show channels"]);
        assert_eq!(
            a.event_names(),
            ["CHANNEL_ANSWER", "CUSTOM", "dialtone::dialplan_swap"]
        );
        assert!(a.no_color && !a.color(true));
        assert_eq!(a.history_path(), Some(PathBuf::from("/tmp/h")));
        assert_eq!(a.timeout(), Duration::from_secs(3));
        assert!(Cli::try_parse_from(["ctl", "--timeout-s", "0"]).is_err());
        assert!(parse_event_names("none").is_empty());
        assert!(parse_event_names(" ").is_empty());
    }

    fn args(port: u16, execute: &[&str]) -> CtlArgs {
        CtlArgs {
            port,
            execute: execute.iter().map(|s| s.to_string()).collect(),
            timeout_s: 5,
            ..CtlArgs::default()
        }
    }

    fn status_server() -> FakeServer {
        FakeServer::start(|cmd| match cmd {
            "api status" => vec![Act::Send(testing::api_response("UP 0 years, 0 days\n"))],
            "api version" => vec![Act::Send(testing::api_response("Dialtone 0.1.0"))],
            "api nope" => vec![Act::Send(testing::api_response(
                "-ERR nope Command not found!\n",
            ))],
            _ => vec![Act::Send(testing::reply("-ERR command not found"))],
        })
    }

    #[test]
    fn run_one_shot_exit_codes() {
        let s = status_server();
        assert_eq!(run(args(s.port, &["status"])), 0);
        assert_eq!(run(args(s.port, &["status", "version"])), 0);
        assert_eq!(run(args(s.port, &["nope"])), 1);
        assert_eq!(run(args(s.port, &["status", "nope", "version"])), 1);
        let mut wrong = args(s.port, &["status"]);
        wrong.password = "wrong".into();
        assert_eq!(run(wrong), 1);
    }

    #[test]
    fn one_shot_prints_each_body() {
        let s = status_server();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = oneshot::run(
            &args(s.port, &["status", "nope", "version"]),
            &mut out,
            &mut err,
        );
        assert_eq!(code, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "UP 0 years, 0 days\n-ERR nope Command not found!\nDialtone 0.1.0\n"
        );
        assert_eq!(String::from_utf8(err).unwrap(), "");
        // Every command went over one connection, which said goodbye.
        assert_eq!(
            s.commands(),
            [
                "auth ClueCon",
                "api status",
                "api nope",
                "api version",
                "exit"
            ]
        );
    }

    #[test]
    fn one_shot_without_a_switch() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            oneshot::run(&args(port, &["status"]), &mut out, &mut err),
            1
        );
        let err = String::from_utf8(err).unwrap();
        assert!(err.starts_with("dialtone ctl: cannot connect"), "{err}");
        assert!(out.is_empty());
    }
}
