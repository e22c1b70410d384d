//! Media applications on the workers: echo, prompts on the media clock,
//! RFC 4733 digits, and how a bridge takes over from them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{rtp, wait_until, Phone, LO};
use dialtone_media::codec::{alaw_decode, ulaw_decode, Codec};
use dialtone_media::rtp::{write_header, Header, TelephoneEvent};
use dialtone_media::{Format, LegEvent, MediaConfig, MediaEngine, Prompt};

fn engine(min: u16, max: u16) -> MediaEngine {
    MediaEngine::start(MediaConfig::new(LO, min, max).workers(2)).unwrap()
}

fn recorder() -> (Arc<Mutex<Vec<LegEvent>>>, dialtone_media::Listener) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    (seen, Arc::new(move |e| s.lock().unwrap().push(e)))
}

/// Zero crossings per second / 2: the frequency of a pure tone.
fn frequency(pcm: &[i16]) -> f32 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f32 * 8000.0 / pcm.len() as f32 / 2.0
}

#[test]
fn echo_sends_every_rtp_packet_back_to_its_source() {
    let engine = engine(24100, 24119);
    let leg = engine.allocate().unwrap();
    let phone = Phone::new(LO);
    engine.echo(&leg).unwrap();
    wait_until("echo applied", || {
        phone.send(leg.rtp_addr(), &rtp(7, 0, 172));
        phone.try_recv(Duration::from_millis(50)).is_some()
    });
    for seq in 1..=200u16 {
        let p = rtp(7, seq, 172);
        phone.send(leg.rtp_addr(), &p);
        let (back, from) = phone.recv();
        assert_eq!(back, p, "packet {seq} comes back unchanged");
        assert_eq!(from, leg.rtp_addr());
    }
    engine.stop_app(&leg).unwrap();
    wait_until("echo stopped", || {
        phone.send(leg.rtp_addr(), &rtp(7, 999, 172));
        phone.try_recv(Duration::from_millis(50)).is_none()
    });
}

#[test]
fn a_tone_plays_on_the_media_clock_in_the_legs_codec() {
    let engine = engine(24120, 24139);
    let leg = engine.allocate().unwrap();
    let phone = Phone::new(LO);
    engine.set_remote(&leg, phone.addr()).unwrap();
    engine
        .set_format(
            &leg,
            Format {
                codec: Codec::Pcma,
                payload_type: 8,
                event_payload_type: Some(101),
            },
        )
        .unwrap();
    let (seen, listener) = recorder();
    engine.set_listener(&leg, listener).unwrap();
    let prompt = Arc::new(Prompt::load("tone_stream://%(400,0,1000)").unwrap());
    let started = std::time::Instant::now();
    let token = engine.play(&leg, prompt).unwrap();
    let mut pcm = Vec::new();
    let mut last: Option<Header> = None;
    for i in 0..20 {
        let (p, from) = phone.recv();
        assert_eq!(from, leg.rtp_addr());
        let h = Header::parse(&p).expect("RTP");
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.payload_end - h.payload_start, 160);
        assert_eq!(h.marker, i == 0, "marker on the first packet only");
        if let Some(l) = last {
            assert_eq!(h.sequence, l.sequence.wrapping_add(1));
            assert_eq!(h.timestamp, l.timestamp.wrapping_add(160));
            assert_eq!(h.ssrc, l.ssrc);
        }
        last = Some(h);
        pcm.extend(p[12..].iter().map(|&b| alaw_decode(b)));
    }
    // 20 frames of 20 ms, paced by the clock (not sent in a burst).
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let f = frequency(&pcm);
    assert!((f - 1000.0).abs() < 20.0, "{f} Hz");
    wait_until("play done", || {
        seen.lock().unwrap().contains(&LegEvent::PlayDone {
            token,
            completed: true,
        })
    });
    assert!(phone.try_recv(Duration::from_millis(100)).is_none());
}

#[test]
fn a_replaced_prompt_reports_it_was_stopped_and_the_stream_continues() {
    let engine = engine(24140, 24159);
    let leg = engine.allocate().unwrap();
    let phone = Phone::new(LO);
    engine.set_remote(&leg, phone.addr()).unwrap();
    let (seen, listener) = recorder();
    engine.set_listener(&leg, listener).unwrap();
    let endless = Arc::new(Prompt::load("tone_stream://L=-1;%(100,100,440)").unwrap());
    let first = engine.play(&leg, endless).unwrap();
    let (p1, _) = phone.recv();
    let h1 = Header::parse(&p1).unwrap();
    assert_eq!(h1.payload_type, 0, "PCMU by default");
    let second = engine
        .play(
            &leg,
            Arc::new(Prompt::load("silence_stream://100").unwrap()),
        )
        .unwrap();
    wait_until("first stopped", || {
        seen.lock().unwrap().contains(&LegEvent::PlayDone {
            token: first,
            completed: false,
        })
    });
    wait_until("second done", || {
        seen.lock().unwrap().contains(&LegEvent::PlayDone {
            token: second,
            completed: true,
        })
    });
    // Drain: one SSRC and no sequence gap across the two prompts.
    let mut prev = h1;
    let mut silent = 0;
    while let Some((p, _)) = phone.try_recv(Duration::from_millis(100)) {
        let h = Header::parse(&p).unwrap();
        assert_eq!(h.ssrc, h1.ssrc);
        assert_eq!(h.sequence, prev.sequence.wrapping_add(1));
        if p[12..].iter().all(|&b| ulaw_decode(b) == 0) {
            silent += 1;
        }
        prev = h;
    }
    assert_eq!(silent, 5, "100 ms of silence is five frames");
}

fn event_packet(seq: u16, ts: u32, event: u8, end: bool, duration: u16) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    write_header(&mut p, 101, !end && duration == 160, seq, ts, 0x1234);
    TelephoneEvent {
        event,
        end,
        volume: 10,
        duration,
    }
    .write(&mut p[12..]);
    p
}

#[test]
fn rfc4733_digits_are_reported_once_each_bridged_or_not() {
    let engine = engine(24160, 24179);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    let (seen, listener) = recorder();
    engine.set_listener(&a, listener).unwrap();
    // Not bridged: digits still reach the listener.
    let mut seq = 0;
    let mut send_digit = |ts: u32, code: u8| {
        for d in [160u16, 320, 480] {
            seq += 1;
            pa.send(a.rtp_addr(), &event_packet(seq, ts, code, false, d));
        }
        for _ in 0..3 {
            seq += 1;
            pa.send(a.rtp_addr(), &event_packet(seq, ts, code, true, 800));
        }
    };
    send_digit(1000, 1);
    wait_until("digit 1", || seen.lock().unwrap().len() == 1);
    assert_eq!(
        seen.lock().unwrap()[0],
        LegEvent::Dtmf {
            digit: '1',
            duration_ms: 100
        }
    );
    engine.bridge(&a, &b).unwrap();
    common::wait_bridged(&a, &b);
    send_digit(9000, 11);
    wait_until("digit #", || seen.lock().unwrap().len() == 2);
    assert_eq!(
        seen.lock().unwrap()[1],
        LegEvent::Dtmf {
            digit: '#',
            duration_ms: 100
        }
    );
    // ...and the bridged leg's phone got all six event packets relayed.
    let mut relayed = 0;
    while let Some((p, _)) = pb.try_recv(Duration::from_millis(200)) {
        if Header::parse(&p).is_some_and(|h| h.payload_type == 101) {
            relayed += 1;
        }
    }
    assert_eq!(relayed, 6);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(seen.lock().unwrap().len(), 2, "each digit once");
}

#[test]
fn a_bridge_takes_over_from_a_prompt() {
    let engine = engine(24180, 24199);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    let (seen, listener) = recorder();
    engine.set_listener(&a, listener).unwrap();
    let token = engine
        .play(
            &a,
            Arc::new(Prompt::load("tone_stream://L=-1;%(1000,0,440)").unwrap()),
        )
        .unwrap();
    pa.recv();
    engine.bridge(&a, &b).unwrap();
    wait_until("prompt stopped", || {
        seen.lock().unwrap().contains(&LegEvent::PlayDone {
            token,
            completed: false,
        })
    });
    common::wait_bridged(&a, &b);
    while pa.try_recv(Duration::from_millis(60)).is_some() {}
    let p = rtp(9, 1, 172);
    pb.send(b.rtp_addr(), &p);
    assert_eq!(pa.recv().0, p, "the bridge relays, the prompt is gone");
}
