//! Connects to PostgreSQL or the embedded SQLite file and applies migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::Config;
use crate::sql::Db;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE_NAME: &str = "caisse.db";

/// WAL pages past which a SQLite commit checkpoints by itself (SQLite's
/// default is 1,000): only a safety net for processes that do not run the
/// background checkpointer (`caisse serve` does). 16,000 pages of 4 KiB.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_000;

#[derive(Clone)]
pub struct Database {
    pub db: Db,
    /// For the notification senders' claims and results: on SQLite the same
    /// file over connections of their own with `synchronous=NORMAL` (their
    /// commits are not flushed one by one; the next durable commit flushes
    /// them), like their `synchronous_commit = off` on PostgreSQL, where this
    /// is the same pool as `db`. A crash may lose the last claims or results:
    /// those notifications go again (at least once, deduplicated by the
    /// receiver). Nothing else may write through it.
    pub notification_db: Db,
    /// What to show in logs: the backend and where, never a password.
    pub description: String,
}

impl Database {
    pub async fn connect(config: &Config) -> anyhow::Result<Database> {
        let url = match &config.database_url {
            Some(url) => url.expose().to_string(),
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("creating data directory {}", config.data_dir.display())
                })?;
                format!(
                    "sqlite://{}",
                    config.data_dir.join(SQLITE_FILE_NAME).display()
                )
            }
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(&url).context("parsing the PostgreSQL URL")?;
            let description = format!(
                "postgresql://{}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or("")
            );
            let pool = PgPoolOptions::new()
                .max_connections(config.database_connections_max)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .with_context(|| format!("connecting to {description}"))?;
            Ok(Database {
                notification_db: Db::Postgres(pool.clone()),
                db: Db::Postgres(pool),
                description,
            })
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&url)
                .context("parsing the SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Money: a committed payment survives a power cut.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Checkpoints are the server's background work
                // (`sql::checkpoint_sqlite_wal`), outside the write gate; a
                // commit checkpoints by itself only past this safety net.
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
            let description = format!("sqlite://{}", options.get_filename().display());
            let pool = SqlitePoolOptions::new()
                .max_connections(config.database_connections_max.min(8))
                .connect_with(options.clone())
                .await
                .with_context(|| format!("opening {description}"))?;
            // Connected on first use (the CLI never sends); the write gate is
            // per file, so these writers queue with the others.
            let notification_pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
            Ok(Database {
                db: Db::Sqlite(pool),
                notification_db: Db::Sqlite(notification_pool),
                description,
            })
        } else {
            anyhow::bail!("CAISSE_DATABASE_URL must start with postgres:// or sqlite:")
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.db {
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
        }
        .with_context(|| format!("migrating {}", self.description))
    }
}

#[cfg(test)]
mod tests {
    /// The views are the same on both backends (integer and text columns only,
    /// ADR 0003), so their migration is one text kept in two folders: sqlx reads
    /// one folder per backend. This keeps the copies from drifting apart.
    #[test]
    fn both_backends_create_the_same_views() {
        let folder = |backend: &str| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../migrations")
                .join(backend)
        };
        let mut checked = 0;
        for entry in std::fs::read_dir(folder("postgres")).unwrap() {
            let name = entry.unwrap().file_name();
            let name = name.to_str().unwrap();
            // 0001 creates the event tables, which differ per backend (xid8…),
            // 0009 the reference tables (an identity column, AUTOINCREMENT): not
            // views, and each needs its backend's sequence; 0015 changes the
            // outbox indexes, which SQLite can only do by rebuilding the table.
            if ["0001_", "0009_", "0015_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
            {
                assert!(
                    folder("sqlite").join(name).exists(),
                    "{name} has no SQLite copy"
                );
                continue;
            }
            let postgres = std::fs::read_to_string(folder("postgres").join(name)).unwrap();
            let sqlite = std::fs::read_to_string(folder("sqlite").join(name))
                .unwrap_or_else(|_| panic!("{name} has no SQLite copy"));
            assert_eq!(postgres, sqlite, "{name} differs between the backends");
            checked += 1;
        }
        assert!(checked >= 4, "only {checked} migrations checked");
        let count = |backend| std::fs::read_dir(folder(backend)).unwrap().count();
        assert_eq!(
            count("postgres"),
            count("sqlite"),
            "same migrations on both"
        );
    }
}
