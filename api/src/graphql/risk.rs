//! GraphQL for risk controls and 3-D Secure (RC-1..8, SE-1, SE-2): each shop's
//! control modes and 3DS enrolment, its grey lists, the challenge result of the
//! test environment, and the risk decisions and counters.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use caisse_application::ports::ChallengeResult as AppChallengeResult;
use caisse_application::risk::{GreyListValue, RiskService};
use caisse_application::AppError;
use caisse_domain::grey_list::GreyListKind;
use caisse_domain::merchant::MerchantError;
use caisse_domain::risk::{
    ControlMode as DomainControlMode, ControlParameters, OutstandingLimits,
    RiskControl as DomainRiskControl, ShopRiskSettings,
};
use caisse_domain::three_ds::ThreeDsEnrolment;
use caisse_domain::{Money, ShopId};
use caisse_infrastructure::event_repository::EventRepository;
use chrono::{DateTime, Utc};

use crate::errors::{app_error, bad_input};
use crate::graphql::cursors::{pair_cursor, parse_pair_cursor};
use crate::graphql::mutation::{context, parse_payment_id};
use crate::graphql::query::{parse_shop_id, request, state};
use crate::graphql::types::{CardBrand, Channel, ControlCheckNode, PaymentNode, RiskOutcome};
use caisse_domain::risk::RiskOutcome as DomainRiskOutcome;
use caisse_projections::money::milli_to_string;
use caisse_projections::risk_queries::{
    self, GreyListCursor, GreyListFilter, RiskDecisionCursor, RiskDecisionFilter,
};
use chrono::NaiveDate;

#[derive(Default)]
pub struct RiskQuery;

#[derive(Default)]
pub struct RiskMutation;

/// A risk control (FEATURES RC-1..8).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RiskControl {
    /// RC-1: grey list of cards (fingerprints) and BINs.
    CardGreyList,
    /// RC-2: card outstanding over a rolling window, capped.
    CardOutstanding,
    /// RC-3: grey list of card issuing countries.
    CardCountryGreyList,
    /// RC-4: grey list of IP addresses and ranges.
    IpGreyList,
    /// RC-5: e-Carte Bleue and other virtual card numbers.
    VirtualCard,
    /// RC-6: card products that must always be authorised online.
    SystematicAuthorisationCard,
    /// RC-7: card, IP, buyer and shop countries must agree.
    CountryConsistency,
    /// RC-8: no payment guarantee from 3-D Secure.
    PaymentGuarantee,
}

impl From<RiskControl> for DomainRiskControl {
    fn from(control: RiskControl) -> Self {
        match control {
            RiskControl::CardGreyList => DomainRiskControl::CardGreyList,
            RiskControl::CardOutstanding => DomainRiskControl::CardOutstanding,
            RiskControl::CardCountryGreyList => DomainRiskControl::CardCountryGreyList,
            RiskControl::IpGreyList => DomainRiskControl::IpGreyList,
            RiskControl::VirtualCard => DomainRiskControl::VirtualCard,
            RiskControl::SystematicAuthorisationCard => {
                DomainRiskControl::SystematicAuthorisationCard
            }
            RiskControl::CountryConsistency => DomainRiskControl::CountryConsistency,
            RiskControl::PaymentGuarantee => DomainRiskControl::PaymentGuarantee,
        }
    }
}

/// How a control acts: OFF, INFORMATIVE (recorded, the payment proceeds) or
/// BLOCKING (refused with the control's RISK_* reason).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ControlMode {
    Off,
    Informative,
    Blocking,
}

impl From<ControlMode> for DomainControlMode {
    fn from(mode: ControlMode) -> Self {
        match mode {
            ControlMode::Off => DomainControlMode::Off,
            ControlMode::Informative => DomainControlMode::Informative,
            ControlMode::Blocking => DomainControlMode::Blocking,
        }
    }
}

/// Which grey list.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum GreyList {
    /// Cards, by fingerprint (give `cardNumber` or `value` = a fingerprint).
    Card,
    /// BINs of 6 or 8 digits.
    Bin,
    /// Card issuing countries (ISO 3166-1 alpha-2).
    Country,
    /// IPv4/IPv6 addresses and CIDR ranges.
    Ip,
}

impl From<GreyList> for GreyListKind {
    fn from(list: GreyList) -> Self {
        match list {
            GreyList::Card => GreyListKind::Card,
            GreyList::Bin => GreyListKind::Bin,
            GreyList::Country => GreyListKind::Country,
            GreyList::Ip => GreyListKind::Ip,
        }
    }
}

/// The result of a 3-D Secure challenge, as the issuer's ACS would report it.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChallengeResult {
    Success,
    Failure,
}

/// RC-2's limits: a rolling window and at least one cap.
#[derive(InputObject)]
pub struct OutstandingLimitsInput {
    /// 1 to 90 days.
    pub window_days: i32,
    /// Cap on the total per card over the window, e.g. "500.00".
    pub amount_max: Option<String>,
    /// The cap's currency (ISO 4217); EUR when absent.
    pub currency: Option<String>,
    /// Cap on the number of payments per card over the window.
    pub count_max: Option<i32>,
}

#[derive(InputObject)]
pub struct ConfigureRiskControlInput {
    pub shop_id: ID,
    pub control: RiskControl,
    pub mode: ControlMode,
    /// CARD_OUTSTANDING only (required unless OFF).
    pub outstanding: Option<OutstandingLimitsInput>,
    /// COUNTRY_CONSISTENCY only: the countries the shop sells to; empty: any.
    pub shop_countries: Option<Vec<String>>,
    /// PAYMENT_GUARANTEE only: fire only from this amount, e.g. "100.00".
    pub guarantee_amount_min: Option<String>,
    /// The currency of `guaranteeAmountMin`; EUR when absent.
    pub guarantee_currency: Option<String>,
}

#[derive(InputObject)]
pub struct ConfigureThreeDsInput {
    pub shop_id: ID,
    /// Brands enrolled in 3-D Secure: among CB, VISA and MASTERCARD.
    pub brands: Vec<CardBrand>,
    /// Channels where authentication runs: among ECOMMERCE and MCOMMERCE.
    pub channels: Vec<Channel>,
}

#[derive(InputObject)]
pub struct AddGreyListEntryInput {
    pub shop_id: ID,
    pub list: GreyList,
    /// The value: a fingerprint (CARD), 6 or 8 digits (BIN), a country code
    /// (COUNTRY), an address or CIDR range (IP).
    pub value: Option<String>,
    /// CARD only, instead of `value`: the card number, turned into its
    /// fingerprint at once and never stored.
    pub card_number: Option<String>,
    /// The entry stops applying then; forever when absent.
    pub expires_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
}

/// A control's setting for a shop.
#[derive(SimpleObject)]
pub struct RiskControlSetting {
    pub control: String,
    /// FEATURES id, e.g. RC-2.
    pub feature: String,
    pub mode: String,
    pub outstanding_window_days: Option<i32>,
    pub outstanding_amount_max: Option<String>,
    pub outstanding_count_max: Option<i32>,
    pub shop_countries: Vec<String>,
    pub guarantee_amount_min: Option<String>,
}

/// A shop's risk controls (every control, OFF when never configured) and
/// its 3-D Secure enrolment.
#[derive(SimpleObject)]
pub struct RiskSettings {
    pub shop_id: String,
    pub controls: Vec<RiskControlSetting>,
    /// Brands enrolled in 3-D Secure.
    pub three_ds_brands: Vec<String>,
    /// Channels where 3-D Secure runs.
    pub three_ds_channels: Vec<String>,
}

fn settings_node(shop_id: ShopId, settings: &ShopRiskSettings) -> RiskSettings {
    let controls = DomainRiskControl::ALL
        .iter()
        .map(|control| {
            let parameters = settings.parameters(*control);
            let outstanding = parameters.and_then(|p| p.outstanding.as_ref());
            RiskControlSetting {
                control: control.as_str().to_string(),
                feature: control.feature().to_string(),
                mode: settings.mode(*control).as_str().to_string(),
                outstanding_window_days: outstanding.map(|o| o.window_days as i32),
                outstanding_amount_max: outstanding
                    .and_then(|o| o.amount_max)
                    .map(|m| m.to_string()),
                outstanding_count_max: outstanding.and_then(|o| o.count_max).map(|c| c as i32),
                shop_countries: parameters
                    .map(|p| p.shop_countries.clone())
                    .unwrap_or_default(),
                guarantee_amount_min: parameters
                    .and_then(|p| p.guarantee_amount_min)
                    .map(|m| m.to_string()),
            }
        })
        .collect();
    let enrolment = settings.three_ds_enrolment();
    RiskSettings {
        shop_id: shop_id.to_string(),
        controls,
        three_ds_brands: enrolment
            .brands
            .iter()
            .map(|b| b.as_str().to_string())
            .collect(),
        three_ds_channels: enrolment
            .channels
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
    }
}

/// The shop, if the caller's key may act on it; `SHOP_NOT_FOUND` otherwise.
pub(crate) fn caller_shop(ctx: &Context<'_>, shop_id: &ID) -> async_graphql::Result<ShopId> {
    let caller = &request(ctx)?.caller;
    let shop_id = parse_shop_id("shopId", shop_id)?;
    if caller.shop_id != shop_id {
        return Err(app_error(MerchantError::ShopNotFound.into()));
    }
    Ok(shop_id)
}

pub(crate) fn risk_service<'a>(
    ctx: &'a Context<'_>,
) -> async_graphql::Result<&'a std::sync::Arc<RiskService<EventRepository>>> {
    state(ctx)?
        .payments
        .risk()
        .ok_or_else(|| app_error(AppError::internal("risk controls are not configured")))
}

fn money(
    field: &'static str,
    amount: &str,
    currency: Option<&str>,
) -> async_graphql::Result<Money> {
    Money::parse_positive(amount, currency.unwrap_or("EUR"))
        .map_err(|source| app_error(AppError::Money { field, source }))
}

fn parameters(input: &ConfigureRiskControlInput) -> async_graphql::Result<ControlParameters> {
    let outstanding = match &input.outstanding {
        Some(limits) => Some(OutstandingLimits {
            window_days: u32::try_from(limits.window_days)
                .map_err(|_| bad_input("outstanding.windowDays", "must be 1 to 90 days"))?,
            amount_max: limits
                .amount_max
                .as_deref()
                .map(|amount| money("outstanding.amountMax", amount, limits.currency.as_deref()))
                .transpose()?,
            count_max: limits
                .count_max
                .map(|count| {
                    u32::try_from(count)
                        .map_err(|_| bad_input("outstanding.countMax", "must be at least 1"))
                })
                .transpose()?,
        }),
        None => None,
    };
    Ok(ControlParameters {
        outstanding,
        shop_countries: input
            .shop_countries
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .collect(),
        guarantee_amount_min: input
            .guarantee_amount_min
            .as_deref()
            .map(|amount| {
                money(
                    "guaranteeAmountMin",
                    amount,
                    input.guarantee_currency.as_deref(),
                )
            })
            .transpose()?,
    })
}

/// One value on a shop's grey list.
#[derive(SimpleObject)]
pub struct GreyListEntry {
    /// Pass to `removeGreyListEntry`.
    pub id: String,
    /// CARD, BIN, COUNTRY or IP.
    pub list: String,
    /// Fingerprint, BIN, country code or canonical address/CIDR range.
    pub value: String,
    pub expires_at: Option<String>,
    pub comment: Option<String>,
    pub added_at: String,
    /// Who added it (e.g. `api_key:key_…`).
    pub added_by: Option<String>,
    pub removed_at: Option<String>,
    pub removed_by: Option<String>,
    /// Pass as `after` to read the entries after this one.
    pub cursor: String,
}

/// One payment's risk decision.
#[derive(SimpleObject)]
pub struct RiskDecision {
    pub payment_id: String,
    pub shop_id: String,
    pub occurred_at: String,
    /// ACCEPTED, FLAGGED or REFUSED.
    pub outcome: String,
    /// The controls that fired.
    pub fired: Vec<String>,
    /// RISK_* or THREE_DS_FAILED when the risk step refused the payment.
    pub refusal_code: Option<String>,
    pub checks: Vec<ControlCheckNode>,
    pub card_fingerprint: String,
    pub amount: String,
    pub currency: String,
    pub guarantee: String,
    /// Pass as `after` to read older decisions.
    pub cursor: String,
}

/// How often one control ran and fired on one day.
#[derive(SimpleObject)]
pub struct RuleCount {
    pub business_date: String,
    pub control: String,
    pub ran: i64,
    pub fired_blocking: i64,
    pub fired_informative: i64,
}

/// One card's outstanding over the window (RC-2).
#[derive(SimpleObject)]
pub struct CardOutstandingNode {
    pub card_fingerprint: String,
    pub currency: String,
    pub amount: String,
    pub payment_count: i64,
}

/// The risk counters of a shop (a projection, rebuilt like any other).
#[derive(SimpleObject)]
pub struct RiskCounters {
    /// Per day and control: runs and firings, once per payment.
    pub rules: Vec<RuleCount>,
    /// Per card: the outstanding over the last `windowDays` days.
    pub outstanding: Vec<CardOutstandingNode>,
}

fn date(field: &str, text: &str) -> async_graphql::Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| bad_input(field, "expected a date YYYY-MM-DD"))
}

fn first(value: Option<i32>) -> async_graphql::Result<usize> {
    let value = value.unwrap_or(50);
    if !(1..=PAGE_MAX).contains(&value) {
        return Err(bad_input(
            "first",
            format!("must be between 1 and {PAGE_MAX}"),
        ));
    }
    Ok(value as usize)
}

/// Largest page of grey-list entries or decisions.
const PAGE_MAX: i32 = 200;

#[Object]
impl RiskQuery {
    /// The shop's grey-list entries, most recently added first.
    // A resolver's arguments are the query's arguments.
    #[allow(clippy::too_many_arguments)]
    async fn grey_list_entries(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        list: Option<GreyList>,
        #[graphql(desc = "A part of the value or of the comment, any case")] search: Option<String>,
        #[graphql(default = false)] include_removed: bool,
        #[graphql(desc = "Page size, 1 to 200 (default 50)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Vec<GreyListEntry>> {
        let shop_id = caller_shop(ctx, &shop_id)?;
        let caller = &request(ctx)?.caller;
        let after = match after.as_deref() {
            Some(text) => Some(
                parse_pair_cursor("grey1", text)
                    .map(|(added_at, entry_id)| GreyListCursor { added_at, entry_id })
                    .ok_or_else(|| bad_input("after", "not a grey-list cursor"))?,
            ),
            None => None,
        };
        let filter = GreyListFilter {
            kind: list.map(Into::into),
            search,
            include_removed,
        };
        let (rows, _) = risk_queries::list_grey_list_entries(
            state(ctx)?.db(),
            &caller.read_scope(),
            shop_id,
            &filter,
            self::first(first)?,
            after.as_ref(),
        )
        .await
        .map_err(app_error)?;
        Ok(rows
            .into_iter()
            .map(|row| GreyListEntry {
                cursor: pair_cursor("grey1", &row.added_at, &row.entry_id),
                id: row.entry_id,
                list: row.kind,
                value: row.value,
                expires_at: row.expires_at,
                comment: row.comment,
                added_at: row.added_at,
                added_by: row.added_by,
                removed_at: row.removed_at,
                removed_by: row.removed_by,
            })
            .collect())
    }

    /// Risk decisions of the caller's shop and mode, newest first.
    #[allow(clippy::too_many_arguments)]
    async fn risk_decisions(
        &self,
        ctx: &Context<'_>,
        shop_id: Option<ID>,
        outcome: Option<RiskOutcome>,
        #[graphql(desc = "Decisions where this control fired")] control: Option<RiskControl>,
        #[graphql(desc = "First business day, YYYY-MM-DD")] from: Option<String>,
        #[graphql(desc = "Last business day, YYYY-MM-DD")] to: Option<String>,
        #[graphql(desc = "Page size, 1 to 200 (default 50)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Vec<RiskDecision>> {
        let shop_id = shop_id.map(|id| caller_shop(ctx, &id)).transpose()?;
        let caller = &request(ctx)?.caller;
        let after = match after.as_deref() {
            Some(text) => Some(
                parse_pair_cursor("risk1", text)
                    .map(|(occurred_at, payment_id)| RiskDecisionCursor {
                        occurred_at,
                        payment_id,
                    })
                    .ok_or_else(|| bad_input("after", "not a risk-decision cursor"))?,
            ),
            None => None,
        };
        let filter = RiskDecisionFilter {
            shop_id,
            outcome: outcome.map(|o| match o {
                RiskOutcome::Accepted => DomainRiskOutcome::Accepted,
                RiskOutcome::Flagged => DomainRiskOutcome::Flagged,
                RiskOutcome::Refused => DomainRiskOutcome::Refused,
            }),
            control: control.map(Into::into),
            from: from.as_deref().map(|t| date("from", t)).transpose()?,
            to: to.as_deref().map(|t| date("to", t)).transpose()?,
        };
        let (rows, _) = risk_queries::risk_decisions(
            state(ctx)?.db(),
            &caller.read_scope(),
            &filter,
            self::first(first)?,
            after.as_ref(),
        )
        .await
        .map_err(app_error)?;
        rows.into_iter()
            .map(|row| {
                let checks = row.checks().map_err(app_error)?;
                Ok(RiskDecision {
                    cursor: pair_cursor("risk1", &row.occurred_at, &row.payment_id),
                    fired: row
                        .fired_controls()
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                    checks: checks.iter().map(ControlCheckNode::from).collect(),
                    amount: milli_to_string(row.amount_milli, &row.currency),
                    payment_id: row.payment_id,
                    shop_id: row.shop_id,
                    occurred_at: row.occurred_at,
                    outcome: row.outcome,
                    refusal_code: row.refusal_code,
                    card_fingerprint: row.card_fingerprint,
                    currency: row.currency,
                    guarantee: row.guarantee,
                })
            })
            .collect()
    }

    /// Rule counts per day and control, and cards' outstanding over a window.
    async fn risk_counters(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        #[graphql(desc = "First business day, YYYY-MM-DD")] from: String,
        #[graphql(desc = "Last business day, YYYY-MM-DD")] to: String,
        #[graphql(desc = "One card only")] card_fingerprint: Option<String>,
        #[graphql(desc = "Days of outstanding up to today, 1 to 90 (default 7)")]
        window_days: Option<i32>,
    ) -> async_graphql::Result<RiskCounters> {
        let shop_id = caller_shop(ctx, &shop_id)?;
        let state = state(ctx)?;
        let scope = request(ctx)?.caller.read_scope();
        let window_days = window_days.unwrap_or(7);
        if !(1..=90).contains(&window_days) {
            return Err(bad_input("windowDays", "must be between 1 and 90"));
        }
        let rules = risk_queries::rule_counts(
            state.db(),
            &scope,
            shop_id,
            date("from", &from)?,
            date("to", &to)?,
        )
        .await
        .map_err(app_error)?;
        let outstanding = risk_queries::card_outstanding(
            state.db(),
            &scope,
            shop_id,
            card_fingerprint.as_deref(),
            window_days as u32,
            state.clock.today(),
        )
        .await
        .map_err(app_error)?;
        Ok(RiskCounters {
            rules: rules
                .into_iter()
                .map(|row| RuleCount {
                    business_date: row.business_date,
                    control: row.control,
                    ran: row.ran,
                    fired_blocking: row.fired_blocking,
                    fired_informative: row.fired_informative,
                })
                .collect(),
            outstanding: outstanding
                .into_iter()
                .map(|row| CardOutstandingNode {
                    amount: milli_to_string(row.amount_milli, &row.currency),
                    card_fingerprint: row.card_fingerprint,
                    currency: row.currency,
                    payment_count: row.payment_count,
                })
                .collect(),
        })
    }

    /// The shop's risk controls and 3-D Secure enrolment.
    async fn risk_settings(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
    ) -> async_graphql::Result<RiskSettings> {
        let shop_id = caller_shop(ctx, &shop_id)?;
        let settings = risk_service(ctx)?
            .settings(shop_id)
            .await
            .map_err(app_error)?;
        Ok(settings_node(shop_id, &settings))
    }
}

#[Object]
impl RiskMutation {
    /// Sets one control's mode and parameters for a shop; recorded as an
    /// event (who, when, before and after) and in force from the next payment.
    async fn configure_risk_control(
        &self,
        ctx: &Context<'_>,
        input: ConfigureRiskControlInput,
    ) -> async_graphql::Result<RiskSettings> {
        let shop_id = caller_shop(ctx, &input.shop_id)?;
        let parameters = parameters(&input)?;
        let settings = risk_service(ctx)?
            .configure_control(
                &context(ctx)?,
                shop_id,
                input.control.into(),
                input.mode.into(),
                parameters,
            )
            .await
            .map_err(app_error)?;
        Ok(settings_node(shop_id, &settings))
    }

    /// Sets the brands and channels where 3-D Secure runs for a shop (SE-1).
    async fn configure_three_ds(
        &self,
        ctx: &Context<'_>,
        input: ConfigureThreeDsInput,
    ) -> async_graphql::Result<RiskSettings> {
        let shop_id = caller_shop(ctx, &input.shop_id)?;
        let enrolment = ThreeDsEnrolment {
            brands: input.brands.into_iter().map(Into::into).collect(),
            channels: input.channels.into_iter().map(Into::into).collect(),
        };
        let settings = risk_service(ctx)?
            .configure_three_ds(&context(ctx)?, shop_id, enrolment)
            .await
            .map_err(app_error)?;
        Ok(settings_node(shop_id, &settings))
    }

    /// Puts a value on one of the shop's grey lists; answers the entry's id.
    async fn add_grey_list_entry(
        &self,
        ctx: &Context<'_>,
        input: AddGreyListEntryInput,
    ) -> async_graphql::Result<ID> {
        let shop_id = caller_shop(ctx, &input.shop_id)?;
        let value = match (input.value, input.card_number) {
            (Some(value), None) => GreyListValue::Text(value),
            (None, Some(number)) => GreyListValue::CardNumber(number),
            _ => {
                return Err(bad_input(
                    "value",
                    "give exactly one of value and cardNumber",
                ))
            }
        };
        let entry_id = risk_service(ctx)?
            .add_grey_list_entry(
                &context(ctx)?,
                shop_id,
                input.list.into(),
                value,
                input.expires_at,
                input.comment,
            )
            .await
            .map_err(app_error)?;
        Ok(ID(entry_id))
    }

    /// Takes an entry off its grey list (recorded as an event).
    async fn remove_grey_list_entry(
        &self,
        ctx: &Context<'_>,
        entry_id: ID,
    ) -> async_graphql::Result<bool> {
        risk_service(ctx)?
            .remove_grey_list_entry(&context(ctx)?, entry_id.as_str())
            .await
            .map_err(app_error)?;
        Ok(true)
    }

    /// Test environment: posts the result of a payment's 3-D Secure challenge,
    /// as the buyer's issuer would. SUCCESS goes on to the authorisation;
    /// FAILURE refuses the payment (THREE_DS_FAILED).
    async fn complete_three_ds_challenge(
        &self,
        ctx: &Context<'_>,
        payment_id: ID,
        result: ChallengeResult,
    ) -> async_graphql::Result<PaymentNode> {
        let payment_id = parse_payment_id("paymentId", &payment_id)?;
        let result = match result {
            ChallengeResult::Success => AppChallengeResult::Success,
            ChallengeResult::Failure => AppChallengeResult::Failure,
        };
        let completed = state(ctx)?
            .payments
            .complete_challenge(&context(ctx)?, payment_id, result)
            .await
            .map_err(app_error)?;
        Ok(PaymentNode::from_aggregate(&completed.payment))
    }
}
