//! The control side of the relay: [`MediaEngine`] and [`LegHandle`].
//!
//! The engine keeps one registry (a mutex-protected map) with the *desired*
//! state of every leg: which worker should own it, the remote addresses
//! from SDP and the leg it is bridged to. An API call edits that state,
//! appends the leg's id to the dirty list of each worker concerned and rings
//! the worker's eventfd. The worker, woken, takes its dirty list and
//! reconciles its own legs with the registry: it adopts legs that were
//! assigned to it, hands over legs that were moved away, closes released
//! ones, and links bridged legs it holds both of.
//!
//! Because workers apply the registry's latest state rather than a stream of
//! commands, the order in which the wake-ups arrive does not matter: a leg
//! in the middle of moving from one worker to another can be re-bridged,
//! given a new address or released at any moment, and the outcome is the
//! same as if each call had taken effect at once.

use std::collections::HashMap;
use std::fmt;
use std::mem::ManuallyDrop;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::codec::Codec;
use crate::error::{LegId, MediaError};
use crate::ports::{PortAllocator, PortLease};
use crate::prompt::Prompt;
use crate::stats::LegStats;
use crate::sys::{self, Epoll, EventFd};
use crate::worker::Worker;

/// Called first thing on each media worker thread with the worker's index,
/// before the worker allocates its buffers. Useful to pin the thread to a
/// core, raise its priority, or (in tests) mark it.
pub type WorkerHook = Arc<dyn Fn(usize) + Send + Sync>;

/// How to start a [`MediaEngine`].
#[derive(Clone)]
pub struct MediaConfig {
    /// Local address the RTP/RTCP sockets bind to and that goes into SDP
    /// (IPv4 or IPv6).
    pub ip: IpAddr,
    /// Lowest port of the RTP range (see [`PortAllocator::new`]).
    pub port_min: u16,
    /// Highest port of the RTP range.
    pub port_max: u16,
    /// Number of media worker threads; 0 means one per available core.
    pub workers: usize,
    /// Kernel receive and send buffer size to ask for on every socket, in
    /// bytes; 0 keeps the system default. Capped by the kernel at
    /// `net.core.rmem_max` / `wmem_max`.
    pub socket_buffer_bytes: usize,
    /// Run on each worker thread as it starts.
    pub on_worker_start: Option<WorkerHook>,
}

impl MediaConfig {
    /// Defaults: one worker per core, 256 KiB socket buffers, no hook.
    pub fn new(ip: IpAddr, port_min: u16, port_max: u16) -> Self {
        MediaConfig {
            ip,
            port_min,
            port_max,
            workers: 0,
            socket_buffer_bytes: 256 * 1024,
            on_worker_start: None,
        }
    }

    /// Set the number of worker threads (0: one per core).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Set the socket buffer size (0: system default).
    pub fn socket_buffer_bytes(mut self, bytes: usize) -> Self {
        self.socket_buffer_bytes = bytes;
        self
    }

    /// Set the hook run on each worker thread as it starts.
    pub fn on_worker_start(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Arc::new(hook));
        self
    }
}

impl fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaConfig")
            .field("ip", &self.ip)
            .field("port_min", &self.port_min)
            .field("port_max", &self.port_max)
            .field("workers", &self.workers)
            .field("socket_buffer_bytes", &self.socket_buffer_bytes)
            .field("on_worker_start", &self.on_worker_start.is_some())
            .finish()
    }
}

/// The most workers an engine may have.
const MAX_WORKERS: usize = 1024;

/// How soon a worker that holds legs takes changes to them when no packet
/// wakes it first (it is not rung for them, see [`Registry::mark`]): the
/// longest a new leg's first packets, a new destination or a prompt wait.
pub(crate) const POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// The sockets and data-plane state of one leg. Exactly one place owns it at
/// a time: a worker's slot table, or the registry while it moves between
/// workers.
pub(crate) struct LegIo {
    pub(crate) id: LegId,
    /// The even RTP port (RTCP is the next): the sockets' token in a
    /// worker's epoll set is their port number.
    pub(crate) port: u16,
    /// The worker whose epoll set has the sockets now (see
    /// [`crate::ports`]): the one holding the leg, the one that parked the
    /// pair it was allocated from, or none.
    pub(crate) watched_by: Option<usize>,
    /// `[RTP, RTCP]`, non-blocking. Taken by the drop, which parks them
    /// with the lease when `parkable` (see [`crate::ports`]).
    pub(crate) sockets: ManuallyDrop<[UdpSocket; 2]>,
    /// Destinations from SDP, `[RTP, RTCP]`.
    pub(crate) remote: [Option<SocketAddr>; 2],
    /// Sources of the latest packets received, `[RTP, RTCP]`.
    pub(crate) latched: [Option<SocketAddr>; 2],
    pub(crate) stats: Arc<LegStats>,
    /// The worker state that must survive a move between workers (the
    /// stream the phone hears, reception statistics); `None` until the leg
    /// first leaves a worker.
    pub(crate) carried: Option<Box<crate::worker::Carried>>,
    /// Taken by the drop.
    lease: Option<PortLease>,
    /// The sockets are in no epoll set but `watched_by`'s (a worker removed
    /// them, or none took them yet): the drop may park them for reuse
    /// instead of closing them.
    pub(crate) parkable: bool,
}

impl Drop for LegIo {
    fn drop(&mut self) {
        // SAFETY: the sockets are taken once, here, and never used again.
        let [rtp, rtcp] = unsafe { ManuallyDrop::take(&mut self.sockets) };
        match self.lease.take() {
            Some(lease) if self.parkable => lease.park_watched(rtp, rtcp, self.watched_by),
            lease => {
                // The sockets close before the ports return to the pool.
                drop((rtp, rtcp));
                drop(lease);
            }
        }
    }
}

/// What the API wants for one leg.
pub(crate) struct Desired {
    /// The worker that should own the leg.
    pub(crate) worker: usize,
    /// The worker that owns it now, if any (None while in transit).
    pub(crate) holder: Option<usize>,
    pub(crate) remote: [Option<SocketAddr>; 2],
    pub(crate) peer: Option<LegId>,
    /// The leg's sockets while no worker holds them.
    pub(crate) transit: Option<LegIo>,
    /// What the leg does when it is not bridged, and a generation number
    /// bumped on every change so the worker notices a replaced prompt.
    pub(crate) app: App,
    pub(crate) app_gen: u64,
    pub(crate) format: Format,
    pub(crate) listener: Option<Listener>,
    /// Report [`LegEvent::MediaTimeout`] after this long without a packet.
    pub(crate) rtp_timeout: Option<std::time::Duration>,
    /// The leg's recording, if any.
    pub(crate) recording: Option<Arc<crate::record::Recording>>,
}

/// What a leg that is not bridged does with its media.
#[derive(Clone, Debug, Default)]
pub enum App {
    /// Nothing: received packets are counted and dropped.
    #[default]
    Idle,
    /// Every RTP packet received goes back to where it came from.
    Echo,
    /// Play a prompt; [`LegEvent::PlayDone`] with this token when it ends.
    Play(Arc<Prompt>, u64),
}

/// How a leg's audio is encoded on the wire (from the SDP exchange).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// The codec of what the engine sends (prompts, tones).
    pub codec: Codec,
    /// Its payload type.
    pub payload_type: u8,
    /// The payload type of RFC 4733 telephone-events, if negotiated.
    pub event_payload_type: Option<u8>,
}

impl Default for Format {
    /// PCMU (0) with telephone-events on 101, what FreeSWITCH offers.
    fn default() -> Self {
        Format {
            codec: Codec::Pcmu,
            payload_type: 0,
            event_payload_type: Some(101),
        }
    }
}

/// Something a media worker reports about a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegEvent {
    /// An RFC 4733 digit arrived.
    Dtmf {
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: char,
        /// Milliseconds.
        duration_ms: u32,
    },
    /// Nothing was received on the leg (RTP or RTCP) for its RTP timeout
    /// (reported once; set the timeout again to re-arm it).
    MediaTimeout,
    /// A prompt ended: played out (`completed`) or stopped / replaced.
    PlayDone {
        /// The token [`MediaEngine::play`] returned.
        token: u64,
        /// Whether it played to its end.
        completed: bool,
    },
}

/// Receives a leg's [`LegEvent`]s, on the media worker's thread: it must
/// not block (send on a channel with `try_send`).
pub type Listener = Arc<dyn Fn(LegEvent) + Send + Sync>;

pub(crate) struct Registry {
    pub(crate) legs: HashMap<LegId, Desired>,
    /// Per worker: legs to reconcile.
    pub(crate) dirty: Vec<Vec<LegId>>,
    /// Per worker: whether it holds legs, and so looks at its dirty list at
    /// least every [`POLL`] without being rung (set by the worker).
    pub(crate) polling: Vec<bool>,
    /// Per worker: its dirty list is not empty. The worker reads it
    /// (without the lock) on every wake-up, so a packet that arrives after
    /// an API call returned is relayed with that call's effect even when
    /// the worker was not rung.
    pub(crate) pending: Arc<[AtomicBool]>,
    /// Per worker: legs assigned (desired).
    load: Vec<usize>,
    rotor: usize,
}

pub(crate) struct Shared {
    pub(crate) registry: Mutex<Registry>,
    /// One doorbell per worker.
    pub(crate) bells: Vec<EventFd>,
    /// One epoll set per worker (here, not in the worker, so that a pair
    /// still watched by one worker can be taken out of its set by another
    /// thread).
    pub(crate) epolls: Vec<Epoll>,
    pub(crate) shutdown: AtomicBool,
    /// Doorbells rung for API calls ([`MediaEngine::doorbells`]).
    rings: AtomicU64,
    /// Socket pairs added to a worker's epoll set
    /// ([`MediaEngine::socket_registrations`]).
    pub(crate) registrations: AtomicU64,
    allocator: PortAllocator,
    next_id: AtomicU64,
    next_token: AtomicU64,
    socket_buffer_bytes: usize,
}

pub(crate) fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // Registry updates leave it consistent at every step that could panic
    // (none expected), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Workers to ring after the registry lock is released (at most a handful
/// per call).
#[derive(Default)]
pub(crate) struct Bells {
    workers: [usize; 8],
    n: usize,
}

impl Bells {
    pub(crate) fn add(&mut self, w: usize) {
        if self.workers[..self.n].contains(&w) {
            return;
        }
        if self.n < self.workers.len() {
            self.workers[self.n] = w;
            self.n += 1;
        }
    }

    pub(crate) fn ring(&self, shared: &Shared) {
        for &w in &self.workers[..self.n] {
            shared.bells[w].ring();
        }
        if self.n > 0 {
            shared.rings.fetch_add(self.n as u64, Ordering::Relaxed);
        }
    }
}

impl Registry {
    /// Queue `id` for reconciliation by the worker that should own it and,
    /// if another, the one that holds it now.
    fn touch(&mut self, id: LegId, bells: &mut Bells) {
        if let Some(d) = self.legs.get(&id) {
            let (w, h) = (d.worker, d.holder);
            self.mark(w, id, bells);
            if let Some(h) = h.filter(|&h| h != w) {
                self.mark(h, id, bells);
            }
        }
    }

    /// Puts `id` on worker `w`'s dirty list. A worker that holds legs
    /// ([`Registry::polling`]) takes the list at its next wake-up, for a
    /// packet or its [`POLL`] timer, whichever is first, and is not rung: a
    /// busy switch's calls change legs thousands of times a second, and a
    /// doorbell each time (an eventfd write, an epoll round and a registry
    /// lock on the worker) cost more than the changes. An idle worker is
    /// rung when its list goes from empty to not empty; a non-empty list
    /// has been rung for and not yet taken (the worker drains its doorbell
    /// before it takes the list, so it will see `id` too).
    pub(crate) fn mark(&mut self, w: usize, id: LegId, bells: &mut Bells) {
        if self.dirty[w].is_empty() {
            self.pending[w].store(true, Ordering::Release);
            if !self.polling[w] {
                bells.add(w);
            }
        }
        self.dirty[w].push(id);
    }

    /// The least loaded worker, ties broken round robin.
    fn pick(&mut self) -> usize {
        let n = self.load.len();
        let start = self.rotor % n;
        self.rotor = self.rotor.wrapping_add(1);
        let mut best = start;
        for k in 1..n {
            let w = (start + k) % n;
            if self.load[w] < self.load[best] {
                best = w;
            }
        }
        best
    }

    /// Drop `id`'s bridge (both directions).
    fn unlink(&mut self, id: LegId, bells: &mut Bells) {
        let Some(peer) = self.legs.get_mut(&id).and_then(|d| d.peer.take()) else {
            return;
        };
        if let Some(pd) = self.legs.get_mut(&peer) {
            if pd.peer == Some(id) {
                pd.peer = None;
            }
        }
        self.touch(id, bells);
        self.touch(peer, bells);
    }
}

/// The media relay: a fixed set of worker threads that own the RTP/RTCP
/// sockets of every call leg and forward packets between bridged legs.
///
/// All methods take `&self`, never block on I/O and hold the registry mutex
/// for a few map operations only, so they are fine to call from tokio tasks.
/// Share the engine with an `Arc`. Dropping it (or [`shutdown`]) stops the
/// workers, which close the sockets they hold.
///
/// [`shutdown`]: MediaEngine::shutdown
pub struct MediaEngine {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for MediaEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaEngine")
            .field("allocator", &self.shared.allocator)
            .field("workers", &self.threads.len())
            .finish()
    }
}

impl MediaEngine {
    /// Check the configuration, create the port pool and start the workers.
    pub fn start(config: MediaConfig) -> Result<Self, MediaError> {
        let workers = match config.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        if workers > MAX_WORKERS {
            return Err(MediaError::Config("more than 1024 media workers"));
        }
        let allocator = PortAllocator::new(config.ip, config.port_min, config.port_max)?;
        let bells = (0..workers)
            .map(|_| EventFd::new())
            .collect::<Result<Vec<_>, _>>()?;
        let epolls = (0..workers)
            .map(|_| Epoll::new())
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry {
                legs: HashMap::new(),
                dirty: vec![Vec::new(); workers],
                polling: vec![false; workers],
                pending: (0..workers).map(|_| AtomicBool::new(false)).collect(),
                load: vec![0; workers],
                rotor: 0,
            }),
            bells,
            epolls,
            shutdown: AtomicBool::new(false),
            rings: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            allocator,
            next_id: AtomicU64::new(1),
            next_token: AtomicU64::new(1),
            socket_buffer_bytes: config.socket_buffer_bytes,
        });
        let mut engine = MediaEngine {
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(workers),
        };
        for index in 0..workers {
            // On failure `engine` is dropped, which stops the workers already
            // started.
            let worker = Worker::new(index, Arc::clone(&shared))?;
            let hook = config.on_worker_start.clone();
            let thread = std::thread::Builder::new()
                .name(format!("media-{index}"))
                .spawn(move || {
                    if let Some(hook) = hook {
                        hook(index);
                    }
                    worker.run();
                })?;
            engine.threads.push(thread);
        }
        tracing::info!(
            ip = %config.ip,
            ports = %format_args!("{}-{}", config.port_min, config.port_max),
            workers,
            "media relay started"
        );
        Ok(engine)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.bells.len()
    }

    /// The port pool.
    pub fn allocator(&self) -> &PortAllocator {
        &self.shared.allocator
    }

    /// RTP/RTCP pairs held by legs (legs not yet fully closed included;
    /// parked pairs not).
    pub fn ports_in_use(&self) -> usize {
        self.shared.allocator.in_use()
    }

    /// Released pairs parked with their sockets open for reuse (see
    /// [`crate::ports`]); closed when the engine and its last leg are gone.
    pub fn ports_parked(&self) -> usize {
        self.shared.allocator.parked()
    }

    /// Closes the parked pairs that are too old to reuse (see
    /// [`crate::ports`]); cheap, meant for a periodic tick.
    pub fn trim_parked(&self) {
        self.shared.allocator.trim();
    }

    /// Legs allocated and not released.
    pub fn legs(&self) -> usize {
        lock(&self.shared.registry).legs.len()
    }

    /// Legs assigned to each worker.
    pub fn worker_loads(&self) -> Vec<usize> {
        lock(&self.shared.registry).load.clone()
    }

    /// How many times an API call rang a worker's doorbell. A worker that
    /// holds legs is not rung for their changes (see `Registry::mark`), so
    /// on a busy switch this grows far slower than the calls.
    pub fn doorbells(&self) -> u64 {
        self.shared.rings.load(Ordering::Relaxed)
    }

    /// How many times a leg's RTP/RTCP pair was added to a worker's epoll
    /// set. A pair reused on the worker that parked it is still in that
    /// set (see [`crate::ports`]), so on a busy switch this grows far
    /// slower than the legs.
    pub fn socket_registrations(&self) -> u64 {
        self.shared.registrations.load(Ordering::Relaxed)
    }

    /// The worker that owns (or is about to own) a leg; None once released.
    pub fn worker_of(&self, leg: &LegHandle) -> Option<usize> {
        lock(&self.shared.registry)
            .legs
            .get(&leg.id)
            .map(|d| d.worker)
    }

    /// Bind a new RTP/RTCP pair and give it to the least loaded worker.
    pub fn allocate(&self) -> Result<LegHandle, MediaError> {
        self.allocate_on(None)
    }

    /// Bind a new RTP/RTCP pair on the worker that owns `other`, so that
    /// bridging the two later moves nothing. A B2BUA allocates its outbound
    /// leg this way beside the inbound one.
    pub fn allocate_beside(&self, other: &LegHandle) -> Result<LegHandle, MediaError> {
        self.check(other)?;
        self.allocate_on(Some(other.id))
    }

    fn allocate_on(&self, beside: Option<LegId>) -> Result<LegHandle, MediaError> {
        let shared = &self.shared;
        if shared.shutdown.load(Ordering::Acquire) {
            return Err(MediaError::ShutDown);
        }
        // The worker first, so the pool can hand out a pair that worker
        // still watches (no epoll change at all).
        let worker = {
            let mut reg = lock(&shared.registry);
            let w = match beside.and_then(|b| reg.legs.get(&b)) {
                Some(d) => d.worker,
                None => reg.pick(),
            };
            reg.load[w] += 1;
            w
        };
        let ports = match shared.allocator.allocate_for(Some(worker)) {
            Ok(p) => p,
            Err(e) => {
                lock(&shared.registry).load[worker] -= 1;
                return Err(e);
            }
        };
        let (rtp_addr, rtcp_addr) = (ports.rtp_addr(), ports.rtcp_addr());
        let reused = ports.is_reused();
        let watched_by = ports.watched_by();
        let port = ports.port();
        let (rtp, rtcp, lease) = ports.into_parts();
        if !reused {
            for s in [&rtp, &rtcp] {
                s.set_nonblocking(true)?;
                if shared.socket_buffer_bytes > 0 {
                    sys::set_buffers(s.as_raw_fd(), shared.socket_buffer_bytes);
                }
            }
        }
        let id = LegId(shared.next_id.fetch_add(1, Ordering::Relaxed));
        let stats = Arc::new(LegStats::default());
        let mut io = LegIo {
            id,
            port,
            watched_by,
            sockets: ManuallyDrop::new([rtp, rtcp]),
            remote: [None, None],
            latched: [None, None],
            stats: Arc::clone(&stats),
            carried: None,
            lease: Some(lease),
            // In no epoll set but the one `watched_by` names, which parking
            // keeps: a leg that ends before a worker takes it (a short
            // call under load) parks its pair too.
            parkable: true,
        };
        if watched_by.is_some_and(|w| w != worker) {
            // Parked by another worker: out of its set before it goes to
            // this one's.
            shared.unwatch(&mut io);
        }
        let mut bells = Bells::default();
        {
            let mut reg = lock(&shared.registry);
            reg.legs.insert(
                id,
                Desired {
                    worker,
                    holder: None,
                    remote: [None, None],
                    peer: None,
                    transit: Some(io),
                    app: App::Idle,
                    app_gen: 0,
                    format: Format::default(),
                    listener: None,
                    rtp_timeout: None,
                    recording: None,
                },
            );
            reg.touch(id, &mut bells);
        }
        bells.ring(shared);
        tracing::debug!(%id, rtp = %rtp_addr, "media leg allocated");
        Ok(LegHandle {
            id,
            rtp: rtp_addr,
            rtcp: rtcp_addr,
            stats,
            shared: Arc::clone(shared),
        })
    }

    fn check(&self, leg: &LegHandle) -> Result<(), MediaError> {
        if !Arc::ptr_eq(&leg.shared, &self.shared) {
            return Err(MediaError::ForeignLeg(leg.id));
        }
        if self.shared.shutdown.load(Ordering::Acquire) {
            return Err(MediaError::ShutDown);
        }
        Ok(())
    }

    fn check_family(leg: &LegHandle, remote: SocketAddr) -> Result<(), MediaError> {
        if remote.is_ipv4() != leg.rtp.is_ipv4() {
            return Err(MediaError::AddressFamily {
                local: leg.rtp,
                remote,
            });
        }
        Ok(())
    }

    /// Edit one leg's desired state and wake the workers concerned.
    fn update(&self, leg: &LegHandle, f: impl FnOnce(&mut Desired)) -> Result<(), MediaError> {
        self.check(leg)?;
        let mut bells = Bells::default();
        {
            let mut reg = lock(&self.shared.registry);
            let d = reg
                .legs
                .get_mut(&leg.id)
                .ok_or(MediaError::UnknownLeg(leg.id))?;
            f(d);
            reg.touch(leg.id, &mut bells);
        }
        bells.ring(&self.shared);
        Ok(())
    }

    /// Set the leg's destination from the peer's SDP (`c=` address and `m=`
    /// port): RTP goes to `rtp`, RTCP to the next port. A port of 0 (a
    /// disabled stream) clears the destination. A new address also clears
    /// what was latched, so the next packets go to the new SDP address
    /// until the phone is heard from again.
    pub fn set_remote(&self, leg: &LegHandle, rtp: SocketAddr) -> Result<(), MediaError> {
        Self::check_family(leg, rtp)?;
        let remote = if rtp.port() == 0 {
            [None, None]
        } else {
            let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
            [Some(rtp), (rtcp.port() != 0).then_some(rtcp)]
        };
        self.update(leg, |d| d.remote = remote)
    }

    /// Override the RTCP destination (an `a=rtcp:` attribute, RFC 3605).
    /// Call after [`set_remote`](Self::set_remote), which resets it to the
    /// RTP port + 1.
    pub fn set_remote_rtcp(&self, leg: &LegHandle, rtcp: SocketAddr) -> Result<(), MediaError> {
        Self::check_family(leg, rtcp)?;
        let rtcp = (rtcp.port() != 0).then_some(rtcp);
        self.update(leg, |d| d.remote[1] = rtcp)
    }

    /// Relay between `a` and `b` in both directions, RTP to RTP and RTCP to
    /// RTCP. Either leg's previous bridge, if any, is undone first. If the
    /// two legs live on different workers, one of them moves to the other's
    /// worker (the less loaded one keeps the pair); until it has arrived,
    /// which takes one wake-up of each worker, packets for the pair are
    /// dropped and counted.
    pub fn bridge(&self, a: &LegHandle, b: &LegHandle) -> Result<(), MediaError> {
        self.check(a)?;
        self.check(b)?;
        if a.id == b.id {
            return Err(MediaError::SelfBridge(a.id));
        }
        let mut bells = Bells::default();
        {
            let mut reg = lock(&self.shared.registry);
            let wa = reg
                .legs
                .get(&a.id)
                .ok_or(MediaError::UnknownLeg(a.id))?
                .worker;
            let wb = reg
                .legs
                .get(&b.id)
                .ok_or(MediaError::UnknownLeg(b.id))?
                .worker;
            if reg.legs[&a.id].peer == Some(b.id) {
                return Ok(());
            }
            reg.unlink(a.id, &mut bells);
            reg.unlink(b.id, &mut bells);
            if wa != wb {
                let (moving, to) = if reg.load[wa] <= reg.load[wb] {
                    (b.id, wa)
                } else {
                    (a.id, wb)
                };
                let d = reg.legs.get_mut(&moving).expect("checked above");
                let from = std::mem::replace(&mut d.worker, to);
                // Not yet taken by its worker but in that worker's epoll
                // set (a reused pair): out of it now, or that worker would
                // see its packets and have no leg to give them to.
                if let Some(io) = d.transit.as_mut() {
                    self.shared.unwatch(io);
                }
                reg.load[from] -= 1;
                reg.load[to] += 1;
            }
            for (x, y) in [(a.id, b.id), (b.id, a.id)] {
                let d = reg.legs.get_mut(&x).expect("checked above");
                d.peer = Some(y);
                if !matches!(d.app, App::Idle) {
                    d.app = App::Idle;
                    d.app_gen += 1;
                }
            }
            reg.touch(a.id, &mut bells);
            reg.touch(b.id, &mut bells);
        }
        bells.ring(&self.shared);
        tracing::debug!(a = %a.id, b = %b.id, "media legs bridged");
        Ok(())
    }

    /// Stop relaying between `leg` and the leg it is bridged to (a no-op if
    /// it is not bridged). Packets received afterwards on either are dropped
    /// and counted.
    pub fn unbridge(&self, leg: &LegHandle) -> Result<(), MediaError> {
        self.check(leg)?;
        let mut bells = Bells::default();
        {
            let mut reg = lock(&self.shared.registry);
            if !reg.legs.contains_key(&leg.id) {
                return Err(MediaError::UnknownLeg(leg.id));
            }
            reg.unlink(leg.id, &mut bells);
        }
        bells.ring(&self.shared);
        Ok(())
    }

    /// Set how the leg's audio is encoded (from the SDP answer): prompts are
    /// sent in this codec and payload type, and telephone-events of this
    /// payload type are reported as digits.
    pub fn set_format(&self, leg: &LegHandle, format: Format) -> Result<(), MediaError> {
        leg.stats.set_codec(format.codec);
        self.update(leg, |d| d.format = format)
    }

    /// Set who hears the leg's [`LegEvent`]s (replacing any earlier one).
    pub fn set_listener(&self, leg: &LegHandle, listener: Listener) -> Result<(), MediaError> {
        self.update(leg, |d| d.listener = Some(listener))
    }

    /// Report [`LegEvent::MediaTimeout`] once nothing has been received on
    /// the leg for `timeout` (counted from this call); `None` disarms it
    /// (a call on hold sends nothing, legitimately).
    pub fn set_rtp_timeout(
        &self,
        leg: &LegHandle,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), MediaError> {
        self.update(leg, |d| d.rtp_timeout = timeout)
    }

    /// Record the leg to a WAV file (created now, with its directory)
    /// until `limit`, [`stop_recording`](Self::stop_recording) or the
    /// leg's release, whatever it does meanwhile (bridged, playing,
    /// echoing). Replaces an earlier recording of the leg.
    pub fn record(
        &self,
        leg: &LegHandle,
        path: &std::path::Path,
        channels: crate::record::Channels,
        limit: Option<std::time::Duration>,
    ) -> Result<(), MediaError> {
        self.check(leg)?;
        let rec = crate::record::Recording::start(path, channels, limit)?;
        self.update(leg, |d| d.recording = Some(rec))
    }

    /// End the leg's recording (the file is completed).
    pub fn stop_recording(&self, leg: &LegHandle) -> Result<(), MediaError> {
        self.update(leg, |d| d.recording = None)
    }

    /// Echo the leg's RTP back to it until another app, a bridge or
    /// [`stop_app`](Self::stop_app) replaces it. Unbridges the leg first.
    pub fn echo(&self, leg: &LegHandle) -> Result<(), MediaError> {
        self.set_app(leg, App::Echo).map(|_| ())
    }

    /// Play a prompt to the leg (unbridging it first), replacing whatever
    /// it was doing. Returns the token its [`LegEvent::PlayDone`] carries.
    pub fn play(&self, leg: &LegHandle, prompt: Arc<Prompt>) -> Result<u64, MediaError> {
        let token = self.shared.next_token.fetch_add(1, Ordering::Relaxed);
        self.set_app(leg, App::Play(prompt, token)).map(|_| token)
    }

    /// Stop the leg's echo or prompt (a stopped prompt reports
    /// `completed: false`).
    pub fn stop_app(&self, leg: &LegHandle) -> Result<(), MediaError> {
        self.set_app(leg, App::Idle).map(|_| ())
    }

    fn set_app(&self, leg: &LegHandle, app: App) -> Result<(), MediaError> {
        self.check(leg)?;
        let mut bells = Bells::default();
        {
            let mut reg = lock(&self.shared.registry);
            if !reg.legs.contains_key(&leg.id) {
                return Err(MediaError::UnknownLeg(leg.id));
            }
            if !matches!(app, App::Idle) {
                reg.unlink(leg.id, &mut bells);
            }
            let d = reg.legs.get_mut(&leg.id).expect("checked above");
            d.app = app;
            d.app_gen += 1;
            reg.touch(leg.id, &mut bells);
        }
        bells.ring(&self.shared);
        Ok(())
    }

    /// Release a leg: unbridge it, close its sockets and free its ports.
    /// Same as dropping the handle. The sockets are closed by the worker
    /// that holds them, on its next wake-up, so [`ports_in_use`] may lag
    /// for a moment.
    ///
    /// [`ports_in_use`]: Self::ports_in_use
    pub fn release(&self, leg: LegHandle) {
        drop(leg);
    }

    /// Stop the workers and wait for them, then close every leg's sockets
    /// and return their ports. Legs whose handles are still alive keep their registry entry
    /// until dropped; every call on them returns [`MediaError::ShutDown`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for bell in &self.shared.bells {
            bell.ring();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a media worker panicked");
            }
        }
        // The workers closed what they held; close what was on its way to
        // one (not parked: nothing will reuse it).
        let closing: Vec<LegIo> = lock(&self.shared.registry)
            .legs
            .values_mut()
            .filter_map(|d| d.transit.take())
            .map(|mut io| {
                io.parkable = false;
                io
            })
            .collect();
        drop(closing);
    }
}

impl Drop for MediaEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    pub(crate) fn allocator(&self) -> &PortAllocator {
        &self.allocator
    }

    /// Takes a leg's sockets out of the epoll set that has them, if any.
    pub(crate) fn unwatch(&self, io: &mut LegIo) {
        if let Some(w) = io.watched_by.take() {
            for s in io.sockets.iter() {
                // Fails only if the set does not have it: nothing to undo.
                let _ = self.epolls[w].delete(s.as_raw_fd());
            }
        }
    }

    fn release(&self, id: LegId) {
        let mut bells = Bells::default();
        let removed = {
            let mut reg = lock(&self.registry);
            reg.unlink(id, &mut bells);
            let Some(d) = reg.legs.remove(&id) else {
                return;
            };
            reg.load[d.worker] -= 1;
            if let Some(h) = d.holder {
                reg.mark(h, id, &mut bells);
            }
            d
        };
        bells.ring(self);
        // Sockets still in transit close here, outside the lock.
        drop(removed);
        tracing::debug!(%id, "media leg released");
    }
}

/// One call leg's media, as handed out by [`MediaEngine::allocate`].
///
/// Dropping it releases the leg (closes its sockets and frees its ports).
pub struct LegHandle {
    id: LegId,
    rtp: SocketAddr,
    rtcp: SocketAddr,
    stats: Arc<LegStats>,
    shared: Arc<Shared>,
}

impl LegHandle {
    /// The leg's id.
    pub fn id(&self) -> LegId {
        self.id
    }

    /// The local RTP address to put in SDP (`c=` and `m=` port).
    pub fn rtp_addr(&self) -> SocketAddr {
        self.rtp
    }

    /// The local RTCP address (RTP port + 1).
    pub fn rtcp_addr(&self) -> SocketAddr {
        self.rtcp
    }

    /// The leg's counters. The `Arc` can be kept after the leg is released.
    pub fn stats(&self) -> &Arc<LegStats> {
        &self.stats
    }
}

impl fmt::Debug for LegHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegHandle")
            .field("id", &self.id)
            .field("rtp", &self.rtp)
            .finish()
    }
}

impl Drop for LegHandle {
    fn drop(&mut self) {
        self.shared.release(self.id);
    }
}
