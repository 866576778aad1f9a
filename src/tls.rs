//! The TLS listener's certificate: read from PEM files and checked (a chain,
//! a key that matches its first certificate), served to every handshake
//! from an atomic pointer, and swapped by `reload` (on SIGHUP) for new
//! handshakes without touching open connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Reads and checks a certificate chain and its key. Messages name the
/// files, never their contents.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("cannot read {}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: no usable private key ({e})", key_file.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        format!(
            "{} and {} do not make a certificate with its key ({e})",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// The certificate every new handshake gets; `reload` replaces it.
#[derive(Debug)]
pub struct ReloadableCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl ReloadableCert {
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: ArcSwap::new(load(cert_file, key_file)?),
        })
    }

    /// Reads the files again; on any error the old certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = load(&self.cert_file, &self.key_file)?;
        self.current.store(fresh);
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
