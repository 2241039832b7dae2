//! The sandbox-host harness: real libvirtd + QEMU "hosts" made by `deploy/sandbox/*.sh` (each
//! its own network, mount, PID and UTS namespaces on 10.213.0.0/24), a Corral cluster on them,
//! and the tiny guest's serial console to read. It never touches an address outside
//! 10.213.0.0/24 and loopback, and it removes the whole sandbox on drop, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_cli::views::{ClusterStatusView, EventView, HostView, VmView};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::monitor::Monitor;
use crate::{bin, corral_at, corral_local, register_credentials, wait_until, CliOutput};

/// The longest any one wait may take: guests boot under TCG, and CI machines are noisy.
pub const WAIT: Duration = Duration::from_secs(60);

/// How often the double-run monitor polls every host.
pub const MONITOR_PERIOD: Duration = Duration::from_millis(50);

/// The guest's markers on its serial console (see deploy/sandbox/guest/build.sh).
pub const GUEST_UP: &str = "CORRAL-GUEST-UP";
pub const GUEST_POWEROFF: &str = "CORRAL-GUEST-POWEROFF";
const GUEST_TICK: &str = "CORRAL-TICK ";

/// One sandbox host as `up.sh` printed it.
#[derive(Debug, Clone)]
pub struct SandboxHost {
    pub name: String,
    /// corrald's gRPC address, e.g. `10.213.0.2:7001`.
    pub endpoint: String,
    /// e.g. `qemu+tcp://10.213.0.2/system`.
    pub libvirt_uri: String,
    /// Its corrald's local socket (bootstrap, join, credentials).
    pub socket: PathBuf,
}

pub struct Sandbox {
    pub hosts: Vec<SandboxHost>,
    repo: PathBuf,
    state_dir: PathBuf,
    /// Hosts a fault made unreachable (powered off, cut off, corrald killed or frozen): the
    /// CLI tries them last, so it does not wait on them first.
    unreachable: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// corrald flags of one host each (host1 first), kept for every power-on.
    host_args: Vec<String>,
    /// Held while this sandbox exists: another test's sandbox waits for it (there is one set
    /// of sandbox hosts per machine).
    _session: nix::fcntl::Flock<std::fs::File>,
}

const SESSION_LOCK: &str = "/run/corral-sandbox.session.lock";

/// Waits (bounded by the test's own timeout) until no other sandbox exists on this machine.
fn session_lock() -> nix::fcntl::Flock<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SESSION_LOCK)
        .unwrap_or_else(|e| panic!("open {SESSION_LOCK}: {e}"));
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock {SESSION_LOCK}: {e}"))
}

/// How a sandbox is made beyond its hosts: per-host corrald flags, and extra flags for
/// `cluster bootstrap` on host1 (`{kernel}` and `{initrd}` stand for the guest's files).
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    pub host_args: Vec<String>,
    pub bootstrap_args: Vec<String>,
}

/// Whether this process runs as root (effective uid 0), from /proc: the sandbox makes
/// namespaces, a bridge and bind mounts.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// What the guest last reported seeing (deploy/sandbox/guest: `CORRAL-GUEST-SEES disks=..
/// nics=.. macs=.. cpus=N mem_mib=N cd=..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sees {
    pub disks: Vec<String>,
    pub nics: Vec<String>,
    pub macs: Vec<String>,
    pub cpus: u32,
    pub mem_mib: u64,
    pub cd: String,
}

const GUEST_SEES: &str = "CORRAL-GUEST-SEES ";

impl Sees {
    fn parse(line: &str) -> Option<Sees> {
        let rest = line.trim_end().strip_prefix(GUEST_SEES)?;
        let field =
            |name: &str| rest.split(' ').find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(str::to_string);
        let list = |v: Option<String>| -> Vec<String> {
            match v.as_deref() {
                None | Some("-") => Vec::new(),
                Some(l) => l.split(',').map(str::to_string).collect(),
            }
        };
        Some(Sees {
            disks: list(field("disks")),
            nics: list(field("nics")),
            macs: list(field("macs")),
            cpus: field("cpus")?.parse().ok()?,
            mem_mib: field("mem_mib")?.parse().ok()?,
            cd: field("cd")?,
        })
    }
}

impl Sandbox {
    /// Installs what the sandbox needs, builds the guest, removes any old sandbox, makes `n`
    /// hosts with this build's corrald, forms one cluster of them and puts the guest's kernel
    /// and initrd in the shared storage. None when not root (the caller skips).
    pub fn up(n: usize) -> Option<Sandbox> {
        Sandbox::up_with(n, &SandboxOptions::default())
    }

    /// `up` with per-host corrald flags and bootstrap flags.
    pub fn up_with(n: usize, options: &SandboxOptions) -> Option<Sandbox> {
        if !is_root() {
            return None;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace dir").to_path_buf();
        let state_dir =
            PathBuf::from(std::env::var("CORRAL_SANDBOX_DIR").unwrap_or_else(|_| "/var/tmp/corral-sandbox".into()));
        let mut sb = Sandbox {
            hosts: Vec::new(),
            repo,
            state_dir,
            unreachable: Default::default(),
            host_args: options.host_args.clone(),
            _session: session_lock(),
        };
        sb.script("deps.sh", &[]);
        sb.script("guest/build.sh", &[]);
        sb.script("down.sh", &[]);
        let lines = sb.script("up.sh", &[&n.to_string()]);
        sb.hosts = lines.lines().filter(|l| !l.trim().is_empty()).map(parse_host_line).collect();
        assert_eq!(sb.hosts.len(), n, "up.sh {n} printed {} host lines:\n{lines}", sb.hosts.len());

        // The guest's files first: a bootstrap may start an engine VM that boots them.
        let guest = sb.storage_dir().join("guest");
        std::fs::create_dir_all(&guest).expect("guest dir in the storage");
        for f in ["vmlinuz", "initrd.img"] {
            let from = sb.repo.join("deploy/sandbox/guest/out").join(f);
            std::fs::copy(&from, guest.join(f)).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        }
        let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
        let extra: Vec<String> = options
            .bootstrap_args
            .iter()
            .map(|a| a.replace("{kernel}", &kernel).replace("{initrd}", &initrd))
            .collect();
        let mut args = vec!["cluster", "bootstrap", "--name", "lab"];
        args.extend(extra.iter().map(String::as_str));
        // Bootstrap and join on each host itself, over its corrald's local socket; then the
        // admin's credentials for everything else (TLS).
        let boot = corral_local(&sb.hosts[0].socket, &args);
        assert_eq!(boot.code, 0, "cluster bootstrap failed: {}", boot.stderr);
        let token = boot.stdout.lines().last().expect("bootstrap prints the token").trim().to_string();
        let credentials = sb.state_dir.join("admin.corral");
        let out = corral_local(
            &sb.hosts[0].socket,
            &["cluster", "credentials", "-f", credentials.to_str().expect("UTF-8 path"), "--force"],
        );
        assert_eq!(out.code, 0, "cluster credentials failed: {}", out.stderr);
        for h in &sb.hosts {
            register_credentials(&h.endpoint, &credentials);
        }
        let peer = sb.hosts[0].endpoint.clone();
        for i in 1..n {
            let out = corral_local(&sb.hosts[i].socket, &["cluster", "join", "--peer", &peer, "--token", &token]);
            assert_eq!(out.code, 0, "{} could not join: {}", sb.hosts[i].name, out.stderr);
        }
        wait_until(WAIT, &format!("{n} hosts up in `host list`"), || {
            let hosts: Vec<HostView> = sb.json(&["host", "list"])?;
            let up = hosts.iter().filter(|h| h.state == "up").count();
            if up == n {
                Ok(())
            } else {
                Err(format!("{hosts:?}"))
            }
        });

        Some(sb)
    }

    /// Runs `deploy/sandbox/<script>` with this build's corrald; returns its stdout, panics
    /// when it fails. Its stderr goes to the test's.
    pub fn script(&self, script: &str, args: &[&str]) -> String {
        let path = self.repo.join("deploy/sandbox").join(script);
        let mut cmd = Command::new(&path);
        for (i, a) in self.host_args.iter().enumerate() {
            cmd.env(format!("CORRALD_EXTRA_ARGS_HOST{}", i + 1), a);
        }
        let out = cmd
            .args(args)
            .env("CORRALD", bin("corrald"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
        assert!(out.status.success(), "{script} {args:?} failed ({})", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.state_dir.join("storage")
    }

    pub fn guest_kernel(&self) -> String {
        self.storage_dir().join("guest/vmlinuz").display().to_string()
    }

    pub fn guest_initrd(&self) -> String {
        self.storage_dir().join("guest/initrd.img").display().to_string()
    }

    pub fn host(&self, name: &str) -> &SandboxHost {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no sandbox host {name}"))
    }

    /// Every host's endpoint, comma-separated: the CLI tries them in order, hosts a fault
    /// made unreachable last.
    pub fn endpoints(&self) -> String {
        let unreachable = self.unreachable.lock().expect("unreachable set");
        let (mut ok, mut not): (Vec<&SandboxHost>, Vec<&SandboxHost>) =
            self.hosts.iter().partition(|h| !unreachable.contains(&h.name));
        ok.append(&mut not);
        ok.iter().map(|h| h.endpoint.as_str()).collect::<Vec<_>>().join(",")
    }

    fn reachable(&self, host: &str, yes: bool) {
        let mut unreachable = self.unreachable.lock().expect("unreachable set");
        if yes {
            unreachable.remove(host);
        } else {
            unreachable.insert(host.to_string());
        }
    }

    /// Runs the CLI against the cluster (any host that answers, host1 first).
    pub fn corral(&self, args: &[&str]) -> CliOutput {
        corral_at(&self.endpoints(), args)
    }

    /// Runs the CLI against host `i` only.
    pub fn corral_on(&self, i: usize, args: &[&str]) -> CliOutput {
        corral_at(&self.hosts[i].endpoint, args)
    }

    pub fn must_ok(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert_eq!(out.code, 0, "corral {args:?} failed: {}", out.stderr);
        out.stdout
    }

    /// `corral -o json ARGS`, read as `T` (the view type that command prints, from
    /// `corral_cli::views`); panics when it fails.
    pub fn cli_json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        self.json(args).unwrap_or_else(|e| panic!("corral {args:?} failed: {e}"))
    }

    fn json<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T, String> {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.corral(&all);
        if out.code != 0 {
            return Err(out.stderr.trim().to_string());
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| format!("not a {} ({e}): {}", std::any::type_name::<T>(), out.stdout))
    }

    /// The name of the host whose corrald leads now.
    pub fn leader_name(&self) -> String {
        let status: ClusterStatusView = self.cli_json(&["cluster", "status"]);
        let leader = status.members.into_iter().find(|m| m.id == status.leader_id);
        leader.map(|m| m.name).unwrap_or_default()
    }

    /// A host that does not lead (host3 or host2).
    pub fn victim(&self) -> String {
        let leader = self.leader_name();
        ["host3", "host2"].into_iter().find(|h| *h != leader).expect("two candidates").to_string()
    }

    pub fn vm(&self, vm: &str) -> VmView {
        self.cli_json(&["vm", "show", vm])
    }

    /// Waits until `vm show` satisfies `cond`, and returns what it showed.
    pub fn wait_vm(&self, vm: &str, what: &str, cond: impl Fn(&VmView) -> bool) -> VmView {
        wait_until(WAIT, &format!("vm {vm}: {what}"), || {
            let v: VmView = self.json(&["vm", "show", vm])?;
            if cond(&v) {
                Ok(v)
            } else {
                Err(format!("status {}, host {:?}", v.status, v.host))
            }
        })
    }

    pub fn wait_status(&self, vm: &str, status: &str) -> VmView {
        self.wait_vm(vm, &format!("status {status}"), |v| v.status == status)
    }

    /// The messages of the cluster's event log, oldest first.
    pub fn events(&self) -> Vec<String> {
        self.must_ok(&["-o", "json", "events"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let e: EventView = serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}"));
                e.message
            })
            .collect()
    }

    /// Waits until an event message satisfies `cond`, and returns it.
    pub fn wait_event(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        wait_until(WAIT, &format!("an event: {what}"), || {
            let events = self.events();
            events.iter().rev().find(|m| cond(m)).cloned().ok_or_else(|| format!("{:?}", last(&events, 5)))
        })
    }

    /// Everything the VM's serial console printed so far, over all its boots (the log is
    /// appended to, also across migrations).
    pub fn console(&self, vm: &str) -> String {
        let path = self.storage_dir().join("consoles").join(format!("{vm}.log"));
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }

    /// The guest's last report of what it sees, since its last boot.
    pub fn sees(&self, vm: &str) -> Option<Sees> {
        let all = self.console(vm);
        let boot = &all[all.rfind(GUEST_UP).unwrap_or(0)..];
        boot.lines().rev().find_map(|l| l.find(GUEST_SEES).and_then(|at| Sees::parse(&l[at..])))
    }

    /// Waits (at most `WAIT`) until the guest reports what `ok` wants; returns the report and
    /// how long it took.
    pub fn wait_sees(&self, vm: &str, what: &str, ok: impl Fn(&Sees) -> bool) -> (Sees, Duration) {
        let t = std::time::Instant::now();
        let s = wait_until(WAIT, what, || match self.sees(vm) {
            Some(s) if ok(&s) => Ok(s),
            other => Err(format!("{other:?}")),
        });
        (s, t.elapsed())
    }

    /// How many times `marker` appears on the VM's console.
    pub fn count(&self, vm: &str, marker: &str) -> usize {
        self.console(vm).matches(marker).count()
    }

    /// Waits until `marker` appears on the VM's console at least `times` times.
    pub fn wait_count(&self, vm: &str, marker: &str, times: usize) {
        wait_until(WAIT, &format!("{marker} {times}x on the console of {vm}"), || {
            let seen = self.count(vm, marker);
            if seen >= times {
                Ok(())
            } else {
                Err(format!("{seen}x; console ends with: {:?}", tail(&self.console(vm), 3)))
            }
        })
    }

    pub fn wait_console(&self, vm: &str, marker: &str) {
        self.wait_count(vm, marker, 1)
    }

    /// The last `CORRAL-TICK n` the guest printed in its current boot (after the last
    /// `CORRAL-GUEST-UP`; each boot counts from 1 again), if any.
    pub fn ticks(&self, vm: &str) -> Option<u64> {
        let all = self.console(vm);
        let console = &all[all.rfind(GUEST_UP).unwrap_or(0)..];
        console.rmatch_indices(GUEST_TICK).find_map(|(at, m)| {
            let digits: String = console[at + m.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
    }

    /// Waits until the guest's last tick is above `n`, and returns it.
    pub fn wait_ticks_above(&self, vm: &str, n: u64) -> u64 {
        wait_until(WAIT, &format!("{vm} to tick past {n}"), || match self.ticks(vm) {
            Some(t) if t > n => Ok(t),
            seen => Err(format!("last tick {seen:?}")),
        })
    }

    /// Power loss of a host: its libvirtd, QEMUs and corrald die at once.
    pub fn kill(&self, host: &str) {
        self.reachable(host, false);
        self.script("kill.sh", &[host]);
    }

    /// Powers a killed host on again (same address, libvirt config and corrald data).
    pub fn start(&self, host: &str) {
        self.reachable(host, true);
        self.script("start.sh", &[host]);
    }

    /// `virsh -c URI-of-host ARGS`.
    pub fn virsh(&self, host: &str, args: &[&str]) -> CliOutput {
        virsh_at(&self.host(host).libvirt_uri, args)
    }

    /// The domains libvirt on `host` knows, with their states ("running", "shut off", ...),
    /// from `virsh list --all`.
    pub fn domains(&self, host: &str) -> Vec<(String, String)> {
        domain_list(host, self.virsh(host, &["list", "--all"]))
    }

    /// As `domains`, through the host's unix socket: works while the host is cut off the
    /// network.
    pub fn domains_local(&self, host: &str) -> Vec<(String, String)> {
        let uri = self.local_libvirt_uris().into_iter().find(|(h, _)| h == host).expect("a known host").1;
        domain_list(host, virsh_at(&uri, &["list", "--all"]))
    }
}

fn virsh_at(uri: &str, args: &[&str]) -> CliOutput {
    Command::new("virsh").arg("-c").arg(uri).args(args).stdin(Stdio::null()).output().expect("run virsh").into()
}

/// Name and state of each domain in `virsh list --all` output.
fn domain_list(host: &str, out: CliOutput) -> Vec<(String, String)> {
    assert_eq!(out.code, 0, "virsh list on {host}: {}", out.stderr);
    out.stdout
        .lines()
        .skip(2)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (_id, name) = (words.next()?, words.next()?);
            Some((name.to_string(), words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

impl Sandbox {
    /// The root-namespace pid of the host's libvirtd.
    pub fn libvirtd_pid(&self, host: &str) -> Option<u32> {
        self.host_process(host, "libvirtd")
    }

    /// The root-namespace pid of the host's corrald.
    pub fn corrald_pid(&self, host: &str) -> Option<u32> {
        self.host_process(host, "corrald")
    }

    /// A live process named `comm` in the PID namespace of the host's PID 1 (which `lib.sh`
    /// records in `hostN/pid1`): only that host's, never another host's of the same name.
    fn host_process(&self, host: &str, comm: &str) -> Option<u32> {
        self.host_process_where(host, |_, c| c == comm)
    }

    /// A live process in the host's PID namespace for which `pred(pid, comm)` holds.
    fn host_process_where(&self, host: &str, pred: impl Fn(u32, &str) -> bool) -> Option<u32> {
        let pid1 = self.pid1(host)?;
        let ns = std::fs::read_link(format!("/proc/{pid1}/ns/pid")).ok()?;
        std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() == Some(&ns)
                && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| pred(*pid, c.trim()))
                && !is_zombie(*pid)
        })
    }

    /// The QEMU process that runs `vm` on `host` (libvirt names it `-name guest=VM,...`).
    pub fn qemu_pid(&self, host: &str, vm: &str) -> Option<u32> {
        let needle = format!("guest={vm},");
        self.host_process_where(host, |pid, comm| {
            comm.starts_with("qemu-system")
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(&needle))
        })
    }

    /// SIGKILL to the QEMU of `vm` on `host`: the guest dies, its host lives on.
    pub fn kill_qemu(&self, host: &str, vm: &str) {
        let pid = self.qemu_pid(host, vm).unwrap_or_else(|| panic!("no QEMU of {vm} on {host}"));
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }

    /// The host's PID 1 while the host is powered on. `hostN/pid1` holds "pid starttime", as
    /// `sb_host_pid1` checks it: a pid reused after a power-off is not taken for the host.
    fn pid1(&self, host: &str) -> Option<u32> {
        let f = std::fs::read_to_string(self.state_dir.join(host).join("pid1")).ok()?;
        let mut words = f.split_whitespace();
        let (pid, start) = (words.next()?.parse::<u32>().ok()?, words.next()?);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Field 22 is the start time; fields 3.. follow the command name's closing parenthesis.
        let started = stat.rsplit_once(')')?.1.split_whitespace().nth(22 - 3)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let is_ns_init = status.lines().any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"));
        (started == start && is_ns_init && !is_zombie(pid)).then_some(pid)
    }

    /// Whether the host is powered on (its PID 1 lives).
    pub fn is_powered_on(&self, host: &str) -> bool {
        self.pid1(host).is_some()
    }

    /// Power loss (kill.sh): the host's libvirtd, QEMUs, corrald and watchdog die at once.
    pub fn power_off(&self, host: &str) {
        self.kill(host);
    }

    /// Powers the host on again (start.sh), also after its watchdog powered it off.
    pub fn power_on(&self, host: &str) {
        self.start(host);
    }

    /// Cuts the host off the network (partition.sh cut: its root-side veth down). Its
    /// processes run on and still reach each other; the monitor still sees its libvirt
    /// through the unix socket.
    pub fn partition(&self, host: &str) {
        self.reachable(host, false);
        self.script("partition.sh", &[host, "cut"]);
    }

    /// Ends `partition` (partition.sh heal: the veth up again).
    pub fn heal(&self, host: &str) {
        self.reachable(host, true);
        self.script("partition.sh", &[host, "heal"]);
    }

    /// SIGKILL to the host's corrald only: its QEMUs, libvirtd and watchdog stay, until the
    /// watchdog, no longer fed, powers the host off.
    pub fn kill_corrald(&self, host: &str) {
        self.reachable(host, false);
        let pid = self.corrald_pid(host).unwrap_or_else(|| panic!("{host} has no corrald"));
        signal(pid, nix::sys::signal::Signal::SIGKILL);
        wait_until(WAIT, &format!("corrald of {host} to be gone"), || match self.corrald_pid(host) {
            None => Ok(()),
            Some(p) => Err(format!("pid {p} still there")),
        });
    }

    /// SIGSTOP to the host's corrald only: it is frozen with its sockets open, and stops
    /// feeding the watchdog.
    pub fn stop_corrald(&self, host: &str) {
        self.reachable(host, false);
        let pid = self.corrald_pid(host).unwrap_or_else(|| panic!("{host} has no corrald"));
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
        wait_until(WAIT, &format!("corrald of {host} to be stopped"), || match process_state(pid) {
            Some('T') => Ok(()),
            state => Err(format!("pid {pid} in state {state:?}")),
        });
    }

    /// SIGCONT to the host's corrald, if it still exists (the watchdog may have powered the
    /// host off meanwhile; then there is nothing to continue, and that is no error).
    pub fn cont_corrald(&self, host: &str) {
        if let Some(pid) = self.corrald_pid(host) {
            signal(pid, nix::sys::signal::Signal::SIGCONT);
        }
    }

    /// The host's watchdog log (`hostN/watchdog.log`), over all its power-ons.
    pub fn watchdog_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.state_dir.join(host).join("watchdog.log")).unwrap_or_default()
    }

    /// Whether the host's watchdog powered it off since the host was last powered on: its log's
    /// last "ready" (each power-on) or "powering host" line is the latter.
    pub fn watchdog_fired(&self, host: &str) -> bool {
        let log = self.watchdog_log(host);
        let last = log.lines().rev().find(|l| l.contains("watchdog: ready on ") || l.contains("; powering host "));
        last.is_some_and(|l| l.contains("; powering host "))
    }

    /// libvirt URIs of every host through its unix socket (`hostN/run/libvirt-sock`, which is
    /// the host's /run/libvirt): reachable from here whatever happens to the host's network,
    /// so a partitioned host's domains stay in view.
    pub fn local_libvirt_uris(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .map(|h| {
                let socket = self.state_dir.join(&h.name).join("run/libvirt-sock");
                (h.name.clone(), format!("qemu+unix:///system?socket={}", socket.display()))
            })
            .collect()
    }

    /// Starts the double-run monitor on every host (through `local_libvirt_uris`), every 50 ms.
    pub fn monitor(&self) -> Monitor {
        Monitor::start_named(self.local_libvirt_uris(), MONITOR_PERIOD)
    }

    /// SIGKILL to the host's libvirtd only: its corrald, virtlogd and QEMUs stay.
    pub fn kill_libvirtd(&self, host: &str) {
        let pid = self.libvirtd_pid(host).unwrap_or_else(|| panic!("{host} has no libvirtd"));
        signal(pid, nix::sys::signal::Signal::SIGKILL);
        wait_until(WAIT, &format!("libvirtd of {host} to be gone"), || {
            if self.libvirtd_pid(host).is_none() && self.virsh(host, &["version"]).code != 0 {
                Ok(())
            } else {
                Err(format!("pid {pid} still there or still answering"))
            }
        });
    }

    /// Starts the host's libvirtd again inside its namespaces, as `lib.sh` does at power on,
    /// and waits until it answers over TCP.
    pub fn restart_libvirtd(&self, host: &str) {
        let pid1 = self.pid1(host).unwrap_or_else(|| panic!("{host} is not running"));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.state_dir.join(host).join("libvirtd.stderr"))
            .expect("libvirtd.stderr");
        let status = Command::new("nsenter")
            .args(["-t", &pid1.to_string(), "-n", "-m", "-p", "-u", "--wd=/"])
            .args(["libvirtd", "-d", "-l", "-p", "/run/libvirt/libvirtd.pid"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .status()
            .expect("run nsenter");
        assert!(status.success(), "libvirtd of {host} did not start ({status})");
        wait_until(WAIT, &format!("libvirtd of {host} to answer"), || {
            let out = self.virsh(host, &["version"]);
            if out.code == 0 {
                Ok(())
            } else {
                Err(out.stderr.trim().to_string())
            }
        });
    }

    /// The last `lines` lines of every host's corrald log.
    pub fn dump_logs(&self, lines: usize) {
        for h in &self.hosts {
            let log = std::fs::read_to_string(self.state_dir.join(&h.name).join("corrald.log")).unwrap_or_default();
            let log = strip_colors(&log);
            eprintln!("===== {} corrald.log (last {lines} lines) =====\n{}", h.name, tail(&log, lines).join("\n"));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs(30);
        }
        if std::env::var_os("CORRAL_SANDBOX_KEEP").is_some() {
            eprintln!("sandbox kept (CORRAL_SANDBOX_KEEP); remove it with deploy/sandbox/down.sh");
            return;
        }
        let down = self.repo.join("deploy/sandbox/down.sh");
        match Command::new(&down).stdin(Stdio::null()).stdout(Stdio::null()).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("{} failed: {other:?}; run it by hand", down.display()),
        }
    }
}

fn parse_host_line(line: &str) -> SandboxHost {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("up.sh printed a non-JSON line ({e}): {line}"));
    let field = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("no {k} in {line}")).to_string();
    SandboxHost {
        name: field("name"),
        endpoint: field("endpoint"),
        libvirt_uri: field("libvirt_uri"),
        socket: PathBuf::from(field("socket")),
    }
}

/// corrald's log has ANSI colors (`ESC [ ... m`); they are noise in a test's output.
fn strip_colors(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// The process's state letter from /proc (R, S, T, Z, ...), if it exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

fn last<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    items[items.len().saturating_sub(n)..].to_vec()
}

fn tail(text: &str, n: usize) -> Vec<String> {
    last(&text.lines().map(|l| l.trim_end().to_string()).collect::<Vec<_>>(), n)
}
