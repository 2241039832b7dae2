//! `vm snapshot list` and `vm snapshot show`: a VM's snapshots as JSON and tables.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::{rfc3339, VmView};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotView {
    pub id: String,
    /// The snapshot it grew from; null for the first.
    pub parent: Option<String>,
    pub description: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// It holds the guest's memory.
    pub memory: bool,
    /// Names of the disks it holds.
    pub disks: Vec<String>,
    /// "ok", "locked" or "in_preview".
    pub status: String,
    /// The VM's present state grew from it ("you are here" sits below it).
    pub current: bool,
    /// The saved memory's size.
    pub memory_mib: u64,
    /// Disks it holds that the VM no longer has.
    #[serde(default)]
    pub disks_gone: Vec<String>,
}

impl From<&proto::Snapshot> for SnapshotView {
    fn from(s: &proto::Snapshot) -> Self {
        SnapshotView {
            id: s.id.clone(),
            parent: s.parent.clone(),
            description: s.description.clone(),
            created: rfc3339(s.created_unix_ms),
            memory: s.memory,
            disks: s.disks.iter().map(|d| d.name.clone()).collect(),
            status: s.status.clone(),
            current: s.current,
            memory_mib: s.memory_mib,
            disks_gone: s.disks.iter().filter(|d| !d.present).map(|d| d.name.clone()).collect(),
        }
    }
}

/// `vm snapshot show`: the snapshot, its disks with their images' sizes, and its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDetailView {
    #[serde(flatten)]
    pub snapshot: SnapshotView,
    pub disk_sizes: Vec<SnapshotDiskView>,
    pub config: Option<VmView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDiskView {
    pub id: String,
    pub name: String,
    /// The VM still has it.
    pub present: bool,
    /// What its image takes in the storage domain now (all its snapshots share it).
    pub image_mib: Option<u64>,
}

impl From<proto::Snapshot> for SnapshotDetailView {
    fn from(s: proto::Snapshot) -> Self {
        SnapshotDetailView {
            snapshot: SnapshotView::from(&s),
            disk_sizes: s
                .disks
                .iter()
                .map(|d| SnapshotDiskView {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    present: d.present,
                    image_mib: d.image_mib,
                })
                .collect(),
            config: s.config.map(VmView::from),
        }
    }
}
