//! GraphQL for e-mail notifications (issue 5, NT-1, NT-2): a shop's merchant
//! addresses and the event types they receive, and the e-mail outbox with
//! each e-mail's state.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use caisse_application::notifications::MerchantEmailsInput;
use caisse_domain::notification::{ShopNotifications, EMAIL_EVENT_TYPES, LANGUAGES};
use caisse_infrastructure::mailer::EmailRow;
use caisse_projections::notifications::{merchant_email_settings, NotificationSettingsRow};

use crate::errors::{app_error, bad_input};
use crate::graphql::mutation::context;
use crate::graphql::query::{request, state};
use crate::graphql::risk::caller_shop;

#[derive(Default)]
pub struct NotificationQuery;

#[derive(Default)]
pub struct NotificationMutation;

/// Who is told of a shop's payments by e-mail, and how the e-mails look.
#[derive(SimpleObject)]
pub struct MerchantEmailSettings {
    pub shop_id: String,
    pub addresses: Vec<String>,
    /// Event types e-mailed to the addresses; `*` for all.
    pub event_types: Vec<String>,
    /// Shown in every e-mail of the shop (default: the shop's name).
    pub shop_display_name: Option<String>,
    /// An https URL, shown as the logo of the HTML e-mails.
    pub logo_url: Option<String>,
    /// The language of the merchant's e-mails (`emailLanguages`).
    pub language: String,
    pub updated_at: Option<String>,
}

impl From<NotificationSettingsRow> for MerchantEmailSettings {
    fn from(row: NotificationSettingsRow) -> Self {
        MerchantEmailSettings {
            shop_id: row.shop_id,
            addresses: row.addresses,
            event_types: row.event_types,
            shop_display_name: row.shop_display_name,
            logo_url: row.logo_url,
            language: row.language,
            updated_at: Some(row.updated_at),
        }
    }
}

impl From<ShopNotifications> for MerchantEmailSettings {
    fn from(settings: ShopNotifications) -> Self {
        MerchantEmailSettings {
            shop_id: settings.shop_id.map(|s| s.to_string()).unwrap_or_default(),
            addresses: settings.addresses,
            event_types: settings.event_types,
            shop_display_name: settings.shop_display_name,
            logo_url: settings.logo_url,
            language: settings.language,
            updated_at: None,
        }
    }
}

#[derive(InputObject)]
pub struct ConfigureMerchantEmailsInput {
    pub shop_id: ID,
    /// 1 to 10 addresses; replaces the previous list.
    pub addresses: Vec<String>,
    /// Among `emailEventTypes`, or `["*"]`.
    pub event_types: Vec<String>,
    pub shop_display_name: Option<String>,
    /// https only.
    pub logo_url: Option<String>,
    /// The language of the merchant's e-mails, one of `emailLanguages`
    /// (`fr` when absent).
    pub language: Option<String>,
}

/// One e-mail of the outbox.
#[derive(SimpleObject)]
pub struct OutboxEmail {
    pub id: String,
    pub recipient: String,
    /// MERCHANT or BUYER.
    pub role: String,
    /// fr, en, de, es, it, nl, pt or sv.
    pub language: String,
    pub event_type: String,
    pub subject: String,
    /// The payment it is about.
    pub payment_id: String,
    /// PENDING, SENT or FAILED (the retry schedule ran out).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

impl From<EmailRow> for OutboxEmail {
    fn from(row: EmailRow) -> Self {
        OutboxEmail {
            id: row.email_id,
            recipient: row.recipient,
            role: row.role,
            language: row.language,
            event_type: row.event_type,
            subject: row.subject,
            payment_id: row.subject_id,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            created_at: row.created_at,
            sent_at: row.sent_at,
        }
    }
}

/// Largest page of the outbox.
const OUTBOX_PAGE_MAX: i32 = 200;

#[Object]
impl NotificationQuery {
    /// The shop's merchant e-mail settings; null before any were configured.
    async fn merchant_email_settings(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
    ) -> async_graphql::Result<Option<MerchantEmailSettings>> {
        let shop_id = caller_shop(ctx, &shop_id)?;
        Ok(merchant_email_settings(state(ctx)?.db(), shop_id)
            .await
            .map_err(app_error)?
            .map(MerchantEmailSettings::from))
    }

    /// The shop's e-mails in the caller's mode, newest first.
    async fn email_outbox(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        #[graphql(desc = "PENDING, SENT or FAILED")] status: Option<String>,
        #[graphql(desc = "Page size, 1 to 200 (default 50)")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<OutboxEmail>> {
        let shop_id = caller_shop(ctx, &shop_id)?;
        let mode = request(ctx)?.caller.mode;
        if let Some(status) = &status {
            if !["PENDING", "SENT", "FAILED"].contains(&status.as_str()) {
                return Err(bad_input("status", "PENDING, SENT or FAILED"));
            }
        }
        let first = first.unwrap_or(50);
        if !(1..=OUTBOX_PAGE_MAX).contains(&first) {
            return Err(bad_input(
                "first",
                format!("must be between 1 and {OUTBOX_PAGE_MAX}"),
            ));
        }
        Ok(state(ctx)?
            .email_deliverer
            .emails(
                &shop_id.to_string(),
                mode.as_str(),
                status.as_deref(),
                first as usize,
            )
            .await
            .map_err(app_error)?
            .into_iter()
            .map(OutboxEmail::from)
            .collect())
    }

    /// Every event type a merchant address can receive.
    async fn email_event_types(&self) -> Vec<String> {
        EMAIL_EVENT_TYPES.iter().map(|t| t.to_string()).collect()
    }

    /// The languages of the e-mails (`buyerLanguage` of a payment).
    async fn email_languages(&self) -> Vec<String> {
        LANGUAGES.iter().map(|l| l.to_uppercase()).collect()
    }
}

#[Object]
impl NotificationMutation {
    /// Sets who is e-mailed about the shop's payments, for which event
    /// types, and the name and logo of the shop's e-mails (replaces the
    /// previous settings).
    async fn configure_merchant_emails(
        &self,
        ctx: &Context<'_>,
        input: ConfigureMerchantEmailsInput,
    ) -> async_graphql::Result<MerchantEmailSettings> {
        let shop_id = caller_shop(ctx, &input.shop_id)?;
        let settings = state(ctx)?
            .notifications
            .configure_merchant_emails(
                &context(ctx)?,
                shop_id,
                MerchantEmailsInput {
                    addresses: input.addresses,
                    event_types: input.event_types,
                    shop_display_name: input.shop_display_name,
                    logo_url: input.logo_url,
                    language: input.language,
                },
            )
            .await
            .map_err(app_error)?;
        Ok(settings.into())
    }
}
