//! The CDR journal: one call detail record per channel, durable, in order,
//! and complete even when the switch is killed.
//!
//! # What this crate owns
//!
//! * the record, [`Cdr`], and how it is read from CHANNEL_HANGUP_COMPLETE
//!   ([`Cdr::from_hangup_complete`]); a bridged call has two records (one
//!   per channel), each naming the other leg;
//! * the open-channel record, [`Open`], read from CHANNEL_CREATE
//!   ([`Open::from_create`]);
//! * the [`Journal`]: an embedded redb database (tables `cdr_rows`, one
//!   row of JSON lines per commit, `open` and `meta`), its one writer
//!   thread, crash recovery, reading ([`Journal::list`]) and export
//!   ([`Journal::export_jsonl`]), and an optional JSON-lines copy
//!   ([`JournalOptions::jsonl`]);
//! * the bus tap ([`tap_bus`]), which feeds the journal from the switch's
//!   [`EventBus`](dialtone_core::events::EventBus), in the publisher.
//!
//! It does not compute the times or causes: the switch puts them on its
//! events, and this crate reads them.
//!
//! # Group commit
//!
//! [`Journal::opened`] and [`Journal::closed`] never block and never touch
//! the disk: they queue for the journal's writer thread. The writer waits
//! for the first queued item, then commits at most once per
//! [`COMMIT_WINDOW`] (100 ms): if the previous commit was less than a window
//! ago it waits out the window, and everything queued by then goes into
//! ONE redb write transaction, fsynced (durability `Immediate`) before it
//! returns. In that transaction, each close appends its CDR with the next
//! `seq` (the batch's CDRs go into one `cdr_rows` row) and removes the
//! channel's `open` entry, opens insert theirs, in the order they were
//! queued (so an open and a close landing in the same batch still leave
//! the CDR and no open entry), and `meta.last_commit_us` becomes the
//! commit's wall-clock time. An open whose channel is still up at its
//! first commit is held back to the next one (a window later, whether or
//! not anything else arrives), its bridges applied: most calls end within
//! that, and then never touch the `open` table. A flush or the last
//! commit holds nothing back. [`Journal::flush`] blocks until
//! everything queued before it is committed; dropping the journal commits
//! what is queued (at once, without waiting out the window) and joins the
//! writer. While channels are open, the writer also commits the time every
//! [`JournalOptions::heartbeat`] (10 s) when nothing else happens. A failed
//! commit keeps its records queued and is tried again.
//!
//! # Crash rule
//!
//! Opening a journal ([`Journal::open`]) replays its `open` table: every
//! channel opened and never closed (the previous process ended while it
//! was up) gets a CDR with `cut_by_crash = true`, `hangup_cause = "CRASH"`,
//! `end_us` = the journal's last commit time (never before the channel's
//! start; the heartbeat keeps this within 10 s of the crash), `duration_s`
//! from start to end, `billsec_s = 0`, no answer time. Those CDRs are
//! appended, the `open` table is emptied in the same transaction, and
//! `open` returns them. A second open adds nothing. A channel is in the
//! `open` table once it has been up for about two commit windows (see
//! above): a crash cuts the channels older than that, and those younger
//! leave no record.
//!
//! # Fields
//!
//! Every [`Cdr`] field, its JSON name (the same, snake_case) and its source
//! on CHANNEL_HANGUP_COMPLETE:
//!
//! | field | source |
//! |---|---|
//! | `uuid` | `Unique-ID` |
//! | `other_leg_uuid` | `Other-Leg-Unique-ID`, else `variable_bridge_uuid`, else `variable_originator` |
//! | `direction` | `Call-Direction` |
//! | `tenant` | `Tenant` |
//! | `endpoint` | `Caller-Source` |
//! | `channel_name` | `Channel-Name` |
//! | `caller_id_name`, `caller_id_number` | `Caller-Caller-ID-Name`, `Caller-Caller-ID-Number` |
//! | `destination` | `Caller-Destination-Number` |
//! | `context` | `Caller-Context` |
//! | `start_us` | `variable_start_epoch_us`, else `variable_start_uepoch`, else end less `variable_duration`; the CHANNEL_CREATE time instead when earlier |
//! | `answer_us` | `variable_answer_epoch_us`, else `variable_answer_uepoch`, else end less `variable_billsec` when above 0, else none |
//! | `end_us` | `variable_end_epoch_us`, else `variable_end_uepoch`, else the event's time |
//! | `duration_s`, `billsec_s` | `variable_duration`, `variable_billsec` (else from the times) |
//! | `hangup_cause` | `Hangup-Cause`, else `variable_hangup_cause`, else `NONE`; `CRASH` when cut |
//! | `hangup_cause_q850` | `variable_hangup_cause_q850` |
//! | `sip_code` | `variable_sip_term_status` |
//! | `dialplan_version` | `variable_dialplan_version` |
//! | `codec` | `variable_read_codec` |
//! | `rtp` | `variable_rtp_audio_in_packet_count`, `..._out_packet_count`, `..._in_skip_packet_count`, `..._in_jitter_ms` (else `..._in_jitter_max_variance`); none when all are absent |
//! | `cut_by_crash` | set by the journal at start-up |
//! | `seq` | the journal order, 1, 2, ..., assigned at commit |
//!
//! Times are unix microseconds; an event's time is its
//! `Event-Date-Timestamp` header when it has one, else
//! [`Event::timestamp_us`](dialtone_core::events::Event::timestamp_us).

mod bus;
mod journal;
mod record;

pub use bus::tap_bus;
pub use journal::{Error, Journal, JournalOptions, JournalStats, Result, COMMIT_WINDOW};
pub use record::{Cdr, Open, RtpStats, CRASH_CAUSE};
