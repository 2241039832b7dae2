//! Fault schedules on sandbox hosts with HA VMs (real QEMU guests): a seeded schedule of a
//! frozen leader (shorter than the lease), a host cut off, a power loss and a killed corrald,
//! while the double-run monitor watches every host's libvirt. Checked: no VM ever ran on two
//! hosts, no host that was not faulted restarted or stopped its guests, and every HA VM of a
//! faulted host came up elsewhere within the bound.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use corral_cli::views::{HostView, VmView};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::sandbox::{Sandbox, GUEST_UP, WAIT};
use crate::wait_until;

/// How long an HA VM of a faulted host may take to be up on another host.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HaFault {
    /// SIGSTOP of the leader's corrald for less than the lease: nothing may be fenced.
    LeaderFreeze,
    /// The host's network cut: it must fence itself, its HA VMs restart elsewhere.
    Partition,
    /// The host's libvirtd, QEMUs and corrald die at once.
    PowerLoss,
    /// SIGKILL of corrald alone: the watchdog powers the host off.
    KillCorrald,
}

impl fmt::Display for HaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HaFault::LeaderFreeze => "leader-freeze",
            HaFault::Partition => "partition",
            HaFault::PowerLoss => "power-loss",
            HaFault::KillCorrald => "kill-corrald",
        })
    }
}

/// One step: a fault, on a host (by index; a leader freeze hits the leader), held `hold` (a
/// freeze) or until the host's HA VMs are up elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaStep {
    pub fault: HaFault,
    pub host: usize,
    pub hold: Duration,
}

impl fmt::Display for HaStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fault {
            HaFault::LeaderFreeze => write!(f, "{} the leader for {:.1}s", self.fault, self.hold.as_secs_f64()),
            _ => write!(f, "{} host{}", self.fault, self.host + 1),
        }
    }
}

/// The schedule for `seed`: two or three steps on `hosts` hosts.
pub fn ha_plan(seed: u64, hosts: usize) -> Vec<HaStep> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rng.gen_range(2..=3))
        .map(|_| {
            let fault = match rng.gen_range(0..4) {
                0 => HaFault::LeaderFreeze,
                1 => HaFault::Partition,
                2 => HaFault::PowerLoss,
                _ => HaFault::KillCorrald,
            };
            // A freeze stays under the sandbox's 2 s watchdog less a renewal period: longer, the
            // frozen host's own watchdog powers it off, as it must.
            HaStep { fault, host: rng.gen_range(0..hosts), hold: Duration::from_millis(rng.gen_range(300..1400)) }
        })
        .collect()
}

#[derive(Debug, Default)]
pub struct HaReport {
    pub seed: u64,
    pub faults: BTreeMap<HaFault, usize>,
    /// Fault to HA VM up on another host, per VM that had to move.
    pub failovers: Vec<Duration>,
    pub violations: Vec<String>,
}

impl fmt::Display for HaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let moves: Vec<String> = self.failovers.iter().map(|d| format!("{:.1}s", d.as_secs_f64())).collect();
        write!(
            f,
            "sandbox seed {}: faults [{}], failovers [{}], violations {}",
            self.seed,
            faults.join(", "),
            moves.join(" "),
            self.violations.len()
        )?;
        for v in &self.violations {
            write!(f, "\n  VIOLATION (sandbox seed {}): {v}", self.seed)?;
        }
        Ok(())
    }
}

fn vm(sb: &Sandbox, name: &str) -> Result<VmView, String> {
    let out = sb.corral(&["-o", "json", "vm", "show", name]);
    if out.code != 0 {
        return Err(out.stderr.trim().to_string());
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))
}

/// Waits until every host is `up` in `host list`.
fn all_hosts_up(sb: &Sandbox) {
    wait_until(WAIT, "every sandbox host up", || {
        let out = sb.corral(&["-o", "json", "host", "list"]);
        let hosts: Vec<HostView> = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stderr))?;
        let down: Vec<String> =
            hosts.iter().filter(|h| h.state != "up").map(|h| format!("{} {}", h.name, h.state)).collect();
        if down.is_empty() && hosts.len() == sb.hosts.len() {
            Ok(())
        } else {
            Err(down.join(", "))
        }
    });
}

/// Runs one schedule on a formed sandbox: one HA guest per host, the faults, then the checks.
/// The guests are deleted and every host is brought back at the end.
pub fn run_ha_schedule(sb: &Sandbox, seed: u64) -> HaReport {
    let plan = ha_plan(seed, sb.hosts.len());
    println!("sandbox schedule seed {seed}:");
    for s in &plan {
        println!("  {s}");
    }
    let mut report = HaReport { seed, ..Default::default() };
    restore(sb);
    let names: Vec<String> = (0..sb.hosts.len()).map(|i| format!("ha{seed}-{}", i + 1)).collect();
    let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
    for (i, name) in names.iter().enumerate() {
        let host = sb.hosts[i].name.clone();
        #[rustfmt::skip]
        sb.cli_json::<VmView>(&[
            "vm", "create", name, "--memory", "96M", "--vcpus", "1", "--domain-type", "qemu",
            "--kernel", &kernel, "--initrd", &initrd, "--cmdline", "console=ttyS0 panic=-1",
            "--start", "--host", &host, "--ha", "--ha-priority", "high",
        ]);
    }
    for name in &names {
        sb.wait_status(name, "up");
        sb.wait_console(name, GUEST_UP);
    }
    let boots: Vec<usize> = names.iter().map(|n| sb.count(n, GUEST_UP)).collect();
    let monitor = sb.monitor();
    monitor.wait_rounds(5, WAIT);
    // Hosts that a fault hit (their guests may be stopped and restarted elsewhere), and the
    // guests that ever ran on one.
    let mut faulted: Vec<String> = Vec::new();
    for step in &plan {
        let host =
            if step.fault == HaFault::LeaderFreeze { sb.leader_name() } else { sb.hosts[step.host].name.clone() };
        if host.is_empty() {
            report.violations.push(format!("{}: no leader known before the fault", step.fault));
            continue;
        }
        println!("  {} {host}", step.fault);
        *report.faults.entry(step.fault).or_default() += 1;
        if step.fault == HaFault::LeaderFreeze {
            sb.stop_corrald(&host);
            std::thread::sleep(step.hold);
            sb.cont_corrald(&host);
            continue;
        }
        let here: Vec<String> = names
            .iter()
            .filter(|n| vm(sb, n).is_ok_and(|v| v.host.as_deref() == Some(host.as_str())))
            .cloned()
            .collect();
        if step.fault == HaFault::KillCorrald {
            // A corrald that has held no lease yet (just powered on) has not armed its watchdog
            // and runs nothing: killing it then fences nothing. Kill one that guards its host.
            wait_until(WAIT, &format!("{host}'s watchdog armed"), || {
                let log = sb.watchdog_log(&host);
                let last = log.lines().last().unwrap_or_default().to_string();
                (last.ends_with("armed") && !last.ends_with("not armed")).then_some(()).ok_or(last)
            });
        }
        faulted.push(host.clone());
        let t = Instant::now();
        match step.fault {
            HaFault::Partition => sb.partition(&host),
            HaFault::PowerLoss => sb.power_off(&host),
            HaFault::KillCorrald => sb.kill_corrald(&host),
            HaFault::LeaderFreeze => unreachable!("handled above"),
        }
        for name in &here {
            let deadline = t + FAILOVER_BOUND;
            loop {
                match vm(sb, name) {
                    Ok(v) if v.status == "up" && v.host.as_deref().is_some_and(|h| h != host) => {
                        report.failovers.push(t.elapsed());
                        break;
                    }
                    seen if Instant::now() > deadline => {
                        report.violations.push(format!(
                            "HA VM {name} of {host} ({}) not up elsewhere within {FAILOVER_BOUND:?}: {seen:?}",
                            step.fault
                        ));
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        match step.fault {
            HaFault::Partition => sb.heal(&host),
            HaFault::KillCorrald => {
                // Its watchdog powers it off; only then can it be powered on again.
                wait_until(WAIT, &format!("the watchdog to power {host} off"), || {
                    if sb.is_powered_on(&host) {
                        Err(sb.watchdog_log(&host).lines().last().unwrap_or_default().to_string())
                    } else {
                        Ok(())
                    }
                });
                sb.power_on(&host);
            }
            _ => sb.power_on(&host),
        }
        all_hosts_up(sb);
    }
    // Give a wrongful fencing time to show: a host declared down needs a lease and its margin,
    // and its guests a restart.
    std::thread::sleep(SETTLE);
    let seen = monitor.stop();
    for v in &seen.violations {
        report.violations.push(format!("a guest ran on two hosts at once: {v}"));
    }
    // A host no fault hit (a short freeze is no fault) stays powered on, and its guest runs
    // on there, never booted again.
    for (i, name) in names.iter().enumerate() {
        let host = &sb.hosts[i].name;
        if faulted.contains(host) {
            continue;
        }
        if !sb.is_powered_on(host) || sb.watchdog_fired(host) {
            let last = sb.watchdog_log(host).lines().last().unwrap_or_default().to_string();
            report.violations.push(format!("{host}, which no fault hit, was powered off by its watchdog: {last}"));
        }
        let now = sb.count(name, GUEST_UP);
        let where_now = vm(sb, name).map(|v| (v.status, v.host.unwrap_or_default()));
        if now != boots[i] || where_now.as_ref().map_or(true, |(s, h)| s != "up" || h != host) {
            report.violations.push(format!(
                "{name} of {host}, which no fault hit, did not run on: {} boots ({} before), now {where_now:?} (a healthy host fenced)",
                now, boots[i]
            ));
        }
    }
    for name in &names {
        let _ = sb.corral(&["vm", "stop", name]);
    }
    for name in &names {
        let _ = wait_until_down(sb, name);
        let _ = sb.corral(&["vm", "delete", name]);
    }
    report
}

/// How long after the last fault the checks wait for a wrongful fencing to show.
const SETTLE: Duration = Duration::from_secs(8);

/// Brings every host back (powered on, network healed) and waits until all are `up`.
fn restore(sb: &Sandbox) {
    for h in &sb.hosts {
        if !sb.is_powered_on(&h.name) {
            sb.power_on(&h.name);
        }
    }
    all_hosts_up(sb);
}

fn wait_until_down(sb: &Sandbox, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if vm(sb, name).is_ok_and(|v| v.status == "down") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{name} not down within {WAIT:?}"))
}
