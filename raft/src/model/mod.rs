//! The replicated model of the cluster: hosts, VMs, affinity rules, join tokens, recent
//! requests and a bounded event log. Plain data; `apply.rs` is the only code that changes it, and only as
//! a function of (state, command). One file per idea; every type is re-exported here.

mod affinity;
pub mod auth;
mod cluster;
mod engine;
mod events;
mod ha;
mod host;
mod library;
mod migration;
mod snapshot;
mod vm;
mod vms;

pub use affinity::*;
pub use cluster::*;
pub use corral_proto::fields;
pub use engine::*;
pub use events::*;
pub use ha::*;
pub use host::*;
pub use library::*;
pub use migration::*;
pub use snapshot::*;
pub use vm::*;
pub use vms::VmMap;
