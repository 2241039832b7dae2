//! The storage domain: a directory that every host sees (NFS in production, one shared
//! directory in the sandbox) holding qcow2 disk images made with `qemu-img`. It only makes,
//! copies and removes files; which disks exist is the replicated state's business.

use std::path::{Path, PathBuf};

use corral_raft::ClusterError;
use tokio::process::Command;

#[derive(Debug, Clone)]
pub struct StorageDomain {
    dir: PathBuf,
}

impl StorageDomain {
    pub fn new(dir: &Path) -> Self {
        StorageDomain { dir: dir.to_path_buf() }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Resolves a path given by a user: relative paths are inside the storage domain.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Makes an empty qcow2 image of `size_mib`.
    pub async fn create(&self, file: &str, size_mib: u64) -> Result<(), ClusterError> {
        let path = self.path(file);
        if path.exists() {
            return Err(ClusterError::AlreadyExists(format!("disk image {} already exists", path.display())));
        }
        qemu_img(&["create", "-q", "-f", "qcow2"], &[path.as_os_str(), format!("{size_mib}M").as_ref()]).await
    }

    /// Copies image `from` to a new image `to` (a full, independent copy).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), ClusterError> {
        let (src, dst) = (self.path(from), self.path(to));
        if dst.exists() {
            return Err(ClusterError::AlreadyExists(format!("disk image {} already exists", dst.display())));
        }
        qemu_img(&["convert", "-q", "-O", "qcow2"], &[src.as_os_str(), dst.as_os_str()]).await
    }

    /// Copies an image from anywhere on this machine into the storage domain as `to` (qcow2).
    pub async fn import(&self, from: &Path, to: &str) -> Result<(), ClusterError> {
        let dst = self.path(to);
        if dst.exists() {
            return Err(ClusterError::AlreadyExists(format!("disk image {} already exists", dst.display())));
        }
        qemu_img(&["convert", "-q", "-O", "qcow2"], &[from.as_os_str(), dst.as_os_str()]).await
    }

    /// The virtual size of an image in MiB (rounded up), as `qemu-img info` reports it.
    pub async fn virtual_size_mib(&self, path: &Path) -> Result<u64, ClusterError> {
        let out = Command::new("qemu-img").args(["info", "--output=json"]).arg(path).output().await.map_err(|e| {
            ClusterError::FailedPrecondition(format!("cannot run qemu-img (install qemu-utils on every host): {e}"))
        })?;
        if !out.status.success() {
            return Err(ClusterError::invalid(
                "image",
                format!(
                    "{} is not a disk image qemu-img can read: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let info: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| ClusterError::Internal(format!("qemu-img info gave no JSON: {e}")))?;
        let bytes = info["virtual-size"]
            .as_u64()
            .ok_or_else(|| ClusterError::Internal("qemu-img info gave no virtual-size".into()))?;
        Ok(bytes.div_ceil(1024 * 1024).max(1))
    }

    /// Removes images; a missing file is not an error (it is gone either way).
    pub async fn remove(&self, files: &[String]) {
        for f in files {
            match tokio::fs::remove_file(self.path(f)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("could not remove disk image {}: {e}", self.path(f).display()),
            }
        }
    }
}

async fn qemu_img(args: &[&str], paths: &[&std::ffi::OsStr]) -> Result<(), ClusterError> {
    let out = Command::new("qemu-img").args(args).args(paths).output().await.map_err(|e| {
        ClusterError::FailedPrecondition(format!("cannot run qemu-img (install qemu-utils on every host): {e}"))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Internal(format!(
            "qemu-img {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_copy_and_remove_images() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StorageDomain::new(dir.path());
        sd.create("a.qcow2", 64).await.unwrap();
        let err = sd.create("a.qcow2", 64).await.unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        sd.copy("a.qcow2", "b.qcow2").await.unwrap();
        let info = std::process::Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(sd.path("b.qcow2"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(text.contains("\"format\": \"qcow2\"") && text.contains("\"virtual-size\": 67108864"), "{text}");
        sd.remove(&["a.qcow2".into(), "b.qcow2".into(), "missing.qcow2".into()]).await;
        assert!(!sd.path("a.qcow2").exists() && !sd.path("b.qcow2").exists());
    }
}
