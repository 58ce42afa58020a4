//! All integration tests in one binary: one link instead of one per file (the machine has two
//! cores), one shared harness in [`common`] (corpora lookup, scrubbed `agentctl` command, strict
//! GitHub and provider fakes).
#![allow(clippy::unwrap_used, dead_code)]

mod common;

mod action;
mod azure_entra;
mod bedrock;
mod boundary;
mod cache;
mod cli;
mod cost;
mod diff_limit;
mod example;
mod fault_matrix;
mod fix;
mod hostile;
mod hostile_output;
mod hostile_review;
mod module_graph;
mod postgres;
mod progress;
mod providers_e2e;
mod redaction;
mod review_e2e;
mod route;
mod secrets;
mod telemetry;
mod tls;
mod tokens;
mod vertex;
mod workflows;
