//! Format v0 of the values whose types belong to the application (log entries carry its
//! commands, snapshots its state and node records): the crate that defines the type config
//! keeps the frozen v0 types and the migration steps, and implements these hooks. A value that
//! v0 cannot express is written in the current format instead: only nodes of a build that
//! raised the cluster level to allow it can meet such a value.

use openraft::{LogId, RaftTypeConfig, SnapshotMeta, StoredMembership};

use crate::codec::{self, CodecError};

/// How a type config's entries and snapshot metadata are read from, and written in, format v0.
/// The defaults say the config has no v0 (a config that never had a release before v1).
pub trait LegacyFormat: RaftTypeConfig {
    fn entry_from_v0(_payload: &[u8]) -> Result<Self::Entry, CodecError> {
        Err(CodecError::NoSuchKind { what: "a log entry of this type config", format: 0 })
    }

    fn entry_to_v0(_entry: &Self::Entry) -> Result<Vec<u8>, CodecError> {
        Err(CodecError::Unrepresentable { what: "a log entry of this type config".into(), format: 0 })
    }

    fn meta_from_v0(_payload: &[u8]) -> Result<SnapshotMeta<Self::NodeId, Self::Node>, CodecError> {
        Err(CodecError::NoSuchKind { what: "snapshot metadata of this type config", format: 0 })
    }

    fn meta_to_v0(_meta: &SnapshotMeta<Self::NodeId, Self::Node>) -> Result<Vec<u8>, CodecError> {
        Err(CodecError::Unrepresentable { what: "snapshot metadata of this type config".into(), format: 0 })
    }
}

/// What a snapshot holds besides the machine: the last applied log id and membership.
pub type Applied<C> = (
    Option<LogId<<C as RaftTypeConfig>::NodeId>>,
    StoredMembership<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
);

/// Writes `v` in `format`, falling back to the current format when `to_v0` says v0 cannot
/// express it.
pub(crate) fn encode_at<T: serde::Serialize>(
    v: &T,
    format: u8,
    to_v0: impl FnOnce(&T) -> Result<Vec<u8>, CodecError>,
) -> Result<Vec<u8>, CodecError> {
    if format == 0 {
        match to_v0(v) {
            Ok(b) => return Ok(b),
            Err(CodecError::Unrepresentable { what, .. }) => {
                tracing::debug!(%what, "not expressible in format v0; written in the current format");
            }
            Err(e) => return Err(e),
        }
    }
    codec::encode(v)
}

/// Reads a value written by [`encode_at`] (a kind with a v0 form, `from_v0`) in whichever
/// format it was written.
pub fn decode_with<T: serde::de::DeserializeOwned>(
    b: &[u8],
    from_v0: impl FnOnce(&[u8]) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    match codec::split(b)? {
        (0, payload) => from_v0(payload),
        (version, payload) => codec::decode_payload(version, payload),
    }
}

pub fn encode_entry<C: LegacyFormat>(e: &C::Entry, format: u8) -> Result<Vec<u8>, CodecError>
where
    C::Entry: serde::Serialize,
{
    encode_at(e, format, C::entry_to_v0)
}

pub fn decode_entry<C: LegacyFormat>(b: &[u8]) -> Result<C::Entry, CodecError>
where
    C::Entry: serde::de::DeserializeOwned,
{
    decode_with(b, C::entry_from_v0)
}
