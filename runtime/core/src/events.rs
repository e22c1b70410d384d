//! The event bus: the one place where the switch says what happened.
//!
//! Every channel state change, answer, bridge, hangup, DTMF, background job
//! and dialplan load/swap/trap is published here as an [`Event`] whose names
//! and header names follow FreeSWITCH, so that the event socket (ESL
//! compatible), the CDR journal and the metrics can all follow the same
//! stream (the last two as taps, see below). This module owns the event
//! type, the names, the bus, subscription filters and the
//! delivery/overflow policy. It never formats events for the wire and never
//! touches a socket.
//!
//! # Publishing
//!
//! [`EventBus::publish`] never blocks on a consumer and never awaits. With no
//! subscribers it only assigns the next sequence number and returns. With
//! subscribers it wraps the event in one [`Arc`] (shared by every subscriber,
//! never cloned per subscriber), then under a short publish lock assigns the
//! sequence number and pushes the `Arc` into the queue of every subscriber
//! whose filter matches. Consumers are woken *after* that lock is released.
//! Because sequence assignment and fan-out happen under the same lock, every
//! subscriber sees events in strictly increasing [`Event::sequence`] order,
//! even when many threads publish at once.
//!
//! # Overflow policy
//!
//! Each subscriber owns a bounded queue (its `capacity`, fixed at
//! [`EventBus::subscribe`]). The publisher never waits for a slow subscriber:
//!
//! * when a subscriber's queue is full, the **new** event is dropped for that
//!   subscriber only, and counted (per subscriber and in
//!   [`BusStats::dropped`]);
//! * the subscriber first receives the events that were already queued, then
//!   one [`Delivery::Lost`] carrying exactly how many events it missed at that
//!   point, then newer events again; the `Lost` marker sits exactly where the
//!   gap is;
//! * other subscribers are not affected in any way.
//!
//! # Filters
//!
//! An [`EventFilter`] selects by event name (or all events), by `CUSTOM`
//! subclass and, like ESL's `filter <header> <value>`, by header values. It can
//! be replaced on a live subscription with [`Subscription::set_filter`];
//! events already queued stay queued.
//!
//! Dropping a [`Subscription`] unsubscribes it. When the last [`EventBus`]
//! handle is dropped, subscriptions drain what is queued and then
//! [`Subscription::recv`] returns `None`.
//!
//! # Taps
//!
//! A consumer that only counts or hands the event on without waiting (the
//! metrics, the CDR journal's queue) registers a [`Tap`] with
//! [`EventBus::tap`] instead: a function the publisher calls with the event,
//! under the publish lock (so taps too see events in sequence order),
//! before the event is queued for subscribers. A tap has no queue, so it
//! loses nothing and costs no task wake-up per event; in return it must
//! never block or publish. A tap that panics is logged and the event goes
//! on to the others.

use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// FreeSWITCH header names used by the switch's events.
pub mod header {
    /// `Event-Name`: the event's name (answered from [`super::Event::name`]).
    pub const EVENT_NAME: &str = "Event-Name";
    /// `Event-Subclass`: a CUSTOM event's subclass (answered from
    /// [`super::Event::subclass`]).
    pub const EVENT_SUBCLASS: &str = "Event-Subclass";
    /// `Event-Sequence`: the bus-wide sequence number, for the wire format.
    pub const EVENT_SEQUENCE: &str = "Event-Sequence";
    /// `Event-Date-Timestamp`: unix microseconds, for the wire format.
    pub const EVENT_DATE_TIMESTAMP: &str = "Event-Date-Timestamp";
    /// `Core-UUID`: the switch instance's id.
    pub const CORE_UUID: &str = "Core-UUID";
    /// `Unique-ID`: the channel's UUID.
    pub const UNIQUE_ID: &str = "Unique-ID";
    /// `Channel-Name`: e.g. `sofia/internal/1000@example.com`.
    pub const CHANNEL_NAME: &str = "Channel-Name";
    /// `Channel-State`: e.g. `CS_EXECUTE`.
    pub const CHANNEL_STATE: &str = "Channel-State";
    /// `Channel-Call-State`: e.g. `RINGING`, `ACTIVE`, `HANGUP`.
    pub const CHANNEL_CALL_STATE: &str = "Channel-Call-State";
    /// `Original-Channel-Call-State`: the call state before a
    /// CHANNEL_CALLSTATE change.
    pub const ORIGINAL_CHANNEL_CALL_STATE: &str = "Original-Channel-Call-State";
    /// `Answer-State`: `ringing`, `early`, `answered` or `hangup`.
    pub const ANSWER_STATE: &str = "Answer-State";
    /// `Call-Direction`: `inbound` or `outbound`.
    pub const CALL_DIRECTION: &str = "Call-Direction";
    /// `Caller-Unique-ID`: the caller profile's channel UUID.
    pub const CALLER_UNIQUE_ID: &str = "Caller-Unique-ID";
    /// `Caller-Caller-ID-Number`.
    pub const CALLER_CALLER_ID_NUMBER: &str = "Caller-Caller-ID-Number";
    /// `Caller-Caller-ID-Name`.
    pub const CALLER_CALLER_ID_NAME: &str = "Caller-Caller-ID-Name";
    /// `Caller-Destination-Number`.
    pub const CALLER_DESTINATION_NUMBER: &str = "Caller-Destination-Number";
    /// `Caller-Context`: the dialplan context.
    pub const CALLER_CONTEXT: &str = "Caller-Context";
    /// `Hangup-Cause`: a FreeSWITCH cause name, e.g. `NORMAL_CLEARING`.
    pub const HANGUP_CAUSE: &str = "Hangup-Cause";
    /// `Other-Leg-Unique-ID`: the bridged peer's UUID.
    pub const OTHER_LEG_UNIQUE_ID: &str = "Other-Leg-Unique-ID";
    /// `Bridge-A-Unique-ID`: the A leg of a CHANNEL_BRIDGE.
    pub const BRIDGE_A_UNIQUE_ID: &str = "Bridge-A-Unique-ID";
    /// `Bridge-B-Unique-ID`: the B leg of a CHANNEL_BRIDGE.
    pub const BRIDGE_B_UNIQUE_ID: &str = "Bridge-B-Unique-ID";
    /// `Application`: the application of CHANNEL_EXECUTE(_COMPLETE).
    pub const APPLICATION: &str = "Application";
    /// `Application-Data`: its argument string.
    pub const APPLICATION_DATA: &str = "Application-Data";
    /// `Application-Response`: its result, on CHANNEL_EXECUTE_COMPLETE.
    pub const APPLICATION_RESPONSE: &str = "Application-Response";
    /// `DTMF-Digit`.
    pub const DTMF_DIGIT: &str = "DTMF-Digit";
    /// `DTMF-Duration`: in samples, as FreeSWITCH reports it.
    pub const DTMF_DURATION: &str = "DTMF-Duration";
    /// `DTMF-Source`: `ENDPOINT` (signalling, e.g. SIP INFO) or `RTP`.
    pub const DTMF_SOURCE: &str = "DTMF-Source";
    /// `Job-UUID`: a BACKGROUND_JOB's id.
    pub const JOB_UUID: &str = "Job-UUID";
    /// `Job-Command`: the API command a BACKGROUND_JOB ran.
    pub const JOB_COMMAND: &str = "Job-Command";
    /// Prefix of channel variables: `variable_<name>`.
    pub const VARIABLE_PREFIX: &str = "variable_";
}

/// Subclasses of the switch's own CUSTOM events.
pub mod subclass {
    /// A dialplan was loaded.
    pub const DIALPLAN_LOAD: &str = "dialtone::dialplan_load";
    /// The live dialplan was swapped for a newly loaded one.
    pub const DIALPLAN_SWAP: &str = "dialtone::dialplan_swap";
    /// A dialplan guest trapped.
    pub const DIALPLAN_TRAP: &str = "dialtone::dialplan_trap";
}

macro_rules! event_names {
    ($($(#[$doc:meta])* $variant:ident => $s:literal,)*) => {
        /// An event's name, as FreeSWITCH spells it on the wire.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum EventName {
            $($(#[$doc])* $variant,)*
        }

        impl EventName {
            /// Every name, in declaration order.
            pub const ALL: &'static [EventName] = &[$(EventName::$variant,)*];

            /// The wire name, e.g. `CHANNEL_CREATE`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventName::$variant => $s,)*
                }
            }
        }
    };
}

event_names! {
    /// `CHANNEL_CREATE`: a channel exists.
    ChannelCreate => "CHANNEL_CREATE",
    /// `CHANNEL_STATE`: the channel's state machine moved.
    ChannelState => "CHANNEL_STATE",
    /// `CHANNEL_CALLSTATE`: the call state (ringing, active, ...) changed.
    ChannelCallstate => "CHANNEL_CALLSTATE",
    /// `CHANNEL_PROGRESS`: ringing (180).
    ChannelProgress => "CHANNEL_PROGRESS",
    /// `CHANNEL_PROGRESS_MEDIA`: early media (183).
    ChannelProgressMedia => "CHANNEL_PROGRESS_MEDIA",
    /// `CHANNEL_ANSWER`: the channel was answered.
    ChannelAnswer => "CHANNEL_ANSWER",
    /// `CHANNEL_EXECUTE`: an application started.
    ChannelExecute => "CHANNEL_EXECUTE",
    /// `CHANNEL_EXECUTE_COMPLETE`: an application finished.
    ChannelExecuteComplete => "CHANNEL_EXECUTE_COMPLETE",
    /// `CHANNEL_BRIDGE`: two channels were bridged.
    ChannelBridge => "CHANNEL_BRIDGE",
    /// `CHANNEL_UNBRIDGE`: a bridge ended.
    ChannelUnbridge => "CHANNEL_UNBRIDGE",
    /// `CHANNEL_ORIGINATE`: an outbound leg was originated.
    ChannelOriginate => "CHANNEL_ORIGINATE",
    /// `CHANNEL_HANGUP`: the channel is hanging up.
    ChannelHangup => "CHANNEL_HANGUP",
    /// `CHANNEL_HANGUP_COMPLETE`: hangup finished; carries the CDR variables.
    ChannelHangupComplete => "CHANNEL_HANGUP_COMPLETE",
    /// `CHANNEL_DESTROY`: the channel is gone.
    ChannelDestroy => "CHANNEL_DESTROY",
    /// `DTMF`: a digit was received.
    Dtmf => "DTMF",
    /// `BACKGROUND_JOB`: a `bgapi` command finished.
    BackgroundJob => "BACKGROUND_JOB",
    /// `HEARTBEAT`: the switch's periodic status.
    Heartbeat => "HEARTBEAT",
    /// `CUSTOM`: an event identified by its [`Event::subclass`].
    Custom => "CUSTOM",
    /// `LOG`: a log line.
    Log => "LOG",
}

impl EventName {
    /// Parses a wire name, ignoring ASCII case. ESL's pseudo-name `ALL` is
    /// not an event name (see [`EventFilter::all`]) and gives `None`.
    pub fn parse(s: &str) -> Option<EventName> {
        let s = s.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|n| n.as_str().eq_ignore_ascii_case(s))
    }

    fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event name {0:?}")]
pub struct UnknownEventName(pub String);

impl FromStr for EventName {
    type Err = UnknownEventName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventName::parse(s).ok_or_else(|| UnknownEventName(s.to_owned()))
    }
}

/// One event. Built by the publisher, shared read-only (as `Arc<Event>`) by
/// every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's name.
    pub name: EventName,
    /// For [`EventName::Custom`]: the subclass, e.g.
    /// `dialtone::dialplan_trap`.
    pub subclass: Option<String>,
    /// When the event was created, in microseconds since the unix epoch.
    pub timestamp_us: u64,
    /// Bus-wide, strictly increasing number assigned by
    /// [`EventBus::publish`] (0 until published).
    pub sequence: u64,
    /// Headers in insertion order; names follow FreeSWITCH (see [`header`]).
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The event's body, e.g. a BACKGROUND_JOB's result (sent after the
    /// headers with its `Content-Length`, as FreeSWITCH does).
    pub body: Option<String>,
    /// A channel's variables, shared with the channel rather than copied:
    /// they read and serialize as `variable_<name>` headers following
    /// [`Event::headers`] (see [`Event::each_header`]).
    pub variables: Option<Arc<Vec<(String, String)>>>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Event {
    /// A new event stamped with the current time, without headers.
    pub fn new(name: EventName) -> Event {
        Event {
            name,
            subclass: None,
            timestamp_us: now_us(),
            sequence: 0,
            headers: Vec::new(),
            body: None,
            variables: None,
        }
    }

    /// Carries these channel variables (builder style; see
    /// [`Event::variables`]).
    pub fn with_variables(mut self, variables: Arc<Vec<(String, String)>>) -> Event {
        self.variables = Some(variables);
        self
    }

    /// Every header in order, the shared variables last as
    /// `variable_<name>`, through `put(name, value)`.
    pub fn each_header(&self, mut put: impl FnMut(&str, &str)) {
        for (k, v) in &self.headers {
            put(k, v);
        }
        if let Some(vars) = &self.variables {
            let mut name = String::with_capacity(64);
            for (k, v) in vars.iter() {
                name.clear();
                name.push_str(header::VARIABLE_PREFIX);
                name.push_str(k);
                put(&name, v);
            }
        }
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<String>) -> Event {
        self.body = Some(body.into());
        self
    }

    /// A new `CUSTOM` event with this subclass.
    pub fn custom(subclass: impl Into<String>) -> Event {
        Event {
            subclass: Some(subclass.into()),
            ..Event::new(EventName::Custom)
        }
    }

    /// Adds a header (builder style). Header names may repeat, as in
    /// FreeSWITCH; [`Event::get`] returns the first.
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Event {
        self.push_header(name, value);
        self
    }

    /// Adds a channel variable as the header `variable_<name>` (builder
    /// style).
    pub fn variable(self, name: &str, value: impl Into<Cow<'static, str>>) -> Event {
        let key = format!("{}{name}", header::VARIABLE_PREFIX);
        self.header(key, value)
    }

    /// Appends a header.
    pub fn push_header(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) {
        self.headers.push((name.into(), value.into()));
    }

    /// Replaces the value of the first header with this name (ASCII
    /// case-insensitive), or appends the header if there is none.
    pub fn set_header(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) {
        let name = name.into();
        let value = value.into();
        match self
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&name))
        {
            Some((_, v)) => *v = value,
            None => self.headers.push((name, value)),
        }
    }

    /// The first value of a header, looked up ignoring ASCII case as
    /// FreeSWITCH does. `Event-Name` and `Event-Subclass` are answered from
    /// [`Event::name`] and [`Event::subclass`].
    pub fn get(&self, name: &str) -> Option<&str> {
        if name.eq_ignore_ascii_case(header::EVENT_NAME) {
            return Some(self.name.as_str());
        }
        if name.eq_ignore_ascii_case(header::EVENT_SUBCLASS) {
            if let Some(s) = &self.subclass {
                return Some(s);
            }
        }
        if let Some(v) = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            return Some(&v.1);
        }
        let p = header::VARIABLE_PREFIX;
        match name.get(..p.len()) {
            Some(head) if head.eq_ignore_ascii_case(p) => self.shared_variable(&name[p.len()..]),
            _ => None,
        }
    }

    /// The value of channel variable `name` (header `variable_<name>`).
    pub fn get_variable(&self, name: &str) -> Option<&str> {
        let p = header::VARIABLE_PREFIX;
        self.headers
            .iter()
            .find(|(k, _)| {
                k.len() == p.len() + name.len()
                    && k[..p.len()].eq_ignore_ascii_case(p)
                    && k[p.len()..].eq_ignore_ascii_case(name)
            })
            .map(|(_, v)| &**v)
            .or_else(|| self.shared_variable(name))
    }

    fn shared_variable(&self, name: &str) -> Option<&str> {
        self.variables
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Which events a subscriber wants.
///
/// The name part passes an event when the filter is [`EventFilter::all`],
/// when the event's name was added with [`EventFilter::with_name`], or when
/// it is a `CUSTOM` event whose subclass was added with
/// [`EventFilter::with_subclass`]. Adding the name `CUSTOM` itself passes
/// every CUSTOM event.
///
/// Header filters work like ESL's `filter <header> <value>`: when there are
/// any, an event must also carry at least one of them (header name and
/// value compared ignoring ASCII case, `Event-Name`/`Event-Subclass`
/// included). With none, the name part alone decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    all: bool,
    names: u32,
    subclasses: BTreeSet<String>,
    headers: Vec<(String, String)>,
}

impl EventFilter {
    /// Every event (ESL `event plain ALL`).
    pub fn all() -> EventFilter {
        EventFilter {
            all: true,
            ..EventFilter::default()
        }
    }

    /// No events (ESL `noevents`); add names or subclasses to it.
    pub fn none() -> EventFilter {
        EventFilter::default()
    }

    /// These event names.
    pub fn names(names: impl IntoIterator<Item = EventName>) -> EventFilter {
        names
            .into_iter()
            .fold(EventFilter::none(), EventFilter::with_name)
    }

    /// Adds an event name.
    pub fn with_name(mut self, name: EventName) -> EventFilter {
        self.add_name(name);
        self
    }

    /// Adds a CUSTOM subclass, e.g. `dialtone::dialplan_trap`.
    pub fn with_subclass(mut self, subclass: impl Into<String>) -> EventFilter {
        self.add_subclass(subclass);
        self
    }

    /// Adds a header filter (ESL `filter <name> <value>`).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> EventFilter {
        self.add_header(name, value);
        self
    }

    /// Adds an event name.
    pub fn add_name(&mut self, name: EventName) {
        self.names |= name.bit();
    }

    /// Removes an event name (ESL `nixevent`); this also turns off
    /// [`EventFilter::all`].
    pub fn remove_name(&mut self, name: EventName) {
        if self.all {
            self.all = false;
            self.names = EventName::ALL.iter().fold(0, |m, n| m | n.bit());
        }
        self.names &= !name.bit();
    }

    /// Adds a CUSTOM subclass.
    pub fn add_subclass(&mut self, subclass: impl Into<String>) {
        self.subclasses.insert(subclass.into());
    }

    /// Removes a CUSTOM subclass; returns whether it was there.
    pub fn remove_subclass(&mut self, subclass: &str) -> bool {
        self.subclasses.remove(subclass)
    }

    /// Adds a header filter; an identical one is not added twice.
    pub fn add_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let pair = (name.into(), value.into());
        if !self.headers.contains(&pair) {
            self.headers.push(pair);
        }
    }

    /// Removes header filters on `name` (ignoring ASCII case), only the one
    /// with this value when `value` is given (ESL `filter delete`). Returns
    /// how many were removed.
    pub fn remove_header(&mut self, name: &str, value: Option<&str>) -> usize {
        let before = self.headers.len();
        self.headers.retain(|(k, v)| {
            !(k.eq_ignore_ascii_case(name) && value.is_none_or(|want| v.eq_ignore_ascii_case(want)))
        });
        before - self.headers.len()
    }

    /// Whether this filter passes every event name.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether this event name passes (ignoring subclasses and headers).
    pub fn has_name(&self, name: EventName) -> bool {
        self.all || self.names & name.bit() != 0
    }

    /// The CUSTOM subclasses added.
    pub fn subclasses(&self) -> impl Iterator<Item = &str> {
        self.subclasses.iter().map(String::as_str)
    }

    /// The header filters, as `(name, value)`.
    pub fn header_filters(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &Event) -> bool {
        let name_ok = self.has_name(event.name)
            || (event.name == EventName::Custom
                && event
                    .subclass
                    .as_deref()
                    .is_some_and(|s| self.subclasses.contains(s)));
        name_ok
            && (self.headers.is_empty()
                || self.headers.iter().any(|(k, v)| {
                    event
                        .get(k)
                        .is_some_and(|have| have.eq_ignore_ascii_case(v))
                }))
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event.
    Event(Arc<Event>),
    /// `count` events were dropped here because the subscriber's queue was
    /// full; the next delivery is the first event published after them.
    Lost {
        /// How many events were dropped at this point.
        count: u64,
    },
}

/// Why [`Subscription::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is queued right now.
    #[error("no event queued")]
    Empty,
    /// Nothing is queued and the bus is gone.
    #[error("event bus closed")]
    Closed,
}

/// Counters of an [`EventBus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusStats {
    /// Events published since the bus was created.
    pub published: u64,
    /// Live subscriptions and taps.
    pub subscribers: usize,
    /// Deliveries dropped on full queues, summed over all subscribers.
    pub dropped: u64,
}

struct Slot {
    /// Events dropped for this subscriber just before `event`.
    lost_before: u64,
    event: Arc<Event>,
}

struct Queue {
    slots: VecDeque<Slot>,
    /// Events dropped after the last queued slot.
    pending_lost: u64,
    lost_total: u64,
    closed: bool,
}

/// A tap's function (see [`EventBus::tap`]).
type TapFn = Box<dyn Fn(&Event) + Send + Sync>;

struct SubShared {
    id: u64,
    /// A tap's function: called by the publisher; the queue is unused.
    tap: Option<TapFn>,
    capacity: usize,
    filter: ArcSwap<EventFilter>,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Set by a publisher that pushed into an empty queue; whoever clears
    /// it wakes the consumer.
    wake: AtomicBool,
}

type SubList = Vec<Arc<SubShared>>;

struct BusInner {
    /// The last sequence number handed out (= events published).
    sequence: AtomicU64,
    dropped: AtomicU64,
    next_id: AtomicU64,
    subscribers: ArcSwap<SubList>,
    /// Serialises sequence assignment with fan-out (keeps per-subscriber
    /// order equal to sequence order).
    publish_lock: Mutex<()>,
    /// Serialises changes to `subscribers`.
    subscribe_lock: Mutex<()>,
}

impl Drop for BusInner {
    fn drop(&mut self) {
        for sub in self.subscribers.load().iter() {
            sub.queue.lock().closed = true;
            sub.notify.notify_one();
        }
    }
}

/// The switch's event bus. Cheap to clone; clones publish to the same
/// subscribers.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("stats", &self.stats())
            .finish()
    }
}

impl EventBus {
    /// A bus without subscribers.
    pub fn new() -> EventBus {
        EventBus {
            inner: Arc::new(BusInner {
                sequence: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                subscribers: ArcSwap::from_pointee(Vec::new()),
                publish_lock: Mutex::new(()),
                subscribe_lock: Mutex::new(()),
            }),
        }
    }

    /// Like [`EventBus::publish`], but builds the event only when someone
    /// subscribes: with no subscribers it assigns the next sequence number
    /// and returns, without the allocations of an event's headers. The
    /// switch publishes every channel's state changes through this.
    pub fn publish_with(&self, build: impl FnOnce() -> Event) -> u64 {
        let inner = &*self.inner;
        if inner.subscribers.load().is_empty() {
            return inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        }
        self.publish(build())
    }

    /// Like [`EventBus::publish_with`], but builds the event only if some
    /// subscriber's filter can take an event named `name` (a CUSTOM event
    /// needs a subscriber to CUSTOM or to some subclass). The channel
    /// events of a busy switch are built only for the subscribers that
    /// want them: the CDR journal and the metrics ask for a few names,
    /// an event socket client for ALL. Returns 0 when nothing was
    /// published.
    pub fn publish_named(&self, name: EventName, build: impl FnOnce() -> Event) -> u64 {
        let inner = &*self.inner;
        let subs = inner.subscribers.load();
        if subs.is_empty() {
            return inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        }
        let wanted = subs.iter().any(|sub| {
            let f = sub.filter.load();
            f.has_name(name) || (name == EventName::Custom && f.subclasses().next().is_some())
        });
        if !wanted {
            // Still numbered: a subscriber to ALL sees no gap in
            // Event-Sequence for events nobody wanted (there are none:
            // ALL wants every name), and sequence numbers stay unique.
            return inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        }
        drop(subs);
        self.publish(build())
    }

    /// Publishes an event and returns the sequence number it was given
    /// (also stored in the delivered [`Event::sequence`]; the first event is
    /// 1). Never blocks on a consumer and never awaits: a subscriber whose
    /// queue is full loses this event (see the module docs).
    pub fn publish(&self, mut event: Event) -> u64 {
        let inner = &*self.inner;
        let subs = inner.subscribers.load();
        if subs.is_empty() {
            return inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        }
        let mut woke_any = false;
        let seq;
        {
            let _order = inner.publish_lock.lock();
            seq = inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            event.sequence = seq;
            for sub in subs.iter() {
                if let Some(tap) = &sub.tap {
                    if sub.filter.load().matches(&event) {
                        call_tap(tap, &event);
                    }
                }
            }
            // Wrapped only once a queue takes it.
            let mut shared: Option<Arc<Event>> = None;
            let mut owned = Some(event);
            for sub in subs.iter() {
                if sub.tap.is_some() {
                    continue;
                }
                let ev = shared
                    .as_deref()
                    .or(owned.as_ref())
                    .expect("owned or shared");
                if !sub.filter.load().matches(ev) {
                    continue;
                }
                let mut q = sub.queue.lock();
                if q.slots.len() >= sub.capacity {
                    q.pending_lost += 1;
                    q.lost_total += 1;
                    drop(q);
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let idle = q.slots.is_empty() && q.pending_lost == 0;
                let lost_before = std::mem::take(&mut q.pending_lost);
                let event =
                    shared.get_or_insert_with(|| Arc::new(owned.take().expect("not yet shared")));
                q.slots.push_back(Slot {
                    lost_before,
                    event: Arc::clone(event),
                });
                drop(q);
                if idle {
                    sub.wake.store(true, Ordering::Release);
                    woke_any = true;
                }
            }
        }
        if woke_any {
            for sub in subs.iter() {
                if sub.wake.load(Ordering::Relaxed) && sub.wake.swap(false, Ordering::AcqRel) {
                    sub.notify.notify_one();
                }
            }
        }
        seq
    }

    /// Registers a tap: `f` is called with every event published from now
    /// on that `filter` matches, by the publisher, in sequence order, while
    /// the bus's publish lock is held (see the module docs). `f` must not
    /// block, wait on a lock that a publisher may hold, or publish. The
    /// tap is removed when the returned [`Tap`] is dropped, unless it is
    /// [`Tap::detach`]ed.
    pub fn tap(&self, filter: EventFilter, f: impl Fn(&Event) + Send + Sync + 'static) -> Tap {
        let shared = self.add(filter, 1, Some(Box::new(f)));
        Tap {
            bus: Arc::downgrade(&self.inner),
            shared: Some(shared),
        }
    }

    fn add(&self, filter: EventFilter, capacity: usize, tap: Option<TapFn>) -> Arc<SubShared> {
        // A tap never queues.
        let slots = if tap.is_some() { 0 } else { capacity.min(1024) };
        let shared = Arc::new(SubShared {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            tap,
            capacity,
            filter: ArcSwap::from_pointee(filter),
            queue: Mutex::new(Queue {
                slots: VecDeque::with_capacity(slots),
                pending_lost: 0,
                lost_total: 0,
                closed: false,
            }),
            notify: Notify::new(),
            wake: AtomicBool::new(false),
        });
        let _w = self.inner.subscribe_lock.lock();
        let mut list: SubList = (**self.inner.subscribers.load()).clone();
        list.push(Arc::clone(&shared));
        self.inner.subscribers.store(Arc::new(list));
        shared
    }

    /// Subscribes with a filter and a queue of `capacity` events (at least
    /// 1). The subscription sees events published after this call.
    pub fn subscribe(&self, filter: EventFilter, capacity: usize) -> Subscription {
        let shared = self.add(filter, capacity.max(1), None);
        Subscription {
            bus: Arc::downgrade(&self.inner),
            shared,
        }
    }

    /// Current counters.
    pub fn stats(&self) -> BusStats {
        BusStats {
            published: self.inner.sequence.load(Ordering::Relaxed),
            subscribers: self.inner.subscribers.load().len(),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }
}

/// One subscriber's end of the bus. Dropping it unsubscribes.
pub struct Subscription {
    bus: Weak<BusInner>,
    shared: Arc<SubShared>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.shared.id)
            .field("capacity", &self.shared.capacity)
            .field("queued", &self.len())
            .finish()
    }
}

impl Subscription {
    /// Bus-unique id of this subscription.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The queue's capacity in events.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Events queued now (not counting a pending [`Delivery::Lost`]).
    pub fn len(&self) -> usize {
        self.shared.queue.lock().slots.len()
    }

    /// Whether nothing at all (event or loss report) is waiting.
    pub fn is_empty(&self) -> bool {
        let q = self.shared.queue.lock();
        q.slots.is_empty() && q.pending_lost == 0
    }

    /// Events this subscriber has lost to overflow, in total.
    pub fn lost_total(&self) -> u64 {
        self.shared.queue.lock().lost_total
    }

    /// The current filter.
    pub fn filter(&self) -> Arc<EventFilter> {
        self.shared.filter.load_full()
    }

    /// Replaces the filter. It applies to events published from now on;
    /// events already queued are still delivered.
    pub fn set_filter(&self, filter: EventFilter) {
        self.shared.filter.store(Arc::new(filter));
    }

    /// Changes the filter in place (e.g. ESL `nixevent`, `filter delete`).
    pub fn update_filter(&self, f: impl FnOnce(&mut EventFilter)) {
        let mut filter = (*self.shared.filter.load_full()).clone();
        f(&mut filter);
        self.set_filter(filter);
    }

    /// The next delivery if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<Delivery, TryRecvError> {
        let mut q = self.shared.queue.lock();
        if let Some(front) = q.slots.front_mut() {
            if front.lost_before > 0 {
                let count = std::mem::take(&mut front.lost_before);
                return Ok(Delivery::Lost { count });
            }
            let slot = q.slots.pop_front().expect("front exists");
            return Ok(Delivery::Event(slot.event));
        }
        if q.pending_lost > 0 {
            let count = std::mem::take(&mut q.pending_lost);
            return Ok(Delivery::Lost { count });
        }
        if q.closed {
            Err(TryRecvError::Closed)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Waits for the next delivery. Returns `None` once the bus is gone and
    /// everything queued was received. Cancel safe.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            match self.try_recv() {
                Ok(d) => return Some(d),
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => self.shared.notify.notified().await,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        remove(&self.bus, &self.shared);
    }
}

/// Takes `shared` out of the bus's list, if the bus is still there.
fn remove(bus: &Weak<BusInner>, shared: &Arc<SubShared>) {
    let Some(bus) = bus.upgrade() else {
        return;
    };
    let _w = bus.subscribe_lock.lock();
    let current = bus.subscribers.load();
    let list: SubList = current
        .iter()
        .filter(|s| !Arc::ptr_eq(s, shared))
        .cloned()
        .collect();
    bus.subscribers.store(Arc::new(list));
}

/// Calls a tap, containing a panic (logged; the publisher goes on).
fn call_tap(tap: &TapFn, event: &Event) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tap(event)));
    if r.is_err() {
        tracing::error!(event = event.name.as_str(), "an event tap panicked");
    }
}

/// A tap on the bus ([`EventBus::tap`]). Dropping it removes the tap.
#[must_use = "dropping a Tap removes it; call detach() to keep it for the bus's life"]
pub struct Tap {
    bus: Weak<BusInner>,
    shared: Option<Arc<SubShared>>,
}

impl Tap {
    /// Keeps the tap for as long as the bus lives.
    pub fn detach(mut self) {
        self.shared = None;
    }
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("id", &self.shared.as_ref().map(|s| s.id))
            .finish()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            remove(&self.bus, shared);
        }
    }
}
