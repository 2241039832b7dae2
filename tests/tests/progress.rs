//! Progress of the CLI's waits as a pipe gets it (plain lines, no carriage return) on
//! test-driver hosts: clone, template create, snapshot create and delete, and import with
//! `--wait` (one long call: a line when it starts, one when it is done), and `host maintenance
//! --wait` while a VM that cannot move keeps the host preparing. `vm migrate --wait` moves a real
//! guest in the sandbox test (the test driver cannot migrate).

use std::time::Duration;

use corral_cli::views::{HostView, VmView};
use corral_tests::{wait_until, CliOutput, Cluster};

/// stderr's lines, checked to be plain.
fn lines(out: &CliOutput) -> Vec<String> {
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains('\r'), "a carriage return in a pipe: {:?}", out.stderr);
    out.stderr.lines().map(str::to_string).collect()
}

/// "<text> (850 ms)" or "<text> (1.2 s)": a finish line.
fn finished(line: &str, text: &str) -> bool {
    line.strip_prefix(text)
        .and_then(|rest| rest.strip_prefix(" ("))
        .is_some_and(|rest| rest.ends_with(" ms)") || rest.ends_with(" s)"))
}

#[test]
fn long_calls_show_a_line_when_they_start_and_one_when_they_are_done() {
    let c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "src", "--memory", "256M", "--disk", "64M"]);

    // Without --wait, as before: nothing on stderr.
    let out = c.corral(1, &["-o", "json", "vm", "clone", "src", "quiet"]);
    assert_eq!(lines(&out), Vec::<String>::new());

    let out = c.corral(1, &["-o", "json", "vm", "clone", "src", "copy", "--wait"]);
    let said = lines(&out);
    assert_eq!(said.len(), 2, "{said:?}");
    assert_eq!(said[0], "cloning src as copy: copying 1 disk (src-disk0 64 MiB)");
    assert!(finished(&said[1], "VM copy made"), "{said:?}");
    assert_eq!(out.view::<VmView>().name, "copy", "stdout keeps the result alone");

    let out = c.corral(2, &["-o", "json", "template", "create", "t1", "--from-vm", "src", "--wait"]);
    let said = lines(&out);
    assert_eq!(said[0], "making template t1 of src: copying 1 disk (src-disk0 64 MiB)");
    assert!(finished(&said[1], "template t1 made"), "{said:?}");

    let out = c.corral(0, &["vm", "snapshot", "create", "src", "--wait"]);
    let said = lines(&out);
    let id = out.stdout.split_whitespace().last().expect("the snapshot's id").to_string();
    let what = format!("taking snapshot {id} of src (of its disks)");
    assert_eq!(said[0], what, "{said:?}");
    assert!(finished(said.last().unwrap(), &format!("{what}: done")), "{said:?}");

    let out = c.corral(0, &["vm", "snapshot", "delete", "src", &id, "--wait"]);
    let said = lines(&out);
    let what = format!("deleting snapshot {id} of src");
    assert_eq!(said[0], what, "{said:?}");
    assert!(finished(said.last().unwrap(), &format!("{what}: done")), "{said:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("src.ovf");
    c.must_ok(0, &["vm", "export", "src", "-f", file.to_str().unwrap()]);
    let out =
        c.corral(1, &["-o", "json", "vm", "import", file.to_str().unwrap(), "--name", "again", "--clone", "--wait"]);
    let said = lines(&out);
    assert_eq!(said[0], format!("importing a VM from {}, copying its disks", file.display()));
    assert!(finished(&said[1], "imported VM again"), "{said:?}");
}

#[test]
fn host_maintenance_wait_counts_the_vms_left_and_names_the_one_that_blocks() {
    let c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "pinned", "--memory", "256M", "--start", "--host", "host2"]);
    c.wait_status(0, "pinned", "up");

    let out = std::thread::scope(|s| {
        let waiting = s.spawn(|| c.corral(1, &["-o", "json", "host", "maintenance", "host2", "--wait"]));
        // The test driver cannot migrate: the host stays preparing, the VM named, until it stops.
        wait_until(Duration::from_secs(20), "pinned to block host2's maintenance", || {
            let h: HostView = c.cli_json(0, &["host", "show", "host2"]);
            if h.blocked.iter().any(|b| b.vm == "pinned") {
                Ok(())
            } else {
                Err(format!("{h:?}"))
            }
        });
        c.cli_json::<VmView>(0, &["vm", "stop", "pinned"]);
        waiting.join().expect("the waiting CLI")
    });
    let said = lines(&out);
    assert_eq!(said[0], "moving VMs off host2: 0%, 1 VM left", "{said:?}");
    assert!(
        said.iter().any(|l| l.starts_with("waiting: VM pinned cannot move yet: ") && l.contains("test driver")),
        "{said:?}"
    );
    assert!(finished(said.last().unwrap(), "host host2 is in maintenance"), "{said:?}");
    // Each line says something new: no line twice in a row.
    assert!(said.windows(2).all(|w| w[0] != w[1]), "{said:?}");
    let h: HostView = out.view();
    assert_eq!(h.state, "maintenance");
}
