//! libvirt domain XML for the VMs Corral runs: written from a [`DomainSpec`] and read back from what
//! libvirt returns. XML is only ever produced and parsed through serde and quick-xml, never by
//! pasting strings together, and reading must tolerate everything libvirt adds that we do not set.
//!
//! One idea, with its tests: writing a definition and reading libvirt's answer share one set of
//! types, and the tests check them as a round trip, so the file stays whole although it is long.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What Corral sets in a VM's libvirt definition; everything else is libvirt's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub uuid: Uuid,
    pub name: String,
    /// libvirt's domain type: "kvm", "qemu" (TCG emulation) or "test" (libvirt's test driver).
    pub domain_type: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    /// Direct kernel boot; without it the guest boots from its first disk.
    pub kernel: Option<KernelBoot>,
    /// A file that receives the guest's serial console; without it the console is a pty.
    pub serial_log: Option<String>,
}

/// A file-backed virtio disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: String,
    /// The guest device name: "vda", "vdb", ...
    pub target: String,
    /// The image format: "qcow2", "raw", ...
    pub format: String,
}

/// A virtio network card on a libvirt network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub network: String,
    pub mac: String,
}

/// Direct kernel boot, exactly as the cluster's model holds it.
pub use corral_raft::model::KernelBoot;

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("cannot write the domain XML of {name}")]
    Write {
        name: String,
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
    memory: XmlMemory,
    #[serde(rename = "currentMemory", default, skip_serializing_if = "Option::is_none")]
    current_memory: Option<XmlMemory>,
    vcpu: XmlCount,
    os: XmlOs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    features: Option<XmlFeatures>,
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
struct XmlCount {
    #[serde(rename = "$text")]
    value: u32,
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
    interface: Vec<XmlInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    serial: Vec<XmlCharDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    console: Vec<XmlCharDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memballoon: Option<XmlModel>,
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
}

#[derive(Debug, Serialize, Deserialize)]
struct XmlNetworkSource {
    #[serde(rename = "@network", default, skip_serializing_if = "Option::is_none")]
    network: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<XmlCharTarget>,
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
        // The serial port carries the console; the <console> names it so `virsh console` finds it.
        let (serial, console) = match &spec.serial_log {
            Some(path) => (char_device("file", Some(path), None), char_device("file", Some(path), Some("serial"))),
            None => (char_device("pty", None, None), char_device("pty", None, Some("serial"))),
        };
        XmlDomain {
            kind: spec.domain_type.clone(),
            name: spec.name.clone(),
            uuid: spec.uuid.hyphenated().to_string(),
            memory: mib(),
            current_memory: Some(mib()),
            vcpu: XmlCount { value: spec.vcpus },
            os: XmlOs {
                os_type: XmlOsType {
                    arch: Some("x86_64".to_string()),
                    machine: Some("pc".to_string()),
                    value: "hvm".to_string(),
                },
                kernel: kernel.map(|k| k.kernel.clone()),
                initrd: kernel.and_then(|k| k.initrd.clone()),
                cmdline: kernel.map(|k| k.cmdline.clone()).filter(|c| !c.is_empty()),
                boot: vec![XmlBoot { dev: "hd".to_string() }],
            },
            // ACPI is what lets a guest hear the power button of a graceful shutdown.
            features: Some(XmlFeatures { acpi: Some(XmlEmpty {}), apic: Some(XmlEmpty {}) }),
            on_poweroff: Some("destroy".to_string()),
            on_reboot: Some("restart".to_string()),
            on_crash: Some("destroy".to_string()),
            devices: XmlDevices {
                disk: spec.disks.iter().map(XmlDisk::from_spec).collect(),
                interface: spec.nics.iter().map(XmlInterface::from_spec).collect(),
                serial: vec![serial],
                console: vec![console],
                // No balloon: a VM's memory is what the scheduler placed, not something to reclaim.
                memballoon: Some(XmlModel { model: "none".to_string() }),
            },
        }
    }

    fn into_spec(self) -> Result<DomainSpec, XmlError> {
        let uuid = Uuid::parse_str(self.uuid.trim()).map_err(|_| XmlError::BadUuid(self.uuid.clone()))?;
        let kernel = self.os.kernel.map(|kernel| KernelBoot {
            kernel,
            initrd: self.os.initrd,
            cmdline: self.os.cmdline.unwrap_or_default(),
        });
        let serial_log = self
            .devices
            .serial
            .into_iter()
            .find(|serial| serial.kind == "file")
            .and_then(|serial| serial.source)
            .and_then(|source| source.path);
        Ok(DomainSpec {
            uuid,
            name: self.name,
            domain_type: self.kind,
            memory_mib: self.memory.mib()?,
            vcpus: self.vcpu.value,
            disks: self.devices.disk.into_iter().filter_map(XmlDisk::into_spec).collect(),
            nics: self.devices.interface.into_iter().filter_map(XmlInterface::into_spec).collect(),
            kernel,
            serial_log,
        })
    }
}

fn char_device(kind: &str, path: Option<&String>, target_type: Option<&str>) -> XmlCharDevice {
    XmlCharDevice {
        kind: kind.to_string(),
        source: path.map(|path| XmlCharSource { path: Some(path.clone()), append: Some("on".to_string()) }),
        target: Some(XmlCharTarget { kind: target_type.map(str::to_string), port: Some(0) }),
    }
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
            target: XmlDiskTarget { dev: disk.target.clone(), bus: Some("virtio".to_string()) },
        }
    }

    /// Only file-backed disks are ours; CD-ROMs and other kinds libvirt may list are not.
    fn into_spec(self) -> Option<DiskSpec> {
        if self.kind != "file" || self.device.as_deref().is_some_and(|device| device != "disk") {
            return None;
        }
        Some(DiskSpec {
            path: self.source.and_then(|source| source.file)?,
            target: self.target.dev,
            format: self.driver.and_then(|driver| driver.format).unwrap_or_else(|| "raw".to_string()),
        })
    }
}

impl XmlInterface {
    fn from_spec(nic: &NicSpec) -> XmlInterface {
        XmlInterface {
            kind: "network".to_string(),
            source: Some(XmlNetworkSource { network: Some(nic.network.clone()) }),
            mac: Some(XmlMac { address: nic.mac.clone() }),
            model: Some(XmlModelType { kind: "virtio".to_string() }),
        }
    }

    fn into_spec(self) -> Option<NicSpec> {
        if self.kind != "network" {
            return None;
        }
        Some(NicSpec { network: self.source.and_then(|source| source.network)?, mac: self.mac?.address })
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
            disks: Vec::new(),
            nics: Vec::new(),
            kernel: None,
            serial_log: None,
        }
    }

    fn full(domain_type: &str) -> DomainSpec {
        DomainSpec {
            disks: vec![
                DiskSpec { path: "/var/lib/corral/a.qcow2".into(), target: "vda".into(), format: "qcow2".into() },
                DiskSpec { path: "/var/lib/corral/b & c.img".into(), target: "vdb".into(), format: "raw".into() },
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
            r#"<serial type="file">"#,
            r#"<console type="file">"#,
            r#"<source path="/var/log/corral/vm.log" append="on"/>"#,
            r#"<memballoon model="none"/>"#,
        ] {
            assert!(xml.contains(part), "{part} is missing from:\n{xml}");
        }
        assert!(!xml.contains("graphics"), "graphics must be left out:\n{xml}");

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
                disks: vec![DiskSpec {
                    path: "/var/lib/corral/web-1.qcow2".into(),
                    target: "vda".into(),
                    format: "qcow2".into()
                }],
                nics: vec![NicSpec { network: "default".into(), mac: "52:54:00:6b:3c:58".into() }],
                kernel: Some(KernelBoot {
                    kernel: "/boot/vmlinuz".into(),
                    initrd: Some("/boot/initrd.img".into()),
                    cmdline: "console=ttyS0".into(),
                }),
                serial_log: Some("/var/log/corral/web-1.log".into()),
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
            disks: vec![DiskSpec {
                path: "/var/lib/corral/a.qcow2".into(),
                target: "vda".into(),
                format: "qcow2".into(),
            }],
            nics: vec![NicSpec { network: "default".into(), mac: "52:54:00:12:34:56".into() }],
            kernel: Some(KernelBoot {
                kernel: "/boot/vmlinuz".into(),
                initrd: Some("/boot/initrd.img".into()),
                cmdline: "console=ttyS0".into(),
            }),
            serial_log: Some("/var/log/corral/vm.log".into()),
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
    }
}
