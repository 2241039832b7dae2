//! HostService: the hosts of the cluster as the replicated state knows them, with capacity:
//! what each has, what its assigned VMs hold, how many run; maintenance and activation.

use std::sync::Arc;

use corral_proto::{
    EditHostRequest, GetHostRequest, Host, HostMaintenanceRequest, HostRef, ListHostsRequest, ListHostsResponse,
    MaintenanceBlock, RemoveHostRequest, RemoveHostResponse,
};
use corral_raft::command::Op;
use corral_raft::command::Outcome;
use corral_raft::model::{self, ClusterState};
use corral_raft::{validate, ClusterError};

use super::authz::Obj;
use super::{Caller, Handles};
use corral_raft::model::auth::{Operation, Perm, Target};

pub struct Api(pub Arc<Handles>);

pub fn to_proto(s: &ClusterState, h: &model::Host) -> Host {
    let used = s.host_usage(h.id);
    Host {
        id: h.id,
        name: h.name.clone(),
        address: h.address.clone(),
        state: h.state.as_str().into(),
        state_enum: h.state.wire(),
        cpus: h.facts.cpus,
        memory_mib: h.facts.memory_mib,
        libvirt_uri: h.facts.libvirt_uri.clone(),
        joined_unix_ms: h.joined_ms,
        memory_free_mib: h.facts.memory_mib.saturating_sub(used.memory_mib),
        vms_running: used.vms_running as u32,
        domain_type: h.facts.domain_type.as_str().into(),
        domain_type_enum: h.facts.domain_type.wire(),
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
    async fn host(&self, name: String, stale: bool) -> Result<Host, ClusterError> {
        self.0
            .cluster
            .read(stale, |s| s.host_by_name(&name).map(|h| to_proto(s, h)))
            .await?
            .ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", corral_raft::error::quote(&name))))
    }

    /// The hosts the caller may see (host.view on them, the cluster or the system).
    pub async fn list(&self, cx: &Caller, req: ListHostsRequest) -> Result<ListHostsResponse, ClusterError> {
        let stale = req.stale;
        let who = self.0.who(cx).await?;
        let hosts = self
            .0
            .cluster
            .read(stale, |s| {
                let g = who.grants(s)?;
                Ok::<_, ClusterError>(
                    s.hosts
                        .values()
                        .filter(|h| g.can(Perm::HostView, Target::Host(h.id)))
                        .map(|h| to_proto(s, h))
                        .collect(),
                )
            })
            .await??;
        Ok(ListHostsResponse { hosts })
    }

    pub async fn remove(&self, cx: &Caller, req: RemoveHostRequest) -> Result<RemoveHostResponse, ClusterError> {
        let name = req.host;
        validate::name("host", &name)?;
        let who = self.0.check(cx, &[(Operation::HostRemove, Obj::Host(&name))]).await?;
        let (id, promoted) = self.0.cluster.remove_host_anywhere(&name, who.actor().cloned()).await?;
        Ok(RemoveHostResponse { id, promoted })
    }

    pub async fn get(&self, cx: &Caller, req: GetHostRequest) -> Result<Host, ClusterError> {
        let GetHostRequest { host, stale } = req;
        self.0.check(cx, &[(Operation::HostShow, Obj::Host(&host))]).await?;
        self.host(host, stale).await
    }

    pub async fn maintenance(&self, cx: &Caller, req: HostMaintenanceRequest) -> Result<Host, ClusterError> {
        let rid = cx.request_id()?;
        let HostMaintenanceRequest { host, reason } = req;
        validate::name("host", &host)?;
        let reason = Some(reason).filter(|r| !r.trim().is_empty());
        if let Some(r) = &reason {
            validate::text("reason", r)?;
        }
        let op = Op::HostMaintenance { host: host.clone(), reason };
        let op = self.0.permit(cx, &[(Operation::HostMaintenance, Obj::Host(&host))], op).await?;
        self.0.cluster.write(rid, op).await?;
        self.host(host, true).await
    }

    pub async fn activate(&self, cx: &Caller, req: HostRef) -> Result<Host, ClusterError> {
        let rid = cx.request_id()?;
        let host = req.host;
        validate::name("host", &host)?;
        let op = self
            .0
            .permit(cx, &[(Operation::HostActivate, Obj::Host(&host))], Op::ActivateHost { host: host.clone() })
            .await?;
        self.0.cluster.write(rid, op).await?;
        self.host(host, true).await
    }

    pub async fn edit(&self, cx: &Caller, req: EditHostRequest) -> Result<Host, ClusterError> {
        let rid = cx.request_id()?;
        let EditHostRequest { host, tags } = req;
        let tags = tags.map(|t| t.values);
        if let Some(t) = &tags {
            validate::names("tags", t)?;
        }
        let op = self
            .0
            .permit(cx, &[(Operation::HostEdit, Obj::Host(&host))], Op::EditHost { host: host.clone(), tags })
            .await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        let Outcome::Host(h) = outcome else { return Err(ClusterError::Internal("the write returned no host".into())) };
        Ok(self.0.cluster.state()?.read(|s| to_proto(s, &h)))
    }
}
