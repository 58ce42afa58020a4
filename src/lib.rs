//! agentctl: one binary that brings AI agents into GitHub Actions safely, reliably and cheaply.
//!
//! The pipeline every subcommand follows (see `SPEC.md` of the design folder):
//! event payload + env → [`context`] → [`config`] → command logic in [`commands`] →
//! [`providers`] (through [`resilience`]) → [`output`] / [`actions`] / [`github`], with
//! [`redact`] applied to every text that leaves the process.
#![forbid(unsafe_code)]

pub(crate) mod actions;
pub mod boundary;
pub(crate) mod budget;
pub mod cli;
pub mod clock;
pub(crate) mod cloud;
pub mod commands;
pub(crate) mod config;
pub mod context;
pub(crate) mod credentials;
pub mod diff;
pub mod edit;
pub mod env_vars;
pub(crate) mod estimate;
pub mod exit;
pub(crate) mod files;
pub(crate) mod findings;
pub(crate) mod fix;
pub(crate) mod github;
pub(crate) mod ledger;
pub mod log;
pub mod markers;
pub mod output;
pub mod progress;
pub(crate) mod prompt;
pub mod providers;
pub mod redact;
pub(crate) mod report;
pub mod resilience;
pub(crate) mod review;
pub(crate) mod route;
pub(crate) mod secret_store;
pub(crate) mod session;
pub mod store;
pub mod telemetry;
pub(crate) mod tls;
pub mod usage;

#[cfg(test)]
pub(crate) mod test_support;
