//! What the CLI prints for events, log lines and replies.
//!
//! Owns the one-line event summary (`[EVENT] NAME ...`) and the optional ANSI
//! colours. Every line is a single terminal row's worth of text without
//! control characters (values are escaped), so a pane captured by
//! `tmux capture-pane` reads as one event per line.

use crate::event::Event;
use crate::frame::Frame;

/// The most characters of a BACKGROUND_JOB result shown on its line.
const MAX_RESULT_CHARS: usize = 200;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const CYAN: &str = "\x1b[36m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// Escapes control characters so a value cannot break the line or move the
/// cursor: `\n`, `\r`, `\t` and `\xNN`.
pub fn one_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// One line for an event:
///
/// `[EVENT] NAME [SUBCLASS] [job=J] [uuid=U] [CID -> DEST] [state=S] [cause=C] [result=R]`
///
/// - `SUBCLASS` is `Event-Subclass`, for `CUSTOM` events;
/// - `job=` is `Job-UUID` and `result=` the nested body (trimmed, escaped,
///   cut at 200 characters), for `BACKGROUND_JOB`; `cmd=` is `Job-Command`;
/// - `uuid=` is `Unique-ID`; `CID -> DEST` is `Caller-Caller-ID-Number` and
///   `Caller-Destination-Number` (`?` for a missing one, left out when both
///   are); `state=` is `Channel-State`; `cause=` is `Hangup-Cause`.
///
/// Fields the event lacks are left out.
pub fn format_event(e: &Event, color: bool) -> String {
    let name = if e.name().is_empty() { "?" } else { e.name() };
    let name_color = match name {
        n if n.starts_with("CHANNEL_HANGUP") => RED,
        "BACKGROUND_JOB" => YELLOW,
        _ => BOLD,
    };
    let mut parts = vec![
        paint("[EVENT]", CYAN, color),
        paint(&one_line(name), name_color, color),
    ];
    if let Some(sub) = e.subclass().filter(|s| !s.is_empty()) {
        parts.push(one_line(sub));
    }
    let field = |parts: &mut Vec<String>, label: &str, header: &str| {
        if let Some(v) = e.header(header).filter(|v| !v.is_empty()) {
            parts.push(format!("{label}={}", one_line(v)));
        }
    };
    field(&mut parts, "job", "Job-UUID");
    field(&mut parts, "cmd", "Job-Command");
    field(&mut parts, "uuid", "Unique-ID");
    let cid = e
        .header("Caller-Caller-ID-Number")
        .filter(|v| !v.is_empty());
    let dest = e
        .header("Caller-Destination-Number")
        .filter(|v| !v.is_empty());
    if cid.is_some() || dest.is_some() {
        parts.push(format!(
            "{} -> {}",
            one_line(cid.unwrap_or("?")),
            one_line(dest.unwrap_or("?"))
        ));
    }
    field(&mut parts, "state", "Channel-State");
    field(&mut parts, "cause", "Hangup-Cause");
    if name == "BACKGROUND_JOB" {
        let result = e.body.as_deref().unwrap_or("").trim();
        let mut shown: String = result.chars().take(MAX_RESULT_CHARS).collect();
        if shown.len() < result.len() {
            shown.push_str("...");
        }
        parts.push(format!("result={}", one_line(&shown)));
    }
    parts.join(" ")
}

/// A `log/data` frame: its body (the log line as the switch wrote it),
/// trailing line breaks dropped, control characters other than line breaks
/// escaped.
pub fn format_log(frame: &Frame, color: bool) -> String {
    let text = frame.body_text();
    let lines: Vec<String> = text.trim_end().lines().map(one_line).collect();
    let text = lines.join("\n");
    paint(&text, DIM, color && !text.is_empty())
}

/// An `api` reply as printed: as sent, with one trailing line break; red
/// when it is an `-ERR`.
pub fn format_reply(body: &str, color: bool) -> String {
    let body = body.trim_end_matches(['\n', '\r']);
    if color && body.trim_start().starts_with("-ERR") {
        format!("{RED}{body}{RESET}\n")
    } else {
        format!("{body}\n")
    }
}

/// An error line of the CLI itself.
pub fn format_error(msg: &str, color: bool) -> String {
    paint(&format!("[ERROR] {}", one_line(msg)), RED, color)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(headers: &[(&str, &str)], body: Option<&str>) -> Event {
        Event {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.map(str::to_string),
        }
    }

    #[test]
    fn channel_answer_line() {
        let e = ev(
            &[
                ("Event-Name", "CHANNEL_ANSWER"),
                ("Unique-ID", "4f8d"),
                ("Caller-Caller-ID-Number", "1001"),
                ("Caller-Destination-Number", "1002"),
                ("Channel-State", "CS_EXECUTE"),
            ],
            None,
        );
        assert_eq!(
            format_event(&e, false),
            "[EVENT] CHANNEL_ANSWER uuid=4f8d 1001 -> 1002 state=CS_EXECUTE"
        );
        assert_eq!(
            format_event(&e, true),
            "\x1b[36m[EVENT]\x1b[0m \x1b[1mCHANNEL_ANSWER\x1b[0m uuid=4f8d 1001 -> 1002 state=CS_EXECUTE"
        );
    }

    #[test]
    fn hangup_line_has_the_cause() {
        let e = ev(
            &[
                ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
                ("Unique-ID", "4f8d"),
                ("Caller-Destination-Number", "1002"),
                ("Channel-State", "CS_REPORTING"),
                ("Hangup-Cause", "NORMAL_CLEARING"),
            ],
            None,
        );
        assert_eq!(
            format_event(&e, false),
            "[EVENT] CHANNEL_HANGUP_COMPLETE uuid=4f8d ? -> 1002 state=CS_REPORTING cause=NORMAL_CLEARING"
        );
    }

    #[test]
    fn background_job_line_has_job_and_result() {
        let e = ev(
            &[
                ("Event-Name", "BACKGROUND_JOB"),
                ("Job-UUID", "b1a2"),
                ("Job-Command", "status"),
            ],
            Some("+OK UP 0 years\n3 sessions\n"),
        );
        assert_eq!(
            format_event(&e, false),
            "[EVENT] BACKGROUND_JOB job=b1a2 cmd=status result=+OK UP 0 years\\n3 sessions"
        );
        let long = "x".repeat(500);
        let e = ev(&[("Event-Name", "BACKGROUND_JOB")], Some(&long));
        let line = format_event(&e, false);
        assert!(
            line.ends_with(&format!("result={}...", "x".repeat(200))),
            "{line}"
        );
        let e = ev(&[("Event-Name", "BACKGROUND_JOB")], None);
        assert_eq!(format_event(&e, false), "[EVENT] BACKGROUND_JOB result=");
    }

    #[test]
    fn custom_line_has_the_subclass() {
        let e = ev(
            &[
                ("Event-Name", "CUSTOM"),
                ("Event-Subclass", "dialtone::dialplan_swap"),
                ("Tenant", "acme"),
            ],
            None,
        );
        assert_eq!(
            format_event(&e, false),
            "[EVENT] CUSTOM dialtone::dialplan_swap"
        );
    }

    #[test]
    fn values_cannot_break_the_line() {
        let e = ev(
            &[
                ("Event-Name", "CHANNEL_CREATE"),
                ("Unique-ID", "a\nb\x1b[2J"),
            ],
            None,
        );
        assert_eq!(
            format_event(&e, false),
            "[EVENT] CHANNEL_CREATE uuid=a\\nb\\x1b[2J"
        );
        assert_eq!(format_event(&Event::default(), false), "[EVENT] ?");
    }

    #[test]
    fn replies_logs_and_errors() {
        assert_eq!(format_reply("+OK\n\n", false), "+OK\n");
        assert_eq!(format_reply("a\nb", false), "a\nb\n");
        assert_eq!(format_reply("-ERR no", true), "\x1b[31m-ERR no\x1b[0m\n");
        let f = Frame {
            headers: vec![("Content-Type".into(), "log/data".into())],
            body: Some(b"2026-01-01 [INFO] x.rs:1 hello\n".to_vec()),
        };
        assert_eq!(format_log(&f, false), "2026-01-01 [INFO] x.rs:1 hello");
        assert_eq!(format_error("lost\nit", false), "[ERROR] lost\\nit");
    }
}
