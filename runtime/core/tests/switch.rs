//! The core end to end with pseudo endpoints: calls enter, routing is asked,
//! actions run, B-legs are created and bridged, everything is torn down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use dialtone_core::directory::{Directory, TenantDirectory, User};
use dialtone_core::endpoint::{ChannelMedia, EndpointRegistry, Remote, RemoteControl, RemoteEvent};
use dialtone_core::events::{Delivery, EventBus, EventFilter, EventName, Subscription};
use dialtone_core::limits::{Admission, LimitConfig};
use dialtone_core::pseudo::{ErrorEndpoint, LoopbackEndpoint, NullEndpoint};
use dialtone_core::registrations::Registrations;
use dialtone_core::routing::{
    Action, BoxFuture, ChannelSnapshot, CollectSpec, Dialplan, Direction, HelperError,
    MessageDecision, OutboundDecision, OutboundRequest, RouteFailure, TextMessage,
};
use dialtone_core::switch::{InboundSpec, Switch, SwitchSettings};
use dialtone_core::HangupCause;

type RouteFn = dyn Fn(&ChannelSnapshot) -> Vec<Action> + Send + Sync;

struct FakeDialplan {
    route: Box<RouteFn>,
    outbound: Mutex<Vec<String>>,
    /// Whether the dialplan has an outbound hook.
    hook: std::sync::atomic::AtomicBool,
}

impl Dialplan for FakeDialplan {
    fn wants_outbound(&self, _tenant: &str) -> bool {
        self.hook.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn route(&self, c: ChannelSnapshot) -> BoxFuture<'_, Result<Vec<Action>, RouteFailure>> {
        let a = (self.route)(&c);
        Box::pin(async move { Ok(a) })
    }
    fn route_outbound(
        &self,
        r: OutboundRequest,
    ) -> BoxFuture<'_, Result<OutboundDecision, RouteFailure>> {
        self.outbound
            .lock()
            .push(format!("{}/{}", r.channel.endpoint, r.target));
        let d = if r.target == "refuse-me" {
            OutboundDecision::Refuse {
                cause: HangupCause::OutgoingCallBarred,
            }
        } else {
            OutboundDecision::Accept {
                variables: vec![("hooked".into(), "yes".into())],
            }
        };
        Box::pin(async move { Ok(d) })
    }
    fn route_message(
        &self,
        _m: TextMessage,
    ) -> BoxFuture<'_, Result<MessageDecision, RouteFailure>> {
        Box::pin(async { Ok(MessageDecision::Drop) })
    }
    fn call_helper(
        &self,
        _t: &str,
        name: &str,
        args: &str,
    ) -> BoxFuture<'_, Result<String, HelperError>> {
        let out = match name {
            "echo_helper" => Ok(args.to_string()),
            // A helper the host could not run: the guest pool is full.
            "busy_helper" => Err(HelperError {
                cause: HangupCause::SwitchCongestion,
                message: "guest invocation limit".into(),
            }),
            _ => Err(format!("no helper {name}").into()),
        };
        Box::pin(async move { out })
    }
}

/// What a test phone was told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Told {
    Answer,
    PreAnswer,
    Ring,
    Hangup(HangupCause),
    Echo,
    Play(u64),
    Stop,
    Record(String),
}

struct PhoneControl(Arc<Mutex<Vec<Told>>>, Option<Arc<FakeMedia>>);

/// A phone's media as the core sees it: records what it was told.
struct FakeMedia {
    told: Arc<Mutex<Vec<Told>>>,
    tokens: std::sync::atomic::AtomicU64,
}

impl ChannelMedia for FakeMedia {
    fn echo(&self) -> bool {
        self.told.lock().push(Told::Echo);
        true
    }
    fn play(&self, _prompt: Arc<dialtone_media::Prompt>) -> Option<u64> {
        let t = self
            .tokens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.told.lock().push(Told::Play(t));
        Some(t)
    }
    fn stop(&self) {
        self.told.lock().push(Told::Stop);
    }
    fn record(
        &self,
        path: &std::path::Path,
        _legs: dialtone_core::routing::RecordLegs,
        _limit: Option<Duration>,
    ) -> Result<(), String> {
        self.told
            .lock()
            .push(Told::Record(path.display().to_string()));
        Ok(())
    }
}

impl RemoteControl for PhoneControl {
    fn media(&self) -> Option<Arc<dyn ChannelMedia>> {
        self.1.clone().map(|m| m as Arc<dyn ChannelMedia>)
    }
    fn answer(&mut self) {
        self.0.lock().push(Told::Answer);
    }
    fn pre_answer(&mut self) {
        self.0.lock().push(Told::PreAnswer);
    }
    fn ring_ready(&mut self) {
        self.0.lock().push(Told::Ring);
    }
    fn hangup(&mut self, cause: HangupCause) {
        self.0.lock().push(Told::Hangup(cause));
    }
}

struct Phone {
    told: Arc<Mutex<Vec<Told>>>,
    tx: mpsc::Sender<RemoteEvent>,
    uuid: String,
}

impl Phone {
    /// The far side hangs up normally.
    async fn hang_up(&self) {
        self.tx
            .send(RemoteEvent::Hangup(HangupCause::NormalClearing))
            .await
            .unwrap();
    }

    async fn wait_for(&self, what: Told) {
        for _ in 0..400 {
            if self.told.lock().contains(&what) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("phone never told {what:?}; told {:?}", self.told.lock());
    }
    async fn hangup_cause(&self) -> HangupCause {
        for _ in 0..400 {
            if let Some(Told::Hangup(c)) = self
                .told
                .lock()
                .iter()
                .find(|t| matches!(t, Told::Hangup(_)))
            {
                return *c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("phone never hung up; told {:?}", self.told.lock());
    }
}

struct Bench {
    switch: Arc<Switch>,
    dialplan: Arc<FakeDialplan>,
    events: EventBus,
}

fn user(id: &str, dial_string: Option<&str>) -> User {
    let mut u = User::new(id);
    if let Some(d) = dial_string {
        u.params.push(("dial-string".into(), d.into()));
    }
    u
}

fn bench_with(
    limits: LimitConfig,
    route: impl Fn(&ChannelSnapshot) -> Vec<Action> + Send + Sync + 'static,
) -> Bench {
    let users = vec![
        user("1000", Some("null/1000")),
        user("1001", Some("user/1002@a.test")),
        user("1002", Some("user/1001@a.test")),
        user("1003", Some("user/1003@a.test")),
        user("1004", Some("error/USER_BUSY")),
        user("1005", None),
        user(
            "1006",
            Some("{ignore_early_media=true}error/USER_BUSY,null/1006"),
        ),
    ];
    let mut groups = BTreeMap::new();
    groups.insert(
        "sales".to_string(),
        vec!["1004".to_string(), "1000".to_string()],
    );
    let a = TenantDirectory::new(
        "a.test",
        vec![],
        users,
        groups,
        "${echo_helper(error/USER_NOT_REGISTERED)}",
    )
    .unwrap();
    let b = TenantDirectory::new(
        "b.test",
        vec![],
        vec![user("1000", Some("null/b"))],
        BTreeMap::new(),
        "error/USER_NOT_REGISTERED",
    )
    .unwrap();
    let directory = Arc::new(ArcSwap::from_pointee(Directory::new([a, b]).unwrap()));
    let dialplan = Arc::new(FakeDialplan {
        route: Box::new(route),
        outbound: Mutex::new(vec![]),
        hook: true.into(),
    });
    let mut endpoints = EndpointRegistry::new();
    endpoints.register(Arc::new(ErrorEndpoint));
    endpoints.register(Arc::new(NullEndpoint));
    endpoints.register(Arc::new(LoopbackEndpoint));
    let events = EventBus::new();
    let switch = Switch::new(
        SwitchSettings {
            max_recursion: 4,
            max_transfers: 3,
            default_call_timeout: Duration::from_secs(2),
            ..SwitchSettings::default()
        },
        dialplan.clone(),
        endpoints,
        events.clone(),
        Arc::new(Admission::new(limits)),
        directory,
        Arc::new(Registrations::new()),
    );
    Bench {
        switch,
        dialplan,
        events,
    }
}

fn bench(route: impl Fn(&ChannelSnapshot) -> Vec<Action> + Send + Sync + 'static) -> Bench {
    bench_with(LimitConfig::UNLIMITED, route)
}

fn bridge(ds: &str) -> Action {
    Action::Bridge {
        dialstring: ds.into(),
    }
}

impl Bench {
    fn call(&self, context: &str, dest: &str) -> Phone {
        self.try_call(context, dest).expect("admitted")
    }

    /// A call from a phone that carries media.
    fn call_with_media(&self, context: &str, dest: &str) -> Phone {
        self.try_call_media(context, dest, true).expect("admitted")
    }

    fn try_call(&self, context: &str, dest: &str) -> Result<Phone, HangupCause> {
        self.try_call_media(context, dest, false)
    }

    fn try_call_media(&self, context: &str, dest: &str, media: bool) -> Result<Phone, HangupCause> {
        let told = Arc::new(Mutex::new(Vec::new()));
        let fake = media.then(|| {
            Arc::new(FakeMedia {
                told: told.clone(),
                tokens: Default::default(),
            })
        });
        let (tx, rx) = mpsc::channel(8);
        let spec = InboundSpec {
            endpoint: "test".into(),
            profile: String::new(),
            name: format!("test/{dest}"),
            tenant: "a.test".into(),
            context: context.into(),
            destination: dest.into(),
            caller_id_name: "Alice".into(),
            caller_id_number: "1009".into(),
            network_addr: "127.0.0.1".into(),
            variables: vec![],
            depth: 0,
            direction: Direction::Inbound,
        };
        let uuid = self
            .switch
            .inbound(
                spec,
                Remote {
                    events: rx,
                    control: Box::new(PhoneControl(told.clone(), fake)),
                },
            )
            .map_err(|o| o.cause())?;
        Ok(Phone { told, tx, uuid })
    }

    async fn idle(&self) {
        for _ in 0..400 {
            if self.switch.channel_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("channels left: {}", self.switch.channel_count());
    }
}

fn drain(sub: &mut Subscription) -> Vec<(EventName, String)> {
    let mut v = Vec::new();
    while let Ok(d) = sub.try_recv() {
        if let Delivery::Event(e) = d {
            v.push((e.name, e.get("Unique-ID").unwrap_or_default().to_string()));
        }
    }
    v
}

#[tokio::test]
async fn user_leg_is_bridged_and_torn_down() {
    let b = bench(|c| vec![bridge(&format!("user/{}@a.test", c.destination))]);
    let mut sub = b.events.subscribe(EventFilter::all(), 1000);
    let phone = b.call("default", "1000");
    phone.wait_for(Told::Answer).await;
    assert_eq!(b.switch.channel_count(), 2);
    phone.hang_up().await;
    b.idle().await;
    let ev = drain(&mut sub);
    let count = |n: EventName| ev.iter().filter(|(e, _)| *e == n).count();
    assert_eq!(count(EventName::ChannelCreate), 2);
    // `status` counts without the bus: as many as CHANNEL_CREATE said,
    // and both were alive at once.
    assert_eq!(b.switch.channels_created(), 2);
    assert_eq!(b.switch.channels_peak(), 2);
    assert_eq!(count(EventName::ChannelAnswer), 2);
    assert_eq!(count(EventName::ChannelBridge), 1);
    assert_eq!(count(EventName::ChannelUnbridge), 1);
    assert_eq!(count(EventName::ChannelHangup), 2);
    assert_eq!(count(EventName::ChannelHangupComplete), 2);
    assert_eq!(count(EventName::ChannelDestroy), 2);
    // Every state change of the A-leg was published, in order.
    let a_states: Vec<_> = ev
        .iter()
        .filter(|(n, u)| *n == EventName::ChannelState && *u == phone.uuid)
        .collect();
    assert_eq!(
        a_states.len(),
        7,
        "Init Routing Execute ExchangeMedia Hangup Reporting Destroy"
    );
    // The outbound hook saw the null leg, after user/ expansion.
    assert_eq!(b.dialplan.outbound.lock().as_slice(), ["null/1000"]);
}

#[tokio::test]
async fn without_an_outbound_hook_legs_are_created_unasked() {
    let b = bench(|_| vec![bridge("null/refuse-me")]);
    // With the hook, the leg is refused.
    assert_eq!(
        b.call("default", "1").hangup_cause().await,
        HangupCause::OutgoingCallBarred
    );
    assert_eq!(b.dialplan.outbound.lock().len(), 1);
    // A dialplan without one is not asked, and the leg is created as the
    // dialstring says.
    b.dialplan
        .hook
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let phone = b.call("default", "2");
    phone.wait_for(Told::Answer).await;
    phone.hang_up().await;
    assert_eq!(b.dialplan.outbound.lock().len(), 1);
}

#[tokio::test]
async fn dtmf_from_the_far_side_is_published() {
    let b = bench(|c| vec![bridge(&format!("user/{}@a.test", c.destination))]);
    let mut sub = b.events.subscribe(EventFilter::all(), 1000);
    let phone = b.call("default", "1000");
    phone.wait_for(Told::Answer).await;
    for (digit, duration_ms) in [('5', 160), ('#', 250)] {
        phone
            .tx
            .send(RemoteEvent::Dtmf {
                digit,
                duration_ms,
                source: "ENDPOINT",
            })
            .await
            .unwrap();
    }
    // The bridge goes on: DTMF is not a hangup.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.switch.channel_count(), 2);
    phone.hang_up().await;
    b.idle().await;
    let mut dtmf = Vec::new();
    while let Ok(d) = sub.try_recv() {
        if let Delivery::Event(e) = d {
            if e.name == EventName::Dtmf {
                dtmf.push((
                    e.get("Unique-ID").unwrap_or_default().to_string(),
                    e.get("DTMF-Digit").unwrap_or_default().to_string(),
                    e.get("DTMF-Duration").unwrap_or_default().to_string(),
                    e.get("DTMF-Source").unwrap_or_default().to_string(),
                ));
            }
        }
    }
    let u = phone.uuid.clone();
    assert_eq!(
        dtmf,
        [
            (u.clone(), "5".into(), "1280".into(), "ENDPOINT".into()),
            (u, "#".into(), "2000".into(), "ENDPOINT".into()),
        ]
    );
}

#[tokio::test]
async fn failure_causes_and_failover() {
    let b = bench(|c| match c.destination.as_str() {
        "busy" => vec![bridge("error/USER_BUSY")],
        "failover" => vec![bridge("error/USER_BUSY|error/CALL_REJECTED|null/x")],
        "continue" => vec![
            Action::Set {
                name: "continue_on_fail".into(),
                value: "USER_BUSY".into(),
            },
            bridge("error/USER_BUSY"),
            Action::Hangup {
                cause: HangupCause::NormalUnspecified,
            },
        ],
        "noanswer" => vec![
            bridge("error/NO_ANSWER"),
            Action::Hangup {
                cause: HangupCause::NumberChanged,
            },
        ],
        "refused" => vec![bridge("null/refuse-me")],
        "unknown" => vec![bridge("nosuchendpoint/x")],
        "parse" => vec![bridge("sofia/a,[x=1")],
        _ => vec![],
    });
    assert_eq!(
        b.call("default", "busy").hangup_cause().await,
        HangupCause::UserBusy
    );
    let p = b.call("default", "failover");
    p.wait_for(Told::Answer).await;
    p.hang_up().await;
    assert_eq!(
        b.call("default", "continue").hangup_cause().await,
        HangupCause::NormalUnspecified
    );
    assert_eq!(
        b.call("default", "noanswer").hangup_cause().await,
        HangupCause::NumberChanged
    );
    assert_eq!(
        b.call("default", "refused").hangup_cause().await,
        HangupCause::OutgoingCallBarred
    );
    assert_eq!(
        b.call("default", "unknown").hangup_cause().await,
        HangupCause::ChanNotImplemented
    );
    assert_eq!(
        b.call("default", "parse").hangup_cause().await,
        HangupCause::DestinationOutOfOrder
    );
    assert_eq!(
        b.call("default", "nothing").hangup_cause().await,
        HangupCause::NoRouteDestination
    );
    b.idle().await;
}

#[tokio::test]
async fn directory_user_resolution() {
    let b = bench(|c| vec![bridge(&format!("user/{}", c.destination))]);
    // 1001 -> 1002 -> 1001 ...: the recursion limit ends it.
    assert_eq!(
        b.call("default", "1001").hangup_cause().await,
        HangupCause::ExchangeRoutingError
    );
    // A self-loop.
    assert_eq!(
        b.call("default", "1003").hangup_cause().await,
        HangupCause::InvalidIeContents
    );
    assert_eq!(
        b.call("default", "1004").hangup_cause().await,
        HangupCause::UserBusy
    );
    // Default dial-string through a helper.
    assert_eq!(
        b.call("default", "1005").hangup_cause().await,
        HangupCause::UserNotRegistered
    );
    assert_eq!(
        b.call("default", "9999").hangup_cause().await,
        HangupCause::SubscriberAbsent
    );
    // A helper that could not run fails the leg with the host's cause
    // (overload: SWITCH_CONGESTION, 503), a helper that refused its
    // arguments with INVALID_URL.
    let congested = bench(|_| vec![bridge("${busy_helper(x)}")]);
    assert_eq!(
        congested.call("default", "1").hangup_cause().await,
        HangupCause::SwitchCongestion
    );
    let refused = bench(|_| vec![bridge("${no_such_helper(x)}")]);
    assert_eq!(
        refused.call("default", "1").hangup_cause().await,
        HangupCause::InvalidUrl
    );
    let p = b.call("default", "1006");
    p.wait_for(Told::Answer).await;
    p.hang_up().await;
    b.idle().await;
}

#[tokio::test]
async fn group_rings_members_at_once() {
    let b = bench(|_| vec![bridge("group/sales@a.test")]);
    let p = b.call("default", "x");
    p.wait_for(Told::Answer).await;
    p.hang_up().await;
    b.idle().await;
    let b = bench(|_| vec![bridge("group/nobody@a.test")]);
    assert_eq!(
        b.call("default", "x").hangup_cause().await,
        HangupCause::NoRouteDestination
    );
}

#[tokio::test]
async fn tenants_are_separate() {
    let b = bench(|_| vec![bridge("user/1000@b.test")]);
    assert_eq!(
        b.call("default", "x").hangup_cause().await,
        HangupCause::CallRejected
    );
    let b = bench(|_| vec![bridge("group/sales@b.test")]);
    assert_eq!(
        b.call("default", "x").hangup_cause().await,
        HangupCause::CallRejected
    );
}

#[tokio::test]
async fn public_context_reaches_only_local_users() {
    let b = bench(|c| match c.destination.as_str() {
        "gw" => vec![bridge("sofia/gateway/carrier/15551234567")],
        "host" => vec![bridge("sofia/external/1000@evil.example.com")],
        "loop" => vec![bridge("loopback/1000/default")],
        "xfer" => vec![Action::Transfer {
            extension: "1000".into(),
            context: Some("default".into()),
        }],
        "1000" => vec![bridge("user/1000@a.test")],
        _ => vec![],
    });
    for d in ["gw", "host", "loop", "xfer"] {
        assert_eq!(
            b.call("public", d).hangup_cause().await,
            HangupCause::CallRejected,
            "{d}"
        );
    }
    // The hook was never asked for a refused leg.
    assert!(b.dialplan.outbound.lock().is_empty());
    // Outside public, the same gateway leg reaches the endpoint registry
    // (no SIP endpoint in this build of the test).
    assert_eq!(
        b.call("default", "gw").hangup_cause().await,
        HangupCause::ChanNotImplemented
    );
    // Local users are fine from public.
    let p = b.call("public", "1000");
    p.wait_for(Told::Answer).await;
    p.hang_up().await;
    b.idle().await;
}

#[tokio::test]
async fn variables_cannot_inject_legs() {
    let b = bench(|_| vec![bridge("user/${destination_number}@a.test")]);
    // Without escaping this would add a gateway leg.
    let p = b.call("default", "1000,sofia/gateway/x/1");
    assert_eq!(p.hangup_cause().await, HangupCause::SubscriberAbsent);
    let p = b.call("default", "1000|null/x");
    assert_eq!(p.hangup_cause().await, HangupCause::SubscriberAbsent);
    assert!(b.dialplan.outbound.lock().is_empty());
}

#[tokio::test]
async fn loopback_pairs_reenter_the_dialplan() {
    let b = bench(|c| match c.destination.as_str() {
        "2000" => vec![bridge("loopback/3000")],
        "3000" => vec![Action::Answer, Action::Park],
        "4000" => vec![bridge("loopback/4000")],
        "5000" => vec![bridge("loopback/5001")],
        "5001" => vec![Action::RingReady, Action::Park],
        _ => vec![],
    });
    let p = b.call("default", "2000");
    p.wait_for(Told::Answer).await;
    assert_eq!(b.switch.channel_count(), 3);
    p.hang_up().await;
    b.idle().await;
    // Endless loopback: the recursion limit stops it.
    assert_eq!(
        b.call("default", "4000").hangup_cause().await,
        HangupCause::ExchangeRoutingError
    );
    b.idle().await;
    // The caller gives up while the far side rings: everything is cancelled.
    let p = b.call("default", "5000");
    p.wait_for(Told::Ring).await;
    p.tx.send(RemoteEvent::Hangup(HangupCause::OriginatorCancel))
        .await
        .unwrap();
    b.idle().await;
}

#[tokio::test]
async fn originate_timeout_and_transfers() {
    let b = bench(|c| match c.destination.as_str() {
        "ring" => vec![
            Action::Set {
                name: "call_timeout".into(),
                value: "1".into(),
            },
            Action::Set {
                name: "continue_on_fail".into(),
                value: "false".into(),
            },
            bridge("loopback/ringing"),
        ],
        "ringing" => vec![Action::RingReady, Action::Park],
        "t1" => vec![Action::Transfer {
            extension: "t2".into(),
            context: None,
        }],
        "t2" => vec![Action::Transfer {
            extension: "t1".into(),
            context: None,
        }],
        _ => vec![],
    });
    let started = std::time::Instant::now();
    assert_eq!(
        b.call("default", "ring").hangup_cause().await,
        HangupCause::NoAnswer
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        b.call("default", "t1").hangup_cause().await,
        HangupCause::ExchangeRoutingError
    );
    b.idle().await;
}

#[tokio::test]
async fn media_apps_need_an_endpoint_with_media_and_socket_is_not_built_yet() {
    let b = bench(|c| match c.destination.as_str() {
        "9196" => vec![Action::Answer, Action::Echo],
        "socket" => vec![Action::Socket {
            address: "127.0.0.1:8084".into(),
            async_mode: true,
            full: true,
        }],
        _ => vec![],
    });
    assert_eq!(
        b.call("default", "9196").hangup_cause().await,
        HangupCause::ServiceNotImplemented
    );
    assert_eq!(
        b.call("default", "socket").hangup_cause().await,
        HangupCause::ServiceNotImplemented
    );
}

fn var<'a>(c: &'a ChannelSnapshot, name: &str) -> Option<&'a str> {
    c.variables
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(start_paused = true)]
async fn echo_runs_until_the_caller_hangs_up() {
    let b = bench(|_| vec![Action::Answer, Action::Echo]);
    let p = b.call_with_media("default", "9196");
    p.wait_for(Told::Echo).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!p.told.lock().iter().any(|t| matches!(t, Told::Hangup(_))));
    p.hang_up().await;
    b.idle().await;
    assert_eq!(p.told.lock()[..2], [Told::Answer, Told::Echo]);
}

#[tokio::test(start_paused = true)]
async fn playback_waits_for_its_prompt_and_skips_what_it_may_not_read() {
    let b = bench(|c| match c.destination.as_str() {
        "tone" => vec![
            Action::Playback {
                file: "tone_stream://%(100,0,440)".into(),
            },
            Action::Hangup {
                cause: HangupCause::UserBusy,
            },
        ],
        // Outside the tenant's sounds, not configured, not a tone: each is
        // skipped and the next action runs.
        _ => vec![
            Action::Playback {
                file: "../b.test/secret.wav".into(),
            },
            Action::Playback {
                file: "tone_stream://%(nonsense)".into(),
            },
            Action::Hangup {
                cause: HangupCause::CallRejected,
            },
        ],
    });
    let p = b.call_with_media("default", "tone");
    p.wait_for(Told::Play(1)).await;
    // Media before answer is early media.
    assert_eq!(p.told.lock()[0], Told::PreAnswer);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!p.told.lock().iter().any(|t| matches!(t, Told::Hangup(_))));
    p.tx.send(RemoteEvent::PlaybackDone {
        token: 1,
        completed: true,
    })
    .await
    .unwrap();
    assert_eq!(p.hangup_cause().await, HangupCause::UserBusy);
    let p = b.call_with_media("default", "bad");
    assert_eq!(p.hangup_cause().await, HangupCause::CallRejected);
    assert!(!p.told.lock().iter().any(|t| matches!(t, Told::Play(_))));
    b.idle().await;
}

/// An IVR: collect two digits into `choice`, then route on them.
fn ivr(c: &ChannelSnapshot) -> Vec<Action> {
    match var(c, "choice") {
        None => vec![
            Action::Answer,
            Action::Collect(CollectSpec {
                prompt: Some("tone_stream://L=-1;%(200,200,1000)".into()),
                variable: "choice".into(),
                min_digits: 1,
                max_digits: 2,
                timeout_ms: 3000,
                terminators: "#".into(),
            }),
        ],
        Some("12") => vec![Action::Hangup {
            cause: HangupCause::UserBusy,
        }],
        Some("7") => vec![Action::Hangup {
            cause: HangupCause::CallRejected,
        }],
        Some("") => vec![Action::Hangup {
            cause: HangupCause::NoAnswer,
        }],
        Some(_) => vec![Action::Hangup {
            cause: HangupCause::UnallocatedNumber,
        }],
    }
}

fn digit(d: char) -> RemoteEvent {
    RemoteEvent::Dtmf {
        digit: d,
        duration_ms: 100,
        source: "RTP",
    }
}

#[tokio::test(start_paused = true)]
async fn collect_stops_the_prompt_on_a_digit_and_routes_again_with_the_digits() {
    let b = bench(ivr);
    let p = b.call_with_media("default", "5000");
    p.wait_for(Told::Play(1)).await;
    p.tx.send(digit('1')).await.unwrap();
    p.wait_for(Told::Stop).await;
    // The prompt's end after the stop is not a second timeout start.
    p.tx.send(RemoteEvent::PlaybackDone {
        token: 1,
        completed: false,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    p.tx.send(digit('2')).await.unwrap();
    assert_eq!(p.hangup_cause().await, HangupCause::UserBusy);

    // A terminator ends it early; the timeout counts from the prompt's end.
    let p = b.call_with_media("default", "5000");
    p.wait_for(Told::Play(1)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!p.told.lock().iter().any(|t| matches!(t, Told::Hangup(_))));
    p.tx.send(RemoteEvent::PlaybackDone {
        token: 1,
        completed: true,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    p.tx.send(digit('7')).await.unwrap();
    p.tx.send(digit('#')).await.unwrap();
    assert_eq!(p.hangup_cause().await, HangupCause::CallRejected);

    // Nothing pressed: the variable is empty after the timeout.
    let p = b.call_with_media("default", "5000");
    p.wait_for(Told::Play(1)).await;
    p.tx.send(RemoteEvent::PlaybackDone {
        token: 1,
        completed: true,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2900)).await;
    assert!(!p.told.lock().iter().any(|t| matches!(t, Told::Hangup(_))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.hangup_cause().await, HangupCause::NoAnswer);

    // The caller hanging up mid-collect ends the call there.
    let p = b.call_with_media("default", "5000");
    p.wait_for(Told::Play(1)).await;
    p.hang_up().await;
    assert!(!p.told.lock().iter().any(|t| matches!(t, Told::Hangup(_))));
    b.idle().await;
}

#[tokio::test]
async fn overload_is_refused_with_congestion() {
    let b = bench_with(
        LimitConfig {
            max_channels: 1,
            max_cps: 0,
            max_guest_invocations: u32::MAX,
        },
        |_| vec![Action::Park],
    );
    let first = b.call("default", "x");
    assert_eq!(
        b.try_call("default", "y").err(),
        Some(HangupCause::SwitchCongestion)
    );
    assert_eq!(HangupCause::SwitchCongestion.to_sip(), 503);
    assert!(b.switch.hangup(&first.uuid, HangupCause::ManagerRequest));
    assert_eq!(first.hangup_cause().await, HangupCause::ManagerRequest);
    b.idle().await;
    let again = b.call("default", "z");
    b.switch.hangup(&again.uuid, HangupCause::ManagerRequest);
    b.idle().await;
}

#[tokio::test]
async fn many_concurrent_calls_leave_nothing_behind() {
    let b = bench(|c| match c.destination.as_str() {
        "a" => vec![bridge("{ignore_early_media=true}loopback/b,null/x")],
        "b" => vec![Action::Sleep { ms: 5 }, Action::Answer, Action::Park],
        _ => vec![],
    });
    let mut phones = Vec::new();
    for _ in 0..200 {
        phones.push(b.call("default", "a"));
    }
    for p in &phones {
        p.wait_for(Told::Answer).await;
    }
    for p in &phones {
        p.hang_up().await;
    }
    b.idle().await;
}
