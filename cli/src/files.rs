//! The operator's own files that commands read or write (OVF documents, engine images). Every
//! error names the file and says why in a few words; nothing here talks to the cluster, and
//! nothing overwrites a file unless told to.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::connect::strip_os_error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{path} exists; give --force to overwrite it")]
    Exists { path: String },
    #[error("cannot make {path} absolute: {reason}")]
    Absolute { path: String, reason: String },
}

fn reason(error: &io::Error) -> String {
    strip_os_error(&error.to_string())
}

/// The whole file as text.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError::Read { path: path.display().to_string(), reason: reason(&e) })
}

/// The whole file as text, refused when it is larger than `most` bytes (what the cluster would
/// refuse anyway, said before it is sent).
pub fn read_bounded(path: &Path, most: u64) -> Result<String, FileError> {
    let too_big = |len: u64| FileError::Read {
        path: path.display().to_string(),
        reason: format!("it is {len} bytes, more than the {most} it may be"),
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > most => Err(too_big(m.len())),
        _ => read_text(path),
    }
}

/// Refuses an existing file unless `overwrite`, so that a command can say so before it does
/// any work (`write_text` checks again as it creates the file).
pub fn check_writable(path: &Path, overwrite: bool) -> Result<(), FileError> {
    match overwrite || !path.exists() {
        true => Ok(()),
        false => Err(FileError::Exists { path: path.display().to_string() }),
    }
}

/// Writes `text` to a new file, or over an existing one only when `overwrite`.
pub fn write_text(path: &Path, text: &str, overwrite: bool) -> Result<(), FileError> {
    let shown = || path.display().to_string();
    let mut options = OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        // Checked and created in one step, so a file that appears meanwhile is not lost.
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => FileError::Exists { path: shown() },
        _ => FileError::Write { path: shown(), reason: reason(&e) },
    })?;
    file.write_all(text.as_bytes()).map_err(|e| FileError::Write { path: shown(), reason: reason(&e) })
}

/// `path` as an absolute path: resolved (symlinks, `..`) when it exists here, else joined to
/// the current directory, for a node that looks for it on its own machine.
pub fn absolute(path: &Path) -> Result<(PathBuf, bool), FileError> {
    match std::fs::canonicalize(path) {
        Ok(resolved) => Ok((resolved, true)),
        Err(_) => std::path::absolute(path)
            .map(|p| (p, false))
            .map_err(|e| FileError::Absolute { path: path.display().to_string(), reason: reason(&e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-cli-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let dir = scratch("overwrite");
        let file = dir.join("web1.ovf");
        write_text(&file, "<a/>", false).unwrap();
        assert_eq!(check_writable(&file, false), Err(FileError::Exists { path: file.display().to_string() }));
        check_writable(&file, true).unwrap();
        let err = write_text(&file, "<b/>", false).unwrap_err();
        assert_eq!(err.to_string(), format!("{} exists; give --force to overwrite it", file.display()));
        assert_eq!(read_text(&file).unwrap(), "<a/>");
        write_text(&file, "<b/>", true).unwrap();
        assert_eq!(read_text(&file).unwrap(), "<b/>");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn read_errors_name_the_file_without_os_numbers() {
        let err = read_text(Path::new("/nonexistent/web1.ovf")).unwrap_err();
        assert_eq!(err.to_string(), "cannot read /nonexistent/web1.ovf: No such file or directory");
    }

    #[test]
    fn paths_become_absolute_whether_or_not_they_exist_here() {
        let dir = scratch("absolute");
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("engine.qcow2"), "").unwrap();
        let (found, here) = absolute(&dir.join("sub/../engine.qcow2")).unwrap();
        assert!(here && found.is_absolute() && found.ends_with("engine.qcow2"), "{found:?}");
        assert!(!found.to_string_lossy().contains(".."), "{found:?}");
        let (elsewhere, here) = absolute(Path::new("images/engine.qcow2")).unwrap();
        assert!(!here && elsewhere.is_absolute() && elsewhere.ends_with("images/engine.qcow2"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
