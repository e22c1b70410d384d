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
pub(crate) fn set_buffers(fd: RawFd, bytes: usize) {
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
