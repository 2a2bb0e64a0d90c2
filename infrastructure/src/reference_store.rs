//! Stores the risk reference tables loaded at run time (`caisse reference load`) in `reference_tables`, one checked row per load, and reads the ones in force back (at start and by each process's refresh loop); the tables shipped in the binary when none was loaded.
//!
//! A table is parsed with the domain parser before anything is written, so a
//! stored table always loads; the row is never changed afterwards (triggers
//! refuse it), so the version a risk decision records names one exact table.

use std::fmt;

use caisse_application::reference::{ReferenceData, SharedReference};
use caisse_application::AppError;
use caisse_domain::reference::{BinTable, IpCountryTable, ReferenceError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::sql::{Db, SqlRow};
use crate::time::{parse_timestamp, timestamp_text};

/// The version of the tables built into the binary, in force until a load.
pub const SHIPPED_VERSION: &str = "shipped";
/// `reference/bins.csv`, embedded so a binary run from any directory has it.
pub const SHIPPED_BINS: &str = include_str!("../../reference/bins.csv");
/// `reference/ip-country.csv`, embedded likewise.
pub const SHIPPED_IP_COUNTRIES: &str = include_str!("../../reference/ip-country.csv");

/// Which reference table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    Bins,
    IpCountries,
}

impl ReferenceKind {
    pub const ALL: [ReferenceKind; 2] = [ReferenceKind::Bins, ReferenceKind::IpCountries];

    /// The `kind` column: `BINS` or `IP_COUNTRIES`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceKind::Bins => "BINS",
            ReferenceKind::IpCountries => "IP_COUNTRIES",
        }
    }

    pub fn parse(text: &str) -> Option<ReferenceKind> {
        ReferenceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// What an operator reads: `BIN table`, `IP-to-country table`.
    pub fn label(self) -> &'static str {
        match self {
            ReferenceKind::Bins => "BIN table",
            ReferenceKind::IpCountries => "IP-to-country table",
        }
    }

    /// The table built into the binary.
    pub fn shipped_content(self) -> &'static str {
        match self {
            ReferenceKind::Bins => SHIPPED_BINS,
            ReferenceKind::IpCountries => SHIPPED_IP_COUNTRIES,
        }
    }
}

impl fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One table as stored (or, with version `shipped`, as built in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedTable {
    pub kind: ReferenceKind,
    /// `refdata_<uuid v7>`, or `shipped`.
    pub version: String,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Ranges in the table.
    pub rows: usize,
    /// `None` for the shipped tables.
    pub loaded_at: Option<DateTime<Utc>>,
    pub loaded_by: Option<String>,
}

/// Why a load wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceStoreError {
    /// The file does not load: the line and field of the first error.
    #[error("{} refused, nothing written: {error}", kind.label())]
    Invalid {
        kind: ReferenceKind,
        error: ReferenceError,
    },
    #[error("{0}")]
    Database(#[from] AppError),
}

/// Either parsed table.
enum ParsedTable {
    Bins(BinTable),
    IpCountries(IpCountryTable),
}

impl ParsedTable {
    fn rows(&self) -> usize {
        match self {
            ParsedTable::Bins(table) => table.len(),
            ParsedTable::IpCountries(table) => table.len(),
        }
    }
}

fn parse(kind: ReferenceKind, content: &str) -> Result<ParsedTable, ReferenceError> {
    Ok(match kind {
        ReferenceKind::Bins => ParsedTable::Bins(BinTable::parse(content)?),
        ReferenceKind::IpCountries => ParsedTable::IpCountries(IpCountryTable::parse(content)?),
    })
}

/// Checks `content` as a table of `kind` without storing it; the number of ranges.
pub fn validate(kind: ReferenceKind, content: &str) -> Result<usize, ReferenceError> {
    parse(kind, content).map(|table| table.rows())
}

pub fn sha256_hex(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

fn new_version() -> String {
    format!("refdata_{}", uuid::Uuid::now_v7().simple())
}

/// Parses `content` as a table of `kind` and, only if it loads, stores it as the
/// latest of its kind. A bad file writes nothing; the error names its line and field.
pub async fn save(
    db: &Db,
    kind: ReferenceKind,
    content: &str,
    loaded_by: &str,
) -> Result<LoadedTable, ReferenceStoreError> {
    let mut saved = save_all(db, &[(kind, content)], loaded_by).await?;
    Ok(saved.remove(0))
}

/// [`save`] for several tables at once: every one is parsed first, and they are
/// stored in one transaction, so either all of them become current or none.
pub async fn save_all(
    db: &Db,
    tables: &[(ReferenceKind, &str)],
    loaded_by: &str,
) -> Result<Vec<LoadedTable>, ReferenceStoreError> {
    let mut checked = Vec::with_capacity(tables.len());
    for &(kind, content) in tables {
        let rows = validate(kind, content)
            .map_err(|error| ReferenceStoreError::Invalid { kind, error })?;
        checked.push((kind, content, rows));
    }
    let loaded_at = Utc::now();
    let mut tx = db.begin().await?;
    let mut saved = Vec::with_capacity(checked.len());
    for (kind, content, rows) in checked {
        let table = LoadedTable {
            kind,
            version: new_version(),
            sha256: sha256_hex(content),
            rows,
            loaded_at: Some(loaded_at),
            loaded_by: Some(loaded_by.to_string()),
        };
        tx.execute(
            "INSERT INTO reference_tables (version, kind, content, sha256, rows, loaded_at, loaded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                table.version.as_str().into(),
                kind.as_str().into(),
                content.into(),
                table.sha256.as_str().into(),
                (rows as i64).into(),
                timestamp_text(loaded_at).into(),
                loaded_by.into(),
            ],
        )
        .await?;
        saved.push(table);
    }
    tx.commit().await?;
    Ok(saved)
}

/// The latest table of `kind` loaded into the database: `(version, content)`.
pub async fn latest(db: &Db, kind: ReferenceKind) -> Result<Option<(String, String)>, AppError> {
    let row = db
        .fetch_optional(
            "SELECT version, content FROM reference_tables WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
            &[kind.as_str().into()],
        )
        .await?;
    Ok(row.map(|row| (row.text("version"), row.text("content"))))
}

/// The versions of the latest BIN and IP-to-country tables loaded, in one cheap
/// query (two index look-ups): what the refresh loop polls.
pub async fn latest_versions(db: &Db) -> Result<(Option<String>, Option<String>), AppError> {
    let row = db
        .fetch_optional(
            "SELECT
                 (SELECT version FROM reference_tables WHERE kind = 'BINS'
                  ORDER BY seq DESC LIMIT 1) AS bins,
                 (SELECT version FROM reference_tables WHERE kind = 'IP_COUNTRIES'
                  ORDER BY seq DESC LIMIT 1) AS ip_countries",
            &[],
        )
        .await?;
    Ok(row
        .map(|row| (row.opt_text("bins"), row.opt_text("ip_countries")))
        .unwrap_or_default())
}

fn shipped_table(kind: ReferenceKind) -> LoadedTable {
    let content = kind.shipped_content();
    LoadedTable {
        kind,
        version: SHIPPED_VERSION.to_string(),
        sha256: sha256_hex(content),
        rows: validate(kind, content).expect("the shipped reference tables load"),
        loaded_at: None,
        loaded_by: None,
    }
}

fn loaded_table(kind: ReferenceKind, row: &SqlRow) -> LoadedTable {
    LoadedTable {
        kind,
        version: row.text("version"),
        sha256: row.text("sha256"),
        rows: usize::try_from(row.int("rows")).unwrap_or(0),
        loaded_at: parse_timestamp(&row.text("loaded_at")),
        loaded_by: Some(row.text("loaded_by")),
    }
}

/// The table of each kind in force (the latest loaded, or the shipped one), for
/// `caisse reference show`.
pub async fn current_tables(db: &Db) -> Result<Vec<LoadedTable>, AppError> {
    let mut tables = Vec::new();
    for kind in ReferenceKind::ALL {
        let row = db
            .fetch_optional(
                "SELECT version, sha256, rows, loaded_at, loaded_by FROM reference_tables
                 WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
                &[kind.as_str().into()],
            )
            .await?;
        tables.push(match row {
            Some(row) => loaded_table(kind, &row),
            None => shipped_table(kind),
        });
    }
    Ok(tables)
}

/// The tables built into the binary, version `shipped`: what a process holds
/// before it has read the database.
pub fn shipped_reference() -> ReferenceData {
    ReferenceData {
        bins: BinTable::parse(SHIPPED_BINS).expect("the shipped BIN table loads"),
        ip_countries: IpCountryTable::parse(SHIPPED_IP_COUNTRIES)
            .expect("the shipped IP-to-country table loads"),
        bins_version: SHIPPED_VERSION.to_string(),
        ip_countries_version: SHIPPED_VERSION.to_string(),
    }
}

fn stored_table_error(kind: ReferenceKind, version: &str, error: &ReferenceError) -> AppError {
    AppError::internal(format!(
        "{} {version} in reference_tables does not load: {error}; load a corrected one with \
         `caisse reference load`",
        kind.label()
    ))
}

/// The latest table of `kind` (from the database, or the shipped one): its
/// version and the outcome of parsing it.
async fn latest_parsed(
    db: &Db,
    kind: ReferenceKind,
) -> Result<(String, Result<ParsedTable, ReferenceError>), AppError> {
    Ok(match latest(db, kind).await? {
        Some((version, content)) => {
            let parsed = parse(kind, &content);
            (version, parsed)
        }
        None => (
            SHIPPED_VERSION.to_string(),
            parse(kind, kind.shipped_content()),
        ),
    })
}

/// The tables in force: the latest loaded of each kind, or the shipped one. A
/// stored table that no longer loads (it was checked when saved, so only a
/// stricter parser could refuse it) is an error: the process must not fall back
/// to the test tables silently.
pub async fn load_reference(db: &Db) -> Result<ReferenceData, AppError> {
    let mut data = shipped_reference();
    for kind in ReferenceKind::ALL {
        let (version, parsed) = latest_parsed(db, kind).await?;
        let table = parsed.map_err(|error| stored_table_error(kind, &version, &error))?;
        set_table(&mut data, version, table);
    }
    Ok(data)
}

fn set_table(data: &mut ReferenceData, version: String, table: ParsedTable) {
    match table {
        ParsedTable::Bins(bins) => {
            data.bins = bins;
            data.bins_version = version;
        }
        ParsedTable::IpCountries(ip_countries) => {
            data.ip_countries = ip_countries;
            data.ip_countries_version = version;
        }
    }
}

/// One look of the refresh loop: when the latest version of a kind differs from
/// the one `shared` holds, reads, parses and swaps that table in (logging
/// `reference table swapped`). A table that does not parse is logged as an error
/// and the tables in use stay. Returns the kinds swapped.
pub async fn refresh(db: &Db, shared: &SharedReference) -> Result<Vec<ReferenceKind>, AppError> {
    let (bins, ip_countries) = latest_versions(db).await?;
    let current = shared.current();
    let mut next: Option<ReferenceData> = None;
    let mut swapped = Vec::new();
    for (kind, latest_version, current_version) in [
        (ReferenceKind::Bins, bins, &current.bins_version),
        (
            ReferenceKind::IpCountries,
            ip_countries,
            &current.ip_countries_version,
        ),
    ] {
        let wanted = latest_version.unwrap_or_else(|| SHIPPED_VERSION.to_string());
        if &wanted == current_version {
            continue;
        }
        // Read the latest again with its content: a load may have come in between,
        // and the content read is the one whose version is recorded.
        let (version, parsed) = latest_parsed(db, kind).await?;
        if &version == current_version {
            continue;
        }
        let table = match parsed {
            Ok(table) => table,
            Err(error) => {
                tracing::error!(
                    kind = kind.as_str(),
                    version = %version,
                    error = %stored_table_error(kind, &version, &error),
                    "reference table not swapped; the tables in use stay"
                );
                continue;
            }
        };
        let rows = table.rows();
        set_table(
            next.get_or_insert_with(|| (*current).clone()),
            version.clone(),
            table,
        );
        tracing::info!(
            kind = kind.as_str(),
            version = %version,
            rows,
            "reference table swapped"
        );
        swapped.push(kind);
    }
    if let Some(next) = next {
        shared.replace(next);
    }
    Ok(swapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    async fn sqlite() -> Db {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::migrate!("../migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        Db::Sqlite(pool)
    }

    async fn count(db: &Db) -> i64 {
        db.fetch_optional("SELECT COUNT(*) AS n FROM reference_tables", &[])
            .await
            .unwrap()
            .unwrap()
            .int("n")
    }

    #[test]
    fn shipped_tables_are_embedded_and_load() {
        let data = shipped_reference();
        assert_eq!(data.bins_version, "shipped");
        assert_eq!(data.ip_countries_version, "shipped");
        assert_eq!(data.bins.len(), 8);
        assert_eq!(data.ip_countries.len(), 5);
    }

    #[tokio::test]
    async fn save_refuses_a_bad_table_and_writes_nothing() {
        let db = sqlite().await;
        let bad = "low,high,brand,product,country,virtual,systematic_authorisation\n\
                   497010,497010,CB,CREDIT,FR,false,false\n\
                   411111,411111,VISA,CREDIT,USA,false,false\n";
        let error = save(&db, ReferenceKind::Bins, bad, "test")
            .await
            .unwrap_err();
        match &error {
            ReferenceStoreError::Invalid { kind, error } => {
                assert_eq!(*kind, ReferenceKind::Bins);
                assert_eq!((error.line, error.field), (3, "country"));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(error.to_string().contains("line 3: country:"), "{error}");
        assert_eq!(count(&db).await, 0);

        // With a good IP table alongside: still nothing written.
        let error = save_all(
            &db,
            &[
                (ReferenceKind::IpCountries, SHIPPED_IP_COUNTRIES),
                (ReferenceKind::Bins, bad),
            ],
            "test",
        )
        .await
        .unwrap_err();
        assert!(matches!(error, ReferenceStoreError::Invalid { .. }));
        assert_eq!(count(&db).await, 0);
        assert_eq!(latest_versions(&db).await.unwrap(), (None, None));
    }

    #[tokio::test]
    async fn a_saved_table_becomes_the_latest_and_is_swapped_in() {
        let db = sqlite().await;
        let shared = SharedReference::new(shipped_reference());
        assert!(refresh(&db, &shared).await.unwrap().is_empty());

        let content = SHIPPED_BINS.replace(
            "497010,497010,CB,CREDIT,FR,false,false",
            "497010,497010,CB,CREDIT,BE,false,false",
        );
        let first = save(&db, ReferenceKind::Bins, SHIPPED_BINS, "test")
            .await
            .unwrap();
        let second = save(&db, ReferenceKind::Bins, &content, "test")
            .await
            .unwrap();
        assert_eq!(second.rows, 8);
        assert_eq!(second.sha256, sha256_hex(&content));
        assert_ne!(first.version, second.version);
        assert_eq!(
            latest_versions(&db).await.unwrap(),
            (Some(second.version.clone()), None)
        );
        assert_eq!(
            latest(&db, ReferenceKind::Bins).await.unwrap(),
            Some((second.version.clone(), content.clone()))
        );

        assert_eq!(
            refresh(&db, &shared).await.unwrap(),
            vec![ReferenceKind::Bins]
        );
        let current = shared.current();
        assert_eq!(current.bins_version, second.version);
        assert_eq!(current.ip_countries_version, "shipped");
        assert_eq!(
            current.bins.lookup("4970100000000006").unwrap().country,
            "BE"
        );
        assert!(refresh(&db, &shared).await.unwrap().is_empty());

        let tables = current_tables(&db).await.unwrap();
        assert_eq!(tables[0].version, second.version);
        assert_eq!(tables[0].loaded_by.as_deref(), Some("test"));
        assert!(tables[0].loaded_at.is_some());
        assert_eq!(tables[1].version, "shipped");
        assert_eq!(tables[1].rows, 5);

        // Loaded tables are never changed.
        assert!(db
            .execute("UPDATE reference_tables SET content = ''", &[])
            .await
            .is_err());
        assert!(db
            .execute("DELETE FROM reference_tables", &[])
            .await
            .is_err());
    }
}
