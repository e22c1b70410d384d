//! The API commands that the event socket's `api`/`bgapi` and `dialtone
//! ctl` run, with FreeSWITCH's names, arguments and output conventions
//! (`+OK ...` / `-ERR ...`, `show ... as json` as `{"row_count", "rows"}`).
//!
//! | command | does |
//! |---|---|
//! | `status` | uptime, sessions since start, peak, rate |
//! | `version`, `hostname`, `uptime`, `help` | as FreeSWITCH |
//! | `originate DS EXT\|&app(args) [dialplan] [context] [cid_name] [cid_num] [timeout]` | dials; on answer routes the new channel to EXT (or runs the app); `+OK <uuid>` |
//! | `uuid_kill UUID [CAUSE]` | hangs the channel up |
//! | `uuid_transfer UUID [-bleg\|-both] EXT [dialplan] [context]` | routes the channel (or its bridged leg) again |
//! | `uuid_getvar UUID VAR`, `uuid_setvar UUID VAR [VALUE]`, `uuid_dump UUID [json]` | channel variables |
//! | `show channels\|calls\|registrations [as json]`, `show channels count` | live state |
//! | `sofia status` | profiles, gateways, registrations |
//! | `reload`, `reload dialplan TENANT`, `dialplan versions TENANT`, `dialplan rollback TENANT` | configuration and components |
//! | `cdr list [AFTER_SEQ] [LIMIT]`, `cdr stats` | the CDR journal (JSON lines) |
//!
//! | `uuid_bridge A B` | both leave what they do and are bridged until either ends |

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use dialtone_control::esl::Api;
use dialtone_core::channel::{Channel, ChannelCommand};
use dialtone_core::routing::Action;
use dialtone_core::switch::{ApiOriginate, OriginateThen};
use dialtone_core::HangupCause;

use crate::app::App;

/// The API, bound to a running switch.
pub struct SwitchApi {
    app: Arc<App>,
    started: Instant,
}

impl SwitchApi {
    /// The API of `app`.
    pub fn new(app: Arc<App>) -> SwitchApi {
        SwitchApi {
            app,
            started: Instant::now(),
        }
    }

    async fn run(&self, command: &str, args: &str) -> String {
        let words: Vec<&str> = args.split_whitespace().collect();
        match command.to_ascii_lowercase().as_str() {
            "status" => self.status(),
            "version" => format!("Dialtone Version {}\n", env!("CARGO_PKG_VERSION")),
            "hostname" => hostname(),
            "uptime" => format!("{}\n", self.started.elapsed().as_secs()),
            "help" => HELP.to_string(),
            "originate" => self.originate(args).await,
            "uuid_kill" => self.uuid_kill(&words),
            "uuid_getvar" => self.uuid_getvar(&words).await,
            "uuid_setvar" => self.uuid_setvar(args),
            "uuid_dump" => self.uuid_dump(&words).await,
            "uuid_transfer" => self.uuid_transfer(&words).await,
            "uuid_bridge" => match (words.first(), words.get(1)) {
                (Some(a), Some(b)) => match self.app.switch.uuid_bridge(a, b) {
                    Ok(()) => format!("+OK {b}\n"),
                    Err(e) => format!("-ERR {e}\n"),
                },
                _ => "-USAGE: <uuid> <other_uuid>\n".into(),
            },
            "show" => self.show(&words).await,
            "sofia" => self.sofia(&words),
            "reload" => self.reload(&words).await,
            "dialplan" => self.dialplan(&words),
            "cdr" => self.cdr(&words),
            _ => format!("-ERR {command} Command not found!\n"),
        }
    }

    fn status(&self) -> String {
        let up = self.started.elapsed();
        let s = up.as_secs();
        let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        let now = self.app.switch.channel_count() as u64;
        let limits = self.app.config.load().limits;
        format!(
            "UP 0 years, {days} days, {hours} hours, {mins} minutes, {secs} seconds, {} milliseconds, 0 microseconds\n\
             Dialtone (Version {}) is ready\n\
             {} session(s) since startup\n\
             {now} session(s) - peak {}\n\
             {} session(s) per Sec out of max {}\n\
             {} session(s) max\n",
            up.subsec_millis(),
            env!("CARGO_PKG_VERSION"),
            self.app.switch.channels_created(),
            self.app.switch.channels_peak().max(now),
            0,
            limits.max_cps,
            limits.max_channels,
        )
    }

    async fn originate(&self, args: &str) -> String {
        let t = tokens(args);
        if t.len() < 2 {
            return "-ERR USAGE: originate <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n".into();
        }
        let config = self.app.config.load();
        let context = t
            .get(3)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "default".into());
        let then = if let Some(app) = t[1].strip_prefix('&') {
            match app_action(app) {
                Ok(a) => OriginateThen::Actions(vec![Action::Answer, a]),
                Err(e) => return format!("-ERR {e}\n"),
            }
        } else {
            OriginateThen::Extension {
                extension: t[1].to_string(),
                context: Some(context.clone()),
            }
        };
        let var = |n: &str| {
            config
                .variables
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let req = ApiOriginate {
            tenant: config.switch.default_domain.clone(),
            context,
            dialstring: t[0].to_string(),
            then,
            caller_id_name: t
                .get(4)
                .map(|s| s.to_string())
                .or_else(|| var("outbound_caller_id_name"))
                .unwrap_or_else(|| "Dialtone".into()),
            caller_id_number: t
                .get(5)
                .map(|s| s.to_string())
                .or_else(|| var("outbound_caller_id_number"))
                .unwrap_or_else(|| "0000000000".into()),
            timeout: t
                .get(6)
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
        };
        match self.app.switch.originate(req).await {
            Ok(uuid) => format!("+OK {uuid}\n"),
            Err(c) => format!("-ERR {}\n", c.name()),
        }
    }

    fn uuid_kill(&self, w: &[&str]) -> String {
        let Some(uuid) = w.first() else {
            return "-USAGE: <uuid> [cause]\n".into();
        };
        let cause = w
            .get(1)
            .and_then(|c| HangupCause::parse(c))
            .unwrap_or(HangupCause::NormalClearing);
        if self.app.switch.hangup(uuid, cause) {
            "+OK\n".into()
        } else {
            "-ERR No such channel!\n".into()
        }
    }

    async fn dump(&self, uuid: &str) -> Option<Channel> {
        self.app.switch.channel(uuid)?.dump().await
    }

    async fn uuid_getvar(&self, w: &[&str]) -> String {
        let (Some(uuid), Some(name)) = (w.first(), w.get(1)) else {
            return "-USAGE: <uuid> <var>\n".into();
        };
        match self.dump(uuid).await {
            Some(c) => c.var(name).unwrap_or("_undef_").to_string(),
            None => "-ERR No such channel!\n".into(),
        }
    }

    fn uuid_setvar(&self, args: &str) -> String {
        let mut it = args.trim().splitn(3, char::is_whitespace);
        let (Some(uuid), Some(name)) = (it.next(), it.next()) else {
            return "-USAGE: <uuid> <var> [value]\n".into();
        };
        let value = it.next().unwrap_or("").trim().to_string();
        match self.app.switch.channel(uuid) {
            Some(h) if h.send(ChannelCommand::SetVar(name.to_string(), value)) => "+OK\n".into(),
            Some(_) => "-ERR channel busy\n".into(),
            None => "-ERR No such channel!\n".into(),
        }
    }

    async fn uuid_dump(&self, w: &[&str]) -> String {
        let Some(uuid) = w.first() else {
            return "-USAGE: <uuid> [format]\n".into();
        };
        let Some(c) = self.dump(uuid).await else {
            return "-ERR No such channel!\n".into();
        };
        let fields = dump_fields(&c);
        if w.get(1).is_some_and(|f| f.eq_ignore_ascii_case("json")) {
            let m: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            return Value::Object(m).to_string();
        }
        // Values URL-encoded, as FreeSWITCH's plain format has them.
        let mut s = String::new();
        for (k, v) in fields {
            s.push_str(&k);
            s.push_str(": ");
            dialtone_control::esl::frame::url_encode_into(&v, &mut s);
            s.push('\n');
        }
        s
    }

    async fn uuid_transfer(&self, w: &[&str]) -> String {
        let Some(uuid) = w.first() else {
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n".into();
        };
        let mut rest = &w[1..];
        let mut which = "";
        if let Some(f) = rest.first().filter(|f| f.starts_with('-')) {
            which = f;
            rest = &rest[1..];
        }
        let Some(ext) = rest.first() else {
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n".into();
        };
        let context = rest.get(2).map(|s| s.to_string());
        let Some(c) = self.dump(uuid).await else {
            return "-ERR No such channel!\n".into();
        };
        let mut targets = Vec::new();
        let other = c.var("bridge_uuid").map(str::to_string);
        match which {
            "-bleg" => match other {
                Some(b) => targets.push(b),
                None => return "-ERR no bridged leg\n".into(),
            },
            "-both" => {
                targets.push(uuid.to_string());
                targets.extend(other);
            }
            _ => targets.push(uuid.to_string()),
        }
        for t in targets {
            let sent = self.app.switch.channel(&t).is_some_and(|h| {
                h.send(ChannelCommand::Transfer {
                    extension: ext.to_string(),
                    context: context.clone(),
                })
            });
            if !sent {
                return format!("-ERR cannot transfer {t}\n");
            }
        }
        "+OK\n".into()
    }

    async fn show(&self, w: &[&str]) -> String {
        let json = w.len() >= 3
            && w[w.len() - 2].eq_ignore_ascii_case("as")
            && w[w.len() - 1].eq_ignore_ascii_case("json");
        match w.first().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("channels") if w.get(1).is_some_and(|s| s.eq_ignore_ascii_case("count")) => {
                format!("\n{} total.\n", self.app.switch.channel_count())
            }
            Some("channels") => {
                let chans = self.app.switch.dump_all().await;
                let rows: Vec<Vec<(&'static str, String)>> =
                    chans.iter().map(channel_row).collect();
                table(&rows, json)
            }
            Some("calls") => {
                let chans = self.app.switch.dump_all().await;
                // One row per bridged pair, from the side that created the other.
                let rows: Vec<Vec<(&'static str, String)>> = chans
                    .iter()
                    .filter(|c| c.var("bridge_uuid").is_some())
                    .map(|a| {
                        let b_uuid = a.var("bridge_uuid").unwrap_or("").to_string();
                        let b = chans.iter().find(|c| c.uuid == b_uuid);
                        let mut row = channel_row(a);
                        row.push(("b_uuid", b_uuid.clone()));
                        row.push(("b_name", b.map(|b| b.name.clone()).unwrap_or_default()));
                        row.push((
                            "b_state",
                            b.map(|b| b.state.name().to_string()).unwrap_or_default(),
                        ));
                        row.push((
                            "b_callstate",
                            b.map(|b| b.call_state.name().to_string())
                                .unwrap_or_default(),
                        ));
                        row
                    })
                    .collect();
                table(&rows, json)
            }
            Some("registrations") => {
                let now = dialtone_core::registrations::unix_now();
                let rows: Vec<Vec<(&'static str, String)>> = self
                    .app
                    .sofia
                    .location()
                    .map(|l| l.all(now))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        vec![
                            ("reg_user", b.user.clone()),
                            ("realm", b.domain.clone()),
                            ("token", b.call_id.clone()),
                            ("url", b.contact.clone()),
                            ("expires", b.expires.to_string()),
                            ("network_ip", b.source.ip().to_string()),
                            ("network_port", b.source.port().to_string()),
                            ("network_proto", b.transport.clone()),
                            ("hostname", hostname().trim().to_string()),
                            ("metadata", b.user_agent.clone()),
                        ]
                    })
                    .collect();
                table(&rows, json)
            }
            _ => {
                "-USAGE: show channels|calls|registrations [as json] | show channels count\n".into()
            }
        }
    }

    fn sofia(&self, w: &[&str]) -> String {
        if !w.first().is_some_and(|s| s.eq_ignore_ascii_case("status")) {
            return "-ERR USAGE: sofia status\n".into();
        }
        let sip = self.app.sofia.settings();
        let now = dialtone_core::registrations::unix_now();
        let regs = self
            .app
            .sofia
            .location()
            .map(|l| l.all(now))
            .unwrap_or_default();
        let up: std::collections::HashMap<String, bool> =
            self.app.sofia.gateways_up().into_iter().collect();
        let line = "=".repeat(91);
        let mut s = format!(
            "{:>25}\t{:>10}\t{:<50}\t{}\n{line}\n",
            "Name", "Type", "Data", "State"
        );
        for p in &sip.profiles {
            let n = regs.iter().filter(|b| b.profile == p.name).count();
            let _ = writeln!(
                s,
                "{:>25}\t{:>10}\t{:<50}\tRUNNING ({n})",
                p.name,
                "profile",
                format!("sip:mod_sofia@{}", p.bind),
            );
            if let Some(tls) = p.tls_bind {
                let _ = writeln!(
                    s,
                    "{:>25}\t{:>10}\t{:<50}\tRUNNING (TLS)",
                    p.name,
                    "profile",
                    format!("sips:mod_sofia@{tls}"),
                );
            }
        }
        let gateways = self.app.sofia.gateways();
        for g in gateways.iter() {
            let state = match up.get(&g.name) {
                Some(true) | None => "UP",
                Some(false) => "DOWN",
            };
            let _ = writeln!(
                s,
                "{:>25}\t{:>10}\t{:<50}\t{}",
                format!("{}::{}", g.profile, g.name),
                "gateway",
                format!("sip:{}", g.proxy),
                state
            );
        }
        let _ = writeln!(
            s,
            "{line}\n{} profile{} {} gateway{} {} registration{}",
            sip.profiles.len(),
            plural(sip.profiles.len()),
            gateways.len(),
            plural(gateways.len()),
            regs.len(),
            plural(regs.len())
        );
        s
    }

    async fn reload(&self, w: &[&str]) -> String {
        let app = self.app.clone();
        match w.first().map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("xml") | Some("config") => {
                match tokio::task::spawn_blocking(move || app.reload()).await {
                    Ok(Ok(())) => "+OK reloaded\n".into(),
                    Ok(Err(e)) => format!("-ERR {e:#}\n"),
                    Err(e) => format!("-ERR {e}\n"),
                }
            }
            Some("dialplan") => {
                let Some(tenant) = w.get(1).map(|s| s.to_string()) else {
                    return "-USAGE: reload dialplan <tenant>\n".into();
                };
                match tokio::task::spawn_blocking(move || app.reload_dialplan(&tenant)).await {
                    Ok(Ok(v)) => format!("+OK {v}\n"),
                    Ok(Err(e)) => format!("-ERR {e:#}\n"),
                    Err(e) => format!("-ERR {e}\n"),
                }
            }
            Some(other) => format!(
                "-ERR cannot reload `{other}`: use `reload` or `reload dialplan <tenant>`\n"
            ),
        }
    }

    /// `cdr list [AFTER_SEQ] [LIMIT]`: committed CDRs as JSON lines, in
    /// journal order (at most 1,000 per call; page with AFTER_SEQ);
    /// `cdr stats`: the journal's counters.
    fn cdr(&self, w: &[&str]) -> String {
        let Some(control) = self.app.control.get() else {
            return "-ERR the CDR journal is not running\n".into();
        };
        match w.first().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("list") => {
                let after = w.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                let limit = w
                    .get(2)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1000usize)
                    .min(1000);
                match control.cdr.list(after, limit) {
                    Ok(v) => {
                        let mut s = String::new();
                        for c in v {
                            let _ =
                                writeln!(s, "{}", serde_json::to_string(&c).unwrap_or_default());
                        }
                        if s.is_empty() {
                            s.push('\n');
                        }
                        s
                    }
                    Err(e) => format!("-ERR {e}\n"),
                }
            }
            Some("stats") => {
                let st = control.cdr.stats();
                format!(
                    "cdrs={} commits={} failed_commits={} open_channels={} queued={}\n",
                    st.cdrs, st.commits, st.failed_commits, st.open_channels, st.queued
                )
            }
            _ => "-USAGE: cdr list [<after_seq>] [<limit>] | cdr stats\n".into(),
        }
    }

    fn dialplan(&self, w: &[&str]) -> String {
        match (
            w.first().map(|s| s.to_ascii_lowercase()).as_deref(),
            w.get(1),
        ) {
            (Some("versions"), Some(t)) => match self.app.tenants.versions(t) {
                Some(v) => {
                    let mut s = String::new();
                    for i in v {
                        let _ = writeln!(
                            s,
                            "{} {} {}",
                            if i.active { "*" } else { " " },
                            i.version,
                            i.source
                        );
                    }
                    s
                }
                None => format!("-ERR no tenant `{t}`\n"),
            },
            (Some("rollback"), Some(t)) => match self.app.tenants.rollback(t) {
                Ok(v) => format!("+OK {v}\n"),
                Err(e) => format!("-ERR {e}\n"),
            },
            _ => "-USAGE: dialplan versions|rollback <tenant>\n".into(),
        }
    }
}

impl Api for SwitchApi {
    fn execute<'a>(
        &'a self,
        command: &'a str,
        args: &'a str,
    ) -> Pin<Box<dyn Future<Output = String> + Send + 'a>> {
        Box::pin(async move {
            tracing::info!(command, args, "api");
            self.run(command, args).await
        })
    }
}

const HELP: &str = "\
status, version, hostname, uptime, help
originate <dialstring> <exten>|&<app>(<args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]
uuid_kill <uuid> [<cause>]
uuid_bridge <uuid> <other_uuid>
uuid_transfer <uuid> [-bleg|-both] <exten> [<dialplan>] [<context>]
uuid_getvar <uuid> <var>
uuid_setvar <uuid> <var> [<value>]
uuid_dump <uuid> [json]
show channels|calls|registrations [as json]
show channels count
sofia status
reload
reload dialplan <tenant>
dialplan versions <tenant>
dialplan rollback <tenant>
cdr list [<after_seq>] [<limit>]
cdr stats
";

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}\n", h.trim())
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn channel_row(c: &Channel) -> Vec<(&'static str, String)> {
    vec![
        ("uuid", c.uuid.clone()),
        (
            "direction",
            match c.direction {
                dialtone_core::routing::Direction::Inbound => "inbound",
                dialtone_core::routing::Direction::Outbound => "outbound",
            }
            .to_string(),
        ),
        ("created_epoch", epoch(c.created).to_string()),
        ("name", c.name.clone()),
        ("state", c.state.name().to_string()),
        ("cid_name", c.caller_id_name.clone()),
        ("cid_num", c.caller_id_number.clone()),
        ("ip_addr", c.network_addr.clone()),
        ("dest", c.destination.clone()),
        ("context", c.context.clone()),
        ("read_codec", c.var("read_codec").unwrap_or("").to_string()),
        ("callstate", c.call_state.name().to_string()),
        ("tenant", c.tenant.clone()),
        ("call_uuid", c.var("bridge_uuid").unwrap_or("").to_string()),
    ]
}

/// FreeSWITCH's `show` output: CSV with a header line and `N total.`, or
/// `{"row_count": N, "rows": [...]}`.
fn table(rows: &[Vec<(&'static str, String)>], json: bool) -> String {
    if json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                Value::Object(
                    r.iter()
                        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                        .collect(),
                )
            })
            .collect();
        return json!({ "row_count": rows.len(), "rows": rows }).to_string();
    }
    let mut s = String::new();
    match rows.first() {
        Some(r) => {
            let names: Vec<&str> = r.iter().map(|(k, _)| *k).collect();
            let _ = writeln!(s, "{}", names.join(","));
        }
        None => s.push('\n'),
    }
    for r in rows {
        let vals: Vec<&str> = r.iter().map(|(_, v)| v.as_str()).collect();
        let _ = writeln!(s, "{}", vals.join(","));
    }
    let _ = writeln!(s, "\n{} total.", rows.len());
    s
}

/// `uuid_dump`'s fields: the channel's event headers (as every channel
/// event carries them), then `variable_*`.
fn dump_fields(c: &Channel) -> Vec<(String, String)> {
    let ev = c.event(dialtone_core::events::EventName::ChannelState);
    let mut v: Vec<(String, String)> = Vec::with_capacity(ev.headers.len() + c.variables.len() + 1);
    v.push(("Event-Name".into(), "CHANNEL_DATA".into()));
    v.extend(
        ev.headers
            .into_iter()
            .map(|(k, val)| (k.into_owned(), val.into_owned())),
    );
    for (k, val) in c.variables.iter() {
        v.push((format!("variable_{k}"), val.clone()));
    }
    v
}

/// Splits an `originate` line on spaces outside `{}`, `[]`, `<>`, `()` and
/// quotes.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match quote {
            Some(q) if ch == q => {
                quote = None;
                continue;
            }
            Some(_) => {
                cur.push(ch);
                continue;
            }
            None => {}
        }
        match ch {
            '\'' | '"' if depth == 0 => quote = Some(ch),
            '{' | '[' | '<' | '(' => {
                depth += 1;
                cur.push(ch);
            }
            '}' | ']' | '>' | ')' => {
                depth -= 1;
                cur.push(ch);
            }
            c if c.is_whitespace() && depth <= 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `app(args)` (or a bare `app`) as an action ([`Action::from_app`]).
fn app_action(app: &str) -> Result<Action, String> {
    let (name, arg) = match app.split_once('(') {
        Some((n, rest)) => (n, rest.strip_suffix(')').unwrap_or(rest).trim()),
        None => (app, ""),
    };
    Action::from_app(name, arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originate_tokens_keep_vars_and_app_args_together() {
        assert_eq!(
            tokens("{origination_caller_id_number=1 x=a b}sofia/internal/9196@127.0.0.1:5170 &playback(/tmp/a b.wav) XML default 'My Name' 100 30"),
            vec![
                "{origination_caller_id_number=1 x=a b}sofia/internal/9196@127.0.0.1:5170",
                "&playback(/tmp/a b.wav)",
                "XML",
                "default",
                "My Name",
                "100",
                "30"
            ]
        );
    }

    #[test]
    fn apps() {
        assert_eq!(app_action("park"), Ok(Action::Park));
        assert_eq!(
            app_action("playback(x.wav)"),
            Ok(Action::Playback {
                file: "x.wav".into()
            })
        );
        assert_eq!(
            app_action("transfer(9196 XML default)"),
            Ok(Action::Transfer {
                extension: "9196".into(),
                context: Some("default".into())
            })
        );
        assert!(app_action("system(rm -rf /)").is_err());
    }

    #[test]
    fn show_table_formats() {
        let rows = vec![vec![("uuid", "a".to_string()), ("name", "x".to_string())]];
        assert_eq!(table(&rows, false), "uuid,name\na,x\n\n1 total.\n");
        let j: Value = serde_json::from_str(&table(&rows, true)).unwrap();
        assert_eq!(j["row_count"], 1);
        assert_eq!(j["rows"][0]["name"], "x");
        assert_eq!(table(&[], false), "\n\n0 total.\n");
    }
}
