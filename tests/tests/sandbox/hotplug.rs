//! Issue 15 on real QEMU: a guest that reports what it sees on its console
//! (`CORRAL-GUEST-SEES disks=.. nics=.. macs=.. cpus=N mem_mib=N cd=..`, deploy/sandbox/guest)
//! gets a disk, a NIC, a vCPU, memory and a CD plugged and unplugged while its tick counter goes
//! on; a scale-up its host cannot hold migrates it first; a migration and an HA restart keep
//! what is plugged; an optional disk whose image is gone does not stop a start. Each change is
//! read from the guest's own report, and the time from the command to that report is printed.

use std::time::{Duration, Instant};

use corral_cli::views::{DiskView, VmView};
use corral_tests::sandbox::{Sandbox, Sees, GUEST_UP, WAIT};
use corral_tests::wait_until;

pub const HP: &str = "hp";
const NET: &str = "hpnet";

fn sees(sb: &Sandbox, vm: &str) -> Option<Sees> {
    sb.sees(vm)
}

fn wait_sees(sb: &Sandbox, vm: &str, what: &str, ok: impl Fn(&Sees) -> bool) -> (Sees, Duration) {
    sb.wait_sees(vm, what, ok)
}

fn lap(what: &str, took: Duration) {
    eprintln!("    {what}: {:.2} s", took.as_secs_f64());
}

/// An isolated libvirt network on every host, for the guest's NICs.
fn network(sb: &Sandbox) {
    let xml = sb.storage_dir().join("hpnet.xml");
    std::fs::write(&xml, format!("<network><name>{NET}</name><bridge name='hpbr0'/></network>")).unwrap();
    for host in ["host1", "host2", "host3"] {
        if sb.virsh(host, &["net-info", NET]).code == 0 {
            continue;
        }
        for args in [vec!["net-define", xml.to_str().unwrap()], vec!["net-autostart", NET], vec!["net-start", NET]] {
            let out = sb.virsh(host, &args);
            assert_eq!(out.code, 0, "virsh {args:?} on {host}: {}", out.stderr);
        }
    }
}

/// q. The guest, HA, up on host1 with one disk and one NIC; then a disk, a NIC, memory and the
/// CD plugged and unplugged while it ticks.
pub fn devices_while_it_ticks(sb: &Sandbox) {
    network(sb);
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    let vm = sb.cli_json::<VmView>(&[
        "vm", "create", HP, "--memory", "256M", "--vcpus", "1", "--max-vcpus", "2", "--max-memory", "1G",
        "--domain-type", "qemu", "--kernel", &kernel, "--initrd", &initrd,
        "--cmdline", "console=ttyS0 panic=-1 memhp_default_state=online_movable possible_cpus=16",
        "--disk", "64M", "--nic", NET, "--ha", "--ha-priority", "high", "--start", "--host", "host1",
    ]);
    assert_eq!((vm.max_vcpus, vm.max_memory_mib), (Some(2), Some(1024)), "{vm:#?}");
    sb.wait_status(HP, "up");
    sb.wait_console(HP, GUEST_UP);
    let (first, _) = wait_sees(sb, HP, "the guest's first report", |s| s.disks == ["vda"] && s.nics.len() == 1);
    eprintln!("    the guest sees {first:?}");
    let ticks = sb.wait_ticks_above(HP, 1);

    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "disk", "add", HP, "--size", "32M", "--name", "hp-data"]);
    let (_, _) = wait_sees(sb, HP, "vdb plugged", |s| s.disks == ["vda", "vdb"]);
    lap("vm disk add -> the guest sees vdb", t.elapsed());
    let t = Instant::now();
    let vm = sb.cli_json::<VmView>(&["vm", "disk", "unplug", HP, "hp-data"]);
    assert!(vm.disks.iter().any(|d| d.name == "hp-data" && !d.plugged), "{vm:#?}");
    wait_sees(sb, HP, "vdb unplugged", |s| s.disks == ["vda"]);
    lap("vm disk unplug -> gone in the guest", t.elapsed());
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "disk", "plug", HP, "hp-data"]);
    wait_sees(sb, HP, "vdb plugged again", |s| s.disks == ["vda", "vdb"]);
    lap("vm disk plug -> the guest sees vdb", t.elapsed());

    let t = Instant::now();
    let vm = sb.cli_json::<VmView>(&["vm", "nic", "add", HP, "--network", NET]);
    let mac = vm.nics.iter().find(|n| n.name == "nic2").map(|n| n.mac.clone()).expect("nic2");
    wait_sees(sb, HP, "a second NIC", |s| s.macs.contains(&mac));
    lap("vm nic add -> the guest sees its MAC", t.elapsed());
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "nic", "unplug", HP, "nic2"]);
    wait_sees(sb, HP, "nic2 unplugged", |s| !s.macs.contains(&mac) && s.nics.len() == 1);
    lap("vm nic unplug -> gone in the guest", t.elapsed());

    let t = Instant::now();
    let vm = sb.cli_json::<VmView>(&["vm", "edit", HP, "--memory", "384M"]);
    assert_eq!((vm.memory_mib, vm.next_run.is_none()), (384, true), "{vm:#?}");
    wait_sees(sb, HP, "128 MiB more memory", |s| s.mem_mib >= first.mem_mib + 120);
    lap("vm edit --memory +128M -> the guest's MemTotal", t.elapsed());
    let t = Instant::now();
    let out = sb.corral(&["vm", "edit", HP, "--memory", "256M"]);
    if out.code == 0 {
        wait_sees(sb, HP, "the DIMM unplugged", |s| s.mem_mib < first.mem_mib + 60);
        lap("vm edit --memory -128M -> the guest's MemTotal", t.elapsed());
    } else {
        // The guest may keep the memory in use: the VM runs on with it, and says so.
        assert!(out.stderr.contains("could not be changed while it runs"), "{out:?}");
        assert_eq!(sb.vm(HP).memory_mib, 384);
        eprintln!("    memory unplug refused by the guest: {}", out.stderr.trim());
    }
    // Below what it booted with: a next-run change and a note, not an error.
    let out = sb.must_ok(&["vm", "edit", HP, "--memory", "128M"]);
    assert!(
        out.contains("note: hp is running; memory 128 MiB waits for its next run: only hot-plugged memory"),
        "{out}"
    );
    sb.must_ok(&["vm", "edit", HP, "--memory", &format!("{}M", sb.vm(HP).memory_mib)]);

    let iso = sb.storage_dir().join("hp-tools.iso");
    make_iso(&iso, "HPTOOLS");
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "cd", HP, "--iso", iso.to_str().unwrap()]);
    wait_sees(sb, HP, "the CD's label", |s| s.cd == "HPTOOLS");
    lap("vm cd --iso -> the guest reads its label", t.elapsed());
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "cd", HP, "--eject"]);
    wait_sees(sb, HP, "an empty drive", |s| s.cd == "empty");
    lap("vm cd --eject -> the guest sees an empty drive", t.elapsed());

    let after = sb.wait_ticks_above(HP, ticks + 1);
    assert!(after > ticks, "the guest stopped ticking");
    assert_eq!(sb.vm(HP).host.as_deref(), Some("host1"));
}

fn make_iso(path: &std::path::Path, label: &str) {
    let dir = path.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("README"), "corral").unwrap();
    let out = std::process::Command::new("genisoimage")
        .args(["-quiet", "-V", label, "-o"])
        .arg(path)
        .arg(&dir)
        .output()
        .expect("genisoimage (deploy/sandbox/deps.sh installs it)");
    assert!(out.status.success(), "genisoimage: {}", String::from_utf8_lossy(&out.stderr));
}

/// r. One vCPU more than host1 can give (the cluster's CPU overcommit at 1, a second guest
/// filling host1): the guest is live-migrated to a host with room, then scaled there; its
/// plugged disk and unplugged NIC stay as they were.
pub fn scale_up_migrates_first(sb: &Sandbox) {
    let vm = sb.vm(HP);
    assert_eq!(vm.vcpus, 1, "{vm:#?}");
    sb.must_ok(&["cluster", "edit", "--cpu-overcommit", "1"]);
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    sb.cli_json::<VmView>(&[
        "vm", "create", "hpfill", "--memory", "64M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd, "--cmdline", "console=ttyS0 panic=-1",
        "--start", "--host", "host1",
    ]);
    sb.wait_status("hpfill", "up");
    let ticks = sb.wait_ticks_above(HP, 0);
    let t = Instant::now();
    let out = sb.must_ok(&["vm", "edit", HP, "--vcpus", "2"]);
    assert!(out.contains("is live-migrated to host"), "{out}");
    let moved = sb.wait_vm(HP, "up on another host with 2 vCPUs", |v| {
        v.status == "up" && v.host.as_deref() != Some("host1") && v.vcpus == 2
    });
    wait_sees(sb, HP, "2 CPUs", |s| s.cpus == 2);
    lap(&format!("vm edit --vcpus 2 -> migrated to {} and 2 CPUs in the guest", moved.host.unwrap()), t.elapsed());
    let s = sees(sb, HP).unwrap();
    assert_eq!(s.disks, ["vda", "vdb"], "the migration kept the plugged disk: {s:?}");
    assert_eq!(s.nics.len(), 1, "the migration kept nic2 unplugged: {s:?}");
    assert!(sb.wait_ticks_above(HP, ticks) > ticks);

    // Fewer vCPUs wait for the next run (QEMU 7.2 can die at a later hot-plug after a vCPU
    // unplug), with a note.
    let out = sb.must_ok(&["vm", "edit", HP, "--vcpus", "1"]);
    assert!(
        out.contains("note: hp is running; 1 vCPUs waits for its next run: vCPUs are removed at the next run"),
        "{out}"
    );
    sb.must_ok(&["vm", "edit", HP, "--vcpus", "2"]);
    sb.must_ok(&["vm", "stop", "hpfill"]);
    sb.wait_status("hpfill", "down");
    sb.must_ok(&["vm", "delete", "hpfill"]);
    sb.must_ok(&["cluster", "edit", "--cpu-overcommit", "4"]);
}

/// s. Power loss of its host: HA restarts it elsewhere, defined afresh from the configuration,
/// with the plugged disk and without the unplugged NIC.
pub fn ha_restart_keeps_what_is_plugged(sb: &Sandbox) {
    let host = sb.vm(HP).host.expect("hp runs");
    let boots = sb.count(HP, GUEST_UP);
    let t = Instant::now();
    sb.power_off(&host);
    let moved = sb.wait_vm(HP, "up on another host", |v| v.status == "up" && v.host.as_deref() != Some(host.as_str()));
    sb.wait_count(HP, GUEST_UP, boots + 1);
    let (s, _) = wait_sees(sb, HP, "its devices after the restart", |s| !s.disks.is_empty());
    lap(&format!("power loss of {host} -> hp up on {} with its devices", moved.host.unwrap()), t.elapsed());
    assert_eq!(s.disks, ["vda", "vdb"], "{s:?}");
    assert_eq!(s.nics.len(), 1, "{s:?}");
    sb.power_on(&host);
    wait_until(WAIT, &format!("{host} up"), || {
        let h: corral_cli::views::HostView = sb.cli_json(&["host", "show", &host]);
        if h.state == "up" {
            Ok(())
        } else {
            Err(h.state)
        }
    });
}

/// t. An optional disk whose image is gone: the VM starts without it, and an event says so.
pub fn optional_disk_gone(sb: &Sandbox) {
    sb.must_ok(&["vm", "stop", HP]);
    sb.wait_status(HP, "down");
    let d: DiskView = sb.cli_json(&["disk", "create", "hp-opt", "--size", "16M"]);
    sb.cli_json::<VmView>(&["vm", "disk", "attach", HP, "hp-opt", "--optional"]);
    std::fs::remove_file(&d.path).unwrap();
    let boots = sb.count(HP, GUEST_UP);
    sb.must_ok(&["vm", "start", HP]);
    sb.wait_status(HP, "up");
    sb.wait_count(HP, GUEST_UP, boots + 1);
    let (s, _) = wait_sees(sb, HP, "its devices", |s| !s.disks.is_empty());
    assert_eq!(s.disks, ["vda", "vdb"], "started without the optional disk: {s:?}");
    sb.wait_event("the optional disk is named", |m| {
        m == "VM hp starts without optional disk hp-opt: the image cannot be opened."
    });
    sb.must_ok(&["vm", "stop", HP]);
    sb.wait_status(HP, "down");
    sb.must_ok(&["vm", "delete", HP]);
}
