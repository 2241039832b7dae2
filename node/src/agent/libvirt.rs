//! The hypervisor driver: the only code that calls the `virt` crate. libvirt calls are
//! blocking FFI, so they run on tokio's blocking pool, never on the async workers.

use corral_raft::model::HostFacts;
use virt::connect::Connect;

#[derive(Debug, thiserror::Error)]
#[error("cannot use libvirt at {uri}: {message}")]
pub struct LibvirtError {
    pub uri: String,
    pub message: String,
}

/// Opens `uri` and reads the host's CPU count and memory.
pub async fn host_facts(uri: &str) -> Result<HostFacts, LibvirtError> {
    let uri = uri.to_string();
    let task_uri = uri.clone();
    tokio::task::spawn_blocking(move || {
        let err = |e: virt::error::Error| LibvirtError { uri: task_uri.clone(), message: e.to_string() };
        let conn = Connect::open(Some(&task_uri)).map_err(err)?;
        let info = conn.node_info().map_err(err);
        let info = info?;
        Ok(HostFacts { cpus: info.cpus, memory_mib: info.memory / 1024, libvirt_uri: task_uri.clone() })
    })
    .await
    .map_err(|e| LibvirtError { uri, message: format!("the libvirt task failed: {e}") })?
}
