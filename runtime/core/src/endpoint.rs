//! Endpoints: the modules that speak a protocol (or none) for a channel.
//!
//! Inbound channels belong to the endpoint that heard them: it calls
//! [`crate::switch::Switch::inbound`] with a [`Remote`]. Outbound channels
//! are created by the originate engine from a dialstring leg
//! `endpoint/data`; the [`EndpointRegistry`] picks the endpoint by that
//! prefix and calls [`Endpoint::dial`].
//!
//! A [`Remote`] is the channel's far side as the core sees it: a stream of
//! [`RemoteEvent`]s (ringing, answer, hangup, DTMF) and a [`RemoteControl`]
//! to act on it (answer, early media, ring, hang up). The core never knows
//! what protocol is behind it.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::dialstring::Vars;
use crate::routing::BoxFuture;
use crate::switch::Switch;
use crate::HangupCause;

/// Something that happened at the far end of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteEvent {
    /// It rings (SIP 180).
    Progress,
    /// It sends early media (SIP 183 with SDP).
    EarlyMedia,
    /// It answered.
    Answered,
    /// It hung up (or failed before answer) with this cause.
    Hangup(HangupCause),
    /// A DTMF digit arrived (SIP INFO today; RFC 4733 from the media
    /// engine). The channel publishes it as a `DTMF` event.
    Dtmf {
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: char,
        /// How long it was held, in milliseconds.
        duration_ms: u32,
        /// FreeSWITCH's `DTMF-Source`: `ENDPOINT` for signalling (INFO),
        /// `RTP` for RFC 4733.
        source: &'static str,
    },
    /// A prompt started with [`ChannelMedia::play`] ended.
    PlaybackDone {
        /// The token `play` returned.
        token: u64,
        /// Played to its end (false: stopped or replaced).
        completed: bool,
    },
}

/// The media of one channel, as the core's applications drive it (echo,
/// playback, the prompt of `collect`). Endpoints that carry RTP hand one
/// out through [`RemoteControl::media`]; digits arrive as
/// [`RemoteEvent::Dtmf`] and prompt ends as [`RemoteEvent::PlaybackDone`]
/// on the channel's event stream.
pub trait ChannelMedia: Send + Sync {
    /// Send the far side's audio back to it until stopped.
    fn echo(&self) -> bool;
    /// Play a prompt; the token comes back in [`RemoteEvent::PlaybackDone`].
    /// `None` if the media is gone.
    fn play(&self, prompt: Arc<dialtone_media::Prompt>) -> Option<u64>;
    /// Stop echo or playback.
    fn stop(&self);
    /// Record the channel to a WAV file until hangup or `limit` (in the
    /// background: the next action runs at once). `legs` picks the
    /// caller's audio, what the caller hears, or both as stereo.
    fn record(
        &self,
        path: &std::path::Path,
        legs: crate::routing::RecordLegs,
        limit: Option<std::time::Duration>,
    ) -> Result<(), String>;
    /// Variables that describe the leg's media for its CDR, set when the
    /// channel hangs up: `read_codec`, `write_codec`,
    /// `rtp_audio_in_packet_count`, `rtp_audio_out_packet_count`,
    /// `rtp_audio_in_skip_packet_count` (lost), `rtp_audio_in_jitter_ms`.
    fn report(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Join this channel's media to another channel's (`uuid_bridge`):
    /// false when the other has no media this endpoint can reach.
    fn join(&self, _other_uuid: &str) -> bool {
        false
    }
    /// Join the channel's media back to the leg it is bridged to, after an
    /// application took it out (`execute_on_answer` on a B-leg). False when
    /// there is nothing to join.
    fn rejoin(&self) -> bool {
        false
    }
}

/// What the core does to the far end of a channel.
pub trait RemoteControl: Send {
    /// Answer (SIP 200 OK).
    fn answer(&mut self);
    /// Send early media (SIP 183).
    fn pre_answer(&mut self);
    /// Signal ringing (SIP 180).
    fn ring_ready(&mut self);
    /// End the far side with this cause (BYE, CANCEL or a final response).
    fn hangup(&mut self, cause: HangupCause);
    /// The channel's media, for endpoints that carry audio; `None` (the
    /// default) makes echo, playback and collect fail the call with
    /// SERVICE_NOT_IMPLEMENTED.
    fn media(&self) -> Option<Arc<dyn ChannelMedia>> {
        None
    }
    /// Send a protocol response code (SIP `respond`); endpoints that do not
    /// speak SIP map final codes to a hangup and return false for codes they
    /// cannot express.
    fn respond(&mut self, code: u16, reason: Option<&str>) -> bool {
        let _ = reason;
        match code {
            180 => {
                self.ring_ready();
                true
            }
            183 => {
                self.pre_answer();
                true
            }
            200..=299 => {
                self.answer();
                true
            }
            300..=699 => {
                self.hangup(HangupCause::from_sip(code));
                true
            }
            _ => false,
        }
    }
}

/// The far side of one channel.
pub struct Remote {
    /// Events from the far side. When the sender is dropped, the far side is
    /// gone (treated as NORMAL_CLEARING if no hangup cause came first).
    pub events: mpsc::Receiver<RemoteEvent>,
    /// Control of the far side.
    pub control: Box<dyn RemoteControl>,
}

/// What the originate engine asks an endpoint to create.
#[derive(Clone, Debug)]
pub struct OutgoingRequest {
    /// The UUID the new channel will have.
    pub uuid: String,
    /// The endpoint name (the dialstring prefix).
    pub endpoint: String,
    /// Everything after the first `/`.
    pub data: String,
    /// The leg's variables (effective dialstring scopes, exported
    /// variables of the originator, outbound-hook variables).
    pub vars: Vars,
    /// The tenant.
    pub tenant: String,
    /// The originator's context.
    pub context: String,
    /// The originating channel, if any.
    pub originator: Option<String>,
    /// Caller ID name to present.
    pub caller_id_name: String,
    /// Caller ID number to present.
    pub caller_id_number: String,
    /// Nesting depth of this leg.
    pub depth: u32,
}

impl OutgoingRequest {
    /// A leg variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A created outbound channel's far side plus how the channel should be
/// described.
pub struct Dialed {
    /// The far side.
    pub remote: Remote,
    /// Channel name, e.g. `loopback/9196-a`.
    pub name: String,
    /// Endpoint profile, if any.
    pub profile: String,
    /// Destination number to record on the channel.
    pub destination: String,
    /// Variables the endpoint adds to the channel (e.g. `sip_call_id`).
    pub variables: Vec<(String, String)>,
}

/// A protocol module.
pub trait Endpoint: Send + Sync {
    /// The dialstring prefix this endpoint answers to (`sofia`, `loopback`).
    fn name(&self) -> &'static str;

    /// Starts a new outbound channel. `Err` fails the leg with that cause and
    /// creates no channel. The request is shared so that the core gets it
    /// back without a copy once the endpoint lets go of it.
    fn dial(
        &self,
        switch: Arc<Switch>,
        request: Arc<OutgoingRequest>,
    ) -> BoxFuture<'static, Result<Dialed, HangupCause>>;
}

/// Endpoints by prefix.
#[derive(Default, Clone)]
pub struct EndpointRegistry {
    by_name: HashMap<&'static str, Arc<dyn Endpoint>>,
}

impl EndpointRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an endpoint.
    pub fn register(&mut self, endpoint: Arc<dyn Endpoint>) {
        self.by_name.insert(endpoint.name(), endpoint);
    }

    /// The endpoint for a dialstring prefix.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Endpoint>> {
        self.by_name.get(name)
    }

    /// Registered prefixes, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.by_name.keys().copied().collect();
        v.sort();
        v
    }
}
