//! Issue 17 on real QEMU (cluster level 5, the library): a VM that boots from an ISO of the
//! library, templates whose thin and cloned VMs boot with the base's content and leave the base
//! as it was, a cloud-init NoCloud seed the guest reads, and a stateless VM whose disk comes
//! back at each stop. The guest (deploy/sandbox/guest) reports each of these on its console:
//! CORRAL-DISK-HOLDS with corral.tickdisk=vda, CORRAL-CIDATA with corral.cidata=KEY.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use corral_cli::views::VmView;
use corral_tests::sandbox::{Sandbox, GUEST_UP, WAIT};
use corral_tests::wait_until;
use serde_json::Value;

const HOLDS: &str = "CORRAL-DISK-HOLDS ";
const TICK: &str = "CORRAL-TICK ";
const TICKDISK: &str = "console=ttyS0 panic=-1 corral.tickdisk=vda";

fn lap(what: &str, t: Instant) {
    eprintln!("    {what}: {:.2} s", t.elapsed().as_secs_f64());
}

/// `corral -o json ARGS` as untyped JSON (the library's views are not in `corral_cli::views`).
fn json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = sb.must_ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("corral {args:?} printed no JSON ({e}): {out}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// A file of the storage domain as the state names it (relative to the domain) or as a path.
fn in_storage(sb: &Sandbox, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        sb.storage_dir().join(p)
    }
}

/// Every file under the storage domain (consoles and the guest's own files left out).
fn storage_files(sb: &Sandbox) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p);
            }
        }
    }
    let root = sb.storage_dir();
    let mut all = BTreeSet::new();
    walk(&root, &mut all);
    all.retain(|p| !p.starts_with(root.join("consoles")) && !p.starts_with(root.join("guest")));
    all
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// `qemu-img info -U --output=json` of an image (shared read: its VM may hold it open).
fn image_info(path: &str) -> Value {
    let out = Command::new("qemu-img").args(["info", "-U", "--output=json", path]).output().expect("run qemu-img");
    assert!(out.status.success(), "qemu-img info {path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("qemu-img info JSON")
}

/// The console of `vm` after byte `from`.
fn console_after(sb: &Sandbox, vm: &str, from: usize) -> String {
    sb.console(vm).get(from..).unwrap_or_default().to_string()
}

/// What the disk held at the first boot after byte `from` of the console (waited for): the
/// counter, or None for a disk that held none.
fn holds_after(sb: &Sandbox, vm: &str, from: usize) -> Option<u64> {
    wait_until(WAIT, &format!("{vm}'s CORRAL-DISK-HOLDS line"), || {
        let part = console_after(sb, vm, from);
        match part.find(HOLDS) {
            Some(at) => {
                let v: String = part[at + HOLDS.len()..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                match v.as_str() {
                    "none" => Ok(None),
                    _ => v.parse::<u64>().map(Some).map_err(|_| format!("the disk held {v:?}")),
                }
            }
            None => Err(format!("no {HOLDS} yet; console ends {:?}", part.lines().last())),
        }
    })
}

/// The ticks printed after byte `from` of the console, in order.
fn ticks_after(sb: &Sandbox, vm: &str, from: usize) -> Vec<u64> {
    let part = console_after(sb, vm, from);
    part.match_indices(TICK)
        .filter_map(|(at, m)| {
            part[at + m.len()..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
        })
        .collect()
}

/// Waits until the guest printed a tick above `n` after byte `from`; returns the last one.
fn wait_ticks_after(sb: &Sandbox, vm: &str, from: usize, n: u64) -> u64 {
    wait_until(WAIT, &format!("{vm} to tick past {n}"), || {
        let seen = ticks_after(sb, vm, from);
        match seen.last() {
            Some(&t) if t > n => Ok(t),
            _ => Err(format!("ticks {seen:?}; console ends {:?}", console_after(sb, vm, from).lines().last())),
        }
    })
}

fn start_on(sb: &Sandbox, vm: &str, host: &str) {
    sb.must_ok(&["vm", "start", vm, "--host", host]);
    sb.wait_status(vm, "up");
}

fn stop(sb: &Sandbox, vm: &str) {
    if sb.vm(vm).status != "down" {
        sb.must_ok(&["vm", "stop", vm]);
        sb.wait_status(vm, "down");
    }
}

fn remove(sb: &Sandbox, vms: &[&str]) {
    for vm in vms {
        if sb.corral(&["vm", "show", vm]).code == 0 {
            stop(sb, vm);
            sb.must_ok(&["vm", "delete", vm]);
        }
    }
}

/// A down VM booting the guest's kernel with `cmdline`, with one disk of `disk` if given.
fn kernel_vm(sb: &Sandbox, name: &str, cmdline: &str, disk: Option<&str>) -> VmView {
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    let mut args = vec![
        "vm", "create", name, "--memory", "128M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd, "--cmdline", cmdline,
    ];
    if let Some(d) = disk {
        args.extend(["--disk", d]);
    }
    sb.cli_json::<VmView>(&args)
}

const ISO: &str = "guest-iso";
const ISO_VM: &str = "lib-iso";

/// x. The guest on a bootable ISO (deploy/sandbox/guest/iso.sh) uploaded with `iso add`; a VM
/// made with `--iso` and an empty disk, no kernel, boots it from its CD; `iso delete` is
/// refused while the VM has it, and removes the ISO once the VM is gone.
pub fn iso_boot(sb: &Sandbox) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("guest.iso");
    let file_s = file.display().to_string();
    let t = Instant::now();
    sb.script("guest/iso.sh", &[&file_s, "panic=-1"]);
    lap("iso.sh", t);
    let size = std::fs::metadata(&file).expect("the ISO").len();

    let t = Instant::now();
    let iso = json(sb, &["iso", "add", ISO, "--file", &file_s, "--bootable", "--description", "the sandbox guest"]);
    lap(&format!("iso add ({} KiB)", size / 1024), t);
    assert_eq!(iso["name"], ISO, "{iso:#}");
    assert_eq!(iso["bootable"], true, "{iso:#}");
    assert_eq!(iso["size_bytes"].as_u64(), Some(size), "{iso:#}");
    let stored = in_storage(sb, iso["file"].as_str().expect("the ISO's file"));
    assert_eq!(sha256(&stored), sha256(&file), "the uploaded copy {} differs from {file_s}", stored.display());
    assert_eq!(iso["sha256"].as_str(), Some(sha256(&file).as_str()), "{iso:#}");
    let listed = json(sb, &["iso", "list"]);
    assert!(listed.as_array().is_some_and(|l| l.iter().any(|i| i["name"] == ISO)), "{listed:#}");

    #[rustfmt::skip]
    let vm = sb.cli_json::<VmView>(&[
        "vm", "create", ISO_VM, "--memory", "128M", "--vcpus", "1", "--domain-type", "qemu",
        "--iso", ISO, "--disk", "64M",
    ]);
    assert_eq!(vm.boot, ["cdrom", "disk"], "{vm:#?}");
    assert_eq!(vm.iso.as_deref(), Some(ISO), "{vm:#?}");
    assert_eq!(vm.disks.len(), 1, "{vm:#?}");
    let t = Instant::now();
    start_on(sb, ISO_VM, "host1");
    sb.wait_console(ISO_VM, GUEST_UP);
    lap("start -> CORRAL-GUEST-UP from the CD", t);
    // isolinux names the kernel it loaded from the CD on the kernel command line, which the
    // kernel prints as it boots.
    let console = sb.console(ISO_VM);
    let line = console.lines().find(|l| l.contains("Command line:"));
    eprintln!("    {}", line.unwrap_or("(no kernel command line on the console)").trim());
    assert!(
        line.is_some_and(|l| l.contains("BOOT_IMAGE=/isolinux/vmlinuz")),
        "the guest did not boot isolinux's kernel from the CD: {line:?}"
    );
    let shown = json(sb, &["iso", "show", ISO]);
    assert_eq!(strings(&shown["used_by"]), [ISO_VM], "{shown:#}");

    let out = sb.corral(&["iso", "delete", ISO]);
    assert_ne!(out.code, 0, "iso delete of an ISO in use succeeded: {}", out.stdout);
    assert!(out.stderr.contains(ISO_VM), "the refusal names the VM: {}", out.stderr.trim());
    eprintln!("    {}", out.stderr.trim());
    assert!(stored.is_file(), "the refused delete left the ISO's file");

    remove(sb, &[ISO_VM]);
    sb.must_ok(&["iso", "delete", ISO]);
    assert_ne!(sb.corral(&["iso", "show", ISO]).code, 0, "the ISO is gone");
    wait_until(WAIT, "the ISO's file to be removed", || {
        if stored.exists() {
            Err(format!("{} still there", stored.display()))
        } else {
            Ok(())
        }
    });
}

const TPL: &str = "lib-tpl";
const TPL_SRC: &str = "lib-src";
const THIN: &str = "lib-thin";
const CLONE: &str = "lib-clone";

/// y. A prepared VM (its disk holds its last tick) made into a template; a thin VM and a
/// cloned VM of it boot with that counter on their disks and write their own ticks; the base
/// is unchanged; the thin disk is an overlay on it and holds its VM's ticks; the template
/// cannot be deleted while the thin VM exists.
pub fn templates(sb: &Sandbox) {
    kernel_vm(sb, TPL_SRC, TICKDISK, Some("64M"));
    start_on(sb, TPL_SRC, "host1");
    sb.wait_console(TPL_SRC, GUEST_UP);
    assert_eq!(holds_after(sb, TPL_SRC, 0), None, "a new disk holds no counter");
    sb.wait_ticks_above(TPL_SRC, 3);
    stop(sb, TPL_SRC);
    let last = sb.ticks(TPL_SRC).expect("ticks");

    let t = Instant::now();
    let tpl = json(sb, &["template", "create", TPL, "--from-vm", TPL_SRC, "--description", "ticks"]);
    lap("template create (64 MiB disk)", t);
    let bases: Vec<PathBuf> = strings(&tpl["disks"]).iter().map(|f| in_storage(sb, f)).collect();
    assert_eq!(bases.len(), 1, "{tpl:#}");
    let base = &bases[0];
    assert!(base.is_file(), "base {} exists", base.display());
    let src = sb.vm(TPL_SRC);
    assert!(src.disks.iter().all(|d| in_storage(sb, &d.path) != *base), "the base is a copy: {src:#?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(base).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "the base is read-only: {mode:o}");
    }
    let before = sha256(base);

    let t = Instant::now();
    let thin = sb.cli_json::<VmView>(&["vm", "create", THIN, "--template", TPL, "--thin"]);
    lap("vm create --thin", t);
    let t = Instant::now();
    let clone = sb.cli_json::<VmView>(&["vm", "create", CLONE, "--template", TPL, "--clone"]);
    lap("vm create --clone", t);
    for (vm, is_thin) in [(&thin, true), (&clone, false)] {
        assert_eq!(vm.template.as_deref(), Some(TPL), "{vm:#?}");
        assert_eq!(vm.thin, is_thin, "{vm:#?}");
        assert_eq!((vm.memory_mib, vm.vcpus), (128, 1), "the template's size: {vm:#?}");
        assert_eq!(vm.disks.len(), 1, "{vm:#?}");
    }
    let thin_disk = in_storage(sb, &thin.disks[0].path).display().to_string();
    let clone_disk = in_storage(sb, &clone.disks[0].path).display().to_string();
    let info = image_info(&thin_disk);
    let backing = info["full-backing-filename"].as_str().or(info["backing-filename"].as_str()).unwrap_or_default();
    assert!(!backing.is_empty(), "the thin disk has a backing file: {info:#}");
    let backing_path = if Path::new(backing).is_absolute() {
        PathBuf::from(backing)
    } else {
        Path::new(&thin_disk).parent().unwrap().join(backing)
    };
    assert_eq!(
        std::fs::canonicalize(&backing_path).ok(),
        std::fs::canonicalize(base).ok(),
        "the thin disk builds on the base: {info:#}"
    );
    let info = image_info(&clone_disk);
    assert!(info.get("backing-filename").is_none(), "the clone's disk is a full copy: {info:#}");

    let shown = json(sb, &["template", "show", TPL]);
    // Listed as "vm NAME".
    let users = strings(&shown["thin_users"]);
    assert!(users.len() == 1 && users[0].split_whitespace().last() == Some(THIN), "{shown:#}");
    let out = sb.corral(&["template", "delete", TPL]);
    assert_ne!(out.code, 0, "template delete with a thin VM on it succeeded: {}", out.stdout);
    assert!(out.stderr.contains(THIN), "the refusal names the thin VM: {}", out.stderr.trim());
    eprintln!("    {}", out.stderr.trim());

    let t = Instant::now();
    start_on(sb, THIN, "host2");
    start_on(sb, CLONE, "host3");
    for vm in [THIN, CLONE] {
        let held = holds_after(sb, vm, 0).unwrap_or_else(|| panic!("{vm}'s disk holds no counter"));
        assert!(held == last || held == last + 1, "{vm}'s disk holds {held}, the prepared VM's last tick was {last}");
        let own = wait_ticks_after(sb, vm, 0, last + 3);
        eprintln!("    {vm}: its disk held {held}, it ticked on to {own}");
    }
    lap("thin and clone started -> both past the base's counter + 3", t);
    stop(sb, THIN);
    stop(sb, CLONE);
    let thin_last = sb.ticks(THIN).unwrap();
    assert_eq!(sha256(base), before, "the base {} changed", base.display());

    // The thin VM's ticks are on its overlay: its next boot reads them back, not the base's.
    let from = sb.console(THIN).len();
    start_on(sb, THIN, "host1");
    let held = holds_after(sb, THIN, from).expect("a counter");
    assert!(
        held == thin_last || held == thin_last + 1,
        "the thin disk holds {held}, its VM's last tick was {thin_last}"
    );
    stop(sb, THIN);
    assert_eq!(sha256(base), before, "the base {} changed", base.display());

    remove(sb, &[THIN]);
    assert!(Path::new(&thin_disk).symlink_metadata().is_err(), "the thin disk {thin_disk} is removed with its VM");
    sb.must_ok(&["template", "delete", TPL]);
    assert!(Path::new(&clone_disk).is_file(), "the clone's disk outlives the template");
    wait_until(WAIT, "the base to be removed with its template", || {
        if base.exists() {
            Err(format!("{} still there", base.display()))
        } else {
            Ok(())
        }
    });
    remove(sb, &[CLONE, TPL_SRC]);
}

const CI_TPL: &str = "lib-ci-tpl";
const CI_SRC: &str = "lib-ci-src";
const CI_VM: &str = "lib-ci";
const CI_DIRECT: &str = "lib-ci-direct";

/// Waits for the guest's CORRAL-CIDATA line after byte 0; returns (value line, meta line).
fn cidata(sb: &Sandbox, vm: &str) -> (String, Option<String>) {
    wait_until(WAIT, &format!("{vm}'s CORRAL-CIDATA line"), || {
        let all = sb.console(vm);
        if let Some(warn) = all.lines().find(|l| l.contains("CORRAL-GUEST-WARN corral.cidata")) {
            return Ok((warn.to_string(), None));
        }
        let line = all.lines().find(|l| l.starts_with("CORRAL-CIDATA "));
        match line {
            Some(l) => {
                let meta = all.lines().find(|l| l.starts_with("CORRAL-CIDATA-META ")).map(str::to_string);
                Ok((l.trim_end().to_string(), meta.map(|m| m.trim_end().to_string())))
            }
            None => Err(format!("console ends {:?}", all.lines().last())),
        }
    })
}

/// z. cloud-init: a template whose VM boots with corral.cidata=corral_test; a VM made of it
/// with `--cloud-init` (user-data with a random value) and `--hostname` reads both from its
/// NoCloud seed CD; so does a VM made with `--kernel ... --cloud-init`. A user-data that is not
/// YAML is refused before anything is made.
pub fn cloud_init(sb: &Sandbox) {
    let dir = tempfile::tempdir().expect("temp dir");
    let value = format!("value-{}", uuid::Uuid::new_v4().simple());
    let user_data = dir.path().join("user-data.yaml");
    std::fs::write(&user_data, format!("#cloud-config\ncorral_test: {value}\npackages: []\n")).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "#cloud-config\ncorral_test: [unclosed\n  - {x: \n").unwrap();
    let (ud, bad) = (user_data.display().to_string(), bad.display().to_string());

    let cmdline = "console=ttyS0 panic=-1 corral.cidata=corral_test";
    kernel_vm(sb, CI_SRC, cmdline, Some("16M"));
    json(sb, &["template", "create", CI_TPL, "--from-vm", CI_SRC]);

    // Refused before anything is made: no VM, no new file in the storage domain.
    let files = storage_files(sb);
    let out = sb.corral(&["vm", "create", "lib-ci-bad", "--template", CI_TPL, "--cloud-init", &bad]);
    assert_ne!(out.code, 0, "a user-data that is not YAML was taken: {}", out.stdout);
    eprintln!("    {}", out.stderr.trim());
    assert_ne!(sb.corral(&["vm", "show", "lib-ci-bad"]).code, 0, "no VM was made");
    assert_eq!(storage_files(sb), files, "no file was made");
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    let out = sb.corral(&[
        "vm", "create", "lib-ci-bad", "--memory", "128M", "--domain-type", "qemu", "--kernel", &kernel,
        "--initrd", &initrd, "--cmdline", cmdline, "--disk", "16M", "--cloud-init", &bad,
    ]);
    assert_ne!(out.code, 0, "a user-data that is not YAML was taken: {}", out.stdout);
    assert_ne!(sb.corral(&["vm", "show", "lib-ci-bad"]).code, 0, "no VM was made");
    assert_eq!(storage_files(sb), files, "no file was made");

    let vm = sb.cli_json::<VmView>(&[
        "vm",
        "create",
        CI_VM,
        "--template",
        CI_TPL,
        "--cloud-init",
        &ud,
        "--hostname",
        "h-test",
    ]);
    assert!(vm.cloud_init, "{vm:#?}");
    assert_eq!(vm.template.as_deref(), Some(CI_TPL), "{vm:#?}");
    #[rustfmt::skip]
    let direct = sb.cli_json::<VmView>(&[
        "vm", "create", CI_DIRECT, "--memory", "128M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd, "--cmdline", cmdline, "--cloud-init", &ud,
    ]);
    assert!(direct.cloud_init, "{direct:#?}");

    let t = Instant::now();
    start_on(sb, CI_VM, "host2");
    start_on(sb, CI_DIRECT, "host3");
    let want = format!("CORRAL-CIDATA corral_test={value}");
    let (line, meta) = cidata(sb, CI_VM);
    lap("start -> CORRAL-CIDATA", t);
    assert_eq!(line, want, "{CI_VM}");
    assert_eq!(meta.as_deref(), Some("CORRAL-CIDATA-META local-hostname=h-test"), "{CI_VM}");
    let (line, meta) = cidata(sb, CI_DIRECT);
    assert_eq!(line, want, "{CI_DIRECT} (made with --kernel)");
    eprintln!("    {CI_DIRECT}: {line}; {meta:?}");

    remove(sb, &[CI_VM, CI_DIRECT]);
    sb.must_ok(&["template", "delete", CI_TPL]);
    remove(sb, &[CI_SRC]);
}

const SL: &str = "lib-sl";

/// aa. A stateless VM: its disk holds K (written by a run before it was made stateless); it
/// boots stateless with K, ticks well past K, is stopped and started: its disk holds K again.
pub fn stateless(sb: &Sandbox) {
    kernel_vm(sb, SL, TICKDISK, Some("64M"));
    start_on(sb, SL, "host1");
    sb.wait_console(SL, GUEST_UP);
    sb.wait_ticks_above(SL, 2);
    stop(sb, SL);
    let k = sb.ticks(SL).expect("ticks");

    let edited = sb.cli_json::<VmView>(&["vm", "edit", SL, "--stateless", "true"]);
    assert!(edited.stateless, "{edited:#?}");
    assert!(sb.vm(SL).stateless);

    let from = sb.console(SL).len();
    let t = Instant::now();
    start_on(sb, SL, "host2");
    let first = holds_after(sb, SL, from).expect("a counter");
    assert!(first == k || first == k + 1, "the disk holds {first} at the stateless start; it was left at {k}");
    let reached = wait_ticks_after(sb, SL, from, first + 4);
    lap(&format!("stateless start -> ticked to {reached}"), t);
    stop(sb, SL);

    let from = sb.console(SL).len();
    let t = Instant::now();
    start_on(sb, SL, "host3");
    let second = holds_after(sb, SL, from).expect("a counter");
    lap("stop, start -> CORRAL-DISK-HOLDS", t);
    eprintln!("    before: {k} ticks; stateless boot held {first}, ticked to {reached}; next boot held {second}");
    assert_eq!(
        second, first,
        "after the stateless run (ticks up to {reached}) the disk holds {second}, not {first} as before it"
    );
    // And again: each start saves, each stop brings back.
    wait_ticks_after(sb, SL, from, second + 2);
    stop(sb, SL);
    let from = sb.console(SL).len();
    start_on(sb, SL, "host1");
    assert_eq!(holds_after(sb, SL, from), Some(first), "the second stateless run was kept");
    remove(sb, &[SL]);
}
