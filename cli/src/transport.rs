//! The connections the CLI opens (TCP, TCP with TLS, or corrald's local socket), watched for
//! the node's first bytes. A frozen corrald's kernel still accepts connections and buffers what
//! we send, so only bytes coming back prove that the process runs; this module reports them and
//! never decides what to do about them.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tonic::codegen::Service;
use tonic::transport::Uri;

/// What a node has said on a connection so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Nothing,
    /// The node sent bytes (an HTTP/2 server sends its settings as soon as it takes a
    /// connection, before it reads a request).
    Spoke,
    /// The connection ended, or failed, before the node said anything.
    Closed(io::ErrorKind),
}

/// How to reach a node.
#[derive(Clone)]
pub enum Dial {
    /// TCP, plaintext: a cluster that does not require TLS (or to be told that it does).
    Plain,
    /// TCP with TLS, presenting the credentials' certificate.
    Tls(Arc<rustls::ClientConfig>),
    /// corrald's local socket on this host.
    Local(PathBuf),
}

/// What a connection's bytes travel over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A connector for tonic that opens connections as `dial` says and reports, through `heard`,
/// the first thing the node does on them.
#[derive(Clone)]
pub struct Watched {
    heard: Arc<watch::Sender<Heard>>,
    dial: Dial,
}

impl Watched {
    pub fn new(dial: Dial) -> (Watched, watch::Receiver<Heard>) {
        let (sender, receiver) = watch::channel(Heard::Nothing);
        (Watched { heard: Arc::new(sender), dial }, receiver)
    }
}

impl Service<Uri> for Watched {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (heard, dial) = (self.heard.clone(), self.dial.clone());
        Box::pin(async move {
            if let Dial::Local(path) = &dial {
                let stream = UnixStream::connect(path).await?;
                let io: Box<dyn Io> = Box::new(Listening { stream: Box::new(stream), heard: Some(heard) });
                return Ok(TokioIo::new(io));
            }
            let (authority, stream) = corral_proto::tls::tcp(&uri).await?;
            let listening = Listening { stream: Box::new(stream), heard: Some(heard) };
            let io: Box<dyn Io> = match dial {
                Dial::Tls(config) => Box::new(corral_proto::tls::handshake(config, &authority, listening).await?),
                _ => Box::new(listening),
            };
            Ok(TokioIo::new(io))
        })
    }
}

/// A stream that reports the first outcome of reading from it, once.
pub struct Listening {
    stream: Box<dyn Io>,
    heard: Option<Arc<watch::Sender<Heard>>>,
}

impl Listening {
    fn report(&mut self, what: Heard) {
        if let Some(heard) = self.heard.take() {
            heard.send_replace(what);
        }
    }
}

impl AsyncRead for Listening {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, room) = (buf.filled().len(), buf.remaining());
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.report(Heard::Spoke),
            // Nothing read into a buffer with room: the node closed the connection.
            Poll::Ready(Ok(())) if room > 0 => this.report(Heard::Closed(io::ErrorKind::UnexpectedEof)),
            Poll::Ready(Err(e)) => this.report(Heard::Closed(e.kind())),
            _ => {}
        }
        poll
    }
}

impl AsyncWrite for Listening {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
