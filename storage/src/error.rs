//! The error type of this crate's own API (opening the store, node-local facts, flushing).
//! Errors handed to openraft are `StorageError`s built from these in `log_store` and
//! `state_machine`; this module must never expose sled types other than as a `#[source]`.

use std::path::PathBuf;

use crate::codec::CodecError;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the sled database at {path} could not be opened")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// sled could not make sense of its files (it panicked while recovering them).
    #[error("the database at {path} is damaged ({detail})")]
    Damaged { path: PathBuf, detail: String },

    #[error("the database file could not be synced to disk")]
    Sync(#[source] std::io::Error),

    #[error("the sled database failed to read or write")]
    Sled(#[from] sled::Error),

    #[error("a stored value could not be read or written")]
    Codec(#[from] CodecError),

    /// A key in the "log" tree is not an 8-byte big-endian index: the tree was written by
    /// something other than this crate.
    #[error("the raft log holds a {len}-byte key where an 8-byte index was expected")]
    BadLogKey { len: usize },

    /// The snapshot's stored metadata and its data disagree about which log id they cover.
    #[error("the persisted snapshot's metadata covers {meta} but its data covers {data}")]
    SnapshotMismatch { meta: String, data: String },

    #[error("the thread that flushes the raft log could not be started")]
    FlushThread(#[source] std::io::Error),

    #[error("the background task flushing the database did not finish")]
    FlushTask(#[source] tokio::task::JoinError),

    #[error("the background task compressing the snapshot did not finish")]
    PackTask(#[source] tokio::task::JoinError),

    /// An earlier `Machine::apply` panicked while it held the state, which may be half-updated.
    #[error("the state machine is unusable because an earlier apply panicked")]
    Poisoned,
}

/// Adapts a crate error into the `StorageError` openraft expects, with `make` naming what was
/// being done (one of `StorageIOError`'s helpers) and the crate error kept as the cause.
pub(crate) fn sto<NID: openraft::NodeId>(
    make: impl FnOnce(openraft::AnyError) -> openraft::StorageIOError<NID>,
) -> impl FnOnce(Error) -> openraft::StorageError<NID> {
    // AnyError shows only the top message; the causes are what say what went wrong.
    move |e| make(openraft::AnyError::error(error_chain(&e))).into()
}

/// `e` and its causes, as one line ("a: b: c").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
