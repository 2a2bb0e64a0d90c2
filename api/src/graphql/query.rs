//! Query root: payments, cash summary, remittances and the global event log.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, ID};
use caisse_application::ports::LogPosition;
use caisse_domain::{Currency, Money, ShopId};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::SqlValue;
use caisse_projections::money::to_milli;
use caisse_projections::queries::{self, PaymentCursor, PaymentFilter, PAGE_SIZE_MAX};
use chrono::{DateTime, Days, NaiveDate, Utc};
use cqrs_es::Aggregate;

use super::cursors::{
    log_cursor, parse_log_cursor, parse_payment_cursor, parse_remittance_cursor, payment_cursor,
    remittance_cursor,
};
use super::types::*;
use super::RequestData;
use crate::errors::{app_error, bad_input, not_found};
use crate::state::AppState;

/// Largest page of the `events` query.
pub const EVENTS_PAGE_SIZE_MAX: i32 = 500;

#[derive(Default)]
pub struct CoreQuery;

#[derive(InputObject, Default)]
pub struct PaymentFilterInput {
    /// One of the caller's shops; all of them when absent.
    pub shop_id: Option<ID>,
    /// Created at or after: a date (YYYY-MM-DD, UTC) or an RFC 3339 instant.
    pub created_from: Option<String>,
    /// Created before (an instant) or on (a date).
    pub created_to: Option<String>,
    pub statuses: Option<Vec<PaymentStatus>>,
    pub order_reference: Option<String>,
    /// Inclusive bounds on the amount, as decimal strings.
    pub amount_min: Option<String>,
    pub amount_max: Option<String>,
    pub currency: Option<String>,
    pub card_brand: Option<CardBrand>,
    pub last_four: Option<String>,
    pub channel: Option<Channel>,
    /// Payments with this guarantee (SE-2).
    pub guarantee: Option<Guarantee>,
    /// Payments with this risk verdict (RC-1..8).
    pub risk_outcome: Option<RiskOutcome>,
}

pub fn state<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Arc<AppState>> {
    ctx.data::<Arc<AppState>>()
}

pub fn request<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a RequestData> {
    ctx.data::<RequestData>()
}

pub fn parse_shop_id(field: &str, id: &ID) -> async_graphql::Result<ShopId> {
    ShopId::parse(id.as_str()).ok_or_else(|| bad_input(field, "not a shop id (shop_…)"))
}

fn parse_bound(field: &str, text: &str, end_of_day: bool) -> async_graphql::Result<String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let date = if end_of_day {
            date + Days::new(1)
        } else {
            date
        };
        let start = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        return Ok(timestamp_text(start));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| timestamp_text(at.with_timezone(&Utc)))
        .map_err(|_| bad_input(field, "expected YYYY-MM-DD or an RFC 3339 instant"))
}

fn parse_date(field: &str, text: &str) -> async_graphql::Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| bad_input(field, "expected a date YYYY-MM-DD"))
}

fn amount_bound(field: &str, text: &str) -> async_graphql::Result<i64> {
    // Bounds are compared in thousandths, so any currency's precision fits.
    let money =
        Money::parse_positive(text, "KWD").map_err(|error| bad_input(field, error.to_string()))?;
    Ok(to_milli(&money))
}

fn page_size(field: &str, first: i32, max: i32) -> async_graphql::Result<usize> {
    if !(1..=max).contains(&first) {
        return Err(bad_input(field, format!("must be between 1 and {max}")));
    }
    Ok(first as usize)
}

impl PaymentFilterInput {
    /// The projection-side filter, validated. `prefix` goes before each field name
    /// in errors: `filter.` for GraphQL, nothing for the export's query parameters.
    pub(crate) fn to_filter(&self, prefix: &str) -> async_graphql::Result<PaymentFilter> {
        let field = |name: &str| format!("{prefix}{name}");
        Ok(PaymentFilter {
            shop_id: self
                .shop_id
                .as_ref()
                .map(|id| parse_shop_id(&field("shopId"), id))
                .transpose()?,
            created_from: self
                .created_from
                .as_deref()
                .map(|t| parse_bound(&field("createdFrom"), t, false))
                .transpose()?,
            created_to: self
                .created_to
                .as_deref()
                .map(|t| parse_bound(&field("createdTo"), t, true))
                .transpose()?,
            statuses: self
                .statuses
                .iter()
                .flatten()
                .map(|s| s.as_str().to_string())
                .collect(),
            order_reference: self.order_reference.clone(),
            amount_min_milli: self
                .amount_min
                .as_deref()
                .map(|t| amount_bound(&field("amountMin"), t))
                .transpose()?,
            amount_max_milli: self
                .amount_max
                .as_deref()
                .map(|t| amount_bound(&field("amountMax"), t))
                .transpose()?,
            currency: match &self.currency {
                Some(code) => Some(
                    Currency::parse(code)
                        .map_err(|e| bad_input(&field("currency"), e.to_string()))?
                        .code()
                        .to_string(),
                ),
                None => None,
            },
            card_brand: self
                .card_brand
                .map(|b| caisse_domain::card::CardBrand::from(b).as_str().to_string()),
            card_last_four: match &self.last_four {
                Some(digits) if digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit()) => {
                    Some(digits.clone())
                }
                Some(_) => {
                    return Err(bad_input(
                        &field("lastFour"),
                        "expected exactly four digits",
                    ))
                }
                None => None,
            },
            channel: self.channel.map(|c| {
                caisse_domain::payment::Channel::from(c)
                    .as_str()
                    .to_string()
            }),
            guarantee: self.guarantee.map(|g| g.as_str().to_string()),
            risk_outcome: self.risk_outcome.map(|o| o.as_str().to_string()),
        })
    }
}

#[Object]
impl CoreQuery {
    /// One payment with its full history (CM-1, RP-1).
    async fn payment(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<PaymentNode> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        // Ids are accepted as `pay_…` or as a bare UUID, like the mutations accept them.
        let Some(id) = caisse_domain::PaymentId::parse(id.as_str()) else {
            return Err(bad_input("id", "not a payment id (pay_…)"));
        };
        let id = id.to_string();
        let row = queries::get_payment(state.db(), &caller.read_scope(), &id)
            .await
            .map_err(app_error)?;
        if let Some(row) = row {
            return Ok(PaymentNode::from_row(row));
        }
        // No longer online: a payment the retention archived answers from the log,
        // which keeps everything (CM-12). Its owner is checked on its own events.
        if !is_archived(state, &id).await.map_err(app_error)? {
            return Err(not_found("payment"));
        }
        let events = state
            .log
            .aggregate_events(caisse_domain::payment::Payment::TYPE, &id)
            .await
            .map_err(app_error)?;
        PaymentNode::archived_from_log(events, &caller.scope())
            .map_err(app_error)?
            .ok_or_else(|| not_found("payment"))
    }

    /// Payments newest first, filtered, with keyset pagination (Relay connection).
    async fn payments(
        &self,
        ctx: &Context<'_>,
        filter: Option<PaymentFilterInput>,
        #[graphql(desc = "Page size, 1 to 200 (default 20)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<PaymentConnection> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        // An absent or null `first` takes the default, whether or not the client
        // declared the variable.
        let first = page_size("first", first.unwrap_or(20), PAGE_SIZE_MAX as i32)?;
        let filter = filter.unwrap_or_default().to_filter("filter.")?;
        let after = after
            .as_deref()
            .map(|cursor| {
                parse_payment_cursor(cursor)
                    .ok_or_else(|| bad_input("after", "not a payments cursor"))
            })
            .transpose()?;
        let (rows, has_next_page) = queries::list_payments(
            state.db(),
            &caller.read_scope(),
            &filter,
            first,
            after.as_ref(),
        )
        .await
        .map_err(app_error)?;
        let edges: Vec<PaymentEdge> = rows
            .into_iter()
            .map(|row| PaymentEdge {
                cursor: payment_cursor(&PaymentCursor {
                    created_at: row.created_at.clone(),
                    payment_id: row.payment_id.clone(),
                }),
                node: PaymentNode::from_row(row),
            })
            .collect();
        let end_cursor = edges.last().map(|edge| edge.cursor.clone());
        Ok(PaymentConnection {
            edges,
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }

    /// Totals per day, currency and channel of what was authorised, captured,
    /// refunded, cancelled and refused between two dates, inclusive (CM).
    async fn cash_summary(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        from: String,
        to: String,
    ) -> async_graphql::Result<Vec<CashSummaryEntry>> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        let shop_id = parse_shop_id("shopId", &shop_id)?;
        if shop_id != caller.shop_id {
            return Err(not_found("shop"));
        }
        let (from, to) = (parse_date("from", &from)?, parse_date("to", &to)?);
        if to < from {
            return Err(bad_input("to", "must not be before `from`"));
        }
        let rows = queries::cash_summary(state.db(), &caller.read_scope(), shop_id, from, to)
            .await
            .map_err(app_error)?;
        Ok(rows.into_iter().map(CashSummaryEntry::from).collect())
    }

    /// Remittances sent to the bank for a shop, newest first (CM-10).
    async fn remittances(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        from: Option<String>,
        to: Option<String>,
        #[graphql(desc = "Page size, 1 to 200 (default 20)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RemittanceConnection> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        let shop_id = parse_shop_id("shopId", &shop_id)?;
        if shop_id != caller.shop_id {
            return Err(not_found("shop"));
        }
        // An absent or null `first` takes the default, whether or not the client
        // declared the variable.
        let first = page_size("first", first.unwrap_or(20), PAGE_SIZE_MAX as i32)?;
        let from = from.as_deref().map(|t| parse_date("from", t)).transpose()?;
        let to = to.as_deref().map(|t| parse_date("to", t)).transpose()?;
        let after = after
            .as_deref()
            .map(|cursor| {
                parse_remittance_cursor(cursor)
                    .ok_or_else(|| bad_input("after", "not a remittances cursor"))
            })
            .transpose()?;
        let (rows, has_next_page) = queries::list_remittances(
            state.db(),
            &caller.read_scope(),
            shop_id,
            from,
            to,
            first,
            after.as_deref(),
        )
        .await
        .map_err(app_error)?;
        let edges: Vec<RemittanceEdge> = rows
            .into_iter()
            .map(|row| RemittanceEdge {
                cursor: remittance_cursor(&row.remittance_id),
                node: RemittanceNode::from(row),
            })
            .collect();
        let end_cursor = edges.last().map(|edge| edge.cursor.clone());
        Ok(RemittanceConnection {
            edges,
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }

    async fn remittance(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<RemittanceNode> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        let Some(id) = caisse_domain::RemittanceId::parse(id.as_str()) else {
            return Err(bad_input("id", "not a remittance id (rem_…)"));
        };
        let row = queries::get_remittance(state.db(), &caller.read_scope(), &id.to_string())
            .await
            .map_err(app_error)?;
        row.map(RemittanceNode::from)
            .ok_or_else(|| not_found("remittance"))
    }

    /// The global event log in commit order, for auditors and integrators: the
    /// events of the caller's shop and mode, from an opaque cursor.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        #[graphql(desc = "Page size, 1 to 500 (default 100)")] first: Option<i32>,
    ) -> async_graphql::Result<LogEventConnection> {
        let state = state(ctx)?;
        let caller = &request(ctx)?.caller;
        let first = page_size("first", first.unwrap_or(100), EVENTS_PAGE_SIZE_MAX)?;
        let cursor = match after.as_deref() {
            Some(text) => {
                parse_log_cursor(text).ok_or_else(|| bad_input("after", "not an events cursor"))?
            }
            None => LogPosition::default(),
        };
        let scan = scan_owned_events(state, caller, cursor, first)
            .await
            .map_err(app_error)?;
        Ok(LogEventConnection {
            events: scan.events.into_iter().map(LogEvent::new).collect(),
            end_cursor: log_cursor(scan.end),
            has_next_page: scan.has_more,
        })
    }
}

/// Whether the retention moved this payment out of payments_view (CM-12).
pub(crate) async fn is_archived(
    state: &AppState,
    payment_id: &str,
) -> Result<bool, caisse_application::AppError> {
    Ok(state
        .db()
        .fetch_optional(
            "SELECT payment_id FROM archived_payments WHERE payment_id = $1",
            &[payment_id.into()],
        )
        .await?
        .is_some())
}

/// One bounded scan of the log for a caller: what the `events` query returns and
/// what the `events` subscription streams, so both apply the same rules.
pub(crate) struct OwnedEvents {
    /// The caller's events after the cursor, in commit order, at most `first`.
    pub events: Vec<LoggedEvent>,
    /// Where the next scan starts: past the last event examined, owned or not, so
    /// events of other shops are never scanned twice.
    pub end: LogPosition,
    /// More may follow at once (the page is full, or the scan stopped at its bound).
    pub has_more: bool,
}

/// The events of the caller's shop and mode after `cursor`: ownership is read from
/// the views, and nothing past what they have applied is looked at.
pub(crate) async fn scan_owned_events(
    state: &AppState,
    caller: &crate::auth::Caller,
    mut cursor: LogPosition,
    first: usize,
) -> Result<OwnedEvents, caisse_application::AppError> {
    // Ownership of an event is read from the views, so never scan past what
    // they have applied: an event not yet projected would look foreign and be
    // skipped for good.
    let horizon = projected_horizon(state).await?;
    let mut events = Vec::new();
    let mut has_more = false;
    // A bounded scan: a caller whose events are rare in a busy log gets an
    // empty page with an advanced cursor and `hasNextPage`, never a long stall.
    let mut pages_left = 10;
    'scan: loop {
        if pages_left == 0 {
            has_more = true;
            break;
        }
        pages_left -= 1;
        let page = state.log.read_after(cursor, 500).await?;
        if page.is_empty() {
            break;
        }
        let owned = owned_aggregates(state, caller, &page).await?;
        for event in page {
            if event.position > horizon {
                break 'scan;
            }
            if events.len() == first {
                has_more = true;
                break 'scan;
            }
            cursor = event.position;
            if owned.contains(&event.aggregate_id) {
                events.push(event);
            }
        }
    }
    Ok(OwnedEvents {
        events,
        end: cursor,
        has_more,
    })
}

/// The projections whose views tell owners apart: the horizon is the least of
/// their checkpoints, and the subscription wakes when one of them moves.
pub(crate) const HORIZON_PROJECTIONS: [&str; 3] = ["payments", "remittances", "plans"];

async fn projected_horizon(state: &AppState) -> Result<LogPosition, caisse_application::AppError> {
    // Until each view that tells owners apart has a checkpoint, nothing is safe.
    caisse_projections::projector::horizon(state.db(), &HORIZON_PROJECTIONS).await
}

/// Which aggregates of this page belong to the caller's shop and mode.
async fn owned_aggregates(
    state: &AppState,
    caller: &crate::auth::Caller,
    page: &[LoggedEvent],
) -> Result<HashSet<String>, caisse_application::AppError> {
    let mut owned = HashSet::new();
    for (aggregate_type, table, column) in [
        ("Payment", "payments_view", "payment_id"),
        // Payments the retention moved out of payments_view stay in the log (CM-12).
        ("Payment", "archived_payments", "payment_id"),
        ("Remittance", "remittances_view", "remittance_id"),
        ("PaymentPlan", "plans_view", "plan_id"),
        ("WebhookEndpoint", "webhook_endpoints_view", "endpoint_id"),
    ] {
        let ids: Vec<&str> = page
            .iter()
            .filter(|event| event.aggregate_type == aggregate_type)
            .map(|event| event.aggregate_id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            continue;
        }
        let mut params: Vec<SqlValue> = vec![
            caller.shop_id.to_string().into(),
            caller.mode.as_str().into(),
        ];
        let placeholders: Vec<String> = ids
            .iter()
            .map(|id| {
                params.push((*id).into());
                format!("${}", params.len())
            })
            .collect();
        let sql = format!(
            "SELECT {column} AS id FROM {table} WHERE shop_id = $1 AND mode = $2 AND {column} IN ({})",
            placeholders.join(", ")
        );
        for row in state.db().fetch_all(&sql, &params).await? {
            owned.insert(row.text("id"));
        }
    }
    // A cut-off's id names its shop and mode.
    let cut_off_prefix = format!("cutoff_{}_{}_", caller.shop_id, caller.mode.as_str());
    owned.extend(
        page.iter()
            .filter(|event| {
                event.aggregate_type == caisse_domain::cut_off::DailyCutOff::TYPE
                    && event.aggregate_id.starts_with(&cut_off_prefix)
            })
            .map(|event| event.aggregate_id.clone()),
    );
    // Risk settings and grey lists are the shop's (both modes); a card's
    // outstanding names its shop and mode.
    let settings_id = caisse_domain::risk::risk_settings_id(caller.shop_id);
    let grey_prefix = format!("grey_{}_", caller.shop_id);
    let outstanding_prefix = format!("outstanding_{}_{}_", caller.shop_id, caller.mode.as_str());
    owned.extend(
        page.iter()
            .filter(|event| match event.aggregate_type.as_str() {
                caisse_domain::risk::ShopRiskSettings::TYPE => event.aggregate_id == settings_id,
                caisse_domain::grey_list::GreyListEntry::TYPE => {
                    event.aggregate_id.starts_with(&grey_prefix)
                }
                caisse_domain::outstanding::CardOutstanding::TYPE => {
                    event.aggregate_id.starts_with(&outstanding_prefix)
                }
                _ => false,
            })
            .map(|event| event.aggregate_id.clone()),
    );
    Ok(owned)
}
