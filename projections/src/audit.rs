//! `caisse audit verify`: replays the whole log and reports broken invariants and
//! any drift between the stored views and a fresh replay of them.

use std::collections::BTreeMap;
use std::str::FromStr;

use caisse_application::ports::LogPosition;
use caisse_application::AppError;
use caisse_domain::payment::{Payment, PaymentEvent};
use caisse_domain::remittance::{Remittance, RemittanceEvent};
use caisse_infrastructure::event_log::{EventLogReader, LOG_PAGE_SIZE_MAX};
use caisse_infrastructure::Db;
use cqrs_es::Aggregate;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::projector::{all_projections, Projectors};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug, Default)]
pub struct AuditReport {
    pub events: usize,
    pub aggregates: usize,
    pub payments: usize,
    pub findings: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Runs every check. Meant for a quiet system: views are caught up first, then each
/// is compared with a replay up to its own checkpoint.
pub async fn verify(db: &Db) -> Result<AuditReport, AppError> {
    let log = EventLogReader::new(db.clone());
    // The safe reader withholds events of transactions younger than the oldest one
    // still running (on PostgreSQL, anywhere on the server). An audit covers every
    // event committed when it starts: wait, bounded, until all are readable.
    let committed = db
        .fetch_optional("SELECT COUNT(*) AS n FROM events", &[])
        .await?
        .map(|row| row.int("n") as usize)
        .unwrap_or(0);
    let mut attempts_left = HORIZON_WAIT_ATTEMPTS;
    loop {
        let report = verify_log(&log).await?;
        if report.events >= committed || attempts_left == 0 {
            return finish(db, &log, report, committed).await;
        }
        attempts_left -= 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Re-reads of the log while an open transaction holds some events back (× 200 ms).
const HORIZON_WAIT_ATTEMPTS: usize = 50;

/// Sequences and money invariants, aggregate by aggregate.
async fn verify_log(log: &EventLogReader) -> Result<AuditReport, AppError> {
    let mut report = AuditReport::default();
    let mut sequences: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut payments: BTreeMap<String, Payment> = BTreeMap::new();
    let mut credits = RefundRemittances::default();
    let mut cursor = LogPosition::default();
    loop {
        let page = log.read_after(cursor, LOG_PAGE_SIZE_MAX).await?;
        let Some(last) = page.last() else { break };
        cursor = last.position;
        for event in &page {
            report.events += 1;
            let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
            let expected = sequences.get(&key).copied().unwrap_or(0) + 1;
            if event.sequence != expected {
                report.findings.push(format!(
                    "{} {}: sequence {} follows {} (gap or reorder)",
                    event.aggregate_type,
                    event.aggregate_id,
                    event.sequence,
                    expected - 1
                ));
            }
            sequences.insert(key, event.sequence);
            if event.aggregate_type == Payment::TYPE {
                match serde_json::from_value::<PaymentEvent>(event.payload.clone()) {
                    Ok(payment_event) => {
                        if let PaymentEvent::RefundRemitted {
                            refund_id,
                            remittance_id,
                            ..
                        } = &payment_event
                        {
                            credits
                                .named
                                .entry(refund_id.to_string())
                                .or_default()
                                .push(remittance_id.to_string());
                        }
                        let payment = payments.entry(event.aggregate_id.clone()).or_default();
                        payment.apply(payment_event);
                        check_payment(&event.aggregate_id, payment, &mut report.findings);
                    }
                    Err(error) => report.findings.push(format!(
                        "event at position {} does not deserialise: {error}",
                        event.position.global_position
                    )),
                }
            } else if event.aggregate_type == Remittance::TYPE {
                match serde_json::from_value::<RemittanceEvent>(event.payload.clone()) {
                    Ok(RemittanceEvent::RemittanceSubmitted {
                        remittance_id,
                        refunds,
                        ..
                    }) => {
                        for refund in refunds {
                            credits
                                .listed
                                .entry(refund.refund_id.to_string())
                                .or_default()
                                .push(remittance_id.to_string());
                        }
                    }
                    Err(error) => report.findings.push(format!(
                        "event at position {} does not deserialise: {error}",
                        event.position.global_position
                    )),
                }
            }
        }
    }
    credits.check(&mut report.findings);
    report.aggregates = sequences.len();
    report.payments = payments.len();
    Ok(report)
}

/// Stored views against a replay into a fresh in-memory database.
async fn finish(
    db: &Db,
    log: &EventLogReader,
    mut report: AuditReport,
    committed: usize,
) -> Result<AuditReport, AppError> {
    if report.events < committed {
        report.findings.push(format!(
            "only {} of {committed} committed events could be read: a transaction older than the rest is \
             still open on the database; audit again once it ends",
            report.events
        ));
    }
    let projectors = Projectors::new(db.clone(), std::time::Duration::from_secs(1));
    projectors.catch_up_all().await?;
    let replay_db = fresh_memory_database().await?;
    for projection in all_projections() {
        let checkpoint = db
            .fetch_optional(
                "SELECT tx_id, global_position FROM projection_checkpoints WHERE name = $1",
                &[projection.name().into()],
            )
            .await?
            .map(|row| LogPosition {
                tx_id: row.int("tx_id") as u64,
                global_position: row.int("global_position"),
            })
            .unwrap_or_default();
        let mut cursor = LogPosition::default();
        let mut tx = replay_db.begin().await?;
        'replay: loop {
            let page = log.read_after(cursor, LOG_PAGE_SIZE_MAX).await?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                if event.position > checkpoint {
                    break 'replay;
                }
                projection.apply(&mut tx, event).await?;
                cursor = event.position;
            }
        }
        tx.commit().await?;
        for table in projection.tables() {
            // Sorted here, on every column: the first ones are not a key of every
            // view (risk_rule_counts), and PostgreSQL's collation may order text
            // unlike SQLite.
            let sql = format!("SELECT * FROM {table}");
            let mut stored = db.fetch_all(&sql, &[]).await?;
            let mut replayed = replay_db.fetch_all(&sql, &[]).await?;
            stored.sort_by_cached_key(|row| row.normalized());
            replayed.sort_by_cached_key(|row| row.normalized());
            compare_tables(table, &stored, &replayed, &mut report.findings);
        }
    }
    report
        .findings
        .extend(crate::journal::audit_findings(db).await?);
    Ok(report)
}

/// Where the log sends each refund: the remittances whose `RemittanceSubmitted`
/// lists it, and those its payment's `RefundRemitted` names (docs/adr/0008).
#[derive(Default)]
struct RefundRemittances {
    listed: BTreeMap<String, Vec<String>>,
    named: BTreeMap<String, Vec<String>>,
}

impl RefundRemittances {
    /// Every refund is in at most one remittance, the one its `RefundRemitted` names.
    fn check(&self, findings: &mut Vec<String>) {
        for (refund_id, remittances) in &self.named {
            if remittances.len() > 1 {
                findings.push(format!(
                    "refund {refund_id}: remitted {} times ({})",
                    remittances.len(),
                    remittances.join(", ")
                ));
            }
        }
        for (refund_id, remittances) in &self.listed {
            if remittances.len() > 1 {
                findings.push(format!(
                    "refund {refund_id}: listed in {} remittances ({})",
                    remittances.len(),
                    remittances.join(", ")
                ));
            }
            let named = self.named.get(refund_id).cloned().unwrap_or_default();
            for remittance_id in remittances {
                if !named.contains(remittance_id) {
                    findings.push(format!(
                        "refund {refund_id}: listed in remittance {remittance_id}, which its RefundRemitted does not name"
                    ));
                }
            }
        }
    }
}

fn check_payment(payment_id: &str, payment: &Payment, findings: &mut Vec<String>) {
    let Some(details) = &payment.details else {
        return;
    };
    let authorised = details.amount;
    if let Some(captured) = payment.captured {
        if captured
            .cmp_amount(&authorised)
            .map(|o| o.is_gt())
            .unwrap_or(true)
        {
            findings.push(format!(
                "{payment_id}: captured {captured} exceeds authorised {authorised}"
            ));
        }
        if let Some(refunded) = payment.refunded {
            if refunded
                .cmp_amount(&captured)
                .map(|o| o.is_gt())
                .unwrap_or(true)
            {
                findings.push(format!(
                    "{payment_id}: refunded {refunded} exceeds captured {captured}"
                ));
            }
        }
    } else if payment.refunded.is_some() {
        findings.push(format!("{payment_id}: refunded without a capture"));
    }
}

fn compare_tables(
    table: &str,
    stored: &[caisse_infrastructure::SqlRow],
    replayed: &[caisse_infrastructure::SqlRow],
    findings: &mut Vec<String>,
) {
    if stored.len() != replayed.len() {
        findings.push(format!(
            "{table}: {} stored rows, {} in the replay",
            stored.len(),
            replayed.len()
        ));
        return;
    }
    for (index, (left, right)) in stored.iter().zip(replayed).enumerate() {
        if left.normalized() != right.normalized() {
            findings.push(format!(
                "{table}: row {index} differs from its replay: stored {left:?}, replayed {right:?}"
            ));
        }
    }
}

pub(crate) async fn fresh_memory_database() -> Result<Db, AppError> {
    let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(AppError::internal)?;
    // One connection: every connection to ":memory:" is a different database.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(AppError::internal)?;
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .map_err(AppError::internal)?;
    Ok(Db::Sqlite(pool))
}

#[cfg(test)]
mod tests {
    use super::RefundRemittances;

    fn credits(listed: &[(&str, &str)], named: &[(&str, &str)]) -> RefundRemittances {
        let mut credits = RefundRemittances::default();
        for (refund, remittance) in listed {
            credits
                .listed
                .entry(refund.to_string())
                .or_default()
                .push(remittance.to_string());
        }
        for (refund, remittance) in named {
            credits
                .named
                .entry(refund.to_string())
                .or_default()
                .push(remittance.to_string());
        }
        credits
    }

    fn findings(credits: &RefundRemittances) -> Vec<String> {
        let mut findings = Vec::new();
        credits.check(&mut findings);
        findings
    }

    #[test]
    fn a_refund_in_one_remittance_its_refund_remitted_names_is_clean() {
        let clean = credits(
            &[("ref_1", "rem_a")],
            &[("ref_1", "rem_a"), ("ref_2", "rem_b")],
        );
        assert_eq!(findings(&clean), Vec::<String>::new());
    }

    #[test]
    fn a_refund_in_two_remittances_or_remitted_twice_is_reported() {
        let twice = credits(
            &[("ref_1", "rem_a"), ("ref_1", "rem_b")],
            &[("ref_1", "rem_a"), ("ref_1", "rem_b")],
        );
        assert_eq!(
            findings(&twice),
            vec![
                "refund ref_1: remitted 2 times (rem_a, rem_b)".to_string(),
                "refund ref_1: listed in 2 remittances (rem_a, rem_b)".to_string(),
            ]
        );
        let elsewhere = credits(&[("ref_1", "rem_b")], &[("ref_1", "rem_a")]);
        assert_eq!(
            findings(&elsewhere),
            vec![
                "refund ref_1: listed in remittance rem_b, which its RefundRemitted does not name"
                    .to_string()
            ]
        );
    }
}
