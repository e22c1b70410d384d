//! The port allocator against the real kernel, on loopback.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use common::LO;
use dialtone_media::{MediaError, PortAllocator};

#[test]
fn even_ports_inside_the_range_without_duplicates() {
    let alloc = PortAllocator::new(LO, 20001, 20200).unwrap();
    assert_eq!(alloc.capacity(), 99); // 20002 ..= 20198
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..60 {
        let p = alloc.allocate().unwrap();
        let port = p.port();
        assert_eq!(port % 2, 0, "RTP port {port} is even");
        assert!((20002..=20198).contains(&port), "{port} inside 20001-20200");
        assert_eq!(p.rtp().local_addr().unwrap(), SocketAddr::new(LO, port));
        assert_eq!(
            p.rtcp().local_addr().unwrap(),
            SocketAddr::new(LO, port + 1)
        );
        assert!(seen.insert(port), "port {port} handed out twice");
        held.push(p);
    }
    assert_eq!(alloc.in_use(), 60);
    held.truncate(10);
    assert_eq!(alloc.in_use(), 10);
    drop(held);
    assert_eq!(alloc.in_use(), 0);
}

#[test]
fn exhaustion_is_an_error_and_release_makes_room() {
    let alloc = PortAllocator::new(LO, 20210, 20219).unwrap();
    assert_eq!(alloc.capacity(), 5);
    let mut held = Vec::new();
    let err = loop {
        match alloc.allocate() {
            Ok(p) => held.push(p),
            Err(e) => break e,
        }
        assert!(held.len() <= 5, "more pairs than the range holds");
    };
    // Normally all five; fewer only if another process holds some.
    assert!(!held.is_empty());
    match &err {
        MediaError::Exhausted {
            in_use,
            busy,
            min,
            max,
            ..
        } => {
            assert_eq!(*in_use, held.len());
            assert_eq!(*in_use + *busy, 5);
            assert_eq!((*min, *max), (20210, 20219));
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    assert!(
        err.to_string().contains("no free RTP/RTCP port pair"),
        "{err}"
    );
    assert_eq!(alloc.in_use(), held.len());

    // Still exhausted on a second try, nothing leaked by the failed search.
    assert!(matches!(
        alloc.allocate(),
        Err(MediaError::Exhausted { .. })
    ));
    assert_eq!(alloc.in_use(), held.len());

    let freed = held.pop().unwrap().port();
    let again = alloc.allocate().unwrap();
    assert_eq!(again.port(), freed, "the only free pair comes back");
    drop(again);
    drop(held);
    assert_eq!(alloc.in_use(), 0);
}

#[test]
fn ports_bound_by_someone_else_are_skipped() {
    let alloc = PortAllocator::new(LO, 20220, 20229).unwrap();
    // Someone else holds 20220 (an RTP port) and 20223 (the RTCP port of
    // 20222). If the bind fails, another process holds it: still taken.
    let _squat_rtp = UdpSocket::bind((LO, 20220));
    let _squat_rtcp = UdpSocket::bind((LO, 20223));
    let mut held = Vec::new();
    let err = loop {
        match alloc.allocate() {
            Ok(p) => {
                assert_ne!(p.port(), 20220, "RTP port held elsewhere");
                assert_ne!(p.port(), 20222, "RTCP port held elsewhere");
                held.push(p)
            }
            Err(e) => break e,
        }
        assert!(held.len() <= 3);
    };
    match err {
        MediaError::Exhausted { in_use, busy, .. } => {
            assert_eq!(in_use, held.len());
            assert!(busy >= 2, "the two squatted pairs were skipped");
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    drop(held);
    assert_eq!(alloc.in_use(), 0);
}

#[test]
fn a_released_port_is_reused_last() {
    let alloc = PortAllocator::new(LO, 20230, 20249).unwrap();
    let first = alloc.allocate().unwrap();
    let p1 = first.port();
    drop(first);
    let second = alloc.allocate().unwrap();
    assert_ne!(second.port(), p1, "the search moves on round the range");
    assert_eq!(alloc.in_use(), 1);
}

#[test]
fn an_address_not_on_this_host_is_a_bind_error() {
    // TEST-NET-1: never configured locally. Binding sends nothing.
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let alloc = PortAllocator::new(ip, 20250, 20259).unwrap();
    match alloc.allocate() {
        Err(MediaError::Bind { addr, .. }) => assert_eq!(addr.ip(), ip),
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert_eq!(alloc.in_use(), 0);
}

#[test]
fn concurrent_allocations_never_share_a_port() {
    let alloc = Arc::new(PortAllocator::new(LO, 20300, 20599).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let alloc = Arc::clone(&alloc);
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| alloc.allocate().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let ports: HashSet<u16> = all.iter().map(|p| p.port()).collect();
    assert_eq!(ports.len(), 100);
    assert_eq!(alloc.in_use(), 100);
    drop(all);
    assert_eq!(alloc.in_use(), 0);
}
