//! What must hold after every scenario, each as a named check with what it saw.

use std::time::{Duration, Instant};

use anyhow::Result;
use lab::cluster::NODES;
use lab::{EspPacket, FlowStats};
use serde::Serialize;

use crate::scenario::Timing;
use crate::target::Target;

/// One check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            passed,
            detail: detail.into(),
        }
    }

    /// A check that could not be evaluated counts as failed, with the reason.
    fn from_result(name: &'static str, r: Result<(bool, String)>) -> Check {
        match r {
            Ok((passed, detail)) => Check::new(name, passed, detail),
            Err(e) => Check::new(name, false, format!("{e:#}")),
        }
    }
}

/// No (SPI, sequence number) pair reached the peer twice: under AES-GCM that would be
/// a nonce used twice with one key.
pub fn no_nonce_reuse(packets: &[EspPacket]) -> Check {
    let repeated = lab::repeated_esp(packets);
    let shown: Vec<String> = repeated
        .iter()
        .take(5)
        .map(|(spi, seq, n)| format!("SPI {spi:08x} seq {seq} x{n}"))
        .collect();
    Check::new(
        "no-esp-sequence-twice",
        repeated.is_empty(),
        if repeated.is_empty() {
            format!(
                "{} ESP packets to the peer, each (SPI, seq) once",
                packets.len()
            )
        } else {
            format!("{} pairs repeated, e.g. {shown:?}", repeated.len())
        },
    )
}

/// No probe datagram was delivered twice: a duplicate is a replayed ESP packet that
/// the receiving side accepted.
pub fn no_replay_accepted(stats: &[FlowStats; 2]) -> Check {
    let dups: u64 = stats.iter().map(|s| s.duplicates).sum();
    Check::new(
        "no-replay-accepted",
        dups == 0,
        format!("{dups} datagrams delivered twice"),
    )
}

/// At most one node forwarded at a time: the ESP the peer received, in time order and
/// told apart by the sender's MAC, switches sender no more often than the group's
/// epoch advanced (every change of forwarder needs a new epoch; two forwarders at
/// once would interleave and switch back and forth).
pub fn single_forwarder(cl: &dyn Target, packets: &[EspPacket], moves: u64) -> Check {
    let mut runs: Vec<(&str, usize)> = Vec::new();
    let mut sorted: Vec<&EspPacket> = packets.iter().collect();
    sorted.sort_by_key(|p| p.time);
    for p in sorted {
        let Some(sender) = cl.sender(p) else { continue };
        match runs.last_mut() {
            Some((s, n)) if *s == sender => *n += 1,
            _ => runs.push((sender, 1)),
        }
    }
    let switches = runs.len().saturating_sub(1) as u64;
    Check::new(
        "single-forwarder",
        switches <= moves,
        format!("ESP senders in time order: {runs:?} (the epoch advanced {moves} times)"),
    )
}

/// Traffic flowed again within the bound.
pub fn traffic_back(gap: Duration, bound: Duration) -> Check {
    Check::new(
        "traffic-back-within-bound",
        gap <= bound,
        format!(
            "longest gap {} ms, bound {} ms",
            gap.as_millis(),
            bound.as_millis()
        ),
    )
}

/// The group's owner is the expected node and every answering node agrees (two
/// primaries would be split brain), within `timeout` (a restarted member catches up).
pub fn owner(cl: &mut dyn Target, want: Option<&str>, timeout: Duration) -> Check {
    Check::from_result(
        "one-primary-as-expected",
        cl.wait_primary(lab::cluster::DATA_GROUP, want, timeout)
            .map(|p| (true, format!("every node sees {p} as primary of group 1"))),
    )
}

/// Live SAs agree, with no leak and no orphan: one IKE SA and one child pair at the
/// peer and at the primary, the same SPIs (each side's inbound is the other's
/// outbound), nothing installed on the secondary. Polled until `timeout`, since old
/// pairs of a rekey are deleted a moment after the new ones are up.
pub fn sas_agree(cl: &mut dyn Target, primary: &str, timeout: Duration) -> Check {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = (|| -> Result<(bool, String)> {
            let p = cl.ipsec_sas(primary)?;
            let peer = cl.ipsec_sas("peer")?;
            let secondary = NODES.iter().find(|n| **n != primary).copied();
            let s = match secondary {
                Some(n) if cl.answers(n) => cl.ipsec_sas(n)?,
                _ => Vec::new(),
            };
            let ike_p = cl.ike_spis(primary)?;
            let ike_peer = cl.ike_spis("peer")?;
            let pairs_ok = matches!((p.as_slice(), peer.as_slice()),
                ([(pi, po, _)], [(qi, qo, _)]) if pi == qo && po == qi);
            let ike_ok = ike_p.len() == 1 && ike_p == ike_peer;
            Ok((
                pairs_ok && ike_ok && s.is_empty(),
                format!(
                    "child pairs (in, out): {primary} {:?}, peer {:?}, secondary {:?}; IKE SAs: {primary} {ike_p:?}, peer {ike_peer:?}",
                    p.iter().map(|(i, o, _)| (i, o)).collect::<Vec<_>>(),
                    peer.iter().map(|(i, o, _)| (i, o)).collect::<Vec<_>>(),
                    s.iter().map(|(i, o, _)| (i, o)).collect::<Vec<_>>(),
                ),
            ))
        })();
        let done = matches!(seen, Ok((true, _))) || Instant::now() >= deadline;
        if done {
            return Check::from_result("sas-agree-no-leak", seen);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The peer kept its IKE SA: the same SPIs (one IKE SA, whatever its SPIs, when the
/// scenario rekeyed it) and no new IKE_SA_INIT.
pub fn no_renegotiation(
    cl: &mut dyn Target,
    before: &[(String, String)],
    inits_before: usize,
    rekeyed: bool,
) -> Check {
    let r = cl.peer_ike_spis().map(|after| {
        let inits = cl.peer_ike_inits();
        let kept = if rekeyed {
            after.len() == before.len()
        } else {
            after == before
        };
        (
            kept && inits == inits_before,
            format!("peer IKE SAs {before:?} -> {after:?}, IKE_SA_INITs {inits_before} -> {inits}"),
        )
    });
    Check::from_result("no-renegotiation", r)
}

/// A member started again after the fault rejoined and sees the same primary.
pub fn rejoined(cl: &mut dyn Target, member: &str, primary: &str, timeout: Duration) -> Check {
    if member == "witness" {
        // The witness has no management API: that the gateway nodes agree on an owner
        // (which needs its vote once a node is gone) is checked by the other checks.
        return Check::new("restarted-member-rejoined", true, "witness restarted");
    }
    let deadline = Instant::now() + timeout;
    loop {
        let r = cl
            .status(member)
            .and_then(|s| s.primary(lab::cluster::DATA_GROUP));
        match r {
            Ok(Some(p)) if p == primary => {
                return Check::new(
                    "restarted-member-rejoined",
                    true,
                    format!("{member} back, sees {p} as primary"),
                );
            }
            other if Instant::now() >= deadline => {
                return Check::new(
                    "restarted-member-rejoined",
                    false,
                    format!("{member} after {timeout:?}: {other:?} (expected {primary})"),
                );
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The rekey or negotiation the fault was timed into took place: the peer's child
/// SA pair (for a rekey) or IKE SA (for a negotiation) is not the one from before.
pub fn timing_landed(
    timing: Timing,
    children_before: &[(String, String, u64)],
    children_after: &[(String, String, u64)],
    ike_before: &[(String, String)],
    ike_after: &[(String, String)],
) -> Option<Check> {
    let (changed, what) = match timing {
        Timing::Steady => return None,
        Timing::ChildRekeyByCluster | Timing::ChildRekeyByPeer => (
            children_before != children_after,
            format!("peer child pairs {children_before:?} -> {children_after:?}"),
        ),
        Timing::IkeRekeyByCluster | Timing::IkeRekeyByPeer | Timing::Negotiation => (
            ike_before != ike_after,
            format!("peer IKE SAs {ike_before:?} -> {ike_after:?}"),
        ),
    };
    Some(Check::new("timed-exchange-completed", changed, what))
}
