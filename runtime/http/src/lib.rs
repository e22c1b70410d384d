//! The switch's HTTP control plane: a small bounded HTTP/1.1 server and the
//! Prometheus metrics registry it exposes.
//!
//! - [`http`]: the server (`serve`), its sans-IO request parser, and the
//!   `Request`/`Response`/`Handler` types the switch's routes are written
//!   against. It serves `/metrics` and the tenant dialplan upload API, on
//!   loopback by default; every resource it spends on a client is bounded
//!   by [`http::Limits`].
//! - [`metrics`]: counters, gauges and histograms with a lock-free hot path,
//!   labelled families, callback gauges for values owned elsewhere, and
//!   [`metrics::Registry::render`], the Prometheus text exposition format
//!   0.0.4.
//!
//! Neither module knows about calls, tenants or dialplans: the switch wires
//! its routes and its metrics onto them.

pub mod http;
pub mod metrics;
