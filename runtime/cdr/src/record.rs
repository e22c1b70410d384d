//! The records: [`Cdr`] (a finished channel), [`Open`] (a channel that
//! exists, as the journal remembers it until it finishes) and how both are
//! read from the switch's events.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use dialtone_core::events::{header, Event, EventName};

/// The hangup cause of a CDR the journal wrote for a channel that was still
/// open when the process ended.
pub const CRASH_CAUSE: &str = "CRASH";

/// The media counters of a channel's audio stream, each `None` when the
/// switch did not report it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RtpStats {
    /// Packets received (`variable_rtp_audio_in_packet_count`).
    pub in_packets: Option<u64>,
    /// Packets sent (`variable_rtp_audio_out_packet_count`).
    pub out_packets: Option<u64>,
    /// Packets missing from what was received
    /// (`variable_rtp_audio_in_skip_packet_count`).
    pub in_lost: Option<u64>,
    /// Jitter of what was received, in milliseconds
    /// (`variable_rtp_audio_in_jitter_ms`, else
    /// `variable_rtp_audio_in_jitter_max_variance`).
    pub in_jitter_ms: Option<f64>,
}

impl RtpStats {
    /// The counters on a CHANNEL_HANGUP_COMPLETE, `None` when it carries
    /// none of them.
    pub fn from_event(ev: &Event) -> Option<RtpStats> {
        let stats = RtpStats {
            in_packets: var_u64(ev, "rtp_audio_in_packet_count"),
            out_packets: var_u64(ev, "rtp_audio_out_packet_count"),
            in_lost: var_u64(ev, "rtp_audio_in_skip_packet_count"),
            in_jitter_ms: var_f64(ev, "rtp_audio_in_jitter_ms")
                .or_else(|| var_f64(ev, "rtp_audio_in_jitter_max_variance")),
        };
        (stats != RtpStats::default()).then_some(stats)
    }
}

/// One call detail record: one channel, from creation to hangup. A bridged
/// call has two, each naming the other in [`Cdr::other_leg_uuid`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cdr {
    /// The channel's UUID (`Unique-ID`).
    pub uuid: String,
    /// The other leg's UUID: `Other-Leg-Unique-ID`, else
    /// `variable_bridge_uuid`, else `variable_originator`.
    pub other_leg_uuid: Option<String>,
    /// `inbound` or `outbound` (`Call-Direction`).
    pub direction: String,
    /// The tenant (domain) (`Tenant`).
    pub tenant: String,
    /// The endpoint that owns the channel, e.g. `sofia` (`Caller-Source`).
    pub endpoint: String,
    /// `Channel-Name`, e.g. `sofia/internal/1000@example.com`.
    pub channel_name: String,
    /// `Caller-Caller-ID-Name`.
    pub caller_id_name: String,
    /// `Caller-Caller-ID-Number`.
    pub caller_id_number: String,
    /// The dialled number (`Caller-Destination-Number`).
    pub destination: String,
    /// The dialplan context (`Caller-Context`).
    pub context: String,
    /// When the channel was created, unix microseconds.
    pub start_us: u64,
    /// When it was answered, unix microseconds; `None` if it never was.
    pub answer_us: Option<u64>,
    /// When it hung up, unix microseconds.
    pub end_us: u64,
    /// Seconds from creation to hangup (`variable_duration`).
    pub duration_s: u64,
    /// Seconds from answer to hangup, 0 if never answered
    /// (`variable_billsec`).
    pub billsec_s: u64,
    /// The hangup cause name, e.g. `NORMAL_CLEARING` (`Hangup-Cause`);
    /// [`CRASH_CAUSE`] for a channel cut by the end of the process.
    pub hangup_cause: String,
    /// The Q.850 cause code (`variable_hangup_cause_q850`).
    pub hangup_cause_q850: Option<u16>,
    /// The SIP status that ended the call (`variable_sip_term_status`).
    pub sip_code: Option<u16>,
    /// The dialplan version that routed the call
    /// (`variable_dialplan_version`).
    pub dialplan_version: Option<String>,
    /// The audio codec (`variable_read_codec`).
    pub codec: Option<String>,
    /// The SIP Call-ID of a SIP leg (`variable_sip_call_id`).
    #[serde(default)]
    pub sip_call_id: Option<String>,
    /// The audio stream's counters, if the switch reported any.
    pub rtp: Option<RtpStats>,
    /// Whether the journal wrote this record at start-up for a channel that
    /// was still open when the previous process ended.
    pub cut_by_crash: bool,
    /// The record's place in the journal (1, 2, ...), assigned when it is
    /// committed; 0 before.
    pub seq: u64,
}

/// A channel that exists: what the journal keeps (in its `open` table)
/// between CHANNEL_CREATE and the channel's CDR, so that a channel the
/// process never finished still gets a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// The channel's UUID (`Unique-ID`).
    pub uuid: String,
    /// The other leg's UUID, when CHANNEL_CREATE already names it (same
    /// headers as [`Cdr::other_leg_uuid`]).
    pub other_leg_uuid: Option<String>,
    /// `Call-Direction`.
    pub direction: String,
    /// `Tenant`.
    pub tenant: String,
    /// `Caller-Source`.
    pub endpoint: String,
    /// `Channel-Name`.
    pub channel_name: String,
    /// `Caller-Caller-ID-Name`.
    pub caller_id_name: String,
    /// `Caller-Caller-ID-Number`.
    pub caller_id_number: String,
    /// `Caller-Destination-Number`.
    pub destination: String,
    /// `Caller-Context`.
    pub context: String,
    /// When the channel was created, unix microseconds.
    pub start_us: u64,
    /// The SIP Call-ID of a SIP leg (`variable_sip_call_id`).
    #[serde(default)]
    pub sip_call_id: Option<String>,
}

/// Now, in unix microseconds.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn text(ev: &Event, name: &str) -> String {
    ev.get(name).unwrap_or_default().to_owned()
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

fn var_str(ev: &Event, name: &str) -> Option<String> {
    non_empty(ev.get_variable(name)).map(str::to_owned)
}

fn var_u64(ev: &Event, name: &str) -> Option<u64> {
    non_empty(ev.get_variable(name))?.parse().ok()
}

fn var_u16(ev: &Event, name: &str) -> Option<u16> {
    non_empty(ev.get_variable(name))?.parse().ok()
}

fn var_f64(ev: &Event, name: &str) -> Option<f64> {
    non_empty(ev.get_variable(name))?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
}

/// A time variable in unix microseconds: `ours` (`<base>_epoch_us`, the
/// switch's), else `freeswitch` (its `<base>_uepoch`); 0 means "never", as
/// in FreeSWITCH.
fn var_time_us(ev: &Event, ours: &str, freeswitch: &str) -> Option<u64> {
    var_u64(ev, ours)
        .or_else(|| var_u64(ev, freeswitch))
        .filter(|&t| t > 0)
}

fn other_leg(ev: &Event) -> Option<String> {
    non_empty(ev.get(header::OTHER_LEG_UNIQUE_ID))
        .map(str::to_owned)
        .or_else(|| var_str(ev, "bridge_uuid"))
        .or_else(|| var_str(ev, "originator"))
}

/// When the event was created: its `Event-Date-Timestamp` header if it
/// carries one, else [`Event::timestamp_us`] (what that header is written
/// from on the wire), else now.
fn event_time_us(ev: &Event) -> u64 {
    non_empty(ev.get(header::EVENT_DATE_TIMESTAMP))
        .and_then(|v| v.parse().ok())
        .or((ev.timestamp_us > 0).then_some(ev.timestamp_us))
        .unwrap_or_else(now_us)
}

const US: u64 = 1_000_000;

impl Open {
    /// The open record of a CHANNEL_CREATE; `None` for another event or one
    /// without a `Unique-ID`. The start is the event's time (see
    /// [`Cdr::from_hangup_complete`] for the precise one the finished
    /// record gets).
    pub fn from_create(ev: &Event) -> Option<Open> {
        if ev.name != EventName::ChannelCreate {
            return None;
        }
        let uuid = non_empty(ev.get(header::UNIQUE_ID))?.to_owned();
        Some(Open {
            uuid,
            other_leg_uuid: other_leg(ev),
            direction: text(ev, header::CALL_DIRECTION),
            tenant: text(ev, "Tenant"),
            endpoint: text(ev, "Caller-Source"),
            channel_name: text(ev, header::CHANNEL_NAME),
            caller_id_name: text(ev, header::CALLER_CALLER_ID_NAME),
            caller_id_number: text(ev, header::CALLER_CALLER_ID_NUMBER),
            destination: text(ev, header::CALLER_DESTINATION_NUMBER),
            context: text(ev, header::CALLER_CONTEXT),
            start_us: var_time_us(ev, "start_epoch_us", "start_uepoch")
                .unwrap_or_else(|| event_time_us(ev)),
            sip_call_id: var_str(ev, "sip_call_id"),
        })
    }
}

impl Cdr {
    /// The CDR of a CHANNEL_HANGUP_COMPLETE; `None` for another event or one
    /// without a `Unique-ID`.
    ///
    /// Times: the end is `variable_end_epoch_us` (else `variable_end_uepoch`,
    /// else the event's time); the start is `variable_start_epoch_us` (else
    /// `variable_start_uepoch`, else the end less `variable_duration`
    /// seconds, which the journal replaces by the channel's CHANNEL_CREATE
    /// time when that is earlier, see [`crate::Journal::closed`]); the answer
    /// is `variable_answer_epoch_us` (else `variable_answer_uepoch`, else the
    /// end less `variable_billsec` seconds when that is above 0, else none).
    /// `duration_s` and `billsec_s` are the switch's `variable_duration` and
    /// `variable_billsec`, computed from the times when absent.
    pub fn from_hangup_complete(ev: &Event) -> Option<Cdr> {
        if ev.name != EventName::ChannelHangupComplete {
            return None;
        }
        let uuid = non_empty(ev.get(header::UNIQUE_ID))?.to_owned();
        let end_us =
            var_time_us(ev, "end_epoch_us", "end_uepoch").unwrap_or_else(|| event_time_us(ev));
        let duration = var_u64(ev, "duration");
        let billsec = var_u64(ev, "billsec");
        let start_us = var_time_us(ev, "start_epoch_us", "start_uepoch")
            .unwrap_or_else(|| end_us.saturating_sub(duration.unwrap_or(0).saturating_mul(US)));
        let answer_us = var_time_us(ev, "answer_epoch_us", "answer_uepoch").or_else(|| {
            billsec
                .filter(|&b| b > 0)
                .map(|b| end_us.saturating_sub(b.saturating_mul(US)))
        });
        let hangup_cause = non_empty(ev.get(header::HANGUP_CAUSE))
            .map(str::to_owned)
            .or_else(|| var_str(ev, "hangup_cause"))
            .unwrap_or_else(|| "NONE".to_owned());
        Some(Cdr {
            uuid,
            other_leg_uuid: other_leg(ev),
            direction: text(ev, header::CALL_DIRECTION),
            tenant: text(ev, "Tenant"),
            endpoint: text(ev, "Caller-Source"),
            channel_name: text(ev, header::CHANNEL_NAME),
            caller_id_name: text(ev, header::CALLER_CALLER_ID_NAME),
            caller_id_number: text(ev, header::CALLER_CALLER_ID_NUMBER),
            destination: text(ev, header::CALLER_DESTINATION_NUMBER),
            context: text(ev, header::CALLER_CONTEXT),
            start_us,
            answer_us,
            end_us,
            duration_s: duration.unwrap_or(end_us.saturating_sub(start_us) / US),
            billsec_s: billsec
                .unwrap_or_else(|| answer_us.map_or(0, |a| end_us.saturating_sub(a) / US)),
            hangup_cause,
            hangup_cause_q850: var_u16(ev, "hangup_cause_q850"),
            sip_code: var_u16(ev, "sip_term_status"),
            dialplan_version: var_str(ev, "dialplan_version"),
            codec: var_str(ev, "read_codec"),
            sip_call_id: var_str(ev, "sip_call_id"),
            rtp: RtpStats::from_event(ev),
            cut_by_crash: false,
            seq: 0,
        })
    }

    /// The CDR of a channel that was still open when the process ended:
    /// cause [`CRASH_CAUSE`], ended at `end_us` (never before its start),
    /// never answered as far as the journal knows.
    pub fn cut_by_crash(open: &Open, end_us: u64) -> Cdr {
        let end_us = end_us.max(open.start_us);
        Cdr {
            uuid: open.uuid.clone(),
            other_leg_uuid: open.other_leg_uuid.clone(),
            direction: open.direction.clone(),
            tenant: open.tenant.clone(),
            endpoint: open.endpoint.clone(),
            channel_name: open.channel_name.clone(),
            caller_id_name: open.caller_id_name.clone(),
            caller_id_number: open.caller_id_number.clone(),
            destination: open.destination.clone(),
            context: open.context.clone(),
            start_us: open.start_us,
            answer_us: None,
            end_us,
            duration_s: (end_us - open.start_us) / US,
            billsec_s: 0,
            hangup_cause: CRASH_CAUSE.to_owned(),
            hangup_cause_q850: None,
            sip_code: None,
            dialplan_version: None,
            codec: None,
            sip_call_id: open.sip_call_id.clone(),
            rtp: None,
            cut_by_crash: true,
            seq: 0,
        }
    }
}

/// Records for the crate's tests.
#[cfg(test)]
pub(crate) mod sample {
    use super::*;

    /// An open channel that started `ago_s` seconds ago.
    pub fn open(uuid: &str, ago_s: u64) -> Open {
        Open {
            uuid: uuid.into(),
            other_leg_uuid: None,
            direction: "inbound".into(),
            tenant: "d.test".into(),
            endpoint: "sofia".into(),
            channel_name: format!("sofia/internal/{uuid}@d.test"),
            caller_id_name: "Alice".into(),
            caller_id_number: "1000".into(),
            destination: "2000".into(),
            context: "default".into(),
            start_us: now_us() - ago_s * US,
            sip_call_id: None,
        }
    }

    /// The CDR of a 3 s call that ended now.
    pub fn cdr(uuid: &str) -> Cdr {
        let end_us = now_us();
        Cdr {
            answer_us: Some(end_us - 2 * US),
            end_us,
            duration_s: 3,
            billsec_s: 2,
            hangup_cause: "NORMAL_CLEARING".into(),
            hangup_cause_q850: Some(16),
            sip_code: Some(200),
            codec: Some("PCMA".into()),
            sip_call_id: None,
            cut_by_crash: false,
            ..Cdr::cut_by_crash(&open(uuid, 3), end_us)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel_event(name: EventName, uuid: &str) -> Event {
        Event::new(name)
            .header("Unique-ID", uuid.to_owned())
            .header("Channel-Name", "sofia/internal/1000@d.test")
            .header("Channel-State", "CS_REPORTING")
            .header("Channel-Call-State", "HANGUP")
            .header("Call-Direction", "inbound")
            .header("Answer-State", "hangup")
            .header("Caller-Caller-ID-Name", "Alice")
            .header("Caller-Caller-ID-Number", "1000")
            .header("Caller-Destination-Number", "2000")
            .header("Caller-Context", "default")
            .header("Caller-Network-Addr", "10.0.0.1")
            .header("Caller-Source", "sofia")
            .header("Tenant", "d.test")
    }

    #[test]
    fn hangup_complete_gives_every_field() {
        let ev = channel_event(EventName::ChannelHangupComplete, "a-leg")
            .header("Hangup-Cause", "NORMAL_CLEARING")
            .header("Other-Leg-Unique-ID", "b-leg")
            .variable("duration", "12")
            .variable("billsec", "9")
            .variable("start_epoch_us", "1700000000000000")
            .variable("answer_epoch_us", "1700000003000000")
            .variable("end_epoch_us", "1700000012500000")
            .variable("hangup_cause_q850", "16")
            .variable("sip_term_status", "200")
            .variable("dialplan_version", "v42")
            .variable("read_codec", "PCMU")
            .variable("bridge_uuid", "not-this-one")
            .variable("rtp_audio_in_packet_count", "450")
            .variable("rtp_audio_out_packet_count", "449")
            .variable("rtp_audio_in_skip_packet_count", "3")
            .variable("rtp_audio_in_jitter_max_variance", "1.5");
        let cdr = Cdr::from_hangup_complete(&ev).unwrap();
        assert_eq!(
            cdr,
            Cdr {
                uuid: "a-leg".into(),
                other_leg_uuid: Some("b-leg".into()),
                direction: "inbound".into(),
                tenant: "d.test".into(),
                endpoint: "sofia".into(),
                channel_name: "sofia/internal/1000@d.test".into(),
                caller_id_name: "Alice".into(),
                caller_id_number: "1000".into(),
                destination: "2000".into(),
                context: "default".into(),
                start_us: 1_700_000_000_000_000,
                answer_us: Some(1_700_000_003_000_000),
                end_us: 1_700_000_012_500_000,
                duration_s: 12,
                billsec_s: 9,
                hangup_cause: "NORMAL_CLEARING".into(),
                hangup_cause_q850: Some(16),
                sip_code: Some(200),
                dialplan_version: Some("v42".into()),
                codec: Some("PCMU".into()),
                sip_call_id: None,
                rtp: Some(RtpStats {
                    in_packets: Some(450),
                    out_packets: Some(449),
                    in_lost: Some(3),
                    in_jitter_ms: Some(1.5),
                }),
                cut_by_crash: false,
                seq: 0,
            }
        );
        // The JSON field names are the struct's, snake_case.
        let json = serde_json::to_value(&cdr).unwrap();
        for key in [
            "uuid",
            "other_leg_uuid",
            "caller_id_number",
            "start_us",
            "answer_us",
            "hangup_cause_q850",
            "cut_by_crash",
            "seq",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(json["rtp"]["in_lost"], 3);
    }

    #[test]
    fn hangup_complete_falls_back_when_variables_are_missing() {
        let mut ev = channel_event(EventName::ChannelHangupComplete, "u1")
            .header("Hangup-Cause", "NO_ANSWER")
            .variable("duration", "5")
            .variable("billsec", "0")
            .variable("originator", "a-leg");
        ev.timestamp_us = 1_700_000_100_000_000;
        let cdr = Cdr::from_hangup_complete(&ev).unwrap();
        assert_eq!(cdr.end_us, 1_700_000_100_000_000);
        assert_eq!(cdr.start_us, 1_700_000_095_000_000);
        assert_eq!(cdr.answer_us, None);
        assert_eq!((cdr.duration_s, cdr.billsec_s), (5, 0));
        assert_eq!(cdr.other_leg_uuid.as_deref(), Some("a-leg"));
        assert_eq!(cdr.hangup_cause, "NO_ANSWER");
        assert_eq!(cdr.hangup_cause_q850, None);
        assert_eq!(cdr.sip_code, None);
        assert_eq!(cdr.codec, None);
        assert_eq!(cdr.rtp, None);

        // bridge_uuid comes before originator.
        let ev = ev.variable("bridge_uuid", "b-leg");
        let cdr = Cdr::from_hangup_complete(&ev).unwrap();
        assert_eq!(cdr.other_leg_uuid.as_deref(), Some("b-leg"));

        // An answer without an answer time: end less billsec.
        let ev = channel_event(EventName::ChannelHangupComplete, "u2")
            .variable("duration", "10")
            .variable("billsec", "4")
            .variable("end_epoch_us", "1700000010000000");
        let cdr = Cdr::from_hangup_complete(&ev).unwrap();
        assert_eq!(cdr.answer_us, Some(1_700_000_006_000_000));
        assert_eq!(cdr.hangup_cause, "NONE");
    }

    #[test]
    fn only_the_right_events_give_records() {
        let create = channel_event(EventName::ChannelCreate, "u1");
        let hangup = channel_event(EventName::ChannelHangupComplete, "u1");
        assert!(Cdr::from_hangup_complete(&create).is_none());
        assert!(Open::from_create(&hangup).is_none());
        let no_uuid = Event::new(EventName::ChannelHangupComplete);
        assert!(Cdr::from_hangup_complete(&no_uuid).is_none());

        let open = Open::from_create(&create).unwrap();
        assert_eq!(open.uuid, "u1");
        assert_eq!(open.start_us, create.timestamp_us);
        assert_eq!(open.endpoint, "sofia");
        assert_eq!(open.tenant, "d.test");

        let cut = Cdr::cut_by_crash(&open, open.start_us + 7_400_000);
        assert!(cut.cut_by_crash);
        assert_eq!(cut.hangup_cause, CRASH_CAUSE);
        assert_eq!((cut.duration_s, cut.billsec_s), (7, 0));
        assert_eq!(cut.answer_us, None);
        // Never ends before it starts.
        assert_eq!(Cdr::cut_by_crash(&open, 0).end_us, open.start_us);
    }
}
