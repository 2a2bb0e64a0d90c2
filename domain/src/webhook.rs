//! Webhook endpoints (FEATURES RP-2, RP-3, issue 5): the `WebhookEndpoint`
//! aggregate — a shop's URL, the event types it subscribes to, its active flag
//! and the version of its signing secret — and the catalogue of event types.
//! The secrets themselves never enter an event: they live encrypted beside
//! the log, named by endpoint and version.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{Mode, ShopId, WebhookEndpointId};

/// The event types a merchant can subscribe to. `payment.authorised`,
/// `payment.refused` and `payment.abandoned` end a payment attempt (RP-2, the
/// payment response); the others are the cash movements (RP-3, the silent URL).
pub const WEBHOOK_EVENT_TYPES: [&str; 17] = [
    "payment.authorised",
    "payment.refused",
    "payment.abandoned",
    "payment.authentication_pending",
    "payment.awaiting_authorisation",
    "payment.validated",
    "payment.modified",
    "payment.cancelled",
    "payment.expired",
    "payment.reauthorised",
    "payment.shipped",
    "payment.delivered",
    "payment.captured",
    "payment.refunded",
    "payment.duplicated",
    "plan.completed",
    "plan.defaulted",
];

/// Subscribing to this receives every type, present and future.
pub const ALL_EVENT_TYPES: &str = "*";

/// Longest URL accepted.
pub const URL_LENGTH_MAX: usize = 2_048;
/// Longest description accepted.
pub const DESCRIPTION_LENGTH_MAX: usize = 200;
/// How long a rotated secret keeps signing beside the new one.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DisableReason {
    /// The merchant turned it off.
    Merchant,
    /// Deliveries kept failing for the whole retry schedule.
    PersistentFailure,
}

impl DisableReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DisableReason::Merchant => "MERCHANT",
            DisableReason::PersistentFailure => "PERSISTENT_FAILURE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("webhook endpoint not found")]
    NotFound,
    #[error("this webhook endpoint already exists")]
    AlreadyExists,
    #[error("the webhook endpoint is already {state}")]
    AlreadyInState { state: &'static str },
    #[error("nothing to update: give a url, eventTypes or a description")]
    NothingToUpdate,
}

impl WebhookError {
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::Invalid { .. } => "INVALID_WEBHOOK_ENDPOINT",
            WebhookError::NotFound => "WEBHOOK_ENDPOINT_NOT_FOUND",
            WebhookError::AlreadyExists => "WEBHOOK_ENDPOINT_EXISTS",
            WebhookError::AlreadyInState { .. } => "WEBHOOK_ENDPOINT_UNCHANGED",
            WebhookError::NothingToUpdate => "NOTHING_TO_UPDATE",
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        WebhookError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// The secret versions that sign at `now`: the current one, and the previous
/// one until its overlap after a rotation ends.
pub fn signing_secret_versions(
    secret_version: u32,
    previous_secret_valid_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<u32> {
    let mut versions = vec![secret_version];
    if secret_version > 1 && previous_secret_valid_until.is_some_and(|until| until > now) {
        versions.push(secret_version - 1);
    }
    versions
}

/// Checks and sorts a subscription to `known` event types (webhooks, e-mails):
/// known types or `*`, at least one, no repeat; `*` alone stands for all. The
/// error is the message for the `eventTypes` field.
pub fn normalise_subscription(types: &[String], known: &[&str]) -> Result<Vec<String>, String> {
    if types.is_empty() {
        return Err("choose at least one event type (or \"*\" for all)".to_string());
    }
    let mut normalised = Vec::new();
    for event_type in types {
        let event_type = event_type.trim();
        if event_type != ALL_EVENT_TYPES && !known.contains(&event_type) {
            return Err(format!(
                "{event_type:?} is not an event type; known: *, {}",
                known.join(", ")
            ));
        }
        normalised.push(event_type.to_string());
    }
    normalised.sort();
    normalised.dedup();
    if normalised.iter().any(|t| t == ALL_EVENT_TYPES) {
        normalised = vec![ALL_EVENT_TYPES.to_string()];
    }
    Ok(normalised)
}

/// Checks and sorts a webhook subscription.
pub fn normalise_event_types(types: &[String]) -> Result<Vec<String>, WebhookError> {
    normalise_subscription(types, &WEBHOOK_EVENT_TYPES)
        .map_err(|message| WebhookError::invalid("eventTypes", message))
}

/// Whether a subscription receives an event type.
pub fn subscribes_to(event_types: &[String], event_type: &str) -> bool {
    event_types
        .iter()
        .any(|t| t == ALL_EVENT_TYPES || t == event_type)
}

fn check_description(description: Option<String>) -> Result<Option<String>, WebhookError> {
    let description = description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > DESCRIPTION_LENGTH_MAX)
    {
        return Err(WebhookError::invalid(
            "description",
            format!("at most {DESCRIPTION_LENGTH_MAX} characters"),
        ));
    }
    Ok(description)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookCommand {
    /// `url` was checked by the caller (scheme, port, resolved addresses).
    Create {
        endpoint_id: WebhookEndpointId,
        shop_id: ShopId,
        mode: Mode,
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
        occurred_at: DateTime<Utc>,
    },
    Update {
        url: Option<String>,
        event_types: Option<Vec<String>>,
        description: Option<String>,
        occurred_at: DateTime<Utc>,
    },
    /// A new secret (stored by the caller under `secret_version`); the
    /// previous one keeps signing for `ROTATION_OVERLAP_HOURS`.
    RotateSecret {
        occurred_at: DateTime<Utc>,
    },
    Disable {
        reason: DisableReason,
        occurred_at: DateTime<Utc>,
    },
    Enable {
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookEvent {
    WebhookEndpointCreated {
        endpoint_id: WebhookEndpointId,
        shop_id: ShopId,
        mode: Mode,
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
        /// The version of the first secret: 1.
        secret_version: u32,
        occurred_at: DateTime<Utc>,
    },
    WebhookEndpointUpdated {
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
        occurred_at: DateTime<Utc>,
    },
    WebhookSecretRotated {
        secret_version: u32,
        /// Until then the previous secret signs too.
        previous_secret_valid_until: DateTime<Utc>,
        occurred_at: DateTime<Utc>,
    },
    WebhookEndpointDisabled {
        reason: DisableReason,
        occurred_at: DateTime<Utc>,
    },
    WebhookEndpointEnabled {
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for WebhookEvent {
    fn event_type(&self) -> String {
        match self {
            WebhookEvent::WebhookEndpointCreated { .. } => "WebhookEndpointCreated",
            WebhookEvent::WebhookEndpointUpdated { .. } => "WebhookEndpointUpdated",
            WebhookEvent::WebhookSecretRotated { .. } => "WebhookSecretRotated",
            WebhookEvent::WebhookEndpointDisabled { .. } => "WebhookEndpointDisabled",
            WebhookEvent::WebhookEndpointEnabled { .. } => "WebhookEndpointEnabled",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// One merchant URL receiving the shop's events of one mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub shop_id: Option<ShopId>,
    pub mode: Option<Mode>,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
    pub disabled_reason: Option<DisableReason>,
    pub secret_version: u32,
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
}

impl WebhookEndpoint {
    pub fn exists(&self) -> bool {
        self.shop_id.is_some()
    }
}

impl Aggregate for WebhookEndpoint {
    const TYPE: &'static str = "WebhookEndpoint";
    type Command = WebhookCommand;
    type Event = WebhookEvent;
    type Error = WebhookError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            WebhookCommand::Create {
                endpoint_id,
                shop_id,
                mode,
                url,
                event_types,
                description,
                occurred_at,
            } => {
                if self.exists() {
                    return Err(WebhookError::AlreadyExists);
                }
                WebhookEvent::WebhookEndpointCreated {
                    endpoint_id,
                    shop_id,
                    mode,
                    url: check_url_length(url)?,
                    event_types: normalise_event_types(&event_types)?,
                    description: check_description(description)?,
                    secret_version: 1,
                    occurred_at,
                }
            }
            _ if !self.exists() => return Err(WebhookError::NotFound),
            WebhookCommand::Update {
                url,
                event_types,
                description,
                occurred_at,
            } => {
                if url.is_none() && event_types.is_none() && description.is_none() {
                    return Err(WebhookError::NothingToUpdate);
                }
                WebhookEvent::WebhookEndpointUpdated {
                    url: match url {
                        Some(url) => check_url_length(url)?,
                        None => self.url.clone(),
                    },
                    event_types: match event_types {
                        Some(types) => normalise_event_types(&types)?,
                        None => self.event_types.clone(),
                    },
                    description: match description {
                        Some(description) => check_description(Some(description))?,
                        None => self.description.clone(),
                    },
                    occurred_at,
                }
            }
            WebhookCommand::RotateSecret { occurred_at } => WebhookEvent::WebhookSecretRotated {
                secret_version: self.secret_version + 1,
                previous_secret_valid_until: occurred_at
                    + chrono::Duration::hours(ROTATION_OVERLAP_HOURS),
                occurred_at,
            },
            WebhookCommand::Disable {
                reason,
                occurred_at,
            } => {
                if !self.active {
                    return Err(WebhookError::AlreadyInState { state: "disabled" });
                }
                WebhookEvent::WebhookEndpointDisabled {
                    reason,
                    occurred_at,
                }
            }
            WebhookCommand::Enable { occurred_at } => {
                if self.active {
                    return Err(WebhookError::AlreadyInState { state: "enabled" });
                }
                WebhookEvent::WebhookEndpointEnabled { occurred_at }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WebhookEvent::WebhookEndpointCreated {
                shop_id,
                mode,
                url,
                event_types,
                description,
                secret_version,
                ..
            } => {
                self.shop_id = Some(shop_id);
                self.mode = Some(mode);
                self.url = url;
                self.event_types = event_types;
                self.description = description;
                self.secret_version = secret_version;
                self.active = true;
            }
            WebhookEvent::WebhookEndpointUpdated {
                url,
                event_types,
                description,
                ..
            } => {
                self.url = url;
                self.event_types = event_types;
                self.description = description;
            }
            WebhookEvent::WebhookSecretRotated {
                secret_version,
                previous_secret_valid_until,
                ..
            } => {
                self.secret_version = secret_version;
                self.previous_secret_valid_until = Some(previous_secret_valid_until);
            }
            WebhookEvent::WebhookEndpointDisabled { reason, .. } => {
                self.active = false;
                self.disabled_reason = Some(reason);
            }
            WebhookEvent::WebhookEndpointEnabled { .. } => {
                self.active = true;
                self.disabled_reason = None;
            }
        }
    }
}

fn check_url_length(url: String) -> Result<String, WebhookError> {
    let url = url.trim().to_string();
    if url.is_empty() || url.len() > URL_LENGTH_MAX {
        return Err(WebhookError::invalid(
            "url",
            format!("give a URL of at most {URL_LENGTH_MAX} characters"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, hour, 0, 0).unwrap()
    }

    fn created() -> WebhookEvent {
        WebhookEvent::WebhookEndpointCreated {
            endpoint_id: WebhookEndpointId::from_uuid(uuid::Uuid::from_u128(1)),
            shop_id: ShopId::from_uuid(uuid::Uuid::from_u128(2)),
            mode: Mode::Test,
            url: "https://shop.example/hooks".to_string(),
            event_types: vec![
                "payment.authorised".to_string(),
                "payment.refused".to_string(),
            ],
            description: None,
            secret_version: 1,
            occurred_at: at(9),
        }
    }

    #[test]
    fn subscriptions_are_checked_sorted_and_star_means_all() {
        let types = normalise_event_types(&[
            "payment.refused".to_string(),
            "payment.authorised".to_string(),
            "payment.refused".to_string(),
        ])
        .unwrap();
        assert_eq!(types, ["payment.authorised", "payment.refused"]);
        assert!(subscribes_to(&types, "payment.refused"));
        assert!(!subscribes_to(&types, "payment.captured"));
        let all = normalise_event_types(&["*".to_string(), "payment.refused".to_string()]).unwrap();
        assert_eq!(all, ["*"]);
        assert!(subscribes_to(&all, "plan.completed"));
        let error = normalise_event_types(&["payment.paid".to_string()]).unwrap_err();
        assert!(error.to_string().contains("payment.paid"), "{error}");
        assert!(normalise_event_types(&[]).is_err());
    }

    #[test]
    fn rotation_keeps_the_previous_secret_for_a_day() {
        TestFramework::<WebhookEndpoint>::with(())
            .given(vec![created()])
            .when(WebhookCommand::RotateSecret {
                occurred_at: at(10),
            })
            .then_expect_events(vec![WebhookEvent::WebhookSecretRotated {
                secret_version: 2,
                previous_secret_valid_until: at(10) + chrono::Duration::hours(24),
                occurred_at: at(10),
            }]);
    }

    #[test]
    fn an_endpoint_is_disabled_and_enabled_once_each() {
        let disabled = WebhookEvent::WebhookEndpointDisabled {
            reason: DisableReason::PersistentFailure,
            occurred_at: at(10),
        };
        TestFramework::<WebhookEndpoint>::with(())
            .given(vec![created()])
            .when(WebhookCommand::Disable {
                reason: DisableReason::PersistentFailure,
                occurred_at: at(10),
            })
            .then_expect_events(vec![disabled.clone()]);
        TestFramework::<WebhookEndpoint>::with(())
            .given(vec![created(), disabled])
            .when(WebhookCommand::Disable {
                reason: DisableReason::Merchant,
                occurred_at: at(11),
            })
            .then_expect_error(WebhookError::AlreadyInState { state: "disabled" });
        TestFramework::<WebhookEndpoint>::with(())
            .given_no_previous_events()
            .when(WebhookCommand::Enable {
                occurred_at: at(11),
            })
            .then_expect_error(WebhookError::NotFound);
    }
}
