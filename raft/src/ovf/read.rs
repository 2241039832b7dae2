//! `read`: an OVF document (oVirt's OVF_STORE shape, or Corral's own) as a VM and its disks.
//! Parses into `tree::Element`s, then maps; what it does not model it keeps and names.

use crate::error::quote;
use std::collections::HashMap;

use uuid::Uuid;

mod hardware;

use super::tree::{self, Element};
use super::write::attr_value;
use super::*;
use crate::model::{
    Attachment, DiskInterface, DomainType, HaPriority, KernelBoot, MigrationPolicy, NextRun, Nic, OvfFragment,
    ResumeBehavior, DEFAULT_OS,
};

/// Content elements oVirt writes that Corral derives itself (see the module doc).
const DERIVED_CONTENT: [&str; 8] = [
    "ExportDate",
    "MinAllocatedMem",
    "IsAutoSuspend",
    "OriginalTemplateId",
    "OriginalTemplateName",
    "Generation",
    "ClusterCompatibilityVersion",
    "ClusterName",
];

/// oVirt's device bookkeeping in any Item, rebuilt by Corral for the devices it models.
const DEVICE_INFO: [&str; 14] = [
    "rasd:Caption",
    "rasd:Description",
    "rasd:InstanceId",
    "rasd:ResourceType",
    "Type",
    "Device",
    "rasd:Address",
    "BootOrder",
    "IsPlugged",
    "IsReadOnly",
    "Alias",
    "SpecParams",
    "CustomProperties",
    "SnapshotId",
];
const CPU_CHILDREN: [&str; 5] = [
    "rasd:num_of_sockets",
    "rasd:cpu_per_socket",
    "rasd:threads_per_cpu",
    "rasd:max_num_of_vcpus",
    "rasd:VirtualQuantity",
];
const MEMORY_CHILDREN: [&str; 2] = ["rasd:AllocationUnits", "rasd:VirtualQuantity"];
const DISK_CHILDREN: [&str; 9] = [
    "rasd:HostResource",
    "rasd:Parent",
    "rasd:Template",
    "rasd:ApplicationList",
    "rasd:StorageId",
    "rasd:StoragePoolId",
    "rasd:CreationDate",
    "rasd:LastModified",
    "rasd:last_modified_date",
];
const NIC_CHILDREN: [&str; 8] = [
    "rasd:OtherResourceType",
    "rasd:ResourceSubType",
    "rasd:Connection",
    "rasd:Linked",
    "rasd:Name",
    "rasd:ElementName",
    "rasd:MACAddress",
    "rasd:speed",
];
const CDROM_CHILDREN: [&str; 1] = ["rasd:HostResource"];

/// Reads a VM and its disks from an OVF document.
pub fn read(xml: &str) -> Result<Imported, OvfError> {
    read_at(xml, false)
}

/// `nested`: the document is a snapshot's configuration inside another, which may hold no
/// snapshots of its own (so a document cannot nest deeper than one level).
fn read_at(xml: &str, nested: bool) -> Result<Imported, OvfError> {
    let root = tree::parse(xml)?;
    if root.name != "ovf:Envelope" {
        return Err(OvfError::NotOvf(quote(&root.name)));
    }
    let mut r = Reading { src: xml, root: &root, kept: Vec::new(), ignored: Vec::new(), nested };

    let mut files: HashMap<String, (Uuid, &Element)> = HashMap::new();
    let mut disk_section: Option<&Element> = None;
    let mut content: Option<&Element> = None;
    for el in &root.children {
        match (el.name.as_str(), section_type(el)) {
            ("References", _) => r.references(el, &mut files)?,
            ("Section", Some("NetworkSection")) => {
                r.keep_unknown(el, "NetworkSection", &["Info", "Network"], &[el]);
            }
            ("Section", Some("DiskSection")) => {
                r.keep_unknown(el, "DiskSection", &["Info", "Disk"], &[el]);
                disk_section = Some(el);
            }
            ("Content", _) if content.is_some() => {
                return Err(invalid(el, "Envelope", "a second Content (a document holds one VM)"));
            }
            ("Content", _) => content = Some(el),
            _ => r.keep(el, "Envelope", format!("Envelope/{}", label(el)), &[]),
        }
    }
    let content =
        content.ok_or_else(|| OvfError::Missing { path: "Envelope".into(), what: "Content (the VM)".into() })?;
    let disks = match disk_section {
        Some(s) => r.disk_section(s, &files)?,
        None => Vec::new(),
    };
    let mut imported = r.content(content, disks)?;
    imported.vm.config.ovf_unknown = {
        let vm = &imported.vm;
        let mut kept: Vec<_> =
            r.kept.into_iter().map(|f| (fragment_place(vm, &f.parent).unwrap_or((usize::MAX, 0)), f)).collect();
        kept.sort_by_key(|(k, _)| *k);
        kept.into_iter().map(|(_, f)| f).collect()
    };
    imported.ignored = r.ignored;
    Ok(imported)
}

struct Reading<'a> {
    src: &'a str,
    root: &'a Element,
    kept: Vec<OvfFragment>,
    ignored: Vec<String>,
    nested: bool,
}

/// A disk from the DiskSection, before its Item (if any) is seen.
struct DiskEntry<'a> {
    disk: Disk,
    el: &'a Element,
    /// Whether `created_ms` came from Corral's exact attribute.
    exact_time: bool,
    /// Whether the document gave `created_ms` at all (else it is the VM's).
    time_known: bool,
    alias: bool,
    /// How it is attached: the DiskSection gives the bus, boot and optional flags, its Item
    /// whether it is plugged.
    attachment: Attachment,
}

impl<'a> Reading<'a> {
    /// Keeps `el` verbatim as a fragment of `parent`, and names it in `ignored`. `scope` are
    /// the elements between the envelope and `el` whose namespace declarations it may use.
    fn keep(&mut self, el: &Element, parent: &str, what: String, scope: &[&Element]) {
        let mut xml = self.src[el.start..el.end].to_string();
        let mut used = Vec::new();
        el.prefixes(&mut used);
        let mut declare = String::new();
        for p in used.iter().filter(|p| !PREFIXES.iter().any(|(q, _)| q == *p) && !el.declares(p)) {
            let key = format!("xmlns:{p}");
            let uri = scope.iter().rev().chain(std::iter::once(&self.root)).find_map(|s| s.attr(&key));
            if let Some(uri) = uri {
                declare.push_str(&format!(" {key}=\"{}\"", attr_value(uri)));
            }
        }
        if !declare.is_empty() {
            xml.insert_str(1 + el.name.len(), &declare);
        }
        self.kept.push(OvfFragment { parent: parent.to_string(), xml });
        self.ignored.push(what);
    }

    /// Keeps the children of `el` that are not in `known`.
    fn keep_unknown(&mut self, el: &Element, parent: &str, known: &[&str], scope: &[&Element]) {
        for c in el.children.iter().filter(|c| !known.contains(&c.name.as_str())) {
            self.keep(c, parent, format!("{parent}/{}", label(c)), scope);
        }
    }

    fn references(
        &mut self,
        el: &'a Element,
        files: &mut HashMap<String, (Uuid, &'a Element)>,
    ) -> Result<(), OvfError> {
        for (i, f) in el.children_named("File").enumerate() {
            let path = format!("References/File {}", i + 1);
            let href = required_attr(f, &path, "ovf:href")?;
            let id = uuid(f, &path, "ovf:id", required_attr(f, &path, "ovf:id")?)?;
            inside_storage_domain(f, &path, href)?;
            files.insert(href.to_string(), (id, f));
        }
        self.keep_unknown(el, "References", &["File"], &[el]);
        Ok(())
    }

    fn disk_section(
        &mut self,
        section: &'a Element,
        files: &HashMap<String, (Uuid, &Element)>,
    ) -> Result<Vec<DiskEntry<'a>>, OvfError> {
        let mut disks: Vec<DiskEntry> = Vec::new();
        for (i, el) in section.children_named("Disk").enumerate() {
            let path = format!("DiskSection/Disk {}", i + 1);
            let id = uuid(el, &path, "ovf:diskId", required_attr(el, &path, "ovf:diskId")?)?;
            if let Some(first) = disks.iter().find(|d| d.disk.id == id) {
                return Err(invalid(el, &path, format!("diskId {id} appears twice (first on line {})", first.el.line)));
            }
            let file_ref = required_attr(el, &path, "ovf:fileRef")?;
            let (_, file) = files.get(file_ref).ok_or_else(|| {
                invalid(el, &path, format!("fileRef '{}' names no File in References", quote(file_ref)))
            })?;
            let size_mib = match (el.attr("corral:size-mib"), el.attr("ovf:size"), file.attr("ovf:size")) {
                (Some(mib), _, _) => number(el, &path, "corral:size-mib", mib)?,
                (None, Some(gib), _) => number::<u64>(el, &path, "size", gib)?.saturating_mul(1024),
                (None, None, Some(bytes)) => number::<u64>(file, &path, "File size", bytes)?.div_ceil(1024 * 1024),
                (None, None, None) => return Err(invalid(el, &path, "no size")),
            };
            let format = match (el.attr("corral:format"), el.attr("ovf:volume-format")) {
                (Some(f), _) => f.to_string(),
                (None, Some("COW")) => "qcow2".to_string(),
                (None, Some("RAW")) => "raw".to_string(),
                (None, Some(other)) => {
                    return Err(invalid(el, &path, format!("volume-format '{}' is neither COW nor RAW", quote(other))))
                }
                (None, None) if el.attr("ovf:format") == Some(FORMAT_URI_COW) => "qcow2".to_string(),
                (None, None) => "raw".to_string(),
            };
            let created =
                el.attr("corral:created-ms").map(|t| number(el, &path, "corral:created-ms", t)).transpose()?;
            let base = match el.attr("ovf:parentRef").map(str::trim).filter(|p| !p.is_empty()) {
                Some(p) => Some(uuid(el, &path, "ovf:parentRef", p)?).filter(|id| !id.is_nil()),
                None => None,
            };
            let alias = el.attr("ovf:disk-alias");
            for (attr, assumed) in [("ovf:read-only", "false"), ("ovf:shareable", "false")] {
                if let Some(v) = el.attr(attr).filter(|v| !v.eq_ignore_ascii_case(assumed)) {
                    self.ignored.push(format!("{path}: {} {v} (Corral assumes {assumed})", &attr[4..]));
                }
            }
            let interface = match el.attr("ovf:disk-interface") {
                None | Some("VirtIO") => DiskInterface::Virtio,
                Some("VirtIO_SCSI") => DiskInterface::Scsi,
                Some(v) => {
                    self.ignored.push(format!("{path}: disk-interface {v} (Corral attaches disks as VirtIO)"));
                    DiskInterface::Virtio
                }
            };
            let flag = |name: &str| -> Result<bool, OvfError> {
                el.attr(name).map(|v| boolean(el, &path, v)).transpose().map(|b| b.unwrap_or(false))
            };
            let attachment = Attachment {
                interface,
                unplugged: false,
                optional: flag("corral:optional")?,
                bootable: flag("ovf:boot")?,
            };
            disks.push(DiskEntry {
                disk: Disk {
                    id,
                    name: alias.unwrap_or_default().to_string(),
                    size_mib,
                    file: file_ref.to_string(),
                    format,
                    vm: None,
                    created_ms: created.unwrap_or(0),
                    base,
                },
                el,
                exact_time: created.is_some(),
                time_known: created.is_some(),
                alias: alias.is_some(),
                attachment,
            });
        }
        Ok(disks)
    }

    fn content(&mut self, content: &'a Element, mut disks: Vec<DiskEntry<'a>>) -> Result<Imported, OvfError> {
        let mut f = Fields::default();
        let (mut os_section, mut hardware, mut snapshots) = (None, None, None);
        for el in &content.children {
            if el.name != "Section" {
                self.content_field(content, el, &mut f)?;
                continue;
            }
            match section_type(el) {
                Some("OperatingSystemSection") => os_section = Some(el),
                Some("VirtualHardwareSection") => hardware = Some(el),
                // oVirt's own snapshots (its "Active VM", volume chains Corral cannot use) are
                // kept as written; Corral's carry its tree and configurations.
                Some("SnapshotsSection") if !corral_snapshots(el) => {
                    self.keep(el, "Content", format!("Content/{}", label(el)), &[content])
                }
                Some("SnapshotsSection") if self.nested => {
                    return Err(invalid(el, "Snapshot/vm_configuration", "a snapshot's configuration holds snapshots"));
                }
                Some("SnapshotsSection") => snapshots = Some(el),
                _ => self.keep(el, "Content", format!("Content/{}", label(el)), &[content]),
            }
        }
        let missing = |what: &str| OvfError::Missing { path: "Content".into(), what: what.into() };
        let name = f.name.take().ok_or_else(|| missing("Name"))?;
        let os_section = os_section.ok_or_else(|| missing("OperatingSystemSection (it carries the VM's id)"))?;
        let hardware = hardware.ok_or_else(|| missing("VirtualHardwareSection"))?;
        let (id, os) = self.os_section(content, os_section)?;
        let created_ms = f.created_exact.or(f.created).unwrap_or(0);
        let hw = self.hardware(content, hardware, &mut disks)?;
        let attachments: Vec<(Uuid, Attachment)> =
            hw.disk_order.iter().filter_map(|&i| disks.get(i)).map(|e| (e.disk.id, e.attachment)).collect();
        let disks = attach_disks(&mut disks, &hw.disk_order, id, created_ms);
        let mut vm = vm_of(Vm::new(id, &name, hw.memory_mib, hw.vcpus, created_ms), f, hw);
        vm.config.os = os;
        vm.config.disks = disks.iter().map(|d| d.id).collect();
        // Only what differs from the default attachment is kept: a document of a VM that never
        // changed one reads back as that VM.
        for (disk, a) in attachments {
            if a != vm.attachment(disk) {
                vm.config.attachments.insert(disk, a);
            }
        }
        if let Some(el) = snapshots {
            vm.snapshot_state = snapshots_section(el)?;
        }
        Ok(Imported { vm, disks, ignored: Vec::new() })
    }

    /// The VM's id and guest OS, from its OperatingSystemSection.
    fn os_section(&mut self, content: &Element, os_section: &Element) -> Result<(Uuid, String), OvfError> {
        let id_text = os_section.attr("ovf:id").ok_or_else(|| OvfError::Missing {
            path: "OperatingSystemSection".into(),
            what: "ovf:id (the VM's id)".into(),
        })?;
        let id = uuid(os_section, "OperatingSystemSection", "ovf:id", id_text)?;
        let os = os_section.child("Description").map_or_else(|| DEFAULT_OS.to_string(), |d| d.text.clone());
        self.keep_unknown(os_section, "OperatingSystemSection", &["Info", "Description"], &[content, os_section]);
        Ok((id, os))
    }

    /// One child of Content other than a Section: a field Corral models, derives or keeps.
    fn content_field(&mut self, content: &Element, el: &Element, f: &mut Fields) -> Result<(), OvfError> {
        let path = format!("Content/{}", el.name);
        let t = el.text.as_str();
        match el.name.as_str() {
            "Name" => f.name = Some(t.to_string()),
            "Description" => f.description = t.to_string(),
            "Comment" => f.comment = t.to_string(),
            "CreationDate" => {
                let date = parse_date(t);
                f.created =
                    Some(date.ok_or_else(|| {
                        invalid(el, &path, format!("'{}' is not a date (yyyy/MM/dd HH:mm:ss)", quote(t)))
                    })?)
            }
            "DeleteProtected" => f.delete_protected = boolean(el, &path, t)?,
            "AutoStartup" => f.ha = boolean(el, &path, t)?,
            "Priority" => f.priority = priority(number(el, &path, "Priority", t)?),
            "Origin" => f.origin = Some(t.trim().to_string()),
            "MigrationSupport" => f.migration = migration_support(el, &path, t)?,
            "DedicatedVmForVds" if t.trim().is_empty() => {}
            "DedicatedVmForVds" => match t.trim().parse() {
                Ok(host) => f.pinned.push(host),
                Err(_) => self.keep(
                    el,
                    "Content",
                    format!("{path} (host '{}' is not a Corral host id)", quote(t)),
                    &[content],
                ),
            },
            "ResumeBehavior" => f.resume = resume_behavior(el, &path, t)?,
            "MigrationDowntime" if t.trim().is_empty() => {}
            "MigrationDowntime" => f.downtime = Some(number(el, &path, "MigrationDowntime", t)?),
            "IsAutoConverge" => f.auto_converge = Some(boolean(el, &path, t)?),
            "IsMigrateCompressed" => f.compression = Some(boolean(el, &path, t)?),
            "kernel_url" => f.kernel = Some(t.to_string()),
            "initrd_url" => f.initrd = Some(t.to_string()),
            "kernel_params" => f.cmdline = t.to_string(),
            "corral:CreatedMs" => f.created_exact = Some(number(el, &path, "CreatedMs", t)?),
            "corral:HostedEngine" => f.hosted_engine = Some(boolean(el, &path, t)?),
            "corral:DomainType" => f.domain_type = Some(domain_type(el, &path, t)?),
            "corral:HostTag" => f.host_tags.push(t.to_string()),
            "corral:MigrationBandwidth" => f.bandwidth = Some(number(el, &path, "MigrationBandwidth", t)?),
            "corral:NextRun" => f.next_run = Some(next_run(el)?),
            "corral:MaxVcpus" => f.max_vcpus = Some(number(el, &path, "MaxVcpus", t)?),
            "corral:MaxMemoryMib" => f.max_memory_mib = Some(number(el, &path, "MaxMemoryMib", t)?),
            "TemplateId" => f.template_id = Some(uuid(el, &path, "TemplateId", t)?).filter(|id| !id.is_nil()),
            "TemplateName" => f.template_name = t.trim().to_string(),
            "IsStateless" => f.stateless = boolean(el, &path, t)?,
            "corral:TemplateThin" => f.template_thin = boolean(el, &path, t)?,
            "corral:Offering" => {
                crate::validate::name("offering", t).map_err(|e| invalid(el, &path, e.to_string()))?;
                f.offering = Some(t.to_string());
            }
            "corral:BootOrder" => {
                let mut order = Vec::new();
                for w in t.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let d = crate::model::BootDevice::parse(w)
                        .filter(|d| !order.contains(d))
                        .ok_or_else(|| invalid(el, &path, format!("'{}' is no boot device, or twice", quote(w))))?;
                    order.push(d);
                }
                f.boot_order = order;
            }
            "corral:CloudInit" => f.cloud_init = Some(cloud_init(el)?),
            n if DERIVED_CONTENT.contains(&n) => {}
            _ => self.keep(el, "Content", format!("Content/{}", label(el)), &[content]),
        }
        Ok(())
    }
}

/// The VM's disks in the order the guest sees them, attached to it; a disk the document gave
/// no time or name takes the VM's time and a name by its position.
fn attach_disks(disks: &mut [DiskEntry], order: &[usize], vm: Uuid, created_ms: i64) -> Vec<Disk> {
    let mut attached = Vec::with_capacity(order.len());
    for &i in order {
        let Some(e) = disks.get_mut(i) else { continue };
        e.disk.vm = Some(vm);
        if !e.time_known {
            e.disk.created_ms = created_ms;
        }
        if e.disk.name.is_empty() && !e.alias {
            e.disk.name = format!("disk{}", i + 1);
        }
        attached.push(e.disk.clone());
    }
    attached
}

/// `vm` with the fields the Content and its hardware gave.
fn vm_of(mut vm: Vm, f: Fields, hw: Hardware) -> Vm {
    vm.config.description = f.description;
    vm.config.comment = f.comment;
    vm.config.ha.enabled = f.ha;
    vm.config.ha.priority = f.priority;
    vm.config.nics = hw.nics;
    vm.config.cdrom = hw.cdrom;
    vm.config.domain_type = f.domain_type;
    vm.config.boot = f.kernel.filter(|k| !k.trim().is_empty()).map(|kernel| KernelBoot {
        kernel,
        initrd: f.initrd.filter(|i| !i.trim().is_empty()),
        cmdline: f.cmdline,
    });
    vm.config.migration_settings.auto_converge = f.auto_converge;
    vm.config.migration_settings.compression = f.compression;
    vm.config.migration_settings.max_downtime_ms = f.downtime;
    vm.config.migration_settings.bandwidth_mibps = f.bandwidth;
    vm.config.next_run = f.next_run;
    vm.config.max_vcpus = f.max_vcpus;
    vm.config.max_memory_mib = f.max_memory_mib;
    vm.config.resume_behavior = f.resume;
    vm.config.host_tags = f.host_tags;
    vm.config.pinned_hosts = f.pinned;
    vm.config.migration = f.migration;
    let engine_origin = matches!(f.origin.as_deref(), Some(ORIGIN_HOSTED_ENGINE | ORIGIN_MANAGED_HOSTED_ENGINE));
    vm.config.hosted_engine = f.hosted_engine.unwrap_or(engine_origin);
    vm.config.delete_protected = f.delete_protected;
    vm.config.from_template = f.template_id.map(|id| crate::model::FromTemplate {
        id,
        name: if f.template_name.is_empty() { id.to_string() } else { f.template_name.clone() },
        thin: f.template_thin,
    });
    vm.config.stateless = f.stateless;
    vm.config.offering = f.offering;
    vm.config.boot_order = f.boot_order;
    vm.config.cloud_init = f.cloud_init;
    vm
}

fn migration_support(el: &Element, path: &str, t: &str) -> Result<MigrationPolicy, OvfError> {
    match t.trim() {
        "0" => Ok(MigrationPolicy::Allow),
        "1" => Ok(MigrationPolicy::Manual),
        "2" => Ok(MigrationPolicy::None),
        _ => Err(invalid(el, path, format!("'{}' is not 0, 1 or 2", quote(t)))),
    }
}

fn resume_behavior(el: &Element, path: &str, t: &str) -> Result<ResumeBehavior, OvfError> {
    match t.trim() {
        "AUTO_RESUME" => Ok(ResumeBehavior::AutoResume),
        "LEAVE_PAUSED" => Ok(ResumeBehavior::LeavePaused),
        "KILL" => Ok(ResumeBehavior::Kill),
        _ => Err(invalid(el, path, format!("'{}' is not AUTO_RESUME, LEAVE_PAUSED or KILL", quote(t)))),
    }
}

#[derive(Default)]
struct Fields {
    name: Option<String>,
    description: String,
    comment: String,
    created: Option<i64>,
    created_exact: Option<i64>,
    delete_protected: bool,
    ha: bool,
    priority: HaPriority,
    origin: Option<String>,
    migration: MigrationPolicy,
    pinned: Vec<u64>,
    resume: ResumeBehavior,
    downtime: Option<u64>,
    auto_converge: Option<bool>,
    compression: Option<bool>,
    kernel: Option<String>,
    initrd: Option<String>,
    cmdline: String,
    hosted_engine: Option<bool>,
    domain_type: Option<DomainType>,
    host_tags: Vec<String>,
    bandwidth: Option<u64>,
    next_run: Option<NextRun>,
    max_vcpus: Option<u32>,
    max_memory_mib: Option<u64>,
    template_id: Option<Uuid>,
    template_name: String,
    template_thin: bool,
    stateless: bool,
    offering: Option<String>,
    boot_order: Vec<crate::model::BootDevice>,
    cloud_init: Option<crate::model::CloudInit>,
}

struct Hardware {
    vcpus: u32,
    memory_mib: u64,
    nics: Vec<Nic>,
    cdrom: Option<String>,
    /// Indexes into the DiskSection's disks, in boot order.
    disk_order: Vec<usize>,
}

fn cloud_init(el: &Element) -> Result<crate::model::CloudInit, OvfError> {
    let path = "Content/corral:CloudInit";
    let mut c = crate::model::CloudInit::default();
    for x in &el.children {
        match x.name.as_str() {
            "corral:UserData" => c.user_data = x.text.clone(),
            "corral:NetworkConfig" => c.network_config = Some(x.text.clone()),
            "corral:SshKey" => c.ssh_keys.push(x.text.clone()),
            "corral:Hostname" => c.hostname = Some(x.text.clone()),
            other => return Err(invalid(x, path, format!("unknown element '{}'", quote(other)))),
        }
    }
    crate::validate::cloud_init(&c).map_err(|e| invalid(el, path, e.to_string()))?;
    Ok(c)
}

fn next_run(el: &Element) -> Result<NextRun, OvfError> {
    let path = "Content/corral:NextRun";
    let mut n = NextRun::default();
    for c in &el.children {
        match c.name.as_str() {
            "corral:MemoryMib" => n.memory_mib = Some(number(c, path, "MemoryMib", &c.text)?),
            "corral:Vcpus" => n.vcpus = Some(number(c, path, "Vcpus", &c.text)?),
            "corral:DomainType" => n.domain_type = Some(domain_type(c, path, &c.text)?),
            "corral:Os" => n.os = Some(c.text.clone()),
            "corral:MaxVcpus" => n.max_vcpus = Some(number(c, path, "MaxVcpus", &c.text)?),
            "corral:MaxMemoryMib" => n.max_memory_mib = Some(number(c, path, "MaxMemoryMib", &c.text)?),
            "corral:Cdrom" => n.cdrom = Some(Some(c.text.clone()).filter(|t| !t.is_empty())),
            "corral:CdromEjected" => n.cdrom = Some(None),
            "corral:Stateless" => n.stateless = Some(boolean(c, path, &c.text)?),
            other => return Err(invalid(c, path, format!("unknown element '{}'", quote(other)))),
        }
    }
    Ok(n)
}

/// oVirt's priority (0-100) as one of Corral's three: the nearest of 1, 50 and 100.
fn priority(p: u32) -> HaPriority {
    match p {
        0..=25 => HaPriority::Low,
        26..=75 => HaPriority::Medium,
        _ => HaPriority::High,
    }
}

/// "NetworkSection" for `<Section xsi:type="ovf:NetworkSection_Type">`.
fn section_type(el: &Element) -> Option<&str> {
    let t = el.attr("xsi:type")?;
    let t = t.split_once(':').map_or(t, |(_, local)| local);
    Some(t.strip_suffix("_Type").unwrap_or(t))
}

/// How `ignored` names an element: a Section by its type, anything else by its name.
fn label(el: &Element) -> String {
    match (el.name.as_str(), section_type(el)) {
        ("Section", Some(t)) => t.to_string(),
        (name, _) => name.to_string(),
    }
}

/// What an Item of an unmodelled ResourceType is, for `ignored`.
fn device_kind(rt: &str, el: &Element) -> String {
    let device = el.child("Device").map(|d| d.text.trim()).filter(|d| !d.is_empty());
    match (rt, device) {
        ("23", _) => "USB controller".into(),
        ("20" | "32768", _) => "monitor".into(),
        ("24" | "26", _) => "graphics".into(),
        (_, Some(d)) => d.to_string(),
        _ => el.child("rasd:Caption").map_or_else(|| "unknown device".into(), |c| c.text.clone()),
    }
}

fn invalid(el: &Element, path: &str, problem: impl Into<String>) -> OvfError {
    OvfError::Invalid { line: el.line, path: path.to_string(), problem: problem.into() }
}

fn required_attr<'e>(el: &'e Element, path: &str, name: &str) -> Result<&'e str, OvfError> {
    el.attr(name).ok_or_else(|| invalid(el, path, format!("no {name}")))
}

fn uuid(el: &Element, path: &str, what: &str, value: &str) -> Result<Uuid, OvfError> {
    Uuid::parse_str(value.trim()).map_err(|_| invalid(el, path, format!("{what} '{}' is not a UUID", quote(value))))
}

fn number<T: std::str::FromStr>(el: &Element, path: &str, what: &str, value: &str) -> Result<T, OvfError> {
    value.trim().parse().map_err(|_| invalid(el, path, format!("{what} '{}' is not a number", quote(value))))
}

fn boolean(el: &Element, path: &str, value: &str) -> Result<bool, OvfError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(el, path, format!("'{}' is not true or false", quote(value)))),
    }
}

fn domain_type(el: &Element, path: &str, value: &str) -> Result<DomainType, OvfError> {
    value.trim().parse().map_err(|_| invalid(el, path, format!("'{}' is not kvm, qemu or test", quote(value))))
}

/// Refuses a disk file that would lie outside the storage domain.
fn inside_storage_domain(el: &Element, path: &str, file: &str) -> Result<(), OvfError> {
    let refuse = |why: &str| {
        invalid(el, path, format!("href '{}' {why} (a disk's file must lie inside the storage domain)", quote(file)))
    };
    if file.is_empty() {
        return Err(refuse("is empty"));
    }
    if file.starts_with('/') || file.starts_with('\\') {
        return Err(refuse("is absolute"));
    }
    if file.split(['/', '\\']).any(|part| part == "..") {
        return Err(refuse("climbs out with '..'"));
    }
    if file.contains('\0') {
        return Err(refuse("contains a NUL byte"));
    }
    Ok(())
}

/// Six pairs of hex digits separated by ':'.
fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether a SnapshotsSection is one Corral wrote (each snapshot says its status).
fn corral_snapshots(section: &Element) -> bool {
    let mut snaps = section.children_named("Snapshot").peekable();
    snaps.peek().is_some() && snaps.all(|s| s.child("corral:Status").is_some())
}

/// oVirt's SnapshotsSection as Corral writes it (`write::snapshots`).
fn snapshots_section(section: &Element) -> Result<crate::model::VmSnapshots, OvfError> {
    use crate::model::{RunLimits, Snapshot, SnapshotStatus, VmSnapshots};
    let path = "Content/SnapshotsSection";
    let mut out = VmSnapshots::default();
    for el in &section.children {
        match el.name.as_str() {
            "corral:Current" => out.current_snapshot = Some(uuid(el, path, "corral:Current", &el.text)?),
            "Snapshot" => {}
            _ => continue,
        }
        if el.name != "Snapshot" {
            continue;
        }
        if out.snapshots.len() >= crate::apply::snapshots::MAX_SNAPSHOTS_PER_VM {
            return Err(invalid(el, path, "more snapshots than a VM keeps"));
        }
        let id = uuid(el, path, "ovf:id", required_attr(el, path, "ovf:id")?)?;
        let spath = "Content/SnapshotsSection/Snapshot";
        let text = |name: &str| el.child(name).map(|c| c.text.as_str());
        let config = match text("vm_configuration") {
            Some(doc) => {
                read_at(doc, true).map_err(|e| invalid(el, spath, format!("vm_configuration: {e}")))?.vm.config
            }
            None => return Err(OvfError::Missing { path: spath.into(), what: "vm_configuration".into() }),
        };
        let created_ms = match (text("corral:CreatedMs"), text("CreationDate")) {
            (Some(ms), _) => number(el, spath, "corral:CreatedMs", ms)?,
            (None, Some(d)) => parse_date(d).unwrap_or(0),
            (None, None) => 0,
        };
        let status = match (text("corral:Status"), text("Type")) {
            (Some("locked"), _) => SnapshotStatus::Locked,
            (Some("in_preview"), _) | (None, Some("PREVIEW")) => SnapshotStatus::InPreview,
            _ => SnapshotStatus::Ok,
        };
        let mut disks = Vec::new();
        for d in el.children_named("corral:Disk") {
            disks.push(uuid(d, spath, "corral:Disk", &d.text)?);
        }
        let limit = |name: &str| text(name).map(|v| number::<u64>(el, spath, name, v)).transpose();
        let run_limits =
            match (limit("corral:BootMemoryMib")?, limit("corral:LimitMemoryMib")?, limit("corral:LimitVcpus")?) {
                (Some(boot), Some(max), Some(vcpus)) => Some(RunLimits {
                    boot_memory_mib: boot,
                    max_memory_mib: max,
                    max_vcpus: u32::try_from(vcpus)
                        .map_err(|_| invalid(el, spath, "corral:LimitVcpus is too large"))?,
                }),
                _ => None,
            };
        out.snapshots.push(Snapshot {
            id,
            parent: text("corral:Parent").map(|p| uuid(el, spath, "corral:Parent", p)).transpose()?,
            description: text("Description").unwrap_or_default().to_string(),
            created_ms,
            memory: text("corral:Memory").map(|m| boolean(el, spath, m)).transpose()?.unwrap_or(false),
            disks,
            status,
            config: Box::new(config),
            domain_xml: None,
            run_limits,
            memory_mib: limit("corral:MemoryMib")?.unwrap_or(0),
        });
    }
    Ok(out)
}
