//! `ssmtui sandbox --tls`: HTTPS and `wss://` on the sandbox's listener, with a leaf
//! certificate (for `127.0.0.1`, `::1` and `localhost`) signed by a CA the sandbox generates
//! once and keeps in its directory (`ca.pem`, `ca.key`, private to the user), so a client
//! that trusts `ca.pem` (`AWS_CA_BUNDLE`) keeps trusting restarted sandboxes.
//!
//! The CA's key stays on disk with mode 0600; it signs nothing but loopback names. The leaf is
//! made fresh at every start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The sandbox's CA, loaded or created.
pub struct SandboxCa {
    dir: PathBuf,
    key: KeyPair,
}

impl std::fmt::Debug for SandboxCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The CA's distinguished name and usages: the same every time, so a reloaded key signs leaves
/// that chain to the `ca.pem` written when it was made.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "ssmtui sandbox CA (loopback only)");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

impl SandboxCa {
    /// Loads the CA from `dir`, or creates it there.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.pem");
        if key_path.exists() && cert_path.exists() {
            let pem = std::fs::read_to_string(&key_path)?;
            let key = KeyPair::from_pem(&pem).map_err(|e| tls_error("the sandbox CA key", e))?;
            return Ok(Self {
                dir: dir.to_owned(),
                key,
            });
        }
        std::fs::create_dir_all(dir)?;
        let key = KeyPair::generate().map_err(|e| tls_error("a CA key", e))?;
        let cert = ca_params()
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| tls_error("the CA certificate", e))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, cert.pem())?;
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    /// `ca.pem`: what clients trust (`AWS_CA_BUNDLE`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server configuration with a fresh leaf for the loopback names.
    pub fn server_config(&self) -> std::io::Result<Arc<rustls::ServerConfig>> {
        let leaf_key = KeyPair::generate().map_err(|e| tls_error("a leaf key", e))?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .map_err(|e| tls_error("the leaf", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "ssmtui sandbox");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::new(ca_params().map_err(|e| tls_error("the CA", e))?, &self.key);
        let leaf = params
            .signed_by(&leaf_key, &issuer)
            .map_err(|e| tls_error("the leaf", e))?;
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| tls_error("the leaf key", e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS versions", e))?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key_der)
            .map_err(|e| tls_error("the leaf certificate", e))?;
        Ok(Arc::new(config))
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SandboxCa::load_or_create(dir.path()).unwrap();
        let pem = std::fs::read(first.cert_path()).unwrap();
        assert!(first.server_config().is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the CA key is private");
        }
        let again = SandboxCa::load_or_create(dir.path()).unwrap();
        assert_eq!(std::fs::read(again.cert_path()).unwrap(), pem);
        assert!(again.server_config().is_ok());
    }
}
