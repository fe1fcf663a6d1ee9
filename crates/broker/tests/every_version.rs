//! Every API version the broker advertises is decoded and answered (not refused), and the
//! answer decodes at that version: what ApiVersions promises is what the handlers serve.

mod common;

use bytes::BytesMut;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use sediment_protocol::versions::SUPPORTED;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn default_request(key: ApiKey, version: i16) -> RequestKind {
    let group = || GroupId(StrBytes::from_static_str("every-version"));
    match key {
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorRequest::default();
            if version >= 4 {
                r.coordinator_keys = vec![StrBytes::from_static_str("g")];
            } else {
                r.key = StrBytes::from_static_str("g");
            }
            RequestKind::FindCoordinator(r)
        }
        ApiKey::JoinGroup => {
            let mut r = JoinGroupRequest::default();
            r.group_id = group();
            r.session_timeout_ms = 10;
            r.protocol_type = StrBytes::from_static_str("consumer");
            RequestKind::JoinGroup(r)
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupRequest::default();
            r.group_id = group();
            RequestKind::SyncGroup(r)
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatRequest::default();
            r.group_id = group();
            RequestKind::Heartbeat(r)
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default();
            r.group_id = group();
            RequestKind::LeaveGroup(r)
        }
        ApiKey::OffsetCommit => {
            let mut r = OffsetCommitRequest::default();
            r.group_id = group();
            r.generation_id_or_member_epoch = -1;
            RequestKind::OffsetCommit(r)
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchRequest::default();
            if version >= 8 {
                let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
                g.group_id = group();
                r.groups = vec![g];
            } else {
                r.group_id = group();
                r.topics = Some(vec![]);
            }
            RequestKind::OffsetFetch(r)
        }
        ApiKey::OffsetDelete => {
            let mut r = OffsetDeleteRequest::default();
            r.group_id = group();
            RequestKind::OffsetDelete(r)
        }
        ApiKey::DescribeGroups => {
            let mut r = DescribeGroupsRequest::default();
            r.groups = vec![group()];
            RequestKind::DescribeGroups(r)
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names = vec![group()];
            RequestKind::DeleteGroups(r)
        }
        ApiKey::InitProducerId => {
            let mut r = InitProducerIdRequest::default();
            r.transactional_id = None;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
            r.transaction_timeout_ms = 60_000;
            RequestKind::InitProducerId(r)
        }
        ApiKey::Produce => {
            let mut r = ProduceRequest::default();
            r.acks = -1;
            RequestKind::Produce(r)
        }
        ApiKey::Fetch => {
            let mut r = FetchRequest::default();
            r.max_bytes = 1024;
            RequestKind::Fetch(r)
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::DescribeConfigs => {
            let mut r = DescribeConfigsRequest::default();
            let mut res = describe_configs_request::DescribeConfigsResource::default();
            res.resource_type = 4;
            res.resource_name = StrBytes::from_static_str("0");
            r.resources = vec![res];
            RequestKind::DescribeConfigs(r)
        }
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default())
        }
        ApiKey::DescribeCluster => {
            let mut r = DescribeClusterRequest::default();
            r.endpoint_type = 1;
            RequestKind::DescribeCluster(r)
        }
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
        }
        ApiKey::SaslHandshake => {
            let mut r = SaslHandshakeRequest::default();
            r.mechanism = StrBytes::from_static_str("PLAIN");
            RequestKind::SaslHandshake(r)
        }
        ApiKey::SaslAuthenticate => {
            RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default())
        }
        ApiKey::DescribeUserScramCredentials => {
            RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default())
        }
        ApiKey::AlterUserScramCredentials => {
            RequestKind::AlterUserScramCredentials(AlterUserScramCredentialsRequest::default())
        }
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default()),
        ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::default()),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::default()),
        other => panic!("no default request for {other:?}: add one here"),
    }
}

#[tokio::test]
async fn every_advertised_version_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(&tb.addr).await.unwrap();
    let mut cid = 0;
    for &(key, min, max) in SUPPORTED {
        for version in min..=max {
            cid += 1;
            let mut header = RequestHeader::default();
            header.request_api_key = key as i16;
            header.request_api_version = version;
            header.correlation_id = cid;
            let mut buf = BytesMut::new();
            header
                .encode(&mut buf, key.request_header_version(version))
                .unwrap();
            default_request(key, version)
                .encode(&mut buf, version)
                .unwrap();
            s.write_all(&(buf.len() as i32).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&buf).await.unwrap();

            let len = s
                .read_i32()
                .await
                .unwrap_or_else(|e| panic!("{key:?} v{version}: connection closed: {e}"));
            let mut body = vec![0u8; len as usize];
            s.read_exact(&mut body).await.unwrap();
            let mut b = bytes::Bytes::from(body);
            let h = ResponseHeader::decode(&mut b, key.response_header_version(version)).unwrap();
            assert_eq!(h.correlation_id, cid, "{key:?} v{version}");
            let resp = ResponseKind::decode(key, &mut b, version);
            assert!(
                resp.is_ok(),
                "{key:?} v{version}: response does not decode: {:?}",
                resp.err()
            );
            assert!(
                b.is_empty(),
                "{key:?} v{version}: {} trailing bytes",
                b.len()
            );
        }
    }
    // Keep the header-version helper honest for ApiVersions (always a v0 response header).
    assert_eq!(ApiVersionsResponse::header_version(3), 0);
    tb.stop().await;
}
