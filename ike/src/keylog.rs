//! Wireshark key logs, so an operator can decrypt a capture of our IKE and ESP traffic.
//!
//! Wireshark reads two user tables: `ikev2_decryption_table` (IKE SA keys by SPI pair)
//! and `esp_sa` (one line per ESP SA direction). Both name algorithms by the strings in
//! Wireshark's own menus, which strongSwan's `save-keys` plugin also writes; a line for
//! an algorithm Wireshark cannot decrypt is not produced at all (`None`), rather than a
//! line that silently fails to decrypt.
//!
//! This module only formats lines; writing them (and keeping the file `0600`, since it
//! holds live keys) is the daemon's job, and only when the operator asked for it. Lines
//! are [`Zeroizing`] and allocated once at their final size, so no copy of a key is
//! left behind in memory by a reallocation.

use std::fmt::Write as _;
use std::net::IpAddr;

use zeroize::Zeroizing;

/// Room for a line's fixed text (SPIs, addresses, quoted algorithm names, commas).
const LINE_OVERHEAD: usize = 200;

/// IKE encryption names of Wireshark's IKEv2 decryption table, by (ENCR id, key bits).
fn ike_encr_name(id: u16, key_bits: Option<u16>) -> Option<&'static str> {
    Some(match (id, key_bits) {
        (3, _) => "3DES [RFC2451]",
        (11, _) => "NULL [RFC2410]",
        (12, Some(128)) => "AES-CBC-128 [RFC3602]",
        (12, Some(192)) => "AES-CBC-192 [RFC3602]",
        (12, Some(256)) => "AES-CBC-256 [RFC3602]",
        (20, Some(128)) => "AES-GCM-128 with 16 octet ICV [RFC5282]",
        (20, Some(192)) => "AES-GCM-192 with 16 octet ICV [RFC5282]",
        (20, Some(256)) => "AES-GCM-256 with 16 octet ICV [RFC5282]",
        _ => return None,
    })
}

/// IKE integrity names, by INTEG id; `None` (AEAD) maps to Wireshark's "NONE".
fn ike_integ_name(id: Option<u16>) -> Option<&'static str> {
    Some(match id {
        None | Some(0) => "NONE [RFC4306]",
        Some(1) => "HMAC_MD5_96 [RFC2403]",
        Some(2) => "HMAC_SHA1_96 [RFC2404]",
        Some(12) => "HMAC_SHA2_256_128 [RFC4868]",
        Some(13) => "HMAC_SHA2_384_192 [RFC4868]",
        Some(14) => "HMAC_SHA2_512_256 [RFC4868]",
        _ => return None,
    })
}

/// ESP encryption names of Wireshark's `esp_sa` table, by ENCR id.
fn esp_encr_name(id: u16) -> Option<&'static str> {
    Some(match id {
        2 => "DES-CBC [RFC2405]",
        3 => "TripleDes-CBC [RFC2451]",
        11 => "NULL",
        12 => "AES-CBC [RFC3602]",
        20 => "AES-GCM [RFC4106]",
        _ => return None,
    })
}

/// ESP integrity names; with an AEAD Wireshark wants the ICV length checked by nothing.
fn esp_integ_name(id: Option<u16>) -> Option<&'static str> {
    Some(match id {
        None | Some(0) => "ANY 128 bit authentication [no checking]",
        Some(1) => "HMAC-MD5-96 [RFC2403]",
        Some(2) => "HMAC-SHA-1-96 [RFC2404]",
        Some(12) => "HMAC-SHA-256-128 [RFC4868]",
        Some(13) => "HMAC-SHA-384-192 [RFC4868]",
        Some(14) => "HMAC-SHA-512-256 [RFC4868]",
        _ => return None,
    })
}

fn hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// The keys of one IKE SA, as its two ends derived them (RFC 7296 §2.14).
#[derive(Clone, Copy)]
pub struct IkeSaKeyLog<'a> {
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI.
    pub spi_r: u64,
    /// IANA ENCR id and key length attribute.
    pub encr: (u16, Option<u16>),
    /// IANA INTEG id, `None` with an AEAD.
    pub integ: Option<u16>,
    /// SK_ei (with the salt for AES-GCM).
    pub sk_ei: &'a [u8],
    /// SK_er.
    pub sk_er: &'a [u8],
    /// SK_ai (empty with an AEAD).
    pub sk_ai: &'a [u8],
    /// SK_ar.
    pub sk_ar: &'a [u8],
}

impl std::fmt::Debug for IkeSaKeyLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSaKeyLog")
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .finish_non_exhaustive()
    }
}

impl IkeSaKeyLog<'_> {
    /// One line of Wireshark's `ikev2_decryption_table`, or `None` for algorithms
    /// Wireshark cannot decrypt.
    pub fn wireshark_line(&self) -> Option<Zeroizing<String>> {
        let encr = ike_encr_name(self.encr.0, self.encr.1)?;
        let integ = ike_integ_name(self.integ)?;
        let keys = self.sk_ei.len() + self.sk_er.len() + self.sk_ai.len() + self.sk_ar.len();
        let mut s = Zeroizing::new(String::with_capacity(LINE_OVERHEAD + 2 * keys));
        let _ = write!(s, "{:016x},{:016x},", self.spi_i, self.spi_r);
        hex(&mut s, self.sk_ei);
        s.push(',');
        hex(&mut s, self.sk_er);
        let _ = write!(s, ",\"{encr}\",");
        hex(&mut s, self.sk_ai);
        s.push(',');
        hex(&mut s, self.sk_ar);
        let _ = write!(s, ",\"{integ}\"");
        Some(s)
    }
}

/// The keys of one ESP SA direction.
#[derive(Clone, Copy)]
pub struct EspSaKeyLog<'a> {
    /// Sender of the protected packets.
    pub src: IpAddr,
    /// Receiver (who chose the SPI).
    pub dst: IpAddr,
    /// SPI.
    pub spi: u32,
    /// IANA ENCR id.
    pub encr: u16,
    /// Encryption key (with the salt for AEADs).
    pub encr_key: &'a [u8],
    /// IANA INTEG id, `None` with an AEAD.
    pub integ: Option<u16>,
    /// Integrity key.
    pub integ_key: &'a [u8],
}

impl std::fmt::Debug for EspSaKeyLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspSaKeyLog")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("spi", &format_args!("{:#010x}", self.spi))
            .finish_non_exhaustive()
    }
}

impl EspSaKeyLog<'_> {
    /// One line of Wireshark's `esp_sa` table, or `None` for algorithms Wireshark
    /// cannot decrypt.
    pub fn wireshark_line(&self) -> Option<Zeroizing<String>> {
        let encr = esp_encr_name(self.encr)?;
        let integ = esp_integ_name(self.integ)?;
        let family = if self.src.is_ipv4() { "IPv4" } else { "IPv6" };
        let keys = self.encr_key.len() + self.integ_key.len();
        let mut s = Zeroizing::new(String::with_capacity(LINE_OVERHEAD + 2 * keys));
        let _ = write!(
            s,
            "\"{family}\",\"{}\",\"{}\",\"0x{:08x}\",\"{encr}\",\"0x",
            self.src, self.dst, self.spi
        );
        hex(&mut s, self.encr_key);
        let _ = write!(s, "\",\"{integ}\",\"0x");
        hex(&mut s, self.integ_key);
        s.push('"');
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ikev2_table_line() {
        let log = IkeSaKeyLog {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0xa1a2_a3a4_a5a6_a7a8,
            encr: (12, Some(128)),
            integ: Some(12),
            sk_ei: &[0x11; 16],
            sk_er: &[0x22; 16],
            sk_ai: &[0x33; 2],
            sk_ar: &[0x44; 2],
        };
        assert_eq!(
            log.wireshark_line().unwrap().as_str(),
            "0102030405060708,a1a2a3a4a5a6a7a8,11111111111111111111111111111111,\
             22222222222222222222222222222222,\"AES-CBC-128 [RFC3602]\",3333,4444,\
             \"HMAC_SHA2_256_128 [RFC4868]\""
        );
    }

    #[test]
    fn esp_table_line_for_an_aead() {
        let log = EspSaKeyLog {
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            spi: 0xc0ffee,
            encr: 20,
            encr_key: &[0xab; 4],
            integ: None,
            integ_key: &[],
        };
        assert_eq!(
            log.wireshark_line().unwrap().as_str(),
            "\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x00c0ffee\",\"AES-GCM [RFC4106]\",\
             \"0xabababab\",\"ANY 128 bit authentication [no checking]\",\"0x\""
        );
    }

    #[test]
    fn algorithms_wireshark_cannot_decrypt_produce_no_line() {
        let log = EspSaKeyLog {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            spi: 1,
            encr: 28,
            encr_key: &[],
            integ: None,
            integ_key: &[],
        };
        assert_eq!(log.wireshark_line(), None);
        assert!(!format!("{log:?}").contains("encr_key"));
    }
}
