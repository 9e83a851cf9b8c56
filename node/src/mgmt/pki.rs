//! A development PKI for the management API (`vpnctl pki init DIR`).
//!
//! Writes a CA, a server certificate and one client certificate per role, so a demo or
//! a lab gateway gets mutual TLS in one command. Production deployments should issue
//! these from their own CA; the only requirement on client certificates is the role SAN
//! URI described in `auth.rs`.
//!
//! The CA's private key is deliberately not written: nothing here issues certificates
//! later, and a CA key left in a demo directory is a CA key anyone can use. To add a
//! name to the server certificate, run `pki init` again with `--force` and
//! redistribute the files.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::MgmtError;
use super::auth::Role;

/// The CA certificate's file name in a PKI directory.
pub const CA_FILE: &str = "ca.pem";
/// The server's identity name (`server.pem`, `server.key`).
pub const SERVER_IDENTITY: &str = "server";

/// Certificates are valid from January 1st of this year for this many years: long
/// enough for a lab, short enough that a demo PKI that escapes into production expires.
const VALIDITY_YEARS: i32 = 2;

/// What `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
}

/// Writes `ca.pem`, `server.pem`/`server.key` (for `localhost`, `127.0.0.1`, `::1` and
/// `server_names`), `operator.pem`/`operator.key` and `read-only.pem`/`read-only.key`
/// into `dir`, creating it. Existing files are an error unless `force` is set, so a
/// running deployment's keys are not replaced by accident. Keys are written mode 0600.
pub fn init(dir: &Path, server_names: &[String], force: bool) -> Result<PkiFiles, MgmtError> {
    std::fs::create_dir_all(dir).map_err(|source| MgmtError::Write {
        path: dir.to_owned(),
        source,
    })?;

    // The CA's name carries a piece of its public key: two demo PKIs then have distinct
    // issuers, so a certificate from the wrong one fails as "unknown issuer" rather than
    // as a bad signature from a CA of the same name.
    let ca_key = KeyPair::generate()?;
    let tag: String = ca_key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = common_name(&format!("vpnd management CA {tag}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca_params);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for name in server_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut server = CertificateParams::new(names)?;
    server.distinguished_name = common_name("vpnd");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let mut leaves = vec![(SERVER_IDENTITY.to_owned(), server)];
    for role in [Role::Operator, Role::ReadOnly] {
        let mut client = CertificateParams::default();
        client.distinguished_name = common_name(role.name());
        client.subject_alt_names = vec![SanType::URI(role.san_uri().try_into()?)];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaves.push((role.name().to_owned(), client));
    }

    let mut files = Vec::new();
    let ca_path = dir.join(CA_FILE);
    files.push((ca_path.clone(), ca.pem(), false));
    for (name, mut params) in leaves {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        files.push((dir.join(format!("{name}.pem")), cert.pem(), false));
        files.push((dir.join(format!("{name}.key")), key.serialize_pem(), true));
    }

    if !force && let Some((path, _, _)) = files.iter().find(|(p, _, _)| p.exists()) {
        return Err(MgmtError::Exists(path.clone()));
    }
    let mut written = Vec::new();
    for (path, contents, secret) in files {
        write_file(&path, contents.as_bytes(), secret)?;
        written.push(path);
    }
    Ok(PkiFiles {
        ca: ca_path,
        written,
    })
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams) {
    // Civil year from the Unix time: off by at most a day around New Year, which only
    // moves the window by that day.
    const SECS_PER_YEAR: u64 = 31_556_952;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let year = 1970 + i32::try_from(secs / SECS_PER_YEAR).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), MgmtError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let write = || -> std::io::Result<()> {
        let mut file = options.open(path)?;
        // `mode` applies only to a new file: narrow one that `--force` overwrites too.
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents)
    };
    write().map_err(|source| MgmtError::Write {
        path: path.to_owned(),
        source,
    })
}
