//! `vpnd demo`, the README's main command, end to end: the built `vpnd` runs the
//! chassis cluster demo (traffic, a kill -9 failover, the restart) for a second after
//! it is up, and tears everything down.
//!
//! Needs root and what `tests/cluster_netns.rs` needs (`ip`, `ping`, `tcpdump`); without
//! root it fails with a message saying so. It takes the lock the other root tests take
//! ([`lab::netns_test_lock`]): the demo's failover measures a traffic gap too.

use std::process::Command;

const VPND: &str = env!("CARGO_BIN_EXE_vpnd");

#[test]
fn netns_demo_fails_over_and_tears_down() {
    let _lock = lab::cluster::root_test();
    let out = Command::new(VPND)
        .args(["demo", "--duration", "1s"])
        .output()
        .expect("running vpnd demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "vpnd demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for want in [
        "primary of redundancy group 1 after",
        "5 packets transmitted, 5 received",
        "byte-identical",
        "Cluster ID: 1, local member: node0",
        "Cluster ID: 1, local member: node1",
        "kill -9 node",
        "traffic gap:",
        "unchanged, and no new IKE_SA_INIT",
        "carried on from",
        "no (SPI, sequence number) pair twice",
        "secondary of group 1 after",
        " cli --pki ",
        "running for 1.0 s",
        "namespaces deleted",
    ] {
        assert!(
            stdout.contains(want),
            "no {want:?} in the demo's output:\n{stdout}\n{stderr}"
        );
    }
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("demo-")),
        "the demo left namespaces behind:\n{left}"
    );
}

/// Without root, `vpnd demo` runs in an unprivileged user namespace of its own: here
/// the standalone demo as user `nobody` (through `runuser`, so the test itself needs
/// root), with the executable copied where `nobody` may run it. Where the system
/// forbids unprivileged user namespaces, the demo must say so and fail instead.
#[test]
fn netns_demo_without_root_runs_in_a_user_namespace() {
    let _lock = lab::cluster::root_test();
    let dir = tempfile::Builder::new()
        .prefix("vpnd-userns-demo")
        .tempdir()
        .expect("temporary directory");
    let open = |p: &std::path::Path, mode| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    open(dir.path(), 0o777);
    let exe = dir.path().join("vpnd");
    std::fs::copy(VPND, &exe).expect("copying vpnd");
    open(&exe, 0o755);
    let run = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .args(args)
            .env("TMPDIR", dir.path())
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .output()
            .expect("runuser (util-linux)")
    };
    let userns = run(&["unshare", "--user", "--map-root-user", "true"])
        .status
        .success();
    let exe = exe.display().to_string();
    let out = run(&[&exe, "demo", "--standalone", "--duration", "1s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("not root: running the demo in an unprivileged user namespace"),
        "{stdout}\n{stderr}"
    );
    if !userns {
        assert!(!out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("forbids unprivileged user namespaces"),
            "the failure must say why: {stderr}"
        );
        return;
    }
    assert!(
        out.status.success(),
        "vpnd demo as nobody failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for want in [
        "tunnel up in",
        "IPsec SA pair: inbound SPI",
        "running for 1.0 s",
        "namespaces deleted",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}\n{stderr}");
    }
}
