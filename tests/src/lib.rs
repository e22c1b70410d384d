//! End-to-end suites of the Dialtone switch against peers nobody here wrote
//! (SIPp, baresip, JsSIP in Chromium, ESL clients). They start with the SIP
//! endpoint; until then the end-to-end tests of the core (pseudo endpoints,
//! `runtime/core/tests/switch.rs`), of the WebAssembly host
//! (`runtime/dialplan/tests/`) and of the `dialtone` binary
//! (`runtime/switch/tests/cli.rs`) live beside their crates.
