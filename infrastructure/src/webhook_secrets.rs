//! The webhook signing secrets, encrypted in `webhook_secrets` (AES-256-GCM
//! with a key derived from the vault key; the endpoint id and version are the
//! associated data, so a ciphertext moved to another row does not decrypt).

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use caisse_application::ports::{Clock, WebhookSecrets};
use caisse_application::AppError;
use caisse_domain::ids::WebhookEndpointId;
use rand::RngCore;

use crate::sql::{Db, SqlValue};
use crate::vault::VaultKey;

pub struct DatabaseWebhookSecrets {
    db: Db,
    key: VaultKey,
    clock: Arc<dyn Clock>,
}

impl DatabaseWebhookSecrets {
    pub fn new(db: Db, key: VaultKey, clock: Arc<dyn Clock>) -> Self {
        DatabaseWebhookSecrets { db, key, clock }
    }
}

fn associated_data(endpoint_id: WebhookEndpointId, version: u32) -> String {
    format!("{endpoint_id}/{version}")
}

#[async_trait]
impl WebhookSecrets for DatabaseWebhookSecrets {
    async fn store(
        &self,
        endpoint_id: WebhookEndpointId,
        version: u32,
        secret: &str,
    ) -> Result<(), AppError> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let cipher =
            Aes256Gcm::new_from_slice(self.key.webhook_secrets_key()).expect("32-byte key");
        let aad = associated_data(endpoint_id, version);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: secret.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| AppError::internal("webhook secret encryption failed"))?;
        let params: Vec<SqlValue> = vec![
            endpoint_id.to_string().into(),
            i64::from(version).into(),
            self.key.key_id().to_string().into(),
            BASE64.encode(nonce).into(),
            BASE64.encode(ciphertext).into(),
            crate::time::timestamp_text(self.clock.now()).into(),
        ];
        self.db
            .execute(
                "INSERT INTO webhook_secrets (endpoint_id, version, key_id, nonce, ciphertext, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &params,
            )
            .await?;
        Ok(())
    }

    async fn secret(
        &self,
        endpoint_id: WebhookEndpointId,
        version: u32,
    ) -> Result<Option<String>, AppError> {
        let Some(row) = self
            .db
            .fetch_optional(
                "SELECT key_id, nonce, ciphertext FROM webhook_secrets
                 WHERE endpoint_id = $1 AND version = $2",
                &[endpoint_id.to_string().into(), i64::from(version).into()],
            )
            .await?
        else {
            return Ok(None);
        };
        if row.text("key_id") != self.key.key_id() {
            return Err(AppError::internal(
                "webhook secret stored under another key",
            ));
        }
        let nonce = BASE64
            .decode(row.text("nonce"))
            .map_err(AppError::internal)?;
        let ciphertext = BASE64
            .decode(row.text("ciphertext"))
            .map_err(AppError::internal)?;
        let cipher =
            Aes256Gcm::new_from_slice(self.key.webhook_secrets_key()).expect("32-byte key");
        let aad = associated_data(endpoint_id, version);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| AppError::internal("webhook secret decryption failed"))?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| AppError::internal("webhook secret is not text"))
    }
}
