//! Transports: the thin tokio layer under a profile's SIP core.
//!
//! Each profile owns one UDP socket and one TCP listener on its `listen`
//! address. Every datagram and every framed stream message goes, parsed, to
//! the profile's core over one channel ([`Incoming`]); the core answers
//! through [`Transports::send`]. Nothing here knows about transactions.
//!
//! TCP connections are kept in a table keyed by the far end's address, so
//! a response or a new request for a client that registered over TCP goes
//! back over the connection it opened (a phone behind NAT cannot be dialled
//! back; RFC 5626/5923 style reuse). A request to a TCP peer without a
//! connection opens one. Stream keep-alive pings (CRLFCRLF) get their CRLF
//! pong here; a stream that loses framing is closed with a log line.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use dialtone_sip::message::{parse_datagram, Frame, Message, ParseError, StreamFramer};

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
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
        }
    }

    /// Parses a `transport=` value.
    pub fn parse(s: &str) -> Option<Transport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
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

/// The sockets of one profile.
pub struct Transports {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    conns: Mutex<HashMap<SocketAddr, Conn>>,
    next_conn: AtomicU64,
    incoming: mpsc::Sender<Incoming>,
    me: std::sync::Weak<Transports>,
}

/// Queue depth of one connection's writer.
const CONN_QUEUE: usize = 256;
/// Idle TCP connections are closed after this long without traffic.
const CONN_IDLE: Duration = Duration::from_secs(600);

impl Transports {
    /// Binds UDP and TCP on `addr` and starts the read loops.
    pub async fn bind(
        addr: SocketAddr,
        incoming: mpsc::Sender<Incoming>,
    ) -> std::io::Result<Arc<Transports>> {
        let udp = Arc::new(UdpSocket::bind(addr).await?);
        let tcp = TcpListener::bind(addr).await?;
        let local = udp.local_addr()?;
        let t = Arc::new_cyclic(|me| Transports {
            udp: udp.clone(),
            local,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            incoming,
            me: me.clone(),
        });
        tokio::spawn(udp_loop(t.clone()));
        tokio::spawn(accept_loop(t.clone(), tcp));
        Ok(t)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Open TCP connections.
    pub fn connections(&self) -> usize {
        self.conns.lock().len()
    }

    /// Sends a message. Never blocks: UDP uses a non-blocking send, TCP
    /// queues to the connection (opening one if needed). Errors are logged
    /// and returned for the transaction layer.
    pub fn send(&self, peer: Peer, msg: &Message) -> Result<(), String> {
        self.send_bytes(peer, msg.to_bytes())
    }

    /// Sends raw bytes (keep-alives, pre-serialized messages).
    pub fn send_bytes(&self, peer: Peer, bytes: Vec<u8>) -> Result<(), String> {
        match peer.transport {
            Transport::Udp => match self.udp.try_send_to(&bytes, peer.addr) {
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
            },
            Transport::Tcp => {
                let tx = self.conns.lock().get(&peer.addr).map(|c| c.tx.clone());
                match tx {
                    Some(tx) => tx
                        .try_send(bytes)
                        .map_err(|e| format!("tcp send to {}: {e}", peer.addr)),
                    None => {
                        let me = self.me.upgrade().ok_or("transports gone")?;
                        tokio::spawn(async move {
                            match tokio::time::timeout(
                                Duration::from_secs(5),
                                TcpStream::connect(peer.addr),
                            )
                            .await
                            {
                                Ok(Ok(stream)) => {
                                    let tx = me.clone().adopt(stream, peer.addr);
                                    let _ = tx.send(bytes).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::warn!(peer = %peer.addr, error = %e, "tcp connect failed")
                                }
                                Err(_) => {
                                    tracing::warn!(peer = %peer.addr, "tcp connect timed out")
                                }
                            }
                        });
                        Ok(())
                    }
                }
            }
        }
    }

    /// Registers a connection and starts its reader and writer.
    fn adopt(self: Arc<Self>, stream: TcpStream, remote: SocketAddr) -> mpsc::Sender<Vec<u8>> {
        let _ = stream.set_nodelay(true);
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
        self.conns
            .lock()
            .insert(remote, Conn { id, tx: tx.clone() });
        let (mut reader, mut writer) = stream.into_split();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let pong = tx.clone();
        tokio::spawn(async move {
            let peer = Peer {
                transport: Transport::Tcp,
                addr: remote,
            };
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
                            tracing::warn!(peer = %remote, error = %e.reason, "closing a TCP connection that lost SIP framing");
                            let _ = me.incoming.send(Incoming::Bad(e, peer)).await;
                            me.forget(remote, id);
                            return;
                        }
                    }
                }
            }
            me.forget(remote, id);
        });
        tx
    }

    fn forget(&self, remote: SocketAddr, id: u64) {
        let mut conns = self.conns.lock();
        if conns.get(&remote).is_some_and(|c| c.id == id) {
            conns.remove(&remote);
        }
    }
}

async fn udp_loop(t: Arc<Transports>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match t.udp.recv_from(&mut buf).await {
            Ok(x) => x,
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
        let item = match parse_datagram(&buf[..n]) {
            Ok(Frame::KeepAlive { .. }) => continue,
            Ok(Frame::Message(m)) => Incoming::Message(m, peer),
            Err(e) => Incoming::Bad(e, peer),
        };
        if t.incoming.send(item).await.is_err() {
            return;
        }
    }
}

async fn accept_loop(t: Arc<Transports>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                t.clone().adopt(stream, remote);
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
