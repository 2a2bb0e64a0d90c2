//! The `payments` projection: one row per payment (payments_view) and one row per
//! money movement (cash_movements) for the cash-management totals.
//!
//! 3-D Secure (SE-1, SE-2): a payment waiting for its challenge has a row
//! (AUTHENTICATION_PENDING, nothing authorised, no movement); the authorisation,
//! refusal or card check that completes it, in the same commit as its
//! `PaymentAuthenticated`, updates that row. An abandoned challenge ends as
//! ABANDONED with a movement of that kind (nothing authorised, like a refusal).
//! Each movement carries the payment's guarantee at the time.
//!
//! Retention (CM-12): on `OnlineViewsTrimmed` the payments created before the date
//! leave payments_view for archived_payments (a few columns each, kept for good),
//! and the cash movements of business dates before it are deleted. An event that
//! arrives later for an archived payment (a refund of an old capture) records its
//! cash movement, which is recent, from the archived_payments row, and leaves
//! payments_view without a row for it: the payment's state is read from the log
//! (`payment(id)` answers `archived: true`), not resurrected as a partial row.

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::payment::{CaptureMode, Payment, PaymentEvent};
use caisse_domain::retention::{RetentionEvent, ViewRetention};
use caisse_domain::risk::RiskAssessment;
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::{date_text, timestamp_text};
use caisse_infrastructure::{SqlValue, Tx};
use cqrs_es::Aggregate;

use crate::money::to_milli;
use crate::projector::Projection;

pub struct PaymentsProjection;

/// The row of a payment's creation event. A payment that waited for its 3-D
/// Secure challenge already has one: the event that completes it (authorised,
/// refused or awaiting its authorisation) updates it, keeping `created_at`. A
/// payment the retention archived gets no row back.
const UPSERT_PAYMENT: &str = "
INSERT INTO payments_view (payment_id, shop_id, mode, order_reference, status, currency, amount_milli,
    authorised_milli, channel, capture_mode, capture_date, card_brand, card_networks, card_bin,
    card_last_four, card_expiry_month, card_expiry_year, card_holder_name, buyer_email, buyer_ip,
    authorisation_code, refusal_code, refusal_message, duplicated_from, created_at, updated_at, last_sequence,
    capture_trigger, acquirer_contract, plan_id, instalment_number, typology,
    three_ds_enrolled, three_ds_status, three_ds_transaction_id, guarantee, risk_outcome, risk_fired,
    buyer_country, card_country, buyer_language)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
    $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41
 WHERE NOT EXISTS (SELECT 1 FROM archived_payments WHERE payment_id = $1)
ON CONFLICT (payment_id) DO UPDATE SET
    status = excluded.status, amount_milli = excluded.amount_milli,
    authorised_milli = excluded.authorised_milli, capture_mode = excluded.capture_mode,
    capture_date = excluded.capture_date, authorisation_code = excluded.authorisation_code,
    refusal_code = excluded.refusal_code, refusal_message = excluded.refusal_message,
    updated_at = excluded.updated_at, last_sequence = excluded.last_sequence,
    capture_trigger = excluded.capture_trigger, acquirer_contract = excluded.acquirer_contract,
    typology = excluded.typology, three_ds_enrolled = excluded.three_ds_enrolled,
    three_ds_status = excluded.three_ds_status,
    three_ds_transaction_id = excluded.three_ds_transaction_id, guarantee = excluded.guarantee,
    risk_outcome = excluded.risk_outcome, risk_fired = excluded.risk_fired,
    buyer_country = excluded.buyer_country, card_country = excluded.card_country,
    buyer_language = excluded.buyer_language";

/// The controls that fired, comma-separated, as payments_view and
/// risk_decisions store them; `None` when none did.
pub fn fired_list(risk: &RiskAssessment) -> Option<String> {
    let mut fired: Vec<&str> = Vec::new();
    for check in risk.fired() {
        if !fired.contains(&check.control.as_str()) {
            fired.push(check.control.as_str());
        }
    }
    (!fired.is_empty()).then(|| fired.join(","))
}

#[async_trait]
impl Projection for PaymentsProjection {
    fn name(&self) -> &'static str {
        "payments"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["payments_view", "cash_movements", "archived_payments"]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type == ViewRetention::TYPE {
            return trim(tx, event).await;
        }
        if event.aggregate_type != Payment::TYPE {
            return Ok(());
        }
        let payment_event: PaymentEvent =
            serde_json::from_value(event.payload.clone()).map_err(|error| {
                AppError::internal(format!(
                    "payment event {}: {error}",
                    event.position.global_position
                ))
            })?;
        let payment_id = event.aggregate_id.as_str();
        let at = timestamp_text(payment_event.occurred_at());
        let business_date = date_text(payment_event.occurred_at().date_naive());
        let sequence = event.sequence;
        match &payment_event {
            PaymentEvent::PaymentAuthorised { details, .. }
            | PaymentEvent::PaymentRefused { details, .. }
            | PaymentEvent::PaymentAwaitingAuthorisation { details, .. }
            | PaymentEvent::PaymentAuthenticationPending { details, .. } => {
                let (status, authorisation_code, refusal) = match &payment_event {
                    // Card checked only: nothing is authorised yet (TY-4).
                    PaymentEvent::PaymentAwaitingAuthorisation { .. } => {
                        ("WAITING_AUTHORISATION", None, None)
                    }
                    // Waiting for the 3-D Secure challenge: nothing authorised yet.
                    PaymentEvent::PaymentAuthenticationPending { .. } => {
                        ("AUTHENTICATION_PENDING", None, None)
                    }
                    PaymentEvent::PaymentAuthorised { authorisation, .. } => {
                        let status = match details.capture_mode {
                            CaptureMode::Automatic => "AUTHORISED",
                            CaptureMode::Manual => "AUTHORISED_TO_VALIDATE",
                        };
                        (status, Some(authorisation.authorisation_code.clone()), None)
                    }
                    PaymentEvent::PaymentRefused { refusal, .. } => {
                        ("REFUSED", None, Some(refusal.clone()))
                    }
                    _ => unreachable!("matched above"),
                };
                let nothing_authorised =
                    matches!(status, "WAITING_AUTHORISATION" | "AUTHENTICATION_PENDING");
                let card = &details.card;
                let networks: Vec<&str> =
                    card.networks.iter().map(|brand| brand.as_str()).collect();
                let amount = to_milli(&details.amount);
                let guarantee = details.three_ds.guarantee.as_str();
                let params: Vec<SqlValue> = vec![
                    payment_id.into(),
                    details.shop_id.to_string().into(),
                    details.mode.as_str().into(),
                    details.order_reference.as_str().into(),
                    status.into(),
                    details.amount.currency().code().into(),
                    amount.into(),
                    // Only the card was checked, or the buyer is still being
                    // authenticated: nothing authorised until the grant.
                    if nothing_authorised { 0 } else { amount }.into(),
                    details.channel.as_str().into(),
                    match details.capture_mode {
                        CaptureMode::Automatic => "AUTOMATIC",
                        CaptureMode::Manual => "MANUAL",
                    }
                    .into(),
                    date_text(details.capture_date).into(),
                    card.brand.as_str().into(),
                    networks.join(",").into(),
                    card.bin.as_str().into(),
                    card.last_four.as_str().into(),
                    i64::from(card.expiry.month).into(),
                    i64::from(card.expiry.year).into(),
                    card.holder_name.clone().into(),
                    details.buyer_email.clone().into(),
                    details.buyer_ip.clone().into(),
                    authorisation_code.into(),
                    refusal.as_ref().map(|r| r.code.clone()).into(),
                    refusal.as_ref().map(|r| r.message.clone()).into(),
                    details.duplicated_from.map(|id| id.to_string()).into(),
                    at.as_str().into(),
                    at.as_str().into(),
                    sequence.into(),
                    details.capture_trigger.as_str().into(),
                    details.acquirer_contract.as_str().into(),
                    details
                        .instalment_of
                        .map(|link| link.plan_id.to_string())
                        .into(),
                    details
                        .instalment_of
                        .map(|link| i64::from(link.number))
                        .into(),
                    details.typology().into(),
                    details.three_ds.enrolled.as_str().into(),
                    details.three_ds.status.as_str().into(),
                    details.three_ds.transaction_id.clone().into(),
                    guarantee.into(),
                    details.risk.outcome().as_str().into(),
                    fired_list(&details.risk).into(),
                    details.buyer_country.clone().into(),
                    card.issuing_country.clone().into(),
                    details.buyer_language.clone().into(),
                ];
                tx.execute(UPSERT_PAYMENT, &params).await?;
                let kind = match (status, &refusal) {
                    (_, Some(_)) => Some("REFUSED"),
                    _ if nothing_authorised => None,
                    (_, None) => Some("AUTHORISED"),
                };
                if let Some(kind) = kind {
                    record_movement(
                        tx,
                        event,
                        payment_id,
                        &business_date,
                        kind,
                        amount,
                        Some(guarantee),
                    )
                    .await?;
                }
            }
            // The challenge's result; the authorisation, refusal or card check
            // that follows in the same commit completes the row.
            PaymentEvent::PaymentAuthenticated { three_ds, .. } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "three_ds_enrolled = $4, three_ds_status = $5, three_ds_transaction_id = $6, \
                     guarantee = $7",
                    &[
                        three_ds.enrolled.as_str().into(),
                        three_ds.status.as_str().into(),
                        three_ds.transaction_id.clone().into(),
                        three_ds.guarantee.as_str().into(),
                    ],
                )
                .await?;
            }
            // Nobody answered the challenge: nothing was authorised. Recorded as a
            // movement of its own kind, like a refusal, so the cash totals count
            // the attempt. (A challenge lasts minutes and the retention keeps
            // months: an archived payment cannot be abandoned; were it, its
            // amount is unknown here and no movement is recorded.)
            PaymentEvent::PaymentAuthenticationAbandoned { .. } => {
                update(tx, payment_id, sequence, &at, "status = 'ABANDONED'", &[]).await?;
                let amount = tx
                    .fetch_optional(
                        "SELECT amount_milli FROM payments_view WHERE payment_id = $1",
                        &[payment_id.into()],
                    )
                    .await?
                    .map(|row| row.int("amount_milli"));
                if let Some(amount) = amount {
                    record_movement(
                        tx,
                        event,
                        payment_id,
                        &business_date,
                        "ABANDONED",
                        amount,
                        None,
                    )
                    .await?;
                }
            }
            PaymentEvent::DeferredAuthorisationGranted {
                amount,
                authorisation,
                ..
            } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "status = CASE WHEN capture_mode = 'MANUAL' THEN 'AUTHORISED_TO_VALIDATE' \
                     ELSE 'AUTHORISED' END, authorisation_code = $4, authorised_milli = $5",
                    &[
                        authorisation.authorisation_code.clone().into(),
                        to_milli(amount).into(),
                    ],
                )
                .await?;
                record_movement(
                    tx,
                    event,
                    payment_id,
                    &business_date,
                    "AUTHORISED",
                    to_milli(amount),
                    None,
                )
                .await?;
            }
            PaymentEvent::DeferredAuthorisationRefused {
                amount, refusal, ..
            } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "status = 'REFUSED', refusal_code = $4, refusal_message = $5",
                    &[refusal.code.clone().into(), refusal.message.clone().into()],
                )
                .await?;
                record_movement(
                    tx,
                    event,
                    payment_id,
                    &business_date,
                    "REFUSED",
                    to_milli(amount),
                    None,
                )
                .await?;
            }
            PaymentEvent::PaymentValidated { .. } => {
                update(tx, payment_id, sequence, &at, "status = 'AUTHORISED'", &[]).await?;
            }
            PaymentEvent::PaymentModified {
                amount,
                capture_date,
                ..
            } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "amount_milli = $4, capture_date = $5",
                    &[to_milli(amount).into(), date_text(*capture_date).into()],
                )
                .await?;
            }
            PaymentEvent::PaymentCancelled { amount, .. } => {
                // A payment still waiting for its deferred authorisation had
                // nothing authorised: cancelling it moves no money.
                let was_waiting = tx
                    .fetch_optional(
                        "SELECT status FROM payments_view WHERE payment_id = $1",
                        &[payment_id.into()],
                    )
                    .await?
                    .is_some_and(|row| row.text("status") == "WAITING_AUTHORISATION");
                update(tx, payment_id, sequence, &at, "status = 'CANCELLED'", &[]).await?;
                if !was_waiting {
                    record_movement(
                        tx,
                        event,
                        payment_id,
                        &business_date,
                        "CANCELLED",
                        to_milli(amount),
                        None,
                    )
                    .await?;
                }
            }
            PaymentEvent::ShipmentDeclared {
                carrier,
                tracking_number,
                capture_date,
                ..
            } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "shipped_at = $3, carrier = $4, tracking_number = $5, \
                     capture_date = COALESCE($6, capture_date)",
                    &[
                        carrier.clone().into(),
                        tracking_number.clone().into(),
                        capture_date.map(date_text).into(),
                    ],
                )
                .await?;
            }
            PaymentEvent::DeliveryDeclared { capture_date, .. } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "delivered_at = $3, capture_date = COALESCE($4, capture_date)",
                    &[capture_date.map(date_text).into()],
                )
                .await?;
            }
            // A new hold on the same amount: no cash movement.
            PaymentEvent::PaymentReauthorised { authorisation, .. } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "authorisation_code = $4",
                    &[authorisation.authorisation_code.clone().into()],
                )
                .await?;
            }
            PaymentEvent::PaymentExpired { amount, .. } => {
                update(tx, payment_id, sequence, &at, "status = 'EXPIRED'", &[]).await?;
                record_movement(
                    tx,
                    event,
                    payment_id,
                    &business_date,
                    "EXPIRED",
                    to_milli(amount),
                    None,
                )
                .await?;
            }
            PaymentEvent::PaymentCaptured {
                remittance_id,
                amount,
                ..
            } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "status = 'CAPTURED', captured_milli = $4, remittance_id = $5",
                    &[to_milli(amount).into(), remittance_id.to_string().into()],
                )
                .await?;
                record_movement(
                    tx,
                    event,
                    payment_id,
                    &business_date,
                    "CAPTURED",
                    to_milli(amount),
                    None,
                )
                .await?;
            }
            PaymentEvent::PaymentRefunded {
                amount,
                refunded_total,
                ..
            } => {
                update(
                    tx,
                    payment_id,
                    sequence,
                    &at,
                    "refunded_milli = $4,
                     status = CASE WHEN captured_milli = $5 THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END",
                    &[to_milli(refunded_total).into(), to_milli(refunded_total).into()],
                )
                .await?;
                record_movement(
                    tx,
                    event,
                    payment_id,
                    &business_date,
                    "REFUNDED",
                    to_milli(amount),
                    None,
                )
                .await?;
            }
            // The remittances projection follows the refund to the bank.
            PaymentEvent::RefundRemitted { .. } => {
                update(tx, payment_id, sequence, &at, "status = status", &[]).await?;
            }
            PaymentEvent::PaymentDuplicated { .. } => {
                // Nothing in the row changes but its sequence and time.
                update(tx, payment_id, sequence, &at, "status = status", &[]).await?;
            }
        }
        Ok(())
    }
}

/// Moves the payments created before the event's date from payments_view to
/// archived_payments and deletes the cash movements dated before it.
async fn trim(tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
    let retention_event: RetentionEvent =
        serde_json::from_value(event.payload.clone()).map_err(|error| {
            AppError::internal(format!(
                "retention event {}: {error}",
                event.position.global_position
            ))
        })?;
    let RetentionEvent::OnlineViewsTrimmed { created_before, .. } = retention_event;
    // payments_view.created_at is fixed-width RFC 3339 text, so the first instant
    // of the date compares as text exactly as the instants do.
    let first_instant_kept = timestamp_text(
        created_before
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc(),
    );
    let first_instant_kept = SqlValue::from(first_instant_kept);
    // ON CONFLICT: a payment is archived once; the clause only keeps a view able
    // to accept whatever the log holds.
    tx.execute(
        "INSERT INTO archived_payments (payment_id, shop_id, mode, currency, channel, created_at, guarantee)
         SELECT payment_id, shop_id, mode, currency, channel, created_at, guarantee
           FROM payments_view WHERE created_at < $1
         ON CONFLICT (payment_id) DO NOTHING",
        std::slice::from_ref(&first_instant_kept),
    )
    .await?;
    tx.execute(
        "DELETE FROM payments_view WHERE created_at < $1",
        &[first_instant_kept],
    )
    .await?;
    // cash_movements.business_date is YYYY-MM-DD text.
    tx.execute(
        "DELETE FROM cash_movements WHERE business_date < $1",
        &[date_text(created_before).into()],
    )
    .await?;
    Ok(())
}

/// Updates one payment row; `assignments` may use `$4` onwards. A payment the
/// retention archived has no row, and gets none back.
async fn update(
    tx: &mut Tx,
    payment_id: &str,
    sequence: i64,
    at: &str,
    assignments: &str,
    extra: &[SqlValue],
) -> Result<(), AppError> {
    let sql = format!(
        "UPDATE payments_view SET {assignments}, last_sequence = $2, updated_at = $3 WHERE payment_id = $1"
    );
    let mut params: Vec<SqlValue> = vec![payment_id.into(), sequence.into(), at.into()];
    params.extend_from_slice(extra);
    let updated = tx.execute(&sql, &params).await?;
    if updated != 1 && !is_archived(tx, payment_id).await? {
        return Err(AppError::internal(format!(
            "payments view has no row for {payment_id}"
        )));
    }
    Ok(())
}

async fn is_archived(tx: &mut Tx, payment_id: &str) -> Result<bool, AppError> {
    Ok(tx
        .fetch_optional(
            "SELECT payment_id FROM archived_payments WHERE payment_id = $1",
            &[payment_id.into()],
        )
        .await?
        .is_some())
}

/// Records one money movement of the payment, with its guarantee: `guarantee`
/// when the event carries it, otherwise the payment row's.
async fn record_movement(
    tx: &mut Tx,
    event: &LoggedEvent,
    payment_id: &str,
    business_date: &str,
    kind: &str,
    amount_milli: i64,
    guarantee: Option<&str>,
) -> Result<(), AppError> {
    // The payment's row is in exactly one of the two tables: payments_view while
    // online, archived_payments once the retention moved it.
    tx.execute(
        "INSERT INTO cash_movements (global_position, payment_id, shop_id, mode, business_date, currency, channel,
                                     kind, amount_milli, guarantee)
         SELECT $1, payment_id, shop_id, mode, $2, currency, channel, $3, $4, COALESCE($6, guarantee)
           FROM payments_view WHERE payment_id = $5
         UNION ALL
         SELECT $1, payment_id, shop_id, mode, $2, currency, channel, $3, $4, COALESCE($6, guarantee)
           FROM archived_payments WHERE payment_id = $5",
        &[
            event.position.global_position.into(),
            business_date.into(),
            kind.into(),
            amount_milli.into(),
            payment_id.into(),
            guarantee.map(str::to_string).into(),
        ],
    )
    .await?;
    Ok(())
}
