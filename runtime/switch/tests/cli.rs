//! The `dialtone` binary: its commands, start-up checks, and live reload of
//! a running switch.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dialtone"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn components() -> PathBuf {
    std::env::var("DIALTONE_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("build/components"))
}

fn component(name: &str) -> PathBuf {
    let p = components().join(name);
    assert!(
        p.exists(),
        "{} missing: build the guests first (make test does)",
        p.display()
    );
    p
}

/// A copy of the default configuration whose component paths point into the
/// copy, so a test can replace them.
fn conf_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("tenants")).unwrap();
    let comps = dir.path().join("components");
    std::fs::create_dir_all(&comps).unwrap();
    for c in ["default_dialplan.wasm", "contact_helpers.wasm"] {
        std::fs::copy(component(c), comps.join(c)).unwrap();
    }
    let main = std::fs::read_to_string(repo().join("conf/dialtone.toml"))
        .unwrap()
        .replace("../build/components/", "../components/");
    std::fs::write(conf.join("dialtone.toml"), main).unwrap();
    let tenant = std::fs::read_to_string(repo().join("conf/tenants/dialtone.local.toml"))
        .unwrap()
        .replace("../../build/components/", "../../components/");
    std::fs::write(conf.join("tenants/dialtone.local.toml"), tenant).unwrap();
    (dir, conf)
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

#[test]
fn dialstring_explain() {
    let out = bin()
        .args(["dialstring", "explain", "{ignore_early_media=true}user/1000@a.test,[leg_timeout=10]sofia/gateway/gw/1555|error/USER_BUSY"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = json(&out.stdout);
    assert_eq!(v["legs"], 3);
    let groups = &v["branches"][0]["groups"];
    assert_eq!(groups[0]["legs"][1]["endpoint"], "sofia");
    assert_eq!(groups[0]["legs"][1]["target"], "gateway/gw/1555");
    assert_eq!(groups[0]["legs"][1]["local_vars"]["leg_timeout"], "10");
    assert_eq!(groups[1]["legs"][0]["endpoint"], "error");

    let out = bin()
        .args(["dialstring", "explain", "user/1000,[x=1sofia/a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out.stdout);
    assert_eq!(v["position"], 10);
    assert!(v["error"].as_str().unwrap().contains("unbalanced"), "{v}");
    assert!(
        v["context"].as_str().unwrap().ends_with("\n          ^"),
        "{v}"
    );
}

#[test]
fn dialplan_test_prints_the_decision() {
    let (_dir, conf) = conf_copy();
    let out = bin()
        .args(["--conf"])
        .arg(&conf)
        .args([
            "dialplan",
            "test",
            "--tenant",
            "dialtone.local",
            "--from",
            "1001",
            "--to",
            "1000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out.stdout);
    assert_eq!(v["actions"][3]["action"], "bridge");
    assert_eq!(v["actions"][3]["dialstring"], "user/1000@dialtone.local");
    assert_eq!(v["bridges"][0]["parsed"]["legs"], 1);
    assert!(v["version"].as_str().unwrap().contains('-'));

    let out = bin()
        .arg("--conf")
        .arg(&conf)
        .args([
            "dialplan",
            "test",
            "--tenant",
            "dialtone.local",
            "--from",
            "1001",
            "--to",
            "5000",
            "--var",
            "ivr_choice=2",
        ])
        .output()
        .unwrap();
    let v = json(&out.stdout);
    assert_eq!(v["actions"][0]["action"], "transfer");
    assert_eq!(v["actions"][0]["extension"], "9664");

    let out = bin()
        .arg("--conf")
        .arg(&conf)
        .args([
            "dialplan",
            "test",
            "--tenant",
            "dialtone.local",
            "--from",
            "x",
            "--to",
            "9196",
            "--context",
            "public",
        ])
        .output()
        .unwrap();
    let v = json(&out.stdout);
    assert_eq!(v["actions"][0]["cause"], "UNALLOCATED_NUMBER");
}

#[test]
fn bad_configuration_names_file_line_and_field() {
    let (_dir, conf) = conf_copy();
    let main = conf.join("dialtone.toml");
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("memory_mb = 16", "memory_mb = 100000");
    std::fs::write(&main, text).unwrap();
    for args in [vec!["config", "check"], vec!["run"]] {
        let out = bin().arg("--conf").arg(&conf).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("dialtone.toml:"), "{err}");
        assert!(err.contains("sandbox.memory_mb"), "{err}");
    }
}

#[test]
fn default_passwords_never_open_a_public_address() {
    let (_dir, conf) = conf_copy();
    let main = conf.join("dialtone.toml");
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("listen = [\"127.0.0.1\"]", "listen = [\"0.0.0.0\"]");
    std::fs::write(&main, text).unwrap();
    let out = bin().arg("--conf").arg(&conf).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dialtone.local.toml") && err.contains("password"),
        "{err}"
    );
}

/// Starts the switch, waits for a log line, swaps the dialplan on disk, then
/// a broken one, then SIGHUP, then SIGTERM.
#[test]
fn running_switch_hot_swaps_and_refuses_broken_components() {
    let (dir, conf) = conf_copy();
    let mut child = bin()
        .arg("--conf")
        .arg(&conf)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |what: &str, seen: &mut Vec<String>| {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                let hit = l.contains(what);
                seen.push(l);
                if hit {
                    return;
                }
            }
        }
        panic!("no `{what}` in the log:\n{}", seen.join("\n"));
    };
    let mut seen = Vec::new();
    wait_for("dialtone running", &mut seen);
    let target = dir.path().join("components/default_dialplan.wasm");
    // A new version appears on disk: it is loaded and swapped in.
    replace(&target, &component("versioned_dialplan.wasm"));
    wait_for("tenant component in force", &mut seen);
    // A broken one: refused, the running version stays.
    std::fs::write(&target, b"\0asm garbage").unwrap();
    wait_for("component refused", &mut seen);
    // SIGHUP reloads (and refuses it again).
    unsafe_kill(child.id(), "HUP");
    wait_for("reload", &mut seen);
    unsafe_kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

fn replace(target: &Path, from: &Path) {
    let tmp = target.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, target).unwrap();
}

fn unsafe_kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}
