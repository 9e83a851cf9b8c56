use proptest::prelude::*;

use super::*;
use crate::record::Secret;

fn fence(group: u8, node: Member, epoch: u64) -> Fence {
    Fence { group, node, epoch }
}

fn acquire(state: &mut ClusterState, index: u64, group: u8, node: Member) -> Outcome {
    let g = state.group(group);
    state.apply(
        index,
        &Command::Acquire {
            group,
            node,
            epoch: g.epoch,
            lease: g.lease,
        },
    )
}

fn child(gateway: &str, inbound: u32, outbound: u32) -> ChildSaRecord {
    ChildSaRecord {
        gateway: gateway.into(),
        group: 1,
        inbound_spi: inbound,
        outbound_spi: outbound,
        anchor: 0,
        install: Secret::new(vec![7; 32]),
    }
}

fn sa(gateway: &str, spi: u32) -> SaId {
    SaId {
        gateway: gateway.into(),
        spi,
    }
}

#[test]
fn acquire_needs_the_current_view_and_bumps_epoch() {
    let mut s = ClusterState::default();
    assert_eq!(acquire(&mut s, 1, 1, Member::Node0), Ok(()));
    let g = s.group(1);
    assert_eq!((g.owner, g.epoch, g.lease), (Some(Member::Node0), 1, 1));
    // node1 saw epoch 0: stale.
    let stale = Command::Acquire {
        group: 1,
        node: Member::Node1,
        epoch: 0,
        lease: 0,
    };
    assert_eq!(s.apply(2, &stale), Err(Rejected::Stale));
    // A renewal after node1 looked makes its view stale as well.
    let seen = s.group(1);
    assert_eq!(
        s.apply(3, &Command::Renew(fence(1, Member::Node0, 1), Vec::new())),
        Ok(())
    );
    let late = Command::Acquire {
        group: 1,
        node: Member::Node1,
        epoch: seen.epoch,
        lease: seen.lease,
    };
    assert_eq!(s.apply(4, &late), Err(Rejected::Stale));
    assert_eq!(acquire(&mut s, 5, 1, Member::Node1), Ok(()));
    assert_eq!(s.group(1).owner, Some(Member::Node1));
    assert_eq!(s.group(1).epoch, 2);
}

#[test]
fn the_witness_never_owns_a_group() {
    let mut s = ClusterState::default();
    assert_eq!(
        acquire(&mut s, 1, 1, Member::Witness),
        Err(Rejected::NotGateway)
    );
    let pin = Command::Pin {
        group: 1,
        node: Some(Member::Witness),
    };
    assert_eq!(s.apply(2, &pin), Err(Rejected::NotGateway));
}

#[test]
fn deposed_owner_cannot_write() {
    let mut s = ClusterState::default();
    acquire(&mut s, 1, 1, Member::Node0).unwrap();
    let old = fence(1, Member::Node0, 1);
    let put = Command::PutChildSa {
        fence: old,
        record: child("gw", 0x100, 0x200),
        reserve: 1000,
    };
    assert_eq!(s.apply(2, &put), Ok(()));
    acquire(&mut s, 3, 1, Member::Node1).unwrap();
    for (i, cmd) in [
        Command::Renew(old, Vec::new()),
        Command::Release(old),
        Command::Reserve {
            fence: old,
            sa: sa("gw", 0x200),
            upto: 5000,
        },
        Command::ReplayMarks(old, vec![(sa("gw", 0x100), 77)]),
        Command::DeleteChildSa(old, sa("gw", 0x100)),
        Command::DeleteIkeSa(old, "gw".into()),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            s.apply(10 + i as u64, cmd),
            Err(Rejected::NotOwner),
            "{cmd:?}"
        );
    }
    assert_eq!(s.reservation(&sa("gw", 0x200)), Some(1000));
    assert_eq!(s.replay_mark(&sa("gw", 0x100)), Some(0));
}

#[test]
fn reservations_and_marks_never_go_down() {
    let mut s = ClusterState::default();
    acquire(&mut s, 1, 1, Member::Node0).unwrap();
    let f = fence(1, Member::Node0, 1);
    s.apply(
        2,
        &Command::PutChildSa {
            fence: f,
            record: child("gw", 1, 2),
            reserve: 100,
        },
    )
    .unwrap();
    let reserve = |upto| Command::Reserve {
        fence: f,
        sa: sa("gw", 2),
        upto,
    };
    s.apply(3, &reserve(500)).unwrap();
    s.apply(4, &reserve(300)).unwrap();
    assert_eq!(s.reservation(&sa("gw", 2)), Some(500));
    s.apply(5, &Command::ReplayMarks(f, vec![(sa("gw", 1), 40)]))
        .unwrap();
    s.apply(6, &Command::ReplayMarks(f, vec![(sa("gw", 1), 30)]))
        .unwrap();
    assert_eq!(s.replay_mark(&sa("gw", 1)), Some(40));
    assert_eq!(
        s.apply(
            7,
            &Command::Reserve {
                fence: f,
                sa: sa("gw", 99),
                upto: 1
            }
        ),
        Err(Rejected::UnknownSa)
    );
    // Deleting the IKE SA takes its children, reservations and marks along.
    s.apply(8, &Command::DeleteIkeSa(f, "gw".into())).unwrap();
    assert_eq!(s.all_child_sas().count(), 0);
    assert_eq!(s.reservation(&sa("gw", 2)), None);
    assert_eq!(s.replay_mark(&sa("gw", 1)), None);
}

#[test]
fn pinned_group_only_goes_to_its_node() {
    let mut s = ClusterState::default();
    acquire(&mut s, 1, 1, Member::Node0).unwrap();
    s.apply(
        2,
        &Command::Pin {
            group: 1,
            node: Some(Member::Node1),
        },
    )
    .unwrap();
    s.apply(3, &Command::Release(fence(1, Member::Node0, 1)))
        .unwrap();
    assert_eq!(acquire(&mut s, 4, 1, Member::Node0), Err(Rejected::Pinned));
    assert_eq!(acquire(&mut s, 5, 1, Member::Node1), Ok(()));
}

#[test]
fn older_ike_record_does_not_replace_newer() {
    let mut s = ClusterState::default();
    acquire(&mut s, 1, 1, Member::Node0).unwrap();
    let f = fence(1, Member::Node0, 1);
    let rec = |version| IkeSaRecord {
        gateway: "gw".into(),
        group: 1,
        spi_i: 1,
        spi_r: 2,
        version,
        state: Secret::new(vec![version as u8]),
    };
    s.apply(2, &Command::PutIkeSa(f, rec(5))).unwrap();
    assert_eq!(
        s.apply(3, &Command::PutIkeSa(f, rec(4))),
        Err(Rejected::Outdated)
    );
    assert_eq!(s.ike_sa("gw").map(|r| r.version), Some(5));
}

fn command() -> impl Strategy<Value = Command> {
    let member = prop_oneof![
        Just(Member::Node0),
        Just(Member::Node1),
        Just(Member::Witness)
    ];
    let f = (0u8..2, member.clone(), 0u64..4).prop_map(|(group, node, epoch)| Fence {
        group,
        node,
        epoch,
    });
    prop_oneof![
        (0u8..2, member.clone(), 0u64..4, 0u64..6).prop_map(|(group, node, epoch, lease)| {
            Command::Acquire {
                group,
                node,
                epoch,
                lease,
            }
        }),
        f.clone().prop_map(|f| Command::Renew(f, Vec::new())),
        f.clone().prop_map(Command::Release),
        (f.clone(), 1u32..4, 1u32..4, 0u64..1000).prop_map(|(fence, i, o, reserve)| {
            Command::PutChildSa {
                fence,
                record: child("gw", i, o + 10),
                reserve,
            }
        }),
        (f.clone(), 11u32..14, 0u64..5000).prop_map(|(fence, spi, upto)| Command::Reserve {
            fence,
            sa: sa("gw", spi),
            upto
        }),
        (f.clone(), 1u32..4, 0u64..5000)
            .prop_map(|(fence, spi, m)| Command::ReplayMarks(fence, vec![(sa("gw", spi), m)])),
        (f.clone(), 1u32..4).prop_map(|(fence, spi)| Command::DeleteChildSa(fence, sa("gw", spi))),
        f.prop_map(|fence| Command::DeleteIkeSa(fence, "gw".into())),
    ]
}

proptest! {
    /// Snapshot at any point, restore, apply the rest: the same state as applying all.
    /// Replaying entries already applied (a restart re-delivers them) changes nothing.
    #[test]
    fn snapshot_restore_and_replay_agree(
        cmds in proptest::collection::vec(command(), 1..60),
        cut in 0usize..60,
    ) {
        let cut = cut.min(cmds.len());
        let mut whole = ClusterState::default();
        for (i, c) in cmds.iter().enumerate() {
            let _ = whole.apply(i as u64 + 1, c);
        }
        let mut first = ClusterState::default();
        for (i, c) in cmds[..cut].iter().enumerate() {
            let _ = first.apply(i as u64 + 1, c);
        }
        let mut restored = ClusterState::decode(&first.encode().unwrap()).unwrap();
        prop_assert_eq!(&restored, &first);
        // Replay everything from the start: the first `cut` are ignored.
        for (i, c) in cmds.iter().enumerate() {
            let _ = restored.apply(i as u64 + 1, c);
        }
        prop_assert_eq!(&restored, &whole);
        let again = restored.clone();
        for (i, c) in cmds.iter().enumerate() {
            prop_assert_eq!(restored.apply(i as u64 + 1, c), Ok(()));
        }
        prop_assert_eq!(restored, again);
    }

    /// Whatever the entries, at most one owner per group and epochs never go back.
    #[test]
    fn ownership_is_single_and_monotonic(cmds in proptest::collection::vec(command(), 1..80)) {
        let mut s = ClusterState::default();
        let mut last = [(0u64, 0u64); 2];
        for (i, c) in cmds.iter().enumerate() {
            let _ = s.apply(i as u64 + 1, c);
            for g in 0..2u8 {
                let st = s.group(g);
                prop_assert!(st.owner != Some(Member::Witness));
                prop_assert!(st.epoch >= last[g as usize].0 && st.lease >= last[g as usize].1);
                last[g as usize] = (st.epoch, st.lease);
            }
        }
    }

    /// Garbage never decodes into a state by panicking.
    #[test]
    fn garbage_snapshot_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ClusterState::decode(&bytes);
        let _ = decode_command(&bytes);
    }
}
