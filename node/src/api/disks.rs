//! DiskService: the images of the storage domain, each with its VM or "floating".

use std::sync::Arc;

use corral_proto::{CreateDiskRequest, Disk, DiskRef, ListDisksRequest, ListDisksResponse, ResizeDiskRequest};
use corral_raft::command::{Op, Outcome};
use corral_raft::model::auth::Operation;
use corral_raft::validate;
use uuid::Uuid;

use super::authz::Obj;
use crate::now_ms;

use super::vms::disk_to_proto;
use super::{Caller, Handles};
use corral_raft::model::auth::{Perm, Target};
use corral_raft::ClusterError;

pub struct Api(pub Arc<Handles>);

impl Api {
    /// The disks the caller may see: disk.view on the disk (or above), or on its VM.
    pub async fn list(&self, cx: &Caller, req: ListDisksRequest) -> Result<ListDisksResponse, ClusterError> {
        let stale = req.stale;
        let node = self.0.clone();
        let who = self.0.who(cx).await?;
        let disks = self
            .0
            .cluster
            .read(stale, |s| {
                let g = who.grants(s)?;
                Ok::<_, ClusterError>(
                    s.disks
                        .values()
                        .filter(|d| {
                            g.can(Perm::DiskView, Target::Disk(d.id))
                                || d.vm.is_some_and(|v| g.can(Perm::DiskView, Target::Vm(v)))
                        })
                        .map(|d| disk_to_proto(&node, d, d.vm.and_then(|v| s.vms.get(&v))))
                        .collect(),
                )
            })
            .await??;
        Ok(ListDisksResponse { disks })
    }

    /// `disk create`: a floating disk (its image made first, removed when the write is refused).
    pub async fn create(&self, cx: &Caller, req: CreateDiskRequest) -> Result<Disk, ClusterError> {
        let rid = cx.request_id()?;
        let CreateDiskRequest { name, size_mib, format } = req;
        super::vms::require_hotplug_level(&self.0, "disk create")?;
        validate::name("name", &name)?;
        validate::disk_size("size", size_mib)?;
        let format = super::vms::disk_format(&format)?;
        let needs = [(Operation::DiskCreate, Obj::Cluster)];
        self.0.check(cx, &needs).await?;
        if self.0.cluster.read(false, |s| s.find_disk(&name).is_some()).await? {
            return Err(ClusterError::AlreadyExists(format!("disk '{name}' already exists")));
        }
        let id = Uuid::new_v4();
        let disk = corral_raft::model::Disk {
            id,
            name,
            size_mib,
            file: format!("{id}.{format}"),
            format: format.to_string(),
            vm: None,
            created_ms: now_ms(),
            base: None,
        };
        self.0.images.create_as(&disk.file, size_mib, format).await?;
        let made = vec![disk.file.clone()];
        let op = match self.0.permit(cx, &needs, Op::CreateDisk { disk }).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&made).await;
                return Err(e);
            }
        };
        match self.0.cluster.write(rid, op).await {
            Ok(outcome) => self.written(outcome),
            Err(e) => {
                if !matches!(e, ClusterError::Unavailable(_)) {
                    self.0.images.remove(&made).await;
                }
                Err(e)
            }
        }
    }

    pub async fn get(&self, cx: &Caller, req: DiskRef) -> Result<Disk, ClusterError> {
        let DiskRef { disk, stale } = req;
        self.0.check(cx, &[(Operation::DiskShow, Obj::Disk(&disk))]).await?;
        let node = self.0.clone();
        self.0
            .cluster
            .read(stale, |s| s.find_disk(&disk).map(|d| disk_to_proto(&node, d, d.vm.and_then(|v| s.vms.get(&v)))))
            .await?
            .ok_or_else(|| ClusterError::NotFound(format!("disk '{}' not found", corral_raft::error::quote(&disk))))
    }

    /// `disk resize`: grows only; the image of a disk that no running VM has plugged is grown
    /// here first, a running VM's host grows it live.
    pub async fn resize(&self, cx: &Caller, req: ResizeDiskRequest) -> Result<Disk, ClusterError> {
        let rid = cx.request_id()?;
        let ResizeDiskRequest { disk, size_mib } = req;
        super::vms::require_hotplug_level(&self.0, "disk resize")?;
        validate::disk_size("size", size_mib)?;
        let needs = [(Operation::DiskEdit, Obj::Disk(&disk))];
        self.0.check(cx, &needs).await?;
        let (found, live) =
            self.0
                .cluster
                .read(false, |s| {
                    let d = s.find_disk(&disk).cloned();
                    let live =
                        d.as_ref().and_then(|d| d.vm).and_then(|v| s.vms.get(&v)).is_some_and(|v| {
                            v.is_running() && d.as_ref().is_some_and(|d| !v.attachment(d.id).unplugged)
                        });
                    (d, live)
                })
                .await?;
        let found = found
            .ok_or_else(|| ClusterError::NotFound(format!("disk '{}' not found", corral_raft::error::quote(&disk))))?;
        if size_mib < found.size_mib {
            return Err(ClusterError::invalid(
                "size",
                format!("disks only grow: disk '{}' has {} MiB (got {size_mib} MiB)", found.name, found.size_mib),
            ));
        }
        if !live && size_mib > found.size_mib {
            self.0.images.resize(&found.file, &found.format, size_mib).await?;
        }
        let op = self.0.permit(cx, &needs, Op::ResizeDisk { disk: disk.clone(), size_mib }).await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        let out = self.written(outcome)?;
        if live {
            // The VM's host grows it; waited for like any change to a running VM.
            if let Some(vm) = found.vm {
                let v = self.0.cluster.read(true, |s| s.vms.get(&vm).map(|v| v.runtime.hot_seq)).await?;
                if let Some(seq) = v {
                    let done = self.0.cluster.wait_vm(vm, std::time::Duration::from_secs(60), move |v| {
                        v.runtime.hot_done >= seq || !v.is_running()
                    });
                    if let Some(v) = done.await? {
                        if let Some(error) = v.runtime.hot_error.filter(|_| v.runtime.hot_done >= seq) {
                            return Err(ClusterError::FailedPrecondition(format!(
                                "disk '{}' could not be grown while vm '{}' runs: {error}",
                                found.name, v.config.name
                            )));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// `disk delete`: floating disks only; the image goes once the record has.
    pub async fn delete(&self, cx: &Caller, req: DiskRef) -> Result<Disk, ClusterError> {
        let rid = cx.request_id()?;
        let disk = req.disk;
        super::vms::require_hotplug_level(&self.0, "disk delete")?;
        let needs = [(Operation::DiskEdit, Obj::Disk(&disk))];
        let op = self.0.permit(cx, &needs, Op::DeleteDisk { disk: disk.clone() }).await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        let Outcome::Disk(d) = &outcome else {
            return Err(ClusterError::Internal("the write returned no disk".into()));
        };
        self.0.images.remove(std::slice::from_ref(&d.file)).await;
        self.written(outcome)
    }

    fn written(&self, outcome: Outcome) -> Result<Disk, ClusterError> {
        let Outcome::Disk(d) = outcome else { return Err(ClusterError::Internal("the write returned no disk".into())) };
        let state = self.0.cluster.state()?;
        Ok(state.read(|s| disk_to_proto(&self.0, &d, d.vm.and_then(|v| s.vms.get(&v)))))
    }
}
