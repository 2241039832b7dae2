//! The storage domain: a directory that every host sees (NFS in production, one shared
//! directory in the sandbox) holding qcow2 disk images made with `qemu-img`. It only makes,
//! copies and removes files; which disks exist is the replicated state's business.

use std::path::{Path, PathBuf};

use corral_raft::ClusterError;
use tokio::process::Command;

/// A VM's cloud-init seed in the storage domain: written by the host that starts it, so that a
/// migration's destination and an HA restart find it too; removed with the VM.
pub fn seed_file(vm: uuid::Uuid) -> String {
    format!("cidata-{vm}.iso")
}

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

    /// `path` relative to the storage domain when it lies inside it (as the state keeps it, so
    /// each host resolves it under its own mount), else as it is.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir).unwrap_or(path).display().to_string()
    }

    /// The virtual size in MiB of an image that a running VM may hold open (a shared read).
    pub async fn virtual_size_mib_shared(&self, path: &Path) -> Result<u64, ClusterError> {
        let out =
            Command::new("qemu-img").args(["info", "-U", "--output=json"]).arg(path).output().await.map_err(|e| {
                ClusterError::FailedPrecondition(format!("cannot run qemu-img (install qemu-utils on every host): {e}"))
            })?;
        let info: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| ClusterError::Internal(format!("qemu-img info gave no JSON for {}: {e}", path.display())))?;
        let bytes = info["virtual-size"]
            .as_u64()
            .ok_or_else(|| ClusterError::Internal("qemu-img info gave no virtual-size".into()))?;
        Ok(bytes.div_ceil(1024 * 1024))
    }

    /// A file a user names for a VM to boot from (`field`: kernel, initrd): a path relative to
    /// the storage domain, or an absolute one inside it. `..` is refused, and so is a symbolic
    /// link that leads out of it, so a VM can never be made to read a host file such as
    /// /etc/shadow.
    pub fn boot_file(&self, field: &str, path: &str) -> Result<PathBuf, ClusterError> {
        let refuse = |why: &str| {
            ClusterError::invalid(
                field,
                format!(
                    "'{}' {why}: give a file inside the storage domain {} (a path relative to it, or under it)",
                    corral_raft::error::quote(path),
                    self.dir.display()
                ),
            )
        };
        let p = Path::new(path);
        if path.contains('\0') {
            return Err(refuse("contains a NUL byte"));
        }
        if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(refuse("climbs out with '..'"));
        }
        let full = if p.is_absolute() {
            p.strip_prefix(&self.dir).map_err(|_| refuse("lies outside the storage domain"))?;
            p.to_path_buf()
        } else {
            self.dir.join(p)
        };
        if full == self.dir {
            return Err(refuse("is the storage domain itself"));
        }
        // A link inside the domain may point anywhere: follow it when it exists.
        if let (Ok(real), Ok(root)) = (full.canonicalize(), self.dir.canonicalize()) {
            if !real.starts_with(&root) {
                return Err(refuse("leads out of the storage domain through a symbolic link"));
            }
        }
        Ok(full)
    }

    /// Makes an empty qcow2 image of `size_mib`.
    pub async fn create(&self, file: &str, size_mib: u64) -> Result<(), ClusterError> {
        self.create_as(file, size_mib, "qcow2").await
    }

    /// Makes an empty image of `size_mib` in `format` (qcow2 or raw).
    pub async fn create_as(&self, file: &str, size_mib: u64, format: &str) -> Result<(), ClusterError> {
        let path = self.path(file);
        if path.exists() {
            return Err(ClusterError::AlreadyExists(format!("disk image {} already exists", path.display())));
        }
        qemu_img(&["create", "-q", "-f", format], &[path.as_os_str(), format!("{size_mib}M").as_ref()]).await
    }

    /// Grows an image that no running VM holds to `size_mib`.
    pub async fn resize(&self, file: &str, format: &str, size_mib: u64) -> Result<(), ClusterError> {
        let path = self.path(file);
        qemu_img(&["resize", "-q", "-f", format], &[path.as_os_str(), format!("{size_mib}M").as_ref()]).await
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

    /// Takes internal snapshot `tag` of an image no running VM holds (`qemu-img snapshot -c`).
    pub async fn snapshot_take(&self, file: &str, tag: &str) -> Result<(), ClusterError> {
        let path = self.path(file);
        qemu_img(&["snapshot", "-c", tag], &[path.as_os_str()]).await
    }

    /// Brings an image no running VM holds back to internal snapshot `tag`.
    pub async fn snapshot_revert(&self, file: &str, tag: &str) -> Result<(), ClusterError> {
        let path = self.path(file);
        qemu_img(&["snapshot", "-a", tag], &[path.as_os_str()]).await
    }

    /// Removes internal snapshot `tag` from an image no running VM holds; an image without it
    /// (or gone) is fine.
    pub async fn snapshot_drop(&self, file: &str, tag: &str) -> Result<(), ClusterError> {
        let path = self.path(file);
        if !path.exists() || !self.snapshot_tags(file).await?.iter().any(|t| t == tag) {
            return Ok(());
        }
        qemu_img(&["snapshot", "-d", tag], &[path.as_os_str()]).await
    }

    /// The names of the internal snapshots in an image (read shared: a running VM may hold it).
    pub async fn snapshot_tags(&self, file: &str) -> Result<Vec<String>, ClusterError> {
        let info = self.info_shared(&self.path(file)).await?;
        Ok(info["snapshots"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    /// The size of the memory internal snapshot `tag` of an image holds (MiB; 0 for a disk-only
    /// one); `None` when the image has no such snapshot.
    pub async fn snapshot_memory_mib(&self, file: &str, tag: &str) -> Result<Option<u64>, ClusterError> {
        let info = self.info_shared(&self.path(file)).await?;
        Ok(info["snapshots"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == tag))
            .map(|s| s["vm-state-size"].as_u64().unwrap_or(0).div_ceil(1024 * 1024)))
    }

    /// How much of the storage an image takes (MiB), its snapshots included.
    pub async fn allocated_mib_shared(&self, file: &str) -> Result<u64, ClusterError> {
        let info = self.info_shared(&self.path(file)).await?;
        Ok(info["actual-size"].as_u64().unwrap_or(0).div_ceil(1024 * 1024))
    }

    /// A new qcow2 image `to` holding what image `from` held at its internal snapshot `tag`
    /// (read shared: the VM may run on, and a snapshot's clusters never change).
    pub async fn copy_snapshot(&self, from: &str, tag: &str, to: &str) -> Result<(), ClusterError> {
        let (src, dst) = (self.path(from), self.path(to));
        if dst.exists() {
            return Err(ClusterError::AlreadyExists(format!("disk image {} already exists", dst.display())));
        }
        let snapshot = format!("snapshot.name={tag}");
        qemu_img(&["convert", "-q", "-U", "-O", "qcow2", "-l", &snapshot], &[src.as_os_str(), dst.as_os_str()]).await
    }

    /// A thin image `to`: a qcow2 overlay whose backing file is the base `base` (both in the
    /// storage domain, named relative to it, so that every host resolves the chain alike).
    pub async fn overlay(&self, base: &str, base_format: &str, to: &str) -> Result<(), ClusterError> {
        let dst = self.path(to);
        if dst.exists() {
            return Err(ClusterError::AlreadyExists(format!("disk image {} already exists", dst.display())));
        }
        if !self.path(base).is_file() {
            return Err(ClusterError::FailedPrecondition(format!(
                "the template base {} is missing from the storage domain",
                self.path(base).display()
            )));
        }
        qemu_img(&["create", "-q", "-f", "qcow2", "-b", base, "-F", base_format], &[dst.as_os_str()]).await
    }

    /// A template's base `to`: a full copy of image `from`, made read-only (thin disks build on it).
    pub async fn make_base(&self, from: &str, to: &str) -> Result<(), ClusterError> {
        self.copy(from, to).await?;
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(self.path(to), std::fs::Permissions::from_mode(0o444))
            .await
            .map_err(|e| ClusterError::Internal(format!("cannot make {} read-only: {e}", self.path(to).display())))
    }

    /// Writes a NoCloud seed (an ISO 9660 image labelled `cidata` holding `user-data`,
    /// `meta-data` and, when given, `network-config`) to `file`, replacing what was there.
    pub async fn write_seed(
        &self,
        file: &str,
        user_data: &str,
        meta_data: &str,
        network_config: Option<&str>,
    ) -> Result<(), ClusterError> {
        let dir = tempfile::tempdir()
            .map_err(|e| ClusterError::Internal(format!("cannot make a directory for a cloud-init seed: {e}")))?;
        let mut names = vec!["user-data", "meta-data"];
        let mut docs = vec![user_data, meta_data];
        if let Some(n) = network_config {
            names.push("network-config");
            docs.push(n);
        }
        for (name, doc) in names.iter().zip(&docs) {
            tokio::fs::write(dir.path().join(name), doc)
                .await
                .map_err(|e| ClusterError::Internal(format!("cannot write the cloud-init {name}: {e}")))?;
        }
        let dst = self.path(file);
        let part = self.path(&format!("{file}.part"));
        let mut cmd = Command::new("genisoimage");
        cmd.args(["-quiet", "-output"]).arg(&part).args(["-volid", "cidata", "-joliet", "-rock"]);
        cmd.args(names.iter().map(|n| dir.path().join(n)));
        let ran = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.kill_on_drop(true).output()).await;
        let failed = match ran {
            Err(_) => Some(ClusterError::Unavailable("genisoimage did not finish in 60 s".into())),
            Ok(Err(e)) => Some(ClusterError::FailedPrecondition(format!(
                "cannot run genisoimage to make the cloud-init seed (install genisoimage on every host): {e}"
            ))),
            Ok(Ok(out)) if !out.status.success() => Some(ClusterError::Internal(format!(
                "genisoimage failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Ok(Ok(_)) => None,
        };
        if let Some(e) = failed {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        tokio::fs::rename(&part, &dst)
            .await
            .map_err(|e| ClusterError::Internal(format!("cannot put the seed at {}: {e}", dst.display())))
    }

    /// Free space in the storage domain, in MiB.
    pub fn free_mib(&self) -> Result<u64, ClusterError> {
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(|e| {
            ClusterError::Internal(format!("cannot read the free space of {}: {e}", self.dir.display()))
        })?;
        Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64) / (1024 * 1024))
    }

    async fn info_shared(&self, path: &Path) -> Result<serde_json::Value, ClusterError> {
        let out =
            Command::new("qemu-img").args(["info", "-U", "--output=json"]).arg(path).output().await.map_err(|e| {
                ClusterError::FailedPrecondition(format!("cannot run qemu-img (install qemu-utils on every host): {e}"))
            })?;
        if !out.status.success() {
            return Err(ClusterError::Internal(format!(
                "qemu-img info {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| ClusterError::Internal(format!("qemu-img info gave no JSON for {}: {e}", path.display())))
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

/// How long one `qemu-img` may take (a copy of a large image included) before it is killed:
/// storage that stopped answering must not hold a caller, or a VM's snapshot lock, for ever.
const QEMU_IMG_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

async fn qemu_img(args: &[&str], paths: &[&std::ffi::OsStr]) -> Result<(), ClusterError> {
    let run = Command::new("qemu-img").args(args).args(paths).kill_on_drop(true).output();
    let out = tokio::time::timeout(QEMU_IMG_PATIENCE, run)
        .await
        .map_err(|_| {
            ClusterError::Unavailable(format!(
                "qemu-img {} did not finish in {} minutes (the storage domain does not answer?)",
                args[0],
                QEMU_IMG_PATIENCE.as_secs() / 60
            ))
        })?
        .map_err(|e| {
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
