//! The gRPC transport of the public API. Each RPC takes the caller's context from the request
//! (here, in one place), calls its transport-independent handler and turns a domain error into
//! a status (in `super::status`, one place). No rule lives here: a REST front end calls the
//! same handlers.

use std::pin::Pin;

use corral_proto::affinity_service_server::AffinityService;
use corral_proto::auth_service_server::AuthService;
use corral_proto::cluster_service_server::ClusterService;
use corral_proto::disk_service_server::DiskService;
use corral_proto::engine_service_server::EngineService;
use corral_proto::event_service_server::EventService;
use corral_proto::host_service_server::HostService;
use corral_proto::library_service_server::LibraryService;
use corral_proto::ovf_service_server::OvfService;
use corral_proto::vm_service_server::VmService;
use corral_proto::*;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::listen::{ConnInfo, Via};
use super::{
    affinity, auth, cluster, console, disks, engine, events, hosts, library, ovf, status, vms, Caller, Handles,
    Principal, REQUEST_ID_HEADER,
};
use crate::tls::CertIdentity;

/// A handler served over gRPC.
pub struct Grpc<H>(pub H);

/// The caller of a gRPC request.
fn caller<T>(req: &Request<T>) -> Caller {
    caller_of(req.metadata().as_ref(), req.extensions().get::<ConnInfo>())
}

/// The caller of a request (gRPC or REST): who it is (from its connection: the local socket, or
/// the certificate it proved over TLS), its address, the request id and bearer token it sent.
pub(super) fn caller_of(headers: &http::HeaderMap, conn: Option<&ConnInfo>) -> Caller {
    // A header that is not text cannot be a UUID; kept so that a write refuses it by name.
    let request_id = headers.get(REQUEST_ID_HEADER).map(|v| v.to_str().unwrap_or_default().to_string());
    let who = match conn.map(|c| &c.via) {
        Some(Via::Local) => Principal::Local,
        Some(Via::Tls(Some(CertIdentity::User { name, made_ms }))) => {
            Principal::User { name: name.clone(), made_ms: *made_ms }
        }
        Some(Via::Tls(Some(CertIdentity::Node(name)))) => Principal::Member(name.clone()),
        _ => Principal::Anonymous,
    };
    // A secret is taken only from a connection that keeps it secret (TLS, the local socket).
    let private = matches!(conn.map(|c| &c.via), Some(Via::Tls(_) | Via::Local));
    let bearer = private
        .then(|| headers.get("authorization"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string());
    Caller { who, peer: conn.and_then(|c| c.peer), request_id, bearer, private }
}

/// What the transport itself refuses: bootstrap and join anywhere but on the local socket, and
/// any caller without credentials once the cluster requires them. Roles come on top of this.
pub(super) fn admit(node: &Handles, cx: &Caller, rpc: &str) -> Result<(), Status> {
    if matches!(rpc, "bootstrap" | "join") {
        if cx.who != Principal::Local {
            return Err(Status::permission_denied(format!(
                "`cluster {rpc}` runs on the host itself, over corrald's local socket: give the CLI --socket PATH \
                 (by default <data-dir>/corrald.sock) or CORRAL_SOCKET"
            )));
        }
        return Ok(());
    }
    match &cx.who {
        // A bearer token is checked by the handler; logging in and reading the CA need nothing.
        Principal::Anonymous
            if node.cluster.requires_tls() && cx.bearer.is_none() && !(cx.private && matches!(rpc, "login" | "ca")) =>
        {
            Err(Status::unauthenticated(NO_CREDENTIALS))
        }
        // A removed member's certificate is refused from the moment its removal is applied.
        Principal::Member(name) => {
            let known =
                node.cluster.state().ok().map(|s| s.read(|s| s.cluster.is_none() || s.host_by_name(name).is_some()));
            if known == Some(false) {
                return Err(Status::permission_denied(format!(
                    "the certificate of '{}' belongs to no member of this cluster",
                    corral_raft::error::quote(name)
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What a caller without credentials is told, in one line.
pub const NO_CREDENTIALS: &str = "this cluster answers only callers with credentials: log in as a user \
     (`corral login`), or on one of its hosts run `corral --socket /var/lib/corral/corrald.sock cluster credentials \
     -f FILE` and give the CLI --credentials FILE (or CORRAL_CREDENTIALS)";

/// Implements a gRPC service whose every RPC is one unary handler of the same name.
/// Further items (streaming RPCs) follow the block.
macro_rules! unary_service {
    ($service:ident for $handler:ty { $($rpc:ident($req:ty) -> $resp:ty;)* } $($more:tt)*) => {
        #[tonic::async_trait]
        impl $service for Grpc<$handler> {
            $(
                async fn $rpc(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                    let cx = caller(&req);
                    admit(&self.0 .0, &cx, stringify!($rpc))?;
                    self.0.$rpc(&cx, req.into_inner()).await.map(Response::new).map_err(status)
                }
            )*
            $($more)*
        }
    };
}

unary_service!(AuthService for auth::Api {
    login(LoginRequest) -> LoginResponse;
    logout(LogoutRequest) -> LogoutResponse;
    who_am_i(WhoAmIRequest) -> WhoAmIResponse;
    create_user(CreateUserRequest) -> User;
    list_users(ListUsersRequest) -> ListUsersResponse;
    get_user(UserRef) -> User;
    delete_user(UserRef) -> AuthDone;
    set_password(SetPasswordRequest) -> User;
    create_group(CreateGroupRequest) -> Group;
    list_groups(ListGroupsRequest) -> ListGroupsResponse;
    get_group(GroupRef) -> Group;
    edit_group(EditGroupRequest) -> Group;
    delete_group(GroupRef) -> AuthDone;
    list_roles(ListRolesRequest) -> ListRolesResponse;
    get_role(RoleRef) -> Role;
    create_role(RoleRequest) -> Role;
    edit_role(RoleRequest) -> Role;
    delete_role(RoleRef) -> AuthDone;
    add_permission(PermissionRequest) -> Permission;
    remove_permission(PermissionRequest) -> AuthDone;
    list_permissions(ListPermissionsRequest) -> ListPermissionsResponse;
    create_api_token(CreateApiTokenRequest) -> CreateApiTokenResponse;
    list_api_tokens(UserRef) -> ListApiTokensResponse;
    revoke_api_token(RevokeApiTokenRequest) -> AuthDone;
});

unary_service!(ClusterService for cluster::Api {
    ca(CaRequest) -> CaResponse;
    bootstrap(BootstrapRequest) -> BootstrapResponse;
    join(JoinRequest) -> JoinResponse;
    status(StatusRequest) -> ClusterStatus;
    create_token(CreateTokenRequest) -> CreateTokenResponse;
    edit(EditClusterRequest) -> ClusterSettings;
    upgrade(UpgradeRequest) -> UpgradeResponse;
    backup(BackupRequest) -> BackupResponse;
    list_tokens(ListTokensRequest) -> ListTokensResponse;
    revoke_token(RevokeTokenRequest) -> RevokeTokenResponse;
    credentials(CredentialsRequest) -> CredentialsResponse;
});

unary_service!(HostService for hosts::Api {
    list(ListHostsRequest) -> ListHostsResponse;
    remove(RemoveHostRequest) -> RemoveHostResponse;
    get(GetHostRequest) -> Host;
    maintenance(HostMaintenanceRequest) -> Host;
    activate(HostRef) -> Host;
    edit(EditHostRequest) -> Host;
});

unary_service!(VmService for vms::Api {
    create(CreateVmRequest) -> Vm;
    list(ListVmsRequest) -> ListVmsResponse;
    get(GetVmRequest) -> Vm;
    edit(EditVmRequest) -> Vm;
    delete(DeleteVmRequest) -> DeleteVmResponse;
    clone(CloneVmRequest) -> Vm;
    start(StartVmRequest) -> Vm;
    shutdown(ShutdownVmRequest) -> Vm;
    stop(StopVmRequest) -> Vm;
    reboot(VmRef) -> Vm;
    suspend(VmRef) -> Vm;
    resume(VmRef) -> Vm;
    migrate(MigrateVmRequest) -> Vm;
    cancel_migration(VmRef) -> Vm;
    export(VmRef) -> OvfDocument;
    import(ImportVmRequest) -> ImportVmResponse;
    change_cd(ChangeCdRequest) -> Vm;
    add_disk(AddDiskRequest) -> Vm;
    attach_disk(AttachDiskRequest) -> Vm;
    detach_disk(VmDiskRequest) -> Vm;
    plug_disk(VmDiskRequest) -> Vm;
    unplug_disk(VmDiskRequest) -> Vm;
    add_nic(AddNicRequest) -> Vm;
    remove_nic(VmNicRequest) -> Vm;
    plug_nic(VmNicRequest) -> Vm;
    unplug_nic(VmNicRequest) -> Vm;
    create_snapshot(CreateSnapshotRequest) -> SnapshotResult;
    list_snapshots(VmRef) -> SnapshotList;
    get_snapshot(SnapshotRef) -> Snapshot;
    preview_snapshot(PreviewSnapshotRequest) -> SnapshotResult;
    commit_snapshot(VmRef) -> SnapshotResult;
    undo_snapshot(VmRef) -> SnapshotResult;
    restore_snapshot(SnapshotRef) -> SnapshotResult;
    delete_snapshot(DeleteSnapshotRequest) -> SnapshotResult;
}
    type ConsoleStream = Pin<Box<dyn Stream<Item = Result<ConsoleOutput, Status>> + Send>>;

    async fn console(
        &self,
        req: Request<tonic::Streaming<ConsoleInput>>,
    ) -> Result<Response<Self::ConsoleStream>, Status> {
        let cx = caller(&req);
        admit(&self.0 .0, &cx, "console")?;
        let (first, input) = console_input(req.into_inner()).await?;
        let api = console::Api(self.0 .0.clone());
        let output = api.console(&cx, &first.vm, input).await.map_err(status)?;
        Ok(Response::new(Box::pin(output.map(|r| r.map_err(status)))))
    }

    async fn vnc(&self, req: Request<VmRef>) -> Result<Response<VncTicket>, Status> {
        let cx = caller(&req);
        admit(&self.0 .0, &cx, "vnc")?;
        console::Api(self.0 .0.clone()).vnc(&cx, req.into_inner()).await.map(Response::new).map_err(status)
    }
);

/// How long a console call may take to name its VM.
const CONSOLE_OPENING: std::time::Duration = std::time::Duration::from_secs(30);

/// A console call's first message (naming the VM) and the keystrokes that follow (its own data
/// first); a message over `console::MAX_INPUT` bytes ends the input.
async fn console_input(mut inbound: tonic::Streaming<ConsoleInput>) -> Result<(ConsoleInput, console::Input), Status> {
    let first = tokio::time::timeout(CONSOLE_OPENING, inbound.message())
        .await
        .map_err(|_| Status::invalid_argument("vm: the console call named no VM within 30 s"))??
        .ok_or_else(|| Status::invalid_argument("vm: the console call ended before naming a VM"))?;
    if first.vm.trim().is_empty() {
        return Err(Status::invalid_argument("vm: the first message of a console call names the VM"));
    }
    let check = |m: ConsoleInput| {
        if m.data.len() > console::MAX_INPUT {
            Err(corral_raft::ClusterError::invalid("data", format!("at most {} bytes a message", console::MAX_INPUT)))
        } else {
            Ok(m.data)
        }
    };
    let opening = check(ConsoleInput { vm: String::new(), data: first.data.clone() });
    let rest = inbound.map(move |r| match r {
        Ok(m) => check(m),
        Err(s) => Err(corral_raft::ClusterError::Unavailable(s.message().to_string())),
    });
    Ok((first, Box::pin(futures::stream::once(std::future::ready(opening)).chain(rest))))
}

unary_service!(OvfService for ovf::Api {
    list(OvfListRequest) -> OvfListResponse;
    dump(OvfDumpRequest) -> OvfDocument;
});

unary_service!(EngineService for engine::Api {
    status(EngineStatusRequest) -> EngineStatus;
    maintenance(EngineMaintenanceRequest) -> EngineStatus;
    start_local(EngineStartLocalRequest) -> EngineStartLocalResponse;
    runs_vm(RunsVmRequest) -> RunsVmResponse;
});

unary_service!(DiskService for disks::Api {
    list(ListDisksRequest) -> ListDisksResponse;
    create(CreateDiskRequest) -> Disk;
    get(DiskRef) -> Disk;
    resize(ResizeDiskRequest) -> Disk;
    delete(DiskRef) -> Disk;
});

unary_service!(AffinityService for affinity::Api {
    create_group(CreateAffinityGroupRequest) -> AffinityGroup;
    list_groups(ListAffinityRequest) -> ListAffinityGroupsResponse;
    get_group(GetAffinityRequest) -> AffinityGroup;
    edit_group(EditAffinityGroupRequest) -> AffinityGroup;
    delete_group(DeleteAffinityRequest) -> DeleteAffinityResponse;
    create_label(CreateAffinityLabelRequest) -> AffinityLabel;
    list_labels(ListAffinityRequest) -> ListAffinityLabelsResponse;
    get_label(GetAffinityRequest) -> AffinityLabel;
    edit_label(EditAffinityLabelRequest) -> AffinityLabel;
    delete_label(DeleteAffinityRequest) -> DeleteAffinityResponse;
});

unary_service!(LibraryService for library::Api {
    list_isos(ListLibraryRequest) -> ListIsosResponse;
    get_iso(LibraryRef) -> Iso;
    delete_iso(LibraryRef) -> Iso;
    create_template(CreateTemplateRequest) -> Template;
    list_templates(ListLibraryRequest) -> ListTemplatesResponse;
    get_template(LibraryRef) -> Template;
    delete_template(LibraryRef) -> Template;
    create_offering(Offering) -> Offering;
    list_offerings(ListLibraryRequest) -> ListOfferingsResponse;
    get_offering(LibraryRef) -> Offering;
    edit_offering(EditOfferingRequest) -> Offering;
    delete_offering(LibraryRef) -> Offering;
}
    async fn add_iso(&self, req: Request<tonic::Streaming<IsoUpload>>) -> Result<Response<Iso>, Status> {
        let cx = caller(&req);
        admit(&self.0 .0, &cx, "add_iso")?;
        self.0.add_iso(&cx, req.into_inner()).await.map(Response::new).map_err(status)
    }
);

#[tonic::async_trait]
impl EventService for Grpc<events::Api> {
    async fn list(&self, req: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        let cx = caller(&req);
        admit(&self.0 .0, &cx, "list")?;
        self.0.list(&cx, req.into_inner()).await.map(Response::new).map_err(status)
    }

    type FollowStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

    async fn follow(&self, req: Request<FollowEventsRequest>) -> Result<Response<Self::FollowStream>, Status> {
        let cx = caller(&req);
        admit(&self.0 .0, &cx, "follow")?;
        let events = self.0.follow(&cx, req.into_inner()).await.map_err(status)?;
        Ok(Response::new(Box::pin(events.map(Ok))))
    }
}
