//! VM snapshots (cluster level 4): what each holds, the tree they form, a preview in progress,
//! and the work a host does on the images for them. The snapshots themselves are internal qcow2
//! snapshots inside the VM's images in the shared storage domain, each named by its id; libvirt
//! keeps no metadata about them (it would refuse to migrate the domain), the cluster keeps it all
//! here and in the VM's OVF document (DESIGN.md, "Snapshots").

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RunLimits, VmConfig};
use crate::typ::NodeId;

/// The internal snapshots a preview saves the VM's present disks under, so that `undo` can go
/// back to them (oVirt's "Active VM before the preview"), start with this; each preview has its
/// own (`undo_tag`), so that one left behind by a preview that failed is never taken for another's.
pub const UNDO_PREFIX: &str = "corral-before-preview";

/// The undo point of the preview made by snapshot job `seq`.
pub fn undo_tag(seq: u64) -> String {
    format!("{UNDO_PREFIX}-{seq}")
}

/// How long a snapshot job may go without its host's report before the leader fails it (the
/// VM would stay locked): a memory save or load is cancelled by its host after 10 minutes, and
/// the rest takes seconds.
pub const SNAPSHOT_JOB_DEADLINE_MS: i64 = 20 * 60 * 1000;

/// One snapshot of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: Uuid,
    /// The snapshot the VM's state grew from when this one was taken (`None`: the first).
    pub parent: Option<Uuid>,
    pub description: String,
    pub created_ms: i64,
    /// It holds the guest's memory (taken while the VM ran): restoring it resumes the guest.
    pub memory: bool,
    /// The disks it holds, by id.
    pub disks: Vec<Uuid>,
    pub status: SnapshotStatus,
    /// The VM's configuration when it was taken.
    pub config: Box<VmConfig>,
    /// With memory: the running domain's definition (libvirt XML), which the guest must be
    /// started with to load the memory, and the hot-plug limits it ran with.
    pub domain_xml: Option<String>,
    pub run_limits: Option<RunLimits>,
    /// The size of the saved memory, as the host read it once it was saved.
    pub memory_mib: u64,
}

impl Snapshot {
    /// The internal snapshot's name in each image.
    pub fn tag(&self) -> String {
        self.id.to_string()
    }
}

/// oVirt's snapshot states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotStatus {
    #[default]
    Ok,
    /// Being taken or deleted: a host works on the images.
    Locked,
    /// The VM runs (or will run) from it until `commit` or `undo`.
    InPreview,
}

impl SnapshotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStatus::Ok => "ok",
            SnapshotStatus::Locked => "locked",
            SnapshotStatus::InPreview => "in_preview",
        }
    }
}

/// A VM's snapshots, flattened into the VM when encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSnapshots {
    /// Oldest first.
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// "You are here": the snapshot the VM's present state grew from (the parent of the next).
    #[serde(default)]
    pub current_snapshot: Option<Uuid>,
    #[serde(default)]
    pub preview: Option<Preview>,
    /// Work on the images in progress; the VM is locked for other changes meanwhile.
    #[serde(default)]
    pub snapshot_job: Option<SnapshotJob>,
    /// Grows with every job, so that a report on an earlier one is ignored.
    #[serde(default)]
    pub snapshot_seq: u64,
    /// Why the last job failed (its changes were not made).
    #[serde(default)]
    pub snapshot_error: Option<String>,
    /// The next start loads this snapshot's memory (a memory preview or restore): the guest
    /// resumes where it was instead of booting.
    #[serde(default)]
    pub resume_from: Option<Uuid>,
}

impl VmSnapshots {
    pub fn get(&self, id: Uuid) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.id == id)
    }

    pub fn get_mut(&mut self, id: Uuid) -> Option<&mut Snapshot> {
        self.snapshots.iter_mut().find(|s| s.id == id)
    }

    /// Every snapshot below `id` in the tree (its children, theirs, ...), oldest first.
    pub fn descendants(&self, id: Uuid) -> Vec<Uuid> {
        let mut out: Vec<Uuid> = Vec::new();
        // Oldest first: a child is always younger than its parent, so one pass finds them all.
        for s in &self.snapshots {
            if s.parent.is_some_and(|p| p == id || out.contains(&p)) {
                out.push(s.id);
            }
        }
        out
    }

    /// Removes snapshot `id`, its children taking its parent (and "you are here" moving up).
    pub fn remove(&mut self, id: Uuid) -> Option<Snapshot> {
        let i = self.snapshots.iter().position(|s| s.id == id)?;
        let gone = self.snapshots.remove(i);
        for s in self.snapshots.iter_mut().filter(|s| s.parent == Some(id)) {
            s.parent = gone.parent;
        }
        if self.current_snapshot == Some(id) {
            self.current_snapshot = gone.parent;
        }
        if self.resume_from == Some(id) {
            self.resume_from = None;
        }
        Some(gone)
    }
}

/// A preview in progress: what of the snapshot the VM runs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub snapshot: Uuid,
    pub memory: bool,
    /// The disks brought back to the snapshot (the others run on as they were).
    pub disks: Vec<Uuid>,
    /// The configuration is the snapshot's; `saved_config` is the one `undo` puts back.
    pub config: bool,
    pub saved_config: Option<Box<VmConfig>>,
    /// Every disk the VM had when the preview began: each holds the undo point.
    pub undo_disks: Vec<Uuid>,
    /// The undo point's internal snapshot in those disks.
    #[serde(default)]
    pub undo_tag: String,
}

/// Work on a VM's images, by the host that runs it (or, for a VM that is down, by the node
/// that took the request), reported back with `Op::SnapshotJobDone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotJob {
    pub seq: u64,
    pub host: NodeId,
    pub started_ms: i64,
    pub kind: SnapshotJobKind,
    /// What the host does, in order; it stops at the first step that fails.
    pub steps: Vec<SnapshotStep>,
}

/// What a job is for: what apply makes of the state once it is done (or failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotJobKind {
    /// Snapshot `snapshot` (recorded locked) is taken; `dropped` are removed for the cap.
    Create {
        snapshot: Uuid,
        dropped: Vec<Uuid>,
    },
    Preview(Preview),
    Commit,
    Undo,
    /// Disk-only restore: the VM's configuration and disks become the snapshot's.
    Restore {
        snapshot: Uuid,
    },
    Delete {
        snapshot: Uuid,
    },
}

/// One step on the images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotStep {
    /// Takes internal snapshot `tag` of `disks` (live when the VM runs); with `memory` the
    /// guest's memory too (only while it runs).
    Take { tag: String, disks: Vec<Uuid>, memory: bool },
    /// Brings `disks` back to `tag` (the VM is down).
    Revert { tag: String, disks: Vec<Uuid> },
    /// Removes `tag` from `disks` (live when the VM runs). A disk without it is fine.
    Drop { tag: String, disks: Vec<Uuid> },
}
