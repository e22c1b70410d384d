//! Outbound socket mode against a real third-party application: a modesl
//! `esl.Server` receives a SIP call that the default dialplan's `8084`
//! hands over with the `socket` action, and drives it: answer, playback,
//! set + getvar, hangup. The SIPp caller sees the answer and the switch's
//! BYE.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, Running};

fn node_modules() -> std::path::PathBuf {
    let dir = repo().join("tests/esl/node_modules/modesl");
    assert!(
        dir.is_dir(),
        "modesl is not installed ({}): run scripts/install-peers.sh",
        dir.display()
    );
    dir
}

#[test]
fn a_modesl_server_drives_a_call_handed_over_by_the_socket_action() {
    node_modules();
    const APP_PORT: u16 = 6211;
    let sw = Running::start_edited(
        tempfile::tempdir().unwrap(),
        6200,
        29000,
        "",
        "",
        &[(
            "outbound_caller_id_name = \"Dialtone\"",
            "outbound_caller_id_name = \"Dialtone\"\nsocket_address = \"127.0.0.1:6211\"",
        )],
    );
    let mut app = Command::new("node")
        .arg(repo().join("tests/esl/modesl_outbound.js"))
        .arg(APP_PORT.to_string())
        .arg("30000")
        .current_dir(repo().join("tests/esl"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let stdout = app.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the app listens");
    assert_eq!(first["step"], "listening", "{first}");

    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let sipp = Command::new("timeout")
        .arg("40")
        .arg("sipp")
        .arg("-sf")
        .arg(repo().join("tests/sip/sipp/uac_auth_expect_bye.xml"))
        .arg(format!("127.0.0.1:{}", sw.internal))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            "6210",
            "-mi",
            "127.0.0.1",
            "-mp",
            "29990",
        ])
        .args([
            "-s",
            "8084",
            "-key",
            "caller",
            "1000",
            "-key",
            "domain",
            "dialtone.local",
        ])
        .args(["-au", "1000", "-ap", "1234", "-auth_uri"])
        .arg(format!("8084@127.0.0.1:{}", sw.internal))
        .args([
            "-m",
            "1",
            "-nostdin",
            "-recv_timeout",
            "20000",
            "-timeout",
            "35s",
            "-timeout_error",
        ])
        .current_dir(work.path())
        .output()
        .expect("sipp");
    assert!(
        sipp.status.success(),
        "SIPp: answered call ended by the switch's BYE expected\n{}\n{}",
        String::from_utf8_lossy(&sipp.stdout),
        sw.log_tail()
    );
    let mut steps = Vec::new();
    while let Ok(v) = rx.recv_timeout(Duration::from_secs(10)) {
        let end = v["step"] == "end";
        steps.push(v);
        if end {
            break;
        }
    }
    let status = app.wait().unwrap();
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        names,
        ["ready", "answered", "played", "getvar", "end"],
        "{steps:#?}\n{}",
        sw.log_tail()
    );
    assert!(
        status.success(),
        "the app exits 0 after the switch closes the socket"
    );
    let uuid = steps[0]["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 36, "{}", steps[0]);
    assert_eq!(steps[0]["event"], "CHANNEL_DATA");
    assert_eq!(steps[0]["destination"], "8084");
    assert_eq!(steps[0]["direction"], "inbound");
    assert_eq!(steps[1]["app"], "answer");
    assert_eq!(steps[1]["uuid"], uuid.as_str());
    assert_eq!(steps[1]["state"], "ACTIVE");
    assert_eq!(steps[2]["app"], "playback");
    assert_eq!(steps[2]["data"], "tone_stream://%(1000,0,800)");
    assert_eq!(steps[3]["value"], "done");
    // The tone played for its second before the hangup.
    assert!(started.elapsed() >= Duration::from_secs(1));
    sw.assert_no_leaks();
}
