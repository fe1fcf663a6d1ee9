//! One handler per Kafka API, routed by api key.
//!
//! A handler turns a decoded request into a response. A failure that concerns one topic or
//! partition is an error code inside the response; only a request that cannot be understood at
//! all (unknown api key, unsupported version, undecodable body) closes the connection, as
//! Kafka does.

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, FetchRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use sediment_meta::MetaError;
use sediment_protocol::versions;
use tracing::{error, warn};

use crate::metrics::ApiLabel;
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

/// Kafka error code for a metadata-store failure.
pub fn meta_error_code(e: &MetaError) -> i16 {
    match e {
        MetaError::NotFound(_) => ResponseError::UnknownTopicOrPartition.code(),
        MetaError::AlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        MetaError::Invalid(_) => ResponseError::InvalidRequest.code(),
        _ => ResponseError::UnknownServerError.code(),
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Decodes and answers one request frame.
pub async fn dispatch(broker: &Arc<Broker>, mut frame: Bytes) -> Reply {
    if frame.len() < 8 {
        broker.metrics.bad_requests.inc();
        warn!(
            len = frame.len(),
            "request shorter than a request header; closing connection"
        );
        return Reply::Close;
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(key) = ApiKey::try_from(api_key) else {
        broker.metrics.bad_requests.inc();
        warn!(api_key, "unknown api key; closing connection");
        return Reply::Close;
    };
    if !versions::is_supported(api_key, version) {
        broker.metrics.bad_requests.inc();
        if key == ApiKey::ApiVersions {
            // KIP-511: answer an ApiVersions we cannot parse in v0 form, listing what we serve,
            // so the client can retry with a version we have.
            let resp = versions::api_versions_response(ResponseError::UnsupportedVersion.code());
            return ready(encode(correlation_id, 0, &resp));
        }
        warn!(?key, version, "unsupported api version; closing connection");
        return Reply::Close;
    }
    if let Err(e) = RequestHeader::decode(&mut frame, key.request_header_version(version)) {
        broker.metrics.bad_requests.inc();
        warn!(?key, error = %e, "undecodable request header; closing connection");
        return Reply::Close;
    }
    broker
        .metrics
        .requests
        .get_or_create(&ApiLabel {
            api: format!("{key:?}"),
        })
        .inc();

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
                &metadata::handle(broker, version, req).await,
            ))
        }
        ApiKey::Produce => {
            let req = decode!(ProduceRequest);
            produce::handle(broker, cid, version, req).await
        }
        ApiKey::Fetch => {
            let req = decode!(FetchRequest);
            fetch::handle(broker, cid, version, req)
        }
        ApiKey::ListOffsets => {
            let req = decode!(ListOffsetsRequest);
            ready(encode(
                cid,
                version,
                &list_offsets::handle(broker, version, req).await,
            ))
        }
        ApiKey::CreateTopics => {
            let req = decode!(CreateTopicsRequest);
            ready(encode(
                cid,
                version,
                &create_topics::handle(broker, version, req).await,
            ))
        }
        ApiKey::DeleteTopics => {
            let req = decode!(DeleteTopicsRequest);
            ready(encode(
                cid,
                version,
                &delete_topics::handle(broker, version, req).await,
            ))
        }
        ApiKey::CreatePartitions => {
            let req = decode!(CreatePartitionsRequest);
            ready(encode(
                cid,
                version,
                &create_partitions::handle(broker, req).await,
            ))
        }
        ApiKey::DescribeConfigs => {
            let req = decode!(DescribeConfigsRequest);
            ready(encode(
                cid,
                version,
                &describe_configs::handle(broker, version, req).await,
            ))
        }
        ApiKey::DescribeCluster => {
            let req = decode!(DescribeClusterRequest);
            ready(encode(cid, version, &describe_cluster::handle(broker, req)))
        }
        _ => {
            // Unreachable while SUPPORTED and this match agree; a unit test checks they do.
            warn!(
                ?key,
                "api listed as supported has no handler; closing connection"
            );
            Reply::Close
        }
    }
}
