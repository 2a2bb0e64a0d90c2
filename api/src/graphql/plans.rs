//! GraphQL for payment plans: pay in 3 (TY-1), pay in n (TY-2), deposit and
//! balance (TY-5). Each instalment is a payment of its own, linked to its plan.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject, ID};
use caisse_application::plans::{CreatePlanInput, InstalmentInput as AppInstalmentInput};
use caisse_application::AppError;
use caisse_domain::ids::PlanId;
use caisse_domain::plan::PlanKind as DomainPlanKind;
use caisse_projections::plans::{get_plan, InstalmentRow, PlanRow};
use caisse_projections::queries;
use chrono::NaiveDate;

use super::mutation::{context, CardInput};
use super::query::{request, state};
use super::types::{Channel, PaymentNode};
use crate::errors::{app_error, bad_input};
use caisse_projections::money::milli_to_string;

#[derive(Default)]
pub struct PlanQuery;

#[derive(Default)]
pub struct PlanMutation;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PlanKind {
    /// Three instalments without fees: now, +30 and +60 days; the remainder
    /// cents on the first (TY-1).
    PayIn3,
    /// The merchant's own schedule; the first instalment is due today (TY-2).
    PayInN,
    /// A deposit now and the balance on a date or on the merchant's call (TY-5).
    DepositAndBalance,
}

#[derive(InputObject)]
pub struct InstalmentInput {
    pub amount: String,
    /// YYYY-MM-DD.
    pub due_date: String,
}

/// The plan part of `createPayment(input: {plan: …})`: the same payment fields
/// become an order paid in instalments.
#[derive(InputObject)]
pub struct PlanOptionsInput {
    pub kind: PlanKind,
    /// PAY_IN_N: the schedule.
    pub instalments: Option<Vec<InstalmentInput>>,
    /// DEPOSIT_AND_BALANCE: the deposit, charged now.
    pub deposit: Option<String>,
    /// DEPOSIT_AND_BALANCE: the balance's date (YYYY-MM-DD); on call if absent.
    pub balance_date: Option<String>,
}

#[derive(InputObject)]
pub struct CreatePaymentPlanInput {
    pub kind: PlanKind,
    /// The order amount: the instalments sum to it exactly.
    pub amount: String,
    pub currency: String,
    pub order_reference: String,
    #[graphql(default_with = "Channel::Ecommerce")]
    pub channel: Channel,
    pub card: CardInput,
    /// PAY_IN_N: the schedule.
    pub instalments: Option<Vec<InstalmentInput>>,
    /// DEPOSIT_AND_BALANCE: the deposit, charged now.
    pub deposit: Option<String>,
    /// DEPOSIT_AND_BALANCE: the balance's date (YYYY-MM-DD); on call if absent.
    pub balance_date: Option<String>,
    pub buyer_email: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(complex, name = "PaymentPlan")]
pub struct PlanNode {
    pub id: String,
    pub kind: String,
    /// ACTIVE, COMPLETED (every instalment paid), DEFAULTED (settled, one failed)
    /// or REFUSED (the first payment, with the buyer present, was refused).
    pub status: String,
    pub order_reference: String,
    pub currency: String,
    pub total: String,
    pub created_at: String,
    pub instalments: Vec<InstalmentNode>,
}

#[derive(SimpleObject)]
#[graphql(complex, name = "Instalment")]
pub struct InstalmentNode {
    pub number: i64,
    pub amount: String,
    /// Due date, or the next retry's; null while due on the merchant's call.
    pub due_date: Option<String>,
    /// SCHEDULED, RETRYING, PAID or FAILED.
    pub status: String,
    pub attempts: i64,
    /// The payment of the latest attempt.
    pub payment_id: Option<String>,
    pub last_refusal_code: Option<String>,
}

#[ComplexObject]
impl InstalmentNode {
    /// The payment of the latest attempt, with its status and history.
    async fn payment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<PaymentNode>> {
        let Some(payment_id) = &self.payment_id else {
            return Ok(None);
        };
        let caller = &request(ctx)?.caller;
        let row = queries::get_payment(state(ctx)?.db(), &caller.read_scope(), payment_id)
            .await
            .map_err(app_error)?;
        Ok(row.map(PaymentNode::from_row))
    }
}

#[ComplexObject]
impl PlanNode {
    /// Instalments paid so far.
    async fn paid_count(&self) -> usize {
        self.instalments
            .iter()
            .filter(|i| i.status == "PAID")
            .count()
    }
}

fn plan_node(row: PlanRow) -> PlanNode {
    let currency = row.currency.clone();
    PlanNode {
        id: row.plan_id,
        kind: row.kind,
        status: row.status,
        order_reference: row.order_reference,
        total: milli_to_string(row.total_milli, &currency),
        created_at: row.created_at,
        instalments: row
            .instalments
            .into_iter()
            .map(|instalment: InstalmentRow| InstalmentNode {
                number: instalment.number,
                amount: milli_to_string(instalment.amount_milli, &currency),
                due_date: instalment.due_date,
                status: instalment.status,
                attempts: instalment.attempts,
                payment_id: instalment.payment_id,
                last_refusal_code: instalment.last_refusal_code,
            })
            .collect(),
        currency,
    }
}

fn parse_plan_id(field: &str, id: &ID) -> async_graphql::Result<PlanId> {
    PlanId::parse(id.as_str()).ok_or_else(|| bad_input(field, "not a payment plan id (plan_…)"))
}

fn parse_date(field: &'static str, text: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| AppError::Invalid {
        field,
        code: "INVALID_DATE",
        message: format!("{text:?} is not a date as YYYY-MM-DD"),
    })
}

async fn read_plan(ctx: &Context<'_>, plan_id: &str) -> async_graphql::Result<PlanNode> {
    let caller = &request(ctx)?.caller;
    let row = get_plan(state(ctx)?.db(), &caller.read_scope(), plan_id)
        .await
        .map_err(app_error)?
        .ok_or_else(|| app_error(caisse_domain::plan::PlanError::NotFound.into()))?;
    Ok(plan_node(row))
}

/// Creates a plan and charges its first instalment (`createPaymentPlan`, and
/// `createPayment` with `plan`).
pub(crate) async fn create_plan(
    ctx: &Context<'_>,
    input: CreatePaymentPlanInput,
) -> async_graphql::Result<PlanNode> {
    let state = state(ctx)?;
    let mut instalments = Vec::new();
    for given in input.instalments.unwrap_or_default() {
        instalments.push(AppInstalmentInput {
            amount: given.amount,
            due_date: parse_date("instalments.dueDate", &given.due_date).map_err(app_error)?,
        });
    }
    if input.kind == PlanKind::PayInN && instalments.is_empty() {
        return Err(app_error(AppError::Invalid {
            field: "instalments",
            code: "INVALID_INSTALMENTS",
            message: "PAY_IN_N needs its instalments".into(),
        }));
    }
    if input.kind != PlanKind::PayInN && !instalments.is_empty() {
        return Err(app_error(AppError::Invalid {
            field: "instalments",
            code: "INVALID_INSTALMENTS",
            message: "instalments are given only for PAY_IN_N".into(),
        }));
    }
    let balance_date = input
        .balance_date
        .as_deref()
        .map(|text| parse_date("balanceDate", text))
        .transpose()
        .map_err(app_error)?;
    let plan = state
        .plans
        .create(
            &context(ctx)?,
            CreatePlanInput {
                kind: match input.kind {
                    PlanKind::PayIn3 => DomainPlanKind::PayIn3,
                    PlanKind::PayInN => DomainPlanKind::PayInN,
                    PlanKind::DepositAndBalance => DomainPlanKind::DepositAndBalance,
                },
                amount: input.amount,
                currency: input.currency,
                order_reference: input.order_reference,
                channel: input.channel.into(),
                card: input.card.into_app(),
                instalments,
                deposit: input.deposit,
                balance_date,
                buyer_email: input.buyer_email,
            },
        )
        .await
        .map_err(app_error)?;
    let plan_id = plan
        .details
        .as_ref()
        .map(|details| details.plan_id.to_string())
        .ok_or_else(|| app_error(AppError::internal("plan without details")))?;
    read_plan(ctx, &plan_id).await
}

#[Object]
impl PlanQuery {
    /// A payment plan with its instalments and their payments.
    async fn payment_plan(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<PlanNode> {
        let plan_id = parse_plan_id("id", &id)?;
        read_plan(ctx, &plan_id.to_string()).await
    }
}

#[Object]
impl PlanMutation {
    /// Creates a payment plan and charges its first instalment now with the
    /// card given; the scheduler charges the others on their due dates with the
    /// card on file, retrying refused ones per the configured policy.
    async fn create_payment_plan(
        &self,
        ctx: &Context<'_>,
        input: CreatePaymentPlanInput,
    ) -> async_graphql::Result<PlanNode> {
        create_plan(ctx, input).await
    }

    /// Charges the balance of a deposit-and-balance plan due on call (TY-5), now.
    async fn call_plan_balance(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<PlanNode> {
        let plan_id = parse_plan_id("id", &id)?;
        state(ctx)?
            .plans
            .call_balance(&context(ctx)?, plan_id)
            .await
            .map_err(app_error)?;
        read_plan(ctx, &plan_id.to_string()).await
    }
}
