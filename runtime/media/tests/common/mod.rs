//! Helpers shared by the integration tests: fake phones on loopback and
//! bounded waits.

#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dialtone_media::{LegHandle, MediaEngine};

pub const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Generous bound for anything the relay should do in microseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Packets in flight per direction before the sender waits for them to
/// arrive; well under what a default socket buffer holds, so loopback
/// never drops.
pub const WINDOW: usize = 16;

/// A phone: one plain UDP socket.
pub struct Phone {
    pub sock: UdpSocket,
}

impl Phone {
    pub fn new(ip: IpAddr) -> Phone {
        Phone::try_new(ip).expect("bind phone socket")
    }

    pub fn try_new(ip: IpAddr) -> io::Result<Phone> {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        sock.set_read_timeout(Some(PATIENCE))?;
        Ok(Phone { sock })
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub fn send(&self, to: SocketAddr, data: &[u8]) {
        assert_eq!(self.sock.send_to(data, to).unwrap(), data.len());
    }

    /// Next datagram; panics after [`PATIENCE`].
    pub fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 2048];
        match self.sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                buf.truncate(n);
                (buf, from)
            }
            Err(e) => panic!("phone {} received nothing: {e}", self.addr()),
        }
    }

    /// A datagram if one arrives within `wait`.
    pub fn try_recv(&self, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 2048];
        let r = self.sock.recv_from(&mut buf);
        self.sock.set_read_timeout(Some(PATIENCE)).unwrap();
        match r {
            Ok((n, from)) => {
                buf.truncate(n);
                Some((buf, from))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// An RTP-looking packet: version 2, PT 0, the sequence number, a timestamp
/// and SSRC, then `len - 12` payload bytes derived from both so that any
/// mix-up shows.
pub fn rtp(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
    assert!(len >= 12);
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&[0x80, 0x00]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for i in 0..len - 12 {
        p.push((i as u32 ^ ssrc ^ u32::from(seq)) as u8);
    }
    p
}

/// Poll `f` until it holds; panic after [`PATIENCE`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait until both legs relay (the bridge has taken effect on the worker).
pub fn wait_bridged(a: &LegHandle, b: &LegHandle) {
    wait_until("the bridge to take effect", || {
        a.stats().is_relaying() && b.stats().is_relaying()
    });
}

/// Two new legs, each pointed at a phone of its own, bridged, and the
/// bridge in effect: `(a, b, a's phone, b's phone)`.
pub fn bridged_pair(engine: &MediaEngine) -> (LegHandle, LegHandle, Phone, Phone) {
    let (a, b) = (engine.allocate().unwrap(), engine.allocate().unwrap());
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);
    (a, b, pa, pb)
}

/// Wait until every port of the engine is closed and returned.
pub fn wait_ports_free(engine: &MediaEngine) {
    wait_until("all ports to be returned", || engine.ports_in_use() == 0);
}

/// Send `count` packets each way between two phones through two bridged
/// legs, `WINDOW` at a time, checking every packet arrives intact, in
/// order, from the leg's address.
pub fn exchange(pa: &Phone, a: SocketAddr, pb: &Phone, b: SocketAddr, count: usize, len: usize) {
    let mut sent = 0usize;
    while sent < count {
        let batch = WINDOW.min(count - sent);
        for i in sent..sent + batch {
            pa.send(a, &rtp(0xA, i as u16, len));
            pb.send(b, &rtp(0xB, i as u16, len));
        }
        for i in sent..sent + batch {
            let (data, from) = pb.recv();
            assert_eq!(from, b, "B hears A from B's leg");
            assert_eq!(data, rtp(0xA, i as u16, len), "packet {i} A->B");
            let (data, from) = pa.recv();
            assert_eq!(from, a, "A hears B from A's leg");
            assert_eq!(data, rtp(0xB, i as u16, len), "packet {i} B->A");
        }
        sent += batch;
    }
}

/// Wait until a leg's counters satisfy `f` (they are bumped just after
/// each send, so a phone may see a packet before its counter moves).
pub fn wait_counters(
    leg: &LegHandle,
    what: &str,
    f: impl Fn(&dialtone_media::LegCounters) -> bool,
) {
    wait_until(what, || f(&leg.stats().snapshot()));
}
