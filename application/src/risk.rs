//! Risk controls and 3-D Secure settings as use cases (RC-1..8, SE-1): shop
//! settings and grey lists as events, the per-shop in-memory grey-list index,
//! the card outstanding reservation, and the assessment a payment runs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use caisse_domain::card::Pan;
use caisse_domain::grey_list::{
    GreyListCommand, GreyListEntry, GreyListHit, GreyListIndex, GreyListKind,
};
use caisse_domain::outstanding::{
    card_outstanding_id, CardOutstanding, OutstandingCommand, OutstandingError, OutstandingEvent,
};
use caisse_domain::risk::{
    evaluate_before_authentication, risk_settings_id, ControlCheck, ControlMode, ControlParameters,
    RiskControl, RiskInput, RiskSettingsCommand, ShopRiskSettings,
};
use caisse_domain::three_ds::ThreeDsEnrolment;
use caisse_domain::{Mode, Money, PaymentId, ShopId};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use sha2::{Digest, Sha256};

use crate::command_runner::{CommandRunner, Executed};
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ports::{CardVault, Clock, EventLog, GreyListSource, ProjectionWaiter};
use crate::reference::{ReferenceData, SharedReference};

/// The aggregate id of one value on one shop's list: it names the value by a
/// hash, so an id never shows an address or a fingerprint in full.
pub fn grey_list_entry_id(shop_id: ShopId, kind: GreyListKind, normalised: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(normalised.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!(
        "grey_{shop_id}_{}_{}",
        kind.as_str().to_ascii_lowercase(),
        &digest[..24]
    )
}

/// What a merchant grey-lists: a value, or for CARD a card number (turned
/// into its fingerprint at once, never stored) or a fingerprint.
pub enum GreyListValue {
    Text(String),
    CardNumber(String),
}

/// A shop's grey lists as this process last read them.
struct CachedGreyLists {
    /// Global position of the last change read.
    seq: i64,
    entries: HashMap<String, (GreyListKind, GreyListHit)>,
    index: Arc<GreyListIndex>,
}

/// A payment to count in its card's outstanding (RC-2).
pub struct OutstandingClaim<'a> {
    pub shop_id: ShopId,
    pub mode: Mode,
    pub card_fingerprint: &'a str,
    pub payment_id: PaymentId,
    pub amount: Money,
}

/// What the controls before 3-D Secure decided, with the tables they read.
pub struct PreAuthentication {
    pub checks: Vec<ControlCheck>,
    pub reference: Arc<ReferenceData>,
    pub settings: ShopRiskSettings,
    /// The card's issuing country, from the BIN table.
    pub card_country: Option<String>,
}

pub struct RiskService<R>
where
    R: PersistedEventRepository,
{
    settings: CommandRunner<R, ShopRiskSettings>,
    entries: CommandRunner<R, GreyListEntry>,
    outstanding: CommandRunner<R, CardOutstanding>,
    reference: SharedReference,
    grey_lists: Arc<dyn GreyListSource>,
    cache: Mutex<HashMap<ShopId, Arc<tokio::sync::Mutex<CachedGreyLists>>>>,
    vault: Arc<dyn CardVault>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
}

impl<R> RiskService<R>
where
    R: PersistedEventRepository + Clone,
{
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repository: R,
        reference: SharedReference,
        grey_lists: Arc<dyn GreyListSource>,
        vault: Arc<dyn CardVault>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        RiskService {
            settings: CommandRunner::new(repository.clone()),
            entries: CommandRunner::new(repository.clone()),
            outstanding: CommandRunner::new(repository),
            reference,
            grey_lists,
            cache: Mutex::new(HashMap::new()),
            vault,
            clock,
            log,
            waiter,
        }
    }
}

impl<R> RiskService<R>
where
    R: PersistedEventRepository,
{
    pub fn reference(&self) -> Arc<ReferenceData> {
        self.reference.current()
    }

    fn ensure_shop(context: &RequestContext, shop_id: ShopId) -> Result<(), AppError> {
        if context.scope.shop_ids.contains(&shop_id) {
            Ok(())
        } else {
            Err(caisse_domain::merchant::MerchantError::ShopNotFound.into())
        }
    }

    /// Waits until the views show the command's events, so the next read (and
    /// the next payment's grey-list refresh) sees the change.
    async fn wait_for_views<A: Aggregate>(
        &self,
        aggregate_id: &str,
        executed: &Executed<A>,
    ) -> Result<(), AppError> {
        if !executed.events.is_empty() {
            let position = self
                .log
                .position_of(A::TYPE, aggregate_id, executed.last_sequence())
                .await?;
            self.waiter.wait_for(position).await;
        }
        Ok(())
    }

    /// The shop's risk settings as they stand (defaults when never configured).
    pub async fn settings(&self, shop_id: ShopId) -> Result<ShopRiskSettings, AppError> {
        self.settings.load(&risk_settings_id(shop_id)).await
    }

    pub async fn configure_control(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        control: RiskControl,
        mode: ControlMode,
        parameters: ControlParameters,
    ) -> Result<ShopRiskSettings, AppError> {
        let command = RiskSettingsCommand::ConfigureControl {
            shop_id,
            control,
            mode,
            parameters,
            occurred_at: self.clock.now(),
        };
        self.change_settings(context, shop_id, command).await
    }

    pub async fn configure_three_ds(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        enrolment: ThreeDsEnrolment,
    ) -> Result<ShopRiskSettings, AppError> {
        let command = RiskSettingsCommand::ConfigureThreeDs {
            shop_id,
            enrolment,
            occurred_at: self.clock.now(),
        };
        self.change_settings(context, shop_id, command).await
    }

    /// Runs a settings command on the caller's shop and waits for the views.
    async fn change_settings(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        command: RiskSettingsCommand,
    ) -> Result<ShopRiskSettings, AppError> {
        Self::ensure_shop(context, shop_id)?;
        let aggregate_id = risk_settings_id(shop_id);
        let executed = self
            .settings
            .execute(&aggregate_id, command, context.metadata(false))
            .await?;
        self.wait_for_views(&aggregate_id, &executed).await?;
        Ok(executed.aggregate)
    }

    /// Adds a value to one of the shop's grey lists; answers the entry id.
    pub async fn add_grey_list_entry(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        kind: GreyListKind,
        value: GreyListValue,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        comment: Option<String>,
    ) -> Result<String, AppError> {
        Self::ensure_shop(context, shop_id)?;
        let text = match value {
            GreyListValue::Text(text) => text,
            GreyListValue::CardNumber(number) if kind == GreyListKind::Card => {
                let pan = Pan::parse(&number).map_err(|source| AppError::Card {
                    field: "cardNumber",
                    source,
                })?;
                self.vault.fingerprint(&pan)
            }
            GreyListValue::CardNumber(_) => {
                return Err(AppError::Invalid {
                    field: "cardNumber",
                    code: "INVALID_GREY_LIST_VALUE",
                    message: "a card number goes on the CARD list only".to_string(),
                })
            }
        };
        let normalised = caisse_domain::grey_list::normalise_value(kind, &text)?;
        let entry_id = grey_list_entry_id(shop_id, kind, &normalised);
        let command = GreyListCommand::Add {
            shop_id,
            kind,
            value: normalised,
            expires_at,
            comment,
            occurred_at: self.clock.now(),
        };
        let executed = self
            .entries
            .execute(&entry_id, command, context.metadata(false))
            .await?;
        self.wait_for_views(&entry_id, &executed).await?;
        Ok(entry_id)
    }

    pub async fn remove_grey_list_entry(
        &self,
        context: &RequestContext,
        entry_id: &str,
    ) -> Result<(), AppError> {
        let not_found = || AppError::Rejected {
            code: "GREY_LIST_ENTRY_NOT_FOUND",
            message: "grey-list entry not found".to_string(),
        };
        if !entry_id.starts_with("grey_") {
            return Err(not_found());
        }
        let entry = self.entries.load(entry_id).await?;
        match &entry.listed {
            Some((shop_id, _, _)) if context.scope.shop_ids.contains(shop_id) => {}
            _ => return Err(not_found()),
        }
        let command = GreyListCommand::Remove {
            occurred_at: self.clock.now(),
        };
        let executed = self
            .entries
            .execute(entry_id, command, context.metadata(false))
            .await?;
        self.wait_for_views(entry_id, &executed).await
    }

    /// The shop's grey lists, refreshed with what changed since the last read
    /// (one indexed query when nothing did).
    pub async fn grey_lists(&self, shop_id: ShopId) -> Result<Arc<GreyListIndex>, AppError> {
        let cached = {
            let mut cache = self.cache.lock().expect("grey-list cache");
            cache
                .entry(shop_id)
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(CachedGreyLists {
                        seq: 0,
                        entries: HashMap::new(),
                        index: Arc::new(GreyListIndex::default()),
                    }))
                })
                .clone()
        };
        let mut cached = cached.lock().await;
        let changes = self.grey_lists.changed_since(shop_id, cached.seq).await?;
        if changes.is_empty() {
            return Ok(cached.index.clone());
        }
        for row in changes {
            cached.seq = cached.seq.max(row.seq);
            if row.removed {
                cached.entries.remove(&row.entry_id);
            } else {
                let hit = GreyListHit {
                    entry_id: row.entry_id.clone(),
                    value: row.value,
                    expires_at: row.expires_at,
                    comment: row.comment,
                };
                cached.entries.insert(row.entry_id, (row.kind, hit));
            }
        }
        cached.index = Arc::new(GreyListIndex::build(cached.entries.values().cloned()));
        Ok(cached.index.clone())
    }

    /// Runs RC-1 and RC-3..RC-7 for a payment about to be authenticated.
    #[allow(clippy::too_many_arguments)]
    pub async fn assess_before_authentication(
        &self,
        shop_id: ShopId,
        pan: &Pan,
        card_brand: caisse_domain::card::CardBrand,
        card_fingerprint: &str,
        buyer_ip: Option<&str>,
        buyer_country: Option<&str>,
        channel: caisse_domain::payment::Channel,
    ) -> Result<PreAuthentication, AppError> {
        let settings = self.settings(shop_id).await?;
        let reference = self.reference.current();
        let digits = pan.expose_digits();
        let bin_range = reference.bins.lookup(digits);
        let card_country = bin_range.map(|range| range.country.clone());
        let ip: Option<IpAddr> = buyer_ip.and_then(|text| text.parse().ok());
        let ip_country = ip.and_then(|ip| reference.ip_countries.lookup(ip));
        let any_control = RiskControl::ALL
            .iter()
            .any(|control| settings.mode(*control) != ControlMode::Off);
        let checks = if any_control {
            let grey_lists = self.grey_lists(shop_id).await?;
            let input = RiskInput {
                card_fingerprint,
                card_bin8: &digits[..digits.len().min(8)],
                card_brand,
                bin_range,
                buyer_ip: ip,
                ip_country,
                buyer_country,
                channel,
                now: self.clock.now(),
            };
            evaluate_before_authentication(&settings, &grey_lists, &input)
        } else {
            Vec::new()
        };
        Ok(PreAuthentication {
            checks,
            card_country,
            settings,
            reference,
        })
    }

    /// RC-2: counts the payment in the card's outstanding, or answers the
    /// blocking verdict without counting it. None when the control is off.
    pub async fn reserve_outstanding(
        &self,
        context: &RequestContext,
        settings: &ShopRiskSettings,
        claim: OutstandingClaim<'_>,
    ) -> Result<Option<ControlCheck>, AppError> {
        let control_mode = settings.mode(RiskControl::CardOutstanding);
        let Some(limits) = settings.outstanding_limits().cloned() else {
            return Ok(None);
        };
        if control_mode == ControlMode::Off {
            return Ok(None);
        }
        let OutstandingClaim {
            shop_id,
            mode,
            card_fingerprint,
            payment_id,
            amount,
        } = claim;
        let aggregate_id = card_outstanding_id(shop_id, mode, card_fingerprint);
        let command = OutstandingCommand::Reserve {
            shop_id,
            payment_id,
            amount,
            mode: control_mode,
            limits,
            occurred_at: self.clock.now(),
        };
        match self
            .outstanding
            .execute(&aggregate_id, command, context.metadata(false))
            .await
        {
            Ok(executed) => {
                Ok(executed
                    .events
                    .iter()
                    .find_map(|envelope| match &envelope.payload {
                        OutstandingEvent::OutstandingReserved { check, .. } => Some(check.clone()),
                        OutstandingEvent::OutstandingReleased { .. } => None,
                    }))
            }
            // Blocking and over a cap: nothing was counted; the verdict is the
            // payment's record of why it is refused.
            Err(AppError::Outstanding(OutstandingError::Exceeded(check))) => Ok(Some(*check)),
            Err(error) => Err(error),
        }
    }

    /// Takes a payment that ended unauthorised back out of the card's outstanding.
    pub async fn release_outstanding(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        mode: Mode,
        card_fingerprint: &str,
        payment_id: PaymentId,
    ) -> Result<(), AppError> {
        let aggregate_id = card_outstanding_id(shop_id, mode, card_fingerprint);
        let command = OutstandingCommand::Release {
            payment_id,
            occurred_at: self.clock.now(),
        };
        self.outstanding
            .execute(&aggregate_id, command, context.metadata(false))
            .await?;
        Ok(())
    }
}
