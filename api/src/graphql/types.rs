//! GraphQL types (DTOs). Built from view rows and from aggregate state; money is
//! always a decimal string with the currency's minor units.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Enum, Object, SimpleObject};
use caisse_domain::card::CardBrand as DomainBrand;
use caisse_domain::payment::{
    AccessScope, CaptureMode as DomainCaptureMode, Channel as DomainChannel, Payment, PaymentEvent,
};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::{date_text, timestamp_text};
use caisse_projections::money::{milli_to_string, to_milli};
use caisse_projections::queries::{self, CashSummaryRow, PaymentRow, RemittanceRow};
use cqrs_es::Aggregate;

use super::cursors::log_cursor;
use crate::errors::app_error;
use crate::state::AppState;

/// What makes an authorised payment due for capture.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CaptureTrigger {
    /// Its capture date: at order, or `captureDelayDays` later (TY-3, TY-4).
    Date,
    /// `declareShipping` (TY-6).
    Shipping,
    /// `declareDelivery` (TY-7).
    Delivery,
}

impl From<CaptureTrigger> for caisse_domain::payment::CaptureTrigger {
    fn from(trigger: CaptureTrigger) -> Self {
        match trigger {
            CaptureTrigger::Date => caisse_domain::payment::CaptureTrigger::Date,
            CaptureTrigger::Shipping => caisse_domain::payment::CaptureTrigger::Shipping,
            CaptureTrigger::Delivery => caisse_domain::payment::CaptureTrigger::Delivery,
        }
    }
}

#[derive(SimpleObject)]
pub struct Shipment {
    pub shipped_at: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Channel {
    Ecommerce,
    Mcommerce,
    Moto,
    CallCenter,
    Erp,
    Ivr,
}

impl From<Channel> for DomainChannel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Ecommerce => DomainChannel::Ecommerce,
            Channel::Mcommerce => DomainChannel::Mcommerce,
            Channel::Moto => DomainChannel::Moto,
            Channel::CallCenter => DomainChannel::CallCenter,
            Channel::Erp => DomainChannel::Erp,
            Channel::Ivr => DomainChannel::Ivr,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CaptureMode {
    Automatic,
    Manual,
}

impl From<CaptureMode> for DomainCaptureMode {
    fn from(mode: CaptureMode) -> Self {
        match mode {
            CaptureMode::Automatic => DomainCaptureMode::Automatic,
            CaptureMode::Manual => DomainCaptureMode::Manual,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PaymentStatus {
    Authorised,
    AuthorisedToValidate,
    /// Deferred beyond the authorisation validity: card checked, authorised the
    /// day before the capture date.
    WaitingAuthorisation,
    Captured,
    PartiallyRefunded,
    Refunded,
    Cancelled,
    Expired,
    Refused,
    /// Waiting for the result of its 3-D Secure challenge.
    AuthenticationPending,
    /// Its 3-D Secure challenge was never answered.
    Abandoned,
}

impl PaymentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::Authorised => "AUTHORISED",
            PaymentStatus::AuthorisedToValidate => "AUTHORISED_TO_VALIDATE",
            PaymentStatus::WaitingAuthorisation => "WAITING_AUTHORISATION",
            PaymentStatus::Captured => "CAPTURED",
            PaymentStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Cancelled => "CANCELLED",
            PaymentStatus::Expired => "EXPIRED",
            PaymentStatus::Refused => "REFUSED",
            PaymentStatus::AuthenticationPending => "AUTHENTICATION_PENDING",
            PaymentStatus::Abandoned => "ABANDONED",
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CardBrand {
    Cb,
    Visa,
    Mastercard,
    Amex,
    Jcb,
    Diners,
    Cofinoga,
    Aurore,
    Sofinco,
}

impl From<CardBrand> for DomainBrand {
    fn from(brand: CardBrand) -> Self {
        match brand {
            CardBrand::Cb => DomainBrand::Cb,
            CardBrand::Visa => DomainBrand::Visa,
            CardBrand::Mastercard => DomainBrand::Mastercard,
            CardBrand::Amex => DomainBrand::Amex,
            CardBrand::Jcb => DomainBrand::Jcb,
            CardBrand::Diners => DomainBrand::Diners,
            CardBrand::Cofinoga => DomainBrand::Cofinoga,
            CardBrand::Aurore => DomainBrand::Aurore,
            CardBrand::Sofinco => DomainBrand::Sofinco,
        }
    }
}

/// The payment guarantee (liability shift) 3-D Secure gave (SE-2).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Guarantee {
    Yes,
    No,
    Unknown,
}

impl Guarantee {
    pub fn as_str(&self) -> &'static str {
        match self {
            Guarantee::Yes => "YES",
            Guarantee::No => "NO",
            Guarantee::Unknown => "UNKNOWN",
        }
    }
}

/// The risk controls' verdict on a payment (RC-1..8).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RiskOutcome {
    /// No control fired.
    Accepted,
    /// Informative controls fired; the payment went on.
    Flagged,
    /// A blocking control fired: refused with its RISK_* reason.
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

/// What is shown of a card: never its number.
#[derive(SimpleObject, Clone)]
pub struct Card {
    pub brand: String,
    pub networks: Vec<String>,
    pub bin: String,
    pub last_four: String,
    pub expiry_month: i64,
    pub expiry_year: i64,
    pub holder_name: Option<String>,
    /// Issuing country (ISO alpha-2) from the BIN table, when the BIN is known.
    pub issuing_country: Option<String>,
    /// Keyed fingerprint of the card number: the same card, the same value.
    /// Grey-list a card with it (`addGreyListEntry`, list CARD).
    pub fingerprint: Option<String>,
}

/// One risk control's verdict on a payment (RC-1..8).
#[derive(SimpleObject, Clone)]
pub struct ControlCheckNode {
    /// CARD_GREY_LIST, CARD_OUTSTANDING, … (see `RiskControl`).
    pub control: String,
    /// The FEATURES id, e.g. RC-4.
    pub feature: String,
    /// INFORMATIVE or BLOCKING: how the control ran.
    pub mode: String,
    pub fired: bool,
    /// The RISK_* reason when it fired.
    pub reason: Option<String>,
    /// Why, in words.
    pub detail: String,
}

impl From<&caisse_domain::risk::ControlCheck> for ControlCheckNode {
    fn from(check: &caisse_domain::risk::ControlCheck) -> Self {
        ControlCheckNode {
            control: check.control.as_str().to_string(),
            feature: check.control.feature().to_string(),
            mode: check.mode.as_str().to_string(),
            fired: check.fired,
            reason: check.reason.clone(),
            detail: check.detail.clone(),
        }
    }
}

/// What the risk controls decided for a payment.
#[derive(SimpleObject, Clone)]
pub struct RiskAssessmentNode {
    /// ACCEPTED (nothing fired), FLAGGED (informative controls fired) or
    /// REFUSED (a blocking control fired).
    pub outcome: String,
    /// The controls that fired.
    pub fired: Vec<String>,
    /// Every control that ran, in order (controls that are OFF do not run).
    pub checks: Vec<ControlCheckNode>,
    /// Versions of the BIN and IP-to-country tables the controls read.
    pub bins_version: Option<String>,
    pub ip_countries_version: Option<String>,
}

impl From<&caisse_domain::risk::RiskAssessment> for RiskAssessmentNode {
    fn from(risk: &caisse_domain::risk::RiskAssessment) -> Self {
        RiskAssessmentNode {
            outcome: risk.outcome().as_str().to_string(),
            fired: risk
                .fired()
                .map(|c| c.control.as_str().to_string())
                .collect(),
            checks: risk.checks.iter().map(ControlCheckNode::from).collect(),
            bins_version: risk.bins_version.clone(),
            ip_countries_version: risk.ip_countries_version.clone(),
        }
    }
}

#[derive(SimpleObject, Clone)]
pub struct Refusal {
    /// Network reason code ("05", "51", "54", "59", "91", "96") or ACQUIRER_NOT_CONFIGURED.
    pub code: String,
    pub message: String,
}

/// A payment as the views know it (or as a mutation just left it, or as the log
/// tells it once the retention archived it).
pub struct PaymentNode {
    pub row: PaymentRow,
    /// Payments created by duplicating this one (known when built from the aggregate).
    pub duplicates: Option<Vec<String>>,
    /// Whether the retention moved it out of the online views (CM-12); None when
    /// built from a mutation's aggregate state, which does not say: looked up then.
    pub archived: Option<bool>,
    /// Its events, when it was built from them (an archived payment).
    pub history: Option<Vec<LoggedEvent>>,
    /// The risk assessment and card fingerprint, when built from the aggregate;
    /// read from the risk decisions view otherwise.
    pub security: Option<(caisse_domain::risk::RiskAssessment, String)>,
}

impl PaymentNode {
    pub fn from_row(row: PaymentRow) -> Self {
        PaymentNode {
            row,
            duplicates: None,
            archived: Some(false),
            history: None,
            security: None,
        }
    }

    /// An archived payment, from its events in the log (CM-12): folded into the
    /// `Payment` aggregate as a command would load it. None when the events do
    /// not make a payment `scope` may see, so it stays indistinguishable from a
    /// missing one.
    pub fn archived_from_log(
        events: Vec<LoggedEvent>,
        scope: &AccessScope,
    ) -> Result<Option<Self>, caisse_application::AppError> {
        let mut payment = Payment::default();
        for event in &events {
            let payment_event: PaymentEvent = serde_json::from_value(event.payload.clone())
                .map_err(|error| {
                    caisse_application::AppError::internal(format!(
                        "payment event {}: {error}",
                        event.position.global_position
                    ))
                })?;
            payment.apply(payment_event);
        }
        if payment.visible_details(scope).is_err() {
            return Ok(None);
        }
        let mut node = PaymentNode::from_aggregate(&payment);
        node.row.last_sequence = events.last().map(|event| event.sequence).unwrap_or(0);
        node.archived = Some(true);
        node.history = Some(events);
        Ok(Some(node))
    }

    /// The state an aggregate is in right after a command, in the view's shape.
    pub fn from_aggregate(payment: &Payment) -> Self {
        let details = payment
            .details
            .as_ref()
            .expect("mutations return existing payments");
        let amount = payment.amount.expect("existing payments have an amount");
        let card = &details.card;
        let created_at = timestamp_text(details.occurred_at);
        let row = PaymentRow {
            payment_id: details.payment_id.to_string(),
            shop_id: details.shop_id.to_string(),
            mode: details.mode.as_str().to_string(),
            order_reference: details.order_reference.clone(),
            status: payment.status.as_str().to_string(),
            currency: amount.currency().code().to_string(),
            amount_milli: to_milli(&amount),
            authorised_milli: payment.authorised.as_ref().map_or(0, to_milli),
            captured_milli: payment.captured.as_ref().map(to_milli).unwrap_or(0),
            refunded_milli: payment.refunded.as_ref().map(to_milli).unwrap_or(0),
            channel: details.channel.as_str().to_string(),
            capture_mode: match details.capture_mode {
                DomainCaptureMode::Automatic => "AUTOMATIC",
                DomainCaptureMode::Manual => "MANUAL",
            }
            .to_string(),
            capture_date: date_text(payment.capture_date.unwrap_or(details.capture_date)),
            card_brand: card.brand.as_str().to_string(),
            card_networks: card
                .networks
                .iter()
                .map(|b| b.as_str())
                .collect::<Vec<_>>()
                .join(","),
            card_bin: card.bin.clone(),
            card_last_four: card.last_four.clone(),
            card_expiry_month: i64::from(card.expiry.month),
            card_expiry_year: i64::from(card.expiry.year),
            card_holder_name: card.holder_name.clone(),
            buyer_email: details.buyer_email.clone(),
            buyer_ip: details.buyer_ip.clone(),
            authorisation_code: None,
            refusal_code: payment.refusal.as_ref().map(|r| r.code.clone()),
            refusal_message: payment.refusal.as_ref().map(|r| r.message.clone()),
            remittance_id: payment.remittance_id.map(|id| id.to_string()),
            duplicated_from: details.duplicated_from.map(|id| id.to_string()),
            updated_at: payment
                .updated_at
                .map(timestamp_text)
                .unwrap_or_else(|| created_at.clone()),
            created_at,
            last_sequence: 0,
            capture_trigger: details.capture_trigger.as_str().to_string(),
            typology: details.typology().to_string(),
            shipped_at: payment.shipped_at.map(timestamp_text),
            carrier: payment.carrier.clone(),
            tracking_number: payment.tracking_number.clone(),
            delivered_at: payment.delivered_at.map(timestamp_text),
            plan_id: details.instalment_of.map(|link| link.plan_id.to_string()),
            instalment_number: details.instalment_of.map(|link| i64::from(link.number)),
            three_ds_enrolled: details.three_ds.enrolled.as_str().to_string(),
            three_ds_status: details.three_ds.status.as_str().to_string(),
            three_ds_transaction_id: details.three_ds.transaction_id.clone(),
            guarantee: details.three_ds.guarantee.as_str().to_string(),
            risk_outcome: details.risk.outcome().as_str().to_string(),
            risk_fired: Some(
                details
                    .risk
                    .fired()
                    .map(|c| c.control.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .filter(|fired| !fired.is_empty()),
            buyer_country: details.buyer_country.clone(),
            card_country: card.issuing_country.clone(),
        };
        PaymentNode {
            row,
            duplicates: Some(payment.duplicates.iter().map(|id| id.to_string()).collect()),
            archived: None,
            history: None,
            security: Some((details.risk.clone(), card.fingerprint.clone())),
        }
    }

    fn money(&self, milli: i64) -> String {
        milli_to_string(milli, &self.row.currency)
    }

    /// This payment's row of the risk decisions view.
    async fn risk_decision(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<caisse_projections::risk_queries::RiskDecisionRow>> {
        let state = ctx.data::<Arc<AppState>>()?;
        let caller = &ctx.data::<super::RequestData>()?.caller;
        caisse_projections::risk_queries::risk_decision(
            state.db(),
            &caller.read_scope(),
            &self.row.payment_id,
        )
        .await
        .map_err(app_error)
    }
}

#[Object(name = "Payment")]
impl PaymentNode {
    async fn id(&self) -> &str {
        &self.row.payment_id
    }
    async fn shop_id(&self) -> &str {
        &self.row.shop_id
    }
    /// TEST or LIVE.
    async fn mode(&self) -> &str {
        &self.row.mode
    }
    async fn order_reference(&self) -> &str {
        &self.row.order_reference
    }
    async fn status(&self) -> &str {
        &self.row.status
    }
    /// Amount to capture (the authorised amount unless lowered by modifyPayment).
    async fn amount(&self) -> String {
        self.money(self.row.amount_milli)
    }
    async fn currency(&self) -> &str {
        &self.row.currency
    }
    async fn authorised_amount(&self) -> String {
        self.money(self.row.authorised_milli)
    }
    async fn captured_amount(&self) -> String {
        self.money(self.row.captured_milli)
    }
    async fn refunded_amount(&self) -> String {
        self.money(self.row.refunded_milli)
    }
    /// What can still be refunded: captured minus refunded.
    async fn refundable_amount(&self) -> String {
        self.money(self.row.captured_milli - self.row.refunded_milli)
    }
    async fn channel(&self) -> &str {
        &self.row.channel
    }
    async fn capture_mode(&self) -> &str {
        &self.row.capture_mode
    }
    /// Business date (YYYY-MM-DD) from which the remittance captures it.
    async fn capture_date(&self) -> &str {
        &self.row.capture_date
    }
    /// The payment plan this payment is an instalment of (TY-1, TY-2, TY-5).
    async fn plan_id(&self) -> Option<&str> {
        self.row.plan_id.as_deref()
    }
    async fn instalment_number(&self) -> Option<i64> {
        self.row.instalment_number
    }
    /// The typology it was made under (FEATURES TY-1..7): PAY_AT_ORDER, DEFERRED,
    /// AT_SHIPPING, AT_DELIVERY, PAY_IN_3, PAY_IN_N or DEPOSIT_AND_BALANCE.
    async fn typology(&self) -> &str {
        &self.row.typology
    }
    /// DATE, SHIPPING (captured once `declareShipping` is called) or DELIVERY.
    async fn capture_trigger(&self) -> &str {
        &self.row.capture_trigger
    }
    /// When the merchant declared the shipping, with the carrier and tracking number given.
    async fn shipment(&self) -> Option<Shipment> {
        self.row.shipped_at.as_ref().map(|shipped_at| Shipment {
            shipped_at: shipped_at.clone(),
            carrier: self.row.carrier.clone(),
            tracking_number: self.row.tracking_number.clone(),
        })
    }
    /// When the merchant declared the delivery.
    async fn delivered_at(&self) -> Option<&str> {
        self.row.delivered_at.as_deref()
    }
    async fn card(&self, ctx: &Context<'_>) -> async_graphql::Result<Card> {
        let fingerprint = match &self.security {
            Some((_, fingerprint)) => Some(fingerprint.clone()),
            None => self.risk_decision(ctx).await?.map(|d| d.card_fingerprint),
        };
        Ok(Card {
            brand: self.row.card_brand.clone(),
            networks: self
                .row
                .card_networks
                .split(',')
                .map(str::to_string)
                .collect(),
            bin: self.row.card_bin.clone(),
            last_four: self.row.card_last_four.clone(),
            expiry_month: self.row.card_expiry_month,
            expiry_year: self.row.card_expiry_year,
            holder_name: self.row.card_holder_name.clone(),
            issuing_country: self.row.card_country.clone(),
            fingerprint,
        })
    }
    /// 3-D Secure enrolment of the card: ENROLLED, NOT_ENROLLED, UNKNOWN, or
    /// NOT_CHECKED when 3-D Secure did not run (SE-1).
    async fn three_ds_enrolled(&self) -> &str {
        &self.row.three_ds_enrolled
    }
    /// AUTHENTICATED, ATTEMPTED, FAILED, UNAVAILABLE, CHALLENGE_PENDING or
    /// NOT_PERFORMED.
    async fn three_ds_status(&self) -> &str {
        &self.row.three_ds_status
    }
    /// The 3-D Secure server's transaction id.
    async fn three_ds_transaction_id(&self) -> Option<&str> {
        self.row.three_ds_transaction_id.as_deref()
    }
    /// The payment guarantee (liability shift, SE-2): YES, NO or UNKNOWN.
    async fn guarantee(&self) -> &str {
        &self.row.guarantee
    }
    /// The country the buyer declared.
    async fn buyer_country(&self) -> Option<&str> {
        self.row.buyer_country.as_deref()
    }
    /// What the risk controls decided: which ran, which fired and why (RC-1..8).
    async fn risk(&self, ctx: &Context<'_>) -> async_graphql::Result<RiskAssessmentNode> {
        if let Some((risk, _)) = &self.security {
            return Ok(RiskAssessmentNode::from(risk));
        }
        let decision = self.risk_decision(ctx).await?;
        let checks = match &decision {
            Some(decision) => decision.checks().map_err(app_error)?,
            None => Vec::new(),
        };
        let risk = caisse_domain::risk::RiskAssessment {
            checks,
            bins_version: None,
            ip_countries_version: None,
        };
        Ok(RiskAssessmentNode::from(&risk))
    }
    async fn buyer_email(&self) -> Option<&str> {
        self.row.buyer_email.as_deref()
    }
    async fn buyer_ip(&self) -> Option<&str> {
        self.row.buyer_ip.as_deref()
    }
    async fn refusal(&self) -> Option<Refusal> {
        Some(Refusal {
            code: self.row.refusal_code.clone()?,
            message: self.row.refusal_message.clone().unwrap_or_default(),
        })
    }
    async fn remittance_id(&self) -> Option<&str> {
        self.row.remittance_id.as_deref()
    }
    /// The payment this one duplicates (CM-3).
    async fn duplicated_from(&self) -> Option<&str> {
        self.row.duplicated_from.as_deref()
    }
    /// Payments created by duplicating this one, from its history.
    async fn duplicates(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        if let Some(duplicates) = &self.duplicates {
            return Ok(duplicates.clone());
        }
        let history = load_history(ctx, &self.row.payment_id).await?;
        Ok(history
            .iter()
            .filter_map(|event| {
                match serde_json::from_value::<PaymentEvent>(event.payload.clone()) {
                    Ok(PaymentEvent::PaymentDuplicated { new_payment_id, .. }) => {
                        Some(new_payment_id.to_string())
                    }
                    _ => None,
                }
            })
            .collect())
    }
    async fn created_at(&self) -> &str {
        &self.row.created_at
    }
    async fn updated_at(&self) -> &str {
        &self.row.updated_at
    }
    /// True when the payment is older than the history kept online (CM-12): it is
    /// no longer in `payments` or `cashSummary`, and `payment(id)` reads it from
    /// the event log, which keeps everything.
    async fn archived(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        if let Some(archived) = self.archived {
            return Ok(archived);
        }
        let state = ctx.data::<Arc<AppState>>()?;
        super::query::is_archived(state, &self.row.payment_id)
            .await
            .map_err(app_error)
    }
    /// Every event of this payment, oldest first (RP-1).
    async fn history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<LogEvent>> {
        if let Some(history) = &self.history {
            return Ok(history.iter().cloned().map(LogEvent::new).collect());
        }
        Ok(load_history(ctx, &self.row.payment_id)
            .await?
            .into_iter()
            .map(LogEvent::new)
            .collect())
    }
}

async fn load_history(
    ctx: &Context<'_>,
    payment_id: &str,
) -> async_graphql::Result<Vec<LoggedEvent>> {
    let state = ctx.data::<Arc<AppState>>()?;
    state
        .log
        .aggregate_events(Payment::TYPE, payment_id)
        .await
        .map_err(app_error)
}

/// One event of the log: a payment's history entry (RP-1) or an `events` item.
pub struct LogEvent {
    event: LoggedEvent,
    /// The payload read once as a payment event (None for other aggregates).
    payment_event: Option<PaymentEvent>,
}

impl LogEvent {
    pub fn new(event: LoggedEvent) -> Self {
        let payment_event = serde_json::from_value(event.payload.clone()).ok();
        LogEvent {
            event,
            payment_event,
        }
    }

    /// The amount a payment event carries, if any.
    fn money(&self) -> Option<caisse_domain::Money> {
        self.payment_event.as_ref()?.amount()
    }
}

#[Object]
impl LogEvent {
    /// Cursor to pass to `events(after:)` to read the log from this event on.
    async fn cursor(&self) -> String {
        log_cursor(self.event.position)
    }
    /// Position in the global log.
    async fn global_position(&self) -> i64 {
        self.event.position.global_position
    }
    async fn aggregate_type(&self) -> &str {
        &self.event.aggregate_type
    }
    async fn aggregate_id(&self) -> &str {
        &self.event.aggregate_id
    }
    async fn sequence(&self) -> i64 {
        self.event.sequence
    }
    /// Event type, e.g. PaymentRefunded. Stable once shipped.
    async fn r#type(&self) -> &str {
        &self.event.event_type
    }
    async fn version(&self) -> &str {
        &self.event.event_version
    }
    async fn occurred_at(&self) -> String {
        let at = self.payment_event.as_ref().map(PaymentEvent::occurred_at);
        timestamp_text(at.unwrap_or(self.event.recorded_at))
    }
    async fn recorded_at(&self) -> String {
        timestamp_text(self.event.recorded_at)
    }
    /// Who caused it: `api_key:…`, `cli:…`, `system:…`.
    async fn actor(&self) -> Option<String> {
        self.event
            .metadata
            .get("actor")
            .and_then(|a| a.as_str())
            .map(str::to_string)
    }
    /// The amount a payment event carries, if any.
    async fn amount(&self) -> Option<String> {
        self.money().map(|money| money.amount().to_string())
    }
    async fn currency(&self) -> Option<String> {
        self.money()
            .map(|money| money.currency().code().to_string())
    }
    /// The event's payload as JSON text (card as token, BIN and last four only).
    async fn data(&self) -> String {
        self.event.payload.to_string()
    }
}

#[derive(SimpleObject)]
pub struct LogEventConnection {
    pub events: Vec<LogEvent>,
    /// Pass as `after` to continue; stays put when there is nothing new.
    pub end_cursor: String,
    pub has_next_page: bool,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct PaymentEdge {
    pub cursor: String,
    pub node: PaymentNode,
}

#[derive(SimpleObject)]
pub struct PaymentConnection {
    pub edges: Vec<PaymentEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct CountAndAmount {
    pub count: i64,
    pub amount: String,
}

#[derive(SimpleObject)]
pub struct CashSummaryEntry {
    /// Business date (UTC) of the movements.
    pub date: String,
    pub currency: String,
    pub channel: String,
    pub authorised: CountAndAmount,
    pub captured: CountAndAmount,
    pub refunded: CountAndAmount,
    pub cancelled: CountAndAmount,
    /// Authorisations that lapsed before validation.
    pub expired: CountAndAmount,
    pub refused: CountAndAmount,
    /// 3-D Secure challenges nobody answered: nothing was authorised.
    pub abandoned: CountAndAmount,
    /// The same movements by payment guarantee (SE-2): one entry per
    /// guarantee and kind that has movements.
    pub by_guarantee: Vec<GuaranteeTotal>,
}

/// Movements of one kind for payments of one guarantee.
#[derive(SimpleObject)]
pub struct GuaranteeTotal {
    /// YES, NO or UNKNOWN.
    pub guarantee: String,
    /// AUTHORISED, CAPTURED, REFUNDED, CANCELLED, EXPIRED, REFUSED or ABANDONED.
    pub kind: String,
    pub count: i64,
    pub total: String,
}

impl From<CashSummaryRow> for CashSummaryEntry {
    fn from(row: CashSummaryRow) -> Self {
        let pick = |kind: &str| {
            let (count, milli) = row
                .totals
                .iter()
                .find(|(k, _, _)| k == kind)
                .map(|(_, count, milli)| (*count, *milli))
                .unwrap_or((0, 0));
            CountAndAmount {
                count,
                amount: milli_to_string(milli, &row.currency),
            }
        };
        CashSummaryEntry {
            authorised: pick("AUTHORISED"),
            captured: pick("CAPTURED"),
            refunded: pick("REFUNDED"),
            cancelled: pick("CANCELLED"),
            expired: pick("EXPIRED"),
            refused: pick("REFUSED"),
            abandoned: pick("ABANDONED"),
            by_guarantee: row
                .by_guarantee
                .iter()
                .map(|(guarantee, kind, count, milli)| GuaranteeTotal {
                    guarantee: guarantee.clone(),
                    kind: kind.clone(),
                    count: *count,
                    total: milli_to_string(*milli, &row.currency),
                })
                .collect(),
            date: row.business_date.clone(),
            currency: row.currency.clone(),
            channel: row.channel.clone(),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(complex, name = "Remittance")]
pub struct RemittanceNode {
    pub id: String,
    pub shop_id: String,
    pub mode: String,
    pub currency: String,
    /// The acquirer contract its payments were authorised under (SIMULATOR in test mode).
    pub contract: String,
    pub business_date: String,
    /// Number of captures it carries (the debits); same as `debitCount`.
    pub payment_count: i64,
    /// Sum of the captures it carries (the debits); same as `debitTotal`.
    pub total: String,
    pub debit_count: i64,
    pub debit_total: String,
    /// Number of refunds it carries (the credits).
    pub credit_count: i64,
    pub credit_total: String,
    /// Debits less credits; negative when refunds exceed captures.
    pub net_total: String,
    /// SUBMITTED once sent to the acquirer; reconciliation of the acquirer's
    /// settlements (a later issue) moves it on.
    pub bank_status: String,
    pub created_at: String,
}

impl From<RemittanceRow> for RemittanceNode {
    fn from(row: RemittanceRow) -> Self {
        let money = |milli: i64| milli_to_string(milli, &row.currency);
        RemittanceNode {
            total: money(row.total_milli),
            debit_count: row.payment_count,
            debit_total: money(row.total_milli),
            credit_count: row.credit_count,
            credit_total: money(row.credit_total_milli),
            net_total: money(row.net_total_milli()),
            contract: row.acquirer_contract,
            id: row.remittance_id,
            shop_id: row.shop_id,
            mode: row.mode,
            currency: row.currency,
            business_date: row.business_date,
            payment_count: row.payment_count,
            bank_status: row.bank_status,
            created_at: row.created_at,
        }
    }
}

/// A refund a remittance sent to the bank as a credit.
#[derive(SimpleObject)]
pub struct RemittedRefund {
    pub refund_id: String,
    pub payment_id: String,
    pub amount: String,
    pub currency: String,
    pub refunded_at: String,
    /// When the remittance took it.
    pub remitted_at: Option<String>,
}

#[ComplexObject]
impl RemittanceNode {
    /// The payments this remittance captured.
    async fn payments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PaymentNode>> {
        let state = ctx.data::<Arc<AppState>>()?;
        let caller = &ctx.data::<super::RequestData>()?.caller;
        let rows = queries::payments_of_remittance(state.db(), &caller.read_scope(), &self.id)
            .await
            .map_err(app_error)?;
        Ok(rows.into_iter().map(PaymentNode::from_row).collect())
    }

    /// The refunds this remittance sent to the bank (its credits), oldest first.
    async fn refunds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RemittedRefund>> {
        let state = ctx.data::<Arc<AppState>>()?;
        let caller = &ctx.data::<super::RequestData>()?.caller;
        let rows = queries::refunds_of_remittance(state.db(), &caller.read_scope(), &self.id)
            .await
            .map_err(app_error)?;
        Ok(rows
            .into_iter()
            .map(|row| RemittedRefund {
                amount: milli_to_string(row.amount_milli, &row.currency),
                refund_id: row.refund_id,
                payment_id: row.payment_id,
                currency: row.currency,
                refunded_at: row.refunded_at,
                remitted_at: row.remitted_at,
            })
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct RemittanceEdge {
    pub cursor: String,
    pub node: RemittanceNode,
}

#[derive(SimpleObject)]
pub struct RemittanceConnection {
    pub edges: Vec<RemittanceEdge>,
    pub page_info: PageInfo,
}
