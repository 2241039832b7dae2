//! A node's identity (its cluster, its id, its name), in a small file of its own beside the
//! database, `<data-dir>/identity`: written once, atomically and synced, and never rewritten.
//! It is what tells a damaged data dir (an identity, but no readable state) from a new node
//! (neither), so it must never be derived from the database it vouches for.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::CURRENT;

const FILE: &str = "identity";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The format of this record.
    pub format: u8,
    pub cluster_id: String,
    pub cluster_name: String,
    pub node_id: u64,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the identity file {path} could not be read")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the identity file {path} is damaged ({why})")]
    Damaged { path: PathBuf, why: String },
    #[error("the identity file {path} is in format v{found}, newer than v{CURRENT}, the newest this build of Corral reads: upgrade this node")]
    Newer { path: PathBuf, found: u8 },
    #[error("the identity file {path} could not be written")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the identity file {path} exists already: a node's identity is written once")]
    Exists { path: PathBuf },
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The identity in `dir`, or `None` when there is no identity file.
pub fn read(dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = path(dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IdentityError::Read { path, source }),
    };
    #[derive(Deserialize)]
    struct Head {
        format: u8,
    }
    let head: Head =
        serde_json::from_slice(&text).map_err(|e| IdentityError::Damaged { path: path.clone(), why: e.to_string() })?;
    if head.format > CURRENT {
        return Err(IdentityError::Newer { path, found: head.format });
    }
    let id: Identity =
        serde_json::from_slice(&text).map_err(|e| IdentityError::Damaged { path: path.clone(), why: e.to_string() })?;
    Ok(Some(id))
}

/// Writes `id` as the identity of `dir`: to a temporary file, synced, renamed into place, and the
/// directory synced, so a crash leaves either no identity or the whole of it.
pub fn write_once(dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let path = path(dir);
    if path.exists() {
        return Err(IdentityError::Exists { path });
    }
    let tmp = dir.join(format!("{FILE}.tmp"));
    let werr = |source| IdentityError::Write { path: path.clone(), source };
    let mut text = serde_json::to_vec_pretty(id).expect("an identity always encodes");
    text.push(b'\n');
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    f.write_all(&text).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(werr)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_read_back_and_refused_when_damaged_or_newer() {
        let dir = tempfile::TempDir::new().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let id = Identity {
            format: CURRENT,
            cluster_id: "c1".into(),
            cluster_name: "lab".into(),
            node_id: 2,
            name: "host2".into(),
        };
        write_once(dir.path(), &id).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(id.clone()));
        assert!(matches!(write_once(dir.path(), &id), Err(IdentityError::Exists { .. })));

        std::fs::write(path(dir.path()), b"{\"format\":1,\"node_id\":").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("the identity file") && err.contains("is damaged"), "{err}");

        std::fs::write(path(dir.path()), format!("{{\"format\":{}}}", CURRENT + 1)).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("format v{}, newer than v{CURRENT}", CURRENT + 1)), "{err}");
    }
}
