//! The `risk` projection (RC-1..8, SE-1): the shops' risk settings and 3-D
//! Secure enrolment, their grey lists, each payment's risk decision, how often
//! each control ran and fired per day, and the card outstanding per card and
//! day; and `ViewGreyLists`, the source the in-memory grey-list index of each
//! shop reads.
//!
//! A payment's risk decision (`risk_decisions`) is written at its first event
//! and updated by the later ones: a payment that waits for its 3-D Secure
//! challenge (`PaymentAuthenticationPending`) gets its row then, the challenge's
//! result (`PaymentAuthenticated`) adds the controls run after it, and the
//! authorisation, refusal or card check that follows in the same commit gives
//! the final details. Rule counts (`risk_rule_counts`) count each control once
//! per payment: each event adds only what its checks add to those already
//! recorded in the payment's decision, so the completion counts nothing twice.
//! They are dated on the payment's decision day.
//!
//! Only this projection's own tables are read while applying an event (never
//! payments_view): a projection can be rebuilt alone.

use std::collections::BTreeMap;

use async_trait::async_trait;
use caisse_application::context::METADATA_ACTOR;
use caisse_application::ports::{GreyListRow, GreyListSource};
use caisse_application::AppError;
use caisse_domain::grey_list::{GreyListEntry, GreyListEvent, GreyListKind};
use caisse_domain::outstanding::{CardOutstanding, OutstandingEvent};
use caisse_domain::payment::{Payment, PaymentDetails, PaymentEvent, Refusal, RefusalCategory};
use caisse_domain::risk::{
    ControlCheck, ControlMode, RiskAssessment, RiskSettingsEvent, ShopRiskSettings,
};
use caisse_domain::ShopId;
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::{date_text, parse_timestamp, timestamp_text};
use caisse_infrastructure::{Db, SqlValue, Tx};
use cqrs_es::Aggregate;

use crate::money::to_milli;
use crate::payments::fired_list;
use crate::projector::Projection;

pub struct RiskProjection;

#[async_trait]
impl Projection for RiskProjection {
    fn name(&self) -> &'static str {
        "risk"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "grey_list_entries",
            "risk_settings_view",
            "three_ds_settings_view",
            "risk_decisions",
            "risk_rule_counts",
            "risk_card_outstanding",
            "risk_outstanding_reservations",
        ]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        let aggregate_type = event.aggregate_type.as_str();
        if aggregate_type == Payment::TYPE {
            // Most payment events do not concern risk: skip them unparsed.
            if !matches!(
                event.event_type.as_str(),
                "PaymentAuthorised"
                    | "PaymentRefused"
                    | "PaymentAwaitingAuthorisation"
                    | "PaymentAuthenticationPending"
                    | "PaymentAuthenticated"
            ) {
                return Ok(());
            }
            apply_payment_event(tx, event, parse(event)?).await
        } else if aggregate_type == ShopRiskSettings::TYPE {
            apply_settings_event(tx, parse(event)?).await
        } else if aggregate_type == GreyListEntry::TYPE {
            apply_grey_list_event(tx, event, parse(event)?).await
        } else if aggregate_type == CardOutstanding::TYPE {
            apply_outstanding_event(tx, event, parse(event)?).await
        } else {
            Ok(())
        }
    }
}

fn parse<E: serde::de::DeserializeOwned>(event: &LoggedEvent) -> Result<E, AppError> {
    serde_json::from_value(event.payload.clone()).map_err(|error| {
        AppError::internal(format!(
            "{} event {}: {error}",
            event.aggregate_type, event.position.global_position
        ))
    })
}

/// Who did it, from the event's metadata (`actor`), when recorded.
fn actor(event: &LoggedEvent) -> Option<String> {
    event
        .metadata
        .get(METADATA_ACTOR)
        .and_then(|actor| actor.as_str())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

async fn apply_settings_event(tx: &mut Tx, event: RiskSettingsEvent) -> Result<(), AppError> {
    match event {
        RiskSettingsEvent::RiskControlConfigured {
            shop_id,
            control,
            setting,
            occurred_at,
            ..
        } => {
            let parameters =
                serde_json::to_string(&setting.parameters).map_err(AppError::internal)?;
            tx.execute(
                "INSERT INTO risk_settings_view (shop_id, control, mode, parameters_json, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (shop_id, control) DO UPDATE SET mode = excluded.mode,
                     parameters_json = excluded.parameters_json, updated_at = excluded.updated_at",
                &[
                    shop_id.to_string().into(),
                    control.as_str().into(),
                    setting.mode.as_str().into(),
                    parameters.into(),
                    timestamp_text(occurred_at).into(),
                ],
            )
            .await?;
        }
        RiskSettingsEvent::ThreeDsEnrolmentConfigured {
            shop_id,
            enrolment,
            occurred_at,
            ..
        } => {
            let brands: Vec<&str> = enrolment.brands.iter().map(|b| b.as_str()).collect();
            let channels: Vec<&str> = enrolment.channels.iter().map(|c| c.as_str()).collect();
            tx.execute(
                "INSERT INTO three_ds_settings_view (shop_id, brands, channels, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (shop_id) DO UPDATE SET brands = excluded.brands,
                     channels = excluded.channels, updated_at = excluded.updated_at",
                &[
                    shop_id.to_string().into(),
                    brands.join(",").into(),
                    channels.join(",").into(),
                    timestamp_text(occurred_at).into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Grey lists
// ---------------------------------------------------------------------------

/// The next change number of a shop's grey lists. Numbered in the order the
/// projector applies events (commit order), which the global position is not on
/// PostgreSQL: a reader that saw `seq` n can never miss a change numbered below n.
/// A rebuild replays the same events in the same order, so gives the same numbers.
async fn next_grey_list_seq(tx: &mut Tx, shop_id: &str) -> Result<i64, AppError> {
    Ok(tx
        .fetch_optional(
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS seq FROM grey_list_entries WHERE shop_id = $1",
            &[shop_id.into()],
        )
        .await?
        .and_then(|row| row.opt_int("seq"))
        .unwrap_or(0)
        + 1)
}

async fn apply_grey_list_event(
    tx: &mut Tx,
    event: &LoggedEvent,
    grey_list_event: GreyListEvent,
) -> Result<(), AppError> {
    let entry_id = event.aggregate_id.as_str();
    match grey_list_event {
        // A value added again after its removal is the same entry, listed anew.
        GreyListEvent::GreyListEntryAdded {
            shop_id,
            kind,
            value,
            expires_at,
            comment,
            occurred_at,
        } => {
            let shop_id = shop_id.to_string();
            let seq = next_grey_list_seq(tx, &shop_id).await?;
            tx.execute(
                "INSERT INTO grey_list_entries (entry_id, shop_id, kind, value, expires_at, comment, added_at,
                                                added_by, removed_at, removed_by, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9)
                 ON CONFLICT (entry_id) DO UPDATE SET shop_id = excluded.shop_id, kind = excluded.kind,
                     value = excluded.value, expires_at = excluded.expires_at, comment = excluded.comment,
                     added_at = excluded.added_at, added_by = excluded.added_by, removed_at = NULL,
                     removed_by = NULL, seq = excluded.seq",
                &[
                    entry_id.into(),
                    shop_id.into(),
                    kind.as_str().into(),
                    value.into(),
                    expires_at.map(timestamp_text).into(),
                    comment.into(),
                    timestamp_text(occurred_at).into(),
                    actor(event).into(),
                    seq.into(),
                ],
            )
            .await?;
        }
        GreyListEvent::GreyListEntryRemoved {
            shop_id,
            occurred_at,
            ..
        } => {
            let shop_id = shop_id.to_string();
            let seq = next_grey_list_seq(tx, &shop_id).await?;
            tx.execute(
                "UPDATE grey_list_entries SET removed_at = $2, removed_by = $3, seq = $4 WHERE entry_id = $1",
                &[
                    entry_id.into(),
                    timestamp_text(occurred_at).into(),
                    actor(event).into(),
                    seq.into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// The grey lists' source for the in-memory index of each shop (the
/// `grey_list_entries` view).
pub struct ViewGreyLists {
    pub db: Db,
}

#[async_trait]
impl GreyListSource for ViewGreyLists {
    async fn changed_since(
        &self,
        shop_id: ShopId,
        after_seq: i64,
    ) -> Result<Vec<GreyListRow>, AppError> {
        let rows = self
            .db
            .fetch_all(
                "SELECT entry_id, kind, value, expires_at, comment, removed_at, seq FROM grey_list_entries
                  WHERE shop_id = $1 AND seq > $2 ORDER BY seq",
                &[shop_id.to_string().into(), after_seq.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let entry_id = row.text("entry_id");
                let bad = |what: &str| {
                    AppError::internal(format!("grey list entry {entry_id}: bad {what}"))
                };
                let kind = GreyListKind::parse(&row.text("kind")).ok_or_else(|| bad("kind"))?;
                let expires_at = match row.opt_text("expires_at") {
                    Some(text) => Some(parse_timestamp(&text).ok_or_else(|| bad("expires_at"))?),
                    None => None,
                };
                Ok(GreyListRow {
                    kind,
                    value: row.text("value"),
                    expires_at,
                    comment: row.opt_text("comment"),
                    removed: row.opt_text("removed_at").is_some(),
                    seq: row.int("seq"),
                    entry_id,
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Risk decisions and rule counts
// ---------------------------------------------------------------------------

/// What one payment's checks say of each control: whether it ran, fired while
/// blocking, fired while informative. A control checked twice (before and after
/// 3-D Secure) counts once.
type ControlSummary = BTreeMap<&'static str, (bool, bool, bool)>;

fn summarise(checks: &[ControlCheck]) -> ControlSummary {
    let mut summary = ControlSummary::new();
    for check in checks.iter().filter(|check| check.mode != ControlMode::Off) {
        let entry = summary.entry(check.control.as_str()).or_default();
        entry.0 = true;
        entry.1 |= check.fired && check.mode == ControlMode::Blocking;
        entry.2 |= check.fired && check.mode == ControlMode::Informative;
    }
    summary
}

/// Adds to the day's rule counts what `after` counts beyond `before` (a
/// payment's checks before and after an event).
async fn count_rules(
    tx: &mut Tx,
    shop_id: &str,
    mode: &str,
    business_date: &str,
    before: &[ControlCheck],
    after: &[ControlCheck],
) -> Result<(), AppError> {
    let before = summarise(before);
    let mut after = summarise(after);
    // Never less than already counted: an event only adds checks.
    for (control, (ran, blocking, informative)) in &before {
        let entry = after.entry(control).or_default();
        entry.0 |= ran;
        entry.1 |= blocking;
        entry.2 |= informative;
    }
    for (control, (ran, blocking, informative)) in after {
        let (ran_before, blocking_before, informative_before) =
            before.get(control).copied().unwrap_or_default();
        let delta = |now: bool, then: bool| i64::from(now && !then);
        let (ran, blocking, informative) = (
            delta(ran, ran_before),
            delta(blocking, blocking_before),
            delta(informative, informative_before),
        );
        if ran + blocking + informative == 0 {
            continue;
        }
        tx.execute(
            "INSERT INTO risk_rule_counts (shop_id, mode, business_date, control, fired_blocking,
                                           fired_informative, ran)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (shop_id, mode, business_date, control) DO UPDATE SET
                 fired_blocking = risk_rule_counts.fired_blocking + excluded.fired_blocking,
                 fired_informative = risk_rule_counts.fired_informative + excluded.fired_informative,
                 ran = risk_rule_counts.ran + excluded.ran",
            &[
                shop_id.into(),
                mode.into(),
                business_date.into(),
                control.into(),
                blocking.into(),
                informative.into(),
                ran.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// A payment's decision as recorded so far.
struct RecordedDecision {
    shop_id: String,
    mode: String,
    business_date: String,
    checks: Vec<ControlCheck>,
}

async fn recorded_decision(
    tx: &mut Tx,
    payment_id: &str,
) -> Result<Option<RecordedDecision>, AppError> {
    let Some(row) = tx
        .fetch_optional(
            "SELECT shop_id, mode, business_date, checks_json FROM risk_decisions WHERE payment_id = $1",
            &[payment_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let checks = serde_json::from_str(&row.text("checks_json")).map_err(|error| {
        AppError::internal(format!(
            "risk decision of {payment_id}: checks_json: {error}"
        ))
    })?;
    Ok(Some(RecordedDecision {
        shop_id: row.text("shop_id"),
        mode: row.text("mode"),
        business_date: row.text("business_date"),
        checks,
    }))
}

fn checks_json(checks: &[ControlCheck]) -> Result<String, AppError> {
    serde_json::to_string(checks).map_err(AppError::internal)
}

/// The refusal the risk step gave: a blocking control (`RISK_*`) or a failed
/// 3-D Secure authentication. An acquirer's refusal is not a risk decision.
fn risk_refusal(refusal: Option<&Refusal>) -> Option<String> {
    refusal
        .filter(|refusal| {
            matches!(
                refusal.category,
                RefusalCategory::Risk | RefusalCategory::Authentication
            )
        })
        .map(|refusal| refusal.code.clone())
}

async fn apply_payment_event(
    tx: &mut Tx,
    event: &LoggedEvent,
    payment_event: PaymentEvent,
) -> Result<(), AppError> {
    let payment_id = event.aggregate_id.as_str();
    let position = event.position.global_position;
    let (details, refusal) = match &payment_event {
        PaymentEvent::PaymentAuthorised { details, .. }
        | PaymentEvent::PaymentAwaitingAuthorisation { details, .. }
        | PaymentEvent::PaymentAuthenticationPending { details, .. } => (details, None),
        PaymentEvent::PaymentRefused { details, refusal } => (details, Some(refusal)),
        PaymentEvent::PaymentAuthenticated {
            three_ds, checks, ..
        } => {
            // The challenge's result and the controls run after it (RC-8).
            let Some(recorded) = recorded_decision(tx, payment_id).await? else {
                return Ok(());
            };
            let mut all = recorded.checks.clone();
            all.extend(checks.iter().cloned());
            count_rules(
                tx,
                &recorded.shop_id,
                &recorded.mode,
                &recorded.business_date,
                &recorded.checks,
                &all,
            )
            .await?;
            let assessment = RiskAssessment {
                checks: all,
                ..RiskAssessment::default()
            };
            tx.execute(
                "UPDATE risk_decisions SET outcome = $2, fired = $3, checks_json = $4, guarantee = $5,
                        global_position = $6
                  WHERE payment_id = $1",
                &[
                    payment_id.into(),
                    assessment.outcome().as_str().into(),
                    fired_list(&assessment).into(),
                    checks_json(&assessment.checks)?.into(),
                    three_ds.guarantee.as_str().into(),
                    position.into(),
                ],
            )
            .await?;
            return Ok(());
        }
        _ => return Ok(()),
    };
    record_decision(tx, event, details, refusal).await
}

/// Writes a payment's decision from the details its event carries: a new row at
/// its first event, the final details at the completion of a 3-D Secure
/// challenge (whose checks `PaymentAuthenticated` already counted).
async fn record_decision(
    tx: &mut Tx,
    event: &LoggedEvent,
    details: &PaymentDetails,
    refusal: Option<&Refusal>,
) -> Result<(), AppError> {
    let payment_id = event.aggregate_id.as_str();
    let recorded = recorded_decision(tx, payment_id).await?;
    let shop_id = details.shop_id.to_string();
    let mode = details.mode.as_str();
    let business_date = date_text(details.occurred_at.date_naive());
    let checks = &details.risk.checks;
    match &recorded {
        None => count_rules(tx, &shop_id, mode, &business_date, &[], checks).await?,
        Some(recorded) => {
            count_rules(
                tx,
                &recorded.shop_id,
                &recorded.mode,
                &recorded.business_date,
                &recorded.checks,
                checks,
            )
            .await?
        }
    }
    // A completion keeps the decision's time and day: when the payment was assessed.
    tx.execute(
        "INSERT INTO risk_decisions (payment_id, shop_id, mode, occurred_at, business_date, outcome, fired,
                                     refusal_code, checks_json, card_fingerprint, amount_milli, currency,
                                     guarantee, global_position)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (payment_id) DO UPDATE SET outcome = excluded.outcome, fired = excluded.fired,
             refusal_code = excluded.refusal_code, checks_json = excluded.checks_json,
             card_fingerprint = excluded.card_fingerprint, amount_milli = excluded.amount_milli,
             currency = excluded.currency, guarantee = excluded.guarantee,
             global_position = excluded.global_position",
        &[
            payment_id.into(),
            shop_id.into(),
            mode.into(),
            timestamp_text(details.occurred_at).into(),
            business_date.into(),
            details.risk.outcome().as_str().into(),
            fired_list(&details.risk).into(),
            risk_refusal(refusal).into(),
            checks_json(checks)?.into(),
            details.card.fingerprint.as_str().into(),
            to_milli(&details.amount).into(),
            details.amount.currency().code().into(),
            details.three_ds.guarantee.as_str().into(),
            event.position.global_position.into(),
        ],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Card outstanding
// ---------------------------------------------------------------------------

/// The mode and card fingerprint of a `CardOutstanding` aggregate, from its id
/// `outstanding_{shop_id}_{MODE}_{fingerprint}`.
fn outstanding_card<'a>(aggregate_id: &'a str, shop_id: &str) -> Option<(&'a str, &'a str)> {
    aggregate_id
        .strip_prefix("outstanding_")?
        .strip_prefix(shop_id)?
        .strip_prefix('_')?
        .split_once('_')
}

async fn add_outstanding(
    tx: &mut Tx,
    key: [&str; 5],
    amount_milli: i64,
    payment_count: i64,
) -> Result<(), AppError> {
    let mut params: Vec<SqlValue> = key.iter().map(|part| (*part).into()).collect();
    params.push(amount_milli.into());
    params.push(payment_count.into());
    tx.execute(
        "INSERT INTO risk_card_outstanding (shop_id, mode, card_fingerprint, business_date, currency,
                                            amount_milli, payment_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (shop_id, mode, card_fingerprint, business_date, currency) DO UPDATE SET
             amount_milli = risk_card_outstanding.amount_milli + excluded.amount_milli,
             payment_count = risk_card_outstanding.payment_count + excluded.payment_count",
        &params,
    )
    .await?;
    // A day whose payments were all released is nothing any more.
    tx.execute(
        "DELETE FROM risk_card_outstanding
          WHERE shop_id = $1 AND mode = $2 AND card_fingerprint = $3 AND business_date = $4
            AND currency = $5 AND payment_count = 0 AND amount_milli = 0",
        &key.iter()
            .map(|part| (*part).into())
            .collect::<Vec<SqlValue>>(),
    )
    .await?;
    Ok(())
}

async fn apply_outstanding_event(
    tx: &mut Tx,
    event: &LoggedEvent,
    outstanding_event: OutstandingEvent,
) -> Result<(), AppError> {
    match outstanding_event {
        OutstandingEvent::OutstandingReserved {
            shop_id,
            payment_id,
            amount,
            occurred_at,
            ..
        } => {
            let shop_id = shop_id.to_string();
            // The application names every such aggregate so; an id that does
            // not is left out rather than stopping the projection for good.
            let Some((mode, fingerprint)) = outstanding_card(&event.aggregate_id, &shop_id) else {
                tracing::warn!(
                    aggregate_id = event.aggregate_id.as_str(),
                    "card outstanding: the id does not name its shop, a mode and a card; not counted"
                );
                return Ok(());
            };
            let business_date = date_text(occurred_at.date_naive());
            let currency = amount.currency().code().to_string();
            let currency = currency.as_str();
            let milli = to_milli(&amount);
            // A payment is reserved once (the aggregate ignores a second
            // reservation); the clause keeps the view able to take any log.
            let inserted = tx
                .execute(
                    "INSERT INTO risk_outstanding_reservations (payment_id, shop_id, mode, card_fingerprint,
                                                               business_date, currency, amount_milli, released)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0)
                     ON CONFLICT (payment_id) DO NOTHING",
                    &[
                        payment_id.to_string().into(),
                        shop_id.as_str().into(),
                        mode.into(),
                        fingerprint.into(),
                        business_date.as_str().into(),
                        currency.into(),
                        milli.into(),
                    ],
                )
                .await?;
            if inserted == 1 {
                add_outstanding(
                    tx,
                    [&shop_id, mode, fingerprint, &business_date, currency],
                    milli,
                    1,
                )
                .await?;
            }
        }
        // Taken off the day the reservation was counted on.
        OutstandingEvent::OutstandingReleased { payment_id, .. } => {
            let payment_id = payment_id.to_string();
            let Some(reservation) = tx
                .fetch_optional(
                    "SELECT shop_id, mode, card_fingerprint, business_date, currency, amount_milli
                       FROM risk_outstanding_reservations WHERE payment_id = $1 AND released = 0",
                    &[payment_id.as_str().into()],
                )
                .await?
            else {
                return Ok(());
            };
            tx.execute(
                "UPDATE risk_outstanding_reservations SET released = 1 WHERE payment_id = $1",
                &[payment_id.into()],
            )
            .await?;
            let (shop_id, mode, fingerprint, business_date, currency) = (
                reservation.text("shop_id"),
                reservation.text("mode"),
                reservation.text("card_fingerprint"),
                reservation.text("business_date"),
                reservation.text("currency"),
            );
            add_outstanding(
                tx,
                [&shop_id, &mode, &fingerprint, &business_date, &currency],
                -reservation.int("amount_milli"),
                -1,
            )
            .await?;
        }
    }
    Ok(())
}
