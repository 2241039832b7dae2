//! The single on-disk encoding of every value this crate stores (log entries, votes, snapshots).
//! Changing the format here changes it everywhere at once, so it must never be chosen anywhere else,
//! and nothing here may depend on sled.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be turned into bytes or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("a value could not be encoded")]
    Encode(#[source] bincode::error::EncodeError),

    #[error("stored bytes could not be decoded")]
    Decode(#[source] bincode::error::DecodeError),

    /// The bytes decoded as the requested type without consuming all of them, which means they
    /// were written as some other type or format.
    #[error("{extra} bytes were left over after decoding a stored value")]
    TrailingBytes { extra: usize },
}

// Fixed here so that data written by one build is readable by every other build of this crate.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `v` in the crate's storage format.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(v, config()).map_err(CodecError::Encode)
}

/// Decodes a value written by [`encode`]; all of `b` must be consumed.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    let (v, used) = bincode::serde::decode_from_slice(b, config()).map_err(CodecError::Decode)?;
    if used != b.len() {
        return Err(CodecError::TrailingBytes { extra: b.len() - used });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let v = (7u64, String::from("corral"), Some(vec![1u8, 2, 3]));
        let b = encode(&v).unwrap();
        let back: (u64, String, Option<Vec<u8>>) = decode(&b).unwrap();
        assert_eq!(back, v);

        let mut longer = b.clone();
        longer.push(0);
        let err = decode::<(u64, String, Option<Vec<u8>>)>(&longer).unwrap_err();
        assert!(matches!(err, CodecError::TrailingBytes { extra: 1 }), "{err:?}");

        assert!(matches!(decode::<(u64, String)>(&b[..1]), Err(CodecError::Decode(_))));
    }
}
