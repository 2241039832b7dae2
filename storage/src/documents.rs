//! How a document of the document tree (the OVF store) is stored: format v0 wrote the bare
//! document, later formats the header and then the same bytes. Documents are XML, which never
//! begins with the header's mark, so both read back without help.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::{self, CodecError};

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
pub(crate) fn read(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    let (_, doc) = codec::split(stored)?;
    Ok(doc.to_vec())
}

/// The stored value of `doc`, in `format`.
pub(crate) fn write(doc: &[u8], format: u8) -> Vec<u8> {
    if format == 0 {
        return doc.to_vec();
    }
    let mut out = Vec::with_capacity(doc.len() + 2);
    out.extend_from_slice(&[codec::MARK, format]);
    out.extend_from_slice(doc);
    out
}
