//! E-mail notification settings as use cases (issue 5, NT-1): a shop's
//! merchant addresses, the event types they receive, and the name and logo
//! shown in the shop's e-mails — one event of the `ShopNotifications`
//! aggregate each time. The e-mails themselves are written by the
//! `email_outbox` projection and sent by the mailer.

use std::sync::Arc;

use caisse_domain::notification::{NotificationCommand, ShopNotifications};
use caisse_domain::ShopId;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::CommandRunner;
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ports::{Clock, EventLog, ProjectionWaiter};

/// What `configureMerchantEmails` asks for.
pub struct MerchantEmailsInput {
    pub addresses: Vec<String>,
    pub event_types: Vec<String>,
    pub shop_display_name: Option<String>,
    pub logo_url: Option<String>,
    /// The language of the merchant's e-mails (French when absent).
    pub language: Option<String>,
}

pub struct NotificationService<R>
where
    R: PersistedEventRepository,
{
    runner: CommandRunner<R, ShopNotifications>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
}

impl<R> NotificationService<R>
where
    R: PersistedEventRepository,
{
    pub fn new(
        repository: R,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        NotificationService {
            runner: CommandRunner::new(repository),
            clock,
            log,
            waiter,
        }
    }

    /// Replaces the shop's merchant e-mail settings; answers them as recorded
    /// (trimmed, deduplicated, sorted), once its view has them.
    pub async fn configure_merchant_emails(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        input: MerchantEmailsInput,
    ) -> Result<ShopNotifications, AppError> {
        if !context.scope.shop_ids.contains(&shop_id) {
            return Err(caisse_domain::merchant::MerchantError::ShopNotFound.into());
        }
        let aggregate_id = ShopNotifications::aggregate_id(shop_id);
        let command = NotificationCommand::ConfigureMerchantEmails {
            shop_id,
            addresses: input.addresses,
            event_types: input.event_types,
            shop_display_name: input.shop_display_name,
            logo_url: input.logo_url,
            language: input.language,
            occurred_at: self.clock.now(),
        };
        let executed = self
            .runner
            .execute(&aggregate_id, command, context.metadata(false))
            .await?;
        if !executed.events.is_empty() {
            let position = self
                .log
                .position_of(
                    ShopNotifications::TYPE,
                    &aggregate_id,
                    executed.last_sequence(),
                )
                .await?;
            self.waiter.wait_for(position).await;
        }
        Ok(executed.aggregate)
    }
}
