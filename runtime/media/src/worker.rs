//! A media worker: one OS thread, one epoll set, the legs it owns, and the
//! packet loop.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::engine::{lock, Bells, LegIo, Registry, Shared};
use crate::error::LegId;
use crate::sys::{self, Epoll, Event};

/// Token of the worker's doorbell in its epoll set. Socket tokens are
/// `slot << 1 | stream`, which never reach this value.
const WAKE: u64 = u64::MAX;

/// Largest datagram accepted: any UDP payload fits, so nothing is ever
/// truncated.
pub(crate) const RECV_MAX: usize = 65536;

/// Room left after the largest datagram, for the SRTP authentication tag
/// (and MKI) that the next phase appends in place.
pub(crate) const TAILROOM: usize = 64;

/// Readiness reports taken per `epoll_wait`.
const EVENTS: usize = 256;

/// Datagrams read from one socket per readiness report before moving on to
/// the next socket; epoll is level-triggered, so a socket with more queued
/// is reported again on the next round.
const RECV_BUDGET: usize = 64;

struct Slot {
    io: LegIo,
    /// The slot of the bridged leg, when this worker holds it too.
    peer: Option<usize>,
}

pub(crate) struct Worker {
    index: usize,
    shared: Arc<Shared>,
    epoll: Epoll,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_id: HashMap<LegId, usize>,
    /// Swapped with this worker's dirty list in the registry.
    dirty: Vec<LegId>,
}

impl Worker {
    /// Runs on the engine's thread, so setup errors reach the caller.
    pub(crate) fn new(index: usize, shared: Arc<Shared>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.add(shared.bells[index].raw(), WAKE)?;
        Ok(Worker {
            index,
            shared,
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            dirty: Vec::new(),
        })
    }

    /// The loop. Returns when the engine shuts down; dropping `self` then
    /// closes every socket this worker holds.
    pub(crate) fn run(mut self) {
        let mut events: Vec<Event> = vec![sys::empty_event(); EVENTS];
        let mut buf = vec![0u8; RECV_MAX + TAILROOM].into_boxed_slice();
        tracing::debug!(worker = self.index, "media worker running");
        loop {
            let n = match self.epoll.wait(&mut events, -1) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(worker = self.index, error = %e, "epoll_wait failed; media worker stops");
                    break;
                }
            };
            let ready = &events[..n];
            // Control first: an API call made before a packet was sent takes
            // effect before that packet is relayed.
            if ready.iter().any(|ev| sys::token(ev) == WAKE) {
                self.shared.bells[self.index].drain();
                if self.shared.shutdown.load(Ordering::Acquire) {
                    break;
                }
                self.reconcile();
            }
            for ev in ready {
                let token = sys::token(ev);
                if token != WAKE {
                    self.relay((token >> 1) as usize, (token & 1) as usize, &mut buf);
                }
            }
        }
        for slot in self.slots.iter().flatten() {
            slot.io.stats.set_relaying(false);
        }
        tracing::debug!(
            worker = self.index,
            legs = self.by_id.len(),
            "media worker stopped"
        );
    }

    /// Read what is queued on one socket (up to the budget) and forward
    /// each datagram out of the bridged leg's socket of the same stream.
    /// No allocation, no lock, no shared write other than the owner-only
    /// counters.
    #[inline]
    fn relay(&mut self, slot: usize, stream: usize, buf: &mut [u8]) {
        for _ in 0..RECV_BUDGET {
            let Some(Some(leg)) = self.slots.get_mut(slot) else {
                return;
            };
            let (len, src) = match leg.io.sockets[stream].recv_from(&mut buf[..RECV_MAX]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending socket error is cleared by reporting it; if more
                // is queued, level-triggered epoll reports the socket again.
                Err(_) => return,
            };
            leg.io.stats.received(stream, len);
            // Symmetric RTP: the phone is wherever its latest packet came
            // from.
            leg.io.latched[stream] = Some(src);
            let peer = leg.peer;

            let slots = &self.slots;
            let Some(leg) = slots[slot].as_ref() else {
                return;
            };
            let sent = match peer.and_then(|p| slots[p].as_ref()) {
                Some(out) => match out.io.latched[stream].or(out.io.remote[stream]) {
                    Some(dest) => match out.io.sockets[stream].send_to(&buf[..len], dest) {
                        Ok(n) => {
                            out.io.stats.sent(stream, n);
                            true
                        }
                        Err(_) => false,
                    },
                    None => false,
                },
                None => false,
            };
            if !sent {
                leg.io.stats.dropped(stream);
            }
        }
    }

    /// Apply the registry's desired state to every leg on this worker's
    /// dirty list.
    fn reconcile(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut bells = Bells::default();
        {
            let mut reg = lock(&shared.registry);
            std::mem::swap(&mut reg.dirty[self.index], &mut self.dirty);
            let mut dirty = std::mem::take(&mut self.dirty);
            for &id in &dirty {
                self.reconcile_leg(&mut reg, id, &mut bells);
            }
            dirty.clear();
            self.dirty = dirty;
        }
        bells.ring(&shared);
    }

    fn reconcile_leg(&mut self, reg: &mut Registry, id: LegId, bells: &mut Bells) {
        let local = self.by_id.get(&id).copied();
        let Some(d) = reg.legs.get_mut(&id) else {
            // Released.
            if let Some(slot) = local {
                drop(self.remove(slot));
            }
            return;
        };
        if d.worker != self.index {
            // Moved away: hand the sockets over through the registry.
            if let Some(slot) = local {
                d.transit = Some(self.remove(slot));
                d.holder = None;
                let to = d.worker;
                reg.dirty[to].push(id);
                bells.add(to);
            }
            return;
        }
        let slot = match local {
            Some(slot) => slot,
            None => match d.transit.take() {
                Some(io) => match self.insert(io) {
                    Ok(slot) => {
                        d.holder = Some(self.index);
                        slot
                    }
                    Err(e) => {
                        // The sockets are closed; the leg stays registered
                        // but carries no media.
                        tracing::error!(%id, error = %e, "cannot watch media sockets");
                        return;
                    }
                },
                // Still held by the worker it leaves, which will hand it
                // over and queue it here.
                None => return,
            },
        };
        let (remote, peer) = (d.remote, d.peer);
        let leg = self.slots[slot].as_mut().expect("slot just looked up");
        if leg.io.remote != remote {
            leg.io.remote = remote;
            leg.io.latched = [None, None];
        }
        let want = peer.and_then(|p| self.by_id.get(&p).copied());
        self.link(slot, want);
    }

    /// Make `slot` and `want` point at each other, undoing their previous
    /// links. The registry keeps bridges symmetric, so if `slot` wants
    /// `want`, `want` wants `slot`.
    fn link(&mut self, slot: usize, want: Option<usize>) {
        let old = self.slot(slot).peer;
        if old == want {
            return;
        }
        if let Some(o) = old {
            self.unpoint(o, slot);
        }
        self.set_peer(slot, want);
        if let Some(p) = want {
            let prev = self.slot(p).peer;
            if prev != Some(slot) {
                if let Some(q) = prev {
                    self.unpoint(q, p);
                }
                self.set_peer(p, Some(slot));
            }
        }
    }

    /// Clear `from`'s link if it points at `to`.
    fn unpoint(&mut self, from: usize, to: usize) {
        if self.slots[from]
            .as_ref()
            .is_some_and(|s| s.peer == Some(to))
        {
            self.set_peer(from, None);
        }
    }

    fn set_peer(&mut self, slot: usize, peer: Option<usize>) {
        let s = self.slots[slot].as_mut().expect("live slot");
        s.peer = peer;
        s.io.stats.set_relaying(peer.is_some());
    }

    fn slot(&self, slot: usize) -> &Slot {
        self.slots[slot].as_ref().expect("live slot")
    }

    fn insert(&mut self, io: LegIo) -> io::Result<usize> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let token = (slot as u64) << 1;
        let rtp = io.sockets[0].as_raw_fd();
        let rtcp = io.sockets[1].as_raw_fd();
        if let Err(e) = self.epoll.add(rtp, token) {
            self.free.push(slot);
            return Err(e);
        }
        if let Err(e) = self.epoll.add(rtcp, token | 1) {
            let _ = self.epoll.delete(rtp);
            self.free.push(slot);
            return Err(e);
        }
        self.by_id.insert(io.id, slot);
        self.slots[slot] = Some(Slot { io, peer: None });
        Ok(slot)
    }

    fn remove(&mut self, slot: usize) -> LegIo {
        let leg = self.slots[slot].take().expect("live slot");
        for s in &leg.io.sockets {
            let _ = self.epoll.delete(s.as_raw_fd());
        }
        if let Some(p) = leg.peer {
            self.unpoint(p, slot);
        }
        leg.io.stats.set_relaying(false);
        self.by_id.remove(&leg.io.id);
        self.free.push(slot);
        leg.io
    }
}
