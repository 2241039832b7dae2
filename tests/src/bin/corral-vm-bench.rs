//! corral-vm-bench: figures for real VMs on the sandbox hosts (deploy/sandbox, needs root):
//! how long `vm start` takes to reach `up`, and how Corral's live migration compares with a
//! plain `virsh migrate` of a same-sized domain on the same hosts. It prints medians and
//! ratios and asserts nothing about them; every loop is bounded in count and in time.
//!
//!   corral-vm-bench [--only start|migrate] [--starts N] [--rounds N]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::sandbox::{Sandbox, WAIT};
use corral_tests::wait_until;

/// How often the start benchmark asks whether the VM is up.
const POLL: Duration = Duration::from_millis(50);

struct Opts {
    only: Option<String>,
    starts: usize,
    rounds: usize,
}

fn parse_args() -> Opts {
    let mut o = Opts { only: None, starts: 10, rounds: 5 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--only" => o.only = Some(value("--only")),
            "--starts" => o.starts = value("--starts").parse().expect("--starts: a number"),
            "--rounds" => o.rounds = value("--rounds").parse().expect("--rounds: a number"),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn main() {
    let opts = parse_args();
    let wants = |what: &str| opts.only.as_deref().is_none_or(|o| o == what);
    let t = Instant::now();
    let Some(sb) = Sandbox::up(3) else {
        eprintln!("corral-vm-bench: the sandbox hosts need root; nothing measured");
        std::process::exit(2);
    };
    // Diskless SeaBIOS-only guests run under KVM here; without /dev/kvm they fall back to TCG.
    let domain_type = if std::path::Path::new("/dev/kvm").exists() { "kvm" } else { "qemu" };
    println!(
        "corral-vm-bench: 3 sandbox hosts (namespaced libvirtd + corrald), diskless {domain_type} guests; \
         sandbox up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if wants("start") {
        start_latency(&sb, domain_type, opts.starts);
    }
    if wants("migrate") {
        migration(&sb, domain_type, opts.rounds);
    }
}

/// `vm start` until `vm show` says up, for a diskless 128 MiB VM, stopped between runs.
fn start_latency(sb: &Sandbox, domain_type: &str, runs: usize) {
    sb.must_json(&["vm", "create", "bench-start", "--memory", "128M", "--vcpus", "1", "--domain-type", domain_type]);
    let mut took = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        sb.must_json(&["vm", "start", "bench-start"]);
        let mut next = t;
        loop {
            let vm = sb.vm("bench-start");
            if vm["status"] == "up" {
                took.push(t.elapsed());
                hosts.push(vm["host"].as_str().unwrap_or("?").to_string());
                break;
            }
            assert!(t.elapsed() < WAIT, "bench-start not up after {WAIT:?}: {vm}");
            next += POLL;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        sb.must_json(&["vm", "stop", "bench-start"]);
        sb.wait_status("bench-start", "down");
    }
    sb.must_ok(&["vm", "delete", "bench-start"]);
    took.sort();
    hosts.sort();
    hosts.dedup();
    println!(
        "start latency (vm start -> up, 128 MiB diskless, polled every {} ms, {runs} runs on {}): median {}, max {}",
        POLL.as_millis(),
        hosts.join("/"),
        ms(median(&took)),
        ms(*took.last().unwrap_or(&Duration::ZERO)),
    );
}

/// A 256 MiB idle diskless VM moved host1 <-> host3 by `corral vm migrate --wait`, against a
/// plain libvirt domain of the same size moved by `virsh migrate --live`, taking turns.
fn migration(sb: &Sandbox, domain_type: &str, rounds: usize) {
    let (h1, h3) = (sb.host("host1").libvirt_uri.clone(), sb.host("host3").libvirt_uri.clone());
    #[rustfmt::skip]
    sb.must_json(&["vm", "create", "bench-mig", "--memory", "256M", "--vcpus", "1", "--domain-type", domain_type,
                   "--start", "--host", "host1"]);
    sb.wait_status("bench-mig", "up");

    let xml = format!(
        "<domain type='{domain_type}'>
  <name>bench-virsh</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>
"
    );
    let file = tempfile::Builder::new().prefix("bench-virsh-").suffix(".xml").tempfile().expect("temp file");
    std::fs::write(file.path(), xml).expect("write the domain XML");
    virsh(&h1, &["define", &file.path().display().to_string()]);
    virsh(&h1, &["start", "bench-virsh"]);

    let (mut corral, mut plain) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (from, to, to_name) in [(&h1, &h3, "host3"), (&h3, &h1, "host1")] {
            let t = Instant::now();
            let out = sb.corral(&["-o", "json", "vm", "migrate", "bench-mig", "--to", to_name, "--wait"]);
            let c = t.elapsed();
            assert_eq!(out.code, 0, "corral vm migrate bench-mig --to {to_name}: {}", out.stderr.trim());
            let t = Instant::now();
            virsh(from, &["migrate", "--live", "--persistent", "--undefinesource", "bench-virsh", to]);
            let v = t.elapsed();
            println!("  round {} -> {to_name}: corral {}, virsh {}", round + 1, ms(c), ms(v));
            corral.push(c);
            plain.push(v);
            // Both settled where they went before the next turn.
            sb.wait_vm("bench-mig", &format!("up on {to_name}"), |vm| vm["status"] == "up" && vm["host"] == to_name);
            wait_until(WAIT, &format!("bench-virsh running on {to_name}"), || {
                let state = virsh_out(to, &["domstate", "bench-virsh"]);
                if state.trim() == "running" {
                    Ok(())
                } else {
                    Err(state)
                }
            });
        }
    }
    // Every round ends where it began: on host1.
    virsh(&h1, &["destroy", "bench-virsh"]);
    virsh(&h1, &["undefine", "bench-virsh"]);
    sb.must_json(&["vm", "stop", "bench-mig"]);
    sb.wait_status("bench-mig", "down");
    sb.must_ok(&["vm", "delete", "bench-mig"]);

    corral.sort();
    plain.sort();
    let (c, v) = (median(&corral), median(&plain));
    println!(
        "live migration, 256 MiB idle diskless, host1 <-> host3, {rounds} rounds each way: \
         corral vm migrate --wait median {} (max {}), virsh migrate --live median {} (max {}), ratio corral/virsh {:.2}",
        ms(c),
        ms(*corral.last().unwrap_or(&Duration::ZERO)),
        ms(v),
        ms(*plain.last().unwrap_or(&Duration::ZERO)),
        c.as_secs_f64() / v.as_secs_f64().max(f64::EPSILON),
    );
}

fn virsh(uri: &str, args: &[&str]) {
    let out = Command::new("virsh").arg("-c").arg(uri).args(args).stdin(Stdio::null()).output().expect("run virsh");
    assert!(out.status.success(), "virsh -c {uri} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
}

fn virsh_out(uri: &str, args: &[&str]) -> String {
    let out = Command::new("virsh").arg("-c").arg(uri).args(args).stdin(Stdio::null()).output().expect("run virsh");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn median(sorted: &[Duration]) -> Duration {
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
