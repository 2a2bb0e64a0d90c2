//! The outside services the use cases need, as traits; adapters implement them.

use async_trait::async_trait;
use caisse_domain::card::{CardExpiry, Cvv, Pan};
use caisse_domain::payment::AuthorisationOutcome;
use caisse_domain::{Currency, Mode, Money, PaymentId, ShopId};
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::AppError;

/// Time, injected so tests can move it instead of sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// The business date used for capture dates and remittances.
    fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub struct AuthorisationRequest<'a> {
    pub mode: Mode,
    pub purpose: AuthorisationPurpose,
    pub pan: &'a Pan,
    pub expiry: CardExpiry,
    /// Absent for merchant-initiated payments such as duplicates.
    pub cvv: Option<&'a Cvv>,
    pub amount: Money,
    pub order_reference: &'a str,
}

/// Why the acquirer is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorisationPurpose {
    /// Hold the amount for a capture within the authorisation validity.
    Payment,
    /// Check the card only (no hold), for a capture beyond the validity (TY-4).
    CardCheck,
    /// The real authorisation of a payment deferred beyond the validity, asked
    /// the day before its capture date, without the buyer (merchant-initiated).
    DeferredPayment,
}

/// The acquiring bank's authorisation service.
#[async_trait]
pub trait Acquirer: Send + Sync {
    /// Always answers: a technical failure is a declined outcome with a technical
    /// refusal, so the attempt is recorded rather than lost.
    async fn authorise(&self, request: AuthorisationRequest<'_>) -> AuthorisationOutcome;

    /// The name of the acquirer contract this acquirer authorises under. Payments
    /// record it; the remittance sends each contract's payments and refunds apart.
    fn contract(&self) -> &str;
}

pub struct VaultedCard {
    pub token: String,
    pub fingerprint: String,
}

/// Keeps card numbers encrypted behind tokens.
#[async_trait]
pub trait CardVault: Send + Sync {
    async fn store(&self, pan: &Pan) -> Result<VaultedCard, AppError>;
    async fn reveal(&self, token: &str) -> Result<Pan, AppError>;
    /// The card's fingerprint (keyed HMAC of the PAN), without storing it: how
    /// a merchant grey-lists a card by its number (RC-1).
    fn fingerprint(&self, pan: &Pan) -> String;
}

/// What the 3-D Secure server is asked before an authorisation (SE-1).
pub struct ThreeDsRequest<'a> {
    pub mode: Mode,
    pub payment_id: caisse_domain::PaymentId,
    pub pan: &'a Pan,
    pub brand: caisse_domain::card::CardBrand,
    pub amount: Money,
}

/// The 3-D Secure server's first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreeDsAnswer {
    /// The outcome is final: frictionless (Y or A), failed (N), card not
    /// enrolled, or directory unavailable (U).
    Final(caisse_domain::three_ds::ThreeDsResult),
    /// The issuer wants a challenge; its result comes later, for this transaction.
    ChallengeRequired { transaction_id: String },
}

/// The result of a challenge, as the ACS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeResult {
    Success,
    Failure,
}

/// The 3-D Secure server (directory and ACS behind it). Never fails: a
/// technical failure is a result with status UNAVAILABLE.
#[async_trait]
pub trait ThreeDsServer: Send + Sync {
    async fn authenticate(&self, request: ThreeDsRequest<'_>) -> ThreeDsAnswer;

    /// The final result once the challenge of `transaction_id` is answered.
    async fn complete_challenge(
        &self,
        transaction_id: &str,
        result: ChallengeResult,
    ) -> caisse_domain::three_ds::ThreeDsResult;
}

/// One grey-list entry as the `grey_list_entries` view holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyListRow {
    pub entry_id: String,
    pub kind: caisse_domain::grey_list::GreyListKind,
    pub value: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    /// Removed entries come once more, so a cache drops them.
    pub removed: bool,
    /// A per-shop counter the grey-list view raises on every change, in the
    /// order its projector applies them (not the global position, which on
    /// PostgreSQL is not commit order), so `seq > n` never misses a change.
    pub seq: i64,
}

/// The grey lists view, read incrementally by the in-memory index of each
/// shop: one indexed query per payment when nothing changed.
#[async_trait]
pub trait GreyListSource: Send + Sync {
    /// Entries of the shop changed after `after_seq` (all of them from 0),
    /// removed ones included, in `seq` order.
    async fn changed_since(
        &self,
        shop_id: caisse_domain::ShopId,
        after_seq: i64,
    ) -> Result<Vec<GreyListRow>, AppError>;
}

/// Position of an event in the global log: commit order on PostgreSQL is
/// `(tx_id, global_position)`; on SQLite `tx_id` is always 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPosition {
    pub tx_id: u64,
    pub global_position: i64,
}

/// An earlier command that carried the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRecord {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: usize,
    pub request_hash: String,
}

/// Our own reads of the event log that cqrs-es does not offer.
#[async_trait]
pub trait EventLog: Send + Sync {
    async fn find_idempotent(&self, scoped_key: &str)
        -> Result<Option<IdempotentRecord>, AppError>;
    async fn position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<LogPosition, AppError>;
    /// The position of an aggregate's latest event (the start of the log if none).
    async fn last_position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<LogPosition, AppError>;
}

/// Lets a mutation wait until the views include its own events (read-your-writes).
#[async_trait]
pub trait ProjectionWaiter: Send + Sync {
    /// Returns when every projection has passed `position`, or after a bounded wait.
    async fn wait_for(&self, position: LogPosition);
}

/// A payment the remittance should capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePayment {
    pub payment_id: PaymentId,
    pub currency: Currency,
    /// The acquirer contract the payment was authorised under.
    pub contract: String,
}

/// A refund not yet sent to the bank, of a payment whose capture was remitted:
/// the next remittance of its shop, mode, currency and contract carries it as a
/// credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRefund {
    pub payment_id: PaymentId,
    pub refund_id: caisse_domain::ids::RefundId,
    pub currency: Currency,
    pub contract: String,
}

/// A payment captured under a remittance id that has no `RemittanceSubmitted`:
/// what a crash between the captures and the remittance record leaves behind (or
/// a remittance still running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanCapture {
    pub remittance_id: caisse_domain::RemittanceId,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub contract: String,
    /// When the payment last changed: the capture or later.
    pub changed_at: DateTime<Utc>,
}

/// A refund remitted (`RefundRemitted`) under a remittance id that has no
/// `RemittanceSubmitted`: the same crash, for credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanRefund {
    pub remittance_id: caisse_domain::RemittanceId,
    pub payment_id: PaymentId,
    pub refund_id: caisse_domain::ids::RefundId,
    pub amount: Money,
    pub contract: String,
    pub remitted_at: DateTime<Utc>,
}

/// The read side's list of payments due for capture.
#[async_trait]
pub trait DuePayments: Send + Sync {
    async fn list_due(
        &self,
        shop_id: ShopId,
        mode: Mode,
        today: NaiveDate,
    ) -> Result<Vec<DuePayment>, AppError>;

    /// Captures of the shop and mode whose remittance is not recorded.
    async fn orphan_captures(
        &self,
        shop_id: ShopId,
        mode: Mode,
    ) -> Result<Vec<OrphanCapture>, AppError>;

    /// Refunds of the shop and mode not yet sent to the bank, oldest first.
    async fn pending_refunds(
        &self,
        shop_id: ShopId,
        mode: Mode,
    ) -> Result<Vec<PendingRefund>, AppError>;

    /// Refunds of the shop and mode remitted under a remittance that is not recorded.
    async fn orphan_refunds(
        &self,
        shop_id: ShopId,
        mode: Mode,
    ) -> Result<Vec<OrphanRefund>, AppError>;
}

/// Held while a request with an idempotency key runs; dropping it releases the key.
pub trait KeyLease: Send + Sync {}

/// Serialises requests carrying the same idempotency key across processes, so a
/// repeat reaching another `caisse serve` waits and replays instead of calling
/// the acquirer a second time.
#[async_trait]
pub trait KeyLock: Send + Sync {
    async fn acquire(&self, scoped_key: &str) -> Result<Box<dyn KeyLease>, AppError>;
    /// The lock if nobody holds it, without waiting: a scheduler skips work another
    /// process is doing.
    async fn try_acquire(&self, scoped_key: &str) -> Result<Option<Box<dyn KeyLease>>, AppError>;
}

/// For a single process (the embedded SQLite default): the in-process lock of the
/// payment service is all there is to it.
pub struct InProcessOnly;

struct NoLease;
impl KeyLease for NoLease {}

#[async_trait]
impl KeyLock for InProcessOnly {
    async fn try_acquire(&self, _scoped_key: &str) -> Result<Option<Box<dyn KeyLease>>, AppError> {
        Ok(Some(Box::new(NoLease)))
    }

    async fn acquire(&self, _scoped_key: &str) -> Result<Box<dyn KeyLease>, AppError> {
        Ok(Box::new(NoLease))
    }
}

/// A clock that only moves when told to: tests and benchmarks use it to move
/// time forward instead of sleeping.
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: std::sync::Mutex::new(start),
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().expect("clock lock") = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }
}

/// One piece of work the scheduler must do once its time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledItem {
    /// Stable across restarts and processes: the lock key of the work.
    pub item_id: String,
    pub kind: ScheduledKind,
    pub shop_id: caisse_domain::ShopId,
    pub mode: caisse_domain::Mode,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledKind {
    /// An authorisation nobody validated has lapsed: the payment expires.
    ExpireAuthorisation {
        payment_id: caisse_domain::PaymentId,
    },
    /// The shop's daily remittance cut-off of a business day.
    RemittanceCutOff { business_date: NaiveDate },
    /// The real authorisation of a payment deferred beyond the validity (TY-4).
    AuthoriseDeferred {
        payment_id: caisse_domain::PaymentId,
    },
    /// An instalment of a payment plan falls due, or its retry (TY-1, TY-2, TY-5).
    ChargeInstalment {
        plan_id: caisse_domain::ids::PlanId,
        number: u32,
    },
    /// A 3-D Secure challenge nobody answered in time: the payment is abandoned.
    AbandonAuthentication {
        payment_id: caisse_domain::PaymentId,
    },
}

impl ScheduledKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ScheduledKind::ExpireAuthorisation { .. } => "EXPIRE_AUTHORISATION",
            ScheduledKind::RemittanceCutOff { .. } => "REMITTANCE_CUT_OFF",
            ScheduledKind::AuthoriseDeferred { .. } => "AUTHORISE_DEFERRED",
            ScheduledKind::ChargeInstalment { .. } => "CHARGE_INSTALMENT",
            ScheduledKind::AbandonAuthentication { .. } => "ABANDON_AUTHENTICATION",
        }
    }
}

/// The scheduler's list of due work, derived from events (the `schedule` view).
#[async_trait]
pub trait ScheduledWork: Send + Sync {
    /// Items due at `now`, soonest first, at most `limit`.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ScheduledItem>, AppError>;
}

/// Why a webhook URL is refused (scheme, port, forbidden address…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRefusal {
    pub code: &'static str,
    pub message: String,
}

/// Checks a merchant's webhook URL before it is registered: http(s), an
/// allowed port, and every address it resolves to outside the private,
/// loopback, link-local, CGNAT, multicast and metadata ranges (unless the
/// operator allows them). The sender checks again at connect time.
#[async_trait]
pub trait WebhookUrlGuard: Send + Sync {
    async fn check(&self, url: &str) -> Result<(), UrlRefusal>;
}

/// The webhook signing secrets, encrypted beside the log (never in an event).
#[async_trait]
pub trait WebhookSecrets: Send + Sync {
    async fn store(
        &self,
        endpoint_id: caisse_domain::ids::WebhookEndpointId,
        version: u32,
        secret: &str,
    ) -> Result<(), AppError>;
    /// The secret of `version`, if stored.
    async fn secret(
        &self,
        endpoint_id: caisse_domain::ids::WebhookEndpointId,
        version: u32,
    ) -> Result<Option<String>, AppError>;
}
