//! VmService: create, list, show, edit and delete VM configurations. Input is validated here
//! (and again by apply); names and ids are both accepted wherever a VM is named.

use std::sync::Arc;

use corral_proto::vm_service_server::VmService;
use corral_proto::*;
use corral_raft::command::{Op, Outcome, VmChanges, VmSpec};
use corral_raft::model::{ClusterState, HaPriority};
use corral_raft::{validate, ClusterError};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{request_id, status};
use crate::node::Node;

pub struct Api(pub Arc<Node>);

fn to_proto(s: &ClusterState, vm: &corral_raft::model::Vm) -> Vm {
    let host = vm.host.and_then(|h| s.hosts.get(&h)).map(|h| h.name.clone());
    to_proto_with_host(vm, host)
}

fn to_proto_with_host(vm: &corral_raft::model::Vm, host: Option<String>) -> Vm {
    Vm {
        id: vm.id.to_string(),
        name: vm.name.clone(),
        description: vm.description.clone(),
        comment: vm.comment.clone(),
        memory_mib: vm.memory_mib,
        vcpus: vm.vcpus,
        ha: Some(HaSettings { enabled: vm.ha.enabled, priority: vm.ha.priority.as_str().into() }),
        status: vm.status.as_str().into(),
        host,
        created_unix_ms: vm.created_ms,
        updated_unix_ms: vm.updated_ms,
    }
}

fn priority(value: &str) -> Result<HaPriority, Status> {
    value.parse().map_err(status)
}

impl Api {
    /// The VM that a create or edit produced, as the leader applied it. Host names come from
    /// this node's copy of the state, which may lag by a moment; names of hosts rarely change.
    fn written_vm(&self, outcome: Outcome) -> Result<Vm, Status> {
        let Outcome::Vm(vm) = outcome else { return Err(Status::internal("the write returned no VM")) };
        let host = vm
            .host
            .and_then(|h| self.0.state().ok().and_then(|st| st.read(|s| s.hosts.get(&h).map(|h| h.name.clone()))));
        Ok(to_proto_with_host(&vm, host))
    }
}

#[tonic::async_trait]
impl VmService for Api {
    async fn create(&self, req: Request<CreateVmRequest>) -> Result<Response<Vm>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        let spec = VmSpec {
            name: r.name,
            description: r.description,
            comment: r.comment,
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            ha_enabled: r.ha,
            ha_priority: if r.ha_priority.is_empty() { HaPriority::Medium } else { priority(&r.ha_priority)? },
        };
        validate::vm_spec(&spec).map_err(status)?;
        let outcome = self.0.write(rid, Op::CreateVm { id: Uuid::new_v4(), spec }).await.map_err(status)?;
        Ok(Response::new(self.written_vm(outcome)?))
    }

    async fn list(&self, req: Request<ListVmsRequest>) -> Result<Response<ListVmsResponse>, Status> {
        let stale = req.into_inner().stale;
        let vms = self
            .0
            .read(stale, |s| s.vm_names.values().filter_map(|id| s.vms.get(id)).map(|vm| to_proto(s, vm)).collect())
            .await
            .map_err(status)?;
        Ok(Response::new(ListVmsResponse { vms }))
    }

    async fn get(&self, req: Request<GetVmRequest>) -> Result<Response<Vm>, Status> {
        let GetVmRequest { vm, stale } = req.into_inner();
        self.0
            .read(stale, |s| s.find_vm(&vm).map(|v| to_proto(s, v)))
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
        };
        validate::vm_changes(&changes).map_err(status)?;
        let outcome = self.0.write(rid, Op::EditVm { vm: r.vm, changes }).await.map_err(status)?;
        Ok(Response::new(self.written_vm(outcome)?))
    }

    async fn delete(&self, req: Request<DeleteVmRequest>) -> Result<Response<DeleteVmResponse>, Status> {
        let rid = request_id(&req)?;
        let vm = req.into_inner().vm;
        let outcome = self.0.write(rid, Op::DeleteVm { vm }).await.map_err(status)?;
        let Outcome::VmDeleted { id } = outcome else { return Err(Status::internal("delete returned no VM id")) };
        Ok(Response::new(DeleteVmResponse { id: id.to_string() }))
    }
}
