//! Interoperability with strongSwan: Debian's charon with the userspace kernel-libipsec
//! plugin as the remote site, `vpnd` as the local one, each in its own network
//! namespace. IKEv2 with a pre-shared key, ECDSA or RSA certificates (RFC 7427) across
//! DH groups 14, 19, 20 and 31 and AES-GCM-128/256 / AES-CBC+SHA-256, with either side
//! initiating (`netns_interop_matrix` walks every combination), traffic through the
//! tunnel in both directions, and child and IKE SA rekeys under continuous traffic,
//! started by either side (vpnd's IKE rekey through its management API).
//!
//! kernel-libipsec implements ESP in tunnel mode over UDP only (libipsec's `ipsec_sa`:
//! "only ESP is supported", "only tunnel mode is supported", encapsulation "must be
//! TRUE"), so AH and transport mode are tested between two vpnd in `e2e_netns.rs`.
//!
//! Needs root and strongSwan (`apt-get install strongswan-charon strongswan-swanctl
//! libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins`,
//! done by `.ci/run`). Without them every test fails saying so; skip them with
//! `cargo test -- --skip netns_`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PSK: &str = "interop-psk-0123456789abcdef";
const CHARON: &str = "/usr/lib/ipsec/charon";

fn require_environment() {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "needs root (network namespaces, TUN, raw sockets): run as root or skip with `cargo test -- --skip netns_`"
    );
    assert!(
        Path::new(CHARON).exists()
            && Path::new("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so").exists(),
        "needs strongSwan with kernel-libipsec: apt-get install strongswan-charon strongswan-swanctl \
         libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins"
    );
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cipher suite (IKE and ESP), spelled for both implementations.
#[derive(Debug, Clone, Copy)]
struct Cipher {
    /// strongSwan IKE proposal without its DH group.
    ike: &'static str,
    /// strongSwan ESP proposal.
    esp: &'static str,
    /// Junos encryption (IKE and ESP).
    encr: &'static str,
    /// Junos IKE authentication algorithm (PRF, and integrity for CBC).
    ike_auth: &'static str,
    /// Junos ESP authentication algorithm, for CBC.
    esp_auth: Option<&'static str>,
}

const AES128_GCM: Cipher = Cipher {
    ike: "aes128gcm16-prfsha256",
    esp: "aes128gcm16",
    encr: "aes-128-gcm",
    ike_auth: "sha-256",
    esp_auth: None,
};
const AES256_GCM: Cipher = Cipher {
    ike: "aes256gcm16-prfsha384",
    esp: "aes256gcm16",
    encr: "aes-256-gcm",
    ike_auth: "sha-384",
    esp_auth: None,
};
const AES128_CBC_SHA256: Cipher = Cipher {
    ike: "aes128-sha256",
    esp: "aes128-sha256",
    encr: "aes-128-cbc",
    ike_auth: "sha-256",
    esp_auth: Some("hmac-sha-256-128"),
};

/// A DH group: strongSwan's keyword, Junos' name, and how `swanctl --list-sas` shows it.
#[derive(Debug, Clone, Copy)]
struct Group {
    swan: &'static str,
    junos: &'static str,
    listed: &'static str,
}

const MODP2048: Group = Group {
    swan: "modp2048",
    junos: "group14",
    listed: "MODP_2048",
};
const ECP256: Group = Group {
    swan: "ecp256",
    junos: "group19",
    listed: "ECP_256",
};
const ECP384: Group = Group {
    swan: "ecp384",
    junos: "group20",
    listed: "ECP_384",
};
const X25519: Group = Group {
    swan: "x25519",
    junos: "group31",
    listed: "CURVE_25519",
};

/// One proposal: a cipher suite with a DH group for the IKE SA.
#[derive(Debug, Clone, Copy)]
struct Suite {
    cipher: Cipher,
    group: Group,
}

impl Suite {
    /// The strongSwan IKE proposal.
    fn ike(&self) -> String {
        format!("{}-{}", self.cipher.ike, self.group.swan)
    }
}

const GCM_ECP256: Suite = Suite {
    cipher: AES128_GCM,
    group: ECP256,
};
const CBC_MODP2048: Suite = Suite {
    cipher: AES128_CBC_SHA256,
    group: MODP2048,
};
const GCM256_ECP384: Suite = Suite {
    cipher: AES256_GCM,
    group: ECP384,
};
const GCM_X25519: Suite = Suite {
    cipher: AES128_GCM,
    group: X25519,
};

/// How vpnd and charon authenticate each other (both ends the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Psk,
    /// Certificates with ECDSA P-256 keys.
    Ecdsa,
    /// Certificates with RSA 2048 keys: RFC 7427 signatures, PKCS#1 v1.5 with SHA-256
    /// from vpnd.
    Rsa,
}

/// Rekey timers strongSwan uses (seconds): child rekey/life, IKE rekey.
#[derive(Debug, Clone, Copy)]
struct Timers {
    child_rekey: u32,
    child_life: u32,
    ike_rekey: u32,
}

const LONG: Timers = Timers {
    child_rekey: 3600,
    child_life: 3960,
    ike_rekey: 14400,
};

/// Two namespaces joined by a veth: `a` runs vpnd (192.0.2.1, LAN 10.1.0.1 on lo, its
/// management API on 127.0.0.1:50051 with the PKI in `dir/pki`), `b` runs charon
/// (192.0.2.2, LAN 10.2.0.1 on lo).
struct Topology {
    a: String,
    b: String,
    dir: PathBuf,
}

impl Topology {
    fn new(tag: &str) -> Topology {
        let pid = std::process::id();
        let (a, b) = (format!("ssi-{tag}-{pid}-a"), format!("ssi-{tag}-{pid}-b"));
        let dir = std::env::temp_dir().join(format!("interop-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).expect("work dir");
        // The management API's PKI, so that tests can drive vpnd with vpnctl.
        node::mgmt::pki::init(&dir.join("pki"), &[], false).expect("vpnctl pki init");
        for ns in [&a, &b] {
            let _ = run("ip", &["netns", "del", ns]);
            ok("ip", &["netns", "add", ns]);
            ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        ok(
            "ip",
            &[
                "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
            ],
        );
        for (ns, dev, outer, inner) in [
            (&a, "va", "192.0.2.1/24", "10.1.0.1/32"),
            (&b, "vb", "192.0.2.2/24", "10.2.0.1/32"),
        ] {
            ok("ip", &["-n", ns, "addr", "add", outer, "dev", dev]);
            ok("ip", &["-n", ns, "link", "set", dev, "up"]);
            ok("ip", &["-n", ns, "addr", "add", inner, "dev", "lo"]);
        }
        Topology { a, b, dir }
    }

    fn ping(&self, from_a: bool, count: u32, interval: &str) -> (u32, u32) {
        let (ns, src, dst) = if from_a {
            (&self.a, "10.1.0.1", "10.2.0.1")
        } else {
            (&self.b, "10.2.0.1", "10.1.0.1")
        };
        let n = count.to_string();
        let out = run(
            "ip",
            &[
                "netns", "exec", ns, "ping", "-q", "-c", &n, "-i", interval, "-W", "1", "-I", src,
                dst,
            ],
        );
        parse_ping(&String::from_utf8_lossy(&out.stdout))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// (transmitted, received) from ping's summary line.
fn parse_ping(out: &str) -> (u32, u32) {
    let line = out
        .lines()
        .find(|l| l.contains("transmitted"))
        .unwrap_or("");
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    )
}

/// A charon daemon in namespace `b`, with its own /run (its pid file path is fixed).
struct Charon {
    child: Child,
    dir: PathBuf,
}

/// What charon's one connection, `peer`, is configured with.
#[derive(Debug, Clone, Copy)]
struct Peer {
    suite: Suite,
    timers: Timers,
    auth: Auth,
    /// With certificates: subject DNs as IKE identities instead of the FQDNs.
    dn_ids: bool,
}

impl Peer {
    fn psk(suite: Suite, timers: Timers) -> Peer {
        Peer {
            suite,
            timers,
            auth: Auth::Psk,
            dn_ids: false,
        }
    }

    /// (charon's, vpnd's) IKE identity as strongSwan writes them.
    fn ids(&self) -> (&'static str, &'static str) {
        if self.dn_ids {
            ("C=US, O=Interop, CN=b.test", "C=US, O=Interop, CN=a.test")
        } else {
            ("b.test", "a.test")
        }
    }

    /// charon's `swanctl.conf`: vpnd at 192.0.2.1 as `a.test`, ESP in UDP (all
    /// kernel-libipsec speaks), one tunnel-mode child `net`.
    fn swanctl_conf(&self) -> String {
        let (local_id, remote_id) = self.ids();
        let (local_auth, remote_auth, secrets) = match self.auth {
            Auth::Psk => (
                format!("auth = psk\n            id = {local_id}"),
                format!("auth = psk\n            id = {remote_id}"),
                format!(
                    "secrets {{\n    ike-peer {{\n        id-1 = {remote_id}\n        \
                     id-2 = {local_id}\n        secret = \"{PSK}\"\n    }}\n}}\n"
                ),
            ),
            Auth::Ecdsa | Auth::Rsa => (
                format!(
                    "auth = pubkey\n            certs = b.pem\n            id = \"{local_id}\""
                ),
                format!("auth = pubkey\n            id = \"{remote_id}\""),
                String::new(),
            ),
        };
        format!(
            "connections {{
    peer {{
        version = 2
        local_addrs = 192.0.2.2
        remote_addrs = 192.0.2.1
        proposals = {ike}
        rekey_time = {ike_rekey}s
        over_time = 60s
        rand_time = 1s
        encap = yes
        mobike = no
        unique = never
        local {{
            {local_auth}
        }}
        remote {{
            {remote_auth}
        }}
        children {{
            net {{
                local_ts = 10.2.0.0/16
                remote_ts = 10.1.0.0/16
                mode = tunnel
                esp_proposals = {esp}
                rekey_time = {child_rekey}s
                life_time = {child_life}s
                rand_time = 1s
                start_action = none
                dpd_action = clear
            }}
        }}
    }}
}}
{secrets}",
            ike = self.suite.ike(),
            esp = self.suite.cipher.esp,
            ike_rekey = self.timers.ike_rekey,
            child_rekey = self.timers.child_rekey,
            child_life = self.timers.child_life,
        )
    }
}

impl Charon {
    /// charon in namespace `b` with a PSK connection for `suite`.
    fn start(topo: &Topology, suite: Suite, timers: Timers) -> Charon {
        let charon = Charon::launch(topo);
        charon.load(&Peer::psk(suite, timers), None);
        charon
    }

    /// charon in namespace `b` with its own /run and swanctl directory, no connection
    /// loaded yet.
    fn launch(topo: &Topology) -> Charon {
        let dir = topo.dir.join("charon");
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["run", "x509", "x509ca", "private"] {
            std::fs::create_dir_all(dir.join(sub)).expect("charon dir");
        }
        lab::strongswan::write_strongswan_conf(&dir).expect("strongswan.conf");
        let d = dir.display().to_string();
        let script = format!(
            "mount --bind '{d}/run' /run && exec env STRONGSWAN_CONF='{d}/strongswan.conf' {CHARON}"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &topo.b, "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting charon");
        let charon = Charon { child, dir };
        let vici = charon.dir.join("run/charon.vici");
        wait_for("charon's vici socket", Duration::from_secs(10), || {
            vici.exists()
        });
        charon
    }

    /// (Re)loads connection `peer` and its credentials (`pki` with certificates) into
    /// the running charon, replacing what was loaded before; established SAs stay.
    fn load(&self, peer: &Peer, pki: Option<&CertFiles>) {
        for sub in ["x509", "x509ca", "private"] {
            let d = self.dir.join(sub);
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("charon credential dir");
        }
        if let Some(files) = pki {
            std::fs::copy(&files.ca, self.dir.join("x509ca/ca.pem")).expect("CA");
            std::fs::copy(&files.b_cert, self.dir.join("x509/b.pem")).expect("certificate");
            std::fs::copy(&files.b_key, self.dir.join("private/b.key")).expect("key");
        }
        let conf = self.dir.join("swanctl.conf");
        std::fs::write(&conf, peer.swanctl_conf()).expect("swanctl.conf");
        let out = self.swanctl(&[
            "--load-all",
            "--clear",
            "--file",
            &conf.display().to_string(),
        ]);
        let loaded = String::from_utf8_lossy(&out.stdout).into_owned();
        let key = match peer.auth {
            Auth::Psk => "loaded ike secret",
            Auth::Ecdsa => "loaded ECDSA key",
            Auth::Rsa => "loaded RSA key",
        };
        assert!(
            out.status.success() && loaded.contains(key),
            "swanctl --load-all for {peer:?}: {loaded}"
        );
    }

    fn swanctl(&self, args: &[&str]) -> Output {
        let uri = format!("unix://{}/run/charon.vici", self.dir.display());
        Command::new("timeout")
            .arg("60")
            .arg("swanctl")
            .args(args)
            .args(["--uri", &uri])
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"))
            .env("SWANCTL_DIR", &self.dir)
            .output()
            .expect("running swanctl")
    }

    fn list_sas(&self) -> String {
        String::from_utf8_lossy(&self.swanctl(&["--list-sas"]).stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM, a bounded wait for a clean exit (charon and vpnd both send Deletes), then
/// SIGKILL.
fn stop(child: &mut Child) {
    // SAFETY: kill with a PID we spawned; the worst case is ESRCH.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `vpnd` in namespace `a`.
struct Vpnd {
    child: Child,
    log: PathBuf,
}

impl Vpnd {
    fn start(topo: &Topology, suite: Suite, initiate: bool) -> Vpnd {
        Vpnd::spawn(topo, &Vpnd::config(suite, initiate))
    }

    /// The configuration of [`Vpnd::start`]: one route-based VPN to charon, PSK.
    fn config(suite: Suite, initiate: bool) -> String {
        vpnd_config(&Peer::psk(suite, LONG), None, initiate)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// vpnd's side of `peer`: one route-based VPN to charon (vpnd initiates at once when
/// `initiate`, else only responds), authenticated as charon expects.
fn vpnd_config(peer: &Peer, pki: Option<&CertFiles>, initiate: bool) -> String {
    let (suite, cipher) = (peer.suite, peer.suite.cipher);
    let method = match peer.auth {
        Auth::Psk => "pre-shared-keys",
        Auth::Ecdsa => "ecdsa-signatures-256",
        Auth::Rsa => "rsa-signatures",
    };
    let credentials = match pki {
        None => format!("pre-shared-key.ascii-text = \"{PSK}\""),
        Some(f) => format!(
            "certificate.local-certificate = \"{}\"\ncertificate.private-key = \"{}\"\n\
             certificate.trusted-ca = [\"{}\"]",
            f.a_cert.display(),
            f.a_key.display(),
            f.ca.display()
        ),
    };
    let identities = if peer.dn_ids {
        // No local-identity: the certificate's subject DN.
        format!("remote-identity.distinguished-name = \"{}\"", peer.ids().0)
    } else {
        "local-identity.hostname = \"a.test\"\nremote-identity.hostname = \"b.test\"".into()
    };
    let esp_auth = cipher
        .esp_auth
        .map(|a| format!("authentication-algorithm = \"{a}\"\n"))
        .unwrap_or_default();
    format!(
        "[security.ike.proposal.p1]
authentication-method = \"{method}\"
dh-group = \"{dh}\"
encryption-algorithm = \"{encr}\"
authentication-algorithm = \"{ike_auth}\"
lifetime-seconds = 28800

[security.ike.policy.pol]
proposals = [\"p1\"]
{credentials}

[security.ike.gateway.charon]
ike-policy = \"pol\"
address = [\"192.0.2.2\"]
local-address = \"192.0.2.1\"
{identities}
version = \"v2-only\"

[security.ipsec.proposal.esp1]
protocol = \"esp\"
encryption-algorithm = \"{encr}\"
lifetime-seconds = 3600
{esp_auth}
[security.ipsec.policy.ipol]
proposals = [\"esp1\"]

[security.ipsec.vpn.to-charon]
bind-interface = \"st0.0\"
ike.gateway = \"charon\"
ike.ipsec-policy = \"ipol\"
establish-tunnels = \"{establish}\"
traffic-selector.lan = {{ local-ip = \"10.1.0.0/16\", remote-ip = \"10.2.0.0/16\" }}

[interfaces.st0.unit.0]
family.inet.address = \"10.255.0.1/30\"

[routing-options.static.route.\"10.2.0.0/16\"]
next-hop = \"st0.0\"

[services.management]
listen = \"127.0.0.1:50051\"
",
        dh = suite.group.junos,
        encr = cipher.encr,
        ike_auth = cipher.ike_auth,
        establish = if initiate {
            "immediately"
        } else {
            "responder-only"
        },
    )
}

impl Vpnd {
    /// Writes `cfg` and starts vpnd with it in namespace `a`, logging to the work dir.
    fn spawn(topo: &Topology, cfg: &str) -> Vpnd {
        let path = topo.dir.join("vpnd.toml");
        std::fs::write(&path, cfg).expect("vpnd config");
        let log = topo.dir.join("vpnd.log");
        let out = std::fs::File::create(&log).expect("vpnd log");
        let err = out.try_clone().expect("vpnd log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &topo.a,
                env!("CARGO_BIN_EXE_vpnd"),
                "--config",
            ])
            .arg(&path)
            .arg("--pki")
            .arg(topo.dir.join("pki"))
            .args(["--log", "info,ike=debug"])
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting vpnd");
        Vpnd { child, log }
    }
}

impl Drop for Vpnd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Polls `cond` every 100 ms for up to `limit`; whether it became true.
fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(limit, cond),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// Brings up the child SA: charon initiates unless vpnd does (as its configuration
/// says); done once vpnd installed a pair and charon lists one.
fn bring_up(charon: &Charon, vpnd: &Vpnd, vpnd_initiates: bool) -> Result<(), String> {
    if !vpnd_initiates {
        if !poll_until(Duration::from_secs(10), || {
            vpnd.log().contains("vpnd running")
        }) {
            return Err("vpnd did not start within 10 s".into());
        }
        let out = charon.swanctl(&["--initiate", "--child", "net", "--ike", "peer"]);
        if !out.status.success() {
            return Err(format!(
                "charon could not initiate: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    if poll_until(Duration::from_secs(20), || {
        vpnd.log().contains("IPsec SA pair installed") && charon.list_sas().contains("INSTALLED")
    }) {
        Ok(())
    } else {
        Err("no child SA on both sides within 20 s".into())
    }
}

/// `count` pings each way through the tunnel, all answered.
fn ping_both_ways(topo: &Topology, count: u32) -> Result<(), String> {
    for (from_a, dir) in [(true, "vpnd->charon"), (false, "charon->vpnd")] {
        let (tx, rx) = topo.ping(from_a, count, "0.1");
        if (tx, rx) != (count, count) {
            return Err(format!("ping {dir}: {rx} of {tx} answered"));
        }
    }
    Ok(())
}

/// Brings up one PSK tunnel with `suite`, checks traffic both ways and what charon
/// negotiated, and returns the pieces for further checks.
fn establish(
    topo: &Topology,
    suite: Suite,
    vpnd_initiates: bool,
    timers: Timers,
) -> (Charon, Vpnd) {
    let charon = Charon::start(topo, suite, timers);
    let vpnd = Vpnd::start(topo, suite, vpnd_initiates);
    if let Err(e) =
        bring_up(&charon, &vpnd, vpnd_initiates).and_then(|()| check_tunnel(topo, &charon, suite))
    {
        panic!(
            "{suite:?}: {e}\ncharon:\n{}\nvpnd log:\n{}",
            charon.list_sas(),
            vpnd.log()
        );
    }
    (charon, vpnd)
}

/// An established tunnel as charon lists it (ESP in UDP, the suite's DH group), and
/// traffic through it both ways that charon counted.
fn check_tunnel(topo: &Topology, charon: &Charon, suite: Suite) -> Result<(), String> {
    let sas = charon.list_sas();
    if !sas.contains("ESTABLISHED") || !sas.contains(suite.group.listed) {
        return Err(format!(
            "charon lists no IKE SA with {}",
            suite.group.listed
        ));
    }
    if !sas.contains("TUNNEL-in-UDP") {
        return Err("ESP must be in UDP towards libipsec".into());
    }
    ping_both_ways(topo, 5)?;
    let sas = charon.list_sas();
    if !sas
        .lines()
        .any(|l| l.trim_start().starts_with("in ") && !l.contains(" 0 bytes"))
    {
        return Err("charon counted no inbound ESP".into());
    }
    Ok(())
}

#[test]
fn netns_interop_vpnd_initiates_each_group_and_cipher() {
    require_environment();
    let topo = Topology::new("init");
    for suite in [GCM_ECP256, CBC_MODP2048, GCM256_ECP384, GCM_X25519] {
        let (charon, vpnd) = establish(&topo, suite, true, LONG);
        drop(vpnd);
        // Our SIGTERM deletes the IKE SA at the peer.
        wait_for("charon to see our Delete", Duration::from_secs(10), || {
            !charon.list_sas().contains("ESTABLISHED")
        });
    }
}

#[test]
fn netns_interop_charon_initiates_each_group_and_cipher() {
    require_environment();
    let topo = Topology::new("resp");
    for suite in [GCM_ECP256, CBC_MODP2048, GCM_X25519] {
        let (charon, vpnd) = establish(&topo, suite, false, LONG);
        // charon deletes the IKE SA and waits for our answer: with none, it would
        // retransmit the Delete for 24 s and report a failure.
        let started = Instant::now();
        let out = charon.swanctl(&["--terminate", "--ike", "peer"]);
        assert!(
            out.status.success() && started.elapsed() < Duration::from_secs(2),
            "{suite:?}: charon's Delete was not answered within 2 s ({:?}): {}\ncharon:\n{}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            charon.log()
        );
        drop(charon);
        drop(vpnd);
    }
}

#[test]
fn netns_interop_rekeys_under_traffic() {
    require_environment();
    let topo = Topology::new("rekey");
    let timers = Timers {
        child_rekey: 4,
        child_life: 30,
        ike_rekey: 9,
    };
    let (charon, vpnd) = establish(&topo, GCM_ECP256, false, timers);
    let spi_before = charon.list_sas();
    // 14 s of 200 pings per second crosses at least two child rekeys and one IKE rekey;
    // at this rate a packet sent on an SA the other end has not installed yet is lost.
    let (tx, rx) = topo.ping(true, 2800, "0.005");
    let log = charon.log();
    let child_rekeys = log.matches("rekeyed").count();
    assert!(
        log.contains("CHILD_SA net{") && child_rekeys >= 1,
        "no rekey seen in charon's log:\n{log}"
    );
    assert!(
        log.contains("IKE_SA peer[") && log.contains("rekeyed between"),
        "no IKE rekey seen in charon's log:\n{log}"
    );
    rekeyed_without_loss(&charon, &vpnd, &spi_before, (tx, rx));
}

#[test]
fn netns_interop_vpnd_rekeys_children_on_volume_under_traffic() {
    require_environment();
    let topo = Topology::new("vrekey");
    // charon never rekeys here (LONG); vpnd's 64 KiB volume lifetime makes vpnd start
    // every child rekey, at about every 700 pings of each direction.
    let charon = Charon::start(&topo, GCM_ECP256, LONG);
    let cfg = Vpnd::config(GCM_ECP256, true).replace(
        "lifetime-seconds = 3600\n",
        "lifetime-seconds = 3600\nlifetime-kilobytes = 64\n",
    );
    let vpnd = Vpnd::spawn(&topo, &cfg);
    wait_child(&charon, &vpnd);
    let spi_before = charon.list_sas();
    let (tx, rx) = topo.ping(true, 2800, "0.005");
    let rekeys = vpnd.log().matches("volume lifetime reached").count();
    assert!(rekeys >= 2, "vpnd started {rekeys} rekeys:\n{}", vpnd.log());
    eprintln!("vpnd started {rekeys} child rekeys under {tx} pings");
    rekeyed_without_loss(&charon, &vpnd, &spi_before, (tx, rx));
}

/// vpnd rekeys its IKE SA under traffic, started through the management API
/// (`vpnctl request security ike rekey gateway charon`, the RekeyIke RPC) rather than
/// by its lifetime, which cannot be configured below 180 s.
#[test]
fn netns_interop_vpnd_rekeys_the_ike_sa_under_traffic() {
    require_environment();
    let topo = Topology::new("vikerekey");
    // charon never rekeys (LONG): every rekey here is vpnd's.
    let charon = Charon::start(&topo, GCM_ECP256, LONG);
    let vpnd = Vpnd::spawn(&topo, &Vpnd::config(GCM_ECP256, true));
    wait_child(&charon, &vpnd);
    // charon's IKE SA line: its unique id and both SPIs.
    let ike_sa = |sas: &str| {
        sas.lines()
            .find(|l| l.contains("ESTABLISHED"))
            .unwrap_or_default()
            .to_owned()
    };
    let ike_before = ike_sa(&charon.list_sas());
    let vpnctl = lab::Vpnctl::new(env!("CARGO_BIN_EXE_vpnctl"), topo.dir.join("pki"));
    // 100 pings/s for 6 s, the rekey requested 2 s in.
    let (tx, rx) = std::thread::scope(|s| {
        let ping = s.spawn(|| topo.ping(true, 600, "0.01"));
        std::thread::sleep(Duration::from_secs(2));
        vpnctl
            .run(
                &topo.a,
                &["request", "security", "ike", "rekey", "gateway", "charon"],
            )
            .unwrap_or_else(|e| panic!("{e:#}\nvpnd log:\n{}", vpnd.log()));
        ping.join().expect("ping thread")
    });
    assert!(
        vpnd.log().contains("IKE SA rekeyed"),
        "vpnd did not rekey its IKE SA:\n{}",
        vpnd.log()
    );
    assert!(
        charon.log().contains("rekeyed between"),
        "charon saw no IKE rekey:\n{}",
        charon.log()
    );
    assert_eq!(tx, rx, "packets lost across the IKE rekey\n{}", vpnd.log());
    // charon holds one IKE SA, under new SPIs, with its one child pair moved to it.
    let sas = charon.list_sas();
    assert_ne!(ike_before, ike_sa(&sas), "IKE SPIs unchanged: {sas}");
    assert_eq!(sas.matches("ESTABLISHED").count(), 1, "{sas}");
    assert_eq!(sas.matches("INSTALLED").count(), 1, "{sas}");
    let (tx, rx) = topo.ping(false, 5, "0.2");
    assert_eq!((tx, rx), (5, 5), "no traffic after the IKE rekey");
}

/// Waits until vpnd (which initiates) installed a child SA pair and charon shows one.
fn wait_child(charon: &Charon, vpnd: &Vpnd) {
    if let Err(e) = bring_up(charon, vpnd, true) {
        panic!(
            "{e}\nvpnd log:\n{}\ncharon log:\n{}",
            vpnd.log(),
            charon.log()
        );
    }
}

/// After rekeys under ping traffic: new SPIs at charon, every ping answered, and
/// exactly one child pair left at charon (nothing leaked by the rekeys).
fn rekeyed_without_loss(charon: &Charon, vpnd: &Vpnd, spi_before: &str, (tx, rx): (u32, u32)) {
    assert_ne!(spi_before, charon.list_sas(), "SPIs unchanged after rekeys");
    assert_eq!(
        tx,
        rx,
        "packets lost across rekeys ({tx} sent, {rx} received)\nvpnd log:\n{}",
        vpnd.log()
    );
    let sas = charon.list_sas();
    assert_eq!(sas.matches("INSTALLED").count(), 1, "{sas}");
}

// ------------------------------------------------------------------ certificates

/// A CA and one certificate each for vpnd (`a.test`) and charon (`b.test`): subject
/// `C=US, O=Interop, CN=<name>`, dNSName SAN `<name>`, keys as PKCS#8 PEM.
struct CertFiles {
    ca: PathBuf,
    a_cert: PathBuf,
    a_key: PathBuf,
    b_cert: PathBuf,
    b_key: PathBuf,
}

/// RSA 2048 keys for the end entities: ring (rcgen's backend here) cannot generate
/// RSA keys, so these are the ike crate's test keys.
const RSA_KEYS: [&str; 2] = [
    include_str!("../../ike/tests/data/rsa2048.pk8.pem"),
    include_str!("../../ike/tests/data/rsa2048-b.pk8.pem"),
];

/// Certificates generated at test time with rcgen in `dir/pki-<auth>`: an ECDSA P-256
/// CA, and end-entity keys of the kind `auth` names (ECDSA P-256, fresh; or RSA 2048).
fn make_certs(dir: &Path, auth: Auth) -> CertFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, SanType,
    };
    let dir = dir.join(format!("pki-{auth:?}").to_lowercase());
    std::fs::create_dir_all(&dir).expect("pki dir");
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CountryName, "US");
    ca.distinguished_name
        .push(DnType::OrganizationName, "Interop");
    ca.distinguished_name.push(DnType::CommonName, "Interop CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let files = CertFiles {
        ca: dir.join("ca.pem"),
        a_cert: dir.join("a.pem"),
        a_key: dir.join("a.key"),
        b_cert: dir.join("b.pem"),
        b_key: dir.join("b.key"),
    };
    std::fs::write(&files.ca, ca_cert.pem()).expect("ca.pem");
    for (i, (name, cert, key)) in [
        ("a.test", &files.a_cert, &files.a_key),
        ("b.test", &files.b_cert, &files.b_key),
    ]
    .into_iter()
    .enumerate()
    {
        let k = match auth {
            Auth::Rsa => KeyPair::from_pem_and_sign_algo(RSA_KEYS[i], &PKCS_RSA_SHA256),
            Auth::Ecdsa | Auth::Psk => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        }
        .expect("key");
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name
            .push(DnType::OrganizationName, "Interop");
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = vec![SanType::DnsName(name.try_into().expect("dNSName"))];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let c = p.signed_by(&k, &issuer).expect("certificate");
        std::fs::write(cert, c.pem()).expect("certificate file");
        std::fs::write(key, k.serialize_pem()).expect("key file");
    }
    files
}

/// One certificate-authenticated tunnel (`auth` ECDSA or RSA): up, traffic both ways,
/// and charon's log shows it verified vpnd's certificate and signature.
fn establish_with_certificates(topo: &Topology, auth: Auth, vpnd_initiates: bool, dn_ids: bool) {
    let files = make_certs(&topo.dir, auth);
    let peer = Peer {
        auth,
        dn_ids,
        ..Peer::psk(GCM_ECP256, LONG)
    };
    let charon = Charon::launch(topo);
    charon.load(&peer, Some(&files));
    let vpnd = Vpnd::spawn(topo, &vpnd_config(&peer, Some(&files), vpnd_initiates));
    let up = bring_up(&charon, &vpnd, vpnd_initiates).and_then(|()| ping_both_ways(topo, 5));
    if let Err(e) = up {
        panic!(
            "{auth:?} certificates (vpnd initiates: {vpnd_initiates}, DN IDs: {dn_ids}): \
             {e}\nvpnd log:\n{}\ncharon log:\n{}",
            vpnd.log(),
            charon.log()
        );
    }
    let log = charon.log();
    let (_, peer_id) = peer.ids();
    let signature = if auth == Auth::Rsa { "RSA" } else { "ECDSA" };
    assert!(
        log.lines().any(|l| {
            l.contains(&format!("authentication of '{peer_id}' with"))
                && l.contains(signature)
                && l.contains("successful")
        }),
        "charon did not verify vpnd's {signature} signature:\n{log}"
    );
    assert!(
        log.contains("received end entity cert"),
        "vpnd sent no CERT payload:\n{log}"
    );
}

#[test]
fn netns_interop_certificates() {
    require_environment();
    let topo = Topology::new("cert");
    // vpnd initiates with FQDN identities; charon initiates with subject DNs.
    establish_with_certificates(&topo, Auth::Ecdsa, true, false);
    establish_with_certificates(&topo, Auth::Ecdsa, false, true);
}

#[test]
fn netns_interop_rsa_certificates() {
    require_environment();
    let topo = Topology::new("rsa");
    establish_with_certificates(&topo, Auth::Rsa, true, false);
    establish_with_certificates(&topo, Auth::Rsa, false, true);
}

/// Every authentication x DH group x cipher suite against one charon: the namespaces
/// and charon stay up, each row reloads charon's connection and credentials with
/// `swanctl --load-all --clear`, starts a fresh vpnd (so that no row inherits state
/// from the one before, which a reload would leave), brings the tunnel up (vpnd initiates on even rows, charon on odd
/// ones, so each role meets every auth method and group), pings both ways and stops
/// vpnd, whose Delete ends charon's IKE SA. Every row runs; the table is printed and
/// the test fails if any row failed.
#[test]
fn netns_interop_matrix() {
    require_environment();
    let topo = Topology::new("matrix");
    let ecdsa = make_certs(&topo.dir, Auth::Ecdsa);
    let rsa = make_certs(&topo.dir, Auth::Rsa);
    let charon = Charon::launch(&topo);
    let started = Instant::now();
    let mut rows = Vec::new();
    for auth in [Auth::Psk, Auth::Ecdsa, Auth::Rsa] {
        for group in [MODP2048, ECP256, ECP384, X25519] {
            for cipher in [AES128_GCM, AES256_GCM, AES128_CBC_SHA256] {
                let peer = Peer {
                    auth,
                    ..Peer::psk(Suite { cipher, group }, LONG)
                };
                let pki = match auth {
                    Auth::Psk => None,
                    Auth::Ecdsa => Some(&ecdsa),
                    Auth::Rsa => Some(&rsa),
                };
                let vpnd_initiates = rows.len() % 2 == 0;
                let t0 = Instant::now();
                let result = matrix_row(&topo, &charon, &peer, pki, vpnd_initiates);
                rows.push((peer, vpnd_initiates, result, t0.elapsed()));
            }
        }
    }
    let mut table = String::new();
    for (peer, vpnd_initiates, result, took) in &rows {
        let _ = writeln!(
            table,
            "{:<6} {:<8} {:<24} {:<10} {:>5.1}s  {}",
            format!("{:?}", peer.auth),
            peer.suite.group.junos,
            peer.suite.cipher.esp,
            if *vpnd_initiates {
                "vpnd->"
            } else {
                "charon->"
            },
            took.as_secs_f64(),
            match result {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("FAILED: {e}"),
            }
        );
    }
    let failed = rows.iter().filter(|r| r.2.is_err()).count();
    eprintln!(
        "interop matrix, {} rows in {:.0?}:\n{table}",
        rows.len(),
        started.elapsed()
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} rows failed:\n{table}",
        rows.len()
    );
}

/// One row of [`netns_interop_matrix`]; on failure, the error with both logs' tails.
fn matrix_row(
    topo: &Topology,
    charon: &Charon,
    peer: &Peer,
    pki: Option<&CertFiles>,
    vpnd_initiates: bool,
) -> Result<(), String> {
    charon.load(peer, pki);
    let vpnd = Vpnd::spawn(topo, &vpnd_config(peer, pki, vpnd_initiates));
    let result = bring_up(charon, &vpnd, vpnd_initiates)
        .and_then(|()| check_tunnel(topo, charon, peer.suite))
        .map_err(|e| {
            let tail = |log: String| {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            };
            format!(
                "{e}\n--- vpnd log tail:\n{}\n--- charon log tail:\n{}",
                tail(vpnd.log()),
                tail(charon.log())
            )
        });
    drop(vpnd);
    // vpnd's Delete ends the IKE SA; whatever a failed row left is terminated, so the
    // next row starts from nothing.
    if !poll_until(Duration::from_secs(5), || {
        !charon.list_sas().contains("ESTABLISHED")
    }) {
        let _ = charon.swanctl(&["--terminate", "--ike", "peer", "--force", "--timeout", "2"]);
    }
    result
}
