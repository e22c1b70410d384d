//! Wiring: configuration -> engine, tenants, core, endpoints; live reload.
//!
//! [`App::build`] turns one configuration snapshot into a running switch.
//! [`App::reload`] reads the configuration again and, only if it is valid,
//! applies it: new directory snapshot, new limits, new sandbox settings,
//! SIP gateways (added, changed, removed) and profile settings (context,
//! auth, registrar; addresses and certificates at the next start), and
//! every tenant component whose file content changed is compiled and swapped
//! (calls in progress keep their version). A component that fails to load is
//! refused and the running version keeps serving. Reloads happen when a
//! watched file changes and on SIGHUP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use dialtone_core::endpoint::EndpointRegistry;
use dialtone_core::events::EventBus;
use dialtone_core::limits::{Admission, LimitConfig};
use dialtone_core::pseudo::{ErrorEndpoint, LoopbackEndpoint, NullEndpoint};
use dialtone_core::registrations::Registrations;
use dialtone_core::switch::{SharedDirectory, Switch, SwitchSettings};
use dialtone_dialplan::pool::GuestPool;
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{Engine, EngineSettings, Role, SandboxSettings, Tenants};

use crate::config::{self, Config, SandboxSection, TenantConfig};
use crate::services::SwitchServices;

/// A running switch.
pub struct App {
    /// The configuration directory.
    pub conf_dir: PathBuf,
    /// The configuration in force.
    pub config: ArcSwap<Config>,
    /// The core.
    pub switch: Arc<Switch>,
    /// The WebAssembly host.
    pub tenants: Arc<Tenants>,
    /// The event bus.
    pub events: EventBus,
    /// The SIP endpoint.
    pub sofia: Arc<dialtone_sofia::Sofia>,
    services: Arc<SwitchServices>,
    admission: Arc<Admission>,
    /// Content hash of each (tenant, role) component file in force.
    loaded: Mutex<HashMap<(String, Role), String>>,
    /// The control plane, once started.
    pub control: std::sync::OnceLock<crate::control::Control>,
}

/// Sandbox settings from their configuration section.
pub fn sandbox_settings(s: &SandboxSection) -> SandboxSettings {
    SandboxSettings {
        deadline: Duration::from_millis(s.deadline_ms),
        memory_bytes: (s.memory_mb as usize) << 20,
        fuel: (s.fuel > 0).then_some(s.fuel),
        warm_reuse: s.warm_reuse,
        on_failure: s.on_failure,
        max_actions: s.max_actions as usize,
    }
}

fn global_limits(c: &Config) -> LimitConfig {
    LimitConfig {
        max_channels: c.limits.max_channels,
        max_cps: c.limits.max_cps,
        max_guest_invocations: c.limits.max_guest_invocations,
    }
}

fn tenant_limits(c: &Config, t: &TenantConfig) -> LimitConfig {
    LimitConfig {
        max_channels: t.limits.max_channels(&c.limits),
        max_cps: t.limits.max_cps(&c.limits),
        max_guest_invocations: t.limits.max_guest_invocations(&c.limits),
    }
}

fn short_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..12].to_string()
}

impl App {
    /// Builds everything a configuration describes. Tenant components that
    /// fail to load are errors here (a switch should not start half-routed).
    pub fn build(conf_dir: &Path, config: Config) -> anyhow::Result<Arc<App>> {
        let engine = Engine::new(EngineSettings {
            epoch_tick: Duration::from_millis(config.dialplan.epoch_tick_ms),
            pool_instances: config.dialplan.pool_instances,
            max_memory_bytes: (config.dialplan.max_memory_mb as usize) << 20,
            cache_dir: Some(config.switch.cache_dir.clone()),
            inline: config.dialplan.inline,
        })?;
        let pool = GuestPool::new(config.dialplan.workers, config.dialplan.queue)?;
        let events = EventBus::new();
        let admission = Arc::new(Admission::new(global_limits(&config)));
        let registrations = Arc::new(Registrations::new());
        let directory: SharedDirectory = Arc::new(ArcSwap::from_pointee(config.directory.clone()));
        let services = Arc::new(SwitchServices {
            directory: directory.clone(),
            registrations: registrations.clone(),
            globals: ArcSwap::from_pointee(config.variables.clone()),
        });
        let tenants = Tenants::new(
            engine,
            pool,
            services.clone(),
            admission.clone(),
            events.clone(),
        );
        let mut endpoints = EndpointRegistry::new();
        endpoints.register(Arc::new(ErrorEndpoint));
        endpoints.register(Arc::new(NullEndpoint));
        endpoints.register(Arc::new(LoopbackEndpoint));
        let sofia = dialtone_sofia::Sofia::new(
            config.sip.clone(),
            config.switch.default_domain.clone(),
            config.limits.retry_after_s,
            &config.media,
        );
        endpoints.register(sofia.clone());
        let switch = Switch::new(
            SwitchSettings {
                max_recursion: config.limits.max_recursion_depth,
                max_transfers: config.limits.max_transfers,
                sounds_dir: Some(config.switch.sounds_dir.clone()),
                recordings_dir: Some(config.switch.recordings_dir.clone()),
                ..SwitchSettings::default()
            },
            Arc::new(WasmDialplan(tenants.clone())),
            endpoints,
            events.clone(),
            admission.clone(),
            directory,
            registrations,
        );
        let app = Arc::new(App {
            conf_dir: conf_dir.to_path_buf(),
            config: ArcSwap::from_pointee(config.clone()),
            switch,
            tenants,
            events,
            sofia,
            services,
            admission,
            loaded: Mutex::new(HashMap::new()),
            control: std::sync::OnceLock::new(),
        });
        let errors = app.apply(&config);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        Ok(app)
    }

    /// Applies a configuration snapshot; returns the component errors (their
    /// tenants keep the version they had).
    fn apply(&self, config: &Config) -> Vec<anyhow::Error> {
        let now = Instant::now();
        self.admission.set_global(global_limits(config), now);
        self.switch.set_directory(config.directory.clone());
        self.services
            .globals
            .store(Arc::new(config.variables.clone()));
        let mut errors = Vec::new();
        // The switch-wide helper component.
        if let Err(e) = self.load_default_helpers(&config.dialplan.helpers) {
            errors.push(e);
        }
        let names: Vec<String> = config.tenants.iter().map(|t| t.domain.clone()).collect();
        for t in &config.tenants {
            self.admission
                .set_tenant(&t.domain, tenant_limits(config, t), now);
            self.tenants
                .configure(&t.domain, sandbox_settings(&t.sandbox));
            if let Err(e) = self.load_component(&t.domain, Role::Dialplan, &t.dialplan) {
                errors.push(e);
            }
            if t.helpers != config.dialplan.helpers {
                if let Err(e) = self.load_component(&t.domain, Role::Helpers, &t.helpers) {
                    errors.push(e);
                }
            }
        }
        self.tenants.retain(&names);
        self.loaded
            .lock()
            .retain(|(t, _), _| names.iter().any(|n| n == t));
        errors
    }

    fn load_default_helpers(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read helper component {}", path.display()))?;
        let hash = short_hash(&bytes);
        let key = (String::new(), Role::Helpers);
        if self.loaded.lock().get(&key) == Some(&hash) {
            return Ok(());
        }
        let mut loaded = self
            .tenants
            .engine()
            .load(&bytes, Role::Helpers)
            .with_context(|| format!("helper component {}", path.display()))?;
        loaded.source = Some(path.to_path_buf());
        tracing::info!(version = loaded.version(), path = %path.display(), "default dialstring helpers loaded");
        self.tenants.set_default_helpers(loaded);
        self.loaded.lock().insert(key, hash);
        Ok(())
    }

    /// Loads a tenant component if its content changed since the last load.
    fn load_component(&self, tenant: &str, role: Role, path: &Path) -> anyhow::Result<()> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("tenant {tenant}: cannot read component {}", path.display())
        })?;
        let hash = short_hash(&bytes);
        let key = (tenant.to_string(), role);
        if self.loaded.lock().get(&key) == Some(&hash) {
            return Ok(());
        }
        let version = self
            .tenants
            .load_file(tenant, role, path)
            .with_context(|| format!("tenant {tenant}: component {}", path.display()))?;
        tracing::info!(tenant, version, path = %path.display(), "tenant component in force");
        self.loaded.lock().insert(key, hash);
        Ok(())
    }

    /// Reads the configuration again and applies it if it is valid. A bad
    /// configuration changes nothing and its error names file, line, field.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = config::load(&self.conf_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        config::validate_safe_defaults(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let errors = self.apply(&config);
        // SIP gateways and profile settings: applied by the running
        // profiles (this runs on a blocking thread of the runtime).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for w in rt.block_on(self.sofia.reload(&config.sip)) {
                tracing::warn!("reload: {w}");
            }
        }
        self.config.store(Arc::new(config));
        for e in &errors {
            tracing::warn!("{e:#}");
        }
        match errors.into_iter().next() {
            Some(e) => Err(e.context(
                "reload applied; some components were refused and keep their running version",
            )),
            None => Ok(()),
        }
    }

    /// Loads a tenant's dialplan component from its configured file again
    /// (even if unchanged) and swaps it in; a component that fails to load
    /// is refused and the running version keeps serving. Returns the new
    /// version.
    pub fn reload_dialplan(&self, tenant: &str) -> anyhow::Result<String> {
        let config = self.config.load();
        let t = config
            .tenant(tenant)
            .ok_or_else(|| anyhow::anyhow!("no tenant `{tenant}`"))?;
        let path = t.dialplan.clone();
        let bytes = std::fs::read(&path).with_context(|| {
            format!("tenant {tenant}: cannot read component {}", path.display())
        })?;
        let version = self
            .tenants
            .load_file(tenant, Role::Dialplan, &path)
            .with_context(|| format!("tenant {tenant}: component {}", path.display()))?;
        self.loaded
            .lock()
            .insert((tenant.to_string(), Role::Dialplan), short_hash(&bytes));
        Ok(version)
    }

    /// Files whose change triggers a reload: the configuration files and
    /// every component file.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let c = self.config.load();
        let mut v = c.files.clone();
        v.push(c.dialplan.helpers.clone());
        for t in &c.tenants {
            v.push(t.dialplan.clone());
            v.push(t.helpers.clone());
        }
        v.sort();
        v.dedup();
        v
    }
}

/// Runs the switch until SIGINT/SIGTERM: reload on SIGHUP and on changes of
/// watched files (polled every 500 ms by modification time and size, which
/// works on every filesystem and costs nothing measurable).
/// Starts the endpoints that own sockets: the location database, the media
/// engine and the SIP profiles.
pub async fn start_endpoints(app: &App) -> anyhow::Result<()> {
    let config = app.config.load();
    let location = Arc::new(dialtone_sofia::location::Location::open(
        Some(&config.switch.state_dir.join("registrations.redb")),
        app.switch.registrations().clone(),
        dialtone_core::registrations::unix_now(),
    )?);
    let m = &config.media;
    check_nofile_limit(m.port_min, m.port_max);
    let media = dialtone_media::MediaEngine::start(
        dialtone_media::MediaConfig::new(m.ip, m.port_min, m.port_max).workers(m.workers),
    )
    .map_err(|e| anyhow::anyhow!("media engine: {e}"))?;
    app.sofia.start(&app.switch, location, media).await
}

/// Descriptors the switch keeps beside its RTP sockets: listeners, TCP and
/// TLS connections, the databases, the event socket and its clients (the
/// RTP port pool never binds into them).
const NOFILE_MARGIN: usize = dialtone_media::ports::FD_RESERVE;

/// Raises the open file limit to its hard limit, and warns when even that
/// is short of what the RTP range can use (a socket per port, RTP and
/// RTCP):
/// calls beyond it would fail with `Too many open files` long before the
/// range is exhausted.
fn check_nofile_limit(port_min: u16, port_max: u16) {
    let limit = dialtone_media::ports::raise_nofile_limit();
    let sockets = usize::from(port_max.saturating_sub(port_min)) + 1;
    if limit < sockets + NOFILE_MARGIN {
        tracing::warn!(
            limit,
            rtp_sockets = sockets,
            concurrent_calls = limit.saturating_sub(NOFILE_MARGIN) / 4,
            "the open file limit is below what the RTP range (media.rtp_port_min to \
             rtp_port_max) can use: about concurrent_calls bridged calls fit; raise the \
             hard limit (ulimit -Hn, systemd LimitNOFILE=) or narrow the range"
        );
    } else {
        tracing::debug!(limit, rtp_sockets = sockets, "open file limit");
    }
}

/// Runs the switch: starts the endpoints, then watches the configuration
/// (files and SIGHUP) until SIGTERM or SIGINT.
pub async fn run(app: Arc<App>, logs: dialtone_control::esl::logs::LogHub) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    start_endpoints(&app).await?;
    let control = crate::control::start(&app, logs).await?;
    let _ = app.control.set(control);
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut stamps = file_stamps(&app.watched_files());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_load = None;
    tracing::info!(
        tenants = ?app.tenants.names(),
        conf = %app.conf_dir.display(),
        "dialtone running"
    );
    loop {
        let reason = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = term.recv() => return shutdown(&app).await,
            _ = int.recv() => return shutdown(&app).await,
            _ = tick.tick() => {
                // One line whenever the switch's load changes: what leak
                // checks and operators read until the control plane lands.
                app.sofia.trim_parked_rtp();
                let (transactions, sip_calls) = dialtone_sofia::Sofia::load(&app.sofia);
                let load = (app.switch.channel_count(), sip_calls, transactions, app.sofia.rtp_ports_in_use());
                if last_load != Some(load) {
                    last_load = Some(load);
                    tracing::info!(channels = load.0, sip_calls, transactions, rtp_ports = load.3, "load");
                }
                let now = file_stamps(&app.watched_files());
                if now == stamps { continue; }
                // Let a writer finish before reading.
                tokio::time::sleep(Duration::from_millis(200)).await;
                "file change"
            }
        };
        // The stamps are taken before the files are read: a file written
        // while the reload runs differs from them and is read again on the
        // next tick (taken after, such a change would go unnoticed).
        stamps = file_stamps(&app.watched_files());
        let a = app.clone();
        let result = tokio::task::spawn_blocking(move || a.reload()).await?;
        match result {
            Ok(()) => tracing::info!(reason, "configuration reloaded"),
            Err(e) => tracing::error!(reason, "reload: {e:#}"),
        }
        // A reload can change what is watched (a new tenant file, another
        // component path): start watching the new set from what was read.
        let watched = app.watched_files();
        if watched.len() != stamps.len() {
            stamps = file_stamps(&watched);
        }
    }
}

/// SIGTERM/SIGINT: every channel is hung up (SYSTEM_SHUTDOWN, a BYE to
/// each phone), the switch waits up to 5 s for them to end, then commits
/// the CDRs still queued. Calls that outlive the wait are recorded as cut
/// at the next start, as after a crash.
async fn shutdown(app: &Arc<App>) -> anyhow::Result<()> {
    let uuids = app.switch.channel_uuids();
    if !uuids.is_empty() {
        tracing::info!(
            channels = uuids.len(),
            "shutting down: hanging up every channel"
        );
    }
    for u in &uuids {
        app.switch
            .hangup(u, dialtone_core::HangupCause::SystemShutdown);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.switch.channel_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last hangup events reach the CDR writer, then commit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Some(c) = app.control.get() {
        let cdr = c.cdr.clone();
        let _ = tokio::task::spawn_blocking(move || cdr.flush()).await;
    }
    tracing::info!("dialtone stopped");
    Ok(())
}

fn file_stamps(files: &[PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| m.modified().ok().map(|t| (t, m.len())))
        })
        .collect()
}
