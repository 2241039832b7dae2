//! corral-etcd-bench: replicated writes of a 3-member etcd cluster and a 3-node Corral cluster,
//! side by side in one run, through the same client library (tonic gRPC, one persistent channel
//! per client, the same channel settings as every other Corral client in this crate). It prints
//! p50, p99 and throughput and the ratios Corral/etcd; it asserts nothing about them.
//!
//!   corral-etcd-bench [--seconds S] [--clients 1,32] [--warmup-ms MS]
//!
//! - etcd: Debian's `etcd-server` (3.4), installed with apt-get when `etcd` is not on PATH;
//!   3 members on free 127.0.0.1 ports, each with its own data dir in a temp dir; a write is
//!   `KV.Put` of a 100-byte value to one key per client. The messages are written by hand below
//!   (etcd's field numbers, only what Put and Maintenance.Status need), so no etcd crate.
//! - Corral: 3 `corrald` nodes from the harness (`Cluster::run(3, &[])`, the binaries next to
//!   this one: run target/release/corral-etcd-bench for release figures); a write is
//!   `VmService.Edit` of one VM per client, setting a 100-byte description.
//! - Both clusters run for the whole benchmark; for each client count etcd is measured, then
//!   Corral. Every client talks to its cluster's leader: Corral's from `Cluster::leader()`,
//!   etcd's from Maintenance.Status (the member whose own id is the leader id it reports).
//! - Each measurement: all clients write for the warm-up (not counted), then for `--seconds`;
//!   a write counts when it starts inside the measured window. Throughput is counted writes over
//!   the time from the window's start to the last counted write's completion.
//!
//! Every loop is bounded in count and in time; every process binds to 127.0.0.1 only. The etcd
//! members and their temp dir go away on drop, also when the benchmark panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_cli::views::VmView;
use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::EditVmRequest;
use corral_tests::client::channel;
use corral_tests::{free_port, Cluster};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// etcd's v3 gRPC messages (package etcdserverpb), only the fields used here; prost skips
/// the fields of a reply that are not declared.
mod etcdserverpb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
        #[prost(int64, tag = "3")]
        pub lease: i64,
        #[prost(bool, tag = "4")]
        pub prev_kv: bool,
        #[prost(bool, tag = "5")]
        pub ignore_value: bool,
        #[prost(bool, tag = "6")]
        pub ignore_lease: bool,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        #[prost(int64, tag = "3")]
        pub revision: i64,
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct StatusRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(uint64, tag = "4")]
        pub leader: u64,
    }
}

use etcdserverpb::{PutRequest, PutResponse, StatusRequest, StatusResponse};

/// A client of one etcd member over one tonic channel.
#[derive(Clone)]
struct EtcdClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl EtcdClient {
    fn new(addr: &str) -> EtcdClient {
        EtcdClient { grpc: tonic::client::Grpc::new(channel(addr)) }
    }

    async fn unary<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| Status::unavailable(format!("etcd channel not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let resp = self.grpc.unary(tonic::Request::new(req), PathAndQuery::from_static(path), codec).await?;
        Ok(resp.into_inner())
    }

    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<PutResponse, Status> {
        let req = PutRequest { key: key.to_vec(), value: value.to_vec(), ..Default::default() };
        self.unary("/etcdserverpb.KV/Put", req).await
    }

    async fn status(&mut self) -> Result<StatusResponse, Status> {
        self.unary("/etcdserverpb.Maintenance/Status", StatusRequest {}).await
    }
}

struct EtcdMember {
    name: String,
    client_addr: String,
    child: Option<Child>,
}

/// Three etcd members on loopback; killed (and their temp dir removed) on drop.
struct EtcdCluster {
    members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // `dir` (a TempDir) is removed after this, once the members are gone.
    }
}

/// Runs `cmd` (stdin closed, output to `log`) for at most `timeout`; kills it after that.
fn run_bounded(cmd: &mut Command, log: &Path, timeout: Duration) -> Result<(), String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return if status.success() { Ok(()) } else { Err(format!("{cmd:?} exited with {status}")) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{cmd:?} did not finish within {timeout:?}"))
}

fn etcd_version(etcd: &str) -> Option<String> {
    let out = Command::new(etcd).arg("--version").stdin(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
}

/// `etcd` on PATH, or Debian's etcd-server installed (apt-get update first when apt-cache does
/// not know the package). Returns the binary and its version line.
fn ensure_etcd() -> (PathBuf, String) {
    if let Some(v) = etcd_version("etcd") {
        return (PathBuf::from("etcd"), v);
    }
    let logs = tempfile::Builder::new().prefix("corral-etcd-install-").tempdir().expect("temp dir");
    println!("etcd is not on PATH: installing Debian's etcd-server with apt-get");
    let known =
        Command::new("apt-cache").args(["show", "etcd-server"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !known.is_ok_and(|s| s.success()) {
        run_bounded(Command::new("apt-get").arg("update"), &logs.path().join("update.log"), Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("apt-get update: {e}"));
    }
    let log = logs.path().join("install.log");
    let installed = run_bounded(
        Command::new("apt-get").args(["install", "-y", "etcd-server"]).env("DEBIAN_FRONTEND", "noninteractive"),
        &log,
        Duration::from_secs(600),
    );
    if let Err(e) = installed {
        panic!("apt-get install etcd-server: {e}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    for etcd in ["etcd", "/usr/bin/etcd"] {
        if let Some(v) = etcd_version(etcd) {
            return (PathBuf::from(etcd), v);
        }
    }
    panic!("etcd-server is installed but neither etcd nor /usr/bin/etcd runs");
}

impl EtcdCluster {
    fn start(etcd: &Path) -> EtcdCluster {
        let dir = tempfile::Builder::new().prefix("corral-etcd-bench-").tempdir().expect("temp dir");
        let names = ["etcd1", "etcd2", "etcd3"];
        let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            names.iter().zip(&ports).map(|(n, (_, peer))| format!("{n}=http://127.0.0.1:{peer}")).collect();
        let initial = initial.join(",");
        let mut c = EtcdCluster { members: Vec::new(), dir };
        for (name, (client, peer)) in names.iter().zip(&ports) {
            let log = std::fs::File::create(c.dir.path().join(format!("{name}.log"))).expect("log file");
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            #[rustfmt::skip]
            let child = Command::new(etcd)
                .args([
                    "--name", name,
                    "--listen-client-urls", &client_url, "--advertise-client-urls", &client_url,
                    "--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url,
                    "--initial-cluster", &initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "corral-etcd-bench", "--logger", "zap",
                ])
                .arg("--data-dir")
                .arg(c.dir.path().join(name))
                // Debian's package would otherwise take settings from the environment.
                .env_remove("ETCD_DATA_DIR")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn etcd");
            c.members.push(EtcdMember {
                name: name.to_string(),
                client_addr: format!("127.0.0.1:{client}"),
                child: Some(child),
            });
        }
        c
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.members[i].name))).unwrap_or_default()
    }

    /// Panics (with the member's last log lines) when a member has exited.
    fn check_running(&mut self) {
        for i in 0..self.members.len() {
            if let Some(Ok(Some(status))) = self.members[i].child.as_mut().map(|c| c.try_wait()) {
                self.members[i].child = None;
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                panic!("{} exited ({status}): {}", self.members[i].name, tail.join(" | "));
            }
        }
    }

    /// Waits (at most 30 s) until every member answers a Put and all agree on one leader;
    /// returns the leader's index.
    fn wait_ready(&mut self, rt: &tokio::runtime::Runtime) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addrs: Vec<String> = self.members.iter().map(|m| m.client_addr.clone()).collect();
        let mut last = String::from("nothing yet");
        for _attempt in 0..1000 {
            self.check_running();
            if Instant::now() >= deadline {
                panic!("etcd cluster not ready within 30 s; last seen: {last}");
            }
            let seen = rt.block_on(async {
                let mut seen = Vec::new();
                for a in &addrs {
                    let mut c = EtcdClient::new(a);
                    c.put(b"corral-etcd-bench/ready", b"1").await.map_err(|s| format!("{a} put: {}", s.message()))?;
                    let st = c.status().await.map_err(|s| format!("{a} status: {}", s.message()))?;
                    let own = st.header.map_or(0, |h| h.member_id);
                    seen.push((own, st.leader, st.version));
                }
                Ok::<_, String>(seen)
            });
            match seen {
                Ok(seen) => {
                    let leader = seen[0].1;
                    let agreed = leader != 0 && seen.iter().all(|s| s.1 == leader);
                    if let (true, Some(i)) = (agreed, seen.iter().position(|s| s.0 == leader)) {
                        return i;
                    }
                    last = format!("(member id, leader id, version): {seen:?}");
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd cluster not ready after 1000 attempts; last seen: {last}");
    }

    fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.child.as_ref().map(|c| c.id())).collect()
    }
}

/// One client's persistent connection to its cluster's leader, and what it writes.
enum Client {
    Etcd { client: EtcdClient, key: Vec<u8> },
    Corral { client: VmServiceClient<Channel>, vm: String },
}

/// Exactly 100 bytes, different for every write.
fn payload(client: usize, n: u64) -> String {
    let mut s = format!("corral-etcd-bench client {client} write {n} ");
    while s.len() < 100 {
        s.push('.');
    }
    s.truncate(100);
    s
}

impl Client {
    async fn write(&mut self, client: usize, n: u64) -> Result<(), Status> {
        let value = payload(client, n);
        match self {
            Client::Etcd { client, key } => client.put(key, value.as_bytes()).await.map(|_| ()),
            Client::Corral { client, vm } => {
                let req = EditVmRequest { vm: vm.clone(), description: Some(value), ..Default::default() };
                client.edit(req).await.map(|_| ())
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Etcd,
    Corral,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Corral => "Corral",
        }
    }
}

struct Figures {
    system: System,
    clients: usize,
    writes: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Upper bound on writes per client per measurement, whatever the time.
const MAX_WRITES_PER_CLIENT: u64 = 5_000_000;

/// Runs `clients` (one per element) concurrently: each writes for `warmup` (not counted), then
/// for `seconds`.
fn measure(
    rt: &tokio::runtime::Runtime,
    system: System,
    clients: Vec<Client>,
    warmup: Duration,
    seconds: u64,
) -> Figures {
    let n_clients = clients.len();
    let started = Instant::now();
    let measure_from = started + warmup;
    let stop_at = measure_from + Duration::from_secs(seconds);
    let per_client: Vec<(Vec<Duration>, Option<Instant>)> = rt.block_on(async {
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut last_done = None;
                    for n in 0..MAX_WRITES_PER_CLIENT {
                        let t = Instant::now();
                        if t >= stop_at {
                            break;
                        }
                        if let Err(s) = client.write(i, n).await {
                            panic!("{} client {i}: write {n} failed: {s}", system.name());
                        }
                        let done = Instant::now();
                        if t >= measure_from {
                            lat.push(done - t);
                            last_done = Some(done);
                        }
                    }
                    (lat, last_done)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("a client task panicked"));
        }
        all
    });
    let end = per_client.iter().filter_map(|(_, d)| *d).max().unwrap_or(stop_at);
    let mut lat: Vec<Duration> = per_client.into_iter().flat_map(|(l, _)| l).collect();
    lat.sort();
    let window = end.saturating_duration_since(measure_from).max(Duration::from_millis(1));
    Figures {
        system,
        clients: n_clients,
        writes: lat.len(),
        per_sec: lat.len() as f64 / window.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}

/// CPU time (user + system) of `pids` in seconds, from /proc (USER_HZ is 100 on Linux).
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let f: Vec<&str> = after_comm.split_whitespace().collect();
            // Fields 14 and 15 of stat(5); after the comm field they are the 12th and 13th.
            let ticks: u64 = [11, 12].iter().filter_map(|i| f.get(*i)?.parse::<u64>().ok()).sum();
            ticks as f64 / 100.0
        })
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Opts {
    seconds: u64,
    clients: Vec<usize>,
    warmup: Duration,
}

fn parse_args() -> Opts {
    let mut o = Opts { seconds: 5, clients: vec![1, 32], warmup: Duration::from_millis(1000) };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value("--seconds").parse().expect("--seconds: a number"),
            "--clients" => {
                o.clients = value("--clients")
                    .split(',')
                    .map(|c| c.trim().parse().expect("--clients: numbers separated by commas, e.g. 1,32"))
                    .collect()
            }
            "--warmup-ms" => {
                o.warmup = Duration::from_millis(value("--warmup-ms").parse().expect("--warmup-ms: a number"))
            }
            other => panic!("unknown argument {other} (flags: --seconds S, --clients 1,32, --warmup-ms MS)"),
        }
    }
    assert!(o.seconds >= 1 && o.seconds <= 3600, "--seconds: 1 to 3600");
    assert!(!o.clients.is_empty() && o.clients.iter().all(|c| (1..=1024).contains(c)), "--clients: 1 to 1024 each");
    o
}

fn main() {
    let opts = parse_args();
    let wall = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let exe = std::env::current_exe().unwrap_or_default();
    if cfg!(debug_assertions) || !exe.to_string_lossy().contains("/release/") {
        println!(
            "warning: not a release build (nor a release corrald): run target/release/corral-etcd-bench for figures"
        );
    }
    let (etcd_bin, etcd_version) = ensure_etcd();

    let mut etcd = EtcdCluster::start(&etcd_bin);
    let etcd_leader = etcd.wait_ready(&rt);
    let etcd_addr = etcd.members[etcd_leader].client_addr.clone();
    let corral = Cluster::run(3, &[]);
    let corral_leader = corral.leader();
    let corral_addr = corral.endpoint(corral_leader).to_string();

    println!("corral-etcd-bench: two 3-member clusters on 127.0.0.1, both running throughout");
    println!("  etcd:   {etcd_version} ({}), leader {etcd_addr}, KV.Put of 100 bytes", etcd_bin.display());
    println!(
        "  Corral: {}, leader {corral_addr}, vm edit (100-byte description)",
        corral_tests::bin("corrald").display()
    );
    println!(
        "  clients: tonic gRPC, one persistent channel each, to the leader; warm-up {} ms, then {} s per level",
        opts.warmup.as_millis(),
        opts.seconds
    );

    // What each idle cluster costs the other's measurement (they share the two cores).
    let (etcd_pids, corral_pids): (Vec<u32>, Vec<u32>) =
        (etcd.pids(), corral.nodes.iter().filter_map(|n| n.pid()).collect());
    let (e0, c0, t0) = (cpu_seconds(&etcd_pids), cpu_seconds(&corral_pids), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let idle = t0.elapsed().as_secs_f64();
    println!(
        "  idle CPU over {idle:.0} s: etcd {:.1}%, Corral {:.1}% of one core; load average {}",
        (cpu_seconds(&etcd_pids) - e0) / idle * 100.0,
        (cpu_seconds(&corral_pids) - c0) / idle * 100.0,
        loadavg()
    );

    let mut results = Vec::new();
    for &clients in &opts.clients {
        etcd.check_running();
        let _guard = rt.enter();
        let etcd_clients = (0..clients)
            .map(|i| Client::Etcd {
                client: EtcdClient::new(&etcd_addr),
                key: format!("corral-etcd-bench/{clients}/{i}").into_bytes(),
            })
            .collect();
        results.push(measure(&rt, System::Etcd, etcd_clients, opts.warmup, opts.seconds));

        for i in 0..clients {
            let name = format!("bench-{clients}-{i}");
            corral.cli_json::<VmView>(corral_leader, &["vm", "create", &name, "--memory", "64M", "--vcpus", "1"]);
        }
        let corral_clients = (0..clients)
            .map(|i| Client::Corral {
                client: VmServiceClient::new(channel(&corral_addr)),
                vm: format!("bench-{clients}-{i}"),
            })
            .collect();
        results.push(measure(&rt, System::Corral, corral_clients, opts.warmup, opts.seconds));
    }
    let after_load = loadavg();

    println!();
    println!("{:<8} {:>8} {:>10} {:>10} {:>10} {:>10}", "system", "clients", "writes", "writes/s", "p50 ms", "p99 ms");
    for r in &results {
        println!(
            "{:<8} {:>8} {:>10} {:>10.0} {:>10.2} {:>10.2}",
            r.system.name(),
            r.clients,
            r.writes,
            r.per_sec,
            ms(r.p50),
            ms(r.p99)
        );
    }
    println!();
    println!("ratios Corral / etcd (latency: above 1 is slower; throughput: below 1 is fewer writes/s)");
    println!("{:>8} {:>10} {:>10} {:>10}", "clients", "p50", "p99", "writes/s");
    for &clients in &opts.clients {
        let find = |s: System| results.iter().find(|r| r.system == s && r.clients == clients).expect("measured");
        let (e, c) = (find(System::Etcd), find(System::Corral));
        println!(
            "{:>8} {:>10.2} {:>10.2} {:>10.2}",
            clients,
            ms(c.p50) / ms(e.p50),
            ms(c.p99) / ms(e.p99),
            c.per_sec / e.per_sec
        );
    }
    println!("\nload average after: {after_load}; wall time {:.1} s", wall.elapsed().as_secs_f64());
    drop(corral);
    drop(etcd);
}
