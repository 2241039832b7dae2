//! corral-vm-bench: figures for real VMs on the sandbox hosts (deploy/sandbox, needs root):
//! how long `vm start` takes to reach `up`, how Corral's live migration compares with a
//! plain `virsh migrate` of a same-sized domain on the same hosts, how long an HA VM takes to
//! be up elsewhere after its host loses power (split into detection, fence wait, placement and
//! start, from the event log's times), and how long maintenance takes to evacuate a host of 10
//! running guests, and how long a hot-plug takes to reach the guest (the busybox guest's own
//! report of what it sees: a disk, memory, a vCPU) and a scale-up that migrates first, and
//! snapshots of a 256 MiB guest with a 1 GiB disk holding 256 MiB (taken with and without its
//! memory, restored, deleted while it runs), and VMs made from a template with a 1 GiB base
//! (thin overlays against full copies, `vm create --start` to up). It prints
//! medians and ratios and asserts nothing about them; every loop is bounded in count and in time.
//!
//!   corral-vm-bench [--only start|migrate|failover|evacuate|hotplug|snapshot|template] [--starts N] [--rounds N] [--failovers N]
//!                   [--guests N] [--corrald "FLAGS"]   (FLAGS: extra corrald flags on every host)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_cli::views::{ClusterSettingsView, EventView, HostView, VmView};
use corral_tests::sandbox::{Sandbox, WAIT};
use corral_tests::wait_until;

/// How often the start benchmark asks whether the VM is up.
const POLL: Duration = Duration::from_millis(50);

struct Opts {
    only: Option<String>,
    starts: usize,
    rounds: usize,
    failovers: usize,
    guests: usize,
    /// Extra corrald flags for every host (lease timers, to compare settings).
    corrald: Option<String>,
}

fn parse_args() -> Opts {
    let mut o = Opts { only: None, starts: 10, rounds: 5, failovers: 10, guests: 10, corrald: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--only" => o.only = Some(value("--only")),
            "--starts" => o.starts = value("--starts").parse().expect("--starts: a number"),
            "--rounds" => o.rounds = value("--rounds").parse().expect("--rounds: a number"),
            "--failovers" => o.failovers = value("--failovers").parse().expect("--failovers: a number"),
            "--guests" => o.guests = value("--guests").parse().expect("--guests: a number"),
            "--corrald" => o.corrald = Some(value("--corrald")),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn main() {
    let opts = parse_args();
    let wants = |what: &str| opts.only.as_deref().is_none_or(|o| o == what);
    let t = Instant::now();
    let options = corral_tests::sandbox::SandboxOptions {
        host_args: opts.corrald.iter().flat_map(|a| std::iter::repeat_n(a.clone(), 3)).collect(),
        ..Default::default()
    };
    if let Some(a) = &opts.corrald {
        println!("corral-vm-bench: every host's corrald runs with {a}");
    }
    let Some(sb) = Sandbox::up_with(3, &options) else {
        eprintln!("corral-vm-bench: the sandbox hosts need root; nothing measured");
        std::process::exit(2);
    };
    // Diskless SeaBIOS-only guests run under KVM here; without /dev/kvm they fall back to TCG.
    let domain_type = if std::path::Path::new("/dev/kvm").exists() { "kvm" } else { "qemu" };
    println!(
        "corral-vm-bench: 3 sandbox hosts (namespaced libvirtd + corrald), diskless {domain_type} guests; \
         sandbox up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if wants("start") {
        start_latency(&sb, domain_type, opts.starts);
    }
    if wants("migrate") {
        migration(&sb, domain_type, opts.rounds);
    }
    if wants("failover") {
        failover(&sb, domain_type, opts.failovers);
    }
    if wants("evacuate") {
        evacuation(&sb, domain_type, opts.guests);
    }
    if wants("hotplug") {
        hotplug(&sb, opts.rounds.max(10));
    }
    if wants("snapshot") {
        snapshots(&sb, opts.rounds);
    }
    if wants("template") {
        templates(&sb, opts.starts);
    }
}

/// A template whose one base is a 1 GiB qcow2 image holding 1 GiB of data (written with
/// qemu-io into the source VM's disk, then copied by `template create`); `runs` times each,
/// `vm create --template T --thin --start` and then `--clone --start` (a busybox guest, TCG,
/// 128 MiB): from the command to `vm show` saying up (polled every 50 ms, as the start
/// benchmark does) and to the guest's CORRAL-GUEST-UP; each VM is deleted before the next.
fn templates(sb: &Sandbox, runs: usize) {
    const SRC: &str = "bench-tpl-src";
    const TPL: &str = "bench-tpl";
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    let vm = sb.cli_json::<VmView>(&[
        "vm", "create", SRC, "--memory", "128M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd, "--cmdline", "console=ttyS0 panic=-1", "--disk", "1G",
    ]);
    let disk = &vm.disks[0].path;
    let t = Instant::now();
    let filled = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 7 0 1G", disk])
        .stdout(Stdio::null())
        .status()
        .expect("qemu-io");
    assert!(filled.success(), "qemu-io could not write 1 GiB into {disk}");
    println!("template: 1 GiB written into the source disk in {}", ms(t.elapsed()));
    let t = Instant::now();
    sb.must_ok(&["template", "create", TPL, "--from-vm", SRC]);
    println!("template: template create (copies the 1 GiB disk into a base) took {}", ms(t.elapsed()));
    let shown = sb.must_ok(&["-o", "json", "template", "show", TPL]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("template show JSON");
    for base in shown["disks"].as_array().into_iter().flatten().filter_map(|d| d.as_str()) {
        use std::os::unix::fs::MetadataExt;
        let path = sb.storage_dir().join(base);
        let allocated = std::fs::metadata(&path).map(|m| m.blocks() * 512).unwrap_or(0);
        println!("template: base {} holds {} MiB on disk", path.display(), allocated >> 20);
    }
    let up_marker = corral_tests::sandbox::GUEST_UP;
    let mut results = Vec::new();
    for mode in ["--thin", "--clone"] {
        let (mut to_up, mut to_guest) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let name = format!("bench-tpl{}-{i}", &mode[2..]);
            let t = Instant::now();
            sb.cli_json::<VmView>(&["vm", "create", &name, "--template", TPL, mode, "--start"]);
            let mut next = t;
            loop {
                let vm = sb.vm(&name);
                if vm.status == "up" {
                    to_up.push(t.elapsed());
                    break;
                }
                assert!(t.elapsed() < WAIT, "{name} not up after {WAIT:?}: {vm:?}");
                next += POLL;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            sb.wait_console(&name, up_marker);
            to_guest.push(t.elapsed());
            sb.must_ok(&["vm", "stop", &name]);
            sb.wait_status(&name, "down");
            sb.must_ok(&["vm", "delete", &name]);
        }
        to_up.sort();
        to_guest.sort();
        println!(
            "template: vm create {mode} --start -> up ({runs} runs, 1 GiB base): median {}, max {}; \
             -> CORRAL-GUEST-UP median {}, max {}",
            ms(median(&to_up)),
            ms(*to_up.last().unwrap_or(&Duration::ZERO)),
            ms(median(&to_guest)),
            ms(*to_guest.last().unwrap_or(&Duration::ZERO)),
        );
        results.push((median(&to_up), median(&to_guest)));
    }
    sb.must_ok(&["template", "delete", TPL]);
    sb.must_ok(&["vm", "delete", SRC]);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON);
    println!(
        "template: ratio clone/thin of the medians: to up {:.2}, to CORRAL-GUEST-UP {:.2}",
        ratio(results[1].0, results[0].0),
        ratio(results[1].1, results[0].1),
    );
}

/// Snapshots of the busybox guest (TCG, 256 MiB) with a 1 GiB disk holding 256 MiB written
/// before it boots; the guest writes its tick to the disk every second. Each round: a snapshot
/// of the disk and one with memory taken while it runs (command to done); the VM stopped and
/// the disk snapshot restored (the command, then start to the guest's boot); the memory one
/// restored (command to the guest's next tick, resumed without a boot); both deleted while it
/// runs (`--wait`, command to gone).
fn snapshots(sb: &Sandbox, rounds: usize) {
    const VM: &str = "bench-sn";
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    let vm = sb.cli_json::<VmView>(&[
        "vm", "create", VM, "--memory", "256M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd,
        "--cmdline", "console=ttyS0 panic=-1 possible_cpus=16 corral.tickdisk=vda", "--disk", "1G",
    ]);
    let filled = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 7 1M 256M", &vm.disks[0].path])
        .stdout(Stdio::null())
        .status()
        .expect("qemu-io");
    assert!(filled.success(), "qemu-io could not write 256 MiB into the disk");
    let up = corral_tests::sandbox::GUEST_UP;
    let id_of = |out: &str| out.trim().lines().last().unwrap().split_whitespace().last().unwrap().to_string();
    let ticked_since = |from: usize| sb.console(VM).get(from..).is_some_and(|s| s.contains("CORRAL-TICK "));
    sb.must_ok(&["vm", "start", VM, "--host", "host1"]);
    sb.wait_status(VM, "up");
    sb.wait_console(VM, up);
    sb.wait_ticks_above(VM, 2);
    let (mut take_disk, mut take_mem, mut restore_disk, mut boot_after, mut restore_mem, mut del_disk, mut del_mem) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut memory_mib = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let d = id_of(&sb.must_ok(&["vm", "snapshot", "create", VM]));
        take_disk.push(t.elapsed());
        let t = Instant::now();
        let m = id_of(&sb.must_ok(&["vm", "snapshot", "create", VM, "--memory"]));
        take_mem.push(t.elapsed());
        let listed: Vec<corral_cli::views::SnapshotView> = sb.cli_json(&["vm", "snapshot", "list", VM]);
        memory_mib = listed.iter().find(|s| s.id == m).map_or(0, |s| s.memory_mib);

        sb.must_ok(&["vm", "stop", VM]);
        sb.wait_status(VM, "down");
        let t = Instant::now();
        sb.must_ok(&["vm", "snapshot", "restore", VM, &d]);
        restore_disk.push(t.elapsed());
        let boots = sb.count(VM, up);
        let t = Instant::now();
        sb.must_ok(&["vm", "start", VM]);
        sb.wait_count(VM, up, boots + 1);
        boot_after.push(t.elapsed());
        sb.must_ok(&["vm", "stop", VM]);
        sb.wait_status(VM, "down");

        let from = sb.console(VM).len();
        let t = Instant::now();
        sb.must_ok(&["vm", "snapshot", "restore", VM, &m]);
        wait_until(WAIT, "a tick after the memory restore", || {
            if ticked_since(from) {
                Ok(())
            } else {
                Err("no tick yet".to_string())
            }
        });
        restore_mem.push(t.elapsed());
        assert_eq!(sb.count(VM, up), boots + 1, "the memory restore booted the guest");

        let t = Instant::now();
        sb.must_ok(&["vm", "snapshot", "delete", VM, &d, "--wait"]);
        del_disk.push(t.elapsed());
        let t = Instant::now();
        sb.must_ok(&["vm", "snapshot", "delete", VM, &m, "--wait"]);
        del_mem.push(t.elapsed());
    }
    sb.must_ok(&["vm", "stop", VM]);
    sb.wait_status(VM, "down");
    sb.must_ok(&["vm", "delete", VM]);
    println!("snapshot: the guest's saved memory is {memory_mib} MiB (256 MiB guest)");
    for (what, mut took) in [
        ("create, disk only, VM up (256 MiB of 1 GiB written)", take_disk),
        ("create with memory, VM up", take_mem),
        ("restore the disk snapshot (VM down): the command", restore_disk),
        ("  then vm start -> CORRAL-GUEST-UP (a boot)", boot_after),
        ("restore the memory snapshot: command -> the guest ticks again (no boot)", restore_mem),
        ("live delete of the disk snapshot (256 MiB it holds), --wait", del_disk),
        ("live delete of the memory snapshot, --wait", del_mem),
    ] {
        took.sort();
        println!(
            "snapshot: {what} ({} runs): median {}, max {}",
            took.len(),
            ms(median(&took)),
            ms(*took.last().unwrap_or(&Duration::ZERO))
        );
    }
}

/// The busybox guest (TCG) with hot-plug room; from each command to the guest's report of the
/// change: a disk plugged and unplugged, 128 MiB of memory added and removed, a vCPU added (one
/// per boot: vCPUs are removed at the next run), `rounds` times each; and a vCPU more than its
/// host can give (CPU overcommit 1, a second guest filling the host): migrated, then scaled, end
/// to end, 5 times.
fn hotplug(sb: &Sandbox, rounds: usize) {
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    #[rustfmt::skip]
    sb.cli_json::<VmView>(&[
        "vm", "create", "bench-hp", "--memory", "256M", "--vcpus", "1", "--max-vcpus", "2", "--max-memory", "1G",
        "--domain-type", "qemu", "--kernel", &kernel, "--initrd", &initrd,
        "--cmdline", "console=ttyS0 panic=-1 memhp_default_state=online_movable possible_cpus=16", "--disk", "64M",
    ]);
    sb.must_ok(&["disk", "create", "bench-hp-d", "--size", "16M"]);
    sb.must_ok(&["vm", "disk", "attach", "bench-hp", "bench-hp-d", "--unplugged"]);
    let boot = |host: &str| {
        let boots = sb.count("bench-hp", corral_tests::sandbox::GUEST_UP);
        sb.cli_json::<VmView>(&["vm", "start", "bench-hp", "--host", host]);
        sb.wait_status("bench-hp", "up");
        sb.wait_count("bench-hp", corral_tests::sandbox::GUEST_UP, boots + 1);
        sb.wait_sees("bench-hp", "its first report", |s| !s.disks.is_empty()).0
    };
    let stop = || {
        sb.must_ok(&["vm", "stop", "bench-hp"]);
        sb.wait_status("bench-hp", "down");
    };
    let first = boot("host1");
    let (mut plug, mut unplug, mut mem_up, mut mem_down) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        sb.must_ok(&["vm", "disk", "plug", "bench-hp", "bench-hp-d"]);
        sb.wait_sees("bench-hp", "vdb", |s| s.disks.len() == 2);
        plug.push(t.elapsed());
        let t = Instant::now();
        sb.must_ok(&["vm", "disk", "unplug", "bench-hp", "bench-hp-d"]);
        sb.wait_sees("bench-hp", "no vdb", |s| s.disks.len() == 1);
        unplug.push(t.elapsed());
        let t = Instant::now();
        sb.must_ok(&["vm", "edit", "bench-hp", "--memory", "384M"]);
        sb.wait_sees("bench-hp", "+128 MiB", |s| s.mem_mib >= first.mem_mib + 120);
        mem_up.push(t.elapsed());
        let t = Instant::now();
        sb.must_ok(&["vm", "edit", "bench-hp", "--memory", "256M"]);
        sb.wait_sees("bench-hp", "-128 MiB", |s| s.mem_mib < first.mem_mib + 60);
        mem_down.push(t.elapsed());
    }
    let mut cpu_up = vec![];
    // One vCPU added per boot (vCPUs are removed at the next run).
    for i in 0..rounds {
        if i > 0 {
            stop();
            boot("host1");
        }
        let t = Instant::now();
        sb.must_ok(&["vm", "edit", "bench-hp", "--vcpus", "2"]);
        sb.wait_sees("bench-hp", "2 CPUs", |s| s.cpus == 2);
        cpu_up.push(t.elapsed());
        sb.must_ok(&["vm", "edit", "bench-hp", "--vcpus", "1", "--next-run"]);
    }
    stop();
    // Scale-up that must migrate: host1 full at CPU overcommit 1.
    sb.must_ok(&["cluster", "edit", "--cpu-overcommit", "1"]);
    #[rustfmt::skip]
    sb.cli_json::<VmView>(&[
        "vm", "create", "bench-fill", "--memory", "64M", "--vcpus", "1", "--domain-type", "qemu",
        "--kernel", &kernel, "--initrd", &initrd, "--cmdline", "console=ttyS0 panic=-1", "--start", "--host", "host1",
    ]);
    sb.wait_status("bench-fill", "up");
    let mut scale = vec![];
    for _ in 0..rounds.min(5) {
        boot("host1");
        let t = Instant::now();
        let out = sb.must_ok(&["vm", "edit", "bench-hp", "--vcpus", "2"]);
        assert!(out.contains("is live-migrated to host"), "{out}");
        sb.wait_vm("bench-hp", "moved and scaled", |v| v.host.as_deref() != Some("host1") && v.vcpus == 2);
        sb.wait_sees("bench-hp", "2 CPUs", |s| s.cpus == 2);
        scale.push(t.elapsed());
        sb.must_ok(&["vm", "edit", "bench-hp", "--vcpus", "1", "--next-run"]);
        stop();
    }
    for vm in ["bench-fill", "bench-hp"] {
        if sb.vm(vm).status != "down" {
            sb.must_ok(&["vm", "stop", vm]);
            sb.wait_status(vm, "down");
        }
        sb.must_ok(&["vm", "delete", vm]);
    }
    sb.must_ok(&["cluster", "edit", "--cpu-overcommit", "4"]);
    for (what, mut took) in [
        ("vm disk plug -> the guest sees the disk", plug),
        ("vm disk unplug -> gone in the guest", unplug),
        ("vm edit --memory +128 MiB -> the guest's MemTotal", mem_up),
        ("vm edit --memory -128 MiB -> the guest's MemTotal", mem_down),
        ("vm edit --vcpus +1 -> the guest's online CPUs", cpu_up),
        ("vm edit --vcpus +1 on a full host -> migrated and 2 CPUs in the guest", scale),
    ] {
        took.sort();
        println!(
            "hot-plug: {what} ({} runs, TCG guest, polled console): median {}, max {}",
            took.len(),
            ms(median(&took)),
            ms(*took.last().unwrap_or(&Duration::ZERO))
        );
    }
}

/// Event times (Unix ms, the leader's clock, which is this machine's) of the first event at
/// or after `since_ms` whose message starts with each prefix.
fn event_times(sb: &Sandbox, since_ms: i64, prefixes: &[String]) -> Vec<Option<i64>> {
    let events: Vec<(i64, String)> = sb
        .must_ok(&["-o", "json", "events"])
        .lines()
        .filter_map(|l| serde_json::from_str::<EventView>(l).ok())
        .filter_map(|e| {
            let t = chrono::DateTime::parse_from_rfc3339(&e.time).ok()?.timestamp_millis();
            Some((t, e.message))
        })
        .collect();
    prefixes
        .iter()
        .map(|p| events.iter().find(|(t, m)| *t >= since_ms && m.starts_with(p.as_str())).map(|(t, _)| *t))
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Power loss (kill.sh) of the host running an HA guest, `runs` times: from the kill to the
/// guest up on another host, with default settings (heartbeat 500 ms, lease 3 s, margin 1 s).
fn failover(sb: &Sandbox, domain_type: &str, runs: usize) {
    let victim = sb.victim();
    let victim = victim.as_str();
    #[rustfmt::skip]
    sb.cli_json::<VmView>(&["vm", "create", "bench-ha", "--memory", "64M", "--vcpus", "1", "--domain-type", domain_type,
                   "--ha", "--ha-priority", "high"]);
    let (mut total, mut detect, mut fence, mut place, mut start) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        sb.cli_json::<VmView>(&["vm", "start", "bench-ha", "--host", victim]);
        sb.wait_status("bench-ha", "up");
        let killed_ms = now_ms();
        let t = Instant::now();
        sb.kill(victim);
        let mut next = t;
        loop {
            let vm = sb.vm("bench-ha");
            if vm.status == "up" && vm.host.as_deref() != Some(victim) {
                break;
            }
            assert!(t.elapsed() < WAIT, "bench-ha not up elsewhere after {WAIT:?}: {vm:?}");
            next += POLL;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let seen = t.elapsed();
        let prefixes = [
            format!("Host {victim} is not responding"),
            format!("Host {victim} is down:"),
            "VM bench-ha is being restarted on host".to_string(),
            "VM bench-ha was restarted on host".to_string(),
        ];
        let times = event_times(sb, killed_ms, &prefixes);
        let [Some(nr), Some(down), Some(ordered), Some(up)] = times[..] else {
            panic!("run {}: not every failover event was found: {times:?}", run + 1);
        };
        let d = |a: i64, b: i64| Duration::from_millis((b - a).max(0) as u64);
        println!(
            "  run {:2}: detection {}, fence wait {}, placement {}, start {} = {} (seen by polling {})",
            run + 1,
            ms(d(killed_ms, nr)),
            ms(d(nr, down)),
            ms(d(down, ordered)),
            ms(d(ordered, up)),
            ms(d(killed_ms, up)),
            ms(seen)
        );
        detect.push(d(killed_ms, nr));
        fence.push(d(nr, down));
        place.push(d(down, ordered));
        start.push(d(ordered, up));
        total.push(d(killed_ms, up));
        sb.start(victim);
        wait_until(WAIT, &format!("{victim} up again"), || {
            let h = sb.cli_json::<HostView>(&["host", "show", victim]);
            if h.state == "up" {
                Ok(())
            } else {
                Err(h.state)
            }
        });
        sb.cli_json::<VmView>(&["vm", "stop", "bench-ha"]);
        sb.wait_status("bench-ha", "down");
    }
    sb.must_ok(&["vm", "delete", "bench-ha"]);
    for v in [&mut total, &mut detect, &mut fence, &mut place, &mut start] {
        v.sort();
    }
    let worst = |v: &[Duration]| *v.last().unwrap_or(&Duration::ZERO);
    println!(
        "HA failover, power loss of the guest's host, {runs} runs: median {} (worst {}); medians of the parts: \
         detection {}, fence wait {}, placement {}, start {}",
        ms(median(&total)),
        ms(worst(&total)),
        ms(median(&detect)),
        ms(median(&fence)),
        ms(median(&place)),
        ms(median(&start)),
    );
}

/// `host maintenance host1 --wait` with `guests` running guests on host1, then `host activate
/// host1`; once with the default of 2 migrations at a time per host, once with 4.
fn evacuation(sb: &Sandbox, domain_type: &str, guests: usize) {
    // Sandbox hosts have 2 CPUs each: room for the guests' vCPUs.
    sb.cli_json::<ClusterSettingsView>(&["cluster", "edit", "--cpu-overcommit", "16"]);
    let names: Vec<String> = (0..guests).map(|i| format!("bench-ev{i}")).collect();
    let priorities = ["low", "medium", "high"];
    for (i, name) in names.iter().enumerate() {
        #[rustfmt::skip]
        sb.cli_json::<VmView>(&["vm", "create", name, "--memory", "64M", "--vcpus", "1", "--domain-type", domain_type,
                       "--ha", "--ha-priority", priorities[i % 3]]);
    }
    for per_host in [2u32, 4] {
        sb.cli_json::<ClusterSettingsView>(&["cluster", "edit", "--migrations-per-host", &per_host.to_string()]);
        for name in &names {
            sb.cli_json::<VmView>(&["vm", "start", name, "--host", "host1"]);
        }
        for name in &names {
            sb.wait_status(name, "up");
        }
        let t = Instant::now();
        let host = sb.cli_json::<HostView>(&["host", "maintenance", "host1", "--wait"]);
        let took = t.elapsed();
        assert_eq!(host.state, "maintenance", "{host:?}");
        let mut on = std::collections::BTreeMap::<String, usize>::new();
        for name in &names {
            *on.entry(sb.vm(name).host.unwrap_or_else(|| "?".into())).or_default() += 1;
        }
        println!(
            "maintenance evacuation of host1 with {guests} running 64 MiB guests, {per_host} migrations at a time: \
             {} in all, {} per guest; they went to {on:?}",
            ms(took),
            ms(took / guests.max(1) as u32)
        );
        sb.cli_json::<HostView>(&["host", "activate", "host1"]);
        for name in &names {
            sb.cli_json::<VmView>(&["vm", "stop", name]);
        }
        for name in &names {
            sb.wait_status(name, "down");
        }
    }
    for name in &names {
        sb.must_ok(&["vm", "delete", name]);
    }
}

/// `vm start` until `vm show` says up, for a diskless 128 MiB VM, stopped between runs.
fn start_latency(sb: &Sandbox, domain_type: &str, runs: usize) {
    sb.cli_json::<VmView>(&[
        "vm",
        "create",
        "bench-start",
        "--memory",
        "128M",
        "--vcpus",
        "1",
        "--domain-type",
        domain_type,
    ]);
    let mut took = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        sb.cli_json::<VmView>(&["vm", "start", "bench-start"]);
        let mut next = t;
        loop {
            let vm = sb.vm("bench-start");
            if vm.status == "up" {
                took.push(t.elapsed());
                hosts.push(vm.host.unwrap_or_else(|| "?".into()));
                break;
            }
            assert!(t.elapsed() < WAIT, "bench-start not up after {WAIT:?}: {vm:?}");
            next += POLL;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        sb.cli_json::<VmView>(&["vm", "stop", "bench-start"]);
        sb.wait_status("bench-start", "down");
    }
    sb.must_ok(&["vm", "delete", "bench-start"]);
    took.sort();
    hosts.sort();
    hosts.dedup();
    println!(
        "start latency (vm start -> up, 128 MiB diskless, polled every {} ms, {runs} runs on {}): median {}, max {}",
        POLL.as_millis(),
        hosts.join("/"),
        ms(median(&took)),
        ms(*took.last().unwrap_or(&Duration::ZERO)),
    );
}

/// A 256 MiB idle diskless VM moved host1 <-> host3 by `corral vm migrate --wait`, against a
/// plain libvirt domain of the same size moved by `virsh migrate --live`, taking turns.
fn migration(sb: &Sandbox, domain_type: &str, rounds: usize) {
    let (h1, h3) = (sb.host("host1").libvirt_uri.clone(), sb.host("host3").libvirt_uri.clone());
    #[rustfmt::skip]
    sb.cli_json::<VmView>(&["vm", "create", "bench-mig", "--memory", "256M", "--vcpus", "1", "--domain-type", domain_type,
                   "--start", "--host", "host1"]);
    sb.wait_status("bench-mig", "up");

    let xml = format!(
        "<domain type='{domain_type}'>
  <name>bench-virsh</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>
"
    );
    let file = tempfile::Builder::new().prefix("bench-virsh-").suffix(".xml").tempfile().expect("temp file");
    std::fs::write(file.path(), xml).expect("write the domain XML");
    virsh(&h1, &["define", &file.path().display().to_string()]);
    virsh(&h1, &["start", "bench-virsh"]);

    let (mut corral, mut plain) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (from, to, to_name) in [(&h1, &h3, "host3"), (&h3, &h1, "host1")] {
            let t = Instant::now();
            let out = sb.corral(&["-o", "json", "vm", "migrate", "bench-mig", "--to", to_name, "--wait"]);
            let c = t.elapsed();
            assert_eq!(out.code, 0, "corral vm migrate bench-mig --to {to_name}: {}", out.stderr.trim());
            let t = Instant::now();
            virsh(from, &["migrate", "--live", "--persistent", "--undefinesource", "bench-virsh", to]);
            let v = t.elapsed();
            println!("  round {} -> {to_name}: corral {}, virsh {}", round + 1, ms(c), ms(v));
            corral.push(c);
            plain.push(v);
            // Both settled where they went before the next turn.
            sb.wait_vm("bench-mig", &format!("up on {to_name}"), |vm| {
                vm.status == "up" && vm.host.as_deref() == Some(to_name)
            });
            wait_until(WAIT, &format!("bench-virsh running on {to_name}"), || {
                let state = virsh_out(to, &["domstate", "bench-virsh"]);
                if state.trim() == "running" {
                    Ok(())
                } else {
                    Err(state)
                }
            });
        }
    }
    // Every round ends where it began: on host1.
    virsh(&h1, &["destroy", "bench-virsh"]);
    virsh(&h1, &["undefine", "bench-virsh"]);
    sb.cli_json::<VmView>(&["vm", "stop", "bench-mig"]);
    sb.wait_status("bench-mig", "down");
    sb.must_ok(&["vm", "delete", "bench-mig"]);

    corral.sort();
    plain.sort();
    let (c, v) = (median(&corral), median(&plain));
    println!(
        "live migration, 256 MiB idle diskless, host1 <-> host3, {rounds} rounds each way: \
         corral vm migrate --wait median {} (max {}), virsh migrate --live median {} (max {}), ratio corral/virsh {:.2}",
        ms(c),
        ms(*corral.last().unwrap_or(&Duration::ZERO)),
        ms(v),
        ms(*plain.last().unwrap_or(&Duration::ZERO)),
        c.as_secs_f64() / v.as_secs_f64().max(f64::EPSILON),
    );
}

fn virsh(uri: &str, args: &[&str]) {
    let out = Command::new("virsh").arg("-c").arg(uri).args(args).stdin(Stdio::null()).output().expect("run virsh");
    assert!(out.status.success(), "virsh -c {uri} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
}

fn virsh_out(uri: &str, args: &[&str]) -> String {
    let out = Command::new("virsh").arg("-c").arg(uri).args(args).stdin(Stdio::null()).output().expect("run virsh");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn median(sorted: &[Duration]) -> Duration {
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
