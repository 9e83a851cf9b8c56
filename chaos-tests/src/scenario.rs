//! The scenario matrix: which fault, when it lands, and what the cluster must do.

use std::time::Duration;

/// A cluster member, resolved when the scenario runs (the primary is whoever won the
/// election).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    Primary,
    Secondary,
    Witness,
}

/// What breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL; the member is started again once the cluster has converged.
    Kill9(Member),
    /// A graceful stop (SIGTERM, `docker stop`): the member hands its groups over;
    /// started again once the cluster has converged.
    Terminate(Member),
    /// SIGSTOP for this long, then SIGCONT: a hung process that comes back.
    Freeze(Member, Duration),
    /// The member's external link (`eth0`) down at the switch for this long.
    LinkCut(Member, Duration),
    /// Random loss on the peer's external link, both directions, for this long.
    Loss { percent: u8, duration: Duration },
    /// Added one-way delay on the peer's external link (tc netem), for this long.
    Latency { delay: Duration, duration: Duration },
    /// `request chassis spu fail N` on the primary, N being the tunnel's anchor.
    SpuFail,
    /// The control link between node0 and node1 cut; both still reach the witness.
    PartitionNodes(Duration),
    /// The member's control link cut: it is alone, whatever it still forwards.
    Isolate(Member, Duration),
    /// `request chassis cluster failover redundancy-group 1 node M`, then `reset`.
    ManualFailover,
    /// kill -9 of node0, node1 and the witness at once, then all started again.
    WholeRestart,
    /// kill -9 of the primary, then started again: with preempt it takes group 1 back.
    KillAndReturn,
}

/// When the fault lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// In steady state.
    Steady,
    /// Right after `request security ipsec sa rekey` on the primary, while the
    /// CREATE_CHILD_SA exchange it started is in flight.
    ChildRekeyByCluster,
    /// While the peer's CREATE_CHILD_SA rekey is answered but the answer has not
    /// reached the peer (the cluster's IKE datagrams are dropped at the peer until the
    /// fault has landed): the peer retransmits to whoever took over.
    ChildRekeyByPeer,
    /// Right after `request security ike rekey` on the primary, while the
    /// CREATE_CHILD_SA exchange rekeying the IKE SA is in flight.
    IkeRekeyByCluster,
    /// While the peer's IKE SA rekey is answered but the answer has not reached the
    /// peer (held back as for [`Timing::ChildRekeyByPeer`]).
    IkeRekeyByPeer,
    /// Right after `clear security ike security-associations` on the primary: the
    /// IKE SA is gone and the next IKE_SA_INIT is in flight.
    Negotiation,
}

/// Who is primary of group 1 once the cluster has converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The other node took over.
    Takeover,
    /// The primary kept the group.
    Stays,
    /// Either node (e.g. after a restart of everything).
    Either,
}

/// One row of the matrix.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub fault: Fault,
    pub timing: Timing,
    pub expect: Expect,
    /// The peer's IKE SA may be renegotiated (only when the fault deletes it).
    pub renegotiates: bool,
    /// Longest traffic gap allowed, in leases (heartbeat interval x threshold) plus one
    /// second for the probe to see the tunnel again.
    pub gap_leases: u32,
    /// Preempt delay for group 1, if the scenario needs one.
    pub preempt: Option<Duration>,
    /// SPU workers per node.
    pub workers: Option<usize>,
}

impl Timing {
    /// The fault lands in an IKE SA rekey: the peer's IKE SPIs change, but by
    /// CREATE_CHILD_SA, not by a new IKE_SA_INIT.
    pub fn rekeys_ike(self) -> bool {
        matches!(self, Timing::IkeRekeyByCluster | Timing::IkeRekeyByPeer)
    }
}

impl Scenario {
    fn new(name: &'static str, what: &'static str, fault: Fault, expect: Expect) -> Scenario {
        Scenario {
            name,
            what,
            fault,
            timing: Timing::Steady,
            expect,
            renegotiates: false,
            gap_leases: 3,
            preempt: None,
            workers: None,
        }
    }

    fn at(mut self, timing: Timing) -> Scenario {
        self.timing = timing;
        self
    }

    fn gap(mut self, leases: u32) -> Scenario {
        self.gap_leases = leases;
        self
    }
}

const SECOND: Duration = Duration::from_secs(1);

/// Every scenario, in the order the matrix runs them.
pub fn matrix() -> Vec<Scenario> {
    use Expect::*;
    use Fault::*;
    use Member::*;
    vec![
        Scenario::new(
            "kill9-primary",
            "kill -9 of the primary",
            Kill9(Primary),
            Takeover,
        ),
        Scenario::new(
            "kill9-secondary",
            "kill -9 of the secondary",
            Kill9(Secondary),
            Stays,
        )
        .gap(1),
        Scenario::new(
            "kill9-witness",
            "kill -9 of the witness",
            Kill9(Witness),
            Stays,
        )
        .gap(1),
        Scenario::new(
            "terminate-primary",
            "graceful stop of the primary (SIGTERM / docker stop): it hands group 1 over",
            Terminate(Primary),
            Takeover,
        )
        .gap(2),
        Scenario::new(
            "freeze-primary",
            "SIGSTOP of the primary for 3 s (5 leases), then SIGCONT",
            Freeze(Primary, 3 * SECOND),
            Takeover,
        ),
        Scenario::new(
            "link-cut-primary",
            "the primary's external link down for 3 s (interface monitoring, weight 255)",
            LinkCut(Primary, 3 * SECOND),
            Takeover,
        ),
        Scenario::new(
            "loss-10pct",
            "10% random loss on the external link for 3 s",
            Loss {
                percent: 10,
                duration: 3 * SECOND,
            },
            Stays,
        )
        .gap(1),
        Scenario::new(
            "latency-50ms",
            "50 ms added delay on the external link for 3 s (tc netem)",
            Latency {
                delay: Duration::from_millis(50),
                duration: 3 * SECOND,
            },
            Stays,
        )
        .gap(1),
        Scenario::new(
            "partition-nodes",
            "control link node0-node1 cut for 3 s, both still reach the witness (the \
             primary keeps group 1 if it still reaches the Raft leader, else the other \
             node takes over when its lease ends)",
            PartitionNodes(3 * SECOND),
            Either,
        ),
        Scenario::new(
            "isolate-primary",
            "the primary's control link cut for 3 s while it still forwards",
            Isolate(Primary, 3 * SECOND),
            Takeover,
        ),
        Scenario::new(
            "isolate-witness",
            "the witness's control link cut for 3 s",
            Isolate(Witness, 3 * SECOND),
            Stays,
        )
        .gap(1),
        Scenario::new(
            "spu-fail",
            "SPU failure on the primary (the tunnel's anchor), 2 SPUs per node",
            SpuFail,
            Stays,
        )
        .gap(1),
        Scenario::new(
            "manual-failover",
            "request chassis cluster failover to the secondary, then reset",
            ManualFailover,
            Takeover,
        ),
        Scenario::new(
            "whole-cluster-restart",
            "kill -9 of node0, node1 and the witness, then all restarted from disk",
            WholeRestart,
            Either,
        )
        .gap(20),
        Scenario::new(
            "preempt-return",
            "kill -9 of node0 (primary, priority 200, preempt 1 s), then it returns",
            KillAndReturn,
            Stays,
        ),
        Scenario::new(
            "kill9-mid-child-rekey-cluster",
            "kill -9 of the primary while its child SA rekey is in flight",
            Kill9(Primary),
            Takeover,
        )
        .at(Timing::ChildRekeyByCluster),
        Scenario::new(
            "kill9-mid-child-rekey-peer",
            "kill -9 of the primary after it answered the peer's child SA rekey, before \
             the answer reached the peer",
            Kill9(Primary),
            Takeover,
        )
        .at(Timing::ChildRekeyByPeer),
        Scenario::new(
            "kill9-mid-ike-rekey-cluster",
            "kill -9 of the primary while its IKE SA rekey is in flight",
            Kill9(Primary),
            Takeover,
        )
        .at(Timing::IkeRekeyByCluster),
        Scenario::new(
            "kill9-mid-ike-rekey-peer",
            "kill -9 of the primary after it answered the peer's IKE SA rekey, before the \
             answer reached the peer",
            Kill9(Primary),
            Takeover,
        )
        .at(Timing::IkeRekeyByPeer),
        Scenario::new(
            "kill9-mid-negotiation",
            "kill -9 of the primary right after clearing its IKE SA (renegotiation in flight)",
            Kill9(Primary),
            Takeover,
        )
        .at(Timing::Negotiation),
    ]
    .into_iter()
    .map(|mut s| {
        if s.fault == SpuFail {
            s.workers = Some(2);
        }
        if s.fault == KillAndReturn {
            s.preempt = Some(SECOND);
        }
        if s.timing == Timing::Negotiation {
            s.renegotiates = true;
            // A new IKE SA: its exchanges and the probe seeing the tunnel again.
            s.gap_leases = 10;
        }
        s
    })
    .collect()
}
