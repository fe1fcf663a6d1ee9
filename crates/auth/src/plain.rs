//! SASL PLAIN (RFC 4616): one message, `[authzid] NUL authcid NUL passwd`.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use crate::AuthError;

/// The user and password of a PLAIN message. An authorization id, if given, must be the user
/// (Kafka allows nothing else).
pub fn parse(msg: &[u8]) -> Result<(String, String), AuthError> {
    let msg = std::str::from_utf8(msg).map_err(|_| AuthError::Malformed("not UTF-8".into()))?;
    let mut parts = msg.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "PLAIN wants authzid NUL user NUL password".into(),
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(AuthError::Malformed("empty user or password".into()));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthError::Unsupported(
            "an authorization id other than the user".into(),
        ));
    }
    Ok((user.to_string(), password.to_string()))
}

/// Users and passwords for PLAIN from a file: one `user:password` per line (split at the first
/// `:`), blank lines and lines starting with `#` ignored.
#[derive(Default)]
pub struct PasswordFile {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish()
    }
}

impl PasswordFile {
    /// Parses the file's text; the error names the first bad line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(format!("line {}: expected user:password", n + 1));
            };
            if user.is_empty() || password.is_empty() {
                return Err(format!("line {}: empty user or password", n + 1));
            }
            if users
                .insert(user.to_string(), password.to_string())
                .is_some()
            {
                return Err(format!("line {}: user {user:?} listed twice", n + 1));
            }
        }
        Ok(PasswordFile { users })
    }

    /// Whether the file lists `user`.
    pub fn has(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether `user` is listed with `password` (constant-time in the password).
    pub fn check(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(p) => bool::from(p.as_bytes().ct_eq(password.as_bytes())),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_messages() {
        assert_eq!(
            parse(b"\0alice\0secret").unwrap(),
            ("alice".into(), "secret".into())
        );
        assert_eq!(
            parse(b"alice\0alice\0pw:with\0").err(),
            Some(AuthError::Malformed(
                "PLAIN wants authzid NUL user NUL password".into()
            ))
        );
        assert!(matches!(
            parse(b"bob\0alice\0pw"),
            Err(AuthError::Unsupported(_))
        ));
        for bad in [
            &b""[..],
            b"\0\0",
            b"\0a\0",
            b"\0\0pw",
            b"a\0b",
            b"\xff\0a\0b",
        ] {
            assert!(
                matches!(parse(bad), Err(AuthError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn password_files() {
        let f = PasswordFile::parse("# users\nalice:pa:ss\n\nbob:x\r\n").unwrap();
        assert!(f.check("alice", "pa:ss"));
        assert!(f.check("bob", "x"));
        assert!(!f.check("bob", "y"));
        assert!(!f.check("carol", "x"));
        assert!(f.has("alice") && !f.has("carol"));
        assert_eq!(
            PasswordFile::parse("a:b\nnocolon\n").err().unwrap(),
            "line 2: expected user:password"
        );
        assert!(PasswordFile::parse("a:b\na:c").is_err());
        assert!(PasswordFile::parse(":b").is_err());
    }
}
