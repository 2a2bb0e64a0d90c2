//! Journal queries: a shop's double-entry journal in log order and its trial
//! balance per currency (FEATURES X-1; docs/journal.md).

use async_graphql::{Context, Object, SimpleObject, ID};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use base64::Engine;
use caisse_infrastructure::time::timestamp_text;
use caisse_projections::journal_queries::{
    self, AccountTotals, JournalCursor, JournalEntryRow, TrialBalanceRow,
};
use caisse_projections::money::milli_to_string;
use caisse_projections::queries::PAGE_SIZE_MAX;
use chrono::{DateTime, Days, NaiveDate, Utc};

use super::query::{parse_shop_id, request, state};
use super::types::PageInfo;
use crate::errors::{app_error, bad_input, not_found};

#[derive(Default)]
pub struct JournalQuery;

/// One debit or credit of an entry. Exactly one of the two amounts is non-zero.
#[derive(SimpleObject)]
#[graphql(name = "JournalLine")]
pub struct JournalLineNode {
    /// `authorisation_holds`, `deferred_authorisations`, `buyer_funds`, `merchant_receivable`
    /// or `remitted_to_acquirer` (docs/journal.md).
    pub account: String,
    /// Decimal string in the entry's currency ("0.00" on a credit line).
    pub debit: String,
    pub credit: String,
}

/// One balanced journal entry: the lines one event made for one payment.
#[derive(SimpleObject)]
#[graphql(name = "JournalEntry")]
pub struct JournalEntryNode {
    /// `je_<globalPosition>_<index within the event>`.
    pub id: ID,
    /// Position of the event in the global log (the `events` query).
    pub global_position: i64,
    pub event_type: String,
    pub occurred_at: String,
    /// UTC date of the event (a remittance's own business date for its entries).
    pub business_date: String,
    pub currency: String,
    pub payment_id: Option<ID>,
    pub remittance_id: Option<ID>,
    pub lines: Vec<JournalLineNode>,
}

impl From<JournalEntryRow> for JournalEntryNode {
    fn from(row: JournalEntryRow) -> Self {
        let currency = row.currency;
        JournalEntryNode {
            id: ID(row.entry_id),
            global_position: row.global_position,
            event_type: row.event_type,
            occurred_at: row.occurred_at,
            business_date: row.business_date,
            payment_id: row.payment_id.map(ID),
            remittance_id: row.remittance_id.map(ID),
            lines: row
                .lines
                .into_iter()
                .map(|line| JournalLineNode {
                    account: line.account,
                    debit: milli_to_string(line.debit_milli, &currency),
                    credit: milli_to_string(line.credit_milli, &currency),
                })
                .collect(),
            currency,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "JournalEntryEdge")]
pub struct JournalEdge {
    pub cursor: String,
    pub node: JournalEntryNode,
}

#[derive(SimpleObject)]
pub struct JournalConnection {
    pub edges: Vec<JournalEdge>,
    pub page_info: PageInfo,
}

/// Totals of one account.
#[derive(SimpleObject)]
pub struct TrialBalanceAccount {
    pub account: String,
    pub debit: String,
    pub credit: String,
    /// Debit minus credit: negative for an account with a credit balance.
    pub balance: String,
}

/// The trial balance of one currency.
#[derive(SimpleObject)]
#[graphql(name = "TrialBalance")]
pub struct TrialBalanceNode {
    pub currency: String,
    pub accounts: Vec<TrialBalanceAccount>,
    pub total_debit: String,
    pub total_credit: String,
    /// Whether total debits equal total credits (always, unless the journal is damaged).
    pub balanced: bool,
}

impl From<TrialBalanceRow> for TrialBalanceNode {
    fn from(row: TrialBalanceRow) -> Self {
        let currency = row.currency.clone();
        let money = |milli: i64| milli_to_string(milli, &currency);
        TrialBalanceNode {
            total_debit: money(row.total_debit_milli()),
            total_credit: money(row.total_credit_milli()),
            balanced: row.is_balanced(),
            accounts: row
                .accounts
                .iter()
                .map(|totals: &AccountTotals| TrialBalanceAccount {
                    account: totals.account.clone(),
                    debit: money(totals.debit_milli),
                    credit: money(totals.credit_milli),
                    balance: money(totals.balance_milli()),
                })
                .collect(),
            currency: row.currency,
        }
    }
}

fn journal_cursor(cursor: JournalCursor) -> String {
    BASE64.encode(format!(
        "jrn1|{}|{}|{}",
        cursor.tx_id, cursor.global_position, cursor.entry_index
    ))
}

fn parse_journal_cursor(cursor: &str) -> Option<JournalCursor> {
    let text = String::from_utf8(BASE64.decode(cursor).ok()?).ok()?;
    let mut parts = text.strip_prefix("jrn1|")?.split('|');
    let mut next = || parts.next()?.parse::<i64>().ok();
    let cursor = JournalCursor {
        tx_id: next()?,
        global_position: next()?,
        entry_index: next()?,
    };
    parts.next().is_none().then_some(cursor)
}

fn parse_date(field: &str, text: &str) -> async_graphql::Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| bad_input(field, "expected a date YYYY-MM-DD"))
}

/// `at` as stored timestamp text: an RFC 3339 instant, or a date meaning the end
/// of that day (UTC).
fn parse_instant(field: &str, text: &str) -> async_graphql::Result<String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let next_day = date
            .checked_add_days(Days::new(1))
            .ok_or_else(|| bad_input(field, "date out of range"))?;
        let end_of_day = next_day
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            - chrono::Duration::microseconds(1);
        return Ok(timestamp_text(end_of_day));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| timestamp_text(at.with_timezone(&Utc)))
        .map_err(|_| bad_input(field, "expected an RFC 3339 instant or a date YYYY-MM-DD"))
}

#[Object]
impl JournalQuery {
    /// The shop's double-entry journal, in log order: every money movement
    /// of the caller's mode as balanced entries, optionally between two business
    /// dates (inclusive), with keyset pagination.
    async fn journal(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        #[graphql(desc = "First business date, YYYY-MM-DD (UTC)")] from: Option<String>,
        #[graphql(desc = "Last business date, YYYY-MM-DD (UTC), inclusive")] to: Option<String>,
        #[graphql(desc = "Page size, 1 to 200 (default 20)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<JournalConnection> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        let shop_id = parse_shop_id("shopId", &shop_id)?;
        if shop_id != caller.shop_id {
            return Err(not_found("shop"));
        }
        // An absent or null `first` takes the default.
        let first = first.unwrap_or(20);
        if !(1..=PAGE_SIZE_MAX as i32).contains(&first) {
            return Err(bad_input(
                "first",
                format!("must be between 1 and {PAGE_SIZE_MAX}"),
            ));
        }
        let from = from.as_deref().map(|t| parse_date("from", t)).transpose()?;
        let to = to.as_deref().map(|t| parse_date("to", t)).transpose()?;
        if let (Some(from), Some(to)) = (from, to) {
            if to < from {
                return Err(bad_input("to", "must not be before `from`"));
            }
        }
        let after = after
            .as_deref()
            .map(|cursor| {
                parse_journal_cursor(cursor)
                    .ok_or_else(|| bad_input("after", "not a journal cursor"))
            })
            .transpose()?;
        let (rows, has_next_page) = journal_queries::list_journal(
            state.db(),
            &caller.read_scope(),
            shop_id,
            from,
            to,
            first as usize,
            after.as_ref(),
        )
        .await
        .map_err(app_error)?;
        let edges: Vec<JournalEdge> = rows
            .into_iter()
            .map(|row| JournalEdge {
                cursor: journal_cursor(row.cursor()),
                node: JournalEntryNode::from(row),
            })
            .collect();
        let end_cursor = edges.last().map(|edge| edge.cursor.clone());
        Ok(JournalConnection {
            edges,
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }

    /// The shop's trial balance per currency, for the caller's mode: every
    /// account's debits, credits and balance, of the entries that occurred at or
    /// before `at` (all of them when absent).
    async fn trial_balance(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        #[graphql(desc = "RFC 3339 instant, or a date YYYY-MM-DD for the end of that day (UTC)")]
        at: Option<String>,
    ) -> async_graphql::Result<Vec<TrialBalanceNode>> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        let shop_id = parse_shop_id("shopId", &shop_id)?;
        if shop_id != caller.shop_id {
            return Err(not_found("shop"));
        }
        let at = at.as_deref().map(|t| parse_instant("at", t)).transpose()?;
        let rows = journal_queries::trial_balance(
            state.db(),
            &caller.read_scope(),
            shop_id,
            at.as_deref(),
        )
        .await
        .map_err(app_error)?;
        Ok(rows.into_iter().map(TrialBalanceNode::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_cursors_round_trip_and_garbage_is_refused() {
        let cursor = JournalCursor {
            tx_id: 7,
            global_position: 42,
            entry_index: 3,
        };
        assert_eq!(parse_journal_cursor(&journal_cursor(cursor)), Some(cursor));
        assert_eq!(parse_journal_cursor("not a cursor"), None);
        assert_eq!(parse_journal_cursor(&BASE64.encode("jrn1|1|2|3|4")), None);
        assert_eq!(parse_journal_cursor(&BASE64.encode("pay1|1|2|3")), None);
    }

    #[test]
    fn a_date_bound_means_the_end_of_that_day() {
        assert_eq!(
            parse_instant("at", "2026-03-02").unwrap(),
            "2026-03-02T23:59:59.999999Z"
        );
        assert_eq!(
            parse_instant("at", "2026-03-02T12:00:00+02:00").unwrap(),
            "2026-03-02T10:00:00.000000Z"
        );
        assert!(parse_instant("at", "yesterday").is_err());
    }
}
