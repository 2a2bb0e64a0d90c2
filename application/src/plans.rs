//! Payment plans (TY-1 pay in 3, TY-2 pay in n, TY-5 deposit and balance): the
//! schedule is computed or checked here, the plan is recorded, then each
//! instalment is charged as a payment of its own — the first at once with the
//! buyer's card, the others by the scheduler on their due dates with the card on
//! file — and refused ones are retried per the configured policy.

use std::sync::Arc;

use caisse_domain::payment::{Channel, PaymentStatus};
use caisse_domain::plan::{
    check_instalments, pay_in_3, PaymentPlan, PlanCommand, PlanDetails, PlanError, PlanKind,
    PlannedInstalment, RetryPolicy,
};
use caisse_domain::{Money, PaymentId};
use chrono::NaiveDate;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::CommandRunner;
use crate::context::RequestContext;
use crate::error::AppError;
use crate::payments::{CardInput, PaymentService, PreparedCard};
use crate::ports::{Clock, EventLog, ProjectionWaiter};

/// One instalment as the merchant gives it (TY-2).
pub struct InstalmentInput {
    pub amount: String,
    pub due_date: NaiveDate,
}

pub struct CreatePlanInput {
    pub kind: PlanKind,
    /// The order amount, as a decimal string.
    pub amount: String,
    pub currency: String,
    pub order_reference: String,
    pub channel: Channel,
    pub card: CardInput,
    /// PAY_IN_N: the merchant's schedule, summing exactly to the amount.
    pub instalments: Vec<InstalmentInput>,
    /// DEPOSIT_AND_BALANCE: the deposit, charged now.
    pub deposit: Option<String>,
    /// DEPOSIT_AND_BALANCE: when the balance is charged; on the merchant's call if absent.
    pub balance_date: Option<NaiveDate>,
    pub buyer_email: Option<String>,
}

pub struct PlanService<R>
where
    R: PersistedEventRepository,
{
    runner: CommandRunner<R, PaymentPlan>,
    payments: Arc<PaymentService<R>>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
}

impl<R> PlanService<R>
where
    R: PersistedEventRepository + Clone,
{
    pub fn new(
        repository: R,
        payments: Arc<PaymentService<R>>,
        retry: RetryPolicy,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        PlanService {
            runner: CommandRunner::new(repository),
            payments,
            retry,
            clock,
            log,
            waiter,
        }
    }

    /// Records the plan and charges its instalments due today (the first one,
    /// with the buyer's card). Returns the plan after that.
    pub async fn create(
        &self,
        request: &RequestContext,
        input: CreatePlanInput,
    ) -> Result<PaymentPlan, AppError> {
        // A repeat of a request with the same Idempotency-Key gets the same plan
        // back and charges nothing.
        if let Some(plan) = self.replay(request).await? {
            return Ok(plan);
        }
        // Instalments are payments of their own; the plan's key is not theirs.
        let context = &without_idempotency(request);
        let shop_id = *context.scope.shop_ids.first().ok_or(AppError::NotFound)?;
        let total = crate::payments::parse_order_amount(&input.amount, &input.currency)?;
        let today = self.clock.today();
        let instalments = self.schedule(&input, &total, today)?;
        let order_reference = crate::payments::validate_order_reference(&input.order_reference)?;
        let buyer_email = crate::payments::validate_email(input.buyer_email.clone())?;
        let prepared = self
            .payments
            .prepare_card(&input.card, input.channel)
            .await?;
        let details = PlanDetails {
            plan_id: caisse_domain::ids::PlanId::new(),
            shop_id,
            mode: context.scope.mode,
            kind: input.kind,
            order_reference,
            total,
            channel: input.channel,
            card: prepared.snapshot.clone(),
            buyer_email,
            instalments,
            retry: self.retry,
            occurred_at: self.clock.now(),
        };
        let plan_id = details.plan_id;
        // The key goes with the plan's first event: atomic with it, unique.
        let created = self
            .runner
            .execute(
                &plan_id.to_string(),
                PlanCommand::Create {
                    details: Box::new(details),
                },
                request.metadata(true),
            )
            .await;
        match created {
            Ok(_) => {}
            // A concurrent request with the same key won the unique index.
            Err(error @ (AppError::Internal(_) | AppError::ConcurrencyExhausted))
                if request.idempotency.is_some() =>
            {
                return match self.replay(request).await? {
                    Some(plan) => Ok(plan),
                    None => Err(error),
                };
            }
            Err(error) => return Err(instalment_field(error)),
        }
        // The first instalment with the card the buyer just gave (CVV included).
        // Should this process stop here, the scheduler charges it with the card
        // on file: it is due today.
        self.charge(context, plan_id, 1, Some(&prepared)).await?;
        drop(prepared);
        let plan = self.runner.load(&plan_id.to_string()).await?;
        self.wait_for_views(&plan_id.to_string()).await?;
        Ok(plan)
    }

    /// The plan an earlier request with this Idempotency-Key created, if any;
    /// `IDEMPOTENCY_KEY_REUSED` when the key was used for another request.
    async fn replay(&self, request: &RequestContext) -> Result<Option<PaymentPlan>, AppError> {
        let Some(idempotency) = &request.idempotency else {
            return Ok(None);
        };
        let Some(record) = self.log.find_idempotent(&idempotency.scoped_key).await? else {
            return Ok(None);
        };
        if record.request_hash != idempotency.request_hash
            || record.aggregate_type != PaymentPlan::TYPE
        {
            return Err(AppError::IdempotencyKeyReused);
        }
        let plan = self.runner.load(&record.aggregate_id).await?;
        self.wait_for_views(&record.aggregate_id).await?;
        Ok(Some(plan))
    }

    /// Charges a due instalment (the scheduler), resuming an attempt a crash
    /// interrupted. `false` when it was already settled.
    pub async fn charge_due(
        &self,
        context: &RequestContext,
        plan_id: caisse_domain::ids::PlanId,
        number: u32,
    ) -> Result<bool, AppError> {
        let charged = self.charge(context, plan_id, number, None).await?;
        if charged {
            self.wait_for_views(&plan_id.to_string()).await?;
        }
        Ok(charged)
    }

    /// The merchant calls for the balance of a deposit-and-balance plan (TY-5):
    /// it is charged now with the card on file.
    pub async fn call_balance(
        &self,
        context: &RequestContext,
        plan_id: caisse_domain::ids::PlanId,
    ) -> Result<PaymentPlan, AppError> {
        let context = &without_idempotency(context);
        let plan = self.visible(context, plan_id).await?;
        let number = plan.instalments.len() as u32;
        self.runner
            .execute(
                &plan_id.to_string(),
                PlanCommand::CallInstalment {
                    number,
                    today: self.clock.today(),
                    occurred_at: self.clock.now(),
                },
                context.metadata(false),
            )
            .await?;
        self.charge(context, plan_id, number, None).await?;
        self.wait_for_views(&plan_id.to_string()).await?;
        self.runner.load(&plan_id.to_string()).await
    }

    /// The plan if the caller may see it; PLAN_NOT_FOUND otherwise.
    pub async fn visible(
        &self,
        context: &RequestContext,
        plan_id: caisse_domain::ids::PlanId,
    ) -> Result<PaymentPlan, AppError> {
        let plan = self.runner.load(&plan_id.to_string()).await?;
        match &plan.details {
            Some(details) if context.scope.allows(details.shop_id, details.mode) => Ok(plan),
            _ => Err(PlanError::NotFound.into()),
        }
    }

    /// One attempt at an instalment: recorded as started with its payment id,
    /// authorised, then recorded with its outcome.
    async fn charge(
        &self,
        context: &RequestContext,
        plan_id: caisse_domain::ids::PlanId,
        number: u32,
        present_card: Option<&PreparedCard>,
    ) -> Result<bool, AppError> {
        let aggregate_id = plan_id.to_string();
        let plan = self.visible(context, plan_id).await?;
        if plan.status == caisse_domain::plan::PlanStatus::Refused {
            return Ok(false);
        }
        let instalment = plan.instalment(number)?;
        if matches!(
            instalment.status,
            caisse_domain::plan::InstalmentStatus::Paid
                | caisse_domain::plan::InstalmentStatus::Failed
        ) {
            return Ok(false);
        }
        let payment_id = match instalment.in_progress {
            // Interrupted after it started: the same payment, never a second one.
            Some(payment_id) => payment_id,
            None => {
                let payment_id = PaymentId::new();
                self.runner
                    .execute(
                        &aggregate_id,
                        PlanCommand::StartAttempt {
                            number,
                            payment_id,
                            occurred_at: self.clock.now(),
                        },
                        context.metadata(false),
                    )
                    .await?;
                payment_id
            }
        };
        let details = plan.details.as_ref().expect("visible plans exist");
        let result = self
            .payments
            .authorise_instalment(context, details, number, payment_id, present_card)
            .await?;
        let refusal = match result.payment.status {
            PaymentStatus::Refused => Some(
                result
                    .payment
                    .refusal
                    .clone()
                    .expect("a refused payment has its refusal"),
            ),
            _ => None,
        };
        match self
            .runner
            .execute(
                &aggregate_id,
                PlanCommand::RecordAttempt {
                    number,
                    payment_id,
                    refusal,
                    // The buyer, present, can pay with another card: no retry.
                    retry: present_card.is_none(),
                    today: self.clock.today(),
                    occurred_at: self.clock.now(),
                },
                context.metadata(false),
            )
            .await
        {
            Ok(_) => Ok(true),
            // Recorded meanwhile by another process.
            Err(AppError::Plan(
                PlanError::NoAttemptInProgress(_)
                | PlanError::InstalmentSettled { .. }
                | PlanError::PlanEnded { .. },
            )) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The instalments of a new plan: computed (TY-1), given (TY-2), or a
    /// deposit and a balance (TY-5).
    fn schedule(
        &self,
        input: &CreatePlanInput,
        total: &Money,
        today: NaiveDate,
    ) -> Result<Vec<PlannedInstalment>, AppError> {
        let amount = |field: &'static str, text: &str| {
            Money::parse_positive(text, total.currency().code()).map_err(AppError::money(field))
        };
        let instalments = match input.kind {
            PlanKind::PayIn3 => pay_in_3(total, today).map_err(instalment_field)?,
            PlanKind::PayInN => {
                let mut planned = Vec::new();
                for (index, given) in input.instalments.iter().enumerate() {
                    if index == 0 && given.due_date != today {
                        return Err(invalid_instalments(
                            "the first instalment is due today: it is charged now",
                        ));
                    }
                    if given.due_date < today {
                        return Err(invalid_instalments("due dates are today or later"));
                    }
                    planned.push(PlannedInstalment {
                        number: index as u32 + 1,
                        amount: amount("instalments.amount", &given.amount)?,
                        due_date: Some(given.due_date),
                    });
                }
                planned
            }
            PlanKind::DepositAndBalance => {
                let deposit = amount(
                    "deposit",
                    input.deposit.as_deref().ok_or_else(|| AppError::Invalid {
                        field: "deposit",
                        code: "DEPOSIT_REQUIRED",
                        message: "a deposit-and-balance plan needs the deposit amount".into(),
                    })?,
                )?;
                if input.balance_date.is_some_and(|date| date <= today) {
                    return Err(AppError::Invalid {
                        field: "balanceDate",
                        code: "INVALID_BALANCE_DATE",
                        message: "the balance is charged after today".into(),
                    });
                }
                let balance = total.checked_sub(&deposit).map_err(|_| AppError::Invalid {
                    field: "deposit",
                    code: "DEPOSIT_EXCEEDS_AMOUNT",
                    message: format!("the deposit must be less than the order amount {total}"),
                })?;
                if balance.is_zero() {
                    return Err(AppError::Invalid {
                        field: "deposit",
                        code: "DEPOSIT_EXCEEDS_AMOUNT",
                        message: format!("the deposit must be less than the order amount {total}"),
                    });
                }
                vec![
                    PlannedInstalment {
                        number: 1,
                        amount: deposit,
                        due_date: Some(today),
                    },
                    PlannedInstalment {
                        number: 2,
                        amount: balance,
                        due_date: input.balance_date,
                    },
                ]
            }
        };
        check_instalments(total, &instalments).map_err(instalment_field)?;
        Ok(instalments)
    }

    /// Read-your-writes: the plan's views (and its payments', written before
    /// the plan's last event) include what was just done.
    async fn wait_for_views(&self, aggregate_id: &str) -> Result<(), AppError> {
        let position = self
            .log
            .last_position_of(PaymentPlan::TYPE, aggregate_id)
            .await?;
        self.waiter.wait_for(position).await;
        Ok(())
    }
}

fn without_idempotency(context: &RequestContext) -> RequestContext {
    RequestContext {
        idempotency: None,
        ..context.clone()
    }
}

fn invalid_instalments(message: &str) -> AppError {
    AppError::Invalid {
        field: "instalments",
        code: "INVALID_INSTALMENTS",
        message: message.to_string(),
    }
}

/// Plan errors about the schedule name the `instalments` field.
fn instalment_field(error: impl Into<AppError>) -> AppError {
    match error.into() {
        AppError::Plan(PlanError::InvalidInstalments(message)) => invalid_instalments(&message),
        other => other,
    }
}
