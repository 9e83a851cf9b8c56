//! AUTH payload signatures: RFC 7427 Digital Signature (method 14), RFC 8420 Ed25519,
//! and verification of the older RSA (method 1) and RFC 4754 ECDSA (methods 9, 10).

use ring::rand::SecureRandom;
use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};

use crate::crypto::{Prf, SecretBytes};
use crate::wire::{AuthMethod, EncodeError, Identity};

use super::chain::PeerCert;
use super::error::CertError;
use super::keys::{KeyKind, KeyRef, PrivateKey, RsaPadding};

/// RFC 7427 Appendix A: the AlgorithmIdentifier DER that precedes the signature in AUTH
/// data. Peers compare these byte for byte, so they are spelled out rather than encoded.
pub mod algorithm_id {
    /// sha256WithRSAEncryption, RFC 7427 Appendix A.1.2.
    pub const SHA256_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    /// sha384WithRSAEncryption, RFC 7427 Appendix A.1.3.
    pub const SHA384_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
    ];
    /// sha512WithRSAEncryption, RFC 7427 Appendix A.1.4.
    pub const SHA512_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
    ];
    /// ecdsa-with-SHA256, RFC 7427 Appendix A.3.2 (no parameters, RFC 5758 §3.2).
    pub const ECDSA_WITH_SHA256: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    /// ecdsa-with-SHA384, RFC 7427 Appendix A.3.3.
    pub const ECDSA_WITH_SHA384: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
    ];
    /// ecdsa-with-SHA512, RFC 7427 Appendix A.3.4.
    pub const ECDSA_WITH_SHA512: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
    ];
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a 32-byte salt, RFC 7427 Appendix
    /// A.4.3, byte for byte. The RFC spells out trailerField = 1 (`a3 03 02 01 01`), a
    /// DEFAULT value that strict DER omits; we send the RFC's bytes, as libreswan and
    /// OpenIKED do, and also accept [`RSASSA_PSS_SHA256_DER`].
    pub const RSASSA_PSS_SHA256: &[u8] = &[
        0x30, 0x46, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x39,
        0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
        0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20, 0xa3, 0x03, 0x02, 0x01, 0x01,
    ];
    /// The same parameters in strict DER (trailerField omitted), as DER encoders such as
    /// strongSwan's produce them.
    pub const RSASSA_PSS_SHA256_DER: &[u8] = &[
        0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34,
        0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
        0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20,
    ];
    /// id-Ed25519 (1.3.101.112) without parameters, RFC 8420 §3 and RFC 8410 §3.
    pub const ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
}

/// A hash from IANA "IKEv2 Hash Algorithms", as carried in SIGNATURE_HASH_ALGORITHMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
    /// No pre-hash: the signature scheme consumes the octets itself (RFC 8420, Ed25519).
    Identity,
}

impl HashAlg {
    pub const fn iana_id(self) -> u16 {
        match self {
            HashAlg::Sha256 => 2,
            HashAlg::Sha384 => 3,
            HashAlg::Sha512 => 4,
            HashAlg::Identity => 5,
        }
    }

    pub const fn from_iana(id: u16) -> Option<Self> {
        match id {
            2 => Some(HashAlg::Sha256),
            3 => Some(HashAlg::Sha384),
            4 => Some(HashAlg::Sha512),
            5 => Some(HashAlg::Identity),
            _ => None,
        }
    }
}

/// What we put in our SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4): SHA2-256,
/// SHA2-384 and Identity.
///
/// SHA2-512 is left out on purpose. The notify cannot say "for RSA only", and ring does
/// not verify ECDSA with SHA-512, so announcing it would let an ECDSA peer choose a
/// signature we then cannot check. An RSA peer that signs with SHA-512 anyway is still
/// verified.
pub fn supported_hashes() -> &'static [u16] {
    const HASHES: [u16; 3] = [
        HashAlg::Sha256.iana_id(),
        HashAlg::Sha384.iana_id(),
        HashAlg::Identity.iana_id(),
    ];
    &HASHES
}

/// The hash to sign AUTH with: the first of `key`'s hashes (strongest first) that the
/// peer listed in its SIGNATURE_HASH_ALGORITHMS. `None` means method 14 is impossible
/// with this key and peer; the caller falls back to a legacy method or fails.
pub fn choose_hash(key: &PrivateKey, peer_offered: &[u16]) -> Option<HashAlg> {
    key.hashes()
        .iter()
        .copied()
        .find(|h| peer_offered.contains(&h.iana_id()))
}

/// The signature schemes RFC 7427 AUTH data can name here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
    RsaPssSha256,
    Ed25519,
}

const SCHEMES: &[(&[u8], Scheme)] = &[
    (algorithm_id::ECDSA_WITH_SHA256, Scheme::EcdsaSha256),
    (algorithm_id::ECDSA_WITH_SHA384, Scheme::EcdsaSha384),
    (algorithm_id::ECDSA_WITH_SHA512, Scheme::EcdsaSha512),
    (algorithm_id::SHA256_WITH_RSA, Scheme::RsaPkcs1Sha256),
    (algorithm_id::SHA384_WITH_RSA, Scheme::RsaPkcs1Sha384),
    (algorithm_id::SHA512_WITH_RSA, Scheme::RsaPkcs1Sha512),
    (algorithm_id::RSASSA_PSS_SHA256, Scheme::RsaPssSha256),
    (algorithm_id::RSASSA_PSS_SHA256_DER, Scheme::RsaPssSha256),
    (algorithm_id::ED25519, Scheme::Ed25519),
];

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::EcdsaSha256 => "ecdsa-with-SHA256",
            Scheme::EcdsaSha384 => "ecdsa-with-SHA384",
            Scheme::EcdsaSha512 => "ecdsa-with-SHA512",
            Scheme::RsaPkcs1Sha256 => "sha256WithRSAEncryption",
            Scheme::RsaPkcs1Sha384 => "sha384WithRSAEncryption",
            Scheme::RsaPkcs1Sha512 => "sha512WithRSAEncryption",
            Scheme::RsaPssSha256 => "RSASSA-PSS-SHA256",
            Scheme::Ed25519 => "Ed25519",
        }
    }

    /// ring's verifier for this scheme and key type. ECDSA signatures in RFC 7427 are
    /// DER `Ecdsa-Sig-Value`, hence the `_ASN1` algorithms.
    fn verifier(self, key: KeyKind) -> Result<&'static dyn VerificationAlgorithm, CertError> {
        let alg: &'static dyn VerificationAlgorithm = match (self, key) {
            (Scheme::EcdsaSha256, KeyKind::EcdsaP256) => &sig::ECDSA_P256_SHA256_ASN1,
            (Scheme::EcdsaSha256, KeyKind::EcdsaP384) => &sig::ECDSA_P384_SHA256_ASN1,
            (Scheme::EcdsaSha384, KeyKind::EcdsaP256) => &sig::ECDSA_P256_SHA384_ASN1,
            (Scheme::EcdsaSha384, KeyKind::EcdsaP384) => &sig::ECDSA_P384_SHA384_ASN1,
            // ring has no ECDSA with SHA-512 on P-256/P-384.
            (Scheme::EcdsaSha512, KeyKind::EcdsaP256 | KeyKind::EcdsaP384) => {
                return Err(CertError::UnsupportedAlgorithm);
            }
            (Scheme::RsaPkcs1Sha256, KeyKind::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA256,
            (Scheme::RsaPkcs1Sha384, KeyKind::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA384,
            (Scheme::RsaPkcs1Sha512, KeyKind::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA512,
            (Scheme::RsaPssSha256, KeyKind::Rsa) => &sig::RSA_PSS_2048_8192_SHA256,
            (Scheme::Ed25519, KeyKind::Ed25519) => &sig::ED25519,
            (scheme, key) => {
                return Err(CertError::AlgorithmKeyMismatch {
                    algorithm: scheme.name(),
                    key,
                });
            }
        };
        Ok(alg)
    }
}

/// The octets an AUTH signature covers (RFC 7296 §2.15):
/// `RealMessage | NonceData | prf(SK_p, RestOfIDPayload)`, where RealMessage is the
/// signer's IKE_SA_INIT message, NonceData the other side's nonce and SK_p the signer's
/// SK_pi or SK_pr.
pub fn signed_octets(
    prf: Prf,
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &SecretBytes,
    id: &Identity,
) -> Result<Vec<u8>, EncodeError> {
    let maced_id = prf.compute(sk_p.as_bytes(), &[&id.auth_octets()?]);
    Ok([real_message, peer_nonce, maced_id.as_bytes()].concat())
}

/// Signs for an AUTH payload with method 14 (Digital Signature): returns
/// `length (1 octet) | AlgorithmIdentifier | signature` (RFC 7427 §3).
///
/// `hash` comes from [`choose_hash`]; a hash the key cannot sign with is an error, not
/// a silent substitute, because the peer only accepts hashes it announced. `rng` is
/// ring's source for ECDSA nonces and PSS salts, injected to keep the crate sans-IO.
pub fn sign_auth(
    key: &PrivateKey,
    signed_octets: &[u8],
    hash: HashAlg,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, CertError> {
    if !key.hashes().contains(&hash) {
        return Err(CertError::UnsupportedHash {
            key: key.kind(),
            hash,
        });
    }
    let (alg_id, signature) = match key.inner() {
        KeyRef::Ecdsa(pair) => {
            let alg_id = match hash {
                HashAlg::Sha384 => algorithm_id::ECDSA_WITH_SHA384,
                _ => algorithm_id::ECDSA_WITH_SHA256,
            };
            let s = pair
                .sign(rng, signed_octets)
                .map_err(|_| CertError::Signing)?;
            (alg_id, s.as_ref().to_vec())
        }
        KeyRef::Rsa(pair, padding) => {
            let (alg_id, encoding): (_, &'static dyn sig::RsaEncoding) = match (padding, hash) {
                (RsaPadding::PssSha256, _) => {
                    (algorithm_id::RSASSA_PSS_SHA256, &sig::RSA_PSS_SHA256)
                }
                (RsaPadding::Pkcs1v15, HashAlg::Sha512) => {
                    (algorithm_id::SHA512_WITH_RSA, &sig::RSA_PKCS1_SHA512)
                }
                (RsaPadding::Pkcs1v15, HashAlg::Sha384) => {
                    (algorithm_id::SHA384_WITH_RSA, &sig::RSA_PKCS1_SHA384)
                }
                (RsaPadding::Pkcs1v15, _) => {
                    (algorithm_id::SHA256_WITH_RSA, &sig::RSA_PKCS1_SHA256)
                }
            };
            let mut s = vec![0; pair.public().modulus_len()];
            pair.sign(encoding, rng, signed_octets, &mut s)
                .map_err(|_| CertError::Signing)?;
            (alg_id, s)
        }
        KeyRef::Ed25519(pair) => (
            algorithm_id::ED25519,
            pair.sign(signed_octets).as_ref().to_vec(),
        ),
    };
    let len = u8::try_from(alg_id.len()).map_err(|_| CertError::Signing)?;
    let mut out = Vec::with_capacity(1 + alg_id.len() + signature.len());
    out.push(len);
    out.extend_from_slice(alg_id);
    out.extend_from_slice(&signature);
    Ok(out)
}

/// Verifies an AUTH payload made with the peer certificate's key.
///
/// `method` is the AUTH payload's method: 14 (RFC 7427, with the schemes of
/// [`algorithm_id`]), 1 (RSA PKCS#1 v1.5 over SHA-1, RFC 7296 §2.15), 9 or 10 (ECDSA
/// with raw `r | s`, RFC 4754). Anything else, including 11 (P-521, which ring lacks),
/// is [`CertError::UnsupportedMethod`].
pub fn verify_auth(
    peer: &PeerCert,
    method: AuthMethod,
    signed_octets: &[u8],
    auth_data: &[u8],
) -> Result<(), CertError> {
    let key = peer.public_key();
    let (alg, signature): (&'static dyn VerificationAlgorithm, &[u8]) = match method {
        AuthMethod::DigitalSignature => {
            let (scheme, signature) = parse_digital_signature(auth_data)?;
            (scheme.verifier(key.kind())?, signature)
        }
        AuthMethod::RsaSignature => (
            legacy(key.kind(), KeyKind::Rsa, "RSA Digital Signature", || {
                &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
            })?,
            auth_data,
        ),
        AuthMethod::EcdsaP256Sha256 => (
            legacy(
                key.kind(),
                KeyKind::EcdsaP256,
                "ECDSA-256 (RFC 4754)",
                || &sig::ECDSA_P256_SHA256_FIXED,
            )?,
            auth_data,
        ),
        AuthMethod::EcdsaP384Sha384 => (
            legacy(
                key.kind(),
                KeyKind::EcdsaP384,
                "ECDSA-384 (RFC 4754)",
                || &sig::ECDSA_P384_SHA384_FIXED,
            )?,
            auth_data,
        ),
        other => return Err(CertError::UnsupportedMethod(other)),
    };
    UnparsedPublicKey::new(alg, key.key_bytes())
        .verify(signed_octets, signature)
        .map_err(|_| CertError::BadAuthSignature)
}

/// The legacy methods fix both the key type and the hash.
fn legacy(
    have: KeyKind,
    want: KeyKind,
    algorithm: &'static str,
    alg: impl FnOnce() -> &'static dyn VerificationAlgorithm,
) -> Result<&'static dyn VerificationAlgorithm, CertError> {
    if have == want {
        Ok(alg())
    } else {
        Err(CertError::AlgorithmKeyMismatch {
            algorithm,
            key: have,
        })
    }
}

/// Splits RFC 7427 AUTH data into its scheme and signature.
fn parse_digital_signature(auth_data: &[u8]) -> Result<(Scheme, &[u8]), CertError> {
    let (&len, rest) = auth_data
        .split_first()
        .ok_or(CertError::MalformedAuth("empty"))?;
    let (alg_id, signature) =
        rest.split_at_checked(usize::from(len))
            .ok_or(CertError::MalformedAuth(
                "AlgorithmIdentifier runs past the data",
            ))?;
    if signature.is_empty() {
        return Err(CertError::MalformedAuth("no signature"));
    }
    SCHEMES
        .iter()
        .find(|(id, _)| *id == alg_id)
        .map(|&(_, scheme)| (scheme, signature))
        .ok_or(CertError::UnsupportedAlgorithm)
}
