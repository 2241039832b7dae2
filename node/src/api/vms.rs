//! VmService: VM configurations and their lifecycle. Input is validated here (and again by
//! apply); names and ids are both accepted wherever a VM is named. Disk images are made or
//! copied before the command that records them and removed again if it is refused, so a
//! refused request leaves neither records nor files behind.

use std::sync::Arc;

use corral_proto::vm_service_server::VmService;
use corral_proto::*;
use corral_raft::command::{MigrationOverridesChange, Op, Outcome, StartOrder, VmChanges, VmSpec};
use corral_raft::model::{self, ClusterState, DomainType, HaPriority, KernelBoot};
use corral_raft::{validate, ClusterError};
use rand::Rng;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{request_id, status};
use crate::node::{now_ms, Node};

pub struct Api(pub Arc<Node>);

const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 120;
const MAX_DISKS: usize = 16;
pub fn to_proto(node: &Node, s: &ClusterState, vm: &model::Vm) -> Vm {
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
        ha: Some(HaSettings { enabled: vm.config.ha.enabled, priority: vm.config.ha.priority.as_str().into() }),
        status: vm.runtime.status.as_str().into(),
        host: vm.runtime.host.map(|h| s.host_name(h)),
        created_unix_ms: vm.config.created_ms,
        updated_unix_ms: vm.config.updated_ms,
        disks,
        nics: vm.config.nics.iter().map(|n| Nic { network: n.network.clone(), mac: n.mac.clone() }).collect(),
        stop_reason: vm.runtime.stop_reason.clone(),
        domain_type: vm.config.domain_type.map(|t| t.as_str().to_string()).unwrap_or_default(),
        migrating_to: vm.migration_state.migrating_to.map(|h| s.host_name(h)),
        next_run: vm.config.next_run.as_ref().map(|n| NextRun {
            memory_mib: n.memory_mib,
            vcpus: n.vcpus,
            domain_type: n.domain_type.map(|t| t.as_str().to_string()),
        }),
        resume_behavior: vm.config.resume_behavior.as_str().into(),
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
        hosted_engine: vm.config.hosted_engine,
        delete_protected: vm.config.delete_protected,
        os: vm.config.os.clone(),
        cdrom: vm.config.cdrom.clone(),
    }
}

/// A VM's migration override edit: "cluster" follows the cluster's setting again.
fn overrides_edit(e: corral_proto::MigrationOverridesEdit) -> Result<MigrationOverridesChange, Status> {
    fn field<T: std::str::FromStr>(name: &str, v: Option<String>, what: &str) -> Result<Option<Option<T>>, Status> {
        match v.as_deref().map(str::trim) {
            None => Ok(None),
            Some("cluster") => Ok(Some(None)),
            Some(text) => text.parse().map(|t| Some(Some(t))).map_err(|_| {
                status(ClusterError::invalid(name, format!("must be {what} or 'cluster' (got '{text}')")))
            }),
        }
    }
    Ok(MigrationOverridesChange {
        auto_converge: field("auto_converge", e.auto_converge, "true or false")?,
        compression: field("compression", e.compression, "true or false")?,
        max_downtime_ms: field("max_downtime", e.max_downtime_ms, "a number of milliseconds")?,
        bandwidth_mibps: field("bandwidth", e.bandwidth_mibps, "a number of MiB/s")?,
    })
}

pub fn disk_to_proto(node: &Node, d: &model::Disk, vm: Option<String>) -> Disk {
    Disk {
        id: d.id.to_string(),
        name: d.name.clone(),
        size_mib: d.size_mib,
        path: node.images.path(&d.file).display().to_string(),
        format: d.format.clone(),
        vm: vm.unwrap_or_default(),
    }
}

fn priority(value: &str) -> Result<HaPriority, Status> {
    value.parse().map_err(status)
}

fn domain_type(value: &str) -> Result<Option<DomainType>, Status> {
    match value {
        "" => Ok(None),
        v => v.parse().map(Some).map_err(status),
    }
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
    fn written_vm(&self, outcome: Outcome) -> Result<Vm, Status> {
        let Outcome::Vm(vm) = outcome else { return Err(Status::internal("the write returned no VM")) };
        let state = self.0.state().map_err(status)?;
        Ok(state.read(|s| to_proto(&self.0, s, &vm)))
    }

    async fn order(&self, rid: Option<Uuid>, op: Op) -> Result<Response<Vm>, Status> {
        let outcome = self.0.write(rid, op).await.map_err(status)?;
        Ok(Response::new(self.written_vm(outcome)?))
    }

    /// Runs `op`, which records `made` image files; removes them if the command is refused.
    async fn write_with_images(&self, rid: Option<Uuid>, op: Op, made: &[String]) -> Result<Response<Vm>, Status> {
        match self.0.write(rid, op).await {
            Ok(outcome) => Ok(Response::new(self.written_vm(outcome)?)),
            Err(e) => {
                // Unavailable may mean "applied, answer lost": then the files are in use.
                if !matches!(e, ClusterError::Unavailable(_)) {
                    self.0.images.remove(made).await;
                }
                Err(status(e))
            }
        }
    }
}

#[tonic::async_trait]
impl VmService for Api {
    async fn create(&self, req: Request<CreateVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        let boot = match (opt(r.kernel), opt(r.initrd), r.cmdline) {
            (Some(kernel), initrd, cmdline) => Some(KernelBoot {
                kernel: self.0.images.resolve(&kernel).display().to_string(),
                initrd: initrd.map(|i| self.0.images.resolve(&i).display().to_string()),
                cmdline,
            }),
            (None, Some(_), _) => return Err(status(ClusterError::invalid("initrd", "needs --kernel as well"))),
            (None, None, c) if !c.is_empty() => {
                return Err(status(ClusterError::invalid("cmdline", "needs --kernel as well")))
            }
            (None, None, _) => None,
        };
        let spec = VmSpec {
            name: r.name,
            description: r.description,
            comment: r.comment,
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            ha_enabled: r.ha,
            ha_priority: if r.ha_priority.is_empty() { HaPriority::Medium } else { priority(&r.ha_priority)? },
            nics: r.nics.iter().map(|n| model::Nic { network: n.clone(), mac: random_mac() }).collect(),
            domain_type: domain_type(&r.domain_type)?,
            boot,
            resume_behavior: match r.resume_behavior.as_str() {
                "" => Default::default(),
                v => v.parse().map_err(status)?,
            },
        };
        validate::vm_spec(&spec).map_err(status)?;
        for n in &r.nics {
            validate::name("nic", n).map_err(status)?;
        }
        if r.disks_mib.len() > MAX_DISKS {
            return Err(status(ClusterError::invalid("disk", format!("at most {MAX_DISKS} disks per VM"))));
        }
        if let Some(i) = r.disks_mib.iter().position(|s| *s == 0) {
            return Err(status(ClusterError::invalid("disk", format!("disk {} must be at least 1 MiB", i + 1))));
        }
        // Refuse a duplicate name before making any image.
        let (exists, replay) =
            self.0.read(true, |s| (s.vm_names.contains_key(&spec.name), replayed(s, rid))).await.map_err(status)?;
        if replay {
            // A resent request that was applied already (its answer was lost, say in a leader
            // change): the state machine answers as it did the first time; no new images.
            let start = r.start.then(|| StartOrder { host: opt(r.host.clone()) });
            return self.order(rid, Op::CreateVm { id: Uuid::new_v4(), spec, disks: Vec::new(), start }).await;
        }
        if exists {
            return Err(status(ClusterError::AlreadyExists(format!("vm '{}' already exists", spec.name))));
        }
        let disks: Vec<model::Disk> =
            r.disks_mib.iter().enumerate().map(|(i, size)| new_disk(&spec.name, i, *size)).collect();
        let mut made = Vec::new();
        for d in &disks {
            if let Err(e) = self.0.images.create(&d.file, d.size_mib).await {
                self.0.images.remove(&made).await;
                return Err(status(e));
            }
            made.push(d.file.clone());
        }
        let start = r.start.then(|| StartOrder { host: opt(r.host) });
        let op = Op::CreateVm { id: Uuid::new_v4(), spec, disks, start };
        self.write_with_images(rid, op, &made).await
    }

    async fn list(&self, req: Request<ListVmsRequest>) -> Result<Response<ListVmsResponse>, Status> {
        let stale = req.into_inner().stale;
        let node = self.0.clone();
        let vms = self
            .0
            .read(stale, |s| {
                s.vm_names.values().filter_map(|id| s.vms.get(id)).map(|vm| to_proto(&node, s, vm)).collect()
            })
            .await
            .map_err(status)?;
        Ok(Response::new(ListVmsResponse { vms }))
    }

    async fn get(&self, req: Request<GetVmRequest>) -> Result<Response<Vm>, Status> {
        let GetVmRequest { vm, stale } = req.into_inner();
        let node = self.0.clone();
        self.0
            .read(stale, |s| s.find_vm(&vm).map(|v| to_proto(&node, s, v)))
            .await
            .map_err(status)?
            .map(Response::new)
            .ok_or_else(|| status(ClusterError::vm_not_found(&vm)))
    }

    async fn edit(&self, req: Request<EditVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        let changes = VmChanges {
            name: r.name,
            description: r.description,
            comment: r.comment,
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            ha_enabled: r.ha,
            ha_priority: r.ha_priority.as_deref().map(priority).transpose()?,
            domain_type: match r.domain_type.as_deref() {
                Some(t) => domain_type(t)?,
                None => None,
            },
            resume_behavior: r.resume_behavior.as_deref().map(str::parse).transpose().map_err(status)?,
            migration_settings: r.migration.map(overrides_edit).transpose()?,
            host_tags: r.host_tags.map(|l| l.values),
            pinned_hosts: r.pinned_hosts.map(|l| l.values),
            migration: r.migration_policy.as_deref().map(str::parse).transpose().map_err(status)?,
            delete_protected: r.delete_protected,
            os: r.os,
        };
        validate::vm_changes(&changes).map_err(status)?;
        // Returns once committed and applied here: every host writes the new OVF document as it
        // applies the entry, so waiting for them would only make an edit wait on a dying host.
        let outcome = self.0.write(rid, Op::EditVm { vm: r.vm, changes }).await.map_err(status)?;
        Ok(Response::new(self.written_vm(outcome)?))
    }

    async fn export(&self, req: Request<VmRef>) -> Result<Response<OvfDocument>, Status> {
        let vm = req.into_inner().vm;
        let name = self.0.config.name.clone();
        let doc = self.0.read(false, |s| super::ovf::export(s, &vm, name)).await.map_err(status)?.map_err(status)?;
        Ok(Response::new(doc))
    }

    async fn import(&self, req: Request<ImportVmRequest>) -> Result<Response<ImportVmResponse>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        let name = r.name.filter(|n| !n.trim().is_empty());
        let replay = self.0.read(false, |s| replayed(s, rid)).await.map_err(status)?;
        if replay {
            // Answered as the first time; a clone's copies were made then, not again.
            let doc = corral_raft::ovf::read(&r.xml).map_err(|e| status(super::ovf::bad_document(e)))?;
            let op = Op::ImportVm { vm: Box::new(doc.vm), disks: doc.disks, engine: false, start: None };
            let vm = self.order(rid, op).await?.into_inner();
            return Ok(Response::new(ImportVmResponse { vm: Some(vm), ignored: doc.ignored }));
        }
        let prepared = super::ovf::prepare_import(&self.0, &r.xml, name, r.clone, false, None).await.map_err(status)?;
        let vm = self.write_with_images(rid, prepared.op, &prepared.made).await?.into_inner();
        Ok(Response::new(ImportVmResponse { vm: Some(vm), ignored: prepared.ignored }))
    }

    async fn delete(&self, req: Request<DeleteVmRequest>) -> Result<Response<DeleteVmResponse>, Status> {
        let rid = request_id(&req)?;
        let DeleteVmRequest { vm, keep_disks } = req.into_inner();
        let outcome = self.0.write(rid, Op::DeleteVm { vm, keep_disks }).await.map_err(status)?;
        let Outcome::VmDeleted { id, files } = outcome else {
            return Err(Status::internal("delete returned no VM id"));
        };
        // The records are gone; the files follow (a leftover file is harmless, a record
        // pointing at a missing file is not).
        self.0.images.remove(&files).await;
        Ok(Response::new(DeleteVmResponse { id: id.to_string() }))
    }

    async fn clone(&self, req: Request<CloneVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let CloneVmRequest { source, name } = req.into_inner();
        validate::name("name", &name).map_err(status)?;
        let found = self
            .0
            .read(false, |s| {
                let replay = replayed(s, rid);
                s.find_vm(&source).map(|vm| {
                    let disks: Vec<model::Disk> =
                        vm.config.disks.iter().filter_map(|d| s.disks.get(d)).cloned().collect();
                    (vm.runtime.status, vm.config.nics.len(), disks, s.vm_names.contains_key(&name), replay)
                })
            })
            .await
            .map_err(status)?;
        let (vm_status, nics, source_disks, taken, replay) =
            found.ok_or_else(|| status(ClusterError::vm_not_found(&source)))?;
        if replay {
            // Applied already: answered as the first time, no new copies.
            let op = Op::CloneVm { source, id: Uuid::new_v4(), name, disks: Vec::new(), macs: Vec::new() };
            return self.order(rid, op).await;
        }
        if taken {
            return Err(status(ClusterError::AlreadyExists(format!("vm '{name}' already exists"))));
        }
        if vm_status != model::VmStatus::Down {
            return Err(status(ClusterError::FailedPrecondition(format!(
                "vm '{source}' is {}; only a down VM can be cloned",
                vm_status.as_str()
            ))));
        }
        let mut disks = Vec::new();
        let mut made = Vec::new();
        for (i, src) in source_disks.iter().enumerate() {
            let copy = new_disk(&name, i, src.size_mib);
            if let Err(e) = self.0.images.copy(&src.file, &copy.file).await {
                self.0.images.remove(&made).await;
                return Err(status(e));
            }
            made.push(copy.file.clone());
            disks.push(copy);
        }
        let macs = (0..nics).map(|_| random_mac()).collect();
        let op = Op::CloneVm { source, id: Uuid::new_v4(), name, disks, macs };
        self.write_with_images(rid, op, &made).await
    }

    async fn start(&self, req: Request<StartVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let StartVmRequest { vm, host } = req.into_inner();
        self.order(rid, Op::StartVm { vm, order: StartOrder { host: opt(host) } }).await
    }

    async fn shutdown(&self, req: Request<ShutdownVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let ShutdownVmRequest { vm, reason, timeout_seconds } = req.into_inner();
        validate::text("reason", &reason).map_err(status)?;
        let timeout_s = if timeout_seconds == 0 { DEFAULT_SHUTDOWN_TIMEOUT_S } else { timeout_seconds };
        self.order(rid, Op::ShutdownVm { vm, reason: opt(reason), timeout_s }).await
    }

    async fn stop(&self, req: Request<StopVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let StopVmRequest { vm, reason } = req.into_inner();
        validate::text("reason", &reason).map_err(status)?;
        self.order(rid, Op::StopVm { vm, reason: opt(reason) }).await
    }

    async fn reboot(&self, req: Request<VmRef>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        self.order(rid, Op::RebootVm { vm: req.into_inner().vm }).await
    }

    async fn suspend(&self, req: Request<VmRef>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        self.order(rid, Op::SuspendVm { vm: req.into_inner().vm }).await
    }

    async fn resume(&self, req: Request<VmRef>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        self.order(rid, Op::ResumeVm { vm: req.into_inner().vm }).await
    }

    async fn migrate(&self, req: Request<MigrateVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let MigrateVmRequest { vm, to } = req.into_inner();
        self.order(rid, Op::MigrateVm { vm, to: opt(to) }).await
    }

    async fn cancel_migration(&self, req: Request<VmRef>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        self.order(rid, Op::CancelMigration { vm: req.into_inner().vm }).await
    }
}
