//! What metrics cost an idle node (issue 18): the CPU share of the leader's corrald with no
//! scrapes, scraped every 15 s and every 1 s on `--metrics-listen` (3-node cluster, 32 running
//! VMs on libvirt's test driver, so that per-VM usage is read too), from /proc/PID/stat; and a
//! scrape's own latency and size. Windows of `WINDOW`, `ROUNDS` of each, medians.

use std::time::{Duration, Instant};

use corral_cli::views::VmView;
use corral_tests::{free_port, scrape, Cluster};

use super::{ms, percentile};

const VMS: usize = 32;
const WINDOW: Duration = Duration::from_secs(30);
const ROUNDS: usize = 3;

/// CPU time (user + system) of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}

/// The CPU share (percent of one core) of `pid` over one window, scraping `addr` every
/// `every` (None: not at all); returns it with the scrapes made.
fn window(pid: u32, addr: &str, every: Option<Duration>, hz: f64) -> (f64, usize) {
    let (start, before) = (Instant::now(), cpu_ticks(pid));
    let mut scrapes = 0;
    let mut next = start;
    while start.elapsed() < WINDOW {
        match every {
            Some(period) if Instant::now() >= next => {
                if scrape::metrics(addr).is_ok() {
                    scrapes += 1;
                }
                next += period;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let used = (cpu_ticks(pid) - before) as f64 / hz;
    (100.0 * used / start.elapsed().as_secs_f64(), scrapes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn metrics_cost() {
    let mut c = Cluster::start(0, &[]);
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    for a in &addrs {
        c.add_node(&["--metrics-listen", a]);
    }
    c.bootstrap();
    c.join(1);
    c.join(2);
    let leader = c.leader();
    let host = c.nodes[leader].name.clone();
    for i in 0..VMS {
        let name = format!("m{i}");
        c.cli_json::<VmView>(leader, &["vm", "create", &name, "--memory", "64M", "--vcpus", "1"]);
        c.cli_json::<VmView>(leader, &["vm", "start", &name, "--host", &host]);
    }
    c.wait_status(leader, &format!("m{}", VMS - 1), "up");
    let (pid, addr) = (c.nodes[leader].pid().expect("the leader runs"), addrs[leader].clone());
    let hz = clock_ticks_per_second();
    println!(
        "\n## metrics: CPU of the leader's corrald (% of one core), idle 3-node cluster, {VMS} VMs running on it, \
         {ROUNDS} windows of {} s each, medians",
        WINDOW.as_secs()
    );
    // Without scrapes first: a scrape keeps the agent reading VM usage for two minutes after it.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rows = Vec::new();
    for (label, every) in [
        ("no scrapes", None),
        ("every 15 s", Some(Duration::from_secs(15))),
        ("every 1 s", Some(Duration::from_secs(1))),
    ] {
        let runs: Vec<(f64, usize)> = (0..ROUNDS).map(|_| window(pid, &addr, every, hz)).collect();
        let scrapes: usize = runs.iter().map(|r| r.1).sum();
        let cpu = median(runs.iter().map(|r| r.0).collect());
        println!("{label:>12}: {cpu:.2} % ({scrapes} scrapes)");
        rows.push(cpu);
    }
    let per_scrape_ms = (rows[2] - rows[0]) / 100.0 * 1000.0;
    println!("scraping every 1 s adds {:.2} points, about {per_scrape_ms:.2} ms of CPU per scrape", rows[2] - rows[0]);

    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..200 {
        let t = Instant::now();
        let text = scrape::metrics(&addr).expect("a scrape");
        times.push(t.elapsed());
        size = text.len();
    }
    times.sort();
    println!(
        "one scrape over loopback: p50 {}, p99 {}, {:.1} KiB ({} series lines)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        size as f64 / 1024.0,
        scrape::metrics(&addr).map_or(0, |t| t.lines().filter(|l| !l.starts_with('#')).count())
    );
}
