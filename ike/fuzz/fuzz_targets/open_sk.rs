//! Feeds arbitrary datagrams to the SK decryption path of every cipher suite, which
//! must reject them without panicking.
#![no_main]

use ike::crypto::{Encr, Integ, SecretBytes, SkCipher};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let suites = [
        (Encr::AesCbc128, Some(Integ::HmacSha256_128)),
        (Encr::TripleDesCbc, Some(Integ::HmacSha1_96)),
        (Encr::AesGcm16_128, None),
        (Encr::ChaCha20Poly1305, None),
    ];
    for (encr, integ) in suites {
        let ekey = SecretBytes::new(vec![1; encr.key_material_len()]);
        let akey = SecretBytes::new(vec![2; integ.map_or(0, Integ::key_len)]);
        let cipher = SkCipher::new(encr, integ, ekey, akey).expect("valid suite");
        let _ = cipher.open(data);
    }
});
