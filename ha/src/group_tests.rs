use std::time::{Duration, Instant};

use sa_sync::{ClusterState, Command, GroupState, Member};

use super::*;
use crate::config::{ClusterConfig, GroupConfig};

const ALIVE: PeerView = PeerView {
    priority: 100,
    alive: true,
};

fn config(preempt: Option<Duration>) -> (ClusterConfig, GroupConfig) {
    let mut g = GroupConfig::new(1);
    g.preempt = preempt;
    let c = ClusterConfig {
        groups: vec![GroupConfig::new(0), g.clone()],
        ..ClusterConfig::default()
    };
    (c, g)
}

/// Applies a command to a one-group state and shows the result to both FSMs.
struct Log {
    state: ClusterState,
    index: u64,
}

impl Log {
    fn apply(&mut self, cmd: &Command, fsms: &mut [&mut GroupFsm], now: Instant) -> bool {
        self.index += 1;
        let ok = self.state.apply(self.index, cmd).is_ok();
        for f in fsms.iter_mut() {
            f.observe(self.state.group(1), now);
        }
        ok
    }
}

/// A node that owns group 1 at epoch 1 with a lease from `t`.
fn owner(me: Member, c: &ClusterConfig, g: &GroupConfig, t: Instant) -> GroupFsm {
    let mut fsm = GroupFsm::new(me, c, g, t);
    fsm.observe(
        GroupState {
            owner: Some(me),
            epoch: 1,
            lease: 1,
            manual: None,
        },
        t,
    );
    fsm.acquired(t);
    fsm
}

/// node0 and node1 from a cold start at `t`, after node0's `Acquire` was applied.
fn node0_primary(c: &ClusterConfig, g: &GroupConfig, t: Instant) -> (GroupFsm, GroupFsm, Log) {
    let mut n0 = GroupFsm::new(Member::Node0, c, g, t);
    let mut n1 = GroupFsm::new(Member::Node1, c, g, t);
    let mut log = Log {
        state: ClusterState::default(),
        index: 0,
    };
    let cmd = n0.poll(t, ALIVE).expect("node0 acquires");
    assert!(log.apply(&cmd, &mut [&mut n0, &mut n1], t));
    n0.acquired(t);
    (n0, n1, log)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn cold_start_preferred_node_takes_the_group_and_the_other_waits() {
    let (c, g) = config(None);
    let t = Instant::now();
    let mut n0 = GroupFsm::new(Member::Node0, &c, &g, t);
    let mut n1 = GroupFsm::new(Member::Node1, &c, &g, t);
    let peer_of_n1 = PeerView {
        priority: 200,
        alive: true,
    };
    assert_eq!(n1.poll(t, peer_of_n1), None, "lower priority waits");
    let cmd = n0.poll(t, ALIVE).expect("node0 acquires");
    let mut log = Log {
        state: ClusterState::default(),
        index: 0,
    };
    assert!(log.apply(&cmd, &mut [&mut n0, &mut n1], t));
    n0.acquired(t);
    assert_eq!(n0.role(t), GroupRole::Primary);
    assert_eq!(n0.forward_until(t), Some(t + c.lease()));
    assert_eq!(n1.role(t), GroupRole::Secondary);
}

#[test]
fn standby_takes_over_only_after_lease_and_margin() {
    let (c, g) = config(None);
    let t = Instant::now();
    let (mut n0, mut n1, mut log) = node0_primary(&c, &g, t);
    // node0 dies now. node1 must not act before lease + margin.
    let dead = PeerView {
        priority: 200,
        alive: false,
    };
    let lease = c.lease();
    assert_eq!(n1.poll(t + lease, dead), None);
    let later = t + lease + ms(600);
    let cmd = n1.poll(later, dead).expect("takes over");
    assert!(log.apply(&cmd, &mut [&mut n0, &mut n1], later));
    n1.acquired(later);
    assert_eq!(log.state.group(1).owner, Some(Member::Node1));
    assert!(n0.forward_until(later).is_none());
}

#[test]
fn a_renewal_in_between_makes_the_takeover_stale() {
    let (c, g) = config(None);
    let t = Instant::now();
    let (mut n0, mut n1, mut log) = node0_primary(&c, &g, t);
    // node1 was cut off and believes the lease expired; node0 renewed meanwhile.
    let late = t + c.lease() * 2;
    let takeover = n1.poll(late, ALIVE).expect("proposes from its stale view");
    let renew = Command::Renew(
        sa_sync::Fence {
            group: 1,
            node: Member::Node0,
            epoch: 1,
        },
        Vec::new(),
    );
    assert!(log.apply(&renew, &mut [&mut n0], late));
    assert!(!log.apply(&takeover, &mut [&mut n0, &mut n1], late));
    assert_eq!(log.state.group(1).owner, Some(Member::Node0));
}

#[test]
fn owner_renews_every_interval_and_stops_when_renewals_stop() {
    let (c, g) = config(None);
    let t = Instant::now();
    let mut n0 = owner(Member::Node0, &c, &g, t);
    assert_eq!(n0.poll(t + ms(10), ALIVE), None, "fresh lease");
    let at = t + c.heartbeat_interval;
    assert!(matches!(n0.poll(at, ALIVE), Some(Command::Renew(..))));
    // The renewal never commits: forwarding ends with the first lease.
    assert!(n0.forward_until(t + c.lease() - ms(1)).is_some());
    assert!(n0.forward_until(t + c.lease()).is_none());
    assert_eq!(n0.role(t + c.lease()), GroupRole::Lost);
    n0.renewed(at);
    assert_eq!(n0.forward_until(at), Some(at + c.lease()));
}

#[test]
fn manual_failover_releases_then_the_pinned_node_acquires() {
    let (c, g) = config(None);
    let t = Instant::now();
    let (mut n0, mut n1, mut log) = node0_primary(&c, &g, t);
    let pin = Command::Pin {
        group: 1,
        node: Some(Member::Node1),
    };
    log.apply(&pin, &mut [&mut n0, &mut n1], t);
    let release = n0.poll(t + ms(1), ALIVE).expect("owner releases");
    assert!(matches!(release, Command::Release(_)));
    assert!(
        n0.forward_until(t + ms(1)).is_none(),
        "stopped before the release commits"
    );
    log.apply(&release, &mut [&mut n0, &mut n1], t + ms(2));
    let peer = PeerView {
        priority: 200,
        alive: true,
    };
    let take = n1.poll(t + ms(3), peer).expect("pinned node takes at once");
    assert!(log.apply(&take, &mut [&mut n0, &mut n1], t + ms(3)));
    assert_eq!(log.state.group(1).owner, Some(Member::Node1));
    assert_eq!(
        n0.poll(t + ms(4), ALIVE),
        None,
        "node0 stays away while pinned"
    );
}

#[test]
fn preempt_waits_for_its_delay() {
    let (c, g) = config(Some(Duration::from_secs(10)));
    let t = Instant::now();
    let mut n1 = owner(Member::Node1, &c, &g, t);
    let better = PeerView {
        priority: 200,
        alive: true,
    };
    assert!(matches!(
        n1.poll(t, better),
        None | Some(Command::Renew(..))
    ));
    n1.renewed(t);
    let before = t + Duration::from_secs(9);
    assert!(!matches!(
        n1.poll(before, better),
        Some(Command::Release(_))
    ));
    let after = t + Duration::from_secs(10);
    assert!(matches!(n1.poll(after, better), Some(Command::Release(_))));
}

#[test]
fn monitoring_failure_gives_the_group_up_only_to_a_healthy_peer() {
    let (c, g) = config(None);
    let t = Instant::now();
    let mut n0 = owner(Member::Node0, &c, &g, t);
    n0.set_failed_weight(255);
    assert_eq!(n0.effective_priority(), 0);
    let sick_peer = PeerView {
        priority: 0,
        alive: true,
    };
    assert!(!matches!(n0.poll(t, sick_peer), Some(Command::Release(_))));
    assert!(matches!(
        n0.poll(t + ms(1), ALIVE),
        Some(Command::Release(_))
    ));
}

#[test]
fn leaving_stops_forwarding_before_the_release_commits() {
    let (c, g) = config(None);
    let t = Instant::now();
    let mut idle = GroupFsm::new(Member::Node0, &c, &g, t);
    assert_eq!(idle.leave(t), None, "nothing to leave");
    let mut n0 = owner(Member::Node0, &c, &g, t);
    assert!(matches!(n0.leave(t), Some(Command::Release(_))));
    assert!(n0.forward_until(t).is_none());
}
