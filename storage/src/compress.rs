//! zstd for the values a node keeps to itself: its OVF documents and its snapshot at rest. A
//! compressed value is the header with the format byte's high bit set, then one zstd frame (with
//! its size and checksum) of the payload the plain value would carry. Nothing sent to another
//! node is compressed here, and reading a damaged value is an error, never a panic or an
//! allocation of whatever size the damaged bytes claim.

use std::borrow::Cow;
use std::io;

use crate::codec::{self, CodecError, MARK};

/// Set in the format byte of a compressed value. Formats are small numbers, so the flag never
/// meets a real version; an older build reads a flagged byte as a format newer than its own,
/// and refuses the value rather than misreading it.
pub const COMPRESSED: u8 = 0x80;

/// The most a compressed value may expand to: a snapshot of some hundred thousand VMs is far
/// below it, and a damaged frame that claims more is refused before anything is allocated.
pub const MAX_EXPANDED: u64 = 1 << 30;

/// zstd's own default: on a snapshot of tens of MB it compresses at hundreds of MB/s, and
/// higher levels gain a few percent for several times the time (see BENCHMARKS.md).
const LEVEL: i32 = 3;

/// The dictionary OVF documents are compressed with: 64 KiB that zstd trained on 2,000 OVF
/// documents of this build's writer (`zstd --train --maxdict=65536 --dictID=1331054081`, the
/// documents dumped by raft/tests/store_scale.rs with `CORRAL_SCALE_DUMP`). A document of a few
/// KB shrinks about 9x with it and 3x without. Its id ("OVF" 1) is in every frame made with
/// it; it is part of the stored format: never change these bytes, add a dictionary with a new
/// id instead (a frame names the one it needs).
const OVF_DICTIONARY: &[u8] = include_bytes!("../dict/ovf-1.zdict");
const OVF_DICTIONARY_ID: u32 = 0x4f56_4601;

fn ovf_encoder() -> &'static zstd::dict::EncoderDictionary<'static> {
    static DICT: std::sync::OnceLock<zstd::dict::EncoderDictionary<'static>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| zstd::dict::EncoderDictionary::copy(OVF_DICTIONARY, LEVEL))
}

fn ovf_decoder() -> &'static zstd::dict::DecoderDictionary<'static> {
    static DICT: std::sync::OnceLock<zstd::dict::DecoderDictionary<'static>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| zstd::dict::DecoderDictionary::copy(OVF_DICTIONARY))
}

/// Compression and decompression contexts, made when first needed and kept for a batch (a
/// context costs more to make than a document of a few KB costs to compress).
#[derive(Default)]
pub(crate) struct Zstd {
    /// Compress with the OVF dictionary (documents); reading needs no such choice, a frame
    /// names its dictionary.
    documents: bool,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    with_dictionary: Option<zstd::bulk::Decompressor<'static>>,
}

impl Zstd {
    /// Contexts for OVF documents: compressed with the OVF dictionary.
    pub(crate) fn for_documents() -> Zstd {
        Zstd { documents: true, ..Zstd::default() }
    }

    /// The stored value of a `payload` of format `version` (1 or later), compressed.
    pub(crate) fn pack(&mut self, version: u8, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
        debug_assert!(version > 0 && version < COMPRESSED);
        if payload.len() as u64 > MAX_EXPANDED {
            return Err(CodecError::Compress(io::Error::other(format!(
                "{} bytes is more than the {MAX_EXPANDED} a compressed value may hold",
                payload.len()
            ))));
        }
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => {
                let mut c = if self.documents {
                    zstd::bulk::Compressor::with_prepared_dictionary(ovf_encoder())
                } else {
                    zstd::bulk::Compressor::new(LEVEL)
                }
                .map_err(CodecError::Compress)?;
                c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true)).map_err(CodecError::Compress)?;
                self.compressor.insert(c)
            }
        };
        let mut out = vec![0u8; 2 + zstd::zstd_safe::compress_bound(payload.len())];
        out[0] = MARK;
        out[1] = version | COMPRESSED;
        let n = compressor.compress_to_buffer(payload, &mut out[2..]).map_err(CodecError::Compress)?;
        out.truncate(2 + n);
        Ok(out)
    }

    /// The plain value a stored one stands for: a compressed value expanded (its header without
    /// the flag, then the payload), any other one as it is.
    pub(crate) fn unpack<'a>(&mut self, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, CodecError> {
        let (version, frame) = match stored {
            [MARK, flagged, frame @ ..] if flagged & COMPRESSED != 0 => (flagged & !COMPRESSED, frame),
            _ => return Ok(Cow::Borrowed(stored)),
        };
        if version == 0 {
            return Err(CodecError::BadHeader);
        }
        if version > codec::CURRENT {
            return Err(CodecError::Newer { found: version });
        }
        let bad = |detail: String| CodecError::Decompress {
            version,
            source: io::Error::new(io::ErrorKind::InvalidData, detail),
        };
        let size = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(size)) if size <= MAX_EXPANDED => size as usize,
            Ok(Some(size)) => return Err(bad(format!("the frame claims {size} bytes, more than {MAX_EXPANDED}"))),
            Ok(None) => return Err(bad("the frame does not say its size".into())),
            Err(_) => return Err(bad("the bytes are not a zstd frame".into())),
        };
        let failed = |source| CodecError::Decompress { version, source };
        let decompressor = match zstd::zstd_safe::get_dict_id_from_frame(frame).map(|id| id.get()) {
            None => match &mut self.decompressor {
                Some(d) => d,
                None => self.decompressor.insert(zstd::bulk::Decompressor::new().map_err(failed)?),
            },
            Some(OVF_DICTIONARY_ID) => match &mut self.with_dictionary {
                Some(d) => d,
                None => self
                    .with_dictionary
                    .insert(zstd::bulk::Decompressor::with_prepared_dictionary(ovf_decoder()).map_err(failed)?),
            },
            Some(id) => return Err(bad(format!("the frame needs dictionary {id:#x}, which this build does not have"))),
        };
        let mut out = vec![0u8; 2 + size];
        out[0] = MARK;
        out[1] = version;
        let n = decompressor.decompress_to_buffer(frame, &mut out[2..]).map_err(failed)?;
        if n != size {
            return Err(bad(format!("the frame claims {size} bytes but holds {n}")));
        }
        Ok(Cow::Owned(out))
    }
}

/// A value (a snapshot's data) as kept on disk: compressed, unless it is of format v0, which
/// stays as it is for the builds that read only v0.
pub(crate) fn pack_value(value: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec::split(value)? {
        (0, _) => Ok(value.to_vec()),
        (version, payload) => Zstd::default().pack(version, payload),
    }
}

/// A value read from disk, as [`pack_value`] was given it.
pub(crate) fn unpack_value(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    Ok(Zstd::default().unpack(stored)?.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_an_uncompressed_one_reads_as_it_is() {
        let value = codec::encode(&vec!["corral"; 1000]).unwrap();
        let stored = pack_value(&value).unwrap();
        assert_eq!(&stored[..2], &[MARK, codec::CURRENT | COMPRESSED]);
        assert!(stored.len() < value.len() / 10, "{} of {}", stored.len(), value.len());
        assert_eq!(unpack_value(&stored).unwrap(), value);
        // What the store wrote before compression (v1 and v0) reads back unchanged.
        assert_eq!(unpack_value(&value).unwrap(), value);
        let v0 = codec::encode_v0(&7u64).unwrap();
        assert_eq!(pack_value(&v0).unwrap(), v0);
        assert_eq!(unpack_value(&v0).unwrap(), v0);
        // An empty payload too.
        let mut z = Zstd::default();
        let empty = z.pack(1, b"").unwrap();
        assert_eq!(&*z.unpack(&empty).unwrap(), &[MARK, 1]);
    }

    #[test]
    fn a_damaged_compressed_value_is_an_error() {
        let value = codec::encode(&vec!["corral"; 1000]).unwrap();
        let stored = pack_value(&value).unwrap();
        let mut z = Zstd::default();
        // Cut short anywhere, a byte flipped anywhere (the frame's checksum catches what zstd's
        // own checks let through), a byte added: never a panic, never other bytes.
        for cut in 0..stored.len() {
            match z.unpack(&stored[..cut]) {
                Ok(v) => assert!(cut < 3 && *v == stored[..cut], "cut at {cut} read as {} bytes", v.len()),
                Err(e) => assert!(matches!(e, CodecError::Decompress { .. } | CodecError::BadHeader), "{e:?}"),
            }
        }
        for i in 2..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x41;
            assert!(z.unpack(&bad).is_err(), "a flipped byte {i} was read");
        }
        let mut longer = stored.clone();
        longer.push(0);
        assert!(z.unpack(&longer).is_err());
        // A frame that claims 2^40 bytes is refused before anything is allocated.
        // (The frame header: zstd's magic, then "one segment, an 8-byte size", then the size.)
        let mut claims = vec![MARK, 1 | COMPRESSED, 0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        claims.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = z.unpack(&claims).unwrap_err();
        assert!(err.to_string().contains("could not be decompressed"), "{err}");
        assert!(format!("{:?}", err).contains("more than"), "{err:?}");
    }

    #[test]
    fn documents_are_compressed_with_the_ovf_dictionary_and_read_by_any_context() {
        let doc = include_bytes!("../../raft/tests/ovf/ovirt-hosted-engine.ovf");
        let mut docs = Zstd::for_documents();
        let with = docs.pack(1, doc).unwrap();
        let without = Zstd::default().pack(1, doc).unwrap();
        assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(&with[2..]).map(|i| i.get()), Some(OVF_DICTIONARY_ID));
        assert!(with.len() < without.len(), "{} with the dictionary, {} without", with.len(), without.len());
        // Any context reads either: the frame says which dictionary it needs.
        for stored in [&with, &without] {
            assert_eq!(&Zstd::default().unpack(stored).unwrap()[2..], &doc[..]);
            assert_eq!(&docs.unpack(stored).unwrap()[2..], &doc[..]);
        }
        // The dictionary is part of the stored format: these bytes never change.
        assert_eq!(OVF_DICTIONARY.len(), 65536);
        assert_eq!(u32::from_le_bytes(OVF_DICTIONARY[4..8].try_into().unwrap()), OVF_DICTIONARY_ID);
        // A frame that names a dictionary this build lacks is refused, saying which.
        let mut other = with.clone();
        other[2 + 5..2 + 9].copy_from_slice(&7u32.to_le_bytes());
        let err = Zstd::default().unpack(&other).unwrap_err();
        assert!(format!("{err:?}").contains("dictionary"), "{err:?}");
    }

    #[test]
    fn a_compressed_value_of_a_newer_or_no_format_is_refused_by_name() {
        let mut stored = pack_value(&codec::encode(&1u8).unwrap()).unwrap();
        stored[1] = (codec::CURRENT + 1) | COMPRESSED;
        assert!(
            matches!(Zstd::default().unpack(&stored), Err(CodecError::Newer { found }) if found == codec::CURRENT + 1)
        );
        assert!(matches!(Zstd::default().unpack(&[MARK, COMPRESSED, 1]), Err(CodecError::BadHeader)));
        // And a build that knows nothing of compression sees a format newer than its own.
        assert!(matches!(codec::split(&stored), Err(CodecError::Newer { .. })));
    }
}
