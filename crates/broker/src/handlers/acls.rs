//! DescribeAcls, CreateAcls and DeleteAcls (KIP-140 with KIP-290's prefixed patterns).
//!
//! Describing needs DESCRIBE on the cluster, changing ALTER on the cluster, as in Kafka. Without
//! an authorizer the calls are refused with SECURITY_DISABLED, as Kafka does.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sediment_auth::acl::{op, Binding, Filter};
use tracing::info;

use super::{meta_error_code, str_bytes};
use crate::security::Session;
use crate::Broker;

fn text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// The error for every entry when the call may not be made at all.
fn refused(broker: &Broker, session: &Session, operation: i8) -> Option<(i16, &'static str)> {
    if broker.authorizer.is_none() {
        return Some((
            ResponseError::SecurityDisabled.code(),
            "no authorizer is configured (--authorizer acl)",
        ));
    }
    if !broker.authorized_cluster(session, operation) {
        return Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            "not authorized on the cluster",
        ));
    }
    None
}

pub fn describe(
    broker: &Broker,
    session: &Session,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    if let Some((code, message)) = refused(broker, session, op::DESCRIBE) {
        resp.error_code = code;
        resp.error_message = Some(str_bytes(message));
        return resp;
    }
    let filter = Filter {
        resource_type: req.resource_type_filter,
        resource_name: text(&req.resource_name_filter),
        pattern_type: req.pattern_type_filter,
        principal: text(&req.principal_filter),
        host: text(&req.host_filter),
        operation: req.operation,
        permission: req.permission_type,
    };
    if let Err(e) = filter.validate() {
        resp.error_code = ResponseError::InvalidRequest.code();
        resp.error_message = Some(str_bytes(e));
        return resp;
    }
    let Some(authorizer) = &broker.authorizer else {
        return resp;
    };
    let acls = authorizer.acls();
    let mut grouped: std::collections::BTreeMap<(i8, String, i8), Vec<AclDescription>> =
        Default::default();
    for b in acls.bindings().iter().filter(|b| filter.matches(b)) {
        let mut d = AclDescription::default();
        d.principal = str_bytes(b.principal.clone());
        d.host = str_bytes(b.host.clone());
        d.operation = b.operation;
        d.permission_type = b.permission;
        grouped
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(d);
    }
    resp.resources = grouped
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            let mut r = DescribeAclsResource::default();
            r.resource_type = rt;
            r.resource_name = str_bytes(name);
            r.pattern_type = pt;
            r.acls = acls;
            r
        })
        .collect();
    resp
}

pub async fn create(
    broker: &Broker,
    session: &Session,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let mut resp = CreateAclsResponse::default();
    let refusal = refused(broker, session, op::ALTER);
    let mut valid = Vec::new();
    let mut slots = Vec::new();
    for c in req.creations {
        let b = Binding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        let mut r = AclCreationResult::default();
        if let Some((code, message)) = refusal {
            r.error_code = code;
            r.error_message = Some(str_bytes(message));
        } else if let Err(e) = b.validate() {
            r.error_code = ResponseError::InvalidRequest.code();
            r.error_message = Some(str_bytes(e));
        } else {
            slots.push(resp.results.len());
            valid.push(b);
        }
        resp.results.push(r);
    }
    if valid.is_empty() {
        return resp;
    }
    let texts: Vec<String> = valid.iter().map(Binding::encode).collect();
    match broker.meta.add_acls(texts).await {
        Ok(()) => {
            for b in &valid {
                info!(principal = %session.principal, acl = ?b, "ACL created");
            }
            broker.reload_acls().await;
        }
        Err(e) => {
            for i in slots {
                resp.results[i].error_code = meta_error_code(&e);
                resp.results[i].error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    resp
}

pub async fn delete(
    broker: &Broker,
    session: &Session,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let mut resp = DeleteAclsResponse::default();
    let refusal = refused(broker, session, op::ALTER);
    let acls = broker.authorizer.as_ref().map(|a| a.acls());
    let mut doomed: Vec<String> = Vec::new();
    for f in req.filters {
        let mut r = DeleteAclsFilterResult::default();
        let filter = Filter {
            resource_type: f.resource_type_filter,
            resource_name: text(&f.resource_name_filter),
            pattern_type: f.pattern_type_filter,
            principal: text(&f.principal_filter),
            host: text(&f.host_filter),
            operation: f.operation,
            permission: f.permission_type,
        };
        if let Some((code, message)) = refusal {
            r.error_code = code;
            r.error_message = Some(str_bytes(message));
        } else if let Err(e) = filter.validate() {
            r.error_code = ResponseError::InvalidRequest.code();
            r.error_message = Some(str_bytes(e));
        } else if let Some(acls) = &acls {
            for b in acls.bindings().iter().filter(|b| filter.matches(b)) {
                let mut m = DeleteAclsMatchingAcl::default();
                m.resource_type = b.resource_type;
                m.resource_name = str_bytes(b.resource_name.clone());
                m.pattern_type = b.pattern_type;
                m.principal = str_bytes(b.principal.clone());
                m.host = str_bytes(b.host.clone());
                m.operation = b.operation;
                m.permission_type = b.permission;
                r.matching_acls.push(m);
                doomed.push(b.encode());
            }
        }
        resp.filter_results.push(r);
    }
    if doomed.is_empty() {
        return resp;
    }
    doomed.sort();
    doomed.dedup();
    match broker.meta.remove_acls(doomed).await {
        Ok(()) => {
            info!(principal = %session.principal, "ACLs deleted");
            broker.reload_acls().await;
        }
        Err(e) => {
            for r in &mut resp.filter_results {
                if r.error_code == 0 && !r.matching_acls.is_empty() {
                    r.error_code = meta_error_code(&e);
                    r.error_message = Some(str_bytes(e.to_string()));
                    r.matching_acls.clear();
                }
            }
        }
    }
    resp
}
