//! The error type of the media crate.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// Identifies one call leg's media for the lifetime of a [`MediaEngine`].
///
/// Ids are handed out in increasing order and never reused.
///
/// [`MediaEngine`]: crate::MediaEngine
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg-{}", self.0)
    }
}

/// Everything that can go wrong when allocating ports or driving the relay.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The configured port range cannot hold a single RTP/RTCP pair.
    #[error("invalid RTP port range {min}-{max}: {reason}")]
    InvalidRange {
        /// Lowest configured port.
        min: u16,
        /// Highest configured port.
        max: u16,
        /// Why the range was refused.
        reason: &'static str,
    },
    /// Every even port of the range is in use, by this switch or by someone
    /// else.
    #[error(
        "no free RTP/RTCP port pair on {ip} in {min}-{max}: \
         {in_use} pairs in use by calls, {busy} pairs busy elsewhere"
    )]
    Exhausted {
        /// Address the allocator binds to.
        ip: IpAddr,
        /// Lowest configured port.
        min: u16,
        /// Highest configured port.
        max: u16,
        /// Pairs currently handed out by this allocator.
        in_use: usize,
        /// Pairs skipped during the search because binding failed (taken by
        /// another process or socket).
        busy: usize,
    },
    /// The RTP sockets hold their whole share of the open file limit: the
    /// rest is kept for the process's other sockets and files
    /// ([`crate::ports::FD_RESERVE`]).
    #[error(
        "no RTP/RTCP pair bound: {pairs} pairs are open, and the last {reserve} \
         file descriptors are kept for the switch's other sockets and files"
    )]
    DescriptorShare {
        /// Pairs open (handed out or parked).
        pairs: usize,
        /// Descriptors kept for the rest of the process.
        reserve: usize,
    },
    /// Binding failed for a reason other than the port being taken (the
    /// address is not on this host, for instance).
    #[error("cannot bind RTP socket on {addr}: {source}")]
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another I/O error (socket options, epoll, eventfd, thread spawn).
    #[error("media I/O error: {0}")]
    Io(#[from] io::Error),
    /// The configuration was refused.
    #[error("invalid media configuration: {0}")]
    Config(&'static str),
    /// The leg was released already.
    #[error("unknown media leg {0}")]
    UnknownLeg(LegId),
    /// The handle was made by another engine.
    #[error("media leg {0} belongs to another media engine")]
    ForeignLeg(LegId),
    /// `bridge(a, a)`.
    #[error("cannot bridge media leg {0} to itself")]
    SelfBridge(LegId),
    /// A remote address of the other IP family than the leg's socket.
    #[error("remote address {remote} cannot be reached from local address {local}")]
    AddressFamily {
        /// The leg's local RTP address.
        local: SocketAddr,
        /// The refused remote address.
        remote: SocketAddr,
    },
    /// The engine was shut down.
    #[error("the media engine has shut down")]
    ShutDown,
}

impl MediaError {
    /// Whether an allocation failed only for want of a free pair right now:
    /// the range is exhausted, the RTP sockets hold their share of the
    /// descriptors, or the process (`EMFILE`) or the system (`ENFILE`) is
    /// out of them. Calls that end free pairs, so the same allocation can
    /// succeed a moment later; any other error (an address not on this
    /// host, say) will not.
    pub fn is_port_shortage(&self) -> bool {
        match self {
            MediaError::Exhausted { .. } | MediaError::DescriptorShare { .. } => true,
            MediaError::Bind { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
            }
            _ => false,
        }
    }
}
