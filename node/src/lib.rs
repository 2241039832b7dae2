//! corrald as a library: the daemon's parts, so that the binary stays a thin `main` and tests
//! can reach the pieces.

pub mod agent;
pub mod api;
pub mod batcher;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod identity;
pub mod images;
pub mod metrics;
pub mod tls;
pub mod token;
pub mod witness;

/// This build's version, as `cluster status` shows it for each member.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Now, as Unix milliseconds: the clock that commands and heartbeats carry.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
