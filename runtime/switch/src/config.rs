//! The switch configuration: one TOML format, one schema, for the whole
//! switch.
//!
//! ```text
//! conf/dialtone.toml        switch-wide: [switch] [limits] [dialplan] [sandbox] [events] [variables]
//! conf/tenants/*.toml       one file per tenant (domain): dialplan component, limits,
//!                           sandbox overrides, variables, [users.*] and [groups.*]
//! ```
//!
//! This module owns reading those files, checking them against the schema
//! and turning them into a [`Config`]: an immutable snapshot that includes
//! the [`Directory`] of every tenant. [`load`] does no other I/O (it creates
//! no directory and opens no component); a live reload calls it again and
//! keeps the old snapshot if it fails.
//!
//! Every key is optional with a default unless the schema says otherwise,
//! and unknown keys are errors. Relative paths are relative to the
//! directory of the file that names them. Every error is a [`ConfigError`]
//! naming the file, the 1-based line and column, and the dotted field
//! (`sandbox.memory_mb`, `users.1000.password`): syntax errors, wrong types
//! and unknown keys as well as semantic errors found after parsing. After
//! loading, [`TenantConfig::error`] and [`Config::error`] build errors that
//! point at a setting's line, for checks made by other layers (a component
//! that fails to compile, for instance).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use dialtone_core::directory::{Directory, TenantDirectory, User, VANILLA_DIAL_STRING};
use dialtone_core::HangupCause;
use dialtone_sofia::settings::{GatewaySettings, MediaSettings, ProfileSettings, SipSettings};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_spanned::__unstable as spanned;

/// The switch-wide file's name, inside the configuration directory.
pub const MAIN_FILE: &str = "dialtone.toml";

/// The largest `warm_reuse` accepted.
pub const MAX_WARM_REUSE: u64 = 100_000;

/// Passwords that [`validate_safe_defaults`] refuses when the switch
/// listens on a non-loopback address (the user id itself and the empty
/// password are refused too).
pub const WELL_KNOWN_PASSWORDS: &[&str] = &["1234", "password"];

// ---------------------------------------------------------------------------
// Public model
// ---------------------------------------------------------------------------

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file at fault.
    pub file: PathBuf,
    /// 1-based line; 0 when there is no line (a missing file, a missing
    /// optional key whose default is at fault).
    pub line: usize,
    /// 1-based column (in characters); 0 when unknown.
    pub column: usize,
    /// The dotted path of the field at fault (`sandbox.memory_mb`,
    /// `users.1000.password`); empty when the error is about the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// `{file}:{line}:{column}: {field}: {message}`; the `{field}: ` part is
/// left out when the error is about the whole file.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where each setting of one file was written: dotted field path to the
/// 1-based (line, column) of its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locations {
    fields: BTreeMap<String, (usize, usize)>,
}

impl Locations {
    /// The (line, column) of a field's value, if the file set it.
    pub fn get(&self, field: &str) -> Option<(usize, usize)> {
        self.fields.get(field).copied()
    }

    fn error(&self, file: &Path, field: &str, message: String) -> ConfigError {
        let (line, column) = self.get(field).unwrap_or((0, 0));
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message,
        }
    }
}

/// A loaded, validated configuration: one immutable snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[switch]`.
    pub switch: SwitchSection,
    /// `[sip]`: profiles and gateways.
    pub sip: SipSettings,
    /// `[media]`: the RTP relay.
    pub media: MediaSettings,
    /// `[limits]`: global caps.
    pub limits: LimitsSection,
    /// `[dialplan]`: engine-wide WebAssembly host settings.
    pub dialplan: DialplanSection,
    /// `[sandbox]`: defaults for every tenant (each tenant's resolved copy
    /// is in [`TenantConfig::sandbox`]).
    pub sandbox: SandboxSection,
    /// `[events]`.
    pub events: EventsSection,
    /// `[control]`.
    pub control: ControlSection,
    /// `[variables]`: global variables, in file order.
    pub variables: Vec<(String, String)>,
    /// The tenants, in file-name order.
    pub tenants: Vec<TenantConfig>,
    /// Every tenant's users and groups.
    pub directory: Directory,
    /// Every file read, `dialtone.toml` first, for watching.
    pub files: Vec<PathBuf>,
    /// Where each setting of `dialtone.toml` was written.
    pub locations: Locations,
}

impl Config {
    /// The path of `dialtone.toml` (the first of [`Config::files`]).
    pub fn main_file(&self) -> &Path {
        self.files
            .first()
            .map_or(Path::new(MAIN_FILE), PathBuf::as_path)
    }

    /// A tenant by domain (case-insensitive, as domains are).
    pub fn tenant(&self, domain: &str) -> Option<&TenantConfig> {
        self.tenants
            .iter()
            .find(|t| t.domain.eq_ignore_ascii_case(domain))
    }

    /// An error about a field of `dialtone.toml`, at the line that set it
    /// (line 0 if the field was left to its default).
    pub fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        self.locations
            .error(self.main_file(), field, message.into())
    }
}

/// `[switch]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSection {
    /// The tenant for channels whose request domain is an IP address or
    /// unknown. Must be a configured tenant.
    pub default_domain: String,
    /// The directory of tenant files (resolved).
    pub tenants_dir: PathBuf,
    /// Registrations database, caches (resolved; not created by [`load`]).
    pub state_dir: PathBuf,
    /// Compiled component cache (resolved; not created by [`load`]).
    pub cache_dir: PathBuf,
    /// Sound files: a tenant plays files from `sounds_dir/<tenant>/` only
    /// (resolved).
    pub sounds_dir: PathBuf,
    /// Recordings: a tenant records into `recordings_dir/<tenant>/` only
    /// (resolved; created when first needed).
    pub recordings_dir: PathBuf,
    /// Addresses endpoints may bind (`127.0.0.1`, `[::1]:5060`,
    /// `localhost`...).
    pub listen: Vec<String>,
}

impl Default for SwitchSection {
    fn default() -> Self {
        SwitchSection {
            default_domain: "dialtone.local".into(),
            tenants_dir: "tenants".into(),
            state_dir: "../var".into(),
            cache_dir: "../var/cache/components".into(),
            sounds_dir: "sounds".into(),
            recordings_dir: "../var/recordings".into(),
            listen: vec!["127.0.0.1".into()],
        }
    }
}

/// `[limits]`: global caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsSection {
    /// Concurrent channels.
    pub max_channels: u32,
    /// New calls per second; 0 = unlimited.
    pub max_cps: u32,
    /// Concurrent dialplan invocations.
    pub max_guest_invocations: u32,
    /// `user/`, `group/`, `loopback/` nesting depth (1..=32).
    pub max_recursion_depth: u32,
    /// Transfers per channel before `EXCHANGE_ROUTING_ERROR`.
    pub max_transfers: u32,
    /// The `Retry-After` sent when overloaded, in seconds.
    pub retry_after_s: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_channels: 1000,
            max_cps: 200,
            max_guest_invocations: 1024,
            max_recursion_depth: 8,
            max_transfers: 16,
            retry_after_s: 5,
        }
    }
}

/// `[dialplan]`: engine-wide settings of the WebAssembly host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanSection {
    /// Guest thread pool size; 0 = number of CPUs.
    pub workers: usize,
    /// Invocations waiting for a worker; beyond that the switch is
    /// overloaded.
    pub queue: usize,
    /// Epoch interruption tick, in milliseconds.
    pub epoch_tick_ms: u64,
    /// Pooling allocator slots.
    pub pool_instances: u32,
    /// Memory ceiling of one slot in MiB; every `memory_mb` must fit.
    pub max_memory_mb: u32,
    /// The default dialstring helper component (resolved).
    pub helpers: PathBuf,
    /// Whether a quick component may run on the signalling thread that
    /// asked instead of a pool thread.
    pub inline: bool,
}

impl Default for DialplanSection {
    fn default() -> Self {
        DialplanSection {
            workers: 0,
            queue: 1024,
            epoch_tick_ms: 5,
            pool_instances: 256,
            max_memory_mb: 256,
            helpers: "../build/components/contact_helpers.wasm".into(),
            inline: true,
        }
    }
}

/// `[sandbox]`: the limits of one dialplan invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSection {
    /// Wall clock per invocation, host calls included (1..=10000 ms).
    pub deadline_ms: u64,
    /// Linear memory limit per invocation (1..=`max_memory_mb` MiB).
    pub memory_mb: u32,
    /// CPU budget in wasm fuel units; 0 = none.
    pub fuel: u64,
    /// 0 = a fresh instance per invocation; N = reuse one instance for up
    /// to N invocations.
    pub warm_reuse: u32,
    /// The hangup cause when the component traps, times out or answers
    /// garbage.
    pub on_failure: HangupCause,
    /// Longer action lists are a malformed answer.
    pub max_actions: u32,
}

impl Default for SandboxSection {
    fn default() -> Self {
        SandboxSection {
            deadline_ms: 50,
            memory_mb: 16,
            fuel: 0,
            warm_reuse: 0,
            on_failure: HangupCause::DestinationOutOfOrder,
            max_actions: 256,
        }
    }
}

/// `[events]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsSection {
    /// Events buffered per subscriber before it is considered too slow.
    pub subscriber_queue: usize,
}

impl Default for EventsSection {
    fn default() -> Self {
        EventsSection {
            subscriber_queue: 10_000,
        }
    }
}

/// `[control]`: the event socket, the HTTP listener (metrics, tenant
/// uploads) and the CDR journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSection {
    /// Event socket (ESL) address.
    pub esl_listen: SocketAddr,
    /// Event socket password.
    pub esl_password: String,
    /// HTTP address: `/metrics` and the tenant API.
    pub http_listen: SocketAddr,
    /// Largest component upload, in bytes.
    pub upload_max_bytes: usize,
    /// Uploads per tenant per minute.
    pub uploads_per_minute: u32,
    /// Also append every CDR to `<state_dir>/cdr.jsonl`.
    pub cdr_jsonl: bool,
    /// Seconds between HEARTBEAT events; 0 = none.
    pub heartbeat_s: u32,
}

/// FreeSWITCH's default event socket password; refused on a non-loopback
/// `esl_listen`.
pub const DEFAULT_ESL_PASSWORD: &str = "ClueCon";

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            esl_listen: "127.0.0.1:8021".parse().expect("literal"),
            esl_password: DEFAULT_ESL_PASSWORD.into(),
            http_listen: "127.0.0.1:8080".parse().expect("literal"),
            upload_max_bytes: 16 << 20,
            uploads_per_minute: 10,
            cdr_jsonl: true,
            heartbeat_s: 20,
        }
    }
}

/// A tenant's `[limits]`: `None` means only the global cap applies. Each
/// value is at most the global one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Concurrent channels of this tenant.
    pub max_channels: Option<u32>,
    /// New calls per second of this tenant; `Some(0)` = unlimited (only
    /// allowed when the global cap is unlimited too).
    pub max_cps: Option<u32>,
    /// Concurrent dialplan invocations of this tenant.
    pub max_guest_invocations: Option<u32>,
}

impl TenantLimits {
    /// The tenant's channel cap: its own, else the global one.
    pub fn max_channels(&self, global: &LimitsSection) -> u32 {
        self.max_channels.unwrap_or(global.max_channels)
    }

    /// The tenant's calls-per-second cap (0 = unlimited).
    pub fn max_cps(&self, global: &LimitsSection) -> u32 {
        self.max_cps.unwrap_or(global.max_cps)
    }

    /// The tenant's concurrent invocation cap.
    pub fn max_guest_invocations(&self, global: &LimitsSection) -> u32 {
        self.max_guest_invocations
            .unwrap_or(global.max_guest_invocations)
    }
}

/// One tenant file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// The tenant's domain (lower-case DNS name or IP literal).
    pub domain: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The dialplan component (resolved).
    pub dialplan: PathBuf,
    /// The dialstring helper component (resolved; the global one unless
    /// overridden).
    pub helpers: PathBuf,
    /// The context for authenticated callers without `user_context`.
    pub default_context: String,
    /// The tenant's own caps.
    pub limits: TenantLimits,
    /// The global `[sandbox]` with the tenant's keys merged over it.
    pub sandbox: SandboxSection,
    /// The tenant's variables, in file order.
    pub variables: Vec<(String, String)>,
    /// SHA-256 digests (lower-case hex) of the bearer tokens that may
    /// manage this tenant's dialplan over HTTP (`api_tokens_sha256`).
    pub api_tokens_sha256: Vec<String>,
    /// Where each setting of the file was written.
    pub locations: Locations,
}

impl TenantConfig {
    /// An error about a field of this tenant's file, at the line that set
    /// it (line 0 if the field was left to its default).
    pub fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        self.locations.error(&self.file, field, message.into())
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Loads `conf_dir/dialtone.toml` and every `*.toml` in its `tenants_dir`
/// (sorted by file name; hidden files are skipped), validates everything
/// and builds the snapshot.
///
/// `conf_dir` is made absolute (against the current directory, without
/// resolving symlinks), so every path in the result is absolute.
pub fn load(conf_dir: &Path) -> Result<Config, ConfigError> {
    let conf_dir = std::path::absolute(conf_dir).unwrap_or_else(|_| conf_dir.to_path_buf());
    let main_path = conf_dir.join(MAIN_FILE);
    let main_src = Source::read(&main_path)?;
    let main_root = main_src.parse()?;
    let cx = Cx::new(&main_src);
    let root = Table::root(&cx, &main_root);
    root.check_keys(&[
        "switch",
        "limits",
        "dialplan",
        "sandbox",
        "events",
        "control",
        "variables",
        "sip",
        "media",
    ])?;

    let switch = read_switch(&root, &conf_dir)?;
    let sip = read_sip(&root, &conf_dir)?;
    let media = read_media(&root)?;
    let limits = read_limits(&root)?;
    let dialplan = read_dialplan(&root, &conf_dir)?;
    let sandbox = match root.get("sandbox") {
        Some(f) => read_sandbox(&f.table()?, SandboxSection::default(), &dialplan)?,
        None => SandboxSection::default(),
    };
    if sandbox.memory_mb > dialplan.max_memory_mb {
        // Only possible when memory_mb was left to its default: an explicit
        // one was checked against the ceiling already.
        return Err(cx.error_at_field(
            "dialplan.max_memory_mb",
            format!(
                "must be at least sandbox.memory_mb ({}, the default)",
                sandbox.memory_mb
            ),
        ));
    }
    let events = read_events(&root)?;
    let control = read_control(&root)?;
    let variables = match root.get("variables") {
        Some(f) => read_vars(&f)?,
        None => Vec::new(),
    };
    let locations = cx.into_locations();

    let globals = Globals {
        limits: &limits,
        dialplan: &dialplan,
        sandbox: &sandbox,
    };
    let mut files = vec![main_path.clone()];
    let mut tenants = Vec::new();
    let mut dirs = Vec::new();
    let mut seen: BTreeMap<String, (PathBuf, usize, usize)> = BTreeMap::new();
    for path in tenant_files(&switch.tenants_dir, &main_path, &locations)? {
        let src = Source::read(&path)?;
        let loaded = load_tenant(&src, &globals)?;
        let domain = loaded.config.domain.clone();
        let (line, column) = loaded.domain_pos;
        if let Some((other, l, c)) = seen.get(&domain) {
            return Err(ConfigError {
                file: path,
                line,
                column,
                field: "domain".into(),
                message: format!(
                    "duplicate domain `{domain}`: already defined at {}:{l}:{c}",
                    other.display()
                ),
            });
        }
        seen.insert(domain, (path.clone(), line, column));
        files.push(path);
        tenants.push(loaded.config);
        dirs.push(loaded.directory);
    }

    if !seen.contains_key(&switch.default_domain) {
        return Err(locations.error(
            &main_path,
            "switch.default_domain",
            format!(
                "no tenant has domain `{}` (tenants: {})",
                switch.default_domain,
                if seen.is_empty() {
                    format!("none in {}", switch.tenants_dir.display())
                } else {
                    seen.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        ));
    }

    let directory = Directory::new(dirs).map_err(|e| ConfigError {
        file: main_path.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message: e.to_string(),
    })?;

    Ok(Config {
        switch,
        sip,
        media,
        limits,
        dialplan,
        sandbox,
        events,
        control,
        variables,
        tenants,
        directory,
        files,
        locations,
    })
}

/// Refuses a configuration that exposes well-known passwords: if
/// `switch.listen` or any SIP profile has an address that is not loopback (127.0.0.0/8,
/// `::1`, `localhost`) and any user's password is `1234`, `password`, the
/// user id itself or empty, the error names that user's password line.
///
/// The shipped configuration uses FreeSWITCH's `1234` on loopback only;
/// this check keeps it from being exposed by changing `listen` alone.
pub fn validate_safe_defaults(config: &Config) -> Result<(), ConfigError> {
    let c = &config.control;
    if !c.esl_listen.ip().to_canonical().is_loopback()
        && (c.esl_password == DEFAULT_ESL_PASSWORD
            || WELL_KNOWN_PASSWORDS
                .iter()
                .any(|p| c.esl_password.eq_ignore_ascii_case(p)))
    {
        return Err(config.error(
            "control.esl_password",
            format!(
                "the well-known event socket password with a non-loopback \
                 esl_listen (`{}`): set a strong password or listen on loopback only",
                c.esl_listen
            ),
        ));
    }
    let sip_binds = config
        .sip
        .profiles
        .iter()
        .flat_map(|p| std::iter::once(p.bind).chain(p.tls_bind))
        .filter(|a| !a.ip().to_canonical().is_loopback())
        .map(|a| a.to_string());
    let Some(exposed) = config
        .switch
        .listen
        .iter()
        .filter(|a| !is_loopback(a))
        .cloned()
        .chain(sip_binds)
        .next()
    else {
        return Ok(());
    };
    for tenant in &config.tenants {
        let Some(dir) = config.directory.tenant(&tenant.domain) else {
            continue;
        };
        for user in dir.users() {
            let Some(password) = &user.password else {
                continue;
            };
            if is_default_password(password, &user.id) {
                let field = format!("users.{}.password", quote_key(&user.id));
                return Err(tenant.error(
                    &field,
                    format!(
                        "default password with a non-loopback listen address \
                         (`{exposed}`): set a strong password for user `{}@{}` or \
                         listen on loopback only",
                        user.id, tenant.domain
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn is_default_password(password: &str, id: &str) -> bool {
    password.is_empty()
        || password == id
        || WELL_KNOWN_PASSWORDS
            .iter()
            .any(|p| password.eq_ignore_ascii_case(p))
}

/// Whether a `listen` entry only reaches this machine.
fn is_loopback(addr: &str) -> bool {
    match parse_listen(addr) {
        Some(ListenHost::Ip(ip)) => ip.to_canonical().is_loopback(),
        Some(ListenHost::Name(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

enum ListenHost<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// Parses `ip`, `ip:port`, `[v6]`, `[v6]:port`, `name`, `name:port`.
fn parse_listen(s: &str) -> Option<ListenHost<'_>> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ListenHost::Ip(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(ListenHost::Ip(sa.ip()));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<IpAddr>().ok().map(ListenHost::Ip);
    }
    let host = match s.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().ok()?;
            host
        }
        None => s,
    };
    let lower = host.to_ascii_lowercase();
    if valid_dns_name(&lower) {
        Some(ListenHost::Name(host))
    } else {
        None
    }
}

struct Globals<'a> {
    limits: &'a LimitsSection,
    dialplan: &'a DialplanSection,
    sandbox: &'a SandboxSection,
}

fn tenant_files(
    dir: &Path,
    main_path: &Path,
    locations: &Locations,
) -> Result<Vec<PathBuf>, ConfigError> {
    let fail = |e: std::io::Error| {
        locations.error(
            main_path,
            "switch.tenants_dir",
            format!("cannot read tenants directory {}: {e}", dir.display()),
        )
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a linked tenant file is a tenant file.
        if std::fs::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read_switch(root: &Table<'_>, base: &Path) -> Result<SwitchSection, ConfigError> {
    let mut s = SwitchSection::default();
    s.tenants_dir = base.join(&s.tenants_dir);
    s.state_dir = base.join(&s.state_dir);
    s.cache_dir = base.join(&s.cache_dir);
    s.sounds_dir = base.join(&s.sounds_dir);
    s.recordings_dir = base.join(&s.recordings_dir);
    let Some(t) = root.get("switch") else {
        return Ok(s);
    };
    let t = t.table()?;
    t.check_keys(&[
        "default_domain",
        "tenants_dir",
        "state_dir",
        "cache_dir",
        "sounds_dir",
        "recordings_dir",
        "listen",
    ])?;
    if let Some(f) = t.get("default_domain") {
        s.default_domain = f.domain()?.to_string();
    }
    if let Some(f) = t.get("tenants_dir") {
        s.tenants_dir = resolve(base, f.path()?);
    }
    if let Some(f) = t.get("state_dir") {
        s.state_dir = resolve(base, f.path()?);
    }
    if let Some(f) = t.get("cache_dir") {
        s.cache_dir = resolve(base, f.path()?);
    }
    if let Some(f) = t.get("sounds_dir") {
        s.sounds_dir = resolve(base, f.path()?);
    }
    if let Some(f) = t.get("recordings_dir") {
        s.recordings_dir = resolve(base, f.path()?);
    }
    if let Some(f) = t.get("listen") {
        let items = f.str_array()?;
        if items.is_empty() {
            return Err(f.err("must list at least one address"));
        }
        s.listen = Vec::with_capacity(items.len());
        for (addr, item) in items {
            if parse_listen(addr).is_none() {
                return Err(item.err(format!(
                    "`{addr}` is not an address: expected an IP address, `[v6]`, \
                     a host name or `localhost`, with an optional `:port`"
                )));
            }
            s.listen.push(addr.to_string());
        }
    }
    Ok(s)
}

fn socket_addr(f: &Field<'_>) -> Result<SocketAddr, ConfigError> {
    let s = f.nonempty_str()?;
    s.parse::<SocketAddr>()
        .map_err(|_| f.err(format!("`{s}` is not `ip:port` (IPv6 as `[addr]:port`)")))
}

fn boolean(f: &Field<'_>) -> Result<bool, ConfigError> {
    match f.value.node {
        Node::Bool(b) => Ok(b),
        _ => Err(f.type_err("a boolean")),
    }
}

fn read_sip(root: &Table<'_>, base: &Path) -> Result<SipSettings, ConfigError> {
    let mut s = SipSettings::default();
    let Some(t) = root.get("sip") else {
        return Ok(s);
    };
    let t = t.table()?;
    t.check_keys(&[
        "user_agent",
        "nonce_ttl_s",
        "auth_failures_per_minute",
        "register_expires_s",
        "register_max_expires_s",
        "register_min_expires_s",
        "profiles",
        "gateways",
    ])?;
    if let Some(f) = t.get("user_agent") {
        s.user_agent = f.nonempty_str()?.to_string();
    }
    if let Some(f) = t.get("nonce_ttl_s") {
        s.nonce_ttl = std::time::Duration::from_secs(f.int(10, 86_400)?);
    }
    if let Some(f) = t.get("auth_failures_per_minute") {
        s.auth_failures_per_minute = f.int_u32(1, 1_000_000)?;
    }
    if let Some(f) = t.get("register_expires_s") {
        s.register_expires.0 = f.int_u32(1, 604_800)?;
    }
    if let Some(f) = t.get("register_max_expires_s") {
        s.register_expires.1 = f.int_u32(1, 604_800)?;
    }
    if let Some(f) = t.get("register_min_expires_s") {
        s.register_min_expires = f.int_u32(1, 604_800)?;
    }
    if let Some(f) = t.get("profiles") {
        let pt = f.table()?;
        let mut profiles = Vec::new();
        for pf in pt.fields() {
            if !valid_id(pf.key) {
                return Err(pf.key_err(format!("`{}` is not a valid profile name", pf.key)));
            }
            let p = pf.table()?;
            p.check_keys(&[
                "listen",
                "tls",
                "tls_listen",
                "tls_cert",
                "tls_key",
                "tls_ca",
                "context",
                "auth_calls",
                "accept_register",
            ])?;
            let mut ps = match pf.key {
                "internal" => ProfileSettings::internal(),
                _ => ProfileSettings::external(),
            };
            ps.name = pf.key.to_string();
            if let Some(f) = p.get("listen") {
                ps.bind = socket_addr(&f)?;
            }
            // TLS is on unless `tls = false`, on `tls_listen`, by default
            // the listen address with the next port (5060 -> 5061; port 0,
            // any free port, stays 0).
            let tls_on = match p.get("tls") {
                Some(f) => boolean(&f)?,
                None => true,
            };
            ps.tls_bind = match (tls_on, p.get("tls_listen")) {
                (true, Some(f)) => Some(socket_addr(&f)?),
                (true, None) => match ps.bind.port() {
                    0 => Some(ps.bind),
                    p if p < u16::MAX => Some(SocketAddr::new(ps.bind.ip(), p + 1)),
                    _ => {
                        let f = p.get("listen").unwrap_or(pf);
                        return Err(f.err(
                            "no default TLS port for this listen port: set `tls_listen` \
                             (or `tls = false`)",
                        ));
                    }
                },
                (false, Some(f)) => {
                    return Err(f.key_err("`tls_listen` with `tls = false`: remove one"))
                }
                (false, None) => None,
            };
            if let Some(f) = p.get("tls_cert") {
                ps.tls_cert = Some(resolve(base, f.path()?));
            }
            if let Some(f) = p.get("tls_key") {
                ps.tls_key = Some(resolve(base, f.path()?));
            }
            if let Some(f) = p.get("tls_ca") {
                ps.tls_ca = Some(resolve(base, f.path()?));
            }
            if let Some(f) = p.get("context") {
                ps.context = f.token()?.to_string();
            }
            if let Some(f) = p.get("auth_calls") {
                ps.auth_calls = boolean(&f)?;
            }
            if let Some(f) = p.get("accept_register") {
                ps.accept_register = boolean(&f)?;
            }
            match (p.get("tls_cert"), p.get("tls_key")) {
                (Some(_), None) => {
                    return Err(p
                        .get("tls_cert")
                        .expect("present")
                        .key_err("`tls_cert` needs `tls_key` too"))
                }
                (None, Some(f)) => return Err(f.key_err("`tls_key` needs `tls_cert` too")),
                _ => {}
            }
            if ps.tls_bind == Some(ps.bind) && ps.bind.port() != 0 {
                let f = p.get("tls_listen").unwrap_or(pf);
                return Err(f.err(format!(
                    "TLS cannot share {} with the profile's TCP listener",
                    ps.bind
                )));
            }
            let mine = [Some(ps.bind), ps.tls_bind];
            if let Some((other, addr)) = profiles.iter().find_map(|o: &ProfileSettings| {
                [Some(o.bind), o.tls_bind]
                    .into_iter()
                    .flatten()
                    .find(|a| a.port() != 0 && mine.contains(&Some(*a)))
                    .map(|a| (o, a))
            }) {
                let f = if Some(addr) == ps.tls_bind && addr != ps.bind {
                    p.get("tls_listen")
                        .or_else(|| p.get("listen"))
                        .unwrap_or(pf)
                } else {
                    p.get("listen").unwrap_or(pf)
                };
                return Err(f.err(format!(
                    "address {addr} is already used by profile `{}`",
                    other.name
                )));
            }
            profiles.push(ps);
        }
        s.profiles = profiles;
    }
    if let Some(f) = t.get("gateways") {
        let gt = f.table()?;
        for gf in gt.fields() {
            if !valid_id(gf.key) {
                return Err(gf.key_err(format!("`{}` is not a valid gateway name", gf.key)));
            }
            let g = gf.table()?;
            g.check_keys(&[
                "profile",
                "proxy",
                "transport",
                "username",
                "password",
                "realm",
                "register",
                "expires_s",
                "ping_s",
                "ping_failures",
            ])?;
            let proxy = g.required("proxy")?;
            let mut gs = GatewaySettings {
                name: gf.key.to_string(),
                profile: "external".into(),
                proxy: proxy.token()?.to_string(),
                transport: "udp".into(),
                username: None,
                password: None,
                realm: None,
                register: false,
                expires: std::time::Duration::from_secs(3600),
                ping: std::time::Duration::ZERO,
                ping_failures: 2,
            };
            if let Some(f) = g.get("profile") {
                let name = f.token()?;
                if !s.profiles.iter().any(|p| p.name == name) {
                    return Err(f.err(format!("no profile `{name}`")));
                }
                gs.profile = name.to_string();
            }
            if let Some(f) = g.get("transport") {
                let t = f.token()?.to_ascii_lowercase();
                if t != "udp" && t != "tcp" && t != "tls" {
                    return Err(f.err(format!(
                        "transport must be `udp`, `tcp` or `tls`, not `{t}`"
                    )));
                }
                gs.transport = t;
            }
            if let Some(f) = g.get("username") {
                gs.username = Some(f.token()?.to_string());
            }
            if let Some(f) = g.get("password") {
                gs.password = Some(f.str()?.to_string());
            }
            if let Some(f) = g.get("realm") {
                gs.realm = Some(f.token()?.to_string());
            }
            if let Some(f) = g.get("register") {
                gs.register = boolean(&f)?;
                if gs.register && gs.username.is_none() {
                    return Err(f.err("registering needs `username`"));
                }
            }
            if let Some(f) = g.get("expires_s") {
                gs.expires = std::time::Duration::from_secs(f.int(30, 86_400)?);
            }
            if let Some(f) = g.get("ping_s") {
                gs.ping = std::time::Duration::from_secs(f.int(0, 3600)?);
            }
            if let Some(f) = g.get("ping_failures") {
                gs.ping_failures = f.int_u32(1, 100)?;
            }
            s.gateways.push(gs);
        }
    }
    Ok(s)
}

fn read_media(root: &Table<'_>) -> Result<MediaSettings, ConfigError> {
    let mut m = MediaSettings::default();
    let Some(t) = root.get("media") else {
        return Ok(m);
    };
    let t = t.table()?;
    t.check_keys(&[
        "rtp_ip",
        "rtp_port_min",
        "rtp_port_max",
        "workers",
        "rtp_timeout_s",
    ])?;
    if let Some(f) = t.get("rtp_ip") {
        let s = f.nonempty_str()?;
        m.ip = s
            .parse()
            .map_err(|_| f.err(format!("`{s}` is not an IP address")))?;
    }
    if let Some(f) = t.get("rtp_port_min") {
        m.port_min = f.int_u32(1024, 65534)? as u16;
    }
    if let Some(f) = t.get("rtp_port_max") {
        m.port_max = f.int_u32(1025, 65535)? as u16;
        if m.port_max < m.port_min.saturating_add(3) {
            return Err(f.err("must be at least rtp_port_min + 3 (two RTP/RTCP pairs)"));
        }
    }
    if let Some(f) = t.get("workers") {
        m.workers = f.int_u32(0, 256)? as usize;
    }
    if let Some(f) = t.get("rtp_timeout_s") {
        m.rtp_timeout_s = f.int_u32(0, 86_400)?;
    }
    Ok(m)
}

fn read_limits(root: &Table<'_>) -> Result<LimitsSection, ConfigError> {
    let mut l = LimitsSection::default();
    let Some(t) = root.get("limits") else {
        return Ok(l);
    };
    let t = t.table()?;
    t.check_keys(&[
        "max_channels",
        "max_cps",
        "max_guest_invocations",
        "max_recursion_depth",
        "max_transfers",
        "retry_after_s",
    ])?;
    if let Some(f) = t.get("max_channels") {
        l.max_channels = f.int_u32(1, 1_000_000)?;
    }
    if let Some(f) = t.get("max_cps") {
        l.max_cps = f.int_u32(0, 1_000_000)?;
    }
    if let Some(f) = t.get("max_guest_invocations") {
        l.max_guest_invocations = f.int_u32(1, 1_000_000)?;
    }
    if let Some(f) = t.get("max_recursion_depth") {
        l.max_recursion_depth = f.int_u32(1, 32)?;
    }
    if let Some(f) = t.get("max_transfers") {
        l.max_transfers = f.int_u32(0, 1000)?;
    }
    if let Some(f) = t.get("retry_after_s") {
        l.retry_after_s = f.int_u32(0, 86_400)?;
    }
    Ok(l)
}

fn read_dialplan(root: &Table<'_>, base: &Path) -> Result<DialplanSection, ConfigError> {
    let mut d = DialplanSection::default();
    d.helpers = base.join(&d.helpers);
    let Some(t) = root.get("dialplan") else {
        return Ok(d);
    };
    let t = t.table()?;
    t.check_keys(&[
        "workers",
        "queue",
        "epoch_tick_ms",
        "pool_instances",
        "max_memory_mb",
        "helpers",
        "inline",
    ])?;
    if let Some(f) = t.get("workers") {
        d.workers = f.int_u32(0, 1024)? as usize;
    }
    if let Some(f) = t.get("queue") {
        d.queue = f.int_u32(0, 1_000_000)? as usize;
    }
    if let Some(f) = t.get("epoch_tick_ms") {
        d.epoch_tick_ms = f.int(1, 1000)?;
    }
    if let Some(f) = t.get("pool_instances") {
        d.pool_instances = f.int_u32(1, 100_000)?;
    }
    if let Some(f) = t.get("max_memory_mb") {
        // wasm32 linear memory tops out at 4 GiB.
        d.max_memory_mb = f.int_u32(1, 4096)?;
    }
    if let Some(f) = t.get("helpers") {
        d.helpers = resolve(base, f.path()?);
    }
    if let Some(f) = t.get("inline") {
        d.inline = boolean(&f)?;
    }
    Ok(d)
}

const SANDBOX_KEYS: &[&str] = &[
    "deadline_ms",
    "memory_mb",
    "fuel",
    "warm_reuse",
    "on_failure",
    "max_actions",
];

/// Reads a `[sandbox]` table over `base`, field by field.
fn read_sandbox(
    t: &Table<'_>,
    base: SandboxSection,
    dialplan: &DialplanSection,
) -> Result<SandboxSection, ConfigError> {
    let mut s = base;
    t.check_keys(SANDBOX_KEYS)?;
    if let Some(f) = t.get("deadline_ms") {
        s.deadline_ms = f.int(1, 10_000)?;
    }
    if let Some(f) = t.get("memory_mb") {
        let v = f.int(0, u64::MAX)?;
        if v == 0 || v > u64::from(dialplan.max_memory_mb) {
            return Err(f.err(format!(
                "{v} is out of range: must be between 1 and [dialplan] max_memory_mb ({})",
                dialplan.max_memory_mb
            )));
        }
        s.memory_mb = v as u32;
    }
    if let Some(f) = t.get("fuel") {
        s.fuel = f.int(0, i64::MAX as u64)?;
    }
    if let Some(f) = t.get("warm_reuse") {
        s.warm_reuse = f.int(0, MAX_WARM_REUSE)? as u32;
    }
    if let Some(f) = t.get("on_failure") {
        let name = f.str()?;
        s.on_failure = match HangupCause::parse(name) {
            Some(HangupCause::None) | None => {
                return Err(f.err(format!(
                    "`{name}` is not a hangup cause (expected a name such as \
                     DESTINATION_OUT_OF_ORDER or NORMAL_TEMPORARY_FAILURE)"
                )))
            }
            Some(c) => c,
        };
    }
    if let Some(f) = t.get("max_actions") {
        s.max_actions = f.int_u32(1, 65_536)?;
    }
    Ok(s)
}

fn read_events(root: &Table<'_>) -> Result<EventsSection, ConfigError> {
    let mut e = EventsSection::default();
    let Some(t) = root.get("events") else {
        return Ok(e);
    };
    let t = t.table()?;
    t.check_keys(&["subscriber_queue"])?;
    if let Some(f) = t.get("subscriber_queue") {
        e.subscriber_queue = f.int_u32(1, 10_000_000)? as usize;
    }
    Ok(e)
}

fn read_control(root: &Table<'_>) -> Result<ControlSection, ConfigError> {
    let mut c = ControlSection::default();
    let Some(t) = root.get("control") else {
        return Ok(c);
    };
    let t = t.table()?;
    t.check_keys(&[
        "esl_listen",
        "esl_password",
        "http_listen",
        "upload_max_mb",
        "uploads_per_minute",
        "cdr_jsonl",
        "heartbeat_s",
    ])?;
    if let Some(f) = t.get("esl_listen") {
        c.esl_listen = socket_addr(&f)?;
    }
    if let Some(f) = t.get("esl_password") {
        c.esl_password = f.nonempty_str()?.to_string();
    }
    if let Some(f) = t.get("http_listen") {
        c.http_listen = socket_addr(&f)?;
    }
    if let Some(f) = t.get("upload_max_mb") {
        c.upload_max_bytes = (f.int_u32(1, 256)? as usize) << 20;
    }
    if let Some(f) = t.get("uploads_per_minute") {
        c.uploads_per_minute = f.int_u32(1, 10_000)?;
    }
    if let Some(f) = t.get("cdr_jsonl") {
        c.cdr_jsonl = boolean(&f)?;
    }
    if let Some(f) = t.get("heartbeat_s") {
        c.heartbeat_s = f.int_u32(0, 86_400)?;
    }
    Ok(c)
}

/// A `name = "value"` table of variables or params.
fn read_vars(f: &Field<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let t = f.table()?;
    let mut out = Vec::new();
    for item in t.fields() {
        if !valid_var_name(item.key) {
            return Err(item.key_err(format!(
                "`{}` is not a valid name: use letters, digits, `_`, `-` and `.`",
                item.key
            )));
        }
        out.push((item.key.to_string(), item.str()?.to_string()));
    }
    Ok(out)
}

struct LoadedTenant {
    config: TenantConfig,
    directory: TenantDirectory,
    domain_pos: (usize, usize),
}

fn load_tenant(src: &Source, g: &Globals<'_>) -> Result<LoadedTenant, ConfigError> {
    let root_node = src.parse()?;
    let cx = Cx::new(src);
    let root = Table::root(&cx, &root_node);
    root.check_keys(&[
        "domain",
        "dialplan",
        "helpers",
        "default_context",
        "dial_string",
        "api_tokens_sha256",
        "limits",
        "sandbox",
        "variables",
        "users",
        "groups",
    ])?;
    let base = src.file.parent().unwrap_or(Path::new(""));
    let mut api_tokens_sha256 = Vec::new();
    if let Some(f) = root.get("api_tokens_sha256") {
        for (v, item) in f.str_array()? {
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(item.err(
                    "not a SHA-256 digest: 64 hex digits, e.g. `printf %s \"$TOKEN\" | sha256sum`",
                ));
            }
            api_tokens_sha256.push(v.to_ascii_lowercase());
        }
    }

    let domain_field = root.required("domain")?;
    let domain = domain_field.domain()?.to_string();
    let domain_pos = domain_field.position();
    let dialplan = resolve(base, root.required("dialplan")?.path()?);
    let helpers = match root.get("helpers") {
        Some(f) => resolve(base, f.path()?),
        None => g.dialplan.helpers.clone(),
    };
    let default_context = match root.get("default_context") {
        Some(f) => f.token()?.to_string(),
        None => "default".to_string(),
    };
    let dial_string = match root.get("dial_string") {
        Some(f) => f.nonempty_str()?.to_string(),
        None => VANILLA_DIAL_STRING.to_string(),
    };

    let mut limits = TenantLimits::default();
    if let Some(f) = root.get("limits") {
        let t = f.table()?;
        t.check_keys(&["max_channels", "max_cps", "max_guest_invocations"])?;
        if let Some(f) = t.get("max_channels") {
            limits.max_channels = Some(tenant_cap(&f, g.limits.max_channels, false)?);
        }
        if let Some(f) = t.get("max_cps") {
            limits.max_cps = Some(tenant_cap(&f, g.limits.max_cps, true)?);
        }
        if let Some(f) = t.get("max_guest_invocations") {
            limits.max_guest_invocations =
                Some(tenant_cap(&f, g.limits.max_guest_invocations, false)?);
        }
    }

    let sandbox = match root.get("sandbox") {
        Some(f) => read_sandbox(&f.table()?, *g.sandbox, g.dialplan)?,
        None => *g.sandbox,
    };
    let variables = match root.get("variables") {
        Some(f) => read_vars(&f)?,
        None => Vec::new(),
    };

    let mut users = Vec::new();
    if let Some(f) = root.get("users") {
        for uf in f.table()?.fields() {
            users.push(read_user(&uf)?);
        }
    }

    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(f) = root.get("groups") {
        for gf in f.table()?.fields() {
            if !valid_id(gf.key) {
                return Err(gf.key_err(format!(
                    "`{}` is not a valid group name: use letters, digits, `_`, `-`, `.` and `+`",
                    gf.key
                )));
            }
            let gt = gf.table()?;
            gt.check_keys(&["members"])?;
            let mut members = Vec::new();
            if let Some(mf) = gt.get("members") {
                for (member, item) in mf.str_array()? {
                    if !users.iter().any(|u: &User| u.id == member) {
                        return Err(item.err(format!(
                            "`{member}` is not a user of `{domain}` (define it under [users.{}])",
                            quote_key(member)
                        )));
                    }
                    members.push(member.to_string());
                }
            }
            groups.insert(gf.key.to_string(), members);
        }
    }

    let directory = TenantDirectory::new(
        domain.clone(),
        variables.clone(),
        users,
        groups,
        dial_string,
    )
    .map_err(|e| ConfigError {
        file: src.file.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message: e.to_string(),
    })?;

    Ok(LoadedTenant {
        config: TenantConfig {
            domain,
            file: src.file.clone(),
            dialplan,
            helpers,
            default_context,
            limits,
            sandbox,
            variables,
            api_tokens_sha256,
            locations: cx.into_locations(),
        },
        directory,
        domain_pos,
    })
}

/// A tenant cap, at most the global one. With `zero_unlimited` (max_cps),
/// 0 means unlimited: it only fits under an unlimited global cap, and any
/// finite cap fits under an unlimited one.
fn tenant_cap(f: &Field<'_>, global: u32, zero_unlimited: bool) -> Result<u32, ConfigError> {
    let min = if zero_unlimited { 0 } else { 1 };
    let v = f.int_u32(min, 1_000_000)?;
    let too_high = if zero_unlimited && global == 0 {
        false
    } else if zero_unlimited && v == 0 {
        true
    } else {
        v > global
    };
    if too_high {
        let shown = if v == 0 {
            "0 (unlimited)".to_string()
        } else {
            v.to_string()
        };
        return Err(f.err(format!(
            "{shown} exceeds the global limit ({global}) set in {MAIN_FILE}"
        )));
    }
    Ok(v)
}

fn read_user(f: &Field<'_>) -> Result<User, ConfigError> {
    if !valid_id(f.key) {
        return Err(f.key_err(format!(
            "`{}` is not a valid user id: use letters, digits, `_`, `-`, `.` and `+`",
            f.key
        )));
    }
    let t = f.table()?;
    t.check_keys(&["password", "a1_hash", "params", "variables", "groups"])?;
    let mut user = User::new(f.key);
    if let Some(pf) = t.get("password") {
        user.password = Some(pf.str()?.to_string());
    }
    if let Some(hf) = t.get("a1_hash") {
        let h = hf.str()?;
        if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(hf.err("must be 32 hex digits: md5(\"user:domain:password\")"));
        }
        if user.password.is_some() {
            return Err(hf.err("give `password` or `a1_hash`, not both"));
        }
        user.a1_hash = Some(h.to_ascii_lowercase());
    }
    if let Some(pf) = t.get("params") {
        let params = read_vars(&pf)?;
        let pt = pf.table()?;
        for item in pt.fields() {
            match item.key {
                "password" | "a1-hash" | "a1_hash" => {
                    return Err(item.key_err(format!(
                        "credentials are not params: use `{}` in [users.{}]",
                        if item.key == "password" {
                            "password"
                        } else {
                            "a1_hash"
                        },
                        quote_key(f.key)
                    )))
                }
                "dial-string" if item.str()?.trim().is_empty() => {
                    return Err(item.err("must not be empty"));
                }
                _ => {}
            }
        }
        user.params = params;
    }
    if let Some(vf) = t.get("variables") {
        user.variables = read_vars(&vf)?;
    }
    if let Some(gf) = t.get("groups") {
        for (name, item) in gf.str_array()? {
            if !valid_id(name) {
                return Err(item.err(format!(
                    "`{name}` is not a valid group name: use letters, digits, `_`, `-`, `.` and `+`"
                )));
            }
            user.groups.push(name.to_string());
        }
    }
    Ok(user)
}

// ---------------------------------------------------------------------------
// Syntax checks
// ---------------------------------------------------------------------------

/// User ids and group names: they appear in `user/ID@domain`,
/// `group/NAME@domain` and SIP URIs.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
}

fn valid_var_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A lower-case DNS name (no trailing dot).
fn valid_dns_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    // An all-numeric last label is a malformed IP address, not a name.
    ok && !labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

fn check_domain(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "`{s}` must be lower-case (`{}`)",
            s.to_ascii_lowercase()
        ));
    }
    if valid_dns_name(s) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a domain: expected a DNS name (letters, digits and `-` \
             in dot-separated labels) or an IP address"
        ))
    }
}

/// Quotes a key for a dotted path when it is not a bare TOML key.
pub(crate) fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        quote_key(key)
    } else {
        format!("{prefix}.{}", quote_key(key))
    }
}

// ---------------------------------------------------------------------------
// Source text and positions
// ---------------------------------------------------------------------------

struct Source {
    file: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    fn read(file: &Path) -> Result<Source, ConfigError> {
        let bytes = std::fs::read(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read configuration file: {e}"),
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Source::new(file.to_path_buf(), text)),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
                let src = Source::new(file.to_path_buf(), prefix);
                let (line, column) = src.position(valid);
                Err(ConfigError {
                    file: file.to_path_buf(),
                    line,
                    column,
                    field: String::new(),
                    message: "the file is not valid UTF-8".into(),
                })
            }
        }
    }

    fn new(file: PathBuf, text: String) -> Source {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            file,
            text,
            line_starts,
        }
    }

    /// 1-based (line, column in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let idx = self
            .line_starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.line_starts[idx];
        let column = match self.text.get(start..offset) {
            Some(s) => s.chars().count(),
            None => offset - start,
        };
        (idx + 1, column + 1)
    }

    fn parse(&self) -> Result<Node, ConfigError> {
        toml::from_str::<Node>(&self.text).map_err(|e| {
            let (line, column, field) = match e.span() {
                Some(span) => {
                    let (l, c) = self.position(span.start);
                    (l, c, guess_field(&self.text, span.start))
                }
                None => (0, 0, String::new()),
            };
            ConfigError {
                file: self.file.clone(),
                line,
                column,
                field,
                message: e.message().trim().to_string(),
            }
        })
    }
}

/// The field a syntax error is in, from the text alone (the document did
/// not parse): the key on the error's line under the last `[table]`
/// header before it.
fn guess_field(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut header = String::new();
    for line in text[..line_start].lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            header = header_name(t);
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("");
    let t = line.trim_start();
    if t.starts_with('[') {
        return header_name(t);
    }
    if t.starts_with('#') {
        return header;
    }
    if let Some((key, _)) = t.split_once('=') {
        let key = normalize_dotted(key);
        if !key.is_empty() {
            return if header.is_empty() {
                key
            } else {
                format!("{header}.{key}")
            };
        }
    }
    header
}

fn header_name(t: &str) -> String {
    let t = t.trim_start_matches('[');
    let end = t.find(']').unwrap_or(t.len());
    normalize_dotted(&t[..end])
}

fn normalize_dotted(k: &str) -> String {
    k.split('.')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

// ---------------------------------------------------------------------------
// A generic TOML tree with spans
// ---------------------------------------------------------------------------
//
// toml's `Spanned<T>` fails on implicit tables (the `users` of
// `[users.1000]`), which have no span. These types ask for a span the same
// way (`serde_spanned`'s protocol) but accept a value without one.

type Span = Option<Range<usize>>;

#[derive(Debug)]
struct Key {
    span: Span,
    name: String,
}

#[derive(Debug)]
struct Value {
    span: Span,
    node: Node,
}

#[derive(Debug)]
enum Node {
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Datetime,
    Array(Vec<Value>),
    Table(Vec<(Key, Value)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float => "a float",
            Node::Bool(_) => "a boolean",
            Node::Datetime => "a date-time",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

const SPANNED_FIELDS: &[&str] = &[
    spanned::START_FIELD,
    spanned::END_FIELD,
    spanned::VALUE_FIELD,
];
const DATETIME_FIELD: &str = "$__toml_private_datetime";

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key {
                    span: None,
                    name: v.to_string(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                let (span, name) = read_spanned::<A, String>(&mut map)?;
                Ok(Key {
                    span: Some(span),
                    name,
                })
            }
        }
        d.deserialize_struct(spanned::NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

/// Reads the rest of a `serde_spanned` map: start, end, value.
fn read_spanned<'de, A: MapAccess<'de>, T: de::Deserialize<'de>>(
    map: &mut A,
) -> Result<(Range<usize>, T), A::Error> {
    let mut start = None;
    let mut end = None;
    let mut value = None;
    while let Some(k) = map.next_key::<String>()? {
        match k.as_str() {
            spanned::START_FIELD => start = Some(map.next_value::<usize>()?),
            spanned::END_FIELD => end = Some(map.next_value::<usize>()?),
            spanned::VALUE_FIELD => value = Some(map.next_value::<T>()?),
            other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
        }
    }
    match (start, end, value) {
        (Some(s), Some(e), Some(v)) => Ok((s..e, v)),
        _ => Err(de::Error::custom("incomplete spanned value")),
    }
}

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                NodeVisitor.visit_str(v).map(unspanned)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                NodeVisitor.visit_i64(v).map(unspanned)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                NodeVisitor.visit_u64(v).map(unspanned)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                NodeVisitor.visit_f64(v).map(unspanned)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
                NodeVisitor.visit_bool(v).map(unspanned)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
                NodeVisitor.visit_seq(seq).map(unspanned)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let Some(first) = map.next_key::<Key>()? else {
                    return Ok(unspanned(Node::Table(Vec::new())));
                };
                if first.span.is_none() && first.name == spanned::START_FIELD {
                    let start = map.next_value::<usize>()?;
                    let (end, node) = read_end_value(&mut map)?;
                    return Ok(Value {
                        span: Some(start..end),
                        node,
                    });
                }
                table_rest(first, map).map(unspanned)
            }
        }
        d.deserialize_struct(spanned::NAME, SPANNED_FIELDS, ValueVisitor)
    }
}

fn unspanned(node: Node) -> Value {
    Value { span: None, node }
}

/// After the start of a spanned value: its end and the value itself.
fn read_end_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(usize, Node), A::Error> {
    let mut end = None;
    let mut node = None;
    while let Some(k) = map.next_key::<String>()? {
        match k.as_str() {
            spanned::END_FIELD => end = Some(map.next_value::<usize>()?),
            spanned::VALUE_FIELD => node = Some(map.next_value::<Node>()?),
            other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
        }
    }
    match (end, node) {
        (Some(e), Some(n)) => Ok((e, n)),
        _ => Err(de::Error::custom("incomplete spanned value")),
    }
}

/// A map that is a table (or a date-time), given its first key.
fn table_rest<'de, A: MapAccess<'de>>(first: Key, mut map: A) -> Result<Node, A::Error> {
    if first.span.is_none() && first.name == DATETIME_FIELD {
        let _: de::IgnoredAny = map.next_value()?;
        return Ok(Node::Datetime);
    }
    let mut entries = vec![(first, map.next_value::<Value>()?)];
    while let Some(k) = map.next_key::<Key>()? {
        let v = map.next_value::<Value>()?;
        entries.push((k, v));
    }
    Ok(Node::Table(entries))
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Float)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        match map.next_key::<Key>()? {
            None => Ok(Node::Table(Vec::new())),
            Some(first) => table_rest(first, map),
        }
    }
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

// ---------------------------------------------------------------------------
// Schema reading over the tree
// ---------------------------------------------------------------------------

/// One file being read: its text (for positions) and the locations of the
/// fields read so far.
struct Cx<'s> {
    src: &'s Source,
    locations: RefCell<Locations>,
}

impl<'s> Cx<'s> {
    fn new(src: &'s Source) -> Cx<'s> {
        Cx {
            src,
            locations: RefCell::new(Locations::default()),
        }
    }

    fn error(&self, span: &Span, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = match span {
            Some(s) => self.src.position(s.start),
            None => (0, 0),
        };
        ConfigError {
            file: self.src.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn error_at_field(&self, field: &str, message: impl Into<String>) -> ConfigError {
        self.locations
            .borrow()
            .error(&self.src.file, field, message.into())
    }

    fn into_locations(self) -> Locations {
        self.locations.into_inner()
    }
}

/// A table being read, with its dotted path.
struct Table<'a> {
    cx: &'a Cx<'a>,
    path: String,
    span: Span,
    entries: &'a [(Key, Value)],
}

impl<'a> Table<'a> {
    fn root(cx: &'a Cx<'a>, node: &'a Node) -> Table<'a> {
        let entries = match node {
            Node::Table(e) => e.as_slice(),
            _ => &[],
        };
        Table {
            cx,
            path: String::new(),
            span: Some(0..0),
            entries,
        }
    }

    /// Fails on the first key not in `allowed`.
    fn check_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        for (k, _) in self.entries {
            if !allowed.contains(&k.name.as_str()) {
                let span = k.span.clone().or_else(|| self.span.clone());
                return Err(self.cx.error(
                    &span,
                    &join_path(&self.path, &k.name),
                    format!(
                        "unknown key `{}`; expected one of: {}",
                        k.name,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn field(&self, key: &'a Key, value: &'a Value) -> Field<'a> {
        let path = join_path(&self.path, &key.name);
        let field = Field {
            cx: self.cx,
            key: &key.name,
            path,
            key_span: key.span.clone().or_else(|| self.span.clone()),
            value,
        };
        let pos = field.position();
        if pos.0 > 0 {
            self.cx
                .locations
                .borrow_mut()
                .fields
                .insert(field.path.clone(), pos);
        }
        field
    }

    fn get(&self, key: &str) -> Option<Field<'a>> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, v)| self.field(k, v))
    }

    fn required(&self, key: &str) -> Result<Field<'a>, ConfigError> {
        self.get(key).ok_or_else(|| {
            self.cx.error(
                &self.span,
                &join_path(&self.path, key),
                format!("missing required key `{key}`"),
            )
        })
    }

    fn fields(&self) -> impl Iterator<Item = Field<'a>> + '_ {
        self.entries.iter().map(|(k, v)| self.field(k, v))
    }
}

/// One `key = value` being read.
struct Field<'a> {
    cx: &'a Cx<'a>,
    key: &'a str,
    path: String,
    key_span: Span,
    value: &'a Value,
}

impl<'a> Field<'a> {
    fn span(&self) -> Span {
        self.value.span.clone().or_else(|| self.key_span.clone())
    }

    fn position(&self) -> (usize, usize) {
        match self.span() {
            Some(s) => self.cx.src.position(s.start),
            None => (0, 0),
        }
    }

    /// An error at the value.
    fn err(&self, message: impl Into<String>) -> ConfigError {
        self.cx.error(&self.span(), &self.path, message)
    }

    /// An error at the key.
    fn key_err(&self, message: impl Into<String>) -> ConfigError {
        let span = self.key_span.clone().or_else(|| self.span());
        self.cx.error(&span, &self.path, message)
    }

    fn type_err(&self, expected: &str) -> ConfigError {
        let found = self.value.node.kind();
        let hint = match (&self.value.node, expected) {
            (Node::Int(i), "a string") => format!(" (quote it: \"{i}\")"),
            _ => String::new(),
        };
        self.err(format!("expected {expected}, found {found}{hint}"))
    }

    fn str(&self) -> Result<&'a str, ConfigError> {
        match &self.value.node {
            Node::Str(s) => Ok(s),
            _ => Err(self.type_err("a string")),
        }
    }

    fn nonempty_str(&self) -> Result<&'a str, ConfigError> {
        let s = self.str()?;
        if s.trim().is_empty() {
            return Err(self.err("must not be empty"));
        }
        Ok(s)
    }

    /// A non-empty string without whitespace.
    fn token(&self) -> Result<&'a str, ConfigError> {
        let s = self.nonempty_str()?;
        if s.chars().any(char::is_whitespace) {
            return Err(self.err(format!("`{s}` must not contain whitespace")));
        }
        Ok(s)
    }

    fn path(&self) -> Result<&'a str, ConfigError> {
        self.nonempty_str()
    }

    fn domain(&self) -> Result<&'a str, ConfigError> {
        let s = self.str()?;
        check_domain(s).map_err(|m| self.err(m))?;
        Ok(s)
    }

    fn int(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Node::Int(v) = self.value.node else {
            return Err(self.type_err("an integer"));
        };
        match u64::try_from(v) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.err(format!(
                "{v} is out of range: must be between {min} and {max}"
            ))),
        }
    }

    fn int_u32(&self, min: u64, max: u32) -> Result<u32, ConfigError> {
        // `max` fits in u32, so the cast cannot truncate.
        self.int(min, u64::from(max)).map(|v| v as u32)
    }

    fn table(&self) -> Result<Table<'a>, ConfigError> {
        match &self.value.node {
            Node::Table(entries) => Ok(Table {
                cx: self.cx,
                path: self.path.clone(),
                span: self.span(),
                entries,
            }),
            _ => Err(self.type_err("a table")),
        }
    }

    /// An array of strings, each with a handle for errors about it.
    fn str_array(&self) -> Result<Vec<(&'a str, Field<'a>)>, ConfigError> {
        let Node::Array(items) = &self.value.node else {
            return Err(self.type_err("an array of strings"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let f = Field {
                cx: self.cx,
                key: self.key,
                path: self.path.clone(),
                key_span: self.span(),
                value: item,
            };
            match &item.node {
                Node::Str(s) => out.push((s.as_str(), f)),
                _ => return Err(f.type_err("a string")),
            }
        }
        Ok(out)
    }
}
