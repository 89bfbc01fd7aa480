//! portsynth: a parallel ports builder for Linux build hosts.
//!
//! See `docs/ARCHITECTURE.md` for how the modules fit together.

pub mod build;
pub mod builddb;
pub mod cli;
pub mod commands;
pub mod config;
pub mod events;
pub mod executor;
pub mod fetch;
pub mod framework;
pub mod graph;
pub mod hooks;
pub mod plan;
pub mod ports;
pub mod queue;
pub mod repo;
pub mod report;
pub mod sandbox;
pub mod sim;
pub mod ui;

pub use commands::{exit_code_of, run};
