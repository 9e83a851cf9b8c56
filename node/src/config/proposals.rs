//! Junos algorithm names, their IANA numbers, and the predefined proposal sets.
//!
//! The sets follow "Junos OS: proposal-set (Security IKE)" and "Junos OS: proposal-set
//! (Security IPsec)" from Juniper's CLI reference, written from memory of that
//! documentation (no copy was at hand while writing this); each member is spelt out
//! below under its Junos name so a reviewer can check it line by line. Where the
//! documentation is ambiguous or memory uncertain, the comment says so.

use std::time::Duration;

use super::model::{AuthMethod, EncrTransform, IkeProposal, IpsecProposal, IpsecProtocol};

/// IKEv2 Transform Type 1 IDs (encryption).
pub mod encr {
    pub const DES: u16 = 2;
    pub const TRIPLE_DES: u16 = 3;
    pub const AES_CBC: u16 = 12;
    pub const AES_GCM_16: u16 = 20;
    pub const CHACHA20_POLY1305: u16 = 28;
}

/// IKEv2 Transform Type 2 IDs (pseudo-random function).
pub mod prf {
    pub const HMAC_MD5: u16 = 1;
    pub const HMAC_SHA1: u16 = 2;
    pub const HMAC_SHA2_256: u16 = 5;
    pub const HMAC_SHA2_384: u16 = 6;
    pub const HMAC_SHA2_512: u16 = 7;
}

/// IKEv2 Transform Type 3 IDs (integrity).
pub mod integ {
    pub const HMAC_MD5_96: u16 = 1;
    pub const HMAC_SHA1_96: u16 = 2;
    pub const HMAC_SHA2_256_128: u16 = 12;
    pub const HMAC_SHA2_384_192: u16 = 13;
    pub const HMAC_SHA2_512_256: u16 = 14;
}

/// Junos default IKE SA lifetime (`lifetime-seconds`), also used by predefined proposals.
pub const IKE_LIFETIME_DEFAULT: Duration = Duration::from_secs(28_800);
/// Junos default IPsec SA lifetime, also used by predefined proposals.
pub const IPSEC_LIFETIME_DEFAULT: Duration = Duration::from_secs(3_600);

/// `encryption-algorithm` names, for IKE and IPsec alike.
pub const ENCRYPTION_ALGORITHMS: &[(&str, EncrTransform)] = &[
    ("aes-128-cbc", cbc(128)),
    ("aes-192-cbc", cbc(192)),
    ("aes-256-cbc", cbc(256)),
    ("aes-128-gcm", gcm(128)),
    ("aes-256-gcm", gcm(256)),
    ("3des-cbc", fixed(encr::TRIPLE_DES)),
    ("des-cbc", fixed(encr::DES)),
    ("chacha20-poly1305", fixed(encr::CHACHA20_POLY1305)),
];

const fn cbc(bits: u16) -> EncrTransform {
    EncrTransform {
        id: encr::AES_CBC,
        key_bits: Some(bits),
    }
}

const fn gcm(bits: u16) -> EncrTransform {
    EncrTransform {
        id: encr::AES_GCM_16,
        key_bits: Some(bits),
    }
}

const fn fixed(id: u16) -> EncrTransform {
    EncrTransform { id, key_bits: None }
}

/// An IKE `authentication-algorithm`: the PRF and, with a non-AEAD cipher, the
/// integrity transform of the same hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeHash {
    pub prf: u16,
    pub integ: u16,
}

/// IKE `authentication-algorithm` names.
pub const IKE_AUTHENTICATION_ALGORITHMS: &[(&str, IkeHash)] = &[
    ("md5", MD5),
    ("sha1", SHA1),
    ("sha-256", SHA256),
    ("sha-384", SHA384),
    ("sha-512", SHA512),
];

const MD5: IkeHash = IkeHash {
    prf: prf::HMAC_MD5,
    integ: integ::HMAC_MD5_96,
};
const SHA1: IkeHash = IkeHash {
    prf: prf::HMAC_SHA1,
    integ: integ::HMAC_SHA1_96,
};
const SHA256: IkeHash = IkeHash {
    prf: prf::HMAC_SHA2_256,
    integ: integ::HMAC_SHA2_256_128,
};
const SHA384: IkeHash = IkeHash {
    prf: prf::HMAC_SHA2_384,
    integ: integ::HMAC_SHA2_384_192,
};
const SHA512: IkeHash = IkeHash {
    prf: prf::HMAC_SHA2_512,
    integ: integ::HMAC_SHA2_512_256,
};

/// The PRF used with an AEAD IKE proposal that names no `authentication-algorithm`:
/// SHA-384 for 256-bit keys, SHA-256 otherwise, the pairing of RFC 6379 / CNSA.
pub fn default_aead_prf(encr: EncrTransform) -> u16 {
    if encr.key_bits == Some(256) && encr.id == encr::AES_GCM_16 {
        prf::HMAC_SHA2_384
    } else {
        prf::HMAC_SHA2_256
    }
}

/// IPsec `authentication-algorithm` names.
pub const IPSEC_AUTHENTICATION_ALGORITHMS: &[(&str, u16)] = &[
    ("hmac-md5-96", integ::HMAC_MD5_96),
    ("hmac-sha1-96", integ::HMAC_SHA1_96),
    ("hmac-sha-256-128", integ::HMAC_SHA2_256_128),
    ("hmac-sha-384-192", integ::HMAC_SHA2_384_192),
    ("hmac-sha-512-256", integ::HMAC_SHA2_512_256),
];

/// `dh-group` and `perfect-forward-secrecy.keys` names and their Transform Type 4 IDs:
/// MODP 768/1024/1536/2048/3072/4096, ECP 256/384/521, MODP 2048 with 256-bit
/// subgroup, Curve25519.
pub const DH_GROUPS: &[(&str, u16)] = &[
    ("group1", 1),
    ("group2", 2),
    ("group5", 5),
    ("group14", 14),
    ("group15", 15),
    ("group16", 16),
    ("group19", 19),
    ("group20", 20),
    ("group21", 21),
    ("group24", 24),
    ("group31", 31),
];

/// `authentication-method` names.
pub const AUTHENTICATION_METHODS: &[(&str, AuthMethod)] = &[
    ("pre-shared-keys", AuthMethod::PreSharedKeys),
    ("rsa-signatures", AuthMethod::RsaSignatures),
    ("ecdsa-signatures-256", AuthMethod::EcdsaSignatures256),
    ("ecdsa-signatures-384", AuthMethod::EcdsaSignatures384),
];

/// Names of the predefined sets, for both IKE and IPsec.
pub const PROPOSAL_SETS: &[&str] = &[
    "basic",
    "compatible",
    "standard",
    "suiteb-gcm-128",
    "suiteb-gcm-256",
    "prime-128",
    "prime-256",
];

/// Looks `name` up in a name table.
pub fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The accepted names of a table, for error messages.
pub fn names<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn ike(
    name: &str,
    auth_method: AuthMethod,
    dh_group: u16,
    encr: EncrTransform,
    hash: IkeHash,
) -> IkeProposal {
    IkeProposal {
        name: name.to_owned(),
        description: None,
        auth_method,
        dh_group,
        encr,
        prf: hash.prf,
        integ: (!encr.is_aead()).then_some(hash.integ),
        lifetime: IKE_LIFETIME_DEFAULT,
    }
}

/// The members of IKE proposal set `set`, or `None` for an unknown set.
///
/// Junos names its predefined IKE proposals `pre-` for pre-shared keys; `basic`,
/// `compatible` and `standard` exist only in that form in our reading of the
/// documentation. A policy using certificates with one of those sets gets the same
/// members with `rsa-signatures` (named `rsa-...`): unsure whether Junos does the same
/// or rejects the combination. The Suite B and PRIME sets are signature-only.
pub fn ike_set(set: &str, certificate: bool) -> Option<Vec<IkeProposal>> {
    use AuthMethod::*;
    let (auth, prefix) = if certificate {
        (RsaSignatures, "rsa")
    } else {
        (PreSharedKeys, "pre")
    };
    let p = |suffix: &str, group, encr, hash| {
        ike(&format!("{prefix}-{suffix}"), auth, group, encr, hash)
    };
    let members = match set {
        // basic: pre-g1-des-sha, pre-g1-des-md5.
        "basic" => vec![
            p("g1-des-sha", 1, fixed(encr::DES), SHA1),
            p("g1-des-md5", 1, fixed(encr::DES), MD5),
        ],
        // compatible: pre-g2-3des-sha, pre-g2-3des-md5, pre-g2-des-sha, pre-g2-des-md5.
        "compatible" => vec![
            p("g2-3des-sha", 2, fixed(encr::TRIPLE_DES), SHA1),
            p("g2-3des-md5", 2, fixed(encr::TRIPLE_DES), MD5),
            p("g2-des-sha", 2, fixed(encr::DES), SHA1),
            p("g2-des-md5", 2, fixed(encr::DES), MD5),
        ],
        // standard: pre-g2-aes128-sha, pre-g2-3des-sha.
        "standard" => vec![
            p("g2-aes128-sha", 2, cbc(128), SHA1),
            p("g2-3des-sha", 2, fixed(encr::TRIPLE_DES), SHA1),
        ],
        // Suite B (RFC 6379 / RFC 6380): IKE itself uses AES-CBC with HMAC-SHA2, only
        // ESP uses GCM. Junos: ECDSA-256, group 19, sha-256, aes-128-cbc. Unsure whether
        // Junos uses aes-128-cbc (as RFC 6379) or aes-128-gcm for the IKE SA here.
        "suiteb-gcm-128" => vec![ike(
            "suiteb-gcm-128",
            EcdsaSignatures256,
            19,
            cbc(128),
            SHA256,
        )],
        // Junos: ECDSA-384, group 20, sha-384, aes-256-cbc (same caveat).
        "suiteb-gcm-256" => vec![ike(
            "suiteb-gcm-256",
            EcdsaSignatures384,
            20,
            cbc(256),
            SHA384,
        )],
        // PRIME (the Suite B successor profile): GCM for the IKE SA too, PRF SHA-256.
        "prime-128" => vec![ike("prime-128", EcdsaSignatures256, 19, gcm(128), SHA256)],
        // PRIME: ECDSA-384, group 20, aes-256-gcm, PRF SHA-384.
        "prime-256" => vec![ike("prime-256", EcdsaSignatures384, 20, gcm(256), SHA384)],
        _ => return None,
    };
    Some(members)
}

/// A predefined IPsec proposal set: its members, and the PFS group its member names
/// imply (`g2-` is PFS group 2, `nopfs-` none), used when the IPsec policy configures no
/// `perfect-forward-secrecy` of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecSet {
    pub proposals: Vec<IpsecProposal>,
    pub pfs_group: Option<u16>,
}

fn esp(name: &str, encr: EncrTransform, integ: Option<u16>) -> IpsecProposal {
    IpsecProposal {
        name: name.to_owned(),
        description: None,
        protocol: IpsecProtocol::Esp,
        encr: Some(encr),
        integ,
        lifetime: IPSEC_LIFETIME_DEFAULT,
        lifetime_kilobytes: None,
    }
}

/// The members of IPsec proposal set `set`, or `None` for an unknown set.
pub fn ipsec_set(set: &str) -> Option<IpsecSet> {
    use integ::{HMAC_MD5_96, HMAC_SHA1_96};
    let des = fixed(encr::DES);
    let tdes = fixed(encr::TRIPLE_DES);
    let (proposals, pfs_group) = match set {
        // basic: nopfs-esp-des-sha, nopfs-esp-des-md5.
        "basic" => (
            vec![
                esp("nopfs-esp-des-sha", des, Some(HMAC_SHA1_96)),
                esp("nopfs-esp-des-md5", des, Some(HMAC_MD5_96)),
            ],
            None,
        ),
        // compatible: nopfs-esp-3des-sha, nopfs-esp-3des-md5, nopfs-esp-des-sha,
        // nopfs-esp-des-md5. Unsure: some Junos releases may list AES members here.
        "compatible" => (
            vec![
                esp("nopfs-esp-3des-sha", tdes, Some(HMAC_SHA1_96)),
                esp("nopfs-esp-3des-md5", tdes, Some(HMAC_MD5_96)),
                esp("nopfs-esp-des-sha", des, Some(HMAC_SHA1_96)),
                esp("nopfs-esp-des-md5", des, Some(HMAC_MD5_96)),
            ],
            None,
        ),
        // standard: g2-esp-3des-sha, g2-esp-aes128-sha (PFS group 2).
        "standard" => (
            vec![
                esp("g2-esp-3des-sha", tdes, Some(HMAC_SHA1_96)),
                esp("g2-esp-aes128-sha", cbc(128), Some(HMAC_SHA1_96)),
            ],
            Some(2),
        ),
        // Suite B / PRIME: ESP with AES-GCM-16 and no separate integrity. Unsure whether
        // the set itself implies PFS; we pair it with the matching ECP group (19 for
        // 128-bit, 20 for 256-bit) as RFC 6379 does.
        "suiteb-gcm-128" => (vec![esp("suiteb-gcm-128", gcm(128), None)], Some(19)),
        "suiteb-gcm-256" => (vec![esp("suiteb-gcm-256", gcm(256), None)], Some(20)),
        "prime-128" => (vec![esp("prime-128", gcm(128), None)], Some(19)),
        "prime-256" => (vec![esp("prime-256", gcm(256), None)], Some(20)),
        _ => return None,
    };
    Some(IpsecSet {
        proposals,
        pfs_group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_set_exists_for_ike_and_ipsec() {
        for set in PROPOSAL_SETS {
            assert!(ike_set(set, false).is_some_and(|v| !v.is_empty()), "{set}");
            assert!(
                ipsec_set(set).is_some_and(|s| !s.proposals.is_empty()),
                "{set}"
            );
        }
        assert!(ike_set("strong", false).is_none());
        assert!(ipsec_set("strong").is_none());
    }

    #[test]
    fn standard_ike_set_is_aes128_then_3des_with_group2() {
        let set = ike_set("standard", false).unwrap();
        let names: Vec<_> = set.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pre-g2-aes128-sha", "pre-g2-3des-sha"]);
        assert!(set.iter().all(|p| p.dh_group == 2
            && p.prf == prf::HMAC_SHA1
            && p.integ == Some(integ::HMAC_SHA1_96)
            && p.auth_method == AuthMethod::PreSharedKeys));
        assert_eq!(set[0].encr, cbc(128));
        let rsa = ike_set("standard", true).unwrap();
        assert_eq!(rsa[0].name, "rsa-g2-aes128-sha");
        assert_eq!(rsa[0].auth_method, AuthMethod::RsaSignatures);
    }

    #[test]
    fn aead_members_have_no_integrity() {
        for set in PROPOSAL_SETS {
            for p in ike_set(set, false).unwrap() {
                assert_eq!(p.integ.is_none(), p.encr.is_aead(), "{}", p.name);
            }
            for p in ipsec_set(set).unwrap().proposals {
                assert_eq!(p.integ.is_none(), p.encr.unwrap().is_aead(), "{}", p.name);
            }
        }
    }

    #[test]
    fn every_transform_maps_to_the_dataplane() {
        for (name, t) in ENCRYPTION_ALGORITHMS {
            assert!(t.encr_alg().is_some(), "{name}");
        }
        for (name, id) in IPSEC_AUTHENTICATION_ALGORITHMS {
            assert!(
                dataplane::crypto::IntegAlg::from_iana(*id).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn standard_ipsec_set_implies_pfs_group2() {
        let set = ipsec_set("standard").unwrap();
        assert_eq!(set.pfs_group, Some(2));
        assert_eq!(set.proposals[0].name, "g2-esp-3des-sha");
        assert_eq!(set.proposals[1].encr, Some(cbc(128)));
    }
}
