//! DiskService: the images of the storage domain, each with its VM or "floating".

use std::sync::Arc;

use corral_proto::{ListDisksRequest, ListDisksResponse};

use super::vms::disk_to_proto;
use super::{Caller, Handles};
use corral_raft::ClusterError;

pub struct Api(pub Arc<Handles>);

impl Api {
    pub async fn list(&self, _cx: &Caller, req: ListDisksRequest) -> Result<ListDisksResponse, ClusterError> {
        let stale = req.stale;
        let node = self.0.clone();
        let disks = self
            .0
            .cluster
            .read(stale, |s| {
                s.disks
                    .values()
                    .map(|d| disk_to_proto(&node, d, d.vm.and_then(|v| s.vms.get(&v)).map(|v| v.config.name.clone())))
                    .collect()
            })
            .await?;
        Ok(ListDisksResponse { disks })
    }
}
