//! The Raft transport over tonic: one lazily dialled channel per peer address, openraft's
//! messages carried as codec-encoded payloads. Transport faults become `Unreachable` or
//! `Network` errors (openraft backs off on the former); errors the peer returns become
//! `RemoteError`. It never retries by itself: openraft decides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::RaftPayload;
use corral_storage::error_chain;
use corral_storage::WriteFormat;
use openraft::error::{NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use tonic::transport::{Channel, Endpoint};

use crate::error::ClusterError;
use crate::format::wire::{self, Wire};
use crate::forward::{ForwardResult, Forwarded, LeaderRequest};
use crate::peer::{PeerRequest, PeerResult};
use crate::typ::*;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Channels to peers, shared by Raft replication and by forwarding to the leader. Once the
/// cluster requires TLS (`secure`), every channel is TLS with this node's certificate.
#[derive(Clone)]
pub struct Network {
    /// By (address, TLS).
    channels: Arc<Mutex<HashMap<(String, bool), Channel>>>,
    /// The format requests are sent in: the cluster level's (peers answer in kind).
    format: WriteFormat,
    /// This node's client side of TLS: its certificate, and the CA it trusts.
    tls: Arc<RwLock<Option<Arc<rustls::ClientConfig>>>>,
    secure: Arc<AtomicBool>,
}

impl Network {
    pub fn new(format: WriteFormat) -> Self {
        Self { channels: Default::default(), format, tls: Default::default(), secure: Default::default() }
    }

    /// This node's certificate changed (join, renewal): new TLS channels from now on.
    pub fn set_tls(&self, config: Option<Arc<rustls::ClientConfig>>) {
        *self.tls.write().expect("tls lock") = config;
        self.channels.lock().expect("channel map lock poisoned").retain(|(_, tls), _| !*tls);
    }

    /// Whether members are dialled with TLS (the cluster's level requires it).
    pub fn set_secure(&self, on: bool) {
        self.secure.store(on, Ordering::Relaxed);
    }

    pub fn secure(&self) -> bool {
        self.secure.load(Ordering::Relaxed)
    }

    /// The format this node sends its messages in.
    pub fn format(&self) -> u8 {
        self.format.get()
    }

    /// The format to speak to the node at `address` and its cluster, from its ping: its
    /// cluster's level (release 3f21f51's pings say nothing: format v0); `None` if it does not
    /// answer.
    pub async fn peer_format(&self, address: &str) -> Option<u8> {
        let mut client = RaftServiceClient::new(self.channel(address).ok()?);
        let mut req = tonic::Request::new(corral_proto::PingRequest {});
        req.set_timeout(CONNECT_TIMEOUT * 2);
        let ping = client.ping(req).await.ok()?.into_inner();
        if ping.version.is_empty() {
            return Some(0);
        }
        let level = ping.cluster_level.unwrap_or(ping.max_level).min(ping.max_level);
        Some(level.min(u8::MAX.into()) as u8)
    }

    /// Speaks `format` from now on (a node joining a cluster of an older level).
    pub fn speak(&self, format: u8) {
        self.format.set(format);
    }

    /// A channel to `address` (`host:port`); created on first use, dialled lazily.
    pub fn channel(&self, address: &str) -> Result<Channel, ClusterError> {
        let secure = self.secure();
        let key = (address.to_string(), secure);
        let mut channels = self.channels.lock().expect("channel map lock poisoned");
        if let Some(c) = channels.get(&key) {
            return Ok(c.clone());
        }
        let tls = if secure {
            Some(self.tls.read().expect("tls lock").clone().ok_or_else(|| {
                ClusterError::Unreachable(
                    "this node has no certificate of the cluster yet: it cannot reach members".into(),
                )
            })?)
        } else {
            None
        };
        let channel = dial(address, tls)?;
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// Hands `req` to the node at `address` (normally the leader) and returns its answer.
    /// `hops` counts how often the request was handed on already; nodes stop handing it on
    /// past a small limit, so stale views of the leader cannot make a loop.
    pub async fn forward(&self, address: &str, req: &LeaderRequest, hops: u8, timeout: Duration) -> ForwardResult {
        self.forward_on(self.channel(address)?, address, req, hops, timeout).await
    }

    /// `forward` on a given channel (a joining node's, TLS pinned to the CA its token names).
    pub async fn forward_on(
        &self,
        channel: Channel,
        address: &str,
        req: &LeaderRequest,
        hops: u8,
        timeout: Duration,
    ) -> ForwardResult {
        let mut client = RaftServiceClient::new(channel);
        let envelope = Forwarded { hops, request: req.clone() };
        let mut request = tonic::Request::new(payload(&envelope, self.format()).map_err(ClusterError::Internal)?);
        request.set_timeout(timeout);
        let resp = client.forward(request).await.map_err(|s| {
            if never_sent(&s) {
                ClusterError::Unreachable(format!("could not connect to the leader at {address}"))
            } else {
                ClusterError::Unavailable(format!("the leader at {address} did not answer: {}", s.message()))
            }
        })?;
        decode::<ForwardResult>(&resp.into_inner().data).map_err(ClusterError::Internal)?.0
    }
}

impl Network {
    /// Sends a member-to-member message (see [`crate::peer`]) to the node at `address`, in the
    /// current format, and returns its answer.
    pub async fn peer(&self, address: &str, req: &PeerRequest, timeout: Duration) -> PeerResult {
        let mut client = RaftServiceClient::new(self.channel(address)?);
        let data = wire::encode(req, codec_current()).map_err(|e| ClusterError::Internal(error_chain(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(timeout);
        let resp = client.peer(request).await.map_err(|s| {
            if never_sent(&s) {
                ClusterError::Unreachable(format!("could not connect to the member at {address}"))
            } else {
                ClusterError::Unavailable(format!("the member at {address} did not answer: {}", s.message()))
            }
        })?;
        decode::<PeerResult>(&resp.into_inner().data).map_err(ClusterError::Internal)?.0
    }
}

/// A lazily dialled channel to `address`: TLS with `tls` when given, else plaintext.
pub fn dial(address: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Channel, ClusterError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| {
            ClusterError::invalid("address", format!("'{}' is not a valid address: {e}", crate::error::quote(address)))
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(match tls {
        Some(config) => endpoint.connect_with_connector_lazy(corral_proto::tls::TlsConnect::new(config)),
        None => endpoint.connect_lazy(),
    })
}

fn codec_current() -> u8 {
    corral_storage::codec::CURRENT
}

/// Whether a failed call certainly never reached the peer (the connection could not be made),
/// as opposed to one that may have been received before the failure.
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable) {
                return true;
            }
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// `v` as an RPC payload in `format` (see [`crate::format::wire`]).
pub fn payload<T: Wire>(v: &T, format: u8) -> Result<RaftPayload, String> {
    wire::encode(v, format)
        .map(|data| RaftPayload { data })
        .map_err(|e| format!("could not encode a Raft message: {}", error_chain(&e)))
}

/// A payload's message and the format it came in.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<(T, u8), String> {
    wire::decode(bytes).map_err(|e| format!("could not decode a Raft message: {}", error_chain(&e)))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Peer {
        Peer { target, address: node.address.clone(), network: self.clone(), format: self.format.clone() }
    }
}

/// The connection to one peer, as openraft uses it for replication and votes.
pub struct Peer {
    target: NodeId,
    address: String,
    network: Network,
    format: WriteFormat,
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        rpc: RpcKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, openraft::error::RPCError<NodeId, NodeInfo, RaftError<E>>>
    where
        Req: Wire,
        Result<Resp, RaftError<E>>: Wire,
        E: std::error::Error,
    {
        use openraft::error::RPCError;
        let channel = self.network.channel(&self.address).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut client = RaftServiceClient::new(channel)
            .max_decoding_message_size(corral_proto::MAX_RAFT_MESSAGE)
            .max_encoding_message_size(corral_proto::MAX_RAFT_MESSAGE);
        let body = payload(req, self.format.get())
            .map_err(|e| RPCError::Network(NetworkError::new(&ClusterError::Internal(e))))?;
        let mut request = tonic::Request::new(body);
        request.set_timeout(option.hard_ttl());
        let result = match rpc {
            RpcKind::Append => client.append_entries(request).await,
            RpcKind::Vote => client.vote(request).await,
            RpcKind::Snapshot => client.install_snapshot(request).await,
        };
        let resp = result.map_err(|status| {
            let err = ClusterError::Unavailable(format!("{} ({}): {}", self.address, status.code(), status.message()));
            if status.code() == tonic::Code::Unavailable {
                RPCError::Unreachable(Unreachable::new(&err))
            } else {
                RPCError::Network(NetworkError::new(&err))
            }
        })?;
        let (decoded, _): (Result<Resp, RaftError<E>>, u8) = decode(&resp.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&ClusterError::Internal(e))))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum RpcKind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        self.call(RpcKind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        self.call(RpcKind::Snapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcError> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }
}
