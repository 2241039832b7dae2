//! corral-bench: figures for BENCHMARKS.md from a real 3-node loopback cluster (release
//! binaries next to this one, sled flushing on). It prints medians, p99s and throughput;
//! it asserts nothing about them. Every loop is bounded in count and in time.
//!
//!   corral-bench [--only write|tls|authz|rest|dashboard|failover|memory|ovf|metrics|leader-failover-load|follower-resume|soak]
//!                [--rounds N] [--seconds S]
//!
//! `soak` is not part of the default run: it writes for `--seconds` (say 600) and prints each
//! node's RSS and data-dir size every tenth of the time, to watch sled's growth.

#[path = "bench/authz.rs"]
mod authz;
#[path = "bench/metrics.rs"]
mod metrics;
#[path = "bench/rest.rs"]
mod rest;
#[path = "bench/under_faults.rs"]
mod under_faults;

use std::time::{Duration, Instant};

use corral_cli::views::VmView;
use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::EditVmRequest;
use corral_tests::client::{channel, Writer};
use corral_tests::{dir_size, rss_kib, wait_until, Cluster};

struct Opts {
    only: Option<String>,
    failover_rounds: usize,
    seconds: u64,
}

fn parse_args() -> Opts {
    let mut o = Opts { only: None, failover_rounds: 10, seconds: 5 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--only" => o.only = Some(value("--only")),
            "--rounds" => o.failover_rounds = value("--rounds").parse().expect("--rounds: a number"),
            "--seconds" => o.seconds = value("--seconds").parse().expect("--seconds: a number"),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn main() {
    let opts = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let wants = |what: &str| opts.only.as_deref().is_none_or(|o| o == what);
    println!("corral-bench: 3 corrald nodes on 127.0.0.1, libvirt test:///default, sled flushing on");
    if wants("write") {
        // TLS (level 2, the default) and plaintext (a level-1 cluster), one after the other.
        write_latency(&rt, opts.seconds, true, true);
        write_latency(&rt, opts.seconds, true, false);
        write_latency(&rt, opts.seconds, false, true);
    }
    if wants("tls") {
        tls_costs(opts.failover_rounds.max(10));
    }
    if wants("authz") {
        authz::authz(&rt, opts.failover_rounds.max(20));
    }
    if wants("rest") {
        rest::rest_list(&rt, opts.failover_rounds.max(20));
    }
    if wants("dashboard") {
        rest::dashboard(&rt, opts.failover_rounds.max(20));
    }
    if wants("failover") {
        failover(&rt, opts.failover_rounds);
    }
    if wants("memory") {
        idle_memory();
    }
    if wants("ovf") {
        ovf_propagation(&rt, 100);
    }
    if wants("metrics") {
        metrics::metrics_cost();
    }
    // Last of the default run: they leave SIGINT and SIGTERM handled (to clean up their nodes).
    if wants("leader-failover-load") {
        under_faults::leader_failover_load(&rt, opts.failover_rounds);
    }
    if wants("follower-resume") {
        under_faults::follower_resume(&rt, opts.failover_rounds);
    }
    if opts.only.as_deref() == Some("soak") {
        soak(&rt, opts.seconds);
    }
}

/// 16 clients editing for `seconds`, with RSS and disk use of every node sampled ten times.
fn soak(rt: &tokio::runtime::Runtime, seconds: u64) {
    let c = Cluster::run(3, &[]);
    let leader = c.leader();
    let addr = c.endpoint(leader).to_string();
    for i in 0..16 {
        c.cli_json::<VmView>(leader, &["vm", "create", &format!("soak-{i}"), "--memory", "64M"]);
    }
    println!("\n## soak: 16 clients editing VMs for {seconds} s (snapshot every 1000 entries)");
    println!("{:>8} {:>10} per node: RSS MiB / data dir MiB", "elapsed", "writes");
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(seconds);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (addr, done) = (addr.clone(), done.clone());
            rt.spawn(async move {
                let mut client = VmServiceClient::new(channel(&addr));
                for n in 0..100_000_000u64 {
                    if Instant::now() >= stop_at {
                        break;
                    }
                    let req = EditVmRequest {
                        vm: format!("soak-{i}"),
                        description: Some(format!("edit {n}")),
                        ..Default::default()
                    };
                    if client.edit(req).await.is_ok() {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for tick in 1..=10 {
        let at = started + Duration::from_secs(seconds) * tick / 10;
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let per_node: Vec<String> = c
            .nodes
            .iter()
            .map(|n| {
                let rss = n.pid().map_or(0, rss_kib) as f64 / 1024.0;
                let disk = dir_size(&n.data_dir) as f64 / (1024.0 * 1024.0);
                format!("{rss:.1} / {disk:.1}")
            })
            .collect();
        println!(
            "{:>7.0}s {:>10} {}",
            started.elapsed().as_secs_f64(),
            done.load(std::sync::atomic::Ordering::Relaxed),
            per_node.join("   ")
        );
    }
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Edits of one VM per client, sent straight to the leader, for `seconds` per level.
/// `fsync`: whether the nodes sync sled's file after each flush (the default); without it, the
/// figure of what the sync costs (and of a store that a power loss can rob).
/// A 3-node cluster of this build: with TLS (level 2) or without (`--level 1`).
fn cluster(extra: &[&str], tls: bool) -> Cluster {
    let mut c = Cluster::start(3, extra);
    c.bootstrap_with(if tls { &[] } else { &["--level", "1"] });
    c.join(1);
    c.join(2);
    c
}

fn write_latency(rt: &tokio::runtime::Runtime, seconds: u64, fsync: bool, tls: bool) {
    let extra = std::env::var("CORRAL_BENCH_ARGS").unwrap_or_default();
    let mut extra: Vec<&str> = extra.split_whitespace().collect();
    if !fsync {
        extra.extend(["--fsync", "false"]);
    }
    let c = cluster(&extra, tls);
    let leader = c.leader();
    let addr = c.endpoint(leader).to_string();
    let sync = if fsync { "fdatasync after every flush" } else { "WITHOUT fdatasync (sled's flush only)" };
    let wire = if tls { "TLS, level 2" } else { "plaintext, level 1" };
    println!("\n## write latency and throughput (vm edit on the leader, {seconds} s per level, {sync}, {wire})");
    println!("{:>8} {:>10} {:>10} {:>10} {:>12}", "clients", "writes", "p50", "p99", "writes/s");
    for clients in [1usize, 16, 64] {
        for i in 0..clients {
            let name = format!("bench-{clients}-{i}");
            c.cli_json::<VmView>(leader, &["vm", "create", &name, "--memory", "64M", "--vcpus", "1"]);
        }
        let vms: Vec<String> = (0..clients).map(|i| format!("bench-{clients}-{i}")).collect();
        let (lat, rate) = edit_load(rt, || channel(&addr), &vms, Duration::from_secs(seconds));
        println!(
            "{:>8} {:>10} {:>10} {:>10} {:>12.0}",
            clients,
            lat.len(),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            rate
        );
    }
}

/// One client per VM of `vms`, each on a channel of its own from `connect`, editing its VM until
/// `time` has passed (at most 200,000 edits each): sorted latencies, and writes/s.
fn edit_load(
    rt: &tokio::runtime::Runtime,
    connect: impl Fn() -> tonic::transport::Channel,
    vms: &[String],
    time: Duration,
) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let stop_at = started + time;
    let mut lat: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for vm in vms {
            let (mut client, vm) = (VmServiceClient::new(connect()), vm.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                // Bounded by time and by count.
                for n in 0..200_000u64 {
                    if Instant::now() >= stop_at {
                        break;
                    }
                    let req =
                        EditVmRequest { vm: vm.clone(), description: Some(format!("edit {n}")), ..Default::default() };
                    let t = Instant::now();
                    client.edit(req).await.expect("write failed");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    lat.sort();
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    (lat, rate)
}

/// Kill -9 of the leader to the next acknowledged write, `rounds` times.
fn failover(rt: &tokio::runtime::Runtime, rounds: usize) {
    let mut c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "failover", "--memory", "64M", "--vcpus", "1"]);
    let mut times = Vec::new();
    println!("\n## leader failover: SIGKILL of the leader -> next acknowledged write ({rounds} rounds)");
    for round in 0..rounds {
        let leader = c.leader();
        let survivors: Vec<String> = (0..3).filter(|i| *i != leader).map(|i| c.endpoint(i).to_string()).collect();
        let mut writer = {
            let _guard = rt.enter();
            Writer::new(&survivors)
        };
        c.kill(leader);
        let t = Instant::now();
        let rid = uuid::Uuid::new_v4().to_string();
        rt.block_on(writer.edit_description("failover", &format!("round {round}"), &rid, Duration::from_secs(30)))
            .expect("no write was acknowledged within 30 s of the kill");
        let took = t.elapsed();
        println!("round {round:>2}: {}", ms(took));
        times.push(took);
        c.restart(leader);
        wait_until(Duration::from_secs(20), "the killed node to catch up", || {
            let out = c.corral(leader, &["-o", "json", "--stale", "vm", "show", "failover"]);
            let want = format!("round {round}");
            if out.code == 0 && out.view::<VmView>().description == want {
                Ok(())
            } else {
                Err(out.stderr)
            }
        });
    }
    times.sort();
    println!(
        "failover: median {}, min {}, max {}",
        ms(percentile(&times, 0.5)),
        ms(times[0]),
        ms(*times.last().unwrap())
    );
}

/// What TLS costs besides steady writes: a join (CSR, signing, TLS to the leader) and one CLI
/// call end to end (a new process, its connection and handshake, `vm list`), medians of `rounds`.
fn tls_costs(rounds: usize) {
    println!("\n## TLS: join and one CLI call end to end ({rounds} rounds, medians)");
    println!("{:>12} {:>14} {:>14}", "", "TLS (level 2)", "plaintext (1)");
    let mut joins = [Vec::new(), Vec::new()];
    let mut calls = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (k, tls) in [true, false].into_iter().enumerate() {
            let mut c = Cluster::start(2, &[]);
            c.bootstrap_with(if tls { &[] } else { &["--level", "1"] });
            let t = Instant::now();
            c.join(1);
            joins[k].push(t.elapsed());
            if round == 0 {
                c.must_ok(0, &["vm", "create", "web1", "--memory", "64M"]);
            }
            for _ in 0..3 {
                let t = Instant::now();
                let out = c.corral(1, &["vm", "list"]);
                assert_eq!(out.code, 0, "{}", out.stderr);
                calls[k].push(t.elapsed());
            }
        }
    }
    for v in joins.iter_mut().chain(calls.iter_mut()) {
        v.sort();
    }
    println!("{:>12} {:>14} {:>14}", "join", ms(percentile(&joins[0], 0.5)), ms(percentile(&joins[1], 0.5)));
    println!("{:>12} {:>14} {:>14}", "vm list", ms(percentile(&calls[0], 0.5)), ms(percentile(&calls[1], 0.5)));
}

/// Resident memory of idle nodes: sampled 10 times over 5 s, after 3 s of idling.
fn idle_memory() {
    let c = Cluster::run(3, &[]);
    for i in 0..20 {
        c.cli_json::<VmView>(i % 3, &["vm", "create", &format!("idle{i}"), "--memory", "64M", "--vcpus", "1"]);
    }
    let leader = c.leader();
    std::thread::sleep(Duration::from_secs(3));
    println!("\n## idle resident memory (VmRSS, 3-node cluster with 20 VMs, median of 10 samples over 5 s)");
    for i in 0..3 {
        let pid = c.nodes[i].pid().unwrap();
        let mut samples = Vec::new();
        for _ in 0..10 {
            samples.push(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(500));
        }
        samples.sort();
        let role = if i == leader { "leader" } else { "follower" };
        println!("{} ({role}): {:.1} MiB", c.nodes[i].name, samples[5] as f64 / 1024.0);
    }
}

/// Time from an edit of the hosted engine VM to its new OVF document in every node's own OVF
/// store: `rounds` edits through a follower, each node's store polled (local reads) from the
/// moment the edit is sent. Also when the edit call returned (committed and applied on the node that answered).
fn ovf_propagation(rt: &tokio::runtime::Runtime, rounds: usize) {
    use corral_proto::ovf_service_client::OvfServiceClient;
    use corral_proto::OvfDumpRequest;

    let mut c = Cluster::start(3, &[]);
    c.bootstrap_with_engine();
    let follower = (0..3).find(|i| *i != c.leader()).unwrap();
    let endpoints: Vec<String> = (0..3).map(|i| c.endpoint(i).to_string()).collect();
    let (returned, everywhere) = rt.block_on(async {
        let mut vms = VmServiceClient::new(channel(&endpoints[follower]));
        let stores: Vec<OvfServiceClient<_>> = endpoints.iter().map(|e| OvfServiceClient::new(channel(e))).collect();
        let (mut returned, mut everywhere) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let marker = format!("ovf-bench-round-{round}");
            let t0 = Instant::now();
            let polls = stores.iter().cloned().map(|mut store| {
                let marker = marker.clone();
                async move {
                    let deadline = t0 + Duration::from_secs(5);
                    while Instant::now() < deadline {
                        let req = OvfDumpRequest { vm: "hosted-engine".into(), local: true };
                        if let Ok(doc) = store.dump(req).await {
                            if doc.into_inner().xml.contains(&marker) {
                                return Some(t0.elapsed());
                            }
                        }
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                    None
                }
            });
            let edit =
                EditVmRequest { vm: "hosted-engine".into(), description: Some(marker.clone()), ..Default::default() };
            let call = async {
                vms.edit(edit).await.expect("edit");
                t0.elapsed()
            };
            let (back, seen) = tokio::join!(call, futures::future::join_all(polls));
            returned.push(back);
            everywhere.push(seen.into_iter().map(|s| s.expect("every store within 5 s")).max().unwrap());
        }
        (returned, everywhere)
    });
    let show = |name: &str, mut v: Vec<Duration>| {
        v.sort();
        println!(
            "{name}: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            v[v.len() / 2].as_secs_f64() * 1e3,
            percentile(&v, 0.99).as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3
        );
        v[v.len() / 2]
    };
    println!("\n## OVF store: an edit of the hosted engine VM to its new document on all 3 nodes ({rounds} edits through a follower)");
    // The edit returns once committed and applied on the node that answers: from then to the
    // last store that shows it (0 when every store had it by the time the reply came).
    let after: Vec<Duration> = everywhere.iter().zip(&returned).map(|(all, back)| all.saturating_sub(*back)).collect();
    let all = show("new document in every node's OVF store (from the edit sent)", everywhere);
    let back = show("edit call returned (committed and applied on the answering node)", returned);
    show("from the edit's reply to the document in every store", after);
    println!("ratio everywhere / returned (medians): {:.2}", all.as_secs_f64() / back.as_secs_f64());
}
