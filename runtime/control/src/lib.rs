//! The control plane: how people drive and watch the switch.
//!
//! - [`esl`]: the event socket, FreeSWITCH's inbound ESL protocol (frames,
//!   the server, log streaming) and the [`esl::Api`] trait through which
//!   `api`/`bgapi` reach the switch.
//!
//! Nothing here touches a call directly: commands reach channels through
//! the [`esl::Api`] the switch implements, events come from the core's bus.

pub mod esl;
