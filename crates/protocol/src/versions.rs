//! The API versions this broker implements.
//!
//! Only what is implemented and covered by tests is listed: a client that negotiates a version
//! from this table gets a handler that understands every field of it. Floors follow Kafka 4.0
//! (KIP-896), except Metadata, which starts at v0 because kafka-python still asks for it.

use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::ApiKey;

/// `(api key, min version, max version)` for every API the broker serves.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 2, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::AlterConfigs, 0, 2),
    // After a v0 SaslHandshake the SASL tokens follow as bare frames (no Kafka header); v1
    // wraps them in SaslAuthenticate. librdkafka wants v0 listed before it uses SASL at all.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// The version range served for `api_key`, if any.
pub fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k as i16 == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// Whether `version` of `api_key` is served.
pub fn is_supported(api_key: i16, version: i16) -> bool {
    supported_range(api_key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The ApiVersions body listing [`SUPPORTED`]; `error_code` is 0 or UNSUPPORTED_VERSION.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let mut resp = ApiVersionsResponse::default();
    resp.error_code = error_code;
    resp.api_keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = key as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_one_the_codec_supports() {
        for &(key, min, max) in SUPPORTED {
            let codec = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(
                codec.min <= min && max <= codec.max,
                "{key:?} {min}..{max} vs {codec}"
            );
        }
        assert!(is_supported(ApiKey::Metadata as i16, 0));
        assert!(!is_supported(ApiKey::Produce as i16, 2));
        assert!(!is_supported(ApiKey::JoinGroup as i16, 1));
        assert!(!is_supported(999, 0));
    }
}
