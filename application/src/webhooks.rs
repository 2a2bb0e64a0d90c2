//! Webhook endpoints as use cases (issue 5, RP-2, RP-3): create one with a
//! signing secret shown once, update it, rotate its secret, disable and enable
//! it — each an event of the `WebhookEndpoint` aggregate, the URL checked
//! against SSRF first.

use std::sync::Arc;

use caisse_domain::ids::WebhookEndpointId;
use caisse_domain::webhook::{DisableReason, WebhookCommand, WebhookEndpoint, WebhookError};
use caisse_domain::ShopId;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::{CommandRunner, Executed};
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ports::{Clock, EventLog, ProjectionWaiter, WebhookSecrets, WebhookUrlGuard};

/// Makes a new signing secret (`whsec_…`); the infrastructure owns the format.
pub type SecretGenerator = fn() -> String;

/// An endpoint as a mutation returns it, with its secret when just made.
pub struct EndpointResult {
    pub endpoint_id: WebhookEndpointId,
    pub endpoint: WebhookEndpoint,
    /// Shown once: at creation and at rotation.
    pub secret: Option<String>,
}

pub struct WebhookService<R>
where
    R: PersistedEventRepository,
{
    runner: CommandRunner<R, WebhookEndpoint>,
    guard: Arc<dyn WebhookUrlGuard>,
    secrets: Arc<dyn WebhookSecrets>,
    generate_secret: SecretGenerator,
    clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
}

impl<R> WebhookService<R>
where
    R: PersistedEventRepository,
{
    pub fn new(
        repository: R,
        guard: Arc<dyn WebhookUrlGuard>,
        secrets: Arc<dyn WebhookSecrets>,
        generate_secret: SecretGenerator,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        WebhookService {
            runner: CommandRunner::new(repository),
            guard,
            secrets,
            generate_secret,
            clock,
            log,
            waiter,
        }
    }

    async fn check_url(&self, url: &str) -> Result<(), AppError> {
        self.guard
            .check(url.trim())
            .await
            .map_err(|refusal| AppError::Invalid {
                field: "url",
                code: refusal.code,
                message: refusal.message,
            })
    }

    async fn run(
        &self,
        context: &RequestContext,
        endpoint_id: WebhookEndpointId,
        command: WebhookCommand,
    ) -> Result<Executed<WebhookEndpoint>, AppError> {
        let aggregate_id = endpoint_id.to_string();
        let executed = self
            .runner
            .execute(&aggregate_id, command, context.metadata(false))
            .await?;
        if !executed.events.is_empty() {
            let position = self
                .log
                .position_of(
                    WebhookEndpoint::TYPE,
                    &aggregate_id,
                    executed.last_sequence(),
                )
                .await?;
            self.waiter.wait_for(position).await;
        }
        Ok(executed)
    }

    /// The endpoint as the dispatcher sees it (no caller scope).
    pub async fn load_for_delivery(
        &self,
        endpoint_id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, AppError> {
        let endpoint = self.runner.load(&endpoint_id.to_string()).await?;
        if endpoint.exists() {
            Ok(endpoint)
        } else {
            Err(WebhookError::NotFound.into())
        }
    }

    /// Disables an endpoint whose deliveries kept failing for the whole retry
    /// schedule (an event, `PERSISTENT_FAILURE`, visible to the merchant).
    pub async fn disable_failing(&self, endpoint_id: WebhookEndpointId) -> Result<(), AppError> {
        let endpoint = self.load_for_delivery(endpoint_id).await?;
        if !endpoint.active {
            return Ok(());
        }
        let (Some(shop_id), Some(mode)) = (endpoint.shop_id, endpoint.mode) else {
            return Ok(());
        };
        let context = RequestContext::system(
            caisse_domain::payment::AccessScope::single(shop_id, mode),
            "webhook-sender",
        );
        let command = WebhookCommand::Disable {
            reason: DisableReason::PersistentFailure,
            occurred_at: self.clock.now(),
        };
        match self.run(&context, endpoint_id, command).await {
            Ok(_) => Ok(()),
            // Disabled meanwhile.
            Err(AppError::Rejected { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The endpoint if it belongs to the caller's shop and mode.
    pub async fn load(
        &self,
        context: &RequestContext,
        endpoint_id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, AppError> {
        let endpoint = self.runner.load(&endpoint_id.to_string()).await?;
        match (endpoint.shop_id, endpoint.mode) {
            (Some(shop_id), Some(mode)) if context.scope.allows(shop_id, mode) => Ok(endpoint),
            _ => Err(WebhookError::NotFound.into()),
        }
    }

    pub async fn create(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
    ) -> Result<EndpointResult, AppError> {
        if !context.scope.shop_ids.contains(&shop_id) {
            return Err(caisse_domain::merchant::MerchantError::ShopNotFound.into());
        }
        self.check_url(&url).await?;
        let endpoint_id = WebhookEndpointId::new();
        // The secret is stored before the endpoint exists: an endpoint never
        // lacks its secret; a secret whose endpoint was never created is inert.
        let secret = (self.generate_secret)();
        self.secrets.store(endpoint_id, 1, &secret).await?;
        let command = WebhookCommand::Create {
            endpoint_id,
            shop_id,
            mode: context.scope.mode,
            url,
            event_types,
            description,
            occurred_at: self.clock.now(),
        };
        let executed = self.run(context, endpoint_id, command).await?;
        Ok(EndpointResult {
            endpoint_id,
            endpoint: executed.aggregate,
            secret: Some(secret),
        })
    }

    pub async fn update(
        &self,
        context: &RequestContext,
        endpoint_id: WebhookEndpointId,
        url: Option<String>,
        event_types: Option<Vec<String>>,
        description: Option<String>,
    ) -> Result<EndpointResult, AppError> {
        self.load(context, endpoint_id).await?;
        if let Some(url) = &url {
            self.check_url(url).await?;
        }
        let command = WebhookCommand::Update {
            url,
            event_types,
            description,
            occurred_at: self.clock.now(),
        };
        let executed = self.run(context, endpoint_id, command).await?;
        Ok(EndpointResult {
            endpoint_id,
            endpoint: executed.aggregate,
            secret: None,
        })
    }

    /// A new secret, answered once; the previous one keeps signing for 24 h.
    pub async fn rotate_secret(
        &self,
        context: &RequestContext,
        endpoint_id: WebhookEndpointId,
    ) -> Result<EndpointResult, AppError> {
        let endpoint = self.load(context, endpoint_id).await?;
        let secret = (self.generate_secret)();
        self.secrets
            .store(endpoint_id, endpoint.secret_version + 1, &secret)
            .await?;
        let command = WebhookCommand::RotateSecret {
            occurred_at: self.clock.now(),
        };
        let executed = self.run(context, endpoint_id, command).await?;
        if executed.aggregate.secret_version != endpoint.secret_version + 1 {
            // Two rotations raced: the stored secret is the other one's version.
            return Err(AppError::ConcurrencyExhausted);
        }
        Ok(EndpointResult {
            endpoint_id,
            endpoint: executed.aggregate,
            secret: Some(secret),
        })
    }

    pub async fn set_active(
        &self,
        context: &RequestContext,
        endpoint_id: WebhookEndpointId,
        active: bool,
    ) -> Result<EndpointResult, AppError> {
        self.load(context, endpoint_id).await?;
        let occurred_at = self.clock.now();
        let command = if active {
            WebhookCommand::Enable { occurred_at }
        } else {
            WebhookCommand::Disable {
                reason: DisableReason::Merchant,
                occurred_at,
            }
        };
        let executed = self.run(context, endpoint_id, command).await?;
        Ok(EndpointResult {
            endpoint_id,
            endpoint: executed.aggregate,
            secret: None,
        })
    }

    /// The secrets that sign now: the current one, and the previous one
    /// during the 24 h after a rotation.
    pub async fn signing_secrets(
        &self,
        endpoint: &WebhookEndpoint,
        endpoint_id: WebhookEndpointId,
    ) -> Result<Vec<String>, AppError> {
        let mut secrets = Vec::new();
        for version in caisse_domain::webhook::signing_secret_versions(
            endpoint.secret_version,
            endpoint.previous_secret_valid_until,
            self.clock.now(),
        ) {
            if let Some(secret) = self.secrets.secret(endpoint_id, version).await? {
                secrets.push(secret);
            }
        }
        Ok(secrets)
    }
}
