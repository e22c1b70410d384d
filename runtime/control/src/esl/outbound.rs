//! Outbound socket mode: the `socket` action connects a channel to an
//! external application (`host:port`), which then drives it with the same
//! protocol, as FreeSWITCH's `socket` application does.
//!
//! The application sends `connect` first and gets the channel's data (a
//! `command/reply` whose headers are the channel's: `Event-Name:
//! CHANNEL_DATA`, `Unique-ID`, `Caller-*`, `variable_*`, plus
//! `Socket-Mode` and `Control`). Then, besides every inbound command
//! (`api`, `event`, `filter`, ...): `myevents` (this channel's events),
//! `sendmsg` with `call-command: execute` (`execute-app-name`,
//! `execute-app-arg` or a body, `Event-UUID` echoed as `Application-UUID`
//! on CHANNEL_EXECUTE_COMPLETE) or `call-command: hangup`
//! (`hangup-cause`), `getvar NAME`, `resume`, `linger [SECONDS]`,
//! `nolinger`, `exit`. Applications run one at a time, in order; `sendmsg`
//! is answered `+OK` when the application is queued.
//!
//! When the channel leaves the socket (it hangs up or is transferred) the
//! connection gets `text/disconnect-notice` and is closed, after the linger
//! time if `linger` was asked. When the application closes the connection
//! the channel hangs up, or goes on with its dialplan after `resume`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use dialtone_core::channel::Channel;
use dialtone_core::routing::{Action, BoxFuture, SocketHandler, SocketOrder};
use dialtone_core::switch::Switch;
use dialtone_core::HangupCause;

use super::frame::{url_encode_into, Command};
use super::server::{Connection, EslSettings};

/// How long the switch waits to reach an application.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Orders queued per channel before `sendmsg` is refused.
pub const ORDER_QUEUE: usize = 64;

/// The `socket` action's connector.
pub struct OutboundSockets {
    settings: Arc<EslSettings>,
    switch: Weak<Switch>,
}

impl OutboundSockets {
    /// A connector whose connections use `settings` (password unused).
    pub fn new(settings: EslSettings, switch: &Arc<Switch>) -> OutboundSockets {
        OutboundSockets {
            settings: Arc::new(settings),
            switch: Arc::downgrade(switch),
        }
    }
}

/// The channel an outbound connection controls.
pub(crate) struct Session {
    pub(crate) uuid: String,
    pub(crate) orders: mpsc::Sender<SocketOrder>,
    pub(crate) data: Vec<u8>,
    pub(crate) linger: Option<Duration>,
    switch: Weak<Switch>,
}

impl Session {
    pub(crate) async fn getvar(&self, name: &str) -> Option<String> {
        let sw = self.switch.upgrade()?;
        let chan = sw.channel(&self.uuid)?.dump().await?;
        chan.var(name).map(str::to_string)
    }

    /// `sendmsg`: queues the order; the reply text.
    pub(crate) fn sendmsg(&self, cmd: &Command) -> String {
        let order = match cmd
            .header("call-command")
            .unwrap_or("")
            .to_ascii_lowercase()
            .as_str()
        {
            "execute" => {
                let app = cmd.header("execute-app-name").unwrap_or("").to_string();
                let arg = cmd
                    .header("execute-app-arg")
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .or_else(|| cmd.body.clone())
                    .unwrap_or_default();
                let action = match Action::from_app(&app, &arg) {
                    Ok(a) => a,
                    Err(e) => return format!("-ERR {e}"),
                };
                SocketOrder::Execute {
                    action,
                    app,
                    arg,
                    app_uuid: cmd.header("Event-UUID").map(str::to_string),
                }
            }
            "hangup" => SocketOrder::Hangup(
                cmd.header("hangup-cause")
                    .and_then(HangupCause::parse)
                    .unwrap_or(HangupCause::NormalClearing),
            ),
            other => return format!("-ERR unsupported call-command `{other}`"),
        };
        match self.orders.try_send(order) {
            Ok(()) => "+OK".into(),
            Err(mpsc::error::TrySendError::Full(_)) => "-ERR too many queued applications".into(),
            Err(mpsc::error::TrySendError::Closed(_)) => "-ERR the channel is gone".into(),
        }
    }
}

/// The `connect` reply: the channel's data as a `command/reply`.
fn channel_data(chan: &Channel, core_uuid: &str, async_mode: bool, full: bool) -> Vec<u8> {
    let ev = chan.event(dialtone_core::events::EventName::ChannelCreate);
    let mut s = String::with_capacity(1024);
    let mut push = |k: &str, v: &str| {
        s.push_str(k);
        s.push_str(": ");
        url_encode_into(v, &mut s);
        s.push('\n');
    };
    push("Event-Name", "CHANNEL_DATA");
    push("Core-UUID", core_uuid);
    for (k, v) in &ev.headers {
        push(k, v);
    }
    for (k, v) in chan.variables.iter() {
        push(&format!("variable_{k}"), v);
    }
    push("Content-Type", "command/reply");
    push("Reply-Text", "+OK");
    push("Socket-Mode", if async_mode { "async" } else { "static" });
    push("Control", if full { "full" } else { "single-channel" });
    s.push('\n');
    s.into_bytes()
}

impl SocketHandler for OutboundSockets {
    fn connect(
        &self,
        channel: Channel,
        address: String,
        async_mode: bool,
        full: bool,
    ) -> BoxFuture<'static, Result<mpsc::Receiver<SocketOrder>, String>> {
        let settings = self.settings.clone();
        let switch = self.switch.clone();
        Box::pin(async move {
            let sock =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address))
                    .await
                    .map_err(|_| format!("no answer from {address} within {CONNECT_TIMEOUT:?}"))?
                    .map_err(|e| format!("{address}: {e}"))?;
            let _ = sock.set_nodelay(true);
            let (tx, rx) = mpsc::channel(ORDER_QUEUE);
            let session = Session {
                uuid: channel.uuid.clone(),
                orders: tx,
                data: channel_data(&channel, &settings.core_uuid, async_mode, full),
                linger: None,
                switch,
            };
            let uuid = channel.uuid.clone();
            tokio::spawn(async move {
                if let Err(e) = Connection::outbound(settings, session).run(sock).await {
                    tracing::debug!(%uuid, error = %e, "outbound socket ended");
                }
            });
            Ok(rx)
        })
    }
}
