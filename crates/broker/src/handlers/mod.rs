//! One handler per Kafka API, routed by api key.
//!
//! A handler turns a decoded request into a response. A failure that concerns one topic or
//! partition is an error code inside the response; only a request that cannot be understood at
//! all (unknown api key, unsupported version, undecodable body) closes the connection, as
//! Kafka does.

pub mod acls;
pub mod alter_configs;

/// Kafka ACL operation codes (READ 3 ... IDEMPOTENT_WRITE 12) as a bit set: what a principal
/// may do, as Metadata and DescribeCluster report when asked. With no authorizer every
/// operation a resource type supports is allowed, as Kafka reports it.
pub(crate) fn operations(
    broker: &Broker,
    session: &Session,
    resource_type: i8,
    name: &str,
    ops: &[u8],
) -> i32 {
    ops.iter()
        .filter(|&&op| broker.authorized(session, op as i8, resource_type, name))
        .fold(0, |bits, op| bits | (1 << op))
}
/// Topic: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub(crate) const TOPIC_OPERATIONS: &[u8] = &[3, 4, 5, 6, 7, 8, 10, 11];
/// Cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE.
pub(crate) const CLUSTER_OPERATIONS: &[u8] = &[5, 7, 8, 9, 10, 11, 12];
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl;
pub mod scram_credentials;
pub mod sync_group;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeUserScramCredentialsRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    RequestHeader, ResponseHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use sediment_auth::acl::op;
use sediment_meta::MetaError;
use sediment_protocol::versions;
use tracing::{error, warn};

use crate::security::Session;
use crate::server::Reply;
use crate::Broker;

pub use kafka_protocol::ResponseError;

/// Encodes a response with its header. `None` if the response does not fit the version (a bug:
/// logged, and the connection is closed rather than sending something the client misreads).
pub fn encode<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    resp: &R,
) -> Option<Bytes> {
    let mut buf = BytesMut::with_capacity(64);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let result = header
        .encode(&mut buf, R::header_version(version))
        .and_then(|_| resp.encode(&mut buf, version));
    match result {
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            error!(error = %e, version, "response encoding failed");
            None
        }
    }
}

fn ready(encoded: Option<Bytes>) -> Reply {
    encoded.map_or(Reply::Close, Reply::Ready)
}

fn later(fut: impl std::future::Future<Output = Option<Bytes>> + Send + 'static) -> Reply {
    Reply::Later(Box::pin(fut))
}

/// Whether this broker may serve a client's produce, fetch or list-offsets on a partition
/// now: `None` if it may, else the Kafka error code. A single node leads everything; in a
/// cluster only the leader serves (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka without
/// follower fetching). A `current_leader_epoch` the client gives (-1: none) must be the
/// leader's: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH (KIP-320).
pub(crate) fn check_leader(
    st: &crate::log::PartitionState,
    current_leader_epoch: i32,
) -> Option<i16> {
    sediment_replication::isr::check_leader(&st.role, st.leader_epoch, current_leader_epoch).err()
}

/// A listed broker: id, host, port, rack.
pub(crate) type Listed = (i32, String, i32, Option<String>);

/// The brokers Metadata and DescribeCluster list, as (id, host, port, rack), and the
/// controller they name. A single node is all three. A cluster has no controller (leadership is
/// decided by compare-and-set in etcd, ADR 0022); the live broker with the lowest id is named,
/// since admin clients send CreateTopics and the like to "the controller", and any broker
/// serves those.
pub(crate) fn brokers(broker: &Broker, listener: &str) -> (Vec<Listed>, i32) {
    let c = &broker.config;
    match broker.cluster() {
        None => {
            let (host, port) = c.endpoint(listener);
            (vec![(c.broker_id, host, port, None)], c.broker_id)
        }
        Some(cluster) => {
            let live: Vec<_> = cluster
                .live_brokers()
                .into_iter()
                .filter_map(|b| {
                    let (host, port) = b.endpoint(listener)?;
                    Some((b.broker_id, host, port, b.rack))
                })
                .collect();
            let controller = live.first().map_or(-1, |b| b.0);
            (live, controller)
        }
    }
}

/// Whether the session may do `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config
/// resource (2 topic, 4 broker); `Some` is the error Kafka answers.
pub(crate) fn config_denied(
    broker: &Broker,
    session: &Session,
    resource_type: i8,
    name: &str,
    operation: i8,
) -> Option<(i16, String)> {
    match resource_type {
        2 if !broker.authorized_topic(session, operation, name) => Some((
            ResponseError::TopicAuthorizationFailed.code(),
            "not authorized on the topic's configs".into(),
        )),
        4 if !broker.authorized_cluster(session, operation) => Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            "not authorized on the cluster's configs".into(),
        )),
        _ => None,
    }
}

/// Kafka error code for a metadata-store failure.
pub fn meta_error_code(e: &MetaError) -> i16 {
    match e {
        MetaError::NotFound(_) => ResponseError::UnknownTopicOrPartition.code(),
        MetaError::AlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        MetaError::Invalid(_) => ResponseError::InvalidRequest.code(),
        // The store did not answer in time: the change may or may not have been made (etcd
        // can apply it after the timeout). Kafka's answer for "outcome unknown, retry" is
        // REQUEST_TIMED_OUT; a retried create then finds TOPIC_ALREADY_EXISTS if it landed.
        MetaError::Unavailable(_) => ResponseError::RequestTimedOut.code(),
        _ => ResponseError::UnknownServerError.code(),
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A request frame whose header is read: the body is what is left.
pub(crate) struct Framed {
    pub key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Reads a request's header, checking the API and version are served. `Err` is the reply to
/// send instead (the connection is closed, or an ApiVersions fallback answered).
pub(crate) fn frame_header(broker: &Broker, mut frame: Bytes) -> Result<Framed, Reply> {
    if frame.len() < 8 {
        broker.metrics.bad_requests.inc();
        warn!(
            len = frame.len(),
            "request shorter than a request header; closing connection"
        );
        return Err(Reply::Close);
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(key) = ApiKey::try_from(api_key) else {
        broker.metrics.bad_requests.inc();
        warn!(api_key, "unknown api key; closing connection");
        return Err(Reply::Close);
    };
    if !versions::is_supported(api_key, version) {
        broker.metrics.bad_requests.inc();
        if key == ApiKey::ApiVersions {
            // KIP-511: answer an ApiVersions we cannot parse in v0 form, listing what we serve,
            // so the client can retry with a version we have.
            let resp = versions::api_versions_response(ResponseError::UnsupportedVersion.code());
            return Err(ready(encode(correlation_id, 0, &resp)));
        }
        warn!(?key, version, "unsupported api version; closing connection");
        return Err(Reply::Close);
    }
    match RequestHeader::decode(&mut frame, key.request_header_version(version)) {
        Ok(header) => Ok(Framed {
            key,
            version,
            correlation_id,
            header,
            body: frame,
        }),
        Err(e) => {
            broker.metrics.bad_requests.inc();
            warn!(?key, error = %e, "undecodable request header; closing connection");
            Err(Reply::Close)
        }
    }
}

/// Decodes and answers one request frame.
pub async fn dispatch(broker: &Arc<Broker>, frame: Bytes, session: &Session) -> Reply {
    let framed = match frame_header(broker, frame) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let (key, version, correlation_id, mut frame) = (
        framed.key,
        framed.version,
        framed.correlation_id,
        framed.body,
    );
    let header = framed.header;
    let peer = session.peer.as_str();
    let client_id = header.client_id.as_ref().map(|c| c.as_str()).unwrap_or("");

    macro_rules! decode {
        ($req:ty) => {
            match <$req>::decode(&mut frame, version) {
                Ok(r) => r,
                Err(e) => {
                    broker.metrics.bad_requests.inc();
                    warn!(?key, version, error = %e, "undecodable request; closing connection");
                    return Reply::Close;
                }
            }
        };
    }
    let cid = correlation_id;
    match key {
        ApiKey::ApiVersions => {
            let _ = decode!(ApiVersionsRequest);
            ready(encode(cid, version, &api_versions::handle()))
        }
        ApiKey::Metadata => {
            let req = decode!(MetadataRequest);
            ready(encode(
                cid,
                version,
                &metadata::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::Produce => {
            let req = decode!(ProduceRequest);
            produce::handle(broker, session, cid, version, req).await
        }
        ApiKey::DeleteRecords => {
            let req = decode!(DeleteRecordsRequest);
            ready(encode(
                cid,
                version,
                &delete_records::handle(broker, req, session).await,
            ))
        }
        ApiKey::AlterConfigs => {
            let req = decode!(AlterConfigsRequest);
            ready(encode(
                cid,
                version,
                &alter_configs::handle(broker, req, session).await,
            ))
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = decode!(IncrementalAlterConfigsRequest);
            ready(encode(
                cid,
                version,
                &incremental_alter_configs::handle(broker, req, session).await,
            ))
        }
        ApiKey::Fetch => {
            let req = decode!(FetchRequest);
            fetch::handle(broker, session, cid, version, req)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = decode!(OffsetForLeaderEpochRequest);
            ready(encode(
                cid,
                version,
                &offset_for_leader_epoch::handle(broker, req, session),
            ))
        }
        ApiKey::ListOffsets => {
            let req = decode!(ListOffsetsRequest);
            ready(encode(
                cid,
                version,
                &list_offsets::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::CreateTopics => {
            let req = decode!(CreateTopicsRequest);
            ready(encode(
                cid,
                version,
                &create_topics::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::DeleteTopics => {
            let req = decode!(DeleteTopicsRequest);
            ready(encode(
                cid,
                version,
                &delete_topics::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::CreatePartitions => {
            let req = decode!(CreatePartitionsRequest);
            ready(encode(
                cid,
                version,
                &create_partitions::handle(broker, req, session).await,
            ))
        }
        ApiKey::DescribeConfigs => {
            let req = decode!(DescribeConfigsRequest);
            ready(encode(
                cid,
                version,
                &describe_configs::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::DescribeCluster => {
            let req = decode!(DescribeClusterRequest);
            ready(encode(
                cid,
                version,
                &describe_cluster::handle(broker, req, session),
            ))
        }
        ApiKey::FindCoordinator => {
            let req = decode!(FindCoordinatorRequest);
            ready(encode(
                cid,
                version,
                &find_coordinator::handle(broker, version, req, session),
            ))
        }
        ApiKey::JoinGroup => {
            let req = decode!(JoinGroupRequest);
            if !broker.authorized_group(session, op::READ, req.group_id.as_str()) {
                let mut resp = kafka_protocol::messages::JoinGroupResponse::default();
                resp.error_code = ResponseError::GroupAuthorizationFailed.code();
                resp.generation_id = -1;
                return ready(encode(cid, version, &resp));
            }
            // A join waits for the whole group: answer it from the response queue.
            let (b, client_id, peer) = (broker.clone(), client_id.to_string(), format!("/{peer}"));
            later(async move {
                let resp = join_group::handle(&b, version, req, &client_id, &peer).await;
                encode(cid, version, &resp)
            })
        }
        ApiKey::SyncGroup => {
            let req = decode!(SyncGroupRequest);
            if !broker.authorized_group(session, op::READ, req.group_id.as_str()) {
                let mut resp = kafka_protocol::messages::SyncGroupResponse::default();
                resp.error_code = ResponseError::GroupAuthorizationFailed.code();
                return ready(encode(cid, version, &resp));
            }
            let b = broker.clone();
            later(async move { encode(cid, version, &sync_group::handle(&b, version, req).await) })
        }
        ApiKey::Heartbeat => {
            let req = decode!(HeartbeatRequest);
            if !broker.authorized_group(session, op::READ, req.group_id.as_str()) {
                let mut resp = kafka_protocol::messages::HeartbeatResponse::default();
                resp.error_code = ResponseError::GroupAuthorizationFailed.code();
                return ready(encode(cid, version, &resp));
            }
            ready(encode(cid, version, &heartbeat::handle(broker, req).await))
        }
        ApiKey::LeaveGroup => {
            let req = decode!(LeaveGroupRequest);
            if !broker.authorized_group(session, op::READ, req.group_id.as_str()) {
                let mut resp = kafka_protocol::messages::LeaveGroupResponse::default();
                resp.error_code = ResponseError::GroupAuthorizationFailed.code();
                return ready(encode(cid, version, &resp));
            }
            ready(encode(
                cid,
                version,
                &leave_group::handle(broker, version, req).await,
            ))
        }
        ApiKey::OffsetCommit => {
            let req = decode!(OffsetCommitRequest);
            let (b, s) = (broker.clone(), session.clone());
            later(async move {
                encode(
                    cid,
                    version,
                    &offset_commit::handle(&b, version, req, &s).await,
                )
            })
        }
        ApiKey::OffsetFetch => {
            let req = decode!(OffsetFetchRequest);
            ready(encode(
                cid,
                version,
                &offset_fetch::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::OffsetDelete => {
            let req = decode!(OffsetDeleteRequest);
            ready(encode(
                cid,
                version,
                &offset_delete::handle(broker, req, session).await,
            ))
        }
        ApiKey::DescribeGroups => {
            let req = decode!(DescribeGroupsRequest);
            ready(encode(
                cid,
                version,
                &describe_groups::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::ListGroups => {
            let req = decode!(ListGroupsRequest);
            ready(encode(
                cid,
                version,
                &list_groups::handle(broker, version, req, session).await,
            ))
        }
        ApiKey::DeleteGroups => {
            let req = decode!(DeleteGroupsRequest);
            ready(encode(
                cid,
                version,
                &delete_groups::handle(broker, req, session).await,
            ))
        }
        ApiKey::InitProducerId => {
            let req = decode!(InitProducerIdRequest);
            // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some
            // topic (Kafka 2.8+); transactional ids are refused by the handler either way.
            let idempotent_ok = req.transactional_id.is_some()
                || broker.authorized_cluster(session, op::IDEMPOTENT_WRITE)
                || broker.authorizer.as_ref().is_none_or(|a| {
                    a.acls().authorize_any(
                        &session.principal,
                        &session.peer,
                        op::WRITE,
                        sediment_auth::acl::resource::TOPIC,
                    )
                });
            if !idempotent_ok {
                let mut resp = kafka_protocol::messages::InitProducerIdResponse::default();
                resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
                resp.producer_id = kafka_protocol::messages::ProducerId(-1);
                resp.producer_epoch = -1;
                return ready(encode(cid, version, &resp));
            }
            ready(encode(
                cid,
                version,
                &init_producer_id::handle(broker, req).await,
            ))
        }
        ApiKey::DescribeUserScramCredentials => {
            let req = decode!(DescribeUserScramCredentialsRequest);
            if !broker.authorized_cluster(session, op::DESCRIBE) {
                let mut resp =
                    kafka_protocol::messages::DescribeUserScramCredentialsResponse::default();
                resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
                return ready(encode(cid, version, &resp));
            }
            ready(encode(
                cid,
                version,
                &scram_credentials::describe(broker, req).await,
            ))
        }
        ApiKey::AlterUserScramCredentials => {
            let req = decode!(AlterUserScramCredentialsRequest);
            if !broker.authorized_cluster(session, op::ALTER) {
                let mut resp =
                    kafka_protocol::messages::AlterUserScramCredentialsResponse::default();
                let users: std::collections::BTreeSet<String> = req
                    .deletions
                    .iter()
                    .map(|d| d.name.to_string())
                    .chain(req.upsertions.iter().map(|u| u.name.to_string()))
                    .collect();
                for user in users {
                    let mut r = kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
                    r.user = str_bytes(user);
                    r.error_code = ResponseError::ClusterAuthorizationFailed.code();
                    resp.results.push(r);
                }
                return ready(encode(cid, version, &resp));
            }
            ready(encode(
                cid,
                version,
                &scram_credentials::alter(broker, req).await,
            ))
        }
        ApiKey::DescribeAcls => {
            let req = decode!(kafka_protocol::messages::DescribeAclsRequest);
            ready(encode(cid, version, &acls::describe(broker, session, req)))
        }
        ApiKey::CreateAcls => {
            let req = decode!(kafka_protocol::messages::CreateAclsRequest);
            ready(encode(
                cid,
                version,
                &acls::create(broker, session, req).await,
            ))
        }
        ApiKey::DeleteAcls => {
            let req = decode!(kafka_protocol::messages::DeleteAclsRequest);
            ready(encode(
                cid,
                version,
                &acls::delete(broker, session, req).await,
            ))
        }
        _ => {
            // Unreachable while SUPPORTED and this match agree (SaslHandshake and
            // SaslAuthenticate are answered by the connection, see `sasl`).
            warn!(
                ?key,
                "api listed as supported has no handler; closing connection"
            );
            Reply::Close
        }
    }
}
