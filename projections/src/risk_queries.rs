//! Read-side queries over the `risk` projection's views for GraphQL: grey lists,
//! risk settings and 3-D Secure enrolment (per shop, for both modes), risk
//! decisions, rule counts and the card outstanding (per shop and mode).

use caisse_application::AppError;
use caisse_domain::grey_list::GreyListKind;
use caisse_domain::risk::{ControlCheck, ControlParameters, RiskControl, RiskOutcome};
use caisse_domain::ShopId;
use caisse_infrastructure::time::date_text;
use caisse_infrastructure::{Db, SqlRow};
use chrono::NaiveDate;

use crate::queries::{Conditions, ReadScope, PAGE_SIZE_MAX};

/// `text` for a `LIKE … ESCAPE '\'` pattern: its `%`, `_` and `\` match themselves.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

// ---------------------------------------------------------------------------
// Grey lists
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyListEntryRow {
    pub entry_id: String,
    pub shop_id: String,
    /// CARD, BIN, COUNTRY or IP.
    pub kind: String,
    pub value: String,
    pub expires_at: Option<String>,
    pub comment: Option<String>,
    pub added_at: String,
    pub added_by: Option<String>,
    pub removed_at: Option<String>,
    pub removed_by: Option<String>,
    pub seq: i64,
}

impl GreyListEntryRow {
    fn from_row(row: &SqlRow) -> Self {
        GreyListEntryRow {
            entry_id: row.text("entry_id"),
            shop_id: row.text("shop_id"),
            kind: row.text("kind"),
            value: row.text("value"),
            expires_at: row.opt_text("expires_at"),
            comment: row.opt_text("comment"),
            added_at: row.text("added_at"),
            added_by: row.opt_text("added_by"),
            removed_at: row.opt_text("removed_at"),
            removed_by: row.opt_text("removed_by"),
            seq: row.int("seq"),
        }
    }

    pub fn cursor(&self) -> GreyListCursor {
        GreyListCursor {
            added_at: self.added_at.clone(),
            entry_id: self.entry_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GreyListFilter {
    pub kind: Option<GreyListKind>,
    /// A substring of the value or of the comment, whatever the case.
    pub search: Option<String>,
    /// Removed entries too (they are left out otherwise). Expired ones are
    /// always listed, with their `expires_at`.
    pub include_removed: bool,
}

/// Keyset position of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyListCursor {
    pub added_at: String,
    pub entry_id: String,
}

/// A shop's grey-list entries, most recently added first; up to `first` rows
/// and whether more follow. None for a shop outside the scope (any mode sees
/// its shop's lists: they apply to both).
pub async fn list_grey_list_entries(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    filter: &GreyListFilter,
    first: usize,
    after: Option<&GreyListCursor>,
) -> Result<(Vec<GreyListEntryRow>, bool), AppError> {
    let first = first.clamp(1, PAGE_SIZE_MAX);
    let mut c = Conditions::default();
    c.shops(scope, Some(shop_id));
    if let Some(kind) = filter.kind {
        let p = c.param(kind.as_str());
        c.push(format!("kind = {p}"));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let p = c.param(format!("%{}%", like_escaped(&search.to_lowercase())));
        c.push(format!(
            "(LOWER(value) LIKE {p} ESCAPE '\\' OR LOWER(COALESCE(comment, '')) LIKE {p} ESCAPE '\\')"
        ));
    }
    if !filter.include_removed {
        c.push("removed_at IS NULL".to_string());
    }
    if let Some(cursor) = after {
        let added = c.param(cursor.added_at.clone());
        let id = c.param(cursor.entry_id.clone());
        c.push(format!(
            "(added_at < {added} OR (added_at = {added} AND entry_id < {id}))"
        ));
    }
    let limit = c.param((first + 1) as i64);
    let sql = format!(
        "SELECT * FROM grey_list_entries WHERE {} ORDER BY added_at DESC, entry_id DESC LIMIT {limit}",
        c.sql()
    );
    let mut rows: Vec<GreyListEntryRow> = db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(GreyListEntryRow::from_row)
        .collect();
    let has_next = rows.len() > first;
    rows.truncate(first);
    Ok((rows, has_next))
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// One control as a shop configured it (a control never configured is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskSettingRow {
    pub shop_id: String,
    /// CARD_GREY_LIST, CARD_OUTSTANDING, …
    pub control: String,
    /// OFF, INFORMATIVE or BLOCKING.
    pub mode: String,
    /// The domain's `ControlParameters` as JSON; see [`RiskSettingRow::parameters`].
    pub parameters_json: String,
    pub updated_at: String,
}

impl RiskSettingRow {
    pub fn parameters(&self) -> Result<ControlParameters, AppError> {
        serde_json::from_str(&self.parameters_json).map_err(|error| {
            AppError::internal(format!(
                "risk setting {} of {}: {error}",
                self.control, self.shop_id
            ))
        })
    }
}

/// A shop's 3-D Secure enrolment, once configured (before: the default one,
/// `ThreeDsEnrolment::default()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreeDsSettingsRow {
    pub shop_id: String,
    /// CB, VISA, MASTERCARD.
    pub brands: Vec<String>,
    /// ECOMMERCE, MCOMMERCE.
    pub channels: Vec<String>,
    pub updated_at: String,
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// A shop's configured controls, in the order of `RiskControl::ALL`, and its
/// 3-D Secure enrolment if configured. Nothing for a shop outside the scope.
pub async fn risk_settings(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
) -> Result<(Vec<RiskSettingRow>, Option<ThreeDsSettingsRow>), AppError> {
    let mut c = Conditions::default();
    c.shops(scope, Some(shop_id));
    let sql = format!(
        "SELECT shop_id, control, mode, parameters_json, updated_at FROM risk_settings_view WHERE {}",
        c.sql()
    );
    let mut settings: Vec<RiskSettingRow> = db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(|row| RiskSettingRow {
            shop_id: row.text("shop_id"),
            control: row.text("control"),
            mode: row.text("mode"),
            parameters_json: row.text("parameters_json"),
            updated_at: row.text("updated_at"),
        })
        .collect();
    settings.sort_by_key(|setting| {
        RiskControl::ALL
            .iter()
            .position(|control| control.as_str() == setting.control)
            .unwrap_or(usize::MAX)
    });
    let sql = format!(
        "SELECT shop_id, brands, channels, updated_at FROM three_ds_settings_view WHERE {}",
        c.sql()
    );
    let three_ds = db
        .fetch_optional(&sql, &c.params)
        .await?
        .map(|row| ThreeDsSettingsRow {
            shop_id: row.text("shop_id"),
            brands: split_list(&row.text("brands")),
            channels: split_list(&row.text("channels")),
            updated_at: row.text("updated_at"),
        });
    Ok((settings, three_ds))
}

// ---------------------------------------------------------------------------
// Risk decisions
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskDecisionRow {
    pub payment_id: String,
    pub shop_id: String,
    pub mode: String,
    /// When the payment was assessed (its first event) and that day.
    pub occurred_at: String,
    pub business_date: String,
    /// ACCEPTED, FLAGGED or REFUSED.
    pub outcome: String,
    /// The controls that fired, comma-separated.
    pub fired: Option<String>,
    /// RISK_* or THREE_DS_FAILED when the risk step refused the payment.
    pub refusal_code: Option<String>,
    /// Every check as the events carry them; see [`RiskDecisionRow::checks`].
    pub checks_json: String,
    pub card_fingerprint: String,
    pub amount_milli: i64,
    pub currency: String,
    /// YES, NO or UNKNOWN.
    pub guarantee: String,
    pub global_position: i64,
}

impl RiskDecisionRow {
    fn from_row(row: &SqlRow) -> Self {
        RiskDecisionRow {
            payment_id: row.text("payment_id"),
            shop_id: row.text("shop_id"),
            mode: row.text("mode"),
            occurred_at: row.text("occurred_at"),
            business_date: row.text("business_date"),
            outcome: row.text("outcome"),
            fired: row.opt_text("fired"),
            refusal_code: row.opt_text("refusal_code"),
            checks_json: row.text("checks_json"),
            card_fingerprint: row.text("card_fingerprint"),
            amount_milli: row.int("amount_milli"),
            currency: row.text("currency"),
            guarantee: row.text("guarantee"),
            global_position: row.int("global_position"),
        }
    }

    /// Every control that ran, in order: before 3-D Secure, then after it.
    pub fn checks(&self) -> Result<Vec<ControlCheck>, AppError> {
        serde_json::from_str(&self.checks_json).map_err(|error| {
            AppError::internal(format!("risk decision of {}: {error}", self.payment_id))
        })
    }

    /// The controls that fired.
    pub fn fired_controls(&self) -> Vec<&str> {
        self.fired
            .as_deref()
            .map(|fired| fired.split(',').filter(|c| !c.is_empty()).collect())
            .unwrap_or_default()
    }

    pub fn cursor(&self) -> RiskDecisionCursor {
        RiskDecisionCursor {
            occurred_at: self.occurred_at.clone(),
            payment_id: self.payment_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RiskDecisionFilter {
    pub shop_id: Option<ShopId>,
    pub outcome: Option<RiskOutcome>,
    /// Decisions where this control fired.
    pub control: Option<RiskControl>,
    /// Inclusive business dates (UTC days of the assessment).
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Keyset position of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskDecisionCursor {
    pub occurred_at: String,
    pub payment_id: String,
}

/// Risk decisions in the scope, newest first; up to `first` rows and whether
/// more follow.
pub async fn risk_decisions(
    db: &Db,
    scope: &ReadScope,
    filter: &RiskDecisionFilter,
    first: usize,
    after: Option<&RiskDecisionCursor>,
) -> Result<(Vec<RiskDecisionRow>, bool), AppError> {
    let first = first.clamp(1, PAGE_SIZE_MAX);
    let mut c = Conditions::default();
    c.scope(scope, filter.shop_id);
    if let Some(outcome) = filter.outcome {
        let p = c.param(outcome.as_str());
        c.push(format!("outcome = {p}"));
    }
    if let Some(control) = filter.control {
        let p = c.param(format!("%,{},%", like_escaped(control.as_str())));
        c.push(format!("(',' || fired || ',') LIKE {p} ESCAPE '\\'"));
    }
    if let Some(from) = filter.from {
        let p = c.param(date_text(from));
        c.push(format!("business_date >= {p}"));
    }
    if let Some(to) = filter.to {
        let p = c.param(date_text(to));
        c.push(format!("business_date <= {p}"));
    }
    if let Some(cursor) = after {
        let at = c.param(cursor.occurred_at.clone());
        let id = c.param(cursor.payment_id.clone());
        c.push(format!(
            "(occurred_at < {at} OR (occurred_at = {at} AND payment_id < {id}))"
        ));
    }
    let limit = c.param((first + 1) as i64);
    let sql = format!(
        "SELECT * FROM risk_decisions WHERE {} ORDER BY occurred_at DESC, payment_id DESC LIMIT {limit}",
        c.sql()
    );
    let mut rows: Vec<RiskDecisionRow> = db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(RiskDecisionRow::from_row)
        .collect();
    let has_next = rows.len() > first;
    rows.truncate(first);
    Ok((rows, has_next))
}

/// One payment's risk decision, if the scope sees it.
pub async fn risk_decision(
    db: &Db,
    scope: &ReadScope,
    payment_id: &str,
) -> Result<Option<RiskDecisionRow>, AppError> {
    let mut c = Conditions::default();
    c.scope(scope, None);
    let id = c.param(payment_id);
    c.push(format!("payment_id = {id}"));
    let sql = format!("SELECT * FROM risk_decisions WHERE {}", c.sql());
    Ok(db
        .fetch_optional(&sql, &c.params)
        .await?
        .as_ref()
        .map(RiskDecisionRow::from_row))
}

// ---------------------------------------------------------------------------
// Rule counts and card outstanding
// ---------------------------------------------------------------------------

/// How often one control ran and fired on one day (once per payment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCountRow {
    pub business_date: String,
    pub control: String,
    pub fired_blocking: i64,
    pub fired_informative: i64,
    pub ran: i64,
}

/// A shop's rule counts in the scope's mode, for inclusive business dates, by
/// day then control.
pub async fn rule_counts(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<RuleCountRow>, AppError> {
    let mut c = Conditions::default();
    c.scope(scope, Some(shop_id));
    let from = c.param(date_text(from));
    let to = c.param(date_text(to));
    c.push(format!("business_date >= {from} AND business_date <= {to}"));
    let sql = format!(
        "SELECT business_date, control, fired_blocking, fired_informative, ran
           FROM risk_rule_counts WHERE {} ORDER BY business_date, control",
        c.sql()
    );
    Ok(db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(|row| RuleCountRow {
            business_date: row.text("business_date"),
            control: row.text("control"),
            fired_blocking: row.int("fired_blocking"),
            fired_informative: row.int("fired_informative"),
            ran: row.int("ran"),
        })
        .collect())
}

/// One card's outstanding in one currency over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutstandingRow {
    pub card_fingerprint: String,
    pub currency: String,
    pub amount_milli: i64,
    pub payment_count: i64,
}

/// The cards' outstanding (RC-2) of a shop in the scope's mode over the
/// `window_days` business days ending with `today` (days in
/// `(today - window_days, today]`, by the UTC day each payment was counted),
/// largest amount first; one card only with `card_fingerprint`.
pub async fn card_outstanding(
    db: &Db,
    scope: &ReadScope,
    shop_id: ShopId,
    card_fingerprint: Option<&str>,
    window_days: u32,
    today: NaiveDate,
) -> Result<Vec<OutstandingRow>, AppError> {
    let mut c = Conditions::default();
    c.scope(scope, Some(shop_id));
    if let Some(fingerprint) = card_fingerprint {
        let p = c.param(fingerprint);
        c.push(format!("card_fingerprint = {p}"));
    }
    let since = today
        .checked_sub_days(chrono::Days::new(u64::from(window_days)))
        .unwrap_or(NaiveDate::MIN);
    let since = c.param(date_text(since));
    let today = c.param(date_text(today));
    c.push(format!(
        "business_date > {since} AND business_date <= {today}"
    ));
    let sql = format!(
        "SELECT card_fingerprint, currency, CAST(SUM(amount_milli) AS BIGINT) AS total_milli,
                CAST(SUM(payment_count) AS BIGINT) AS total_count
           FROM risk_card_outstanding WHERE {}
          GROUP BY card_fingerprint, currency
          ORDER BY total_milli DESC, card_fingerprint, currency",
        c.sql()
    );
    Ok(db
        .fetch_all(&sql, &c.params)
        .await?
        .iter()
        .map(|row| OutstandingRow {
            card_fingerprint: row.text("card_fingerprint"),
            currency: row.text("currency"),
            amount_milli: row.int("total_milli"),
            payment_count: row.int("total_count"),
        })
        .collect())
}
