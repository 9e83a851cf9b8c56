//! AES-XCBC-MAC (RFC 3566) and AES-XCBC-PRF-128 (RFC 4434), on the RustCrypto AES core.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

const BLOCK: usize = 16;

fn encrypt(cipher: &Aes128, block: &[u8; BLOCK]) -> [u8; BLOCK] {
    let mut b = GenericArray::clone_from_slice(block);
    cipher.encrypt_block(&mut b);
    let mut out = [0u8; BLOCK];
    out.copy_from_slice(&b);
    out
}

fn xor(a: &mut [u8; BLOCK], b: &[u8]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// AES-XCBC-MAC with a 128-bit key, full 128-bit output (RFC 3566 §4).
pub(crate) fn xcbc_mac(key: &[u8; BLOCK], parts: &[&[u8]]) -> [u8; BLOCK] {
    let k = Aes128::new(GenericArray::from_slice(key));
    let k1 = Aes128::new(GenericArray::from_slice(&encrypt(&k, &[1; BLOCK])));
    let k2 = encrypt(&k, &[2; BLOCK]);
    let k3 = encrypt(&k, &[3; BLOCK]);

    let msg: Vec<u8> = parts.concat();
    let mut e = [0u8; BLOCK];
    // All blocks but the last go through plain CBC; the last one (possibly empty or
    // partial) is masked with K2 (complete) or padded and masked with K3.
    let n_full_before_last = if msg.is_empty() {
        0
    } else {
        (msg.len() - 1) / BLOCK
    };
    let (head, last) = msg.split_at(n_full_before_last * BLOCK);
    for block in head.chunks_exact(BLOCK) {
        xor(&mut e, block);
        e = encrypt(&k1, &e);
    }
    if last.len() == BLOCK {
        xor(&mut e, last);
        xor(&mut e, &k2);
    } else {
        let mut padded = [0u8; BLOCK];
        padded[..last.len()].copy_from_slice(last);
        padded[last.len()] = 0x80;
        xor(&mut e, &padded);
        xor(&mut e, &k3);
    }
    encrypt(&k1, &e)
}

/// AES-XCBC-PRF-128 (RFC 4434 §2): keys other than 128 bits are zero-padded or
/// compressed with the PRF under an all-zero key.
pub(crate) fn xcbc_prf(key: &[u8], parts: &[&[u8]]) -> [u8; BLOCK] {
    let k: [u8; BLOCK] = match <[u8; BLOCK]>::try_from(key) {
        Ok(k) => k,
        Err(_) if key.len() < BLOCK => {
            let mut k = [0u8; BLOCK];
            k[..key.len()].copy_from_slice(key);
            k
        }
        Err(_) => xcbc_mac(&[0; BLOCK], &[key]),
    };
    xcbc_mac(&k, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 3566 §4.6 test cases 1-6 (key 000102...0f).
    #[test]
    fn rfc3566_vectors() {
        let key: [u8; 16] = h("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let msg: Vec<u8> = (0u8..=0x21).collect();
        let cases: [(usize, &str); 6] = [
            (0, "75f0251d528ac01c4573dfd584d79f29"),
            (3, "5b376580ae2f19afe7219ceef172756f"),
            (16, "d2a246fa349b68a79998a4394ff7a263"),
            (20, "47f51b4564966215b8985c63055ed308"),
            (32, "f54f0ec8d2b9f3d36807734bd5283fd4"),
            (34, "becbb3bccdb518a30677d5481fb6b4d8"),
        ];
        for (len, mac) in cases {
            assert_eq!(xcbc_mac(&key, &[&msg[..len]]).to_vec(), h(mac), "len {len}");
        }
        // RFC 3566 §4.6 test case 7: 1000 zero bytes.
        assert_eq!(
            xcbc_mac(&key, &[&[0u8; 1000]]).to_vec(),
            h("f0dafee895db30253761103b5d84528f")
        );
    }

    /// RFC 4434 §6: key lengths 16, 10 and 18, message 000102...13.
    #[test]
    fn rfc4434_vectors() {
        let msg: Vec<u8> = (0u8..=0x13).collect();
        let cases = [
            (
                "000102030405060708090a0b0c0d0e0f",
                "47f51b4564966215b8985c63055ed308",
            ),
            ("00010203040506070809", "0fa087af7d866e7653434e602fdde835"),
            (
                "000102030405060708090a0b0c0d0e0fedcb",
                "8cd3c93ae598a9803006ffb67c40e9e4",
            ),
        ];
        for (key, out) in cases {
            assert_eq!(xcbc_prf(&h(key), &[&msg]).to_vec(), h(out), "key {key}");
        }
    }
}
