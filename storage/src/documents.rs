//! How a document of the document tree (the OVF store) is stored: format v0 wrote the bare
//! document, later formats the header and then the same bytes. Documents are XML, which never
//! begins with the header's mark, so both read back without help.

use crate::codec::{self, CodecError};

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
