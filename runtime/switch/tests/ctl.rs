//! `dialtone ctl` end to end: the built binary against a running switch's
//! event socket.
//!
//! - One-shot mode (`-x`) runs as a plain child process: its stdout, stderr
//!   and exit code are checked.
//! - The interactive prompt runs in a detached tmux session of its own (a
//!   private tmux server per test, `-L <socket>`, killed when the test ends
//!   even on failure), driven with `send-keys` and read with `capture-pane`.
//!   The pane runs a small script that writes ctl's exit status to a file.
//!
//! Nothing here measures time: every wait polls for what must appear and
//! gives up only after a generous bound, printing what it saw instead.
//!
//! Ports: switches on 6040 and 6050 (SIP 6040-6043 and 6050-6053, ESL on
//! 9040 and 9050, HTTP on 10040 and 10050, RTP from 28000 and 28200), SIPp
//! on 6140 (media from 6144). Each switch base has a lock, so
//! the tests stay correct even when the harness runs them in parallel.

mod common;

use common::Running;
use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long any one wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

const EVENTS: &str = "CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB CUSTOM";

const PROMPT: &str = "dialtone> ";

const SIPP_PORT: u16 = 6140;
const SIPP_MEDIA_PORT: u16 = 6144;

static BASE_6040: Mutex<()> = Mutex::new(());
static BASE_6050: Mutex<()> = Mutex::new(());

/// Starts a switch on `base` (6040 or 6050) while holding that base's lock.
fn switch(base: u16) -> (MutexGuard<'static, ()>, Running) {
    let (lock, rtp) = match base {
        6040 => (&BASE_6040, 28000),
        6050 => (&BASE_6050, 28200),
        _ => panic!("this file uses switch bases 6040 and 6050 only"),
    };
    let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    (guard, Running::start(base, rtp))
}

/// Stops the switch with SIGTERM (by its PID) and waits for it; removes its
/// state directory. `Running`'s own drop is skipped: it would signal the
/// already reaped PID again.
fn stop_switch(sw: Running) {
    let mut sw = ManuallyDrop::new(sw);
    common::signal_and_reap(&mut sw.child, "-TERM");
    let _ = std::fs::remove_dir_all(sw._dir.path());
}

fn dialtone() -> &'static str {
    env!("CARGO_BIN_EXE_dialtone")
}

/// Polls `probe` until it gives a value, for at most [`WAIT`]; on timeout
/// fails with `what` and the last thing `seen` described.
fn poll<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + WAIT;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= end => {
                panic!("gave up waiting for {what}; last seen:\n{seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ---------------------------------------------------------------------------
// One-shot mode

/// Runs `dialtone ctl ARGS` with `password_env` as DIALTONE_ESL_PASSWORD
/// (unset when `None`).
fn ctl(args: &[&str], password_env: Option<&str>) -> Output {
    let mut cmd = Command::new(dialtone());
    cmd.arg("ctl")
        .args(args)
        .env_remove("DIALTONE_ESL_PASSWORD")
        .stdin(Stdio::null());
    if let Some(pw) = password_env {
        cmd.env("DIALTONE_ESL_PASSWORD", pw);
    }
    cmd.output().expect("dialtone ctl runs")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn one_shot_status_errors_and_password() {
    let (_lock, sw) = switch(6040);
    let port = sw.esl.to_string();

    // `-x status` prints the status body and exits 0.
    let o = ctl(&["--port", &port, "-x", "status"], None);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.starts_with("UP "), "{}", show(&o));
    assert!(out.contains("is ready"), "{}", show(&o));
    assert!(out.ends_with('\n'), "{}", show(&o));
    assert_eq!(stderr(&o), "", "{}", show(&o));

    // An unknown command: the switch's -ERR, printed, and exit 1.
    let o = ctl(&["--port", &port, "-x", "bogus"], None);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stdout(&o).contains("-ERR bogus Command not found!"),
        "{}",
        show(&o)
    );

    // Several commands run in order over one connection; one failure makes
    // the exit code 1 but the others still print.
    let o = ctl(
        &[
            "--port", &port, "-x", "status", "-x", "bogus", "-x", "version",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = stdout(&o);
    let (up, err, ver) = (
        out.find("UP ").expect("status body"),
        out.find("-ERR bogus Command not found!")
            .expect("-ERR line"),
        out.find("Dialtone Version").expect("version body"),
    );
    assert!(up < err && err < ver, "{}", show(&o));

    // A wrong password is refused: exit 1, the reason on stderr, nothing on
    // stdout.
    let o = ctl(
        &["--port", &port, "--password", "not-ClueCon", "-x", "status"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stdout(&o).is_empty(), "{}", show(&o));
    assert!(
        stderr(&o).contains("authentication refused"),
        "{}",
        show(&o)
    );

    // DIALTONE_ESL_PASSWORD is the password when --password is not given:
    // the right one logs in, a wrong one is refused.
    let o = ctl(&["--port", &port, "-x", "status"], Some("ClueCon"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).starts_with("UP "), "{}", show(&o));
    let o = ctl(&["--port", &port, "-x", "status"], Some("not-ClueCon"));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("authentication refused"),
        "{}",
        show(&o)
    );
    // --password wins over the environment.
    let o = ctl(
        &["--port", &port, "--password", "ClueCon", "-x", "status"],
        Some("not-ClueCon"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).starts_with("UP "), "{}", show(&o));
}

// ---------------------------------------------------------------------------
// Interactive mode under tmux

/// Single-quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `dialtone ctl` at its prompt in a private, detached tmux server. The
/// server is killed on drop, which ends the pane's processes.
struct Tmux {
    socket: String,
    /// The server's socket file, removed on drop (kill-server leaves it).
    socket_path: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `dialtone ctl --port ESL --no-color --history FILE --events
    /// EVENTS` in a 200x50 pane; the pane stays after ctl exits, and the
    /// exit status goes to the file `status`.
    fn start(test: &str, esl: u16) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("dialtone-ctl-test-{}-{test}", std::process::id());
        let conf = dir.path().join("tmux.conf");
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g status off\nset -g history-limit 20000\n",
        )
        .unwrap();
        let history = dir.path().join("history");
        let status = dir.path().join("status");
        let script = dir.path().join("run.sh");
        std::fs::write(
            &script,
            format!(
                "unset DIALTONE_ESL_PASSWORD NO_COLOR\n\
                 {bin} ctl --port {esl} --no-color --history {history} --events {events}\n\
                 echo $? > {status}.tmp && mv {status}.tmp {status}\n",
                bin = sh_quote(dialtone()),
                history = sh_quote(&history.display().to_string()),
                events = sh_quote(EVENTS),
                status = sh_quote(&status.display().to_string()),
            ),
        )
        .unwrap();
        let mut t = Tmux {
            socket,
            socket_path: None,
            dir,
        };
        t.tmux_ok(&[
            "-f",
            &conf.display().to_string(),
            "new-session",
            "-d",
            "-s",
            "ctl",
            "-x",
            "200",
            "-y",
            "50",
            &format!("sh {}", sh_quote(&script.display().to_string())),
        ]);
        let path = t.tmux_ok(&["display-message", "-p", "#{socket_path}"]);
        t.socket_path = Some(PathBuf::from(path.trim()));
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("tmux runs")
    }

    fn tmux_ok(&self, args: &[&str]) -> String {
        let o = self.tmux(args);
        assert!(o.status.success(), "tmux {args:?}: {}", show(&o));
        stdout(&o)
    }

    /// Everything the pane shows and has scrolled off, wrapped lines joined.
    fn capture(&self) -> String {
        self.tmux_ok(&["capture-pane", "-p", "-J", "-S", "-", "-t", "ctl"])
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        self.tmux_ok(&["send-keys", "-t", "ctl", "-l", "--", text]);
        self.tmux_ok(&["send-keys", "-t", "ctl", "Enter"]);
    }

    /// Presses one key (tmux key name, e.g. `C-d`).
    fn key(&self, key: &str) {
        self.tmux_ok(&["send-keys", "-t", "ctl", key]);
    }

    /// Waits until `probe` finds what it wants in the pane.
    fn wait<T>(&self, what: &str, mut probe: impl FnMut(&str) -> Option<T>) -> T {
        poll(what, || {
            let pane = self.capture();
            probe(&pane).ok_or(pane)
        })
    }

    /// Waits until the pane contains `text`; returns the pane.
    fn wait_for(&self, text: &str) -> String {
        self.wait(&format!("`{text}` in the pane"), |p| {
            p.contains(text).then(|| p.to_string())
        })
    }

    /// Waits until the last command line `dialtone> LINE` is followed by
    /// the next prompt; returns the reply printed between them, each line
    /// with its line break, event lines left out (events may print at any
    /// time).
    fn reply_to(&self, line: &str) -> String {
        let typed = format!("{PROMPT}{line}");
        self.wait(&format!("the reply to `{line}`"), |p| {
            let lines: Vec<&str> = p.lines().collect();
            let at = lines.iter().rposition(|l| l.trim_end() == typed)?;
            let rest = &lines[at + 1..];
            let end = rest.iter().position(|l| is_prompt(l))?;
            Some(
                rest[..end]
                    .iter()
                    .filter(|l| !l.starts_with("[EVENT] "))
                    .map(|l| format!("{l}\n"))
                    .collect(),
            )
        })
    }

    /// Waits for ctl's exit status (written when it exits).
    fn wait_exit(&self) -> i32 {
        let path = self.dir.path().join("status");
        poll("dialtone ctl to exit", || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| self.capture())
        })
    }

    fn history(&self) -> PathBuf {
        self.dir.path().join("history")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// SIPp answering one call on [`SIPP_PORT`] (uas_answer.xml); killed by PID
/// on drop unless it has finished.
struct Sipp {
    child: Child,
    dir: tempfile::TempDir,
}

impl Sipp {
    fn answer_one_call() -> Sipp {
        let dir = tempfile::tempdir().unwrap();
        let scenario = common::repo().join("tests/sip/sipp/uas_answer.xml");
        let out = std::fs::File::create(dir.path().join("sipp.out")).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-p", &SIPP_PORT.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &SIPP_MEDIA_PORT.to_string()])
            .args(["-t", "u1", "-m", "1", "-nostdin"])
            .args([
                "-recv_timeout",
                "50000",
                "-timeout",
                "55s",
                "-timeout_error",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("sipp is not installed: run scripts/install-peers.sh");
        let mut s = Sipp { child, dir };
        // Listening once its SIP port is taken.
        poll("SIPp to listen", || {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("SIPp exited early ({st}):\n{}", s.output());
            }
            match std::net::UdpSocket::bind(("127.0.0.1", SIPP_PORT)) {
                Ok(_) => Err(format!("nothing on udp/{SIPP_PORT} yet")),
                Err(_) => Ok(()),
            }
        });
        s
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sipp.out")).unwrap_or_default()
    }

    /// Waits for SIPp to finish; its exit code (0: the call went as scripted).
    fn wait(&mut self) -> i32 {
        let st = poll("SIPp to finish", || match self.child.try_wait() {
            Ok(Some(st)) => Ok(st),
            _ => Err(self.output()),
        });
        st.code().unwrap_or(-1)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A prompt line: `dialtone> `, with or without something typed after it.
fn is_prompt(line: &str) -> bool {
    line.starts_with(PROMPT) || line.trim_end() == PROMPT.trim_end()
}

/// The lines of `pane` that start with `prefix`.
fn lines_with<'a>(pane: &'a str, prefix: &str) -> Vec<&'a str> {
    pane.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The first whitespace-separated word after `key` in `line`.
fn word_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)?;
    line[at + key.len()..].split_whitespace().next()
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

#[test]
fn interactive_call_events_and_history() {
    let (_lock, sw) = switch(6050);
    let mut uas = Sipp::answer_one_call();
    let tmux = Tmux::start("call", sw.esl);

    // The banner, with the subscription.
    let pane = tmux.wait_for("Connected to");
    assert!(
        pane.contains(&format!(
            "Connected to 127.0.0.1:{}. Events: {EVENTS}.",
            sw.esl
        )),
        "{pane}"
    );
    assert!(!pane.contains("[ERROR]"), "{pane}");

    // An API command and its body, before the next prompt.
    tmux.type_line("status");
    let body = tmux.reply_to("status");
    assert!(body.starts_with("UP "), "{body}");
    assert!(body.contains("is ready"), "{body}");

    // A call in the background: the job is accepted at once, its result
    // (`+OK <uuid>` once answered) comes as a BACKGROUND_JOB event.
    let originate = format!("/bgapi originate sofia/internal/9196@127.0.0.1:{SIPP_PORT} 9196");
    tmux.type_line(&originate);
    let reply = tmux.reply_to(&originate);
    let job = reply
        .strip_prefix("+OK Job-UUID: ")
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("/bgapi replied `{reply}`"))
        .to_string();
    assert!(looks_like_uuid(&job), "job uuid `{job}`");
    let (bg_line, uuid) = tmux.wait(&format!("the BACKGROUND_JOB of job {job}"), |p| {
        let line = lines_with(p, "[EVENT] BACKGROUND_JOB ")
            .into_iter()
            .find(|l| l.contains(&format!("job={job}")))?;
        let uuid = word_after(line, "result=+OK ")?;
        Some((line.to_string(), uuid.to_string()))
    });
    assert!(looks_like_uuid(&uuid), "{bg_line}");
    assert!(bg_line.contains(" cmd=originate "), "{bg_line}");

    // The call's channel was created and answered, each event on one line.
    let pane = tmux.wait(&format!("CHANNEL_ANSWER of {uuid}"), |p| {
        lines_with(p, "[EVENT] CHANNEL_ANSWER ")
            .iter()
            .any(|l| l.contains(&format!("uuid={uuid}")))
            .then(|| p.to_string())
    });
    let created: Vec<&str> = lines_with(&pane, "[EVENT] CHANNEL_CREATE ")
        .into_iter()
        .filter(|l| l.contains(&format!("uuid={uuid}")))
        .collect();
    assert_eq!(created.len(), 1, "{pane}");
    let answered: Vec<&str> = lines_with(&pane, "[EVENT] CHANNEL_ANSWER ")
        .into_iter()
        .filter(|l| l.contains(&format!("uuid={uuid}")))
        .collect();
    assert_eq!(answered.len(), 1, "{pane}");
    assert!(answered[0].contains(" -> 9196"), "{pane}");

    // The channel is listed by `show channels`, in the reply itself.
    tmux.type_line("show channels");
    let listing = tmux.reply_to("show channels");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&format!("{uuid},outbound,"))),
        "{listing}"
    );
    assert!(listing.ends_with("\n1 total.\n"), "{listing}");

    // Hanging it up: +OK, then CHANNEL_HANGUP_COMPLETE for that uuid.
    let kill = format!("uuid_kill {uuid}");
    tmux.type_line(&kill);
    let reply = tmux.reply_to(&kill);
    assert_eq!(reply, "+OK\n", "uuid_kill replied `{reply}`");
    let hangup = tmux.wait(&format!("CHANNEL_HANGUP_COMPLETE of {uuid}"), |p| {
        lines_with(p, "[EVENT] CHANNEL_HANGUP_COMPLETE ")
            .into_iter()
            .find(|l| l.contains(&format!("uuid={uuid}")))
            .map(str::to_string)
    });
    assert!(hangup.contains("cause=NORMAL_CLEARING"), "{hangup}");
    // SIPp saw the whole call: INVITE, ACK, then the switch's BYE.
    let rc = uas.wait();
    assert_eq!(rc, 0, "SIPp (callee) failed:\n{}", uas.output());

    // A custom event: swapping the dialplan publishes dialtone::dialplan_swap.
    tmux.type_line("reload dialplan dialtone.local");
    let reply = tmux.reply_to("reload dialplan dialtone.local");
    assert!(
        reply.starts_with("+OK ") && reply.lines().count() == 1,
        "reload replied `{reply}`"
    );
    let swap = tmux.wait("the dialplan_swap event", |p| {
        lines_with(p, "[EVENT] CUSTOM dialtone::dialplan_swap")
            .first()
            .map(|l| l.to_string())
    });
    assert!(
        swap.starts_with("[EVENT] CUSTOM dialtone::dialplan_swap"),
        "{swap}"
    );

    // Leaving with /exit: status 0, and every command typed is in the
    // history file.
    tmux.type_line("/exit");
    let code = tmux.wait_exit();
    let pane = tmux.capture();
    assert_eq!(code, 0, "{pane}");
    assert!(!pane.contains("[ERROR]"), "{pane}");
    let history = std::fs::read_to_string(tmux.history()).unwrap_or_default();
    // rustyline's file starts with a `#V2` header line.
    let entries: Vec<&str> = history.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        entries,
        [
            "status",
            originate.as_str(),
            "show channels",
            kill.as_str(),
            "reload dialplan dialtone.local",
            "/exit",
        ],
        "the history file:\n{history}"
    );
    // The call's events came in order, and nothing printed from the
    // connection thread was glued to the prompt or to another line.
    let at = |prefix: &str| {
        pane.lines()
            .position(|l| l.starts_with(prefix) && l.contains(&format!("uuid={uuid}")))
            .unwrap_or_else(|| panic!("no `{prefix}` line for {uuid}:\n{pane}"))
    };
    assert!(
        at("[EVENT] CHANNEL_CREATE ") < at("[EVENT] CHANNEL_ANSWER ")
            && at("[EVENT] CHANNEL_ANSWER ") < at("[EVENT] CHANNEL_HANGUP_COMPLETE "),
        "{pane}"
    );
    for l in pane.lines() {
        assert!(
            !l.contains("[EVENT]") || l.starts_with("[EVENT] "),
            "garbled line `{l}` in:\n{pane}"
        );
        assert!(
            l.match_indices(PROMPT.trim_end()).all(|(i, _)| i == 0),
            "garbled line `{l}` in:\n{pane}"
        );
    }
    sw.assert_no_leaks();
}

#[test]
fn interactive_ctrl_d_exits_zero() {
    let (_lock, sw) = switch(6040);
    let tmux = Tmux::start("ctrl-d", sw.esl);
    tmux.wait_for("Connected to");
    tmux.type_line("version");
    // The reply, and the next prompt, which Ctrl-D then finds empty.
    let body = tmux.reply_to("version");
    assert!(body.starts_with("Dialtone Version "), "{body}");
    tmux.key("C-d");
    let code = tmux.wait_exit();
    let pane = tmux.capture();
    assert_eq!(code, 0, "{pane}");
    assert!(!pane.contains("[ERROR]"), "{pane}");
    let history = std::fs::read_to_string(tmux.history()).unwrap_or_default();
    assert!(history.lines().any(|l| l == "version"), "{history}");
}

#[test]
fn interactive_switch_stopped_exits_one() {
    let (_lock, sw) = switch(6050);
    let esl = sw.esl;
    let tmux = Tmux::start("lost", esl);
    tmux.wait_for("Connected to");
    tmux.type_line("status");
    let body = tmux.reply_to("status");
    assert!(body.starts_with("UP "), "{body}");
    // The switch goes away while ctl waits at its prompt.
    stop_switch(sw);
    let code = tmux.wait_exit();
    let pane = tmux.capture();
    assert_eq!(code, 1, "{pane}");
    let lost = format!("[ERROR] connection to 127.0.0.1:{esl} lost: ");
    assert!(
        pane.lines().any(|l| l.starts_with(&lost)),
        "no `{lost}...` line:\n{pane}"
    );
}
