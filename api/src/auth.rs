//! API-key authentication: `Authorization: Bearer sk_test_…` resolves to one shop
//! and one mode. Keys are looked up by their SHA-256 hash, never stored in clear.

use caisse_application::merchants::hash_api_key;
use caisse_domain::payment::AccessScope;
use caisse_domain::{Mode, ShopId};
use caisse_projections::queries::{find_api_key, ReadScope};

use crate::state::AppState;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub shop_id: ShopId,
    pub mode: Mode,
    pub merchant_id: String,
    pub key_id: String,
    pub key_prefix: String,
}

impl Caller {
    pub fn scope(&self) -> AccessScope {
        AccessScope::single(self.shop_id, self.mode)
    }

    pub fn read_scope(&self) -> ReadScope {
        ReadScope {
            shop_ids: vec![self.shop_id],
            mode: self.mode,
        }
    }

    /// Recorded as the actor of every event this caller causes.
    pub fn actor(&self) -> String {
        format!("api_key:{} ({}…)", self.key_id, self.key_prefix)
    }

    /// Idempotency keys are scoped to the credential's shop and mode.
    pub fn principal(&self) -> String {
        format!("{}:{}", self.shop_id, self.mode.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <api key>` header")]
    Missing,
    #[error("unknown or revoked API key")]
    Unknown,
    #[error("could not check the API key")]
    Unavailable,
}

/// How long a resolved API key is trusted without asking the database again.
/// Keys cannot be revoked yet; when they can, revocation must clear this cache.
pub const API_KEY_CACHE_SECONDS: u64 = 60;
/// Most keys remembered; the cache is emptied when it is full.
const API_KEY_CACHE_ENTRIES_MAX: usize = 10_000;

/// Resolved API keys by hash, so a request does not pay a database round trip
/// just to learn who it is.
#[derive(Default)]
pub struct ApiKeyCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Caller, std::time::Instant)>>,
}

impl ApiKeyCache {
    fn get(&self, hash: &str) -> Option<Caller> {
        let entries = self.entries.lock().expect("cache lock");
        let (caller, at) = entries.get(hash)?;
        (at.elapsed().as_secs() < API_KEY_CACHE_SECONDS).then(|| caller.clone())
    }

    fn put(&self, hash: String, caller: Caller) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= API_KEY_CACHE_ENTRIES_MAX {
            entries.clear();
        }
        entries.insert(hash, (caller, std::time::Instant::now()));
    }
}

pub async fn authenticate(state: &AppState, header: Option<&str>) -> Result<Caller, AuthError> {
    let token = header
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::Missing)?;
    if !(token.starts_with("sk_test_") || token.starts_with("sk_live_")) || token.len() > 128 {
        return Err(AuthError::Unknown);
    }
    let hash = hash_api_key(token);
    if let Some(caller) = state.api_keys.get(&hash) {
        return Ok(caller);
    }
    let row = find_api_key(state.db(), &hash)
        .await
        .map_err(|error| {
            tracing::error!(%error, "API key lookup failed");
            AuthError::Unavailable
        })?
        .ok_or(AuthError::Unknown)?;
    let caller = Caller {
        shop_id: ShopId::parse(&row.shop_id).ok_or(AuthError::Unavailable)?,
        mode: Mode::parse(&row.mode).ok_or(AuthError::Unavailable)?,
        merchant_id: row.merchant_id,
        key_id: row.key_id,
        key_prefix: row.key_prefix,
    };
    state.api_keys.put(hash, caller.clone());
    Ok(caller)
}
