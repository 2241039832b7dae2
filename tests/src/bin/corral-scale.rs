//! corral-scale: a whole cluster's worth of corrald processes on loopback, filled with VMs, and
//! what that costs. It starts `--voters` voters and `--hosts` minus that many learners (full
//! Raft non-voting members, each a host on its own libvirt `test:///default`), creates `--vms`
//! VMs through 32 concurrent gRPC clients (`--running` of them running, a share HA), and prints
//! figures (medians, p99s, rates); it asserts none of them. Every wait and loop is bounded; it
//! stops by itself, and its cluster's processes and temp dir go with it, also on a panic or
//! SIGINT/SIGTERM (unless `--keep`).
//!
//!   corral-scale [--voters 5] [--hosts 100] [--vms 50000] [--running 2000]
//!                [--only write,cpu,memory,list,catchup,ha,loss] [--seconds 5] [--lose 10] [--keep]
//!
//! Parts: `write` (corral-bench's edit workload at 0, 10,000 and the final count of VMs), `cpu`
//! (every process at rest for `--cpu-seconds`), `memory` (RSS and data dir of the voters),
//! `list` (`corral vm list` end to end, table and JSON, on a follower and the leader),
//! `catchup` (one more node joins the full cluster), `ha` (SIGKILL of the host running 100 HA
//! VMs of mixed priority), `loss` (SIGKILL of `--lose` hosts with HA VMs at once). The fill
//! always runs. Use release binaries for the figures (`cargo build --release --workspace
//! --bins`); a debug build is for trying it small: `--hosts 12 --vms 3000 --running 300`.
//!
//! Disk: every node here shares one disk, so the learners (`--hosts` minus `--voters`) run with
//! `--fsync false` unless `--learner-fsync true`: a hundred processes each syncing every entry
//! on one disk measure the disk, not Corral (a learner's log counts for no commit; each real
//! host has its own disk). The voters always sync, so write latencies are real ones.
//!
//! Capacity: a test-driver host reports 16 CPUs and 3 GiB, so VMs have 16 MiB and 1 vCPU and
//! the cluster's CPU overcommit is raised to 8, for one host to hold the HA part's 100 VMs.

#[path = "scale/fleet.rs"]
mod fleet;
#[path = "scale/ha.rs"]
mod ha;
#[path = "scale/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet::{check_interrupt, Fleet, Plan};
use measure::secs;

const PARTS: [&str; 7] = ["write", "cpu", "memory", "list", "catchup", "ha", "loss"];

struct Opts {
    voters: usize,
    hosts: usize,
    vms: usize,
    running: usize,
    only: Vec<String>,
    seconds: u64,
    cpu_seconds: u64,
    lose: usize,
    list_runs: usize,
    keep: bool,
    learner_fsync: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        voters: 5,
        hosts: 100,
        vms: 50_000,
        running: 2_000,
        only: PARTS.iter().map(|p| p.to_string()).collect(),
        seconds: 5,
        cpu_seconds: 20,
        lose: 10,
        list_runs: 10,
        keep: false,
        learner_fsync: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        let mut number = |name: &str| value(name).parse::<usize>().unwrap_or_else(|_| panic!("{name}: a number"));
        match a.as_str() {
            "--voters" => o.voters = number("--voters"),
            "--hosts" => o.hosts = number("--hosts"),
            "--vms" => o.vms = number("--vms"),
            "--running" => o.running = number("--running"),
            "--seconds" => o.seconds = number("--seconds") as u64,
            "--cpu-seconds" => o.cpu_seconds = number("--cpu-seconds") as u64,
            "--lose" => o.lose = number("--lose"),
            "--list-runs" => o.list_runs = number("--list-runs"),
            "--keep" => o.keep = true,
            "--learner-fsync" => {
                o.learner_fsync = value("--learner-fsync").parse().expect("--learner-fsync: true or false")
            }
            "--only" => {
                o.only = value("--only").split(',').map(str::to_string).collect();
                for p in &o.only {
                    assert!(PARTS.contains(&p.as_str()), "--only: {p} is none of {}", PARTS.join(", "));
                }
            }
            other => panic!("unknown argument {other} (see the top of corral-scale.rs)"),
        }
    }
    assert!(matches!(o.voters, 3 | 5), "--voters: 3 or 5");
    assert!(o.hosts >= o.voters + 3, "--hosts: at least --voters + 3 (an HA host and two others)");
    o
}

/// How many VMs the HA part's host runs.
const HA_VMS: usize = 100;
/// Concurrent gRPC clients of the fill.
const FILL_CLIENTS: usize = 32;

fn main() {
    let o = parse_args();
    let wants = |p: &str| o.only.iter().any(|q| q == p);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    fleet::catch_interrupts(&rt);
    println!(
        "corral-scale: {} voters and {} learners on 127.0.0.1, each host on libvirt test:///default; \
         {} VMs, {} running; {} cores here",
        o.voters,
        o.hosts - o.voters,
        o.vms,
        o.running,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let t = Instant::now();
    let mut fleet = Fleet::start(&rt, o.voters, o.hosts, 8, o.learner_fsync);
    let started = t.elapsed();
    println!(
        "cluster of {} started in {} ({:.2} s a node); leader {}, voters {}",
        o.hosts,
        secs(started),
        started.as_secs_f64() / o.hosts as f64,
        fleet.name(fleet.leader),
        fleet.voters.iter().map(|v| fleet.name(*v)).collect::<Vec<_>>().join(" ")
    );

    let running = o.running.clamp(HA_VMS.min(o.vms), o.vms);
    let plan = Arc::new(Plan {
        ha_vms: HA_VMS.min(o.vms),
        running,
        memory_mib: 16,
        ha_host: fleet.name(fleet.ha_host),
        workers: fleet.workers.iter().map(|w| fleet.name(*w)).collect(),
    });
    let per_worker = (running - plan.ha_vms).div_ceil(fleet.workers.len());
    println!(
        "plan: {} HA VMs on {}, {} more running on {} worker hosts ({per_worker} each), the rest down",
        plan.ha_vms,
        plan.ha_host,
        running - plan.ha_vms,
        fleet.workers.len()
    );

    let bench = if wants("write") {
        let bench = measure::bench_vms(&rt, &fleet, 16);
        measure::write_header(o.seconds);
        measure::write_point(&rt, &fleet, 0, &bench, o.seconds);
        bench
    } else {
        Vec::new()
    };

    // Fill points: the running VMs first (they are placed and started while the state is
    // small, as a cluster grows), then up to 10,000, then the rest.
    let mut points: Vec<usize> = vec![running, 10_000, o.vms];
    points.retain(|p| *p <= o.vms);
    points.dedup();
    let (mut done, mut fill_time, mut failed) = (0, Duration::ZERO, 0);
    for &to in &points {
        if to <= done {
            continue;
        }
        let t = Instant::now();
        let refused = fleet::fill(&rt, &fleet, &plan, done, to, FILL_CLIENTS);
        failed += refused;
        let took = t.elapsed();
        fill_time += took;
        println!("filled {done}..{to} in {} ({:.0} VMs/s)", secs(took), (to - done) as f64 / took.as_secs_f64());
        fleet.find_roles(&rt);
        println!("  leader {}, {}", fleet.name(fleet.leader), fleet.health(&rt));
        done = to;
        if to == running {
            let timeout = Duration::from_secs(300 + running as u64 / 5);
            // The refused ones (all of the first fill point's VMs are to run) never will.
            let want = running - refused.min(running);
            let (took, up) = fleet::wait_running(&rt, &fleet, want, timeout);
            println!("{up} of {want} VMs up {} after their creation", secs(took));
        }
        if wants("write") && (to == 10_000 || to == o.vms) {
            measure::write_header(o.seconds);
            measure::write_point(&rt, &fleet, to + bench.len(), &bench, o.seconds);
        }
    }
    println!(
        "fill: {} VMs in {} ({:.0} VMs/s, {FILL_CLIENTS} clients), {failed} failed",
        o.vms,
        secs(fill_time),
        o.vms as f64 / fill_time.as_secs_f64().max(0.001)
    );

    fleet.find_roles(&rt);
    if wants("cpu") {
        // Let the fill's tail (snapshots, reports) settle first.
        std::thread::sleep(Duration::from_secs(5));
        measure::cpu_at_rest(&fleet, o.cpu_seconds);
    }
    if wants("memory") {
        measure::memory(&fleet);
    }
    if wants("list") {
        measure::vm_list(&rt, &fleet, o.list_runs);
    }
    if wants("catchup") {
        measure::catch_up(&rt, &mut fleet);
    }
    let timeout = Duration::from_secs(300);
    if wants("ha") {
        fleet.find_roles(&rt);
        ha::ha_host(&rt, &mut fleet, plan.ha_vms, timeout);
        println!("  {}", fleet.health(&rt));
    }
    if wants("loss") {
        fleet.find_roles(&rt);
        // More than skip_fencing_percent (50) of the hosts silent at once and the leader
        // declares none down: stay well below it.
        let alive = fleet.c.running().len();
        let lose = o.lose.min(alive * 2 / 5);
        if lose < o.lose {
            println!("\n(--lose {} is capped at {lose}: 40 % of the {alive} hosts that run)", o.lose);
        }
        ha::lose_hosts(&rt, &mut fleet, lose, timeout);
        println!("  {}", fleet.health(&rt));
    }
    check_interrupt();
    fleet.find_roles(&rt);
    println!("\nat the end: leader {}, {}", fleet.name(fleet.leader), fleet.health(&rt));

    if o.keep {
        let pids: Vec<String> = fleet.c.nodes.iter().filter_map(|n| n.pid()).map(|p| p.to_string()).collect();
        println!("\n--keep: the cluster runs on; its dir is {}", fleet.c.dir().display());
        println!("leader {} at {}", fleet.name(fleet.leader), fleet.leader_addr());
        if let Some(c) = fleet.c.credentials() {
            println!("CORRAL_CREDENTIALS={} corral --endpoint {} vm list", c.display(), fleet.leader_addr());
        }
        println!("to clean up: kill {}; rm -rf {}", pids.join(" "), fleet.c.dir().display());
        // Neither the processes nor the dir are to go: the cluster's drop would do both.
        std::mem::forget(fleet);
    }
}
