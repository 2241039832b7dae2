//! The credentials file of `cluster credentials`: PEM with the client certificate first, then
//! its key, then the cluster CA's certificate, so that `curl --cert F --key F --cacert F` and
//! grpcurl read it as it is. Written 0600; the key is made here and never leaves this machine.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use corral_proto::tls::{client_config, pem_certs, pem_key, ClusterVerifier};

/// A new key and a CSR for it (PEM each).
pub fn key_and_csr() -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate().map_err(|e| anyhow!("cannot make a key: {e}"))?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| anyhow!("cannot make a certificate request: {e}"))?;
    Ok((key.serialize_pem(), csr))
}

/// Writes the credentials file, mode 0600.
pub fn write(path: &Path, certificate: &str, key: &str, ca: &str, overwrite: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow!("{} exists; give --force to overwrite it", path.display()),
        _ => anyhow!("cannot write {}: {e}", path.display()),
    })?;
    let text = format!("{}\n{}\n{}\n", certificate.trim(), key.trim(), ca.trim());
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The TLS settings of a credentials file: present its certificate, trust its CA.
pub fn load(path: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow!("--credentials: cannot read {}: {e}", path.display()))?;
    let what =
        |why: String| anyhow!("--credentials: {} {why} (write it with `cluster credentials -f FILE`)", path.display());
    let certs = pem_certs(&text).map_err(what)?;
    if certs.len() < 2 {
        bail!(what("holds one certificate; it needs the client's and the cluster CA's".into()));
    }
    let key = pem_key(&text).map_err(what)?;
    let ca = certs.last().cloned().expect("two certificates");
    let verifier = ClusterVerifier::new(ca).map_err(|e| what(format!("has an unusable CA certificate: {e}")))?;
    let config = client_config(Arc::new(verifier), Some((vec![certs[0].clone()], key)))
        .map_err(|e| what(format!("has an unusable certificate or key: {e}")))?;
    Ok(Arc::new(config))
}
