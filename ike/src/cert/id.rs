//! Does IDi/IDr name the certificate that signed AUTH? (RFC 4945 §3.1)
//!
//! Without this check any holder of a certificate from a trusted CA could claim any
//! identity, and policy lookup by ID would be meaningless.

use std::net::IpAddr;

use crate::wire::Identity;
use crate::wire::id::id_type;

use super::chain::PeerCert;
use super::error::CertError;

/// Checks the peer's ID payload against its validated certificate:
///
/// - ID_FQDN must equal a dNSName SAN, ASCII case-insensitively (RFC 4945 §3.1.2).
///   Wildcard SANs are compared literally, never expanded: a certificate for
///   `*.example.com` does not vouch for `vpn.example.com` as an IKE identity.
/// - ID_RFC822_ADDR must equal an rfc822Name SAN; the domain part case-insensitively,
///   the local part exactly (RFC 4945 §3.1.3, RFC 5280 §7.5).
/// - ID_IPV4_ADDR / ID_IPV6_ADDR must equal an iPAddress SAN (RFC 4945 §3.1.1).
/// - ID_DER_ASN1_DN must equal the subject DN. The comparison is byte-exact on the DER,
///   stricter than RFC 5280 §7.1 name matching; peers send the DN copied from their own
///   certificate, so equal names are equal bytes in practice (RFC 4945 §3.1.5).
/// - ID_KEY_ID, ID_DER_ASN1_GN and unknown types cannot be checked against a
///   certificate and are refused.
pub fn check_id(peer: &PeerCert, id: &Identity) -> Result<(), CertError> {
    let (matched, reason) = match id {
        Identity::Fqdn(fqdn) => (
            peer.dns_names()
                .iter()
                .any(|n| strip_root(n).eq_ignore_ascii_case(strip_root(fqdn))),
            "no dNSName SAN equals the FQDN",
        ),
        Identity::Rfc822(addr) => (
            peer.rfc822_names().iter().any(|n| rfc822_eq(n, addr)),
            "no rfc822Name SAN equals the address",
        ),
        Identity::Ipv4(a) => (
            peer.ip_addrs().contains(&IpAddr::V4(*a)),
            "no iPAddress SAN equals the IPv4 address",
        ),
        Identity::Ipv6(a) => (
            peer.ip_addrs().contains(&IpAddr::V6(*a)),
            "no iPAddress SAN equals the IPv6 address",
        ),
        Identity::DerAsn1Dn(dn) => (peer.subject_dn() == dn.as_slice(), "subject DN differs"),
        Identity::KeyId(_) => (false, "ID_KEY_ID cannot be matched to a certificate"),
        Identity::Other { id_type: t, .. } if *t == id_type::DER_ASN1_GN => {
            (false, "ID_DER_ASN1_GN is not supported")
        }
        Identity::Other { .. } => (false, "ID type cannot be matched to a certificate"),
    };
    if matched {
        Ok(())
    } else {
        Err(CertError::IdMismatch {
            id_type: id.id_type(),
            reason,
        })
    }
}

/// `host.example.` and `host.example` name the same host.
fn strip_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

fn rfc822_eq(san: &str, id: &str) -> bool {
    match (san.rsplit_once('@'), id.rsplit_once('@')) {
        (Some((san_local, san_domain)), Some((id_local, id_domain))) => {
            san_local == id_local && san_domain.eq_ignore_ascii_case(id_domain)
        }
        _ => false,
    }
}
