//! The transaction layer on a virtual clock: every timer of every state
//! machine over UDP and TCP, ACK construction, absorption of
//! retransmissions, matching rules and cleanup.

use std::time::{Duration, Instant};

use dialtone_sip::message::{parse_datagram, Frame, Message, Method};
use dialtone_sip::transaction::{
    ack_for, Config, Event, Kind, State, Timer, TransactionLayer, TxError, TxId, MAGIC_COOKIE,
};

type Peer = &'static str;
type Layer = TransactionLayer<Peer>;

const UDP: bool = false;
const TCP: bool = true;

fn msg(s: &str) -> Message {
    match parse_datagram(s.replace('\n', "\r\n").as_bytes()).expect("parses") {
        Frame::Message(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

fn invite_with(branch: &str, transport: &str) -> Message {
    msg(&format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/{transport} pc33.atlanta.example.com:5060;branch={branch}
Route: <sip:p1.example.com;lr>
Route: <sip:p2.example.com;lr>
Max-Forwards: 69
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Type: application/sdp
Content-Length: 4

v=0
"
    ))
}

fn invite(branch: &str) -> Message {
    invite_with(branch, "UDP")
}

fn request(method: &str, branch: &str) -> Message {
    msg(&format!(
        "{method} sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch={branch}
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 2 {method}
Content-Length: 0

"
    ))
}

fn ack(branch: &str, to_tag: &str) -> Message {
    msg(&format!(
        "ACK sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch={branch}
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 ACK
Content-Length: 0

"
    ))
}

fn resp(req: &Message, code: u16) -> Message {
    Message::response_to(req, code, None, Some("8321234356"))
}

fn no_trying() -> Config {
    Config {
        auto_trying: None,
        ..Config::default()
    }
}

fn ms(base: Instant, t: Instant) -> u64 {
    (t - base).as_millis() as u64
}

fn at(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

/// Fires timers, one deadline at a time, up to and including `end`; every
/// event comes back with the deadline (ms from `base`) it fired at.
fn run_until(l: &mut Layer, base: Instant, end: Instant) -> Vec<(u64, Event<Peer>)> {
    let mut log = Vec::new();
    while let Some(d) = l.next_deadline() {
        if d > end {
            break;
        }
        for e in l.on_timer(d) {
            log.push((ms(base, d), e));
        }
    }
    log
}

fn transmit_times(log: &[(u64, Event<Peer>)]) -> Vec<u64> {
    log.iter()
        .filter(|(_, e)| matches!(e, Event::Transmit { .. }))
        .map(|(t, _)| *t)
        .collect()
}

fn transmitted(ev: &[Event<Peer>]) -> Vec<&Message> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Transmit { msg, .. } => Some(&**msg),
            _ => None,
        })
        .collect()
}

fn without_transmits(log: &[(u64, Event<Peer>)]) -> Vec<(u64, Event<Peer>)> {
    log.iter()
        .filter(|(_, e)| !matches!(e, Event::Transmit { .. }))
        .cloned()
        .collect()
}

fn secs(v: &[f64]) -> Vec<u64> {
    v.iter().map(|s| (s * 1000.0).round() as u64).collect()
}

fn start_client(l: &mut Layer, m: Message, reliable: bool, now: Instant) -> TxId {
    let (tx, ev) = l.send_request(m, "uas", reliable, now).unwrap();
    assert_eq!(transmitted(&ev).len(), 1);
    tx
}

fn start_server(l: &mut Layer, m: Message, reliable: bool, now: Instant) -> TxId {
    let ev = l.on_message(m, "uac", reliable, now);
    match ev.first() {
        Some(Event::Request { tx, .. }) => *tx,
        other => panic!("no new server transaction: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

#[test]
fn default_timer_values() {
    let c = Config::default();
    assert_eq!(c.t1, Duration::from_millis(500));
    assert_eq!(c.t2, Duration::from_secs(4));
    assert_eq!(c.t4, Duration::from_secs(5));
    for d in [
        c.timer_b(),
        c.timer_f(),
        c.timer_h(),
        c.timer_l(),
        c.timer_m(),
    ] {
        assert_eq!(d, Duration::from_secs(32));
    }
    assert_eq!(c.timer_j(UDP), Duration::from_secs(32));
    assert_eq!(c.timer_j(TCP), Duration::ZERO);
    assert_eq!(c.timer_d(UDP), Duration::from_secs(32));
    assert_eq!(c.timer_d(TCP), Duration::ZERO);
    assert_eq!(c.timer_i(UDP), Duration::from_secs(5));
    assert_eq!(c.timer_k(UDP), Duration::from_secs(5));
    assert_eq!(c.timer_i(TCP), Duration::ZERO);
    assert_eq!(c.timer_k(TCP), Duration::ZERO);
    assert_eq!(c.timer_a(), c.t1);
    assert_eq!(c.timer_e(), c.t1);
    assert_eq!(c.timer_g(), c.t1);
    assert_eq!(c.timer_c, None);
    assert_eq!(Config::TIMER_C_DEFAULT, Duration::from_secs(180));
    assert_eq!(c.auto_trying, Some(Duration::from_millis(200)));
}

// ---------------------------------------------------------------------------
// INVITE client
// ---------------------------------------------------------------------------

#[test]
fn invite_client_udp_timer_a_doubles_and_timer_b_times_out() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let tx = start_client(&mut l, invite("z9hG4bKa1"), UDP, base);
    assert_eq!(l.state(tx), Some(State::Calling));
    assert_eq!(l.kind(tx), Some(Kind::InviteClient));
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(
        transmit_times(&log),
        secs(&[0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    );
    for (_, e) in &log {
        if let Event::Transmit {
            msg, to, reliable, ..
        } = e
        {
            assert_eq!(**msg, invite("z9hG4bKa1"));
            assert_eq!(*to, "uas");
            assert!(!reliable);
        }
    }
    assert_eq!(
        without_transmits(&log),
        vec![
            (
                32_000,
                Event::Timeout {
                    tx,
                    timer: Timer::B
                }
            ),
            (32_000, Event::Terminated { tx }),
        ]
    );
    assert!(l.is_empty());
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn invite_client_tcp_no_retransmissions_timer_b_at_32s() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let tx = start_client(&mut l, invite_with("z9hG4bKa2", "TCP"), TCP, base);
    assert_eq!(l.next_deadline(), Some(at(base, 32_000)));
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(
        log,
        vec![
            (
                32_000,
                Event::Timeout {
                    tx,
                    timer: Timer::B
                }
            ),
            (32_000, Event::Terminated { tx }),
        ]
    );
    assert_eq!(l.len(), 0);
}

#[test]
fn invite_client_provisional_stops_a_and_b() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKa3");
    let tx = start_client(&mut l, inv.clone(), UDP, base);
    let log = run_until(&mut l, base, at(base, 2_000));
    assert_eq!(transmit_times(&log), secs(&[0.5, 1.5]));
    let ringing = resp(&inv, 180);
    let ev = l.on_message(ringing.clone(), "uas", UDP, at(base, 2_000));
    assert_eq!(ev, vec![Event::Response { tx, msg: ringing }]);
    assert_eq!(l.state(tx), Some(State::Proceeding));
    // Nothing more: no retransmission, no Timer B, no Timer C.
    assert_eq!(l.next_deadline(), None);
    // A provisional again goes up too.
    let ev = l.on_message(resp(&inv, 183), "uas", UDP, at(base, 3_000));
    assert!(matches!(&ev[..], [Event::Response { .. }]));
}

#[test]
fn invite_client_non_2xx_ack_content() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKack");
    let tx = start_client(&mut l, inv.clone(), UDP, base);
    let busy = resp(&inv, 486);
    let ev = l.on_message(busy.clone(), "uas", UDP, at(base, 100));
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        ev[0],
        Event::Response {
            tx,
            msg: busy.clone()
        }
    );
    let Event::Transmit {
        tx: t,
        to,
        msg: a,
        reliable,
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((*t, *to, *reliable), (tx, "uas", UDP));
    assert_eq!(a.method(), Some(&Method::Ack));
    assert_eq!(a.uri(), inv.uri());
    let names: Vec<&str> = a.headers.iter().map(|h| &*h.name).collect();
    assert_eq!(
        names,
        [
            "Via",
            "Route",
            "Route",
            "Max-Forwards",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Content-Length"
        ]
    );
    assert_eq!(
        a.headers.get_all("Via"),
        ["SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKack"]
    );
    assert_eq!(
        a.headers.get_all("Route"),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(a.headers.get("Max-Forwards"), Some("70"));
    assert_eq!(a.headers.get("From"), inv.headers.get("From"));
    assert_eq!(
        a.headers.get("To"),
        Some("\"Bob\" <sip:bob@biloxi.example.com>;tag=8321234356")
    );
    assert_eq!(a.to().unwrap().tag(), Some("8321234356"));
    assert_eq!(a.headers.get("Call-ID"), Some("a84b4c76e66710"));
    assert_eq!(a.headers.get("CSeq"), Some("314159 ACK"));
    assert_eq!(a.headers.get("Content-Length"), Some("0"));
    assert!(a.body.is_empty());
    assert!(!a.headers.has("Contact"));
    assert!(!a.headers.has("Content-Type"));
    a.validate_request().unwrap();
    // On the wire it reads back the same.
    let wire = String::from_utf8(a.to_bytes()).unwrap();
    assert!(wire.starts_with("ACK sip:bob@biloxi.example.com SIP/2.0\r\n"));
    assert!(wire.ends_with("Content-Length: 0\r\n\r\n"));
    assert_eq!(&msg(&wire.replace("\r\n", "\n")), &**a);
    // The free function builds the same ACK.
    assert_eq!(&ack_for(&inv, &busy), &**a);
    // A response with a multi-Via request: only the top Via.
    let mut two = inv.clone();
    two.headers
        .push("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKother");
    assert_eq!(ack_for(&two, &busy).headers.get_all("Via").len(), 1);
}

#[test]
fn invite_client_non_2xx_udp_reacks_retransmissions_until_timer_d() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKa4");
    let tx = start_client(&mut l, inv.clone(), UDP, base);
    let log = run_until(&mut l, base, at(base, 1_000));
    assert_eq!(transmit_times(&log), secs(&[0.5]));
    l.on_message(resp(&inv, 180), "uas", UDP, at(base, 1_000));
    let ev = l.on_message(resp(&inv, 603), "uas", UDP, at(base, 2_000));
    let first_ack = transmitted(&ev)[0].clone();
    assert_eq!(l.state(tx), Some(State::Completed));
    // Each retransmitted final is absorbed and re-ACKed.
    for t in [2_500, 4_000, 9_000] {
        let ev = l.on_message(resp(&inv, 603), "uas", UDP, at(base, t));
        assert_eq!(
            ev,
            vec![Event::Transmit {
                tx,
                to: "uas",
                msg: first_ack.clone().into(),
                reliable: UDP
            }]
        );
    }
    // Provisionals and 2xx are ignored now.
    assert!(l
        .on_message(resp(&inv, 180), "uas", UDP, at(base, 9_500))
        .is_empty());
    // Timer D: 32 s after the final response.
    assert_eq!(l.next_deadline(), Some(at(base, 34_000)));
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(log, vec![(34_000, Event::Terminated { tx })]);
    assert!(l.is_empty());
    // Later retransmissions match nothing.
    assert!(matches!(
        &l.on_message(resp(&inv, 603), "uas", UDP, at(base, 35_000))[..],
        [Event::StrayResponse { .. }]
    ));
}

#[test]
fn invite_client_non_2xx_tcp_timer_d_is_zero() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite_with("z9hG4bKa5", "TCP");
    let tx = start_client(&mut l, inv.clone(), TCP, base);
    let ev = l.on_message(resp(&inv, 404), "uas", TCP, at(base, 300));
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert!(matches!(ev[0], Event::Response { .. }));
    assert!(
        matches!(&ev[1], Event::Transmit { msg, reliable: true, .. } if msg.method() == Some(&Method::Ack))
    );
    assert_eq!(ev[2], Event::Terminated { tx });
    assert!(l.is_empty());
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn invite_client_2xx_accepted_passes_every_2xx_until_timer_m() {
    for reliable in [UDP, TCP] {
        let base = Instant::now();
        let mut l = Layer::new(no_trying());
        let inv = invite("z9hG4bKa6");
        let tx = start_client(&mut l, inv.clone(), reliable, base);
        l.on_message(resp(&inv, 180), "uas", reliable, at(base, 1_000));
        let ok = resp(&inv, 200);
        let ev = l.on_message(ok.clone(), "uas", reliable, at(base, 2_000));
        assert_eq!(
            ev,
            vec![Event::Response {
                tx,
                msg: ok.clone()
            }]
        );
        assert_eq!(l.state(tx), Some(State::Accepted));
        // Retransmissions and a second fork's 2xx all go up; no ACK here.
        let ev = l.on_message(ok.clone(), "uas", reliable, at(base, 2_500));
        assert_eq!(
            ev,
            vec![Event::Response {
                tx,
                msg: ok.clone()
            }]
        );
        let fork = Message::response_to(&inv, 200, None, Some("fork2"));
        let ev = l.on_message(fork.clone(), "uas", reliable, at(base, 3_000));
        assert_eq!(ev, vec![Event::Response { tx, msg: fork }]);
        // Non-2xx and provisionals after a 2xx are dropped.
        assert!(l
            .on_message(resp(&inv, 486), "uas", reliable, at(base, 3_100))
            .is_empty());
        // Timer M: 64*T1 after the first 2xx, on both transports.
        let log = run_until(&mut l, base, at(base, 100_000));
        assert_eq!(log, vec![(34_000, Event::Terminated { tx })]);
        assert!(l.is_empty());
        // A 2xx after Accepted ended: for the TU to re-ACK.
        let ev = l.on_message(ok.clone(), "uas", reliable, at(base, 40_000));
        assert_eq!(
            ev,
            vec![Event::StrayResponse {
                msg: ok,
                from: "uas"
            }]
        );
    }
}

#[test]
fn invite_client_timer_c_fires_after_last_provisional_then_cancel_wait() {
    let base = Instant::now();
    let mut l = Layer::new(Config {
        timer_c: Some(Config::TIMER_C_DEFAULT),
        ..no_trying()
    });
    let inv = invite_with("z9hG4bKc1", "TCP");
    let tx = start_client(&mut l, inv.clone(), TCP, base);
    assert!(
        l.cancel_request(tx).is_none(),
        "no CANCEL before a provisional"
    );
    // 100 does not restart Timer C; 180 and 183 do.
    l.on_message(resp(&inv, 100), "uas", TCP, at(base, 100));
    l.on_message(resp(&inv, 180), "uas", TCP, at(base, 1_000));
    l.on_message(resp(&inv, 183), "uas", TCP, at(base, 60_000));
    l.on_message(resp(&inv, 100), "uas", TCP, at(base, 70_000));
    let log = run_until(&mut l, base, at(base, 239_999));
    assert!(log.is_empty(), "{log:?}");
    let log = run_until(&mut l, base, at(base, 240_000));
    assert_eq!(log, vec![(240_000, Event::ProvisionalTimeout { tx })]);
    assert_eq!(l.state(tx), Some(State::Proceeding));
    // The TU CANCELs.
    let cancel = l.cancel_request(tx).expect("CANCEL in Proceeding");
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(cancel.headers.get("CSeq"), Some("314159 CANCEL"));
    assert_eq!(cancel.headers.get("To"), inv.headers.get("To"));
    assert_eq!(cancel.top_via().unwrap().branch(), Some("z9hG4bKc1"));
    assert_eq!(cancel.headers.get_all("Route").len(), 2);
    let (ctx, _) = l
        .send_request(cancel.clone(), "uas", TCP, at(base, 240_000))
        .unwrap();
    assert_eq!(l.kind(ctx), Some(Kind::NonInviteClient));
    let ok = resp(&cancel, 200);
    let ev = l.on_message(ok.clone(), "uas", TCP, at(base, 240_100));
    assert_eq!(
        ev,
        vec![
            Event::Response { tx: ctx, msg: ok },
            Event::Terminated { tx: ctx }
        ]
    );
    // The 487 never comes: the INVITE transaction gives up 64*T1 later.
    let log = run_until(&mut l, base, at(base, 400_000));
    assert_eq!(
        log,
        vec![
            (
                272_000,
                Event::Timeout {
                    tx,
                    timer: Timer::CancelWait
                }
            ),
            (272_000, Event::Terminated { tx }),
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn invite_client_timer_c_udp_with_487_after_cancel() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKc2");
    let tx = start_client(&mut l, inv.clone(), UDP, base);
    // Per-transaction Timer C.
    l.set_timer_c(tx, Some(Duration::from_secs(181)), base);
    // Only the 0.5 s retransmission before the 180, then Timer C.
    let log = run_until(&mut l, base, at(base, 1_000));
    assert_eq!(transmit_times(&log), secs(&[0.5]));
    l.on_message(resp(&inv, 180), "uas", UDP, at(base, 1_000));
    let log = run_until(&mut l, base, at(base, 500_000));
    assert_eq!(transmit_times(&log), Vec::<u64>::new());
    assert_eq!(
        without_transmits(&log)[0],
        (182_000, Event::ProvisionalTimeout { tx })
    );
    // Without a CANCEL answer the CancelWait guard ends it.
    assert_eq!(
        without_transmits(&log)[1],
        (
            214_000,
            Event::Timeout {
                tx,
                timer: Timer::CancelWait
            }
        )
    );
    assert!(l.is_empty());

    // Again, but the 487 arrives: ACKed, Completed, Timer D.
    let mut l = Layer::new(no_trying());
    let tx = start_client(&mut l, inv.clone(), UDP, base);
    l.set_timer_c(tx, Some(Duration::from_secs(181)), base);
    l.on_message(resp(&inv, 180), "uas", UDP, at(base, 1_000));
    run_until(&mut l, base, at(base, 182_000));
    let cancel = l.cancel_request(tx).unwrap();
    let (ctx, _) = l
        .send_request(cancel.clone(), "uas", UDP, at(base, 182_000))
        .unwrap();
    l.on_message(resp(&cancel, 200), "uas", UDP, at(base, 182_050));
    let ev = l.on_message(resp(&inv, 487), "uas", UDP, at(base, 182_100));
    assert!(transmitted(&ev)[0].method() == Some(&Method::Ack));
    let log = run_until(&mut l, base, at(base, 500_000));
    assert_eq!(
        without_transmits(&log),
        vec![
            (187_050, Event::Terminated { tx: ctx }),
            (214_100, Event::Terminated { tx }),
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn cancel_sent_by_tu_bounds_the_invite_wait() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite_with("z9hG4bKc3", "TCP");
    let tx = start_client(&mut l, inv.clone(), TCP, base);
    l.on_message(resp(&inv, 180), "uas", TCP, at(base, 1_000));
    assert_eq!(l.next_deadline(), None);
    let cancel = l.cancel_request(tx).unwrap();
    let (ctx, _) = l
        .send_request(cancel.clone(), "uas", TCP, at(base, 5_000))
        .unwrap();
    l.on_message(resp(&cancel, 200), "uas", TCP, at(base, 5_100));
    // A CANCEL with the same branch and method as a live one is refused.
    let (ctx2, _) = l
        .send_request(cancel.clone(), "uas", TCP, at(base, 5_200))
        .unwrap();
    assert_ne!(ctx, ctx2);
    assert_eq!(
        l.send_request(cancel, "uas", TCP, at(base, 5_300))
            .unwrap_err(),
        TxError::DuplicateBranch
    );
    let log = run_until(&mut l, base, at(base, 100_000));
    assert!(log.contains(&(
        37_000,
        Event::Timeout {
            tx,
            timer: Timer::CancelWait
        }
    )));
}

// ---------------------------------------------------------------------------
// Non-INVITE client
// ---------------------------------------------------------------------------

#[test]
fn non_invite_client_udp_timer_e_caps_at_t2_and_timer_f() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let tx = start_client(&mut l, request("OPTIONS", "z9hG4bKe1"), UDP, base);
    assert_eq!(l.state(tx), Some(State::Trying));
    assert_eq!(l.kind(tx), Some(Kind::NonInviteClient));
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(
        transmit_times(&log),
        secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    assert_eq!(
        without_transmits(&log),
        vec![
            (
                32_000,
                Event::Timeout {
                    tx,
                    timer: Timer::F
                }
            ),
            (32_000, Event::Terminated { tx }),
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn non_invite_client_udp_timer_e_at_t2_in_proceeding() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let req = request("REGISTER", "z9hG4bKe2");
    let tx = start_client(&mut l, req.clone(), UDP, base);
    let log = run_until(&mut l, base, at(base, 1_000));
    assert_eq!(transmit_times(&log), secs(&[0.5]));
    let trying = resp(&req, 100);
    let ev = l.on_message(trying.clone(), "uas", UDP, at(base, 1_000));
    assert_eq!(ev, vec![Event::Response { tx, msg: trying }]);
    assert_eq!(l.state(tx), Some(State::Proceeding));
    let log = run_until(&mut l, base, at(base, 60_000));
    // The pending E (1.5 s) fires, then every T2.
    assert_eq!(
        transmit_times(&log),
        secs(&[1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5])
    );
    assert_eq!(
        without_transmits(&log),
        vec![
            (
                32_000,
                Event::Timeout {
                    tx,
                    timer: Timer::F
                }
            ),
            (32_000, Event::Terminated { tx }),
        ]
    );
}

#[test]
fn non_invite_client_tcp_no_retransmissions_timer_f() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let tx = start_client(&mut l, request("OPTIONS", "z9hG4bKe3"), TCP, base);
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(
        log,
        vec![
            (
                32_000,
                Event::Timeout {
                    tx,
                    timer: Timer::F
                }
            ),
            (32_000, Event::Terminated { tx }),
        ]
    );
}

#[test]
fn non_invite_client_timer_k() {
    // UDP: K = T4, retransmitted finals absorbed meanwhile.
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let req = request("BYE", "z9hG4bKk1");
    let tx = start_client(&mut l, req.clone(), UDP, base);
    let ok = resp(&req, 200);
    let ev = l.on_message(ok.clone(), "uas", UDP, at(base, 1_000));
    assert_eq!(
        ev,
        vec![Event::Response {
            tx,
            msg: ok.clone()
        }]
    );
    assert_eq!(l.state(tx), Some(State::Completed));
    assert!(l
        .on_message(ok.clone(), "uas", UDP, at(base, 3_000))
        .is_empty());
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(log, vec![(6_000, Event::Terminated { tx })]);
    assert!(l.is_empty());
    // TCP: K = 0.
    let mut l = Layer::new(no_trying());
    let tx = start_client(&mut l, req.clone(), TCP, base);
    let ev = l.on_message(ok.clone(), "uas", TCP, at(base, 1_000));
    assert_eq!(
        ev,
        vec![Event::Response { tx, msg: ok }, Event::Terminated { tx }]
    );
    assert!(l.is_empty());
    assert_eq!(l.next_deadline(), None);
}

// ---------------------------------------------------------------------------
// INVITE server
// ---------------------------------------------------------------------------

#[test]
fn invite_server_udp_timer_g_until_timer_h() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKg1");
    let tx = start_server(&mut l, inv.clone(), UDP, base);
    assert_eq!(l.kind(tx), Some(Kind::InviteServer));
    assert_eq!(l.state(tx), Some(State::Proceeding));
    let moved = resp(&inv, 302);
    let ev = l.send_response(tx, moved.clone(), base).unwrap();
    assert_eq!(
        ev,
        vec![Event::Transmit {
            tx,
            to: "uac",
            msg: moved.clone().into(),
            reliable: UDP
        }]
    );
    assert_eq!(l.state(tx), Some(State::Completed));
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(
        transmit_times(&log),
        secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    assert!(
        transmitted(&log.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>())
            .iter()
            .all(|m| **m == moved)
    );
    assert_eq!(
        without_transmits(&log),
        vec![
            (
                32_000,
                Event::Timeout {
                    tx,
                    timer: Timer::H
                }
            ),
            (32_000, Event::Terminated { tx }),
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn invite_server_tcp_no_timer_g_timer_h() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite_with("z9hG4bKg2", "TCP");
    let tx = start_server(&mut l, inv.clone(), TCP, base);
    l.send_response(tx, resp(&inv, 500), at(base, 1_000))
        .unwrap();
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(
        log,
        vec![
            (
                33_000,
                Event::Timeout {
                    tx,
                    timer: Timer::H
                }
            ),
            (33_000, Event::Terminated { tx }),
        ]
    );
}

#[test]
fn invite_server_ack_confirms_timer_i() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKi1");
    let tx = start_server(&mut l, inv.clone(), UDP, base);
    let busy = resp(&inv, 486);
    l.send_response(tx, busy.clone(), base).unwrap();
    let log = run_until(&mut l, base, at(base, 2_000));
    assert_eq!(transmit_times(&log), secs(&[0.5, 1.5]));
    // An INVITE retransmission gets the final response again.
    let ev = l.on_message(inv.clone(), "uac", UDP, at(base, 2_100));
    assert_eq!(transmitted(&ev), vec![&busy]);
    // The ACK (same branch, To tag of the response).
    let ev = l.on_message(ack("z9hG4bKi1", "8321234356"), "uac", UDP, at(base, 2_200));
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(l.state(tx), Some(State::Confirmed));
    // ACK and INVITE retransmissions are absorbed now.
    assert!(l
        .on_message(ack("z9hG4bKi1", "8321234356"), "uac", UDP, at(base, 3_000))
        .is_empty());
    assert!(l
        .on_message(inv.clone(), "uac", UDP, at(base, 3_500))
        .is_empty());
    // No more G; Timer I = T4.
    let log = run_until(&mut l, base, at(base, 60_000));
    assert_eq!(log, vec![(7_200, Event::Terminated { tx })]);
    assert!(l.is_empty());
    // Over TCP, Timer I is zero.
    let mut l = Layer::new(no_trying());
    let tx = start_server(&mut l, inv.clone(), TCP, base);
    l.send_response(tx, busy, base).unwrap();
    assert_eq!(l.next_deadline(), Some(at(base, 32_000)));
    let ev = l.on_message(ack("z9hG4bKi1", "8321234356"), "uac", TCP, at(base, 100));
    assert_eq!(ev, vec![Event::Terminated { tx }]);
    assert!(l.is_empty());
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn invite_server_absorbs_invite_retransmissions_and_resends_last_provisional() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKr1");
    let tx = start_server(&mut l, inv.clone(), UDP, base);
    // No response yet: absorbed silently.
    assert!(l
        .on_message(inv.clone(), "uac", UDP, at(base, 500))
        .is_empty());
    let ringing = resp(&inv, 180);
    l.send_response(tx, ringing.clone(), at(base, 600)).unwrap();
    let ev = l.on_message(inv.clone(), "uac", UDP, at(base, 1_500));
    assert_eq!(
        ev,
        vec![Event::Transmit {
            tx,
            to: "uac",
            msg: ringing.into(),
            reliable: UDP
        }]
    );
    let progress = resp(&inv, 183);
    l.send_response(tx, progress.clone(), at(base, 2_000))
        .unwrap();
    let ev = l.on_message(inv.clone(), "uac", UDP, at(base, 3_500));
    assert_eq!(transmitted(&ev), vec![&progress]);
    assert_eq!(l.len(), 1);
    // Proceeding has no timers without auto 100 / responses.
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn invite_server_accepted_timer_l() {
    for reliable in [UDP, TCP] {
        let base = Instant::now();
        let mut l = Layer::new(no_trying());
        let inv = invite("z9hG4bKl1");
        let tx = start_server(&mut l, inv.clone(), reliable, base);
        let ok = resp(&inv, 200);
        let ev = l.send_response(tx, ok.clone(), at(base, 1_000)).unwrap();
        assert_eq!(transmitted(&ev), vec![&ok]);
        assert_eq!(l.state(tx), Some(State::Accepted));
        // INVITE retransmissions absorbed: not re-answered, not to the TU.
        assert!(l
            .on_message(inv.clone(), "uac", reliable, at(base, 1_500))
            .is_empty());
        // The TU's 2xx retransmissions pass through.
        let ev = l.send_response(tx, ok.clone(), at(base, 1_500)).unwrap();
        assert_eq!(
            ev,
            vec![Event::Transmit {
                tx,
                to: "uac",
                msg: ok.clone().into(),
                reliable
            }]
        );
        // A non-2xx now is refused.
        assert_eq!(
            l.send_response(tx, resp(&inv, 500), at(base, 1_600)),
            Err(TxError::WrongState(State::Accepted))
        );
        // An ACK matching the transaction goes to the TU ...
        let a = ack("z9hG4bKl1", "8321234356");
        let ev = l.on_message(a.clone(), "uac", reliable, at(base, 2_000));
        assert_eq!(
            ev,
            vec![Event::Ack {
                tx,
                msg: a,
                from: "uac"
            }]
        );
        // ... and so does the usual 2xx ACK with its own branch.
        let a2 = ack("z9hG4bKnewbranch", "8321234356");
        let ev = l.on_message(a2.clone(), "uac", reliable, at(base, 2_000));
        assert_eq!(
            ev,
            vec![Event::StrayAck {
                msg: a2,
                from: "uac"
            }]
        );
        // Timer L: 64*T1 after the 2xx.
        let log = run_until(&mut l, base, at(base, 100_000));
        assert_eq!(log, vec![(33_000, Event::Terminated { tx })]);
        assert!(l.is_empty());
        assert_eq!(
            l.send_response(tx, ok, at(base, 40_000)),
            Err(TxError::NoSuchTransaction)
        );
    }
}

#[test]
fn invite_server_auto_100_trying_after_200ms() {
    let base = Instant::now();
    let mut l = Layer::new(Config::default());
    let inv = invite("z9hG4bKt1");
    let ev = l.on_message(inv.clone(), "uac", UDP, base);
    assert_eq!(ev.len(), 1);
    let Event::Request { tx, .. } = ev[0] else {
        panic!()
    };
    let log = run_until(&mut l, base, at(base, 1_000));
    assert_eq!(transmit_times(&log), vec![200]);
    let Event::Transmit {
        msg: trying, tx: t, ..
    } = &log[0].1
    else {
        panic!()
    };
    assert_eq!(*t, tx);
    assert_eq!(l.state(tx), Some(State::Proceeding));
    assert_eq!(trying.code(), Some(100));
    assert_eq!(trying.to().unwrap().tag(), None);
    assert_eq!(trying.headers.get("CSeq"), Some("314159 INVITE"));
    // Retransmitted INVITEs get the 100.
    let ev = l.on_message(inv.clone(), "uac", UDP, at(base, 1_000));
    assert_eq!(transmitted(&ev), vec![&**trying]);

    // A TU answering within 200 ms suppresses it.
    let mut l = Layer::new(Config::default());
    let tx = start_server(&mut l, invite("z9hG4bKt2"), UDP, base);
    l.send_response(tx, resp(&invite("z9hG4bKt2"), 180), at(base, 100))
        .unwrap();
    assert!(run_until(&mut l, base, at(base, 1_000)).is_empty());

    // Zero: sent with the Request event.
    let mut l = Layer::new(Config {
        auto_trying: Some(Duration::ZERO),
        ..Config::default()
    });
    let ev = l.on_message(invite("z9hG4bKt3"), "uac", TCP, base);
    assert!(matches!(ev[0], Event::Request { .. }));
    assert_eq!(transmitted(&ev)[0].code(), Some(100));
    // Never for non-INVITE.
    let ev = l.on_message(request("OPTIONS", "z9hG4bKt4"), "uac", TCP, base);
    assert_eq!(ev.len(), 1);
    assert_eq!(l.next_deadline(), None);
}

// ---------------------------------------------------------------------------
// Non-INVITE server
// ---------------------------------------------------------------------------

#[test]
fn non_invite_server_udp_timer_j() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let req = request("INFO", "z9hG4bKj1");
    let tx = start_server(&mut l, req.clone(), UDP, base);
    assert_eq!(l.kind(tx), Some(Kind::NonInviteServer));
    assert_eq!(l.state(tx), Some(State::Trying));
    // Trying: absorbed.
    assert!(l
        .on_message(req.clone(), "uac", UDP, at(base, 500))
        .is_empty());
    let trying = resp(&req, 100);
    l.send_response(tx, trying.clone(), at(base, 600)).unwrap();
    assert_eq!(l.state(tx), Some(State::Proceeding));
    let ev = l.on_message(req.clone(), "uac", UDP, at(base, 1_500));
    assert_eq!(transmitted(&ev), vec![&trying]);
    let ok = resp(&req, 200);
    let ev = l.send_response(tx, ok.clone(), at(base, 2_000)).unwrap();
    assert_eq!(transmitted(&ev), vec![&ok]);
    assert_eq!(l.state(tx), Some(State::Completed));
    let ev = l.on_message(req.clone(), "uac", UDP, at(base, 3_500));
    assert_eq!(transmitted(&ev), vec![&ok]);
    assert_eq!(
        l.send_response(tx, resp(&req, 500), at(base, 3_600)),
        Err(TxError::WrongState(State::Completed))
    );
    // No retransmissions of its own; Timer J = 64*T1.
    let log = run_until(&mut l, base, at(base, 100_000));
    assert_eq!(log, vec![(34_000, Event::Terminated { tx })]);
    assert!(l.is_empty());
}

#[test]
fn non_invite_server_tcp_timer_j_zero() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let req = request("MESSAGE", "z9hG4bKj2");
    let tx = start_server(&mut l, req.clone(), TCP, base);
    let ok = resp(&req, 202);
    let ev = l.send_response(tx, ok.clone(), at(base, 10)).unwrap();
    assert_eq!(
        ev,
        vec![
            Event::Transmit {
                tx,
                to: "uac",
                msg: ok.into(),
                reliable: TCP
            },
            Event::Terminated { tx }
        ]
    );
    assert!(l.is_empty());
    // A retransmission now would be a new request (RFC 3261 17.2.2: on a
    // reliable transport there are none).
    assert!(matches!(
        l.on_message(req, "uac", TCP, at(base, 20))[0],
        Event::Request { .. }
    ));
}

// ---------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------

#[test]
fn responses_match_on_branch_and_cseq_method() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKm1");
    let tx = start_client(&mut l, inv.clone(), UDP, base);
    // Wrong branch.
    let mut wrong = resp(&inv, 180);
    wrong.headers.set(
        "Via",
        "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKm2",
    );
    assert!(matches!(
        &l.on_message(wrong, "uas", UDP, base)[..],
        [Event::StrayResponse { .. }]
    ));
    // Right branch, wrong CSeq method (a response to a CANCEL not sent).
    let mut wrong = resp(&inv, 200);
    wrong.headers.set("CSeq", "314159 CANCEL");
    assert!(matches!(
        &l.on_message(wrong, "uas", UDP, base)[..],
        [Event::StrayResponse { .. }]
    ));
    // No Via at all.
    let mut wrong = resp(&inv, 200);
    wrong.headers.remove("Via");
    assert!(matches!(
        &l.on_message(wrong, "uas", UDP, base)[..],
        [Event::StrayResponse { .. }]
    ));
    assert_eq!(l.state(tx), Some(State::Calling));
    // The right one.
    assert!(matches!(
        &l.on_message(resp(&inv, 180), "uas", UDP, base)[..],
        [Event::Response { tx: t, .. }] if *t == tx
    ));
}

#[test]
fn requests_match_on_branch_sent_by_and_method_cancel_lookup() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKs1");
    let itx = start_server(&mut l, inv.clone(), UDP, base);
    // Same branch, other sent-by: another transaction.
    let mut other = inv.clone();
    other.headers.set(
        "Via",
        "SIP/2.0/UDP elsewhere.example.com:5060;branch=z9hG4bKs1",
    );
    let otx = start_server(&mut l, other, UDP, base);
    assert_ne!(itx, otx);
    // Sent-by hosts compare case-insensitively.
    let mut upper = inv.clone();
    upper.headers.set(
        "Via",
        "SIP/2.0/UDP PC33.Atlanta.example.com:5060;branch=z9hG4bKs1",
    );
    assert!(l.on_message(upper, "uac", UDP, base).is_empty());
    // CANCEL: its own transaction, and a lookup of the INVITE's.
    let cancel = dialtone_sip::transaction::cancel_for(&inv);
    let ctx = start_server(&mut l, cancel.clone(), UDP, base);
    assert_ne!(ctx, itx);
    assert_eq!(l.kind(ctx), Some(Kind::NonInviteServer));
    assert_eq!(l.invite_for_cancel(&cancel), Some(itx));
    let stray_cancel = request("CANCEL", "z9hG4bKs9");
    assert_eq!(l.invite_for_cancel(&stray_cancel), None);
    // A non-INVITE transaction is never found as the INVITE.
    let opt = request("OPTIONS", "z9hG4bKs3");
    start_server(&mut l, opt, UDP, base);
    assert_eq!(l.invite_for_cancel(&request("CANCEL", "z9hG4bKs3")), None);
    // The TU answers: 200 to the CANCEL, 487 to the INVITE.
    l.send_response(ctx, resp(&cancel, 200), base).unwrap();
    l.send_response(itx, resp(&inv, 487), base).unwrap();
    // An ACK for the 487 matches the INVITE transaction.
    assert!(l
        .on_message(ack("z9hG4bKs1", "8321234356"), "uac", UDP, base)
        .is_empty());
    assert_eq!(l.state(itx), Some(State::Confirmed));
    // An ACK with a branch seen for nothing: stray.
    assert!(matches!(
        &l.on_message(ack("z9hG4bKs7", "x"), "uac", UDP, base)[..],
        [Event::StrayAck { from: "uac", .. }]
    ));
    assert_eq!(l.len(), 4);
}

#[test]
fn rfc2543_requests_match_without_magic_cookie() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("oldstyle1");
    let tx = start_server(&mut l, inv.clone(), UDP, base);
    // A retransmission matches.
    let busy = resp(&inv, 486);
    l.send_response(tx, busy.clone(), base).unwrap();
    let ev = l.on_message(inv.clone(), "uac", UDP, at(base, 100));
    assert_eq!(transmitted(&ev), vec![&busy]);
    // Another CSeq is another transaction.
    let mut next = inv.clone();
    next.headers.set("CSeq", "314160 INVITE");
    let tx2 = start_server(&mut l, next, UDP, base);
    assert_ne!(tx, tx2);
    // An ACK with a different To tag does not match.
    assert!(matches!(
        &l.on_message(ack("oldstyle1", "other"), "uac", UDP, at(base, 200))[..],
        [Event::StrayAck { .. }]
    ));
    // The ACK with the response's To tag does.
    assert!(l
        .on_message(ack("oldstyle1", "8321234356"), "uac", UDP, at(base, 300))
        .is_empty());
    assert_eq!(l.state(tx), Some(State::Confirmed));
    // No branch at all also works.
    let mut nobranch = request("OPTIONS", "x");
    nobranch
        .headers
        .set("Via", "SIP/2.0/UDP pc33.atlanta.example.com:5060");
    let otx = start_server(&mut l, nobranch.clone(), UDP, base);
    l.send_response(otx, resp(&nobranch, 200), base).unwrap();
    assert_eq!(
        transmitted(&l.on_message(nobranch, "uac", UDP, base)).len(),
        1
    );
    // CANCEL lookup with the RFC 2543 key.
    let cancel = dialtone_sip::transaction::cancel_for(&inv);
    assert_eq!(l.invite_for_cancel(&cancel), Some(tx));
}

#[test]
fn unreadable_requests_are_dropped() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let mut bad = request("OPTIONS", "z9hG4bKbad");
    bad.headers.remove("Via");
    assert!(l.on_message(bad, "uac", UDP, base).is_empty());
    assert!(l.is_empty());
}

// ---------------------------------------------------------------------------
// TU calls, errors, cleanup
// ---------------------------------------------------------------------------

#[test]
fn send_request_adds_branch_and_refuses_bad_input() {
    let base = Instant::now();
    let mut l = Layer::with_seed(no_trying(), 42);
    let mut req = request("OPTIONS", "x");
    req.headers
        .set("Via", "SIP/2.0/UDP pc33.atlanta.example.com:5060");
    req.headers
        .push("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKbelow");
    let (tx, ev) = l.send_request(req.clone(), "uas", UDP, base).unwrap();
    let sent = transmitted(&ev)[0];
    let branch = sent.top_via().unwrap().branch().unwrap().to_string();
    assert!(
        branch.starts_with(MAGIC_COOKIE) && branch.len() == 23,
        "{branch}"
    );
    assert_eq!(sent.headers.get_all("Via").len(), 2);
    assert_eq!(l.request(tx), Some(sent));
    // The layer's branches do not repeat.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        assert!(seen.insert(l.new_branch()));
    }
    assert!(!seen.contains(&branch));
    // Responses to it match.
    assert!(matches!(
        &l.on_message(resp(sent, 200), "uas", UDP, base)[..],
        [Event::Response { .. }]
    ));
    // Errors.
    assert_eq!(
        l.send_request(ack("z9hG4bKx", "t"), "uas", UDP, base)
            .unwrap_err(),
        TxError::AckIsNotATransaction
    );
    assert_eq!(
        l.send_request(resp(&req, 200), "uas", UDP, base)
            .unwrap_err(),
        TxError::NotARequest
    );
    let mut novia = request("OPTIONS", "z9hG4bKy");
    novia.headers.remove("Via");
    assert_eq!(
        l.send_request(novia, "uas", UDP, base).unwrap_err(),
        TxError::BadVia
    );
    let mut badcseq = request("OPTIONS", "z9hG4bKy");
    badcseq.headers.set("CSeq", "1 INFO");
    assert_eq!(
        l.send_request(badcseq, "uas", UDP, base).unwrap_err(),
        TxError::BadCSeq
    );
    l.send_request(invite("z9hG4bKdup"), "uas", UDP, base)
        .unwrap();
    assert_eq!(
        l.send_request(invite("z9hG4bKdup"), "uas", UDP, base)
            .unwrap_err(),
        TxError::DuplicateBranch
    );
}

#[test]
fn send_response_errors() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let inv = invite("z9hG4bKsr");
    let ctx = start_client(&mut l, inv.clone(), UDP, base);
    assert_eq!(
        l.send_response(ctx, resp(&inv, 200), base),
        Err(TxError::NotAServerTransaction)
    );
    assert_eq!(
        l.send_response(TxId(999), resp(&inv, 200), base),
        Err(TxError::NoSuchTransaction)
    );
    let stx = start_server(&mut l, invite("z9hG4bKsr2"), UDP, base);
    assert_eq!(
        l.send_response(stx, inv.clone(), base),
        Err(TxError::NotAResponse)
    );
    l.send_response(stx, resp(&inv, 404), base).unwrap();
    assert_eq!(
        l.send_response(stx, resp(&inv, 404), base),
        Err(TxError::WrongState(State::Completed))
    );
}

#[test]
fn transport_errors_terminate() {
    let base = Instant::now();
    let mut l = Layer::new(Config::default());
    let ctx = start_client(&mut l, invite("z9hG4bKte1"), UDP, base);
    let ntx = start_client(&mut l, request("OPTIONS", "z9hG4bKte2"), UDP, base);
    let stx = start_server(&mut l, invite("z9hG4bKte3"), UDP, base);
    l.send_response(stx, resp(&invite("z9hG4bKte3"), 500), base)
        .unwrap();
    assert_eq!(l.len(), 3);
    for tx in [ctx, ntx, stx] {
        assert_eq!(
            l.transport_error(tx),
            vec![Event::TransportError { tx }, Event::Terminated { tx }]
        );
        assert!(l.transport_error(tx).is_empty());
    }
    assert!(l.is_empty());
    assert_eq!(l.next_deadline(), None);
    // terminate() too.
    let tx = start_client(&mut l, invite("z9hG4bKte4"), UDP, base);
    assert_eq!(l.terminate(tx), vec![Event::Terminated { tx }]);
    assert!(l.terminate(tx).is_empty());
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn everything_terminates_and_len_returns_to_zero() {
    let base = Instant::now();
    let mut l = Layer::new(Config {
        timer_c: Some(Config::TIMER_C_DEFAULT),
        ..Config::default()
    });
    let mut terminated = 0;
    let mut count = |ev: &[Event<Peer>]| {
        terminated += ev
            .iter()
            .filter(|e| matches!(e, Event::Terminated { .. }))
            .count()
    };
    for i in 0..200u64 {
        let reliable = i % 2 == 0;
        let now = at(base, i * 10);
        let b = format!("z9hG4bKmany{i}");
        match i % 8 {
            0 => {
                // INVITE client answered 486.
                let inv = invite(&b);
                let (_, ev) = l.send_request(inv.clone(), "uas", reliable, now).unwrap();
                count(&ev);
                count(&l.on_message(resp(&inv, 486), "uas", reliable, now));
            }
            1 => {
                // INVITE client answered 200.
                let inv = invite(&b);
                let (_, ev) = l.send_request(inv.clone(), "uas", reliable, now).unwrap();
                count(&ev);
                count(&l.on_message(resp(&inv, 200), "uas", reliable, now));
            }
            2 => {
                // INVITE client stuck in Proceeding: Timer C, CancelWait.
                let inv = invite(&b);
                let (_, ev) = l.send_request(inv.clone(), "uas", reliable, now).unwrap();
                count(&ev);
                count(&l.on_message(resp(&inv, 180), "uas", reliable, now));
            }
            3 => {
                // Unanswered non-INVITE client.
                let (_, ev) = l
                    .send_request(request("OPTIONS", &b), "uas", reliable, now)
                    .unwrap();
                count(&ev);
            }
            4 => {
                // INVITE server, 200.
                let inv = invite(&b);
                let ev = l.on_message(inv.clone(), "uac", reliable, now);
                count(&ev);
                let Event::Request { tx, .. } = ev[0] else {
                    panic!()
                };
                count(&l.send_response(tx, resp(&inv, 200), now).unwrap());
            }
            5 => {
                // INVITE server, 404 never ACKed.
                let inv = invite(&b);
                let ev = l.on_message(inv.clone(), "uac", reliable, now);
                let Event::Request { tx, .. } = ev[0] else {
                    panic!()
                };
                count(&ev);
                count(&l.send_response(tx, resp(&inv, 404), now).unwrap());
            }
            6 => {
                // Non-INVITE server answered.
                let req = request("BYE", &b);
                let ev = l.on_message(req.clone(), "uac", reliable, now);
                let Event::Request { tx, .. } = ev[0] else {
                    panic!()
                };
                count(&ev);
                count(&l.send_response(tx, resp(&req, 200), now).unwrap());
            }
            _ => {
                // INVITE server the TU never answers: only the auto 100,
                // then it would live forever; the TU gives up.
                let ev = l.on_message(invite(&b), "uac", reliable, now);
                let Event::Request { tx, .. } = ev[0] else {
                    panic!()
                };
                count(&ev);
                count(&l.on_timer(at(base, i * 10 + 200)));
                count(&l.terminate(tx));
            }
        }
    }
    assert!(!l.is_empty());
    while let Some(d) = l.next_deadline() {
        count(&l.on_timer(d));
    }
    assert_eq!(l.len(), 0);
    assert_eq!(terminated, 200);
}

#[test]
fn waiting_transactions_drop_what_they_never_send_again() {
    let base = Instant::now();
    let mut l = Layer::new(no_trying());
    let names =
        |m: &Message| -> Vec<String> { m.headers.iter().map(|h| h.name.to_string()).collect() };
    // Non-INVITE server over UDP: the transaction keeps only the start line
    // and the headers a 100 Trying copies (the TU got the whole request);
    // in Completed (Timer J, 32 s) it drops even that, and the final
    // response stays whole for retransmissions.
    let mut info = request("INFO", "z9hG4bKslim1");
    info.headers.push("Content-Type", "application/dtmf-relay");
    info.body = b"Signal=5\r\nDuration=160\r\n".to_vec();
    let tx = start_server(&mut l, info.clone(), UDP, base);
    let kept = l.request(tx).unwrap();
    assert!(kept.body.is_empty());
    assert_eq!(names(kept), ["Via", "To", "From", "Call-ID", "CSeq"]);
    assert_eq!(kept.start, info.start);
    let mut ok = resp(&info, 200);
    ok.headers.push("Content-Type", "text/plain");
    ok.body = b"a body the retransmission must carry".to_vec();
    l.send_response(tx, ok.clone(), at(base, 10)).unwrap();
    assert_eq!(l.state(tx), Some(State::Completed));
    assert!(l.request(tx).is_none());
    let ev = l.on_message(info.clone(), "uac", UDP, at(base, 1_000));
    assert_eq!(transmitted(&ev), vec![&ok]);

    // INVITE server, RFC 2543 style (no magic cookie), 2xx: Accepted for
    // Timer L. Request and 2xx are dropped, the 2xx's To tag kept: the ACK
    // still matches on it and reaches the TU, and a 2xx retransmission
    // from the TU still goes out whole.
    let inv = invite("oldstyle-slim");
    let tx = start_server(&mut l, inv.clone(), UDP, base);
    let mut ok = resp(&inv, 200);
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = b"v=0\r\n".to_vec();
    l.send_response(tx, ok.clone(), at(base, 20)).unwrap();
    assert_eq!(l.state(tx), Some(State::Accepted));
    assert!(l.request(tx).is_none());
    let ev = l.send_response(tx, ok.clone(), at(base, 500)).unwrap();
    assert_eq!(transmitted(&ev), vec![&ok]);
    assert!(matches!(
        &l.on_message(ack("oldstyle-slim", "other"), "uac", UDP, at(base, 600))[..],
        [Event::StrayAck { .. }]
    ));
    assert!(matches!(
        &l.on_message(
            ack("oldstyle-slim", "8321234356"),
            "uac",
            UDP,
            at(base, 700)
        )[..],
        [Event::Ack { .. }]
    ));

    // INVITE client, non-2xx: the ACK it re-sends in Completed stays whole.
    let inv = invite("z9hG4bKslim3");
    let tx = start_client(&mut l, inv.clone(), UDP, base);
    let busy = resp(&inv, 486);
    let ev = l.on_message(busy.clone(), "uas", UDP, at(base, 30));
    let first_ack = transmitted(&ev)[0].clone();
    assert_eq!(l.state(tx), Some(State::Completed));
    assert!(l.request(tx).is_none());
    let ev = l.on_message(busy, "uas", UDP, at(base, 600));
    assert_eq!(transmitted(&ev), vec![&first_ack]);
    assert_eq!(first_ack.headers.get_all("Route").len(), 2);

    let _ = run_until(&mut l, base, at(base, 100_000));
    assert!(l.is_empty());
}

/// An event list handed back with `recycle` is the storage of the next
/// result, cleared: the driver's per-message path allocates no list.
#[test]
fn a_recycled_event_list_is_reused_empty() {
    let base = Instant::now();
    let mut l = Layer::with_seed(Config::default(), 7);
    let (_, ev) = l
        .send_request(invite("z9hG4bKr1"), "pc33", UDP, base)
        .unwrap();
    assert_eq!(ev.len(), 1);
    let storage = ev.as_ptr();
    l.recycle(ev);
    let (_, ev) = l
        .send_request(invite("z9hG4bKr2"), "pc33", UDP, base)
        .unwrap();
    assert_eq!(ev.as_ptr(), storage, "the recycled list was not reused");
    assert_eq!(ev.len(), 1, "the recycled list was not cleared");
    assert!(
        matches!(&ev[0], Event::Transmit { msg, .. } if msg.top_via().unwrap().branch() == Some("z9hG4bKr2"))
    );
    // A list too long to keep is dropped, not kept.
    l.recycle(Vec::with_capacity(1024));
    let (_, ev) = l
        .send_request(invite("z9hG4bKr3"), "pc33", UDP, base)
        .unwrap();
    assert!(ev.capacity() < 1024);
}
