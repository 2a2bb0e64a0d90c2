//! Opaque cursors: base64 of a versioned text, so clients cannot depend on their shape.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use base64::Engine;
use caisse_application::ports::LogPosition;
use caisse_projections::queries::PaymentCursor;

fn encode(text: String) -> String {
    BASE64.encode(text)
}

fn decode(cursor: &str) -> Option<String> {
    String::from_utf8(BASE64.decode(cursor).ok()?).ok()
}

pub fn log_cursor(position: LogPosition) -> String {
    encode(format!(
        "log1:{}:{}",
        position.tx_id, position.global_position
    ))
}

pub fn parse_log_cursor(cursor: &str) -> Option<LogPosition> {
    let text = decode(cursor)?;
    let mut parts = text.strip_prefix("log1:")?.split(':');
    let tx_id = parts.next()?.parse().ok()?;
    let global_position = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(LogPosition {
        tx_id,
        global_position,
    })
}

pub fn payment_cursor(cursor: &PaymentCursor) -> String {
    encode(format!("pay1|{}|{}", cursor.created_at, cursor.payment_id))
}

pub fn parse_payment_cursor(cursor: &str) -> Option<PaymentCursor> {
    let text = decode(cursor)?;
    let mut parts = text.strip_prefix("pay1|")?.split('|');
    let created_at = parts.next()?.to_string();
    let payment_id = parts.next()?.to_string();
    parts.next().is_none().then_some(PaymentCursor {
        created_at,
        payment_id,
    })
}

pub fn remittance_cursor(remittance_id: &str) -> String {
    encode(format!("rem1|{remittance_id}"))
}

pub fn parse_remittance_cursor(cursor: &str) -> Option<String> {
    decode(cursor)?.strip_prefix("rem1|").map(str::to_string)
}

/// A keyset position of two text parts (time, id) under a prefix: the
/// cursors of grey-list entries (`grey1`) and risk decisions (`risk1`).
pub fn pair_cursor(prefix: &str, at: &str, id: &str) -> String {
    encode(format!("{prefix}|{at}|{id}"))
}

pub fn parse_pair_cursor(prefix: &str, cursor: &str) -> Option<(String, String)> {
    let text = decode(cursor)?;
    let mut parts = text.strip_prefix(prefix)?.strip_prefix('|')?.split('|');
    let at = parts.next()?.to_string();
    let id = parts.next()?.to_string();
    parts.next().is_none().then_some((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let position = LogPosition {
            tx_id: 42,
            global_position: 7,
        };
        assert_eq!(parse_log_cursor(&log_cursor(position)), Some(position));
        assert_eq!(parse_log_cursor("not a cursor"), None);
        let cursor = PaymentCursor {
            created_at: "2026-11-26T10:00:00.000000Z".into(),
            payment_id: "pay_1".into(),
        };
        assert_eq!(parse_payment_cursor(&payment_cursor(&cursor)), Some(cursor));
    }
}
