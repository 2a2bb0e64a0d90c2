//! The `Merchant` aggregate: a merchant account, its shops, API keys and users.
//! Account changes are events like payments, so auditors see who set up what.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, MerchantId, Mode, ShopId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserRole {
    /// Every right on every shop of the merchant.
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MerchantCommand {
    Create {
        merchant_id: MerchantId,
        name: String,
        occurred_at: DateTime<Utc>,
    },
    AddShop {
        shop_id: ShopId,
        name: String,
        occurred_at: DateTime<Utc>,
    },
    /// Stores only the hash of a freshly generated key; the key itself is shown once.
    IssueApiKey {
        key_id: ApiKeyId,
        shop_id: ShopId,
        mode: Mode,
        key_prefix: String,
        key_hash: String,
        occurred_at: DateTime<Utc>,
    },
    CreateUser {
        user_id: UserId,
        email: String,
        password_hash: String,
        role: UserRole,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MerchantEvent {
    MerchantCreated {
        merchant_id: MerchantId,
        name: String,
        occurred_at: DateTime<Utc>,
    },
    ShopCreated {
        shop_id: ShopId,
        name: String,
        occurred_at: DateTime<Utc>,
    },
    ApiKeyIssued {
        key_id: ApiKeyId,
        shop_id: ShopId,
        mode: Mode,
        key_prefix: String,
        key_hash: String,
        occurred_at: DateTime<Utc>,
    },
    UserCreated {
        user_id: UserId,
        email: String,
        password_hash: String,
        role: UserRole,
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for MerchantEvent {
    fn event_type(&self) -> String {
        match self {
            MerchantEvent::MerchantCreated { .. } => "MerchantCreated",
            MerchantEvent::ShopCreated { .. } => "ShopCreated",
            MerchantEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            MerchantEvent::UserCreated { .. } => "UserCreated",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerchantError {
    #[error("merchant already exists")]
    AlreadyExists,
    #[error("merchant not found")]
    NotFound,
    #[error("shop not found")]
    ShopNotFound,
    #[error("a user with this e-mail already exists")]
    EmailTaken,
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
}

impl MerchantError {
    pub fn code(&self) -> &'static str {
        match self {
            MerchantError::AlreadyExists => "MERCHANT_ALREADY_EXISTS",
            MerchantError::NotFound => "MERCHANT_NOT_FOUND",
            MerchantError::ShopNotFound => "SHOP_NOT_FOUND",
            MerchantError::EmailTaken => "USER_EMAIL_TAKEN",
            MerchantError::Empty { .. } => "FIELD_EMPTY",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub merchant_id: Option<MerchantId>,
    pub name: String,
    pub shop_ids: Vec<ShopId>,
    pub user_emails: Vec<String>,
}

impl Aggregate for Merchant {
    const TYPE: &'static str = "Merchant";
    type Command = MerchantCommand;
    type Event = MerchantEvent;
    type Error = MerchantError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if !matches!(command, MerchantCommand::Create { .. }) && self.merchant_id.is_none() {
            return Err(MerchantError::NotFound);
        }
        let event = match command {
            MerchantCommand::Create {
                merchant_id,
                name,
                occurred_at,
            } => {
                if self.merchant_id.is_some() {
                    return Err(MerchantError::AlreadyExists);
                }
                if name.trim().is_empty() {
                    return Err(MerchantError::Empty { field: "name" });
                }
                MerchantEvent::MerchantCreated {
                    merchant_id,
                    name,
                    occurred_at,
                }
            }
            MerchantCommand::AddShop {
                shop_id,
                name,
                occurred_at,
            } => {
                if name.trim().is_empty() {
                    return Err(MerchantError::Empty { field: "shop name" });
                }
                MerchantEvent::ShopCreated {
                    shop_id,
                    name,
                    occurred_at,
                }
            }
            MerchantCommand::IssueApiKey {
                key_id,
                shop_id,
                mode,
                key_prefix,
                key_hash,
                occurred_at,
            } => {
                if !self.shop_ids.contains(&shop_id) {
                    return Err(MerchantError::ShopNotFound);
                }
                MerchantEvent::ApiKeyIssued {
                    key_id,
                    shop_id,
                    mode,
                    key_prefix,
                    key_hash,
                    occurred_at,
                }
            }
            MerchantCommand::CreateUser {
                user_id,
                email,
                password_hash,
                role,
                occurred_at,
            } => {
                let email = email.trim().to_lowercase();
                if email.is_empty() {
                    return Err(MerchantError::Empty { field: "email" });
                }
                if self.user_emails.contains(&email) {
                    return Err(MerchantError::EmailTaken);
                }
                MerchantEvent::UserCreated {
                    user_id,
                    email,
                    password_hash,
                    role,
                    occurred_at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            MerchantEvent::MerchantCreated {
                merchant_id, name, ..
            } => {
                self.merchant_id = Some(merchant_id);
                self.name = name;
            }
            MerchantEvent::ShopCreated { shop_id, .. } => self.shop_ids.push(shop_id),
            MerchantEvent::ApiKeyIssued { .. } => {}
            MerchantEvent::UserCreated { email, .. } => self.user_emails.push(email),
        }
    }
}
