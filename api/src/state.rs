//! Everything a request handler needs, built once at start.

use std::sync::Arc;
use std::time::Duration;

use caisse_application::merchants::MerchantService;
use caisse_application::notifications::NotificationService;
use caisse_application::payment_security::{PaymentSecurity, ThreeDsServers};
use caisse_application::payments::{Acquirers, PaymentService};
use caisse_application::plans::PlanService;
use caisse_application::ports::{Clock, ProjectionWaiter};
use caisse_application::ports::{InProcessOnly, KeyLock};
use caisse_application::reference::SharedReference;
use caisse_application::remittances::RemittanceService;
use caisse_application::retention::RetentionService;
use caisse_application::risk::RiskService;
use caisse_application::scheduler::Scheduler;
use caisse_application::webhooks::WebhookService;
use caisse_infrastructure::acquirer::{SimulatorAcquirer, UnconfiguredAcquirer};
use caisse_infrastructure::event_log::EventLogReader;
use caisse_infrastructure::event_repository::EventRepository;
use caisse_infrastructure::mailer::{EmailDeliverer, EmailRun};
use caisse_infrastructure::reference_store;
use caisse_infrastructure::three_ds::{SimulatorThreeDsServer, UnconfiguredThreeDsServer};
use caisse_infrastructure::vault::{DatabaseVault, VaultKey};
use caisse_infrastructure::webhook_delivery::{DeliveryRun, WebhookDeliverer};
use caisse_infrastructure::webhook_http::{PolicyUrlGuard, WebhookNetworkPolicy, WebhookSender};
use caisse_infrastructure::webhook_secrets::DatabaseWebhookSecrets;
use caisse_infrastructure::{Config, Database, Db};
use caisse_projections::email_dispatch::EmailDispatcher;
use caisse_projections::queries::ViewDuePayments;
use caisse_projections::risk::ViewGreyLists;
use caisse_projections::schedule::ViewScheduledWork;
use caisse_projections::webhook_dispatch::WebhookDispatcher;
use caisse_projections::Projectors;

/// Most webhook deliveries one pass attempts.
const WEBHOOK_PASS_MAX: usize = 200;
/// Most e-mails one pass attempts.
const EMAIL_PASS_MAX: usize = 200;
/// How long a sender woken by new events waits for more before its pass.
const SENDER_COALESCE: Duration = Duration::from_millis(100);
/// How often the server checkpoints a SQLite WAL (`spawn_wal_checkpointer`):
/// under load a few hundred pages each time.
const WAL_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

pub struct AppState {
    pub config: Config,
    pub database: Database,
    pub log: EventLogReader,
    pub projectors: Arc<Projectors>,
    pub clock: Arc<dyn Clock>,
    pub payments: Arc<PaymentService<EventRepository>>,
    pub remittances: Arc<RemittanceService<EventRepository>>,
    pub scheduler: Scheduler<EventRepository>,
    pub plans: Arc<PlanService<EventRepository>>,
    /// Background tasks besides the projectors (the scheduler loop, the reference
    /// tables refresh), stopped by `stop_background`.
    pub background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub merchants: MerchantService<EventRepository>,
    pub retention: Arc<RetentionService<EventRepository>>,
    pub api_keys: crate::auth::ApiKeyCache,
    /// The risk reference tables in use (BIN, IP-to-country), shared by every
    /// request: the shipped ones from `build`, the database's from
    /// `load_reference`, then swapped by the refresh loop (`spawn_reference_refresh`).
    pub reference: SharedReference,
    /// Webhook endpoints (issue 5).
    pub webhooks: Arc<WebhookService<EventRepository>>,
    /// Sends the webhook deliveries: first attempts for the dispatcher,
    /// then retries, redeliveries and test events.
    pub webhook_deliverer: Arc<WebhookDeliverer>,
    /// Finds the webhook deliveries in the log (ADR 0013).
    pub webhook_dispatcher: Arc<WebhookDispatcher>,
    /// Merchant e-mail settings (issue 5, NT-1).
    pub notifications: Arc<NotificationService<EventRepository>>,
    /// Sends the e-mails (SMTP or files): first attempts for the
    /// dispatcher, then retries.
    pub email_deliverer: Arc<EmailDeliverer>,
    /// Finds and renders the e-mails in the log (ADR 0013).
    pub email_dispatcher: Arc<EmailDispatcher>,
}

impl AppState {
    pub fn build(
        config: Config,
        database: Database,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<AppState>> {
        config.validate()?;
        let db = database.db.clone();
        // The shipped tables until `load_reference` reads the database's (async).
        let reference = SharedReference::new(reference_store::shipped_reference());
        let repository = EventRepository::new(&db);
        let log = EventLogReader::new(db.clone());
        let projectors = Arc::new(Projectors::new(
            db.clone(),
            Duration::from_millis(config.projection_wait_ms_max),
        ));
        let waiter: Arc<dyn ProjectionWaiter> = projectors.clone();
        let vault_key = VaultKey::load(&config)?;
        let webhook_secrets: Arc<dyn caisse_application::ports::WebhookSecrets> = Arc::new(
            DatabaseWebhookSecrets::new(db.clone(), vault_key.clone(), clock.clone()),
        );
        let webhooks = Arc::new(WebhookService::new(
            repository.clone(),
            Arc::new(PolicyUrlGuard {
                policy: WebhookNetworkPolicy::from(&config.webhooks),
            }),
            webhook_secrets.clone(),
            caisse_infrastructure::webhook_signature::generate_secret,
            clock.clone(),
            Arc::new(log.clone()),
            waiter.clone(),
        ));
        let vault = Arc::new(DatabaseVault::new(db.clone(), vault_key, clock.clone()));
        let acquirers = Acquirers {
            test: Arc::new(SimulatorAcquirer::default()),
            live: Arc::new(UnconfiguredAcquirer),
        };
        let risk = Arc::new(RiskService::new(
            repository.clone(),
            reference.clone(),
            Arc::new(ViewGreyLists { db: db.clone() }),
            vault.clone(),
            clock.clone(),
            Arc::new(log.clone()),
            waiter.clone(),
        ));
        let security = PaymentSecurity {
            risk,
            three_ds: ThreeDsServers {
                test: Arc::new(SimulatorThreeDsServer),
                live: Arc::new(UnconfiguredThreeDsServer),
            },
            challenge_timeout: Duration::from_secs(config.three_ds_challenge_timeout_s),
        };
        let payments = PaymentService::new(
            repository.clone(),
            acquirers,
            vault,
            clock.clone(),
            Arc::new(log.clone()),
            waiter.clone(),
            config.card_ranges.clone(),
        );
        // Several `caisse serve` may share one PostgreSQL: lock idempotency keys and
        // scheduled work there.
        let key_lock: Arc<dyn KeyLock> = match &db {
            Db::Postgres(pool) => Arc::new(caisse_infrastructure::key_lock::PostgresKeyLock::new(
                pool,
                config.database_connections_max,
            )),
            Db::Sqlite(_) => Arc::new(InProcessOnly),
        };
        let payments = Arc::new(
            payments
                .with_key_lock(key_lock.clone())
                .with_authorisation_validity(config.authorisation_validity.clone())
                .with_security(security),
        );
        let webhook_deliverer = Arc::new(WebhookDeliverer::new(
            database.notification_db.clone(),
            db.clone(),
            WebhookSender::new(WebhookNetworkPolicy::from(&config.webhooks))
                .map_err(|error| anyhow::anyhow!("webhook sender: {error:?}"))?,
            webhook_secrets,
            clock.clone(),
            key_lock.clone(),
        ));
        let email_deliverer = Arc::new(
            EmailDeliverer::new(
                database.notification_db.clone(),
                &config.mail,
                &config.data_dir,
                clock.clone(),
            )
            .map_err(|error| anyhow::anyhow!("e-mail sender: {error}"))?,
        );
        let notifications = Arc::new(NotificationService::new(
            repository.clone(),
            clock.clone(),
            Arc::new(log.clone()),
            waiter.clone(),
        ));
        let remittances = Arc::new(RemittanceService::new(
            repository.clone(),
            Arc::new(ViewDuePayments { db: db.clone() }),
            clock.clone(),
            Arc::new(log.clone()),
            waiter.clone(),
        ));
        let retention = Arc::new(RetentionService::new(
            repository.clone(),
            config.retention_months,
            Arc::new(log.clone()),
            waiter.clone(),
        ));
        let plans = Arc::new(PlanService::new(
            repository.clone(),
            payments.clone(),
            config.plan_retry,
            clock.clone(),
            Arc::new(log.clone()),
            waiter.clone(),
        ));
        let scheduler = Scheduler::new(
            repository.clone(),
            remittances.clone(),
            payments.clone(),
            plans.clone(),
            retention.clone(),
            Arc::new(ViewScheduledWork { db: db.clone() }),
            key_lock,
            clock.clone(),
            Arc::new(log.clone()),
            waiter.clone(),
        );

        let merchants =
            MerchantService::new(repository, clock.clone(), Arc::new(log.clone()), waiter);
        Ok(Arc::new(AppState {
            config,
            database,
            log,
            projectors,
            clock,
            payments,
            remittances,
            scheduler,
            plans,
            background: Default::default(),
            merchants,
            retention,
            api_keys: Default::default(),
            reference,
            webhooks,
            webhook_dispatcher: Arc::new(WebhookDispatcher::new(
                db.clone(),
                webhook_deliverer.clone(),
            )),
            webhook_deliverer,
            notifications,
            email_dispatcher: Arc::new(EmailDispatcher::new(db.clone(), email_deliverer.clone())),
            email_deliverer,
        }))
    }

    /// Puts the reference tables in force in the database (the latest loaded of
    /// each kind, else the shipped ones) in place of those `build` started with.
    /// A stored table that does not load is an error: better not to start than to
    /// judge payments on the test tables.
    pub async fn load_reference(&self) -> anyhow::Result<()> {
        let data = reference_store::load_reference(self.db())
            .await
            .map_err(|error| anyhow::anyhow!("loading the reference tables: {error}"))?;
        tracing::info!(
            bins = %data.bins_version,
            ip_countries = %data.ip_countries_version,
            "reference tables loaded"
        );
        self.reference.replace(data);
        Ok(())
    }

    /// Looks for newer reference tables every `reference.refresh_interval_ms`
    /// (`caisse reference load` in any process on the database) and swaps them
    /// in. Runs whether or not the scheduler does.
    pub fn spawn_reference_refresh(self: &Arc<Self>) {
        let state = self.clone();
        let interval = Duration::from_millis(self.config.reference.refresh_interval_ms);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(error) = reference_store::refresh(state.db(), &state.reference).await {
                    tracing::error!(%error, "reference tables refresh failed; retrying");
                }
            }
        });
        self.background.lock().expect("background tasks").push(task);
    }

    /// SQLite: checkpoints the WAL every `WAL_CHECKPOINT_INTERVAL`, outside the
    /// write gate (`sql::checkpoint_sqlite_wal`, ADR 0012). Nothing on
    /// PostgreSQL.
    pub fn spawn_wal_checkpointer(self: &Arc<Self>) {
        if self.db().is_postgres() {
            return;
        }
        let state = self.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(WAL_CHECKPOINT_INTERVAL).await;
                if let Err(error) =
                    caisse_infrastructure::sql::checkpoint_sqlite_wal(state.db()).await
                {
                    tracing::warn!(%error, "SQLite WAL checkpoint failed; retrying");
                }
            }
        });
        self.background.lock().expect("background tasks").push(task);
    }

    /// Runs the scheduler in the background: at once (work missed while the service
    /// was down), then every `scheduler.interval_ms`; and the notification
    /// senders beside it.
    pub fn spawn_scheduler(self: &Arc<Self>) {
        let state = self.clone();
        let interval = Duration::from_millis(self.config.scheduler.interval_ms);
        let task = tokio::spawn(async move {
            loop {
                match state.scheduler.run_due().await {
                    Ok(run) if run.done_total() > 0 || run.failed > 0 => {
                        tracing::info!(done = ?run.done, failed = run.failed, "scheduled work done")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "scheduled work failed; retrying"),
                }
                tokio::time::sleep(interval).await;
            }
        });
        self.background.lock().expect("background tasks").push(task);
        self.spawn_notification_senders();
    }

    /// The notification senders, four tasks beside the scheduler's (a long
    /// cut-off never holds notifications back): for webhooks and for e-mails,
    /// a dispatcher (first attempts of new events) and a retry loop (what is
    /// due again). Apart, so that a receiver that times out in the retries
    /// never holds back the first attempts of every other shop. Each passes
    /// again at once while there is more work than one pass (a backlog
    /// drains at full speed), and otherwise waits: a dispatcher until a view
    /// it reads moves (new events, dispatched about `SENDER_COALESCE` later)
    /// or `scheduler.interval_ms` passes; a retry loop for that interval.
    fn spawn_notification_senders(self: &Arc<Self>) {
        // Every projector batch moves every view's checkpoint: the endpoints'
        // and the settings' wake the dispatchers.
        let tasks = [
            self.spawn_sender("webhook dispatch", Some("webhooks"), |state| {
                Box::pin(async move { Ok(state.webhook_dispatcher.run_pass().await?.full) })
            }),
            self.spawn_sender("webhook retries", None, |state| {
                Box::pin(async move {
                    let run = state.retry_webhooks().await?;
                    Ok(run.succeeded + run.retrying + run.failed >= WEBHOOK_PASS_MAX)
                })
            }),
            self.spawn_sender("e-mail dispatch", Some("notifications"), |state| {
                Box::pin(async move { Ok(state.email_dispatcher.run_pass().await?.full) })
            }),
            self.spawn_sender("e-mail retries", None, |state| {
                Box::pin(async move {
                    let run = state.email_deliverer.run_due(EMAIL_PASS_MAX).await?;
                    Ok(run.sent + run.retrying + run.failed >= EMAIL_PASS_MAX)
                })
            }),
        ];
        self.background
            .lock()
            .expect("background tasks")
            .extend(tasks);
    }

    /// One sender's loop: `pass` answers whether more work is waiting;
    /// `wake_on` names the projection whose moves wake it.
    fn spawn_sender(
        self: &Arc<Self>,
        sender: &'static str,
        wake_on: Option<&str>,
        pass: fn(Arc<AppState>) -> SenderPass,
    ) -> tokio::task::JoinHandle<()> {
        let interval = Duration::from_millis(self.config.scheduler.interval_ms);
        let state = self.clone();
        let mut moved = wake_on.and_then(|name| self.projectors.watch_checkpoint(name));
        tokio::spawn(async move {
            loop {
                let more = match pass(state.clone()).await {
                    Ok(more) => more,
                    Err(error) => {
                        tracing::error!(sender, %error, "notifications failed; retrying");
                        false
                    }
                };
                if !more {
                    wait_for_work(&mut moved, interval).await;
                }
            }
        })
    }

    /// Dispatches what the log holds since the last pass (first attempts),
    /// then the due retries (`retry_webhooks`): what the background tasks do,
    /// in one call (tests, `caisse` commands).
    pub async fn deliver_webhooks(&self) -> Result<DeliveryRun, caisse_application::AppError> {
        let mut run = DeliveryRun::default();
        loop {
            let pass = self.webhook_dispatcher.run_pass().await?;
            run.absorb(pass.run);
            if !pass.full {
                break;
            }
        }
        run.absorb(self.retry_webhooks().await?);
        Ok(run)
    }

    /// Sends the due webhook retries (and queued deliveries), and disables
    /// the endpoints that failed for the whole retry schedule.
    pub async fn retry_webhooks(&self) -> Result<DeliveryRun, caisse_application::AppError> {
        let run = self.webhook_deliverer.run_due(WEBHOOK_PASS_MAX).await?;
        for endpoint_id in &run.endpoints_failing {
            self.webhooks.disable_failing(*endpoint_id).await?;
        }
        Ok(run)
    }

    /// Dispatches what the log holds since the last pass (first attempts),
    /// then sends (or, in directory mode, writes) the e-mails due again.
    pub async fn deliver_emails(&self) -> Result<EmailRun, caisse_application::AppError> {
        let mut run = EmailRun::default();
        loop {
            let pass = self.email_dispatcher.run_pass().await?;
            run.absorb(pass.run);
            if !pass.full {
                break;
            }
        }
        run.absorb(self.email_deliverer.run_due(EMAIL_PASS_MAX).await?);
        Ok(run)
    }

    /// Stops the projectors, the scheduler and the reference refresh (a server
    /// stopping, a test app dropped).
    pub fn stop_background(&self) {
        self.projectors.stop();
        for task in self.background.lock().expect("background tasks").drain(..) {
            task.abort();
        }
    }

    pub fn db(&self) -> &Db {
        &self.database.db
    }
}

/// One pass of a notification sender: whether more work is waiting.
type SenderPass = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<bool, caisse_application::AppError>> + Send>,
>;

/// Until the outbox's projection moves or `interval` passes.
async fn wait_for_work(
    moved: &mut Option<tokio::sync::watch::Receiver<caisse_application::ports::LogPosition>>,
    interval: Duration,
) {
    match moved {
        Some(receiver) => match tokio::time::timeout(interval, receiver.changed()).await {
            // New rows: let a few more projector batches land first, so one
            // pass claims and records them together (fewer transactions
            // beside the payments' own) at the cost of that much latency.
            Ok(Ok(())) => tokio::time::sleep(SENDER_COALESCE).await,
            // The projector is gone (the server is stopping): no busy loop.
            Ok(Err(_)) => tokio::time::sleep(interval).await,
            Err(_) => {}
        },
        None => tokio::time::sleep(interval).await,
    }
}
