//! DiskService: the images of the storage domain, each with its VM or "floating".

use std::sync::Arc;

use corral_proto::{ListDisksRequest, ListDisksResponse};

use super::vms::disk_to_proto;
use super::{Caller, Handles};
use corral_raft::model::auth::{Perm, Target};
use corral_raft::ClusterError;

pub struct Api(pub Arc<Handles>);

impl Api {
    /// The disks the caller may see: disk.view on the disk (or above), or on its VM.
    pub async fn list(&self, cx: &Caller, req: ListDisksRequest) -> Result<ListDisksResponse, ClusterError> {
        let stale = req.stale;
        let node = self.0.clone();
        let who = self.0.who(cx).await?;
        let disks = self
            .0
            .cluster
            .read(stale, |s| {
                let g = who.grants(s)?;
                Ok::<_, ClusterError>(
                    s.disks
                        .values()
                        .filter(|d| {
                            g.can(Perm::DiskView, Target::Disk(d.id))
                                || d.vm.is_some_and(|v| g.can(Perm::DiskView, Target::Vm(v)))
                        })
                        .map(|d| {
                            disk_to_proto(&node, d, d.vm.and_then(|v| s.vms.get(&v)).map(|v| v.config.name.clone()))
                        })
                        .collect(),
                )
            })
            .await??;
        Ok(ListDisksResponse { disks })
    }
}
