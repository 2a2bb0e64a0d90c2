//! Identifier newtypes and the test/live mode that partitions all data.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! uuid_id {
    ($name:ident, $prefix:literal) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh time-ordered identifier (UUID v7), so ids sort roughly by creation.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// Parses the textual form (`pay_<uuid>` or a bare uuid).
            pub fn parse(text: &str) -> Option<Self> {
                let bare = text.strip_prefix(concat!($prefix, "_")).unwrap_or(text);
                Uuid::parse_str(bare).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(Uuid::nil())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "_{}"), self.0.simple())
            }
        }
    };
}

uuid_id!(PaymentId, "pay");
uuid_id!(ShopId, "shop");
uuid_id!(MerchantId, "mer");
uuid_id!(RemittanceId, "rem");
uuid_id!(RefundId, "ref");
uuid_id!(UserId, "usr");
uuid_id!(ApiKeyId, "key");
uuid_id!(PlanId, "plan");
uuid_id!(WebhookEndpointId, "whe");

/// Test and live data never mix: every payment, key and view row carries its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    #[default]
    Test,
    Live,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Test => "TEST",
            Mode::Live => "LIVE",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "TEST" => Some(Mode::Test),
            "LIVE" => Some(Mode::Live),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_id_round_trips_through_its_prefixed_text() {
        let id = PaymentId::new();
        assert_eq!(PaymentId::parse(&id.to_string()), Some(id));
        assert!(id.to_string().starts_with("pay_"));
        assert_eq!(PaymentId::parse("pay_nonsense"), None);
    }
}
