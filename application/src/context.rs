//! Who is calling and how: the access scope, the actor recorded in event metadata,
//! and the optional idempotency key of the request.

use caisse_domain::payment::AccessScope;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Event metadata keys. They are part of the log's contract.
pub const METADATA_ACTOR: &str = "actor";
pub const METADATA_REQUEST_ID: &str = "request_id";
pub const METADATA_IDEMPOTENCY_KEY: &str = "idempotency_key";
pub const METADATA_REQUEST_HASH: &str = "request_hash";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRequest {
    /// The key as stored: scoped by the caller so two merchants may use the same key.
    pub scoped_key: String,
    /// SHA-256 of the operation and its arguments, to tell a true repeat from reuse.
    pub request_hash: String,
}

impl IdempotencyRequest {
    /// Longest key accepted from a client.
    pub const KEY_LENGTH_MAX: usize = 255;

    pub fn new(principal: &str, key: &str, operation: &str, arguments: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update([0]);
        hasher.update(arguments.as_bytes());
        IdempotencyRequest {
            scoped_key: format!("{principal}:{key}"),
            request_hash: hex::encode(hasher.finalize()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub scope: AccessScope,
    /// Who acts, as recorded in every event's metadata (e.g. `api_key:key_…`).
    pub actor: String,
    pub request_id: Option<String>,
    pub idempotency: Option<IdempotencyRequest>,
}

impl RequestContext {
    pub fn system(scope: AccessScope, actor: &str) -> Self {
        RequestContext {
            scope,
            actor: actor.to_string(),
            request_id: None,
            idempotency: None,
        }
    }

    /// Metadata for the events of one command; the idempotency key only when asked.
    pub fn metadata(&self, with_idempotency: bool) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        metadata.insert(METADATA_ACTOR.to_string(), self.actor.clone());
        if let Some(request_id) = &self.request_id {
            metadata.insert(METADATA_REQUEST_ID.to_string(), request_id.clone());
        }
        if with_idempotency {
            if let Some(idempotency) = &self.idempotency {
                metadata.insert(
                    METADATA_IDEMPOTENCY_KEY.to_string(),
                    idempotency.scoped_key.clone(),
                );
                metadata.insert(
                    METADATA_REQUEST_HASH.to_string(),
                    idempotency.request_hash.clone(),
                );
            }
        }
        metadata
    }
}
