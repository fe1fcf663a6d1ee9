//! The authorizer in the broker: ACLs from the metadata store, kept in memory and read again
//! every second (so ACLs changed through another broker of a cluster apply within that), and
//! the checks handlers make.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sediment_auth::acl::{self, Acls, Binding};
use tracing::warn;

use crate::security::Session;
use crate::Broker;

/// How often a broker reads the ACLs again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The authorizer's settings (Kafka's `super.users`, `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default)]
pub struct AuthorizerConfig {
    pub super_users: HashSet<String>,
    pub allow_if_no_acl: bool,
}

/// The ACLs in force.
pub struct Authorizer {
    config: AuthorizerConfig,
    current: RwLock<Arc<Acls>>,
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Self {
        let acls = Acls::new(
            Vec::new(),
            config.super_users.clone(),
            config.allow_if_no_acl,
        );
        Authorizer {
            config,
            current: RwLock::new(Arc::new(acls)),
        }
    }

    pub fn acls(&self) -> Arc<Acls> {
        match self.current.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the ACLs with the stored ones. A stored ACL that does not decode is skipped
    /// (and logged): it grants nothing, and denies nothing either.
    pub fn load(&self, stored: &[String]) {
        let mut bindings = Vec::with_capacity(stored.len());
        for text in stored {
            match Binding::decode(text) {
                Ok(b) => bindings.push(b),
                Err(e) => warn!(acl = %text, error = %e, "stored ACL does not decode; ignored"),
            }
        }
        let acls = Acls::new(
            bindings,
            self.config.super_users.clone(),
            self.config.allow_if_no_acl,
        );
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(acls);
        }
    }
}

impl Broker {
    /// Whether the session may do `operation` on the resource; always with no authorizer.
    pub fn authorized(&self, s: &Session, operation: i8, resource_type: i8, name: &str) -> bool {
        match &self.authorizer {
            None => true,
            Some(a) => a
                .acls()
                .authorize(&s.principal, &s.peer, operation, resource_type, name),
        }
    }

    /// On the cluster resource.
    pub fn authorized_cluster(&self, s: &Session, operation: i8) -> bool {
        self.authorized(s, operation, acl::resource::CLUSTER, acl::CLUSTER_NAME)
    }

    /// On a topic.
    pub fn authorized_topic(&self, s: &Session, operation: i8, topic: &str) -> bool {
        self.authorized(s, operation, acl::resource::TOPIC, topic)
    }

    /// On a group.
    pub fn authorized_group(&self, s: &Session, operation: i8, group: &str) -> bool {
        self.authorized(s, operation, acl::resource::GROUP, group)
    }

    /// Whether the session may create topic `name`: CREATE on the cluster or on the topic.
    pub fn may_create_topic(&self, s: &Session, name: &str) -> bool {
        self.authorized_cluster(s, acl::op::CREATE)
            || self.authorized_topic(s, acl::op::CREATE, name)
    }

    /// Reads the ACLs from the metadata store into the authorizer.
    pub async fn reload_acls(&self) {
        let Some(a) = &self.authorizer else { return };
        match self.meta.acls().await {
            Ok(stored) => a.load(&stored),
            Err(e) => warn!(error = %e, "reading ACLs failed; keeping the ones in force"),
        }
    }

    /// Keeps the ACLs current until shutdown.
    pub async fn run_acl_refresh(self: Arc<Self>) {
        let mut stop = self.shutdown_signal();
        loop {
            tokio::select! {
                _ = crate::wait_stopped(&mut stop) => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
            self.reload_acls().await;
        }
    }
}
