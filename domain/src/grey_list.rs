//! Grey lists (FEATURES RC-1, RC-3, RC-4): the `GreyListEntry` aggregate (one per
//! shop, list and value, so adding, removing and re-adding a value is its own
//! short history), value normalisation, and the in-memory index payments are
//! checked against.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::ShopId;

/// Which grey list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GreyListKind {
    /// Card fingerprints (keyed HMAC of the PAN; the PAN is never stored).
    Card,
    /// BINs of 6 or 8 digits.
    Bin,
    /// Card issuing countries (ISO 3166-1 alpha-2).
    Country,
    /// IPv4 or IPv6 addresses and CIDR ranges.
    Ip,
}

impl GreyListKind {
    pub const ALL: [GreyListKind; 4] = [
        GreyListKind::Card,
        GreyListKind::Bin,
        GreyListKind::Country,
        GreyListKind::Ip,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            GreyListKind::Card => "CARD",
            GreyListKind::Bin => "BIN",
            GreyListKind::Country => "COUNTRY",
            GreyListKind::Ip => "IP",
        }
    }

    pub fn parse(text: &str) -> Option<GreyListKind> {
        GreyListKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Longest comment on an entry.
pub const COMMENT_LENGTH_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GreyListError {
    #[error("{field}: {message}")]
    InvalidValue {
        field: &'static str,
        message: String,
    },
    #[error("this value is already on the grey list")]
    AlreadyListed,
    #[error("this value is not on the grey list")]
    NotListed,
}

impl GreyListError {
    pub fn code(&self) -> &'static str {
        match self {
            GreyListError::InvalidValue { .. } => "INVALID_GREY_LIST_VALUE",
            GreyListError::AlreadyListed => "GREY_LIST_ENTRY_EXISTS",
            GreyListError::NotListed => "GREY_LIST_ENTRY_NOT_FOUND",
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        GreyListError::InvalidValue {
            field,
            message: message.into(),
        }
    }
}

/// An IP range as `[start, end]` in one address family (IPv4 as u32 widened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange {
    pub v6: bool,
    pub start: u128,
    pub end: u128,
}

/// Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or `x::/n` into its
/// canonical text and range. Host bits under the prefix are refused: they
/// usually mean a typo (`203.0.113.5/24` for `203.0.113.0/24`).
pub fn parse_ip_range(text: &str) -> Result<(String, IpRange), GreyListError> {
    let field = "value";
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = address.trim().parse().map_err(|_| {
        GreyListError::invalid(
            field,
            format!("{text:?} is not an IP address or CIDR range"),
        )
    })?;
    let ip = normalise_ip(ip);
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(|| {
                GreyListError::invalid(
                    field,
                    format!("{text:?}: the prefix length must be 0 to {bits}"),
                )
            })?,
        None => bits,
    };
    let value = ip_to_u128(ip);
    let host_bits = bits - prefix;
    let mask: u128 = if host_bits == 0 {
        0
    } else {
        (1u128 << host_bits) - 1
    };
    if value & mask != 0 {
        let network = from_u128(ip.is_ipv4(), value & !mask);
        return Err(GreyListError::invalid(
            field,
            format!("{text:?} has host bits set under /{prefix}; did you mean {network}/{prefix}?"),
        ));
    }
    let canonical = if prefix == bits {
        ip.to_string()
    } else {
        format!("{ip}/{prefix}")
    };
    Ok((
        canonical,
        IpRange {
            v6: ip.is_ipv6(),
            start: value,
            end: value | mask,
        },
    ))
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is its IPv4 address.
pub fn normalise_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        ip => ip,
    }
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v4: bool, value: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(value as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(value))
    }
}

/// Checks and normalises a value for a list. CARD values are fingerprints (64
/// hex digits, computed by the caller from a card number when one was given).
pub fn normalise_value(kind: GreyListKind, text: &str) -> Result<String, GreyListError> {
    let text = text.trim();
    match kind {
        GreyListKind::Card => {
            let lower = text.to_ascii_lowercase();
            if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(lower)
            } else {
                Err(GreyListError::invalid(
                    "cardFingerprint",
                    "a card fingerprint is 64 hexadecimal digits (a payment's card.fingerprint)",
                ))
            }
        }
        GreyListKind::Bin => {
            if (text.len() == 6 || text.len() == 8) && text.bytes().all(|b| b.is_ascii_digit()) {
                Ok(text.to_string())
            } else {
                Err(GreyListError::invalid("value", "a BIN is 6 or 8 digits"))
            }
        }
        GreyListKind::Country => {
            let upper = text.to_ascii_uppercase();
            if crate::risk::is_country_code(&upper) {
                Ok(upper)
            } else {
                Err(GreyListError::invalid(
                    "value",
                    format!("{text:?} is not an ISO 3166-1 alpha-2 country code"),
                ))
            }
        }
        GreyListKind::Ip => parse_ip_range(text).map(|(canonical, _)| canonical),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GreyListCommand {
    Add {
        shop_id: ShopId,
        kind: GreyListKind,
        value: String,
        expires_at: Option<DateTime<Utc>>,
        comment: Option<String>,
        occurred_at: DateTime<Utc>,
    },
    Remove {
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GreyListEvent {
    GreyListEntryAdded {
        shop_id: ShopId,
        kind: GreyListKind,
        /// Normalised: fingerprint, BIN, country code or canonical IP/CIDR.
        value: String,
        expires_at: Option<DateTime<Utc>>,
        comment: Option<String>,
        occurred_at: DateTime<Utc>,
    },
    GreyListEntryRemoved {
        shop_id: ShopId,
        kind: GreyListKind,
        value: String,
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for GreyListEvent {
    fn event_type(&self) -> String {
        match self {
            GreyListEvent::GreyListEntryAdded { .. } => "GreyListEntryAdded",
            GreyListEvent::GreyListEntryRemoved { .. } => "GreyListEntryRemoved",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// One value on one shop's grey list, over time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreyListEntry {
    pub listed: Option<(ShopId, GreyListKind, String)>,
    pub expires_at: Option<DateTime<Utc>>,
    pub removed: bool,
}

impl GreyListEntry {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.listed.is_some() && !self.removed && self.expires_at.is_none_or(|at| at > now)
    }
}

impl Aggregate for GreyListEntry {
    const TYPE: &'static str = "GreyListEntry";
    type Command = GreyListCommand;
    type Event = GreyListEvent;
    type Error = GreyListError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            GreyListCommand::Add {
                shop_id,
                kind,
                value,
                expires_at,
                comment,
                occurred_at,
            } => {
                if self.is_active(occurred_at) {
                    return Err(GreyListError::AlreadyListed);
                }
                let value = normalise_value(kind, &value)?;
                if expires_at.is_some_and(|at| at <= occurred_at) {
                    return Err(GreyListError::invalid("expiresAt", "must be in the future"));
                }
                let comment = comment
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty());
                if comment
                    .as_ref()
                    .is_some_and(|c| c.chars().count() > COMMENT_LENGTH_MAX)
                {
                    return Err(GreyListError::invalid(
                        "comment",
                        format!("at most {COMMENT_LENGTH_MAX} characters"),
                    ));
                }
                GreyListEvent::GreyListEntryAdded {
                    shop_id,
                    kind,
                    value,
                    expires_at,
                    comment,
                    occurred_at,
                }
            }
            GreyListCommand::Remove { occurred_at } => {
                let Some((shop_id, kind, value)) = self.listed.clone() else {
                    return Err(GreyListError::NotListed);
                };
                if !self.is_active(occurred_at) {
                    return Err(GreyListError::NotListed);
                }
                GreyListEvent::GreyListEntryRemoved {
                    shop_id,
                    kind,
                    value,
                    occurred_at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            GreyListEvent::GreyListEntryAdded {
                shop_id,
                kind,
                value,
                expires_at,
                ..
            } => {
                self.listed = Some((shop_id, kind, value));
                self.expires_at = expires_at;
                self.removed = false;
            }
            GreyListEvent::GreyListEntryRemoved { .. } => self.removed = true,
        }
    }
}

// ---------------------------------------------------------------------------
// In-memory index
// ---------------------------------------------------------------------------

/// An active entry as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyListHit {
    pub entry_id: String,
    pub value: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
}

impl GreyListHit {
    fn active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// One IP range of the index, with its nearest enclosing range: CIDR ranges
/// are nested or disjoint, so the ranges holding an address form one chain.
#[derive(Debug, Clone)]
struct IndexedRange {
    start: u128,
    end: u128,
    parent: Option<usize>,
    hit: GreyListHit,
}

/// A shop's grey lists, for lookups in constant or logarithmic time. Built
/// from the entries listed now; expired entries stay until the next rebuild
/// and are skipped by every lookup.
#[derive(Debug, Clone, Default)]
pub struct GreyListIndex {
    cards: HashMap<String, GreyListHit>,
    bins: HashMap<String, GreyListHit>,
    countries: HashMap<String, GreyListHit>,
    v4: Vec<IndexedRange>,
    v6: Vec<IndexedRange>,
}

impl GreyListIndex {
    /// Builds the index from `(kind, hit)` pairs; IP values that do not parse
    /// (never written by the aggregate) are skipped.
    pub fn build(entries: impl IntoIterator<Item = (GreyListKind, GreyListHit)>) -> Self {
        let mut index = GreyListIndex::default();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (kind, hit) in entries {
            match kind {
                GreyListKind::Card => {
                    index.cards.insert(hit.value.clone(), hit);
                }
                GreyListKind::Bin => {
                    index.bins.insert(hit.value.clone(), hit);
                }
                GreyListKind::Country => {
                    index.countries.insert(hit.value.clone(), hit);
                }
                GreyListKind::Ip => {
                    if let Ok((_, range)) = parse_ip_range(&hit.value) {
                        let indexed = IndexedRange {
                            start: range.start,
                            end: range.end,
                            parent: None,
                            hit,
                        };
                        if range.v6 {
                            v6.push(indexed)
                        } else {
                            v4.push(indexed)
                        }
                    }
                }
            }
        }
        index.v4 = link_parents(v4);
        index.v6 = link_parents(v6);
        index
    }

    pub fn len(&self) -> usize {
        self.cards.len() + self.bins.len() + self.countries.len() + self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn card(&self, fingerprint: &str, now: DateTime<Utc>) -> Option<&GreyListHit> {
        self.cards.get(fingerprint).filter(|hit| hit.active(now))
    }

    pub fn bin(&self, bin: &str, now: DateTime<Utc>) -> Option<&GreyListHit> {
        self.bins.get(bin).filter(|hit| hit.active(now))
    }

    pub fn country(&self, country: &str, now: DateTime<Utc>) -> Option<&GreyListHit> {
        self.countries.get(country).filter(|hit| hit.active(now))
    }

    /// The narrowest active range holding the address.
    pub fn ip(&self, ip: IpAddr, now: DateTime<Utc>) -> Option<&GreyListHit> {
        let ip = normalise_ip(ip);
        let ranges = if ip.is_ipv4() { &self.v4 } else { &self.v6 };
        let value = ip_to_u128(ip);
        let after = ranges.partition_point(|range| range.start <= value);
        let mut candidate = after.checked_sub(1);
        while let Some(index) = candidate {
            let range = &ranges[index];
            if range.start <= value && value <= range.end && range.hit.active(now) {
                return Some(&range.hit);
            }
            candidate = range.parent;
        }
        None
    }
}

/// Sorts ranges by start (wider first on a tie) and links each to its nearest
/// enclosing range.
fn link_parents(mut ranges: Vec<IndexedRange>) -> Vec<IndexedRange> {
    ranges.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut open: Vec<usize> = Vec::new();
    for index in 0..ranges.len() {
        while let Some(&top) = open.last() {
            if ranges[top].end < ranges[index].start {
                open.pop();
            } else {
                break;
            }
        }
        ranges[index].parent = open.last().copied();
        open.push(index);
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    fn hit(value: &str, expires_at: Option<DateTime<Utc>>) -> GreyListHit {
        GreyListHit {
            entry_id: format!("grey_{value}"),
            value: value.to_string(),
            expires_at,
            comment: None,
        }
    }

    #[test]
    fn ip_values_are_checked_and_made_canonical() {
        assert_eq!(
            normalise_value(GreyListKind::Ip, "203.0.113.0/24").unwrap(),
            "203.0.113.0/24"
        );
        assert_eq!(
            normalise_value(GreyListKind::Ip, "203.0.113.7/32").unwrap(),
            "203.0.113.7"
        );
        assert_eq!(
            normalise_value(GreyListKind::Ip, "2001:DB8::/32").unwrap(),
            "2001:db8::/32"
        );
        assert_eq!(
            normalise_value(GreyListKind::Ip, "::ffff:192.0.2.1").unwrap(),
            "192.0.2.1"
        );
        let error = normalise_value(GreyListKind::Ip, "203.0.113.5/24").unwrap_err();
        assert!(
            error.to_string().contains("did you mean 203.0.113.0/24"),
            "{error}"
        );
        assert!(normalise_value(GreyListKind::Ip, "203.0.113.0/33").is_err());
        assert!(normalise_value(GreyListKind::Ip, "not-an-ip").is_err());
        assert_eq!(
            normalise_value(GreyListKind::Bin, "49701099").unwrap(),
            "49701099"
        );
        assert!(normalise_value(GreyListKind::Bin, "4970100").is_err());
        assert_eq!(normalise_value(GreyListKind::Country, "fr").unwrap(), "FR");
        assert!(normalise_value(GreyListKind::Country, "FRA").is_err());
        assert!(normalise_value(GreyListKind::Card, "4970100000000006").is_err());
    }

    #[test]
    fn nested_ranges_find_the_narrowest_active_one() {
        let index = GreyListIndex::build(vec![
            (GreyListKind::Ip, hit("10.0.0.0/8", None)),
            (GreyListKind::Ip, hit("10.1.0.0/16", Some(at(5)))),
            (GreyListKind::Ip, hit("10.1.2.3", None)),
            (GreyListKind::Ip, hit("10.2.0.0/16", None)),
            (GreyListKind::Ip, hit("2001:db8::/32", None)),
        ]);
        let find = |ip: &str, now| index.ip(ip.parse().unwrap(), now).map(|h| h.value.clone());
        assert_eq!(find("10.1.2.3", at(1)).as_deref(), Some("10.1.2.3"));
        assert_eq!(find("10.1.9.9", at(1)).as_deref(), Some("10.1.0.0/16"));
        // Expired: the enclosing /8 answers.
        assert_eq!(find("10.1.9.9", at(6)).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(find("10.3.0.1", at(1)).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(find("11.0.0.1", at(1)), None);
        assert_eq!(
            find("2001:db8:1::1", at(1)).as_deref(),
            Some("2001:db8::/32")
        );
        assert_eq!(
            find("::ffff:10.2.3.4", at(1)).as_deref(),
            Some("10.2.0.0/16")
        );
        assert_eq!(find("2001:db9::1", at(1)), None);
    }

    #[test]
    fn an_entry_is_added_removed_and_added_again() {
        use cqrs_es::test::TestFramework;
        let shop_id = ShopId::new();
        let add = GreyListCommand::Add {
            shop_id,
            kind: GreyListKind::Country,
            value: "ru".to_string(),
            expires_at: None,
            comment: Some(" fraud wave ".to_string()),
            occurred_at: at(1),
        };
        let added = GreyListEvent::GreyListEntryAdded {
            shop_id,
            kind: GreyListKind::Country,
            value: "RU".to_string(),
            expires_at: None,
            comment: Some("fraud wave".to_string()),
            occurred_at: at(1),
        };
        let removed = GreyListEvent::GreyListEntryRemoved {
            shop_id,
            kind: GreyListKind::Country,
            value: "RU".to_string(),
            occurred_at: at(2),
        };
        TestFramework::<GreyListEntry>::with(())
            .given_no_previous_events()
            .when(add.clone())
            .then_expect_events(vec![added.clone()]);
        TestFramework::<GreyListEntry>::with(())
            .given(vec![added.clone()])
            .when(add.clone())
            .then_expect_error(GreyListError::AlreadyListed);
        TestFramework::<GreyListEntry>::with(())
            .given(vec![added.clone()])
            .when(GreyListCommand::Remove { occurred_at: at(2) })
            .then_expect_events(vec![removed.clone()]);
        TestFramework::<GreyListEntry>::with(())
            .given(vec![added.clone(), removed.clone()])
            .when(GreyListCommand::Remove { occurred_at: at(3) })
            .then_expect_error(GreyListError::NotListed);
        TestFramework::<GreyListEntry>::with(())
            .given(vec![added.clone(), removed])
            .when(add)
            .then_expect_events(vec![added]);
    }
}
