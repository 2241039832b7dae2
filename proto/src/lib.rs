//! Generated gRPC code for package `corral.v1`: the public API that the CLI uses and the
//! internal node-to-node RPCs. Nothing but generated code, re-exports and the few names of the
//! wire contract that a .proto file cannot declare (metadata keys) lives here.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("corral.v1");
}

pub use v1::*;

/// The metadata key a client sets on a write it may retry, holding a UUID; the cluster applies
/// a write with a given id at most once. Clients and servers name it through this constant only.
pub const REQUEST_ID_HEADER: &str = "corral-request-id";
