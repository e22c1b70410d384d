//! The control plane: how people drive and watch the switch.
//!
//! - [`esl`]: the event socket, FreeSWITCH's inbound ESL protocol (frames
//!   and the server) and outbound socket mode;
//! - [`api`]: the API commands that `api`, `bgapi` and `dialtone ctl` run.
//!
//! Nothing here touches a call directly: commands reach channels through
//! the core's [`dialtone_core::switch::Switch`], events come from its bus.

pub mod esl;
