//! The scale harness's cluster: many corrald processes (the first `voters` become the voters,
//! the rest Raft learners), the gRPC channels the harness talks to them with, and the fill of
//! VMs through many concurrent clients. Every wait is bounded in time and count.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::cluster_service_client::ClusterServiceClient;
use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{
    ClusterStatus, CreateVmRequest, GetVmRequest, HaPriority, ListVmsRequest, StatusRequest, Vm, VmStatus,
    REQUEST_ID_HEADER,
};
use corral_tests::client::retryable;
use corral_tests::Cluster;
use tonic::transport::{Channel, Endpoint};

/// Set by SIGINT or SIGTERM: every loop ends at its next step and the run unwinds, so that the
/// cluster's drop kills its processes and removes its directory.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Unwinds the run (the cluster's drop cleans up) when a signal asked it to stop.
pub fn check_interrupt() {
    if interrupted() {
        panic!("interrupted: stopping and cleaning up");
    }
}

/// Catches SIGINT and SIGTERM into `INTERRUPTED`.
pub fn catch_interrupts(rt: &tokio::runtime::Runtime) {
    corral_tests::flag_on_signals(rt, &INTERRUPTED, "corral-scale: interrupted; cleaning up");
}

/// A channel to `addr` with the cluster's admin credentials (as `client::channel`), but with a
/// longer per-call timeout: a list of 50,000 VMs from a debug build takes more than 5 s.
pub fn channel(addr: &str) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    match corral_tests::credentials_for(addr) {
        Some(file) => {
            let config = corral_cli::credentials::load(&file).expect("the cluster's credentials load");
            endpoint.connect_with_connector_lazy(corral_proto::tls::TlsConnect::new(config))
        }
        None => endpoint.connect_lazy(),
    }
}

pub fn vms(addr: &str) -> VmServiceClient<Channel> {
    VmServiceClient::new(channel(addr)).max_decoding_message_size(corral_proto::MAX_API_MESSAGE)
}

/// The node's own status (`stale`: no round trip to the leader), if it answers.
pub async fn status(addr: &str) -> Option<ClusterStatus> {
    let mut c = ClusterServiceClient::new(channel(addr));
    let call = c.status(StatusRequest { stale: true });
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        _ => None,
    }
}

/// Every VM, as the node at `addr` holds them (a stale read: no round trip to the leader).
pub async fn list_vms(addr: &str) -> Result<Vec<Vm>, tonic::Status> {
    Ok(vms(addr).list(ListVmsRequest { stale: true }).await?.into_inner().vms)
}

/// One VM as the node at `addr` holds it (stale), or `None` if it does not answer.
pub async fn get_vm(client: &mut VmServiceClient<Channel>, name: &str) -> Option<Vm> {
    client.get(GetVmRequest { vm: name.into(), stale: true, next_run: false }).await.ok().map(|r| r.into_inner())
}

pub fn is_up(vm: &Vm) -> bool {
    vm.status_enum == VmStatus::Up as i32
}

/// The cluster and who is what in it, by harness index (`Cluster::nodes`).
pub struct Fleet {
    pub c: Cluster,
    pub voters: Vec<usize>,
    pub leader: usize,
    /// The learner host that runs the HA part's 100 VMs (and nothing else).
    pub ha_host: usize,
    /// Learner hosts that run the other running VMs.
    pub workers: Vec<usize>,
}

impl Fleet {
    /// Starts `hosts` corrald processes, bootstraps the first with `voters` voters and joins the
    /// others one at a time (a membership change at a time); raises the CPU overcommit so that
    /// one test-driver host (16 CPUs, 3 GiB) can hold the HA part's 100 one-vCPU VMs.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        voters: usize,
        hosts: usize,
        overcommit: u32,
        learner_fsync: bool,
    ) -> Fleet {
        let voters_flag = voters.to_string();
        let fsync = learner_fsync.to_string();
        let mut c = Cluster::start(1, &["--voters", &voters_flag]);
        c.bootstrap();
        c.must_ok(0, &["cluster", "edit", "--cpu-overcommit", &overcommit.to_string()]);
        let t = Instant::now();
        for i in 1..hosts {
            check_interrupt();
            // The first `voters` nodes become the voters (one joins at a time, and the cluster
            // takes voters until it has as many as it keeps).
            let n = if i < voters {
                c.add_node(&["--voters", &voters_flag])
            } else {
                c.add_node(&["--voters", &voters_flag, "--fsync", &fsync])
            };
            join(&c, n, c.endpoint(0));
            if i % 10 == 0 || i + 1 == hosts {
                println!("  {} of {hosts} nodes joined ({:.1} s)", i + 1, t.elapsed().as_secs_f64());
            }
        }
        let mut fleet = Fleet { c, voters: Vec::new(), leader: 0, ha_host: 0, workers: Vec::new() };
        fleet.find_roles(rt);
        fleet.wait_hosts_up(rt, hosts);
        let learners: Vec<usize> = (0..hosts).filter(|i| !fleet.voters.contains(i)).collect();
        fleet.ha_host = *learners.last().expect("at least one learner: --hosts must be more than --voters");
        fleet.workers = learners[..learners.len() - 1].to_vec();
        fleet
    }

    /// Waits (at most 120 s) until the leader shows `want` hosts up three times in a row, a
    /// second apart: a host that just joined can be declared not responding a moment later
    /// (seen: 0.1 s after its join, "no heartbeat for 1.8 s"), and no VM starts there then.
    pub fn wait_hosts_up(&self, rt: &tokio::runtime::Runtime, want: usize) {
        use corral_proto::host_service_client::HostServiceClient;
        let t = Instant::now();
        let (mut up, mut streak) = (0, 0);
        while t.elapsed() < Duration::from_secs(120) {
            check_interrupt();
            let hosts = rt.block_on(async {
                let mut c = HostServiceClient::new(channel(&self.leader_addr()));
                c.list(corral_proto::ListHostsRequest { stale: true }).await.map(|r| r.into_inner().hosts)
            });
            up = hosts.map_or(0, |h| h.iter().filter(|h| h.state_enum == corral_proto::HostState::Up as i32).count());
            streak = if up >= want { streak + 1 } else { 0 };
            if streak == 3 {
                println!("  all {want} hosts up {} after the last join", super::measure::secs(t.elapsed()));
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        println!("  only {up} of {want} hosts up 120 s after the last join; going on");
    }

    /// How many nodes' logs have a line containing `needle`, and how many such lines in all.
    pub fn log_lines(&self, needle: &str) -> (usize, usize) {
        let counts: Vec<usize> =
            self.c.nodes.iter().map(|n| n.log().lines().filter(|l| l.contains(needle)).count()).collect();
        (counts.iter().filter(|c| **c > 0).count(), counts.iter().sum())
    }

    /// The leader's term and its count of elections so far, as one line for the report.
    pub fn health(&self, rt: &tokio::runtime::Runtime) -> String {
        let term = rt.block_on(status(self.c.endpoint(self.leader))).map_or(0, |s| s.term);
        let (fenced_hosts, fenced_vms) = self.log_lines("self-fencing");
        let (lost_hosts, _) = self.log_lines("lease lost");
        format!(
            "term {term}; hosts whose lease lapsed so far: {lost_hosts}, VMs they destroyed self-fencing: \
             {fenced_vms} (on {fenced_hosts} hosts)"
        )
    }

    pub fn addr(&self, i: usize) -> String {
        self.c.endpoint(i).to_string()
    }

    pub fn name(&self, i: usize) -> String {
        self.c.nodes[i].name.clone()
    }

    pub fn leader_addr(&self) -> String {
        self.addr(self.leader)
    }

    /// A voter that does not lead.
    pub fn follower(&self) -> usize {
        *self.voters.iter().find(|v| **v != self.leader).unwrap_or(&self.leader)
    }

    /// Finds the voters and the leader, asking the first voters until they agree on a leader
    /// (at most 30 s).
    pub fn find_roles(&mut self, rt: &tokio::runtime::Runtime) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = String::new();
        while Instant::now() < deadline {
            check_interrupt();
            let asked: Vec<usize> = if self.voters.is_empty() { vec![0] } else { self.voters.clone() };
            let answers: Vec<Option<ClusterStatus>> =
                rt.block_on(futures::future::join_all(asked.iter().map(|i| status(self.c.endpoint(*i)))));
            let answers: Vec<ClusterStatus> = answers.into_iter().flatten().collect();
            let leaders: Vec<u64> = answers.iter().map(|s| s.leader_id).collect();
            if let Some(s) = answers.first().filter(|_| leaders.iter().all(|l| *l == leaders[0] && *l != 0)) {
                let index_of = |id: u64| {
                    let m = s.members.iter().find(|m| m.id == id)?;
                    self.c.nodes.iter().position(|n| n.addr == m.address)
                };
                let voters: Vec<usize> =
                    s.members.iter().filter(|m| m.role == "voter").filter_map(|m| index_of(m.id)).collect();
                if let Some(leader) = index_of(s.leader_id) {
                    self.voters = voters;
                    self.leader = leader;
                    return;
                }
            }
            seen = format!("leaders {leaders:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the voters did not agree on a leader within 30 s: {seen}");
    }
}

/// Joins node `n` through `peer`, trying again (at most 10 times, 2 s apart) when the cluster
/// says to (a leader change during the membership change); returns how long the successful
/// command took, and panics with the last refusal.
pub fn join(c: &Cluster, n: usize, peer: &str) -> Duration {
    let token = c.token.clone().expect("bootstrapped");
    let mut last = String::new();
    for attempt in 1..=10 {
        check_interrupt();
        let t = Instant::now();
        let out = c.corral(n, &["-o", "json", "cluster", "join", "--peer", peer, "--token", &token]);
        if out.code == 0 {
            return t.elapsed();
        }
        last = out.stderr.trim().to_string();
        eprintln!("  join of {} refused (attempt {attempt}): {last}", c.nodes[n].name);
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("{} could not join in 10 attempts: {last}", c.nodes[n].name);
}

/// Copies every node's log to `$CORRAL_SCALE_LOGS` (when set) before the cluster's drop removes
/// them with its dir: what the nodes did during a run, to read after it.
impl Drop for Fleet {
    fn drop(&mut self) {
        let Some(to) = std::env::var_os("CORRAL_SCALE_LOGS") else { return };
        let to = std::path::PathBuf::from(to);
        let _ = std::fs::create_dir_all(&to);
        for n in &self.c.nodes {
            let _ = std::fs::write(to.join(format!("{}.log", n.name)), n.log());
        }
        eprintln!("corral-scale: the nodes' logs are in {}", to.display());
    }
}

/// What the fill creates: VM `i` of `total`. The first `ha_vms` run on the HA host, HA with
/// priorities high, medium, low in turn; the next up to `running` run on the worker hosts in
/// turn (two each), one of the two HA; the rest are defined and down (every tenth HA).
pub struct Plan {
    pub ha_vms: usize,
    pub running: usize,
    pub memory_mib: u64,
    pub ha_host: String,
    pub workers: Vec<String>,
}

pub fn vm_name(i: usize) -> String {
    format!("s{i:06}")
}

pub fn priority(i: usize) -> HaPriority {
    [HaPriority::High, HaPriority::Medium, HaPriority::Low][i % 3]
}

impl Plan {
    pub fn request(&self, i: usize) -> CreateVmRequest {
        let (ha, start, host) = if i < self.ha_vms {
            (true, true, self.ha_host.clone())
        } else if i < self.running {
            (i.is_multiple_of(2), true, self.workers[(i / 2) % self.workers.len()].clone())
        } else {
            (i.is_multiple_of(10), false, String::new())
        };
        CreateVmRequest {
            name: vm_name(i),
            memory_mib: self.memory_mib,
            vcpus: 1,
            ha,
            ha_priority_enum: if ha { priority(i) as i32 } else { 0 },
            start,
            host,
            ..Default::default()
        }
    }
}

/// Creates VMs `from..to` of `plan` with `clients` concurrent gRPC clients, each writing to the
/// leader and trying the voters in turn when a write fails with a retryable error (the same
/// request id, so applied at most once). Returns how many were refused or gave up.
pub fn fill(
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    plan: &Arc<Plan>,
    from: usize,
    to: usize,
    clients: usize,
) -> usize {
    let next = Arc::new(AtomicUsize::new(from));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut endpoints = vec![fleet.leader_addr()];
    endpoints.extend(fleet.voters.iter().filter(|v| **v != fleet.leader).map(|v| fleet.addr(*v)));
    let started = Instant::now();
    let step = ((to - from) / 5).max(1);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (next, failed, plan) = (next.clone(), failed.clone(), plan.clone());
            let clients: Vec<VmServiceClient<Channel>> = endpoints.iter().map(|e| vms(e)).collect();
            tasks.push(tokio::spawn(async move {
                let mut at = 0;
                // Bounded: each turn takes one index below `to`.
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to || interrupted() {
                        break;
                    }
                    let req = plan.request(i);
                    let id = uuid::Uuid::new_v4().to_string();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let mut r = tonic::Request::new(req.clone());
                        r.metadata_mut().insert(REQUEST_ID_HEADER, id.parse().expect("ascii id"));
                        r.set_timeout(Duration::from_secs(10));
                        match clients[at].clone().create(r).await {
                            Ok(_) => break,
                            Err(s)
                                if retryable(&s) && Instant::now() < deadline && attempts < 100 && !interrupted() =>
                            {
                                at = (at + 1) % clients.len();
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(s) => {
                                if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                    eprintln!("  create {} failed: {}", req.name, s.message());
                                }
                                break;
                            }
                        }
                    }
                    if (i - from + 1).is_multiple_of(step) {
                        let secs = started.elapsed().as_secs_f64();
                        println!("  {} VMs created ({:.0} VMs/s so far)", i + 1, (i - from + 1) as f64 / secs);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    check_interrupt();
    failed.load(Ordering::Relaxed)
}

/// Waits (at most `timeout`) until at least `want` VMs are up, as the leader holds them;
/// returns how long it took and how many were up at the end.
pub fn wait_running(rt: &tokio::runtime::Runtime, fleet: &Fleet, want: usize, timeout: Duration) -> (Duration, usize) {
    let t = Instant::now();
    let mut up = 0;
    while t.elapsed() < timeout {
        check_interrupt();
        if let Ok(all) = rt.block_on(list_vms(&fleet.leader_addr())) {
            up = all.iter().filter(|v| is_up(v)).count();
            if up >= want {
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    (t.elapsed(), up)
}
