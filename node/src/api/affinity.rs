//! AffinityService: affinity groups (VM-to-VM) and labels (VM-to-host). Input is checked
//! here (names, polarity) and again by apply, which resolves VM and host names and refuses a
//! rule that the VMs running now would break.

use std::sync::Arc;

use corral_proto::affinity_service_server::AffinityService;
use corral_proto::*;
use corral_raft::command::{Op, Outcome};
use corral_raft::model::{self, ClusterState, Polarity};
use corral_raft::{validate, ClusterError};
use tonic::{Request, Response, Status};

use super::{request_id, status};
use super::Handles;

pub struct Api(pub Arc<Handles>);

fn group_to_proto(s: &ClusterState, g: &model::AffinityGroup) -> AffinityGroup {
    AffinityGroup {
        name: g.name.clone(),
        polarity: g.polarity.as_str().into(),
        enforcing: g.enforcing,
        vms: s.vm_names_of(&g.vms),
        created_unix_ms: g.created_ms,
    }
}

fn label_to_proto(s: &ClusterState, l: &model::AffinityLabel) -> AffinityLabel {
    AffinityLabel {
        name: l.name.clone(),
        vms: s.vm_names_of(&l.vms),
        hosts: l.hosts.iter().map(|h| s.host_name(*h)).collect(),
        created_unix_ms: l.created_ms,
    }
}

fn polarity(value: &str) -> Result<Polarity, Status> {
    value.parse().map_err(status)
}

impl Api {
    /// The group or label a write produced; VM and host names come from this node's copy of
    /// the state.
    async fn write(&self, rid: Option<uuid::Uuid>, op: Op) -> Result<Outcome, Status> {
        self.0.cluster.write(rid, op).await.map_err(status)
    }

    fn state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> Result<T, Status> {
        Ok(self.0.cluster.state().map_err(status)?.read(f))
    }
}

#[tonic::async_trait]
impl AffinityService for Api {
    async fn create_group(&self, req: Request<CreateAffinityGroupRequest>) -> Result<Response<AffinityGroup>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        validate::name("name", &r.name).map_err(status)?;
        let op = Op::CreateAffinityGroup {
            name: r.name,
            polarity: polarity(&r.polarity)?,
            enforcing: r.enforcing,
            vms: r.vms,
        };
        let Outcome::AffinityGroup(g) = self.write(rid, op).await? else {
            return Err(Status::internal("the write returned no affinity group"));
        };
        Ok(Response::new(self.state(|s| group_to_proto(s, &g))?))
    }

    async fn list_groups(
        &self,
        req: Request<ListAffinityRequest>,
    ) -> Result<Response<ListAffinityGroupsResponse>, Status> {
        let stale = req.into_inner().stale;
        let groups = self
            .0
            .cluster
            .read(stale, |s| s.affinity_groups.values().map(|g| group_to_proto(s, g)).collect())
            .await
            .map_err(status)?;
        Ok(Response::new(ListAffinityGroupsResponse { groups }))
    }

    async fn get_group(&self, req: Request<GetAffinityRequest>) -> Result<Response<AffinityGroup>, Status> {
        let GetAffinityRequest { name, stale } = req.into_inner();
        self.0
            .cluster
            .read(stale, |s| s.affinity_groups.get(&name).map(|g| group_to_proto(s, g)))
            .await
            .map_err(status)?
            .map(Response::new)
            .ok_or_else(|| status(ClusterError::NotFound(format!("affinity group '{name}' not found"))))
    }

    async fn edit_group(&self, req: Request<EditAffinityGroupRequest>) -> Result<Response<AffinityGroup>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        let op = Op::EditAffinityGroup {
            name: r.name,
            add_vms: r.add_vms,
            remove_vms: r.remove_vms,
            enforcing: r.enforcing,
            polarity: r.polarity.as_deref().map(polarity).transpose()?,
        };
        let Outcome::AffinityGroup(g) = self.write(rid, op).await? else {
            return Err(Status::internal("the write returned no affinity group"));
        };
        Ok(Response::new(self.state(|s| group_to_proto(s, &g))?))
    }

    async fn delete_group(
        &self,
        req: Request<DeleteAffinityRequest>,
    ) -> Result<Response<DeleteAffinityResponse>, Status> {
        let rid = request_id(&req)?;
        let name = req.into_inner().name;
        self.write(rid, Op::DeleteAffinityGroup { name: name.clone() }).await?;
        Ok(Response::new(DeleteAffinityResponse { name }))
    }

    async fn create_label(&self, req: Request<CreateAffinityLabelRequest>) -> Result<Response<AffinityLabel>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        validate::name("name", &r.name).map_err(status)?;
        validate::names("hosts", &r.hosts).map_err(status)?;
        let op = Op::CreateAffinityLabel { name: r.name, vms: r.vms, hosts: r.hosts };
        let Outcome::AffinityLabel(l) = self.write(rid, op).await? else {
            return Err(Status::internal("the write returned no affinity label"));
        };
        Ok(Response::new(self.state(|s| label_to_proto(s, &l))?))
    }

    async fn list_labels(
        &self,
        req: Request<ListAffinityRequest>,
    ) -> Result<Response<ListAffinityLabelsResponse>, Status> {
        let stale = req.into_inner().stale;
        let labels = self
            .0
            .cluster
            .read(stale, |s| s.affinity_labels.values().map(|l| label_to_proto(s, l)).collect())
            .await
            .map_err(status)?;
        Ok(Response::new(ListAffinityLabelsResponse { labels }))
    }

    async fn get_label(&self, req: Request<GetAffinityRequest>) -> Result<Response<AffinityLabel>, Status> {
        let GetAffinityRequest { name, stale } = req.into_inner();
        self.0
            .cluster
            .read(stale, |s| s.affinity_labels.get(&name).map(|l| label_to_proto(s, l)))
            .await
            .map_err(status)?
            .map(Response::new)
            .ok_or_else(|| status(ClusterError::NotFound(format!("affinity label '{name}' not found"))))
    }

    async fn edit_label(&self, req: Request<EditAffinityLabelRequest>) -> Result<Response<AffinityLabel>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        let op = Op::EditAffinityLabel {
            name: r.name,
            add_vms: r.add_vms,
            remove_vms: r.remove_vms,
            add_hosts: r.add_hosts,
            remove_hosts: r.remove_hosts,
        };
        let Outcome::AffinityLabel(l) = self.write(rid, op).await? else {
            return Err(Status::internal("the write returned no affinity label"));
        };
        Ok(Response::new(self.state(|s| label_to_proto(s, &l))?))
    }

    async fn delete_label(
        &self,
        req: Request<DeleteAffinityRequest>,
    ) -> Result<Response<DeleteAffinityResponse>, Status> {
        let rid = request_id(&req)?;
        let name = req.into_inner().name;
        self.write(rid, Op::DeleteAffinityLabel { name: name.clone() }).await?;
        Ok(Response::new(DeleteAffinityResponse { name }))
    }
}
