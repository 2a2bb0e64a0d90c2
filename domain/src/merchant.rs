//! The `Merchant` aggregate: a merchant account, its shops, API keys and users.
//! Account changes are events like payments, so auditors see who set up what.

use chrono::{DateTime, NaiveTime, Utc};
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

/// When a shop's daily remittance cut-off happens (CM-10): a local time in an IANA
/// time zone. The application checks the zone name; the domain keeps it as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutOffSchedule {
    pub time: NaiveTime,
    pub time_zone: String,
}

impl Default for CutOffSchedule {
    /// 22:00 in Paris, the bank's usual remittance time.
    fn default() -> Self {
        CutOffSchedule {
            time: NaiveTime::from_hms_opt(22, 0, 0).expect("valid time"),
            time_zone: "Europe/Paris".to_string(),
        }
    }
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
        remittance_cut_off: CutOffSchedule,
        occurred_at: DateTime<Utc>,
    },
    /// Per mode: a test key changes the test-mode cut-off, never the live one.
    SetRemittanceCutOff {
        shop_id: ShopId,
        mode: Mode,
        remittance_cut_off: CutOffSchedule,
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
        /// Absent from shops created before cut-offs were configurable: the default.
        #[serde(default)]
        remittance_cut_off: CutOffSchedule,
        occurred_at: DateTime<Utc>,
    },
    RemittanceCutOffChanged {
        shop_id: ShopId,
        mode: Mode,
        previous: CutOffSchedule,
        remittance_cut_off: CutOffSchedule,
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
            MerchantEvent::RemittanceCutOffChanged { .. } => "RemittanceCutOffChanged",
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
    /// Each shop's cut-off per mode (both set at the shop's creation).
    pub cut_offs: Vec<(ShopId, Mode, CutOffSchedule)>,
}

impl Merchant {
    /// A shop's remittance cut-off in one mode.
    pub fn cut_off(&self, shop_id: ShopId, mode: Mode) -> Option<&CutOffSchedule> {
        self.cut_offs
            .iter()
            .find(|(shop, shop_mode, _)| (*shop, *shop_mode) == (shop_id, mode))
            .map(|(_, _, schedule)| schedule)
    }
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
                remittance_cut_off,
                occurred_at,
            } => {
                if name.trim().is_empty() {
                    return Err(MerchantError::Empty { field: "shop name" });
                }
                MerchantEvent::ShopCreated {
                    shop_id,
                    name,
                    remittance_cut_off,
                    occurred_at,
                }
            }
            MerchantCommand::SetRemittanceCutOff {
                shop_id,
                mode,
                remittance_cut_off,
                occurred_at,
            } => {
                let Some(previous) = self.cut_off(shop_id, mode).cloned() else {
                    return Err(MerchantError::ShopNotFound);
                };
                if remittance_cut_off.time_zone.trim().is_empty() {
                    return Err(MerchantError::Empty { field: "timeZone" });
                }
                if previous == remittance_cut_off {
                    // Setting what is already set records nothing.
                    return Ok(());
                }
                MerchantEvent::RemittanceCutOffChanged {
                    shop_id,
                    mode,
                    previous,
                    remittance_cut_off,
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
            MerchantEvent::ShopCreated {
                shop_id,
                remittance_cut_off,
                ..
            } => {
                self.shop_ids.push(shop_id);
                for mode in [Mode::Test, Mode::Live] {
                    self.cut_offs
                        .push((shop_id, mode, remittance_cut_off.clone()));
                }
            }
            MerchantEvent::RemittanceCutOffChanged {
                shop_id,
                mode,
                remittance_cut_off,
                ..
            } => {
                self.cut_offs
                    .retain(|(shop, shop_mode, _)| (*shop, *shop_mode) != (shop_id, mode));
                self.cut_offs.push((shop_id, mode, remittance_cut_off));
            }
            MerchantEvent::ApiKeyIssued { .. } => {}
            MerchantEvent::UserCreated { email, .. } => self.user_emails.push(email),
        }
    }
}
