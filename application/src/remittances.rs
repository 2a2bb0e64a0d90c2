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
    pub async fn run(&self, context: &RequestContext, shop_id: ShopId) -> Result<Vec<RemittanceId>, AppError> {
        if !context.scope.shop_ids.contains(&shop_id) {
            return Err(caisse_domain::merchant::MerchantError::ShopNotFound.into());
        }
        let mode = context.scope.mode;
        let today = self.clock.today();
        let due = self.due.list_due(shop_id, mode, today).await?;
        let mut by_currency: BTreeMap<Currency, Vec<_>> = BTreeMap::new();
        for payment in due {
            by_currency.entry(payment.currency).or_default().push(payment.payment_id);
        }
        let mut created = Vec::new();
        for (_currency, payment_ids) in by_currency {
            let remittance_id = RemittanceId::new();
            let mut remitted = Vec::new();
            for payment_id in payment_ids {
                let command = PaymentCommand::Capture { remittance_id, today, occurred_at: self.clock.now() };
                match self.payments.execute(&payment_id.to_string(), command, context.metadata(false)).await {
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
            let command = RemittanceCommand::Submit {
                remittance_id,
                shop_id,
                mode,
                business_date: today,
                payments: remitted,
                occurred_at: self.clock.now(),
            };
            let aggregate_id = remittance_id.to_string();
            let executed = self.remittances.execute(&aggregate_id, command, context.metadata(false)).await?;
            let position = self.log.position_of(Remittance::TYPE, &aggregate_id, executed.last_sequence()).await?;
            self.waiter.wait_for(position).await;
            created.push(remittance_id);
        }
        Ok(created)
    }
}
