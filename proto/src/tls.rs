//! How a client reaches a node over TLS: the CLI and the members themselves use it. A node's
//! certificate is checked against the cluster CA and its purpose (server), not against the name
//! it was dialled by: every node of a cluster is as good as another, and operators dial nodes by
//! whatever address reaches them. A joining node has no CA yet: it checks the CA that the node
//! presents against the fingerprint its join token carries before it sends the token's secret.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::codegen::Service;
use tonic::transport::Uri;

/// The ALPN protocol of gRPC over TLS.
pub const ALPN_H2: &[u8] = b"h2";
/// A TLS record's first byte when a client says hello; an HTTP/2 client's preface starts with 'P'.
pub const TLS_HANDSHAKE: u8 = 0x16;

/// A CA certificate's fingerprint as tokens and operators write it: `sha256:` and 64 hex digits.
pub fn fingerprint(ca_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(ca_der)))
}

/// rustls with ring: pure Rust and assembly, no C toolchain or cmake at build time (the
/// aws-lc-rs provider needs both). rustls 0.23.48 deprecates ring's provider for lacking
/// post-quantum key exchange; that is the trade, until ring has it.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks a node's certificate against a CA, ignoring the name it was dialled by.
#[derive(Debug)]
pub struct ClusterVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ClusterVerifier {
    pub fn new(ca: CertificateDer<'static>) -> Result<ClusterVerifier, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca)?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(ClusterVerifier { inner })
    }
}

impl ServerCertVerifier for ClusterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts a node whose chain ends in the CA with fingerprint `pin` and whose certificate that
/// CA signed; keeps the CA it saw, for the joining node to trust from then on.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: String,
    seen: Mutex<Option<CertificateDer<'static>>>,
    schemes: Vec<SignatureScheme>,
}

impl PinnedVerifier {
    pub fn new(pin: &str) -> Arc<PinnedVerifier> {
        let schemes = provider().signature_verification_algorithms.supported_schemes();
        Arc::new(PinnedVerifier { pin: pin.to_ascii_lowercase(), seen: Mutex::new(None), schemes })
    }

    /// The CA the node presented, once the handshake accepted it.
    pub fn ca(&self) -> Option<CertificateDer<'static>> {
        self.seen.lock().expect("pinned CA lock").clone()
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .last()
            .ok_or_else(|| rustls::Error::General("the node sent no CA certificate with its own".into()))?;
        let found = fingerprint(ca);
        if found != self.pin {
            return Err(rustls::Error::General(format!(
                "the node's CA is {found}, not the {} that the join token names",
                self.pin
            )));
        }
        let ca = ca.clone().into_owned();
        ClusterVerifier::new(ca.clone())?.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        *self.seen.lock().expect("pinned CA lock") = Some(ca);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// A client's TLS settings: trust `verifier`; present `identity` (a certificate chain and its
/// key) when given.
pub fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// Reads the certificates of a PEM text, in order.
pub fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// Reads the first private key of a PEM text.
pub fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("no private key in it: {e}"))
}

/// Opens TLS on an established stream to `authority` (`host:port`).
pub async fn handshake<S>(
    config: Arc<ClientConfig>,
    authority: &str,
    stream: S,
) -> io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .or_else(|_| ServerName::try_from("corral-node".to_string()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config).connect(name, stream).await
}

/// A TCP connection to `uri`'s `host:port` without Nagle's delay (requests are small and
/// answered at once), and that authority.
pub async fn tcp(uri: &Uri) -> io::Result<(String, TcpStream)> {
    let authority = uri
        .authority()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the address has no host"))?
        .to_string();
    let stream = TcpStream::connect(&authority).await?;
    stream.set_nodelay(true)?;
    Ok((authority, stream))
}

/// A connector for tonic: TCP (no Nagle), then TLS with `config`.
#[derive(Clone)]
pub struct TlsConnect {
    config: Arc<ClientConfig>,
}

impl TlsConnect {
    pub fn new(config: Arc<ClientConfig>) -> TlsConnect {
        TlsConnect { config }
    }
}

impl Service<Uri> for TlsConnect {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let (authority, stream) = tcp(&uri).await?;
            Ok(TokioIo::new(handshake(config, &authority, stream).await?))
        })
    }
}
