//! Thin wrappers over the Linux system calls the workers use: epoll for
//! readiness, an eventfd for wake-ups, and socket buffer sizes. All of the
//! crate's `unsafe` is here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance in level-triggered mode.
pub(crate) struct Epoll(OwnedFd);

/// One readiness report; `token` is what was registered.
pub(crate) type Event = libc::epoll_event;

pub(crate) fn empty_event() -> Event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// The token registered with the event.
#[inline(always)]
pub(crate) fn token(ev: &Event) -> u64 {
    // `epoll_event` is packed on x86-64: copy the field, never borrow it.
    ev.u64
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain system call; on success we own the descriptor.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watch `fd` for readability, reporting `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stop watching `fd`. Call before closing it.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = empty_event();
        // SAFETY: `ev` is ignored by the kernel for DEL but must be non-null
        // on old kernels.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) })?;
        Ok(())
    }

    /// Wait for readiness; `timeout_ms` -1 waits forever. An interrupted
    /// wait reports no event.
    pub(crate) fn wait(&self, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: the kernel writes at most `max` events into `events`.
        let r =
            unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(r as usize)
    }
}

/// A non-blocking eventfd used as a doorbell: any thread rings it, the
/// worker that owns it sees it readable in its epoll set.
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain system call; on success we own the descriptor.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Ring. Never blocks: the counter saturating (after 2^64 - 2 rings
    /// without a drain) only makes the write fail, and the bell is already
    /// ringing then.
    pub(crate) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reset the counter so the descriptor stops being readable.
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Ask for `bytes` of kernel receive and send buffer on a socket. The kernel
/// caps the request at `net.core.rmem_max` / `wmem_max`; failures are
/// ignored because the defaults work, only with less slack for bursts.
pub fn set_buffers(fd: RawFd, bytes: usize) {
    let v = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: passes a pointer to a live c_int and its size.
        let _ = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

/// The kernel's receive and send buffer sizes of a socket, in bytes, as
/// `getsockopt` reports them (Linux doubles what was asked, for its own
/// bookkeeping); `None` for an option it will not report.
pub fn buffers(fd: RawFd) -> (Option<usize>, Option<usize>) {
    let get = |opt: libc::c_int| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one c_int into a live local of that size.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(v as usize)
    };
    (get(libc::SO_RCVBUF), get(libc::SO_SNDBUF))
}

/// Datagrams taken or sent per `recvmmsg`/`sendmmsg`.
pub(crate) const BATCH: usize = 32;

/// Bytes of each batch buffer: the largest datagram a batch receives
/// (larger ones arrive truncated and are dropped) plus tailroom for an
/// SRTP tag and for L16 widening of a G.711 payload in place.
pub(crate) const SLOT_BYTES: usize = 4096;

/// The largest datagram received whole.
pub(crate) const DATAGRAM_MAX: usize = 2048;

fn to_sockaddr(addr: std::net::SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for
            // sockaddr_in.
            let sin = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(std::net::SocketAddr::from((
                sin.sin_addr.s_addr.to_ne_bytes(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Buffers for one `recvmmsg`, allocated once per worker.
pub(crate) struct RecvBatch {
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers inside point into the batch's own boxes, which
// move with it; it is used by one thread at a time.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        RecvBatch {
            bufs: vec![0u8; BATCH * SLOT_BYTES].into_boxed_slice(),
            addrs: vec![zero_addr; BATCH].into_boxed_slice(),
            iovs: vec![zero_iov; BATCH].into_boxed_slice(),
            hdrs: vec![zero_hdr; BATCH].into_boxed_slice(),
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; 0 when none is
    /// queued.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let base = self.bufs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: i * SLOT_BYTES is inside `bufs`.
            self.iovs[i].iov_base = unsafe { base.add(i * SLOT_BYTES) } as *mut libc::c_void;
            self.iovs[i].iov_len = DATAGRAM_MAX;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the stated sizes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last receive: its buffer (the whole slot, the
    /// datagram first), its length, its source, and whether it was
    /// truncated.
    pub(crate) fn get(
        &mut self,
        i: usize,
    ) -> (&mut [u8], usize, Option<std::net::SocketAddr>, bool) {
        let len = self.hdrs[i].msg_len as usize;
        let truncated = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let src = from_sockaddr(&self.addrs[i]);
        (
            &mut self.bufs[i * SLOT_BYTES..(i + 1) * SLOT_BYTES],
            len,
            src,
            truncated,
        )
    }
}

/// Datagrams to send with one `sendmmsg` (all from one socket), pointing
/// into a [`RecvBatch`].
pub(crate) struct SendBatch {
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    n: usize,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub(crate) fn new() -> SendBatch {
        // SAFETY: all-zero is valid for these C structs.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        SendBatch {
            addrs: vec![zero_addr; BATCH].into_boxed_slice(),
            iovs: vec![zero_iov; BATCH].into_boxed_slice(),
            hdrs: vec![zero_hdr; BATCH].into_boxed_slice(),
            n: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Queues `len` bytes at `data` for `dest`. The bytes must stay put
    /// until [`send`](Self::send).
    pub(crate) fn push(&mut self, data: *const u8, len: usize, dest: std::net::SocketAddr) {
        let i = self.n;
        if i == BATCH {
            return;
        }
        let namelen = to_sockaddr(dest, &mut self.addrs[i]);
        self.iovs[i].iov_base = data as *mut libc::c_void;
        self.iovs[i].iov_len = len;
        let h = &mut self.hdrs[i].msg_hdr;
        h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
        h.msg_namelen = namelen;
        h.msg_iov = &mut self.iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        h.msg_flags = 0;
        self.n += 1;
    }

    /// Sends everything queued from `fd`; returns the bytes of each
    /// datagram sent (in order; `None` for those that were not) through
    /// `each`, and empties the batch.
    pub(crate) fn send(&mut self, fd: RawFd, mut each: impl FnMut(Option<usize>)) {
        let mut done = 0;
        while done < self.n {
            // SAFETY: headers [done, n) point at live buffers queued by
            // `push`, whose callers keep them in place until now.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (self.n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                // The first unsent datagram failed (buffer full, ICMP
                // error reported): count it and go on with the rest.
                each(None);
                done += 1;
                continue;
            }
            for h in &self.hdrs[done..done + r as usize] {
                each(Some(h.msg_len as usize));
            }
            done += r as usize;
        }
        self.n = 0;
    }
}
