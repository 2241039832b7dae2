//! How a document of the document tree (the OVF store) is stored: format v0 wrote the bare
//! document, v1 the header and then the same bytes, and this build the header with its
//! compressed flag and the document as a zstd frame made with the OVF dictionary (`compress.rs`;
//! documents never leave the node). Documents are XML, which never begins with the header's mark, so all three read back
//! without help.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::{self, CodecError};
use crate::compress::Zstd;

/// Documents written to the tree by this process, and when the last batch was (Unix ms; 0:
/// none yet). Process-wide, for metrics: a daemon opens one store.
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static LAST_WRITE_MS: AtomicU64 = AtomicU64::new(0);

/// Notes that a batch of `count` documents (written or removed) reached the tree.
pub(crate) fn note_written(count: usize) {
    if count == 0 {
        return;
    }
    WRITTEN.fetch_add(count as u64, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    LAST_WRITE_MS.store(now, Ordering::Relaxed);
}

/// Documents written (or removed) by this process so far, and when the last were (Unix ms, 0
/// for never).
pub fn written() -> (u64, u64) {
    (WRITTEN.load(Ordering::Relaxed), LAST_WRITE_MS.load(Ordering::Relaxed))
}

/// The document held in a stored value.
pub(crate) fn read(stored: &[u8], z: &mut Zstd) -> Result<Vec<u8>, CodecError> {
    let plain = z.unpack(stored)?;
    let (_, doc) = codec::split(&plain)?;
    Ok(doc.to_vec())
}

/// Whether `stored` holds `doc` (an unreadable value does not: it is to be written again).
pub(crate) fn holds(stored: &[u8], doc: &[u8], z: &mut Zstd) -> bool {
    read(stored, z).is_ok_and(|old| old == doc)
}

/// The stored value of `doc`, in `format`: compressed, except in format v0 (the value a
/// build that reads only v0 must find).
pub(crate) fn write(doc: &[u8], format: u8, z: &mut Zstd) -> Result<Vec<u8>, CodecError> {
    if format == 0 {
        return Ok(doc.to_vec());
    }
    z.pack(format, doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MARK;
    use crate::compress::COMPRESSED;

    const DOC: &[u8] =
        br#"<?xml version="1.0" encoding="UTF-8"?><ovf:Envelope><Section/><Section/><Section/></ovf:Envelope>"#;

    #[test]
    fn a_document_is_kept_compressed_and_every_older_form_still_reads() {
        let mut z = Zstd::default();
        let stored = write(DOC, 1, &mut z).unwrap();
        assert_eq!(&stored[..2], &[MARK, 1 | COMPRESSED]);
        assert_eq!(read(&stored, &mut z).unwrap(), DOC);
        assert!(holds(&stored, DOC, &mut z));
        assert!(!holds(&stored, b"<other/>", &mut z));
        // v0 (the bare document, still what a level-0 cluster writes) and v1 (header, bytes).
        assert_eq!(write(DOC, 0, &mut z).unwrap(), DOC);
        assert_eq!(read(DOC, &mut z).unwrap(), DOC);
        let v1 = [&[MARK, 1][..], DOC].concat();
        assert_eq!(read(&v1, &mut z).unwrap(), DOC);
        assert!(holds(&v1, DOC, &mut z));
    }

    #[test]
    fn a_damaged_document_is_an_error_and_is_written_again() {
        let mut z = Zstd::default();
        let mut stored = write(DOC, 1, &mut z).unwrap();
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert!(matches!(read(&stored, &mut z), Err(CodecError::Decompress { version: 1, .. })));
        assert!(!holds(&stored, DOC, &mut z));
        assert!(read(&stored[..5], &mut z).is_err());
    }
}
