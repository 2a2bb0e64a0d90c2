//! Merchant onboarding: a merchant, its first shop, test and live API keys and an
//! admin user, all as events of the `Merchant` aggregate.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use caisse_domain::ids::{ApiKeyId, MerchantId, UserId};
use caisse_domain::merchant::{Merchant, MerchantCommand, UserRole};
use caisse_domain::{Mode, ShopId};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

use crate::command_runner::CommandRunner;
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ports::{Clock, EventLog, ProjectionWaiter};

/// Random characters in an API key after its `sk_test_` / `sk_live_` prefix.
const API_KEY_RANDOM_LENGTH: usize = 32;
/// Characters of a key kept in clear to recognise it in lists and logs.
pub const API_KEY_PREFIX_LENGTH: usize = 12;

pub struct InitInput {
    pub merchant_name: String,
    pub shop_name: String,
    pub admin_email: String,
}

/// Secrets are in here exactly once: the caller shows them and forgets them.
pub struct InitOutput {
    pub merchant_id: MerchantId,
    pub shop_id: ShopId,
    pub test_api_key: String,
    pub live_api_key: String,
    pub admin_email: String,
    pub admin_password: String,
}

/// API keys have 190 bits of entropy, so a plain SHA-256 is enough to store them
/// (unlike passwords, which get argon2id).
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub fn generate_api_key(mode: Mode) -> String {
    let prefix = match mode {
        Mode::Test => "sk_test_",
        Mode::Live => "sk_live_",
    };
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), API_KEY_RANDOM_LENGTH)
    )
}

pub fn hash_password(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(AppError::internal)
}

pub struct MerchantService<R>
where
    R: PersistedEventRepository,
{
    runner: CommandRunner<R, Merchant>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
}

impl<R> MerchantService<R>
where
    R: PersistedEventRepository,
{
    pub fn new(
        repository: R,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        MerchantService {
            runner: CommandRunner::new(repository),
            clock,
            log,
            waiter,
        }
    }

    /// Sets when the daily remittance cut-off of a shop runs, in the caller's mode.
    /// Returns the setting in force afterwards.
    pub async fn set_remittance_cut_off(
        &self,
        context: &RequestContext,
        merchant_id: MerchantId,
        shop_id: ShopId,
        remittance_cut_off: caisse_domain::merchant::CutOffSchedule,
    ) -> Result<caisse_domain::merchant::CutOffSchedule, AppError> {
        if !context.scope.shop_ids.contains(&shop_id) {
            return Err(caisse_domain::merchant::MerchantError::ShopNotFound.into());
        }
        crate::cut_off::time_zone(&remittance_cut_off)?;
        let aggregate_id = merchant_id.to_string();
        let command = MerchantCommand::SetRemittanceCutOff {
            shop_id,
            mode: context.scope.mode,
            remittance_cut_off,
            occurred_at: self.clock.now(),
        };
        let executed = self
            .runner
            .execute(&aggregate_id, command, context.metadata(false))
            .await?;
        if !executed.events.is_empty() {
            let position = self
                .log
                .position_of(Merchant::TYPE, &aggregate_id, executed.last_sequence())
                .await?;
            self.waiter.wait_for(position).await;
        }
        executed
            .aggregate
            .cut_off(shop_id, context.scope.mode)
            .cloned()
            .ok_or_else(|| caisse_domain::merchant::MerchantError::ShopNotFound.into())
    }

    pub async fn init(&self, input: InitInput) -> Result<InitOutput, AppError> {
        let merchant_id = MerchantId::new();
        let shop_id = ShopId::new();
        let aggregate_id = merchant_id.to_string();
        let context = RequestContext::system(
            caisse_domain::payment::AccessScope {
                shop_ids: vec![],
                mode: Mode::Test,
            },
            "cli:init",
        );
        let now = self.clock.now();
        let admin_password = Alphanumeric.sample_string(&mut rand::thread_rng(), 20);
        let test_api_key = generate_api_key(Mode::Test);
        let live_api_key = generate_api_key(Mode::Live);
        let mut commands = vec![
            MerchantCommand::Create {
                merchant_id,
                name: input.merchant_name,
                occurred_at: now,
            },
            MerchantCommand::AddShop {
                shop_id,
                name: input.shop_name,
                remittance_cut_off: Default::default(),
                occurred_at: now,
            },
        ];
        for (mode, key) in [(Mode::Test, &test_api_key), (Mode::Live, &live_api_key)] {
            commands.push(MerchantCommand::IssueApiKey {
                key_id: ApiKeyId::new(),
                shop_id,
                mode,
                key_prefix: key[..API_KEY_PREFIX_LENGTH].to_string(),
                key_hash: hash_api_key(key),
                occurred_at: now,
            });
        }
        commands.push(MerchantCommand::CreateUser {
            user_id: UserId::new(),
            email: input.admin_email.clone(),
            password_hash: hash_password(&admin_password)?,
            role: UserRole::Admin,
            occurred_at: now,
        });
        let mut last_sequence = 0;
        for command in commands {
            let executed = self
                .runner
                .execute(&aggregate_id, command, context.metadata(false))
                .await?;
            last_sequence = executed.last_sequence();
        }
        let position = self
            .log
            .position_of(Merchant::TYPE, &aggregate_id, last_sequence)
            .await?;
        self.waiter.wait_for(position).await;
        Ok(InitOutput {
            merchant_id,
            shop_id,
            test_api_key,
            live_api_key,
            admin_email: input.admin_email.trim().to_lowercase(),
            admin_password,
        })
    }
}
