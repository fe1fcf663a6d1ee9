//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch ends in this leader's log.
//! A follower asks it before fetching at a new epoch, to find where its own log diverges; a
//! consumer asks it after a leader change, to detect that the log it read was truncated.
//! Answered from the partition's epoch history (the epochs of the batches in the WAL), and
//! only by the leader (a single node leads everything).

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::ResponseError;
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    req: OffsetForLeaderEpochRequest,
    session: &crate::security::Session,
) -> OffsetForLeaderEpochResponse {
    use sediment_auth::acl::op;
    let mut resp = OffsetForLeaderEpochResponse::default();
    // A follower's request needs CLUSTER_ACTION, a client's DESCRIBE on each topic.
    let follower = req.replica_id.0 >= 0;
    let cluster_ok = follower && broker.authorized_cluster(session, op::CLUSTER_ACTION);
    for t in req.topics {
        let allowed = if follower {
            cluster_ok
        } else {
            broker.authorized_topic(session, op::DESCRIBE, t.topic.as_str())
        };
        let topic = broker.registry.topic(t.topic.as_str());
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic;
        for p in t.partitions {
            let mut out = EpochEndOffset::default();
            out.partition = p.partition;
            out.leader_epoch = -1;
            out.end_offset = -1;
            let partition = topic.as_ref().and_then(|t| t.partition(p.partition));
            match partition.map(|x| x.state.lock()) {
                _ if !allowed => out.error_code = ResponseError::TopicAuthorizationFailed.code(),
                None => out.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(Err(_)) => out.error_code = ResponseError::UnknownServerError.code(),
                Some(Ok(st)) => match super::check_leader(&st, p.current_leader_epoch) {
                    Some(code) => out.error_code = code,
                    None => {
                        if let Some((epoch, end)) = st.epoch_end(p.leader_epoch) {
                            out.leader_epoch = epoch;
                            out.end_offset = end;
                        }
                    }
                },
            }
            tr.partitions.push(out);
        }
        resp.topics.push(tr);
    }
    resp
}
