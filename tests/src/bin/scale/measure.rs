//! The scale harness's measurements of a cluster at rest or under client writes: write latency
//! and throughput, CPU, memory and disk of the processes, `vm list` end to end, and a new
//! learner's catch-up. They print figures and assert nothing.

use std::time::{Duration, Instant};

use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{CreateVmRequest, EditVmRequest};

use super::fleet::{self, check_interrupt, interrupted, Fleet};
use corral_tests::{dir_size, rss_kib};

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The write benchmark's VMs (`corral-bench --only write`'s workload: one VM per client, edited
/// by it), created once, down, before the fill.
pub fn bench_vms(rt: &tokio::runtime::Runtime, fleet: &Fleet, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("bench-{i}")).collect();
    rt.block_on(async {
        let mut client = fleet::vms(&fleet.leader_addr());
        for name in &names {
            let req = CreateVmRequest { name: name.clone(), memory_mib: 64, vcpus: 1, ..Default::default() };
            client.create(req).await.expect("create a benchmark VM");
        }
    });
    names
}

/// `corral-bench`'s write workload: one client per VM of `vms`, each on its own channel to the
/// leader, editing its VM's description until `time` has passed (at most 200,000 edits each).
/// Sorted latencies, writes/s, and how many edits failed.
fn edit_load(rt: &tokio::runtime::Runtime, addr: &str, vms: &[String], time: Duration) -> (Vec<Duration>, f64, usize) {
    let started = Instant::now();
    let stop_at = started + time;
    let (mut lat, failed) = rt.block_on(async {
        let mut tasks = Vec::new();
        for vm in vms {
            let (mut client, vm) = (VmServiceClient::new(fleet::channel(addr)), vm.clone());
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut failed) = (Vec::new(), 0);
                for n in 0..200_000u64 {
                    if Instant::now() >= stop_at || interrupted() {
                        break;
                    }
                    let req =
                        EditVmRequest { vm: vm.clone(), description: Some(format!("edit {n}")), ..Default::default() };
                    let t = Instant::now();
                    match client.edit(req).await {
                        Ok(_) => lat.push(t.elapsed()),
                        Err(_) => failed += 1,
                    }
                }
                (lat, failed)
            }));
        }
        let (mut all, mut failed) = (Vec::new(), 0);
        for t in tasks {
            let (l, f) = t.await.unwrap_or_default();
            all.extend(l);
            failed += f;
        }
        (all, failed)
    });
    lat.sort();
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    (lat, rate, failed)
}

/// One line of the write table: 1 client's latency, then 16 clients' throughput.
pub fn write_point(rt: &tokio::runtime::Runtime, fleet: &Fleet, vms_now: usize, bench: &[String], seconds: u64) {
    check_interrupt();
    let addr = fleet.leader_addr();
    let time = Duration::from_secs(seconds);
    let (one, one_rate, f1) = edit_load(rt, &addr, &bench[..1], time);
    let (many, many_rate, f16) = edit_load(rt, &addr, &bench[..bench.len().min(16)], time);
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>12} {:>12.0} {:>10}",
        vms_now,
        ms(percentile(&one, 0.5)),
        ms(percentile(&one, 0.99)),
        format!("{one_rate:.0}"),
        ms(percentile(&many, 0.5)),
        many_rate,
        f1 + f16
    );
}

pub fn write_header(seconds: u64) {
    println!("\n## writes: vm edit on the leader, {seconds} s with 1 client, then {seconds} s with 16");
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10}",
        "VMs", "1: p50", "1: p99", "1: w/s", "16: p50", "16: w/s", "failed"
    );
}

/// Clock ticks of user and system time of a process so far (`/proc/PID/stat`), if it runs.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its closing parenthesis,
    // where field 3 (state) is the first; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Linux's USER_HZ, what /proc counts CPU time in: 100 on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU of every corrald over `seconds` at rest: the leader's, the voters', everyone's, and the
/// busiest processes (to find a hog).
pub fn cpu_at_rest(fleet: &Fleet, seconds: u64) {
    check_interrupt();
    let pids: Vec<(usize, u32)> =
        fleet.c.nodes.iter().enumerate().filter_map(|(i, n)| n.pid().map(|p| (i, p))).collect();
    let before: Vec<Option<u64>> = pids.iter().map(|(_, p)| cpu_ticks(*p)).collect();
    let t = Instant::now();
    // Bounded: one sleep per second of the window.
    for _ in 0..seconds {
        check_interrupt();
        std::thread::sleep(Duration::from_secs(1));
    }
    let wall = t.elapsed().as_secs_f64();
    let mut used: Vec<(usize, f64)> = pids
        .iter()
        .zip(&before)
        .filter_map(|((i, p), b)| Some((*i, (cpu_ticks(*p)?.saturating_sub((*b)?)) as f64 / TICKS_PER_SECOND)))
        .map(|(i, s)| (i, 100.0 * s / wall))
        .collect();
    let of = |pred: &dyn Fn(usize) -> bool| used.iter().filter(|(i, _)| pred(*i)).map(|(_, p)| p).sum::<f64>();
    let leader = of(&|i| i == fleet.leader);
    let voters = of(&|i| fleet.voters.contains(&i));
    let learners = of(&|i| !fleet.voters.contains(&i));
    let all = of(&|_| true);
    let n_learners = used.len().saturating_sub(fleet.voters.len());
    println!("\n## CPU at rest over {wall:.0} s (utime+stime from /proc, % of one core)");
    println!("leader ({}): {leader:.1} %", fleet.name(fleet.leader));
    println!("{} voters together: {voters:.1} %", fleet.voters.len());
    println!(
        "{n_learners} learners (full Raft non-voting members, each a host) together: {learners:.1} % \
         (median {:.2} % each)",
        {
            let mut l: Vec<f64> = used.iter().filter(|(i, _)| !fleet.voters.contains(i)).map(|(_, p)| *p).collect();
            l.sort_by(f64::total_cmp);
            l.get(l.len() / 2).copied().unwrap_or(0.0)
        }
    );
    println!("all {} corrald processes: {all:.1} % (this machine has {} cores)", used.len(), cores());
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = used.iter().take(5).map(|(i, p)| format!("{} {p:.1} %", role(fleet, *i))).collect();
    println!("busiest: {}", top.join(", "));
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn role(fleet: &Fleet, i: usize) -> String {
    let what = if i == fleet.leader {
        "leader"
    } else if fleet.voters.contains(&i) {
        "voter"
    } else {
        "learner"
    };
    format!("{} ({what})", fleet.name(i))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Resident memory and data dir size of the voters (and the learners' median and largest).
pub fn memory(fleet: &Fleet) {
    check_interrupt();
    let rss = |i: usize| fleet.c.nodes[i].pid().map_or(0, rss_kib);
    let disk = |i: usize| dir_size(&fleet.c.nodes[i].data_dir) / 1024;
    println!("\n## memory and disk (VmRSS; data dir with its sled store, snapshots and certificates)");
    println!("{:>24} {:>12} {:>12}", "", "RSS", "data dir");
    for &v in &fleet.voters {
        println!("{:>24} {:>12} {:>12}", role(fleet, v), mib(rss(v)), mib(disk(v)));
    }
    let max_rss = fleet.voters.iter().map(|v| rss(*v)).max().unwrap_or(0);
    let max_disk = fleet.voters.iter().map(|v| disk(*v)).max().unwrap_or(0);
    println!(
        "leader RSS {}, largest voter RSS {}, largest voter data dir {}",
        mib(rss(fleet.leader)),
        mib(max_rss),
        mib(max_disk)
    );
    let mut learners: Vec<(u64, u64)> = (0..fleet.c.nodes.len())
        .filter(|i| !fleet.voters.contains(i) && fleet.c.nodes[*i].is_running())
        .map(|i| (rss(i), disk(i)))
        .collect();
    if !learners.is_empty() {
        learners.sort();
        let med = learners[learners.len() / 2].0;
        let max = learners.last().map_or(0, |l| l.0);
        let total: u64 = learners.iter().map(|l| l.0).sum();
        let max_d = learners.iter().map(|l| l.1).max().unwrap_or(0);
        println!(
            "{} learners: RSS median {}, largest {}, all together {}; largest data dir {}",
            learners.len(),
            mib(med),
            mib(max),
            mib(total),
            mib(max_d)
        );
    }
}

/// `corral vm list` end to end (a new process, its connection, the read, the table or JSON),
/// `runs` times each against a follower and the leader.
pub fn vm_list(rt: &tokio::runtime::Runtime, fleet: &Fleet, runs: usize) {
    println!("\n## corral vm list, end to end ({runs} runs each, p50 and max)");
    // The reply's size against the limits: tonic's default 4 MiB on a client that sets none,
    // the API's own MAX_API_MESSAGE.
    let t = Instant::now();
    match rt.block_on(fleet::list_vms(&fleet.leader_addr())) {
        Ok(all) => {
            let bytes = prost::Message::encoded_len(&corral_proto::ListVmsResponse { vms: all });
            println!(
                "ListVms reply: {:.2} MiB of protobuf (gRPC, stale, {}); tonic's default limit is 4 MiB, the API's {} MiB",
                bytes as f64 / (1024.0 * 1024.0),
                ms(t.elapsed()),
                corral_proto::MAX_API_MESSAGE >> 20
            );
        }
        Err(e) => println!("ListVms over gRPC FAILED: {}", e.message()),
    }
    for (who, i) in [("follower", fleet.follower()), ("leader", fleet.leader)] {
        for (format, args) in [("table", &["vm", "list"][..]), ("json", &["-o", "json", "vm", "list"][..])] {
            let mut times = Vec::new();
            let mut bytes = 0;
            let mut error = None;
            for _ in 0..runs {
                check_interrupt();
                let t = Instant::now();
                let out = fleet.c.corral(i, args);
                let took = t.elapsed();
                if out.code != 0 {
                    error = Some(out.stderr.trim().to_string());
                    break;
                }
                bytes = out.stdout.len();
                times.push(took);
            }
            times.sort();
            match error {
                Some(e) => println!("{who} {format}: FAILED after {} runs: {e}", times.len()),
                None => println!(
                    "{who} ({}) {format}: p50 {}, max {} ({:.1} MiB of output)",
                    fleet.name(i),
                    ms(percentile(&times, 0.5)),
                    ms(*times.last().unwrap_or(&Duration::ZERO)),
                    bytes as f64 / (1024.0 * 1024.0)
                ),
            }
        }
    }
}

/// A new learner: from its join command until its applied index reaches the leader's (it
/// installed a snapshot of the whole state). Returns its harness index.
pub fn catch_up(rt: &tokio::runtime::Runtime, fleet: &mut Fleet) -> Option<usize> {
    check_interrupt();
    println!("\n## a new learner joins the full cluster and catches up");
    let voters = fleet.voters.len().to_string();
    let n = fleet.c.add_node(&["--voters", &voters]);
    let peer = fleet.leader_addr();
    let t = Instant::now();
    let joined = fleet::join(&fleet.c, n, &peer);
    let new_addr = fleet.addr(n);
    let leader_addr = fleet.leader_addr();
    let deadline = t + Duration::from_secs(600);
    let mut last = (0, 0);
    while Instant::now() < deadline {
        check_interrupt();
        let (mine, theirs) = rt.block_on(async { tokio::join!(fleet::status(&new_addr), fleet::status(&leader_addr)) });
        if let (Some(m), Some(l)) = (mine, theirs) {
            last = (m.last_applied, l.last_applied);
            if m.last_applied >= l.last_applied && m.last_applied > 0 {
                println!(
                    "join command returned after {}; applied index {} reached the leader's {} after {} \
                     (snapshot index {} on the new node)",
                    secs(joined),
                    m.last_applied,
                    l.last_applied,
                    secs(t.elapsed()),
                    m.snapshot_index
                );
                return Some(n);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("the new node did not catch up within 600 s: applied {} of the leader's {}", last.0, last.1);
    Some(n)
}
