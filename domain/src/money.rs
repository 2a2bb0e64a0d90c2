//! Money: an exact decimal amount in an ISO 4217 currency, never a float.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The largest amount accepted in any currency, in major units. Putting a bound on
/// amounts keeps totals far from `Decimal`'s range and catches typos like extra zeros.
pub const AMOUNT_MAX: i64 = 1_000_000_000;

/// ISO 4217 codes we accept with their minor units (the number of decimals).
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PLN", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("ZAR", 2),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency `{0}`: expected an ISO 4217 code such as EUR")]
    UnknownCurrency(String),
    #[error("`{0}` is not a decimal amount (use digits and an optional `.`, e.g. 12.50)")]
    NotADecimal(String),
    #[error("amount {amount} has more decimals than {currency} allows ({minor_units})")]
    TooManyDecimals {
        amount: String,
        currency: String,
        minor_units: u32,
    },
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount exceeds the maximum of {AMOUNT_MAX}")]
    TooLarge,
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(String, String),
    #[error("result would be negative")]
    Negative,
}

impl MoneyError {
    /// Stable machine code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::UnknownCurrency(_) => "UNKNOWN_CURRENCY",
            MoneyError::NotADecimal(_) => "INVALID_AMOUNT",
            MoneyError::TooManyDecimals { .. } => "AMOUNT_TOO_MANY_DECIMALS",
            MoneyError::NotPositive => "AMOUNT_NOT_POSITIVE",
            MoneyError::TooLarge => "AMOUNT_TOO_LARGE",
            MoneyError::CurrencyMismatch(..) => "CURRENCY_MISMATCH",
            MoneyError::Negative => "AMOUNT_NEGATIVE",
        }
    }
}

/// An ISO 4217 currency code known to have a fixed number of minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        if CURRENCIES.iter().any(|(known, _)| *known == upper) {
            let bytes = upper.as_bytes();
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(MoneyError::UnknownCurrency(code.to_string()))
        }
    }

    pub fn code(&self) -> &str {
        // Only ASCII codes from the table above are ever constructed.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }

    pub fn minor_units(&self) -> u32 {
        CURRENCIES
            .iter()
            .find(|(known, _)| *known == self.code())
            .map(|(_, units)| *units)
            .expect("a Currency is only built from the table")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.code().to_string()
    }
}

/// A non-negative amount with exactly the currency's minor units as its scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Parses a positive amount as typed by a merchant ("12.5", "12.50", "1200").
    pub fn parse_positive(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        let currency = Currency::parse(currency)?;
        let trimmed = amount.trim();
        let valid_shape = !trimmed.is_empty()
            && trimmed
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            && trimmed.matches('.').count() <= 1;
        if !valid_shape {
            return Err(MoneyError::NotADecimal(amount.to_string()));
        }
        let value =
            Decimal::from_str(trimmed).map_err(|_| MoneyError::NotADecimal(amount.to_string()))?;
        Money::positive(value, currency)
    }

    /// Builds a positive amount, refusing more decimals than the currency has.
    pub fn positive(value: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let money = Money::non_negative(value, currency)?;
        if money.amount.is_zero() {
            return Err(MoneyError::NotPositive);
        }
        Ok(money)
    }

    /// Builds an amount that may be zero (totals, remaining balances).
    pub fn non_negative(value: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::NotPositive);
        }
        let minor_units = currency.minor_units();
        let normalized = value.normalize();
        if normalized.scale() > minor_units {
            return Err(MoneyError::TooManyDecimals {
                amount: value.to_string(),
                currency: currency.to_string(),
                minor_units,
            });
        }
        if normalized >= Decimal::from(AMOUNT_MAX) {
            return Err(MoneyError::TooLarge);
        }
        let mut amount = normalized;
        amount.rescale(minor_units);
        Ok(Money { amount, currency })
    }

    /// The amount in minor units (cents for EUR): exact, since amounts are kept
    /// at the currency's scale.
    pub fn in_minor_units(&self) -> i128 {
        self.amount.mantissa()
    }

    /// An amount from a count of minor units (non-negative).
    pub fn from_minor_units(units: i64, currency: Currency) -> Result<Self, MoneyError> {
        Money::non_negative(Decimal::new(units, currency.minor_units()), currency)
    }

    pub fn zero(currency: Currency) -> Self {
        let mut amount = Decimal::ZERO;
        amount.rescale(currency.minor_units());
        Money { amount, currency }
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.to_string(),
                other.currency.to_string(),
            ));
        }
        Ok(())
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::TooLarge)?;
        Ok(Money {
            amount: sum,
            currency: self.currency,
        })
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let difference = self.amount - other.amount;
        if difference.is_sign_negative() && !difference.is_zero() {
            return Err(MoneyError::Negative);
        }
        Ok(Money {
            amount: difference,
            currency: self.currency,
        })
    }

    /// Compares two amounts of the same currency.
    pub fn cmp_amount(&self, other: &Money) -> Result<std::cmp::Ordering, MoneyError> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euro_amounts_are_kept_with_two_decimals() {
        let money = Money::parse_positive("12.5", "eur").unwrap();
        assert_eq!(money.amount().to_string(), "12.50");
        assert_eq!(money.currency().code(), "EUR");
    }

    #[test]
    fn yen_refuses_decimals() {
        assert_eq!(
            Money::parse_positive("100.5", "JPY"),
            Err(MoneyError::TooManyDecimals {
                amount: "100.5".into(),
                currency: "JPY".into(),
                minor_units: 0
            })
        );
        assert_eq!(
            Money::parse_positive("100", "JPY")
                .unwrap()
                .amount()
                .to_string(),
            "100"
        );
    }

    #[test]
    fn trailing_zeros_beyond_minor_units_are_accepted() {
        assert_eq!(
            Money::parse_positive("10.500", "EUR")
                .unwrap()
                .amount()
                .to_string(),
            "10.50"
        );
    }

    #[test]
    fn zero_negative_and_garbage_are_refused() {
        assert_eq!(
            Money::parse_positive("0", "EUR"),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            Money::parse_positive("-1", "EUR"),
            Err(MoneyError::NotPositive)
        );
        assert!(matches!(
            Money::parse_positive("1e3", "EUR"),
            Err(MoneyError::NotADecimal(_))
        ));
        assert!(matches!(
            Money::parse_positive("", "EUR"),
            Err(MoneyError::NotADecimal(_))
        ));
        assert!(matches!(
            Money::parse_positive("1", "XYZ"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert_eq!(
            Money::parse_positive("1000000000", "EUR"),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn subtraction_never_goes_negative_and_currencies_never_mix() {
        let ten = Money::parse_positive("10", "EUR").unwrap();
        let eleven = Money::parse_positive("11", "EUR").unwrap();
        assert_eq!(ten.checked_sub(&eleven), Err(MoneyError::Negative));
        let yen = Money::parse_positive("10", "JPY").unwrap();
        assert!(matches!(
            ten.checked_add(&yen),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    #[test]
    fn money_serialises_its_amount_as_a_string() {
        let json = serde_json::to_value(Money::parse_positive("1.10", "EUR").unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"amount": "1.10", "currency": "EUR"})
        );
    }
}
