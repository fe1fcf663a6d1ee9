//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554).
//!
//! An upsertion carries the salt, iteration count and salted password; the broker keeps only
//! what SCRAM needs to verify a client (StoredKey, ServerKey), in the metadata store. A
//! user's changes in one request all apply or none does.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;
use sediment_auth::scram::{self, Credential};
use sediment_auth::Mechanism;
use tracing::info;

use super::{meta_error_code, str_bytes};
use crate::Broker;

/// The mechanism codes of KIP-554: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
fn mechanism_of(code: i8) -> Option<Mechanism> {
    match code {
        1 => Some(Mechanism::ScramSha256),
        2 => Some(Mechanism::ScramSha512),
        _ => None,
    }
}

fn code_of(name: &str) -> Option<i8> {
    match Mechanism::from_name(name)? {
        Mechanism::ScramSha256 => Some(1),
        Mechanism::ScramSha512 => Some(2),
        Mechanism::Plain => None,
    }
}

fn iterations_of(credential: &str) -> i32 {
    Credential::decode(credential).map_or(-1, |c| c.iterations as i32)
}

pub async fn describe(
    broker: &Broker,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    let all = match broker.meta.user_credentials().await {
        Ok(all) => all,
        Err(e) => {
            resp.error_code = meta_error_code(&e);
            resp.error_message = Some(str_bytes(e.to_string()));
            return resp;
        }
    };
    let mut by_user: BTreeMap<String, Vec<CredentialInfo>> = BTreeMap::new();
    for c in all {
        if let Some(code) = code_of(&c.mechanism) {
            let mut info = CredentialInfo::default();
            info.mechanism = code;
            info.iterations = iterations_of(&c.credential);
            by_user.entry(c.user).or_default().push(info);
        }
    }
    let result = |user: &str, error: i16, message: Option<&str>, infos| {
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = str_bytes(user);
        r.error_code = error;
        r.error_message = message.map(str_bytes);
        r.credential_infos = infos;
        r
    };
    match req.users {
        // Null or empty: every user that has a credential.
        None => {
            resp.results = by_user
                .into_iter()
                .map(|(u, infos)| result(&u, 0, None, infos))
                .collect()
        }
        Some(users) if users.is_empty() => {
            resp.results = by_user
                .into_iter()
                .map(|(u, infos)| result(&u, 0, None, infos))
                .collect()
        }
        Some(users) => {
            let mut seen = HashSet::new();
            let dups: HashSet<String> = users
                .iter()
                .filter(|u| !seen.insert(u.name.to_string()))
                .map(|u| u.name.to_string())
                .collect();
            let mut answered = HashSet::new();
            for u in users {
                let name = u.name.to_string();
                if !answered.insert(name.clone()) {
                    continue;
                }
                resp.results.push(if dups.contains(&name) {
                    result(
                        &name,
                        ResponseError::DuplicateResource.code(),
                        Some("user named more than once"),
                        Vec::new(),
                    )
                } else {
                    match by_user.get(&name) {
                        Some(infos) => result(&name, 0, None, infos.clone()),
                        None => result(
                            &name,
                            ResponseError::ResourceNotFound.code(),
                            Some("Attempt to describe a user credential that does not exist"),
                            Vec::new(),
                        ),
                    }
                });
            }
        }
    }
    resp
}

/// One user's planned changes.
#[derive(Default)]
struct Plan {
    deletions: Vec<Mechanism>,
    upsertions: Vec<(Mechanism, Credential)>,
    error: Option<(i16, String)>,
}

pub async fn alter(
    broker: &Broker,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
    let mut seen: HashSet<(String, i8)> = HashSet::new();
    let refuse = |plan: &mut Plan, code: ResponseError, message: String| {
        if plan.error.is_none() {
            plan.error = Some((code.code(), message));
        }
    };
    for d in req.deletions {
        let user = d.name.to_string();
        let plan = plans.entry(user.clone()).or_default();
        if !seen.insert((user.clone(), d.mechanism)) {
            refuse(
                plan,
                ResponseError::DuplicateResource,
                format!("a credential of {user} is changed twice"),
            );
            continue;
        }
        match mechanism_of(d.mechanism) {
            Some(m) => plan.deletions.push(m),
            None => refuse(
                plan,
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", d.mechanism),
            ),
        }
    }
    for u in req.upsertions {
        let user = u.name.to_string();
        let plan = plans.entry(user.clone()).or_default();
        if !seen.insert((user.clone(), u.mechanism)) {
            refuse(
                plan,
                ResponseError::DuplicateResource,
                format!("a credential of {user} is changed twice"),
            );
            continue;
        }
        let Some(m) = mechanism_of(u.mechanism) else {
            refuse(
                plan,
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", u.mechanism),
            );
            continue;
        };
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
            refuse(
                plan,
                ResponseError::UnacceptableCredential,
                format!(
                    "iterations must be between {} and {}",
                    scram::MIN_ITERATIONS,
                    scram::MAX_ITERATIONS
                ),
            );
            continue;
        }
        if u.salt.is_empty() || u.salted_password.is_empty() {
            refuse(
                plan,
                ResponseError::UnacceptableCredential,
                "salt and salted password must not be empty".into(),
            );
            continue;
        }
        let Some(hash) = m.scram_hash() else { continue };
        let cred = Credential::from_salted_password(hash, &u.salted_password, &u.salt, iterations);
        plan.upsertions.push((m, cred));
    }
    let mut resp = AlterUserScramCredentialsResponse::default();
    for (user, plan) in plans {
        let mut r = AlterUserScramCredentialsResult::default();
        r.user = str_bytes(user.clone());
        if user.is_empty() {
            r.error_code = ResponseError::UnacceptableCredential.code();
            r.error_message = Some(str_bytes("empty user name"));
        } else if let Some((code, message)) = plan.error {
            r.error_code = code;
            r.error_message = Some(str_bytes(message));
        } else if let Err((code, message)) = apply(broker, &user, plan).await {
            r.error_code = code;
            r.error_message = Some(str_bytes(message));
        }
        resp.results.push(r);
    }
    resp
}

async fn apply(broker: &Broker, user: &str, plan: Plan) -> Result<(), (i16, String)> {
    let meta = |e: sediment_meta::MetaError| (meta_error_code(&e), e.to_string());
    // Deletions of credentials that do not exist fail the user's whole change, checked first.
    for m in &plan.deletions {
        if broker
            .meta
            .user_credential(user, m.name())
            .await
            .map_err(meta)?
            .is_none()
        {
            return Err((
                ResponseError::ResourceNotFound.code(),
                format!("Attempt to delete a user credential that does not exist: {user} {m}"),
            ));
        }
    }
    for m in &plan.deletions {
        broker
            .meta
            .delete_user_credential(user, m.name())
            .await
            .map_err(meta)?;
        info!(user, mechanism = %m, "SCRAM credential deleted");
    }
    for (m, cred) in plan.upsertions {
        broker
            .meta
            .put_user_credential(user, m.name(), cred.encode())
            .await
            .map_err(meta)?;
        info!(user, mechanism = %m, iterations = cred.iterations, "SCRAM credential stored");
    }
    Ok(())
}
