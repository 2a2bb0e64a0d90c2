//! The remittance use case (CM-10): capture every payment due for a shop and
//! record one remittance per currency.

use std::collections::BTreeMap;
use std::sync::Arc;

use caisse_domain::payment::{Payment, PaymentCommand, PaymentError, PaymentEvent};
use caisse_domain::remittance::{Remittance, RemittanceCommand, RemittedPayment};
use caisse_domain::{Currency, RemittanceId, ShopId};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::CommandRunner;
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ports::{Clock, DuePayments, EventLog, ProjectionWaiter};

/// Age after which a capture without its remittance record is taken as left by a crash.
pub const ORPHAN_AGE_MINUTES: i64 = 10;

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

    /// Captures every due payment of the shop and returns the remittances created
    /// (none when nothing was due).
    ///
    /// Each capture is its own command, so a crash mid-way leaves captured payments
    /// carrying a remittance id whose `RemittanceSubmitted` is missing; the payments
    /// view still lists them under that id (docs/adr/0004 describes the recovery).
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
        today: chrono::NaiveDate,
    ) -> Result<Vec<RemittanceId>, AppError> {
        if !context.scope.shop_ids.contains(&shop_id) {
            return Err(caisse_domain::merchant::MerchantError::ShopNotFound.into());
        }
        let mode = context.scope.mode;
        let mut created = self.recover_orphan_captures(context, shop_id).await?;
        let due = self.due.list_due(shop_id, mode, today).await?;
        let mut by_currency: BTreeMap<Currency, Vec<_>> = BTreeMap::new();
        for payment in due {
            by_currency
                .entry(payment.currency)
                .or_default()
                .push(payment.payment_id);
        }
        for (_currency, payment_ids) in by_currency {
            let remittance_id = RemittanceId::new();
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
            if remitted.is_empty() {
                continue;
            }
            self.submit(context, shop_id, remittance_id, today, remitted)
                .await?;
            created.push(remittance_id);
        }
        Ok(created)
    }

    async fn submit(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        remittance_id: RemittanceId,
        business_date: chrono::NaiveDate,
        payments: Vec<RemittedPayment>,
    ) -> Result<(), AppError> {
        let command = RemittanceCommand::Submit {
            remittance_id,
            shop_id,
            mode: context.scope.mode,
            business_date,
            payments,
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

    /// Records the remittances that a crash left half-done: payments captured
    /// under a remittance id with no `RemittanceSubmitted`. Only captures older
    /// than `ORPHAN_AGE_MINUTES` are taken, so a remittance still running in
    /// another request is never completed behind its back (ADR 0004).
    async fn recover_orphan_captures(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
    ) -> Result<Vec<RemittanceId>, AppError> {
        let cutoff = self.clock.now() - chrono::Duration::minutes(ORPHAN_AGE_MINUTES);
        let orphans = self
            .due
            .orphan_captures(shop_id, context.scope.mode, cutoff)
            .await?;
        let mut by_remittance: BTreeMap<RemittanceId, Vec<RemittedPayment>> = BTreeMap::new();
        for orphan in orphans {
            by_remittance
                .entry(orphan.remittance_id)
                .or_default()
                .push(RemittedPayment {
                    payment_id: orphan.payment_id,
                    amount: orphan.amount,
                });
        }
        let mut recovered = Vec::new();
        for (remittance_id, payments) in by_remittance {
            tracing::warn!(%remittance_id, payments = payments.len(), "recording a remittance left half-done");
            let business_date = self.clock.today();
            match self
                .submit(context, shop_id, remittance_id, business_date, payments)
                .await
            {
                Ok(()) => recovered.push(remittance_id),
                // Recorded meanwhile by someone else: nothing left to do.
                Err(AppError::Remittance(
                    caisse_domain::remittance::RemittanceError::AlreadySubmitted,
                )) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(recovered)
    }
}
