//! Key material of IKE SAs (RFC 7296 §2.14, §2.18) and child SAs (§2.17).

use super::config::{ChildSuite, IkeSuite, IpsecMode};
use super::error::IkeError;
use super::sa::{ChildSaInstall, ChildSaKeys};
use crate::crypto::derive::{ChildKeyLengths, IkeKeyLengths, child_keys, ike_sa_keys, skeyseed};
use crate::crypto::{Encr, IkeSaKeys, Integ, Prf, SecretBytes, SkCipher};
use crate::wire::IpSelector;

/// Keys and transcript of one keyed IKE SA.
pub(super) struct Keyed {
    pub(super) suite: IkeSuite,
    pub(super) keys: IkeSaKeys,
    pub(super) send: SkCipher,
    pub(super) recv: SkCipher,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    /// The IKE_SA_INIT request and response exactly as sent, signed by AUTH; empty for
    /// an SA created by rekeying.
    pub(super) init_request: Vec<u8>,
    pub(super) init_response: Vec<u8>,
}

/// What IKE_SA_INIT leaves behind for key derivation and AUTH (empty for an SA
/// restored from a snapshot, whose IKE_AUTH is long done).
#[derive(Default)]
pub(super) struct InitTranscript {
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    pub(super) request: Vec<u8>,
    pub(super) response: Vec<u8>,
}

/// The seven keys and the two SK ciphers of an IKE SA from its SKEYSEED.
pub(super) fn keyed_from_seed(
    suite: IkeSuite,
    initiator: bool,
    seed: &SecretBytes,
    (spi_i, spi_r): (u64, u64),
    t: InitTranscript,
) -> Result<Keyed, IkeError> {
    let lengths = IkeKeyLengths {
        integ: suite.integ.map_or(0, Integ::key_len),
        encr: suite.encr.key_material_len(),
    };
    let keys = ike_sa_keys(suite.prf, seed, &t.ni, &t.nr, spi_i, spi_r, lengths)?;
    Keyed::new(suite, initiator, keys, t)
}

impl Keyed {
    /// The two SK ciphers from the seven keys; `initiator` says which direction we send
    /// in. Fails if a key does not have the size the suite needs.
    pub(super) fn new(
        suite: IkeSuite,
        initiator: bool,
        keys: IkeSaKeys,
        t: InitTranscript,
    ) -> Result<Keyed, IkeError> {
        let cipher_i = SkCipher::new(
            suite.encr,
            suite.integ,
            keys.sk_ei.clone(),
            keys.sk_ai.clone(),
        )?;
        let cipher_r = SkCipher::new(
            suite.encr,
            suite.integ,
            keys.sk_er.clone(),
            keys.sk_ar.clone(),
        )?;
        let (send, recv) = if initiator {
            (cipher_i, cipher_r)
        } else {
            (cipher_r, cipher_i)
        };
        Ok(Keyed {
            suite,
            keys,
            send,
            recv,
            ni: t.ni,
            nr: t.nr,
            init_request: t.request,
            init_response: t.response,
        })
    }
}

/// SKEYSEED, the seven keys and the two SK ciphers of a fresh IKE SA.
pub(super) fn derive(
    suite: IkeSuite,
    initiator: bool,
    g_ir: &SecretBytes,
    spis: (u64, u64),
    t: InitTranscript,
) -> Result<Keyed, IkeError> {
    let seed = skeyseed(suite.prf, &t.ni, &t.nr, g_ir.as_bytes());
    keyed_from_seed(suite, initiator, &seed, spis, t)
}

/// Inputs of one child SA's KEYMAT (RFC 7296 §2.17).
pub(super) struct ChildParams<'a> {
    pub(super) suite: ChildSuite,
    /// Whether we initiated the exchange that creates it (not the IKE SA).
    pub(super) initiator: bool,
    /// g^ir of the exchange's KE payloads (PFS).
    pub(super) g_ir: Option<&'a SecretBytes>,
    /// (Ni, Nr) of the exchange.
    pub(super) nonces: (&'a [u8], &'a [u8]),
    /// (ours, peer's).
    pub(super) spis: (u32, u32),
    /// As negotiated.
    pub(super) mode: IpsecMode,
}

/// KEYMAT for a child SA, as the data plane installs it.
pub(super) fn child_install(
    keyed: &Keyed,
    p: ChildParams<'_>,
    local_ts: Vec<IpSelector>,
    remote_ts: Vec<IpSelector>,
) -> Result<ChildSaInstall, IkeError> {
    let lengths = ChildKeyLengths {
        encr: p.suite.encr().map_or(0, Encr::key_material_len),
        integ: p.suite.integ().map_or(0, Integ::key_len),
    };
    let prf: Prf = keyed.suite.prf;
    let k = child_keys(
        prf,
        &keyed.keys.sk_d,
        p.g_ir.map(SecretBytes::as_bytes),
        p.nonces.0,
        p.nonces.1,
        lengths,
    )?;
    // Inbound traffic is protected with the keys of the peer's direction.
    let (inbound, outbound) = if p.initiator {
        ((k.encr_r, k.integ_r), (k.encr_i, k.integ_i))
    } else {
        ((k.encr_i, k.integ_i), (k.encr_r, k.integ_r))
    };
    Ok(ChildSaInstall {
        protocol: p.suite.protocol(),
        encr_id: p.suite.encr().map(Encr::iana_id),
        encr_key_bits: p.suite.encr().and_then(Encr::key_bits),
        integ_id: p.suite.integ().map(Integ::iana_id),
        esn: p.suite.esn(),
        mode: p.mode,
        inbound: ChildSaKeys {
            spi: p.spis.0,
            encr_key: inbound.0,
            integ_key: inbound.1,
        },
        outbound: ChildSaKeys {
            spi: p.spis.1,
            encr_key: outbound.0,
            integ_key: outbound.1,
        },
        local_ts,
        remote_ts,
        udp_encap: None,
        rekeys: None,
        outbound_deferred: false,
    })
}
