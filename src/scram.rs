//! SASL SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677) and PLAIN, on `ring`.
//!
//! Accounts store only the salt, iteration count, StoredKey and ServerKey per
//! hash; never a password. PLAIN is verified by deriving the StoredKey from
//! the offered password. Randomness (nonces, salts) comes in as arguments.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

pub const DEFAULT_ITERATIONS: u32 = 4096;
/// The shortest password accepted for an account or the admin: a shorter
/// one falls to guessing over the network, throttle or not.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a new password is refused, if it is: every path that sets one
/// (the command line, the console, the admin page, XEP-0077) asks here.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters: a shorter one can be guessed over the network"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("a password is at most {MAX_PASSWORD_BYTES} bytes"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    pub fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha1 => "SCRAM-SHA-1",
            Hash::Sha256 => "SCRAM-SHA-256",
        }
    }
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => hmac::HMAC_SHA256,
        }
    }
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &digest::SHA256,
        }
    }
    fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }

    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        let iterations = NonZeroU32::new(iterations.max(1)).expect("nonzero");
        pbkdf2::derive(
            self.pbkdf2(),
            iterations,
            salt,
            password.as_bytes(),
            &mut out,
        );
        out
    }

    fn hmac_of(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    fn keys(self, password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = self.salted_password(password, salt, iterations);
        let client_key = self.hmac_of(&salted, b"Client Key");
        ScramKeys {
            stored_key: self.h(&client_key),
            server_key: self.hmac_of(&salted, b"Server Key"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// What an account stores: enough to verify SCRAM and PLAIN, not to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

impl Credentials {
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Credentials {
        Credentials {
            salt: salt.to_vec(),
            iterations,
            sha1: Hash::Sha1.keys(password, salt, iterations),
            sha256: Hash::Sha256.keys(password, salt, iterations),
        }
    }

    pub fn keys(&self, hash: Hash) -> &ScramKeys {
        match hash {
            Hash::Sha1 => &self.sha1,
            Hash::Sha256 => &self.sha256,
        }
    }

    pub fn verify_password(&self, password: &str) -> bool {
        let keys = Hash::Sha256.keys(password, &self.salt, self.iterations);
        constant_time_eq(&keys.stored_key, &self.sha256.stored_key)
    }
}

/// Compare secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 6120 §6.5 SASL failure conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    MalformedRequest,
    NotAuthorized,
    InvalidAuthzid,
    IncorrectEncoding,
}

impl SaslError {
    pub fn condition(self) -> &'static str {
        match self {
            SaslError::MalformedRequest => "malformed-request",
            SaslError::NotAuthorized => "not-authorized",
            SaslError::InvalidAuthzid => "invalid-authzid",
            SaslError::IncorrectEncoding => "incorrect-encoding",
        }
    }
}

/// RFC 5802 `saslname` decoding (`=2C` and `=3D`).
fn decode_saslname(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(SaslError::MalformedRequest),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A SCRAM exchange after the client's first message.
#[derive(Debug, Clone)]
pub struct ScramServer {
    hash: Hash,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    pub username: String,
    keys: Option<ScramKeys>,
}

pub struct ClientFirst {
    pub username: String,
    pub authzid: Option<String>,
}

/// Parse a client-first-message far enough to learn whom it claims to be.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, SaslError> {
    let text = std::str::from_utf8(msg).map_err(|_| SaslError::MalformedRequest)?;
    let (_, authzid, bare) = split_gs2(text)?;
    let user = bare
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("n="))
        .ok_or(SaslError::MalformedRequest)?;
    Ok(ClientFirst {
        username: decode_saslname(user)?,
        authzid,
    })
}

fn split_gs2(text: &str) -> Result<(String, Option<String>, &str), SaslError> {
    let mut parts = text.splitn(3, ',');
    let cb = parts.next().ok_or(SaslError::MalformedRequest)?;
    let authz = parts.next().ok_or(SaslError::MalformedRequest)?;
    let bare = parts.next().ok_or(SaslError::MalformedRequest)?;
    // We offer no -PLUS mechanism, so "p=" (channel binding required) is refused.
    if cb != "n" && cb != "y" {
        return Err(SaslError::MalformedRequest);
    }
    let authzid = match authz {
        "" => None,
        a => Some(decode_saslname(
            a.strip_prefix("a=").ok_or(SaslError::MalformedRequest)?,
        )?),
    };
    Ok((format!("{cb},{authz},"), authzid, bare))
}

impl ScramServer {
    /// Start an exchange. `creds` is None for an unknown user: the exchange
    /// then runs to the end and fails like a wrong password, so accounts cannot
    /// be probed. `fake_salt` is used in that case.
    pub fn start(
        hash: Hash,
        msg: &[u8],
        creds: Option<&Credentials>,
        server_nonce: &str,
        fake_salt: &[u8],
    ) -> Result<(ScramServer, String), SaslError> {
        let text = std::str::from_utf8(msg).map_err(|_| SaslError::MalformedRequest)?;
        let (gs2_header, _, bare) = split_gs2(text)?;
        let mut fields = bare.split(',');
        let user = fields
            .next()
            .and_then(|p| p.strip_prefix("n="))
            .ok_or(SaslError::MalformedRequest)?;
        let client_nonce = fields
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(SaslError::MalformedRequest)?;
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(SaslError::MalformedRequest);
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let (salt, iterations) = match creds {
            Some(c) => (c.salt.as_slice(), c.iterations),
            None => (fake_salt, DEFAULT_ITERATIONS),
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        Ok((
            ScramServer {
                hash,
                gs2_header,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                username: decode_saslname(user)?,
                keys: creds.map(|c| c.keys(hash).clone()),
            },
            server_first,
        ))
    }

    /// Check the client's proof; on success return the server-final-message.
    pub fn finish(&self, msg: &[u8]) -> Result<String, SaslError> {
        let text = std::str::from_utf8(msg).map_err(|_| SaslError::MalformedRequest)?;
        let proof_at = text.rfind(",p=").ok_or(SaslError::MalformedRequest)?;
        let without_proof = &text[..proof_at];
        let proof = B64
            .decode(&text[proof_at + 3..])
            .map_err(|_| SaslError::IncorrectEncoding)?;
        let mut fields = without_proof.split(',');
        let cb = fields
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or(SaslError::MalformedRequest)?;
        let nonce = fields
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(SaslError::MalformedRequest)?;
        if B64.decode(cb).map_err(|_| SaslError::IncorrectEncoding)? != self.gs2_header.as_bytes() {
            return Err(SaslError::MalformedRequest);
        }
        if nonce != self.nonce {
            return Err(SaslError::MalformedRequest);
        }
        let keys = self.keys.as_ref().ok_or(SaslError::NotAuthorized)?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = self.hash.hmac_of(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(SaslError::NotAuthorized);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !constant_time_eq(&self.hash.h(&client_key), &keys.stored_key) {
            return Err(SaslError::NotAuthorized);
        }
        let server_signature = self.hash.hmac_of(&keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// Parse a PLAIN message: `[authzid] NUL authcid NUL password`.
pub fn parse_plain(msg: &[u8]) -> Result<(Option<String>, String, String), SaslError> {
    let text = std::str::from_utf8(msg).map_err(|_| SaslError::MalformedRequest)?;
    let parts: Vec<&str> = text.split('\0').collect();
    if parts.len() != 3 || parts[1].is_empty() {
        return Err(SaslError::MalformedRequest);
    }
    let authzid = (!parts[0].is_empty()).then(|| parts[0].to_string());
    Ok((authzid, parts[1].to_string(), parts[2].to_string()))
}

/// The client side of SCRAM, for tests and the load generator.
pub struct ScramClient {
    hash: Hash,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(hash: Hash, username: &str, password: &str, nonce: &str) -> (ScramClient, String) {
        let bare = format!(
            "n={},r={nonce}",
            username.replace('=', "=3D").replace(',', "=2C")
        );
        let first = format!("n,,{bare}");
        (
            ScramClient {
                hash,
                password: password.to_string(),
                client_first_bare: bare,
                nonce: nonce.to_string(),
                server_signature: None,
            },
            first,
        )
    }

    pub fn respond(&mut self, server_first: &str) -> Result<String, SaslError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for f in server_first.split(',') {
            if let Some(v) = f.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = f.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|_| SaslError::IncorrectEncoding)?);
            } else if let Some(v) = f.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok();
            }
        }
        let (nonce, salt, iterations) = match (nonce, salt, iterations) {
            (Some(n), Some(s), Some(i)) if n.starts_with(&self.nonce) => (n, s, i),
            _ => return Err(SaslError::MalformedRequest),
        };
        let salted = self.hash.salted_password(&self.password, &salt, iterations);
        let client_key = self.hash.hmac_of(&salted, b"Client Key");
        let stored_key = self.hash.h(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.hash.hmac_of(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hash.hmac_of(&salted, b"Server Key");
        self.server_signature = Some(self.hash.hmac_of(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    pub fn verify_server(&self, server_final: &str) -> bool {
        match (server_final.strip_prefix("v="), &self.server_signature) {
            (Some(v), Some(expected)) => B64.decode(v).map(|s| &s == expected).unwrap_or(false),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 test vector (SCRAM-SHA-256), user "user", password "pencil".
    #[test]
    fn rfc7677_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = Credentials::derive("pencil", &salt, 4096);
        let (server, first) = ScramServer::start(
            Hash::Sha256,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            Some(&creds),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            b"",
        )
        .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = server
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    /// RFC 5802 §5 test vector (SCRAM-SHA-1).
    #[test]
    fn rfc5802_vector() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let creds = Credentials::derive("pencil", &salt, 4096);
        let (server, _) = ScramServer::start(
            Hash::Sha1,
            b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            Some(&creds),
            "3rfcNHYJY1ZVvWVs7j",
            b"",
        )
        .unwrap();
        let fin = server
            .finish(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(fin, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn client_and_server_agree_and_wrong_password_fails() {
        let creds = Credentials::derive("secret", b"saltsaltsalt", 4096);
        for hash in [Hash::Sha1, Hash::Sha256] {
            for (password, ok) in [("secret", true), ("Secret", false)] {
                let (mut client, first) = ScramClient::new(hash, "alice", password, "abc");
                let (server, sfirst) =
                    ScramServer::start(hash, first.as_bytes(), Some(&creds), "xyz", b"").unwrap();
                let cfinal = client.respond(&sfirst).unwrap();
                match server.finish(cfinal.as_bytes()) {
                    Ok(v) => {
                        assert!(ok);
                        assert!(client.verify_server(&v));
                    }
                    Err(e) => {
                        assert!(!ok);
                        assert_eq!(e, SaslError::NotAuthorized);
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_user_fails_only_at_the_end() {
        let (mut client, first) = ScramClient::new(Hash::Sha256, "nobody", "x", "abc");
        let (server, sfirst) =
            ScramServer::start(Hash::Sha256, first.as_bytes(), None, "xyz", b"fakesalt").unwrap();
        let cfinal = client.respond(&sfirst).unwrap();
        assert_eq!(
            server.finish(cfinal.as_bytes()),
            Err(SaslError::NotAuthorized)
        );
    }

    #[test]
    fn malformed_messages() {
        for bad in [
            &b"p=tls-unique,,n=u,r=a"[..],
            b"n,,r=a",
            b"x",
            b"n,,n=u,r=",
            b"n,,n=a=b,r=x",
        ] {
            assert!(ScramServer::start(Hash::Sha256, bad, None, "x", b"s").is_err());
        }
        let creds = Credentials::derive("p", b"s", 4096);
        let (server, _) =
            ScramServer::start(Hash::Sha256, b"n,,n=u,r=a", Some(&creds), "b", b"").unwrap();
        assert_eq!(
            server.finish(b"c=biws,r=ab"),
            Err(SaslError::MalformedRequest)
        );
        assert_eq!(
            server.finish(b"c=biws,r=WRONG,p=AAAA"),
            Err(SaslError::MalformedRequest)
        );
        assert_eq!(
            server.finish(b"c=biws,r=ab,p=!!!"),
            Err(SaslError::IncorrectEncoding)
        );
    }

    #[test]
    fn plain_and_password_check() {
        let creds = Credentials::derive("secret", b"s", 4096);
        assert!(creds.verify_password("secret"));
        assert!(!creds.verify_password("secreT"));
        assert_eq!(
            parse_plain(b"\0alice\0secret").unwrap(),
            (None, "alice".into(), "secret".into())
        );
        assert!(parse_plain(b"alice secret").is_err());
    }
}
