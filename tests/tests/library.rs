//! The library (issue 17) on libvirt's test driver: ISOs uploaded through the CLI, templates with
//! thin and cloned VMs (their images checked with qemu-img and qemu-io), offerings and what `vm
//! edit --offering` does, cloud-init seeds written by the host that starts a VM, stateless VMs'
//! disks brought back at stop, and the refusals. Guests booting from ISOs, templates and seeds
//! run on sandbox hosts (`sandbox/library.rs`).

use std::path::Path;
use std::process::Command;

use corral_cli::views::VmView;
use corral_tests::Cluster;
use serde_json::Value;

fn qemu_io(path: &str, cmd: &str) -> (bool, String) {
    // Reads share the image (a VM may hold it); writes may not.
    let share: &[&str] = if cmd.starts_with("read") { &["-r", "-U"] } else { &[] };
    let out = Command::new("qemu-io").args(share).args(["-f", "qcow2", "-c", cmd, path]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && !text.contains("Pattern verification failed"), text)
}

fn write(path: &str, pattern: u8) {
    let (ok, text) = qemu_io(path, &format!("write -P {pattern} 0 64k"));
    assert!(ok, "qemu-io write {path}: {text}");
}

fn holds(path: &str, pattern: u8) -> bool {
    qemu_io(path, &format!("read -P {pattern} 0 64k")).0
}

fn info(path: &str) -> Value {
    let out = Command::new("qemu-img").args(["info", "-U", "--output=json", path]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("qemu-img info {path}: {e}"))
}

/// An ISO 9660 image labelled `label` holding one file.
fn make_iso(dir: &Path, label: &str) -> String {
    let src = dir.join(format!("{label}-src"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello from the library\n").unwrap();
    let iso = dir.join(format!("{label}.iso"));
    let out = Command::new("genisoimage")
        .args(["-quiet", "-volid", label, "-o"])
        .arg(&iso)
        .arg(&src)
        .output()
        .expect("genisoimage (deploy/deps.sh installs it)");
    assert!(out.status.success(), "genisoimage: {}", String::from_utf8_lossy(&out.stderr));
    iso.display().to_string()
}

/// The ISO 9660 volume label of an image (its primary volume descriptor, sector 16).
fn volume_label(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    String::from_utf8_lossy(&bytes[16 * 2048 + 40..16 * 2048 + 72]).trim().to_string()
}

fn files_like(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    out.sort();
    out
}

#[test]
fn isos_templates_offerings_cloud_init_and_stateless_vms() {
    let c = Cluster::run(3, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let storage = c.storage_dir();

    // ISOs: uploaded through any node, checked, listed, refused while a VM has one.
    let iso = make_iso(tmp.path(), "TESTCD");
    let added = c.must_json(
        1,
        &["iso", "add", "deb", "--file", &iso, "--bootable", "--os", "debian_12", "--description", "a test CD"],
    );
    assert_eq!(
        (added["name"].as_str(), added["bootable"].as_bool(), added["os"].as_str()),
        (Some("deb"), Some(true), Some("debian_12"))
    );
    let file = added["file"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(storage.join(&file)).unwrap(), std::fs::read(&iso).unwrap(), "the upload is the file");
    let not_iso = tmp.path().join("not.iso");
    std::fs::write(&not_iso, vec![7u8; 40_000]).unwrap();
    c.refused(0, &["iso", "add", "bad", "--file", not_iso.to_str().unwrap()], "is not an ISO 9660 image");
    c.refused(0, &["iso", "add", "deb", "--file", &iso], "iso 'deb' already exists");
    assert_eq!(files_like(&storage, "iso-"), std::slice::from_ref(&file), "a refused upload leaves no file");
    let listed = c.must_json(2, &["iso", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let vm: VmView = c.cli_json(0, &["vm", "create", "web1", "--memory", "256M", "--iso", "deb", "--disk", "64M"]);
    assert_eq!(
        (vm.iso.as_deref(), vm.boot.clone(), vm.os.as_deref()),
        (Some("deb"), vec!["cdrom".to_string(), "disk".into()], Some("debian_12"))
    );
    let vm: VmView = c.cli_json(
        0,
        &["vm", "create", "web1b", "--memory", "256M", "--iso", "deb", "--disk", "64M", "--boot", "disk,cdrom"],
    );
    assert_eq!(vm.boot, ["disk", "cdrom"]);
    c.refused(0, &["vm", "create", "web1c", "--iso", "deb", "--boot", "cdrom,floppy"], "'floppy' is no boot device");
    c.refused(0, &["vm", "create", "web1c", "--iso", "nosuch"], "neither an ISO of the library");
    c.refused(1, &["iso", "delete", "deb"], "in the CD-ROM drive of vm web1, vm web1b");
    c.must_ok(0, &["vm", "delete", "web1b"]);
    let vm: VmView = c.cli_json(0, &["vm", "cd", "web1", "--eject"]);
    assert_eq!(vm.cdrom, None);
    let vm: VmView = c.cli_json(0, &["vm", "cd", "web1", "--iso", "deb"]);
    assert_eq!(vm.iso.as_deref(), Some("deb"), "vm cd takes a library name");
    c.must_ok(0, &["vm", "cd", "web1", "--eject"]);
    c.must_ok(2, &["iso", "delete", "deb"]);
    assert!(!storage.join(&file).exists(), "a deleted ISO's file goes");

    // Offerings: a size for new VMs, applied by `vm edit --offering`.
    c.must_ok(0, &["offering", "create", "small", "--vcpus", "1", "--memory", "256M"]);
    c.must_ok(0, &["offering", "create", "large", "--vcpus", "2", "--memory", "512M", "--ha", "--description", "big"]);
    let vm: VmView = c.cli_json(1, &["vm", "create", "app1", "--offering", "small"]);
    assert_eq!((vm.memory_mib, vm.vcpus, vm.offering.as_deref(), vm.ha.enabled), (256, 1, Some("small"), false));
    c.refused(1, &["vm", "create", "app2", "--offering", "nosuch"], "offering 'nosuch' not found");
    let vm: VmView = c.cli_json(2, &["vm", "edit", "app1", "--offering", "large"]);
    assert_eq!((vm.memory_mib, vm.vcpus, vm.offering.as_deref(), vm.ha.enabled), (512, 2, Some("large"), true));
    let o = c.must_json(0, &["offering", "show", "large"]);
    assert_eq!(o["vms"], serde_json::json!(["app1"]));
    c.must_ok(0, &["offering", "edit", "large", "--vcpus", "4"]);
    assert_eq!(c.vm(0, "app1").vcpus, 2, "VMs keep their size when their offering changes");
    let vm: VmView = c.cli_json(2, &["vm", "edit", "app1", "--memory", "384M"]);
    assert_eq!(vm.offering, None, "a size of its own is no longer the offering's");
    c.must_ok(0, &["vm", "edit", "app1", "--offering", "large"]);
    c.must_ok(0, &["offering", "delete", "large"]);
    assert_eq!(c.vm(0, "app1").offering, None);
    assert_eq!(c.vm(0, "app1").memory_mib, 512, "its VMs keep their size");

    // Templates: the down VM's disks copied into read-only bases; thin VMs build on them.
    let src: VmView = c.cli_json(
        0,
        &["vm", "create", "src", "--memory", "256M", "--vcpus", "2", "--disk", "64M", "--os", "rhel_9x64"],
    );
    let src_disk = src.disks[0].path.clone();
    write(&src_disk, 7);
    c.must_ok(0, &["vm", "start", "src"]);
    c.wait_status(0, "src", "up");
    c.refused(0, &["template", "create", "t1", "--from-vm", "src"], "a template is made of a down VM");
    c.must_ok(0, &["vm", "stop", "src"]);
    c.wait_status(0, "src", "down");
    let t = c.must_json(1, &["template", "create", "t1", "--from-vm", "src", "--description", "golden"]);
    assert_eq!(
        (t["memory_mib"].as_u64(), t["vcpus"].as_u64(), t["os"].as_str()),
        (Some(256), Some(2), Some("rhel_9x64"))
    );
    let base = storage.join(t["disks"][0].as_str().unwrap());
    let base_s = base.display().to_string();
    assert!(holds(&base_s, 7), "the base holds the VM's data");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&base).unwrap().permissions().mode() & 0o777, 0o444, "a base is read-only");

    let thin: VmView = c.cli_json(2, &["vm", "create", "thin1", "--template", "t1", "--thin"]);
    assert_eq!((thin.template.as_deref(), thin.thin, thin.memory_mib, thin.vcpus), (Some("t1"), true, 256, 2));
    assert_eq!(thin.os.as_deref(), Some("rhel_9x64"));
    let thin_disk = thin.disks[0].path.clone();
    assert!(info(&thin_disk)["backing-filename"].as_str().is_some_and(|b| base_s.ends_with(b)), "{}", info(&thin_disk));
    assert!(holds(&thin_disk, 7));
    let clone: VmView =
        c.cli_json(0, &["vm", "create", "clone1", "--template", "t1", "--clone", "--offering", "small"]);
    assert_eq!((clone.thin, clone.memory_mib, clone.vcpus), (false, 256, 1));
    let clone_disk = clone.disks[0].path.clone();
    assert!(info(&clone_disk)["backing-filename"].is_null(), "a clone is a copy");
    assert!(holds(&clone_disk, 7));
    write(&thin_disk, 8);
    write(&clone_disk, 9);
    assert!(holds(&base_s, 7) && holds(&thin_disk, 8) && holds(&clone_disk, 9), "each VM writes only its own image");
    c.refused(0, &["template", "delete", "t1"], "thin disks of vm thin1");
    c.must_ok(0, &["vm", "delete", "thin1"]);
    c.must_ok(0, &["template", "delete", "t1"]);
    assert!(!base.exists(), "a deleted template's bases go");
    assert!(holds(&clone_disk, 9), "a clone does not need its template");

    // cloud-init: validated before anything is made; the seed is written where the VM starts.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "#cloud-config\nusers: [unclosed\n").unwrap();
    let disks_before = files_like(&storage, "");
    c.refused(0, &["vm", "create", "ci1", "--disk", "64M", "--cloud-init", bad.to_str().unwrap()], "not valid YAML");
    assert_eq!(files_like(&storage, ""), disks_before, "a refused create leaves no file");
    let ud = tmp.path().join("user-data.yaml");
    std::fs::write(&ud, "#cloud-config\ncorral_test: value-42\n").unwrap();
    let key = tmp.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfakekeyforthetest test@corral\n").unwrap();
    let bad_key = tmp.path().join("bad.pub");
    std::fs::write(&bad_key, "not a key\n").unwrap();
    let ci = |k: &Path, name: &str| {
        c.corral(
            0,
            &[
                "vm",
                "create",
                name,
                "--cloud-init",
                ud.to_str().unwrap(),
                "--ssh-key",
                k.to_str().unwrap(),
                "--hostname",
                "h-test",
            ],
        )
    };
    assert!(ci(&bad_key, "ci1").stderr.contains("must be one public key line"));
    let made = ci(&key, "ci1");
    assert_eq!(made.code, 0, "{}", made.stderr);
    let vm = c.vm(0, "ci1");
    assert!(vm.cloud_init);
    c.must_ok(0, &["vm", "start", "ci1"]);
    c.wait_status(0, "ci1", "up");
    let seed = storage.join(format!("cidata-{}.iso", vm.id));
    assert_eq!(volume_label(&seed), "cidata", "the host wrote the seed");
    c.must_ok(0, &["vm", "stop", "ci1"]);
    c.wait_status(0, "ci1", "down");
    c.must_ok(0, &["vm", "delete", "ci1"]);
    assert!(!seed.exists(), "the seed goes with its VM");

    // Stateless: what is written while it runs is gone after it stops.
    let st: VmView = c.cli_json(0, &["vm", "create", "st1", "--memory", "256M", "--disk", "64M"]);
    let st_disk = st.disks[0].path.clone();
    write(&st_disk, 1);
    let vm: VmView = c.cli_json(0, &["vm", "edit", "st1", "--stateless", "true"]);
    assert!(vm.stateless);
    c.refused(0, &["vm", "snapshot", "create", "st1"], "is stateless");
    c.must_ok(0, &["vm", "start", "st1"]);
    c.wait_status(0, "st1", "up");
    write(&st_disk, 2);
    c.must_ok(0, &["vm", "stop", "st1"]);
    c.wait_status(0, "st1", "down");
    corral_tests::wait_until(std::time::Duration::from_secs(20), "the stateless disk back", || {
        holds(&st_disk, 1).then_some(()).ok_or_else(|| "not yet".to_string())
    });
    let tags = info(&st_disk)["snapshots"].as_array().map_or(0, |a| a.len());
    assert_eq!(tags, 0, "the stateless snapshot is dropped at stop");
}
