//! The relay end to end: fake phones on loopback talking through bridged
//! legs.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::{
    bridged_pair, exchange, rtp, wait_bridged, wait_counters, wait_ports_free, wait_until, Phone,
    LO, WINDOW,
};
use dialtone_media::{MediaConfig, MediaEngine, MediaError, Stream};

fn engine(min: u16, max: u16, workers: usize) -> MediaEngine {
    MediaEngine::start(MediaConfig::new(LO, min, max).workers(workers)).unwrap()
}

#[test]
fn bridged_legs_relay_both_ways_intact_and_in_order() {
    let engine = engine(21000, 21099, 2);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(a.rtp_addr().ip(), LO);
    assert_eq!(a.rtp_addr().port() % 2, 0);
    assert_eq!(a.rtcp_addr().port(), a.rtp_addr().port() + 1);
    assert_eq!(engine.ports_in_use(), 2);

    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);
    assert_eq!(
        engine.worker_of(&a),
        engine.worker_of(&b),
        "a bridged pair shares a worker"
    );

    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 1000, 172);
    for leg in [&a, &b] {
        wait_counters(leg, "1000 sent", |c| c.rtp.packets_sent == 1000);
    }

    let (ca, cb) = (a.stats().snapshot(), b.stats().snapshot());
    assert_eq!(ca.rtp.packets_received, 1000);
    assert_eq!(ca.rtp.bytes_received, 172_000);
    assert_eq!(ca.rtp.packets_sent, 1000);
    assert_eq!(ca.rtp.bytes_sent, 172_000);
    assert_eq!(ca.rtp.packets_dropped, 0);
    assert_eq!(cb.rtp, ca.rtp);
    assert_eq!(ca.rtcp.packets_received, 0);

    drop(a);
    engine.release(b);
    wait_ports_free(&engine);
    assert_eq!(engine.legs(), 0);
}

#[test]
fn rtcp_is_relayed_between_the_rtcp_sockets() {
    let engine = engine(21100, 21199, 2);
    let a = engine.allocate().unwrap();
    let b = engine.allocate_beside(&a).unwrap();
    assert_eq!(engine.worker_of(&a), engine.worker_of(&b));
    // The phones' RTP sockets only receive; RTCP goes to their own sockets
    // at the SDP port + 1 (bound by binding a pair).
    let (pa, pa_rtcp) = phone_pair();
    let (pb, pb_rtcp) = phone_pair();
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);

    // RTCP both ways, sent from the phones' RTCP sockets: checks sockets,
    // destinations (port + 1) and contents.
    exchange(&pa_rtcp, a.rtcp_addr(), &pb_rtcp, b.rtcp_addr(), 200, 64);
    wait_counters(&a, "200 RTCP sent", |c| c.rtcp.packets_sent == 200);
    let c = a.stats().snapshot();
    assert_eq!(c.rtcp.packets_received, 200);
    assert_eq!(c.rtcp.packets_sent, 200);
    assert_eq!(c.rtp.packets_received, 0);
    assert_eq!(c.rtp.packets_sent, 0);
    assert!(
        pa.try_recv(Duration::from_millis(20)).is_none(),
        "nothing on the RTP port"
    );

    // An explicit a=rtcp destination overrides port + 1.
    let other = Phone::new(LO);
    engine.set_remote_rtcp(&b, other.addr()).unwrap();
    // Let the change land, then send from a fresh socket so nothing is
    // latched on B's RTCP.
    wait_until("the RTCP override", || {
        pa_rtcp.send(a.rtcp_addr(), b"probe");
        other.try_recv(Duration::from_millis(5)).is_some()
    });
}

/// Two sockets on consecutive ports (RTP even, RTCP odd), like a phone's.
fn phone_pair() -> (Phone, Phone) {
    for _ in 0..100 {
        let rtp = Phone::new(LO);
        let port = rtp.addr().port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(sock) = UdpSocket::bind((LO, port + 1)) {
            sock.set_read_timeout(Some(common::PATIENCE)).unwrap();
            return (rtp, Phone { sock });
        }
    }
    panic!("no consecutive pair of free ports");
}

#[test]
fn latching_follows_the_source_not_the_sdp() {
    let engine = engine(21200, 21299, 2);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    // B's SDP names an address where B is not: a decoy socket stands
    // there so we can see what goes to it.
    let decoy = Phone::new(LO);
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, decoy.addr()).unwrap();
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);

    // Before B is heard from, its packets go to the SDP address.
    pa.send(a.rtp_addr(), &rtp(0xA, 0, 100));
    let (data, from) = decoy.recv();
    assert_eq!(data, rtp(0xA, 0, 100));
    assert_eq!(from, b.rtp_addr());

    // B speaks from its real address: relayed to A, and B is latched.
    pb.send(b.rtp_addr(), &rtp(0xB, 0, 100));
    assert_eq!(pa.recv().0, rtp(0xB, 0, 100));

    for i in 1..=200u16 {
        pa.send(a.rtp_addr(), &rtp(0xA, i, 100));
        let (data, from) = pb.recv();
        assert_eq!(data, rtp(0xA, i, 100));
        assert_eq!(from, b.rtp_addr());
    }
    assert!(
        decoy.try_recv(Duration::from_millis(50)).is_none(),
        "nothing more goes to the SDP address once latched"
    );

    // B moves (another source address): the latch follows.
    let pb2 = Phone::new(LO);
    pb2.send(b.rtp_addr(), &rtp(0xB, 1, 100));
    assert_eq!(pa.recv().0, rtp(0xB, 1, 100));
    pa.send(a.rtp_addr(), &rtp(0xA, 999, 100));
    assert_eq!(pb2.recv().0, rtp(0xA, 999, 100));

    // A new SDP address clears the latch.
    let pb3 = Phone::new(LO);
    engine.set_remote(&b, pb3.addr()).unwrap();
    wait_until("the new SDP address", || {
        pa.send(a.rtp_addr(), &rtp(0xA, 1000, 100));
        pb3.try_recv(Duration::from_millis(5)).is_some()
    });
    assert_eq!(a.stats().snapshot().rtp.packets_dropped, 0);
}

#[test]
fn unbridged_packets_are_dropped_and_counted() {
    let engine = engine(21300, 21399, 2);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();

    // Not bridged yet.
    for i in 0..10 {
        pa.send(a.rtp_addr(), &rtp(0xA, i, 50));
        pa.send(a.rtcp_addr(), &rtp(0xA, i, 50));
    }
    wait_until("10 drops on each stream", || {
        let c = a.stats().snapshot();
        c.rtp.packets_dropped == 10 && c.rtcp.packets_dropped == 10
    });
    let c = a.stats().snapshot();
    assert_eq!(c.rtp.packets_received, 10);
    assert_eq!(c.rtp.bytes_received, 500);
    assert_eq!(c.rtp.packets_sent, 0);
    assert_eq!(c.rtcp.packets_received, 10);
    assert!(pb.try_recv(Duration::from_millis(20)).is_none());

    // Bridged: relayed.
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 50, 50);
    assert_eq!(a.stats().stream(Stream::Rtp).packets_dropped, 10);

    // Unbridged again: dropped again, on both legs.
    engine.unbridge(&b).unwrap();
    wait_until("unbridge", || {
        !a.stats().is_relaying() && !b.stats().is_relaying()
    });
    assert_eq!(engine.worker_of(&a), engine.worker_of(&b));
    for i in 0..5 {
        pa.send(a.rtp_addr(), &rtp(0xA, i, 50));
        pb.send(b.rtp_addr(), &rtp(0xB, i, 50));
    }
    wait_until("5 more drops on each leg", || {
        a.stats().snapshot().rtp.packets_dropped == 15
            && b.stats().snapshot().rtp.packets_dropped == 5
    });
    assert!(pa.try_recv(Duration::from_millis(20)).is_none());
    assert!(pb.try_recv(Duration::from_millis(20)).is_none());
    assert_eq!(a.stats().snapshot().rtp.packets_sent, 50);
}

#[test]
fn a_leg_without_any_destination_drops() {
    let engine = engine(21400, 21499, 1);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let pa = Phone::new(LO);
    engine.set_remote(&a, pa.addr()).unwrap();
    // B has no SDP address and has sent nothing.
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);
    for i in 0..5 {
        pa.send(a.rtp_addr(), &rtp(0xA, i, 40));
    }
    wait_until("drops for lack of a destination", || {
        a.stats().snapshot().rtp.packets_dropped == 5
    });
    assert_eq!(b.stats().snapshot().rtp.packets_sent, 0);
}

#[test]
fn release_frees_ports_and_counters_stop() {
    let engine = engine(21500, 21599, 2);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 100, 80);
    assert_eq!(engine.ports_in_use(), 2);

    let (sa, sb) = (Arc::clone(a.stats()), Arc::clone(b.stats()));
    let (addr_a, addr_b) = (a.rtp_addr(), b.rtp_addr());
    engine.release(a);
    wait_until("B to notice A is gone", || !sb.is_relaying());
    assert!(!sa.is_relaying());
    assert_eq!(engine.legs(), 1);
    // B is still there and now drops what it gets.
    pb.send(addr_b, &rtp(0xB, 0, 80));
    wait_until("B drops", || sb.snapshot().rtp.packets_dropped == 1);
    assert!(pa.try_recv(Duration::from_millis(20)).is_none());

    drop(b);
    wait_ports_free(&engine);
    assert_eq!(engine.legs(), 0);
    let (before_a, before_b) = (sa.snapshot(), sb.snapshot());
    // The pairs are parked for reuse: nothing is counted any more.
    assert_eq!(engine.ports_parked(), 2);
    for i in 0..10 {
        pa.send(addr_a, &rtp(0xA, i, 80));
        pb.send(addr_b, &rtp(0xB, i, 80));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sa.snapshot(), before_a);
    assert_eq!(sb.snapshot(), before_b);
    // Once the engine is gone the ports can be bound again by anyone.
    drop(engine);
    let rebind = UdpSocket::bind(addr_a).expect("released RTP port is free");
    drop(rebind);
}

#[test]
fn a_worker_holding_legs_is_not_rung_and_applies_changes_before_later_packets() {
    let engine = engine(21900, 21999, 1);
    // Two bridged legs the worker holds: from now on it polls its list.
    let (h1, h2, _p1, _p2) = bridged_pair(&engine);
    let rung = engine.doorbells();
    assert!(rung >= 1, "an idle worker is rung for its first leg");

    // A new call's legs, bridged, and packets sent the moment the API
    // calls return: no doorbell, and still every packet is relayed (the
    // worker takes the changes before the packets that woke it).
    let (a, b) = (engine.allocate().unwrap(), engine.allocate().unwrap());
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.bridge(&a, &b).unwrap();
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 200, 60);
    assert_eq!(
        engine.doorbells(),
        rung,
        "no doorbell while the worker holds legs"
    );

    // Without packets the changes are taken by the poll: a release.
    drop((a, b));
    wait_until("the released pair to leave the worker", || {
        engine.ports_in_use() == 2
    });
    assert_eq!(engine.doorbells(), rung);

    // An idle worker is rung again.
    drop((h1, h2));
    wait_ports_free(&engine);
    let _c = engine.allocate().unwrap();
    assert!(engine.doorbells() > rung, "an idle worker is rung");
}

#[test]
fn rebridging_moves_the_relay_to_the_new_partner() {
    let engine = engine(21600, 21699, 2);
    let legs: Vec<_> = (0..4).map(|_| engine.allocate().unwrap()).collect();
    let phones: Vec<_> = (0..4).map(|_| Phone::new(LO)).collect();
    for (leg, phone) in legs.iter().zip(&phones) {
        engine.set_remote(leg, phone.addr()).unwrap();
    }
    let [a, b, c, d] = &legs[..] else {
        unreachable!()
    };
    engine.bridge(a, b).unwrap();
    engine.bridge(a, c).unwrap(); // b is left alone
    engine.bridge(b, d).unwrap();
    engine.bridge(c, a).unwrap(); // already so: a no-op
    wait_bridged(a, c);
    wait_bridged(b, d);
    assert_eq!(engine.worker_of(a), engine.worker_of(c));
    assert_eq!(engine.worker_of(b), engine.worker_of(d));
    exchange(&phones[0], a.rtp_addr(), &phones[2], c.rtp_addr(), 100, 60);
    exchange(&phones[1], b.rtp_addr(), &phones[3], d.rtp_addr(), 100, 60);
    let loads = engine.worker_loads();
    assert_eq!(loads.iter().sum::<usize>(), 4);

    assert!(matches!(
        engine.bridge(a, a),
        Err(MediaError::SelfBridge(_))
    ));
    drop(legs);
    wait_ports_free(&engine);
}

#[test]
fn calls_from_another_engine_or_after_shutdown_are_refused() {
    let one = engine(21700, 21749, 1);
    let two = engine(21750, 21799, 1);
    let a = one.allocate().unwrap();
    let b = two.allocate().unwrap();
    assert!(matches!(one.bridge(&a, &b), Err(MediaError::ForeignLeg(_))));
    assert!(matches!(
        one.set_remote(&b, a.rtp_addr()),
        Err(MediaError::ForeignLeg(_))
    ));
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4000);
    assert!(matches!(
        one.set_remote(&a, v6),
        Err(MediaError::AddressFamily { .. })
    ));
    two.shutdown();
    // The shut-down engine's workers closed B's sockets.
    assert!(
        UdpSocket::bind(b.rtp_addr()).is_ok(),
        "sockets closed at shutdown"
    );
    drop(b);
    assert!(one.allocate().is_ok());
}

#[test]
fn ipv6_loopback() {
    let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    if let Err(e) = UdpSocket::bind((ip, 0)) {
        println!("skipping the IPv6 test: cannot bind [::1]: {e}");
        return;
    }
    let engine = MediaEngine::start(MediaConfig::new(ip, 21800, 21899).workers(2)).unwrap();
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    assert_eq!(a.rtp_addr().ip(), ip);
    let (pa, pb) = (Phone::new(ip), Phone::new(ip));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    assert!(matches!(
        engine.set_remote(&a, SocketAddr::new(LO, 4000)),
        Err(MediaError::AddressFamily { .. })
    ));
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 300, 172);
    wait_counters(&a, "300 sent", |c| c.rtp.packets_sent == 300);
    drop((a, b));
    wait_ports_free(&engine);
}

#[test]
fn fifty_pairs_on_two_workers() {
    const PAIRS: usize = 50;
    const ROUNDS: usize = 100;
    let engine = engine(22000, 22999, 2);
    let mut calls = Vec::new();
    for _ in 0..PAIRS {
        // Plain allocate: the least-loaded rule puts the two legs of a pair
        // on different workers, so every bridge moves a leg.
        let a = engine.allocate().unwrap();
        let b = engine.allocate().unwrap();
        let (pa, pb) = (Phone::new(LO), Phone::new(LO));
        engine.set_remote(&a, pa.addr()).unwrap();
        engine.set_remote(&b, pb.addr()).unwrap();
        calls.push((a, b, pa, pb));
    }
    for (a, b, ..) in &calls {
        engine.bridge(a, b).unwrap();
    }
    for (a, b, ..) in &calls {
        wait_bridged(a, b);
        assert_eq!(engine.worker_of(a), engine.worker_of(b));
    }
    let loads = engine.worker_loads();
    assert_eq!(loads.len(), 2);
    assert!(
        loads.iter().all(|&l| l >= 2 * PAIRS / 4),
        "both workers carry calls: {loads:?}"
    );
    assert_eq!(loads.iter().sum::<usize>(), 2 * PAIRS);

    // Every phone sends one packet per round; then every phone reads one.
    for round in 0..ROUNDS as u16 {
        for (i, (a, b, pa, pb)) in calls.iter().enumerate() {
            pa.send(a.rtp_addr(), &rtp(2 * i as u32, round, 172));
            pb.send(b.rtp_addr(), &rtp(2 * i as u32 + 1, round, 172));
        }
        for (i, (_, _, pa, pb)) in calls.iter().enumerate() {
            assert_eq!(
                pb.recv().0,
                rtp(2 * i as u32, round, 172),
                "pair {i} round {round}"
            );
            assert_eq!(
                pa.recv().0,
                rtp(2 * i as u32 + 1, round, 172),
                "pair {i} round {round}"
            );
        }
    }
    for (a, b, ..) in &calls {
        for leg in [a, b] {
            wait_counters(leg, "every packet counted", |c| {
                c.rtp.packets_sent == ROUNDS as u64
            });
            let c = leg.stats().snapshot();
            assert_eq!(c.rtp.packets_received, ROUNDS as u64);
            assert_eq!(c.rtp.packets_sent, ROUNDS as u64);
            assert_eq!(c.rtp.packets_dropped, 0);
        }
    }
    assert_eq!(engine.ports_in_use(), 2 * PAIRS);
    drop(calls);
    wait_ports_free(&engine);
    assert_eq!(engine.worker_loads(), vec![0, 0]);
    let _ = WINDOW;
}

#[test]
fn usable_from_tokio_tasks() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Arc::new(engine(23000, 23199, 2));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for call in 0..20u32 {
            let engine = Arc::clone(&engine);
            tasks.push(tokio::spawn(async move {
                let a = engine.allocate().unwrap();
                let b = engine.allocate_beside(&a).unwrap();
                let pa = tokio::net::UdpSocket::bind((LO, 0)).await.unwrap();
                let pb = tokio::net::UdpSocket::bind((LO, 0)).await.unwrap();
                engine.set_remote(&a, pa.local_addr().unwrap()).unwrap();
                engine.set_remote(&b, pb.local_addr().unwrap()).unwrap();
                engine.bridge(&a, &b).unwrap();
                let deadline = tokio::time::Instant::now() + common::PATIENCE;
                while !(a.stats().is_relaying() && b.stats().is_relaying()) {
                    assert!(tokio::time::Instant::now() < deadline);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let mut buf = [0u8; 256];
                for seq in 0..20u16 {
                    let p = rtp(call, seq, 100);
                    pa.send_to(&p, a.rtp_addr()).await.unwrap();
                    let (n, _) = tokio::time::timeout(common::PATIENCE, pb.recv_from(&mut buf))
                        .await
                        .expect("relayed in time")
                        .unwrap();
                    assert_eq!(&buf[..n], &p[..]);
                }
                engine.release(a);
                drop(b);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    wait_ports_free(&engine);
    assert_eq!(engine.legs(), 0);
}

#[test]
fn churn_while_legs_move_between_workers() {
    // Bridge, re-bridge and release legs while they are still on their way
    // between workers; everything must end closed and accounted for, and a
    // pair set up afterwards must still relay.
    let engine = engine(23400, 23799, 3);
    let sink = Phone::new(LO);
    for round in 0..150usize {
        let a = engine.allocate().unwrap();
        let b = engine.allocate().unwrap();
        let c = engine.allocate().unwrap();
        engine.set_remote(&a, sink.addr()).unwrap();
        engine.bridge(&a, &b).unwrap();
        match round % 5 {
            0 => drop(b),
            1 => {
                engine.bridge(&a, &c).unwrap();
                engine.set_remote(&b, sink.addr()).unwrap();
            }
            2 => {
                engine.unbridge(&a).unwrap();
                engine.bridge(&b, &c).unwrap();
                drop(a);
                continue;
            }
            3 => {
                engine.bridge(&c, &b).unwrap();
                engine.bridge(&a, &b).unwrap();
            }
            _ => {
                drop(c);
                continue;
            }
        }
    }
    wait_ports_free(&engine);
    assert_eq!(engine.legs(), 0);
    assert_eq!(engine.worker_loads(), vec![0, 0, 0]);

    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.bridge(&a, &b).unwrap();
    wait_bridged(&a, &b);
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 50, 100);
}

/// CPU time (user + system) of thread `tid` of this process, in clock
/// ticks.
fn thread_cpu_ticks(tid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A released pair stays in its worker's epoll set: reused there it is
/// not registered again and relays at once, and while it is parked the
/// worker reads and discards what still arrives for it (no busy loop on
/// a socket no leg holds).
#[test]
fn a_parked_pair_comes_back_to_its_worker_without_registering_again() {
    // The worker's thread id, to read its CPU time.
    let tid = Arc::new(std::sync::Mutex::new(String::new()));
    let t = Arc::clone(&tid);
    let engine = MediaEngine::start(
        MediaConfig::new(LO, 21900, 21999)
            .workers(1)
            .on_worker_start(move |_| {
                let me = std::fs::read_link("/proc/thread-self").unwrap();
                *t.lock().unwrap() = me.file_name().unwrap().to_string_lossy().into_owned();
            }),
    )
    .unwrap();
    let (a, b, pa, pb) = bridged_pair(&engine);
    exchange(&pa, a.rtp_addr(), &pb, b.rtp_addr(), 20, 172);
    let ports = [a.rtp_addr(), b.rtp_addr()];
    assert_eq!(engine.socket_registrations(), 2);
    drop((a, b));
    wait_ports_free(&engine);
    wait_until("both pairs parked", || engine.ports_parked() == 2);

    // Late packets of the finished call, to both parked pairs: the worker
    // drains them instead of spinning on their readiness.
    let late = Phone::new(LO);
    let tid = tid.lock().unwrap().clone();
    let before = thread_cpu_ticks(&tid);
    for seq in 0..50 {
        for p in ports {
            late.send(p, &rtp(9, seq, 172));
        }
    }
    std::thread::sleep(Duration::from_millis(400));
    let spent = thread_cpu_ticks(&tid) - before;
    assert!(
        spent < 20,
        "the media worker spent {spent} ticks on parked sockets in 400 ms"
    );

    // Rested, the pairs come back to the same worker without an epoll
    // change, and relay at once.
    std::thread::sleep(dialtone_media::ports::PARK_QUARANTINE);
    let (c, d, pc, pd) = bridged_pair(&engine);
    let mut reused = [c.rtp_addr(), d.rtp_addr()];
    reused.sort();
    let mut old = ports;
    old.sort();
    assert_eq!(reused, old, "the parked pairs are reused");
    exchange(&pc, c.rtp_addr(), &pd, d.rtp_addr(), 20, 172);
    assert_eq!(engine.socket_registrations(), 2, "no new registration");
    // Nothing of the late packets reached the new call.
    for leg in [&c, &d] {
        assert_eq!(leg.stats().snapshot().rtp.packets_received, 20);
    }
    drop((c, d));
    wait_ports_free(&engine);
}

/// A pair parked by one worker and handed to a leg on another leaves the
/// first worker's set and relays on the second.
#[test]
fn a_parked_pair_moves_to_another_worker_when_its_own_has_none() {
    let engine = engine(21800, 21899, 2);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (wa, wb) = (engine.worker_of(&a).unwrap(), engine.worker_of(&b).unwrap());
    assert_ne!(wa, wb, "two legs spread over two workers");
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    // Let each worker take its leg in.
    wait_until("both registered", || engine.socket_registrations() == 2);
    let a_port = a.rtp_addr();
    drop(a);
    wait_until("a's pair parked", || engine.ports_parked() == 1);
    std::thread::sleep(dialtone_media::ports::PARK_QUARANTINE);

    // Beside b: on b's worker, which parked nothing, so it takes a's pair.
    let c = engine.allocate_beside(&b).unwrap();
    assert_eq!(c.rtp_addr(), a_port);
    assert_eq!(engine.worker_of(&c), Some(wb));
    let pc = Phone::new(LO);
    engine.set_remote(&c, pc.addr()).unwrap();
    engine.bridge(&b, &c).unwrap();
    wait_bridged(&b, &c);
    exchange(&pb, b.rtp_addr(), &pc, c.rtp_addr(), 50, 172);
    assert_eq!(engine.socket_registrations(), 3);
    // Its old worker no longer sees it: everything reached the new call.
    // (A send counter moves just after the send, so the phone may have
    // the last packet a moment before `b` counts it.)
    assert_eq!(c.stats().snapshot().rtp.packets_received, 50);
    wait_counters(&b, "b counted its 50 sends", |s| s.rtp.packets_sent == 50);
    assert_eq!(b.stats().snapshot().rtp.packets_sent, 50);
    drop((b, c));
    wait_ports_free(&engine);
}

#[test]
fn legs_released_before_a_worker_takes_them_park_their_pairs() {
    // Short calls under load end before a worker has taken their legs:
    // their pairs park for the next calls like any other.
    let engine = engine(23800, 23999, 1);
    for _ in 0..40 {
        let leg = engine.allocate().unwrap();
        engine.release(leg);
    }
    wait_ports_free(&engine);
    assert_eq!(engine.ports_parked(), 40);
    assert_eq!(engine.legs(), 0);
    // At shutdown what is on its way to a worker is closed, not parked.
    let leg = engine.allocate().unwrap();
    let addr = leg.rtp_addr();
    engine.shutdown();
    drop(leg);
    assert!(UdpSocket::bind(addr).is_ok(), "closed at shutdown");
}
