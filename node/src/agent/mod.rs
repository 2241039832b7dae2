//! The host agent: this node's side of running VMs. For now it reads the facts a host
//! reports when it joins; the reconciliation loop comes with the VM runtime.

pub mod libvirt;
