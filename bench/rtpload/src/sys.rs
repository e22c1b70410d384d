//! Thin wrappers over the libc calls rtpload uses: socket buffer sizes,
//! poll, batched UDP I/O (recvmmsg/sendmmsg) and CPU accounting.

use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;

fn set_int_opt(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: fd is an open socket, the option value is a c_int on the stack.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Sets SO_RCVBUF and SO_SNDBUF to `bytes`, with the FORCE variants first
/// (they pass net.core.*mem_max when running as root). Returns the sizes the
/// kernel reports afterwards (it doubles the requested value).
pub fn set_socket_buffers(fd: RawFd, bytes: i32) -> (i64, i64) {
    if !set_int_opt(fd, libc::SO_RCVBUFFORCE, bytes) {
        set_int_opt(fd, libc::SO_RCVBUF, bytes);
    }
    if !set_int_opt(fd, libc::SO_SNDBUFFORCE, bytes) {
        set_int_opt(fd, libc::SO_SNDBUF, bytes);
    }
    let size = |v: Option<usize>| v.map_or(-1, |v| v as i64);
    let (rcv, snd) = dialtone_media::socket_buffers(fd);
    (size(rcv), size(snd))
}

/// Waits up to `timeout_ms` for `fd` to become readable.
pub fn poll_readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    r > 0 && (pfd.revents & libc::POLLIN) != 0
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A fixed set of datagram buffers with their iovecs, IPv4 addresses and
/// mmsghdrs, wired together once so that batched I/O never allocates.
pub struct Mmsg {
    bufsize: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Mmsg {
    pub fn new(cap: usize, bufsize: usize) -> Mmsg {
        // SAFETY: sockaddr_in, iovec and mmsghdr are plain C structs for
        // which all-zero bytes are a valid value.
        let zero_addr: libc::sockaddr_in = unsafe { zeroed() };
        let mut m = Mmsg {
            bufsize,
            bufs: vec![0u8; cap * bufsize],
            addrs: vec![zero_addr; cap],
            iovs: Vec::with_capacity(cap),
            msgs: Vec::with_capacity(cap),
        };
        let base = m.bufs.as_mut_ptr();
        for j in 0..cap {
            m.iovs.push(libc::iovec {
                // SAFETY: j * bufsize < cap * bufsize, inside the allocation.
                iov_base: unsafe { base.add(j * bufsize) }.cast(),
                iov_len: bufsize,
            });
        }
        // The vectors are never resized again, so these pointers stay valid
        // for the life of `m` (moving `m` does not move their heap storage).
        for (addr, iov) in m.addrs.iter_mut().zip(m.iovs.iter_mut()) {
            // SAFETY: see above.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov as *mut libc::iovec;
            h.msg_hdr.msg_iovlen = 1;
            m.msgs.push(h);
        }
        m
    }

    pub fn cap(&self) -> usize {
        self.msgs.len()
    }

    /// Datagram `j` as received (its length from the last recvmmsg).
    pub fn received(&self, j: usize) -> &[u8] {
        let len = (self.msgs[j].msg_len as usize).min(self.bufsize);
        &self.bufs[j * self.bufsize..j * self.bufsize + len]
    }

    /// The whole buffer of slot `j`, for building a datagram to send.
    pub fn slot_mut(&mut self, j: usize) -> &mut [u8] {
        &mut self.bufs[j * self.bufsize..(j + 1) * self.bufsize]
    }

    /// Prepares slot `j` to send `len` bytes to `ip:port` (host order).
    pub fn set_send(&mut self, j: usize, len: usize, ip: u32, port: u16) {
        self.iovs[j].iov_len = len.min(self.bufsize);
        let a = &mut self.addrs[j];
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_port = port.to_be();
        a.sin_addr = libc::in_addr { s_addr: ip.to_be() };
        self.msgs[j].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }

    /// Makes slot `j` send back what it received, to where it came from.
    pub fn echo_back(&mut self, j: usize) {
        self.iovs[j].iov_len = (self.msgs[j].msg_len as usize).min(self.bufsize);
    }

    /// Receives up to `cap` datagrams without blocking. Returns how many
    /// (0 when nothing is waiting or on error).
    pub fn recv(&mut self, fd: RawFd) -> usize {
        for (iov, h) in self.iovs.iter_mut().zip(self.msgs.iter_mut()) {
            iov.iov_len = self.bufsize;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        loop {
            // SAFETY: msgs points at cap valid mmsghdrs wired to live buffers.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.msgs.as_mut_ptr(),
                    self.msgs.len() as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                return r as usize;
            }
            if errno() != libc::EINTR {
                return 0;
            }
        }
    }

    /// Sends slots `0..n`. `on_sent(j)` is called for every slot the kernel
    /// took; a slot that fails is skipped and counted. Returns (sent, errors).
    pub fn send(&mut self, fd: RawFd, n: usize, mut on_sent: impl FnMut(usize)) -> (u64, u64) {
        let n = n.min(self.msgs.len());
        let mut off = 0;
        let mut sent = 0u64;
        let mut errors = 0u64;
        let mut transient = 0;
        while off < n {
            // SAFETY: off < n <= cap; the headers point at live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs.as_mut_ptr().add(off),
                    (n - off) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                for j in off..off + r as usize {
                    on_sent(j);
                }
                sent += r as u64;
                off += r as usize;
                continue;
            }
            let e = errno();
            if (e == libc::EINTR || e == libc::EAGAIN || e == libc::ENOBUFS) && transient < 8 {
                transient += 1;
                if e != libc::EINTR {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                continue;
            }
            // The message at `off` cannot be sent: skip it.
            errors += 1;
            off += 1;
        }
        (sent, errors)
    }
}

/// Clock ticks per second for /proc times.
pub fn clock_ticks() -> f64 {
    // SAFETY: plain sysconf query.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all its threads), in clock ticks, from
/// fields 14 and 15 of /proc/PID/stat. `None` if the process is gone.
pub fn proc_ticks(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it start
    // at the last ')'. Field 3 is then index 0, so field 14 is index 11.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) jiffies of the whole machine from the `cpu ` line of
/// /proc/stat. Busy is total minus idle and iowait.
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// CPU seconds (user + system) of this process, all threads.
pub fn self_cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let mut ru: libc::rusage = unsafe { zeroed() };
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if r != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// splitmix64: a fast, well-mixed hash of a counter.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A per-run seed from the clock and the PID.
pub fn run_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    mix(t ^ (u64::from(std::process::id()) << 32))
}
