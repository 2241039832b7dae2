//! What `-o json` prints: one serde struct per result, converted from the proto messages here
//! and nowhere else. These shapes are a contract with scripts and tests; add fields, never
//! rename or remove them.

use chrono::{DateTime, SecondsFormat, Utc};
use corral_proto::v1 as proto;
use corral_proto::Word;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatusView {
    pub cluster: String,
    /// 0 while no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub members: Vec<MemberView>,
    pub this_node_id: u64,
    pub last_applied: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// How live migrations run, unless a VM says otherwise.
    pub migration: MigrationSettingsView,
    /// "even" or "pack"; empty before bootstrap.
    pub scheduling: String,
    /// vCPUs a host may hand out per physical CPU.
    pub cpu_overcommit: u32,
    /// The format and features every member must understand (raised by `cluster upgrade`).
    pub cluster_level: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSettingsView {
    pub scheduling: String,
    pub cpu_overcommit: u32,
    pub migration: MigrationSettingsView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffinityGroupView {
    pub name: String,
    /// "positive" or "negative".
    pub polarity: String,
    pub enforcing: bool,
    /// VM names.
    pub vms: Vec<String>,
    /// RFC 3339, UTC.
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffinityLabelView {
    pub name: String,
    pub vms: Vec<String>,
    pub hosts: Vec<String>,
    /// RFC 3339, UTC.
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub name: String,
    pub address: String,
    /// "voter" or "learner".
    pub role: String,
    pub reachable: bool,
    /// Its software version; empty when it does not answer.
    pub version: String,
    /// The highest cluster level it supports.
    pub max_level: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub id: u64,
    pub name: String,
    pub address: String,
    pub state: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub memory_free_mib: u64,
    pub vms_running: u32,
    /// The hypervisor its VMs run under by default: "kvm", "qemu" or "test".
    pub domain_type: String,
    pub vcpus_free: u32,
    /// RFC 3339, UTC: since when the host is in its state.
    pub state_since: String,
    /// Set while the host is ordered into maintenance (the reason, possibly empty).
    pub maintenance_reason: Option<String>,
    /// VMs that keep it from entering maintenance, with why.
    pub blocked: Vec<MaintenanceBlockView>,
    /// What the host offers, for VMs that require tags.
    pub tags: Vec<String>,
    /// Hosted engine: the host's last reported score; null when it never reported one.
    pub engine_score: Option<EngineScoreView>,
    /// Hosted engine: the host will not run the engine VM.
    pub engine_local_maintenance: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineScoreView {
    pub score: u32,
    /// What lowered it, e.g. "gateway 10.0.0.1 unreachable: -1600".
    pub penalties: Vec<String>,
    /// RFC 3339, UTC.
    pub measured: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmView {
    pub id: String,
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub description: String,
    pub comment: String,
    pub status: String,
    /// The host the VM runs on, if any.
    pub host: Option<String>,
    pub ha: HaView,
    /// RFC 3339, UTC.
    pub created: String,
    /// In the order the guest sees them.
    pub disks: Vec<VmDiskView>,
    pub nics: Vec<NicView>,
    /// Why the VM was last shut down or stopped, if anyone said.
    pub stop_reason: Option<String>,
    /// The VM's own domain type; null when it follows its host's.
    pub domain_type: Option<String>,
    /// The host a live migration in progress goes to.
    pub migrating_to: Option<String>,
    /// Changes made while the VM ran, applied when it is next down; null when none.
    pub next_run: Option<NextRunView>,
    /// Tags a host must all have to run the VM.
    pub host_tags: Vec<String>,
    /// The only hosts the VM may run on; empty: any.
    pub pinned_hosts: Vec<String>,
    /// "allow", "manual" or "none".
    pub migration_policy: String,
    /// After a storage I/O error pause: "auto_resume", "leave_paused" or "kill".
    pub resume_behavior: String,
    /// Set while an HA VM waits to be restarted; null otherwise.
    pub ha_restart: Option<HaRestartView>,
    /// Set while a migration is queued or runs; null otherwise.
    pub migration: Option<MigrationView>,
    /// The VM's own migration settings; null fields follow the cluster's.
    pub migration_settings: MigrationOverridesView,
    /// The cluster's management VM.
    pub hosted_engine: bool,
    /// Deleting it (or its disks) is refused.
    pub delete_protected: bool,
    /// Guest OS as oVirt names it; null when unset.
    pub os: Option<String>,
    /// ISO image in its CD-ROM drive; null when empty.
    pub cdrom: Option<String>,
}

/// `vm import`: the VM as defined, and the parts of the document Corral does not act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportView {
    pub vm: VmView,
    pub ignored: Vec<String>,
}

/// One VM's OVF document, and the node whose store or state it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvfDocumentView {
    pub vm_id: String,
    pub name: String,
    pub node: String,
    pub xml: String,
}

/// `vm export -f FILE -o json`: where the document went (the XML itself is in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportView {
    pub vm_id: String,
    pub name: String,
    pub node: String,
    pub file: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvfListView {
    /// The node whose store was read.
    pub node: String,
    pub entries: Vec<OvfEntryView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvfEntryView {
    pub vm_id: String,
    pub name: String,
    pub hosted_engine: bool,
    /// Size of the document.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatusView {
    /// The engine VM's name.
    pub vm: String,
    pub vm_id: String,
    /// The host it runs on; null when it runs nowhere.
    pub host: Option<String>,
    pub state: String,
    pub global_maintenance: bool,
    pub hosts: Vec<EngineHostView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineHostView {
    pub host: String,
    pub state: String,
    /// Null when the host has not reported one.
    pub score: Option<u32>,
    pub penalties: Vec<String>,
    pub local_maintenance: bool,
    pub engine_here: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStartView {
    pub vm: String,
    pub host: String,
    /// What was checked, and what --force overrode.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationView {
    /// RFC 3339, UTC.
    pub queued: String,
    /// Ordered by the cluster (maintenance), not by an operator.
    pub automatic: bool,
    pub cancelling: bool,
    /// Null while it waits in its source host's queue.
    pub progress: Option<MigrationProgressView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationProgressView {
    pub percent: u32,
    pub memory_total_mib: u64,
    pub memory_remaining_mib: u64,
    pub iteration: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationOverridesView {
    pub auto_converge: Option<bool>,
    pub compression: Option<bool>,
    pub max_downtime_ms: Option<u64>,
    pub bandwidth_mibps: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationSettingsView {
    pub auto_converge: bool,
    pub compression: bool,
    /// Null: libvirt's default.
    pub max_downtime_ms: Option<u64>,
    /// Null: unlimited.
    pub bandwidth_mibps: Option<u64>,
    pub max_per_host: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceBlockView {
    pub vm: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaRestartView {
    /// RFC 3339, UTC: when the VM failed.
    pub failed: String,
    pub attempts: u32,
    /// RFC 3339, UTC: the next attempt.
    pub next_try: String,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextRunView {
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub domain_type: Option<String>,
}

/// A disk as part of a VM: the VM it belongs to goes without saying.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmDiskView {
    pub id: String,
    pub name: String,
    pub size_mib: u64,
    pub path: String,
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NicView {
    pub network: String,
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskView {
    pub id: String,
    pub name: String,
    pub size_mib: u64,
    pub path: String,
    pub format: String,
    /// The VM's name; null for a floating disk.
    pub vm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaView {
    pub enabled: bool,
    pub priority: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedVmView {
    pub id: String,
    pub deleted: bool,
    /// The VM's disks were kept as floating disks.
    pub disks_kept: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub index: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapView {
    pub cluster: String,
    pub node_id: u64,
    pub token: String,
    /// RFC 3339, UTC.
    pub expires: String,
    /// The hosted engine VM, when the bootstrap made one; null otherwise.
    pub engine: Option<VmView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub token: String,
    /// RFC 3339, UTC.
    pub expires: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinView {
    pub node_id: u64,
    pub cluster: String,
    pub role: String,
}

fn migration_view(m: Option<proto::MigrationSettings>) -> MigrationSettingsView {
    m.map(|m| MigrationSettingsView {
        auto_converge: m.auto_converge,
        compression: m.compression,
        max_downtime_ms: m.max_downtime_ms,
        bandwidth_mibps: m.bandwidth_mibps,
        max_per_host: m.max_per_host,
    })
    .unwrap_or_default()
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T04:10:00.123Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<proto::ClusterStatus> for ClusterStatusView {
    fn from(s: proto::ClusterStatus) -> Self {
        ClusterStatusView {
            cluster: s.cluster,
            leader_id: s.leader_id,
            term: s.term,
            members: s.members.into_iter().map(MemberView::from).collect(),
            this_node_id: s.this_node_id,
            last_applied: s.last_applied,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            migration: migration_view(s.settings.as_ref().and_then(|c| c.migration)),
            scheduling: s
                .settings
                .as_ref()
                .map(|c| word::<proto::SchedulingPolicy>(c.scheduling_enum, c.scheduling.clone()))
                .unwrap_or_default(),
            cpu_overcommit: s.settings.map_or(0, |c| c.cpu_overcommit),
            cluster_level: s.cluster_level,
        }
    }
}

impl From<proto::Member> for MemberView {
    fn from(m: proto::Member) -> Self {
        MemberView {
            id: m.id,
            name: m.name,
            address: m.address,
            role: word::<proto::MemberRole>(m.role_enum, m.role),
            reachable: m.reachable,
            version: m.version,
            max_level: m.max_level,
        }
    }
}

impl From<proto::Host> for HostView {
    fn from(h: proto::Host) -> Self {
        HostView {
            id: h.id,
            name: h.name,
            address: h.address,
            state: word::<proto::HostState>(h.state_enum, h.state),
            cpus: h.cpus,
            memory_mib: h.memory_mib,
            memory_free_mib: h.memory_free_mib,
            vms_running: h.vms_running,
            domain_type: word::<proto::DomainType>(h.domain_type_enum, h.domain_type),
            vcpus_free: h.vcpus_free,
            state_since: rfc3339(h.state_since_unix_ms),
            maintenance_reason: h.maintenance_reason,
            blocked: h.blocked.into_iter().map(|b| MaintenanceBlockView { vm: b.vm, reason: b.reason }).collect(),
            tags: h.tags,
            engine_score: h.engine_score.map(EngineScoreView::from),
            engine_local_maintenance: h.engine_local_maintenance,
        }
    }
}

impl From<proto::EngineScore> for EngineScoreView {
    fn from(s: proto::EngineScore) -> Self {
        EngineScoreView { score: s.score, penalties: s.penalties, measured: rfc3339(s.measured_unix_ms) }
    }
}

impl From<proto::Vm> for VmView {
    fn from(vm: proto::Vm) -> Self {
        let ha = vm.ha.unwrap_or_default();
        VmView {
            id: vm.id,
            name: vm.name,
            memory_mib: vm.memory_mib,
            vcpus: vm.vcpus,
            description: vm.description,
            comment: vm.comment,
            status: word::<proto::VmStatus>(vm.status_enum, vm.status),
            host: non_empty(vm.host),
            ha: HaView { enabled: ha.enabled, priority: word::<proto::HaPriority>(ha.priority_enum, ha.priority) },
            created: rfc3339(vm.created_unix_ms),
            disks: vm.disks.into_iter().map(VmDiskView::from).collect(),
            nics: vm.nics.into_iter().map(NicView::from).collect(),
            stop_reason: non_empty(vm.stop_reason),
            domain_type: non_empty(Some(word::<proto::DomainType>(vm.domain_type_enum, vm.domain_type))),
            migrating_to: non_empty(vm.migrating_to),
            next_run: vm.next_run.map(|n| NextRunView {
                memory_mib: n.memory_mib,
                vcpus: n.vcpus,
                domain_type: non_empty(n.domain_type.map(|t| word::<proto::DomainType>(n.domain_type_enum, t))),
            }),
            resume_behavior: word::<proto::ResumeBehavior>(vm.resume_behavior_enum, vm.resume_behavior),
            ha_restart: vm.ha_restart.map(|r| HaRestartView {
                failed: rfc3339(r.failed_unix_ms),
                attempts: r.attempts,
                next_try: rfc3339(r.next_try_unix_ms),
                last_error: r.last_error,
            }),
            migration: vm.migration.map(|j| MigrationView {
                queued: rfc3339(j.queued_unix_ms),
                automatic: j.automatic,
                cancelling: j.cancel,
                progress: j.progress.map(|p| MigrationProgressView {
                    percent: p.percent,
                    memory_total_mib: p.memory_total_mib,
                    memory_remaining_mib: p.memory_remaining_mib,
                    iteration: p.iteration,
                    elapsed_ms: p.elapsed_ms,
                }),
            }),
            migration_settings: vm
                .migration_settings
                .map(|o| MigrationOverridesView {
                    auto_converge: o.auto_converge,
                    compression: o.compression,
                    max_downtime_ms: o.max_downtime_ms,
                    bandwidth_mibps: o.bandwidth_mibps,
                })
                .unwrap_or_default(),
            host_tags: vm.host_tags,
            pinned_hosts: vm.pinned_hosts,
            migration_policy: word::<proto::MigrationPolicy>(vm.migration_policy_enum, vm.migration_policy),
            hosted_engine: vm.hosted_engine,
            delete_protected: vm.delete_protected,
            os: non_empty(Some(vm.os)),
            cdrom: non_empty(vm.cdrom),
        }
    }
}

impl From<proto::ImportVmResponse> for ImportView {
    fn from(r: proto::ImportVmResponse) -> Self {
        ImportView { vm: r.vm.unwrap_or_default().into(), ignored: r.ignored }
    }
}

impl From<proto::OvfDocument> for OvfDocumentView {
    fn from(d: proto::OvfDocument) -> Self {
        OvfDocumentView { vm_id: d.vm_id, name: d.name, node: d.node, xml: d.xml }
    }
}

impl From<proto::OvfListResponse> for OvfListView {
    fn from(r: proto::OvfListResponse) -> Self {
        OvfListView {
            node: r.node,
            entries: r
                .entries
                .into_iter()
                .map(|e| OvfEntryView { vm_id: e.vm_id, name: e.name, hosted_engine: e.hosted_engine, bytes: e.bytes })
                .collect(),
        }
    }
}

impl From<proto::EngineStatus> for EngineStatusView {
    fn from(s: proto::EngineStatus) -> Self {
        EngineStatusView {
            vm: s.vm,
            vm_id: s.vm_id,
            host: non_empty(s.host),
            state: word::<proto::VmStatus>(s.state_enum, s.state),
            global_maintenance: s.global_maintenance,
            hosts: s.hosts.into_iter().map(EngineHostView::from).collect(),
        }
    }
}

impl From<proto::EngineHost> for EngineHostView {
    fn from(h: proto::EngineHost) -> Self {
        let (score, penalties) = match h.score {
            Some(s) => (Some(s.score), s.penalties),
            None => (None, Vec::new()),
        };
        EngineHostView {
            host: h.host,
            state: word::<proto::HostState>(h.state_enum, h.state),
            score,
            penalties,
            local_maintenance: h.local_maintenance,
            engine_here: h.engine_here,
        }
    }
}

impl From<proto::EngineStartLocalResponse> for EngineStartView {
    fn from(r: proto::EngineStartLocalResponse) -> Self {
        EngineStartView { vm: r.vm, host: r.host, notes: r.notes }
    }
}

impl From<proto::ClusterSettings> for ClusterSettingsView {
    fn from(c: proto::ClusterSettings) -> Self {
        ClusterSettingsView {
            scheduling: word::<proto::SchedulingPolicy>(c.scheduling_enum, c.scheduling),
            cpu_overcommit: c.cpu_overcommit,
            migration: migration_view(c.migration),
        }
    }
}

impl From<proto::AffinityGroup> for AffinityGroupView {
    fn from(g: proto::AffinityGroup) -> Self {
        AffinityGroupView {
            name: g.name,
            polarity: word::<proto::Polarity>(g.polarity_enum, g.polarity),
            enforcing: g.enforcing,
            vms: g.vms,
            created: rfc3339(g.created_unix_ms),
        }
    }
}

impl From<proto::AffinityLabel> for AffinityLabelView {
    fn from(l: proto::AffinityLabel) -> Self {
        AffinityLabelView { name: l.name, vms: l.vms, hosts: l.hosts, created: rfc3339(l.created_unix_ms) }
    }
}

impl From<proto::Disk> for VmDiskView {
    fn from(d: proto::Disk) -> Self {
        VmDiskView { id: d.id, name: d.name, size_mib: d.size_mib, path: d.path, format: d.format }
    }
}

impl From<proto::Nic> for NicView {
    fn from(n: proto::Nic) -> Self {
        NicView { network: n.network, mac: n.mac }
    }
}

impl From<proto::Disk> for DiskView {
    fn from(d: proto::Disk) -> Self {
        DiskView {
            id: d.id,
            name: d.name,
            size_mib: d.size_mib,
            path: d.path,
            format: d.format,
            vm: non_empty(Some(d.vm)),
        }
    }
}

/// Proto3 cannot tell an empty string from none; JSON says null for both.
/// A closed-set field as the server sent it: its enum's word, or the string field beside it
/// when the enum is unspecified (a server that sends only the strings, such as release 3f21f51,
/// or a value newer than this CLI).
fn word<E: Word>(value: i32, text: String) -> String {
    match E::of(value) {
        v if v.is_unspecified() => text,
        v => v.word().to_string(),
    }
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

impl From<proto::Event> for EventView {
    fn from(e: proto::Event) -> Self {
        let kind = word::<proto::EventKind>(e.kind_enum, e.kind);
        EventView { index: e.index, time: rfc3339(e.time_unix_ms), kind, message: e.message }
    }
}

impl BootstrapView {
    pub fn new(cluster: String, r: proto::BootstrapResponse) -> Self {
        BootstrapView {
            cluster,
            node_id: r.node_id,
            token: r.token,
            expires: rfc3339(r.token_expires_unix_ms),
            engine: r.engine.map(VmView::from),
        }
    }
}

impl From<proto::CreateTokenResponse> for TokenView {
    fn from(r: proto::CreateTokenResponse) -> Self {
        TokenView { token: r.token, expires: rfc3339(r.expires_unix_ms) }
    }
}

impl From<proto::JoinResponse> for JoinView {
    fn from(r: proto::JoinResponse) -> Self {
        JoinView { node_id: r.node_id, cluster: r.cluster_name, role: word::<proto::MemberRole>(r.role_enum, r.role) }
    }
}

/// Test fixtures shared by the views' and the commands' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use corral_proto as proto;

    /// The engine VM, with every field the plain VM lacks.
    pub fn engine_vm() -> proto::Vm {
        proto::Vm {
            name: "HostedEngine".into(),
            hosted_engine: true,
            delete_protected: true,
            os: "other_linux".into(),
            cdrom: Some("tools.iso".into()),
            ..Default::default()
        }
    }

    /// A host with an engine score (its gateway fails) in local maintenance.
    pub fn engine_host() -> proto::Host {
        proto::Host {
            name: "host2".into(),
            engine_score: Some(proto::EngineScore {
                score: 1800,
                penalties: vec!["gateway 10.0.0.1 unreachable: -1600".into()],
                measured_unix_ms: 0,
            }),
            engine_local_maintenance: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{engine_host, engine_vm};
    use super::*;

    #[test]
    fn times_are_utc_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_320_600_123), "2026-11-22T04:10:00.123Z");
    }

    #[test]
    fn vm_json_has_the_documented_shape() {
        let vm = proto::Vm {
            id: "7f9c".into(),
            name: "web1".into(),
            memory_mib: 1024,
            vcpus: 2,
            ha: Some(proto::HaSettings { enabled: true, priority: "high".into(), ..Default::default() }),
            status: "stopped".into(),
            host: Some(String::new()),
            ..Default::default()
        };
        let json = serde_json::to_value(VmView::from(vm)).unwrap();
        assert_eq!(json["host"], serde_json::Value::Null);
        assert_eq!(json["ha"]["enabled"], true);
        assert_eq!(json["ha"]["priority"], "high");
        assert_eq!(json["memory_mib"], 1024);
        assert_eq!(json["created"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["disks"], serde_json::json!([]));
        assert_eq!(json["nics"], serde_json::json!([]));
        assert_eq!(json["stop_reason"], serde_json::Value::Null);
        assert_eq!(json["domain_type"], serde_json::Value::Null);
        assert_eq!(json["migrating_to"], serde_json::Value::Null);
        assert_eq!(json["host_tags"], serde_json::json!([]));
        assert_eq!(json["pinned_hosts"], serde_json::json!([]));
    }

    #[test]
    fn vm_json_has_its_scheduling_settings() {
        let vm = proto::Vm {
            name: "web1".into(),
            host_tags: vec!["ssd".into()],
            pinned_hosts: vec!["host1".into(), "host2".into()],
            migration_policy: "manual".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(VmView::from(vm)).unwrap();
        assert_eq!(json["host_tags"], serde_json::json!(["ssd"]));
        assert_eq!(json["pinned_hosts"], serde_json::json!(["host1", "host2"]));
        assert_eq!(json["migration_policy"], "manual");
    }

    #[test]
    fn vm_json_has_engine_protection_os_and_cdrom() {
        let plain = serde_json::to_value(VmView::from(proto::Vm::default())).unwrap();
        assert_eq!(plain["hosted_engine"], false);
        assert_eq!(plain["delete_protected"], false);
        assert_eq!(plain["os"], serde_json::Value::Null);
        assert_eq!(plain["cdrom"], serde_json::Value::Null);
        let engine = engine_vm();
        let json = serde_json::to_value(VmView::from(engine)).unwrap();
        assert_eq!(json["hosted_engine"], true);
        assert_eq!(json["delete_protected"], true);
        assert_eq!(json["os"], "other_linux");
        assert_eq!(json["cdrom"], "tools.iso");
    }

    #[test]
    fn import_json_is_the_vm_and_what_was_ignored() {
        let response = proto::ImportVmResponse {
            vm: Some(proto::Vm { name: "web2".into(), ..Default::default() }),
            ignored: vec!["USB controller".into(), "sound card".into()],
        };
        let json = serde_json::to_value(ImportView::from(response)).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["ignored", "vm"]);
        assert_eq!(json["vm"]["name"], "web2");
        assert_eq!(json["ignored"], serde_json::json!(["USB controller", "sound card"]));
    }

    #[test]
    fn host_json_has_its_engine_score() {
        let plain = serde_json::to_value(HostView::from(proto::Host::default())).unwrap();
        assert_eq!(plain["engine_score"], serde_json::Value::Null);
        assert_eq!(plain["engine_local_maintenance"], false);
        let host = engine_host();
        let json = serde_json::to_value(HostView::from(host)).unwrap();
        assert_eq!(
            json["engine_score"],
            serde_json::json!({"score": 1800, "penalties": ["gateway 10.0.0.1 unreachable: -1600"],
                "measured": "1970-01-01T00:00:00.000Z"})
        );
        assert_eq!(json["engine_local_maintenance"], true);
    }

    #[test]
    fn bootstrap_json_has_the_engine_vm_or_null() {
        let plain = BootstrapView::new("lab".into(), proto::BootstrapResponse::default());
        assert_eq!(serde_json::to_value(plain).unwrap()["engine"], serde_json::Value::Null);
        let response = proto::BootstrapResponse {
            engine: Some(proto::Vm { name: "HostedEngine".into(), hosted_engine: true, ..Default::default() }),
            ..Default::default()
        };
        let json = serde_json::to_value(BootstrapView::new("lab".into(), response)).unwrap();
        assert_eq!(json["engine"]["name"], "HostedEngine");
        assert_eq!(json["engine"]["hosted_engine"], true);
    }

    #[test]
    fn affinity_json_has_names_not_ids() {
        let g = proto::AffinityGroup {
            name: "db-spread".into(),
            polarity: String::new(),
            polarity_enum: proto::Polarity::Negative.into(),
            enforcing: true,
            vms: vec!["db1".into(), "db2".into()],
            created_unix_ms: 0,
        };
        let json = serde_json::to_value(AffinityGroupView::from(g)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "db-spread", "polarity": "negative", "enforcing": true,
                "vms": ["db1", "db2"], "created": "1970-01-01T00:00:00.000Z"})
        );
        let l = proto::AffinityLabel {
            name: "fast".into(),
            vms: vec!["db1".into()],
            hosts: vec!["host3".into()],
            created_unix_ms: 0,
        };
        let json = serde_json::to_value(AffinityLabelView::from(l)).unwrap();
        assert_eq!(json["hosts"], serde_json::json!(["host3"]));
    }

    #[test]
    fn vm_json_has_disks_nics_and_lifecycle_fields() {
        let vm = proto::Vm {
            name: "web1".into(),
            status: "migrating".into(),
            host: Some("host1".into()),
            disks: vec![proto::Disk {
                id: "d1".into(),
                name: "web1-disk0".into(),
                size_mib: 1024,
                path: "/var/lib/corral/images/d1.qcow2".into(),
                format: "qcow2".into(),
                vm: "web1".into(),
            }],
            nics: vec![proto::Nic { network: "default".into(), mac: "52:54:00:aa:bb:cc".into() }],
            stop_reason: Some("kernel update".into()),
            domain_type: "qemu".into(),
            migrating_to: Some("host2".into()),
            next_run: None,
            ..Default::default()
        };
        let json = serde_json::to_value(VmView::from(vm)).unwrap();
        assert_eq!(
            json["disks"],
            serde_json::json!([{
                "id": "d1",
                "name": "web1-disk0",
                "size_mib": 1024,
                "path": "/var/lib/corral/images/d1.qcow2",
                "format": "qcow2"
            }])
        );
        assert_eq!(json["nics"], serde_json::json!([{"network": "default", "mac": "52:54:00:aa:bb:cc"}]));
        assert_eq!(json["stop_reason"], "kernel update");
        assert_eq!(json["domain_type"], "qemu");
        assert_eq!(json["migrating_to"], "host2");
    }

    #[test]
    fn host_json_has_capacity_left() {
        let host = proto::Host {
            id: 2,
            name: "host2".into(),
            cpus: 8,
            memory_mib: 16384,
            memory_free_mib: 15360,
            vms_running: 1,
            domain_type: "kvm".into(),
            vcpus_free: 7,
            tags: vec!["ssd".into()],
            ..Default::default()
        };
        let json = serde_json::to_value(HostView::from(host)).unwrap();
        assert_eq!(json["memory_free_mib"], 15360);
        assert_eq!(json["vms_running"], 1);
        assert_eq!(json["domain_type"], "kvm");
        assert_eq!(json["vcpus_free"], 7);
        assert_eq!(json["memory_mib"], 16384);
        assert_eq!(json["tags"], serde_json::json!(["ssd"]));
    }

    #[test]
    fn floating_disks_have_a_null_vm() {
        let disk = |vm: &str| proto::Disk { name: "d".into(), size_mib: 512, vm: vm.into(), ..Default::default() };
        let floating = serde_json::to_value(DiskView::from(disk(""))).unwrap();
        assert_eq!(floating["vm"], serde_json::Value::Null);
        assert_eq!(floating["size_mib"], 512);
        let attached = serde_json::to_value(DiskView::from(disk("web1"))).unwrap();
        assert_eq!(attached["vm"], "web1");
        let keys: Vec<&str> = attached.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6);
        for key in ["id", "name", "size_mib", "path", "format", "vm"] {
            assert!(keys.contains(&key), "{key}");
        }
    }
}
