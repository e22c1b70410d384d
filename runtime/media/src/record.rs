//! Recording a leg to a WAV file.
//!
//! The worker that owns the leg decodes what it receives from the phone
//! (the *caller* side of that leg) and what it sends to it (what the phone
//! hears: the bridged party, a prompt, the echo) into 8 kHz samples and
//! hands them, 20 ms at a time, to the recording's writer thread through a
//! bounded queue: the worker never touches the file and never blocks (a
//! writer that falls behind loses chunks, and says so when it closes).
//!
//! The writer first puts each side's chunks back in RTP sequence order (a
//! reorder stage holding up to four packets, 80 ms, while one is missing;
//! duplicates and packets older than what was written are dropped). Mono
//! recordings then take one side in that order. Stereo recordings put
//! the phone on the left and what it hears on the right, each chunk placed
//! by its arrival time so the two stay aligned across silences (a gap of
//! more than 60 ms on one side is filled with silence). The file is a
//! 16-bit PCM WAV whose sizes are written when the recording ends: at the
//! limit, when the leg is released, or when it is stopped.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most samples in one chunk (60 ms).
pub(crate) const CHUNK: usize = 480;

/// Chunks queued to the writer before the worker drops them (~10 s).
const QUEUE: usize = 512;

/// Which audio of the leg a recording keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// What the phone sends (mono).
    Received,
    /// What the phone hears (mono).
    Sent,
    /// Both: the phone left, what it hears right.
    Both,
}

/// Which side a chunk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Received = 0,
    Sent = 1,
}

pub(crate) struct Chunk {
    side: Side,
    /// The RTP sequence number it came in, for the reorder stage.
    seq: Option<u16>,
    /// Arrival, in samples since the recording started.
    at: u64,
    len: u16,
    pcm: [i16; CHUNK],
}

/// A recording in progress, as the worker holds it.
pub struct Recording {
    tx: SyncSender<Chunk>,
    channels: Channels,
    started: Instant,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("channels", &self.channels)
            .finish()
    }
}

impl Recording {
    /// Creates the file (and its directory) and starts the writer thread.
    /// `limit` stops the recording after that much audio.
    pub fn start(
        path: &Path,
        channels: Channels,
        limit: Option<Duration>,
    ) -> io::Result<Arc<Recording>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let stereo = channels == Channels::Both;
        let max = limit.map(|l| l.as_millis() as u64 * 8);
        let path_owned = path.to_path_buf();
        let d = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("media-record".into())
            .spawn(move || {
                if let Err(e) = write(rx, file, stereo, max) {
                    tracing::error!(path = %path_owned.display(), error = %e, "recording failed");
                }
                let lost = d.load(Ordering::Relaxed);
                tracing::info!(path = %path_owned.display(), lost_chunks = lost, "recording closed");
            })?;
        Ok(Arc::new(Recording {
            tx,
            channels,
            started: Instant::now(),
            dropped,
        }))
    }

    /// Whether this recording wants `side`.
    #[inline]
    pub(crate) fn wants(&self, side: Side) -> bool {
        match self.channels {
            Channels::Both => true,
            Channels::Received => side == Side::Received,
            Channels::Sent => side == Side::Sent,
        }
    }

    /// Queues samples heard at `now` from the RTP packet numbered `seq`;
    /// never blocks.
    pub(crate) fn push(&self, side: Side, now: Instant, seq: u16, pcm: &[i16]) {
        if !self.wants(side) {
            return;
        }
        let at = now.saturating_duration_since(self.started).as_micros() as u64 * 8 / 1000;
        // A packet longer than a chunk is split; its parts go through in
        // order without a sequence number.
        let seq = (pcm.len() <= CHUNK).then_some(seq);
        for part in pcm.chunks(CHUNK) {
            let mut c = Chunk {
                side,
                seq,
                at,
                len: part.len() as u16,
                pcm: [0; CHUNK],
            };
            c.pcm[..part.len()].copy_from_slice(part);
            match self.tx.try_send(c) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

/// Gap on one side, in samples, beyond which silence is inserted.
const GAP: u64 = 480;

/// Packets the reorder stage holds per side while waiting for a missing
/// one (80 ms of 20 ms packets): later packets wait for an earlier one that
/// arrives within this window; one that never comes is skipped.
const REORDER_DEPTH: usize = 4;

/// The jitter buffer of a recording side: puts chunks back in RTP sequence
/// order, drops duplicates and packets older than what was written.
#[derive(Default)]
struct Reorder {
    held: Vec<Chunk>,
    next: Option<u16>,
}

impl Reorder {
    fn push(&mut self, c: Chunk, out: &mut dyn FnMut(Chunk) -> io::Result<()>) -> io::Result<()> {
        let Some(seq) = c.seq else {
            return out(c);
        };
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next);
        if ahead >= 0x8000 || self.held.iter().any(|h| h.seq == Some(seq)) {
            return Ok(());
        }
        if ahead as usize > 64 * REORDER_DEPTH {
            // The sender jumped (a new stream): start over from here.
            self.finish(out)?;
            self.next = Some(seq);
        }
        self.held.push(c);
        loop {
            if let Some(i) = self.held.iter().position(|h| h.seq == self.next) {
                let c = self.held.swap_remove(i);
                self.next = self.next.map(|n| n.wrapping_add(1));
                out(c)?;
            } else if self.held.len() >= REORDER_DEPTH {
                // The expected packet is lost: go on from the earliest held.
                let base = self.next.unwrap_or(0);
                self.next = self
                    .held
                    .iter()
                    .filter_map(|h| h.seq)
                    .min_by_key(|s| s.wrapping_sub(base));
            } else {
                return Ok(());
            }
        }
    }

    /// Writes what is held, in order.
    fn finish(&mut self, out: &mut dyn FnMut(Chunk) -> io::Result<()>) -> io::Result<()> {
        let base = self.next.unwrap_or(0);
        self.held
            .sort_by_key(|h| h.seq.map_or(0, |s| s.wrapping_sub(base)));
        for c in self.held.drain(..) {
            self.next = c.seq.map(|s| s.wrapping_add(1));
            out(c)?;
        }
        Ok(())
    }
}

fn write(rx: Receiver<Chunk>, file: File, stereo: bool, max: Option<u64>) -> io::Result<()> {
    let channels: u16 = if stereo { 2 } else { 1 };
    let mut w = BufWriter::new(file);
    header(&mut w, channels, 0)?;
    let mut frames: u64 = 0;
    let full = |frames: u64| max.is_some_and(|m| frames >= m);
    let mut reorder: [Reorder; 2] = Default::default();
    // Set once the limit is reached: the writer stops reading.
    let stop = std::cell::Cell::new(false);
    if !stereo {
        let mut place = |c: Chunk| -> io::Result<()> {
            for &s in &c.pcm[..c.len as usize] {
                if full(frames) {
                    break;
                }
                w.write_all(&s.to_le_bytes())?;
                frames += 1;
            }
            stop.set(full(frames));
            Ok(())
        };
        drain(&rx, &mut reorder, &stop, &mut place)?;
    } else {
        // Per side: samples waiting, and the position (in samples) of the
        // next one to arrive.
        let mut sides: [(std::collections::VecDeque<i16>, u64); 2] = Default::default();
        let flush = |sides: &mut [(std::collections::VecDeque<i16>, u64); 2],
                     w: &mut BufWriter<File>,
                     frames: &mut u64,
                     end: bool|
         -> io::Result<()> {
            loop {
                let (l, r) = (sides[0].0.len(), sides[1].0.len());
                let n = if end { l.max(r) } else { l.min(r) };
                if n == 0 || full(*frames) {
                    return Ok(());
                }
                for _ in 0..n {
                    if full(*frames) {
                        return Ok(());
                    }
                    let a = sides[0].0.pop_front().unwrap_or(0);
                    let b = sides[1].0.pop_front().unwrap_or(0);
                    w.write_all(&a.to_le_bytes())?;
                    w.write_all(&b.to_le_bytes())?;
                    *frames += 1;
                }
            }
        };
        let mut place = |c: Chunk| -> io::Result<()> {
            let s = &mut sides[c.side as usize];
            if c.at > s.1 + GAP {
                let fill = (c.at - s.1) as usize;
                s.0.extend(std::iter::repeat_n(0, fill));
                s.1 += fill as u64;
            }
            s.0.extend(&c.pcm[..c.len as usize]);
            s.1 += c.len as u64;
            // A side silent for over a second: the other one is not kept
            // waiting for it.
            let (l, r) = (sides[0].0.len(), sides[1].0.len());
            if l.abs_diff(r) > 8000 {
                let short = &mut sides[(l > r) as usize];
                short.0.extend(std::iter::repeat_n(0, l.abs_diff(r)));
                short.1 += l.abs_diff(r) as u64;
            }
            flush(&mut sides, &mut w, &mut frames, false)?;
            stop.set(full(frames));
            Ok(())
        };
        drain(&rx, &mut reorder, &stop, &mut place)?;
        flush(&mut sides, &mut w, &mut frames, true)?;
    }
    let bytes = frames * channels as u64 * 2;
    w.seek(SeekFrom::Start(0))?;
    header(&mut w, channels, bytes.min(u32::MAX as u64 - 36) as u32)?;
    w.flush()
}

/// Every chunk from the worker through its side's reorder stage to
/// `place`, until the channel closes or `stop` is set; then what the stages
/// still hold.
fn drain(
    rx: &Receiver<Chunk>,
    reorder: &mut [Reorder; 2],
    stop: &std::cell::Cell<bool>,
    place: &mut dyn FnMut(Chunk) -> io::Result<()>,
) -> io::Result<()> {
    for c in rx.iter() {
        let side = c.side as usize;
        reorder[side].push(c, place)?;
        if stop.get() {
            break;
        }
    }
    for r in reorder {
        r.finish(place)?;
    }
    Ok(())
}

fn header(w: &mut impl Write, channels: u16, data: u32) -> io::Result<()> {
    let rate = 8000u32;
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&1u16.to_le_bytes())?;
    w.write_all(&channels.to_le_bytes())?;
    w.write_all(&rate.to_le_bytes())?;
    w.write_all(&(rate * 2 * channels as u32).to_le_bytes())?;
    w.write_all(&(2 * channels).to_le_bytes())?;
    w.write_all(&16u16.to_le_bytes())?;
    w.write_all(b"data")?;
    w.write_all(&data.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(seqs: &[u16]) -> Vec<u16> {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        let mut emit = |c: Chunk| -> io::Result<()> {
            out.push(c.seq.unwrap());
            Ok(())
        };
        for &q in seqs {
            let c = Chunk {
                side: Side::Received,
                seq: Some(q),
                at: 0,
                len: 0,
                pcm: [0; CHUNK],
            };
            r.push(c, &mut emit).unwrap();
        }
        r.finish(&mut emit).unwrap();
        out
    }

    #[test]
    fn the_reorder_stage_restores_order_and_drops_duplicates_and_late_packets() {
        assert_eq!(order(&[1, 3, 2, 4, 4, 5]), [1, 2, 3, 4, 5]);
        // 11 is lost: once four later packets wait, it is skipped; when it
        // arrives after all, it is too late.
        assert_eq!(
            order(&[10, 12, 13, 14, 15, 11, 16]),
            [10, 12, 13, 14, 15, 16]
        );
        assert_eq!(order(&[65534, 0, 65535, 1]), [65534, 65535, 0, 1]);
        // A new stream far away restarts the order.
        assert_eq!(order(&[100, 101, 5000, 5001]), [100, 101, 5000, 5001]);
    }
}
