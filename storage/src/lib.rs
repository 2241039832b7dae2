//! Corral's durable storage: openraft's (v2) log store and state machine store on sled, plus a
//! few node-local facts. This is the only crate that touches sled; it must never leak sled types
//! through its API, so the engine can be replaced without touching the rest of the workspace.
//!
//! Layout of the sled database (`<dir>/db`), one tree per concern:
//! - `log`: raft log entries, key = index as big-endian u64, value = [`codec`] of the entry;
//! - `raft`: vote, committed log id and last purged log id;
//! - `snapshot`: the current snapshot (metadata and data);
//! - `local`: node-local facts such as the node id;
//! - `ovf`: documents derived from the state machine (each VM's OVF document, by VM id), written
//!   as entries are applied and brought in line with the state after a restart or a snapshot.
//!
//! Documents and the snapshot's data are kept compressed (`compress.rs`); what openraft is given
//! and sends to other nodes is the plain encoding.

pub mod codec;
mod compress;
mod documents;
mod error;
pub mod identity;
pub mod legacy;
mod log_store;
mod state_machine;
mod store;

pub use documents::written as documents_written;
pub use error::{error_chain, Error};
pub use legacy::LegacyFormat;
pub use log_store::LogStore;
pub use state_machine::{decode_snapshot_data, encode_snapshot_data, Effect, Machine, StateHandle, StateMachineStore};
pub use store::{Options, Store, WriteFormat};
