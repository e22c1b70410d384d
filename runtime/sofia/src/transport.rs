//! Transports: the thin tokio layer under a profile's SIP core.
//!
//! Each profile owns one UDP socket and one TCP listener on its `listen`
//! address (IPv4 or IPv6), and a TLS listener (rustls) on its `tls_listen`
//! address when TLS is on. Every framed stream message goes, parsed, to the
//! profile's core over one channel ([`Incoming`]); datagrams the core reads
//! itself ([`Transports::recv_datagram`]). The core answers through
//! [`Transports::send`]. Nothing here knows about
//! transactions, and the core knows nothing of TLS but [`Transport::Tls`].
//!
//! TCP and TLS connections are kept in one table keyed by transport and the
//! far end's address, so a response or a new request for a client that
//! registered over TCP or TLS goes back over the connection it opened (a
//! phone behind NAT cannot be dialled back; RFC 5626/5923 style reuse). A
//! request to a stream peer without a connection opens one; a new TLS
//! connection verifies the server's certificate ([`crate::tls`]) against
//! the name given with [`Transports::set_tls_name`] or else the address.
//! Stream keep-alive pings (CRLFCRLF) get their CRLF pong here; a stream
//! that loses framing is closed with a log line.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use dialtone_sip::message::{parse_datagram, Frame, Message, ParseError, StreamFramer};

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Whether the transport is reliable (no retransmissions).
    pub fn reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Via's transport token.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The `;transport=` URI parameter a Contact or Route needs for this
    /// transport (none for UDP, the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }

    /// Parses a `transport=` value.
    pub fn parse(s: &str) -> Option<Transport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }

    /// The port a URI without one means (RFC 3261 19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// Where a message came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Transport.
    pub transport: Transport,
    /// The far end's address.
    pub addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// What the transports hand to the core.
#[derive(Debug)]
pub enum Incoming {
    /// A message.
    Message(Message, Peer),
    /// A message that could not be read.
    Bad(ParseError, Peer),
}

struct Conn {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

/// A profile's TLS: the listener's address and certificate (when it
/// listens for TLS), and how servers it connects to are verified.
#[derive(Clone)]
pub struct TlsSetup {
    /// The TLS listen address and the listener's certificate and key.
    pub listen: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// Verification of servers for outbound connections.
    pub client: Arc<rustls::ClientConfig>,
}

/// The sockets of one profile.
pub struct Transports {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    tls_local: Option<SocketAddr>,
    connector: Option<TlsConnector>,
    tls_names: Mutex<HashMap<SocketAddr, String>>,
    conns: Mutex<HashMap<(Transport, SocketAddr), Conn>>,
    next_conn: AtomicU64,
    incoming: mpsc::Sender<Incoming>,
    me: std::sync::Weak<Transports>,
}

/// Kernel receive and send buffer asked for on a profile's UDP socket.
/// Linux's default (about 208 KiB) holds a few hundred small datagrams: at
/// 1000 calls/s that is tens of milliseconds of signalling, so one scheduling
/// hiccup drops requests and the peers retransmit after 500 ms. The kernel
/// caps the request at `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Binds the profile's UDP socket with [`UDP_BUFFER_BYTES`] of buffer.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use std::os::fd::AsRawFd;
    let std = std::net::UdpSocket::bind(addr)?;
    dialtone_media::set_socket_buffers(std.as_raw_fd(), UDP_BUFFER_BYTES);
    std.set_nonblocking(true)?;
    UdpSocket::from_std(std)
}

/// Queue depth of one connection's writer.
const CONN_QUEUE: usize = 256;
/// Idle stream connections are closed after this long without traffic.
const CONN_IDLE: Duration = Duration::from_secs(600);
/// Connecting, and a TLS handshake, must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Transports {
    /// Binds UDP and TCP on `addr`, TLS where `tls` says, and starts the
    /// stream read loops; the owner reads datagrams itself
    /// ([`Transports::recv_datagram`]). Without `tls`, requests to TLS
    /// targets fail.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<TlsSetup>,
        incoming: mpsc::Sender<Incoming>,
    ) -> std::io::Result<Arc<Transports>> {
        let udp = Arc::new(bind_udp(addr)?);
        let tcp = TcpListener::bind(addr).await?;
        let local = udp.local_addr()?;
        let tls_listener = match tls.as_ref().and_then(|t| t.listen.clone()) {
            Some((bind, server)) => Some((
                TcpListener::bind(bind).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("TLS listener {bind}: {e}"))
                })?,
                server,
            )),
            None => None,
        };
        let tls_local = match &tls_listener {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        let t = Arc::new_cyclic(|me| Transports {
            udp: udp.clone(),
            local,
            tls_local,
            connector: tls.as_ref().map(|t| TlsConnector::from(t.client.clone())),
            tls_names: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            incoming,
            me: me.clone(),
        });
        tokio::spawn(accept_loop(t.clone(), tcp, None));
        if let Some((l, server)) = tls_listener {
            tokio::spawn(accept_loop(t.clone(), l, Some(TlsAcceptor::from(server))));
        }
        Ok(t)
    }

    /// Waits until the UDP socket may have a datagram to read.
    pub async fn udp_readable(&self) -> std::io::Result<()> {
        self.udp.readable().await
    }

    /// Reads one waiting datagram without blocking: `None` when none is
    /// waiting, else the message (or why it could not be read), keep-alives
    /// skipped. The owner reads UDP in its own task: no reader task and no
    /// hand-over per datagram.
    pub fn recv_datagram(&self, buf: &mut [u8]) -> Option<Incoming> {
        loop {
            let (n, from) = match self.udp.try_recv_from(buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    // ICMP errors surface here on Linux; keep serving.
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            };
            let peer = Peer {
                transport: Transport::Udp,
                addr: from,
            };
            return Some(match parse_datagram(&buf[..n]) {
                Ok(Frame::KeepAlive { .. }) => continue,
                Ok(Frame::Message(m)) => Incoming::Message(m, peer),
                Err(e) => Incoming::Bad(e, peer),
            });
        }
    }

    /// The bound UDP/TCP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The bound TLS address, if TLS is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_local
    }

    /// The address written into Via and Contact for `t`: the TLS listener
    /// for TLS, the UDP/TCP one otherwise.
    pub fn local_addr_for(&self, t: Transport) -> SocketAddr {
        match t {
            Transport::Tls => self.tls_local.unwrap_or(self.local),
            _ => self.local,
        }
    }

    /// Open TCP and TLS connections.
    pub fn connections(&self) -> usize {
        self.conns.lock().len()
    }

    /// The name a new TLS connection to `addr` verifies the server
    /// certificate against (a gateway's or URI's host name). Without one,
    /// the certificate must name the IP address.
    pub fn set_tls_name(&self, addr: SocketAddr, name: &str) {
        self.tls_names.lock().insert(addr, name.to_string());
    }

    /// Sends a message. Never blocks: UDP uses a non-blocking send, TCP
    /// and TLS queue to the connection (opening one if needed). Errors are
    /// logged and returned for the transaction layer.
    pub fn send(&self, peer: Peer, msg: &Message) -> Result<(), String> {
        self.send_bytes(peer, msg.to_bytes())
    }

    /// Sends raw bytes (keep-alives, pre-serialized messages).
    pub fn send_bytes(&self, peer: Peer, bytes: Vec<u8>) -> Result<(), String> {
        if peer.transport == Transport::Udp {
            return match self.udp.try_send_to(&bytes, peer.addr) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The kernel buffer is full: hand the datagram to a task.
                    let udp = self.udp.clone();
                    tokio::spawn(async move {
                        let _ = udp.send_to(&bytes, peer.addr).await;
                    });
                    Ok(())
                }
                Err(e) => Err(format!("udp send to {}: {e}", peer.addr)),
            };
        }
        let tx = self
            .conns
            .lock()
            .get(&(peer.transport, peer.addr))
            .map(|c| c.tx.clone());
        if let Some(tx) = tx {
            return tx
                .try_send(bytes)
                .map_err(|e| format!("{} send to {}: {e}", peer.transport, peer.addr));
        }
        let me = self.me.upgrade().ok_or("transports gone")?;
        let connector =
            if peer.transport == Transport::Tls {
                Some(self.connector.clone().ok_or_else(|| {
                    format!("tls to {}: no TLS client on this profile", peer.addr)
                })?)
            } else {
                None
            };
        let name = self.tls_names.lock().get(&peer.addr).cloned();
        tokio::spawn(async move {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let stream = TcpStream::connect(peer.addr)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                match connector {
                    None => Ok::<_, String>(me.clone().adopt(stream, peer)),
                    Some(c) => {
                        let server = match &name {
                            Some(n) => ServerName::try_from(n.clone())
                                .map_err(|e| format!("bad TLS server name {n}: {e}"))?,
                            None => ServerName::IpAddress(peer.addr.ip().into()),
                        };
                        let tls = c
                            .connect(server, stream)
                            .await
                            .map_err(|e| format!("TLS handshake: {e}"))?;
                        Ok(me.clone().adopt(tls, peer))
                    }
                }
            })
            .await;
            match connected {
                Ok(Ok(tx)) => {
                    let _ = tx.send(bytes).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "connect failed")
                }
                Err(_) => tracing::warn!(%peer, "connect timed out"),
            }
        });
        Ok(())
    }

    /// Registers a connection and starts its reader and writer.
    fn adopt<S>(self: Arc<Self>, stream: S, peer: Peer) -> mpsc::Sender<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
        let key = (peer.transport, peer.addr);
        self.conns.lock().insert(key, Conn { id, tx: tx.clone() });
        let (mut reader, mut writer) = tokio::io::split(stream);
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let pong = tx.clone();
        tokio::spawn(async move {
            let mut framer = StreamFramer::new();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match tokio::time::timeout(CONN_IDLE, reader.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.next_frame() {
                        Ok(None) => break,
                        Ok(Some(Frame::KeepAlive { ping })) => {
                            if ping {
                                let _ = pong.try_send(b"\r\n".to_vec());
                            }
                        }
                        Ok(Some(Frame::Message(m))) => {
                            if me.incoming.send(Incoming::Message(m, peer)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%peer, error = %e.reason, "closing a stream connection that lost SIP framing");
                            let _ = me.incoming.send(Incoming::Bad(e, peer)).await;
                            me.forget(key, id);
                            return;
                        }
                    }
                }
            }
            me.forget(key, id);
        });
        tx
    }

    fn forget(&self, key: (Transport, SocketAddr), id: u64) {
        let mut conns = self.conns.lock();
        if conns.get(&key).is_some_and(|c| c.id == id) {
            conns.remove(&key);
        }
    }
}

/// Accepts TCP connections, or TLS ones when `tls` is given (each
/// handshake in its own task, bounded in time).
async fn accept_loop(t: Arc<Transports>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => {
                        t.clone().adopt(
                            stream,
                            Peer {
                                transport: Transport::Tcp,
                                addr: remote,
                            },
                        );
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let t = t.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => {
                                    t.adopt(
                                        s,
                                        Peer {
                                            transport: Transport::Tls,
                                            addr: remote,
                                        },
                                    );
                                }
                                Ok(Err(e)) => {
                                    tracing::info!(peer = %remote, error = %e, "TLS handshake failed")
                                }
                                Err(_) => {
                                    tracing::info!(peer = %remote, "TLS handshake timed out")
                                }
                            }
                        });
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_sip::message::{Method, Uri};
    use std::path::PathBuf;

    fn sysctl(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_udp_socket_gets_the_buffer_it_asks_for_up_to_the_kernel_cap() {
        use std::os::fd::AsRawFd;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let udp = rt.block_on(async { bind_udp("127.0.0.1:0".parse().unwrap()).unwrap() });
        // Linux doubles what it grants (bookkeeping), and caps the request
        // at rmem_max / wmem_max.
        let (rcv, snd) = dialtone_media::socket_buffers(udp.as_raw_fd());
        for (name, got, cap) in [
            ("SO_RCVBUF", rcv, sysctl("rmem_max")),
            ("SO_SNDBUF", snd, sysctl("wmem_max")),
        ] {
            let want = 2 * UDP_BUFFER_BYTES.min(cap);
            let got = got.expect("getsockopt");
            assert!(got >= want, "{name}: {got} bytes, want {want}");
        }
    }

    /// A self-signed certificate for 127.0.0.1 and localhost: (cert, key).
    fn certificate(dir: &std::path::Path) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let pair = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&pair).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, pair.serialize_pem()).unwrap();
        (c, k)
    }

    fn options(n: u32) -> Message {
        let mut m = Message::request(Method::Options, Uri::parse("sip:127.0.0.1").unwrap());
        m.headers
            .push("Via", format!("SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bK{n}"));
        m.headers.push("From", "<sip:a@127.0.0.1>;tag=1");
        m.headers.push("To", "<sip:b@127.0.0.1>");
        m.headers.push("Call-ID", format!("c{n}"));
        m.headers.push("CSeq", format!("{n} OPTIONS"));
        m.headers.push("Max-Forwards", "70");
        m
    }

    async fn endpoint(
        listen: Option<Arc<rustls::ServerConfig>>,
        client: Arc<rustls::ClientConfig>,
    ) -> (Arc<Transports>, mpsc::Receiver<Incoming>) {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let t = Transports::bind(
            any,
            Some(TlsSetup {
                listen: listen.map(|s| (any, s)),
                client,
            }),
            tx,
        )
        .await
        .unwrap();
        (t, rx)
    }

    async fn next(rx: &mut mpsc::Receiver<Incoming>, within: Duration) -> Option<(Message, Peer)> {
        match tokio::time::timeout(within, rx.recv()).await {
            Ok(Some(Incoming::Message(m, p))) => Some((m, p)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn tls_requests_verify_the_server_and_answers_reuse_the_connection() {
        let dir = std::env::temp_dir().join(format!("dialtone-tls-t-{}", std::process::id()));
        let (cert, key) = certificate(&dir);
        let server_cfg = crate::tls::server_config(&cert, &key).unwrap();
        let trusting = crate::tls::client_config(Some(&cert)).unwrap();
        let (server, mut server_rx) = endpoint(Some(server_cfg), trusting.clone()).await;
        let tls_addr = server.tls_addr().unwrap();
        let to_server = Peer {
            transport: Transport::Tls,
            addr: tls_addr,
        };

        // A client that trusts the certificate: the request arrives over
        // TLS, and the answer goes back down the same connection.
        let (client, mut client_rx) = endpoint(None, trusting.clone()).await;
        client.send(to_server, &options(1)).unwrap();
        let (m, from) = next(&mut server_rx, Duration::from_secs(5))
            .await
            .expect("request over TLS");
        assert_eq!(from.transport, Transport::Tls);
        assert_eq!(m.call_id(), Some("c1"));
        let answer = Message::response_to(&m, 200, None, Some("t"));
        server.send(from, &answer).unwrap();
        let (r, via) = next(&mut client_rx, Duration::from_secs(5))
            .await
            .expect("answer on the client's connection");
        assert_eq!(r.code(), Some(200));
        assert_eq!(via, to_server);
        // A second request reuses the connection.
        client.send(to_server, &options(2)).unwrap();
        let (_, from2) = next(&mut server_rx, Duration::from_secs(5)).await.unwrap();
        assert_eq!(from2, from);
        assert_eq!((client.connections(), server.connections()), (1, 1));

        // The web PKI roots do not know a self-signed certificate: no
        // connection, nothing delivered.
        let (stranger, _rx) = endpoint(None, crate::tls::client_config(None).unwrap()).await;
        stranger.send(to_server, &options(3)).unwrap();
        assert!(next(&mut server_rx, Duration::from_millis(700))
            .await
            .is_none());
        assert_eq!(stranger.connections(), 0);

        // The right CA with the wrong name fails too; the right name works.
        let (named, _rx) = endpoint(None, trusting.clone()).await;
        named.set_tls_name(tls_addr, "wrong.example");
        named.send(to_server, &options(4)).unwrap();
        assert!(next(&mut server_rx, Duration::from_millis(700))
            .await
            .is_none());
        named.set_tls_name(tls_addr, "localhost");
        named.send(to_server, &options(5)).unwrap();
        let (m, _) = next(&mut server_rx, Duration::from_secs(5)).await.unwrap();
        assert_eq!(m.call_id(), Some("c5"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
