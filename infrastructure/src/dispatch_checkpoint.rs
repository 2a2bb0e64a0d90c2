//! The notification dispatchers' checkpoints and leases (ADR 0013): one row
//! of `notification_dispatch` per dispatcher (`webhooks`, `emails`), the last
//! event it dispatched and, while a pass sends, how long the pass holds the
//! log. Every move is conditional on the checkpoint the pass started from, so
//! two processes never both record a pass.

use caisse_application::ports::LogPosition;
use caisse_application::AppError;

use crate::sql::{Db, SqlValue, Tx};

/// How long a pass keeps the log to itself: what a process that dies
/// mid-pass delays the next pass by.
pub const LEASE_SECONDS: i64 = 300;

/// After this long into a pass, what it has not attempted yet is queued for
/// the retry loop instead: with one 15 s timeout at most after it, a pass
/// ends well within its lease whatever the receivers do.
pub const SENDING_MAX: std::time::Duration = std::time::Duration::from_secs(120);

/// The frame of a dispatch pass from `from` to `to`. With nothing to send
/// (`empty`), it only moves the checkpoint. Otherwise it leases the log to
/// the pass until `now` + `LEASE_SECONDS`, runs `send_and_record` (which
/// ends with `commit_pass`), and gives the lease back at once if that fails.
/// None: another pass holds the log, and nothing was sent.
pub async fn run_pass<R, F>(
    db: &Db,
    name: &str,
    (from, to): (LogPosition, LogPosition),
    now: chrono::DateTime<chrono::Utc>,
    empty: bool,
    send_and_record: F,
) -> Result<Option<R>, AppError>
where
    R: Default,
    F: std::future::Future<Output = Result<Option<R>, AppError>>,
{
    let now_text = crate::time::timestamp_text(now);
    if empty {
        let moved = advance(db, name, from, to, &now_text).await?;
        return Ok(moved.then(R::default));
    }
    let until = crate::time::timestamp_text(now + chrono::Duration::seconds(LEASE_SECONDS));
    if !lease(db, name, from, &now_text, &until).await? {
        return Ok(None);
    }
    let outcome = send_and_record.await;
    if outcome.is_err() {
        // Nothing recorded: let the next pass start over at once rather
        // than after the lease.
        let _ = release(db, name, from).await;
    }
    outcome
}

/// The last event the dispatcher `name` dispatched.
pub async fn read(db: &Db, name: &str) -> Result<LogPosition, AppError> {
    let row = db
        .fetch_optional(
            "SELECT tx_id, global_position FROM notification_dispatch WHERE name = $1",
            &[name.into()],
        )
        .await?
        .ok_or_else(|| {
            AppError::internal(format!(
                "notification_dispatch has no row {name} (migration 0016)"
            ))
        })?;
    Ok(LogPosition {
        tx_id: row.int("tx_id") as u64,
        global_position: row.int("global_position"),
    })
}

fn at(name: &str, position: LogPosition) -> [SqlValue; 3] {
    [
        name.into(),
        (position.tx_id as i64).into(),
        position.global_position.into(),
    ]
}

/// Leases the log to this pass until `until`, if the checkpoint is still
/// `from` and no other pass holds a lease running at `now`.
pub async fn lease(
    db: &Db,
    name: &str,
    from: LogPosition,
    now: &str,
    until: &str,
) -> Result<bool, AppError> {
    let leased = db
        .execute(
            "UPDATE notification_dispatch SET lease_until = $5
              WHERE name = $1 AND tx_id = $2 AND global_position = $3
                AND (lease_until IS NULL OR lease_until < $4)",
            &[at(name, from).as_slice(), &[now.into(), until.into()]].concat(),
        )
        .await?;
    Ok(leased == 1)
}

/// Gives the lease of a pass that failed back at once.
pub async fn release(db: &Db, name: &str, from: LogPosition) -> Result<(), AppError> {
    db.execute(
        "UPDATE notification_dispatch SET lease_until = NULL
          WHERE name = $1 AND tx_id = $2 AND global_position = $3",
        &at(name, from),
    )
    .await?;
    Ok(())
}

/// Moves the checkpoint of a pass that had nothing to send from `from` to
/// `to`, unless another pass holds a running lease or moved it first.
pub async fn advance(
    db: &Db,
    name: &str,
    from: LogPosition,
    to: LogPosition,
    now: &str,
) -> Result<bool, AppError> {
    let moved = db
        .execute(
            "UPDATE notification_dispatch SET tx_id = $5, global_position = $6, updated_at = $4
              WHERE name = $1 AND tx_id = $2 AND global_position = $3
                AND (lease_until IS NULL OR lease_until < $4)",
            &[
                at(name, from).as_slice(),
                &[
                    now.into(),
                    (to.tx_id as i64).into(),
                    to.global_position.into(),
                ],
            ]
            .concat(),
        )
        .await?;
    Ok(moved == 1)
}

/// In a pass's transaction: moves the checkpoint from `from` to `to` and
/// releases the lease. False if the checkpoint is no longer `from` (the
/// lease ran out and another pass took over): the caller rolls back.
pub async fn commit_pass(
    tx: &mut Tx,
    name: &str,
    from: LogPosition,
    to: LogPosition,
    now: &str,
) -> Result<bool, AppError> {
    let moved = tx
        .execute(
            "UPDATE notification_dispatch SET tx_id = $4, global_position = $5,
                    lease_until = NULL, updated_at = $6
              WHERE name = $1 AND tx_id = $2 AND global_position = $3",
            &[
                at(name, from).as_slice(),
                &[
                    (to.tx_id as i64).into(),
                    to.global_position.into(),
                    now.into(),
                ],
            ]
            .concat(),
        )
        .await?;
    Ok(moved == 1)
}
