//! TLS for Swift and Keystone: rustls, with the certificates this host trusts
//! (the system CA bundle) plus `OS_CACERT` when set, as OpenStack clients do.
//! There is deliberately no way to turn verification off.
//!
//! ureq is built without its own TLS: its rustls glue would link Mozilla's
//! root certificates that this tool never uses. The few lines of `Connector`
//! take their place. TLS 1.2 and 1.3; a build without the default `tls12`
//! feature speaks TLS 1.3 only.

use crate::error::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use ureq::ReadWrite;

/// Debian's bundle (ca-certificates), and where other systems keep theirs.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What the HTTP agent calls to wrap each new connection in TLS.
pub struct Connector(pub Arc<ClientConfig>);

impl ureq::TlsConnector for Connector {
    fn connect(
        &self,
        host: &str,
        mut io: Box<dyn ReadWrite>,
    ) -> std::result::Result<Box<dyn ReadWrite>, ureq::Error> {
        // An IPv6 literal comes bracketed from the URL; the name is without.
        let name = host.trim_start_matches('[').trim_end_matches(']');
        // Neither a bad name nor a configuration rustls refuses will mend.
        let server = ServerName::try_from(name.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                HandshakeRefused(format!("TLS server name {host}: {e}")),
            )
        })?;
        let mut session = ClientConnection::new(self.0.clone(), server).map_err(|e| {
            io::Error::other(HandshakeRefused(format!("TLS set-up for {host}: {e}")))
        })?;
        // Handshake now, so that a certificate problem is reported as the
        // connection failing rather than as a broken first request.
        let mut socket = Deadlined::new(&mut io);
        while session.is_handshaking() {
            session
                .complete_io(&mut socket)
                .map_err(|e| handshake_failed(host, e))?;
        }
        socket.hand_back().map_err(|e| handshake_failed(host, e))?;
        Ok(Box::new(TlsStream(StreamOwned::new(session, io))))
    }
}

/// The connection under a handshake, each read and write given only the
/// time left before the handshake's deadline. ureq sets the socket's
/// timeouts once, at connect, to the time left of the whole request, and
/// rustls reads on without looking at a clock: a server that sends one byte
/// of its handshake just inside that timeout would hold the request forever.
/// The deadline is the one ureq gave the request (the socket's read timeout
/// when the handshake starts); without a socket or a timeout there is none.
struct Deadlined<'a> {
    io: &'a mut Box<dyn ReadWrite>,
    deadline: Option<Instant>,
}

impl<'a> Deadlined<'a> {
    fn new(io: &'a mut Box<dyn ReadWrite>) -> Deadlined<'a> {
        let timeout = io.socket().and_then(|s| s.read_timeout().ok().flatten());
        Deadlined {
            io,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Set the socket's read and write timeouts to the time left.
    fn limit(&self) -> io::Result<()> {
        let (Some(deadline), Some(socket)) = (self.deadline, self.io.socket()) else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake outlasted the request's deadline",
            ));
        }
        socket.set_read_timeout(Some(left))?;
        socket.set_write_timeout(Some(left))
    }

    /// Leave the socket with the time left for the rest of the request.
    fn hand_back(self) -> io::Result<()> {
        self.limit()
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.limit()?;
        self.io.read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.limit()?;
        self.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.limit()?;
        self.io.flush()
    }
}

/// A TLS handshake that failed for a reason the same server will give
/// again (its certificate, its protocol version), as opposed to a connection
/// that broke on the way: not worth retrying.
#[derive(Debug)]
pub struct HandshakeRefused(String);

impl std::fmt::Display for HandshakeRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeRefused {}

/// Whether a transport error is a `HandshakeRefused`.
pub fn handshake_refused(t: &ureq::Transport) -> bool {
    let mut cause = std::error::Error::source(t);
    while let Some(e) = cause {
        let inner = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
        if e.is::<HandshakeRefused>() || inner.is_some_and(|i| i.is::<HandshakeRefused>()) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Whether rustls failed the handshake for something the server will do
/// again: a certificate we do not trust, or no protocol or cipher suite in
/// common. An alert about anything else (an overloaded load balancer's
/// internal error, say) and broken connections are worth another try.
fn refused_for_good(e: &io::Error) -> bool {
    use rustls::AlertDescription as Alert;
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::PeerIncompatible(_)) => true,
        Some(rustls::Error::AlertReceived(alert)) => matches!(
            alert,
            Alert::ProtocolVersion
                | Alert::HandshakeFailure
                | Alert::InsufficientSecurity
                | Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA
        ),
        _ => false,
    }
}

fn handshake_failed(host: &str, e: io::Error) -> io::Error {
    let refused = refused_for_good(&e);
    // TLS 1.2 is a build option (see vendor-notes/dependencies.md): say so
    // when a server turns the handshake down for its protocol version.
    let hint = if cfg!(feature = "tls12") || !e.to_string().contains("ProtocolVersion") {
        ""
    } else {
        "; the server may speak only TLS 1.2, which this build leaves out (build with the default feature tls12)"
    };
    let text = format!("TLS handshake with {host} failed: {e}{hint}");
    match refused {
        true => io::Error::new(e.kind(), HandshakeRefused(text)),
        false => io::Error::new(e.kind(), text),
    }
}

struct TlsStream(StreamOwned<ClientConnection, Box<dyn ReadWrite>>);

impl ReadWrite for TlsStream {
    fn socket(&self) -> Option<&TcpStream> {
        self.0.get_ref().socket()
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsStream")
    }
}

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
    let config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::other(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// ring's provider with the AES-GCM suites alone, which every TLS 1.3
/// server must offer (RFC 8446, 9.1) and TLS 1.2 ones do, and no client
/// keys: ChaCha20-Poly1305 and the loading of signing keys are some 40 KB
/// of the binary, for nothing this tool does.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as suite;
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_AES_128_GCM_SHA256,
            #[cfg(feature = "tls12")]
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            #[cfg(feature = "tls12")]
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            #[cfg(feature = "tls12")]
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            #[cfg(feature = "tls12")]
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        key_provider: &NoClientKeys,
        ..rustls::crypto::ring::default_provider()
    }
}

/// This tool never authenticates to a server with a certificate.
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> std::result::Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("no client keys".into()))
    }
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
    fn only_what_the_server_will_repeat_is_final() {
        use rustls::{AlertDescription, CertificateError};
        let rustls_error = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let final_ones = [
            rustls_error(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            rustls_error(rustls::Error::AlertReceived(
                AlertDescription::ProtocolVersion,
            )),
            rustls_error(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
        ];
        for e in &final_ones {
            assert!(refused_for_good(e), "{e}");
        }
        let passing_ones = [
            rustls_error(rustls::Error::AlertReceived(
                AlertDescription::InternalError,
            )),
            rustls_error(rustls::Error::DecryptError),
            io::Error::from(io::ErrorKind::ConnectionReset),
            io::Error::from(io::ErrorKind::TimedOut),
        ];
        for e in &passing_ones {
            assert!(!refused_for_good(e), "{e}");
        }
    }

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
