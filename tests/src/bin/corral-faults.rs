//! corral-faults: randomized fault schedules against loopback clusters, Jepsen-style.
//!
//!   corral-faults --schedules N --seed S [--voters 3|5] [--duration 15s] [--clients 8]
//!                 [--keys 12] [--timeout 3s] [--plan-only] [--stale-reads]
//!   corral-faults --sandbox --schedules N --seed S
//!
//! Schedule i runs with seed S+i (printed with its faults; `--schedules 1 --seed S+i` replays
//! its faults) on a fresh cluster of 3 or 5 voters (alternating unless --voters is given):
//! clients create, edit, read and delete config-only VMs while the nemesis kills, freezes,
//! partitions and slows nodes; every fault is healed, then the history is checked (linearizable
//! per VM, no acknowledged write lost, every node's copy the same). A violation prints its seed
//! and the shortest history excerpt that shows it; the exit code is then 1. Needs root (cgroups,
//! iptables). `--plan-only` prints the schedules without running them; `--stale-reads` is the
//! negative control (reads of a node's own copy, which the checker must catch).
//!
//! With --sandbox the schedules run on three sandbox hosts (deploy/sandbox, real QEMU guests),
//! one HA guest per host: a leader frozen for less than the lease, a host cut off, a power
//! loss, a killed corrald; checked: no guest ever ran on two hosts (the 50 ms monitor), no
//! host that no fault hit stopped its guest, every HA guest of a faulted host up elsewhere
//! within 60 s.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use corral_tests::faults::nemesis::plan;
use corral_tests::faults::sandbox_ha::{ha_plan, run_ha_schedule};
use corral_tests::faults::{run_schedule, Options, Report};
use corral_tests::sandbox::Sandbox;

struct Args {
    /// Print the schedules without running them.
    plan_only: bool,
    /// Run the schedules on sandbox hosts with HA VMs instead.
    sandbox: bool,
    schedules: u64,
    seed: u64,
    voters: Option<usize>,
    options: Options,
}

fn parse_args() -> Result<Args, String> {
    let mut out =
        Args { plan_only: false, sandbox: false, schedules: 1, seed: 1, voters: None, options: Options::default() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{a}: '{v}' is not a number"));
        let duration = |v: String| humantime::parse_duration(&v).map_err(|e| format!("{a}: '{v}': {e}"));
        match a.as_str() {
            "--plan-only" => out.plan_only = true,
            "--sandbox" => out.sandbox = true,
            "--stale-reads" => out.options.stale_reads = true,
            "--schedules" => out.schedules = number(value()?)?,
            "--seed" => out.seed = number(value()?)?,
            "--voters" => match number(value()?)? {
                v @ (3 | 5) => out.voters = Some(v as usize),
                v => return Err(format!("--voters: {v} voters; 3 or 5")),
            },
            "--duration" => out.options.duration = duration(value()?)?,
            "--clients" => out.options.clients = number(value()?)?.max(1) as usize,
            "--keys" => out.options.keys = number(value()?)?.max(1) as usize,
            "--timeout" => out.options.timeout = duration(value()?)?,
            "-h" | "--help" => {
                println!("usage: corral-faults --schedules N --seed S [--voters 3|5] [--duration 15s] [--clients 8] [--keys 12] [--timeout 3s] [--plan-only] [--stale-reads]\n       corral-faults --sandbox --schedules N --seed S");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Totals {
    schedules: u64,
    faults: BTreeMap<String, usize>,
    ok: usize,
    failed: usize,
    unknown: usize,
    violations: usize,
    undecided: usize,
    failing_seeds: Vec<u64>,
    broken_seeds: Vec<u64>,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.schedules += 1;
        for (k, n) in &r.faults {
            *self.faults.entry(k.to_string()).or_default() += n;
        }
        self.ok += r.ok;
        self.failed += r.failed;
        self.unknown += r.unknown;
        self.violations += r.violations();
        self.undecided += r.undecided.len();
        if r.violations() > 0 {
            self.failing_seeds.push(r.seed);
        }
    }

    fn print(&self, elapsed: Duration) {
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let total: usize = self.faults.values().sum();
        println!("== summary ({:.0} s)", elapsed.as_secs_f64());
        println!("schedules:  {} ({} could not run)", self.schedules, self.broken_seeds.len());
        println!("faults:     {total} ({})", faults.join(", "));
        println!(
            "operations: {} (ok {}, failed {}, unknown {})",
            self.ok + self.failed + self.unknown,
            self.ok,
            self.failed,
            self.unknown
        );
        println!("violations: {} (undecided VM histories: {})", self.violations, self.undecided);
        if !self.failing_seeds.is_empty() {
            println!("failing seeds: {:?}", self.failing_seeds);
        }
        if !self.broken_seeds.is_empty() {
            println!("seeds the harness could not run: {:?}", self.broken_seeds);
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("corral-faults: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    if args.sandbox {
        return sandbox(&args, started);
    }
    let mut totals = Totals::default();
    for i in 0..args.schedules {
        let seed = args.seed + i;
        let mut options = args.options.clone();
        options.voters = args.voters.unwrap_or(if i % 2 == 0 { 3 } else { 5 });
        if args.plan_only {
            println!("seed {seed}, {} voters:", options.voters);
            for step in plan(seed, options.voters, options.duration) {
                println!("  {step}");
            }
            continue;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| run_schedule(seed, &options))) {
            Ok(Ok(report)) => {
                println!("{report}");
                totals.add(&report);
            }
            Ok(Err(e)) => {
                eprintln!("corral-faults: seed {seed}: {e}");
                totals.broken_seeds.push(seed);
                totals.schedules += 1;
            }
            Err(_) => {
                eprintln!("corral-faults: seed {seed}: the harness panicked (above)");
                totals.broken_seeds.push(seed);
                totals.schedules += 1;
            }
        }
    }
    if args.plan_only {
        return ExitCode::SUCCESS;
    }
    totals.print(started.elapsed());
    if totals.violations > 0 || !totals.broken_seeds.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The --sandbox run: one sandbox for every schedule.
fn sandbox(args: &Args, started: Instant) -> ExitCode {
    if args.plan_only {
        for i in 0..args.schedules {
            let steps: Vec<String> = ha_plan(args.seed + i, 3).iter().map(|s| s.to_string()).collect();
            println!("sandbox seed {}: {}", args.seed + i, steps.join(", "));
        }
        return ExitCode::SUCCESS;
    }
    let Some(sb) = Sandbox::up(3) else {
        eprintln!("corral-faults: the sandbox hosts need root");
        return ExitCode::from(2);
    };
    let (mut faults, mut failovers, mut violations) = (BTreeMap::<String, usize>::new(), Vec::new(), 0);
    let mut failing = Vec::new();
    for i in 0..args.schedules {
        let seed = args.seed + i;
        let report = match std::panic::catch_unwind(AssertUnwindSafe(|| run_ha_schedule(&sb, seed))) {
            Ok(r) => r,
            Err(_) => {
                // The sandbox could not be brought back (above): later schedules would not mean much.
                eprintln!("corral-faults: sandbox seed {seed}: the harness panicked (above); stopping");
                violations += 1;
                failing.push(seed);
                break;
            }
        };
        println!("{report}");
        for (k, n) in &report.faults {
            *faults.entry(k.to_string()).or_default() += n;
        }
        failovers.extend(report.failovers.iter().copied());
        violations += report.violations.len();
        if !report.violations.is_empty() {
            failing.push(seed);
        }
    }
    failovers.sort();
    let faults: Vec<String> = faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("== sandbox summary ({:.0} s)", started.elapsed().as_secs_f64());
    println!("schedules:  {}", args.schedules);
    println!("faults:     {}", faults.join(", "));
    if let (Some(first), Some(last)) = (failovers.first(), failovers.last()) {
        let median = failovers[failovers.len() / 2];
        println!(
            "failovers:  {} (fastest {:.1} s, median {:.1} s, slowest {:.1} s)",
            failovers.len(),
            first.as_secs_f64(),
            median.as_secs_f64(),
            last.as_secs_f64()
        );
    }
    println!("violations: {violations}");
    if !failing.is_empty() {
        println!("failing seeds: {failing:?}");
    }
    if violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
