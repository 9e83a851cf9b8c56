//! Mutual TLS for the management API.
//!
//! Both ends use tonic's own rustls integration (`ServerTlsConfig`/`ClientTlsConfig` with
//! the `tls-ring` feature) rather than a hand-built `rustls::ServerConfig`: with
//! `client_ca_root` tonic installs rustls' `WebPkiClientVerifier` with client
//! authentication *required*, so a client without a certificate chaining to the
//! management CA is refused inside the handshake and never reaches a handler; it sets
//! the h2 ALPN, bounds the handshake time, and hands the verified chain to handlers
//! through `Request::peer_certs`, which is all the role check needs. A custom
//! `ServerConfig` would buy CRL support and TLS-version pinning at the price of our own
//! accept loop; when CRLs are needed, that is the place to change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::MgmtError;

/// A slow or silent client may hold a handshake open at most this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files one end of a management connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The management CA: the peer's certificate must chain to it.
    pub ca: PathBuf,
    /// Our certificate (chain), leaf first.
    pub cert: PathBuf,
    /// Our private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `vpnctl pki init DIR` wrote for `identity` (`server`, `operator`,
    /// `read-only`): `DIR/ca.pem`, `DIR/IDENTITY.pem`, `DIR/IDENTITY.key`.
    pub fn from_pki_dir(dir: &Path, identity: &str) -> Self {
        Self {
            ca: dir.join(super::pki::CA_FILE),
            cert: dir.join(format!("{identity}.pem")),
            key: dir.join(format!("{identity}.key")),
        }
    }

    fn read(&self) -> Result<(Certificate, Identity), MgmtError> {
        let ca = read_file(&self.ca)?;
        let cert = read_file(&self.cert)?;
        let key = read_file(&self.key)?;
        Ok((Certificate::from_pem(ca), Identity::from_pem(cert, key)))
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, MgmtError> {
    std::fs::read(path).map_err(|source| MgmtError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Server side: our identity, and client certificates required and verified against
/// the CA.
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, MgmtError> {
    let (ca, identity) = files.read()?;
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(ca)
        .client_auth_optional(false)
        .timeout(HANDSHAKE_TIMEOUT))
}

/// Client side: the server must chain to the CA and match `server_name` (a DNS name or
/// an IP address in its certificate's SANs); we present our own certificate.
pub fn client_config(files: &TlsFiles, server_name: &str) -> Result<ClientTlsConfig, MgmtError> {
    let (ca, identity) = files.read()?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(ca)
        .identity(identity)
        .domain_name(server_name)
        .timeout(HANDSHAKE_TIMEOUT))
}
