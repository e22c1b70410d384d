//! The caller: places the calls, retransmits INVITEs and BYEs, ACKs final
//! responses, and tells the RTP sender where each call's media goes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sip::{self, Msg};
use crate::{rtp, sys, Shared};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_B: Duration = Duration::from_secs(32);
const BYE_WAIT_AFTER_LAST: Duration = Duration::from_secs(10);
const SCAN_EVERY: Duration = Duration::from_millis(5);
/// At most this much of a schedule that fell behind is sent in one burst.
const MAX_BURST: Duration = Duration::from_millis(50);

pub struct UacConfig {
    pub target: SocketAddr,
    /// `HOST:PORT` as given on the command line, for the Request-URI.
    pub target_hostport: String,
    pub dest_user: String,
    pub calls: usize,
    pub rate: f64,
    pub max_pending: usize,
    pub setup_timeout: Duration,
    pub local_port: u16,
    pub rtp_port: u16,
    pub seed: u64,
}

#[derive(Default, Debug)]
pub struct UacResult {
    pub established: usize,
    /// Failure reason (status code, "timeout", ...) to number of calls.
    pub failed: BTreeMap<String, usize>,
    pub setup_s: f64,
    pub bye_sent: usize,
    pub bye_ok: usize,
    pub bye_failed: usize,
    pub invite_retx: u64,
    pub bye_retx: u64,
    pub ack_resent: u64,
    pub late_2xx: u64,
    pub remote_bye: u64,
    pub malformed: u64,
    pub unmatched: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    Inviting,
    Established,
    Failed,
}

enum Bye {
    None,
    Sending {
        msg: Vec<u8>,
        dest: SocketAddr,
        first: Instant,
        next: Instant,
        interval: Duration,
    },
    Done,
}

struct Dialog {
    to: String,
    ruri: String,
    routes: Vec<String>,
    dest: SocketAddr,
}

struct Call {
    state: State,
    call_id: String,
    from: String,
    invite: Vec<u8>,
    invite_via: String,
    first: Instant,
    next: Instant,
    interval: Duration,
    proceeding: bool,
    dialog: Option<Dialog>,
    /// The last ACK sent (for a 2xx or a failure), resent on retransmits.
    ack: Option<(Vec<u8>, SocketAddr)>,
    bye: Bye,
    in_tx: bool,
}

struct Hangup {
    list: Vec<usize>,
    next: usize,
    next_due: Instant,
    last_sent: Instant,
}

pub struct Uac {
    cfg: UacConfig,
    sock: UdpSocket,
    sh: Arc<Shared>,
    calls: Vec<Call>,
    by_cid: HashMap<String, usize>,
    res: UacResult,
    branch_ctr: u64,
    start: Instant,
    invite_ruri: String,
    interval: Duration,
    next_call: usize,
    next_due: Instant,
    pending: usize,
    failed_n: usize,
    tx: Vec<usize>,
    setup_done: bool,
    hangup: Option<Hangup>,
    bye_outstanding: usize,
    bye_done: bool,
}

/// An in-dialog request (ACK for a 2xx, BYE) along the dialog's route set.
fn in_dialog_request(
    method: &str,
    cseq: u32,
    branch: &str,
    local_port: u16,
    dlg: &Dialog,
    from: &str,
    call_id: &str,
) -> Vec<u8> {
    let mut s = format!(
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n",
        dlg.ruri
    );
    for r in &dlg.routes {
        s.push_str("Route: ");
        s.push_str(r);
        s.push_str("\r\n");
    }
    s.push_str(&format!(
        "Max-Forwards: 70\r\nFrom: {from}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        dlg.to
    ));
    s.into_bytes()
}

impl Uac {
    pub fn new(cfg: UacConfig, sock: UdpSocket, sh: Arc<Shared>) -> Uac {
        let now = Instant::now();
        let calls = (0..cfg.calls)
            .map(|_| Call {
                state: State::Idle,
                call_id: String::new(),
                from: String::new(),
                invite: Vec::new(),
                invite_via: String::new(),
                first: now,
                next: now,
                interval: T1,
                proceeding: false,
                dialog: None,
                ack: None,
                bye: Bye::None,
                in_tx: false,
            })
            .collect();
        let invite_ruri = format!("sip:{}@{}", cfg.dest_user, cfg.target_hostport);
        let interval = Duration::from_secs_f64(1.0 / cfg.rate);
        Uac {
            by_cid: HashMap::with_capacity(cfg.calls),
            cfg,
            sock,
            sh,
            calls,
            res: UacResult::default(),
            branch_ctr: 0,
            start: now,
            invite_ruri,
            interval,
            next_call: 0,
            next_due: now,
            pending: 0,
            failed_n: 0,
            tx: Vec::new(),
            setup_done: false,
            hangup: None,
            bye_outstanding: 0,
            bye_done: false,
        }
    }

    fn new_branch(&mut self) -> String {
        self.branch_ctr += 1;
        format!("z9hG4bK{:08x}{:x}", self.cfg.seed as u32, self.branch_ctr)
    }

    fn send(&self, data: &[u8], dest: SocketAddr) {
        // A failed send is recovered by retransmission.
        let _ = self.sock.send_to(data, dest);
    }

    pub fn run(mut self) -> UacResult {
        let mut buf = vec![0u8; 65536];
        let mut next_scan = self.start;
        while !self.sh.stop_all.load(Acquire) {
            if let Ok((len, from)) = self.sock.recv_from(&mut buf) {
                match sip::parse(&buf[..len]) {
                    Some(m) => self.on_msg(m, from),
                    None => self.res.malformed += 1,
                }
            }
            let now = Instant::now();
            self.place_calls(now);
            self.hangup_step(now);
            if now >= next_scan {
                self.scan_timers(now);
                self.check_phase(now);
                next_scan = now + SCAN_EVERY;
            }
        }
        self.finish()
    }

    fn finish(mut self) -> UacResult {
        // Stopped early (run bound): whatever is not settled is aborted.
        for i in 0..self.calls.len() {
            if matches!(self.calls[i].state, State::Idle | State::Inviting) {
                self.fail(i, "aborted");
            }
        }
        if !self.setup_done {
            self.res.setup_s = self.start.elapsed().as_secs_f64();
        }
        self.res
    }

    fn place_calls(&mut self, now: Instant) {
        if self.setup_done {
            return;
        }
        while self.next_call < self.cfg.calls
            && now >= self.next_due
            && self.pending < self.cfg.max_pending
        {
            let i = self.next_call;
            self.next_call += 1;
            self.start_call(i, now);
            self.next_due += self.interval;
        }
        if let Some(floor) = now.checked_sub(MAX_BURST) {
            if self.next_due < floor {
                self.next_due = floor;
            }
        }
    }

    fn start_call(&mut self, i: usize, now: Instant) {
        let seed = self.cfg.seed;
        let call_id = format!("{:016x}-{i}@127.0.0.1", seed);
        let from = format!(
            "<sip:rtpload@127.0.0.1>;tag={:x}",
            sys::mix(seed ^ (i as u64) ^ 0xF00D_0000_0000)
        );
        let branch = self.new_branch();
        let via = format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch={branch};rport",
            self.cfg.local_port
        );
        let sdp = sip::build_sdp(1000 + i as u64, self.cfg.rtp_port, &[0, 101]);
        let invite = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: <{ruri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:rtpload@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            ruri = self.invite_ruri,
            port = self.cfg.local_port,
            len = sdp.len(),
        )
        .into_bytes();
        self.send(&invite, self.cfg.target);
        self.by_cid.insert(call_id.clone(), i);
        let c = &mut self.calls[i];
        c.state = State::Inviting;
        c.call_id = call_id;
        c.from = from;
        c.invite = invite;
        c.invite_via = via;
        c.first = now;
        c.interval = T1;
        c.next = now + T1;
        self.pending += 1;
        self.sh.pending.store(self.pending, Relaxed);
        if !c.in_tx {
            c.in_tx = true;
            self.tx.push(i);
        }
    }

    fn fail(&mut self, i: usize, reason: &str) {
        self.calls[i].state = State::Failed;
        *self.res.failed.entry(reason.to_string()).or_insert(0) += 1;
        self.failed_n += 1;
        self.sh.failed.fetch_add(1, Relaxed);
    }

    fn settle_pending(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        self.sh.pending.store(self.pending, Relaxed);
    }

    fn on_msg(&mut self, m: Msg, from: SocketAddr) {
        match m.code() {
            Some(code) => self.on_response(&m, code),
            None => self.on_request(&m, from),
        }
    }

    fn on_response(&mut self, m: &Msg, code: u16) {
        let (Some(cid), Some((_, method))) = (m.call_id(), m.cseq()) else {
            self.res.malformed += 1;
            return;
        };
        let Some(&i) = self.by_cid.get(cid) else {
            self.res.unmatched += 1;
            return;
        };
        if method.eq_ignore_ascii_case("INVITE") {
            self.on_invite_response(i, m, code);
        } else if method.eq_ignore_ascii_case("BYE") {
            self.on_bye_response(i, code);
        }
    }

    fn resend_ack(&mut self, i: usize) {
        if let Some((ack, dest)) = &self.calls[i].ack {
            let _ = self.sock.send_to(ack, *dest);
            self.res.ack_resent += 1;
        }
    }

    fn on_invite_response(&mut self, i: usize, m: &Msg, code: u16) {
        let state = self.calls[i].state;
        if code < 200 {
            if state == State::Inviting {
                // Proceeding: no more INVITE retransmissions (Timer A).
                self.calls[i].proceeding = true;
            }
            return;
        }
        if code >= 300 {
            if state == State::Inviting {
                self.settle_pending();
                // RFC 3261 17.1.1.3: same branch as the INVITE, to the target.
                let c = &self.calls[i];
                let ack = format!(
                    "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    self.invite_ruri,
                    c.invite_via,
                    c.from,
                    m.header("to").unwrap_or(""),
                    c.call_id
                )
                .into_bytes();
                self.send(&ack, self.cfg.target);
                self.calls[i].ack = Some((ack, self.cfg.target));
                self.fail(i, &code.to_string());
            } else {
                self.resend_ack(i);
            }
            return;
        }
        // 2xx
        if state == State::Inviting {
            self.settle_pending();
            let Some(dlg) = self.dialog_from_2xx(m) else {
                self.fail(i, "bad_2xx");
                return;
            };
            self.ack_2xx(i, dlg);
            let media = sip::parse_sdp(&m.body).and_then(|s| match s.addr {
                Some(IpAddr::V4(ip)) if s.port != 0 => Some(rtp::pack_dest(ip, s.port)),
                _ => None,
            });
            match media {
                Some(d) => {
                    if !self.sh.stop_rtp.load(Acquire) {
                        self.sh.dest[i].store(d, Release);
                    }
                    self.calls[i].state = State::Established;
                    self.res.established += 1;
                    self.sh.established.fetch_add(1, Relaxed);
                }
                None => self.fail(i, "bad_sdp"),
            }
        } else if self.calls[i].dialog.is_some() {
            // Retransmitted 2xx: the ACK was lost or is still on its way.
            self.resend_ack(i);
        } else {
            // 2xx after the call was given up: ACK it and hang it up.
            self.res.late_2xx += 1;
            if let Some(dlg) = self.dialog_from_2xx(m) {
                self.ack_2xx(i, dlg);
                if self.hangup.is_some() {
                    self.start_bye(i, Instant::now());
                }
            }
        }
    }

    fn ack_2xx(&mut self, i: usize, dlg: Dialog) {
        let branch = self.new_branch();
        let c = &self.calls[i];
        let ack = in_dialog_request(
            "ACK",
            1,
            &branch,
            self.cfg.local_port,
            &dlg,
            &c.from,
            &c.call_id,
        );
        self.send(&ack, dlg.dest);
        let c = &mut self.calls[i];
        c.ack = Some((ack, dlg.dest));
        c.dialog = Some(dlg);
    }

    fn dialog_from_2xx(&self, m: &Msg) -> Option<Dialog> {
        let to = m.header("to")?.to_string();
        let contact = m
            .header_values("contact")
            .first()
            .map(|c| sip::uri_of(c))
            .filter(|c| !c.is_empty())
            .unwrap_or(&self.invite_ruri)
            .to_string();
        let rr = m.header_values("record-route");
        let t = sip::route_for_2xx(&rr, &contact)?;
        let dest = sip::resolve(&t.host, t.port)?;
        Some(Dialog {
            to,
            ruri: t.ruri,
            routes: t.routes,
            dest,
        })
    }

    fn on_bye_response(&mut self, i: usize, code: u16) {
        if code < 200 {
            return;
        }
        if let Bye::Sending { .. } = self.calls[i].bye {
            self.calls[i].bye = Bye::Done;
            self.bye_outstanding = self.bye_outstanding.saturating_sub(1);
            if code < 300 {
                self.res.bye_ok += 1;
                self.sh.bye_ok.fetch_add(1, Relaxed);
            } else {
                self.res.bye_failed += 1;
            }
        }
    }

    /// Requests reaching the caller (a BYE or OPTIONS from the far side).
    fn on_request(&mut self, m: &Msg, from: SocketAddr) {
        let method = m.method().unwrap_or("");
        if method == "ACK" {
            return;
        }
        let dest = m
            .header_values("via")
            .first()
            .and_then(|v| sip::via_response_addr(v))
            .unwrap_or(from);
        if method == "BYE" {
            if let Some(&i) = m.call_id().and_then(|c| self.by_cid.get(c)) {
                self.sh.dest[i].store(0, Release);
                self.res.remote_bye += 1;
            }
        }
        let (code, reason) = if method == "INVITE" {
            (488, "Not Acceptable Here")
        } else {
            (200, "OK")
        };
        let resp = sip::build_response(m, code, reason, Some("rtpload-uac"), None, None);
        self.send(&resp, dest);
    }

    fn scan_timers(&mut self, now: Instant) {
        let mut tx = std::mem::take(&mut self.tx);
        tx.retain(|&i| self.timer(i, now));
        tx.append(&mut self.tx);
        self.tx = tx;
    }

    /// Retransmission and timeout of call `i`'s transaction. Returns whether
    /// it still has one running.
    fn timer(&mut self, i: usize, now: Instant) -> bool {
        if self.calls[i].state == State::Inviting {
            let c = &mut self.calls[i];
            if now.duration_since(c.first) >= TIMER_B {
                c.in_tx = false;
                self.settle_pending();
                self.fail(i, "timeout");
                return false;
            }
            if !c.proceeding && now >= c.next {
                c.interval *= 2;
                c.next = now + c.interval;
                let _ = self.sock.send_to(&c.invite, self.cfg.target);
                self.res.invite_retx += 1;
            }
            return true;
        }
        let c = &mut self.calls[i];
        if let Bye::Sending {
            msg,
            dest,
            first,
            next,
            interval,
        } = &mut c.bye
        {
            if now.duration_since(*first) >= TIMER_B {
                c.bye = Bye::Done;
                c.in_tx = false;
                self.bye_outstanding = self.bye_outstanding.saturating_sub(1);
                self.res.bye_failed += 1;
                return false;
            }
            if now >= *next {
                *interval = (*interval * 2).min(T2);
                *next = now + *interval;
                let _ = self.sock.send_to(msg, *dest);
                self.res.bye_retx += 1;
            }
            return true;
        }
        c.in_tx = false;
        false
    }

    fn check_phase(&mut self, now: Instant) {
        if !self.setup_done {
            if now.duration_since(self.start) >= self.cfg.setup_timeout {
                for i in 0..self.calls.len() {
                    match self.calls[i].state {
                        State::Idle => self.fail(i, "not_started"),
                        State::Inviting => self.fail(i, "timeout"),
                        _ => {}
                    }
                }
                self.pending = 0;
                self.sh.pending.store(0, Relaxed);
            }
            if self.res.established + self.failed_n >= self.cfg.calls {
                self.setup_done = true;
                self.res.setup_s = now.duration_since(self.start).as_secs_f64();
                self.sh.setup_done.store(true, Release);
            }
        }
        if self.hangup.is_none() && self.sh.hangup.load(Acquire) {
            let list = (0..self.calls.len())
                .filter(|&i| self.calls[i].dialog.is_some())
                .collect();
            self.hangup = Some(Hangup {
                list,
                next: 0,
                next_due: now,
                last_sent: now,
            });
        }
        if let Some(h) = &self.hangup {
            if !self.bye_done
                && h.next >= h.list.len()
                && (self.bye_outstanding == 0
                    || now.duration_since(h.last_sent) >= BYE_WAIT_AFTER_LAST)
            {
                self.bye_done = true;
                self.sh.bye_done.store(true, Release);
            }
        }
    }

    fn hangup_step(&mut self, now: Instant) {
        let Some(mut h) = self.hangup.take() else {
            return;
        };
        while h.next < h.list.len() && now >= h.next_due {
            let i = h.list[h.next];
            h.next += 1;
            self.start_bye(i, now);
            h.next_due += self.interval;
            h.last_sent = now;
        }
        if let Some(floor) = now.checked_sub(MAX_BURST) {
            if h.next_due < floor {
                h.next_due = floor;
            }
        }
        self.hangup = Some(h);
    }

    fn start_bye(&mut self, i: usize, now: Instant) {
        self.sh.dest[i].store(0, Release);
        if !matches!(self.calls[i].bye, Bye::None) {
            return;
        }
        let branch = self.new_branch();
        let c = &self.calls[i];
        let Some(dlg) = &c.dialog else {
            return;
        };
        let msg = in_dialog_request(
            "BYE",
            2,
            &branch,
            self.cfg.local_port,
            dlg,
            &c.from,
            &c.call_id,
        );
        let dest = dlg.dest;
        self.send(&msg, dest);
        let c = &mut self.calls[i];
        c.bye = Bye::Sending {
            msg,
            dest,
            first: now,
            next: now + T1,
            interval: T1,
        };
        self.res.bye_sent += 1;
        self.bye_outstanding += 1;
        if !c.in_tx {
            c.in_tx = true;
            self.tx.push(i);
        }
    }
}
