//! Reference data for the risk controls (issue 4): the BIN table (BIN range →
//! brand, product, issuing country, virtual flag, systematic-authorisation flag)
//! and the IP-to-country table (DB-IP lite style `ip_start,ip_end,country`).
//!
//! Pure parsing and lookup: the caller reads the file (UTF-8 text) and hands its
//! content to [`BinTable::parse`] or [`IpCountryTable::parse`]. The formats are
//! documented in `docs/reference-data.md`. Every load error names the line
//! (1-based, counting blank and comment lines) and the field.

use crate::card::CardBrand;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A load error: the line (1-based) and the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct ReferenceError {
    pub line: usize,
    pub field: &'static str,
    pub message: String,
}

impl ReferenceError {
    fn new(line: usize, field: &'static str, message: impl Into<String>) -> Self {
        ReferenceError {
            line,
            field,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// CSV records
// ---------------------------------------------------------------------------

/// Splits one CSV line into fields. A field may be quoted with `"`; inside
/// quotes a comma is data and `""` stands for one `"`. Whitespace around a field
/// (outside quotes) is ignored. A field cannot span lines.
fn split_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | '\t')) {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_string()),
                    Some('"') => {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => field.push(c),
                }
            }
            while matches!(chars.peek(), Some(' ' | '\t')) {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => {
                    return Err(format!("unexpected {c:?} after a closing quote"));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim_end().to_string());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("quote inside an unquoted field".to_string()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim_end().to_string());
        }
    }
}

/// The data records of a file, with their line numbers: skips a leading UTF-8
/// byte order mark, blank lines and comment lines (first non-blank character `#`),
/// and checks the header. With `header_required` false, the first record is a
/// header only if its first field is the first column name (DB-IP lite files have
/// no header).
fn records(
    text: &str,
    columns: &[&str],
    header_required: bool,
) -> Result<Vec<(usize, Vec<String>)>, ReferenceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut header_seen = false;
    let mut last_line = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        last_line = line;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = split_record(raw).map_err(|m| ReferenceError::new(line, "record", m))?;
        if !header_seen {
            header_seen = true;
            let is_header =
                header_required || fields.first().map(String::as_str) == Some(columns[0]);
            if is_header {
                if fields
                    .iter()
                    .map(String::as_str)
                    .ne(columns.iter().copied())
                {
                    return Err(ReferenceError::new(
                        line,
                        "header",
                        format!(
                            "expected \"{}\", found \"{}\"",
                            columns.join(","),
                            fields.join(",")
                        ),
                    ));
                }
                continue;
            }
        }
        if fields.len() != columns.len() {
            return Err(ReferenceError::new(
                line,
                "record",
                format!("expected {} fields, found {}", columns.len(), fields.len()),
            ));
        }
        out.push((line, fields));
    }
    if header_required && !header_seen {
        return Err(ReferenceError::new(
            last_line.max(1),
            "header",
            format!("missing header \"{}\"", columns.join(",")),
        ));
    }
    Ok(out)
}

fn parse_country(line: usize, field: &'static str, text: &str) -> Result<[u8; 2], ReferenceError> {
    let bytes = text.as_bytes();
    if bytes.len() == 2 && bytes.iter().all(u8::is_ascii_alphabetic) {
        Ok([bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()])
    } else {
        Err(ReferenceError::new(
            line,
            field,
            format!("{text:?} is not an ISO 3166-1 alpha-2 country code (two letters)"),
        ))
    }
}

fn parse_bool(line: usize, field: &'static str, text: &str) -> Result<bool, ReferenceError> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ReferenceError::new(
            line,
            field,
            format!("{text:?} is not \"true\" or \"false\""),
        )),
    }
}

// ---------------------------------------------------------------------------
// BIN table
// ---------------------------------------------------------------------------

/// Card product type from the BIN table. Any other non-empty word loads as
/// `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardProduct {
    Credit,
    Debit,
    Prepaid,
    Electron,
    Vpay,
    Maestro,
    Corporate,
    Other,
}

impl CardProduct {
    pub fn as_str(&self) -> &'static str {
        match self {
            CardProduct::Credit => "CREDIT",
            CardProduct::Debit => "DEBIT",
            CardProduct::Prepaid => "PREPAID",
            CardProduct::Electron => "ELECTRON",
            CardProduct::Vpay => "VPAY",
            CardProduct::Maestro => "MAESTRO",
            CardProduct::Corporate => "CORPORATE",
            CardProduct::Other => "OTHER",
        }
    }

    /// The product for a name of the BIN table: the known names (upper case),
    /// anything else `Other`.
    pub fn parse(text: &str) -> Self {
        match text {
            "CREDIT" => CardProduct::Credit,
            "DEBIT" => CardProduct::Debit,
            "PREPAID" => CardProduct::Prepaid,
            "ELECTRON" => CardProduct::Electron,
            "VPAY" => CardProduct::Vpay,
            "MAESTRO" => CardProduct::Maestro,
            "CORPORATE" => CardProduct::Corporate,
            _ => CardProduct::Other,
        }
    }
}

impl fmt::Display for CardProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the BIN table: the PANs whose first `low.len()` digits lie in
/// `low..=high`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinRange {
    /// 6 to 8 digits.
    pub low: String,
    /// Same length as `low`, and `low <= high`.
    pub high: String,
    pub brand: CardBrand,
    pub product: CardProduct,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub virtual_card: bool,
    pub systematic_authorisation: bool,
}

pub const BIN_COLUMNS: [&str; 7] = [
    "low",
    "high",
    "brand",
    "product",
    "country",
    "virtual",
    "systematic_authorisation",
];

/// The BIN table: ranges of 6, 7 or 8 digits. Ranges of the same length never
/// overlap; a longer (narrower) range may sit inside a shorter one and wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinTable {
    /// Sorted by (length, low).
    ranges: Vec<BinRange>,
}

impl BinTable {
    /// Parses the CSV text of a BIN table (header required).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let mut rows: Vec<(usize, BinRange)> = Vec::new();
        for (line, f) in records(text, &BIN_COLUMNS, true)? {
            let low = &f[0];
            let high = &f[1];
            if !(6..=8).contains(&low.len()) || !low.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReferenceError::new(
                    line,
                    "low",
                    format!("{low:?} is not 6 to 8 digits"),
                ));
            }
            if !high.bytes().all(|b| b.is_ascii_digit()) || high.is_empty() {
                return Err(ReferenceError::new(
                    line,
                    "high",
                    format!("{high:?} is not digits"),
                ));
            }
            if high.len() != low.len() {
                return Err(ReferenceError::new(
                    line,
                    "high",
                    format!("{high:?} is not the same length as low {low:?}"),
                ));
            }
            if high < low {
                return Err(ReferenceError::new(
                    line,
                    "high",
                    format!("{high:?} is below low {low:?}"),
                ));
            }
            let brand = CardBrand::parse(&f[2]).ok_or_else(|| {
                ReferenceError::new(
                    line,
                    "brand",
                    format!("{:?} is not a known card brand", f[2]),
                )
            })?;
            if f[3].is_empty() {
                return Err(ReferenceError::new(line, "product", "is empty"));
            }
            let product = CardProduct::parse(&f[3]);
            let country = parse_country(line, "country", &f[4])?;
            let virtual_card = parse_bool(line, "virtual", &f[5])?;
            let systematic_authorisation = parse_bool(line, "systematic_authorisation", &f[6])?;
            rows.push((
                line,
                BinRange {
                    low: low.clone(),
                    high: high.clone(),
                    brand,
                    product,
                    country: String::from_utf8_lossy(&country).into_owned(),
                    virtual_card,
                    systematic_authorisation,
                },
            ));
        }
        rows.sort_by(|(_, a), (_, b)| {
            a.low
                .len()
                .cmp(&b.low.len())
                .then_with(|| a.low.cmp(&b.low))
        });
        for pair in rows.windows(2) {
            let (first_line, first) = &pair[0];
            let (line, range) = &pair[1];
            if range.low.len() == first.low.len() && range.low <= first.high {
                return Err(ReferenceError::new(
                    *line,
                    "low",
                    format!(
                        "range {}-{} overlaps range {}-{} of line {first_line}",
                        range.low, range.high, first.low, first.high
                    ),
                ));
            }
        }
        Ok(BinTable {
            ranges: rows.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// The ranges, sorted by length then low bound.
    pub fn ranges(&self) -> &[BinRange] {
        &self.ranges
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The narrowest range holding a PAN or BIN (digits only): an 8-digit range
    /// before a 7-digit one before a 6-digit one. A range of N digits is compared
    /// with the first N digits, so it matches only inputs of at least N digits.
    pub fn lookup(&self, pan_or_bin: &str) -> Option<&BinRange> {
        if pan_or_bin.is_empty() || !pan_or_bin.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        for length in (6..=8).rev() {
            if pan_or_bin.len() < length {
                continue;
            }
            let prefix = &pan_or_bin[..length];
            let start = self.ranges.partition_point(|r| r.low.len() < length);
            let end = self.ranges.partition_point(|r| r.low.len() <= length);
            let group = &self.ranges[start..end];
            // The last range whose low bound is <= prefix.
            let after = group.partition_point(|r| r.low.as_str() <= prefix);
            if after > 0 {
                let range = &group[after - 1];
                if prefix <= range.high.as_str() {
                    return Some(range);
                }
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// IP-to-country table
// ---------------------------------------------------------------------------

pub const IP_COLUMNS: [&str; 3] = ["ip_start", "ip_end", "country"];

/// The IP-to-country table: sorted, non-overlapping ranges per address family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpCountryTable {
    v4: Vec<(u32, u32, [u8; 2])>,
    v6: Vec<(u128, u128, [u8; 2])>,
}

fn find<T: Ord + Copy>(ranges: &[(T, T, [u8; 2])], ip: T) -> Option<&[u8; 2]> {
    let after = ranges.partition_point(|(start, _, _)| *start <= ip);
    if after == 0 {
        return None;
    }
    let (_, end, country) = &ranges[after - 1];
    (ip <= *end).then_some(country)
}

fn check_overlaps<T: Ord + Copy>(
    rows: &mut [(usize, T, T, [u8; 2])],
    show: impl Fn(T) -> String,
) -> Result<(), ReferenceError> {
    rows.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    for pair in rows.windows(2) {
        let (first_line, first_start, first_end, _) = pair[0];
        let (line, start, end, _) = pair[1];
        if start <= first_end {
            return Err(ReferenceError::new(
                line,
                "ip_start",
                format!(
                    "range {}-{} overlaps range {}-{} of line {first_line}",
                    show(start),
                    show(end),
                    show(first_start),
                    show(first_end)
                ),
            ));
        }
    }
    Ok(())
}

impl IpCountryTable {
    /// Parses DB-IP lite style CSV text: `ip_start,ip_end,country`, IPv4 and IPv6
    /// rows mixed; the header line is optional.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (line, f) in records(text, &IP_COLUMNS, false)? {
            let start: IpAddr = f[0].parse().map_err(|_| {
                ReferenceError::new(line, "ip_start", format!("{:?} is not an IP address", f[0]))
            })?;
            let end: IpAddr = f[1].parse().map_err(|_| {
                ReferenceError::new(line, "ip_end", format!("{:?} is not an IP address", f[1]))
            })?;
            let country = parse_country(line, "country", &f[2])?;
            let backwards =
                || ReferenceError::new(line, "ip_end", format!("{end} is below ip_start {start}"));
            match (start, end) {
                (IpAddr::V4(s), IpAddr::V4(e)) => {
                    let (s, e) = (u32::from(s), u32::from(e));
                    if e < s {
                        return Err(backwards());
                    }
                    v4.push((line, s, e, country));
                }
                (IpAddr::V6(s), IpAddr::V6(e)) => {
                    let (s, e) = (u128::from(s), u128::from(e));
                    if e < s {
                        return Err(backwards());
                    }
                    v6.push((line, s, e, country));
                }
                _ => {
                    return Err(ReferenceError::new(
                        line,
                        "ip_end",
                        format!("{end} is not the same address family as ip_start {start}"),
                    ))
                }
            }
        }
        check_overlaps(&mut v4, |n| Ipv4Addr::from(n).to_string())?;
        check_overlaps(&mut v6, |n| Ipv6Addr::from(n).to_string())?;
        Ok(IpCountryTable {
            v4: v4.into_iter().map(|(_, s, e, c)| (s, e, c)).collect(),
            v6: v6.into_iter().map(|(_, s, e, c)| (s, e, c)).collect(),
        })
    }

    /// Number of ranges (both families).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The country of an address. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// not found among the IPv6 ranges is looked up as its IPv4 address.
    pub fn lookup(&self, ip: IpAddr) -> Option<&str> {
        let found = match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)).or_else(|| {
                v6.to_ipv4_mapped()
                    .and_then(|v4| find(&self.v4, u32::from(v4)))
            }),
        };
        found.and_then(|c| std::str::from_utf8(c).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINS: &str = include_str!("../../reference/bins.csv");
    const IPS: &str = include_str!("../../reference/ip-country.csv");
    const BIN_HEADER: &str = "low,high,brand,product,country,virtual,systematic_authorisation\n";

    fn bin_error(body: &str) -> ReferenceError {
        BinTable::parse(&format!("{BIN_HEADER}{body}")).unwrap_err()
    }

    fn ip_error(body: &str) -> ReferenceError {
        IpCountryTable::parse(&format!("ip_start,ip_end,country\n{body}")).unwrap_err()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn shipped_bin_table_loads_and_looks_up() {
        let table = BinTable::parse(BINS).unwrap();
        assert_eq!(table.len(), 8);

        let fr = table.lookup("4970100000000006").unwrap();
        assert_eq!(fr.brand, CardBrand::Cb);
        assert_eq!(fr.product, CardProduct::Credit);
        assert_eq!(fr.country, "FR");
        assert!(!fr.virtual_card && !fr.systematic_authorisation);
        assert_eq!(table.lookup("497010").unwrap().low, "497010");

        // The 8-digit virtual range inside 497010 wins.
        let virt = table.lookup("4970109912345678").unwrap();
        assert_eq!(virt.low, "49701099");
        assert!(virt.virtual_card);
        // A 6-digit BIN cannot reach an 8-digit range.
        assert_eq!(table.lookup("497010").unwrap().low, "497010");

        let electron = table.lookup("4917350000000000").unwrap();
        assert_eq!(electron.product, CardProduct::Electron);
        assert!(electron.systematic_authorisation);
        assert_eq!(electron.country, "GB");

        assert_eq!(table.lookup("4111111111111111").unwrap().country, "US");
        assert_eq!(
            table.lookup("2223000000000007").unwrap().product,
            CardProduct::Prepaid
        );
        assert_eq!(
            table.lookup("378282000000008").unwrap().brand,
            CardBrand::Amex
        );
        assert_eq!(
            table.lookup("5555550000000002").unwrap().brand,
            CardBrand::Mastercard
        );

        assert!(table.lookup("4000000000000002").is_none());
        assert!(table.lookup("49701").is_none());
        assert!(table.lookup("4970 1000 0000 0006").is_none());
        assert!(table.lookup("").is_none());
    }

    #[test]
    fn shipped_ip_table_loads_and_looks_up() {
        let table = IpCountryTable::parse(IPS).unwrap();
        assert_eq!(table.len(), 5);
        assert_eq!(table.lookup(ip("203.0.113.9")), Some("FR"));
        assert_eq!(table.lookup(ip("203.0.113.7")), Some("FR"));
        assert_eq!(table.lookup(ip("203.0.113.0")), Some("FR"));
        assert_eq!(table.lookup(ip("203.0.113.255")), Some("FR"));
        assert_eq!(table.lookup(ip("203.0.114.0")), None);
        assert_eq!(table.lookup(ip("192.0.2.1")), Some("US"));
        assert_eq!(table.lookup(ip("198.51.100.200")), Some("DE"));
        assert_eq!(table.lookup(ip("10.0.0.1")), None);
        assert_eq!(table.lookup(ip("2001:db8::1")), Some("FR"));
        assert_eq!(table.lookup(ip("2001:db8:1::42")), Some("US"));
        assert_eq!(table.lookup(ip("2001:db8:2::1")), None);
        assert_eq!(table.lookup(ip("::ffff:203.0.113.9")), Some("FR"));
        assert_eq!(table.lookup(ip("::1")), None);
    }

    #[test]
    fn ip_header_is_optional_as_in_db_ip_lite() {
        let table = IpCountryTable::parse("1.0.0.0,1.0.0.255,au\n1.0.1.0,1.0.3.255,CN\n").unwrap();
        assert_eq!(table.lookup(ip("1.0.0.7")), Some("AU"));
        assert_eq!(table.lookup(ip("1.0.2.0")), Some("CN"));
    }

    #[test]
    fn bin_errors_name_line_and_field() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "41111a,411111,VISA,CREDIT,FR,false,false",
                2,
                "low",
                "\"41111a\" is not 6 to 8 digits",
            ),
            (
                "41111,41111,VISA,CREDIT,FR,false,false",
                2,
                "low",
                "\"41111\" is not 6 to 8 digits",
            ),
            (
                "411111,4111x1,VISA,CREDIT,FR,false,false",
                2,
                "high",
                "\"4111x1\" is not digits",
            ),
            (
                "411111,41111,VISA,CREDIT,FR,false,false",
                2,
                "high",
                "\"41111\" is not the same length as low \"411111\"",
            ),
            (
                "411119,411111,VISA,CREDIT,FR,false,false",
                2,
                "high",
                "\"411111\" is below low \"411119\"",
            ),
            (
                "411111,411111,DISCOVER,CREDIT,FR,false,false",
                2,
                "brand",
                "\"DISCOVER\" is not a known card brand",
            ),
            (
                "411111,411111,VISA,,FR,false,false",
                2,
                "product",
                "is empty",
            ),
            (
                "411111,411111,VISA,CREDIT,FRA,false,false",
                2,
                "country",
                "\"FRA\" is not an ISO 3166-1 alpha-2 country code (two letters)",
            ),
            (
                "411111,411111,VISA,CREDIT,F1,false,false",
                2,
                "country",
                "\"F1\" is not an ISO 3166-1 alpha-2 country code (two letters)",
            ),
            (
                "411111,411111,VISA,CREDIT,FR,yes,false",
                2,
                "virtual",
                "\"yes\" is not \"true\" or \"false\"",
            ),
            (
                "411111,411111,VISA,CREDIT,FR,false,1",
                2,
                "systematic_authorisation",
                "\"1\" is not \"true\" or \"false\"",
            ),
            (
                "411111,411111,VISA,CREDIT,FR,false",
                2,
                "record",
                "expected 7 fields, found 6",
            ),
            (
                "411111,\"411111,VISA,CREDIT,FR,false,false",
                2,
                "record",
                "unterminated quoted field",
            ),
        ];
        for (body, line, field, message) in cases {
            let error = bin_error(body);
            assert_eq!(
                (error.line, error.field, error.message.as_str()),
                (*line, *field, *message),
                "{body}"
            );
        }
        let error = bin_error("411111,41111,VISA,CREDIT,FR,false,false");
        assert_eq!(
            error.to_string(),
            "line 2: high: \"41111\" is not the same length as low \"411111\""
        );
    }

    #[test]
    fn bin_line_numbers_count_blank_and_comment_lines() {
        let text = format!(
            "# comment\n\n{BIN_HEADER}411111,411111,VISA,CREDIT,US,false,false\n  # indented comment\n\n411112,411112,VISA,CREDIT,US,maybe,false\n"
        );
        let error = BinTable::parse(&text).unwrap_err();
        assert_eq!((error.line, error.field), (7, "virtual"));
    }

    #[test]
    fn bin_overlap_of_same_length_is_an_error_nesting_is_not() {
        let error = bin_error(
            "411100,411199,VISA,CREDIT,US,false,false\n555555,555555,MASTERCARD,DEBIT,BE,false,false\n411150,411160,VISA,DEBIT,US,false,false",
        );
        assert_eq!((error.line, error.field), (4, "low"));
        assert_eq!(
            error.message,
            "range 411150-411160 overlaps range 411100-411199 of line 2"
        );
        // Touching bounds overlap too.
        let error = bin_error(
            "411150,411199,VISA,CREDIT,US,false,false\n411100,411150,VISA,DEBIT,US,false,false",
        );
        assert_eq!((error.line, error.field), (2, "low"));
        // A narrower range of another length is fine.
        let table = BinTable::parse(&format!(
            "{BIN_HEADER}411100,411199,VISA,CREDIT,US,false,false\n4111500,4111509,VISA,DEBIT,US,false,false\n41115055,41115055,VISA,PREPAID,US,true,false"
        ))
        .unwrap();
        assert_eq!(
            table.lookup("4111500000000000").unwrap().product,
            CardProduct::Debit
        );
        assert_eq!(
            table.lookup("4111505500000000").unwrap().product,
            CardProduct::Prepaid
        );
        assert_eq!(
            table.lookup("4111510000000000").unwrap().product,
            CardProduct::Credit
        );
        assert_eq!(table.lookup("411150").unwrap().product, CardProduct::Credit);
    }

    #[test]
    fn bin_header_is_required_and_checked() {
        let error = BinTable::parse("411111,411111,VISA,CREDIT,US,false,false\n").unwrap_err();
        assert_eq!((error.line, error.field), (1, "header"));
        let error = BinTable::parse("# only a comment\n").unwrap_err();
        assert_eq!((error.line, error.field), (1, "header"));
        assert!(BinTable::parse(BIN_HEADER).unwrap().is_empty());
    }

    #[test]
    fn quoted_fields_and_unknown_products() {
        let table = BinTable::parse(&format!(
            "\u{feff}{BIN_HEADER}\"411111\", \"411111\" ,VISA,\"GOLD, \"\"PREMIUM\"\"\",fr,false,true\r\n"
        ))
        .unwrap();
        let range = table.lookup("4111111111111111").unwrap();
        assert_eq!(range.product, CardProduct::Other);
        assert_eq!(range.country, "FR");
        assert!(range.systematic_authorisation);
        assert_eq!(
            split_record(r#"a,"b,c","d""e",,"""""#).unwrap(),
            vec!["a", "b,c", "d\"e", "", "\""]
        );
        assert_eq!(
            split_record(r#""a"b"#).unwrap_err(),
            "unexpected 'b' after a closing quote"
        );
        assert_eq!(
            split_record("a\"b").unwrap_err(),
            "quote inside an unquoted field"
        );
        let error = bin_error("\"411111\"x,411111,VISA,CREDIT,FR,false,false");
        assert_eq!((error.line, error.field), (2, "record"));
    }

    #[test]
    fn ip_errors_name_line_and_field() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "203.0.113.300,203.0.113.255,FR",
                2,
                "ip_start",
                "\"203.0.113.300\" is not an IP address",
            ),
            (
                "203.0.113.0,not-an-ip,FR",
                2,
                "ip_end",
                "\"not-an-ip\" is not an IP address",
            ),
            (
                "203.0.113.0,2001:db8::,FR",
                2,
                "ip_end",
                "2001:db8:: is not the same address family as ip_start 203.0.113.0",
            ),
            (
                "203.0.113.9,203.0.113.0,FR",
                2,
                "ip_end",
                "203.0.113.0 is below ip_start 203.0.113.9",
            ),
            (
                "2001:db8::ff,2001:db8::1,FR",
                2,
                "ip_end",
                "2001:db8::1 is below ip_start 2001:db8::ff",
            ),
            (
                "203.0.113.0,203.0.113.255,France",
                2,
                "country",
                "\"France\" is not an ISO 3166-1 alpha-2 country code (two letters)",
            ),
            (
                "203.0.113.0,203.0.113.255",
                2,
                "record",
                "expected 3 fields, found 2",
            ),
        ];
        for (body, line, field, message) in cases {
            let error = ip_error(body);
            assert_eq!(
                (error.line, error.field, error.message.as_str()),
                (*line, *field, *message),
                "{body}"
            );
        }
    }

    #[test]
    fn ip_overlap_is_an_error() {
        let error = ip_error(
            "203.0.113.0,203.0.113.255,FR\n# comment\n10.0.0.0,10.0.0.255,US\n203.0.113.128,203.0.114.0,DE",
        );
        assert_eq!((error.line, error.field), (5, "ip_start"));
        assert_eq!(
            error.message,
            "range 203.0.113.128-203.0.114.0 overlaps range 203.0.113.0-203.0.113.255 of line 2"
        );
        let error = ip_error("2001:db8::,2001:db8::ffff,FR\n2001:db8::ffff,2001:db8::1:0,US");
        assert_eq!((error.line, error.field), (3, "ip_start"));
        // The same numbers in different families do not overlap.
        assert!(IpCountryTable::parse("0.0.0.0,0.0.0.255,FR\n::,::ff,US").is_ok());
    }

    #[test]
    fn ip_header_when_present_must_match() {
        let error = IpCountryTable::parse("ip_start,ip_stop,country\n").unwrap_err();
        assert_eq!((error.line, error.field), (1, "header"));
    }
}
