//! The REST routes: each is one RPC of the public API, called through the same handler (and
//! the same `admit`) as gRPC. A path parameter fills the request field of its name (or the one
//! named after `=>` in brackets); query parameters fill the others; a body fills the rest.

use std::sync::Arc;

use axum::http::Method;
use futures::future::BoxFuture;
use serde_json::Value;

use super::json;
use crate::api::{affinity, auth, cluster, console, disks, engine, events, hosts, library, ovf, vms, Caller, Handles};
use corral_proto::*;
use corral_raft::ClusterError;

/// Calls a route's handler with its request as JSON; answers its reply as JSON.
pub type Call = fn(Arc<Handles>, Caller, Value) -> BoxFuture<'static, Result<Vec<u8>, ClusterError>>;

pub struct Route {
    pub method: Method,
    /// The path as axum (and OpenAPI) write it: `/api/v1/vms/{vm}`.
    pub path: &'static str,
    /// Path parameters whose field has another name: (parameter, field).
    pub renamed: &'static [(&'static str, &'static str)],
    /// The service's name, as gRPC names it (`VmService`), for the document's tags.
    pub service: &'static str,
    /// The handler's name (`list`), as `admit` knows it.
    pub rpc: &'static str,
    /// The request and reply messages' names in corral.v1.
    pub request: &'static str,
    pub response: &'static str,
    pub summary: &'static str,
    pub call: Call,
}

impl Route {
    /// The request field a path parameter fills.
    pub fn field_of<'a>(&self, parameter: &'a str) -> &'a str {
        self.renamed.iter().find(|(p, _)| *p == parameter).map(|(_, f)| *f).unwrap_or(parameter)
    }

    /// The path's parameters, in order.
    pub fn parameters(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }

    /// Whether the request comes in a body (else its fields come as query parameters).
    pub fn has_body(&self) -> bool {
        matches!(self.method, Method::POST | Method::PUT | Method::PATCH)
    }

    /// The operation's id in the document: `VmService.list`.
    pub fn operation_id(&self) -> String {
        format!("{}.{}", self.service, self.rpc)
    }
}

macro_rules! routes {
    ($($service:literal $api:ident: $method:ident $path:literal $([$($p:literal => $f:literal),*])?
        => $rpc:ident($req:ident) -> $resp:ident, $summary:literal;)*) => {
        vec![$(Route {
            method: Method::$method,
            path: $path,
            renamed: &[$($(($p, $f)),*)?],
            service: $service,
            rpc: stringify!($rpc),
            request: stringify!($req),
            response: stringify!($resp),
            summary: $summary,
            call: |node, cx, body| Box::pin(async move {
                let request: $req = json::from_json(&json::message(stringify!($req)), body)?;
                let api = $api::Api(node);
                let reply: $resp = api.$rpc(&cx, request).await?;
                json::to_json(&json::message(stringify!($resp)), &reply)
            }),
        }),*]
    };
}

/// Every route of the REST API.
pub fn all() -> Vec<Route> {
    routes! {
        "AuthService" auth: POST "/api/v1/login" => login(LoginRequest) -> LoginResponse, "Log in: a session token for `Authorization: Bearer`";
        "AuthService" auth: POST "/api/v1/logout" => logout(LogoutRequest) -> LogoutResponse, "End the caller's session";
        "AuthService" auth: GET "/api/v1/whoami" => who_am_i(WhoAmIRequest) -> WhoAmIResponse, "Who the caller is, with its permissions";
        "AuthService" auth: GET "/api/v1/users" => list_users(ListUsersRequest) -> ListUsersResponse, "List users";
        "AuthService" auth: POST "/api/v1/users" => create_user(CreateUserRequest) -> User, "Create a user";
        "AuthService" auth: GET "/api/v1/users/{name}" => get_user(UserRef) -> User, "Show a user";
        "AuthService" auth: DELETE "/api/v1/users/{name}" => delete_user(UserRef) -> AuthDone, "Delete a user";
        "AuthService" auth: POST "/api/v1/users/{name}/password" => set_password(SetPasswordRequest) -> User, "Set a user's password";
        "AuthService" auth: GET "/api/v1/users/{name}/tokens" => list_api_tokens(UserRef) -> ListApiTokensResponse, "List a user's API tokens";
        "AuthService" auth: POST "/api/v1/users/{name}/tokens" ["name" => "user"] => create_api_token(CreateApiTokenRequest) -> CreateApiTokenResponse, "Create an API token";
        "AuthService" auth: DELETE "/api/v1/users/{name}/tokens/{token}" ["name" => "user", "token" => "name"] => revoke_api_token(RevokeApiTokenRequest) -> AuthDone, "Revoke an API token";
        "AuthService" auth: GET "/api/v1/groups" => list_groups(ListGroupsRequest) -> ListGroupsResponse, "List groups";
        "AuthService" auth: POST "/api/v1/groups" => create_group(CreateGroupRequest) -> Group, "Create a group";
        "AuthService" auth: GET "/api/v1/groups/{name}" => get_group(GroupRef) -> Group, "Show a group";
        "AuthService" auth: PATCH "/api/v1/groups/{name}" => edit_group(EditGroupRequest) -> Group, "Change a group's members";
        "AuthService" auth: DELETE "/api/v1/groups/{name}" => delete_group(GroupRef) -> AuthDone, "Delete a group";
        "AuthService" auth: GET "/api/v1/roles" => list_roles(ListRolesRequest) -> ListRolesResponse, "List roles";
        "AuthService" auth: POST "/api/v1/roles" => create_role(RoleRequest) -> Role, "Create a role";
        "AuthService" auth: GET "/api/v1/roles/{name}" => get_role(RoleRef) -> Role, "Show a role";
        "AuthService" auth: PUT "/api/v1/roles/{name}" => edit_role(RoleRequest) -> Role, "Set a role's permissions";
        "AuthService" auth: DELETE "/api/v1/roles/{name}" => delete_role(RoleRef) -> AuthDone, "Delete a role";
        "AuthService" auth: GET "/api/v1/permissions" => list_permissions(ListPermissionsRequest) -> ListPermissionsResponse, "List permissions (on an object, of a user or group)";
        "AuthService" auth: POST "/api/v1/permissions" => add_permission(PermissionRequest) -> Permission, "Give a user or group a role on an object";
        "AuthService" auth: DELETE "/api/v1/permissions" => remove_permission(PermissionRequest) -> AuthDone, "Take a role on an object away";

        "ClusterService" cluster: GET "/api/v1/cluster" => status(StatusRequest) -> ClusterStatus, "The cluster's members, leader and settings";
        "ClusterService" cluster: PATCH "/api/v1/cluster" => edit(EditClusterRequest) -> ClusterSettings, "Change the cluster's scheduling and migration settings";
        "ClusterService" cluster: GET "/api/v1/cluster/ca" => ca(CaRequest) -> CaResponse, "The cluster CA's certificate";
        "ClusterService" cluster: POST "/api/v1/cluster/upgrade" => upgrade(UpgradeRequest) -> UpgradeResponse, "Raise the cluster level to what every member runs";
        "ClusterService" cluster: POST "/api/v1/cluster/backup" => backup(BackupRequest) -> BackupResponse, "A backup of the replicated state";
        "ClusterService" cluster: POST "/api/v1/cluster/credentials" => credentials(CredentialsRequest) -> CredentialsResponse, "A client certificate for a user, from a CSR";
        "ClusterService" cluster: GET "/api/v1/cluster/tokens" => list_tokens(ListTokensRequest) -> ListTokensResponse, "List join tokens";
        "ClusterService" cluster: POST "/api/v1/cluster/tokens" => create_token(CreateTokenRequest) -> CreateTokenResponse, "Create a join token";
        "ClusterService" cluster: DELETE "/api/v1/cluster/tokens/{id}" => revoke_token(RevokeTokenRequest) -> RevokeTokenResponse, "Revoke a join token";

        "HostService" hosts: GET "/api/v1/hosts" => list(ListHostsRequest) -> ListHostsResponse, "List hosts";
        "HostService" hosts: GET "/api/v1/hosts/{host}" => get(GetHostRequest) -> Host, "Show a host";
        "HostService" hosts: PATCH "/api/v1/hosts/{host}" => edit(EditHostRequest) -> Host, "Change a host's tags";
        "HostService" hosts: DELETE "/api/v1/hosts/{host}" => remove(RemoveHostRequest) -> RemoveHostResponse, "Remove a host from the cluster";
        "HostService" hosts: POST "/api/v1/hosts/{host}/maintenance" => maintenance(HostMaintenanceRequest) -> Host, "Put a host into maintenance (its VMs move off; `blocked` names those that cannot)";
        "HostService" hosts: POST "/api/v1/hosts/{host}/activate" => activate(HostRef) -> Host, "Bring a host back from maintenance";

        "VmService" vms: GET "/api/v1/vms" => list(ListVmsRequest) -> ListVmsResponse, "List VMs";
        "VmService" vms: POST "/api/v1/vms" => create(CreateVmRequest) -> Vm, "Create a VM";
        "VmService" vms: POST "/api/v1/vms/import" => import(ImportVmRequest) -> ImportVmResponse, "Import a VM from an OVF document";
        "VmService" vms: GET "/api/v1/vms/{vm}" => get(GetVmRequest) -> Vm, "Show a VM (`next_run=true`: as it will be at its next run)";
        "VmService" vms: PATCH "/api/v1/vms/{vm}" => edit(EditVmRequest) -> Vm, "Change a VM (a running one: at once, by hot-plug, or at its next run)";
        "VmService" vms: DELETE "/api/v1/vms/{vm}" => delete(DeleteVmRequest) -> DeleteVmResponse, "Delete a VM";
        "VmService" vms: POST "/api/v1/vms/{vm}/clone" ["vm" => "source"] => clone(CloneVmRequest) -> Vm, "Clone a VM (or one of its snapshots)";
        "VmService" vms: POST "/api/v1/vms/{vm}/start" => start(StartVmRequest) -> Vm, "Start a VM";
        "VmService" vms: POST "/api/v1/vms/{vm}/shutdown" => shutdown(ShutdownVmRequest) -> Vm, "Shut a VM down through its guest";
        "VmService" vms: POST "/api/v1/vms/{vm}/stop" => stop(StopVmRequest) -> Vm, "Stop a VM (power off)";
        "VmService" vms: POST "/api/v1/vms/{vm}/reboot" => reboot(VmRef) -> Vm, "Reboot a VM";
        "VmService" vms: POST "/api/v1/vms/{vm}/suspend" => suspend(VmRef) -> Vm, "Pause a VM";
        "VmService" vms: POST "/api/v1/vms/{vm}/resume" => resume(VmRef) -> Vm, "Resume a paused VM";
        "VmService" vms: POST "/api/v1/vms/{vm}/migrate" => migrate(MigrateVmRequest) -> Vm, "Live-migrate a VM (`to`: a host; empty: the scheduler picks)";
        "VmService" vms: POST "/api/v1/vms/{vm}/cancel-migration" => cancel_migration(VmRef) -> Vm, "Cancel a VM's migration";
        "VmService" vms: GET "/api/v1/vms/{vm}/ovf" => export(VmRef) -> OvfDocument, "A VM's OVF document";
        "VmService" vms: POST "/api/v1/vms/{vm}/cd" => change_cd(ChangeCdRequest) -> Vm, "Insert or eject a VM's CD";
        "VmService" vms: POST "/api/v1/vms/{vm}/disks" => add_disk(AddDiskRequest) -> Vm, "Add a new disk to a VM";
        "VmService" vms: POST "/api/v1/vms/{vm}/disks/attach" => attach_disk(AttachDiskRequest) -> Vm, "Attach a floating disk to a VM";
        "VmService" vms: DELETE "/api/v1/vms/{vm}/disks/{disk}" => detach_disk(VmDiskRequest) -> Vm, "Detach a disk from a VM";
        "VmService" vms: POST "/api/v1/vms/{vm}/disks/{disk}/plug" => plug_disk(VmDiskRequest) -> Vm, "Plug a VM's disk";
        "VmService" vms: POST "/api/v1/vms/{vm}/disks/{disk}/unplug" => unplug_disk(VmDiskRequest) -> Vm, "Unplug a VM's disk";
        "VmService" vms: POST "/api/v1/vms/{vm}/nics" => add_nic(AddNicRequest) -> Vm, "Add a NIC to a VM";
        "VmService" vms: DELETE "/api/v1/vms/{vm}/nics/{nic}" => remove_nic(VmNicRequest) -> Vm, "Remove a VM's NIC";
        "VmService" vms: POST "/api/v1/vms/{vm}/nics/{nic}/plug" => plug_nic(VmNicRequest) -> Vm, "Plug a VM's NIC";
        "VmService" vms: POST "/api/v1/vms/{vm}/nics/{nic}/unplug" => unplug_nic(VmNicRequest) -> Vm, "Unplug a VM's NIC";
        "VmService" vms: GET "/api/v1/vms/{vm}/snapshots" => list_snapshots(VmRef) -> SnapshotList, "List a VM's snapshots";
        "VmService" vms: POST "/api/v1/vms/{vm}/snapshots" => create_snapshot(CreateSnapshotRequest) -> SnapshotResult, "Take a snapshot";
        "VmService" vms: GET "/api/v1/vms/{vm}/snapshots/{snapshot}" => get_snapshot(SnapshotRef) -> Snapshot, "Show a snapshot";
        "VmService" vms: DELETE "/api/v1/vms/{vm}/snapshots/{snapshot}" => delete_snapshot(DeleteSnapshotRequest) -> SnapshotResult, "Delete a snapshot";
        "VmService" vms: POST "/api/v1/vms/{vm}/snapshots/{snapshot}/preview" => preview_snapshot(PreviewSnapshotRequest) -> SnapshotResult, "Preview a snapshot (commit or undo it after)";
        "VmService" vms: POST "/api/v1/vms/{vm}/snapshots/{snapshot}/restore" => restore_snapshot(SnapshotRef) -> SnapshotResult, "Restore a snapshot";
        "VmService" vms: POST "/api/v1/vms/{vm}/preview/commit" => commit_snapshot(VmRef) -> SnapshotResult, "Keep the snapshot being previewed";
        "VmService" vms: POST "/api/v1/vms/{vm}/preview/undo" => undo_snapshot(VmRef) -> SnapshotResult, "Undo a preview";
        "VmService" console: POST "/api/v1/vms/{vm}/vnc" => vnc(VmRef) -> VncTicket, "A VNC ticket: a short-lived password on the VM's display";

        "EventService" events: GET "/api/v1/events" => list(ListEventsRequest) -> ListEventsResponse, "Recent events";

        "DiskService" disks: GET "/api/v1/disks" => list(ListDisksRequest) -> ListDisksResponse, "List disks";
        "DiskService" disks: POST "/api/v1/disks" => create(CreateDiskRequest) -> Disk, "Create a floating disk";
        "DiskService" disks: GET "/api/v1/disks/{disk}" => get(DiskRef) -> Disk, "Show a disk";
        "DiskService" disks: DELETE "/api/v1/disks/{disk}" => delete(DiskRef) -> Disk, "Delete a floating disk";
        "DiskService" disks: POST "/api/v1/disks/{disk}/resize" => resize(ResizeDiskRequest) -> Disk, "Grow a disk";

        "AffinityService" affinity: GET "/api/v1/affinity/groups" => list_groups(ListAffinityRequest) -> ListAffinityGroupsResponse, "List affinity groups";
        "AffinityService" affinity: POST "/api/v1/affinity/groups" => create_group(CreateAffinityGroupRequest) -> AffinityGroup, "Create an affinity group";
        "AffinityService" affinity: GET "/api/v1/affinity/groups/{name}" => get_group(GetAffinityRequest) -> AffinityGroup, "Show an affinity group";
        "AffinityService" affinity: PATCH "/api/v1/affinity/groups/{name}" => edit_group(EditAffinityGroupRequest) -> AffinityGroup, "Change an affinity group";
        "AffinityService" affinity: DELETE "/api/v1/affinity/groups/{name}" => delete_group(DeleteAffinityRequest) -> DeleteAffinityResponse, "Delete an affinity group";
        "AffinityService" affinity: GET "/api/v1/affinity/labels" => list_labels(ListAffinityRequest) -> ListAffinityLabelsResponse, "List affinity labels";
        "AffinityService" affinity: POST "/api/v1/affinity/labels" => create_label(CreateAffinityLabelRequest) -> AffinityLabel, "Create an affinity label";
        "AffinityService" affinity: GET "/api/v1/affinity/labels/{name}" => get_label(GetAffinityRequest) -> AffinityLabel, "Show an affinity label";
        "AffinityService" affinity: PATCH "/api/v1/affinity/labels/{name}" => edit_label(EditAffinityLabelRequest) -> AffinityLabel, "Change an affinity label";
        "AffinityService" affinity: DELETE "/api/v1/affinity/labels/{name}" => delete_label(DeleteAffinityRequest) -> DeleteAffinityResponse, "Delete an affinity label";

        "OvfService" ovf: GET "/api/v1/ovf" => list(OvfListRequest) -> OvfListResponse, "The OVF store's documents";
        "OvfService" ovf: GET "/api/v1/ovf/{vm}" => dump(OvfDumpRequest) -> OvfDocument, "One VM's document in the OVF store";

        "EngineService" engine: GET "/api/v1/engine" => status(EngineStatusRequest) -> EngineStatus, "The hosted engine and its hosts' scores";
        "EngineService" engine: POST "/api/v1/engine/maintenance" => maintenance(EngineMaintenanceRequest) -> EngineStatus, "Set the hosted engine's maintenance mode";

        "LibraryService" library: GET "/api/v1/isos" => list_isos(ListLibraryRequest) -> ListIsosResponse, "List ISOs";
        "LibraryService" library: GET "/api/v1/isos/{name}" => get_iso(LibraryRef) -> Iso, "Show an ISO";
        "LibraryService" library: DELETE "/api/v1/isos/{name}" => delete_iso(LibraryRef) -> Iso, "Delete an ISO";
        "LibraryService" library: GET "/api/v1/templates" => list_templates(ListLibraryRequest) -> ListTemplatesResponse, "List templates";
        "LibraryService" library: POST "/api/v1/templates" => create_template(CreateTemplateRequest) -> Template, "Make a template of a down VM";
        "LibraryService" library: GET "/api/v1/templates/{name}" => get_template(LibraryRef) -> Template, "Show a template";
        "LibraryService" library: DELETE "/api/v1/templates/{name}" => delete_template(LibraryRef) -> Template, "Delete a template";
        "LibraryService" library: GET "/api/v1/offerings" => list_offerings(ListLibraryRequest) -> ListOfferingsResponse, "List service offerings";
        "LibraryService" library: POST "/api/v1/offerings" => create_offering(Offering) -> Offering, "Create a service offering";
        "LibraryService" library: GET "/api/v1/offerings/{name}" => get_offering(LibraryRef) -> Offering, "Show a service offering";
        "LibraryService" library: PATCH "/api/v1/offerings/{name}" ["name" => "offering"] => edit_offering(EditOfferingRequest) -> Offering, "Change a service offering";
        "LibraryService" library: DELETE "/api/v1/offerings/{name}" => delete_offering(LibraryRef) -> Offering, "Delete a service offering";
    }
}
