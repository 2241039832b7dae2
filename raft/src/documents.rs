//! The OVF store's side of the state machine: which VMs' documents the applied entries changed,
//! and each VM's document. The storage crate writes what [`Machine::take_documents`] returns into
//! the node's OVF store tree before the apply returns, so every node holds the last committed OVF
//! of every VM, readable with no quorum.
//!
//! A VM is marked when an entry may have changed its configuration (see `ClusterState::touch_vm`
//! and its callers); `Machine::take_documents` (in apply.rs) hands them over. Marking one that did not change costs a document build and a comparison.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::model::{ClusterState, Disk};
use crate::ovf;

/// VMs whose documents may have changed since the store last took them. Not replicated (it
/// lives between an apply and the write that follows it) and not part of the state's equality.
#[derive(Debug, Clone, Default)]
pub struct Touched(pub(crate) BTreeSet<Uuid>);

impl PartialEq for Touched {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The key of a VM's document in the OVF store.
pub fn key(vm: Uuid) -> String {
    vm.to_string()
}

impl ClusterState {
    /// Notes that a VM's configuration may have changed (or that it is gone).
    pub(crate) fn touch_vm(&mut self, id: Uuid) {
        self.touched.0.insert(id);
    }

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
            .map_or_else(Vec::new, |vm| vm.disks.iter().filter_map(|d| self.disks.get(d)).cloned().collect())
    }
}

pub(crate) fn take(state: &mut ClusterState) -> Vec<(String, Option<Vec<u8>>)> {
    let touched = std::mem::take(&mut state.touched.0);
    touched.into_iter().map(|id| (key(id), state.ovf_document(id).map(String::into_bytes))).collect()
}

pub(crate) fn all(state: &ClusterState) -> Vec<(String, Vec<u8>)> {
    state.vms.keys().filter_map(|id| Some((key(*id), state.ovf_document(*id)?.into_bytes()))).collect()
}

/// In tests, every apply checks that each VM whose document changed was marked: a missed mark
/// would leave a stale document in the OVF store.
#[cfg(test)]
pub(crate) struct TouchCheck {
    docs: std::collections::BTreeMap<String, Vec<u8>>,
    earlier: BTreeSet<Uuid>,
}

#[cfg(test)]
impl TouchCheck {
    pub(crate) fn before(state: &mut ClusterState) -> TouchCheck {
        TouchCheck { docs: all(state).into_iter().collect(), earlier: std::mem::take(&mut state.touched.0) }
    }

    pub(crate) fn after(self, state: &mut ClusterState, cmd: &crate::command::Command) {
        let now: std::collections::BTreeMap<String, Vec<u8>> = all(state).into_iter().collect();
        let keys: BTreeSet<&String> = self.docs.keys().chain(now.keys()).collect();
        for k in keys {
            if self.docs.get(k) != now.get(k) {
                let id: Uuid = k.parse().expect("keys are VM ids");
                assert!(state.touched.0.contains(&id), "the document of VM {k} changed unmarked by {cmd:?}");
            }
        }
        state.touched.0.extend(self.earlier);
    }
}
