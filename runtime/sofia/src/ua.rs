//! A profile's SIP core: where a SIP call enters the switch.
//!
//! One tokio task per profile owns everything stateful about SIP on that
//! profile: the transaction layer, the calls (one B2BUA leg each, with its
//! dialog), the digest nonces and the per-source auth failure counters. It
//! reacts to three inputs, one at a time, so nothing in it is locked:
//!
//! - SIP messages: datagrams it reads from the profile's UDP socket itself
//!   (up to `UDP_BATCH` per wake-up, parsed here: no reader task and no
//!   hand-over per datagram), and [`Incoming`] messages from the TCP and TLS
//!   connections' tasks;
//! - [`Cmd`]s from the core: what a channel's [`RemoteControl`] asks of its
//!   far end (ring, answer, hang up) and new outbound legs to dial;
//! - the clock: the transaction layer's next deadline and the 2xx
//!   retransmissions of answered calls.
//!
//! A new INVITE becomes a channel through
//! [`Switch::inbound`](dialtone_core::switch::Switch::inbound) (the core asks
//! the tenant's dialplan); a `bridge` to `sofia/...` comes back here as
//! [`Cmd::Dial`]. Media never passes through this task: each leg has a relay
//! port in the media engine, and the SDP each side sees is rewritten to
//! point at the switch ([`crate::Sofia`] keeps the legs' SDP so the two
//! legs of a bridge can find each other's).
//!
//! # Out of RTP ports
//!
//! Every SIP leg holds an RTP/RTCP pair from the media engine. When none is
//! free (the range is used up, or the process is out of file descriptors)
//! a new INVITE gets 100 Trying and waits, and so does a B-leg's dial,
//! until a call that ends frees a pair (`PORT_WAIT` at most, then 503
//! with Retry-After, or SWITCH_CONGESTION to the bridge). B-legs of calls
//! already admitted are served first, then new calls in arrival order; a
//! CANCEL of a waiting INVITE gets its 487 at once.
//!
//! # In a dialog
//!
//! Each leg is its own dialog (B2BUA): tags, CSeq and route set are per
//! leg. A request older than the last one (lower CSeq) gets 500 (RFC 3261
//! 12.2.2). The requests the switch sends in a dialog (ACK, BYE, relayed
//! INFO) carry the route set as Route headers and go to the first route's
//! address (loose routing; a strict router becomes the Request-URI), else
//! to where the far end's requests come from. 18x and 2xx copy the
//! caller's Record-Route. A re-INVITE or UPDATE is answered here with the
//! switch's SDP (media stays anchored) and its Contact refreshes the remote
//! target. INFO and MESSAGE in a bridged call are sent on in the other
//! leg's dialog with their body, Content-Type, Content-Disposition and
//! Info-Package; the far end's final response comes back to the sender,
//! except 408 and 481 (they speak of the other leg's dialog), which become
//! 500. Without a bridged SIP leg they get 200 here; OPTIONS gets 200 with
//! Allow; NOTIFY 200; anything else 501. Outside a dialog, 481. A DTMF
//! digit in an INFO (`application/dtmf-relay`, `application/dtmf`) also
//! goes to the leg's channel, which publishes it as a `DTMF` event.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use dialtone_core::endpoint::{
    ChannelMedia, Dialed, OutgoingRequest, Remote, RemoteControl, RemoteEvent,
};
use dialtone_core::registrations::unix_now;
use dialtone_core::routing::{Direction, MessageDecision, RouteFailure, TextMessage};
use dialtone_core::switch::InboundSpec;
use dialtone_core::HangupCause;
use dialtone_media::codec::Codec;
use dialtone_media::{Format, LegEvent, LegHandle, Listener, MediaError, Prompt};
use dialtone_sip::auth::{self, Algorithm, Outcome, Secret, VerifyRequest};
use dialtone_sip::message::{Host, Message, Method, NameAddr, Scheme, Uri};
use dialtone_sip::sdp::{OriginState, SessionDescription};
use dialtone_sip::transaction::{self, Event, IdMap, TransactionLayer, TxId};

use crate::gateway::{Gateway, GwRequest, GwTxs};
use crate::location::Binding;
use crate::settings::ProfileSettings;
use crate::transport::{Incoming, Peer, TlsSetup, Transport, Transports};
use crate::Shared;

/// What the core asks a profile to do.
pub enum Cmd {
    /// A configuration reload ([`crate::Sofia::reload`]).
    Reload(Box<Reload>),
    /// A channel's control: act on call `call`.
    Control(u64, Control),
    /// Send a response prepared earlier (a REGISTER's 200 once stored).
    Respond(TxId, Box<Message>),
    /// The dialplan decided on a MESSAGE.
    MessageDecided(
        TxId,
        Box<Message>,
        Peer,
        Result<MessageDecision, RouteFailure>,
    ),
    /// Relay a request received in the dialog of the bridged leg (INFO,
    /// MESSAGE) into call `call`'s dialog; its final response goes back as
    /// [`Cmd::Respond`] for transaction `TxId` on the given sender.
    Relay(u64, Box<Message>, mpsc::UnboundedSender<Cmd>, TxId),
    /// Call `call`'s media stopped arriving: hang up with MEDIA_TIMEOUT.
    MediaTimeout(u64),
    /// Dial a new outbound leg.
    Dial(
        Arc<OutgoingRequest>,
        Target,
        oneshot::Sender<Result<Dialed, HangupCause>>,
    ),
}

/// What a channel asks of its SIP far end.
#[derive(Debug)]
pub enum Control {
    /// 180.
    Ring,
    /// 183 with SDP.
    PreAnswer,
    /// 200 with SDP.
    Answer,
    /// A final response, CANCEL or BYE.
    Hangup(HangupCause),
    /// A specific response code.
    Respond(u16, Option<String>),
}

/// Where an outbound leg goes.
#[derive(Clone, Debug)]
pub struct Target {
    /// Request-URI.
    pub uri: Uri,
    /// Where to send it.
    pub peer: Peer,
    /// Digest credentials for a gateway that challenges.
    pub credentials: Option<(String, String)>,
}

/// What a reload changes in one profile.
#[derive(Debug)]
pub struct Reload {
    /// The profile's new settings (`None`: no longer configured; it keeps
    /// running until the next start).
    pub settings: Option<crate::settings::ProfileSettings>,
    /// The profile's gateways, their proxies resolved.
    pub gateways: Vec<(crate::settings::GatewaySettings, Peer)>,
}

/// The RemoteControl handed to the core for one SIP leg.
struct SipControl {
    call: u64,
    cmds: mpsc::UnboundedSender<Cmd>,
    media: Option<Arc<dyn ChannelMedia>>,
}

/// A SIP leg's RTP, as the core's media applications drive it.
struct SipMedia {
    shared: Arc<Shared>,
    leg: Arc<LegHandle>,
    /// The channel's UUID on a B-leg (the leg `Shared::bridge_media`
    /// joins to its originator); `None` on inbound legs.
    outbound: Option<String>,
}

impl ChannelMedia for SipMedia {
    fn join(&self, other_uuid: &str) -> bool {
        match self.shared.media_of(other_uuid) {
            Some(other) => self.shared.media().bridge(&self.leg, &other).is_ok(),
            None => false,
        }
    }

    fn report(&self) -> Vec<(String, String)> {
        let stats = self.leg.stats();
        let c = stats.snapshot();
        let r = stats.reception();
        let mut v = Vec::with_capacity(6);
        if let Some(codec) = stats.codec() {
            v.push(("read_codec".to_string(), codec.name().to_string()));
            v.push(("write_codec".to_string(), codec.name().to_string()));
        }
        v.push((
            "rtp_audio_in_packet_count".into(),
            c.rtp.packets_received.to_string(),
        ));
        v.push((
            "rtp_audio_out_packet_count".into(),
            c.rtp.packets_sent.to_string(),
        ));
        v.push((
            "rtp_audio_in_skip_packet_count".into(),
            r.lost.max(0).to_string(),
        ));
        // RTP timestamp units at 8 kHz: 8 per millisecond.
        v.push((
            "rtp_audio_in_jitter_ms".into(),
            format!("{:.3}", r.jitter as f64 / 8.0),
        ));
        v
    }

    fn echo(&self) -> bool {
        self.shared.media().echo(&self.leg).is_ok()
    }
    fn play(&self, prompt: Arc<Prompt>) -> Option<u64> {
        self.shared.media().play(&self.leg, prompt).ok()
    }
    fn stop(&self) {
        let _ = self.shared.media().stop_app(&self.leg);
    }
    fn record(
        &self,
        path: &std::path::Path,
        legs: dialtone_core::routing::RecordLegs,
        limit: Option<Duration>,
    ) -> Result<(), String> {
        use dialtone_core::routing::RecordLegs;
        use dialtone_media::Channels;
        let channels = match legs {
            RecordLegs::Caller => Channels::Received,
            RecordLegs::Callee => Channels::Sent,
            RecordLegs::Both => Channels::Both,
        };
        self.shared
            .media()
            .record(&self.leg, path, channels, limit)
            .map_err(|e| e.to_string())
    }
    fn rejoin(&self) -> bool {
        match &self.outbound {
            Some(uuid) => {
                self.shared.bridge_media(uuid);
                true
            }
            None => false,
        }
    }
}

/// Media events of a leg onto its channel's event stream. Runs on a media
/// worker: `try_send` never blocks it; a channel too far behind to take a
/// digit loses it (and the log says so).
fn leg_listener(
    events: mpsc::Sender<RemoteEvent>,
    cmds: mpsc::UnboundedSender<Cmd>,
    call: u64,
) -> Listener {
    Arc::new(move |ev| {
        let ev = match ev {
            LegEvent::MediaTimeout => {
                let _ = cmds.send(Cmd::MediaTimeout(call));
                return;
            }
            LegEvent::Dtmf { digit, duration_ms } => RemoteEvent::Dtmf {
                digit,
                duration_ms,
                source: "RTP",
            },
            LegEvent::PlayDone { token, completed } => {
                RemoteEvent::PlaybackDone { token, completed }
            }
        };
        if let Err(mpsc::error::TrySendError::Full(ev)) = events.try_send(ev) {
            tracing::warn!(?ev, "channel event queue full; media event dropped");
        }
    })
}

/// Whether the codec the far end answered with (`answer`'s first on its
/// first m-line) is one `offer` contains.
fn offers_answered_codec(offer: &SessionDescription, answer: &SessionDescription) -> bool {
    // The first codec that carries audio: an answer may list
    // telephone-event (or comfort noise) first.
    let Some(chosen) = answer.codecs(0).into_iter().find(|c| {
        !["telephone-event", "CN", "red", "ulpfec"]
            .iter()
            .any(|n| c.encoding.eq_ignore_ascii_case(n))
    }) else {
        return true;
    };
    offer.codecs(0).iter().any(|c| {
        c.encoding.eq_ignore_ascii_case(&chosen.encoding) && c.clock_rate == chosen.clock_rate
    })
}

/// How a leg's audio is encoded, from an SDP: the first codec the engine
/// can produce (for an offer the switch answers, the one its answer picks:
/// `PCMU`/`PCMA` in offer order) and the telephone-event payload type.
fn media_format(sdp: &SessionDescription, answered_here: bool) -> Format {
    let codecs = sdp.codecs(0);
    let mut f = Format {
        event_payload_type: None,
        ..Format::default()
    };
    let usable = |name: &str| {
        let c = Codec::from_name(name)?;
        (!answered_here || c != Codec::L16).then_some(c)
    };
    if let Some((codec, pt)) = codecs
        .iter()
        .filter(|c| c.clock_rate == 8000 && c.channels <= 1)
        .find_map(|c| usable(&c.encoding).map(|k| (k, c.payload_type)))
    {
        f.codec = codec;
        f.payload_type = pt;
    }
    f.event_payload_type = codecs
        .iter()
        .find(|c| c.encoding.eq_ignore_ascii_case("telephone-event") && c.clock_rate == 8000)
        .map(|c| c.payload_type);
    f
}

impl RemoteControl for SipControl {
    fn media(&self) -> Option<Arc<dyn ChannelMedia>> {
        self.media.clone()
    }
    fn answer(&mut self) {
        let _ = self.cmds.send(Cmd::Control(self.call, Control::Answer));
    }
    fn pre_answer(&mut self) {
        let _ = self.cmds.send(Cmd::Control(self.call, Control::PreAnswer));
    }
    fn ring_ready(&mut self) {
        let _ = self.cmds.send(Cmd::Control(self.call, Control::Ring));
    }
    fn hangup(&mut self, cause: HangupCause) {
        let _ = self
            .cmds
            .send(Cmd::Control(self.call, Control::Hangup(cause)));
    }
    fn respond(&mut self, code: u16, reason: Option<&str>) -> bool {
        let _ = self.cmds.send(Cmd::Control(
            self.call,
            Control::Respond(code, reason.map(str::to_string)),
        ));
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// Inbound: INVITE received, no final response. Outbound: INVITE
    /// sent, no final response.
    Early,
    /// 2xx sent (inbound, waiting for ACK) or received.
    Answered,
    /// BYE/CANCEL done or final error: waiting to be forgotten.
    Ended,
}

struct Call {
    id: u64,
    uuid: String,
    inbound: bool,
    state: CallState,
    /// INVITE server transaction (inbound) or client transaction (outbound).
    invite_tx: Option<TxId>,
    /// The INVITE as received or sent (an outbound one shared with its
    /// transaction).
    invite: Arc<Message>,
    peer: Peer,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our From/To as we write them in requests of this dialog.
    local_uri: String,
    remote_uri: String,
    /// Where in-dialog requests go (the far end's Contact).
    remote_target: Option<Uri>,
    route_set: Vec<String>,
    local_cseq: u32,
    /// The CSeq of the last request the far end sent in this dialog.
    remote_cseq: Option<u32>,
    events: mpsc::Sender<RemoteEvent>,
    media: Option<Arc<LegHandle>>,
    origin: OriginState,
    /// The last 2xx we sent (inbound), retransmitted until the ACK.
    pending_2xx: Option<(Arc<Message>, Instant, Duration)>,
    /// Credentials to answer a challenge with (gateway legs).
    credentials: Option<(String, String)>,
    auth_tries: u32,
    /// BYE client transaction, if one is out.
    bye_tx: Option<TxId>,
}

/// The profile core.
pub struct ProfileCore {
    settings: ProfileSettings,
    shared: Arc<Shared>,
    transports: Arc<Transports>,
    tx: TransactionLayer<Peer>,
    calls: IdMap<u64, Call>,
    by_tx: IdMap<TxId, u64>,
    by_dialog: HashMap<String, u64>,
    cmds_tx: mpsc::UnboundedSender<Cmd>,
    auth: auth::DigestServer,
    failures: HashMap<IpAddr, (Instant, u32)>,
    next_id: AtomicU64,
    gateways: Vec<Gateway>,
    gw_txs: GwTxs,
    /// Requests relayed from a bridged leg, by our client transaction.
    relays: IdMap<TxId, Relayed>,
    /// When each call's pending 2xx is due again, ordered, so neither the
    /// deadline nor the timer scans the calls. An entry leaves with its
    /// 2xx ([`disarm_2xx`]: ACK, end, re-arm, forget).
    retx_2xx: BTreeSet<(Instant, u64)>,
    /// Ended calls to forget once their transactions had time to finish
    /// ([`FORGET_AFTER`] after the end, so in deadline order).
    to_forget: VecDeque<(Instant, u64)>,
    /// Work waiting for an RTP pair ([`PORT_WAIT`]).
    waiting: PortWait,
}

/// New calls and B-legs waiting for an RTP pair, in arrival order. B-legs
/// (calls already admitted) are served first; a new INVITE waits behind
/// any that wait already, so arrival order holds.
#[derive(Default)]
struct PortWait {
    dials: VecDeque<WaitingDial>,
    invites: VecDeque<WaitingInvite>,
    /// When to try again (set while anything waits).
    retry_at: Option<Instant>,
}

impl PortWait {
    fn is_empty(&self) -> bool {
        self.dials.is_empty() && self.invites.is_empty()
    }

    /// Something waits now: try again in [`PORT_RETRY`] unless a retry
    /// is due already.
    fn arm(&mut self) {
        self.retry_at
            .get_or_insert_with(|| Instant::now() + PORT_RETRY);
    }
}

struct WaitingDial {
    since: Instant,
    req: Arc<OutgoingRequest>,
    target: Target,
    reply: oneshot::Sender<Result<Dialed, HangupCause>>,
}

/// An admitted INVITE (authenticated, 100 Trying sent) without its RTP
/// pair yet.
struct WaitingInvite {
    since: Instant,
    tx: TxId,
    msg: Message,
    from: Peer,
    offer: Option<SessionDescription>,
    authenticated: Option<(String, String)>,
    tenant: String,
}

/// Datagrams a profile's core reads in one go before it looks at its
/// other inputs again.
const UDP_BATCH: usize = 32;

/// How long a new call, or a B-leg, waits for an RTP pair when none is
/// free (the range exhausted, or the process out of file descriptors)
/// before it is refused: 503 with Retry-After to a caller,
/// SWITCH_CONGESTION to a bridge. Pairs come free as calls end, so a burst
/// beyond the switch's sockets becomes a short delay instead of failures.
const PORT_WAIT: Duration = Duration::from_secs(1);

/// How often work waiting for an RTP pair tries again.
const PORT_RETRY: Duration = Duration::from_millis(2);

/// The most new calls waiting for an RTP pair; beyond, 503 at once.
const PORT_WAIT_MAX: usize = 4096;

/// How long an ended call's entry stays (so late retransmissions, a
/// crossing BYE or an ACK still find their dialog): longer than Timer J,
/// 64*T1 = 32 s.
const FORGET_AFTER: Duration = Duration::from_secs(34);

/// A request relayed from the bridged leg: where its answer goes.
struct Relayed {
    reply: mpsc::UnboundedSender<Cmd>,
    origin: TxId,
    req: Message,
}

/// Stops retransmitting `c`'s 2xx: takes it and its queue entry.
fn disarm_2xx(retx: &mut BTreeSet<(Instant, u64)>, c: &mut Call) {
    if let Some((_, due, _)) = c.pending_2xx.take() {
        retx.remove(&(due, c.id));
    }
}

fn tag() -> String {
    format!("{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

impl ProfileCore {
    /// Starts the profile: binds its transports and spawns its task.
    pub async fn start(
        settings: ProfileSettings,
        shared: Arc<Shared>,
    ) -> anyhow::Result<mpsc::UnboundedSender<Cmd>> {
        let (in_tx, in_rx) = mpsc::channel(4096);
        let tls = tls_setup(&settings)?;
        // The core reads UDP itself (see `run`); streams come over `in_tx`.
        let transports = Transports::bind(settings.bind, Some(tls), in_tx)
            .await
            .map_err(|e| {
                anyhow::anyhow!("profile {}: bind {}: {e}", settings.name, settings.bind)
            })?;
        let (cmds_tx, cmds_rx) = mpsc::unbounded_channel();
        let auth = auth::DigestServer::with_random_key()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_nonce_lifetime(shared.sip.nonce_ttl.as_secs());
        let mut gateways = Vec::new();
        let configured = shared.gateways.lock().clone();
        for g in configured.iter().filter(|g| g.profile == settings.name) {
            match crate::resolve(&g.proxy, &g.transport).await {
                Ok((transport, addr)) => {
                    if let Some(name) = tls_name(transport, &g.proxy) {
                        transports.set_tls_name(addr, &name);
                    }
                    gateways.push(Gateway::new(
                        g.clone(),
                        Peer { transport, addr },
                        Instant::now(),
                        format!("gw-{}-{:x}@dialtone", g.name, rand_u64()),
                    ))
                }
                Err(cause) => {
                    tracing::error!(gateway = %g.name, proxy = %g.proxy, %cause, "gateway proxy does not resolve")
                }
            }
        }
        let core = ProfileCore {
            gateways,
            gw_txs: GwTxs::new(),
            relays: IdMap::default(),
            retx_2xx: BTreeSet::new(),
            to_forget: VecDeque::new(),
            waiting: PortWait::default(),
            settings,
            shared,
            transports,
            tx: TransactionLayer::new(transaction::Config::default()),
            calls: IdMap::default(),
            by_tx: IdMap::default(),
            by_dialog: HashMap::new(),
            cmds_tx: cmds_tx.clone(),
            auth,
            failures: HashMap::new(),
            next_id: AtomicU64::new(1),
        };
        tokio::spawn(core.run(in_rx, cmds_rx));
        Ok(cmds_tx)
    }

    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        match self.transports.tls_addr() {
            Some(tls) => tracing::info!(
                profile = %self.settings.name,
                addr = %self.transports.local_addr(),
                %tls,
                "SIP profile listening (udp, tcp, tls)"
            ),
            None => tracing::info!(
                profile = %self.settings.name,
                addr = %self.transports.local_addr(),
                "SIP profile listening (udp, tcp)"
            ),
        }
        let load = Arc::new(crate::ProfileLoad::default());
        self.shared
            .load
            .lock()
            .insert(self.settings.name.clone(), load.clone());
        // One timer for the task's life, moved only when the next deadline
        // changes (a new timer per message would register and deregister
        // one in the runtime's timer wheel, under its lock, every time).
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let transports = self.transports.clone();
        let mut datagram = vec![0u8; 65_536];
        loop {
            let deadline = self.next_deadline();
            if deadline != armed {
                armed = deadline;
                sleep
                    .as_mut()
                    .reset(deadline.map_or_else(far, tokio::time::Instant::from_std));
            }
            tokio::select! {
                m = incoming.recv() => match m {
                    Some(m) => self.on_incoming(m),
                    None => return,
                },
                c = cmds.recv() => match c {
                    Some(c) => self.on_cmd(c),
                    None => return,
                },
                r = transports.udp_readable() => {
                    if let Err(e) = r {
                        // Only when the runtime's I/O driver is gone.
                        tracing::error!(profile = %self.settings.name, error = %e, "UDP socket unusable");
                        return;
                    }
                    // Drain what is waiting, a bounded batch at a time so
                    // commands and timers still get their turn.
                    for _ in 0..UDP_BATCH {
                        match transports.recv_datagram(&mut datagram) {
                            Some(m) => self.on_incoming(m),
                            None => break,
                        }
                    }
                }
                _ = sleep.as_mut(), if armed.is_some() => {
                    // Fired: re-armed above whatever the next deadline is.
                    armed = None;
                    self.on_timer()
                }
            }
            load.transactions
                .store(self.tx.len() as u64, Ordering::Relaxed);
            load.calls.store(self.calls.len() as u64, Ordering::Relaxed);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let retx = self.retx_2xx.first().map(|e| e.0);
        let forget = self.to_forget.front().map(|e| e.0);
        let gw = self.gateways.iter().filter_map(Gateway::deadline).min();
        [
            self.tx.next_deadline(),
            retx,
            forget,
            gw,
            self.waiting.retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn run_gateways(&mut self, now: Instant) {
        for i in 0..self.gateways.len() {
            let local = self.local_host(self.gateways[i].peer.transport);
            let due = self.gateways[i].due(now, &self.shared.gateway_status, &local);
            for (kind, msg) in due {
                self.send_gateway_request(i, kind, msg);
            }
        }
    }

    fn on_gateway_response(&mut self, tx: TxId, msg: Message) {
        if msg.code().unwrap_or(0) < 200 {
            return;
        }
        let Some((i, kind)) = self.gw_txs.remove(&tx) else {
            return;
        };
        let local = self.local_host(self.gateways[i].peer.transport);
        let next = self.gateways[i].on_response(
            kind,
            &msg,
            Instant::now(),
            &self.shared.gateway_status,
            &local,
        );
        if let Some(m) = next {
            self.send_gateway_request(i, kind, m);
        }
    }

    /// Sends gateway `i`'s REGISTER or OPTIONS with our Via and User-Agent,
    /// remembering which gateway and what for.
    fn send_gateway_request(&mut self, i: usize, kind: GwRequest, mut msg: Message) {
        let peer = self.gateways[i].peer;
        msg.headers.push_front("Via", self.via(peer.transport));
        msg.headers
            .push("User-Agent", self.shared.sip.user_agent.clone());
        if let Some(t) = self.send_request(msg, peer) {
            self.gw_txs.insert(t, (i, kind));
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        let ev = self.tx.on_timer(now);
        self.handle_events(ev);
        self.run_gateways(now);
        // 2xx retransmissions (RFC 3261 13.3.1.4), UDP only.
        let mut give_up = Vec::new();
        while let Some(&(at, id)) = self.retx_2xx.first() {
            if at > now {
                break;
            }
            self.retx_2xx.pop_first();
            let Some(c) = self.calls.get_mut(&id) else {
                continue;
            };
            let Some((resp, due, interval)) = &mut c.pending_2xx else {
                continue;
            };
            if *due != at {
                continue; // not this call's entry any more (defensive)
            }
            if *interval >= Duration::from_secs(32) {
                give_up.push(c.id);
                continue;
            }
            let _ = self.transports.send(c.peer, resp);
            *interval = (*interval * 2).min(Duration::from_secs(4)).max(*interval);
            // Never at `now` exactly: the entry must sort after this one.
            *due = now.max(at) + *interval;
            if *interval == Duration::from_secs(4) {
                // Count the 64*T1 budget in steps of T2.
                *interval += Duration::from_millis(1);
            }
            self.retx_2xx.insert((*due, id));
        }
        for id in give_up {
            // No ACK for 64*T1: the dialog is dead (RFC 3261 13.3.1.4).
            self.end_call_with_bye(id, HangupCause::RecoveryOnTimerExpire);
        }
        while self.to_forget.front().is_some_and(|e| e.0 <= now) {
            if let Some((_, id)) = self.to_forget.pop_front() {
                self.forget(id);
            }
        }
        if self.waiting.retry_at.is_some_and(|t| t <= now) {
            self.serve_waiting(now);
        }
    }

    /// Refuses what waited [`PORT_WAIT`] for an RTP pair, then gives the
    /// pairs that came free to what still waits: B-legs first, then new
    /// calls, each in arrival order.
    fn serve_waiting(&mut self, now: Instant) {
        let expired = |since: Instant| now.duration_since(since) >= PORT_WAIT;
        while let Some(d) = self
            .waiting
            .dials
            .pop_front_if(|d| d.reply.is_closed() || expired(d.since))
        {
            if !d.reply.is_closed() {
                tracing::warn!(
                    waited_ms = PORT_WAIT.as_millis() as u64,
                    "no RTP port for an outbound leg"
                );
                let _ = d.reply.send(Err(HangupCause::SwitchCongestion));
            }
        }
        while let Some(w) = self.waiting.invites.pop_front_if(|w| expired(w.since)) {
            tracing::warn!(
                waited_ms = PORT_WAIT.as_millis() as u64,
                "no RTP port for a new call"
            );
            self.refuse_no_port(w.tx, &w.msg);
        }
        while let Some(d) = self.waiting.dials.pop_front() {
            if d.reply.is_closed() {
                continue; // the bridge is gone (the caller hung up)
            }
            match self.dial_media(&d.req) {
                Ok(media) => {
                    let r = self.dial(&d.req, d.target, media);
                    drop(d.req);
                    let _ = d.reply.send(r);
                }
                Err(e) if e.is_port_shortage() => {
                    self.waiting.dials.push_front(d);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no RTP port for an outbound leg");
                    let _ = d.reply.send(Err(HangupCause::SwitchCongestion));
                }
            }
        }
        while self.waiting.dials.is_empty() {
            let Some(w) = self.waiting.invites.pop_front() else {
                break;
            };
            match self.shared.media().allocate() {
                Ok(media) => self.start_call(w, Arc::new(media), true),
                Err(e) if e.is_port_shortage() => {
                    self.waiting.invites.push_front(w);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no RTP port for a new call");
                    self.refuse_no_port(w.tx, &w.msg);
                }
            }
        }
        self.waiting.retry_at = (!self.waiting.is_empty()).then(|| now + PORT_RETRY);
    }

    /// 100 Trying for INVITE transaction `tx`.
    fn send_trying(&mut self, tx: TxId, invite: &Message) {
        let mut trying = Message::response_to(invite, 100, None, None);
        self.server_headers(&mut trying);
        self.respond(tx, trying);
    }

    /// 503 with Retry-After: no RTP pair for a new call.
    fn refuse_no_port(&mut self, tx: TxId, msg: &Message) {
        let mut r = Message::response_to(msg, 503, None, Some(&tag()));
        r.headers
            .push("Retry-After", self.shared.retry_after.to_string());
        self.respond(tx, r);
    }

    // -- Messages ----------------------------------------------------------

    fn on_incoming(&mut self, m: Incoming) {
        match m {
            Incoming::Message(msg, peer) => {
                let msg = if msg.is_request() {
                    match self.fix_request(msg, peer) {
                        Some(m) => m,
                        None => return,
                    }
                } else {
                    msg
                };
                let ev = self
                    .tx
                    .on_message(msg, peer, peer.transport.reliable(), Instant::now());
                self.handle_events(ev);
            }
            Incoming::Bad(e, peer) => {
                tracing::info!(%peer, error = %e.reason, "malformed SIP message");
                if let Some(req) = e.partial {
                    if req.method() != Some(&Method::Ack) && req.top_via().is_some() {
                        let mut r =
                            Message::response_to(&req, 400, Some("Bad Request"), Some(&tag()));
                        r.headers.push(
                            "Warning",
                            format!("399 dialtone \"{}\"", e.reason.replace('"', "'")),
                        );
                        self.send_stateless(peer, &r);
                    }
                }
            }
        }
    }

    /// Validates a request and stamps its top Via with `received`/`rport`
    /// (RFC 3261 18.2.1, RFC 3581). Malformed requests get a 400 here.
    fn fix_request(&mut self, mut msg: Message, peer: Peer) -> Option<Message> {
        let mut via = match msg.validate_request_via() {
            Ok(via) => via,
            Err(reason) => {
                tracing::info!(%peer, %reason, "bad SIP request");
                if msg.method() != Some(&Method::Ack) && msg.top_via().is_some() {
                    let r = Message::response_to(&msg, 400, Some(&reason), Some(&tag()));
                    self.send_stateless(peer, &r);
                }
                return None;
            }
        };
        let ip = peer.addr.ip();
        let mut changed = false;
        if via.host.ip() != Some(ip) {
            via.set_param("received", Some(&ip.to_string()));
            changed = true;
        }
        if via.param("rport").is_some() {
            via.set_param("rport", Some(&peer.addr.port().to_string()));
            changed = true;
        }
        if changed {
            msg.headers.remove_first_value("Via");
            msg.headers.push_front("Via", via.to_string());
        }
        Some(msg)
    }

    /// A response outside any transaction (a 400 to what never made one),
    /// sent back to its source, as the transaction layer does for all
    /// responses (symmetric response routing, RFC 3581).
    fn send_stateless(&self, peer: Peer, r: &Message) {
        let _ = self.transports.send(peer, r);
    }

    fn handle_events(&mut self, mut events: Vec<Event<Peer>>) {
        // What the layer transmits goes out before the TU reacts to the
        // same input: the ACK of a 407 leaves before the re-sent INVITE.
        // Two passes over the one list, so nothing is copied or allocated.
        for ev in &events {
            if let Event::Transmit { tx, to, msg, .. } = ev {
                if let Err(e) = self.transports.send(*to, msg) {
                    tracing::debug!(error = %e, "transmit failed");
                    let more = self.tx.transport_error(*tx);
                    self.handle_events(more);
                }
            }
        }
        for ev in events.drain(..) {
            match ev {
                Event::Transmit { .. } => {}
                Event::Request { tx, msg, from } => self.on_request(tx, msg, from),
                Event::Response { tx, msg } if self.gw_txs.contains_key(&tx) => {
                    self.on_gateway_response(tx, msg)
                }
                Event::Response { tx, msg } if self.relays.contains_key(&tx) => {
                    self.on_relay_response(tx, msg)
                }
                Event::Response { tx, msg } => self.on_response(tx, msg),
                Event::Ack { msg, from, .. } | Event::StrayAck { msg, from } => {
                    self.on_ack(msg, from)
                }
                Event::Timeout { tx, .. } | Event::TransportError { tx } => {
                    if let Some((i, kind)) = self.gw_txs.remove(&tx) {
                        self.gateways[i].on_failure(kind);
                    } else if let Some(r) = self.relays.remove(&tx) {
                        r.answer(500, None, None);
                    } else {
                        self.on_tx_failed(tx)
                    }
                }
                Event::ProvisionalTimeout { tx } => {
                    if let Some(cancel) = self.tx.cancel_request(tx) {
                        let peer = self
                            .calls
                            .get(self.by_tx.get(&tx).unwrap_or(&0))
                            .map(|c| c.peer);
                        if let Some(peer) = peer {
                            self.send_request(cancel, peer);
                        }
                    }
                }
                Event::Terminated { tx } => {
                    self.by_tx.remove(&tx);
                }
                Event::StrayResponse { msg, from } => {
                    // A 2xx retransmission after the INVITE transaction
                    // ended: re-ACK it.
                    if msg.code().is_some_and(|c| (200..300).contains(&c))
                        && msg.cseq().is_some_and(|c| c.method == Method::Invite)
                    {
                        if let Some(id) = self.dialog_of(&msg, false) {
                            self.send_2xx_ack(id, &msg);
                        } else {
                            let _ = from;
                        }
                    }
                }
            }
        }
        self.tx.recycle(events);
    }

    fn send_request(&mut self, msg: impl Into<Arc<Message>>, peer: Peer) -> Option<TxId> {
        match self
            .tx
            .send_request(msg, peer, peer.transport.reliable(), Instant::now())
        {
            Ok((id, ev)) => {
                self.handle_events(ev);
                Some(id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not send a request");
                None
            }
        }
    }

    fn respond(&mut self, tx: TxId, resp: impl Into<Arc<Message>>) {
        match self.tx.send_response(tx, resp, Instant::now()) {
            Ok(ev) => self.handle_events(ev),
            Err(e) => tracing::debug!(error = %e, "response not sent"),
        }
    }

    fn respond_code(&mut self, tx: TxId, req: &Message, code: u16, reason: Option<&str>) {
        let mut r = Message::response_to(req, code, reason, Some(&tag()));
        self.server_headers(&mut r);
        self.respond(tx, r);
    }

    fn server_headers(&self, r: &mut Message) {
        r.headers.push("Server", self.shared.sip.user_agent.clone());
    }

    // -- Requests ------------------------------------------------------------

    fn on_request(&mut self, tx: TxId, msg: Message, from: Peer) {
        let method = msg
            .method()
            .cloned()
            .unwrap_or(Method::Other(String::new()));
        // In-dialog?
        if msg.to_tag().is_some() {
            return self.on_in_dialog(tx, msg, from, method);
        }
        match method {
            Method::Invite => self.on_invite(tx, msg, from),
            Method::Register => self.on_register(tx, msg, from),
            Method::Options => {
                let mut r = Message::response_to(&msg, 200, None, Some(&tag()));
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", "application/sdp");
                self.server_headers(&mut r);
                self.respond(tx, r);
            }
            Method::Cancel => self.on_cancel(tx, msg),
            Method::Bye | Method::Info | Method::Update | Method::Prack | Method::Notify => {
                self.respond_code(tx, &msg, 481, None)
            }
            Method::Message => self.on_message(tx, msg, from),
            Method::Subscribe | Method::Publish | Method::Refer => {
                let mut r = Message::response_to(&msg, 405, None, Some(&tag()));
                r.headers.push("Allow", ALLOW);
                self.respond(tx, r);
            }
            Method::Ack => {}
            Method::Other(_) => {
                let mut r = Message::response_to(&msg, 501, None, Some(&tag()));
                r.headers.push("Allow", ALLOW);
                self.respond(tx, r);
            }
        }
    }

    /// Digest check for REGISTER (401) and INVITE (407). `Ok(Some(user,
    /// domain))` when authenticated; `Ok(None)` when a challenge or refusal
    /// was sent.
    fn authenticate(&mut self, tx: TxId, msg: &Message, from: Peer) -> Option<(String, String)> {
        let now = Instant::now();
        let (hdr, challenge_code, challenge_hdr) = if msg.method() == Some(&Method::Register) {
            ("Authorization", 401, "WWW-Authenticate")
        } else {
            ("Proxy-Authorization", 407, "Proxy-Authenticate")
        };
        // A source that failed too often gets 403 without a challenge.
        let ip = from.addr.ip();
        let limit = self.shared.sip.auth_failures_per_minute;
        if let Some((since, n)) = self.failures.get(&ip) {
            if now.duration_since(*since) < Duration::from_secs(60) && *n >= limit {
                self.respond_code(tx, msg, 403, Some("Forbidden"));
                return None;
            }
        }
        let domain_hint = msg.to().map(|t| t.uri.host.text()).unwrap_or_default();
        let directory = self.shared.switch().directory();
        let realm = if directory.tenant(&domain_hint).is_some() {
            domain_hint
        } else {
            self.shared.default_domain.clone()
        };
        let creds = msg
            .headers
            .get_all(hdr)
            .into_iter()
            .find_map(|v| auth::Credentials::parse(v).ok());
        let unix = unix_now();
        let outcome = match &creds {
            None => None,
            Some(c) => {
                let tenant = if directory.tenant(&c.realm).is_some() {
                    c.realm.clone()
                } else {
                    realm.clone()
                };
                let password = directory
                    .user(&tenant, &c.username)
                    .and_then(|u| u.password.clone());
                let uri = msg.uri().map(|u| u.to_string()).unwrap_or_default();
                let outcome = self.auth.verify(
                    c,
                    &VerifyRequest {
                        realm: &tenant,
                        method: msg.method().map(|m| m.as_str()).unwrap_or(""),
                        uri: &uri,
                        body: &msg.body,
                    },
                    password.as_deref().map(Secret::Password),
                    unix,
                );
                // The digest's uri parameter is often the AOR, not the exact
                // Request-URI text; accept the digest's own uri when it names
                // the same user and host.
                let outcome = if outcome == Outcome::Failed && c.uri != uri {
                    let same = Uri::parse(&c.uri)
                        .ok()
                        .zip(msg.uri())
                        .is_some_and(|(a, b)| {
                            a.host == b.host && a.user == b.user && a.port == b.port
                        });
                    if same {
                        self.auth.verify(
                            c,
                            &VerifyRequest {
                                realm: &tenant,
                                method: msg.method().map(|m| m.as_str()).unwrap_or(""),
                                uri: &c.uri,
                                body: &msg.body,
                            },
                            password.as_deref().map(Secret::Password),
                            unix,
                        )
                    } else {
                        outcome
                    }
                } else {
                    outcome
                };
                Some((outcome, tenant, c.username.clone()))
            }
        };
        match outcome {
            Some((Outcome::Ok, tenant, user)) => {
                self.failures.remove(&ip);
                Some((user, tenant))
            }
            other => {
                let stale = matches!(other, Some((Outcome::Stale, ..)));
                if matches!(other, Some((Outcome::Failed | Outcome::Malformed, ..))) {
                    let e = self.failures.entry(ip).or_insert((now, 0));
                    if now.duration_since(e.0) >= Duration::from_secs(60) {
                        *e = (now, 0);
                    }
                    e.1 += 1;
                    tracing::info!(source = %from, "SIP authentication failed");
                }
                let mut r = Message::response_to(msg, challenge_code, None, Some(&tag()));
                r.headers.push(
                    challenge_hdr,
                    self.auth.challenge(&realm, Algorithm::Md5, stale, unix),
                );
                self.server_headers(&mut r);
                self.respond(tx, r);
                None
            }
        }
    }

    fn on_register(&mut self, tx: TxId, msg: Message, from: Peer) {
        if !self.settings.accept_register {
            let mut r = Message::response_to(&msg, 405, None, Some(&tag()));
            r.headers.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
            return self.respond(tx, r);
        }
        let Some((user, tenant)) = self.authenticate(tx, &msg, from) else {
            return;
        };
        // The AOR must be the authenticated user.
        let aor_user = msg
            .to()
            .and_then(|t| t.uri.user.clone())
            .unwrap_or_default();
        if aor_user != user {
            return self.respond_code(tx, &msg, 403, Some("Forbidden"));
        }
        let now = unix_now();
        let (default, max) = self.shared.sip.register_expires;
        let min = self.shared.sip.register_min_expires;
        let header_expires = msg.expires();
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        // The 200 waits until every change is committed to disk.
        let mut waits = Vec::new();
        if msg.contact_star() {
            if header_expires != Some(0) {
                return self.respond_code(tx, &msg, 400, Some("Contact * needs Expires: 0"));
            }
            for b in self.shared.location().of_user(&tenant, &user, now) {
                let (d, w) = oneshot::channel();
                waits.push(w);
                let _ = self
                    .shared
                    .location()
                    .remove(&tenant, &user, &b.contact, Some(d));
            }
        }
        for c in msg.contacts() {
            let expires = c
                .param("expires")
                .flatten()
                .and_then(|e| e.parse::<u32>().ok())
                .or(header_expires)
                .unwrap_or(default)
                .min(max);
            let contact = c.uri.to_string();
            if expires == 0 {
                let (d, w) = oneshot::channel();
                waits.push(w);
                let _ = self
                    .shared
                    .location()
                    .remove(&tenant, &user, &contact, Some(d));
                continue;
            }
            if expires < min {
                let mut r = Message::response_to(&msg, 423, None, Some(&tag()));
                r.headers.push("Min-Expires", min.to_string());
                return self.respond(tx, r);
            }
            let b = Binding {
                profile: self.settings.name.clone(),
                domain: tenant.clone(),
                user: user.clone(),
                contact,
                expires: now + u64::from(expires),
                user_agent: msg.headers.get("User-Agent").unwrap_or("").to_string(),
                transport: from.transport.to_string(),
                source: from.addr,
                call_id: call_id.clone(),
                cseq,
            };
            let (d, w) = oneshot::channel();
            waits.push(w);
            if let Err(e) = self.shared.location().upsert(b, Some(d)) {
                tracing::error!(error = %e, "could not store a registration");
                return self.respond_code(tx, &msg, 500, None);
            }
        }
        let mut r = Message::response_to(&msg, 200, None, Some(&tag()));
        for b in self.shared.location().of_user(&tenant, &user, now) {
            r.headers.push(
                "Contact",
                format!("<{}>;expires={}", b.contact, b.expires.saturating_sub(now)),
            );
        }
        r.headers
            .push("Date", httpdate(std::time::SystemTime::now()));
        self.server_headers(&mut r);
        if waits.is_empty() {
            return self.respond(tx, r);
        }
        let cmds = self.cmds_tx.clone();
        let failed = Message::response_to(&msg, 500, None, Some(&tag()));
        tokio::spawn(async move {
            let mut ok = true;
            for w in waits {
                ok &= matches!(w.await, Ok(Ok(())));
            }
            let _ = cmds.send(Cmd::Respond(tx, Box::new(if ok { r } else { failed })));
        });
    }

    /// The digest check a profile asks of calls and messages, then the
    /// tenant the core assigns: `(authenticated user and domain, tenant)`,
    /// or `None` when a challenge or refusal was sent.
    #[allow(clippy::type_complexity)]
    fn admit(
        &mut self,
        tx: TxId,
        msg: &Message,
        from: Peer,
    ) -> Option<(Option<(String, String)>, String)> {
        let authenticated = if self.settings.auth_calls {
            Some(self.authenticate(tx, msg, from)?)
        } else {
            None
        };
        let directory = self.shared.switch().directory();
        let request_domain = msg.uri().map(|u| u.host.text()).unwrap_or_default();
        let tenant = dialtone_core::context::inbound_tenant(
            authenticated.as_ref().map(|(_, d)| d.as_str()),
            &request_domain,
            &directory,
            &self.shared.default_domain,
        );
        Some((authenticated, tenant))
    }

    fn on_invite(&mut self, tx: TxId, msg: Message, from: Peer) {
        let Some((authenticated, tenant)) = self.admit(tx, &msg, from) else {
            return;
        };
        let offer = msg
            .body_str()
            .filter(|b| !b.trim().is_empty())
            .map(SessionDescription::parse);
        let offer = match offer {
            Some(Ok(sdp)) => Some(sdp),
            Some(Err(e)) => {
                tracing::info!(error = %e, "unreadable SDP offer");
                return self.respond_code(tx, &msg, 488, None);
            }
            None => None,
        };
        let w = WaitingInvite {
            since: Instant::now(),
            tx,
            msg,
            from,
            offer,
            authenticated,
            tenant,
        };
        // Behind any call that waits for a port already (`None`).
        let allocated = self
            .waiting
            .is_empty()
            .then(|| self.shared.media().allocate());
        match allocated {
            Some(Ok(media)) => self.start_call(w, Arc::new(media), false),
            Some(Err(e)) if !e.is_port_shortage() => {
                tracing::warn!(error = %e, "no RTP port for a new call");
                self.refuse_no_port(w.tx, &w.msg);
            }
            _ if self.waiting.invites.len() < PORT_WAIT_MAX => {
                // Wait for a pair; 100 Trying now stops the caller's
                // retransmissions meanwhile.
                self.send_trying(w.tx, &w.msg);
                self.waiting.invites.push_back(w);
                self.waiting.arm();
            }
            _ => {
                tracing::warn!(
                    waiting = PORT_WAIT_MAX,
                    "no RTP port for a new call, and too many wait for one"
                );
                self.refuse_no_port(w.tx, &w.msg);
            }
        }
    }

    /// Creates the channel of an admitted INVITE with its RTP pair
    /// (`trying_sent`: it waited for the pair, and 100 Trying went out
    /// then).
    fn start_call(&mut self, w: WaitingInvite, media: Arc<LegHandle>, trying_sent: bool) {
        let WaitingInvite {
            tx,
            msg,
            from,
            offer,
            authenticated,
            tenant,
            ..
        } = w;
        let switch = self.shared.switch();
        if let Some(addr) = offer.as_ref().and_then(|o| o.media_address(0)) {
            let _ = self.shared.media().set_remote(&media, addr);
        }
        let from_na = msg.from();
        let caller_number = authenticated
            .as_ref()
            .map(|(u, _)| u.clone())
            .or_else(|| from_na.as_ref().and_then(|f| f.uri.user.clone()))
            .unwrap_or_default();
        let caller_name = from_na
            .as_ref()
            .and_then(|f| f.display.clone())
            .unwrap_or_else(|| caller_number.clone());
        let destination = msg.uri().and_then(|u| u.user.clone()).unwrap_or_default();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let engine = self.shared.media();
        let _ = engine.set_listener(
            &media,
            leg_listener(ev_tx.clone(), self.cmds_tx.clone(), id),
        );
        if let Some(offer) = &offer {
            let _ = engine.set_format(&media, media_format(offer, true));
        }
        let mut variables = vec![
            (
                "sip_call_id".to_string(),
                msg.call_id().unwrap_or("").to_string(),
            ),
            (
                "sip_from_user".to_string(),
                from_na
                    .as_ref()
                    .and_then(|f| f.uri.user.clone())
                    .unwrap_or_default(),
            ),
            (
                "sip_from_host".to_string(),
                from_na
                    .as_ref()
                    .map(|f| f.uri.host.text())
                    .unwrap_or_default(),
            ),
            (
                "sip_req_uri".to_string(),
                msg.uri().map(|u| u.to_string()).unwrap_or_default(),
            ),
            (
                "sip_network_ip".to_string(),
                dialtone_sip::message::ip_text(from.addr.ip()),
            ),
            ("sip_network_port".to_string(), from.addr.port().to_string()),
            ("sip_transport".to_string(), from.transport.to_string()),
            (
                "sip_user_agent".to_string(),
                msg.headers.get("User-Agent").unwrap_or("").to_string(),
            ),
        ];
        if let Some((user, domain)) = &authenticated {
            variables.push(("sip_authorized".into(), "true".into()));
            variables.push(("user_name".into(), user.clone()));
            variables.push(("domain_name".into(), domain.clone()));
        }
        let spec = InboundSpec {
            endpoint: "sofia".into(),
            profile: self.settings.name.clone(),
            name: format!(
                "sofia/{}/{}@{}",
                self.settings.name, caller_number, from.addr
            ),
            tenant,
            context: self.settings.context.clone(),
            destination,
            caller_id_name: caller_name,
            caller_id_number: caller_number,
            network_addr: dialtone_sip::message::ip_text(from.addr.ip()),
            variables,
            depth: 0,
            direction: Direction::Inbound,
        };
        let control = Box::new(SipControl {
            call: id,
            cmds: self.cmds_tx.clone(),
            media: Some(Arc::new(SipMedia {
                shared: Arc::clone(&self.shared),
                leg: Arc::clone(&media),
                outbound: None,
            })),
        });
        let uuid = match switch.inbound(
            spec,
            Remote {
                events: ev_rx,
                control,
            },
        ) {
            Ok(u) => u,
            Err(overload) => {
                drop(media);
                let mut r = Message::response_to(&msg, 503, None, Some(&tag()));
                r.headers
                    .push("Retry-After", self.shared.retry_after.to_string());
                r.headers
                    .push("Warning", format!("399 dialtone \"{overload}\""));
                return self.respond(tx, r);
            }
        };
        if !trying_sent {
            self.send_trying(tx, &msg);
        }
        let remote_uri = msg.headers.get("From").unwrap_or("").to_string();
        let local_uri = msg.headers.get("To").unwrap_or("").to_string();
        let call = Call {
            id,
            uuid: uuid.clone(),
            inbound: true,
            state: CallState::Early,
            invite_tx: Some(tx),
            call_id: msg.call_id().unwrap_or("").to_string(),
            local_tag: tag(),
            remote_tag: from_na.as_ref().and_then(|f| f.tag().map(str::to_string)),
            local_uri,
            remote_uri,
            remote_target: msg.contacts().first().map(|c| c.uri.clone()),
            route_set: msg
                .headers
                .get_all("Record-Route")
                .iter()
                .map(|s| s.to_string())
                .collect(),
            local_cseq: 0,
            remote_cseq: msg.cseq().map(|c| c.seq),
            peer: from,
            invite: Arc::new(msg),
            events: ev_tx,
            media: Some(media),
            origin: OriginState::new(rand_u64() >> 12),
            pending_2xx: None,
            credentials: None,
            auth_tries: 0,
            bye_tx: None,
        };
        self.shared.legs.lock().insert(
            uuid,
            crate::LegSdp {
                remote: offer.map(Arc::new),
                media: call.media.clone(),
                call: Some((self.cmds_tx.clone(), id)),
            },
        );
        self.by_tx.insert(tx, id);
        self.by_dialog
            .insert(dialog_key(&call.call_id, &call.local_tag), id);
        self.calls.insert(id, call);
    }

    /// A MESSAGE outside a dialog: the tenant's `route-message` export
    /// decides (reply, forward to a user, drop). The dialplan runs on the
    /// guest pool; its decision comes back as [`Cmd::MessageDecided`].
    fn on_message(&mut self, tx: TxId, msg: Message, from: Peer) {
        let Some((authenticated, tenant)) = self.admit(tx, &msg, from) else {
            return;
        };
        let switch = self.shared.switch();
        let aor = |n: Option<NameAddr>| {
            n.map(|n| format!("{}@{}", n.uri.user.unwrap_or_default(), n.uri.host))
                .unwrap_or_default()
        };
        let text = TextMessage {
            endpoint: "sofia".into(),
            profile: self.settings.name.clone(),
            tenant,
            from: match &authenticated {
                Some((u, d)) => format!("{u}@{d}"),
                None => aor(msg.from()),
            },
            to: msg
                .uri()
                .map(|u| format!("{}@{}", u.user.clone().unwrap_or_default(), u.host))
                .unwrap_or_default(),
            content_type: msg
                .headers
                .get("Content-Type")
                .unwrap_or("text/plain")
                .to_string(),
            body: String::from_utf8_lossy(&msg.body).into_owned(),
            network_addr: from.addr.to_string(),
        };
        let cmds = self.cmds_tx.clone();
        tokio::spawn(async move {
            let decision = switch.dialplan().route_message(text).await;
            let _ = cmds.send(Cmd::MessageDecided(tx, Box::new(msg), from, decision));
        });
    }

    fn on_message_decided(
        &mut self,
        tx: TxId,
        req: Message,
        from: Peer,
        decision: Result<MessageDecision, RouteFailure>,
    ) {
        match decision {
            Ok(MessageDecision::Drop) => self.respond_code(tx, &req, 200, None),
            Ok(MessageDecision::Reply { body }) => {
                self.respond_code(tx, &req, 200, None);
                // The reply goes back to the sender as a new MESSAGE.
                let Some(sender) = req.from() else {
                    return;
                };
                let to_user = req.uri().and_then(|u| u.user.clone()).unwrap_or_default();
                self.send_message(sender.uri, from, &to_user, &body);
            }
            Ok(MessageDecision::Forward { target }) => {
                let now = unix_now();
                let (user, mut domain) = parse_user_target(&target);
                if domain.is_empty() {
                    domain = self.shared.default_domain.clone();
                }
                let binding = self
                    .shared
                    .location()
                    .of_user(&domain, &user, now)
                    .into_iter()
                    .next();
                match binding.and_then(|b| Uri::parse(&b.contact).ok().map(|u| (u, b))) {
                    Some((uri, b)) => {
                        self.respond_code(tx, &req, 202, None);
                        let from_user = req.from().and_then(|f| f.uri.user).unwrap_or_default();
                        let body = String::from_utf8_lossy(&req.body).into_owned();
                        let peer = Peer {
                            transport: b.transport(),
                            addr: b.source,
                        };
                        self.send_message(uri, peer, &from_user, &body);
                    }
                    None => self.respond_code(tx, &req, 480, None),
                }
            }
            Err(f) => {
                let code = f.cause.to_sip();
                self.respond_code(tx, &req, code, None)
            }
        }
    }

    fn send_message(&mut self, to: Uri, peer: Peer, from_user: &str, body: &str) {
        let mut m = Message::request(Method::Message, to.clone());
        m.headers.push("Via", self.via(peer.transport));
        m.headers.push("Max-Forwards", "70");
        m.headers.push(
            "From",
            format!(
                "<sip:{}@{}>;tag={}",
                if from_user.is_empty() {
                    "dialtone"
                } else {
                    from_user
                },
                self.local_host(peer.transport),
                tag()
            ),
        );
        m.headers.push("To", format!("<{to}>"));
        m.headers
            .push("Call-ID", format!("{}@dialtone", uuid_like()));
        m.headers.push("CSeq", "1 MESSAGE");
        m.headers.push("Content-Type", "text/plain");
        m.body = body.as_bytes().to_vec();
        self.send_request(m, peer);
    }

    fn on_cancel(&mut self, tx: TxId, msg: Message) {
        let Some(inv) = self.tx.invite_for_cancel(&msg) else {
            return self.respond_code(tx, &msg, 481, None);
        };
        self.respond_code(tx, &msg, 200, None);
        let Some(&id) = self.by_tx.get(&inv) else {
            // Still waiting for an RTP pair: no channel yet.
            if let Some(i) = self.waiting.invites.iter().position(|w| w.tx == inv) {
                if let Some(w) = self.waiting.invites.remove(i) {
                    let mut r = Message::response_to(&w.msg, 487, None, Some(&tag()));
                    self.server_headers(&mut r);
                    self.respond(inv, r);
                }
            }
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.state != CallState::Early {
            return;
        }
        c.state = CallState::Ended;
        let invite = c.invite.clone();
        let local_tag = c.local_tag.clone();
        let _ = c
            .events
            .try_send(RemoteEvent::Hangup(HangupCause::OriginatorCancel));
        let mut r = Message::response_to(&invite, 487, None, Some(&local_tag));
        self.server_headers(&mut r);
        self.respond(inv, r);
        self.forget(id);
    }

    fn dialog_of(&self, msg: &Message, incoming_request: bool) -> Option<u64> {
        let call_id = msg.call_id()?;
        // Our tag is the To tag of requests we receive, the From tag of
        // responses we receive.
        let local = if incoming_request {
            msg.to_tag()?.to_string()
        } else {
            msg.from_tag()?.to_string()
        };
        self.by_dialog.get(&dialog_key(call_id, &local)).copied()
    }

    fn on_in_dialog(&mut self, tx: TxId, msg: Message, _from: Peer, method: Method) {
        let Some(id) = self.dialog_of(&msg, true) else {
            return self.respond_code(tx, &msg, 481, None);
        };
        // A request older than the last one is out of order (RFC 3261
        // 12.2.2).
        if !matches!(method, Method::Ack | Method::Cancel) {
            if let (Some(c), Some(cseq)) = (self.calls.get_mut(&id), msg.cseq()) {
                if !cseq_in_order(&mut c.remote_cseq, cseq.seq) {
                    return self.respond_code(tx, &msg, 500, Some("CSeq Out of Order"));
                }
            }
        }
        match method {
            Method::Bye => {
                self.respond_code(tx, &msg, 200, None);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.state = CallState::Ended;
                    let _ = c
                        .events
                        .try_send(RemoteEvent::Hangup(HangupCause::NormalClearing));
                }
                self.forget(id);
            }
            Method::Invite | Method::Update => self.on_reinvite(tx, id, msg),
            Method::Ack => {}
            Method::Info => {
                self.info_dtmf(id, &msg);
                self.relay_in_dialog(tx, id, msg)
            }
            Method::Message => self.relay_in_dialog(tx, id, msg),
            Method::Options => {
                let mut r = Message::response_to(&msg, 200, None, None);
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", "application/sdp");
                self.server_headers(&mut r);
                self.respond(tx, r);
            }
            Method::Notify => self.respond_code(tx, &msg, 200, None),
            _ => self.respond_code(tx, &msg, 501, None),
        }
    }

    /// A re-INVITE or UPDATE (hold, unhold, new media address): answered
    /// here with the switch's SDP, direction mirrored; the relay follows the
    /// new address, and a Contact refreshes the remote target.
    fn on_reinvite(&mut self, tx: TxId, id: u64, msg: Message) {
        let offer = msg
            .body_str()
            .and_then(|b| SessionDescription::parse(b).ok());
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(contact) = msg.contacts().first() {
            c.remote_target = Some(contact.uri.clone());
        }
        let mut r = Message::response_to(&msg, 200, None, Some(&c.local_tag));
        if let (Some(offer), Some(media)) = (&offer, &c.media) {
            if let Some(addr) = offer.media_address(0) {
                let _ = self.shared.media().set_remote(media, addr);
            }
            let answer = offer.answer_with_codecs(
                &["PCMU", "PCMA"],
                self.shared.media_ip,
                &[Some(media.rtp_addr().port())],
                &mut c.origin,
            );
            let _ = self
                .shared
                .media()
                .set_format(media, media_format(&answer, false));
            // Hold stops the phone's RTP: no timeout until it resumes.
            let timeout = self.shared.rtp_timeout.filter(|_| !offer.is_hold());
            let _ = self.shared.media().set_rtp_timeout(media, timeout);
            r.headers.push("Content-Type", "application/sdp");
            r.body = answer.render().into_bytes();
        }
        r.headers.push(
            "Contact",
            contact_of(&self.transports, c.peer.transport, &c.invite),
        );
        let peer = c.peer;
        let reinvite = msg.method() == Some(&Method::Invite);
        if reinvite {
            disarm_2xx(&mut self.retx_2xx, c);
        }
        self.server_headers(&mut r);
        let r = Arc::new(r);
        // An UPDATE's 200 is a non-INVITE response: no retransmissions.
        if reinvite && !peer.transport.reliable() {
            if let Some(c) = self.calls.get_mut(&id) {
                let due = Instant::now() + Duration::from_millis(500);
                c.pending_2xx = Some((Arc::clone(&r), due, Duration::from_millis(500)));
                self.retx_2xx.insert((due, id));
            }
        }
        self.respond(tx, r);
    }

    fn on_ack(&mut self, msg: Message, _from: Peer) {
        if let Some(id) = self.dialog_of(&msg, true) {
            if let Some(c) = self.calls.get_mut(&id) {
                disarm_2xx(&mut self.retx_2xx, c);
            }
        }
    }

    fn on_tx_failed(&mut self, tx: TxId) {
        let Some(&id) = self.by_tx.get(&tx) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.bye_tx == Some(tx) {
            return self.forget(id);
        }
        if !c.inbound && c.state == CallState::Early && c.invite_tx == Some(tx) {
            c.state = CallState::Ended;
            let _ = c
                .events
                .try_send(RemoteEvent::Hangup(HangupCause::RecoveryOnTimerExpire));
            self.forget(id);
        } else if c.inbound && c.state == CallState::Answered {
            // Timer H: the ACK never came.
            self.end_call_with_bye(id, HangupCause::RecoveryOnTimerExpire);
        }
    }

    // -- Responses to our requests ------------------------------------------

    fn on_response(&mut self, tx: TxId, msg: Message) {
        let Some(&id) = self.by_tx.get(&tx) else {
            return;
        };
        let code = msg.code().unwrap_or(0);
        let is_invite = msg.cseq().is_some_and(|c| c.method == Method::Invite);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if !is_invite || c.inbound {
            // BYE/CANCEL answers: nothing more to do.
            if c.bye_tx == Some(tx) && code >= 200 {
                self.forget(id);
            }
            return;
        }
        if let Some(t) = msg.to_tag().map(str::to_string) {
            if c.remote_tag.is_none() && code > 100 {
                c.remote_tag = Some(t);
            }
        }
        if code > 100 && code < 300 {
            if let Some(contact) = msg.contacts().first() {
                c.remote_target = Some(contact.uri.clone());
            }
            let rr: Vec<String> = msg
                .headers
                .get_all("Record-Route")
                .iter()
                .rev()
                .map(|s| s.to_string())
                .collect();
            if !rr.is_empty() {
                c.route_set = rr;
            }
        }
        let sdp = msg
            .body_str()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| SessionDescription::parse(b).ok())
            .map(Arc::new);
        if let Some(sdp) = &sdp {
            if let (Some(addr), Some(media)) = (sdp.media_address(0), &c.media) {
                let _ = self.shared.media().set_remote(media, addr);
                let _ = self
                    .shared
                    .media()
                    .set_format(media, media_format(sdp, false));
            }
            if let Some(leg) = self.shared.legs.lock().get_mut(&c.uuid) {
                leg.remote = Some(sdp.clone());
            }
        }
        match code {
            100 => {}
            101..=199 => {
                if sdp.is_some() {
                    self.shared.bridge_media(&c.uuid);
                    let _ = c.events.try_send(RemoteEvent::EarlyMedia);
                } else {
                    let _ = c.events.try_send(RemoteEvent::Progress);
                }
            }
            200..=299 => {
                let first = c.state == CallState::Early;
                let cancelled = c.state == CallState::Ended && c.bye_tx.is_none();
                c.state = CallState::Answered;
                let uuid = c.uuid.clone();
                self.send_2xx_ack(id, &msg);
                if cancelled {
                    // A 200 that crossed our CANCEL: the dialog exists now,
                    // and only a BYE ends it (RFC 3261 9.1).
                    self.end_call_with_bye(id, HangupCause::OriginatorCancel);
                    return;
                }
                if first {
                    self.shared.bridge_media(&uuid);
                    if let Some(c) = self.calls.get(&id) {
                        let _ = c.events.try_send(RemoteEvent::Answered);
                    }
                    self.arm_rtp_timeout(id, true);
                }
            }
            401 | 407 if c.credentials.is_some() && c.auth_tries < 2 => {
                c.auth_tries += 1;
                let (user, pass) = c.credentials.clone().unwrap_or_default();
                let hdr = if code == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let challenge = msg
                    .headers
                    .get(hdr)
                    .and_then(|v| auth::Challenge::parse(v).ok());
                let Some(ch) = challenge else {
                    return self.fail_outbound(id, code);
                };
                let mut invite = Message::clone(&c.invite);
                let uri = invite.uri().map(|u| u.to_string()).unwrap_or_default();
                let cnonce = auth::generate_cnonce().unwrap_or_else(|_| tag());
                let creds = auth::respond(
                    &ch,
                    &auth::ClientRequest {
                        username: &user,
                        password: &pass,
                        method: "INVITE",
                        uri: &uri,
                        body: &invite.body,
                        cnonce: &cnonce,
                        nc: 1,
                    },
                );
                let Ok(creds) = creds else {
                    return self.fail_outbound(id, code);
                };
                c.local_cseq += 1;
                invite
                    .headers
                    .set("CSeq", format!("{} INVITE", c.local_cseq));
                invite.headers.remove("Via");
                let peer = c.peer;
                invite.headers.push_front("Via", self.via(peer.transport));
                invite.headers.set(
                    if code == 401 {
                        "Authorization"
                    } else {
                        "Proxy-Authorization"
                    },
                    creds.to_string(),
                );
                let invite = Arc::new(invite);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.invite = Arc::clone(&invite);
                    c.remote_tag = None;
                }
                if let Some(ntx) = self.send_request(invite, peer) {
                    self.by_tx.insert(ntx, id);
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.invite_tx = Some(ntx);
                    }
                }
            }
            _ => self.fail_outbound(id, code),
        }
    }

    fn fail_outbound(&mut self, id: u64, code: u16) {
        if let Some(c) = self.calls.get_mut(&id) {
            if c.state == CallState::Early {
                c.state = CallState::Ended;
                let _ = c
                    .events
                    .try_send(RemoteEvent::Hangup(HangupCause::from_sip(code)));
            }
        }
        self.forget(id);
    }

    /// The ACK for a 2xx: a new request in the dialog (RFC 3261 13.2.2.4).
    fn send_2xx_ack(&mut self, id: u64, resp: &Message) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let (target, routes, peer) = next_hop(c);
        let mut ack = Message::request(Method::Ack, target);
        ack.headers.push(
            "Via",
            format!(
                "{};branch={}",
                self.via_base(c.peer.transport),
                transaction_branch()
            ),
        );
        ack.headers.push("Max-Forwards", "70");
        for r in routes {
            ack.headers.push("Route", r);
        }
        ack.headers.push(
            "From",
            c.invite.headers.get("From").unwrap_or("").to_string(),
        );
        ack.headers
            .push("To", resp.headers.get("To").unwrap_or("").to_string());
        ack.headers.push("Call-ID", c.call_id.clone());
        let seq = resp.cseq().map(|s| s.seq).unwrap_or(1);
        ack.headers.push("CSeq", format!("{seq} ACK"));
        if let Some(a) = c.invite.headers.get("Proxy-Authorization") {
            ack.headers.push("Proxy-Authorization", a.to_string());
        }
        let _ = self.transports.send(peer, &ack);
    }

    // -- Commands from the core ---------------------------------------------

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Control(id, ctl) => self.on_control(id, ctl),
            Cmd::MediaTimeout(id) => self.on_media_timeout(id),
            Cmd::Respond(tx, r) => self.respond(tx, *r),
            Cmd::MessageDecided(tx, req, from, decision) => {
                self.on_message_decided(tx, *req, from, decision)
            }
            Cmd::Relay(id, req, reply, origin) => self.on_relay(id, *req, reply, origin),
            Cmd::Dial(req, target, reply) => {
                // Behind any B-leg that waits for a port already (`None`).
                let media = self.waiting.dials.is_empty().then(|| self.dial_media(&req));
                match media {
                    Some(Ok(media)) => {
                        let r = self.dial(&req, target, media);
                        // Let go of the request first: the core takes it
                        // back whole.
                        drop(req);
                        let _ = reply.send(r);
                    }
                    Some(Err(e)) if !e.is_port_shortage() => {
                        tracing::warn!(error = %e, "no RTP port for an outbound leg");
                        let _ = reply.send(Err(HangupCause::SwitchCongestion));
                    }
                    _ => {
                        self.waiting.dials.push_back(WaitingDial {
                            since: Instant::now(),
                            req,
                            target,
                            reply,
                        });
                        self.waiting.arm();
                    }
                }
            }
            Cmd::Reload(r) => self.on_reload(*r),
        }
    }

    /// A reload: new context/auth/registrar settings (addresses and
    /// certificates only at the next start), gateways kept when unchanged,
    /// restarted when changed, added and removed.
    fn on_reload(&mut self, r: Reload) {
        if let Some(mut new) = r.settings {
            // Sockets stay as bound.
            new.bind = self.settings.bind;
            new.tls_bind = self.settings.tls_bind;
            new.tls_cert = self.settings.tls_cert.clone();
            new.tls_key = self.settings.tls_key.clone();
            new.tls_ca = self.settings.tls_ca.clone();
            if new != self.settings {
                tracing::info!(profile = %new.name, context = %new.context, auth_calls = new.auth_calls, accept_register = new.accept_register, "profile settings reloaded");
                self.settings = new;
            }
        }
        let now = Instant::now();
        let mut old: Vec<Option<Gateway>> = std::mem::take(&mut self.gateways)
            .into_iter()
            .map(Some)
            .collect();
        let mut moved: HashMap<usize, usize> = HashMap::new();
        let mut next = Vec::with_capacity(r.gateways.len());
        for (g, peer) in r.gateways {
            let same = old.iter().position(|o| {
                o.as_ref()
                    .is_some_and(|o| o.settings == g && o.peer == peer)
            });
            match same.and_then(|i| old[i].take().map(|gw| (i, gw))) {
                Some((i, gw)) => {
                    moved.insert(i, next.len());
                    next.push(gw);
                }
                None => {
                    tracing::info!(profile = %self.settings.name, gateway = %g.name, proxy = %g.proxy, "gateway (re)started by reload");
                    if let Some(name) = tls_name(peer.transport, &g.proxy) {
                        self.transports.set_tls_name(peer.addr, &name);
                    }
                    let call_id = format!("gw-{}-{:x}@dialtone", g.name, rand_u64());
                    next.push(Gateway::new(g, peer, now, call_id));
                }
            }
        }
        for gw in old.into_iter().flatten() {
            if !next.iter().any(|n| n.settings.name == gw.settings.name) {
                tracing::info!(profile = %self.settings.name, gateway = %gw.settings.name, "gateway removed by reload");
            }
        }
        self.gateways = next;
        // Transactions of kept gateways follow them; the others' answers
        // are dropped.
        let txs = std::mem::take(&mut self.gw_txs);
        self.gw_txs = txs
            .into_iter()
            .filter_map(|(tx, (i, kind))| moved.get(&i).map(|n| (tx, (*n, kind))))
            .collect();
    }

    fn on_control(&mut self, id: u64, ctl: Control) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.state == CallState::Ended {
            return;
        }
        if !c.inbound {
            // Outbound legs: only hangup means anything to the far end.
            if let Control::Hangup(_) = ctl {
                if c.state == CallState::Early {
                    if let Some(cancel) = c.invite_tx.and_then(|t| self.tx.cancel_request(t)) {
                        let peer = c.peer;
                        if let Some(t) = self.send_request(cancel, peer) {
                            self.by_tx.insert(t, id);
                        }
                    }
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.state = CallState::Ended;
                    }
                    // The INVITE transaction finishes on its own (487 then
                    // our ACK, or Timer B / CancelWait); forget the call
                    // once it has had time to.
                    self.forget_later(id);
                } else {
                    self.end_call_with_bye(id, HangupCause::NormalClearing);
                }
            }
            return;
        }
        let Some(tx) = c.invite_tx else {
            return;
        };
        match ctl {
            Control::Ring => {
                if c.state == CallState::Early {
                    let mut r = Message::response_to(&c.invite, 180, None, Some(&c.local_tag));
                    copy_record_route(&c.invite, &mut r);
                    r.headers.push(
                        "Contact",
                        contact_of(&self.transports, c.peer.transport, &c.invite),
                    );
                    self.server_headers(&mut r);
                    self.respond(tx, r);
                }
            }
            Control::PreAnswer | Control::Answer => {
                let code = if matches!(ctl, Control::Answer) {
                    200
                } else {
                    183
                };
                if c.state != CallState::Early {
                    return;
                }
                let body = self.local_sdp(id);
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                let mut r = Message::response_to(&c.invite, code, None, Some(&c.local_tag));
                copy_record_route(&c.invite, &mut r);
                r.headers.push(
                    "Contact",
                    contact_of(&self.transports, c.peer.transport, &c.invite),
                );
                r.headers.push("Allow", ALLOW);
                if let Some(b) = body {
                    r.headers.push("Content-Type", "application/sdp");
                    r.body = b.into_bytes();
                }
                r.headers.push("Server", self.shared.sip.user_agent.clone());
                let r = Arc::new(r);
                if code == 200 {
                    c.state = CallState::Answered;
                    if !c.peer.transport.reliable() {
                        let due = Instant::now() + Duration::from_millis(500);
                        c.pending_2xx = Some((Arc::clone(&r), due, Duration::from_millis(500)));
                        self.retx_2xx.insert((due, id));
                    }
                }
                let answered = code == 200;
                let on_hold = self.shared.remote_sdp(&c.uuid).is_some_and(|o| o.is_hold());
                self.respond(tx, r);
                if answered {
                    self.arm_rtp_timeout(id, !on_hold);
                }
            }
            Control::Hangup(cause) => {
                if c.state == CallState::Early {
                    let code = if cause == HangupCause::OriginatorCancel {
                        487
                    } else {
                        cause.to_sip()
                    };
                    let mut r = Message::response_to(&c.invite, code, None, Some(&c.local_tag));
                    r.headers.push(
                        "Reason",
                        format!("Q.850;cause={};text=\"{}\"", cause.code(), cause.name()),
                    );
                    self.server_headers(&mut r);
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.state = CallState::Ended;
                    }
                    self.respond(tx, r);
                    self.forget(id);
                } else {
                    self.end_call_with_bye(id, cause);
                }
            }
            Control::Respond(code, reason) => {
                if c.state != CallState::Early {
                    return;
                }
                match code {
                    180 => self.on_control(id, Control::Ring),
                    183 => self.on_control(id, Control::PreAnswer),
                    200..=299 => self.on_control(id, Control::Answer),
                    300..=699 => {
                        let mut r = Message::response_to(
                            &c.invite,
                            code,
                            reason.as_deref(),
                            Some(&c.local_tag),
                        );
                        self.server_headers(&mut r);
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.state = CallState::Ended;
                            let _ = c
                                .events
                                .try_send(RemoteEvent::Hangup(HangupCause::from_sip(code)));
                        }
                        self.respond(tx, r);
                        self.forget(id);
                    }
                    _ => {
                        let r = Message::response_to(
                            &c.invite,
                            code,
                            reason.as_deref(),
                            Some(&c.local_tag),
                        );
                        self.respond(tx, r);
                    }
                }
            }
        }
    }

    /// The SDP this leg's phone gets: the bridged peer's SDP rewritten to
    /// the switch, or the switch's own answer to the phone's offer.
    fn local_sdp(&mut self, id: u64) -> Option<String> {
        let c = self.calls.get_mut(&id)?;
        let port = c.media.as_ref().map(|m| m.rtp_addr().port());
        let peer_sdp = self.shared.peer_sdp(&c.uuid);
        let legs = self.shared.legs.lock();
        let own = legs.get(&c.uuid).and_then(|l| l.remote.clone());
        drop(legs);
        let ip = self.shared.media_ip;
        let sdp = match (peer_sdp, own) {
            // The far end picked a codec this phone offered (or this phone
            // made no offer): its answer passes through, no transcoding.
            (Some(peer), own) if own.as_ref().is_none_or(|o| offers_answered_codec(o, &peer)) => {
                peer.rewrite_for_relay(ip, &[port], &mut c.origin)
            }
            // It picked one this phone did not offer (the switch added it):
            // this phone gets its own codec and the relay transcodes.
            (_, Some(offer)) => {
                offer.answer_with_codecs(&["PCMU", "PCMA"], ip, &[port], &mut c.origin)
            }
            // (With an answer from the far end, the first arm took it.)
            (_, None) => return port.map(|p| fresh_offer(ip, p, &mut c.origin)),
        };
        if let Some(media) = &c.media {
            let _ = self
                .shared
                .media()
                .set_format(media, media_format(&sdp, false));
        }
        Some(sdp.render())
    }

    /// Arms (or, on hold, disarms) the call's RTP timeout.
    fn arm_rtp_timeout(&self, id: u64, armed: bool) {
        let Some(media) = self.calls.get(&id).and_then(|c| c.media.as_ref()) else {
            return;
        };
        let t = self.shared.rtp_timeout.filter(|_| armed);
        let _ = self.shared.media().set_rtp_timeout(media, t);
    }

    /// No RTP for the configured time on an answered call: BYE with
    /// MEDIA_TIMEOUT, and the channel learns that cause.
    fn on_media_timeout(&mut self, id: u64) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.state != CallState::Answered {
            return;
        }
        tracing::info!(uuid = %c.uuid, "no RTP from the phone: hanging up with MEDIA_TIMEOUT");
        let _ = c
            .events
            .try_send(RemoteEvent::Hangup(HangupCause::MediaTimeout));
        self.end_call_with_bye(id, HangupCause::MediaTimeout);
    }

    fn end_call_with_bye(&mut self, id: u64, cause: HangupCause) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.bye_tx.is_some() {
            return;
        }
        c.state = CallState::Ended;
        disarm_2xx(&mut self.retx_2xx, c);
        let _ = c
            .events
            .try_send(RemoteEvent::Hangup(HangupCause::NormalClearing));
        let Some((bye, peer)) = self.dialog_request(id, Method::Bye) else {
            return self.forget(id);
        };
        let mut bye = bye;
        bye.headers.push(
            "Reason",
            format!("Q.850;cause={};text=\"{}\"", cause.code(), cause.name()),
        );
        match self.send_request(bye, peer) {
            Some(t) => {
                self.by_tx.insert(t, id);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.bye_tx = Some(t);
                }
            }
            None => self.forget(id),
        }
    }

    fn forget_later(&mut self, id: u64) {
        self.to_forget
            .push_back((Instant::now() + FORGET_AFTER, id));
        // Release media now; the transaction may linger.
        if let Some(c) = self.calls.get_mut(&id) {
            c.media = None;
            self.shared.forget_leg(&c.uuid);
        }
    }

    /// Drops a call: its media port, its SDP, its dialog entry.
    fn forget(&mut self, id: u64) {
        if let Some(mut c) = self.calls.remove(&id) {
            disarm_2xx(&mut self.retx_2xx, &mut c);
            self.shared.forget_leg(&c.uuid);
            self.by_dialog.remove(&dialog_key(&c.call_id, &c.local_tag));
        }
    }

    /// An outbound leg's RTP pair: beside the originator's leg when there
    /// is one, so the two relay on one media worker.
    fn dial_media(&self, req: &OutgoingRequest) -> Result<Arc<LegHandle>, MediaError> {
        let originator_media = req
            .originator
            .as_deref()
            .and_then(|o| self.shared.media_of(o));
        match &originator_media {
            Some(o) => self.shared.media().allocate_beside(o),
            None => self.shared.media().allocate(),
        }
        .map(Arc::new)
    }

    /// Creates an outbound leg on RTP pair `media`.
    fn dial(
        &mut self,
        req: &OutgoingRequest,
        target: Target,
        media: Arc<LegHandle>,
    ) -> Result<Dialed, HangupCause> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut origin = OriginState::new(rand_u64() >> 12);
        let ip = self.shared.media_ip;
        let port = media.rtp_addr().port();
        let offer = match req
            .originator
            .as_deref()
            .and_then(|o| self.shared.remote_sdp(o))
        {
            Some(orig) => {
                // The far end may also pick a codec the caller did not
                // offer: the relay transcodes G.711 and L16.
                let mut offer = orig.rewrite_for_relay(ip, &[Some(port)], &mut origin);
                offer.add_transcodable_codecs();
                offer.render()
            }
            None => fresh_offer(ip, port, &mut origin),
        };
        let call_id = format!("{}@dialtone", uuid_like());
        let local_tag = tag();
        let cid_number = if req.caller_id_number.is_empty() {
            "0000000000".to_string()
        } else {
            req.caller_id_number.clone()
        };
        let local_host = self.local_host(target.peer.transport);
        if let Some(name) = tls_name(target.peer.transport, &target.uri.host.text()) {
            self.transports.set_tls_name(target.peer.addr, &name);
        }
        let from = format!(
            "\"{}\" <sip:{}@{}>",
            req.caller_id_name.replace(['"', '\\'], ""),
            cid_number,
            local_host
        );
        let to = format!("<{}>", target.uri);
        let mut invite = Message::request(Method::Invite, target.uri.clone());
        invite.headers.push("Via", self.via(target.peer.transport));
        invite.headers.push("Max-Forwards", "70");
        invite
            .headers
            .push("From", format!("{from};tag={local_tag}"));
        invite.headers.push("To", to.clone());
        invite.headers.push("Call-ID", call_id.clone());
        invite.headers.push("CSeq", "1 INVITE");
        invite.headers.push(
            "Contact",
            contact_of(&self.transports, target.peer.transport, &invite),
        );
        invite.headers.push("Allow", ALLOW);
        invite
            .headers
            .push("User-Agent", self.shared.sip.user_agent.clone());
        invite.headers.push("Content-Type", "application/sdp");
        invite.body = offer.into_bytes();
        let invite = Arc::new(invite);
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let _ = self.shared.media().set_listener(
            &media,
            leg_listener(ev_tx.clone(), self.cmds_tx.clone(), id),
        );
        let call = Call {
            id,
            uuid: req.uuid.clone(),
            inbound: false,
            state: CallState::Early,
            invite_tx: None,
            invite: Arc::clone(&invite),
            peer: target.peer,
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: None,
            local_uri: from,
            remote_uri: to,
            remote_target: None,
            route_set: Vec::new(),
            local_cseq: 1,
            remote_cseq: None,
            events: ev_tx,
            media: Some(Arc::clone(&media)),
            origin,
            pending_2xx: None,
            credentials: target.credentials.clone(),
            auth_tries: 0,
            bye_tx: None,
        };
        self.shared.legs.lock().insert(
            req.uuid.clone(),
            crate::LegSdp {
                remote: None,
                media: call.media.clone(),
                call: Some((self.cmds_tx.clone(), id)),
            },
        );
        if let Some(o) = &req.originator {
            self.shared.link(o, &req.uuid);
        }
        self.by_dialog.insert(dialog_key(&call_id, &local_tag), id);
        self.calls.insert(id, call);
        let Some(t) = self.send_request(invite, target.peer) else {
            self.forget(id);
            return Err(HangupCause::NetworkOutOfOrder);
        };
        self.by_tx.insert(t, id);
        if let Some(c) = self.calls.get_mut(&id) {
            c.invite_tx = Some(t);
        }
        let control = Box::new(SipControl {
            call: id,
            cmds: self.cmds_tx.clone(),
            media: Some(Arc::new(SipMedia {
                shared: Arc::clone(&self.shared),
                leg: Arc::clone(&media),
                outbound: Some(req.uuid.clone()),
            })),
        });
        Ok(Dialed {
            remote: Remote {
                events: ev_rx,
                control,
            },
            // As FreeSWITCH names it: the dialstring's endpoint part.
            name: format!("sofia/{}", req.data),
            profile: self.settings.name.clone(),
            destination: target.uri.user.clone().unwrap_or_default(),
            variables: vec![("sip_call_id".to_string(), call_id)],
        })
    }

    /// `ip:port` of the listener that `t` leaves from (bracketed IPv6).
    fn local_host(&self, t: Transport) -> String {
        host_port(self.transports.local_addr_for(t))
    }

    fn via_base(&self, t: Transport) -> String {
        format!("SIP/2.0/{} {}", t.via_name(), self.local_host(t))
    }

    fn via(&self, t: Transport) -> String {
        format!("{};branch={};rport", self.via_base(t), transaction_branch())
    }
}

/// The switch's Contact in the dialog of `invite` (ours or the far end's)
/// over `t`: a `sips:` URI when the INVITE's Request-URI is one (RFC 3261
/// 8.1.1.8), else `sip:` with the transport parameter.
fn contact_of(transports: &Transports, t: Transport, invite: &Message) -> String {
    let host = host_port(transports.local_addr_for(t));
    if invite.uri().is_some_and(|u| u.scheme == Scheme::Sips) {
        format!("<sips:dialtone@{host}>")
    } else {
        format!("<sip:dialtone@{host}{}>", t.uri_param())
    }
}

/// A profile's TLS: its listener (certificate and key, which the switch
/// has filled in by now) and the verification of servers it connects to.
fn tls_setup(settings: &ProfileSettings) -> anyhow::Result<TlsSetup> {
    let fail = |e: crate::tls::TlsFileError| anyhow::anyhow!("profile {}: {e}", settings.name);
    let listen = match settings.tls_bind {
        Some(bind) => {
            let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
                anyhow::bail!(
                    "profile {}: TLS on {bind} needs a certificate and a key",
                    settings.name
                );
            };
            Some((bind, crate::tls::server_config(cert, key).map_err(fail)?))
        }
        None => None,
    };
    let client = crate::tls::client_config(settings.tls_ca.as_deref()).map_err(fail)?;
    Ok(TlsSetup { listen, client })
}

/// The name a TLS connection to `host[:port]` verifies the certificate
/// against, when the host is a DNS name (an IP is verified as such).
fn tls_name(t: Transport, hostport: &str) -> Option<String> {
    if t != Transport::Tls {
        return None;
    }
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') && p.parse::<u16>().is_ok() && !h.contains(':') => h,
        _ => hostport,
    };
    match Host::parse(host) {
        Ok(Host::Name(n)) => Some(n),
        _ => None,
    }
}

/// Requests inside a dialog: the ones the switch sends, and the ones it
/// relays between the two legs of a bridge.
impl ProfileCore {
    /// A new request in call `id`'s dialog (RFC 3261 12.2.1.1): remote
    /// target, route set and the next local CSeq, with where to send it
    /// ([`next_hop`]).
    fn dialog_request(&mut self, id: u64, method: Method) -> Option<(Message, Peer)> {
        let user_agent = self.shared.sip.user_agent.clone();
        let (uri, routes, peer) = next_hop(self.calls.get(&id)?);
        let via = self.via(peer.transport);
        let c = self.calls.get_mut(&id)?;
        c.local_cseq += 1;
        let mut m = Message::request(method.clone(), uri);
        m.headers.push("Via", via);
        m.headers.push("Max-Forwards", "70");
        for r in routes {
            m.headers.push("Route", r);
        }
        let (from, to) = if c.inbound {
            (with_tag(&c.local_uri, &c.local_tag), c.remote_uri.clone())
        } else {
            (
                c.invite.headers.get("From").unwrap_or("").to_string(),
                with_tag(&c.remote_uri, c.remote_tag.as_deref().unwrap_or("")),
            )
        };
        m.headers.push("From", from);
        m.headers.push("To", to);
        m.headers.push("Call-ID", c.call_id.clone());
        m.headers
            .push("CSeq", format!("{} {}", c.local_cseq, method.as_str()));
        if method != Method::Bye {
            m.headers.push(
                "Contact",
                contact_of(&self.transports, peer.transport, &c.invite),
            );
        }
        m.headers.push("User-Agent", user_agent);
        Some((m, peer))
    }

    /// A DTMF digit in an INFO (`application/dtmf-relay`, `application/dtmf`)
    /// goes to the channel as a DTMF event; the INFO itself is still relayed
    /// to the bridged leg.
    fn info_dtmf(&mut self, id: u64, msg: &Message) {
        let Some(ct) = msg.headers.get("Content-Type") else {
            return;
        };
        let Some(d) = dialtone_sip::dtmf::parse_info(ct, &msg.body) else {
            return;
        };
        if let Some(c) = self.calls.get(&id) {
            let _ = c.events.try_send(RemoteEvent::Dtmf {
                digit: d.digit,
                duration_ms: d.duration_ms,
                source: "ENDPOINT",
            });
        }
    }

    /// An INFO or MESSAGE in a bridged call goes on to the other leg as a
    /// request in that leg's dialog, with its body; the far end's final
    /// response comes back to the sender ([`Self::on_relay_response`]).
    /// Without a bridged SIP leg, the switch answers 200 itself.
    fn relay_in_dialog(&mut self, tx: TxId, id: u64, msg: Message) {
        let other = self
            .calls
            .get(&id)
            .and_then(|c| self.shared.bridged_call(&c.uuid));
        let Some((cmds, other)) = other else {
            return self.respond_code(tx, &msg, 200, None);
        };
        if let Err(mpsc::error::SendError(Cmd::Relay(_, msg, ..))) =
            cmds.send(Cmd::Relay(other, Box::new(msg), self.cmds_tx.clone(), tx))
        {
            self.respond_code(tx, &msg, 500, None);
        }
    }

    /// Sends `req`, relayed from the bridged leg, in call `id`'s dialog.
    fn on_relay(&mut self, id: u64, req: Message, reply: mpsc::UnboundedSender<Cmd>, origin: TxId) {
        let relayed = Relayed { reply, origin, req };
        let method = relayed.req.method().cloned();
        let live = self
            .calls
            .get(&id)
            .is_some_and(|c| c.state != CallState::Ended && c.remote_tag.is_some());
        let request = match method {
            Some(m) if live => self.dialog_request(id, m),
            _ => None,
        };
        let Some((mut m, peer)) = request else {
            // The other leg has no dialog (yet, or any more).
            return relayed.answer(200, None, None);
        };
        for name in ["Content-Type", "Content-Disposition", "Info-Package"] {
            if let Some(v) = relayed.req.headers.get(name) {
                m.headers.push(name, v.to_string());
            }
        }
        m.body = relayed.req.body.clone();
        match self.send_request(m, peer) {
            Some(t) => {
                self.relays.insert(t, relayed);
            }
            None => relayed.answer(500, None, None),
        }
    }

    /// The final response to a relayed request, carried back to its sender.
    fn on_relay_response(&mut self, tx: TxId, msg: Message) {
        let code = msg.code().unwrap_or(500);
        if code < 200 {
            return;
        }
        let Some(r) = self.relays.remove(&tx) else {
            return;
        };
        // 408 and 481 speak of the other leg's dialog, not the sender's:
        // passed on, they would end the sender's dialog.
        if matches!(code, 408 | 481) {
            return r.answer(500, None, None);
        }
        let reason = match &msg.start {
            dialtone_sip::message::StartLine::Response { reason, .. } => Some(reason.as_str()),
            _ => None,
        };
        let body = msg
            .headers
            .get("Content-Type")
            .map(|t| (t.to_string(), msg.body.clone()));
        r.answer(code, reason, body);
    }
}

impl Relayed {
    /// Answers the relayed request on its own leg.
    fn answer(self, code: u16, reason: Option<&str>, body: Option<(String, Vec<u8>)>) {
        let mut r = Message::response_to(&self.req, code, reason, None);
        if let Some((content_type, body)) = body {
            r.headers.push("Content-Type", content_type);
            r.body = body;
        }
        let _ = self.reply.send(Cmd::Respond(self.origin, Box::new(r)));
    }
}

/// Where the next request of `c`'s dialog goes: its Request-URI, Route
/// headers and next hop. Loose routing (`;lr`): the remote target with the
/// whole route set; a strict first route becomes the Request-URI and the
/// remote target the last Route (RFC 3261 12.2.1.1). The request goes to
/// the first route when its host is an address, else to the far end the
/// dialog talks to (the source of its requests, for phones behind NAT).
fn next_hop(c: &Call) -> (Uri, Vec<String>, Peer) {
    let target = c
        .remote_target
        .clone()
        .or_else(|| c.invite.uri().cloned())
        .unwrap_or_else(|| Uri::sip(None, Host::from(c.peer.addr.ip()), Some(c.peer.addr.port())));
    let Some(first) = c.route_set.first().and_then(|r| NameAddr::parse(r).ok()) else {
        return (target, Vec::new(), c.peer);
    };
    let peer = first
        .uri
        .host
        .ip()
        .map(|ip| Peer {
            transport: first
                .uri
                .transport()
                .and_then(|t| Transport::parse(&t))
                .unwrap_or(c.peer.transport),
            addr: SocketAddr::new(ip, first.uri.port.unwrap_or(5060)),
        })
        .unwrap_or(c.peer);
    if first.uri.param("lr").is_some() {
        return (target, c.route_set.clone(), peer);
    }
    let mut routes = c.route_set[1..].to_vec();
    routes.push(format!("<{target}>"));
    (first.uri, routes, peer)
}

/// A response that creates a dialog carries the request's Record-Route
/// (RFC 3261 12.1.1): the proxies then stay on the path of the caller's
/// requests in the dialog.
fn copy_record_route(req: &Message, r: &mut Message) {
    for h in req.headers.iter().filter(|h| h.name == "Record-Route") {
        r.headers.push("Record-Route", h.value.clone());
    }
}

/// Whether an in-dialog request with CSeq `seq` is in order: not lower than
/// the last one (RFC 3261 12.2.2). If so it becomes the last one.
fn cseq_in_order(last: &mut Option<u32>, seq: u32) -> bool {
    if last.is_some_and(|l| seq < l) {
        return false;
    }
    *last = Some(seq);
    true
}

/// `user/1001@domain`, `1001@domain` or `1001` as (user, domain).
fn parse_user_target(target: &str) -> (String, String) {
    let t = target.strip_prefix("user/").unwrap_or(target);
    match t.split_once('@') {
        Some((u, d)) => (u.to_string(), d.to_string()),
        None => (t.to_string(), String::new()),
    }
}

/// Methods the switch answers.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, MESSAGE, UPDATE, REGISTER";

fn dialog_key(call_id: &str, local_tag: &str) -> String {
    format!("{call_id}\u{0}{local_tag}")
}

fn with_tag(na: &str, tag: &str) -> String {
    match NameAddr::parse(na) {
        Ok(mut n) => {
            if n.tag().is_none() && !tag.is_empty() {
                n.set_param("tag", Some(tag));
            }
            n.to_string()
        }
        Err(_) => na.to_string(),
    }
}

fn transaction_branch() -> String {
    format!("z9hG4bK{:016x}", rand_u64())
}

fn uuid_like() -> String {
    format!("{:016x}{:016x}", rand_u64(), rand_u64())
}

/// `ip:port` with IPv6 in brackets.
pub fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => dialtone_sip::message::text_in_one(v, 21),
        SocketAddr::V6(v) => {
            dialtone_sip::message::text_in_one(format_args!("[{}]:{}", v.ip(), v.port()), 53)
        }
    }
}

/// An offer from the switch itself (no originator SDP): PCMU, PCMA and
/// telephone-event.
fn fresh_offer(ip: IpAddr, port: u16, origin: &mut OriginState) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let text = format!(
        "v=0\r\no=dialtone 0 0 IN {fam} {ip}\r\ns=Dialtone\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    match SessionDescription::parse(&text) {
        Ok(mut sdp) => {
            origin.stamp(&mut sdp, ip);
            sdp.render()
        }
        Err(_) => text,
    }
}

/// An RFC 7231 date for the Date header.
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{weekday}, {d:02} {month} {y} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(route_set: &[&str], remote_target: Option<&str>) -> Call {
        let (events, _) = mpsc::channel(1);
        let uri = Uri::parse("sip:1001@127.0.0.1:5070").unwrap();
        Call {
            id: 1,
            uuid: "u".into(),
            inbound: true,
            state: CallState::Answered,
            invite_tx: None,
            invite: Arc::new(Message::request(Method::Invite, uri)),
            peer: Peer {
                transport: Transport::Udp,
                addr: "127.0.0.1:5071".parse().unwrap(),
            },
            call_id: "c".into(),
            local_tag: "l".into(),
            remote_tag: Some("r".into()),
            local_uri: "<sip:1001@127.0.0.1>".into(),
            remote_uri: "<sip:2000@127.0.0.1>;tag=r".into(),
            remote_target: remote_target.map(|t| Uri::parse(t).unwrap()),
            route_set: route_set.iter().map(|r| r.to_string()).collect(),
            local_cseq: 0,
            remote_cseq: None,
            events,
            media: None,
            origin: OriginState::new(1),
            pending_2xx: None,
            credentials: None,
            auth_tries: 0,
            bye_tx: None,
        }
    }

    #[test]
    fn cseq_lower_than_the_last_is_out_of_order() {
        let mut last = None;
        assert!(cseq_in_order(&mut last, 5));
        assert!(cseq_in_order(&mut last, 6));
        assert!(!cseq_in_order(&mut last, 4));
        assert_eq!(last, Some(6), "a refused CSeq does not become the last");
        assert!(cseq_in_order(&mut last, 6), "equal is not lower");
        assert!(cseq_in_order(&mut last, 100));
    }

    #[test]
    fn without_a_route_set_requests_follow_the_target_and_go_to_the_far_end() {
        let c = call(&[], Some("sip:2000@10.9.9.9:5060"));
        let (uri, routes, peer) = next_hop(&c);
        assert_eq!(uri.to_string(), "sip:2000@10.9.9.9:5060");
        assert!(routes.is_empty());
        assert_eq!(peer.addr, "127.0.0.1:5071".parse().unwrap());
    }

    #[test]
    fn loose_routes_are_kept_in_order_and_the_first_is_the_next_hop() {
        let c = call(
            &[
                "<sip:127.0.0.1:5450;lr>",
                "<sip:127.0.0.2:5460;lr;transport=tcp>",
            ],
            Some("sip:2000@127.0.0.1:5451"),
        );
        let (uri, routes, peer) = next_hop(&c);
        assert_eq!(uri.to_string(), "sip:2000@127.0.0.1:5451");
        assert_eq!(
            routes,
            [
                "<sip:127.0.0.1:5450;lr>",
                "<sip:127.0.0.2:5460;lr;transport=tcp>"
            ]
        );
        assert_eq!(peer.addr, "127.0.0.1:5450".parse().unwrap());
        assert_eq!(peer.transport, Transport::Udp);
        // A first route named by host name: sent where the dialog's
        // requests come from.
        let c = call(
            &["<sip:proxy.example.com;lr>"],
            Some("sip:2000@127.0.0.1:5451"),
        );
        assert_eq!(next_hop(&c).2.addr, "127.0.0.1:5071".parse().unwrap());
        // Its transport parameter is honoured.
        let c = call(&["<sip:127.0.0.3;lr;transport=tcp>"], None);
        let peer = next_hop(&c).2;
        assert_eq!(peer.addr, "127.0.0.3:5060".parse().unwrap());
        assert_eq!(peer.transport, Transport::Tcp);
    }

    #[test]
    fn a_strict_router_becomes_the_request_uri() {
        let c = call(
            &["<sip:127.0.0.1:5450>", "<sip:127.0.0.2:5460;lr>"],
            Some("sip:2000@127.0.0.1:5451"),
        );
        let (uri, routes, peer) = next_hop(&c);
        assert_eq!(uri.to_string(), "sip:127.0.0.1:5450");
        assert_eq!(
            routes,
            ["<sip:127.0.0.2:5460;lr>", "<sip:2000@127.0.0.1:5451>"]
        );
        assert_eq!(peer.addr, "127.0.0.1:5450".parse().unwrap());
    }
}
