//! Issue 16 on real QEMU: a guest that writes its tick counter to its disk as well as its
//! console (`corral.tickdisk=vda`; at boot it prints `CORRAL-DISK-HOLDS n`, what the disk held)
//! gets snapshots with and without memory while it ticks; each restore, preview, undo, commit,
//! live delete and clone is checked against the counter the guest reads back or resumes from,
//! also after a live migration and an HA restart on another host.

use std::time::Instant;

use corral_cli::views::{SnapshotView, VmView};
use corral_tests::sandbox::WAIT;
use corral_tests::sandbox::{Sandbox, GUEST_UP};
use corral_tests::wait_until;

pub const SN: &str = "sn";
const HOLDS: &str = "CORRAL-DISK-HOLDS ";
const TICK: &str = "CORRAL-TICK ";

fn lap(what: &str, t: Instant) {
    eprintln!("    {what}: {:.2} s", t.elapsed().as_secs_f64());
}

/// `vm snapshot create` with the ticks the guest printed just before and just after it.
fn take(sb: &Sandbox, args: &[&str]) -> (String, u64, u64) {
    let before = sb.ticks(SN).unwrap_or(0);
    let t = Instant::now();
    let mut all = vec!["vm", "snapshot", "create", SN];
    all.extend(args);
    let out = sb.must_ok(&all);
    lap(&format!("vm snapshot create {args:?}"), t);
    let id = out.trim().lines().last().unwrap().split_whitespace().last().unwrap().to_string();
    let after = sb.ticks(SN).unwrap_or(0);
    (id, before, after)
}

fn list(sb: &Sandbox) -> Vec<SnapshotView> {
    sb.cli_json(&["vm", "snapshot", "list", SN])
}

/// Every tick the console printed after byte `from`, in order.
fn ticks_after(sb: &Sandbox, from: usize) -> Vec<u64> {
    let all = sb.console(SN);
    let part = all.get(from..).unwrap_or_default();
    part.match_indices(TICK)
        .filter_map(|(at, m)| {
            part[at + m.len()..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
        })
        .collect()
}

/// What the disk held at the guest's boot after byte `from` of its console (waited for):
/// the counter, or `None` for a disk that held none.
fn disk_at_boot(sb: &Sandbox, from: usize) -> Option<u64> {
    wait_until(WAIT, "the guest's CORRAL-DISK-HOLDS line", || {
        let all = sb.console(SN);
        let part = all.get(from..).unwrap_or_default().to_string();
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

fn holds_after(sb: &Sandbox, from: usize) -> u64 {
    disk_at_boot(sb, from).expect("the disk holds a counter")
}

fn stop(sb: &Sandbox) {
    sb.must_ok(&["vm", "stop", SN]);
    sb.wait_status(SN, "down");
}

fn start(sb: &Sandbox) {
    sb.must_ok(&["vm", "start", SN]);
    sb.wait_status(SN, "up");
}

/// u. Snapshots A (disk), B (memory), X and C (disk) of a ticking guest; X, between B and C,
/// deleted live; a live migration and an HA restart on another host keep all of them.
pub fn taken_deleted_migrated(sb: &Sandbox) -> Taken {
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    sb.cli_json::<VmView>(&[
        "vm", "create", SN, "--memory", "256M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd,
        "--cmdline", "console=ttyS0 panic=-1 possible_cpus=16 corral.tickdisk=vda",
        "--disk", "256M", "--ha", "--start", "--host", "host1",
    ]);
    sb.wait_status(SN, "up");
    sb.wait_console(SN, GUEST_UP);
    assert_eq!(disk_at_boot(sb, 0), None, "a new disk holds no counter");
    sb.wait_ticks_above(SN, 3);

    let a = take(sb, &["--description", "A"]);
    sb.wait_ticks_above(SN, a.2 + 2);
    let boots = sb.count(SN, GUEST_UP);
    let b = take(sb, &["--description", "B", "--memory"]);
    assert_eq!(sb.count(SN, GUEST_UP), boots, "a memory snapshot does not reboot the guest");
    let snaps = list(sb);
    let sb_view = snaps.iter().find(|s| s.id == b.0).expect("B listed");
    assert!(sb_view.memory && sb_view.memory_mib > 0, "{sb_view:?}");
    assert_eq!(sb_view.parent.as_deref(), Some(a.0.as_str()));
    sb.wait_ticks_above(SN, b.2 + 2);
    let x = take(sb, &["--description", "X"]);
    sb.wait_ticks_above(SN, x.2 + 2);
    let c = take(sb, &["--description", "C"]);
    sb.wait_ticks_above(SN, c.2 + 2);

    // X, between B and C, deleted while the guest writes: not one tick is lost meanwhile.
    let from = sb.console(SN).len();
    let t = Instant::now();
    sb.must_ok(&["vm", "snapshot", "delete", SN, &x.0, "--wait"]);
    lap("live delete of the middle snapshot", t);
    let after = sb.wait_ticks_above(SN, sb.ticks(SN).unwrap_or(0) + 2);
    let seen = ticks_after(sb, from);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "ticks during the delete: {seen:?}");
    assert!(*seen.last().unwrap() >= after);
    let ids: Vec<String> = list(sb).into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![a.0.clone(), b.0.clone(), c.0.clone()]);
    assert_eq!(list(sb).iter().find(|s| s.id == c.0).unwrap().parent.as_deref(), Some(b.0.as_str()));

    // A live migration keeps them (libvirt knows none of them, so nothing refuses it).
    let t = Instant::now();
    let moved: VmView = sb.cli_json(&["vm", "migrate", SN, "--to", "host2", "--wait"]);
    assert_eq!(moved.host.as_deref(), Some("host2"), "{moved:?}");
    lap("live migration of a VM with snapshots", t);
    // And so does an HA restart after its host lost power.
    let boots = sb.count(SN, GUEST_UP);
    sb.power_off("host2");
    let v = sb.wait_vm(SN, "up on another host", |v| v.status == "up" && v.host.as_deref() != Some("host2"));
    sb.wait_count(SN, GUEST_UP, boots + 1);
    eprintln!("    HA restarted on {}", v.host.unwrap_or_default());
    sb.power_on("host2");
    wait_until(WAIT, "host2 up", || {
        let h: corral_cli::views::HostView = sb.cli_json(&["host", "show", "host2"]);
        if h.state == "up" {
            Ok(())
        } else {
            Err(h.state)
        }
    });
    assert_eq!(list(sb).len(), 3);
    Taken { a, b, c }
}

pub struct Taken {
    a: (String, u64, u64),
    b: (String, u64, u64),
    c: (String, u64, u64),
}

/// v. Restores after the HA restart: B resumes the guest from its memory without a boot, A
/// boots with A's counter on its disk.
pub fn restores(sb: &Sandbox, t: &Taken) {
    stop(sb);
    let (from, boots) = (sb.console(SN).len(), sb.count(SN, GUEST_UP));
    let clock = Instant::now();
    let out = sb.must_ok(&["vm", "snapshot", "restore", SN, &t.b.0]);
    assert!(out.contains("resumes from it"), "{out}");
    sb.wait_status(SN, "up");
    lap("restore of the memory snapshot -> up", clock);
    wait_until(WAIT, "ticks after the restore", || {
        let seen = ticks_after(sb, from);
        if seen.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    let seen = ticks_after(sb, from);
    let (before, after) = (t.b.1, t.b.2);
    assert!(seen[0] > before && seen[0] <= after + 2, "resumed at {} for B taken at ticks {before}..{after}", seen[0]);
    assert_eq!(sb.count(SN, GUEST_UP), boots, "the guest resumed without a boot");

    stop(sb);
    let from = sb.console(SN).len();
    sb.must_ok(&["vm", "snapshot", "restore", SN, &t.a.0]);
    start(sb);
    sb.wait_count(SN, GUEST_UP, boots + 1);
    let held = holds_after(sb, from);
    assert!(held >= t.a.1 && held <= t.a.2 + 1, "A's disk holds {held}, taken at ticks {}..{}", t.a.1, t.a.2);
    assert_eq!(list(sb).len(), 3, "a restore keeps the other snapshots");
}

/// w. Preview C and undo: the disk holds what it held before the preview; preview A and
/// commit: B and C (taken after A) are erased; a clone from A boots with A's counter.
pub fn preview_undo_commit_clone(sb: &Sandbox, t: &Taken) {
    sb.wait_ticks_above(SN, 3);
    stop(sb);
    let latest = sb.ticks(SN).unwrap_or(0);
    sb.must_ok(&["vm", "snapshot", "preview", SN, &t.c.0]);
    let from = sb.console(SN).len();
    start(sb);
    let held = holds_after(sb, from);
    assert!(held >= t.c.1 && held <= t.c.2 + 1, "the preview of C holds {held}, taken at {}..{}", t.c.1, t.c.2);
    stop(sb);
    sb.must_ok(&["vm", "snapshot", "undo", SN]);
    let from = sb.console(SN).len();
    start(sb);
    let held = holds_after(sb, from);
    assert!(held == latest || held == latest + 1, "after the undo the disk holds {held}, before the preview {latest}");
    stop(sb);

    sb.must_ok(&["vm", "snapshot", "preview", SN, &t.a.0]);
    let out = sb.must_ok(&["vm", "snapshot", "commit", SN]);
    assert!(out.contains("erased"), "{out}");
    let ids: Vec<String> = list(sb).into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![t.a.0.clone()]);

    let clock = Instant::now();
    let clone: VmView = sb.cli_json(&["vm", "clone", SN, "sn-old", "--from-snapshot", &t.a.0]);
    lap("clone from a snapshot", clock);
    sb.must_ok(&["vm", "start", &clone.name, "--host", "host3"]);
    sb.wait_status(&clone.name, "up");
    let console = || sb.console(&clone.name);
    let held = wait_until(WAIT, "the clone's CORRAL-DISK-HOLDS", || {
        let all = console();
        match all.find(HOLDS) {
            Some(at) => all[at + HOLDS.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse::<u64>()
                .map_err(|e| e.to_string()),
            None => Err("not yet".into()),
        }
    });
    assert!(held >= t.a.1 && held <= t.a.2 + 1, "the clone holds {held}, A was taken at {}..{}", t.a.1, t.a.2);
    for vm in [SN, "sn-old"] {
        if sb.vm(vm).status != "down" {
            sb.must_ok(&["vm", "stop", vm]);
            sb.wait_status(vm, "down");
        }
        sb.must_ok(&["vm", "delete", vm]);
    }
}
