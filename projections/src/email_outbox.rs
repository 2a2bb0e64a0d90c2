//! The `email_outbox` projection (issue 5, NT-1, NT-2): turns a payment's
//! authorisation, refusal, refund, cancellation and capture into e-mails —
//! one per merchant address of the shop that receives the type
//! (`notification_settings_view`), in the shop's merchant language, and, for
//! `payment.authorised` (at once or deferred), the buyer's confirmation when
//! the payment gave a buyer e-mail, in the payment's buyer language (French
//! when absent). Rendered here, queued in
//! `email_outbox`, sent by the mailer (`caisse_infrastructure::mailer`).
//!
//! Like the webhook deliveries, the outbox is state, not a view: `tables()` is
//! empty so a rebuild does not empty it, a replay inserts nothing twice (one
//! row per event, role and address: `dedup_key`), and the merchant is never
//! e-mailed about events older than the shop's last configuration.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::notification::{
    receives, ShopNotifications, DEFAULT_BUYER_LANGUAGE, EMAIL_EVENT_TYPES,
};
use caisse_domain::payment::{Payment, PaymentEvent};
use caisse_domain::webhook::{DisableReason, WebhookEndpoint, WebhookEvent};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::{SqlValue, Tx};
use cqrs_es::Aggregate;

use crate::email_templates::{
    buyer_confirmation, merchant_notification, PaymentFacts, RenderedEmail,
};
use crate::money::{milli_to_string, to_milli};
use crate::notifications::NotificationSettingsRow;
use crate::projector::{decode, insert_rows, Projection};
use crate::webhook_dispatch::{event_amount, payment_event_type};

/// The columns of a queued e-mail's outbox row, in the INSERT's order.
const COLUMNS_PER_ROW: usize = 13;
/// E-mails per INSERT statement.
const ROWS_PER_INSERT: usize = 50;

#[derive(Default)]
pub struct EmailOutboxProjection {
    batch: std::sync::Mutex<Batch>,
}

/// What one projector batch keeps between its events: each shop's settings
/// it met (read once; dropped when a settings event passes, since the view
/// has just changed in this transaction), and the e-mails to insert at its
/// end.
#[derive(Default)]
struct Batch {
    settings: HashMap<String, Option<NotificationSettingsRow>>,
    emails: Vec<QueuedEmail>,
}

/// One e-mail to insert: its outbox row (`COLUMNS_PER_ROW` values, the
/// sending state) and its bodies, stored apart in `email_bodies` so that
/// claiming and recording an attempt rewrite a small row, not the bodies.
struct QueuedEmail {
    email_id: String,
    row: Vec<SqlValue>,
    text_body: String,
    html_body: String,
}

impl EmailOutboxProjection {
    fn batch(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.batch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A shop's settings as the view holds them now, from this batch's cache.
    async fn settings(
        &self,
        tx: &mut Tx,
        shop_id: &str,
    ) -> Result<Option<NotificationSettingsRow>, AppError> {
        if let Some(settings) = self.batch().settings.get(shop_id) {
            return Ok(settings.clone());
        }
        let settings = tx
            .fetch_optional(
                "SELECT * FROM notification_settings_view WHERE shop_id = $1",
                &[shop_id.into()],
            )
            .await?
            .as_ref()
            .map(NotificationSettingsRow::from_row);
        self.batch()
            .settings
            .insert(shop_id.to_string(), settings.clone());
        Ok(settings)
    }
}

struct Queued<'a> {
    event: &'a LoggedEvent,
    shop_id: &'a str,
    mode: &'a str,
    event_type: &'a str,
    created_at: &'a str,
}

impl Queued<'_> {
    /// Adds the e-mail to the batch's rows, inserted at its end.
    fn queue(
        &self,
        emails: &mut Vec<QueuedEmail>,
        role: &str,
        recipient: &str,
        language: &str,
        email: RenderedEmail,
    ) {
        let dedup_key = format!(
            "{}/{}/{role}/{}",
            self.event.aggregate_id,
            self.event.sequence,
            recipient.to_ascii_lowercase()
        );
        let email_id = format!("eml_{}", uuid::Uuid::now_v7().simple());
        let row: Vec<SqlValue> = vec![
            email_id.clone().into(),
            dedup_key.into(),
            self.shop_id.into(),
            self.mode.into(),
            recipient.into(),
            role.into(),
            language.into(),
            self.event_type.into(),
            email.subject.into(),
            self.event.aggregate_id.clone().into(),
            (self.event.position.tx_id as i64).into(),
            self.event.position.global_position.into(),
            self.created_at.into(),
        ];
        emails.push(QueuedEmail {
            email_id,
            row,
            text_body: email.text,
            html_body: email.html,
        });
    }
}

#[async_trait]
impl Projection for EmailOutboxProjection {
    fn name(&self) -> &'static str {
        "email_outbox"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn begin_batch(&self) {
        *self.batch() = Batch::default();
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type == ShopNotifications::TYPE {
            // The settings view changed just before, in this transaction.
            self.batch().settings.clear();
            return Ok(());
        }
        if event.aggregate_type == WebhookEndpoint::TYPE {
            return self.endpoint_disabled(tx, event).await;
        }
        if event.aggregate_type != Payment::TYPE {
            return Ok(());
        }
        let payment_event: PaymentEvent = decode(event)?;
        let Some(event_type) = payment_event_type(&payment_event)
            .filter(|event_type| EMAIL_EVENT_TYPES.contains(event_type))
        else {
            return Ok(());
        };
        // The buyer's confirmation: the authorisation, with its details; or an
        // authorisation granted later (deferred), with the payment's buyer.
        let mut buyer = match &payment_event {
            PaymentEvent::PaymentAuthorised { details, .. } => {
                details.buyer_email.clone().map(|email| {
                    (
                        email,
                        details
                            .buyer_language
                            .clone()
                            .unwrap_or_else(|| DEFAULT_BUYER_LANGUAGE.to_string()),
                    )
                })
            }
            _ => None,
        };
        let Some(row) = tx
            .fetch_optional(
                "SELECT p.*, s.name AS shop_name FROM payments_view p
                   LEFT JOIN shops_view s ON s.shop_id = p.shop_id
                  WHERE p.payment_id = $1",
                &[event.aggregate_id.clone().into()],
            )
            .await?
        else {
            // Not in the views (archived): nobody to tell.
            return Ok(());
        };
        if let PaymentEvent::DeferredAuthorisationGranted { .. } = &payment_event {
            buyer = row.opt_text("buyer_email").map(|email| {
                (
                    email,
                    row.opt_text("buyer_language")
                        .unwrap_or_else(|| DEFAULT_BUYER_LANGUAGE.to_string()),
                )
            });
        }
        let shop_id = row.text("shop_id");
        let tx_id = event.position.tx_id as i64;
        let position = event.position.global_position;
        // Settings configured before this event (in commit order).
        let settings = self
            .settings(tx, &shop_id)
            .await?
            .filter(|settings| settings.configured < (tx_id, position));
        let merchant_addresses: Vec<String> = settings
            .as_ref()
            .filter(|s| receives(&s.event_types, event_type))
            .map(|s| s.addresses.clone())
            .unwrap_or_default();
        if buyer.is_none() && merchant_addresses.is_empty() {
            return Ok(());
        }
        let currency = row.text("currency");
        let amount = event_amount(&payment_event)
            .map(|money| to_milli(&money))
            .unwrap_or_else(|| row.int("amount_milli"));
        let amount = milli_to_string(amount, &currency);
        let order_reference = row.text("order_reference");
        let shop_name = settings
            .as_ref()
            .and_then(|s| s.shop_display_name.clone())
            .or_else(|| row.opt_text("shop_name"))
            .unwrap_or_default();
        let last_four = row.opt_text("card_last_four").filter(|l| !l.is_empty());
        let facts = PaymentFacts {
            shop_name: &shop_name,
            logo_url: settings.as_ref().and_then(|s| s.logo_url.as_deref()),
            order_reference: &order_reference,
            amount: &amount,
            currency: &currency,
            occurred_at: payment_event.occurred_at(),
            payment_id: &event.aggregate_id,
            card_last_four: last_four.as_deref(),
        };
        let mode = row.text("mode");
        // Due from the event's own instant (the injected clock's time).
        let created_at = timestamp_text(payment_event.occurred_at());
        let queued = Queued {
            event,
            shop_id: &shop_id,
            mode: &mode,
            event_type,
            created_at: &created_at,
        };
        let mut batch = self.batch();
        if let Some(settings) = settings.as_ref().filter(|_| !merchant_addresses.is_empty()) {
            let language = &settings.language;
            for address in &merchant_addresses {
                if let Some(email) = merchant_notification(language, event_type, &facts) {
                    queued.queue(&mut batch.emails, "MERCHANT", address, language, email);
                }
            }
        }
        if let Some((email, language)) = buyer {
            let rendered = buyer_confirmation(&language, &facts);
            queued.queue(&mut batch.emails, "BUYER", &email, &language, rendered);
        }
        Ok(())
    }

    /// The batch's e-mails, fifty per statement: their outbox rows, then the
    /// bodies of those inserted (a replay's e-mails are already there, under
    /// their first id, and insert nothing).
    async fn finish_batch(&self, tx: &mut Tx) -> Result<(), AppError> {
        let emails = std::mem::take(&mut self.batch().emails);
        let rows: Vec<Vec<SqlValue>> = emails.iter().map(|email| email.row.clone()).collect();
        let inserted: HashSet<String> = insert_rows(
            tx,
            "INSERT INTO email_outbox (email_id, dedup_key, shop_id, mode, recipient, role,
                language, event_type, subject, subject_id, tx_id, global_position,
                status, attempts, next_attempt_at, created_at)",
            "ON CONFLICT (dedup_key) DO NOTHING RETURNING email_id",
            &rows,
            ROWS_PER_INSERT,
            COLUMNS_PER_ROW - 1,
            |p| {
                format!(
                    "'PENDING', 0, {}, {}",
                    p(COLUMNS_PER_ROW),
                    p(COLUMNS_PER_ROW)
                )
            },
        )
        .await?
        .iter()
        .map(|row| row.text("email_id"))
        .collect();
        let bodies: Vec<Vec<SqlValue>> = emails
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
            tx,
            "INSERT INTO email_bodies (email_id, text_body, html_body)",
            "",
            &bodies,
            ROWS_PER_INSERT,
            3,
            |_| String::new(),
        )
        .await?;
        Ok(())
    }
}

impl EmailOutboxProjection {
    /// The merchant's addresses are told when a webhook endpoint of theirs is
    /// disabled after persistent failure (whatever event types they receive).
    async fn endpoint_disabled(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.event_type != "WebhookEndpointDisabled" {
            return Ok(());
        }
        let WebhookEvent::WebhookEndpointDisabled {
            reason: DisableReason::PersistentFailure,
            occurred_at,
        } = decode(event)?
        else {
            return Ok(());
        };
        let Some(endpoint) = tx
            .fetch_optional(
                "SELECT e.shop_id, e.mode, e.url, s.name AS shop_name FROM webhook_endpoints_view e
               LEFT JOIN shops_view s ON s.shop_id = e.shop_id
              WHERE e.endpoint_id = $1",
                &[event.aggregate_id.clone().into()],
            )
            .await?
        else {
            return Ok(());
        };
        let shop_id = endpoint.text("shop_id");
        let Some(settings) = self.settings(tx, &shop_id).await? else {
            return Ok(());
        };
        let shop_name = settings
            .shop_display_name
            .clone()
            .or_else(|| endpoint.opt_text("shop_name"))
            .unwrap_or_default();
        let mode = endpoint.text("mode");
        let created_at = timestamp_text(occurred_at);
        let queued = Queued {
            event,
            shop_id: &shop_id,
            mode: &mode,
            event_type: "webhook.endpoint_disabled",
            created_at: &created_at,
        };
        for address in &settings.addresses {
            let email = crate::email_templates::endpoint_disabled(
                &settings.language,
                &shop_name,
                &endpoint.text("url"),
                &event.aggregate_id,
                occurred_at,
            );
            queued.queue(
                &mut self.batch().emails,
                "MERCHANT",
                address,
                &settings.language,
                email,
            );
        }
        Ok(())
    }
}
