//! DiskService: the images of the storage domain, each with its VM or "floating".

use std::sync::Arc;

use corral_proto::disk_service_server::DiskService;
use corral_proto::{ListDisksRequest, ListDisksResponse};
use tonic::{Request, Response, Status};

use super::status;
use super::vms::disk_to_proto;
use crate::node::Node;

pub struct Api(pub Arc<Node>);

#[tonic::async_trait]
impl DiskService for Api {
    async fn list(&self, req: Request<ListDisksRequest>) -> Result<Response<ListDisksResponse>, Status> {
        let stale = req.into_inner().stale;
        let node = self.0.clone();
        let disks = self
            .0
            .read(stale, |s| {
                s.disks
                    .values()
                    .map(|d| disk_to_proto(&node, d, d.vm.and_then(|v| s.vms.get(&v)).map(|v| v.config.name.clone())))
                    .collect()
            })
            .await
            .map_err(status)?;
        Ok(Response::new(ListDisksResponse { disks }))
    }
}
