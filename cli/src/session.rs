//! Saved logins. `corral login` keeps one file per cluster under `~/.config/corral/sessions/`
//! (`$XDG_CONFIG_HOME/corral` when set), named by its CA's fingerprint, mode 0600: the session's
//! secret, its user and expiry, the endpoint and the CA certificate. `default.json` names the
//! endpoint of the last login, which later calls use when not told another. A call uses the
//! session of the cluster whose CA the node presents ([`Chooser`]), so one machine may hold
//! logins to several clusters.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _, Result};
use corral_proto::tls::{fingerprint, pem_certs, provider, ClusterVerifier};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub endpoint: String,
    pub user: String,
    pub token: String,
    pub expires_unix_ms: i64,
    /// PEM.
    pub ca: String,
    /// `sha256:HEX` of the CA.
    pub fingerprint: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Defaults {
    endpoint: String,
}

/// `$XDG_CONFIG_HOME/corral` or `~/.config/corral`.
pub fn dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("corral"))
}

fn sessions_dir() -> Option<PathBuf> {
    dir().map(|d| d.join("sessions"))
}

fn file_of(fingerprint: &str) -> Option<PathBuf> {
    let name = fingerprint.trim_start_matches("sha256:");
    sessions_dir().map(|d| d.join(format!("{name}.json")))
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot make {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Saves a login and makes its endpoint the default.
pub fn save(s: &Session) -> Result<PathBuf> {
    let path = file_of(&s.fingerprint).ok_or_else(|| anyhow!("neither HOME nor XDG_CONFIG_HOME is set"))?;
    write_private(&path, &serde_json::to_string_pretty(s)?)?;
    if let Some(d) = dir() {
        write_private(&d.join("default.json"), &serde_json::to_string(&Defaults { endpoint: s.endpoint.clone() })?)?;
    }
    Ok(path)
}

/// Every saved login that has not expired.
pub fn load_all() -> Vec<Session> {
    let now = chrono::Utc::now().timestamp_millis();
    saved().into_iter().filter(|s| s.expires_unix_ms > now).collect()
}

/// Every saved login, expired ones too.
pub fn saved() -> Vec<Session> {
    let Some(dir) = sessions_dir() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<Session> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<Session>(&t).ok())
        .collect();
    out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    out
}

/// The endpoint of the last login, if any.
pub fn default_endpoint() -> Option<String> {
    let text = std::fs::read_to_string(dir()?.join("default.json")).ok()?;
    serde_json::from_str::<Defaults>(&text).ok().map(|d| d.endpoint).filter(|e| !e.is_empty())
}

/// Forgets a saved login.
pub fn remove(fingerprint: &str) -> Result<()> {
    if let Some(path) = file_of(fingerprint) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!("cannot remove {}: {e}", path.display())),
        }
    }
    Ok(())
}

/// The CA certificate of a PEM text (the last certificate in it).
pub fn ca_der(pem: &str) -> Result<CertificateDer<'static>> {
    pem_certs(pem).map_err(|e| anyhow!("{e}"))?.pop().ok_or_else(|| anyhow!("no certificate"))
}

/// Trusts a node whose certificate one of several CAs signed, and remembers which one, so
/// that the call carries that cluster's session ([`Bearer`]).
#[derive(Debug)]
pub struct Chooser {
    options: Vec<(ClusterVerifier, Option<String>)>,
    chosen: Arc<Mutex<Option<String>>>,
}

impl Chooser {
    /// `options`: each CA, with the secret to send to its nodes (if any).
    pub fn new(
        options: Vec<(CertificateDer<'static>, Option<String>)>,
    ) -> Result<(Chooser, Arc<Mutex<Option<String>>>)> {
        let chosen = Arc::new(Mutex::new(None));
        let options = options
            .into_iter()
            .map(|(ca, token)| Ok((ClusterVerifier::new(ca).map_err(|e| anyhow!("a saved CA: {e}"))?, token)))
            .collect::<Result<Vec<_>>>()?;
        Ok((Chooser { options, chosen: chosen.clone() }, chosen))
    }
}

impl Chooser {
    fn first(&self) -> Result<&ClusterVerifier, rustls::Error> {
        self.options.first().map(|(v, _)| v).ok_or_else(|| rustls::Error::General("no CA to trust".into()))
    }
}

impl ServerCertVerifier for Chooser {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::General("no saved login trusts this node's CA".into());
        for (verifier, token) in &self.options {
            match verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Ok(ok) => {
                    *self.chosen.lock().unwrap_or_else(|e| e.into_inner()) = token.clone();
                    return Ok(ok);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    // A signature does not depend on which CA is trusted: every option checks it alike.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.first()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.first()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.first().map(|v| v.supported_verify_schemes()).unwrap_or_default()
    }
}

/// Learns a node's CA without trusting it: the handshake stops once the CA is seen, before
/// anything is sent. `login` shows its fingerprint and asks before it trusts it.
#[derive(Debug, Default)]
pub struct Observer {
    pub seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Observer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = intermediates.last().map(|c| c.clone().into_owned());
        Err(rustls::Error::General("the CA is only looked at here".into()))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not trusted".into()))
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not trusted".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// Sends `authorization: Bearer TOKEN` with every call: a fixed token (an API token), or the
/// saved session of the cluster the connection turned out to reach.
#[derive(Clone, Default)]
pub struct Bearer {
    fixed: Option<MetadataValue<Ascii>>,
    chosen: Option<Arc<Mutex<Option<String>>>>,
}

impl Bearer {
    pub fn none() -> Bearer {
        Bearer::default()
    }

    pub fn fixed(token: &str) -> Result<Bearer> {
        let value = format!("Bearer {}", token.trim()).parse().map_err(|_| anyhow!("the API token is not text"))?;
        Ok(Bearer { fixed: Some(value), chosen: None })
    }

    pub fn chosen(chosen: Arc<Mutex<Option<String>>>) -> Bearer {
        Bearer { fixed: None, chosen: Some(chosen) }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = match (&self.fixed, &self.chosen) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(c)) => {
                c.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|t| format!("Bearer {t}").parse().ok())
            }
            _ => None,
        };
        if let Some(v) = value {
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

/// The fingerprint of a CA in PEM.
pub fn fingerprint_of(pem: &str) -> Result<String> {
    Ok(fingerprint(&ca_der(pem)?))
}
