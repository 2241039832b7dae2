//! AffinityService: affinity groups (VM-to-VM) and labels (VM-to-host). Input is checked
//! here (names, polarity) and again by apply, which resolves VM and host names and refuses a
//! rule that the VMs running now would break.

use std::sync::Arc;

use corral_proto::*;
use corral_raft::command::{Op, Outcome};
use corral_raft::model::{self, ClusterState};
use corral_raft::{validate, vocab, ClusterError};

use super::authz::Obj;
use super::{Caller, Handles};
use corral_raft::model::auth::Operation;

pub struct Api(pub Arc<Handles>);

fn group_to_proto(s: &ClusterState, g: &model::AffinityGroup) -> AffinityGroup {
    AffinityGroup {
        name: g.name.clone(),
        polarity: g.polarity.as_str().into(),
        polarity_enum: g.polarity.wire(),
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

impl Api {
    /// The group or label a write produced; VM and host names come from this node's copy of
    /// the state.
    async fn write(&self, cx: &Caller, rid: Option<uuid::Uuid>, op: Op) -> Result<Outcome, ClusterError> {
        let op = self.0.permit(cx, &[(Operation::ClusterEdit, Obj::Cluster)], op).await?;
        self.0.cluster.write(rid, op).await
    }

    async fn may_read(&self, cx: &Caller) -> Result<(), ClusterError> {
        self.0.check(cx, &[(Operation::ClusterStatus, Obj::Cluster)]).await.map(|_| ())
    }

    fn state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> Result<T, ClusterError> {
        Ok(self.0.cluster.state()?.read(f))
    }

    pub async fn create_group(
        &self,
        cx: &Caller,
        req: CreateAffinityGroupRequest,
    ) -> Result<AffinityGroup, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        validate::name("name", &r.name)?;
        let op = Op::CreateAffinityGroup {
            name: r.name,
            polarity: vocab::read_given("polarity", r.polarity_enum, &r.polarity)?,
            enforcing: r.enforcing,
            vms: r.vms,
        };
        let Outcome::AffinityGroup(g) = self.write(cx, rid, op).await? else {
            return Err(ClusterError::Internal("the write returned no affinity group".into()));
        };
        self.state(|s| group_to_proto(s, &g))
    }

    pub async fn list_groups(
        &self,
        cx: &Caller,
        req: ListAffinityRequest,
    ) -> Result<ListAffinityGroupsResponse, ClusterError> {
        self.may_read(cx).await?;
        let stale = req.stale;
        let groups =
            self.0.cluster.read(stale, |s| s.affinity_groups.values().map(|g| group_to_proto(s, g)).collect()).await?;
        Ok(ListAffinityGroupsResponse { groups })
    }

    pub async fn get_group(&self, cx: &Caller, req: GetAffinityRequest) -> Result<AffinityGroup, ClusterError> {
        self.may_read(cx).await?;
        let GetAffinityRequest { name, stale } = req;
        self.0.cluster.read(stale, |s| s.affinity_groups.get(&name).map(|g| group_to_proto(s, g))).await?.ok_or_else(
            || ClusterError::NotFound(format!("affinity group '{}' not found", corral_raft::error::quote(&name))),
        )
    }

    pub async fn edit_group(&self, cx: &Caller, req: EditAffinityGroupRequest) -> Result<AffinityGroup, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let op = Op::EditAffinityGroup {
            name: r.name,
            add_vms: r.add_vms,
            remove_vms: r.remove_vms,
            enforcing: r.enforcing,
            polarity: vocab::read_change("polarity", r.polarity_enum, r.polarity.as_deref())?,
        };
        let Outcome::AffinityGroup(g) = self.write(cx, rid, op).await? else {
            return Err(ClusterError::Internal("the write returned no affinity group".into()));
        };
        self.state(|s| group_to_proto(s, &g))
    }

    pub async fn delete_group(
        &self,
        cx: &Caller,
        req: DeleteAffinityRequest,
    ) -> Result<DeleteAffinityResponse, ClusterError> {
        let rid = cx.request_id()?;
        let name = req.name;
        self.write(cx, rid, Op::DeleteAffinityGroup { name: name.clone() }).await?;
        Ok(DeleteAffinityResponse { name })
    }

    pub async fn create_label(
        &self,
        cx: &Caller,
        req: CreateAffinityLabelRequest,
    ) -> Result<AffinityLabel, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        validate::name("name", &r.name)?;
        validate::names("hosts", &r.hosts)?;
        let op = Op::CreateAffinityLabel { name: r.name, vms: r.vms, hosts: r.hosts };
        let Outcome::AffinityLabel(l) = self.write(cx, rid, op).await? else {
            return Err(ClusterError::Internal("the write returned no affinity label".into()));
        };
        self.state(|s| label_to_proto(s, &l))
    }

    pub async fn list_labels(
        &self,
        cx: &Caller,
        req: ListAffinityRequest,
    ) -> Result<ListAffinityLabelsResponse, ClusterError> {
        self.may_read(cx).await?;
        let stale = req.stale;
        let labels =
            self.0.cluster.read(stale, |s| s.affinity_labels.values().map(|l| label_to_proto(s, l)).collect()).await?;
        Ok(ListAffinityLabelsResponse { labels })
    }

    pub async fn get_label(&self, cx: &Caller, req: GetAffinityRequest) -> Result<AffinityLabel, ClusterError> {
        self.may_read(cx).await?;
        let GetAffinityRequest { name, stale } = req;
        self.0.cluster.read(stale, |s| s.affinity_labels.get(&name).map(|l| label_to_proto(s, l))).await?.ok_or_else(
            || ClusterError::NotFound(format!("affinity label '{}' not found", corral_raft::error::quote(&name))),
        )
    }

    pub async fn edit_label(&self, cx: &Caller, req: EditAffinityLabelRequest) -> Result<AffinityLabel, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let op = Op::EditAffinityLabel {
            name: r.name,
            add_vms: r.add_vms,
            remove_vms: r.remove_vms,
            add_hosts: r.add_hosts,
            remove_hosts: r.remove_hosts,
        };
        let Outcome::AffinityLabel(l) = self.write(cx, rid, op).await? else {
            return Err(ClusterError::Internal("the write returned no affinity label".into()));
        };
        self.state(|s| label_to_proto(s, &l))
    }

    pub async fn delete_label(
        &self,
        cx: &Caller,
        req: DeleteAffinityRequest,
    ) -> Result<DeleteAffinityResponse, ClusterError> {
        let rid = cx.request_id()?;
        let name = req.name;
        self.write(cx, rid, Op::DeleteAffinityLabel { name: name.clone() }).await?;
        Ok(DeleteAffinityResponse { name })
    }
}
