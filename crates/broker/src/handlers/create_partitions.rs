//! CreatePartitions: raise a topic's partition count.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use tracing::info;

use super::{str_bytes, ResponseError};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    session: &crate::security::Session,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let name = t.name.to_string();
        let outcome = match broker.registry.topic(&name) {
            _ if !broker.authorized_topic(session, sediment_auth::acl::op::ALTER, &name) => Err((
                ResponseError::TopicAuthorizationFailed.code(),
                "not authorized to alter the topic".to_string(),
            )),
            None => Err((
                ResponseError::UnknownTopicOrPartition.code(),
                format!("topic {name} does not exist"),
            )),
            Some(cur) if t.count <= cur.meta.partitions => Err((
                ResponseError::InvalidPartitions.code(),
                format!(
                    "topic {name} has {} partitions; the new count {} must be larger",
                    cur.meta.partitions, t.count
                ),
            )),
            Some(_)
                if broker.cluster().is_none()
                    && t.assignments.as_ref().is_some_and(|a| {
                        a.iter()
                            .any(|x| x.broker_ids.iter().any(|b| b.0 != broker.config.broker_id))
                    }) =>
            {
                Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    "this cluster has one broker".into(),
                ))
            }
            Some(_) if req.validate_only => Ok(()),
            Some(_) => match broker
                .add_partitions_placed(
                    &name,
                    t.count,
                    t.assignments.as_ref().map(|a| {
                        a.iter()
                            .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                            .collect()
                    }),
                )
                .await
            {
                Ok(meta) => {
                    info!(
                        topic = name,
                        partitions = meta.partitions,
                        "added partitions"
                    );
                    broker.registry.upsert_topic(meta);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err((code, msg)) = outcome {
            r.error_code = code;
            r.error_message = Some(str_bytes(msg));
        }
        resp.results.push(r);
    }
    resp
}
