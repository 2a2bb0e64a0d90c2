//! Risk controls (FEATURES RC-1..8): the controls, each shop's settings for them
//! (the event-sourced `ShopRiskSettings` aggregate, with the shop's 3-D Secure
//! enrolment), and the pure evaluation of one payment against them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::card::CardBrand;
use crate::grey_list::{GreyListHit, GreyListIndex};
use crate::ids::ShopId;
use crate::money::Money;
use crate::payment::Channel;
use crate::reference::BinRange;
use crate::three_ds::{Guarantee, ThreeDsEnrolment, THREE_DS_BRANDS, THREE_DS_CHANNELS};

/// The aggregate id of a shop's risk settings.
pub fn risk_settings_id(shop_id: ShopId) -> String {
    format!("risk_{shop_id}")
}

/// One risk control of the seed's "Contrôles risques".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskControl {
    /// RC-1: grey list of cards (by fingerprint) and of BINs (6 or 8 digits).
    CardGreyList,
    /// RC-2: card outstanding (encours) over a rolling window.
    CardOutstanding,
    /// RC-3: grey list of card issuing countries.
    CardCountryGreyList,
    /// RC-4: grey list of IP addresses and ranges.
    IpGreyList,
    /// RC-5: e-Carte Bleue and other virtual card numbers.
    VirtualCard,
    /// RC-6: card products that must always be authorised online.
    SystematicAuthorisationCard,
    /// RC-7: card country vs IP country vs buyer's country vs shop's countries.
    CountryConsistency,
    /// RC-8: no payment guarantee from 3-D Secure.
    PaymentGuarantee,
}

impl RiskControl {
    pub const ALL: [RiskControl; 8] = [
        RiskControl::CardGreyList,
        RiskControl::CardOutstanding,
        RiskControl::CardCountryGreyList,
        RiskControl::IpGreyList,
        RiskControl::VirtualCard,
        RiskControl::SystematicAuthorisationCard,
        RiskControl::CountryConsistency,
        RiskControl::PaymentGuarantee,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RiskControl::CardGreyList => "CARD_GREY_LIST",
            RiskControl::CardOutstanding => "CARD_OUTSTANDING",
            RiskControl::CardCountryGreyList => "CARD_COUNTRY_GREY_LIST",
            RiskControl::IpGreyList => "IP_GREY_LIST",
            RiskControl::VirtualCard => "VIRTUAL_CARD",
            RiskControl::SystematicAuthorisationCard => "SYSTEMATIC_AUTHORISATION_CARD",
            RiskControl::CountryConsistency => "COUNTRY_CONSISTENCY",
            RiskControl::PaymentGuarantee => "PAYMENT_GUARANTEE",
        }
    }

    pub fn parse(text: &str) -> Option<RiskControl> {
        RiskControl::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The FEATURES id, for documentation and logs.
    pub fn feature(&self) -> &'static str {
        match self {
            RiskControl::CardGreyList => "RC-1",
            RiskControl::CardOutstanding => "RC-2",
            RiskControl::CardCountryGreyList => "RC-3",
            RiskControl::IpGreyList => "RC-4",
            RiskControl::VirtualCard => "RC-5",
            RiskControl::SystematicAuthorisationCard => "RC-6",
            RiskControl::CountryConsistency => "RC-7",
            RiskControl::PaymentGuarantee => "RC-8",
        }
    }
}

/// How a control acts on a shop's payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlMode {
    /// Not run.
    #[default]
    Off,
    /// Run and recorded; the payment proceeds even when it fires.
    Informative,
    /// Run; when it fires the payment is refused with the control's `RISK_*` reason.
    Blocking,
}

impl ControlMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ControlMode::Off => "OFF",
            ControlMode::Informative => "INFORMATIVE",
            ControlMode::Blocking => "BLOCKING",
        }
    }
}

/// RC-2's limits: the window and at least one cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutstandingLimits {
    pub window_days: u32,
    /// Cap on the total amount per card over the window (in this currency only).
    pub amount_max: Option<Money>,
    /// Cap on the number of payments per card over the window.
    pub count_max: Option<u32>,
}

/// Longest rolling window of the card outstanding.
pub const OUTSTANDING_WINDOW_DAYS_MAX: u32 = 90;

/// A control's parameters, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ControlParameters {
    /// RC-2 only.
    pub outstanding: Option<OutstandingLimits>,
    /// RC-7 only: the countries the shop sells to (ISO alpha-2); empty: any.
    #[serde(default)]
    pub shop_countries: Vec<String>,
    /// RC-8 only: the control fires only from this amount (same currency).
    pub guarantee_amount_min: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlSetting {
    pub mode: ControlMode,
    pub parameters: ControlParameters,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskSettingsError {
    #[error("{field}: {message}")]
    InvalidParameter {
        field: &'static str,
        message: String,
    },
    #[error("nothing changes: the setting is already so")]
    Unchanged,
}

impl RiskSettingsError {
    pub fn code(&self) -> &'static str {
        match self {
            RiskSettingsError::InvalidParameter { .. } => "INVALID_RISK_SETTING",
            RiskSettingsError::Unchanged => "RISK_SETTING_UNCHANGED",
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        RiskSettingsError::InvalidParameter {
            field,
            message: message.into(),
        }
    }
}

/// Checks that a control gets exactly the parameters it uses.
pub fn check_parameters(
    control: RiskControl,
    mode: ControlMode,
    parameters: &ControlParameters,
) -> Result<(), RiskSettingsError> {
    let foreign = |field: &'static str| {
        RiskSettingsError::invalid(field, format!("does not apply to {}", control.as_str()))
    };
    if control != RiskControl::CardOutstanding && parameters.outstanding.is_some() {
        return Err(foreign("outstanding"));
    }
    if control != RiskControl::CountryConsistency && !parameters.shop_countries.is_empty() {
        return Err(foreign("shopCountries"));
    }
    if control != RiskControl::PaymentGuarantee && parameters.guarantee_amount_min.is_some() {
        return Err(foreign("guaranteeAmountMin"));
    }
    if control == RiskControl::CardOutstanding && mode != ControlMode::Off {
        let Some(limits) = &parameters.outstanding else {
            return Err(RiskSettingsError::invalid(
                "outstanding",
                "CARD_OUTSTANDING needs a window and a cap (amountMax or countMax)",
            ));
        };
        if limits.window_days == 0 || limits.window_days > OUTSTANDING_WINDOW_DAYS_MAX {
            return Err(RiskSettingsError::invalid(
                "outstanding.windowDays",
                format!("must be 1 to {OUTSTANDING_WINDOW_DAYS_MAX} days"),
            ));
        }
        if limits.amount_max.is_none() && limits.count_max.is_none() {
            return Err(RiskSettingsError::invalid(
                "outstanding",
                "give amountMax, countMax or both",
            ));
        }
        if limits.amount_max.is_some_and(|m| m.is_zero()) {
            return Err(RiskSettingsError::invalid(
                "outstanding.amountMax",
                "must be above zero",
            ));
        }
        if limits.count_max == Some(0) {
            return Err(RiskSettingsError::invalid(
                "outstanding.countMax",
                "must be at least 1",
            ));
        }
    }
    for country in &parameters.shop_countries {
        if !is_country_code(country) {
            return Err(RiskSettingsError::invalid(
                "shopCountries",
                format!("{country:?} is not an ISO 3166-1 alpha-2 code (two upper-case letters)"),
            ));
        }
    }
    Ok(())
}

/// Two upper-case ASCII letters.
pub fn is_country_code(text: &str) -> bool {
    text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RiskSettingsCommand {
    ConfigureControl {
        shop_id: ShopId,
        control: RiskControl,
        mode: ControlMode,
        parameters: ControlParameters,
        occurred_at: DateTime<Utc>,
    },
    ConfigureThreeDs {
        shop_id: ShopId,
        enrolment: ThreeDsEnrolment,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RiskSettingsEvent {
    RiskControlConfigured {
        shop_id: ShopId,
        control: RiskControl,
        previous: Option<ControlSetting>,
        setting: ControlSetting,
        occurred_at: DateTime<Utc>,
    },
    ThreeDsEnrolmentConfigured {
        shop_id: ShopId,
        previous: ThreeDsEnrolment,
        enrolment: ThreeDsEnrolment,
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for RiskSettingsEvent {
    fn event_type(&self) -> String {
        match self {
            RiskSettingsEvent::RiskControlConfigured { .. } => "RiskControlConfigured",
            RiskSettingsEvent::ThreeDsEnrolmentConfigured { .. } => "ThreeDsEnrolmentConfigured",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// A shop's risk settings and 3-D Secure enrolment. Every change is an event
/// (who is in its metadata), so an auditor sees what applied to each payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopRiskSettings {
    pub controls: BTreeMap<RiskControl, ControlSetting>,
    /// None until configured: the default enrolment applies.
    pub three_ds: Option<ThreeDsEnrolment>,
}

impl ShopRiskSettings {
    pub fn mode(&self, control: RiskControl) -> ControlMode {
        self.controls
            .get(&control)
            .map(|setting| setting.mode)
            .unwrap_or_default()
    }

    pub fn parameters(&self, control: RiskControl) -> Option<&ControlParameters> {
        self.controls
            .get(&control)
            .map(|setting| &setting.parameters)
    }

    pub fn three_ds_enrolment(&self) -> ThreeDsEnrolment {
        self.three_ds.clone().unwrap_or_default()
    }

    pub fn outstanding_limits(&self) -> Option<&OutstandingLimits> {
        self.parameters(RiskControl::CardOutstanding)
            .and_then(|p| p.outstanding.as_ref())
    }
}

impl Aggregate for ShopRiskSettings {
    const TYPE: &'static str = "ShopRiskSettings";
    type Command = RiskSettingsCommand;
    type Event = RiskSettingsEvent;
    type Error = RiskSettingsError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            RiskSettingsCommand::ConfigureControl {
                shop_id,
                control,
                mode,
                parameters,
                occurred_at,
            } => {
                check_parameters(control, mode, &parameters)?;
                let setting = ControlSetting { mode, parameters };
                let previous = self.controls.get(&control).cloned();
                if previous.as_ref() == Some(&setting) || (previous.is_none() && setting == off()) {
                    return Err(RiskSettingsError::Unchanged);
                }
                RiskSettingsEvent::RiskControlConfigured {
                    shop_id,
                    control,
                    previous,
                    setting,
                    occurred_at,
                }
            }
            RiskSettingsCommand::ConfigureThreeDs {
                shop_id,
                mut enrolment,
                occurred_at,
            } => {
                for brand in &enrolment.brands {
                    if !THREE_DS_BRANDS.contains(brand) {
                        return Err(RiskSettingsError::invalid(
                            "brands",
                            format!(
                                "{} has no 3-D Secure programme here; CB, VISA and MASTERCARD do",
                                brand.as_str()
                            ),
                        ));
                    }
                }
                for channel in &enrolment.channels {
                    if !THREE_DS_CHANNELS.contains(channel) {
                        return Err(RiskSettingsError::invalid(
                            "channels",
                            format!(
                                "{} payments have no buyer browser to authenticate in; only \
                                 ECOMMERCE and MCOMMERCE can be 3DS-authenticated",
                                channel.as_str()
                            ),
                        ));
                    }
                }
                enrolment.brands.sort_by_key(|b| b.as_str());
                enrolment.brands.dedup();
                enrolment.channels.sort_by_key(|c| c.as_str());
                enrolment.channels.dedup();
                let previous = self.three_ds_enrolment();
                let mut sorted_previous = previous.clone();
                sorted_previous.brands.sort_by_key(|b| b.as_str());
                sorted_previous.channels.sort_by_key(|c| c.as_str());
                if sorted_previous == enrolment {
                    return Err(RiskSettingsError::Unchanged);
                }
                RiskSettingsEvent::ThreeDsEnrolmentConfigured {
                    shop_id,
                    previous,
                    enrolment,
                    occurred_at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            RiskSettingsEvent::RiskControlConfigured {
                control, setting, ..
            } => {
                self.controls.insert(control, setting);
            }
            RiskSettingsEvent::ThreeDsEnrolmentConfigured { enrolment, .. } => {
                self.three_ds = Some(enrolment);
            }
        }
    }
}

fn off() -> ControlSetting {
    ControlSetting {
        mode: ControlMode::Off,
        parameters: ControlParameters::default(),
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// One control's verdict on one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCheck {
    pub control: RiskControl,
    pub mode: ControlMode,
    pub fired: bool,
    /// The `RISK_*` reason when it fired.
    pub reason: Option<String>,
    /// Why, in words an operator reads (never a card number).
    pub detail: String,
}

/// Every control that ran on a payment, and the reference tables they read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RiskAssessment {
    pub checks: Vec<ControlCheck>,
    /// Versions of the BIN and IP-to-country tables in use.
    pub bins_version: Option<String>,
    pub ip_countries_version: Option<String>,
}

/// The overall outcome of the assessment, as views show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskOutcome {
    /// No control fired (or none ran).
    Accepted,
    /// Only informative controls fired.
    Flagged,
    /// A blocking control fired: the payment was refused.
    Refused,
}

impl RiskOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            RiskOutcome::Accepted => "ACCEPTED",
            RiskOutcome::Flagged => "FLAGGED",
            RiskOutcome::Refused => "REFUSED",
        }
    }
}

impl RiskAssessment {
    /// The first blocking control that fired: the payment's refusal.
    pub fn blocking(&self) -> Option<&ControlCheck> {
        self.checks
            .iter()
            .find(|c| c.fired && c.mode == ControlMode::Blocking)
    }

    pub fn outcome(&self) -> RiskOutcome {
        if self.blocking().is_some() {
            RiskOutcome::Refused
        } else if self.checks.iter().any(|c| c.fired) {
            RiskOutcome::Flagged
        } else {
            RiskOutcome::Accepted
        }
    }

    pub fn fired(&self) -> impl Iterator<Item = &ControlCheck> {
        self.checks.iter().filter(|c| c.fired)
    }
}

/// What the controls run before 3-D Secure know of a payment.
pub struct RiskInput<'a> {
    pub card_fingerprint: &'a str,
    /// The PAN's first 8 digits (6 for shorter PANs): BIN lists match 6 or 8.
    pub card_bin8: &'a str,
    pub card_brand: CardBrand,
    /// The BIN table's row for the card, if any.
    pub bin_range: Option<&'a BinRange>,
    pub buyer_ip: Option<IpAddr>,
    pub ip_country: Option<&'a str>,
    pub buyer_country: Option<&'a str>,
    pub channel: Channel,
    pub now: DateTime<Utc>,
}

fn check(
    control: RiskControl,
    mode: ControlMode,
    fired: Option<(&str, String)>,
    quiet: &str,
) -> ControlCheck {
    match fired {
        Some((reason, detail)) => ControlCheck {
            control,
            mode,
            fired: true,
            reason: Some(reason.to_string()),
            detail,
        },
        None => ControlCheck {
            control,
            mode,
            fired: false,
            reason: None,
            detail: quiet.to_string(),
        },
    }
}

fn hit_detail(what: String, hit: &GreyListHit) -> String {
    match &hit.comment {
        Some(comment) if !comment.is_empty() => {
            format!("{what} is grey-listed (entry {}: {comment})", hit.entry_id)
        }
        _ => format!("{what} is grey-listed (entry {})", hit.entry_id),
    }
}

/// Runs the controls that need no outside state beyond the grey lists and the
/// reference tables (RC-1, RC-3..RC-7), in order, skipping those that are off.
/// RC-2 needs the card's counter and RC-8 the 3DS outcome: see
/// [`outstanding_check`] and [`guarantee_check`].
pub fn evaluate_before_authentication(
    settings: &ShopRiskSettings,
    grey_lists: &GreyListIndex,
    input: &RiskInput<'_>,
) -> Vec<ControlCheck> {
    let mut checks = Vec::new();
    let now = input.now;
    let mode = settings.mode(RiskControl::CardGreyList);
    if mode != ControlMode::Off {
        let bin6 = &input.card_bin8[..input.card_bin8.len().min(6)];
        let card_hit = grey_lists.card(input.card_fingerprint, now).map(|hit| {
            (
                "RISK_CARD_GREY_LISTED",
                hit_detail("the card".to_string(), hit),
            )
        });
        let fired = card_hit.or_else(|| {
            grey_lists
                .bin(input.card_bin8, now)
                .or_else(|| grey_lists.bin(bin6, now))
                .map(|hit| {
                    (
                        "RISK_BIN_GREY_LISTED",
                        hit_detail(format!("BIN {}", hit.value), hit),
                    )
                })
        });
        checks.push(check(
            RiskControl::CardGreyList,
            mode,
            fired,
            "neither the card nor its BIN is grey-listed",
        ));
    }
    let card_country = input.bin_range.map(|range| range.country.as_str());
    let mode = settings.mode(RiskControl::CardCountryGreyList);
    if mode != ControlMode::Off {
        let fired = card_country
            .and_then(|country| grey_lists.country(country, now))
            .map(|hit| {
                (
                    "RISK_CARD_COUNTRY_GREY_LISTED",
                    hit_detail(format!("card country {}", hit.value), hit),
                )
            });
        let quiet = match card_country {
            Some(country) => format!("card country {country} is not grey-listed"),
            None => "card country unknown: not in the BIN table".to_string(),
        };
        checks.push(check(RiskControl::CardCountryGreyList, mode, fired, &quiet));
    }
    let mode = settings.mode(RiskControl::IpGreyList);
    if mode != ControlMode::Off {
        let fired = input
            .buyer_ip
            .and_then(|ip| grey_lists.ip(ip, now).map(|hit| (ip, hit)))
            .map(|(ip, hit)| {
                (
                    "RISK_IP_GREY_LISTED",
                    hit_detail(format!("IP {ip} (in {})", hit.value), hit),
                )
            });
        let quiet = match input.buyer_ip {
            Some(ip) => format!("IP {ip} is not grey-listed"),
            None => "no buyer IP given".to_string(),
        };
        checks.push(check(RiskControl::IpGreyList, mode, fired, &quiet));
    }
    let mode = settings.mode(RiskControl::VirtualCard);
    if mode != ControlMode::Off {
        let fired = input
            .bin_range
            .filter(|range| range.virtual_card)
            .map(|range| {
                (
                    "RISK_VIRTUAL_CARD",
                    format!(
                        "BIN range {}-{} is a virtual card range",
                        range.low, range.high
                    ),
                )
            });
        checks.push(check(
            RiskControl::VirtualCard,
            mode,
            fired,
            "not a virtual card range",
        ));
    }
    let mode = settings.mode(RiskControl::SystematicAuthorisationCard);
    if mode != ControlMode::Off {
        let fired = input
            .bin_range
            .filter(|range| range.systematic_authorisation)
            .map(|range| {
                (
                    "RISK_SYSTEMATIC_AUTHORISATION_CARD",
                    format!(
                        "{} {} card: systematic authorisation",
                        range.brand.as_str(),
                        range.product.as_str()
                    ),
                )
            });
        checks.push(check(
            RiskControl::SystematicAuthorisationCard,
            mode,
            fired,
            "not a systematic-authorisation card product",
        ));
    }
    let mode = settings.mode(RiskControl::CountryConsistency);
    if mode != ControlMode::Off {
        let shop_countries = settings
            .parameters(RiskControl::CountryConsistency)
            .map(|p| p.shop_countries.as_slice())
            .unwrap_or_default();
        let known: Vec<(&str, &str)> = [
            ("card", card_country),
            ("IP", input.ip_country),
            ("buyer", input.buyer_country),
        ]
        .into_iter()
        .filter_map(|(name, country)| country.map(|c| (name, c)))
        .collect();
        let describe = || {
            known
                .iter()
                .map(|(name, country)| format!("{name} country {country}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let disagree = known.windows(2).any(|pair| pair[0].1 != pair[1].1);
        let outside: Vec<&str> = known
            .iter()
            .filter(|(_, country)| {
                !shop_countries.is_empty() && !shop_countries.iter().any(|s| s == country)
            })
            .map(|(name, _)| *name)
            .collect();
        let fired = if disagree {
            Some((
                "RISK_COUNTRY_INCONSISTENT",
                format!("{} differ", describe()),
            ))
        } else if !outside.is_empty() {
            Some((
                "RISK_COUNTRY_INCONSISTENT",
                format!(
                    "{} outside the shop's countries {}",
                    describe(),
                    shop_countries.join(",")
                ),
            ))
        } else {
            None
        };
        let quiet = if known.is_empty() {
            "no country known".to_string()
        } else {
            format!("{} agree", describe())
        };
        checks.push(check(RiskControl::CountryConsistency, mode, fired, &quiet));
    }
    checks
}

/// The card's outstanding over the window before this payment, as the
/// `CardOutstanding` aggregate counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutstandingTotals {
    pub amount: Money,
    pub count: u32,
}

/// RC-2: whether adding `amount` to the card's outstanding passes the caps.
pub fn outstanding_check(
    mode: ControlMode,
    limits: &OutstandingLimits,
    before: OutstandingTotals,
    amount: Money,
) -> ControlCheck {
    let count_after = before.count + 1;
    let amount_after = before.amount.checked_add(&amount).ok();
    let over_count = limits.count_max.filter(|max| count_after > *max);
    let over_amount = limits.amount_max.filter(|max| {
        amount_after.is_some_and(|after| after.cmp_amount(max) == Ok(std::cmp::Ordering::Greater))
    });
    let window = limits.window_days;
    let fired = match (over_amount, over_count) {
        (Some(max), _) => Some((
            "RISK_CARD_OUTSTANDING_EXCEEDED",
            format!(
                "card outstanding over {window} days would be {} > cap {}",
                amount_after.map(|a| a.to_string()).unwrap_or_default(),
                max
            ),
        )),
        (None, Some(max)) => Some((
            "RISK_CARD_OUTSTANDING_EXCEEDED",
            format!("{count_after} payments on the card over {window} days > cap {max}"),
        )),
        (None, None) => None,
    };
    let quiet = format!(
        "card outstanding over {window} days: {} in {count_after} payments, within the caps",
        amount_after.map(|a| a.to_string()).unwrap_or_default()
    );
    check(RiskControl::CardOutstanding, mode, fired, &quiet)
}

/// RC-8: refuse or flag a payment the 3-D Secure outcome gives no guarantee.
pub fn guarantee_check(
    settings: &ShopRiskSettings,
    guarantee: Guarantee,
    amount: Money,
) -> Option<ControlCheck> {
    let mode = settings.mode(RiskControl::PaymentGuarantee);
    if mode == ControlMode::Off {
        return None;
    }
    let minimum = settings
        .parameters(RiskControl::PaymentGuarantee)
        .and_then(|p| p.guarantee_amount_min);
    let below_minimum =
        minimum.is_some_and(|min| amount.cmp_amount(&min) == Ok(std::cmp::Ordering::Less));
    let fired = (guarantee != Guarantee::Yes && !below_minimum).then(|| {
        (
            "RISK_NO_GUARANTEE",
            format!("payment guarantee {}", guarantee.as_str()),
        )
    });
    let quiet = if below_minimum {
        format!(
            "payment guarantee {}, amount below {}",
            guarantee.as_str(),
            minimum.map(|m| m.to_string()).unwrap_or_default()
        )
    } else {
        format!("payment guarantee {}", guarantee.as_str())
    };
    Some(check(RiskControl::PaymentGuarantee, mode, fired, &quiet))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grey_list::{GreyListHit, GreyListKind};
    use crate::reference::{BinRange, CardProduct};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap()
    }

    fn eur(amount: &str) -> Money {
        Money::parse_positive(amount, "EUR").unwrap()
    }

    fn settings(mode: ControlMode) -> ShopRiskSettings {
        let mut settings = ShopRiskSettings::default();
        for control in RiskControl::ALL {
            let parameters = match control {
                RiskControl::CountryConsistency => ControlParameters {
                    shop_countries: vec!["FR".to_string()],
                    ..Default::default()
                },
                _ => ControlParameters::default(),
            };
            settings
                .controls
                .insert(control, ControlSetting { mode, parameters });
        }
        settings
    }

    fn range(country: &str, virtual_card: bool, systematic: bool) -> BinRange {
        BinRange {
            low: "497010".to_string(),
            high: "497010".to_string(),
            brand: CardBrand::Cb,
            product: CardProduct::Credit,
            country: country.to_string(),
            virtual_card,
            systematic_authorisation: systematic,
        }
    }

    fn hit(value: &str) -> GreyListHit {
        GreyListHit {
            entry_id: format!("grey_{value}"),
            value: value.to_string(),
            expires_at: None,
            comment: Some("test".to_string()),
        }
    }

    fn input<'a>(
        bin_range: Option<&'a BinRange>,
        ip: &str,
        buyer: Option<&'a str>,
    ) -> RiskInput<'a> {
        RiskInput {
            card_fingerprint: "ab",
            card_bin8: "49701000",
            card_brand: CardBrand::Cb,
            bin_range,
            buyer_ip: ip.parse().ok(),
            ip_country: Some("FR"),
            buyer_country: buyer,
            channel: Channel::Ecommerce,
            now: now(),
        }
    }

    #[test]
    fn nothing_runs_when_every_control_is_off() {
        let range = range("GB", true, true);
        let checks = evaluate_before_authentication(
            &ShopRiskSettings::default(),
            &GreyListIndex::default(),
            &input(Some(&range), "10.0.0.1", Some("DE")),
        );
        assert!(checks.is_empty());
    }

    #[test]
    fn every_control_fires_on_what_it_watches_and_the_first_blocking_refuses() {
        let index = GreyListIndex::build(vec![
            (GreyListKind::Card, hit("ab")),
            (GreyListKind::Country, hit("GB")),
            (GreyListKind::Ip, hit("10.0.0.0/8")),
        ]);
        let range = range("GB", true, true);
        let checks = evaluate_before_authentication(
            &settings(ControlMode::Blocking),
            &index,
            &input(Some(&range), "10.0.0.1", Some("FR")),
        );
        let reasons: Vec<_> = checks.iter().filter_map(|c| c.reason.as_deref()).collect();
        assert_eq!(
            reasons,
            [
                "RISK_CARD_GREY_LISTED",
                "RISK_CARD_COUNTRY_GREY_LISTED",
                "RISK_IP_GREY_LISTED",
                "RISK_VIRTUAL_CARD",
                "RISK_SYSTEMATIC_AUTHORISATION_CARD",
                "RISK_COUNTRY_INCONSISTENT",
            ]
        );
        let assessment = RiskAssessment {
            checks,
            ..Default::default()
        };
        assert_eq!(assessment.outcome(), RiskOutcome::Refused);
        assert_eq!(
            assessment.blocking().unwrap().control,
            RiskControl::CardGreyList
        );
    }

    #[test]
    fn informative_controls_flag_and_quiet_ones_say_why() {
        let range = range("FR", false, false);
        let checks = evaluate_before_authentication(
            &settings(ControlMode::Informative),
            &GreyListIndex::build(vec![(GreyListKind::Bin, hit("497010"))]),
            &input(Some(&range), "192.0.2.1", Some("FR")),
        );
        let fired: Vec<_> = checks.iter().filter(|c| c.fired).collect();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].reason.as_deref(), Some("RISK_BIN_GREY_LISTED"));
        let assessment = RiskAssessment {
            checks: checks.clone(),
            ..Default::default()
        };
        assert_eq!(assessment.outcome(), RiskOutcome::Flagged);
        let consistency = checks
            .iter()
            .find(|c| c.control == RiskControl::CountryConsistency)
            .unwrap();
        assert!(!consistency.fired);
        assert!(
            consistency.detail.contains("agree"),
            "{}",
            consistency.detail
        );
    }

    #[test]
    fn the_outstanding_caps_amount_and_count() {
        let limits = OutstandingLimits {
            window_days: 7,
            amount_max: Some(eur("100.00")),
            count_max: Some(3),
        };
        let before = OutstandingTotals {
            amount: eur("70.00"),
            count: 1,
        };
        assert!(!outstanding_check(ControlMode::Blocking, &limits, before, eur("30.00")).fired);
        assert!(outstanding_check(ControlMode::Blocking, &limits, before, eur("30.01")).fired);
        let busy = OutstandingTotals {
            amount: eur("1.00"),
            count: 3,
        };
        assert!(outstanding_check(ControlMode::Blocking, &limits, busy, eur("1.00")).fired);
    }

    #[test]
    fn the_guarantee_filter_spares_small_amounts() {
        let mut settings = ShopRiskSettings::default();
        settings.controls.insert(
            RiskControl::PaymentGuarantee,
            ControlSetting {
                mode: ControlMode::Blocking,
                parameters: ControlParameters {
                    guarantee_amount_min: Some(eur("100.00")),
                    ..Default::default()
                },
            },
        );
        assert!(
            !guarantee_check(&settings, Guarantee::No, eur("99.99"))
                .unwrap()
                .fired
        );
        assert!(
            guarantee_check(&settings, Guarantee::No, eur("100.00"))
                .unwrap()
                .fired
        );
        assert!(
            guarantee_check(&settings, Guarantee::Unknown, eur("500.00"))
                .unwrap()
                .fired
        );
        assert!(
            !guarantee_check(&settings, Guarantee::Yes, eur("500.00"))
                .unwrap()
                .fired
        );
        assert!(
            guarantee_check(&ShopRiskSettings::default(), Guarantee::No, eur("1.00")).is_none()
        );
    }

    #[test]
    fn parameters_belong_to_their_control() {
        let outstanding = ControlParameters {
            outstanding: Some(OutstandingLimits {
                window_days: 7,
                amount_max: None,
                count_max: Some(2),
            }),
            ..Default::default()
        };
        assert!(check_parameters(
            RiskControl::CardOutstanding,
            ControlMode::Blocking,
            &outstanding
        )
        .is_ok());
        let error = check_parameters(
            RiskControl::VirtualCard,
            ControlMode::Blocking,
            &outstanding,
        )
        .unwrap_err();
        assert!(matches!(
            error,
            RiskSettingsError::InvalidParameter {
                field: "outstanding",
                ..
            }
        ));
        let error = check_parameters(
            RiskControl::CardOutstanding,
            ControlMode::Informative,
            &ControlParameters::default(),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            RiskSettingsError::InvalidParameter {
                field: "outstanding",
                ..
            }
        ));
        // Turning it off needs no limits.
        assert!(check_parameters(
            RiskControl::CardOutstanding,
            ControlMode::Off,
            &ControlParameters::default()
        )
        .is_ok());
    }
}
