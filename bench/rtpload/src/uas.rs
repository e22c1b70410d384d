//! The callee: answers every INVITE at once with 200 OK (its media is the
//! echo socket), retransmits the 200 until the ACK, answers BYE and OPTIONS.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Acquire;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sip::{self, Msg, StartLine};
use crate::Shared;

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const GIVE_UP: Duration = Duration::from_secs(32);
const SCAN_EVERY: Duration = Duration::from_millis(5);

pub struct UasConfig {
    pub local_port: u16,
    pub echo_port: u16,
    pub seed: u64,
}

#[derive(Default, Debug)]
pub struct UasResult {
    pub invites: u64,
    pub invite_retx: u64,
    pub rejected_488: u64,
    pub acks: u64,
    pub byes: u64,
    pub other_requests: u64,
    pub responses_ignored: u64,
    pub final_retx: u64,
    pub ack_timeouts: u64,
    pub malformed: u64,
}

/// The answered INVITE of one Call-ID.
struct Tx {
    cseq: u32,
    resp: Vec<u8>,
    dest: SocketAddr,
    first: Instant,
    next: Instant,
    interval: Duration,
    acked: bool,
}

/// Answer to an INVITE: 200 with our SDP if the offer has PCMU, else 488.
pub fn answer_invite(
    req: &Msg,
    to_tag: &str,
    local_port: u16,
    echo_port: u16,
    session_id: u64,
) -> Vec<u8> {
    let offer = sip::parse_sdp(&req.body);
    let fmts: Vec<u16> = offer
        .map(|o| {
            o.fmts
                .into_iter()
                .filter(|f| *f == 0 || *f == 101)
                .collect()
        })
        .unwrap_or_default();
    let contact = format!("<sip:1001@127.0.0.1:{local_port}>");
    if !fmts.contains(&0) {
        return sip::build_response(
            req,
            488,
            "Not Acceptable Here",
            Some(to_tag),
            Some(&contact),
            None,
        );
    }
    let sdp = sip::build_sdp(session_id, echo_port, &fmts);
    sip::build_response(
        req,
        200,
        "OK",
        Some(to_tag),
        Some(&contact),
        Some(("application/sdp", sdp.as_bytes())),
    )
}

pub fn run(sock: UdpSocket, cfg: UasConfig, sh: Arc<Shared>) -> UasResult {
    let mut res = UasResult::default();
    let mut txs: HashMap<String, Tx> = HashMap::new();
    let mut retx: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut next_scan = Instant::now();
    let mut answered = 0u64;
    while !sh.stop_all.load(Acquire) {
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            match sip::parse(&buf[..len]) {
                None => res.malformed += 1,
                Some(m) => match &m.start {
                    StartLine::Response { .. } => res.responses_ignored += 1,
                    StartLine::Request { method, .. } => {
                        let dest = m
                            .header_values("via")
                            .first()
                            .and_then(|v| sip::via_response_addr(v))
                            .unwrap_or(from);
                        let (Some(cid), Some((cseq, _))) = (m.call_id(), m.cseq()) else {
                            res.malformed += 1;
                            continue;
                        };
                        match method.as_str() {
                            "INVITE" => {
                                if let Some(tx) = txs.get_mut(cid).filter(|t| t.cseq == cseq) {
                                    res.invite_retx += 1;
                                    let _ = sock.send_to(&tx.resp, tx.dest);
                                    continue;
                                }
                                res.invites += 1;
                                answered += 1;
                                let tag = format!("{:x}", crate::sys::mix(cfg.seed ^ answered));
                                let resp = answer_invite(
                                    &m,
                                    &tag,
                                    cfg.local_port,
                                    cfg.echo_port,
                                    answered,
                                );
                                if resp.starts_with(b"SIP/2.0 488") {
                                    res.rejected_488 += 1;
                                }
                                let _ = sock.send_to(&resp, dest);
                                let now = Instant::now();
                                txs.insert(
                                    cid.to_string(),
                                    Tx {
                                        cseq,
                                        resp,
                                        dest,
                                        first: now,
                                        next: now + T1,
                                        interval: T1,
                                        acked: false,
                                    },
                                );
                                retx.push(cid.to_string());
                            }
                            "ACK" => {
                                res.acks += 1;
                                if let Some(tx) = txs.get_mut(cid).filter(|t| t.cseq == cseq) {
                                    tx.acked = true;
                                }
                            }
                            "BYE" => {
                                res.byes += 1;
                                txs.remove(cid);
                                let resp = sip::build_response(&m, 200, "OK", None, None, None);
                                let _ = sock.send_to(&resp, dest);
                            }
                            _ => {
                                res.other_requests += 1;
                                let resp = sip::build_response(
                                    &m,
                                    200,
                                    "OK",
                                    Some("rtpload-uas"),
                                    None,
                                    None,
                                );
                                let _ = sock.send_to(&resp, dest);
                            }
                        }
                    }
                },
            }
        }
        let now = Instant::now();
        if now >= next_scan {
            next_scan = now + SCAN_EVERY;
            retx.retain(|cid| {
                let Some(tx) = txs.get_mut(cid) else {
                    return false;
                };
                if tx.acked {
                    return false;
                }
                if now.duration_since(tx.first) >= GIVE_UP {
                    res.ack_timeouts += 1;
                    return false;
                }
                if now >= tx.next {
                    tx.interval = (tx.interval * 2).min(T2);
                    tx.next = now + tx.interval;
                    let _ = sock.send_to(&tx.resp, tx.dest);
                    res.final_retx += 1;
                }
                true
            });
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(sdp: &str) -> Msg {
        let s = format!(
            "INVITE sip:1001@127.0.0.1:5632 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5650;branch=z9hG4bKp\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5631;branch=z9hG4bKu;rport=5631\r\n\
Record-Route: <sip:127.0.0.1:5650;lr>\r\n\
From: <sip:rtpload@127.0.0.1>;tag=f\r\nTo: <sip:1001@127.0.0.1>\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        sip::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn answers_pcmu_and_telephone_event_only() {
        let req = invite("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/AVP 8 101 0 18\r\n");
        let resp = sip::parse(&answer_invite(&req, "tt", 5632, 5636, 1)).unwrap();
        assert_eq!(resp.code(), Some(200));
        assert_eq!(resp.header_values("via").len(), 2);
        assert_eq!(
            resp.header_values("record-route"),
            vec!["<sip:127.0.0.1:5650;lr>"]
        );
        assert_eq!(sip::tag_of(resp.header("to").unwrap()), Some("tt"));
        assert_eq!(resp.header("contact"), Some("<sip:1001@127.0.0.1:5632>"));
        let sdp = sip::parse_sdp(&resp.body).unwrap();
        assert_eq!(sdp.port, 5636);
        assert_eq!(sdp.fmts, vec![101, 0]);
        assert!(String::from_utf8_lossy(&resp.body).contains("a=fmtp:101 0-16"));
    }

    #[test]
    fn rejects_offer_without_pcmu() {
        let req = invite("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/AVP 8 101\r\n");
        let resp = sip::parse(&answer_invite(&req, "tt", 5632, 5636, 1)).unwrap();
        assert_eq!(resp.code(), Some(488));
        assert!(resp.body.is_empty());
    }
}
