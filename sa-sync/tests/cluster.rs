//! Three cluster members in one process, over mutual TLS on 127.0.0.1, each on its own
//! raft-engine directory. Every test is bounded: `bounded` fails it after a minute.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use common::{TestCa, TestCluster, init_tracing, status_command, wait_for};
use futures_util::StreamExt as _;
use raft::eraftpb::{Message, MessageType};
use sa_sync::transport::{self, member_uri};
use sa_sync::{
    Applied, ChildSaRecord, ClusterState, Command, DiskLogStore, Fence, IkeSaRecord, Lifecycle,
    LogStore, Member, ProposeError, SaId, Secret,
};
use tokio::sync::broadcast;
use vpn_proto::cluster::v1::RaftFrame;

const ELECTION: Duration = Duration::from_secs(10);
const CATCH_UP: Duration = Duration::from_secs(20);

async fn bounded(test: impl Future<Output = ()>) {
    init_tracing();
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test did not finish within a minute");
}

/// Collects applied entries until `count` commands were seen.
async fn collect(rx: &mut broadcast::Receiver<Applied>, count: usize) -> Vec<(u64, Command)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let applied = tokio::time::timeout(CATCH_UP, rx.recv())
            .await
            .expect("applied entries stopped coming")
            .expect("applied stream lagged or closed");
        seen.push((applied.index, applied.command));
    }
    seen
}

/// `a` with its applied index moved up to `b`'s: equal contents after only empty
/// entries (a new leader's) were applied since.
fn same_contents(a: &ClusterState, b: &ClusterState) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    let top = a.applied().max(b.applied());
    a.skip(top);
    b.skip(top);
    a == b
}

/// A mix of commands touching every part of the state; all of them apply.
fn workload(n: u32) -> Vec<Command> {
    let fence = Fence {
        group: 1,
        node: Member::Node0,
        epoch: 1,
    };
    let mut commands = vec![Command::Acquire {
        group: 1,
        node: Member::Node0,
        epoch: 0,
        lease: 0,
    }];
    for i in 0..n {
        let gateway = format!("gw{}", i % 3);
        commands.push(Command::PutIkeSa(
            fence,
            IkeSaRecord {
                gateway: gateway.clone(),
                group: 1,
                spi_i: 100 + u64::from(i),
                spi_r: 200 + u64::from(i),
                version: u64::from(i),
                state: Secret::new(vec![i as u8; 64]),
            },
        ));
        commands.push(Command::PutChildSa {
            fence,
            record: ChildSaRecord {
                gateway: gateway.clone(),
                group: 1,
                inbound_spi: 1000 + i,
                outbound_spi: 2000 + i,
                anchor: i % 4,
                install: Secret::new(vec![7; 32]),
            },
            reserve: 1 << 16,
        });
        commands.push(Command::Reserve {
            fence,
            sa: SaId {
                gateway,
                spi: 2000 + i,
            },
            upto: 1 << 20,
        });
        commands.push(Command::ReplayMarks(
            fence,
            vec![(
                SaId {
                    gateway: format!("gw{}", i % 3),
                    spi: 1000 + i,
                },
                u64::from(i) * 64,
            )],
        ));
    }
    commands
}

#[test]
fn the_handle_can_be_shared_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<sa_sync::ClusterHandle>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_on_any_member_are_applied_everywhere_in_one_order() {
    bounded(async {
        let mut cluster = TestCluster::new();
        cluster.start_all().await;
        let leader = cluster.leader(ELECTION).await;
        let mut receivers: Vec<_> = Member::ALL
            .iter()
            .map(|m| cluster.node(*m).applied())
            .collect();
        // Concurrent proposals from all three members.
        let per_member = 15u32;
        let proposals = Member::ALL.iter().map(|m| {
            let node = cluster.node(*m).clone();
            async move {
                for n in 0..per_member {
                    let command = status_command(node.me(), n);
                    let outcome = loop {
                        match node.propose(command.clone()).await {
                            Ok(outcome) => break outcome,
                            Err(ProposeError::NoLeader | ProposeError::Timeout(_)) => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(e) => panic!("proposal failed: {e}"),
                        }
                    };
                    assert_eq!(outcome, Ok(()));
                }
            }
        });
        futures_util::future::join_all(proposals).await;

        let total = (per_member * 3) as usize;
        let mut orders = Vec::new();
        for rx in &mut receivers {
            orders.push(collect(rx, total).await);
        }
        assert!(
            orders.iter().all(|o| *o == orders[0]),
            "members applied different orders"
        );
        let indexes: Vec<u64> = orders[0].iter().map(|(i, _)| *i).collect();
        assert!(indexes.windows(2).all(|w| w[0] < w[1]));
        for m in Member::ALL {
            let mine = orders[0]
                .iter()
                .filter(|(_, c)| matches!(c, Command::Status { node, .. } if *node == m))
                .count();
            assert_eq!(mine, per_member as usize, "{m}'s proposals");
        }
        let states = [
            cluster.state(Member::Node0).await,
            cluster.state(Member::Node1).await,
            cluster.state(Member::Witness).await,
        ];
        assert!(states.iter().all(|s| same_contents(s, &states[0])));
        let status = cluster.node(leader).status();
        assert!(status.peers.iter().all(|p| p.connected), "{status:?}");
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_commit_and_a_restarted_member_catches_up() {
    bounded(async {
        let mut cluster = TestCluster::new();
        cluster.start_all().await;
        let leader = cluster.leader(ELECTION).await;
        for n in 0..5 {
            assert_eq!(
                cluster.propose(leader, status_command(leader, n)).await,
                Ok(())
            );
        }
        // Stop the leader itself: the other two elect a new one and go on.
        let away = leader;
        let stopped = cluster.node(away).clone();
        cluster.stop(away).await;
        assert_eq!(
            stopped.propose(status_command(away, 99)).await,
            Err(ProposeError::Stopped)
        );
        assert_eq!(stopped.status().lifecycle, Lifecycle::Stopped);
        let new_leader = cluster.leader(ELECTION).await;
        assert_ne!(new_leader, away);
        let other = Member::ALL
            .into_iter()
            .find(|m| *m != away && *m != new_leader)
            .unwrap();
        for n in 0..10 {
            assert_eq!(
                cluster.propose(other, status_command(other, n)).await,
                Ok(())
            );
        }
        let commit = cluster.applied(new_leader).await;

        cluster.start(away).await;
        cluster.applied_everywhere(commit, CATCH_UP).await;
        let want = cluster.state(new_leader).await;
        let got = cluster.state(away).await;
        assert!(same_contents(&want, &got));
        assert_eq!(
            got.node_status(other).map(|s| s.spus),
            Some(9),
            "the entries committed while {away} was away"
        );
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_keeps_the_state() {
    bounded(async {
        let mut cluster = TestCluster::new();
        cluster.start_all().await;
        let leader = cluster.leader(ELECTION).await;
        for command in workload(6) {
            assert_eq!(cluster.propose(leader, command).await, Ok(()));
        }
        let commit = cluster.applied(leader).await;
        cluster.applied_everywhere(commit, CATCH_UP).await;
        let mut before = BTreeMap::new();
        for m in Member::ALL {
            before.insert(m, cluster.state(m).await);
        }
        assert_eq!(before[&Member::Node0].all_child_sas().count(), 6);

        cluster.stop_all().await;
        cluster.start_all().await;
        cluster.leader(ELECTION).await;
        cluster.applied_everywhere(commit, CATCH_UP).await;
        for m in Member::ALL {
            let after = cluster.state(m).await;
            assert!(after.applied() >= commit);
            assert!(same_contents(&before[&m], &after), "{m} lost state");
            assert!(same_contents(&before[&Member::Node0], &after));
        }
        // And the restarted cluster still commits.
        let leader = cluster.leader(ELECTION).await;
        assert_eq!(
            cluster.propose(leader, status_command(leader, 1)).await,
            Ok(())
        );
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_away_during_compaction_catches_up_from_a_snapshot() {
    bounded(async {
        let mut cluster = TestCluster::new();
        cluster.replica.snapshot_interval = 5;
        cluster.start_all().await;
        let leader = cluster.leader(ELECTION).await;
        let away = Member::ALL.into_iter().find(|m| *m != leader).unwrap();
        assert_eq!(
            cluster.propose(leader, status_command(leader, 0)).await,
            Ok(())
        );
        let commit = cluster.applied(leader).await;
        cluster.applied_everywhere(commit, CATCH_UP).await;
        let away_applied = cluster.node(away).status().applied;
        cluster.stop(away).await;

        let mut commands = workload(8);
        // One record larger than gRPC's default 4 MiB message limit, so the snapshot
        // (and the append that carried it) need the transport's own limit.
        commands.push(Command::PutIkeSa(
            Fence {
                group: 1,
                node: Member::Node0,
                epoch: 1,
            },
            IkeSaRecord {
                gateway: "big".into(),
                group: 1,
                spi_i: 1,
                spi_r: 2,
                version: 1,
                state: Secret::new(vec![0xab; 5 << 20]),
            },
        ));
        for command in commands {
            assert_eq!(cluster.propose(leader, command).await, Ok(()));
        }
        let commit = cluster.applied(leader).await;
        assert!(commit > away_applied + 20);

        cluster.start(away).await;
        cluster.applied_everywhere(commit, CATCH_UP).await;
        let want = cluster.state(leader).await;
        let got = cluster.state(away).await;
        assert!(same_contents(&want, &got));
        assert_eq!(got.all_child_sas().count(), 8);
        assert_eq!(
            got.ike_sa("big").map(|r| r.state.expose().len()),
            Some(5 << 20)
        );
        cluster.stop_all().await;

        // The leader's log no longer held what the member lacked, so it could only
        // have caught up through a snapshot; its own store holds one past the gap.
        let leader_store = DiskLogStore::open(&cluster.dirs[leader.index()]).unwrap();
        assert!(leader_store.latest_snapshot().get_metadata().index > away_applied + 1);
        let away_store = DiskLogStore::open(&cluster.dirs[away.index()]).unwrap();
        assert!(away_store.latest_snapshot().get_metadata().index > away_applied);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_without_a_quorum_fails_in_bounded_time() {
    bounded(async {
        let mut cluster = TestCluster::new();
        cluster.propose_timeout = Duration::from_millis(500);
        cluster.start_all().await;
        let leader = cluster.leader(ELECTION).await;
        for m in Member::ALL {
            if m != leader {
                cluster.stop(m).await;
            }
        }
        let started = Instant::now();
        let result = cluster
            .node(leader)
            .propose(status_command(leader, 1))
            .await;
        assert!(
            matches!(
                result,
                Err(ProposeError::Timeout(_) | ProposeError::NoLeader)
            ),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        cluster.stop_all().await;
    })
    .await;
}

/// Starts only `member` (no quorum needed to test its server).
async fn lone(member: Member) -> TestCluster {
    let mut cluster = TestCluster::new();
    cluster.start(member).await;
    cluster
}

fn heartbeat(from: Member, to: Member, term: u64) -> RaftFrame {
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgHeartbeat);
    msg.from = from.raft_id();
    msg.to = to.raft_id();
    msg.term = term;
    transport::frame(&msg).unwrap()
}

/// Opens a stream to `to` with `tls`, sends `frames`, and returns whether the stream was
/// accepted (refusal shows as an error on the call or on the response stream).
async fn deliver(
    cluster: &TestCluster,
    to: Member,
    tls: &sa_sync::ClusterTls,
    frames: Vec<RaftFrame>,
) -> bool {
    let channel = transport::channel(to, cluster.addrs[to.index()], tls).unwrap();
    let mut client = transport::client(channel);
    let stream = futures_util::stream::iter(frames).chain(futures_util::stream::pending());
    let response = tokio::time::timeout(Duration::from_secs(5), client.deliver(stream)).await;
    let Ok(Ok(response)) = response else {
        return false;
    };
    let mut summaries = response.into_inner();
    // A refused handshake surfaces on the first read; an accepted stream stays open.
    !matches!(
        tokio::time::timeout(Duration::from_millis(500), summaries.message()).await,
        Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_cluster_member_certificate_are_refused() {
    bounded(async {
        let cluster = lone(Member::Witness).await;
        let node = cluster.node(Member::Witness);
        // A member certificate from another CA: refused in the TLS handshake.
        let other = TestCa::new("some other CA");
        let outsider = other.issue(&[&member_uri(Member::Node1)], &cluster.ca);
        assert!(
            !deliver(
                &cluster,
                Member::Witness,
                &outsider,
                vec![heartbeat(Member::Node1, Member::Witness, 50)]
            )
            .await
        );
        // The cluster CA's certificate without a member URI: refused by the server.
        let nobody = cluster.ca.issue(&["spiffe://elsewhere/x"], &cluster.ca);
        assert!(
            !deliver(
                &cluster,
                Member::Witness,
                &nobody,
                vec![heartbeat(Member::Node1, Member::Witness, 50)]
            )
            .await
        );
        let refused = wait_for(Duration::from_secs(2), || {
            (node.status().inbound.refused_streams >= 1).then_some(())
        })
        .await;
        assert!(refused.is_some(), "{:?}", node.status().inbound);
        // Nothing reached the replica.
        assert_eq!(node.status().inbound.accepted, 0);
        assert!(node.status().term < 50);
        // A client that expects another member behind the address refuses the server.
        let node1 = cluster.tls[Member::Node1.index()].clone();
        let channel = transport::channel(Member::Node0, cluster.addrs[2], &node1).unwrap();
        let mut client = transport::client(channel);
        let call = client.deliver(futures_util::stream::pending::<RaftFrame>());
        assert!(
            tokio::time::timeout(Duration::from_secs(5), call)
                .await
                .expect("bounded")
                .is_err()
        );
        let mut cluster = cluster;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_send_messages_as_another() {
    bounded(async {
        let mut cluster = lone(Member::Witness).await;
        let node = cluster.node(Member::Witness).clone();
        let node1 = cluster.tls[Member::Node1.index()].clone();
        // node1's certificate, messages claiming to come from node0: dropped, counted.
        assert!(
            deliver(
                &cluster,
                Member::Witness,
                &node1,
                vec![heartbeat(Member::Node0, Member::Witness, 1000)]
            )
            .await
        );
        let forged = wait_for(Duration::from_secs(5), || {
            (node.status().inbound.forged >= 1).then_some(())
        })
        .await;
        assert!(forged.is_some(), "{:?}", node.status().inbound);
        assert!(node.status().term < 1000, "a forged message moved the term");
        assert_eq!(node.status().inbound.accepted, 0);

        // The same stream setup with an honest sender is accepted and acted upon.
        assert!(
            deliver(
                &cluster,
                Member::Witness,
                &node1,
                vec![heartbeat(Member::Node1, Member::Witness, 7)]
            )
            .await
        );
        let followed = wait_for(Duration::from_secs(5), || {
            let s = node.status();
            (s.term == 7 && s.inbound.accepted >= 1).then_some(())
        })
        .await;
        assert!(followed.is_some(), "{:?}", node.status());
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_the_wrong_certificate_or_peers_fails() {
    bounded(async {
        let cluster = TestCluster::new();
        // node1's certificate for node0.
        let mut config = cluster.config(Member::Node0);
        config.tls = cluster.tls[Member::Node1.index()].clone();
        assert!(sa_sync::ClusterNode::start(config).await.is_err());
        // A key that is not PEM.
        let mut config = cluster.config(Member::Node0);
        config.tls.key_pem = b"not a key".to_vec();
        assert!(matches!(
            sa_sync::ClusterNode::start(config).await,
            Err(sa_sync::StartError::Transport(_))
        ));
        // A missing peer.
        let mut config = cluster.config(Member::Node0);
        config.peers.pop();
        assert!(sa_sync::ClusterNode::start(config).await.is_err());
        // A corrupt log directory is refused, not a panic.
        let config = cluster.config(Member::Node0);
        std::fs::write(&config.data_dir, b"not a directory").unwrap();
        assert!(matches!(
            sa_sync::ClusterNode::start(config).await,
            Err(sa_sync::StartError::Store(_))
        ));
    })
    .await;
}
