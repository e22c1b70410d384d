//! The location service: SIP registrations, kept across restarts.
//!
//! Every binding (one Contact of one user) lives in three places: this
//! module's map (keyed by the contact URI, with the transport and source
//! address to reach it at), the core's [`Registrations`] (what the dialplan
//! host imports read for `sofia_contact` and `user/`), and an embedded
//! database file (`registrations.redb` in the state directory) so a
//! restart, even a `kill -9`, keeps every phone reachable without it
//! registering again. Changes are visible at once and written by one
//! writer thread that commits whatever has queued up in one transaction
//! (group commit), so the signalling tasks never wait on the disk; the
//! registrar answers 200 only once its binding is committed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use dialtone_core::registrations::{Registration, Registrations};

use crate::transport::Transport;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");

/// One registered contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The profile that took the registration.
    pub profile: String,
    /// The tenant (domain).
    pub domain: String,
    /// The user.
    pub user: String,
    /// The Contact URI as the phone sent it.
    pub contact: String,
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// User-Agent.
    pub user_agent: String,
    /// `udp` or `tcp`: how the phone reached us, and how we reach it.
    pub transport: String,
    /// Where the REGISTER came from: where the phone is reached (NAT).
    pub source: SocketAddr,
    /// Call-ID of the REGISTER (RFC 3261 10.3 ordering).
    pub call_id: String,
    /// CSeq of the REGISTER.
    pub cseq: u32,
}

impl Binding {
    fn key(&self) -> String {
        format!("{}\u{0}{}\u{0}{}", self.domain, self.user, self.contact)
    }

    /// The transport to reach the phone with.
    pub fn transport(&self) -> Transport {
        Transport::parse(&self.transport).unwrap_or(Transport::Udp)
    }

    fn registration(&self) -> Registration {
        Registration {
            endpoint: "sofia".into(),
            profile: self.profile.clone(),
            user: self.user.clone(),
            domain: self.domain.clone(),
            contact: self.contact.clone(),
            expires: self.expires,
            user_agent: self.user_agent.clone(),
            network_addr: self.source.to_string(),
        }
    }
}

/// One queued database change and who waits for it.
enum Write {
    Put(String, Vec<u8>, Done),
    Remove(String, Done),
}

/// Told when a change is committed (or failed to be).
pub type Done = Option<tokio::sync::oneshot::Sender<Result<(), String>>>;

/// The bindings in memory, with the indices a REGISTER and a call use (a
/// user's bindings, the binding of a contact), so neither scans them all.
#[derive(Default)]
struct Index {
    /// Key (`domain \0 user \0 contact`) -> binding.
    bindings: HashMap<String, Binding>,
    /// `domain \0 user` -> keys.
    by_user: HashMap<String, Vec<String>>,
    /// Contact, ASCII-lowercased -> keys.
    by_contact: HashMap<String, Vec<String>>,
}

fn user_key(domain: &str, user: &str) -> String {
    format!("{domain}\u{0}{user}")
}

impl Index {
    fn insert(&mut self, b: Binding) {
        let key = b.key();
        let (uk, ck) = (user_key(&b.domain, &b.user), b.contact.to_ascii_lowercase());
        // The same key is the same domain, user and contact: the indices
        // already hold it.
        if self.bindings.insert(key.clone(), b).is_none() {
            self.by_user.entry(uk).or_default().push(key.clone());
            self.by_contact.entry(ck).or_default().push(key);
        }
    }

    fn remove(&mut self, key: &str) -> Option<Binding> {
        let b = self.bindings.remove(key)?;
        for (map, k) in [
            (&mut self.by_user, user_key(&b.domain, &b.user)),
            (&mut self.by_contact, b.contact.to_ascii_lowercase()),
        ] {
            if let Some(keys) = map.get_mut(&k) {
                keys.retain(|x| x != key);
                if keys.is_empty() {
                    map.remove(&k);
                }
            }
        }
        Some(b)
    }
}

/// The location service.
pub struct Location {
    bindings: Mutex<Index>,
    writer: Option<Mutex<std::sync::mpsc::Sender<Write>>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    registrations: Arc<Registrations>,
}

impl Drop for Location {
    /// Lets the writer commit what is queued and close the database.
    fn drop(&mut self) {
        self.writer = None;
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

/// Most changes one commit takes.
const BATCH: usize = 1024;

/// Writes one batch in one transaction.
fn commit(db: &Database, batch: &[Write]) -> Result<(), Box<redb::Error>> {
    let w = db.begin_write().map_err(|e| Box::new(e.into()))?;
    {
        let mut t = w.open_table(TABLE).map_err(|e| Box::new(e.into()))?;
        for op in batch {
            match op {
                Write::Put(k, v, _) => {
                    t.insert(k.as_str(), v.as_slice())
                        .map_err(|e| Box::new(e.into()))?;
                }
                Write::Remove(k, _) => {
                    t.remove(k.as_str()).map_err(|e| Box::new(e.into()))?;
                }
            }
        }
    }
    w.commit().map_err(|e| Box::new(e.into()))?;
    Ok(())
}

fn writer_loop(db: Database, rx: std::sync::mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let result = commit(&db, &batch).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "registrations database commit failed");
        }
        for op in batch {
            let done = match op {
                Write::Put(_, _, d) | Write::Remove(_, d) => d,
            };
            if let Some(d) = done {
                let _ = d.send(result.clone());
            }
        }
    }
}

impl Location {
    /// Opens (or creates) the database at `path` and loads every unexpired
    /// binding into the core's registrations. `None` keeps bindings in
    /// memory only.
    pub fn open(
        path: Option<&Path>,
        registrations: Arc<Registrations>,
        now: u64,
    ) -> anyhow::Result<Location> {
        let db = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let db =
                    Database::create(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                let w = db.begin_write()?;
                w.open_table(TABLE)?;
                w.commit()?;
                Some(db)
            }
            None => None,
        };
        let loc = Location {
            bindings: Mutex::new(Index::default()),
            writer: None,
            writer_thread: None,
            registrations,
        };
        let mut expired = Vec::new();
        if let Some(db) = &db {
            let r = db.begin_read()?;
            let t = r.open_table(TABLE)?;
            for item in t.iter()? {
                let (k, v) = item?;
                match serde_json::from_slice::<Binding>(v.value()) {
                    Ok(b) if b.expires > now => {
                        loc.registrations.upsert(b.registration());
                        loc.bindings.lock().insert(b);
                    }
                    _ => expired.push(k.value().to_string()),
                }
            }
        }
        if let Some(db) = &db {
            if !expired.is_empty() {
                let w = db.begin_write()?;
                {
                    let mut t = w.open_table(TABLE)?;
                    for k in &expired {
                        t.remove(k.as_str())?;
                    }
                }
                w.commit()?;
            }
        }
        let mut loc = loc;
        if let Some(db) = db {
            let (tx, rx) = std::sync::mpsc::channel();
            let t = std::thread::Builder::new()
                .name("sip-location-db".into())
                .spawn(move || writer_loop(db, rx))?;
            loc.writer = Some(Mutex::new(tx));
            loc.writer_thread = Some(t);
        }
        Ok(loc)
    }

    fn queue(&self, w: Write) -> Result<(), String> {
        match &self.writer {
            Some(tx) => tx
                .lock()
                .send(w)
                .map_err(|_| "registrations database writer stopped".to_string()),
            None => {
                let done = match w {
                    Write::Put(_, _, d) | Write::Remove(_, d) => d,
                };
                if let Some(d) = done {
                    let _ = d.send(Ok(()));
                }
                Ok(())
            }
        }
    }

    /// Adds or refreshes a binding: visible at once, committed by the
    /// writer thread, which tells `done` when it is on disk.
    pub fn upsert(&self, b: Binding, done: Done) -> anyhow::Result<()> {
        let value = serde_json::to_vec(&b)?;
        self.queue(Write::Put(b.key(), value, done))
            .map_err(anyhow::Error::msg)?;
        self.registrations.upsert(b.registration());
        self.bindings.lock().insert(b);
        Ok(())
    }

    /// Removes a binding; returns whether it existed. `done` as for
    /// [`Self::upsert`].
    pub fn remove(
        &self,
        domain: &str,
        user: &str,
        contact: &str,
        done: Done,
    ) -> anyhow::Result<bool> {
        let key = format!("{domain}\u{0}{user}\u{0}{contact}");
        self.queue(Write::Remove(key.clone(), done))
            .map_err(anyhow::Error::msg)?;
        self.registrations.remove(domain, "sofia", user, contact);
        Ok(self.bindings.lock().remove(&key).is_some())
    }

    /// Unexpired bindings of a user, newest expiry first.
    pub fn of_user(&self, domain: &str, user: &str, now: u64) -> Vec<Binding> {
        let idx = self.bindings.lock();
        let mut v: Vec<Binding> = idx
            .by_user
            .get(&user_key(domain, user))
            .into_iter()
            .flatten()
            .filter_map(|k| idx.bindings.get(k))
            .filter(|b| b.expires > now)
            .cloned()
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.expires));
        v
    }

    /// The binding whose registered Contact is `contact` (compared as
    /// written, or as the same URI ignoring case of scheme and host).
    pub fn by_contact(&self, contact: &str, now: u64) -> Option<Binding> {
        let idx = self.bindings.lock();
        let keys = idx.by_contact.get(&contact.to_ascii_lowercase())?;
        let live = || {
            keys.iter()
                .filter_map(|k| idx.bindings.get(k))
                .filter(|b| b.expires > now)
        };
        live()
            .find(|b| b.contact == contact)
            .or_else(|| live().next())
            .cloned()
    }

    /// Every unexpired binding, by domain, user and contact.
    pub fn all(&self, now: u64) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .bindings
            .lock()
            .bindings
            .values()
            .filter(|b| b.expires > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.domain, &a.user, &a.contact).cmp(&(&b.domain, &b.user, &b.contact)));
        v
    }

    /// Number of unexpired bindings.
    pub fn count(&self, now: u64) -> usize {
        self.bindings
            .lock()
            .bindings
            .values()
            .filter(|b| b.expires > now)
            .count()
    }

    /// Drops expired bindings from memory and disk.
    pub fn purge(&self, now: u64) {
        let gone: Vec<Binding> = self
            .bindings
            .lock()
            .bindings
            .values()
            .filter(|b| b.expires <= now)
            .cloned()
            .collect();
        for b in gone {
            if let Err(e) = self.remove(&b.domain, &b.user, &b.contact, None) {
                tracing::warn!(error = %e, "could not purge an expired registration");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(contact: &str, expires: u64) -> Binding {
        Binding {
            profile: "internal".into(),
            domain: "d.test".into(),
            user: "1000".into(),
            contact: contact.into(),
            expires,
            user_agent: "ua".into(),
            transport: "udp".into(),
            source: "127.0.0.1:5100".parse().unwrap(),
            call_id: "c".into(),
            cseq: 1,
        }
    }

    #[test]
    fn survives_reopen_and_forgets_expired() {
        let dir = std::env::temp_dir().join(format!("dialtone-loc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("registrations.redb");
        {
            let regs = Arc::new(Registrations::new());
            let loc = Location::open(Some(&path), regs.clone(), 100).unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel();
            loc.upsert(binding("sip:1000@10.9.9.9:5060", 1000), None)
                .unwrap();
            loc.upsert(binding("sip:1000@10.9.9.9:5062", 150), Some(tx))
                .unwrap();
            // The writer commits in order: the last one done means both are.
            rx.blocking_recv().unwrap().unwrap();
            assert_eq!(loc.count(100), 2);
            assert_eq!(regs.lookup("d.test", "sofia", "", "1000", 100).len(), 2);
        }
        let regs = Arc::new(Registrations::new());
        let loc = Location::open(Some(&path), regs.clone(), 200).unwrap();
        assert_eq!(loc.count(200), 1, "the one expired at 150 is gone");
        let b = loc.by_contact("sip:1000@10.9.9.9:5060", 200).unwrap();
        assert_eq!(b.source.port(), 5100);
        assert_eq!(regs.lookup("d.test", "sofia", "", "1000", 200).len(), 1);
        assert!(loc
            .remove("d.test", "1000", "sip:1000@10.9.9.9:5060", None)
            .unwrap());
        assert_eq!(loc.count(200), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn user_and_contact_indices_follow_upserts_and_removals() {
        let regs = Arc::new(Registrations::new());
        let loc = Location::open(None, regs.clone(), 0).unwrap();
        for u in 0..2000 {
            let mut b = binding(&format!("sip:{u}@10.9.9.9:5060"), 1000);
            b.user = u.to_string();
            loc.upsert(b, None).unwrap();
        }
        // A second contact for 1500, and a refresh of its first one.
        let mut b = binding("sip:1500@10.9.9.10:5062", 900);
        b.user = "1500".into();
        loc.upsert(b, None).unwrap();
        let mut b = binding("sip:1500@10.9.9.9:5060", 1200);
        b.user = "1500".into();
        loc.upsert(b, None).unwrap();
        assert_eq!(loc.count(0), 2001);
        let of = loc.of_user("d.test", "1500", 0);
        assert_eq!(of.len(), 2);
        assert_eq!(of[0].expires, 1200, "newest expiry first");
        assert_eq!(loc.of_user("d.test", "1500", 1000).len(), 1);
        assert!(loc.of_user("e.test", "1500", 0).is_empty());
        // Contacts match as written or ignoring ASCII case.
        assert_eq!(
            loc.by_contact("SIP:1500@10.9.9.10:5062", 0).unwrap().user,
            "1500"
        );
        assert!(loc.by_contact("sip:1500@10.9.9.10:5062", 950).is_none());
        assert!(loc
            .remove("d.test", "1500", "sip:1500@10.9.9.10:5062", None)
            .unwrap());
        assert!(loc.by_contact("sip:1500@10.9.9.10:5062", 0).is_none());
        assert_eq!(loc.of_user("d.test", "1500", 0).len(), 1);
        assert_eq!(regs.lookup("d.test", "sofia", "", "1500", 0).len(), 1);
        loc.purge(1100);
        assert_eq!(loc.count(0), 1);
        assert_eq!(loc.of_user("d.test", "1500", 0).len(), 1);
        assert!(loc.of_user("d.test", "7", 0).is_empty());
        assert_eq!(regs.count(0), 1);
    }
}
