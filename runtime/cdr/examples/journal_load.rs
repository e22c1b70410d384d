//! The CDR journal under a switch's load, without the switch: CALLS calls
//! (default 30000) at RATE calls/s (default 2000), each two channels that
//! open, bridge each other and close CALL_MS later (default 30, a multiple
//! of 10), the way the SIP benchmark's calls reach the journal. Prints the
//! writer thread's CPU per CDR (from /proc, Linux only) and the journal's
//! counters.
//!
//! `cargo run --release -p dialtone-cdr --example journal_load -- 30000 2000 30`

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dialtone_cdr::{Cdr, Journal, JournalOptions, Open};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// CPU ticks (user + system) of this process's `cdr-journal` thread.
fn writer_ticks() -> u64 {
    let mut ticks = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let p = task.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() != "cdr-journal" {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime and stime
        // are the 12th and 13th.
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += field(11) + field(12);
    }
    ticks
}

fn open(uuid: &str, direction: &str) -> Open {
    Open {
        uuid: uuid.into(),
        other_leg_uuid: None,
        direction: direction.into(),
        tenant: "dialtone.local".into(),
        endpoint: "sofia".into(),
        channel_name: "sofia/external/2000@127.0.0.1:5612".into(),
        caller_id_name: "2000".into(),
        caller_id_number: "2000".into(),
        destination: "1001".into(),
        context: "public".into(),
        start_us: now_us(),
        sip_call_id: Some("18581-10850@127.0.0.1".into()),
    }
}

fn close(j: &Journal, uuid: &str, other: &str, direction: &str) {
    let mut c = Cdr::cut_by_crash(&open(uuid, direction), now_us());
    c.cut_by_crash = false;
    c.other_leg_uuid = Some(other.into());
    c.hangup_cause = "NORMAL_CLEARING".into();
    c.hangup_cause_q850 = Some(16);
    c.sip_code = Some(200);
    c.dialplan_version = Some("3f9a2c1b".into());
    c.codec = Some("PCMU".into());
    c.answer_us = Some(c.start_us);
    j.closed(c);
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let calls = arg(1, 30_000);
    let rate = arg(2, 2000).max(100);
    // How long a call lasts, in 10 ms ticks.
    let call_ticks = arg(3, 30) / 10;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = JournalOptions {
        jsonl: Some(dir.path().join("cdr.jsonl")),
        ..JournalOptions::default()
    };
    let (j, _) = Journal::open_with(&dir.path().join("cdr.redb"), options).expect("journal");
    let t0 = writer_ticks();
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = rate / 100;
    let mut live: VecDeque<Vec<(String, String)>> = VecDeque::new();
    let (mut started, mut ticks) = (0usize, 0u32);
    while started < calls || !live.is_empty() {
        let mut batch = Vec::new();
        for _ in 0..per_tick.min(calls - started) {
            started += 1;
            let a = format!("{started:08x}-aaaa-4bbb-8ccc-{started:012x}");
            let b = format!("{started:08x}-bbbb-4bbb-8ccc-{started:012x}");
            j.opened(open(&a, "inbound"));
            j.opened(open(&b, "outbound"));
            j.bridged(&a, &b);
            j.bridged(&b, &a);
            batch.push((a, b));
        }
        if !batch.is_empty() {
            live.push_back(batch);
        }
        if live.len() > call_ticks || started >= calls {
            for (a, b) in live.pop_front().unwrap_or_default() {
                close(&j, &a, &b, "inbound");
                close(&j, &b, &a, "outbound");
            }
        }
        ticks += 1;
        if let Some(d) = (start + tick * ticks).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    j.flush().expect("flush");
    let cpu_us = (writer_ticks() - t0) as f64 * 1e6 / 100.0;
    let cdrs = 2 * calls;
    println!(
        "{{\"bench\":\"cdr_journal\",\"calls\":{calls},\"rate\":{rate},\"call_ms\":{},\"cdrs\":{cdrs},\"wall_s\":{:.1},\"writer_cpu_ms\":{:.0},\"writer_cpu_us_per_cdr\":{:.1},\"commits\":{}}}",
        call_ticks * 10,
        start.elapsed().as_secs_f64(),
        cpu_us / 1000.0,
        cpu_us / cdrs.max(1) as f64,
        j.stats().commits,
    );
}
