//! Certificate authentication for IKE_AUTH (RFC 7296 §2.15, RFC 7427, RFC 4945).
//!
//! Sans-IO like the rest of the crate: the clock (`now`) and the RNG are arguments.
//! The state machine uses it in this order:
//!
//! 1. Configuration: a [`TrustStore`] of CAs, and our [`Credential`] (key + chain).
//! 2. IKE_SA_INIT: announce [`supported_hashes`] in SIGNATURE_HASH_ALGORITHMS and send
//!    CERTREQ data from [`certreq_hashes`]; [`store_matches_certreq`] tells whether the
//!    peer's CERTREQ asks for a chain we hold.
//! 3. IKE_AUTH, sending: [`choose_hash`] from the peer's notify, [`signed_octets`], then
//!    [`sign_auth`] for an AUTH payload with method 14, and
//!    [`Credential::cert_payloads`].
//! 4. IKE_AUTH, receiving: [`verify_peer`] on the CERT payloads (encoding 4),
//!    [`check_id`] on IDi/IDr, then [`verify_auth`] on the AUTH payload. Any error means
//!    AUTHENTICATION_FAILED; [`CertError`] says why, for the log.

mod chain;
mod error;
mod id;
mod keys;
mod signature;

pub use chain::{
    EkuPolicy, PeerCert, PublicKey, TrustStore, certreq_hashes, store_matches_certreq, verify_peer,
};
pub use error::CertError;
pub use id::check_id;
pub use keys::{Credential, KeyKind, PrivateKey, RsaPadding, certs_from_pem};
pub use signature::{
    HashAlg, algorithm_id, choose_hash, sign_auth, signed_octets, supported_hashes, verify_auth,
};
