//! Which server certificates are trusted: the system's roots plus the CA bundles the user
//! named. The rustls configuration for the data channel is built here, once; the SDK's client
//! is given the same certificates ([`Trust::bundle_pem`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::NetError;

/// Which setting named a CA bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleOrigin {
    /// `[aws] ca_bundle` in ssmtui's config.
    Config,
    /// The `AWS_CA_BUNDLE` environment variable.
    Env,
    /// `ca_bundle` in the profile's section of the shared config file.
    Profile,
}

impl fmt::Display for BundleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "[aws] ca_bundle",
            Self::Env => "AWS_CA_BUNDLE",
            Self::Profile => "the profile's ca_bundle",
        })
    }
}

/// A CA bundle in use.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The file.
    pub path: PathBuf,
    /// Which setting named it.
    pub origin: BundleOrigin,
    /// Its certificates, DER.
    certs: Vec<CertificateDer<'static>>,
    /// Its text, for the SDK's trust store.
    pem: Vec<u8>,
}

impl Bundle {
    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether it holds none (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// The certificates trusted for TLS to AWS (and to an `https://` proxy).
pub struct Trust {
    bundles: Vec<Bundle>,
    tls: OnceLock<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("bundles", &self.bundles)
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// The system roots only.
    pub fn system() -> Self {
        Self::with_bundles(Vec::new())
    }

    fn with_bundles(bundles: Vec<Bundle>) -> Self {
        Self {
            bundles,
            tls: OnceLock::new(),
        }
    }

    /// The system roots, plus `config` (`[aws] ca_bundle`), plus `AWS_CA_BUNDLE` or else
    /// `profile` (the profile's `ca_bundle`). A named bundle that cannot be read or holds no
    /// certificate is an error: trusting less than the user asked for would fail later and
    /// less clearly.
    pub fn resolve(config: Option<&Path>, profile: Option<&Path>) -> Result<Self, NetError> {
        let mut named: Vec<(PathBuf, BundleOrigin)> = Vec::new();
        if let Some(path) = config {
            named.push((path.to_owned(), BundleOrigin::Config));
        }
        match std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()) {
            Some(path) => named.push((PathBuf::from(path), BundleOrigin::Env)),
            None => {
                if let Some(path) = profile {
                    named.push((path.to_owned(), BundleOrigin::Profile));
                }
            }
        }
        let bundles = named
            .into_iter()
            .map(|(path, origin)| load_bundle(path, origin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with_bundles(bundles))
    }

    /// The bundles in use, in the order they were named.
    pub fn bundles(&self) -> &[Bundle] {
        &self.bundles
    }

    /// Each bundle's PEM text, for the SDK's trust store (which also keeps the system roots).
    pub fn bundle_pem(&self) -> impl Iterator<Item = &[u8]> {
        self.bundles.iter().map(|b| b.pem.as_slice())
    }

    /// "the system roots", or "the system roots and /etc/corp.pem (AWS_CA_BUNDLE, 2
    /// certificates)".
    pub fn describe(&self) -> String {
        let mut text = "the system roots".to_owned();
        for b in &self.bundles {
            let n = b.len();
            text.push_str(&format!(
                " and {} ({}, {n} certificate{})",
                b.path.display(),
                b.origin,
                if n == 1 { "" } else { "s" }
            ));
        }
        text
    }

    /// The rustls configuration for the data channel and `https://` proxies, built on first
    /// use (reading the system roots takes a few milliseconds, and a plain `ws://` sandbox
    /// never needs it).
    pub fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        if let Some(config) = self.tls.get() {
            return Ok(Arc::clone(config));
        }
        let config = {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!(error = %e, "a system root certificate could not be read");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "system roots loaded");
            for b in &self.bundles {
                let (added, ignored) = roots.add_parsable_certificates(b.certs.iter().cloned());
                tracing::debug!(path = %b.path.display(), added, ignored, "CA bundle loaded");
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| NetError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth()
        };
        Ok(Arc::clone(self.tls.get_or_init(|| Arc::new(config))))
    }
}

fn load_bundle(path: PathBuf, origin: BundleOrigin) -> Result<Bundle, NetError> {
    let fail = |reason: String| NetError::Bundle {
        path: path.clone(),
        origin,
        reason,
    };
    let pem = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("it is not a PEM file of certificates ({e})")))?;
    if certs.is_empty() {
        return Err(fail("it holds no PEM certificate".to_owned()));
    }
    Ok(Bundle {
        path,
        origin,
        certs,
        pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = include_str!("../../tests/fixtures/test-ca.pem");

    #[test]
    fn a_bundle_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, CA).unwrap();
        let b = load_bundle(good.clone(), BundleOrigin::Config).unwrap();
        assert_eq!(b.len(), 1);

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_bundle(empty, BundleOrigin::Env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(from AWS_CA_BUNDLE)") && e.contains("no PEM certificate"),
            "{e}"
        );

        let missing = dir.path().join("missing.pem");
        let e = load_bundle(missing, BundleOrigin::Profile)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the profile's ca_bundle"), "{e}");
    }

    #[test]
    fn describe_names_each_bundle_and_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, CA).unwrap();
        let trust =
            Trust::with_bundles(vec![load_bundle(path.clone(), BundleOrigin::Env).unwrap()]);
        assert_eq!(
            trust.describe(),
            format!(
                "the system roots and {} (AWS_CA_BUNDLE, 1 certificate)",
                path.display()
            )
        );
        assert_eq!(Trust::system().describe(), "the system roots");
        // The configuration builds, with the bundle among the roots.
        assert!(trust.tls_config().is_ok());
    }
}
