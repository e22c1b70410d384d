//! The journal: a redb database with three tables and one writer thread.
//!
//! * `cdr_rows`: the CDRs in commit order, one row per commit (up to
//!   [`ROW_MAX`] CDRs a row): the row's first seq -> its CDRs as JSON lines
//!   (each ending in a newline), the line at index `i` holding seq
//!   `first + i`. Seqs run 1, 2, ... without gaps. One B-tree insert per
//!   commit, not one per CDR: at a few thousand CDRs a second the per-CDR
//!   insert was a third of the writer's time. The lines are also what the
//!   JSON-lines copy and [`Journal::export_jsonl`] write, byte for byte.
//! * `open`: channel UUID -> [`Open`] as JSON, the channels that exist
//!   and were still up at the commit after the one that saw them open
//!   (`Writer::write`);
//! * `meta`: `last_commit_us` -> the wall clock of the latest commit.
//!
//! Seqs have no gaps, so the journal holds `next seq - 1` CDRs.
//!
//! A journal written before `cdr_rows` (table `cdrs`: one row per CDR,
//! seq -> JSON) is moved into `cdr_rows` when it is opened, in the same
//! transaction as the crash recovery.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use crate::record::{now_us, Cdr, Open};

const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("cdr_rows");
/// The one-CDR-per-row table of earlier journals, moved into [`ROWS`] at open.
const LEGACY_CDRS: TableDefinition<u64, &[u8]> = TableDefinition::new("cdrs");
const OPEN: TableDefinition<&str, &[u8]> = TableDefinition::new("open");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_COMMIT_US: &str = "last_commit_us";

/// The most CDRs one `cdr_rows` row holds: a bigger commit writes several
/// rows, so a reader paging through the journal never parses more than
/// this many lines it does not want.
pub const ROW_MAX: usize = 1024;

/// The group-commit window: the writer commits at most once per window.
pub const COMMIT_WINDOW: Duration = Duration::from_millis(100);

/// How long the writer waits before it tries a failed commit again (when
/// nothing new arrives sooner).
const RETRY: Duration = Duration::from_secs(1);

/// Attempts at committing what is queued when the journal is dropped.
const FINAL_ATTEMPTS: usize = 3;

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed (open, transaction, table, storage, commit).
    #[error("CDR journal database: {0}")]
    Db(#[from] Box<redb::Error>),
    /// A file (the database's directory, the JSON-lines file, an export)
    /// failed.
    #[error("CDR journal I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A stored record is not valid JSON of its type.
    #[error("CDR journal record: {0}")]
    Json(#[from] serde_json::Error),
    /// The writer thread failed to commit, or is gone.
    #[error("CDR journal writer: {0}")]
    Writer(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Db(Box::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The journal's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a journal is opened.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// A JSON-lines file the writer thread appends every committed CDR to
    /// (one object per line, in seq order), right after the commit that
    /// journals it, crash CDRs written at open included. It is a copy for
    /// log shippers, not the record: it is written without fsync, so a crash
    /// can lose its last lines (never the journal's), and
    /// [`Journal::export_jsonl`] rebuilds it from the journal.
    pub jsonl: Option<PathBuf>,
    /// While any channel is open, the writer commits the time at least this
    /// often even when nothing else happens, so that a channel cut by a
    /// crash ends at most this long before the crash.
    pub heartbeat: Duration,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            jsonl: None,
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// Counters of a [`Journal`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// CDRs in the journal (committed), those of earlier processes included.
    pub cdrs: u64,
    /// Write transactions the writer committed since the journal was opened.
    pub commits: u64,
    /// Commits that failed (their records stay queued and are tried again).
    pub failed_commits: u64,
    /// Channels open in the journal as of the latest commit.
    pub open_channels: u64,
    /// Opens and closes queued and not committed yet.
    pub queued: u64,
}

#[derive(Default)]
struct Counters {
    cdrs: AtomicU64,
    commits: AtomicU64,
    failed_commits: AtomicU64,
    open_channels: AtomicU64,
    queued: AtomicU64,
}

/// Boxed: a message is a pointer wide, whatever the records weigh.
enum Op {
    Open(Box<Open>),
    Close(Box<Cdr>),
    /// `uuid` was bridged to `other`: its open record learns its other leg
    /// (so a CDR cut by a crash still names it).
    Bridge(Box<(String, String)>),
}

enum Msg {
    Op(Op),
    Flush(SyncSender<Result<(), String>>),
    Abandon,
}

/// The CDR journal. See the crate docs for the rules it keeps.
pub struct Journal {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    db: Arc<Database>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("stats", &self.stats())
            .finish()
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

/// The lines of a `cdr_rows` value, without their newlines.
fn lines(row: &[u8]) -> impl Iterator<Item = &[u8]> {
    row.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

/// Appends `lines` (JSON lines, each ending in a newline, the first holding
/// seq `first`) to `cdr_rows`, [`ROW_MAX`] lines a row.
fn insert_rows(rows: &mut redb::Table<u64, &[u8]>, first: u64, lines: &[u8]) -> Result<()> {
    let mut key = first;
    let mut start = 0;
    let mut n = 0;
    for (i, b) in lines.iter().enumerate() {
        if *b == b'\n' {
            n += 1;
            if n == ROW_MAX {
                rows.insert(key, &lines[start..=i])?;
                key += n as u64;
                start = i + 1;
                n = 0;
            }
        }
    }
    if start < lines.len() {
        rows.insert(key, &lines[start..])?;
    }
    Ok(())
}

/// The seq after the last stored CDR.
fn next_seq_of(rows: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64> {
    Ok(rows
        .last()?
        .map_or(1, |(k, v)| k.value() + lines(v.value()).count() as u64))
}

/// Moves a journal's one-CDR-per-row `cdrs` table, if it has one, into
/// `cdr_rows` (rows of consecutive seqs) and deletes it.
fn migrate_legacy(w: &redb::WriteTransaction, rows: &mut redb::Table<u64, &[u8]>) -> Result<()> {
    let legacy = w.list_tables()?.any(|t| t.name() == LEGACY_CDRS.name());
    if !legacy {
        return Ok(());
    }
    let mut moved = 0;
    {
        let old = w.open_table(LEGACY_CDRS)?;
        let mut buf = Vec::new();
        let (mut first, mut next) = (0, 0);
        for item in old.iter()? {
            let (k, v) = item?;
            let seq = k.value();
            if buf.is_empty() || seq != next {
                if !buf.is_empty() {
                    insert_rows(rows, first, &buf)?;
                    buf.clear();
                }
                first = seq;
            }
            buf.extend_from_slice(v.value());
            buf.push(b'\n');
            next = seq + 1;
            moved += 1;
        }
        if !buf.is_empty() {
            insert_rows(rows, first, &buf)?;
        }
    }
    w.delete_table(LEGACY_CDRS)?;
    tracing::info!(
        cdrs = moved,
        "CDR journal: records moved to the row-per-commit table"
    );
    Ok(())
}

/// Opens the tables and cuts every channel the journal shows open: one
/// transaction. Returns the cut CDRs, the next seq, the CDR count.
fn recover(db: &Database) -> Result<(Vec<Cdr>, u64, u64)> {
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate);
    let (cut, next_seq, count);
    {
        let mut rows = w.open_table(ROWS)?;
        migrate_legacy(&w, &mut rows)?;
        let mut open = w.open_table(OPEN)?;
        let mut meta = w.open_table(META)?;
        let last_commit = meta.get(LAST_COMMIT_US)?.map(|g| g.value());
        let mut seq = next_seq_of(&rows)?;
        let first_cut = seq;
        let mut buf = Vec::new();
        let mut keys = Vec::new();
        let mut opens = Vec::new();
        for item in open.iter()? {
            let (k, v) = item?;
            let uuid = k.value().to_owned();
            match serde_json::from_slice::<Open>(v.value()) {
                Ok(o) => opens.push(o),
                Err(e) => {
                    tracing::error!(%uuid, error = %e, "CDR journal: unreadable open channel dropped");
                }
            }
            keys.push(uuid);
        }
        for k in &keys {
            open.remove(k.as_str())?;
        }
        opens.sort_by(|a, b| (a.start_us, &a.uuid).cmp(&(b.start_us, &b.uuid)));
        let mut out = Vec::with_capacity(opens.len());
        for o in opens {
            let mut c = Cdr::cut_by_crash(&o, last_commit.unwrap_or(o.start_us));
            c.seq = seq;
            seq += 1;
            serde_json::to_writer(&mut buf, &c)?;
            buf.push(b'\n');
            out.push(c);
        }
        insert_rows(&mut rows, first_cut, &buf)?;
        count = seq - 1;
        meta.insert(LAST_COMMIT_US, now_us())?;
        cut = out;
        next_seq = seq;
    }
    w.commit()?;
    Ok((cut, next_seq, count))
}

impl Journal {
    /// Opens (or creates) the journal at `path` with the default
    /// [`JournalOptions`]. See [`Journal::open_with`].
    pub fn open(path: &Path) -> Result<(Journal, Vec<Cdr>)> {
        Journal::open_with(path, JournalOptions::default())
    }

    /// Opens (or creates, with its directory) the journal at `path` and
    /// starts its writer thread.
    ///
    /// Every channel the journal shows opened and not closed (the previous
    /// process ended without its CDR) gets a CDR now, in one transaction that
    /// also empties the `open` table: `cut_by_crash`, cause `CRASH`, ended
    /// at the journal's last commit time (never before its start). Those
    /// CDRs are returned, oldest start first; opening again adds nothing.
    ///
    /// Fails if the file is not a journal or another [`Journal`] (in this
    /// process or another) has it open.
    pub fn open_with(path: &Path, options: JournalOptions) -> Result<(Journal, Vec<Cdr>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let db = Arc::new(Database::create(path)?);
        let (cut, next_seq, count) = recover(&db)?;
        if !cut.is_empty() {
            tracing::warn!(
                channels = cut.len(),
                "CDR journal: channels open when the previous process ended were cut"
            );
        }
        let mut jsonl = options.jsonl.as_deref().map(JsonlSink::open).transpose()?;
        if let Some(sink) = &mut jsonl {
            // The copy is appended after each commit: a crash between the
            // two leaves it behind the journal. Catch up (the records cut
            // just now included) from the last seq the file holds.
            let last = sink.last_seq();
            let behind = read_after(&db, last, usize::MAX)?;
            if behind.len() > cut.len() {
                tracing::info!(
                    records = behind.len() - cut.len(),
                    "CDR journal: JSON-lines copy caught up after an unclean stop"
                );
            }
            sink.append(&behind);
        }
        let counters = Arc::new(Counters::default());
        counters.cdrs.store(count, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            Arc::clone(&db),
            rx,
            Arc::clone(&counters),
            next_seq,
            jsonl,
            options.heartbeat,
        );
        let thread = std::thread::Builder::new()
            .name("cdr-journal".into())
            .spawn(move || writer.run())?;
        Ok((
            Journal {
                tx: Some(tx),
                thread: Some(thread),
                db,
                counters,
            },
            cut,
        ))
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok())
    }

    fn queue(&self, op: Op) {
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if !self.send(Msg::Op(op)) {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("CDR journal: the writer thread is gone; record dropped");
        }
    }

    /// A channel exists: queues its open record for the writer. Never
    /// blocks and never touches the disk.
    pub fn opened(&self, open: Open) {
        self.queue(Op::Open(Box::new(open)));
    }

    /// A channel was bridged: its open record (if still open) takes
    /// `other` as its other leg. Never blocks.
    pub fn bridged(&self, uuid: &str, other: &str) {
        self.queue(Op::Bridge(Box::new((uuid.to_owned(), other.to_owned()))));
    }

    /// A channel finished: queues its CDR for the writer, which appends it
    /// with the next seq and removes the channel's open record in the same
    /// transaction. If that open record's start is earlier than the CDR's,
    /// the CDR takes it (the earliest sight of the channel is the truer
    /// start, e.g. when the hangup event had no start time). Never blocks
    /// and never touches the disk; the CDR's `seq` is ignored.
    pub fn closed(&self, cdr: Cdr) {
        self.queue(Op::Close(Box::new(cdr)));
    }

    /// Blocks until everything queued before this call is committed (and
    /// written to the JSON-lines file, if any). Fails if the commit that
    /// took it failed (its records stay queued and are tried again) or the
    /// writer is gone.
    pub fn flush(&self) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        if !self.send(Msg::Flush(tx)) {
            return Err(Error::Writer("the writer thread is gone".into()));
        }
        rx.recv()
            .map_err(|_| Error::Writer("the writer thread stopped".into()))?
            .map_err(Error::Writer)
    }

    /// Current counters.
    pub fn stats(&self) -> JournalStats {
        let c = &self.counters;
        JournalStats {
            cdrs: c.cdrs.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            open_channels: c.open_channels.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
        }
    }

    /// Up to `limit` committed CDRs with a seq above `after_seq`, in seq
    /// order (page with the last seq seen). Reads on the caller's thread
    /// (redb readers never wait for the writer).
    pub fn list(&self, after_seq: u64, limit: usize) -> Result<Vec<Cdr>> {
        read_after(&self.db, after_seq, limit)
    }

    /// Writes every committed CDR to `out`, one JSON object per line, in seq
    /// order, from one consistent snapshot. Returns how many.
    pub fn export_jsonl(&self, out: &mut impl Write) -> Result<u64> {
        let r = self.db.begin_read()?;
        let t = r.open_table(ROWS)?;
        let mut n = 0;
        for item in t.iter()? {
            let (_, v) = item?;
            out.write_all(v.value())?;
            n += lines(v.value()).count() as u64;
        }
        out.flush()?;
        Ok(n)
    }

    /// Stops the writer at once, as a kill would: what is queued and not
    /// committed is lost, and the channels open in the journal stay open, so
    /// the next [`Journal::open`] cuts them. For crash tests.
    pub fn abandon(mut self) {
        self.send(Msg::Abandon);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    /// Commits what is queued and stops the writer.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("CDR journal: the writer thread panicked");
            }
        }
    }
}

/// Up to `limit` committed CDRs with a seq above `after`, in seq order.
fn read_after(db: &Database, after: u64, limit: usize) -> Result<Vec<Cdr>> {
    let r = db.begin_read()?;
    let t = r.open_table(ROWS)?;
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let want = after.saturating_add(1);
    // The row holding `want`: the last one starting at or before it.
    let from = t
        .range::<u64>(..=want)?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value());
    for item in t.range::<u64>(from..)? {
        let (k, v) = item?;
        for (i, line) in lines(v.value()).enumerate() {
            if k.value() + i as u64 > after {
                out.push(serde_json::from_slice(line)?);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The JSON-lines copy.
struct JsonlSink {
    path: PathBuf,
    file: File,
}

impl JsonlSink {
    fn open(path: &Path) -> Result<JsonlSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonlSink {
            path: path.to_owned(),
            file,
        })
    }

    /// The seq of the file's last complete line (0 for an empty file or
    /// one whose last line does not parse).
    fn last_seq(&self) -> u64 {
        let Ok(text) = std::fs::read(&self.path) else {
            return 0;
        };
        let end = text.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let start = text[..end]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        serde_json::from_slice::<serde_json::Value>(&text[start..end])
            .ok()
            .and_then(|v| v.get("seq").and_then(|s| s.as_u64()))
            .unwrap_or(0)
    }

    /// Appends lines already serialised (each ends with a newline).
    fn append_bytes(&mut self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(buf) {
            tracing::error!(path = %self.path.display(), error = %e, "CDR journal: JSON-lines file write failed");
        }
    }

    fn append<'a>(&mut self, cdrs: impl IntoIterator<Item = &'a Cdr>) {
        let mut buf = Vec::new();
        for c in cdrs {
            // A `Cdr` always serialises (string keys, finite numbers).
            if serde_json::to_writer(&mut buf, c).is_ok() {
                buf.push(b'\n');
            }
        }
        if buf.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(&buf) {
            tracing::error!(path = %self.path.display(), error = %e, "CDR journal: JSON-lines file write failed");
        }
    }
}

enum Wake {
    Msg(Msg),
    Timer,
    Closed,
}

struct Writer {
    db: Arc<Database>,
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    next_seq: u64,
    last_commit: Option<Instant>,
    /// Opens and closes not committed yet, in arrival order.
    pending: Vec<Op>,
    /// How many ops at the front of `pending` are opens the previous
    /// commit held back ([`Writer::write`]): the next commit writes them
    /// if their channels are still up.
    carried: usize,
    /// Flushes waiting for `pending` to commit.
    waiters: Vec<SyncSender<Result<(), String>>>,
    jsonl: Option<JsonlSink>,
    /// The JSON lines of the CDRs [`Writer::write`] commits: its
    /// `cdr_rows`, then the JSON-lines copy.
    lines: Vec<u8>,
    heartbeat: Duration,
}

impl Writer {
    /// A writer with nothing queued, to store from `next_seq` on.
    fn new(
        db: Arc<Database>,
        rx: Receiver<Msg>,
        counters: Arc<Counters>,
        next_seq: u64,
        jsonl: Option<JsonlSink>,
        heartbeat: Duration,
    ) -> Writer {
        Writer {
            db,
            rx,
            counters,
            next_seq,
            last_commit: None,
            pending: Vec::new(),
            carried: 0,
            waiters: Vec::new(),
            jsonl,
            lines: Vec::new(),
            heartbeat: heartbeat.max(COMMIT_WINDOW),
        }
    }

    /// Takes a message; false for [`Msg::Abandon`].
    fn take(&mut self, m: Msg) -> bool {
        match m {
            Msg::Op(op) => self.pending.push(op),
            Msg::Flush(w) => self.waiters.push(w),
            Msg::Abandon => return false,
        }
        true
    }

    fn answer(&mut self, result: Result<(), String>) {
        for w in self.waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }

    fn wait(&self) -> Wake {
        let timeout = if !self.pending.is_empty() && self.carried == self.pending.len() {
            // Only held-back opens: written one window on.
            Some(COMMIT_WINDOW)
        } else if !self.pending.is_empty() {
            Some(RETRY)
        } else if self.counters.open_channels.load(Ordering::Relaxed) > 0 {
            Some(self.heartbeat)
        } else {
            None
        };
        match timeout {
            None => self.rx.recv().map_or(Wake::Closed, Wake::Msg),
            Some(t) => match self.rx.recv_timeout(t) {
                Ok(m) => Wake::Msg(m),
                Err(RecvTimeoutError::Timeout) => Wake::Timer,
                Err(RecvTimeoutError::Disconnected) => Wake::Closed,
            },
        }
    }

    fn run(mut self) {
        loop {
            let mut closing = false;
            match self.wait() {
                Wake::Msg(m) => {
                    if !self.take(m) {
                        return;
                    }
                    if self.pending.is_empty() {
                        // Only flushes: everything queued before them was
                        // committed by an earlier batch.
                        self.answer(Ok(()));
                        continue;
                    }
                    // Group commit: at most one commit per window; what
                    // arrives meanwhile joins this one. The thread sleeps
                    // through the rest of the window rather than waiting on
                    // the queue: a sender wakes a thread that waits on it,
                    // a context switch per record on a busy switch. What
                    // came meanwhile is taken below.
                    if let Some(last) = self.last_commit {
                        let left = (last + COMMIT_WINDOW).saturating_duration_since(Instant::now());
                        if !left.is_zero() {
                            std::thread::sleep(left);
                        }
                    }
                }
                // A retry of a failed commit, or a heartbeat.
                Wake::Timer => {}
                Wake::Closed => closing = true,
            }
            loop {
                match self.rx.try_recv() {
                    Ok(m) => {
                        if !self.take(m) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closing = true;
                        break;
                    }
                }
            }
            if closing {
                self.finish();
                return;
            }
            // A flush wants everything queued before it in the journal.
            let hold_back = self.waiters.is_empty();
            self.commit(hold_back);
        }
    }

    /// The journal was dropped: commit what is left.
    fn finish(&mut self) {
        for attempt in 0..FINAL_ATTEMPTS {
            if self.pending.is_empty() {
                self.answer(Ok(()));
                return;
            }
            if attempt > 0 {
                std::thread::sleep(COMMIT_WINDOW);
            }
            if self.commit(false) {
                return;
            }
        }
        tracing::error!(
            records = self.pending.len(),
            "CDR journal: records lost at shutdown, the last commit failed"
        );
    }

    /// Commits `pending` in one transaction; tells the waiters. With
    /// `hold_back`, the opens that arrived since the last commit and are
    /// still open stay queued for the next one ([`Writer::write`]).
    fn commit(&mut self, hold_back: bool) -> bool {
        let result = self.write(hold_back);
        self.last_commit = Some(Instant::now());
        match result {
            Ok((open_channels, held)) => {
                let ops = std::mem::take(&mut self.pending);
                let committed = ops.len() - held.len();
                // The held-back opens (indices ascending) go back to the
                // front of the queue, in their order; the rest is done.
                let mut cdrs = 0usize;
                let mut held_at = held.iter().peekable();
                for (i, op) in ops.into_iter().enumerate() {
                    if held_at.next_if_eq(&&i).is_some() {
                        self.pending.push(op);
                    } else if matches!(op, Op::Close(_)) {
                        cdrs += 1;
                    }
                }
                self.carried = held.len();
                let c = &self.counters;
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.cdrs.fetch_add(cdrs as u64, Ordering::Relaxed);
                c.open_channels.store(open_channels, Ordering::Relaxed);
                c.queued.fetch_sub(committed as u64, Ordering::Relaxed);
                tracing::debug!(
                    records = committed,
                    held_back = held.len(),
                    cdrs,
                    open_channels,
                    "CDR journal commit"
                );
                if let Some(sink) = &mut self.jsonl {
                    sink.append_bytes(&self.lines);
                }
                self.answer(Ok(()));
                true
            }
            Err(e) => {
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    records = self.pending.len(),
                    error = %e,
                    "CDR journal commit failed; will try again"
                );
                self.answer(Err(e.to_string()));
                false
            }
        }
    }

    /// The transaction: opens inserted, closes appended with the next seqs
    /// and their opens removed, the commit time. Returns the open count
    /// and the indices (ascending) of the opens held back.
    ///
    /// A channel that opens and closes within one batch never touches the
    /// open table: its open record only lends the CDR its start, and a
    /// bridge of a channel opened in the batch is applied to the record
    /// before it is written. With `hold_back`, an open that arrived in
    /// this batch (not one held back already) and is still open is not
    /// written either: it waits, its bridges applied, for the next commit,
    /// one window on. Most calls are shorter than that, so the open table
    /// sees only the channels that outlive it, and under load (when calls
    /// last longer because everything is queued longer) the writer does
    /// not start paying an insert and a delete per channel. A crash thus
    /// cuts the channels up for more than about two windows (200 ms) at
    /// the time, not one.
    /// The CDRs' JSON lines go into `lines`, then into `cdr_rows` (one
    /// row, or more past [`ROW_MAX`]) and the JSON-lines copy.
    fn write(&mut self, hold_back: bool) -> Result<(u64, Vec<usize>)> {
        let plan = plan(&self.pending);
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate);
        let mut seq = self.next_seq;
        let open_channels;
        let mut held = Vec::new();
        self.lines.clear();
        {
            let mut rows = w.open_table(ROWS)?;
            let mut open = w.open_table(OPEN)?;
            let mut meta = w.open_table(META)?;
            for (i, step) in plan.into_iter().enumerate() {
                match step {
                    Step::Skip => {}
                    Step::Insert { other } => {
                        let other = other.and_then(|b| match &self.pending[b] {
                            Op::Bridge(b) => Some(b.1.clone()),
                            _ => None,
                        });
                        let Op::Open(o) = &mut self.pending[i] else {
                            continue;
                        };
                        if hold_back && i >= self.carried {
                            if other.is_some() {
                                o.other_leg_uuid = other;
                            }
                            held.push(i);
                            continue;
                        }
                        let bytes = match other {
                            None => to_json(&**o)?,
                            Some(other) => to_json(&Open {
                                other_leg_uuid: Some(other),
                                ..(**o).clone()
                            })?,
                        };
                        open.insert(o.uuid.as_str(), bytes.as_slice())?;
                    }
                    Step::Table | Step::CloseInBatch { .. } => match &mut self.pending[i] {
                        Op::Open(_) => {}
                        Op::Bridge(b) => {
                            let (uuid, other) = &**b;
                            let found = open
                                .get(uuid.as_str())?
                                .and_then(|v| serde_json::from_slice::<Open>(v.value()).ok());
                            if let Some(mut o) = found {
                                o.other_leg_uuid = Some(other.clone());
                                open.insert(uuid.as_str(), to_json(&o)?.as_slice())?;
                            }
                        }
                        Op::Close(c) => {
                            if let Step::CloseInBatch { start_us } = step {
                                c.start_us = c.start_us.min(start_us);
                            } else if let Some(old) = open.remove(c.uuid.as_str())? {
                                if let Ok(o) = serde_json::from_slice::<Open>(old.value()) {
                                    c.start_us = c.start_us.min(o.start_us);
                                }
                            }
                            c.seq = seq;
                            seq += 1;
                            serde_json::to_writer(&mut self.lines, &**c)?;
                            self.lines.push(b'\n');
                        }
                    },
                }
            }
            insert_rows(&mut rows, self.next_seq, &self.lines)?;
            meta.insert(LAST_COMMIT_US, now_us())?;
            open_channels = open.len()? + held.len() as u64;
        }
        w.commit()?;
        self.next_seq = seq;
        Ok((open_channels, held))
    }
}

/// What a commit does with one pending op (see [`Writer::write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing: an open closed later in the batch, or a bridge of an open
    /// of the batch (applied to it instead).
    Skip,
    /// Insert this open record; `other`: the index of the batch's last
    /// bridge of it, whose other leg the record names.
    Insert { other: Option<usize> },
    /// The op as it stands, through the open table (a bridge or close of a
    /// channel opened before this batch).
    Table,
    /// A close whose open is in this batch: that open's start.
    CloseInBatch { start_us: u64 },
}

/// Plans a batch for [`Writer::write`].
fn plan(pending: &[Op]) -> Vec<Step> {
    // The batch's opens not closed yet, by uuid.
    let mut opens: HashMap<&str, usize> = HashMap::new();
    let mut steps: Vec<Step> = Vec::with_capacity(pending.len());
    for (i, op) in pending.iter().enumerate() {
        let step = match op {
            Op::Open(o) => {
                opens.insert(o.uuid.as_str(), i);
                Step::Insert { other: None }
            }
            Op::Bridge(b) => match opens.get(b.0.as_str()) {
                Some(&at) => {
                    steps[at] = Step::Insert { other: Some(i) };
                    Step::Skip
                }
                None => Step::Table,
            },
            Op::Close(c) => match opens.remove(c.uuid.as_str()) {
                Some(at) => {
                    steps[at] = Step::Skip;
                    match &pending[at] {
                        Op::Open(o) => Step::CloseInBatch {
                            start_us: o.start_us,
                        },
                        _ => Step::Table,
                    }
                }
                None => Step::Table,
            },
        };
        steps.push(step);
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::record::{sample, CRASH_CAUSE};

    fn all(j: &Journal) -> Vec<Cdr> {
        j.list(0, usize::MAX).unwrap()
    }

    #[test]
    fn open_close_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/cdr.redb");
        let (j, cut) = Journal::open(&path).unwrap();
        assert!(cut.is_empty());
        let open = sample::open("u1", 3);
        j.opened(open.clone());
        j.flush().unwrap();
        assert_eq!(j.stats().open_channels, 1);
        let cdr = Cdr {
            start_us: open.start_us,
            ..sample::cdr("u1")
        };
        j.closed(cdr.clone());
        j.flush().unwrap();
        let stats = j.stats();
        assert_eq!((stats.cdrs, stats.open_channels, stats.queued), (1, 0, 0));
        assert_eq!(stats.failed_commits, 0);
        let listed = all(&j);
        assert_eq!(
            listed,
            vec![Cdr {
                seq: 1,
                ..cdr.clone()
            }]
        );
        drop(j);

        // A clean reopen cuts nothing and keeps the record.
        let (j, cut) = Journal::open(&path).unwrap();
        assert!(cut.is_empty());
        assert_eq!(all(&j), listed);
        assert_eq!(j.stats().cdrs, 1);
        // Seqs go on after the stored ones.
        j.closed(sample::cdr("u2"));
        j.flush().unwrap();
        assert_eq!(j.list(1, 10).unwrap()[0].seq, 2);
    }

    #[test]
    fn closes_from_many_threads_are_committed_once_in_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&dir.path().join("cdr.redb")).unwrap();
        let j = Arc::new(j);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let j = Arc::clone(&j);
                std::thread::spawn(move || {
                    for i in 0..250 {
                        let uuid = format!("t{t}-{i}");
                        j.opened(sample::open(&uuid, 1));
                        j.closed(sample::cdr(&uuid));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        j.flush().unwrap();
        let cdrs = all(&j);
        assert_eq!(cdrs.len(), 1000);
        let seqs: Vec<u64> = cdrs.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
        let uuids: BTreeSet<&str> = cdrs.iter().map(|c| c.uuid.as_str()).collect();
        let want: BTreeSet<String> = (0..4)
            .flat_map(|t| (0..250).map(move |i| format!("t{t}-{i}")))
            .collect();
        assert_eq!(uuids, want.iter().map(String::as_str).collect());
        // Each thread's closes keep their order.
        for t in 0..4 {
            let mine: Vec<&str> = cdrs
                .iter()
                .map(|c| c.uuid.as_str())
                .filter(|u| u.starts_with(&format!("t{t}-")))
                .collect();
            let expected: Vec<String> = (0..250).map(|i| format!("t{t}-{i}")).collect();
            assert_eq!(mine, expected);
        }
        let stats = j.stats();
        assert_eq!(
            (stats.cdrs, stats.open_channels, stats.queued),
            (1000, 0, 0)
        );
        // Paging.
        let page = j.list(500, 10).unwrap();
        assert_eq!(
            page.iter().map(|c| c.seq).collect::<Vec<_>>(),
            (501..=510).collect::<Vec<_>>()
        );
        assert!(j.list(1000, 10).unwrap().is_empty());
    }

    #[test]
    fn commits_are_grouped() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&dir.path().join("cdr.redb")).unwrap();
        let records = 1000;
        for i in 0..records {
            j.closed(sample::cdr(&format!("u{i}")));
        }
        j.flush().unwrap();
        let stats = j.stats();
        assert_eq!(stats.cdrs, records);
        assert!(
            stats.commits < records / 10,
            "{} commits for {records} records",
            stats.commits
        );
    }

    #[test]
    fn open_and_close_in_one_batch_leave_the_cdr_and_no_open_channel() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&dir.path().join("cdr.redb")).unwrap();
        for i in 0..100 {
            let uuid = format!("u{i}");
            j.opened(sample::open(&uuid, 1));
            j.closed(sample::cdr(&uuid));
        }
        j.flush().unwrap();
        assert_eq!(all(&j).len(), 100);
        assert_eq!(j.stats().open_channels, 0);
    }

    /// The uuids in the `open` table and the other legs they name.
    fn open_table(db: &Database) -> Vec<(String, Option<String>)> {
        let r = db.begin_read().unwrap();
        let t = r.open_table(OPEN).unwrap();
        t.iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                let o: Open = serde_json::from_slice(v.value()).unwrap();
                (k.value().to_owned(), o.other_leg_uuid)
            })
            .collect()
    }

    /// A writer driven by hand (no thread), on its own database.
    fn bare_writer(path: &Path) -> Writer {
        let db = Arc::new(Database::create(path).unwrap());
        let (_tx, rx) = mpsc::channel();
        let heartbeat = JournalOptions::default().heartbeat;
        Writer::new(db, rx, Arc::default(), 1, None, heartbeat)
    }

    #[test]
    fn a_new_open_still_up_waits_one_commit_with_its_bridge() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = bare_writer(&dir.path().join("cdr.redb"));
        let op = |o| Op::Open(Box::new(sample::open(o, 1)));
        w.pending = vec![
            op("a"),
            op("b"),
            Op::Bridge(Box::new(("a".into(), "b".into()))),
            op("c"),
            Op::Close(Box::new(sample::cdr("c"))),
        ];
        w.counters.queued.store(5, Ordering::Relaxed);
        assert!(w.commit(true));
        // c came and went: its CDR only. a and b are held back, a with
        // its bridge applied; the bridge and c's records are done.
        assert!(open_table(&w.db).is_empty());
        assert_eq!(w.carried, 2);
        let held: Vec<_> = w
            .pending
            .iter()
            .map(|op| match op {
                Op::Open(o) => (o.uuid.clone(), o.other_leg_uuid.clone()),
                _ => panic!("only opens are held back"),
            })
            .collect();
        assert_eq!(
            held,
            vec![("a".into(), Some("b".into())), ("b".into(), None)]
        );
        let stats = |w: &Writer| {
            let c = &w.counters;
            (
                c.cdrs.load(Ordering::Relaxed),
                c.open_channels.load(Ordering::Relaxed),
                c.queued.load(Ordering::Relaxed),
            )
        };
        assert_eq!(stats(&w), (1, 2, 2));

        // Next commit: b closed meanwhile, a is still up and written now,
        // naming b; d is new and held back in turn.
        w.pending.push(Op::Close(Box::new(sample::cdr("b"))));
        w.pending.push(op("d"));
        w.counters.queued.fetch_add(2, Ordering::Relaxed);
        assert!(w.commit(true));
        assert_eq!(open_table(&w.db), vec![("a".into(), Some("b".into()))]);
        assert_eq!(w.carried, 1);
        assert_eq!(stats(&w), (2, 2, 1));

        // Without hold-back (a flush, the last commit) d is written at once.
        w.pending.push(op("e"));
        w.counters.queued.fetch_add(1, Ordering::Relaxed);
        assert!(w.commit(false));
        let uuids: Vec<_> = open_table(&w.db).into_iter().map(|(u, _)| u).collect();
        assert_eq!(uuids, vec!["a", "d", "e"]);
        assert_eq!((w.carried, w.pending.len()), (0, 0));
        assert_eq!(stats(&w), (2, 3, 0));
    }

    #[test]
    fn a_held_back_open_reaches_the_table_a_window_later_without_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let (j, _) = Journal::open(&path).unwrap();
        j.opened(sample::open("a", 1));
        // Nothing else arrives: the writer still writes it, one window
        // after the commit that held it back.
        let until = Instant::now() + Duration::from_secs(10);
        while open_table(&j.db).is_empty() {
            assert!(Instant::now() < until, "the open never reached the table");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(j.stats().queued, 0);
        j.abandon();
        let (_, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].uuid, "a");
    }

    #[test]
    fn the_open_record_gives_an_earlier_start() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&dir.path().join("cdr.redb")).unwrap();
        let open = sample::open("u1", 60);
        j.opened(open.clone());
        let cdr = sample::cdr("u1");
        assert!(cdr.start_us > open.start_us);
        j.closed(cdr.clone());
        j.flush().unwrap();
        assert_eq!(all(&j)[0].start_us, open.start_us);
        // A later one does not replace it.
        let late = sample::open("u2", 0);
        j.opened(late);
        let cdr2 = sample::cdr("u2");
        j.closed(cdr2.clone());
        j.flush().unwrap();
        assert_eq!(all(&j)[1].start_us, cdr2.start_us);
    }

    #[test]
    fn crash_cuts_the_open_channels_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let (j, _) = Journal::open(&path).unwrap();
        let a = sample::open("a", 10);
        let b = sample::open("b", 5);
        j.opened(a);
        j.opened(b.clone());
        j.closed(sample::cdr("a"));
        j.flush().unwrap();
        assert_eq!(j.stats().open_channels, 1);
        let before_crash = now_us();
        j.abandon();

        let (j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut.len(), 1);
        let c = &cut[0];
        assert_eq!(c.uuid, "b");
        assert!(c.cut_by_crash);
        assert_eq!(c.hangup_cause, CRASH_CAUSE);
        assert_eq!(c.seq, 2);
        assert_eq!(c.start_us, b.start_us);
        assert_eq!(c.answer_us, None);
        assert_eq!(c.billsec_s, 0);
        // Ended at the last commit: after b's open and the close of a were
        // committed, before the journal was abandoned.
        assert!(c.end_us >= b.start_us + 5_000_000, "{c:?}");
        assert!(c.end_us <= before_crash);
        assert_eq!(c.duration_s, (c.end_us - c.start_us) / 1_000_000);
        assert!(c.duration_s >= 5);
        let listed = all(&j);
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (listed[0].uuid.as_str(), listed[0].cut_by_crash),
            ("a", false)
        );
        assert_eq!(&listed[1], c);
        assert_eq!(j.stats().open_channels, 0);
        drop(j);

        let (j, cut) = Journal::open(&path).unwrap();
        assert!(cut.is_empty());
        assert_eq!(all(&j), listed);
    }

    #[test]
    fn export_jsonl_lines_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&dir.path().join("cdr.redb")).unwrap();
        for i in 0..5 {
            let mut c = sample::cdr(&format!("u{i}"));
            c.caller_id_name = "Line\nbreak \"quoted\"".into();
            j.closed(c);
        }
        j.flush().unwrap();
        let mut out = Vec::new();
        assert_eq!(j.export_jsonl(&mut out).unwrap(), 5);
        let text = String::from_utf8(out).unwrap();
        let parsed: Vec<Cdr> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed, all(&j));
        assert_eq!(parsed.len(), 5);
    }

    #[test]
    fn jsonl_sink_gets_every_committed_cdr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let jsonl = dir.path().join("logs/cdr.jsonl");
        let options = JournalOptions {
            jsonl: Some(jsonl.clone()),
            ..JournalOptions::default()
        };
        let (j, _) = Journal::open_with(&path, options.clone()).unwrap();
        j.opened(sample::open("cut", 1));
        for i in 0..3 {
            j.closed(sample::cdr(&format!("u{i}")));
        }
        j.flush().unwrap();
        j.abandon();
        // The crash CDR of the reopen is appended too.
        let (j, cut) = Journal::open_with(&path, options).unwrap();
        assert_eq!(cut.len(), 1);
        let read = || -> Vec<Cdr> {
            std::fs::read_to_string(&jsonl)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(read(), all(&j));
        j.closed(sample::cdr("u3"));
        j.flush().unwrap();
        let lines = read();
        assert_eq!(lines, all(&j));
        assert_eq!(
            lines.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn a_jsonl_copy_left_behind_by_a_crash_catches_up_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let jsonl = dir.path().join("cdr.jsonl");
        let options = JournalOptions {
            jsonl: Some(jsonl.clone()),
            ..JournalOptions::default()
        };
        let (j, _) = Journal::open_with(&path, options.clone()).unwrap();
        for i in 0..4 {
            j.closed(sample::cdr(&format!("u{i}")));
        }
        j.opened(sample::open("cut", 1));
        j.flush().unwrap();
        j.abandon();
        // The copy lost its last two lines (the process died between the
        // commit and the append).
        let text = std::fs::read_to_string(&jsonl).unwrap();
        let kept: Vec<&str> = text.lines().take(2).collect();
        std::fs::write(&jsonl, format!("{}\n", kept.join("\n"))).unwrap();
        let (j, cut) = Journal::open_with(&path, options).unwrap();
        assert_eq!(cut.len(), 1);
        let lines: Vec<Cdr> = std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, all(&j));
        assert_eq!(
            lines.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn a_bridge_names_the_other_leg_of_channels_a_crash_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let (j, _) = Journal::open(&path).unwrap();
        j.opened(sample::open("a", 5));
        j.opened(sample::open("b", 4));
        j.bridged("a", "b");
        j.bridged("b", "a");
        j.bridged("gone", "a");
        j.flush().unwrap();
        j.abandon();
        let (_j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut.len(), 2);
        let other = |u: &str| {
            cut.iter()
                .find(|c| c.uuid == u)
                .and_then(|c| c.other_leg_uuid.clone())
        };
        assert_eq!(other("a").as_deref(), Some("b"));
        assert_eq!(other("b").as_deref(), Some("a"));
    }

    #[test]
    fn a_batch_plans_its_opens_bridges_and_closes() {
        let ops = vec![
            Op::Open(Box::new(sample::open("a", 5))),
            Op::Open(Box::new(sample::open("b", 4))),
            Op::Bridge(Box::new(("a".into(), "b".into()))),
            Op::Bridge(Box::new(("b".into(), "a".into()))),
            Op::Bridge(Box::new(("old".into(), "a".into()))),
            Op::Close(Box::new(sample::cdr("a"))),
            Op::Close(Box::new(sample::cdr("old"))),
        ];
        let start_a = match &ops[0] {
            Op::Open(o) => o.start_us,
            _ => unreachable!(),
        };
        assert_eq!(
            plan(&ops),
            vec![
                // a opens and closes in the batch: only its CDR is written
                Step::Skip,
                // b stays open, naming the other leg of the batch's bridge
                Step::Insert { other: Some(3) },
                Step::Skip,
                Step::Skip,
                // a channel of an earlier batch goes through the table
                Step::Table,
                Step::CloseInBatch { start_us: start_a },
                Step::Table,
            ]
        );
    }

    /// (first seq, line count) of every `cdr_rows` row.
    fn rows(j: &Journal) -> Vec<(u64, usize)> {
        let r = j.db.begin_read().unwrap();
        let t = r.open_table(ROWS).unwrap();
        t.iter()
            .unwrap()
            .map(|item| {
                let (k, v) = item.unwrap();
                (k.value(), lines(v.value()).count())
            })
            .collect()
    }

    #[test]
    fn a_big_commit_is_split_into_rows_and_pages_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let (j, _) = Journal::open(&path).unwrap();
        let total = 2 * ROW_MAX as u64 + 500;
        for i in 0..total {
            j.closed(sample::cdr(&format!("u{i}")));
        }
        j.flush().unwrap();
        let rows_seen = rows(&j);
        // Each row starts where the previous one ended and holds at most
        // ROW_MAX lines; together they hold every CDR.
        let mut next = 1;
        for &(first, n) in &rows_seen {
            assert_eq!(first, next, "{rows_seen:?}");
            assert!(n > 0 && n <= ROW_MAX, "{rows_seen:?}");
            next = first + n as u64;
        }
        assert_eq!(next, total + 1);
        assert!(rows_seen.len() >= 3, "{rows_seen:?}");
        // Pages that start and end inside rows and across their edges.
        for (after, limit) in [
            (0, 1),
            (ROW_MAX as u64 - 2, 5),
            (ROW_MAX as u64, 3),
            (total - 2, 10),
            (total, 10),
            (total + 7, 10),
        ] {
            let page = j.list(after, limit).unwrap();
            let want: Vec<u64> = (after + 1..=total).take(limit).collect();
            assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), want);
            for c in &page {
                assert_eq!(c.uuid, format!("u{}", c.seq - 1));
            }
        }
        assert!(j.list(0, 0).unwrap().is_empty());
        let mut out = Vec::new();
        assert_eq!(j.export_jsonl(&mut out).unwrap(), total);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count() as u64, total);
        drop(j);
        // The count and the next seq come back from the rows and `meta`.
        let (j, _) = Journal::open(&path).unwrap();
        assert_eq!(j.stats().cdrs, total);
        j.closed(sample::cdr("last"));
        j.flush().unwrap();
        let tail = j.list(total, 10).unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!((tail[0].seq, tail[0].uuid.as_str()), (total + 1, "last"));
        assert_eq!(j.stats().cdrs, total + 1);
    }

    #[test]
    fn a_journal_with_one_row_per_cdr_is_moved_to_rows_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        // A journal as earlier versions wrote it: `cdrs`, seq -> JSON, and
        // a channel left open.
        let old: Vec<Cdr> = (1..=3)
            .map(|seq| Cdr {
                seq,
                ..sample::cdr(&format!("old{seq}"))
            })
            .collect();
        {
            let db = Database::create(&path).unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut t = w.open_table(LEGACY_CDRS).unwrap();
                for c in &old {
                    t.insert(c.seq, to_json(c).unwrap().as_slice()).unwrap();
                }
                let mut open = w.open_table(OPEN).unwrap();
                let o = sample::open("cut", 2);
                open.insert("cut", to_json(&o).unwrap().as_slice()).unwrap();
                let mut meta = w.open_table(META).unwrap();
                meta.insert(LAST_COMMIT_US, now_us()).unwrap();
            }
            w.commit().unwrap();
        }
        let (j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut.len(), 1);
        assert_eq!((cut[0].uuid.as_str(), cut[0].seq), ("cut", 4));
        let listed = all(&j);
        assert_eq!(&listed[..3], &old[..]);
        assert_eq!(listed[3], cut[0]);
        assert_eq!(j.stats().cdrs, 4);
        {
            let r = j.db.begin_read().unwrap();
            assert!(
                r.open_table(LEGACY_CDRS).is_err(),
                "the one-row-per-CDR table is gone"
            );
        }
        j.closed(sample::cdr("new"));
        j.flush().unwrap();
        drop(j);
        let (j, cut) = Journal::open(&path).unwrap();
        assert!(cut.is_empty());
        let listed = all(&j);
        assert_eq!(
            listed.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(listed[4].uuid, "new");
        assert_eq!(j.stats().cdrs, 5);
    }

    #[test]
    fn a_journal_is_opened_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let (_j, _) = Journal::open(&path).unwrap();
        assert!(Journal::open(&path).is_err());
    }

    #[test]
    fn dropping_commits_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.redb");
        let (j, _) = Journal::open(&path).unwrap();
        for i in 0..50 {
            j.closed(sample::cdr(&format!("u{i}")));
        }
        drop(j);
        let (j, cut) = Journal::open(&path).unwrap();
        assert!(cut.is_empty());
        assert_eq!(all(&j).len(), 50);
    }
}
