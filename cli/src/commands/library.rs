//! `corral iso`, `corral template`, `corral offering`: the library (cluster level 5). An ISO is
//! streamed to the node in 1 MiB messages; the node writes it into the storage domain.

use std::path::Path;

use anyhow::{Context as _, Result};
use corral_proto::v1 as proto;
use proto::library_service_client::LibraryServiceClient;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::Context;
use crate::args::{IsoCommand, OfferingCommand, TemplateCommand};
use crate::output::{self, Fields, Format, Table};
use crate::progress::Progress;
use crate::size::format_mib;

const CHUNK: usize = 1 << 20;

#[derive(Debug, Serialize)]
pub struct IsoView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub bootable: bool,
    pub os: String,
    pub used_by: Vec<String>,
}

impl From<proto::Iso> for IsoView {
    fn from(i: proto::Iso) -> Self {
        IsoView {
            id: i.id,
            name: i.name,
            description: i.description,
            file: i.file,
            size_bytes: i.size_bytes,
            sha256: i.sha256,
            bootable: i.bootable,
            os: i.os,
            used_by: i.used_by,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TemplateView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub from_vm: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub os: String,
    pub disks: Vec<String>,
    pub size_mib: u64,
    pub nics: Vec<String>,
    pub ha: bool,
    pub stateless: bool,
    pub cloud_init: bool,
    pub thin_users: Vec<String>,
}

impl From<proto::Template> for TemplateView {
    fn from(t: proto::Template) -> Self {
        TemplateView {
            id: t.id,
            name: t.name,
            description: t.description,
            from_vm: t.from_vm,
            memory_mib: t.memory_mib,
            vcpus: t.vcpus,
            os: t.os,
            size_mib: t.disks.iter().map(|d| d.size_mib).sum(),
            disks: t.disks.into_iter().map(|d| d.file).collect(),
            nics: t.nics,
            ha: t.ha,
            stateless: t.stateless,
            cloud_init: t.cloud_init,
            thin_users: t.thin_users,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OfferingView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub ha: bool,
    pub vms: Vec<String>,
}

impl From<proto::Offering> for OfferingView {
    fn from(o: proto::Offering) -> Self {
        OfferingView {
            id: o.id,
            name: o.name,
            description: o.description,
            vcpus: o.vcpus,
            memory_mib: o.memory_mib,
            ha: o.ha,
            vms: o.vms,
        }
    }
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(", ")
    }
}

fn print_iso(format: Format, i: IsoView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&i)?,
        Format::Table => {
            let f = Fields::new()
                .add("name", i.name)
                .add("id", i.id)
                .add("description", i.description)
                .add("size", format_mib(i.size_bytes.div_ceil(1 << 20)))
                .add("bootable", if i.bootable { "yes" } else { "no" })
                .add("os", if i.os.is_empty() { "-".to_string() } else { i.os })
                .add("sha256", i.sha256)
                .add("file", i.file)
                .add("used by", list_or_dash(&i.used_by));
            output::print(&f.render())?;
        }
    }
    Ok(())
}

fn print_template(format: Format, t: TemplateView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&t)?,
        Format::Table => {
            let f = Fields::new()
                .add("name", t.name)
                .add("id", t.id)
                .add("description", t.description)
                .add("from vm", t.from_vm)
                .add("memory", format_mib(t.memory_mib))
                .add("vcpus", t.vcpus.to_string())
                .add("os", t.os)
                .add("bases", list_or_dash(&t.disks))
                .add("size", format_mib(t.size_mib))
                .add("nics", list_or_dash(&t.nics))
                .add("ha", if t.ha { "yes" } else { "no" })
                .add("stateless", if t.stateless { "yes" } else { "no" })
                .add("cloud-init", if t.cloud_init { "yes" } else { "no" })
                .add("thin users", list_or_dash(&t.thin_users));
            output::print(&f.render())?;
        }
    }
    Ok(())
}

fn print_offering(format: Format, o: OfferingView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&o)?,
        Format::Table => {
            let f = Fields::new()
                .add("name", o.name)
                .add("id", o.id)
                .add("description", o.description)
                .add("vcpus", o.vcpus.to_string())
                .add("memory", format_mib(o.memory_mib))
                .add("ha", if o.ha { "yes" } else { "no" })
                .add("vms", list_or_dash(&o.vms));
            output::print(&f.render())?;
        }
    }
    Ok(())
}

/// The upload's messages: the header, then the file in 1 MiB pieces, read as they are sent.
fn upload(path: &Path, header: proto::IsoHeader) -> impl futures::Stream<Item = proto::IsoUpload> + Send + 'static {
    let path = path.to_path_buf();
    let first = proto::IsoUpload { header: Some(header), data: Vec::new() };
    let rest = futures::stream::unfold(None::<tokio::fs::File>, move |file| {
        let path = path.clone();
        async move {
            let mut file = match file {
                Some(f) => f,
                None => tokio::fs::File::open(&path).await.ok()?,
            };
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0;
            // Fill the piece (a read may return less).
            while n < CHUNK {
                match file.read(&mut buf[n..]).await {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => return None,
                }
            }
            if n == 0 {
                return None;
            }
            buf.truncate(n);
            Some((proto::IsoUpload { header: None, data: buf }, Some(file)))
        }
    });
    futures::stream::once(async move { first }).chain(rest)
}

use futures::StreamExt;

pub async fn iso(ctx: &Context, command: IsoCommand) -> Result<()> {
    match command {
        IsoCommand::Add { name, file, bootable, os, description } => {
            let meta = std::fs::metadata(&file).with_context(|| format!("--file: cannot read {}", file.display()))?;
            if !meta.is_file() {
                anyhow::bail!("--file: {} is not a file", file.display());
            }
            let header =
                proto::IsoHeader { name, description, bootable, os: os.unwrap_or_default(), size_bytes: meta.len() };
            let i = ctx
                .nodes
                .write_long(|channel, id| {
                    let request = id.tag(upload(&file, header.clone()));
                    async move { LibraryServiceClient::new(channel).add_iso(request).await }
                })
                .await?;
            print_iso(ctx.format, i.into())
        }
        IsoCommand::List => {
            let request = proto::ListLibraryRequest { stale: ctx.stale };
            let r = ctx.nodes.read(|c| async move { LibraryServiceClient::new(c).list_isos(request).await }).await?;
            let isos: Vec<IsoView> = r.isos.into_iter().map(IsoView::from).collect();
            match ctx.format {
                Format::Json => output::print_json(&isos)?,
                Format::Table => {
                    let mut t = Table::new(&["NAME", "SIZE", "BOOTABLE", "OS", "USED BY", "DESCRIPTION"]);
                    for i in isos {
                        t.row(vec![
                            i.name,
                            format_mib(i.size_bytes.div_ceil(1 << 20)),
                            if i.bootable { "yes" } else { "no" }.into(),
                            if i.os.is_empty() { "-".into() } else { i.os },
                            list_or_dash(&i.used_by),
                            i.description,
                        ]);
                    }
                    output::print(&t.render())?;
                }
            }
            Ok(())
        }
        IsoCommand::Show { iso } => {
            let request = proto::LibraryRef { name: iso, stale: ctx.stale };
            let i = ctx
                .nodes
                .read(|c| {
                    let request = request.clone();
                    async move { LibraryServiceClient::new(c).get_iso(request).await }
                })
                .await?;
            print_iso(ctx.format, i.into())
        }
        IsoCommand::Delete { iso } => {
            let request = proto::LibraryRef { name: iso, stale: false };
            let i: IsoView = ctx
                .nodes
                .write(|c, id| {
                    let request = id.tag(request.clone());
                    async move { LibraryServiceClient::new(c).delete_iso(request).await }
                })
                .await?
                .into();
            deleted(ctx.format, "ISO", &i.name, &i)
        }
    }
}

fn deleted<T: Serialize>(format: Format, what: &str, name: &str, item: &T) -> Result<()> {
    match format {
        Format::Json => output::print_json(item)?,
        Format::Table => output::print(&format!("{what} {name} deleted\n"))?,
    }
    Ok(())
}

pub async fn template(ctx: &Context, command: TemplateCommand) -> Result<()> {
    match command {
        TemplateCommand::Create { name, from_vm, description, wait } => {
            let mut progress = Progress::stderr();
            let what = if wait {
                Some(format!("making template {name} of {from_vm}: {}", super::vm::copying(ctx, &from_vm).await))
            } else {
                None
            };
            let request = proto::CreateTemplateRequest { name, vm: from_vm, description };
            let call = ctx.nodes.write_long(|c, id| {
                let request = id.tag(request.clone());
                async move { LibraryServiceClient::new(c).create_template(request).await }
            });
            let t = match &what {
                Some(what) => progress.during(what, call).await?,
                None => call.await?,
            };
            progress.finish(&format!("template {} made", t.name));
            print_template(ctx.format, t.into())
        }
        TemplateCommand::List => {
            let request = proto::ListLibraryRequest { stale: ctx.stale };
            let r =
                ctx.nodes.read(|c| async move { LibraryServiceClient::new(c).list_templates(request).await }).await?;
            let ts: Vec<TemplateView> = r.templates.into_iter().map(TemplateView::from).collect();
            match ctx.format {
                Format::Json => output::print_json(&ts)?,
                Format::Table => {
                    let mut tb = Table::new(&["NAME", "MEMORY", "VCPUS", "DISKS", "FROM VM", "THIN USERS"]);
                    for t in ts {
                        tb.row(vec![
                            t.name,
                            format_mib(t.memory_mib),
                            t.vcpus.to_string(),
                            format!("{} ({})", t.disks.len(), format_mib(t.size_mib)),
                            t.from_vm,
                            t.thin_users.len().to_string(),
                        ]);
                    }
                    output::print(&tb.render())?;
                }
            }
            Ok(())
        }
        TemplateCommand::Show { template } => {
            let request = proto::LibraryRef { name: template, stale: ctx.stale };
            let t = ctx
                .nodes
                .read(|c| {
                    let request = request.clone();
                    async move { LibraryServiceClient::new(c).get_template(request).await }
                })
                .await?;
            print_template(ctx.format, t.into())
        }
        TemplateCommand::Delete { template } => {
            let request = proto::LibraryRef { name: template, stale: false };
            let t: TemplateView = ctx
                .nodes
                .write(|c, id| {
                    let request = id.tag(request.clone());
                    async move { LibraryServiceClient::new(c).delete_template(request).await }
                })
                .await?
                .into();
            deleted(ctx.format, "Template", &t.name.clone(), &t)
        }
    }
}

pub async fn offering(ctx: &Context, command: OfferingCommand) -> Result<()> {
    let o: proto::Offering = match command {
        OfferingCommand::Create { name, vcpus, memory, ha, description } => {
            let request = proto::Offering { name, vcpus, memory_mib: memory, ha, description, ..Default::default() };
            ctx.nodes
                .write(|c, id| {
                    let request = id.tag(request.clone());
                    async move { LibraryServiceClient::new(c).create_offering(request).await }
                })
                .await?
        }
        OfferingCommand::List => {
            let request = proto::ListLibraryRequest { stale: ctx.stale };
            let r =
                ctx.nodes.read(|c| async move { LibraryServiceClient::new(c).list_offerings(request).await }).await?;
            let os: Vec<OfferingView> = r.offerings.into_iter().map(OfferingView::from).collect();
            match ctx.format {
                Format::Json => output::print_json(&os)?,
                Format::Table => {
                    let mut t = Table::new(&["NAME", "VCPUS", "MEMORY", "HA", "VMS", "DESCRIPTION"]);
                    for o in os {
                        t.row(vec![
                            o.name,
                            o.vcpus.to_string(),
                            format_mib(o.memory_mib),
                            if o.ha { "yes" } else { "no" }.into(),
                            o.vms.len().to_string(),
                            o.description,
                        ]);
                    }
                    output::print(&t.render())?;
                }
            }
            return Ok(());
        }
        OfferingCommand::Show { offering } => {
            let request = proto::LibraryRef { name: offering, stale: ctx.stale };
            ctx.nodes
                .read(|c| {
                    let request = request.clone();
                    async move { LibraryServiceClient::new(c).get_offering(request).await }
                })
                .await?
        }
        OfferingCommand::Edit { offering, vcpus, memory, ha, description } => {
            let request = proto::EditOfferingRequest { offering, vcpus, memory_mib: memory, ha, description };
            ctx.nodes
                .write(|c, id| {
                    let request = id.tag(request.clone());
                    async move { LibraryServiceClient::new(c).edit_offering(request).await }
                })
                .await?
        }
        OfferingCommand::Delete { offering } => {
            let request = proto::LibraryRef { name: offering, stale: false };
            let o: OfferingView = ctx
                .nodes
                .write(|c, id| {
                    let request = id.tag(request.clone());
                    async move { LibraryServiceClient::new(c).delete_offering(request).await }
                })
                .await?
                .into();
            return deleted(ctx.format, "Offering", &o.name.clone(), &o);
        }
    };
    print_offering(ctx.format, o.into())
}
