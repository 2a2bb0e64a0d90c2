//! The `journal` projection: every money movement of the log as balanced
//! double-entry journal entries, per shop, mode and currency (FEATURES ),
//! and the audit checks of the stored journal. The accounting rules are the pure
//! functions `payment_entries` and `remittance_entries`; docs/journal.md explains them.

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::payment::{Payment, PaymentEvent};
use caisse_domain::remittance::{Remittance, RemittanceEvent};
use caisse_domain::{Currency, Money};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::{date_text, timestamp_text};
use caisse_infrastructure::{Db, SqlValue, Tx};
use cqrs_es::Aggregate;

use crate::money::{milli_to_string, to_milli};
use crate::projector::Projection;

/// The journal's accounts. Their names are stored in the views and shown by the
/// API, so they never change once shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// Debit balance: amounts authorised on buyers' cards, not yet captured or released.
    AuthorisationHolds,
    /// Debit balance: orders deferred beyond the authorisation validity (TY-4):
    /// the card was checked, the authorisation is asked the day before capture.
    DeferredAuthorisations,
    /// Credit balance: what buyers have committed to the shop (held, awaiting
    /// authorisation or paid), net of releases and refunds.
    BuyerFunds,
    /// What the next remittances will net: captured amounts not yet sent to the
    /// acquirer, less refunds not yet sent (a credit balance when refunds exceed
    /// captures).
    MerchantReceivable,
    /// Debit balance: amounts sent to the acquirer in remittances, debits less
    /// credits, awaiting settlement (settlement comes with reconciliation, a later
    /// issue).
    RemittedToAcquirer,
}

impl Account {
    pub const ALL: [Account; 5] = [
        Account::AuthorisationHolds,
        Account::DeferredAuthorisations,
        Account::BuyerFunds,
        Account::MerchantReceivable,
        Account::RemittedToAcquirer,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Account::AuthorisationHolds => "authorisation_holds",
            Account::DeferredAuthorisations => "deferred_authorisations",
            Account::BuyerFunds => "buyer_funds",
            Account::MerchantReceivable => "merchant_receivable",
            Account::RemittedToAcquirer => "remitted_to_acquirer",
        }
    }

    pub fn parse(text: &str) -> Option<Account> {
        Account::ALL
            .into_iter()
            .find(|account| account.as_str() == text)
    }
}

/// A payment's balances in the journal before its next event (debits minus
/// credits, per account). A modification, cancellation or expiry releases from
/// wherever the payment's open amount sits (held, or awaiting a deferred
/// authorisation), which its event does not say, so those rules read it here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentBalances {
    pub currency: Option<Currency>,
    pub balances: std::collections::BTreeMap<Account, i64>,
}

impl PaymentBalances {
    pub fn balance(&self, account: Account) -> i64 {
        self.balances.get(&account).copied().unwrap_or(0)
    }

    /// The account holding the amount not yet captured: the deferred
    /// authorisations while the authorisation waits, the holds otherwise.
    fn open_account(&self) -> Account {
        if self.balance(Account::DeferredAuthorisations) != 0 {
            Account::DeferredAuthorisations
        } else {
            Account::AuthorisationHolds
        }
    }
}

/// One debit or credit: exactly one of the two amounts is positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub account: Account,
    pub debit_milli: i64,
    pub credit_milli: i64,
}

/// One journal entry: lines in one currency whose debits equal their credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub currency: Currency,
    pub payment_id: Option<String>,
    pub remittance_id: Option<String>,
    pub lines: Vec<Line>,
}

impl Entry {
    /// Moves `amount_milli` from `credit` to `debit`. Every rule goes through here,
    /// so every entry balances by construction. A zero movement makes no entry; a
    /// negative one (only a forged event could carry it, and a view must accept
    /// every event the log can hold) moves the other way.
    fn transfer(
        debit: Account,
        credit: Account,
        currency: Currency,
        amount_milli: i64,
    ) -> Option<Entry> {
        if amount_milli < 0 {
            return Entry::transfer(credit, debit, currency, -amount_milli);
        }
        (amount_milli > 0).then(|| Entry {
            currency,
            payment_id: None,
            remittance_id: None,
            lines: vec![
                Line {
                    account: debit,
                    debit_milli: amount_milli,
                    credit_milli: 0,
                },
                Line {
                    account: credit,
                    debit_milli: 0,
                    credit_milli: amount_milli,
                },
            ],
        })
    }

    fn for_payment(mut self, payment_id: &str) -> Entry {
        self.payment_id = Some(payment_id.to_string());
        self
    }

    fn for_remittance(mut self, remittance_id: String) -> Entry {
        self.remittance_id = Some(remittance_id);
        self
    }

    pub fn debit_milli(&self) -> i64 {
        self.lines.iter().map(|line| line.debit_milli).sum()
    }

    pub fn credit_milli(&self) -> i64 {
        self.lines.iter().map(|line| line.credit_milli).sum()
    }

    pub fn is_balanced(&self) -> bool {
        self.debit_milli() == self.credit_milli()
    }
}

fn move_money(debit: Account, credit: Account, money: &Money) -> Option<Entry> {
    Entry::transfer(debit, credit, money.currency(), to_milli(money))
}

/// The entries one payment event makes (none for an event that moves no money),
/// given the payment's balances before it (empty for its first event).
///
/// The match is exhaustive on purpose: a new payment event does not compile until
/// its accounting is decided here.
pub fn payment_entries(
    payment_id: &str,
    before: &PaymentBalances,
    event: &PaymentEvent,
) -> Vec<Entry> {
    use Account::*;
    let entry = match event {
        PaymentEvent::PaymentAuthorised { details, .. } => {
            move_money(AuthorisationHolds, BuyerFunds, &details.amount)
        }
        // Only the card was checked: the order is booked as awaiting its
        // authorisation, which the grant turns into a hold.
        PaymentEvent::PaymentAwaitingAuthorisation { details, .. } => {
            move_money(DeferredAuthorisations, BuyerFunds, &details.amount)
        }
        // The granted authorisation holds what awaited it; a refused one releases it.
        PaymentEvent::DeferredAuthorisationGranted { amount, .. } => {
            move_money(AuthorisationHolds, DeferredAuthorisations, amount)
        }
        PaymentEvent::DeferredAuthorisationRefused { amount, .. } => {
            move_money(BuyerFunds, DeferredAuthorisations, amount)
        }
        // A refusal holds nothing; a validation only makes a held amount due; a
        // duplication's new payment has its own authorisation.
        PaymentEvent::PaymentRefused { .. }
        | PaymentEvent::PaymentValidated { .. }
        | PaymentEvent::PaymentDuplicated { .. } => None,
        // Declarations only make a held amount due; a re-authorisation renews
        // the same hold.
        PaymentEvent::ShipmentDeclared { .. }
        | PaymentEvent::DeliveryDeclared { .. }
        | PaymentEvent::PaymentReauthorised { .. } => None,
        // The domain only lowers an amount, which releases the difference from
        // wherever it is open; a raise (should a later version allow it) holds
        // more, and a change of the capture date alone moves nothing.
        PaymentEvent::PaymentModified {
            previous_amount,
            amount,
            ..
        } => Entry::transfer(
            BuyerFunds,
            before.open_account(),
            amount.currency(),
            to_milli(previous_amount) - to_milli(amount),
        ),
        // A cancellation, and an unvalidated authorisation that lapsed, release
        // what is still open.
        PaymentEvent::PaymentCancelled { amount, .. }
        | PaymentEvent::PaymentExpired { amount, .. } => {
            move_money(BuyerFunds, before.open_account(), amount)
        }
        PaymentEvent::PaymentCaptured {
            remittance_id,
            amount,
            ..
        } => move_money(MerchantReceivable, AuthorisationHolds, amount)
            .map(|entry| entry.for_remittance(remittance_id.to_string())),
        // The refund goes to the acquirer as a credit of the next remittance
        // (docs/adr/0008): until then it lowers what that remittance will net.
        PaymentEvent::PaymentRefunded { amount, .. } => {
            move_money(BuyerFunds, MerchantReceivable, amount)
        }
        // Booked with the remittance that lists it (`remittance_entries`), like a
        // capture's move to the acquirer.
        PaymentEvent::RefundRemitted { .. } => None,
        // 3-D Secure moves no money: nothing is held while the buyer is being
        // authenticated, the challenge's result only precedes the authorisation,
        // refusal or card check that books (or not) the amount, and an abandoned
        // challenge had held nothing.
        PaymentEvent::PaymentAuthenticationPending { .. }
        | PaymentEvent::PaymentAuthenticated { .. }
        | PaymentEvent::PaymentAuthenticationAbandoned { .. } => None,
    };
    entry
        .map(|entry| entry.for_payment(payment_id))
        .into_iter()
        .collect()
}

/// The entries of a remittance: one per remitted payment (a debit), moving its
/// captured amount from the receivable to the acquirer, then one per refund (a
/// credit), moving it back from the acquirer to the receivable.
pub fn remittance_entries(event: &RemittanceEvent) -> Vec<Entry> {
    match event {
        RemittanceEvent::RemittanceSubmitted {
            remittance_id,
            payments,
            refunds,
            ..
        } => {
            let debits = payments.iter().map(|payment| {
                let entry = move_money(
                    Account::RemittedToAcquirer,
                    Account::MerchantReceivable,
                    &payment.amount,
                );
                (payment.payment_id, entry)
            });
            let credits = refunds.iter().map(|refund| {
                let entry = move_money(
                    Account::MerchantReceivable,
                    Account::RemittedToAcquirer,
                    &refund.amount,
                );
                (refund.payment_id, entry)
            });
            debits
                .chain(credits)
                .filter_map(|(payment_id, entry)| {
                    Some(
                        entry?
                            .for_payment(&payment_id.to_string())
                            .for_remittance(remittance_id.to_string()),
                    )
                })
                .collect()
        }
    }
}

/// What every entry of one event shares.
struct EventContext {
    shop_id: String,
    mode: String,
    business_date: String,
    occurred_at: String,
}

pub struct JournalProjection;

#[async_trait]
impl Projection for JournalProjection {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["journal_entries", "journal_lines"]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        let position = event.position.global_position;
        let (entries, context) = if event.aggregate_type == Payment::TYPE {
            let payment_event: PaymentEvent = serde_json::from_value(event.payload.clone())
                .map_err(|error| {
                    AppError::internal(format!("payment event {position}: {error}"))
                })?;
            // A payment's first event names its shop; later ones do not, so the
            // shop, mode and balances come from the payment's earlier entries
            // (not from payments_view, which the retention trims while the
            // journal keeps everything). Exhaustive too: a new event must say
            // which kind it is.
            let first_event_owner = match &payment_event {
                PaymentEvent::PaymentAuthorised { details, .. }
                | PaymentEvent::PaymentAwaitingAuthorisation { details, .. }
                | PaymentEvent::PaymentRefused { details, .. }
                | PaymentEvent::PaymentAuthenticationPending { details, .. } => Some((
                    details.shop_id.to_string(),
                    details.mode.as_str().to_string(),
                )),
                PaymentEvent::DeferredAuthorisationGranted { .. }
                | PaymentEvent::DeferredAuthorisationRefused { .. }
                | PaymentEvent::PaymentValidated { .. }
                | PaymentEvent::PaymentModified { .. }
                | PaymentEvent::PaymentCancelled { .. }
                | PaymentEvent::PaymentExpired { .. }
                | PaymentEvent::PaymentCaptured { .. }
                | PaymentEvent::PaymentRefunded { .. }
                | PaymentEvent::RefundRemitted { .. }
                | PaymentEvent::PaymentDuplicated { .. }
                | PaymentEvent::ShipmentDeclared { .. }
                | PaymentEvent::DeliveryDeclared { .. }
                | PaymentEvent::PaymentReauthorised { .. }
                | PaymentEvent::PaymentAuthenticated { .. }
                | PaymentEvent::PaymentAuthenticationAbandoned { .. } => None,
            };
            let history = match first_event_owner {
                // Nothing booked before an event with details: it is the first,
                // or it completes a 3-D Secure challenge, which booked nothing.
                Some(_) => None,
                None => payment_history(tx, &event.aggregate_id).await?,
            };
            let before = history
                .as_ref()
                .map(|history| history.balances.clone())
                .unwrap_or_default();
            let entries = payment_entries(&event.aggregate_id, &before, &payment_event);
            if entries.is_empty() {
                return Ok(());
            }
            let (shop_id, mode) = first_event_owner
                .or(history.map(|history| (history.shop_id, history.mode)))
                .ok_or_else(|| {
                    AppError::internal(format!(
                        "journal has no entry for payment {} before its event at {position}",
                        event.aggregate_id
                    ))
                })?;
            let occurred_at = payment_event.occurred_at();
            let context = EventContext {
                shop_id,
                mode,
                business_date: date_text(occurred_at.date_naive()),
                occurred_at: timestamp_text(occurred_at),
            };
            (entries, context)
        } else if event.aggregate_type == Remittance::TYPE {
            let remittance_event: RemittanceEvent = serde_json::from_value(event.payload.clone())
                .map_err(|error| {
                AppError::internal(format!("remittance event {position}: {error}"))
            })?;
            let entries = remittance_entries(&remittance_event);
            let context = match &remittance_event {
                RemittanceEvent::RemittanceSubmitted {
                    shop_id,
                    mode,
                    business_date,
                    occurred_at,
                    ..
                } => EventContext {
                    shop_id: shop_id.to_string(),
                    mode: mode.as_str().to_string(),
                    business_date: date_text(*business_date),
                    occurred_at: timestamp_text(*occurred_at),
                },
            };
            (entries, context)
        } else {
            return Ok(());
        };
        write_entries(tx, event, &context, &entries).await
    }
}

/// What the journal knows of a payment from its earlier lines.
struct PaymentHistory {
    shop_id: String,
    mode: String,
    balances: PaymentBalances,
}

/// The payment's shop, mode and balances, from its lines; `None` when it has none
/// (a refused payment, or one not seen yet).
async fn payment_history(
    tx: &mut Tx,
    payment_id: &str,
) -> Result<Option<PaymentHistory>, AppError> {
    let rows = tx
        .fetch_all(
            // Through the entries' payment index, then each entry's lines by the
            // lines' primary key (global_position first).
            "SELECT l.shop_id, l.mode, l.currency, l.account,
                    CAST(SUM(l.debit_milli) - SUM(l.credit_milli) AS BIGINT) AS balance_milli
               FROM journal_entries e
               JOIN journal_lines l
                 ON l.global_position = e.global_position AND l.entry_index = e.entry_index
              WHERE e.payment_id = $1
              GROUP BY l.shop_id, l.mode, l.currency, l.account",
            &[payment_id.into()],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut balances = PaymentBalances {
        currency: Currency::parse(&first.text("currency")).ok(),
        ..PaymentBalances::default()
    };
    for row in &rows {
        if let Some(account) = Account::parse(&row.text("account")) {
            *balances.balances.entry(account).or_default() += row.int("balance_milli");
        }
    }
    Ok(Some(PaymentHistory {
        shop_id: first.text("shop_id"),
        mode: first.text("mode"),
        balances,
    }))
}

/// Rows per INSERT statement: well under both backends' parameter limits.
const ROWS_PER_INSERT: usize = 50;

async fn insert_rows(
    tx: &mut Tx,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<SqlValue>>,
) -> Result<(), AppError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut params: Vec<SqlValue> = Vec::with_capacity(chunk.len() * columns.len());
        let mut tuples = Vec::with_capacity(chunk.len());
        for row in chunk {
            assert_eq!(row.len(), columns.len(), "one value per column of {table}");
            let placeholders: Vec<String> = row
                .iter()
                .map(|value| {
                    params.push(value.clone());
                    format!("${}", params.len())
                })
                .collect();
            tuples.push(format!("({})", placeholders.join(", ")));
        }
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {}",
            columns.join(", "),
            tuples.join(", ")
        );
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

const ENTRY_COLUMNS: &[&str] = &[
    "global_position",
    "entry_index",
    "entry_id",
    "tx_id",
    "shop_id",
    "mode",
    "currency",
    "business_date",
    "occurred_at",
    "event_type",
    "payment_id",
    "remittance_id",
];

const LINE_COLUMNS: &[&str] = &[
    "global_position",
    "line_index",
    "entry_index",
    "entry_id",
    "tx_id",
    "shop_id",
    "mode",
    "currency",
    "business_date",
    "occurred_at",
    "event_type",
    "payment_id",
    "remittance_id",
    "account",
    "debit_milli",
    "credit_milli",
];

/// The id of an entry, as the API shows it: its event's position and its index.
pub fn entry_id(global_position: i64, entry_index: i64) -> String {
    format!("je_{global_position}_{entry_index}")
}

async fn write_entries(
    tx: &mut Tx,
    event: &LoggedEvent,
    context: &EventContext,
    entries: &[Entry],
) -> Result<(), AppError> {
    let position = event.position.global_position;
    let tx_id = event.position.tx_id as i64;
    let mut entry_rows = Vec::with_capacity(entries.len());
    let mut line_rows = Vec::with_capacity(entries.len() * 2);
    for (entry_index, entry) in entries.iter().enumerate() {
        assert!(
            entry.is_balanced(),
            "journal entry {entry_index} of event {position} does not balance: {entry:?}"
        );
        let entry_index = entry_index as i64;
        let id = entry_id(position, entry_index);
        let shared: Vec<SqlValue> = vec![
            tx_id.into(),
            context.shop_id.as_str().into(),
            context.mode.as_str().into(),
            entry.currency.code().into(),
            context.business_date.as_str().into(),
            context.occurred_at.as_str().into(),
            event.event_type.as_str().into(),
            entry.payment_id.clone().into(),
            entry.remittance_id.clone().into(),
        ];
        let mut entry_row: Vec<SqlValue> =
            vec![position.into(), entry_index.into(), id.as_str().into()];
        entry_row.extend(shared.iter().cloned());
        entry_rows.push(entry_row);
        for line in &entry.lines {
            let line_index = line_rows.len() as i64;
            let mut line_row: Vec<SqlValue> = vec![
                position.into(),
                line_index.into(),
                entry_index.into(),
                id.as_str().into(),
            ];
            line_row.extend(shared.iter().cloned());
            line_row.extend([
                line.account.as_str().into(),
                line.debit_milli.into(),
                line.credit_milli.into(),
            ]);
            line_rows.push(line_row);
        }
    }
    insert_rows(tx, "journal_entries", ENTRY_COLUMNS, entry_rows).await?;
    insert_rows(tx, "journal_lines", LINE_COLUMNS, line_rows).await?;
    Ok(())
}

/// Findings reported per check at most, so a badly damaged journal still gives a
/// readable report.
const FINDINGS_PER_CHECK_MAX: usize = 100;

/// Checks of the stored journal that hold whatever the replay says (`audit
/// verify`): every entry balances, has lines, and its lines agree with it on shop,
/// mode and currency; every line is either a debit or a credit; and the trial
/// balance of every shop, mode and currency is zero. One finding per failure.
pub async fn audit_findings(db: &Db) -> Result<Vec<String>, AppError> {
    let limit = (FINDINGS_PER_CHECK_MAX + 1) as i64;
    let mut findings = Vec::new();

    let rows = db
        .fetch_all(
            "SELECT global_position, entry_index,
                    CAST(SUM(debit_milli) AS BIGINT) AS debit_milli,
                    CAST(SUM(credit_milli) AS BIGINT) AS credit_milli, MIN(currency) AS currency
               FROM journal_lines
              GROUP BY global_position, entry_index
             HAVING SUM(debit_milli) <> SUM(credit_milli)
              ORDER BY global_position, entry_index
              LIMIT $1",
            &[limit.into()],
        )
        .await?;
    push_capped(&mut findings, &rows, "unbalanced journal entries", |row| {
        let currency = row.text("currency");
        format!(
            "journal_lines: entry {} does not balance: debits {} {currency}, credits {} {currency}",
            entry_id(row.int("global_position"), row.int("entry_index")),
            milli_to_string(row.int("debit_milli"), &currency),
            milli_to_string(row.int("credit_milli"), &currency),
        )
    });

    let rows = db
        .fetch_all(
            "SELECT l.global_position, l.line_index, l.entry_index
               FROM journal_lines l
               LEFT JOIN journal_entries e
                 ON e.global_position = l.global_position AND e.entry_index = l.entry_index
              WHERE e.entry_id IS NULL OR e.entry_id <> l.entry_id OR e.shop_id <> l.shop_id
                 OR e.mode <> l.mode OR e.currency <> l.currency
              ORDER BY l.global_position, l.line_index
              LIMIT $1",
            &[limit.into()],
        )
        .await?;
    push_capped(&mut findings, &rows, "orphan journal lines", |row| {
        format!(
            "journal_lines: line {} of position {} has no matching entry {} (missing, or another shop, mode or currency)",
            row.int("line_index"),
            row.int("global_position"),
            entry_id(row.int("global_position"), row.int("entry_index")),
        )
    });

    let rows = db
        .fetch_all(
            "SELECT e.global_position, e.entry_index
               FROM journal_entries e
              WHERE NOT EXISTS (SELECT 1 FROM journal_lines l
                                 WHERE l.global_position = e.global_position
                                   AND l.entry_index = e.entry_index)
              ORDER BY e.global_position, e.entry_index
              LIMIT $1",
            &[limit.into()],
        )
        .await?;
    push_capped(
        &mut findings,
        &rows,
        "journal entries without lines",
        |row| {
            format!(
                "journal_entries: entry {} has no lines",
                entry_id(row.int("global_position"), row.int("entry_index")),
            )
        },
    );

    let rows = db
        .fetch_all(
            "SELECT global_position, line_index, debit_milli, credit_milli
               FROM journal_lines
              WHERE debit_milli < 0 OR credit_milli < 0
                 OR (debit_milli = 0) = (credit_milli = 0)
              ORDER BY global_position, line_index
              LIMIT $1",
            &[limit.into()],
        )
        .await?;
    push_capped(&mut findings, &rows, "malformed journal lines", |row| {
        format!(
            "journal_lines: line {} of position {} is not one positive debit or credit (debit {} milli, credit {} milli)",
            row.int("line_index"),
            row.int("global_position"),
            row.int("debit_milli"),
            row.int("credit_milli"),
        )
    });

    let rows = db
        .fetch_all(
            "SELECT shop_id, mode, currency,
                    CAST(SUM(debit_milli) AS BIGINT) AS debit_milli,
                    CAST(SUM(credit_milli) AS BIGINT) AS credit_milli
               FROM journal_lines
              GROUP BY shop_id, mode, currency
             HAVING SUM(debit_milli) <> SUM(credit_milli)
              ORDER BY shop_id, mode, currency
              LIMIT $1",
            &[limit.into()],
        )
        .await?;
    push_capped(&mut findings, &rows, "unbalanced trial balances", |row| {
        let currency = row.text("currency");
        format!(
            "journal_lines: trial balance of shop {} ({}, {currency}) is not zero: debits {}, credits {}",
            row.text("shop_id"),
            row.text("mode"),
            milli_to_string(row.int("debit_milli"), &currency),
            milli_to_string(row.int("credit_milli"), &currency),
        )
    });
    Ok(findings)
}

fn push_capped(
    findings: &mut Vec<String>,
    rows: &[caisse_infrastructure::SqlRow],
    what: &str,
    describe: impl Fn(&caisse_infrastructure::SqlRow) -> String,
) {
    findings.extend(rows.iter().take(FINDINGS_PER_CHECK_MAX).map(describe));
    if rows.len() > FINDINGS_PER_CHECK_MAX {
        findings.push(format!(
            "more than {FINDINGS_PER_CHECK_MAX} {what}; only the first are listed"
        ));
    }
}

#[cfg(test)]
mod tests {
    use caisse_domain::card::{CardBrand, CardExpiry, CardSnapshot};
    use caisse_domain::ids::RefundId;
    use caisse_domain::payment::{
        Authorisation, CaptureMode, Channel, PaymentDetails, Refusal,
        DEFAULT_AUTHORISATION_VALIDITY_DAYS,
    };
    use caisse_domain::remittance::RemittedPayment;
    use caisse_domain::{Mode, PaymentId, RemittanceId, ShopId};
    use chrono::{DateTime, NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

    use super::Account::*;
    use super::*;

    const PAYMENT: &str = "pay_0000000000000000000000000000a001";

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
    }

    fn money(amount: &str, currency: &str) -> Money {
        Money::parse_positive(amount, currency).unwrap()
    }

    /// A payment's balances before its first event.
    fn none() -> PaymentBalances {
        PaymentBalances::default()
    }

    /// A payment waiting for its deferred authorisation of `milli`.
    fn awaiting(milli: i64) -> PaymentBalances {
        PaymentBalances {
            currency: Some(Currency::EUR),
            balances: [(DeferredAuthorisations, milli), (BuyerFunds, -milli)]
                .into_iter()
                .collect(),
        }
    }

    fn remittance_id() -> RemittanceId {
        RemittanceId::from_uuid(Uuid::from_u128(0xB001))
    }

    fn details(amount: Money) -> PaymentDetails {
        PaymentDetails {
            payment_id: PaymentId::from_uuid(Uuid::from_u128(0xA001)),
            shop_id: ShopId::from_uuid(Uuid::from_u128(0x5409)),
            mode: Mode::Test,
            order_reference: "order-42".to_string(),
            amount,
            channel: Channel::Ecommerce,
            capture_mode: CaptureMode::Automatic,
            capture_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            capture_trigger: Default::default(),
            instalment_of: None,
            acquirer_contract: caisse_domain::acquirer::default_contract(),
            buyer_country: None,
            buyer_language: None,
            three_ds: Default::default(),
            risk: Default::default(),
            card: CardSnapshot {
                token: "tok_test".to_string(),
                bin: "497010".to_string(),
                last_four: "0006".to_string(),
                brand: CardBrand::Cb,
                networks: vec![CardBrand::Cb, CardBrand::Visa],
                expiry: CardExpiry {
                    month: 12,
                    year: 2030,
                },
                fingerprint: "fp_test".to_string(),
                holder_name: None,
                issuing_country: None,
            },
            buyer_email: None,
            buyer_ip: None,
            duplicated_from: None,
            authorisation_validity_days: DEFAULT_AUTHORISATION_VALIDITY_DAYS,
            occurred_at: at(),
        }
    }

    /// `(account, debit, credit)` of each line, in milli.
    fn lines(entry: &Entry) -> Vec<(Account, i64, i64)> {
        entry
            .lines
            .iter()
            .map(|line| (line.account, line.debit_milli, line.credit_milli))
            .collect()
    }

    fn only_entry(entries: Vec<Entry>) -> Entry {
        assert_eq!(entries.len(), 1, "{entries:?}");
        let entry = entries.into_iter().next().unwrap();
        assert!(entry.is_balanced());
        entry
    }

    #[test]
    fn an_authorisation_holds_the_amount_against_the_buyers_funds() {
        let event = PaymentEvent::PaymentAuthorised {
            details: details(money("100.00", "EUR")),
            authorisation: Authorisation {
                authorisation_code: "A1".to_string(),
                acquirer_reference: "acq".to_string(),
            },
        };
        let entry = only_entry(payment_entries(PAYMENT, &none(), &event));
        assert_eq!(entry.currency.code(), "EUR");
        assert_eq!(entry.payment_id.as_deref(), Some(PAYMENT));
        assert_eq!(entry.remittance_id, None);
        assert_eq!(
            lines(&entry),
            vec![(AuthorisationHolds, 100_000, 0), (BuyerFunds, 0, 100_000)]
        );
    }

    #[test]
    fn refusals_validations_and_duplications_move_no_money() {
        let refused = PaymentEvent::PaymentRefused {
            details: details(money("100.00", "EUR")),
            refusal: Refusal {
                code: "51".to_string(),
                message: "insufficient funds".to_string(),
                category: caisse_domain::payment::RefusalCategory::IssuerDeclined,
            },
        };
        let validated = PaymentEvent::PaymentValidated { occurred_at: at() };
        let duplicated = PaymentEvent::PaymentDuplicated {
            new_payment_id: PaymentId::from_uuid(Uuid::from_u128(0xA002)),
            amount: money("5.00", "EUR"),
            occurred_at: at(),
        };
        for event in [refused, validated, duplicated] {
            assert_eq!(
                payment_entries(PAYMENT, &none(), &event),
                vec![],
                "{event:?}"
            );
        }
    }

    #[test]
    fn lowering_the_amount_releases_the_difference_and_a_date_change_alone_makes_no_entry() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let modified = |previous: &str, amount: &str| PaymentEvent::PaymentModified {
            previous_amount: money(previous, "JPY"),
            amount: money(amount, "JPY"),
            previous_capture_date: date,
            capture_date: date,
            occurred_at: at(),
        };
        let entry = only_entry(payment_entries(PAYMENT, &none(), &modified("1000", "600")));
        assert_eq!(entry.currency.code(), "JPY");
        assert_eq!(
            lines(&entry),
            vec![(BuyerFunds, 400_000, 0), (AuthorisationHolds, 0, 400_000)]
        );
        assert_eq!(
            payment_entries(PAYMENT, &none(), &modified("600", "600")),
            vec![]
        );
    }

    #[test]
    fn a_cancellation_and_an_expiry_release_the_whole_hold() {
        let cancelled = PaymentEvent::PaymentCancelled {
            amount: money("1.234", "KWD"),
            occurred_at: at(),
        };
        let expired = PaymentEvent::PaymentExpired {
            amount: money("1.234", "KWD"),
            reauthorisation_refusal: None,
            occurred_at: at(),
        };
        for event in [cancelled, expired] {
            let entry = only_entry(payment_entries(PAYMENT, &none(), &event));
            assert_eq!(entry.currency.code(), "KWD");
            assert_eq!(
                lines(&entry),
                vec![(BuyerFunds, 1_234, 0), (AuthorisationHolds, 0, 1_234)]
            );
        }
    }

    #[test]
    fn a_capture_turns_the_hold_into_a_receivable_of_its_remittance() {
        let event = PaymentEvent::PaymentCaptured {
            remittance_id: remittance_id(),
            amount: money("80.00", "EUR"),
            occurred_at: at(),
        };
        let entry = only_entry(payment_entries(PAYMENT, &none(), &event));
        assert_eq!(entry.remittance_id, Some(remittance_id().to_string()));
        assert_eq!(
            lines(&entry),
            vec![
                (MerchantReceivable, 80_000, 0),
                (AuthorisationHolds, 0, 80_000)
            ]
        );
    }

    #[test]
    fn a_refund_gives_the_buyer_back_out_of_what_the_next_remittance_nets() {
        let event = PaymentEvent::PaymentRefunded {
            refund_id: RefundId::from_uuid(Uuid::from_u128(0xC001)),
            amount: money("30.00", "EUR"),
            refunded_total: money("30.00", "EUR"),
            occurred_at: at(),
        };
        let entry = only_entry(payment_entries(PAYMENT, &none(), &event));
        assert_eq!(
            lines(&entry),
            vec![(BuyerFunds, 30_000, 0), (MerchantReceivable, 0, 30_000)]
        );
        // Its remittance books it, not the payment's `RefundRemitted`.
        let remitted = PaymentEvent::RefundRemitted {
            refund_id: RefundId::from_uuid(Uuid::from_u128(0xC001)),
            remittance_id: remittance_id(),
            amount: money("30.00", "EUR"),
            occurred_at: at(),
        };
        assert_eq!(payment_entries(PAYMENT, &none(), &remitted), vec![]);
    }

    #[test]
    fn a_remittance_moves_its_credits_back_from_the_acquirer_after_its_debits() {
        let first = PaymentId::from_uuid(Uuid::from_u128(0xA001));
        let refunded = PaymentId::from_uuid(Uuid::from_u128(0xA003));
        let event = RemittanceEvent::RemittanceSubmitted {
            remittance_id: remittance_id(),
            shop_id: ShopId::from_uuid(Uuid::from_u128(0x5409)),
            mode: Mode::Test,
            contract: "SIMULATOR".to_string(),
            business_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            payments: vec![RemittedPayment {
                payment_id: first,
                amount: money("80.00", "EUR"),
            }],
            count: 1,
            total: money("80.00", "EUR"),
            refunds: vec![caisse_domain::remittance::RemittedRefund {
                payment_id: refunded,
                refund_id: RefundId::from_uuid(Uuid::from_u128(0xC001)),
                amount: money("30.00", "EUR"),
            }],
            credit_count: 1,
            credit_total: Some(money("30.00", "EUR")),
            occurred_at: at(),
        };
        let entries = remittance_entries(&event);
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(Entry::is_balanced));
        assert!(entries
            .iter()
            .all(|entry| entry.remittance_id == Some(remittance_id().to_string())));
        assert_eq!(entries[0].payment_id, Some(first.to_string()));
        assert_eq!(
            lines(&entries[0]),
            vec![
                (RemittedToAcquirer, 80_000, 0),
                (MerchantReceivable, 0, 80_000)
            ]
        );
        assert_eq!(entries[1].payment_id, Some(refunded.to_string()));
        assert_eq!(
            lines(&entries[1]),
            vec![
                (MerchantReceivable, 30_000, 0),
                (RemittedToAcquirer, 0, 30_000)
            ]
        );
    }

    #[test]
    fn a_remittance_makes_one_entry_per_remitted_payment() {
        let first = PaymentId::from_uuid(Uuid::from_u128(0xA001));
        let second = PaymentId::from_uuid(Uuid::from_u128(0xA002));
        let event = RemittanceEvent::RemittanceSubmitted {
            remittance_id: remittance_id(),
            shop_id: ShopId::from_uuid(Uuid::from_u128(0x5409)),
            mode: Mode::Test,
            business_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            payments: vec![
                RemittedPayment {
                    payment_id: first,
                    amount: money("80.00", "EUR"),
                },
                RemittedPayment {
                    payment_id: second,
                    amount: money("5.50", "EUR"),
                },
            ],
            count: 2,
            total: money("85.50", "EUR"),
            contract: caisse_domain::acquirer::default_contract(),
            refunds: vec![],
            credit_count: 0,
            credit_total: None,
            occurred_at: at(),
        };
        let entries = remittance_entries(&event);
        assert_eq!(entries.len(), 2);
        for (entry, (payment, milli)) in entries.iter().zip([(first, 80_000), (second, 5_500)]) {
            assert!(entry.is_balanced());
            assert_eq!(entry.payment_id, Some(payment.to_string()));
            assert_eq!(entry.remittance_id, Some(remittance_id().to_string()));
            assert_eq!(
                lines(entry),
                vec![
                    (RemittedToAcquirer, milli, 0),
                    (MerchantReceivable, 0, milli)
                ]
            );
        }
    }

    #[test]
    fn a_deferred_payment_awaits_its_authorisation_then_the_grant_holds_what_awaited() {
        let authorisation = Authorisation {
            authorisation_code: "A1".to_string(),
            acquirer_reference: "acq".to_string(),
        };
        let event = PaymentEvent::PaymentAwaitingAuthorisation {
            details: details(money("100.00", "EUR")),
            card_check: authorisation.clone(),
        };
        let entry = only_entry(payment_entries(PAYMENT, &none(), &event));
        assert_eq!(
            lines(&entry),
            vec![
                (DeferredAuthorisations, 100_000, 0),
                (BuyerFunds, 0, 100_000)
            ]
        );
        // Lowered to 60.00 while waiting: the release comes out of the deferred account.
        let date = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let modified = PaymentEvent::PaymentModified {
            previous_amount: money("100.00", "EUR"),
            amount: money("60.00", "EUR"),
            previous_capture_date: date,
            capture_date: date,
            occurred_at: at(),
        };
        let entry = only_entry(payment_entries(PAYMENT, &awaiting(100_000), &modified));
        assert_eq!(
            lines(&entry),
            vec![(BuyerFunds, 40_000, 0), (DeferredAuthorisations, 0, 40_000)]
        );
        let granted = PaymentEvent::DeferredAuthorisationGranted {
            amount: money("60.00", "EUR"),
            authorisation,
            occurred_at: at(),
        };
        let entry = only_entry(payment_entries(PAYMENT, &awaiting(60_000), &granted));
        assert_eq!(entry.currency, Currency::EUR);
        assert_eq!(
            lines(&entry),
            vec![
                (AuthorisationHolds, 60_000, 0),
                (DeferredAuthorisations, 0, 60_000)
            ]
        );
    }

    #[test]
    fn a_refused_or_cancelled_deferred_authorisation_releases_what_awaited() {
        let refused = PaymentEvent::DeferredAuthorisationRefused {
            amount: money("60.00", "EUR"),
            refusal: Refusal {
                code: "51".to_string(),
                message: "insufficient funds".to_string(),
                category: caisse_domain::payment::RefusalCategory::IssuerDeclined,
            },
            occurred_at: at(),
        };
        let cancelled = PaymentEvent::PaymentCancelled {
            amount: money("60.00", "EUR"),
            occurred_at: at(),
        };
        for event in [refused, cancelled] {
            let entry = only_entry(payment_entries(PAYMENT, &awaiting(60_000), &event));
            assert_eq!(
                lines(&entry),
                vec![(BuyerFunds, 60_000, 0), (DeferredAuthorisations, 0, 60_000)],
                "{event:?}"
            );
        }
    }

    #[test]
    fn account_names_round_trip() {
        for account in Account::ALL {
            assert_eq!(Account::parse(account.as_str()), Some(account));
        }
        assert_eq!(Account::parse("cash"), None);
    }
}
