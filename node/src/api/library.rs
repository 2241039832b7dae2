//! LibraryService (cluster level 5): ISOs streamed into the storage domain, templates made of
//! down VMs (their disks copied into read-only bases), service offerings. Files are made before
//! the command that records them and removed when it is refused, or after a deletion.

use std::sync::Arc;

use corral_proto::{
    CreateTemplateRequest, EditOfferingRequest, Iso, IsoHeader, IsoUpload, LibraryRef, ListIsosResponse,
    ListLibraryRequest, ListOfferingsResponse, ListTemplatesResponse, Offering, Template, TemplateDisk,
};
use corral_raft::command::{Op, Outcome};
use corral_raft::model::auth::{Grants, Operation, Perm, Target};
use corral_raft::model::{self, ClusterState, OfferingChanges, LIBRARY_LEVEL, MAX_ISO_BYTES};
use corral_raft::{validate, ClusterError};
use futures::{Stream, StreamExt};
use sha2::Digest;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::authz::Obj;
use super::{Caller, Handles};
use crate::now_ms;

pub struct Api(pub Arc<Handles>);

/// The library's commands need every member to read them.
pub fn require_library_level(node: &Handles, what: &str) -> Result<(), ClusterError> {
    let level = node.cluster.state()?.read(|s| s.cluster.as_ref().map_or(0, |c| c.level));
    if level < LIBRARY_LEVEL {
        return Err(ClusterError::FailedPrecondition(format!(
            "{what} needs cluster level {LIBRARY_LEVEL} (it is at {level}): run `corral cluster upgrade` once every \
             member runs this release"
        )));
    }
    Ok(())
}

pub fn iso_to_proto(s: &ClusterState, g: &Grants, i: &model::Iso) -> Iso {
    Iso {
        id: i.id.to_string(),
        name: i.name.clone(),
        description: i.description.clone(),
        file: i.file.clone(),
        size_bytes: i.size_bytes,
        sha256: i.sha256.clone(),
        bootable: i.bootable,
        os: i.os.clone(),
        created_ms: i.created_ms,
        used_by: s.vms_using_cd(&i.file).into_iter().filter(|n| sees_vm(s, g, n)).collect(),
    }
}

pub fn template_to_proto(s: &ClusterState, g: &Grants, t: &model::Template) -> Template {
    Template {
        id: t.id.to_string(),
        name: t.name.clone(),
        description: t.description.clone(),
        from_vm: t.from_vm.clone(),
        created_ms: t.created_ms,
        memory_mib: t.config.memory_mib,
        vcpus: t.config.vcpus,
        os: t.config.os.clone(),
        disks: t
            .disks
            .iter()
            .map(|d| TemplateDisk {
                id: d.id.to_string(),
                name: d.name.clone(),
                file: d.file.clone(),
                size_mib: d.size_mib,
                format: d.format.clone(),
                bootable: d.attachment.bootable,
            })
            .collect(),
        nics: t.config.nics.iter().map(|n| n.network.clone()).collect(),
        ha: t.config.ha.enabled,
        stateless: t.config.stateless,
        cloud_init: t.config.cloud_init.is_some(),
        thin_users: s
            .thin_users(t)
            .into_iter()
            .filter(|u| match u.split_once(' ') {
                Some(("vm", n)) => sees_vm(s, g, n),
                Some((_, n)) => s.find_disk(n).is_some_and(|d| g.can(Perm::DiskView, Target::Disk(d.id))),
                None => false,
            })
            .collect(),
    }
}

pub fn offering_to_proto(s: &ClusterState, g: &Grants, o: &model::Offering) -> Offering {
    let mut vms: Vec<String> = s
        .vms
        .values()
        .filter(|v| v.config.offering.as_deref() == Some(o.name.as_str()))
        .filter(|v| g.can(Perm::VmView, Target::Vm(v.id)))
        .map(|v| v.config.name.clone())
        .collect();
    vms.sort();
    Offering {
        id: o.id.to_string(),
        name: o.name.clone(),
        description: o.description.clone(),
        vcpus: o.vcpus,
        memory_mib: o.memory_mib,
        ha: o.ha,
        created_ms: o.created_ms,
        vms,
    }
}

/// Whether the caller may see VM `name` (a VM they may not see does not exist for them, also
/// in the lists of who uses an ISO, a template or an offering).
fn sees_vm(s: &ClusterState, g: &Grants, name: &str) -> bool {
    s.find_vm(name).is_some_and(|v| g.can(Perm::VmView, Target::Vm(v.id)))
}

/// The most bytes one upload message may carry.
const MAX_CHUNK: usize = 4 << 20;

impl Api {
    async fn write(&self, cx: &Caller, needs: &[(Operation, Obj<'_>)], op: Op) -> Result<Outcome, ClusterError> {
        let rid = cx.request_id()?;
        let op = self.0.permit(cx, needs, op).await?;
        self.0.cluster.write(rid, op).await
    }

    /// `iso add`: the header first, then the bytes, written to a `.part` file that becomes the
    /// ISO only when exactly the declared size arrived, it is an ISO 9660 image, and the cluster
    /// recorded it. Anything else leaves no file behind.
    pub async fn add_iso<S>(&self, cx: &Caller, mut upload: S) -> Result<Iso, ClusterError>
    where
        S: Stream<Item = Result<IsoUpload, tonic::Status>> + Unpin,
    {
        require_library_level(&self.0, "iso add")?;
        let first = upload
            .next()
            .await
            .ok_or_else(|| ClusterError::invalid("header", "the upload sent nothing"))?
            .map_err(|e| ClusterError::invalid("upload", e.message().to_string()))?;
        let IsoHeader { name, description, bootable, os, size_bytes } =
            first.header.ok_or_else(|| ClusterError::invalid("header", "the first message must hold the header"))?;
        validate::name("name", &name)?;
        validate::text("description", &description)?;
        if !os.is_empty() {
            validate::os(&os)?;
        }
        if size_bytes == 0 || size_bytes > MAX_ISO_BYTES {
            return Err(ClusterError::invalid(
                "size",
                format!("an ISO must be 1 byte to {} GiB (got {size_bytes} bytes)", MAX_ISO_BYTES >> 30),
            ));
        }
        let free = self.0.images.free_mib()?;
        if size_bytes.div_ceil(1 << 20) + 64 > free {
            return Err(ClusterError::FailedPrecondition(format!(
                "the storage domain has {free} MiB free and the ISO needs {} MiB (and 64 MiB to spare)",
                size_bytes.div_ceil(1 << 20)
            )));
        }
        let needs = [(Operation::IsoAdd, Obj::Cluster)];
        self.0.check(cx, &needs).await?;
        if self.0.cluster.read(false, |s| s.library.iso(&name).is_some()).await? {
            return Err(ClusterError::AlreadyExists(format!("iso '{name}' already exists")));
        }
        let id = Uuid::new_v4();
        let file = format!("iso-{id}.iso");
        let part = self.0.images.path(&format!("{file}.part"));
        let received = receive(&part, first.data, &mut upload, size_bytes).await;
        let sha256 = match received {
            Ok(sum) => sum,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
        };
        let path = self.0.images.path(&file);
        if let Err(e) = tokio::fs::rename(&part, &path).await {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(ClusterError::Internal(format!("cannot put the ISO at {}: {e}", path.display())));
        }
        let iso = model::Iso {
            id,
            name,
            description,
            file: file.clone(),
            size_bytes,
            sha256,
            bootable,
            os,
            created_ms: now_ms(),
        };
        match self.write(cx, &needs, Op::AddIso { iso }).await {
            Ok(Outcome::Iso(iso)) => self.shown(cx, move |s, g| iso_to_proto(s, g, &iso)).await,
            Ok(_) => Err(ClusterError::Internal("iso add returned no ISO".into())),
            Err(e) => {
                if !matches!(e, ClusterError::Unavailable(_)) {
                    self.0.images.remove(&[file]).await;
                }
                Err(e)
            }
        }
    }

    /// Everyone logged in sees the ISOs.
    pub async fn list_isos(&self, cx: &Caller, req: ListLibraryRequest) -> Result<ListIsosResponse, ClusterError> {
        let who = self.0.who(cx).await?;
        let isos =
            self.seen(&who, req.stale, |s, g| s.library.isos.values().map(|i| iso_to_proto(s, g, i)).collect()).await?;
        Ok(ListIsosResponse { isos })
    }

    pub async fn get_iso(&self, cx: &Caller, req: LibraryRef) -> Result<Iso, ClusterError> {
        let who = self.0.who(cx).await?;
        let LibraryRef { name, stale } = req;
        self.seen(&who, stale, |s, g| s.library.iso(&name).map(|i| iso_to_proto(s, g, i)))
            .await?
            .ok_or_else(|| corral_raft::apply::library::iso_not_found(&name))
    }

    pub async fn delete_iso(&self, cx: &Caller, req: LibraryRef) -> Result<Iso, ClusterError> {
        require_library_level(&self.0, "iso delete")?;
        let name = req.name;
        let iso = self.get_iso(cx, LibraryRef { name: name.clone(), stale: false }).await?;
        let op = Op::DeleteIso { iso: name.clone() };
        let out = self.write(cx, &[(Operation::IsoDelete, Obj::Iso(&name))], op).await?;
        if let Outcome::Removed { files } = out {
            self.0.images.remove(&files).await;
        }
        Ok(iso)
    }

    /// `template create NAME --from-vm VM`: the down VM's disks copied into read-only bases,
    /// then recorded with its configuration.
    pub async fn create_template(&self, cx: &Caller, req: CreateTemplateRequest) -> Result<Template, ClusterError> {
        require_library_level(&self.0, "template create")?;
        let CreateTemplateRequest { name, vm, description } = req;
        validate::name("name", &name)?;
        validate::text("description", &description)?;
        let needs = [(Operation::TemplateCreate, Obj::Cluster), (Operation::VmShow, Obj::Vm(&vm))];
        self.0.check(cx, &needs).await?;
        let found = self
            .0
            .cluster
            .read(false, |s| {
                let taken = s.library.template(&name).is_some();
                s.find_vm(&vm).map(|v| {
                    let disks: Vec<model::Disk> =
                        v.config.disks.iter().filter_map(|d| s.disks.get(d)).cloned().collect();
                    (v.runtime.status, disks, taken)
                })
            })
            .await?;
        let (status, sources, taken) = found.ok_or_else(|| ClusterError::vm_not_found(&vm))?;
        if taken {
            return Err(ClusterError::AlreadyExists(format!("template '{name}' already exists")));
        }
        if status != model::VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vm}' is {}; a template is made of a down VM: shut it down first",
                status.as_str()
            )));
        }
        let (mut disks, mut made) = (Vec::new(), Vec::new());
        for (i, src) in sources.iter().enumerate() {
            let id = Uuid::new_v4();
            let file = format!("base-{id}.qcow2");
            if let Err(e) = self.0.images.make_base(&src.file, &file).await {
                self.0.images.remove(&made).await;
                return Err(e);
            }
            made.push(file.clone());
            disks.push(model::TemplateDisk {
                id,
                name: format!("{name}-base{i}"),
                file,
                size_mib: src.size_mib,
                format: "qcow2".into(),
                attachment: model::Attachment::default(),
            });
        }
        let template = model::Template {
            id: Uuid::new_v4(),
            name,
            description,
            config: Box::new(model::Vm::new(Uuid::nil(), "", 1, 1, 0).config),
            disks,
            from_vm: vm.clone(),
            created_ms: now_ms(),
        };
        match self.write(cx, &needs, Op::CreateTemplate { vm: vm.clone(), template }).await {
            Ok(Outcome::Template(t)) => self.shown(cx, move |s, g| template_to_proto(s, g, &t)).await,
            Ok(_) => Err(ClusterError::Internal("template create returned no template".into())),
            Err(e) => {
                if !matches!(e, ClusterError::Unavailable(_)) {
                    self.0.images.remove(&made).await;
                }
                Err(e)
            }
        }
    }

    /// The templates the caller may use or manage.
    pub async fn list_templates(
        &self,
        cx: &Caller,
        req: ListLibraryRequest,
    ) -> Result<ListTemplatesResponse, ClusterError> {
        let who = self.0.who(cx).await?;
        let templates = self
            .seen(&who, req.stale, |s, g| {
                s.library
                    .templates
                    .values()
                    .filter(|t| {
                        g.can(Perm::TemplateUse, Target::Template(t.id))
                            || g.can(Perm::TemplateCreate, Target::Template(t.id))
                    })
                    .map(|t| template_to_proto(s, g, t))
                    .collect()
            })
            .await?;
        Ok(ListTemplatesResponse { templates })
    }

    pub async fn get_template(&self, cx: &Caller, req: LibraryRef) -> Result<Template, ClusterError> {
        let LibraryRef { name, stale } = req;
        let who = self.0.check(cx, &[(Operation::TemplateShow, Obj::Template(&name))]).await?;
        self.seen(&who, stale, |s, g| s.library.template(&name).map(|t| template_to_proto(s, g, t)))
            .await?
            .ok_or_else(|| corral_raft::apply::library::template_not_found(&name))
    }

    pub async fn delete_template(&self, cx: &Caller, req: LibraryRef) -> Result<Template, ClusterError> {
        require_library_level(&self.0, "template delete")?;
        let name = req.name;
        let needs = [(Operation::TemplateDelete, Obj::Template(&name))];
        let who = self.0.check(cx, &needs).await?;
        let t = self
            .seen(&who, false, |s, g| s.library.template(&name).map(|t| template_to_proto(s, g, t)))
            .await?
            .ok_or_else(|| corral_raft::apply::library::template_not_found(&name))?;
        let out = self.write(cx, &needs, Op::DeleteTemplate { template: name.clone() }).await?;
        if let Outcome::Removed { files } = out {
            self.0.images.remove(&files).await;
        }
        Ok(t)
    }

    pub async fn create_offering(&self, cx: &Caller, req: Offering) -> Result<Offering, ClusterError> {
        require_library_level(&self.0, "offering create")?;
        let offering = model::Offering {
            id: Uuid::new_v4(),
            name: req.name,
            description: req.description,
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            ha: req.ha,
            created_ms: now_ms(),
        };
        validate::name("name", &offering.name)?;
        validate::vcpus(offering.vcpus)?;
        validate::memory_mib(offering.memory_mib)?;
        let out = self.write(cx, &[(Operation::OfferingManage, Obj::Cluster)], Op::CreateOffering { offering }).await?;
        self.offering_out(cx, out).await
    }

    async fn offering_out(&self, cx: &Caller, out: Outcome) -> Result<Offering, ClusterError> {
        let Outcome::Offering(o) = out else { return Err(ClusterError::Internal("no offering returned".into())) };
        self.shown(cx, move |s, g| offering_to_proto(s, g, &o)).await
    }

    /// `show` of the state as `who` may see it (a linearizable read unless `stale`).
    async fn seen<T>(
        &self,
        who: &super::authz::Who,
        stale: bool,
        show: impl FnOnce(&ClusterState, &Grants) -> T,
    ) -> Result<T, ClusterError> {
        self.0.cluster.read(stale, |s| Ok::<_, ClusterError>(show(s, &who.grants(s)?))).await?
    }

    /// What a write returned, as the caller may see it (in this node's copy of the state).
    async fn shown<T>(&self, cx: &Caller, show: impl FnOnce(&ClusterState, &Grants) -> T) -> Result<T, ClusterError> {
        let who = self.0.who(cx).await?;
        self.0.cluster.state()?.read(|s| Ok(show(s, &who.grants(s)?)))
    }

    /// Everyone logged in sees the offerings.
    pub async fn list_offerings(
        &self,
        cx: &Caller,
        req: ListLibraryRequest,
    ) -> Result<ListOfferingsResponse, ClusterError> {
        let who = self.0.who(cx).await?;
        let offerings = self
            .seen(&who, req.stale, |s, g| s.library.offerings.values().map(|o| offering_to_proto(s, g, o)).collect())
            .await?;
        Ok(ListOfferingsResponse { offerings })
    }

    pub async fn get_offering(&self, cx: &Caller, req: LibraryRef) -> Result<Offering, ClusterError> {
        let who = self.0.who(cx).await?;
        let LibraryRef { name, stale } = req;
        self.seen(&who, stale, |s, g| s.library.offering(&name).map(|o| offering_to_proto(s, g, o)))
            .await?
            .ok_or_else(|| corral_raft::apply::library::offering_not_found(&name))
    }

    pub async fn edit_offering(&self, cx: &Caller, req: EditOfferingRequest) -> Result<Offering, ClusterError> {
        require_library_level(&self.0, "offering edit")?;
        let EditOfferingRequest { offering, description, vcpus, memory_mib, ha } = req;
        let changes = OfferingChanges { description, vcpus, memory_mib, ha };
        let op = Op::EditOffering { offering, changes };
        let out = self.write(cx, &[(Operation::OfferingManage, Obj::Cluster)], op).await?;
        self.offering_out(cx, out).await
    }

    pub async fn delete_offering(&self, cx: &Caller, req: LibraryRef) -> Result<Offering, ClusterError> {
        require_library_level(&self.0, "offering delete")?;
        let out = self
            .write(cx, &[(Operation::OfferingManage, Obj::Cluster)], Op::DeleteOffering { offering: req.name })
            .await?;
        self.offering_out(cx, out).await
    }
}

/// Writes the upload to `part`: `first` and then every message's bytes, exactly `size` of them;
/// returns their SHA-256 (hex) once the file is on disk and is an ISO 9660 image.
async fn receive<S>(part: &std::path::Path, first: Vec<u8>, upload: &mut S, size: u64) -> Result<String, ClusterError>
where
    S: Stream<Item = Result<IsoUpload, tonic::Status>> + Unpin,
{
    let io = |e: std::io::Error| ClusterError::Internal(format!("cannot write {}: {e}", part.display()));
    let mut f = tokio::fs::File::create(part).await.map_err(io)?;
    let mut hash = sha2::Sha256::new();
    let (mut got, mut chunk) = (0u64, first);
    loop {
        if chunk.len() > MAX_CHUNK {
            return Err(ClusterError::invalid("data", format!("a message may carry at most {MAX_CHUNK} bytes")));
        }
        got += chunk.len() as u64;
        if got > size {
            return Err(ClusterError::invalid(
                "data",
                format!("the upload sent more than the {size} bytes its header declared"),
            ));
        }
        hash.update(&chunk);
        f.write_all(&chunk).await.map_err(io)?;
        match upload.next().await {
            None => break,
            Some(Ok(m)) if m.header.is_none() => chunk = m.data,
            Some(Ok(_)) => return Err(ClusterError::invalid("header", "only the first message may hold a header")),
            Some(Err(e)) => return Err(ClusterError::Unavailable(format!("the upload broke off: {}", e.message()))),
        }
    }
    if got != size {
        return Err(ClusterError::invalid(
            "data",
            format!("the upload ended after {got} of the {size} bytes declared"),
        ));
    }
    f.sync_all().await.map_err(io)?;
    drop(f);
    // An ISO 9660 image names itself "CD001" in its first volume descriptor (sector 16).
    let mut magic = [0u8; 6];
    let ok = size >= 16 * 2048 + 6 && {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut r = tokio::fs::File::open(part).await.map_err(io)?;
        r.seek(std::io::SeekFrom::Start(16 * 2048)).await.map_err(io)?;
        r.read_exact(&mut magic).await.is_ok() && &magic[1..6] == b"CD001"
    };
    if !ok {
        return Err(ClusterError::invalid(
            "file",
            "is not an ISO 9660 image (no CD001 volume descriptor at sector 16)",
        ));
    }
    Ok(hex::encode(hash.finalize()))
}
