//! The wiring: composes one corrald from its parts and hands each the narrowest handle it
//! needs. The cluster handle knows Raft, the store and the network; the host agent owns the
//! lease, the hypervisor driver and the storage domain; the leader's part owns the heartbeat
//! book. None of them knows the others' types: they meet here.

use std::future::Future;
use std::sync::Arc;

use corral_raft::model::HostFacts;

use crate::agent::libvirt::Hypervisor;
use crate::agent::HostAgent;
use crate::api::{self, Handles};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::controller::Leader;
use crate::images::StorageDomain;
use crate::witness::Witness;

pub struct Daemon {
    cluster: Cluster,
    agent: Arc<HostAgent>,
    api: Arc<Handles>,
}

impl Daemon {
    /// Opens the data dir and starts every part; the agent's and the leader's tasks start once
    /// this node runs Raft (at once, or at bootstrap or join).
    pub async fn open(config: Config, facts: HostFacts, hypervisor: Hypervisor) -> anyhow::Result<Daemon> {
        let config = Arc::new(config);
        let cluster = Cluster::open(config.clone(), facts.clone()).await?;
        // Raft may already run (resumed), but nothing reaches it before `serve`: the desk is in
        // place before any heartbeat can arrive.
        let leader = Leader::new(cluster.clone(), config.clone());
        cluster.set_lease_desk(leader.clone());
        // Every node witnesses leases while it is a voter; a host heard again after it was
        // declared down (or fenced itself) is recorded alive by the leader's part.
        let heard = leader.clone();
        let witness = Witness::new(cluster.clone(), config.clone(), Box::new(move |host, f| heard.heard(host, f)));
        cluster.set_witness_desk(witness.clone());
        tokio::spawn(witness.beat());
        let images = StorageDomain::new(&config.storage_dir);
        let agent = HostAgent::new(cluster.clone(), hypervisor, images.clone(), config.clone(), facts.domain_type);
        let api = Arc::new(Handles {
            cluster: cluster.clone(),
            images,
            config,
            facts,
            local: agent.local_engine(),
            logins: crate::api::Logins::new(),
            displays: Default::default(),
        });
        match cluster.parts() {
            // Resumed from the data dir: every part runs before the API answers anyone.
            Ok(parts) => {
                leader.spawn(parts);
                agent.spawn(parts);
            }
            // Raft starts at bootstrap or join: the parts start with it.
            Err(_) => {
                let (c, a) = (cluster.clone(), agent.clone());
                tokio::spawn(async move {
                    let Some(parts) = c.started().await else { return };
                    leader.spawn(&parts);
                    a.spawn(&parts);
                });
            }
        }
        Ok(Daemon { cluster, agent, api })
    }

    /// Serves the API on `listener` and the local socket `local` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        local: tokio::net::UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        api::serve(self.api.clone(), listener, local, shutdown).await
    }

    /// A clean stop: this host's lease is given up and its VMs stopped (the cluster restarts
    /// the HA ones elsewhere), then Raft stops and the store is flushed.
    pub async fn shutdown(&self) {
        self.agent.release().await;
        self.cluster.shutdown().await;
    }
}
