//! Roles from client certificates, and which RPCs each role may call.
//!
//! # The mapping
//!
//! TLS has already proven that the client holds a certificate issued by the management
//! CA (see `tls.rs`). Its role is a URI subject alternative name:
//!
//! | SAN URI | role | may call |
//! |---|---|---|
//! | `vpn-role:operator` | [`Role::Operator`] | every RPC |
//! | `vpn-role:read-only` | [`Role::ReadOnly`] | `List*`, `Get*` (cluster status and statistics included), `WatchEvents` |
//!
//! A certificate with no role URI, with an unknown one, or with more than one distinct
//! role is refused (`PERMISSION_DENIED`) on every RPC, reads included.
//!
//! Why a SAN URI rather than the alternatives:
//! - A CN list in the daemon's configuration would put authorization in two places
//!   (the CA and the config file) and need a reload to add an operator; the certificate
//!   alone should say what its holder may do, and revocation stays the CA's job.
//! - The subject's OU is free text that CAs fill for their own purposes (and public CAs
//!   no longer set at all), so a certificate issued for something else could match by
//!   accident. A URI in a scheme of our own (`vpn-role:`) cannot, and it is a typed,
//!   multi-valued field that every CA tool can set (`openssl req -addext
//!   subjectAltName=URI:vpn-role:operator`), as SPIFFE does for workload identities.
//! - Denying role-less certificates, rather than treating them as read-only, keeps a CA
//!   that also signs IKE peer certificates from handing those peers read access by
//!   mistake. Use a CA of its own for management all the same.

use std::fmt;

use serde::Serialize;
use tonic::{Request, Status};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI scheme, with its colon, of role SANs.
pub const ROLE_URI_SCHEME: &str = "vpn-role:";

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// List, get and watch.
    ReadOnly,
    /// Everything, including operations and configuration changes.
    Operator,
}

impl Role {
    /// The name after `vpn-role:` in the certificate.
    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
        }
    }

    /// The SAN URI that grants this role (`vpn-role:operator`).
    pub fn san_uri(self) -> String {
        format!("{ROLE_URI_SCHEME}{}", self.name())
    }

    fn from_name(name: &str) -> Option<Role> {
        match name {
            "read-only" => Some(Role::ReadOnly),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// Whether this role may call `rpc`.
    pub fn permits(self, rpc: Rpc) -> bool {
        match self {
            Role::Operator => true,
            Role::ReadOnly => !rpc.mutates(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The RPCs of the `Management` service, for authorization and audit logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `ListIkeSas`
    ListIkeSas,
    /// `ListIpsecSas`
    ListIpsecSas,
    /// `GetStatistics`
    GetStatistics,
    /// `GetTunnelMap`
    GetTunnelMap,
    /// `Initiate`
    Initiate,
    /// `Terminate`
    Terminate,
    /// `Rekey`
    Rekey,
    /// `RekeyIke`
    RekeyIke,
    /// `ClearIkeSas`
    ClearIkeSas,
    /// `ApplyConfig`
    ApplyConfig,
    /// `RemoveConfigObject`
    RemoveConfigObject,
    /// `WatchEvents`
    WatchEvents,
    /// `GetClusterStatus`
    GetClusterStatus,
    /// `GetClusterStatistics`
    GetClusterStatistics,
    /// `RequestClusterFailover`
    RequestClusterFailover,
    /// `ResetClusterFailover`
    ResetClusterFailover,
    /// `FailSpu`
    FailSpu,
    /// `AddSpu`
    AddSpu,
}

impl Rpc {
    /// Every RPC, in the order of the service definition.
    pub const ALL: [Rpc; 18] = [
        Rpc::ListIkeSas,
        Rpc::ListIpsecSas,
        Rpc::GetStatistics,
        Rpc::GetTunnelMap,
        Rpc::Initiate,
        Rpc::Terminate,
        Rpc::Rekey,
        Rpc::RekeyIke,
        Rpc::ClearIkeSas,
        Rpc::ApplyConfig,
        Rpc::RemoveConfigObject,
        Rpc::WatchEvents,
        Rpc::GetClusterStatus,
        Rpc::GetClusterStatistics,
        Rpc::RequestClusterFailover,
        Rpc::ResetClusterFailover,
        Rpc::FailSpu,
        Rpc::AddSpu,
    ];

    /// The method name as in `management.proto`.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::ListIkeSas => "ListIkeSas",
            Rpc::ListIpsecSas => "ListIpsecSas",
            Rpc::GetStatistics => "GetStatistics",
            Rpc::GetTunnelMap => "GetTunnelMap",
            Rpc::Initiate => "Initiate",
            Rpc::Terminate => "Terminate",
            Rpc::Rekey => "Rekey",
            Rpc::RekeyIke => "RekeyIke",
            Rpc::ClearIkeSas => "ClearIkeSas",
            Rpc::ApplyConfig => "ApplyConfig",
            Rpc::RemoveConfigObject => "RemoveConfigObject",
            Rpc::WatchEvents => "WatchEvents",
            Rpc::GetClusterStatus => "GetClusterStatus",
            Rpc::GetClusterStatistics => "GetClusterStatistics",
            Rpc::RequestClusterFailover => "RequestClusterFailover",
            Rpc::ResetClusterFailover => "ResetClusterFailover",
            Rpc::FailSpu => "FailSpu",
            Rpc::AddSpu => "AddSpu",
        }
    }

    /// Whether the RPC changes the daemon's state (and so needs [`Role::Operator`]).
    pub fn mutates(self) -> bool {
        match self {
            Rpc::ListIkeSas
            | Rpc::ListIpsecSas
            | Rpc::GetStatistics
            | Rpc::GetTunnelMap
            | Rpc::WatchEvents
            | Rpc::GetClusterStatus
            | Rpc::GetClusterStatistics => false,
            Rpc::Initiate
            | Rpc::Terminate
            | Rpc::Rekey
            | Rpc::RekeyIke
            | Rpc::ClearIkeSas
            | Rpc::ApplyConfig
            | Rpc::RemoveConfigObject
            | Rpc::RequestClusterFailover
            | Rpc::ResetClusterFailover
            | Rpc::FailSpu
            | Rpc::AddSpu => true,
        }
    }
}

/// Who is calling: the name for audit logs and the role for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The certificate subject's common name, or `"?"` when it has none.
    pub name: String,
    /// What the caller may do.
    pub role: Role,
}

/// Why a client certificate grants no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// The certificate does not parse (TLS accepted it, so this is unexpected).
    #[error("client certificate does not parse: {0}")]
    Malformed(String),
    /// No `vpn-role:` URI in the subject alternative names.
    #[error(
        "client certificate \"{name}\" carries no role (a SAN URI vpn-role:operator or vpn-role:read-only)"
    )]
    NoRole {
        /// Its common name.
        name: String,
    },
    /// A `vpn-role:` URI whose role is unknown.
    #[error("client certificate \"{name}\" carries unknown role URI \"{uri}\"")]
    UnknownRole {
        /// Its common name.
        name: String,
        /// The URI.
        uri: String,
    },
    /// More than one distinct role: refused rather than guessing which was meant.
    #[error("client certificate \"{name}\" carries conflicting roles")]
    Conflicting {
        /// Its common name.
        name: String,
    },
}

/// The caller named by a DER client certificate.
pub fn caller_from_certificate(der: &[u8]) -> Result<Caller, RoleError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| RoleError::Malformed(e.to_string()))?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("?")
        .to_owned();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| RoleError::Malformed(e.to_string()))?;
    let mut role = None;
    for general_name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        let GeneralName::URI(uri) = general_name else {
            continue;
        };
        let Some(role_name) = uri.strip_prefix(ROLE_URI_SCHEME) else {
            continue;
        };
        let found = Role::from_name(role_name).ok_or_else(|| RoleError::UnknownRole {
            name: name.clone(),
            uri: (*uri).to_owned(),
        })?;
        match role {
            Some(r) if r != found => return Err(RoleError::Conflicting { name }),
            _ => role = Some(found),
        }
    }
    match role {
        Some(role) => Ok(Caller { name, role }),
        None => Err(RoleError::NoRole { name }),
    }
}

/// Checks that the peer of `request` may call `rpc`, and says who it is.
///
/// Without a peer certificate (only possible if the server were run without mutual TLS,
/// which `serve` never does) the call is `UNAUTHENTICATED`.
pub fn authorize<T>(request: &Request<T>, rpc: Rpc) -> Result<Caller, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated(format!("{}: no client certificate", rpc.name())))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated(format!("{}: no client certificate", rpc.name())))?;
    let caller =
        caller_from_certificate(leaf).map_err(|e| Status::permission_denied(e.to_string()))?;
    if caller.role.permits(rpc) {
        Ok(caller)
    } else {
        Err(Status::permission_denied(format!(
            "{} role may not call {}",
            caller.role,
            rpc.name()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_may_call_exactly_the_reads() {
        let allowed: Vec<&str> = Rpc::ALL
            .into_iter()
            .filter(|r| Role::ReadOnly.permits(*r))
            .map(Rpc::name)
            .collect();
        assert_eq!(
            allowed,
            [
                "ListIkeSas",
                "ListIpsecSas",
                "GetStatistics",
                "GetTunnelMap",
                "WatchEvents",
                "GetClusterStatus",
                "GetClusterStatistics"
            ]
        );
        assert!(Rpc::ALL.into_iter().all(|r| Role::Operator.permits(r)));
    }

    fn cert_with(sans: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        for uri in sans {
            let Ok(uri) = rcgen::string::Ia5String::try_from(*uri) else {
                panic!("bad test URI {uri}")
            };
            params.subject_alt_names.push(rcgen::SanType::URI(uri));
        }
        let Ok(key) = rcgen::KeyPair::generate() else {
            panic!("key generation")
        };
        let Ok(cert) = params.self_signed(&key) else {
            panic!("self-signing")
        };
        cert.der().to_vec()
    }

    #[test]
    fn role_comes_from_the_san_uri() {
        let op = caller_from_certificate(&cert_with(&["spiffe://x/y", "vpn-role:operator"]));
        assert_eq!(
            op,
            Ok(Caller {
                name: "alice".into(),
                role: Role::Operator
            })
        );
        let ro = caller_from_certificate(&cert_with(&["vpn-role:read-only", "vpn-role:read-only"]));
        assert_eq!(ro.map(|c| c.role), Ok(Role::ReadOnly));
    }

    #[test]
    fn missing_unknown_and_conflicting_roles_are_refused() {
        assert_eq!(
            caller_from_certificate(&cert_with(&[])),
            Err(RoleError::NoRole {
                name: "alice".into()
            })
        );
        assert_eq!(
            caller_from_certificate(&cert_with(&["vpn-role:admin"])),
            Err(RoleError::UnknownRole {
                name: "alice".into(),
                uri: "vpn-role:admin".into()
            })
        );
        assert_eq!(
            caller_from_certificate(&cert_with(&["vpn-role:operator", "vpn-role:read-only"])),
            Err(RoleError::Conflicting {
                name: "alice".into()
            })
        );
        assert!(matches!(
            caller_from_certificate(b"junk"),
            Err(RoleError::Malformed(_))
        ));
    }
}
