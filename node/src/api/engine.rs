//! EngineService: the hosted engine's status and maintenance, `engine start --local`; and the
//! engine VM that a bootstrap makes (from a disk image or an OVF document).

use std::path::PathBuf;
use std::sync::Arc;

use corral_proto::EngineMaintenanceMode as Mode;
use corral_proto::*;
use corral_raft::command::{Op, StartOrder};
use corral_raft::model::{self, ClusterState, KernelBoot};
use corral_raft::{validate, vocab, ClusterError};
use uuid::Uuid;

use super::authz::Obj;
use super::hosts::engine_score_to_proto;
use super::{Caller, Handles};
use crate::now_ms;
use corral_raft::model::auth::Operation;

pub struct Api(pub Arc<Handles>);

const DEFAULT_ENGINE_NAME: &str = "hosted-engine";
const DEFAULT_ENGINE_MEMORY_MIB: u64 = 4096;
const DEFAULT_ENGINE_VCPUS: u32 = 2;

/// The engine a bootstrap was asked for, checked, with its image already in the storage domain.
pub struct EngineRequest {
    op: Op,
    made: Vec<String>,
}

impl EngineRequest {
    /// Checks the engine options of a bootstrap (none: no engine) and copies the image in.
    pub async fn check(node: &Handles, r: &BootstrapRequest) -> Result<Option<EngineRequest>, ClusterError> {
        let here = StartOrder { host: Some(node.config.name.clone()) };
        match (&r.engine_image, &r.engine_ovf) {
            (None, None) => {
                if r.engine_memory_mib.is_some()
                    || r.engine_vcpus.is_some()
                    || r.engine_name.is_some()
                    || r.engine_kernel.is_some()
                {
                    return Err(ClusterError::invalid("engine", "engine settings need --engine-image or --engine-ovf"));
                }
                Ok(None)
            }
            (Some(_), Some(_)) => {
                Err(ClusterError::invalid("engine", "give either --engine-image or --engine-ovf, not both"))
            }
            (None, Some(_)) if !r.engine_nics.is_empty() => {
                Err(ClusterError::invalid("engine_nics", "an engine from an OVF document has the document's NICs"))
            }
            (None, Some(xml)) => Self::from_ovf(node, r, xml, here).await.map(Some),
            (Some(image), None) => Self::from_image(node, r, image, here).await.map(Some),
        }
    }

    /// An engine from an exported OVF document (its own disks and NICs), resized as asked.
    async fn from_ovf(
        node: &Handles,
        r: &BootstrapRequest,
        xml: &str,
        here: StartOrder,
    ) -> Result<EngineRequest, ClusterError> {
        let name = r.engine_name.clone();
        let mut p = super::ovf::prepare_import(node, xml, name, false, true, Some(here)).await?;
        if let Op::ImportVm { vm, .. } = &mut p.op {
            if let Some(m) = r.engine_memory_mib {
                validate::memory_mib(m)?;
                vm.config.memory_mib = m;
            }
            if let Some(v) = r.engine_vcpus {
                validate::vcpus(v)?;
                vm.config.vcpus = v;
            }
        }
        let request = EngineRequest { op: p.op, made: p.made };
        request.check_fits(node)?;
        Ok(request)
    }

    /// An engine from a disk image on this host, copied into the storage domain.
    async fn from_image(
        node: &Handles,
        r: &BootstrapRequest,
        image: &str,
        here: StartOrder,
    ) -> Result<EngineRequest, ClusterError> {
        let name = r.engine_name.clone().unwrap_or_else(|| DEFAULT_ENGINE_NAME.to_string());
        validate::name("engine_name", &name)?;
        let memory = r.engine_memory_mib.unwrap_or(DEFAULT_ENGINE_MEMORY_MIB);
        let vcpus = r.engine_vcpus.unwrap_or(DEFAULT_ENGINE_VCPUS);
        validate::memory_mib(memory)?;
        validate::vcpus(vcpus)?;
        let text = r.engine_domain_type.as_deref().unwrap_or_default();
        let domain_type = vocab::read("engine_domain_type", r.engine_domain_type_enum, text)?;
        let path = PathBuf::from(image);
        if !path.is_absolute() {
            return Err(ClusterError::invalid("engine_image", format!("must be an absolute path (got '{image}')")));
        }
        if !path.is_file() {
            return Err(ClusterError::invalid(
                "engine_image",
                format!("{image} is not a file on host {}", node.config.name),
            ));
        }
        validate::names("engine_nics", &r.engine_nics)?;
        let size_mib = node.images.virtual_size_mib(&path).await?;
        let boot = match r.engine_kernel.as_deref().filter(|k| !k.is_empty()) {
            None => None,
            Some(kernel) => Some(KernelBoot {
                kernel: node.images.boot_file("engine_kernel", kernel)?.display().to_string(),
                initrd: match r.engine_initrd.as_deref().filter(|i| !i.is_empty()) {
                    Some(i) => Some(node.images.boot_file("engine_initrd", i)?.display().to_string()),
                    None => None,
                },
                cmdline: r.engine_cmdline.clone().unwrap_or_default(),
            }),
        };
        let (vm_id, disk_id) = (Uuid::new_v4(), Uuid::new_v4());
        let disk = model::Disk {
            id: disk_id,
            name: format!("{name}-disk0"),
            size_mib,
            file: format!("{disk_id}.qcow2"),
            format: "qcow2".into(),
            vm: None,
            created_ms: now_ms(),
            base: None,
        };
        node.images.import(&path, &disk.file).await?;
        let mut vm = model::Vm::new(vm_id, &name, memory, vcpus, now_ms());
        vm.config.disks = vec![disk_id];
        vm.config.domain_type = domain_type;
        vm.config.boot = boot;
        vm.config.description = "The cluster's management VM (hosted engine).".into();
        vm.config.nics =
            r.engine_nics.iter().map(|network| model::Nic::new(network.clone(), super::vms::random_mac())).collect();
        let made = vec![disk.file.clone()];
        let request = EngineRequest {
            op: Op::ImportVm { vm: Box::new(vm), disks: vec![disk], engine: true, start: Some(here) },
            made,
        };
        if let Err(e) = request.check_fits(node) {
            request.discard(node).await;
            return Err(e);
        }
        Ok(request)
    }

    /// Gives the image back when the bootstrap failed.
    pub async fn discard(&self, node: &Handles) {
        node.images.remove(&self.made).await;
    }

    /// Refuses an engine this host cannot run, before the cluster is made.
    fn check_fits(&self, node: &Handles) -> Result<(), ClusterError> {
        let Op::ImportVm { vm, .. } = &self.op else { return Ok(()) };
        let vcpus = node.facts.cpus as u64 * corral_raft::model::DEFAULT_CPU_OVERCOMMIT as u64;
        if vm.config.memory_mib > node.facts.memory_mib || vm.config.vcpus as u64 > vcpus {
            return Err(ClusterError::FailedPrecondition(format!(
                "the engine VM needs {} MiB and {} vCPUs; host {} has {} MiB and {vcpus} vCPUs (give --engine-memory \
                 or --engine-vcpus)",
                vm.config.memory_mib, vm.config.vcpus, node.config.name, node.facts.memory_mib
            )));
        }
        Ok(())
    }

    /// Makes the engine VM in the new cluster and starts it on this host. If it cannot start
    /// there after all, it is made down (with the reason in the event log) rather than not at
    /// all: the cluster exists by then, and a bootstrap cannot be repeated.
    pub async fn create(self, node: &Handles) -> Result<Vm, ClusterError> {
        let outcome = match node.cluster.write(None, self.op.clone()).await {
            Ok(o) => o,
            Err(ClusterError::FailedPrecondition(why)) => {
                let Op::ImportVm { vm, disks, engine, .. } = self.op else { unreachable!("built as an import") };
                tracing::warn!("the engine VM cannot start on this host: {why}; it is made down");
                let op = Op::ImportVm { vm, disks, engine, start: None };
                match node.cluster.write(None, op).await {
                    Ok(o) => {
                        let message =
                            format!("The hosted engine VM could not be started on the bootstrap host: {why}.");
                        let kind = corral_raft::model::EventKind::VmStateChanged;
                        let _ = node.cluster.write(None, Op::RecordEvent { kind, message }).await;
                        o
                    }
                    Err(e) => {
                        node.images.remove(&self.made).await;
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                node.images.remove(&self.made).await;
                return Err(e);
            }
        };
        let corral_raft::command::Outcome::Vm(vm) = outcome else {
            return Err(ClusterError::Internal("the engine import returned no VM".into()));
        };
        let state = node.cluster.state()?;
        Ok(state.read(|s| super::vms::to_proto(node, s, &vm)))
    }
}

fn status_of(s: &ClusterState) -> Result<EngineStatus, ClusterError> {
    let vm = s.engine_vm().ok_or_else(|| {
        ClusterError::NotFound(
            "this cluster has no hosted engine (bootstrap with --engine-image or --engine-ovf makes one)".into(),
        )
    })?;
    let hosts = s
        .hosts
        .values()
        .map(|h| EngineHost {
            host: h.name.clone(),
            state: h.state.as_str().into(),
            state_enum: h.state.wire(),
            score: h.engine_score.as_ref().map(engine_score_to_proto),
            local_maintenance: h.engine_local_maintenance,
            engine_here: vm.runtime.host == Some(h.id),
        })
        .collect();
    Ok(EngineStatus {
        vm: vm.config.name.clone(),
        vm_id: vm.id.to_string(),
        host: vm.runtime.host.map(|h| s.host_name(h)),
        state: vm.runtime.status.as_str().into(),
        state_enum: vm.runtime.status.wire(),
        global_maintenance: s.engine.global_maintenance,
        hosts,
    })
}

impl Api {
    pub async fn status(&self, cx: &Caller, req: EngineStatusRequest) -> Result<EngineStatus, ClusterError> {
        self.0.check(cx, &[(Operation::ClusterStatus, Obj::Cluster)]).await?;
        let stale = req.stale;
        let st = self.0.cluster.read(stale, status_of).await??;
        Ok(st)
    }

    pub async fn maintenance(&self, cx: &Caller, req: EngineMaintenanceRequest) -> Result<EngineStatus, ClusterError> {
        let rid = cx.request_id()?;
        let mode = req.mode_enum().or_word(&req.mode);
        let host = req.host.clone();
        let host = Some(host).filter(|h| !h.trim().is_empty()).unwrap_or_else(|| self.0.config.name.clone());
        let op = match mode {
            Ok(Mode::Global) => Op::SetEngineMaintenance { global: Some(true), local: None },
            Ok(Mode::Local) => Op::SetEngineMaintenance { global: None, local: Some((host, true)) },
            Ok(Mode::None) => Op::SetEngineMaintenance { global: Some(false), local: Some((host, false)) },
            Ok(Mode::Unspecified) | Err(_) => {
                let got = mode.err().unwrap_or_default();
                return Err(ClusterError::invalid("mode", format!("must be {} (got '{got}')", Mode::choices())));
            }
        };
        let op = self.0.permit(cx, &[(Operation::EngineMaintenance, Obj::Cluster)], op).await?;
        self.0.cluster.write(rid, op).await?;
        let st = self.0.cluster.read(true, status_of).await??;
        Ok(st)
    }

    pub async fn start_local(
        &self,
        cx: &Caller,
        req: EngineStartLocalRequest,
    ) -> Result<EngineStartLocalResponse, ClusterError> {
        // Decided on this node's own state: this runs without quorum.
        self.0.check(cx, &[(Operation::EngineMaintenance, Obj::Cluster)]).await?;
        let force = req.force;
        let (vm, notes) = self.0.local.start_here(force).await?;
        Ok(EngineStartLocalResponse { vm, host: self.0.config.name.clone(), notes })
    }

    pub async fn runs_vm(&self, cx: &Caller, req: RunsVmRequest) -> Result<RunsVmResponse, ClusterError> {
        self.0.check(cx, &[(Operation::EngineMaintenance, Obj::Cluster)]).await?;
        let id = Uuid::parse_str(&req.vm_id).map_err(|_| ClusterError::invalid("vm_id", "must be a UUID"))?;
        let running = self.0.local.runs_vm(id).await?;
        let vnc_listen = self.0.config.vnc_listen.map(|a| a.to_string()).unwrap_or_default();
        Ok(RunsVmResponse { running, host: self.0.config.name.clone(), vnc_listen })
    }
}
