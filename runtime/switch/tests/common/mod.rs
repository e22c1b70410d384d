//! The switch as a child process for end-to-end tests: a copy of the
//! default configuration with its own SIP ports, RTP range and state
//! directory, its log kept in a file, and leak checks.

#![allow(dead_code)]

pub mod esl;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn components() -> PathBuf {
    std::env::var("DIALTONE_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("build/components"))
}

/// A running switch on its own ports.
pub struct Running {
    pub log_path: PathBuf,
    pub child: Child,
    pub _dir: tempfile::TempDir,
    pub internal: u16,
    pub external: u16,
    /// TLS ports of the internal and external profiles.
    pub internal_tls: u16,
    pub external_tls: u16,
    pub rtp: (u16, u16),
    /// The event socket (ESL) port: `base + 3000`; password `ClueCon`.
    pub esl: u16,
    /// The HTTP port (`/metrics`, tenant uploads): `base + 4000`.
    pub http: u16,
    pub log: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    /// Starts a switch whose profiles listen on `base` (internal) and
    /// `base + 1` (external), TLS on `base + 2` and `base + 3`, RTP on
    /// `rtp_base..rtp_base+200`, the event socket on `base + 3000` and HTTP
    /// on `base + 4000`. Tests run in parallel: a new base must differ from
    /// every other test's base by more than 3, and by anything but 1000
    /// (its event socket would be another's HTTP port).
    pub fn start(base: u16, rtp_base: u16) -> Running {
        Running::start_in(tempfile::tempdir().unwrap(), base, rtp_base, "")
    }

    /// The same in `dir` (kept across a restart), with `tenant_extra`
    /// appended to the tenant file.
    pub fn start_in(
        dir: tempfile::TempDir,
        base: u16,
        rtp_base: u16,
        tenant_extra: &str,
    ) -> Running {
        Running::start_with(dir, base, rtp_base, tenant_extra, "")
    }

    /// The same with `main_extra` appended to dialtone.toml.
    pub fn start_with(
        dir: tempfile::TempDir,
        base: u16,
        rtp_base: u16,
        tenant_extra: &str,
        main_extra: &str,
    ) -> Running {
        Running::start_edited(dir, base, rtp_base, tenant_extra, main_extra, &[])
    }

    /// The same with each `(from, to)` of `edits` replaced in dialtone.toml
    /// after the port changes (every `from` must be there).
    pub fn start_edited(
        dir: tempfile::TempDir,
        base: u16,
        rtp_base: u16,
        tenant_extra: &str,
        main_extra: &str,
        edits: &[(&str, &str)],
    ) -> Running {
        Running::start_full(dir, base, rtp_base, "", tenant_extra, main_extra, edits)
    }

    /// The same with `tenant_top` (top-level keys, e.g.
    /// `api_tokens_sha256 = [...]`) put at the start of the tenant file.
    pub fn start_full(
        dir: tempfile::TempDir,
        base: u16,
        rtp_base: u16,
        tenant_top: &str,
        tenant_extra: &str,
        main_extra: &str,
        edits: &[(&str, &str)],
    ) -> Running {
        let conf = dir.path().join("conf");
        std::fs::create_dir_all(conf.join("tenants")).unwrap();
        let comps = components();
        let main = std::fs::read_to_string(repo().join("conf/dialtone.toml"))
            .unwrap()
            .replace("../build/components/", &format!("{}/", comps.display()))
            .replace(
                "state_dir = \"../var\"",
                &format!("state_dir = \"{}\"", dir.path().join("var").display()),
            )
            .replace(
                "cache_dir = \"../var/cache/components\"",
                &format!("cache_dir = \"{}\"", dir.path().join("cache").display()),
            )
            .replace("127.0.0.1:5060", &format!("127.0.0.1:{base}"))
            .replace("127.0.0.1:5080", &format!("127.0.0.1:{}", base + 1))
            .replace("127.0.0.1:5061", &format!("127.0.0.1:{}", base + 2))
            .replace("127.0.0.1:5081", &format!("127.0.0.1:{}", base + 3))
            .replace("127.0.0.1:8021", &format!("127.0.0.1:{}", base + 3000))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", base + 4000))
            .replace(
                "rtp_port_min = 16384",
                &format!("rtp_port_min = {rtp_base}"),
            )
            .replace(
                "rtp_port_max = 32767",
                &format!("rtp_port_max = {}", rtp_base + 199),
            );
        let main = edits.iter().fold(main, |m, (from, to)| {
            assert!(m.contains(from), "no `{from}` in conf/dialtone.toml");
            m.replace(from, to)
        });
        let main = if main_extra.is_empty() {
            main
        } else {
            // Inserted before [media], still inside [sip]'s reach.
            main.replacen("\n[media]\n", &format!("\n{main_extra}\n[media]\n"), 1)
        };
        std::fs::write(conf.join("dialtone.toml"), main).unwrap();
        let tenant = std::fs::read_to_string(repo().join("conf/tenants/dialtone.local.toml"))
            .unwrap()
            .replace("../../build/components/", &format!("{}/", comps.display()));
        let tenant = if tenant_extra.is_empty() {
            tenant
        } else {
            // Replace user 1019's entry with the test's.
            let start = tenant.find("[users.1019]").unwrap();
            let end = start + tenant[start..].find("\n\n").unwrap();
            format!("{}{}{}", &tenant[..start], tenant_extra, &tenant[end..])
        };
        let tenant = format!("{tenant_top}\n{tenant}");
        std::fs::write(conf.join("tenants/dialtone.local.toml"), tenant).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dialtone"))
            .arg("--conf")
            .arg(&conf)
            .arg("run")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let log_path = dir.path().join("switch.log");
        let log_file = log_path.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(log_file).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        let mut r = Running {
            log_path,
            child,
            _dir: dir,
            internal: base,
            external: base + 1,
            internal_tls: base + 2,
            external_tls: base + 3,
            rtp: (rtp_base, rtp_base + 199),
            esl: base + 3000,
            http: base + 4000,
            log: rx,
            seen: Vec::new(),
        };
        r.wait_for("dialtone running");
        while r
            .seen
            .iter()
            .filter(|l| l.contains("SIP profile listening"))
            .count()
            < 2
        {
            r.wait_for_new("SIP profile listening");
        }
        r
    }

    pub fn wait_for(&mut self, what: &str) {
        if self.seen.iter().any(|l| l.contains(what)) {
            return;
        }
        self.wait_for_new(what)
    }

    pub fn wait_for_new(&mut self, what: &str) {
        let end = Instant::now() + Duration::from_secs(90);
        while Instant::now() < end {
            if let Ok(l) = self.log.recv_timeout(Duration::from_millis(100)) {
                let hit = l.contains(what);
                self.seen.push(l);
                if hit {
                    return;
                }
            }
        }
        panic!("no `{what}` in the log:\n{}", self.seen.join("\n"));
    }

    /// The switch's log so far.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// UDP sockets the switch holds in its RTP range.
    pub fn rtp_sockets(&self) -> usize {
        let out = Command::new("ss")
            .args(["-Huanp"])
            .output()
            .expect("ss (iproute2) is needed to count RTP sockets");
        let pid = format!("pid={},", self.child.id());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&pid))
            .filter_map(|l| {
                let local = l.split_whitespace().nth(3)?;
                local.rsplit(':').next()?.parse::<u16>().ok()
            })
            .filter(|p| (self.rtp.0..=self.rtp.1).contains(p))
            .count()
    }

    /// The switch's latest `load` line.
    pub fn last_load(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        text.lines()
            .rev()
            .find(|l| l.contains(": load ") && l.contains("channels="))
            .map(str::to_string)
    }

    /// Channels, SIP calls, transactions and RTP ports return to zero
    /// within 40 s (UDP transactions linger up to 64*T1 = 32 s by design):
    /// the switch's own count, and its RTP sockets counted from outside.
    pub fn assert_no_leaks(&self) {
        self.assert_no_leaks_but(false)
    }

    /// Checks the early SDP a SIPp caller logged (`early media: c=... m=audio
    /// PORT`, see uac_early_media.xml): its media port must be one of the
    /// switch's, not the far end's.
    pub fn assert_early_sdp_is_ours(&self, log: &str) {
        let port: u16 = log
            .split("m=audio ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no early SDP logged:\n{log}"));
        assert!(
            (self.rtp.0..=self.rtp.1).contains(&port),
            "the 183's SDP does not point at the switch: port {port}"
        );
    }

    /// The same, ignoring live transactions when `pinging` (a gateway's
    /// OPTIONS pings keep transactions alive by design).
    pub fn assert_no_leaks_but(&self, pinging: bool) {
        let end = Instant::now() + Duration::from_secs(40);
        loop {
            let n = self.rtp_sockets();
            let load = self.last_load().unwrap_or_default();
            let zero = if pinging {
                load.contains("channels=0 sip_calls=0 ") && load.contains("rtp_ports=0")
            } else {
                load.contains("channels=0 sip_calls=0 transactions=0 rtp_ports=0")
            };
            if n == 0 && zero {
                return;
            }
            assert!(
                Instant::now() < end,
                "after 40 s: {n} RTP sockets open; last load line: {load}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Running {
    /// `kill -9`: no chance to save anything. Returns the state directory.
    pub fn kill9(mut self) -> tempfile::TempDir {
        signal_and_reap(&mut self.child, "-KILL");
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._dir, dir)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        signal_and_reap(&mut self.child, "-TERM");
    }
}

/// Sends `signal` (`-TERM`, `-KILL`) to a process the test started and
/// waits for it to exit.
pub fn signal_and_reap(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}
