//! With no authorizer, Metadata and DescribeCluster report every operation a resource supports
//! when asked (as Kafka does), and nothing when not asked.

mod common;

use common::*;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest};

const NOT_ASKED: i32 = i32::MIN;

#[tokio::test]
async fn authorized_operations_are_the_full_set_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "ops", 0, batch(&["x"])).await, (0, 0));
    let topic_ops = [3, 4, 5, 6, 7, 8, 10, 11]
        .iter()
        .fold(0, |b, o| b | (1 << o));
    let cluster_ops = [5, 7, 8, 9, 10, 11, 12].iter().fold(0, |b, o| b | (1 << o));
    for ask in [true, false] {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(topic_name("ops"));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        req.include_topic_authorized_operations = ask;
        req.include_cluster_authorized_operations = ask;
        let v10 = c.send(10, &req).await.unwrap();
        let want = if ask { topic_ops } else { NOT_ASKED };
        assert_eq!(v10.topics[0].topic_authorized_operations, want);
        let want = if ask { cluster_ops } else { NOT_ASKED };
        assert_eq!(v10.cluster_authorized_operations, want);
        // v11 dropped the cluster flag (DescribeCluster answers it instead).
        req.include_cluster_authorized_operations = false;
        let v12 = c.send(12, &req).await.unwrap();
        let want = if ask { topic_ops } else { NOT_ASKED };
        assert_eq!(v12.topics[0].topic_authorized_operations, want);

        let mut dreq = DescribeClusterRequest::default();
        dreq.endpoint_type = 1;
        dreq.include_cluster_authorized_operations = ask;
        let d = c.send(1, &dreq).await.unwrap();
        let want = if ask { cluster_ops } else { NOT_ASKED };
        assert_eq!(d.cluster_authorized_operations, want);
    }
    tb.stop().await;
}
