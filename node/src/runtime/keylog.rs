//! The Wireshark key log (`[security.ike.traceoptions] key-log = "DIR"`): every IKE SA's
//! and child SA's keys appended to `DIR/ikev2_decryption_table` and `DIR/esp_sa`, the
//! files Wireshark reads from a profile directory for its IKEv2 and ESP decryption
//! tables (strongSwan's `save-keys` plugin writes the same two), so an operator can
//! decrypt a capture. Off unless configured: the files hold live keys, so they are
//! created (and kept) mode 0600, lines are built in zeroizing buffers, and nothing
//! secret goes through tracing.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ike::engine::{ChildSaInstall, IkeSaKeyMaterial};

/// Wireshark's IKEv2 decryption table, by its user-table file name.
pub const IKE_TABLE: &str = "ikev2_decryption_table";
/// Wireshark's ESP SA table, by its user-table file name.
pub const ESP_TABLE: &str = "esp_sa";

/// Appends key lines to the two tables in one directory.
#[derive(Debug, Clone)]
pub struct KeyLog {
    dir: PathBuf,
}

impl KeyLog {
    /// A key log in `dir` (which must exist; the files are created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyLog { dir: dir.into() }
    }

    /// The keys of an IKE SA, as soon as they exist (so a failing IKE_AUTH can be
    /// decrypted too). Algorithms Wireshark cannot decrypt write nothing.
    pub fn ike(&self, keys: &IkeSaKeyMaterial) {
        if let Some(line) = keys.key_log().wireshark_line() {
            self.append(IKE_TABLE, &line);
        }
    }

    /// Both directions of a child SA pair between our `local` and the peer's `remote`
    /// address.
    pub fn esp(&self, install: &ChildSaInstall, local: IpAddr, remote: IpAddr) {
        for sa in install.key_log(local, remote).into_iter().flatten() {
            if let Some(line) = sa.wireshark_line() {
                self.append(ESP_TABLE, &line);
            }
        }
    }

    fn append(&self, table: &str, line: &str) {
        let path = self.dir.join(table);
        if let Err(e) = append_line(&path, line) {
            tracing::warn!(file = %path.display(), error = %e, "key log not written");
        }
    }
}

/// Appends `line` and a newline to `path`, created 0600; an existing file is set to
/// 0600 too, since what it is about to hold is a key.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(line.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use ike::crypto::SecretBytes;
    use ike::engine::{ChildSaKeys, IkeSaKeyMaterial};
    use ike::wire::ProtocolId;

    use super::*;

    fn ike_keys(spi_i: u64) -> IkeSaKeyMaterial {
        IkeSaKeyMaterial {
            spi_i,
            spi_r: 2,
            encr: (20, Some(128)),
            integ: None,
            sk_ei: SecretBytes::from_slice(&[0x11; 20]),
            sk_er: SecretBytes::from_slice(&[0x22; 20]),
            sk_ai: SecretBytes::from_slice(&[]),
            sk_ar: SecretBytes::from_slice(&[]),
        }
    }

    fn child() -> ChildSaInstall {
        let keys = |spi, byte| ChildSaKeys {
            spi,
            encr_key: SecretBytes::from_slice(&[byte; 20]),
            integ_key: SecretBytes::from_slice(&[]),
        };
        ChildSaInstall {
            protocol: ProtocolId::Esp,
            encr_id: Some(20),
            encr_key_bits: Some(128),
            integ_id: None,
            esn: false,
            mode: ike::engine::IpsecMode::Tunnel,
            inbound: keys(0x1000, 0xaa),
            outbound: keys(0x2000, 0xbb),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            udp_encap: None,
            rekeys: None,
            outbound_deferred: false,
        }
    }

    fn read(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn appends_both_tables_in_wiresharks_formats_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let log = KeyLog::new(dir.path());
        // A table left readable by someone else is closed down before keys go in.
        let ike_path = dir.path().join(IKE_TABLE);
        std::fs::write(&ike_path, "").unwrap();
        std::fs::set_permissions(&ike_path, Permissions::from_mode(0o644)).unwrap();
        log.ike(&ike_keys(1));
        log.ike(&ike_keys(3));
        let lines = read(&ike_path);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            ike_keys(1).key_log().wireshark_line().unwrap().as_str()
        );
        assert!(lines[1].starts_with("0000000000000003,0000000000000002,1111"));
        let esp_path = dir.path().join(ESP_TABLE);
        log.esp(
            &child(),
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
        );
        let lines = read(&esp_path);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x00002000\""));
        assert!(lines[1].starts_with("\"IPv4\",\"192.0.2.2\",\"192.0.2.1\",\"0x00001000\""));
        for path in [&ike_path, &esp_path] {
            assert_eq!(std::fs::metadata(path).unwrap().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_missing_directory_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let log = KeyLog::new(dir.path().join("absent"));
        log.ike(&ike_keys(1));
        assert!(!dir.path().join("absent").exists());
    }
}
