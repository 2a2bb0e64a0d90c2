//! Mutation root: the cash-management actions (CM-2..7, CM-10). Each accepts an
//! `Idempotency-Key` HTTP header.

use async_graphql::{Context, InputObject, Object, ID};
use caisse_application::context::IdempotencyRequest;
use caisse_application::payments::{
    CardInput as AppCardInput, CreatePaymentInput as AppCreatePaymentInput,
};
use caisse_application::{AppError, RequestContext};
use caisse_domain::PaymentId;
use caisse_projections::queries;
use chrono::NaiveDate;

use super::query::{parse_shop_id, request, state};
use super::types::*;
use crate::errors::{app_error, bad_input};

#[derive(Default)]
pub struct CoreMutation;

#[derive(InputObject)]
pub struct CardInput {
    /// The card number (PAN). Never stored in clear, never returned.
    pub number: String,
    pub expiry_month: i32,
    /// Four digits (two are read as 20YY).
    pub expiry_year: i32,
    /// Required for ECOMMERCE and MCOMMERCE. Used for the authorisation only.
    pub cvv: Option<String>,
    pub holder_name: Option<String>,
    /// For co-badged cards, the network to use; CB by default.
    pub brand: Option<CardBrand>,
}

impl CardInput {
    /// The application's card input (expiry month out of range reads as 0, refused there).
    pub fn into_app(self) -> AppCardInput {
        AppCardInput {
            number: self.number,
            expiry_month: u32::try_from(self.expiry_month).unwrap_or(0),
            expiry_year: self.expiry_year,
            cvv: self.cvv,
            holder_name: self.holder_name,
            brand: self.brand.map(Into::into),
        }
    }
}

#[derive(InputObject)]
pub struct CreatePaymentInput {
    /// Decimal string with at most the currency's minor units, e.g. "49.90".
    pub amount: String,
    /// ISO 4217 code, e.g. EUR.
    pub currency: String,
    pub order_reference: String,
    pub channel: Channel,
    pub card: CardInput,
    #[graphql(default_with = "CaptureMode::Automatic")]
    pub capture_mode: CaptureMode,
    /// Deferred capture: days after today (0–365). Beyond the authorisation
    /// validity (7 days by default) the card is checked now and the payment is
    /// authorised the day before its capture date (WAITING_AUTHORISATION).
    pub capture_delay_days: Option<i32>,
    /// DATE (default), SHIPPING or DELIVERY: captured once declared (TY-6, TY-7).
    #[graphql(default_with = "CaptureTrigger::Date")]
    pub capture_trigger: CaptureTrigger,
    pub buyer_email: Option<String>,
    /// The buyer's IP address (IPv4 or IPv6), for the IP grey list and the
    /// country consistency controls (RC-4, RC-7).
    pub buyer_ip: Option<String>,
    /// The country the buyer declared (ISO 3166-1 alpha-2, e.g. FR), for RC-7.
    pub buyer_country: Option<String>,
    /// The buyer's language for the payment confirmation e-mail: FR, EN, DE,
    /// ES, IT, NL, PT or SV (case-insensitive); French when absent.
    pub buyer_language: Option<String>,
    /// Pay in instalments (TY-1 pay in 3, TY-2 pay in n, TY-5 deposit and
    /// balance): creates a payment plan and answers its first instalment's
    /// payment, whose `planId` leads to `paymentPlan`. Automatic capture at
    /// order only (no `captureDelayDays`, no SHIPPING or DELIVERY trigger).
    pub plan: Option<super::plans::PlanOptionsInput>,
}

/// `createPayment` with a `plan`: the plan is created and its first instalment's
/// payment is the answer.
async fn create_first_instalment(
    ctx: &Context<'_>,
    input: CreatePaymentInput,
) -> async_graphql::Result<PaymentNode> {
    let invalid = |message: &str| {
        app_error(AppError::Invalid {
            field: "plan",
            code: "INVALID_PLAN",
            message: message.to_string(),
        })
    };
    if input.capture_mode != CaptureMode::Automatic
        || input.capture_delay_days.is_some_and(|days| days != 0)
        || input.capture_trigger != CaptureTrigger::Date
    {
        return Err(invalid(
            "instalments are captured at order: no MANUAL capture, captureDelayDays or SHIPPING/DELIVERY trigger with a plan",
        ));
    }
    let plan = input.plan.expect("checked by the caller");
    let node = super::plans::create_plan(
        ctx,
        super::plans::CreatePaymentPlanInput {
            kind: plan.kind,
            amount: input.amount,
            currency: input.currency,
            order_reference: input.order_reference,
            channel: input.channel,
            card: input.card,
            instalments: plan.instalments,
            deposit: plan.deposit,
            balance_date: plan.balance_date,
            buyer_email: input.buyer_email,
        },
    )
    .await?;
    let payment_id = node
        .instalments
        .first()
        .and_then(|instalment| instalment.payment_id.clone())
        .ok_or_else(|| app_error(AppError::internal("plan without a first payment")))?;
    let caller = &request(ctx)?.caller;
    let row = queries::get_payment(state(ctx)?.db(), &caller.read_scope(), &payment_id)
        .await
        .map_err(app_error)?
        .ok_or_else(|| app_error(AppError::internal("first instalment missing from its view")))?;
    Ok(PaymentNode::from_row(row))
}

/// The request context of a mutation: caller, actor and idempotency key, the key
/// bound to this field's name and arguments.
pub(crate) fn context(ctx: &Context<'_>) -> async_graphql::Result<RequestContext> {
    let data = request(ctx)?;
    let idempotency = match &data.idempotency_key {
        Some(key) => {
            let arguments = ctx.field().arguments()?;
            let arguments = serde_json::to_string(&arguments)
                .map_err(|e| bad_input("arguments", e.to_string()))?;
            Some(IdempotencyRequest::new(
                &data.caller.principal(),
                key,
                ctx.field().name(),
                &arguments,
            ))
        }
        None => None,
    };
    Ok(RequestContext {
        scope: data.caller.scope(),
        actor: data.caller.actor(),
        request_id: data.request_id.clone(),
        idempotency,
    })
}

pub(crate) fn parse_payment_id(field: &str, id: &ID) -> async_graphql::Result<PaymentId> {
    PaymentId::parse(id.as_str()).ok_or_else(|| bad_input(field, "not a payment id (pay_…)"))
}

fn non_negative_u32(field: &'static str, value: i32) -> Result<u32, AppError> {
    u32::try_from(value).map_err(|_| AppError::Invalid {
        field,
        code: "CAPTURE_DELAY_OUT_OF_RANGE",
        message: "must be between 0 and 365".into(),
    })
}

#[Object]
impl CoreMutation {
    /// Authorises a card payment (CM-2). A refusal is a payment with status
    /// REFUSED and its reason, not an error.
    async fn create_payment(
        &self,
        ctx: &Context<'_>,
        input: CreatePaymentInput,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        if input.plan.is_some() {
            return create_first_instalment(ctx, input).await;
        }
        let context = context(ctx)?;
        let capture_delay_days = input
            .capture_delay_days
            .map(|days| non_negative_u32("captureDelayDays", days))
            .transpose()
            .map_err(app_error)?;
        let card = input.card;
        let expiry_month = u32::try_from(card.expiry_month).unwrap_or(0);
        let input = AppCreatePaymentInput {
            amount: input.amount,
            currency: input.currency,
            order_reference: input.order_reference,
            channel: input.channel.into(),
            card: AppCardInput {
                number: card.number,
                expiry_month,
                expiry_year: card.expiry_year,
                cvv: card.cvv,
                holder_name: card.holder_name,
                brand: card.brand.map(Into::into),
            },
            capture_mode: input.capture_mode.into(),
            capture_delay_days,
            capture_trigger: input.capture_trigger.into(),
            buyer_email: input.buyer_email,
            buyer_ip: input.buyer_ip,
            buyer_country: input.buyer_country,
            buyer_language: input.buyer_language,
        };
        let result = state
            .payments
            .create(&context, input)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// Validates a payment waiting for validation, so the next remittance captures it (CM-6).
    async fn validate_payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let id = parse_payment_id("id", &id)?;
        let result = state
            .payments
            .validate(&context(ctx)?, id)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// Lowers the amount and/or moves the capture date, before remittance (CM-7).
    async fn modify_payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        amount: Option<String>,
        #[graphql(desc = "New capture date, YYYY-MM-DD")] capture_date: Option<String>,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let id = parse_payment_id("id", &id)?;
        let capture_date = capture_date
            .as_deref()
            .map(|text| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| bad_input("captureDate", "expected YYYY-MM-DD"))
            })
            .transpose()?;
        let result = state
            .payments
            .modify(&context(ctx)?, id, amount, capture_date)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// Cancels a payment before remittance (CM-5).
    async fn cancel_payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let id = parse_payment_id("id", &id)?;
        let result = state
            .payments
            .cancel(&context(ctx)?, id)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// Declares the order shipped (TY-6): a payment captured at shipping becomes
    /// due at the next cut-off. Allowed for SHIPPING and DELIVERY payments.
    async fn declare_shipping(
        &self,
        ctx: &Context<'_>,
        id: ID,
        carrier: Option<String>,
        tracking_number: Option<String>,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let id = parse_payment_id("id", &id)?;
        let result = state
            .payments
            .declare_shipping(&context(ctx)?, id, carrier, tracking_number)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// Declares the order delivered (TY-7): a payment captured at delivery
    /// becomes due at the next cut-off.
    async fn declare_delivery(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let id = parse_payment_id("id", &id)?;
        let result = state
            .payments
            .declare_delivery(&context(ctx)?, id)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// Refunds part or all of a captured payment, never more than captured minus
    /// already refunded (CM-4).
    async fn refund_payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        amount: String,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let id = parse_payment_id("id", &id)?;
        let result = state
            .payments
            .refund(&context(ctx)?, id, amount)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// A new authorisation on the card of an earlier payment that is captured,
    /// expired, cancelled or refused (CM-3). Returns the new payment.
    async fn duplicate_payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        amount: String,
        order_reference: String,
    ) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let id = parse_payment_id("id", &id)?;
        let result = state
            .payments
            .duplicate(&context(ctx)?, id, amount, order_reference)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&result.payment))
    }

    /// Sends the shop's due payments and its refunds not yet sent to the bank:
    /// captures the payments and records one remittance per currency and acquirer
    /// contract, the captures as debits and the refunds as credits (CM-10).
    /// Returns the remittances created (none if there was nothing to send).
    /// Running it twice sends nothing twice.
    async fn run_remittance(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
    ) -> async_graphql::Result<Vec<RemittanceNode>> {
        let state = state(ctx)?;
        let shop_id = parse_shop_id("shopId", &shop_id)?;
        let context = context(ctx)?;
        let caller = &request(ctx)?.caller;
        let ids = state
            .remittances
            .run(&context, shop_id)
            .await
            .map_err(app_error)?;
        let mut remittances = Vec::new();
        for id in ids {
            let row = queries::get_remittance(state.db(), &caller.read_scope(), &id.to_string())
                .await
                .map_err(app_error)?
                .ok_or_else(|| {
                    app_error(AppError::internal(
                        "remittance missing from its view after the wait",
                    ))
                })?;
            remittances.push(RemittanceNode::from(row));
        }
        Ok(remittances)
    }
}
