//! Payment use cases: create, validate, modify, cancel, refund and duplicate (CM-2..7).

use std::sync::Arc;

use caisse_domain::card::{
    detect_networks, AuthorisationValidity, CardBrand, CardExpiry, CardRanges, CardSnapshot, Cvv,
    Pan,
};
use caisse_domain::ids::RefundId;
use caisse_domain::payment::{
    AccessScope, AuthorisationOutcome, CaptureMode, CaptureTrigger, Channel, Payment,
    PaymentCommand, PaymentDetails, PaymentError, Refusal, RefusalCategory,
};
use caisse_domain::{Money, PaymentId};
use chrono::{Datelike, Days, NaiveDate};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::{CommandRunner, Executed};
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ports::{
    Acquirer, AuthorisationPurpose, AuthorisationRequest, CardVault, Clock, EventLog,
    InProcessOnly, KeyLease, KeyLock, ProjectionWaiter,
};

/// Longest merchant order reference accepted.
pub const ORDER_REFERENCE_LENGTH_MAX: usize = 64;
/// Longest deferral of a capture (TY-4).
pub const CAPTURE_DELAY_DAYS_MAX: u32 = 365;
const EMAIL_LENGTH_MAX: usize = 254;
const HOLDER_NAME_LENGTH_MAX: usize = 64;

/// A card as typed by the buyer. Dropped as soon as the vault and acquirer have it.
pub struct CardInput {
    pub number: String,
    pub expiry_month: u32,
    pub expiry_year: i32,
    pub cvv: Option<String>,
    pub holder_name: Option<String>,
    /// For co-badged cards: the network the buyer chose; CB by default.
    pub brand: Option<CardBrand>,
}

/// A card the buyer gave, checked and vaulted; the PAN and CVV stay in memory.
pub struct PreparedCard {
    pub pan: Pan,
    pub expiry: CardExpiry,
    pub cvv: Option<Cvv>,
    pub snapshot: CardSnapshot,
}

pub struct CreatePaymentInput {
    pub amount: String,
    pub currency: String,
    pub order_reference: String,
    pub channel: Channel,
    pub card: CardInput,
    pub capture_mode: CaptureMode,
    pub capture_delay_days: Option<u32>,
    /// DATE (at order or deferred), SHIPPING (TY-6) or DELIVERY (TY-7).
    pub capture_trigger: CaptureTrigger,
    pub buyer_email: Option<String>,
    pub buyer_ip: Option<String>,
    /// The buyer's declared country (ISO 3166-1 alpha-2), for RC-7.
    pub buyer_country: Option<String>,
    /// The buyer's language for the e-mails: fr, en, de, es, it, nl, pt or sv
    /// (case-insensitive); absent, French (issue 5, NT-2).
    pub buyer_language: Option<String>,
}

/// The acquirer for each mode: the simulator for test, the real connector for live.
pub struct Acquirers {
    pub test: Arc<dyn Acquirer>,
    pub live: Arc<dyn Acquirer>,
}

impl Acquirers {
    fn for_mode(&self, mode: caisse_domain::Mode) -> &dyn Acquirer {
        match mode {
            caisse_domain::Mode::Test => self.test.as_ref(),
            caisse_domain::Mode::Live => self.live.as_ref(),
        }
    }
}

pub struct PaymentService<R>
where
    R: PersistedEventRepository,
{
    pub(crate) runner: CommandRunner<R, Payment>,
    acquirers: Acquirers,
    vault: Arc<dyn CardVault>,
    pub(crate) clock: Arc<dyn Clock>,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
    card_ranges: CardRanges,
    authorisation_validity: AuthorisationValidity,
    idempotency_locks: KeyLocks,
    pub(crate) key_lock: Arc<dyn KeyLock>,
    /// Risk controls and 3-D Secure; none: neither runs (3DS NOT_PERFORMED).
    pub(crate) security: Option<crate::payment_security::PaymentSecurity<R>>,
}

/// In-process locks per idempotency key: two concurrent requests with the same key
/// in one process run one after the other, so the second replays the first instead
/// of calling the acquirer again. Across processes the unique index still keeps a
/// single payment; see docs/adr/0005.
#[derive(Default)]
struct KeyLocks {
    locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    mutex: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl KeyLocks {
    async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mutex = self
            .locks
            .lock()
            .expect("key locks")
            .entry(key.to_string())
            .or_default()
            .clone();
        let guard = mutex.clone().lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_string(),
            mutex,
            _guard: guard,
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().expect("key locks");
        // The map, this guard and its owned lock hold three references: no waiter.
        if Arc::strong_count(&self.mutex) <= 3 {
            locks.remove(&self.key);
        }
    }
}

/// A payment as a mutation returns it.
pub struct PaymentResult {
    pub payment_id: PaymentId,
    pub payment: Payment,
}

impl<R> PaymentService<R>
where
    R: PersistedEventRepository,
{
    pub fn new(
        repository: R,
        acquirers: Acquirers,
        vault: Arc<dyn CardVault>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
        card_ranges: CardRanges,
    ) -> Self {
        PaymentService {
            runner: CommandRunner::new(repository),
            acquirers,
            vault,
            clock,
            log,
            waiter,
            card_ranges,
            authorisation_validity: AuthorisationValidity::default(),
            idempotency_locks: KeyLocks::default(),
            key_lock: Arc::new(InProcessOnly),
            security: None,
        }
    }

    /// Runs the risk controls and 3-D Secure before every buyer-present payment.
    pub fn with_security(mut self, security: crate::payment_security::PaymentSecurity<R>) -> Self {
        self.security = Some(security);
        self
    }

    /// The risk service, when security is configured.
    pub fn risk(&self) -> Option<&Arc<crate::risk::RiskService<R>>> {
        self.security.as_ref().map(|security| &security.risk)
    }

    /// How long authorisations stay valid, per brand (configuration).
    pub fn with_authorisation_validity(mut self, validity: AuthorisationValidity) -> Self {
        self.authorisation_validity = validity;
        self
    }

    /// Serialises same-key requests across processes too (PostgreSQL deployments).
    pub fn with_key_lock(mut self, key_lock: Arc<dyn KeyLock>) -> Self {
        self.key_lock = key_lock;
        self
    }

    /// Both locks for the request's idempotency key: this process's first, so a
    /// process holds at most one database lock per key.
    async fn lock_idempotency_key(
        &self,
        context: &RequestContext,
    ) -> Result<Option<(KeyGuard<'_>, Box<dyn KeyLease>)>, AppError> {
        match &context.idempotency {
            Some(idempotency) => {
                let guard = self.idempotency_locks.lock(&idempotency.scoped_key).await;
                let lease = self.key_lock.acquire(&idempotency.scoped_key).await?;
                Ok(Some((guard, lease)))
            }
            None => Ok(None),
        }
    }

    pub async fn create(
        &self,
        context: &RequestContext,
        input: CreatePaymentInput,
    ) -> Result<PaymentResult, AppError> {
        let _key_lock = self.lock_idempotency_key(context).await?;
        if let Some(replayed) = self.replay(context).await? {
            return Ok(replayed);
        }
        let shop_id = *context.scope.shop_ids.first().ok_or(AppError::NotFound)?;
        let mode = context.scope.mode;
        let amount = parse_order_amount(&input.amount, &input.currency)?;
        let order_reference = validate_order_reference(&input.order_reference)?;
        let today = self.clock.today();
        let capture_date = capture_date(today, input.capture_delay_days)?;
        validate_capture_trigger(&input)?;
        let buyer_email = validate_email(input.buyer_email)?;
        let buyer_ip = validate_ip(input.buyer_ip)?;
        let buyer_country = validate_country(input.buyer_country)?;
        let buyer_language = validate_language(input.buyer_language)?;
        let mut prepared = self.prepare_card(&input.card, input.channel).await?;
        let brand = prepared.snapshot.brand;
        let authorisation_validity_days = self.authorisation_validity.days_for(brand);
        // Beyond the validity the authorisation would lapse before the capture:
        // check the card now, authorise the day before the capture date (TY-4).
        let deferred_beyond_validity =
            input.capture_delay_days.unwrap_or(0) > authorisation_validity_days;
        let purpose = if deferred_beyond_validity {
            AuthorisationPurpose::CardCheck
        } else {
            AuthorisationPurpose::Payment
        };
        let payment_id = PaymentId::new();
        let verdict = self
            .secure(
                context,
                &mut prepared,
                crate::payment_security::SecurityInput {
                    shop_id,
                    mode,
                    payment_id,
                    amount,
                    channel: input.channel,
                    buyer_ip: buyer_ip.as_deref(),
                    buyer_country: buyer_country.as_deref(),
                },
            )
            .await?;
        use crate::payment_security::SecurityVerdict;
        let (three_ds, risk) = match &verdict {
            SecurityVerdict::Proceed { three_ds, risk }
            | SecurityVerdict::Refused { three_ds, risk, .. }
            | SecurityVerdict::ChallengePending { three_ds, risk, .. } => {
                (three_ds.clone(), risk.clone())
            }
        };
        let mut details = PaymentDetails {
            payment_id,
            shop_id,
            mode,
            order_reference,
            amount,
            channel: input.channel,
            capture_mode: input.capture_mode,
            capture_date,
            capture_trigger: input.capture_trigger,
            card: prepared.snapshot.clone(),
            buyer_email,
            buyer_ip,
            duplicated_from: None,
            instalment_of: None,
            authorisation_validity_days,
            acquirer_contract: self.acquirers.for_mode(mode).contract().to_string(),
            buyer_country,
            buyer_language,
            three_ds,
            risk,
            occurred_at: self.clock.now(),
        };
        let outcome = match verdict {
            SecurityVerdict::Refused { refusal, .. } => {
                // Refused before the acquirer: recorded like any refusal.
                return self
                    .authorise(context, details, AuthorisationOutcome::Declined(refusal))
                    .await;
            }
            SecurityVerdict::ChallengePending { abandon_at, .. } => {
                let command = PaymentCommand::AwaitAuthentication {
                    details: Box::new(details),
                    abandon_at,
                };
                return self.run(context, payment_id, command, true).await;
            }
            SecurityVerdict::Proceed { .. } => {
                self.authorise_present_card(
                    &prepared,
                    mode,
                    purpose,
                    amount,
                    &details.order_reference,
                )
                .await
            }
        };
        details.occurred_at = self.clock.now();
        if deferred_beyond_validity {
            let payment_id = details.payment_id;
            let command = PaymentCommand::AwaitAuthorisation {
                details: Box::new(details),
                card_check: outcome,
            };
            let created = self.run(context, payment_id, command, true).await?;
            self.release_if_refused(context, &created).await?;
            return Ok(created);
        }
        let created = self.authorise(context, details, outcome).await?;
        self.release_if_refused(context, &created).await?;
        Ok(created)
    }

    /// An authorisation with the card the buyer just gave (CVV included when given).
    async fn authorise_present_card(
        &self,
        card: &PreparedCard,
        mode: caisse_domain::Mode,
        purpose: AuthorisationPurpose,
        amount: Money,
        order_reference: &str,
    ) -> AuthorisationOutcome {
        self.acquirers
            .for_mode(mode)
            .authorise(AuthorisationRequest {
                mode,
                purpose,
                pan: &card.pan,
                expiry: card.expiry,
                cvv: card.cvv.as_ref(),
                amount,
                order_reference,
            })
            .await
    }

    /// A merchant-initiated authorisation with the card on file (deferred
    /// authorisation, re-authorisation, later instalments): the PAN comes from
    /// the vault for the call only; a card expired since is refused as the
    /// issuer would (54) without calling the acquirer.
    async fn authorise_card_on_file(
        &self,
        mode: caisse_domain::Mode,
        card: &CardSnapshot,
        amount: Money,
        order_reference: &str,
    ) -> Result<AuthorisationOutcome, AppError> {
        self.authorise_vaulted(
            mode,
            card,
            amount,
            order_reference,
            AuthorisationPurpose::DeferredPayment,
        )
        .await
    }

    /// The authorisation of a buyer-present payment after its 3-D Secure
    /// challenge: the card waited in the vault (the CVV is never kept).
    pub(crate) async fn authorise_vaulted_card(
        &self,
        details: &PaymentDetails,
        purpose: AuthorisationPurpose,
    ) -> Result<AuthorisationOutcome, AppError> {
        let amount = details.amount;
        self.authorise_vaulted(
            details.mode,
            &details.card,
            amount,
            &details.order_reference,
            purpose,
        )
        .await
    }

    async fn authorise_vaulted(
        &self,
        mode: caisse_domain::Mode,
        card: &CardSnapshot,
        amount: Money,
        order_reference: &str,
        purpose: AuthorisationPurpose,
    ) -> Result<AuthorisationOutcome, AppError> {
        let today = self.clock.today();
        let Ok(expiry) = CardExpiry::parse(
            card.expiry.month,
            card.expiry.year,
            today.year(),
            today.month(),
        ) else {
            return Ok(AuthorisationOutcome::Declined(Refusal {
                code: "54".to_string(),
                message: "expired card".to_string(),
                category: RefusalCategory::IssuerDeclined,
            }));
        };
        let pan = self.vault.reveal(&card.token).await?;
        let outcome = self
            .acquirers
            .for_mode(mode)
            .authorise(AuthorisationRequest {
                mode,
                purpose,
                pan: &pan,
                expiry,
                cvv: None,
                amount,
                order_reference,
            })
            .await;
        drop(pan);
        Ok(outcome)
    }

    /// Checks a card given by the buyer (Luhn, brand, expiry, CVV as the channel
    /// requires) and stores it in the vault.
    pub async fn prepare_card(
        &self,
        card: &CardInput,
        channel: Channel,
    ) -> Result<PreparedCard, AppError> {
        let today = self.clock.today();
        let pan = Pan::parse(&card.number).map_err(AppError::card)?;
        let networks = detect_networks(&pan, &self.card_ranges).map_err(AppError::card)?;
        let brand = choose_brand(&networks, card.brand)?;
        let expiry = CardExpiry::parse(
            card.expiry_month,
            card.expiry_year,
            today.year(),
            today.month(),
        )
        .map_err(AppError::card)?;
        let cvv = match &card.cvv {
            Some(text) => Some(Cvv::parse(text, brand).map_err(AppError::card)?),
            None if channel.is_buyer_present_online() => {
                return Err(AppError::Invalid {
                    field: "card.cvv",
                    code: "CVV_REQUIRED",
                    message: "a CVV is required for e-commerce and m-commerce payments".into(),
                })
            }
            None => None,
        };
        let holder_name = validate_holder(card.holder_name.clone())?;
        let vaulted = self.vault.store(&pan).await?;
        let snapshot = CardSnapshot {
            token: vaulted.token,
            bin: pan.bin().to_string(),
            last_four: pan.last_four().to_string(),
            brand,
            networks,
            expiry,
            fingerprint: vaulted.fingerprint,
            holder_name,
            issuing_country: None,
        };
        Ok(PreparedCard {
            pan,
            expiry,
            cvv,
            snapshot,
        })
    }

    /// Authorises one instalment of a payment plan as a payment of its own, with
    /// the id the plan recorded for the attempt. The card is the buyer's (first
    /// instalment, CVV included) or the one on file from the vault (later ones,
    /// merchant-initiated). An attempt whose payment already exists (a crash
    /// after the authorisation) answers that payment: never a second charge.
    pub async fn authorise_instalment(
        &self,
        context: &RequestContext,
        plan: &caisse_domain::plan::PlanDetails,
        number: u32,
        payment_id: PaymentId,
        present_card: Option<&PreparedCard>,
    ) -> Result<PaymentResult, AppError> {
        let existing = self.runner.load(&payment_id.to_string()).await?;
        if existing.details.is_some() {
            return Ok(PaymentResult {
                payment_id,
                payment: existing,
            });
        }
        let planned = plan
            .instalments
            .get((number as usize).wrapping_sub(1))
            .ok_or_else(|| AppError::internal(format!("plan has no instalment {number}")))?;
        let today = self.clock.today();
        let card = &plan.card;
        let order_reference = format!("{}/{number}", plan.order_reference);
        let outcome = match present_card {
            Some(prepared) => {
                self.authorise_present_card(
                    prepared,
                    plan.mode,
                    AuthorisationPurpose::Payment,
                    planned.amount,
                    &order_reference,
                )
                .await
            }
            None => {
                self.authorise_card_on_file(plan.mode, card, planned.amount, &order_reference)
                    .await?
            }
        };
        let details = PaymentDetails {
            payment_id,
            shop_id: plan.shop_id,
            mode: plan.mode,
            order_reference,
            amount: planned.amount,
            channel: plan.channel,
            capture_mode: CaptureMode::Automatic,
            capture_date: today,
            capture_trigger: CaptureTrigger::Date,
            card: card.clone(),
            buyer_email: plan.buyer_email.clone(),
            buyer_ip: None,
            duplicated_from: None,
            instalment_of: Some(caisse_domain::payment::InstalmentOf {
                plan_id: plan.plan_id,
                number,
                kind: Some(plan.kind),
            }),
            authorisation_validity_days: self.authorisation_validity.days_for(card.brand),
            acquirer_contract: self.acquirers.for_mode(plan.mode).contract().to_string(),
            buyer_country: None,
            buyer_language: None,
            three_ds: Default::default(),
            risk: Default::default(),
            occurred_at: self.clock.now(),
        };
        self.authorise(context, details, outcome).await
    }

    /// The authorisation of a payment deferred beyond the validity, asked by the
    /// scheduler the day before its capture date. The card comes from the vault;
    /// a refusal is final and recorded as such.
    pub async fn authorise_deferred(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
    ) -> Result<PaymentResult, AppError> {
        let payment = self.runner.load(&payment_id.to_string()).await?;
        let details = payment.visible_details(&context.scope)?.clone();
        if payment.status != caisse_domain::payment::PaymentStatus::WaitingAuthorisation {
            return Err(PaymentError::NotWaitingAuthorisation {
                status: payment.status.as_str().to_string(),
            }
            .into());
        }
        let outcome = self
            .authorise_card_on_file(
                details.mode,
                &details.card,
                payment.amount.expect("an existing payment has an amount"),
                &details.order_reference,
            )
            .await?;
        let command = PaymentCommand::CompleteDeferredAuthorisation {
            outcome,
            occurred_at: self.clock.now(),
        };
        self.run(context, payment_id, command, false).await
    }

    async fn authorise(
        &self,
        context: &RequestContext,
        details: PaymentDetails,
        outcome: AuthorisationOutcome,
    ) -> Result<PaymentResult, AppError> {
        let payment_id = details.payment_id;
        let command = PaymentCommand::Authorise {
            details: Box::new(details),
            outcome,
        };
        self.run(context, payment_id, command, true).await
    }

    pub async fn validate(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
    ) -> Result<PaymentResult, AppError> {
        let command = PaymentCommand::Validate {
            scope: context.scope.clone(),
            occurred_at: self.clock.now(),
        };
        self.run_idempotent(context, payment_id, |_| Ok(command.clone()))
            .await
    }

    pub async fn modify(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        amount: Option<String>,
        capture_date: Option<NaiveDate>,
    ) -> Result<PaymentResult, AppError> {
        let (today, occurred_at) = (self.clock.today(), self.clock.now());
        let build = |payment: &Payment| {
            let amount = match &amount {
                Some(text) => Some(amount_in_currency_of(payment, &context.scope, text)?),
                None => None,
            };
            Ok(PaymentCommand::Modify {
                scope: context.scope.clone(),
                amount,
                capture_date,
                today,
                occurred_at,
            })
        };
        self.run_idempotent(context, payment_id, build).await
    }

    /// The merchant shipped the order (TY-6): a payment captured at shipping
    /// becomes due at the next cut-off.
    pub async fn declare_shipping(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        carrier: Option<String>,
        tracking_number: Option<String>,
    ) -> Result<PaymentResult, AppError> {
        let carrier = validate_free_text("carrier", carrier)?;
        let tracking_number = validate_free_text("trackingNumber", tracking_number)?;
        let command = PaymentCommand::DeclareShipping {
            scope: context.scope.clone(),
            carrier,
            tracking_number,
            today: self.clock.today(),
            occurred_at: self.clock.now(),
        };
        self.run_idempotent(context, payment_id, |_| Ok(command.clone()))
            .await
    }

    /// The order reached the buyer (TY-7): a payment captured at delivery
    /// becomes due at the next cut-off.
    pub async fn declare_delivery(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
    ) -> Result<PaymentResult, AppError> {
        let command = PaymentCommand::DeclareDelivery {
            scope: context.scope.clone(),
            today: self.clock.today(),
            occurred_at: self.clock.now(),
        };
        self.run_idempotent(context, payment_id, |_| Ok(command.clone()))
            .await
    }

    /// The scheduler's answer to an authorisation that lapsed: a payment still
    /// waiting for shipping or delivery on a brand configured for it gets a new
    /// authorisation (PaymentReauthorised, or PaymentExpired if refused); any
    /// other lapses (PaymentExpired).
    pub async fn expire_or_reauthorise(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
    ) -> Result<PaymentResult, AppError> {
        let payment = self.runner.load(&payment_id.to_string()).await?;
        let details = payment.visible_details(&context.scope)?.clone();
        let brand = details.card.brand;
        let reauthorise = payment.status == caisse_domain::payment::PaymentStatus::Authorised
            && payment.waits_for_a_declaration()
            && self.authorisation_validity.reauthorises(brand)
            && payment.reauthorisations < self.authorisation_validity.reauthorisations_max
            && payment
                .authorisation_expires_at()
                .is_some_and(|expires_at| expires_at <= self.clock.now());
        let reauthorisation = if reauthorise {
            let outcome = self
                .authorise_card_on_file(
                    details.mode,
                    &details.card,
                    payment.amount.expect("an existing payment has an amount"),
                    &details.order_reference,
                )
                .await?;
            Some(caisse_domain::payment::Reauthorisation {
                outcome,
                validity_days: self.authorisation_validity.days_for(brand),
            })
        } else {
            None
        };
        let command = PaymentCommand::Expire {
            reauthorisation,
            occurred_at: self.clock.now(),
        };
        self.run(context, payment_id, command, false).await
    }

    pub async fn cancel(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
    ) -> Result<PaymentResult, AppError> {
        let command = PaymentCommand::Cancel {
            scope: context.scope.clone(),
            occurred_at: self.clock.now(),
        };
        self.run_idempotent(context, payment_id, |_| Ok(command.clone()))
            .await
    }

    pub async fn refund(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        amount: String,
    ) -> Result<PaymentResult, AppError> {
        // One refund id for every attempt: a conflict retry is the same refund.
        let (refund_id, occurred_at) = (RefundId::new(), self.clock.now());
        let build = |payment: &Payment| {
            Ok(PaymentCommand::Refund {
                scope: context.scope.clone(),
                refund_id,
                amount: amount_in_currency_of(payment, &context.scope, &amount)?,
                occurred_at,
            })
        };
        self.run_idempotent(context, payment_id, build).await
    }

    /// CM-3: a new authorisation on the card of an earlier payment.
    pub async fn duplicate(
        &self,
        context: &RequestContext,
        source_id: PaymentId,
        amount: String,
        order_reference: String,
    ) -> Result<PaymentResult, AppError> {
        let _key_lock = self.lock_idempotency_key(context).await?;
        if let Some(replayed) = self.replay(context).await? {
            // The first attempt may have stopped between creating the new payment
            // and linking it on the source: a retry completes the link.
            let source = self.runner.load(&source_id.to_string()).await?;
            if !source.duplicates.contains(&replayed.payment_id) {
                let link = PaymentCommand::RecordDuplicate {
                    scope: context.scope.clone(),
                    new_payment_id: replayed.payment_id,
                    amount: replayed
                        .payment
                        .details
                        .as_ref()
                        .map(|d| d.amount)
                        .ok_or(AppError::NotFound)?,
                    occurred_at: self.clock.now(),
                };
                self.run(context, source_id, link, false).await?;
            }
            return Ok(replayed);
        }
        let source = self.runner.load(&source_id.to_string()).await?;
        let source_details = source.ensure_duplicable(&context.scope)?.clone();
        let amount = Money::parse_positive(&amount, source_details.amount.currency().code())
            .map_err(AppError::money("amount"))?;
        let order_reference = validate_order_reference(&order_reference)?;
        let today = self.clock.today();
        let card = source_details.card.clone();
        let expiry = CardExpiry::parse(
            card.expiry.month,
            card.expiry.year,
            today.year(),
            today.month(),
        )
        .map_err(AppError::card)?;
        let pan = self.vault.reveal(&card.token).await?;
        let outcome = self
            .acquirers
            .for_mode(source_details.mode)
            .authorise(AuthorisationRequest {
                mode: source_details.mode,
                purpose: AuthorisationPurpose::Payment,
                pan: &pan,
                expiry,
                cvv: None,
                amount,
                order_reference: &order_reference,
            })
            .await;
        drop(pan);
        let new_payment_id = PaymentId::new();
        let details = PaymentDetails {
            payment_id: new_payment_id,
            shop_id: source_details.shop_id,
            mode: source_details.mode,
            order_reference,
            amount,
            channel: source_details.channel,
            capture_mode: source_details.capture_mode,
            capture_date: today,
            // A duplicate is a new order paid now: captured on its date.
            capture_trigger: CaptureTrigger::Date,
            card,
            buyer_email: source_details.buyer_email.clone(),
            buyer_ip: None,
            duplicated_from: Some(source_id),
            instalment_of: None,
            authorisation_validity_days: self
                .authorisation_validity
                .days_for(source_details.card.brand),
            acquirer_contract: self
                .acquirers
                .for_mode(source_details.mode)
                .contract()
                .to_string(),
            // A merchant-initiated payment on the card on file: no 3-D Secure,
            // no guarantee.
            buyer_country: source_details.buyer_country.clone(),
            buyer_language: source_details.buyer_language.clone(),
            three_ds: Default::default(),
            risk: Default::default(),
            occurred_at: self.clock.now(),
        };
        let created = self.authorise(context, details, outcome).await?;
        let link = PaymentCommand::RecordDuplicate {
            scope: context.scope.clone(),
            new_payment_id,
            amount,
            occurred_at: self.clock.now(),
        };
        self.run(context, source_id, link, false).await?;
        Ok(created)
    }

    /// A command on an existing payment, under its idempotency key: an earlier
    /// request with the key is replayed, otherwise the command is built from the
    /// payment as loaded to run it.
    async fn run_idempotent(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        build_command: impl Fn(&Payment) -> Result<PaymentCommand, AppError>,
    ) -> Result<PaymentResult, AppError> {
        let _key_lock = self.lock_idempotency_key(context).await?;
        if let Some(replayed) = self.replay(context).await? {
            return Ok(replayed);
        }
        self.run_with(context, payment_id, build_command, true)
            .await
    }

    /// Runs a command without idempotency key, waiting for the views.
    pub(crate) async fn run_command(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        command: PaymentCommand,
    ) -> Result<PaymentResult, AppError> {
        self.run(context, payment_id, command, false).await
    }

    /// Executes, then waits until the views show the new events.
    async fn run(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        command: PaymentCommand,
        with_idempotency: bool,
    ) -> Result<PaymentResult, AppError> {
        self.run_with(
            context,
            payment_id,
            |_| Ok(command.clone()),
            with_idempotency,
        )
        .await
    }

    /// `run` with the command built from the payment as loaded for it.
    async fn run_with(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        build_command: impl Fn(&Payment) -> Result<PaymentCommand, AppError>,
        with_idempotency: bool,
    ) -> Result<PaymentResult, AppError> {
        let aggregate_id = payment_id.to_string();
        let metadata = context.metadata(with_idempotency);
        let executed = match self
            .runner
            .execute_with(&aggregate_id, build_command, metadata)
            .await
        {
            Ok(executed) => executed,
            Err(error @ (AppError::Internal(_) | AppError::ConcurrencyExhausted))
                if with_idempotency =>
            {
                // A concurrent request with the same key may have won the unique index.
                return match self.replay(context).await? {
                    Some(replayed) => Ok(replayed),
                    None => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        self.wait_for_views(&aggregate_id, &executed).await?;
        Ok(PaymentResult {
            payment_id,
            payment: executed.aggregate,
        })
    }

    async fn wait_for_views(
        &self,
        aggregate_id: &str,
        executed: &Executed<Payment>,
    ) -> Result<(), AppError> {
        if executed.events.is_empty() {
            return Ok(());
        }
        let position = self
            .log
            .position_of(Payment::TYPE, aggregate_id, executed.last_sequence())
            .await?;
        self.waiter.wait_for(position).await;
        Ok(())
    }

    /// The first result of an earlier request with the same idempotency key.
    async fn replay(&self, context: &RequestContext) -> Result<Option<PaymentResult>, AppError> {
        let Some(idempotency) = &context.idempotency else {
            return Ok(None);
        };
        let Some(record) = self.log.find_idempotent(&idempotency.scoped_key).await? else {
            return Ok(None);
        };
        if record.request_hash != idempotency.request_hash || record.aggregate_type != Payment::TYPE
        {
            return Err(AppError::IdempotencyKeyReused);
        }
        let payment = self
            .runner
            .load_at(&record.aggregate_id, record.sequence)
            .await?;
        let payment_id = PaymentId::parse(&record.aggregate_id)
            .ok_or_else(|| AppError::internal("bad payment id in log"))?;
        Ok(Some(PaymentResult {
            payment_id,
            payment,
        }))
    }

    pub fn runner(&self) -> &CommandRunner<R, Payment> {
        &self.runner
    }
}

/// Reads a merchant's amount in the currency of a payment the caller may see; a
/// payment the caller may not see is not found, whatever the amount says.
fn amount_in_currency_of(
    payment: &Payment,
    scope: &AccessScope,
    text: &str,
) -> Result<Money, AppError> {
    payment.visible_details(scope)?;
    let currency = payment
        .amount
        .expect("visible payments have an amount")
        .currency();
    Money::parse_positive(text, currency.code()).map_err(AppError::money("amount"))
}

fn choose_brand(
    networks: &[CardBrand],
    requested: Option<CardBrand>,
) -> Result<CardBrand, AppError> {
    match requested {
        None => Ok(networks[0]),
        Some(brand) if networks.contains(&brand) => Ok(brand),
        Some(brand) => Err(AppError::card(
            caisse_domain::card::CardError::BrandNotOnCard(brand.as_str().to_string()),
        )),
    }
}

fn capture_date(today: NaiveDate, delay_days: Option<u32>) -> Result<NaiveDate, AppError> {
    let days = delay_days.unwrap_or(0);
    if days > CAPTURE_DELAY_DAYS_MAX {
        return Err(AppError::Invalid {
            field: "captureDelayDays",
            code: "CAPTURE_DELAY_OUT_OF_RANGE",
            message: format!("must be between 0 and {CAPTURE_DELAY_DAYS_MAX}"),
        });
    }
    Ok(today + Days::new(u64::from(days)))
}

/// An order's amount and currency as the merchant gives them; an unknown
/// currency names the `currency` field, any other problem the `amount` field.
pub(crate) fn parse_order_amount(amount: &str, currency: &str) -> Result<Money, AppError> {
    Money::parse_positive(amount, currency).map_err(|error| {
        let field = if matches!(error, caisse_domain::MoneyError::UnknownCurrency(_)) {
            "currency"
        } else {
            "amount"
        };
        AppError::Money {
            field,
            source: error,
        }
    })
}

pub(crate) fn validate_order_reference(text: &str) -> Result<String, AppError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().count() > ORDER_REFERENCE_LENGTH_MAX {
        return Err(AppError::Invalid {
            field: "orderReference",
            code: "INVALID_ORDER_REFERENCE",
            message: format!("must be 1 to {ORDER_REFERENCE_LENGTH_MAX} characters"),
        });
    }
    if contains_card_number(trimmed) {
        return Err(AppError::Invalid {
            field: "orderReference",
            code: "INVALID_ORDER_REFERENCE",
            message: "looks like a card number; card numbers go in card.number only".into(),
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(AppError::Invalid {
            field: "orderReference",
            code: "INVALID_ORDER_REFERENCE",
            message: "must not contain control characters".into(),
        });
    }
    Ok(trimmed.to_string())
}

/// Whether free text carries something that looks like a card number: 13 to 19
/// Luhn-valid digits, written together or in groups separated by one space or
/// dash ("4970 1000 0000 0006"), as `card.number` itself accepts, that start like
/// a card of a known scheme (or with 6: private-label, Maestro, UnionPay…). Such
/// text is refused so a PAN typed into the wrong field never reaches the log.
/// The scheme check keeps false alarms on numeric order references rare: a random
/// Luhn-valid 16-digit reference starting with 1, 7, 8, 9 or 0 is never refused.
fn contains_card_number(text: &str) -> bool {
    // Runs of digit groups joined by single separators.
    let mut runs: Vec<Vec<String>> = vec![vec![String::new()]];
    let mut previous: Option<char> = None;
    for c in text.chars() {
        let run = runs.last_mut().expect("never empty");
        if c.is_ascii_digit() {
            run.last_mut().expect("never empty").push(c);
        } else if (c == ' ' || c == '-') && previous.is_some_and(|p| p.is_ascii_digit()) {
            run.push(String::new());
        } else {
            runs.push(vec![String::new()]);
        }
        previous = Some(c);
    }
    runs.iter().any(|groups| {
        let groups: Vec<&String> = groups.iter().filter(|g| !g.is_empty()).collect();
        (0..groups.len()).any(|start| {
            let mut digits = String::new();
            groups[start..].iter().any(|group| {
                digits.push_str(group);
                looks_like_card_number(&digits)
            })
        })
    })
}

fn looks_like_card_number(digits: &str) -> bool {
    use caisse_domain::card::{detect_networks, CardRanges, Pan};
    let Ok(pan) = Pan::parse(digits) else {
        return false;
    };
    digits.starts_with('6') || detect_networks(&pan, &CardRanges::default()).is_ok()
}

/// Shipping and delivery triggers capture on the merchant's declaration: they
/// need automatic capture and no capture delay of their own.
fn validate_capture_trigger(input: &CreatePaymentInput) -> Result<(), AppError> {
    if input.capture_trigger == CaptureTrigger::Date {
        return Ok(());
    }
    if input.capture_mode == CaptureMode::Manual {
        return Err(AppError::Invalid {
            field: "captureTrigger",
            code: "INVALID_CAPTURE_TRIGGER",
            message: "SHIPPING and DELIVERY capture on the declaration; they cannot be combined with MANUAL capture".into(),
        });
    }
    if input.capture_delay_days.unwrap_or(0) > 0 {
        return Err(AppError::Invalid {
            field: "captureTrigger",
            code: "INVALID_CAPTURE_TRIGGER",
            message: "SHIPPING and DELIVERY capture on the declaration; they cannot be combined with captureDelayDays".into(),
        });
    }
    Ok(())
}

/// Optional short text from the merchant (carrier, tracking number): trimmed,
/// at most 100 characters, no control characters and no card number.
fn validate_free_text(
    field: &'static str,
    text: Option<String>,
) -> Result<Option<String>, AppError> {
    let Some(text) = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let invalid = |message: &str| AppError::Invalid {
        field,
        code: "INVALID_TEXT",
        message: message.to_string(),
    };
    if text.chars().count() > 100 {
        return Err(invalid("must be at most 100 characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters"));
    }
    if contains_card_number(&text) {
        return Err(invalid(
            "looks like a card number; card numbers go in card.number only",
        ));
    }
    Ok(Some(text))
}

pub(crate) fn validate_email(email: Option<String>) -> Result<Option<String>, AppError> {
    let Some(email) = email
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
    else {
        return Ok(None);
    };
    let shape_ok = email.len() <= EMAIL_LENGTH_MAX
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !contains_card_number(&email);
    if !shape_ok {
        return Err(AppError::Invalid {
            field: "buyerEmail",
            code: "INVALID_EMAIL",
            message: "not an e-mail address".into(),
        });
    }
    Ok(Some(email))
}

fn validate_ip(ip: Option<String>) -> Result<Option<String>, AppError> {
    let Some(ip) = ip.map(|i| i.trim().to_string()).filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    let parsed: std::net::IpAddr = ip.parse().map_err(|_| AppError::Invalid {
        field: "buyerIp",
        code: "INVALID_IP_ADDRESS",
        message: "not an IPv4 or IPv6 address".into(),
    })?;
    Ok(Some(parsed.to_string()))
}

fn validate_country(country: Option<String>) -> Result<Option<String>, AppError> {
    let Some(country) = country
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())
    else {
        return Ok(None);
    };
    if caisse_domain::risk::is_country_code(&country) {
        Ok(Some(country))
    } else {
        Err(AppError::Invalid {
            field: "buyerCountry",
            code: "INVALID_COUNTRY",
            message: "an ISO 3166-1 alpha-2 country code (two letters, e.g. FR)".into(),
        })
    }
}

fn validate_language(language: Option<String>) -> Result<Option<String>, AppError> {
    let Some(language) = language
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
    else {
        return Ok(None);
    };
    caisse_domain::notification::normalise_language(&language)
        .map(|language| Some(language.to_string()))
        .ok_or_else(|| AppError::Invalid {
            field: "buyerLanguage",
            code: "INVALID_LANGUAGE",
            message: format!(
                "one of {} (case-insensitive)",
                caisse_domain::notification::LANGUAGES.join(", ")
            ),
        })
}

fn validate_holder(holder: Option<String>) -> Result<Option<String>, AppError> {
    let Some(holder) = holder
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
    else {
        return Ok(None);
    };
    // A holder name made of digits is how a card number ends up in the wrong field.
    let digits = holder.chars().filter(char::is_ascii_digit).count();
    if holder.chars().count() > HOLDER_NAME_LENGTH_MAX
        || digits > 4
        || holder.chars().any(char::is_control)
    {
        return Err(AppError::Invalid {
            field: "card.holderName",
            code: "INVALID_HOLDER_NAME",
            message: format!("must be at most {HOLDER_NAME_LENGTH_MAX} characters, without digits"),
        });
    }
    Ok(Some(holder))
}

#[cfg(test)]
mod tests {
    use super::contains_card_number;

    #[test]
    fn card_numbers_are_found_in_free_text_however_they_are_grouped() {
        assert!(contains_card_number("ORDER-4970100000000006"));
        assert!(contains_card_number("order 4970 1000 0000 0006 thanks"));
        assert!(contains_card_number("4970-1000-0000-0006"));
        assert!(contains_card_number("ref 12 4970 1000 0000 0006"));
        assert!(!contains_card_number("ORDER-4970100000000007"));
        assert!(!contains_card_number("ORD-2026-11-26-0001"));
        assert!(!contains_card_number("invoice 12345"));
        // Luhn-valid, but no card scheme starts with 1, 7, 8 or 9.
        assert!(!contains_card_number("ORD-1000000000000008"));
        assert!(!contains_card_number("ORD-7000000000000005"));
        assert!(contains_card_number("ORD-6036160000000007"));
    }
}
