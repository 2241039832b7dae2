//! corral-powerloss: do writes that corrald acknowledged survive a real loss of the page cache?
//!
//!   corral-powerloss [--rounds N] [--writes-per-round M] [--writers W] [--no-fsync-control]
//!                    [--guest-dir DIR] [--commit SECONDS] [--quiet-ms MS] [--keep-disk] [--seed S]
//!
//! One corrald runs inside a QEMU guest (TCG; deploy/powerloss/build.sh makes the kernel, the
//! initramfs and an ext4 disk image), its data dir on a virtio disk with `cache=writeback`. From
//! outside, W gRPC writers create VMs and record every name the node acknowledged; shortly after
//! a burst of acknowledgements, while writes are still in flight, the QEMU process gets SIGKILL:
//! the guest's page cache is gone, and only what the guest wrote out to its disk (into QEMU, and
//! so into the host's page cache, which survives) remains. QEMU starts again on the same disk and
//! the acknowledged names are looked up with `corral -o json vm list`.
//!
//! The same rounds run with corrald's fdatasync on (every acknowledged write must be found, or
//! the exit code is 1) and, unless --no-fsync-control, with `--fsync false` as the negative
//! control (expected to lose acknowledged writes, or to come back damaged or empty). Both runs
//! mount /data with ext4's `commit=SECONDS` (default 60; 0 keeps ext4's 5 s) so that metadata
//! which nobody synced stays uncommitted for longer. Every round starts from a fresh copy of the
//! blank disk and bootstraps a new one-node cluster, unless --keep-disk: then a mode's rounds go
//! on with the disk the last power loss left (bootstrapped once; a round whose node does not come
//! back healthy makes the next one start afresh), which also checks that earlier rounds' writes
//! are still there. Every loop and wait is bounded; QEMU processes are killed on drop, also on
//! panic. Serial logs go to GUEST_DIR/logs/; with CORRAL_POWERLOSS_KEEP_CUT set, a copy of the
//! disk as the power cut left it goes to GUEST_DIR/disk-MODE-rROUND-cut.img.
//!
//! What the control can lose, and why these defaults:
//! - A SIGKILLed QEMU loses the guest's page cache but not what QEMU already wrote to the image,
//!   flushed or not. So an unsynced write that overwrites blocks ext4 has already allocated, inside
//!   the file's committed size, survives; only appends, whose new size and blocks wait in ext4's
//!   uncommitted journal, are lost. sled 0.34 grows its file up to a whole 512 KiB segment once it
//!   recovers after a crash: later writes into that segment are such overwrites. Hence a fresh disk
//!   per round (a round's writes are then appends).
//! - With `--fsync false` corrald's flush is sled's own (pwrite and `sync_file_range`), but sled's
//!   background flusher thread still `fsync`s its file every `flush_every_ms` (500 ms by default,
//!   left so by corral-storage), which commits ext4's journal. So only writes logged since its last
//!   pass are exposed; under TCG an acknowledgement arrives about 100 ms after its write went into
//!   the log with 1 or 2 writers (the default is 2), up to a second with 16. Hence the cut rules (see `write_and_cut`, the same for both runs): the power goes once
//!   writes have been acknowledged since the guest's last disk flush and that flush is 350 ms old
//!   (QEMU's QMP counts the guest's flushes), just before sled's next pass; else a few ms after a
//!   randomly chosen acknowledgement, writes in flight.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_cli::views::VmView;
use corral_proto::cluster_service_client::ClusterServiceClient;
use corral_proto::StatusRequest;
use corral_tests::client::{channel, Writer};
use corral_tests::{bin, free_port};
use serde_json::Value;

/// How long a guest may take from QEMU's start until corrald answers (TCG: about 20 s here).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the writing phase of a round may take before the power is cut anyway.
const WRITE_PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// The unflushed cut rule's wait after the guest's last disk flush: sled's own flusher thread
/// fsyncs every 500 ms, and under TCG an acknowledgement reaches us about 100 ms after its write
/// went into the log, so the writes that are both acknowledged and exposed are the ones just
/// before the flusher's next pass.
const UNFLUSHED_QUIET_MS: u64 = 350;
/// How long a CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the node may take after it answers until `vm list` works (leader election).
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

struct Opts {
    rounds: usize,
    writes: usize,
    writers: usize,
    control: bool,
    guest_dir: PathBuf,
    commit: u32,
    /// The unflushed rule's wait, in ms (0: no unflushed rule).
    quiet_ms: u64,
    /// Go on with the disk a power loss left (bootstrap once), instead of a fresh disk per round.
    keep_disk: bool,
    seed: Option<u64>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        rounds: 3,
        writes: 50,
        // Few writers: with many, a write waits in corrald's queue and its acknowledgement trails its
        // log write by up to a second, so that at the cut only writes sled's flusher already synced
        // are acknowledged (16 writers: the control lost writes in 1 of 3 rounds; 1 or 2: 3 of 3).
        writers: 2,
        control: true,
        guest_dir: default_guest_dir(),
        commit: 60,
        quiet_ms: UNFLUSHED_QUIET_MS,
        keep_disk: false,
        seed: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--rounds" => o.rounds = value("--rounds").parse().expect("--rounds: a number"),
            "--writes-per-round" => {
                o.writes = value("--writes-per-round").parse().expect("--writes-per-round: a number")
            }
            "--writers" => o.writers = value("--writers").parse().expect("--writers: a number"),
            "--no-fsync-control" => o.control = false,
            "--keep-disk" => o.keep_disk = true,
            "--guest-dir" => o.guest_dir = PathBuf::from(value("--guest-dir")),
            "--commit" => o.commit = value("--commit").parse().expect("--commit: seconds"),
            "--quiet-ms" => o.quiet_ms = value("--quiet-ms").parse().expect("--quiet-ms: milliseconds"),
            "--seed" => o.seed = Some(value("--seed").parse().expect("--seed: a number")),
            "-h" | "--help" => {
                println!(
                    "corral-powerloss [--rounds N] [--writes-per-round M] [--writers W] [--no-fsync-control] \
                     [--guest-dir DIR] [--commit SECONDS] [--quiet-ms MS] [--keep-disk] [--seed S]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(o.rounds >= 1 && o.rounds <= 1000, "--rounds: 1..=1000");
    assert!(o.writes >= 2 && o.writes <= 100_000, "--writes-per-round: 2..=100000");
    assert!(o.writers >= 1 && o.writers <= 64, "--writers: 1..=64");
    o
}

/// `target/powerloss`, beside the `debug` directory this binary runs from.
fn default_guest_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    let target = if dir.ends_with("deps") { dir.parent().unwrap().parent().unwrap() } else { dir.parent().unwrap() };
    target.join("powerloss")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// xorshift64*: enough to place the power cut; its seed is printed, and --seed repeats it.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_add(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

struct Guest {
    vmlinuz: PathBuf,
    initrd: PathBuf,
    blank_disk: PathBuf,
    dir: PathBuf,
}

/// Runs deploy/powerloss/build.sh when the guest is missing or older than the corrald it holds.
fn ensure_guest(dir: &Path) -> Guest {
    let g = Guest {
        vmlinuz: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        blank_disk: dir.join("disk.img"),
        dir: dir.to_path_buf(),
    };
    let corrald = bin("corrald");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (mtime(&g.initrd), mtime(&corrald)) {
        (Some(initrd), Some(bin)) => bin > initrd,
        _ => true,
    };
    if stale || !g.vmlinuz.exists() || !g.blank_disk.exists() {
        let script = workspace_root().join("deploy/powerloss/build.sh");
        println!("building the guest: {} {} {}", script.display(), dir.display(), corrald.display());
        let status = Command::new(&script).arg(dir).arg(&corrald).stdin(Stdio::null()).status();
        assert!(status.as_ref().is_ok_and(|s| s.success()), "{} failed: {status:?}", script.display());
    }
    for p in [&g.vmlinuz, &g.initrd, &g.blank_disk] {
        assert!(p.exists(), "{} is missing after the build", p.display());
    }
    std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
    g
}

/// One QEMU process; SIGKILLed on drop.
struct Qemu {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// QEMU's QMP socket, to count the guest's disk flushes.
    qmp: PathBuf,
    started: Instant,
}

impl Qemu {
    fn start(g: &Guest, disk: &Path, append: &str, log: &Path) -> Qemu {
        let port = free_port();
        let out = File::create(log).expect("serial log");
        let qmp = g.dir.join(format!("qmp-{port}.sock"));
        let _ = std::fs::remove_file(&qmp);
        #[rustfmt::skip]
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "512", "-smp", "1", "-nographic", "-no-reboot"])
            .arg("-kernel").arg(&g.vmlinuz)
            .arg("-initrd").arg(&g.initrd)
            .args(["-append", append])
            .arg("-drive").arg(format!("file={},format=raw,if=virtio,cache=writeback", disk.display()))
            .args(["-netdev", &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:7001")])
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .args(["-device", "virtio-rng-pci"])
            .arg("-qmp").arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn qemu-system-x86_64");
        Qemu { child: Some(child), port, log: log.to_path_buf(), qmp, started: Instant::now() }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of the serial log, on one line.
    fn tail(&self, n: usize) -> String {
        let s = self.serial();
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }

    /// SIGKILL: the power is cut. Waits until the process is gone.
    fn pull_the_plug(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_file(&self.qmp);
        }
    }
}

/// A QMP connection to a running QEMU: how many flushes the guest's disk has seen (the guest's
/// fsync/fdatasync and ext4 journal commits end in one).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(q: &Qemu) -> Result<Qmp, String> {
        let stream = UnixStream::connect(&q.qmp).map_err(|e| format!("QMP {}: {e}", q.qmp.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer };
        qmp.line()?; // the greeting
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    fn line(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("QMP closed".into()),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("QMP sent no JSON ({e}): {line}")),
            Err(e) => Err(format!("QMP: {e}")),
        }
    }

    /// Runs `command` and returns its "return" value (events in between are skipped; bounded).
    fn execute(&mut self, command: &str) -> Result<Value, String> {
        writeln!(self.writer, "{{\"execute\": \"{command}\"}}").map_err(|e| format!("QMP: {e}"))?;
        for _ in 0..100 {
            let v = self.line()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("QMP {command}: {e}"));
            }
        }
        Err(format!("QMP {command}: no answer among 100 messages"))
    }

    /// The flushes the guest's disks have completed.
    fn flushes(&mut self) -> Result<u64, String> {
        let stats = self.execute("query-blockstats")?;
        let devices = stats.as_array().ok_or("query-blockstats: not an array")?;
        Ok(devices.iter().filter_map(|d| d["stats"]["flush_operations"].as_u64()).sum())
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.pull_the_plug();
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    /// Serves a cluster.
    Member,
    /// Serves, but holds no cluster (its identity is gone or was never written).
    Empty,
    /// corrald or the guest stopped before it served; what the serial log ended with.
    Gone(String),
    /// Nothing answered in time; what the serial log ended with.
    Silent(String),
}

/// Polls corrald's `cluster status` (stale read) until it answers, the guest stops, or `timeout`.
fn wait_answer(rt: &tokio::runtime::Runtime, q: &mut Qemu, timeout: Duration) -> Answer {
    let deadline = q.started + timeout;
    let _runtime = rt.enter();
    let mut client = ClusterServiceClient::new(channel(&q.endpoint()));
    loop {
        if let Some(status) = q.exited() {
            return Answer::Gone(format!("qemu exited ({status}): {}", q.tail(6)));
        }
        let serial = q.serial();
        if serial.contains("CORRAL-PL-EXIT") || serial.contains("CORRAL-PL-FAIL") {
            return Answer::Gone(q.tail(6));
        }
        let reply = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(3), client.status(StatusRequest { stale: true })).await
        });
        match reply {
            Ok(Ok(_)) => return Answer::Member,
            Ok(Err(s)) if s.message().contains("not part of a cluster") => return Answer::Empty,
            _ => {}
        }
        if Instant::now() >= deadline {
            return Answer::Silent(q.tail(6));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Runs the CLI against `endpoint`, killed after `CLI_TIMEOUT`; (exit code, stdout, stderr).
fn corral(endpoint: &str, args: &[&str], scratch: &Path) -> (i32, String, String) {
    let out_path = scratch.join("cli.out");
    let err_path = scratch.join("cli.err");
    let mut child = Command::new(bin("corral"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .env_remove("CORRAL_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("cli stdout"))
        .stderr(File::create(&err_path).expect("cli stderr"))
        .spawn()
        .expect("run corral");
    let deadline = Instant::now() + CLI_TIMEOUT;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -2;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&out_path), read(&err_path))
}

/// The names `corral -o json vm list` shows, retried (bounded) while the node elects itself.
fn vm_names(endpoint: &str, scratch: &Path) -> Result<BTreeSet<String>, String> {
    let deadline = Instant::now() + LIST_TIMEOUT;
    loop {
        let (code, stdout, stderr) = corral(endpoint, &["-o", "json", "vm", "list"], scratch);
        if code == 0 {
            let vms: Vec<VmView> =
                serde_json::from_str(&stdout).map_err(|e| format!("vm list is not a list of VMs ({e})"))?;
            return Ok(vms.into_iter().map(|vm| vm.name).collect());
        }
        if Instant::now() >= deadline {
            return Err(format!("vm list failed ({code}): {}", stderr.trim()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// W writers create `pl-R-K` for K in 0..M (each K once) while the power is cut, at the first of:
///
/// - the unflushed rule: at least a quarter of the M writes are acknowledged, some of them since
///   the guest's last disk flush (QMP `query-blockstats`), and that flush is `--quiet-ms`
///   old. A store that syncs before it acknowledges meets it only when acknowledgements trail
///   their flush by that long (a pause in the writes); one that does not is cut where it is most
///   exposed, just before sled's flusher thread fsyncs again.
/// - the planned rule: `cut_delay` after the `cut_after`-th acknowledgement, writes in flight.
///
/// Both runs use the same rules. Returns what was acknowledged, and the first refusal.
fn write_and_cut(
    rt: &tokio::runtime::Runtime,
    q: &mut Qemu,
    round: usize,
    opts: &Opts,
    cut_after: usize,
    cut_delay: Duration,
) -> Written {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let endpoint = q.endpoint();
    let mut qmp = match Qmp::connect(q) {
        Ok(qmp) => Some(qmp),
        Err(e) => {
            println!("warning: no QMP ({e}): only the planned cut rule applies");
            None
        }
    };
    let mut flushes = qmp.as_mut().and_then(|m| m.flushes().ok());
    let flushes_before = flushes;
    let started = Instant::now();
    let tasks: Vec<_> = (0..opts.writers)
        .map(|w| {
            let (acked, next, cut, endpoint) = (acked.clone(), next.clone(), cut.clone(), endpoint.clone());
            let first_error = first_error.clone();
            let latencies = latencies.clone();
            let total = opts.writes;
            rt.spawn(async move {
                // QEMU's user-mode network listens with a backlog of 1: stagger the connects.
                tokio::time::sleep(Duration::from_millis(20 * w as u64)).await;
                let mut writer = Writer::new(&[endpoint]);
                while !cut.load(Ordering::SeqCst) {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= total {
                        break;
                    }
                    let name = format!("pl-{round}-{k}");
                    let id = uuid::Uuid::new_v4().to_string();
                    let sent = Instant::now();
                    match writer.create(&name, &id, Duration::from_secs(2)).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(name);
                            latencies.lock().unwrap().push(sent.elapsed());
                        }
                        Err(e) => {
                            let mut first = first_error.lock().unwrap();
                            if first.is_none() && !cut.load(Ordering::SeqCst) {
                                *first = Some(format!("{name}: {:?} {}", e.code(), e.message()));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    // Wait (bounded) for one of the rules, then cut the power.
    let deadline = started + WRITE_PHASE_TIMEOUT;
    let min_acks = (opts.writes / 4).max(1);
    let (mut last_flush_at, mut acks_at_flush) = (Instant::now(), 0);
    let mut reached_at: Option<Instant> = None;
    let mut slowest_query = Duration::ZERO;
    let reason = loop {
        // The count a query returns holds at some moment between its start and its end: a flush
        // counts from the query's end, acknowledgements from before its start (conservative: a
        // slow query can only delay the unflushed rule, never make it fire early).
        let n = acked.lock().unwrap().len();
        let now = Instant::now();
        let mut unchanged = false;
        if let Some(count) = qmp.as_mut().and_then(|m| m.flushes().ok()) {
            let end = Instant::now();
            slowest_query = slowest_query.max(end - now);
            if Some(count) != flushes {
                (flushes, last_flush_at, acks_at_flush) = (Some(count), end, acked.lock().unwrap().len());
            } else {
                unchanged = true;
            }
        }
        if unchanged
            && n >= min_acks
            && n > acks_at_flush
            && opts.quiet_ms > 0
            && now.saturating_duration_since(last_flush_at) >= Duration::from_millis(opts.quiet_ms)
        {
            break format!(
                "unflushed rule: {} acks since the guest's last disk flush {} ms before",
                n - acks_at_flush,
                now.saturating_duration_since(last_flush_at).as_millis()
            );
        }
        if n >= cut_after {
            let at = *reached_at.get_or_insert(now);
            if now - at >= cut_delay {
                break format!("planned rule: ack #{cut_after} + {} ms", cut_delay.as_millis());
            }
        }
        if now >= deadline {
            break format!("time limit: {} s of writes", WRITE_PHASE_TIMEOUT.as_secs());
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break "end of the writes".to_string();
        }
        if q.exited().is_some() {
            break "exit of QEMU".to_string();
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    let acked_at_cut = acked.lock().unwrap().len();
    q.pull_the_plug();
    let elapsed = started.elapsed();
    cut.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for t in tasks {
            // The writers' calls fail fast once QEMU is gone; a writer still stuck is dropped.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t).await.is_err() {
                abort.abort();
            }
        }
    });
    let names = acked.lock().unwrap().clone();
    let first_error = first_error.lock().unwrap().clone();
    let flushes = flushes.zip(flushes_before).map(|(after, before)| after - before);
    let ack_p50 = median(&mut latencies.lock().unwrap()).unwrap_or_default();
    Written { acked: names, at_cut: acked_at_cut, took: elapsed, first_error, reason, flushes, slowest_query, ack_p50 }
}

/// What a round's writers did before and while the power went.
struct Written {
    /// The names whose create was acknowledged.
    acked: BTreeSet<String>,
    /// How many were acknowledged when the power was cut.
    at_cut: usize,
    /// From the first write to the cut.
    took: Duration,
    /// The first write refused before the cut, if any.
    first_error: Option<String>,
    /// Which rule cut the power.
    reason: String,
    /// The guest's disk flushes seen during the writes (QMP), if QMP answered.
    flushes: Option<u64>,
    /// The slowest QMP query while waiting for the cut.
    slowest_query: Duration,
    /// The median time from sending a create to its acknowledgement.
    ack_p50: Duration,
}

#[derive(Default)]
struct Tally {
    rounds: usize,
    acked: usize,
    found: usize,
    lost: usize,
    /// Rounds that lost at least one acknowledged write, or came back damaged or empty.
    bad_rounds: usize,
    /// Rounds whose node did not come back serving its cluster (refused, empty, silent).
    not_back: usize,
    /// Acknowledged writes of earlier rounds that a later power loss took away.
    earlier_lost: usize,
    /// The guest's disk flushes during the writes, all rounds.
    flushes: u64,
}

/// Runs `opts.rounds` power losses with `fsync` on or off; appends boot times to `boots`.
fn run_mode(
    rt: &tokio::runtime::Runtime,
    g: &Guest,
    opts: &Opts,
    fsync: bool,
    rng: &mut Rng,
    boots: &mut Vec<Duration>,
) -> Tally {
    let mode = if fsync { "fsync-on" } else { "fsync-off" };
    let disk = g.dir.join(format!("disk-{mode}.img"));
    let scratch = g.dir.join(format!("scratch-{mode}"));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let commit = if opts.commit > 0 { format!(" corral.commit={}", opts.commit) } else { String::new() };
    // A fresh guest bootstraps itself over corrald's local socket (bootstrap takes no TCP).
    let append = format!("console=ttyS0 quiet panic=-1 corral.fsync={fsync}{commit} corral.bootstrap=pl");
    println!("== {mode}: kernel command line '{append}'");
    let mut tally = Tally::default();
    let mut fresh = true;
    let mut survivors: BTreeSet<String> = BTreeSet::new();
    let mut running: Option<Qemu> = None;
    let mut boot_no = 0;
    let mut boot = |boots: &mut Vec<Duration>, what: &str, round: usize| -> (Qemu, Answer) {
        boot_no += 1;
        let log = g.dir.join("logs").join(format!("{mode}-r{round}-boot{boot_no}-{what}.log"));
        let mut q = Qemu::start(g, &disk, &append, &log);
        let a = wait_answer(rt, &mut q, BOOT_TIMEOUT);
        if matches!(a, Answer::Member | Answer::Empty) {
            boots.push(q.started.elapsed());
        }
        (q, a)
    };
    for round in 1..=opts.rounds {
        tally.rounds += 1;
        fresh |= !opts.keep_disk;
        if fresh {
            running = None;
            copy_sparse(&g.blank_disk, &disk);
            survivors.clear();
        }
        // The guest to write to: the one that came back from the last round's power loss, if healthy.
        let mut q = match running.take() {
            Some(q) => q,
            None => {
                let (q, a) = boot(boots, "write", round);
                match a {
                    Answer::Member if !fresh => q,
                    // The guest bootstraps itself once its corrald listens: wait for it.
                    Answer::Member | Answer::Empty if fresh => {
                        let mut q = q;
                        let mut answer = a;
                        for _ in 0..100 {
                            if matches!(answer, Answer::Member) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(200));
                            answer = wait_answer(rt, &mut q, BOOT_TIMEOUT);
                        }
                        assert!(
                            matches!(answer, Answer::Member),
                            "{mode} round {round}: the guest did not bootstrap: {answer:?}"
                        );
                        q
                    }
                    other => panic!("{mode} round {round}: a fresh guest did not come up as expected: {other:?}"),
                }
            }
        };
        fresh = false;
        let cut_after = rng.range(opts.writes as u64 / 2, opts.writes as u64 - 1) as usize;
        let cut_delay = Duration::from_millis(rng.range(0, 50));
        let Written { acked, at_cut, took, first_error, reason, flushes, slowest_query, ack_p50 } =
            write_and_cut(rt, &mut q, round, opts, cut_after, cut_delay);
        tally.flushes += flushes.unwrap_or(0);
        if let Some(e) = &first_error {
            println!("{mode} round {round}: a write failed before the power went: {e}");
        }
        drop(q);
        if std::env::var_os("CORRAL_POWERLOSS_KEEP_CUT").is_some() {
            // For a post-mortem (e2fsck -fy on a copy replays the journal as the guest would).
            copy_sparse(&disk, &g.dir.join(format!("disk-{mode}-r{round}-cut.img")));
        }
        tally.acked += acked.len();
        let (mut q, answer) = boot(boots, "after-cut", round);
        let outcome = match answer {
            Answer::Member => match vm_names(&q.endpoint(), &scratch) {
                Ok(names) => {
                    let found = acked.iter().filter(|n| names.contains(*n)).count();
                    let earlier_lost: Vec<String> = survivors.iter().filter(|n| !names.contains(*n)).cloned().collect();
                    let unacked_present =
                        names.iter().filter(|n| n.starts_with(&format!("pl-{round}-")) && !acked.contains(*n)).count();
                    tally.found += found;
                    tally.lost += acked.len() - found;
                    tally.earlier_lost += earlier_lost.len();
                    if found < acked.len() || !earlier_lost.is_empty() {
                        tally.bad_rounds += 1;
                    }
                    let missing: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).take(5).collect();
                    survivors.extend(acked.iter().filter(|n| names.contains(*n)).cloned());
                    running = Some(q);
                    format!(
                        "found {found}, lost {}{}{}, unacknowledged but present {unacked_present}",
                        acked.len() - found,
                        if missing.is_empty() { String::new() } else { format!(" (e.g. {missing:?})") },
                        if earlier_lost.is_empty() {
                            String::new()
                        } else {
                            format!(", earlier rounds' writes lost {}", earlier_lost.len())
                        },
                    )
                }
                Err(e) => {
                    tally.lost += acked.len();
                    tally.bad_rounds += 1;
                    tally.not_back += 1;
                    fresh = true;
                    q.pull_the_plug();
                    format!("lost {} (it answers, but {e})", acked.len())
                }
            },
            Answer::Empty | Answer::Gone(_) | Answer::Silent(_) => {
                tally.lost += acked.len();
                tally.bad_rounds += 1;
                tally.not_back += 1;
                tally.earlier_lost += survivors.len();
                fresh = true;
                q.pull_the_plug();
                match answer {
                    Answer::Gone(tail) | Answer::Silent(tail) => {
                        format!("lost {}: corrald did not come back: {tail}", acked.len())
                    }
                    _ => format!(
                        "lost {}: corrald came back with no cluster (its identity and log are gone)",
                        acked.len()
                    ),
                }
            }
        };
        println!(
            "{mode} round {round}: {} acknowledged ({at_cut} when the power went, {:.2} s into the writes, {} guest \
             disk flushes, acks after {} ms (median), QMP queries <= {} ms; cut by the {reason}); after restart: \
             {outcome}",
            acked.len(),
            took.as_secs_f64(),
            flushes.map_or("?".to_string(), |f| f.to_string()),
            ack_p50.as_millis(),
            slowest_query.as_millis(),
        );
    }
    drop(running);
    tally
}

/// Copies the blank disk image, keeping it sparse.
fn copy_sparse(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("--sparse=always").arg(from).arg(to).status();
    assert!(status.is_ok_and(|s| s.success()), "cp {} {}", from.display(), to.display());
}

fn median(v: &mut [Duration]) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    Some(v[v.len() / 2])
}

fn main() {
    let started = Instant::now();
    let opts = parse_args();
    let seed = opts.seed.unwrap_or_else(|| uuid::Uuid::new_v4().as_u128() as u64);
    let mut rng = Rng::new(seed);
    let g = ensure_guest(&opts.guest_dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "corral-powerloss: {} rounds, {} writes per round by {} writers, seed {seed}; guest {} (QEMU TCG, 512 MiB, \
         virtio disk cache=writeback)",
        opts.rounds,
        opts.writes,
        opts.writers,
        g.dir.display()
    );
    if opts.commit > 0 {
        println!("both runs mount /data with ext4 commit={} (ext4's default is 5 s)", opts.commit);
    } else {
        println!("both runs mount /data with ext4's default commit interval (5 s)");
    }
    println!(
        "cut rules (both runs): as soon as >= {} writes are acknowledged and some of them came after the guest's \
         last disk flush, {} ms ago (QMP counts flushes); else 0-50 ms after a random acknowledgement in {}..{}",
        (opts.writes / 4).max(1),
        opts.quiet_ms,
        opts.writes / 2,
        opts.writes - 1
    );
    if opts.keep_disk {
        println!("--keep-disk: a mode's rounds go on with the disk the last power loss left");
    } else {
        println!("every round starts from a fresh blank disk and a new bootstrap");
    }
    if opts.control {
        println!(
            "note: with --fsync false sled's flusher thread still fsyncs its file every 500 ms, so the control \
             can only lose writes acknowledged since its last pass"
        );
    }
    let mut boots = Vec::new();
    let on = run_mode(&rt, &g, &opts, true, &mut rng, &mut boots);
    let off = opts.control.then(|| run_mode(&rt, &g, &opts, false, &mut rng, &mut boots));

    println!();
    let line = |label: &str, t: &Tally| {
        println!("{label}: rounds {}, writes acknowledged {}, found {}, lost {}", t.rounds, t.acked, t.found, t.lost);
    };
    let flushes = |label: &str, t: &Tally| {
        println!(
            "{label}: guest disk flushes while writing {} ({:.2} per acknowledged write)",
            t.flushes,
            t.flushes as f64 / t.acked.max(1) as f64
        );
    };
    line("fsync on", &on);
    if let Some(off) = &off {
        line("fsync off (control)", off);
    }
    flushes("fsync on", &on);
    if let Some(off) = &off {
        flushes("fsync off (control)", off);
    }
    if let Some(off) = &off {
        println!(
            "fsync off (control): {} of {} rounds lost acknowledged writes ({} did not come back serving the \
             cluster; earlier rounds' writes lost: {})",
            off.bad_rounds, off.rounds, off.not_back, off.earlier_lost
        );
        if off.bad_rounds == 0 {
            println!(
                "fsync off (control): NOTHING WAS LOST in {} rounds: this run cannot tell a synced store from an \
                 unsynced one",
                off.rounds
            );
        }
    } else {
        println!("fsync off (control): not run (--no-fsync-control)");
    }
    match median(&mut boots) {
        Some(m) => println!(
            "median time from QEMU start to corrald answering: {:.1} s ({} boots)",
            m.as_secs_f64(),
            boots.len()
        ),
        None => println!("median time from QEMU start to corrald answering: no boot answered"),
    }
    println!("wall time: {:.0} s", started.elapsed().as_secs_f64());
    if on.acked == 0 {
        println!("FAIL: with fsync on, no write was acknowledged: the run proves nothing");
        std::process::exit(1);
    }
    if on.lost > 0 || on.bad_rounds > 0 || on.earlier_lost > 0 {
        println!(
            "FAIL: with fsync on, {} acknowledged writes were lost ({} rounds bad, {} did not come back)",
            on.lost + on.earlier_lost,
            on.bad_rounds,
            on.not_back
        );
        std::process::exit(1);
    }
    println!("ok: with fsync on, every acknowledged write survived the power losses");
}
