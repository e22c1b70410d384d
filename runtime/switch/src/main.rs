//! `dialtone`: the switch and its command line.
//!
//! - `dialtone [run] [--conf DIR]` runs the switch (default `conf/`).
//! - `dialtone dialplan test --tenant T --from N --to N [--context C]
//!   [--var k=v]...` prints a routing decision as JSON without placing a call.
//! - `dialtone dialstring explain 'DS'` prints the parsed dialstring as JSON,
//!   or the parse error with its position.
//! - `dialtone config check` validates the configuration.
//! - `dialtone ctl [-x CMD]...` is an fs_cli-like client of the event socket.

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the per-call paths (SIP parsing, snapshots, wasmtime stores)
/// allocate many small objects, where it beats the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v2's `mi_option_purge_delay` (its place in v2's `mi_option_e`;
/// the Rust bindings name only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc returns it to the
/// kernel: 1 s instead of its 10 ms. The signalling path frees and
/// reallocates the same few hundred megabytes all the time (transactions
/// linger 32 s); with 10 ms, every purged range was faulted in and zeroed
/// again moments later (28,000 page faults in 8 s at 3000 calls/s, a
/// twentieth of the workers' time clearing pages; about 600 with 1 s).
/// `MIMALLOC_PURGE_DELAY` in the environment still overrides it.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

fn tune_allocator() {
    // mimalloc reads its environment when the process loads, before main.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: reads and stores plain integers in mimalloc's option table,
    // which it reads each time it schedules a purge; valid at any time.
    unsafe {
        // v2's default purge delay is 10 ms: any other value here means
        // the index names another option in this mimalloc, so leave it.
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 10 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use dialtone::app::{self, App};
use dialtone::config;
use dialtone_control::esl::logs::LogHub;
use dialtone_core::dialstring;
use dialtone_core::routing::{Action, ChannelSnapshot, Direction};

#[derive(Parser)]
#[command(
    name = "dialtone",
    version,
    about = "A soft switch whose dialplans are WebAssembly components"
)]
struct Cli {
    /// The configuration directory.
    #[arg(long, global = true, default_value = "conf")]
    conf: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the switch (the default).
    Run,
    /// Dialplan tools.
    Dialplan {
        #[command(subcommand)]
        command: DialplanCommand,
    },
    /// Dialstring tools.
    Dialstring {
        #[command(subcommand)]
        command: DialstringCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// An fs_cli-like client of the event socket: `-x CMD` runs commands,
    /// without it an interactive prompt shows events.
    Ctl(dialtone_ctl::CtlArgs),
}

#[derive(Subcommand)]
enum DialplanCommand {
    /// Ask a tenant's dialplan how it would route a call, without placing it.
    Test {
        /// The tenant (domain).
        #[arg(long)]
        tenant: String,
        /// Caller ID number.
        #[arg(long)]
        from: String,
        /// Destination number.
        #[arg(long)]
        to: String,
        /// Context (default: the tenant's default context).
        #[arg(long)]
        context: Option<String>,
        /// Channel variables, `name=value`.
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
}

#[derive(Subcommand)]
enum DialstringCommand {
    /// Parse a dialstring and print its structure.
    Explain {
        /// The dialstring.
        dialstring: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print a summary.
    Check,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected name=value, got `{s}`")),
    }
}

fn init_logs() -> LogHub {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let hub = LogHub::new();
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(dialtone::control::EslLogLayer(hub.clone()))
        .init();
    hub
}

fn load_config(dir: &std::path::Path) -> Result<config::Config, String> {
    let c = config::load(dir).map_err(|e| e.to_string())?;
    config::validate_safe_defaults(&c).map_err(|e| e.to_string())?;
    dialtone::tls::check(&c).map_err(|e| e.to_string())?;
    Ok(c)
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Ctl(args) => ExitCode::from(dialtone_ctl::run(args).clamp(0, 255) as u8),
        Command::Dialstring {
            command: DialstringCommand::Explain { dialstring: ds },
        } => match dialstring::parse(&ds) {
            Ok(parsed) => {
                println!("{}", pretty(&parsed.explain()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{}", pretty(&e.explain(&ds)));
                ExitCode::from(1)
            }
        },
        Command::Config {
            command: ConfigCommand::Check,
        } => match load_config(&cli.conf) {
            Ok(c) => {
                println!(
                    "{}",
                    pretty(&json!({
                        "ok": true,
                        "files": c.files,
                        "tenants": c.tenants.iter().map(|t| json!({
                            "domain": t.domain,
                            "dialplan": t.dialplan,
                            "users": c.directory.tenant(&t.domain).map(|d| d.user_count()).unwrap_or(0),
                        })).collect::<Vec<_>>(),
                    }))
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Dialplan {
            command:
                DialplanCommand::Test {
                    tenant,
                    from,
                    to,
                    context,
                    vars,
                },
        } => {
            init_logs();
            dialplan_test(&cli.conf, tenant, from, to, context, vars)
        }
        Command::Run => {
            let logs = init_logs();
            let mut config = match load_config(&cli.conf) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("dialtone: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = dialtone::tls::prepare(&mut config) {
                eprintln!("dialtone: {e}");
                return ExitCode::from(2);
            }
            // A quick dialplan runs on these threads (see
            // `dialtone_dialplan::inline`): room for its 512 KiB wasm stack
            // above the deepest task.
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(4 << 20)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("dialtone: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let result = rt.block_on(async {
                let conf = cli.conf.clone();
                let app = tokio::task::spawn_blocking(move || App::build(&conf, config)).await??;
                app::run(app, logs).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dialtone: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn dialplan_test(
    conf: &std::path::Path,
    tenant: String,
    from: String,
    to: String,
    context: Option<String>,
    vars: Vec<(String, String)>,
) -> ExitCode {
    let config = match load_config(conf) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dialtone: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(tconf) = config.tenants.iter().find(|t| t.domain == tenant).cloned() else {
        eprintln!("dialtone: no tenant `{tenant}` in {}", conf.display());
        return ExitCode::from(2);
    };
    let app: Arc<App> = match App::build(conf, config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            return ExitCode::from(1);
        }
    };
    let context = context.unwrap_or_else(|| tconf.default_context.clone());
    let snapshot = ChannelSnapshot {
        uuid: uuid::Uuid::new_v4().to_string(),
        direction: Direction::Inbound,
        endpoint: "test".into(),
        profile: String::new(),
        tenant: tenant.clone(),
        context: context.clone(),
        caller_id_name: from.clone(),
        caller_id_number: from.clone(),
        destination: to.clone(),
        network_addr: String::new(),
        variables: vars.into(),
    };
    let version = app
        .tenants
        .info()
        .into_iter()
        .find(|i| i.name == tenant)
        .and_then(|i| i.dialplan)
        .unwrap_or_default();
    match app.tenants.route_blocking(snapshot) {
        Ok(actions) => {
            let bridges: Vec<serde_json::Value> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Bridge { dialstring: ds } => Some(match dialstring::parse(ds) {
                        Ok(p) => json!({"dialstring": ds, "parsed": p.explain()}),
                        Err(e) => json!({"dialstring": ds, "note": "parsed after ${} expansion at call time", "parse": e.explain(ds)}),
                    }),
                    _ => None,
                })
                .collect();
            println!(
                "{}",
                pretty(&json!({
                    "tenant": tenant,
                    "version": version,
                    "context": context,
                    "from": from,
                    "to": to,
                    "actions": actions,
                    "bridges": bridges,
                }))
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            println!(
                "{}",
                pretty(&json!({
                    "tenant": tenant,
                    "version": version,
                    "context": context,
                    "to": to,
                    "error": f.reason,
                    "hangup_cause": f.cause.name(),
                }))
            );
            ExitCode::from(1)
        }
    }
}
