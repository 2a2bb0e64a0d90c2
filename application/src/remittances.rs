//! The remittance use case (CM-10): capture every payment due for a shop, take
//! every refund not yet sent to the bank, and record one remittance per currency
//! and acquirer contract, with the captures as debits and the refunds as credits.

use std::collections::BTreeMap;
use std::sync::Arc;

use caisse_domain::ids::RefundId;
use caisse_domain::payment::{Payment, PaymentCommand, PaymentError, PaymentEvent};
use caisse_domain::remittance::{
    Remittance, RemittanceCommand, RemittanceError, RemittedPayment, RemittedRefund,
};
use caisse_domain::{Currency, PaymentId, RemittanceId, ShopId};
use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::CommandRunner;
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ports::{Clock, DuePayments, EventLog, ProjectionWaiter};

/// Age after which a capture without its remittance record is taken as left by a crash.
pub const ORPHAN_AGE_MINUTES: i64 = 10;

/// What one remittance groups, besides the shop and mode: a currency and the
/// acquirer contract the payments were authorised under.
type GroupKey = (Currency, String);

/// The payments to capture and the refunds to send of one group.
#[derive(Default)]
struct Group {
    payments: Vec<PaymentId>,
    refunds: Vec<(PaymentId, RefundId)>,
}

/// The lines of a remittance left unrecorded, gathered for its recovery.
struct Unrecorded {
    contract: String,
    payments: Vec<RemittedPayment>,
    refunds: Vec<RemittedRefund>,
    /// When its oldest line was written (or last changed, for a capture).
    oldest: DateTime<Utc>,
}

pub struct RemittanceService<R>
where
    R: PersistedEventRepository,
{
    payments: CommandRunner<R, Payment>,
    remittances: CommandRunner<R, Remittance>,
    due: Arc<dyn DuePayments>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
}

impl<R> RemittanceService<R>
where
    R: PersistedEventRepository + Clone,
{
    pub fn new(
        repository: R,
        due: Arc<dyn DuePayments>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        RemittanceService {
            payments: CommandRunner::new(repository.clone()),
            remittances: CommandRunner::new(repository),
            due,
            clock,
            log,
            waiter,
        }
    }

    /// Captures every due payment of the shop, takes every refund not yet sent,
    /// and returns the remittances created (none when there was nothing to send).
    ///
    /// Each capture and each refund's `RefundRemitted` is its own command, so a
    /// crash mid-way leaves lines carrying a remittance id whose
    /// `RemittanceSubmitted` is missing; the next run records it (docs/adr/0004,
    /// docs/adr/0008).
    pub async fn run(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
    ) -> Result<Vec<RemittanceId>, AppError> {
        self.run_as_of(context, shop_id, self.clock.today()).await
    }

    /// `run` for the business day `today`: the daily cut-off of a day that ended
    /// while the service was down still captures what was due that day.
    pub async fn run_as_of(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        today: NaiveDate,
    ) -> Result<Vec<RemittanceId>, AppError> {
        if !context.scope.shop_ids.contains(&shop_id) {
            return Err(caisse_domain::merchant::MerchantError::ShopNotFound.into());
        }
        let mode = context.scope.mode;
        let mut created = self.recover_unrecorded(context, shop_id).await?;
        let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
        for payment in self.due.list_due(shop_id, mode, today).await? {
            groups
                .entry((payment.currency, payment.contract))
                .or_default()
                .payments
                .push(payment.payment_id);
        }
        for refund in self.due.pending_refunds(shop_id, mode).await? {
            groups
                .entry((refund.currency, refund.contract))
                .or_default()
                .refunds
                .push((refund.payment_id, refund.refund_id));
        }
        for ((_currency, contract), group) in groups {
            // Chosen first: every capture and `RefundRemitted` carries it.
            let remittance_id = RemittanceId::new();
            let payments = self
                .capture(context, remittance_id, today, group.payments)
                .await?;
            let refunds = self
                .remit_refunds(context, remittance_id, group.refunds)
                .await?;
            if payments.is_empty() && refunds.is_empty() {
                continue;
            }
            self.submit(
                context,
                shop_id,
                remittance_id,
                contract,
                today,
                payments,
                refunds,
            )
            .await?;
            created.push(remittance_id);
        }
        Ok(created)
    }

    /// Captures each payment under `remittance_id`; returns those it captured.
    async fn capture(
        &self,
        context: &RequestContext,
        remittance_id: RemittanceId,
        today: NaiveDate,
        payment_ids: Vec<PaymentId>,
    ) -> Result<Vec<RemittedPayment>, AppError> {
        let mut remitted = Vec::new();
        for payment_id in payment_ids {
            let command = PaymentCommand::Capture {
                remittance_id,
                today,
                occurred_at: self.clock.now(),
            };
            match self
                .payments
                .execute(&payment_id.to_string(), command, context.metadata(false))
                .await
            {
                Ok(executed) => {
                    for envelope in executed.events {
                        if let PaymentEvent::PaymentCaptured { amount, .. } = envelope.payload {
                            remitted.push(RemittedPayment { payment_id, amount });
                        }
                    }
                }
                // Cancelled, modified or captured since the view listed it: skip it.
                Err(AppError::Payment(
                    PaymentError::NotDue
                    | PaymentError::AlreadyCancelled
                    | PaymentError::AlreadyRemitted
                    | PaymentError::Refused
                    | PaymentError::Expired,
                )) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(remitted)
    }

    /// Records each refund as sent with `remittance_id`; returns those it recorded.
    /// The payment aggregate refuses a refund already remitted, so of two runs at
    /// once (or a run reading a lagging view) only one takes each refund.
    async fn remit_refunds(
        &self,
        context: &RequestContext,
        remittance_id: RemittanceId,
        refunds: Vec<(PaymentId, RefundId)>,
    ) -> Result<Vec<RemittedRefund>, AppError> {
        let mut remitted = Vec::new();
        for (payment_id, refund_id) in refunds {
            let command = PaymentCommand::RemitRefund {
                remittance_id,
                refund_id,
                occurred_at: self.clock.now(),
            };
            match self
                .payments
                .execute(&payment_id.to_string(), command, context.metadata(false))
                .await
            {
                Ok(executed) => {
                    for envelope in executed.events {
                        if let PaymentEvent::RefundRemitted { amount, .. } = envelope.payload {
                            remitted.push(RemittedRefund {
                                payment_id,
                                refund_id,
                                amount,
                            });
                        }
                    }
                }
                // Taken by another run since the view listed it.
                Err(AppError::Payment(PaymentError::RefundAlreadyRemitted)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(remitted)
    }

    #[allow(clippy::too_many_arguments)]
    async fn submit(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        remittance_id: RemittanceId,
        contract: String,
        business_date: NaiveDate,
        payments: Vec<RemittedPayment>,
        refunds: Vec<RemittedRefund>,
    ) -> Result<(), AppError> {
        let command = RemittanceCommand::Submit {
            remittance_id,
            shop_id,
            mode: context.scope.mode,
            contract,
            business_date,
            payments,
            refunds,
            occurred_at: self.clock.now(),
        };
        let aggregate_id = remittance_id.to_string();
        let executed = self
            .remittances
            .execute(&aggregate_id, command, context.metadata(false))
            .await?;
        let position = self
            .log
            .position_of(Remittance::TYPE, &aggregate_id, executed.last_sequence())
            .await?;
        self.waiter.wait_for(position).await;
        Ok(())
    }

    /// Records the remittances that a crash left half-done: captures and remitted
    /// refunds under a remittance id with no `RemittanceSubmitted`. A remittance
    /// is taken, with all its lines, once its oldest line is older than
    /// `ORPHAN_AGE_MINUTES`, so one still running in another request is never
    /// completed behind its back (ADR 0004, ADR 0008).
    async fn recover_unrecorded(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
    ) -> Result<Vec<RemittanceId>, AppError> {
        let mode = context.scope.mode;
        let mut unrecorded: BTreeMap<RemittanceId, Unrecorded> = BTreeMap::new();
        let empty = |contract: String, at: DateTime<Utc>| Unrecorded {
            contract,
            payments: Vec::new(),
            refunds: Vec::new(),
            oldest: at,
        };
        for orphan in self.due.orphan_captures(shop_id, mode).await? {
            let entry = unrecorded
                .entry(orphan.remittance_id)
                .or_insert_with(|| empty(orphan.contract, orphan.changed_at));
            entry.oldest = entry.oldest.min(orphan.changed_at);
            entry.payments.push(RemittedPayment {
                payment_id: orphan.payment_id,
                amount: orphan.amount,
            });
        }
        for orphan in self.due.orphan_refunds(shop_id, mode).await? {
            let entry = unrecorded
                .entry(orphan.remittance_id)
                .or_insert_with(|| empty(orphan.contract, orphan.remitted_at));
            entry.oldest = entry.oldest.min(orphan.remitted_at);
            entry.refunds.push(RemittedRefund {
                payment_id: orphan.payment_id,
                refund_id: orphan.refund_id,
                amount: orphan.amount,
            });
        }
        let cutoff = self.clock.now() - chrono::Duration::minutes(ORPHAN_AGE_MINUTES);
        let mut recovered = Vec::new();
        for (remittance_id, lines) in unrecorded {
            if lines.oldest >= cutoff {
                continue;
            }
            tracing::warn!(
                %remittance_id,
                payments = lines.payments.len(),
                refunds = lines.refunds.len(),
                "recording a remittance left half-done"
            );
            let business_date = self.clock.today();
            match self
                .submit(
                    context,
                    shop_id,
                    remittance_id,
                    lines.contract,
                    business_date,
                    lines.payments,
                    lines.refunds,
                )
                .await
            {
                Ok(()) => recovered.push(remittance_id),
                // Recorded meanwhile by someone else: nothing left to do.
                Err(AppError::Remittance(RemittanceError::AlreadySubmitted)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(recovered)
    }
}
