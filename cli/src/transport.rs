//! The TCP connections the CLI opens, watched for the node's first bytes. A frozen corrald's
//! kernel still accepts connections and buffers what we send, so only bytes coming back prove
//! that the process runs; this module reports them and never decides what to do about them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
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

/// A connector for tonic that opens plain TCP connections and reports, through `heard`, the
/// first thing the node does on them.
#[derive(Clone)]
pub struct Watched {
    heard: Arc<watch::Sender<Heard>>,
}

impl Watched {
    pub fn new() -> (Watched, watch::Receiver<Heard>) {
        let (sender, receiver) = watch::channel(Heard::Nothing);
        (Watched { heard: Arc::new(sender) }, receiver)
    }
}

impl Service<Uri> for Watched {
    type Response = TokioIo<Listening>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let heard = self.heard.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the address has no host"))?;
            let stream = TcpStream::connect(authority.as_str()).await?;
            // Requests are small and answered at once; batching them would only add latency.
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(Listening { stream, heard: Some(heard) }))
        })
    }
}

/// A TCP stream that reports the first outcome of reading from it, once.
pub struct Listening {
    stream: TcpStream,
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
