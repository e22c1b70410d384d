//! What the configuration says about SIP and media.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One SIP profile: a set of listeners with one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileSettings {
    /// `internal`, `external`, ...: the second part of `sofia/PROFILE/...`.
    pub name: String,
    /// UDP and TCP listen address (IPv4 or IPv6; one address per profile,
    /// as in FreeSWITCH: a second family is a second profile).
    pub bind: SocketAddr,
    /// TLS listen address, if TLS is on.
    pub tls_bind: Option<SocketAddr>,
    /// TLS certificate chain (PEM). Needed with `tls_bind` by the time the
    /// profile starts (the switch fills in a generated one when the
    /// configuration names none).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that servers this profile connects to over
    /// TLS must chain to; `None`: the bundled web PKI roots.
    pub tls_ca: Option<PathBuf>,
    /// The dialplan context of calls arriving here.
    pub context: String,
    /// INVITEs need digest authentication.
    pub auth_calls: bool,
    /// REGISTERs are accepted (always with digest authentication).
    pub accept_register: bool,
}

impl ProfileSettings {
    /// FreeSWITCH's `internal` profile on loopback.
    pub fn internal() -> ProfileSettings {
        ProfileSettings {
            name: "internal".into(),
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
            tls_bind: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5061)),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            context: "default".into(),
            auth_calls: true,
            accept_register: true,
        }
    }

    /// FreeSWITCH's `external` profile on loopback.
    pub fn external() -> ProfileSettings {
        ProfileSettings {
            name: "external".into(),
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5080),
            tls_bind: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5081)),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            context: "public".into(),
            auth_calls: false,
            accept_register: false,
        }
    }
}

/// An outbound trunk: `sofia/gateway/NAME/NUMBER`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The gateway's name.
    pub name: String,
    /// The profile it sends from.
    pub profile: String,
    /// `host[:port]` of the carrier.
    pub proxy: String,
    /// `udp`, `tcp` or `tls` (verified with the profile's `tls_ca`).
    pub transport: String,
    /// Digest user name (and the From user when registering).
    pub username: Option<String>,
    /// Digest password.
    pub password: Option<String>,
    /// The domain in From/To of REGISTER, and the realm expected.
    pub realm: Option<String>,
    /// Register with the carrier.
    pub register: bool,
    /// Registration lifetime asked for.
    pub expires: Duration,
    /// OPTIONS ping interval; zero disables pings (always UP).
    pub ping: Duration,
    /// Consecutive unanswered pings before DOWN.
    pub ping_failures: u32,
}

/// RTP relay settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSettings {
    /// Address the RTP sockets bind, written into SDP.
    pub ip: IpAddr,
    /// Lowest RTP port (even).
    pub port_min: u16,
    /// Highest RTP port.
    pub port_max: u16,
    /// Media worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Hang up an answered call that has received no RTP or RTCP for this
    /// many seconds (MEDIA_TIMEOUT); 0 = never. Not counted while the phone
    /// has the call on hold.
    pub rtp_timeout_s: u32,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 16384,
            port_max: 32767,
            workers: 0,
            rtp_timeout_s: 300,
        }
    }
}

/// Everything SIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipSettings {
    /// User-Agent / Server header.
    pub user_agent: String,
    /// Profiles.
    pub profiles: Vec<ProfileSettings>,
    /// Gateways.
    pub gateways: Vec<GatewaySettings>,
    /// Nonce lifetime for digest challenges.
    pub nonce_ttl: Duration,
    /// Failed authentications from one source address in a minute before
    /// that source is answered 403 without a challenge for a minute.
    pub auth_failures_per_minute: u32,
    /// Default and maximum registration expiry.
    pub register_expires: (u32, u32),
    /// Shortest registration accepted (423 below it).
    pub register_min_expires: u32,
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            user_agent: "Dialtone".into(),
            profiles: vec![ProfileSettings::internal(), ProfileSettings::external()],
            gateways: Vec::new(),
            nonce_ttl: Duration::from_secs(300),
            auth_failures_per_minute: 20,
            register_expires: (3600, 7200),
            register_min_expires: 60,
        }
    }
}
