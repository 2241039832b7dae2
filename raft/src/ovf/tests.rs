use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::model::{
    BootDevice, CloudInit, DomainType, FromTemplate, HaPriority, KernelBoot, MigrationOverrides, MigrationPolicy,
    NextRun, Nic, OvfFragment, PowerState, ResumeBehavior, VmStatus,
};

const OVIRT_HOSTED_ENGINE: &str = include_str!("../../tests/ovf/ovirt-hosted-engine.ovf");
const T0: i64 = 1_700_000_000_123;

/// Times an OVF date can carry: years 1 to 9999 (a date outside is refused).
const OVF_TIMES: std::ops::RangeInclusive<i64> = -62_135_596_800_000..=253_402_300_799_999;

fn disk(n: u128, size_mib: u64, format: &str, vm: Uuid) -> Disk {
    Disk {
        id: Uuid::from_u128(0xd15c_0000 + n),
        name: format!("disk {n} <&>"),
        size_mib,
        file: format!("images/{n}/disk.{format}"),
        format: format.into(),
        vm: Some(vm),
        created_ms: T0 + n as i64,
        base: None,
    }
}

/// A VM with something in every field a document carries, and runtime state it does not.
fn busy_vm() -> (Vm, Vec<Disk>) {
    let id = Uuid::from_u128(0xabc);
    let mut vm = Vm::new(id, "web & <db> \"1\" 'x' ü🦀", 2048, 4, T0);
    vm.config.description = "line one\r\nline two\ttab & <tag>".into();
    vm.config.comment = "  spaced  ".into();
    vm.config.ha.enabled = true;
    vm.config.ha.priority = HaPriority::High;
    let mut disks = vec![disk(1, 10 * 1024 + 5, "qcow2", id), disk(2, 512, "raw", id)];
    // A thin disk on a template's base, and what the library gives a VM (cluster level 5).
    disks[0].base = Some(Uuid::from_u128(0xba5e));
    vm.config.from_template = Some(FromTemplate { id: Uuid::from_u128(0x7e), name: "golden <1>".into(), thin: true });
    vm.config.offering = Some("small".into());
    vm.config.stateless = true;
    vm.config.boot_order = vec![BootDevice::Cdrom, BootDevice::Disk];
    vm.config.cloud_init = Some(CloudInit {
        user_data: "#cloud-config\nruncmd:\n  - echo '<&>'\n".into(),
        network_config: Some("version: 2\n".into()),
        ssh_keys: vec!["ssh-ed25519 AAAA k@h".into()],
        hostname: Some("web".into()),
    });
    vm.config.disks = disks.iter().map(|d| d.id).collect();
    vm.config.nics = vec![Nic::new("ovirtmgmt", "00:16:3e:00:00:01"), Nic::new("storage", "00:16:3e:00:00:02")];
    vm.config.domain_type = Some(DomainType::Qemu);
    vm.config.boot = Some(KernelBoot {
        kernel: "boot/vmlinuz".into(),
        initrd: Some("boot/initrd".into()),
        cmdline: "console=ttyS0 a=\"b\"".into(),
    });
    vm.config.migration_settings = MigrationOverrides {
        auto_converge: Some(true),
        compression: Some(false),
        max_downtime_ms: Some(300),
        bandwidth_mibps: Some(100),
    };
    vm.config.next_run =
        Some(NextRun { memory_mib: Some(4096), domain_type: Some(DomainType::Kvm), ..NextRun::default() });
    vm.config.resume_behavior = ResumeBehavior::LeavePaused;
    vm.config.host_tags = vec!["ssd".into(), "gpu".into()];
    vm.config.pinned_hosts = vec![3, 7];
    vm.config.migration = MigrationPolicy::Manual;
    vm.config.os = "rhel_9x64".into();
    vm.config.cdrom = Some("iso/install.iso".into());
    vm.config.delete_protected = true;
    // Runtime state: none of it belongs in a document.
    vm.runtime.status = VmStatus::Up;
    vm.runtime.desired = PowerState::Up;
    vm.runtime.host = Some(3);
    vm.runtime.epoch = 9;
    vm.config.updated_ms = T0 + 99_999;
    vm.runtime.stop_reason = Some("x".into());
    vm.ha_state.ha_failures = 2;
    (vm, disks)
}

#[test]
fn a_busy_vm_comes_back_as_its_configuration() {
    let (vm, disks) = busy_vm();
    let xml = write(&vm, &disks, T0 + 5000);
    let back = read(&xml).unwrap();
    assert_eq!(back.vm, config_of(&vm));
    assert_eq!(back.disks, disks);
    assert!(back.ignored.is_empty(), "{:?}", back.ignored);
    assert_eq!(back.vm.config.updated_ms, T0);
    assert_eq!(back.vm.runtime.status, VmStatus::Down);
    assert_eq!(back.vm.runtime.host, None);
}

#[test]
fn the_document_has_ovirts_shape() {
    let (mut vm, disks) = busy_vm();
    vm.config.hosted_engine = true;
    let xml = write(&vm, &disks, T0);
    for expected in [
        r#"<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/""#,
        r#"ovf:version="4.4.0.0""#,
        r#"<File ovf:href="images/1/disk.qcow2" ovf:id="00000000-0000-0000-0000-0000d15c0001" ovf:size="10742661120""#,
        r#"<Section xsi:type="ovf:NetworkSection_Type">"#,
        r#"<Network ovf:name="storage"/>"#,
        r#"ovf:size="10" "#,
        r#"ovf:volume-format="COW""#,
        r#"ovf:volume-format="RAW""#,
        r#"ovf:disk-interface="VirtIO""#,
        r#"ovf:disk-alias="disk 1 &lt;&amp;&gt;""#,
        r#"<Content ovf:id="out" xsi:type="ovf:VirtualSystem_Type">"#,
        "<Name>web &amp; &lt;db&gt; \"1\" 'x' ü🦀</Name>",
        "<Description>line one&#13;\nline two\ttab &amp; &lt;tag&gt;</Description>",
        "<CreationDate>2023/11/14 22:13:20</CreationDate>",
        "<AutoStartup>true</AutoStartup>",
        "<Priority>100</Priority>",
        "<Origin>6</Origin>",
        "<MigrationSupport>1</MigrationSupport>",
        "<DedicatedVmForVds>7</DedicatedVmForVds>",
        "<ResumeBehavior>LEAVE_PAUSED</ResumeBehavior>",
        "<MigrationDowntime>300</MigrationDowntime>",
        "<kernel_url>boot/vmlinuz</kernel_url>",
        "<corral:DomainType>qemu</corral:DomainType>",
        r#"<Section ovf:id="00000000-0000-0000-0000-000000000abc" ovf:required="false" xsi:type="ovf:OperatingSystemSection_Type">"#,
        "<Description>rhel_9x64</Description>",
        "<rasd:ResourceType>4</rasd:ResourceType>",
        "<rasd:MACAddress>00:16:3e:00:00:02</rasd:MACAddress>",
        "<rasd:Name>nic2</rasd:Name>",
        "<rasd:HostResource>iso/install.iso</rasd:HostResource>",
    ] {
        assert!(xml.contains(expected), "missing {expected} in\n{xml}");
    }
}

#[test]
fn an_ovirt_hosted_engine_is_imported_with_what_corral_does_not_model_kept() {
    let imported = read(OVIRT_HOSTED_ENGINE).unwrap();
    let vm = &imported.vm;
    assert_eq!(vm.id, Uuid::parse_str("9a8b7c6d-0000-4000-8000-0000000000aa").unwrap());
    assert_eq!(vm.config.name, "HostedEngine");
    assert_eq!((vm.config.vcpus, vm.config.memory_mib), (4, 16384));
    assert!(vm.config.hosted_engine);
    assert!(vm.config.ha.enabled);
    assert_eq!(vm.config.ha.priority, HaPriority::Low);
    assert_eq!(vm.config.resume_behavior, ResumeBehavior::Kill);
    assert_eq!(vm.config.migration, MigrationPolicy::Manual);
    assert_eq!(vm.config.os, "rhel_8x64");
    assert_eq!(vm.config.cdrom.as_deref(), Some("rhel-8.9-x86_64-dvd.iso"));
    assert_eq!(vm.config.created_ms, parse_date("2023/03/14 09:26:53").unwrap());
    assert_eq!(vm.config.updated_ms, vm.config.created_ms);
    // oVirt's own NIC name is kept.
    let nic = Nic { name: "vnet0".into(), ..Nic::new("ovirtmgmt", "00:16:3e:5d:a2:b9") };
    assert_eq!(vm.config.nics, vec![nic]);
    let d = &imported.disks[0];
    assert_eq!(imported.disks.len(), 1);
    assert_eq!(d.id, Uuid::parse_str("5e6f7a8b-0000-4000-8000-000000000002").unwrap());
    assert_eq!((d.name.as_str(), d.size_mib, d.format.as_str()), ("he_virtio_disk", 51 * 1024, "qcow2"));
    assert_eq!(d.file, "a1b2c3d4-0000-4000-8000-000000000001/5e6f7a8b-0000-4000-8000-000000000002");
    assert_eq!(d.vm, Some(vm.id));
    assert_eq!(d.created_ms, parse_date("2023/03/14 09:27:40").unwrap());
    assert_eq!(vm.config.disks, vec![d.id]);

    for ignored in [
        "Content/IsSmartcardEnabled",
        "Content/SsoMethod",
        "Content/BiosType",
        "Content/SnapshotsSection",
        "VirtualHardwareSection/Item (ResourceType 23, USB controller)",
        "VirtualHardwareSection/Item (ResourceType 20, monitor)",
        "VirtualHardwareSection/Item (ResourceType 0, memballoon)",
        "VirtualHardwareSection/Item (ResourceType 0, virtio)",
        "VirtualHardwareSection/Item (ResourceType 10, nic1)/rasd:CustomNetworkFilter",
    ] {
        assert!(imported.ignored.iter().any(|i| i == ignored), "{ignored} not in {:#?}", imported.ignored);
    }
    // Derived ones are not reported.
    for derived in ["Content/ExportDate", "Content/TemplateId", "Content/OriginalTemplateId", "Content/MinAllocatedMem"]
    {
        assert!(!imported.ignored.iter().any(|i| i == derived), "{derived} in {:#?}", imported.ignored);
    }
    assert!(vm.config.ovf_unknown.contains(&OvfFragment {
        parent: "Content".into(),
        xml: "<IsSmartcardEnabled>false</IsSmartcardEnabled>".into()
    }));
    assert!(vm
        .config
        .ovf_unknown
        .iter()
        .any(|f| f.parent == "VirtualHardwareSection" && f.xml.contains("<rasd:UsbPolicy>")));
    assert!(vm.config.ovf_unknown.iter().any(|f| f.parent == "Item nic1" && f.xml.contains("vdsm-no-mac-spoofing")));

    let again = write(vm, &imported.disks, T0);
    for kept in [
        "<IsSmartcardEnabled>false</IsSmartcardEnabled>",
        "<rasd:UsbPolicy>DISABLED</rasd:UsbPolicy>",
        "<Device>memballoon</Device>",
        "<source>urandom</source>",
        r#"<Section xsi:type="ovf:SnapshotsSection_Type">"#,
        "<rasd:CustomNetworkFilter>vdsm-no-mac-spoofing</rasd:CustomNetworkFilter>",
        "<MaxMemorySizeMb>65536</MaxMemorySizeMb>",
    ] {
        assert!(again.contains(kept), "{kept} lost in\n{again}");
    }
    // And a document Corral wrote from an import reads back as the same import.
    let twice = read(&again).unwrap();
    assert_eq!(twice.vm, imported.vm);
    assert_eq!(twice.disks, imported.disks);
    let mut a = twice.ignored.clone();
    let mut b = imported.ignored.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn a_fragment_borrowing_a_foreign_namespace_declares_it() {
    let xml = OVIRT_HOSTED_ENGINE
        .replace("<ovf:Envelope ", r#"<ovf:Envelope xmlns:vmw="http://www.vmware.com/schema/ovf" "#)
        .replace("<IsSmartcardEnabled>", "<vmw:Config vmw:key=\"a\"/><IsSmartcardEnabled>");
    let imported = read(&xml).unwrap();
    let f = imported.vm.config.ovf_unknown.iter().find(|f| f.xml.starts_with("<vmw:Config")).unwrap();
    assert_eq!(f.xml, r#"<vmw:Config xmlns:vmw="http://www.vmware.com/schema/ovf" vmw:key="a"/>"#);
    let again = read(&write(&imported.vm, &imported.disks, T0)).unwrap();
    assert_eq!(again.vm, imported.vm);
}

fn refusal(xml: &str) -> String {
    match read(xml) {
        Ok(_) => panic!("accepted:\n{xml}"),
        Err(e) => e.to_string(),
    }
}

fn corral_doc() -> String {
    let (vm, disks) = busy_vm();
    write(&vm, &disks, T0)
}

#[test]
fn broken_documents_are_refused_saying_where_and_what() {
    let he = OVIRT_HOSTED_ENGINE;
    let cases: Vec<(String, &str)> = vec![
        ("this is not XML <".into(), "XML syntax error at byte"),
        ("<a><b></a>".into(), "XML syntax error at byte"),
        ("<domain type='kvm'><name>x</name></domain>".into(), "not an OVF document: root element is 'domain', expected ovf:Envelope"),
        (he[..he.find("<Content").unwrap()].to_string() + "</ovf:Envelope>", "Envelope: no Content (the VM)"),
        (he.replace("<Name>HostedEngine</Name>", ""), "Content: no Name"),
        (
            he.replace("<rasd:VirtualQuantity>16384</rasd:VirtualQuantity>", "<rasd:VirtualQuantity>lots</rasd:VirtualQuantity>"),
            "VirtualHardwareSection/Item (ResourceType 4): VirtualQuantity 'lots' is not a number",
        ),
        (
            he.replace("<rasd:ResourceType>4</rasd:ResourceType>", "<rasd:ResourceType>99</rasd:ResourceType>"),
            "VirtualHardwareSection: no memory Item (ResourceType 4)",
        ),
        (
            he.replace(r#"ovf:fileRef="a1b2c3d4"#, r#"ovf:fileRef="x"#),
            "DiskSection/Disk 1: fileRef 'x-0000-4000-8000-000000000001/5e6f7a8b-0000-4000-8000-000000000002' names no File in References",
        ),
        (
            he.replace("a1b2c3d4-0000-4000-8000-000000000001/", "../etc/passwd/"),
            "References/File 1: href '../etc/passwd/5e6f7a8b-0000-4000-8000-000000000002' climbs out with '..'",
        ),
        (
            he.replace("a1b2c3d4-0000-4000-8000-000000000001/", "/abs/"),
            "References/File 1: href '/abs/5e6f7a8b-0000-4000-8000-000000000002' is absolute",
        ),
        (he.replace("00:16:3e:5d:a2:b9", "00:16:3e:5d:a2"), "nic1): MACAddress '00:16:3e:5d:a2' is not a MAC address"),
        (he.replace("<ResumeBehavior>KILL", "<ResumeBehavior>EXPLODE"), "Content/ResumeBehavior: 'EXPLODE' is not AUTO_RESUME"),
        (he.replace(r#"ovf:id="9a8b7c6d-0000-4000-8000-0000000000aa""#, ""), "OperatingSystemSection: no ovf:id (the VM's id)"),
    ];
    for (xml, expected) in cases {
        let message = refusal(&xml);
        assert!(message.contains(expected), "expected '{expected}', got '{message}'");
    }
}

#[test]
fn refusals_name_the_line() {
    let he = OVIRT_HOSTED_ENGINE.replace(
        "<rasd:VirtualQuantity>16384</rasd:VirtualQuantity>",
        "<rasd:VirtualQuantity>lots</rasd:VirtualQuantity>",
    );
    let line = 1 + he.lines().position(|l| l.contains(">lots<")).unwrap();
    assert!(refusal(&he).starts_with(&format!("line {line}: ")), "{}", refusal(&he));

    let broken = "<?xml version=\"1.0\"?>\n<ovf:Envelope>\n  <Content>\n  </Contnet>\n</ovf:Envelope>";
    assert!(refusal(broken).contains("(line 4)"), "{}", refusal(broken));
}

#[test]
fn duplicate_disk_ids_are_refused() {
    let doc = corral_doc();
    let dup = doc.replace("00000000-0000-0000-0000-0000d15c0002", "00000000-0000-0000-0000-0000d15c0001");
    let message = refusal(&dup);
    assert!(
        message
            .contains("DiskSection/Disk 2: diskId 00000000-0000-0000-0000-0000d15c0001 appears twice (first on line"),
        "{message}"
    );
}

#[test]
fn dates_are_ovirts() {
    assert_eq!(format_date(0), "1970/01/01 00:00:00");
    assert_eq!(format_date(951_782_400_000), "2000/02/29 00:00:00");
    assert_eq!(format_date(-1000), "1969/12/31 23:59:59");
    for ms in [0, 951_782_400_000, -86_400_000 * 400, 4_102_444_800_000, T0 - T0 % 1000] {
        assert_eq!(parse_date(&format_date(ms)), Some(ms));
    }
    assert_eq!(parse_date("2023.03.14 09:26:53"), parse_date("2023/03/14 09:26:53"));
    assert_eq!(parse_date("yesterday"), None);
}

fn any_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 &<>\"'=;#é中🦀\t\n\r-]{0,16}"
}

fn any_disk(n: u128, vm: Uuid) -> impl Strategy<Value = Disk> {
    (
        any_text(),
        1u64..=(1 << 40),
        prop_oneof![Just("qcow2"), Just("raw"), Just("vmdk")],
        "[a-z0-9_-]{1,12}(\\.[a-z0-9]{1,4})?",
        OVF_TIMES,
    )
        .prop_map(move |(name, size_mib, format, file, created_ms)| Disk {
            id: Uuid::from_u128(0xd15c_0000 + n),
            name,
            size_mib,
            file: format!("images/{file}"),
            format: format.to_string(),
            vm: Some(vm),
            created_ms: created_ms / 1000,
            base: None,
        })
}

fn any_vm() -> impl Strategy<Value = (Vm, Vec<Disk>)> {
    let id = Uuid::from_u128(0x5eed);
    let disks = (0usize..=4).prop_flat_map(move |n| (0..n as u128).map(|i| any_disk(i, id)).collect::<Vec<_>>());
    let nics = prop::collection::vec(("[a-z&<é]{0,8}", "([0-9a-f]{2}:){5}[0-9a-f]{2}"), 0..=3);
    let priority = prop_oneof![Just(HaPriority::Low), Just(HaPriority::Medium), Just(HaPriority::High)];
    let resume =
        prop_oneof![Just(ResumeBehavior::AutoResume), Just(ResumeBehavior::LeavePaused), Just(ResumeBehavior::Kill)];
    let policy = prop_oneof![Just(MigrationPolicy::Allow), Just(MigrationPolicy::Manual), Just(MigrationPolicy::None)];
    let domain = prop::option::of(prop_oneof![Just(DomainType::Kvm), Just(DomainType::Qemu), Just(DomainType::Test)]);
    let overrides = (any::<Option<bool>>(), any::<Option<bool>>(), any::<Option<u64>>(), any::<Option<u64>>())
        .prop_map(|(a, c, d, b)| MigrationOverrides {
            auto_converge: a,
            compression: c,
            max_downtime_ms: d,
            bandwidth_mibps: b,
        });
    let boot = prop::option::of((any_text(), prop::option::of(any_text()), any_text()))
        .prop_map(|b| b.map(|(kernel, initrd, cmdline)| KernelBoot { kernel, initrd, cmdline }));
    let next_run = prop::option::of((any::<Option<u64>>(), any::<Option<u32>>(), domain.clone())).prop_map(|n| {
        n.map(|(memory_mib, vcpus, domain_type)| NextRun { memory_mib, vcpus, domain_type, ..NextRun::default() })
    });
    let fragments = prop::collection::vec(
        prop_oneof![
            Just(("Content", "<IsSmartcardEnabled>true</IsSmartcardEnabled>")),
            Just(("VirtualHardwareSection", "<Item><rasd:ResourceType>23</rasd:ResourceType></Item>")),
            Just(("Envelope", "<Section xsi:type=\"ovf:ProductSection_Type\"><Info>x &amp; y</Info></Section>")),
            Just(("DiskSection", "<Note>n</Note>")),
            Just(("Item CPU", "<rasd:Limit>8</rasd:Limit>")),
            Just(("Item nic1", "<rasd:CustomNetworkFilter>f</rasd:CustomNetworkFilter>")),
            Just(("Item CD-ROM", "<rasd:Foo/>")),
            Just(("Nowhere", "<Lost/>")),
        ],
        0..4,
    );
    (
        (any_text(), any_text(), any_text(), 1u64..=(1 << 24), 1u32..=1024, OVF_TIMES, disks, nics),
        (any::<bool>(), priority, resume, policy, domain, overrides, boot, next_run),
        (
            prop::collection::vec("[a-z0-9-]{1,8}", 0..3),
            prop::collection::vec(any::<u64>(), 0..3),
            prop::option::of("[a-z/._]{0,10}"),
            any::<bool>(),
            any::<bool>(),
            "[a-z0-9_]{0,12}",
            fragments,
        ),
    )
        .prop_map(move |(a, b, c)| {
            let (name, description, comment, memory, vcpus, created, disks, nics) = a;
            let (ha, priority, resume, policy, domain, overrides, boot, next_run) = b;
            let (tags, pins, cdrom, engine, protected, os, fragments) = c;
            let mut vm = Vm::new(id, &name, memory, vcpus, created / 1000);
            vm.config.description = description;
            vm.config.comment = comment;
            vm.config.ha.enabled = ha;
            vm.config.ha.priority = priority;
            vm.config.disks = disks.iter().map(|d| d.id).collect();
            vm.config.nics = nics.into_iter().map(|(network, mac)| Nic::new(network, mac)).collect();
            vm.config.resume_behavior = resume;
            vm.config.migration = policy;
            vm.config.domain_type = domain;
            vm.config.migration_settings = overrides;
            vm.config.boot = boot;
            vm.config.next_run = next_run;
            vm.config.host_tags = tags;
            vm.config.pinned_hosts = pins;
            vm.config.cdrom = cdrom;
            vm.config.hosted_engine = engine;
            vm.config.delete_protected = protected;
            vm.config.os = os;
            vm.config.ovf_unknown =
                fragments.into_iter().map(|(p, x)| OvfFragment { parent: p.into(), xml: x.into() }).collect();
            vm.runtime.status = VmStatus::Migrating;
            vm.runtime.host = Some(1);
            vm.migration_state.migrating_to = Some(2);
            vm.config.updated_ms = vm.config.created_ms + 1;
            (vm, disks)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn read_gives_back_what_write_wrote((vm, disks) in any_vm(), exported in OVF_TIMES) {
        let xml = write(&vm, &disks, exported / 1000);
        let back = read(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(back.vm, config_of(&vm));
        prop_assert_eq!(back.disks, disks);
    }
}

/// A VM's snapshots travel in its document (oVirt's SnapshotsSection), each with the
/// configuration it was taken with, the tree, memory and what a memory restore needs.
#[test]
fn snapshots_are_in_the_document() {
    use crate::model::{RunLimits, Snapshot, SnapshotStatus};
    let (mut vm, disks) = busy_vm();
    let then = |memory_mib| {
        let mut c = config_of(&vm).config;
        c.memory_mib = memory_mib;
        Box::new(c)
    };
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let first = Snapshot {
        id: a,
        parent: None,
        description: "before <upgrade> & after".into(),
        created_ms: T0,
        memory: false,
        disks: vm.config.disks.clone(),
        status: SnapshotStatus::Ok,
        config: then(512),
        domain_xml: None,
        run_limits: None,
        memory_mib: 0,
    };
    let second = Snapshot {
        id: b,
        parent: Some(a),
        description: String::new(),
        created_ms: T0 + 1,
        memory: true,
        disks: vec![vm.config.disks[0]],
        status: SnapshotStatus::InPreview,
        config: then(768),
        domain_xml: Some("<domain type='qemu'><name>x</name></domain>".into()),
        run_limits: Some(RunLimits { boot_memory_mib: 768, max_memory_mib: 3072, max_vcpus: 4 }),
        memory_mib: 98,
    };
    vm.snapshot_state.snapshots = vec![first, second];
    vm.snapshot_state.current_snapshot = Some(b);
    let xml = write(&vm, &disks, T0);
    assert!(xml.contains(r#"<Section xsi:type="ovf:SnapshotsSection_Type">"#), "{xml}");
    let back = read(&xml).unwrap().vm.snapshot_state;
    assert_eq!(back.current_snapshot, Some(b));
    assert_eq!(back.snapshots.len(), 2);
    for (got, want) in back.snapshots.iter().zip(&vm.snapshot_state.snapshots) {
        assert_eq!(
            (got.id, got.parent, &got.description, got.created_ms, got.memory, &got.disks, got.status),
            (want.id, want.parent, &want.description, want.created_ms, want.memory, &want.disks, want.status)
        );
        assert_eq!((got.run_limits, got.memory_mib), (want.run_limits, want.memory_mib));
        assert_eq!(got.domain_xml, None, "a document gives no host a definition to run");
        assert_eq!(
            (got.config.memory_mib, &got.config.disks, &got.config.nics),
            (want.config.memory_mib, &want.config.disks, &want.config.nics)
        );
    }
    // A snapshot's configuration holds no snapshots of its own: a document nesting deeper is refused.
    let nested = write(&vm, &disks, T0);
    let mut deeper = vm.clone();
    deeper.snapshot_state.snapshots[0].config.description = "x".into();
    let inner = xml_escape(&nested);
    let hostile = write(&deeper, &disks, T0)
        .replacen("<vm_configuration>", &format!("<vm_configuration>{inner}<!--"), 1)
        .replacen("</vm_configuration>", "--></vm_configuration>", 1);
    let e = read(&hostile).unwrap_err().to_string();
    assert!(e.contains("a snapshot's configuration holds snapshots"), "{e}");
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The most snapshots a VM keeps still give a document the reader takes (each snapshot's
/// configuration is a document of its own inside it).
#[test]
fn a_document_with_the_most_snapshots_reads_back() {
    use crate::model::{Snapshot, SnapshotStatus};
    let (mut vm, disks) = busy_vm();
    let config = Box::new(config_of(&vm).config);
    let n = crate::apply::snapshots::MAX_SNAPSHOTS_PER_VM;
    vm.snapshot_state.snapshots = (0..n)
        .map(|i| Snapshot {
            id: Uuid::from_u128(i as u128 + 1),
            parent: (i > 0).then(|| Uuid::from_u128(i as u128)),
            description: "a description of some length, as an operator writes one".into(),
            created_ms: T0 + i as i64,
            memory: false,
            disks: vm.config.disks.clone(),
            status: SnapshotStatus::Ok,
            config: config.clone(),
            domain_xml: None,
            run_limits: None,
            memory_mib: 0,
        })
        .collect();
    let xml = write(&vm, &disks, T0);
    println!("{n} snapshots: {} bytes, {} per snapshot", xml.len(), xml.len() / n);
    assert!(xml.len() < tree::MAX_OVF_BYTES, "{} bytes", xml.len());
    assert_eq!(read(&xml).unwrap().vm.snapshot_state.snapshots.len(), n);
}
