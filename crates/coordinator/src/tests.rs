//! The group state machine driven through the coordinator with tokio's paused clock.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::*;

fn args(member_id: &str, protocols: &[&str]) -> JoinArgs {
    JoinArgs {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

/// Joins with the KIP-394 round trip; returns the join result.
async fn join(c: &Coordinator, group: &str, a: JoinArgs) -> JoinResult {
    let first = c.join(group, a.clone()).await;
    assert_eq!(first.error, ResponseError::MemberIdRequired.code());
    assert!(!first.member_id.is_empty());
    c.join(
        group,
        JoinArgs {
            member_id: first.member_id,
            ..a
        },
    )
    .await
}

fn sync_args(member: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncArgs {
    SyncArgs {
        member_id: member.into(),
        instance_id: None,
        generation,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments,
    }
}

#[tokio::test(start_paused = true)]
async fn single_member_joins_syncs_and_is_stable() {
    let c = Coordinator::new(GroupConfig::default());
    let t0 = tokio::time::Instant::now();
    let j = join(&c, "g", args("", &["range", "roundrobin"])).await;
    assert_eq!(j.error, 0);
    assert_eq!(j.generation, 1);
    assert_eq!(j.leader, j.member_id);
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    assert_eq!(j.members.len(), 1);
    assert_eq!(j.members[0].2, Bytes::from("meta-range"));
    // The first generation of an empty group waits for the initial rebalance delay.
    assert_eq!(t0.elapsed(), Duration::from_millis(300));

    let s = c
        .sync(
            "g",
            sync_args(
                &j.member_id,
                1,
                vec![(j.member_id.clone(), Bytes::from("a1"))],
            ),
        )
        .await;
    assert_eq!((s.error, s.assignment.clone()), (0, Bytes::from("a1")));
    assert_eq!(c.view("g").await.unwrap().state, State::Stable);
    assert_eq!(c.heartbeat("g", j.member_id.clone(), None, 1).await, 0);
    assert_eq!(
        c.heartbeat("g", j.member_id.clone(), None, 7).await,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        c.heartbeat("g", "nobody".into(), None, 1).await,
        ResponseError::UnknownMemberId.code()
    );
}

#[tokio::test(start_paused = true)]
async fn members_joining_together_share_one_generation_and_protocol_vote() {
    let c = std::sync::Arc::new(Coordinator::new(GroupConfig::default()));
    let mut handles = Vec::new();
    for protocols in [
        &["range", "roundrobin"][..],
        &["roundrobin", "range"],
        &["roundrobin"],
    ] {
        let c = c.clone();
        let p: Vec<&'static str> = protocols.to_vec();
        handles.push(tokio::spawn(
            async move { join(&c, "g", args("", &p)).await },
        ));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    assert!(results.iter().all(|r| r.error == 0 && r.generation == 1));
    // Only roundrobin is common to all three.
    assert!(results
        .iter()
        .all(|r| r.protocol_name.as_deref() == Some("roundrobin")));
    let leaders: Vec<_> = results.iter().filter(|r| !r.members.is_empty()).collect();
    assert_eq!(leaders.len(), 1, "exactly one member gets the member list");
    assert_eq!(leaders[0].members.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_new_member_triggers_a_rebalance_that_existing_members_learn_by_heartbeat() {
    let c = std::sync::Arc::new(Coordinator::new(GroupConfig::default()));
    let a = join(&c, "g", args("", &["range"])).await;
    let s = c.sync("g", sync_args(&a.member_id, 1, vec![])).await;
    assert_eq!(s.error, 0);

    let c2 = c.clone();
    let b = tokio::spawn(async move { join(&c2, "g", args("", &["range"])).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        c.heartbeat("g", a.member_id.clone(), None, 1).await,
        ResponseError::RebalanceInProgress.code()
    );
    let a2 = c.join("g", args(&a.member_id, &["range"])).await;
    let b = b.await.unwrap();
    assert_eq!((a2.error, a2.generation, b.generation), (0, 2, 2));
    assert_eq!(a2.leader, a.member_id, "the leader stays the leader");
    assert_eq!(a2.members.len(), 2);
    let assignments = vec![
        (a.member_id.clone(), Bytes::from("pa")),
        (b.member_id.clone(), Bytes::from("pb")),
    ];
    let c3 = c.clone();
    let bid = b.member_id.clone();
    let follower = tokio::spawn(async move { c3.sync("g", sync_args(&bid, 2, vec![])).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let leader = c.sync("g", sync_args(&a.member_id, 2, assignments)).await;
    assert_eq!(leader.assignment, Bytes::from("pa"));
    assert_eq!(follower.await.unwrap().assignment, Bytes::from("pb"));
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_expelled_after_its_session_timeout() {
    let c = std::sync::Arc::new(Coordinator::new(GroupConfig::default()));
    let c2 = c.clone();
    let (a, b) = tokio::join!(
        join(&c, "g", args("", &["range"])),
        join(&c2, "g", args("", &["range"]))
    );
    let leader = if a.members.is_empty() { &b } else { &a };
    let other = if a.members.is_empty() { &a } else { &b };
    let c3 = c.clone();
    let oid = other.member_id.clone();
    let f = tokio::spawn(async move { c3.sync("g", sync_args(&oid, 1, vec![])).await });
    c.sync("g", sync_args(&leader.member_id, 1, vec![])).await;
    f.await.unwrap();
    // Only the leader heartbeats; the other member's 10 s session runs out.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let code = c.heartbeat("g", leader.member_id.clone(), None, 1).await;
        if code != 0 {
            assert_eq!(code, ResponseError::RebalanceInProgress.code());
            let again = c.join("g", args(&leader.member_id, &["range"])).await;
            assert_eq!(
                (again.error, again.generation, again.members.len()),
                (0, 2, 1)
            );
            return;
        }
    }
    panic!("the silent member was never expelled");
}

#[tokio::test(start_paused = true)]
async fn leaving_rebalances_and_the_last_leave_empties_the_group() {
    let c = Coordinator::new(GroupConfig::default());
    let a = join(&c, "g", args("", &["range"])).await;
    assert_eq!(
        c.leave("g", vec![(a.member_id.clone(), None)]).await,
        vec![0]
    );
    let v = c.view("g").await.unwrap();
    assert_eq!(
        (v.state, v.members.len(), v.generation),
        (State::Empty, 0, 2)
    );
    assert_eq!(
        c.leave("g", vec![("ghost".into(), None)]).await,
        vec![ResponseError::UnknownMemberId.code()]
    );
    assert_eq!(c.delete("g").await, Ok(true));
    assert!(c.view("g").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn bad_joins_get_kafka_error_codes() {
    let c = Coordinator::new(GroupConfig::default());
    let mut short = args("", &["range"]);
    short.session_timeout = Duration::from_millis(10);
    assert_eq!(
        c.join("g", short).await.error,
        ResponseError::InvalidSessionTimeout.code()
    );
    assert_eq!(
        c.join("g", args("made-up", &["range"])).await.error,
        ResponseError::UnknownMemberId.code()
    );
    let a = join(&c, "g", args("", &["range"])).await;
    let mut other_type = args("", &["range"]);
    other_type.protocol_type = "connect".into();
    other_type.require_known_member_id = false;
    assert_eq!(
        c.join("g", other_type).await.error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let mut other_protocol = args("", &["sticky"]);
    other_protocol.require_known_member_id = false;
    assert_eq!(
        c.join("g", other_protocol).await.error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert_eq!(
        c.sync("g", sync_args(&a.member_id, 99, vec![])).await.error,
        ResponseError::IllegalGeneration.code()
    );
    // Group state unharmed: the member syncs normally.
    assert_eq!(
        c.sync("g", sync_args(&a.member_id, 1, vec![])).await.error,
        0
    );
    assert_eq!(
        c.delete("g").await,
        Err(ResponseError::NonEmptyGroup.code())
    );
}

#[tokio::test(start_paused = true)]
async fn a_static_member_rejoining_keeps_its_assignment_without_a_rebalance() {
    let c = Coordinator::new(GroupConfig::default());
    let mut a = args("", &["range"]);
    a.instance_id = Some("instance-1".into());
    let j = c.join("g", a.clone()).await;
    assert_eq!(j.error, 0, "static members skip the member-id round trip");
    let s = c
        .sync(
            "g",
            sync_args(
                &j.member_id,
                1,
                vec![(j.member_id.clone(), Bytes::from("mine"))],
            ),
        )
        .await;
    assert_eq!(s.error, 0);
    // A second, non-leader static member, so the rejoin below is a follower's.
    let mut b = args("", &["range"]);
    b.instance_id = Some("instance-2".into());
    let c_ref = &c;
    let (jb, ja) = tokio::join!(c_ref.join("g", b.clone()), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        c_ref
            .join(
                "g",
                JoinArgs {
                    member_id: j.member_id.clone(),
                    ..a.clone()
                },
            )
            .await
    });
    assert_eq!((ja.generation, jb.generation), (2, 2));
    let (sa, sb) = tokio::join!(
        c_ref.sync(
            "g",
            sync_args(
                &ja.member_id,
                2,
                vec![
                    (ja.member_id.clone(), Bytes::from("A")),
                    (jb.member_id.clone(), Bytes::from("B"))
                ]
            )
        ),
        c_ref.sync("g", sync_args(&jb.member_id, 2, vec![]))
    );
    assert_eq!(
        (sa.assignment.clone(), sb.assignment.clone()),
        (Bytes::from("A"), Bytes::from("B"))
    );

    // instance-2 restarts: new member id, same generation, old assignment, no rebalance.
    let back = c.join("g", b).await;
    assert_eq!(back.error, 0);
    assert_ne!(back.member_id, jb.member_id);
    assert_eq!(back.generation, 2);
    let sb2 = c.sync("g", sync_args(&back.member_id, 2, vec![])).await;
    assert_eq!(sb2.assignment, Bytes::from("B"));
    // The old member id is fenced out, fatally for it (Kafka's FENCED_INSTANCE_ID), in
    // heartbeats, commits and syncs alike.
    assert_eq!(
        c.heartbeat("g", jb.member_id.clone(), Some("instance-2".into()), 2)
            .await,
        ResponseError::FencedInstanceId.code()
    );
    let mut old_sync = sync_args(&jb.member_id, 2, vec![]);
    old_sync.instance_id = Some("instance-2".into());
    assert_eq!(
        c.sync("g", old_sync).await.error,
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(c.view("g").await.unwrap().state, State::Stable);
}

#[tokio::test(start_paused = true)]
async fn commits_are_checked_against_membership() {
    let c = Coordinator::new(GroupConfig::default());
    assert_eq!(
        c.check_commit("free", String::new(), None, -1).await,
        Ok(())
    );
    assert_eq!(
        c.check_commit("free", "who".into(), None, 3).await,
        Err(ResponseError::GroupIdNotFound.code()),
        "a generation for a group this coordinator does not have"
    );
    let a = join(&c, "g", args("", &["range"])).await;
    assert_eq!(
        c.check_commit("g", a.member_id.clone(), None, 1).await,
        Err(ResponseError::RebalanceInProgress.code()),
        "awaiting SyncGroup"
    );
    c.sync("g", sync_args(&a.member_id, 1, vec![])).await;
    assert_eq!(
        c.check_commit("g", a.member_id.clone(), None, 1).await,
        Ok(())
    );
    assert_eq!(
        c.check_commit("g", a.member_id.clone(), None, 0).await,
        Err(ResponseError::IllegalGeneration.code())
    );
    assert_eq!(
        c.check_commit("g", String::new(), None, -1).await,
        Err(ResponseError::UnknownMemberId.code()),
        "no outside commits while members own the partitions"
    );
}

#[tokio::test(start_paused = true)]
async fn a_static_member_with_new_metadata_rejoins_without_a_rebalance_while_the_protocol_holds() {
    let c = Coordinator::new(GroupConfig::default());
    let mut a = args("", &["cooperative-sticky"]);
    a.instance_id = Some("leader-instance".into());
    let j = c.join("g", a.clone()).await;
    assert_eq!((j.error, j.generation), (0, 1));
    c.sync(
        "g",
        sync_args(
            &j.member_id,
            1,
            vec![(j.member_id.clone(), Bytes::from("own"))],
        ),
    )
    .await;
    // The leader restarts: new member id, different metadata bytes, same protocol.
    let mut again = a.clone();
    again.protocols = vec![(
        "cooperative-sticky".into(),
        Bytes::from("no-owned-partitions"),
    )];
    let back = c.join("g", again).await;
    assert_eq!((back.error, back.generation), (0, 1), "same generation");
    assert!(back.skip_assignment, "the leader must not assign again");
    assert_eq!(back.leader, back.member_id);
    let s = c.sync("g", sync_args(&back.member_id, 1, vec![])).await;
    assert_eq!(s.assignment, Bytes::from("own"));
    assert_eq!(c.view("g").await.unwrap().state, State::Stable);
}
