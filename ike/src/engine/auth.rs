//! Pre-shared key authentication (RFC 7296 §2.15).

use subtle::ConstantTimeEq;

use crate::crypto::{Prf, SecretBytes};
use crate::wire::{EncodeError, Identity};

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

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

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
}
