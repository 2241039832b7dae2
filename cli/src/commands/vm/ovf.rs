//! `vm export` and `vm import`: a VM out of and into the cluster as an OVF document, on stdout
//! or in a file.

use std::path::{Path, PathBuf};

use anyhow::Result;
use corral_proto::v1 as proto;
use proto::vm_service_client::VmServiceClient;

use super::print::vm_fields;
use crate::commands::Context;
use crate::files;
use crate::output::{self, Format};
use crate::progress::Progress;
use crate::views::{ExportView, ImportView, OvfDocumentView};

pub(super) async fn export(ctx: &Context, vm: String, file: Option<PathBuf>, force: bool) -> Result<()> {
    if let Some(file) = &file {
        files::check_writable(file, force)?;
    }
    let request = proto::VmRef { vm };
    let document = ctx
        .nodes
        .read(|channel| {
            let request = request.clone();
            async move { VmServiceClient::new(channel).export(request).await }
        })
        .await?;
    let document = OvfDocumentView::from(document);
    let Some(file) = file else {
        return crate::commands::ovf::print_document(ctx.format, document);
    };
    files::write_text(&file, &document.xml, force)?;
    let view = ExportView {
        vm_id: document.vm_id,
        name: document.name,
        node: document.node,
        file: file.display().to_string(),
        bytes: document.xml.len() as u64,
    };
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => {
            output::print(&format!("VM {} exported to {} ({} bytes)\n", view.name, view.file, view.bytes))?
        }
    }
    Ok(())
}

pub(super) async fn import(ctx: &Context, file: &Path, name: Option<String>, clone: bool, wait: bool) -> Result<()> {
    let xml = files::read_text(file)?;
    let mut progress = Progress::stderr();
    let call = ctx.nodes.write(|channel, id| {
        let request = id.tag(proto::ImportVmRequest {
            xml: xml.clone(),
            name: name.clone(),
            clone,
            request_id: id.as_str().to_string(),
        });
        async move { VmServiceClient::new(channel).import(request).await }
    });
    let response = if wait {
        let what = if clone { ", copying its disks" } else { "" };
        progress.during(&format!("importing a VM from {}{what}", file.display()), call).await?
    } else {
        call.await?
    };
    let view = ImportView::from(response);
    progress.finish(&format!("imported VM {}", view.vm.name));
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => {
            output::print(&vm_fields(view.vm).render())?;
            for part in view.ignored {
                eprintln!("ignored: {part}");
            }
        }
    }
    Ok(())
}
