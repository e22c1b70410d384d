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
    // ...and the bridged leg's phone got all six event packets of "#"
    // relayed (the last end packets of "1" may still have been queued on
    // A's socket when the bridge took effect: they are relayed too, and
    // not counted here).
    let mut relayed = 0;
    let mut event_ts = None;
    while let Some((p, _)) = pb.try_recv(Duration::from_millis(200)) {
        if let Some(h) = Header::parse(&p).filter(|h| h.payload_type == 101) {
            let code = p[h.payload_start];
            if code == 11 {
                // One event: one timestamp, whatever the line's offset.
                assert_eq!(*event_ts.get_or_insert(h.timestamp), h.timestamp);
                relayed += 1;
            }
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
    let mut last = Header::parse(&pa.recv().0);
    engine.bridge(&a, &b).unwrap();
    wait_until("prompt stopped", || {
        seen.lock().unwrap().contains(&LegEvent::PlayDone {
            token,
            completed: false,
        })
    });
    common::wait_bridged(&a, &b);
    while let Some((p, _)) = pa.try_recv(Duration::from_millis(60)) {
        last = Header::parse(&p);
    }
    let last = last.expect("the prompt played");
    let p = rtp(9, 1, 172);
    pb.send(b.rtp_addr(), &p);
    let (got, _) = pa.recv();
    // The bridge relays (the payload is B's), on the line the prompt
    // started: A's phone hears one stream.
    assert_eq!(got[12..], p[12..], "the bridge relays, the prompt is gone");
    let h = Header::parse(&got).unwrap();
    assert_eq!(h.ssrc, last.ssrc);
    assert_eq!(h.sequence, last.sequence.wrapping_add(1));
    assert!(h.marker, "a new talkspurt");
}

/// Receive the next RTP packet (skipping anything else) at `phone`.
fn next_rtp(phone: &Phone) -> (Header, Vec<u8>) {
    loop {
        let (p, _) = phone.recv();
        if let Some(h) = Header::parse(&p) {
            return (h, p);
        }
    }
}

/// Three legs with a phone each; A bridged to B.
fn three_legs_a_bridged_to_b(engine: &MediaEngine) -> ([dialtone_media::LegHandle; 3], [Phone; 3]) {
    let legs = [(); 3].map(|_| engine.allocate().unwrap());
    let phones = [(); 3].map(|_| Phone::new(LO));
    for (leg, phone) in legs.iter().zip(&phones) {
        engine.set_remote(leg, phone.addr()).unwrap();
    }
    engine.bridge(&legs[0], &legs[1]).unwrap();
    common::wait_bridged(&legs[0], &legs[1]);
    (legs, phones)
}

#[test]
fn the_stream_a_phone_hears_stays_continuous_across_transfers_reinvites_and_prompts() {
    let engine = engine(24300, 24319);
    let ([a, b, c], [pa, pb, pc]) = three_legs_a_bridged_to_b(&engine);

    // Plain passthrough: B's packets reach A byte for byte.
    for seq in 1000..1020u16 {
        let p = rtp(0xB, seq, 172);
        pb.send(b.rtp_addr(), &p);
        assert_eq!(pa.recv().0, p, "passthrough keeps B's numbering");
    }
    // A re-INVITE that changes nothing for the media (same address and
    // codec, hold and unhold) keeps it that way.
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    for seq in 1020..1030u16 {
        let p = rtp(0xB, seq, 172);
        pb.send(b.rtp_addr(), &p);
        assert_eq!(pa.recv().0, p);
    }
    let last_ts = 1029u32 * 160;

    // Transfer: A is bridged to C, whose phone has its own SSRC, sequence
    // and timestamps. A's phone still hears SSRC 0xB, sequence 1030, 1031,
    // ..., timestamps moving on from B's last.
    engine.bridge(&a, &c).unwrap();
    wait_until("A bridged to C", || {
        !b.stats().is_relaying() && c.stats().is_relaying() && a.stats().is_relaying()
    });
    let mut seq_c = 50u16;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "C's audio never reached A"
        );
        let mut p = rtp(0xC, seq_c, 172);
        p[4..8].copy_from_slice(&(7_777_000u32 + u32::from(seq_c) * 160).to_be_bytes());
        seq_c += 1;
        pc.send(c.rtp_addr(), &p);
        if let Some((got, _)) = pa.try_recv(Duration::from_millis(50)) {
            break got;
        }
    };
    let h = Header::parse(&first).unwrap();
    assert_eq!(
        (h.ssrc, h.sequence),
        (0xB, 1030),
        "continued after the transfer"
    );
    assert!(h.marker, "the change starts a talkspurt");
    assert!(h.timestamp.wrapping_sub(last_ts) >= 160, "time moves on");
    assert!(
        h.timestamp.wrapping_sub(last_ts) < 8000 * 5,
        "by the wall clock"
    );
    let ts_delta = h
        .timestamp
        .wrapping_sub(7_777_000 + u32::from(seq_c - 1) * 160);
    let mut prev = h;
    for _ in 0..10 {
        let mut p = rtp(0xC, seq_c, 172);
        p[4..8].copy_from_slice(&(7_777_000u32 + u32::from(seq_c) * 160).to_be_bytes());
        seq_c += 1;
        pc.send(c.rtp_addr(), &p);
        let (h, got) = next_rtp(&pa);
        assert_eq!(got[12..], p[12..], "C's audio");
        assert_eq!(h.ssrc, 0xB);
        assert_eq!(h.sequence, prev.sequence.wrapping_add(1));
        assert_eq!(h.timestamp, prev.timestamp.wrapping_add(160));
        assert!(!h.marker);
        prev = h;
    }
    // A packet of C's from before the transfer's first (late, reordered)
    // would take a number A's phone already heard: dropped.
    let mut late = rtp(0xC, 45, 172);
    late[4..8].copy_from_slice(&(7_777_000u32 + 45 * 160).to_be_bytes());
    pc.send(c.rtp_addr(), &late);
    let mut p = rtp(0xC, seq_c, 172);
    p[4..8].copy_from_slice(&(7_777_000u32 + u32::from(seq_c) * 160).to_be_bytes());
    pc.send(c.rtp_addr(), &p);
    let (h, got) = next_rtp(&pa);
    assert_eq!(got[12..], p[12..], "the late packet was dropped");
    assert_eq!(h.sequence, prev.sequence.wrapping_add(1));
    let prev = h;
    // C's RTCP sender report is renumbered to match: A's phone sees the
    // sender it hears, with a timestamp on the same line.
    // (A's phone sends RTCP first, from its RTP socket: the leg latches
    // its RTCP there.)
    pa.send(a.rtcp_addr(), &[0x80, 201, 0, 1, 0, 0, 0, 0xA]);
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0xCu32.to_be_bytes());
    sr.extend_from_slice(&[0; 8]); // NTP
    sr.extend_from_slice(&5_000_000u32.to_be_bytes());
    sr.extend_from_slice(&[0; 8]);
    let rtcp_a = 'got: loop {
        assert!(std::time::Instant::now() < deadline, "no RTCP reached A");
        pc.send(c.rtcp_addr(), &sr);
        while let Some((p, from)) = pa.try_recv(Duration::from_millis(50)) {
            if from == a.rtcp_addr() {
                break 'got p;
            }
        }
    };
    assert_eq!(
        &rtcp_a[4..8],
        &0xBu32.to_be_bytes(),
        "RTCP sender renumbered"
    );
    assert_eq!(
        u32::from_be_bytes(rtcp_a[16..20].try_into().unwrap()),
        5_000_000u32.wrapping_add(ts_delta),
        "SR timestamp on A's line"
    );
    // The other way, C hears A's phone unchanged (its first source).
    let p = rtp(0xA, 1, 172);
    pa.send(a.rtp_addr(), &p);
    assert_eq!(next_rtp(&pc).1, p);

    // A prompt on A after the bridge ends: the same line again.
    engine.unbridge(&a).unwrap();
    wait_until("unbridged", || !a.stats().is_relaying());
    engine
        .play(&a, Arc::new(Prompt::load("silence_stream://100").unwrap()))
        .unwrap();
    let (h, _) = next_rtp(&pa);
    assert_eq!((h.ssrc, h.sequence), (0xB, prev.sequence.wrapping_add(1)));
    assert!(h.marker);
    let mut prev = h;
    for _ in 0..4 {
        let (h, _) = next_rtp(&pa);
        assert_eq!((h.ssrc, h.sequence), (0xB, prev.sequence.wrapping_add(1)));
        assert_eq!(h.timestamp, prev.timestamp.wrapping_add(160));
        prev = h;
    }
    // Back to B (its phone went on counting meanwhile): still one line.
    engine.bridge(&a, &b).unwrap();
    common::wait_bridged(&a, &b);
    let mut seq_b = 1100u16;
    let h = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "B's audio never reached A"
        );
        pb.send(b.rtp_addr(), &rtp(0xB, seq_b, 172));
        seq_b += 1;
        if let Some((got, _)) = pa.try_recv(Duration::from_millis(50)) {
            if let Some(h) = Header::parse(&got) {
                break h;
            }
        }
    };
    assert_eq!((h.ssrc, h.sequence), (0xB, prev.sequence.wrapping_add(1)));
    assert!(h.marker);
}

fn format(codec: Codec, payload_type: u8, event: u8) -> Format {
    Format {
        codec,
        payload_type,
        event_payload_type: Some(event),
    }
}

#[test]
fn bridged_legs_with_different_codecs_are_transcoded_both_ways() {
    use dialtone_media::codec::{alaw_encode, ulaw_encode};
    let engine = engine(24200, 24219);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.set_format(&a, format(Codec::Pcmu, 0, 101)).unwrap();
    engine.set_format(&b, format(Codec::Pcma, 8, 96)).unwrap();
    engine.bridge(&a, &b).unwrap();
    common::wait_bridged(&a, &b);
    let samples: Vec<i16> = (0..160)
        .map(|i| ((i * 397) % 20000 - 10000) as i16)
        .collect();
    // A sends μ-law: B receives A-law of the same samples, same header.
    let mut p = vec![0u8; 12 + 160];
    write_header(&mut p, 0, true, 77, 1234, 0xAAAA);
    for (o, &s) in p[12..].iter_mut().zip(&samples) {
        *o = ulaw_encode(s);
    }
    pa.send(a.rtp_addr(), &p);
    let (q, _) = pb.recv();
    let h = Header::parse(&q).unwrap();
    assert_eq!(
        (h.payload_type, h.marker, h.sequence, h.timestamp, h.ssrc),
        (8, true, 77, 1234, 0xAAAA)
    );
    for (i, (&got, &s)) in q[12..].iter().zip(&samples).enumerate() {
        assert_eq!(got, alaw_encode(ulaw_decode(ulaw_encode(s))), "sample {i}");
    }
    // B sends A-law: A receives μ-law.
    let mut p = vec![0u8; 12 + 160];
    write_header(&mut p, 8, false, 5, 99, 0xBBBB);
    for (o, &s) in p[12..].iter_mut().zip(&samples) {
        *o = alaw_encode(s);
    }
    pb.send(b.rtp_addr(), &p);
    let (q, _) = pa.recv();
    assert_eq!(Header::parse(&q).unwrap().payload_type, 0);
    let decoded: Vec<i16> = q[12..].iter().map(|&c| ulaw_decode(c)).collect();
    for (&d, &s) in decoded.iter().zip(&samples) {
        assert!(
            (d as i32 - s as i32).abs() <= (s as i32).abs() / 8 + 40,
            "{d} vs {s}"
        );
    }
    // Telephone-events are renumbered 101 -> 96, payload untouched.
    let e = event_packet(1, 500, 5, true, 800);
    pa.send(a.rtp_addr(), &e);
    let (q, _) = pb.recv();
    assert_eq!(Header::parse(&q).unwrap().payload_type, 96);
    assert_eq!(q[12..], e[12..]);
    // L16 on one side: widened to 2 bytes a sample, and back.
    engine.set_format(&b, format(Codec::L16, 97, 96)).unwrap();
    wait_until("L16 applied", || {
        pa.send(a.rtp_addr(), &p_ulaw(&samples));
        let (q, _) = pb.recv();
        Header::parse(&q).unwrap().payload_type == 97
    });
    pa.send(a.rtp_addr(), &p_ulaw(&samples));
    let (q, _) = pb.recv();
    assert_eq!(q.len(), 12 + 320);
    for (i, &s) in samples.iter().enumerate() {
        let got = i16::from_be_bytes([q[12 + 2 * i], q[13 + 2 * i]]);
        assert_eq!(got, ulaw_decode(ulaw_encode(s)));
    }
    let mut l16 = vec![0u8; 12 + 320];
    write_header(&mut l16, 97, false, 9, 9, 9);
    for (i, &s) in samples.iter().enumerate() {
        l16[12 + 2 * i..14 + 2 * i].copy_from_slice(&s.to_be_bytes());
    }
    pb.send(b.rtp_addr(), &l16);
    let (q, _) = pa.recv();
    assert_eq!(q.len(), 12 + 160);
    assert_eq!(Header::parse(&q).unwrap().payload_type, 0);
    for (&got, &s) in q[12..].iter().zip(&samples) {
        assert_eq!(got, ulaw_encode(s));
    }
}

fn p_ulaw(samples: &[i16]) -> Vec<u8> {
    use dialtone_media::codec::ulaw_encode;
    let mut p = vec![0u8; 12 + samples.len()];
    write_header(&mut p, 0, false, 1, 1, 1);
    for (o, &s) in p[12..].iter_mut().zip(samples) {
        *o = ulaw_encode(s);
    }
    p
}

#[test]
fn a_silent_leg_reports_a_media_timeout_once_and_traffic_keeps_it_alive() {
    let engine = engine(24220, 24239);
    let quiet = engine.allocate().unwrap();
    let talking = engine.allocate().unwrap();
    let (seen_q, lq) = recorder();
    let (seen_t, lt) = recorder();
    engine.set_listener(&quiet, lq).unwrap();
    engine.set_listener(&talking, lt).unwrap();
    let phone = Phone::new(LO);
    let t = Some(Duration::from_millis(1500));
    engine.set_rtp_timeout(&quiet, t).unwrap();
    engine.set_rtp_timeout(&talking, t).unwrap();
    let started = std::time::Instant::now();
    for seq in 0..175u16 {
        phone.send(talking.rtp_addr(), &rtp(1, seq, 172));
        std::thread::sleep(Duration::from_millis(20));
    }
    // ~3.5 s: the quiet leg timed out once (checked each second), the one
    // that kept sending did not.
    assert_eq!(*seen_q.lock().unwrap(), [LegEvent::MediaTimeout]);
    assert!(seen_t.lock().unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // Disarmed (hold): silence is fine.
    engine.set_rtp_timeout(&talking, None).unwrap();
    std::thread::sleep(Duration::from_millis(2700));
    assert!(seen_t.lock().unwrap().is_empty());
    assert_eq!(seen_q.lock().unwrap().len(), 1);
}

#[test]
fn a_stereo_recording_keeps_the_phone_left_and_what_it_hears_right() {
    use dialtone_media::codec::ulaw_encode;
    use dialtone_media::Channels;
    let engine = engine(24240, 24259);
    let leg = engine.allocate().unwrap();
    let phone = Phone::new(LO);
    engine.set_remote(&leg, phone.addr()).unwrap();
    let dir = tempfile_dir("rec");
    let path = dir.join("sub/call.wav");
    engine
        .record(
            &leg,
            &path,
            Channels::Both,
            Some(Duration::from_millis(1200)),
        )
        .unwrap();
    engine
        .play(
            &leg,
            Arc::new(Prompt::load("tone_stream://%(1500,0,1000)").unwrap()),
        )
        .unwrap();
    // The phone talks: 440 Hz, 20 ms packets, for 1.5 s.
    for seq in 0..75u16 {
        let pcm: Vec<i16> = (0..160)
            .map(|i| {
                let t = (seq as f32 * 160.0 + i as f32) / 8000.0;
                ((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let mut p = vec![0u8; 12 + 160];
        write_header(&mut p, 0, seq == 0, seq, seq as u32 * 160, 0x4242);
        for (o, &s) in p[12..].iter_mut().zip(&pcm) {
            *o = ulaw_encode(s);
        }
        phone.send(leg.rtp_addr(), &p);
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(leg);
    // The writer completes the file once the leg is gone.
    let mut bytes = Vec::new();
    wait_until("recording written", || {
        bytes = std::fs::read(&path).unwrap_or_default();
        bytes.len() > 44 && u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]) > 0
    });
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2, "stereo");
    assert_eq!(
        u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]),
        8000
    );
    let data = &bytes[44..];
    let frames = data.len() / 4;
    // The limit: 1.2 s.
    assert_eq!(frames, 9600, "{frames} frames");
    let side = |k: usize| -> Vec<i16> {
        data.chunks_exact(4)
            .map(|f| i16::from_le_bytes([f[2 * k], f[2 * k + 1]]))
            .collect()
    };
    let (left, right) = (side(0), side(1));
    let f = frequency(&left[800..8800]);
    assert!((f - 440.0).abs() < 440.0 * 0.02, "left (the phone): {f} Hz");
    let f = frequency(&right[800..8800]);
    assert!((f - 1000.0).abs() < 20.0, "right (what it hears): {f} Hz");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dialtone-media-{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A deterministic impairment: 5 % lost, 5 % duplicated, 5 % swapped with
/// the next one (reordered), from a fixed seed.
struct Shim(u64);

impl Shim {
    fn roll(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % 100) as u32
    }

    /// The order in which `packets` reach the far side.
    fn impair(&mut self, packets: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut held: Option<Vec<u8>> = None;
        for p in packets {
            match self.roll() {
                0..=4 => continue,
                5..=9 => {
                    out.push(p.clone());
                    out.push(p);
                }
                10..=14 if held.is_none() => {
                    held = Some(p);
                    continue;
                }
                _ => out.push(p),
            }
            if let Some(h) = held.take() {
                out.push(h);
            }
        }
        out.extend(held);
        out
    }
}

#[test]
fn loss_reordering_and_duplicates_do_not_break_the_transcoded_audio() {
    use dialtone_media::codec::{alaw_decode, ulaw_encode};
    use dialtone_media::Channels;
    let engine = engine(24260, 24279);
    let a = engine.allocate().unwrap();
    let b = engine.allocate().unwrap();
    let (pa, pb) = (Phone::new(LO), Phone::new(LO));
    engine.set_remote(&a, pa.addr()).unwrap();
    engine.set_remote(&b, pb.addr()).unwrap();
    engine.set_format(&a, format(Codec::Pcmu, 0, 101)).unwrap();
    engine.set_format(&b, format(Codec::Pcma, 8, 101)).unwrap();
    let dir = tempfile_dir("shim");
    engine
        .record(&a, &dir.join("a.wav"), Channels::Both, None)
        .unwrap();
    engine.bridge(&a, &b).unwrap();
    common::wait_bridged(&a, &b);
    // 2 s of 440 Hz from A, and some malformed datagrams in between.
    let packets: Vec<Vec<u8>> = (0..100u16)
        .map(|seq| {
            let mut p = vec![0u8; 12 + 160];
            write_header(&mut p, 0, seq == 0, seq, seq as u32 * 160, 0x5151);
            for i in 0..160 {
                let t = (seq as f32 * 160.0 + i as f32) / 8000.0;
                p[12 + i] =
                    ulaw_encode(((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16);
            }
            p
        })
        .collect();
    let sent = Shim(7).impair(packets);
    for (i, p) in sent.iter().enumerate() {
        pa.send(a.rtp_addr(), p);
        if i % 25 == 0 {
            for junk in [
                &[0x80u8][..],
                &[0xFF; 7],
                &[0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xFF],
            ] {
                pa.send(a.rtp_addr(), junk);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut got = Vec::new();
    while let Some((p, _)) = pb.try_recv(Duration::from_millis(300)) {
        got.push(p);
    }
    let rtp_got: Vec<(u16, Vec<u8>)> = got
        .iter()
        .filter_map(|p| {
            let h = Header::parse(p)?;
            (h.payload_type == 8 && h.payload_end - h.payload_start == 160)
                .then(|| (h.sequence, p[12..172].to_vec()))
        })
        .collect();
    // Everything the shim let through was relayed, transcoded (the junk
    // too, untouched: the relay does not judge).
    assert_eq!(rtp_got.len(), sent.len(), "relayed every impaired packet");
    let mut by_seq = rtp_got.clone();
    by_seq.sort_by_key(|(s, _)| *s);
    by_seq.dedup_by_key(|(s, _)| *s);
    assert!(by_seq.len() >= 85, "{} distinct packets", by_seq.len());
    let pcm: Vec<i16> = by_seq
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&c| alaw_decode(c)))
        .collect();
    let f = frequency(&pcm);
    assert!(
        (f - 440.0).abs() < 440.0 * 0.06,
        "{f} Hz after loss and reordering"
    );
    // The engine still relays and the recording completes.
    let p = rtp(9, 500, 172);
    pb.send(b.rtp_addr(), &p);
    let (back, _) = pa.recv();
    assert_eq!(back.len(), p.len());
    drop((a, b));
    wait_until("recording completed", || {
        std::fs::read(dir.join("a.wav"))
            .is_ok_and(|b| b.len() > 44 && u32::from_le_bytes([b[40], b[41], b[42], b[43]]) > 0)
    });
    // The recording's reorder stage put A's packets back in order: its
    // left channel is the tone (and, where packets were lost, the silence
    // that keeps it in time, left out of the measure).
    let wav = std::fs::read(dir.join("a.wav")).unwrap();
    let left: Vec<i16> = wav[44..]
        .chunks_exact(4)
        .map(|f| i16::from_le_bytes([f[0], f[1]]))
        .filter(|&s| s != 0)
        .collect();
    assert!(left.len() >= 85 * 150, "{} samples", left.len());
    let f = frequency(&left);
    assert!((f - 440.0).abs() < 440.0 * 0.06, "recorded {f} Hz");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_terminated_leg_sends_receiver_reports_with_loss_jitter_and_lsr() {
    use dialtone_media::rtcp::{first_report_block, write_report, SenderInfo};
    let engine = engine(24280, 24299);
    let leg = engine.allocate().unwrap();
    let (phone, phone_rtcp) = (Phone::new(LO), Phone::new(LO));
    engine.echo(&leg).unwrap();
    // The phone's SR (NTP middle 0x11223344), from its RTCP socket: the
    // leg latches it there.
    let mut sr = [0u8; 64];
    let n = write_report(
        &mut sr,
        0x7777,
        Some(SenderInfo {
            ntp: 0x0000_1122_3344_0000,
            rtp_timestamp: 0,
            packets: 0,
            octets: 0,
        }),
        None,
        "phone",
    );
    phone_rtcp.send(leg.rtcp_addr(), &sr[..n]);
    // 6 s of RTP, every tenth packet missing.
    let mut sent = 0;
    for seq in 0..300u16 {
        if seq % 10 != 5 {
            phone.send(leg.rtp_addr(), &rtp(0x7777, seq, 172));
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
        while phone.try_recv(Duration::from_millis(1)).is_some() {}
    }
    assert_eq!(sent, 270);
    let mut report = None;
    while let Some((p, from)) = phone_rtcp.try_recv(Duration::from_millis(1500)) {
        assert_eq!(from, leg.rtcp_addr());
        if let Some(b) = first_report_block(&p) {
            assert_eq!(p[1], 201, "an echo sends receiver reports");
            report = Some(b);
        }
    }
    let b = report.expect("no RTCP report from the engine within 7.5 s");
    assert_eq!(b.ssrc, 0x7777);
    assert_eq!(b.lsr, 0x1122_3344);
    // Reported within the last 5 s: most of the loss so far, 10 %.
    assert!(b.lost >= 15 && b.lost <= 30, "{b:?}");
    assert!((20..=30).contains(&b.fraction_lost), "{b:?}");
    assert!(b.jitter < 8 * 20, "{b:?}");
    wait_until("statistics published", || {
        leg.stats().reception().expected >= 290
    });
    let r = leg.stats().reception();
    assert_eq!(r.lost, r.expected as i64 - 269, "{r:?}");
}

#[test]
fn a_rebase_after_60_ms_packets_does_not_overlap_the_last_one() {
    let engine = engine(24320, 24339);
    let ([a, b, c], [pa, pb, pc]) = three_legs_a_bridged_to_b(&engine);
    // B sends 60 ms of PCMU a packet (480 samples).
    let packet = |ssrc: u32, seq: u16, ts: u32| {
        let mut p = rtp(ssrc, seq, 12 + 480);
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p
    };
    for i in 0..5u16 {
        let p = packet(0xB, 100 + i, 480 * u32::from(i));
        pb.send(b.rtp_addr(), &p);
        assert_eq!(pa.recv().0, p);
    }
    let last_ts = 480 * 4;
    // At once to C: its first packet must start after B's last one ends.
    engine.bridge(&a, &c).unwrap();
    wait_until("A bridged to C", || {
        !b.stats().is_relaying() && c.stats().is_relaying()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seq = 7u16;
    let h = loop {
        assert!(std::time::Instant::now() < deadline, "C never reached A");
        pc.send(
            c.rtp_addr(),
            &packet(0xC, seq, 99_000 + 480 * u32::from(seq)),
        );
        seq += 1;
        if let Some((got, _)) = pa.try_recv(Duration::from_millis(20)) {
            break Header::parse(&got).unwrap();
        }
    };
    assert_eq!((h.ssrc, h.sequence), (0xB, 105));
    assert!(
        h.timestamp.wrapping_sub(last_ts) >= 480,
        "the first packet after the transfer overlaps B's last: {} after it",
        h.timestamp.wrapping_sub(last_ts)
    );
}
