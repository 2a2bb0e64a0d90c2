//! Exports of payments as CSV and Excel .xlsx (FEATURES CM-9): the HTTP routes
//! `GET /exports/payments.csv` and `GET /exports/payments.xlsx`, the `caisse export`
//! command, and the writers both share. Rows are read one keyset page at a time
//! (the order and paging of the `payments` query), so no export is ever held in
//! memory whole: the CSV body is streamed page by page, the .xlsx is written row by
//! row to a temporary file (rust_xlsxwriter's constant-memory mode) and then streamed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::graphql::types::{Guarantee, RiskOutcome};
use anyhow::{anyhow, bail};
use async_graphql::{EnumType, ID};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Json;
use caisse_application::AppError;
use caisse_domain::{Currency, Mode};
use caisse_infrastructure::time::{parse_date, parse_timestamp};
use caisse_infrastructure::{Config, Database, Db};
use caisse_projections::money::milli_to_string;
use caisse_projections::queries::{
    list_payments, PaymentCursor, PaymentFilter, PaymentRow, ReadScope, PAGE_SIZE_MAX,
};
use caisse_projections::Projectors;
use futures::{Stream, StreamExt};
use rust_xlsxwriter::{Format as CellFormat, Workbook, XlsxError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::{authenticate, AuthError};
use crate::errors::codes;
use crate::graphql::query::PaymentFilterInput;
use crate::graphql::types::{CardBrand, Channel, PaymentStatus};
use crate::state::AppState;

/// Most payments one .xlsx can hold: a worksheet has 1 048 576 rows, one is the header.
pub const XLSX_PAYMENTS_MAX: u64 = 1_048_575;

/// The export's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// Language of the column headers; for CSV it also picks the separators that
/// spreadsheet software of that language expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    fn parse(text: &str) -> Option<Lang> {
        match text.to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// French spreadsheet software reads `;`-separated files, since `,` is its
    /// decimal separator.
    fn separator(self) -> char {
        match self {
            Lang::En => ',',
            Lang::Fr => ';',
        }
    }

    fn decimal_point(self) -> char {
        match self {
            Lang::En => '.',
            Lang::Fr => ',',
        }
    }

    fn sheet_name(self) -> &'static str {
        match self {
            Lang::En => "Payments",
            Lang::Fr => "Paiements",
        }
    }
}

/// What one cell holds, before a writer gives it its CSV or .xlsx form.
enum Value<'a> {
    Text(Cow<'a, str>),
    /// Thousandths of the major unit of the row's currency.
    Amount(i64),
    /// An instant as the views store it (fixed-width RFC 3339, UTC).
    Instant(&'a str),
    /// A date `YYYY-MM-DD`.
    Date(&'a str),
}

fn text(value: &str) -> Value<'_> {
    Value::Text(Cow::Borrowed(value))
}

fn optional(value: &Option<String>) -> Value<'_> {
    text(value.as_deref().unwrap_or(""))
}

/// One column of every export: its headers and how a row fills it.
struct Column {
    en: &'static str,
    fr: &'static str,
    /// Width in the .xlsx, in characters.
    width: f64,
    value: for<'a> fn(&'a PaymentRow) -> Value<'a>,
}

/// The columns, in order. Never a card number: the views have none, only the BIN
/// and the last four digits.
const COLUMNS: &[Column] = &[
    Column {
        en: "Payment ID",
        fr: "Identifiant du paiement",
        width: 42.0,
        value: |row| text(&row.payment_id),
    },
    Column {
        en: "Created at (UTC)",
        fr: "Créé le (UTC)",
        width: 20.0,
        value: |row| Value::Instant(&row.created_at),
    },
    Column {
        en: "Order reference",
        fr: "Référence de commande",
        width: 24.0,
        value: |row| text(&row.order_reference),
    },
    Column {
        en: "Shop",
        fr: "Boutique",
        width: 42.0,
        value: |row| text(&row.shop_id),
    },
    Column {
        en: "Mode",
        fr: "Mode",
        width: 6.0,
        value: |row| text(&row.mode),
    },
    Column {
        en: "Status",
        fr: "Statut",
        width: 24.0,
        value: |row| text(&row.status),
    },
    Column {
        en: "Channel",
        fr: "Canal",
        width: 12.0,
        value: |row| text(&row.channel),
    },
    Column {
        en: "Capture mode",
        fr: "Mode de capture",
        width: 12.0,
        value: |row| text(&row.capture_mode),
    },
    Column {
        en: "Capture date",
        fr: "Date de capture",
        width: 12.0,
        value: |row| Value::Date(&row.capture_date),
    },
    Column {
        en: "Currency",
        fr: "Devise",
        width: 8.0,
        value: |row| text(&row.currency),
    },
    Column {
        en: "Amount",
        fr: "Montant",
        width: 14.0,
        value: |row| Value::Amount(row.amount_milli),
    },
    Column {
        en: "Authorised",
        fr: "Autorisé",
        width: 14.0,
        value: |row| Value::Amount(row.authorised_milli),
    },
    Column {
        en: "Captured",
        fr: "Capturé",
        width: 14.0,
        value: |row| Value::Amount(row.captured_milli),
    },
    Column {
        en: "Refunded",
        fr: "Remboursé",
        width: 14.0,
        value: |row| Value::Amount(row.refunded_milli),
    },
    Column {
        en: "Card brand",
        fr: "Marque de la carte",
        width: 12.0,
        value: |row| text(&row.card_brand),
    },
    Column {
        en: "BIN",
        fr: "BIN",
        width: 8.0,
        value: |row| text(&row.card_bin),
    },
    Column {
        en: "Last four",
        fr: "4 derniers chiffres",
        width: 8.0,
        value: |row| text(&row.card_last_four),
    },
    Column {
        en: "Expiry",
        fr: "Expiration",
        width: 8.0,
        value: |row| {
            Value::Text(Cow::Owned(format!(
                "{:02}/{}",
                row.card_expiry_month, row.card_expiry_year
            )))
        },
    },
    Column {
        en: "Cardholder",
        fr: "Titulaire de la carte",
        width: 20.0,
        value: |row| optional(&row.card_holder_name),
    },
    Column {
        en: "Buyer e-mail",
        fr: "E-mail de l'acheteur",
        width: 24.0,
        value: |row| optional(&row.buyer_email),
    },
    Column {
        en: "Authorisation code",
        fr: "Code d'autorisation",
        width: 10.0,
        value: |row| optional(&row.authorisation_code),
    },
    Column {
        en: "Refusal code",
        fr: "Code de refus",
        width: 10.0,
        value: |row| optional(&row.refusal_code),
    },
    Column {
        en: "Refusal message",
        fr: "Motif du refus",
        width: 24.0,
        value: |row| optional(&row.refusal_message),
    },
    Column {
        en: "Remittance ID",
        fr: "Identifiant de la remise",
        width: 42.0,
        value: |row| optional(&row.remittance_id),
    },
    Column {
        en: "Duplicated from",
        fr: "Dupliqué depuis",
        width: 42.0,
        value: |row| optional(&row.duplicated_from),
    },
    Column {
        en: "Updated at (UTC)",
        fr: "Modifié le (UTC)",
        width: 20.0,
        value: |row| Value::Instant(&row.updated_at),
    },
    Column {
        en: "3-D Secure",
        fr: "3-D Secure",
        width: 16.0,
        value: |row| text(&row.three_ds_status),
    },
    Column {
        en: "Payment guarantee",
        fr: "Garantie de paiement",
        width: 12.0,
        value: |row| text(&row.guarantee),
    },
    Column {
        en: "Risk outcome",
        fr: "Verdict risque",
        width: 12.0,
        value: |row| text(&row.risk_outcome),
    },
    Column {
        en: "Risk controls fired",
        fr: "Contrôles déclenchés",
        width: 30.0,
        value: |row| optional(&row.risk_fired),
    },
];

fn header(column: &Column, lang: Lang) -> &'static str {
    match lang {
        Lang::En => column.en,
        Lang::Fr => column.fr,
    }
}

// ---------------------------------------------------------------------------
// Parameters, shared by the HTTP routes and the command line.

/// A validated export request.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub filter: PaymentFilter,
    pub lang: Lang,
}

/// A parameter that cannot be used: its code, the parameter's name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub code: String,
    pub field: Option<String>,
    pub message: String,
}

impl ParamError {
    fn bad(field: &str, message: impl std::fmt::Display) -> Self {
        ParamError {
            code: codes::BAD_USER_INPUT.to_string(),
            field: Some(field.to_string()),
            message: format!("{field}: {message}"),
        }
    }

    /// The filter's own validation speaks GraphQL errors; keep their code and field.
    fn from_graphql(error: async_graphql::Error) -> Self {
        let extension = |name: &str| match error.extensions.as_ref()?.get(name)? {
            async_graphql::Value::String(value) => Some(value.clone()),
            _ => None,
        };
        ParamError {
            code: extension("code").unwrap_or_else(|| codes::BAD_USER_INPUT.to_string()),
            field: extension("field"),
            message: error.message.clone(),
        }
    }
}

/// Parameters taken once; `status` (or `statuses`) may repeat and hold commas.
const SINGLE_PARAMETERS: &[&str] = &[
    "shopId",
    "createdFrom",
    "createdTo",
    "orderReference",
    "amountMin",
    "amountMax",
    "currency",
    "cardBrand",
    "guarantee",
    "riskOutcome",
    "lastFour",
    "channel",
    "lang",
];

/// A GraphQL enum value by its name (`CAPTURED`, `CALL_CENTER`, `CB`…), so the
/// export accepts exactly the values the `payments` filter accepts.
fn enum_value<T: EnumType>(field: &str, name: &str) -> Result<T, ParamError> {
    T::items()
        .iter()
        .find(|item| item.name.eq_ignore_ascii_case(name))
        .map(|item| item.value)
        .ok_or_else(|| {
            let names: Vec<&str> = T::items().iter().map(|item| item.name).collect();
            ParamError::bad(field, format!("expected one of {}", names.join(", ")))
        })
}

/// Validates the parameters (name, value) of an export: the filters of the
/// `payments` query, with the same names, checks and conversion, and `lang`.
/// An empty value counts as absent, as an empty field of an HTML form means.
pub fn parse_params(pairs: &[(String, String)]) -> Result<ExportRequest, ParamError> {
    let mut single: Vec<(&str, &str)> = Vec::new();
    let mut statuses: Vec<PaymentStatus> = Vec::new();
    for (name, value) in pairs {
        let value = value.trim();
        if name == "status" || name == "statuses" {
            for status in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                statuses.push(enum_value(name, status)?);
            }
            continue;
        }
        let Some(known) = SINGLE_PARAMETERS.iter().find(|known| **known == name) else {
            return Err(ParamError::bad(
                name,
                format!(
                    "unknown parameter; known: {}, status",
                    SINGLE_PARAMETERS.join(", ")
                ),
            ));
        };
        if single.iter().any(|(seen, _)| seen == known) {
            return Err(ParamError::bad(name, "given more than once"));
        }
        single.push((known, value));
    }
    let get = |name: &str| {
        single
            .iter()
            .find(|(known, value)| *known == name && !value.is_empty())
            .map(|(_, value)| value.to_string())
    };
    let lang = match get("lang") {
        Some(text) => {
            Lang::parse(&text).ok_or_else(|| ParamError::bad("lang", "expected en or fr"))?
        }
        None => Lang::En,
    };
    let input = PaymentFilterInput {
        shop_id: get("shopId").map(ID::from),
        created_from: get("createdFrom"),
        created_to: get("createdTo"),
        statuses: (!statuses.is_empty()).then_some(statuses),
        order_reference: get("orderReference"),
        amount_min: get("amountMin"),
        amount_max: get("amountMax"),
        currency: get("currency"),
        card_brand: get("cardBrand")
            .map(|name| enum_value::<CardBrand>("cardBrand", &name))
            .transpose()?,
        last_four: get("lastFour"),
        channel: get("channel")
            .map(|name| enum_value::<Channel>("channel", &name))
            .transpose()?,
        guarantee: get("guarantee")
            .map(|name| enum_value::<Guarantee>("guarantee", &name))
            .transpose()?,
        risk_outcome: get("riskOutcome")
            .map(|name| enum_value::<RiskOutcome>("riskOutcome", &name))
            .transpose()?,
    };
    let filter = input.to_filter("").map_err(ParamError::from_graphql)?;
    Ok(ExportRequest { filter, lang })
}

// ---------------------------------------------------------------------------
// Reading.

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Read(#[from] AppError),
    #[error("writing the .xlsx file failed: {0}")]
    Xlsx(#[from] XlsxError),
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("more than {XLSX_PAYMENTS_MAX} payments, the most one .xlsx sheet holds: narrow the filter or export CSV")]
    TooManyRows,
    #[error("the export stopped: {0}")]
    Interrupted(String),
}

/// The payments a filter selects, newest first, one keyset page at a time.
struct Pages {
    db: Db,
    scope: ReadScope,
    filter: PaymentFilter,
    after: Option<PaymentCursor>,
    done: bool,
}

impl Pages {
    fn new(db: Db, scope: ReadScope, filter: PaymentFilter) -> Self {
        Pages {
            db,
            scope,
            filter,
            after: None,
            done: false,
        }
    }

    /// The next page, or `None` once every row was read (or a read failed).
    async fn next(&mut self) -> Result<Option<Vec<PaymentRow>>, AppError> {
        if self.done {
            return Ok(None);
        }
        let page = list_payments(
            &self.db,
            &self.scope,
            &self.filter,
            PAGE_SIZE_MAX,
            self.after.as_ref(),
        )
        .await;
        let (rows, has_next) = match page {
            Ok(page) => page,
            Err(error) => {
                self.done = true;
                return Err(error);
            }
        };
        self.done = !has_next;
        self.after = rows.last().map(|row| PaymentCursor {
            created_at: row.created_at.clone(),
            payment_id: row.payment_id.clone(),
        });
        Ok((!rows.is_empty()).then_some(rows))
    }
}

// ---------------------------------------------------------------------------
// CSV: UTF-8 with a BOM, CRLF line ends, RFC 4180 quoting.

const BOM: char = '\u{feff}';

/// Appends one field, quoted when it holds the separator, a quote or a line end.
fn push_csv_field(out: &mut String, field: &str, separator: char) {
    if field.contains([separator, '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or carriage
/// return first) is prefixed with `'`, which spreadsheets show as plain text
/// (OWASP "CSV injection"): order references and names are free text.
fn neutralise_formula(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn csv_header(lang: Lang) -> String {
    let mut out = String::new();
    out.push(BOM);
    for (index, column) in COLUMNS.iter().enumerate() {
        if index > 0 {
            out.push(lang.separator());
        }
        push_csv_field(&mut out, header(column, lang), lang.separator());
    }
    out.push_str("\r\n");
    out
}

fn push_csv_row(out: &mut String, row: &PaymentRow, lang: Lang) {
    for (index, column) in COLUMNS.iter().enumerate() {
        if index > 0 {
            out.push(lang.separator());
        }
        let field = match (column.value)(row) {
            Value::Text(text) => neutralise_formula(&text).into_owned(),
            // Exact: the amount's decimal text with the currency's minor units.
            Value::Amount(milli) => milli_to_string(milli, &row.currency)
                .replace('.', &lang.decimal_point().to_string()),
            Value::Instant(text) | Value::Date(text) => text.to_string(),
        };
        push_csv_field(out, &field, lang.separator());
    }
    out.push_str("\r\n");
}

/// The CSV of an export, chunk by chunk: the header with the first page, then a
/// chunk per page.
struct CsvChunks {
    pages: Pages,
    lang: Lang,
    header_written: bool,
    rows: u64,
}

impl CsvChunks {
    fn new(pages: Pages, lang: Lang) -> Self {
        CsvChunks {
            pages,
            lang,
            header_written: false,
            rows: 0,
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ExportError> {
        let mut out = String::new();
        if !self.header_written {
            self.header_written = true;
            out = csv_header(self.lang);
        }
        if let Some(rows) = self.pages.next().await? {
            for row in &rows {
                push_csv_row(&mut out, row, self.lang);
            }
            self.rows += rows.len() as u64;
        }
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }
}

/// Writes the CSV to `path`; returns the number of payments. No file is left
/// behind when the export fails.
pub async fn write_csv(
    db: Db,
    scope: ReadScope,
    request: ExportRequest,
    path: &Path,
) -> Result<u64, ExportError> {
    let mut chunks = CsvChunks::new(Pages::new(db, scope, request.filter), request.lang);
    let result = async {
        let mut file = tokio::fs::File::create(path).await?;
        while let Some(chunk) = chunks.next_chunk().await? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok::<u64, ExportError>(chunks.rows)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

// ---------------------------------------------------------------------------
// .xlsx: amounts are numbers with the currency's decimals, instants and dates are
// date cells, everything else is text (so "0006" keeps its zeros).

/// The one worksheet of an .xlsx export, written row by row.
struct XlsxSheet {
    workbook: Workbook,
    /// Index: the currency's minor units (0 to 3).
    amount_formats: Vec<CellFormat>,
    instant_format: CellFormat,
    date_format: CellFormat,
    rows: u64,
}

impl XlsxSheet {
    fn new(lang: Lang) -> Result<Self, XlsxError> {
        let mut workbook = Workbook::new();
        let sheet = workbook.add_worksheet_with_constant_memory();
        sheet.set_name(lang.sheet_name())?;
        let bold = CellFormat::new().set_bold();
        for (index, column) in COLUMNS.iter().enumerate() {
            sheet.set_column_width(index as u16, column.width)?;
            sheet.write_string_with_format(0, index as u16, header(column, lang), &bold)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        Ok(XlsxSheet {
            workbook,
            amount_formats: ["#,##0", "#,##0.0", "#,##0.00", "#,##0.000"]
                .into_iter()
                .map(|pattern| CellFormat::new().set_num_format(pattern))
                .collect(),
            instant_format: CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            date_format: CellFormat::new().set_num_format("yyyy-mm-dd"),
            rows: 0,
        })
    }

    fn append(&mut self, rows: &[PaymentRow]) -> Result<(), ExportError> {
        let sheet = self.workbook.worksheet_from_index(0)?;
        for row in rows {
            if self.rows >= XLSX_PAYMENTS_MAX {
                return Err(ExportError::TooManyRows);
            }
            self.rows += 1;
            let line = self.rows as u32;
            let decimals = Currency::parse(&row.currency)
                .map(|currency| currency.minor_units())
                .unwrap_or(3)
                .min(3) as usize;
            for (index, column) in COLUMNS.iter().enumerate() {
                let col = index as u16;
                match (column.value)(row) {
                    Value::Text(text) if text.is_empty() => {}
                    Value::Text(text) => {
                        sheet.write_string(line, col, text)?;
                    }
                    // A number cell: the nearest binary double of an amount with at
                    // most 12 significant digits (below 10^9 with 3 decimals), which
                    // spreadsheets show back exactly (they keep 15).
                    Value::Amount(milli) => {
                        sheet.write_number_with_format(
                            line,
                            col,
                            milli as f64 / 1000.0,
                            &self.amount_formats[decimals],
                        )?;
                    }
                    Value::Instant(text) => match parse_timestamp(text) {
                        Some(at) => {
                            sheet.write_datetime_with_format(
                                line,
                                col,
                                at.naive_utc(),
                                &self.instant_format,
                            )?;
                        }
                        None => {
                            sheet.write_string(line, col, text)?;
                        }
                    },
                    Value::Date(text) => match parse_date(text) {
                        Some(date) => {
                            sheet.write_date_with_format(line, col, date, &self.date_format)?;
                        }
                        None => {
                            sheet.write_string(line, col, text)?;
                        }
                    },
                }
            }
        }
        Ok(())
    }

    fn save(mut self, path: &Path) -> Result<u64, ExportError> {
        let last_column = (COLUMNS.len() - 1) as u16;
        self.workbook
            .worksheet_from_index(0)?
            .autofilter(0, 0, self.rows as u32, last_column)?;
        self.workbook.save(path)?;
        Ok(self.rows)
    }
}

/// What the page reader hands the .xlsx writer thread.
enum Batch {
    Rows(Vec<PaymentRow>),
    End,
}

/// Writes the .xlsx to `path`; returns the number of payments. The workbook is
/// written on a blocking thread while pages are read; it saves only once every
/// page arrived, so a failed export leaves no file.
pub async fn write_xlsx(
    db: Db,
    scope: ReadScope,
    request: ExportRequest,
    path: PathBuf,
) -> Result<u64, ExportError> {
    // Two pages in flight at most: the reader waits for the writer.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(2);
    let lang = request.lang;
    let writer = tokio::task::spawn_blocking(move || -> Result<u64, ExportError> {
        let mut sheet = XlsxSheet::new(lang)?;
        loop {
            match receiver.blocking_recv() {
                Some(Batch::Rows(rows)) => sheet.append(&rows)?,
                Some(Batch::End) => return sheet.save(&path),
                None => return Err(ExportError::Interrupted("reading stopped".into())),
            }
        }
    });
    let mut pages = Pages::new(db, scope, request.filter);
    let read = async {
        while let Some(rows) = pages.next().await? {
            if sender.send(Batch::Rows(rows)).await.is_err() {
                // The writer failed; its error is the one reported.
                return Ok(());
            }
        }
        let _ = sender.send(Batch::End).await;
        Ok::<(), ExportError>(())
    }
    .await;
    drop(sender);
    let written = writer
        .await
        .map_err(|error| ExportError::Interrupted(error.to_string()))?;
    read?;
    written
}

// ---------------------------------------------------------------------------
// HTTP.

/// `GET /exports/payments.csv` or `.xlsx`, authenticated like `/graphql`.
pub fn payments_route<S>(app: Arc<AppState>, format: Format) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(
        move |headers: HeaderMap, query: Result<Query<Vec<(String, String)>>, QueryRejection>| async move {
            export_payments(app, format, headers, query).await
        },
    )
}

/// `{"error": {"code", "field", "message"}}`.
fn error_response(status: StatusCode, code: &str, field: Option<&str>, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "field": field, "message": message } })),
    )
        .into_response()
}

fn internal_error(error: ExportError) -> Response {
    tracing::error!(%error, "export failed");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        None,
        "internal error; the incident was logged",
    )
}

async fn export_payments(
    app: Arc<AppState>,
    format: Format,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let caller = match authenticate(&app, authorization).await {
        Ok(caller) => caller,
        Err(AuthError::Unavailable) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                None,
                "authentication is unavailable",
            )
        }
        Err(error) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                codes::UNAUTHENTICATED,
                None,
                &error.to_string(),
            )
        }
    };
    let Query(pairs) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                codes::BAD_USER_INPUT,
                None,
                &rejection.body_text(),
            )
        }
    };
    let request = match parse_params(&pairs) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &error.code,
                error.field.as_deref(),
                &error.message,
            )
        }
    };
    // A key is one shop's: another shop, whoever's it is, is not found (as in
    // `cashSummary`), rather than an empty file that would look like no sales.
    if request
        .filter
        .shop_id
        .is_some_and(|shop| shop != caller.shop_id)
    {
        return error_response(
            StatusCode::NOT_FOUND,
            "SHOP_NOT_FOUND",
            Some("shopId"),
            "shop not found",
        );
    }
    let scope = caller.read_scope();
    let file_name = format!(
        "payments-{}.{}",
        app.clock.now().format("%Y%m%d-%H%M%S"),
        format.extension()
    );
    let body = match format {
        Format::Csv => csv_body(app.db().clone(), scope, request).await,
        Format::Xlsx => xlsx_body(app.db().clone(), scope, request).await,
    };
    let (body, length) = match body {
        Ok(body) => body,
        Err(ExportError::TooManyRows) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "EXPORT_TOO_LARGE",
                None,
                &ExportError::TooManyRows.to_string(),
            )
        }
        Err(error) => return internal_error(error),
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        )
        // Payment data: no shared cache keeps a copy.
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(length) = length {
        response = response.header(header::CONTENT_LENGTH, length);
    }
    response
        .body(body)
        .unwrap_or_else(|error| internal_error(ExportError::Interrupted(error.to_string())))
}

/// The CSV body, streamed page by page. The first page is read before answering,
/// so a database that fails at once gets a 500, not a truncated 200; a failure
/// later aborts the body, which clients see as an incomplete transfer.
async fn csv_body(
    db: Db,
    scope: ReadScope,
    request: ExportRequest,
) -> Result<(Body, Option<u64>), ExportError> {
    let mut chunks = CsvChunks::new(Pages::new(db, scope, request.filter), request.lang);
    let first = chunks.next_chunk().await?.unwrap_or_default();
    let rest = futures::stream::unfold(chunks, |mut chunks| async move {
        match chunks.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), chunks)),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "export failed while streaming");
                Some((Err(error), chunks))
            }
        }
    });
    let stream = futures::stream::once(async move { Ok::<Bytes, ExportError>(first) }).chain(rest);
    Ok((Body::from_stream(stream), None))
}

/// The .xlsx body: written to a temporary file, then streamed from it. The file
/// is deleted once the body is sent or dropped.
async fn xlsx_body(
    db: Db,
    scope: ReadScope,
    request: ExportRequest,
) -> Result<(Body, Option<u64>), ExportError> {
    let temporary = tempfile::Builder::new()
        .prefix("caisse-export-")
        .suffix(".xlsx")
        .tempfile()?
        .into_temp_path();
    write_xlsx(db, scope, request, temporary.to_path_buf()).await?;
    let file = tokio::fs::File::open(&temporary).await?;
    let length = file.metadata().await?.len();
    Ok((
        Body::from_stream(file_chunks(file, temporary)),
        Some(length),
    ))
}

/// A file as a stream of 64 KiB chunks; `keep` lives until the last one.
fn file_chunks(
    file: tokio::fs::File,
    keep: tempfile::TempPath,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(Some((file, keep)), |state| async move {
        let (mut file, keep) = state?;
        let mut buffer = vec![0u8; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(Bytes::from(buffer)), Some((file, keep))))
            }
            Err(error) => Some((Err(error), None)),
        }
    })
}

// ---------------------------------------------------------------------------
// `caisse export`.

/// `caisse export --format csv|xlsx --shop SHOP_ID --mode test|live --output FILE`.
#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    format: Format,
    /// Column headers, and for CSV the separators: en (`,` and `.`) or fr (`;` and `,`).
    #[arg(long, default_value = "en")]
    lang: String,
    /// The shop whose payments are exported.
    #[arg(long)]
    shop: String,
    /// test or live.
    #[arg(long)]
    mode: String,
    /// Created at or after: YYYY-MM-DD (UTC) or an RFC 3339 instant.
    #[arg(long)]
    created_from: Option<String>,
    /// Created before (an instant) or on (a date).
    #[arg(long)]
    created_to: Option<String>,
    /// Repeatable, or comma-separated: AUTHORISED, CAPTURED, REFUNDED, …
    #[arg(long)]
    status: Vec<String>,
    #[arg(long)]
    order_reference: Option<String>,
    /// Inclusive, decimal.
    #[arg(long)]
    amount_min: Option<String>,
    /// Inclusive, decimal.
    #[arg(long)]
    amount_max: Option<String>,
    #[arg(long)]
    currency: Option<String>,
    #[arg(long)]
    card_brand: Option<String>,
    #[arg(long)]
    last_four: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    /// The file to write.
    #[arg(long)]
    output: PathBuf,
}

impl ExportArgs {
    /// The flags as the HTTP parameters they stand for, so both go through one check.
    fn params(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("shopId".to_string(), self.shop.clone()),
            ("lang".to_string(), self.lang.clone()),
        ];
        for (name, value) in [
            ("createdFrom", &self.created_from),
            ("createdTo", &self.created_to),
            ("orderReference", &self.order_reference),
            ("amountMin", &self.amount_min),
            ("amountMax", &self.amount_max),
            ("currency", &self.currency),
            ("cardBrand", &self.card_brand),
            ("lastFour", &self.last_four),
            ("channel", &self.channel),
        ] {
            if let Some(value) = value {
                pairs.push((name.to_string(), value.clone()));
            }
        }
        for status in &self.status {
            pairs.push(("status".to_string(), status.clone()));
        }
        pairs
    }
}

/// The command-line flag of an HTTP parameter: `createdFrom` → `--created-from`.
fn flag_name(parameter: &str) -> String {
    if parameter == "shopId" {
        return "--shop".to_string();
    }
    let mut flag = String::from("--");
    for c in parameter.chars() {
        if c.is_ascii_uppercase() {
            flag.push('-');
        }
        flag.push(c.to_ascii_lowercase());
    }
    flag
}

pub async fn run(args: ExportArgs, config: Config) -> anyhow::Result<()> {
    let mode = match args.mode.to_ascii_lowercase().as_str() {
        "test" => Mode::Test,
        "live" => Mode::Live,
        _ => bail!("--mode: expected test or live"),
    };
    let request = parse_params(&args.params()).map_err(|error| match &error.field {
        Some(field) => {
            let reason = error
                .message
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&error.message);
            anyhow!("{}: {reason}", flag_name(field))
        }
        None => anyhow!("{}", error.message),
    })?;
    let shop = request
        .filter
        .shop_id
        .ok_or_else(|| anyhow!("--shop is required"))?;
    let database = Database::connect(&config).await?;
    database.migrate().await?;
    let db = database.db.clone();
    // Apply what the log holds and the views miss (a server stopped before its
    // projector caught up), so the file shows every payment of the log.
    Projectors::new(db.clone(), Duration::from_secs(1))
        .catch_up_all()
        .await
        .map_err(|error| anyhow!("{error}"))?;
    let known = db
        .fetch_optional(
            "SELECT shop_id FROM shops_view WHERE shop_id = $1",
            &[shop.to_string().into()],
        )
        .await
        .map_err(|error| anyhow!("{error}"))?;
    if known.is_none() {
        bail!("--shop: no shop {shop} in {}", database.description);
    }
    let scope = ReadScope {
        shop_ids: vec![shop],
        mode,
    };
    let output = args.output;
    let count = match args.format {
        Format::Csv => write_csv(db, scope, request, &output).await?,
        Format::Xlsx => write_xlsx(db, scope, request, output.clone()).await?,
    };
    println!("exported {count} payments to {}", output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed_and_formulas_are_neutralised() {
        let mut out = String::new();
        push_csv_field(&mut out, "plain", ',');
        push_csv_field(&mut out, "a,b", ',');
        push_csv_field(&mut out, "a;b", ',');
        push_csv_field(&mut out, "say \"hi\"", ';');
        push_csv_field(&mut out, "two\nlines", ';');
        assert_eq!(out, "plain\"a,b\"a;b\"say \"\"hi\"\"\"\"two\nlines\"");
        assert_eq!(neutralise_formula("=1+2"), "'=1+2");
        assert_eq!(neutralise_formula("-5"), "'-5");
        assert_eq!(neutralise_formula("ORD-1"), "ORD-1");
    }

    #[test]
    fn parameters_mirror_the_payments_filter_and_name_the_bad_one() {
        let request = parse_params(&pairs(&[
            ("status", "CAPTURED,refunded"),
            ("status", "REFUSED"),
            ("amountMin", "10.5"),
            ("cardBrand", "VISA"),
            ("channel", "CALL_CENTER"),
            ("currency", ""),
            ("lang", "FR"),
        ]))
        .unwrap();
        assert_eq!(request.lang, Lang::Fr);
        assert_eq!(request.filter.statuses, ["CAPTURED", "REFUNDED", "REFUSED"]);
        assert_eq!(request.filter.amount_min_milli, Some(10_500));
        assert_eq!(request.filter.card_brand.as_deref(), Some("VISA"));
        assert_eq!(request.filter.channel.as_deref(), Some("CALL_CENTER"));
        assert_eq!(request.filter.currency, None, "empty means absent");

        for (name, value) in [
            ("createdFrom", "yesterday"),
            ("amountMax", "12.3456"),
            ("lastFour", "12a4"),
            ("status", "PAID"),
            ("lang", "de"),
            ("shopId", "nope"),
            ("colour", "blue"),
        ] {
            let error = parse_params(&pairs(&[(name, value)])).unwrap_err();
            assert_eq!(error.code, "BAD_USER_INPUT", "{name}");
            assert_eq!(error.field.as_deref(), Some(name), "{error:?}");
            assert!(error.message.starts_with(&format!("{name}: ")), "{error:?}");
        }
        for twice in [
            [("currency", "EUR"), ("currency", "USD")],
            [("currency", ""), ("currency", "USD")],
        ] {
            let error = parse_params(&pairs(&twice)).unwrap_err();
            assert_eq!(error.field.as_deref(), Some("currency"), "{twice:?}");
            assert!(error.message.contains("more than once"), "{error:?}");
        }
    }

    #[test]
    fn flags_are_named_after_their_parameters() {
        assert_eq!(flag_name("createdFrom"), "--created-from");
        assert_eq!(flag_name("lastFour"), "--last-four");
        assert_eq!(flag_name("shopId"), "--shop");
        assert_eq!(flag_name("status"), "--status");
    }

    #[test]
    fn the_largest_amount_keeps_every_digit_in_a_spreadsheet_cell() {
        // Below AMOUNT_MAX with three decimals: 12 significant digits, and
        // spreadsheets show 15, so the cell's double reads back exactly.
        let milli = caisse_domain::money::AMOUNT_MAX * 1000 - 1;
        assert_eq!((milli as f64 / 1000.0).to_string(), "999999999.999");
        assert_eq!((1_234_f64 / 1000.0).to_string(), "1.234");
        assert_eq!((12_340_f64 / 1000.0).to_string(), "12.34");
    }
}
