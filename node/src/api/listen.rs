//! The connections corrald serves: one TCP port that takes both TLS (the first byte of a
//! ClientHello) and plaintext HTTP/2 (an older member, until the cluster raises its level; the
//! API then tells a plaintext client what it lacks), and the local unix socket of this host's
//! root. Each connection carries what the handlers need to know of its caller: the address, and
//! the certificate's identity or the local socket.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use corral_proto::tls::TLS_HANDSHAKE;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::tls::{identity, CertIdentity, Live};

/// How long a client may take to open TLS before its connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection reached this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Plaintext TCP: no identity.
    Plain,
    /// TLS; the client's certificate identity when it sent one (checked against the CA).
    Tls(Option<CertIdentity>),
    /// The local socket: this host's root.
    Local,
}

/// What a handler learns of its connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: Option<SocketAddr>,
    pub via: Via,
}

pub enum Conn {
    Plain(TcpStream, SocketAddr),
    Tls(Box<TlsStream<TcpStream>>, SocketAddr, Option<CertIdentity>),
    Local(UnixStream),
}

impl Conn {
    /// What a handler learns of this connection.
    pub fn info(&self) -> ConnInfo {
        self.connect_info()
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Plain(_, a) => ConnInfo { peer: Some(*a), via: Via::Plain },
            Conn::Tls(_, a, who) => ConnInfo { peer: Some(*a), via: Via::Tls(who.clone()) },
            Conn::Local(_) => ConnInfo { peer: None, via: Via::Local },
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($s, _) => $e,
            Conn::Tls($s, _, _) => $e,
            Conn::Local($s) => $e,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _, _) => s.is_write_vectored(),
            Conn::Local(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Opens the local socket at `path`, mode 0600 (a stale socket file of an earlier run is
/// replaced; anything else at that path is refused).
pub fn bind_local(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("{} exists and is not a socket: move it aside or give another --socket", path.display());
        }
        std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    // Made under a umask that lets no one else in between bind and chmod.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("cannot restrict {}: {e}", path.display()))?;
    Ok(listener)
}

/// The connections of both listeners, TLS opened, as tonic's incoming stream.
pub fn incoming(
    tcp: TcpListener,
    local: UnixListener,
    tls: Arc<Live>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let tcp_tx = tx.clone();
    tokio::spawn(async move {
        loop {
            let (stream, addr) = match tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Small replies would otherwise wait for delayed ACKs (40 ms stalls under load).
            let _ = stream.set_nodelay(true);
            let (tx, tls) = (tcp_tx.clone(), tls.clone());
            tokio::spawn(async move {
                if let Some(conn) = open(stream, addr, &tls).await {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
            if tcp_tx.is_closed() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match local.accept().await {
                Ok((stream, _)) => {
                    if tx.send(Ok(Conn::Local(stream))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("accept on the local socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Looks at a new TCP connection's first byte: a TLS hello is answered with TLS (when this node
/// has its certificate), anything else is served as plaintext.
async fn open(stream: TcpStream, addr: SocketAddr, tls: &Live) -> Option<Conn> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return None;
    }
    if first[0] != TLS_HANDSHAKE {
        return Some(Conn::Plain(stream, addr));
    }
    let Some(config) = tls.server_config() else {
        tracing::debug!(%addr, "a TLS client, but this node has no certificate yet");
        return None;
    };
    let accepted =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsAcceptor::from(config).accept(stream)).await;
    match accepted {
        Ok(Ok(s)) => {
            let who = s.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| identity(c));
            Some(Conn::Tls(Box::new(s), addr, who))
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, "TLS handshake failed: {e}");
            None
        }
        Err(_) => None,
    }
}
