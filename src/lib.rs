//! agentctl: one binary that brings AI agents into GitHub Actions safely, reliably and cheaply.
//!
//! The pipeline every subcommand follows (see `SPEC.md` of the design folder):
//! event payload + env → [`context`] → [`config`] → command logic in [`commands`] →
//! [`providers`] (through [`resilience`]) → [`output`] / [`actions`] / [`github`], with
//! [`redact`] applied to every text that leaves the process.
#![forbid(unsafe_code)]

pub mod actions;
pub mod boundary;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod credentials;
pub mod diff;
pub mod edit;
pub mod env_vars;
pub mod estimate;
pub mod exit;
pub mod files;
pub mod findings;
pub mod fix;
pub mod github;
pub mod ledger;
pub mod log;
pub mod markers;
pub mod output;
pub mod progress;
pub mod prompt;
pub mod providers;
pub mod redact;
pub mod report;
pub mod resilience;
pub mod review;
pub mod route;
pub mod secret_store;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod usage;

#[cfg(test)]
pub(crate) mod test_support;
