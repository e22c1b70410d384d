//! The RFC 3261 section 17 transaction layer, sans-IO, with RFC 6026's
//! Accepted states.
//!
//! # What this module owns
//!
//! [`TransactionLayer`] owns every live transaction of an endpoint: the four
//! state machines, the index that matches incoming messages to them, and one
//! ordered timer queue for all their timers. It never touches a socket or a
//! clock: the driver passes every received message and every instant in, and
//! carries out the [`Event`]s that come back (transmit this message to that
//! peer, hand this request or response to the transaction user, ...).
//! Retransmissions, absorbing retransmitted requests and responses, the ACK
//! for a non-2xx final response and every timeout happen here; the dialog
//! layer and the transaction user (TU) never see them.
//!
//! Peers are opaque: the layer is generic over a `P: Clone` the driver
//! chooses (a socket address with a transport kind, a connection id, ...).
//! It is stored with each transaction and handed back in
//! [`Event::Transmit`]. A server transaction sends its responses to the peer
//! its request came from (symmetric response routing, as with `rport`).
//!
//! # The state machines
//!
//! Timers are named as in RFC 3261 (see [`Timer`] and [`Config`]);
//! "unreliable" means UDP, where the layer retransmits; on a reliable
//! transport (TCP, TLS, WS) no retransmission timer runs and the "linger"
//! timers D, I, J and K are zero, so the transaction ends at once.
//!
//! - **INVITE client** (17.1.1, RFC 6026 7.2): *Calling* (Timer A
//!   retransmits at T1, 2·T1, 4·T1, ... uncapped; Timer B = 64·T1 reports a
//!   [`Event::Timeout`], the TU's 408) → *Proceeding* on a provisional
//!   response (A and B stop; the optional Timer C runs) → on a 2xx,
//!   *Accepted* (Timer M = 64·T1): every 2xx, retransmissions and other
//!   forks included, goes up to the TU, which sends the ACK for a 2xx itself
//!   outside any transaction; on a 300-699, *Completed*: the layer builds the
//!   ACK ([`ack_for`]), sends it, and re-sends it for every retransmitted
//!   final response until Timer D (32 s unreliable, 0 reliable) ends it.
//! - **Non-INVITE client** (17.1.2): *Trying* (Timer E retransmits at T1,
//!   doubling up to T2; Timer F = 64·T1 times out) → *Proceeding* on a
//!   provisional (E keeps firing, now every T2) → *Completed* on a final
//!   response (Timer K: T4 unreliable, 0 reliable).
//! - **INVITE server** (17.2.1, RFC 6026 7.1): *Proceeding*: the TU's
//!   provisional responses are sent and the last one is re-sent for each
//!   retransmitted INVITE; optionally an automatic `100 Trying`
//!   ([`Config::auto_trying`]). A 2xx from the TU → *Accepted* (Timer L =
//!   64·T1): the TU's 2xx retransmissions pass through, retransmitted INVITEs
//!   are absorbed, an ACK matching the transaction goes to the TU as
//!   [`Event::Ack`]. A 300-699 → *Completed*: Timer G re-sends it at T1,
//!   doubling up to T2 (unreliable only), Timer H = 64·T1 waits for the ACK
//!   and reports a [`Event::Timeout`]; the ACK → *Confirmed* (Timer I: T4
//!   unreliable, 0 reliable), where further ACKs are absorbed.
//! - **Non-INVITE server** (17.2.2): *Trying* (retransmissions absorbed) →
//!   *Proceeding* on the TU's provisional (retransmissions get it again) →
//!   *Completed* on its final response (retransmissions get that; Timer J:
//!   64·T1 unreliable, 0 reliable).
//!
//! *Terminated* is not a state a transaction stays in: it is removed and an
//! [`Event::Terminated`] reported, so [`TransactionLayer::len`] counts live
//! transactions only.
//!
//! Timer C (RFC 3261 16.6 step 11, 16.7 step 2) is optional for a B2BUA:
//! with [`Config::timer_c`] set, each INVITE client transaction arms it
//! when the INVITE is sent and re-arms it on every 101-199 response; if it
//! fires in Proceeding the layer reports [`Event::ProvisionalTimeout`] and
//! the TU should send a CANCEL ([`TransactionLayer::cancel_request`]). Once
//! a CANCEL went out for an INVITE (Timer C or the TU's own), the INVITE
//! transaction waits at most 64·T1 for its final response (RFC 3261 9.1),
//! then reports a timeout for [`Timer::CancelWait`] and ends.
//!
//! # Matching
//!
//! Responses go to the client transaction whose branch (top Via) and CSeq
//! method they carry (17.1.3); others are [`Event::StrayResponse`] (say a
//! 2xx retransmission after Accepted ended, which the TU may need to
//! re-ACK). Requests whose top Via branch starts with the magic cookie
//! `z9hG4bK` match a server transaction on branch, sent-by and method, an
//! ACK matching the INVITE's transaction (17.2.3). A CANCEL has its own
//! transaction; [`TransactionLayer::invite_for_cancel`] finds the INVITE
//! server transaction it refers to. Requests without the cookie (RFC 2543)
//! match on Request-URI, From tag, Call-ID, CSeq number, top Via and method
//! (ACK again as INVITE); an ACK must also carry the To tag of the response
//! the transaction sent. (The To tag of other RFC 2543 requests is not part
//! of the key.) An ACK that matches nothing is an [`Event::StrayAck`]: the
//! ACK for a 2xx, which belongs to the dialog layer.
//!
//! # Driving it
//!
//! ```text
//! loop {
//!     select! {
//!         datagram or frame from peer p => events = layer.on_message(msg, p, reliable, now),
//!         sleep_until(layer.next_deadline()) => events = layer.on_timer(now),
//!         TU wants to send a request => (tx, events) = layer.send_request(req, p, reliable, now)?,
//!         TU answers server tx       => events = layer.send_response(tx, resp, now)?,
//!     }
//!     for e in events {
//!         Transmit { tx, to, msg, .. } => write msg.to_bytes() to `to`;
//!                                         on failure: events = layer.transport_error(tx)
//!         (each handled list may be handed back with layer.recycle(events))
//!         Request / Response / Ack / StrayAck / StrayResponse => to the TU / dialog layer
//!         Timeout / ProvisionalTimeout / TransportError / Terminated => to the TU
//!     }
//!     // re-read next_deadline(): any call may have armed or cancelled timers
//! }
//! ```
//!
//! The driver should check requests with `Message::validate_request`
//! before handing them in (and answer 400 statelessly): a request without a
//! readable Via or CSeq cannot be matched and is dropped here.
//!
//! The timer queue is a `BTreeMap` keyed by (deadline, sequence number);
//! each transaction remembers its armed timers so cancelling one, or
//! removing a transaction with all of its timers, costs O(log n), and
//! [`TransactionLayer::on_timer`] costs O(log n) per expired timer. A fired
//! retransmission timer is re-armed from its deadline, not from `now`, so a
//! late wake-up does not shift the schedule.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::message::{via_sent_by_and_branch, Headers, Message, Method, Via};

/// The RFC 3261 branch prefix: a branch starting with it is globally unique
/// and may be matched on alone (with sent-by and method).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// Timer settings (RFC 3261 Table 4 and RFC 6026).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// T1, the RTT estimate: 500 ms.
    pub t1: Duration,
    /// T2, the cap on non-INVITE and response retransmission intervals: 4 s.
    pub t2: Duration,
    /// T4, the longest a message stays in the network: 5 s.
    pub t4: Duration,
    /// Timer D on unreliable transports: at least 32 s (0 on reliable ones).
    pub d: Duration,
    /// Timer C for INVITE client transactions, off when `None`; RFC 3261
    /// wants more than 3 minutes for a proxy ([`Config::TIMER_C_DEFAULT`]).
    pub timer_c: Option<Duration>,
    /// The automatic `100 Trying` of INVITE server transactions: `None`
    /// never sends one, `Some(ZERO)` sends it as the transaction is created,
    /// `Some(d)` sends it if the TU has sent no response `d` after the
    /// INVITE arrived (RFC 3261 17.2.1 suggests 200 ms, the default).
    pub auto_trying: Option<Duration>,
}

impl Config {
    /// The usual Timer C value when enabled: 180 s.
    pub const TIMER_C_DEFAULT: Duration = Duration::from_secs(180);

    /// Timer A's first interval: T1 (unreliable only; doubles uncapped).
    pub fn timer_a(&self) -> Duration {
        self.t1
    }
    /// Timer B, the INVITE client timeout: 64·T1.
    pub fn timer_b(&self) -> Duration {
        self.t1 * 64
    }
    /// Timer D, the INVITE client's wait for final response
    /// retransmissions: [`Config::d`] unreliable, 0 reliable.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.d
        }
    }
    /// Timer E's first interval: T1 (unreliable only; doubles up to T2).
    pub fn timer_e(&self) -> Duration {
        self.t1
    }
    /// Timer F, the non-INVITE client timeout: 64·T1.
    pub fn timer_f(&self) -> Duration {
        self.t1 * 64
    }
    /// Timer G's first interval: T1 (unreliable only; doubles up to T2).
    pub fn timer_g(&self) -> Duration {
        self.t1
    }
    /// Timer H, the INVITE server's wait for an ACK: 64·T1.
    pub fn timer_h(&self) -> Duration {
        self.t1 * 64
    }
    /// Timer I, the INVITE server's wait for ACK retransmissions: T4
    /// unreliable, 0 reliable.
    pub fn timer_i(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }
    /// Timer J, the non-INVITE server's wait for request retransmissions:
    /// 64·T1 unreliable, 0 reliable.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1 * 64
        }
    }
    /// Timer K, the non-INVITE client's wait for response retransmissions:
    /// T4 unreliable, 0 reliable.
    pub fn timer_k(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }
    /// Timer L, the INVITE server's Accepted state (RFC 6026): 64·T1.
    pub fn timer_l(&self) -> Duration {
        self.t1 * 64
    }
    /// Timer M, the INVITE client's Accepted state (RFC 6026): 64·T1.
    pub fn timer_m(&self) -> Duration {
        self.t1 * 64
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
            timer_c: None,
            auto_trying: Some(Duration::from_millis(200)),
        }
    }
}

// ---------------------------------------------------------------------------
// Public vocabulary
// ---------------------------------------------------------------------------

/// A transaction's handle, unique for the layer's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// Hashes the integer ids a process hands out itself ([`TxId`], call
/// numbers): one multiply instead of SipHash. Only for keys no peer
/// chooses; maps keyed by what arrives on the wire (branches, Call-IDs)
/// keep the standard library's keyed hasher.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIB);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(FIB);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by self-issued integer ids (see [`IdHasher`]).
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// Which of the four state machines a transaction runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// INVITE client transaction (17.1.1).
    InviteClient,
    /// Non-INVITE client transaction (17.1.2).
    NonInviteClient,
    /// INVITE server transaction (17.2.1).
    InviteServer,
    /// Non-INVITE server transaction (17.2.2).
    NonInviteServer,
}

/// A live transaction's state (Terminated ones are removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// INVITE client: INVITE sent, nothing heard yet.
    Calling,
    /// Non-INVITE: request sent (client) or received (server), no
    /// response yet.
    Trying,
    /// A provisional response was received (client) or the request is being
    /// worked on (server).
    Proceeding,
    /// RFC 6026: a 2xx to an INVITE was received (client) or sent (server).
    Accepted,
    /// A final response was received (client) or sent (server; for INVITE,
    /// a 300-699 awaiting its ACK).
    Completed,
    /// INVITE server: the ACK for its 300-699 arrived.
    Confirmed,
}

/// The transaction timers, as RFC 3261 and RFC 6026 name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client request retransmission.
    A,
    /// INVITE client timeout.
    B,
    /// INVITE client provisional-to-final timeout (optional).
    C,
    /// INVITE client wait for final response retransmissions.
    D,
    /// Non-INVITE client request retransmission.
    E,
    /// Non-INVITE client timeout.
    F,
    /// INVITE server final response retransmission.
    G,
    /// INVITE server wait for the ACK.
    H,
    /// INVITE server wait for ACK retransmissions.
    I,
    /// Non-INVITE server wait for request retransmissions.
    J,
    /// Non-INVITE client wait for response retransmissions.
    K,
    /// INVITE server Accepted state.
    L,
    /// INVITE client Accepted state.
    M,
    /// INVITE server automatic `100 Trying`.
    Trying,
    /// INVITE client wait (64·T1) for a final response once CANCELed
    /// (RFC 3261 9.1).
    CancelWait,
}

/// What the driver or the TU must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<P> {
    /// Send `msg` to `to` on the transport the transaction uses.
    Transmit {
        /// The transaction sending it (for [`TransactionLayer::transport_error`]).
        tx: TxId,
        /// Where to.
        to: P,
        /// What: shared with the transaction, which keeps it to send again.
        msg: Arc<Message>,
        /// Whether the transaction runs over a reliable transport.
        reliable: bool,
    },
    /// A new request: a new server transaction for the TU to answer with
    /// [`TransactionLayer::send_response`].
    Request {
        /// The server transaction.
        tx: TxId,
        /// The request.
        msg: Message,
        /// Where it came from.
        from: P,
    },
    /// A response for the TU on one of its client transactions.
    Response {
        /// The client transaction.
        tx: TxId,
        /// The response.
        msg: Message,
    },
    /// An ACK matching an INVITE server transaction in Accepted: the ACK
    /// for its 2xx (RFC 6026 passes it to the TU; handle like a
    /// [`Event::StrayAck`]).
    Ack {
        /// The INVITE server transaction.
        tx: TxId,
        /// The ACK.
        msg: Message,
        /// Where it came from.
        from: P,
    },
    /// A transaction timed out (Timer B: treat as a 408; F; H: the ACK
    /// never came; [`Timer::CancelWait`]). It is terminated right after.
    Timeout {
        /// The transaction.
        tx: TxId,
        /// Which timer fired.
        timer: Timer,
    },
    /// Timer C fired on an INVITE client transaction in Proceeding: the TU
    /// should CANCEL it ([`TransactionLayer::cancel_request`]).
    ProvisionalTimeout {
        /// The INVITE client transaction.
        tx: TxId,
    },
    /// Sending for this transaction failed (reported by the driver through
    /// [`TransactionLayer::transport_error`]). It is terminated right after.
    TransportError {
        /// The transaction.
        tx: TxId,
    },
    /// The transaction ended and was removed; its id is not used again.
    Terminated {
        /// The transaction.
        tx: TxId,
    },
    /// An ACK matching no transaction: the ACK for a 2xx, for the dialog
    /// layer.
    StrayAck {
        /// The ACK.
        msg: Message,
        /// Where it came from.
        from: P,
    },
    /// A response matching no client transaction (a 2xx retransmission
    /// after Accepted ended, say: the TU may re-ACK it).
    StrayResponse {
        /// The response.
        msg: Message,
        /// Where it came from.
        from: P,
    },
}

/// Why the layer refused a call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// `send_request` needs a request.
    #[error("not a request")]
    NotARequest,
    /// `send_response` needs a response.
    #[error("not a response")]
    NotAResponse,
    /// ACKs are sent outside transactions (the layer builds the non-2xx
    /// ACK itself; the TU transmits the 2xx ACK directly).
    #[error("ACK is not sent in a transaction")]
    AckIsNotATransaction,
    /// The request has no readable top Via.
    #[error("missing or bad Via")]
    BadVia,
    /// The request has no readable CSeq, or its method differs.
    #[error("missing or bad CSeq")]
    BadCSeq,
    /// A client transaction with this branch and method is live.
    #[error("branch already in use")]
    DuplicateBranch,
    /// No live transaction has this id (it may have terminated).
    #[error("no such transaction")]
    NoSuchTransaction,
    /// Responses go to server transactions only.
    #[error("not a server transaction")]
    NotAServerTransaction,
    /// This response cannot be sent in the transaction's state.
    #[error("response not allowed in state {0:?}")]
    WrongState(State),
}

// ---------------------------------------------------------------------------
// Message builders
// ---------------------------------------------------------------------------

/// The ACK for a 300-699 response to `invite` (RFC 3261 17.1.1.3): the
/// INVITE's Request-URI, top Via only, Route headers, From, Call-ID and
/// CSeq number (method ACK); the response's To (with its tag);
/// Max-Forwards 70; no body.
pub fn ack_for(invite: &Message, response: &Message) -> Message {
    let uri = invite.uri().cloned().unwrap_or_else(|| {
        crate::message::Uri::sip(None, crate::message::Host::Name("invalid".into()), None)
    });
    let mut ack = Message::request(Method::Ack, uri);
    copy_transaction_headers(invite, &mut ack);
    if let Some(to) = response.headers.get("To") {
        ack.headers.set("To", to.to_string());
    }
    if let Some(cseq) = invite.cseq() {
        ack.headers.set("CSeq", format!("{} ACK", cseq.seq));
    }
    ack
}

/// A CANCEL for `request` (RFC 3261 9.1): the same Request-URI, top Via
/// (hence branch), Route headers, From, To, Call-ID and CSeq number with
/// method CANCEL; Max-Forwards 70; no body.
pub fn cancel_for(request: &Message) -> Message {
    let uri = request.uri().cloned().unwrap_or_else(|| {
        crate::message::Uri::sip(None, crate::message::Host::Name("invalid".into()), None)
    });
    let mut cancel = Message::request(Method::Cancel, uri);
    copy_transaction_headers(request, &mut cancel);
    if let Some(cseq) = request.cseq() {
        cancel.headers.set("CSeq", format!("{} CANCEL", cseq.seq));
    }
    cancel
}

/// Via (top only), Route, Max-Forwards, From, To, Call-ID, CSeq and
/// Content-Length 0, in that order, for ACK and CANCEL.
fn copy_transaction_headers(from: &Message, to: &mut Message) {
    if let Some(v) = from.headers.get_all("Via").first() {
        to.headers.push("Via", v.to_string());
    }
    for h in from.headers.iter().filter(|h| h.name == "Route") {
        to.headers.push("Route", h.value.clone());
    }
    to.headers.push("Max-Forwards", "70");
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = from.headers.get(name) {
            to.headers.push(name, v.to_string());
        }
    }
    to.headers.push("Content-Length", "0");
}

// ---------------------------------------------------------------------------
// Matching keys
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ServerKey {
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// Boxed: rare, and five times the size of the other, which would
    /// size every slot of the maps that hold keys.
    Rfc2543(Box<Rfc2543Key>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Rfc2543Key {
    uri: String,
    from_tag: String,
    call_id: String,
    cseq: u32,
    via: String,
    method: Method,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Client(ClientKey),
    Server(ServerKey),
}

/// The server transaction key of a request; ACK is keyed as INVITE, and
/// `as_method` overrides the method (INVITE, to find what a CANCEL cancels).
fn server_key(msg: &Message, as_method: Option<Method>) -> Option<ServerKey> {
    let method = msg.method()?;
    let method = as_method.unwrap_or_else(|| {
        if *method == Method::Ack {
            Method::Invite
        } else {
            method.clone()
        }
    });
    let top = msg.headers.first_value("Via")?;
    let (sent_by, branch) = via_sent_by_and_branch(top)?;
    match branch {
        Some(b) if b.starts_with(MAGIC_COOKIE) => Some(ServerKey::Rfc3261 {
            branch: b.to_string(),
            sent_by: sent_by_key(sent_by),
            method,
        }),
        _ => Some(ServerKey::Rfc2543(Box::new(Rfc2543Key {
            uri: msg.uri()?.to_string(),
            from_tag: msg.from_tag().unwrap_or_default().to_string(),
            call_id: msg.call_id()?.trim().to_string(),
            cseq: msg.cseq()?.seq,
            via: Via::parse(top).ok()?.to_string(),
            method,
        }))),
    }
}

/// A sent-by as a key: lower-cased, without the blanks RFC 3261 allows
/// around its colon.
fn sent_by_key(sent_by: &str) -> String {
    let mut key = String::with_capacity(sent_by.len());
    key.extend(
        sent_by
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|c| c.to_ascii_lowercase()),
    );
    key
}

fn client_key(msg: &Message) -> Option<ClientKey> {
    let (_, branch) = via_sent_by_and_branch(msg.headers.first_value("Via")?)?;
    Some(ClientKey {
        branch: branch?.to_string(),
        method: msg.cseq()?.method,
    })
}

/// Headers a server transaction reads from its request: the ones its
/// `100 Trying` copies ([`Message::response_to`]) and the To tag.
const SERVER_KEEPS: &[&str] = &["Via", "From", "To", "Call-ID", "CSeq", "Timestamp"];

/// What a server transaction keeps of the request it was created for: the
/// start line and [`SERVER_KEEPS`], no body. The TU gets the request
/// itself.
fn transaction_copy(m: &Message) -> Message {
    let mut headers = Headers::default();
    headers.0.reserve_exact(
        m.headers
            .iter()
            .filter(|h| SERVER_KEEPS.contains(&&*h.name))
            .count(),
    );
    for h in m.headers.iter() {
        if SERVER_KEEPS.contains(&&*h.name) {
            headers.0.push(h.clone());
        }
    }
    Message {
        start: m.start.clone(),
        headers,
        body: Vec::new(),
    }
}

fn to_tag(msg: &Message) -> Option<String> {
    msg.to_tag().map(str::to_string)
}

// ---------------------------------------------------------------------------
// The layer
// ---------------------------------------------------------------------------

type TimerKey = (Instant, u64);

#[derive(Debug)]
struct Tx<P> {
    kind: Kind,
    state: State,
    peer: P,
    reliable: bool,
    /// The request that created the transaction (for a server one, only
    /// what the layer reads: [`transaction_copy`]); dropped once the
    /// transaction only waits ([`TransactionLayer::slim`]).
    request: Option<Arc<Message>>,
    /// Server: the last response sent. Client INVITE in Completed: the ACK.
    /// Dropped in Accepted and Confirmed, where it is never sent again.
    last: Option<Arc<Message>>,
    /// The To tag an INVITE server transaction answered with, kept when
    /// its request and response are dropped: an RFC 2543 ACK is matched
    /// on it.
    sent_tag: Option<Box<str>>,
    /// The current retransmission interval (A, E, G).
    interval: Duration,
    /// Timers armed for this transaction, with their queue keys.
    timers: SmallVec<[(Timer, TimerKey); 4]>,
    /// Timer C's value for an INVITE client transaction.
    timer_c: Option<Duration>,
    key: Key,
}

impl<P> Tx<P> {
    /// The To tag a server transaction answered with: its last response's,
    /// the one kept when that was dropped, or its request's.
    fn answered_tag(&self) -> Option<String> {
        self.last
            .as_deref()
            .and_then(to_tag)
            .or_else(|| self.sent_tag.as_deref().map(str::to_string))
            .or_else(|| self.request.as_deref().and_then(to_tag))
    }
}

/// Every live transaction of an endpoint, their matching index and timers.
/// See the module docs for the state machines and the driver loop.
#[derive(Debug)]
pub struct TransactionLayer<P> {
    config: Config,
    /// Boxed, so the map's empty slots cost a pointer, not a transaction.
    txs: IdMap<TxId, Box<Tx<P>>>,
    clients: HashMap<ClientKey, TxId>,
    servers: HashMap<ServerKey, TxId>,
    timers: BTreeMap<TimerKey, (TxId, Timer)>,
    timer_seq: u64,
    next_id: u64,
    seed: u64,
    branches: u64,
    /// An emptied event list handed back by the driver
    /// ([`TransactionLayer::recycle`]), reused for the next result.
    spare: Vec<Event<P>>,
}

/// The longest event list kept for reuse.
const SPARE_MAX: usize = 16;

impl<P: Clone> TransactionLayer<P> {
    /// A layer with these settings and a random branch seed.
    pub fn new(config: Config) -> TransactionLayer<P> {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Self::with_seed(config, h.finish())
    }

    /// A layer whose generated branches derive from `seed` (for tests).
    pub fn with_seed(config: Config, seed: u64) -> TransactionLayer<P> {
        TransactionLayer {
            config,
            txs: IdMap::default(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            next_id: 1,
            seed,
            branches: 0,
            spare: Vec::new(),
        }
    }

    /// Gives back an event list this layer returned, once the driver has
    /// handled (drained) it: the next result reuses its storage, so the
    /// per-message path allocates no list.
    pub fn recycle(&mut self, mut events: Vec<Event<P>>) {
        events.clear();
        if events.capacity() <= SPARE_MAX && events.capacity() > self.spare.capacity() {
            self.spare = events;
        }
    }

    /// An empty list for a result: the recycled one when there is one.
    fn events(&mut self) -> Vec<Event<P>> {
        std::mem::take(&mut self.spare)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// A live transaction's state.
    pub fn state(&self, tx: TxId) -> Option<State> {
        self.txs.get(&tx).map(|t| t.state)
    }

    /// A live transaction's kind.
    pub fn kind(&self, tx: TxId) -> Option<Kind> {
        self.txs.get(&tx).map(|t| t.kind)
    }

    /// The request that created a live transaction (for a client one, with
    /// the branch the layer may have added; for a server one, the start line
    /// and the headers the layer reads). `None` once the transaction only
    /// waits for its end (after its final response).
    pub fn request(&self, tx: TxId) -> Option<&Message> {
        self.txs.get(&tx).and_then(|t| t.request.as_deref())
    }

    /// The earliest armed timer: call [`Self::on_timer`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(k, _)| k.0)
    }

    /// A fresh branch: the magic cookie and 16 hex digits, unique for this
    /// layer (a bijective mix of a counter and the seed).
    pub fn new_branch(&mut self) -> String {
        self.branches += 1;
        let mut z = self
            .seed
            .wrapping_add(self.branches.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        format!("{MAGIC_COOKIE}{z:016x}")
    }

    /// The INVITE server transaction a CANCEL refers to (same branch and
    /// sent-by, method INVITE; or the RFC 2543 key with method INVITE).
    pub fn invite_for_cancel(&self, cancel: &Message) -> Option<TxId> {
        let key = server_key(cancel, Some(Method::Invite))?;
        let id = *self.servers.get(&key)?;
        (self.txs.get(&id)?.kind == Kind::InviteServer).then_some(id)
    }

    /// A CANCEL for a live INVITE client transaction in Proceeding, for the
    /// TU to send with [`Self::send_request`]. `None` in other states: RFC
    /// 3261 9.1 forbids a CANCEL before a provisional response (wait for
    /// one), and after a final response there is nothing to cancel.
    pub fn cancel_request(&self, tx: TxId) -> Option<Message> {
        let t = self.txs.get(&tx)?;
        if t.kind != Kind::InviteClient || t.state != State::Proceeding {
            return None;
        }
        t.request.as_deref().map(cancel_for)
    }

    /// Sets or clears Timer C of a live INVITE client transaction that has
    /// no final response yet, counting from `now`.
    pub fn set_timer_c(&mut self, tx: TxId, c: Option<Duration>, now: Instant) {
        let Some(t) = self.txs.get(&tx) else { return };
        if t.kind != Kind::InviteClient || !matches!(t.state, State::Calling | State::Proceeding) {
            return;
        }
        self.cancel_timer(tx, Timer::C);
        if let Some(t) = self.txs.get_mut(&tx) {
            t.timer_c = c;
        }
        if let Some(c) = c {
            self.arm(tx, Timer::C, now + c);
        }
    }

    // -- TU calls ----------------------------------------------------------

    /// Starts a client transaction for `msg` towards `to` and sends it.
    /// If the top Via has no branch, a fresh one ([`Self::new_branch`]) is
    /// added (to a copy, if `msg` is shared). A CANCEL must carry its
    /// INVITE's branch ([`cancel_for`]); sending one also bounds that INVITE
    /// transaction's wait for a final response to 64·T1
    /// ([`Timer::CancelWait`]).
    pub fn send_request(
        &mut self,
        msg: impl Into<Arc<Message>>,
        to: P,
        reliable: bool,
        now: Instant,
    ) -> Result<(TxId, Vec<Event<P>>), TxError> {
        let mut msg: Arc<Message> = msg.into();
        let method = msg.method().ok_or(TxError::NotARequest)?.clone();
        if method == Method::Ack {
            return Err(TxError::AckIsNotATransaction);
        }
        let cseq = msg.cseq().ok_or(TxError::BadCSeq)?;
        if cseq.method != method {
            return Err(TxError::BadCSeq);
        }
        let mut via = msg.top_via().ok_or(TxError::BadVia)?;
        let branch = match via.branch() {
            Some(b) if !b.is_empty() => b.to_string(),
            _ => {
                let b = self.new_branch();
                via.set_param("branch", Some(&b));
                let m = Arc::make_mut(&mut msg);
                m.headers.remove_first_value("Via");
                m.headers.push_front("Via", via.to_string());
                b
            }
        };
        let key = ClientKey {
            branch: branch.clone(),
            method: method.clone(),
        };
        if self.clients.contains_key(&key) {
            return Err(TxError::DuplicateBranch);
        }
        let id = self.alloc_id();
        let invite = method == Method::Invite;
        let (kind, state) = if invite {
            (Kind::InviteClient, State::Calling)
        } else {
            (Kind::NonInviteClient, State::Trying)
        };
        let mut ev = self.events();
        ev.push(Event::Transmit {
            tx: id,
            to: to.clone(),
            msg: msg.clone(),
            reliable,
        });
        self.clients.insert(key.clone(), id);
        self.txs.insert(
            id,
            Box::new(Tx {
                kind,
                state,
                peer: to,
                reliable,
                request: Some(msg),
                last: None,
                sent_tag: None,
                interval: self.config.t1,
                timers: SmallVec::new(),
                timer_c: if invite { self.config.timer_c } else { None },
                key: Key::Client(key),
            }),
        );
        if invite {
            if !reliable {
                self.arm(id, Timer::A, now + self.config.timer_a());
            }
            self.arm(id, Timer::B, now + self.config.timer_b());
            if let Some(c) = self.config.timer_c {
                self.arm(id, Timer::C, now + c);
            }
        } else {
            if !reliable {
                self.arm(id, Timer::E, now + self.config.timer_e());
            }
            self.arm(id, Timer::F, now + self.config.timer_f());
        }
        if method == Method::Cancel {
            let invite_key = ClientKey {
                branch,
                method: Method::Invite,
            };
            if let Some(&inv) = self.clients.get(&invite_key) {
                let t = &self.txs[&inv];
                if matches!(t.state, State::Calling | State::Proceeding)
                    && !t.timers.iter().any(|(k, _)| *k == Timer::CancelWait)
                {
                    self.arm(inv, Timer::CancelWait, now + self.config.t1 * 64);
                }
            }
        }
        Ok((id, ev))
    }

    /// Sends the TU's response on a server transaction. `msg` may be shared
    /// (an `Arc`): the layer keeps a reference, not a copy.
    pub fn send_response(
        &mut self,
        tx: TxId,
        msg: impl Into<Arc<Message>>,
        now: Instant,
    ) -> Result<Vec<Event<P>>, TxError> {
        let msg: Arc<Message> = msg.into();
        let code = msg.code().ok_or(TxError::NotAResponse)?;
        let t = self.txs.get(&tx).ok_or(TxError::NoSuchTransaction)?;
        let (kind, state, reliable) = (t.kind, t.state, t.reliable);
        let mut ev = self.events();
        match kind {
            Kind::InviteServer => match (state, code) {
                (State::Proceeding, 100..=199) => {
                    self.cancel_timer(tx, Timer::Trying);
                    self.send_last(tx, msg, &mut ev);
                }
                (State::Proceeding, 200..=299) => {
                    self.cancel_all_timers(tx);
                    self.set_state(tx, State::Accepted);
                    self.send_last(tx, msg, &mut ev);
                    self.slim(tx);
                    self.arm(tx, Timer::L, now + self.config.timer_l());
                }
                (State::Proceeding, _) => {
                    self.cancel_all_timers(tx);
                    self.set_state(tx, State::Completed);
                    self.send_last(tx, msg, &mut ev);
                    if !reliable {
                        self.set_interval(tx, self.config.timer_g());
                        self.arm(tx, Timer::G, now + self.config.timer_g());
                    }
                    self.arm(tx, Timer::H, now + self.config.timer_h());
                }
                (State::Accepted, 200..=299) => {
                    self.send_last(tx, msg, &mut ev);
                    self.slim(tx);
                }
                (s, _) => return Err(TxError::WrongState(s)),
            },
            Kind::NonInviteServer => match (state, code) {
                (State::Trying | State::Proceeding, 100..=199) => {
                    self.set_state(tx, State::Proceeding);
                    self.send_last(tx, msg, &mut ev);
                }
                (State::Trying | State::Proceeding, _) => {
                    self.set_state(tx, State::Completed);
                    self.send_last(tx, msg, &mut ev);
                    self.linger(tx, Timer::J, self.config.timer_j(reliable), now, &mut ev);
                }
                (s, _) => return Err(TxError::WrongState(s)),
            },
            Kind::InviteClient | Kind::NonInviteClient => {
                return Err(TxError::NotAServerTransaction)
            }
        }
        Ok(ev)
    }

    /// The driver could not send a message of `tx`: reports
    /// [`Event::TransportError`] and terminates the transaction (RFC 3261
    /// 17.1.4, 17.2.4). Nothing if it is gone already.
    pub fn transport_error(&mut self, tx: TxId) -> Vec<Event<P>> {
        let mut ev = self.events();
        if self.txs.contains_key(&tx) {
            ev.push(Event::TransportError { tx });
            self.terminate_into(tx, &mut ev);
        }
        ev
    }

    /// Ends a transaction now, without telling the peer (the TU gives up on
    /// it, or shuts down). Reports [`Event::Terminated`] if it was live.
    pub fn terminate(&mut self, tx: TxId) -> Vec<Event<P>> {
        let mut ev = self.events();
        self.terminate_into(tx, &mut ev);
        ev
    }

    // -- Network and clock -------------------------------------------------

    /// A message from `from`, received over a reliable transport or not.
    pub fn on_message(
        &mut self,
        msg: Message,
        from: P,
        reliable: bool,
        now: Instant,
    ) -> Vec<Event<P>> {
        let mut ev = self.events();
        if msg.is_request() {
            self.on_request(msg, from, reliable, now, &mut ev);
        } else {
            self.on_response(msg, from, now, &mut ev);
        }
        ev
    }

    /// Fires every timer due at or before `now`, in deadline order.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Event<P>> {
        let mut ev = self.events();
        while let Some((&key, &(tx, timer))) = self.timers.first_key_value() {
            if key.0 > now {
                break;
            }
            self.timers.remove(&key);
            let Some(t) = self.txs.get_mut(&tx) else {
                continue;
            };
            t.timers.retain(|(_, k)| *k != key);
            self.fire(tx, timer, key.0, &mut ev);
        }
        ev
    }

    // -- Internals ---------------------------------------------------------

    fn alloc_id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    fn arm(&mut self, tx: TxId, timer: Timer, at: Instant) {
        self.cancel_timer(tx, timer);
        let Some(t) = self.txs.get_mut(&tx) else {
            return;
        };
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, (tx, timer));
        t.timers.push((timer, key));
    }

    fn cancel_timer(&mut self, tx: TxId, timer: Timer) {
        let Some(t) = self.txs.get_mut(&tx) else {
            return;
        };
        let queue = &mut self.timers;
        t.timers.retain(|(k, key)| {
            if *k == timer {
                queue.remove(key);
                false
            } else {
                true
            }
        });
    }

    fn cancel_all_timers(&mut self, tx: TxId) {
        let Some(t) = self.txs.get_mut(&tx) else {
            return;
        };
        for (_, key) in t.timers.drain(..) {
            self.timers.remove(&key);
        }
    }

    fn set_state(&mut self, tx: TxId, state: State) {
        if let Some(t) = self.txs.get_mut(&tx) {
            t.state = state;
        }
    }

    /// Once a transaction only waits (Completed, Confirmed or Accepted,
    /// until Timer D, I, J, K, L or M ends it) it never sends its request
    /// again: the request is dropped (the maps hold the keys that match
    /// retransmissions). In Accepted and Confirmed the last response is
    /// never sent again either (in Accepted the TU retransmits its 2xx):
    /// dropped too. An INVITE server transaction with an RFC 2543 key keeps
    /// the To tag it answered with, to match a late ACK. Over UDP a
    /// transaction waits 32 s after its call is over (Timer J, L, M): what
    /// it holds meanwhile is a good part of a busy switch's memory.
    fn slim(&mut self, tx: TxId) {
        if let Some(t) = self.txs.get_mut(&tx) {
            if t.kind == Kind::InviteServer
                && t.sent_tag.is_none()
                && matches!(t.key, Key::Server(ServerKey::Rfc2543(_)))
            {
                t.sent_tag = t.answered_tag().map(String::into_boxed_str);
            }
            t.request = None;
            if matches!(t.state, State::Accepted | State::Confirmed) {
                t.last = None;
            }
        }
    }

    fn set_interval(&mut self, tx: TxId, interval: Duration) {
        if let Some(t) = self.txs.get_mut(&tx) {
            t.interval = interval;
        }
    }

    /// Arms a linger timer, or terminates at once when it is zero.
    fn linger(
        &mut self,
        tx: TxId,
        timer: Timer,
        d: Duration,
        now: Instant,
        ev: &mut Vec<Event<P>>,
    ) {
        if d.is_zero() {
            self.terminate_into(tx, ev);
        } else {
            self.slim(tx);
            self.arm(tx, timer, now + d);
        }
    }

    fn terminate_into(&mut self, tx: TxId, ev: &mut Vec<Event<P>>) {
        let Some(t) = self.txs.remove(&tx) else {
            return;
        };
        for (_, key) in &t.timers {
            self.timers.remove(key);
        }
        match t.key {
            Key::Client(k) => {
                self.clients.remove(&k);
            }
            Key::Server(k) => {
                self.servers.remove(&k);
            }
        }
        ev.push(Event::Terminated { tx });
    }

    fn timeout(&mut self, tx: TxId, timer: Timer, ev: &mut Vec<Event<P>>) {
        ev.push(Event::Timeout { tx, timer });
        self.terminate_into(tx, ev);
    }

    /// Transmits `msg` on `tx` and remembers it as the last message sent.
    fn send_last(&mut self, tx: TxId, msg: impl Into<Arc<Message>>, ev: &mut Vec<Event<P>>) {
        if let Some(t) = self.txs.get_mut(&tx) {
            let msg: Arc<Message> = msg.into();
            ev.push(Event::Transmit {
                tx,
                to: t.peer.clone(),
                msg: msg.clone(),
                reliable: t.reliable,
            });
            t.last = Some(msg);
        }
    }

    /// Re-sends the last message sent (server response, client ACK).
    fn resend_last(&self, tx: TxId, ev: &mut Vec<Event<P>>) {
        self.resend(tx, |t| t.last.as_ref(), ev);
    }

    fn resend_request(&self, tx: TxId, ev: &mut Vec<Event<P>>) {
        self.resend(tx, |t| t.request.as_ref(), ev);
    }

    /// Transmits again what `pick` names of `tx`, if it still holds it.
    fn resend(
        &self,
        tx: TxId,
        pick: impl Fn(&Tx<P>) -> Option<&Arc<Message>>,
        ev: &mut Vec<Event<P>>,
    ) {
        if let Some((t, m)) = self.txs.get(&tx).and_then(|t| Some((t, pick(t)?))) {
            ev.push(Event::Transmit {
                tx,
                to: t.peer.clone(),
                msg: m.clone(),
                reliable: t.reliable,
            });
        }
    }

    fn fire(&mut self, tx: TxId, timer: Timer, at: Instant, ev: &mut Vec<Event<P>>) {
        let Some(t) = self.txs.get(&tx) else {
            return;
        };
        let (state, interval, has_last) = (t.state, t.interval, t.last.is_some());
        let t2 = self.config.t2;
        match (timer, state) {
            (Timer::A, State::Calling) => {
                self.resend_request(tx, ev);
                let next = interval * 2;
                self.set_interval(tx, next);
                self.arm(tx, Timer::A, at + next);
            }
            (Timer::E, State::Trying | State::Proceeding) => {
                self.resend_request(tx, ev);
                let next = if state == State::Trying {
                    (interval * 2).min(t2)
                } else {
                    t2
                };
                self.set_interval(tx, next);
                self.arm(tx, Timer::E, at + next);
            }
            (Timer::G, State::Completed) => {
                self.resend_last(tx, ev);
                let next = (interval * 2).min(t2);
                self.set_interval(tx, next);
                self.arm(tx, Timer::G, at + next);
            }
            (Timer::B, State::Calling)
            | (Timer::F, State::Trying | State::Proceeding)
            | (Timer::H, State::Completed)
            | (Timer::CancelWait, State::Calling | State::Proceeding) => {
                self.timeout(tx, timer, ev);
            }
            (Timer::C, State::Calling | State::Proceeding) => {
                ev.push(Event::ProvisionalTimeout { tx });
                let guarded = self.txs[&tx]
                    .timers
                    .iter()
                    .any(|(k, _)| *k == Timer::CancelWait);
                if !guarded {
                    self.arm(tx, Timer::CancelWait, at + self.config.t1 * 64);
                }
            }
            (Timer::Trying, State::Proceeding) if !has_last => {
                if let Some(req) = self.txs[&tx].request.as_deref() {
                    let trying = Message::response_to(req, 100, None, None);
                    self.send_last(tx, trying, ev);
                }
            }
            (Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M, _) => {
                self.terminate_into(tx, ev);
            }
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        msg: Message,
        from: P,
        reliable: bool,
        now: Instant,
        ev: &mut Vec<Event<P>>,
    ) {
        let Some(key) = server_key(&msg, None) else {
            tracing::debug!("request without a readable Via, Call-ID or CSeq dropped");
            return;
        };
        let is_ack = msg.method() == Some(&Method::Ack);
        if let Some(&tx) = self.servers.get(&key) {
            let t = &self.txs[&tx];
            if is_ack && matches!(key, ServerKey::Rfc2543(_)) && to_tag(&msg) != t.answered_tag() {
                ev.push(Event::StrayAck { msg, from });
                return;
            }
            self.on_retransmission(tx, msg, from, is_ack, now, ev);
            return;
        }
        if is_ack {
            ev.push(Event::StrayAck { msg, from });
            return;
        }
        let invite = msg.method() == Some(&Method::Invite);
        let id = self.alloc_id();
        let (kind, state) = if invite {
            (Kind::InviteServer, State::Proceeding)
        } else {
            (Kind::NonInviteServer, State::Trying)
        };
        self.servers.insert(key.clone(), id);
        self.txs.insert(
            id,
            Box::new(Tx {
                kind,
                state,
                peer: from.clone(),
                reliable,
                request: Some(Arc::new(transaction_copy(&msg))),
                last: None,
                sent_tag: None,
                interval: self.config.t1,
                timers: SmallVec::new(),
                timer_c: None,
                key: Key::Server(key),
            }),
        );
        ev.push(Event::Request { tx: id, msg, from });
        if invite {
            match self.config.auto_trying {
                Some(d) if d.is_zero() => {
                    if let Some(req) = self.txs[&id].request.as_deref() {
                        let trying = Message::response_to(req, 100, None, None);
                        self.send_last(id, trying, ev);
                    }
                }
                Some(d) => self.arm(id, Timer::Trying, now + d),
                None => {}
            }
        }
    }

    fn on_retransmission(
        &mut self,
        tx: TxId,
        msg: Message,
        from: P,
        is_ack: bool,
        now: Instant,
        ev: &mut Vec<Event<P>>,
    ) {
        let t = &self.txs[&tx];
        let (kind, state, reliable) = (t.kind, t.state, t.reliable);
        match (kind, is_ack, state) {
            (Kind::InviteServer, false, State::Proceeding | State::Completed) => {
                self.resend_last(tx, ev);
            }
            (Kind::InviteServer, true, State::Completed) => {
                self.cancel_all_timers(tx);
                self.set_state(tx, State::Confirmed);
                self.linger(tx, Timer::I, self.config.timer_i(reliable), now, ev);
            }
            (Kind::InviteServer, true, State::Accepted) => {
                ev.push(Event::Ack { tx, msg, from });
            }
            (Kind::NonInviteServer, _, State::Proceeding | State::Completed) => {
                self.resend_last(tx, ev);
            }
            // INVITE retransmissions in Confirmed or Accepted, ACKs in
            // Proceeding or Confirmed, requests in Trying: absorbed.
            _ => {}
        }
    }

    fn on_response(&mut self, msg: Message, from: P, now: Instant, ev: &mut Vec<Event<P>>) {
        let tx = client_key(&msg).and_then(|k| self.clients.get(&k).copied());
        let Some(tx) = tx else {
            ev.push(Event::StrayResponse { msg, from });
            return;
        };
        let Some(code) = msg.code() else { return };
        let t = &self.txs[&tx];
        let (kind, state, reliable) = (t.kind, t.state, t.reliable);
        match kind {
            Kind::InviteClient => match (state, code) {
                (State::Calling | State::Proceeding, 100..=199) => {
                    if state == State::Calling {
                        self.cancel_timer(tx, Timer::A);
                        self.cancel_timer(tx, Timer::B);
                        self.set_state(tx, State::Proceeding);
                    }
                    // Timer C restarts on 101-199 (RFC 3261 16.7 step 2),
                    // unless it already fired (the CANCEL is under way).
                    let t = &self.txs[&tx];
                    if let (true, Some(c)) = (code > 100, t.timer_c) {
                        if t.timers.iter().any(|(k, _)| *k == Timer::C) {
                            self.arm(tx, Timer::C, now + c);
                        }
                    }
                    ev.push(Event::Response { tx, msg });
                }
                (State::Calling | State::Proceeding, 200..=299) => {
                    self.cancel_all_timers(tx);
                    self.set_state(tx, State::Accepted);
                    ev.push(Event::Response { tx, msg });
                    self.slim(tx);
                    self.arm(tx, Timer::M, now + self.config.timer_m());
                }
                (State::Calling | State::Proceeding, _) => {
                    self.cancel_all_timers(tx);
                    self.set_state(tx, State::Completed);
                    let ack = self.txs[&tx].request.as_deref().map(|r| ack_for(r, &msg));
                    ev.push(Event::Response { tx, msg });
                    if let Some(ack) = ack {
                        self.send_last(tx, ack, ev);
                    }
                    self.linger(tx, Timer::D, self.config.timer_d(reliable), now, ev);
                }
                (State::Accepted, 200..=299) => ev.push(Event::Response { tx, msg }),
                (State::Completed, 300..) => self.resend_last(tx, ev),
                _ => {}
            },
            Kind::NonInviteClient => match (state, code) {
                (State::Trying | State::Proceeding, 100..=199) => {
                    self.set_state(tx, State::Proceeding);
                    ev.push(Event::Response { tx, msg });
                }
                (State::Trying | State::Proceeding, _) => {
                    self.cancel_all_timers(tx);
                    self.set_state(tx, State::Completed);
                    ev.push(Event::Response { tx, msg });
                    self.linger(tx, Timer::K, self.config.timer_k(reliable), now, ev);
                }
                _ => {}
            },
            Kind::InviteServer | Kind::NonInviteServer => {}
        }
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn via_sent_by_and_branch_and_sent_by_key() {
        assert_eq!(
            via_sent_by_and_branch("SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK1"),
            Some(("127.0.0.1:5060", Some("z9hG4bK1")))
        );
        assert_eq!(
            via_sent_by_and_branch(
                "SIP/2.0/TCP  [2001:DB8::1] ; BRANCH = z9hG4bKx ;received=1.2.3.4"
            ),
            Some(("[2001:DB8::1]", Some("z9hG4bKx")))
        );
        assert_eq!(via_sent_by_and_branch("SIP/2.0/UDP h"), Some(("h", None)));
        assert_eq!(via_sent_by_and_branch("SIP/2.0/UDP"), None);
        assert_eq!(via_sent_by_and_branch("SIP/2.0/UDP ;branch=z9hG4bK1"), None);
        assert_eq!(sent_by_key("Host.Example : 5060"), "host.example:5060");
        assert_eq!(sent_by_key("[2001:DB8::1]"), "[2001:db8::1]");
    }
}
