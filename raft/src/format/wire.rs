//! The formats of what Corral stores and sends, for the kinds whose types are Corral's: log
//! entries and snapshots (the storage crate's [`LegacyFormat`] and `Machine` hooks), Raft RPCs
//! and forwarded requests ([`Wire`]). Format v0 goes through the frozen types of [`super::v0`]
//! and their migration steps; later formats are the storage codec's.
//!
//! A node writes in its cluster level's format; a value the older format cannot express (a
//! feature of the newer level, such as the command that raises the level) is written in the
//! current format, which only nodes that can read it are then sent. A node answers an RPC in
//! the format it was asked in, so a node of release 3f21f51 and one of this build talk at
//! level 0 whichever of them leads.

use corral_storage::codec::{self, CodecError};
use corral_storage::legacy::Applied;
use corral_storage::LegacyFormat;
use openraft::raft::{AppendEntriesRequest as Append, InstallSnapshotRequest as Install};
use openraft::{SnapshotMeta, StoredMembership, Vote};
use serde::{Deserialize, Serialize};

use super::v0::{self, Unrepresentable, V0Config};
use crate::forward::{ForwardResult, Forwarded};
use crate::typ::*;
use crate::ClusterState;

fn unrepresentable(e: Unrepresentable) -> CodecError {
    CodecError::Unrepresentable { what: e.what, format: 0 }
}

impl LegacyFormat for TypeConfig {
    fn entry_from_v0(payload: &[u8]) -> Result<Entry, CodecError> {
        Ok(v0::entry_up(codec::decode_v0::<openraft::Entry<V0Config>>(payload)?))
    }

    fn entry_to_v0(entry: &Entry) -> Result<Vec<u8>, CodecError> {
        codec::encode_v0(&v0::entry_down(entry).map_err(unrepresentable)?)
    }

    fn meta_from_v0(payload: &[u8]) -> Result<SnapshotMeta<NodeId, NodeInfo>, CodecError> {
        Ok(v0::snapshot_meta_up(&codec::decode_v0(payload)?))
    }

    fn meta_to_v0(meta: &SnapshotMeta<NodeId, NodeInfo>) -> Result<Vec<u8>, CodecError> {
        codec::encode_v0(&v0::snapshot_meta_down(meta).map_err(unrepresentable)?)
    }
}

/// A snapshot's data in format v0: the storage crate's (last_applied, last_membership, machine),
/// positionally, with the frozen types.
type StateV0 = (Option<LogId>, StoredMembership<NodeId, v0::NodeInfo>, v0::ClusterState);

pub(crate) fn state_from_v0(payload: &[u8]) -> Result<(Applied<TypeConfig>, ClusterState), CodecError> {
    let (last_applied, membership, state): StateV0 = codec::decode_v0(payload)?;
    Ok(((last_applied, v0::stored_membership_up(&membership)), state.into()))
}

pub(crate) fn state_to_v0(state: &ClusterState, applied: &Applied<TypeConfig>) -> Result<Vec<u8>, CodecError> {
    let membership = v0::stored_membership_down(&applied.1).map_err(unrepresentable)?;
    let state = v0::ClusterState::try_from(state).map_err(unrepresentable)?;
    codec::encode_v0(&(applied.0, membership, state))
}

/// A message between nodes, in any format this build speaks.
pub trait Wire: Sized {
    fn to_v0(&self) -> Result<Vec<u8>, CodecError>;
    fn from_v0(payload: &[u8]) -> Result<Self, CodecError>;
    fn to_current(&self) -> Result<Vec<u8>, CodecError>;
    fn from_current(version: u8, payload: &[u8]) -> Result<Self, CodecError>;
}

/// Encodes `msg` in `format`, or in the current format when v0 cannot express it.
pub fn encode<T: Wire>(msg: &T, format: u8) -> Result<Vec<u8>, CodecError> {
    if format == 0 {
        match msg.to_v0() {
            Err(CodecError::Unrepresentable { .. }) => {}
            other => return other,
        }
    }
    msg.to_current()
}

/// Decodes a message and says which format it came in (the answer goes back in the same one).
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<(T, u8), CodecError> {
    match codec::split(bytes)? {
        (0, payload) => Ok((T::from_v0(payload)?, 0)),
        (version, payload) => Ok((T::from_current(version, payload)?, version)),
    }
}

/// Messages whose shape is openraft's alone (no Corral type inside): the same in every format.
macro_rules! plain {
    ($($t:ty),* $(,)?) => {$(
        impl Wire for $t {
            fn to_v0(&self) -> Result<Vec<u8>, CodecError> {
                codec::encode_v0(self)
            }
            fn from_v0(payload: &[u8]) -> Result<Self, CodecError> {
                codec::decode_v0(payload)
            }
            fn to_current(&self) -> Result<Vec<u8>, CodecError> {
                codec::encode(self)
            }
            fn from_current(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
                codec::decode_payload(version, payload)
            }
        }
    )*};
}

plain!(
    VoteRequest,
    Result<VoteResponse, RaftError>,
    Result<AppendEntriesResponse, RaftError>,
    Result<InstallSnapshotResponse, RaftError<InstallSnapshotError>>,
);

/// Messages that carry Corral's types: v0 through the frozen types.
macro_rules! migrated {
    ($t:ty, $v0:ty, $up:expr, $down:expr) => {
        impl Wire for $t {
            fn to_v0(&self) -> Result<Vec<u8>, CodecError> {
                let down: Result<$v0, Unrepresentable> = $down(self);
                codec::encode_v0(&down.map_err(unrepresentable)?)
            }
            fn from_v0(payload: &[u8]) -> Result<Self, CodecError> {
                let v: $v0 = codec::decode_v0(payload)?;
                Ok($up(v))
            }
            fn to_current(&self) -> Result<Vec<u8>, CodecError> {
                codec::encode(self)
            }
            fn from_current(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
                codec::decode_payload(version, payload)
            }
        }
    };
}

migrated!(Forwarded, v0::Forwarded, Forwarded::from, |f: &Forwarded| v0::Forwarded::try_from(f));
migrated!(ForwardResult, v0::ForwardResult, v0::forward_result_up, v0::forward_result_down);

/// Messages that only nodes of cluster level 1 and up exchange: format v0 cannot express them.
macro_rules! current_only {
    ($($t:ty),* $(,)?) => {$(
        impl Wire for $t {
            fn to_v0(&self) -> Result<Vec<u8>, CodecError> {
                Err(CodecError::Unrepresentable { what: stringify!($t).into(), format: 0 })
            }
            fn from_v0(_payload: &[u8]) -> Result<Self, CodecError> {
                Err(CodecError::Unrepresentable { what: stringify!($t).into(), format: 0 })
            }
            fn to_current(&self) -> Result<Vec<u8>, CodecError> {
                codec::encode(self)
            }
            fn from_current(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
                codec::decode_payload(version, payload)
            }
        }
    )*};
}

current_only!(crate::peer::PeerRequest, crate::peer::PeerResult);

impl Wire for AppendEntriesRequest {
    fn to_v0(&self) -> Result<Vec<u8>, CodecError> {
        let entries =
            self.entries.iter().map(v0::entry_down).collect::<Result<Vec<_>, _>>().map_err(unrepresentable)?;
        let down: Append<V0Config> =
            Append { vote: self.vote, prev_log_id: self.prev_log_id, entries, leader_commit: self.leader_commit };
        codec::encode_v0(&down)
    }

    fn from_v0(payload: &[u8]) -> Result<Self, CodecError> {
        let v: Append<V0Config> = codec::decode_v0(payload)?;
        Ok(Append {
            vote: v.vote,
            prev_log_id: v.prev_log_id,
            entries: v.entries.into_iter().map(v0::entry_up).collect(),
            leader_commit: v.leader_commit,
        })
    }

    fn to_current(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    fn from_current(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        codec::decode_payload(version, payload)
    }
}

/// An `InstallSnapshotRequest` in the current format: its chunk as a byte string, not the array
/// of integers serde would make of a `Vec<u8>`.
#[derive(Serialize, Deserialize)]
struct Chunk {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, NodeInfo>,
    offset: u64,
    #[serde(with = "corral_storage::codec::bytes")]
    data: Vec<u8>,
    done: bool,
}

impl Wire for InstallSnapshotRequest {
    fn to_v0(&self) -> Result<Vec<u8>, CodecError> {
        let meta = v0::snapshot_meta_down(&self.meta).map_err(unrepresentable)?;
        let down: Install<V0Config> =
            Install { vote: self.vote, meta, offset: self.offset, data: self.data.clone(), done: self.done };
        codec::encode_v0(&down)
    }

    fn from_v0(payload: &[u8]) -> Result<Self, CodecError> {
        let v: Install<V0Config> = codec::decode_v0(payload)?;
        Ok(Install { vote: v.vote, meta: v0::snapshot_meta_up(&v.meta), offset: v.offset, data: v.data, done: v.done })
    }

    fn to_current(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(&Chunk {
            vote: self.vote,
            meta: self.meta.clone(),
            offset: self.offset,
            data: self.data.clone(),
            done: self.done,
        })
    }

    fn from_current(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        let c: Chunk = codec::decode_payload(version, payload)?;
        Ok(Install { vote: c.vote, meta: c.meta, offset: c.offset, data: c.data, done: c.done })
    }
}
