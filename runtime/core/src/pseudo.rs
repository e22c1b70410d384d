//! Pseudo endpoints: channels with no protocol behind them.
//!
//! - `error/CAUSE`: fails at once with that cause (an unknown name gives
//!   DESTINATION_OUT_OF_ORDER, as in FreeSWITCH). No channel is created.
//! - `null/anything`: a channel that answers at once and stays up until hung
//!   up (a silent sink until the media engine gives it audio).
//! - `loopback/EXT[/CONTEXT[/DIALPLAN]]`: a pair of channels. The `-a` leg is
//!   the outbound leg returned to the originator; the `-b` leg is a new
//!   inbound channel that enters routing with destination EXT in CONTEXT
//!   (default: the originator's context). What happens on one side happens
//!   to the other: b answering answers a, either hanging up hangs up the
//!   other. Each loopback adds one to the nesting depth.
//!
//! `user/` and `group/` are not endpoints: they expand into nested
//! dialstrings inside the originate engine (see [`crate::switch`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::endpoint::{Dialed, Endpoint, OutgoingRequest, Remote, RemoteControl, RemoteEvent};
use crate::routing::{BoxFuture, Direction};
use crate::switch::{InboundSpec, Switch};
use crate::HangupCause;

/// `error/CAUSE`.
pub struct ErrorEndpoint;

impl Endpoint for ErrorEndpoint {
    fn name(&self) -> &'static str {
        "error"
    }
    fn dial(
        &self,
        _switch: Arc<Switch>,
        request: Arc<OutgoingRequest>,
    ) -> BoxFuture<'static, Result<Dialed, HangupCause>> {
        let cause = HangupCause::parse_or_default(&request.data);
        Box::pin(async move { Err(cause) })
    }
}

/// `null/anything`.
pub struct NullEndpoint;

struct NullControl {
    tx: mpsc::Sender<RemoteEvent>,
}

impl RemoteControl for NullControl {
    fn answer(&mut self) {}
    fn pre_answer(&mut self) {}
    fn ring_ready(&mut self) {}
    fn hangup(&mut self, _cause: HangupCause) {
        // Closing is enough: the channel owner already knows the cause.
        let _ = &self.tx;
    }
}

impl Endpoint for NullEndpoint {
    fn name(&self) -> &'static str {
        "null"
    }
    fn dial(
        &self,
        _switch: Arc<Switch>,
        request: Arc<OutgoingRequest>,
    ) -> BoxFuture<'static, Result<Dialed, HangupCause>> {
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(4);
            let _ = tx.try_send(RemoteEvent::Answered);
            Ok(Dialed {
                remote: Remote {
                    events: rx,
                    control: Box::new(NullControl { tx }),
                },
                name: format!("null/{}", request.data),
                profile: String::new(),
                destination: request.data.clone(),
                variables: Vec::new(),
            })
        })
    }
}

/// `loopback/EXT[/CONTEXT]`.
pub struct LoopbackEndpoint;

/// Control of one side of a loopback pair: acts on the other side.
struct LoopbackSide {
    other: mpsc::Sender<RemoteEvent>,
    is_b: bool,
}

impl RemoteControl for LoopbackSide {
    fn answer(&mut self) {
        if self.is_b {
            let _ = self.other.try_send(RemoteEvent::Answered);
        }
    }
    fn pre_answer(&mut self) {
        if self.is_b {
            let _ = self.other.try_send(RemoteEvent::EarlyMedia);
        }
    }
    fn ring_ready(&mut self) {
        if self.is_b {
            let _ = self.other.try_send(RemoteEvent::Progress);
        }
    }
    fn hangup(&mut self, cause: HangupCause) {
        let _ = self.other.try_send(RemoteEvent::Hangup(cause));
    }
}

impl Endpoint for LoopbackEndpoint {
    fn name(&self) -> &'static str {
        "loopback"
    }
    fn dial(
        &self,
        switch: Arc<Switch>,
        request: Arc<OutgoingRequest>,
    ) -> BoxFuture<'static, Result<Dialed, HangupCause>> {
        Box::pin(async move {
            let mut parts = request.data.splitn(3, '/');
            let ext = parts.next().unwrap_or_default().to_string();
            let context = parts
                .next()
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| request.context.clone());
            if ext.is_empty() {
                return Err(HangupCause::InvalidUrl);
            }
            if request.depth + 1 > switch.settings().max_recursion {
                return Err(HangupCause::ExchangeRoutingError);
            }
            let (to_a, a_events) = mpsc::channel(16);
            let (to_b, b_events) = mpsc::channel(16);
            let a_remote = Remote {
                events: a_events,
                control: Box::new(LoopbackSide {
                    other: to_b,
                    is_b: false,
                }),
            };
            let b_remote = Remote {
                events: b_events,
                control: Box::new(LoopbackSide {
                    other: to_a,
                    is_b: true,
                }),
            };
            let mut vars = request.vars.clone();
            vars.push(("loopback_leg".into(), "B".into()));
            vars.push(("other_loopback_leg_uuid".into(), request.uuid.clone()));
            let spec = InboundSpec {
                endpoint: "loopback".into(),
                profile: String::new(),
                name: format!("loopback/{ext}-b"),
                tenant: request.tenant.clone(),
                context,
                destination: ext.clone(),
                caller_id_name: request.caller_id_name.clone(),
                caller_id_number: request.caller_id_number.clone(),
                network_addr: String::new(),
                variables: vars,
                depth: request.depth + 1,
                direction: Direction::Inbound,
            };
            switch.inbound(spec, b_remote).map_err(|o| o.cause())?;
            Ok(Dialed {
                remote: a_remote,
                name: format!("loopback/{ext}-a"),
                profile: String::new(),
                destination: ext,
                variables: Vec::new(),
            })
        })
    }
}
