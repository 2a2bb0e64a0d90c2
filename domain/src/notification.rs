//! E-mail notifications (issue 5, NT-1, NT-2): the `ShopNotifications`
//! aggregate (id `notify_<shop>`) — the addresses of the merchant that receive
//! a payment's outcomes by e-mail, the event types they want, and the shop's
//! name and logo shown in every e-mail of the shop — and the languages the
//! e-mails are written in.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::ShopId;

/// The event types a merchant address can receive.
pub const EMAIL_EVENT_TYPES: [&str; 5] = [
    "payment.authorised",
    "payment.refused",
    "payment.refunded",
    "payment.cancelled",
    "payment.captured",
];

/// Subscribing to this receives every type of `EMAIL_EVENT_TYPES`.
pub const ALL_EMAIL_EVENT_TYPES: &str = "*";

/// The languages of the e-mails (ISO 639-1, lower-case).
pub const LANGUAGES: [&str; 8] = ["fr", "en", "de", "es", "it", "nl", "pt", "sv"];

/// The buyer's language when the payment gave none: the service's home market.
pub const DEFAULT_BUYER_LANGUAGE: &str = "fr";

/// The merchant's language when the settings name none.
pub const DEFAULT_MERCHANT_LANGUAGE: &str = "fr";

/// Most merchant addresses per shop.
pub const ADDRESSES_MAX: usize = 10;
/// Longest e-mail address (RFC 5321 path limit).
pub const ADDRESS_LENGTH_MAX: usize = 254;
/// Longest shop display name.
pub const DISPLAY_NAME_LENGTH_MAX: usize = 100;
/// Longest logo URL.
pub const LOGO_URL_LENGTH_MAX: usize = 2_048;

/// One of `LANGUAGES`, whatever its case; None otherwise.
pub fn normalise_language(language: &str) -> Option<&'static str> {
    let lower = language.trim().to_ascii_lowercase();
    LANGUAGES.iter().copied().find(|l| *l == lower)
}

/// Whether a subscription receives an event type.
pub fn receives(event_types: &[String], event_type: &str) -> bool {
    event_types
        .iter()
        .any(|t| t == ALL_EMAIL_EVENT_TYPES || t == event_type)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl NotificationError {
    pub fn code(&self) -> &'static str {
        match self {
            NotificationError::Invalid { .. } => "INVALID_NOTIFICATION_SETTING",
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        NotificationError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// A plausible address: one `@`, a non-empty local part, a dotted domain, no
/// space or control character, no angle bracket or comma (one address only).
pub fn is_plausible_email(address: &str) -> bool {
    if address.len() > ADDRESS_LENGTH_MAX
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
    {
        return false;
    }
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

fn check_addresses(addresses: &[String]) -> Result<Vec<String>, NotificationError> {
    if addresses.is_empty() || addresses.len() > ADDRESSES_MAX {
        return Err(NotificationError::invalid(
            "addresses",
            format!("give 1 to {ADDRESSES_MAX} e-mail addresses"),
        ));
    }
    let mut checked = Vec::new();
    for address in addresses {
        let address = address.trim().to_string();
        if !is_plausible_email(&address) {
            return Err(NotificationError::invalid(
                "addresses",
                format!("{address:?} is not an e-mail address"),
            ));
        }
        if !checked
            .iter()
            .any(|a: &String| a.eq_ignore_ascii_case(&address))
        {
            checked.push(address);
        }
    }
    Ok(checked)
}

fn check_event_types(types: &[String]) -> Result<Vec<String>, NotificationError> {
    crate::webhook::normalise_subscription(types, &EMAIL_EVENT_TYPES)
        .map_err(|message| NotificationError::invalid("eventTypes", message))
}

fn check_display_name(name: Option<String>) -> Result<Option<String>, NotificationError> {
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if let Some(name) = &name {
        if name.chars().count() > DISPLAY_NAME_LENGTH_MAX || name.chars().any(char::is_control) {
            return Err(NotificationError::invalid(
                "shopDisplayName",
                format!("at most {DISPLAY_NAME_LENGTH_MAX} characters, no control character"),
            ));
        }
    }
    Ok(name)
}

fn check_logo_url(url: Option<String>) -> Result<Option<String>, NotificationError> {
    let url = url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    if let Some(url) = &url {
        let host = url.strip_prefix("https://").unwrap_or_default();
        if host.is_empty()
            || host.starts_with('/')
            || url.len() > LOGO_URL_LENGTH_MAX
            || url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>\"'`".contains(c))
        {
            return Err(NotificationError::invalid(
                "logoUrl",
                format!("an https:// URL of at most {LOGO_URL_LENGTH_MAX} characters"),
            ));
        }
    }
    Ok(url)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationCommand {
    /// Replaces the shop's whole e-mail setting.
    ConfigureMerchantEmails {
        shop_id: ShopId,
        addresses: Vec<String>,
        event_types: Vec<String>,
        shop_display_name: Option<String>,
        logo_url: Option<String>,
        /// One of `LANGUAGES`; `DEFAULT_MERCHANT_LANGUAGE` when absent.
        language: Option<String>,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationEvent {
    MerchantEmailsConfigured {
        shop_id: ShopId,
        addresses: Vec<String>,
        event_types: Vec<String>,
        shop_display_name: Option<String>,
        logo_url: Option<String>,
        /// The language of the merchant's e-mails. Events written before it
        /// existed carry none: they meant French, the only language then.
        #[serde(default = "default_merchant_language")]
        language: String,
        occurred_at: DateTime<Utc>,
    },
}

fn default_merchant_language() -> String {
    DEFAULT_MERCHANT_LANGUAGE.to_string()
}

fn check_language(language: Option<String>) -> Result<String, NotificationError> {
    match language {
        None => Ok(default_merchant_language()),
        Some(language) => normalise_language(&language)
            .map(str::to_string)
            .ok_or_else(|| {
                NotificationError::invalid(
                    "language",
                    format!(
                        "{language:?} is not one of {}",
                        LANGUAGES.join(", ").to_uppercase()
                    ),
                )
            }),
    }
}

impl DomainEvent for NotificationEvent {
    fn event_type(&self) -> String {
        match self {
            NotificationEvent::MerchantEmailsConfigured { .. } => "MerchantEmailsConfigured",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// A shop's e-mail notification settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopNotifications {
    pub shop_id: Option<ShopId>,
    pub addresses: Vec<String>,
    pub event_types: Vec<String>,
    pub shop_display_name: Option<String>,
    pub logo_url: Option<String>,
    pub language: String,
}

impl ShopNotifications {
    /// The aggregate id of a shop's settings.
    pub fn aggregate_id(shop_id: ShopId) -> String {
        format!("notify_{shop_id}")
    }
}

impl Aggregate for ShopNotifications {
    const TYPE: &'static str = "ShopNotifications";
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Error = NotificationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            NotificationCommand::ConfigureMerchantEmails {
                shop_id,
                addresses,
                event_types,
                shop_display_name,
                logo_url,
                language,
                occurred_at,
            } => NotificationEvent::MerchantEmailsConfigured {
                shop_id,
                addresses: check_addresses(&addresses)?,
                event_types: check_event_types(&event_types)?,
                shop_display_name: check_display_name(shop_display_name)?,
                logo_url: check_logo_url(logo_url)?,
                language: check_language(language)?,
                occurred_at,
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            NotificationEvent::MerchantEmailsConfigured {
                shop_id,
                addresses,
                event_types,
                shop_display_name,
                logo_url,
                language,
                ..
            } => {
                self.shop_id = Some(shop_id);
                self.addresses = addresses;
                self.event_types = event_types;
                self.shop_display_name = shop_display_name;
                self.logo_url = logo_url;
                self.language = language;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
    }

    fn shop() -> ShopId {
        ShopId::from_uuid(uuid::Uuid::from_u128(2))
    }

    fn configure(addresses: &[&str], types: &[&str], logo: Option<&str>) -> NotificationCommand {
        NotificationCommand::ConfigureMerchantEmails {
            shop_id: shop(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            shop_display_name: Some("  La Boutique  ".to_string()),
            logo_url: logo.map(str::to_string),
            language: None,
            occurred_at: at(),
        }
    }

    fn field_of(command: NotificationCommand) -> &'static str {
        let error = handle(command).unwrap_err();
        assert_eq!(error.code(), "INVALID_NOTIFICATION_SETTING");
        match error {
            NotificationError::Invalid { field, .. } => field,
        }
    }

    fn handle(command: NotificationCommand) -> Result<Vec<NotificationEvent>, NotificationError> {
        TestFramework::<ShopNotifications>::with(())
            .given_no_previous_events()
            .when(command)
            .inspect_result()
    }

    #[test]
    fn settings_are_checked_trimmed_and_sorted() {
        TestFramework::<ShopNotifications>::with(())
            .given_no_previous_events()
            .when(configure(
                &[
                    " orders@shop.example ",
                    "ORDERS@shop.example",
                    "boss@shop.example",
                ],
                &["payment.refunded", "payment.authorised"],
                Some("https://cdn.shop.example/logo.png"),
            ))
            .then_expect_events(vec![NotificationEvent::MerchantEmailsConfigured {
                shop_id: shop(),
                addresses: vec![
                    "orders@shop.example".to_string(),
                    "boss@shop.example".to_string(),
                ],
                event_types: vec![
                    "payment.authorised".to_string(),
                    "payment.refunded".to_string(),
                ],
                shop_display_name: Some("La Boutique".to_string()),
                logo_url: Some("https://cdn.shop.example/logo.png".to_string()),
                language: "fr".to_string(),
                occurred_at: at(),
            }]);
    }

    #[test]
    fn each_invalid_value_names_its_field() {
        let ok = ["a@b.example"];
        let types = ["*"];
        assert_eq!(field_of(configure(&[], &types, None)), "addresses");
        assert_eq!(
            field_of(configure(&["not-an-email"], &types, None)),
            "addresses"
        );
        assert_eq!(
            field_of(configure(&["a b@c.example"], &types, None)),
            "addresses"
        );
        assert_eq!(
            field_of(configure(&["a@localhost"], &types, None)),
            "addresses"
        );
        assert_eq!(
            field_of(configure(&["x@y.example"; 11], &types, None)),
            "addresses"
        );
        assert_eq!(field_of(configure(&ok, &[], None)), "eventTypes");
        assert_eq!(
            field_of(configure(&ok, &["payment.shipped"], None)),
            "eventTypes"
        );
        assert_eq!(
            field_of(configure(&ok, &types, Some("http://cdn.example/logo.png"))),
            "logoUrl"
        );
        assert_eq!(
            field_of(configure(
                &ok,
                &types,
                Some("https://cdn.example/\"><script>")
            )),
            "logoUrl"
        );
        let long_name = NotificationCommand::ConfigureMerchantEmails {
            shop_id: shop(),
            addresses: vec!["a@b.example".to_string()],
            event_types: vec!["*".to_string()],
            shop_display_name: Some("x".repeat(101)),
            logo_url: None,
            language: None,
            occurred_at: at(),
        };
        assert_eq!(field_of(long_name), "shopDisplayName");
    }

    #[test]
    fn the_merchant_language_is_checked_and_french_by_default() {
        let with = |language: Option<&str>| NotificationCommand::ConfigureMerchantEmails {
            shop_id: shop(),
            addresses: vec!["a@b.example".to_string()],
            event_types: vec!["*".to_string()],
            shop_display_name: None,
            logo_url: None,
            language: language.map(str::to_string),
            occurred_at: at(),
        };
        let language_of = |events: Vec<NotificationEvent>| match &events[0] {
            NotificationEvent::MerchantEmailsConfigured { language, .. } => language.clone(),
        };
        assert_eq!(language_of(handle(with(Some(" EN "))).unwrap()), "en");
        assert_eq!(language_of(handle(with(None)).unwrap()), "fr");
        assert_eq!(field_of(with(Some("ja"))), "language");
        // An event written before the language existed reads as French.
        let old: NotificationEvent = serde_json::from_value(serde_json::json!({
            "MerchantEmailsConfigured": {
                "shop_id": shop(), "addresses": ["a@b.example"], "event_types": ["*"],
                "shop_display_name": null, "logo_url": null,
                "occurred_at": "2026-03-02T09:00:00Z"
            }
        }))
        .unwrap();
        assert_eq!(language_of(vec![old]), "fr");
    }

    #[test]
    fn star_means_every_type_and_languages_are_case_insensitive() {
        let all = check_event_types(&["payment.refused".to_string(), "*".to_string()]).unwrap();
        assert_eq!(all, ["*"]);
        assert!(receives(&all, "payment.captured"));
        assert!(!receives(
            &["payment.refused".to_string()],
            "payment.captured"
        ));
        assert_eq!(normalise_language("DE"), Some("de"));
        assert_eq!(normalise_language(" sv "), Some("sv"));
        assert_eq!(normalise_language("ja"), None);
        assert_eq!(
            ShopNotifications::aggregate_id(shop()),
            format!("notify_{}", shop())
        );
    }
}
