//! The card vault: PANs encrypted with AES-256-GCM behind random tokens, and
//! a keyed HMAC-SHA-256 fingerprint so the same card is recognised without its number.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{bail, Context};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use caisse_application::ports::{CardVault, Clock, VaultedCard};
use caisse_application::AppError;
use caisse_domain::card::Pan;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::config::Config;
use crate::sql::{Db, SqlValue};

/// File holding the generated development key, inside the data directory.
pub const DEVELOPMENT_KEY_FILE: &str = "vault.key";

/// The 32-byte master key. Encryption and fingerprinting use keys derived from it
/// so a fingerprint never helps decrypt.
#[derive(Clone)]
pub struct VaultKey {
    encryption: [u8; 32],
    fingerprint: [u8; 32],
    /// Encrypts the webhook signing secrets (a key of their own: a card
    /// ciphertext never decrypts as a secret, nor the reverse).
    webhook_secrets: [u8; 32],
    /// Identifies the key in stored rows, for a later rotation.
    key_id: String,
}

impl VaultKey {
    pub fn from_bytes(master: [u8; 32]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&master).expect("any key length");
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let key_id = hex::encode(&Sha256::digest(derive(b"caisse-vault-key-id"))[..8]);
        VaultKey {
            encryption: derive(b"caisse-vault-encryption"),
            fingerprint: derive(b"caisse-vault-fingerprint"),
            webhook_secrets: derive(b"caisse-webhook-secrets"),
            key_id,
        }
    }

    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = BASE64
            .decode(text.trim())
            .context("vault key is not base64")?;
        let master: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("vault key must be 32 bytes"))?;
        Ok(VaultKey::from_bytes(master))
    }

    /// The configured key, or in development a key generated once into the data
    /// directory. Production refuses to start without a configured key.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        if let Some(key) = &config.vault_key {
            return VaultKey::from_base64(key.expose()).context("CAISSE_VAULT_KEY");
        }
        if config.production {
            bail!("CAISSE_VAULT_KEY is required in production (32 random bytes, base64)");
        }
        let path = config.data_dir.join(DEVELOPMENT_KEY_FILE);
        load_or_generate(&path)
    }

    /// The key that encrypts webhook signing secrets.
    pub(crate) fn webhook_secrets_key(&self) -> &[u8; 32] {
        &self.webhook_secrets
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

fn load_or_generate(path: &Path) -> anyhow::Result<VaultKey> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return VaultKey::from_base64(&text)
            .with_context(|| format!("vault key in {}", path.display()));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut master = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut master);
    std::fs::write(path, BASE64.encode(master))
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::warn!(
        path = %path.display(),
        "generated a development card-vault key; set CAISSE_VAULT_KEY to a real key before taking real cards"
    );
    Ok(VaultKey::from_bytes(master))
}

pub struct DatabaseVault {
    db: Db,
    key: VaultKey,
    clock: Arc<dyn Clock>,
}

impl DatabaseVault {
    pub fn new(db: Db, key: VaultKey, clock: Arc<dyn Clock>) -> Self {
        DatabaseVault { db, key, clock }
    }

    fn keyed_fingerprint(&self, pan: &Pan) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key.fingerprint).expect("any key length");
        mac.update(pan.expose_digits().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[async_trait]
impl CardVault for DatabaseVault {
    fn fingerprint(&self, pan: &Pan) -> String {
        self.keyed_fingerprint(pan)
    }

    async fn store(&self, pan: &Pan) -> Result<VaultedCard, AppError> {
        let mut token_bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut token_bytes);
        let token = format!("tok_{}", hex::encode(token_bytes));
        let mut nonce_bytes = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce_bytes);
        let cipher = Aes256Gcm::new_from_slice(&self.key.encryption).expect("32-byte key");
        // The token is bound as associated data: a ciphertext moved to another
        // token's row fails to decrypt.
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                aes_gcm::aead::Payload {
                    msg: pan.expose_digits().as_bytes(),
                    aad: token.as_bytes(),
                },
            )
            .map_err(|_| AppError::internal("vault encryption failed"))?;
        let values = [
            token.clone(),
            self.key.key_id.clone(),
            BASE64.encode(nonce_bytes),
            BASE64.encode(ciphertext),
            crate::time::timestamp_text(self.clock.now()),
        ];
        match &self.db {
            Db::Postgres(pool) => {
                // One round trip instead of four (BEGIN, SET, INSERT, COMMIT): the
                // statements go as one simple query, so the values are inlined.
                // They are generated here from hex, base64 and timestamp characters
                // only, which the assertion checks, so no quoting is ever needed.
                // No WAL flush of its own: the payment event that refers to this
                // token commits synchronously right after, and flushing its WAL
                // record flushes this earlier one too. A vault row whose event
                // never commits may be lost in a crash, which is harmless.
                for value in &values {
                    assert!(
                        value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+/=_-:.".contains(c)),
                        "vault values are hex, base64 or timestamps"
                    );
                }
                let sql = format!(
                    "BEGIN; SET LOCAL synchronous_commit = off;
                     INSERT INTO card_vault (token, key_id, nonce, ciphertext, created_at)
                     VALUES ('{}', '{}', '{}', '{}', '{}');
                     COMMIT;",
                    values[0], values[1], values[2], values[3], values[4]
                );
                insert_in_one_round_trip(pool, sql).await?;
            }
            Db::Sqlite(_) => {
                let params: Vec<SqlValue> = values.into_iter().map(SqlValue::from).collect();
                self.db
                    .execute(
                        "INSERT INTO card_vault (token, key_id, nonce, ciphertext, created_at) VALUES ($1, $2, $3, $4, $5)",
                        &params,
                    )
                    .await?;
            }
        }
        Ok(VaultedCard {
            token,
            fingerprint: self.keyed_fingerprint(pan),
        })
    }

    async fn reveal(&self, token: &str) -> Result<Pan, AppError> {
        let row = self
            .db
            .fetch_optional(
                "SELECT key_id, nonce, ciphertext FROM card_vault WHERE token = $1",
                &[token.into()],
            )
            .await?
            .ok_or_else(|| AppError::internal("card token not in vault"))?;
        if row.text("key_id") != self.key.key_id {
            return Err(AppError::internal("card was vaulted under another key"));
        }
        let nonce = BASE64
            .decode(row.text("nonce"))
            .map_err(AppError::internal)?;
        let ciphertext = BASE64
            .decode(row.text("ciphertext"))
            .map_err(AppError::internal)?;
        let cipher = Aes256Gcm::new_from_slice(&self.key.encryption).expect("32-byte key");
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: &ciphertext,
                    aad: token.as_bytes(),
                },
            )
            .map_err(|_| AppError::internal("vault decryption failed"))?;
        let digits = String::from_utf8(plain)
            .map_err(|_| AppError::internal("vault content is not text"))?;
        Pan::parse(&digits).map_err(|_| AppError::internal("vault content is not a card number"))
    }
}

/// Runs the vault's BEGIN … COMMIT text as one simple query. A failed statement
/// leaves the explicit transaction open and aborted: it is rolled back before the
/// connection goes back to the pool.
fn insert_in_one_round_trip(
    pool: &sqlx::PgPool,
    sql: String,
) -> futures::future::BoxFuture<'_, Result<(), AppError>> {
    Box::pin(async move {
        use sqlx::Executor;
        let mut connection = pool.acquire().await.map_err(AppError::internal)?;
        if let Err(error) = connection.execute(sql.as_str()).await {
            let _ = connection.execute("ROLLBACK").await;
            return Err(AppError::internal(error));
        }
        Ok(())
    })
}
