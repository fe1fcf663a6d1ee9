//! Group APIs over a real listener: committed offsets across a restart, bad input.

mod common;

use common::*;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sediment_protocol::client::Client;

fn commit(
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    metadata: &str,
) -> OffsetCommitRequest {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = partition;
    p.committed_offset = offset;
    p.committed_metadata = Some(StrBytes::from_string(metadata.into()));
    let mut t = OffsetCommitRequestTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.into()));
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![t];
    req
}

async fn fetch_committed(c: &Client, group: &str) -> Vec<(String, i32, i64, String)> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.into()));
    req.topics = None;
    let resp = c.send(7, &req).await.unwrap();
    assert_eq!(resp.error_code, 0);
    resp.topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name.to_string();
            t.partitions.into_iter().map(move |p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn committed_offsets_and_metadata_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "t", 0, batch(&["a", "b", "c"])).await.0, 0);
    let resp = c
        .send(8, &commit("g", "t", 0, 2, "checkpoint-7"))
        .await
        .unwrap();
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    let resp = c.send(8, &commit("g", "t", 5, 1, "")).await.unwrap();
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let resp = c.send(8, &commit("", "t", 0, 1, "")).await.unwrap();
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::InvalidGroupId.code()
    );
    drop(c);
    tb.stop().await;

    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(
        fetch_committed(&c, "g").await,
        vec![("t".into(), 0, 2, "checkpoint-7".into())]
    );
    tb.stop().await;
}

#[tokio::test]
async fn bad_group_requests_get_kafka_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let mut join = JoinGroupRequest::default();
    join.session_timeout_ms = 10_000;
    join.rebalance_timeout_ms = 10_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    let resp = c.send(5, &join).await.unwrap();
    assert_eq!(resp.error_code, ResponseError::InvalidGroupId.code());

    join.group_id = GroupId(StrBytes::from_string("x".repeat(2000)));
    let resp = c.send(5, &join).await.unwrap();
    assert_eq!(resp.error_code, ResponseError::InvalidGroupId.code());

    join.group_id = GroupId(StrBytes::from_static_str("g"));
    join.session_timeout_ms = 10;
    let resp = c.send(5, &join).await.unwrap();
    assert_eq!(resp.error_code, ResponseError::InvalidSessionTimeout.code());

    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(StrBytes::from_static_str("g"));
    hb.member_id = StrBytes::from_static_str("nobody");
    let resp = c.send(3, &hb).await.unwrap();
    assert_eq!(resp.error_code, ResponseError::UnknownMemberId.code());

    // A commit carrying a generation for a group this coordinator does not have (say after a
    // restart): GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before, as Kafka answers; a
    // commit from outside the group protocol is stored.
    assert_eq!(produce(&c, "ct", 0, batch(&["x"])).await.0, 0);
    let mut req = commit("nogroup", "ct", 0, 5, "");
    req.generation_id_or_member_epoch = 3;
    req.member_id = StrBytes::from_static_str("m-1");
    for (version, want) in [
        (9, ResponseError::GroupIdNotFound),
        (8, ResponseError::IllegalGeneration),
        (2, ResponseError::IllegalGeneration),
    ] {
        let resp = c.send(version, &req).await.unwrap();
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            want.code(),
            "OffsetCommit v{version}"
        );
    }
    let resp = c.send(9, &commit("nogroup", "ct", 0, 5, "")).await.unwrap();
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    tb.stop().await;
}

#[tokio::test]
async fn offsets_of_groups_without_members_expire_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.offsets_retention = std::time::Duration::from_secs(3600)
    })
    .await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "t", 0, batch(&["a"])).await.0, 0);
    let resp = c.send(8, &commit("old", "t", 0, 1, "")).await.unwrap();
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Within the retention nothing goes; past it, the offset does.
    assert_eq!(tb.broker.expire_offsets(now + 1000).await, 0);
    assert_eq!(fetch_committed(&c, "old").await.len(), 1);
    assert_eq!(tb.broker.expire_offsets(now + 3_600_000 + 1000).await, 1);
    assert!(fetch_committed(&c, "old").await.is_empty());
    tb.stop().await;
}
