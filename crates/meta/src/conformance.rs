//! The behaviour every [`MetaStore`] must show, written once and run against each one.
//!
//! Leaves one topic, `conformance-kept`, in the store so callers can check durability.

use std::collections::BTreeMap;

use crate::{CommittedOffset, MetaError, MetaStore, OffsetEntry, PartitionIndex, SegmentEntry};
use uuid::Uuid;

/// Runs every check, panicking on the first that fails. Meant for tests.
pub async fn run(store: &dyn MetaStore) {
    let cid = store.cluster_id().await.expect("cluster id");
    assert!(!cid.is_empty());
    assert_eq!(
        store.cluster_id().await.expect("cluster id"),
        cid,
        "cluster id is stable"
    );

    // Dynamic broker configs: per scope, replaced whole, removed by an empty set.
    assert!(store.broker_configs("").await.expect("read").is_empty());
    let cluster = BTreeMap::from([("log.retention.ms".to_string(), "5000".to_string())]);
    let one = BTreeMap::from([("message.max.bytes".to_string(), "2000".to_string())]);
    store
        .set_broker_configs("", cluster.clone())
        .await
        .expect("set cluster default");
    store
        .set_broker_configs("1", one.clone())
        .await
        .expect("set broker 1");
    assert_eq!(store.broker_configs("").await.expect("read"), cluster);
    assert_eq!(store.broker_configs("1").await.expect("read"), one);
    assert!(store.broker_configs("2").await.expect("read").is_empty());
    store
        .set_broker_configs("1", BTreeMap::new())
        .await
        .expect("clear broker 1");
    assert!(store.broker_configs("1").await.expect("read").is_empty());
    assert_eq!(store.broker_configs("").await.expect("read"), cluster);

    // SASL credentials: one per user and mechanism; names with separators stay apart.
    assert!(store.user_credentials().await.expect("list").is_empty());
    for (user, mech, cred) in [
        ("alice", "SCRAM-SHA-256", "a256"),
        ("alice", "SCRAM-SHA-512", "a512"),
        ("bob/x%2F", "SCRAM-SHA-256", "b256"),
        ("bob", "SCRAM-SHA-256", "plain-bob"),
    ] {
        store
            .put_user_credential(user, mech, cred.to_string())
            .await
            .expect("put credential");
    }
    store
        .put_user_credential("alice", "SCRAM-SHA-256", "a256-new".into())
        .await
        .expect("replace credential");
    let listed: Vec<(String, String, String)> = store
        .user_credentials()
        .await
        .expect("list")
        .into_iter()
        .map(|c| (c.user, c.mechanism, c.credential))
        .collect();
    let want = [
        ("alice", "SCRAM-SHA-256", "a256-new"),
        ("alice", "SCRAM-SHA-512", "a512"),
        ("bob", "SCRAM-SHA-256", "plain-bob"),
        ("bob/x%2F", "SCRAM-SHA-256", "b256"),
    ];
    assert_eq!(
        listed,
        want.map(|(u, m, c)| (u.to_string(), m.to_string(), c.to_string()))
    );
    assert_eq!(
        store
            .user_credential("bob/x%2F", "SCRAM-SHA-256")
            .await
            .expect("read"),
        Some("b256".to_string())
    );
    assert_eq!(
        store
            .user_credential("bob", "SCRAM-SHA-512")
            .await
            .expect("read"),
        None
    );
    assert!(store
        .delete_user_credential("alice", "SCRAM-SHA-512")
        .await
        .expect("delete"));
    assert!(!store
        .delete_user_credential("alice", "SCRAM-SHA-512")
        .await
        .expect("delete again"));
    for (user, mech) in [("alice", "SCRAM-SHA-256"), ("bob/x%2F", "SCRAM-SHA-256")] {
        assert!(store
            .delete_user_credential(user, mech)
            .await
            .expect("delete"));
    }
    // ACLs: a set of texts; adding one twice keeps one, removing an absent one is no error.
    assert!(store.acls().await.expect("acls").is_empty());
    store
        .add_acls(vec!["b\tx".into(), "a/%".into(), "b\tx".into()])
        .await
        .expect("add acls");
    store.add_acls(vec!["a/%".into()]).await.expect("add again");
    assert_eq!(
        store.acls().await.expect("acls"),
        vec!["a/%".to_string(), "b\tx".to_string()]
    );
    store
        .remove_acls(vec!["a/%".into(), "never".into()])
        .await
        .expect("remove acls");
    assert_eq!(store.acls().await.expect("acls"), vec!["b\tx".to_string()]);

    // `bob` stays, so callers can check that credentials survive a restart.
    assert_eq!(store.user_credentials().await.expect("list").len(), 1);

    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "1000".to_string());
    let a = store
        .create_topic("conformance-a", 3, configs.clone())
        .await
        .expect("create");
    assert_eq!(a.partitions, 3);
    assert_eq!(a.configs, configs);
    assert_eq!(
        store
            .create_topic("conformance-a", 1, BTreeMap::new())
            .await,
        Err(MetaError::AlreadyExists("conformance-a".into()))
    );
    assert!(matches!(
        store
            .create_topic("conformance-z", 0, BTreeMap::new())
            .await,
        Err(MetaError::Invalid(_))
    ));
    assert_eq!(
        store.topic("conformance-a").await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(store.topic("conformance-missing").await.expect("get"), None);

    let grown = store
        .add_partitions("conformance-a", 5)
        .await
        .expect("grow");
    assert_eq!((grown.partitions, grown.id), (5, a.id));
    assert!(matches!(
        store.add_partitions("conformance-a", 5).await,
        Err(MetaError::Invalid(_))
    ));
    assert!(matches!(
        store.add_partitions("conformance-missing", 5).await,
        Err(MetaError::NotFound(_))
    ));

    let kept = store
        .create_topic("conformance-kept", 1, BTreeMap::new())
        .await
        .expect("create");
    let names: Vec<String> = store
        .topics()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .filter(|n| n.starts_with("conformance-"))
        .collect();
    assert_eq!(
        names,
        vec!["conformance-a", "conformance-kept"],
        "sorted by name"
    );

    let deleted = store.delete_topic("conformance-a").await.expect("delete");
    assert_eq!(deleted.id, a.id);
    assert!(matches!(
        store.delete_topic("conformance-a").await,
        Err(MetaError::NotFound(_))
    ));
    let again = store
        .create_topic("conformance-a", 1, BTreeMap::new())
        .await
        .expect("re-create");
    assert_ne!(again.id, a.id, "a re-created topic gets a new id");
    assert_ne!(again.id, kept.id);
    store.delete_topic("conformance-a").await.expect("delete");

    // Committed offsets: last write wins, metadata kept, groups independent.
    let entry = |topic: &str, partition: i32, offset: i64, metadata: Option<&str>| OffsetEntry {
        topic: topic.into(),
        partition,
        committed: CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: metadata.map(Into::into),
            commit_timestamp_ms: 1_700_000_000_000,
        },
    };
    store
        .commit_offsets(
            "cg-1",
            vec![entry("b", 1, 10, Some("meta")), entry("a", 0, 4, None)],
        )
        .await
        .expect("commit");
    store
        .commit_offsets("cg-1", vec![entry("a", 0, 6, Some(""))])
        .await
        .expect("commit");
    store
        .commit_offsets("cg-2", vec![entry("a", 0, 1, None)])
        .await
        .expect("commit");
    assert_eq!(
        store.committed_offsets("cg-1").await.expect("fetch"),
        vec![entry("a", 0, 6, Some("")), entry("b", 1, 10, Some("meta"))],
        "sorted by topic and partition, last commit wins"
    );
    assert_eq!(
        store.committed_offsets("cg-none").await.expect("fetch"),
        vec![]
    );
    let groups = store.offset_groups().await.expect("groups");
    assert!(groups.contains(&"cg-1".to_string()) && groups.contains(&"cg-2".to_string()));
    store
        .delete_offsets("cg-1", vec![("a".into(), 0)])
        .await
        .expect("delete offsets");
    assert_eq!(
        store.committed_offsets("cg-1").await.expect("fetch"),
        vec![entry("b", 1, 10, Some("meta"))]
    );
    store
        .delete_group_offsets("cg-2")
        .await
        .expect("delete group");
    assert!(!store
        .offset_groups()
        .await
        .expect("groups")
        .contains(&"cg-2".to_string()));

    // Producer ids: blocks never overlap.
    let first = store.allocate_producer_ids(1000).await.expect("ids");
    let second = store.allocate_producer_ids(10).await.expect("ids");
    assert!(
        second >= first + 1000,
        "blocks overlap: {first} then {second}"
    );
    assert!(matches!(
        store.allocate_producer_ids(0).await,
        Err(MetaError::Invalid(_))
    ));

    // Segment index: contiguous, fenced by leader epoch, trimmed by retention.
    let topic = Uuid::new_v4();
    let seg = |base: i64, end: i64, epoch: i32| SegmentEntry {
        base_offset: base,
        end_offset: end,
        min_timestamp: base * 10,
        max_timestamp: end * 10,
        size_bytes: 100,
        leader_epoch: epoch,
        path: format!("topics/t/partition=0/{base:020}-{epoch}.parquet"),
    };
    assert_eq!(
        store.partition_index(topic, 0).await.expect("index"),
        PartitionIndex::default()
    );
    store
        .add_segment(topic, 0, seg(0, 100, 1))
        .await
        .expect("add");
    store
        .add_segment(topic, 0, seg(100, 250, 2))
        .await
        .expect("add");
    let refused = |r: crate::Result<()>, invalid: bool| match r {
        Err(MetaError::Invalid(_)) => invalid,
        Err(MetaError::Fenced(_)) => !invalid,
        _ => false,
    };
    assert!(
        refused(store.add_segment(topic, 0, seg(300, 400, 2)).await, true),
        "a gap"
    );
    assert!(
        refused(store.add_segment(topic, 0, seg(240, 400, 2)).await, true),
        "an overlap"
    );
    assert!(
        refused(store.add_segment(topic, 0, seg(250, 250, 2)).await, true),
        "empty"
    );
    assert!(
        refused(store.add_segment(topic, 0, seg(250, 400, 1)).await, false),
        "a deposed leader cannot commit"
    );
    store
        .add_segment(topic, 1, seg(0, 5, 0))
        .await
        .expect("partitions are independent");
    store
        .add_segment(topic, 0, seg(250, 400, 3))
        .await
        .expect("add");
    assert_eq!(
        store
            .partition_index(topic, 0)
            .await
            .expect("index")
            .segments,
        vec![seg(0, 100, 1), seg(100, 250, 2), seg(250, 400, 3)]
    );
    let removed = store.advance_log_start(topic, 0, 260).await.expect("trim");
    assert_eq!(
        removed,
        vec![seg(0, 100, 1), seg(100, 250, 2)],
        "only those ending by 260"
    );
    let trimmed = store.partition_index(topic, 0).await.expect("index");
    assert_eq!(trimmed.segments, vec![seg(250, 400, 3)]);
    assert_eq!((trimmed.log_start_offset, trimmed.end_offset), (260, 400));
    assert!(
        store
            .advance_log_start(topic, 0, 10)
            .await
            .expect("lower")
            .is_empty(),
        "the log start never moves back"
    );
    assert_eq!(
        store
            .partition_index(topic, 0)
            .await
            .expect("index")
            .log_start_offset,
        260
    );
    // Retention may remove every segment: the index still knows where the next one starts.
    store
        .advance_log_start(topic, 0, 400)
        .await
        .expect("trim all");
    let empty = store.partition_index(topic, 0).await.expect("index");
    assert_eq!((empty.segments.len(), empty.end_offset), (0, 400));
    assert!(
        refused(store.add_segment(topic, 0, seg(0, 100, 3)).await, true),
        "offsets never restart"
    );
    assert!(
        refused(store.add_segment(topic, 0, seg(400, 500, 2)).await, false),
        "fencing outlives the fenced segments"
    );
    store
        .add_segment(topic, 0, seg(400, 500, 3))
        .await
        .expect("continues");
    assert_eq!(
        store
            .partition_index(topic, 1)
            .await
            .expect("index")
            .segments
            .len(),
        1
    );

    // Topic configs are replaced as a whole.
    let created = store
        .create_topic("configured", 1, Default::default())
        .await
        .expect("create");
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "1000".to_string());
    let altered = store
        .set_topic_configs("configured", configs.clone())
        .await
        .expect("alter");
    assert_eq!((altered.id, &altered.configs), (created.id, &configs));
    assert_eq!(
        store
            .topic("configured")
            .await
            .expect("read")
            .map(|t| t.configs),
        Some(configs)
    );
    assert!(matches!(
        store.set_topic_configs("nope", Default::default()).await,
        Err(MetaError::NotFound(_))
    ));
}
