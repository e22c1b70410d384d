//! The originate engine: FreeSWITCH's `bridge`/`originate` rules as a sans-IO
//! state machine.
//!
//! [`Originate`] takes a parsed [`Dialstring`] and decides what happens to
//! every leg: when it is started, which leg wins, which legs are hung up and
//! with what cause, what the caller is shown (ringing, early media) and how the
//! attempt ends. The rules follow `switch_ivr_originate.c` as summarised in
//! `freeswitch-semantics.md` §1.
//!
//! **What it owns: the rules.** **What it does not own:** creating channels,
//! resolving endpoints, reading the directory (`user/`, `group/`), sockets,
//! timers and the clock. It is one `&mut` value in the style of `quinn-proto`
//! and `str0m`: the driver
//!
//! 1. drains [`Originate::poll_output`] and acts on every [`Output`]
//!    (create a leg, hang one up, tell the caller something);
//! 2. feeds what happens with [`Originate::handle_input`], passing the current
//!    time;
//! 3. arms one timer for [`Originate::poll_timeout`] and feeds
//!    [`Input::Timeout`] when it passes.
//!
//! Every call to `handle_input` first runs the timers that are due at `now`,
//! so an answer that arrives after the group timer expired loses even if the
//! driver's timer fired late. Inputs for unknown or finished legs, and all
//! inputs after the outcome, are ignored; no input order makes it panic.
//!
//! # Structure
//!
//! A dialstring runs as a *frame*: its `:_:` branches start together, each a
//! full standard originate that tries its `|` groups in order and rings the
//! `,` legs of a group together. A leg the driver resolves to
//! [`Resolution::Nested`] (how `user/` and `group/` work) runs a nested frame
//! inside the same engine: its legs get their own [`LegId`]s and
//! [`Output::Resolve`]s, its answer is the outer leg's answer and its failure
//! is the outer leg's failure with the nested cause. Nesting deeper than
//! [`OriginateOptions::max_depth`] fails the leg with [`DEPTH_EXCEEDED_CAUSE`]
//! (`EXCHANGE_ROUTING_ERROR`, what SIP calls "too many hops", 483).
//!
//! # Variables
//!
//! A leg's effective variables are, lowest precedence first: the outer leg's
//! variables (nested frames only), `<...>`, then `[...]` and `{...}` where
//! `{...}` wins unless `local_var_clobber=true`. Names compare
//! case-insensitively, as FreeSWITCH's event headers do. Per-leg options
//! (`leg_timeout`, `leg_progress_timeout`, `progress_timeout`,
//! `leg_delay_start`) come from the leg's effective variables; originate-wide
//! options (`originate_timeout`, `ignore_early_media`, `bridge_early_media`,
//! `ignore_ring_ready`, `fail_on_single_reject`, `hangup_on_single_reject`,
//! `originate_continue_on_timeout`, `local_var_clobber`) from the branch: its
//! `{...}`, then `<...>`, then the outer leg's variables. Times are whole
//! seconds; a value that is not a positive whole number (`leg_timeout=abc`,
//! `0`, `-5`, `10s`) is ignored and the default applies. Booleans follow
//! `switch_true`: `true`, `yes`, `on`, `t`, `enabled`, `enable`, `allow` or a
//! non-zero number.
//!
//! # Rules
//!
//! - **Answer.** The first leg to answer wins ([`Output::Answered`]; the
//!   winner is not hung up) and every other leg, in every branch, is hung up
//!   with `LOSE_RACE`.
//! - **Early media** (`ignore_early_media`, per branch):
//!   - unset or false: the first leg with early media *wins by early media*:
//!     the other legs get `LOSE_RACE`, [`Output::EarlyMedia`] names it, its
//!     timers and the group timer stop (FreeSWITCH's originate has returned at
//!     that point), and the engine then waits only for that leg: its answer
//!     gives [`Output::Answered`], its failure [`Output::Failed`] with its
//!     cause and *no* failover;
//!   - `true`: early media is only progress; the engine waits for an answer;
//!   - `ring_ready`: early media is turned into ringing ([`Output::RingReady`]);
//!   - `consume`: early media is swallowed;
//!   - `bridge_early_media=true` (when `ignore_early_media` is unset or false):
//!     early media does not win but is passed through: [`Output::EarlyMedia`]
//!     for the first leg with early media, and for a leg whose early media
//!     begins after that one has ended (e.g. in the next group).
//!
//!   Enterprise branches (`:_:`) always behave as `ignore_early_media=true`.
//! - **Ringing.** The first ringing (`Progress`) of any leg gives one
//!   [`Output::RingReady`], as FreeSWITCH passes ring-ready to the caller,
//!   unless `ignore_ring_ready=true`. It is sent at most once per originate.
//! - **Groups.** A group's legs start together (each after its
//!   `leg_delay_start`); when all of them have failed the next group starts.
//!   If every started leg has ended while some wait for their delay, the
//!   earliest waiting legs start at once and the others move up by the same
//!   amount, as FreeSWITCH does. When no group is left the branch fails with
//!   the cause of its last failed leg (legs hung up by the group timer count as
//!   `NO_ANSWER`).
//! - **Group timer.** `originate_timeout` (else
//!   [`OriginateOptions::default_timeout`]) restarts with every group. When it
//!   fires the group's legs are hung up with `NO_ANSWER` and the branch stops
//!   with `NO_ANSWER`, unless `originate_continue_on_timeout=true`, in which
//!   case the next group starts.
//! - **Leg timers**, counted from the leg's start: `leg_timeout` hangs up the
//!   leg with `ALLOTTED_TIMEOUT`; `leg_progress_timeout` (else
//!   `progress_timeout`) hangs it up with `PROGRESS_TIMEOUT` unless it has rung
//!   or sent early media by then. Either is an ordinary leg failure, so
//!   failover continues. (FreeSWITCH treats `progress_timeout` as one timer
//!   for the whole group; here it is a per-leg default.) When a group timer and
//!   a leg timer are due at the same instant the group timer goes first.
//! - **`fail_on_single_reject`**: `true` (any cause), a list of cause names or
//!   numbers (`USER_BUSY,CALL_REJECTED`), or a list negated by a leading `!`
//!   (`!NO_ANSWER`: every cause except these). A matching leg failure stops the
//!   branch with that cause and no failover; its other legs are hung up with
//!   `NO_ANSWER`, as FreeSWITCH does (it takes its timeout path). This includes
//!   failures from `leg_timeout`. `hangup_on_single_reject=true` means
//!   `fail_on_single_reject=true`.
//! - **Cancel.** [`Input::Cancel`] hangs up every leg that was resolved or is
//!   being resolved with `ORIGINATOR_CANCEL` and ends with
//!   [`Output::Failed`] `ORIGINATOR_CANCEL`.
//! - **Enterprise.** Branches run independently (their own timers and
//!   `fail_on_single_reject`); the originate fails when all of them have
//!   failed, with the cause of the last branch in dialstring order whose cause
//!   is not `LOSE_RACE` or `NO_PICKUP` (as `switch_ivr_enterprise_originate`
//!   picks it).
//! - **Limits.** Each level holds at most [`MAX_PEERS`] entries
//!   ([`OriginateError::TooManyPeers`]). At most
//!   [`OriginateOptions::max_legs`] legs are resolved over the engine's life;
//!   further legs fail with [`TOO_MANY_LEGS_CAUSE`] without being resolved,
//!   which bounds nested fan-out.
//!
//! Hang-ups are sent for every leg the engine asked to resolve and that has not
//! ended, including legs whose [`Input::Resolved`] has not arrived yet: the
//! driver must tear down whatever it creates for such a leg. Nested legs
//! themselves have no channel: they get no [`Output::Hangup`], their inner legs
//! do, with the same cause.
//!
//! Not handled here: `originate_retries`, `group_confirm_*`,
//! `monitor_early_media_*`, `return_ring_ready`, ringback generation and the
//! result variables (`originate_disposition`, `DIALSTATUS`); the driver sets
//! the latter from the [`Outcome`].

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::cause::HangupCause;
use crate::dialstring::{Branch, Dialstring, Vars, MAX_PEERS};

/// The group timer when neither `originate_timeout` nor the A-leg's
/// `call_timeout` is set (`SWITCH_DEFAULT_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default [`OriginateOptions::max_depth`].
pub const DEFAULT_MAX_DEPTH: u32 = 8;

/// Default [`OriginateOptions::max_legs`].
pub const DEFAULT_MAX_LEGS: u32 = 4096;

/// The cause of a leg whose nested originate would exceed
/// [`OriginateOptions::max_depth`]: `EXCHANGE_ROUTING_ERROR` (SIP 483, too
/// many hops).
pub const DEPTH_EXCEEDED_CAUSE: HangupCause = HangupCause::ExchangeRoutingError;

/// The cause of a leg beyond [`OriginateOptions::max_legs`]:
/// `SWITCH_CONGESTION`.
pub const TOO_MANY_LEGS_CAUSE: HangupCause = HangupCause::SwitchCongestion;

/// One leg of an originate, nested legs included. Legs are numbered from 0 in
/// the order the engine creates them: a group's legs when the group starts, in
/// dialstring order; the first groups of all `:_:` branches at construction,
/// in branch order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u32);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg#{}", self.0)
    }
}

/// How an originate is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginateOptions {
    /// The group timer when `originate_timeout` is not set: the A-leg's
    /// `call_timeout`, or [`DEFAULT_TIMEOUT`].
    pub default_timeout: Duration,
    /// The deepest nesting of `user/`, `group/` or `loopback/` originates;
    /// a leg whose nested originate would be deeper fails with
    /// [`DEPTH_EXCEEDED_CAUSE`].
    pub max_depth: u32,
    /// The nesting level of this originate (0 for one started by a call).
    pub depth: u32,
    /// The most legs resolved over the engine's life, nested legs included;
    /// further legs fail with [`TOO_MANY_LEGS_CAUSE`].
    pub max_legs: u32,
}

impl Default for OriginateOptions {
    fn default() -> Self {
        OriginateOptions {
            default_timeout: DEFAULT_TIMEOUT,
            max_depth: DEFAULT_MAX_DEPTH,
            depth: 0,
            max_legs: DEFAULT_MAX_LEGS,
        }
    }
}

/// Why a dialstring cannot be originated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    /// No branch, a branch without groups or a group without legs.
    #[error("the dialstring has an empty branch, group or leg list")]
    Empty,
    /// More than [`MAX_PEERS`] entries at one level.
    #[error("{count} {level} in one list; at most {max} are allowed", max = MAX_PEERS)]
    TooManyPeers {
        /// `"branches"`, `"groups"` or `"legs"`.
        level: &'static str,
        /// How many there were.
        count: usize,
    },
    /// [`OriginateOptions::depth`] is beyond [`OriginateOptions::max_depth`].
    #[error("originate nesting depth {depth} exceeds the limit of {max_depth}")]
    DepthExceeded {
        /// The requested depth.
        depth: u32,
        /// The limit.
        max_depth: u32,
    },
}

impl OriginateError {
    /// The cause a leg gets when its nested dialstring has this error:
    /// `DESTINATION_OUT_OF_ORDER` for a malformed dialstring (what
    /// FreeSWITCH answers for an empty one), [`DEPTH_EXCEEDED_CAUSE`] for
    /// depth.
    pub fn cause(&self) -> HangupCause {
        match self {
            OriginateError::Empty | OriginateError::TooManyPeers { .. } => {
                HangupCause::DestinationOutOfOrder
            }
            OriginateError::DepthExceeded { .. } => DEPTH_EXCEEDED_CAUSE,
        }
    }
}

/// What became of an [`Output::Resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The endpoint created a channel for the leg and will report its
    /// progress with [`Input::Progress`], [`Input::EarlyMedia`],
    /// [`Input::Answered`] and [`Input::Failed`].
    Created,
    /// The leg could not be created (e.g. `USER_NOT_REGISTERED`).
    Failed(HangupCause),
    /// The leg expands into a nested originate (`user/`, `group/`): the
    /// directory's dial-string, parsed. It runs inside this engine with the
    /// leg's variables as lowest-precedence defaults.
    Nested(Dialstring),
}

/// What the driver tells the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The answer to an [`Output::Resolve`].
    Resolved {
        /// The leg.
        leg: LegId,
        /// What became of it.
        resolution: Resolution,
    },
    /// The leg is ringing (180). Implies [`Resolution::Created`].
    Progress {
        /// The leg.
        leg: LegId,
    },
    /// The leg has early media (183 with SDP). Implies
    /// [`Resolution::Created`].
    EarlyMedia {
        /// The leg.
        leg: LegId,
    },
    /// The leg answered. Implies [`Resolution::Created`].
    Answered {
        /// The leg.
        leg: LegId,
    },
    /// The leg ended before answering.
    Failed {
        /// The leg.
        leg: LegId,
        /// Why.
        cause: HangupCause,
    },
    /// The caller hung up.
    Cancel,
    /// [`Originate::poll_timeout`] has passed.
    Timeout,
}

/// What the engine asks of the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Create the leg `endpoint/data` with these variables, then answer with
    /// [`Input::Resolved`].
    Resolve {
        /// The new leg.
        leg: LegId,
        /// The endpoint, e.g. `sofia` or `user`.
        endpoint: String,
        /// Everything after the first `/`.
        data: String,
        /// The leg's effective variables (see the module docs).
        vars: Vars,
    },
    /// Hang up (or stop creating) this leg.
    Hangup {
        /// The leg.
        leg: LegId,
        /// `LOSE_RACE`, `ORIGINATOR_CANCEL`, `NO_ANSWER`, `ALLOTTED_TIMEOUT`
        /// or `PROGRESS_TIMEOUT`, as the rules say.
        cause: HangupCause,
    },
    /// Tell the caller the call is ringing. Sent at most once.
    RingReady,
    /// Pass this leg's early media to the caller. The leg won by early media
    /// (`ignore_early_media` unset) or `bridge_early_media=true` passes it
    /// through.
    EarlyMedia {
        /// The leg whose channel carries the media (the innermost leg when
        /// nested).
        leg: LegId,
    },
    /// Final success: bridge the caller to this leg, which stays up. It is
    /// the leg whose channel answered (the innermost leg when nested).
    Answered {
        /// The winner.
        leg: LegId,
    },
    /// Final failure.
    Failed {
        /// Why the originate failed.
        cause: HangupCause,
    },
}

/// How an originate ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This leg answered and won.
    Answered(LegId),
    /// Every leg failed, or the caller cancelled.
    Failed(HangupCause),
}

/// What the engine knows about one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegView<'a> {
    /// The endpoint, e.g. `sofia`.
    pub endpoint: &'a str,
    /// Everything after the first `/`.
    pub data: &'a str,
    /// The effective variables.
    pub vars: &'a Vars,
    /// For a leg of a nested originate, the leg that expanded into it.
    pub parent: Option<LegId>,
    /// The nesting depth of the originate the leg belongs to.
    pub depth: u32,
}

impl<'a> LegView<'a> {
    /// The value of an effective variable (names compare case-insensitively).
    pub fn var(&self, name: &str) -> Option<&'a str> {
        lookup(self.vars, name)
    }
}

/// The originate state machine. See the module docs.
#[derive(Debug)]
pub struct Originate {
    opts: OriginateOptions,
    legs: Vec<LegSlot>,
    frames: Vec<FrameSlot>,
    branches: Vec<BranchSlot>,
    out: VecDeque<Output>,
    events: VecDeque<(LegId, Event)>,
    scratch: Vec<usize>,
    resolved_count: u32,
    ring_sent: bool,
    passthrough: Option<LegId>,
    outcome: Option<Outcome>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegState {
    /// Waiting for `leg_delay_start`.
    Pending,
    /// Started; the driver has not created a channel yet.
    Resolving,
    /// The driver created a channel.
    Created,
    /// Running a nested frame.
    Nested(usize),
    Answered,
    Ended,
}

impl LegState {
    fn live(self) -> bool {
        matches!(
            self,
            LegState::Resolving | LegState::Created | LegState::Nested(_)
        )
    }
}

#[derive(Debug)]
struct LegSlot {
    branch: usize,
    group: usize,
    index: usize,
    vars: Vars,
    state: LegState,
    /// An `Output::Resolve` was sent.
    announced: bool,
    /// Early media was seen.
    early: bool,
    start_at: Instant,
    leg_timeout: Option<Duration>,
    progress_timeout: Option<Duration>,
    deadline: Option<Instant>,
    progress_deadline: Option<Instant>,
}

#[derive(Debug)]
struct FrameSlot {
    parent: Option<LegId>,
    depth: u32,
    /// Inherited variables overlaid with `<...>`.
    base: Vars,
    branches: Range<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BranchState {
    Running,
    Failed(HangupCause),
    /// Won, lost to another branch, or stopped from outside.
    Over,
}

#[derive(Debug)]
struct BranchSlot {
    frame: usize,
    ast: Branch,
    /// The frame's base overlaid with `{...}`: where branch options live.
    base: Vars,
    opts: BranchOpts,
    group: usize,
    legs: Range<usize>,
    deadline: Option<Instant>,
    early_winner: Option<LegId>,
    last_cause: Option<HangupCause>,
    state: BranchState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EarlyMode {
    Win,
    Passthrough,
    Ignore,
    RingReady,
    Consume,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Reject {
    Off,
    Any,
    List {
        negate: bool,
        causes: Vec<HangupCause>,
    },
}

impl Reject {
    fn parse(value: &str) -> Reject {
        let value = value.trim();
        if is_true(value) {
            return Reject::Any;
        }
        let (negate, list) = match value.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let causes: Vec<HangupCause> = list
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .filter(|s| !s.is_empty())
            .filter_map(HangupCause::parse)
            .collect();
        match (negate, causes.is_empty()) {
            (false, true) => Reject::Off,
            (true, true) => Reject::Any,
            _ => Reject::List { negate, causes },
        }
    }

    fn matches(&self, cause: HangupCause) -> bool {
        match self {
            Reject::Off => false,
            Reject::Any => true,
            Reject::List { negate, causes } => causes.contains(&cause) != *negate,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BranchOpts {
    timeout: Duration,
    early: EarlyMode,
    continue_on_timeout: bool,
    ignore_ring_ready: bool,
    reject: Reject,
}

impl BranchOpts {
    fn from_vars(vars: &Vars, enterprise: bool, default_timeout: Duration) -> BranchOpts {
        let mut early = EarlyMode::Win;
        if flag(vars, "bridge_early_media") {
            early = EarlyMode::Passthrough;
        }
        if let Some(v) = lookup(vars, "ignore_early_media") {
            let v = v.trim();
            if is_true(v) {
                early = EarlyMode::Ignore;
            } else if v.eq_ignore_ascii_case("consume") {
                early = EarlyMode::Consume;
            } else if v.eq_ignore_ascii_case("ring_ready") {
                early = EarlyMode::RingReady;
            }
        }
        if enterprise {
            early = EarlyMode::Ignore;
        }
        let reject = match lookup(vars, "fail_on_single_reject") {
            Some(v) => Reject::parse(v),
            None if flag(vars, "hangup_on_single_reject") => Reject::Any,
            None => Reject::Off,
        };
        BranchOpts {
            timeout: seconds(vars, "originate_timeout").unwrap_or(default_timeout),
            early,
            continue_on_timeout: flag(vars, "originate_continue_on_timeout"),
            ignore_ring_ready: flag(vars, "ignore_ring_ready"),
            reject,
        }
    }
}

/// Internal leg events; nested frames report to their parent leg with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// Ringing the caller should see.
    Ringing,
    /// Progress the caller should not see (counts for progress timers).
    Progressed,
    /// Early media that should reach the caller; the leg carrying it.
    Early(LegId),
    /// Answered; the leg whose channel answered.
    Answered(LegId),
    Failed(HangupCause),
}

/// What a branch shows its caller.
#[derive(Clone, Copy, Debug)]
enum Shown {
    Ring,
    Progress,
    Early {
        media: LegId,
        from: LegId,
        win: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum Due {
    Group(usize),
    Start(usize),
    Leg(usize, HangupCause),
}

impl Originate {
    /// Starts originating `ds` at `now`: the first group of every branch is
    /// started (see [`Originate::poll_output`] for its [`Output::Resolve`]s).
    pub fn new(
        now: Instant,
        ds: &Dialstring,
        opts: OriginateOptions,
    ) -> Result<Self, OriginateError> {
        if opts.depth > opts.max_depth {
            return Err(OriginateError::DepthExceeded {
                depth: opts.depth,
                max_depth: opts.max_depth,
            });
        }
        validate(ds)?;
        let depth = opts.depth;
        let mut o = Originate {
            opts,
            legs: Vec::new(),
            frames: Vec::new(),
            branches: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            resolved_count: 0,
            ring_sent: false,
            passthrough: None,
            outcome: None,
        };
        o.spawn_frame(now, None, depth, Vars::new(), ds.clone());
        o.run(now);
        Ok(o)
    }

    /// Feeds what happened at `now`. Timers due at `now` run first.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.outcome.is_some() {
            return;
        }
        self.run(now);
        if self.outcome.is_some() {
            return;
        }
        match input {
            Input::Resolved { leg, resolution } => self.resolved(now, leg, resolution),
            Input::Progress { leg } => self.channel_event(leg, Event::Ringing),
            Input::EarlyMedia { leg } => self.channel_event(leg, Event::Early(leg)),
            Input::Answered { leg } => self.channel_event(leg, Event::Answered(leg)),
            Input::Failed { leg, cause } => self.channel_event(leg, Event::Failed(cause)),
            Input::Cancel => self.cancel(),
            Input::Timeout => {}
        }
        self.run(now);
    }

    /// The next thing for the driver to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest timer; feed [`Input::Timeout`] at or after it. `None`
    /// when nothing is timed (e.g. after the outcome).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        self.earliest(None).map(|(t, _)| t)
    }

    /// Whether the outcome is decided ([`Output::Answered`] or
    /// [`Output::Failed`] has been queued). Outputs may still be waiting in
    /// [`Originate::poll_output`].
    pub fn is_done(&self) -> bool {
        self.outcome.is_some()
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// The winning leg, once one answered.
    pub fn winner(&self) -> Option<LegId> {
        match self.outcome {
            Some(Outcome::Answered(leg)) => Some(leg),
            _ => None,
        }
    }

    /// Endpoint, data and effective variables of a leg the engine created.
    pub fn leg(&self, leg: LegId) -> Option<LegView<'_>> {
        let slot = self.legs.get(leg.0 as usize)?;
        let (endpoint, data) = self.target(slot);
        let branch = self.branches.get(slot.branch)?;
        let frame = self.frames.get(branch.frame)?;
        Some(LegView {
            endpoint,
            data,
            vars: &slot.vars,
            parent: frame.parent,
            depth: frame.depth,
        })
    }

    // ---- construction -------------------------------------------------

    fn spawn_frame(
        &mut self,
        now: Instant,
        parent: Option<LegId>,
        depth: u32,
        mut base: Vars,
        ds: Dialstring,
    ) {
        overlay(&mut base, &ds.enterprise_vars);
        let enterprise = ds.branches.len() > 1;
        let frame = self.frames.len();
        let first = self.branches.len();
        for ast in ds.branches {
            let mut bbase = base.clone();
            overlay(&mut bbase, &ast.global_vars);
            let opts = BranchOpts::from_vars(&bbase, enterprise, self.opts.default_timeout);
            self.branches.push(BranchSlot {
                frame,
                ast,
                base: bbase,
                opts,
                group: 0,
                legs: 0..0,
                deadline: None,
                early_winner: None,
                last_cause: None,
                state: BranchState::Running,
            });
        }
        let end = self.branches.len();
        self.frames.push(FrameSlot {
            parent,
            depth,
            base,
            branches: first..end,
        });
        for b in first..end {
            self.start_group(b, now);
        }
    }

    fn start_group(&mut self, b: usize, now: Instant) {
        let Some(branch) = self.branches.get(b) else {
            return;
        };
        let Some(group) = branch.ast.groups.get(branch.group) else {
            // Unreachable: groups are validated non-empty and counted.
            self.branch_failed(b, HangupCause::DestinationOutOfOrder);
            return;
        };
        let Some(frame) = self.frames.get(branch.frame) else {
            return;
        };
        let clobber = flag(&branch.base, "local_var_clobber");
        let first = self.legs.len();
        for (index, leg) in group.legs.iter().enumerate() {
            let vars = if clobber {
                let mut v = branch.base.clone();
                overlay(&mut v, &leg.local_vars);
                v
            } else {
                let mut v = frame.base.clone();
                overlay(&mut v, &leg.local_vars);
                overlay(&mut v, &branch.ast.global_vars);
                v
            };
            let start_at = seconds(&vars, "leg_delay_start")
                .and_then(|d| now.checked_add(d))
                .unwrap_or(now);
            let leg_timeout = seconds(&vars, "leg_timeout");
            let progress_timeout = seconds(&vars, "leg_progress_timeout")
                .or_else(|| seconds(&vars, "progress_timeout"));
            self.legs.push(LegSlot {
                branch: b,
                group: branch.group,
                index,
                vars,
                state: LegState::Pending,
                announced: false,
                early: false,
                start_at,
                leg_timeout,
                progress_timeout,
                deadline: None,
                progress_deadline: None,
            });
        }
        let end = self.legs.len();
        let branch = &mut self.branches[b];
        branch.legs = first..end;
        branch.deadline = now.checked_add(branch.opts.timeout);
        self.pump(b, now);
    }

    /// Starts the group's legs that are due; moves on when none is left.
    fn pump(&mut self, b: usize, now: Instant) {
        let Some(branch) = self.branches.get(b) else {
            return;
        };
        if branch.state != BranchState::Running {
            return;
        }
        let range = branch.legs.clone();
        let mut live = 0usize;
        let mut earliest: Option<Instant> = None;
        for slot in &self.legs[range.clone()] {
            match slot.state {
                LegState::Pending => {
                    earliest = Some(earliest.map_or(slot.start_at, |e| e.min(slot.start_at)));
                }
                s if s.live() => live += 1,
                _ => {}
            }
        }
        let Some(earliest) = earliest else {
            if live == 0 {
                self.next_group(b, now);
            }
            return;
        };
        if live == 0 && earliest > now {
            // Nothing is ringing: bring the delayed legs forward.
            let shift = earliest - now;
            for slot in &mut self.legs[range.clone()] {
                if slot.state == LegState::Pending {
                    slot.start_at = slot.start_at.checked_sub(shift).unwrap_or(now);
                }
            }
        }
        for id in range {
            if self.legs[id].state == LegState::Pending && self.legs[id].start_at <= now {
                self.start_leg(id, now);
            }
        }
    }

    fn start_leg(&mut self, id: usize, now: Instant) {
        let leg = LegId(id as u32);
        if self.resolved_count >= self.opts.max_legs {
            self.legs[id].state = LegState::Resolving;
            self.events
                .push_back((leg, Event::Failed(TOO_MANY_LEGS_CAUSE)));
            return;
        }
        self.resolved_count += 1;
        let slot = &mut self.legs[id];
        slot.state = LegState::Resolving;
        slot.announced = true;
        slot.deadline = slot.leg_timeout.and_then(|d| now.checked_add(d));
        slot.progress_deadline = slot.progress_timeout.and_then(|d| now.checked_add(d));
        let slot = &self.legs[id];
        let (endpoint, data) = self.target(slot);
        let resolve = Output::Resolve {
            leg,
            endpoint: endpoint.to_owned(),
            data: data.to_owned(),
            vars: slot.vars.clone(),
        };
        self.out.push_back(resolve);
    }

    fn next_group(&mut self, b: usize, now: Instant) {
        let branch = &mut self.branches[b];
        branch.group += 1;
        branch.deadline = None;
        if branch.group < branch.ast.groups.len() {
            self.start_group(b, now);
        } else {
            let cause = branch.last_cause.unwrap_or(HangupCause::NoAnswer);
            self.branch_failed(b, cause);
        }
    }

    // ---- inputs -------------------------------------------------------

    fn resolved(&mut self, now: Instant, leg: LegId, resolution: Resolution) {
        let id = leg.0 as usize;
        match self.legs.get(id) {
            Some(slot) if slot.state == LegState::Resolving && slot.announced => {}
            _ => return,
        }
        match resolution {
            Resolution::Created => self.legs[id].state = LegState::Created,
            Resolution::Failed(cause) => self.events.push_back((leg, Event::Failed(cause))),
            Resolution::Nested(ds) => {
                let frame = self.branches[self.legs[id].branch].frame;
                let depth = self.frames[frame].depth.saturating_add(1);
                if depth > self.opts.max_depth {
                    self.events
                        .push_back((leg, Event::Failed(DEPTH_EXCEEDED_CAUSE)));
                    return;
                }
                if let Err(e) = validate(&ds) {
                    self.events.push_back((leg, Event::Failed(e.cause())));
                    return;
                }
                let inherited = self.legs[id].vars.clone();
                self.legs[id].state = LegState::Nested(self.frames.len());
                self.spawn_frame(now, Some(leg), depth, inherited, ds);
            }
        }
    }

    /// A report about a leg's channel; the first one implies `Created`.
    fn channel_event(&mut self, leg: LegId, event: Event) {
        let Some(slot) = self.legs.get_mut(leg.0 as usize) else {
            return;
        };
        match slot.state {
            LegState::Resolving if slot.announced => slot.state = LegState::Created,
            LegState::Created => {}
            _ => return,
        }
        self.events.push_back((leg, event));
    }

    fn cancel(&mut self) {
        let Some(top) = self.frames.first() else {
            return;
        };
        for b in top.branches.clone() {
            if self.branches[b].state == BranchState::Running {
                self.kill_group(b, None, HangupCause::OriginatorCancel);
                self.branches[b].state = BranchState::Failed(HangupCause::OriginatorCancel);
                self.branches[b].deadline = None;
            }
        }
        self.finish(Outcome::Failed(HangupCause::OriginatorCancel));
    }

    // ---- the loop -----------------------------------------------------

    /// Processes queued events, then due timers, until nothing is left.
    fn run(&mut self, now: Instant) {
        loop {
            while let Some((leg, event)) = self.events.pop_front() {
                self.on_event(now, leg, event);
            }
            if self.outcome.is_some() {
                return;
            }
            let Some((_, due)) = self.earliest(Some(now)) else {
                return;
            };
            match due {
                Due::Group(b) => self.group_timeout(b, now),
                Due::Start(b) => self.pump(b, now),
                Due::Leg(id, cause) => {
                    let b = self.legs[id].branch;
                    self.kill(id, cause);
                    self.leg_failed(now, b, LegId(id as u32), cause);
                }
            }
        }
    }

    /// The earliest timer, or the earliest one due at `due_by`. Ties go to
    /// the group timer, then to progress timers.
    fn earliest(&self, due_by: Option<Instant>) -> Option<(Instant, Due)> {
        let mut best: Option<(Instant, Due)> = None;
        let mut consider = |at: Option<Instant>, due: Due| {
            let Some(at) = at else { return };
            if due_by.is_some_and(|limit| at > limit) {
                return;
            }
            if best.is_none_or(|(t, _)| at < t) {
                best = Some((at, due));
            }
        };
        for (b, branch) in self.branches.iter().enumerate() {
            if branch.state != BranchState::Running {
                continue;
            }
            consider(branch.deadline, Due::Group(b));
            for id in branch.legs.clone() {
                let slot = &self.legs[id];
                match slot.state {
                    LegState::Pending => consider(Some(slot.start_at), Due::Start(b)),
                    s if s.live() => {
                        consider(
                            slot.progress_deadline,
                            Due::Leg(id, HangupCause::ProgressTimeout),
                        );
                        consider(slot.deadline, Due::Leg(id, HangupCause::AllottedTimeout));
                    }
                    _ => {}
                }
            }
        }
        best
    }

    fn on_event(&mut self, now: Instant, leg: LegId, event: Event) {
        let id = leg.0 as usize;
        let Some(slot) = self.legs.get(id) else {
            return;
        };
        let b = slot.branch;
        if !slot.state.live() || self.branches[b].state != BranchState::Running {
            if let Event::Answered(real) = event {
                self.drop_answered(leg, real);
            }
            return;
        }
        match event {
            Event::Ringing => {
                self.legs[id].progress_deadline = None;
                self.show(b, Shown::Ring);
            }
            Event::Progressed => {
                self.legs[id].progress_deadline = None;
                self.show(b, Shown::Progress);
            }
            Event::Early(media) => {
                let slot = &mut self.legs[id];
                slot.progress_deadline = None;
                if slot.early {
                    return;
                }
                slot.early = true;
                match self.branches[b].opts.early {
                    EarlyMode::Win => {
                        if self.branches[b].early_winner.is_none() {
                            self.early_win(b, leg, media);
                        }
                    }
                    EarlyMode::Passthrough => self.show(
                        b,
                        Shown::Early {
                            media,
                            from: leg,
                            win: false,
                        },
                    ),
                    EarlyMode::RingReady => self.show(b, Shown::Ring),
                    EarlyMode::Ignore | EarlyMode::Consume => self.show(b, Shown::Progress),
                }
            }
            Event::Answered(real) => self.won(b, leg, real),
            Event::Failed(cause) => {
                let slot = &mut self.legs[id];
                slot.state = LegState::Ended;
                slot.deadline = None;
                slot.progress_deadline = None;
                self.leg_failed(now, b, leg, cause);
            }
        }
    }

    /// A nested answer reached a leg that is no longer live: the channel that
    /// answered must not be left up.
    fn drop_answered(&mut self, leg: LegId, real: LegId) {
        if real == leg || self.winner() == Some(real) {
            return;
        }
        if let Some(slot) = self.legs.get_mut(real.0 as usize) {
            if slot.state == LegState::Answered {
                slot.state = LegState::Ended;
                self.out.push_back(Output::Hangup {
                    leg: real,
                    cause: HangupCause::LoseRace,
                });
            }
        }
    }

    /// Reports progress or early media to the branch's caller: the parent leg
    /// for a nested frame, the A-leg at the top.
    fn show(&mut self, b: usize, shown: Shown) {
        let branch = &self.branches[b];
        let shown = match shown {
            Shown::Ring if branch.opts.ignore_ring_ready => Shown::Progress,
            other => other,
        };
        if let Some(parent) = self.frames[branch.frame].parent {
            let event = match shown {
                Shown::Ring => Event::Ringing,
                Shown::Progress => Event::Progressed,
                Shown::Early { media, .. } => Event::Early(media),
            };
            self.events.push_back((parent, event));
            return;
        }
        match shown {
            Shown::Ring => {
                if !self.ring_sent {
                    self.ring_sent = true;
                    self.out.push_back(Output::RingReady);
                }
            }
            Shown::Progress => {}
            Shown::Early { media, from, win } => {
                let free = self
                    .passthrough
                    .is_none_or(|p| !self.legs[p.0 as usize].state.live());
                if win || free {
                    self.passthrough = Some(from);
                    self.out.push_back(Output::EarlyMedia { leg: media });
                }
            }
        }
    }

    fn early_win(&mut self, b: usize, leg: LegId, media: LegId) {
        let branch = &mut self.branches[b];
        branch.early_winner = Some(leg);
        branch.deadline = None;
        let slot = &mut self.legs[leg.0 as usize];
        slot.deadline = None;
        slot.progress_deadline = None;
        self.kill_group(b, Some(leg), HangupCause::LoseRace);
        self.stop_other_branches(b, HangupCause::LoseRace);
        self.show(
            b,
            Shown::Early {
                media,
                from: leg,
                win: true,
            },
        );
    }

    fn won(&mut self, b: usize, leg: LegId, real: LegId) {
        let slot = &mut self.legs[leg.0 as usize];
        slot.state = LegState::Answered;
        slot.deadline = None;
        slot.progress_deadline = None;
        self.kill_group(b, Some(leg), HangupCause::LoseRace);
        let branch = &mut self.branches[b];
        branch.state = BranchState::Over;
        branch.deadline = None;
        self.stop_other_branches(b, HangupCause::LoseRace);
        match self.frames[self.branches[b].frame].parent {
            Some(parent) => self.events.push_back((parent, Event::Answered(real))),
            None => self.finish(Outcome::Answered(real)),
        }
    }

    fn leg_failed(&mut self, now: Instant, b: usize, leg: LegId, cause: HangupCause) {
        let branch = &mut self.branches[b];
        if branch.state != BranchState::Running {
            return;
        }
        branch.last_cause = Some(cause);
        if branch.early_winner == Some(leg) {
            self.branch_failed(b, cause);
        } else if branch.opts.reject.matches(cause) {
            self.kill_group(b, None, HangupCause::NoAnswer);
            self.branch_failed(b, cause);
        } else {
            self.pump(b, now);
        }
    }

    fn group_timeout(&mut self, b: usize, now: Instant) {
        self.branches[b].deadline = None;
        self.kill_group(b, None, HangupCause::NoAnswer);
        self.branches[b].last_cause = Some(HangupCause::NoAnswer);
        if self.branches[b].opts.continue_on_timeout {
            self.next_group(b, now);
        } else {
            self.branch_failed(b, HangupCause::NoAnswer);
        }
    }

    fn branch_failed(&mut self, b: usize, cause: HangupCause) {
        if self.branches[b].state != BranchState::Running {
            return;
        }
        self.kill_group(b, None, cause);
        let branch = &mut self.branches[b];
        branch.state = BranchState::Failed(cause);
        branch.deadline = None;
        let frame = &self.frames[branch.frame];
        let siblings = frame.branches.clone();
        if siblings
            .clone()
            .any(|s| self.branches[s].state == BranchState::Running)
        {
            return;
        }
        // As switch_ivr_enterprise_originate: the last branch whose cause is
        // not LOSE_RACE or NO_PICKUP.
        let mut result = cause;
        for s in siblings {
            if let BranchState::Failed(c) = self.branches[s].state {
                if c != HangupCause::LoseRace && c != HangupCause::NoPickup {
                    result = c;
                }
            }
        }
        match frame.parent {
            Some(parent) => self.events.push_back((parent, Event::Failed(result))),
            None => self.finish(Outcome::Failed(result)),
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.outcome.is_some() {
            return;
        }
        self.outcome = Some(outcome);
        self.out.push_back(match outcome {
            Outcome::Answered(leg) => Output::Answered { leg },
            Outcome::Failed(cause) => Output::Failed { cause },
        });
    }

    // ---- hanging up ---------------------------------------------------

    /// Ends every leg of the branch's current group except `except`.
    fn kill_group(&mut self, b: usize, except: Option<LegId>, cause: HangupCause) {
        for id in self.branches[b].legs.clone() {
            if except != Some(LegId(id as u32)) {
                self.kill(id, cause);
            }
        }
    }

    fn stop_other_branches(&mut self, b: usize, cause: HangupCause) {
        let siblings = self.frames[self.branches[b].frame].branches.clone();
        for s in siblings {
            if s != b && self.branches[s].state == BranchState::Running {
                self.kill_group(s, None, cause);
                self.branches[s].state = BranchState::Over;
                self.branches[s].deadline = None;
            }
        }
    }

    /// Ends a leg and, for a nested leg, everything below it, iteratively.
    fn kill(&mut self, id: usize, cause: HangupCause) {
        let mut stack = std::mem::take(&mut self.scratch);
        stack.clear();
        stack.push(id);
        while let Some(id) = stack.pop() {
            let Some(slot) = self.legs.get_mut(id) else {
                continue;
            };
            let state = slot.state;
            match state {
                LegState::Pending | LegState::Resolving | LegState::Created => {
                    slot.state = LegState::Ended;
                    if slot.announced && state != LegState::Pending {
                        self.out.push_back(Output::Hangup {
                            leg: LegId(id as u32),
                            cause,
                        });
                    }
                }
                LegState::Nested(frame) => {
                    slot.state = LegState::Ended;
                    let branches = self.frames.get(frame).map_or(0..0, |f| f.branches.clone());
                    for b in branches.rev() {
                        let branch = &mut self.branches[b];
                        if branch.state == BranchState::Running {
                            branch.state = BranchState::Over;
                            branch.deadline = None;
                            stack.extend(branch.legs.clone().rev());
                        }
                    }
                }
                LegState::Answered | LegState::Ended => {}
            }
            if let Some(slot) = self.legs.get_mut(id) {
                slot.deadline = None;
                slot.progress_deadline = None;
            }
        }
        self.scratch = stack;
    }

    fn target<'a>(&'a self, slot: &LegSlot) -> (&'a str, &'a str) {
        self.branches
            .get(slot.branch)
            .and_then(|b| b.ast.groups.get(slot.group))
            .and_then(|g| g.legs.get(slot.index))
            .map_or(("", ""), |l| (l.endpoint.as_str(), l.data.as_str()))
    }
}

/// Checks the structural limits of a dialstring.
fn validate(ds: &Dialstring) -> Result<(), OriginateError> {
    fn check(level: &'static str, count: usize) -> Result<(), OriginateError> {
        match count {
            0 => Err(OriginateError::Empty),
            n if n > MAX_PEERS => Err(OriginateError::TooManyPeers { level, count }),
            _ => Ok(()),
        }
    }
    check("branches", ds.branches.len())?;
    for branch in &ds.branches {
        check("groups", branch.groups.len())?;
        for group in &branch.groups {
            check("legs", group.legs.len())?;
        }
    }
    Ok(())
}

/// Overlays `top` on `base`: same-named variables (case-insensitive) are
/// replaced in place, new ones appended. Within `top` the last one wins.
fn overlay(base: &mut Vars, top: &Vars) {
    for (name, value) in top {
        match base.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(slot) => slot.1.clone_from(value),
            None => base.push((name.clone(), value.clone())),
        }
    }
}

/// The value of `name`; the last occurrence wins.
fn lookup<'a>(vars: &'a Vars, name: &str) -> Option<&'a str> {
    vars.iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `switch_true`.
fn is_true(value: &str) -> bool {
    let v = value.trim();
    ["yes", "on", "true", "t", "enabled", "enable", "allow"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
        || v.parse::<i64>().is_ok_and(|n| n != 0)
}

fn flag(vars: &Vars, name: &str) -> bool {
    lookup(vars, name).is_some_and(is_true)
}

/// A positive whole number of seconds; anything else is ignored.
fn seconds(vars: &Vars, name: &str) -> Option<Duration> {
    lookup(vars, name)?
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| Duration::from_secs(u64::from(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reject_lists() {
        use HangupCause::*;
        assert_eq!(Reject::parse("true"), Reject::Any);
        assert_eq!(Reject::parse("false"), Reject::Off);
        assert_eq!(Reject::parse("!"), Reject::Any);
        let list = Reject::parse("USER_BUSY,call_rejected");
        assert!(list.matches(UserBusy) && list.matches(CallRejected));
        assert!(!list.matches(NoAnswer));
        let neg = Reject::parse("!NO_ANSWER:USER_NOT_REGISTERED");
        assert!(!neg.matches(NoAnswer) && !neg.matches(UserNotRegistered));
        assert!(neg.matches(UserBusy));
        assert_eq!(Reject::parse("bogus"), Reject::Off);
    }

    #[test]
    fn values() {
        let v = vars(&[
            ("A", "1"),
            ("b", "abc"),
            ("c", "0"),
            ("d", " 7 "),
            ("e", "-3"),
        ]);
        assert_eq!(seconds(&v, "a"), Some(Duration::from_secs(1)));
        assert_eq!(seconds(&v, "b"), None);
        assert_eq!(seconds(&v, "c"), None);
        assert_eq!(seconds(&v, "d"), Some(Duration::from_secs(7)));
        assert_eq!(seconds(&v, "e"), None);
        assert!(is_true("Yes") && is_true("2") && !is_true("0") && !is_true("no"));
        let mut base = vars(&[("x", "1"), ("Y", "2")]);
        overlay(&mut base, &vars(&[("y", "3"), ("z", "4"), ("z", "5")]));
        assert_eq!(base, vars(&[("x", "1"), ("Y", "3"), ("z", "5")]));
    }
}
