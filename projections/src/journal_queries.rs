//! Read-side queries over the journal views: entries in log order with keyset
//! paging, and trial balances (docs/journal.md).

use std::collections::BTreeMap;

use caisse_application::AppError;
use caisse_domain::ShopId;
use caisse_infrastructure::time::date_text;
use caisse_infrastructure::{Db, SqlRow, SqlValue};
use chrono::NaiveDate;

use crate::queries::{ReadScope, PAGE_SIZE_MAX};

/// Keyset position of an entry: log order is (tx_id, global_position), then the
/// entry's index within its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalCursor {
    pub tx_id: i64,
    pub global_position: i64,
    pub entry_index: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLineRow {
    pub account: String,
    pub debit_milli: i64,
    pub credit_milli: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntryRow {
    pub entry_id: String,
    pub tx_id: i64,
    pub global_position: i64,
    pub entry_index: i64,
    pub event_type: String,
    pub occurred_at: String,
    pub business_date: String,
    pub currency: String,
    pub payment_id: Option<String>,
    pub remittance_id: Option<String>,
    pub lines: Vec<JournalLineRow>,
}

impl JournalEntryRow {
    fn from_row(row: &SqlRow) -> Self {
        JournalEntryRow {
            entry_id: row.text("entry_id"),
            tx_id: row.int("tx_id"),
            global_position: row.int("global_position"),
            entry_index: row.int("entry_index"),
            event_type: row.text("event_type"),
            occurred_at: row.text("occurred_at"),
            business_date: row.text("business_date"),
            currency: row.text("currency"),
            payment_id: row.opt_text("payment_id"),
            remittance_id: row.opt_text("remittance_id"),
            lines: Vec::new(),
        }
    }

    pub fn cursor(&self) -> JournalCursor {
        JournalCursor {
            tx_id: self.tx_id,
            global_position: self.global_position,
            entry_index: self.entry_index,
        }
    }
}

/// A shop's journal entries with their lines, in log order, optionally within
/// business dates (inclusive). Returns the page and whether more follow.
pub async fn list_journal(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    first: usize,
    after: Option<&JournalCursor>,
) -> Result<(Vec<JournalEntryRow>, bool), AppError> {
    if !scope.shop_ids.contains(&shop_id) {
        return Ok((Vec::new(), false));
    }
    let first = first.clamp(1, PAGE_SIZE_MAX);
    let mut params: Vec<SqlValue> = vec![shop_id.to_string().into(), scope.mode.as_str().into()];
    let mut clauses = vec!["shop_id = $1".to_string(), "mode = $2".to_string()];
    if let Some(from) = from {
        params.push(date_text(from).into());
        clauses.push(format!("business_date >= ${}", params.len()));
    }
    if let Some(to) = to {
        params.push(date_text(to).into());
        clauses.push(format!("business_date <= ${}", params.len()));
    }
    if let Some(after) = after {
        params.extend([
            after.tx_id.into(),
            after.global_position.into(),
            after.entry_index.into(),
        ]);
        let n = params.len();
        clauses.push(format!(
            "(tx_id, global_position, entry_index) > (${}, ${}, ${n})",
            n - 2,
            n - 1
        ));
    }
    params.push(((first + 1) as i64).into());
    let sql = format!(
        "SELECT entry_id, tx_id, global_position, entry_index, event_type, occurred_at, business_date,
                currency, payment_id, remittance_id
           FROM journal_entries WHERE {}
          ORDER BY tx_id, global_position, entry_index LIMIT ${}",
        clauses.join(" AND "),
        params.len()
    );
    let mut entries: Vec<JournalEntryRow> = db
        .fetch_all(&sql, &params)
        .await?
        .iter()
        .map(JournalEntryRow::from_row)
        .collect();
    let has_next = entries.len() > first;
    entries.truncate(first);
    attach_lines(db, scope, shop_id, &mut entries).await?;
    Ok((entries, has_next))
}

/// Reads the lines of a page of entries in one query.
async fn attach_lines(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    entries: &mut [JournalEntryRow],
) -> Result<(), AppError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut params: Vec<SqlValue> = vec![shop_id.to_string().into(), scope.mode.as_str().into()];
    let mut positions: Vec<i64> = entries.iter().map(|entry| entry.global_position).collect();
    positions.dedup();
    let placeholders: Vec<String> = positions
        .iter()
        .map(|position| {
            params.push((*position).into());
            format!("${}", params.len())
        })
        .collect();
    let sql = format!(
        "SELECT global_position, entry_index, account, debit_milli, credit_milli
           FROM journal_lines
          WHERE shop_id = $1 AND mode = $2 AND global_position IN ({})
          ORDER BY global_position, line_index",
        placeholders.join(", ")
    );
    let mut lines: BTreeMap<(i64, i64), Vec<JournalLineRow>> = BTreeMap::new();
    for row in db.fetch_all(&sql, &params).await? {
        lines
            .entry((row.int("global_position"), row.int("entry_index")))
            .or_default()
            .push(JournalLineRow {
                account: row.text("account"),
                debit_milli: row.int("debit_milli"),
                credit_milli: row.int("credit_milli"),
            });
    }
    for entry in entries {
        entry.lines = lines
            .remove(&(entry.global_position, entry.entry_index))
            .unwrap_or_default();
    }
    Ok(())
}

/// Totals of one account in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTotals {
    pub account: String,
    pub debit_milli: i64,
    pub credit_milli: i64,
}

impl AccountTotals {
    /// Debits minus credits: positive for a debit balance, negative for a credit one.
    pub fn balance_milli(&self) -> i64 {
        self.debit_milli - self.credit_milli
    }
}

/// The trial balance of one currency: every account's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBalanceRow {
    pub currency: String,
    pub accounts: Vec<AccountTotals>,
}

impl TrialBalanceRow {
    pub fn total_debit_milli(&self) -> i64 {
        self.accounts
            .iter()
            .map(|account| account.debit_milli)
            .sum()
    }

    pub fn total_credit_milli(&self) -> i64 {
        self.accounts
            .iter()
            .map(|account| account.credit_milli)
            .sum()
    }

    pub fn is_balanced(&self) -> bool {
        self.total_debit_milli() == self.total_credit_milli()
    }
}

/// A shop's trial balance per currency, of the lines that occurred at or before
/// `at_or_before` (stored timestamp text) when given, else of all lines. Currencies
/// and accounts come in code order.
pub async fn trial_balance(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    at_or_before: Option<&str>,
) -> Result<Vec<TrialBalanceRow>, AppError> {
    if !scope.shop_ids.contains(&shop_id) {
        return Ok(Vec::new());
    }
    let mut params: Vec<SqlValue> = vec![shop_id.to_string().into(), scope.mode.as_str().into()];
    let mut clauses = vec!["shop_id = $1".to_string(), "mode = $2".to_string()];
    if let Some(at) = at_or_before {
        params.push(at.into());
        clauses.push(format!("occurred_at <= ${}", params.len()));
    }
    let sql = format!(
        "SELECT currency, account, CAST(SUM(debit_milli) AS BIGINT) AS debit_milli,
                CAST(SUM(credit_milli) AS BIGINT) AS credit_milli
           FROM journal_lines WHERE {}
          GROUP BY currency, account",
        clauses.join(" AND ")
    );
    // Sorted here, not in SQL: text collation differs between the backends.
    let mut by_currency: BTreeMap<String, BTreeMap<String, AccountTotals>> = BTreeMap::new();
    for row in db.fetch_all(&sql, &params).await? {
        let account = row.text("account");
        by_currency.entry(row.text("currency")).or_default().insert(
            account.clone(),
            AccountTotals {
                account,
                debit_milli: row.int("debit_milli"),
                credit_milli: row.int("credit_milli"),
            },
        );
    }
    Ok(by_currency
        .into_iter()
        .map(|(currency, accounts)| TrialBalanceRow {
            currency,
            accounts: accounts.into_values().collect(),
        })
        .collect())
}
