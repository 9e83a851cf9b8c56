//! `vpnd`, the gateway daemon: for now its configuration, later the actix shell that
//! wires `ike`, `dataplane` and the cluster crates together.
//!
//! The configuration is its own module because it is the contract with operators: it is
//! parsed and validated completely before any actor starts, so a daemon that runs has a
//! configuration that is whole.

pub mod config;

pub use config::{Config, ConfigError, Diagnostic};
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod metrics;
pub mod mgmt;
pub mod runtime;
pub mod telemetry;
pub mod vpnctl;
