//! OffsetFetch: committed offsets of one group (v1-7) or of several (v8+).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use sediment_meta::CommittedOffset;

use super::{str_bytes, ResponseError};
use crate::Broker;

/// `(topic, partitions)` requested; `None` means every committed partition.
type Wanted = Option<Vec<(TopicName, Vec<i32>)>>;

/// Per topic, per partition: `Ok(committed or None)` or an error code for the whole group.
/// A partition's committed offset (`None`: none), or its error code.
type Found = Result<Option<CommittedOffset>, i16>;

async fn lookup(
    broker: &Broker,
    session: &crate::security::Session,
    group: &str,
    wanted: Wanted,
) -> Result<Vec<(TopicName, Vec<(i32, Found)>)>, i16> {
    use sediment_auth::acl::op;
    broker.check_group_id(group)?;
    if !broker.authorized_group(session, op::DESCRIBE, group) {
        return Err(ResponseError::GroupAuthorizationFailed.code());
    }
    let may = |topic: &str| broker.authorized_topic(session, op::DESCRIBE, topic);
    let stored = broker
        .meta
        .committed_offsets(group)
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable.code())?;
    let mut by_topic: BTreeMap<String, Vec<(i32, CommittedOffset)>> = BTreeMap::new();
    for e in stored {
        by_topic
            .entry(e.topic)
            .or_default()
            .push((e.partition, e.committed));
    }
    Ok(match wanted {
        // Every committed topic the principal may describe; the others are not named.
        None => by_topic
            .into_iter()
            .filter(|(t, _)| may(t))
            .map(|(t, ps)| {
                (
                    TopicName(str_bytes(t)),
                    ps.into_iter().map(|(p, c)| (p, Ok(Some(c)))).collect(),
                )
            })
            .collect(),
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let allowed = may(name.as_str());
                let have = by_topic.get(name.as_str());
                let found = partitions
                    .into_iter()
                    .map(|p| {
                        if !allowed {
                            return (p, Err(ResponseError::TopicAuthorizationFailed.code()));
                        }
                        let c = have
                            .and_then(|h| h.iter().find(|(hp, _)| *hp == p))
                            .map(|(_, c)| c.clone());
                        (p, Ok(c))
                    })
                    .collect();
                (name, found)
            })
            .collect(),
    })
}

fn fields(c: Option<CommittedOffset>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.unwrap_or_default()),
        None => (-1, -1, String::new()),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: OffsetFetchRequest,
    session: &crate::security::Session,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let mut gr = OffsetFetchResponseGroup::default();
            match lookup(broker, session, g.group_id.as_str(), wanted).await {
                Ok(topics) => {
                    for (name, parts) in topics {
                        let mut tr = OffsetFetchResponseTopics::default();
                        tr.name = name;
                        for (p, c) in parts {
                            let error = c.as_ref().err().copied().unwrap_or(0);
                            let (offset, epoch, metadata) = fields(c.ok().flatten());
                            let mut pr = OffsetFetchResponsePartitions::default();
                            pr.error_code = error;
                            pr.partition_index = p;
                            pr.committed_offset = offset;
                            pr.committed_leader_epoch = epoch;
                            pr.metadata = Some(str_bytes(metadata));
                            tr.partitions.push(pr);
                        }
                        gr.topics.push(tr);
                    }
                }
                Err(code) => gr.error_code = code,
            }
            gr.group_id = g.group_id;
            resp.groups.push(gr);
        }
        return resp;
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    match lookup(broker, session, req.group_id.as_str(), wanted).await {
        Ok(topics) => {
            for (name, parts) in topics {
                let mut tr = OffsetFetchResponseTopic::default();
                tr.name = name;
                for (p, c) in parts {
                    let error = c.as_ref().err().copied().unwrap_or(0);
                    let (offset, epoch, metadata) = fields(c.ok().flatten());
                    let mut pr = OffsetFetchResponsePartition::default();
                    pr.error_code = error;
                    pr.partition_index = p;
                    pr.committed_offset = offset;
                    if version >= 5 {
                        pr.committed_leader_epoch = epoch;
                    }
                    pr.metadata = Some(str_bytes(metadata));
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
        }
        Err(code) => {
            if version >= 2 {
                resp.error_code = code;
            }
        }
    }
    resp
}
