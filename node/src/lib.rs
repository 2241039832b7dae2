//! corrald as a library: the daemon's parts, so that the binary stays a thin `main` and tests
//! can reach the pieces.

pub mod agent;
pub mod api;
pub mod batcher;
pub mod config;
pub mod controller;
pub mod identity;
pub mod images;
pub mod node;
pub mod token;

/// This build's version, as `cluster status` shows it for each member.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
