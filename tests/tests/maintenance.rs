//! Host maintenance on test-driver hosts: a host with nothing to move enters maintenance at
//! once and is left out of placement; a VM that cannot move (the test driver cannot migrate)
//! keeps its host preparing, and `host show` names it and says why; once it is stopped the
//! host is in maintenance; `host activate` brings it back. Live migration itself is covered by
//! the sandbox test on real QEMU.

use corral_cli::views::{HostView, VmView};
use corral_tests::{wait_until, Cluster};
use std::time::Duration;

fn host(c: &Cluster, node: usize, name: &str) -> HostView {
    c.cli_json(node, &["host", "show", name])
}

#[test]
fn maintenance_empties_a_host_names_what_blocks_it_and_activate_undoes_it() {
    let c = Cluster::run(3, &[]);
    let h: HostView = c.cli_json(0, &["host", "maintenance", "host3", "--reason", "firmware update", "--wait"]);
    assert_eq!((h.state.as_str(), h.maintenance_reason.as_deref()), ("maintenance", Some("firmware update")));
    c.refused(1, &["vm", "create", "web1", "--memory", "256M", "--start", "--host", "host3"], "host host3");
    // Placement without a host never picks it either.
    for i in 0..4 {
        let vm: VmView = c.cli_json(0, &["vm", "create", &format!("spread{i}"), "--memory", "128M", "--start"]);
        assert_ne!(vm.host.as_deref(), Some("host3"), "{vm:?}");
    }

    c.cli_json::<VmView>(0, &["vm", "create", "pinned", "--memory", "256M", "--start", "--host", "host2"]);
    c.wait_status(0, "pinned", "up");
    let h: HostView = c.cli_json(1, &["host", "maintenance", "host2"]);
    assert_eq!(h.state, "preparing_for_maintenance", "{h:?}");
    let blocked = &h.blocked;
    let pinned = blocked.iter().find(|b| b.vm == "pinned").unwrap_or_else(|| panic!("{h:?}"));
    assert!(pinned.reason.contains("the test driver cannot migrate VMs"), "{pinned:?}");
    let shown = c.must_ok(2, &["host", "show", "host2"]);
    assert!(shown.contains("VM pinned: vm 'pinned' runs on host host2, which uses libvirt's test driver"), "{shown}");

    for b in blocked {
        c.cli_json::<VmView>(0, &["vm", "stop", &b.vm]);
    }
    wait_until(Duration::from_secs(20), "host2 in maintenance", || {
        let h = host(&c, 0, "host2");
        if h.state == "maintenance" {
            Ok(())
        } else {
            Err(format!("{h:?}"))
        }
    });
    let events = c.events(0);
    assert!(
        events.iter().any(|m| m.starts_with("Host host2 cannot enter maintenance yet") && m.contains(". VM pinned:")),
        "{events:#?}"
    );
    // On the request of whoever stopped the last VM (admin), or on a host's report.
    let done = ["Host host2 is in maintenance.", "Host host2 is in maintenance by admin."];
    assert!(events.iter().any(|m| done.contains(&m.as_str())), "{events:#?}");

    let h: HostView = c.cli_json(0, &["host", "activate", "host3"]);
    assert_eq!((h.state.as_str(), h.maintenance_reason.is_none()), ("up", true), "{h:?}");
    let vm: VmView = c.cli_json(0, &["vm", "start", "pinned", "--host", "host3"]);
    assert_eq!(vm.host.as_deref(), Some("host3"));
    c.refused(0, &["host", "activate", "host1"], "host host1 is up, not in maintenance");
    c.refused(0, &["vm", "migrate-cancel", "pinned"], "vm 'pinned' is not migrating");
}
