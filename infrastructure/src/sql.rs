//! One small SQL layer over both backends: queries are written once with `$1`
//! placeholders and bind only integers and text, so view code is shared by
//! PostgreSQL and SQLite. Backend-specific SQL (the event log) says so.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgPool, Postgres, Row, Sqlite, SqlitePool, Transaction};

use caisse_application::AppError;

#[derive(Clone)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A bound parameter or a column value. Views keep only these two types (dates and
/// timestamps as sortable text, amounts as integers in thousandths) so one SQL text
/// serves both backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Int(Some(value))
    }
}
impl From<Option<i64>> for SqlValue {
    fn from(value: Option<i64>) -> Self {
        SqlValue::Int(value)
    }
}
impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(Some(value.to_string()))
    }
}
impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(Some(value))
    }
}
impl From<Option<String>> for SqlValue {
    fn from(value: Option<String>) -> Self {
        SqlValue::Text(value)
    }
}
/// Binds `values` after the `params` already there and answers their
/// placeholders for an `IN (…)` list: `$3, $4, $5`.
pub fn bind_list(params: &mut Vec<SqlValue>, values: impl IntoIterator<Item = String>) -> String {
    let mut placeholders = Vec::new();
    for value in values {
        params.push(value.into());
        placeholders.push(format!("${}", params.len()));
    }
    placeholders.join(", ")
}

/// The `VALUES` rows of a multi-row INSERT: `rows` tuples of `columns`
/// parameters each; a tuple lists its first `listed` parameters in order, then
/// `tail(p)` (constants, or a parameter used twice, `p(n)` naming the row's
/// n-th): `values_rows(2, 2, 1, |p| format!("'NEW', {}", p(2)))` is
/// `($1, 'NEW', $2), ($3, 'NEW', $4)`.
pub fn values_rows(
    rows: usize,
    columns: usize,
    listed: usize,
    tail: impl Fn(&dyn Fn(usize) -> String) -> String,
) -> String {
    (0..rows)
        .map(|row| {
            let p = |column: usize| format!("${}", row * columns + column);
            let mut items: Vec<String> = (1..=listed).map(p).collect();
            let extra = tail(&p);
            if !extra.is_empty() {
                items.push(extra);
            }
            format!("({})", items.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts many rows, `per_insert` per statement (the notification
/// dispatchers' passes): `head` is `INSERT INTO table (columns)`, each row binds
/// `columns` parameters of which the first `listed` are written in order and
/// the rest by `tail`, and `conflict` ends each statement (with a `RETURNING`
/// clause, the rows it gives are answered, every statement's together).
pub async fn insert_rows(
    tx: &mut Tx,
    head: &str,
    conflict: &str,
    rows: &[Vec<SqlValue>],
    per_insert: usize,
    listed: usize,
    tail: impl Fn(&dyn Fn(usize) -> String) -> String,
) -> Result<Vec<SqlRow>, AppError> {
    let mut returned = Vec::new();
    for chunk in rows.chunks(per_insert) {
        let columns = chunk[0].len();
        let values = values_rows(chunk.len(), columns, listed, &tail);
        let params: Vec<SqlValue> = chunk.iter().flatten().cloned().collect();
        returned.extend(
            tx.fetch_all(&format!("{head} VALUES {values} {conflict}"), &params)
                .await?,
        );
    }
    Ok(returned)
}

/// One statement that gives several rows each their own values: `UPDATE
/// table SET column = CASE key WHEN $k THEN $v … END, … WHERE key IN (…)`,
/// the same SQL on both backends. `rows` are (key, one value per column).
pub fn update_rows(
    table: &str,
    key: &str,
    columns: &[&str],
    rows: Vec<(String, Vec<SqlValue>)>,
) -> (String, Vec<SqlValue>) {
    let mut params: Vec<SqlValue> = Vec::new();
    let mut keys = Vec::new();
    let mut cases: Vec<String> = columns
        .iter()
        .map(|column| format!("{column} = CASE {key}"))
        .collect();
    for (row_key, values) in rows {
        assert_eq!(values.len(), columns.len(), "one value per column");
        params.push(row_key.into());
        let key_placeholder = format!("${}", params.len());
        for (case, value) in cases.iter_mut().zip(values) {
            params.push(value);
            case.push_str(&format!(" WHEN {key_placeholder} THEN ${}", params.len()));
        }
        keys.push(key_placeholder);
    }
    let sets: Vec<String> = cases.into_iter().map(|case| case + " END").collect();
    let sql = format!(
        "UPDATE {table} SET {} WHERE {key} IN ({})",
        sets.join(", "),
        keys.join(", ")
    );
    (sql, params)
}

impl From<&String> for SqlValue {
    fn from(value: &String) -> Self {
        SqlValue::Text(Some(value.clone()))
    }
}

/// A result row, by column name.
#[derive(Debug, Clone, Default)]
pub struct SqlRow {
    columns: Vec<(String, SqlValue)>,
}

impl SqlRow {
    fn value(&self, name: &str) -> &SqlValue {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("query did not select column {name}"))
    }

    /// Every column as optional text, for comparing rows across backends.
    pub fn normalized(&self) -> Vec<(String, Option<String>)> {
        self.columns
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    SqlValue::Int(number) => number.map(|n| n.to_string()),
                    SqlValue::Text(text) => text.clone(),
                };
                (name.clone(), text)
            })
            .collect()
    }

    pub fn int(&self, name: &str) -> i64 {
        self.opt_int(name)
            .unwrap_or_else(|| panic!("column {name} is NULL"))
    }

    pub fn opt_int(&self, name: &str) -> Option<i64> {
        match self.value(name) {
            SqlValue::Int(value) => *value,
            SqlValue::Text(value) => value.as_ref().and_then(|text| text.parse().ok()),
        }
    }

    pub fn text(&self, name: &str) -> String {
        self.opt_text(name)
            .unwrap_or_else(|| panic!("column {name} is NULL"))
    }

    pub fn opt_text(&self, name: &str) -> Option<String> {
        match self.value(name) {
            SqlValue::Text(value) => value.clone(),
            SqlValue::Int(value) => value.map(|number| number.to_string()),
        }
    }
}

fn pg_row(row: &PgRow) -> SqlRow {
    use sqlx::{Column, TypeInfo};
    let columns = row
        .columns()
        .iter()
        .map(|column| {
            let name = column.name().to_string();
            let value = match column.type_info().name() {
                "INT8" => SqlValue::Int(row.get::<Option<i64>, _>(column.ordinal())),
                "INT4" => SqlValue::Int(row.get::<Option<i32>, _>(column.ordinal()).map(i64::from)),
                "INT2" => SqlValue::Int(row.get::<Option<i16>, _>(column.ordinal()).map(i64::from)),
                _ => SqlValue::Text(row.get::<Option<String>, _>(column.ordinal())),
            };
            (name, value)
        })
        .collect();
    SqlRow { columns }
}

fn sqlite_row(row: &SqliteRow) -> SqlRow {
    use sqlx::{Column, ValueRef};
    let columns = row
        .columns()
        .iter()
        .map(|column| {
            let name = column.name().to_string();
            let raw = row.try_get_raw(column.ordinal()).expect("column exists");
            let value = if raw.is_null() {
                SqlValue::Text(None)
            } else {
                match row.try_get::<i64, _>(column.ordinal()) {
                    Ok(number) => SqlValue::Int(Some(number)),
                    Err(_) => SqlValue::Text(row.get::<Option<String>, _>(column.ordinal())),
                }
            };
            (name, value)
        })
        .collect();
    SqlRow { columns }
}

/// `$1`-style placeholders become SQLite's numbered `?1`, which bind by number.
/// Only a `$` followed by a digit is a placeholder (JSON paths like `'$.key'` stay).
fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

macro_rules! bind_all {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                SqlValue::Int(value) => query.bind(*value),
                SqlValue::Text(value) => query.bind(value.clone()),
            };
        }
        query
    }};
}

fn db_error(error: sqlx::Error) -> AppError {
    AppError::internal(format!("database: {error}"))
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    pub async fn begin(&self) -> Result<Tx, AppError> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(db_error)?),
            Db::Sqlite(pool) => {
                // The gate first, then the connection: a writer waiting for
                // its turn holds no connection.
                let permit = sqlite_write_permit(pool).await?;
                Tx::Sqlite(pool.begin().await.map_err(db_error)?, permit)
            }
        })
    }

    /// A transaction whose commit does not wait for the WAL flush on
    /// PostgreSQL (`synchronous_commit = off`): for state the log can rebuild
    /// (the views) or that is sent again when lost (the notifications'
    /// results: at least once). On SQLite the connection's own
    /// `synchronous` setting decides (`Database::notification_db`).
    pub async fn begin_unflushed(&self) -> Result<Tx, AppError> {
        let mut tx = self.begin().await?;
        if tx.is_postgres() {
            tx.execute("SET LOCAL synchronous_commit = off", &[])
                .await?;
        }
        Ok(tx)
    }

    pub async fn fetch_all(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, AppError> {
        match self {
            Db::Postgres(pool) => {
                let rows = bind_all!(sqlx::query(sql), params)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(pg_row).collect())
            }
            Db::Sqlite(pool) => {
                let sql = sqlite_sql(sql);
                // A write read back through a fetch (`UPDATE … RETURNING`, the
                // senders' claims) takes its turn like any other writer: left
                // to the busy handler, it would make a gated writer sleep there
                // while the whole queue waits behind it.
                let _permit = if is_write_statement(&sql) {
                    Some(sqlite_write_permit(pool).await?)
                } else {
                    None
                };
                let rows = bind_all!(sqlx::query(&sql), params)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(sqlite_row).collect())
            }
        }
    }

    pub async fn fetch_optional(
        &self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Option<SqlRow>, AppError> {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    pub async fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<u64, AppError> {
        match self {
            Db::Postgres(pool) => Ok(bind_all!(sqlx::query(sql), params)
                .execute(pool)
                .await
                .map_err(db_error)?
                .rows_affected()),
            Db::Sqlite(pool) => {
                let sql = sqlite_sql(sql);
                let _permit = sqlite_write_permit(pool).await?;
                Ok(bind_all!(sqlx::query(&sql), params)
                    .execute(pool)
                    .await
                    .map_err(db_error)?
                    .rows_affected())
            }
        }
    }
}

pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    /// With this process's turn at the database file's write lock
    /// ([`sqlite_write_permit`]), given back when the transaction ends.
    Sqlite(Transaction<'static, Sqlite>, SqliteWriteTurn),
}

/// A writer's turn at a SQLite database's write lock ([`sqlite_write_permit`]):
/// given back when dropped, its length added to [`sqlite_write_turns`].
pub struct SqliteWriteTurn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    since: std::time::Instant,
}

impl Drop for SqliteWriteTurn {
    fn drop(&mut self) {
        let held = self.since.elapsed().as_micros() as u64;
        WRITE_TURNS
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WRITE_TURNS
            .1
            .fetch_add(held, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Turns taken at SQLite write locks by this process, and how long they were
/// held in all (µs): what `caisse bench` reads to tell how busy the single
/// writer is.
static WRITE_TURNS: (std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64) = (
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
);

/// The turns taken at SQLite write locks so far by this process, and the
/// microseconds they were held in all.
pub fn sqlite_write_turns() -> (u64, u64) {
    (
        WRITE_TURNS.0.load(std::sync::atomic::Ordering::Relaxed),
        WRITE_TURNS.1.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// How long a SQLite writer waits for its turn before giving up, like the
/// connection's `busy_timeout`.
const SQLITE_WRITE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a statement writes: its first keyword. (`WITH … INSERT` is not
/// used through `Db::fetch_*`.)
fn is_write_statement(sql: &str) -> bool {
    let keyword: String = sql
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    ["INSERT", "UPDATE", "DELETE", "REPLACE"]
        .iter()
        .any(|write| keyword.eq_ignore_ascii_case(write))
}

/// Copies what the SQLite WAL holds into the database file (a PASSIVE
/// checkpoint: it never waits for, nor blocks, readers and writers). Run in
/// the background by the server instead of by the commit that happens to
/// cross SQLite's threshold: that commit would checkpoint while holding this
/// process's write turn (ADR 0012), so every writer queued behind it would
/// wait for the copy and its fsync. Answers the WAL frames and those copied;
/// nothing on PostgreSQL.
pub async fn checkpoint_sqlite_wal(db: &Db) -> Result<Option<(i64, i64)>, AppError> {
    let Db::Sqlite(pool) = db else {
        return Ok(None);
    };
    let (_busy, frames, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    Ok(Some((frames, copied)))
}

/// This process's turn at a SQLite database's write lock: one permit per
/// database file. SQLite has one writer at a time, and a writer that finds
/// the lock taken waits in SQLite's busy handler, which sleeps (1, 2, 5,
/// 10 ms…) instead of being woken when the lock frees — measured at about
/// 270 sleeps a second of 6.4 ms each under `caisse bench`
/// (docs/performance.md). Queued here instead, the writers of this process
/// take the lock in turn, each woken the moment the previous one ends.
/// Transactions (`Db::begin`), autocommit `Db::execute` and the event store's
/// appends take it, and so do writes made through `Db::fetch_*` (the senders'
/// claims, `UPDATE … RETURNING`); the busy handler still covers other
/// processes. Never taken twice by one task: a transaction does not call `Db`.
pub async fn sqlite_write_permit(pool: &SqlitePool) -> Result<SqliteWriteTurn, AppError> {
    use std::sync::{Arc, Weak};
    use tokio::sync::Semaphore;
    // Weak: a gate lives while a writer holds or awaits it, and a file's next
    // writer makes a new one (the same thing, since nobody is queued), so
    // databases opened and dropped (an audit's in-memory replay, each with a
    // file name of its own) leave nothing behind.
    static GATES: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Weak<Semaphore>>>,
    > = std::sync::OnceLock::new();
    let file = pool.connect_options().get_filename().to_path_buf();
    let gate = {
        let mut gates = GATES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match gates.get(&file).and_then(Weak::upgrade) {
            Some(gate) => gate,
            None => {
                gates.retain(|_, gate| gate.strong_count() > 0);
                let gate = Arc::new(Semaphore::new(1));
                gates.insert(file, Arc::downgrade(&gate));
                gate
            }
        }
    };
    match tokio::time::timeout(SQLITE_WRITE_WAIT_MAX, gate.acquire_owned()).await {
        Ok(Ok(permit)) => Ok(SqliteWriteTurn {
            _permit: permit,
            since: std::time::Instant::now(),
        }),
        Ok(Err(_)) => Err(AppError::internal("the SQLite write gate is closed")),
        Err(_) => Err(AppError::internal(format!(
            "no turn at the SQLite write lock within {} s",
            SQLITE_WRITE_WAIT_MAX.as_secs()
        ))),
    }
}

impl Tx {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    pub async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, AppError> {
        match self {
            Tx::Postgres(tx) => Ok(bind_all!(sqlx::query(sql), params)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?
                .rows_affected()),
            Tx::Sqlite(tx, _) => {
                let sql = sqlite_sql(sql);
                Ok(bind_all!(sqlx::query(&sql), params)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?
                    .rows_affected())
            }
        }
    }

    pub async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<SqlRow>, AppError> {
        match self {
            Tx::Postgres(tx) => {
                let rows = bind_all!(sqlx::query(sql), params)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(pg_row).collect())
            }
            Tx::Sqlite(tx, _) => {
                let sql = sqlite_sql(sql);
                let rows = bind_all!(sqlx::query(&sql), params)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(sqlite_row).collect())
            }
        }
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Option<SqlRow>, AppError> {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    pub async fn commit(self) -> Result<(), AppError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await.map_err(db_error),
            Tx::Sqlite(tx, _permit) => tx.commit().await.map_err(db_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        bind_list, is_write_statement, sqlite_sql, update_rows, values_rows, Db, SqlValue,
    };

    /// Two writers of one process on one SQLite file: the second transaction
    /// begins only once the first has ended (ADR 0012), and a transaction
    /// dropped without commit gives its turn back too.
    #[tokio::test]
    async fn sqlite_writers_of_one_process_take_turns() {
        let dir =
            std::env::temp_dir().join(format!("caisse-gate-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("gate.db").display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        let db = Db::Sqlite(pool);
        db.execute("CREATE TABLE t (n INTEGER)", &[]).await.unwrap();

        let first = db.begin().await.unwrap();
        let second = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                tx.execute("INSERT INTO t (n) VALUES (2)", &[])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            })
        };
        // A write read back through a fetch (the senders' claims) queues too.
        let claim = {
            let db = db.clone();
            tokio::spawn(async move {
                db.fetch_all("UPDATE t SET n = n + 10 RETURNING n", &[])
                    .await
                    .unwrap()
                    .len()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !second.is_finished(),
            "the second writer waits for its turn"
        );
        assert!(!claim.is_finished(), "the fetched write waits for its turn");
        // Reads never wait.
        let reads = db.fetch_all("SELECT n FROM t", &[]).await.unwrap();
        assert!(reads.is_empty());
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .expect("the second writer runs once the first is gone")
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), claim)
            .await
            .expect("the fetched write runs once the first is gone")
            .unwrap();
        let count = db
            .fetch_optional("SELECT COUNT(*) AS n FROM t", &[])
            .await
            .unwrap()
            .unwrap()
            .int("n");
        assert_eq!(count, 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The server's background checkpoint copies the whole WAL into the
    /// database file when nobody reads an older snapshot.
    #[tokio::test]
    async fn a_background_checkpoint_empties_the_sqlite_wal() {
        let dir = std::env::temp_dir().join(format!(
            "caisse-checkpoint-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("wal.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .unwrap();
        let db = Db::Sqlite(pool);
        db.execute("CREATE TABLE t (n INTEGER)", &[]).await.unwrap();
        for n in 0..20 {
            db.execute("INSERT INTO t (n) VALUES ($1)", &[n.into()])
                .await
                .unwrap();
        }
        let (frames, copied) = super::checkpoint_sqlite_wal(&db).await.unwrap().unwrap();
        assert!(frames >= 20, "{frames} frames in the WAL");
        assert_eq!(copied, frames, "every frame copied");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn writes_are_told_from_reads_by_their_first_keyword() {
        for write in [
            "UPDATE t SET a = 1 RETURNING *",
            "\n  insert INTO t VALUES (1)",
            "DELETE FROM t",
            "REPLACE INTO t VALUES (1)",
        ] {
            assert!(is_write_statement(write), "{write}");
        }
        for read in ["SELECT 1", "  select updated FROM t", "UPDATED"] {
            assert!(!is_write_statement(read), "{read}");
        }
    }

    #[test]
    fn only_numbered_dollars_become_sqlite_placeholders() {
        assert_eq!(
            sqlite_sql("SELECT json_extract(m, '$.key') FROM t WHERE a = $1 AND b = $12"),
            "SELECT json_extract(m, '$.key') FROM t WHERE a = ?1 AND b = ?12"
        );
    }

    #[test]
    fn update_rows_gives_each_key_its_own_values_in_one_statement() {
        let (sql, params) = update_rows(
            "t",
            "id",
            &["status", "attempts"],
            vec![
                ("a".to_string(), vec!["SENT".into(), 1.into()]),
                ("b".to_string(), vec!["PENDING".into(), 2.into()]),
            ],
        );
        assert_eq!(
            sql,
            "UPDATE t SET status = CASE id WHEN $1 THEN $2 WHEN $4 THEN $5 END, \
             attempts = CASE id WHEN $1 THEN $3 WHEN $4 THEN $6 END WHERE id IN ($1, $4)"
        );
        assert_eq!(params.len(), 6);
        assert_eq!(params[3], SqlValue::from("b"));
        assert_eq!(
            values_rows(2, 2, 1, |p| format!("'NEW', {}", p(2))),
            "($1, 'NEW', $2), ($3, 'NEW', $4)"
        );
        assert_eq!(values_rows(1, 3, 3, |_| String::new()), "($1, $2, $3)");
        let mut bound = vec![SqlValue::from(7_i64)];
        assert_eq!(
            bind_list(&mut bound, ["x".to_string(), "y".to_string()]),
            "$2, $3"
        );
    }
}
