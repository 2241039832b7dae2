//! libvirt domain XML for the VMs Corral runs: written from a [`DomainSpec`] and read back from what
//! libvirt returns. XML is only ever produced and parsed through serde and quick-xml, never by
//! pasting strings together, and reading must tolerate everything libvirt adds that we do not set.
//!
//! One idea, with its tests: writing a definition and reading libvirt's answer share one set of
//! types, and the tests check them as a round trip, so the file stays whole although it is long.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The drive of a cloud-init seed: the secondary IDE channel's slave (the CD-ROM is its master).
pub const SEED_TARGET: &str = "hdd";

/// What Corral sets in a VM's libvirt definition; everything else is libvirt's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub uuid: Uuid,
    pub name: String,
    /// libvirt's domain type: "kvm", "qemu" (TCG emulation) or "test" (libvirt's test driver).
    pub domain_type: String,
    /// The memory the guest boots with (read back: libvirt's total, hot-plugged DIMMs included).
    pub memory_mib: u64,
    /// The vCPUs online at boot.
    pub vcpus: u32,
    /// The most vCPUs the guest may have by hot-plug; None: `vcpus`, and no hot-plug. libvirt
    /// leaves the count of online vCPUs out when all are online, so a definition with
    /// `max_vcpus == Some(vcpus)` reads back as None.
    pub max_vcpus: Option<u32>,
    /// The most memory the guest may have by hot-plugging DIMMs (16 slots); None: no memory
    /// hot-plug. It also gives the guest one NUMA node, which QEMU needs for DIMMs.
    pub max_memory_mib: Option<u64>,
    pub disks: Vec<DiskSpec>,
    /// A virtio-scsi controller even without a SCSI disk, so SCSI disks can be hot-plugged
    /// (libvirt would otherwise add an LSI controller that guests rarely drive). A SCSI disk
    /// brings the controller by itself; reading back says whether the controller is there.
    pub scsi_controller: bool,
    /// An IDE CD-ROM drive (hdc); None: no drive, and no media can be inserted while running.
    pub cdrom: Option<CdromSpec>,
    pub nics: Vec<NicSpec>,
    /// Direct kernel boot; without it the guest boots from its first disk.
    pub kernel: Option<KernelBoot>,
    /// A file that receives everything the guest writes on its serial port. The port itself
    /// is a pty either way (`vm console` attaches to it); the log is written also while no one
    /// is attached.
    pub serial_log: Option<String>,
    /// The address a VNC display listens on (the host's `--vnc-listen`); None: no display. The
    /// domain is written with a random password that has already expired, so no one gets in
    /// until `vm console --vnc` sets a fresh one.
    pub vnc_listen: Option<String>,
    /// A cloud-init seed (NoCloud ISO) in a second IDE CD-ROM drive (hdd), read-only.
    pub seed: Option<String>,
    /// What the guest boots from, in libvirt's words ("hd", "cdrom", "network"); empty: "hd".
    pub boot: Vec<String>,
}

/// A file-backed disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: String,
    /// The guest device name, which the caller picks to match the bus: "vda", "vdb", ... on
    /// virtio, "sda", "sdb", ... on SCSI (the letter is also the disk's unit on the controller).
    pub target: String,
    /// The image format: "qcow2", "raw", ...
    pub format: String,
    pub bus: DiskBus,
    /// The serial number the guest sees (/dev/disk/by-id), at most 20 characters on virtio.
    pub serial: Option<String>,
}

/// How a disk is attached to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// A virtio-blk PCI device of its own: hot-unplug needs the guest's consent.
    Virtio,
    /// A LUN on the domain's virtio-scsi controller.
    Scsi,
}

impl DiskBus {
    /// libvirt's word for the bus.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskBus::Virtio => "virtio",
            DiskBus::Scsi => "scsi",
        }
    }

    fn from_libvirt(bus: Option<&str>) -> Option<DiskBus> {
        match bus {
            None | Some("virtio") => Some(DiskBus::Virtio),
            Some("scsi") => Some(DiskBus::Scsi),
            Some(_) => None,
        }
    }
}

/// A read-only IDE CD-ROM drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdromSpec {
    /// The image in the drive; None: an empty tray.
    pub path: Option<String>,
}

/// A virtio network card on a libvirt network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub network: String,
    pub mac: String,
}

/// Direct kernel boot, exactly as the cluster's model holds it.
pub use corral_raft::model::KernelBoot;

/// What a domain has now, read from its live definition (or its persistent one when it is
/// not running): what hot-plug changes and what it needs to name the devices it removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDomain {
    pub uuid: Uuid,
    pub name: String,
    /// All the guest's memory: what it booted with plus the DIMMs plugged since.
    pub memory_mib: u64,
    /// What the balloon leaves the guest (equal to `memory_mib` without a balloon).
    pub current_memory_mib: u64,
    /// The ceiling for memory hot-plug; None: the domain cannot take DIMMs.
    pub max_memory_mib: Option<u64>,
    pub memory_slots: Option<u32>,
    /// The hot-plugged DIMMs (only `model='dimm'` memory devices), in libvirt's order.
    pub dimms: Vec<LiveDimm>,
    /// vCPUs online now.
    pub vcpus: u32,
    /// The most vCPUs this domain can have.
    pub max_vcpus: u32,
    /// Every disk, CD-ROM and other drive, in libvirt's order (by bus, then target).
    pub disks: Vec<LiveDisk>,
    pub nics: Vec<LiveNic>,
    /// Whether a virtio-scsi controller is there to take SCSI disks.
    pub scsi_controller: bool,
}

/// A DIMM memory device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDimm {
    /// libvirt's name for it while the domain runs ("dimm0", ...); None in a persistent definition.
    pub alias: Option<String>,
    pub size_mib: u64,
    /// The guest NUMA node it belongs to.
    pub node: Option<u32>,
    /// Its slot and base address in guest memory, which identify it when it is unplugged.
    pub slot: Option<u32>,
    pub base: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDisk {
    /// The guest device name ("vda", "sda", "hdc").
    pub target: String,
    /// libvirt's word for the bus ("virtio", "scsi", "ide", "sata", ...).
    pub bus: String,
    pub device: DiskDevice,
    /// The image file; None for an empty CD-ROM tray or a source that is not a file.
    pub source: Option<String>,
    pub format: Option<String>,
    pub serial: Option<String>,
    pub readonly: bool,
    /// libvirt's name for it while the domain runs ("virtio-disk1", "scsi0-0-0-1", "ide0-1-0").
    pub alias: Option<String>,
}

/// What a `<disk>` is to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskDevice {
    Disk,
    Cdrom,
    /// A kind Corral does not make ("floppy", "lun"), in libvirt's word.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNic {
    pub mac: String,
    /// libvirt's interface type: "network" for Corral's NICs, else "bridge", "user", ...
    pub kind: String,
    pub network: Option<String>,
    /// The host bridge it is plugged into (libvirt reports it for network NICs too).
    pub bridge: Option<String>,
    pub model: Option<String>,
    /// libvirt's name for it while the domain runs ("net0", ...).
    pub alias: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("cannot write the domain XML of {name}")]
    Write {
        name: String,
        #[source]
        source: quick_xml::SeError,
    },
    #[error("cannot write the device XML of {device}")]
    WriteDevice {
        device: String,
        #[source]
        source: quick_xml::SeError,
    },
    #[error("cannot read the domain XML")]
    Read(#[source] quick_xml::DeError),
    #[error("the domain XML has a uuid that is not a UUID: {0:?}")]
    BadUuid(String),
    #[error("the domain XML has a memory size in an unknown unit: {0:?}")]
    BadMemoryUnit(String),
    #[error("the domain XML has a memory size too large to count: {value} {unit}")]
    MemoryOverflow { value: u64, unit: String },
}

/// Writes the libvirt domain XML for `spec`.
pub fn to_xml(spec: &DomainSpec) -> Result<String, XmlError> {
    let domain = XmlDomain::from_spec(spec);
    let mut xml = String::new();
    let mut serializer = quick_xml::se::Serializer::new(&mut xml);
    serializer.indent(' ', 2);
    domain.serialize(serializer).map_err(|source| XmlError::Write { name: spec.name.clone(), source })?;
    Ok(xml)
}

/// Reads a domain XML, ours or libvirt's (which adds addresses, aliases, controllers and more):
/// elements and attributes that a [`DomainSpec`] does not hold are ignored.
pub fn from_xml(xml: &str) -> Result<DomainSpec, XmlError> {
    let domain: XmlDomain = quick_xml::de::from_str(xml).map_err(XmlError::Read)?;
    domain.into_spec()
}

/// Reads a domain's live XML (or its persistent XML) for what hot-plug needs; tolerates
/// everything libvirt adds, like [`from_xml`].
pub fn live_from_xml(xml: &str) -> Result<LiveDomain, XmlError> {
    let domain: XmlDomain = quick_xml::de::from_str(xml).map_err(XmlError::Read)?;
    domain.into_live()
}

// Device XML for hot-plug: written from a spec to plug, and from what the live definition
// holds to unplug or change (libvirt finds a disk by its target, a NIC by its MAC and a DIMM by
// its size, node and, live, its address).

/// The `<disk>` that plugs `disk`.
pub fn disk_xml(disk: &DiskSpec) -> Result<String, XmlError> {
    device_xml("disk", &format!("disk {}", disk.target), &XmlDisk::from_spec(disk))
}

/// The `<disk>` that names `disk` for an unplug.
pub fn disk_unplug_xml(disk: &LiveDisk) -> Result<String, XmlError> {
    let xml = XmlDisk {
        kind: "file".to_string(),
        device: Some(disk.device.as_str().to_string()),
        driver: None,
        source: None,
        target: XmlDiskTarget { dev: disk.target.clone(), bus: Some(disk.bus.clone()) },
        readonly: None,
        serial: None,
        alias: None,
    };
    device_xml("disk", &format!("disk {}", disk.target), &xml)
}

/// The `<disk>` that puts `path` into the CD-ROM drive `cdrom` (None: ejects its media).
pub fn cdrom_media_xml(cdrom: &LiveDisk, path: Option<&str>) -> Result<String, XmlError> {
    let mut xml = XmlDisk::cdrom(&CdromSpec { path: path.map(str::to_string) });
    xml.target = XmlDiskTarget { dev: cdrom.target.clone(), bus: Some(cdrom.bus.clone()) };
    device_xml("disk", &format!("CD-ROM {}", cdrom.target), &xml)
}

/// The `<interface>` that plugs `nic`.
pub fn nic_xml(nic: &NicSpec) -> Result<String, XmlError> {
    device_xml("interface", &format!("NIC {}", nic.mac), &XmlInterface::from_spec(nic))
}

/// The `<interface>` that names `nic` for an unplug: its MAC, and the source its type requires.
pub fn nic_unplug_xml(nic: &LiveNic) -> Result<String, XmlError> {
    let source = match nic.kind.as_str() {
        "network" => Some(XmlNetworkSource { network: nic.network.clone(), bridge: None }),
        "bridge" => Some(XmlNetworkSource { network: None, bridge: nic.bridge.clone() }),
        _ => None,
    };
    let xml = XmlInterface {
        kind: nic.kind.clone(),
        source,
        mac: Some(XmlMac { address: nic.mac.clone() }),
        model: None,
        alias: None,
    };
    device_xml("interface", &format!("NIC {}", nic.mac), &xml)
}

/// The `<memory model='dimm'>` that plugs `size_mib` of memory into the guest's NUMA node 0.
pub fn dimm_xml(size_mib: u64) -> Result<String, XmlError> {
    let dimm = LiveDimm { alias: None, size_mib, node: Some(0), slot: None, base: None };
    device_xml("memory", &format!("a {size_mib} MiB DIMM"), &XmlMemoryDevice::from_dimm(&dimm))
}

/// The `<memory model='dimm'>` that names `dimm` for an unplug: with its address for the live
/// definition (`with_address`), without for the persistent one, where any DIMM of that size is it.
pub fn dimm_unplug_xml(dimm: &LiveDimm, with_address: bool) -> Result<String, XmlError> {
    let mut xml = XmlMemoryDevice::from_dimm(dimm);
    if !with_address {
        xml.address = None;
    }
    device_xml("memory", &dimm.describe(), &xml)
}

fn device_xml<T: Serialize>(root: &str, device: &str, value: &T) -> Result<String, XmlError> {
    quick_xml::se::to_string_with_root(root, value)
        .map_err(|source| XmlError::WriteDevice { device: device.to_string(), source })
}

impl DiskDevice {
    fn as_str(&self) -> &str {
        match self {
            DiskDevice::Disk => "disk",
            DiskDevice::Cdrom => "cdrom",
            DiskDevice::Other(other) => other,
        }
    }
}

impl LiveDimm {
    /// "DIMM dimm1 (512 MiB)", for messages.
    pub fn describe(&self) -> String {
        match &self.alias {
            Some(alias) => format!("DIMM {alias} ({} MiB)", self.size_mib),
            None => format!("a {} MiB DIMM", self.size_mib),
        }
    }
}

// The serde model of the XML. Field names are element names; "@x" is an attribute and "$text"
// an element's text, as quick-xml spells them. Serialization writes fields in declaration order.

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "domain")]
struct XmlDomain {
    #[serde(rename = "@type")]
    kind: String,
    name: String,
    uuid: String,
    #[serde(rename = "maxMemory", default, skip_serializing_if = "Option::is_none")]
    max_memory: Option<XmlMaxMemory>,
    memory: XmlMemory,
    #[serde(rename = "currentMemory", default, skip_serializing_if = "Option::is_none")]
    current_memory: Option<XmlMemory>,
    vcpu: XmlVcpu,
    os: XmlOs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    features: Option<XmlFeatures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu: Option<XmlCpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_poweroff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_reboot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_crash: Option<String>,
    #[serde(default)]
    devices: XmlDevices,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlMemory {
    /// libvirt's default unit is KiB.
    #[serde(rename = "@unit", default, skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    #[serde(rename = "$text")]
    value: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlMaxMemory {
    #[serde(rename = "@slots", default, skip_serializing_if = "Option::is_none")]
    slots: Option<u32>,
    #[serde(rename = "@unit", default, skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    #[serde(rename = "$text")]
    value: u64,
}

/// `<vcpu current='online'>most</vcpu>`.
#[derive(Debug, Serialize, Deserialize)]
struct XmlVcpu {
    #[serde(rename = "@placement", default, skip_serializing_if = "Option::is_none")]
    placement: Option<String>,
    #[serde(rename = "@current", default, skip_serializing_if = "Option::is_none")]
    current: Option<u32>,
    #[serde(rename = "$text")]
    value: u32,
}

/// Only the NUMA topology; libvirt adds the CPU model and features it chose.
#[derive(Debug, Serialize, Deserialize)]
struct XmlCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    numa: Option<XmlNuma>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlNuma {
    #[serde(default)]
    cell: Vec<XmlNumaCell>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlNumaCell {
    #[serde(rename = "@id")]
    id: u32,
    #[serde(rename = "@cpus")]
    cpus: String,
    #[serde(rename = "@memory")]
    memory: u64,
    #[serde(rename = "@unit", default, skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlOs {
    #[serde(rename = "type")]
    os_type: XmlOsType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initrd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    boot: Vec<XmlBoot>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlOsType {
    #[serde(rename = "@arch", default, skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    #[serde(rename = "@machine", default, skip_serializing_if = "Option::is_none")]
    machine: Option<String>,
    #[serde(rename = "$text")]
    value: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlBoot {
    #[serde(rename = "@dev")]
    dev: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlFeatures {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acpi: Option<XmlEmpty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    apic: Option<XmlEmpty>,
}

/// An element whose presence is the whole message, like `<acpi/>`.
#[derive(Debug, Serialize, Deserialize)]
struct XmlEmpty {}

#[derive(Debug, Default, Serialize, Deserialize)]
struct XmlDevices {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    disk: Vec<XmlDisk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    controller: Vec<XmlController>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interface: Vec<XmlInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    serial: Vec<XmlCharDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    console: Vec<XmlCharDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    graphics: Vec<XmlGraphics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memballoon: Option<XmlModel>,
    /// Memory devices: the DIMMs plugged while running (libvirt lists them last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    memory: Vec<XmlMemoryDevice>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlController {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "@index", default, skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(rename = "@model", default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

/// `<memory model='dimm'>`: a memory device, not the domain's `<memory>` size.
#[derive(Debug, Serialize, Deserialize)]
struct XmlMemoryDevice {
    #[serde(rename = "@model")]
    model: String,
    target: XmlMemoryTarget,
    /// Read only: libvirt ignores aliases it did not make in the XML it is given.
    #[serde(default, skip_serializing)]
    alias: Option<XmlAlias>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<XmlDimmAddress>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlMemoryTarget {
    size: XmlMemory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlDimmAddress {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "@slot", default, skip_serializing_if = "Option::is_none")]
    slot: Option<u32>,
    #[serde(rename = "@base", default, skip_serializing_if = "Option::is_none")]
    base: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlAlias {
    #[serde(rename = "@name")]
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlDisk {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "@device", default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    driver: Option<XmlDiskDriver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<XmlDiskSource>,
    target: XmlDiskTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    readonly: Option<XmlEmpty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(default, skip_serializing)]
    alias: Option<XmlAlias>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlDiskDriver {
    #[serde(rename = "@name", default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "@type", default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    /// "stop": QEMU pauses the guest on a write/read error instead of passing the error to it
    /// (libvirt's "ioerror" pause), so the VM's resume behaviour decides what happens next.
    #[serde(rename = "@error_policy", default, skip_serializing_if = "Option::is_none")]
    error_policy: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlDiskSource {
    #[serde(rename = "@file", default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlDiskTarget {
    #[serde(rename = "@dev")]
    dev: String,
    #[serde(rename = "@bus", default, skip_serializing_if = "Option::is_none")]
    bus: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlInterface {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<XmlNetworkSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<XmlMac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<XmlModelType>,
    #[serde(default, skip_serializing)]
    alias: Option<XmlAlias>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlNetworkSource {
    #[serde(rename = "@network", default, skip_serializing_if = "Option::is_none")]
    network: Option<String>,
    #[serde(rename = "@bridge", default, skip_serializing_if = "Option::is_none")]
    bridge: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlMac {
    #[serde(rename = "@address")]
    address: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlModelType {
    #[serde(rename = "@type")]
    kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlModel {
    #[serde(rename = "@model")]
    model: String,
}

/// A `<serial>` or `<console>`.
#[derive(Debug, Serialize, Deserialize)]
struct XmlCharDevice {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<XmlCharSource>,
    /// A copy of the output in a file (libvirt's `<log>`, written by virtlogd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<XmlCharLog>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<XmlCharTarget>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlCharLog {
    #[serde(rename = "@file")]
    file: String,
    /// "on": a migration destination would otherwise truncate the shared file.
    #[serde(rename = "@append", default, skip_serializing_if = "Option::is_none")]
    append: Option<String>,
}

/// `<graphics type='vnc'>`. libvirt shows the password (and its expiry) only in the secure XML.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct XmlGraphics {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "@port", default, skip_serializing_if = "Option::is_none")]
    port: Option<i32>,
    #[serde(rename = "@autoport", default, skip_serializing_if = "Option::is_none")]
    autoport: Option<String>,
    #[serde(rename = "@listen", default, skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(rename = "@passwd", default, skip_serializing_if = "Option::is_none")]
    passwd: Option<String>,
    #[serde(rename = "@passwdValidTo", default, skip_serializing_if = "Option::is_none")]
    passwd_valid_to: Option<String>,
    #[serde(rename = "listen", default, skip_serializing_if = "Vec::is_empty")]
    listens: Vec<XmlGraphicsListen>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct XmlGraphicsListen {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "@address", default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlCharSource {
    #[serde(rename = "@path", default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// "on" for log files: a migration destination would otherwise truncate the shared file.
    #[serde(rename = "@append", default, skip_serializing_if = "Option::is_none")]
    append: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlCharTarget {
    #[serde(rename = "@type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(rename = "@port", default, skip_serializing_if = "Option::is_none")]
    port: Option<u32>,
}

impl XmlDomain {
    fn from_spec(spec: &DomainSpec) -> XmlDomain {
        let mib = || XmlMemory { unit: Some("MiB".to_string()), value: spec.memory_mib };
        let kernel = spec.kernel.as_ref();
        // The serial port carries the console: a pty that `vm console` attaches to, its output
        // also logged; the <console> names it so `virsh console` finds it.
        let log = spec.serial_log.as_ref();
        let (serial, console) = (char_device(log, None), char_device(log, Some("serial")));
        let graphics = spec.vnc_listen.iter().map(|listen| XmlGraphics::locked(listen)).collect();
        let vcpu = match spec.max_vcpus {
            Some(most) => XmlVcpu { placement: Some("static".to_string()), current: Some(spec.vcpus), value: most },
            None => XmlVcpu { placement: None, current: None, value: spec.vcpus },
        };
        // QEMU plugs DIMMs only into a NUMA node: one node holds every vCPU and the boot memory.
        let cpu = spec.max_memory_mib.map(|_| {
            let most = spec.max_vcpus.unwrap_or(spec.vcpus).max(1);
            let cpus = if most == 1 { "0".to_string() } else { format!("0-{}", most - 1) };
            let cell = XmlNumaCell { id: 0, cpus, memory: spec.memory_mib * 1024, unit: Some("KiB".to_string()) };
            XmlCpu { numa: Some(XmlNuma { cell: vec![cell] }) }
        });
        let mut disk: Vec<XmlDisk> = spec.disks.iter().map(XmlDisk::from_spec).collect();
        disk.extend(spec.cdrom.as_ref().map(XmlDisk::cdrom));
        disk.extend(spec.seed.as_ref().map(|seed| {
            let mut d = XmlDisk::cdrom(&CdromSpec { path: Some(seed.clone()) });
            d.target.dev = SEED_TARGET.to_string();
            d
        }));
        let scsi = spec.scsi_controller || spec.disks.iter().any(|disk| disk.bus == DiskBus::Scsi);
        let controller = if scsi {
            vec![XmlController { kind: "scsi".to_string(), index: None, model: Some(VIRTIO_SCSI.to_string()) }]
        } else {
            Vec::new()
        };
        XmlDomain {
            kind: spec.domain_type.clone(),
            name: spec.name.clone(),
            uuid: spec.uuid.hyphenated().to_string(),
            max_memory: spec.max_memory_mib.map(|most| XmlMaxMemory {
                slots: Some(MEMORY_SLOTS),
                unit: Some("KiB".to_string()),
                value: most * 1024,
            }),
            memory: mib(),
            current_memory: Some(mib()),
            vcpu,
            os: XmlOs {
                os_type: XmlOsType {
                    arch: Some("x86_64".to_string()),
                    machine: Some("pc".to_string()),
                    value: "hvm".to_string(),
                },
                kernel: kernel.map(|k| k.kernel.clone()),
                initrd: kernel.and_then(|k| k.initrd.clone()),
                cmdline: kernel.map(|k| k.cmdline.clone()).filter(|c| !c.is_empty()),
                boot: if spec.boot.is_empty() {
                    vec![XmlBoot { dev: "hd".to_string() }]
                } else {
                    spec.boot.iter().map(|dev| XmlBoot { dev: dev.clone() }).collect()
                },
            },
            // ACPI is what lets a guest hear the power button of a graceful shutdown.
            features: Some(XmlFeatures { acpi: Some(XmlEmpty {}), apic: Some(XmlEmpty {}) }),
            cpu,
            on_poweroff: Some("destroy".to_string()),
            on_reboot: Some("restart".to_string()),
            on_crash: Some("destroy".to_string()),
            devices: XmlDevices {
                disk,
                controller,
                interface: spec.nics.iter().map(XmlInterface::from_spec).collect(),
                serial: vec![serial],
                console: vec![console],
                graphics,
                // No balloon: a VM's memory is what the scheduler placed, not something to reclaim.
                memballoon: Some(XmlModel { model: "none".to_string() }),
                memory: Vec::new(),
            },
        }
    }

    fn uuid(&self) -> Result<Uuid, XmlError> {
        Uuid::parse_str(self.uuid.trim()).map_err(|_| XmlError::BadUuid(self.uuid.clone()))
    }

    fn has_scsi_controller(&self) -> bool {
        self.devices.controller.iter().any(|c| c.kind == "scsi" && c.model.as_deref() == Some(VIRTIO_SCSI))
    }

    fn into_spec(self) -> Result<DomainSpec, XmlError> {
        let uuid = self.uuid()?;
        let scsi_controller = self.has_scsi_controller();
        let kernel = self.os.kernel.map(|kernel| KernelBoot {
            kernel,
            initrd: self.os.initrd,
            cmdline: self.os.cmdline.unwrap_or_default(),
        });
        // A pty with a log (now), or a file (domains defined before the console).
        let serial_log = self.devices.serial.into_iter().find_map(|serial| match serial.kind.as_str() {
            "file" => serial.source.and_then(|source| source.path),
            _ => serial.log.map(|log| log.file),
        });
        let vnc_listen = self.devices.graphics.into_iter().find(|g| g.kind == "vnc").and_then(XmlGraphics::address);
        let max_memory_mib = self.max_memory.as_ref().map(XmlMaxMemory::mib).transpose()?;
        let (mut disks, mut cdroms, mut seed) = (Vec::new(), Vec::new(), None);
        for disk in self.devices.disk {
            match disk.device.as_deref() {
                Some("cdrom") if disk.target.dev == SEED_TARGET => seed = disk.source.and_then(|s| s.file),
                Some("cdrom") => cdroms.push(disk),
                _ => disks.extend(disk.into_spec()),
            }
        }
        let boot: Vec<String> = self.os.boot.iter().map(|b| b.dev.clone()).collect();
        let boot = if boot == ["hd"] { Vec::new() } else { boot };
        Ok(DomainSpec {
            uuid,
            name: self.name,
            domain_type: self.kind,
            memory_mib: self.memory.mib()?,
            vcpus: self.vcpu.current.unwrap_or(self.vcpu.value),
            max_vcpus: self.vcpu.current.map(|_| self.vcpu.value),
            max_memory_mib,
            disks,
            scsi_controller,
            cdrom: cdroms.into_iter().next().map(|cdrom| CdromSpec { path: cdrom.source.and_then(|s| s.file) }),
            nics: self.devices.interface.into_iter().filter_map(XmlInterface::into_spec).collect(),
            kernel,
            serial_log,
            vnc_listen,
            seed,
            boot,
        })
    }

    fn into_live(self) -> Result<LiveDomain, XmlError> {
        let uuid = self.uuid()?;
        let scsi_controller = self.has_scsi_controller();
        let memory_mib = self.memory.mib()?;
        let current_memory_mib = self.current_memory.as_ref().map(XmlMemory::mib).transpose()?.unwrap_or(memory_mib);
        let dimms = self
            .devices
            .memory
            .into_iter()
            .filter(|device| device.model == "dimm")
            .map(XmlMemoryDevice::into_dimm)
            .collect::<Result<_, _>>()?;
        Ok(LiveDomain {
            uuid,
            name: self.name,
            memory_mib,
            current_memory_mib,
            max_memory_mib: self.max_memory.as_ref().map(XmlMaxMemory::mib).transpose()?,
            memory_slots: self.max_memory.and_then(|most| most.slots),
            dimms,
            vcpus: self.vcpu.current.unwrap_or(self.vcpu.value),
            max_vcpus: self.vcpu.value,
            disks: self.devices.disk.into_iter().map(XmlDisk::into_live).collect(),
            nics: self.devices.interface.into_iter().filter_map(XmlInterface::into_live).collect(),
            scsi_controller,
        })
    }
}

/// The SCSI controller model Corral adds: one PCI device whose LUNs come and go without the
/// guest's consent, driven by the guest's virtio_scsi.
const VIRTIO_SCSI: &str = "virtio-scsi";

/// DIMM slots of a domain that can take memory by hot-plug.
const MEMORY_SLOTS: u32 = 16;

fn char_device(log: Option<&String>, target_type: Option<&str>) -> XmlCharDevice {
    XmlCharDevice {
        kind: "pty".to_string(),
        source: None,
        log: log.map(|file| XmlCharLog { file: file.clone(), append: Some("on".to_string()) }),
        target: Some(XmlCharTarget { kind: target_type.map(str::to_string), port: Some(0) }),
    }
}

/// A password libvirt's VNC accepts (at most 8 characters), random, for a display no one may
/// enter yet.
pub fn vnc_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..8).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

impl XmlGraphics {
    /// A VNC display on `listen` whose password expired long ago: nobody can log in until a
    /// ticket sets a new one.
    fn locked(listen: &str) -> XmlGraphics {
        XmlGraphics {
            kind: "vnc".to_string(),
            port: Some(-1),
            autoport: Some("yes".to_string()),
            listen: Some(listen.to_string()),
            passwd: Some(vnc_password()),
            passwd_valid_to: Some(EXPIRED.to_string()),
            listens: vec![XmlGraphicsListen { kind: "address".to_string(), address: Some(listen.to_string()) }],
        }
    }

    fn address(self) -> Option<String> {
        self.listen.or_else(|| self.listens.into_iter().find(|l| l.kind == "address").and_then(|l| l.address))
    }
}

/// A moment long past, in libvirt's `passwdValidTo` form (UTC).
const EXPIRED: &str = "2000-01-01T00:00:00";

/// `xml` (a whole domain definition, as libvirt gives it for a migration) with its VNC display
/// listening on `listen` instead, or without a VNC display when None: the destination of a
/// migration shows it on its own address, or not at all. Everything else passes through
/// untouched, event by event.
pub fn with_vnc_listen(xml: &str, listen: Option<&str>) -> Result<String, XmlError> {
    use quick_xml::events::{BytesStart, Event};
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut writer = quick_xml::Writer::new(Vec::new());
    let read = |e: quick_xml::Error| XmlError::Read(quick_xml::DeError::from(e));
    let write = |e: std::io::Error| XmlError::Read(quick_xml::DeError::Custom(e.to_string()));
    // Inside the VNC <graphics>: how deep, and whether it is being left out.
    let mut inside: Option<(usize, bool)> = None;
    let is_vnc = |e: &BytesStart<'_>| {
        e.name().0 == "graphics" && e.attributes().flatten().any(|a| a.key.0 == "type" && a.value == "vnc")
    };
    // The element with `listen` (the <graphics> attribute) or `address` (a <listen type='address'>) set.
    let relisten = |e: &BytesStart<'_>, key: &str, to: &str| -> BytesStart<'static> {
        let name = e.name().0.to_string();
        let mut out = BytesStart::new(name);
        for a in e.attributes().flatten() {
            if a.key.0 == key {
                out.push_attribute((key, to));
            } else {
                out.push_attribute(a);
            }
        }
        out
    };
    loop {
        let event = reader.read_event().map_err(read)?;
        let event = match (event, inside) {
            (Event::Eof, _) => break,
            (Event::Start(e), None) if is_vnc(&e) => {
                inside = Some((1, listen.is_none()));
                match listen {
                    Some(to) => Event::Start(relisten(&e, "listen", to)),
                    None => continue,
                }
            }
            (Event::Empty(e), None) if is_vnc(&e) => match listen {
                Some(to) => Event::Empty(relisten(&e, "listen", to)),
                None => continue,
            },
            (Event::Start(e), Some((depth, skip))) => {
                inside = Some((depth + 1, skip));
                match (skip, listen) {
                    (true, _) => continue,
                    (false, Some(to)) if e.name().0 == "listen" => Event::Start(relisten(&e, "address", to)),
                    _ => Event::Start(e),
                }
            }
            (Event::End(e), Some((depth, skip))) => {
                inside = (depth > 1).then_some((depth - 1, skip));
                if skip {
                    continue;
                }
                Event::End(e)
            }
            (Event::Empty(e), Some((_, skip))) => match (skip, listen) {
                (true, _) => continue,
                (false, Some(to)) if e.name().0 == "listen" => Event::Empty(relisten(&e, "address", to)),
                _ => Event::Empty(e),
            },
            (_, Some((_, true))) => continue,
            (event, _) => event,
        };
        writer.write_event(event).map_err(write)?;
    }
    String::from_utf8(writer.into_inner()).map_err(|e| XmlError::Read(quick_xml::DeError::Custom(e.to_string())))
}

/// What a running domain offers to attach to: its serial port's pty and its VNC display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consoles {
    /// The pty of serial port 0, when it is one.
    pub serial_pty: Option<String>,
    /// The VNC display's listen address and port, when it has one.
    pub vnc: Option<(String, u16)>,
}

/// Reads the consoles of a domain's live XML.
pub fn consoles_from_xml(xml: &str) -> Result<Consoles, XmlError> {
    let domain: XmlDomain = quick_xml::de::from_str(xml).map_err(XmlError::Read)?;
    let serial_pty = domain
        .devices
        .serial
        .into_iter()
        .find(|serial| serial.kind == "pty")
        .and_then(|serial| serial.source)
        .and_then(|source| source.path);
    let vnc = domain.devices.graphics.into_iter().find(|g| g.kind == "vnc").and_then(|g| {
        let port = u16::try_from(g.port?).ok().filter(|p| *p > 0)?;
        Some((g.address()?, port))
    });
    Ok(Consoles { serial_pty, vnc })
}

/// The `<graphics>` that gives the live domain's VNC display `password` until `valid_to`
/// (UTC, `YYYY-MM-DDTHH:MM:SS`): the live element itself (libvirt refuses to change its
/// listen addresses or port), with the new password. None: the domain has no VNC display.
pub fn vnc_ticket_xml(live_xml: &str, password: &str, valid_to: &str) -> Result<Option<String>, XmlError> {
    let domain: XmlDomain = quick_xml::de::from_str(live_xml).map_err(XmlError::Read)?;
    let Some(mut graphics) = domain.devices.graphics.into_iter().find(|g| g.kind == "vnc") else {
        return Ok(None);
    };
    graphics.passwd = Some(password.to_string());
    graphics.passwd_valid_to = Some(valid_to.to_string());
    device_xml("graphics", "the VNC display", &graphics).map(Some)
}

impl XmlMemory {
    fn mib(&self) -> Result<u64, XmlError> {
        let unit = self.unit.as_deref().unwrap_or("KiB");
        let bytes_per_unit: u64 = match unit {
            "b" | "bytes" => 1,
            "KB" => 1000,
            "k" | "K" | "KiB" => 1024,
            "MB" => 1000 * 1000,
            "M" | "MiB" => MIB,
            "GB" => 1000 * 1000 * 1000,
            "G" | "GiB" => 1024 * MIB,
            "TB" => 1000 * 1000 * 1000 * 1000,
            "T" | "TiB" => 1024 * 1024 * MIB,
            _ => return Err(XmlError::BadMemoryUnit(unit.to_string())),
        };
        let bytes = self
            .value
            .checked_mul(bytes_per_unit)
            .ok_or_else(|| XmlError::MemoryOverflow { value: self.value, unit: unit.to_string() })?;
        Ok(bytes / MIB)
    }
}

impl XmlMaxMemory {
    fn mib(&self) -> Result<u64, XmlError> {
        XmlMemory { unit: self.unit.clone(), value: self.value }.mib()
    }
}

impl XmlMemoryDevice {
    fn from_dimm(dimm: &LiveDimm) -> XmlMemoryDevice {
        XmlMemoryDevice {
            model: "dimm".to_string(),
            target: XmlMemoryTarget {
                size: XmlMemory { unit: Some("KiB".to_string()), value: dimm.size_mib * 1024 },
                node: dimm.node,
            },
            alias: None,
            address: (dimm.slot.is_some() || dimm.base.is_some()).then(|| XmlDimmAddress {
                kind: "dimm".to_string(),
                slot: dimm.slot,
                base: dimm.base.clone(),
            }),
        }
    }

    fn into_dimm(self) -> Result<LiveDimm, XmlError> {
        let address = self.address.filter(|address| address.kind == "dimm");
        Ok(LiveDimm {
            alias: self.alias.map(|alias| alias.name),
            size_mib: self.target.size.mib()?,
            node: self.target.node,
            slot: address.as_ref().and_then(|address| address.slot),
            base: address.and_then(|address| address.base),
        })
    }
}

impl XmlDisk {
    fn from_spec(disk: &DiskSpec) -> XmlDisk {
        XmlDisk {
            kind: "file".to_string(),
            device: Some("disk".to_string()),
            driver: Some(XmlDiskDriver {
                name: Some("qemu".to_string()),
                format: Some(disk.format.clone()),
                error_policy: Some("stop".to_string()),
            }),
            source: Some(XmlDiskSource { file: Some(disk.path.clone()) }),
            target: XmlDiskTarget { dev: disk.target.clone(), bus: Some(disk.bus.as_str().to_string()) },
            readonly: None,
            serial: disk.serial.clone(),
            alias: None,
        }
    }

    /// The drive is IDE: the default machine (pc, i440fx) has no AHCI, and its IDE needs no
    /// driver beyond what every guest has. hdc is the secondary channel's master.
    fn cdrom(cdrom: &CdromSpec) -> XmlDisk {
        XmlDisk {
            kind: "file".to_string(),
            device: Some("cdrom".to_string()),
            driver: Some(XmlDiskDriver {
                name: Some("qemu".to_string()),
                format: Some("raw".to_string()),
                error_policy: None,
            }),
            source: cdrom.path.as_ref().map(|path| XmlDiskSource { file: Some(path.clone()) }),
            target: XmlDiskTarget { dev: "hdc".to_string(), bus: Some("ide".to_string()) },
            readonly: Some(XmlEmpty {}),
            serial: None,
            alias: None,
        }
    }

    /// Only file-backed disks on a bus Corral uses are ours; CD-ROMs and other kinds are not.
    fn into_spec(self) -> Option<DiskSpec> {
        if self.kind != "file" || self.device.as_deref().is_some_and(|device| device != "disk") {
            return None;
        }
        Some(DiskSpec {
            path: self.source.and_then(|source| source.file)?,
            bus: DiskBus::from_libvirt(self.target.bus.as_deref())?,
            target: self.target.dev,
            format: self.driver.and_then(|driver| driver.format).unwrap_or_else(|| "raw".to_string()),
            serial: self.serial,
        })
    }

    fn into_live(self) -> LiveDisk {
        let device = match self.device.as_deref() {
            None | Some("disk") => DiskDevice::Disk,
            Some("cdrom") => DiskDevice::Cdrom,
            Some(other) => DiskDevice::Other(other.to_string()),
        };
        LiveDisk {
            // libvirt's default bus follows the target's prefix; it always writes it out.
            bus: self.target.bus.unwrap_or_default(),
            target: self.target.dev,
            device,
            source: self.source.and_then(|source| source.file),
            format: self.driver.and_then(|driver| driver.format),
            serial: self.serial,
            readonly: self.readonly.is_some(),
            alias: self.alias.map(|alias| alias.name),
        }
    }
}

impl XmlInterface {
    fn from_spec(nic: &NicSpec) -> XmlInterface {
        XmlInterface {
            kind: "network".to_string(),
            source: Some(XmlNetworkSource { network: Some(nic.network.clone()), bridge: None }),
            mac: Some(XmlMac { address: nic.mac.clone() }),
            model: Some(XmlModelType { kind: "virtio".to_string() }),
            alias: None,
        }
    }

    fn into_spec(self) -> Option<NicSpec> {
        if self.kind != "network" {
            return None;
        }
        Some(NicSpec { network: self.source.and_then(|source| source.network)?, mac: self.mac?.address })
    }

    fn into_live(self) -> Option<LiveNic> {
        let (network, bridge) = self.source.map_or((None, None), |source| (source.network, source.bridge));
        Some(LiveNic {
            mac: self.mac?.address,
            kind: self.kind,
            network,
            bridge,
            model: self.model.map(|model| model.kind),
            alias: self.alias.map(|alias| alias.name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::libvirt::Hypervisor;

    fn spec(domain_type: &str) -> DomainSpec {
        DomainSpec {
            uuid: Uuid::new_v4(),
            name: format!("vm-{domain_type}"),
            domain_type: domain_type.to_string(),
            memory_mib: 256,
            vcpus: 2,
            max_vcpus: None,
            max_memory_mib: None,
            disks: Vec::new(),
            scsi_controller: false,
            cdrom: None,
            nics: Vec::new(),
            kernel: None,
            serial_log: None,
            vnc_listen: None,
            seed: None,
            boot: Vec::new(),
        }
    }

    fn virtio_disk(path: &str, target: &str, format: &str) -> DiskSpec {
        DiskSpec { path: path.into(), target: target.into(), format: format.into(), bus: DiskBus::Virtio, serial: None }
    }

    fn full(domain_type: &str) -> DomainSpec {
        DomainSpec {
            disks: vec![
                virtio_disk("/var/lib/corral/a.qcow2", "vda", "qcow2"),
                virtio_disk("/var/lib/corral/b & c.img", "vdb", "raw"),
            ],
            nics: vec![
                NicSpec { network: "default".into(), mac: "52:54:00:12:34:56".into() },
                NicSpec { network: "corral".into(), mac: "52:54:00:ab:cd:ef".into() },
            ],
            kernel: Some(KernelBoot {
                kernel: "/boot/vmlinuz".into(),
                initrd: Some("/boot/initrd.img".into()),
                cmdline: "console=ttyS0 root=/dev/vda quote=\"<'x'>\"".into(),
            }),
            serial_log: Some("/var/log/corral/vm.log".into()),
            vnc_listen: Some("10.213.0.2".into()),
            ..spec(domain_type)
        }
    }

    fn round_trip(spec: &DomainSpec) {
        let xml = to_xml(spec).unwrap();
        assert_eq!(&from_xml(&xml).unwrap(), spec, "round trip through:\n{xml}");
    }

    #[test]
    fn minimal_specs_round_trip_for_every_domain_type() {
        for domain_type in ["kvm", "qemu", "test"] {
            round_trip(&spec(domain_type));
        }
    }

    #[test]
    fn full_specs_round_trip_for_every_domain_type() {
        for domain_type in ["kvm", "qemu", "test"] {
            round_trip(&full(domain_type));
        }
    }

    #[test]
    fn each_optional_part_round_trips_alone() {
        let full = full("kvm");
        round_trip(&DomainSpec { disks: full.disks.clone(), ..spec("kvm") });
        round_trip(&DomainSpec { nics: full.nics.clone(), ..spec("kvm") });
        round_trip(&DomainSpec { serial_log: full.serial_log.clone(), ..spec("kvm") });
        round_trip(&DomainSpec { vnc_listen: full.vnc_listen.clone(), ..spec("kvm") });
        round_trip(&DomainSpec { kernel: full.kernel.clone(), ..spec("qemu") });
        let bare_kernel = KernelBoot { kernel: "/boot/vmlinuz".into(), initrd: None, cmdline: String::new() };
        round_trip(&DomainSpec { kernel: Some(bare_kernel), ..spec("qemu") });
    }

    #[test]
    fn written_xml_has_the_shape_libvirt_expects() {
        let xml = to_xml(&full("kvm")).unwrap();
        for part in [
            r#"<domain type="kvm">"#,
            r#"<memory unit="MiB">256</memory>"#,
            r#"<currentMemory unit="MiB">256</currentMemory>"#,
            r#"<vcpu>2</vcpu>"#,
            r#"<type arch="x86_64" machine="pc">hvm</type>"#,
            r#"<kernel>/boot/vmlinuz</kernel>"#,
            r#"<boot dev="hd"/>"#,
            r#"<acpi/>"#,
            r#"<apic/>"#,
            r#"<on_poweroff>destroy</on_poweroff>"#,
            r#"<on_reboot>restart</on_reboot>"#,
            r#"<on_crash>destroy</on_crash>"#,
            r#"<driver name="qemu" type="qcow2" error_policy="stop"/>"#,
            r#"<source file="/var/lib/corral/a.qcow2"/>"#,
            r#"<target dev="vda" bus="virtio"/>"#,
            r#"<source network="default"/>"#,
            r#"<mac address="52:54:00:12:34:56"/>"#,
            r#"<model type="virtio"/>"#,
            r#"<serial type="pty">"#,
            r#"<console type="pty">"#,
            r#"<log file="/var/log/corral/vm.log" append="on"/>"#,
            r#"<graphics type="vnc" port="-1" autoport="yes" listen="10.213.0.2" passwd=""#,
            r#"passwdValidTo="2000-01-01T00:00:00">"#,
            r#"<listen type="address" address="10.213.0.2"/>"#,
            r#"<memballoon model="none"/>"#,
        ] {
            assert!(xml.contains(part), "{part} is missing from:\n{xml}");
        }
        let bare = to_xml(&spec("kvm")).unwrap();
        assert!(!bare.contains("graphics"), "graphics only with a listen address:\n{bare}");

        let pty = to_xml(&spec("kvm")).unwrap();
        assert!(pty.contains(r#"<serial type="pty">"#) && pty.contains(r#"<console type="pty">"#), "{pty}");
    }

    #[test]
    fn reads_what_libvirt_returns() {
        let xml = r#"<domain type='kvm' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web-1</name>
  <uuid>4f1c2a7e-9b3d-4e5f-8a6b-7c8d9e0f1a2b</uuid>
  <metadata><corral:vm xmlns:corral='https://corral.example/vm'/></metadata>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <resource><partition>/machine</partition></resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/boot/vmlinuz</kernel>
    <initrd>/boot/initrd.img</initrd>
    <cmdline>console=ttyS0</cmdline>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact' check='full'><model fallback='forbid'>qemu64</model></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/corral/web-1.qcow2' index='1'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/tools.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'><alias name='usb'/></controller>
    <controller type='pci' index='0' model='pci-root'><alias name='pci.0'/></controller>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='default' portid='0e6f5a1c-2b3d-4e5f-8a6b-7c8d9e0f1a2b' bridge='virbr0'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <serial type='file'>
      <source path='/var/log/corral/web-1.log'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
      <alias name='serial0'/>
    </serial>
    <console type='file'>
      <source path='/var/log/corral/web-1.log'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <input type='mouse' bus='ps2'><alias name='input0'/></input>
    <audio id='1' type='none'/>
    <video><model type='cirrus' vram='16384' heads='1' primary='yes'/></video>
    <memballoon model='none'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+0:+0</label></seclabel>
</domain>
"#;
        let spec = from_xml(xml).unwrap();
        assert_eq!(
            spec,
            DomainSpec {
                uuid: "4f1c2a7e-9b3d-4e5f-8a6b-7c8d9e0f1a2b".parse().unwrap(),
                name: "web-1".into(),
                domain_type: "kvm".into(),
                memory_mib: 256,
                vcpus: 2,
                max_vcpus: None,
                max_memory_mib: None,
                disks: vec![virtio_disk("/var/lib/corral/web-1.qcow2", "vda", "qcow2")],
                scsi_controller: false,
                cdrom: Some(CdromSpec { path: Some("/iso/tools.iso".into()) }),
                nics: vec![NicSpec { network: "default".into(), mac: "52:54:00:6b:3c:58".into() }],
                kernel: Some(KernelBoot {
                    kernel: "/boot/vmlinuz".into(),
                    initrd: Some("/boot/initrd.img".into()),
                    cmdline: "console=ttyS0".into(),
                }),
                serial_log: Some("/var/log/corral/web-1.log".into()),
                vnc_listen: None,
                seed: None,
                boot: Vec::new(),
            }
        );
    }

    #[test]
    fn reads_a_running_pty_console_as_no_log() {
        let xml = r#"<domain type='qemu' id='3'>
  <name>tiny</name>
  <uuid>4f1c2a7e-9b3d-4e5f-8a6b-7c8d9e0f1a2c</uuid>
  <memory unit='KiB'>131072</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <serial type='pty'><source path='/dev/pts/3'/><target type='isa-serial' port='0'/></serial>
    <console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/><target type='serial' port='0'/></console>
  </devices>
</domain>"#;
        let spec = from_xml(xml).unwrap();
        assert_eq!((spec.memory_mib, spec.vcpus, spec.serial_log, spec.kernel), (128, 1, None, None));
    }

    /// The consoles of a running QEMU (TCG) domain of libvirt 9.0 defined from a spec with a
    /// serial log and a VNC listen address, as `virsh dumpxml` shows it (other devices cut).
    const CONSOLES: &str = r#"<domain type='qemu' id='1'>
  <name>g1</name>
  <uuid>65822291-3fd3-4406-b990-ccd280448406</uuid>
  <memory unit='KiB'>131072</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'>
      <source path='/dev/pts/0'/>
      <log file='/var/tmp/corral-sandbox/storage/consoles/g1.log' append='on'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
      <alias name='serial0'/>
    </serial>
    <console type='pty' tty='/dev/pts/0'>
      <source path='/dev/pts/0'/>
      <log file='/var/tmp/corral-sandbox/storage/consoles/g1.log' append='on'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <input type='mouse' bus='ps2'><alias name='input0'/></input>
    <graphics type='vnc' port='5900' autoport='yes' listen='10.213.0.2' passwdValidTo='2000-01-01T00:00:00'>
      <listen type='address' address='10.213.0.2'/>
    </graphics>
    <audio id='1' type='none'/>
    <video><model type='cirrus' vram='16384' heads='1' primary='yes'/><alias name='video0'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"#;

    #[test]
    fn reads_the_consoles_of_a_running_domain() {
        let consoles = consoles_from_xml(CONSOLES).unwrap();
        assert_eq!(
            consoles,
            Consoles { serial_pty: Some("/dev/pts/0".into()), vnc: Some(("10.213.0.2".into(), 5900)) }
        );
        let spec = from_xml(CONSOLES).unwrap();
        assert_eq!(
            (spec.serial_log.as_deref(), spec.vnc_listen.as_deref()),
            (Some("/var/tmp/corral-sandbox/storage/consoles/g1.log"), Some("10.213.0.2"))
        );
        // Without a VNC display and with a file console (a domain defined before consoles).
        let old = from_xml(RUNNING).unwrap();
        assert_eq!((old.serial_log.as_deref(), old.vnc_listen), (Some("/var/lib/corral/consoles/web-1.log"), None));
        assert_eq!(consoles_from_xml(RUNNING).unwrap(), Consoles { serial_pty: None, vnc: None });
    }

    #[test]
    fn a_vnc_ticket_changes_only_the_password_and_its_expiry() {
        let xml = vnc_ticket_xml(CONSOLES, "s3cretPw", "2026-12-05T11:03:27").unwrap().unwrap();
        assert_eq!(
            xml,
            r#"<graphics type="vnc" port="5900" autoport="yes" listen="10.213.0.2" passwd="s3cretPw" passwdValidTo="2026-12-05T11:03:27"><listen type="address" address="10.213.0.2"/></graphics>"#
        );
        assert_eq!(vnc_ticket_xml(RUNNING, "x", "2026-12-05T11:03:27").unwrap(), None);
        let password = vnc_password();
        assert!(password.len() == 8 && password.chars().all(|c| c.is_ascii_alphanumeric()), "{password}");
    }

    #[test]
    fn a_migrating_vnc_display_moves_to_the_destination_address_or_is_left_out() {
        let moved = with_vnc_listen(CONSOLES, Some("10.213.0.3")).unwrap();
        assert_eq!(consoles_from_xml(&moved).unwrap().vnc, Some(("10.213.0.3".into(), 5900)));
        assert!(!moved.contains("10.213.0.2"), "{moved}");
        // Only the addresses change (the rewritten elements quote with ").
        assert_eq!(moved.replace("10.213.0.3", "10.213.0.2").replace('"', "'"), CONSOLES);
        let left_out = with_vnc_listen(CONSOLES, None).unwrap();
        assert!(!left_out.contains("graphics") && !left_out.contains("10.213.0.2"), "{left_out}");
        assert!(left_out.contains("<audio id='1' type='none'/>") && left_out.contains("</serial>"), "{left_out}");
        assert_eq!(from_xml(&left_out).unwrap(), DomainSpec { vnc_listen: None, ..from_xml(CONSOLES).unwrap() });
        // A domain without a display passes through as it is.
        assert_eq!(with_vnc_listen(RUNNING, Some("10.213.0.3")).unwrap(), RUNNING);
    }

    /// A VM ready for hot-plug: room for vCPUs and DIMMs, a SCSI controller, a CD-ROM drive.
    fn hot_pluggable(domain_type: &str) -> DomainSpec {
        DomainSpec {
            vcpus: 1,
            max_vcpus: Some(4),
            max_memory_mib: Some(2048),
            disks: vec![
                DiskSpec { serial: Some("corral-a".into()), ..virtio_disk("/var/lib/corral/a.qcow2", "vda", "qcow2") },
                DiskSpec {
                    bus: DiskBus::Scsi,
                    serial: Some("corral-b".into()),
                    ..virtio_disk("/var/lib/corral/b.raw", "sda", "raw")
                },
            ],
            scsi_controller: true,
            cdrom: Some(CdromSpec { path: None }),
            ..full(domain_type)
        }
    }

    #[test]
    fn hot_plug_limits_round_trip_for_every_domain_type() {
        for domain_type in ["kvm", "qemu", "test"] {
            let spec = hot_pluggable(domain_type);
            round_trip(&spec);
            round_trip(&DomainSpec {
                cdrom: Some(CdromSpec { path: Some("/iso/tools & more.iso".into()) }),
                ..spec.clone()
            });
            round_trip(&DomainSpec { max_memory_mib: None, ..spec.clone() });
            round_trip(&DomainSpec { max_vcpus: None, ..spec.clone() });
            round_trip(&DomainSpec { disks: Vec::new(), ..spec.clone() });
            round_trip(&DomainSpec { disks: Vec::new(), scsi_controller: false, cdrom: None, ..spec });
        }
    }

    #[test]
    fn written_xml_has_the_hot_plug_shape() {
        let xml = to_xml(&hot_pluggable("kvm")).unwrap();
        for part in [
            r#"<maxMemory slots="16" unit="KiB">2097152</maxMemory>"#,
            r#"<memory unit="MiB">256</memory>"#,
            r#"<vcpu placement="static" current="1">4</vcpu>"#,
            r#"<cell id="0" cpus="0-3" memory="262144" unit="KiB"/>"#,
            r#"<target dev="vda" bus="virtio"/>"#,
            r#"<serial>corral-a</serial>"#,
            r#"<target dev="sda" bus="scsi"/>"#,
            r#"<controller type="scsi" model="virtio-scsi"/>"#,
            r#"<disk type="file" device="cdrom">"#,
            r#"<driver name="qemu" type="raw"/>"#,
            r#"<target dev="hdc" bus="ide"/>"#,
            r#"<readonly/>"#,
        ] {
            assert!(xml.contains(part), "{part} is missing from:\n{xml}");
        }
        let cdrom = &xml[xml.find(r#"device="cdrom""#).unwrap()..];
        assert!(!cdrom[..cdrom.find("</disk>").unwrap()].contains("<source"), "an empty tray has no source:\n{xml}");

        // One vCPU and no vCPU hot-plug still makes a NUMA node for the DIMMs.
        let one = to_xml(&DomainSpec { vcpus: 1, max_vcpus: None, ..hot_pluggable("kvm") }).unwrap();
        assert!(one.contains(r#"<cell id="0" cpus="0" memory="262144" unit="KiB"/>"#), "{one}");
        assert!(one.contains("<vcpu>1</vcpu>"), "{one}");

        // A SCSI disk brings the controller by itself.
        let scsi_disk = DomainSpec { scsi_controller: false, ..hot_pluggable("kvm") };
        assert!(to_xml(&scsi_disk).unwrap().contains(r#"<controller type="scsi" model="virtio-scsi"/>"#));
        assert!(
            from_xml(&to_xml(&scsi_disk).unwrap()).unwrap().scsi_controller,
            "reading says the controller is there"
        );

        // What today's VMs get is unchanged: none of it.
        let plain = to_xml(&full("kvm")).unwrap();
        for absent in ["maxMemory", "<cpu>", "<numa>", "controller", "cdrom", "placement", "current=", "<serial>"] {
            assert!(!plain.contains(absent), "{absent} in:\n{plain}");
        }
    }

    #[test]
    fn device_xml_plugs_and_names_devices() {
        let vdb =
            DiskSpec { serial: Some("corral-vdb".into()), ..virtio_disk("/var/lib/corral/b.qcow2", "vdb", "qcow2") };
        assert_eq!(
            disk_xml(&vdb).unwrap(),
            r#"<disk type="file" device="disk"><driver name="qemu" type="qcow2" error_policy="stop"/><source file="/var/lib/corral/b.qcow2"/><target dev="vdb" bus="virtio"/><serial>corral-vdb</serial></disk>"#
        );
        let sdb = DiskSpec { bus: DiskBus::Scsi, serial: None, ..virtio_disk("/var/lib/corral/c.raw", "sdb", "raw") };
        assert!(disk_xml(&sdb).unwrap().contains(r#"<target dev="sdb" bus="scsi"/></disk>"#));
        assert_eq!(
            nic_xml(&NicSpec { network: "default".into(), mac: "52:54:00:12:34:56".into() }).unwrap(),
            r#"<interface type="network"><source network="default"/><mac address="52:54:00:12:34:56"/><model type="virtio"/></interface>"#
        );
        assert_eq!(
            dimm_xml(512).unwrap(),
            r#"<memory model="dimm"><target><size unit="KiB">524288</size><node>0</node></target></memory>"#
        );

        let live = live_from_xml(RUNNING).unwrap();
        let disk = |target: &str| live.disks.iter().find(|disk| disk.target == target).unwrap();
        assert_eq!(
            disk_unplug_xml(disk("vdb")).unwrap(),
            r#"<disk type="file" device="disk"><target dev="vdb" bus="virtio"/></disk>"#
        );
        assert_eq!(
            disk_unplug_xml(disk("sda")).unwrap(),
            r#"<disk type="file" device="disk"><target dev="sda" bus="scsi"/></disk>"#
        );
        assert_eq!(
            cdrom_media_xml(disk("hdc"), Some("/iso/other.iso")).unwrap(),
            r#"<disk type="file" device="cdrom"><driver name="qemu" type="raw"/><source file="/iso/other.iso"/><target dev="hdc" bus="ide"/><readonly/></disk>"#
        );
        assert_eq!(
            cdrom_media_xml(disk("hdc"), None).unwrap(),
            r#"<disk type="file" device="cdrom"><driver name="qemu" type="raw"/><target dev="hdc" bus="ide"/><readonly/></disk>"#
        );
        assert_eq!(
            nic_unplug_xml(&live.nics[0]).unwrap(),
            r#"<interface type="network"><source network="default"/><mac address="52:54:00:6b:3c:58"/></interface>"#
        );
        assert_eq!(
            nic_unplug_xml(&live.nics[1]).unwrap(),
            r#"<interface type="user"><mac address="52:54:00:4e:00:02"/></interface>"#
        );
        assert_eq!(
            dimm_unplug_xml(&live.dimms[1], true).unwrap(),
            r#"<memory model="dimm"><target><size unit="KiB">262144</size><node>0</node></target><address type="dimm" slot="1" base="0x108000000"/></memory>"#
        );
        assert_eq!(
            dimm_unplug_xml(&live.dimms[1], false).unwrap(),
            r#"<memory model="dimm"><target><size unit="KiB">262144</size><node>0</node></target></memory>"#
        );
    }

    /// The live XML of a running QEMU (TCG) domain of libvirt 9.0 defined from a hot-pluggable
    /// spec, after a virtio disk, a SCSI disk, a CD, two DIMMs, two vCPUs and a user-mode NIC
    /// were plugged; a NIC on a network added by hand, paths renamed.
    const RUNNING: &str = r#"<domain type='qemu' id='2'>
  <name>web-1</name>
  <uuid>4d6ef433-cf86-42c6-87f6-852470a602d1</uuid>
  <maxMemory slots='16' unit='KiB'>1048576</maxMemory>
  <memory unit='KiB'>655360</memory>
  <currentMemory unit='KiB'>655360</currentMemory>
  <vcpu placement='static' current='3'>4</vcpu>
  <vcpus>
    <vcpu id='0' enabled='yes' hotpluggable='no' order='1'/>
    <vcpu id='1' enabled='yes' hotpluggable='yes' order='2'/>
    <vcpu id='2' enabled='yes' hotpluggable='yes' order='3'/>
    <vcpu id='3' enabled='no' hotpluggable='yes'/>
  </vcpus>
  <resource><partition>/machine</partition></resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/boot/vmlinuz</kernel>
    <initrd>/boot/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>qemu64</model>
    <feature policy='require' name='hypervisor'/>
    <feature policy='require' name='lahf_lm'/>
    <numa>
      <cell id='0' cpus='0-3' memory='262144' unit='KiB'/>
    </numa>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' error_policy='stop'/>
      <source file='/var/lib/corral/web-1.img' index='2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <serial>corral-vda</serial>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' error_policy='stop'/>
      <source file='/var/lib/corral/data.img' index='3'/>
      <backingStore/>
      <target dev='vdb' bus='virtio'/>
      <serial>corral-vdb</serial>
      <alias name='virtio-disk1'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/iso/tools.iso' index='5'/>
      <backingStore/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
      <alias name='ide0-1-0'/>
      <address type='drive' controller='0' bus='1' target='0' unit='0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' error_policy='stop'/>
      <source file='/var/lib/corral/scratch.img' index='4'/>
      <backingStore/>
      <target dev='sda' bus='scsi'/>
      <serial>corral-sda</serial>
      <alias name='scsi0-0-0-0'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'>
      <alias name='scsi0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </controller>
    <controller type='usb' index='0' model='piix3-uhci'>
      <alias name='usb'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'>
      <alias name='pci.0'/>
    </controller>
    <controller type='ide' index='0'>
      <alias name='ide'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>
    </controller>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='default' portid='0e6f5a1c-2b3d-4e5f-8a6b-7c8d9e0f1a2b' bridge='virbr0'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>
    </interface>
    <interface type='user'>
      <mac address='52:54:00:4e:00:02'/>
      <model type='virtio'/>
      <alias name='net1'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </interface>
    <serial type='file'>
      <source path='/var/lib/corral/consoles/web-1.log' append='on'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
      <alias name='serial0'/>
    </serial>
    <console type='file'>
      <source path='/var/lib/corral/consoles/web-1.log' append='on'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <input type='mouse' bus='ps2'>
      <alias name='input0'/>
    </input>
    <input type='keyboard' bus='ps2'>
      <alias name='input1'/>
    </input>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
    <memory model='dimm'>
      <target>
        <size unit='KiB'>131072</size>
        <node>0</node>
      </target>
      <alias name='dimm0'/>
      <address type='dimm' slot='0' base='0x100000000'/>
    </memory>
    <memory model='dimm'>
      <target>
        <size unit='KiB'>262144</size>
        <node>0</node>
      </target>
      <alias name='dimm1'/>
      <address type='dimm' slot='1' base='0x108000000'/>
    </memory>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+0:+0</label>
    <imagelabel>+0:+0</imagelabel>
  </seclabel>
</domain>
"#;

    #[test]
    fn reads_a_running_domain_with_plugged_devices() {
        let disk = |target: &str, bus: &str, source: &str, serial: &str, alias: &str| LiveDisk {
            target: target.into(),
            bus: bus.into(),
            device: DiskDevice::Disk,
            source: Some(source.into()),
            format: Some("raw".into()),
            serial: Some(serial.into()),
            readonly: false,
            alias: Some(alias.into()),
        };
        let dimm = |alias: &str, size_mib, slot, base: &str| LiveDimm {
            alias: Some(alias.into()),
            size_mib,
            node: Some(0),
            slot: Some(slot),
            base: Some(base.into()),
        };
        assert_eq!(
            live_from_xml(RUNNING).unwrap(),
            LiveDomain {
                uuid: "4d6ef433-cf86-42c6-87f6-852470a602d1".parse().unwrap(),
                name: "web-1".into(),
                memory_mib: 640,
                current_memory_mib: 640,
                max_memory_mib: Some(1024),
                memory_slots: Some(16),
                dimms: vec![dimm("dimm0", 128, 0, "0x100000000"), dimm("dimm1", 256, 1, "0x108000000")],
                vcpus: 3,
                max_vcpus: 4,
                disks: vec![
                    disk("vda", "virtio", "/var/lib/corral/web-1.img", "corral-vda", "virtio-disk0"),
                    disk("vdb", "virtio", "/var/lib/corral/data.img", "corral-vdb", "virtio-disk1"),
                    LiveDisk {
                        target: "hdc".into(),
                        bus: "ide".into(),
                        device: DiskDevice::Cdrom,
                        source: Some("/iso/tools.iso".into()),
                        format: Some("raw".into()),
                        serial: None,
                        readonly: true,
                        alias: Some("ide0-1-0".into()),
                    },
                    disk("sda", "scsi", "/var/lib/corral/scratch.img", "corral-sda", "scsi0-0-0-0"),
                ],
                nics: vec![
                    LiveNic {
                        mac: "52:54:00:6b:3c:58".into(),
                        kind: "network".into(),
                        network: Some("default".into()),
                        bridge: Some("virbr0".into()),
                        model: Some("virtio".into()),
                        alias: Some("net0".into()),
                    },
                    LiveNic {
                        mac: "52:54:00:4e:00:02".into(),
                        kind: "user".into(),
                        network: None,
                        bridge: None,
                        model: Some("virtio".into()),
                        alias: Some("net1".into()),
                    },
                ],
                scsi_controller: true,
            }
        );

        // The same XML read as a spec: what the VM would boot with if defined from it.
        let spec = from_xml(RUNNING).unwrap();
        assert_eq!((spec.memory_mib, spec.max_memory_mib, spec.vcpus, spec.max_vcpus), (640, Some(1024), 3, Some(4)));
        let targets: Vec<_> =
            spec.disks.iter().map(|disk| (disk.target.as_str(), disk.bus, disk.serial.as_deref())).collect();
        assert_eq!(
            targets,
            [
                ("vda", DiskBus::Virtio, Some("corral-vda")),
                ("vdb", DiskBus::Virtio, Some("corral-vdb")),
                ("sda", DiskBus::Scsi, Some("corral-sda"))
            ]
        );
        assert_eq!(spec.cdrom, Some(CdromSpec { path: Some("/iso/tools.iso".into()) }));
        assert!(spec.scsi_controller);
        assert_eq!(
            spec.nics,
            [NicSpec { network: "default".into(), mac: "52:54:00:6b:3c:58".into() }],
            "only network NICs are Corral's"
        );
    }

    #[test]
    fn reads_an_empty_cdrom_tray_and_a_domain_without_hot_plug() {
        let xml = r#"<domain type='qemu' id='3'>
  <name>tiny</name>
  <uuid>4f1c2a7e-9b3d-4e5f-8a6b-7c8d9e0f1a2c</uuid>
  <memory unit='KiB'>131072</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide' tray='open'/>
      <readonly/>
      <alias name='ide0-1-0'/>
    </disk>
    <disk type='block' device='disk'>
      <source dev='/dev/sdz'/>
      <target dev='sdz' bus='sata'/>
    </disk>
  </devices>
</domain>"#;
        let live = live_from_xml(xml).unwrap();
        assert_eq!((live.vcpus, live.max_vcpus, live.max_memory_mib, live.memory_slots), (2, 2, None, None));
        assert_eq!(
            (live.memory_mib, live.current_memory_mib, live.dimms.len(), live.scsi_controller),
            (128, 128, 0, false)
        );
        assert_eq!((live.disks[0].device.clone(), live.disks[0].source.clone()), (DiskDevice::Cdrom, None));
        assert_eq!(
            (live.disks[1].target.as_str(), live.disks[1].bus.as_str(), live.disks[1].source.clone()),
            ("sdz", "sata", None)
        );
        let spec = from_xml(xml).unwrap();
        assert_eq!((spec.cdrom, spec.disks, spec.max_vcpus), (Some(CdromSpec { path: None }), Vec::new(), None));
    }

    #[test]
    fn converts_memory_units() {
        let cases = [
            (Some("KiB"), 262_144, 256),
            (None, 262_144, 256),
            (Some("MiB"), 512, 512),
            (Some("M"), 512, 512),
            (Some("GiB"), 2, 2048),
            (Some("G"), 2, 2048),
            (Some("b"), 268_435_456, 256),
            (Some("bytes"), 268_435_456, 256),
        ];
        for (unit, value, mib) in cases {
            let memory = XmlMemory { unit: unit.map(str::to_string), value };
            assert_eq!(memory.mib().unwrap(), mib, "{value} {unit:?}");
        }
        let furlongs = XmlMemory { unit: Some("furlong".into()), value: 1 };
        assert!(matches!(furlongs.mib(), Err(XmlError::BadMemoryUnit(unit)) if unit == "furlong"));
        let huge = XmlMemory { unit: Some("TiB".into()), value: u64::MAX };
        assert!(matches!(huge.mib(), Err(XmlError::MemoryOverflow { .. })));
    }

    #[test]
    fn rejects_what_is_not_a_domain() {
        assert!(matches!(from_xml("<network><name>default</name></network>"), Err(XmlError::Read(_))));
        let bad_uuid = "<domain type='kvm'><name>x</name><uuid>nope</uuid><memory>1024</memory>\
                        <vcpu>1</vcpu><os><type>hvm</type></os></domain>";
        assert!(matches!(from_xml(bad_uuid), Err(XmlError::BadUuid(uuid)) if uuid == "nope"));
    }

    #[tokio::test]
    async fn a_spec_defined_on_libvirt_reads_back_unchanged() {
        let hv = Hypervisor::open("test:///default").await.unwrap();
        let defined = DomainSpec {
            disks: vec![virtio_disk("/var/lib/corral/a.qcow2", "vda", "qcow2")],
            nics: vec![NicSpec { network: "default".into(), mac: "52:54:00:12:34:56".into() }],
            kernel: Some(KernelBoot {
                kernel: "/boot/vmlinuz".into(),
                initrd: Some("/boot/initrd.img".into()),
                cmdline: "console=ttyS0".into(),
            }),
            serial_log: Some("/var/log/corral/vm.log".into()),
            vnc_listen: None,
            name: format!("readback-{}", Uuid::new_v4().simple()),
            ..spec("test")
        };
        hv.define(&defined).await.unwrap();
        assert_eq!(hv.domain_xml(defined.uuid).await.unwrap(), defined);
        hv.start(defined.uuid).await.unwrap();
        assert_eq!(hv.domain_xml(defined.uuid).await.unwrap(), defined, "a running VM reads back the same");
        hv.destroy(defined.uuid).await.unwrap();
        hv.undefine(defined.uuid).await.unwrap();

        let bare = DomainSpec { name: format!("bare-{}", Uuid::new_v4().simple()), ..spec("test") };
        hv.define(&bare).await.unwrap();
        assert_eq!(hv.domain_xml(bare.uuid).await.unwrap(), bare);
        hv.undefine(bare.uuid).await.unwrap();

        // The hot-plug limits, the SCSI controller and the CD-ROM, empty and with an image.
        for cdrom in [None, Some("/iso/tools.iso".to_string())] {
            let ready = DomainSpec {
                name: format!("hot-plug-{}", Uuid::new_v4().simple()),
                cdrom: Some(CdromSpec { path: cdrom }),
                ..hot_pluggable("test")
            };
            hv.define(&ready).await.unwrap();
            assert_eq!(hv.domain_xml(ready.uuid).await.unwrap(), ready);
            hv.start(ready.uuid).await.unwrap();
            assert_eq!(hv.domain_xml(ready.uuid).await.unwrap(), ready, "a running VM reads back the same");
            hv.destroy(ready.uuid).await.unwrap();
            hv.undefine(ready.uuid).await.unwrap();
        }
    }
}
