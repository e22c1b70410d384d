//! Log lines for the event socket's `log LEVEL` command.
//!
//! The switch's log layer hands every line to a [`LogHub`]; connections
//! that asked for logs subscribe to it. Nothing is formatted or copied
//! while nobody listens (one atomic load per line). A listener that falls
//! more than [`LOG_QUEUE`] lines behind skips the oldest ones and is told
//! how many in a log line of its own.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Lines buffered per listener.
pub const LOG_QUEUE: usize = 4096;

/// One log line.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// FreeSWITCH's level: 0 console, 1 alert, 2 crit, 3 err, 4 warning,
    /// 5 notice, 6 info, 7 debug.
    pub level: u8,
    /// Where it was logged (module path).
    pub file: String,
    /// The function (here: the target).
    pub func: String,
    /// Source line.
    pub line: u32,
    /// The channel UUID the line is about, if any.
    pub uuid: String,
    /// The text, ending with a newline.
    pub text: String,
}

/// Where log lines go to the event socket.
#[derive(Clone, Debug)]
pub struct LogHub {
    tx: broadcast::Sender<Arc<LogLine>>,
}

impl Default for LogHub {
    fn default() -> Self {
        LogHub::new()
    }
}

impl LogHub {
    /// A hub without listeners.
    pub fn new() -> LogHub {
        LogHub {
            tx: broadcast::channel(LOG_QUEUE).0,
        }
    }

    /// Whether anyone listens (checked before formatting a line).
    pub fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Hands a line to every listener.
    pub fn send(&self, line: LogLine) {
        let _ = self.tx.send(Arc::new(line));
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.tx.subscribe()
    }
}

/// FreeSWITCH's level number for a level name (`debug`, `info`, `notice`,
/// `warning`, `err`, `crit`, `alert`, `console`, or a number 0-7).
pub fn level_from_str(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    if let Ok(n) = s.parse::<u8>() {
        return (n <= 7).then_some(n);
    }
    Some(match s.as_str() {
        "console" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" | "error" => 3,
        "warning" | "warn" => 4,
        "notice" => 5,
        "info" => 6,
        "debug" | "" => 7,
        _ => return None,
    })
}
