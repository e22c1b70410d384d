//! Calls through the whole switch as `dialtone run` builds it: the core asks
//! the default dialplan component, expands the directory's dial-string with
//! the contact-helper component, and runs the originate engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use dialtone::app::App;
use dialtone_core::endpoint::{Remote, RemoteControl, RemoteEvent};
use dialtone_core::registrations::{unix_now, Registration};
use dialtone_core::routing::Direction;
use dialtone_core::switch::InboundSpec;
use dialtone_core::HangupCause;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default configuration, with the cache in a temporary directory.
fn app(dir: &tempfile::TempDir) -> Arc<App> {
    let comps = std::env::var("DIALTONE_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("build/components"));
    assert!(
        comps.join("default_dialplan.wasm").exists(),
        "build the guests first (make test does)"
    );
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("tenants")).unwrap();
    let main = std::fs::read_to_string(repo().join("conf/dialtone.toml"))
        .unwrap()
        .replace("../build/components/", &format!("{}/", comps.display()))
        .replace("../var", &dir.path().join("var").display().to_string());
    std::fs::write(conf.join("dialtone.toml"), main).unwrap();
    let tenant = std::fs::read_to_string(repo().join("conf/tenants/dialtone.local.toml"))
        .unwrap()
        .replace("../../build/components/", &format!("{}/", comps.display()));
    std::fs::write(conf.join("tenants/dialtone.local.toml"), tenant).unwrap();
    let config = dialtone::config::load(&conf).expect("config");
    App::build(&conf, config).expect("app")
}

struct Phone(Arc<Mutex<Vec<HangupCause>>>);

impl RemoteControl for Phone {
    fn answer(&mut self) {}
    fn pre_answer(&mut self) {}
    fn ring_ready(&mut self) {}
    fn hangup(&mut self, cause: HangupCause) {
        self.0.lock().push(cause);
    }
}

async fn call(app: &App, context: &str, dest: &str) -> HangupCause {
    let told = Arc::new(Mutex::new(Vec::new()));
    let (_tx, rx) = mpsc::channel::<RemoteEvent>(4);
    let spec = InboundSpec {
        endpoint: "test".into(),
        profile: String::new(),
        name: format!("test/{dest}"),
        tenant: "dialtone.local".into(),
        context: context.into(),
        destination: dest.into(),
        caller_id_name: "Extension 1001".into(),
        caller_id_number: "1001".into(),
        network_addr: "127.0.0.1".into(),
        variables: vec![],
        depth: 0,
        direction: Direction::Inbound,
    };
    app.switch
        .inbound(
            spec,
            Remote {
                events: rx,
                control: Box::new(Phone(told.clone())),
            },
        )
        .expect("admitted");
    for _ in 0..1000 {
        if let Some(c) = told.lock().first() {
            return *c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("call to {dest} never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_dialplan_routes_real_calls() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    // 1000 has no registration: the vanilla dial-string's helpers give
    // error/user_not_registered for SIP and Verto.
    assert_eq!(
        call(&app, "default", "1000").await,
        HangupCause::UserNotRegistered
    );
    // A registration now exists, but the SIP endpoint is not started here
    // (no sockets): its leg fails with NETWORK_OUT_OF_ORDER.
    app.switch.registrations().upsert(Registration {
        endpoint: "sofia".into(),
        profile: "internal".into(),
        user: "1000".into(),
        domain: "dialtone.local".into(),
        contact: "sip:1000@127.0.0.1:5100".into(),
        expires: unix_now() + 60,
        user_agent: "test".into(),
        network_addr: "127.0.0.1:5100".into(),
    });
    // The user's dial-string now expands to that contact (through the
    // contact-helper component) plus Verto's error leg...
    let lookup = |n: &str| match n {
        "dialed_user" => Some("1000".to_string()),
        "dialed_domain" => Some("dialtone.local".to_string()),
        _ => None,
    };
    let expanded = app
        .switch
        .expand_dialstring(
            "dialtone.local",
            dialtone_core::directory::VANILLA_DIAL_STRING,
            &lookup,
        )
        .await
        .unwrap();
    let ds = dialtone_core::dialstring::parse(&expanded).unwrap();
    let legs: Vec<(String, String)> = ds.branches[0].groups[0]
        .legs
        .iter()
        .map(|l| (l.endpoint.clone(), l.data.clone()))
        .collect();
    assert_eq!(
        legs,
        vec![
            (
                "sofia".to_string(),
                "internal/sip:1000@127.0.0.1:5100".to_string()
            ),
            ("error".to_string(), "user_not_registered".to_string()),
        ]
    );
    // ...and the call fails on both legs: the SIP endpoint has no sockets
    // in this test, Verto is not registered.
    let cause = call(&app, "default", "1000").await;
    assert!(
        matches!(
            cause,
            HangupCause::NetworkOutOfOrder | HangupCause::UserNotRegistered
        ),
        "{cause}"
    );
    // Unknown numbers, public context, and media applications on a test
    // endpoint that carries no media (SIP calls to them are in sip.rs).
    assert_eq!(
        call(&app, "default", "4711").await,
        HangupCause::UnallocatedNumber
    );
    assert_eq!(
        call(&app, "public", "9196").await,
        HangupCause::UnallocatedNumber
    );
    assert_eq!(
        call(&app, "default", "9196").await,
        HangupCause::ServiceNotImplemented
    );
    // The IVR asks for digits, which need media.
    assert_eq!(
        call(&app, "default", "5000").await,
        HangupCause::ServiceNotImplemented
    );
    for _ in 0..200 {
        if app.switch.channel_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("channels left behind: {}", app.switch.channel_count());
}
