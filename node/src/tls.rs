//! The cluster's certificates on this node. Bootstrap makes the cluster CA (its key stays on the
//! voters, in a 0600 file); every node has a key of its own, made here, and a certificate that the
//! leader signs from its CSR (at join, at the level raise, and before it expires); users get
//! client certificates (`cluster credentials`). The files live in `<data-dir>/tls/`, PEM, so that
//! an operator's tools read them as they are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_proto::tls::{pem_certs, pem_key, ClusterVerifier, ALPN_H2};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The organisation of a node's certificate subject; a user's is [`USER_ORG`].
pub const NODE_ORG: &str = "corral-node";
pub const USER_ORG: &str = "corral-user";
/// A certificate is renewed once less than this share of its life is left.
pub const RENEW_AT_REMAINING: f64 = 1.0 / 3.0;
const CA_YEARS: i64 = 10;

/// Who a verified certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    Node(String),
    /// A user's certificate, and the creation time (Unix ms) of the user it was made for: one
    /// made for an earlier user of that name is not the current one's.
    User {
        name: String,
        made_ms: Option<i64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {why}")]
    Bad { what: String, why: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn bad(what: &str, why: impl std::fmt::Display) -> TlsError {
    TlsError::Bad { what: what.to_string(), why: why.to_string() }
}

fn days_from_now(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(days)
}

/// How far before its signing a certificate is valid from (clocks differ).
const BACKDATE: time::Duration = time::Duration::hours(1);

fn an_hour_ago() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - BACKDATE
}

/// A new cluster CA for cluster `name`: (certificate PEM, key PEM).
pub fn make_ca(name: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate().map_err(|e| bad("CA key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("Corral cluster {name} CA"));
    params.distinguished_name.push(DnType::OrganizationName, "corral");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = an_hour_ago();
    params.not_after = days_from_now(365 * CA_YEARS);
    let cert = params.self_signed(&key).map_err(|e| bad("CA certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new key and a CSR for it: (key PEM, CSR PEM). The signer sets the names; the CSR proves
/// only that its sender holds the key.
pub fn key_and_csr() -> Result<(String, String), TlsError> {
    let key = KeyPair::generate().map_err(|e| bad("key", e))?;
    let csr = CertificateParams::default().serialize_request(&key).map_err(|e| bad("CSR", e))?;
    Ok((key.serialize_pem(), csr.pem().map_err(|e| bad("CSR", e))?))
}

/// What a certificate is for.
pub enum Role<'a> {
    /// A node named `name` reachable at `addresses` (`host:port`): server and client.
    Node { name: &'a str, addresses: &'a [String] },
    /// A user: client only. `made_ms`: when the user was made, written into the certificate
    /// (its OU), so that it stands for this user and not an earlier one of that name.
    User { name: &'a str, made_ms: i64 },
}

/// Signs `csr_pem` with the CA for `role`, valid for `days`. Whatever names the CSR asks for
/// are ignored: the role gives them.
pub fn sign(ca_pem: &str, ca_key_pem: &str, csr_pem: &str, role: Role<'_>, days: u32) -> Result<String, TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| bad("the CA key", e))?;
    let ca = CertificateParams::from_ca_cert_pem(ca_pem)
        .map_err(|e| bad("the CA certificate", e))?
        .self_signed(&ca_key)
        .map_err(|e| bad("the CA certificate", e))?;
    let mut req = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| bad("csr", e))?;
    let mut params = CertificateParams::default();
    params.not_before = an_hour_ago();
    params.not_after = days_from_now(days.into());
    params.distinguished_name = DistinguishedName::new();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    match role {
        Role::Node { name, addresses } => {
            params.distinguished_name.push(DnType::CommonName, name);
            params.distinguished_name.push(DnType::OrganizationName, NODE_ORG);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let mut sans = vec![SanType::DnsName(name.try_into().map_err(|e| bad("node name", e))?)];
            for a in addresses {
                let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h).trim_matches(['[', ']']);
                match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => sans.push(SanType::IpAddress(ip)),
                    Err(_) => {
                        if let Ok(dns) = host.try_into() {
                            sans.push(SanType::DnsName(dns));
                        }
                    }
                }
            }
            params.subject_alt_names = sans;
        }
        Role::User { name, made_ms } => {
            params.distinguished_name.push(DnType::CommonName, name);
            params.distinguished_name.push(DnType::OrganizationName, USER_ORG);
            params.distinguished_name.push(DnType::OrganizationalUnitName, made_ms.to_string());
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    req.params = params;
    let cert = req.signed_by(&ca, &ca_key).map_err(|e| bad("signing", e))?;
    Ok(cert.pem())
}

/// The identity a certificate (already verified against the CA) names.
pub fn identity(der: &[u8]) -> Option<CertIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let org = subject.iter_organization().next()?.as_str().ok()?;
    match org {
        NODE_ORG => Some(CertIdentity::Node(cn)),
        USER_ORG => Some(CertIdentity::User {
            name: cn,
            made_ms: subject.iter_organizational_unit().next().and_then(|u| u.as_str().ok()?.parse().ok()),
        }),
        _ => None,
    }
}

/// Whether a certificate valid from `from` to `to` (Unix ms) is to be renewed at `now`: once
/// less than [`RENEW_AT_REMAINING`] of its life is left (or it has ended).
pub fn renewal_due(from: i64, to: i64, now: i64) -> bool {
    let left = (to - now) as f64 / (to - from).max(1) as f64;
    left < RENEW_AT_REMAINING
}

/// The fingerprint (`sha256:HEX`) of the CA certificate in `ca_pem`.
pub fn ca_fingerprint(ca_pem: &str) -> Result<String, TlsError> {
    let der = pem_certs(ca_pem).map_err(|e| bad("CA certificate", e))?.remove(0);
    Ok(corral_proto::tls::fingerprint(&der))
}

/// A certificate's validity, Unix milliseconds: (not before, not after).
pub fn validity(cert_pem: &str) -> Result<(i64, i64), TlsError> {
    let der = pem_certs(cert_pem).map_err(|e| bad("certificate", e))?.remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad("certificate", e))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp() * 1000, v.not_after.timestamp() * 1000))
}

/// The files of this node's certificates.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

/// What this node holds: the CA's certificate, maybe its key, and its own certificate and key.
#[derive(Debug, Clone)]
pub struct Material {
    pub ca_pem: String,
    pub ca_key_pem: Option<String>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Files {
    pub fn new(data_dir: &Path) -> Files {
        Files { dir: data_dir.join("tls") }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.path(file)).ok().filter(|s| !s.trim().is_empty())
    }

    /// Writes `text` to `file` atomically, readable by root only when `secret`.
    fn write(&self, file: &str, text: &str, secret: bool) -> Result<(), TlsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| TlsError::Write { path: self.path(file).display().to_string(), source };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self.path(&format!(".{file}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&tmp)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, self.path(file)).map_err(err)
    }

    pub fn load(&self) -> Option<Material> {
        Some(Material {
            ca_pem: self.read("ca.pem")?,
            ca_key_pem: self.read("ca.key"),
            cert_pem: self.read("node.pem")?,
            key_pem: self.read("node.key")?,
        })
    }

    pub fn ca_pem(&self) -> Option<String> {
        self.read("ca.pem")
    }

    pub fn ca_key(&self) -> Option<String> {
        self.read("ca.key")
    }

    pub fn save_ca_key(&self, key_pem: &str) -> Result<(), TlsError> {
        self.write("ca.key", key_pem, true)
    }

    /// Saves the CA and this node's certificate and key (the key first: a certificate is never
    /// on disk without it).
    pub fn save_node(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        self.write("node.key", key_pem, true)?;
        self.write("ca.pem", ca_pem, false)?;
        self.write("node.pem", cert_pem, false)
    }
}

impl Material {
    fn ca_der(&self) -> Result<CertificateDer<'static>, TlsError> {
        Ok(pem_certs(&self.ca_pem).map_err(|e| bad("ca.pem", e))?.remove(0))
    }

    /// This node's chain as it presents it: its certificate, then the CA (a joining node pins it).
    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let mut chain = pem_certs(&self.cert_pem).map_err(|e| bad("node.pem", e))?;
        chain.truncate(1);
        chain.push(self.ca_der()?);
        Ok(chain)
    }

    /// The server side: this node's certificate; a client certificate is asked for and checked
    /// against the CA when sent (a client without one is told what it lacks by the API, not by
    /// a failed handshake).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = corral_proto::tls::provider();
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der()?).map_err(|e| bad("ca.pem", e))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad("client verifier", e))?;
        let key = pem_key(&self.key_pem).map_err(|e| bad("node.key", e))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, key)
            .map_err(|e| bad("node.pem", e))?;
        // HTTP/2 for gRPC (and browsers); HTTP/1.1 for REST clients and a browser's websockets.
        config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side, to other members: trust the CA, present this node's certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier = ClusterVerifier::new(self.ca_der()?).map_err(|e| bad("ca.pem", e))?;
        let key = pem_key(&self.key_pem).map_err(|e| bad("node.key", e))?;
        let config = corral_proto::tls::client_config(Arc::new(verifier), Some((self.chain()?, key)))
            .map_err(|e| bad("TLS", e))?;
        Ok(Arc::new(config))
    }
}

/// This node's certificates in force: read at start, replaced at bootstrap, join and renewal.
pub struct Live {
    files: Files,
    now: std::sync::RwLock<Option<Installed>>,
}

#[derive(Clone)]
struct Installed {
    material: Material,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Live {
    /// Loads what the data dir holds; a node without certificates serves plaintext only.
    pub fn open(data_dir: &Path) -> Live {
        let files = Files::new(data_dir);
        let live = Live { files, now: Default::default() };
        if let Some(m) = live.files.load() {
            if let Err(e) = live.set(m) {
                tracing::error!("this node's certificates in {} cannot be used: {e}", live.files.dir.display());
            }
        }
        live
    }

    fn set(&self, material: Material) -> Result<(), TlsError> {
        let installed = Installed { server: material.server_config()?, client: material.client_config()?, material };
        *self.now.write().expect("tls lock") = Some(installed);
        Ok(())
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.now.read().expect("tls lock").as_ref().map(|i| i.server.clone())
    }

    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.now.read().expect("tls lock").as_ref().map(|i| i.client.clone())
    }

    pub fn material(&self) -> Option<Material> {
        self.now.read().expect("tls lock").as_ref().map(|i| i.material.clone())
    }

    /// Puts a new certificate in force (and on disk first): checked to work before it replaces
    /// the one in force.
    pub fn install(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let material = Material {
            ca_pem: ca_pem.to_string(),
            ca_key_pem: self.files.ca_key(),
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        };
        material.server_config()?;
        self.files.save_node(ca_pem, cert_pem, key_pem)?;
        self.set(material)
    }

    /// Keeps the CA's key (a voter's).
    pub fn install_ca_key(&self, key_pem: &str) -> Result<(), TlsError> {
        KeyPair::from_pem(key_pem).map_err(|e| bad("the CA key", e))?;
        self.files.save_ca_key(key_pem)?;
        if let Some(mut m) = self.material() {
            m.ca_key_pem = Some(key_pem.to_string());
            self.set(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_renewed_with_a_third_of_its_life_left() {
        let day = 86_400_000;
        let (from, to) = (0, 365 * day);
        assert!(!renewal_due(from, to, 0));
        assert!(!renewal_due(from, to, 243 * day));
        assert!(renewal_due(from, to, 244 * day));
        assert!(renewal_due(from, to, 400 * day), "an ended one");
        // A real certificate's dates read back as signed.
        let (ca, ca_key) = make_ca("lab").unwrap();
        let (_, csr) = key_and_csr().unwrap();
        let cert = sign(&ca, &ca_key, &csr, Role::User { name: "u", made_ms: 0 }, 3).unwrap();
        let (from, to) = validity(&cert).unwrap();
        let now = crate::now_ms();
        assert!(!renewal_due(from, to, now));
        assert!(renewal_due(from, to, now + 2 * day + day / 2));
    }

    #[test]
    fn a_signed_node_certificate_names_its_node_and_chains_to_the_ca() {
        let (ca, ca_key) = make_ca("lab").unwrap();
        let (key, csr) = key_and_csr().unwrap();
        let cert =
            sign(&ca, &ca_key, &csr, Role::Node { name: "host2", addresses: &["127.0.0.1:7002".into()] }, 30).unwrap();
        let der = pem_certs(&cert).unwrap().remove(0);
        assert_eq!(identity(&der), Some(CertIdentity::Node("host2".into())));
        let (from, to) = validity(&cert).unwrap();
        assert!((to - from) > 29 * 86_400_000 && (to - from) < 32 * 86_400_000);
        let m = Material { ca_pem: ca.clone(), ca_key_pem: None, cert_pem: cert, key_pem: key };
        m.server_config().unwrap();
        m.client_config().unwrap();
        // A user's certificate is a client's only, and says so.
        let (_, csr) = key_and_csr().unwrap();
        let user = sign(&ca, &ca_key, &csr, Role::User { name: "admin", made_ms: 0 }, 30).unwrap();
        assert_eq!(
            identity(&pem_certs(&user).unwrap()[0]),
            Some(CertIdentity::User { name: "admin".into(), made_ms: Some(0) })
        );
    }
}
