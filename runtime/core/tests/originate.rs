//! The originate engine driven by fake legs on a virtual clock: a base
//! `Instant` plus whole seconds, no sleeping, no runtime. Every test asserts
//! the exact sequence of outputs, rendered as short strings:
//! `resolve <leg> <endpoint>/<data>`, `hangup <leg> <CAUSE>`, `ring`,
//! `early <leg>`, `answered <leg>`, `failed <CAUSE>`.

use std::time::{Duration, Instant};

use dialtone_core::dialstring::{Branch, Dialstring, Group, Leg, Vars};
use dialtone_core::originate::{
    Input, LegId, Originate, OriginateError, OriginateOptions, Outcome, Output, Resolution,
    DEFAULT_MAX_DEPTH, DEPTH_EXCEEDED_CAUSE,
};
use dialtone_core::HangupCause::{
    self, CallRejected, ExchangeRoutingError, NoAnswer, NoRouteDestination, NoUserResponse,
    NormalClearing, OriginatorCancel, UserBusy, UserNotRegistered,
};

// ---- a tiny dialstring builder (no quoting, no escapes) -------------------

/// Splits at `sep` outside `<>`, `{}` and `[]`.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '<' | '{' | '[' => depth += 1,
            '>' | '}' | ']' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `a=1,b=2` or `^^:a=1:b=x,y`.
fn vlist(body: &str) -> Vars {
    let (sep, body) = match body.strip_prefix("^^") {
        Some(rest) => {
            let sep = rest.chars().next().expect("separator");
            (sep, &rest[sep.len_utf8()..])
        }
        None => (',', body),
    };
    body.split(sep)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Strips leading `open...close` blocks, collecting their variables.
fn blocks<'a>(mut s: &'a str, open: char, close: char, into: &mut Vars) -> &'a str {
    while let Some(rest) = s.strip_prefix(open) {
        let end = rest.find(close).expect("closing bracket");
        into.extend(vlist(&rest[..end]));
        s = &rest[end + 1..];
    }
    s
}

fn dial(s: &str) -> Dialstring {
    let mut enterprise_vars = Vars::new();
    let rest = blocks(s, '<', '>', &mut enterprise_vars);
    let branches = rest
        .split(":_:")
        .map(|b| {
            let mut global_vars = Vars::new();
            let b = blocks(b, '{', '}', &mut global_vars);
            let groups = split_top(b, '|')
                .into_iter()
                .map(|g| Group {
                    legs: split_top(g, ',')
                        .into_iter()
                        .map(|l| {
                            let mut local_vars = Vars::new();
                            let l = blocks(l, '[', ']', &mut local_vars);
                            let (endpoint, data) = l.split_once('/').expect("type/data");
                            Leg {
                                local_vars,
                                endpoint: endpoint.to_string(),
                                data: data.to_string(),
                            }
                        })
                        .collect(),
                })
                .collect();
            Branch {
                global_vars,
                groups,
            }
        })
        .collect();
    Dialstring {
        enterprise_vars,
        branches,
    }
}

// ---- the harness ----------------------------------------------------------

struct H {
    o: Originate,
    t0: Instant,
    now: Instant,
}

fn start(s: &str) -> H {
    start_with(s, OriginateOptions::default())
}

fn start_with(s: &str, opts: OriginateOptions) -> H {
    let t0 = Instant::now();
    let o = Originate::new(t0, &dial(s), opts).expect("valid dialstring");
    H { o, t0, now: t0 }
}

fn render(o: &Output) -> String {
    match o {
        Output::Resolve {
            leg,
            endpoint,
            data,
            ..
        } => format!("resolve {} {endpoint}/{data}", leg.0),
        Output::Hangup { leg, cause } => format!("hangup {} {cause}", leg.0),
        Output::RingReady => "ring".to_string(),
        Output::EarlyMedia { leg } => format!("early {}", leg.0),
        Output::Answered { leg } => format!("answered {}", leg.0),
        Output::Failed { cause } => format!("failed {cause}"),
    }
}

impl H {
    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.o.poll_output())
            .map(|o| render(&o))
            .collect()
    }

    /// Moves the virtual clock to `secs` after the start.
    fn at(&mut self, secs: u64) -> &mut Self {
        self.now = self.t0 + Duration::from_secs(secs);
        self
    }

    fn feed(&mut self, input: Input) -> Vec<String> {
        self.o.handle_input(self.now, input);
        self.drain()
    }

    /// Seconds from the start to the next timer.
    fn next_timer(&self) -> Option<u64> {
        self.o.poll_timeout().map(|t| (t - self.t0).as_secs())
    }

    /// Jumps to the next timer and fires it.
    fn fire(&mut self) -> Vec<String> {
        self.now = self.o.poll_timeout().expect("a timer");
        self.feed(Input::Timeout)
    }

    fn created(&mut self, legs: &[u32]) {
        for &n in legs {
            assert_eq!(self.feed(created(n)), Vec::<String>::new(), "created {n}");
        }
    }
}

fn created(n: u32) -> Input {
    Input::Resolved {
        leg: LegId(n),
        resolution: Resolution::Created,
    }
}
fn unresolvable(n: u32, cause: HangupCause) -> Input {
    Input::Resolved {
        leg: LegId(n),
        resolution: Resolution::Failed(cause),
    }
}
fn nested(n: u32, s: &str) -> Input {
    Input::Resolved {
        leg: LegId(n),
        resolution: Resolution::Nested(dial(s)),
    }
}
fn progress(n: u32) -> Input {
    Input::Progress { leg: LegId(n) }
}
fn early(n: u32) -> Input {
    Input::EarlyMedia { leg: LegId(n) }
}
fn answer(n: u32) -> Input {
    Input::Answered { leg: LegId(n) }
}
fn fail(n: u32, cause: HangupCause) -> Input {
    Input::Failed {
        leg: LegId(n),
        cause,
    }
}

const NONE: [&str; 0] = [];

// ---- simultaneous ring ----------------------------------------------------

#[test]
fn simultaneous_ring_first_answer_wins_losers_lose_race() {
    let mut h = start("{ignore_early_media=true}a/1,a/2,a/3");
    assert_eq!(
        h.drain(),
        ["resolve 0 a/1", "resolve 1 a/2", "resolve 2 a/3"]
    );
    h.created(&[0, 1, 2]);
    assert_eq!(h.feed(progress(2)), ["ring"]);
    assert_eq!(h.feed(progress(0)), NONE, "ring-ready is sent once");
    assert_eq!(
        h.at(3).feed(answer(1)),
        ["hangup 0 LOSE_RACE", "hangup 2 LOSE_RACE", "answered 1"]
    );
    assert!(h.o.is_done());
    assert_eq!(h.o.outcome(), Some(Outcome::Answered(LegId(1))));
    assert_eq!(h.o.winner(), Some(LegId(1)));
    assert_eq!(h.o.poll_timeout(), None);
    let w = h.o.leg(LegId(1)).expect("winner");
    assert_eq!((w.endpoint, w.data, w.parent, w.depth), ("a", "2", None, 0));
    assert_eq!(w.var("ignore_early_media"), Some("true"));
    // A late answer from a loser changes nothing.
    assert_eq!(h.feed(answer(0)), NONE);
    assert_eq!(h.feed(Input::Cancel), NONE);
}

#[test]
fn unknown_and_finished_legs_are_ignored() {
    let mut h = start("a/1,a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    assert_eq!(h.feed(answer(99)), NONE);
    assert_eq!(h.feed(fail(42, UserBusy)), NONE);
    assert_eq!(h.feed(created(7)), NONE);
    assert_eq!(h.feed(fail(0, UserBusy)), NONE);
    assert_eq!(h.feed(fail(0, CallRejected)), NONE, "already ended");
    assert_eq!(h.feed(answer(0)), NONE, "already ended");
    assert_eq!(h.feed(created(0)), NONE);
    assert_eq!(h.feed(answer(1)), ["answered 1"]);
}

// ---- failover -------------------------------------------------------------

#[test]
fn failover_on_each_leg_failure_cause() {
    for cause in [UserBusy, CallRejected, UserNotRegistered, NoAnswer] {
        let mut h = start("a/1|b/2");
        assert_eq!(h.drain(), ["resolve 0 a/1"]);
        h.created(&[0]);
        assert_eq!(h.feed(fail(0, cause)), ["resolve 1 b/2"], "{cause}");
        h.created(&[1]);
        assert_eq!(h.feed(answer(1)), ["answered 1"], "{cause}");
    }
}

#[test]
fn failover_on_resolution_failure() {
    let mut h = start("sofia/internal/1000|b/2");
    assert_eq!(h.drain(), ["resolve 0 sofia/internal/1000"]);
    assert_eq!(
        h.feed(unresolvable(0, UserNotRegistered)),
        ["resolve 1 b/2"]
    );
    assert_eq!(h.feed(answer(1)), ["answered 1"], "answer implies created");
}

#[test]
fn failover_on_nested_failure() {
    let mut h = start("user/1000|b/2");
    assert_eq!(h.drain(), ["resolve 0 user/1000"]);
    assert_eq!(h.feed(nested(0, "x/1")), ["resolve 1 x/1"]);
    h.created(&[1]);
    assert_eq!(h.feed(fail(1, UserBusy)), ["resolve 2 b/2"]);
    assert_eq!(h.feed(answer(2)), ["answered 2"]);
}

#[test]
fn group_fails_only_when_all_its_legs_failed_and_last_cause_wins() {
    let mut h = start("a/1,a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.feed(fail(1, UserBusy)), NONE);
    assert_eq!(h.feed(fail(0, CallRejected)), ["resolve 2 b/3"]);
    assert_eq!(
        h.feed(unresolvable(2, UserNotRegistered)),
        ["failed USER_NOT_REGISTERED"]
    );
    assert_eq!(h.o.outcome(), Some(Outcome::Failed(UserNotRegistered)));
    assert_eq!(h.o.winner(), None);
}

// ---- timers ---------------------------------------------------------------

#[test]
fn leg_timeout_hangs_up_that_leg_and_failover_continues() {
    let mut h = start("[leg_timeout=10]a/1|b/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    h.created(&[0]);
    assert_eq!(h.feed(progress(0)), ["ring"]);
    assert_eq!(h.next_timer(), Some(10));
    assert_eq!(h.fire(), ["hangup 0 ALLOTTED_TIMEOUT", "resolve 1 b/2"]);
    assert_eq!(h.next_timer(), Some(70), "group timer restarted at 10 s");
    assert_eq!(h.at(12).feed(answer(1)), ["answered 1"]);
}

#[test]
fn leg_timeout_leaves_the_other_legs_of_the_group_ringing() {
    let mut h = start("[leg_timeout=5]a/1,a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.fire(), ["hangup 0 ALLOTTED_TIMEOUT"]);
    assert_eq!(h.at(7).feed(fail(1, NoAnswer)), ["resolve 2 b/3"]);
}

#[test]
fn all_legs_alloted_timeout_ends_with_that_cause() {
    let mut h = start("{leg_timeout=5}a/1,a/2");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(
        h.fire(),
        [
            "hangup 0 ALLOTTED_TIMEOUT",
            "hangup 1 ALLOTTED_TIMEOUT",
            "failed ALLOTTED_TIMEOUT"
        ]
    );
}

#[test]
fn originate_timeout_stops_failover() {
    let mut h = start("{originate_timeout=20}a/1,a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.next_timer(), Some(20));
    assert_eq!(
        h.fire(),
        [
            "hangup 0 NO_ANSWER",
            "hangup 1 NO_ANSWER",
            "failed NO_ANSWER"
        ]
    );
    assert!(h.o.is_done());
    assert_eq!(h.o.poll_timeout(), None);
    assert_eq!(
        h.at(100).feed(Input::Timeout),
        NONE,
        "b/3 is never resolved"
    );
}

#[test]
fn originate_continue_on_timeout_continues_with_a_fresh_timer() {
    let mut h = start("{originate_timeout=20,originate_continue_on_timeout=true}a/1|b/2|c/3");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    h.created(&[0]);
    assert_eq!(h.fire(), ["hangup 0 NO_ANSWER", "resolve 1 b/2"]);
    assert_eq!(h.next_timer(), Some(40));
    h.created(&[1]);
    assert_eq!(h.fire(), ["hangup 1 NO_ANSWER", "resolve 2 c/3"]);
    assert_eq!(h.next_timer(), Some(60));
    assert_eq!(h.fire(), ["hangup 2 NO_ANSWER", "failed NO_ANSWER"]);
}

#[test]
fn group_timer_restarts_for_each_group() {
    let mut h = start("{originate_timeout=30}a/1|b/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.next_timer(), Some(30));
    assert_eq!(h.at(25).feed(fail(0, UserBusy)), ["resolve 1 b/2"]);
    assert_eq!(h.next_timer(), Some(55));
    assert_eq!(h.at(54).feed(Input::Timeout), NONE);
    assert_eq!(h.fire(), ["hangup 1 NO_ANSWER", "failed NO_ANSWER"]);
}

#[test]
fn default_timeout_applies_without_originate_timeout() {
    let opts = OriginateOptions {
        default_timeout: Duration::from_secs(15),
        ..OriginateOptions::default()
    };
    let mut h = start_with("a/1", opts);
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.next_timer(), Some(15));
}

#[test]
fn inputs_after_a_missed_deadline_see_the_timer_first() {
    let mut h = start("{originate_timeout=10}a/1|b/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    h.created(&[0]);
    // The driver's timer fired late; the answer arrives after the deadline.
    assert_eq!(
        h.at(11).feed(answer(0)),
        ["hangup 0 NO_ANSWER", "failed NO_ANSWER"]
    );
}

#[test]
fn progress_timeouts_per_leg() {
    let mut h = start(
        "{ignore_early_media=true,progress_timeout=5}a/1,[leg_progress_timeout=8]a/2,a/3|b/4",
    );
    assert_eq!(
        h.drain(),
        ["resolve 0 a/1", "resolve 1 a/2", "resolve 2 a/3"]
    );
    h.created(&[0, 1, 2]);
    assert_eq!(
        h.at(3).feed(early(2)),
        NONE,
        "early media counts as progress"
    );
    assert_eq!(h.next_timer(), Some(5));
    assert_eq!(h.fire(), ["hangup 0 PROGRESS_TIMEOUT"]);
    assert_eq!(
        h.next_timer(),
        Some(8),
        "leg_progress_timeout beats progress_timeout"
    );
    assert_eq!(h.fire(), ["hangup 1 PROGRESS_TIMEOUT"]);
    assert_eq!(h.next_timer(), Some(60));
    assert_eq!(h.at(9).feed(fail(2, NoUserResponse)), ["resolve 3 b/4"]);
}

#[test]
fn bad_timer_values_are_ignored() {
    let mut h = start(
        "{originate_timeout=abc}[leg_timeout=abc,leg_delay_start=-1,leg_progress_timeout=0]a/1",
    );
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.next_timer(), Some(60));
}

// ---- leg_delay_start ------------------------------------------------------

#[test]
fn leg_delay_start_starts_legs_late() {
    let mut h = start("a/1,[leg_delay_start=5]a/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.next_timer(), Some(5));
    assert_eq!(h.at(4).feed(Input::Timeout), NONE);
    assert_eq!(h.fire(), ["resolve 1 a/2"]);
    assert_eq!(
        h.next_timer(),
        Some(60),
        "the group timer counts from the group start"
    );
}

#[test]
fn all_delayed_legs_move_up_so_the_earliest_starts_at_once() {
    let mut h = start("[leg_delay_start=3]a/1,[leg_delay_start=5]a/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.next_timer(), Some(2));
    assert_eq!(h.fire(), ["resolve 1 a/2"]);
}

#[test]
fn delayed_legs_start_early_when_the_others_have_ended() {
    let mut h = start("a/1,[leg_delay_start=10]a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.at(1).feed(fail(0, UserBusy)), ["resolve 1 a/2"]);
    assert_eq!(h.feed(fail(1, UserBusy)), ["resolve 2 b/3"]);
}

#[test]
fn a_delayed_legs_timeout_counts_from_its_start() {
    let mut h = start("a/1,[leg_delay_start=5,leg_timeout=3]a/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.fire(), ["resolve 1 a/2"]);
    assert_eq!(h.next_timer(), Some(8));
    assert_eq!(h.fire(), ["hangup 1 ALLOTTED_TIMEOUT"]);
}

#[test]
fn a_leg_waiting_for_its_delay_loses_without_a_hangup() {
    let mut h = start("a/1,[leg_delay_start=5]a/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.at(2).feed(answer(0)), ["answered 0"]);
}

// ---- early media ----------------------------------------------------------

#[test]
fn by_default_the_first_early_media_wins() {
    let mut h = start("a/1,a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.feed(early(1)), ["hangup 0 LOSE_RACE", "early 1"]);
    assert!(!h.o.is_done());
    assert_eq!(
        h.o.poll_timeout(),
        None,
        "the originate now waits only for leg 1"
    );
    assert_eq!(h.feed(early(1)), NONE);
    assert_eq!(h.at(100).feed(answer(1)), ["answered 1"]);
}

#[test]
fn an_early_media_winner_that_fails_ends_the_originate_without_failover() {
    let mut h = start("a/1|b/2");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.feed(early(0)), ["early 0"]);
    assert_eq!(h.feed(fail(0, NormalClearing)), ["failed NORMAL_CLEARING"]);
}

#[test]
fn ignore_early_media_true_waits_for_answer() {
    let mut h = start("{ignore_early_media=true}a/1,a/2");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.feed(early(1)), NONE);
    assert_eq!(h.next_timer(), Some(60));
    assert_eq!(h.feed(answer(0)), ["hangup 1 LOSE_RACE", "answered 0"]);
}

#[test]
fn ignore_early_media_ring_ready_turns_early_media_into_ringing_once() {
    let mut h = start("{ignore_early_media=ring_ready}a/1,a/2");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.feed(early(1)), ["ring"]);
    assert_eq!(h.feed(early(0)), NONE);
    assert_eq!(h.feed(progress(0)), NONE);
    assert_eq!(h.feed(answer(0)), ["hangup 1 LOSE_RACE", "answered 0"]);
}

#[test]
fn ignore_early_media_consume_swallows_early_media() {
    let mut h = start("{ignore_early_media=consume}a/1");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.feed(early(0)), NONE);
    assert_eq!(h.feed(progress(0)), ["ring"]);
    assert_eq!(h.feed(answer(0)), ["answered 0"]);
}

#[test]
fn ignore_ring_ready_suppresses_ringing() {
    let mut h = start("{ignore_early_media=true,ignore_ring_ready=true}a/1");
    assert_eq!(h.drain(), ["resolve 0 a/1"]);
    assert_eq!(h.feed(progress(0)), NONE);
    assert_eq!(h.feed(answer(0)), ["answered 0"]);
}

#[test]
fn bridge_early_media_passes_media_through_without_winning() {
    let mut h = start("{bridge_early_media=true}a/1,a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.feed(early(0)), ["early 0"]);
    assert_eq!(h.feed(early(1)), NONE, "one leg's media at a time");
    assert_eq!(h.feed(fail(0, UserBusy)), NONE);
    assert_eq!(h.feed(fail(1, UserBusy)), ["resolve 2 b/3"]);
    assert_eq!(
        h.feed(early(2)),
        ["early 2"],
        "the passed-through leg has ended"
    );
    assert_eq!(h.feed(answer(2)), ["answered 2"]);
}

// ---- fail_on_single_reject --------------------------------------------------

#[test]
fn fail_on_single_reject_true_stops_on_any_failure() {
    let mut h = start("{fail_on_single_reject=true}a/1,a/2|b/3");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    h.created(&[0, 1]);
    assert_eq!(
        h.feed(fail(0, UserNotRegistered)),
        ["hangup 1 NO_ANSWER", "failed USER_NOT_REGISTERED"]
    );
}

#[test]
fn fail_on_single_reject_list_stops_only_on_listed_causes() {
    let s = "{^^:fail_on_single_reject=USER_BUSY,CALL_REJECTED}a/1,a/2,a/3|b/4";
    let mut h = start(s);
    assert_eq!(
        h.drain(),
        ["resolve 0 a/1", "resolve 1 a/2", "resolve 2 a/3"]
    );
    h.created(&[0, 1, 2]);
    assert_eq!(h.feed(fail(0, UserNotRegistered)), NONE);
    assert_eq!(
        h.feed(fail(1, CallRejected)),
        ["hangup 2 NO_ANSWER", "failed CALL_REJECTED"]
    );

    let mut h = start(s);
    h.drain();
    assert_eq!(h.feed(fail(0, UserNotRegistered)), NONE);
    assert_eq!(h.feed(unresolvable(1, NoRouteDestination)), NONE);
    assert_eq!(h.feed(fail(2, NoAnswer)), ["resolve 3 b/4"]);
}

#[test]
fn fail_on_single_reject_negated_list_stops_on_every_other_cause() {
    let mut h = start("{fail_on_single_reject=!NO_ANSWER}a/1,a/2,a/3|b/4");
    assert_eq!(
        h.drain(),
        ["resolve 0 a/1", "resolve 1 a/2", "resolve 2 a/3"]
    );
    h.created(&[0, 1, 2]);
    assert_eq!(h.feed(fail(0, NoAnswer)), NONE);
    assert_eq!(
        h.feed(fail(1, UserBusy)),
        ["hangup 2 NO_ANSWER", "failed USER_BUSY"]
    );
}

// ---- cancel ---------------------------------------------------------------

#[test]
fn originator_cancel_hangs_up_every_leg() {
    let mut h = start("a/1,user/9,[leg_delay_start=5]a/3|b/4");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 user/9"]);
    h.created(&[0]);
    assert_eq!(
        h.feed(nested(1, "x/1,y/2")),
        ["resolve 3 x/1", "resolve 4 y/2"]
    );
    h.created(&[3]);
    // Leg 4 is still being resolved, leg 2 waits for its delay.
    assert_eq!(
        h.at(1).feed(Input::Cancel),
        [
            "hangup 0 ORIGINATOR_CANCEL",
            "hangup 3 ORIGINATOR_CANCEL",
            "hangup 4 ORIGINATOR_CANCEL",
            "failed ORIGINATOR_CANCEL"
        ]
    );
    assert_eq!(h.o.outcome(), Some(Outcome::Failed(OriginatorCancel)));
    assert_eq!(h.o.poll_timeout(), None);
    assert_eq!(h.feed(answer(0)), NONE);
    assert_eq!(h.feed(created(4)), NONE);
    assert_eq!(h.at(100).feed(Input::Timeout), NONE);
}

#[test]
fn originator_cancel_reaches_an_early_media_winner() {
    let mut h = start("a/1,a/2");
    h.drain();
    assert_eq!(h.feed(early(0)), ["hangup 1 LOSE_RACE", "early 0"]);
    assert_eq!(
        h.feed(Input::Cancel),
        ["hangup 0 ORIGINATOR_CANCEL", "failed ORIGINATOR_CANCEL"]
    );
}

// ---- enterprise -----------------------------------------------------------

#[test]
fn enterprise_first_answer_across_branches_wins() {
    let mut h = start("{ignore_early_media=false}a/1,a/2:_:b/3|b/4");
    assert_eq!(
        h.drain(),
        ["resolve 0 a/1", "resolve 1 a/2", "resolve 2 b/3"]
    );
    h.created(&[0, 1, 2]);
    assert_eq!(
        h.feed(early(0)),
        NONE,
        "enterprise forces ignore_early_media=true"
    );
    assert_eq!(h.feed(progress(2)), ["ring"]);
    assert_eq!(h.feed(fail(2, UserBusy)), ["resolve 3 b/4"]);
    assert_eq!(
        h.feed(answer(3)),
        ["hangup 0 LOSE_RACE", "hangup 1 LOSE_RACE", "answered 3"]
    );
}

#[test]
fn enterprise_fails_when_every_branch_failed() {
    let mut h = start("<originate_timeout=10>a/1:_:b/2");
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 b/2"]);
    h.created(&[0, 1]);
    assert_eq!(h.at(3).feed(fail(1, UserBusy)), NONE);
    assert_eq!(h.next_timer(), Some(10), "<...> applies to every branch");
    // The last branch in dialstring order gives the cause.
    assert_eq!(h.fire(), ["hangup 0 NO_ANSWER", "failed USER_BUSY"]);
}

// ---- nesting --------------------------------------------------------------

#[test]
fn nested_originate_with_failover_and_inherited_variables() {
    let mut h = start("[foo=outer,bar=outer]user/1000|b/9");
    assert_eq!(h.drain(), ["resolve 0 user/1000"]);
    assert_eq!(
        h.feed(nested(0, "{foo=inner}x/1,y/2|z/3")),
        ["resolve 1 x/1", "resolve 2 y/2"]
    );
    let x = h.o.leg(LegId(1)).expect("leg 1");
    assert_eq!((x.var("foo"), x.var("bar")), (Some("inner"), Some("outer")));
    assert_eq!((x.parent, x.depth), (Some(LegId(0)), 1));
    h.created(&[1, 2]);
    assert_eq!(h.feed(fail(1, UserBusy)), NONE);
    assert_eq!(h.feed(fail(2, NoAnswer)), ["resolve 3 z/3"]);
    assert_eq!(h.feed(progress(3)), ["ring"]);
    assert_eq!(h.feed(answer(3)), ["answered 3"]);
    assert_eq!(h.o.winner(), Some(LegId(3)));
    let w = h.o.leg(LegId(3)).expect("winner");
    assert_eq!(
        (w.endpoint, w.data, w.var("bar")),
        ("z", "3", Some("outer"))
    );
}

#[test]
fn nested_answer_bubbles_up_and_beats_outer_legs() {
    let mut h = start("{ignore_early_media=true}user/1000,c/5");
    assert_eq!(h.drain(), ["resolve 0 user/1000", "resolve 1 c/5"]);
    h.created(&[1]);
    assert_eq!(
        h.feed(nested(0, "x/1,y/2")),
        ["resolve 2 x/1", "resolve 3 y/2"]
    );
    h.created(&[2, 3]);
    assert_eq!(
        h.feed(answer(3)),
        ["hangup 2 LOSE_RACE", "hangup 1 LOSE_RACE", "answered 3"]
    );
}

#[test]
fn nested_early_media_wins_the_outer_race() {
    let mut h = start("user/1000,c/5");
    assert_eq!(h.drain(), ["resolve 0 user/1000", "resolve 1 c/5"]);
    assert_eq!(
        h.feed(nested(0, "x/1,y/2")),
        ["resolve 2 x/1", "resolve 3 y/2"]
    );
    assert_eq!(
        h.feed(early(2)),
        ["hangup 3 LOSE_RACE", "hangup 1 LOSE_RACE", "early 2"]
    );
    assert_eq!(h.feed(answer(2)), ["answered 2"]);
}

#[test]
fn outer_group_timer_hangs_up_nested_legs() {
    let mut h = start("{originate_timeout=10}user/1000|b/2");
    assert_eq!(h.drain(), ["resolve 0 user/1000"]);
    assert_eq!(
        h.at(2).feed(nested(0, "x/1,y/2")),
        ["resolve 1 x/1", "resolve 2 y/2"]
    );
    assert_eq!(h.next_timer(), Some(10));
    assert_eq!(
        h.fire(),
        [
            "hangup 1 NO_ANSWER",
            "hangup 2 NO_ANSWER",
            "failed NO_ANSWER"
        ]
    );
}

#[test]
fn a_malformed_nested_dialstring_fails_the_leg() {
    let mut h = start("user/1000|b/2");
    h.drain();
    let empty = Dialstring {
        enterprise_vars: Vars::new(),
        branches: Vec::new(),
    };
    assert_eq!(
        h.feed(Input::Resolved {
            leg: LegId(0),
            resolution: Resolution::Nested(empty)
        }),
        ["resolve 1 b/2"]
    );
    assert_eq!(h.feed(fail(1, UserBusy)), ["failed USER_BUSY"]);
}

/// A resolver that always answers `user/1000` with `user/1000`.
fn run_self_loop(opts: OriginateOptions) -> Vec<String> {
    let t0 = Instant::now();
    let mut o = Originate::new(t0, &dial("user/1000"), opts).expect("valid");
    let mut log = Vec::new();
    for _ in 0..1000 {
        let Some(out) = o.poll_output() else { break };
        log.push(render(&out));
        if let Output::Resolve { leg, .. } = out {
            o.handle_input(t0, nested(leg.0, "user/1000"));
        }
    }
    assert!(o.is_done());
    log
}

#[test]
fn recursion_limit_ends_a_self_referencing_directory() {
    assert_eq!(DEPTH_EXCEEDED_CAUSE, ExchangeRoutingError);
    let log = run_self_loop(OriginateOptions::default());
    let mut expected: Vec<String> = (0..=DEFAULT_MAX_DEPTH)
        .map(|n| format!("resolve {n} user/1000"))
        .collect();
    expected.push("failed EXCHANGE_ROUTING_ERROR".to_string());
    assert_eq!(log, expected);

    let opts = OriginateOptions {
        max_depth: 2,
        ..OriginateOptions::default()
    };
    assert_eq!(
        run_self_loop(opts),
        [
            "resolve 0 user/1000",
            "resolve 1 user/1000",
            "resolve 2 user/1000",
            "failed EXCHANGE_ROUTING_ERROR"
        ]
    );

    let opts = OriginateOptions {
        max_depth: 2,
        depth: 2,
        ..OriginateOptions::default()
    };
    assert_eq!(
        run_self_loop(opts),
        ["resolve 0 user/1000", "failed EXCHANGE_ROUTING_ERROR"]
    );
}

// ---- limits and errors ----------------------------------------------------

#[test]
fn construction_errors() {
    let t0 = Instant::now();
    let opts = OriginateOptions::default;
    let empty = Dialstring {
        enterprise_vars: Vars::new(),
        branches: Vec::new(),
    };
    assert_eq!(
        Originate::new(t0, &empty, opts()).err(),
        Some(OriginateError::Empty)
    );
    let many = (0..129)
        .map(|n| format!("a/{n}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        Originate::new(t0, &dial(&many), opts()).err(),
        Some(OriginateError::TooManyPeers {
            level: "legs",
            count: 129
        })
    );
    let max = (0..128)
        .map(|n| format!("a/{n}"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(Originate::new(t0, &dial(&max), opts()).is_ok());
    let deep = OriginateOptions { depth: 9, ..opts() };
    let err = Originate::new(t0, &dial("a/1"), deep).err();
    assert_eq!(
        err,
        Some(OriginateError::DepthExceeded {
            depth: 9,
            max_depth: 8
        })
    );
    assert_eq!(err.map(|e| e.cause()), Some(ExchangeRoutingError));
}

#[test]
fn legs_beyond_max_legs_fail_with_switch_congestion() {
    let opts = OriginateOptions {
        max_legs: 2,
        ..OriginateOptions::default()
    };
    let mut h = start_with("a/1,a/2,a/3|b/4", opts);
    assert_eq!(h.drain(), ["resolve 0 a/1", "resolve 1 a/2"]);
    assert_eq!(h.feed(fail(0, UserBusy)), NONE);
    assert_eq!(h.feed(fail(1, UserBusy)), ["failed SWITCH_CONGESTION"]);
}

#[test]
fn variable_scopes() {
    let mut h = start("<x=ent,y=ent,z=ent>{x=glob}[y=loc,x=loc]a/1");
    h.drain();
    let v = h.o.leg(LegId(0)).expect("leg");
    assert_eq!(
        (v.var("x"), v.var("y"), v.var("z")),
        (Some("glob"), Some("loc"), Some("ent"))
    );

    let mut h = start("{x=glob,local_var_clobber=true}[x=loc]a/1");
    h.drain();
    assert_eq!(h.o.leg(LegId(0)).and_then(|v| v.var("X")), Some("loc"));
}

// ---- robustness -----------------------------------------------------------

/// Random inputs in random order: never a panic, and the outputs keep their
/// promises.
#[test]
fn random_input_orders_keep_the_invariants() {
    let strings = [
        "a/1,a/2|b/3",
        "{ignore_early_media=true,leg_timeout=4}a/1,[leg_delay_start=2]a/2|b/3,b/4",
        "a/1:_:{originate_timeout=5,originate_continue_on_timeout=true}b/2|b/3",
        "{fail_on_single_reject=USER_BUSY}user/1,a/2|a/3",
        "{bridge_early_media=true}user/1|user/2",
        "{ignore_early_media=ring_ready,progress_timeout=3}a/1,a/2,a/3",
    ];
    let causes = [UserBusy, NoAnswer, CallRejected, NormalClearing];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut answered, mut failed, mut nested_legs) = (0, 0, 0);
    for round in 0..400 {
        let s = strings[round % strings.len()];
        let t0 = Instant::now();
        let mut now = t0;
        let mut o = Originate::new(now, &dial(s), OriginateOptions::default()).expect("valid");
        let mut resolved = Vec::new();
        let mut hung = Vec::new();
        let mut finals = 0;
        for _ in 0..200 {
            while let Some(out) = o.poll_output() {
                assert_eq!(finals, 0, "{s}: output after the outcome: {out:?}");
                match out {
                    Output::Resolve { leg, .. } => resolved.push(leg),
                    Output::Hangup { leg, .. } => {
                        assert!(resolved.contains(&leg), "{s}: hangup of unknown {leg}");
                        assert!(!hung.contains(&leg), "{s}: {leg} hung up twice");
                        hung.push(leg);
                    }
                    Output::Answered { leg } => {
                        assert!(!hung.contains(&leg), "{s}: winner {leg} was hung up");
                        finals += 1;
                        answered += 1;
                    }
                    Output::Failed { .. } => {
                        finals += 1;
                        failed += 1;
                    }
                    Output::RingReady | Output::EarlyMedia { .. } => {}
                }
            }
            if o.is_done() {
                break;
            }
            now += Duration::from_millis(rand(3000));
            let leg = LegId(rand(12) as u32);
            let cause = causes[rand(causes.len() as u64) as usize];
            let input = match rand(9) {
                0 => created(leg.0),
                1 => Input::Progress { leg },
                2 => Input::EarlyMedia { leg },
                3 => Input::Answered { leg },
                4 => Input::Failed { leg, cause },
                5 => unresolvable(leg.0, cause),
                6 => nested(leg.0, "x/1,y/2|z/3"),
                7 if rand(20) == 0 => Input::Cancel,
                _ => Input::Timeout,
            };
            o.handle_input(now, input);
            if let Some(t) = o.poll_timeout() {
                assert!(t >= t0, "{s}: timer in the past");
            }
        }
        if o.is_done() {
            assert_eq!(finals, 1, "{s}");
        }
        nested_legs += resolved
            .iter()
            .filter(|&&l| o.leg(l).is_some_and(|v| v.depth > 0))
            .count();
    }
    // The rounds really explored the engine.
    assert!(
        answered > 50 && failed > 50 && nested_legs > 50,
        "{answered} {failed} {nested_legs}"
    );
}
