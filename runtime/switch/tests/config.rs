//! Loading and validating the switch configuration: the shipped default,
//! fixtures, and one test per error class with its exact location.

use std::path::{Path, PathBuf};

use dialtone::config::{
    load, validate_safe_defaults, Config, ConfigError, DialplanSection, EventsSection,
    LimitsSection, SandboxSection, MAIN_FILE,
};
use dialtone_core::directory::VANILLA_DIAL_STRING;
use dialtone_core::HangupCause;
use tempfile::TempDir;

fn repo_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap()
}

/// A tenant file that loads on its own.
const MINIMAL_TENANT: &str = "domain = \"dialtone.local\"\ndialplan = \"dp.wasm\"\n";

/// Writes a configuration directory: `dialtone.toml` and tenant files.
fn conf(main: &str, tenants: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(MAIN_FILE), main).unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    for (name, text) in tenants {
        std::fs::write(dir.path().join("tenants").join(name), text).unwrap();
    }
    dir
}

fn load_ok(main: &str, tenants: &[(&str, &str)]) -> (TempDir, Config) {
    let dir = conf(main, tenants);
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, config)
}

fn load_err(main: &str, tenants: &[(&str, &str)]) -> (TempDir, ConfigError) {
    let dir = conf(main, tenants);
    let err = load(dir.path()).expect_err("the configuration should be refused");
    (dir, err)
}

/// Asserts file, line, column and field of an error.
#[track_caller]
fn assert_at(err: &ConfigError, file: &Path, line: usize, column: usize, field: &str) {
    assert_eq!(
        (err.file.as_path(), err.line, err.column, err.field.as_str()),
        (file, line, column, field),
        "{err}"
    );
}

fn main_file(dir: &TempDir) -> PathBuf {
    abs(dir.path()).join(MAIN_FILE)
}

fn tenant_file(dir: &TempDir, name: &str) -> PathBuf {
    abs(dir.path()).join("tenants").join(name)
}

// ---------------------------------------------------------------------------
// The shipped configuration
// ---------------------------------------------------------------------------

#[test]
fn default_conf_loads() {
    let config = load(&repo_conf()).unwrap_or_else(|e| panic!("{e}"));
    let conf = abs(&repo_conf());

    // Every key of dialtone.toml is present with the documented default.
    assert_eq!(config.limits, LimitsSection::default());
    assert_eq!(config.sandbox, SandboxSection::default());
    assert_eq!(config.events, EventsSection::default());
    assert_eq!(
        config.dialplan,
        DialplanSection {
            helpers: conf.join("../build/components/contact_helpers.wasm"),
            ..DialplanSection::default()
        }
    );
    assert_eq!(config.switch.default_domain, "dialtone.local");
    assert_eq!(config.switch.listen, ["127.0.0.1"]);
    assert_eq!(config.switch.tenants_dir, conf.join("tenants"));
    assert_eq!(config.switch.state_dir, conf.join("../var"));
    assert_eq!(
        config.switch.cache_dir,
        conf.join("../var/cache/components")
    );
    for key in [
        "switch.default_domain",
        "switch.tenants_dir",
        "switch.state_dir",
        "switch.cache_dir",
        "switch.listen",
        "limits.max_channels",
        "limits.max_cps",
        "limits.max_guest_invocations",
        "limits.max_recursion_depth",
        "limits.max_transfers",
        "limits.retry_after_s",
        "dialplan.workers",
        "dialplan.queue",
        "dialplan.epoch_tick_ms",
        "dialplan.pool_instances",
        "dialplan.max_memory_mb",
        "dialplan.helpers",
        "dialplan.inline",
        "sandbox.deadline_ms",
        "sandbox.memory_mb",
        "sandbox.fuel",
        "sandbox.warm_reuse",
        "sandbox.on_failure",
        "sandbox.max_actions",
        "events.subscriber_queue",
        "variables",
    ] {
        assert!(
            config.locations.get(key).is_some(),
            "{key} missing from dialtone.toml"
        );
    }

    assert_eq!(config.main_file(), conf.join(MAIN_FILE));
    let tenant_path = conf.join("tenants/dialtone.local.toml");
    assert_eq!(config.files, [conf.join(MAIN_FILE), tenant_path.clone()]);

    assert_eq!(config.tenants.len(), 1);
    let t = config.tenant("dialtone.local").unwrap();
    assert_eq!(t.file, tenant_path);
    assert_eq!(
        t.dialplan,
        conf.join("tenants")
            .join("../../build/components/default_dialplan.wasm")
    );
    assert_eq!(t.helpers, config.dialplan.helpers);
    assert_eq!(t.default_context, "default");
    assert_eq!(t.sandbox, config.sandbox);
    assert_eq!(t.limits.max_channels(&config.limits), 1000);

    let dir = config.directory.tenant("dialtone.local").unwrap();
    assert_eq!(dir.user_count(), 20);
    let all: Vec<String> = (1000..=1019).map(|n| n.to_string()).collect();
    let range = |a: u32, b: u32| (a..=b).map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(dir.group_members("default").unwrap(), all.as_slice());
    assert_eq!(dir.group_members("sales").unwrap(), range(1000, 1004));
    assert_eq!(dir.group_members("support").unwrap(), range(1005, 1009));
    assert_eq!(
        dir.group_names().collect::<Vec<_>>(),
        ["default", "sales", "support"]
    );
    for n in 1000..=1019u32 {
        let id = n.to_string();
        let u = dir.user(&id).unwrap();
        assert_eq!(u.password.as_deref(), Some("1234"));
        assert_eq!(u.variable("user_context"), Some("default"));
        let name = format!("Extension {n}");
        assert_eq!(u.variable("effective_caller_id_name"), Some(name.as_str()));
        assert_eq!(u.variable("effective_caller_id_number"), Some(id.as_str()));
        assert_eq!(dir.dial_string(u), VANILLA_DIAL_STRING);
        assert!(t.locations.get(&format!("users.{id}.password")).is_some());
    }
    assert_eq!(dir.user_groups("1000").unwrap(), ["default", "sales"]);
    assert_eq!(dir.user_groups("1007").unwrap(), ["default", "support"]);
    assert_eq!(dir.user_groups("1019").unwrap(), ["default"]);

    validate_safe_defaults(&config).unwrap();
}

// ---------------------------------------------------------------------------
// Fixtures: several tenants, overrides, path resolution
// ---------------------------------------------------------------------------

#[test]
fn two_tenant_fixture() {
    let config = load(&fixture("two_tenants")).unwrap_or_else(|e| panic!("{e}"));
    let base = abs(&fixture("two_tenants"));
    let tenants = base.join("tenants");

    // Sorted by file name; README.md and hidden files are not tenants.
    assert_eq!(
        config.files,
        [
            base.join(MAIN_FILE),
            tenants.join("10-alpha.toml"),
            tenants.join("20-beta.toml")
        ]
    );
    let domains: Vec<&str> = config.tenants.iter().map(|t| t.domain.as_str()).collect();
    assert_eq!(domains, ["alpha.example", "192.0.2.10"]);
    assert_eq!(config.variables, [("global_one".into(), "1".into())]);
    assert_eq!(
        config.sandbox.on_failure,
        HangupCause::NormalTemporaryFailure
    );

    let alpha = config.tenant("alpha.example").unwrap();
    assert_eq!(alpha.dialplan, tenants.join("components/alpha.wasm"));
    assert_eq!(alpha.helpers, tenants.join("components/alpha_helpers.wasm"));
    assert_eq!(alpha.default_context, "alpha");
    assert_eq!(alpha.variables, [("tenant_var".into(), "alpha".into())]);
    assert_eq!(alpha.limits.max_channels, Some(50));
    assert_eq!(alpha.limits.max_cps, Some(10));
    assert_eq!(alpha.limits.max_guest_invocations, None);
    assert_eq!(alpha.limits.max_guest_invocations(&config.limits), 1024);

    let beta = config.tenant("192.0.2.10").unwrap();
    assert_eq!(beta.dialplan, PathBuf::from("/srv/beta.wasm"));
    assert_eq!(beta.helpers, PathBuf::from("/opt/dialtone/helpers.wasm"));
    assert_eq!(beta.default_context, "default");
    assert_eq!(beta.limits.max_channels(&config.limits), 500);

    let d = config.directory.tenant("alpha.example").unwrap();
    assert_eq!(d.default_dial_string(), "sofia/internal/${dialed_user}");
    let u100 = d.user("100").unwrap();
    assert_eq!(d.dial_string(u100), "loopback/100/alpha");
    assert_eq!(u100.variable("user_context"), Some("alpha-internal"));
    assert_eq!(u100.a1_hash, None);
    let u101 = d.user("101").unwrap();
    assert_eq!(u101.password, None);
    assert_eq!(
        u101.a1_hash.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        d.dial_string(d.user("102").unwrap()),
        d.default_dial_string()
    );
    // Listed members first, then users that joined by their own list.
    assert_eq!(d.group_members("ops").unwrap(), ["102", "101", "100"]);
    assert_eq!(d.group_members("sales").unwrap(), ["101"]);
    assert_eq!(d.group_members("empty").unwrap(), [] as [String; 0]);
    assert_eq!(d.user_groups("101").unwrap(), ["ops", "sales"]);

    // Dotted keys at the top level (implicit tables) work.
    let b = config.directory.tenant("192.0.2.10").unwrap();
    assert_eq!(
        b.user("200").unwrap().password.as_deref(),
        Some("another strong one")
    );
    assert_eq!(b.default_dial_string(), VANILLA_DIAL_STRING);

    // Loopback in every spelling.
    validate_safe_defaults(&config).unwrap();
}

#[test]
fn tenant_sandbox_overrides_merge_field_by_field() {
    let config = load(&fixture("two_tenants")).unwrap();
    let global = SandboxSection {
        deadline_ms: 80,
        memory_mb: 32,
        fuel: 1_000_000,
        warm_reuse: 0,
        on_failure: HangupCause::NormalTemporaryFailure,
        max_actions: 256,
    };
    assert_eq!(config.sandbox, global);
    assert_eq!(
        config.tenant("alpha.example").unwrap().sandbox,
        SandboxSection {
            memory_mb: 64,
            warm_reuse: 100,
            ..global
        }
    );
    assert_eq!(config.tenant("192.0.2.10").unwrap().sandbox, global);
}

#[test]
fn empty_main_file_takes_every_default() {
    let (dir, config) = load_ok("", &[("t.toml", MINIMAL_TENANT)]);
    let base = abs(dir.path());
    assert_eq!(config.limits, LimitsSection::default());
    assert_eq!(config.sandbox, SandboxSection::default());
    assert_eq!(config.switch.state_dir, base.join("../var"));
    assert_eq!(
        config.dialplan.helpers,
        base.join("../build/components/contact_helpers.wasm")
    );
    assert_eq!(config.tenants[0].dialplan, base.join("tenants/dp.wasm"));
    assert!(config.variables.is_empty());
    assert!(config.locations.get("limits.max_channels").is_none());
}

// ---------------------------------------------------------------------------
// Error classes, each with its exact location
// ---------------------------------------------------------------------------

#[test]
fn missing_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path()).unwrap_err();
    assert_at(&err, &main_file(&dir), 0, 0, "");
    assert!(err.message.contains("cannot read"), "{err}");
    assert!(err
        .to_string()
        .starts_with(&format!("{}:0:0: cannot read", main_file(&dir).display())));
}

#[test]
fn syntax_error_in_tenant_file() {
    let tenant =
        "domain = \"dialtone.local\"\ndialplan = \"dp.wasm\"\n\n[users.1000]\npassword = \"12\n";
    let (dir, err) = load_err("", &[("t.toml", tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        5,
        15,
        "users.1000.password",
    );
    assert!(err.message.contains("string"), "{err}");
}

#[test]
fn syntax_error_in_header() {
    let (dir, err) = load_err("[limits]\nmax_cps = 1\n[sandbox\n", &[]);
    assert_at(&err, &main_file(&dir), 3, 9, "sandbox");
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let (dir, err) = load_err("[limits]\nmax_cps = 1\nmax_cps = 2\n", &[]);
    assert_at(&err, &main_file(&dir), 3, 1, "limits.max_cps");
    assert!(err.message.contains("duplicate key"), "{err}");
}

#[test]
fn unknown_key() {
    let (dir, err) = load_err("[sandbox]\ndeadline_ms = 20\nmemroy_mb = 32\n", &[]);
    assert_at(&err, &main_file(&dir), 3, 1, "sandbox.memroy_mb");
    assert!(err.message.contains("unknown key `memroy_mb`"), "{err}");
    assert!(err.message.contains("memory_mb"), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:1: sandbox.memroy_mb: {}",
            main_file(&dir).display(),
            err.message
        )
    );
}

#[test]
fn unknown_section_and_unknown_user_key() {
    let (dir, err) = load_err("[sipp]\nx = 1\n", &[]);
    assert_at(&err, &main_file(&dir), 1, 2, "sipp");

    let tenant = format!("{MINIMAL_TENANT}[users.1000]\npasswd = \"x\"\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        1,
        "users.1000.passwd",
    );
}

#[test]
fn tenant_limits_accept_only_tenant_keys() {
    let tenant = format!("{MINIMAL_TENANT}[limits]\nmax_transfers = 3\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        1,
        "limits.max_transfers",
    );
}

#[test]
fn wrong_type() {
    let (dir, err) = load_err(
        "[limits]\nmax_channels = \"lots\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(&err, &main_file(&dir), 2, 16, "limits.max_channels");
    assert_eq!(err.message, "expected an integer, found a string");

    let tenant = format!(
        "{MINIMAL_TENANT}[users.1000]\nvariables = {{ effective_caller_id_number = 1000 }}\n"
    );
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        44,
        "users.1000.variables.effective_caller_id_number",
    );
    assert!(err.message.contains("quote it"), "{err}");

    let (dir, err) = load_err("[switch]\nlisten = \"127.0.0.1\"\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 10, "switch.listen");

    let (dir, err) = load_err("sandbox = 3\n", &[]);
    assert_at(&err, &main_file(&dir), 1, 11, "sandbox");

    let (dir, err) = load_err("[variables]\nwhen = 1979-05-27\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 8, "variables.when");
    assert_eq!(err.message, "expected a string, found a date-time");
}

#[test]
fn dialplan_inline_is_a_boolean_and_on_by_default() {
    let (_dir, config) = load_ok("", &[("t.toml", MINIMAL_TENANT)]);
    assert!(config.dialplan.inline);
    let (_dir, config) = load_ok(
        "[dialplan]\ninline = false\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert!(!config.dialplan.inline);
    let (dir, err) = load_err(
        "[dialplan]\ninline = \"yes\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(&err, &main_file(&dir), 2, 10, "dialplan.inline");
}

#[test]
fn out_of_range_integers() {
    let (dir, err) = load_err("[sandbox]\ndeadline_ms = 0\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 15, "sandbox.deadline_ms");
    assert!(err.message.contains("between 1 and 10000"), "{err}");

    let (dir, err) = load_err("[sandbox]\ndeadline_ms = 10001\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 15, "sandbox.deadline_ms");

    let (dir, err) = load_err("[limits]\nmax_recursion_depth = 33\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 23, "limits.max_recursion_depth");

    let (dir, err) = load_err("[limits]\nmax_cps = -1\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 11, "limits.max_cps");

    let tenant = format!("{MINIMAL_TENANT}[sandbox]\nwarm_reuse = 100001\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        14,
        "sandbox.warm_reuse",
    );
    assert!(err.message.contains("between 0 and 100000"), "{err}");
}

#[test]
fn bad_cause_name() {
    let (dir, err) = load_err(
        "[sandbox]\non_failure = \"NOT_A_CAUSE\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(&err, &main_file(&dir), 2, 14, "sandbox.on_failure");
    assert!(
        err.message.contains("`NOT_A_CAUSE` is not a hangup cause"),
        "{err}"
    );

    let tenant = format!("{MINIMAL_TENANT}\n[sandbox]\non_failure = \"NONE\"\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        5,
        14,
        "sandbox.on_failure",
    );

    // Names parse as switch_channel_str2cause does: any case, `-`, numbers.
    let (_dir, config) = load_ok(
        "[sandbox]\non_failure = \"user-busy\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_eq!(config.sandbox.on_failure, HangupCause::UserBusy);
    let (_dir, config) = load_ok(
        "[sandbox]\non_failure = \"41\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_eq!(
        config.sandbox.on_failure,
        HangupCause::NormalTemporaryFailure
    );
}

#[test]
fn memory_above_max() {
    let (dir, err) = load_err(
        "[dialplan]\nmax_memory_mb = 64\n\n[sandbox]\nmemory_mb = 128\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(&err, &main_file(&dir), 5, 13, "sandbox.memory_mb");
    assert!(err.message.contains("max_memory_mb (64)"), "{err}");

    let (dir, err) = load_err("[sandbox]\nmemory_mb = 0\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 13, "sandbox.memory_mb");

    // A tenant override is checked against the same ceiling.
    let tenant = format!("{MINIMAL_TENANT}[sandbox]\ndeadline_ms = 20\nmemory_mb = 512\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        5,
        13,
        "sandbox.memory_mb",
    );
    assert!(err.message.contains("max_memory_mb (256)"), "{err}");

    // Lowering the ceiling below the default memory_mb is caught too.
    let (dir, err) = load_err("[dialplan]\nmax_memory_mb = 8\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 17, "dialplan.max_memory_mb");
    let (dir, err) = load_err("[dialplan]\nmax_memory_mb = 8\n[sandbox]\nfuel = 1\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 17, "dialplan.max_memory_mb");
}

#[test]
fn duplicate_domain_in_two_files() {
    let second =
        "# the same tenant again\ndomain = \"dialtone.local\"\ndialplan = \"other.wasm\"\n";
    let (dir, err) = load_err("", &[("a.toml", MINIMAL_TENANT), ("b.toml", second)]);
    assert_at(&err, &tenant_file(&dir, "b.toml"), 2, 10, "domain");
    assert!(
        err.message.contains(&format!(
            "already defined at {}:1:10",
            tenant_file(&dir, "a.toml").display()
        )),
        "{err}"
    );
}

#[test]
fn bad_domain_syntax() {
    for (domain, column) in [
        ("Dialtone.Local", 10),
        ("dialtone..local", 10),
        ("-bad.example", 10),
        ("bad_name.example", 10),
        ("1.2.3", 10),
        ("", 10),
    ] {
        let tenant = format!("domain = \"{domain}\"\ndialplan = \"dp.wasm\"\n");
        let (dir, err) = load_err("", &[("t.toml", &tenant)]);
        assert_at(&err, &tenant_file(&dir, "t.toml"), 1, column, "domain");
    }
    let (_d, err) = load_err("", &[("t.toml", "domain = \"Dialtone.Local\"\n")]);
    assert!(err.message.contains("lower-case"), "{err}");

    let (dir, err) = load_err("[switch]\ndefault_domain = \"no spaces.example\"\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 18, "switch.default_domain");

    // IPv4 and IPv6 literals are domains too.
    let (_d, config) = load_ok(
        "[switch]\ndefault_domain = \"2001:db8::1\"\n",
        &[(
            "t.toml",
            "domain = \"2001:db8::1\"\ndialplan = \"x.wasm\"\n",
        )],
    );
    assert!(config.directory.tenant("2001:db8::1").is_some());
}

#[test]
fn missing_required_key() {
    let (dir, err) = load_err("", &[("t.toml", "domain = \"dialtone.local\"\n")]);
    assert_at(&err, &tenant_file(&dir, "t.toml"), 1, 1, "dialplan");
    assert!(
        err.message.contains("missing required key `dialplan`"),
        "{err}"
    );
}

#[test]
fn default_domain_must_be_a_tenant() {
    let (dir, err) = load_err(
        "[switch]\ndefault_domain = \"other.example\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(&err, &main_file(&dir), 2, 18, "switch.default_domain");
    assert!(err.message.contains("dialtone.local"), "{err}");

    // Left to its default, the error still names the field.
    let (dir, err) = load_err("", &[]);
    assert_at(&err, &main_file(&dir), 0, 0, "switch.default_domain");
}

#[test]
fn missing_tenants_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(MAIN_FILE),
        "[switch]\ntenants_dir = \"nowhere\"\n",
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert_at(&err, &main_file(&dir), 2, 15, "switch.tenants_dir");
}

#[test]
fn unknown_group_member() {
    let tenant = format!(
        "{MINIMAL_TENANT}[users.1000]\npassword = \"s3cret-enough\"\n\n[groups.sales]\nmembers = [\"1000\", \"1099\"]\n"
    );
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        7,
        20,
        "groups.sales.members",
    );
    assert!(err.message.contains("`1099` is not a user"), "{err}");
}

#[test]
fn tenant_limit_above_global() {
    let tenant = format!("{MINIMAL_TENANT}[limits]\nmax_channels = 200\n");
    let (dir, err) = load_err("[limits]\nmax_channels = 100\n", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        16,
        "limits.max_channels",
    );
    assert!(err.message.contains("global limit (100)"), "{err}");

    // An unlimited tenant rate under a finite global one is above it too.
    let tenant = format!("{MINIMAL_TENANT}[limits]\nmax_cps = 0\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(&err, &tenant_file(&dir, "t.toml"), 4, 11, "limits.max_cps");

    // Any finite rate fits under an unlimited global one.
    let tenant = format!("{MINIMAL_TENANT}[limits]\nmax_cps = 5000\n");
    let (_d, config) = load_ok("[limits]\nmax_cps = 0\n", &[("t.toml", &tenant)]);
    assert_eq!(config.tenants[0].limits.max_cps(&config.limits), 5000);
}

#[test]
fn credentials_and_names() {
    let tenant = format!("{MINIMAL_TENANT}[users.1000]\nparams = {{ password = \"x\" }}\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        12,
        "users.1000.params.password",
    );

    let tenant = format!("{MINIMAL_TENANT}[users.1000]\na1_hash = \"xyz\"\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        11,
        "users.1000.a1_hash",
    );

    let tenant = format!("{MINIMAL_TENANT}[users.\"10 00\"]\npassword = \"x\"\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(&err, &tenant_file(&dir, "t.toml"), 3, 8, "users.\"10 00\"");

    let tenant = format!("{MINIMAL_TENANT}[users.1000]\ngroups = [\"ok\", \"not ok\"]\n");
    let (dir, err) = load_err("", &[("t.toml", &tenant)]);
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        4,
        17,
        "users.1000.groups",
    );
}

#[test]
fn not_utf8() {
    let dir = conf("", &[]);
    std::fs::write(
        dir.path().join("tenants/t.toml"),
        b"domain = \"dialtone.local\"\n# caf\xe9\n",
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert_at(&err, &tenant_file(&dir, "t.toml"), 2, 6, "");
}

#[test]
fn errors_locate_fields_after_loading() {
    let config = load(&repo_conf()).unwrap();
    let t = config.tenant("dialtone.local").unwrap();
    let err = t.error("dialplan", "cannot compile component");
    assert_eq!(err.file, t.file);
    assert!(err.line > 0 && err.column > 0, "{err}");
    assert_eq!(err.field, "dialplan");
    let err = config.error("dialplan.helpers", "missing");
    assert_eq!(err.file, config.main_file());
    assert!(err.line > 0, "{err}");
    let err = config.error("no.such.field", "x");
    assert_eq!((err.line, err.column), (0, 0));
}

// ---------------------------------------------------------------------------
// Safe defaults
// ---------------------------------------------------------------------------

const DEFAULT_PASSWORD_TENANT: &str = "domain = \"dialtone.local\"\ndialplan = \"dp.wasm\"\n\n[users.1000]\npassword = \"a strong passphrase\"\n\n[users.1001]\npassword = \"1234\"\n";

#[test]
fn safe_defaults_refuse_default_password_on_public_listen() {
    let (dir, config) = load_ok(
        "[switch]\nlisten = [\"127.0.0.1\", \"0.0.0.0\"]\n",
        &[("t.toml", DEFAULT_PASSWORD_TENANT)],
    );
    let err = validate_safe_defaults(&config).unwrap_err();
    assert_at(
        &err,
        &tenant_file(&dir, "t.toml"),
        8,
        12,
        "users.1001.password",
    );
    assert!(
        err.message
            .contains("default password with a non-loopback listen address"),
        "{err}"
    );

    // The shipped tenant, exposed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(MAIN_FILE),
        format!(
            "[switch]\ntenants_dir = {:?}\nlisten = [\"192.0.2.1:5060\"]\n",
            abs(&repo_conf()).join("tenants")
        ),
    )
    .unwrap();
    let config = load(dir.path()).unwrap();
    let err = validate_safe_defaults(&config).unwrap_err();
    assert_eq!(
        err.file,
        abs(&repo_conf()).join("tenants/dialtone.local.toml")
    );
    assert_eq!(err.field, "users.1000.password");
    assert!(err.line > 0);
}

#[test]
fn safe_defaults_other_well_known_passwords() {
    for (password, listen) in [
        ("password", "::"),
        ("PASSWORD", "example.net"),
        ("1000", "10.0.0.1"),
        ("", "[2001:db8::1]:5060"),
    ] {
        let tenant = format!("{MINIMAL_TENANT}[users.1000]\npassword = \"{password}\"\n");
        let (_d, config) = load_ok(
            &format!("[switch]\nlisten = [\"{listen}\"]\n"),
            &[("t.toml", &tenant)],
        );
        let err = validate_safe_defaults(&config).unwrap_err();
        assert_eq!(
            (err.line, err.column),
            (4, 12),
            "{password} {listen}: {err}"
        );
    }
}

#[test]
fn safe_defaults_pass_on_loopback_or_strong_passwords() {
    // Loopback in every spelling, default passwords: fine.
    let (_d, config) = load_ok(
        "[switch]\nlisten = [\"127.0.0.1\", \"127.1.2.3:5080\", \"::1\", \"[::1]:5060\", \"localhost\", \"LOCALHOST:5060\"]\n",
        &[("t.toml", DEFAULT_PASSWORD_TENANT)],
    );
    validate_safe_defaults(&config).unwrap();

    // Public address, strong passwords and an A1 hash: fine.
    let tenant = format!(
        "{MINIMAL_TENANT}[users.1000]\npassword = \"a strong passphrase\"\n[users.1001]\na1_hash = \"0123456789abcdef0123456789abcdef\"\n[users.1002]\n"
    );
    let (_d, config) = load_ok(
        "[switch]\nlisten = [\"0.0.0.0\", \"203.0.113.5:5060\"]\n",
        &[("t.toml", &tenant)],
    );
    validate_safe_defaults(&config).unwrap();
}

#[test]
fn listen_entries_are_checked() {
    let (dir, err) = load_err(
        "[switch]\nlisten = [\"127.0.0.1\", \"not an address\"]\n",
        &[],
    );
    assert_at(&err, &main_file(&dir), 2, 24, "switch.listen");
    let (dir, err) = load_err("[switch]\nlisten = []\n", &[]);
    assert_at(&err, &main_file(&dir), 2, 10, "switch.listen");
}

// ---------------------------------------------------------------------------
// SIP profiles: TLS and IPv6
// ---------------------------------------------------------------------------

fn sock(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

#[test]
fn tls_is_on_by_default_on_the_next_port_and_can_be_turned_off() {
    // The shipped file: internal 5060/5061, external 5080/5081, no
    // certificate named (the switch generates one).
    let config = load(&repo_conf()).unwrap();
    let p = |n: &str| config.sip.profiles.iter().find(|p| p.name == n).unwrap();
    assert_eq!(p("internal").bind, sock("127.0.0.1:5060"));
    assert_eq!(p("internal").tls_bind, Some(sock("127.0.0.1:5061")));
    assert_eq!(p("external").tls_bind, Some(sock("127.0.0.1:5081")));
    assert_eq!(p("internal").tls_cert, None);

    let (dir, config) = load_ok(
        "[sip.profiles.internal]\nlisten = \"127.0.0.1:7000\"\ntls_cert = \"tls/a.crt\"\n\
         tls_key = \"tls/a.key\"\ntls_ca = \"/etc/ca.pem\"\n\n\
         [sip.profiles.internal-ipv6]\nlisten = \"[::1]:7010\"\n\n\
         [sip.profiles.external]\nlisten = \"127.0.0.1:7020\"\ntls = false\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    let p = |n: &str| config.sip.profiles.iter().find(|p| p.name == n).unwrap();
    assert_eq!(p("internal").tls_bind, Some(sock("127.0.0.1:7001")));
    assert_eq!(
        p("internal").tls_cert,
        Some(abs(dir.path()).join("tls/a.crt"))
    );
    assert_eq!(
        p("internal").tls_key,
        Some(abs(dir.path()).join("tls/a.key"))
    );
    assert_eq!(p("internal").tls_ca, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(p("internal-ipv6").bind, sock("[::1]:7010"));
    assert_eq!(p("internal-ipv6").tls_bind, Some(sock("[::1]:7011")));
    assert_eq!(p("external").tls_bind, None);
}

#[test]
fn tls_settings_errors_name_their_field() {
    let (dir, err) = load_err(
        "[sip.profiles.internal]\ntls_cert = \"a.crt\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(
        &err,
        &main_file(&dir),
        2,
        1,
        "sip.profiles.internal.tls_cert",
    );
    assert!(err.message.contains("needs `tls_key`"), "{err}");

    let (dir, err) = load_err(
        "[sip.profiles.internal]\ntls = false\ntls_listen = \"127.0.0.1:5061\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(
        &err,
        &main_file(&dir),
        3,
        1,
        "sip.profiles.internal.tls_listen",
    );

    let (dir, err) = load_err(
        "[sip.profiles.internal]\ntls_listen = \"::1:5061\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(
        &err,
        &main_file(&dir),
        2,
        14,
        "sip.profiles.internal.tls_listen",
    );
    assert!(err.message.contains("[addr]:port"), "{err}");

    // The internal profile's TLS port is the external profile's SIP port.
    let (dir, err) = load_err(
        "[sip.profiles.internal]\nlisten = \"127.0.0.1:5060\"\n\n\
         [sip.profiles.external]\nlisten = \"127.0.0.1:5061\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(
        &err,
        &main_file(&dir),
        5,
        10,
        "sip.profiles.external.listen",
    );
    assert!(
        err.message.contains("already used by profile `internal`"),
        "{err}"
    );

    let (dir, err) = load_err(
        "[sip.profiles.internal]\nlisten = \"127.0.0.1:5060\"\ntls_listen = \"127.0.0.1:5060\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(
        &err,
        &main_file(&dir),
        3,
        14,
        "sip.profiles.internal.tls_listen",
    );

    let (dir, err) = load_err(
        "[sip.gateways.g]\nproxy = \"127.0.0.1:5090\"\ntransport = \"sctp\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_at(&err, &main_file(&dir), 3, 13, "sip.gateways.g.transport");
    let (_, config) = load_ok(
        "[sip.gateways.g]\nproxy = \"127.0.0.1:5091\"\ntransport = \"tls\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    assert_eq!(config.sip.gateways[0].transport, "tls");
}

#[test]
fn unusable_certificate_files_name_file_and_field() {
    let (dir, mut config) = load_ok(
        "[sip.profiles.internal]\ntls_cert = \"missing.crt\"\ntls_key = \"junk.key\"\n",
        &[("t.toml", MINIMAL_TENANT)],
    );
    let err = dialtone::tls::check(&config).unwrap_err();
    assert_at(
        &err,
        &main_file(&dir),
        2,
        12,
        "sip.profiles.internal.tls_cert",
    );
    assert!(err.message.contains("missing.crt"), "{err}");
    assert!(err.message.contains("cannot read"), "{err}");

    // A real certificate with a key that is not a key.
    let cert = abs(dir.path()).join("good.crt");
    let key = abs(dir.path()).join("good.key");
    dialtone::tls::generate(&cert, &key, &["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("junk.key"), "not a key\n").unwrap();
    config.sip.profiles[0].tls_cert = Some(cert.clone());
    let err = dialtone::tls::check(&config).unwrap_err();
    assert_eq!(err.field, "sip.profiles.internal.tls_key", "{err}");
    assert!(err.message.contains("no private key"), "{err}");

    // With both right, prepare() keeps them (the only profile has its
    // own: nothing is generated).
    config.sip.profiles[0].tls_key = Some(key);
    dialtone::tls::prepare(&mut config).unwrap();
    assert_eq!(config.sip.profiles[0].tls_cert, Some(cert));
}

#[test]
fn profiles_without_a_certificate_get_the_generated_one() {
    let (dir, mut config) = load_ok(
        &format!(
            "[switch]\nstate_dir = {:?}\n",
            tempfile::tempdir().unwrap().keep().display().to_string()
        ),
        &[("t.toml", MINIMAL_TENANT)],
    );
    let _ = dir;
    dialtone::tls::prepare(&mut config).unwrap();
    let (cert, key) = dialtone::tls::generated_paths(&config.switch.state_dir);
    for p in &config.sip.profiles {
        assert_eq!(p.tls_cert.as_ref(), Some(&cert), "{}", p.name);
        assert_eq!(p.tls_key.as_ref(), Some(&key), "{}", p.name);
    }
    // Kept across restarts: the same file, not a new one.
    let first = std::fs::read(&cert).unwrap();
    dialtone::tls::prepare(&mut config).unwrap();
    assert_eq!(std::fs::read(&cert).unwrap(), first);
    std::fs::remove_dir_all(&config.switch.state_dir).unwrap();
}

#[test]
fn safe_defaults_cover_tls_and_ipv6_listeners() {
    for profile in [
        "listen = \"127.0.0.1:5060\"\ntls_listen = \"0.0.0.0:5061\"",
        "listen = \"[::]:5060\"\ntls = false",
        "listen = \"[::1]:5060\"\ntls_listen = \"[2001:db8::1]:5061\"",
    ] {
        let (_dir, config) = load_ok(
            &format!("[sip.profiles.internal]\n{profile}\n"),
            &[("t.toml", DEFAULT_PASSWORD_TENANT)],
        );
        let err = validate_safe_defaults(&config).unwrap_err();
        assert_eq!(err.field, "users.1001.password", "{profile}: {err}");
    }
    let (_dir, config) = load_ok(
        "[sip.profiles.internal]\nlisten = \"[::1]:5060\"\n",
        &[("t.toml", DEFAULT_PASSWORD_TENANT)],
    );
    validate_safe_defaults(&config).unwrap();
}
