//! 3-D Secure outcomes and the payment guarantee (FEATURES SE-1, SE-2): what the
//! authentication step answered, and the liability shift it gives the merchant.

use serde::{Deserialize, Serialize};

use crate::card::CardBrand;
use crate::payment::Channel;

/// Whether the card takes part in 3-D Secure (the directory's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThreeDsEnrolled {
    /// Y: the issuer authenticates this card.
    Enrolled,
    /// N: the card is not enrolled.
    NotEnrolled,
    /// U: the directory could not tell (unavailable, error).
    Unknown,
    /// 3-D Secure was not asked: the shop is not enrolled for the brand, or the
    /// channel has no buyer browser (MOTO, call centre, IVR, ERP) or is exempted.
    #[default]
    NotChecked,
}

impl ThreeDsEnrolled {
    pub fn as_str(&self) -> &'static str {
        match self {
            ThreeDsEnrolled::Enrolled => "ENROLLED",
            ThreeDsEnrolled::NotEnrolled => "NOT_ENROLLED",
            ThreeDsEnrolled::Unknown => "UNKNOWN",
            ThreeDsEnrolled::NotChecked => "NOT_CHECKED",
        }
    }
}

/// The authentication's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThreeDsStatus {
    /// Y: the buyer was authenticated (frictionless or after a challenge).
    Authenticated,
    /// A: the issuer does not authenticate but the attempt is proven.
    Attempted,
    /// N: authentication failed or was refused; the payment is not authorised.
    Failed,
    /// U: authentication could not be performed (directory or ACS unavailable).
    Unavailable,
    /// C: the issuer asked for a challenge whose result has not come yet.
    ChallengePending,
    /// No authentication was asked.
    #[default]
    NotPerformed,
}

impl ThreeDsStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ThreeDsStatus::Authenticated => "AUTHENTICATED",
            ThreeDsStatus::Attempted => "ATTEMPTED",
            ThreeDsStatus::Failed => "FAILED",
            ThreeDsStatus::Unavailable => "UNAVAILABLE",
            ThreeDsStatus::ChallengePending => "CHALLENGE_PENDING",
            ThreeDsStatus::NotPerformed => "NOT_PERFORMED",
        }
    }
}

/// The payment guarantee (liability shift for fraud chargebacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Guarantee {
    Yes,
    #[default]
    No,
    /// Not known yet (challenge pending) or not knowable (directory unavailable).
    Unknown,
}

impl Guarantee {
    pub fn as_str(&self) -> &'static str {
        match self {
            Guarantee::Yes => "YES",
            Guarantee::No => "NO",
            Guarantee::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(text: &str) -> Option<Guarantee> {
        match text {
            "YES" => Some(Guarantee::Yes),
            "NO" => Some(Guarantee::No),
            "UNKNOWN" => Some(Guarantee::Unknown),
            _ => None,
        }
    }
}

/// What the 3-D Secure step gave a payment; recorded in its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThreeDsResult {
    pub enrolled: ThreeDsEnrolled,
    pub status: ThreeDsStatus,
    /// The 3DS server's transaction id, to trace the authentication.
    pub transaction_id: Option<String>,
    /// Electronic commerce indicator the scheme gives the authorisation.
    pub eci: Option<String>,
    pub guarantee: Guarantee,
}

impl ThreeDsResult {
    /// A result for an authentication that was not asked.
    pub fn not_performed() -> Self {
        ThreeDsResult::default()
    }

    pub fn new(
        enrolled: ThreeDsEnrolled,
        status: ThreeDsStatus,
        transaction_id: Option<String>,
        eci: Option<String>,
    ) -> Self {
        ThreeDsResult {
            enrolled,
            status,
            transaction_id,
            eci,
            guarantee: guarantee_of(enrolled, status),
        }
    }
}

/// The liability shift a 3DS outcome gives. Authenticated and proven attempts
/// shift liability to the issuer; an outcome nobody could establish (directory
/// unavailable, challenge not answered yet) is UNKNOWN; anything else (not
/// enrolled, failed, not performed) leaves the merchant liable.
pub fn guarantee_of(enrolled: ThreeDsEnrolled, status: ThreeDsStatus) -> Guarantee {
    match (enrolled, status) {
        (_, ThreeDsStatus::Authenticated) | (_, ThreeDsStatus::Attempted) => Guarantee::Yes,
        (_, ThreeDsStatus::ChallengePending) => Guarantee::Unknown,
        (ThreeDsEnrolled::Unknown, _) | (_, ThreeDsStatus::Unavailable) => Guarantee::Unknown,
        _ => Guarantee::No,
    }
}

/// Brands the 3-D Secure programme covers (SE-1).
pub const THREE_DS_BRANDS: [CardBrand; 3] = [CardBrand::Cb, CardBrand::Visa, CardBrand::Mastercard];

/// Channels with a buyer browser to authenticate in; the others (MOTO, call
/// centre, IVR, ERP) are never 3DS-authenticated and carry no guarantee.
pub const THREE_DS_CHANNELS: [Channel; 2] = [Channel::Ecommerce, Channel::Mcommerce];

/// A shop's 3-D Secure enrolment: the brands it is enrolled for and the
/// channels where authentication runs. New shops are enrolled for CB, VISA and
/// MASTERCARD on e-commerce and m-commerce (strong customer authentication is
/// the rule in Europe); a shop may skip a channel or a brand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreeDsEnrolment {
    pub brands: Vec<CardBrand>,
    pub channels: Vec<Channel>,
}

impl Default for ThreeDsEnrolment {
    fn default() -> Self {
        ThreeDsEnrolment {
            brands: THREE_DS_BRANDS.to_vec(),
            channels: THREE_DS_CHANNELS.to_vec(),
        }
    }
}

impl ThreeDsEnrolment {
    /// Whether a payment with this brand through this channel is authenticated.
    pub fn applies(&self, brand: CardBrand, channel: Channel) -> bool {
        self.brands.contains(&brand) && self.channels.contains(&channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guarantee_follows_the_outcome() {
        use ThreeDsEnrolled::*;
        use ThreeDsStatus::*;
        assert_eq!(guarantee_of(Enrolled, Authenticated), Guarantee::Yes);
        assert_eq!(guarantee_of(Enrolled, Attempted), Guarantee::Yes);
        assert_eq!(guarantee_of(Enrolled, Failed), Guarantee::No);
        assert_eq!(guarantee_of(Enrolled, ChallengePending), Guarantee::Unknown);
        assert_eq!(guarantee_of(NotEnrolled, NotPerformed), Guarantee::No);
        assert_eq!(guarantee_of(Unknown, Unavailable), Guarantee::Unknown);
        assert_eq!(guarantee_of(NotChecked, NotPerformed), Guarantee::No);
    }

    #[test]
    fn enrolment_covers_brands_and_browser_channels_by_default() {
        let enrolment = ThreeDsEnrolment::default();
        assert!(enrolment.applies(CardBrand::Cb, Channel::Ecommerce));
        assert!(enrolment.applies(CardBrand::Mastercard, Channel::Mcommerce));
        assert!(!enrolment.applies(CardBrand::Visa, Channel::Moto));
        assert!(!enrolment.applies(CardBrand::Amex, Channel::Ecommerce));
    }
}
