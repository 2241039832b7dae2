//! Who this node is, and what its data dir is allowed to be: a node with an identity whose state
//! cannot be read is damaged and refuses to start (one line, naming the file and the remedies),
//! never a blank node waiting for `bootstrap`. Also the offline recoveries that rewrite a data
//! dir before corrald starts: `--rejoin`, `--restore FILE` and `--force-new-cluster`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_proto::cluster_service_client::ClusterServiceClient;
use corral_raft::format::backup::Backup;
use corral_raft::model::HostState;
use corral_raft::typ::{LogId, Membership};
use corral_raft::{ClusterState, Command, HostDownCause, NodeId, NodeInfo, Op, TypeConfig};
use corral_storage::codec::CodecError;
use corral_storage::identity::{self, Identity};
use corral_storage::{error_chain, Options, Store};
use openraft::{CommittedLeaderId, StoredMembership, Vote};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The node id in the store's local facts (the store's own copy, which Raft starts from).
pub const LOCAL_NODE_ID: &str = "node_id";
/// Set once the identity file was written: an identity file missing after that is damage.
const LOCAL_IDENTITY_WRITTEN: &str = "identity_written";
/// The members' addresses this node last knew, for `--rejoin` without `--peer`.
const PEERS_FILE: &str = "peers";
/// sled's page cache: small, so an idle node stays small.
pub const STORE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The data dir, opened and checked.
pub struct Opened {
    pub store: Store,
    /// The node id to resume under, if the node belongs to a cluster.
    pub node_id: Option<NodeId>,
}

/// One cluster's id, the same on every node: derived from what bootstrap fixed for good.
pub fn cluster_id(state: &ClusterState) -> Option<String> {
    let c = state.cluster.as_ref()?;
    let digest = Sha256::digest(format!("corral cluster\0{}\0{}", c.name, c.created_ms));
    let bytes: [u8; 16] = digest[..16].try_into().expect("a SHA-256 digest has 32 bytes");
    Some(uuid::Uuid::from_bytes(bytes).to_string())
}

fn damaged(dir: &Path, what: String, id: Option<&Identity>) -> anyhow::Error {
    let who = match id {
        Some(id) => format!(
            "This node is {} (node {}) of cluster {}: run corrald again with --rejoin to set the damaged state aside \
             and catch up from the cluster as the same member (only if the cluster still lists it), or remove the \
             host (`corral host remove {}`) and join a fresh data dir",
            id.name, id.node_id, id.cluster_name, id.name
        ),
        None => "Run corrald again with --rejoin to set the damaged state aside and catch up from the cluster as the \
                 same member, or remove the host and join a fresh data dir"
            .to_string(),
    };
    anyhow::anyhow!("the data dir {} is damaged: {what}. {who}.", dir.display())
}

/// Opens the data dir's store and checks it against the identity file.
pub fn open(config: &Config) -> anyhow::Result<Opened> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
    let id = match identity::read(dir) {
        Err(e @ identity::IdentityError::Damaged { .. }) => return Err(damaged(dir, error_chain(&e), None)),
        other => other?,
    };
    let store = match open_store(config) {
        Ok(s) => s,
        // Only what says the files are bad is damage: a lock held by another corrald, a
        // permission, or a newer build's format call for another remedy than --rejoin.
        Err(e @ (corral_storage::Error::Damaged { .. } | corral_storage::Error::Codec(_)))
            if id.is_some() && !matches!(e, corral_storage::Error::Codec(CodecError::Newer { .. })) =>
        {
            return Err(damaged(dir, error_chain(&e), id.as_ref()))
        }
        Err(e) => return Err(anyhow::anyhow!("{}", error_chain(&e))),
    };
    let stored = store.get_local(LOCAL_NODE_ID).map_err(|e| damaged(dir, error_chain(&e), id.as_ref()))?;
    let stored =
        match stored {
            Some(b) => Some(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| {
                damaged(dir, format!("its stored node id is {} bytes long, not 8", b.len()), id.as_ref())
            })?)),
            None => None,
        };
    let db = dir.join("db");
    match (&id, stored) {
        (Some(id), Some(n)) if id.node_id != n => Err(damaged(
            dir,
            format!("its identity file says node {} but its database {} says node {n}", id.node_id, db.display()),
            Some(id),
        )),
        (Some(id), _) if stored.is_none() || !store.has_raft_state().unwrap_or(false) => Err(damaged(
            dir,
            format!("its database {} holds no cluster state (missing, emptied or cut short)", db.display()),
            Some(id),
        )),
        (None, Some(_)) if store.get_local(LOCAL_IDENTITY_WRITTEN).ok().flatten().is_some() => {
            Err(damaged(dir, format!("its identity file {} is missing", identity::path(dir).display()), None))
        }
        _ => Ok(Opened { store, node_id: stored }),
    }
}

/// Opens the store, waiting a moment for sled's lock (its threads hold it a little after the
/// last handle went, as after `--restore` and `--force-new-cluster`).
fn open_store(config: &Config) -> Result<Store, corral_storage::Error> {
    let options = Options { cache_bytes: STORE_CACHE_BYTES, sync: config.fsync };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match Store::open_with(&config.data_dir, options) {
            Err(corral_storage::Error::Open { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Writes the identity file once the node's state names its cluster (at bootstrap or join,
/// or on the first start of a data dir from before identity files). Returns whether one exists.
pub fn ensure(config: &Config, store: &Store, node_id: NodeId, state: &ClusterState) -> anyhow::Result<bool> {
    if identity::read(&config.data_dir)?.is_some() {
        return Ok(true);
    }
    let (Some(cluster_id), Some(info)) = (cluster_id(state), state.cluster.as_ref()) else {
        return Ok(false);
    };
    let id = Identity {
        format: corral_storage::codec::CURRENT,
        cluster_id,
        cluster_name: info.name.clone(),
        node_id,
        name: config.name.clone(),
    };
    identity::write_once(&config.data_dir, &id)?;
    store.set_local(LOCAL_IDENTITY_WRITTEN, &[1])?;
    tracing::info!(cluster = %id.cluster_name, cluster_id = %id.cluster_id, node_id, "identity written");
    Ok(true)
}

/// Whether this data dir ever belonged to a cluster (so it may not bootstrap another).
pub fn ever_member(config: &Config, store: &Store) -> Option<String> {
    match identity::read(&config.data_dir) {
        Ok(Some(id)) => return Some(format!("cluster {} (node {})", id.cluster_name, id.node_id)),
        Err(_) => return Some("a cluster (its identity file is damaged)".into()),
        Ok(None) => {}
    }
    match store.get_local(LOCAL_IDENTITY_WRITTEN) {
        Ok(Some(_)) => Some("a cluster (its identity file is missing)".into()),
        _ => None,
    }
}

/// Remembers the members' addresses for `--rejoin`; best effort.
pub fn remember_peers(dir: &Path, addresses: &[String]) {
    let tmp = dir.join(format!("{PEERS_FILE}.tmp"));
    let text = addresses.join("\n") + "\n";
    if std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, dir.join(PEERS_FILE))).is_err() {
        tracing::debug!("could not remember the members' addresses");
    }
}

fn remembered_peers(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(PEERS_FILE))
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

/// The damaged database goes aside (nothing is deleted), named for when it was set aside.
fn set_aside(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let db = dir.join("db");
    if !db.exists() {
        return Ok(None);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
    let aside = (0..)
        .map(|n| dir.join(if n == 0 { format!("db.damaged-{stamp}") } else { format!("db.damaged-{stamp}-{n}") }))
        .find(|p| !p.exists())
        .expect("some name is free");
    std::fs::rename(&db, &aside)
        .map_err(|e| anyhow::anyhow!("cannot set the damaged database {} aside: {e}", db.display()))?;
    Ok(Some(aside))
}

/// `corrald --rejoin`: the same member, with its local state wiped, catching up from the
/// cluster. Refused unless a member answers and still lists this node.
pub async fn rejoin(config: &Config, peer: Option<String>, token_file: Option<&Path>) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    // A damaged identity file goes aside with the database; the database says who it was.
    let id = match identity::read(dir) {
        Err(identity::IdentityError::Damaged { .. }) => {
            let path = identity::path(dir);
            std::fs::rename(&path, dir.join("identity.damaged"))
                .map_err(|e| anyhow::anyhow!("cannot set the damaged identity file {} aside: {e}", path.display()))?;
            None
        }
        other => other?,
    };
    let id = match id {
        Some(id) => id,
        None => identity_from_store(config).map_err(|e| {
            anyhow::anyhow!(
                "--rejoin: {} has no identity file and its database does not say who it was ({e}); remove the \
                 host and join a fresh data dir",
                dir.display()
            )
        })?,
    };
    let peers = match peer {
        Some(p) => vec![p],
        None => remembered_peers(dir).into_iter().filter(|a| *a != config.advertise).collect(),
    };
    if peers.is_empty() {
        anyhow::bail!("--rejoin: this node remembers no other member; give one with --peer ADDRESS");
    }
    // A node whose key or certificate is gone too proves itself with a join token instead.
    if crate::tls::Live::open(dir).client_config().is_none() {
        if let Some(file) = token_file {
            recertify(config, &peers, file).await?;
        }
    }
    let mut last_error = String::new();
    let mut found = None;
    for peer in &peers {
        match member_status(config, peer).await {
            Ok(status) => {
                found = Some((peer.clone(), status));
                break;
            }
            // This node's certificate is refused: the cluster removed it.
            Err(e) if e.to_string().contains("belongs to no member") => {
                anyhow::bail!(
                    "--rejoin: cluster {} no longer lists {} (node {}); remove this data dir and join the cluster afresh",
                    id.cluster_name,
                    id.name,
                    id.node_id
                );
            }
            // A cluster that requires TLS, and this node has no certificate left.
            Err(e) if e.to_string().contains("only callers with credentials") => {
                anyhow::bail!(
                    "--rejoin: this node's key or certificate (in {}) is missing or damaged and {peer} requires TLS; \
                     give --token-file FILE with a join token (`corral cluster token create`) to get a new one",
                    dir.join("tls").display()
                );
            }
            Err(e) => last_error = format!("{peer}: {e}"),
        }
    }
    let Some((peer, status)) = found else {
        anyhow::bail!("--rejoin: no member of cluster {} answered ({last_error})", id.cluster_name);
    };
    if status.cluster != id.cluster_name {
        anyhow::bail!(
            "--rejoin: {peer} belongs to cluster '{}', not to this node's cluster '{}'",
            status.cluster,
            id.cluster_name
        );
    }
    if !status.members.iter().any(|m| m.id == id.node_id) {
        anyhow::bail!(
            "--rejoin: cluster {} no longer lists {} (node {}); remove this data dir and join the cluster afresh",
            id.cluster_name,
            id.name,
            id.node_id
        );
    }
    let aside = set_aside(dir)?;
    if identity::read(dir)?.is_none() {
        identity::write_once(dir, &id)?;
    }
    let store = Store::open_with(dir, Options { cache_bytes: STORE_CACHE_BYTES, sync: config.fsync })?;
    store.set_local(LOCAL_NODE_ID, &id.node_id.to_be_bytes())?;
    store.set_local(LOCAL_IDENTITY_WRITTEN, &[1])?;
    // The member may have voted in the current term before it lost its state: it must not
    // vote again in that term, so it starts out having voted for the term's leader.
    let mut log = store.log_store::<TypeConfig>()?;
    let vote = Vote::new(status.term, status.leader_id);
    openraft::storage::RaftLogStorage::save_vote(&mut log, &vote)
        .await
        .map_err(|e| anyhow::anyhow!("cannot save the vote: {e}"))?;
    drop(log);
    store.flush()?;
    tracing::warn!(node_id = id.node_id, %peer, aside = ?aside, "rejoining: local state set aside; catching up from the cluster");
    Ok(())
}

/// `--rejoin --token-file F`: a new certificate for this member (whose key or certificate is
/// missing or damaged), from a join token, over TLS pinned to the CA the token names.
async fn recertify(config: &Config, peers: &[String], token_file: &Path) -> anyhow::Result<()> {
    use corral_raft::forward::{LeaderRequest, LeaderResponse};
    let text = if token_file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(std::io::stdin(), 64 * 1024), &mut s)?;
        s
    } else {
        std::fs::read_to_string(token_file)
            .map_err(|e| anyhow::anyhow!("--token-file: cannot read {}: {e}", token_file.display()))?
    };
    let token = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string();
    let parsed = crate::token::parse(&token).map_err(|e| anyhow::anyhow!("--token-file: {e}"))?;
    let pin = parsed.ca.ok_or_else(|| anyhow::anyhow!("--token-file: the token pins no CA: its cluster has no TLS"))?;
    let (key, csr) = crate::tls::key_and_csr()?;
    let network = corral_raft::network::Network::new(corral_storage::WriteFormat::new(corral_storage::codec::CURRENT));
    let mut last = String::new();
    for peer in peers {
        let verifier = corral_proto::tls::PinnedVerifier::new(&pin);
        let tls = corral_proto::tls::client_config(verifier, None)?;
        let channel = corral_raft::network::dial(peer, Some(std::sync::Arc::new(tls)))?;
        let req = LeaderRequest::Recertify { token: token.clone(), name: config.name.clone(), csr: csr.clone() };
        match network.forward_on(channel, peer, &req, 0, Duration::from_secs(10)).await {
            Ok(LeaderResponse::Signed { cert_pem, ca_pem }) => {
                if crate::tls::ca_fingerprint(&ca_pem)? != pin {
                    anyhow::bail!("--rejoin: the leader's CA is not the one the token names");
                }
                crate::tls::Files::new(&config.data_dir).save_node(&ca_pem, &cert_pem, &key)?;
                tracing::warn!(%peer, "rejoin: this member has a new certificate");
                return Ok(());
            }
            Ok(other) => last = format!("{peer}: unexpected answer {other:?}"),
            Err(e) => last = format!("{peer}: {e}"),
        }
    }
    anyhow::bail!("--rejoin: no member gave this node a new certificate ({last})")
}

/// The identity a data dir whose identity file is gone had: its database's node id and cluster.
fn identity_from_store(config: &Config) -> anyhow::Result<Identity> {
    let store = open_store(config)?;
    let node_id = store.get_local(LOCAL_NODE_ID)?.ok_or_else(|| anyhow::anyhow!("no node id"))?;
    let node_id = u64::from_be_bytes(node_id.as_slice().try_into().map_err(|_| anyhow::anyhow!("a bad node id"))?);
    let (_, state): (_, ClusterState) = store.recovered_state::<TypeConfig, _>()?;
    let cluster_name = state.cluster.as_ref().ok_or_else(|| anyhow::anyhow!("no cluster"))?.name.clone();
    Ok(Identity {
        format: corral_storage::codec::CURRENT,
        cluster_id: cluster_id(&state).unwrap_or_default(),
        cluster_name,
        node_id,
        name: config.name.clone(),
    })
}

/// A member's view of the cluster; over TLS with this node's own certificate when it has one
/// (a cluster that requires TLS answers members only).
async fn member_status(config: &Config, peer: &str) -> anyhow::Result<corral_proto::ClusterStatus> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{peer}"))?.connect_timeout(Duration::from_secs(2));
    let channel = match crate::tls::Live::open(&config.data_dir).client_config() {
        Some(tls) => endpoint.connect_with_connector(corral_proto::tls::TlsConnect::new(tls)).await?,
        None => endpoint.connect().await?,
    };
    let mut req = tonic::Request::new(corral_proto::StatusRequest { stale: true });
    req.set_timeout(Duration::from_secs(3));
    Ok(ClusterServiceClient::new(channel)
        .status(req)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner())
}

/// `corrald --restore FILE`: a new one-node cluster from a backup, this node in the place of
/// the backup's host of the same name.
pub fn restore(config: &Config, file: &Path) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
    if identity::read(dir)?.is_some() || dir.join("db").exists() {
        anyhow::bail!(
            "--restore: the data dir {} is not empty; restore into an empty data dir (move this one aside first)",
            dir.display()
        );
    }
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("--restore: cannot read {}: {e}", file.display()))?;
    let backup = Backup::decode(&bytes)
        .map_err(|e| anyhow::anyhow!("--restore: {} is not a Corral backup: {}", file.display(), error_chain(&e)))?;
    let mut state = backup.state;
    let Some(host) = state.hosts.values_mut().find(|h| h.name == config.name) else {
        let names: Vec<_> = state.hosts.values().map(|h| h.name.as_str()).collect();
        anyhow::bail!(
            "--restore: the backup has no host named '{}' (it has {}); give --name one of them",
            config.name,
            names.join(", ")
        );
    };
    host.address = config.advertise.clone();
    let node_id = host.id;
    let store = Store::open_with(dir, Options { cache_bytes: STORE_CACHE_BYTES, sync: config.fsync })?;
    start_alone(config, &store, node_id, state, backup.applied_index, 1, HostDownCause::Restored)?;
    tracing::warn!(file = %file.display(), node_id, "restored a one-node cluster from a backup; the other hosts join it again");
    Ok(())
}

/// `corrald --force-new-cluster`: this node alone, keeping all it has. Refused while another
/// member answers: two clusters running the same VMs is the worst outcome there is.
pub async fn force_new_cluster(config: &Config) -> anyhow::Result<()> {
    let opened = open(config)?;
    let node_id = opened.node_id.ok_or_else(|| {
        anyhow::anyhow!("--force-new-cluster: {} holds no cluster state to start from", config.data_dir.display())
    })?;
    let (last, state): (Option<LogId>, ClusterState) = opened.store.recovered_state::<TypeConfig, _>()?;
    let others: Vec<String> = state.hosts.values().filter(|h| h.id != node_id).map(|h| h.address.clone()).collect();
    for address in &others {
        if member_status(config, address).await.is_ok() {
            anyhow::bail!(
                "--force-new-cluster refused: {address} answers. Forcing a new cluster while another member lives \
                 makes two clusters that both think they own the same VMs and may run them twice; use it only when \
                 the majority is lost for good"
            );
        }
    }
    let index = last.map_or(0, |l| l.index);
    // Past every term this node saw, the one it voted in included: a vote never goes back.
    let mut log = opened.store.log_store::<TypeConfig>()?;
    let voted = openraft::storage::RaftLogStorage::read_vote(&mut log)
        .await
        .map_err(|e| anyhow::anyhow!("--force-new-cluster: cannot read the vote: {e}"))?
        .map_or(0, |v| v.leader_id.term);
    drop(log);
    let term = last.map_or(0, |l| l.leader_id.term).max(voted);
    start_alone(config, &opened.store, node_id, state, index, term + 1, HostDownCause::ForcedNewCluster)?;
    tracing::warn!(
        node_id,
        index,
        "forced a new one-node cluster: every other host must be removed, or re-join it with --rejoin"
    );
    Ok(())
}

/// A cluster with a CA, started alone on this node: it keeps the CA when this node holds its
/// key and a certificate of it; otherwise (a restore into an empty data dir) the cluster gets a
/// new CA, and old credentials and join tokens stop working.
fn keep_or_make_ca(config: &Config, state: &mut ClusterState) -> anyhow::Result<()> {
    use crate::tls;
    let Some(info) = state.cluster.as_mut() else { return Ok(()) };
    let Some(ca) = info.ca_pem.clone() else { return Ok(()) };
    let files = tls::Files::new(&config.data_dir);
    let mine = files.load().is_some_and(|m| m.ca_pem.trim() == ca.trim());
    if mine && files.ca_key().is_some() {
        return Ok(());
    }
    let (new_ca, key) = tls::make_ca(&info.name)?;
    files.save_ca_key(&key)?;
    let (node_key, csr) = tls::key_and_csr()?;
    let role = tls::Role::Node { name: &config.name, addresses: std::slice::from_ref(&config.advertise) };
    let cert = tls::sign(&new_ca, &key, &csr, role, config.cert_days)?;
    files.save_node(&new_ca, &cert, &node_key)?;
    info.ca_pem = Some(new_ca);
    tracing::warn!(
        "this node holds no key of the cluster's CA: the cluster gets a new CA. Credentials and join tokens of the old \
         one no longer work: write new ones (`corral --socket ... cluster credentials`, `cluster token create`)"
    );
    Ok(())
}

/// Makes `state` a one-member cluster of this node. The other hosts are down (their VMs with
/// them: the HA ones restart here as the rules allow) and may join again from the same address.
fn start_alone(
    config: &Config,
    store: &Store,
    node_id: NodeId,
    mut state: ClusterState,
    index: u64,
    term: u64,
    why: HostDownCause,
) -> anyhow::Result<()> {
    let now = crate::now_ms();
    let others: Vec<NodeId> = state.hosts.keys().copied().filter(|id| *id != node_id).collect();
    for id in others {
        let op = Op::HostDown { id, how: why.clone() };
        state.apply_command(&Command { at_ms: now, request_id: None, op });
        if let Some(h) = state.hosts.get_mut(&id) {
            h.state = HostState::Joining;
        }
    }
    keep_or_make_ca(config, &mut state)?;
    let me = NodeInfo { name: config.name.clone(), address: config.advertise.clone() };
    let last = LogId::new(CommittedLeaderId::new(term, node_id), index.max(1));
    let membership = StoredMembership::new(
        Some(last),
        Membership::new(vec![[node_id].into()], std::collections::BTreeMap::from([(node_id, me)])),
    );
    store.start_over::<TypeConfig, ClusterState>(state.clone(), last, membership, Vote::new(term, node_id))?;
    store.set_local(LOCAL_NODE_ID, &node_id.to_be_bytes())?;
    ensure(config, store, node_id, &state)?;
    Ok(())
}
