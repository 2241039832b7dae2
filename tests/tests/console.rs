//! `vm console` refused where it must be (real corrald processes on libvirt's test driver,
//! whose domains have no serial pty and no VNC display): an unknown VM, a VM that is down, a
//! user without vm.console, `--vnc` on a host without a VNC listen address; and the refusal of
//! the VM's host passed back by a node that does not run it. Real consoles are in the sandbox
//! test (steps ab and ac).

use corral_tests::{corral_as, Cluster};

#[test]
fn console_refusals() {
    let c = Cluster::run(2, &[]);
    c.must_ok(0, &["vm", "create", "web1", "--memory", "64M", "--vcpus", "1"]);

    c.refused(0, &["vm", "console", "nope"], "vm 'nope' not found");
    c.refused(0, &["vm", "console", "nope", "--vnc"], "vm 'nope' not found");
    c.refused(1, &["vm", "console", "web1"], "VM web1 is down: it has a console only while it runs");
    c.refused(0, &["vm", "console", "web1", "--vnc"], "VM web1 is down");

    c.must_ok(0, &["vm", "start", "web1", "--host", "host2"]);
    c.wait_status(0, "web1", "up");
    // Asked on host1, answered by host2 (which runs it), passed back as it said it.
    c.refused(
        0,
        &["vm", "console", "web1", "--vnc"],
        "host host2 shows no VNC displays: start its corrald with --vnc-listen",
    );
    c.refused(1, &["vm", "console", "web1", "--vnc"], "host host2 shows no VNC displays");
    c.refused(0, &["vm", "console", "web1"], "VM web1 has no serial pty on host host2");

    // alice sees web1 (ReadOnlyAdmin) but may not open its console.
    let home = tempfile::tempdir().unwrap();
    let password = home.path().join("password");
    std::fs::write(&password, "alice-secret-pw\n").unwrap();
    let pw = password.to_str().unwrap();
    c.must_ok(0, &["user", "create", "alice", "--password-file", pw]);
    c.must_ok(0, &["permission", "add", "--user", "alice", "--role", "ReadOnlyAdmin", "--on", "vm:web1"]);
    let ca = home.path().join("ca.pem");
    c.must_ok(0, &["cluster", "ca", "-f", ca.to_str().unwrap(), "--force"]);
    let login = ["login", "--user", "alice", "--password-file", pw, "--ca-file", ca.to_str().unwrap()];
    let out = corral_as(home.path(), Some(c.endpoint(0)), &[], &login);
    assert_eq!(out.code, 0, "alice login: {}", out.stderr);
    let alice = |args: &[&str]| corral_as(home.path(), None, &[], args);
    assert_eq!(alice(&["vm", "show", "web1"]).code, 0, "alice sees web1");
    for args in [&["vm", "console", "web1"][..], &["vm", "console", "web1", "--vnc"]] {
        let out = alice(args);
        assert_ne!(out.code, 0, "alice ran {args:?}: {}", out.stdout);
        assert_eq!(
            out.stderr.trim(),
            "error: alice may not open the console of vm web1 (needs vm.console; has ReadOnlyAdmin on vm:web1)",
            "alice ran {args:?}"
        );
    }
    // UserRole has vm.console: past the permission, the host's own answer.
    c.must_ok(0, &["permission", "add", "--user", "alice", "--role", "UserRole", "--on", "vm:web1"]);
    let out = alice(&["vm", "console", "web1", "--vnc"]);
    assert!(out.code != 0 && out.stderr.contains("shows no VNC displays"), "{}", out.stderr);
}
