//! API keys. Only a SHA-256 hash of each key is stored; the key itself is shown once, when
//! it is created. Keys carry 192 bits of randomness, so a fast hash is sufficient (there is
//! nothing to brute-force the way there is with passwords).

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError, for_each_backend, from_millis, map_unique};

/// Prefix of every Ferry API key, so leaked keys are recognisable by secret scanners.
pub const KEY_PREFIX: &str = "ferry_";

/// A stored API key (without the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Key id.
    pub id: Uuid,
    /// Owning organization.
    pub organization_id: Uuid,
    /// First characters of the key, for display.
    pub key_prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A newly created key: the plaintext exists only here.
#[derive(Clone)]
pub struct NewApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The plaintext key, to be shown once.
    pub plaintext: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &self.key)
            .field("plaintext", &"********")
            .finish()
    }
}

/// Generates a random key `ferry_<32 url-safe chars>`.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a key.
pub fn hash_key(plaintext: &str) -> String {
    let digest = Sha256::digest(plaintext.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Checks that a caller-supplied key (e.g. `FERRY_BOOTSTRAP_API_KEY`) is usable.
pub fn validate_key_format(plaintext: &str) -> std::result::Result<(), String> {
    if plaintext.len() < 16 || plaintext.len() > 256 {
        return Err("an API key must be 16 to 256 characters long".to_string());
    }
    if !plaintext
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err("an API key may contain only letters, digits, '_', '-' and '.'".to_string());
    }
    Ok(())
}

/// API key persistence.
#[async_trait]
pub trait ApiKeyStore {
    /// Stores a key for `organization_id`. With `plaintext: None` a random key is generated.
    async fn create_api_key(
        &self,
        organization_id: Uuid,
        plaintext: Option<&str>,
    ) -> Result<NewApiKey>;
    /// Resolves a plaintext key to its record, if it exists and is not revoked.
    async fn authenticate(&self, plaintext: &str) -> Result<Option<ApiKey>>;
}

trait KeyRow {
    fn to_key(&self) -> Result<ApiKey>;
}

macro_rules! impl_key_row {
    ($row:ty) => {
        impl KeyRow for $row {
            fn to_key(&self) -> Result<ApiKey> {
                let id: String = self.try_get("id")?;
                let org: String = self.try_get("organization_id")?;
                let parse =
                    |s: &str| Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(e.to_string()));
                Ok(ApiKey {
                    id: parse(&id)?,
                    organization_id: parse(&org)?,
                    key_prefix: self.try_get("key_prefix")?,
                    created_at: from_millis(self.try_get("created_at")?),
                })
            }
        }
    };
}
impl_key_row!(sqlx::sqlite::SqliteRow);
impl_key_row!(sqlx::postgres::PgRow);

macro_rules! impl_api_keys {
    ($store:ty) => {
        #[async_trait]
        impl ApiKeyStore for $store {
            async fn create_api_key(
                &self,
                organization_id: Uuid,
                plaintext: Option<&str>,
            ) -> Result<NewApiKey> {
                let plaintext = match plaintext {
                    Some(given) => given.to_string(),
                    None => generate_key(),
                };
                let key = ApiKey {
                    id: Uuid::new_v4(),
                    organization_id,
                    key_prefix: plaintext.chars().take(10).collect(),
                    created_at: ferry_core::time::now_millis(),
                };
                sqlx::query(
                    "INSERT INTO api_keys (id, organization_id, key_hash, key_prefix, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(key.id.to_string())
                .bind(organization_id.to_string())
                .bind(hash_key(&plaintext))
                .bind(&key.key_prefix)
                .bind(key.created_at.timestamp_millis())
                .execute(&self.pool)
                .await
                .map_err(map_unique("api key"))?;
                Ok(NewApiKey { key, plaintext })
            }

            async fn authenticate(&self, plaintext: &str) -> Result<Option<ApiKey>> {
                let row = sqlx::query(
                    "SELECT id, organization_id, key_prefix, created_at FROM api_keys \
                     WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(hash_key(plaintext))
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(KeyRow::to_key).transpose()
            }
        }
    };
}
for_each_backend!(impl_api_keys);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_prefixed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert!(validate_key_format(&a).is_ok());
    }

    #[test]
    fn hash_is_hex_sha256_and_not_the_key() {
        let hash = hash_key("ferry_example");
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains("example"));
        assert_eq!(hash, hash_key("ferry_example"));
    }

    #[test]
    fn key_format_is_checked() {
        assert!(validate_key_format("short").is_err());
        assert!(validate_key_format("has spaces in the key here").is_err());
        assert!(validate_key_format("test-bootstrap-key-0001").is_ok());
    }
}
