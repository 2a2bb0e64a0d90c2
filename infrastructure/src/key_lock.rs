//! Keys (idempotency keys, scheduled work) locked across processes on PostgreSQL: a transaction-scoped
//! advisory lock per key, held while the request runs and released by rolling
//! the (empty) transaction back.

use async_trait::async_trait;
use caisse_application::ports::{KeyLease, KeyLock};
use caisse_application::AppError;
use sqlx::{PgPool, Postgres, Transaction};

pub struct PostgresKeyLock {
    /// A pool of its own: a request holds its lock's connection while it works on
    /// connections of the main pool, so sharing one pool could starve it (every
    /// connection held by a lock, every holder waiting for one more).
    pool: PgPool,
}

impl PostgresKeyLock {
    /// Opens lazily a pool of `connections_max` connections to the same database.
    pub fn new(main_pool: &PgPool, connections_max: u32) -> Self {
        let options = (*main_pool.connect_options()).clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections_max)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_lazy_with(options);
        PostgresKeyLock { pool }
    }
}

struct PostgresLease {
    transaction: Option<Transaction<'static, Postgres>>,
}

impl KeyLease for PostgresLease {}

impl Drop for PostgresLease {
    fn drop(&mut self) {
        if let Some(transaction) = self.transaction.take() {
            // Ending the transaction releases the lock. Do it now rather than
            // whenever the pooled connection is next used.
            tokio::spawn(async move {
                let _ = transaction.rollback().await;
            });
        }
    }
}

#[async_trait]
impl KeyLock for PostgresKeyLock {
    async fn try_acquire(&self, scoped_key: &str) -> Result<Option<Box<dyn KeyLease>>, AppError> {
        let mut transaction = self.pool.begin().await.map_err(AppError::internal)?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('caisse-idempotency:' || $1, 0))",
        )
        .bind(scoped_key)
        .fetch_one(&mut *transaction)
        .await
        .map_err(AppError::internal)?;
        if !locked {
            let _ = transaction.rollback().await;
            return Ok(None);
        }
        Ok(Some(Box::new(PostgresLease {
            transaction: Some(transaction),
        })))
    }

    async fn acquire(&self, scoped_key: &str) -> Result<Box<dyn KeyLease>, AppError> {
        let mut transaction = self.pool.begin().await.map_err(AppError::internal)?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('caisse-idempotency:' || $1, 0))",
        )
        .bind(scoped_key)
        .execute(&mut *transaction)
        .await
        .map_err(AppError::internal)?;
        Ok(Box::new(PostgresLease {
            transaction: Some(transaction),
        }))
    }
}
