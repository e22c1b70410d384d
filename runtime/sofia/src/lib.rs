//! The SIP endpoint, `sofia/`, named after FreeSWITCH's module.

#![deny(missing_docs)]

pub mod settings;
