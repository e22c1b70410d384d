//! # The default dialplan
//!
//! What a tenant gets before it uploads its own component (world
//! `dialplan`). The JavaScript and Python versions in `guests/js` and
//! `guests/python` follow the same table, and a host test compares the
//! action lists of all three, so change them together.
//!
//! `route(channel)`, first match wins (`dest` = destination, `ctx` = context):
//!
//! | destination | actions |
//! |---|---|
//! | `1000`..`1019`, any context | set `call_timeout=30`, `hangup_after_bridge=true`, `dialed_extension=<dest>`; bridge `user/<dest>@<tenant>`; hangup `no-answer` |
//! | anything, `ctx == "public"` | hangup `unallocated-number` |
//! | `9196` | answer; echo |
//! | `9664` | answer; playback a C-major arpeggio `tone_stream://` |
//! | `9181` | pre-answer; playback one cadence of UK ringback (3 s) as early media; hangup `no-answer` (never answered: SIP 183, then 480) |
//! | `8084` | socket to `${socket_address}` (channel, tenant or switch-wide variable; default `127.0.0.1:8084`), async, full: the call is driven by an external application over the event socket protocol |
//! | `9178` | answer; record both sides to `9178-${uuid}.wav` (60 s at most); echo |
//! | `*7` + `1000`..`1019` | set `call_timeout=30`, `hangup_after_bridge=true`; bridge `user/<ext>@<tenant>` with the leg variable `execute_on_answer=playback announce.wav` (the callee hears the tenant's `announce.wav`, then the caller); hangup `no-answer` |
//! | `*9` + `1000`..`1019` | set `call_timeout=20`; bridge `${sofia_contact(*/<ext>@<tenant>)}`; hangup `user-not-registered` |
//! | `5000`, `ivr_choice` unset | answer; collect 1 digit into `ivr_choice` (5 s, `#`) |
//! | `5000`, `ivr_choice` = `1` / `2` / other | transfer to `9196` / `9664` / hangup `unallocated-number` |
//! | anything else | hangup `unallocated-number` |
//!
//! It has no outbound hook (outbound legs go ahead as their dialstrings
//! describe them, at no cost per leg); `route-message` forwards a
//! message for `1000`..`1019` to `user/<user>@<tenant>` and answers anything
//! else with `no such user: <user>`. The only host call is
//! `channel-variable("ivr_choice")`, for `5000`.
//!
//! The component is `no_std` with the SDK's component runtime (its
//! allocator and panic handler, see `dialtone_sdk::rt`): it imports no WASI,
//! so the switch instantiates one core module per call instead of four.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

mod bindings {
    wit_bindgen::generate!({
        world: "dialplan",
        path: "../../wit",
    });
}

use bindings::dialtone::switch::types::{
    Action, ChannelInfo, CollectSpec, HangupCause, MessageDecision, RecordLegs, RecordSpec,
    SocketSpec, TextMessage, TransferTarget, Variable,
};
use bindings::exports::dialtone::switch::router::Guest;
use dialtone_sdk::{Dialstring, Leg};

/// The arpeggio `9664` plays.
const TONE_9664: &str =
    "tone_stream://v=-12;L=1000;%(400,0,523.25);%(400,0,659.25);%(400,0,783.99);%(400,0,1046.5)";

/// One cadence of UK ringback (400+450 Hz, 0.4 s on, 0.2 s off, 0.4 s on,
/// 2 s off), the early media of `9181`.
const UK_RING: &str = "tone_stream://%(400,200,400,450);%(400,2000,400,450)";

/// What `*7` + extension plays to the callee on answer.
const ANNOUNCE: &str = "playback announce.wav";

/// Where `9178` records (in the tenant's recordings directory).
const RECORD_9178: &str = "9178-${uuid}.wav";

/// The prompt of the `5000` IVR.
const IVR_PROMPT: &str = "tone_stream://%(200,0,1000)";

/// The variable the `5000` IVR collects into.
const IVR_VARIABLE: &str = "ivr_choice";
/// Where `8084` hands calls: this variable (channel, else tenant or
/// switch-wide), else FreeSWITCH's customary outbound-socket address.
const SOCKET_VARIABLE: &str = "socket_address";
const SOCKET_DEFAULT: &str = "127.0.0.1:8084";

/// Whether `dest` is a local extension, `1000`..`1019`
/// (`^10(0[0-9]|1[0-9])$`).
fn is_local_extension(dest: &str) -> bool {
    matches!(dest.as_bytes(), [b'1', b'0', b'0' | b'1', d] if d.is_ascii_digit())
}

/// `set(name=value)`.
fn set(name: &str, value: &str) -> Action {
    Action::Set(Variable {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// The default dialplan's routing table (see the module docs). `variable`
/// reads a channel variable (the host's `channel-variable` in a component).
fn route(channel: &ChannelInfo, variable: &dyn Fn(&str) -> Option<String>) -> Vec<Action> {
    let dest = channel.destination.as_str();
    let tenant = channel.tenant.as_str();

    if is_local_extension(dest) {
        return vec![
            set("call_timeout", "30"),
            set("hangup_after_bridge", "true"),
            set("dialed_extension", dest),
            Action::Bridge(Dialstring::from(Leg::user(dest, tenant)).render()),
            Action::Hangup(HangupCause::NoAnswer),
        ];
    }
    if channel.context == "public" {
        return vec![Action::Hangup(HangupCause::UnallocatedNumber)];
    }
    match dest {
        "9196" => vec![Action::Answer, Action::Echo],
        "9178" => vec![
            Action::Answer,
            Action::Record(RecordSpec {
                path: RECORD_9178.to_owned(),
                limit_ms: Some(60_000),
                legs: RecordLegs::Both,
            }),
            Action::Echo,
        ],
        "9664" => vec![Action::Answer, Action::Playback(TONE_9664.to_owned())],
        "8084" => vec![Action::Socket(SocketSpec {
            address: variable(SOCKET_VARIABLE).unwrap_or_else(|| SOCKET_DEFAULT.to_owned()),
            async_mode: true,
            full: true,
        })],
        "9181" => vec![
            Action::PreAnswer,
            Action::Playback(UK_RING.to_owned()),
            Action::Hangup(HangupCause::NoAnswer),
        ],
        "5000" => match variable(IVR_VARIABLE).as_deref() {
            Some("1") => vec![transfer("9196")],
            Some("2") => vec![transfer("9664")],
            Some(_) => vec![Action::Hangup(HangupCause::UnallocatedNumber)],
            None => vec![
                Action::Answer,
                Action::Collect(CollectSpec {
                    prompt: Some(IVR_PROMPT.to_owned()),
                    variable: IVR_VARIABLE.to_owned(),
                    min_digits: 1,
                    max_digits: 1,
                    timeout_ms: 5000,
                    terminators: "#".to_owned(),
                }),
            ],
        },
        _ if dest
            .strip_prefix("*7")
            .is_some_and(is_local_extension) =>
        {
            // An announcement to the callee before the bridge.
            let ext = &dest[2..];
            vec![
                set("call_timeout", "30"),
                set("hangup_after_bridge", "true"),
                Action::Bridge(
                    Dialstring::from(Leg::user(ext, tenant).var("execute_on_answer", ANNOUNCE))
                        .render(),
                ),
                Action::Hangup(HangupCause::NoAnswer),
            ]
        }
        _ => match dest
            .strip_prefix("*9")
            .filter(|ext| is_local_extension(ext))
        {
            // The extension is 10xx digits and the tenant comes from the
            // host, so the helper call is trusted text.
            Some(ext) => vec![
                set("call_timeout", "20"),
                Action::Bridge(
                    Dialstring::from(Leg::raw(format!("${{sofia_contact(*/{ext}@{tenant})}}")))
                        .render(),
                ),
                Action::Hangup(HangupCause::UserNotRegistered),
            ],
            None => vec![Action::Hangup(HangupCause::UnallocatedNumber)],
        },
    }
}

/// `transfer` to an extension of the current context.
fn transfer(extension: &str) -> Action {
    Action::Transfer(TransferTarget {
        extension: extension.to_owned(),
        context: None,
    })
}

/// The default dialplan's message routing (see the module docs).
fn route_message(message: &TextMessage) -> MessageDecision {
    let user = message
        .to
        .split_once('@')
        .map_or(message.to.as_str(), |(user, _)| user);
    if is_local_extension(user) {
        MessageDecision::Forward(Dialstring::from(Leg::user(user, &message.tenant)).render())
    } else {
        MessageDecision::Reply(format!("no such user: {user}"))
    }
}

/// The component.
struct DefaultDialplan;

impl Guest for DefaultDialplan {
    fn route(channel: ChannelInfo) -> Vec<Action> {
        // A channel variable, else a tenant or switch-wide one.
        route(&channel, &|name: &str| {
            bindings::dialtone::switch::host::channel_variable(name)
                .or_else(|| bindings::dialtone::switch::host::global_variable(name))
        })
    }

    fn route_message(message: TextMessage) -> MessageDecision {
        route_message(&message)
    }
}

bindings::export!(DefaultDialplan with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::dialtone::switch::types::Direction;

    fn channel(dest: &str, ctx: &str) -> ChannelInfo {
        ChannelInfo {
            uuid: "00000000-0000-4000-8000-000000000000".into(),
            direction: Direction::Inbound,
            endpoint: "sofia".into(),
            profile: "internal".into(),
            tenant: "example.com".into(),
            context: ctx.into(),
            caller_id_name: "Alice".into(),
            caller_id_number: "1001".into(),
            destination: dest.into(),
            network_addr: "192.0.2.7:5060".into(),
        }
    }

    /// Routes with these channel variables.
    fn route_with(dest: &str, ctx: &str, vars: &[(&str, &str)]) -> Vec<Action> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_string())
        };
        route(&channel(dest, ctx), &lookup)
    }

    /// Actions rendered as text so the tests read like the spec table.
    fn show(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Set(v) => format!("set {}={}", v.name, v.value),
                Action::Bridge(d) => format!("bridge {d}"),
                Action::Hangup(c) => {
                    format!(
                        "hangup {}",
                        format!("{c:?}").trim_start_matches("HangupCause::")
                    )
                }
                Action::Answer => "answer".into(),
                Action::Echo => "echo".into(),
                Action::Playback(p) => format!("playback {p}"),
                Action::Record(r) => format!(
                    "record {} {:?} {}",
                    r.path,
                    r.limit_ms,
                    format!("{:?}", r.legs).trim_start_matches("RecordLegs::")
                ),
                Action::Transfer(t) => format!("transfer {} {:?}", t.extension, t.context),
                Action::Collect(c) => format!(
                    "collect {:?} {} {}-{} {} {}",
                    c.prompt, c.variable, c.min_digits, c.max_digits, c.timeout_ms, c.terminators
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn r(dest: &str, ctx: &str) -> Vec<String> {
        show(&route_with(dest, ctx, &[]))
    }

    #[test]
    fn local_extensions_in_any_context() {
        for ctx in ["default", "public", "other"] {
            for ext in ["1000", "1009", "1010", "1019"] {
                assert_eq!(
                    r(ext, ctx),
                    [
                        "set call_timeout=30".to_string(),
                        "set hangup_after_bridge=true".into(),
                        format!("set dialed_extension={ext}"),
                        format!("bridge user/{ext}@example.com"),
                        "hangup NoAnswer".into(),
                    ]
                );
            }
        }
    }

    #[test]
    fn not_local_extensions() {
        for dest in ["1020", "100", "10000", "0100", "1O00", "", "١٠٠٠", "1000 "] {
            assert_eq!(r(dest, "default"), ["hangup UnallocatedNumber"], "{dest:?}");
        }
    }

    #[test]
    fn public_gets_nothing_else() {
        for dest in ["9196", "9178", "9664", "9181", "*91000", "*71000", "5000", "x"] {
            assert_eq!(r(dest, "public"), ["hangup UnallocatedNumber"]);
        }
    }

    #[test]
    fn echo_and_tone() {
        assert_eq!(r("9196", "default"), ["answer", "echo"]);
        assert_eq!(
            r("9178", "default"),
            [
                "answer",
                "record 9178-${uuid}.wav Some(60000) Both",
                "echo"
            ]
        );
        assert_eq!(
            r("9664", "default"),
            ["answer".to_string(), format!("playback {TONE_9664}")]
        );
    }

    #[test]
    fn ringback_as_early_media() {
        assert_eq!(
            r("9181", "default"),
            [
                "Action::PreAnswer".to_string(),
                format!("playback {UK_RING}"),
                "hangup NoAnswer".into()
            ]
        );
    }

    #[test]
    fn star_seven_announces_to_the_callee() {
        assert_eq!(
            r("*71001", "default"),
            [
                "set call_timeout=30",
                "set hangup_after_bridge=true",
                r"bridge [execute_on_answer=playback\ announce.wav]user/1001@example.com",
                "hangup NoAnswer"
            ]
        );
        for dest in ["*71020", "*7", "*7100", "**71000"] {
            assert_eq!(r(dest, "default"), ["hangup UnallocatedNumber"], "{dest:?}");
        }
        assert_eq!(r("*71001", "public"), ["hangup UnallocatedNumber"]);
    }

    #[test]
    fn star_nine_rings_registrations() {
        assert_eq!(
            r("*91019", "default"),
            [
                "set call_timeout=20",
                "bridge ${sofia_contact(*/1019@example.com)}",
                "hangup UserNotRegistered"
            ]
        );
        for dest in ["*91020", "*9", "*9100", "*8 1000", "**91000"] {
            assert_eq!(r(dest, "default"), ["hangup UnallocatedNumber"], "{dest:?}");
        }
    }

    #[test]
    fn ivr() {
        assert_eq!(
            r("5000", "default"),
            [
                "answer",
                "collect Some(\"tone_stream://%(200,0,1000)\") ivr_choice 1-1 5000 #"
            ]
        );
        let with = |v: &str| show(&route_with("5000", "default", &[("ivr_choice", v)]));
        assert_eq!(with("1"), ["transfer 9196 None"]);
        assert_eq!(with("2"), ["transfer 9664 None"]);
        assert_eq!(with(""), ["hangup UnallocatedNumber"]);
        assert_eq!(with("3"), ["hangup UnallocatedNumber"]);
        // Names are case-sensitive.
        let upper = show(&route_with("5000", "default", &[("IVR_CHOICE", "1")]));
        assert_eq!(upper[0], "answer");
    }

    #[test]
    fn messages() {
        let msg = |to: &str| TextMessage {
            endpoint: "sofia".into(),
            profile: "internal".into(),
            tenant: "example.com".into(),
            from: "1001@example.com".into(),
            to: to.into(),
            content_type: "text/plain".into(),
            body: "hi".into(),
            network_addr: String::new(),
        };
        let show = |d: MessageDecision| match d {
            MessageDecision::Forward(t) => format!("forward {t}"),
            MessageDecision::Reply(t) => format!("reply {t}"),
            MessageDecision::Drop => "drop".into(),
        };
        assert_eq!(
            show(route_message(&msg("1000@example.com"))),
            "forward user/1000@example.com"
        );
        assert_eq!(
            show(route_message(&msg("1019"))),
            "forward user/1019@example.com"
        );
        assert_eq!(
            show(route_message(&msg("1020@example.com"))),
            "reply no such user: 1020"
        );
        assert_eq!(
            show(route_message(&msg("bob@x@y"))),
            "reply no such user: bob"
        );
        assert_eq!(show(route_message(&msg(""))), "reply no such user: ");
    }
}
