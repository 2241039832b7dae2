//! The short set of HA fault schedules on sandbox hosts that `make test` runs (the long run
//! is `corral-faults --sandbox`): seeds 13 and 17, which between them freeze the leader, cut
//! a host off, cut a host's power and kill a host's corrald, with one HA guest per host and
//! the double-run monitor watching. Each must end with no violation. Needs root (namespaces,
//! a bridge); skipped otherwise. (Seeds 106 and 109, which found a healthy host fencing itself
//! while leases were renewed by the leader alone, are in RELIABILITY.md's runs.)

use corral_tests::faults::sandbox_ha::run_ha_schedule;
use corral_tests::sandbox::Sandbox;

#[test]
fn ha_fault_schedules_on_sandbox_hosts_end_with_no_violation() {
    let Some(sb) = Sandbox::up(3) else {
        eprintln!("SKIPPED ha_fault_schedules_on_sandbox_hosts_end_with_no_violation: the sandbox hosts need root");
        return;
    };
    for seed in [13, 17] {
        let report = run_ha_schedule(&sb, seed);
        println!("{report}");
        assert!(report.faults.values().sum::<usize>() > 0, "seed {seed} injected no fault");
        assert!(report.violations.is_empty(), "{report}");
    }
}
