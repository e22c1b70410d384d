//! The SIP endpoint, `sofia/`, named after FreeSWITCH's module.
//!
//! # Where things are
//!
//! - [`ua`]: a profile's SIP core, where a SIP call enters the switch and
//!   where the core's requests for a SIP leg are carried out;
//! - [`transport`]: UDP, TCP and TLS sockets (IPv4 or IPv6), stream
//!   framing, connection reuse;
//! - [`tls`]: certificates and keys into rustls configurations;
//! - [`location`]: registrations, persisted in the state directory;
//! - [`settings`]: what the configuration says.
//!
//! [`Sofia`] is the [`Endpoint`] the core dials through: `sofia/PROFILE/
//! USER@HOST[:PORT][;transport=...]`, `sofia/PROFILE/sip:URI` (what
//! `sofia_contact` returns), `sofia/PROFILE/USER` (the user's newest
//! registration) and `sofia/gateway/NAME/NUMBER`.
//!
//! # Media
//!
//! Each leg gets a relay port from the media engine; the SDP each phone
//! sees points at the switch. A leg dialled on behalf of another (the
//! B-leg of a bridge) gets its offer from its originator's SDP and, once it
//! has an answer, its relay is bridged to the originator's ([`Shared`]).

#![deny(missing_docs)]

pub mod gateway;
pub mod location;
pub mod settings;
pub mod tls;
pub mod transport;
pub mod ua;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use dialtone_core::endpoint::{Dialed, Endpoint, OutgoingRequest};
use dialtone_core::registrations::unix_now;
use dialtone_core::routing::BoxFuture;
use dialtone_core::switch::Switch;
use dialtone_core::HangupCause;
use dialtone_media::{LegHandle, MediaEngine};
use dialtone_sip::message::{Scheme, Uri};
use dialtone_sip::sdp::SessionDescription;

use crate::location::Location;
use crate::settings::SipSettings;
use crate::transport::{Peer, Transport};
use crate::ua::{Cmd, ProfileCore, Target};

/// What one leg's phone said about media, and its relay port.
pub struct LegSdp {
    /// The phone's SDP (offer on inbound legs, answer on outbound legs),
    /// shared: the relay's own offers and answers are built from it.
    pub remote: Option<Arc<SessionDescription>>,
    /// The leg's relay port.
    pub media: Option<Arc<LegHandle>>,
    /// The profile and call that hold the leg: where requests its bridged
    /// peer's phone sends in the dialog (INFO, MESSAGE) are relayed.
    pub call: Option<(mpsc::UnboundedSender<Cmd>, u64)>,
}

/// State every profile shares.
pub struct Shared {
    /// SIP settings.
    pub sip: SipSettings,
    /// The tenant of requests that name no configured domain.
    pub default_domain: String,
    /// Retry-After on 503.
    pub retry_after: u32,
    location: OnceLock<Arc<Location>>,
    media: OnceLock<MediaEngine>,
    /// The address written into SDP.
    pub media_ip: IpAddr,
    /// MEDIA_TIMEOUT after this long without RTP on an answered call.
    pub rtp_timeout: Option<std::time::Duration>,
    /// Every SIP leg's SDP and relay, by channel UUID.
    pub legs: Mutex<HashMap<String, LegSdp>>,
    /// B-leg UUID -> its originator's UUID.
    originator_of: Mutex<HashMap<String, String>>,
    /// A-leg UUID -> the B-leg whose media it gets.
    peer_of: Mutex<HashMap<String, String>>,
    switch: OnceLock<Weak<Switch>>,
    /// Live transactions and calls per profile, for leak checks and the
    /// load log line ([`Sofia::load`]).
    pub load: Mutex<HashMap<String, Arc<ProfileLoad>>>,
    /// UP/DOWN of every gateway.
    pub gateway_status: gateway::GatewayStatus,
    /// The gateways in force (replaced by [`Sofia::reload`]).
    gateways: Mutex<Arc<Vec<settings::GatewaySettings>>>,
}

/// One profile's live transactions and calls, written by its task after
/// every step (two relaxed stores, no lock on the signalling path).
#[derive(Default)]
pub struct ProfileLoad {
    /// Live SIP transactions.
    pub transactions: AtomicU64,
    /// Live calls (dialogs and INVITEs in progress).
    pub calls: AtomicU64,
}

impl Shared {
    /// Registrations. Panics before [`Sofia::start`].
    pub fn location(&self) -> &Arc<Location> {
        self.location.get().expect("sofia started")
    }

    /// The RTP relay. Panics before [`Sofia::start`].
    pub fn media(&self) -> &MediaEngine {
        self.media.get().expect("sofia started")
    }

    /// The core. Panics if used before [`Sofia::start`], which sets it.
    pub fn switch(&self) -> Arc<Switch> {
        self.switch
            .get()
            .and_then(Weak::upgrade)
            .expect("the switch outlives its endpoints")
    }

    /// The phone's SDP on leg `uuid`.
    pub fn remote_sdp(&self, uuid: &str) -> Option<Arc<SessionDescription>> {
        self.legs.lock().get(uuid).and_then(|l| l.remote.clone())
    }

    /// The relay port of leg `uuid`.
    pub fn media_of(&self, uuid: &str) -> Option<Arc<LegHandle>> {
        self.legs.lock().get(uuid).and_then(|l| l.media.clone())
    }

    /// The SDP of the leg bridged to `uuid`, if it has one yet.
    pub fn peer_sdp(&self, uuid: &str) -> Option<Arc<SessionDescription>> {
        let peer = self.peer_of.lock().get(uuid).cloned()?;
        self.remote_sdp(&peer)
    }

    /// Records that `b` was dialled for `a`.
    pub fn link(&self, a: &str, b: &str) {
        self.originator_of
            .lock()
            .insert(b.to_string(), a.to_string());
    }

    /// `b` has the far end's SDP: its originator's media now comes from it
    /// and the two relays are joined.
    pub fn bridge_media(&self, b: &str) {
        let Some(a) = self.originator_of.lock().get(b).cloned() else {
            return;
        };
        self.peer_of.lock().insert(a.clone(), b.to_string());
        if let (Some(ma), Some(mb)) = (self.media_of(&a), self.media_of(b)) {
            if let Err(e) = self.media().bridge(&ma, &mb) {
                tracing::warn!(error = %e, "could not bridge media");
            }
        }
    }

    /// The SIP call of the leg bridged to `uuid` (the leg whose media it
    /// gets, or the originator that gets its media), if that leg is a SIP
    /// leg.
    pub fn bridged_call(&self, uuid: &str) -> Option<(mpsc::UnboundedSender<Cmd>, u64)> {
        let peer = self.peer_of.lock().get(uuid).cloned();
        let other = match peer {
            Some(b) => b,
            None => {
                let a = self.originator_of.lock().get(uuid).cloned()?;
                let bridged = self.peer_of.lock().get(&a).is_some_and(|b| b == uuid);
                bridged.then_some(a)?
            }
        };
        self.legs.lock().get(&other).and_then(|l| l.call.clone())
    }

    /// Drops a leg's SDP, relay port and links.
    pub fn forget_leg(&self, uuid: &str) {
        self.legs.lock().remove(uuid);
        let originator = self.originator_of.lock().remove(uuid);
        let mut peers = self.peer_of.lock();
        peers.remove(uuid);
        // `peer_of[a] = b` is only ever set for `a = originator_of[b]`.
        if let Some(a) = originator {
            if peers.get(&a).is_some_and(|b| b == uuid) {
                peers.remove(&a);
            }
        }
    }

    /// Works out where `PROFILE/...` or `gateway/NAME/NUMBER` goes.
    async fn target(&self, req: &OutgoingRequest) -> Result<(String, Target), HangupCause> {
        let data = req.data.trim();
        let (first, rest) = data.split_once('/').ok_or(HangupCause::InvalidUrl)?;
        if first == "gateway" {
            let (name, number) = rest.split_once('/').ok_or(HangupCause::InvalidUrl)?;
            let gateways = self.gateways.lock().clone();
            let gw = gateways
                .iter()
                .find(|g| g.name == name)
                .cloned()
                .ok_or(HangupCause::InvalidGateway)?;
            if !self.gateway_status.is_up(name) {
                return Err(HangupCause::GatewayDown);
            }
            let (transport, addr) = resolve(&gw.proxy, &gw.transport).await?;
            let uri = Uri::parse(&format!("sip:{number}@{}", gw.proxy))
                .map_err(|_| HangupCause::InvalidUrl)?;
            let credentials = gw.username.clone().zip(gw.password.clone());
            return Ok((
                gw.profile.clone(),
                Target {
                    uri,
                    peer: Peer { transport, addr },
                    credentials,
                },
            ));
        }
        let profile = first.to_string();
        let now = unix_now();
        let location = self.location();
        let uri_text = if rest.starts_with("sip:") || rest.starts_with("sips:") {
            rest.to_string()
        } else if rest.contains('@') {
            format!("sip:{rest}")
        } else {
            // A bare user: the newest registration in the tenant.
            let b = location
                .of_user(&req.tenant, rest, now)
                .into_iter()
                .find(|b| b.profile == profile)
                .ok_or(HangupCause::UserNotRegistered)?;
            let uri = Uri::parse(&b.contact).map_err(|_| HangupCause::InvalidUrl)?;
            return Ok((
                profile,
                Target {
                    uri,
                    peer: Peer {
                        transport: b.transport(),
                        addr: b.source,
                    },
                    credentials: None,
                },
            ));
        };
        let uri = Uri::parse(&uri_text).map_err(|_| HangupCause::InvalidUrl)?;
        // A registered contact is reached where the REGISTER came from
        // (NAT), over the transport it came on.
        if let Some(b) = location.by_contact(&uri.to_string(), now) {
            return Ok((
                profile,
                Target {
                    uri,
                    peer: Peer {
                        transport: b.transport(),
                        addr: b.source,
                    },
                    credentials: None,
                },
            ));
        }
        // `sips:` means TLS (RFC 3261 26.2.2); so does `;transport=tls`.
        let transport = uri.transport().unwrap_or_else(|| {
            if uri.scheme == Scheme::Sips {
                "tls".into()
            } else {
                "udp".into()
            }
        });
        let t = Transport::parse(&transport).ok_or(HangupCause::InvalidUrl)?;
        // Host's Display brackets IPv6.
        let hostport = format!("{}:{}", uri.host, uri.port.unwrap_or(t.default_port()));
        let (transport, addr) = resolve(&hostport, &transport).await?;
        Ok((
            profile,
            Target {
                uri,
                peer: Peer { transport, addr },
                credentials: None,
            },
        ))
    }
}

/// The `sofia` endpoint.
pub struct Sofia {
    shared: Arc<Shared>,
    profiles: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Cmd>>>>,
}

impl Sofia {
    /// The endpoint, before its profiles start.
    pub fn new(
        sip: SipSettings,
        default_domain: String,
        retry_after: u32,
        media: &settings::MediaSettings,
    ) -> Arc<Sofia> {
        Arc::new(Sofia {
            shared: Arc::new(Shared {
                default_domain,
                retry_after,
                location: OnceLock::new(),
                media: OnceLock::new(),
                media_ip: media.ip,
                rtp_timeout: (media.rtp_timeout_s > 0)
                    .then(|| std::time::Duration::from_secs(media.rtp_timeout_s as u64)),
                legs: Mutex::new(HashMap::new()),
                originator_of: Mutex::new(HashMap::new()),
                peer_of: Mutex::new(HashMap::new()),
                switch: OnceLock::new(),
                load: Mutex::new(HashMap::new()),
                gateway_status: gateway::GatewayStatus::default(),
                gateways: Mutex::new(Arc::new(sip.gateways.clone())),
                sip,
            }),
            profiles: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Opens the location database, starts the media engine, binds every
    /// profile and starts serving.
    pub async fn start(
        &self,
        switch: &Arc<Switch>,
        location: Arc<Location>,
        media: MediaEngine,
    ) -> anyhow::Result<()> {
        let _ = self.shared.switch.set(Arc::downgrade(switch));
        let _ = self.shared.location.set(location);
        let _ = self.shared.media.set(media);
        for p in self.shared.sip.profiles.clone() {
            let name = p.name.clone();
            let tx = ProfileCore::start(p, self.shared.clone()).await?;
            self.profiles.lock().insert(name, tx);
        }
        Ok(())
    }

    /// Shared state (tests and metrics).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The SIP settings the profiles run with.
    pub fn settings(&self) -> &SipSettings {
        &self.shared.sip
    }

    /// The gateways in force.
    pub fn gateways(&self) -> Arc<Vec<settings::GatewaySettings>> {
        self.shared.gateways.lock().clone()
    }

    /// Applies a new SIP configuration to the running profiles: gateways
    /// added, changed (restarted: registration and pings from scratch) or
    /// removed; each profile's context, auth and registrar settings. A
    /// profile's addresses and certificates, and profiles added or removed,
    /// take effect at the next start: each such difference is returned as
    /// a warning. Gateways whose proxy does not resolve are left out (and
    /// named in the warnings).
    pub async fn reload(&self, sip: &SipSettings) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut resolved = Vec::new();
        for g in &sip.gateways {
            match resolve(&g.proxy, &g.transport).await {
                Ok((transport, addr)) => resolved.push((g.clone(), Peer { transport, addr })),
                Err(cause) => warnings.push(format!(
                    "gateway {}: proxy {} does not resolve ({cause})",
                    g.name, g.proxy
                )),
            }
        }
        *self.shared.gateways.lock() = Arc::new(sip.gateways.clone());
        self.shared
            .gateway_status
            .retain(|name| sip.gateways.iter().any(|g| g.name == name));
        let running: Vec<(String, mpsc::UnboundedSender<Cmd>)> = self
            .profiles
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, tx) in &running {
            let settings = sip.profiles.iter().find(|p| &p.name == name).cloned();
            if settings.is_none() {
                warnings.push(format!(
                    "profile {name} is no longer configured: it stops at the next start"
                ));
            }
            let gateways = resolved
                .iter()
                .filter(|(g, _)| &g.profile == name)
                .cloned()
                .collect();
            let _ = tx.send(Cmd::Reload(Box::new(ua::Reload { settings, gateways })));
        }
        for p in &sip.profiles {
            if !running.iter().any(|(n, _)| n == &p.name) {
                warnings.push(format!(
                    "profile {} is new: it starts at the next start",
                    p.name
                ));
            }
            if let Some(old) = self.shared.sip.profiles.iter().find(|o| o.name == p.name) {
                if old.bind != p.bind
                    || old.tls_bind != p.tls_bind
                    || old.tls_cert != p.tls_cert
                    || old.tls_key != p.tls_key
                    || old.tls_ca != p.tls_ca
                {
                    warnings.push(format!(
                        "profile {}: addresses and certificates take effect at the next start",
                        p.name
                    ));
                }
            }
        }
        warnings
    }

    /// UP/DOWN of each gateway.
    pub fn gateways_up(&self) -> Vec<(String, bool)> {
        self.shared.gateway_status.all()
    }

    /// The location service, once started.
    pub fn location(&self) -> Option<&Arc<Location>> {
        self.shared.location.get()
    }

    /// Live SIP legs (leak checks).
    pub fn legs(&self) -> usize {
        self.shared.legs.lock().len()
    }

    /// Live SIP transactions and calls, over every profile.
    pub fn load(&self) -> (u64, u64) {
        self.shared.load.lock().values().fold((0, 0), |(t, c), l| {
            (
                t + l.transactions.load(Ordering::Relaxed),
                c + l.calls.load(Ordering::Relaxed),
            )
        })
    }

    /// RTP ports in use (leak checks).
    pub fn rtp_ports_in_use(&self) -> usize {
        self.shared.media.get().map_or(0, |m| m.ports_in_use())
    }

    /// Closes released RTP ports parked too long for reuse (a periodic
    /// tick calls it; see `dialtone_media::ports`).
    pub fn trim_parked_rtp(&self) {
        if let Some(m) = self.shared.media.get() {
            m.trim_parked();
        }
    }
}

pub(crate) async fn resolve(
    hostport: &str,
    transport: &str,
) -> Result<(Transport, SocketAddr), HangupCause> {
    let transport = Transport::parse(transport).ok_or(HangupCause::InvalidUrl)?;
    // `host`, `host:port`, `[v6]`, `[v6]:port`; no port: the transport's.
    let has_port = match hostport.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (h.ends_with(']') || !h.contains(':')),
        None => false,
    };
    let hostport = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", transport.default_port())
    };
    if let Ok(a) = hostport.parse::<SocketAddr>() {
        return Ok((transport, a));
    }
    let found = match tokio::net::lookup_host(hostport.as_str()).await {
        Ok(mut it) => it.next(),
        Err(_) => None,
    };
    found
        .map(|a| (transport, a))
        .ok_or(HangupCause::NoRouteDestination)
}

impl Endpoint for Sofia {
    fn name(&self) -> &'static str {
        "sofia"
    }

    fn dial(
        &self,
        _switch: Arc<Switch>,
        request: Arc<OutgoingRequest>,
    ) -> BoxFuture<'static, Result<Dialed, HangupCause>> {
        // The future must be 'static: it holds the shared state and the
        // profile table, not `self`.
        let shared = self.shared.clone();
        let profiles = self.profiles.clone();
        let started = shared.location.get().is_some() && shared.media.get().is_some();
        Box::pin(async move {
            if !started {
                // Loaded but never started (a switch built for tests or the
                // CLI): no sockets to send from.
                return Err(HangupCause::NetworkOutOfOrder);
            }
            let (profile, target) = shared.target(&request).await?;
            let cmds = profiles
                .lock()
                .get(&profile)
                .cloned()
                .ok_or(HangupCause::InvalidUrl)?;
            let (tx, rx) = oneshot::channel();
            cmds.send(Cmd::Dial(request, target, tx))
                .map_err(|_| HangupCause::NetworkOutOfOrder)?;
            rx.await.map_err(|_| HangupCause::NetworkOutOfOrder)?
        })
    }
}
