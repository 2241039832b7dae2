//! OvfService (each node's own OVF store), and the OVF side of VmService: export, and the
//! preparation of an import (shared with a bootstrap that makes the hosted engine from an OVF).
//! An import checks the document, the name, the hosts it is pinned to and the disk images in
//! the storage domain before anything is written; `--clone` copies the images first and
//! removes the copies again if the command is refused.

use std::sync::Arc;

use corral_proto::*;
use corral_raft::command::{Op, StartOrder};
use corral_raft::model::{self, ClusterState};
use corral_raft::{ovf, validate, ClusterError};
use uuid::Uuid;

use super::authz::Obj;
use super::{Caller, Handles};
use crate::now_ms;
use corral_raft::model::auth::{Operation, Perm, Target};

pub struct Api(pub Arc<Handles>);

/// An import ready to be written: the command, the image files it made (removed again if
/// the command is refused), and what of the document was not acted on.
pub struct PreparedImport {
    pub op: Op,
    pub made: Vec<String>,
    pub ignored: Vec<String>,
}

pub fn bad_document(e: ovf::OvfError) -> ClusterError {
    ClusterError::invalid("ovf", e.to_string())
}

/// Reads `xml` and turns it into an `ImportVm` command: `name` replaces the document's,
/// `clone` gives a new id, new MACs and copies of the disks, `engine` makes it the cluster's
/// hosted engine.
/// The limits of a VM made by hand hold for an imported one too; its boot files must lie in
/// the storage domain.
fn import_limits(node: &Handles, vm: &mut corral_raft::model::Vm, disks: usize) -> Result<(), ClusterError> {
    validate::nics(&vm.config.nics)?;
    validate::disk_count(disks.max(vm.config.disks.len()))?;
    if !vm.config.os.is_empty() {
        validate::os(&vm.config.os)?;
    }
    if let Some(cd) = &vm.config.cdrom {
        validate::path("cdrom", cd)?;
    }
    if let Some(b) = &mut vm.config.boot {
        validate::path("cmdline", &b.cmdline)?;
        b.kernel = node.images.boot_file("kernel", &b.kernel)?.display().to_string();
        if let Some(i) = &mut b.initrd {
            *i = node.images.boot_file("initrd", i)?.display().to_string();
        }
    }
    Ok(())
}

/// The snapshots of an imported document, made safe: each configuration within the limits and
/// the storage domain as the VM's own; no domain definition (a memory snapshot of a document is
/// restored as its disks); a parent that is not an earlier snapshot of the document is none.
fn imported_snapshots(node: &Handles, vm: &mut corral_raft::model::Vm) -> Result<(), ClusterError> {
    let mut seen = Vec::new();
    let id = vm.id;
    for snap in &mut vm.snapshot_state.snapshots {
        let mut then = corral_raft::model::Vm::new(id, "", 0, 0, 0);
        then.config = (*snap.config).clone();
        let n = then.config.disks.len();
        import_limits(node, &mut then, n)
            .map_err(|e| ClusterError::invalid("snapshot", format!("snapshot {}: {e}", snap.id)))?;
        *snap.config = then.config;
        snap.domain_xml = None;
        snap.memory = false;
        snap.run_limits = None;
        snap.parent = snap.parent.filter(|p| seen.contains(p));
        seen.push(snap.id);
    }
    let st = &mut vm.snapshot_state;
    st.current_snapshot = st.current_snapshot.filter(|c| seen.contains(c));
    Ok(())
}

pub async fn prepare_import(
    node: &Handles,
    xml: &str,
    name: Option<String>,
    clone: bool,
    engine: bool,
    start: Option<StartOrder>,
) -> Result<PreparedImport, ClusterError> {
    let ovf::Imported { mut vm, mut disks, mut ignored } = ovf::read(xml).map_err(bad_document)?;
    match name {
        Some(n) => {
            validate::name("name", &n)?;
            vm.config.name = n;
        }
        None => validate::name("name", &vm.config.name).map_err(|e| {
            ClusterError::invalid(
                "name",
                format!(
                    "the document's VM name '{}' cannot be used here ({e}); give another with --name",
                    corral_raft::error::quote(&vm.config.name)
                ),
            )
        })?,
    }
    import_limits(node, &mut vm, disks.len())?;
    // A bootstrap imports its engine before the cluster exists: no host to pin to yet.
    let known_hosts: Vec<u64> = match node.cluster.state() {
        Ok(state) => state.read(|s: &ClusterState| s.hosts.keys().copied().collect()),
        Err(_) => Vec::new(),
    };
    let (kept, unknown): (Vec<u64>, Vec<u64>) = vm.config.pinned_hosts.iter().partition(|h| known_hosts.contains(h));
    for h in unknown {
        ignored.push(format!("Content/DedicatedVmForVds: host {h} is not in this cluster; the VM is not pinned to it"));
    }
    vm.config.pinned_hosts = kept;
    if vm.config.hosted_engine && !engine {
        ignored.push("Content/Origin: the document is a hosted engine's; imported as an ordinary VM".into());
        vm.config.hosted_engine = false;
    }
    for d in &mut disks {
        let path = node.images.path(&d.file);
        if !path.exists() {
            return Err(ClusterError::FailedPrecondition(format!(
                "disk '{}': image {} is not in the storage domain ({}); copy it there first",
                d.name,
                d.file,
                node.images.path("").display()
            )));
        }
        // The image's own size, not the document's word for it.
        let real = node.images.virtual_size_mib(&path).await?;
        if real != d.size_mib {
            ignored.push(format!(
                "disk '{}': the document says {} MiB, the image holds {real} MiB; {real} MiB is recorded",
                d.name, d.size_mib
            ));
            d.size_mib = real;
        }
    }
    let mut made = Vec::new();
    imported_snapshots(node, &mut vm)?;
    if clone {
        vm.id = Uuid::new_v4();
        // Copies of the images carry none of their internal snapshots.
        vm.snapshot_state = Default::default();
        for nic in &mut vm.config.nics {
            nic.mac = super::vms::random_mac();
        }
        let mut copies = Vec::new();
        for (i, d) in disks.iter().enumerate() {
            let id = Uuid::new_v4();
            let copy = model::Disk {
                id,
                name: format!("{}-disk{i}", vm.config.name),
                file: format!("{id}.qcow2"),
                format: "qcow2".into(),
                vm: None,
                created_ms: now_ms(),
                // A full copy builds on no template's base.
                base: None,
                ..d.clone()
            };
            if let Err(e) = node.images.copy(&d.file, &copy.file).await {
                node.images.remove(&made).await;
                return Err(e);
            }
            made.push(copy.file.clone());
            copies.push(copy);
        }
        // Each copy is attached as its original was.
        vm.config.attachments = vm
            .config
            .disks
            .iter()
            .zip(&copies)
            .filter_map(|(old, new)| vm.config.attachments.get(old).map(|a| (new.id, *a)))
            .collect();
        disks = copies;
        vm.config.disks = disks.iter().map(|d| d.id).collect();
        vm.config.created_ms = now_ms();
    }
    Ok(PreparedImport { op: Op::ImportVm { vm: Box::new(vm), disks, engine, start }, made, ignored })
}

/// A VM's OVF document as of now, with the given export time.
pub fn export(s: &ClusterState, name_or_id: &str, node_name: String) -> Result<OvfDocument, ClusterError> {
    let vm = s.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?;
    Ok(OvfDocument {
        vm_id: vm.id.to_string(),
        name: vm.config.name.clone(),
        xml: ovf::write(vm, &s.disks_of(vm.id), now_ms()),
        node: node_name,
    })
}

impl Api {
    fn node_name(&self) -> String {
        self.0.config.name.clone()
    }

    /// This node's store, each document with the VM it describes.
    fn local(&self) -> Result<Vec<(String, String, ovf::Imported)>, ClusterError> {
        let mut out = Vec::new();
        for (key, xml) in self.0.cluster.local_ovf_store()? {
            match ovf::read(&xml) {
                Ok(doc) => out.push((key, xml, doc)),
                Err(e) => tracing::warn!(vm = %key, "a document in the OVF store does not read back: {e}"),
            }
        }
        Ok(out)
    }

    /// The documents of the VMs the caller may see.
    pub async fn list(&self, cx: &Caller, req: OvfListRequest) -> Result<OvfListResponse, ClusterError> {
        let local = req.local;
        let who = self.0.who(cx).await?;
        if !local {
            // The store is written as entries are applied: a linearizable read first makes
            // this node's store at least as new as the cluster's last committed write.
            self.0.cluster.read(false, |_| ()).await?;
        }
        let visible = match &who {
            super::authz::Who::Unchecked => None,
            who => Some(self.0.cluster.state()?.read(|s| {
                let g = who.grants(s)?;
                Ok::<_, ClusterError>(
                    s.vms
                        .keys()
                        .filter(|id| g.can(Perm::VmView, Target::Vm(**id)))
                        .copied()
                        .collect::<std::collections::BTreeSet<_>>(),
                )
            })?),
        };
        let mut entries: Vec<OvfEntry> = self
            .local()?
            .into_iter()
            .filter(|(_, _, doc)| visible.as_ref().is_none_or(|ids| ids.contains(&doc.vm.id)))
            .map(|(key, xml, doc)| OvfEntry {
                vm_id: key,
                name: doc.vm.config.name,
                hosted_engine: doc.vm.config.hosted_engine,
                bytes: xml.len() as u64,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(OvfListResponse { entries, node: self.node_name() })
    }

    pub async fn dump(&self, cx: &Caller, req: OvfDumpRequest) -> Result<OvfDocument, ClusterError> {
        let OvfDumpRequest { vm, local } = req;
        // Decided on this node's copy (a dump works without quorum); a VM the caller may not
        // see does not exist for them.
        if !matches!(self.0.who(cx).await?, super::authz::Who::Unchecked) {
            self.0.check(cx, &[(Operation::VmShow, Obj::Vm(&vm))]).await?;
        }
        if !local {
            self.0.cluster.read(false, |_| ()).await?;
        }
        // By id straight from the store; a name through this node's copy of the state (it
        // needs no quorum either), or by reading the documents when that does not know it.
        // The same look-up as the permission check above: a name wins over an id (a VM may be
        // named like another VM's id).
        let id = self
            .0
            .cluster
            .state()
            .ok()
            .and_then(|state| state.read(|s: &ClusterState| s.find_vm(&vm).map(|v| v.id)))
            .or_else(|| Uuid::parse_str(&vm).ok());
        if let Some(id) = id {
            if let Some(xml) = self.0.cluster.local_ovf_document(id)? {
                let name = ovf::read(&xml).map(|d| d.vm.config.name).unwrap_or_else(|_| vm.clone());
                return Ok(OvfDocument { vm_id: id.to_string(), name, xml, node: self.node_name() });
            }
        }
        let found = self.local()?.into_iter().find(|(key, _, doc)| *key == vm || doc.vm.config.name == vm).ok_or_else(
            || ClusterError::NotFound(format!("no document for vm '{vm}' in the OVF store of this node")),
        )?;
        let (key, xml, doc) = found;
        Ok(OvfDocument { vm_id: key, name: doc.vm.config.name, xml, node: self.node_name() })
    }
}
