//! Changing a running VM: when the state's configuration of a VM that runs here moved on
//! (`hot_seq` past `hot_done`), the agent reads the live domain, works out what differs
//! (plugged disks and NICs, the CD, vCPUs, memory, disk sizes) and changes exactly that, then
//! reports what runs. A change libvirt or the guest refuses stops the pass; the report carries
//! the error and the devices the domain has, and apply makes the configuration say so.

use std::collections::HashMap;

use corral_raft::model::{LiveDevices, Observed, Vm};
use uuid::Uuid;

use super::super::domain_xml::{DiskBus, DiskDevice, DiskSpec, DomainSpec, LiveDomain, NicSpec};
use super::super::libvirt::DriverError;
use super::Agent;

/// One change to a running domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotAction {
    PlugDisk(DiskSpec),
    UnplugDisk { target: String, path: String },
    PlugNic(NicSpec),
    UnplugNic { mac: String },
    ChangeCd(Option<String>),
    SetVcpus(u32),
    PlugMemory(u64),
    UnplugMemory(u64),
    ResizeDisk { target: String, size_mib: u64 },
}

/// What must change in `live` for it to run `want`. Disks are matched by their image file, NICs
/// by MAC; a plugged disk gets the first free target of its bus. Only files of the storage
/// domain (`ours`) are unplugged: a device Corral did not make is left alone. Memory is
/// compared as a whole (what it booted with plus DIMMs); growing disks is the caller's.
pub fn hot_actions(want: &DomainSpec, live: &LiveDomain, ours: impl Fn(&str) -> bool) -> Vec<HotAction> {
    let mut out = Vec::new();
    let live_disks: Vec<_> = live.disks.iter().filter(|d| d.device == DiskDevice::Disk).collect();
    for d in live_disks.iter().filter(|d| d.source.as_deref().is_some_and(&ours)) {
        let path = d.source.clone().unwrap_or_default();
        if !want.disks.iter().any(|w| w.path == path) {
            out.push(HotAction::UnplugDisk { target: d.target.clone(), path });
        }
    }
    let mut taken: Vec<String> = live.disks.iter().map(|d| d.target.clone()).collect();
    for w in &want.disks {
        if !live_disks.iter().any(|d| d.source.as_deref() == Some(w.path.as_str())) {
            let prefix = if w.bus == DiskBus::Scsi { "sd" } else { "vd" };
            let target = (b'a'..=b'z')
                .map(|c| format!("{prefix}{}", c as char))
                .find(|t| !taken.contains(t))
                .unwrap_or_else(|| w.target.clone());
            taken.push(target.clone());
            out.push(HotAction::PlugDisk(DiskSpec { target, ..w.clone() }));
        }
    }
    for n in &live.nics {
        if !want.nics.iter().any(|w| w.mac.eq_ignore_ascii_case(&n.mac)) && n.kind == "network" {
            out.push(HotAction::UnplugNic { mac: n.mac.clone() });
        }
    }
    for w in &want.nics {
        if !live.nics.iter().any(|n| n.mac.eq_ignore_ascii_case(&w.mac)) {
            out.push(HotAction::PlugNic(w.clone()));
        }
    }
    if let (Some(cd), Some(live_cd)) = (&want.cdrom, live.disks.iter().find(|d| d.device == DiskDevice::Cdrom)) {
        if cd.path != live_cd.source {
            out.push(HotAction::ChangeCd(cd.path.clone()));
        }
    }
    if want.vcpus != live.vcpus {
        out.push(HotAction::SetVcpus(want.vcpus));
    }
    if want.memory_mib > live.memory_mib {
        out.push(HotAction::PlugMemory(want.memory_mib - live.memory_mib));
    } else if want.memory_mib < live.memory_mib {
        out.push(HotAction::UnplugMemory(live.memory_mib - want.memory_mib));
    }
    out
}

impl Agent {
    /// Makes running `vm` match its configuration as of its `hot_seq`, and reports.
    pub(super) async fn hot_pass(&mut self, vm: &Vm) {
        let seq = vm.runtime.hot_seq;
        if let Some((tried, report)) = self.hot_tried.get(&vm.id).cloned() {
            if tried == seq {
                // Done already: the report again, in case it was not delivered (sent once).
                self.report(vm, report).await;
                return;
            }
        }
        let (node, me) = (self.node.clone(), self.me);
        let Some((want, sizes, by_path)) = self.state.read(|s| {
            let v = s.vms.get(&vm.id)?;
            let (spec, _) = super::domain_spec(&node.images, s, v, me);
            let disks = s.disks_of(v.id);
            let sizes: HashMap<String, u64> =
                disks.iter().map(|d| (node.images.path(&d.file).display().to_string(), d.size_mib)).collect();
            let by_path: HashMap<String, Uuid> =
                disks.iter().map(|d| (node.images.path(&d.file).display().to_string(), d.id)).collect();
            Some((spec, sizes, by_path))
        }) else {
            return;
        };
        let root = node.images.path("").display().to_string();
        let error = match self.hv.live(vm.id).await {
            Ok(live) => {
                let mut actions = hot_actions(&want, &live, |p| p.starts_with(&root));
                // A disk the state has grown beyond its image (read shared: the VM holds it open).
                for l in live.disks.iter().filter(|l| l.device == DiskDevice::Disk) {
                    let Some(path) = l.source.as_ref() else { continue };
                    let Some(&size) = sizes.get(path) else { continue };
                    match node.images.virtual_size_mib_shared(std::path::Path::new(path)).await {
                        Ok(real) if real < size => {
                            actions.push(HotAction::ResizeDisk { target: l.target.clone(), size_mib: size })
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(vm = %vm.config.name, "cannot read the size of {path}: {e}"),
                    }
                }
                self.apply_actions(vm, &actions).await.err()
            }
            Err(e) => Some(e),
        };
        let live = match self.hv.live(vm.id).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(vm = %vm.config.name, "cannot read the domain after changing it: {e}");
                return;
            }
        };
        let devices = LiveDevices {
            memory_mib: live.memory_mib,
            vcpus: live.vcpus,
            disks: live
                .disks
                .iter()
                .filter(|d| d.device == DiskDevice::Disk)
                .filter_map(|d| d.source.as_ref().and_then(|p| by_path.get(p)).copied())
                .collect(),
            nics: live.nics.iter().map(|n| n.mac.to_ascii_lowercase()).collect(),
            cdrom: live
                .disks
                .iter()
                .find(|d| d.device == DiskDevice::Cdrom)
                .and_then(|d| d.source.as_ref())
                .map(|p| node.images.relative(std::path::Path::new(p))),
        };
        let error = error.map(|e| e.to_string());
        if let Some(e) = &error {
            tracing::warn!(vm = %vm.config.name, "could not change the running VM: {e}");
        }
        let report = Observed::Hotplug { seq, error, live: devices };
        self.hot_tried.insert(vm.id, (seq, report.clone()));
        self.report(vm, report).await;
    }

    async fn apply_actions(&mut self, vm: &Vm, actions: &[HotAction]) -> Result<(), DriverError> {
        for a in actions {
            tracing::info!(vm = %vm.config.name, "hot-plug: {a:?}");
            match a {
                HotAction::PlugDisk(d) => self.hv.plug_disk(vm.id, d).await?,
                HotAction::UnplugDisk { target, .. } => self.hv.unplug_disk(vm.id, target).await?,
                HotAction::PlugNic(n) => self.hv.plug_nic(vm.id, n).await?,
                HotAction::UnplugNic { mac } => self.hv.unplug_nic(vm.id, mac).await?,
                HotAction::ChangeCd(path) => self.hv.change_cd(vm.id, path.as_deref()).await?,
                HotAction::SetVcpus(n) => self.hv.set_vcpus(vm.id, *n).await?,
                HotAction::PlugMemory(mib) => self.hv.plug_memory(vm.id, *mib).await?,
                HotAction::UnplugMemory(mib) => self.hv.unplug_memory(vm.id, *mib).await?,
                HotAction::ResizeDisk { target, size_mib } => self.hv.resize_disk(vm.id, target, *size_mib).await?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::domain_xml::{CdromSpec, LiveDisk, LiveNic};

    fn disk(path: &str, target: &str, bus: DiskBus) -> DiskSpec {
        DiskSpec { path: path.into(), target: target.into(), format: "qcow2".into(), bus, serial: None }
    }

    fn live_disk(path: Option<&str>, target: &str, device: DiskDevice) -> LiveDisk {
        LiveDisk {
            target: target.into(),
            bus: "virtio".into(),
            device,
            source: path.map(str::to_string),
            format: None,
            serial: None,
            readonly: false,
            alias: None,
        }
    }

    fn nic(mac: &str) -> LiveNic {
        LiveNic {
            mac: mac.into(),
            kind: "network".into(),
            network: Some("n".into()),
            bridge: None,
            model: None,
            alias: None,
        }
    }

    #[test]
    fn the_difference_is_exactly_what_changed() {
        let want = DomainSpec {
            uuid: Uuid::nil(),
            name: "web1".into(),
            domain_type: "qemu".into(),
            memory_mib: 384,
            vcpus: 2,
            max_vcpus: Some(4),
            max_memory_mib: Some(1024),
            disks: vec![disk("/sd/a", "vda", DiskBus::Virtio), disk("/sd/c", "sdb", DiskBus::Scsi)],
            scsi_controller: true,
            cdrom: Some(CdromSpec { path: Some("/sd/x.iso".into()) }),
            nics: vec![NicSpec { network: "n".into(), mac: "52:54:00:00:00:02".into() }],
            kernel: None,
            serial_log: None,
            vnc_listen: None,
            seed: None,
            boot: Vec::new(),
        };
        let live = LiveDomain {
            uuid: Uuid::nil(),
            name: "web1".into(),
            memory_mib: 256,
            current_memory_mib: 256,
            max_memory_mib: Some(1024),
            memory_slots: Some(16),
            dimms: vec![],
            vcpus: 1,
            max_vcpus: 4,
            disks: vec![
                live_disk(Some("/sd/a"), "vda", DiskDevice::Disk),
                live_disk(Some("/sd/b"), "vdb", DiskDevice::Disk),
                live_disk(Some("/elsewhere/z"), "vdc", DiskDevice::Disk),
                live_disk(None, "hdc", DiskDevice::Cdrom),
            ],
            nics: vec![nic("52:54:00:00:00:01")],
            scsi_controller: true,
        };
        let actions = hot_actions(&want, &live, |p| p.starts_with("/sd/"));
        assert_eq!(
            actions,
            vec![
                HotAction::UnplugDisk { target: "vdb".into(), path: "/sd/b".into() },
                HotAction::PlugDisk(disk("/sd/c", "sda", DiskBus::Scsi)),
                HotAction::UnplugNic { mac: "52:54:00:00:00:01".into() },
                HotAction::PlugNic(NicSpec { network: "n".into(), mac: "52:54:00:00:00:02".into() }),
                HotAction::ChangeCd(Some("/sd/x.iso".into())),
                HotAction::SetVcpus(2),
                HotAction::PlugMemory(128),
            ]
        );
        // A domain that runs what it should needs nothing.
        let same = DomainSpec {
            disks: vec![disk("/sd/a", "vda", DiskBus::Virtio), disk("/sd/b", "vdb", DiskBus::Virtio)],
            nics: vec![NicSpec { network: "n".into(), mac: "52:54:00:00:00:01".into() }],
            cdrom: Some(CdromSpec { path: None }),
            vcpus: 1,
            memory_mib: 256,
            ..want
        };
        assert_eq!(hot_actions(&same, &live, |p| p.starts_with("/sd/")), vec![]);
    }
}
