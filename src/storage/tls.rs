//! TLS for Swift and Keystone: rustls, with the certificates this host trusts
//! (the system CA bundle) plus `OS_CACERT` when set, as OpenStack clients do.
//! There is deliberately no way to turn verification off.

use crate::error::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// Debian's bundle (ca-certificates), and where other systems keep theirs.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

pub fn client_config(cacert: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|path| path.is_file());
    if let Some(bundle) = system {
        // A bundle has the odd certificate rustls cannot use; skip those.
        let added = add_pem(&mut roots, &bundle, false)?;
        log::debug!("{added} system CA certificates from {}", bundle.display());
    }
    if let Some(cacert) = cacert {
        add_pem(&mut roots, cacert, true)?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::other(format!("TLS set-up failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Add the PEM certificates of `path`; with `strict`, a file that is missing
/// or holds no usable certificate is a usage error (it was asked for).
fn add_pem(roots: &mut RootCertStore, path: &Path, strict: bool) -> Result<usize> {
    let bad = |what: String| Error::usage(format!("OS_CACERT {}: {what}", path.display()));
    let certs = match CertificateDer::pem_file_iter(path) {
        Ok(iter) => iter.filter_map(|c| c.ok()).collect::<Vec<_>>(),
        Err(e) if strict => return Err(bad(format!("cannot read it ({e})"))),
        Err(_) => return Ok(0),
    };
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if strict && added == 0 {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cacert_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("rb-tls-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(Some(&path)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(client_config(Some(Path::new("/nonexistent/ca.pem"))).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(client_config(None).is_ok());
    }
}
