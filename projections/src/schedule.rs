//! The `schedule` projection: the scheduler's list of work due later — expiries
//! (or re-authorisations) of authorisations waiting for validation, shipping or
//! delivery, deferred authorisations, plan instalments and their retries, each
//! shop's daily remittance cut-off, 3-D Secure challenges to abandon — derived from events so a restart loses
//! nothing, and the read side the scheduler uses.

use async_trait::async_trait;
use caisse_application::cut_off::{cut_off_instant, following_cut_off, next_cut_off};
use caisse_application::ports::{ScheduledItem, ScheduledKind, ScheduledWork};
use caisse_application::AppError;
use caisse_domain::cut_off::{CutOffEvent, DailyCutOff};
use caisse_domain::merchant::{CutOffSchedule, Merchant, MerchantEvent};
use caisse_domain::payment::{CaptureMode, CaptureTrigger, Payment, PaymentEvent};
use caisse_domain::plan::{PaymentPlan, PlanEvent};
use caisse_domain::{Mode, PaymentId, ShopId};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::{date_text, parse_date, parse_timestamp, timestamp_text};
use caisse_infrastructure::{Db, SqlRow, SqlValue, Tx};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use cqrs_es::Aggregate;

use crate::projector::Projection;

pub const EXPIRE_AUTHORISATION: &str = "EXPIRE_AUTHORISATION";
pub const REMITTANCE_CUT_OFF: &str = "REMITTANCE_CUT_OFF";
pub const AUTHORISE_DEFERRED: &str = "AUTHORISE_DEFERRED";
pub const CHARGE_INSTALMENT: &str = "CHARGE_INSTALMENT";
pub const ABANDON_AUTHENTICATION: &str = "ABANDON_AUTHENTICATION";

/// Schedules: expiries of authorisations waiting for validation, shipping or
/// delivery; deferred authorisations (TY-4); each shop's daily cut-off per mode.
pub struct ScheduleProjection;

const UPSERT_ITEM: &str = "
INSERT INTO schedule_items (item_id, kind, subject_id, shop_id, mode, due_at, business_date, global_position)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (item_id) DO UPDATE SET due_at = excluded.due_at, business_date = excluded.business_date,
    global_position = excluded.global_position";

fn expiry_item_id(payment_id: &str) -> String {
    format!("{EXPIRE_AUTHORISATION}:{payment_id}")
}

fn authorise_item_id(payment_id: &str) -> String {
    format!("{AUTHORISE_DEFERRED}:{payment_id}")
}

fn abandon_item_id(payment_id: &str) -> String {
    format!("{ABANDON_AUTHENTICATION}:{payment_id}")
}

/// A payment deferred beyond the validity is authorised the day before its
/// capture date, at the start of that day (UTC).
fn deferred_authorisation_due_at(capture_date: NaiveDate) -> DateTime<Utc> {
    (capture_date - chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

fn capture_mode_text(mode: CaptureMode) -> &'static str {
    match mode {
        CaptureMode::Automatic => "AUTOMATIC",
        CaptureMode::Manual => "MANUAL",
    }
}

async fn delete_item(tx: &mut Tx, item_id: String) -> Result<(), AppError> {
    tx.execute(
        "DELETE FROM schedule_items WHERE item_id = $1",
        &[item_id.into()],
    )
    .await?;
    Ok(())
}

async fn forget_waiting(tx: &mut Tx, payment_id: &str) -> Result<(), AppError> {
    tx.execute(
        "DELETE FROM schedule_waiting_payments WHERE payment_id = $1",
        &[payment_id.into()],
    )
    .await?;
    Ok(())
}

fn cut_off_item_id(shop_id: ShopId, mode: Mode) -> String {
    format!("{REMITTANCE_CUT_OFF}:{shop_id}:{}", mode.as_str())
}

#[async_trait]
impl Projection for ScheduleProjection {
    fn name(&self) -> &'static str {
        "schedule"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "schedule_items",
            "shop_cut_offs",
            "schedule_waiting_payments",
            "schedule_plans",
        ]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        let position = event.position.global_position;
        if event.aggregate_type == Payment::TYPE {
            let payment_event: PaymentEvent = parse(event)?;
            let item_id = expiry_item_id(&event.aggregate_id);
            match payment_event {
                // Waiting for validation, shipping or delivery: it lapses unless
                // that comes within the validity.
                PaymentEvent::PaymentAuthorised { details, .. }
                    if details.capture_mode == CaptureMode::Manual
                        || details.capture_trigger != CaptureTrigger::Date =>
                {
                    let expires_at = details.occurred_at
                        + chrono::Duration::days(i64::from(details.authorisation_validity_days));
                    let params: Vec<SqlValue> = vec![
                        item_id.into(),
                        EXPIRE_AUTHORISATION.into(),
                        event.aggregate_id.clone().into(),
                        details.shop_id.to_string().into(),
                        details.mode.as_str().into(),
                        timestamp_text(expires_at).into(),
                        None::<String>.into(),
                        position.into(),
                    ];
                    tx.execute(UPSERT_ITEM, &params).await?;
                }
                PaymentEvent::PaymentAwaitingAuthorisation { details, .. } => {
                    tx.execute(
                        "INSERT INTO schedule_waiting_payments (payment_id, shop_id, mode, capture_mode, validity_days)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            event.aggregate_id.clone().into(),
                            details.shop_id.to_string().into(),
                            details.mode.as_str().into(),
                            capture_mode_text(details.capture_mode).into(),
                            i64::from(details.authorisation_validity_days).into(),
                        ],
                    )
                    .await?;
                    let params: Vec<SqlValue> = vec![
                        authorise_item_id(&event.aggregate_id).into(),
                        AUTHORISE_DEFERRED.into(),
                        event.aggregate_id.clone().into(),
                        details.shop_id.to_string().into(),
                        details.mode.as_str().into(),
                        timestamp_text(deferred_authorisation_due_at(details.capture_date)).into(),
                        None::<String>.into(),
                        position.into(),
                    ];
                    tx.execute(UPSERT_ITEM, &params).await?;
                }
                // Waiting for the buyer's 3-D Secure challenge: abandoned unless
                // its result comes first.
                PaymentEvent::PaymentAuthenticationPending {
                    details,
                    abandon_at,
                } => {
                    let params: Vec<SqlValue> = vec![
                        abandon_item_id(&event.aggregate_id).into(),
                        ABANDON_AUTHENTICATION.into(),
                        event.aggregate_id.clone().into(),
                        details.shop_id.to_string().into(),
                        details.mode.as_str().into(),
                        timestamp_text(abandon_at).into(),
                        None::<String>.into(),
                        position.into(),
                    ];
                    tx.execute(UPSERT_ITEM, &params).await?;
                }
                // The challenge answered (the authorisation, refusal or card check
                // that follows schedules as any other) or abandoned.
                PaymentEvent::PaymentAuthenticated { .. }
                | PaymentEvent::PaymentAuthenticationAbandoned { .. } => {
                    delete_item(tx, abandon_item_id(&event.aggregate_id)).await?;
                }
                // A new capture date moves a pending deferred authorisation with it.
                PaymentEvent::PaymentModified { capture_date, .. } => {
                    tx.execute(
                        "UPDATE schedule_items SET due_at = $2, global_position = $3 WHERE item_id = $1",
                        &[
                            authorise_item_id(&event.aggregate_id).into(),
                            timestamp_text(deferred_authorisation_due_at(capture_date)).into(),
                            position.into(),
                        ],
                    )
                    .await?;
                }
                PaymentEvent::DeferredAuthorisationGranted { occurred_at, .. } => {
                    delete_item(tx, authorise_item_id(&event.aggregate_id)).await?;
                    let waiting = tx
                        .fetch_optional(
                            "SELECT shop_id, mode, capture_mode, validity_days FROM schedule_waiting_payments
                             WHERE payment_id = $1",
                            &[event.aggregate_id.clone().into()],
                        )
                        .await?;
                    forget_waiting(tx, &event.aggregate_id).await?;
                    // Manual capture: from now on it waits for validation, and lapses.
                    if let Some(row) = waiting.filter(|row| row.text("capture_mode") == "MANUAL") {
                        let expires_at =
                            occurred_at + chrono::Duration::days(row.int("validity_days"));
                        let params: Vec<SqlValue> = vec![
                            item_id.into(),
                            EXPIRE_AUTHORISATION.into(),
                            event.aggregate_id.clone().into(),
                            row.text("shop_id").into(),
                            row.text("mode").into(),
                            timestamp_text(expires_at).into(),
                            None::<String>.into(),
                            position.into(),
                        ];
                        tx.execute(UPSERT_ITEM, &params).await?;
                    }
                }
                // Shipped or delivered as its trigger asks: captured at the next
                // cut-off, nothing left to expire.
                PaymentEvent::ShipmentDeclared {
                    capture_date: Some(_),
                    ..
                }
                | PaymentEvent::DeliveryDeclared {
                    capture_date: Some(_),
                    ..
                } => {
                    delete_item(tx, item_id).await?;
                }
                PaymentEvent::ShipmentDeclared { .. } | PaymentEvent::DeliveryDeclared { .. } => {}
                // A new hold: the lapse moves to its end.
                PaymentEvent::PaymentReauthorised { expires_at, .. } => {
                    tx.execute(
                        "UPDATE schedule_items SET due_at = $2, global_position = $3 WHERE item_id = $1",
                        &[item_id.into(), timestamp_text(expires_at).into(), position.into()],
                    )
                    .await?;
                }
                PaymentEvent::DeferredAuthorisationRefused { .. } => {
                    delete_item(tx, authorise_item_id(&event.aggregate_id)).await?;
                    forget_waiting(tx, &event.aggregate_id).await?;
                }
                // Validated, cancelled, expired or captured: nothing left to expire
                // or to authorise.
                PaymentEvent::PaymentValidated { .. }
                | PaymentEvent::PaymentCancelled { .. }
                | PaymentEvent::PaymentExpired { .. }
                | PaymentEvent::PaymentCaptured { .. } => {
                    delete_item(tx, item_id).await?;
                    delete_item(tx, authorise_item_id(&event.aggregate_id)).await?;
                    forget_waiting(tx, &event.aggregate_id).await?;
                }
                PaymentEvent::PaymentAuthorised { .. }
                | PaymentEvent::PaymentRefused { .. }
                | PaymentEvent::PaymentRefunded { .. }
                | PaymentEvent::RefundRemitted { .. }
                | PaymentEvent::PaymentDuplicated { .. } => {}
            }
        } else if event.aggregate_type == Merchant::TYPE {
            match parse::<MerchantEvent>(event)? {
                MerchantEvent::ShopCreated {
                    shop_id,
                    remittance_cut_off,
                    occurred_at,
                    ..
                } => {
                    let (business_date, due_at) = next_cut_off(&remittance_cut_off, occurred_at);
                    for mode in [Mode::Test, Mode::Live] {
                        store_cut_off_setting(tx, shop_id, mode, &remittance_cut_off).await?;
                        schedule_cut_off(tx, shop_id, mode, business_date, due_at, position)
                            .await?;
                    }
                }
                MerchantEvent::RemittanceCutOffChanged {
                    shop_id,
                    mode,
                    remittance_cut_off,
                    occurred_at,
                    ..
                } => {
                    store_cut_off_setting(tx, shop_id, mode, &remittance_cut_off).await?;
                    // A pending cut-off keeps its business day (a day is never
                    // skipped), at the new time; otherwise the next one after the change.
                    let pending = tx
                        .fetch_optional(
                            "SELECT business_date FROM schedule_items WHERE item_id = $1",
                            &[cut_off_item_id(shop_id, mode).into()],
                        )
                        .await?
                        .and_then(|row| row.opt_text("business_date"))
                        .and_then(|text| parse_date(&text));
                    let (next_date, _) = next_cut_off(&remittance_cut_off, occurred_at);
                    let business_date = pending.map_or(next_date, |date| date.min(next_date));
                    let due_at = cut_off_instant(&remittance_cut_off, business_date);
                    schedule_cut_off(tx, shop_id, mode, business_date, due_at, position).await?;
                }
                MerchantEvent::MerchantCreated { .. }
                | MerchantEvent::ApiKeyIssued { .. }
                | MerchantEvent::UserCreated { .. } => {}
            }
        } else if event.aggregate_type == PaymentPlan::TYPE {
            apply_plan_event(tx, event, parse(event)?, position).await?;
        } else if event.aggregate_type == DailyCutOff::TYPE {
            let CutOffEvent::DailyCutOffCompleted {
                shop_id,
                mode,
                business_date,
                ..
            } = parse(event)?;
            let setting = cut_off_setting(tx, shop_id, mode).await?;
            let (next_date, due_at) = following_cut_off(&setting, business_date);
            schedule_cut_off(tx, shop_id, mode, next_date, due_at, position).await?;
        }
        Ok(())
    }
}

/// A payment plan's instalments are charged from their due date; never sooner
/// than a grace delay after the plan's own request, which charges at once what is
/// due then (the scheduler only steps in if that request stopped half-way).
const INSTALMENT_GRACE_MINUTES: i64 = 10;

fn instalment_item_id(plan_id: &str, number: u32) -> String {
    format!("{CHARGE_INSTALMENT}:{plan_id}:{number}")
}

fn instalment_due_at(due_date: NaiveDate, requested_at: DateTime<Utc>) -> DateTime<Utc> {
    let start_of_day = due_date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    start_of_day.max(requested_at + chrono::Duration::minutes(INSTALMENT_GRACE_MINUTES))
}

async fn apply_plan_event(
    tx: &mut Tx,
    event: &LoggedEvent,
    plan_event: PlanEvent,
    position: i64,
) -> Result<(), AppError> {
    let plan_id = event.aggregate_id.as_str();
    match plan_event {
        PlanEvent::PlanCreated { details } => {
            tx.execute(
                "INSERT INTO schedule_plans (plan_id, shop_id, mode) VALUES ($1, $2, $3)",
                &[
                    plan_id.into(),
                    details.shop_id.to_string().into(),
                    details.mode.as_str().into(),
                ],
            )
            .await?;
            for instalment in &details.instalments {
                let Some(due_date) = instalment.due_date else {
                    continue;
                };
                let params: Vec<SqlValue> = vec![
                    instalment_item_id(plan_id, instalment.number).into(),
                    CHARGE_INSTALMENT.into(),
                    plan_id.into(),
                    details.shop_id.to_string().into(),
                    details.mode.as_str().into(),
                    timestamp_text(instalment_due_at(due_date, details.occurred_at)).into(),
                    None::<String>.into(),
                    position.into(),
                ];
                tx.execute(UPSERT_ITEM, &params).await?;
            }
        }
        PlanEvent::InstalmentCalled {
            number,
            due_date,
            occurred_at,
        } => {
            let owner = tx
                .fetch_optional(
                    "SELECT shop_id, mode FROM schedule_plans WHERE plan_id = $1",
                    &[plan_id.into()],
                )
                .await?;
            if let Some(owner) = owner {
                let params: Vec<SqlValue> = vec![
                    instalment_item_id(plan_id, number).into(),
                    CHARGE_INSTALMENT.into(),
                    plan_id.into(),
                    owner.text("shop_id").into(),
                    owner.text("mode").into(),
                    timestamp_text(instalment_due_at(due_date, occurred_at)).into(),
                    None::<String>.into(),
                    position.into(),
                ];
                tx.execute(UPSERT_ITEM, &params).await?;
            }
        }
        PlanEvent::InstalmentAttemptFailed {
            number,
            next_attempt_on: Some(next),
            ..
        } => {
            tx.execute(
                "UPDATE schedule_items SET due_at = $2, global_position = $3 WHERE item_id = $1",
                &[
                    instalment_item_id(plan_id, number).into(),
                    timestamp_text(instalment_due_at(next, DateTime::<Utc>::MIN_UTC)).into(),
                    position.into(),
                ],
            )
            .await?;
        }
        PlanEvent::InstalmentPaid { number, .. } | PlanEvent::InstalmentFailed { number, .. } => {
            delete_item(tx, instalment_item_id(plan_id, number)).await?;
        }
        // Nothing more is charged on a refused plan.
        PlanEvent::PlanRefused { .. } => {
            tx.execute(
                "DELETE FROM schedule_items WHERE kind = $1 AND subject_id = $2",
                &[CHARGE_INSTALMENT.into(), plan_id.into()],
            )
            .await?;
        }
        PlanEvent::InstalmentAttemptFailed { .. }
        | PlanEvent::InstalmentAttemptStarted { .. }
        | PlanEvent::PlanCompleted { .. }
        | PlanEvent::PlanDefaulted { .. } => {}
    }
    Ok(())
}

fn parse<E: serde::de::DeserializeOwned>(event: &LoggedEvent) -> Result<E, AppError> {
    serde_json::from_value(event.payload.clone()).map_err(|error| {
        AppError::internal(format!(
            "{} event {}: {error}",
            event.aggregate_type, event.position.global_position
        ))
    })
}

async fn store_cut_off_setting(
    tx: &mut Tx,
    shop_id: ShopId,
    mode: Mode,
    setting: &CutOffSchedule,
) -> Result<(), AppError> {
    tx.execute(
        "INSERT INTO shop_cut_offs (shop_id, mode, cut_off_time, time_zone) VALUES ($1, $2, $3, $4)
         ON CONFLICT (shop_id, mode) DO UPDATE SET cut_off_time = excluded.cut_off_time,
             time_zone = excluded.time_zone",
        &[
            shop_id.to_string().into(),
            mode.as_str().into(),
            setting.time.format("%H:%M:%S").to_string().into(),
            setting.time_zone.clone().into(),
        ],
    )
    .await?;
    Ok(())
}

async fn cut_off_setting(
    tx: &mut Tx,
    shop_id: ShopId,
    mode: Mode,
) -> Result<CutOffSchedule, AppError> {
    let row = tx
        .fetch_optional(
            "SELECT cut_off_time, time_zone FROM shop_cut_offs WHERE shop_id = $1 AND mode = $2",
            &[shop_id.to_string().into(), mode.as_str().into()],
        )
        .await?;
    Ok(row.map_or_else(CutOffSchedule::default, |row| setting_from_row(&row)))
}

fn setting_from_row(row: &SqlRow) -> CutOffSchedule {
    CutOffSchedule {
        time: NaiveTime::parse_from_str(&row.text("cut_off_time"), "%H:%M:%S")
            .unwrap_or_else(|_| CutOffSchedule::default().time),
        time_zone: row.text("time_zone"),
    }
}

async fn schedule_cut_off(
    tx: &mut Tx,
    shop_id: ShopId,
    mode: Mode,
    business_date: NaiveDate,
    due_at: DateTime<Utc>,
    position: i64,
) -> Result<(), AppError> {
    let params: Vec<SqlValue> = vec![
        cut_off_item_id(shop_id, mode).into(),
        REMITTANCE_CUT_OFF.into(),
        shop_id.to_string().into(),
        shop_id.to_string().into(),
        mode.as_str().into(),
        timestamp_text(due_at).into(),
        Some(date_text(business_date)).into(),
        position.into(),
    ];
    tx.execute(UPSERT_ITEM, &params).await?;
    Ok(())
}

/// The read side of the schedule, for the scheduler and `caisse schedule list`.
pub struct ViewScheduledWork {
    pub db: Db,
}

const SELECT_ITEMS: &str =
    "SELECT item_id, kind, subject_id, shop_id, mode, due_at, business_date FROM schedule_items";

impl ViewScheduledWork {
    /// Every item, soonest first.
    pub async fn all(&self) -> Result<Vec<ScheduledItem>, AppError> {
        let rows = self
            .db
            .fetch_all(&format!("{SELECT_ITEMS} ORDER BY due_at, item_id"), &[])
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// A shop's items in one mode, soonest first.
    pub async fn for_shop(
        &self,
        shop_id: ShopId,
        mode: Mode,
        limit: usize,
    ) -> Result<Vec<ScheduledItem>, AppError> {
        let rows = self
            .db
            .fetch_all(
                &format!(
                    "{SELECT_ITEMS} WHERE shop_id = $1 AND mode = $2 ORDER BY due_at, item_id LIMIT $3"
                ),
                &[
                    shop_id.to_string().into(),
                    mode.as_str().into(),
                    (limit as i64).into(),
                ],
            )
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// A shop's cut-off setting as the views know it.
    pub async fn cut_off_setting(
        &self,
        shop_id: ShopId,
        mode: Mode,
    ) -> Result<Option<CutOffSchedule>, AppError> {
        let row = self
            .db
            .fetch_optional(
                "SELECT cut_off_time, time_zone FROM shop_cut_offs WHERE shop_id = $1 AND mode = $2",
                &[shop_id.to_string().into(), mode.as_str().into()],
            )
            .await?;
        Ok(row.map(|row| setting_from_row(&row)))
    }
}

#[async_trait]
impl ScheduledWork for ViewScheduledWork {
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ScheduledItem>, AppError> {
        // Timestamps are fixed-width UTC text, so text order is time order.
        let rows = self
            .db
            .fetch_all(
                &format!("{SELECT_ITEMS} WHERE due_at <= $1 ORDER BY due_at, item_id LIMIT $2"),
                &[timestamp_text(now).into(), (limit as i64).into()],
            )
            .await?;
        rows.iter().map(item_from_row).collect()
    }
}

fn item_from_row(row: &SqlRow) -> Result<ScheduledItem, AppError> {
    let bad = |what: &str| {
        AppError::internal(format!("schedule item {}: bad {what}", row.text("item_id")))
    };
    let shop_id = ShopId::parse(&row.text("shop_id")).ok_or_else(|| bad("shop_id"))?;
    let mode = Mode::parse(&row.text("mode")).ok_or_else(|| bad("mode"))?;
    let due_at = parse_timestamp(&row.text("due_at")).ok_or_else(|| bad("due_at"))?;
    let kind = match row.text("kind").as_str() {
        EXPIRE_AUTHORISATION => ScheduledKind::ExpireAuthorisation {
            payment_id: PaymentId::parse(&row.text("subject_id"))
                .ok_or_else(|| bad("subject_id"))?,
        },
        AUTHORISE_DEFERRED => ScheduledKind::AuthoriseDeferred {
            payment_id: PaymentId::parse(&row.text("subject_id"))
                .ok_or_else(|| bad("subject_id"))?,
        },
        ABANDON_AUTHENTICATION => ScheduledKind::AbandonAuthentication {
            payment_id: PaymentId::parse(&row.text("subject_id"))
                .ok_or_else(|| bad("subject_id"))?,
        },
        CHARGE_INSTALMENT => ScheduledKind::ChargeInstalment {
            plan_id: caisse_domain::ids::PlanId::parse(&row.text("subject_id"))
                .ok_or_else(|| bad("subject_id"))?,
            number: row
                .text("item_id")
                .rsplit(':')
                .next()
                .and_then(|number| number.parse().ok())
                .ok_or_else(|| bad("item_id"))?,
        },
        REMITTANCE_CUT_OFF => ScheduledKind::RemittanceCutOff {
            business_date: row
                .opt_text("business_date")
                .and_then(|text| parse_date(&text))
                .ok_or_else(|| bad("business_date"))?,
        },
        _ => return Err(bad("kind")),
    };
    Ok(ScheduledItem {
        item_id: row.text("item_id"),
        kind,
        shop_id,
        mode,
        due_at,
    })
}
