//! The API of a node. One transport-independent handler layer (a module per noun: validate,
//! turn into a command, answer; each handler gets the [`Caller`] and a proto message and returns
//! one, or a `ClusterError`); `grpc` serves it over tonic, building the caller and turning errors
//! into statuses in exactly one place (`status`); `raft_rpc` is the internal service between
//! nodes. Handlers get [`Handles`], never the agent or the leader's parts.

mod affinity;
mod auth;
pub mod authz;
mod cluster;
mod console;
mod disks;
mod engine;
mod events;
mod grpc;
mod hosts;
mod library;
pub mod listen;
pub mod ovf;
mod raft_rpc;
pub mod rest;
mod snapshots;
mod vms;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use corral_proto::affinity_service_server::AffinityServiceServer;
use corral_proto::auth_service_server::AuthServiceServer;
use corral_proto::cluster_service_server::ClusterServiceServer;
use corral_proto::disk_service_server::DiskServiceServer;
use corral_proto::engine_service_server::EngineServiceServer;
use corral_proto::event_service_server::EventServiceServer;
use corral_proto::host_service_server::HostServiceServer;
use corral_proto::library_service_server::LibraryServiceServer;
use corral_proto::ovf_service_server::OvfServiceServer;
use corral_proto::raft_service_server::RaftServiceServer;
use corral_proto::vm_service_server::VmServiceServer;
use corral_raft::model::HostFacts;
use corral_raft::ClusterError;
use futures::StreamExt;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::agent::LocalEngine;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::images::StorageDomain;
use grpc::Grpc;

/// What the API layer may use: the cluster handle; the storage domain (disk images are made
/// before the command that records them and removed when it is refused); this host's settings
/// and facts; and `engine start --local`'s narrow way to this host's agent.
pub struct Handles {
    pub cluster: Cluster,
    pub images: StorageDomain,
    pub config: Arc<Config>,
    pub facts: HostFacts,
    pub local: LocalEngine,
    /// Wrong passwords by user and source, on this node (`corral login`'s slow-down).
    pub logins: auth::Logins,
    /// The VNC displays this node gave tickets for (the web console's relay goes only there).
    pub displays: console::Displays,
}

pub use auth::Logins;
pub use corral_proto::REQUEST_ID_HEADER;

pub fn status(e: ClusterError) -> Status {
    let code = match &e {
        ClusterError::NotFound(_) => Code::NotFound,
        ClusterError::AlreadyExists(_) => Code::AlreadyExists,
        ClusterError::InvalidArgument { .. } => Code::InvalidArgument,
        ClusterError::FailedPrecondition(_) => Code::FailedPrecondition,
        ClusterError::PermissionDenied(_) => Code::PermissionDenied,
        ClusterError::Unauthenticated(_) => Code::Unauthenticated,
        ClusterError::Unavailable(_) | ClusterError::Unreachable(_) => Code::Unavailable,
        ClusterError::Internal(_) => Code::Internal,
    };
    Status::new(code, bounded(e.to_string()))
}

/// The most bytes of an error message sent back: errors quote input only in short pieces, and
/// this bounds whatever else (a path, a list of names) could make one grow without end.
const MAX_MESSAGE_BYTES: usize = 2048;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// Who calls, from where, and with which request id: every handler gets one. The transport
/// says who it is (the local socket, a certificate); users and roles (on top) decide with it
/// what the caller may do.
#[derive(Debug, Clone)]
pub struct Caller {
    pub who: Principal,
    /// The address the request came from, when the transport knows it.
    pub peer: Option<SocketAddr>,
    /// As the client sent it, on writes it may retry: the cluster applies a write with a given
    /// id at most once. Read by the handlers that write (a read ignores it, as it always did).
    pub request_id: Option<String>,
    /// A session's or API token's secret (`authorization: Bearer TOKEN`), if the call sent one
    /// over a connection that keeps it secret.
    pub bearer: Option<String>,
    /// Whether the connection keeps what is sent secret (TLS or the local socket): a password
    /// is taken only over one.
    pub private: bool,
}

impl Caller {
    /// The request id of a retryable write, if the client sent one.
    pub fn request_id(&self) -> Result<Option<Uuid>, ClusterError> {
        self.request_id
            .as_deref()
            .map(|v| Uuid::parse_str(v).map_err(|_| ClusterError::invalid(REQUEST_ID_HEADER, "must be a UUID")))
            .transpose()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Plaintext, or TLS without a client certificate: refused once the cluster requires TLS.
    Anonymous,
    /// This host's root, on corrald's local socket: a superuser.
    Local,
    /// A user's client certificate of the cluster CA (`cluster credentials --user NAME`), and
    /// the creation time of the user it was made for.
    User { name: String, made_ms: Option<i64> },
    /// A member's own certificate (another corrald).
    Member(String),
}

/// Serves every service on the TCP port (TLS and, for older members, plaintext) and on this
/// host's local socket, until `shutdown` completes. A request with gRPC's content type goes to
/// gRPC; any other to REST, the websockets and the web console (`rest`). HTTP/2 and HTTP/1.1
/// both (a browser's websocket comes over HTTP/1.1).
pub async fn serve(
    node: Arc<Handles>,
    listener: tokio::net::TcpListener,
    local: tokio::net::UnixListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut incoming = listen::incoming(listener, local, node.cluster.tls().clone());
    // Every public service, with the API's message limit both ways.
    macro_rules! limited {
        ($server:ident, $api:ident) => {
            $server::new(Grpc($api::Api(node.clone())))
                .max_decoding_message_size(corral_proto::MAX_API_MESSAGE)
                .max_encoding_message_size(corral_proto::MAX_API_MESSAGE)
        };
    }
    let grpc = tonic::service::Routes::new(limited!(ClusterServiceServer, cluster))
        .add_service(limited!(HostServiceServer, hosts))
        .add_service(limited!(VmServiceServer, vms))
        .add_service(limited!(EventServiceServer, events))
        .add_service(limited!(DiskServiceServer, disks))
        .add_service(limited!(AffinityServiceServer, affinity))
        .add_service(limited!(OvfServiceServer, ovf))
        .add_service(limited!(EngineServiceServer, engine))
        .add_service(limited!(AuthServiceServer, auth))
        .add_service(limited!(LibraryServiceServer, library))
        .add_service(
            RaftServiceServer::new(raft_rpc::Api(node.clone()))
                .max_decoding_message_size(corral_proto::MAX_RAFT_MESSAGE)
                .max_encoding_message_size(corral_proto::MAX_RAFT_MESSAGE),
        )
        .into_axum_router();
    let rest = rest::router(node.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(c)) => c,
                Some(Err(_)) => continue,
                None => break,
            },
            _ = &mut shutdown => break,
        };
        let info = conn.info();
        let (grpc, rest) = (grpc.clone(), rest.clone());
        let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            let to = if rest::is_grpc(&req) { grpc.clone() } else { rest.clone() };
            tower::ServiceExt::oneshot(to, req.map(axum::body::Body::new))
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder.http1().timer(hyper_util::rt::TokioTimer::new());
        builder.http2().timer(hyper_util::rt::TokioTimer::new());
        let served = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(conn), service).into_owned();
        let served = graceful.watch(served);
        tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    // Calls under way get a moment to finish; streams (events, consoles) are cut.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), graceful.shutdown()).await;
    Ok(())
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
