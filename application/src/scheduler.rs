//! The scheduler: does the work that falls due later — expiring authorisations
//! nobody validated, authorising payments deferred beyond the authorisation
//! validity, charging the instalments of payment plans (and their retries), and
//! running each shop's daily remittance cut-off and the daily retention of
//! the online views — exactly
//! once, even with several `caisse serve` processes on one database.
//!
//! What is due comes from the `schedule` view, itself derived from events, so a
//! restart loses nothing and work missed while the service was down is done on
//! the first pass. Exactly once rests on two things: a lock per item (on
//! PostgreSQL an advisory lock, so two processes never work on one item at the
//! same time), and commands that refuse to do the work twice (an expired payment
//! cannot expire again; a cut-off is an aggregate whose id names the shop and
//! day, so a second run of it finds it completed) — which also covers a process
//! that picks an item up again before its view has caught up.

use std::collections::BTreeMap;
use std::sync::Arc;

use caisse_domain::cut_off::{cut_off_id, CutOffCommand, CutOffError, DailyCutOff};
use caisse_domain::payment::{AccessScope, PaymentError};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::CommandRunner;
use crate::context::RequestContext;
use crate::error::AppError;
use crate::payments::PaymentService;
use crate::plans::PlanService;
use crate::ports::{
    Clock, EventLog, KeyLock, ProjectionWaiter, ScheduledItem, ScheduledKind, ScheduledWork,
};
use crate::remittances::RemittanceService;
use crate::retention::RetentionService;

/// The actor recorded in the metadata of the events the scheduler causes.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// Items looked at per pass; a pass repeats until nothing due is left.
const ITEMS_PER_PASS: usize = 200;

/// What one call to `run_due` did, by kind of work.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedulerRun {
    /// Items whose work this process did.
    pub done: BTreeMap<&'static str, usize>,
    /// Items found already done (by another process, or before a restart).
    pub already_done: usize,
    /// Items another process was working on.
    pub skipped_locked: usize,
    /// Items whose work failed this time (logged; tried again on the next pass).
    pub failed: usize,
}

impl SchedulerRun {
    pub fn done_total(&self) -> usize {
        self.done.values().sum()
    }
}

pub struct Scheduler<R>
where
    R: PersistedEventRepository,
{
    cut_offs: CommandRunner<R, DailyCutOff>,
    remittances: Arc<RemittanceService<R>>,
    payment_service: Arc<PaymentService<R>>,
    plans: Arc<PlanService<R>>,
    retention: Arc<RetentionService<R>>,
    /// The last day the retention job found nothing new to trim, so a pass
    /// does not reload its aggregate every second.
    retention_checked: std::sync::Mutex<Option<chrono::NaiveDate>>,
    work: Arc<dyn ScheduledWork>,
    locks: Arc<dyn KeyLock>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
    /// Serialises passes within this process (the background loop and an operator).
    pass: tokio::sync::Mutex<()>,
}

impl<R> Scheduler<R>
where
    R: PersistedEventRepository + Clone,
{
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repository: R,
        remittances: Arc<RemittanceService<R>>,
        payment_service: Arc<PaymentService<R>>,
        plans: Arc<PlanService<R>>,
        retention: Arc<RetentionService<R>>,
        work: Arc<dyn ScheduledWork>,
        locks: Arc<dyn KeyLock>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        Scheduler {
            cut_offs: CommandRunner::new(repository),
            remittances,
            payment_service,
            plans,
            retention,
            retention_checked: std::sync::Mutex::new(None),
            work,
            locks,
            clock,
            log,
            waiter,
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Does every item due now, soonest first, and returns what was done. Items
    /// that fall due while it runs (a cut-off scheduling the next day's, already
    /// past after downtime) are done in the same call.
    pub async fn run_due(&self) -> Result<SchedulerRun, AppError> {
        let _pass = self.pass.lock().await;
        let mut run = SchedulerRun::default();
        match self.run_retention().await {
            Ok(true) => *run.done.entry("RETENTION").or_default() += 1,
            Ok(false) => {}
            // Like any item: logged, tried again next pass, the rest goes on.
            Err(error) => {
                tracing::error!(%error, "retention of the online views failed; retried next pass");
                run.failed += 1;
            }
        }
        // Items handled in this call (an item id comes back with a new due time
        // for the next cut-off): the view may still list them for an instant.
        let mut handled = std::collections::HashSet::new();
        loop {
            let now = self.clock.now();
            let items = self.work.due(now, ITEMS_PER_PASS).await?;
            let mut progressed = false;
            for item in items {
                if !handled.insert((item.item_id.clone(), item.due_at)) {
                    continue;
                }
                let Some(_lease) = self
                    .locks
                    .try_acquire(&format!("schedule:{}", item.item_id))
                    .await?
                else {
                    run.skipped_locked += 1;
                    continue;
                };
                match self.execute(&item).await {
                    Ok(true) => *run.done.entry(item.kind.as_str()).or_default() += 1,
                    Ok(false) => run.already_done += 1,
                    // One item's failure (a database hiccup, an acquirer down)
                    // does not hold back the others; it is tried again next pass.
                    Err(error) => {
                        tracing::error!(item = %item.item_id, %error, "scheduled work failed; retried next pass");
                        run.failed += 1;
                    }
                }
                progressed = true;
            }
            // Nothing this process could do: the rest is locked by others, or the
            // views still show work done an instant ago; the next pass sees it.
            if !progressed {
                return Ok(run);
            }
        }
    }

    /// The daily retention job (CM-12): trims the online views once the date
    /// they keep from moves on. Due-ness comes from the `ViewRetention`
    /// aggregate's events (the last trim), and a trim that is not new appends
    /// nothing, so several processes running it is harmless.
    async fn run_retention(&self) -> Result<bool, AppError> {
        let today = self.clock.today();
        if *self.retention_checked.lock().expect("retention date") == Some(today) {
            return Ok(false);
        }
        let outcome = self.retention.run(self.clock.now()).await?;
        *self.retention_checked.lock().expect("retention date") = Some(today);
        if outcome.trimmed {
            tracing::info!(created_before = %outcome.created_before, "online views trimmed");
        }
        Ok(outcome.trimmed)
    }

    /// Does one item; `false` when it was found already done.
    async fn execute(&self, item: &ScheduledItem) -> Result<bool, AppError> {
        let context = RequestContext::system(
            AccessScope::single(item.shop_id, item.mode),
            SCHEDULER_ACTOR,
        );
        match &item.kind {
            ScheduledKind::ExpireAuthorisation { payment_id } => {
                match self
                    .payment_service
                    .expire_or_reauthorise(&context, *payment_id)
                    .await
                {
                    Ok(result) => {
                        tracing::info!(%payment_id, status = result.payment.status.as_str(), "lapsed authorisation handled");
                        Ok(true)
                    }
                    // Validated, shipped, cancelled, expired or re-authorised
                    // meanwhile: the view lagged.
                    Err(AppError::Payment(
                        PaymentError::NotAwaitingValidation { .. }
                        | PaymentError::AlreadyCancelled
                        | PaymentError::AlreadyRemitted
                        | PaymentError::Expired
                        | PaymentError::Refused
                        | PaymentError::NotExpiredYet { .. },
                    )) => Ok(false),
                    Err(error) => Err(error),
                }
            }
            ScheduledKind::AuthoriseDeferred { payment_id } => {
                match self
                    .payment_service
                    .authorise_deferred(&context, *payment_id)
                    .await
                {
                    Ok(result) => {
                        tracing::info!(%payment_id, status = result.payment.status.as_str(), "deferred authorisation asked");
                        Ok(true)
                    }
                    // Authorised, refused or cancelled meanwhile.
                    Err(AppError::Payment(PaymentError::NotWaitingAuthorisation { .. })) => {
                        Ok(false)
                    }
                    Err(error) => Err(error),
                }
            }
            ScheduledKind::AbandonAuthentication { payment_id } => {
                match self
                    .payment_service
                    .abandon_authentication(&context, *payment_id)
                    .await
                {
                    Ok(result) => {
                        tracing::info!(%payment_id, status = result.payment.status.as_str(), "unanswered 3-D Secure challenge abandoned");
                        Ok(true)
                    }
                    // The challenge was answered meanwhile.
                    Err(AppError::Payment(PaymentError::NotAuthenticationPending { .. })) => {
                        Ok(false)
                    }
                    Err(error) => Err(error),
                }
            }
            ScheduledKind::ChargeInstalment { plan_id, number } => {
                match self.plans.charge_due(&context, *plan_id, *number).await {
                    Ok(charged) => Ok(charged),
                    Err(AppError::Plan(caisse_domain::plan::PlanError::InstalmentSettled {
                        ..
                    })) => Ok(false),
                    Err(error) => Err(error),
                }
            }
            ScheduledKind::RemittanceCutOff { business_date } => {
                let aggregate_id = cut_off_id(item.shop_id, item.mode, *business_date);
                if self.cut_offs.load(&aggregate_id).await?.completed {
                    return Ok(false);
                }
                let remittance_ids = self
                    .remittances
                    .run_as_of(&context, item.shop_id, *business_date)
                    .await?;
                let command = CutOffCommand::Complete {
                    shop_id: item.shop_id,
                    mode: item.mode,
                    business_date: *business_date,
                    remittance_ids: remittance_ids.clone(),
                    occurred_at: self.clock.now(),
                };
                match self
                    .cut_offs
                    .execute(&aggregate_id, command, context.metadata(false))
                    .await
                {
                    Ok(executed) => {
                        self.wait_for(DailyCutOff::TYPE, &aggregate_id, executed.last_sequence())
                            .await?;
                        tracing::info!(
                            shop_id = %item.shop_id,
                            mode = item.mode.as_str(),
                            %business_date,
                            remittances = remittance_ids.len(),
                            "remittance cut-off done"
                        );
                        Ok(true)
                    }
                    // Another process completed it while this one ran the
                    // remittance: each payment was still captured once.
                    Err(AppError::CutOff(CutOffError::AlreadyCompleted)) => Ok(false),
                    Err(error) => Err(error),
                }
            }
        }
    }

    async fn wait_for(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<(), AppError> {
        let position = self
            .log
            .position_of(aggregate_type, aggregate_id, sequence)
            .await?;
        self.waiter.wait_for(position).await;
        Ok(())
    }
}
