//! Hangup causes: FreeSWITCH's list with its numbers, and the two SIP tables.
//!
//! The numbers are Q.850 where Q.850 has the cause and FreeSWITCH's own
//! (487, 7xx, 8xx) otherwise. [`HangupCause::from_sip`] follows
//! `sofia_glue.c`'s response-to-cause table and [`HangupCause::to_sip`]
//! follows `mod_sofia.c`'s `hangup_cause_to_sip`; the two are not inverses
//! (480 becomes NO_USER_RESPONSE, which goes back out as 408), exactly as in
//! FreeSWITCH.

use std::fmt;
use std::str::FromStr;

/// Why a channel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum HangupCause {
    /// `NONE` (0)
    None = 0,
    /// `UNALLOCATED_NUMBER` (1)
    UnallocatedNumber = 1,
    /// `NO_ROUTE_TRANSIT_NET` (2)
    NoRouteTransitNet = 2,
    /// `NO_ROUTE_DESTINATION` (3)
    NoRouteDestination = 3,
    /// `CHANNEL_UNACCEPTABLE` (6)
    ChannelUnacceptable = 6,
    /// `CALL_AWARDED_DELIVERED` (7)
    CallAwardedDelivered = 7,
    /// `NORMAL_CLEARING` (16)
    NormalClearing = 16,
    /// `USER_BUSY` (17)
    UserBusy = 17,
    /// `NO_USER_RESPONSE` (18)
    NoUserResponse = 18,
    /// `NO_ANSWER` (19)
    NoAnswer = 19,
    /// `SUBSCRIBER_ABSENT` (20)
    SubscriberAbsent = 20,
    /// `CALL_REJECTED` (21)
    CallRejected = 21,
    /// `NUMBER_CHANGED` (22)
    NumberChanged = 22,
    /// `REDIRECTION_TO_NEW_DESTINATION` (23)
    RedirectionToNewDestination = 23,
    /// `EXCHANGE_ROUTING_ERROR` (25)
    ExchangeRoutingError = 25,
    /// `DESTINATION_OUT_OF_ORDER` (27)
    DestinationOutOfOrder = 27,
    /// `INVALID_NUMBER_FORMAT` (28)
    InvalidNumberFormat = 28,
    /// `FACILITY_REJECTED` (29)
    FacilityRejected = 29,
    /// `RESPONSE_TO_STATUS_ENQUIRY` (30)
    ResponseToStatusEnquiry = 30,
    /// `NORMAL_UNSPECIFIED` (31)
    NormalUnspecified = 31,
    /// `NORMAL_CIRCUIT_CONGESTION` (34)
    NormalCircuitCongestion = 34,
    /// `NETWORK_OUT_OF_ORDER` (38)
    NetworkOutOfOrder = 38,
    /// `NORMAL_TEMPORARY_FAILURE` (41)
    NormalTemporaryFailure = 41,
    /// `SWITCH_CONGESTION` (42)
    SwitchCongestion = 42,
    /// `ACCESS_INFO_DISCARDED` (43)
    AccessInfoDiscarded = 43,
    /// `REQUESTED_CHAN_UNAVAIL` (44)
    RequestedChanUnavail = 44,
    /// `PRE_EMPTED` (45)
    PreEmpted = 45,
    /// `FACILITY_NOT_SUBSCRIBED` (50)
    FacilityNotSubscribed = 50,
    /// `OUTGOING_CALL_BARRED` (52)
    OutgoingCallBarred = 52,
    /// `INCOMING_CALL_BARRED` (54)
    IncomingCallBarred = 54,
    /// `BEARERCAPABILITY_NOTAUTH` (57)
    BearercapabilityNotauth = 57,
    /// `BEARERCAPABILITY_NOTAVAIL` (58)
    BearercapabilityNotavail = 58,
    /// `SERVICE_UNAVAILABLE` (63)
    ServiceUnavailable = 63,
    /// `BEARERCAPABILITY_NOTIMPL` (65)
    BearercapabilityNotimpl = 65,
    /// `CHAN_NOT_IMPLEMENTED` (66)
    ChanNotImplemented = 66,
    /// `FACILITY_NOT_IMPLEMENTED` (69)
    FacilityNotImplemented = 69,
    /// `SERVICE_NOT_IMPLEMENTED` (79)
    ServiceNotImplemented = 79,
    /// `INVALID_CALL_REFERENCE` (81)
    InvalidCallReference = 81,
    /// `INCOMPATIBLE_DESTINATION` (88)
    IncompatibleDestination = 88,
    /// `INVALID_MSG_UNSPECIFIED` (95)
    InvalidMsgUnspecified = 95,
    /// `MANDATORY_IE_MISSING` (96)
    MandatoryIeMissing = 96,
    /// `MESSAGE_TYPE_NONEXIST` (97)
    MessageTypeNonexist = 97,
    /// `WRONG_MESSAGE` (98)
    WrongMessage = 98,
    /// `IE_NONEXIST` (99)
    IeNonexist = 99,
    /// `INVALID_IE_CONTENTS` (100)
    InvalidIeContents = 100,
    /// `WRONG_CALL_STATE` (101)
    WrongCallState = 101,
    /// `RECOVERY_ON_TIMER_EXPIRE` (102)
    RecoveryOnTimerExpire = 102,
    /// `MANDATORY_IE_LENGTH_ERROR` (103)
    MandatoryIeLengthError = 103,
    /// `PROTOCOL_ERROR` (111)
    ProtocolError = 111,
    /// `INTERWORKING` (127)
    Interworking = 127,
    /// `SUCCESS` (142)
    Success = 142,
    /// `ORIGINATOR_CANCEL` (487)
    OriginatorCancel = 487,
    /// `CRASH` (700)
    Crash = 700,
    /// `SYSTEM_SHUTDOWN` (701)
    SystemShutdown = 701,
    /// `LOSE_RACE` (702)
    LoseRace = 702,
    /// `MANAGER_REQUEST` (703)
    ManagerRequest = 703,
    /// `BLIND_TRANSFER` (800)
    BlindTransfer = 800,
    /// `ATTENDED_TRANSFER` (801)
    AttendedTransfer = 801,
    /// `ALLOTTED_TIMEOUT` (802)
    AllottedTimeout = 802,
    /// `USER_CHALLENGE` (803)
    UserChallenge = 803,
    /// `MEDIA_TIMEOUT` (804)
    MediaTimeout = 804,
    /// `PICKED_OFF` (805)
    PickedOff = 805,
    /// `USER_NOT_REGISTERED` (806)
    UserNotRegistered = 806,
    /// `PROGRESS_TIMEOUT` (807)
    ProgressTimeout = 807,
    /// `INVALID_GATEWAY` (808)
    InvalidGateway = 808,
    /// `GATEWAY_DOWN` (809)
    GatewayDown = 809,
    /// `INVALID_URL` (810)
    InvalidUrl = 810,
    /// `INVALID_PROFILE` (811)
    InvalidProfile = 811,
    /// `NO_PICKUP` (812)
    NoPickup = 812,
    /// `SRTP_READ_ERROR` (813)
    SrtpReadError = 813,
    /// `BOWOUT` (814)
    Bowout = 814,
    /// `BUSY_EVERYWHERE` (815)
    BusyEverywhere = 815,
    /// `DECLINE` (816)
    Decline = 816,
    /// `DOES_NOT_EXIST_ANYWHERE` (817)
    DoesNotExistAnywhere = 817,
    /// `NOT_ACCEPTABLE` (818)
    NotAcceptable = 818,
    /// `UNWANTED` (819)
    Unwanted = 819,
    /// `NO_IDENTITY` (820)
    NoIdentity = 820,
    /// `BAD_IDENTITY_INFO` (821)
    BadIdentityInfo = 821,
    /// `UNSUPPORTED_CERTIFICATE` (822)
    UnsupportedCertificate = 822,
    /// `INVALID_IDENTITY` (823)
    InvalidIdentity = 823,
    /// `STALE_DATE` (824)
    StaleDate = 824,
    /// `REJECT_ALL` (825)
    RejectAll = 825,
}

impl HangupCause {
    /// Every cause, in numeric order.
    pub const ALL: &'static [HangupCause] = &[
        HangupCause::None,
        HangupCause::UnallocatedNumber,
        HangupCause::NoRouteTransitNet,
        HangupCause::NoRouteDestination,
        HangupCause::ChannelUnacceptable,
        HangupCause::CallAwardedDelivered,
        HangupCause::NormalClearing,
        HangupCause::UserBusy,
        HangupCause::NoUserResponse,
        HangupCause::NoAnswer,
        HangupCause::SubscriberAbsent,
        HangupCause::CallRejected,
        HangupCause::NumberChanged,
        HangupCause::RedirectionToNewDestination,
        HangupCause::ExchangeRoutingError,
        HangupCause::DestinationOutOfOrder,
        HangupCause::InvalidNumberFormat,
        HangupCause::FacilityRejected,
        HangupCause::ResponseToStatusEnquiry,
        HangupCause::NormalUnspecified,
        HangupCause::NormalCircuitCongestion,
        HangupCause::NetworkOutOfOrder,
        HangupCause::NormalTemporaryFailure,
        HangupCause::SwitchCongestion,
        HangupCause::AccessInfoDiscarded,
        HangupCause::RequestedChanUnavail,
        HangupCause::PreEmpted,
        HangupCause::FacilityNotSubscribed,
        HangupCause::OutgoingCallBarred,
        HangupCause::IncomingCallBarred,
        HangupCause::BearercapabilityNotauth,
        HangupCause::BearercapabilityNotavail,
        HangupCause::ServiceUnavailable,
        HangupCause::BearercapabilityNotimpl,
        HangupCause::ChanNotImplemented,
        HangupCause::FacilityNotImplemented,
        HangupCause::ServiceNotImplemented,
        HangupCause::InvalidCallReference,
        HangupCause::IncompatibleDestination,
        HangupCause::InvalidMsgUnspecified,
        HangupCause::MandatoryIeMissing,
        HangupCause::MessageTypeNonexist,
        HangupCause::WrongMessage,
        HangupCause::IeNonexist,
        HangupCause::InvalidIeContents,
        HangupCause::WrongCallState,
        HangupCause::RecoveryOnTimerExpire,
        HangupCause::MandatoryIeLengthError,
        HangupCause::ProtocolError,
        HangupCause::Interworking,
        HangupCause::Success,
        HangupCause::OriginatorCancel,
        HangupCause::Crash,
        HangupCause::SystemShutdown,
        HangupCause::LoseRace,
        HangupCause::ManagerRequest,
        HangupCause::BlindTransfer,
        HangupCause::AttendedTransfer,
        HangupCause::AllottedTimeout,
        HangupCause::UserChallenge,
        HangupCause::MediaTimeout,
        HangupCause::PickedOff,
        HangupCause::UserNotRegistered,
        HangupCause::ProgressTimeout,
        HangupCause::InvalidGateway,
        HangupCause::GatewayDown,
        HangupCause::InvalidUrl,
        HangupCause::InvalidProfile,
        HangupCause::NoPickup,
        HangupCause::SrtpReadError,
        HangupCause::Bowout,
        HangupCause::BusyEverywhere,
        HangupCause::Decline,
        HangupCause::DoesNotExistAnywhere,
        HangupCause::NotAcceptable,
        HangupCause::Unwanted,
        HangupCause::NoIdentity,
        HangupCause::BadIdentityInfo,
        HangupCause::UnsupportedCertificate,
        HangupCause::InvalidIdentity,
        HangupCause::StaleDate,
        HangupCause::RejectAll,
    ];

    /// The cause's number (Q.850 or FreeSWITCH's own).
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The cause with this number.
    pub fn from_code(code: u16) -> Option<HangupCause> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// FreeSWITCH's name, e.g. `NORMAL_CLEARING`.
    pub fn name(self) -> &'static str {
        match self {
            HangupCause::None => "NONE",
            HangupCause::UnallocatedNumber => "UNALLOCATED_NUMBER",
            HangupCause::NoRouteTransitNet => "NO_ROUTE_TRANSIT_NET",
            HangupCause::NoRouteDestination => "NO_ROUTE_DESTINATION",
            HangupCause::ChannelUnacceptable => "CHANNEL_UNACCEPTABLE",
            HangupCause::CallAwardedDelivered => "CALL_AWARDED_DELIVERED",
            HangupCause::NormalClearing => "NORMAL_CLEARING",
            HangupCause::UserBusy => "USER_BUSY",
            HangupCause::NoUserResponse => "NO_USER_RESPONSE",
            HangupCause::NoAnswer => "NO_ANSWER",
            HangupCause::SubscriberAbsent => "SUBSCRIBER_ABSENT",
            HangupCause::CallRejected => "CALL_REJECTED",
            HangupCause::NumberChanged => "NUMBER_CHANGED",
            HangupCause::RedirectionToNewDestination => "REDIRECTION_TO_NEW_DESTINATION",
            HangupCause::ExchangeRoutingError => "EXCHANGE_ROUTING_ERROR",
            HangupCause::DestinationOutOfOrder => "DESTINATION_OUT_OF_ORDER",
            HangupCause::InvalidNumberFormat => "INVALID_NUMBER_FORMAT",
            HangupCause::FacilityRejected => "FACILITY_REJECTED",
            HangupCause::ResponseToStatusEnquiry => "RESPONSE_TO_STATUS_ENQUIRY",
            HangupCause::NormalUnspecified => "NORMAL_UNSPECIFIED",
            HangupCause::NormalCircuitCongestion => "NORMAL_CIRCUIT_CONGESTION",
            HangupCause::NetworkOutOfOrder => "NETWORK_OUT_OF_ORDER",
            HangupCause::NormalTemporaryFailure => "NORMAL_TEMPORARY_FAILURE",
            HangupCause::SwitchCongestion => "SWITCH_CONGESTION",
            HangupCause::AccessInfoDiscarded => "ACCESS_INFO_DISCARDED",
            HangupCause::RequestedChanUnavail => "REQUESTED_CHAN_UNAVAIL",
            HangupCause::PreEmpted => "PRE_EMPTED",
            HangupCause::FacilityNotSubscribed => "FACILITY_NOT_SUBSCRIBED",
            HangupCause::OutgoingCallBarred => "OUTGOING_CALL_BARRED",
            HangupCause::IncomingCallBarred => "INCOMING_CALL_BARRED",
            HangupCause::BearercapabilityNotauth => "BEARERCAPABILITY_NOTAUTH",
            HangupCause::BearercapabilityNotavail => "BEARERCAPABILITY_NOTAVAIL",
            HangupCause::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            HangupCause::BearercapabilityNotimpl => "BEARERCAPABILITY_NOTIMPL",
            HangupCause::ChanNotImplemented => "CHAN_NOT_IMPLEMENTED",
            HangupCause::FacilityNotImplemented => "FACILITY_NOT_IMPLEMENTED",
            HangupCause::ServiceNotImplemented => "SERVICE_NOT_IMPLEMENTED",
            HangupCause::InvalidCallReference => "INVALID_CALL_REFERENCE",
            HangupCause::IncompatibleDestination => "INCOMPATIBLE_DESTINATION",
            HangupCause::InvalidMsgUnspecified => "INVALID_MSG_UNSPECIFIED",
            HangupCause::MandatoryIeMissing => "MANDATORY_IE_MISSING",
            HangupCause::MessageTypeNonexist => "MESSAGE_TYPE_NONEXIST",
            HangupCause::WrongMessage => "WRONG_MESSAGE",
            HangupCause::IeNonexist => "IE_NONEXIST",
            HangupCause::InvalidIeContents => "INVALID_IE_CONTENTS",
            HangupCause::WrongCallState => "WRONG_CALL_STATE",
            HangupCause::RecoveryOnTimerExpire => "RECOVERY_ON_TIMER_EXPIRE",
            HangupCause::MandatoryIeLengthError => "MANDATORY_IE_LENGTH_ERROR",
            HangupCause::ProtocolError => "PROTOCOL_ERROR",
            HangupCause::Interworking => "INTERWORKING",
            HangupCause::Success => "SUCCESS",
            HangupCause::OriginatorCancel => "ORIGINATOR_CANCEL",
            HangupCause::Crash => "CRASH",
            HangupCause::SystemShutdown => "SYSTEM_SHUTDOWN",
            HangupCause::LoseRace => "LOSE_RACE",
            HangupCause::ManagerRequest => "MANAGER_REQUEST",
            HangupCause::BlindTransfer => "BLIND_TRANSFER",
            HangupCause::AttendedTransfer => "ATTENDED_TRANSFER",
            HangupCause::AllottedTimeout => "ALLOTTED_TIMEOUT",
            HangupCause::UserChallenge => "USER_CHALLENGE",
            HangupCause::MediaTimeout => "MEDIA_TIMEOUT",
            HangupCause::PickedOff => "PICKED_OFF",
            HangupCause::UserNotRegistered => "USER_NOT_REGISTERED",
            HangupCause::ProgressTimeout => "PROGRESS_TIMEOUT",
            HangupCause::InvalidGateway => "INVALID_GATEWAY",
            HangupCause::GatewayDown => "GATEWAY_DOWN",
            HangupCause::InvalidUrl => "INVALID_URL",
            HangupCause::InvalidProfile => "INVALID_PROFILE",
            HangupCause::NoPickup => "NO_PICKUP",
            HangupCause::SrtpReadError => "SRTP_READ_ERROR",
            HangupCause::Bowout => "BOWOUT",
            HangupCause::BusyEverywhere => "BUSY_EVERYWHERE",
            HangupCause::Decline => "DECLINE",
            HangupCause::DoesNotExistAnywhere => "DOES_NOT_EXIST_ANYWHERE",
            HangupCause::NotAcceptable => "NOT_ACCEPTABLE",
            HangupCause::Unwanted => "UNWANTED",
            HangupCause::NoIdentity => "NO_IDENTITY",
            HangupCause::BadIdentityInfo => "BAD_IDENTITY_INFO",
            HangupCause::UnsupportedCertificate => "UNSUPPORTED_CERTIFICATE",
            HangupCause::InvalidIdentity => "INVALID_IDENTITY",
            HangupCause::StaleDate => "STALE_DATE",
            HangupCause::RejectAll => "REJECT_ALL",
        }
    }

    /// Parses a name as `switch_channel_str2cause` does: the name
    /// (case-insensitive, `-` accepted for `_`) or the number.
    pub fn parse(s: &str) -> Option<HangupCause> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u16>() {
            return Self::from_code(n);
        }
        let norm: String = s
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        Self::ALL.iter().copied().find(|c| c.name() == norm)
    }

    /// Like [`HangupCause::parse`], but an unknown name gives
    /// DESTINATION_OUT_OF_ORDER, as `error/UNKNOWN` does in FreeSWITCH.
    pub fn parse_or_default(s: &str) -> HangupCause {
        Self::parse(s).unwrap_or(HangupCause::DestinationOutOfOrder)
    }

    /// The SIP response FreeSWITCH sends for this cause
    /// (`hangup_cause_to_sip`).
    pub fn to_sip(self) -> u16 {
        use HangupCause::*;
        match self {
            UnallocatedNumber | NoRouteTransitNet | NoRouteDestination => 404,
            UserBusy => 486,
            NoUserResponse => 408,
            NoAnswer | SubscriberAbsent => 480,
            CallRejected => 603,
            NumberChanged | RedirectionToNewDestination => 410,
            DestinationOutOfOrder | InvalidProfile => 502,
            InvalidNumberFormat | InvalidUrl | InvalidGateway => 484,
            FacilityRejected => 501,
            NormalUnspecified => 480,
            RequestedChanUnavail
            | NormalCircuitCongestion
            | NetworkOutOfOrder
            | NormalTemporaryFailure
            | SwitchCongestion
            | GatewayDown => 503,
            FacilityNotSubscribed | OutgoingCallBarred | IncomingCallBarred => 403,
            BearercapabilityNotauth
            | BearercapabilityNotavail
            | BearercapabilityNotimpl
            | IncompatibleDestination => 488,
            FacilityNotImplemented | ServiceNotImplemented => 501,
            RecoveryOnTimerExpire => 504,
            OriginatorCancel => 487,
            ExchangeRoutingError => 483,
            BusyEverywhere => 600,
            Decline => 603,
            DoesNotExistAnywhere => 604,
            NotAcceptable => 606,
            Unwanted => 607,
            NoIdentity => 428,
            BadIdentityInfo => 429,
            UnsupportedCertificate => 437,
            InvalidIdentity => 438,
            StaleDate => 403,
            RejectAll => 603,
            _ => 480,
        }
    }

    /// The cause FreeSWITCH gives a SIP final response (`sofia_glue.c`).
    pub fn from_sip(code: u16) -> HangupCause {
        use HangupCause::*;
        match code {
            200 => NormalClearing,
            401 | 402 | 403 | 407 | 603 | 608 => CallRejected,
            404 => UnallocatedNumber,
            485 | 604 => NoRouteDestination,
            408 | 504 => RecoveryOnTimerExpire,
            410 => NumberChanged,
            480 => NoUserResponse,
            400 | 481 | 500 | 503 => NormalTemporaryFailure,
            486 | 600 => UserBusy,
            484 => InvalidNumberFormat,
            488 | 606 => IncompatibleDestination,
            502 => NetworkOutOfOrder,
            405 => ServiceUnavailable,
            406 | 415 | 501 => ServiceNotImplemented,
            482 | 483 => ExchangeRoutingError,
            487 => OriginatorCancel,
            607 => Unwanted,
            _ => NormalUnspecified,
        }
    }

    /// Whether `bridge` continues the dialplan after failing with this cause
    /// when neither `continue_on_fail` nor `failure_causes` is set.
    pub fn continues_by_default(self) -> bool {
        matches!(
            self,
            HangupCause::NoAnswer | HangupCause::NoUserResponse | HangupCause::OriginatorCancel
        )
    }
}

impl fmt::Display for HangupCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text was neither a cause name nor a cause number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hangup cause `{0}`")]
pub struct UnknownCause(pub String);

impl FromStr for HangupCause {
    type Err = UnknownCause;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HangupCause::parse(s).ok_or_else(|| UnknownCause(s.to_string()))
    }
}

impl serde::Serialize for HangupCause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for HangupCause {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for c in HangupCause::ALL {
            assert_eq!(HangupCause::parse(c.name()), Some(*c));
            assert_eq!(HangupCause::from_code(c.code()), Some(*c));
            assert_eq!(HangupCause::parse(&c.code().to_string()), Some(*c));
        }
        assert_eq!(HangupCause::ALL.len(), 82);
    }

    #[test]
    fn reference_numbers() {
        use HangupCause::*;
        let table = [
            (UnallocatedNumber, 1),
            (NoRouteDestination, 3),
            (NormalClearing, 16),
            (UserBusy, 17),
            (NoUserResponse, 18),
            (NoAnswer, 19),
            (SubscriberAbsent, 20),
            (CallRejected, 21),
            (NumberChanged, 22),
            (DestinationOutOfOrder, 27),
            (InvalidNumberFormat, 28),
            (NormalUnspecified, 31),
            (NormalCircuitCongestion, 34),
            (NetworkOutOfOrder, 38),
            (NormalTemporaryFailure, 41),
            (SwitchCongestion, 42),
            (ServiceUnavailable, 63),
            (IncompatibleDestination, 88),
            (RecoveryOnTimerExpire, 102),
            (Interworking, 127),
            (OriginatorCancel, 487),
            (LoseRace, 702),
            (ManagerRequest, 703),
            (AllottedTimeout, 802),
            (MediaTimeout, 804),
            (PickedOff, 805),
            (UserNotRegistered, 806),
            (ProgressTimeout, 807),
            (InvalidGateway, 808),
            (GatewayDown, 809),
            (InvalidUrl, 810),
            (InvalidProfile, 811),
            (NoPickup, 812),
            (ServiceNotImplemented, 79),
            (ExchangeRoutingError, 25),
        ];
        for (c, n) in table {
            assert_eq!(c.code(), n, "{c}");
        }
    }

    #[test]
    fn sip_to_cause_table() {
        use HangupCause::*;
        let table: &[(&[u16], HangupCause)] = &[
            (&[401, 402, 403, 407, 603, 608], CallRejected),
            (&[404], UnallocatedNumber),
            (&[485, 604], NoRouteDestination),
            (&[408, 504], RecoveryOnTimerExpire),
            (&[410], NumberChanged),
            (&[480], NoUserResponse),
            (&[400, 481, 500, 503], NormalTemporaryFailure),
            (&[486, 600], UserBusy),
            (&[484], InvalidNumberFormat),
            (&[488, 606], IncompatibleDestination),
            (&[502], NetworkOutOfOrder),
            (&[405], ServiceUnavailable),
            (&[406, 415, 501], ServiceNotImplemented),
            (&[482, 483], ExchangeRoutingError),
            (&[487], OriginatorCancel),
            (&[607], Unwanted),
            (&[418, 499, 580, 699], NormalUnspecified),
        ];
        for (codes, cause) in table {
            for code in *codes {
                assert_eq!(HangupCause::from_sip(*code), *cause, "{code}");
            }
        }
    }

    #[test]
    fn cause_to_sip_table() {
        use HangupCause::*;
        let table = [
            (UnallocatedNumber, 404),
            (NoRouteDestination, 404),
            (NoRouteTransitNet, 404),
            (UserBusy, 486),
            (NoUserResponse, 408),
            (NoAnswer, 480),
            (SubscriberAbsent, 480),
            (NormalUnspecified, 480),
            (CallRejected, 603),
            (DestinationOutOfOrder, 502),
            (InvalidProfile, 502),
            (InvalidNumberFormat, 484),
            (InvalidUrl, 484),
            (InvalidGateway, 484),
            (NormalCircuitCongestion, 503),
            (SwitchCongestion, 503),
            (NormalTemporaryFailure, 503),
            (GatewayDown, 503),
            (NetworkOutOfOrder, 503),
            (IncompatibleDestination, 488),
            (RecoveryOnTimerExpire, 504),
            (OriginatorCancel, 487),
            (ExchangeRoutingError, 483),
            (Interworking, 480),
        ];
        for (c, code) in table {
            assert_eq!(c.to_sip(), code, "{c}");
        }
        // Not inverses: 480 -> NO_USER_RESPONSE -> 408.
        assert_eq!(HangupCause::from_sip(480).to_sip(), 408);
    }

    #[test]
    fn unknown_names() {
        assert_eq!(HangupCause::parse("no_such_cause"), None);
        assert_eq!(
            HangupCause::parse_or_default("bogus"),
            HangupCause::DestinationOutOfOrder
        );
        assert_eq!(HangupCause::parse("user-busy"), Some(HangupCause::UserBusy));
        assert_eq!(
            HangupCause::parse("user_not_registered"),
            Some(HangupCause::UserNotRegistered)
        );
    }
}
