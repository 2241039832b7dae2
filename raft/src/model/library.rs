//! The library a new VM starts from (cluster level 5): ISO images, templates and service
//! offerings, and what a VM keeps of where it came from (its template, offering, cloud-init seed,
//! boot order, statelessness). The images themselves are files in the shared storage domain;
//! only their records are here (DESIGN.md, "The library").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Attachment, VmConfig};

/// The level from which the cluster has a library (ISOs, templates, offerings), cloud-init,
/// boot order and stateless VMs: commands and fields an earlier build cannot read.
pub const LIBRARY_LEVEL: u8 = 5;

/// The largest ISO image the library takes.
pub const MAX_ISO_BYTES: u64 = 64 << 30;
/// The most of each kind of object the library keeps (each is in every snapshot of the state).
pub const MAX_LIBRARY_ITEMS: usize = 1_000;
/// The largest cloud-init document (user-data, network-config) a VM keeps.
pub const MAX_CLOUD_INIT_BYTES: usize = 64 * 1024;
/// The most SSH keys a cloud-init seed carries.
pub const MAX_SSH_KEYS: usize = 32;

/// An ISO image in the storage domain (CloudStack's ISO library).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iso {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Its file, relative to the storage domain.
    pub file: String,
    pub size_bytes: u64,
    /// SHA-256 (hex) of the file as uploaded.
    pub sha256: String,
    /// A guest can boot from it.
    pub bootable: bool,
    /// The guest OS it installs, in oVirt's words (`other_linux`, ...); empty: not said.
    pub os: String,
    pub created_ms: i64,
}

/// A template: a VM's configuration and read-only copies of its disks (the bases), from which
/// new VMs are made (oVirt's template, Proxmox's `qm template`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// The configuration new VMs get (their name, disks and MACs are their own).
    pub config: Box<VmConfig>,
    /// Its bases, in the order the guest sees them.
    pub disks: Vec<TemplateDisk>,
    /// The VM it was made from, by name at that time.
    pub from_vm: String,
    pub created_ms: i64,
}

/// One base image of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDisk {
    pub id: Uuid,
    pub name: String,
    /// Its file, relative to the storage domain (read-only: thin VMs' overlays build on it).
    pub file: String,
    pub size_mib: u64,
    pub format: String,
    pub attachment: Attachment,
}

/// A service offering: the size of a VM (CloudStack's compute offering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offering {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// VMs of this offering are highly available.
    pub ha: bool,
    pub created_ms: i64,
}

/// Changes to an offering; `None` leaves a field as it is. VMs made from it keep their size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferingChanges {
    pub description: Option<String>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub ha: Option<bool>,
}

/// The library: ISOs, templates and offerings, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Library {
    pub isos: BTreeMap<Uuid, Iso>,
    pub templates: BTreeMap<Uuid, Template>,
    pub offerings: BTreeMap<Uuid, Offering>,
}

/// Finds an item by name, or by id written out.
fn find<'a, T>(items: &'a BTreeMap<Uuid, T>, name_or_id: &str, name: impl Fn(&T) -> &str) -> Option<&'a T> {
    items
        .values()
        .find(|t| name(t) == name_or_id)
        .or_else(|| Uuid::parse_str(name_or_id).ok().and_then(|id| items.get(&id)))
}

impl Library {
    pub fn iso(&self, name_or_id: &str) -> Option<&Iso> {
        find(&self.isos, name_or_id, |i| &i.name)
    }

    pub fn template(&self, name_or_id: &str) -> Option<&Template> {
        find(&self.templates, name_or_id, |t| &t.name)
    }

    pub fn offering(&self, name_or_id: &str) -> Option<&Offering> {
        find(&self.offerings, name_or_id, |o| &o.name)
    }

    /// The ISO whose file is `file` (relative to the storage domain).
    pub fn iso_of_file(&self, file: &str) -> Option<&Iso> {
        self.isos.values().find(|i| i.file == file)
    }
}

/// The template a VM was made from: kept by id (and its name then), in its OVF document too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromTemplate {
    pub id: Uuid,
    pub name: String,
    /// Its disks are overlays on the template's bases (`--thin`), not copies (`--clone`).
    pub thin: bool,
}

/// A VM's cloud-init (NoCloud) seed, as the operator gave it: the host that starts the VM writes
/// it into an ISO labelled `cidata` and attaches it as a second CD-ROM drive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudInit {
    /// The user-data document (`#cloud-config` YAML, or a script starting with `#!`).
    pub user_data: String,
    /// A network-config document (YAML), when given.
    pub network_config: Option<String>,
    /// Public SSH keys, into meta-data's `public-keys`.
    pub ssh_keys: Vec<String>,
    /// The guest's host name (meta-data's `local-hostname`); `None`: the VM's name.
    pub hostname: Option<String>,
}

impl CloudInit {
    /// The meta-data document for VM `id` named `vm`: written by us, so it is always valid YAML
    /// (every value is quoted).
    pub fn meta_data(&self, id: Uuid, vm: &str) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            quote(&id.to_string()),
            quote(self.hostname.as_deref().unwrap_or(vm))
        );
        if !self.ssh_keys.is_empty() {
            out.push_str("public-keys:\n");
            for k in &self.ssh_keys {
                out.push_str(&format!("  - {}\n", quote(k)));
            }
        }
        out
    }
}

/// A device a VM boots from, in order (oVirt's boot sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootDevice {
    Disk,
    Cdrom,
    Network,
}

impl BootDevice {
    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::Disk => "disk",
            BootDevice::Cdrom => "cdrom",
            BootDevice::Network => "network",
        }
    }

    pub fn parse(word: &str) -> Option<BootDevice> {
        match word.trim() {
            "disk" | "hd" => Some(BootDevice::Disk),
            "cdrom" | "cd" => Some(BootDevice::Cdrom),
            "network" | "net" => Some(BootDevice::Network),
            _ => None,
        }
    }
}

/// The internal qcow2 snapshot a stateless VM's disks are saved under when it starts, and
/// brought back to when it stops (oVirt's stateless snapshot).
pub const STATELESS_TAG: &str = "corral-stateless";

/// The fields of a VM's configuration that cluster level 5 added.
pub struct LibraryFields;

impl LibraryFields {
    /// Clears them, for a cluster below level 5.
    pub fn clear(c: &mut VmConfig) {
        c.from_template = None;
        c.offering = None;
        c.stateless = false;
        c.cloud_init = None;
        c.boot_order.clear();
        if let Some(n) = &mut c.next_run {
            n.stateless = None;
        }
    }
}
