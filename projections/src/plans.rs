//! The `plans` projection: payment plans (TY-1, TY-2, TY-5) and the state of
//! each instalment (scheduled, retrying, paid, failed), and its read side.

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::plan::{PaymentPlan, PlanEvent};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::{date_text, timestamp_text};
use caisse_infrastructure::{Db, SqlRow, SqlValue, Tx};
use cqrs_es::Aggregate;

use crate::money::to_milli;
use crate::projector::Projection;
use crate::queries::ReadScope;

pub struct PlansProjection;

#[async_trait]
impl Projection for PlansProjection {
    fn name(&self) -> &'static str {
        "plans"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["plans_view", "plan_instalments_view"]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type != PaymentPlan::TYPE {
            return Ok(());
        }
        let plan_event: PlanEvent =
            serde_json::from_value(event.payload.clone()).map_err(|error| {
                AppError::internal(format!(
                    "plan event {}: {error}",
                    event.position.global_position
                ))
            })?;
        let plan_id = event.aggregate_id.as_str();
        match plan_event {
            PlanEvent::PlanCreated { details } => {
                let at = timestamp_text(details.occurred_at);
                tx.execute(
                    "INSERT INTO plans_view (plan_id, shop_id, mode, kind, order_reference, currency,
                         total_milli, status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'ACTIVE', $8, $8)",
                    &[
                        plan_id.into(),
                        details.shop_id.to_string().into(),
                        details.mode.as_str().into(),
                        details.kind.as_str().into(),
                        details.order_reference.clone().into(),
                        details.total.currency().code().into(),
                        to_milli(&details.total).into(),
                        at.into(),
                    ],
                )
                .await?;
                for instalment in &details.instalments {
                    tx.execute(
                        "INSERT INTO plan_instalments_view (plan_id, instalment_number, amount_milli,
                             due_date, status, attempts)
                         VALUES ($1, $2, $3, $4, 'SCHEDULED', 0)",
                        &[
                            plan_id.into(),
                            i64::from(instalment.number).into(),
                            to_milli(&instalment.amount).into(),
                            instalment.due_date.map(date_text).into(),
                        ],
                    )
                    .await?;
                }
            }
            PlanEvent::InstalmentAttemptStarted {
                number,
                attempt,
                payment_id,
                ..
            } => {
                update_instalment(
                    tx,
                    plan_id,
                    number,
                    "attempts = $3, payment_id = $4",
                    vec![i64::from(attempt).into(), payment_id.to_string().into()],
                )
                .await?;
            }
            PlanEvent::InstalmentPaid { number, .. } => {
                update_instalment(tx, plan_id, number, "status = 'PAID'", vec![]).await?;
            }
            PlanEvent::InstalmentAttemptFailed {
                number,
                refusal,
                next_attempt_on,
                ..
            } => match next_attempt_on {
                Some(next) => {
                    update_instalment(
                        tx,
                        plan_id,
                        number,
                        "status = 'RETRYING', due_date = $3, last_refusal_code = $4",
                        vec![date_text(next).into(), refusal.code.into()],
                    )
                    .await?
                }
                None => {
                    update_instalment(
                        tx,
                        plan_id,
                        number,
                        "last_refusal_code = $3",
                        vec![refusal.code.into()],
                    )
                    .await?
                }
            },
            PlanEvent::InstalmentFailed { number, .. } => {
                update_instalment(tx, plan_id, number, "status = 'FAILED'", vec![]).await?;
            }
            PlanEvent::InstalmentCalled {
                number, due_date, ..
            } => {
                update_instalment(
                    tx,
                    plan_id,
                    number,
                    "due_date = $3",
                    vec![date_text(due_date).into()],
                )
                .await?;
            }
            PlanEvent::PlanCompleted { .. } => set_status(tx, plan_id, "COMPLETED").await?,
            PlanEvent::PlanDefaulted { .. } => set_status(tx, plan_id, "DEFAULTED").await?,
            PlanEvent::PlanRefused { .. } => set_status(tx, plan_id, "REFUSED").await?,
        }
        tx.execute(
            "UPDATE plans_view SET updated_at = $2 WHERE plan_id = $1",
            &[plan_id.into(), timestamp_text(event.recorded_at).into()],
        )
        .await?;
        Ok(())
    }
}

async fn update_instalment(
    tx: &mut Tx,
    plan_id: &str,
    number: u32,
    assignments: &str,
    extra: Vec<SqlValue>,
) -> Result<(), AppError> {
    let mut params: Vec<SqlValue> = vec![plan_id.into(), i64::from(number).into()];
    params.extend(extra);
    tx.execute(
        &format!(
            "UPDATE plan_instalments_view SET {assignments} WHERE plan_id = $1 AND instalment_number = $2"
        ),
        &params,
    )
    .await?;
    Ok(())
}

async fn set_status(tx: &mut Tx, plan_id: &str, status: &str) -> Result<(), AppError> {
    tx.execute(
        "UPDATE plans_view SET status = $2 WHERE plan_id = $1",
        &[plan_id.into(), status.into()],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub plan_id: String,
    pub shop_id: String,
    pub mode: String,
    pub kind: String,
    pub order_reference: String,
    pub currency: String,
    pub total_milli: i64,
    pub status: String,
    pub created_at: String,
    pub instalments: Vec<InstalmentRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalmentRow {
    pub number: i64,
    pub amount_milli: i64,
    pub due_date: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub payment_id: Option<String>,
    pub last_refusal_code: Option<String>,
}

/// A plan and its instalments, if the reader may see it.
pub async fn get_plan(
    db: &Db,
    scope: &ReadScope,
    plan_id: &str,
) -> Result<Option<PlanRow>, AppError> {
    let Some(row) = db
        .fetch_optional(
            "SELECT * FROM plans_view WHERE plan_id = $1",
            &[plan_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let visible = row.text("mode") == scope.mode.as_str()
        && scope
            .shop_ids
            .iter()
            .any(|shop| shop.to_string() == row.text("shop_id"));
    if !visible {
        return Ok(None);
    }
    let instalments = db
        .fetch_all(
            "SELECT * FROM plan_instalments_view WHERE plan_id = $1 ORDER BY instalment_number",
            &[plan_id.into()],
        )
        .await?
        .iter()
        .map(instalment_from_row)
        .collect();
    Ok(Some(PlanRow {
        plan_id: row.text("plan_id"),
        shop_id: row.text("shop_id"),
        mode: row.text("mode"),
        kind: row.text("kind"),
        order_reference: row.text("order_reference"),
        currency: row.text("currency"),
        total_milli: row.int("total_milli"),
        status: row.text("status"),
        created_at: row.text("created_at"),
        instalments,
    }))
}

fn instalment_from_row(row: &SqlRow) -> InstalmentRow {
    InstalmentRow {
        number: row.int("instalment_number"),
        amount_milli: row.int("amount_milli"),
        due_date: row.opt_text("due_date"),
        status: row.text("status"),
        attempts: row.int("attempts"),
        payment_id: row.opt_text("payment_id"),
        last_refusal_code: row.opt_text("last_refusal_code"),
    }
}
