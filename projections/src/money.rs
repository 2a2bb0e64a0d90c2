//! Conversions between exact decimal amounts and the views' integer thousandths.

use caisse_domain::{Currency, Money};
use rust_decimal::Decimal;

/// Views store amounts as integers in thousandths of the major unit: exact for
/// every currency we accept (at most 3 minor units) and summable in SQL.
pub const MILLI_SCALE: u32 = 3;

pub fn to_milli(money: &Money) -> i64 {
    decimal_to_milli(money.amount()).expect("amounts are bounded far below i64 range")
}

pub fn decimal_to_milli(amount: Decimal) -> Option<i64> {
    let scaled = amount.checked_mul(Decimal::from(1000))?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    rust_decimal::prelude::ToPrimitive::to_i64(&scaled)
}

/// The amount as a string with the currency's minor units ("12.50", "100").
pub fn milli_to_string(milli: i64, currency: &str) -> String {
    let units = Currency::parse(currency)
        .map(|c| c.minor_units())
        .unwrap_or(MILLI_SCALE);
    let mut amount = Decimal::new(milli, MILLI_SCALE);
    amount.rescale(units);
    amount.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousandths_round_trip_for_every_minor_unit_count() {
        let eur = Money::parse_positive("12.5", "EUR").unwrap();
        assert_eq!(to_milli(&eur), 12_500);
        assert_eq!(milli_to_string(12_500, "EUR"), "12.50");
        assert_eq!(milli_to_string(100_000, "JPY"), "100");
        assert_eq!(milli_to_string(1_234, "KWD"), "1.234");
        assert_eq!(decimal_to_milli(Decimal::new(12345, 4)), None);
    }
}
