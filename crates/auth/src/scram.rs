//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka speaks it: no channel
//! binding, the password taken as its UTF-8 bytes, credentials kept as salt, iteration count,
//! StoredKey and ServerKey (never the password or the salted password).
//!
//! The server side is [`parse_client_first`] then [`ServerExchange`]; the client side
//! ([`ClientExchange`]) is for the CLI and for brokers authenticating to each other.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Fewest iterations Kafka accepts for a SCRAM credential.
pub const MIN_ITERATIONS: u32 = 4096;
/// Most iterations Kafka accepts for a SCRAM credential (KIP-554).
pub const MAX_ITERATIONS: u32 = 16384;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        macro_rules! mac {
            ($h:ty) => {{
                // HMAC takes keys of any length, so this cannot fail.
                let mut m = <Hmac<$h> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Hash::Sha256 => mac!(Sha256),
            Hash::Sha512 => mac!(Sha512),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, iterations) of RFC 5802: PBKDF2 with this hash's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Hash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }

    /// Salt length used for new credentials.
    fn salt_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }
}

/// What the server keeps of a user's password for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are password equivalents for a replay against this server: never logged.
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(hash: Hash, salted: &[u8], salt: &[u8], iterations: u32) -> Self {
        let client_key = hash.hmac(salted, &[b"Client Key"]);
        Credential {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(salted, &[b"Server Key"]),
        }
    }

    /// The credential for a password with the given salt.
    pub fn from_password(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        Self::from_salted_password(hash, &salted, salt, iterations)
    }

    /// A new random salt of the usual length for `hash`.
    pub fn random_salt(hash: Hash) -> Vec<u8> {
        let mut salt = vec![0u8; hash.salt_len()];
        rand::rng().fill(&mut salt[..]);
        salt
    }

    /// Whether `password` is the one this credential was made from (PLAIN against a SCRAM
    /// credential). Constant time in the comparison.
    pub fn matches_password(&self, hash: Hash, password: &str) -> bool {
        let other = Self::from_password(hash, password, &self.salt, self.iterations);
        bool::from(other.stored_key.ct_eq(&self.stored_key))
    }

    /// Kafka's text form: `salt=…,stored_key=…,server_key=…,iterations=…` (base64 values).
    pub fn encode(&self) -> String {
        format!(
            "salt={},stored_key={},server_key={},iterations={}",
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key),
            self.iterations
        )
    }

    /// Reads [`Credential::encode`]'s form.
    pub fn decode(text: &str) -> Result<Self, String> {
        let (mut salt, mut stored, mut server, mut iterations) = (None, None, None, None);
        for part in text.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("credential field {part:?} has no value"))?;
            let bytes = || {
                B64.decode(v)
                    .map_err(|e| format!("credential field {k}: {e}"))
            };
            match k {
                "salt" => salt = Some(bytes()?),
                "stored_key" => stored = Some(bytes()?),
                "server_key" => server = Some(bytes()?),
                "iterations" => {
                    iterations = Some(v.parse::<u32>().map_err(|e| format!("iterations: {e}"))?)
                }
                _ => return Err(format!("unknown credential field {k:?}")),
            }
        }
        match (salt, stored, server, iterations) {
            (Some(salt), Some(stored_key), Some(server_key), Some(iterations)) => Ok(Credential {
                salt,
                iterations,
                stored_key,
                server_key,
            }),
            _ => Err("credential lacks salt, stored_key, server_key or iterations".into()),
        }
    }
}

/// The client's first message, parsed.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The user (saslname decoded).
    pub user: String,
    nonce: String,
    /// client-first-message-bare, as sent (part of the signed AuthMessage).
    bare: String,
    /// The GS2 header, which the client repeats (base64) in its final message.
    gs2_header: String,
}

fn malformed(what: impl Into<String>) -> AuthError {
    AuthError::Malformed(what.into())
}

/// Decodes a saslname: `=2C` is `,`, `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(s: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes a user name as a saslname (the inverse of the decoding above).
fn encode_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Parses client-first-message (RFC 5802 section 7).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, AuthError> {
    let msg = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = msg.splitn(3, ',');
    let cbind = parts.next().unwrap_or_default();
    let authzid_raw = parts.next().ok_or_else(|| malformed("no GS2 header"))?;
    let bare = parts.next().ok_or_else(|| malformed("no GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => {
            return Err(AuthError::Unsupported("channel binding".into()));
        }
        _ => return Err(malformed("bad channel-binding flag")),
    }
    let authzid = match authzid_raw {
        "" => None,
        a => Some(decode_saslname(
            a.strip_prefix("a=")
                .ok_or_else(|| malformed("bad authorization id"))?,
        )?),
    };
    let mut attrs = bare.split(',');
    let user = match attrs.next() {
        Some(m) if m.starts_with("m=") => {
            return Err(AuthError::Unsupported("mandatory extension".into()))
        }
        Some(n) => decode_saslname(n.strip_prefix("n=").ok_or_else(|| malformed("no user"))?)?,
        None => return Err(malformed("no user")),
    };
    let nonce = attrs
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .filter(|r| printable_nonce(r))
        .ok_or_else(|| malformed("no nonce"))?;
    for ext in attrs {
        // Kafka's only extension is tokenauth (delegation tokens), which this broker lacks.
        let (k, v) = ext.split_once('=').unwrap_or((ext, ""));
        if k == "tokenauth" && v.eq_ignore_ascii_case("true") {
            return Err(AuthError::Unsupported("delegation tokens".into()));
        }
    }
    if user.is_empty() {
        return Err(malformed("empty user"));
    }
    if authzid.as_ref().is_some_and(|a| *a != user) {
        return Err(AuthError::Unsupported(
            "an authorization id other than the user".into(),
        ));
    }
    Ok(ClientFirst {
        user,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
        gs2_header: format!("{cbind},{authzid_raw},"),
    })
}

fn new_nonce() -> String {
    let mut raw = [0u8; 24];
    rand::rng().fill(&mut raw[..]);
    B64.encode(raw)
}

/// The server's half of one exchange, after the client's first message.
pub struct ServerExchange {
    hash: Hash,
    first: ClientFirst,
    server_first: String,
    nonce: String,
    credential: Credential,
    /// `false` when the user is unknown: the exchange runs with a made-up credential and
    /// fails at the proof, exactly as a wrong password does.
    known: bool,
}

impl ServerExchange {
    /// Starts an exchange for `first` with the user's stored credential (`None`: no such user).
    /// `secret` seeds the made-up salt of unknown users, so that asking twice about the same
    /// unknown user gives the same salt, as for a real one.
    pub fn new(
        hash: Hash,
        first: ClientFirst,
        credential: Option<Credential>,
        secret: &[u8],
    ) -> Self {
        let known = credential.is_some();
        let credential = credential.unwrap_or_else(|| {
            let mut salt = hash.hmac(secret, &[b"unknown user salt", first.user.as_bytes()]);
            salt.truncate(hash.salt_len());
            let mut junk = vec![0u8; hash.salt_len()];
            rand::rng().fill(&mut junk[..]);
            Credential {
                salt,
                iterations: MIN_ITERATIONS,
                stored_key: junk.clone(),
                server_key: junk,
            }
        });
        let nonce = format!("{}{}", first.nonce, new_nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        ServerExchange {
            hash,
            first,
            server_first,
            nonce,
            credential,
            known,
        }
    }

    /// The user the client claims to be.
    pub fn user(&self) -> &str {
        &self.first.user
    }

    /// server-first-message.
    pub fn server_first(&self) -> &[u8] {
        self.server_first.as_bytes()
    }

    /// Checks client-final-message; on success, server-final-message (the server's proof).
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, AuthError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(|| malformed("no channel binding"))?;
        let binding = B64
            .decode(binding)
            .map_err(|_| malformed("bad channel binding"))?;
        if binding != self.first.gs2_header.as_bytes() {
            return Err(malformed("channel binding does not match"));
        }
        let nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(|| malformed("no nonce"))?;
        // librdkafka 2.0.2 (Debian 12's kcat) echoes its own nonce in front of the combined one,
        // which Kafka brokers long accepted (they checked only that the nonce ends with the
        // server's). That one form is accepted besides the exact nonce; the proof covers the
        // message as sent either way.
        let doubled = nonce
            .strip_prefix(self.first.nonce.as_str())
            .is_some_and(|rest| rest == self.nonce);
        if nonce != self.nonce && !doubled {
            return Err(malformed("nonce does not match"));
        }
        let proof = B64.decode(proof).map_err(|_| malformed("bad proof"))?;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let signature = self
            .hash
            .hmac(&self.credential.stored_key, &[auth_message.as_bytes()]);
        if proof.len() != signature.len() {
            return Err(AuthError::BadCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let matches = bool::from(
            self.hash
                .digest(&client_key)
                .ct_eq(&self.credential.stored_key),
        );
        if !matches || !self.known {
            return Err(AuthError::BadCredentials);
        }
        let server_signature = self
            .hash
            .hmac(&self.credential.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client's half of one exchange.
pub struct ClientExchange {
    hash: Hash,
    password: String,
    bare: String,
    nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    /// Starts an exchange as `user`; [`ClientExchange::first`] is the message to send.
    pub fn new(hash: Hash, user: &str, password: &str) -> Self {
        Self::with_nonce(hash, user, password, &new_nonce())
    }

    fn with_nonce(hash: Hash, user: &str, password: &str, nonce: &str) -> Self {
        ClientExchange {
            hash,
            password: password.to_string(),
            bare: format!("n={},r={nonce}", encode_saslname(user)),
            nonce: nonce.to_string(),
            expected_server_signature: None,
        }
    }

    /// client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare).into_bytes()
    }

    /// Answers server-first-message with client-final-message.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let sf = std::str::from_utf8(server_first).map_err(|_| malformed("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in sf.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = B64.decode(v).ok(),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                Some(("e=", v)) => return Err(malformed(format!("server error {v}"))),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(malformed("server-first-message lacks r, s or i"));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(malformed("server nonce does not extend ours"));
        }
        if iterations < MIN_ITERATIONS {
            return Err(malformed("iteration count below the minimum"));
        }
        let salted = self
            .hash
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{sf},{without_proof}", self.bare);
        let client_key = self.hash.hmac(&salted, &[b"Client Key"]);
        let stored_key = self.hash.digest(&client_key);
        let signature = self.hash.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hash.hmac(&salted, &[b"Server Key"]);
        self.expected_server_signature =
            Some(self.hash.hmac(&server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final-message: the server knew the credential too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let sf = std::str::from_utf8(server_final).map_err(|_| malformed("not UTF-8"))?;
        let got = sf
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| malformed("server-final-message has no verifier"))?;
        match &self.expected_server_signature {
            Some(want) if bool::from(want.ct_eq(&got)) => Ok(()),
            _ => Err(AuthError::BadCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's example, run through both halves.
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::from_password(Hash::Sha256, "pencil", &salt, 4096);
        let mut client =
            ClientExchange::with_nonce(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let first = parse_client_first(&client.first()).unwrap();
        assert_eq!(first.user, "user");
        let mut server = ServerExchange::new(Hash::Sha256, first, Some(cred), b"k");
        // Replay the RFC's server nonce so the proof can be compared with the RFC's.
        server.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        server.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", server.nonce);
        let fin = client.answer(server.server_first()).unwrap();
        assert_eq!(
            std::str::from_utf8(&fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_final = server.finish(&fin).unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        client.verify(&server_final).unwrap();
    }

    fn run(hash: Hash, stored_pw: Option<&str>, user: &str, pw: &str) -> Result<(), AuthError> {
        let cred = stored_pw.map(|p| Credential::from_password(hash, p, b"salty", 4096));
        let mut client = ClientExchange::new(hash, user, pw);
        let first = parse_client_first(&client.first())?;
        let server = ServerExchange::new(hash, first, cred, b"secret");
        let fin = client.answer(server.server_first())?;
        let server_final = server.finish(&fin)?;
        client.verify(&server_final)
    }

    #[test]
    fn sha512_round_trip_and_failures_look_alike() {
        run(Hash::Sha512, Some("pw"), "alice", "pw").unwrap();
        run(Hash::Sha256, Some("pw"), "a,b=c", "pw").unwrap();
        assert_eq!(
            run(Hash::Sha512, Some("pw"), "alice", "wrong"),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            run(Hash::Sha512, None, "nobody", "pw"),
            Err(AuthError::BadCredentials)
        );
        // An unknown user cannot pass even with a proof made for the fake credential.
        let first = parse_client_first(b"n,,n=ghost,r=abc").unwrap();
        let server = ServerExchange::new(Hash::Sha256, first, None, b"secret");
        let fake = server.credential.clone();
        let auth = format!(
            "n=ghost,r=abc,{},c=biws,r={}",
            server.server_first, server.nonce
        );
        let sig = Hash::Sha256.hmac(&fake.stored_key, &[auth.as_bytes()]);
        // Any proof: the check must refuse unknown users whatever the math says.
        let proof: Vec<u8> = sig.iter().map(|b| b ^ 1).collect();
        let fin = format!("c=biws,r={},p={}", server.nonce, B64.encode(proof));
        assert_eq!(
            server.finish(fin.as_bytes()),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn unknown_users_get_a_stable_salt() {
        let salt_of = |user: &str| {
            let first = parse_client_first(format!("n,,n={user},r=x").as_bytes()).unwrap();
            let s = ServerExchange::new(Hash::Sha256, first, None, b"secret");
            s.server_first.split(',').nth(1).unwrap().to_string()
        };
        assert_eq!(salt_of("ghost"), salt_of("ghost"));
        assert_ne!(salt_of("ghost"), salt_of("spook"));
    }

    #[test]
    fn bad_client_messages_are_refused() {
        for bad in [
            &b""[..],
            b"n,,",
            b"x,,n=a,r=b",
            b"n,,r=b",
            b"n,,n=a",
            b"n,,n=a,r=",
            b"n,,n=a=zz,r=b",
            b"n,,n=,r=b",
            b"\xff,,n=a,r=b",
        ] {
            assert!(
                matches!(parse_client_first(bad), Err(AuthError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for unsupported in [
            &b"p=tls-unique,,n=a,r=b"[..],
            b"n,,m=ext,n=a,r=b",
            b"n,,n=a,r=b,tokenauth=true",
            b"n,a=bob,n=alice,r=b",
        ] {
            assert!(matches!(
                parse_client_first(unsupported),
                Err(AuthError::Unsupported(_))
            ));
        }
        assert!(parse_client_first(b"n,a=alice,n=alice,r=b").is_ok());
        let first = parse_client_first(b"n,,n=a,r=b").unwrap();
        let cred = Credential::from_password(Hash::Sha256, "pw", b"s", 4096);
        let server = ServerExchange::new(Hash::Sha256, first.clone(), Some(cred.clone()), b"k");
        let nonce = server.nonce.clone();
        for bad in [
            "".to_string(),
            format!("c=biws,r={nonce}"),
            format!("c=eSws,r={nonce},p=AAAA"),
            "c=biws,r=other,p=AAAA".to_string(),
            format!("c=biws,r={nonce},p=!!"),
        ] {
            let s = ServerExchange::new(Hash::Sha256, first.clone(), Some(cred.clone()), b"k");
            let mut s = s;
            s.nonce = nonce.clone();
            assert!(
                matches!(s.finish(bad.as_bytes()), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
        let fin = format!("c=biws,r={nonce},p=AAAA");
        assert_eq!(
            server.finish(fin.as_bytes()),
            Err(AuthError::BadCredentials)
        );
        // The doubled client nonce librdkafka 2.0.2 sends is the only other form taken.
        for (prefix, ok) in [("b", true), ("x", false), ("bb", false)] {
            let s = ServerExchange::new(Hash::Sha256, first.clone(), Some(cred.clone()), b"k");
            let fin = format!("c=biws,r={prefix}{},p=AAAA", s.nonce);
            let got = s.finish(fin.as_bytes());
            if ok {
                assert_eq!(got, Err(AuthError::BadCredentials), "{prefix}");
            } else {
                assert!(matches!(got, Err(AuthError::Malformed(_))), "{prefix}");
            }
        }
    }

    #[test]
    fn credentials_round_trip_their_text_form() {
        let c = Credential::from_password(Hash::Sha512, "pw", b"salt", 8192);
        let text = c.encode();
        assert!(text.starts_with("salt=c2FsdA==,stored_key="), "{text}");
        assert!(text.ends_with(",iterations=8192"), "{text}");
        assert_eq!(Credential::decode(&text).unwrap(), c);
        assert!(c.matches_password(Hash::Sha512, "pw"));
        assert!(!c.matches_password(Hash::Sha512, "pW"));
        for bad in [
            "",
            "salt=!!",
            "salt=AA==,stored_key=AA==,server_key=AA==",
            "x=1",
        ] {
            assert!(Credential::decode(bad).is_err(), "{bad}");
        }
        assert!(!format!("{c:?}").contains(&B64.encode(&c.stored_key)));
    }
}
