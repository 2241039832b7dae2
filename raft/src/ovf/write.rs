//! `write`: a VM and its disks as an OVF document in oVirt's OVF_STORE shape. Built with
//! quick-xml's event writer; every piece of user text goes through `text` or `attr_value`.

use std::borrow::Cow;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;
use quick_xml::Writer;
use uuid::Uuid;

use super::*;
use crate::model::{HaPriority, MigrationPolicy, Nic, ResumeBehavior, SnapshotStatus};

const MIB: u64 = 1024 * 1024;
const GIB_IN_MIB: u64 = 1024;

/// The VM's OVF document, exported at `exported_ms` (0: no ExportDate, as the OVF store
/// writes it). `disks` are the VM's disks; they are
/// written in the order of `vm.disks`, and a disk not in `vm.disks` is left out.
pub fn write(vm: &Vm, disks: &[Disk], exported_ms: i64) -> String {
    let disks: Vec<&Disk> = vm.config.disks.iter().filter_map(|id| disks.iter().find(|d| d.id == *id)).collect();
    let mut w = Doc { w: Writer::new_with_indent(Vec::new(), b' ', 2), vm };
    w.event(Event::Decl(quick_xml::events::BytesDecl::new("1.0", Some("UTF-8"), None)));

    let mut envelope: Vec<(String, String)> =
        PREFIXES.iter().map(|(p, ns)| (format!("xmlns:{p}"), ns.to_string())).collect();
    envelope.push(("ovf:version".into(), OVF_VERSION.into()));
    w.open_owned("ovf:Envelope", &envelope);

    w.open("References", &[]);
    for d in &disks {
        let bytes = (d.size_mib.saturating_mul(MIB)).to_string();
        let id = d.id.to_string();
        w.empty(
            "File",
            &[
                ("ovf:href", &d.file),
                ("ovf:id", &id),
                ("ovf:size", &bytes),
                ("ovf:description", ""),
                ("ovf:disk_storage_type", "IMAGE"),
                ("ovf:cinder_volume_type", ""),
            ],
        );
    }
    w.fragments("References");
    w.close("References");

    w.open("Section", &[("xsi:type", "ovf:NetworkSection_Type")]);
    w.leaf("Info", "List of networks");
    let mut networks: Vec<&str> = Vec::new();
    for n in vm.config.nics.iter().map(|n| n.network.as_str()).filter(|n| !n.is_empty()) {
        if !networks.contains(&n) {
            networks.push(n);
            w.empty("Network", &[("ovf:name", n)]);
        }
    }
    w.fragments("NetworkSection");
    w.close("Section");

    w.open("Section", &[("xsi:type", "ovf:DiskSection_Type")]);
    w.leaf("Info", "List of Virtual Disks");
    for d in disks.iter() {
        w.disk(d);
    }
    w.fragments("DiskSection");
    w.close("Section");

    w.open("Content", &[("ovf:id", "out"), ("xsi:type", "ovf:VirtualSystem_Type")]);
    w.general(exported_ms);
    w.corral();
    w.open(
        "Section",
        &[("ovf:id", &vm.id.to_string()), ("ovf:required", "false"), ("xsi:type", "ovf:OperatingSystemSection_Type")],
    );
    w.leaf("Info", "Guest Operating System");
    w.leaf("Description", &vm.config.os);
    w.fragments("OperatingSystemSection");
    w.close("Section");
    w.hardware(&disks);
    w.snapshots(&disks);
    w.fragments("Content");
    w.close("Content");

    w.fragments("Envelope");
    w.close("ovf:Envelope");
    String::from_utf8(w.w.into_inner()).expect("the writer writes only UTF-8")
}

struct Doc<'a> {
    w: Writer<Vec<u8>>,
    vm: &'a Vm,
}

impl Doc<'_> {
    fn event(&mut self, e: Event<'_>) {
        self.w.write_event(e).expect("writing to memory does not fail");
    }

    fn start<'b>(name: &'b str, attrs: &'b [(&'b str, &'b str)]) -> BytesStart<'b> {
        let mut s = BytesStart::new(name);
        for (k, v) in attrs {
            s.push_attribute(Attribute { key: QName(k), value: Cow::Owned(attr_value(v)) });
        }
        s
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Start(Self::start(name, attrs)));
    }

    fn open_owned(&mut self, name: &str, attrs: &[(String, String)]) {
        let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.open(name, &attrs);
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Empty(Self::start(name, attrs)));
    }

    fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    fn leaf(&mut self, name: &str, value: &str) {
        self.open(name, &[]);
        self.event(Event::Text(BytesText::from_escaped(text(value))));
        self.close(name);
    }

    /// The kept fragments of `parent`, verbatim, each on a line of its own.
    fn fragments(&mut self, parent: &str) {
        for f in self.vm.config.ovf_unknown.iter().filter(|f| f.parent == parent) {
            self.w.write_indent().expect("writing to memory does not fail");
            self.w.get_mut().extend_from_slice(f.xml.as_bytes());
        }
    }

    fn disk(&mut self, d: &Disk) {
        let a = self.vm.attachment(d.id);
        let cow = d.format == "qcow2";
        let gib = (d.size_mib / GIB_IN_MIB).to_string();
        let (id, mib, created) = (d.id.to_string(), d.size_mib.to_string(), d.created_ms.to_string());
        // A thin disk names its template's base (oVirt's parentRef: the image it builds on).
        let parent = d.base.map(|b| b.to_string()).unwrap_or_default();
        let mut attrs = vec![
            ("ovf:diskId", id.as_str()),
            ("ovf:size", &gib),
            ("ovf:actual_size", &gib),
            ("ovf:vm_snapshot_id", ""),
            ("ovf:parentRef", &parent),
            ("ovf:fileRef", &d.file),
            ("ovf:format", if cow { FORMAT_URI_COW } else { FORMAT_URI_RAW }),
            ("ovf:volume-format", if cow { "COW" } else { "RAW" }),
            ("ovf:volume-type", if cow { "Sparse" } else { "Preallocated" }),
            ("ovf:disk-interface", disk_interface(a.interface)),
            ("ovf:read-only", "false"),
            ("ovf:shareable", "false"),
            ("ovf:boot", bool_str(a.bootable)),
            ("ovf:pass-discard", "false"),
            ("ovf:disk-alias", &d.name),
            ("ovf:disk-description", ""),
            ("ovf:wipe-after-delete", "false"),
            ("corral:size-mib", &mib),
            ("corral:created-ms", &created),
        ];
        if d.format != "qcow2" && d.format != "raw" {
            attrs.push(("corral:format", &d.format));
        }
        if a.optional {
            attrs.push(("corral:optional", "true"));
        }
        self.empty("Disk", &attrs);
    }

    /// oVirt's general elements of a VM, in the order oVirt writes them.
    fn general(&mut self, exported_ms: i64) {
        let vm = self.vm;
        self.leaf("Name", &vm.config.name);
        self.leaf("Description", &vm.config.description);
        self.leaf("Comment", &vm.config.comment);
        self.leaf("CreationDate", &format_date(vm.config.created_ms));
        // 0: the OVF store's copy, a function of the configuration alone (the same bytes on
        // every node, whenever it is written); an export says when it was made.
        if exported_ms != 0 {
            self.leaf("ExportDate", &format_date(exported_ms));
        }
        self.leaf("DeleteProtected", bool_str(vm.config.delete_protected));
        self.leaf("IsAutoSuspend", "false");
        if let Some(b) = vm.config.boot.as_ref().filter(|b| !b.kernel.trim().is_empty()) {
            if let Some(initrd) = b.initrd.as_deref().filter(|i| !i.trim().is_empty()) {
                self.leaf("initrd_url", initrd);
            }
            self.leaf("kernel_url", &b.kernel);
            if !b.cmdline.is_empty() {
                self.leaf("kernel_params", &b.cmdline);
            }
        }
        self.leaf("ResumeBehavior", resume_behavior(vm.config.resume_behavior));
        self.leaf("MinAllocatedMem", &vm.config.memory_mib.to_string());
        self.leaf("AutoStartup", bool_str(vm.config.ha.enabled));
        self.leaf("Priority", priority(vm.config.ha.priority));
        let o = &vm.config.migration_settings;
        if let Some(ms) = o.max_downtime_ms {
            self.leaf("MigrationDowntime", &ms.to_string());
        }
        self.leaf("MigrationSupport", migration_support(vm.config.migration));
        for h in &vm.config.pinned_hosts {
            self.leaf("DedicatedVmForVds", &h.to_string());
        }
        if let Some(b) = o.auto_converge {
            self.leaf("IsAutoConverge", bool_str(b));
        }
        if let Some(b) = o.compression {
            self.leaf("IsMigrateCompressed", bool_str(b));
        }
        match &vm.config.from_template {
            Some(t) => {
                self.leaf("TemplateId", &t.id.to_string());
                self.leaf("TemplateName", &t.name);
            }
            None => {
                self.leaf("TemplateId", &Uuid::nil().to_string());
                self.leaf("TemplateName", "Blank");
            }
        }
        self.leaf("IsStateless", bool_str(vm.config.stateless));
        self.leaf("Origin", if vm.config.hosted_engine { ORIGIN_MANAGED_HOSTED_ENGINE } else { ORIGIN_OVIRT });
    }

    /// What Corral has and oVirt has no element for.
    fn corral(&mut self) {
        let vm = self.vm;
        self.leaf("corral:CreatedMs", &vm.config.created_ms.to_string());
        self.leaf("corral:HostedEngine", bool_str(vm.config.hosted_engine));
        if let Some(t) = vm.config.domain_type {
            self.leaf("corral:DomainType", t.as_str());
        }
        for t in &vm.config.host_tags {
            self.leaf("corral:HostTag", t);
        }
        if let Some(b) = vm.config.migration_settings.bandwidth_mibps {
            self.leaf("corral:MigrationBandwidth", &b.to_string());
        }
        if let Some(m) = vm.config.max_vcpus {
            self.leaf("corral:MaxVcpus", &m.to_string());
        }
        if let Some(m) = vm.config.max_memory_mib {
            self.leaf("corral:MaxMemoryMib", &m.to_string());
        }
        if let Some(n) = &vm.config.next_run {
            self.open("corral:NextRun", &[]);
            if let Some(m) = n.memory_mib {
                self.leaf("corral:MemoryMib", &m.to_string());
            }
            if let Some(v) = n.vcpus {
                self.leaf("corral:Vcpus", &v.to_string());
            }
            if let Some(t) = n.domain_type {
                self.leaf("corral:DomainType", t.as_str());
            }
            if let Some(os) = &n.os {
                self.leaf("corral:Os", os);
            }
            if let Some(m) = n.max_vcpus {
                self.leaf("corral:MaxVcpus", &m.to_string());
            }
            if let Some(m) = n.max_memory_mib {
                self.leaf("corral:MaxMemoryMib", &m.to_string());
            }
            match &n.cdrom {
                Some(Some(iso)) => self.leaf("corral:Cdrom", iso),
                Some(None) => self.leaf("corral:CdromEjected", "true"),
                None => {}
            }
            if let Some(v) = n.stateless {
                self.leaf("corral:Stateless", bool_str(v));
            }
            self.close("corral:NextRun");
        }
        if vm.config.from_template.as_ref().is_some_and(|t| t.thin) {
            self.leaf("corral:TemplateThin", "true");
        }
        if let Some(o) = &vm.config.offering {
            self.leaf("corral:Offering", o);
        }
        if !vm.config.boot_order.is_empty() {
            let words: Vec<&str> = vm.config.boot_order.iter().map(|b| b.as_str()).collect();
            self.leaf("corral:BootOrder", &words.join(","));
        }
        if let Some(ci) = &vm.config.cloud_init {
            self.open("corral:CloudInit", &[]);
            self.leaf("corral:UserData", &ci.user_data);
            if let Some(n) = &ci.network_config {
                self.leaf("corral:NetworkConfig", n);
            }
            for k in &ci.ssh_keys {
                self.leaf("corral:SshKey", k);
            }
            if let Some(h) = &ci.hostname {
                self.leaf("corral:Hostname", h);
            }
            self.close("corral:CloudInit");
        }
    }

    /// oVirt's SnapshotsSection: each snapshot with the VM's configuration then, as a document
    /// of its own (`vm_configuration`, as oVirt writes it), and Corral's tree and memory.
    fn snapshots(&mut self, disks: &[&Disk]) {
        let st = &self.vm.snapshot_state;
        if st.snapshots.is_empty() {
            return;
        }
        self.open("Section", &[("xsi:type", "ovf:SnapshotsSection_Type")]);
        for snap in &st.snapshots {
            self.open("Snapshot", &[("ovf:id", &snap.id.to_string())]);
            self.leaf("Type", if snap.status == SnapshotStatus::InPreview { "PREVIEW" } else { "REGULAR" });
            self.leaf("Description", &snap.description);
            self.leaf("CreationDate", &format_date(snap.created_ms));
            self.leaf("corral:CreatedMs", &snap.created_ms.to_string());
            self.leaf("corral:Status", snap.status.as_str());
            if let Some(p) = snap.parent {
                self.leaf("corral:Parent", &p.to_string());
            }
            self.leaf("corral:Memory", bool_str(snap.memory));
            if snap.memory_mib > 0 {
                self.leaf("corral:MemoryMib", &snap.memory_mib.to_string());
            }
            for d in &snap.disks {
                self.leaf("corral:Disk", &d.to_string());
            }
            if let Some(l) = snap.run_limits {
                self.leaf("corral:BootMemoryMib", &l.boot_memory_mib.to_string());
                self.leaf("corral:LimitMemoryMib", &l.max_memory_mib.to_string());
                self.leaf("corral:LimitVcpus", &l.max_vcpus.to_string());
            }
            // Not its domain definition: a document must never give a host a definition to run
            // (an imported memory snapshot is restored as its disks).
            // The configuration then, without snapshots of its own.
            let then = Vm {
                id: self.vm.id,
                config: (*snap.config).clone(),
                ..Vm::new(
                    self.vm.id,
                    &snap.config.name,
                    snap.config.memory_mib,
                    snap.config.vcpus,
                    snap.config.created_ms,
                )
            };
            let owned: Vec<Disk> = disks.iter().map(|d| (*d).clone()).collect();
            self.leaf("vm_configuration", &write(&then, &owned, 0));
            self.close("Snapshot");
        }
        if let Some(c) = st.current_snapshot {
            self.leaf("corral:Current", &c.to_string());
        }
        self.close("Section");
    }

    fn hardware(&mut self, disks: &[&Disk]) {
        let vm = self.vm;
        let (vcpus, memory) = (vm.config.vcpus.to_string(), vm.config.memory_mib.to_string());
        self.open("Section", &[("xsi:type", "ovf:VirtualHardwareSection_Type")]);
        self.leaf("Info", &format!("{vcpus} CPU, {memory} Memory"));
        self.open("System", &[]);
        self.leaf("vssd:VirtualSystemType", &format!("ENGINE {OVF_VERSION}"));
        self.close("System");
        self.cpu_and_memory_items();
        for (i, d) in disks.iter().enumerate() {
            self.disk_item(i, d);
        }
        for (i, n) in vm.config.nics.iter().enumerate() {
            self.nic_item(i, n);
        }
        self.cdrom_item();
        self.fragments("VirtualHardwareSection");
        self.close("Section");
    }

    fn cpu_and_memory_items(&mut self) {
        let (vcpus, memory) = (self.vm.config.vcpus.to_string(), self.vm.config.memory_mib.to_string());
        self.open("Item", &[]);
        self.leaf("rasd:Caption", &format!("{vcpus} virtual cpu"));
        self.leaf("rasd:Description", "Number of virtual CPU");
        self.leaf("rasd:InstanceId", "1");
        self.leaf("rasd:ResourceType", RT_CPU);
        self.leaf("rasd:num_of_sockets", &vcpus);
        self.leaf("rasd:cpu_per_socket", "1");
        self.leaf("rasd:threads_per_cpu", "1");
        self.leaf("rasd:max_num_of_vcpus", &vcpus);
        self.leaf("rasd:VirtualQuantity", &vcpus);
        self.fragments("Item CPU");
        self.close("Item");

        self.open("Item", &[]);
        self.leaf("rasd:Caption", &format!("{memory} MB of memory"));
        self.leaf("rasd:Description", "Memory Size");
        self.leaf("rasd:InstanceId", "2");
        self.leaf("rasd:ResourceType", RT_MEMORY);
        self.leaf("rasd:AllocationUnits", "MegaBytes");
        self.leaf("rasd:VirtualQuantity", &memory);
        self.fragments("Item memory");
        self.close("Item");
    }

    /// The disk the guest sees `i`-th (it boots from the first).
    fn disk_item(&mut self, i: usize, d: &Disk) {
        let nil = Uuid::nil().to_string();
        let created = format_date(d.created_ms);
        self.open("Item", &[]);
        self.leaf("rasd:Caption", &d.name);
        self.leaf("rasd:InstanceId", &d.id.to_string());
        self.leaf("rasd:ResourceType", RT_DISK);
        self.leaf("rasd:HostResource", &d.file);
        self.leaf("rasd:Parent", &nil);
        self.leaf("rasd:Template", &nil);
        self.leaf("rasd:ApplicationList", "");
        self.leaf("rasd:StorageId", &nil);
        self.leaf("rasd:StoragePoolId", &nil);
        self.leaf("rasd:CreationDate", &created);
        self.leaf("rasd:LastModified", &created);
        self.leaf("rasd:last_modified_date", &created);
        self.leaf("Type", "disk");
        self.leaf("Device", "disk");
        self.leaf("BootOrder", &(i + 1).to_string());
        self.leaf("IsPlugged", bool_str(!self.vm.attachment(d.id).unplugged));
        self.leaf("IsReadOnly", "false");
        self.fragments(&format!("Item disk {}", d.id));
        self.close("Item");
    }

    fn nic_item(&mut self, i: usize, n: &Nic) {
        let vm = self.vm;
        let name = vm.nic_name(i);
        self.open("Item", &[]);
        self.leaf("rasd:Caption", &format!("Ethernet adapter on {}", n.network));
        self.leaf("rasd:InstanceId", &device_id(vm.id, i + 1).to_string());
        self.leaf("rasd:ResourceType", RT_NIC);
        self.leaf("rasd:OtherResourceType", &n.network);
        self.leaf("rasd:ResourceSubType", "3");
        self.leaf("rasd:Connection", &n.network);
        self.leaf("rasd:Linked", "true");
        self.leaf("rasd:Name", &name);
        self.leaf("rasd:ElementName", &name);
        self.leaf("rasd:MACAddress", &n.mac);
        self.leaf("rasd:speed", "10000");
        self.leaf("Type", "interface");
        self.leaf("Device", "bridge");
        self.leaf("IsPlugged", bool_str(!n.unplugged));
        self.leaf("IsReadOnly", "false");
        // Kept fragments are filed by position, as the reader files them.
        self.fragments(&format!("Item nic{}", i + 1));
        self.close("Item");
    }

    /// Always there, as in oVirt: an empty drive when no image is inserted.
    fn cdrom_item(&mut self) {
        let vm = self.vm;
        let iso = vm.config.cdrom.as_deref().unwrap_or("");
        self.open("Item", &[]);
        self.leaf("rasd:Caption", "CDROM");
        self.leaf("rasd:InstanceId", &device_id(vm.id, 0).to_string());
        self.leaf("rasd:ResourceType", RT_CDROM);
        self.leaf("rasd:HostResource", iso);
        self.leaf("Type", "disk");
        self.leaf("Device", "cdrom");
        self.leaf("BootOrder", "0");
        self.leaf("IsPlugged", "true");
        self.leaf("IsReadOnly", "true");
        self.fragments("Item CD-ROM");
        self.close("Item");
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

pub(super) fn resume_behavior(r: ResumeBehavior) -> &'static str {
    match r {
        ResumeBehavior::AutoResume => "AUTO_RESUME",
        ResumeBehavior::LeavePaused => "LEAVE_PAUSED",
        ResumeBehavior::Kill => "KILL",
    }
}

pub(super) fn priority(p: HaPriority) -> &'static str {
    match p {
        HaPriority::Low => "1",
        HaPriority::Medium => "50",
        HaPriority::High => "100",
    }
}

pub(super) fn migration_support(m: MigrationPolicy) -> &'static str {
    match m {
        MigrationPolicy::Allow => "0",
        MigrationPolicy::Manual => "1",
        MigrationPolicy::None => "2",
    }
}

/// Text content escaped for XML. A carriage return is written as a reference (a parser
/// turns a literal one into a newline); characters XML 1.0 cannot carry at all become U+FFFD.
fn text(s: &str) -> String {
    escape(s, false)
}

/// An attribute value escaped for XML, whitespace kept (a parser turns literal tabs and
/// newlines in attribute values into spaces).
pub(super) fn attr_value(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' => out.push(c),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// Whether XML 1.0 allows the character in a document.
pub(super) fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// oVirt's word for a disk's bus.
fn disk_interface(i: crate::model::DiskInterface) -> &'static str {
    match i {
        crate::model::DiskInterface::Virtio => "VirtIO",
        crate::model::DiskInterface::Scsi => "VirtIO_SCSI",
    }
}
