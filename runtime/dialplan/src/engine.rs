//! The wasmtime engine, its linker, the epoch ticker and component loading.
//!
//! Engine settings (fixed for the life of the process):
//! - pooling allocator with `linear_memory_keep_resident` and
//!   `table_keep_resident` of 1 MiB and `pagemap_scan` where the kernel has
//!   it: without these, a fresh instance per call spends its time in TLB
//!   shootdowns (p99 near a millisecond instead of ~15 µs);
//! - epoch interruption, one tick every `epoch_tick` from a dedicated thread;
//!   a tenant's deadline is a number of ticks;
//! - fuel metering always compiled in, so any tenant can be given a CPU
//!   budget without a second engine (a tenant without one gets `u64::MAX`);
//!   it costs about 4 % of the instructions of a route (callgrind);
//! - `DIALTONE_WASM_PERFMAP=1` in the environment writes `/tmp/perf-PID.map`
//!   so `perf` names guest functions (for profiling; off by default);
//! - wasmtime's default 4 GiB memory reservation, so guest loads and stores
//!   need no bounds checks (a 1 GiB reservation cost 6 % more instructions
//!   per route).
//!
//! Compiled components are cached as `.cwasm` files named by the SHA-256 of
//! the component and a fingerprint of the engine (wasmtime's
//! `precompile_compatibility_hash`: target, compiler flags, tunables such as
//! fuel and epochs, wasm features, and wasmtime's own version), written
//! atomically into a directory only the switch writes
//! (created `0700`; a file that is not ours or is writable by others is
//! ignored and recompiled, since deserializing trusts its input).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::exports::{HelperExports, RouterExports};
use crate::inline::InlineGate;
use crate::sandbox::State;

/// Settings that shape the engine; changing them needs a restart.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Epoch tick period; deadlines are rounded up to whole ticks.
    pub epoch_tick: Duration,
    /// Component instances the pooling allocator can hold at once.
    pub pool_instances: u32,
    /// Ceiling of any tenant's memory limit, in bytes.
    pub max_memory_bytes: usize,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Whether a quick component may run on the caller's thread (see
    /// [`crate::inline`]); false keeps every invocation on the pool.
    pub inline: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            epoch_tick: Duration::from_millis(5),
            pool_instances: 256,
            max_memory_bytes: 256 << 20,
            cache_dir: None,
            inline: true,
        }
    }
}

/// What a component is loaded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A tenant dialplan: must export `router`.
    Dialplan,
    /// Dialstring helpers: must export `helpers`.
    Helpers,
}

/// Why a component was refused. The running version, if any, stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (a core module, garbage).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component imports something the switch does not provide.
    #[error("component imports `{0}`, which Dialtone does not provide (a dialplan may import only dialtone:switch/host and WASI 0.2 cli, io, clocks, random, filesystem and sockets, which grant nothing)")]
    ForbiddenImport(String),
    /// The component lacks the export its role needs.
    #[error("component does not export `{0}`")]
    MissingExport(&'static str),
    /// Compiling or linking failed.
    #[error("component failed to compile or link: {0}")]
    Compile(String),
    /// Reading the file failed.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// A loaded, type-checked component ready for cheap instantiation.
pub struct Loaded {
    /// Short content hash (12 hex digits of SHA-256), the version's name.
    pub hash: String,
    /// Monotonic load sequence number within this process.
    pub sequence: u64,
    /// Where it was loaded from, if a file.
    pub source: Option<PathBuf>,
    /// The role it was checked for.
    pub role: Role,
    /// Whether the compiled artifact came from the cache.
    pub from_cache: bool,
    /// The component's imports by name (`dialtone:switch/host@0.1.0`,
    /// `wasi:cli/environment@0.2.x`, ...). A component built without WASI
    /// has one core instance to set up per call instead of four.
    pub imports: Vec<String>,
    /// [`Loaded::version`], made once for the per-call sandbox state.
    pub(crate) version_name: Arc<str>,
    pub(crate) pre: InstancePre<State>,
    pub(crate) router: Option<RouterExports>,
    pub(crate) helpers: Option<HelperExports>,
    /// Whether its invocations run on the pool or on the caller's thread.
    pub(crate) gate: InlineGate,
}

impl Loaded {
    /// `"<sequence>-<hash>"`, as logs and events name a version.
    pub fn version(&self) -> String {
        self.version_name.to_string()
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("version", &self.version())
            .field("role", &self.role)
            .finish()
    }
}

/// The engine shared by every tenant.
pub struct Engine {
    pub(crate) engine: wasmtime::Engine,
    linker: Linker<State>,
    settings: EngineSettings,
    fingerprint: String,
    sequence: AtomicU64,
    stop_ticker: Arc<AtomicBool>,
}

/// WASI packages a guest toolchain may import; they are linked to a context
/// that grants nothing.
const ALLOWED_WASI: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

impl Engine {
    /// Builds the engine and starts its epoch ticker thread.
    pub fn new(settings: EngineSettings) -> anyhow::Result<Arc<Engine>> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = settings.pool_instances.max(4);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(16))
            .max_core_instances_per_component(64)
            .total_memories(instances.saturating_mul(2))
            .max_memories_per_component(8)
            .total_tables(instances.saturating_mul(4))
            .max_tables_per_component(16)
            .table_elements(200_000)
            .max_component_instance_size(8 << 20)
            .max_core_instance_size(8 << 20)
            .max_memory_size(settings.max_memory_bytes)
            .total_stacks(0)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(1 << 20)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .consume_fuel(true)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(512 << 10)
            .parallel_compilation(true);
        if std::env::var_os("DIALTONE_WASM_PERFMAP").is_some_and(|v| v == "1") {
            // Guest functions by name in `perf report` (/tmp/perf-PID.map).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }

        let engine = wasmtime::Engine::new(&config)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        crate::bindings::FullDialplan::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;

        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let fingerprint = format!("{:016x}", h.finish());

        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let tick = settings.epoch_tick.max(Duration::from_millis(1));
            std::thread::Builder::new()
                .name("dialplan-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?;
        }
        if let Some(dir) = &settings.cache_dir {
            prepare_cache_dir(dir)?;
        }
        Ok(Arc::new(Engine {
            engine,
            linker,
            settings,
            fingerprint,
            sequence: AtomicU64::new(0),
            stop_ticker,
        }))
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Epoch ticks for a wall-clock deadline (at least one).
    pub fn ticks_for(&self, deadline: Duration) -> u64 {
        let tick = self.settings.epoch_tick.as_micros().max(1);
        (deadline.as_micros().div_ceil(tick) as u64).max(1)
    }

    /// Reads and loads a component file.
    pub fn load_file(&self, path: &Path, role: Role) -> Result<Loaded, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let mut loaded = self.load(&bytes, role)?;
        loaded.source = Some(path.to_path_buf());
        Ok(loaded)
    }

    /// Validates, compiles (or takes from the cache) and type-checks a
    /// component for `role`.
    pub fn load(&self, bytes: &[u8], role: Role) -> Result<Loaded, LoadError> {
        if !wasmparser_is_component(bytes) {
            return Err(LoadError::NotAComponent(
                "missing the component-model header (a core module or another file)".into(),
            ));
        }
        let digest = Sha256::digest(bytes);
        let hex_digest = hex::encode(digest);
        let (component, from_cache) = self.compile_cached(bytes, &hex_digest)?;
        self.check_imports(&component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let router = RouterExports::new(&pre);
        let helpers = HelperExports::new(&pre);
        match role {
            Role::Dialplan if router.is_none() => {
                return Err(LoadError::MissingExport("dialtone:switch/router@0.1.0"))
            }
            Role::Helpers if helpers.is_none() => {
                return Err(LoadError::MissingExport("dialtone:switch/helpers@0.1.0"))
            }
            _ => {}
        }
        self.check_export_types(&pre, router.as_ref(), helpers.as_ref())?;
        let hash = hex_digest[..12].to_string();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let imports: Vec<String> = pre
            .component()
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        // Only a component without WASI may run inline (see `inline`).
        let gate = InlineGate::new(
            self.settings.inline && !imports.iter().any(|i| i.starts_with("wasi:")),
        );
        Ok(Loaded {
            version_name: Arc::from(format!("{sequence}-{hash}")),
            hash,
            sequence,
            source: None,
            role,
            from_cache,
            imports,
            pre,
            router,
            helpers,
            gate,
        })
    }

    /// Instantiates the component once, in a sandbox with the default
    /// limits, and binds its exports with their expected types: a component
    /// built against another version of the WIT is refused here instead of
    /// failing every call.
    fn check_export_types(
        &self,
        pre: &InstancePre<State>,
        router: Option<&RouterExports>,
        helpers: Option<&HelperExports>,
    ) -> Result<(), LoadError> {
        let settings = crate::sandbox::SandboxSettings {
            deadline: Duration::from_secs(5),
            memory_bytes: self.settings.max_memory_bytes,
            ..Default::default()
        };
        let tenant: Arc<str> = Arc::from("");
        let services: Arc<dyn crate::services::TenantServices> =
            Arc::new(crate::services::NoServices);
        let ctx = crate::sandbox::InvokeCtx {
            tenant: &tenant,
            channel: "",
            services: &services,
            settings: &settings,
        };
        let mut live = crate::sandbox::instantiate_pre(self, pre, 0, Arc::from("probe"), &ctx)
            .map_err(|e| LoadError::Compile(format!("instantiation failed: {e}")))?;
        if let Some(r) = router {
            r.check(&mut live.store, &live.instance).map_err(|e| {
                LoadError::Compile(format!(
                    "router exports do not match dialtone:switch@0.1.0: {e:#}"
                ))
            })?;
        }
        if let Some(h) = helpers {
            h.check(&mut live.store, &live.instance).map_err(|e| {
                LoadError::Compile(format!(
                    "helper exports do not match dialtone:switch@0.1.0: {e:#}"
                ))
            })?;
        }
        Ok(())
    }

    fn check_imports(&self, component: &Component) -> Result<(), LoadError> {
        let ty = component.component_type();
        for (name, item) in ty.imports(&self.engine) {
            let ok = if name.starts_with("dialtone:switch/") {
                name.starts_with("dialtone:switch/host@0.1.")
                    || name.starts_with("dialtone:switch/types@0.1.")
            } else {
                ALLOWED_WASI.iter().any(|p| name.starts_with(p))
                    && matches!(item.ty, ComponentItem::ComponentInstance(_))
            };
            if !ok {
                return Err(LoadError::ForbiddenImport(name.to_string()));
            }
        }
        Ok(())
    }

    fn compile_cached(&self, bytes: &[u8], digest: &str) -> Result<(Component, bool), LoadError> {
        let cache_path = self.settings.cache_dir.as_ref().map(|dir| {
            dir.join(format!(
                "{digest}-{}-{}.cwasm",
                self.fingerprint,
                env!("CARGO_PKG_VERSION")
            ))
        });
        if let Some(path) = &cache_path {
            if cache_file_trusted(path) {
                // SAFETY: the file is in a directory only this switch writes
                // (0700, ours), is ours and not writable by others, and is
                // named by the SHA-256 of the component it was compiled from
                // and by this engine's compatibility fingerprint.
                match unsafe { Component::deserialize_file(&self.engine, path) } {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled component in cache");
                    }
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(path) = &cache_path {
            match component.serialize() {
                Ok(data) => {
                    if let Err(e) = write_atomically(path, &data) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write compiled component to cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize compiled component"),
            }
        }
        Ok((component, false))
    }

    /// Whether fuel metering is compiled in.
    pub fn fuel_enabled(&self) -> bool {
        self.engine.get_consume_fuel()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A component starts with `\0asm` and a layer field of 1 (a core module has
/// layer 0).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[6] == 1 && bytes[7] == 0
}

fn prepare_cache_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn cache_file_trusted(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc_geteuid() };
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            return false;
        }
        if let Some(parent) = path.parent() {
            match std::fs::metadata(parent) {
                Ok(p) if p.uid() == me && p.mode() & 0o022 == 0 => {}
                _ => return false,
            }
        }
    }
    true
}

#[cfg(unix)]
extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
