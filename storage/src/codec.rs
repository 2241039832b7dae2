//! The single encoding of every value Corral stores or sends between nodes, with its format
//! version. Format choices are made here and nowhere else, and nothing here depends on sled.
//!
//! - Format v0 (release 3f21f51): positional bincode 2, no header. Its types are frozen copies
//!   (`corral_raft::format::v0`); reading it goes through a migration step to the current types.
//! - Format v1 and later: a two-byte header `[MARK, version]`, then MessagePack with named fields
//!   and named enum variants. A variant's tag is its name, so inserting or reordering variants
//!   cannot change the meaning of stored bytes, and a field added with `#[serde(default)]`
//!   reads older v1 bytes as they are.
//!
//! No v0 value begins with `MARK` (0xFF): every v0 kind starts with a varint, a length, an
//! `Option` or `Result` tag, or a small `u8`, and bincode's varints never start with 0xFF. So the
//! first byte tells the two apart. A version newer than this build knows is refused, naming both.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first byte of every value written in format v1 or later.
pub const MARK: u8 = 0xFF;
/// The newest format this build reads and writes.
pub const CURRENT: u8 = 1;
const MAX_DEPTH: usize = 64;

/// Why a value could not be turned into bytes or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("a value could not be encoded in format v0")]
    EncodeV0(#[source] bincode::error::EncodeError),

    #[error("a value could not be encoded in format v{CURRENT}")]
    Encode(#[source] rmp_serde::encode::Error),

    #[error("bytes of format v0 could not be decoded")]
    DecodeV0(#[source] bincode::error::DecodeError),

    #[error("bytes of format v{version} could not be decoded")]
    Decode {
        version: u8,
        #[source]
        source: rmp_serde::decode::Error,
    },

    /// The bytes decoded as the requested type without consuming all of them, which means they
    /// were written as some other type or format.
    #[error("{extra} bytes were left over after decoding a value of format v{version}")]
    TrailingBytes { version: u8, extra: usize },

    #[error("the value is in format v{found}, newer than v{CURRENT}, the newest this build of Corral reads: upgrade this node")]
    Newer { found: u8 },

    #[error("the value's format header is cut short or names version 0, which has no header")]
    BadHeader,

    /// The value has no form in the requested (older) format: it belongs to a later cluster level.
    #[error("{what} cannot be written in format v{format}")]
    Unrepresentable { what: String, format: u8 },

    /// A value kept only on this node could not be compressed (see `compress`).
    #[error("a value could not be compressed")]
    Compress(#[source] std::io::Error),

    #[error("a compressed value of format v{version} could not be decompressed")]
    Decompress {
        version: u8,
        #[source]
        source: std::io::Error,
    },

    /// The kind has no reader for this format (a type introduced after it).
    #[error("{what} did not exist in format v{format}")]
    NoSuchKind { what: &'static str, format: u8 },
}

/// Splits stored or received bytes into their format version and payload.
pub fn split(b: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    match b {
        [MARK, 0, ..] | [MARK] => Err(CodecError::BadHeader),
        [MARK, v, ..] if *v > CURRENT => Err(CodecError::Newer { found: *v }),
        [MARK, v, rest @ ..] => Ok((*v, rest)),
        _ => Ok((0, b)),
    }
}

/// The most that decoding one v0 value may claim: bincode allocates a string or a vector at the
/// length the bytes declare before it reads it, so without a bound a 13-byte message that
/// declares a string of 2^50 bytes aborts the process. The largest v0 value is a snapshot of a
/// release-3f21f51 cluster, far below this.
pub const MAX_V0_BYTES: usize = 256 << 20;

fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_V0_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_V0_BYTES>()
}

/// Encodes `v` in the current format (header and named MessagePack).
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![MARK, CURRENT];
    v.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map()).map_err(CodecError::Encode)?;
    Ok(out)
}

/// Decodes a payload of format v1 or later (the header already split off by [`split`]).
pub fn decode_payload<T: DeserializeOwned>(version: u8, payload: &[u8]) -> Result<T, CodecError> {
    let mut rest = payload;
    let v = {
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        // Corral's values nest a dozen levels deep; a deeper document is not one of them, and
        // following it would only spend the decoding thread's stack.
        de.set_max_depth(MAX_DEPTH);
        T::deserialize(&mut de).map_err(|source| CodecError::Decode { version, source })?
    };
    if !rest.is_empty() {
        let rest = rest.len();
        return Err(CodecError::TrailingBytes { version, extra: rest });
    }
    Ok(v)
}

/// Decodes a value of a kind that has one shape in every format since v1 and did not exist in
/// v0 (`what` names it for the error).
pub fn decode<T: DeserializeOwned>(b: &[u8], what: &'static str) -> Result<T, CodecError> {
    match split(b)? {
        (0, _) => Err(CodecError::NoSuchKind { what, format: 0 }),
        (version, payload) => decode_payload(version, payload),
    }
}

/// Encodes `v` in format v0 (positional bincode, no header): `v` must be the frozen v0 type,
/// or a type whose encoding v0 shares (openraft's own `Vote` and `LogId`).
pub fn encode_v0<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(v, bincode_config()).map_err(CodecError::EncodeV0)
}

/// Decodes format v0 bytes as `T` (the frozen v0 type); all of `b` must be consumed.
pub fn decode_v0<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    let (v, used) = bincode::serde::decode_from_slice(b, bincode_config()).map_err(CodecError::DecodeV0)?;
    if used != b.len() {
        return Err(CodecError::TrailingBytes { version: 0, extra: b.len() - used });
    }
    Ok(v)
}

/// A kind whose shape is the same in every format (openraft's `Vote`, `LogId`): v0 is its
/// bincode, later formats its MessagePack.
pub fn decode_plain<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    match split(b)? {
        (0, payload) => decode_v0(payload),
        (version, payload) => decode_payload(version, payload),
    }
}

/// Encodes a kind whose shape is the same in every format, in `format`.
pub fn encode_plain<T: Serialize + ?Sized>(v: &T, format: u8) -> Result<Vec<u8>, CodecError> {
    if format == 0 {
        encode_v0(v)
    } else {
        encode(v)
    }
}

/// `Option<Option<T>>` in named MessagePack: `None`, `Some(None)` and `Some(Some(v))` as nil, an
/// empty array and a one-element array (MessagePack, like JSON, would otherwise read `Some(None)`
/// back as `None`). Use with `#[serde(default, with = "corral_storage::codec::double_option")]`.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => s.serialize_some(&inner.as_slice()),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        let v: Option<Vec<T>> = Option::deserialize(d)?;
        match v {
            None => Ok(None),
            Some(mut items) if items.len() <= 1 => Ok(Some(items.pop())),
            Some(items) => {
                Err(serde::de::Error::invalid_length(items.len(), &"an array of at most one element (a cleared value)"))
            }
        }
    }
}

/// A byte string as MessagePack `bin` (a plain `Vec<u8>` would be an array of integers, one to
/// two bytes each). Use with `#[serde(with = "corral_storage::codec::bytes")]`.
pub mod bytes {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let v = (7u64, String::from("corral"), Some(vec![1u8, 2, 3]));
        let b = encode(&v).unwrap();
        assert_eq!(&b[..2], &[MARK, CURRENT]);
        let back: (u64, String, Option<Vec<u8>>) = decode_plain(&b).unwrap();
        assert_eq!(back, v);

        let mut longer = b.clone();
        longer.push(0);
        let err = decode_plain::<(u64, String, Option<Vec<u8>>)>(&longer).unwrap_err();
        assert!(matches!(err, CodecError::TrailingBytes { version: 1, extra: 1 }), "{err:?}");

        let v0 = encode_v0(&v).unwrap();
        assert_ne!(v0[0], MARK);
        assert_eq!(decode_plain::<(u64, String, Option<Vec<u8>>)>(&v0).unwrap(), v);
        assert!(matches!(decode_v0::<(u64, String)>(&v0[..1]), Err(CodecError::DecodeV0(_))));
    }

    #[test]
    fn a_declared_length_beyond_the_bytes_is_refused_without_allocating_it() {
        // v0: a string that says it is 2^50 bytes long (bincode's u64 varint marker 253).
        let mut v0 = vec![253u8];
        v0.extend_from_slice(&(1u64 << 50).to_le_bytes());
        v0.extend_from_slice(b"abcd");
        assert!(matches!(decode_v0::<String>(&v0), Err(CodecError::DecodeV0(_))));
        assert!(decode_v0::<(u8, Vec<u64>)>(&[0, 253, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        // v1: a str32 of 4 GiB - 1 bytes, and an array of as many elements, in a handful of bytes.
        let mut v1 = vec![MARK, CURRENT, 0xdb, 0xff, 0xff, 0xff, 0xff];
        v1.extend_from_slice(b"abc");
        assert!(matches!(decode_plain::<String>(&v1), Err(CodecError::Decode { .. })));
        let v1 = [MARK, CURRENT, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(decode_plain::<Vec<String>>(&v1), Err(CodecError::Decode { .. })));
    }

    #[test]
    fn a_newer_format_is_refused_naming_both_versions() {
        let mut b = encode(&1u8).unwrap();
        b[1] = CURRENT + 1;
        let err = decode_plain::<u8>(&b).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the value is in format v{}, newer than v{CURRENT}, the newest this build of Corral reads: upgrade this node",
                CURRENT + 1
            )
        );
        assert!(matches!(split(&[MARK]), Err(CodecError::BadHeader)));
        assert!(matches!(split(&[MARK, 0, 1]), Err(CodecError::BadHeader)));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Before {
        A,
        B(u32),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum After {
        New,
        B(u32),
        A,
    }

    #[test]
    fn variants_are_tagged_by_name_so_inserting_one_changes_nothing() {
        let b = encode(&vec![Before::A, Before::B(3)]).unwrap();
        let after: Vec<After> = decode_plain(&b).unwrap();
        assert_eq!(after, vec![After::A, After::B(3)]);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Old {
        name: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct New {
        name: String,
        #[serde(default)]
        level: u8,
        #[serde(default, with = "double_option")]
        limit: Option<Option<u64>>,
    }

    #[test]
    fn an_added_field_takes_its_default_and_double_options_survive() {
        let new: New = decode_plain(&encode(&Old { name: "a".into() }).unwrap()).unwrap();
        assert_eq!(new, New { name: "a".into(), level: 0, limit: None });
        for limit in [None, Some(None), Some(Some(5))] {
            let v = New { name: "b".into(), level: 2, limit };
            assert_eq!(decode_plain::<New>(&encode(&v).unwrap()).unwrap(), v);
        }
    }
}
