//! HTTP and metrics.
