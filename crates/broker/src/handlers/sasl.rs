//! SaslHandshake and SaslAuthenticate (KIP-43, KIP-152), with re-authentication (KIP-368).
//!
//! These run in the connection's reader, not the dispatcher: they change who the connection
//! is, so the next request must see the result. On a SASL listener nothing but ApiVersions and
//! these two is served before authentication succeeds ([`gate`]); a failed authentication is
//! answered SASL_AUTHENTICATION_FAILED after a delay, and the connection closed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use sediment_auth::scram::{self, Credential, ServerExchange};
use sediment_auth::{AuthError, Mechanism};
use tracing::{info, warn};

use super::{encode, frame_header, str_bytes};
use crate::security::{ListenerRuntime, SaslSettings, Session};
use crate::server::Reply;
use crate::Broker;

/// The one message a failed authentication gets, whatever was wrong.
pub const FAILED: &str = "Authentication failed: invalid credentials";

/// A connection's authentication state.
#[derive(Default)]
pub struct ConnAuth {
    /// The mechanism the last SaslHandshake chose, until its exchange ends.
    mechanism: Option<Mechanism>,
    /// A SCRAM exchange waiting for the client's final message.
    scram: Option<ServerExchange>,
    /// The principal of the last successful authentication.
    authenticated: Option<String>,
    /// When the session ends unless re-authenticated (`connections.max.reauth.ms`).
    expires: Option<Instant>,
    /// A v0 SaslHandshake chose the mechanism: its tokens come as bare frames.
    raw: bool,
}

impl ConnAuth {
    /// Whether the next frame is a bare SASL token (after a v0 SaslHandshake).
    pub fn expects_raw_token(&self) -> bool {
        self.raw && self.mechanism.is_some()
    }
}

/// Whether `api_key` is one this module answers.
pub fn is_sasl_api(api_key: i16) -> bool {
    api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16
}

/// Whether a request other than SaslHandshake/SaslAuthenticate may be served now; `Err` says
/// why the connection is closed instead.
pub fn gate(rt: &ListenerRuntime, auth: &ConnAuth, api_key: i16) -> Result<(), &'static str> {
    if rt.sasl.is_none() {
        return Ok(());
    }
    if auth.authenticated.is_none() {
        if api_key == ApiKey::ApiVersions as i16 {
            return Ok(());
        }
        return Err("request before SASL authentication");
    }
    if auth.expires.is_some_and(|e| Instant::now() >= e) {
        return Err("SASL session expired without re-authentication");
    }
    Ok(())
}

fn handshake_response(error: i16, sasl: Option<&SaslSettings>) -> SaslHandshakeResponse {
    let mut resp = SaslHandshakeResponse::default();
    resp.error_code = error;
    if let Some(s) = sasl {
        resp.mechanisms = s.mechanisms.iter().map(|m| str_bytes(m.name())).collect();
    }
    resp
}

fn auth_response(error: i16, message: Option<&str>, bytes: Vec<u8>) -> SaslAuthenticateResponse {
    let mut resp = SaslAuthenticateResponse::default();
    resp.error_code = error;
    resp.error_message = message.map(str_bytes);
    resp.auth_bytes = Bytes::from(bytes);
    resp
}

/// Answers a SaslHandshake or SaslAuthenticate frame.
pub async fn handle(
    broker: &Broker,
    rt: &ListenerRuntime,
    auth: &mut ConnAuth,
    session: &mut Session,
    frame: Bytes,
) -> Reply {
    let framed = match frame_header(broker, frame) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let (cid, version, mut body) = (framed.correlation_id, framed.version, framed.body);
    let ready = |r: Option<Bytes>| r.map_or(Reply::Close, Reply::Ready);
    match framed.key {
        ApiKey::SaslHandshake => {
            let Ok(req) = SaslHandshakeRequest::decode(&mut body, version) else {
                broker.metrics.bad_requests.inc();
                return Reply::Close;
            };
            let Some(sasl) = rt.sasl.as_deref() else {
                let resp = handshake_response(ResponseError::IllegalSaslState.code(), None);
                return ready(encode(cid, version, &resp));
            };
            if auth.mechanism.is_some() {
                // A second handshake in the middle of an exchange.
                let resp = handshake_response(ResponseError::IllegalSaslState.code(), Some(sasl));
                return then_close(ready(encode(cid, version, &resp)));
            }
            match Mechanism::from_name(req.mechanism.as_str()).filter(|m| sasl.enabled(*m)) {
                Some(m) => {
                    auth.mechanism = Some(m);
                    auth.scram = None;
                    auth.raw = version == 0;
                    ready(encode(cid, version, &handshake_response(0, Some(sasl))))
                }
                None => {
                    info!(
                        peer = %session.peer,
                        mechanism = %req.mechanism.as_str(),
                        "SASL mechanism not enabled"
                    );
                    let resp = handshake_response(
                        ResponseError::UnsupportedSaslMechanism.code(),
                        Some(sasl),
                    );
                    // Answered, then closed: the client cannot go on without a mechanism.
                    then_close(ready(encode(cid, version, &resp)))
                }
            }
        }
        ApiKey::SaslAuthenticate => {
            let Ok(req) = SaslAuthenticateRequest::decode(&mut body, version) else {
                broker.metrics.bad_requests.inc();
                return Reply::Close;
            };
            let (Some(sasl), Some(mechanism)) = (rt.sasl.as_deref(), auth.mechanism) else {
                let resp = auth_response(
                    ResponseError::IllegalSaslState.code(),
                    Some("SaslAuthenticate before a SaslHandshake"),
                    Vec::new(),
                );
                let reply = ready(encode(cid, version, &resp));
                return if rt.sasl.is_none() {
                    reply
                } else {
                    then_close(reply)
                };
            };
            let outcome = step(broker, sasl, auth, session, mechanism, &req.auth_bytes).await;
            match outcome {
                Ok(Step::Continue(bytes)) => {
                    ready(encode(cid, version, &auth_response(0, None, bytes)))
                }
                Ok(Step::Done(principal, bytes)) => {
                    if auth
                        .authenticated
                        .as_ref()
                        .is_some_and(|before| *before != principal)
                    {
                        warn!(peer = %session.peer, "re-authentication as another principal; closing");
                        return fail(broker, sasl, session, cid, version, mechanism);
                    }
                    broker.metrics.sasl_result(mechanism.name(), true);
                    auth.mechanism = None;
                    auth.scram = None;
                    let lifetime = sasl.reauth.unwrap_or(Duration::ZERO);
                    auth.expires = sasl.reauth.map(|d| Instant::now() + d);
                    session.principal = principal.clone();
                    auth.authenticated = Some(principal);
                    let mut resp = auth_response(0, None, bytes);
                    resp.session_lifetime_ms =
                        i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
                    ready(encode(cid, version, &resp))
                }
                Err(e) => {
                    info!(peer = %session.peer, %mechanism, error = %e, "SASL authentication failed");
                    fail(broker, sasl, session, cid, version, mechanism)
                }
            }
        }
        _ => Reply::Close,
    }
}

/// Answers a bare SASL token (after a v0 SaslHandshake) with a bare token. A failure closes
/// the connection after the configured delay: v0 has no way to say why.
pub async fn handle_raw(
    broker: &Broker,
    rt: &ListenerRuntime,
    auth: &mut ConnAuth,
    session: &mut Session,
    token: Bytes,
) -> Reply {
    let (Some(sasl), Some(mechanism)) = (rt.sasl.as_deref(), auth.mechanism) else {
        return Reply::Close;
    };
    match step(broker, sasl, auth, session, mechanism, &token).await {
        Ok(Step::Continue(bytes)) => Reply::Ready(Bytes::from(bytes)),
        Ok(Step::Done(principal, bytes)) => {
            if auth
                .authenticated
                .as_ref()
                .is_some_and(|before| *before != principal)
            {
                return Reply::Close;
            }
            broker.metrics.sasl_result(mechanism.name(), true);
            auth.mechanism = None;
            auth.scram = None;
            auth.raw = false;
            auth.expires = sasl.reauth.map(|d| Instant::now() + d);
            session.principal = principal.clone();
            auth.authenticated = Some(principal);
            Reply::Ready(Bytes::from(bytes))
        }
        Err(e) => {
            info!(peer = %session.peer, %mechanism, error = %e, "SASL authentication failed");
            broker.metrics.sasl_result(mechanism.name(), false);
            sasl.limiter.failed(&session.peer, Instant::now());
            let delay = sasl.failed_delay;
            Reply::Later(Box::pin(async move {
                tokio::time::sleep(delay).await;
                None
            }))
        }
    }
}

/// Answers SASL_AUTHENTICATION_FAILED after the configured delay, counts the failure against
/// the address, and closes the connection after the answer.
fn fail(
    broker: &Broker,
    sasl: &SaslSettings,
    session: &Session,
    cid: i32,
    version: i16,
    mechanism: Mechanism,
) -> Reply {
    broker.metrics.sasl_result(mechanism.name(), false);
    sasl.limiter.failed(&session.peer, Instant::now());
    let resp = auth_response(
        ResponseError::SaslAuthenticationFailed.code(),
        Some(FAILED),
        Vec::new(),
    );
    let delay = sasl.failed_delay;
    match encode(cid, version, &resp) {
        Some(b) => then_close(Reply::Later(Box::pin(async move {
            tokio::time::sleep(delay).await;
            Some(b)
        }))),
        None => Reply::Close,
    }
}

fn then_close(reply: Reply) -> Reply {
    match reply {
        Reply::Close => Reply::Close,
        r => Reply::ThenClose(Box::new(r)),
    }
}

enum Step {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as this principal; send these bytes.
    Done(String, Vec<u8>),
}

async fn step(
    broker: &Broker,
    sasl: &SaslSettings,
    auth: &mut ConnAuth,
    session: &Session,
    mechanism: Mechanism,
    bytes: &[u8],
) -> Result<Step, AuthError> {
    if auth.scram.is_none() && !sasl.limiter.allowed(&session.peer, Instant::now()) {
        return Err(AuthError::Unsupported(
            "too many failed authentications from this address".into(),
        ));
    }
    match mechanism {
        Mechanism::Plain => {
            let (user, password) = sediment_auth::plain::parse(bytes)?;
            let ok = match &sasl.plain_file {
                Some(file) => file.check(&user, &password),
                None => plain_against_scram(broker, &user, &password).await?,
            };
            if ok {
                Ok(Step::Done(format!("User:{user}"), Vec::new()))
            } else {
                Err(AuthError::BadCredentials)
            }
        }
        Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
            let hash = mechanism
                .scram_hash()
                .ok_or_else(|| AuthError::Unsupported("not SCRAM".into()))?;
            match auth.scram.take() {
                None => {
                    let first = scram::parse_client_first(bytes)?;
                    let credential = stored(broker, &first.user, mechanism).await?;
                    let exchange = ServerExchange::new(hash, first, credential, &sasl.secret);
                    let reply = exchange.server_first().to_vec();
                    auth.scram = Some(exchange);
                    Ok(Step::Continue(reply))
                }
                Some(exchange) => {
                    let user = exchange.user().to_string();
                    let server_final = exchange.finish(bytes)?;
                    Ok(Step::Done(format!("User:{user}"), server_final))
                }
            }
        }
    }
}

/// The stored SCRAM credential of `user`, if any. A store failure is not the client's fault,
/// but it still cannot authenticate: it is logged and reported as a failed authentication.
async fn stored(
    broker: &Broker,
    user: &str,
    mechanism: Mechanism,
) -> Result<Option<Credential>, AuthError> {
    match broker.meta.user_credential(user, mechanism.name()).await {
        Ok(None) => Ok(None),
        Ok(Some(text)) => match Credential::decode(&text) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                warn!(user, %mechanism, error = %e, "stored credential does not decode");
                Ok(None)
            }
        },
        Err(e) => {
            warn!(user, error = %e, "reading a credential from the metadata store failed");
            Err(AuthError::Unsupported(
                "credential store unavailable".into(),
            ))
        }
    }
}

/// PLAIN without a password file: the password must match one of the user's SCRAM credentials.
async fn plain_against_scram(
    broker: &Broker,
    user: &str,
    password: &str,
) -> Result<bool, AuthError> {
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        if let (Some(cred), Some(hash)) = (
            stored(broker, user, mechanism).await?,
            mechanism.scram_hash(),
        ) {
            let password = password.to_string();
            // PBKDF2 with thousands of rounds: off the async workers.
            let ok = tokio::task::spawn_blocking(move || cred.matches_password(hash, &password))
                .await
                .unwrap_or(false);
            return Ok(ok);
        }
    }
    Ok(false)
}
