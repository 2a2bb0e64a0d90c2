//! The e-mail sender (issue 5, NT-1, NT-2): sends the e-mails the dispatcher
//! finds in the log at once and writes them to the outbox (`email_outbox`)
//! already attempted, one transaction per pass (ADR 0013); then works the
//! outbox's retries through — due e-mails, each claimed by one process, sent
//! over SMTP with lettre (text and HTML as
//! `multipart/alternative`) or, in development, written to
//! `<data_dir>/mail/<email_id>.eml`; failures retried after 1 min, 5 min,
//! 30 min, 2 h, 6 h and 24 h, then FAILED.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use caisse_application::ports::Clock;
use caisse_application::AppError;
use futures::StreamExt;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, MailMode, SmtpTls};
use crate::dispatch_checkpoint;
use crate::sql::{bind_list, insert_rows, update_rows, Db, SqlRow, SqlValue};
use crate::time::timestamp_text;

/// Delays before the 2nd, 3rd… attempt; FAILED after the last.
pub const RETRY_SCHEDULE: [Duration; 6] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(24 * 3600),
];

/// How long a claimed e-mail stays away from other senders while sent: what
/// a process that dies mid-send delays its e-mails by.
const CLAIM_LEASE_SECONDS: i64 = 300;
/// E-mails claimed together, sent, then recorded together: at most
/// `CLAIM_CHUNK / SEND_CONCURRENCY` SMTP timeouts (one minute), well within
/// the lease. Large enough that under load a pass is one chunk: two write
/// transactions beside the payments' own.
const CLAIM_CHUNK: usize = 64;
/// E-mails one process sends at the same time, over as many pooled SMTP
/// connections. Each e-mail on a connection takes at least a delayed-ACK
/// round (about 40 ms on Linux: lettre writes the body and its final dot
/// separately), so throughput comes from parallel connections: 16 of them
/// carry about 400 e-mails a second.
const SEND_CONCURRENCY: usize = 16;
/// Longest an SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest error text kept on the row.
const ERROR_LENGTH_MAX: usize = 500;

/// An e-mail's rendered content, kept apart from its sending state.
struct Bodies {
    text: String,
    html: String,
}

/// The e-mail dispatcher's row in `notification_dispatch`.
const DISPATCHER: &str = "emails";

/// E-mails per INSERT of a dispatch pass (18 parameters each).
const DISPATCH_ROWS_PER_INSERT: usize = 50;

/// An e-mail found in the log by the dispatcher (ADR 0013), rendered, before
/// its first attempt: not yet a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    pub email_id: String,
    /// One e-mail per event, role and address: a pass sent again inserts
    /// nothing twice.
    pub dedup_key: String,
    pub shop_id: String,
    pub mode: String,
    pub recipient: String,
    /// MERCHANT or BUYER.
    pub role: String,
    pub language: String,
    pub event_type: String,
    pub subject: String,
    /// The payment (or endpoint) the e-mail is about.
    pub subject_id: String,
    pub position: caisse_application::ports::LogPosition,
    /// The event's instant: the e-mail's creation, and when a queued one
    /// falls due.
    pub created_at: String,
    pub text_body: String,
    pub html_body: String,
}

/// The TLS side of `starttls` and `tls`: the server's certificate is checked
/// for `host` against lettre's built-in roots (webpki-roots, Mozilla's), plus
/// every certificate of `ca_file` (`[mail] smtp_ca_file`) when given.
fn tls_parameters(host: &str, ca_file: Option<&Path>) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(host.to_string());
    let Some(path) = ca_file else {
        return builder
            .build()
            .map_err(|error| anyhow::anyhow!("mail: TLS for {host}: {error}"));
    };
    let invalid = |reason: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "mail.smtp_ca_file (CAISSE_MAIL_SMTP_CA_FILE) {}: {reason}",
            path.display()
        )
    };
    let bytes = std::fs::read(path).map_err(|error| invalid(&error))?;
    let text = String::from_utf8_lossy(&bytes);
    let blocks = pem_certificates(&text).map_err(|reason| invalid(&reason))?;
    if blocks.is_empty() {
        return Err(invalid(
            &"no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ));
    }
    for (index, block) in blocks.iter().enumerate() {
        let certificate = Certificate::from_pem(block.as_bytes())
            .map_err(|error| invalid(&format!("certificate {}: {error}", index + 1)))?;
        builder = builder.add_root_certificate(certificate);
    }
    // Building parses each certificate into a trust anchor: DER that is no
    // certificate fails here, at startup.
    builder.build().map_err(|error| invalid(&error))
}

/// The `CERTIFICATE` blocks of a PEM text, each with its BEGIN and END lines;
/// other blocks (a key…) and text around them are skipped.
fn pem_certificates(text: &str) -> Result<Vec<&str>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else {
            return Err(format!("certificate {} has no END line", blocks.len() + 1));
        };
        let end = start + length + END.len();
        blocks.push(&rest[start..end]);
        rest = &rest[end..];
    }
    Ok(blocks)
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EmailRun {
    pub sent: usize,
    /// Failed attempts that will be retried.
    pub retrying: usize,
    /// E-mails given up after the whole schedule.
    pub failed: usize,
}

impl EmailRun {
    /// Adds another pass's counts to this one's.
    pub fn absorb(&mut self, other: EmailRun) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
    }
}

/// One e-mail as GraphQL shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRow {
    pub email_id: String,
    pub shop_id: String,
    pub mode: String,
    pub recipient: String,
    /// MERCHANT or BUYER.
    pub role: String,
    pub language: String,
    pub event_type: String,
    pub subject: String,
    pub subject_id: String,
    /// PENDING, SENT or FAILED.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

impl EmailRow {
    fn from_row(row: &SqlRow) -> Self {
        EmailRow {
            email_id: row.text("email_id"),
            shop_id: row.text("shop_id"),
            mode: row.text("mode"),
            recipient: row.text("recipient"),
            role: row.text("role"),
            language: row.text("language"),
            event_type: row.text("event_type"),
            subject: row.text("subject"),
            subject_id: row.text("subject_id"),
            status: row.text("status"),
            attempts: row.int("attempts"),
            next_attempt_at: row.opt_text("next_attempt_at"),
            last_error: row.opt_text("last_error"),
            created_at: row.text("created_at"),
            sent_at: row.opt_text("sent_at"),
        }
    }
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Directory(PathBuf),
}

pub struct EmailDeliverer {
    db: Db,
    transport: Transport,
    from: Mailbox,
    clock: Arc<dyn Clock>,
    /// One pass at a time in this process (the claim covers the others).
    pass: tokio::sync::Mutex<()>,
}

impl EmailDeliverer {
    /// The sender of `[mail]`; `data_dir` holds `mail/` in directory mode.
    pub fn new(
        db: Db,
        config: &MailConfig,
        data_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|error| anyhow::anyhow!("mail.from {:?}: {error}", config.from))?;
        let transport = match config.mode {
            MailMode::Directory => Transport::Directory(data_dir.join("mail")),
            MailMode::Smtp => {
                let host = config.smtp_host.trim();
                let ca_file = config.smtp_ca_file.as_deref();
                // STARTTLS is required, never opportunistic: without it nothing
                // (credentials, message) is sent.
                let tls = match config.smtp_tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::Starttls => Tls::Required(tls_parameters(host, ca_file)?),
                    SmtpTls::Tls => Tls::Wrapper(tls_parameters(host, ca_file)?),
                };
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .tls(tls)
                    .port(config.smtp_port)
                    .timeout(Some(SMTP_TIMEOUT));
                if let (Some(username), Some(password)) =
                    (&config.smtp_username, &config.smtp_password)
                {
                    builder = builder.credentials(Credentials::new(
                        username.clone(),
                        password.expose().to_string(),
                    ));
                }
                // As many connections as sends at a time, kept between passes.
                builder = builder.pool_config(PoolConfig::new().max_size(SEND_CONCURRENCY as u32));
                Transport::Smtp(builder.build())
            }
        };
        Ok(EmailDeliverer {
            db,
            transport,
            from,
            clock,
            pass: tokio::sync::Mutex::new(()),
        })
    }

    /// Attempts every due e-mail (at most `limit`), soonest first.
    pub async fn run_due(&self, limit: usize) -> Result<EmailRun, AppError> {
        let _pass = self.pass.lock().await;
        let now = self.clock.now();
        let due = self
            .db
            .fetch_all(
                "SELECT email_id FROM email_outbox
                  WHERE status = 'PENDING' AND next_attempt_at <= $1
                  ORDER BY next_attempt_at, tx_id, global_position
                  LIMIT $2",
                &[timestamp_text(now).into(), (limit as i64).into()],
            )
            .await?;
        let mut run = EmailRun::default();
        for chunk in due.chunks(CLAIM_CHUNK) {
            // Claim the chunk, reading it in the same atomic update: one
            // process wins each e-mail, the others see it moved. The lease
            // leaves it to a retry if this process dies mid-send.
            let mut params: Vec<SqlValue> = vec![
                timestamp_text(now).into(),
                timestamp_text(now + chrono::Duration::seconds(CLAIM_LEASE_SECONDS)).into(),
            ];
            let ids = bind_list(&mut params, chunk.iter().map(|row| row.text("email_id")));
            let mut claimed = self
                .db
                .fetch_all(
                    &format!(
                        "UPDATE email_outbox SET next_attempt_at = $2
                          WHERE email_id IN ({ids}) AND status = 'PENDING' AND next_attempt_at <= $1
                          RETURNING *"
                    ),
                    &params,
                )
                .await?;
            if claimed.is_empty() {
                // Another process claimed them all.
                continue;
            }
            // Soonest first, as the due query gave them.
            claimed.sort_by_key(|email| {
                let id = email.text("email_id");
                chunk.iter().position(|row| row.text("email_id") == id)
            });
            let bodies = self.bodies(&claimed).await?;
            // `SEND_CONCURRENCY` at a time, the next starting as soon as one
            // ends (results in the claimed order); no database connection is
            // held while sending.
            // (The futures are collected first: a stream over a borrowing
            // closure is not `Send` enough for the spawned sender task.)
            let sends: Vec<_> = claimed
                .iter()
                .map(|email| async {
                    let bodies = bodies
                        .get(&email.text("email_id"))
                        .ok_or("the e-mail's bodies are missing from email_bodies")?;
                    self.send(
                        &email.text("email_id"),
                        &email.text("recipient"),
                        &email.text("subject"),
                        bodies,
                    )
                    .await
                })
                .collect();
            let results: Vec<Result<(), String>> = futures::stream::iter(sends)
                .buffered(SEND_CONCURRENCY)
                .collect()
                .await;
            // Every result of the chunk in one transaction; on PostgreSQL
            // without waiting for the WAL flush: a crash loses at most these
            // records, and those e-mails go again after their lease (at least
            // once, like every notification).
            let at = timestamp_text(self.clock.now());
            let mut tx = self.db.begin_unflushed().await?;
            let mut updates = Vec::new();
            for (email, result) in claimed.iter().zip(results) {
                let email_id = email.text("email_id");
                let attempts = email.int("attempts") + 1;
                let values = attempt_state(&email_id, attempts, result, now, &at, &mut run);
                updates.push((email_id, values));
            }
            if !updates.is_empty() {
                // Every e-mail's new state in one statement.
                let (sql, params) = update_rows(
                    "email_outbox",
                    "email_id",
                    &[
                        "status",
                        "attempts",
                        "next_attempt_at",
                        "last_error",
                        "sent_at",
                    ],
                    updates,
                );
                tx.execute(&sql, &params).await?;
            }
            tx.commit().await?;
        }
        Ok(run)
    }

    /// Sends a dispatch pass's e-mails at once and records them, with the
    /// dispatcher's checkpoint, in one transaction (ADR 0013): on the happy
    /// path an e-mail is one outbox row and its bodies, written once. Like
    /// the webhooks' (`WebhookDeliverer::dispatch`): one pass at a time over
    /// all processes under the lease of the dispatcher's row, None (nothing
    /// sent) when another pass holds it; a crash before the commit sends the
    /// pass again, and `dedup_key` keeps the rows single.
    pub async fn dispatch(
        &self,
        from: caisse_application::ports::LogPosition,
        to: caisse_application::ports::LogPosition,
        emails: Vec<NewEmail>,
    ) -> Result<Option<EmailRun>, AppError> {
        dispatch_checkpoint::run_pass(
            &self.db,
            DISPATCHER,
            (from, to),
            self.clock.now(),
            emails.is_empty(),
            self.dispatch_leased(from, to, emails),
        )
        .await
    }

    /// `dispatch` once the pass holds the lease.
    async fn dispatch_leased(
        &self,
        from: caisse_application::ports::LogPosition,
        to: caisse_application::ports::LogPosition,
        emails: Vec<NewEmail>,
    ) -> Result<Option<EmailRun>, AppError> {
        let sending_ends = tokio::time::Instant::now() + dispatch_checkpoint::SENDING_MAX;
        let bodies: Vec<Bodies> = emails
            .iter()
            .map(|email| Bodies {
                text: email.text_body.clone(),
                html: email.html_body.clone(),
            })
            .collect();
        // Past the pass's sending time, the rest waits for `run_due` (None).
        let sends: Vec<_> = emails
            .iter()
            .zip(&bodies)
            .map(|(email, bodies)| async move {
                if tokio::time::Instant::now() >= sending_ends {
                    return None;
                }
                Some(
                    self.send(&email.email_id, &email.recipient, &email.subject, bodies)
                        .await,
                )
            })
            .collect();
        let results: Vec<Option<Result<(), String>>> = futures::stream::iter(sends)
            .buffered(SEND_CONCURRENCY)
            .collect()
            .await;
        let now = self.clock.now();
        let at = timestamp_text(now);
        let mut run = EmailRun::default();
        let mut rows: Vec<Vec<SqlValue>> = Vec::new();
        for (email, result) in emails.iter().zip(results) {
            let state = match result {
                Some(result) => attempt_state(&email.email_id, 1, result, now, &at, &mut run),
                None => vec![
                    "PENDING".into(),
                    0i64.into(),
                    email.created_at.clone().into(),
                    None::<String>.into(),
                    None::<String>.into(),
                ],
            };
            let mut row: Vec<SqlValue> = vec![
                email.email_id.clone().into(),
                email.dedup_key.clone().into(),
                email.shop_id.clone().into(),
                email.mode.clone().into(),
                email.recipient.clone().into(),
                email.role.clone().into(),
                email.language.clone().into(),
                email.event_type.clone().into(),
                email.subject.clone().into(),
                email.subject_id.clone().into(),
                (email.position.tx_id as i64).into(),
                email.position.global_position.into(),
                email.created_at.clone().into(),
            ];
            row.extend(state);
            rows.push(row);
        }
        let mut tx = self.db.begin_unflushed().await?;
        let inserted: std::collections::HashSet<String> = insert_rows(
            &mut tx,
            "INSERT INTO email_outbox (email_id, dedup_key, shop_id, mode, recipient, role,
                language, event_type, subject, subject_id, tx_id, global_position, created_at,
                status, attempts, next_attempt_at, last_error, sent_at)",
            "ON CONFLICT (dedup_key) DO NOTHING RETURNING email_id",
            &rows,
            DISPATCH_ROWS_PER_INSERT,
            18,
            |_| String::new(),
        )
        .await?
        .iter()
        .map(|row| row.text("email_id"))
        .collect();
        let body_rows: Vec<Vec<SqlValue>> = emails
            .into_iter()
            .filter(|email| inserted.contains(&email.email_id))
            .map(|email| {
                vec![
                    email.email_id.into(),
                    email.text_body.into(),
                    email.html_body.into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO email_bodies (email_id, text_body, html_body)",
            "",
            &body_rows,
            DISPATCH_ROWS_PER_INSERT,
            3,
            |_| String::new(),
        )
        .await?;
        if !dispatch_checkpoint::commit_pass(&mut tx, DISPATCHER, from, to, &at).await? {
            tracing::warn!("an e-mail dispatch pass outlived its lease; another pass took over");
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(run))
    }

    /// The bodies of claimed e-mails (`email_bodies`), by e-mail id.
    async fn bodies(&self, emails: &[SqlRow]) -> Result<HashMap<String, Bodies>, AppError> {
        let mut params = Vec::new();
        let ids = bind_list(
            &mut params,
            emails.iter().map(|email| email.text("email_id")),
        );
        Ok(self
            .db
            .fetch_all(
                &format!(
                    "SELECT email_id, text_body, html_body FROM email_bodies WHERE email_id IN ({ids})"
                ),
                &params,
            )
            .await?
            .iter()
            .map(|row| {
                (
                    row.text("email_id"),
                    Bodies {
                        text: row.text("text_body"),
                        html: row.text("html_body"),
                    },
                )
            })
            .collect())
    }

    /// The message of an e-mail and its bodies: text and HTML alternatives.
    fn message(
        &self,
        email_id: &str,
        recipient: &str,
        subject: &str,
        bodies: &Bodies,
    ) -> Result<Message, String> {
        let to: Mailbox = recipient
            .parse()
            .map_err(|error| format!("recipient: {error}"))?;
        let domain = self.from.email.domain().to_string();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{email_id}@{domain}>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(bodies.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(bodies.html.clone()),
                    ),
            )
            .map_err(|error| format!("message: {error}"))
    }

    async fn send(
        &self,
        email_id: &str,
        recipient: &str,
        subject: &str,
        bodies: &Bodies,
    ) -> Result<(), String> {
        let message = self.message(email_id, recipient, subject, bodies)?;
        match &self.transport {
            Transport::Smtp(transport) => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|error| format!("SMTP: {error}")),
            Transport::Directory(directory) => {
                tokio::fs::create_dir_all(directory)
                    .await
                    .map_err(|error| format!("{}: {error}", directory.display()))?;
                let path = directory.join(format!("{email_id}.eml"));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(|error| format!("{}: {error}", path.display()))
            }
        }
    }

    /// A shop's e-mails in one mode, newest first.
    pub async fn emails(
        &self,
        shop_id: &str,
        mode: &str,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EmailRow>, AppError> {
        let rows = match status {
            Some(status) => self
                .db
                .fetch_all(
                    "SELECT * FROM email_outbox WHERE shop_id = $1 AND mode = $2 AND status = $3
                          ORDER BY created_at DESC, email_id DESC LIMIT $4",
                    &[
                        shop_id.into(),
                        mode.into(),
                        status.into(),
                        (limit as i64).into(),
                    ],
                )
                .await?,
            None => {
                self.db
                    .fetch_all(
                        "SELECT * FROM email_outbox WHERE shop_id = $1 AND mode = $2
                          ORDER BY created_at DESC, email_id DESC LIMIT $3",
                        &[shop_id.into(), mode.into(), (limit as i64).into()],
                    )
                    .await?
            }
        };
        Ok(rows.iter().map(EmailRow::from_row).collect())
    }
}

/// An e-mail's state after its `attempts`-th attempt, as the columns
/// `status, attempts, next_attempt_at, last_error, sent_at`; counted in `run`.
fn attempt_state(
    email_id: &str,
    attempts: i64,
    result: Result<(), String>,
    now: chrono::DateTime<chrono::Utc>,
    at: &str,
    run: &mut EmailRun,
) -> Vec<SqlValue> {
    match result {
        Ok(()) => {
            run.sent += 1;
            vec![
                "SENT".into(),
                attempts.into(),
                None::<String>.into(),
                None::<String>.into(),
                at.into(),
            ]
        }
        Err(error) => {
            let error: String = error.chars().take(ERROR_LENGTH_MAX).collect();
            tracing::warn!(%email_id, attempts, %error, "e-mail not sent");
            let (status, next) = match RETRY_SCHEDULE.get(attempts as usize - 1) {
                Some(delay) => {
                    run.retrying += 1;
                    let delay = chrono::Duration::from_std(*delay)
                        .unwrap_or_else(|_| chrono::Duration::hours(24));
                    ("PENDING", Some(timestamp_text(now + delay)))
                }
                None => {
                    run.failed += 1;
                    ("FAILED", None)
                }
            };
            vec![
                status.into(),
                attempts.into(),
                next.into(),
                Some(error).into(),
                None::<String>.into(),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &[u8]) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "caisse-smtp-ca-{}.pem",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn ca_file_error(path: &Path) -> String {
        match tls_parameters("smtp.example.com", Some(path)) {
            Ok(_) => panic!("{} accepted", path.display()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn without_a_ca_file_the_built_in_roots_are_used() {
        let parameters = tls_parameters("smtp.example.com", None).unwrap();
        assert_eq!(parameters.domain(), "smtp.example.com");
    }

    #[test]
    fn a_missing_or_invalid_ca_file_is_refused_by_name() {
        let missing = std::env::temp_dir().join("caisse-no-such-ca.pem");
        let error = ca_file_error(&missing);
        assert!(error.starts_with("mail.smtp_ca_file"), "{error}");
        assert!(error.contains(&missing.display().to_string()), "{error}");

        for (contents, expected) in [
            (&b"not a certificate"[..], "no PEM certificate"),
            (&[0x30, 0x82, 0x01, 0x0a, 0xff][..], "no PEM certificate"),
            (
                &b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"[..],
                "certificate 1",
            ),
            (
                // Valid base64, but no X.509 certificate inside.
                &b"-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n"[..],
                "mail.smtp_ca_file",
            ),
            (
                &b"-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n"[..],
                "no END line",
            ),
        ] {
            let file = TempFile::new(contents);
            let error = ca_file_error(&file.0);
            assert!(error.starts_with("mail.smtp_ca_file"), "{error}");
            assert!(error.contains(&file.0.display().to_string()), "{error}");
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }

    #[test]
    fn pem_blocks_other_than_certificates_are_skipped() {
        let text = "# relay\n-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n\
                    -----BEGIN CERTIFICATE-----\nAQ==\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nAg==\n-----END CERTIFICATE-----\n";
        let blocks = pem_certificates(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].contains("Ag=="));
    }

    #[test]
    fn the_schedule_is_one_minute_to_a_day() {
        assert_eq!(RETRY_SCHEDULE[0], Duration::from_secs(60));
        assert_eq!(RETRY_SCHEDULE[5], Duration::from_secs(86_400));
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert!(total > Duration::from_secs(32 * 3600), "{total:?}");
    }
}
