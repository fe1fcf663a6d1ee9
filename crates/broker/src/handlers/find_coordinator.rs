//! FindCoordinator: this broker coordinates every group. Transactions are not implemented:
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

fn lookup(broker: &Broker, key: &str, key_type: i8) -> Result<(), (i16, &'static str)> {
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
) -> FindCoordinatorResponse {
    let c = &broker.config;
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in req.coordinator_keys {
            let mut co = Coordinator::default();
            match lookup(broker, key.as_str(), req.key_type) {
                Ok(()) => {
                    co.node_id = BrokerId(c.broker_id);
                    co.host = str_bytes(c.advertised_host.clone());
                    co.port = c.advertised_port;
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
    match lookup(broker, req.key.as_str(), req.key_type) {
        Ok(()) => {
            resp.node_id = BrokerId(c.broker_id);
            resp.host = str_bytes(c.advertised_host.clone());
            resp.port = c.advertised_port;
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
