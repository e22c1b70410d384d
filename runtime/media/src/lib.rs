//! Media: RTP ports and the relay between bridged legs.

#![deny(missing_docs)]
