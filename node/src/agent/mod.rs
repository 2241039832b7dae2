//! The host agent: this node's side of running VMs. It owns this host's lease (`lease`), its
//! hypervisor driver (`libvirt`, the only code that touches libvirt) and its storage domain,
//! and reaches the cluster only through the cluster handle. `reconcile` makes this host run
//! what the cluster assigns to it; `watchdog` powers the host off when nobody feeds it;
//! `engine` measures this host's engine score; `console` relays the serial consoles of the VMs
//! here and sets their VNC passwords. The API reaches it only through [`LocalEngine`].

pub mod console;
pub mod domain_xml;
pub mod engine;
pub mod lease;
pub mod libvirt;
pub mod reconcile;
pub mod usage;
pub mod watchdog;

use std::sync::Arc;

use corral_raft::model::DomainType;
use corral_raft::ClusterError;
use uuid::Uuid;

use crate::cluster::{Cluster, RaftParts};
use crate::config::Config;
use crate::images::StorageDomain;
use libvirt::{DomainState, Hypervisor};

pub struct HostAgent {
    cluster: Cluster,
    hv: Hypervisor,
    images: StorageDomain,
    lease: lease::Lease,
    config: Arc<Config>,
    /// This host's own domain type (kvm, or qemu where KVM cannot run the guests).
    domain_type: DomainType,
    /// The console session of each VM here.
    consoles: console::Sessions,
    /// What the VMs here use, for metrics (`usage`).
    usage: usage::Usage,
}

impl HostAgent {
    pub fn new(
        cluster: Cluster,
        hv: Hypervisor,
        images: StorageDomain,
        config: Arc<Config>,
        domain_type: DomainType,
    ) -> Arc<HostAgent> {
        Arc::new(HostAgent {
            images,
            lease: lease::Lease::new(&config),
            cluster,
            hv,
            config,
            domain_type,
            consoles: console::Sessions::default(),
            usage: usage::Usage::default(),
        })
    }

    /// Starts the agent's tasks for a node whose Raft now runs.
    pub fn spawn(self: &Arc<Self>, parts: &RaftParts) {
        reconcile::spawn(self.clone(), parts.id, parts.state.clone());
        // Before the lease task: its first fencing must spare a hand-started engine VM.
        engine::restore(self);
        lease::spawn(self.clone(), parts.id, parts.state.clone());
        engine::spawn_scores(self.clone(), parts.id, parts.state.clone());
        usage::spawn(self.hv.clone(), self.usage.clone());
    }

    /// Whether this host's libvirt runs VM `id` now.
    async fn runs_here(&self, id: Uuid) -> Result<bool, ClusterError> {
        let domains = self
            .hv
            .domains()
            .await
            .map_err(|e| ClusterError::Unavailable(format!("this host's libvirt does not answer: {e}")))?;
        Ok(domains.into_iter().any(|d| d.uuid == id && !matches!(d.state, DomainState::Shutoff | DomainState::Crashed)))
    }

    /// The address a domain like `spec` shows its VNC display on here, if this host has one
    /// (never on libvirt's test driver).
    fn vnc_listen(&self, spec: &domain_xml::DomainSpec) -> Option<String> {
        self.config.vnc_listen.filter(|_| spec.domain_type != "test").map(|a| a.to_string())
    }

    /// The narrow interface the API gets.
    pub fn local_engine(self: &Arc<Self>) -> LocalEngine {
        LocalEngine(self.clone())
    }
}

/// What the API may ask of this host's agent directly, without going through the cluster:
/// `engine start --local` (the one path that must work while the cluster has no quorum), the
/// probe other hosts make before it, "do you run this VM?", and the consoles of the VMs that
/// run here (`vm console`).
#[derive(Clone)]
pub struct LocalEngine(Arc<HostAgent>);

impl LocalEngine {
    /// Starts the engine VM here from this host's OVF store; see [`engine::start_local`].
    pub async fn start_here(&self, force: bool) -> Result<(String, Vec<String>), ClusterError> {
        engine::start_local(&self.0, force).await
    }

    /// Whether this host's libvirt runs VM `id` now.
    pub async fn runs_vm(&self, id: Uuid) -> Result<bool, ClusterError> {
        self.0.runs_here(id).await
    }

    /// Attaches a session to the serial console of VM `id` (named `name`), which runs here.
    pub async fn console(&self, id: Uuid, name: &str) -> Result<console::ConsoleLink, ClusterError> {
        console::attach(&self.0, id, name).await
    }

    /// A fresh VNC password for VM `id`, which runs here.
    pub async fn vnc_ticket(&self, id: Uuid, name: &str) -> Result<console::VncTicket, ClusterError> {
        console::vnc_ticket(&self.0, id, name).await
    }

    /// What the VMs running here used, as last read from libvirt (never waits for libvirt;
    /// asking keeps the snapshot fresh for a while, see `usage`).
    pub fn vm_usage(&self) -> Vec<libvirt::VmUsage> {
        self.0.usage.read()
    }

    /// How much of this host's lease is left (zero when it holds none).
    pub fn lease_left(&self) -> std::time::Duration {
        self.0.lease.remaining()
    }
}
