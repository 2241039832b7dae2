//! The cluster harness: real `corrald` processes on loopback ports, each on libvirt's
//! `test:///default` hypervisor, driven by the real `corral` CLI or by gRPC. Every wait polls
//! a condition with a deadline; every process and temp dir is cleaned up on drop, also when
//! a test fails. The CLI's `-o json` output is read into its own view types (`cli_json`).

pub mod client;
pub mod faults;
pub mod http;
pub mod monitor;
pub mod sandbox;
pub mod scrape;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_cli::views::{BootstrapView, ClusterStatusView, EventView, JoinView, VmView};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where cargo put the workspace's binaries: next to the test executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Polls `cond` until it returns `Some`, or panics after `timeout` naming `what` and the
/// last thing seen.
pub fn wait_until<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        match cond() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// A port that was free a moment ago, for a process that cannot say which port it bound (etcd,
/// QEMU's port forward) or for an address nothing listens on. Another process may take it in
/// between: the harness's own corrald nodes bind port 0 instead and say which port they got
/// (`--listen-file`); only an older corrald, which has no such flag, still starts on one.
/// Sets `flag` when SIGINT or SIGTERM arrives (saying `message` on stderr each time), so that a
/// benchmark's loops can end and its clusters' drops clean up.
pub fn flag_on_signals(
    rt: &tokio::runtime::Runtime,
    flag: &'static std::sync::atomic::AtomicBool,
    message: &'static str,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = rt.enter();
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        let Ok(mut s) = signal(kind) else { continue };
        rt.spawn(async move {
            // Bounded: a second signal is as good as the first.
            for _ in 0..1000 {
                if s.recv().await.is_none() {
                    break;
                }
                eprintln!("{message}");
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
}

/// A process's resident memory (VmRSS) in KiB; 0 for one that is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The bytes of every file below `path` (0 for one that cannot be read).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().unwrap().port()
}

pub struct NodeProc {
    pub name: String,
    /// `127.0.0.1:0` until its first start, then the address its corrald bound; later starts
    /// ask for that address again, since the cluster's membership lists it.
    pub addr: String,
    pub data_dir: PathBuf,
    log: PathBuf,
    /// Where its corrald writes the address it bound (`--listen-file`).
    listen_file: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// Stopped with SIGSTOP: its sockets accept but nothing answers.
    paused: bool,
    /// The corrald it runs; this build's unless set (a rolling upgrade runs older ones).
    pub corrald: Option<PathBuf>,
    /// A cgroup's `cgroup.procs` file that its corrald joins before it starts (the fault
    /// harness matches its packets by cgroup); none unless set.
    pub cgroup_procs: Option<PathBuf>,
}

impl NodeProc {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether its corrald has not bound an address yet (it has never started).
    fn port_unknown(&self) -> bool {
        self.addr.ends_with(":0")
    }

    /// Takes the address its corrald wrote to the listen file, if it has written it yet.
    fn learn_address(&mut self) -> Result<(), String> {
        if !self.port_unknown() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.listen_file)
            .map_err(|e| format!("no address in {} yet: {e}", self.listen_file.display()))?;
        self.addr = text.trim().to_string();
        Ok(())
    }
}

/// What a CLI run printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// The output read as `T`, one of `corral_cli::views` (what `-o json` prints); panics showing
    /// the output when it is not that shape.
    pub fn view<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("output is not a {} ({e}): {}\nstderr: {}", std::any::type_name::<T>(), self.stdout, self.stderr)
        })
    }
}

impl From<Output> for CliOutput {
    fn from(o: Output) -> Self {
        CliOutput {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    pub token: Option<String>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` fresh, uninitialized nodes named host1..hostN.
    pub fn start(n: usize, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("corral-test-").tempdir().expect("temp dir");
        let mut c = Cluster { nodes: Vec::new(), token: None, dir };
        for _ in 0..n {
            c.add_node(extra_args);
        }
        c
    }

    /// Starts `n` nodes, bootstraps the first and joins the rest.
    pub fn run(n: usize, extra_args: &[&str]) -> Cluster {
        let mut c = Cluster::start(n, extra_args);
        c.bootstrap();
        for i in 1..n {
            c.join(i);
        }
        c
    }

    /// Adds and starts one more fresh node; returns its index.
    pub fn add_node(&mut self, extra_args: &[&str]) -> usize {
        let i = self.nodes.len();
        self.add_node_stopped(extra_args);
        self.spawn(i);
        i
    }

    /// Adds and starts one more fresh node that runs the corrald at `corrald`.
    pub fn add_node_running(&mut self, corrald: &Path, extra_args: &[&str]) -> usize {
        let i = self.nodes.len();
        self.add_node_stopped(extra_args);
        self.nodes[i].corrald = Some(corrald.to_path_buf());
        self.spawn(i);
        i
    }

    /// Adds one more node without starting it (to lay out its data dir first); returns its index.
    pub fn add_stopped_node(&mut self, extra_args: &[&str]) -> usize {
        self.add_node_stopped(extra_args);
        self.nodes.len() - 1
    }

    fn add_node_stopped(&mut self, extra_args: &[&str]) {
        let i = self.nodes.len();
        let name = format!("host{}", i + 1);
        self.nodes.push(NodeProc {
            addr: "127.0.0.1:0".into(),
            log: self.dir.path().join(format!("{name}.log")),
            listen_file: self.dir.path().join(format!("{name}.listen")),
            data_dir: self.dir.path().join(&name),
            name,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            paused: false,
            corrald: None,
            cgroup_procs: None,
        });
    }

    /// The command line node `i` runs with, plus `extra`.
    fn corrald_command(&self, i: usize, extra: &[&str]) -> Command {
        let n = &self.nodes[i];
        let corrald = n.corrald.clone().unwrap_or_else(|| bin("corrald"));
        let mut cmd = match &n.cgroup_procs {
            // The shell joins the cgroup and then becomes corrald (same pid), so that every
            // socket corrald opens, from its first, belongs to that cgroup.
            Some(procs) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(procs).arg(corrald);
                sh
            }
            None => Command::new(corrald),
        };
        cmd.args(["--name", &n.name, "--listen", &n.addr, "--libvirt-uri", "test:///default"]);
        // An older corrald has no --listen-file: `spawn_quietly` picked its port instead.
        if n.port_unknown() && n.corrald.is_none() {
            cmd.arg("--listen-file").arg(&n.listen_file);
        }
        cmd.arg("--data-dir")
            .arg(&n.data_dir)
            // One storage domain that every node sees, as NFS would be in production.
            .arg("--storage-dir")
            .arg(self.dir.path().join("storage"))
            .args(&n.extra_args)
            .args(extra)
            .env("RUST_LOG", std::env::var("CORRAL_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs node `i`'s corrald with `extra` flags where the node is expected to refuse to
    /// start: waits for it to exit (at most 20 s) and returns how it exited and what it printed.
    pub fn corrald_refuses(&mut self, i: usize, extra: &[&str]) -> CliOutput {
        assert!(self.nodes[i].child.is_none(), "{} is running", self.nodes[i].name);
        let mut child = self
            .corrald_command(i, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corrald");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().expect("corrald output").into();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out: CliOutput = child.wait_with_output().expect("corrald output").into();
                panic!("corrald {extra:?} on {} did not exit within 20 s: {}", self.nodes[i].name, out.stderr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts node `i` (stopped) and waits until it either serves (`Ok`) or exits (`Err`,
    /// with what it printed on this start).
    pub fn start_or_refusal(&mut self, i: usize) -> Result<(), String> {
        let before = self.nodes[i].log().len();
        self.spawn_quietly(i);
        let name = self.nodes[i].name.clone();
        wait_until(Duration::from_secs(20), &format!("{name} to serve or to exit"), || {
            let n = &mut self.nodes[i];
            if let Some(c) = n.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    n.child = None;
                    return Ok(Err(n.log()[before..].to_string()));
                }
            }
            n.learn_address()?;
            let out = corral_at(&n.addr, &["--stale", "cluster", "status"]);
            if out.code == 0 {
                Ok(Ok(()))
            } else {
                Err(out.stderr)
            }
        })
    }

    /// Starts node `i` again with `extra` flags for this start only (`--rejoin`, `--restore F`).
    pub fn restart_with(&mut self, i: usize, extra: &[&str]) {
        let saved = self.nodes[i].extra_args.clone();
        self.nodes[i].extra_args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(i);
        self.nodes[i].extra_args = saved;
    }

    /// Starts node `i`'s process without waiting for it to accept connections.
    fn spawn_quietly(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "{} is already running", self.nodes[i].name);
        let n = &mut self.nodes[i];
        if n.port_unknown() {
            if n.corrald.is_some() {
                // An older release's corrald (a rolling upgrade's) has no --listen-file: it gets
                // a port picked here, with the race that `free_port` has, on its first start only.
                n.addr = format!("127.0.0.1:{}", free_port());
            } else {
                // A stale file from a start that never served must not be read as this one's.
                let _ = std::fs::remove_file(&n.listen_file);
            }
        }
        let log = File::options().create(true).append(true).open(&self.nodes[i].log).expect("log file");
        let child =
            self.corrald_command(i, &[]).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("spawn corrald");
        self.nodes[i].child = Some(child);
    }

    fn spawn(&mut self, i: usize) {
        self.spawn_quietly(i);
        let name = self.nodes[i].name.clone();
        wait_until(Duration::from_secs(10), &format!("{name} to accept connections"), || {
            let n = &mut self.nodes[i];
            if let Some(Ok(Some(status))) = n.child.as_mut().map(|c| c.try_wait()) {
                n.child = None;
                let log = n.log();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                panic!("{} exited ({status}) before it served: {}", n.name, tail.join(" | "));
            }
            n.learn_address()?;
            std::net::TcpStream::connect(&n.addr).map(|_| ()).map_err(|e| format!("{}: {e}", n.addr))
        });
        self.share_credentials();
    }

    pub fn endpoint(&self, i: usize) -> &str {
        &self.nodes[i].addr
    }

    /// Node `i`'s local socket (corrald's default: in its data dir).
    pub fn socket(&self, i: usize) -> PathBuf {
        self.nodes[i].data_dir.join("corrald.sock")
    }

    /// The admin's credentials file of this cluster, once it has one (`fetch_credentials`).
    pub fn credentials(&self) -> Option<PathBuf> {
        let file = self.dir.path().join("admin.corral");
        file.exists().then_some(file)
    }

    /// Writes the admin's credentials through node `i`'s local socket, and has every later CLI
    /// run against this cluster's nodes use them (also `corral_at`).
    pub fn fetch_credentials(&self, i: usize) {
        let file = self.dir.path().join("admin.corral");
        let out = self.local(i, &["cluster", "credentials", "-f", file.to_str().expect("UTF-8 path"), "--force"]);
        assert_eq!(out.code, 0, "cluster credentials on {}: {}", self.nodes[i].name, out.stderr);
        self.share_credentials();
    }

    fn share_credentials(&self) {
        if let Some(file) = self.credentials() {
            let mut known = CREDENTIALS.lock().expect("credentials map");
            for n in self.nodes.iter().filter(|n| !n.port_unknown()) {
                known.insert(n.addr.clone(), file.clone());
            }
        }
    }

    /// Runs the CLI on node `i`'s local socket, as the host's root would.
    pub fn local(&self, i: usize, args: &[&str]) -> CliOutput {
        corral_local(&self.socket(i), args)
    }

    /// Runs the CLI against node `i`: bootstrap and join over its local socket (a node of
    /// this build; an older one has none and takes them over TCP), everything else over TCP
    /// with the cluster's credentials once it has them.
    pub fn corral(&self, i: usize, args: &[&str]) -> CliOutput {
        let on_node = args.windows(2).any(|w| w[0] == "cluster" && matches!(w[1], "bootstrap" | "join"));
        if on_node && self.nodes[i].corrald.is_none() {
            let out = self.local(i, args);
            // A cluster of this build has a CA from its bootstrap: the admin's credentials, for
            // every later CLI run.
            if out.code == 0 && args.contains(&"bootstrap") && self.nodes[i].data_dir.join("tls/ca.pem").exists() {
                self.fetch_credentials(i);
            }
            return out;
        }
        corral_at(self.endpoint(i), args)
    }

    /// Runs the CLI with `-o json` against node `i` and reads its output as `T`, the view type
    /// that command prints (`corral_cli::views`); panics on failure.
    pub fn cli_json<T: DeserializeOwned>(&self, i: usize, args: &[&str]) -> T {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.corral(i, &all);
        assert_eq!(out.code, 0, "corral {args:?} on {} failed: {}", self.nodes[i].name, out.stderr);
        out.view()
    }

    /// `cli_json` for the few results that have no view type (`host remove`, `cluster backup`,
    /// `cluster upgrade`, deletions of affinity rules): untyped JSON.
    pub fn must_json(&self, i: usize, args: &[&str]) -> Value {
        self.cli_json(i, args)
    }

    /// The VM as `vm show` through node `i` shows it.
    pub fn vm(&self, i: usize, vm: &str) -> VmView {
        self.cli_json(i, &["vm", "show", vm])
    }

    /// The event log as node `i` reads it, oldest first (`-o json` prints one event a line).
    pub fn event_log(&self, i: usize) -> Vec<EventView> {
        self.must_ok(i, &["-o", "json", "events"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
            .collect()
    }

    /// The event log's messages as node `i` reads them, oldest first.
    pub fn events(&self, i: usize) -> Vec<String> {
        self.event_log(i).into_iter().map(|e| e.message).collect()
    }

    /// Runs `args` through node `i` and checks that it was refused with one line containing `want`.
    pub fn refused(&self, i: usize, args: &[&str], want: &str) {
        let out = self.corral(i, args);
        assert_ne!(out.code, 0, "{args:?} succeeded: {}", out.stdout);
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{args:?}: {line}");
        assert!(line.contains(want), "{args:?}: expected '{want}' in: {line}");
    }

    pub fn must_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.corral(i, args);
        assert_eq!(out.code, 0, "corral {args:?} on {} failed: {}", self.nodes[i].name, out.stderr);
        out.stdout
    }

    pub fn bootstrap(&mut self) {
        self.bootstrap_with(&[]);
    }

    /// Bootstraps node 0 with `extra` flags (`--level 1`: a cluster without TLS).
    pub fn bootstrap_with(&mut self, extra: &[&str]) {
        let args: Vec<&str> =
            ["cluster", "bootstrap", "--name", "lab"].iter().copied().chain(extra.iter().copied()).collect();
        let out = self.must_ok(0, &args);
        let token = out.lines().last().expect("bootstrap prints the token").trim().to_string();
        self.token = Some(token);
    }

    /// Bootstraps node 0 with a hosted engine (a blank 64 MiB qcow2 image made in the cluster's
    /// dir; 256 MiB, 1 vCPU, a NIC on libvirt's `default` network) and joins the other nodes;
    /// returns what the bootstrap printed.
    pub fn bootstrap_with_engine(&mut self) -> BootstrapView {
        let image = self.dir().join("engine.qcow2");
        let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&image).arg("64M").status();
        assert!(made.is_ok_and(|s| s.success()), "qemu-img create {}", image.display());
        #[rustfmt::skip]
        let out: BootstrapView = self.cli_json(0, &[
            "cluster", "bootstrap", "--name", "lab", "--engine-image", image.to_str().expect("a UTF-8 path"),
            "--engine-memory", "256M", "--engine-vcpus", "1", "--engine-nic", "default",
        ]);
        self.token = Some(out.token.clone());
        for i in 1..self.nodes.len() {
            self.join(i);
        }
        out
    }

    pub fn join(&self, i: usize) -> JoinView {
        let token = self.token.clone().expect("bootstrap first");
        let peer = self.endpoint(0).to_string();
        self.cli_json(i, &["cluster", "join", "--peer", &peer, "--token", &token])
    }

    /// SIGKILL: the node dies at once, without flushing anything it has not flushed already.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].paused = false;
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            signal(c.id(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "{} exited with {status} after SIGTERM", self.nodes[i].name);
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("{} did not stop within 15 s of SIGTERM", self.nodes[i].name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGSTOP / SIGCONT: the process is frozen but its sockets stay open.
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, nix::sys::signal::Signal::SIGSTOP);
            self.nodes[i].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, nix::sys::signal::Signal::SIGCONT);
            self.nodes[i].paused = false;
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Nodes that run and answer (not killed, not paused).
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_running() && !self.nodes[*i].paused).collect()
    }

    /// The status as node `i` sees it (a linearizable read through its leader).
    pub fn status(&self, i: usize) -> ClusterStatusView {
        self.cli_json(i, &["cluster", "status"])
    }

    /// Waits until the running nodes agree on one leader that is itself running, and returns
    /// its index.
    pub fn leader(&self) -> usize {
        wait_until(Duration::from_secs(15), "one agreed, running leader", || {
            let mut seen = Vec::new();
            for i in self.running() {
                let out = self.corral(i, &["-o", "json", "--stale", "cluster", "status"]);
                if out.code != 0 {
                    return Err(format!("{}: {}", self.nodes[i].name, out.stderr.trim()));
                }
                seen.push(out.view::<ClusterStatusView>().leader_id);
            }
            let first = seen.first().copied().unwrap_or(0);
            if first == 0 || seen.iter().any(|l| *l != first) {
                return Err(format!("leader ids {seen:?}"));
            }
            let idx = self.index_of_node_id(first).ok_or(format!("unknown leader id {first}"))?;
            if !self.running().contains(&idx) {
                return Err(format!("leader {first} is not running or paused"));
            }
            Ok(idx)
        })
    }

    /// Maps a Raft node id to the harness index through the membership list.
    pub fn index_of_node_id(&self, id: u64) -> Option<usize> {
        for i in self.running() {
            let out = self.corral(i, &["-o", "json", "--stale", "cluster", "status"]);
            if out.code != 0 {
                continue;
            }
            let status: ClusterStatusView = out.view();
            let member = status.members.iter().find(|m| m.id == id)?;
            return self.nodes.iter().position(|n| n.addr == member.address);
        }
        None
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn storage_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    /// Waits until `vm show` (through node `i`) satisfies `cond`, and returns what it showed.
    pub fn wait_vm(&self, i: usize, vm: &str, what: &str, cond: impl Fn(&VmView) -> bool) -> VmView {
        wait_until(Duration::from_secs(20), &format!("vm {vm}: {what}"), || {
            let out = self.corral(i, &["-o", "json", "vm", "show", vm]);
            if out.code != 0 {
                return Err(out.stderr);
            }
            let v: VmView = out.view();
            if cond(&v) {
                Ok(v)
            } else {
                Err(format!("{v:?}"))
            }
        })
    }

    /// Waits until the VM's status is `status`.
    pub fn wait_status(&self, i: usize, vm: &str, status: &str) -> VmView {
        self.wait_vm(i, vm, &format!("status {status}"), |v| v.status == status)
    }

    /// Prints every node's log; call from a failing test to see what happened.
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            eprintln!("===== {} ({}) =====\n{}", n.name, n.addr, n.log());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if std::env::var_os("CORRAL_TEST_DUMP_LOGS").is_some() {
                self.dump_logs();
            } else {
                // Enough of each node's log to see how a failure came about, even in CI.
                for n in &self.nodes {
                    let log = n.log();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    eprintln!("===== {} ({}), last lines =====\n{}", n.name, n.addr, tail.join("\n"));
                }
            }
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Credentials files by node address: a cluster of this build registers its admin's for each
/// of its nodes, so that `corral_at` uses them.
static CREDENTIALS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());

/// Has `corral_at` use the credentials file `file` for the node at `addr`.
pub fn register_credentials(addr: &str, file: &Path) {
    CREDENTIALS.lock().expect("credentials map").insert(addr.to_string(), file.to_path_buf());
}

/// The credentials registered for the first node of `endpoints` (a comma-separated list).
pub fn credentials_for(endpoints: &str) -> Option<PathBuf> {
    let known = CREDENTIALS.lock().expect("credentials map");
    endpoints.split(',').find_map(|e| known.get(e.trim()).cloned())
}

/// Runs the CLI with `--endpoint endpoint`, and the credentials registered for it if any.
pub fn corral_at(endpoint: &str, args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(bin("corral"));
    cmd.arg("--endpoint").arg(endpoint).args(args);
    clean_env(&mut cmd);
    if let Some(file) = credentials_for(endpoint) {
        cmd.env("CORRAL_CREDENTIALS", file);
    }
    cmd.stdin(Stdio::null()).output().expect("run corral").into()
}

/// Runs the CLI on the local socket at `socket`.
pub fn corral_local(socket: &Path, args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(bin("corral"));
    cmd.arg("--socket").arg(socket).args(args);
    clean_env(&mut cmd);
    cmd.stdin(Stdio::null()).output().expect("run corral").into()
}

/// Runs the CLI as a user would on their own machine: `--endpoint endpoint` (when given), no
/// credentials file, the saved logins of `config` (its XDG_CONFIG_HOME), and `env`.
pub fn corral_as(config: &Path, endpoint: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(bin("corral"));
    if let Some(e) = endpoint {
        cmd.arg("--endpoint").arg(e);
    }
    cmd.args(args);
    clean_env(&mut cmd);
    cmd.env("XDG_CONFIG_HOME", config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().expect("run corral").into()
}

/// The CLI's own variables of the environment the tests run in are not the test's, and
/// neither are the saved logins of whoever runs them.
fn clean_env(cmd: &mut Command) {
    for v in ["CORRAL_ENDPOINT", "CORRAL_SOCKET", "CORRAL_CREDENTIALS", "CORRAL_API_TOKEN", "CORRAL_CA_FILE"] {
        cmd.env_remove(v);
    }
    cmd.env("XDG_CONFIG_HOME", std::env::temp_dir().join("corral-tests-no-saved-logins"));
}

/// The previous release's binaries (`corrald`, `corral`), built by `make previous` into the
/// directory that `CORRAL_PREVIOUS_BIN` names; `None` when the variable is unset.
pub fn previous_release() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("CORRAL_PREVIOUS_BIN")?);
    let corrald = dir.join("corrald");
    assert!(corrald.exists(), "CORRAL_PREVIOUS_BIN={} has no corrald: run make previous", dir.display());
    Some(dir)
}

/// The source tree.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the source tree")
}

/// Runs a scenario of the web console's browser tests (web/e2e/run.mjs: Debian's chromium,
/// headless, through playwright-core) against the node at `url`, screenshots in `out`; panics
/// with its output unless every check passed, else returns it.
pub fn web_e2e(url: &str, out: &Path, args: &[&str]) -> String {
    let web = repo().join("web");
    assert!(
        web.join("dist/index.html").is_file() && web.join("node_modules/playwright-core").is_dir(),
        "the web console is not built: run `make web` (make test does)"
    );
    let run = Command::new("node")
        .arg(web.join("e2e/run.mjs"))
        .args(["--url", url, "--out"])
        .arg(out)
        .args(args)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "web e2e {args:?} failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("PASS")), "no checks ran:\n{stdout}");
    stdout
}
