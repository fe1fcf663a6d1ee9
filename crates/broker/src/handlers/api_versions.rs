//! ApiVersions: the table in `sediment_protocol::versions`, nothing else.
//!
//! No tagged fields are set: older librdkafka (before 2.2) misreads a v3 response carrying
//! tagged fields, and Kafka itself never writes default-valued ones.

use kafka_protocol::messages::ApiVersionsResponse;
use sediment_protocol::versions;

pub fn handle() -> ApiVersionsResponse {
    versions::api_versions_response(0)
}
