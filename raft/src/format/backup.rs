//! `corral cluster backup`'s file: a consistent copy of the replicated state, in the current
//! format (a backup is read by this build or a newer one, never by an older node).

use corral_storage::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

use crate::ClusterState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    /// The cluster it was taken from.
    pub cluster_id: String,
    pub taken_ms: i64,
    /// The last log index the state includes.
    pub applied_index: u64,
    pub state: ClusterState,
}

impl Backup {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Backup, CodecError> {
        codec::decode(bytes, "a backup")
    }
}
