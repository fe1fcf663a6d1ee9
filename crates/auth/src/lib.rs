//! Who a Kafka connection is: the SASL mechanisms the broker accepts (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512) and the principal of a TLS client certificate.
//!
//! Everything here is pure: messages in, messages and decisions out. Reading credentials from
//! the metadata store, timing out and closing connections is the broker's job.

pub mod acl;
pub mod plain;
pub mod principal;
pub mod scram;

/// A SASL mechanism the broker implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// Every mechanism, in the order brokers list them.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    /// The IANA name clients send in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` (exact, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash of a SCRAM mechanism.
    pub fn scram_hash(self) -> Option<scram::Hash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(scram::Hash::Sha256),
            Mechanism::ScramSha512 => Some(scram::Hash::Sha512),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an authentication step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client's message does not follow the mechanism's grammar.
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    /// Something the mechanism allows but this broker does not do (channel binding,
    /// delegation tokens, an authorization id other than the user).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Unknown user or wrong password: deliberately one case, so nobody learns which.
    #[error("invalid credentials")]
    BadCredentials,
}
