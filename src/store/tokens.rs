//! Bearer API tokens: roles, secrets and their stored hashes.
//!
//! A secret is `mrd_` followed by 32 random bytes in hex. Only its SHA-256
//! is stored; a request is authenticated by hashing what it presents and
//! looking the hash up, so no secret is ever compared byte by byte.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Result, Store, StoreError};

/// What a token may do. Each role includes every role before it, so the
/// derived order is the order of power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything under `/api/v1` except tokens and webhooks.
    Viewer,
    /// Viewer, plus creating releases (and so rollouts).
    Deployer,
    /// Deployer, plus pause, resume, approve, roll back and abort.
    Operator,
    /// Everything, including tokens and the catalog.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Deployer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether a token with this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::parse(text).ok_or_else(|| {
            let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown role `{text}`; one of {}", known.join(", "))
        })
    }
}

/// Marks a string as a Meridian token for people and secret scanners.
pub const SECRET_PREFIX: &str = "mrd_";
/// Random bytes in a secret: 256 bits cannot be guessed.
const SECRET_BYTES: usize = 32;

/// Longest token name accepted; it is shown in every event the token causes.
const MAX_NAME_CHARS: usize = 64;
/// The actor recorded for what `MERIDIAN_BOOTSTRAP_TOKEN` does; no stored
/// token may take it, or their actions could not be told apart.
pub const BOOTSTRAP_NAME: &str = "bootstrap";

/// Checks a new token's name and returns it trimmed: a name people can read
/// in the audit trail.
pub fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("`name` must not be empty".to_owned());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("`name` is longer than {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("`name` contains control characters".to_owned());
    }
    if name == BOOTSTRAP_NAME {
        return Err(format!(
            "`{BOOTSTRAP_NAME}` is the name of MERIDIAN_BOOTSTRAP_TOKEN; choose another"
        ));
    }
    Ok(name)
}

/// A token's secret. Shown once when the token is created, never stored,
/// never logged: `Debug` prints no part of it.
#[derive(Clone)]
pub struct TokenSecret(String);

impl TokenSecret {
    fn generate() -> TokenSecret {
        let mut bytes = [0u8; SECRET_BYTES];
        // The thread RNG is a CSPRNG seeded from the operating system.
        rand::rng().fill_bytes(&mut bytes);
        TokenSecret(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
    }

    /// The secret itself, for the one answer that hands it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// The stored form of a presented secret: lowercase hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A live token as the API shows it: never its secret nor its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub struct TokenRecord {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    /// Who asked for it: a token's name, or `cli` for `meridian token create`.
    pub created_by: &'a str,
}

/// What a presented secret turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    Valid(TokenRecord),
    Expired,
    Revoked,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    name: String,
    role: String,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<TokenRecord> {
        let role = Role::parse(&row.role).ok_or_else(|| {
            StoreError::Corrupt(format!("token {} has unknown role `{}`", row.id, row.role))
        })?;
        Ok(TokenRecord {
            id: row.id,
            name: row.name,
            role,
            created_by: row.created_by,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
        })
    }
}

const COLUMNS: &str = "id, name, role, created_by, created_at, expires_at, last_used_at";

impl Store {
    /// Creates a token and returns it with its secret, which exists only in
    /// this return value from now on.
    pub async fn issue_token(&self, new: &NewToken<'_>) -> Result<(TokenRecord, TokenSecret)> {
        let secret = TokenSecret::generate();
        let row: TokenRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_tokens (id, name, role, secret_hash, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(new.name)
        .bind(new.role.as_str())
        .bind(hash_secret(secret.expose()))
        .bind(new.created_by)
        .bind(new.expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.constraint() == Some("api_tokens_live_name") => {
                StoreError::Conflict(format!(
                    "a token named `{}` already exists; revoke it or choose another name",
                    new.name
                ))
            }
            _ => StoreError::Database(e),
        })?;
        Ok((row.try_into()?, secret))
    }

    /// Tokens not revoked (expired ones included, so they can be cleaned
    /// up), oldest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows: Vec<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TokenRecord::try_from).collect()
    }

    /// Revokes a token at once. A revoked token is gone from the API's
    /// view, so revoking it again is `NotFound` like an unknown id.
    pub async fn revoke_token(&self, id: Uuid) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    /// Looks a presented secret up by its hash; `None` when no token has
    /// it. Expiry is judged by the database's clock, the one every replica
    /// shares. A valid token's `last_used_at` is refreshed at most once a
    /// minute, so authenticating rarely writes.
    pub async fn token_by_secret(&self, secret: &str) -> Result<Option<Presented>> {
        #[derive(sqlx::FromRow)]
        struct Found {
            #[sqlx(flatten)]
            row: TokenRow,
            revoked: bool,
            expired: bool,
        }
        let found: Option<Found> = sqlx::query_as(
            "WITH found AS (
                 SELECT id, name, role, created_by, created_at, expires_at, last_used_at,
                        revoked_at IS NOT NULL AS revoked,
                        coalesce(expires_at <= now(), false) AS expired
                   FROM api_tokens WHERE secret_hash = $1
             ), touched AS (
                 UPDATE api_tokens t SET last_used_at = now()
                   FROM found
                  WHERE t.id = found.id AND NOT found.revoked AND NOT found.expired
                    AND (found.last_used_at IS NULL
                         OR found.last_used_at < now() - interval '1 minute')
             )
             SELECT * FROM found",
        )
        .bind(hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        Ok(Some(if found.revoked {
            Presented::Revoked
        } else if found.expired {
            Presented::Expired
        } else {
            Presented::Valid(found.row.try_into()?)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_itself_and_every_weaker_role_only() {
        for (i, held) in Role::ALL.into_iter().enumerate() {
            for (j, needed) in Role::ALL.into_iter().enumerate() {
                assert_eq!(held.allows(needed), i >= j, "{held} for {needed}");
            }
        }
    }

    #[test]
    fn roles_parse_from_their_names_and_unknown_names_list_the_choices() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        let error = "root".parse::<Role>().expect_err("not a role");
        assert!(
            error.contains("viewer, deployer, operator, admin"),
            "{error}"
        );
    }

    #[test]
    fn a_secret_carries_the_prefix_and_256_random_bits_and_never_shows_in_debug() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert_eq!(a.expose().len(), SECRET_PREFIX.len() + 2 * SECRET_BYTES);
        assert_ne!(a.expose(), b.expose());
        let debug = format!("{a:?}");
        assert!(
            !debug.contains(&a.expose()[SECRET_PREFIX.len()..]),
            "{debug}"
        );
    }

    #[test]
    fn the_stored_hash_is_the_hex_sha256_of_the_whole_secret() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
