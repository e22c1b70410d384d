//! Gateways: outbound trunks, their registration and their health.
//!
//! Each gateway lives in the core of the profile it sends from. When
//! `register = true` it keeps a registration with the carrier (answering
//! 401/407 with the gateway's credentials, refreshing at half the granted
//! lifetime, retrying every 30 s after a failure). When `ping_s` is set it
//! sends OPTIONS every `ping_s` seconds: any answer means UP, and
//! `ping_failures` pings in a row left unanswered by the next ping mean
//! DOWN. A DOWN gateway fails its legs at once with GATEWAY_DOWN (503 to a
//! SIP caller), so `|` moves on to the next gateway. State changes are
//! logged and kept in [`GatewayStatus`] for the dialler.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use dialtone_sip::auth;
use dialtone_sip::message::{Message, Method, Uri};
use dialtone_sip::transaction::TxId;

use crate::settings::GatewaySettings;
use crate::transport::Peer;

/// What the dialler sees of every gateway.
#[derive(Default)]
pub struct GatewayStatus {
    up: Mutex<HashMap<String, bool>>,
}

impl GatewayStatus {
    /// Whether `name` may take calls (unknown gateways count as up: the
    /// dialler refuses them as INVALID_GATEWAY before asking).
    pub fn is_up(&self, name: &str) -> bool {
        self.up.lock().get(name).copied().unwrap_or(true)
    }

    /// Every gateway that has a state yet, by name.
    pub fn all(&self) -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = self
            .up
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort();
        v
    }

    /// Forgets gateways for which `keep` is false (removed by a reload).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.up.lock().retain(|k, _| keep(k));
    }

    fn set(&self, name: &str, up: bool) {
        self.up.lock().insert(name.to_string(), up);
    }
}

/// What a gateway request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GwRequest {
    /// A REGISTER.
    Register,
    /// An OPTIONS ping.
    Ping,
}

/// One gateway's state in its profile core.
pub struct Gateway {
    /// Its settings.
    pub settings: GatewaySettings,
    /// Where the carrier is.
    pub peer: Peer,
    /// Registered now.
    pub registered: bool,
    up: bool,
    unanswered: u32,
    ping_out: bool,
    call_id: String,
    cseq: u32,
    auth_tries: u32,
    next_register: Option<Instant>,
    next_ping: Option<Instant>,
}

impl Gateway {
    /// A gateway about to start.
    pub fn new(settings: GatewaySettings, peer: Peer, now: Instant, call_id: String) -> Gateway {
        let next_register = settings.register.then_some(now);
        let next_ping = (!settings.ping.is_zero()).then_some(now);
        Gateway {
            settings,
            peer,
            registered: false,
            up: true,
            unanswered: 0,
            ping_out: false,
            call_id,
            cseq: 0,
            auth_tries: 0,
            next_register,
            next_ping,
        }
    }

    /// The next time this gateway has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.next_register, self.next_ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn domain(&self) -> String {
        self.settings
            .realm
            .clone()
            .unwrap_or_else(|| self.settings.proxy.clone())
    }

    /// Requests due at `now` (the caller adds Via and sends them).
    pub fn due(
        &mut self,
        now: Instant,
        status: &GatewayStatus,
        local: &str,
    ) -> Vec<(GwRequest, Message)> {
        let mut out = Vec::new();
        if self.next_register.is_some_and(|t| t <= now) {
            self.next_register = Some(now + Duration::from_secs(30));
            self.auth_tries = 0;
            out.push((GwRequest::Register, self.register(None, local)));
        }
        if self.next_ping.is_some_and(|t| t <= now) {
            self.next_ping = Some(now + self.settings.ping);
            if self.ping_out {
                self.unanswered += 1;
                if self.unanswered >= self.settings.ping_failures && self.up {
                    self.up = false;
                    status.set(&self.settings.name, false);
                    tracing::warn!(gateway = %self.settings.name, "gateway DOWN: OPTIONS unanswered");
                }
            }
            self.ping_out = true;
            out.push((GwRequest::Ping, self.options(local)));
        }
        out
    }

    fn user(&self) -> String {
        self.settings
            .username
            .clone()
            .unwrap_or_else(|| "dialtone".into())
    }

    fn register(&mut self, authorization: Option<(&str, String)>, local: &str) -> Message {
        self.cseq += 1;
        let domain = self.domain();
        let uri = Uri::parse(&format!("sip:{domain}")).unwrap_or_else(|_| {
            Uri::sip(
                None,
                dialtone_sip::message::Host::from(self.peer.addr.ip()),
                None,
            )
        });
        let mut m = Message::request(Method::Register, uri);
        let aor = format!("<sip:{}@{}>", self.user(), domain);
        m.headers.push("Max-Forwards", "70");
        m.headers.push(
            "From",
            format!("{aor};tag={:x}", self.cseq.wrapping_mul(2_654_435_761)),
        );
        m.headers.push("To", aor);
        m.headers.push("Call-ID", self.call_id.clone());
        m.headers.push("CSeq", format!("{} REGISTER", self.cseq));
        // Over TCP or TLS the Contact says so, or the carrier would send
        // its requests (INVITEs to this registration) over UDP.
        m.headers.push(
            "Contact",
            format!(
                "<sip:{}@{}{}>",
                self.user(),
                local,
                self.peer.transport.uri_param()
            ),
        );
        m.headers
            .push("Expires", self.settings.expires.as_secs().to_string());
        if let Some((h, v)) = authorization {
            m.headers.push(h, v);
        }
        m
    }

    fn options(&mut self, local: &str) -> Message {
        let uri = Uri::parse(&format!("sip:{}", self.settings.proxy)).unwrap_or_else(|_| {
            Uri::sip(
                None,
                dialtone_sip::message::Host::from(self.peer.addr.ip()),
                Some(self.peer.addr.port()),
            )
        });
        let mut m = Message::request(Method::Options, uri.clone());
        m.headers.push("Max-Forwards", "70");
        m.headers.push(
            "From",
            format!("<sip:dialtone@{local}>;tag=ping{:x}", self.cseq),
        );
        m.headers.push("To", format!("<{uri}>"));
        // A Call-ID per ping, as most user agents do.
        self.cseq += 1;
        m.headers
            .push("Call-ID", format!("ping{}-{}", self.cseq, self.call_id));
        m.headers.push("CSeq", format!("{} OPTIONS", self.cseq));
        m
    }

    /// A final response to one of its requests. May return a new REGISTER
    /// (with credentials) to send.
    pub fn on_response(
        &mut self,
        kind: GwRequest,
        resp: &Message,
        now: Instant,
        status: &GatewayStatus,
        local: &str,
    ) -> Option<Message> {
        let code = resp.code().unwrap_or(0);
        match kind {
            GwRequest::Ping => {
                self.ping_out = false;
                self.unanswered = 0;
                if !self.up {
                    self.up = true;
                    status.set(&self.settings.name, true);
                    tracing::info!(gateway = %self.settings.name, "gateway UP");
                }
                None
            }
            GwRequest::Register => match code {
                200..=299 => {
                    let granted = resp
                        .contacts()
                        .iter()
                        .find_map(|c| {
                            c.param("expires")
                                .flatten()
                                .and_then(|e| e.parse::<u64>().ok())
                        })
                        .or_else(|| resp.expires().map(u64::from))
                        .unwrap_or(self.settings.expires.as_secs())
                        .max(2);
                    if !self.registered {
                        tracing::info!(gateway = %self.settings.name, expires = granted, "gateway registered");
                    }
                    self.registered = true;
                    self.next_register = Some(now + Duration::from_secs(granted / 2));
                    None
                }
                401 | 407 if self.auth_tries < 2 => {
                    self.auth_tries += 1;
                    let hdr = if code == 401 {
                        "WWW-Authenticate"
                    } else {
                        "Proxy-Authenticate"
                    };
                    let ch = auth::Challenge::parse(resp.headers.get(hdr)?).ok()?;
                    let user = self.settings.username.clone()?;
                    let pass = self.settings.password.clone().unwrap_or_default();
                    let uri = format!("sip:{}", self.domain());
                    let cnonce = auth::generate_cnonce().ok()?;
                    let creds = auth::respond(
                        &ch,
                        &auth::ClientRequest {
                            username: &user,
                            password: &pass,
                            method: "REGISTER",
                            uri: &uri,
                            body: b"",
                            cnonce: &cnonce,
                            nc: 1,
                        },
                    )
                    .ok()?;
                    let h = if code == 401 {
                        "Authorization"
                    } else {
                        "Proxy-Authorization"
                    };
                    Some(self.register(Some((h, creds.to_string())), local))
                }
                _ => {
                    if self.registered || self.auth_tries > 0 {
                        tracing::warn!(gateway = %self.settings.name, code, "gateway registration failed");
                    }
                    self.registered = false;
                    None
                }
            },
        }
    }

    /// A request of its timed out or could not be sent.
    pub fn on_failure(&mut self, kind: GwRequest) {
        if kind == GwRequest::Register {
            self.registered = false;
        }
    }
}

/// Gateway transactions in flight.
pub type GwTxs = HashMap<TxId, (usize, GwRequest)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;

    fn gateway(transport: Transport) -> Gateway {
        let settings = GatewaySettings {
            name: "carrier".into(),
            profile: "external".into(),
            proxy: "127.0.0.1:5090".into(),
            transport: transport.via_name().to_ascii_lowercase(),
            username: Some("trunk".into()),
            password: Some("secret".into()),
            realm: Some("carrier.example".into()),
            register: true,
            expires: Duration::from_secs(600),
            ping: Duration::ZERO,
            ping_failures: 2,
        };
        let peer = Peer {
            transport,
            addr: "127.0.0.1:5090".parse().unwrap(),
        };
        Gateway::new(settings, peer, Instant::now(), "gw-call".into())
    }

    #[test]
    fn register_contact_names_a_reliable_transport() {
        for (t, local, want) in [
            (
                Transport::Udp,
                "127.0.0.1:5080",
                "<sip:trunk@127.0.0.1:5080>",
            ),
            (
                Transport::Tcp,
                "127.0.0.1:5080",
                "<sip:trunk@127.0.0.1:5080;transport=tcp>",
            ),
            (
                Transport::Tls,
                "127.0.0.1:5081",
                "<sip:trunk@127.0.0.1:5081;transport=tls>",
            ),
        ] {
            let mut gw = gateway(t);
            let m = gw.register(None, local);
            assert_eq!(m.headers.get("Contact"), Some(want), "{t:?}");
            assert_eq!(m.headers.get("Expires"), Some("600"));
            assert_eq!(m.headers.get("To"), Some("<sip:trunk@carrier.example>"));
        }
    }
}
