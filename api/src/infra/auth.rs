//! Who may call the API: JWT bearer tokens with a role, and the users who can get one.
//!
//! Tokens carry `sub`, `role`, `exp`, `iat`, `iss` and `aud`; only the configured algorithm
//! is accepted (so `alg: none` and algorithm swaps are refused), and `iss`/`aud` must match.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a caller may do. Ordered: each role may do what the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads tasks, models and metrics.
    Viewer,
    /// Also starts and cancels training.
    Operator,
    /// Also deploys and deletes models.
    Admin,
}

impl Role {
    /// The name in tokens and config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "operator" => Ok(Self::Operator),
            "admin" => Ok(Self::Admin),
            _ => Err(format!("`{s}` is not a role (viewer, operator, admin)")),
        }
    }
}

/// The claims of a berth token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a user name.
    pub sub: String,
    /// What they may do.
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

/// Why a token or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key material in the config is unusable.
    #[error("{field}: {reason}")]
    Key {
        /// The config field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// This service verifies tokens but holds no key to sign them.
    #[error("this service has no signing key (RS256 with a public key only)")]
    CannotSign,
    /// The token is missing, malformed, expired, or signed by someone else.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// How tokens are signed and checked.
pub enum KeyMaterial {
    /// A shared HS256 secret (at least 32 bytes).
    Secret(String),
    /// RS256: the PEM public key, and the private key where this process also signs.
    Rsa {
        /// PEM of the public key.
        public_pem: Vec<u8>,
        /// PEM of the private key, if this process issues tokens.
        private_pem: Option<Vec<u8>>,
    },
}

/// Signs and verifies berth tokens.
pub struct Jwt {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Jwt {
    /// Keys and expectations for `iss` and `aud`.
    pub fn new(keys: KeyMaterial, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        let (algorithm, encoding, decoding) = match keys {
            KeyMaterial::Secret(secret) => {
                if secret.len() < 32 {
                    return Err(AuthError::Key {
                        field: "jwt_secret",
                        reason: format!("must be at least 32 bytes, is {}", secret.len()),
                    });
                }
                let bytes = secret.as_bytes();
                (Algorithm::HS256, Some(EncodingKey::from_secret(bytes)), DecodingKey::from_secret(bytes))
            }
            KeyMaterial::Rsa { public_pem, private_pem } => {
                let decoding = DecodingKey::from_rsa_pem(&public_pem)
                    .map_err(|e| AuthError::Key { field: "jwt_public_key", reason: e.to_string() })?;
                let encoding = private_pem
                    .map(|pem| EncodingKey::from_rsa_pem(&pem))
                    .transpose()
                    .map_err(|e| AuthError::Key { field: "jwt_private_key", reason: e.to_string() })?;
                (Algorithm::RS256, encoding, decoding)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            algorithm,
            encoding,
            decoding,
            validation,
            issuer: issuer.into(),
            audience: audience.into(),
        })
    }

    /// A token for `sub` with `role`, valid for `ttl_s` seconds from now.
    pub fn mint(&self, sub: &str, role: Role, ttl_s: u64) -> Result<String, AuthError> {
        self.mint_at(sub, role, now_s(), ttl_s)
    }

    /// A token issued at `iat` (tests make expired ones with it).
    pub fn mint_at(&self, sub: &str, role: Role, iat: u64, ttl_s: u64) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotSign)?;
        let claims = Claims {
            sub: sub.into(),
            role,
            exp: iat + ttl_s,
            iat,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// A user allowed to get tokens with a password (`POST /api/v1/auth/token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name; the token's `sub`.
    pub name: String,
    /// The role their tokens carry.
    pub role: Role,
    /// Argon2 PHC string of their password (`berth hash-password`).
    pub password_hash: String,
}

/// The users file: `[[users]]` tables of [`User`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Everyone who may log in.
    #[serde(default)]
    pub users: Vec<User>,
}

impl Users {
    /// Reads and checks a users file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let bad = |reason: String| AuthError::Key { field: "users", reason };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read `{}`: {e}", path.display())))?;
        let users: Self = toml::from_str(&text).map_err(|e| bad(format!("`{}`: {e}", path.display())))?;
        for user in &users.users {
            PasswordHash::new(&user.password_hash).map_err(|e| {
                bad(format!("user `{}`: password_hash is not an argon2 PHC string: {e}", user.name))
            })?;
        }
        Ok(users)
    }

    /// The user with this name and password. Every attempt runs one argon2 check, so a
    /// wrong name takes as long as a wrong password.
    pub fn check(&self, name: &str, password: &str) -> Option<&User> {
        const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hWcV3ZLrNVLfwYxuT3y7OE6BbOSWVhbpH5/jQWiJ8A";
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map_or(DECOY, |u| u.password_hash.as_str());
        let ok = PasswordHash::new(hash)
            .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        user.filter(|_| ok)
    }
}

/// An argon2id PHC string for a password, for the users file.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    use argon2::password_hash::rand_core::OsRng;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Key { field: "password", reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt() -> Jwt {
        Jwt::new(KeyMaterial::Secret("0123456789abcdef0123456789abcdef".into()), "berth", "berth").unwrap()
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let jwt = jwt();
        let claims = jwt.verify(&jwt.mint("ada", Role::Operator, 60).unwrap()).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("ada", Role::Operator));
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("berth", "berth"));
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
        let jwt = jwt();
        assert!(jwt.verify(&jwt.mint_at("ada", Role::Admin, now_s() - 3600, 60).unwrap()).is_err());
        let token = jwt.mint("ada", Role::Viewer, 60).unwrap();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        // Claims rewritten to admin, signature kept: refused.
        let forged = jwt.mint("ada", Role::Admin, 60).unwrap();
        parts[1] = forged.split('.').nth(1).unwrap().to_string();
        assert!(jwt.verify(&parts.join(".")).is_err());
        let other = Jwt::new(KeyMaterial::Secret("x".repeat(32)), "berth", "elsewhere").unwrap();
        assert!(jwt.verify(&other.mint("ada", Role::Admin, 60).unwrap()).is_err());
        // alg: none, no signature.
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), token.split('.').nth(1).unwrap());
        assert!(jwt.verify(&none).is_err());
    }

    #[test]
    fn rs256_signs_with_the_private_key_and_refuses_an_algorithm_swap() {
        // A key pair made for these tests only (openssl genrsa 2048).
        let public = include_bytes!("../../tests/fixtures/test-only-rsa-public.pem").to_vec();
        let private = include_bytes!("../../tests/fixtures/test-only-rsa-private.pem").to_vec();
        let signer = Jwt::new(
            KeyMaterial::Rsa { public_pem: public.clone(), private_pem: Some(private) },
            "berth",
            "berth",
        )
        .unwrap();
        let verifier =
            Jwt::new(KeyMaterial::Rsa { public_pem: public, private_pem: None }, "berth", "berth").unwrap();
        let token = signer.mint("ada", Role::Admin, 60).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().role, Role::Admin);
        assert!(matches!(verifier.mint("ada", Role::Admin, 60), Err(AuthError::CannotSign)));
        // An HS256 token must not pass an RS256 verifier.
        assert!(verifier.verify(&jwt().mint("ada", Role::Admin, 60).unwrap()).is_err());
        let bad = Jwt::new(
            KeyMaterial::Rsa { public_pem: b"not a key".to_vec(), private_pem: None },
            "berth",
            "berth",
        );
        assert!(bad.err().unwrap().to_string().starts_with("jwt_public_key:"));
    }

    #[test]
    fn short_secrets_are_refused_naming_the_field() {
        let err = Jwt::new(KeyMaterial::Secret("short".into()), "berth", "berth").err().unwrap();
        assert!(err.to_string().starts_with("jwt_secret:"), "{err}");
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn passwords_check_against_their_hash_only() {
        let users = Users {
            users: vec![User {
                name: "ada".into(),
                role: Role::Admin,
                password_hash: hash_password("s3cret").unwrap(),
            }],
        };
        assert_eq!(users.check("ada", "s3cret").map(|u| u.role), Some(Role::Admin));
        assert!(users.check("ada", "wrong").is_none());
        assert!(users.check("bob", "s3cret").is_none());
    }

    fn b64(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, &b| acc << 8 | b as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}
