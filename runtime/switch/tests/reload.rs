//! `reload` over the event socket applies SIP gateways to the running
//! switch: a gateway added to `conf/dialtone.toml` carries a call to a SIPp
//! carrier at once, a removed one is INVALID_GATEWAY, `sofia status` follows.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::esl::Esl;
use common::{repo, Running};

#[test]
fn reload_adds_and_removes_gateways_on_the_running_switch() {
    let sw = Running::start(6240, 29600);
    let main = sw._dir.path().join("conf/dialtone.toml");
    let original = std::fs::read_to_string(&main).unwrap();
    let mut esl = Esl::connect(sw.esl);
    let status = esl.api("sofia status");
    assert!(status.contains("0 gateways"), "{status}");
    assert!(esl
        .api("originate sofia/gateway/carrier/5551234 &park()")
        .starts_with("-ERR INVALID_GATEWAY"));

    // A carrier on 6250 that answers one call and waits for the BYE.
    let work = tempfile::tempdir().unwrap();
    let mut carrier = Command::new("timeout")
        .arg("60")
        .arg("sipp")
        .arg("-sf")
        .arg(repo().join("tests/sip/sipp/uas_answer.xml"))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            "6250",
            "-mi",
            "127.0.0.1",
            "-mp",
            "29950",
        ])
        .args(["-m", "1", "-nostdin", "-timeout", "55s", "-timeout_error"])
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let with_gateway = original.replacen(
        "\n[media]\n",
        "\n[sip.gateways.carrier]\nprofile = \"external\"\nproxy = \"127.0.0.1:6250\"\ntransport = \"udp\"\nregister = false\nping_s = 0\n\n[media]\n",
        1,
    );
    assert_ne!(with_gateway, original);
    std::fs::write(&main, &with_gateway).unwrap();
    let reply = esl.api("reload");
    assert_eq!(reply.trim(), "+OK reloaded", "{}", sw.log_tail());
    let status = esl.api("sofia status");
    assert!(status.contains("external::carrier"), "{status}");
    assert!(status.contains("sip:127.0.0.1:6250"), "{status}");
    assert!(status.contains("1 gateway "), "{status}");

    let reply = esl.api("originate sofia/gateway/carrier/5551234 &park()");
    let uuid = reply
        .strip_prefix("+OK ")
        .unwrap_or_else(|| panic!("{reply}\n{}", sw.log_tail()))
        .trim()
        .to_string();
    let dump = esl.api(&format!("uuid_dump {uuid}"));
    assert!(
        dump.contains("Caller-Destination-Number: 5551234"),
        "{dump}"
    );
    assert_eq!(esl.api(&format!("uuid_kill {uuid}")).trim(), "+OK");
    let st = carrier.wait().unwrap();
    assert!(st.success(), "the carrier answered and got the BYE: {st}");

    // Removed again: the gateway is gone.
    std::fs::write(&main, &original).unwrap();
    assert_eq!(esl.api("reload").trim(), "+OK reloaded");
    let status = esl.api("sofia status");
    assert!(!status.contains("carrier"), "{status}");
    assert!(esl
        .api("originate sofia/gateway/carrier/5551234 &park()")
        .starts_with("-ERR INVALID_GATEWAY"));
    std::thread::sleep(Duration::from_millis(500));
    sw.assert_no_leaks();
}
