//! VmService: VM configurations and their lifecycle. Input is validated here (and again by
//! apply); names and ids are both accepted wherever a VM is named. Disk images are made or
//! copied before the command that records them and removed again if it is refused, so a
//! refused request leaves neither records nor files behind.

use std::sync::Arc;

use corral_proto::*;
use corral_raft::command::{MigrationOverridesChange, Op, Outcome, StartOrder, VmChanges, VmSpec};
use corral_raft::model::{self, ClusterState, DomainType, HaPriority, KernelBoot};
use corral_raft::{validate, vocab, ClusterError};
use rand::Rng;
use uuid::Uuid;

use super::authz::Obj;
use super::{Caller, Handles};
use crate::now_ms;
use corral_raft::model::auth::{Operation, Perm, Target};

pub struct Api(pub Arc<Handles>);

const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 120;
pub fn to_proto(node: &Handles, s: &ClusterState, vm: &model::Vm) -> Vm {
    let disks = vm
        .config
        .disks
        .iter()
        .filter_map(|id| s.disks.get(id))
        .map(|d| disk_to_proto(node, d, Some(vm.config.name.clone())))
        .collect();
    Vm {
        id: vm.id.to_string(),
        name: vm.config.name.clone(),
        description: vm.config.description.clone(),
        comment: vm.config.comment.clone(),
        memory_mib: vm.config.memory_mib,
        vcpus: vm.config.vcpus,
        ha: Some(HaSettings {
            enabled: vm.config.ha.enabled,
            priority: vm.config.ha.priority.as_str().into(),
            priority_enum: vm.config.ha.priority.wire(),
        }),
        status: vm.runtime.status.as_str().into(),
        status_enum: vm.runtime.status.wire(),
        host: vm.runtime.host.map(|h| s.host_name(h)),
        created_unix_ms: vm.config.created_ms,
        updated_unix_ms: vm.config.updated_ms,
        disks,
        nics: vm.config.nics.iter().map(|n| Nic { network: n.network.clone(), mac: n.mac.clone() }).collect(),
        stop_reason: vm.runtime.stop_reason.clone(),
        domain_type: vm.config.domain_type.map(|t| t.as_str().to_string()).unwrap_or_default(),
        domain_type_enum: vm.config.domain_type.map(DomainType::wire).unwrap_or_default(),
        migrating_to: vm.migration_state.migrating_to.map(|h| s.host_name(h)),
        next_run: vm.config.next_run.as_ref().map(|n| NextRun {
            memory_mib: n.memory_mib,
            vcpus: n.vcpus,
            domain_type: n.domain_type.map(|t| t.as_str().to_string()),
            domain_type_enum: n.domain_type.map(DomainType::wire).unwrap_or_default(),
        }),
        resume_behavior: vm.config.resume_behavior.as_str().into(),
        resume_behavior_enum: vm.config.resume_behavior.wire(),
        ha_restart: vm.ha_state.ha_restart.as_ref().map(|r| corral_proto::HaRestart {
            failed_unix_ms: r.failed_ms,
            attempts: r.attempts,
            next_try_unix_ms: r.next_try_ms,
            last_error: r.last_error.clone(),
        }),
        migration: vm.migration_state.migration_job.as_ref().map(|j| corral_proto::MigrationJob {
            queued_unix_ms: j.queued_ms,
            automatic: j.automatic,
            cancel: j.cancel,
            progress: j.progress.as_ref().map(|p| corral_proto::MigrationProgress {
                percent: p.percent as u32,
                memory_total_mib: p.memory_total_mib,
                memory_remaining_mib: p.memory_remaining_mib,
                iteration: p.iteration,
                elapsed_ms: p.elapsed_ms,
            }),
        }),
        migration_settings: Some(corral_proto::MigrationOverrides {
            auto_converge: vm.config.migration_settings.auto_converge,
            compression: vm.config.migration_settings.compression,
            max_downtime_ms: vm.config.migration_settings.max_downtime_ms,
            bandwidth_mibps: vm.config.migration_settings.bandwidth_mibps,
        }),
        host_tags: vm.config.host_tags.clone(),
        pinned_hosts: vm.config.pinned_hosts.iter().map(|h| s.host_name(*h)).collect(),
        migration_policy: vm.config.migration.as_str().into(),
        migration_policy_enum: vm.config.migration.wire(),
        hosted_engine: vm.config.hosted_engine,
        delete_protected: vm.config.delete_protected,
        os: vm.config.os.clone(),
        cdrom: vm.config.cdrom.clone(),
    }
}

/// A VM's migration override edit: "cluster" follows the cluster's setting again.
fn overrides_edit(e: corral_proto::MigrationOverridesEdit) -> Result<MigrationOverridesChange, ClusterError> {
    fn field<T: std::str::FromStr>(
        name: &str,
        v: Option<String>,
        what: &str,
    ) -> Result<Option<Option<T>>, ClusterError> {
        match v.as_deref().map(str::trim) {
            None => Ok(None),
            Some("cluster") => Ok(Some(None)),
            Some(text) => text
                .parse()
                .map(|t| Some(Some(t)))
                .map_err(|_| ClusterError::invalid(name, format!("must be {what} or 'cluster' (got '{text}')"))),
        }
    }
    Ok(MigrationOverridesChange {
        auto_converge: field("auto_converge", e.auto_converge, "true or false")?,
        compression: field("compression", e.compression, "true or false")?,
        max_downtime_ms: field("max_downtime", e.max_downtime_ms, "a number of milliseconds")?,
        bandwidth_mibps: field("bandwidth", e.bandwidth_mibps, "a number of MiB/s")?,
    })
}

pub fn disk_to_proto(node: &Handles, d: &model::Disk, vm: Option<String>) -> Disk {
    Disk {
        id: d.id.to_string(),
        name: d.name.clone(),
        size_mib: d.size_mib,
        path: node.images.path(&d.file).display().to_string(),
        format: d.format.clone(),
        vm: vm.unwrap_or_default(),
    }
}

/// A closed-set field of a request: its enum, or an older client's string (`vocab::read`).
fn read<M: vocab::Vocab>(field: &'static str, value: i32, text: &str) -> Result<Option<M>, ClusterError> {
    vocab::read(field, value, text)
}

/// Whether the write tagged `rid` was applied already (a client resending it after a lost answer).
fn replayed(s: &ClusterState, rid: Option<Uuid>) -> bool {
    rid.is_some_and(|r| s.recent_requests.contains_key(&r))
}

fn opt(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

/// A locally administered MAC in QEMU's range, as libvirt would pick.
pub(crate) fn random_mac() -> String {
    let b: [u8; 3] = rand::thread_rng().gen();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

fn new_disk(vm_name: &str, index: usize, size_mib: u64) -> model::Disk {
    let id = Uuid::new_v4();
    model::Disk {
        id,
        name: format!("{vm_name}-disk{index}"),
        size_mib,
        file: format!("{id}.qcow2"),
        format: "qcow2".into(),
        vm: None,
        created_ms: now_ms(),
    }
}

impl Api {
    /// The VM that a command produced, as the leader applied it; host names come from this
    /// node's copy of the state (names of hosts rarely change).
    fn written_vm(&self, outcome: Outcome) -> Result<Vm, ClusterError> {
        let Outcome::Vm(vm) = outcome else { return Err(ClusterError::Internal("the write returned no VM".into())) };
        let state = self.0.cluster.state()?;
        Ok(state.read(|s| to_proto(&self.0, s, &vm)))
    }

    async fn order(&self, rid: Option<Uuid>, op: Op) -> Result<Vm, ClusterError> {
        let outcome = self.0.cluster.write(rid, op).await?;
        self.written_vm(outcome)
    }

    /// `op` on `vm`, made for the caller if they may do `what` to it.
    async fn order_on(&self, cx: &Caller, what: Operation, vm: &str, op: Op) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let op = self.0.permit(cx, &[(what, Obj::Vm(vm))], op).await?;
        self.order(rid, op).await
    }

    /// Runs `op`, which records `made` image files; removes them if the command is refused.
    async fn write_with_images(&self, rid: Option<Uuid>, op: Op, made: &[String]) -> Result<Vm, ClusterError> {
        match self.0.cluster.write(rid, op).await {
            Ok(outcome) => Ok(self.written_vm(outcome)?),
            Err(e) => {
                // Unavailable may mean "applied, answer lost": then the files are in use.
                if !matches!(e, ClusterError::Unavailable(_)) {
                    self.0.images.remove(made).await;
                }
                Err(e)
            }
        }
    }

    pub async fn create(&self, cx: &Caller, req: CreateVmRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let boot = match (opt(r.kernel), opt(r.initrd), r.cmdline) {
            (Some(kernel), initrd, cmdline) => Some(KernelBoot {
                kernel: self.0.images.boot_file("kernel", &kernel)?.display().to_string(),
                initrd: initrd
                    .map(|i| self.0.images.boot_file("initrd", &i))
                    .transpose()?
                    .map(|i| i.display().to_string()),
                cmdline,
            }),
            (None, Some(_), _) => return Err(ClusterError::invalid("initrd", "needs --kernel as well")),
            (None, None, c) if !c.is_empty() => return Err(ClusterError::invalid("cmdline", "needs --kernel as well")),
            (None, None, _) => None,
        };
        let spec = VmSpec {
            name: r.name,
            description: r.description,
            comment: r.comment,
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            ha_enabled: r.ha,
            ha_priority: read("ha_priority", r.ha_priority_enum, &r.ha_priority)?.unwrap_or(HaPriority::Medium),
            nics: r.nics.iter().map(|n| model::Nic { network: n.clone(), mac: random_mac() }).collect(),
            domain_type: read("domain_type", r.domain_type_enum, &r.domain_type)?,
            boot,
            resume_behavior: read("resume_behavior", r.resume_behavior_enum, &r.resume_behavior)?.unwrap_or_default(),
        };
        validate::vm_spec(&spec)?;
        validate::vm_limits(&spec)?;
        validate::disk_count(r.disks_mib.len())?;
        if let Some(i) = r.disks_mib.iter().position(|s| *s == 0) {
            return Err(ClusterError::invalid("disk", format!("disk {} must be at least 1 MiB", i + 1)));
        }
        let mut needs = vec![(Operation::VmCreate, Obj::Cluster)];
        if !r.disks_mib.is_empty() {
            needs.push((Operation::DiskCreate, Obj::Cluster));
        }
        // Before any image is made.
        self.0.check(cx, &needs).await?;
        // Refuse a duplicate name before making any image. A linearizable read: a stale copy
        // would refuse a name whose VM was deleted and acknowledged (corral-faults, seed 1).
        let (exists, replay) =
            self.0.cluster.read(false, |s| (s.vm_names.contains_key(&spec.name), replayed(s, rid))).await?;
        if replay {
            // A resent request that was applied already (its answer was lost, say in a leader
            // change): the state machine answers as it did the first time; no new images.
            let start = r.start.then(|| StartOrder { host: opt(r.host.clone()) });
            let op = Op::CreateVm { id: Uuid::new_v4(), spec, disks: Vec::new(), start };
            return self.order(rid, self.0.permit(cx, &needs, op).await?).await;
        }
        if exists {
            return Err(ClusterError::AlreadyExists(format!("vm '{}' already exists", spec.name)));
        }
        let disks: Vec<model::Disk> =
            r.disks_mib.iter().enumerate().map(|(i, size)| new_disk(&spec.name, i, *size)).collect();
        let mut made = Vec::new();
        for d in &disks {
            if let Err(e) = self.0.images.create(&d.file, d.size_mib).await {
                self.0.images.remove(&made).await;
                return Err(e);
            }
            made.push(d.file.clone());
        }
        let start = r.start.then(|| StartOrder { host: opt(r.host) });
        let op = Op::CreateVm { id: Uuid::new_v4(), spec, disks, start };
        let op = match self.0.permit(cx, &needs, op).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&made).await;
                return Err(e);
            }
        };
        self.write_with_images(rid, op, &made).await
    }

    /// The VMs the caller may see (vm.view on them, the cluster or the system).
    pub async fn list(&self, cx: &Caller, req: ListVmsRequest) -> Result<ListVmsResponse, ClusterError> {
        let stale = req.stale;
        let node = self.0.clone();
        let who = self.0.who(cx).await?;
        let vms = self
            .0
            .cluster
            .read(stale, |s| {
                let g = who.grants(s)?;
                let all = g.can(Perm::VmView, Target::Cluster);
                Ok::<_, ClusterError>(
                    s.vm_names
                        .values()
                        .filter(|id| all || g.can(Perm::VmView, Target::Vm(**id)))
                        .filter_map(|id| s.vms.get(id))
                        .map(|vm| to_proto(&node, s, vm))
                        .collect(),
                )
            })
            .await??;
        Ok(ListVmsResponse { vms })
    }

    /// A VM the caller may not see does not exist for them.
    pub async fn get(&self, cx: &Caller, req: GetVmRequest) -> Result<Vm, ClusterError> {
        let GetVmRequest { vm, stale } = req;
        let node = self.0.clone();
        let who = self.0.who(cx).await?;
        self.0
            .cluster
            .read(stale, |s| {
                let g = who.grants(s)?;
                Ok::<_, ClusterError>(
                    s.find_vm(&vm).filter(|v| g.can(Perm::VmView, Target::Vm(v.id))).map(|v| to_proto(&node, s, v)),
                )
            })
            .await??
            .ok_or_else(|| ClusterError::vm_not_found(&vm))
    }

    pub async fn edit(&self, cx: &Caller, req: EditVmRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let changes = VmChanges {
            name: r.name,
            description: r.description,
            comment: r.comment,
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            ha_enabled: r.ha,
            ha_priority: vocab::read_change("ha_priority", r.ha_priority_enum, r.ha_priority.as_deref())?,
            domain_type: read("domain_type", r.domain_type_enum, r.domain_type.as_deref().unwrap_or_default())?,
            resume_behavior: vocab::read_change(
                "resume_behavior",
                r.resume_behavior_enum,
                r.resume_behavior.as_deref(),
            )?,
            migration_settings: r.migration.map(overrides_edit).transpose()?,
            host_tags: r.host_tags.map(|l| l.values),
            pinned_hosts: r.pinned_hosts.map(|l| l.values),
            migration: vocab::read_change("migration_policy", r.migration_policy_enum, r.migration_policy.as_deref())?,
            delete_protected: r.delete_protected,
            os: r.os,
        };
        validate::vm_changes(&changes)?;
        // Returns once committed and applied here: every host writes the new OVF document as it
        // applies the entry, so waiting for them would only make an edit wait on a dying host.
        let op =
            self.0.permit(cx, &[(Operation::VmEdit, Obj::Vm(&r.vm))], Op::EditVm { vm: r.vm.clone(), changes }).await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        self.written_vm(outcome)
    }

    pub async fn export(&self, cx: &Caller, req: VmRef) -> Result<OvfDocument, ClusterError> {
        let vm = req.vm;
        self.0.check(cx, &[(Operation::VmShow, Obj::Vm(&vm))]).await?;
        let name = self.0.config.name.clone();
        let doc = self.0.cluster.read(false, |s| super::ovf::export(s, &vm, name)).await??;
        Ok(doc)
    }

    pub async fn import(&self, cx: &Caller, req: ImportVmRequest) -> Result<ImportVmResponse, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let name = r.name.filter(|n| !n.trim().is_empty());
        // An OVF document names disk images of the storage domain, which the import attaches or
        // copies: only for someone who may see every disk.
        let needs = [
            (Operation::VmCreate, Obj::Cluster),
            (Operation::DiskCreate, Obj::Cluster),
            (Operation::VmImport, Obj::Cluster),
        ];
        self.0.check(cx, &needs).await?;
        let replay = self.0.cluster.read(false, |s| replayed(s, rid)).await?;
        if replay {
            // Answered as the first time; a clone's copies were made then, not again.
            let doc = corral_raft::ovf::read(&r.xml).map_err(super::ovf::bad_document)?;
            let op = Op::ImportVm { vm: Box::new(doc.vm), disks: doc.disks, engine: false, start: None };
            let vm = self.order(rid, self.0.permit(cx, &needs, op).await?).await?;
            return Ok(ImportVmResponse { vm: Some(vm), ignored: doc.ignored });
        }
        let prepared = super::ovf::prepare_import(&self.0, &r.xml, name, r.clone, false, None).await?;
        let op = match self.0.permit(cx, &needs, prepared.op).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&prepared.made).await;
                return Err(e);
            }
        };
        let vm = self.write_with_images(rid, op, &prepared.made).await?;
        Ok(ImportVmResponse { vm: Some(vm), ignored: prepared.ignored })
    }

    pub async fn delete(&self, cx: &Caller, req: DeleteVmRequest) -> Result<DeleteVmResponse, ClusterError> {
        let rid = cx.request_id()?;
        let DeleteVmRequest { vm, keep_disks } = req;
        let op = self
            .0
            .permit(cx, &[(Operation::VmDelete, Obj::Vm(&vm))], Op::DeleteVm { vm: vm.clone(), keep_disks })
            .await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        let Outcome::VmDeleted { id, files } = outcome else {
            return Err(ClusterError::Internal("delete returned no VM id".into()));
        };
        // The records are gone; the files follow (a leftover file is harmless, a record
        // pointing at a missing file is not).
        self.0.images.remove(&files).await;
        Ok(DeleteVmResponse { id: id.to_string() })
    }

    pub async fn clone(&self, cx: &Caller, req: CloneVmRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let CloneVmRequest { source, name } = req;
        validate::name("name", &name)?;
        let needs = [
            (Operation::VmShow, Obj::Vm(&source)),
            (Operation::VmCreate, Obj::Cluster),
            (Operation::DiskCreate, Obj::Cluster),
        ];
        self.0.check(cx, &needs).await?;
        let found = self
            .0
            .cluster
            .read(false, |s| {
                let replay = replayed(s, rid);
                s.find_vm(&source).map(|vm| {
                    let disks: Vec<model::Disk> =
                        vm.config.disks.iter().filter_map(|d| s.disks.get(d)).cloned().collect();
                    (vm.runtime.status, vm.config.nics.len(), disks, s.vm_names.contains_key(&name), replay)
                })
            })
            .await?;
        let (vm_status, nics, source_disks, taken, replay) =
            found.ok_or_else(|| ClusterError::vm_not_found(&source))?;
        if replay {
            // Applied already: answered as the first time, no new copies.
            let op =
                Op::CloneVm { source: source.clone(), id: Uuid::new_v4(), name, disks: Vec::new(), macs: Vec::new() };
            return self.order(rid, self.0.permit(cx, &needs, op).await?).await;
        }
        if taken {
            return Err(ClusterError::AlreadyExists(format!("vm '{name}' already exists")));
        }
        if vm_status != model::VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{source}' is {}; only a down VM can be cloned",
                vm_status.as_str()
            )));
        }
        let mut disks = Vec::new();
        let mut made = Vec::new();
        for (i, src) in source_disks.iter().enumerate() {
            let copy = new_disk(&name, i, src.size_mib);
            if let Err(e) = self.0.images.copy(&src.file, &copy.file).await {
                self.0.images.remove(&made).await;
                return Err(e);
            }
            made.push(copy.file.clone());
            disks.push(copy);
        }
        let macs = (0..nics).map(|_| random_mac()).collect();
        let op = Op::CloneVm { source: source.clone(), id: Uuid::new_v4(), name, disks, macs };
        let op = match self.0.permit(cx, &needs, op).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&made).await;
                return Err(e);
            }
        };
        self.write_with_images(rid, op, &made).await
    }

    pub async fn start(&self, cx: &Caller, req: StartVmRequest) -> Result<Vm, ClusterError> {
        let StartVmRequest { vm, host } = req;
        self.order_on(cx, Operation::VmStart, &vm.clone(), Op::StartVm { vm, order: StartOrder { host: opt(host) } })
            .await
    }

    pub async fn shutdown(&self, cx: &Caller, req: ShutdownVmRequest) -> Result<Vm, ClusterError> {
        let ShutdownVmRequest { vm, reason, timeout_seconds } = req;
        validate::text("reason", &reason)?;
        let timeout_s = if timeout_seconds == 0 { DEFAULT_SHUTDOWN_TIMEOUT_S } else { timeout_seconds };
        self.order_on(cx, Operation::VmShutdown, &vm.clone(), Op::ShutdownVm { vm, reason: opt(reason), timeout_s })
            .await
    }

    pub async fn stop(&self, cx: &Caller, req: StopVmRequest) -> Result<Vm, ClusterError> {
        let StopVmRequest { vm, reason } = req;
        validate::text("reason", &reason)?;
        self.order_on(cx, Operation::VmStop, &vm.clone(), Op::StopVm { vm, reason: opt(reason) }).await
    }

    pub async fn reboot(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmReboot, &req.vm, Op::RebootVm { vm: req.vm.clone() }).await
    }

    pub async fn suspend(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmSuspend, &req.vm, Op::SuspendVm { vm: req.vm.clone() }).await
    }

    pub async fn resume(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmSuspend, &req.vm, Op::ResumeVm { vm: req.vm.clone() }).await
    }

    pub async fn migrate(&self, cx: &Caller, req: MigrateVmRequest) -> Result<Vm, ClusterError> {
        let MigrateVmRequest { vm, to } = req;
        self.order_on(cx, Operation::VmMigrate, &vm.clone(), Op::MigrateVm { vm, to: opt(to) }).await
    }

    pub async fn cancel_migration(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmMigrate, &req.vm, Op::CancelMigration { vm: req.vm.clone() }).await
    }
}
