//! The e-mail dispatcher (issue 5, NT-1, NT-2; ADR 0013): reads the global
//! log after its own checkpoint (`notification_dispatch`, row `emails`) and
//! turns a payment's authorisation, refusal, refund, cancellation and capture
//! into e-mails — one per merchant address of the shop that receives the type
//! (`notification_settings_view`), in the shop's merchant language, and, for
//! `payment.authorised` (at once or deferred), the buyer's confirmation when
//! the payment gave a buyer e-mail, in the payment's buyer language (French
//! when absent) — and a webhook endpoint disabled after persistent failure
//! into an alert to the merchant's addresses. Rendered here; the mailer
//! (`caisse_infrastructure::mailer`) sends them at once and writes them to
//! `email_outbox` already attempted, one transaction per pass, outside the
//! projector's transaction.
//!
//! It reads the views, never ahead of them (`dispatch::pass_events`). What it
//! reads of a payment never changes after its first event (shop, mode,
//! currency, order reference, card, buyer), and every e-mail event carries
//! its own amount, so a view read later tells the same. The settings are the
//! shop's when the event is dispatched, if configured before the event. A
//! pass sent again inserts nothing twice (one row per event, role and
//! address: `dedup_key`).

use std::collections::HashMap;

use std::sync::Arc;

use caisse_application::AppError;
use caisse_domain::notification::{
    receives, ShopNotifications, DEFAULT_BUYER_LANGUAGE, EMAIL_EVENT_TYPES,
};
use caisse_domain::payment::{Payment, PaymentEvent};
use caisse_domain::webhook::{DisableReason, WebhookEndpoint, WebhookEvent};
use caisse_infrastructure::event_log::{EventLogReader, LoggedEvent};
use caisse_infrastructure::mailer::{EmailDeliverer, EmailRun, NewEmail};
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::Db;
use cqrs_es::Aggregate;

use crate::dispatch::{pass_events, PassEvents};
use crate::email_templates::{
    buyer_confirmation, merchant_notification, PaymentFacts, RenderedEmail,
};
use crate::money::{milli_to_string, to_milli};
use crate::notifications::NotificationSettingsRow;
use crate::projector::decode;
use crate::webhook_dispatch::payment_event_type;

/// A pass stops after the event that brings it this many e-mails.
const PASS_EMAILS_MAX: usize = 256;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EmailPass {
    /// Events of the log the pass covered.
    pub events: usize,
    /// Its e-mails' first attempts.
    pub run: EmailRun,
    /// It stopped at one of its limits: more may be waiting.
    pub full: bool,
}

pub struct EmailDispatcher {
    db: Db,
    log: EventLogReader,
    deliverer: Arc<EmailDeliverer>,
}

/// Each shop's settings as a pass read them.
type SettingsCache = HashMap<String, Option<NotificationSettingsRow>>;

impl EmailDispatcher {
    pub fn new(db: Db, deliverer: Arc<EmailDeliverer>) -> Self {
        EmailDispatcher {
            log: EventLogReader::new(db.clone()),
            db,
            deliverer,
        }
    }

    /// Dispatches the events committed since the last pass (some of them, up
    /// to the pass's limits): renders and sends their e-mails and records
    /// them. Another process's pass under way makes this one a no-op.
    pub async fn run_pass(&self) -> Result<EmailPass, AppError> {
        // The views it reads: payments, shops, settings, endpoints.
        let PassEvents { from, events, full } = pass_events(
            &self.db,
            &self.log,
            "emails",
            &["payments", "accounts", "notifications", "webhooks"],
        )
        .await?;
        let Some(last) = events.last() else {
            return Ok(EmailPass::default());
        };
        let mut to = last.position;
        let mut settings = SettingsCache::new();
        let mut emails = Vec::new();
        let mut covered = events.len();
        let mut capped = false;
        for (index, event) in events.iter().enumerate() {
            self.apply(event, &mut settings, &mut emails).await?;
            if emails.len() >= PASS_EMAILS_MAX && index + 1 < events.len() {
                to = event.position;
                covered = index + 1;
                capped = true;
                break;
            }
        }
        match self.deliverer.dispatch(from, to, emails).await? {
            Some(run) => Ok(EmailPass {
                events: covered,
                run,
                full: full || capped,
            }),
            // Another process's pass holds the log: it goes on, not this one.
            None => Ok(EmailPass::default()),
        }
    }

    /// The last event dispatched.
    pub async fn checkpoint(&self) -> Result<caisse_application::ports::LogPosition, AppError> {
        caisse_infrastructure::dispatch_checkpoint::read(&self.db, "emails").await
    }

    /// A shop's settings as the view holds them now, read once per pass.
    async fn settings(
        &self,
        cache: &mut SettingsCache,
        shop_id: &str,
    ) -> Result<Option<NotificationSettingsRow>, AppError> {
        if let Some(settings) = cache.get(shop_id) {
            return Ok(settings.clone());
        }
        let settings = self
            .db
            .fetch_optional(
                "SELECT * FROM notification_settings_view WHERE shop_id = $1",
                &[shop_id.into()],
            )
            .await?
            .as_ref()
            .map(NotificationSettingsRow::from_row);
        cache.insert(shop_id.to_string(), settings.clone());
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
    /// Adds the e-mail to the pass's.
    fn queue(
        &self,
        emails: &mut Vec<NewEmail>,
        role: &str,
        recipient: &str,
        language: &str,
        email: RenderedEmail,
    ) {
        emails.push(NewEmail {
            email_id: format!("eml_{}", uuid::Uuid::now_v7().simple()),
            dedup_key: format!(
                "{}/{}/{role}/{}",
                self.event.aggregate_id,
                self.event.sequence,
                recipient.to_ascii_lowercase()
            ),
            shop_id: self.shop_id.to_string(),
            mode: self.mode.to_string(),
            recipient: recipient.to_string(),
            role: role.to_string(),
            language: language.to_string(),
            event_type: self.event_type.to_string(),
            subject: email.subject,
            subject_id: self.event.aggregate_id.clone(),
            position: self.event.position,
            created_at: self.created_at.to_string(),
            text_body: email.text,
            html_body: email.html,
        });
    }
}

impl EmailDispatcher {
    /// The e-mails of one event, added to `emails`.
    async fn apply(
        &self,
        event: &LoggedEvent,
        settings_cache: &mut SettingsCache,
        emails: &mut Vec<NewEmail>,
    ) -> Result<(), AppError> {
        if event.aggregate_type == ShopNotifications::TYPE {
            // The settings changed: read them again (the view is at least as
            // new as this event).
            settings_cache.clear();
            return Ok(());
        }
        if event.aggregate_type == WebhookEndpoint::TYPE {
            return self.endpoint_disabled(event, settings_cache, emails).await;
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
        let Some(row) = self
            .db
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
            .settings(settings_cache, &shop_id)
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
        let amount = payment_event
            .amount()
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
        if let Some(settings) = settings.as_ref().filter(|_| !merchant_addresses.is_empty()) {
            let language = &settings.language;
            for address in &merchant_addresses {
                if let Some(email) = merchant_notification(language, event_type, &facts) {
                    queued.queue(emails, "MERCHANT", address, language, email);
                }
            }
        }
        if let Some((email, language)) = buyer {
            let rendered = buyer_confirmation(&language, &facts);
            queued.queue(emails, "BUYER", &email, &language, rendered);
        }
        Ok(())
    }
}

impl EmailDispatcher {
    /// The merchant's addresses are told when a webhook endpoint of theirs is
    /// disabled after persistent failure (whatever event types they receive).
    async fn endpoint_disabled(
        &self,
        event: &LoggedEvent,
        settings_cache: &mut SettingsCache,
        emails: &mut Vec<NewEmail>,
    ) -> Result<(), AppError> {
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
        let Some(endpoint) = self
            .db
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
        let Some(settings) = self.settings(settings_cache, &shop_id).await? else {
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
            queued.queue(emails, "MERCHANT", address, &settings.language, email);
        }
        Ok(())
    }
}
