//! The `corral` command line: parses arguments, talks to the cluster over gRPC, prints results.
//! Library so that its pieces (size parsing, JSON shapes) can be tested and reused; `main`
//! only turns the outcome into stderr lines and an exit code.

pub mod args;
pub mod commands;
pub mod connect;
pub mod credentials;
pub mod endpoints;
pub mod files;
pub mod output;
pub mod progress;
pub mod session;
pub mod size;
pub mod transport;
pub mod views;
