//! `vm disk`, `vm nic` and `vm cd`: a VM's devices, changed in the running VM when it runs (the
//! command returns once its host has done it, or says why it could not).

use anyhow::Result;
use corral_proto::v1 as proto;
use proto::vm_service_client::VmServiceClient;

use super::change;
use super::print::print_vm;
use crate::args::{VmDiskCommand, VmNicCommand};
use crate::commands::Context;

pub(super) async fn disk(ctx: &Context, command: VmDiskCommand) -> Result<()> {
    let vm = match command {
        VmDiskCommand::Add { vm, size, name, format, interface, bootable, optional } => {
            let request = proto::AddDiskRequest {
                vm,
                size_mib: size,
                name: name.unwrap_or_default(),
                format: format.unwrap_or_default(),
                interface: interface.map(i32::from).unwrap_or_default(),
                bootable,
                optional,
                request_id: String::new(),
            };
            change(ctx, request, |mut c, r| async move { c.add_disk(r).await }).await?
        }
        VmDiskCommand::Attach { vm, disk, interface, bootable, optional, unplugged } => {
            let interface = interface.map(i32::from).unwrap_or_default();
            let request = proto::AttachDiskRequest { vm, disk, interface, bootable, optional, unplugged };
            change(ctx, request, |mut c, r| async move { c.attach_disk(r).await }).await?
        }
        VmDiskCommand::Detach { vm, disk } => {
            let request = proto::VmDiskRequest { vm, disk };
            change(ctx, request, |mut c, r| async move { c.detach_disk(r).await }).await?
        }
        VmDiskCommand::Plug { vm, disk } => {
            let request = proto::VmDiskRequest { vm, disk };
            change(ctx, request, |mut c, r| async move { c.plug_disk(r).await }).await?
        }
        VmDiskCommand::Unplug { vm, disk } => {
            let request = proto::VmDiskRequest { vm, disk };
            change(ctx, request, |mut c, r| async move { c.unplug_disk(r).await }).await?
        }
    };
    print_vm(ctx.format, vm.into())
}

pub(super) async fn nic(ctx: &Context, command: VmNicCommand) -> Result<()> {
    let vm = match command {
        VmNicCommand::Add { vm, network, mac } => {
            let request = proto::AddNicRequest { vm, network, mac: mac.unwrap_or_default() };
            change(ctx, request, |mut c, r| async move { c.add_nic(r).await }).await?
        }
        VmNicCommand::Remove { vm, nic } => {
            let request = proto::VmNicRequest { vm, nic };
            change(ctx, request, |mut c, r| async move { c.remove_nic(r).await }).await?
        }
        VmNicCommand::Plug { vm, nic } => {
            let request = proto::VmNicRequest { vm, nic };
            change(ctx, request, |mut c, r| async move { c.plug_nic(r).await }).await?
        }
        VmNicCommand::Unplug { vm, nic } => {
            let request = proto::VmNicRequest { vm, nic };
            change(ctx, request, |mut c, r| async move { c.unplug_nic(r).await }).await?
        }
    };
    print_vm(ctx.format, vm.into())
}

pub(super) async fn cd(ctx: &Context, vm: String, iso: Option<String>, eject: bool, next_run: bool) -> Result<()> {
    let request = proto::ChangeCdRequest { vm, iso: iso.unwrap_or_default(), eject, next_run };
    let vm = change(ctx, request, |mut c: VmServiceClient<_>, r| async move { c.change_cd(r).await }).await?;
    print_vm(ctx.format, vm.into())
}
