//! The switch core: where a call enters, where the dialplan is asked, where
//! the dialplan's actions run, and where B-legs are created.
//!
//! # Threading and ownership
//!
//! - **A task per channel.** Every channel is owned by one tokio task that
//!   holds its [`Channel`] state, its [`Remote`] (the far side) and its
//!   command queue. Nothing else mutates a channel; others send it
//!   [`ChannelCommand`]s through its [`ChannelHandle`] (found by UUID in the
//!   channel table) and watch it through the event bus.
//! - **Guest code never runs here.** [`Dialplan`] implementations run guests
//!   on their own thread pool; a channel task only awaits the answer, so a
//!   slow guest delays its own call and nothing else.
//! - **Admission first.** A channel takes a [`ChannelPermit`] (global and
//!   tenant caps on channels and calls per second) before it exists; the
//!   permit is released when the channel is destroyed. Overload is answered
//!   with SWITCH_CONGESTION (SIP 503 with Retry-After).
//!
//! # The flow of a call
//!
//! endpoint -> [`Switch::inbound`] -> channel task: New, Init, Routing ->
//! [`Dialplan::route`] -> Execute (actions in order) -> `bridge`:
//! expand the dialstring (variables escaped, helpers spliced) -> parse ->
//! the sans-IO [`Originate`] engine, driven here: each leg is resolved
//! (`user/` and `group/` expand into nested dialstrings from the directory;
//! the context rule is checked; the tenant's outbound hook is asked; the
//! endpoint registry dials) -> the winner is bridged (ExchangeMedia) -> on
//! hangup: Hangup, Reporting, Destroy, each with its events.
//!
//! # Contexts
//!
//! The host, not the guest, decides what a context may reach (see
//! [`crate::context`]): from `public`, only the tenant's own users and
//! registered contacts, `error/`, `null/` and loopback into `public` itself;
//! a transfer out of `public` is refused. Refusals are CALL_REJECTED.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::channel::{CallState, Channel, ChannelCommand, ChannelHandle, ChannelState};
use crate::context;
use crate::dialstring::{self, Dialstring, Vars};
use crate::directory::{split_user_domain, Directory};

/// The directory snapshot shared by the core and the dialplan host imports;
/// a reload stores a new snapshot, running calls keep the one they read.
pub type SharedDirectory = Arc<ArcSwap<Directory>>;
use crate::endpoint::{ChannelMedia, EndpointRegistry, OutgoingRequest, Remote, RemoteEvent};
use crate::events::{header, EventBus, EventName};
use crate::limits::{Admission, ChannelPermit, Overload};
use crate::media_apps::{confine, Collector};
use crate::originate::{self, LegId, Originate, OriginateOptions, Resolution};
use crate::registrations::Registrations;
use crate::routing::{Action, Dialplan, Direction, OutboundDecision, OutboundRequest};
use crate::routing::{CollectSpec, RecordLegs, SocketOrder};
use crate::HangupCause;
use dialtone_media::Prompt;

/// Switch-wide settings of the core.
#[derive(Clone, Debug)]
pub struct SwitchSettings {
    /// Nesting limit of `user/`, `group/`, `loopback/`.
    pub max_recursion: u32,
    /// Transfers per channel before EXCHANGE_ROUTING_ERROR.
    pub max_transfers: u32,
    /// Originate timeout when neither `originate_timeout` nor `call_timeout`
    /// is set.
    pub default_call_timeout: Duration,
    /// Sound files: a tenant plays from `<sounds_dir>/<tenant>/` only;
    /// `None` allows no files (tones and silence still play).
    pub sounds_dir: Option<std::path::PathBuf>,
    /// Recordings: `<recordings_dir>/<tenant>/`; `None` refuses `record`.
    pub recordings_dir: Option<std::path::PathBuf>,
}

impl Default for SwitchSettings {
    fn default() -> Self {
        SwitchSettings {
            max_recursion: 8,
            max_transfers: 16,
            default_call_timeout: Duration::from_secs(60),
            sounds_dir: None,
            recordings_dir: None,
        }
    }
}

/// What the `originate` API runs on the new channel once it answers.
#[derive(Clone, Debug)]
pub enum OriginateThen {
    /// Route it to this extension (FreeSWITCH's `originate DS EXT [dialplan]
    /// [context]`).
    Extension {
        /// The destination number.
        extension: String,
        /// The context; `None` uses the request's.
        context: Option<String>,
    },
    /// Run these actions (`&app(args)`).
    Actions(Vec<Action>),
}

/// An `originate` API request.
#[derive(Clone, Debug)]
pub struct ApiOriginate {
    /// The tenant the new channel belongs to.
    pub tenant: String,
    /// The context its legs are placed from and routed in.
    pub context: String,
    /// The dialstring.
    pub dialstring: String,
    /// What runs after answer.
    pub then: OriginateThen,
    /// Caller ID name shown to the called party.
    pub caller_id_name: String,
    /// Caller ID number shown to the called party.
    pub caller_id_number: String,
    /// Originate timeout (default: the switch's call timeout).
    pub timeout: Option<Duration>,
}

/// What an endpoint knows about a new inbound channel.
#[derive(Clone, Debug)]
pub struct InboundSpec {
    /// Endpoint name.
    pub endpoint: String,
    /// Endpoint profile.
    pub profile: String,
    /// Channel name.
    pub name: String,
    /// Tenant (the endpoint decided it).
    pub tenant: String,
    /// Context.
    pub context: String,
    /// Destination number.
    pub destination: String,
    /// Caller ID name.
    pub caller_id_name: String,
    /// Caller ID number.
    pub caller_id_number: String,
    /// Source address.
    pub network_addr: String,
    /// Initial variables.
    pub variables: Vars,
    /// Nesting depth (loopback b-legs are one deeper than their a-leg).
    pub depth: u32,
    /// Always inbound for endpoints; kept for loopback symmetry.
    pub direction: Direction,
}

/// The switch core.
pub struct Switch {
    me: Weak<Switch>,
    settings: SwitchSettings,
    dialplan: Arc<dyn Dialplan>,
    endpoints: EndpointRegistry,
    events: EventBus,
    admission: Arc<Admission>,
    directory: SharedDirectory,
    registrations: Arc<Registrations>,
    channels: Mutex<HashMap<String, ChannelHandle>>,
    /// Channels created since start, and the most alive at once.
    created: AtomicU64,
    peak: AtomicU64,
    route_observer: std::sync::OnceLock<RouteObserver>,
    socket_handler: std::sync::OnceLock<Arc<dyn crate::routing::SocketHandler>>,
}

/// Called with the tenant and the time each routing took (for metrics).
pub type RouteObserver = Box<dyn Fn(&str, Duration) + Send + Sync>;

/// What to do after an action.
enum Flow {
    Next,
    Hangup(HangupCause, bool),
    Reroute,
}

impl Switch {
    /// Builds the core.
    pub fn new(
        settings: SwitchSettings,
        dialplan: Arc<dyn Dialplan>,
        endpoints: EndpointRegistry,
        events: EventBus,
        admission: Arc<Admission>,
        directory: SharedDirectory,
        registrations: Arc<Registrations>,
    ) -> Arc<Switch> {
        Arc::new_cyclic(|me| Switch {
            me: me.clone(),
            settings,
            dialplan,
            endpoints,
            events,
            admission,
            directory,
            registrations,
            channels: Mutex::new(HashMap::new()),
            created: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            route_observer: std::sync::OnceLock::new(),
            socket_handler: std::sync::OnceLock::new(),
        })
    }

    /// Sets what the `socket` action connects through (once; without it
    /// the action fails with SERVICE_NOT_IMPLEMENTED).
    pub fn set_socket_handler(&self, h: Arc<dyn crate::routing::SocketHandler>) {
        let _ = self.socket_handler.set(h);
    }

    /// Sets the function told how long each routing took (once).
    pub fn set_route_observer(&self, f: RouteObserver) {
        let _ = self.route_observer.set(f);
    }

    fn arc(&self) -> Arc<Switch> {
        // The switch is only ever reached through an Arc (see `new`).
        self.me.upgrade().expect("switch used after drop")
    }

    /// Settings.
    pub fn settings(&self) -> &SwitchSettings {
        &self.settings
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The dialplan.
    pub fn dialplan(&self) -> &Arc<dyn Dialplan> {
        &self.dialplan
    }

    /// The registrations store.
    pub fn registrations(&self) -> &Arc<Registrations> {
        &self.registrations
    }

    /// The admission controller.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The current directory snapshot.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.load_full()
    }

    /// Replaces the directory with a new snapshot (config reload). Running
    /// calls keep the snapshot they already read.
    pub fn set_directory(&self, directory: Directory) {
        self.directory.store(Arc::new(directory));
    }

    /// Number of live channels.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }

    /// Makes a new channel reachable by its UUID and counts it.
    fn register(&self, handle: ChannelHandle) {
        let alive = {
            let mut channels = self.channels.lock();
            channels.insert(handle.uuid.clone(), handle);
            channels.len() as u64
        };
        self.created.fetch_add(1, Ordering::Relaxed);
        self.peak.fetch_max(alive, Ordering::Relaxed);
    }

    /// Channels created since start (`status`, HEARTBEAT, metrics).
    pub fn channels_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// The most channels alive at once since start.
    pub fn channels_peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// UUIDs of live channels.
    pub fn channel_uuids(&self) -> Vec<String> {
        self.channels.lock().keys().cloned().collect()
    }

    /// Asks a channel to hang up (`uuid_kill`); false if there is none.
    pub fn hangup(&self, uuid: &str, cause: HangupCause) -> bool {
        let h = self.channels.lock().get(uuid).cloned();
        h.is_some_and(|h| h.hangup(cause))
    }

    /// A live channel's handle.
    pub fn channel(&self, uuid: &str) -> Option<ChannelHandle> {
        self.channels.lock().get(uuid).cloned()
    }

    /// Copies of every live channel, as their owners see them (channels
    /// that end meanwhile are left out).
    pub async fn dump_all(&self) -> Vec<Channel> {
        let handles: Vec<ChannelHandle> = self.channels.lock().values().cloned().collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            if let Some(c) = h.dump().await {
                out.push(c);
            }
        }
        out.sort_by_key(|c| c.created);
        out
    }

    /// `uuid_bridge A B`: both channels leave what they do and are bridged
    /// to each other until either ends. Fails if either is gone, or they
    /// are the same.
    pub fn uuid_bridge(&self, a: &str, b: &str) -> Result<(), String> {
        if a == b {
            return Err("a channel cannot be bridged to itself".into());
        }
        let ha = self
            .channel(a)
            .ok_or_else(|| format!("no such channel {a}"))?;
        let hb = self
            .channel(b)
            .ok_or_else(|| format!("no such channel {b}"))?;
        // B first: it waits in the bridge; then A joins the media.
        if !hb.send(ChannelCommand::Join {
            other: a.to_string(),
            partner: ha.clone(),
            initiator: false,
        }) {
            return Err(format!("channel {b} is busy"));
        }
        if !ha.send(ChannelCommand::Join {
            other: b.to_string(),
            partner: hb.clone(),
            initiator: true,
        }) {
            hb.hangup(HangupCause::NormalClearing);
            return Err(format!("channel {a} is busy"));
        }
        Ok(())
    }

    /// The `originate` API: dials `dialstring` without a caller; when a leg
    /// answers, it is routed to the extension (or runs the actions) of
    /// `then`, and its UUID is returned. Fails with the originate's cause.
    pub async fn originate(self: &Arc<Self>, req: ApiOriginate) -> Result<String, HangupCause> {
        let globals = |_: &str| None;
        let expanded = self
            .expand_dialstring(&req.tenant, &req.dialstring, &globals)
            .await?;
        let ds = dialstring::parse(&expanded).map_err(|e| {
            tracing::warn!(dialstring = %expanded, error = %e, "originate: dialstring does not parse");
            e.cause()
        })?;
        let a = LegContext {
            uuid: None,
            tenant: req.tenant.clone(),
            context: req.context.clone(),
            caller_id_name: req.caller_id_name.clone(),
            caller_id_number: req.caller_id_number.clone(),
            exported: Vars::default(),
        };
        let opts = OriginateOptions {
            default_timeout: req.timeout.unwrap_or(self.settings.default_call_timeout),
            max_depth: self.settings.max_recursion,
            depth: 0,
            ..OriginateOptions::default()
        };
        match drive_originate(self.clone(), None, &ds, opts, a).await {
            Originated::Bridged { handle, .. } => {
                let cmd = match req.then {
                    OriginateThen::Extension { extension, context } => ChannelCommand::Transfer {
                        extension,
                        context: Some(context.unwrap_or(req.context)),
                    },
                    OriginateThen::Actions(actions) => ChannelCommand::Execute(actions),
                };
                if handle.tx.send(cmd).await.is_err() {
                    return Err(HangupCause::NormalClearing);
                }
                Ok(handle.uuid)
            }
            Originated::Failed(c) | Originated::CallerGone(c) => Err(c),
        }
    }

    /// A new inbound channel heard by an endpoint. Admission is checked here;
    /// on overload nothing is created and the endpoint answers with the
    /// overload's cause (503 + Retry-After on SIP).
    pub fn inbound(&self, spec: InboundSpec, remote: Remote) -> Result<String, Overload> {
        let permit = self.admission.admit_channel(&spec.tenant, Instant::now())?;
        let mut chan = Channel::new(spec.direction, &spec.endpoint, &spec.tenant);
        chan.name = spec.name;
        chan.profile = spec.profile;
        chan.context = spec.context;
        chan.destination = spec.destination;
        chan.caller_id_name = spec.caller_id_name;
        chan.caller_id_number = spec.caller_id_number;
        chan.network_addr = spec.network_addr;
        chan.variables = Arc::new(spec.variables);
        chan.depth = spec.depth;
        let uuid = chan.uuid.clone();
        let (tx, rx) = mpsc::channel(8);
        self.register(ChannelHandle {
            uuid: uuid.clone(),
            tx,
        });
        let runner = Runner {
            switch: self.arc(),
            chan,
            remote,
            cmds: rx,
            permit: Some(permit),
            remote_gone: false,
            digits: VecDeque::new(),
            collecting: false,
            redirect: None,
        };
        tokio::spawn(runner.run_inbound());
        Ok(uuid)
    }

    fn publish(&self, chan: &Channel, name: EventName) {
        self.events.publish_named(name, || chan.event(name));
    }

    fn set_state(&self, chan: &mut Channel, state: ChannelState) {
        if chan.state.can_move_to(state) {
            chan.state = state;
            self.publish(chan, EventName::ChannelState);
        }
    }

    /// Creates an outbound channel for a resolved leg.
    async fn dial(
        self: Arc<Self>,
        request: OutgoingRequest,
        leg: LegId,
        link: mpsc::UnboundedSender<(LegId, RemoteEvent)>,
    ) -> Result<ChannelHandle, HangupCause> {
        let endpoint = self
            .endpoints
            .get(&request.endpoint)
            .cloned()
            .ok_or(HangupCause::ChanNotImplemented)?;
        let permit = self
            .admission
            .admit_channel(&request.tenant, Instant::now())
            .map_err(|o| o.cause())?;
        let request = Arc::new(request);
        let dialed = endpoint.dial(self.clone(), Arc::clone(&request)).await?;
        // The endpoint has normally dropped its reference by now.
        let request = Arc::try_unwrap(request).unwrap_or_else(|r| OutgoingRequest::clone(&r));
        let mut chan = Channel::new(Direction::Outbound, &request.endpoint, &request.tenant);
        chan.uuid = request.uuid;
        chan.name = dialed.name;
        chan.profile = dialed.profile;
        chan.context = request.context;
        chan.destination = dialed.destination;
        chan.caller_id_name = request.caller_id_name;
        chan.caller_id_number = request.caller_id_number;
        let mut vars = request.vars;
        vars.extend(dialed.variables);
        chan.variables = Arc::new(vars);
        chan.depth = request.depth;
        if let Some(o) = &request.originator {
            chan.set_var("originator", o);
        }
        let (tx, rx) = mpsc::channel(8);
        let handle = ChannelHandle {
            uuid: chan.uuid.clone(),
            tx,
        };
        self.register(handle.clone());
        let runner = Runner {
            switch: self.clone(),
            chan,
            remote: dialed.remote,
            cmds: rx,
            permit: Some(permit),
            remote_gone: false,
            digits: VecDeque::new(),
            collecting: false,
            redirect: None,
        };
        tokio::spawn(runner.run_outbound(leg, link));
        Ok(handle)
    }

    /// Expands a dialstring template for a channel: `${var}` from `lookup`
    /// (escaped), `${helper(args)}` through the tenant's helper component
    /// (spliced as syntax). Helpers are resolved first, then the template is
    /// expanded once more with their answers, so the expansion itself stays
    /// synchronous and deterministic.
    pub async fn expand_dialstring(
        &self,
        tenant: &str,
        template: &str,
        lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<String, HangupCause> {
        let mut calls: Vec<(String, String)> = Vec::new();
        let first = dialstring::expand(template, lookup, &mut |name, args| {
            calls.push((name.to_string(), args.to_string()));
            Ok(String::new())
        });
        if let Err(e) = first {
            tracing::warn!(tenant, error = %e, "dialstring expansion failed");
            return Err(HangupCause::InvalidUrl);
        }
        if calls.is_empty() {
            return dialstring::expand(template, lookup, &mut |_, _| Ok(String::new()))
                .map_err(|_| HangupCause::InvalidUrl);
        }
        let answers = self.dialplan.call_helpers(tenant, &calls).await;
        for ((name, _), a) in calls.iter().zip(&answers) {
            if let Err(e) = a {
                tracing::warn!(tenant, helper = %name, error = %e, "dialstring helper failed");
            }
        }
        // A helper that could not run (overload, a trap) fails the leg with
        // the host's cause, not as a bad dialstring.
        if let Some(Err(e)) = answers
            .iter()
            .find(|a| matches!(a, Err(e) if e.cause != HangupCause::InvalidUrl))
        {
            return Err(e.cause);
        }
        let mut it = answers.into_iter().map(|a| a.map_err(|e| e.message));
        dialstring::expand(template, lookup, &mut |_, _| {
            it.next()
                .unwrap_or_else(|| Err("helper call count changed".into()))
        })
        .map_err(|e| {
            tracing::warn!(tenant, error = %e, "dialstring expansion failed");
            HangupCause::InvalidUrl
        })
    }

    /// Resolves one leg the originate engine asked for.
    #[allow(clippy::too_many_arguments)]
    async fn resolve(
        self: Arc<Self>,
        a: Arc<LegContext>,
        leg: LegId,
        endpoint: String,
        data: String,
        vars: Vars,
        depth: u32,
        link: mpsc::UnboundedSender<(LegId, RemoteEvent)>,
    ) -> (LegId, Resolution, Option<ChannelHandle>) {
        match endpoint.as_str() {
            "user" => (leg, self.resolve_user(&a, &data, &vars, depth).await, None),
            "group" => (leg, self.resolve_group(&a, &data), None),
            _ => match self
                .resolve_endpoint(a, leg, endpoint, data, vars, depth, link)
                .await
            {
                Ok(h) => (leg, Resolution::Created, Some(h)),
                Err(c) => (leg, Resolution::Failed(c), None),
            },
        }
    }

    async fn resolve_user(
        &self,
        a: &LegContext,
        data: &str,
        vars: &Vars,
        depth: u32,
    ) -> Resolution {
        let (user, domain) = split_user_domain(data);
        let domain = domain.unwrap_or(&a.tenant);
        if !domain.eq_ignore_ascii_case(&a.tenant) {
            tracing::warn!(tenant = %a.tenant, target = data, "user/ leg into another tenant refused");
            return Resolution::Failed(HangupCause::CallRejected);
        }
        if depth + 1 > self.settings.max_recursion {
            return Resolution::Failed(HangupCause::ExchangeRoutingError);
        }
        let dir = self.directory();
        let Some(t) = dir.tenant(&a.tenant) else {
            return Resolution::Failed(HangupCause::SubscriberAbsent);
        };
        let Some(u) = t.user(user) else {
            return Resolution::Failed(HangupCause::SubscriberAbsent);
        };
        let template = t.dial_string(u).to_string();
        if template.trim().is_empty() {
            return Resolution::Failed(HangupCause::MandatoryIeMissing);
        }
        let dialed_user = user.to_string();
        let dialed_domain = a.tenant.clone();
        let lookup = |name: &str| -> Option<String> {
            match name {
                "dialed_user" => Some(dialed_user.clone()),
                "dialed_domain" | "domain" | "domain_name" => Some(dialed_domain.clone()),
                _ => vars
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| u.variable(name).map(str::to_string))
                    .or_else(|| t.variable(name).map(str::to_string)),
            }
        };
        let expanded = match self.expand_dialstring(&a.tenant, &template, &lookup).await {
            Ok(s) => s,
            Err(c) => return Resolution::Failed(c),
        };
        let mut ds = match dialstring::parse(&expanded) {
            Ok(ds) => ds,
            Err(e) => {
                tracing::warn!(tenant = %a.tenant, user, error = %e, "user dial-string does not parse");
                return Resolution::Failed(e.cause());
            }
        };
        // A dial-string that is only this same user is a loop.
        if ds.leg_count() == 1 {
            if let Some(l) = ds
                .branches
                .first()
                .and_then(|b| b.groups.first())
                .and_then(|g| g.legs.first())
            {
                if l.endpoint == "user" && split_user_domain(&l.data).0 == user {
                    return Resolution::Failed(HangupCause::InvalidIeContents);
                }
            }
        }
        ds.enterprise_vars
            .insert(0, ("dialed_user".into(), dialed_user.clone()));
        ds.enterprise_vars
            .insert(1, ("dialed_domain".into(), dialed_domain.clone()));
        Resolution::Nested(ds)
    }

    fn resolve_group(&self, a: &LegContext, data: &str) -> Resolution {
        let (spec, sep) = match data.rsplit_once('+') {
            Some((s, "F")) => (s, "|"),
            Some((s, "E")) => (s, ":_:"),
            Some((s, "A")) => (s, ","),
            _ => (data, ","),
        };
        let (group, domain) = split_user_domain(spec);
        let domain = domain.unwrap_or(&a.tenant);
        if !domain.eq_ignore_ascii_case(&a.tenant) {
            tracing::warn!(tenant = %a.tenant, target = data, "group/ leg into another tenant refused");
            return Resolution::Failed(HangupCause::CallRejected);
        }
        let dir = self.directory();
        let members = dir
            .tenant(&a.tenant)
            .and_then(|t| t.group_members(group).map(|m| m.to_vec()))
            .unwrap_or_default();
        if members.is_empty() {
            return Resolution::Failed(HangupCause::NoRouteDestination);
        }
        let text = members
            .iter()
            .map(|m| {
                let (u, _) = split_user_domain(m);
                format!(
                    "user/{}@{}",
                    dialstring::escape(u),
                    dialstring::escape(&a.tenant)
                )
            })
            .collect::<Vec<_>>()
            .join(sep);
        match dialstring::parse(&text) {
            Ok(ds) => Resolution::Nested(ds),
            Err(e) => Resolution::Failed(e.cause()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn resolve_endpoint(
        self: Arc<Self>,
        a: Arc<LegContext>,
        leg: LegId,
        mut endpoint: String,
        mut data: String,
        mut vars: Vars,
        depth: u32,
        link: mpsc::UnboundedSender<(LegId, RemoteEvent)>,
    ) -> Result<ChannelHandle, HangupCause> {
        let dir = self.directory();
        context::check_leg(
            &a.context,
            &a.tenant,
            &endpoint,
            &data,
            &dir,
            &self.registrations,
        )?;
        let uuid = uuid::Uuid::new_v4().to_string();
        if endpoint != "error" && self.dialplan.wants_outbound(&a.tenant) {
            // The dialplan reads the leg's variables through a shared list,
            // taken back without a copy once it has answered.
            let shared = Arc::new(std::mem::take(&mut vars));
            let request = {
                let mut snapshot = Channel::new(Direction::Outbound, &endpoint, &a.tenant);
                snapshot.uuid = uuid.clone();
                snapshot.context = a.context.clone();
                snapshot.destination = data.clone();
                snapshot.caller_id_name = a.caller_id_name.clone();
                snapshot.caller_id_number = a.caller_id_number.clone();
                snapshot.variables = Arc::clone(&shared);
                OutboundRequest {
                    channel: snapshot.snapshot(),
                    target: data.clone(),
                    originator: a.uuid.clone().unwrap_or_default(),
                }
            };
            let decision = self.dialplan.route_outbound(request).await;
            vars = Arc::try_unwrap(shared).unwrap_or_else(|s| Vars::clone(&s));
            match decision {
                Ok(OutboundDecision::Accept { variables }) => vars.extend(variables),
                Ok(OutboundDecision::Rewrite { target, variables }) => {
                    let Some((e, d)) = target.split_once('/') else {
                        return Err(HangupCause::InvalidUrl);
                    };
                    if matches!(e, "user" | "group") || d.is_empty() {
                        return Err(HangupCause::InvalidUrl);
                    }
                    context::check_leg(&a.context, &a.tenant, e, d, &dir, &self.registrations)?;
                    endpoint = e.to_string();
                    data = d.to_string();
                    vars.extend(variables);
                }
                Ok(OutboundDecision::Refuse { cause }) => return Err(cause),
                Err(f) => return Err(f.cause),
            }
        }
        let request = OutgoingRequest {
            uuid,
            endpoint,
            data,
            vars,
            tenant: a.tenant.clone(),
            context: a.context.clone(),
            originator: a.uuid.clone(),
            caller_id_name: a.caller_id_name.clone(),
            caller_id_number: a.caller_id_number.clone(),
            depth,
        };
        self.dial(request, leg, link).await
    }
}

/// What every leg of one originate shares about its originator.
#[derive(Clone, Debug)]
struct LegContext {
    uuid: Option<String>,
    tenant: String,
    context: String,
    caller_id_name: String,
    caller_id_number: String,
    exported: Vars,
}

/// The outcome of driving an originate.
enum Originated {
    Bridged {
        leg: LegId,
        handle: ChannelHandle,
        events: mpsc::UnboundedReceiver<(LegId, RemoteEvent)>,
        handles: HashMap<LegId, ChannelHandle>,
    },
    Failed(HangupCause),
    CallerGone(HangupCause),
}

/// A channel's owner task.
struct Runner {
    switch: Arc<Switch>,
    chan: Channel,
    remote: Remote,
    cmds: mpsc::Receiver<ChannelCommand>,
    permit: Option<ChannelPermit>,
    remote_gone: bool,
    /// Digits received and not yet consumed by `collect` (bounded: the
    /// oldest go first).
    digits: VecDeque<char>,
    /// While true, [`Runner::interrupt`] returns on each digit.
    collecting: bool,
    /// A `uuid_transfer` or `originate` API command that interrupted what
    /// the channel was doing: where it goes next instead of hanging up.
    redirect: Option<Redirect>,
}

/// Where a channel goes when a command takes it out of what it does.
enum Redirect {
    Transfer(String, Option<String>),
    Execute(Vec<Action>),
    Join(String, ChannelHandle, bool),
}

/// What a channel does next instead of routing.
enum Next {
    /// Run these actions.
    Run(Vec<Action>),
    /// Stay bridged to another channel (`uuid_bridge`) until either ends.
    Join {
        other: String,
        partner: ChannelHandle,
        /// The side `uuid_bridge` named first: it joins the media and
        /// publishes CHANNEL_BRIDGE.
        initiator: bool,
    },
}

/// Digits a channel keeps for a later `collect` (type-ahead).
const DIGIT_QUEUE: usize = 64;

/// Why a wait ended.
enum Interrupt {
    RemoteHangup(HangupCause),
    Command(HangupCause),
    Other(RemoteEvent),
}

impl Runner {
    fn state(&mut self, s: ChannelState) {
        self.switch.set_state(&mut self.chan, s);
    }

    fn publish(&self, name: EventName) {
        self.switch.publish(&self.chan, name);
    }

    /// CHANNEL_CREATE, with the channel's variables as FreeSWITCH sends
    /// them (`variable_sip_call_id`, ...).
    fn publish_create(&self) {
        self.switch
            .events
            .publish_named(EventName::ChannelCreate, || {
                self.chan
                    .event(EventName::ChannelCreate)
                    .with_variables(Arc::clone(&self.chan.variables))
            });
    }

    /// Waits for the far side or a command. DTMF is published as a `DTMF`
    /// event where it arrives and the wait goes on (cancel-safe: the event
    /// is published in the same poll that received it).
    async fn interrupt(&mut self) -> Interrupt {
        loop {
            return tokio::select! {
                ev = self.remote.events.recv() => match ev {
                    Some(RemoteEvent::Hangup(c)) => Interrupt::RemoteHangup(c),
                    None => Interrupt::RemoteHangup(HangupCause::NormalClearing),
                    Some(RemoteEvent::Dtmf { digit, duration_ms, source }) => {
                        self.dtmf(digit, duration_ms, source);
                        if self.collecting {
                            Interrupt::Other(RemoteEvent::Dtmf { digit, duration_ms, source })
                        } else {
                            continue;
                        }
                    }
                    Some(other) => Interrupt::Other(other),
                },
                cmd = self.cmds.recv() => match cmd {
                    Some(ChannelCommand::Hangup(c)) => Interrupt::Command(c),
                    Some(ChannelCommand::Dump(tx)) => {
                        let _ = tx.send(self.chan.clone());
                        continue;
                    }
                    Some(ChannelCommand::SetVar(k, v)) => {
                        if v.is_empty() {
                            self.chan.unset_var(&k);
                        } else {
                            self.chan.set_var(&k, &v);
                        }
                        continue;
                    }
                    Some(ChannelCommand::Transfer { extension, context }) => {
                        tracing::info!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, %extension, "transfer by command");
                        self.redirect = Some(Redirect::Transfer(extension, context));
                        Interrupt::Command(HangupCause::BlindTransfer)
                    }
                    Some(ChannelCommand::Execute(actions)) => {
                        self.redirect = Some(Redirect::Execute(actions));
                        Interrupt::Command(HangupCause::BlindTransfer)
                    }
                    Some(ChannelCommand::Join { other, partner, initiator }) => {
                        self.redirect = Some(Redirect::Join(other, partner, initiator));
                        Interrupt::Command(HangupCause::BlindTransfer)
                    }
                    None => Interrupt::Command(HangupCause::NormalClearing),
                },
            };
        }
    }

    /// A digit from the far side: FreeSWITCH's `DTMF` event (duration in
    /// samples at 8 kHz, as FreeSWITCH reports it).
    fn dtmf(&mut self, digit: char, duration_ms: u32, source: &'static str) {
        tracing::info!(uuid = %self.chan.uuid, %digit, duration_ms, source, "DTMF received");
        if self.digits.len() == DIGIT_QUEUE {
            self.digits.pop_front();
        }
        self.digits.push_back(digit);
        self.switch.events.publish_named(EventName::Dtmf, || {
            let mut ev = self.chan.event(EventName::Dtmf);
            ev.push_header(header::DTMF_DIGIT, digit.to_string());
            ev.push_header(
                header::DTMF_DURATION,
                duration_ms.saturating_mul(8).to_string(),
            );
            ev.push_header(header::DTMF_SOURCE, source);
            ev
        });
    }

    fn answer(&mut self) {
        if self.chan.call_state != CallState::Active {
            self.remote.control.answer();
            self.chan.call_state = CallState::Active;
            self.chan.answered = Some(SystemTime::now());
            self.publish(EventName::ChannelAnswer);
        }
    }

    fn pre_answer(&mut self) {
        if matches!(self.chan.call_state, CallState::Down | CallState::Ringing) {
            self.remote.control.pre_answer();
            self.chan.call_state = CallState::Early;
            self.publish(EventName::ChannelProgressMedia);
        }
    }

    fn ring_ready(&mut self) {
        if self.chan.call_state == CallState::Down {
            self.remote.control.ring_ready();
            self.chan.call_state = CallState::Ringing;
            self.publish(EventName::ChannelProgress);
        }
    }

    async fn run_inbound(mut self) {
        self.publish_create();
        self.state(ChannelState::Init);
        let cause = self.route_and_execute(None).await;
        self.finish(cause).await;
    }

    /// Takes a pending redirect: `Ok(Some(actions))` to run, `Ok(None)` to
    /// route again (the destination was changed), `Err` when the channel
    /// must hang up instead.
    fn take_redirect(&mut self) -> Option<Result<Option<Next>, HangupCause>> {
        if self.remote_gone {
            self.redirect = None;
            return None;
        }
        Some(match self.redirect.take()? {
            Redirect::Execute(actions) => Ok(Some(Next::Run(actions))),
            Redirect::Join(other, partner, initiator) => Ok(Some(Next::Join {
                other,
                partner,
                initiator,
            })),
            Redirect::Transfer(extension, context) => {
                self.chan.transfers += 1;
                if self.chan.transfers > self.switch.settings.max_transfers {
                    return Some(Err(HangupCause::ExchangeRoutingError));
                }
                self.chan.destination = extension;
                if let Some(c) = context {
                    self.chan.context = c;
                }
                Ok(None)
            }
        })
    }

    /// [`Runner::route_and_execute`] behind a box: an outbound leg that is
    /// transferred routes too, and its future would otherwise contain
    /// itself (through `bridge` and `dial`).
    fn route_and_execute_boxed(
        &mut self,
        first: Option<Next>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HangupCause> + Send + '_>> {
        Box::pin(self.route_and_execute(first))
    }

    /// Routing and execution until the channel must hang up; `first`, when
    /// given, runs instead of the first routing.
    async fn route_and_execute(&mut self, first: Option<Next>) -> HangupCause {
        let mut pending = first;
        loop {
            let actions = match pending.take() {
                Some(Next::Run(a)) => a,
                Some(Next::Join {
                    other,
                    partner,
                    initiator,
                }) => match self.join(other, partner, initiator).await {
                    Flow::Hangup(c, remote) => {
                        self.remote_gone |= remote;
                        match self.take_redirect() {
                            Some(Ok(next)) => {
                                pending = next;
                                continue;
                            }
                            Some(Err(c)) => return c,
                            None => return c,
                        }
                    }
                    Flow::Next => return HangupCause::NormalClearing,
                    Flow::Reroute => continue,
                },
                None => {
                    self.state(ChannelState::Routing);
                    let snapshot = self.chan.snapshot();
                    let dialplan = self.switch.dialplan.clone();
                    let asked = Instant::now();
                    let actions = tokio::select! {
                        r = dialplan.route(snapshot) => r,
                        i = self.interrupt() => match i {
                            Interrupt::RemoteHangup(c) => { self.remote_gone = true; return c; }
                            Interrupt::Command(c) => match self.take_redirect() {
                                Some(Ok(next)) => { pending = next; continue; }
                                Some(Err(c)) => return c,
                                None => return c,
                            },
                            Interrupt::Other(_) => continue,
                        },
                    };
                    if let Some(f) = self.switch.route_observer.get() {
                        f(&self.chan.tenant, asked.elapsed());
                    }
                    if actions.is_ok() {
                        if let Some(v) = self.switch.dialplan.version(&self.chan.tenant) {
                            self.chan.set_var("dialplan_version", &v);
                        }
                    }
                    match actions {
                        Ok(a) if a.is_empty() => return HangupCause::NoRouteDestination,
                        Ok(a) => a,
                        Err(f) => {
                            self.chan.set_var("dialplan_failure", &f.reason);
                            return f.cause;
                        }
                    }
                }
            };
            self.state(ChannelState::Execute);
            let mut reroute = false;
            for action in actions {
                let app = action.app_name();
                self.switch
                    .events
                    .publish_named(EventName::ChannelExecute, || {
                        let mut ev = self.chan.event(EventName::ChannelExecute);
                        ev.push_header(header::APPLICATION, app);
                        ev
                    });
                let flow = self.execute(action).await;
                self.switch
                    .events
                    .publish_named(EventName::ChannelExecuteComplete, || {
                        let mut ev = self.chan.event(EventName::ChannelExecuteComplete);
                        ev.push_header(header::APPLICATION, app);
                        ev
                    });
                match flow {
                    Flow::Next => {}
                    Flow::Hangup(c, remote) => {
                        self.remote_gone |= remote;
                        match self.take_redirect() {
                            Some(Ok(next)) => {
                                pending = next;
                                reroute = true;
                                break;
                            }
                            Some(Err(c)) => return c,
                            None => return c,
                        }
                    }
                    Flow::Reroute => {
                        reroute = true;
                        break;
                    }
                }
            }
            if !reroute {
                return HangupCause::NormalClearing;
            }
        }
    }

    fn expand_value(&self, template: &str) -> String {
        expand_plain(template, &|n| self.chan.var(n).map(str::to_string))
    }

    async fn execute(&mut self, action: Action) -> Flow {
        match action {
            Action::Answer => {
                self.answer();
                Flow::Next
            }
            Action::PreAnswer => {
                self.pre_answer();
                Flow::Next
            }
            Action::RingReady => {
                self.ring_ready();
                Flow::Next
            }
            Action::Set { name, value } => {
                let v = self.expand_value(&value);
                self.chan.set_var(&name, &v);
                Flow::Next
            }
            Action::Export { name, value } => {
                let v = self.expand_value(&value);
                self.chan.export_var(&name, &v);
                Flow::Next
            }
            Action::Unset { name } => {
                self.chan.unset_var(&name);
                Flow::Next
            }
            Action::Hangup { cause } => Flow::Hangup(cause, false),
            Action::Respond { code, reason } => {
                if self.remote.control.respond(code, reason.as_deref()) {
                    match code {
                        180 => self.chan.call_state = CallState::Ringing,
                        183 => self.chan.call_state = CallState::Early,
                        200..=299 => self.answer(),
                        300..=699 => return Flow::Hangup(HangupCause::from_sip(code), true),
                        _ => {}
                    }
                }
                Flow::Next
            }
            Action::Sleep { ms } => {
                let sleep = tokio::time::sleep(Duration::from_millis(ms as u64));
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => return Flow::Next,
                        i = self.interrupt() => match i {
                            Interrupt::RemoteHangup(c) => return Flow::Hangup(c, true),
                            Interrupt::Command(c) => return Flow::Hangup(c, false),
                            Interrupt::Other(_) => {}
                        },
                    }
                }
            }
            Action::Park => {
                self.state(ChannelState::Park);
                loop {
                    match self.interrupt().await {
                        Interrupt::RemoteHangup(c) => return Flow::Hangup(c, true),
                        Interrupt::Command(c) => return Flow::Hangup(c, false),
                        Interrupt::Other(_) => {}
                    }
                }
            }
            Action::Transfer { extension, context } => {
                let target_ctx = context.unwrap_or_else(|| self.chan.context.clone());
                if let Err(c) = context::check_transfer(&self.chan.context, &target_ctx) {
                    tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, from = %self.chan.context, to = %target_ctx, "transfer out of context refused");
                    return Flow::Hangup(c, false);
                }
                self.chan.transfers += 1;
                if self.chan.transfers > self.switch.settings.max_transfers {
                    return Flow::Hangup(HangupCause::ExchangeRoutingError, false);
                }
                self.chan.destination = self.expand_value(&extension);
                self.chan.context = target_ctx;
                Flow::Reroute
            }
            Action::Bridge { dialstring } => self.bridge(&dialstring).await,
            Action::Echo => self.echo().await,
            Action::Playback { file } => self.playback(&file).await,
            Action::Collect(spec) => self.collect(spec).await,
            Action::Record {
                path,
                limit_ms,
                legs,
            } => self.record(&path, limit_ms, legs),
            Action::Socket {
                address,
                async_mode,
                full,
            } => self.socket(address, async_mode, full).await,
        }
    }

    /// `socket`: hands the channel to an external application over the
    /// event socket protocol (FreeSWITCH's outbound mode). The application's
    /// orders run one at a time, each announced with CHANNEL_EXECUTE and
    /// CHANNEL_EXECUTE_COMPLETE carrying its `Application-UUID`. When the
    /// application goes away the channel hangs up, or goes on with the
    /// dialplan if it said `resume`. A connection that fails is logged and
    /// the dialplan goes on (`socket_failure` is set).
    async fn socket(&mut self, address: String, async_mode: bool, full: bool) -> Flow {
        let Some(h) = self.switch.socket_handler.get().cloned() else {
            tracing::info!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, "socket application requested; the control plane is not running");
            return Flow::Hangup(HangupCause::ServiceNotImplemented, false);
        };
        let connect = h.connect(self.chan.clone(), address.clone(), async_mode, full);
        let mut orders = tokio::select! {
            r = connect => match r {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, %address, error = %e, "socket: cannot reach the application");
                    self.chan.set_var("socket_failure", &e);
                    return Flow::Next;
                }
            },
            i = self.interrupt() => match i {
                Interrupt::RemoteHangup(c) => return Flow::Hangup(c, true),
                Interrupt::Command(c) => return Flow::Hangup(c, false),
                Interrupt::Other(_) => return Flow::Next,
            },
        };
        tracing::info!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, %address, "socket: application connected");
        let mut resume = false;
        loop {
            let order = tokio::select! {
                o = orders.recv() => o,
                i = self.interrupt() => match i {
                    Interrupt::RemoteHangup(c) => return Flow::Hangup(c, true),
                    Interrupt::Command(c) => return Flow::Hangup(c, false),
                    Interrupt::Other(_) => continue,
                },
            };
            match order {
                None if resume => return Flow::Next,
                None => return Flow::Hangup(HangupCause::NormalClearing, false),
                Some(SocketOrder::Resume) => resume = true,
                Some(SocketOrder::Hangup(c)) => return Flow::Hangup(c, false),
                Some(SocketOrder::Execute {
                    action,
                    app,
                    arg,
                    app_uuid,
                }) => {
                    if matches!(action, Action::Socket { .. }) {
                        continue;
                    }
                    let tag = |ev: &mut crate::events::Event| {
                        ev.push_header(header::APPLICATION, app.clone());
                        ev.push_header(header::APPLICATION_DATA, arg.clone());
                        if let Some(u) = &app_uuid {
                            ev.push_header("Application-UUID", u.clone());
                        }
                    };
                    self.switch
                        .events
                        .publish_named(EventName::ChannelExecute, || {
                            let mut ev = self.chan.event(EventName::ChannelExecute);
                            tag(&mut ev);
                            ev
                        });
                    let flow = self.execute_boxed(action).await;
                    self.switch
                        .events
                        .publish_named(EventName::ChannelExecuteComplete, || {
                            let mut ev = self.chan.event(EventName::ChannelExecuteComplete);
                            tag(&mut ev);
                            let response = self
                                .chan
                                .var("current_application_response")
                                .unwrap_or("_none_")
                                .to_string();
                            ev.push_header(header::APPLICATION_RESPONSE, response);
                            ev
                        });
                    match flow {
                        Flow::Next => {}
                        Flow::Hangup(..) => return flow,
                        // A transfer leaves the socket, as in FreeSWITCH.
                        Flow::Reroute => return Flow::Reroute,
                    }
                }
            }
        }
    }

    /// [`Runner::execute`] behind a box (the socket application runs actions
    /// from within an action).
    fn execute_boxed(
        &mut self,
        action: Action,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Flow> + Send + '_>> {
        Box::pin(self.execute(action))
    }

    /// `uuid_bridge`: this channel and `other` are bridged until either
    /// ends (the other is then hung up), or a command takes this one away.
    /// The initiator joins the two media streams and publishes
    /// CHANNEL_BRIDGE / CHANNEL_UNBRIDGE; both answer if they had not.
    async fn join(&mut self, other: String, partner: ChannelHandle, initiator: bool) -> Flow {
        self.answer();
        if initiator {
            let joined = self.remote.control.media().is_some_and(|m| m.join(&other));
            if !joined {
                tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, %other, "uuid_bridge: the two channels' media cannot be joined");
                partner.hangup(HangupCause::IncompatibleDestination);
                return Flow::Hangup(HangupCause::IncompatibleDestination, false);
            }
        }
        self.chan.set_var("bridge_uuid", &other);
        self.chan.set_var("last_bridge_to", &other);
        self.state(ChannelState::ExchangeMedia);
        if initiator {
            self.switch
                .events
                .publish_named(EventName::ChannelBridge, || {
                    let mut ev = self.chan.event(EventName::ChannelBridge);
                    ev.push_header(header::OTHER_LEG_UNIQUE_ID, other.clone());
                    ev
                });
        }
        let flow = loop {
            match self.interrupt().await {
                Interrupt::RemoteHangup(c) => {
                    partner.hangup(HangupCause::NormalClearing);
                    break Flow::Hangup(c, true);
                }
                Interrupt::Command(c) => {
                    // Killed, transferred, or the partner ended (then this
                    // is a no-op): either way the bridge ends for both.
                    partner.hangup(HangupCause::NormalClearing);
                    break Flow::Hangup(c, false);
                }
                Interrupt::Other(_) => {}
            }
        };
        if initiator {
            self.switch
                .events
                .publish_named(EventName::ChannelUnbridge, || {
                    let mut ev = self.chan.event(EventName::ChannelUnbridge);
                    ev.push_header(header::OTHER_LEG_UNIQUE_ID, other.clone());
                    ev
                });
        }
        flow
    }

    /// The channel's media, or the flow that fails an app without it.
    fn media_for(&mut self, app: &str) -> Result<Arc<dyn ChannelMedia>, Flow> {
        match self.remote.control.media() {
            Some(m) => {
                // Media flows before answer as early media, as FreeSWITCH's
                // applications do.
                self.pre_answer();
                Ok(m)
            }
            None => {
                tracing::info!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, app, "this channel's endpoint carries no media");
                Err(Flow::Hangup(HangupCause::ServiceNotImplemented, false))
            }
        }
    }

    /// A prompt by name: `tone_stream://`, `silence_stream://`, or a file
    /// in the tenant's sound directory (read off the channel's task).
    fn load_prompt(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Arc<Prompt>, String>> + Send + 'static {
        let name = self.expand_value(name);
        let path = if Prompt::is_stream(&name) {
            None
        } else {
            Some(confine(
                self.switch.settings.sounds_dir.as_deref(),
                "sounds",
                &self.chan.tenant,
                &name,
            ))
        };
        async move {
            let loaded = match path {
                None => Prompt::load(&name),
                Some(path) => {
                    let path = path.map_err(|e| e.to_string())?;
                    tokio::task::spawn_blocking(move || Prompt::wav_file(&path))
                        .await
                        .map_err(|e| e.to_string())?
                }
            };
            loaded.map(Arc::new).map_err(|e| e.to_string())
        }
    }

    /// `record`: starts recording to a file in the tenant's recordings
    /// directory and goes on at once (FreeSWITCH's `record_session`). A
    /// name that leaves the directory, or a file that cannot be created, is
    /// logged and skipped, with `current_application_response` set.
    fn record(&mut self, name: &str, limit_ms: Option<u32>, legs: RecordLegs) -> Flow {
        let media = match self.media_for("record") {
            Ok(m) => m,
            Err(f) => return f,
        };
        let name = self.expand_value(name);
        let path = match confine(
            self.switch.settings.recordings_dir.as_deref(),
            "recordings",
            &self.chan.tenant,
            &name,
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, file = %name, error = %e, "record refused");
                self.chan
                    .set_var("current_application_response", "INVALID PATH");
                return Flow::Next;
            }
        };
        let limit = limit_ms.map(|ms| Duration::from_millis(ms as u64));
        match media.record(&path, legs, limit) {
            Ok(()) => {
                tracing::info!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, file = %path.display(), ?legs, "recording");
                self.chan
                    .set_var("record_file", &path.display().to_string());
            }
            Err(e) => {
                tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, file = %path.display(), error = %e, "record failed");
                self.chan
                    .set_var("current_application_response", "CANNOT CREATE FILE");
            }
        }
        Flow::Next
    }

    /// `echo`: the caller hears itself until it hangs up.
    async fn echo(&mut self) -> Flow {
        let media = match self.media_for("echo") {
            Ok(m) => m,
            Err(f) => return f,
        };
        media.echo();
        loop {
            match self.interrupt().await {
                Interrupt::RemoteHangup(c) => return Flow::Hangup(c, true),
                Interrupt::Command(c) => return Flow::Hangup(c, false),
                Interrupt::Other(_) => {}
            }
        }
    }

    /// `playback`: play to the end, then the next action. A prompt that
    /// cannot be loaded is logged and skipped (the next action runs), with
    /// `current_application_response` set, as FreeSWITCH does.
    async fn playback(&mut self, name: &str) -> Flow {
        let media = match self.media_for("playback") {
            Ok(m) => m,
            Err(f) => return f,
        };
        self.play_to_end(media, name).await
    }

    /// Play `name` on `media` and wait for its end (see `playback`).
    async fn play_to_end(&mut self, media: Arc<dyn ChannelMedia>, name: &str) -> Flow {
        let prompt = match self.load_prompt(name).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, prompt = name, error = %e, "playback refused");
                self.chan
                    .set_var("current_application_response", "FILE NOT FOUND");
                return Flow::Next;
            }
        };
        let Some(token) = media.play(prompt) else {
            return Flow::Next;
        };
        loop {
            match self.interrupt().await {
                Interrupt::RemoteHangup(c) => return Flow::Hangup(c, true),
                Interrupt::Command(c) => {
                    media.stop();
                    return Flow::Hangup(c, false);
                }
                Interrupt::Other(RemoteEvent::PlaybackDone {
                    token: t,
                    completed,
                }) if t == token => {
                    self.chan.set_var(
                        "playback_status",
                        if completed { "done" } else { "stopped" },
                    );
                    return Flow::Next;
                }
                Interrupt::Other(_) => {}
            }
        }
    }

    /// `collect`: play the prompt, gather digits (a digit stops the
    /// prompt), store them in the variable and route again.
    async fn collect(&mut self, spec: CollectSpec) -> Flow {
        let media = match self.media_for("collect") {
            Ok(m) => m,
            Err(f) => return f,
        };
        let mut playing = None;
        if let Some(name) = spec.prompt.as_deref().filter(|p| !p.is_empty()) {
            match self.load_prompt(name).await {
                Ok(p) => playing = media.play(p),
                Err(e) => {
                    tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, prompt = name, error = %e, "collect prompt refused; collecting without it");
                }
            }
        }
        let timeout = Duration::from_millis(spec.timeout_ms.max(1) as u64);
        let variable = spec.variable.clone();
        let mut c = Collector::new(spec);
        let mut deadline = tokio::time::Instant::now() + timeout;
        self.collecting = true;
        let flow = loop {
            while let Some(d) = self.digits.pop_front() {
                if playing.take().is_some() {
                    media.stop();
                }
                deadline = tokio::time::Instant::now() + timeout;
                if c.digit(d) {
                    break;
                }
            }
            if c.end().is_some() {
                break None;
            }
            let sleep = tokio::time::sleep_until(deadline);
            tokio::select! {
                _ = sleep, if playing.is_none() => {
                    c.timeout();
                    break None;
                }
                i = self.interrupt() => match i {
                    Interrupt::RemoteHangup(cause) => break Some(Flow::Hangup(cause, true)),
                    Interrupt::Command(cause) => break Some(Flow::Hangup(cause, false)),
                    Interrupt::Other(RemoteEvent::PlaybackDone { token, .. }) if Some(token) == playing => {
                        playing = None;
                        deadline = tokio::time::Instant::now() + timeout;
                    }
                    Interrupt::Other(_) => {}
                },
            }
        };
        self.collecting = false;
        if playing.is_some() {
            media.stop();
        }
        if let Some(f) = flow {
            return f;
        }
        tracing::info!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, variable = %variable, digits = c.value(), end = ?c.end(), "digits collected");
        self.chan.set_var(&variable, c.value());
        Flow::Reroute
    }

    async fn bridge(&mut self, template: &str) -> Flow {
        let chan = &self.chan;
        let lookup = |n: &str| chan.var(n).map(str::to_string);
        let expanded = match self
            .switch
            .expand_dialstring(&chan.tenant, template, &lookup)
            .await
        {
            Ok(s) => s,
            Err(c) => return self.bridge_failed(c),
        };
        let ds = match dialstring::parse(&expanded) {
            Ok(ds) => ds,
            Err(e) => {
                tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, error = %e, "bridge dialstring does not parse");
                return self.bridge_failed(e.cause());
            }
        };
        let timeout = self
            .chan
            .var("call_timeout")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.switch.settings.default_call_timeout);
        let a = LegContext {
            uuid: Some(self.chan.uuid.clone()),
            tenant: self.chan.tenant.clone(),
            context: self.chan.context.clone(),
            caller_id_name: self
                .chan
                .var("effective_caller_id_name")
                .unwrap_or(&self.chan.caller_id_name)
                .to_string(),
            caller_id_number: self
                .chan
                .var("effective_caller_id_number")
                .unwrap_or(&self.chan.caller_id_number)
                .to_string(),
            exported: self.chan.exported_vars(),
        };
        let opts = OriginateOptions {
            default_timeout: timeout,
            max_depth: self.switch.settings.max_recursion,
            depth: self.chan.depth,
            ..OriginateOptions::default()
        };
        match self.drive_originate(&ds, opts, a).await {
            Originated::Bridged {
                leg,
                handle,
                mut events,
                handles,
            } => {
                drop(handles);
                self.answer();
                self.chan.set_var("originate_disposition", "SUCCESS");
                self.chan.set_var("DIALSTATUS", "SUCCESS");
                self.chan.set_var("bridge_uuid", &handle.uuid);
                self.chan.set_var("last_bridge_to", &handle.uuid);
                self.state(ChannelState::ExchangeMedia);
                self.switch
                    .events
                    .publish_named(EventName::ChannelBridge, || {
                        let mut ev = self.chan.event(EventName::ChannelBridge);
                        ev.push_header("Other-Leg-Unique-ID", handle.uuid.clone());
                        ev
                    });
                let outcome = loop {
                    tokio::select! {
                        e = events.recv() => match e {
                            Some((l, RemoteEvent::Hangup(c))) if l == leg => break Ok(c),
                            Some(_) => {}
                            None => break Ok(HangupCause::NormalClearing),
                        },
                        i = self.interrupt() => match i {
                            Interrupt::RemoteHangup(c) => { handle.hangup(HangupCause::NormalClearing); break Err((c, true)); }
                            Interrupt::Command(c) => {
                                // A transfer takes this leg away; its partner ends normally.
                                handle.hangup(if self.redirect.is_some() { HangupCause::NormalClearing } else { c });
                                break Err((c, false));
                            }
                            Interrupt::Other(_) => {}
                        },
                    }
                };
                self.switch
                    .events
                    .publish_named(EventName::ChannelUnbridge, || {
                        let mut ev = self.chan.event(EventName::ChannelUnbridge);
                        ev.push_header("Other-Leg-Unique-ID", handle.uuid.clone());
                        ev
                    });
                match outcome {
                    Err((c, remote)) => Flow::Hangup(c, remote),
                    Ok(b_cause) => {
                        self.chan
                            .set_var("last_bridge_hangup_cause", b_cause.name());
                        if self.chan.var_true("hangup_after_bridge") {
                            Flow::Hangup(b_cause, false)
                        } else {
                            self.state(ChannelState::Execute);
                            Flow::Next
                        }
                    }
                }
            }
            Originated::CallerGone(c) => Flow::Hangup(c, self.remote_gone),
            Originated::Failed(c) => self.bridge_failed(c),
        }
    }

    /// `switch_channel_handle_cause`: whether the dialplan continues after a
    /// failed bridge.
    fn bridge_failed(&mut self, cause: HangupCause) -> Flow {
        self.chan.set_var("originate_disposition", cause.name());
        self.chan.set_var("originate_failed_cause", cause.name());
        self.chan.set_var("DIALSTATUS", dialstatus(cause));
        if cause == HangupCause::AttendedTransfer {
            return Flow::Hangup(cause, false);
        }
        let matches_list = |list: &str| {
            list.split(',').any(|c| {
                let c = c.trim();
                HangupCause::parse(c) == Some(cause)
            })
        };
        let go_on = if let Some(v) = self.chan.var("continue_on_fail") {
            crate::channel::is_true(v) || matches_list(v)
        } else if let Some(v) = self.chan.var("failure_causes") {
            !matches_list(v)
        } else {
            cause.continues_by_default()
        };
        if go_on {
            Flow::Next
        } else {
            Flow::Hangup(cause, false)
        }
    }

    /// Drives the sans-IO originate engine against real legs.
    async fn drive_originate(
        &mut self,
        ds: &Dialstring,
        opts: OriginateOptions,
        a: LegContext,
    ) -> Originated {
        let switch = self.switch.clone();
        drive_originate(switch, Some(self), ds, opts, a).await
    }
}

/// Drives the sans-IO originate engine against real legs, for a caller's
/// `bridge` or (without a caller) for the `originate` API.
async fn drive_originate(
    switch: Arc<Switch>,
    mut caller: Option<&mut Runner>,
    ds: &Dialstring,
    opts: OriginateOptions,
    a: LegContext,
) -> Originated {
    // Shared by every leg's resolution task.
    let a = Arc::new(a);
    {
        let start = Instant::now();
        let mut engine = match Originate::new(start, ds, opts) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(uuid = ?a.uuid, error = %e, "originate refused");
                return Originated::Failed(HangupCause::InvalidNumberFormat);
            }
        };
        let (link_tx, mut link_rx) = mpsc::unbounded_channel::<(LegId, RemoteEvent)>();
        let (res_tx, mut res_rx) =
            mpsc::unbounded_channel::<(LegId, Resolution, Option<ChannelHandle>)>();
        let mut handles: HashMap<LegId, ChannelHandle> = HashMap::new();
        let mut pending_hangup: HashMap<LegId, HangupCause> = HashMap::new();
        let mut early_events: HashMap<LegId, Vec<RemoteEvent>> = HashMap::new();
        let mut caller_gone: Option<HangupCause> = None;
        let mut remote_hangup = false;
        // One timer, moved when the engine's deadline changes (not one
        // registered in the runtime's timer wheel per event).
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            while let Some(out) = engine.poll_output() {
                match out {
                    originate::Output::Resolve {
                        leg,
                        endpoint,
                        data,
                        vars,
                    } => {
                        let depth = engine.leg(leg).map(|l| l.depth).unwrap_or(0);
                        let all = if a.exported.is_empty() {
                            vars
                        } else {
                            let mut all = a.exported.clone();
                            all.extend(vars);
                            all
                        };
                        let fut = switch.clone().resolve(
                            a.clone(),
                            leg,
                            endpoint,
                            data,
                            all,
                            depth,
                            link_tx.clone(),
                        );
                        let tx = res_tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(fut.await);
                        });
                    }
                    originate::Output::Hangup { leg, cause } => match handles.get(&leg) {
                        Some(h) => {
                            h.hangup(cause);
                        }
                        None => {
                            pending_hangup.insert(leg, cause);
                        }
                    },
                    originate::Output::RingReady => {
                        if let Some(r) = caller.as_deref_mut() {
                            r.ring_ready();
                        }
                    }
                    originate::Output::EarlyMedia { .. } => {
                        if let Some(r) = caller.as_deref_mut() {
                            r.pre_answer();
                        }
                    }
                    originate::Output::Answered { leg } => {
                        if let Some(c) = caller_gone {
                            return Originated::CallerGone(c);
                        }
                        return match handles.get(&leg).cloned() {
                            Some(handle) => Originated::Bridged {
                                leg,
                                handle,
                                events: link_rx,
                                handles,
                            },
                            None => Originated::Failed(HangupCause::NormalTemporaryFailure),
                        };
                    }
                    originate::Output::Failed { cause } => {
                        return match caller_gone {
                            Some(c) => Originated::CallerGone(c),
                            None => Originated::Failed(cause),
                        };
                    }
                }
            }
            let deadline = engine.poll_timeout();
            if deadline != armed {
                armed = deadline;
                sleep
                    .as_mut()
                    .reset(deadline.map_or_else(far, tokio::time::Instant::from_std));
            }
            tokio::select! {
                Some((leg, resolution, handle)) = res_rx.recv() => {
                    let created = handle.is_some();
                    if let Some(h) = handle {
                        if let Some(c) = pending_hangup.remove(&leg) {
                            h.hangup(c);
                        }
                        handles.insert(leg, h);
                    }
                    engine.handle_input(Instant::now(), originate::Input::Resolved { leg, resolution });
                    // Events the new leg sent before its creation was reported.
                    if created {
                        if let Some(evs) = early_events.remove(&leg) {
                            for ev in evs {
                                if let Some(input) = leg_input(leg, ev) {
                                    engine.handle_input(Instant::now(), input);
                                }
                            }
                        }
                    }
                }
                Some((leg, ev)) = link_rx.recv() => {
                    if !handles.contains_key(&leg) {
                        early_events.entry(leg).or_default().push(ev);
                        continue;
                    }
                    if let Some(input) = leg_input(leg, ev) {
                        engine.handle_input(Instant::now(), input);
                    }
                }
                i = async {
                    match caller.as_deref_mut() {
                        Some(r) => r.interrupt().await,
                        None => std::future::pending().await,
                    }
                }, if caller_gone.is_none() => match i {
                    Interrupt::RemoteHangup(c) => {
                        remote_hangup = true;
                        caller_gone = Some(c);
                        engine.handle_input(Instant::now(), originate::Input::Cancel);
                    }
                    Interrupt::Command(c) => {
                        caller_gone = Some(c);
                        engine.handle_input(Instant::now(), originate::Input::Cancel);
                    }
                    Interrupt::Other(_) => {}
                },
                _ = sleep.as_mut(), if armed.is_some() => {
                    armed = None;
                    engine.handle_input(Instant::now(), originate::Input::Timeout);
                }
            }
            if remote_hangup {
                if let Some(r) = caller.as_deref_mut() {
                    r.remote_gone = true;
                }
                remote_hangup = false;
            }
        }
    }
}

impl Runner {
    /// An outbound leg: report the far side's events to the originator and
    /// obey commands, until hangup.
    async fn run_outbound(mut self, leg: LegId, link: mpsc::UnboundedSender<(LegId, RemoteEvent)>) {
        self.publish_create();
        self.state(ChannelState::Init);
        self.state(ChannelState::ConsumeMedia);
        let cause = loop {
            match self.interrupt().await {
                Interrupt::RemoteHangup(c) => {
                    self.remote_gone = true;
                    break c;
                }
                Interrupt::Command(c) if self.redirect.is_some() => {
                    if self.chan.call_state != CallState::Active {
                        // Only an answered leg can be taken over.
                        tracing::info!(uuid = %self.chan.uuid, "transfer of an unanswered outbound leg ignored");
                        self.redirect = None;
                        continue;
                    }
                    // The leg leaves its originator (whose bridge ends) and
                    // goes through the dialplan on its own.
                    let _ = link.send((leg, RemoteEvent::Hangup(HangupCause::NormalClearing)));
                    let cause = match self.take_redirect() {
                        Some(Ok(first)) => self.route_and_execute_boxed(first).await,
                        Some(Err(c)) => c,
                        None => c,
                    };
                    self.finish(cause).await;
                    return;
                }
                Interrupt::Command(c) => break c,
                Interrupt::Other(ev) => {
                    match ev {
                        RemoteEvent::Progress => {
                            if self.chan.call_state == CallState::Down {
                                self.chan.call_state = CallState::Ringing;
                                self.publish(EventName::ChannelProgress);
                            }
                        }
                        RemoteEvent::EarlyMedia => {
                            if self.chan.call_state != CallState::Active {
                                self.chan.call_state = CallState::Early;
                                self.publish(EventName::ChannelProgressMedia);
                            }
                        }
                        RemoteEvent::Answered => {
                            if self.chan.call_state != CallState::Active {
                                self.chan.call_state = CallState::Active;
                                self.chan.answered = Some(SystemTime::now());
                                self.publish(EventName::ChannelAnswer);
                                self.state(ChannelState::ExchangeMedia);
                                if self.chan.var("execute_on_answer").is_some() {
                                    // The originator learns of the answer first (its
                                    // timeout stops, other forks are cancelled);
                                    // then the app runs on this leg.
                                    let _ = link.send((leg, ev));
                                    if let Some(Flow::Hangup(c, remote)) =
                                        self.execute_on_answer().await
                                    {
                                        self.remote_gone = remote;
                                        break c;
                                    }
                                    continue;
                                }
                            }
                        }
                        RemoteEvent::Dtmf { .. } | RemoteEvent::Hangup(_) => {}
                        RemoteEvent::PlaybackDone { .. } => continue,
                    }
                    let _ = link.send((leg, ev));
                }
            }
        };
        // Either way the originator (or the bridge) learns that this leg ended.
        let _ = link.send((leg, RemoteEvent::Hangup(cause)));
        self.finish(cause).await;
    }

    /// FreeSWITCH's `execute_on_answer` on an outbound leg: when the callee
    /// answers, the application the variable names runs on this leg, whose
    /// media leaves the bridge meanwhile, as
    /// `{execute_on_answer='playback announce.wav'}sofia/...` plays a
    /// message to the callee alone. The originator is told of the answer
    /// first (so the call is answered, its timeout and the other forks
    /// stop), and hears silence until the app ends and the media joins. `playback FILE` is the application
    /// supported here (FILE as for `playback`: the tenant's sounds, a
    /// `tone_stream://` or a `silence_stream://`); anything else is logged
    /// and ignored. Returns the leg's end if it ended meanwhile.
    async fn execute_on_answer(&mut self) -> Option<Flow> {
        let spec = self.chan.var("execute_on_answer")?.trim().to_string();
        let (app, arg) = spec
            .split_once(char::is_whitespace)
            .map_or((spec.as_str(), ""), |(a, b)| (a, b.trim()));
        if app != "playback" || arg.is_empty() {
            tracing::warn!(uuid = %self.chan.uuid, tenant = %self.chan.tenant, execute_on_answer = %spec, "execute_on_answer supports `playback FILE`; ignored");
            return None;
        }
        let media = self.remote.control.media()?;
        self.chan.set_var("execute_on_answer_app", app);
        let flow = self.play_to_end(Arc::clone(&media), arg).await;
        if matches!(flow, Flow::Hangup(..)) {
            return Some(flow);
        }
        // Playing took the leg out of its bridge: join it back.
        media.rejoin();
        None
    }

    /// Hangup, Reporting, Destroy.
    async fn finish(mut self, cause: HangupCause) {
        if !self.remote_gone {
            self.remote.control.hangup(cause);
        }
        // The leg's media report and its times and cause, in one update.
        let mut vars = self
            .remote
            .control
            .media()
            .map(|m| m.report())
            .unwrap_or_default();
        let uepoch = |t: SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros().to_string())
                .unwrap_or_default()
        };
        vars.push(("start_uepoch".into(), uepoch(self.chan.created)));
        if let Some(a) = self.chan.answered {
            vars.push(("answer_uepoch".into(), uepoch(a)));
        }
        vars.push(("end_uepoch".into(), uepoch(SystemTime::now())));
        if self.chan.endpoint == "sofia" && self.chan.var("sip_term_status").is_none() {
            // The SIP status that ended the leg: 200 for an answered call,
            // else the cause's SIP mapping.
            let code = if self.chan.answered.is_some() {
                200
            } else {
                cause.to_sip()
            };
            vars.push(("sip_term_status".into(), code.to_string()));
        }
        vars.push(("hangup_cause".into(), cause.name().into()));
        vars.push(("hangup_cause_q850".into(), cause.code().to_string()));
        self.chan.set_vars(vars);
        self.chan.hangup_cause = Some(cause);
        self.chan.call_state = CallState::Hangup;
        self.state(ChannelState::Hangup);
        self.switch
            .events
            .publish_named(EventName::ChannelHangup, || {
                let mut ev = self.chan.event(EventName::ChannelHangup);
                ev.push_header("Hangup-Cause", cause.name());
                ev
            });
        self.state(ChannelState::Reporting);
        let now = SystemTime::now();
        let duration = now
            .duration_since(self.chan.created)
            .unwrap_or_default()
            .as_secs();
        let billsec = self
            .chan
            .answered
            .and_then(|a| now.duration_since(a).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.switch
            .events
            .publish_named(EventName::ChannelHangupComplete, || {
                let mut ev = self.chan.event(EventName::ChannelHangupComplete);
                ev.push_header("Hangup-Cause", cause.name());
                ev.push_header("variable_duration", duration.to_string());
                ev.push_header("variable_billsec", billsec.to_string());
                ev.with_variables(Arc::clone(&self.chan.variables))
            });
        self.state(ChannelState::Destroy);
        self.publish(EventName::ChannelDestroy);
        self.switch.channels.lock().remove(&self.chan.uuid);
        self.permit.take();
    }
}

/// The originate input for a leg's far-side event.
fn leg_input(leg: LegId, ev: RemoteEvent) -> Option<originate::Input> {
    Some(match ev {
        RemoteEvent::Progress => originate::Input::Progress { leg },
        RemoteEvent::EarlyMedia => originate::Input::EarlyMedia { leg },
        RemoteEvent::Answered => originate::Input::Answered { leg },
        RemoteEvent::Hangup(cause) => originate::Input::Failed { leg, cause },
        RemoteEvent::Dtmf { .. } | RemoteEvent::PlaybackDone { .. } => return None,
    })
}

/// FreeSWITCH's `DIALSTATUS` for a failed originate.
fn dialstatus(cause: HangupCause) -> &'static str {
    match cause {
        HangupCause::UserBusy => "BUSY",
        HangupCause::NoAnswer | HangupCause::NoUserResponse | HangupCause::AllottedTimeout => {
            "NOANSWER"
        }
        HangupCause::OriginatorCancel => "CANCEL",
        HangupCause::InvalidUrl | HangupCause::InvalidNumberFormat => "INVALIDARGS",
        HangupCause::CallRejected => "DONTCALL",
        other => other.name(),
    }
}

/// Expands `${name}` once, without escaping (for `set` values and
/// extensions, which are not dialstrings). Unknown names expand to nothing.
pub fn expand_plain(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                if let Some(v) = lookup(&after[..j]) {
                    out.push_str(&v);
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_expansion_is_single_pass() {
        let lookup = |n: &str| match n {
            "a" => Some("${b}".to_string()),
            "b" => Some("x".to_string()),
            _ => None,
        };
        assert_eq!(expand_plain("<${a}>", &lookup), "<${b}>");
        assert_eq!(expand_plain("${b}${nope}-${b", &lookup), "x-${b");
    }

    #[test]
    fn dialstatus_names() {
        assert_eq!(dialstatus(HangupCause::UserBusy), "BUSY");
        assert_eq!(dialstatus(HangupCause::NoAnswer), "NOANSWER");
        assert_eq!(dialstatus(HangupCause::OriginatorCancel), "CANCEL");
        assert_eq!(
            dialstatus(HangupCause::UserNotRegistered),
            "USER_NOT_REGISTERED"
        );
    }
}
