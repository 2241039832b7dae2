//! HostService: the hosts of the cluster as the replicated state knows them, with capacity:
//! what each has, what its assigned VMs hold, how many run; maintenance and activation.

use std::sync::Arc;

use corral_proto::host_service_server::HostService;
use corral_proto::{
    EditHostRequest, GetHostRequest, Host, HostMaintenanceRequest, HostRef, ListHostsRequest, ListHostsResponse,
    MaintenanceBlock, RemoveHostRequest, RemoveHostResponse,
};
use corral_raft::command::Op;
use corral_raft::command::Outcome;
use corral_raft::model::{self, ClusterState};
use corral_raft::{validate, ClusterError};
use tonic::{Request, Response, Status};

use super::{request_id, status};
use super::Handles;

pub struct Api(pub Arc<Handles>);

pub fn to_proto(s: &ClusterState, h: &model::Host) -> Host {
    let used = s.host_usage(h.id);
    Host {
        id: h.id,
        name: h.name.clone(),
        address: h.address.clone(),
        state: h.state.as_str().into(),
        cpus: h.facts.cpus,
        memory_mib: h.facts.memory_mib,
        libvirt_uri: h.facts.libvirt_uri.clone(),
        joined_unix_ms: h.joined_ms,
        memory_free_mib: h.facts.memory_mib.saturating_sub(used.memory_mib),
        vms_running: used.vms_running as u32,
        domain_type: h.facts.domain_type.as_str().into(),
        vcpus_free: (h.facts.cpus as u64 * s.cpu_overcommit()).saturating_sub(used.vcpus) as u32,
        tags: h.tags.clone(),
        state_since_unix_ms: h.state_since_ms,
        maintenance_reason: h.maintenance.as_ref().map(|m| m.reason.clone().unwrap_or_default()),
        blocked: h
            .maintenance
            .iter()
            .flat_map(|m| &m.blocked)
            .map(|(vm, reason)| MaintenanceBlock { vm: vm.clone(), reason: reason.clone() })
            .collect(),
        engine_score: h.engine_score.as_ref().map(engine_score_to_proto),
        engine_local_maintenance: h.engine_local_maintenance,
    }
}

pub fn engine_score_to_proto(s: &model::EngineScore) -> corral_proto::EngineScore {
    corral_proto::EngineScore {
        score: s.score,
        penalties: s.penalties.iter().map(|(what, n)| format!("{what}: -{n}")).collect(),
        measured_unix_ms: s.measured_ms,
    }
}

impl Api {
    async fn host(&self, name: String, stale: bool) -> Result<Response<Host>, Status> {
        self.0
            .cluster
            .read(stale, |s| s.host_by_name(&name).map(|h| to_proto(s, h)))
            .await
            .map_err(status)?
            .map(Response::new)
            .ok_or_else(|| status(ClusterError::NotFound(format!("host '{name}' not found"))))
    }
}

#[tonic::async_trait]
impl HostService for Api {
    async fn list(&self, req: Request<ListHostsRequest>) -> Result<Response<ListHostsResponse>, Status> {
        let stale = req.into_inner().stale;
        let hosts = self.0.cluster.read(stale, |s| s.hosts.values().map(|h| to_proto(s, h)).collect()).await.map_err(status)?;
        Ok(Response::new(ListHostsResponse { hosts }))
    }

    async fn remove(&self, req: Request<RemoveHostRequest>) -> Result<Response<RemoveHostResponse>, Status> {
        let name = req.into_inner().host;
        validate::name("host", &name).map_err(status)?;
        let (id, promoted) = self.0.cluster.remove_host_anywhere(&name).await.map_err(status)?;
        Ok(Response::new(RemoveHostResponse { id, promoted }))
    }

    async fn get(&self, req: Request<GetHostRequest>) -> Result<Response<Host>, Status> {
        let GetHostRequest { host, stale } = req.into_inner();
        self.host(host, stale).await
    }

    async fn maintenance(&self, req: Request<HostMaintenanceRequest>) -> Result<Response<Host>, Status> {
        let rid = request_id(&req)?;
        let HostMaintenanceRequest { host, reason } = req.into_inner();
        validate::name("host", &host).map_err(status)?;
        let reason = Some(reason).filter(|r| !r.trim().is_empty());
        if let Some(r) = &reason {
            validate::text("reason", r).map_err(status)?;
        }
        self.0.cluster.write(rid, Op::HostMaintenance { host: host.clone(), reason }).await.map_err(status)?;
        self.host(host, true).await
    }

    async fn activate(&self, req: Request<HostRef>) -> Result<Response<Host>, Status> {
        let rid = request_id(&req)?;
        let host = req.into_inner().host;
        validate::name("host", &host).map_err(status)?;
        self.0.cluster.write(rid, Op::ActivateHost { host: host.clone() }).await.map_err(status)?;
        self.host(host, true).await
    }

    async fn edit(&self, req: Request<EditHostRequest>) -> Result<Response<Host>, Status> {
        let rid = request_id(&req)?;
        let EditHostRequest { host, tags } = req.into_inner();
        let tags = tags.map(|t| t.values);
        if let Some(t) = &tags {
            validate::names("tags", t).map_err(status)?;
        }
        let outcome = self.0.cluster.write(rid, Op::EditHost { host, tags }).await.map_err(status)?;
        let Outcome::Host(h) = outcome else { return Err(Status::internal("the write returned no host")) };
        Ok(Response::new(self.0.cluster.state().map_err(status)?.read(|s| to_proto(s, &h))))
    }
}
