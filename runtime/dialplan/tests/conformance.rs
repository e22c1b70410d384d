//! The default dialplan in Rust, JavaScript and Python routes every case
//! exactly alike.

mod common;

use std::time::Duration;

use common::*;
use dialtone_core::routing::{
    Action, ChannelSnapshot, CollectSpec, Dialplan, MessageDecision, RecordLegs, TextMessage,
};
use dialtone_core::routing::{OutboundDecision, OutboundRequest};
use dialtone_core::HangupCause;
use dialtone_dialplan::tenants::WasmDialplan;
use dialtone_dialplan::{Role, SandboxSettings};

const GUESTS: [(&str, &str); 3] = [
    ("rust.test", "default_dialplan.wasm"),
    ("js.test", "default_dialplan_js.wasm"),
    ("py.test", "default_dialplan_py.wasm"),
];

fn set(name: &str, value: &str) -> Action {
    Action::Set {
        name: name.into(),
        value: value.into(),
    }
}

fn hangup(cause: HangupCause) -> Action {
    Action::Hangup { cause }
}

/// The specification every implementation must meet.
fn expected(tenant: &str, context: &str, dest: &str, vars: &[(&str, &str)]) -> Vec<Action> {
    let ext = dest.len() == 4
        && dest.starts_with("10")
        && dest[2..].parse::<u32>().is_ok_and(|n| n <= 19);
    if ext {
        return vec![
            set("call_timeout", "30"),
            set("hangup_after_bridge", "true"),
            set("dialed_extension", dest),
            Action::Bridge {
                dialstring: format!("user/{dest}@{tenant}"),
            },
            hangup(HangupCause::NoAnswer),
        ];
    }
    if context == "public" {
        return vec![hangup(HangupCause::UnallocatedNumber)];
    }
    match dest {
        "9196" => vec![Action::Answer, Action::Echo],
        "9178" => vec![
            Action::Answer,
            Action::Record {
                path: "9178-${uuid}.wav".into(),
                limit_ms: Some(60_000),
                legs: RecordLegs::Both,
            },
            Action::Echo,
        ],
        "9664" => vec![
            Action::Answer,
            Action::Playback {
                file: "tone_stream://v=-12;L=1000;%(400,0,523.25);%(400,0,659.25);%(400,0,783.99);%(400,0,1046.5)".into(),
            },
        ],
        "8084" => vec![Action::Socket {
            address: vars
                .iter()
                .find(|(k, _)| *k == "socket_address")
                .map_or("127.0.0.1:8084", |(_, v)| *v)
                .into(),
            async_mode: true,
            full: true,
        }],
        "9181" => vec![
            Action::PreAnswer,
            Action::Playback {
                file: "tone_stream://%(400,200,400,450);%(400,2000,400,450)".into(),
            },
            hangup(HangupCause::NoAnswer),
        ],
        "5000" => match vars.iter().find(|(k, _)| *k == "ivr_choice").map(|(_, v)| *v) {
            Some("1") => vec![Action::Transfer { extension: "9196".into(), context: None }],
            Some("2") => vec![Action::Transfer { extension: "9664".into(), context: None }],
            Some(_) => vec![hangup(HangupCause::UnallocatedNumber)],
            None => vec![
                Action::Answer,
                Action::Collect(CollectSpec {
                    prompt: Some("tone_stream://%(200,0,1000)".into()),
                    variable: "ivr_choice".into(),
                    min_digits: 1,
                    max_digits: 1,
                    timeout_ms: 5000,
                    terminators: "#".into(),
                }),
            ],
        },
        d if d.len() == 6 && d.starts_with("*7") && expected(tenant, "default", &d[2..], &[]).len() == 5 => vec![
            set("call_timeout", "30"),
            set("hangup_after_bridge", "true"),
            Action::Bridge {
                dialstring: format!(r"[execute_on_answer=playback\ announce.wav]user/{}@{tenant}", &d[2..]),
            },
            hangup(HangupCause::NoAnswer),
        ],
        d if d.len() == 6 && d.starts_with("*9") && expected(tenant, "default", &d[2..], &[]).len() == 5 => vec![
            set("call_timeout", "20"),
            Action::Bridge { dialstring: format!("${{sofia_contact(*/{}@{tenant})}}", &d[2..]) },
            hangup(HangupCause::UserNotRegistered),
        ],
        _ => vec![hangup(HangupCause::UnallocatedNumber)],
    }
}

/// (context, destination, variables).
type Case = (&'static str, String, Vec<(&'static str, &'static str)>);

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for ctx in ["default", "public"] {
        for d in [
            "1000", "1009", "1010", "1019", "1020", "999", "10000", "0100", "9196", "9178", "9664",
            "9181", "5000", "*91000", "*91019", "*91020", "*9", "*71000", "*71019", "*71020", "*7",
            "", "abc", "1000 ", "10a0", "+1000", "9196#",
        ] {
            v.push((ctx, d.to_string(), vec![]));
        }
    }
    v.push(("default", "8084".to_string(), vec![]));
    v.push(("public", "8084".to_string(), vec![]));
    v.push((
        "default",
        "8084".to_string(),
        vec![("socket_address", "127.0.0.1:6135")],
    ));
    for choice in ["1", "2", "3", ""] {
        v.push(("default", "5000".to_string(), vec![("ivr_choice", choice)]));
    }
    v
}

#[test]
fn rust_javascript_and_python_agree() {
    let h = host(2);
    for (tenant, file) in GUESTS {
        h.tenants.configure(
            tenant,
            SandboxSettings {
                memory_bytes: 128 << 20,
                deadline: Duration::from_secs(5),
                ..SandboxSettings::default()
            },
        );
        h.tenants
            .load_file(tenant, Role::Dialplan, &component(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dp = WasmDialplan(h.tenants.clone());
    let mut checked = 0;
    for (ctx, dest, vars) in cases() {
        for (tenant, file) in GUESTS {
            let mut snap: ChannelSnapshot = snapshot(tenant, ctx, &dest);
            snap.variables = std::sync::Arc::new(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            let got = rt
                .block_on(dp.route(snap))
                .unwrap_or_else(|e| panic!("{file} {ctx}/{dest}: {e}"));
            assert_eq!(
                got,
                expected(tenant, ctx, &dest, &vars),
                "{file}: context {ctx}, destination {dest:?}, vars {vars:?}"
            );
            checked += 1;
        }
    }
    for (tenant, file) in GUESTS {
        for (to, want) in [
            (
                "1001@x",
                MessageDecision::Forward {
                    target: format!("user/1001@{tenant}"),
                },
            ),
            (
                "1019",
                MessageDecision::Forward {
                    target: format!("user/1019@{tenant}"),
                },
            ),
            (
                "2000@x",
                MessageDecision::Reply {
                    body: "no such user: 2000".into(),
                },
            ),
        ] {
            let m = TextMessage {
                endpoint: "sofia".into(),
                profile: "internal".into(),
                tenant: tenant.into(),
                from: format!("1000@{tenant}"),
                to: to.into(),
                content_type: "text/plain".into(),
                body: "hi".into(),
                network_addr: String::new(),
            };
            assert_eq!(
                rt.block_on(dp.route_message(m)).unwrap(),
                want,
                "{file} message to {to}"
            );
            checked += 1;
        }
        // None of the three exports the outbound hook: the switch does not
        // ask, and a leg goes ahead as its dialstring built it, without an
        // invocation.
        assert!(!dp.wants_outbound(tenant), "{file} wants outbound legs");
        let before = invocations(&h, tenant);
        let req = OutboundRequest {
            channel: snapshot(tenant, "default", "1000"),
            target: "internal/1000".into(),
            originator: String::new(),
        };
        assert_eq!(
            rt.block_on(dp.route_outbound(req)).unwrap(),
            OutboundDecision::Accept { variables: vec![] },
            "{file} outbound"
        );
        assert_eq!(
            invocations(&h, tenant),
            before,
            "{file}: an outbound leg was routed"
        );
    }
    eprintln!("{checked} cases agree across Rust, JavaScript and Python");
}
