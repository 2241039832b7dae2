//! Elections that leave a healthy leader alone. openraft 0.9 has neither pre-vote nor
//! check-quorum, so its own election timer is off and this module runs ours: a voter that has
//! heard no leader for a randomized election timeout first asks the other voters whether they
//! would vote for it (a pre-vote, which changes nothing on either side) and starts openraft's
//! election only when a majority would. A leader that has not heard from a majority for an
//! election timeout stops acting as one: it refuses writes and read indexes and grants no lease
//! (`leads_with_quorum`). Nothing here writes Raft state except `trigger().elect()`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_proto::raft_service_client::RaftServiceClient;
use corral_raft::network::{decode, payload, Network};
use corral_raft::peer::{PeerBody, PeerRequest, PeerResponse, PeerResult};
use corral_raft::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest, InstallSnapshotResponse,
    LogId, RaftError, RaftMetrics, VoteRequest, VoteResponse,
};
use corral_raft::{ClusterError, NodeId};
use futures::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use rand::Rng;
use tokio::sync::watch;

use super::{Cluster, RaftParts};

/// What this node knows about leaders, by its own monotonic clock. Shared by the Raft RPC
/// handlers (which record a leader's messages), the election timer and the write path.
pub(super) struct Elections {
    /// The configured election timeout: a voter waits between it and twice it for a leader.
    timeout: Duration,
    /// How often the timer looks.
    period: Duration,
    book: Mutex<Book>,
}

struct Book {
    /// The book's own receiver of openraft's metrics: each snapshot is read once, when it is
    /// first seen, so that `millis_since_quorum_ack` becomes an instant that later reads do not
    /// make younger (a snapshot read again after a freeze would look fresh).
    metrics: watch::Receiver<RaftMetrics>,
    seen_any: bool,
    /// When this node last heard a leader of its current term or a later one (itself included,
    /// while it leads) or granted a candidate its vote; at start, the start.
    heard_leader: Instant,
    leading: Option<Leading>,
}

/// The term this node leads, seen from outside openraft.
struct Leading {
    term: u64,
    /// When this node first saw itself leading the term: a majority had just voted for it.
    since: Instant,
    /// The last instant a majority acknowledged it, from openraft's metrics.
    acked: Option<Instant>,
}

impl Book {
    /// Reads openraft's latest metrics snapshot if it was not read yet.
    fn refresh(&mut self, now: Instant) {
        if self.seen_any && !self.metrics.has_changed().unwrap_or(false) {
            return;
        }
        self.seen_any = true;
        let m = self.metrics.borrow_and_update();
        if m.state != ServerState::Leader {
            self.leading = None;
            return;
        }
        let term = m.current_term;
        if self.leading.as_ref().is_none_or(|l| l.term != term) {
            self.leading = Some(Leading { term, since: now, acked: None });
        }
        if let Some(l) = self.leading.as_mut() {
            if let Some(ms) = m.millis_since_quorum_ack {
                l.acked = now.checked_sub(Duration::from_millis(ms));
            }
        }
        self.heard_leader = now;
    }

    /// How long this node, leading `term`, has not heard from a majority (the election counts
    /// as hearing one); `None` if it does not lead `term` as far as the book knows.
    fn quorum_silence(&self, term: u64, now: Instant) -> Option<Duration> {
        let l = self.leading.as_ref().filter(|l| l.term == term)?;
        let heard = l.acked.map_or(l.since, |a| a.max(l.since));
        Some(now.saturating_duration_since(heard))
    }
}

impl Elections {
    pub(super) fn new(timeout_ms: u64, heartbeat_ms: u64, metrics: watch::Receiver<RaftMetrics>) -> Elections {
        Elections {
            timeout: Duration::from_millis(timeout_ms),
            period: Duration::from_millis((heartbeat_ms / 2).max(5)),
            book: Mutex::new(Book { metrics, seen_any: false, heard_leader: Instant::now(), leading: None }),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // The book holds plain values; a panic while it was held leaves nothing half-done.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heard_leader(&self, at: Instant) {
        let mut book = self.book();
        if at > book.heard_leader {
            book.heard_leader = at;
        }
    }

    /// How long a leader may go without hearing from a majority before it stops acting as
    /// leader: the longest election timeout a follower draws, so that the leader gives up no
    /// sooner than its followers would start looking for another (on a starved machine,
    /// heartbeat answers come late, and a leader that gave up at the shortest would let a
    /// follower depose it for nothing).
    fn quorum_limit(&self) -> Duration {
        2 * self.timeout
    }

    /// A fresh election timeout, between the configured one and twice it.
    fn draw(&self) -> Duration {
        let ms = self.timeout.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(ms..=2 * ms))
    }
}

/// Whether `voters` (every config of a joint membership) has a majority in `granted`, in each.
fn majority_in_each(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    configs.iter().all(|c| c.iter().filter(|v| granted.contains(v)).count() * 2 > c.len())
}

/// Whether `id` is the only voter, in every config.
fn alone(m: &RaftMetrics, id: NodeId) -> bool {
    let configs = m.membership_config.membership().get_joint_config();
    !configs.is_empty() && configs.iter().all(|c| c.len() == 1 && c.contains(&id))
}

/// A log's position for comparing how up to date it is: term first, then index; no log is
/// behind every log.
fn log_key(l: Option<&LogId>) -> Option<(u64, u64)> {
    l.map(|l| (l.leader_id.term, l.index))
}

impl RaftParts {
    /// Hands a leader's AppendEntries to openraft; a request this node accepts (its vote is
    /// committed and not older than this node's) means it heard a leader now.
    pub async fn append_entries(&self, rpc: AppendEntriesRequest) -> Result<AppendEntriesResponse, RaftError> {
        let from_leader = rpc.vote.is_committed();
        let resp = self.raft.append_entries(rpc).await;
        if from_leader && matches!(&resp, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.elections.heard_leader(Instant::now());
        }
        resp
    }

    /// Hands a candidate's vote request to openraft. A vote granted restarts this node's
    /// election timer, as hearing a leader does: the candidate is about to lead, and a second
    /// candidate now would only split the vote.
    pub async fn vote(&self, rpc: VoteRequest) -> Result<VoteResponse, RaftError> {
        let resp = self.raft.vote(rpc).await;
        if matches!(&resp, Ok(r) if r.vote_granted) {
            self.elections.heard_leader(Instant::now());
        }
        resp
    }

    /// As `append_entries`: an accepted snapshot chunk from a leader counts as hearing it.
    pub async fn install_snapshot(
        &self,
        rpc: InstallSnapshotRequest,
    ) -> Result<InstallSnapshotResponse, RaftError<InstallSnapshotError>> {
        let vote = rpc.vote;
        let resp = self.raft.install_snapshot(rpc).await;
        if vote.is_committed() && matches!(&resp, Ok(r) if r.vote <= vote) {
            self.elections.heard_leader(Instant::now());
        }
        resp
    }

    /// The term this node leads if its election entry is applied (the state names it leader
    /// of this term) and a majority of the voters acknowledged it within `within` (a single
    /// voter always has its majority). What the host lease code asks before it speaks as leader.
    pub fn leads_with_quorum(&self, within: Duration) -> Option<u64> {
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return None;
        }
        let term = m.current_term;
        if self.state.read(|s| s.leader) != Some((self.id, term)) {
            return None;
        }
        if alone(&m, self.id) {
            return Some(term);
        }
        let now = Instant::now();
        let mut book = self.elections.book();
        book.refresh(now);
        book.quorum_silence(term, now).filter(|s| *s <= within).map(|_| term)
    }

    /// The leader this node sees now: itself while it leads with a majority heard within
    /// `within`, or the leader it heard from within `within`. For the health service and
    /// metrics; changes nothing.
    pub fn sees_leader(&self, within: Duration) -> Option<NodeId> {
        if self.leads_with_quorum(within).is_some() {
            return Some(self.id);
        }
        let leader = self.metrics().current_leader.filter(|l| *l != self.id)?;
        let now = Instant::now();
        let mut book = self.elections.book();
        book.refresh(now);
        (now.saturating_duration_since(book.heard_leader) <= within).then_some(leader)
    }

    /// Check-quorum for the write and read paths: refuses when this node leads but has not
    /// heard from a majority for an election timeout (`quorum_limit`). A node that does not
    /// lead passes: openraft refuses it and the request is handed to the leader.
    pub(super) fn check_quorum(&self) -> Result<(), ClusterError> {
        let m = self.metrics();
        if m.state != ServerState::Leader || alone(&m, self.id) {
            return Ok(());
        }
        let term = m.current_term;
        let now = Instant::now();
        let limit = self.elections.quorum_limit();
        let silence = {
            let mut book = self.elections.book();
            book.refresh(now);
            // Not leading this term as far as the book knows: openraft just changed it; the
            // next snapshot will say.
            book.quorum_silence(term, now).unwrap_or_default()
        };
        if silence > limit {
            return Err(ClusterError::Unavailable(format!(
                "this node leads term {term} but has not heard from a majority for {} ms; it accepts no writes",
                silence.as_millis()
            )));
        }
        Ok(())
    }

    /// Answers another voter's pre-vote: granted only if this node has heard no leader within
    /// the election timeout (a leader: it has stopped acting as one, `check_quorum`) and the
    /// candidate's log is at least as up to date as its own. Changes nothing.
    ///
    /// The term asked is not held against the candidate. A candidate behind in term learns the
    /// later term only from a real vote's refusal (the answer to a pre-vote carries no term), so
    /// refusing it here could leave, for good, the later term with a node whose log is shorter
    /// and the longer log with a node that is never let try; and a real vote in a term this
    /// node has passed is refused by openraft anyway, disrupting nobody.
    pub(super) fn answer_pre_vote(&self, from: NodeId, term: u64, last_log: Option<LogId>) -> PeerResult {
        let m = self.metrics();
        let now = Instant::now();
        let timeout = self.elections.timeout;
        let mine = self.raft.data_metrics().borrow().last_log;
        let refused = {
            let mut book = self.elections.book();
            book.refresh(now);
            if m.state == ServerState::Leader {
                let silence = book.quorum_silence(m.current_term, now).unwrap_or_default();
                (silence <= self.elections.quorum_limit() || alone(&m, self.id))
                    .then(|| format!("it leads term {} with a majority", m.current_term))
            } else {
                let heard = now.saturating_duration_since(book.heard_leader);
                (heard < timeout).then(|| format!("it heard a leader (or voted) {} ms ago", heard.as_millis()))
            }
        };
        let refused = refused.or_else(|| {
            (log_key(last_log.as_ref()) < log_key(mine.as_ref())).then(|| {
                let (t, i) = log_key(mine.as_ref()).unwrap_or_default();
                format!("its log (term {t}, index {i}) is ahead of the candidate's")
            })
        });
        match &refused {
            Some(why) => tracing::debug!(candidate = from, term, "pre-vote refused: {why}"),
            None => tracing::debug!(candidate = from, term, "pre-vote granted"),
        }
        Ok(PeerResponse::PreVote { granted: refused.is_none() })
    }
}

impl Cluster {
    /// Confirms, within `timeout`, that this node still leads: a majority acknowledges it now
    /// (a linearizable check), and it leads the same term afterwards. Returns that term. For a
    /// decision that must not be taken on stale leadership (declaring a host down).
    pub async fn confirm_leadership(&self, timeout: Duration) -> Result<u64, ClusterError> {
        let parts = self.parts()?;
        let m = parts.metrics();
        if m.state != ServerState::Leader {
            return Err(ClusterError::Unavailable("this node does not lead".into()));
        }
        let term = m.current_term;
        match tokio::time::timeout(timeout, parts.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(ClusterError::Unavailable(format!("leadership of term {term} not confirmed: {e}")))
            }
            Err(_) => {
                return Err(ClusterError::Unavailable(format!(
                    "leadership of term {term} not confirmed within {} ms",
                    timeout.as_millis()
                )))
            }
        }
        let after = parts.metrics();
        if after.state != ServerState::Leader || after.current_term != term {
            return Err(ClusterError::Unavailable(format!(
                "this node led term {term} but no longer does (term {} now)",
                after.current_term
            )));
        }
        Ok(term)
    }

    /// Starts the election timer and the reader of openraft's metrics; both end when Raft stops.
    pub(super) fn spawn_elections(&self, parts: &RaftParts) {
        let reader = parts.clone();
        tokio::spawn(async move {
            let mut rx = reader.raft.metrics();
            while rx.changed().await.is_ok() {
                reader.elections.book().refresh(Instant::now());
            }
        });
        tokio::spawn(run_timer(parts.clone(), self.network().clone()));
    }
}

/// How long openraft waits before it sends to an unreachable member again (its default
/// backoff), the least a freshly started node gives the leader before it looks for another.
const STARTUP_GRACE: Duration = Duration::from_millis(500);

/// The election timer: a voter that does not lead and has heard no leader for a drawn timeout
/// (counted from its last attempt, too) asks for pre-votes and, granted, starts an election.
async fn run_timer(parts: RaftParts, network: Network) {
    let elections = parts.elections.clone();
    let mut tick = tokio::time::interval(elections.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wait = elections.draw();
    // Right after a start the leader may not be dialling this node yet (openraft waits 500 ms
    // before it tries an unreachable member again): give it an election timeout more, as if
    // this node had just tried, rather than ask for pre-votes that a member of the previous
    // release grants unasked.
    let mut tried: Option<Instant> = Some(Instant::now() + elections.timeout.max(STARTUP_GRACE));
    loop {
        tick.tick().await;
        let m = parts.metrics();
        if m.running_state.is_err() {
            return;
        }
        let now = Instant::now();
        let heard = {
            let mut book = elections.book();
            book.refresh(now);
            book.heard_leader
        };
        if m.state == ServerState::Leader || !m.membership_config.membership().voter_ids().any(|v| v == parts.id) {
            continue;
        }
        let since = tried.map_or(heard, |t| t.max(heard));
        let silent = now.saturating_duration_since(since);
        let single = alone(&m, parts.id);
        // A lone voter has nobody to wait for, but one election at a time.
        let due = if single { m.state != ServerState::Candidate || silent >= wait } else { silent >= wait };
        if !due {
            continue;
        }
        wait = elections.draw();
        tried = Some(now);
        if !single {
            let quiet_ms = now.saturating_duration_since(heard).as_millis();
            if let Err(why) = pre_vote(&parts, &network, &m).await {
                tracing::debug!(term = m.current_term + 1, "heard no leader for {quiet_ms} ms; no election: {why}");
                continue;
            }
            // A leader heard (or a vote granted) while the pre-votes were out: another node won
            // meanwhile, and an election now would depose it.
            let heard_since = {
                let mut book = elections.book();
                book.refresh(Instant::now());
                book.heard_leader > heard
            };
            if heard_since || parts.metrics().current_term != m.current_term {
                tracing::debug!("a leader or a candidate appeared during the pre-vote; no election");
                continue;
            }
            tracing::info!(
                term = m.current_term + 1,
                "heard no leader for {quiet_ms} ms and a majority granted a pre-vote: starting an election"
            );
        }
        if let Err(e) = parts.raft.trigger().elect().await {
            tracing::debug!("Raft stopped; the election timer ends: {e}");
            return;
        }
    }
}

/// Asks every other voter for a pre-vote of the next term, each within an election timeout;
/// `Ok` as soon as a majority of every config (this node included) grants.
async fn pre_vote(parts: &RaftParts, network: &Network, m: &RaftMetrics) -> Result<(), String> {
    let membership = m.membership_config.membership();
    let configs = membership.get_joint_config().clone();
    let term = m.current_term + 1;
    let last_log = parts.raft.data_metrics().borrow().last_log;
    let req = PeerRequest { from: parts.id, body: PeerBody::PreVote { term, last_log } };
    let deadline = parts.elections.timeout;
    let mut granted = BTreeSet::from([parts.id]);
    let mut asks: FuturesUnordered<_> = membership
        .voter_ids()
        .filter(|v| *v != parts.id)
        .map(|v| {
            let address = membership.get_node(&v).map(|n| n.address.clone());
            let req = &req;
            async move {
                let answer = match address {
                    Some(a) => ask(network, &a, req, deadline).await,
                    None => Err("no address in the membership".to_string()),
                };
                (v, answer)
            }
        })
        .collect();
    let mut refusals = Vec::new();
    while let Some((voter, answer)) = asks.next().await {
        match answer {
            Ok(true) => {
                granted.insert(voter);
                if majority_in_each(&configs, &granted) {
                    return Ok(());
                }
            }
            Ok(false) => refusals.push(format!("node {voter} refused")),
            Err(e) => refusals.push(format!("node {voter}: {e}")),
        }
    }
    if majority_in_each(&configs, &granted) {
        return Ok(());
    }
    Err(refusals.join("; "))
}

/// One pre-vote request. A member of release 3f21f51 does not serve member-to-member messages
/// (it answers UNIMPLEMENTED) and has no pre-vote: its answer counts as granted, as openraft's
/// own election would have taken it, so that a rolling upgrade can still elect.
async fn ask(network: &Network, address: &str, req: &PeerRequest, timeout: Duration) -> Result<bool, String> {
    let channel = network.channel(address).map_err(|e| e.to_string())?;
    let mut client = RaftServiceClient::new(channel);
    let mut request = tonic::Request::new(payload(req, corral_storage::codec::CURRENT)?);
    request.set_timeout(timeout);
    let resp = match tokio::time::timeout(timeout, client.peer(request)).await {
        Err(_) => return Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => return Ok(true),
        Ok(Err(s)) => return Err(format!("{}: {}", s.code(), s.message())),
        Ok(Ok(resp)) => resp,
    };
    match decode::<PeerResult>(&resp.into_inner().data)?.0 {
        Ok(PeerResponse::PreVote { granted }) => Ok(granted),
        Ok(other) => Err(format!("answered a pre-vote with {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joint_membership_needs_a_majority_in_each_config() {
        let old = BTreeSet::from([1, 2, 3]);
        let new = BTreeSet::from([3, 4, 5]);
        let joint = vec![old.clone(), new];
        assert!(majority_in_each(std::slice::from_ref(&old), &BTreeSet::from([1, 2])));
        assert!(!majority_in_each(&joint, &BTreeSet::from([1, 2, 3])));
        assert!(majority_in_each(&joint, &BTreeSet::from([1, 3, 4])));
        assert!(!majority_in_each(&[BTreeSet::from([1, 2, 3, 4])], &BTreeSet::from([1, 2])));
    }

    #[test]
    fn a_log_is_compared_by_term_first_then_index() {
        let at = |term, index| LogId::new(openraft::CommittedLeaderId::new(term, 0), index);
        assert!(log_key(Some(&at(3, 1))) > log_key(Some(&at(2, 9))));
        assert!(log_key(Some(&at(2, 5))) > log_key(Some(&at(2, 4))));
        assert!(log_key(None) < log_key(Some(&at(1, 0))));
    }
}
