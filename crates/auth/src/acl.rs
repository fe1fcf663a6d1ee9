//! Kafka's ACL model: bindings of (resource pattern, principal, host, operation, allow/deny),
//! and the decision Kafka's standard authorizer makes from them.
//!
//! The rules, as Kafka's `AclAuthorizer`/`StandardAuthorizer` apply them:
//! - a super user may do everything;
//! - the bindings that apply to a resource are its literal name, the literal wildcard `*`, and
//!   every prefixed pattern the name starts with;
//! - no binding applies to the resource at all: `allow.everyone.if.no.acl.found` decides;
//! - a DENY of the operation (or ALL) for the principal (or `User:*`) and host (or `*`) wins;
//! - else an ALLOW of the operation or ALL allows, where READ, WRITE, DELETE and ALTER imply
//!   DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! - else the operation is denied.

use std::collections::HashSet;

/// Kafka's resource type codes.
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
}

/// Kafka's pattern type codes.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's ACL operation codes.
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
}

/// Kafka's permission type codes.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The one name a cluster resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal name that matches every resource of its type.
pub const WILDCARD: &str = "*";

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

impl Binding {
    /// Checks a binding a client asks to create; the error is Kafka's message for it.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(
            self.resource_type,
            resource::TOPIC | resource::GROUP | resource::CLUSTER | resource::TRANSACTIONAL_ID
        ) {
            return Err(format!(
                "resource type {} is not supported",
                self.resource_type
            ));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Err("the pattern type must be LITERAL or PREFIXED".into());
        }
        if self.resource_name.is_empty() {
            return Err("the resource name must not be empty".into());
        }
        if self.pattern_type == pattern::PREFIXED && self.resource_name == WILDCARD {
            return Err("a PREFIXED pattern cannot be the wildcard *".into());
        }
        if self.resource_type == resource::CLUSTER
            && !(self.resource_name == CLUSTER_NAME && self.pattern_type == pattern::LITERAL)
        {
            return Err(format!(
                "the cluster resource is the literal name {CLUSTER_NAME}"
            ));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Err("the principal must be in the form Type:Name".into()),
        }
        if self.host.is_empty() {
            return Err("the host must not be empty (* for any)".into());
        }
        if !(op::ALL..=op::IDEMPOTENT_WRITE).contains(&self.operation) {
            return Err(format!(
                "operation {} is not valid in an ACL",
                self.operation
            ));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Err("the permission must be ALLOW or DENY".into());
        }
        Ok(())
    }

    /// Whether this binding's pattern covers resource `name` of its type.
    fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
            pattern::PREFIXED => name.starts_with(&self.resource_name),
            _ => false,
        }
    }

    /// A stable text form (for storage keys): the fields joined by a separator no field can
    /// hold unescaped.
    pub fn encode(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t");
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.resource_type,
            esc(&self.resource_name),
            self.pattern_type,
            esc(&self.principal),
            esc(&self.host),
            self.operation,
            self.permission
        )
    }

    /// Reads [`Binding::encode`]'s form.
    pub fn decode(text: &str) -> Result<Self, String> {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('t') => cur.push('\t'),
                    Some('\\') => cur.push('\\'),
                    _ => return Err("bad escape in a stored ACL".into()),
                },
                '\t' => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        let [rt, name, pt, principal, host, operation, perm]: [String; 7] = fields
            .try_into()
            .map_err(|_| "a stored ACL does not have 7 fields".to_string())?;
        let num = |s: &str| s.parse::<i8>().map_err(|e| format!("stored ACL: {e}"));
        Ok(Binding {
            resource_type: num(&rt)?,
            resource_name: name,
            pattern_type: num(&pt)?,
            principal,
            host,
            operation: num(&operation)?,
            permission: num(&perm)?,
        })
    }
}

/// What DescribeAcls and DeleteAcls select. `None` fields match anything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl Filter {
    /// Whether the filter can match anything (Kafka refuses UNKNOWN codes in filters).
    pub fn validate(&self) -> Result<(), String> {
        if !(resource::ANY..=resource::TRANSACTIONAL_ID).contains(&self.resource_type)
            && self.resource_type != 6
            && self.resource_type != 7
        {
            return Err(format!("unknown resource type {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Err(format!("unknown pattern type {}", self.pattern_type));
        }
        if !(op::ANY..=14).contains(&self.operation) {
            return Err(format!("unknown operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Err(format!("unknown permission type {}", self.permission));
        }
        Ok(())
    }

    pub fn matches(&self, b: &Binding) -> bool {
        let any = |code: i8, any_code: i8, v: i8| code == any_code || code == v;
        if !any(self.resource_type, resource::ANY, b.resource_type)
            || !any(self.operation, op::ANY, b.operation)
            || !any(self.permission, permission::ANY, b.permission)
        {
            return false;
        }
        if self.principal.as_ref().is_some_and(|p| *p != b.principal)
            || self.host.as_ref().is_some_and(|h| *h != b.host)
        {
            return false;
        }
        match self.pattern_type {
            pattern::MATCH => match &self.resource_name {
                // MATCH: every binding that applies to the named resource.
                Some(name) => b.covers(name),
                None => true,
            },
            pattern::ANY => self
                .resource_name
                .as_ref()
                .is_none_or(|n| *n == b.resource_name),
            pt => {
                pt == b.pattern_type
                    && self
                        .resource_name
                        .as_ref()
                        .is_none_or(|n| *n == b.resource_name)
            }
        }
    }
}

/// Everything a decision needs: the bindings and the authorizer's settings.
#[derive(Debug, Clone, Default)]
pub struct Acls {
    bindings: Vec<Binding>,
    pub super_users: HashSet<String>,
    pub allow_if_no_acl: bool,
}

impl Acls {
    pub fn new(
        bindings: Vec<Binding>,
        super_users: HashSet<String>,
        allow_if_no_acl: bool,
    ) -> Self {
        Acls {
            bindings,
            super_users,
            allow_if_no_acl,
        }
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// Whether `principal` connecting from `host` may do `operation` on the resource.
    pub fn authorize(
        &self,
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        if self.super_users.contains(principal) {
            return true;
        }
        let mut any_for_resource = false;
        let mut allowed = false;
        let implied: &[i8] = match operation {
            op::DESCRIBE => &[op::DESCRIBE, op::READ, op::WRITE, op::DELETE, op::ALTER],
            op::DESCRIBE_CONFIGS => &[op::DESCRIBE_CONFIGS, op::ALTER_CONFIGS],
            _ => std::slice::from_ref(&operation),
        };
        for b in &self.bindings {
            if b.resource_type != resource_type || !b.covers(name) {
                continue;
            }
            any_for_resource = true;
            let who = (b.principal == principal || b.principal == "User:*")
                && (b.host == WILDCARD || b.host == host);
            if !who {
                continue;
            }
            if b.permission == permission::DENY
                && (b.operation == operation || b.operation == op::ALL)
            {
                return false;
            }
            if b.permission == permission::ALLOW
                && (b.operation == op::ALL || implied.contains(&b.operation))
            {
                allowed = true;
            }
        }
        if !any_for_resource {
            return self.allow_if_no_acl;
        }
        allowed
    }

    /// Whether the principal may do `operation` on at least one resource of the type (Kafka's
    /// `authorizeByResourceType`, used for idempotent producers without IDEMPOTENT_WRITE on
    /// the cluster: WRITE on any topic is enough).
    pub fn authorize_any(
        &self,
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
    ) -> bool {
        if self.super_users.contains(principal) {
            return true;
        }
        let who = |b: &Binding| {
            (b.principal == principal || b.principal == "User:*")
                && (b.host == WILDCARD || b.host == host)
        };
        let matches_op = |b: &Binding| b.operation == operation || b.operation == op::ALL;
        let allows = self.bindings.iter().filter(|b| {
            b.resource_type == resource_type
                && b.permission == permission::ALLOW
                && who(b)
                && matches_op(b)
        });
        for a in allows {
            // An allow counts unless a deny of the same principal covers everything it allows.
            let denied = self.bindings.iter().any(|d| {
                d.resource_type == resource_type
                    && d.permission == permission::DENY
                    && who(d)
                    && matches_op(d)
                    && match (d.pattern_type, a.pattern_type) {
                        (pattern::LITERAL, _) if d.resource_name == WILDCARD => true,
                        (pattern::LITERAL, pattern::LITERAL) => d.resource_name == a.resource_name,
                        (pattern::PREFIXED, _) => a.resource_name.starts_with(&d.resource_name),
                        _ => false,
                    }
            });
            if !denied {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(rt: i8, name: &str, pt: i8, who: &str, host: &str, o: i8, perm: i8) -> Binding {
        Binding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: who.into(),
            host: host.into(),
            operation: o,
            permission: perm,
        }
    }

    fn allow(name: &str, pt: i8, who: &str, o: i8) -> Binding {
        b(resource::TOPIC, name, pt, who, "*", o, permission::ALLOW)
    }

    #[test]
    fn literal_prefixed_and_wildcard_patterns_apply() {
        let acls = Acls::new(
            vec![
                allow("orders", pattern::LITERAL, "User:alice", op::READ),
                allow("logs-", pattern::PREFIXED, "User:alice", op::WRITE),
                allow("*", pattern::LITERAL, "User:bob", op::DESCRIBE),
            ],
            HashSet::new(),
            false,
        );
        let t = resource::TOPIC;
        assert!(acls.authorize("User:alice", "1.2.3.4", op::READ, t, "orders"));
        assert!(!acls.authorize("User:alice", "1.2.3.4", op::WRITE, t, "orders"));
        assert!(acls.authorize("User:alice", "1.2.3.4", op::WRITE, t, "logs-app"));
        assert!(!acls.authorize("User:alice", "1.2.3.4", op::WRITE, t, "log"));
        assert!(acls.authorize("User:bob", "h", op::DESCRIBE, t, "anything"));
        assert!(!acls.authorize("User:bob", "h", op::READ, t, "orders"));
        // READ and WRITE imply DESCRIBE.
        assert!(acls.authorize("User:alice", "h", op::DESCRIBE, t, "orders"));
        assert!(acls.authorize("User:alice", "h", op::DESCRIBE, t, "logs-x"));
        // Another resource type is not covered.
        assert!(!acls.authorize("User:alice", "h", op::READ, resource::GROUP, "orders"));
    }

    #[test]
    fn deny_wins_and_hosts_filter() {
        let acls = Acls::new(
            vec![
                allow("t", pattern::LITERAL, "User:*", op::ALL),
                b(
                    resource::TOPIC,
                    "t",
                    pattern::LITERAL,
                    "User:eve",
                    "*",
                    op::WRITE,
                    permission::DENY,
                ),
                b(
                    resource::TOPIC,
                    "t",
                    pattern::LITERAL,
                    "User:mallory",
                    "10.0.0.9",
                    op::ALL,
                    permission::DENY,
                ),
            ],
            HashSet::new(),
            false,
        );
        let t = resource::TOPIC;
        assert!(acls.authorize("User:anyone", "h", op::WRITE, t, "t"));
        assert!(!acls.authorize("User:eve", "h", op::WRITE, t, "t"));
        assert!(
            acls.authorize("User:eve", "h", op::READ, t, "t"),
            "deny WRITE only"
        );
        assert!(!acls.authorize("User:mallory", "10.0.0.9", op::READ, t, "t"));
        assert!(acls.authorize("User:mallory", "10.0.0.8", op::READ, t, "t"));
    }

    #[test]
    fn no_acl_for_the_resource_and_super_users() {
        let acls = Acls::new(
            vec![allow("t", pattern::LITERAL, "User:alice", op::READ)],
            HashSet::from(["User:admin".to_string()]),
            false,
        );
        let t = resource::TOPIC;
        assert!(!acls.authorize("User:alice", "h", op::READ, t, "other"));
        assert!(acls.authorize("User:admin", "h", op::DELETE, t, "other"));
        let open = Acls::new(acls.bindings().to_vec(), HashSet::new(), true);
        assert!(
            open.authorize("User:x", "h", op::READ, t, "other"),
            "no ACL: allowed"
        );
        assert!(
            !open.authorize("User:x", "h", op::READ, t, "t"),
            "an ACL exists: denied"
        );
    }

    #[test]
    fn alter_configs_implies_describe_configs() {
        let acls = Acls::new(
            vec![allow("t", pattern::LITERAL, "User:a", op::ALTER_CONFIGS)],
            HashSet::new(),
            false,
        );
        assert!(acls.authorize("User:a", "h", op::DESCRIBE_CONFIGS, resource::TOPIC, "t"));
        assert!(!acls.authorize("User:a", "h", op::DESCRIBE, resource::TOPIC, "t"));
    }

    #[test]
    fn write_on_any_topic_allows_idempotence() {
        let acls = Acls::new(
            vec![
                allow("a", pattern::LITERAL, "User:p", op::WRITE),
                allow("b", pattern::LITERAL, "User:q", op::WRITE),
                b(
                    resource::TOPIC,
                    "*",
                    pattern::LITERAL,
                    "User:q",
                    "*",
                    op::WRITE,
                    permission::DENY,
                ),
            ],
            HashSet::new(),
            false,
        );
        assert!(acls.authorize_any("User:p", "h", op::WRITE, resource::TOPIC));
        assert!(!acls.authorize_any("User:q", "h", op::WRITE, resource::TOPIC));
        assert!(!acls.authorize_any("User:r", "h", op::WRITE, resource::TOPIC));
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let x = allow("logs-", pattern::PREFIXED, "User:a", op::READ);
        let y = allow("logs-app", pattern::LITERAL, "User:b", op::WRITE);
        let f = |name: Option<&str>, pt: i8| Filter {
            resource_type: resource::ANY,
            resource_name: name.map(str::to_string),
            pattern_type: pt,
            operation: op::ANY,
            permission: permission::ANY,
            ..Default::default()
        };
        assert!(f(None, pattern::ANY).matches(&x) && f(None, pattern::ANY).matches(&y));
        assert!(f(Some("logs-app"), pattern::MATCH).matches(&x));
        assert!(f(Some("logs-app"), pattern::MATCH).matches(&y));
        assert!(!f(Some("logs-app"), pattern::LITERAL).matches(&x));
        assert!(f(Some("logs-"), pattern::PREFIXED).matches(&x));
        let mut by_principal = f(None, pattern::ANY);
        by_principal.principal = Some("User:b".into());
        assert!(!by_principal.matches(&x) && by_principal.matches(&y));
    }

    #[test]
    fn validation_and_encoding() {
        let good = allow("a\tb\\c", pattern::LITERAL, "User:x", op::READ);
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(Binding::decode(&good.encode()), Ok(good.clone()));
        for bad in [
            Binding {
                resource_type: 7,
                ..good.clone()
            },
            Binding {
                pattern_type: pattern::MATCH,
                ..good.clone()
            },
            Binding {
                principal: "alice".into(),
                ..good.clone()
            },
            Binding {
                host: String::new(),
                ..good.clone()
            },
            Binding {
                operation: op::ANY,
                ..good.clone()
            },
            Binding {
                permission: permission::ANY,
                ..good.clone()
            },
            Binding {
                resource_name: "*".into(),
                pattern_type: pattern::PREFIXED,
                ..good.clone()
            },
            Binding {
                resource_type: resource::CLUSTER,
                resource_name: "c".into(),
                ..good.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(Binding::decode("1\t2").is_err());
    }
}
