//! The host agent: this node's side of running VMs. The driver (`libvirt`) is the only code
//! that touches libvirt; `reconcile` makes this host run what the cluster assigns to it;
//! `watchdog` powers the host off when nobody feeds it.

pub mod domain_xml;
pub mod engine;
pub mod lease;
pub mod libvirt;
pub mod reconcile;
pub mod watchdog;
