//! Placeholder until the HTTP server (branch h-pprof) is merged.
#![allow(dead_code)]
pub(crate) mod dashboard;
pub(crate) mod prometheus;
