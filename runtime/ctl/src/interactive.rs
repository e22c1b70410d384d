//! Interactive mode: the `dialtone> ` prompt.
//!
//! Owns the prompt loop and its `/` commands, and the connection thread that
//! runs the commands and prints events as they arrive.
//!
//! - The main thread reads lines (rustyline: editing, history loaded from and
//!   saved to `--history` after every line) and hands each to the connection
//!   thread as a [`Request`], then waits until it has been answered and the
//!   answer printed, so the next prompt comes after the output.
//! - The connection thread owns the [`EslClient`]. Between requests it waits
//!   on the socket and prints each event as one line (see [`crate::format`](mod@crate::format)).
//!   Everything it prints goes through one [`Printer`]: rustyline's
//!   `ExternalPrinter` on a terminal, which prints above the prompt and
//!   redraws it while a line is being typed; plain stdout otherwise.
//! - When the connection is lost the connection thread calls the `on_lost`
//!   hook. In the real CLI that restores the terminal, prints the error and
//!   exits the process with 1 at once (the prompt may be waiting for a key).
//!
//! Ctrl-D (EOF), `/exit`, `/quit` and `/bye` leave with 0; Ctrl-C clears the
//! line. Anything not starting with `/` is sent as `api`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::client::{EslClient, Incoming};
use crate::format::{format_error, format_event, format_log, format_reply};
use crate::CtlArgs;

pub(crate) const PROMPT: &str = "dialtone> ";

pub(crate) const HELP: &str = "\
Commands:
  CMD [ARGS]            run as `api CMD ARGS` and print the reply (e.g. status, show channels)
  /bgapi CMD [ARGS]     run in the background; the result comes as a BACKGROUND_JOB event
  /events [json] NAMES  replace the event subscription (e.g. /events CHANNEL_ANSWER CUSTOM dialtone::dialplan_swap)
  /noevents             stop all events
  /log [LEVEL]          receive log lines at LEVEL and above (default debug)
  /nolog                stop log lines
  /help                 this help
  /exit, /quit, /bye    leave (so does Ctrl-D)
Events print as one line each: [EVENT] NAME uuid=... CALLER -> DEST state=... cause=...";

/// Where output goes; one at a time (it is behind a mutex).
pub(crate) trait Printer: Send {
    /// Prints `text`, which ends with a line break.
    fn print(&mut self, text: String);
}

pub(crate) type Out = Arc<Mutex<Box<dyn Printer>>>;

/// Prints `text` with exactly one trailing line break added when missing.
pub(crate) fn emit(out: &Out, text: impl Into<String>) {
    let mut text = text.into();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if let Ok(mut p) = out.lock() {
        p.print(text);
    }
}

struct Stdout;

impl Printer for Stdout {
    fn print(&mut self, text: String) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
    }
}

struct External<P>(P);

impl<P: rustyline::ExternalPrinter + Send> Printer for External<P> {
    fn print(&mut self, text: String) {
        if let Err(_e) = self.0.print(text.clone()) {
            Stdout.print(text);
        }
    }
}

/// What reading a line gave.
pub(crate) enum Input {
    Line(String),
    /// Ctrl-C.
    Interrupted,
    /// Ctrl-D or the end of piped input.
    Eof,
    Failed(String),
}

/// Where lines come from: rustyline, or a test's script.
pub(crate) trait LineSource {
    fn read_line(&mut self, prompt: &str) -> Input;
    /// A line was entered: keep it in the history.
    fn remember(&mut self, _line: &str) {}
}

impl<F: FnMut(&str) -> Input> LineSource for F {
    fn read_line(&mut self, prompt: &str) -> Input {
        self(prompt)
    }
}

struct Readline {
    editor: Editor<(), FileHistory>,
    history: Option<PathBuf>,
}

impl LineSource for Readline {
    fn read_line(&mut self, prompt: &str) -> Input {
        match self.editor.readline(prompt) {
            Ok(line) => Input::Line(line),
            Err(ReadlineError::Interrupted) => Input::Interrupted,
            Err(ReadlineError::Eof) => Input::Eof,
            Err(e) => Input::Failed(e.to_string()),
        }
    }

    fn remember(&mut self, line: &str) {
        let _ = self.editor.add_history_entry(line);
        // Saved at once: a lost connection ends the process from another thread.
        if let Some(path) = &self.history {
            let _ = self.editor.save_history(path);
        }
    }
}

/// A request from the prompt to the connection thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Api(String),
    Bgapi(String),
    /// `noevents`, then `event FORMAT NAMES`.
    Events {
        json: bool,
        names: Vec<String>,
    },
    NoEvents,
    Log(String),
    NoLog,
    Exit,
}

/// What a line typed at the prompt means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    Help,
    /// A `/` command used wrongly or unknown: the message to print.
    Usage(String),
    Send(Request),
}

pub(crate) fn parse_line(line: &str) -> Action {
    let line = line.trim();
    if line.is_empty() {
        return Action::Nothing;
    }
    let Some(slash) = line.strip_prefix('/') else {
        return Action::Send(Request::Api(line.to_string()));
    };
    let (word, rest) = slash
        .split_once(char::is_whitespace)
        .map_or((slash, ""), |(w, r)| (w, r.trim()));
    match word {
        "exit" | "quit" | "bye" => Action::Send(Request::Exit),
        "help" | "?" => Action::Help,
        "events" | "event" => {
            let mut names = crate::parse_event_names(rest);
            let json = match names.first().map(String::as_str) {
                Some("json") => true,
                Some("plain") => false,
                _ => {
                    return if names.is_empty() {
                        Action::Usage(
                            "usage: /events [json] NAMES (e.g. /events CHANNEL_ANSWER CUSTOM dialtone::dialplan_swap)".into(),
                        )
                    } else {
                        Action::Send(Request::Events { json: false, names })
                    };
                }
            };
            names.remove(0);
            if names.is_empty() {
                return Action::Usage("usage: /events [json] NAMES".into());
            }
            Action::Send(Request::Events { json, names })
        }
        "noevents" => Action::Send(Request::NoEvents),
        "log" => Action::Send(Request::Log(if rest.is_empty() {
            "debug".into()
        } else {
            rest.to_string()
        })),
        "nolog" => Action::Send(Request::NoLog),
        "bgapi" if !rest.is_empty() => Action::Send(Request::Bgapi(rest.to_string())),
        "bgapi" => Action::Usage("usage: /bgapi CMD [ARGS]".into()),
        other => Action::Usage(format!("unknown command /{other}; /help lists them")),
    }
}

struct Job {
    req: Request,
    /// Dropped unsent when the connection is lost.
    done: mpsc::Sender<()>,
}

/// Called once, from the connection thread, with the error that ended it.
pub(crate) type OnLost = Box<dyn FnOnce(&str) + Send>;

/// The real CLI's interactive mode.
pub(crate) fn run(args: &CtlArgs) -> i32 {
    let color = args.color(std::io::stdout().is_terminal());
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .bracketed_paste(false)
        .max_history_size(1000)
        .and_then(|b| b.history_ignore_dups(true))
        .map(|b| b.build());
    let editor = match config.and_then(Editor::<(), FileHistory>::with_config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dialtone ctl: cannot start the line editor: {e}");
            return 1;
        }
    };
    let history = args.history_path();
    let mut lines = Readline { editor, history };
    if let Some(path) = &lines.history {
        let _ = lines.editor.load_history(path);
    }
    let out: Out = match lines.editor.create_external_printer() {
        Ok(p) => Arc::new(Mutex::new(Box::new(External(p)))),
        Err(_) => Arc::new(Mutex::new(Box::new(Stdout))),
    };
    let term = TermState::capture();
    let on_lost: OnLost = Box::new(move |msg: &str| {
        term.restore();
        let _ = std::io::stdout().flush();
        eprintln!("\n{}", format_error(msg, color));
        std::process::exit(1);
    });
    session(args, &mut lines, out, color, on_lost)
}

/// The prompt loop over any line source and printer; returns the exit code.
pub(crate) fn session(
    args: &CtlArgs,
    lines: &mut dyn LineSource,
    out: Out,
    color: bool,
    on_lost: OnLost,
) -> i32 {
    let target = args.target();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            emit(
                &out,
                format_error(&format!("cannot start the runtime: {e}"), color),
            );
            return 1;
        }
    };
    let mut client = match rt.block_on(EslClient::connect(
        &args.host,
        args.port,
        &args.password,
        args.timeout(),
    )) {
        Ok(c) => c,
        Err(e) => {
            emit(&out, format_error(&format!("{e:#}"), color));
            return 1;
        }
    };
    let names = args.event_names();
    let events = if names.is_empty() {
        "none".to_string()
    } else {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Err(e) = rt.block_on(client.subscribe(&refs)) {
            emit(&out, format_error(&format!("{e:#}"), color));
        }
        names.join(" ")
    };
    emit(
        &out,
        format!(
            "Connected to {target}. Events: {events}.\nType /help for commands; /exit or Ctrl-D leaves."
        ),
    );

    let (tx, rx) = unbounded_channel::<Job>();
    let conn = {
        let out = out.clone();
        let target = target.clone();
        std::thread::spawn(move || {
            rt.block_on(connection(client, rx, out, color, target, on_lost));
        })
    };

    let code = loop {
        let line = match lines.read_line(PROMPT) {
            Input::Line(l) => l,
            Input::Interrupted => continue,
            Input::Eof => {
                let (done, wait) = mpsc::channel();
                if tx
                    .send(Job {
                        req: Request::Exit,
                        done,
                    })
                    .is_ok()
                {
                    let _ = wait.recv();
                }
                break 0;
            }
            Input::Failed(e) => {
                emit(&out, format_error(&format!("reading input: {e}"), color));
                break 1;
            }
        };
        let req = match parse_line(&line) {
            Action::Nothing => continue,
            Action::Help => {
                lines.remember(line.trim());
                emit(&out, HELP);
                continue;
            }
            Action::Usage(msg) => {
                lines.remember(line.trim());
                emit(&out, format_error(&msg, color));
                continue;
            }
            Action::Send(req) => req,
        };
        lines.remember(line.trim());
        let exit = req == Request::Exit;
        let (done, wait) = mpsc::channel();
        if tx.send(Job { req, done }).is_err() || wait.recv().is_err() {
            // The connection thread ended: the connection is lost.
            break 1;
        }
        if exit {
            break 0;
        }
    };
    drop(tx);
    let _ = conn.join();
    code
}

/// The connection thread: runs requests, prints events between them.
async fn connection(
    mut client: EslClient,
    mut rx: UnboundedReceiver<Job>,
    out: Out,
    color: bool,
    target: String,
    on_lost: OnLost,
) {
    let failure = loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else {
                    let _ = tokio::time::timeout(Duration::from_secs(1), client.exit()).await;
                    return;
                };
                if let Err(why) = run_job(&mut client, &job.req, &out, color).await {
                    // `job.done` is dropped unsent: the prompt sees the loss.
                    break why;
                }
                let _ = job.done.send(());
                if job.req == Request::Exit {
                    return;
                }
            }
            incoming = client.next_incoming() => match incoming {
                Ok(i) => {
                    if let Err(why) = show(&out, i, color) {
                        break why;
                    }
                }
                Err(e) => break format!("{e:#}"),
            },
        }
    };
    on_lost(&format!("connection to {target} lost: {failure}"));
}

/// Runs one request and prints its answer, then the events that arrived
/// while the answer was awaited (before the prompt comes back). An error
/// means the connection is lost (never for `Exit`, whose errors are moot).
async fn run_job(
    client: &mut EslClient,
    req: &Request,
    out: &Out,
    color: bool,
) -> Result<(), String> {
    let exit = *req == Request::Exit;
    match perform(client, req, color).await {
        Ok(text) if text.is_empty() => {}
        Ok(text) => emit(out, text),
        Err(_) if exit => {}
        Err(e) if client.broken().is_some() => return Err(format!("{e:#}")),
        Err(e) => emit(out, format_error(&format!("{e:#}"), color)),
    }
    while let Some(i) = client.take_queued() {
        match show(out, i, color) {
            Err(why) if !exit => return Err(why),
            _ => {}
        }
    }
    match client.broken() {
        Some(why) if !exit => Err(why.to_string()),
        _ => Ok(()),
    }
}

/// Prints an event or log line; a disconnect notice is returned as an error.
fn show(out: &Out, incoming: Incoming, color: bool) -> Result<(), String> {
    match incoming {
        Incoming::Event(e) => emit(out, format_event(&e, color)),
        Incoming::Log(f) => {
            let text = format_log(&f, color);
            if !text.is_empty() {
                emit(out, text);
            }
        }
        Incoming::Disconnect(f) => {
            let why = f.body_text();
            let why = why.trim();
            return Err(if why.is_empty() {
                "the switch disconnected".to_string()
            } else {
                format!("the switch disconnected: {}", crate::format::one_line(why))
            });
        }
        Incoming::Other(_) => {}
    }
    Ok(())
}

/// Runs one request; returns what to print.
async fn perform(client: &mut EslClient, req: &Request, color: bool) -> Result<String> {
    Ok(match req {
        Request::Api(cmd) => format_reply(&client.api(cmd).await?, color),
        Request::Bgapi(cmd) => format!("+OK Job-UUID: {}", client.bgapi(cmd).await?),
        Request::Events { json, names } => {
            client.unsubscribe().await?;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            if *json {
                client.subscribe_json(&refs).await?;
            } else {
                client.subscribe(&refs).await?;
            }
            format!("+OK events: {}", names.join(" "))
        }
        Request::NoEvents => client.unsubscribe().await?,
        Request::Log(level) => client.log(level).await?,
        Request::NoLog => client.nolog().await?,
        Request::Exit => {
            client.exit().await?;
            String::new()
        }
    })
}

/// The terminal's settings before the prompt changed them, to put back when
/// the process ends from the connection thread while rustyline holds the
/// terminal in raw mode.
struct TermState(Option<libc::termios>);

impl TermState {
    fn capture() -> TermState {
        if !std::io::stdin().is_terminal() {
            return TermState(None);
        }
        let mut t = std::mem::MaybeUninit::<libc::termios>::zeroed();
        // SAFETY: tcgetattr fills the termios it is given; it is read only
        // when the call succeeded.
        let ok = unsafe { libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) } == 0;
        // SAFETY: initialised by the successful tcgetattr above.
        TermState(ok.then(|| unsafe { t.assume_init() }))
    }

    fn restore(&self) {
        if let Some(t) = &self.0 {
            // SAFETY: t is a termios obtained from tcgetattr on the same fd.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, t) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Act, FakeServer};
    use std::collections::VecDeque;

    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<String>>>);

    impl Printer for Collect {
        fn print(&mut self, text: String) {
            self.0.lock().unwrap().push(text);
        }
    }

    impl Collect {
        fn text(&self) -> String {
            self.0.lock().unwrap().concat()
        }
    }

    fn args(port: u16, events: &str) -> CtlArgs {
        CtlArgs {
            port,
            events: events.into(),
            timeout_s: 5,
            ..CtlArgs::default()
        }
    }

    /// Runs a session over scripted lines (then EOF); returns the exit code
    /// and everything printed.
    fn drive(args: &CtlArgs, script: &[&str]) -> (i32, String) {
        let collect = Collect::default();
        let out: Out = Arc::new(Mutex::new(Box::new(collect.clone())));
        let lost = collect.clone();
        let on_lost: OnLost = Box::new(move |msg: &str| {
            lost.clone().print(format!("LOST: {msg}\n"));
        });
        let mut queue: VecDeque<String> = script.iter().map(|s| s.to_string()).collect();
        let mut lines = move |prompt: &str| {
            assert_eq!(prompt, PROMPT);
            queue.pop_front().map_or(Input::Eof, Input::Line)
        };
        let code = session(args, &mut lines, out, false, on_lost);
        (code, collect.text())
    }

    #[test]
    fn parse_prompt_lines() {
        assert_eq!(parse_line("  "), Action::Nothing);
        assert_eq!(
            parse_line(" show channels "),
            Action::Send(Request::Api("show channels".into()))
        );
        for l in ["/exit", "/quit", "/bye"] {
            assert_eq!(parse_line(l), Action::Send(Request::Exit));
        }
        assert_eq!(parse_line("/help"), Action::Help);
        assert_eq!(
            parse_line("/events CHANNEL_ANSWER, CUSTOM dialtone::dialplan_swap"),
            Action::Send(Request::Events {
                json: false,
                names: vec![
                    "CHANNEL_ANSWER".into(),
                    "CUSTOM".into(),
                    "dialtone::dialplan_swap".into()
                ]
            })
        );
        assert_eq!(
            parse_line("/event json ALL"),
            Action::Send(Request::Events {
                json: true,
                names: vec!["ALL".into()]
            })
        );
        assert!(matches!(parse_line("/events"), Action::Usage(_)));
        assert!(matches!(parse_line("/events plain"), Action::Usage(_)));
        assert_eq!(parse_line("/noevents"), Action::Send(Request::NoEvents));
        assert_eq!(
            parse_line("/log"),
            Action::Send(Request::Log("debug".into()))
        );
        assert_eq!(
            parse_line("/log info"),
            Action::Send(Request::Log("info".into()))
        );
        assert_eq!(parse_line("/nolog"), Action::Send(Request::NoLog));
        assert_eq!(
            parse_line("/bgapi originate x &park"),
            Action::Send(Request::Bgapi("originate x &park".into()))
        );
        assert!(matches!(parse_line("/bgapi"), Action::Usage(_)));
        assert!(matches!(parse_line("/frob"), Action::Usage(m) if m.contains("/frob")));
    }

    #[test]
    fn session_runs_commands_and_prints_events() {
        let s = FakeServer::start(|cmd| match cmd {
            "event plain CHANNEL_ANSWER BACKGROUND_JOB" => vec![
                Act::Send(testing::reply("+OK event listener enabled plain")),
                Act::Send(testing::event(&[
                    ("Event-Name", "CHANNEL_ANSWER"),
                    ("Unique-ID", "u-1"),
                    ("Caller-Caller-ID-Number", "1001"),
                    ("Caller-Destination-Number", "1002"),
                    ("Channel-State", "CS_EXECUTE"),
                ])),
            ],
            "api status" => vec![Act::Send(testing::api_response("UP 0 years\n"))],
            "noevents" => vec![Act::Send(testing::reply(
                "+OK no longer listening for events",
            ))],
            "event plain CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB" => vec![
                Act::Send(testing::reply("+OK event listener enabled plain")),
                Act::Send(testing::event(&[
                    ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
                    ("Unique-ID", "u-1"),
                    ("Hangup-Cause", "NORMAL_CLEARING"),
                ])),
            ],
            "bgapi status" => vec![
                Act::Send(testing::bgapi_reply("j-1")),
                Act::Send(testing::background_job("j-1", "status", "+OK UP\n")),
            ],
            "log info" => vec![
                Act::Send(testing::reply("+OK log level info [6]")),
                Act::Send(testing::log_line("[INFO] switch.rs:1 hello\n")),
            ],
            "api nope" => vec![Act::Send(testing::reply("-ERR command not found"))],
            _ => vec![],
        });
        let (code, text) = drive(
            &args(s.port, "CHANNEL_ANSWER BACKGROUND_JOB"),
            &[
                "status",
                "",
                "/help",
                "/events CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB",
                "/bgapi status",
                "/log info",
                "/frob",
                "nope",
            ],
        );
        assert_eq!(code, 0, "{text}");
        // Replies come in order, each before the next prompt. An event sent
        // before a command's reply is printed right after that reply; one
        // sent after a reply is printed when it arrives, so only its
        // presence is certain.
        let in_order = [
            "Connected to 127.0.0.1:",
            "Events: CHANNEL_ANSWER BACKGROUND_JOB.",
            "UP 0 years\n",
            "[EVENT] CHANNEL_ANSWER uuid=u-1 1001 -> 1002 state=CS_EXECUTE\n",
            "/events [json] NAMES",
            "+OK events: CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB\n",
            "+OK Job-UUID: j-1\n",
            "+OK log level info [6]\n",
            "[ERROR] unknown command /frob",
            "-ERR command not found\n",
        ];
        let mut at = 0;
        for e in in_order {
            let found = text[at..].find(e);
            assert!(found.is_some(), "`{e}` missing after byte {at} of:\n{text}");
            at += found.unwrap();
        }
        for e in [
            "\n[EVENT] CHANNEL_HANGUP_COMPLETE uuid=u-1 cause=NORMAL_CLEARING\n",
            "\n[EVENT] BACKGROUND_JOB job=j-1 cmd=status result=+OK UP\n",
            "\n[INFO] switch.rs:1 hello\n",
        ] {
            assert!(text.contains(e), "`{e}` missing from:\n{text}");
        }
        assert!(!text.contains("LOST"), "{text}");
        assert_eq!(
            s.commands(),
            [
                "auth ClueCon",
                "event plain CHANNEL_ANSWER BACKGROUND_JOB",
                "api status",
                "noevents",
                "event plain CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB",
                "bgapi status",
                "log info",
                "api nope",
                "exit",
            ]
        );
    }

    #[test]
    fn slash_exit_leaves_with_zero_and_no_events_means_no_subscription() {
        let s = FakeServer::start(|_| vec![]);
        let (code, text) = drive(&args(s.port, "none"), &["/exit", "status"]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("Events: none."), "{text}");
        assert_eq!(s.commands(), ["auth ClueCon", "exit"]);
    }

    #[test]
    fn connection_lost_during_a_command_exits_one() {
        let s = FakeServer::start(|cmd| match cmd {
            "api die" => vec![Act::Close],
            _ => vec![Act::Send(testing::api_response("+OK"))],
        });
        let (code, text) = drive(&args(s.port, "none"), &["status", "die", "status"]);
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains("LOST: connection to 127.0.0.1:")
                && text.contains("lost: connection closed by the switch"),
            "{text}"
        );
        assert_eq!(s.commands(), ["auth ClueCon", "api status", "api die"]);
    }

    #[test]
    fn connection_lost_while_idle_exits_one() {
        let s = FakeServer::start(|cmd| match cmd {
            "event plain CUSTOM" => vec![
                Act::Send(testing::reply("+OK event listener enabled plain")),
                Act::Sleep(50),
                Act::Send(testing::disconnect_notice("Disconnected, goodbye.\n")),
                Act::Close,
            ],
            _ => vec![],
        });
        let collect = Collect::default();
        let out: Out = Arc::new(Mutex::new(Box::new(collect.clone())));
        let lost = collect.clone();
        let on_lost: OnLost = Box::new(move |msg: &str| {
            lost.clone().print(format!("LOST: {msg}\n"));
        });
        // Wait at the "prompt" until the loss has been reported, as a person
        // would be typing when it happens; then press Enter on a command.
        let seen = collect.clone();
        let mut lines = move |_: &str| {
            for _ in 0..500 {
                if seen.text().contains("LOST") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Input::Line("status".into())
        };
        let code = session(&args(s.port, "CUSTOM"), &mut lines, out, false, on_lost);
        assert_eq!(code, 1);
        let text = collect.text();
        assert!(
            text.contains("lost: the switch disconnected: Disconnected, goodbye."),
            "{text}"
        );
    }

    #[test]
    fn no_switch_exits_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let (code, text) = drive(&args(port, "none"), &["status"]);
        assert_eq!(code, 1);
        assert!(
            text.starts_with("[ERROR] cannot connect to 127.0.0.1:"),
            "{text}"
        );
    }
}
