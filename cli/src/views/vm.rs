//! `vm list` and `vm show`: a VM with its disks, NICs, HA, migration and next-run parts, and
//! what `vm delete` answers.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::{non_empty, rfc3339, word};

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
    /// It has a configuration that waits for its next run (`next_run`).
    pub pending_next_run: bool,
    /// Hot-plug limits; null: no hot-plug of that kind.
    pub max_vcpus: Option<u32>,
    pub max_memory_mib: Option<u64>,
    /// Why the last change to the running VM failed; null when none did.
    pub hot_error: Option<String>,
    /// What the change just made decided beside what was asked (empty for reads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The template it was made from; null when none.
    #[serde(default)]
    pub template: Option<String>,
    /// Its disks are overlays on the template's bases.
    #[serde(default)]
    pub thin: bool,
    /// The service offering its size came from; null when none.
    #[serde(default)]
    pub offering: Option<String>,
    /// Every change to its disks is discarded at each stop.
    #[serde(default)]
    pub stateless: bool,
    /// Its boot order; empty: its bootable disk.
    #[serde(default)]
    pub boot: Vec<String>,
    /// It has a cloud-init seed.
    #[serde(default)]
    pub cloud_init: bool,
    /// The library name of the ISO in its CD-ROM drive; null when none is.
    #[serde(default)]
    pub iso: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaView {
    pub enabled: bool,
    pub priority: String,
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
    pub os: Option<String>,
    pub max_vcpus: Option<u32>,
    pub max_memory_mib: Option<u64>,
    /// The ISO its CD-ROM gets; with `cdrom_ejected`, none.
    pub cdrom: Option<String>,
    pub cdrom_ejected: bool,
}

/// A disk as part of a VM: the VM it belongs to goes without saying.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmDiskView {
    pub id: String,
    pub name: String,
    pub size_mib: u64,
    pub path: String,
    pub format: String,
    /// "virtio" or "scsi".
    pub interface: String,
    pub plugged: bool,
    pub optional: bool,
    pub bootable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NicView {
    /// nic1, nic2, ...
    pub name: String,
    pub network: String,
    pub mac: String,
    pub plugged: bool,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedVmView {
    pub id: String,
    pub deleted: bool,
    /// The VM's disks were kept as floating disks.
    pub disks_kept: bool,
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
                os: n.os,
                max_vcpus: n.max_vcpus,
                max_memory_mib: n.max_memory_mib,
                cdrom: n.cdrom,
                cdrom_ejected: n.cdrom_ejected,
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
            pending_next_run: vm.pending_next_run,
            max_vcpus: vm.max_vcpus,
            max_memory_mib: vm.max_memory_mib,
            hot_error: vm.hot_error,
            notes: vm.notes,
            template: non_empty(Some(vm.template)),
            thin: vm.thin,
            offering: non_empty(Some(vm.offering)),
            stateless: vm.stateless,
            boot: vm.boot,
            cloud_init: vm.cloud_init,
            iso: non_empty(Some(vm.iso)),
        }
    }
}

impl From<proto::Disk> for VmDiskView {
    fn from(d: proto::Disk) -> Self {
        let a = d.attachment.unwrap_or(proto::DiskAttachment { plugged: true, ..Default::default() });
        VmDiskView {
            id: d.id,
            name: d.name,
            size_mib: d.size_mib,
            path: d.path,
            format: d.format,
            interface: non_empty(Some(word::<proto::DiskInterface>(a.interface_enum, a.interface)))
                .unwrap_or_else(|| "virtio".into()),
            plugged: a.plugged,
            optional: a.optional,
            bootable: a.bootable,
        }
    }
}

impl From<proto::Nic> for NicView {
    fn from(n: proto::Nic) -> Self {
        NicView { name: n.name, network: n.network, mac: n.mac, plugged: n.plugged }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::fixtures::engine_vm;

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
                attachment: None,
            }],
            nics: vec![proto::Nic {
                network: "default".into(),
                mac: "52:54:00:aa:bb:cc".into(),
                name: "nic1".into(),
                plugged: true,
            }],
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
                "format": "qcow2",
                "interface": "virtio",
                "plugged": true,
                "optional": false,
                "bootable": false
            }])
        );
        assert_eq!(
            json["nics"],
            serde_json::json!([{"name": "nic1", "network": "default", "mac": "52:54:00:aa:bb:cc", "plugged": true}])
        );
        assert_eq!(json["stop_reason"], "kernel update");
        assert_eq!(json["domain_type"], "qemu");
        assert_eq!(json["migrating_to"], "host2");
    }
}

/// `vm console --vnc`: where the VM's display is and the password that opens it until `expires`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VncTicketView {
    pub vm: String,
    pub host: String,
    /// vnc://ADDRESS:PORT
    pub url: String,
    pub address: String,
    pub port: u32,
    pub password: String,
    /// RFC 3339, UTC.
    pub expires: String,
}

impl From<proto::VncTicket> for VncTicketView {
    fn from(t: proto::VncTicket) -> Self {
        VncTicketView {
            vm: t.vm,
            host: t.host,
            url: t.url,
            address: t.address,
            port: t.port,
            password: t.password,
            expires: super::rfc3339(t.expires_unix_ms),
        }
    }
}
