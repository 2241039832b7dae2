//! HostService: the hosts of the cluster as the replicated state knows them.

use std::sync::Arc;

use corral_proto::host_service_server::HostService;
use corral_proto::{Host, ListHostsRequest, ListHostsResponse};
use tonic::{Request, Response, Status};

use super::status;
use crate::node::Node;

pub struct Api(pub Arc<Node>);

#[tonic::async_trait]
impl HostService for Api {
    async fn list(&self, req: Request<ListHostsRequest>) -> Result<Response<ListHostsResponse>, Status> {
        let stale = req.into_inner().stale;
        let hosts = self
            .0
            .read(stale, |s| {
                s.hosts
                    .values()
                    .map(|h| Host {
                        id: h.id,
                        name: h.name.clone(),
                        address: h.address.clone(),
                        state: h.state.as_str().into(),
                        cpus: h.facts.cpus,
                        memory_mib: h.facts.memory_mib,
                        libvirt_uri: h.facts.libvirt_uri.clone(),
                        joined_unix_ms: h.joined_ms,
                    })
                    .collect()
            })
            .await
            .map_err(status)?;
        Ok(Response::new(ListHostsResponse { hosts }))
    }
}
