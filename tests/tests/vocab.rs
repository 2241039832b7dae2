//! The API's closed sets of values on the wire: a server fills each enum field and the string
//! beside it; it reads the enum and falls back to the string when the enum is unspecified (a
//! client that knows only the strings, such as release 3f21f51's CLI), and refuses a string
//! that names no value, naming the field. With `CORRAL_PREVIOUS_BIN`, the release's own CLI
//! reads this build's answers.

use corral_proto::host_service_client::HostServiceClient;
use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{
    CreateVmRequest, DomainType, EditVmRequest, HaPriority, HostState, ListHostsRequest, MigrationPolicy,
    ResumeBehavior, Vm, VmStatus,
};
use corral_tests::client::channel;
use corral_tests::{previous_release, Cluster};
use serde_json::Value;
use tonic::Code;

#[test]
fn enums_and_their_strings_travel_together_and_an_older_clients_strings_are_read() {
    let c = Cluster::run(1, &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The channels connect lazily, inside the runtime.
    let _runtime = rt.enter();
    let endpoint = c.endpoint(0).to_string();
    let mut vms = VmServiceClient::new(channel(&endpoint));
    let mut hosts = HostServiceClient::new(channel(&endpoint));
    let create = |name: &str| CreateVmRequest { name: name.into(), memory_mib: 64, vcpus: 1, ..Default::default() };

    // A client of release 3f21f51 sends only the strings.
    let old = CreateVmRequest {
        ha: true,
        ha_priority: "high".into(),
        resume_behavior: "kill".into(),
        domain_type: "qemu".into(),
        ..create("old-client")
    };
    let vm: Vm = rt.block_on(vms.create(old)).unwrap().into_inner();
    let ha = vm.ha.clone().unwrap();
    assert_eq!((ha.priority.as_str(), ha.priority_enum()), ("high", HaPriority::High));
    assert_eq!((vm.resume_behavior.as_str(), vm.resume_behavior_enum()), ("kill", ResumeBehavior::Kill));
    assert_eq!((vm.domain_type.as_str(), vm.domain_type_enum()), ("qemu", DomainType::Qemu));
    assert_eq!((vm.status.as_str(), vm.status_enum()), ("down", VmStatus::Down));
    assert_eq!((vm.migration_policy.as_str(), vm.migration_policy_enum()), ("allow", MigrationPolicy::Allow));

    // The enum wins over its string; a client may send the enum alone.
    let mut both = CreateVmRequest { ha: true, ha_priority: "high".into(), ..create("enum-wins") };
    both.set_ha_priority_enum(HaPriority::Low);
    let vm = rt.block_on(vms.create(both)).unwrap().into_inner();
    assert_eq!(vm.ha.unwrap().priority, "low");
    let mut edit = EditVmRequest { vm: "enum-wins".into(), ..Default::default() };
    edit.set_migration_policy_enum(MigrationPolicy::Manual);
    let vm = rt.block_on(vms.edit(edit)).unwrap().into_inner();
    assert_eq!((vm.migration_policy.as_str(), vm.migration_policy_enum()), ("manual", MigrationPolicy::Manual));

    // A string that names no value is refused, naming the field and the values.
    let bad = CreateVmRequest { ha: true, ha_priority: "urgent".into(), ..create("refused") };
    let refused = rt.block_on(vms.create(bad)).unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("ha_priority: must be low, medium or high (got 'urgent')"), "{refused:?}");

    let listed = rt.block_on(hosts.list(ListHostsRequest { stale: false })).unwrap().into_inner();
    let host = &listed.hosts[0];
    assert_eq!((host.state.as_str(), host.state_enum()), ("up", HostState::Up));
    assert_eq!((host.domain_type.as_str(), host.domain_type_enum()), ("test", DomainType::Test));

    // The release's CLI knows only the strings.
    let previous = previous_release();
    if previous.is_none() {
        eprintln!(
            "SKIPPED (that part): CORRAL_PREVIOUS_BIN is not set (make test builds the previous release and sets it)"
        );
    }
    if let Some(previous) = previous {
        // It speaks plaintext, so it meets this build's node in a cluster at level 0 (one the
        // release bootstrapped), as it does during a rolling upgrade.
        let mut m = Cluster::start(0, &[]);
        m.add_node_running(&previous.join("corrald"), &[]);
        m.add_node(&[]);
        m.bootstrap();
        m.join(1);
        m.must_ok(
            1,
            &[
                "vm",
                "create",
                "old-client",
                "--memory",
                "64M",
                "--ha",
                "--ha-priority",
                "high",
                "--resume-behavior",
                "kill",
            ],
        );
        let endpoint = m.endpoint(1).to_string();
        let out = std::process::Command::new(previous.join("corral"))
            .args(["--endpoint", &endpoint, "-o", "json", "vm", "show", "old-client"])
            .env_remove("CORRAL_ENDPOINT")
            .output()
            .expect("run the previous release's corral");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((&json["ha"]["priority"], &json["resume_behavior"]), (&Value::from("high"), &Value::from("kill")));
    }
}
