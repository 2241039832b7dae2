//! OVF documents of VMs, in the shape oVirt 4.4 writes into its OVF_STORE (oVirt's
//! `OvfWriter` / `OvfOvirtWriter` / `OvfVmWriter`), so that a VM can move between Corral and
//! oVirt and Corral can keep a VM's document next to its disks. Pure: no I/O, no clock (the
//! export time is passed in). An imported document is never silently cut down: what Corral
//! does not model is kept in `Vm::ovf_unknown`, named in `Imported::ignored`, and written
//! back by `write`.
//!
//! Shape: `ovf:Envelope` (ovf:version 4.4.0.0) holding `References` (a `File` per disk),
//! the network and disk `Section`s, and `Content` (the VM: oVirt's general elements, then
//! Corral's own elements in the `corral:` namespace, the `OperatingSystemSection`, whose
//! `ovf:id` is the VM's id as in oVirt, and the `VirtualHardwareSection` with CPU, memory,
//! disk, NIC and CD-ROM `Item`s). The hosted engine is written with oVirt's `Origin` 6
//! (MANAGED_HOSTED_ENGINE; 5, HOSTED_ENGINE, is read as the engine too), other VMs with 3
//! (OVIRT).
//!
//! Kept: every element or `Item` outside the list below, with the element that held it
//! (`Content`, `VirtualHardwareSection`, `Envelope`, `DiskSection`, ...; children of a
//! modelled `Item` under `Item CPU`, `Item memory`, `Item CD-ROM`, `Item disk <id>` and
//! `Item nic<n>`), cut verbatim out of the source; namespace prefixes it borrows from
//! its ancestors are declared on it.
//!
//! Derived, hence neither kept nor listed as ignored: `ExportDate` (the export time),
//! `Origin` (the hosted-engine flag), `MinAllocatedMem` (the memory), `IsAutoSuspend`,
//! `TemplateId`/`TemplateName`/`OriginalTemplate*` (Corral has no templates), `Generation`,
//! `ClusterCompatibilityVersion`, `ClusterName` (one cluster), the `Info` texts, the
//! hardware section's `System`, `References/File` (the disks), `NetworkSection/Network`
//! (the NICs' networks), and in a modelled `Item` the captions, instance ids and oVirt's
//! device bookkeeping (`Type`, `Device`, `Address`, `BootOrder`, `IsPlugged`,
//! `IsReadOnly`, `Alias`, `SpecParams`, `Linked`, `speed`, ...): Corral's host agent
//! assigns device addresses itself. A disk's attributes Corral does not model are named
//! in `ignored` when they say something other than what Corral assumes (not read-only,
//! not shareable, VirtIO).
//!
//! Disks: `ovf:diskId` is Corral's disk id (in oVirt, the image id), `ovf:size` is whole
//! GiB rounded down as oVirt writes it, and `corral:size-mib` and `corral:created-ms`
//! carry the exact size and time. A disk's file must lie inside the storage domain:
//! relative, without `..`. oVirt's dates have whole seconds; `corral:CreatedMs` carries
//! the VM's creation time to the millisecond.

use uuid::Uuid;

use crate::model::{Disk, Vm, VmConfig};

mod read;
mod tree;
mod write;

#[cfg(test)]
mod tests;

pub use read::read;
pub use write::write;

const OVF_NS: &str = "http://schemas.dmtf.org/ovf/envelope/1/";
const RASD_NS: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const VSSD_NS: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const CORRAL_NS: &str = "https://corral.dev/ovf/1";
/// The namespace prefixes `write` declares on the envelope.
const PREFIXES: [(&str, &str); 5] =
    [("ovf", OVF_NS), ("rasd", RASD_NS), ("vssd", VSSD_NS), ("xsi", XSI_NS), ("corral", CORRAL_NS)];
const OVF_VERSION: &str = "4.4.0.0";

/// oVirt's `OriginType` values Corral writes and reads.
const ORIGIN_OVIRT: &str = "3";
const ORIGIN_HOSTED_ENGINE: &str = "5";
const ORIGIN_MANAGED_HOSTED_ENGINE: &str = "6";

/// oVirt's hardware `ResourceType`s (`OvfHardware`).
const RT_CPU: &str = "3";
const RT_MEMORY: &str = "4";
const RT_NIC: &str = "10";
const RT_CDROM: &str = "15";
const RT_DISK: &str = "17";

/// oVirt's `VolumeFormat` URIs (`OvfWriter.getVolumeImageFormat`).
const FORMAT_URI_RAW: &str = "http://www.vmware.com/specifications/vmdk.html#sparse";
const FORMAT_URI_COW: &str = "http://www.gnome.org/~markmc/qcow-image-format.html";

/// Where the `Section`s of each kind and the fragments kept from them belong, in the order
/// `write` emits them (and hence the order `read` finds them in Corral's own documents).
const PARENTS: [&str; 7] = [
    "References",
    "NetworkSection",
    "DiskSection",
    "OperatingSystemSection",
    "VirtualHardwareSection",
    "Content",
    "Envelope",
];

/// A VM read from an OVF document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Its configuration; every runtime field at `Vm::new`'s defaults.
    pub vm: Vm,
    /// Its disks, in boot order, each attached to it.
    pub disks: Vec<Disk>,
    /// What the document says that Corral does not act on, one readable line each
    /// ("Content/IsSmartcardEnabled"); each such element is kept in `vm.ovf_unknown`.
    pub ignored: Vec<String>,
}

/// Why a document was refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OvfError {
    #[error("XML syntax error at byte {byte} (line {line}): {message}")]
    Syntax { byte: u64, line: usize, message: String },
    #[error("the OVF document is {bytes} bytes, more than the {max} a document may have")]
    TooLarge { bytes: usize, max: usize },
    #[error("not an OVF document: root element is '{0}', expected ovf:Envelope")]
    NotOvf(String),
    /// Something required is absent from `path`.
    #[error("{path}: no {what}")]
    Missing { path: String, what: String },
    /// A value at `path` (on `line`) breaks a rule.
    #[error("line {line}: {path}: {problem}")]
    Invalid { line: usize, path: String, problem: String },
}

/// The VM as a document carries it: its configuration with every runtime field reset,
/// and the normalisations a document makes (a kernel boot without a kernel is none, a
/// blank initrd is none, kept fragments in document order). `read(&write(vm, ..))` gives
/// back exactly this.
pub fn config_of(vm: &Vm) -> Vm {
    let c = &vm.config;
    let fresh = Vm::new(vm.id, &c.name, c.memory_mib, c.vcpus, c.created_ms);
    let config = VmConfig {
        boot: c.boot.clone().filter(|b| !b.kernel.trim().is_empty()).map(|mut b| {
            b.initrd = b.initrd.filter(|i| !i.trim().is_empty());
            b
        }),
        cdrom: c.cdrom.clone().filter(|c| !c.is_empty()),
        ovf_unknown: kept_fragments(vm),
        // A document carries no edit time: it reads back as made when the VM was.
        updated_ms: fresh.config.updated_ms,
        ..c.clone()
    };
    // Its snapshots are in its document (as oVirt keeps them), each with the configuration it
    // was taken with; what a host is doing with them is not.
    let snapshot_state = crate::model::VmSnapshots {
        snapshots: vm.snapshot_state.snapshots.clone(),
        current_snapshot: vm.snapshot_state.current_snapshot,
        ..Default::default()
    };
    Vm { config, snapshot_state, ..fresh }
}

/// The VM's kept fragments that a document has a place for, in the order `write` puts
/// them (a fragment of a NIC or disk the VM no longer has is gone with it).
fn kept_fragments(vm: &Vm) -> Vec<crate::model::OvfFragment> {
    let mut kept: Vec<_> =
        vm.config.ovf_unknown.iter().filter_map(|f| fragment_place(vm, &f.parent).map(|k| (k, f.clone()))).collect();
    kept.sort_by_key(|(k, _)| *k);
    kept.into_iter().map(|(_, f)| f).collect()
}

/// Where fragments of this parent come in a written document: the section's rank, then
/// for the children of a modelled Item, which Item.
fn fragment_place(vm: &Vm, parent: &str) -> Option<(usize, usize)> {
    if let Some(i) = PARENTS.iter().position(|x| *x == parent) {
        return Some((i, usize::MAX));
    }
    let hardware = PARENTS.iter().position(|x| *x == "VirtualHardwareSection")?;
    let item = match parent.strip_prefix("Item ")? {
        "CPU" => 0,
        "memory" => 1,
        "CD-ROM" => 3 + vm.config.disks.len() + vm.config.nics.len(),
        other => {
            if let Some(id) = other.strip_prefix("disk ") {
                2 + vm.config.disks.iter().position(|d| d.to_string() == id)?
            } else {
                let n: usize = other.strip_prefix("nic")?.parse().ok()?;
                if n == 0 || n > vm.config.nics.len() || other != format!("nic{n}") {
                    return None;
                }
                2 + vm.config.disks.len() + n
            }
        }
    };
    Some((hardware, item))
}

/// The instance id of a NIC (`index` 1, 2, ...) or of the CD-ROM (`index` 0): oVirt wants a
/// UUID and Corral's devices have none, so it is derived from the VM's id and the device's
/// place, the same at every export.
fn device_id(vm: Uuid, index: usize) -> Uuid {
    Uuid::from_u128(vm.as_u128() ^ (0x6465_7600_0000 | index as u128))
}

/// oVirt's date format, `yyyy/MM/dd HH:mm:ss` in UTC.
fn format_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parses oVirt's date (`yyyy/MM/dd HH:mm:ss`, or its fallback `yyyy.MM.dd HH:mm:ss`).
fn parse_date(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ')?;
    let sep = if date.contains('/') { '/' } else { '.' };
    let mut d = date.split(sep).map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
    {
        return None;
    }
    if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&se) {
        return None;
    }
    Some((days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the well-known era arithmetic).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
