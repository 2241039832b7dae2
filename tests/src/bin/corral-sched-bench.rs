//! corral-sched-bench: figures for BENCHMARKS.md on the scheduler alone, in memory (no
//! cluster, no I/O): 10,000 VMs placed one after another on 1,000 hosts under 100 affinity
//! groups, 10 labels, host tags and pins. It prints medians; it asserts nothing about them.
//!
//!   corral-sched-bench [--runs N] [--vms N] [--hosts N] [--groups N]

use std::time::{Duration, Instant};

use corral_raft::model::{
    AffinityGroup, AffinityLabel, ClusterInfo, ClusterState, DomainType, Host, HostFacts, HostState, Polarity,
    PowerState, SchedulingPolicy, Vm, VmStatus, DEFAULT_CPU_OVERCOMMIT,
};
use corral_raft::scheduler::{choose, Purpose, Scheduler};
use corral_raft::NodeId;
use uuid::Uuid;

struct Opts {
    runs: usize,
    vms: usize,
    hosts: usize,
    groups: usize,
}

fn parse_args() -> Opts {
    let mut o = Opts { runs: 5, vms: 10_000, hosts: 1_000, groups: 100 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> usize {
            args.next().unwrap_or_else(|| panic!("{name} needs a value")).parse().expect("a number")
        };
        match a.as_str() {
            "--runs" => o.runs = value("--runs"),
            "--vms" => o.vms = value("--vms"),
            "--hosts" => o.hosts = value("--hosts"),
            "--groups" => o.groups = value("--groups"),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// A fixed-seed xorshift: the same cluster every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn vm(i: usize, rng: &mut Rng) -> Vm {
    Vm::new(
        Uuid::from_u128(i as u128 + 1),
        &format!("vm{i}"),
        512 * (1 + rng.below(8) as u64),
        1 + rng.below(4) as u32,
        0,
    )
}

/// Hosts of 64-512 GiB and 16-128 CPUs, a fifth tagged ssd and a tenth gpu; VMs of
/// 0.5-4 GiB and 1-4 vCPUs, 5% needing ssd and 1% pinned to three hosts; groups of 10-50
/// VMs (no VM in two), half negative, half enforcing (positive enforcing ones at most 20,
/// so that they fit one host); 10 labels of 20 VMs on 50 hosts each.
fn build(o: &Opts) -> ClusterState {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut s = ClusterState {
        cluster: Some(ClusterInfo {
            name: "bench".into(),
            voters: 3,
            created_ms: 0,
            scheduling: SchedulingPolicy::EvenDistribution,
            cpu_overcommit: DEFAULT_CPU_OVERCOMMIT,
            level: 0,
            level_raised_ms: 0,
            ca_pem: None,
            max_snapshots: 0,
        }),
        ..Default::default()
    };
    for i in 0..o.hosts {
        let id = i as NodeId + 1;
        let mut tags = Vec::new();
        if i % 5 == 0 {
            tags.push("ssd".to_string());
        }
        if i % 10 == 0 {
            tags.push("gpu".to_string());
        }
        let facts = HostFacts {
            cpus: 16 << rng.below(4),
            memory_mib: (64 * 1024) << rng.below(4),
            libvirt_uri: String::new(),
            domain_type: DomainType::Kvm,
        };
        let host = Host {
            id,
            name: format!("host{id}"),
            address: format!("10.0.{}.{}:7001", id / 256, id % 256),
            state: HostState::Up,
            facts,
            joined_ms: 0,
            state_since_ms: 0,
            maintenance: None,
            tags,
            engine_local_maintenance: false,
            engine_score: None,
        };
        s.hosts.insert(id, host);
    }
    let mut order: Vec<usize> = (0..o.vms).collect();
    for i in 0..o.vms {
        let mut v = vm(i, &mut rng);
        if rng.below(20) == 0 {
            v.config.host_tags = vec!["ssd".into()];
        } else if rng.below(100) == 0 {
            v.config.pinned_hosts = (0..3).map(|_| 1 + rng.below(o.hosts) as NodeId).collect();
        }
        s.vm_names.insert(v.config.name.clone(), v.id);
        s.vms.insert(v.id, v);
    }
    // Shuffle, then deal out disjoint members.
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut next = 0;
    for g in 0..o.groups {
        let polarity = if g % 2 == 0 { Polarity::Negative } else { Polarity::Positive };
        let enforcing = g % 4 < 2;
        let size = if enforcing && polarity == Polarity::Positive { 10 + rng.below(11) } else { 10 + rng.below(41) };
        let vms = order[next..(next + size).min(order.len())].iter().map(|i| Uuid::from_u128(*i as u128 + 1)).collect();
        next += size;
        let name = format!("group{g}");
        s.affinity_groups.insert(name.clone(), AffinityGroup { name, polarity, enforcing, vms, created_ms: 0 });
    }
    for l in 0..10 {
        let vms = order[next..(next + 20).min(order.len())].iter().map(|i| Uuid::from_u128(*i as u128 + 1)).collect();
        next += 20;
        let hosts = (0..50).map(|_| 1 + rng.below(o.hosts) as NodeId).collect();
        let name = format!("label{l}");
        s.affinity_labels.insert(name.clone(), AffinityLabel { name, vms, hosts, created_ms: 0 });
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let o = parse_args();
    let state = build(&o);
    let members: usize = state.affinity_groups.values().map(|g| g.vms.len()).sum();
    println!(
        "corral-sched-bench: {} hosts, {} VMs, {} affinity groups ({members} members), {} labels; in memory",
        state.hosts.len(),
        state.vms.len(),
        state.affinity_groups.len(),
        state.affinity_labels.len()
    );
    println!("\n## scheduler: place every VM in turn (Scheduler::new, then place + assign each), {} runs", o.runs);
    println!("{:>4} {:>12} {:>10} {:>10} {:>14}", "run", "total", "placed", "refused", "placements/s");
    let mut times = Vec::new();
    let mut placed_state = None;
    for run in 0..o.runs {
        let started = Instant::now();
        let mut sched = Scheduler::new(&state);
        let (mut placed, mut refused) = (Vec::with_capacity(state.vms.len()), 0usize);
        for vm in state.vms.values() {
            match sched.place(vm, Purpose::Start) {
                Ok(host) => {
                    sched.assign(vm.id, host);
                    placed.push((vm.id, host));
                }
                Err(e) => {
                    if run == 0 && refused < 3 {
                        println!("  refused: {e}");
                    }
                    refused += 1
                }
            }
        }
        let took = started.elapsed();
        println!(
            "{run:>4} {:>12} {:>10} {refused:>10} {:>14.0}",
            ms(took),
            placed.len(),
            state.vms.len() as f64 / took.as_secs_f64()
        );
        times.push(took);
        placed_state.get_or_insert(placed);
    }
    let m = median(times);
    println!(
        "median: {} for {} VMs = {:.0} placements/s",
        ms(m),
        state.vms.len(),
        state.vms.len() as f64 / m.as_secs_f64()
    );

    // The apply-time path: one `choose` on a state where every VM placed above runs.
    let mut full = state.clone();
    for (id, host) in placed_state.unwrap_or_default() {
        let v = full.vms.get_mut(&id).unwrap();
        (v.runtime.host, v.runtime.status, v.runtime.desired) = (Some(host), VmStatus::Up, PowerState::Up);
    }
    let mut probe = vm(o.vms, &mut Rng(7));
    probe.config.name = "probe".into();
    // A member of the first (negative, enforcing) group, so the rules are on the path.
    if let Some(g) = full.affinity_groups.values_mut().next() {
        g.vms.push(probe.id);
    }
    full.vm_names.insert(probe.config.name.clone(), probe.id);
    full.vms.insert(probe.id, probe.clone());
    let mut once = Vec::new();
    let mut new_only = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let chosen = choose(&full, &probe, None, &[], Purpose::Start);
        once.push(t.elapsed());
        assert!(chosen.is_ok(), "the probe fits: {chosen:?}");
        let t = Instant::now();
        std::hint::black_box(Scheduler::new(&full));
        new_only.push(t.elapsed());
    }
    println!(
        "\n## scheduler: one choose() on the full state (all VMs placed), median of 21: {} (of which Scheduler::new {})",
        ms(median(once)),
        ms(median(new_only))
    );
}
