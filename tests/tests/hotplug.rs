//! Changing VMs and their devices (issue 15) on libvirt's test driver: the state, the
//! refusals and the events. The test driver cannot attach, detach or update devices, so a
//! change to a running VM there is refused by the hypervisor: the command says why, the VM runs
//! on as it was, and its configuration says what runs. Success paths run on sandbox hosts
//! (`sandbox.rs`).

use corral_cli::views::{DiskView, VmView};
use corral_tests::Cluster;

fn plugged(vm: &VmView, disk: &str) -> Option<bool> {
    vm.disks.iter().find(|d| d.name == disk).map(|d| d.plugged)
}

#[test]
fn disks_nics_and_cds_of_a_down_vm_and_their_refusals() {
    let c = Cluster::run(3, &[]);
    let vm: VmView = c.cli_json(0, &["vm", "create", "web1", "--memory", "1G", "--disk", "1G", "--nic", "default"]);
    // New VMs get hot-plug limits: 4x the memory, the largest host's CPUs.
    assert_eq!(vm.max_memory_mib, Some(4096));
    assert!(vm.max_vcpus.is_some_and(|m| m >= 1), "{vm:?}");
    assert_eq!(vm.nics[0].name, "nic1");
    assert!(vm.disks[0].bootable && vm.disks[0].plugged && vm.disks[0].interface == "virtio", "{vm:?}");

    // Floating disks: create, show, grow, attach, detach, delete.
    let d: DiskView = c.cli_json(1, &["disk", "create", "data1", "--size", "64M", "--format", "raw"]);
    assert_eq!((d.size_mib, d.format.as_str(), d.vm.as_deref()), (64, "raw", None));
    assert!(std::path::Path::new(&d.path).exists(), "{d:?}");
    c.refused(2, &["disk", "create", "data1", "--size", "1M"], "disk 'data1' already exists");
    c.refused(2, &["disk", "create", "data2", "--size", "1M", "--format", "vmdk"], "format: must be qcow2 or raw");
    c.refused(0, &["disk", "resize", "data1", "--size", "32M"], "disks only grow");
    let d: DiskView = c.cli_json(0, &["disk", "resize", "data1", "--size", "128M"]);
    assert_eq!(d.size_mib, 128);
    let vm: VmView = c.cli_json(2, &["vm", "disk", "attach", "web1", "data1", "--interface", "scsi", "--optional"]);
    let data = vm.disks.iter().find(|d| d.name == "data1").unwrap();
    assert!(data.optional && data.plugged && data.interface == "scsi" && !data.bootable, "{vm:?}");
    c.refused(1, &["disk", "delete", "data1"], "is attached to vm 'web1'; detach it first");
    let vm: VmView = c.cli_json(1, &["vm", "disk", "unplug", "web1", "data1"]);
    assert_eq!(plugged(&vm, "data1"), Some(false));
    let vm: VmView = c.cli_json(1, &["vm", "disk", "plug", "web1", "data1"]);
    assert_eq!(plugged(&vm, "data1"), Some(true));
    c.must_ok(0, &["vm", "disk", "detach", "web1", "data1"]);
    let d: DiskView = c.cli_json(0, &["disk", "show", "data1"]);
    assert_eq!(d.vm, None);
    let path = d.path.clone();
    c.must_ok(0, &["disk", "delete", "data1"]);
    assert!(!std::path::Path::new(&path).exists(), "the image of a deleted disk stays");
    c.refused(0, &["disk", "show", "data1"], "disk 'data1' not found");

    // vm disk add: created, attached; a second bootable disk is refused (and its image removed).
    let vm: VmView = c.cli_json(0, &["vm", "disk", "add", "web1", "--size", "32M"]);
    assert_eq!(vm.disks.len(), 2);
    let images = std::fs::read_dir(c.storage_dir()).unwrap().count();
    c.refused(0, &["vm", "disk", "add", "web1", "--size", "32M", "--bootable"], "has a bootable disk already");
    assert_eq!(std::fs::read_dir(c.storage_dir()).unwrap().count(), images, "a refused add leaves an image");

    // NICs: named nic1, nic2, ...; a removed name is reused; a MAC in use is refused.
    let vm: VmView = c.cli_json(1, &["vm", "nic", "add", "web1", "--network", "default"]);
    assert_eq!(vm.nics.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["nic1", "nic2"]);
    let mac = vm.nics[0].mac.clone();
    c.refused(1, &["vm", "nic", "add", "web1", "--network", "default", "--mac", &mac], "is in use by vm 'web1'");
    c.must_ok(1, &["vm", "nic", "remove", "web1", "nic1"]);
    let vm: VmView = c.cli_json(1, &["vm", "nic", "add", "web1", "--network", "default"]);
    assert_eq!(vm.nics.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["nic2", "nic1"]);
    c.refused(1, &["vm", "nic", "remove", "web1", "nic9"], "vm 'web1' has no NIC named 'nic9'");

    // CD: a path inside the storage domain, or eject; outside it is refused.
    std::fs::write(c.storage_dir().join("tools.iso"), b"iso").unwrap();
    let vm: VmView = c.cli_json(2, &["vm", "cd", "web1", "--iso", "tools.iso"]);
    assert!(vm.cdrom.as_deref().is_some_and(|p| p.ends_with("tools.iso")), "{vm:?}");
    c.refused(2, &["vm", "cd", "web1", "--iso", "/etc/passwd"], "lies outside the storage domain");
    let vm: VmView = c.cli_json(2, &["vm", "cd", "web1", "--eject"]);
    assert_eq!(vm.cdrom, None);

    // OS names are oVirt's, checked.
    c.refused(0, &["vm", "edit", "web1", "--os", "banana"], "'banana' is not an OS name the cluster knows");
    c.refused(0, &["vm", "edit", "web1", "--max-memory", "512M"], "max_memory: must be at least the memory");
    let vm: VmView = c.cli_json(0, &["vm", "edit", "web1", "--os", "rhel_9x64", "--max-vcpus", "4"]);
    assert_eq!((vm.os.as_deref(), vm.max_vcpus, vm.pending_next_run), (Some("rhel_9x64"), Some(4), false));

    let events = c.events(0);
    for want in [
        "Disk data1 was created (64 MiB, raw, floating) by admin.",
        "Disk data1 was grown from 64 to 128 MiB by admin.",
        "Disk data1 was attached to VM web1 (scsi, optional) by admin.",
        "Disk data1 was detached from VM web1 by admin; it floats.",
        "Disk data1 was deleted by admin.",
        "NIC nic1 (default, ",
    ] {
        assert!(events.iter().any(|e| e.contains(want)), "no event with {want:?} in {events:#?}");
    }
}

#[test]
fn a_running_vm_takes_next_run_changes_and_says_why_a_hot_plug_failed() {
    let c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "web1", "--memory", "512M", "--vcpus", "1", "--start"]);
    c.wait_status(1, "web1", "up");

    // --next-run: pending, marked in the list, shown by --next-run, cleared with an event.
    let vm: VmView = c.cli_json(1, &["vm", "edit", "web1", "--memory", "1G", "--next-run", "--os", "debian_12"]);
    assert_eq!(vm.memory_mib, 512);
    assert!(vm.pending_next_run, "{vm:?}");
    let next = vm.next_run.clone().unwrap();
    assert_eq!((next.memory_mib, next.os.as_deref()), (Some(1024), Some("debian_12")));
    let list: Vec<VmView> = c.cli_json(2, &["vm", "list"]);
    assert!(list[0].pending_next_run);
    let table = c.must_ok(2, &["vm", "list"]);
    assert!(
        table.lines().next().unwrap().contains("NEXT-RUN") && table.lines().nth(1).unwrap().contains(" * "),
        "{table}"
    );
    let pending: VmView = c.cli_json(2, &["vm", "show", "web1", "--next-run"]);
    assert_eq!((pending.memory_mib, pending.os.as_deref(), pending.next_run), (1024, Some("debian_12"), None));
    let vm: VmView = c.cli_json(1, &["vm", "edit", "web1", "--memory", "512M", "--os", "other_linux"]);
    assert!(!vm.pending_next_run && vm.next_run.is_none(), "{vm:?}");
    assert!(c.events(0).iter().any(|e| e.contains("its pending next-run configuration cleared")));

    // More than its max memory: a next-run change and one note saying why, never an error.
    let out = c.must_ok(0, &["vm", "edit", "web1", "--memory", "4G"]);
    assert!(out.contains("note: web1 is running; memory 4096 MiB waits for its next run: 4096 MiB is more than its max memory of 2048 MiB"), "{out}");

    // vCPUs: the test driver sets them on a running domain; its host confirms before the
    // command returns.
    let vm: VmView = c.cli_json(0, &["vm", "edit", "web1", "--vcpus", "2"]);
    assert_eq!((vm.vcpus, vm.hot_error.as_deref()), (2, None), "{vm:?}");
    // A hot-plug the test driver refuses (it attaches no device): an error with libvirt's
    // reason, the VM as it was, the disk attached but unplugged.
    let out = c.corral(0, &["vm", "disk", "add", "web1", "--size", "16M"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("could not be changed while it runs") && out.stderr.contains("--next-run"), "{out:?}");
    let vm = c.vm(1, "web1");
    assert_eq!((vm.vcpus, vm.status.as_str(), vm.disks.len()), (2, "up", 1));
    assert!(!vm.disks[0].plugged, "the disk that could not be plugged stays attached, unplugged: {vm:?}");
    assert!(vm.hot_error.is_some(), "{vm:?}");
    assert!(c.events(0).iter().any(|e| e.starts_with("Could not change VM web1 on host host1")));
    // ...and with --next-run the change waits for the next run.
    let vm: VmView = c.cli_json(0, &["vm", "edit", "web1", "--vcpus", "1", "--next-run"]);
    assert_eq!(vm.next_run.and_then(|n| n.vcpus), Some(1));
    c.refused(2, &["vm", "nic", "remove", "web1", "nic9"], "has no NIC named");

    // The next run takes the pending configuration (an event says so).
    c.must_ok(0, &["vm", "stop", "web1"]);
    let vm = c.wait_status(1, "web1", "down");
    assert_eq!((vm.vcpus, vm.memory_mib, vm.next_run, vm.max_memory_mib), (1, 4096, None, Some(4096)));
}
