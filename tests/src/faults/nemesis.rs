//! The nemesis: a seeded schedule of faults (kill -9 and restart, SIGSTOP/SIGCONT, a node cut
//! off from its peers, a slow disk, load bursts) and the means to inject them on a loopback
//! cluster. Every node runs in a cgroup of its own, so iptables can tell its packets apart
//! although all nodes share 127.0.0.1; every rule and cgroup is removed again by a Drop guard.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The kinds of fault, as the summary counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// SIGKILL, then a restart from the same data dir when the hold ends.
    Kill,
    /// SIGSTOP, then SIGCONT when the hold ends.
    Pause,
    /// The node's packets to its peers and theirs to it are dropped (clients still reach it).
    Partition,
    /// The node's block writes throttled to a few per second.
    SlowDisk,
    /// Extra clients that write as fast as they can.
    LoadBurst,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::SlowDisk => "slow-disk",
            Fault::LoadBurst => "load-burst",
        })
    }
}

/// Whom a fault hits: nodes chosen by the schedule, or whichever node leads when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Nodes(Vec<usize>),
    Leader,
    Cluster,
}

/// One fault: starts `at` after the schedule began and is healed `hold` later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
    pub target: Target,
    pub hold: Duration,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Nodes(n) => n.iter().map(|i| format!("host{}", i + 1)).collect::<Vec<_>>().join("+"),
            Target::Leader => "the leader".into(),
            Target::Cluster => "the cluster".into(),
        };
        write!(f, "+{:.2}s {} {target} for {:.2}s", self.at.as_secs_f64(), self.fault, self.hold.as_secs_f64())
    }
}

/// The schedule for `seed`: faults one after another (two nodes at once on five voters, never
/// a majority), each held 0.5-5 s with a short calm between, all healed by `duration`.
pub fn plan(seed: u64, voters: usize, duration: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let end = duration.as_millis() as u64;
    let mut steps = Vec::new();
    let mut t = rng.gen_range(300..1200);
    while t + 800 < end {
        let fault = match rng.gen_range(0..100) {
            0..=21 => Fault::Kill,
            22..=43 => Fault::Pause,
            44..=71 => Fault::Partition,
            72..=83 => Fault::SlowDisk,
            _ => Fault::LoadBurst,
        };
        let target = if fault == Fault::LoadBurst {
            Target::Cluster
        } else if rng.gen_bool(0.4) {
            Target::Leader
        } else {
            let first = rng.gen_range(0..voters);
            let mut nodes = vec![first];
            if voters >= 5 && rng.gen_bool(0.3) {
                let second = (first + rng.gen_range(1..voters)) % voters;
                nodes.push(second);
            }
            Target::Nodes(nodes)
        };
        let hold = rng.gen_range(500..5000).min(end - t - 300);
        steps.push(Step { at: Duration::from_millis(t), fault, target, hold: Duration::from_millis(hold) });
        t += hold + rng.gen_range(200..1500);
    }
    steps
}

/// Runs a command that must succeed; says which one failed and what it printed.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A name no other schedule of this process, and no other process, uses.
fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` or, on a hybrid system,
/// `/sys/fs/cgroup/unified`).
fn cgroup2_root() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| format!("/proc/mounts: {e}"))?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .next()
        .ok_or_else(|| "no cgroup2 hierarchy is mounted (needed to tell the nodes' packets apart)".into())
}

/// One cgroup v2 per node under a parent of this schedule's, and (where the v1 blkio
/// controller is mounted) one throttled blkio cgroup for the slow-disk fault.
pub struct Cgroups {
    root: PathBuf,
    parent: PathBuf,
    nodes: usize,
    blkio: Option<PathBuf>,
}

/// Block writes per second a node with a slow disk may make.
const SLOW_DISK_WRITE_IOPS: u32 = 8;

impl Cgroups {
    pub fn new(nodes: usize) -> Result<Cgroups, String> {
        let root = cgroup2_root()?;
        let parent = root.join(unique_name("corral-faults"));
        for i in 0..nodes {
            let dir = parent.join(format!("n{}", i + 1));
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make cgroup {}: {e}", dir.display()))?;
        }
        let mut groups = Cgroups { root, parent, nodes, blkio: None };
        groups.blkio = groups.make_blkio();
        Ok(groups)
    }

    /// The throttled blkio cgroup, or none where there is no v1 blkio controller or no block
    /// device under the temp dir (the slow-disk fault is then skipped).
    fn make_blkio(&self) -> Option<PathBuf> {
        let base = Path::new("/sys/fs/cgroup/blkio");
        if !base.join("cgroup.procs").exists() {
            return None;
        }
        let device = block_device_of(&std::env::temp_dir())?;
        let dir = base.join(self.parent.file_name()?);
        std::fs::create_dir_all(&dir).ok()?;
        let rule = format!("{device} {SLOW_DISK_WRITE_IOPS}");
        std::fs::write(dir.join("blkio.throttle.write_iops_device"), rule).ok()?;
        Some(dir)
    }

    /// The `cgroup.procs` file node `i`'s corrald joins.
    pub fn procs(&self, i: usize) -> PathBuf {
        self.parent.join(format!("n{}", i + 1)).join("cgroup.procs")
    }

    /// Node `i`'s cgroup as iptables' `--path` names it (relative to the hierarchy's root).
    pub fn xt_path(&self, i: usize) -> String {
        let rel = self.parent.strip_prefix(&self.root).expect("under the root");
        format!("{}/n{}", rel.display(), i + 1)
    }

    pub fn slow_disk_supported(&self) -> bool {
        self.blkio.is_some()
    }

    /// Moves `pid` (every thread of it) into the throttled blkio cgroup.
    pub fn slow_disk(&self, pid: u32) -> Result<(), String> {
        let dir = self.blkio.as_ref().ok_or("no blkio controller")?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| format!("slow disk for {pid}: {e}"))
    }

    /// Moves every process of the throttled cgroup back to the blkio root.
    pub fn heal_disks(&self) {
        let Some(dir) = &self.blkio else { return };
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = std::fs::write("/sys/fs/cgroup/blkio/cgroup.procs", pid);
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.heal_disks();
        if let Some(dir) = &self.blkio {
            let _ = std::fs::remove_dir(dir);
        }
        // A killed process leaves its cgroup a moment later: retry briefly.
        for _ in 0..50 {
            let mut left = false;
            for i in 0..self.nodes {
                let dir = self.parent.join(format!("n{}", i + 1));
                if dir.exists() && std::fs::remove_dir(&dir).is_err() {
                    left = true;
                }
            }
            if !left && std::fs::remove_dir(&self.parent).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("faults: could not remove cgroup {}", self.parent.display());
    }
}

/// `major:minor` of the block device that holds `path`, from /proc/self/mountinfo.
fn block_device_of(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = path.canonicalize().ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || !path.starts_with(f[4]) {
            continue;
        }
        if best.as_ref().is_none_or(|(len, _)| f[4].len() >= *len) {
            best = Some((f[4].len(), f[2].to_string()));
        }
    }
    let (_, device) = best?;
    // A partition's throttle must name the whole disk: find its parent in /sys.
    let sys = PathBuf::from(format!("/sys/dev/block/{device}"));
    let whole = if sys.join("partition").exists() {
        std::fs::read_to_string(sys.join("../dev")).ok()?.trim().to_string()
    } else {
        device
    };
    (!whole.starts_with("0:")).then_some(whole)
}

/// An iptables chain of this schedule's, hooked from OUTPUT, that partitions add DROP rules
/// to. Removed with its hook on drop.
pub struct Firewall {
    chain: String,
}

fn iptables(args: &[&str]) -> Result<(), String> {
    // -w: wait for the xtables lock rather than fail when another test holds it.
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run("iptables", &all)
}

impl Firewall {
    pub fn new() -> Result<Firewall, String> {
        // Chain names are at most 28 characters.
        let name = unique_name("CORRAL-F");
        let chain: String = name.chars().take(28).collect();
        iptables(&["-N", &chain]).map_err(|e| format!("{e} (is the iptables package installed? make deps)"))?;
        let fw = Firewall { chain };
        iptables(&["-I", "OUTPUT", "-j", &fw.chain])?;
        Ok(fw)
    }

    /// Cuts node `me` off from every other node: its packets to their ports and theirs to its
    /// port are dropped. Clients (outside the nodes' cgroups) still reach every node.
    pub fn isolate(&self, groups: &Cgroups, ports: &[u16], me: usize) -> Result<(), String> {
        let my_group = groups.xt_path(me);
        let my_port = ports[me].to_string();
        for (peer, port) in ports.iter().enumerate().filter(|(p, _)| *p != me) {
            let port = port.to_string();
            let peer_group = groups.xt_path(peer);
            #[rustfmt::skip]
            iptables(&["-A", &self.chain, "-p", "tcp", "-m", "cgroup", "--path", &my_group, "--dport", &port, "-j", "DROP"])?;
            #[rustfmt::skip]
            iptables(&["-A", &self.chain, "-p", "tcp", "-m", "cgroup", "--path", &peer_group, "--dport", &my_port, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<(), String> {
        iptables(&["-F", &self.chain])
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = iptables(&["-D", "OUTPUT", "-j", &self.chain]);
        let _ = iptables(&["-F", &self.chain]);
        if let Err(e) = iptables(&["-X", &self.chain]) {
            eprintln!("faults: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_every_time() {
        for seed in [1, 7, 1234] {
            assert_eq!(plan(seed, 3, Duration::from_secs(15)), plan(seed, 3, Duration::from_secs(15)));
        }
        assert_ne!(plan(1, 5, Duration::from_secs(15)), plan(2, 5, Duration::from_secs(15)));
    }

    #[test]
    fn a_schedule_ends_in_time_and_never_faults_a_majority() {
        for seed in 0..200 {
            for voters in [3, 5] {
                let steps = plan(seed, voters, Duration::from_secs(15));
                assert!(!steps.is_empty(), "seed {seed}");
                let mut last_end = Duration::ZERO;
                for s in &steps {
                    assert!(s.at >= last_end, "seed {seed}: overlapping steps");
                    last_end = s.at + s.hold;
                    if let Target::Nodes(n) = &s.target {
                        assert!(n.len() <= (voters - 1) / 2, "seed {seed}: {s}");
                    }
                }
                assert!(last_end <= Duration::from_secs(15), "seed {seed}: ends at {last_end:?}");
            }
        }
    }
}
