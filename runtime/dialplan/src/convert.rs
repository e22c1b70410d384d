//! Conversions between the generated WIT types and the core's routing types.

use dialtone_core::routing as core;
use dialtone_core::HangupCause;

use crate::bindings::dialtone::switch::types as wit;

macro_rules! causes {
    ($($v:ident),* $(,)?) => {
        /// WIT cause to core cause (same variant names on both sides).
        pub(crate) fn cause_from_wit(c: wit::HangupCause) -> HangupCause {
            match c { $(wit::HangupCause::$v => HangupCause::$v,)* }
        }
        /// Core cause to WIT cause.
        #[allow(dead_code)]
        pub(crate) fn cause_to_wit(c: HangupCause) -> wit::HangupCause {
            match c { $(HangupCause::$v => wit::HangupCause::$v,)* }
        }
    };
}

causes!(
    None,
    UnallocatedNumber,
    NoRouteTransitNet,
    NoRouteDestination,
    ChannelUnacceptable,
    CallAwardedDelivered,
    NormalClearing,
    UserBusy,
    NoUserResponse,
    NoAnswer,
    SubscriberAbsent,
    CallRejected,
    NumberChanged,
    RedirectionToNewDestination,
    ExchangeRoutingError,
    DestinationOutOfOrder,
    InvalidNumberFormat,
    FacilityRejected,
    ResponseToStatusEnquiry,
    NormalUnspecified,
    NormalCircuitCongestion,
    NetworkOutOfOrder,
    NormalTemporaryFailure,
    SwitchCongestion,
    AccessInfoDiscarded,
    RequestedChanUnavail,
    PreEmpted,
    FacilityNotSubscribed,
    OutgoingCallBarred,
    IncomingCallBarred,
    BearercapabilityNotauth,
    BearercapabilityNotavail,
    ServiceUnavailable,
    BearercapabilityNotimpl,
    ChanNotImplemented,
    FacilityNotImplemented,
    ServiceNotImplemented,
    InvalidCallReference,
    IncompatibleDestination,
    InvalidMsgUnspecified,
    MandatoryIeMissing,
    MessageTypeNonexist,
    WrongMessage,
    IeNonexist,
    InvalidIeContents,
    WrongCallState,
    RecoveryOnTimerExpire,
    MandatoryIeLengthError,
    ProtocolError,
    Interworking,
    Success,
    OriginatorCancel,
    Crash,
    SystemShutdown,
    LoseRace,
    ManagerRequest,
    BlindTransfer,
    AttendedTransfer,
    AllottedTimeout,
    UserChallenge,
    MediaTimeout,
    PickedOff,
    UserNotRegistered,
    ProgressTimeout,
    InvalidGateway,
    GatewayDown,
    InvalidUrl,
    InvalidProfile,
    NoPickup,
    SrtpReadError,
    Bowout,
    BusyEverywhere,
    Decline,
    DoesNotExistAnywhere,
    NotAcceptable,
    Unwanted,
    NoIdentity,
    BadIdentityInfo,
    UnsupportedCertificate,
    InvalidIdentity,
    StaleDate,
    RejectAll,
);

fn vars_from_wit(vars: Vec<wit::Variable>) -> Vec<(String, String)> {
    vars.into_iter().map(|v| (v.name, v.value)).collect()
}

/// Moves a snapshot into its WIT form (no string is copied); the
/// variables are returned apart, for the `channel-variable` imports.
pub(crate) fn channel_into_wit(
    c: core::ChannelSnapshot,
) -> (wit::ChannelInfo, std::sync::Arc<Vec<(String, String)>>) {
    (
        wit::ChannelInfo {
            uuid: c.uuid,
            direction: match c.direction {
                core::Direction::Inbound => wit::Direction::Inbound,
                core::Direction::Outbound => wit::Direction::Outbound,
            },
            endpoint: c.endpoint,
            profile: c.profile,
            tenant: c.tenant,
            context: c.context,
            caller_id_name: c.caller_id_name,
            caller_id_number: c.caller_id_number,
            destination: c.destination,
            network_addr: c.network_addr,
        },
        c.variables,
    )
}

pub(crate) fn action_from_wit(a: wit::Action) -> core::Action {
    use core::Action as A;
    match a {
        wit::Action::Answer => A::Answer,
        wit::Action::PreAnswer => A::PreAnswer,
        wit::Action::RingReady => A::RingReady,
        wit::Action::Set(v) => A::Set {
            name: v.name,
            value: v.value,
        },
        wit::Action::Export(v) => A::Export {
            name: v.name,
            value: v.value,
        },
        wit::Action::Unset(name) => A::Unset { name },
        wit::Action::Bridge(dialstring) => A::Bridge { dialstring },
        wit::Action::Transfer(t) => A::Transfer {
            extension: t.extension,
            context: t.context,
        },
        wit::Action::Playback(file) => A::Playback { file },
        wit::Action::Echo => A::Echo,
        wit::Action::Park => A::Park,
        wit::Action::Sleep(ms) => A::Sleep { ms },
        wit::Action::Record(r) => A::Record {
            path: r.path,
            limit_ms: r.limit_ms,
            legs: match r.legs {
                wit::RecordLegs::Caller => core::RecordLegs::Caller,
                wit::RecordLegs::Callee => core::RecordLegs::Callee,
                wit::RecordLegs::Both => core::RecordLegs::Both,
            },
        },
        wit::Action::Hangup(c) => A::Hangup {
            cause: cause_from_wit(c),
        },
        wit::Action::Respond(r) => A::Respond {
            code: r.code,
            reason: r.reason,
        },
        wit::Action::Collect(c) => A::Collect(core::CollectSpec {
            prompt: c.prompt,
            variable: c.variable,
            min_digits: c.min_digits,
            max_digits: c.max_digits,
            timeout_ms: c.timeout_ms,
            terminators: c.terminators,
        }),
        wit::Action::Socket(s) => A::Socket {
            address: s.address,
            async_mode: s.async_mode,
            full: s.full,
        },
    }
}

pub(crate) fn outbound_into_wit(
    r: core::OutboundRequest,
) -> (wit::OutboundRequest, std::sync::Arc<Vec<(String, String)>>) {
    let (channel, vars) = channel_into_wit(r.channel);
    (
        wit::OutboundRequest {
            channel,
            target: r.target,
            originator: r.originator,
        },
        vars,
    )
}

pub(crate) fn outbound_from_wit(d: wit::OutboundDecision) -> core::OutboundDecision {
    match d {
        wit::OutboundDecision::Accept(vars) => core::OutboundDecision::Accept {
            variables: vars_from_wit(vars),
        },
        wit::OutboundDecision::Rewrite(r) => core::OutboundDecision::Rewrite {
            target: r.target,
            variables: vars_from_wit(r.variables),
        },
        wit::OutboundDecision::Refuse(c) => core::OutboundDecision::Refuse {
            cause: cause_from_wit(c),
        },
    }
}

pub(crate) fn message_into_wit(m: core::TextMessage) -> wit::TextMessage {
    wit::TextMessage {
        endpoint: m.endpoint,
        profile: m.profile,
        tenant: m.tenant,
        from: m.from,
        to: m.to,
        content_type: m.content_type,
        body: m.body,
        network_addr: m.network_addr,
    }
}

pub(crate) fn message_from_wit(d: wit::MessageDecision) -> core::MessageDecision {
    match d {
        wit::MessageDecision::Reply(body) => core::MessageDecision::Reply { body },
        wit::MessageDecision::Forward(target) => core::MessageDecision::Forward { target },
        wit::MessageDecision::Drop => core::MessageDecision::Drop,
    }
}
