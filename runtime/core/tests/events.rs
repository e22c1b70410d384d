//! The event bus: ordering, overflow accounting, filters, subscription life.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dialtone_core::events::{
    header, subclass, Delivery, Event, EventBus, EventFilter, EventName, TryRecvError,
};

fn seq_of(d: &Delivery) -> u64 {
    match d {
        Delivery::Event(e) => e.sequence,
        Delivery::Lost { count } => panic!("unexpected Lost {{ count: {count} }}"),
    }
}

/// Drains what is queued now, without waiting.
fn drain(sub: &mut dialtone_core::events::Subscription) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Ok(d) = sub.try_recv() {
        out.push(d);
    }
    out
}

fn as_lost(d: &Delivery) -> Option<u64> {
    match d {
        Delivery::Lost { count } => Some(*count),
        Delivery::Event(_) => None,
    }
}

#[test]
fn event_names_round_trip() {
    assert_eq!(EventName::ALL.len(), 19);
    for &n in EventName::ALL {
        assert_eq!(EventName::parse(n.as_str()), Some(n));
        assert_eq!(EventName::parse(&n.as_str().to_lowercase()), Some(n));
        assert_eq!(n.as_str().parse::<EventName>(), Ok(n));
        assert_eq!(n.to_string(), n.as_str());
    }
    assert_eq!(EventName::ChannelCreate.as_str(), "CHANNEL_CREATE");
    assert_eq!(
        EventName::ChannelProgressMedia.as_str(),
        "CHANNEL_PROGRESS_MEDIA"
    );
    assert_eq!(EventName::ChannelCallstate.as_str(), "CHANNEL_CALLSTATE");
    assert_eq!(EventName::BackgroundJob.as_str(), "BACKGROUND_JOB");
    assert_eq!(
        EventName::parse("channel_hangup_complete"),
        Some(EventName::ChannelHangupComplete)
    );
    assert_eq!(EventName::parse("ALL"), None);
    assert_eq!(EventName::parse("CHANNEL_PARK_X"), None);
    assert!("nope".parse::<EventName>().is_err());
}

#[test]
fn event_builder_and_lookup() {
    let mut e = Event::new(EventName::ChannelAnswer)
        .header(header::UNIQUE_ID, "abc")
        .header(header::CALLER_CALLER_ID_NUMBER, "1000")
        .header("X-Repeated", "first")
        .header("X-Repeated", "second")
        .variable("sip_call_id", "call-1");
    assert!(e.timestamp_us > 1_600_000_000_000_000, "unix micros");
    assert_eq!(e.sequence, 0);
    assert_eq!(e.get("unique-id"), Some("abc"));
    assert_eq!(e.get(header::CALLER_CALLER_ID_NUMBER), Some("1000"));
    assert_eq!(e.get("X-Repeated"), Some("first"));
    assert_eq!(e.get("variable_sip_call_id"), Some("call-1"));
    assert_eq!(e.get_variable("sip_call_id"), Some("call-1"));
    assert_eq!(e.get_variable("missing"), None);
    assert_eq!(e.get(header::EVENT_NAME), Some("CHANNEL_ANSWER"));
    assert_eq!(e.get(header::HANGUP_CAUSE), None);

    e.set_header("x-repeated", "replaced");
    e.set_header(header::ANSWER_STATE, "answered");
    assert_eq!(e.get("X-Repeated"), Some("replaced"));
    assert_eq!(
        e.headers.iter().filter(|(k, _)| k == "X-Repeated").count(),
        2
    );
    assert_eq!(e.get(header::ANSWER_STATE), Some("answered"));

    let c = Event::custom(subclass::DIALPLAN_TRAP);
    assert_eq!(c.name, EventName::Custom);
    assert_eq!(c.subclass.as_deref(), Some("dialtone::dialplan_trap"));
    assert_eq!(
        c.get(header::EVENT_SUBCLASS),
        Some("dialtone::dialplan_trap")
    );
}

#[test]
fn publish_without_subscribers_only_counts() {
    let bus = EventBus::new();
    assert_eq!(bus.publish(Event::new(EventName::Heartbeat)), 1);
    assert_eq!(bus.publish(Event::new(EventName::Heartbeat)), 2);
    let s = bus.stats();
    assert_eq!((s.published, s.subscribers, s.dropped), (2, 0, 0));

    // A subscriber sees only what is published after it subscribed.
    let mut sub = bus.subscribe(EventFilter::all(), 4);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(bus.publish(Event::new(EventName::Heartbeat)), 3);
    assert_eq!(seq_of(&sub.try_recv().unwrap()), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_that_keeps_up_loses_nothing() {
    const N: u64 = 100_000;
    const CAP: usize = 256;
    let bus = EventBus::new();
    let mut sub = bus.subscribe(EventFilter::all(), CAP);
    let received = Arc::new(AtomicU64::new(0));

    let publisher = {
        let bus = bus.clone();
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut first = 0;
            for i in 0..N {
                // Keep at most CAP events in flight: this consumer keeps up.
                while i - received.load(Ordering::Acquire) >= CAP as u64 {
                    std::thread::yield_now();
                }
                let seq =
                    bus.publish(Event::new(EventName::ChannelState).header("N", i.to_string()));
                if i == 0 {
                    first = seq;
                }
            }
            first
        })
    };

    let mut expected_seq = None;
    for i in 0..N {
        let d = tokio::time::timeout(Duration::from_secs(30), sub.recv())
            .await
            .expect("no stall")
            .expect("bus alive");
        let Delivery::Event(e) = d else {
            panic!("lost events at {i}: {d:?}");
        };
        let want = *expected_seq.get_or_insert(e.sequence);
        assert_eq!(e.sequence, want, "contiguous sequence");
        assert_eq!(e.get("N"), Some(i.to_string().as_str()), "in order");
        expected_seq = Some(want + 1);
        received.store(i + 1, Ordering::Release);
    }
    let first = publisher.join().unwrap();
    assert_eq!(first, 1);
    assert_eq!(expected_seq, Some(N + 1));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(sub.lost_total(), 0);
    let s = bus.stats();
    assert_eq!((s.published, s.subscribers, s.dropped), (N, 1, 0));
}

#[test]
fn concurrent_publishers_deliver_in_sequence_order() {
    const THREADS: u64 = 4;
    const PER: u64 = 5_000;
    let bus = EventBus::new();
    let mut a = bus.subscribe(EventFilter::all(), (THREADS * PER) as usize);
    let mut b = bus.subscribe(EventFilter::all(), (THREADS * PER) as usize);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    bus.publish(
                        Event::new(EventName::Dtmf)
                            .header("T", t.to_string())
                            .header("I", i.to_string()),
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for sub in [&mut a, &mut b] {
        let all = drain(sub);
        assert_eq!(all.len() as u64, THREADS * PER);
        let seqs: Vec<u64> = all.iter().map(seq_of).collect();
        assert_eq!(seqs, (1..=THREADS * PER).collect::<Vec<_>>());
        // Each publisher's own events keep their order.
        let mut next = vec![0u64; THREADS as usize];
        for d in &all {
            let Delivery::Event(e) = d else {
                unreachable!()
            };
            let t: usize = e.get("T").unwrap().parse().unwrap();
            let i: u64 = e.get("I").unwrap().parse().unwrap();
            assert_eq!(i, next[t]);
            next[t] += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_gets_exact_lost_count_fast_one_unaffected() {
    let bus = EventBus::new();
    let mut slow = bus.subscribe(EventFilter::all(), 10);
    let mut fast = bus.subscribe(EventFilter::all(), 1000);

    let fast_task = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < 105 {
            match fast.recv().await.expect("bus alive") {
                Delivery::Event(e) => seqs.push(e.sequence),
                Delivery::Lost { count } => panic!("fast subscriber lost {count}"),
            }
        }
        (seqs, fast)
    });

    for i in 0..100u32 {
        bus.publish(Event::new(EventName::ChannelCallstate).header("N", i.to_string()));
    }
    assert_eq!(slow.len(), 10);
    assert_eq!(bus.stats().dropped, 90);

    // The queued (older) events first, then the gap, then newer events.
    let first = drain(&mut slow);
    assert_eq!(first.len(), 11);
    let seqs: Vec<u64> = first[..10].iter().map(seq_of).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(as_lost(&first[10]), Some(90));
    assert_eq!(slow.try_recv(), Err(TryRecvError::Empty));

    for _ in 0..5 {
        bus.publish(Event::new(EventName::ChannelCallstate));
    }
    let after: Vec<u64> = drain(&mut slow).iter().map(seq_of).collect();
    assert_eq!(after, vec![101, 102, 103, 104, 105]);
    assert_eq!(slow.lost_total(), 90);

    let (fast_seqs, fast) = tokio::time::timeout(Duration::from_secs(10), fast_task)
        .await
        .expect("fast subscriber finished")
        .unwrap();
    assert_eq!(fast_seqs, (1..=105).collect::<Vec<_>>());
    assert_eq!(fast.lost_total(), 0);
    assert_eq!(bus.stats().dropped, 90);
}

#[test]
fn lost_marker_sits_exactly_at_the_gap() {
    let bus = EventBus::new();
    let mut sub = bus.subscribe(EventFilter::all(), 10);
    for _ in 0..15 {
        bus.publish(Event::new(EventName::Heartbeat)); // 1..=10 queued, 11..=15 lost
    }
    for want in 1..=3 {
        assert_eq!(seq_of(&sub.try_recv().unwrap()), want);
    }
    for _ in 0..4 {
        bus.publish(Event::new(EventName::Heartbeat)); // 16..=18 queued, 19 lost
    }
    let got = drain(&mut sub);
    let shape: Vec<String> = got
        .iter()
        .map(|d| match d {
            Delivery::Event(e) => e.sequence.to_string(),
            Delivery::Lost { count } => format!("lost{count}"),
        })
        .collect();
    assert_eq!(
        shape,
        ["4", "5", "6", "7", "8", "9", "10", "lost5", "16", "17", "18", "lost1"]
    );
    assert_eq!(sub.lost_total(), 6);
    assert!(sub.is_empty());
}

#[test]
fn filter_by_name() {
    let bus = EventBus::new();
    let mut sub = bus.subscribe(
        EventFilter::names([EventName::ChannelAnswer, EventName::ChannelHangup]),
        16,
    );
    for name in [
        EventName::ChannelCreate,
        EventName::ChannelAnswer,
        EventName::ChannelBridge,
        EventName::ChannelHangup,
        EventName::ChannelDestroy,
    ] {
        bus.publish(Event::new(name));
    }
    bus.publish(Event::custom(subclass::DIALPLAN_TRAP));
    let names: Vec<EventName> = drain(&mut sub)
        .iter()
        .map(|d| match d {
            Delivery::Event(e) => e.name,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, [EventName::ChannelAnswer, EventName::ChannelHangup]);
    // Filtered-out events are not losses.
    assert_eq!(sub.lost_total(), 0);
    assert_eq!(bus.stats().dropped, 0);
}

#[test]
fn filter_by_custom_subclass() {
    let bus = EventBus::new();
    let mut traps = bus.subscribe(
        EventFilter::none().with_subclass(subclass::DIALPLAN_TRAP),
        16,
    );
    let mut customs = bus.subscribe(EventFilter::names([EventName::Custom]), 16);
    bus.publish(Event::custom(subclass::DIALPLAN_SWAP));
    bus.publish(Event::custom(subclass::DIALPLAN_TRAP).header("Reason", "unreachable"));
    bus.publish(Event::new(EventName::ChannelCreate));
    // A non-CUSTOM event carrying a subclass is not matched by subclass.
    let mut odd = Event::new(EventName::Log);
    odd.subclass = Some(subclass::DIALPLAN_TRAP.to_owned());
    bus.publish(odd);

    let t = drain(&mut traps);
    assert_eq!(t.len(), 1);
    let Delivery::Event(e) = &t[0] else { panic!() };
    assert_eq!(e.subclass.as_deref(), Some(subclass::DIALPLAN_TRAP));
    assert_eq!(e.get("Reason"), Some("unreachable"));

    let c: Vec<Option<String>> = drain(&mut customs)
        .iter()
        .map(|d| match d {
            Delivery::Event(e) => e.subclass.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        c,
        [
            Some(subclass::DIALPLAN_SWAP.to_owned()),
            Some(subclass::DIALPLAN_TRAP.to_owned())
        ]
    );
}

#[test]
fn filter_by_header() {
    let bus = EventBus::new();
    let mut one = bus.subscribe(
        EventFilter::all().with_header(header::UNIQUE_ID, "AAAA-1"),
        16,
    );
    // Several header filters: any one matching passes (as ESL).
    let mut two = bus.subscribe(
        EventFilter::all()
            .with_header(header::UNIQUE_ID, "aaaa-1")
            .with_header(header::OTHER_LEG_UNIQUE_ID, "bbbb-2"),
        16,
    );
    // Names and headers combine: only answers of that channel.
    let mut answers = bus.subscribe(
        EventFilter::names([EventName::ChannelAnswer]).with_header(header::UNIQUE_ID, "aaaa-1"),
        16,
    );
    // ESL's `filter Event-Name CHANNEL_HANGUP`.
    let mut by_event_name = bus.subscribe(
        EventFilter::all().with_header(header::EVENT_NAME, "CHANNEL_HANGUP"),
        16,
    );

    let ev = |name, uuid: &str| Event::new(name).header(header::UNIQUE_ID, uuid.to_owned());
    bus.publish(ev(EventName::ChannelCreate, "aaaa-1")); // 1
    bus.publish(ev(EventName::ChannelCreate, "bbbb-2")); // 2
    bus.publish(ev(EventName::ChannelAnswer, "aaaa-1")); // 3
    bus.publish(ev(EventName::ChannelAnswer, "bbbb-2")); // 4
    bus.publish(
        ev(EventName::ChannelBridge, "cccc-3").header(header::OTHER_LEG_UNIQUE_ID, "bbbb-2"),
    ); // 5
    bus.publish(ev(EventName::ChannelHangup, "aaaa-1")); // 6
    bus.publish(Event::new(EventName::Heartbeat)); // 7: no Unique-ID

    let seqs = |s: &mut dialtone_core::events::Subscription| -> Vec<u64> {
        drain(s).iter().map(seq_of).collect()
    };
    assert_eq!(seqs(&mut one), [1, 3, 6]);
    assert_eq!(seqs(&mut two), [1, 3, 5, 6]);
    assert_eq!(seqs(&mut answers), [3]);
    assert_eq!(seqs(&mut by_event_name), [6]);
}

#[test]
fn set_filter_on_a_live_subscription() {
    let bus = EventBus::new();
    let mut sub = bus.subscribe(EventFilter::none(), 16);
    bus.publish(Event::new(EventName::ChannelCreate)); // 1
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));

    sub.set_filter(EventFilter::names([EventName::ChannelCreate]));
    assert!(sub.filter().has_name(EventName::ChannelCreate));
    bus.publish(Event::new(EventName::ChannelCreate)); // 2
    bus.publish(Event::new(EventName::ChannelHangup)); // 3
    assert_eq!(seq_of(&sub.try_recv().unwrap()), 2);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));

    // Queued events survive a filter change.
    bus.publish(Event::new(EventName::ChannelCreate)); // 4
    sub.set_filter(EventFilter::names([EventName::ChannelHangup]));
    bus.publish(Event::new(EventName::ChannelCreate)); // 5
    bus.publish(Event::new(EventName::ChannelHangup)); // 6
    let got: Vec<u64> = drain(&mut sub).iter().map(seq_of).collect();
    assert_eq!(got, [4, 6]);

    // ESL `event ALL` then `nixevent CHANNEL_HANGUP`, then `filter Unique-ID x`.
    sub.set_filter(EventFilter::all());
    sub.update_filter(|f| f.remove_name(EventName::ChannelHangup));
    assert!(!sub.filter().is_all());
    bus.publish(Event::new(EventName::ChannelHangup)); // 7
    bus.publish(Event::new(EventName::Heartbeat)); // 8
    sub.update_filter(|f| f.add_header(header::UNIQUE_ID, "x"));
    bus.publish(Event::new(EventName::Heartbeat)); // 9
    bus.publish(Event::new(EventName::Heartbeat).header(header::UNIQUE_ID, "x")); // 10
    sub.update_filter(|f| {
        assert_eq!(f.remove_header("unique-id", None), 1);
    });
    bus.publish(Event::new(EventName::Heartbeat)); // 11
    let got: Vec<u64> = drain(&mut sub).iter().map(seq_of).collect();
    assert_eq!(got, [8, 10, 11]);
}

#[test]
fn dropping_a_subscription_unsubscribes() {
    let bus = EventBus::new();
    let keep = bus.subscribe(EventFilter::all(), 1);
    let gone = bus.subscribe(EventFilter::all(), 1);
    let third = bus.subscribe(EventFilter::all(), 1);
    assert_ne!(keep.id(), gone.id());
    assert_eq!(bus.stats().subscribers, 3);
    drop(gone);
    assert_eq!(bus.stats().subscribers, 2);

    for _ in 0..3 {
        bus.publish(Event::new(EventName::Heartbeat));
    }
    // Two live subscribers of capacity 1 each lose 2: the dropped one no
    // longer counts.
    assert_eq!(bus.stats().dropped, 4);
    drop(keep);
    drop(third);
    let s = bus.stats();
    assert_eq!((s.published, s.subscribers, s.dropped), (3, 0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_waits_for_a_publish_from_another_thread() {
    let bus = EventBus::new();
    let mut sub = bus.subscribe(EventFilter::names([EventName::BackgroundJob]), 4);
    let publisher = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            bus.publish(Event::new(EventName::Heartbeat));
            bus.publish(Event::new(EventName::BackgroundJob).header(header::JOB_UUID, "j1"));
        })
    };
    let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("woken")
        .expect("bus alive");
    let Delivery::Event(e) = d else { panic!() };
    assert_eq!(e.get(header::JOB_UUID), Some("j1"));
    assert_eq!(e.sequence, 2);
    publisher.join().unwrap();
}

#[tokio::test]
async fn recv_returns_none_after_the_bus_is_gone() {
    let bus = EventBus::new();
    let mut sub = bus.subscribe(EventFilter::all(), 4);
    bus.publish(Event::new(EventName::Heartbeat));
    let waiter = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(d) = sub.recv().await {
            got.push(seq_of(&d));
        }
        got
    });
    tokio::task::yield_now().await;
    bus.publish(Event::new(EventName::Heartbeat));
    drop(bus);
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("recv ended")
        .unwrap();
    assert_eq!(got, [1, 2]);
}

#[test]
fn events_are_shared_not_copied() {
    let bus = EventBus::new();
    let mut a = bus.subscribe(EventFilter::all(), 4);
    let mut b = bus.subscribe(EventFilter::all(), 4);
    bus.publish(Event::new(EventName::ChannelCreate).header(header::UNIQUE_ID, "u"));
    let (Ok(Delivery::Event(x)), Ok(Delivery::Event(y))) = (a.try_recv(), b.try_recv()) else {
        panic!("both delivered");
    };
    assert!(Arc::ptr_eq(&x, &y));
}

#[test]
fn publish_with_builds_only_for_subscribers_and_keeps_the_sequence() {
    let bus = EventBus::new();
    let built = std::cell::Cell::new(0);
    let build = || {
        built.set(built.get() + 1);
        Event::new(EventName::ChannelState)
    };
    // Nobody listens: a sequence number, no event built.
    assert_eq!(bus.publish_with(build), 1);
    assert_eq!(built.get(), 0);
    let mut sub = bus.subscribe(EventFilter::all(), 8);
    assert_eq!(bus.publish_with(build), 2);
    assert_eq!(built.get(), 1);
    match sub.try_recv() {
        Ok(Delivery::Event(ev)) => {
            assert_eq!(ev.sequence, 2);
            assert_eq!(ev.name, EventName::ChannelState);
        }
        other => panic!("expected the event, got {other:?}"),
    }
}

#[test]
fn shared_channel_variables_read_and_serialize_as_headers() {
    let vars = Arc::new(vec![
        ("sip_call_id".to_string(), "abc@h".to_string()),
        ("duration".to_string(), "from-the-channel".to_string()),
    ]);
    let ev = Event::new(EventName::ChannelHangupComplete)
        .header("Unique-ID", "u1")
        .variable("duration", "7")
        .with_variables(Arc::clone(&vars));
    // A header written on the event comes before the shared variables.
    assert_eq!(ev.get_variable("duration"), Some("7"));
    assert_eq!(ev.get_variable("SIP_CALL_ID"), Some("abc@h"));
    assert_eq!(ev.get("variable_sip_call_id"), Some("abc@h"));
    assert_eq!(ev.get("Variable_Sip_Call_Id"), Some("abc@h"));
    assert_eq!(ev.get("variable_nope"), None);
    assert_eq!(ev.get("sip_call_id"), None);
    let mut seen = Vec::new();
    ev.each_header(|k, v| seen.push(format!("{k}={v}")));
    assert_eq!(
        seen,
        [
            "Unique-ID=u1",
            "variable_duration=7",
            "variable_sip_call_id=abc@h",
            "variable_duration=from-the-channel"
        ]
    );
    // Filters see them too.
    let mut f = EventFilter::names([EventName::ChannelHangupComplete]);
    f.add_header("variable_sip_call_id", "ABC@H");
    assert!(f.matches(&ev));
    // Shared, not copied.
    assert!(Arc::ptr_eq(ev.variables.as_ref().unwrap(), &vars));
}

#[test]
fn taps_see_matching_events_in_sequence_order_from_every_publisher() {
    const THREADS: u64 = 4;
    const PER: u64 = 5_000;
    let bus = EventBus::new();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let tap = bus.tap(EventFilter::names([EventName::Dtmf]), move |ev| {
        s.lock().push(ev.sequence)
    });
    // A queue subscriber beside the tap gets the same events.
    let mut sub = bus.subscribe(EventFilter::all(), (2 * THREADS * PER) as usize);
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for _ in 0..PER {
                    bus.publish(Event::new(EventName::Dtmf));
                    // Not matched by the tap's filter.
                    bus.publish(Event::new(EventName::Heartbeat));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let dtmf: Vec<u64> = drain(&mut sub)
        .iter()
        .filter_map(|d| match d {
            Delivery::Event(e) if e.name == EventName::Dtmf => Some(e.sequence),
            _ => None,
        })
        .collect();
    assert_eq!(dtmf.len() as u64, THREADS * PER);
    assert_eq!(*seen.lock(), dtmf, "the tap saw the DTMF events, in order");
    let s = bus.stats();
    assert_eq!(
        (s.published, s.subscribers, s.dropped),
        (2 * THREADS * PER, 2, 0)
    );
    drop(tap);
    assert_eq!(bus.stats().subscribers, 1);
}

#[test]
fn a_dropped_tap_is_removed_and_a_detached_one_stays() {
    let bus = EventBus::new();
    let dropped = Arc::new(AtomicU64::new(0));
    let kept = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&dropped);
    let tap = bus.tap(EventFilter::all(), move |_| {
        d.fetch_add(1, Ordering::Relaxed);
    });
    let k = Arc::clone(&kept);
    bus.tap(EventFilter::all(), move |_| {
        k.fetch_add(1, Ordering::Relaxed);
    })
    .detach();
    bus.publish(Event::new(EventName::Heartbeat));
    drop(tap);
    bus.publish(Event::new(EventName::Heartbeat));
    assert_eq!(dropped.load(Ordering::Relaxed), 1);
    assert_eq!(kept.load(Ordering::Relaxed), 2);
    assert_eq!(bus.stats().subscribers, 1);
}

#[test]
fn a_panicking_tap_costs_the_others_nothing() {
    let bus = EventBus::new();
    let counted = Arc::new(AtomicU64::new(0));
    bus.tap(EventFilter::all(), |_| panic!("a broken tap"))
        .detach();
    let c = Arc::clone(&counted);
    bus.tap(EventFilter::all(), move |_| {
        c.fetch_add(1, Ordering::Relaxed);
    })
    .detach();
    let mut sub = bus.subscribe(EventFilter::all(), 4);
    assert_eq!(bus.publish(Event::new(EventName::Heartbeat)), 1);
    assert_eq!(bus.publish(Event::new(EventName::Heartbeat)), 2);
    assert_eq!(counted.load(Ordering::Relaxed), 2);
    assert_eq!(
        drain(&mut sub).iter().map(seq_of).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn publish_named_builds_for_a_tap_that_wants_the_name_only() {
    let bus = EventBus::new();
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    bus.tap(EventFilter::names([EventName::ChannelCreate]), move |_| {
        s.fetch_add(1, Ordering::Relaxed);
    })
    .detach();
    let built = std::cell::Cell::new(0);
    let build = |name| {
        built.set(built.get() + 1);
        Event::new(name)
    };
    bus.publish_named(EventName::ChannelState, || build(EventName::ChannelState));
    assert_eq!((built.get(), seen.load(Ordering::Relaxed)), (0, 0));
    bus.publish_named(EventName::ChannelCreate, || build(EventName::ChannelCreate));
    assert_eq!((built.get(), seen.load(Ordering::Relaxed)), (1, 1));
}
