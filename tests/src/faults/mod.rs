//! A Jepsen-style fault-schedule harness for loopback clusters: clients write and read VMs
//! while a seeded nemesis kills, freezes, partitions and slows nodes; then every fault is
//! healed and a checker verifies that the history is linearizable per VM, that no
//! acknowledged write was lost and that every node converged to the same state. The HA
//! schedules on sandbox hosts are in `sandbox_ha`.

pub mod checker;
pub mod clients;
pub mod history;
pub mod nemesis;
pub mod sandbox_ha;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::cluster_service_client::ClusterServiceClient;
use corral_proto::StatusRequest;
use tonic::transport::Channel;

use crate::Cluster;
use checker::{Finding, Verdict};
use clients::Shared;
use history::{Call, Config, Op, Outcome, Recorder, FINAL_READER};
use nemesis::{Cgroups, Fault, Firewall, Step, Target};

/// How a schedule runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub voters: usize,
    /// How long the clients and the nemesis run (faults are all healed by then).
    pub duration: Duration,
    pub clients: usize,
    /// VM names the clients share: fewer means more contention on each.
    pub keys: usize,
    /// A call not answered by then is recorded as unknown.
    pub timeout: Duration,
    /// The negative control: clients read with `--stale`, which is not linearizable.
    pub stale_reads: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            voters: 3,
            duration: Duration::from_secs(15),
            clients: 8,
            keys: 12,
            timeout: Duration::from_secs(3),
            stale_reads: false,
        }
    }
}

/// What one schedule did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub voters: usize,
    pub faults: BTreeMap<Fault, usize>,
    /// Faults planned but not injected, with why.
    pub skipped: Vec<String>,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    /// Histories that are not linearizable, one per VM.
    pub findings: Vec<Finding>,
    /// Nodes whose state did not converge, or a cluster that did not recover once healed.
    pub divergences: Vec<String>,
    /// VMs whose history was too tangled to decide (not counted as violations).
    pub undecided: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.findings.len() + self.divergences.len()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        write!(
            f,
            "seed {}: {} voters, faults [{}], ops ok {} failed {} unknown {}, violations {}",
            self.seed,
            self.voters,
            faults.join(", "),
            self.ok,
            self.failed,
            self.unknown,
            self.violations()
        )?;
        if !self.undecided.is_empty() {
            write!(f, ", undecided: {}", self.undecided.join(" "))?;
        }
        for s in &self.skipped {
            write!(f, "\n  skipped: {s}")?;
        }
        for finding in &self.findings {
            write!(f, "\n  VIOLATION (seed {}): {finding}", self.seed)?;
        }
        for d in &self.divergences {
            write!(f, "\n  VIOLATION (seed {}): {d}", self.seed)?;
        }
        Ok(())
    }
}

/// How long the cluster has, once healed, to elect a leader, answer and converge.
const RECOVERY: Duration = Duration::from_secs(30);

/// Runs one schedule: a fresh cluster, clients and the nemesis for `options.duration`, every
/// fault healed, then the checks. `Err` when the harness itself could not run it (no cgroups,
/// no iptables); a node that cannot be restarted panics, as in every cluster test.
pub fn run_schedule(seed: u64, options: &Options) -> Result<Report, String> {
    let plan = nemesis::plan(seed, options.voters, options.duration);
    println!(
        "schedule seed {seed}: {} voters, {} clients, {:?} (replay: corral-faults --schedules 1 --seed {seed} --voters {} --duration {}ms --clients {})",
        options.voters,
        options.clients,
        options.duration,
        options.voters,
        options.duration.as_millis(),
        options.clients
    );
    for step in &plan {
        println!("  {step}");
    }
    let mut lab = Lab::start(options.voters)?;
    let ports = lab.ports();
    let Lab { cluster, firewall, cgroups } = &mut lab;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let channels: Vec<Channel> = {
        let _in_rt = rt.enter();
        cluster.nodes.iter().map(|n| crate::client::channel(&n.addr)).collect()
    };
    let recorder = Recorder::new();
    let shared = Shared {
        channels: Arc::new(channels),
        recorder: recorder.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        burst: Arc::new(AtomicBool::new(false)),
        counter: Arc::new(AtomicU64::new(0)),
        keys: options.keys,
        timeout: options.timeout,
        stale_reads: options.stale_reads,
    };
    let mut tasks = Vec::new();
    for id in 0..options.clients {
        tasks.push(rt.spawn(clients::client(shared.clone(), id, seed, false)));
        tasks.push(rt.spawn(clients::client(shared.clone(), options.clients + id, seed, true)));
    }

    let mut report = Report { seed, voters: options.voters, ..Default::default() };
    let addrs = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let mut nemesis = Nemesis { cluster, cgroups, firewall, ports, addrs, shared: &shared };
    let start = Instant::now();
    for step in &plan {
        sleep_until(start + step.at);
        nemesis.run(&rt, step, &mut report);
        sleep_until(start + step.at + step.hold);
        nemesis.heal_all();
    }
    sleep_until(start + options.duration);
    nemesis.heal_all();
    shared.stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });

    let mut ops = recorder.ops();
    for op in &ops {
        match op.outcome {
            Outcome::Ok(_) => report.ok += 1,
            Outcome::Unknown(_) => report.unknown += 1,
            _ => report.failed += 1,
        }
    }
    match final_reads(&rt, &shared, options.keys) {
        Ok(reads) => ops.extend(reads),
        Err(e) => report.divergences.push(e),
    }
    if let Err(e) = converged(&rt, &shared) {
        report.divergences.push(e);
    }
    if let Some(dir) = std::env::var_os("CORRAL_FAULTS_HISTORY") {
        // The whole history, one call a line in invocation order, for a look by hand.
        let mut sorted = ops.clone();
        sorted.sort_by_key(|o| o.invoked_us);
        let text: String = sorted.iter().map(|o| format!("{o}\n")).collect();
        let path = std::path::Path::new(&dir).join(format!("history-{seed}.txt"));
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("faults: {}: {e}", path.display());
        }
    }
    let mut by_vm: BTreeMap<String, Vec<Op>> = BTreeMap::new();
    for op in ops {
        by_vm.entry(op.vm.clone()).or_default().push(op);
    }
    for (vm, history) in by_vm {
        match checker::check_vm(&vm, &history) {
            (Verdict::Linearizable, _) => {}
            (Verdict::Undecided, _) => report.undecided.push(vm),
            (Verdict::Violation { .. }, finding) => report.findings.extend(finding),
        }
    }
    drop(nemesis);
    if report.violations() > 0 && std::env::var_os("CORRAL_FAULTS_LOGS").is_some() {
        lab.cluster.dump_logs();
    }
    Ok(report)
}

/// A loopback cluster whose nodes each run in a cgroup of their own, with a firewall chain to
/// partition them. Fields drop in order: the processes end before their cgroups are removed.
pub struct Lab {
    pub cluster: Cluster,
    pub firewall: Firewall,
    pub cgroups: Cgroups,
}

impl Lab {
    /// Starts `voters` nodes (each in its cgroup), bootstraps the first and joins the rest.
    pub fn start(voters: usize) -> Result<Lab, String> {
        let cgroups = Cgroups::new(voters)?;
        let firewall = Firewall::new()?;
        let mut cluster = Cluster::start(0, &[]);
        for i in 0..voters {
            cluster.add_stopped_node(&[]);
            cluster.nodes[i].cgroup_procs = Some(cgroups.procs(i));
            cluster.restart(i);
        }
        cluster.bootstrap();
        for i in 1..voters {
            cluster.join(i);
        }
        Ok(Lab { cluster, firewall, cgroups })
    }

    /// Each node's port, in node order.
    pub fn ports(&self) -> Vec<u16> {
        self.cluster
            .nodes
            .iter()
            .map(|n| n.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a node address with a port"))
            .collect()
    }

    /// Cuts node `i` off from its peers (clients still reach it).
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        self.firewall.isolate(&self.cgroups, &self.ports(), i)
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<(), String> {
        self.firewall.heal()
    }
}

fn sleep_until(t: Instant) {
    // Paces the schedule; nothing is decided by it.
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Injects a schedule's faults into one cluster and remembers what to heal.
struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    cgroups: &'a Cgroups,
    firewall: &'a Firewall,
    ports: Vec<u16>,
    addrs: Vec<String>,
    shared: &'a Shared,
}

impl Nemesis<'_> {
    fn run(&mut self, rt: &tokio::runtime::Runtime, step: &Step, report: &mut Report) {
        let targets = match &step.target {
            Target::Nodes(n) => n.clone(),
            Target::Cluster => Vec::new(),
            Target::Leader => match self.find_leader(rt) {
                Some(l) => vec![l],
                None => {
                    report.skipped.push(format!("{step}: no agreed leader to hit"));
                    return;
                }
            },
        };
        let hit: Vec<String> = targets.iter().map(|i| self.cluster.nodes[*i].name.clone()).collect();
        println!("  {:>6.2}s {} {}", step.at.as_secs_f64(), step.fault, hit.join("+"));
        match step.fault {
            Fault::Kill => targets.iter().for_each(|i| self.cluster.kill(*i)),
            Fault::Pause => targets.iter().for_each(|i| self.cluster.pause(*i)),
            Fault::Partition => {
                for i in &targets {
                    if let Err(e) = self.firewall.isolate(self.cgroups, &self.ports, *i) {
                        report.skipped.push(format!("{step}: {e}"));
                        return;
                    }
                }
            }
            Fault::SlowDisk => {
                if !self.cgroups.slow_disk_supported() {
                    report.skipped.push(format!("{step}: no blkio controller for a slow disk here"));
                    return;
                }
                for i in &targets {
                    let Some(pid) = self.cluster.nodes[*i].pid() else { continue };
                    if let Err(e) = self.cgroups.slow_disk(pid) {
                        report.skipped.push(format!("{step}: {e}"));
                        return;
                    }
                }
            }
            Fault::LoadBurst => self.shared.burst.store(true, Ordering::Relaxed),
        }
        *report.faults.entry(step.fault).or_default() += 1;
    }

    /// The leader, asked for a few times (an election may be under way): none after 3 s.
    fn find_leader(&self, rt: &tokio::runtime::Runtime) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let found = leader(rt, &self.shared.channels, &self.addrs);
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ends every fault: partitions removed, disks unthrottled, frozen nodes resumed, killed
    /// nodes restarted, bursts stopped.
    fn heal_all(&mut self) {
        if let Err(e) = self.firewall.heal() {
            eprintln!("faults: {e}");
        }
        self.cgroups.heal_disks();
        self.shared.burst.store(false, Ordering::Relaxed);
        for i in 0..self.cluster.nodes.len() {
            if !self.cluster.nodes[i].is_running() {
                self.cluster.restart(i);
            } else if !self.cluster.running().contains(&i) {
                self.cluster.resume(i);
            }
        }
    }
}

impl Drop for Nemesis<'_> {
    fn drop(&mut self) {
        // Also on a panic: nodes are left running and unfrozen for the cluster's own clean-up.
        let _ = self.firewall.heal();
        self.cgroups.heal_disks();
        for i in 0..self.cluster.nodes.len() {
            self.cluster.resume(i);
        }
    }
}

/// The node that the nodes that answer agree leads (a majority of all nodes must answer), as
/// an index into `addrs` (the nodes' addresses, which the membership lists).
fn leader(rt: &tokio::runtime::Runtime, channels: &[Channel], addrs: &[String]) -> Option<usize> {
    let views = rt.block_on(async {
        let mut views = Vec::new();
        for ch in channels {
            let mut c = ClusterServiceClient::new(ch.clone());
            let call = c.status(StatusRequest { stale: true });
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(500), call).await {
                views.push(s.into_inner());
            }
        }
        views
    });
    if views.len() <= channels.len() / 2 {
        return None;
    }
    let id = views[0].leader_id;
    if id == 0 || views.iter().any(|v| v.leader_id != id) {
        return None;
    }
    let address = &views[0].members.iter().find(|m| m.id == id)?.address;
    addrs.iter().position(|a| a == address)
}

/// A linearizable list of every VM through each node, once the cluster answers again; each
/// becomes a read of every key in the history. `Err` when some node never answered.
fn final_reads(rt: &tokio::runtime::Runtime, shared: &Shared, keys: usize) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    let deadline = Instant::now() + RECOVERY;
    for (node, ch) in shared.channels.iter().enumerate() {
        loop {
            let invoked_us = shared.recorder.now_us();
            match rt.block_on(clients::list(ch, false, Duration::from_secs(5))) {
                Ok(vms) => {
                    let completed_us = Some(shared.recorder.now_us());
                    let seen: BTreeMap<String, Config> = vms.into_iter().collect();
                    for key in 0..keys {
                        let vm = clients::vm_name(key);
                        let outcome = match seen.get(&vm) {
                            Some(c) => Outcome::Ok(Some(c.clone())),
                            None => Outcome::NotFound,
                        };
                        ops.push(Op {
                            client: FINAL_READER,
                            node,
                            vm,
                            call: Call::Read,
                            invoked_us,
                            completed_us,
                            outcome,
                        });
                    }
                    break;
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "host{} did not answer a linearizable list within {RECOVERY:?} of healing: {e}",
                        node + 1
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    Ok(ops)
}

/// A node's own copy of the VMs: name, memory, description.
type NodeCopy = BTreeSet<(String, u64, String)>;

/// Waits until every node's own copy (a stale list) holds the same VMs with the same
/// configuration. `Err` names what differed when the deadline passed.
fn converged(rt: &tokio::runtime::Runtime, shared: &Shared) -> Result<(), String> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let mut copies: Vec<Result<NodeCopy, String>> = Vec::new();
        for ch in shared.channels.iter() {
            let list = rt.block_on(clients::list(ch, true, Duration::from_secs(5)));
            copies.push(list.map(|vms| vms.into_iter().map(|(n, c)| (n, c.memory_mib, c.description)).collect()));
        }
        let first = copies[0].as_ref().ok();
        if first.is_some() && copies.iter().all(|c| c.as_ref().ok() == first) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let mut lines = vec![format!("the nodes' copies still differ {RECOVERY:?} after healing:")];
            for (i, c) in copies.iter().enumerate() {
                lines.push(match c {
                    Ok(set) => format!("    host{}: {set:?}", i + 1),
                    Err(e) => format!("    host{}: {e}", i + 1),
                });
            }
            return Err(lines.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
