//! The OVF store's side of the state machine: each VM's document and its key. Every apply
//! returns the VMs whose documents it may have changed (`Applied::touched`); the storage crate
//! writes their documents into the node's OVF store tree before the apply returns, so every
//! node holds the last committed OVF of every VM, readable with no quorum.

use uuid::Uuid;

use crate::model::{ClusterState, Disk};
use crate::ovf;

/// The key of a VM's document in the OVF store.
pub fn key(vm: Uuid) -> String {
    vm.to_string()
}

impl ClusterState {
    /// The OVF document of a VM as the OVF store holds it: a function of its configuration and
    /// its disks only, so that every node writes the same bytes.
    pub fn ovf_document(&self, id: Uuid) -> Option<String> {
        let vm = self.vms.get(&id)?;
        Some(ovf::write(vm, &self.disks_of(id), 0))
    }

    /// A VM's disks in the order the guest sees them.
    pub fn disks_of(&self, id: Uuid) -> Vec<Disk> {
        self.vms
            .get(&id)
            .map_or_else(Vec::new, |vm| vm.config.disks.iter().filter_map(|d| self.disks.get(d)).cloned().collect())
    }
}

/// The document under an OVF store key, if that key names a VM the state holds.
pub(crate) fn get(state: &ClusterState, key: &str) -> Option<Vec<u8>> {
    let id = Uuid::parse_str(key).ok()?;
    state.ovf_document(id).map(String::into_bytes)
}

pub(crate) fn all(state: &ClusterState) -> Vec<(String, Vec<u8>)> {
    state.vms.keys().filter_map(|id| Some((key(*id), state.ovf_document(*id)?.into_bytes()))).collect()
}

/// In tests, every apply checks that each VM whose document changed is among those it
/// returned: a missing one would leave a stale document in the OVF store.
#[cfg(test)]
pub(crate) mod check {
    use std::collections::{BTreeMap, BTreeSet};

    use uuid::Uuid;

    use crate::model::ClusterState;

    pub(crate) struct TouchCheck {
        docs: BTreeMap<String, Vec<u8>>,
    }

    impl TouchCheck {
        pub(crate) fn before(state: &ClusterState) -> TouchCheck {
            TouchCheck { docs: super::all(state).into_iter().collect() }
        }

        pub(crate) fn after(self, state: &ClusterState, cmd: &crate::command::Command, touched: &BTreeSet<Uuid>) {
            let now: BTreeMap<String, Vec<u8>> = super::all(state).into_iter().collect();
            let keys: BTreeSet<&String> = self.docs.keys().chain(now.keys()).collect();
            for k in keys {
                if self.docs.get(k) != now.get(k) {
                    let marked = Uuid::parse_str(k).is_ok_and(|id| touched.contains(&id));
                    assert!(marked, "the document of VM {k} changed unmarked by {cmd:?}");
                }
            }
        }
    }
}
