//! IKE_AUTH authentication (RFC 7296 §2.15): pre-shared keys, and certificates with
//! signature AUTH (RFC 7427, RFC 4754) on top of [`crate::cert`]; plus how a peer's ID
//! is matched against the configured one.

use std::time::SystemTime;

use ring::rand::SystemRandom;
use subtle::ConstantTimeEq;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use super::config::{LocalAuth, PeerAuth};
use super::error::IkeError;
use crate::cert::{
    CertError, HashAlg, KeyKind, PrivateKey, check_id, choose_hash, sign_auth, signed_octets,
    verify_auth, verify_peer,
};
use crate::crypto::{Prf, SecretBytes};
use crate::wire::{AuthMethod, AuthPayload, CertEncoding, EncodeError, Identity, Payload};

const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// AUTH = prf(prf(PSK, "Key Pad for IKEv2"), RealMessage | NonceData | prf(SK_p, IDx')),
/// where RealMessage is the sender's IKE_SA_INIT message, NonceData the peer's nonce
/// and SK_p the sender's SK_pi or SK_pr.
pub(crate) fn psk_auth(
    prf: Prf,
    psk: &SecretBytes,
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &SecretBytes,
    id: &Identity,
) -> Result<SecretBytes, EncodeError> {
    let maced_id = prf.compute(sk_p.as_bytes(), &[&id.auth_octets()?]);
    let key = prf.compute(psk.as_bytes(), &[KEY_PAD]);
    Ok(prf.compute(
        key.as_bytes(),
        &[real_message, peer_nonce, maced_id.as_bytes()],
    ))
}

pub(crate) fn matches(expected: &SecretBytes, received: &[u8]) -> bool {
    expected.len() == received.len() && bool::from(expected.as_bytes().ct_eq(received))
}

/// What one side's AUTH covers, besides the key (RFC 7296 §2.15): the sender's
/// IKE_SA_INIT message, the other side's nonce, the sender's SK_p and its ID.
pub(crate) struct AuthInput<'a> {
    pub prf: Prf,
    pub real_message: &'a [u8],
    pub nonce: &'a [u8],
    pub sk_p: &'a SecretBytes,
    pub id: &'a Identity,
}

/// Our AUTH payload. `peer_hashes` is the peer's SIGNATURE_HASH_ALGORITHMS, `None`
/// if it sent no such notify.
pub(crate) fn make_auth(
    auth: &LocalAuth,
    input: &AuthInput<'_>,
    peer_hashes: Option<&[u16]>,
) -> Result<AuthPayload, IkeError> {
    match auth {
        LocalAuth::Psk(psk) => Ok(AuthPayload {
            method: AuthMethod::SharedKeyMic,
            data: psk_auth(
                input.prf,
                psk,
                input.real_message,
                input.nonce,
                input.sk_p,
                input.id,
            )?
            .as_bytes()
            .to_vec(),
        }),
        LocalAuth::Certificate(credential) => {
            let octets = signed_octets(
                input.prf,
                input.real_message,
                input.nonce,
                input.sk_p,
                input.id,
            )?;
            sign(credential.key(), &octets, peer_hashes)
        }
    }
}

/// A signature AUTH: RFC 7427 with the strongest hash both sides support, or, if the
/// peer did not send SIGNATURE_HASH_ALGORITHMS, the RFC 4754 ECDSA method of our curve.
///
/// ring's `SecureRandom` is sealed, so the engine's injected RNG cannot feed ECDSA
/// nonces and PSS salts: signing is the one place that draws from the OS generator.
fn sign(
    key: &PrivateKey,
    octets: &[u8],
    peer_hashes: Option<&[u16]>,
) -> Result<AuthPayload, IkeError> {
    let rng = SystemRandom::new();
    if let Some(offered) = peer_hashes {
        let hash = choose_hash(key, offered).ok_or(IkeError::NoSignatureHash(key.kind()))?;
        return Ok(AuthPayload {
            method: AuthMethod::DigitalSignature,
            data: sign_auth(key, octets, hash, &rng)?,
        });
    }
    let (method, hash, scalar_len) = match key.kind() {
        KeyKind::EcdsaP256 => (AuthMethod::EcdsaP256Sha256, HashAlg::Sha256, 32),
        KeyKind::EcdsaP384 => (AuthMethod::EcdsaP384Sha384, HashAlg::Sha384, 48),
        other => return Err(IkeError::NoSignatureHash(other)),
    };
    // The same signature as RFC 7427's ecdsa-with-SHAx, without the AlgorithmIdentifier
    // and in RFC 4754's fixed-size r | s form instead of DER.
    let rfc7427 = sign_auth(key, octets, hash, &rng)?;
    let der = rfc7427
        .split_first()
        .and_then(|(len, rest)| rest.get(usize::from(*len)..))
        .ok_or(CertError::Signing)?;
    let data = ecdsa_der_to_fixed(der, scalar_len).ok_or(CertError::Signing)?;
    Ok(AuthPayload { method, data })
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` to `r | s`, each left-padded
/// to `scalar_len` octets.
fn ecdsa_der_to_fixed(der: &[u8], scalar_len: usize) -> Option<Vec<u8>> {
    fn tlv(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = data.split_first()?;
        if t != tag {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let (len, rest) = match len {
            0..=0x7f => (usize::from(len), rest),
            0x81 => {
                let (&l, rest) = rest.split_first()?;
                (usize::from(l), rest)
            }
            _ => return None,
        };
        rest.split_at_checked(len)
    }
    let (seq, trailing) = tlv(der, 0x30)?;
    if !trailing.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(2 * scalar_len);
    let mut rest = seq;
    for _ in 0..2 {
        let (int, next) = tlv(rest, 0x02)?;
        rest = next;
        let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
        let digits = int.get(start..)?;
        if digits.len() > scalar_len {
            return None;
        }
        out.resize(out.len() + scalar_len - digits.len(), 0);
        out.extend_from_slice(digits);
    }
    rest.is_empty().then_some(out)
}

/// Checks the peer's AUTH payload (and with certificates its CERT payloads, among
/// `payloads`) against how the configuration wants it to authenticate. `wall` is the
/// time certificates must be valid at.
pub(crate) fn verify_peer_auth(
    peer_auth: &PeerAuth,
    input: &AuthInput<'_>,
    auth: &AuthPayload,
    payloads: &[Payload],
    wall: SystemTime,
) -> Result<(), IkeError> {
    match peer_auth {
        PeerAuth::Psk(psk) => {
            if auth.method != AuthMethod::SharedKeyMic {
                return Err(IkeError::UnexpectedAuthMethod(auth.method));
            }
            let expected = psk_auth(
                input.prf,
                psk,
                input.real_message,
                input.nonce,
                input.sk_p,
                input.id,
            )?;
            if !matches(&expected, &auth.data) {
                return Err(IkeError::AuthenticationFailed);
            }
            Ok(())
        }
        PeerAuth::Certificate(store) => {
            if auth.method == AuthMethod::SharedKeyMic {
                return Err(IkeError::UnexpectedAuthMethod(auth.method));
            }
            let chain: Vec<&[u8]> = payloads
                .iter()
                .filter_map(|p| match p {
                    Payload::Cert(c) if c.encoding == CertEncoding::X509Signature => {
                        Some(c.data.as_slice())
                    }
                    _ => None,
                })
                .collect();
            let peer = verify_peer(&chain, store, wall)?;
            // A DN ID names the certificate when it is the subject as a name (RFC 5280
            // §7.1); check_id compares octets, and peers encode their ID from text in
            // their own string types (strongSwan: PrintableString where it can), not
            // always as the CA wrote the subject. The AUTH signature still covers the
            // ID as received.
            let subject = Identity::DerAsn1Dn(peer.subject_dn().to_vec());
            let id = match input.id {
                Identity::DerAsn1Dn(_) if identity_matches(&subject, input.id) => &subject,
                other => other,
            };
            check_id(&peer, id)?;
            let octets = signed_octets(
                input.prf,
                input.real_message,
                input.nonce,
                input.sk_p,
                input.id,
            )?;
            verify_auth(&peer, auth.method, &octets, &auth.data)?;
            Ok(())
        }
    }
}

/// Whether the peer's ID `got` is the configured `want`.
///
/// Distinguished names (ID_DER_ASN1_DN) are compared as names, as RFC 5280 §7.1 asks
/// and strongSwan does: the same attributes in the same order, each value equal after
/// trimming, collapsing inner spaces and ASCII case folding, whatever the ASN.1 string
/// type. A configured DN spelled from text therefore matches the DER a CA wrote. DNs
/// that do not parse, and every other ID type, must be equal octet for octet.
pub fn identity_matches(want: &Identity, got: &Identity) -> bool {
    match (want, got) {
        (Identity::DerAsn1Dn(a), Identity::DerAsn1Dn(b)) => {
            a == b || dn_equal(a, b).unwrap_or(false)
        }
        _ => want == got,
    }
}

/// Whether `got` belongs to the group `domain` names: an RFC 822 or FQDN identity whose
/// domain is `domain` or ends with `.domain` (ASCII case-insensitive, as DNS names).
/// Other identity types match only exactly.
pub fn group_identity_matches(domain: &Identity, got: &Identity) -> bool {
    let want = match domain {
        Identity::Fqdn(d) | Identity::Rfc822(d) => d.trim_start_matches('@'),
        _ => return identity_matches(domain, got),
    };
    let host = match got {
        Identity::Rfc822(u) => match u.rsplit_once('@') {
            Some((user, host)) if !user.is_empty() => host,
            _ => return false,
        },
        Identity::Fqdn(h) => h.as_str(),
        _ => return false,
    };
    let (host, want) = (host.to_ascii_lowercase(), want.to_ascii_lowercase());
    !want.is_empty()
        && (host == want
            || host
                .strip_suffix(&want)
                .is_some_and(|rest| rest.ends_with('.')))
}

fn dn_equal(a: &[u8], b: &[u8]) -> Option<bool> {
    let parse = |der| match X509Name::from_der(der) {
        Ok(([], name)) => Some(name),
        _ => None,
    };
    let (a, b) = (parse(a)?, parse(b)?);
    let rdns = |n: &X509Name<'_>| -> Vec<Vec<(String, Vec<u8>)>> {
        n.iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|atv| {
                        let value = match atv.as_str() {
                            Ok(s) => normalize(s).into_bytes(),
                            Err(_) => atv.as_slice().to_vec(),
                        };
                        (atv.attr_type().to_id_string(), value)
                    })
                    .collect()
            })
            .collect()
    };
    Some(rdns(&a) == rdns(&b))
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    #[test]
    fn group_ids_match_by_domain_only() {
        let group = Identity::Fqdn("Example.net".into());
        let yes = ["alice@example.net", "bob@EXAMPLE.NET", "x@vpn.example.net"];
        for id in yes {
            assert!(
                group_identity_matches(&group, &Identity::Rfc822(id.into())),
                "{id}"
            );
        }
        assert!(group_identity_matches(
            &group,
            &Identity::Fqdn("host.example.net".into())
        ));
        let no = [
            Identity::Rfc822("alice@badexample.net".into()),
            Identity::Rfc822("@example.net".into()),
            Identity::Rfc822("example.net".into()),
            Identity::Fqdn("example.net.evil".into()),
            Identity::Ipv4([192, 0, 2, 1].into()),
        ];
        for id in no {
            assert!(!group_identity_matches(&group, &id), "{id:?}");
        }
        assert!(!group_identity_matches(
            &Identity::Fqdn(String::new()),
            &Identity::Fqdn("x".into())
        ));
    }

    /// Recomputes RFC 7296 §2.15 with RustCrypto's HMAC-SHA-256, independently of ring.
    #[test]
    fn matches_independent_hmac() {
        let hmac = |k: &[u8], parts: &[&[u8]]| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(k).unwrap();
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        };
        let psk = SecretBytes::from_slice(b"interop-test-psk-0123456789");
        let sk_pi = SecretBytes::new(vec![0x11; 32]);
        let id = Identity::Fqdn("a.test".into());
        let msg1 = [0xab; 264];
        let nr = [0xcd; 32];
        let got = psk_auth(Prf::HmacSha256, &psk, &msg1, &nr, &sk_pi, &id).unwrap();
        let maced = hmac(&[0x11; 32], &[b"\x02\x00\x00\x00a.test"]);
        let key = hmac(b"interop-test-psk-0123456789", &[b"Key Pad for IKEv2"]);
        let want = hmac(&key, &[&msg1, &nr, &maced]);
        assert_eq!(got.as_bytes(), want);
        assert!(matches(&got, &want));
        assert!(!matches(&got, &want[1..]));
    }

    #[test]
    fn ecdsa_der_signatures_become_fixed_r_s() {
        // r with a leading zero octet (high bit set), s short by one octet.
        let mut der = vec![0x30, 0x44, 0x02, 0x21, 0x00];
        der.extend([0x80; 32]);
        der.extend([0x02, 0x1f]);
        der.extend([0x01; 31]);
        let fixed = ecdsa_der_to_fixed(&der, 32).unwrap();
        assert_eq!(&fixed[..32], &[0x80; 32]);
        assert_eq!(fixed[32], 0);
        assert_eq!(&fixed[33..], &[0x01; 31]);
        assert!(ecdsa_der_to_fixed(&der, 16).is_none());
        assert!(ecdsa_der_to_fixed(&der[..der.len() - 1], 32).is_none());
        assert!(ecdsa_der_to_fixed(&[0x30, 0x00], 32).is_none());
    }

    /// `SEQUENCE { SET { SEQUENCE { OID 2.5.4.x, string } } ... }`.
    fn dn(parts: &[(u8, u8, &str)]) -> Vec<u8> {
        let mut seq = Vec::new();
        for (attr, tag, value) in parts {
            let mut atv = vec![0x06, 0x03, 0x55, 0x04, *attr, *tag, value.len() as u8];
            atv.extend(value.as_bytes());
            let mut set = vec![0x30, atv.len() as u8];
            set.extend(atv);
            seq.extend([0x31, set.len() as u8]);
            seq.extend(set);
        }
        let mut out = vec![0x30, seq.len() as u8];
        out.extend(seq);
        out
    }

    #[test]
    fn distinguished_names_match_as_names() {
        const PRINTABLE: u8 = 0x13;
        const UTF8: u8 = 0x0c;
        let cert = Identity::DerAsn1Dn(dn(&[(6, PRINTABLE, "US"), (3, UTF8, "b.test")]));
        let typed = Identity::DerAsn1Dn(dn(&[(6, UTF8, "us"), (3, PRINTABLE, " B.test ")]));
        assert!(identity_matches(&typed, &cert));
        let other_cn = Identity::DerAsn1Dn(dn(&[(6, UTF8, "US"), (3, UTF8, "c.test")]));
        assert!(!identity_matches(&other_cn, &cert));
        let reversed = Identity::DerAsn1Dn(dn(&[(3, UTF8, "b.test"), (6, UTF8, "US")]));
        assert!(!identity_matches(&reversed, &cert));
        let shorter = Identity::DerAsn1Dn(dn(&[(3, UTF8, "b.test")]));
        assert!(!identity_matches(&shorter, &cert));
        assert!(!identity_matches(
            &Identity::DerAsn1Dn(vec![0x30, 0x01]),
            &cert
        ));
        let fqdn = Identity::Fqdn("b.test".into());
        assert!(identity_matches(&fqdn, &fqdn));
        assert!(!identity_matches(&fqdn, &cert));
    }
}
