//! Real VMs on sandbox hosts (deploy/sandbox: libvirtd, QEMU and corrald in namespaces per
//! host): the busybox guest boots under TCG, powers off over ACPI, reboots, pauses, keeps
//! ticking through a live migration, survives a failed one, and is cloned and deleted with its
//! disk files. Needs root (CI runs as root); it says so and skips otherwise.
//!
//! The hosts are one shared set, so the steps run in order in one test. A failed step is
//! reported and the next steps still run; the test fails at the end, naming every failed step.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use corral_cli::views::{DeletedVmView, DiskView, EngineStatusView, EventView, HostView, VmView};
use corral_tests::sandbox::{Sandbox, SandboxOptions, GUEST_POWEROFF, GUEST_UP, WAIT};
use corral_tests::wait_until;

#[path = "sandbox/console.rs"]
mod console;
#[path = "sandbox/hotplug.rs"]
mod hotplug;
#[path = "sandbox/library.rs"]
mod library;
#[path = "sandbox/snapshots.rs"]
mod snapshots;
#[path = "sandbox/web.rs"]
mod web;

const VM: &str = "g1";

#[test]
fn real_vms_on_sandbox_hosts() {
    let t0 = Instant::now();
    // Every host shows VNC displays on its own address, so every migration below carries one.
    let host_args = (1..=3).map(|n| format!("--vnc-listen 10.213.0.{}", n + 1)).collect();
    let Some(sb) = Sandbox::up_with(3, &SandboxOptions { host_args, ..Default::default() }) else {
        eprintln!("SKIPPED real_vms_on_sandbox_hosts: the sandbox hosts need root (namespaces, a bridge, bind mounts)");
        return;
    };
    eprintln!("sandbox: 3 hosts up, cluster formed in {:.1} s", t0.elapsed().as_secs_f64());

    let mut steps = Steps::default();
    steps.run("a. create g1 and start it on host2", || create_and_start_on_host2(&sb));
    steps.run("a2. the double-run monitor sees g1 running on host2 alone", || monitor_sees_one_host(&sb));
    steps.run("b. graceful shutdown with a reason", || graceful_shutdown(&sb));
    steps.run("c. start, stop, reboot, suspend, resume", || power_cycle(&sb));
    steps.run("d. live migration host1 -> host3 while it ticks", || live_migration(&sb));
    steps.run("e. failed migration leaves it running on its source", || failed_migration(&sb));
    steps.run("f. clone and delete with disk files", || clone_and_delete(&sb));
    steps.run("g. a cluster VM found running on the wrong host is stopped there", || stray_domain(&sb));
    steps.run("h. a host whose libvirtd is gone reports its VMs not_responding", || libvirtd_gone(&sb));
    steps.run("i. maintenance evacuates a loaded host, highest priority first", || maintenance(&sb));
    steps.run("j. power loss of a host: its HA VM restarts elsewhere, the other stays down", || {
        fault(&sb, "j", Fault::PowerLoss)
    });
    steps.run("k. SIGKILL of corrald only: the watchdog fences the host", || fault(&sb, "k", Fault::KillCorrald));
    steps.run("l. SIGSTOP of corrald past the lease: the watchdog fences the host", || {
        fault(&sb, "l", Fault::StopCorrald)
    });
    steps.run("m. a partitioned host fences itself; HA restarts its VM on the majority side", || {
        fault(&sb, "m", Fault::Partition)
    });
    steps.run("n. an HA VM whose QEMU dies on a live host is restarted; one that is not HA is not", || qemu_dies(&sb));
    steps.run("o. a slow migration shows its progress and is cancelled; the VM stays", || cancel_migration(&sb));
    steps.run("p. the leader's own host is cut off: a new leader restarts its HA VM after a full lease", || {
        fault(&sb, "p", Fault::PartitionLeader)
    });
    steps.run("q. a disk, a NIC, memory and the CD plugged and unplugged while the guest ticks", || {
        hotplug::devices_while_it_ticks(&sb)
    });
    steps
        .run("r. a vCPU more than its host has: migrated first, then scaled", || hotplug::scale_up_migrates_first(&sb));
    steps.run("s. an HA restart keeps what is plugged", || hotplug::ha_restart_keeps_what_is_plugged(&sb));
    steps.run("t. an optional disk whose image is gone does not stop a start", || hotplug::optional_disk_gone(&sb));
    let mut taken = None;
    steps.run(
        "u. snapshots with and without memory of a ticking guest; one deleted live; migrated and HA-restarted",
        || taken = Some(snapshots::taken_deleted_migrated(&sb)),
    );
    if let Some(t) = &taken {
        steps.run("v. restore with memory resumes the guest, without it boots with the snapshot's disk", || {
            snapshots::restores(&sb, t)
        });
        steps.run("w. preview and undo, preview and commit, clone from a snapshot", || {
            snapshots::preview_undo_commit_clone(&sb, t)
        });
    }
    steps.run("x. a VM with --iso and an empty disk boots the guest from the library's ISO", || library::iso_boot(&sb));
    steps.run("y. thin and cloned VMs of a template boot with its base's counter; the base stays", || {
        library::templates(&sb)
    });
    steps
        .run("z. cloud-init: the guest reads its user-data and hostname from the seed CD", || library::cloud_init(&sb));
    steps.run("aa. a stateless VM's disk comes back at each stop", || library::stateless(&sb));
    steps.run("ab. vm console through tmux, on the VM's host and through another node; Ctrl-] leaves; a new session takes over", || {
        console::serial_console_through_tmux(&sb)
    });
    steps.run("ac. vm console --vnc: its password passes VNC authentication, a wrong or replaced one fails", || {
        console::vnc_ticket_authenticates(&sb)
    });
    steps.run("ad. the web console migrates a ticking guest; its progress bar moves between 0 and 100", || {
        web::migrate_with_a_progress_bar(&sb)
    });
    eprintln!("sandbox test: {:.1} s in all", t0.elapsed().as_secs_f64());
    steps.finish();
}

const ENGINE: &str = "hosted-engine";

/// The hosted engine on real QEMU: a cluster bootstrapped with an engine image (the busybox
/// guest booted from its kernel), its host powered off (the engine comes back first, on the
/// best-scored host: host3's gateway does not answer), delete refused, and `engine start
/// --local` on the one host left after quorum is lost, which the cluster takes over when the
/// others come back, with no second copy anywhere.
#[test]
fn hosted_engine_on_sandbox_hosts() {
    let t0 = Instant::now();
    let image = tempfile::Builder::new().prefix("corral-engine-").suffix(".qcow2").tempfile().expect("temp file");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-o", "size=64M"])
        .arg(image.path())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        panic!("qemu-img could not make the engine image");
    }
    let good = "--engine-gateway 10.213.0.1 --engine-score-ms 500";
    // Port 9 on the bridge: nothing listens, so host3's gateway check fails (-1600).
    let bad = "--engine-gateway 10.213.0.1:9 --engine-score-ms 500";
    let image_path = image.path().display().to_string();
    #[rustfmt::skip]
    let bootstrap: Vec<String> = [
        "--engine-image", &image_path, "--engine-memory", "128M", "--engine-vcpus", "1",
        "--engine-domain-type", "qemu", "--engine-kernel", "{kernel}", "--engine-initrd", "{initrd}",
        "--engine-cmdline", "console=ttyS0 panic=-1",
    ].iter().map(|s| s.to_string()).collect();
    let options = SandboxOptions { host_args: vec![good.into(), good.into(), bad.into()], bootstrap_args: bootstrap };
    let Some(sb) = Sandbox::up_with(3, &options) else {
        eprintln!("SKIPPED hosted_engine_on_sandbox_hosts: the sandbox hosts need root");
        return;
    };
    eprintln!("sandbox: 3 hosts up with a hosted engine in {:.1} s", t0.elapsed().as_secs_f64());
    let mut steps = Steps::default();
    steps.run("q. the bootstrap made the engine VM and started it on host1", || engine_bootstrapped(&sb));
    steps.run("r. the engine's host loses power: the engine is up on the best-scored host", || engine_failover(&sb));
    steps.run("s. quorum lost: engine start --local, then the cluster takes it over", || engine_start_local(&sb));
    steps.run("t. local maintenance on the engine's host migrates the engine away", || engine_local_maintenance(&sb));
    eprintln!("sandbox engine test: {:.1} s in all", t0.elapsed().as_secs_f64());
    steps.finish();
}

fn engine_bootstrapped(sb: &Sandbox) {
    let vm = sb.wait_vm(ENGINE, "up on host1", |v| up_on(v, "host1"));
    assert_eq!((vm.hosted_engine, vm.delete_protected), (true, true), "{vm:#?}");
    assert_eq!(vm.ha.priority, "high", "{vm:#?}");
    sb.wait_console(ENGINE, GUEST_UP);
    assert!(sb.domains("host1").contains(&(ENGINE.into(), "running".into())), "{:?}", sb.domains("host1"));
    let out = sb.corral(&["vm", "delete", ENGINE]);
    assert!(out.code != 0 && out.stderr.contains("hosted engine"), "delete of the engine VM: {out:?}");
    // Edited like any VM, and in every host's own OVF store a moment after the edit returns.
    sb.cli_json::<VmView>(&["vm", "edit", ENGINE, "--description", "the cluster's own manager"]);
    for i in 0..3 {
        corral_tests::wait_until(Duration::from_secs(5), &format!("host{}'s OVF store", i + 1), || {
            let doc = sb.corral_on(i, &["ovf", "dump", ENGINE, "--local"]);
            if doc.code == 0
                && (doc.stdout.contains("the cluster&apos;s own manager")
                    || doc.stdout.contains("the cluster's own manager"))
            {
                Ok(())
            } else {
                Err(format!("{}{}", doc.stdout, doc.stderr))
            }
        });
    }
}

/// Whether the VM is up on `host`.
fn up_on(v: &VmView, host: &str) -> bool {
    v.status == "up" && v.host.as_deref() == Some(host)
}

/// Whether the VM is up, and not on `host`.
fn up_off(v: &VmView, host: &str) -> bool {
    v.status == "up" && v.host.as_deref() != Some(host)
}

fn score(status: &EngineStatusView, host: &str) -> Option<u32> {
    status.hosts.iter().find(|h| h.host == host)?.score
}

fn engine_failover(sb: &Sandbox) {
    let status = wait_until(WAIT, "host3's gateway penalty in the engine scores", || {
        let s = sb.cli_json::<EngineStatusView>(&["engine", "status"]);
        match (score(&s, "host2"), score(&s, "host3")) {
            (Some(h2), Some(h3)) if h3 + 600 <= h2 => Ok(s),
            _ => Err(format!("{s:?}")),
        }
    });
    eprintln!(
        "    scores: host1 {:?}, host2 {:?}, host3 {:?}",
        score(&status, "host1"),
        score(&status, "host2"),
        score(&status, "host3")
    );
    let monitor = sb.monitor();
    monitor.wait_rounds(5, WAIT);
    let t = Instant::now();
    sb.power_off("host1");
    let vm = sb.wait_vm(ENGINE, "up again, elsewhere", |v| up_off(v, "host1"));
    lap("power loss -> engine up elsewhere", t);
    let report = monitor.stop();
    assert!(report.violations.is_empty(), "the engine ran on two hosts at once: {report}");
    assert_eq!(
        vm.host.as_deref(),
        Some("host2"),
        "the engine went to {:?} instead of the best-scored host2: {status:?}",
        vm.host
    );
    assert!(sb.domains("host2").contains(&(ENGINE.into(), "running".into())), "{:?}", sb.domains("host2"));
    sb.power_on("host1");
    wait_until(WAIT, "host1 up again", || {
        let h = sb.cli_json::<HostView>(&["host", "show", "host1"]);
        if h.state == "up" {
            Ok(())
        } else {
            Err(format!("{h:?}"))
        }
    });
}

fn engine_start_local(sb: &Sandbox) {
    let refused = sb.corral_on(0, &["engine", "start", "--local"]);
    assert!(refused.code != 0 && refused.stderr.contains("quorum"), "with quorum: {refused:?}");
    let monitor = sb.monitor();
    monitor.wait_rounds(5, WAIT);
    // The engine runs on host2; host2 and host3 lose power, host1 is alone without quorum.
    sb.power_off("host2");
    sb.power_off("host3");
    let t = Instant::now();
    let out = sb.corral_on(0, &["engine", "start", "--local"]);
    assert_eq!(out.code, 0, "engine start --local on host1: {}", out.stderr);
    eprintln!("{}", out.stdout.trim());
    wait_until(WAIT, "the engine VM running on host1", || {
        let d = sb.domains("host1");
        if d.contains(&(ENGINE.into(), "running".into())) {
            Ok(())
        } else {
            Err(format!("{d:?}"))
        }
    });
    lap("engine start --local -> running on host1", t);
    let again = sb.corral_on(0, &["engine", "start", "--local"]);
    assert!(again.code != 0 && again.stderr.contains("already runs"), "a second start: {again:?}");
    // Quorum returns: the cluster takes the hand-started engine over on host1; host2, where the
    // state had it, comes back without it and starts no copy.
    sb.power_on("host2");
    sb.power_on("host3");
    let vm = sb.wait_vm(ENGINE, "taken over on host1", |v| up_on(v, "host1"));
    lap("quorum back -> engine taken over on host1", t);
    assert_eq!(vm.host.as_deref(), Some("host1"));
    sb.wait_event("the take-over is in the event log", |m| m.contains("started by hand on host host1"));
    monitor.wait_rounds(20, WAIT);
    let report = monitor.stop();
    eprintln!("{report}");
    assert!(report.violations.is_empty(), "the engine ran on two hosts at once: {report}");
}

fn engine_local_maintenance(sb: &Sandbox) {
    let before = sb.wait_vm(ENGINE, "up on host1", |v| up_on(v, "host1"));
    let ticks = sb.ticks(ENGINE);
    let t = Instant::now();
    sb.cli_json::<EngineStatusView>(&["engine", "maintenance", "--mode", "local", "--host", "host1"]);
    // host3's gateway penalty leaves host2 the best-scored host.
    let vm = sb.wait_vm(ENGINE, "migrated off host1", |v| up_off(v, "host1"));
    lap("local maintenance -> engine migrated", t);
    assert_eq!(vm.host.as_deref(), Some("host2"), "before: {before:?}");
    sb.wait_event("the migration was ordered for local maintenance", |m| m.contains("local maintenance"));
    if let Some(t0) = ticks {
        // A live migration: the guest's tick counter goes on, it did not boot again.
        wait_until(WAIT, "the engine guest ticking on past its count before", || match sb.ticks(ENGINE) {
            Some(now) if now > t0 => Ok(()),
            other => Err(format!("{other:?} after {t0}")),
        });
    }
    let out = sb.cli_json::<EngineStatusView>(&["engine", "maintenance", "--mode", "none", "--host", "host1"]);
    assert!(!out.global_maintenance);
}

fn create_and_start_on_host2(sb: &Sandbox) {
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    let vm = sb.cli_json::<VmView>(&[
        "vm", "create", VM, "--memory", "128M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd, "--cmdline", "console=ttyS0 panic=-1", "--disk", "64M",
    ]);
    assert_eq!((vm.status.as_str(), vm.domain_type.as_deref()), ("down", Some("qemu")), "{vm:#?}");
    assert_eq!(disk_paths(&vm).len(), 1, "{vm:#?}");

    let t = Instant::now();
    let vm = sb.cli_json::<VmView>(&["vm", "start", VM, "--host", "host2"]);
    assert_eq!(vm.host.as_deref(), Some("host2"), "{vm:#?}");
    let up = sb.wait_status(VM, "up");
    assert_eq!(up.host.as_deref(), Some("host2"), "{up:#?}");
    lap("start -> up", t);
    sb.wait_console(VM, GUEST_UP);
    lap("start -> CORRAL-GUEST-UP", t);
    assert!(sb.domains("host2").contains(&(VM.into(), "running".into())), "{:?}", sb.domains("host2"));
}

/// The double-run monitor (which fault tests run all through) on the three hosts for 40 of
/// its rounds (about 2 s): it sees every host and g1 on host2 only, and no double run.
fn monitor_sees_one_host(sb: &Sandbox) {
    let g1 = sb.vm(VM).id;
    let monitor = sb.monitor();
    monitor.wait_rounds(40, WAIT);
    let report = monitor.stop();
    eprintln!("{report}");
    assert!(report.rounds > 0 && report.violations.is_empty(), "{report}");
    assert!(report.per_host_polls.iter().all(|h| h.polls > 0 && h.failures == 0), "{report}");
    let hosts: Vec<&str> = report.running_seen.get(&g1).into_iter().flatten().map(String::as_str).collect();
    assert_eq!(hosts, ["host2"], "{report}");
}

fn graceful_shutdown(sb: &Sandbox) {
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "shutdown", VM, "--reason", "kernel update", "--timeout", "60s"]);
    let down = sb.wait_status(VM, "down");
    lap("shutdown -> down", t);
    assert_eq!(down.stop_reason.as_deref(), Some("kernel update"), "{down:#?}");
    assert_eq!(down.host, None, "{down:#?}");
    // The guest itself powered off on the ACPI button: nobody pulled the plug.
    assert_eq!(sb.count(VM, GUEST_POWEROFF), 1, "console ends with: {}", tail(&sb.console(VM)));
    let events = sb.events();
    for want in [
        "VM g1 is shutting down (reason: kernel update) by admin.",
        "VM g1 is down on host host2 (reason: kernel update).",
    ] {
        assert!(events.iter().any(|m| m == want), "no event '{want}' in {events:#?}");
    }
}

fn power_cycle(sb: &Sandbox) {
    // Start without --host: the cluster places it.
    let boots = sb.count(VM, GUEST_UP);
    let t = Instant::now();
    let vm = sb.cli_json::<VmView>(&["vm", "start", VM]);
    let placed = vm.host.clone().unwrap_or_else(|| panic!("started on no host: {vm:#?}"));
    sb.wait_status(VM, "up");
    sb.wait_count(VM, GUEST_UP, boots + 1);
    lap(&format!("start (placed on {placed}) -> CORRAL-GUEST-UP"), t);

    // Power off at once: the guest gets no ACPI event, so it prints no poweroff marker.
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "stop", VM]);
    sb.wait_status(VM, "down");
    lap("stop -> down", t);
    assert_eq!(sb.count(VM, GUEST_POWEROFF), 1, "a stop is a power off, not an ACPI shutdown");

    sb.cli_json::<VmView>(&["vm", "start", VM]);
    sb.wait_status(VM, "up");
    sb.wait_count(VM, GUEST_UP, boots + 2);
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "reboot", VM]);
    sb.wait_count(VM, GUEST_UP, boots + 3);
    let up = sb.wait_status(VM, "up");
    lap("reboot -> CORRAL-GUEST-UP again", t);
    assert!(up.host.is_some(), "{up:#?}");

    sb.wait_ticks_above(VM, 0);
    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "suspend", VM]);
    sb.wait_status(VM, "suspended");
    lap("suspend -> suspended", t);
    let paused_at = sb.ticks(VM);
    let since = Instant::now();
    wait_until(WAIT, "3 s to pass with the guest paused", || {
        if since.elapsed() >= Duration::from_secs(3) {
            Ok(())
        } else {
            Err(format!("{:?} so far", since.elapsed()))
        }
    });
    assert_eq!(sb.ticks(VM), paused_at, "the guest ticked while suspended");

    let t = Instant::now();
    sb.cli_json::<VmView>(&["vm", "resume", VM]);
    sb.wait_status(VM, "up");
    let after = sb.wait_ticks_above(VM, paused_at.unwrap_or(0));
    lap(&format!("resume -> ticking again ({paused_at:?} -> {after})"), t);
}

fn live_migration(sb: &Sandbox) {
    let vm = sb.vm(VM);
    if !up_on(&vm, "host1") {
        if vm.status != "down" {
            sb.cli_json::<VmView>(&["vm", "shutdown", VM, "--timeout", "60s"]);
            sb.wait_status(VM, "down");
        }
        let boots = sb.count(VM, GUEST_UP);
        sb.cli_json::<VmView>(&["vm", "start", VM, "--host", "host1"]);
        assert_eq!(sb.wait_status(VM, "up").host.as_deref(), Some("host1"));
        sb.wait_count(VM, GUEST_UP, boots + 1);
    }
    let before = sb.wait_ticks_above(VM, 2);
    let boots = sb.count(VM, GUEST_UP);

    let t = Instant::now();
    let out = sb.corral(&["-o", "json", "vm", "migrate", VM, "--to", "host3", "--wait"]);
    lap("vm migrate --to host3 --wait", t);
    assert_eq!(out.code, 0, "vm migrate failed: {}", out.stderr.trim());
    // Through a pipe (the CLI's stderr here): plain lines, no carriage return; the start, any
    // percentages only going up, and the end with where the VM is.
    let said: Vec<&str> = out.stderr.lines().collect();
    assert!(!out.stderr.contains('\r'), "stderr: {:?}", out.stderr);
    assert_eq!(said.first(), Some(&"migrating g1 from host1 to host3"), "stderr: {}", out.stderr);
    assert!(said.last().is_some_and(|l| l.starts_with("g1 is up on host host3 (")), "stderr: {}", out.stderr);
    let percents: Vec<u32> =
        said.iter().filter_map(|l| l.strip_prefix("migrating g1: ")?.split('%').next()?.parse().ok()).collect();
    assert!(percents.windows(2).all(|w| w[0] < w[1]), "stderr: {}", out.stderr);
    let moved: VmView = out.view();
    assert_eq!((moved.status.as_str(), moved.host.as_deref()), ("up", Some("host3")), "{moved:#?}");
    assert_eq!(moved.migrating_to, None, "{moved:#?}");
    let shown = sb.vm(VM);
    assert_eq!((shown.status.as_str(), shown.host.as_deref()), ("up", Some("host3")), "{shown:#?}");

    // libvirt agrees: running on host3 only, and no longer defined on host1.
    assert!(sb.domains("host3").contains(&(VM.into(), "running".into())), "host3: {:?}", sb.domains("host3"));
    for h in ["host1", "host2"] {
        assert!(sb.domains(h).iter().all(|(name, _)| name != VM), "{h}: {:?}", sb.domains(h));
    }
    // The same boot goes on, now on host3 alone: it counts on from where it was, and there
    // is no new boot marker.
    let moved_at = sb.ticks(VM).unwrap_or(0);
    assert!(moved_at >= before, "ticks went back from {before} to {moved_at}");
    let after = sb.wait_ticks_above(VM, moved_at);
    assert_eq!(sb.count(VM, GUEST_UP), boots, "the guest rebooted during the migration");
    eprintln!("    ticks {before} before the migration, {moved_at} when it ended, then {after}");
}

fn failed_migration(sb: &Sandbox) {
    let vm = sb.vm(VM);
    assert_eq!(vm.status, "up", "{vm:#?}");
    let source = vm.host.clone().expect("g1 runs somewhere");
    assert_ne!(source, "host2");
    let (boots, before) = (sb.count(VM, GUEST_UP), sb.wait_ticks_above(VM, 0));

    // host2's corrald stays up and keeps its heartbeats; only its libvirtd is gone.
    sb.kill_libvirtd("host2");
    let t = Instant::now();
    let out = sb.corral(&["vm", "migrate", VM, "--to", "host2", "--wait"]);
    lap("vm migrate --to host2 --wait (libvirtd of host2 killed)", t);
    let after_fail = sb.vm(VM);
    let t = Instant::now();
    sb.restart_libvirtd("host2");
    lap("libvirtd of host2 restarted", t);

    assert_ne!(out.code, 0, "the migration to host2 succeeded: {}", out.stdout);
    // Progress lines (not a terminal: one per change) come first; the error is one line.
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "stderr: {}", out.stderr);
    let want = format!("error: migration of VM g1 failed; it keeps running on host {source}");
    assert!(errors[0].starts_with(&want), "expected '{want}...' in: {}", errors[0]);
    eprintln!("    {}", errors[0]);

    assert_eq!((after_fail.status.as_str(), after_fail.host.as_deref()), ("up", Some(source.as_str())));
    assert_eq!(after_fail.migrating_to, None, "{after_fail:#?}");
    assert!(sb.domains(&source).contains(&(VM.into(), "running".into())), "{source}: {:?}", sb.domains(&source));
    assert!(sb.domains("host2").iter().all(|(name, _)| name != VM), "host2: {:?}", sb.domains("host2"));
    let failed_at = sb.ticks(VM).unwrap_or(0);
    assert!(failed_at >= before, "ticks went back from {before} to {failed_at}");
    let after = sb.wait_ticks_above(VM, failed_at);
    assert_eq!(sb.count(VM, GUEST_UP), boots, "the guest rebooted");
    eprintln!("    ticks {before} before the failed migration, {failed_at} when it failed, then {after}");

    let prefix = format!("Migration of VM g1 failed; it keeps running on host {source}: ");
    let event = sb.wait_event(&prefix, |m| m.starts_with(&prefix));
    assert!(event.len() > prefix.len(), "the event carries libvirt's error: {event}");
    wait_until(WAIT, "host2 up again in `host list`", || {
        let hosts = sb.cli_json::<Vec<HostView>>(&["host", "list"]);
        match hosts.iter().find(|h| h.name == "host2") {
            Some(h2) if h2.state == "up" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // Last, so that everything above is checked whatever the cause: it failed because host2's
    // libvirtd was gone (libvirt names the address it could not reach), not for another reason.
    let host2_ip = host_of(&sb.host("host2").libvirt_uri);
    assert!(
        event.contains(&host2_ip),
        "the migration failed, but not for want of host2's libvirtd ({host2_ip}): {event}"
    );
}

/// `qemu+tcp://10.213.0.3/system` -> `10.213.0.3`.
fn host_of(uri: &str) -> String {
    uri.split("://").nth(1).and_then(|rest| rest.split(['/', ':']).next()).unwrap_or(uri).to_string()
}

fn clone_and_delete(sb: &Sandbox) {
    if sb.vm(VM).status != "down" {
        let t = Instant::now();
        sb.cli_json::<VmView>(&["vm", "shutdown", VM, "--timeout", "60s"]);
        sb.wait_status(VM, "down");
        lap("shutdown -> down", t);
    }
    let g1 = sb.vm(VM);
    let t = Instant::now();
    let g2 = sb.cli_json::<VmView>(&["vm", "clone", VM, "g2"]);
    lap("clone", t);
    assert_eq!(g2.name, "g2", "{g2:#?}");
    assert_ne!(g2.id, g1.id);
    let (p1, p2) = (disk_paths(&g1), disk_paths(&g2));
    assert_eq!((p1.len(), p2.len()), (1, 1), "g1: {p1:?}, g2: {p2:?}");
    assert!(p1.is_disjoint(&p2), "the clone has its own disk file: {p1:?} {p2:?}");
    for p in p1.iter().chain(&p2) {
        assert!(std::path::Path::new(p).is_file(), "{p} exists");
    }

    sb.must_ok(&["vm", "delete", "g2"]);
    for p in &p2 {
        assert!(!std::path::Path::new(p).exists(), "g2's disk {p} is removed with it");
    }
    sb.must_ok(&["vm", "delete", VM, "--keep-disks"]);
    let disks = sb.cli_json::<Vec<DiskView>>(&["disk", "list"]);
    let floating: BTreeSet<String> = disks.iter().filter(|d| d.vm.is_none()).map(|d| d.path.clone()).collect();
    assert_eq!(floating, p1, "g1's disk is a floating disk now: {disks:#?}");
    for p in &p1 {
        assert!(std::path::Path::new(p).is_file(), "kept disk {p} still exists");
    }
    assert_ne!(sb.corral(&["vm", "show", VM]).code, 0, "g1 is gone");
}

/// Starts, by hand on host1, a domain that carries the uuid of cluster VM s1 (which the
/// cluster runs on host3): host1's agent must stop it and say why, and s1 keeps running.
fn stray_domain(sb: &Sandbox) {
    let s1 = sb.cli_json::<VmView>(&["vm", "create", "s1", "--memory", "64M", "--start", "--host", "host3"]);
    sb.wait_status("s1", "up");
    let uuid = s1.id;
    let hosts = sb.cli_json::<Vec<HostView>>(&["host", "list"]);
    let host1 = hosts.iter().find(|h| h.name == "host1").expect("host1");
    let domain_type = host1.domain_type.clone();
    let xml = sb.storage_dir().join("stray.xml");
    // A hand-made definition, as an operator with virsh might leave behind.
    let definition = [
        "<domain type='",
        &domain_type,
        "'><name>s1-stray</name><uuid>",
        &uuid,
        "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>",
        "<os><type arch='x86_64'>hvm</type></os></domain>",
    ]
    .concat();
    std::fs::write(&xml, definition).expect("write the stray definition");
    let out = sb.virsh("host1", &["define", xml.to_str().unwrap()]);
    assert_eq!(out.code, 0, "virsh define: {}", out.stderr);
    let t = Instant::now();
    // The agent may stop the stray while `virsh start` is still starting it, which then
    // fails: the event below is what counts.
    let out = sb.virsh("host1", &["start", "s1-stray"]);
    if out.code != 0 {
        eprintln!("    virsh start: {}", out.stderr.trim());
    }
    let want = "VM s1 was running on host host1, which it is not assigned to; it was stopped there.";
    sb.wait_event("the stray to be stopped", |m| m == want);
    lap("stray started -> stopped by host1's agent", t);
    wait_until(Duration::from_secs(30), "the stray definition to be gone from host1", || {
        let d = sb.domains("host1");
        if d.iter().any(|(name, _)| name == "s1-stray") {
            Err(format!("{d:?}"))
        } else {
            Ok(())
        }
    });
    let s1 = sb.vm("s1");
    assert_eq!((s1.status.as_str(), s1.host.as_deref()), ("up", Some("host3")), "{s1:#?}");
    sb.cli_json::<VmView>(&["vm", "stop", "s1"]);
    sb.wait_status("s1", "down");
}

/// host2's libvirtd dies (its QEMUs and corrald stay): its VM is reported not_responding,
/// not guessed down; once libvirtd is back, the agent sees the guest still running: up.
fn libvirtd_gone(sb: &Sandbox) {
    sb.cli_json::<VmView>(&["vm", "create", "n1", "--memory", "64M", "--start", "--host", "host2"]);
    sb.wait_status("n1", "up");
    let t = Instant::now();
    sb.kill_libvirtd("host2");
    sb.wait_status("n1", "not_responding");
    lap("libvirtd killed -> not_responding", t);
    let t = Instant::now();
    sb.restart_libvirtd("host2");
    let n1 = sb.wait_status("n1", "up");
    lap("libvirtd restarted -> up", t);
    assert_eq!(n1.host.as_deref(), Some("host2"), "{n1:#?}");
    sb.cli_json::<VmView>(&["vm", "stop", "n1"]);
    sb.wait_status("n1", "down");
}

/// A small guest (the busybox one, under TCG) started on `host`; HA with `priority` if given.
fn guest(sb: &Sandbox, name: &str, priority: Option<&str>, host: &str) {
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    let mut args = vec![
        "vm", "create", name, "--memory", "96M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd, "--cmdline", "console=ttyS0 panic=-1",
        "--start", "--host", host,
    ];
    if let Some(p) = priority {
        args.extend(["--ha", "--ha-priority", p]);
    }
    sb.cli_json::<VmView>(&args);
    sb.wait_status(name, "up");
}

fn gone(sb: &Sandbox, names: &[&str]) {
    for name in names {
        let vm = sb.vm(name);
        if vm.status != "down" {
            sb.cli_json::<VmView>(&["vm", "stop", name]);
            sb.wait_status(name, "down");
        }
        sb.cli_json::<DeletedVmView>(&["vm", "delete", name]);
    }
}

fn host_state(sb: &Sandbox, host: &str) -> String {
    sb.cli_json::<HostView>(&["host", "show", host]).state
}

fn wait_host_state(sb: &Sandbox, host: &str, state: &str) {
    wait_until(WAIT, &format!("{host} {state}"), || match host_state(sb, host) {
        s if s == state => Ok(()),
        s => Err(s),
    });
}

/// Three guests on host1, one per priority; `host maintenance --wait` moves them all away
/// (they keep ticking) and host1 ends in maintenance; `host activate` brings it back.
fn maintenance(sb: &Sandbox) {
    let names = ["mlow", "mhigh", "mmed"];
    for (name, priority) in names.iter().zip(["low", "high", "medium"]) {
        guest(sb, name, Some(priority), "host1");
        sb.wait_console(name, GUEST_UP);
    }
    let t = Instant::now();
    let host = sb.cli_json::<HostView>(&["host", "maintenance", "host1", "--reason", "sandbox test", "--wait"]);
    lap("maintenance of host1 with 3 guests", t);
    assert_eq!(host.state, "maintenance", "{host:#?}");
    for name in names {
        let vm = sb.vm(name);
        assert_eq!(vm.status, "up", "{vm:#?}");
        assert_ne!(vm.host.as_deref(), Some("host1"), "{vm:#?}");
        let before = sb.ticks(name).unwrap_or(0);
        sb.wait_ticks_above(name, before);
    }
    let events = sb.events();
    let order: Vec<&str> = events
        .iter()
        .filter(|m| m.ends_with("to evacuate its host for maintenance by admin."))
        .filter_map(|m| m.split(' ').nth(3))
        .collect();
    assert_eq!(order, ["mhigh", "mmed", "mlow"], "{events:#?}");
    assert!(sb.domains("host1").iter().all(|(name, _)| !names.contains(&name.as_str())), "{:?}", sb.domains("host1"));
    let host = sb.cli_json::<HostView>(&["host", "activate", "host1"]);
    assert_eq!(host.state, "up", "{host:#?}");
    gone(sb, &names);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    PowerLoss,
    KillCorrald,
    StopCorrald,
    Partition,
    /// The leader's own host cut off: the majority elects another leader, which knows no
    /// heartbeat times and waits a full lease (+ margin) before declaring anyone down.
    PartitionLeader,
}

/// One fault on a host that runs an HA guest and a guest that is not HA, with the double-run
/// monitor polling every host's libvirt (through its unix socket) all through: the HA guest is
/// up elsewhere, the other one down, the host down; after recovery the host is up again and
/// the monitor never saw a guest running on two hosts.
fn fault(sb: &Sandbox, tag: &str, fault: Fault) {
    let host = if fault == Fault::PartitionLeader { sb.leader_name() } else { sb.victim() };
    let (ha, plain) = (format!("ha-{tag}"), format!("plain-{tag}"));
    guest(sb, &ha, Some("high"), &host);
    guest(sb, &plain, None, &host);
    let monitor = sb.monitor();
    monitor.wait_rounds(5, WAIT);
    let t = Instant::now();
    let fault_ms = chrono::Utc::now().timestamp_millis();
    match fault {
        Fault::PowerLoss => sb.power_off(&host),
        Fault::KillCorrald => sb.kill_corrald(&host),
        Fault::StopCorrald => sb.stop_corrald(&host),
        Fault::Partition | Fault::PartitionLeader => sb.partition(&host),
    }
    let moved = sb.wait_vm(&ha, "up on another host", |v| up_off(v, &host));
    lap(&format!("{fault:?} of {host} -> {ha} up on {}", moved.host.as_deref().unwrap_or_default()), t);
    timeline(sb, fault_ms);
    assert_eq!(host_state(sb, &host), "down");
    let plain_vm = sb.wait_status(&plain, "down");
    assert!(plain_vm.ha_restart.is_none(), "{plain_vm:#?}");
    match fault {
        Fault::PowerLoss => {}
        Fault::KillCorrald | Fault::StopCorrald => {
            assert!(sb.watchdog_fired(&host), "the watchdog powered {host} off: {}", sb.watchdog_log(&host));
        }
        Fault::Partition | Fault::PartitionLeader => {
            // Cut off but alive: it stopped its guests itself, before its lease ended.
            assert!(!sb.watchdog_fired(&host), "{}", sb.watchdog_log(&host));
            let running: Vec<_> = sb.domains_local(&host).into_iter().filter(|(_, s)| s == "running").collect();
            assert!(running.is_empty(), "{host} still runs {running:?}");
        }
    }
    let t = Instant::now();
    match fault {
        Fault::Partition | Fault::PartitionLeader => sb.heal(&host),
        Fault::StopCorrald => {
            sb.cont_corrald(&host);
            sb.power_on(&host);
        }
        _ => sb.power_on(&host),
    }
    wait_host_state(sb, &host, "up");
    lap(&format!("{host} back -> up"), t);
    if matches!(fault, Fault::Partition | Fault::PartitionLeader) {
        sb.wait_event("the healed host says it fenced itself", |m| {
            m.starts_with(&format!("Host {host} answers again")) && m.contains("stopped its VMs itself at ")
        });
    }
    let again = sb.vm(&ha);
    assert_eq!((again.status, again.host), (moved.status, moved.host));
    let report = monitor.stop();
    eprintln!("{report}");
    assert!(report.violations.is_empty(), "a guest ran on two hosts at once: {report}");
    assert!(report.rounds > 0, "{report}");
    if matches!(fault, Fault::Partition | Fault::PartitionLeader) {
        // A cut-off host stays in view (its libvirt through the unix socket): the monitor
        // really watched it all through, not just the other hosts.
        let seen = report.per_host_polls.iter().find(|h| h.host == host).expect("the victim is polled");
        assert!(seen.longest_gap < Duration::from_secs(1), "{host} went unwatched: {report}");
    }
    gone(sb, &[&ha, &plain]);
}

/// SIGKILL to the QEMU of an HA guest and of a guest that is not HA, on a host that lives on;
/// and an HA guest that shuts itself down cleanly (ACPI sent behind Corral's back, with virsh):
/// oVirt's rule, only the one that died is restarted.
fn qemu_dies(sb: &Sandbox) {
    guest(sb, "qha", Some("medium"), "host2");
    guest(sb, "qplain", None, "host2");
    guest(sb, "qclean", Some("high"), "host2");
    sb.wait_console("qclean", GUEST_UP);
    let t = Instant::now();
    sb.kill_qemu("host2", "qha");
    sb.kill_qemu("host2", "qplain");
    sb.wait_event("HA notices", |m| m == "Highly Available VM qha failed. It will be restarted automatically.");
    let restarted = sb.wait_event("the restart", |m| m.starts_with("VM qha was restarted on host"));
    lap(&format!("QEMU killed -> {restarted}"), t);
    assert_eq!(sb.vm("qha").status, "up");
    let plain = sb.wait_status("qplain", "down");
    assert!(plain.ha_restart.is_none(), "{plain:#?}");
    let why = plain.stop_reason.unwrap_or_default();
    assert!(why.contains("QEMU process ended"), "{why}");

    let out = sb.virsh("host2", &["shutdown", "qclean"]);
    assert_eq!(out.code, 0, "virsh shutdown: {}", out.stderr);
    let clean = sb.wait_status("qclean", "down");
    assert_eq!(clean.stop_reason.as_deref(), Some("it was shut down from inside the guest"), "{clean:#?}");
    assert!(clean.ha_restart.is_none(), "a clean shutdown from inside is on purpose: {clean:#?}");
    assert!(!sb.events().iter().any(|m| m.starts_with("Highly Available VM qclean failed")));
    gone(sb, &["qha", "qplain", "qclean"]);
}

/// A guest whose migrations are held to 1 MiB/s: `vm show` reports the running migration's
/// progress, `vm migrate-cancel` aborts it (libvirt's job abort), and the guest keeps running
/// and ticking on its source.
fn cancel_migration(sb: &Sandbox) {
    guest(sb, "slow", None, "host1");
    sb.wait_console("slow", GUEST_UP);
    sb.cli_json::<VmView>(&["vm", "edit", "slow", "--bandwidth", "1"]);
    sb.cli_json::<VmView>(&["vm", "migrate", "slow", "--to", "host3"]);
    let moving = sb
        .wait_vm("slow", "migration progress reported", |v| v.migration.as_ref().is_some_and(|m| m.progress.is_some()));
    let p = moving.migration.as_ref().and_then(|m| m.progress.as_ref()).expect("progress, waited for above");
    assert!(p.memory_total_mib > 0, "{moving:#?}");
    eprintln!("    progress: {}% of {} MiB, {} MiB left", p.percent, p.memory_total_mib, p.memory_remaining_mib);
    let t = Instant::now();
    let cancelling = sb.cli_json::<VmView>(&["vm", "migrate-cancel", "slow"]);
    assert!(cancelling.migration.as_ref().is_some_and(|m| m.cancelling), "{cancelling:#?}");
    let back = sb.wait_vm("slow", "migration over", |v| v.status == "up" && v.migration.is_none());
    lap("migrate-cancel -> up on its source", t);
    assert_eq!(back.host.as_deref(), Some("host1"), "{back:#?}");
    sb.wait_event("the cancel", |m| m == "Migration of VM slow was cancelled; it keeps running on host host1.");
    let before = sb.ticks("slow").unwrap_or(0);
    sb.wait_ticks_above("slow", before);
    gone(sb, &["slow"]);
}

/// The events since `since_ms`, each with its time after it, for the test's log.
fn timeline(sb: &Sandbox, since_ms: i64) {
    for line in sb.must_ok(&["-o", "json", "events"]).lines() {
        let Ok(e) = serde_json::from_str::<EventView>(line) else { continue };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&e.time) else { continue };
        let after = t.timestamp_millis() - since_ms;
        if after >= 0 {
            eprintln!("      +{:.2} s  {}", after as f64 / 1000.0, e.message);
        }
    }
}

fn disk_paths(vm: &VmView) -> BTreeSet<String> {
    vm.disks.iter().map(|d| d.path.clone()).collect()
}

fn lap(what: &str, since: Instant) {
    eprintln!("    {what}: {:.2} s", since.elapsed().as_secs_f64());
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Runs the test's steps in order, each to its end or its first failed assertion, and fails
/// the test at the end naming the steps that failed.
#[derive(Default)]
struct Steps {
    done: Vec<(String, Duration, Option<String>)>,
}

impl Steps {
    fn run(&mut self, name: &str, step: impl FnOnce()) {
        // CORRAL_SANDBOX_ONLY=q,r runs only the steps with those letters (while working on them).
        if let Ok(only) = std::env::var("CORRAL_SANDBOX_ONLY") {
            let letter = name.split('.').next().unwrap_or_default();
            if !only.split(',').any(|l| l.trim() == letter) {
                return;
            }
        }
        eprintln!("--- step {name}");
        let t = Instant::now();
        let failure = catch_unwind(AssertUnwindSafe(step)).err().map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into())
        });
        let verdict = if failure.is_some() { "FAILED" } else { "ok" };
        eprintln!("--- step {name}: {verdict} in {:.1} s", t.elapsed().as_secs_f64());
        self.done.push((name.to_string(), t.elapsed(), failure));
    }

    fn finish(self) {
        eprintln!("--- summary");
        for (name, took, failure) in &self.done {
            let verdict = if failure.is_some() { "FAILED" } else { "ok" };
            eprintln!("    {verdict:6} {:6.1} s  {name}", took.as_secs_f64());
        }
        let failed: Vec<String> =
            self.done.iter().filter_map(|(name, _, f)| f.as_ref().map(|f| format!("step {name}: {f}"))).collect();
        assert!(failed.is_empty(), "{} step(s) failed:\n{}", failed.len(), failed.join("\n"));
    }
}
