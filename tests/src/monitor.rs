//! The double-run monitor: watches every host's libvirt all through a test and records any
//! domain seen running on two hosts at once, the one thing HA must never do. It only lists
//! domains; it never changes anything on a host.
//!
//! How it sees: one thread per host keeps its own libvirt connection and, on a shared schedule
//! (every `period`), lists the domains that are running there (an incoming migration's paused
//! domain is not running). Each answer is an observation with the time window of its call; a
//! domain that consecutive polls of one host saw running is taken to have run there all along.
//! Two hosts whose such stretches for the same domain UUID overlap in time is a violation: at
//! some instant the domain may have run on both.
//!
//! Its limits, honestly:
//! - It samples. A double run shorter than a period can fall between two polls and go unseen.
//! - Overlapping windows are a conservative "at once": a live migration's handover (source
//!   paused then destination resumed within milliseconds) can show as one. Tests that use the
//!   monitor do not migrate during faults.
//! - A host whose libvirt does not answer is not seen at all until it answers again: a host it
//!   cannot reach might be running anything. Poll it through a path that a fault does not cut
//!   (the sandbox's per-host unix socket, see `Sandbox::monitor`), and check each host's
//!   `longest_gap`. Reconnects are tried at most once a second per host; a `qemu+tcp` host is
//!   first probed with a 500 ms TCP connect so that a dead host costs no long connect, but a
//!   call on an established TCP connection to a host that vanished can hang until TCP gives up
//!   (only that host's thread waits; `stop` does not wait for it).
//! - "Running" is libvirt's state; a paused domain on one host while it runs on another is not
//!   counted, nor is a QEMU that libvirt no longer knows about.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::sys;

/// At most one reconnect attempt per host this often: a dead host must not be hammered.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// How long a `qemu+tcp` host gets to accept a TCP connection before libvirt is asked to connect.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Observations are compared against others this far back (longer than any sane poll).
const KEEP: Duration = Duration::from_secs(30);
/// How long `stop` waits for a host's thread whose poll hangs.
const STOP_WAIT: Duration = Duration::from_secs(2);

pub struct Monitor {
    stop: Arc<AtomicBool>,
    table: Arc<Mutex<Table>>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
    period: Duration,
}

/// What the monitor saw, from `Monitor::stop`.
#[derive(Debug, Clone)]
pub struct MonitorReport {
    /// Periods in which at least one host answered.
    pub rounds: u64,
    pub per_host_polls: Vec<HostPolls>,
    /// One line per domain and pair of hosts it was seen running on at once.
    pub violations: Vec<String>,
    /// Every domain seen running (by UUID), and on which hosts, over the whole run.
    pub running_seen: BTreeMap<String, BTreeSet<String>>,
    pub period: Duration,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct HostPolls {
    pub host: String,
    /// Polls that answered.
    pub polls: u64,
    /// Polls or connects that failed (the host was skipped in those periods).
    pub failures: u64,
    /// The longest time without an answer from this host, including from the start and up to
    /// the stop: how long it was not watched.
    pub longest_gap: Duration,
    /// Its last poll still hung when the monitor stopped.
    pub hung_at_stop: bool,
}

/// One answer of one host.
struct Observation {
    start: Instant,
    end: Instant,
    /// UUID -> name of the domains running there.
    running: HashMap<String, String>,
    /// UUID -> the start of the first of this host's unbroken run of polls that saw it running:
    /// a domain seen running by consecutive polls is taken to have run in between.
    since: HashMap<String, Instant>,
}

struct Table {
    hosts: Vec<HostPolls>,
    last_answer: Vec<Instant>,
    /// Per host, its recent observations that saw anything running.
    recent: Vec<VecDeque<Observation>>,
    /// Per host, UUID -> since when its polls have seen it running without a break.
    streaks: Vec<HashMap<String, Instant>>,
    rounds: BTreeSet<u64>,
    /// (uuid, host a, host b) -> the first overlap seen, and how many overlaps in all.
    violations: BTreeMap<(String, usize, usize), (String, u64)>,
    running_seen: BTreeMap<String, BTreeSet<String>>,
    started: Instant,
}

impl Monitor {
    /// Starts watching the hosts at these libvirt URIs every `period`; each host is named by its URI.
    pub fn start(uris: Vec<String>, period: Duration) -> Monitor {
        Monitor::start_named(uris.into_iter().map(|u| (u.clone(), u)).collect(), period)
    }

    /// Starts watching hosts given as (name, libvirt URI) every `period`.
    pub fn start_named(hosts: Vec<(String, String)>, period: Duration) -> Monitor {
        assert!(!period.is_zero(), "the monitor's period must be more than zero");
        // Errors come back to us as values; libvirt's default handler would also print each,
        // which is noise for every poll of a powered-off host.
        static QUIET: Once = Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
        let started = Instant::now();
        let table = Arc::new(Mutex::new(Table {
            hosts: hosts
                .iter()
                .map(|(name, _)| HostPolls {
                    host: name.clone(),
                    polls: 0,
                    failures: 0,
                    longest_gap: Duration::ZERO,
                    hung_at_stop: false,
                })
                .collect(),
            last_answer: vec![started; hosts.len()],
            recent: hosts.iter().map(|_| VecDeque::new()).collect(),
            streaks: hosts.iter().map(|_| HashMap::new()).collect(),
            rounds: BTreeSet::new(),
            violations: BTreeMap::new(),
            running_seen: BTreeMap::new(),
            started,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = hosts
            .into_iter()
            .enumerate()
            .map(|(i, (name, uri))| {
                let watcher = Watcher { i, uri, period, started, stop: stop.clone(), table: table.clone() };
                std::thread::Builder::new()
                    .name(format!("monitor-{name}"))
                    .spawn(move || watcher.run())
                    .expect("spawn a monitor thread")
            })
            .collect();
        Monitor { stop, table, threads, started, period }
    }

    /// Periods so far in which at least one host answered.
    pub fn rounds(&self) -> u64 {
        self.table.lock().unwrap_or_else(PoisonError::into_inner).rounds.len() as u64
    }

    /// Waits (at most `timeout`) until at least `n` rounds have been polled.
    pub fn wait_rounds(&self, n: u64, timeout: Duration) {
        crate::wait_until(timeout, &format!("{n} monitor rounds"), || match self.rounds() {
            r if r >= n => Ok(()),
            r => Err(format!("{r} rounds")),
        });
    }

    /// Stops every thread (not waiting long for one whose poll hangs) and reports.
    pub fn stop(mut self) -> MonitorReport {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + STOP_WAIT;
        let mut hung = Vec::new();
        for (i, t) in self.threads.drain(..).enumerate() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                // Left to finish on its own: it only writes to the shared table, which it owns a share of.
                hung.push(i);
            }
        }
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for i in 0..table.hosts.len() {
            let gap = now - table.last_answer[i];
            let h = &mut table.hosts[i];
            h.longest_gap = h.longest_gap.max(gap);
            h.hung_at_stop = hung.contains(&i);
        }
        MonitorReport {
            rounds: table.rounds.len() as u64,
            per_host_polls: table.hosts.clone(),
            violations: table
                .violations
                .values()
                .map(|(first, n)| if *n > 1 { format!("{first}; {n} overlapping polls in all") } else { first.clone() })
                .collect(),
            running_seen: table.running_seen.clone(),
            period: self.period,
            duration: now - self.started,
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One host's polling thread.
struct Watcher {
    i: usize,
    uri: String,
    period: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    table: Arc<Mutex<Table>>,
}

impl Watcher {
    fn run(self) {
        let mut conn: Option<Connect> = None;
        let mut last_connect: Option<Instant> = None;
        let mut tick = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            // Every host polls on the same schedule, so that a period is one round of all of them.
            let due = self.started + self.period * tick as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
                continue;
            }
            if conn.is_none() && last_connect.is_none_or(|t| t.elapsed() >= RECONNECT_EVERY) {
                last_connect = Some(now);
                conn = self.connect();
                if conn.is_none() {
                    self.failed();
                }
            }
            if let Some(c) = &conn {
                let start = Instant::now();
                match running_domains(c) {
                    Ok(running) => {
                        self.record(tick, Observation { start, end: Instant::now(), running, since: HashMap::new() })
                    }
                    Err(()) => {
                        conn = None;
                        self.failed();
                    }
                }
            }
            // The next period that has not begun yet: a slow poll skips periods rather than bunching up.
            tick = (self.started.elapsed().as_nanos() / self.period.as_nanos()) as u64 + 1;
        }
    }

    fn connect(&self) -> Option<Connect> {
        if let Some(addr) = tcp_address(&self.uri) {
            let reachable = addr
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| TcpStream::connect_timeout(&a, PROBE_TIMEOUT).is_ok());
            if !reachable {
                return None;
            }
        }
        Connect::open(Some(&self.uri)).ok()
    }

    fn failed(&self) {
        self.table.lock().unwrap_or_else(PoisonError::into_inner).hosts[self.i].failures += 1;
    }

    fn record(&self, tick: u64, mut obs: Observation) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let t = &mut *table;
        let i = self.i;
        obs.since =
            obs.running.keys().map(|u| (u.clone(), t.streaks[i].get(u).copied().unwrap_or(obs.start))).collect();
        t.streaks[i] = obs.since.clone();
        t.rounds.insert(tick);
        t.hosts[i].polls += 1;
        let gap = obs.end - t.last_answer[i];
        t.hosts[i].longest_gap = t.hosts[i].longest_gap.max(gap);
        t.last_answer[i] = obs.end;
        for uuid in obs.running.keys() {
            t.running_seen.entry(uuid.clone()).or_default().insert(t.hosts[i].host.clone());
        }
        for j in (0..t.recent.len()).filter(|j| *j != i) {
            for other in &t.recent[j] {
                // Each host's unbroken run of "running" polls, as an interval: two that overlap
                // in time are a double run.
                let overlaps = |u: &String| {
                    let (a0, b0) = (obs.since[u], other.since.get(u).copied().unwrap_or(other.start));
                    a0 <= other.end && b0 <= obs.end
                };
                for (uuid, name) in obs.running.iter().filter(|(u, _)| other.running.contains_key(*u) && overlaps(u)) {
                    let (a, b) = (i.min(j), i.max(j));
                    let at = |o: &Observation| {
                        format!("{:.3}-{:.3} s", (o.start - t.started).as_secs_f64(), (o.end - t.started).as_secs_f64())
                    };
                    let first = format!(
                        "domain {uuid} ({name}) running on {} (poll {}) and on {} (poll {})",
                        t.hosts[i].host,
                        at(&obs),
                        t.hosts[j].host,
                        at(other)
                    );
                    t.violations.entry((uuid.clone(), a, b)).or_insert((first, 0)).1 += 1;
                }
            }
        }
        let horizon = obs.end.checked_sub(KEEP);
        for q in t.recent.iter_mut() {
            while q.front().is_some_and(|o| horizon.is_some_and(|h| o.end < h)) {
                q.pop_front();
            }
        }
        if !obs.running.is_empty() {
            t.recent[i].push_back(obs);
        }
    }
}

/// UUID -> name of the domains running on this connection.
fn running_domains(conn: &Connect) -> Result<HashMap<String, String>, ()> {
    let flags = sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE | sys::VIR_CONNECT_LIST_DOMAINS_RUNNING;
    let domains = conn.list_all_domains(flags).map_err(|_| ())?;
    // A domain that goes away between the list and these calls is simply not counted.
    Ok(domains.iter().filter_map(|d| Some((d.uuid_string().ok()?, d.name().unwrap_or_default()))).collect())
}

/// `qemu+tcp://10.213.0.2/system` -> `10.213.0.2:16509` (libvirt's default TCP port).
fn tcp_address(uri: &str) -> Option<String> {
    let rest = uri.split_once("+tcp://")?.1;
    let authority = rest.split(['/', '?']).next()?.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(if authority.contains(':') { authority.to_string() } else { format!("{authority}:16509") })
}

impl MonitorReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for MonitorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "monitor: {} rounds in {:.1} s, every {} ms",
            self.rounds,
            self.duration.as_secs_f64(),
            self.period.as_millis()
        )?;
        for h in &self.per_host_polls {
            let hung = if h.hung_at_stop { ", a poll still hung at stop" } else { "" };
            writeln!(
                f,
                "  {}: {} polls, {} failed, longest unwatched {:.2} s{hung}",
                h.host,
                h.polls,
                h.failures,
                h.longest_gap.as_secs_f64()
            )?;
        }
        if self.violations.is_empty() {
            write!(f, "  no domain was seen running on two hosts at once")
        } else {
            write!(f, "  {} double run(s):", self.violations.len())?;
            self.violations.iter().try_for_each(|v| write!(f, "\n  {v}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_of_uris() {
        assert_eq!(tcp_address("qemu+tcp://10.213.0.2/system").as_deref(), Some("10.213.0.2:16509"));
        assert_eq!(tcp_address("qemu+tcp://root@10.213.0.2:16600/system").as_deref(), Some("10.213.0.2:16600"));
        assert_eq!(tcp_address("qemu+unix:///system?socket=/run/x/libvirt-sock"), None);
        assert_eq!(tcp_address("test:///default"), None);
    }

    /// The test driver gives each connection a private fake host with one running domain, so
    /// two "hosts" on it share that domain's UUID: exactly a double run, as far as the
    /// monitor can tell. (It proves the bookkeeping, not anything about real hosts.)
    #[test]
    fn the_same_uuid_running_on_two_hosts_is_a_violation() {
        let m = Monitor::start_named(
            vec![("a".into(), "test:///default".into()), ("b".into(), "test:///default".into())],
            Duration::from_millis(20),
        );
        m.wait_rounds(5, Duration::from_secs(10));
        let report = m.stop();
        assert!(report.per_host_polls.iter().all(|h| h.polls >= 1 && !h.hung_at_stop), "{report}");
        assert_eq!(report.violations.len(), 1, "{report}");
        assert!(report.violations[0].contains("(test) running on "), "{report}");
        assert_eq!(report.running_seen.values().next().map(|h| h.len()), Some(2), "{report}");
    }

    #[test]
    fn one_host_alone_and_an_unreachable_host_are_clean() {
        let m = Monitor::start(
            vec!["test:///default".into(), "qemu+tcp://127.0.0.1:1/system".into()],
            Duration::from_millis(20),
        );
        m.wait_rounds(5, Duration::from_secs(10));
        let report = m.stop();
        assert!(report.is_clean(), "{report}");
        let unreachable = &report.per_host_polls[1];
        assert_eq!(unreachable.polls, 0, "{report}");
        assert!(unreachable.failures >= 1, "{report}");
    }
}
