//! Starts the control plane of a running switch: the event socket (with
//! the API of [`crate::api`]), the CDR journal fed by the event bus and the
//! HEARTBEAT events. The channel counters `status` and HEARTBEAT report are
//! the switch's own ([`dialtone_core::switch::Switch::channels_created`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_control::esl::{self, logs::LogHub};
use dialtone_core::events::{Event, EventName};

use crate::api::SwitchApi;
use crate::app::App;

/// What the control plane keeps running.
pub struct Control {
    /// The CDR journal.
    pub cdr: Arc<dialtone_cdr::Journal>,
}

/// Binds the event socket and starts every control-plane task.
pub async fn start(app: &Arc<App>, logs: LogHub) -> anyhow::Result<Control> {
    let config = app.config.load_full();
    let c = &config.control;
    let core_uuid = uuid::Uuid::new_v4().to_string();

    // CDRs: the journal is replayed first, so channels a crash cut are
    // recorded before any new call starts.
    let path = config.switch.state_dir.join("cdr.redb");
    let options = dialtone_cdr::JournalOptions {
        jsonl: c
            .cdr_jsonl
            .then(|| config.switch.state_dir.join("cdr.jsonl")),
        ..Default::default()
    };
    let (journal, cut) = dialtone_cdr::Journal::open_with(&path, options)
        .map_err(|e| anyhow::anyhow!("CDR journal {}: {e}", path.display()))?;
    if !cut.is_empty() {
        tracing::warn!(
            count = cut.len(),
            "CDRs written for channels the last run left open (cut by a crash)"
        );
    }
    let journal = Arc::new(journal);
    dialtone_cdr::tap_bus(&app.events, journal.clone()).detach();

    // HEARTBEAT.
    if c.heartbeat_s > 0 {
        let every = Duration::from_secs(c.heartbeat_s as u64);
        let app = app.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let up = started.elapsed().as_secs();
                app.events.publish(
                    Event::new(EventName::Heartbeat)
                        .header("Event-Info", "System Ready")
                        .header(
                            "Up-Time",
                            format!(
                                "0 years, {} days, {} hours, {} minutes, {} seconds",
                                up / 86_400,
                                up / 3600 % 24,
                                up / 60 % 60,
                                up % 60
                            ),
                        )
                        .header("Uptime-msec", (up * 1000).to_string())
                        .header("Session-Count", app.switch.channel_count().to_string())
                        .header(
                            "Session-Since-Startup",
                            app.switch.channels_created().to_string(),
                        )
                        .header("Session-Peak-Max", app.switch.channels_peak().to_string())
                        .header(
                            "Max-Sessions",
                            app.config.load().limits.max_channels.to_string(),
                        ),
                );
            }
        });
    }

    // The event socket.
    let listener = tokio::net::TcpListener::bind(c.esl_listen)
        .await
        .map_err(|e| anyhow::anyhow!("event socket {}: {e}", c.esl_listen))?;
    tracing::info!(listen = %c.esl_listen, "event socket listening");
    crate::http::start(app).await?;
    let api = Arc::new(SwitchApi::new(app.clone()));
    let settings = esl::EslSettings {
        password: c.esl_password.clone(),
        subscriber_queue: config.events.subscriber_queue,
        core_uuid,
        api,
        bus: app.events.clone(),
        logs,
    };
    // The `socket` action: outbound connections speak the same protocol.
    app.switch
        .set_socket_handler(Arc::new(esl::outbound::OutboundSockets::new(
            settings.clone(),
            &app.switch,
        )));
    tokio::spawn(esl::serve(listener, settings));
    Ok(Control { cdr: journal })
}

/// A tracing layer that hands log lines to the event socket's `log`
/// listeners (nothing is formatted while there are none).
pub struct EslLogLayer(pub LogHub);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EslLogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !self.0.wanted() {
            return;
        }
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        let mut v = LineVisitor::default();
        event.record(&mut v);
        let mut text = format!("{} [{}] {}", now_stamp(), meta.level(), v.message);
        for (k, val) in &v.fields {
            text.push_str(&format!(" {k}={val}"));
        }
        text.push('\n');
        self.0.send(esl::logs::LogLine {
            level,
            file: meta.file().unwrap_or("").to_string(),
            func: meta.target().to_string(),
            line: meta.line().unwrap_or(0),
            uuid: v.uuid,
            text,
        });
    }
}

fn now_stamp() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    uuid: String,
    fields: Vec<(String, String)>,
}

impl tracing::field::Visit for LineVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        match field.name() {
            "message" => self.message = v,
            "uuid" => {
                self.uuid = v.trim_matches('"').to_string();
                self.fields.push(("uuid".into(), self.uuid.clone()));
            }
            n => self.fields.push((n.to_string(), v)),
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "uuid" => {
                self.uuid = value.to_string();
                self.fields.push(("uuid".into(), value.to_string()));
            }
            n => self.fields.push((n.to_string(), value.to_string())),
        }
    }
}
