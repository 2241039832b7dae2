//! Generated gRPC code for package `corral.v1`: the public API that the CLI uses and the
//! internal node-to-node RPCs. Nothing but generated code and re-exports lives here.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("corral.v1");
}

pub use v1::*;
