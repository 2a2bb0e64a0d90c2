//! Read-side queries over the views, shared by GraphQL and the CLI.

use async_trait::async_trait;
use caisse_application::ports::{
    DuePayment, DuePayments, OrphanCapture, OrphanRefund, PendingRefund,
};
use caisse_application::AppError;
use caisse_domain::{Currency, Mode, PaymentId, ShopId};
use caisse_infrastructure::time::date_text;
use caisse_infrastructure::{Db, SqlRow, SqlValue};
use chrono::NaiveDate;

/// Largest page a list query returns.
pub const PAGE_SIZE_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub payment_id: String,
    pub shop_id: String,
    pub mode: String,
    pub order_reference: String,
    pub status: String,
    pub currency: String,
    pub amount_milli: i64,
    pub authorised_milli: i64,
    pub captured_milli: i64,
    pub refunded_milli: i64,
    pub channel: String,
    pub capture_mode: String,
    pub capture_date: String,
    pub card_brand: String,
    pub card_networks: String,
    pub card_bin: String,
    pub card_last_four: String,
    pub card_expiry_month: i64,
    pub card_expiry_year: i64,
    pub card_holder_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_ip: Option<String>,
    pub authorisation_code: Option<String>,
    pub refusal_code: Option<String>,
    pub refusal_message: Option<String>,
    pub remittance_id: Option<String>,
    pub duplicated_from: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_sequence: i64,
    /// DATE, SHIPPING or DELIVERY (TY-6, TY-7).
    pub capture_trigger: String,
    /// PAY_AT_ORDER, DEFERRED, AT_SHIPPING, AT_DELIVERY, PAY_IN_3, PAY_IN_N or
    /// DEPOSIT_AND_BALANCE (TY-1..7).
    pub typology: String,
    pub shipped_at: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub delivered_at: Option<String>,
    /// The payment plan of an instalment (TY-1, TY-2, TY-5) and its number.
    pub plan_id: Option<String>,
    pub instalment_number: Option<i64>,
    /// 3-D Secure (SE-1): ENROLLED, NOT_ENROLLED, UNKNOWN or NOT_CHECKED.
    pub three_ds_enrolled: String,
    /// AUTHENTICATED, ATTEMPTED, FAILED, UNAVAILABLE, CHALLENGE_PENDING or NOT_PERFORMED.
    pub three_ds_status: String,
    pub three_ds_transaction_id: Option<String>,
    /// The payment guarantee (SE-2): YES, NO or UNKNOWN.
    pub guarantee: String,
    /// The risk controls' verdict (RC-1..8): ACCEPTED, FLAGGED or REFUSED.
    pub risk_outcome: String,
    /// The controls that fired, comma-separated.
    pub risk_fired: Option<String>,
    /// The buyer's declared country and the card's issuing country (ISO alpha-2).
    pub buyer_country: Option<String>,
    pub card_country: Option<String>,
}

impl PaymentRow {
    fn from_row(row: &SqlRow) -> Self {
        PaymentRow {
            payment_id: row.text("payment_id"),
            shop_id: row.text("shop_id"),
            mode: row.text("mode"),
            order_reference: row.text("order_reference"),
            status: row.text("status"),
            currency: row.text("currency"),
            amount_milli: row.int("amount_milli"),
            authorised_milli: row.int("authorised_milli"),
            captured_milli: row.int("captured_milli"),
            refunded_milli: row.int("refunded_milli"),
            channel: row.text("channel"),
            capture_mode: row.text("capture_mode"),
            capture_date: row.text("capture_date"),
            card_brand: row.text("card_brand"),
            card_networks: row.text("card_networks"),
            card_bin: row.text("card_bin"),
            card_last_four: row.text("card_last_four"),
            card_expiry_month: row.int("card_expiry_month"),
            card_expiry_year: row.int("card_expiry_year"),
            card_holder_name: row.opt_text("card_holder_name"),
            buyer_email: row.opt_text("buyer_email"),
            buyer_ip: row.opt_text("buyer_ip"),
            authorisation_code: row.opt_text("authorisation_code"),
            refusal_code: row.opt_text("refusal_code"),
            refusal_message: row.opt_text("refusal_message"),
            remittance_id: row.opt_text("remittance_id"),
            duplicated_from: row.opt_text("duplicated_from"),
            created_at: row.text("created_at"),
            updated_at: row.text("updated_at"),
            last_sequence: row.int("last_sequence"),
            capture_trigger: row.text("capture_trigger"),
            typology: row.text("typology"),
            shipped_at: row.opt_text("shipped_at"),
            carrier: row.opt_text("carrier"),
            tracking_number: row.opt_text("tracking_number"),
            delivered_at: row.opt_text("delivered_at"),
            plan_id: row.opt_text("plan_id"),
            instalment_number: row.opt_int("instalment_number"),
            three_ds_enrolled: row.text("three_ds_enrolled"),
            three_ds_status: row.text("three_ds_status"),
            three_ds_transaction_id: row.opt_text("three_ds_transaction_id"),
            guarantee: row.text("guarantee"),
            risk_outcome: row.text("risk_outcome"),
            risk_fired: row.opt_text("risk_fired"),
            buyer_country: row.opt_text("buyer_country"),
            card_country: row.opt_text("card_country"),
        }
    }
}

/// Which shops and mode a reader may see.
#[derive(Debug, Clone)]
pub struct ReadScope {
    pub shop_ids: Vec<ShopId>,
    pub mode: Mode,
}

#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub shop_id: Option<ShopId>,
    /// Inclusive lower bound on creation time (RFC 3339 text as stored).
    pub created_from: Option<String>,
    /// Exclusive upper bound on creation time.
    pub created_to: Option<String>,
    pub statuses: Vec<String>,
    pub order_reference: Option<String>,
    pub amount_min_milli: Option<i64>,
    pub amount_max_milli: Option<i64>,
    pub currency: Option<String>,
    pub card_brand: Option<String>,
    pub card_last_four: Option<String>,
    pub channel: Option<String>,
    /// YES, NO or UNKNOWN (SE-2).
    pub guarantee: Option<String>,
    /// ACCEPTED, FLAGGED or REFUSED (RC-1..8).
    pub risk_outcome: Option<String>,
}

/// Keyset position of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentCursor {
    pub created_at: String,
    pub payment_id: String,
}

/// Builds a WHERE clause with numbered placeholders.
#[derive(Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    pub(crate) params: Vec<SqlValue>,
}

impl Conditions {
    pub(crate) fn param(&mut self, value: impl Into<SqlValue>) -> String {
        self.params.push(value.into());
        format!("${}", self.params.len())
    }

    pub(crate) fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// The scope's shops (or only `only_shop`, if the scope holds it) in its mode.
    pub(crate) fn scope(&mut self, scope: &ReadScope, only_shop: Option<ShopId>) {
        self.shops(scope, only_shop);
        let mode = self.param(scope.mode.as_str());
        self.push(format!("mode = {mode}"));
    }

    /// The scope's shops (or only `only_shop`, if the scope holds it), whatever
    /// the mode: for what a shop sets once for both modes (risk settings, grey
    /// lists).
    pub(crate) fn shops(&mut self, scope: &ReadScope, only_shop: Option<ShopId>) {
        let shops: Vec<ShopId> = match only_shop {
            Some(shop) if scope.shop_ids.contains(&shop) => vec![shop],
            Some(_) => vec![],
            None => scope.shop_ids.clone(),
        };
        if shops.is_empty() {
            self.push("1 = 0".to_string());
        } else {
            let placeholders: Vec<String> = shops
                .iter()
                .map(|shop| self.param(shop.to_string()))
                .collect();
            self.push(format!("shop_id IN ({})", placeholders.join(", ")));
        }
    }

    pub(crate) fn sql(&self) -> String {
        self.clauses.join(" AND ")
    }
}

pub async fn get_payment(
    db: &Db,
    scope: &ReadScope,
    payment_id: &str,
) -> Result<Option<PaymentRow>, AppError> {
    let mut conditions = Conditions::default();
    conditions.scope(scope, None);
    let id = conditions.param(payment_id);
    conditions.push(format!("payment_id = {id}"));
    let sql = format!("SELECT * FROM payments_view WHERE {}", conditions.sql());
    Ok(db
        .fetch_optional(&sql, &conditions.params)
        .await?
        .as_ref()
        .map(PaymentRow::from_row))
}

/// Newest first; returns up to `first` rows and whether more follow.
pub async fn list_payments(
    db: &Db,
    scope: &ReadScope,
    filter: &PaymentFilter,
    first: usize,
    after: Option<&PaymentCursor>,
) -> Result<(Vec<PaymentRow>, bool), AppError> {
    let first = first.clamp(1, PAGE_SIZE_MAX);
    let mut c = Conditions::default();
    c.scope(scope, filter.shop_id);
    if let Some(from) = &filter.created_from {
        let p = c.param(from.clone());
        c.push(format!("created_at >= {p}"));
    }
    if let Some(to) = &filter.created_to {
        let p = c.param(to.clone());
        c.push(format!("created_at < {p}"));
    }
    if !filter.statuses.is_empty() {
        let placeholders: Vec<String> =
            filter.statuses.iter().map(|s| c.param(s.clone())).collect();
        c.push(format!("status IN ({})", placeholders.join(", ")));
    }
    for (column, value) in [
        ("order_reference", &filter.order_reference),
        ("currency", &filter.currency),
        ("card_brand", &filter.card_brand),
        ("card_last_four", &filter.card_last_four),
        ("channel", &filter.channel),
        ("guarantee", &filter.guarantee),
        ("risk_outcome", &filter.risk_outcome),
    ] {
        if let Some(value) = value {
            let p = c.param(value.clone());
            c.push(format!("{column} = {p}"));
        }
    }
    if let Some(min) = filter.amount_min_milli {
        let p = c.param(min);
        c.push(format!("amount_milli >= {p}"));
    }
    if let Some(max) = filter.amount_max_milli {
        let p = c.param(max);
        c.push(format!("amount_milli <= {p}"));
    }
    if let Some(cursor) = after {
        let created = c.param(cursor.created_at.clone());
        let created_again = c.param(cursor.created_at.clone());
        let id = c.param(cursor.payment_id.clone());
        c.push(format!(
            "(created_at < {created} OR (created_at = {created_again} AND payment_id < {id}))"
        ));
    }
    let limit = c.param((first + 1) as i64);
    let sql = format!(
        "SELECT * FROM payments_view WHERE {} ORDER BY created_at DESC, payment_id DESC LIMIT {limit}",
        c.sql()
    );
    let mut rows: Vec<PaymentRow> = db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(PaymentRow::from_row)
        .collect();
    let has_next = rows.len() > first;
    rows.truncate(first);
    Ok((rows, has_next))
}

pub async fn payments_of_remittance(
    db: &Db,
    scope: &ReadScope,
    remittance_id: &str,
) -> Result<Vec<PaymentRow>, AppError> {
    let mut c = Conditions::default();
    c.scope(scope, None);
    let id = c.param(remittance_id);
    c.push(format!("remittance_id = {id}"));
    let sql = format!(
        "SELECT * FROM payments_view WHERE {} ORDER BY created_at, payment_id",
        c.sql()
    );
    Ok(db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(PaymentRow::from_row)
        .collect())
}

/// Totals of one day, currency and channel (CM cash management).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashSummaryRow {
    pub business_date: String,
    pub currency: String,
    pub channel: String,
    /// kind (AUTHORISED, CAPTURED, REFUNDED, CANCELLED, EXPIRED, REFUSED,
    /// ABANDONED) → (count, milli)
    pub totals: Vec<(String, i64, i64)>,
    /// The same movements by the payment's guarantee when they happened:
    /// (guarantee YES/NO/UNKNOWN, kind, count, milli), ordered by guarantee then kind.
    pub by_guarantee: Vec<(String, String, i64, i64)>,
}

pub async fn cash_summary(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<CashSummaryRow>, AppError> {
    let mut c = Conditions::default();
    c.scope(scope, Some(shop_id));
    let from_p = c.param(date_text(from));
    let to_p = c.param(date_text(to));
    c.push(format!(
        "business_date >= {from_p} AND business_date <= {to_p}"
    ));
    let sql = format!(
        "SELECT business_date, currency, channel, kind, COUNT(*) AS movement_count,
                CAST(SUM(amount_milli) AS BIGINT) AS total_milli
           FROM cash_movements WHERE {}
          GROUP BY business_date, currency, channel, kind
          ORDER BY business_date, currency, channel, kind",
        c.sql()
    );
    let mut summary: Vec<CashSummaryRow> = Vec::new();
    for row in db.fetch_all(&sql, &c.params).await? {
        let key = (
            row.text("business_date"),
            row.text("currency"),
            row.text("channel"),
        );
        let total = (
            row.text("kind"),
            row.int("movement_count"),
            row.int("total_milli"),
        );
        match summary.last_mut() {
            Some(last)
                if (
                    last.business_date.clone(),
                    last.currency.clone(),
                    last.channel.clone(),
                ) == key =>
            {
                last.totals.push(total)
            }
            _ => summary.push(CashSummaryRow {
                business_date: key.0,
                currency: key.1,
                channel: key.2,
                totals: vec![total],
                by_guarantee: Vec::new(),
            }),
        }
    }
    // The same movements by guarantee: every group falls in a row of the first
    // query (same filters, finer grouping). Found by key, not by merging the two
    // orders: PostgreSQL's collation may order text unlike Rust.
    let index: std::collections::HashMap<(String, String, String), usize> = summary
        .iter()
        .enumerate()
        .map(|(position, row)| {
            (
                (
                    row.business_date.clone(),
                    row.currency.clone(),
                    row.channel.clone(),
                ),
                position,
            )
        })
        .collect();
    let sql = format!(
        "SELECT business_date, currency, channel, guarantee, kind, COUNT(*) AS movement_count,
                CAST(SUM(amount_milli) AS BIGINT) AS total_milli
           FROM cash_movements WHERE {}
          GROUP BY business_date, currency, channel, guarantee, kind
          ORDER BY business_date, currency, channel, guarantee, kind",
        c.sql()
    );
    for row in db.fetch_all(&sql, &c.params).await? {
        let key = (
            row.text("business_date"),
            row.text("currency"),
            row.text("channel"),
        );
        if let Some(position) = index.get(&key) {
            summary[*position].by_guarantee.push((
                row.text("guarantee"),
                row.text("kind"),
                row.int("movement_count"),
                row.int("total_milli"),
            ));
        }
    }
    Ok(summary)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemittanceRow {
    pub remittance_id: String,
    pub shop_id: String,
    pub mode: String,
    pub currency: String,
    pub acquirer_contract: String,
    pub business_date: String,
    /// The debits: captures.
    pub payment_count: i64,
    pub total_milli: i64,
    /// The credits: refunds.
    pub credit_count: i64,
    pub credit_total_milli: i64,
    pub bank_status: String,
    pub created_at: String,
}

impl RemittanceRow {
    fn from_row(row: &SqlRow) -> Self {
        RemittanceRow {
            remittance_id: row.text("remittance_id"),
            shop_id: row.text("shop_id"),
            mode: row.text("mode"),
            currency: row.text("currency"),
            acquirer_contract: row.text("acquirer_contract"),
            business_date: row.text("business_date"),
            payment_count: row.int("payment_count"),
            total_milli: row.int("total_milli"),
            credit_count: row.int("credit_count"),
            credit_total_milli: row.int("credit_total_milli"),
            bank_status: row.text("bank_status"),
            created_at: row.text("created_at"),
        }
    }

    /// Debits less credits: what the acquirer owes for this remittance (negative
    /// when its refunds exceed its captures).
    pub fn net_total_milli(&self) -> i64 {
        self.total_milli - self.credit_total_milli
    }
}

/// A refund a remittance sent to the bank as a credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemittedRefundRow {
    pub refund_id: String,
    pub payment_id: String,
    pub currency: String,
    pub amount_milli: i64,
    pub refunded_at: String,
    pub remitted_at: Option<String>,
}

/// The refunds a remittance the caller may see carried, oldest first; none for
/// a remittance outside the caller's scope.
pub async fn refunds_of_remittance(
    db: &Db,
    scope: &ReadScope,
    remittance_id: &str,
) -> Result<Vec<RemittedRefundRow>, AppError> {
    if get_remittance(db, scope, remittance_id).await?.is_none() {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            "SELECT refund_id, payment_id, currency, amount_milli, refunded_at, remitted_at
               FROM remittance_refunds WHERE recorded_in = $1
              ORDER BY refunded_at, refund_id",
            &[remittance_id.into()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| RemittedRefundRow {
            refund_id: row.text("refund_id"),
            payment_id: row.text("payment_id"),
            currency: row.text("currency"),
            amount_milli: row.int("amount_milli"),
            refunded_at: row.text("refunded_at"),
            remitted_at: row.opt_text("remitted_at"),
        })
        .collect())
}

/// Remittances of a shop, newest first, optionally within business dates.
pub async fn list_remittances(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    first: usize,
    after: Option<&str>,
) -> Result<(Vec<RemittanceRow>, bool), AppError> {
    let first = first.clamp(1, PAGE_SIZE_MAX);
    let mut c = Conditions::default();
    c.scope(scope, Some(shop_id));
    if let Some(from) = from {
        let p = c.param(date_text(from));
        c.push(format!("business_date >= {p}"));
    }
    if let Some(to) = to {
        let p = c.param(date_text(to));
        c.push(format!("business_date <= {p}"));
    }
    if let Some(after) = after {
        // Remittance ids are UUID v7: their text order is creation order.
        let p = c.param(after);
        c.push(format!("remittance_id < {p}"));
    }
    let limit = c.param((first + 1) as i64);
    let sql = format!(
        "SELECT * FROM remittances_view WHERE {} ORDER BY remittance_id DESC LIMIT {limit}",
        c.sql()
    );
    let mut rows: Vec<RemittanceRow> = db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(RemittanceRow::from_row)
        .collect();
    let has_next = rows.len() > first;
    rows.truncate(first);
    Ok((rows, has_next))
}

pub async fn get_remittance(
    db: &Db,
    scope: &ReadScope,
    remittance_id: &str,
) -> Result<Option<RemittanceRow>, AppError> {
    let mut c = Conditions::default();
    c.scope(scope, None);
    let id = c.param(remittance_id);
    c.push(format!("remittance_id = {id}"));
    let sql = format!("SELECT * FROM remittances_view WHERE {}", c.sql());
    Ok(db
        .fetch_optional(&sql, &c.params)
        .await?
        .as_ref()
        .map(RemittanceRow::from_row))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub key_id: String,
    pub key_prefix: String,
    pub shop_id: String,
    pub merchant_id: String,
    pub mode: String,
}

pub async fn find_api_key(db: &Db, key_hash: &str) -> Result<Option<ApiKeyRow>, AppError> {
    let row = db
        .fetch_optional(
            "SELECT key_id, key_prefix, shop_id, merchant_id, mode FROM api_keys_view WHERE key_hash = $1",
            &[key_hash.into()],
        )
        .await?;
    Ok(row.map(|row| ApiKeyRow {
        key_id: row.text("key_id"),
        key_prefix: row.text("key_prefix"),
        shop_id: row.text("shop_id"),
        merchant_id: row.text("merchant_id"),
        mode: row.text("mode"),
    }))
}

/// Merchants already set up, oldest first: `(merchant_id, name)`.
pub async fn list_merchants(db: &Db) -> Result<Vec<(String, String)>, AppError> {
    let rows = db
        .fetch_all(
            "SELECT merchant_id, name FROM merchants_view ORDER BY created_at",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.text("merchant_id"), row.text("name")))
        .collect())
}

/// The remittance's source of due payments (the payments view) and of refunds
/// waiting for the bank (the remittances projection's tables).
pub struct ViewDuePayments {
    pub db: Db,
}

fn parse_id<T>(parse: impl Fn(&str) -> Option<T>, text: &str, what: &str) -> Result<T, AppError> {
    parse(text).ok_or_else(|| AppError::internal(format!("bad {what} id in view: {text}")))
}

fn parse_currency(text: &str) -> Result<Currency, AppError> {
    Currency::parse(text).map_err(AppError::internal)
}

/// A positive amount from a view's thousandths.
fn money_from_milli(milli: i64, currency: Currency) -> Result<caisse_domain::Money, AppError> {
    caisse_domain::Money::positive(
        rust_decimal::Decimal::new(milli, crate::money::MILLI_SCALE),
        currency,
    )
    .map_err(AppError::internal)
}

fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, AppError> {
    caisse_infrastructure::time::parse_timestamp(text)
        .ok_or_else(|| AppError::internal(format!("bad instant in view: {text}")))
}

#[async_trait]
impl DuePayments for ViewDuePayments {
    async fn list_due(
        &self,
        shop_id: ShopId,
        mode: Mode,
        today: NaiveDate,
    ) -> Result<Vec<DuePayment>, AppError> {
        let rows = self
            .db
            .fetch_all(
                "SELECT payment_id, currency, acquirer_contract FROM payments_view
                  WHERE shop_id = $1 AND mode = $2 AND status = 'AUTHORISED' AND capture_date <= $3
                  ORDER BY payment_id",
                &[
                    shop_id.to_string().into(),
                    mode.as_str().into(),
                    date_text(today).into(),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DuePayment {
                    payment_id: parse_id(PaymentId::parse, &row.text("payment_id"), "payment")?,
                    currency: parse_currency(&row.text("currency"))?,
                    contract: row.text("acquirer_contract"),
                })
            })
            .collect()
    }

    async fn orphan_captures(
        &self,
        shop_id: ShopId,
        mode: Mode,
    ) -> Result<Vec<OrphanCapture>, AppError> {
        let rows = self
            .db
            .fetch_all(
                "SELECT p.payment_id, p.remittance_id, p.captured_milli, p.currency, p.acquirer_contract,
                        p.updated_at
                   FROM payments_view p
                  WHERE p.shop_id = $1 AND p.mode = $2 AND p.remittance_id IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM remittances_view r WHERE r.remittance_id = p.remittance_id)
                  ORDER BY p.remittance_id, p.payment_id",
                &[shop_id.to_string().into(), mode.as_str().into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(OrphanCapture {
                    remittance_id: parse_id(
                        caisse_domain::RemittanceId::parse,
                        &row.text("remittance_id"),
                        "remittance",
                    )?,
                    payment_id: parse_id(PaymentId::parse, &row.text("payment_id"), "payment")?,
                    amount: money_from_milli(
                        row.int("captured_milli"),
                        parse_currency(&row.text("currency"))?,
                    )?,
                    contract: row.text("acquirer_contract"),
                    changed_at: parse_instant(&row.text("updated_at"))?,
                })
            })
            .collect()
    }

    async fn pending_refunds(
        &self,
        shop_id: ShopId,
        mode: Mode,
    ) -> Result<Vec<PendingRefund>, AppError> {
        // A refund is listed once its payment's capture is recorded in a
        // remittance, which gives its shop, mode and contract.
        let rows = self
            .db
            .fetch_all(
                "SELECT r.refund_id, r.payment_id, r.currency, p.acquirer_contract
                   FROM remittance_refunds r
                   JOIN remittance_payments p ON p.payment_id = r.payment_id
                  WHERE r.recorded_in IS NULL AND r.remittance_id IS NULL
                    AND p.shop_id = $1 AND p.mode = $2
                  ORDER BY r.refunded_at, r.refund_id",
                &[shop_id.to_string().into(), mode.as_str().into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingRefund {
                    payment_id: parse_id(PaymentId::parse, &row.text("payment_id"), "payment")?,
                    refund_id: parse_id(
                        caisse_domain::ids::RefundId::parse,
                        &row.text("refund_id"),
                        "refund",
                    )?,
                    currency: parse_currency(&row.text("currency"))?,
                    contract: row.text("acquirer_contract"),
                })
            })
            .collect()
    }

    async fn orphan_refunds(
        &self,
        shop_id: ShopId,
        mode: Mode,
    ) -> Result<Vec<OrphanRefund>, AppError> {
        let rows = self
            .db
            .fetch_all(
                "SELECT r.refund_id, r.payment_id, r.currency, r.amount_milli, r.remittance_id, r.remitted_at,
                        p.acquirer_contract
                   FROM remittance_refunds r
                   JOIN remittance_payments p ON p.payment_id = r.payment_id
                  WHERE r.recorded_in IS NULL AND r.remittance_id IS NOT NULL
                    AND p.shop_id = $1 AND p.mode = $2
                  ORDER BY r.remittance_id, r.refund_id",
                &[shop_id.to_string().into(), mode.as_str().into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(OrphanRefund {
                    remittance_id: parse_id(
                        caisse_domain::RemittanceId::parse,
                        &row.text("remittance_id"),
                        "remittance",
                    )?,
                    payment_id: parse_id(PaymentId::parse, &row.text("payment_id"), "payment")?,
                    refund_id: parse_id(
                        caisse_domain::ids::RefundId::parse,
                        &row.text("refund_id"),
                        "refund",
                    )?,
                    amount: money_from_milli(
                        row.int("amount_milli"),
                        parse_currency(&row.text("currency"))?,
                    )?,
                    contract: row.text("acquirer_contract"),
                    remitted_at: parse_instant(&row.text("remitted_at"))?,
                })
            })
            .collect()
    }
}
