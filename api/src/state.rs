//! Everything a request handler needs, built once at start.

use std::sync::Arc;
use std::time::Duration;

use caisse_application::merchants::MerchantService;
use caisse_application::payments::{Acquirers, PaymentService};
use caisse_application::ports::{Clock, ProjectionWaiter};
use caisse_application::remittances::RemittanceService;
use caisse_infrastructure::acquirer::{SimulatorAcquirer, UnconfiguredAcquirer};
use caisse_infrastructure::event_log::EventLogReader;
use caisse_infrastructure::event_repository::EventRepository;
use caisse_infrastructure::vault::{DatabaseVault, VaultKey};
use caisse_infrastructure::{Config, Database, Db};
use caisse_projections::queries::ViewDuePayments;
use caisse_projections::Projectors;

pub struct AppState {
    pub config: Config,
    pub database: Database,
    pub log: EventLogReader,
    pub projectors: Arc<Projectors>,
    pub clock: Arc<dyn Clock>,
    pub payments: PaymentService<EventRepository>,
    pub remittances: RemittanceService<EventRepository>,
    pub merchants: MerchantService<EventRepository>,
    pub api_keys: crate::auth::ApiKeyCache,
}

impl AppState {
    pub fn build(
        config: Config,
        database: Database,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<AppState>> {
        let db = database.db.clone();
        let repository = EventRepository::new(&db);
        let log = EventLogReader::new(db.clone());
        let projectors = Arc::new(Projectors::new(
            db.clone(),
            Duration::from_millis(config.projection_wait_ms_max),
        ));
        let waiter: Arc<dyn ProjectionWaiter> = projectors.clone();
        let vault_key = VaultKey::load(&config)?;
        let vault = Arc::new(DatabaseVault::new(db.clone(), vault_key, clock.clone()));
        let acquirers = Acquirers {
            test: Arc::new(SimulatorAcquirer::default()),
            live: Arc::new(UnconfiguredAcquirer),
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
        // Several `caisse serve` may share one PostgreSQL: lock idempotency keys there.
        let payments = match &db {
            Db::Postgres(pool) => payments.with_key_lock(Arc::new(
                caisse_infrastructure::key_lock::PostgresKeyLock::new(
                    pool,
                    config.database_connections_max,
                ),
            )),
            Db::Sqlite(_) => payments,
        };
        let remittances = RemittanceService::new(
            repository.clone(),
            Arc::new(ViewDuePayments { db: db.clone() }),
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
            merchants,
            api_keys: Default::default(),
        }))
    }

    pub fn db(&self) -> &Db {
        &self.database.db
    }
}
