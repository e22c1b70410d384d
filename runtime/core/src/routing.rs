//! What the core asks a dialplan, and what a dialplan answers.
//!
//! These types mirror the WIT package (`wit/types.wit`) one to one, so the
//! core can execute a routing decision without depending on wasmtime. The
//! `dialtone-dialplan` crate converts between them and the generated
//! bindings; anything else that can route (a test fake, a future HTTP
//! dialplan) implements [`Dialplan`].

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::HangupCause;

/// Inbound or outbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Heard by an endpoint.
    Inbound,
    /// Created by the switch from a dialstring.
    Outbound,
}

/// A snapshot of a channel, as a dialplan sees it (`channel-info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelSnapshot {
    /// The channel's UUID.
    pub uuid: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The endpoint module (`sofia`, `loopback`, ...).
    pub endpoint: String,
    /// The endpoint's profile, empty if none.
    pub profile: String,
    /// The tenant (domain).
    pub tenant: String,
    /// The dialplan context.
    pub context: String,
    /// Caller ID name.
    pub caller_id_name: String,
    /// Caller ID number.
    pub caller_id_number: String,
    /// The destination number.
    pub destination: String,
    /// Where the channel came from, empty if nowhere.
    pub network_addr: String,
    /// Channel variables, shared with the channel (cloning a snapshot
    /// does not copy them).
    pub variables: std::sync::Arc<Vec<(String, String)>>,
}

/// Which audio `record` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordLegs {
    /// The caller.
    Caller,
    /// The far end.
    Callee,
    /// Both, stereo.
    Both,
}

/// Arguments of `collect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectSpec {
    /// What to play while collecting.
    pub prompt: Option<String>,
    /// The variable that receives the digits.
    pub variable: String,
    /// Fewest digits.
    pub min_digits: u8,
    /// Most digits.
    pub max_digits: u8,
    /// First-digit and inter-digit timeout, in ms.
    pub timeout_ms: u32,
    /// Digits that end the input.
    pub terminators: String,
}

/// One step of call processing (`action` in the WIT).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Answer.
    Answer,
    /// Early media.
    PreAnswer,
    /// Ringing.
    RingReady,
    /// Set a variable.
    Set {
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// Set a variable here and on every channel this one creates.
    Export {
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// Remove a variable.
    Unset {
        /// Name.
        name: String,
    },
    /// Originate and bridge.
    Bridge {
        /// The dialstring template (expanded by the core).
        dialstring: String,
    },
    /// Route again with a new destination.
    Transfer {
        /// New destination.
        extension: String,
        /// New context, if any.
        context: Option<String>,
    },
    /// Play a file or a tone stream (media engine).
    Playback {
        /// What to play.
        file: String,
    },
    /// Echo the caller's audio (media engine).
    Echo,
    /// Hold the channel.
    Park,
    /// Wait.
    Sleep {
        /// Milliseconds.
        ms: u32,
    },
    /// Record to WAV (media engine).
    Record {
        /// File relative to the tenant's recordings directory.
        path: String,
        /// Limit in ms.
        limit_ms: Option<u32>,
        /// Which audio.
        legs: RecordLegs,
    },
    /// Hang up.
    Hangup {
        /// Cause.
        cause: HangupCause,
    },
    /// Send a SIP response.
    Respond {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: Option<String>,
    },
    /// Collect digits, then route again (media engine).
    Collect(CollectSpec),
    /// Hand the call to an external application (control plane).
    Socket {
        /// `host:port`.
        address: String,
        /// Async mode.
        async_mode: bool,
        /// Full mode.
        full: bool,
    },
}

impl Action {
    /// A FreeSWITCH application and its argument string as an action
    /// (`originate ... &app(args)`, an event socket's `sendmsg`):
    /// `answer`, `pre_answer`, `ring_ready`, `park`, `echo`,
    /// `playback FILE`, `hangup [CAUSE]`, `sleep MS`, `set NAME=VALUE`,
    /// `export NAME=VALUE`, `unset NAME`, `transfer EXT [DIALPLAN [CONTEXT]]`,
    /// `bridge DIALSTRING`, `respond CODE [REASON]`. Anything else is an
    /// error naming the application.
    pub fn from_app(name: &str, arg: &str) -> Result<Action, String> {
        let arg = arg.trim();
        let name_value = |what: &str| match arg.split_once('=') {
            Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_string(), v.to_string())),
            _ => Err(format!("{what} needs NAME=VALUE, got `{arg}`")),
        };
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "answer" => Action::Answer,
            "pre_answer" => Action::PreAnswer,
            "ring_ready" => Action::RingReady,
            "park" => Action::Park,
            "echo" => Action::Echo,
            "playback" if !arg.is_empty() => Action::Playback { file: arg.into() },
            "hangup" => Action::Hangup {
                cause: if arg.is_empty() {
                    HangupCause::NormalClearing
                } else {
                    HangupCause::parse(arg)
                        .ok_or_else(|| format!("unknown hangup cause `{arg}`"))?
                },
            },
            "sleep" => Action::Sleep {
                ms: arg
                    .parse()
                    .map_err(|_| format!("sleep needs milliseconds, got `{arg}`"))?,
            },
            "set" => {
                let (name, value) = name_value("set")?;
                Action::Set { name, value }
            }
            "export" => {
                let (name, value) = name_value("export")?;
                Action::Export { name, value }
            }
            "unset" if !arg.is_empty() => Action::Unset { name: arg.into() },
            "transfer" if !arg.is_empty() => {
                let mut w = arg.split_whitespace();
                Action::Transfer {
                    extension: w.next().unwrap_or_default().into(),
                    context: w.nth(1).map(str::to_string),
                }
            }
            "bridge" if !arg.is_empty() => Action::Bridge {
                dialstring: arg.into(),
            },
            "respond" if !arg.is_empty() => {
                let (code, reason) = match arg.split_once(' ') {
                    Some((c, r)) => (c, Some(r.trim().to_string())),
                    None => (arg, None),
                };
                Action::Respond {
                    code: code
                        .parse()
                        .ok()
                        .filter(|c| (100..700).contains(c))
                        .ok_or_else(|| format!("respond needs a SIP code, got `{code}`"))?,
                    reason,
                }
            }
            other => {
                return Err(format!(
                    "unsupported application `{other}` (argument `{arg}`)"
                ))
            }
        })
    }

    /// The application name FreeSWITCH would log for this action.
    pub fn app_name(&self) -> &'static str {
        match self {
            Action::Answer => "answer",
            Action::PreAnswer => "pre_answer",
            Action::RingReady => "ring_ready",
            Action::Set { .. } => "set",
            Action::Export { .. } => "export",
            Action::Unset { .. } => "unset",
            Action::Bridge { .. } => "bridge",
            Action::Transfer { .. } => "transfer",
            Action::Playback { .. } => "playback",
            Action::Echo => "echo",
            Action::Park => "park",
            Action::Sleep { .. } => "sleep",
            Action::Record { .. } => "record",
            Action::Hangup { .. } => "hangup",
            Action::Respond { .. } => "respond",
            Action::Collect(_) => "collect",
            Action::Socket { .. } => "socket",
        }
    }
}

/// A new outbound channel, before creation (`outbound-request`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboundRequest {
    /// The channel about to be created.
    pub channel: ChannelSnapshot,
    /// The leg's endpoint-specific data.
    pub target: String,
    /// The UUID of the channel that asked for it, empty if none.
    pub originator: String,
}

/// The decision on an outbound channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum OutboundDecision {
    /// Create it with these variables set.
    Accept {
        /// Variables.
        variables: Vec<(String, String)>,
    },
    /// Create it with another `endpoint/data` target.
    Rewrite {
        /// The new target.
        target: String,
        /// Variables.
        variables: Vec<(String, String)>,
    },
    /// Refuse it.
    Refuse {
        /// Cause.
        cause: HangupCause,
    },
}

/// A text message (`text-message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TextMessage {
    /// Endpoint that heard it.
    pub endpoint: String,
    /// Profile.
    pub profile: String,
    /// Tenant.
    pub tenant: String,
    /// Sender.
    pub from: String,
    /// Addressee.
    pub to: String,
    /// MIME type.
    pub content_type: String,
    /// Body.
    pub body: String,
    /// Source address.
    pub network_addr: String,
}

/// What to do with a text message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum MessageDecision {
    /// Answer the sender.
    Reply {
        /// Body.
        body: String,
    },
    /// Deliver to a target.
    Forward {
        /// `user/1001@domain` style target.
        target: String,
    },
    /// Discard.
    Drop,
}

/// Why a dialplan could not answer. The channel fails with `cause`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (hangup cause {cause})")]
pub struct RouteFailure {
    /// The cause the channel hangs up with.
    pub cause: HangupCause,
    /// A human-readable reason for logs and events.
    pub reason: String,
}

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an external application driving a channel over the event socket
/// (the `socket` action, FreeSWITCH's outbound mode) asks of it.
#[derive(Debug)]
pub enum SocketOrder {
    /// Run an application (`sendmsg` with `call-command: execute`).
    Execute {
        /// The action.
        action: Action,
        /// The application's name, as the app sent it.
        app: String,
        /// Its argument string.
        arg: String,
        /// The `Event-UUID` the app tagged it with, echoed as
        /// `Application-UUID` on CHANNEL_EXECUTE(_COMPLETE).
        app_uuid: Option<String>,
    },
    /// Hang up (`call-command: hangup`).
    Hangup(HangupCause),
    /// When the socket closes, go on with the dialplan instead of hanging
    /// up (`resume`).
    Resume,
}

/// Connects channels to external applications for the `socket` action.
pub trait SocketHandler: Send + Sync {
    /// Connects to `address` for the channel (a copy of it, for the
    /// application's `connect` reply) and returns the orders the
    /// application sends; the stream ends when the application is gone.
    /// `Err` with a reason when it cannot connect.
    fn connect(
        &self,
        channel: crate::channel::Channel,
        address: String,
        async_mode: bool,
        full: bool,
    ) -> BoxFuture<'static, Result<tokio::sync::mpsc::Receiver<SocketOrder>, String>>;
}

/// Anything that can route: the WebAssembly host in production, fakes in
/// tests. Implementations must not run guest code on the caller's thread.
pub trait Dialplan: Send + Sync {
    /// Route a channel.
    fn route(&self, channel: ChannelSnapshot) -> BoxFuture<'_, Result<Vec<Action>, RouteFailure>>;
    /// The version of the tenant's dialplan in force (recorded on channels
    /// it routes, for CDRs); `None` if versions are not tracked.
    fn version(&self, _tenant: &str) -> Option<String> {
        None
    }
    /// Whether new outbound channels of `tenant` go to
    /// [`Dialplan::route_outbound`]; `false` when the tenant's dialplan has
    /// no outbound hook, so the switch does not even build the request.
    fn wants_outbound(&self, _tenant: &str) -> bool {
        true
    }
    /// Decide on an outbound channel.
    fn route_outbound(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<'_, Result<OutboundDecision, RouteFailure>>;
    /// Route a text message.
    fn route_message(
        &self,
        message: TextMessage,
    ) -> BoxFuture<'_, Result<MessageDecision, RouteFailure>>;
    /// Call a dialstring helper (`sofia_contact` ...) for a tenant. `Err`
    /// carries a message for the log and the cause the leg fails with:
    /// INVALID_URL when the helper itself refused its arguments, the host's
    /// cause (SWITCH_CONGESTION on overload, the tenant's failure cause on a
    /// trap) when it could not run.
    fn call_helper(
        &self,
        tenant: &str,
        name: &str,
        args: &str,
    ) -> BoxFuture<'_, Result<String, HelperError>>;

    /// The helper calls of one dialstring, answered in order. The default
    /// makes them one at a time; the WebAssembly host runs them all on one
    /// instance.
    fn call_helpers<'a>(
        &'a self,
        tenant: &'a str,
        calls: &'a [(String, String)],
    ) -> BoxFuture<'a, Vec<Result<String, HelperError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(calls.len());
            for (name, args) in calls {
                out.push(self.call_helper(tenant, name, args).await);
            }
            out
        })
    }
}

/// Why a dialstring helper gave no expansion.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HelperError {
    /// The cause the leg fails with.
    pub cause: HangupCause,
    /// For the log.
    pub message: String,
}

impl From<String> for HelperError {
    /// A helper's own refusal: INVALID_URL.
    fn from(message: String) -> HelperError {
        HelperError {
            cause: HangupCause::InvalidUrl,
            message,
        }
    }
}
