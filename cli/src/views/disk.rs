//! `disk list`: every disk in the cluster, floating or attached to a VM.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::non_empty;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskView {
    pub id: String,
    pub name: String,
    pub size_mib: u64,
    pub path: String,
    pub format: String,
    /// The VM's name; null for a floating disk.
    pub vm: Option<String>,
    /// How it is attached to its VM; null for a floating disk.
    pub attachment: Option<AttachmentView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentView {
    /// "virtio" or "scsi".
    pub interface: String,
    pub plugged: bool,
    pub optional: bool,
    pub bootable: bool,
}

impl From<proto::Disk> for DiskView {
    fn from(d: proto::Disk) -> Self {
        DiskView {
            id: d.id,
            name: d.name,
            size_mib: d.size_mib,
            path: d.path,
            format: d.format,
            vm: non_empty(Some(d.vm)),
            attachment: d.attachment.map(|a| AttachmentView {
                interface: super::word::<proto::DiskInterface>(a.interface_enum, a.interface),
                plugged: a.plugged,
                optional: a.optional,
                bootable: a.bootable,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floating_disks_have_a_null_vm() {
        let disk = |vm: &str| proto::Disk { name: "d".into(), size_mib: 512, vm: vm.into(), ..Default::default() };
        let floating = serde_json::to_value(DiskView::from(disk(""))).unwrap();
        assert_eq!(floating["vm"], serde_json::Value::Null);
        assert_eq!(floating["size_mib"], 512);
        let attached = serde_json::to_value(DiskView::from(disk("web1"))).unwrap();
        assert_eq!(attached["vm"], "web1");
        let keys: Vec<&str> = attached.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 7);
        for key in ["id", "name", "size_mib", "path", "format", "vm", "attachment"] {
            assert!(keys.contains(&key), "{key}");
        }
    }
}
