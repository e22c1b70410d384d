//! Media: RTP ports and the relay between bridged legs.
//!
//! Dialtone anchors media: for every call leg it binds an RTP port (even,
//! with RTCP on the next, odd port) on a configured address, offers that
//! address in SDP, and relays the packets of two bridged legs to each other
//! without looking inside them.
//!
//! - [`PortAllocator`] hands out the port pairs from a configured range.
//! - [`MediaEngine`] owns the worker threads and is what the SIP side
//!   calls: [`allocate`](MediaEngine::allocate),
//!   [`set_remote`](MediaEngine::set_remote),
//!   [`bridge`](MediaEngine::bridge), [`unbridge`](MediaEngine::unbridge),
//!   [`release`](MediaEngine::release).
//! - [`LegHandle`] is one leg: its id, its local address, its
//!   [`LegStats`] counters. Dropping it releases the leg.
//!
//! # Threads
//!
//! The engine starts a fixed number of media workers (one per core by
//! default, or [`MediaConfig::workers`]), plain OS threads named
//! `media-N`, apart from the tokio runtime that runs signalling. There is no
//! task and no timer per call. Each worker owns:
//!
//! - an epoll set (level-triggered) holding its legs' sockets, each under
//!   its port number, and its doorbell, an eventfd. A leg that ends leaves
//!   its pair in the set: the pair is parked with the worker as its
//!   watcher, drained by it while parked, and handed to the worker's next
//!   leg first, so most legs join and leave a worker without an
//!   `epoll_ctl` (see [`ports`]);
//! - a slot table of the legs it owns: both non-blocking UDP sockets, the
//!   SDP and latched destinations, the link to the bridged leg's slot;
//! - receive and send batches for `recvmmsg`/`sendmmsg`: 32 buffers of
//!   4 KiB (datagrams up to 2 KiB, the rest tailroom for an SRTP tag and
//!   for widening G.711 to L16 in place), allocated once when the thread
//!   starts. Larger datagrams arrive truncated and are dropped and
//!   counted: RTP never comes near that size.
//!
//! Its loop is: wait on epoll; if the doorbell rang or control changes are
//! pending, apply them; then, for each readable socket, read up to two
//! batches of 32 datagrams (one `recvmmsg` each) and send each batch out of
//! the bridged leg's socket of the same stream with one `sendmmsg`. That
//! relay path takes no lock, allocates nothing and makes no cross-thread
//! hop: a leg is
//! assigned to the least loaded worker when allocated, and when two legs on
//! different workers are bridged one of them moves to the other's worker,
//! so a bridged pair always lives on one thread.
//! [`MediaEngine::allocate_beside`] puts a new leg on an existing leg's
//! worker so that the bridge moves nothing.
//!
//! # Ownership and control
//!
//! A leg's sockets belong to exactly one place at a time: the slot table of
//! the worker that holds it, or the engine's registry while the leg is on
//! its way to a worker (just allocated, or moving). The API never touches
//! sockets a worker holds. It edits the leg's desired state in the registry
//! (owner worker, SDP addresses, bridged leg) under a mutex held for a few
//! map operations, and adds the leg to the dirty list of the workers
//! concerned. An idle worker (no legs) is rung when its list becomes
//! non-empty. A worker that holds legs is not rung: it looks at its list at
//! its next wake-up, for a packet (a flag it reads without the lock tells it
//! the list is not empty, so a change made before a packet was sent applies
//! to that packet) or for a 5 ms poll, whichever comes first. On a busy
//! switch that turns a doorbell per API call into at most 200 polls a
//! second per worker. A worker that wakes reconciles the legs on its
//! dirty list: it adopts those assigned to it, parks in the registry those
//! assigned elsewhere (and rings the new owner), closes released ones, and
//! links pairs that it now holds both sides of. Since the worker applies the
//! latest desired state, the calls need no ordering between threads; the
//! registry mutex is never taken on the packet path.
//!
//! Counters ([`LegStats`]) are atomics written only by the owning worker and
//! readable from anywhere.
//!
//! # Latching (symmetric RTP)
//!
//! Packets for a phone go to the source address of the latest packet
//! received from it on that socket, or, while nothing has been received, to
//! the address from its SDP. RTP and RTCP latch separately. So a phone
//! behind NAT whose SDP says `10.9.9.9:4000` is reached at the public
//! address its packets come from. A new SDP address
//! ([`MediaEngine::set_remote`]) clears the latch. Any packet arriving on a
//! leg's socket is taken to come from that leg's phone: there is no check
//! of source address, SSRC or timing yet, so whoever can reach the port can
//! steer the leg's media.
//!
//! # Applications and the media clock
//!
//! A leg that is not bridged can run one [`App`]: [`Echo`](App::Echo)
//! (each RTP packet goes back to where it came from, untouched) or
//! [`Play`](App::Play) a [`Prompt`] (tones, silence, WAV), encoded in the
//! leg's [`Format`] (PCMU, PCMA or L16, from the SDP exchange). Prompts are
//! paced by one clock per worker: the epoll timeout wakes the worker every
//! 20 ms while anything plays, and each playing leg sends its frame; a
//! worker late by more than a few frames skips ahead rather than bursting.
//! There is no timer per call. Bridging a leg ends its app.
//!
//! # One stream per phone
//!
//! Each leg keeps one SSRC and one line of sequence numbers and timestamps
//! for everything its phone hears: the engine's prompts, the bridged
//! phone's packets, another phone's after a transfer or after the far
//! phone changed SSRC on a re-INVITE. The first bridged source of a fresh
//! leg is adopted as it is, so plain passthrough leaves the phones' own
//! numbering untouched; any later change of source rebases the line (same
//! SSRC, sequence numbers continuing, timestamps moved on by the
//! wall-clock gap, marker bit on the first audio packet), and relayed RTCP
//! is renumbered to match. A late packet of the new source from before the
//! rebase is dropped (its number on the line was already used); a jump of
//! more than 3,000 back is taken as the source restarting its numbering. The line travels with a leg that moves to another
//! worker.
//!
//! Every leg whose format names a telephone-event payload type has its
//! received RTP checked for RFC 4733 events (bridged or not): each digit
//! is reported once to the leg's [`Listener`] as a [`LegEvent::Dtmf`]; a
//! prompt's end is reported as [`LegEvent::PlayDone`].
//!
//! # Transcoding, recording, timeouts
//!
//! Bridged legs whose [`Format`]s differ are transcoded on the relay path,
//! in place: G.711 μ-law and A-law by one table lookup a byte, L16 widened
//! or narrowed; telephone-event payload types are renumbered. A leg can be
//! recorded ([`MediaEngine::record`], see [`record`]) whatever it does:
//! the worker decodes and queues 20 ms chunks to the recording's writer
//! thread and never touches the file; the writer's reorder stage (a
//! jitter buffer of four packets per side) puts them back in sequence
//! order. Transcoding needs none: G.711 and L16 convert sample for sample,
//! with no decoder state carried from one packet to the next, so each
//! packet is converted as it comes and keeps its sequence number and
//! timestamp; the receiving phone's own jitter buffer orders them, and
//! holding them here too would only add delay. (A codec with decoder state
//! would need the reorder stage on this path as well.) A leg with an RTP timeout
//! ([`MediaEngine::set_rtp_timeout`]) reports [`LegEvent::MediaTimeout`]
//! once nothing has arrived for that long; the worker reads the clock once
//! per wake-up, not per packet.
//!
//! # Statistics and RTCP
//!
//! Every leg keeps RFC 3550 reception statistics of the phone's RTP (loss
//! from sequence numbers, interarrival jitter), published once a second in
//! its [`LegStats`] ([`LegStats::reception`]). A leg whose media the engine
//! terminates (an echo, a prompt) gets a compound RTCP report from the
//! engine every 5 s: an SR when it played RTP, else an RR, with the
//! report block (LSR/DLSR from the phone's last SR) and an SDES CNAME.
//! Bridged legs carry the phones' own RTCP end to end (renumbered when a
//! leg's stream was rebased, see above).
//!
//! # Not done yet
//!
//! SRTP and stricter latching. Linux only (epoll, eventfd,
//! `recvmmsg`/`sendmmsg`).

#![deny(missing_docs)]

pub mod codec;
mod engine;
mod error;
pub mod ports;
pub mod prompt;
pub mod record;
pub mod rtcp;
pub mod rtp;
mod stats;
mod sys;
mod worker;

pub use engine::{
    App, Format, LegEvent, LegHandle, Listener, MediaConfig, MediaEngine, WorkerHook,
};
pub use error::{LegId, MediaError};
pub use ports::{PortAllocator, PortLease, RtpPorts};
pub use prompt::{Prompt, PromptError};
pub use record::{Channels, Recording};
pub use stats::{LegCounters, LegStats, Reception, Stream, StreamCounters};
pub use sys::{buffers as socket_buffers, set_buffers as set_socket_buffers};
