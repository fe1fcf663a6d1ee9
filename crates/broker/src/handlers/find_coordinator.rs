//! FindCoordinator: a single node coordinates every group; in a cluster each group has one
//! coordinator among the live brokers, and the others answer its requests with NOT_COORDINATOR. Transactions are not implemented:
//! a transaction coordinator lookup gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients
//! treat as fatal, so `init_transactions` fails at once with that error instead of retrying a
//! retriable COORDINATOR_NOT_AVAILABLE until its timeout (the same code Produce and
//! InitProducerId answer for a transactional id).

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, ResponseError};
use crate::Broker;

const GROUP: i8 = 0;

/// The coordinator of a group: this broker on a single node; in a cluster the live broker
/// [`crate::cluster::Cluster::coordinator_for`] picks. As (id, host, port).
fn lookup(
    broker: &Broker,
    key: &str,
    key_type: i8,
    session: &crate::security::Session,
) -> Result<(i32, String, i32), (i16, &'static str)> {
    check(broker, key, key_type)?;
    if key_type == GROUP && !broker.authorized_group(session, sediment_auth::acl::op::DESCRIBE, key)
    {
        return Err((
            ResponseError::GroupAuthorizationFailed.code(),
            "not authorized on the group",
        ));
    }
    let listener = session.listener.as_ref();
    let c = &broker.config;
    match broker.cluster() {
        None => {
            let (host, port) = c.endpoint(listener);
            Ok((c.broker_id, host, port))
        }
        Some(cluster) => cluster
            .coordinator_for(key)
            .and_then(|b| {
                let (host, port) = b.endpoint(listener)?;
                Some((b.broker_id, host, port))
            })
            .ok_or((
                ResponseError::CoordinatorNotAvailable.code(),
                "no live broker is registered",
            )),
    }
}

fn check(broker: &Broker, key: &str, key_type: i8) -> Result<(), (i16, &'static str)> {
    match key_type {
        GROUP if key.is_empty() => Err((ResponseError::InvalidGroupId.code(), "empty group id")),
        GROUP if key.len() > broker.config.max_group_id_len => {
            Err((ResponseError::InvalidGroupId.code(), "group id too long"))
        }
        GROUP => Ok(()),
        1 => Err((
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            "transactions are not supported by this broker",
        )),
        _ => Err((
            ResponseError::InvalidRequest.code(),
            "unknown coordinator key type",
        )),
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: FindCoordinatorRequest,
    session: &crate::security::Session,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in req.coordinator_keys {
            let mut co = Coordinator::default();
            match lookup(broker, key.as_str(), req.key_type, session) {
                Ok((id, host, port)) => {
                    co.node_id = BrokerId(id);
                    co.host = str_bytes(host);
                    co.port = port;
                }
                Err((code, msg)) => {
                    co.node_id = BrokerId(-1);
                    co.port = -1;
                    co.error_code = code;
                    co.error_message = Some(str_bytes(msg));
                }
            }
            co.key = key;
            resp.coordinators.push(co);
        }
        return resp;
    }
    match lookup(broker, req.key.as_str(), req.key_type, session) {
        Ok((id, host, port)) => {
            resp.node_id = BrokerId(id);
            resp.host = str_bytes(host);
            resp.port = port;
        }
        Err((code, msg)) => {
            resp.error_code = code;
            resp.node_id = BrokerId(-1);
            resp.host = StrBytes::default();
            resp.port = -1;
            if version >= 1 {
                resp.error_message = Some(str_bytes(msg));
            }
        }
    }
    resp
}
