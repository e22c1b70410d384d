//! The HTTP listener: Prometheus `/metrics` and the tenant dialplan API.
//!
//! # Tenant dialplan API
//!
//! Every request carries `Authorization: Bearer TOKEN`; the token's
//! SHA-256 must be one of the tenant's `api_tokens_sha256`. A missing token
//! is answered 401, a token that does not open this tenant (or a tenant
//! that does not exist: no tenant enumeration) 403.
//!
//! | request | does |
//! |---|---|
//! | `GET /v1/tenants/T/dialplan` | running version, earlier versions, staged upload |
//! | `POST /v1/tenants/T/dialplan[?activate=0][&destination=N]` | body: a component. Validated (a component, the dialplan world, only the switch's imports), then a routing dry run in the tenant's sandbox (destination `N`, default `1000`); then activated, or staged with `activate=0` |
//! | `POST /v1/tenants/T/dialplan/activate` | activates the staged upload |
//! | `POST /v1/tenants/T/dialplan/rollback` | puts the previous version back |
//!
//! A refused upload (413 too large, 429 too many, 422 not a valid
//! dialplan or failing its dry run) changes nothing: the running version
//! keeps serving. Activation swaps versions as a reload does: calls in
//! progress keep the version that routed them. Uploaded versions live in
//! memory: a restart runs the tenant's configured component again.
//!
//! # Metrics
//!
//! See [`register_metrics`] for the list.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest, Sha256};

use dialtone_core::events::{EventFilter, EventName};
use dialtone_core::routing::{ChannelSnapshot, Direction};
use dialtone_dialplan::{Loaded, Role, TenantInfo};
use dialtone_http::http::{Handler, HandlerFuture, Request, Response};
use dialtone_http::metrics::{Registry, TEXT_CONTENT_TYPE};

use crate::app::App;

/// The HTTP routes of a running switch.
pub struct HttpApi {
    app: Arc<App>,
    registry: Registry,
    staged: Mutex<HashMap<String, Staged>>,
    uploads: Mutex<HashMap<String, VecDeque<Instant>>>,
}

struct Staged {
    loaded: Loaded,
    version: String,
}

impl HttpApi {
    /// Routes for `app`, exposing `registry` at `/metrics`.
    pub fn new(app: Arc<App>, registry: Registry) -> HttpApi {
        HttpApi {
            app,
            registry,
            staged: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    async fn route(self: Arc<Self>, req: Request) -> Response {
        let path = req.path.clone();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", ["metrics"]) => {
                Response::bytes(200, TEXT_CONTENT_TYPE, self.registry.render().into_bytes())
            }
            ("GET", ["healthz"]) => Response::text(200, "ok\n"),
            (m, ["v1", "tenants", tenant, "dialplan", rest @ ..]) => {
                let tenant = tenant.to_string();
                if let Err(r) = self.authorize(&req, &tenant) {
                    return r;
                }
                match (m, rest) {
                    ("GET", []) => self.versions(&tenant),
                    ("POST", []) => self.upload(tenant, req).await,
                    ("POST", ["activate"]) => self.activate(&tenant),
                    ("POST", ["rollback"]) => match self.app.tenants.rollback(&tenant) {
                        Ok(v) => Response::json(
                            200,
                            json!({ "tenant": tenant, "active": v }).to_string(),
                        ),
                        Err(e) => error(409, &e),
                    },
                    _ => error(405, "method not allowed here"),
                }
            }
            _ => error(404, "not found"),
        }
    }

    /// The tenant's token check (constant-time over the digests).
    fn authorize(&self, req: &Request, tenant: &str) -> Result<(), Response> {
        let Some(token) = req.bearer_token() else {
            return Err(
                error(401, "bearer token required").with_header("WWW-Authenticate", "Bearer")
            );
        };
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        let config = self.app.config.load();
        let ok = config.tenant(tenant).is_some_and(|t| {
            t.api_tokens_sha256
                .iter()
                .fold(false, |acc, d| acc | ct_eq(d.as_bytes(), digest.as_bytes()))
        });
        if ok {
            Ok(())
        } else {
            tracing::warn!(peer = %req.peer, tenant, "tenant API: token refused");
            Err(error(403, "this token does not manage that tenant"))
        }
    }

    fn versions(&self, tenant: &str) -> Response {
        let Some(v) = self.app.tenants.versions(tenant) else {
            return error(404, "no such tenant");
        };
        let staged = self.staged.lock().get(tenant).map(|s| s.version.clone());
        let versions: Vec<_> = v
            .iter()
            .map(|i| json!({ "version": i.version, "source": i.source, "active": i.active }))
            .collect();
        Response::json(
            200,
            json!({
                "tenant": tenant,
                "active": v.iter().find(|i| i.active).map(|i| i.version.clone()),
                "versions": versions,
                "staged": staged,
            })
            .to_string(),
        )
    }

    async fn upload(self: &Arc<Self>, tenant: String, req: Request) -> Response {
        let config = self.app.config.load_full();
        let per_minute = config.control.uploads_per_minute as usize;
        {
            let mut u = self.uploads.lock();
            let q = u.entry(tenant.clone()).or_default();
            let now = Instant::now();
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
            {
                q.pop_front();
            }
            if q.len() >= per_minute {
                return error(429, &format!("at most {per_minute} uploads per minute"))
                    .with_header("Retry-After", "60");
            }
            q.push_back(now);
        }
        if req.body.is_empty() {
            return error(422, "empty body: send the component's bytes");
        }
        let activate = !matches!(req.query("activate"), Some("0" | "false" | "no"));
        let destination = req.query("destination").unwrap_or("1000").to_string();
        let me = self.clone();
        let t = tenant.clone();
        let body = req.body;
        let outcome =
            tokio::task::spawn_blocking(move || me.validate(&t, &body, &destination)).await;
        let (loaded, actions) = match outcome {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(tenant, error = %e, "tenant API: upload refused; the running version stays");
                return error(422, &e);
            }
            Err(e) => return error(500, &e.to_string()),
        };
        let version = loaded.version();
        let dry_run = serde_json::to_value(&actions).unwrap_or_default();
        if !activate {
            self.staged.lock().insert(
                tenant.clone(),
                Staged {
                    loaded,
                    version: version.clone(),
                },
            );
            return Response::json(
                201,
                json!({ "tenant": tenant, "staged": version, "dry_run": dry_run }).to_string(),
            );
        }
        let Some(t) = self.app.tenants.tenant(&tenant) else {
            return error(404, "no such tenant");
        };
        let previous = self
            .app
            .tenants
            .versions(&tenant)
            .and_then(|v| v.into_iter().find(|i| i.active));
        let v = self.app.tenants.install(&t, loaded);
        tracing::info!(tenant, version = v, "tenant API: upload activated");
        Response::json(
            201,
            json!({
                "tenant": tenant,
                "active": v,
                "previous": previous.map(|p| p.version),
                "dry_run": dry_run,
            })
            .to_string(),
        )
    }

    /// Compiles, checks and dry-runs an upload (blocking).
    fn validate(
        &self,
        tenant: &str,
        bytes: &[u8],
        destination: &str,
    ) -> Result<(Loaded, Vec<dialtone_core::routing::Action>), String> {
        if self.app.tenants.tenant(tenant).is_none() {
            return Err(format!("no tenant `{tenant}`"));
        }
        let loaded = self
            .app
            .tenants
            .engine()
            .load(bytes, Role::Dialplan)
            .map_err(|e| format!("not a valid dialplan component: {e}"))?;
        let config = self.app.config.load();
        let context = config
            .tenant(tenant)
            .map(|t| t.default_context.clone())
            .unwrap_or_else(|| "default".into());
        let snapshot = ChannelSnapshot {
            uuid: uuid::Uuid::new_v4().to_string(),
            direction: Direction::Inbound,
            endpoint: "dry-run".into(),
            profile: String::new(),
            tenant: tenant.to_string(),
            context,
            caller_id_name: "Dry Run".into(),
            caller_id_number: "0000".into(),
            destination: destination.to_string(),
            network_addr: String::new(),
            variables: Default::default(),
        };
        let actions = self
            .app
            .tenants
            .dry_run(tenant, &loaded, snapshot)
            .map_err(|e| format!("routing dry run failed: {e}"))?;
        Ok((loaded, actions))
    }

    fn activate(&self, tenant: &str) -> Response {
        let Some(staged) = self.staged.lock().remove(tenant) else {
            return error(409, "nothing staged: upload with activate=0 first");
        };
        let Some(t) = self.app.tenants.tenant(tenant) else {
            return error(404, "no such tenant");
        };
        let v = self.app.tenants.install(&t, staged.loaded);
        Response::json(200, json!({ "tenant": tenant, "active": v }).to_string())
    }
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, json!({ "error": message }).to_string())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Routes(Arc<HttpApi>);

impl Handler for Routes {
    fn handle(&self, req: Request) -> HandlerFuture<'_> {
        let api = self.0.clone();
        Box::pin(api.route(req))
    }
}

/// Binds the HTTP listener and serves until the process ends.
pub async fn start(app: &Arc<App>) -> anyhow::Result<()> {
    let config = app.config.load_full();
    let registry = Registry::new();
    register_metrics(app, &registry);
    let listener = tokio::net::TcpListener::bind(config.control.http_listen)
        .await
        .map_err(|e| anyhow::anyhow!("HTTP {}: {e}", config.control.http_listen))?;
    tracing::info!(listen = %config.control.http_listen, "HTTP listening (/metrics, tenant API)");
    let limits = dialtone_http::http::Limits {
        max_body_bytes: config.control.upload_max_bytes,
        ..Default::default()
    };
    let api = Arc::new(HttpApi::new(app.clone(), registry));
    tokio::spawn(dialtone_http::http::serve(
        listener,
        Arc::new(Routes(api)),
        limits,
    ));
    Ok(())
}

/// Registers the switch's metrics:
///
/// - `dialtone_channels`: live channels;
/// - `dialtone_calls_total{tenant,direction}`: channels created (its rate
///   is calls per second);
/// - `dialtone_hangups_total{cause}`;
/// - `dialtone_route_duration_seconds{tenant}`: how long routing took,
///   dialplan queueing and guest run included;
/// - `dialtone_dialplan_invocations_total{tenant}`,
///   `dialtone_dialplan_inline_invocations_total{tenant}` (those that ran
///   on the asking thread, see `dialtone_dialplan::inline`),
///   `dialtone_dialplan_failures_total{tenant,kind}` (kind: trap, timeout,
///   fuel, memory, stack, malformed, ...);
/// - `dialtone_registrations`: unexpired SIP bindings;
/// - `dialtone_rtp_packets_received_total`, `..._sent_total`,
///   `dialtone_rtp_packets_lost_total`: counted from each SIP leg when it
///   ends; `dialtone_rtp_ports_in_use`;
/// - `dialtone_sip_transactions`, `dialtone_sip_calls`;
/// - `dialtone_events_published_total`, `dialtone_events_dropped_total`;
/// - `dialtone_cdr_records_total`, `dialtone_cdr_commits_total`,
///   `dialtone_cdr_queued`.
pub fn register_metrics(app: &Arc<App>, r: &Registry) {
    let sw = app.switch.clone();
    r.gauge_fn(
        "dialtone_channels",
        "Live channels.",
        &[],
        Box::new(move || vec![(vec![], sw.channel_count() as f64)]),
    );
    let sw = app.switch.clone();
    r.counter_fn(
        "dialtone_channels_created_total",
        "Channels created since start.",
        &[],
        Box::new(move || vec![(vec![], sw.channels_created() as f64)]),
    );
    let calls = r.counter_vec(
        "dialtone_calls_total",
        "Channels created, by tenant and direction (rate: calls per second).",
        &["tenant", "direction"],
    );
    let hangups = r.counter_vec(
        "dialtone_hangups_total",
        "Channels ended, by hangup cause.",
        &["cause"],
    );
    let route = r.histogram_vec(
        "dialtone_route_duration_seconds",
        "Time to route a channel through its tenant's dialplan.",
        &["tenant"],
        &[
            0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01,
            0.05, 0.1, 0.5, 1.0,
        ],
    );
    for (name, help, count) in [
        (
            "dialtone_dialplan_invocations_total",
            "Dialplan invocations, by tenant.",
            (|i| i.invocations) as fn(&TenantInfo) -> u64,
        ),
        (
            "dialtone_dialplan_inline_invocations_total",
            "Dialplan invocations that ran on the signalling thread that asked instead of the guest pool (a version earns this by being quick), by tenant.",
            |i| i.inline_invocations,
        ),
    ] {
        let tenants = app.tenants.clone();
        r.counter_fn(
            name,
            help,
            &["tenant"],
            Box::new(move || {
                tenants
                    .info()
                    .into_iter()
                    .map(|i| {
                        let n = count(&i) as f64;
                        (vec![i.name], n)
                    })
                    .collect()
            }),
        );
    }
    let failures = r.counter_vec(
        "dialtone_dialplan_failures_total",
        "Dialplan invocations that failed (traps, timeouts, memory, ...), by tenant and kind.",
        &["tenant", "kind"],
    );
    let a = app.clone();
    r.gauge_fn(
        "dialtone_registrations",
        "Unexpired SIP registrations (bindings).",
        &[],
        Box::new(move || {
            let now = dialtone_core::registrations::unix_now();
            vec![(
                vec![],
                a.sofia.location().map_or(0, |l| l.count(now)) as f64,
            )]
        }),
    );
    let rtp_in = r.counter(
        "dialtone_rtp_packets_received_total",
        "RTP packets received on SIP legs (counted when a leg ends).",
    );
    let rtp_out = r.counter(
        "dialtone_rtp_packets_sent_total",
        "RTP packets sent on SIP legs (counted when a leg ends).",
    );
    let rtp_lost = r.counter(
        "dialtone_rtp_packets_lost_total",
        "RTP packets lost on the way in (RFC 3550, counted when a leg ends).",
    );
    let a = app.clone();
    r.gauge_fn(
        "dialtone_rtp_ports_in_use",
        "RTP port pairs in use.",
        &[],
        Box::new(move || vec![(vec![], a.sofia.rtp_ports_in_use() as f64)]),
    );
    let a = app.clone();
    r.gauge_fn(
        "dialtone_sip_transactions",
        "Live SIP transactions.",
        &[],
        Box::new(move || vec![(vec![], a.sofia.load().0 as f64)]),
    );
    let a = app.clone();
    r.gauge_fn(
        "dialtone_sip_calls",
        "Live SIP dialogs (calls).",
        &[],
        Box::new(move || vec![(vec![], a.sofia.load().1 as f64)]),
    );
    let bus = app.events.clone();
    r.counter_fn(
        "dialtone_events_published_total",
        "Events published on the bus.",
        &[],
        Box::new(move || vec![(vec![], bus.stats().published as f64)]),
    );
    let bus = app.events.clone();
    r.counter_fn(
        "dialtone_events_dropped_total",
        "Events dropped for subscribers whose queue was full.",
        &[],
        Box::new(move || vec![(vec![], bus.stats().dropped as f64)]),
    );
    let a = app.clone();
    r.counter_fn(
        "dialtone_cdr_records_total",
        "CDRs committed to the journal.",
        &[],
        Box::new(move || {
            vec![(
                vec![],
                a.control.get().map_or(0, |c| c.cdr.stats().cdrs) as f64,
            )]
        }),
    );
    let a = app.clone();
    r.counter_fn(
        "dialtone_cdr_commits_total",
        "CDR journal commits (each one fsync).",
        &[],
        Box::new(move || {
            vec![(
                vec![],
                a.control.get().map_or(0, |c| c.cdr.stats().commits) as f64,
            )]
        }),
    );
    let a = app.clone();
    r.gauge_fn(
        "dialtone_cdr_queued",
        "CDR records waiting for the next commit.",
        &[],
        Box::new(move || {
            vec![(
                vec![],
                a.control.get().map_or(0, |c| c.cdr.stats().queued) as f64,
            )]
        }),
    );

    app.switch.set_route_observer(Box::new(move |tenant, took| {
        route.with(&[tenant]).observe_duration(took);
    }));

    // A tap: counted by the publisher, no queue and no task wake-up per
    // event.
    app.events
        .tap(
            EventFilter::names([EventName::ChannelCreate, EventName::ChannelHangupComplete])
                .with_subclass("dialtone::dialplan_failure"),
            move |ev| match ev.name {
                EventName::ChannelCreate => {
                    calls
                        .with(&[
                            ev.get("Tenant").unwrap_or(""),
                            ev.get("Call-Direction").unwrap_or(""),
                        ])
                        .inc();
                }
                EventName::ChannelHangupComplete => {
                    hangups.with(&[ev.get("Hangup-Cause").unwrap_or("")]).inc();
                    let n = |v: &str| {
                        ev.get_variable(v)
                            .and_then(|x| x.parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    rtp_in.add(n("rtp_audio_in_packet_count"));
                    rtp_out.add(n("rtp_audio_out_packet_count"));
                    rtp_lost.add(n("rtp_audio_in_skip_packet_count"));
                }
                EventName::Custom => {
                    failures
                        .with(&[
                            ev.get("Tenant").unwrap_or(""),
                            ev.get("Failure-Kind").unwrap_or(""),
                        ])
                        .inc();
                }
                _ => {}
            },
        )
        .detach();
}
