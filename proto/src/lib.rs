//! Generated gRPC code for package `corral.v1`: the public API that the CLI uses and the
//! internal node-to-node RPCs. Nothing but generated code, re-exports, the words of its enums
//! (`vocab`), the table of when a VM's fields take effect (`fields`), the codec (`codec`), how a client reaches a node over TLS (`tls`, shared by the
//! CLI and the members) and the few names of the wire contract that a .proto file cannot
//! declare (metadata keys, message limits) lives here.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("corral.v1");
}

pub mod codec;
pub mod fields;
mod next_run;
pub mod tls;
pub mod vocab;

pub use v1::*;
pub use vocab::Word;

/// The encoded `FileDescriptorSet` of corral.proto (imports included): what the REST gateway
/// maps JSON with and documents, and what gRPC server reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/corral_descriptors.bin"));

/// The metadata key a client sets on a write it may retry, holding a UUID; the cluster applies
/// a write with a given id at most once. Clients and servers name it through this constant only.
pub const REQUEST_ID_HEADER: &str = "corral-request-id";

/// The largest request or answer of the public API, either way (an OVF document is at most
/// 1 MiB; a list of every VM of a large cluster fits).
pub const MAX_API_MESSAGE: usize = 16 << 20;
/// The largest answer the CLI takes to a listing (every VM, disk, event or OVF document of the
/// cluster): 50,000 VMs are about 7 MiB of protobuf, more than tonic's default 4 MiB.
pub const MAX_LIST_MESSAGE: usize = 512 << 20;
/// The largest message between members: a batch of log entries (openraft sends at most
/// `max_payload_entries` of them) or one snapshot chunk (3 MiB).
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;
