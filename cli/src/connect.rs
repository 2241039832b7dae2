//! Reaching the cluster: tries each `--endpoint` in order and moves on only when a node could
//! not be reached. It never sends a write to a second node once the first may have received
//! it, and it treats the server's own refusals (NotFound, InvalidArgument, ...) as answers.
//!
//! Failing over fast: a node counts as reached only once its corrald has said something on the
//! new connection (its HTTP/2 settings, which the server sends before reading anything), because
//! a frozen node's kernel still accepts the connection. Connecting, the handshake and those first
//! bytes share one short deadline (`--connect-timeout`, 2 s), and no request is sent before
//! they arrive, so moving on after it is safe for every request, tagged or not. A node that has
//! spoken gets the full request deadline: a read that waits for an election, or a clone that
//! takes a minute, is neither cut short nor sent twice. (Cutting the request itself after 2 s
//! and resending a tagged write was rejected: the cluster de-duplicates applied commands only,
//! so a slow create still running on the first node would make its disk images twice.)

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use corral_proto::REQUEST_ID_HEADER;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint as Transport;
use tonic::{Code, ConnectError, Response, Status, TimeoutExpired};

use crate::endpoints::{Endpoint, Endpoints};
use crate::session::Bearer;

/// What a command's requests go over: a connection to one node, carrying the caller's session
/// or API token (if any) on every call.
pub type Channel = InterceptedService<tonic::transport::Channel, Bearer>;
use crate::transport::{Dial, Heard, Watched};

/// How long a node may take to connect and say its first bytes before the next one is tried
/// (`--connect-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a unary request may take, including a linearizable read through the leader.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams have no deadline; HTTP/2 pings notice a node that stopped answering.
const STREAM_PING_INTERVAL: Duration = Duration::from_secs(10);
const STREAM_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read or a tagged write keeps trying while the cluster has no leader (an
/// election takes about a second).
const RETRY_WINDOW: Duration = Duration::from_secs(20);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Whether a request may be sent again to another node after the first may have received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Read,
    /// A write the cluster de-duplicates by its request id: as safe to resend as a read.
    TaggedWrite,
    Write,
}

/// One id for every attempt of one write.
#[derive(Debug, Clone)]
pub struct RequestId(String);

impl RequestId {
    fn new() -> Self {
        RequestId(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `msg` as a request that carries this id.
    pub fn tag<M>(&self, msg: M) -> tonic::Request<M> {
        let mut req = tonic::Request::new(msg);
        let value = self.0.parse().expect("a UUID is valid metadata");
        req.metadata_mut().insert(REQUEST_ID_HEADER, value);
        req
    }
}

/// Opens a channel to one node once its corrald has spoken, within `patience` from the start.
/// Nothing has been sent on a channel that failed here. The error is a short reason such as
/// "connection refused".
pub async fn connect(
    endpoint: &Endpoint,
    dial: &Dial,
    deadline: Option<Duration>,
    patience: Duration,
) -> Result<tonic::transport::Channel, String> {
    let transport = Transport::from_shared(endpoint.uri()).map_err(|e| short_reason(&e))?;
    let transport = match deadline {
        Some(deadline) => transport.timeout(deadline),
        None => transport
            .http2_keep_alive_interval(STREAM_PING_INTERVAL)
            .keep_alive_timeout(STREAM_PING_TIMEOUT)
            .keep_alive_while_idle(true),
    };
    let (connector, mut heard) = Watched::new(dial.clone());
    let reached = async {
        let channel = transport.connect_with_connector(connector).await.map_err(|e| short_reason(&e))?;
        match heard.wait_for(|h| *h != Heard::Nothing).await.map(|h| h.clone()) {
            Ok(Heard::Spoke) => Ok(channel),
            Ok(Heard::Closed(io::ErrorKind::UnexpectedEof)) => Err("connection closed".to_string()),
            Ok(Heard::Closed(kind)) => Err(describe_io(&kind.into())),
            // The connection and its watcher are gone, so nothing more will be heard.
            Ok(Heard::Nothing) | Err(_) => Err("connection closed".to_string()),
        }
    };
    match tokio::time::timeout(patience, reached).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}", humantime::format_duration(patience))),
    }
}

/// How a call that returned an error status went wrong.
pub enum Failure {
    /// The request never left this process: the node could not be reached.
    NotSent(String),
    /// The request may have reached the node, but no answer came back.
    Lost(String),
    /// The node answered that it cannot serve requests now.
    Unavailable,
    /// The node answered; the status is the answer.
    Answer,
}

impl Failure {
    pub fn of(status: &Status) -> Failure {
        // Statuses the server sent carry no source; those tonic made up locally do.
        let Some(source) = StdError::source(status) else {
            return match status.code() {
                Code::Unavailable => Failure::Unavailable,
                _ => Failure::Answer,
            };
        };
        if chain(source).any(|e| e.is::<ConnectError>()) {
            Failure::NotSent(short_reason(source))
        } else if chain(source).any(|e| e.is::<TimeoutExpired>()) {
            Failure::Lost(format!("no answer within {}", humantime::format_duration(REQUEST_TIMEOUT)))
        } else {
            Failure::Lost(short_reason(source))
        }
    }
}

/// The error for a status the server sent: its message alone, as the server phrased it.
pub fn answer(status: Status) -> anyhow::Error {
    match status.message() {
        "" => anyhow!("the server refused: {}", status.code().description()),
        message => anyhow!("{message}"),
    }
}

/// The nodes of `--endpoint`, and the policy for moving from one to the next.
pub struct Nodes {
    endpoints: Endpoints,
    /// How long each node gets to connect and speak before the next one is tried.
    patience: Duration,
    /// TCP, TLS or the local socket.
    dial: Dial,
    /// The session or API token sent with every call.
    bearer: Bearer,
}

/// What one endpoint made of a call.
enum Attempt<T> {
    Done(Result<T>),
    /// Try the next endpoint after warning; `error` is what to report if there is none.
    Next {
        warning: String,
        error: anyhow::Error,
        /// The node could not be reached at all (as opposed to answering "not now").
        unreachable: bool,
    },
}

impl Nodes {
    /// `connect_timeout`: how long each node gets to connect and speak (`--connect-timeout`).
    pub fn new(endpoints: Endpoints, connect_timeout: Duration) -> Self {
        Nodes { endpoints, patience: connect_timeout, dial: Dial::Plain, bearer: Bearer::none() }
    }

    /// Nodes reached as `dial` says (TLS with credentials, or corrald's local socket).
    pub fn with_dial(endpoints: Endpoints, connect_timeout: Duration, dial: Dial) -> Self {
        Nodes { endpoints, patience: connect_timeout, dial, bearer: Bearer::none() }
    }

    /// These nodes, with `bearer` on every call.
    pub fn with_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = bearer;
        self
    }

    /// Whether these are this host's corrald over its local socket.
    pub fn is_local(&self) -> bool {
        matches!(self.dial, Dial::Local(_))
    }

    /// The one node `--endpoint` names, for commands that act on that node itself (bootstrap,
    /// join): falling over to another node would change the wrong one.
    pub fn single(&self, command: &str) -> Result<Nodes> {
        match self.endpoints.len() {
            1 => Ok(Nodes::with_dial(self.endpoints.clone(), self.patience, self.dial.clone())
                .with_bearer(self.bearer.clone())),
            _ => bail!("--endpoint: {command} acts on one node; give exactly one address"),
        }
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The node asked by `read_here` and `write_here`: the first one `--endpoint` names.
    pub fn here(&self) -> &Endpoint {
        self.endpoints.first()
    }

    /// Runs a read about one node's own copy of things (its OVF store) on that node alone,
    /// once: another node's answer would be about another store, and a local read needs no
    /// leader to wait for.
    pub async fn read_here<T, F, Fut>(&self, mut rpc: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        match attempt(
            self.here(),
            &self.dial,
            &self.bearer,
            Effect::Read,
            Some(REQUEST_TIMEOUT),
            self.patience,
            &mut rpc,
        )
        .await
        {
            Attempt::Done(result) => result,
            Attempt::Next { error, .. } => Err(error),
        }
    }

    /// Runs a request that acts on one node itself (start the engine from its own store, put
    /// it into local maintenance) on that node alone, once, untagged unless `rpc` tags it.
    pub async fn write_here<T, F, Fut>(&self, mut rpc: F) -> Result<T>
    where
        F: FnMut(Channel, &RequestId) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let id = RequestId::new();
        let mut tagged = |channel| rpc(channel, &id);
        match attempt(
            self.here(),
            &self.dial,
            &self.bearer,
            Effect::Write,
            Some(REQUEST_TIMEOUT),
            self.patience,
            &mut tagged,
        )
        .await
        {
            Attempt::Done(result) => result,
            Attempt::Next { error, .. } => Err(error),
        }
    }

    /// Runs a request that changes nothing; any node may be asked again if one fails.
    pub async fn read<T, F, Fut>(&self, rpc: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let (_, answer) = self.call(Effect::Read, Some(REQUEST_TIMEOUT), 0, rpc).await?;
        Ok(answer)
    }

    /// Runs a request that changes this node itself (bootstrap, join); it moves to another
    /// node only if it was never sent.
    pub async fn write_once<T, F, Fut>(&self, rpc: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let (_, answer) = self.call(Effect::Write, Some(REQUEST_TIMEOUT), 0, rpc).await?;
        Ok(answer)
    }

    /// Runs a cluster write tagged with a request id: like a read, it may be sent again (to
    /// any node, while an election runs) because the cluster applies it at most once.
    pub async fn write<T, F, Fut>(&self, mut rpc: F) -> Result<T>
    where
        F: FnMut(Channel, &RequestId) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let id = RequestId::new();
        let (_, answer) = self.call(Effect::TaggedWrite, Some(REQUEST_TIMEOUT), 0, |channel| rpc(channel, &id)).await?;
        Ok(answer)
    }

    /// A tagged write without the request deadline: for writes that make large files first
    /// (an ISO upload, a template's copies).
    pub async fn write_long<T, F, Fut>(&self, mut rpc: F) -> Result<T>
    where
        F: FnMut(Channel, &RequestId) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let id = RequestId::new();
        let (_, answer) = self.call(Effect::TaggedWrite, None, 0, |channel| rpc(channel, &id)).await?;
        Ok(answer)
    }

    /// Opens a read-only server stream, trying the endpoints from the `first`-th on and
    /// wrapping around. Returns the index of the endpoint that answered, so that a broken
    /// stream can be resumed on the next one.
    pub async fn open_stream<T, F, Fut>(&self, first: usize, rpc: F) -> Result<(usize, T)>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call(Effect::Read, None, first, rpc).await
    }

    async fn call<T, F, Fut>(
        &self,
        effect: Effect,
        deadline: Option<Duration>,
        first: usize,
        mut rpc: F,
    ) -> Result<(usize, T)>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let count = self.endpoints.len();
        let give_up = tokio::time::Instant::now() + RETRY_WINDOW;
        let mut round = 0;
        loop {
            // Another round only helps when some node answered but could not serve (no leader
            // yet); when none could be reached at all, say so at once.
            let mut all_unreachable = true;
            for (tried, (i, endpoint)) in self.endpoints.rotated(first).enumerate() {
                match attempt(endpoint, &self.dial, &self.bearer, effect, deadline, self.patience, &mut rpc).await {
                    Attempt::Done(result) => return result.map(|answer| (i, answer)),
                    Attempt::Next { error, unreachable, .. } if tried + 1 == count => {
                        all_unreachable &= unreachable;
                        if all_unreachable || effect == Effect::Write || tokio::time::Instant::now() >= give_up {
                            return Err(error);
                        }
                    }
                    Attempt::Next { warning, unreachable, .. } => {
                        all_unreachable &= unreachable;
                        if round == 0 {
                            eprintln!("warning: {warning}");
                        }
                    }
                }
            }
            round += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt<T, F, Fut>(
    endpoint: &Endpoint,
    dial: &Dial,
    bearer: &Bearer,
    effect: Effect,
    deadline: Option<Duration>,
    patience: Duration,
    rpc: &mut F,
) -> Attempt<T>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let unreachable = |reason: String| {
        let text = format!("could not reach {endpoint}: {reason}");
        Attempt::Next { warning: text.clone(), error: anyhow!(text), unreachable: true }
    };
    let channel = match connect(endpoint, dial, deadline, patience).await {
        Ok(channel) => InterceptedService::new(channel, bearer.clone()),
        Err(reason) => return unreachable(reason),
    };
    let status = match rpc(channel).await {
        Ok(response) => return Attempt::Done(Ok(response.into_inner())),
        Err(status) => status,
    };
    let resendable = effect != Effect::Write;
    match (Failure::of(&status), effect) {
        (Failure::NotSent(reason), _) => unreachable(reason),
        (Failure::Lost(reason), _) if resendable => Attempt::Next {
            warning: format!("could not reach {endpoint}: {reason}"),
            error: anyhow!("could not reach {endpoint}: {reason}"),
            unreachable: false,
        },
        (Failure::Lost(reason), _) => {
            Attempt::Done(Err(anyhow!("{endpoint}: {reason}; the change may or may not have been applied")))
        }
        (Failure::Unavailable, _) if resendable => Attempt::Next {
            warning: format!("{endpoint} could not answer: {}", status.message()),
            error: answer(status),
            unreachable: false,
        },
        (Failure::Unavailable | Failure::Answer, _) => Attempt::Done(Err(answer(status))),
    }
}

fn chain<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// A few words on why a connection failed, from the deepest cause that says something:
/// "connection refused" rather than "transport error".
pub fn short_reason(error: &(dyn StdError + 'static)) -> String {
    if let Some(io) = chain(error).find_map(|e| e.downcast_ref::<io::Error>()) {
        return describe_io(io);
    }
    let deepest = chain(error).last().unwrap_or(error);
    deepest.to_string()
}

fn describe_io(error: &io::Error) -> String {
    use io::ErrorKind::*;
    let text = match error.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset",
        ConnectionAborted => "connection aborted",
        TimedOut => "connection timed out",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        AddrNotAvailable => "address not available",
        BrokenPipe => "connection closed",
        _ => return strip_os_error(&error.to_string()),
    };
    text.to_string()
}

/// "Name or service not known (os error -2)" -> "Name or service not known".
pub(crate) fn strip_os_error(text: &str) -> String {
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_statuses_are_answers() {
        assert!(matches!(Failure::of(&Status::not_found("no VM named web9")), Failure::Answer));
        assert!(matches!(Failure::of(&Status::unavailable("no leader")), Failure::Unavailable));
    }

    #[test]
    fn connect_errors_were_never_sent() {
        let io = io::Error::from(io::ErrorKind::ConnectionRefused);
        let status = Status::from_error(Box::new(ConnectError(Box::new(io))));
        match Failure::of(&status) {
            Failure::NotSent(reason) => assert_eq!(reason, "connection refused"),
            _ => panic!("a connect error must count as not sent"),
        }
    }

    #[test]
    fn timeouts_may_have_been_received() {
        let status = Status::from_error(Box::new(TimeoutExpired(())));
        assert!(matches!(Failure::of(&status), Failure::Lost(_)));
    }

    /// A local read asks the first endpoint and nobody else, even when it cannot be reached.
    #[test]
    fn reads_here_never_fall_back_to_another_node() {
        // A port nothing listens on: bound, then released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        other.set_nonblocking(true).unwrap();
        let endpoints = Endpoints::parse(&format!("{closed},{}", other.local_addr().unwrap())).unwrap();
        let nodes = Nodes::new(endpoints, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(nodes.here().to_string(), closed.to_string());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result: Result<()> = runtime.block_on(nodes.read_here(|channel| async move {
            drop(channel);
            Ok(Response::new(()))
        }));
        let error = result.unwrap_err().to_string();
        assert_eq!(error, format!("could not reach {closed}: connection refused"));
        let asked = other.accept();
        assert!(matches!(&asked, Err(e) if e.kind() == io::ErrorKind::WouldBlock), "the second node was asked");
    }

    /// A listener whose process never accepts: the kernel completes the TCP handshake (as for a
    /// SIGSTOPped corrald) and nothing ever comes back.
    fn silent_node() -> (std::net::TcpListener, Endpoint) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::parse(&listener.local_addr().unwrap().to_string()).unwrap();
        (listener, endpoint)
    }

    /// A node that takes one connection, sends `first` (an empty HTTP/2 SETTINGS frame is what
    /// a server says first) and keeps the connection open until the test ends.
    fn node_that_says(first: &'static [u8]) -> (std::thread::JoinHandle<()>, Endpoint) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::parse(&listener.local_addr().unwrap().to_string()).unwrap();
        let node = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(first).unwrap();
            if !first.is_empty() {
                // Until the client hangs up.
                let _ = conn.read_to_end(&mut Vec::new());
            }
        });
        (node, endpoint)
    }

    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_node_that_accepts_but_never_speaks_is_not_reached() {
        let (_listener, silent) = silent_node();
        let reached =
            runtime().block_on(connect(&silent, &Dial::Plain, Some(REQUEST_TIMEOUT), Duration::from_millis(300)));
        assert_eq!(reached.err().as_deref(), Some("no answer within 300ms"));
    }

    #[test]
    fn a_node_that_speaks_is_reached_and_one_that_hangs_up_is_not() {
        let (node, speaking) = node_that_says(SETTINGS);
        let reached =
            runtime().block_on(connect(&speaking, &Dial::Plain, Some(REQUEST_TIMEOUT), Duration::from_secs(20)));
        assert!(reached.is_ok(), "{:?}", reached.err());
        drop(reached);
        node.join().unwrap();

        let (node, mute) = node_that_says(b"");
        let reached = runtime().block_on(connect(&mute, &Dial::Plain, Some(REQUEST_TIMEOUT), Duration::from_secs(20)));
        // Closed with our greeting unread, the kernel may reset the connection instead. Once in
        // a loaded `make test` the hang-up was seen only at the deadline: still not reached.
        let reason = reached.err();
        assert!(
            matches!(reason.as_deref(), Some("connection closed" | "connection reset" | "no answer within 20s")),
            "{reason:?}"
        );
        node.join().unwrap();
    }

    /// Even a write that must never be sent twice moves on from a silent node: it was never
    /// sent there.
    #[test]
    fn a_write_skips_a_silent_node_without_sending_to_it() {
        let (_listener, silent) = silent_node();
        let (node, speaking) = node_that_says(SETTINGS);
        let endpoints = Endpoints::parse(&format!("{silent},{speaking}")).unwrap();
        let nodes = Nodes::new(endpoints, Duration::from_millis(300));
        let mut sent = 0;
        let result: Result<()> = runtime().block_on(nodes.write_once(|channel| {
            sent += 1;
            async move {
                drop(channel);
                Ok(Response::new(()))
            }
        }));
        assert!(result.is_ok(), "{:?}", result.err());
        assert_eq!(sent, 1, "the write was sent to the silent node too");
        node.join().unwrap();
    }

    /// The short deadline is for reaching a node: once it has spoken, a slow answer (a read
    /// waiting for an election, a long clone) gets the request's whole time and is sent once.
    #[test]
    fn a_node_that_spoke_is_not_cut_short() {
        let (node, speaking) = node_that_says(SETTINGS);
        let patience = Duration::from_millis(100);
        let nodes = Nodes::new(Endpoints::parse(&speaking.to_string()).unwrap(), patience);
        let mut sent = 0;
        let result: Result<&str> = runtime().block_on(nodes.write(|channel, _| {
            sent += 1;
            async move {
                // Stands for the server taking its time; the channel stays in use meanwhile.
                tokio::time::sleep(patience * 5).await;
                drop(channel);
                Ok(Response::new("done"))
            }
        }));
        assert_eq!(result.ok(), Some("done"));
        assert_eq!(sent, 1);
        node.join().unwrap();
    }

    #[test]
    fn os_error_numbers_are_dropped() {
        assert_eq!(strip_os_error("Name or service not known (os error -2)"), "Name or service not known");
    }
}
