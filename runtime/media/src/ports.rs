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

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
    state: Mutex<PoolState>,
}

struct PoolState {
    /// `used[i]` is true while the pair `first + 2 i` is handed out.
    used: Vec<bool>,
    /// Where the next search starts.
    next: usize,
}

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
        Ok(PortAllocator {
            inner: Arc::new(Pool {
                ip,
                min,
                max,
                first: first as u16,
                pairs,
                in_use: AtomicUsize::new(0),
                state: Mutex::new(PoolState {
                    used: vec![false; pairs],
                    next: 0,
                }),
            }),
        })
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

    /// How many pairs are handed out now (leases not yet dropped).
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::Acquire)
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
    pub fn allocate(&self) -> Result<RtpPorts, MediaError> {
        let pool = &*self.inner;
        let mut state = pool.lock();
        let mut busy = 0usize;
        for step in 0..pool.pairs {
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
                Err(Skip::Fatal(e)) => return Err(e),
            };
            let rtcp = match bind(pool.ip, port + 1) {
                Ok(s) => s,
                Err(Skip::Busy) => {
                    busy += 1;
                    continue;
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
                },
            });
        }
        Err(MediaError::Exhausted {
            ip: pool.ip,
            min: pool.min,
            max: pool.max,
            in_use: pool.in_use.load(Ordering::Acquire),
            busy,
        })
    }
}

enum Skip {
    Busy,
    Fatal(MediaError),
}

fn bind(ip: IpAddr, port: u16) -> Result<UdpSocket, Skip> {
    let addr = SocketAddr::new(ip, port);
    UdpSocket::bind(addr).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied => Skip::Busy,
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
}

impl RtpPorts {
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
}

impl PortLease {
    /// The even RTP port this lease holds (RTCP is `port() + 1`).
    pub fn port(&self) -> u16 {
        self.port
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

    #[test]
    fn lease_returns_pair_and_count() {
        let a = PortAllocator::new(LO, 41000, 41099).unwrap();
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
}
