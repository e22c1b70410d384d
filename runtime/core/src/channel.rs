//! Channels (call legs): their state machine, caller profile and variables.
//!
//! A channel is owned by exactly one tokio task (see [`crate::switch`]); no
//! one else mutates it. Others reach it through its [`ChannelHandle`]
//! (commands) and learn about it through the event bus. The states follow
//! FreeSWITCH's (`CS_NEW` ... `CS_DESTROY`); each transition publishes a
//! `CHANNEL_STATE` event, and the milestones publish their own events
//! (`CHANNEL_CREATE`, `CHANNEL_PROGRESS`, `CHANNEL_ANSWER`, `CHANNEL_HANGUP`,
//! `CHANNEL_HANGUP_COMPLETE`, `CHANNEL_DESTROY`).
//!
//! Variables: `${name}` in a dialstring or application argument expands once
//! from these variables; an expanded value is never parsed as dialstring
//! syntax (see [`crate::dialstring::expand`]).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::events::{Event, EventName};
use crate::routing::{ChannelSnapshot, Direction};
use crate::HangupCause;

/// FreeSWITCH's channel states (the ones this switch goes through).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum ChannelState {
    /// Just created.
    New,
    /// Initialising.
    Init,
    /// Asking the dialplan.
    Routing,
    /// Running the dialplan's actions.
    Execute,
    /// Bridged to another channel.
    ExchangeMedia,
    /// Parked (waiting with no application).
    Park,
    /// An outbound leg waiting to be answered (`CS_CONSUME_MEDIA`).
    ConsumeMedia,
    /// Hanging up.
    Hangup,
    /// Writing reports (CDR).
    Reporting,
    /// Gone.
    Destroy,
}

impl ChannelState {
    /// FreeSWITCH's name, e.g. `CS_EXECUTE`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelState::New => "CS_NEW",
            ChannelState::Init => "CS_INIT",
            ChannelState::Routing => "CS_ROUTING",
            ChannelState::Execute => "CS_EXECUTE",
            ChannelState::ExchangeMedia => "CS_EXCHANGE_MEDIA",
            ChannelState::Park => "CS_PARK",
            ChannelState::ConsumeMedia => "CS_CONSUME_MEDIA",
            ChannelState::Hangup => "CS_HANGUP",
            ChannelState::Reporting => "CS_REPORTING",
            ChannelState::Destroy => "CS_DESTROY",
        }
    }

    /// Whether moving from `self` to `next` is allowed. States only move
    /// forward, except that Execute, ExchangeMedia, Park and Routing may
    /// alternate (a transfer re-enters Routing, a bridge ends back in
    /// Execute). Hangup is reachable from anywhere before it.
    pub fn can_move_to(self, next: ChannelState) -> bool {
        use ChannelState::*;
        match (self, next) {
            (a, b) if a == b => false,
            (Destroy, _) => false,
            (_, Hangup) => self < Hangup,
            (Hangup, Reporting) | (Reporting, Destroy) => true,
            (Hangup, _) | (Reporting, _) => false,
            (New, Init) => true,
            (Init, Routing) | (Init, ConsumeMedia) => true,
            (
                Routing | Execute | ExchangeMedia | Park,
                Routing | Execute | ExchangeMedia | Park,
            ) => true,
            (ConsumeMedia, ExchangeMedia | Execute | Routing) => true,
            _ => false,
        }
    }
}

/// Where a channel is in the call (`Channel-Call-State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CallState {
    /// Not yet ringing.
    Down,
    /// Ringing.
    Ringing,
    /// Early media.
    Early,
    /// Answered.
    Active,
    /// Hung up.
    Hangup,
}

impl CallState {
    /// FreeSWITCH's name.
    pub fn name(self) -> &'static str {
        match self {
            CallState::Down => "DOWN",
            CallState::Ringing => "RINGING",
            CallState::Early => "EARLY",
            CallState::Active => "ACTIVE",
            CallState::Hangup => "HANGUP",
        }
    }
}

/// One call leg.
#[derive(Clone, Debug)]
pub struct Channel {
    /// UUID.
    pub uuid: String,
    /// FreeSWITCH-style name, e.g. `loopback/9196-b`.
    pub name: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The endpoint.
    pub endpoint: String,
    /// Endpoint profile.
    pub profile: String,
    /// Tenant (domain).
    pub tenant: String,
    /// Dialplan context.
    pub context: String,
    /// Caller ID name.
    pub caller_id_name: String,
    /// Caller ID number.
    pub caller_id_number: String,
    /// Destination number.
    pub destination: String,
    /// Source address.
    pub network_addr: String,
    /// Variables, in insertion order. Shared with the snapshots the
    /// dialplan reads (copied only when set while a snapshot is out).
    pub variables: Arc<Vec<(String, String)>>,
    /// Names of exported variables (copied to legs this channel creates).
    pub exported: Vec<String>,
    /// State.
    pub state: ChannelState,
    /// Call state.
    pub call_state: CallState,
    /// Why it ended.
    pub hangup_cause: Option<HangupCause>,
    /// Nesting depth of `user/`, `group/` and `loopback/` that created it.
    pub depth: u32,
    /// When it was created.
    pub created: SystemTime,
    /// When it was answered.
    pub answered: Option<SystemTime>,
    /// Transfers so far.
    pub transfers: u32,
}

impl Channel {
    /// A new channel in state New.
    pub fn new(direction: Direction, endpoint: &str, tenant: &str) -> Channel {
        let uuid = uuid::Uuid::new_v4().to_string();
        Channel {
            name: format!("{endpoint}/{uuid}"),
            uuid,
            direction,
            endpoint: endpoint.to_string(),
            profile: String::new(),
            tenant: tenant.to_string(),
            context: "default".into(),
            caller_id_name: String::new(),
            caller_id_number: String::new(),
            destination: String::new(),
            network_addr: String::new(),
            variables: Arc::default(),
            exported: Vec::new(),
            state: ChannelState::New,
            call_state: CallState::Down,
            hangup_cause: None,
            depth: 0,
            created: SystemTime::now(),
            answered: None,
            transfers: 0,
        }
    }

    /// A variable's value. Built-ins (`uuid`, `destination_number`,
    /// `caller_id_number`, `caller_id_name`, `context`, `domain`,
    /// `domain_name`, `tenant`, `network_addr`, `channel_name`) are answered
    /// from the caller profile when no variable of that name is set.
    pub fn var(&self, name: &str) -> Option<&str> {
        if let Some((_, v)) = self.variables.iter().rev().find(|(k, _)| k == name) {
            return Some(v);
        }
        Some(match name {
            "uuid" | "Unique-ID" => &self.uuid,
            "destination_number" => &self.destination,
            "caller_id_number" => &self.caller_id_number,
            "caller_id_name" => &self.caller_id_name,
            "context" => &self.context,
            "domain" | "domain_name" | "tenant" => &self.tenant,
            "network_addr" => &self.network_addr,
            "channel_name" => &self.name,
            _ => return None,
        })
    }

    /// Whether a variable is true in FreeSWITCH's sense (`true`, `yes`,
    /// `on`, `1`, `enabled`, `active`, `allow`).
    pub fn var_true(&self, name: &str) -> bool {
        self.var(name).is_some_and(is_true)
    }

    /// Sets a variable (replacing an earlier value).
    pub fn set_var(&mut self, name: &str, value: &str) {
        let vars = Arc::make_mut(&mut self.variables);
        if let Some(slot) = vars.iter_mut().find(|(k, _)| k == name) {
            slot.1.clear();
            slot.1.push_str(value);
        } else {
            vars.push((name.to_string(), value.to_string()));
        }
    }

    /// Sets several variables at once (each replacing an earlier value),
    /// taking the strings as they are: one copy-on-write of the shared list
    /// for all of them, and no copy of the names or values.
    pub fn set_vars(&mut self, new: impl IntoIterator<Item = (String, String)>) {
        let vars = Arc::make_mut(&mut self.variables);
        for (name, value) in new {
            match vars.iter_mut().find(|(k, _)| *k == name) {
                Some(slot) => slot.1 = value,
                None => vars.push((name, value)),
            }
        }
    }

    /// Removes a variable.
    pub fn unset_var(&mut self, name: &str) {
        if self.variables.iter().any(|(k, _)| k == name) {
            Arc::make_mut(&mut self.variables).retain(|(k, _)| k != name);
        }
        self.exported.retain(|k| k != name);
    }

    /// Sets and exports a variable.
    pub fn export_var(&mut self, name: &str, value: &str) {
        self.set_var(name, value);
        if !self.exported.iter().any(|k| k == name) {
            self.exported.push(name.to_string());
        }
    }

    /// The exported variables with their values.
    pub fn exported_vars(&self) -> Vec<(String, String)> {
        self.exported
            .iter()
            .filter_map(|k| self.var(k).map(|v| (k.clone(), v.to_string())))
            .collect()
    }

    /// The snapshot a dialplan sees.
    pub fn snapshot(&self) -> ChannelSnapshot {
        ChannelSnapshot {
            uuid: self.uuid.clone(),
            direction: self.direction,
            endpoint: self.endpoint.clone(),
            profile: self.profile.clone(),
            tenant: self.tenant.clone(),
            context: self.context.clone(),
            caller_id_name: self.caller_id_name.clone(),
            caller_id_number: self.caller_id_number.clone(),
            destination: self.destination.clone(),
            network_addr: self.network_addr.clone(),
            variables: self.variables.clone(),
        }
    }

    /// An event about this channel with FreeSWITCH's channel headers.
    pub fn event(&self, name: EventName) -> Event {
        let mut ev = Event::new(name);
        // The thirteen below and the few a caller adds, in one allocation.
        ev.headers.reserve_exact(16);
        ev.header("Unique-ID", self.uuid.clone())
            .header("Channel-Name", self.name.clone())
            .header("Channel-State", self.state.name())
            .header("Channel-Call-State", self.call_state.name())
            .header(
                "Call-Direction",
                match self.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                },
            )
            .header(
                "Answer-State",
                match self.call_state {
                    CallState::Active => "answered",
                    CallState::Early => "early",
                    CallState::Ringing => "ringing",
                    CallState::Hangup => "hangup",
                    CallState::Down => "new",
                },
            )
            .header("Caller-Caller-ID-Name", self.caller_id_name.clone())
            .header("Caller-Caller-ID-Number", self.caller_id_number.clone())
            .header("Caller-Destination-Number", self.destination.clone())
            .header("Caller-Context", self.context.clone())
            .header("Caller-Network-Addr", self.network_addr.clone())
            .header("Caller-Source", self.endpoint.clone())
            .header("Tenant", self.tenant.clone())
    }
}

/// FreeSWITCH's `switch_true`.
pub fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1" | "enabled" | "active" | "allow" | "t" | "y"
    )
}

/// Commands another task may send to a channel's owner.
#[derive(Debug)]
pub enum ChannelCommand {
    /// Hang up with this cause (`uuid_kill`, the far end of a loopback pair,
    /// a bridge partner leaving).
    Hangup(HangupCause),
    /// Send a copy of the channel (`uuid_dump`, `uuid_getvar`, `show
    /// channels`).
    Dump(tokio::sync::oneshot::Sender<Channel>),
    /// Set a variable (`uuid_setvar`; an empty value unsets it).
    SetVar(String, String),
    /// Leave what the channel does (a bridge partner is hung up) and route
    /// again to `extension` in `context` (`uuid_transfer`, and the
    /// `originate` API once the new channel answers).
    Transfer {
        /// The new destination number.
        extension: String,
        /// The context; `None` keeps the channel's.
        context: Option<String>,
    },
    /// Leave what the channel does and run these actions instead
    /// (`originate ... &app(args)`).
    Execute(Vec<crate::routing::Action>),
    /// Leave what the channel does and stay bridged to `other` until
    /// either ends (`uuid_bridge`); the initiator joins the media.
    Join {
        /// The other channel's UUID.
        other: String,
        /// Its handle (hung up when this channel ends).
        partner: ChannelHandle,
        /// Whether this side joins the media and publishes the bridge.
        initiator: bool,
    },
}

/// How others reach a channel.
#[derive(Clone, Debug)]
pub struct ChannelHandle {
    /// The channel's UUID.
    pub uuid: String,
    /// Its command queue.
    pub tx: mpsc::Sender<ChannelCommand>,
}

impl ChannelHandle {
    /// Asks the channel to hang up; false if it is already gone.
    pub fn hangup(&self, cause: HangupCause) -> bool {
        self.tx.try_send(ChannelCommand::Hangup(cause)).is_ok()
    }

    /// Sends a command; false if the channel is gone or its queue is full.
    pub fn send(&self, cmd: ChannelCommand) -> bool {
        self.tx.try_send(cmd).is_ok()
    }

    /// A copy of the channel as its owner sees it now; `None` if it is gone
    /// or does not answer within a second.
    pub async fn dump(&self) -> Option<Channel> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send_timeout(ChannelCommand::Dump(tx), std::time::Duration::from_secs(1))
            .await
            .ok()?;
        tokio::time::timeout(std::time::Duration::from_secs(1), rx)
            .await
            .ok()?
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelState::*;

    #[test]
    fn state_machine_moves_forward() {
        assert!(New.can_move_to(Init));
        assert!(Init.can_move_to(Routing));
        assert!(Routing.can_move_to(Execute));
        assert!(Execute.can_move_to(ExchangeMedia));
        assert!(ExchangeMedia.can_move_to(Execute));
        assert!(Execute.can_move_to(Routing));
        assert!(Execute.can_move_to(Hangup));
        assert!(Hangup.can_move_to(Reporting));
        assert!(Reporting.can_move_to(Destroy));
        assert!(!Destroy.can_move_to(New));
        assert!(!Hangup.can_move_to(Execute));
        assert!(!New.can_move_to(Execute));
        assert!(!Reporting.can_move_to(Hangup));
    }

    #[test]
    fn variables_and_builtins() {
        let mut c = Channel::new(Direction::Inbound, "loopback", "a.test");
        c.destination = "1000".into();
        assert_eq!(c.var("destination_number"), Some("1000"));
        c.set_var("destination_number", "override");
        assert_eq!(c.var("destination_number"), Some("override"));
        c.export_var("x", "1");
        c.set_var("y", "2");
        assert_eq!(c.exported_vars(), vec![("x".to_string(), "1".to_string())]);
        c.unset_var("x");
        assert!(c.var("x").is_none());
        c.set_var("hangup_after_bridge", "TRUE");
        c.set_vars([
            ("y".to_string(), "3".to_string()),
            ("z".to_string(), "4".to_string()),
        ]);
        assert_eq!((c.var("y"), c.var("z")), (Some("3"), Some("4")));
        assert_eq!(c.variables.iter().filter(|(k, _)| k == "y").count(), 1);
        assert!(c.var_true("hangup_after_bridge"));
        assert_eq!(c.var("domain"), Some("a.test"));
    }
}
