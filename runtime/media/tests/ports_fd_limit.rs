//! The port allocator when the process runs out of file descriptors.
//!
//! A test binary of its own: it lowers the process's `RLIMIT_NOFILE`,
//! which would starve any test running beside it.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use dialtone_media::{MediaError, PortAllocator};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The tests here change the process's limit one at a time.
static LIMIT: Mutex<()> = Mutex::new(());

fn nofile() -> libc::rlimit {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    l
}

fn set_nofile(l: &libc::rlimit) {
    // SAFETY: setrlimit reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, l) }, 0);
}

/// Sets the soft limit on open files to `n`, the hard one unchanged.
fn set_soft_nofile(n: usize, saved: &libc::rlimit) {
    set_nofile(&libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: saved.rlim_max,
    });
}

/// Parks a pair the way the media engine does: sockets non-blocking.
fn park(p: dialtone_media::RtpPorts) {
    let (rtp, rtcp, lease) = p.into_parts();
    rtp.set_nonblocking(true).unwrap();
    rtcp.set_nonblocking(true).unwrap();
    lease.park(rtp, rtcp);
}

/// The highest file descriptor open in this process.
fn highest_fd() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .max()
        .unwrap()
}

#[test]
fn out_of_descriptors_a_parked_pair_is_handed_out_at_once() {
    let _one = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    // Under Linux's ephemeral ports, away from the other tests' ranges.
    let alloc = PortAllocator::new(LO, 31400, 31499).unwrap();
    let first = alloc.allocate().unwrap();
    let parked_port = first.port();
    park(first);
    assert_eq!((alloc.in_use(), alloc.parked()), (0, 1));

    // No new descriptor from here on: the limit sits just above the
    // highest one open, and the holes below it are filled.
    let saved = nofile();
    set_soft_nofile(highest_fd() as usize + 1, &saved);
    let mut filler = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        filler.push(f);
        assert!(filler.len() < 100_000, "the limit is not enforced");
    }

    // The parked pair is still in quarantine, but nothing else can be
    // bound: it is handed out instead of failing the call.
    let reused = alloc.allocate();
    // The next one has nothing to fall back on: a clear error naming the
    // address and the operating system's reason.
    let none = alloc.allocate();

    drop(filler);
    set_nofile(&saved);

    let reused = reused.expect("the parked pair is handed out");
    assert!(reused.is_reused());
    assert_eq!(reused.port(), parked_port);
    assert_eq!((alloc.in_use(), alloc.parked()), (1, 0));
    assert!(none.as_ref().is_err_and(MediaError::is_port_shortage));
    match none {
        Err(MediaError::Bind { addr, source }) => {
            assert_eq!(addr.ip(), LO);
            assert_eq!(source.raw_os_error(), Some(libc::EMFILE), "{source}");
        }
        other => panic!("expected a bind error with EMFILE, got {other:?}"),
    }
    // With descriptors back, allocation binds fresh pairs again.
    let fresh = alloc.allocate().unwrap();
    assert!(!fresh.is_reused());
    assert_eq!(alloc.in_use(), 2);
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one() {
    let _one = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let saved = nofile();
    let low = libc::rlimit {
        rlim_cur: saved.rlim_max.min(256),
        rlim_max: saved.rlim_max,
    };
    set_nofile(&low);
    let now = dialtone_media::ports::raise_nofile_limit();
    let after = nofile();
    set_nofile(&saved);
    assert_eq!(
        after.rlim_cur, saved.rlim_max,
        "soft limit raised to the hard one"
    );
    assert_eq!(after.rlim_max, saved.rlim_max, "hard limit unchanged");
    assert_eq!(
        now as libc::rlim_t, saved.rlim_max,
        "the limit in force is returned"
    );
}

/// The RTP sockets stop at their share of the open file limit: the last
/// descriptors stay free for the rest of the process (here a quarter of a
/// small limit), and at the share a parked pair is still handed out.
#[test]
fn rtp_sockets_leave_a_reserve_of_descriptors_to_the_rest_of_the_process() {
    let _one = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let saved = nofile();
    let limit = highest_fd() as usize + 1 + 400;
    set_soft_nofile(limit, &saved);
    let alloc = PortAllocator::new(LO, 31500, 32499).unwrap();
    let reserve = dialtone_media::ports::FD_RESERVE.min(limit / 4);
    assert_eq!(alloc.open_cap(), (limit - reserve) / 2);
    assert!(alloc.capacity() > alloc.open_cap());

    let mut held = Vec::new();
    let refused = loop {
        match alloc.allocate() {
            Ok(p) => held.push(p),
            Err(e) => break e,
        }
    };
    assert_eq!(held.len(), alloc.open_cap());
    assert!(
        matches!(refused, MediaError::DescriptorShare { .. }),
        "{refused}"
    );
    assert!(refused.is_port_shortage());
    // The reserve is there for everything else.
    let files: Vec<File> = (0..reserve / 2)
        .map(|_| File::open("/dev/null").expect("a descriptor from the reserve"))
        .collect();
    // At the share a parked pair is still handed out.
    let last = held.pop().unwrap();
    let port = last.port();
    park(last);
    let again = alloc.allocate().unwrap();
    assert!(again.is_reused());
    assert_eq!(again.port(), port);
    assert!(alloc.allocate().is_err_and(|e| e.is_port_shortage()));
    drop((files, held, again));
    set_nofile(&saved);
    assert_eq!(alloc.in_use(), 0);
}
