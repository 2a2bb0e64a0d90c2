//! GraphQL for the scheduler: each shop's remittance cut-off setting (per mode)
//! and the work scheduled for it (expiries, cut-offs).

use async_graphql::{Context, Object, SimpleObject, ID};
use caisse_application::ports::{ScheduledItem, ScheduledKind};
use caisse_application::AppError;
use caisse_domain::merchant::{CutOffSchedule, MerchantError};
use caisse_domain::{Mode, ShopId};
use caisse_projections::schedule::ViewScheduledWork;
use chrono::{DateTime, NaiveTime, Utc};

use crate::errors::{app_error, bad_input};
use crate::graphql::mutation::context;
use crate::graphql::query::{parse_shop_id, request, state};

/// Most items `scheduledWork` returns.
const SCHEDULED_WORK_PAGE_MAX: i32 = 500;

#[derive(Default)]
pub struct ScheduleQuery;

#[derive(Default)]
pub struct ScheduleMutation;

/// When a shop's daily remittance cut-off runs in one mode, and the next one.
#[derive(SimpleObject)]
#[graphql(name = "RemittanceCutOff")]
pub struct RemittanceCutOffNode {
    pub shop_id: String,
    pub mode: String,
    /// Local time of day, `HH:MM:SS`.
    pub time: String,
    /// IANA time zone name, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// The business day of the next cut-off not yet run.
    pub next_business_date: Option<String>,
    /// When it is due (UTC); in the past while the scheduler catches up.
    pub next_due_at: Option<DateTime<Utc>>,
}

/// One piece of work the scheduler will do.
#[derive(SimpleObject)]
#[graphql(name = "ScheduledWork")]
pub struct ScheduledWorkNode {
    /// EXPIRE_AUTHORISATION, AUTHORISE_DEFERRED, CHARGE_INSTALMENT or REMITTANCE_CUT_OFF.
    pub kind: String,
    /// The payment that will expire or be authorised.
    pub payment_id: Option<String>,
    /// The business day, for a cut-off.
    pub business_date: Option<String>,
    /// The plan and instalment to charge, for CHARGE_INSTALMENT.
    pub plan_id: Option<String>,
    pub instalment_number: Option<i32>,
    pub due_at: DateTime<Utc>,
}

impl From<ScheduledItem> for ScheduledWorkNode {
    fn from(item: ScheduledItem) -> Self {
        let (plan_id, instalment_number) = match &item.kind {
            ScheduledKind::ChargeInstalment { plan_id, number } => {
                (Some(plan_id.to_string()), Some(*number as i32))
            }
            _ => (None, None),
        };
        let (payment_id, business_date) = match &item.kind {
            ScheduledKind::ChargeInstalment { .. } => (None, None),
            ScheduledKind::ExpireAuthorisation { payment_id }
            | ScheduledKind::AuthoriseDeferred { payment_id }
            | ScheduledKind::AbandonAuthentication { payment_id } => {
                (Some(payment_id.to_string()), None)
            }
            ScheduledKind::RemittanceCutOff { business_date } => {
                (None, Some(business_date.to_string()))
            }
        };
        ScheduledWorkNode {
            kind: item.kind.as_str().to_string(),
            payment_id,
            business_date,
            plan_id,
            instalment_number,
            due_at: item.due_at,
        }
    }
}

/// The shop, if the caller's key may act on it; `SHOP_NOT_FOUND` otherwise.
fn caller_shop(ctx: &Context<'_>, shop_id: &ID) -> async_graphql::Result<(ShopId, Mode)> {
    let caller = &request(ctx)?.caller;
    let shop_id = parse_shop_id("shopId", shop_id)?;
    if caller.shop_id != shop_id {
        return Err(app_error(MerchantError::ShopNotFound.into()));
    }
    Ok((shop_id, caller.mode))
}

async fn cut_off_node(
    ctx: &Context<'_>,
    shop_id: ShopId,
    mode: Mode,
) -> async_graphql::Result<RemittanceCutOffNode> {
    let view = ViewScheduledWork {
        db: state(ctx)?.db().clone(),
    };
    let setting = view
        .cut_off_setting(shop_id, mode)
        .await
        .map_err(app_error)?
        .ok_or_else(|| app_error(MerchantError::ShopNotFound.into()))?;
    let next = view
        .for_shop(shop_id, mode, SCHEDULED_WORK_PAGE_MAX as usize)
        .await
        .map_err(app_error)?
        .into_iter()
        .find_map(|item| match item.kind {
            ScheduledKind::RemittanceCutOff { business_date } => Some((business_date, item.due_at)),
            ScheduledKind::ExpireAuthorisation { .. }
            | ScheduledKind::AuthoriseDeferred { .. }
            | ScheduledKind::ChargeInstalment { .. }
            | ScheduledKind::AbandonAuthentication { .. } => None,
        });
    Ok(RemittanceCutOffNode {
        shop_id: shop_id.to_string(),
        mode: mode.as_str().to_string(),
        time: setting.time.format("%H:%M:%S").to_string(),
        time_zone: setting.time_zone,
        next_business_date: next.map(|(date, _)| date.to_string()),
        next_due_at: next.map(|(_, at)| at),
    })
}

#[Object]
impl ScheduleQuery {
    /// The shop's daily remittance cut-off in the caller's mode (CM-10).
    async fn remittance_cut_off(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
    ) -> async_graphql::Result<RemittanceCutOffNode> {
        let (shop_id, mode) = caller_shop(ctx, &shop_id)?;
        cut_off_node(ctx, shop_id, mode).await
    }

    /// What the scheduler will do for the shop in the caller's mode, soonest first.
    async fn scheduled_work(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        #[graphql(default = 100)] first: i32,
    ) -> async_graphql::Result<Vec<ScheduledWorkNode>> {
        let (shop_id, mode) = caller_shop(ctx, &shop_id)?;
        if !(1..=SCHEDULED_WORK_PAGE_MAX).contains(&first) {
            return Err(bad_input(
                "first",
                format!("must be between 1 and {SCHEDULED_WORK_PAGE_MAX}"),
            ));
        }
        let view = ViewScheduledWork {
            db: state(ctx)?.db().clone(),
        };
        let items = view
            .for_shop(shop_id, mode, first as usize)
            .await
            .map_err(app_error)?;
        Ok(items.into_iter().map(ScheduledWorkNode::from).collect())
    }
}

#[Object]
impl ScheduleMutation {
    /// Sets when the shop's daily remittance cut-off runs in the caller's mode:
    /// `time` as `HH:MM` (or `HH:MM:SS`) local time in `timeZone` (IANA name).
    /// A cut-off already scheduled keeps its business day at the new time, so no
    /// day is skipped.
    async fn set_remittance_cut_off(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
        time: String,
        time_zone: String,
    ) -> async_graphql::Result<RemittanceCutOffNode> {
        let (shop_id, mode) = caller_shop(ctx, &shop_id)?;
        let time = NaiveTime::parse_from_str(time.trim(), "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(time.trim(), "%H:%M:%S"))
            .map_err(|_| {
                app_error(AppError::Invalid {
                    field: "time",
                    code: "INVALID_TIME",
                    message: format!("{time:?} is not a time of day as HH:MM"),
                })
            })?;
        let data = request(ctx)?;
        let merchant_id = caisse_domain::ids::MerchantId::parse(&data.caller.merchant_id)
            .ok_or_else(|| app_error(AppError::internal("caller without merchant")))?;
        let context = context(ctx)?;
        state(ctx)?
            .merchants
            .set_remittance_cut_off(
                &context,
                merchant_id,
                shop_id,
                CutOffSchedule {
                    time,
                    time_zone: time_zone.trim().to_string(),
                },
            )
            .await
            .map_err(app_error)?;
        cut_off_node(ctx, shop_id, mode).await
    }
}
