//! RTP/RTCP port allocation.
//!
//! A [`PortAllocator`] owns a range `[min, max]` of UDP ports on one IP
//! address. Each allocation is an even RTP port `p` together with the RTCP
//! port `p + 1` (RFC 3550 section 11), both bound before they are handed
//! out, so a port that some other process holds is never announced in SDP:
//! the allocator skips it and tries the next pair. A pair stays reserved
//! until its [`PortLease`] is dropped, which happens after its sockets are
//! closed.
//!
//! The search goes round the range from where the last allocation stopped,
//! so a port that was just released is the last to be reused; late packets
//! of a finished call are then unlikely to land on a new one.
//!
//! A released pair whose sockets are still open can be *parked* instead
//! ([`PortLease::park`]): its sockets stay bound, and once it has rested
//! [`PARK_QUARANTINE`] an allocation takes it, oldest first, draining what
//! arrived meanwhile, before binding anything new. Under load this spares
//! four system calls per socket (socket, bind, two setsockopt) and the
//! close. A parked pair still belongs to the pool (nobody else can bind it)
//! but does not count as in use. At most [`PortAllocator::park_capacity`]
//! pairs are parked (half the pool's share of the file descriptors,
//! [`PortAllocator::open_cap`], at most [`PARK_MAX`]: a pair parks for at
//! least [`PARK_QUARANTINE`], so a switch that starts `r` calls per second
//! with two SIP legs needs `r / 2` of them, 2500 at 5000 calls/s); surplus
//! ones are closed, and a parked pair is
//! never kept longer than [`PARK_MAX_AGE`]: allocations and parkings close
//! older ones, and so does [`PortAllocator::trim`], which the switch calls
//! twice a second, so an idle switch holds no parked socket for long.
//!
//! The pool never opens more than [`PortAllocator::open_cap`] pairs
//! (handed out and parked together): the last [`FD_RESERVE`] descriptors
//! of the process's limit stay free for its other sockets and files. At
//! that share, as when the process is out of descriptors, an allocation
//! takes a parked pair or fails with an error that
//! [`MediaError::is_port_shortage`] recognises.
//!
//! A pair the media engine parks stays in the epoll set of the worker that
//! relayed it (its *watcher*), so its next call on that worker costs no
//! `epoll_ctl` at all: [`PortAllocator::allocate_for`] prefers a pair its
//! worker still watches, [`RtpPorts::watched_by`] says which worker that
//! is, and while the pair is parked the watcher reads and discards what
//! arrives on it (`PortAllocator::drain_parked`). Closing a parked pair
//! takes it out of the set with the descriptor.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::MediaError;

/// Hands out even RTP ports with their odd RTCP neighbour from a range on
/// one IP address. Cheap to clone: clones share the same pool.
#[derive(Clone)]
pub struct PortAllocator {
    inner: Arc<Pool>,
}

struct Pool {
    ip: IpAddr,
    min: u16,
    max: u16,
    /// First RTP port (even).
    first: u16,
    /// Number of RTP/RTCP pairs in the range.
    pairs: usize,
    in_use: AtomicUsize,
    /// Most pairs open at once (handed out or parked), so that the RTP
    /// sockets leave `fd_reserve` descriptors to the rest of the process.
    open_cap: usize,
    /// [`FD_RESERVE`], or a quarter of the open file limit when less.
    fd_reserve: usize,
    /// Most pairs parked at once.
    park_capacity: usize,
    /// [`PARK_QUARANTINE`] (shorter in tests).
    quarantine: Duration,
    state: Mutex<PoolState>,
}

/// How long a parked pair rests before it is handed out again: late packets
/// of its last call (which the allocation drains) stop well within it.
pub const PARK_QUARANTINE: Duration = Duration::from_millis(250);

/// A parked pair older than this is closed rather than reused.
pub const PARK_MAX_AGE: Duration = Duration::from_secs(2);

/// The most pairs parked at once, whatever the file descriptor limit.
pub const PARK_MAX: usize = 8192;

/// File descriptors the RTP sockets leave to the rest of the process
/// (listeners, SIP TCP and TLS connections, the databases, the event
/// socket and its clients, the HTTP API): this many, or a quarter of the
/// open file limit when that is less. A pool that reaches its share
/// ([`PortAllocator::open_cap`] pairs) binds nothing more, as if the
/// process were out of descriptors, so a burst of calls cannot starve the
/// switch's other sockets and files.
pub const FD_RESERVE: usize = 1024;

/// The descriptors kept for the rest of the process under open file
/// limit `limit`.
fn fd_reserve(limit: usize) -> usize {
    FD_RESERVE.min(limit / 4)
}

struct PoolState {
    /// `used[i]` is true while the pair `first + 2 i` is handed out or
    /// parked.
    used: Vec<bool>,
    /// Where the next search starts.
    next: usize,
    /// Released pairs with their sockets open, oldest first.
    parked: VecDeque<Parked>,
    /// By pair index, while the pair is parked and still in a worker's
    /// epoll set: that worker and the two descriptors (owned by the
    /// [`Parked`] entry, so valid while this is set, under the lock).
    watched: Vec<Option<(usize, RawFd, RawFd)>>,
}

struct Parked {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    port: u16,
    since: Instant,
    /// The media worker whose epoll set still has the sockets.
    watcher: Option<usize>,
}

/// How many parked pairs [`PortAllocator::allocate_for`] looks through for
/// one its worker still watches before it takes the oldest.
const WATCHED_SCAN: usize = 64;

/// Sockets to close once the pool's lock is released.
type Closing = Vec<Parked>;

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding the lock leaves the bitmap consistent (every
        // update is a single store), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for PortAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortAllocator")
            .field("ip", &self.inner.ip)
            .field("min", &self.inner.min)
            .field("max", &self.inner.max)
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl PortAllocator {
    /// A pool of the even ports `p` in `[min, max]` whose `p + 1` is also in
    /// the range. `min` may be odd (the first pair then starts at `min + 1`);
    /// port 0 is refused because it means "any port" to the kernel.
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Result<Self, MediaError> {
        if min == 0 {
            return Err(MediaError::InvalidRange {
                min,
                max,
                reason: "port 0 cannot be allocated",
            });
        }
        let first = u32::from(min) + u32::from(min) % 2;
        // Largest even p with p + 1 <= max.
        let last = if max % 2 == 1 {
            i64::from(max) - 1
        } else {
            i64::from(max) - 2
        };
        if i64::from(first) > last {
            return Err(MediaError::InvalidRange {
                min,
                max,
                reason: "the range holds no even port whose successor is also in the range",
            });
        }
        let pairs = ((last - i64::from(first)) / 2 + 1) as usize;
        let limit = nofile_limit();
        let reserve = fd_reserve(limit);
        let open_cap = limit.saturating_sub(reserve) / 2;
        Ok(PortAllocator {
            inner: Arc::new(Pool {
                ip,
                min,
                max,
                first: first as u16,
                pairs,
                in_use: AtomicUsize::new(0),
                open_cap,
                fd_reserve: reserve,
                // Parked pairs count in the share, and an allocation at the
                // share takes a parked pair: parking half of it starves no
                // call of a port.
                park_capacity: (open_cap / 2).min(PARK_MAX),
                quarantine: PARK_QUARANTINE,
                state: Mutex::new(PoolState {
                    used: vec![false; pairs],
                    next: 0,
                    parked: VecDeque::new(),
                    watched: vec![None; pairs],
                }),
            }),
        })
    }

    /// The same pool with another quarantine for parked pairs.
    #[cfg(test)]
    fn with_park_quarantine(self, quarantine: Duration) -> Self {
        let mut pool = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_park_quarantine on a shared pool"));
        pool.quarantine = quarantine;
        PortAllocator {
            inner: Arc::new(pool),
        }
    }

    /// The address the sockets are bound to.
    pub fn ip(&self) -> IpAddr {
        self.inner.ip
    }

    /// The configured range `(min, max)`.
    pub fn range(&self) -> (u16, u16) {
        (self.inner.min, self.inner.max)
    }

    /// How many RTP/RTCP pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.inner.pairs
    }

    /// The first RTP port of the range (pair index 0).
    pub(crate) fn first_port(&self) -> u16 {
        self.inner.first
    }

    /// Reads and discards what arrived on the parked pair of RTP port
    /// `port` if `worker` still watches it; `false` (nothing done) when
    /// the pair is not parked under that worker's watch: handed out, or
    /// closed.
    pub(crate) fn drain_parked(&self, port: u16, worker: usize) -> bool {
        let pool = &*self.inner;
        let Some(index) = port
            .checked_sub(pool.first)
            .map(|d| usize::from(d / 2))
            .filter(|&i| i < pool.pairs)
        else {
            return false;
        };
        let state = pool.lock();
        match state.watched[index] {
            Some((w, rtp, rtcp)) if w == worker => {
                // The parked entry owns both descriptors and cannot leave
                // the pool while the lock is held.
                drain_fd(rtp);
                drain_fd(rtcp);
                true
            }
            _ => false,
        }
    }

    /// How many pairs are handed out now (leases not yet dropped or
    /// parked).
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::Acquire)
    }

    /// Closes the parked pairs older than [`PARK_MAX_AGE`], freeing their
    /// ports.
    pub fn trim(&self) {
        let mut closing = Closing::new();
        let mut state = self.inner.lock();
        state.expire(self.inner.first, Instant::now(), &mut closing);
        drop(state);
        drop(closing);
    }

    /// How many released pairs are parked with their sockets open.
    pub fn parked(&self) -> usize {
        self.inner.lock().parked.len()
    }

    /// The most pairs parked at once (see the module docs).
    pub fn park_capacity(&self) -> usize {
        self.inner.park_capacity
    }

    /// The most pairs open at once, handed out or parked: the RTP
    /// sockets' share of the open file limit the process had when the
    /// pool was made (see [`FD_RESERVE`]).
    pub fn open_cap(&self) -> usize {
        self.inner.open_cap
    }

    /// Reserve and bind the next free pair.
    ///
    /// Pairs whose RTP or RTCP port cannot be bound because it is taken
    /// (`EADDRINUSE`, or `EACCES` for a privileged port) are skipped. Any
    /// other bind error (the address is not on this host, say) ends the
    /// search at once with [`MediaError::Bind`]. When no pair is left the
    /// error is [`MediaError::Exhausted`].
    ///
    /// The sockets are blocking, as `std` makes them; the caller sets the
    /// mode it wants.
    ///
    /// A parked pair that has rested [`PARK_QUARANTINE`] comes first (its
    /// sockets already non-blocking, see [`RtpPorts::is_reused`]); when no
    /// free pair can be bound (the range is exhausted, the pool holds its
    /// share of the descriptors ([`PortAllocator::open_cap`]), or the
    /// process is out of them, the parked pairs holding some), the oldest
    /// parked pair is taken whatever its age. With nothing parked, the
    /// error is then [`MediaError::DescriptorShare`] at the share, or
    /// [`MediaError::Bind`] with `EMFILE` or `ENFILE`; every one of these
    /// is a [`MediaError::is_port_shortage`].
    pub fn allocate(&self) -> Result<RtpPorts, MediaError> {
        self.allocate_for(None)
    }

    /// [`PortAllocator::allocate`] for media worker `worker`: among the
    /// rested parked pairs, the oldest that worker still watches (or that
    /// no worker watches) comes first, else the oldest.
    pub fn allocate_for(&self, worker: Option<usize>) -> Result<RtpPorts, MediaError> {
        let pool = &*self.inner;
        let now = Instant::now();
        let mut closing = Closing::new();
        let mut state = pool.lock();
        state.expire(pool.first, now, &mut closing);
        let mut pick = None;
        for (i, p) in state.parked.iter().enumerate().take(WATCHED_SCAN) {
            if now.duration_since(p.since) < pool.quarantine {
                break;
            }
            if p.watcher.is_none() || p.watcher == worker {
                pick = Some(i);
                break;
            }
            pick.get_or_insert(i);
        }
        if let Some(i) = pick {
            let p = state.take_parked(pool.first, i);
            drop(state);
            drop(closing);
            return Ok(self.unpark(p));
        }
        let mut busy = 0usize;
        let mut no_fd = None;
        let open = pool.in_use.load(Ordering::Acquire) + state.parked.len();
        let scan = if open >= pool.open_cap {
            no_fd = Some(MediaError::DescriptorShare {
                pairs: open,
                reserve: pool.fd_reserve,
            });
            0
        } else {
            pool.pairs
        };
        for step in 0..scan {
            let index = (state.next + step) % pool.pairs;
            if state.used[index] {
                continue;
            }
            let port = pool.first + 2 * index as u16;
            let rtp = match bind(pool.ip, port) {
                Ok(s) => s,
                Err(Skip::Busy) => {
                    busy += 1;
                    continue;
                }
                Err(Skip::NoDescriptor(e)) => {
                    no_fd = Some(e);
                    break;
                }
                Err(Skip::Fatal(e)) => return Err(e),
            };
            let rtcp = match bind(pool.ip, port + 1) {
                Ok(s) => s,
                Err(Skip::Busy) => {
                    busy += 1;
                    continue;
                }
                Err(Skip::NoDescriptor(e)) => {
                    no_fd = Some(e);
                    break;
                }
                Err(Skip::Fatal(e)) => return Err(e),
            };
            state.used[index] = true;
            state.next = (index + 1) % pool.pairs;
            pool.in_use.fetch_add(1, Ordering::AcqRel);
            drop(state);
            return Ok(RtpPorts {
                rtp,
                rtcp,
                lease: PortLease {
                    pool: Arc::clone(&self.inner),
                    port,
                    live: true,
                },
                reused: false,
                watcher: None,
            });
        }
        if !state.parked.is_empty() {
            let p = state.take_parked(pool.first, 0);
            drop(state);
            return Ok(self.unpark(p));
        }
        drop(state);
        drop(closing);
        if let Some(e) = no_fd {
            return Err(e);
        }
        Err(MediaError::Exhausted {
            ip: pool.ip,
            min: pool.min,
            max: pool.max,
            in_use: pool.in_use.load(Ordering::Acquire),
            busy,
        })
    }

    /// Hands out a parked pair, its queued packets discarded.
    fn unpark(&self, p: Parked) -> RtpPorts {
        drain_pair(&p.rtp, &p.rtcp);
        self.inner.in_use.fetch_add(1, Ordering::AcqRel);
        RtpPorts {
            rtp: p.rtp,
            rtcp: p.rtcp,
            lease: PortLease {
                pool: Arc::clone(&self.inner),
                port: p.port,
                live: true,
            },
            reused: true,
            watcher: p.watcher,
        }
    }
}

impl PoolState {
    /// Takes the parked pairs older than [`PARK_MAX_AGE`] out of the pool
    /// (their ports free again), into `closing`.
    fn expire(&mut self, first: u16, now: Instant, closing: &mut Closing) {
        while self
            .parked
            .front()
            .is_some_and(|p| now.duration_since(p.since) >= PARK_MAX_AGE)
        {
            let p = self.take_parked(first, 0);
            self.used[usize::from((p.port - first) / 2)] = false;
            closing.push(p);
        }
    }

    /// Takes parked entry `i` out of the pool (and out of `watched`).
    fn take_parked(&mut self, first: u16, i: usize) -> Parked {
        let p = self.parked.remove(i).expect("a parked entry");
        self.watched[usize::from((p.port - first) / 2)] = None;
        p
    }
}

/// Reads and discards whatever the two sockets of a pair have queued,
/// without blocking. One `poll` asks both at once, so a pair on which
/// nothing arrived while parked (the usual case) costs one system call
/// instead of a failing `recv` on each socket.
fn drain_pair(rtp: &UdpSocket, rtcp: &UdpSocket) {
    let mut fds = [rtp.as_raw_fd(), rtcp.as_raw_fd()].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: poll reads and writes the two pollfd entries it is given and
    // returns at once (timeout 0).
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if ready == 0 {
        return;
    }
    // On an error of poll itself, drain both as if they were readable.
    for (pfd, s) in fds.iter().zip([rtp, rtcp]) {
        if ready < 0 || pfd.revents != 0 {
            drain(s);
        }
    }
}

/// Reads and discards whatever a socket has queued, without blocking
/// (`MSG_DONTWAIT`, whatever the socket's mode). It ends when the queue is
/// empty, on a second error in a row, or after a bounded number of reads
/// whatever keeps arriving.
fn drain(s: &UdpSocket) {
    drain_fd(s.as_raw_fd());
}

/// [`drain`] on a descriptor the caller keeps open meanwhile.
fn drain_fd(fd: RawFd) {
    let mut buf = [0u8; 2048];
    let mut errors = 0;
    for _ in 0..DRAIN_MAX {
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            errors = 0;
            continue;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock => return,
            io::ErrorKind::Interrupted => {}
            // A socket error the read reported (and so cleared) may have
            // packets queued behind it; a second one in a row will not
            // clear by reading on.
            _ => {
                errors += 1;
                if errors > 1 {
                    return;
                }
            }
        }
    }
}

/// The most reads [`drain`] makes on one socket: about what a receive
/// buffer of a few hundred kilobytes holds of small RTP packets. A sender
/// still flooding after that is not stopped by reading longer.
const DRAIN_MAX: usize = 4096;

/// Raises the process's soft limit on open files to its hard limit, as
/// servers do at start (the usual soft default, 1024, is there for
/// `select(2)`, which nothing here uses; every call holds four sockets),
/// and returns the soft limit now in force. Call it before the first
/// [`PortAllocator`] is made: a pool sizes its parking from the limit.
pub fn raise_nofile_limit() -> usize {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                tracing::warn!(
                    soft = l.rlim_cur,
                    hard = l.rlim_max,
                    error = %io::Error::last_os_error(),
                    "cannot raise the open file limit to its hard limit"
                );
            }
        }
    }
    nofile_limit()
}

/// The soft limit on open files (1024 when it cannot be read).
fn nofile_limit() -> usize {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0 {
        usize::try_from(l.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    }
}

enum Skip {
    /// The port is taken: try the next pair.
    Busy,
    /// The process (`EMFILE`) or the system (`ENFILE`) is out of file
    /// descriptors: no new pair can be bound, but a parked one can be
    /// handed out.
    NoDescriptor(MediaError),
    Fatal(MediaError),
}

fn bind(ip: IpAddr, port: u16) -> Result<UdpSocket, Skip> {
    let addr = SocketAddr::new(ip, port);
    UdpSocket::bind(addr).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied => Skip::Busy,
        _ if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            Skip::NoDescriptor(MediaError::Bind { addr, source: e })
        }
        _ => Skip::Fatal(MediaError::Bind { addr, source: e }),
    })
}

/// A bound RTP/RTCP socket pair and the reservation that keeps its ports
/// from being handed out again.
///
/// Dropping it closes both sockets, then returns the ports to the pool.
#[derive(Debug)]
pub struct RtpPorts {
    // Field order matters: the sockets close before the lease returns the
    // ports.
    rtp: UdpSocket,
    rtcp: UdpSocket,
    lease: PortLease,
    reused: bool,
    watcher: Option<usize>,
}

impl RtpPorts {
    /// Whether the pair comes from the parked ones: its sockets are
    /// already set up (non-blocking, buffer sizes) as their last user left
    /// them.
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// The media worker whose epoll set still has these sockets (a pair
    /// reused from one it parked with [`PortLease::park_watched`]).
    pub fn watched_by(&self) -> Option<usize> {
        self.watcher
    }

    /// The even RTP port.
    pub fn port(&self) -> u16 {
        self.lease.port
    }

    /// The RTP socket.
    pub fn rtp(&self) -> &UdpSocket {
        &self.rtp
    }

    /// The RTCP socket (RTP port + 1).
    pub fn rtcp(&self) -> &UdpSocket {
        &self.rtcp
    }

    /// The local RTP address.
    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.lease.pool.ip, self.lease.port)
    }

    /// The local RTCP address.
    pub fn rtcp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.lease.pool.ip, self.lease.port + 1)
    }

    /// Split into the RTP socket, the RTCP socket and the lease. Keep the
    /// lease until both sockets are closed.
    pub fn into_parts(self) -> (UdpSocket, UdpSocket, PortLease) {
        (self.rtp, self.rtcp, self.lease)
    }
}

/// The reservation of one RTP/RTCP pair; dropping it frees the pair.
pub struct PortLease {
    pool: Arc<Pool>,
    port: u16,
    /// False once parked: the drop then leaves the pair reserved.
    live: bool,
}

impl PortLease {
    /// The even RTP port this lease holds (RTCP is `port() + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Releases the pair with its sockets still open (they must be the
    /// lease's own, non-blocking, and out of any epoll set): it is parked
    /// for a later allocation (see the module docs), or closed and freed
    /// when the pool already parks as many as it may.
    pub fn park(self, rtp: UdpSocket, rtcp: UdpSocket) {
        self.park_watched(rtp, rtcp, None);
    }

    /// [`PortLease::park`] for sockets still in media worker `watcher`'s
    /// epoll set (registered under their port numbers): that worker keeps
    /// watching them while they are parked, draining them
    /// (`PortAllocator::drain_parked`), and a later
    /// [`PortAllocator::allocate_for`] from it takes them without
    /// registering anything.
    pub fn park_watched(mut self, rtp: UdpSocket, rtcp: UdpSocket, watcher: Option<usize>) {
        let pool = Arc::clone(&self.pool);
        let now = Instant::now();
        let mut closing = Closing::new();
        let mut state = pool.lock();
        state.expire(pool.first, now, &mut closing);
        if state.parked.len() >= pool.park_capacity {
            drop(state);
            drop(closing);
            drop((rtp, rtcp));
            return; // the lease's drop frees the pair
        }
        if let Some(w) = watcher {
            let index = usize::from((self.port - pool.first) / 2);
            state.watched[index] = Some((w, rtp.as_raw_fd(), rtcp.as_raw_fd()));
        }
        state.parked.push_back(Parked {
            rtp,
            rtcp,
            port: self.port,
            since: now,
            watcher,
        });
        drop(state);
        self.live = false;
        pool.in_use.fetch_sub(1, Ordering::AcqRel);
        drop(closing);
    }
}

impl std::fmt::Debug for PortLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortLease")
            .field("ip", &self.pool.ip)
            .field("port", &self.port)
            .finish()
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let index = usize::from((self.port - self.pool.first) / 2);
        let mut state = self.pool.lock();
        debug_assert!(state.used[index], "port {} freed twice", self.port);
        state.used[index] = false;
        drop(state);
        self.pool.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn range_arithmetic() {
        let a = PortAllocator::new(LO, 10000, 10009).unwrap();
        assert_eq!(a.capacity(), 5); // 10000, 10002, ..., 10008 (+1 = 10009)
        let a = PortAllocator::new(LO, 10001, 10008).unwrap();
        assert_eq!(a.capacity(), 3); // 10002, 10004, 10006 (10008 has no 10009)
        let a = PortAllocator::new(LO, 10000, 10001).unwrap();
        assert_eq!(a.capacity(), 1);
        assert!(matches!(
            PortAllocator::new(LO, 10001, 10002),
            Err(MediaError::InvalidRange { .. })
        ));
        assert!(matches!(
            PortAllocator::new(LO, 10000, 10000),
            Err(MediaError::InvalidRange { .. })
        ));
        assert!(matches!(
            PortAllocator::new(LO, 0, 100),
            Err(MediaError::InvalidRange { .. })
        ));
        assert!(matches!(
            PortAllocator::new(LO, 20000, 10000),
            Err(MediaError::InvalidRange { .. })
        ));
        let a = PortAllocator::new(LO, 65534, 65535).unwrap();
        assert_eq!(a.capacity(), 1);
    }

    // The ranges below sit under Linux's default ephemeral ports (32768 to
    // 60999), so no socket another test binds to port 0 can take them.

    #[test]
    fn lease_returns_pair_and_count() {
        let a = PortAllocator::new(LO, 31000, 31099).unwrap();
        let p = a.allocate().unwrap();
        assert_eq!(a.in_use(), 1);
        assert_eq!(p.port() % 2, 0);
        assert_eq!(p.rtp().local_addr().unwrap(), p.rtp_addr());
        assert_eq!(p.rtcp().local_addr().unwrap(), p.rtcp_addr());
        assert_eq!(p.rtcp_addr().port(), p.port() + 1);
        let (rtp, rtcp, lease) = p.into_parts();
        drop(rtp);
        drop(rtcp);
        assert_eq!(a.in_use(), 1);
        drop(lease);
        assert_eq!(a.in_use(), 0);
    }

    #[test]
    fn a_parked_pair_rests_then_comes_back_drained() {
        let a = PortAllocator::new(LO, 31100, 31199).unwrap();
        let p = a.allocate().unwrap();
        let port = p.port();
        let (rtp, rtcp, lease) = p.into_parts();
        rtp.set_nonblocking(true).unwrap();
        rtcp.set_nonblocking(true).unwrap();
        let addr = rtp.local_addr().unwrap();
        lease.park(rtp, rtcp);
        assert_eq!((a.in_use(), a.parked()), (0, 1));
        // A late packet of the old call lands on the parked socket.
        let phone = UdpSocket::bind((LO, 0)).unwrap();
        let rtcp_addr = SocketAddr::new(addr.ip(), addr.port() + 1);
        for _ in 0..3 {
            phone.send_to(b"late", addr).unwrap();
            phone.send_to(b"late rtcp", rtcp_addr).unwrap();
        }
        // Not rested yet: a fresh pair is bound instead.
        let q = a.allocate().unwrap();
        assert_ne!(q.port(), port);
        assert!(!q.is_reused());
        drop(q);
        assert_eq!((a.in_use(), a.parked()), (0, 1));
        // Rested (the quarantine is 1 s; the wait here reads a real clock).
        std::thread::sleep(PARK_QUARANTINE);
        let r = a.allocate().unwrap();
        assert_eq!(r.port(), port);
        assert!(r.is_reused());
        assert_eq!((a.in_use(), a.parked()), (1, 0));
        // What arrived while parked is gone; what comes now is read.
        phone.send_to(b"new", addr).unwrap();
        r.rtp().set_nonblocking(false).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = r.rtp().recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
        phone.send_to(b"new rtcp", rtcp_addr).unwrap();
        r.rtcp().set_nonblocking(false).unwrap();
        let (n, _) = r.rtcp().recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new rtcp");
    }

    #[test]
    fn draining_a_pair_empties_both_sockets() {
        let rtp = UdpSocket::bind((LO, 0)).unwrap();
        let rtcp = UdpSocket::bind((LO, 0)).unwrap();
        // Nothing queued: returns at once on blocking sockets too.
        drain_pair(&rtp, &rtcp);
        let phone = UdpSocket::bind((LO, 0)).unwrap();
        // Only the RTCP socket has packets.
        for i in 0..5u8 {
            phone.send_to(&[i], rtcp.local_addr().unwrap()).unwrap();
        }
        drain_pair(&rtp, &rtcp);
        rtp.set_nonblocking(true).unwrap();
        rtcp.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            rtcp.recv_from(&mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        // Both sockets with packets.
        for i in 0..3u8 {
            phone.send_to(&[i], rtp.local_addr().unwrap()).unwrap();
            phone.send_to(&[i], rtcp.local_addr().unwrap()).unwrap();
        }
        drain_pair(&rtp, &rtcp);
        for s in [&rtp, &rtcp] {
            assert_eq!(
                s.recv_from(&mut buf).unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock
            );
        }
    }

    #[test]
    fn an_exhausted_range_takes_a_parked_pair_at_once() {
        let a = PortAllocator::new(LO, 31200, 31203).unwrap();
        assert_eq!(a.capacity(), 2);
        let p1 = a.allocate().unwrap();
        let p2 = a.allocate().unwrap();
        let port1 = p1.port();
        let (rtp, rtcp, lease) = p1.into_parts();
        lease.park(rtp, rtcp);
        let again = a.allocate().unwrap();
        assert_eq!(again.port(), port1);
        assert!(again.is_reused());
        let exhausted = a.allocate();
        assert!(matches!(exhausted, Err(MediaError::Exhausted { .. })));
        assert!(exhausted.is_err_and(|e| e.is_port_shortage()));
        // Any other bind error is not a shortage: waiting will not cure it.
        let elsewhere = PortAllocator::new("192.0.2.1".parse().unwrap(), 31200, 31203)
            .unwrap()
            .allocate();
        assert!(elsewhere.is_err_and(|e| !e.is_port_shortage()));
        drop((again, p2));
        assert_eq!((a.in_use(), a.parked()), (0, 0));
    }

    #[test]
    fn parking_beyond_capacity_closes_and_frees() {
        let a = PortAllocator::new(LO, 31300, 31399)
            .unwrap()
            .with_park_quarantine(Duration::ZERO);
        let cap = a.park_capacity();
        assert!(cap >= 1);
        // One pair of the range left over, in case a port of it is taken.
        let pairs: Vec<RtpPorts> = (0..(cap + 2).min(a.capacity() - 1))
            .map(|_| a.allocate().unwrap())
            .collect();
        let n = pairs.len();
        let first = pairs[0].port();
        for p in pairs {
            let (rtp, rtcp, lease) = p.into_parts();
            lease.park(rtp, rtcp);
        }
        assert_eq!(a.in_use(), 0);
        assert_eq!(a.parked(), n.min(cap));
        // With no quarantine the oldest parked pair comes back first.
        let r = a.allocate().unwrap();
        assert!(r.is_reused());
        assert_eq!(r.port(), first);
    }
}
