//! Card numbers: Luhn and expiry checks, brand detection from IIN ranges, and the
//! card snapshot that events carry (token, BIN, last four — never the PAN or CVV).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Card schemes and private-label brands we accept (FEATURES PM-1, PM-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardBrand {
    Cb,
    Visa,
    Mastercard,
    Amex,
    Jcb,
    Diners,
    Cofinoga,
    Aurore,
    Sofinco,
}

impl CardBrand {
    pub fn as_str(&self) -> &'static str {
        match self {
            CardBrand::Cb => "CB",
            CardBrand::Visa => "VISA",
            CardBrand::Mastercard => "MASTERCARD",
            CardBrand::Amex => "AMEX",
            CardBrand::Jcb => "JCB",
            CardBrand::Diners => "DINERS",
            CardBrand::Cofinoga => "COFINOGA",
            CardBrand::Aurore => "AURORE",
            CardBrand::Sofinco => "SOFINCO",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        ALL_BRANDS
            .iter()
            .copied()
            .find(|brand| brand.as_str() == text)
    }
}

pub const ALL_BRANDS: [CardBrand; 9] = [
    CardBrand::Cb,
    CardBrand::Visa,
    CardBrand::Mastercard,
    CardBrand::Amex,
    CardBrand::Jcb,
    CardBrand::Diners,
    CardBrand::Cofinoga,
    CardBrand::Aurore,
    CardBrand::Sofinco,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("card number must be 13 to 19 digits")]
    InvalidLength,
    #[error("card number contains characters other than digits and spaces")]
    NotDigits,
    #[error("card number fails the Luhn check")]
    LuhnCheckFailed,
    #[error("card number belongs to no accepted brand")]
    UnknownBrand,
    #[error("expiry month must be between 1 and 12")]
    InvalidExpiryMonth,
    #[error("expiry year must be a four-digit year")]
    InvalidExpiryYear,
    #[error("card expired")]
    Expired,
    #[error("CVV must be {expected} digits")]
    InvalidCvv { expected: usize },
    #[error("brand {0} is not one of this card's networks")]
    BrandNotOnCard(String),
}

impl CardError {
    pub fn code(&self) -> &'static str {
        match self {
            CardError::InvalidLength | CardError::NotDigits => "INVALID_CARD_NUMBER",
            CardError::LuhnCheckFailed => "CARD_LUHN_CHECK_FAILED",
            CardError::UnknownBrand => "CARD_BRAND_NOT_ACCEPTED",
            CardError::InvalidExpiryMonth | CardError::InvalidExpiryYear => "INVALID_CARD_EXPIRY",
            CardError::Expired => "CARD_EXPIRED",
            CardError::InvalidCvv { .. } => "INVALID_CVV",
            CardError::BrandNotOnCard(_) => "BRAND_NOT_ON_CARD",
        }
    }

    /// The input field the error is about, for API error messages.
    pub fn field(&self) -> &'static str {
        match self {
            CardError::InvalidLength
            | CardError::NotDigits
            | CardError::LuhnCheckFailed
            | CardError::UnknownBrand => "card.number",
            CardError::InvalidExpiryMonth => "card.expiryMonth",
            CardError::InvalidExpiryYear | CardError::Expired => "card.expiryYear",
            CardError::InvalidCvv { .. } => "card.cvv",
            CardError::BrandNotOnCard(_) => "card.brand",
        }
    }
}

/// A primary account number. It never prints its digits: `Debug` and `Display`
/// show only the BIN and last four, so a stray log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

impl Pan {
    pub fn parse(text: &str) -> Result<Self, CardError> {
        let digits: String = text.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(CardError::NotDigits);
        }
        if !(13..=19).contains(&digits.len()) {
            return Err(CardError::InvalidLength);
        }
        if !luhn_valid(&digits) {
            return Err(CardError::LuhnCheckFailed);
        }
        Ok(Pan(digits))
    }

    /// The digits, for the vault and the acquirer only.
    pub fn expose_digits(&self) -> &str {
        &self.0
    }

    pub fn bin(&self) -> &str {
        &self.0[..6]
    }

    pub fn last_four(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({}…{})", self.bin(), self.last_four())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}******{}", self.bin(), self.last_four())
    }
}

/// The Luhn (mod 10) check used by every card scheme.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (index, c) in digits.chars().rev().enumerate() {
        let Some(mut digit) = c.to_digit(10) else {
            return false;
        };
        if index % 2 == 1 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// A card verification value. It lives only in memory for one authorisation.
#[derive(Clone, PartialEq, Eq)]
pub struct Cvv(String);

impl Cvv {
    pub fn parse(text: &str, brand: CardBrand) -> Result<Self, CardError> {
        let expected = if brand == CardBrand::Amex { 4 } else { 3 };
        if text.len() != expected || !text.chars().all(|c| c.is_ascii_digit()) {
            return Err(CardError::InvalidCvv { expected });
        }
        Ok(Cvv(text.to_string()))
    }
    pub fn expose_digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvv(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardExpiry {
    pub month: u32,
    pub year: i32,
}

impl CardExpiry {
    /// Checks the month and year, and that the card is still valid in `today`'s month.
    pub fn parse(
        month: u32,
        year: i32,
        today_year: i32,
        today_month: u32,
    ) -> Result<Self, CardError> {
        if !(1..=12).contains(&month) {
            return Err(CardError::InvalidExpiryMonth);
        }
        let year = if (0..100).contains(&year) {
            2000 + year
        } else {
            year
        };
        if !(2000..=2100).contains(&year) {
            return Err(CardError::InvalidExpiryYear);
        }
        if (year, month) < (today_year, today_month) {
            return Err(CardError::Expired);
        }
        Ok(CardExpiry { month, year })
    }
}

/// An IIN prefix range mapped to a brand. Private-label brands (COFINOGA, AURORE,
/// SOFINCO) have no public IIN, so their ranges come from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixRange {
    pub prefix: String,
    pub brand: CardBrand,
}

/// The brand table: private ranges first, then the schemes' public ranges, and the
/// BIN prefixes of French cards co-badged CB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRanges {
    pub private_ranges: Vec<PrefixRange>,
    pub cb_cobadge_prefixes: Vec<String>,
}

impl Default for CardRanges {
    /// Test-environment defaults, documented in docs/test-cards.md. Real private
    /// ranges are given by the card issuers and set in configuration.
    fn default() -> Self {
        let private = |prefix: &str, brand| PrefixRange {
            prefix: prefix.to_string(),
            brand,
        };
        CardRanges {
            private_ranges: vec![
                private("603616", CardBrand::Cofinoga),
                private("504910", CardBrand::Aurore),
                private("604500", CardBrand::Sofinco),
            ],
            cb_cobadge_prefixes: vec!["497".to_string(), "5131".to_string()],
        }
    }
}

/// Every network a card can be routed through, the preferred one first.
pub fn detect_networks(pan: &Pan, ranges: &CardRanges) -> Result<Vec<CardBrand>, CardError> {
    let digits = pan.expose_digits();
    if let Some(range) = ranges
        .private_ranges
        .iter()
        .find(|r| digits.starts_with(&r.prefix))
    {
        return Ok(vec![range.brand]);
    }
    let prefix = |n: usize| digits[..n].parse::<u32>().unwrap_or(0);
    let length = digits.len();
    let scheme = if (prefix(2) == 34 || prefix(2) == 37) && length == 15 {
        CardBrand::Amex
    } else if (3528..=3589).contains(&prefix(4)) {
        CardBrand::Jcb
    } else if (300..=305).contains(&prefix(3))
        || prefix(4) == 3095
        || prefix(2) == 36
        || prefix(2) == 38
        || prefix(2) == 39
    {
        CardBrand::Diners
    } else if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) {
        CardBrand::Mastercard
    } else if digits.starts_with('4') {
        CardBrand::Visa
    } else {
        return Err(CardError::UnknownBrand);
    };
    let cobadged = matches!(scheme, CardBrand::Visa | CardBrand::Mastercard)
        && ranges
            .cb_cobadge_prefixes
            .iter()
            .any(|p| digits.starts_with(p.as_str()));
    Ok(if cobadged {
        vec![CardBrand::Cb, scheme]
    } else {
        vec![scheme]
    })
}

/// How many days an issuer holds an authorisation, per brand: an authorisation
/// still waiting for validation after that expires. Configurable because issuers
/// and schemes differ; 7 days unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorisationValidity {
    pub default_days: u32,
    pub by_brand: std::collections::HashMap<CardBrand, u32>,
    /// Brands whose lapsed authorisations may be renewed while a payment waits
    /// for shipping or delivery (TY-6, TY-7); the others expire.
    pub reauthorise_brands: Vec<CardBrand>,
    /// Renewals at most per payment; after that it expires.
    pub reauthorisations_max: u32,
}

impl Default for AuthorisationValidity {
    fn default() -> Self {
        AuthorisationValidity {
            default_days: crate::payment::DEFAULT_AUTHORISATION_VALIDITY_DAYS,
            by_brand: Default::default(),
            reauthorise_brands: Vec::new(),
            reauthorisations_max: 1,
        }
    }
}

impl AuthorisationValidity {
    pub fn reauthorises(&self, brand: CardBrand) -> bool {
        self.reauthorise_brands.contains(&brand)
    }

    pub fn days_for(&self, brand: CardBrand) -> u32 {
        self.by_brand
            .get(&brand)
            .copied()
            .unwrap_or(self.default_days)
    }
}

/// What events and views know about a card: enough to show, search and fingerprint
/// it, never enough to charge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSnapshot {
    /// Vault token; only the vault can turn it back into a PAN.
    pub token: String,
    pub bin: String,
    pub last_four: String,
    /// The brand the payment was routed through.
    pub brand: CardBrand,
    /// All networks on the card (a co-badged CB card carries CB and VISA or MASTERCARD).
    pub networks: Vec<CardBrand>,
    pub expiry: CardExpiry,
    /// Keyed HMAC-SHA-256 of the PAN: the same card gives the same fingerprint.
    pub fingerprint: String,
    pub holder_name: Option<String>,
    pub issuing_country: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn networks(number: &str) -> Vec<CardBrand> {
        detect_networks(&Pan::parse(number).unwrap(), &CardRanges::default()).unwrap()
    }

    #[test]
    fn luhn_accepts_known_test_numbers_and_refuses_a_typo() {
        assert!(luhn_valid("4970100000000006"));
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert_eq!(
            Pan::parse("4111 1111 1111 1112"),
            Err(CardError::LuhnCheckFailed)
        );
    }

    #[test]
    fn lengths_and_characters_are_checked() {
        assert_eq!(Pan::parse("4242"), Err(CardError::InvalidLength));
        assert_eq!(Pan::parse("4242x42424242424"), Err(CardError::NotDigits));
    }

    #[test]
    fn brands_are_detected_from_iin_ranges() {
        assert_eq!(networks("4111111111111111"), vec![CardBrand::Visa]);
        assert_eq!(networks("5555555555554444"), vec![CardBrand::Mastercard]);
        assert_eq!(networks("2223003122003222"), vec![CardBrand::Mastercard]);
        assert_eq!(networks("378282246310005"), vec![CardBrand::Amex]);
        assert_eq!(networks("3530111333300000"), vec![CardBrand::Jcb]);
        assert_eq!(networks("36000000000008"), vec![CardBrand::Diners]);
        assert_eq!(
            networks("4970100000000006"),
            vec![CardBrand::Cb, CardBrand::Visa]
        );
        assert_eq!(networks("6036160000000007"), vec![CardBrand::Cofinoga]);
    }

    #[test]
    fn pan_never_prints_its_digits() {
        let pan = Pan::parse("4111111111111111").unwrap();
        assert_eq!(format!("{pan:?}"), "Pan(411111…1111)");
        assert_eq!(pan.to_string(), "411111******1111");
    }

    #[test]
    fn expiry_is_checked_against_today() {
        assert_eq!(
            CardExpiry::parse(13, 2030, 2026, 11),
            Err(CardError::InvalidExpiryMonth)
        );
        assert_eq!(
            CardExpiry::parse(10, 2026, 2026, 11),
            Err(CardError::Expired)
        );
        assert_eq!(
            CardExpiry::parse(11, 26, 2026, 11),
            Ok(CardExpiry {
                month: 11,
                year: 2026
            })
        );
    }

    #[test]
    fn amex_cvv_has_four_digits() {
        assert!(Cvv::parse("1234", CardBrand::Amex).is_ok());
        assert_eq!(
            Cvv::parse("123", CardBrand::Amex),
            Err(CardError::InvalidCvv { expected: 4 })
        );
        assert!(Cvv::parse("12a", CardBrand::Visa).is_err());
    }
}
