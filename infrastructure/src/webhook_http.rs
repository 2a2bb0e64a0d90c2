//! Server-to-server webhook delivery over HTTP(S) with SSRF protection: URL checks at registration, a DNS resolver that refuses forbidden addresses at connect time (DNS rebinding), and one logged `DeliveryAttempt` per POST.
//!
//! The network policy refuses, unless the operator allows private networks (tests
//! and local development), every address in the loopback, private, link-local,
//! CGNAT, multicast, reserved or cloud-metadata ranges ([`is_forbidden`]), and any
//! port other than 80, 443 and the configured extra ones. The check runs twice:
//! [`check_url_resolved`] when an endpoint is registered, and again when
//! [`WebhookSender::send`] connects, through a resolver that vets every address a
//! name resolves to, so a name that later rebinds to an internal address is still
//! refused. IP-literal hosts never reach a resolver, so `send` checks them itself.
//!
//! Delivery: only 2xx is success, redirects are not followed, the timeout covers
//! the whole attempt (15 s by default), `Retry-After` is parsed (seconds or
//! HTTP-date) and at most the first 512 bytes of the response are read and kept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use url::{Host, Url};

/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = "Caisse-Webhooks/1";
/// The default timeout of one delivery attempt (connect, send, response headers
/// and the read of the response prefix).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a response body is read and kept.
pub const RESPONSE_PREFIX_BYTES: usize = 512;
/// How long registration waits for a name to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The ports always allowed.
pub const STANDARD_PORTS: [u16; 2] = [80, 443];

/// Where webhooks may be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookNetworkPolicy {
    /// Loopback, private, link-local, CGNAT… addresses allowed (tests, local
    /// development). Never in production.
    pub allow_private: bool,
    /// Ports allowed in addition to 80 and 443.
    pub allowed_ports: Vec<u16>,
    /// Any port allowed (tests: receivers listen on a random port).
    pub allow_any_port: bool,
}

impl From<&crate::config::WebhooksConfig> for WebhookNetworkPolicy {
    fn from(config: &crate::config::WebhooksConfig) -> Self {
        WebhookNetworkPolicy {
            allow_private: config.allow_private_addresses,
            allowed_ports: config.allowed_ports.clone(),
            allow_any_port: config.allow_any_port,
        }
    }
}

/// The registration-time URL check of the application's port.
pub struct PolicyUrlGuard {
    pub policy: WebhookNetworkPolicy,
}

#[async_trait::async_trait]
impl caisse_application::ports::WebhookUrlGuard for PolicyUrlGuard {
    async fn check(&self, url: &str) -> Result<(), caisse_application::ports::UrlRefusal> {
        check_url_resolved(url, &self.policy)
            .await
            .map(|_| ())
            .map_err(|refusal| caisse_application::ports::UrlRefusal {
                code: refusal.code,
                message: refusal.message,
            })
    }
}

impl Default for WebhookNetworkPolicy {
    /// Production-safe: forbidden ranges refused, ports 80 and 443 only.
    fn default() -> Self {
        Self {
            allow_private: false,
            allowed_ports: Vec::new(),
            allow_any_port: false,
        }
    }
}

impl WebhookNetworkPolicy {
    /// Whether a delivery may connect to `ip`.
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_forbidden(ip)
    }

    /// Whether a webhook URL may use `port`.
    pub fn permits_port(&self, port: u16) -> bool {
        self.allow_any_port || STANDARD_PORTS.contains(&port) || self.allowed_ports.contains(&port)
    }

    fn allowed_ports_text(&self) -> String {
        let mut ports: Vec<u16> = STANDARD_PORTS.to_vec();
        ports.extend(self.allowed_ports.iter().copied());
        ports.sort_unstable();
        ports.dedup();
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `Ok` if every address is permitted; otherwise the refusal naming the
    /// first forbidden one.
    fn check_addresses(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), UrlRefusal> {
        if self.allow_private {
            return Ok(());
        }
        for addr in addrs {
            if let Some(range) = forbidden_range(addr.ip()) {
                return Err(UrlRefusal::new(
                    "WEBHOOK_URL_FORBIDDEN_ADDRESS",
                    format!(
                        "webhook host {host} resolves to {}, a {range} address refused by the \
                         webhook network policy (SSRF protection)",
                        addr.ip()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Why a webhook URL is refused: a stable code and a message naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct UrlRefusal {
    /// `WEBHOOK_URL_INVALID`, `WEBHOOK_URL_SCHEME`, `WEBHOOK_URL_PORT`,
    /// `WEBHOOK_URL_FORBIDDEN_ADDRESS` or `WEBHOOK_URL_UNRESOLVABLE`.
    pub code: &'static str,
    pub message: String,
}

impl UrlRefusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The checks that need no DNS: scheme http or https, no credentials, a host, a
/// port that is the scheme's default, 80, 443 or an allowed one, and an IP-literal
/// host outside the forbidden ranges (unless the policy allows them).
pub fn check_url(url: &str, policy: &WebhookNetworkPolicy) -> Result<Url, UrlRefusal> {
    let parsed = Url::parse(url).map_err(|e| {
        UrlRefusal::new(
            "WEBHOOK_URL_INVALID",
            format!("webhook URL {url:?} is not a valid absolute URL: {e}"),
        )
    })?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(UrlRefusal::new(
                "WEBHOOK_URL_SCHEME",
                format!("webhook URL scheme must be http or https, not {other:?}"),
            ))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefusal::new(
            "WEBHOOK_URL_INVALID",
            "webhook URL must not contain credentials (user:password@); \
             authenticate deliveries with the webhook signature",
        ));
    }
    let ip = match parsed.host() {
        None => {
            return Err(UrlRefusal::new(
                "WEBHOOK_URL_INVALID",
                format!("webhook URL {url:?} has no host"),
            ))
        }
        Some(Host::Domain(_)) => None,
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = ip {
        if !policy.permits_ip(ip) {
            let range = forbidden_range(ip).unwrap_or("forbidden");
            return Err(UrlRefusal::new(
                "WEBHOOK_URL_FORBIDDEN_ADDRESS",
                format!(
                    "webhook URL host {ip} is a {range} address, refused by the webhook \
                     network policy (SSRF protection)"
                ),
            ));
        }
    }
    let port = parsed
        .port_or_known_default()
        .expect("http and https have default ports");
    if !policy.permits_port(port) {
        return Err(UrlRefusal::new(
            "WEBHOOK_URL_PORT",
            format!(
                "webhook URL port {port} is not allowed; allowed ports: {}",
                policy.allowed_ports_text()
            ),
        ));
    }
    Ok(parsed)
}

/// [`check_url`], then resolves the host and refuses the URL if any address it
/// resolves to is forbidden: the registration-time check. Returns the addresses.
pub async fn check_url_resolved(
    url: &str,
    policy: &WebhookNetworkPolicy,
) -> Result<Vec<SocketAddr>, UrlRefusal> {
    let parsed = check_url(url, policy)?;
    let port = parsed
        .port_or_known_default()
        .expect("http and https have default ports");
    let (host, addrs) = match parsed.host() {
        Some(Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Domain(name)) => {
            let unresolvable = |why: String| {
                UrlRefusal::new(
                    "WEBHOOK_URL_UNRESOLVABLE",
                    format!("webhook host {name} cannot be resolved: {why}"),
                )
            };
            let addrs: Vec<SocketAddr> =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
                    .await
                    .map_err(|_| unresolvable(format!("no answer within {RESOLVE_TIMEOUT:?}")))?
                    .map_err(|e| unresolvable(e.to_string()))?
                    .collect();
            if addrs.is_empty() {
                return Err(unresolvable("no address".into()));
            }
            (name.to_string(), addrs)
        }
        None => unreachable!("check_url refuses URLs without a host"),
    };
    policy.check_addresses(&host, &addrs)?;
    Ok(addrs)
}

/// Whether `ip` lies in a range webhooks must never reach (see [`forbidden_range`]).
pub fn is_forbidden(ip: IpAddr) -> bool {
    forbidden_range(ip).is_some()
}

/// The name of the forbidden range `ip` lies in, if any.
///
/// IPv4: 0.0.0.0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16 (link-local,
/// including the 169.254.169.254 metadata service), 172.16/12, 192.0.0.0/24,
/// 192.168/16, 198.18/15, 224/4 (multicast), 240/4 and 255.255.255.255.
/// IPv6: ::, ::1, ::/96 (IPv4-compatible), fc00::/7 (including the AWS metadata
/// service fd00:ec2::254), fe80::/10, fec0::/10, ff00::/8, 64:ff9b:1::/48; an
/// IPv4-mapped (::ffff:0:0/96) or NAT64 (64:ff9b::/96) address is judged by the
/// IPv4 address it embeds.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip == Ipv4Addr::BROADCAST {
        return Some("broadcast (255.255.255.255)");
    }
    if (a, b) == (169, 254) {
        return Some(if ip == Ipv4Addr::new(169, 254, 169, 254) {
            "cloud metadata (169.254.169.254)"
        } else {
            "link-local (169.254.0.0/16)"
        });
    }
    match a {
        0 => Some("\"this network\" (0.0.0.0/8)"),
        10 => Some("private (10.0.0.0/8)"),
        100 if (64..=127).contains(&b) => Some("CGNAT shared (100.64.0.0/10)"),
        127 => Some("loopback (127.0.0.0/8)"),
        172 if (16..=31).contains(&b) => Some("private (172.16.0.0/12)"),
        192 if (b, c) == (0, 0) => Some("IETF protocol assignments (192.0.0.0/24)"),
        192 if b == 168 => Some("private (192.168.0.0/16)"),
        198 if b == 18 || b == 19 => Some("benchmarking (198.18.0.0/15)"),
        224..=239 => Some("multicast (224.0.0.0/4)"),
        240..=255 => Some("reserved (240.0.0.0/4)"),
        _ => None,
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if s[..6] == [0; 6] {
        return Some("IPv4-compatible (::/96, deprecated)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [hi, lo] = [s[6], s[7]];
        let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
        return forbidden_v4(v4);
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("cloud metadata (fd00:ec2::254)");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("unique local (fc00::/7)");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("link-local (fe80::/10)");
    }
    if s[0] & 0xffc0 == 0xfec0 {
        return Some("site-local (fec0::/10, deprecated)");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("multicast (ff00::/8)");
    }
    None
}

/// The connect-time check: resolves with tokio and refuses the whole name if any
/// address is forbidden (unless the policy allows private networks).
#[derive(Debug, Clone)]
struct GuardedResolver {
    policy: WebhookNetworkPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(UrlRefusal::new(
                    "WEBHOOK_URL_UNRESOLVABLE",
                    format!("webhook host {host} resolves to no address"),
                )
                .into());
            }
            policy.check_addresses(&host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The record of one delivery attempt, to be logged whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// 2xx only.
    pub success: bool,
    /// Wall-clock duration of the attempt, including the read of the prefix.
    pub latency_ms: u64,
    /// The first 512 bytes of the response body (lossy UTF-8, never more than
    /// 512 bytes); empty without a response.
    pub response_prefix: String,
    /// `Retry-After`, in seconds or as an HTTP-date (the time left until then).
    pub retry_after: Option<Duration>,
    /// Why the attempt failed before a status arrived (refused URL or address,
    /// timeout, connection refused…), or why the response body could not be read.
    pub error: Option<String>,
}

/// The client could not be built (TLS initialisation).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct SenderBuildError(String);

/// POSTs webhooks under a [`WebhookNetworkPolicy`].
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: WebhookNetworkPolicy,
    timeout: Duration,
}

impl WebhookSender {
    /// A sender with the default 15 s timeout.
    pub fn new(policy: WebhookNetworkPolicy) -> Result<Self, SenderBuildError> {
        Self::with_timeout(policy, DEFAULT_TIMEOUT)
    }

    /// A sender whose attempts time out after `timeout` (tests use a short one).
    pub fn with_timeout(
        policy: WebhookNetworkPolicy,
        timeout: Duration,
    ) -> Result<Self, SenderBuildError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            // A proxy would resolve the name itself and bypass the guarded resolver.
            .no_proxy()
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .build()
            .map_err(|e| SenderBuildError(error_chain(&e)))?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    pub fn policy(&self) -> &WebhookNetworkPolicy {
        &self.policy
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `body` (`Content-Type: application/json`) with `headers` (the
    /// Standard Webhooks ones, typically) to `url`. Never fails: every outcome is
    /// a [`DeliveryAttempt`].
    pub async fn send(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> DeliveryAttempt {
        let started = Instant::now();
        let failed = |error: String| DeliveryAttempt {
            status: None,
            success: false,
            latency_ms: elapsed_ms(started),
            response_prefix: String::new(),
            retry_after: None,
            error: Some(error),
        };
        // Also the connect-time check of IP-literal hosts, which reqwest does not
        // hand to the resolver.
        let parsed = match check_url(url, &self.policy) {
            Ok(parsed) => parsed,
            Err(refusal) => return failed(refusal.to_string()),
        };
        let mut header_map = HeaderMap::new();
        header_map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
                return failed(format!("invalid header name {name:?}"));
            };
            let Ok(header_value) = HeaderValue::from_str(value) else {
                return failed(format!("invalid value for header {name}"));
            };
            header_map.insert(header_name, header_value);
        }
        let response = match self
            .client
            .post(parsed)
            .headers(header_map)
            .body(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return failed(self.describe(&e)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let (response_prefix, read_error) = read_prefix(response, RESPONSE_PREFIX_BYTES).await;
        DeliveryAttempt {
            status: Some(status.as_u16()),
            success: status.is_success(),
            latency_ms: elapsed_ms(started),
            response_prefix,
            retry_after,
            error: read_error.map(|e| format!("reading the response body: {}", self.describe(&e))),
        }
    }

    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            format!(
                "timeout: no complete response within {} ms",
                self.timeout.as_millis()
            )
        } else {
            error_chain(error)
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An error and its sources, `": "`-separated, without repeating a message
/// already included.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// `Retry-After` as a delay: delta-seconds, or an HTTP-date (zero if past).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads at most `limit` bytes of the body, then stops (the rest is never read).
async fn read_prefix(
    mut response: reqwest::Response,
    limit: usize,
) -> (String, Option<reqwest::Error>) {
    let mut bytes = Vec::with_capacity(limit);
    let mut error = None;
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    (lossy_prefix(&bytes, limit), error)
}

/// Lossy UTF-8 of `bytes` (a prefix cut at `limit`), without a character cut in
/// two at the end, and never longer than `limit` bytes.
fn lossy_prefix(bytes: &[u8], limit: usize) -> String {
    let bytes = &bytes[..bytes.len().min(limit)];
    let end = if bytes.len() == limit {
        complete_utf8_end(bytes)
    } else {
        bytes.len()
    };
    let mut text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    if text.len() > limit {
        // Replacement characters (3 bytes each) may have grown the text.
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The length of `bytes` without a trailing UTF-8 sequence left incomplete.
fn complete_utf8_end(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(4) {
        let at = bytes.len() - back;
        let byte = bytes[at];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let needed = match byte {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        return if back < needed { at } else { bytes.len() };
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{header, HeaderMap as AxumHeaders, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use std::sync::Mutex;

    type Hits = Arc<Mutex<Vec<String>>>;

    async fn handler(
        State(hits): State<Hits>,
        uri: Uri,
        headers: AxumHeaders,
        body: Bytes,
    ) -> Response {
        hits.lock().unwrap().push(uri.path().to_string());
        match uri.path() {
            "/ok" => "ok".into_response(),
            "/fail" => (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::RETRY_AFTER, "7")],
                "down for maintenance",
            )
                .into_response(),
            "/redirect" => (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response(),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late".into_response()
            }
            "/big" => "x".repeat(10 * 1024).into_response(),
            "/echo" => {
                let get = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                format!(
                    "{}|{}|{}|{}",
                    get("content-type"),
                    get("user-agent"),
                    get("webhook-id"),
                    String::from_utf8_lossy(&body)
                )
                .into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn spawn_server() -> (u16, Hits) {
        let hits: Hits = Arc::default();
        let app = axum::Router::new()
            .fallback(handler)
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (port, hits)
    }

    fn local_policy(port: u16) -> WebhookNetworkPolicy {
        WebhookNetworkPolicy {
            allow_private: true,
            allowed_ports: vec![port],
            allow_any_port: false,
        }
    }

    fn sender(policy: WebhookNetworkPolicy) -> WebhookSender {
        WebhookSender::with_timeout(policy, Duration::from_millis(300)).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    // ---- address ranges ----

    #[test]
    fn webhook_http_forbidden_ipv4_ranges() {
        for text in [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_forbidden(ip(text)), "{text} must be forbidden");
        }
        assert_eq!(
            forbidden_range(ip("169.254.169.254")),
            Some("cloud metadata (169.254.169.254)")
        );
    }

    #[test]
    fn webhook_http_public_addresses_are_allowed() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_forbidden(ip(text)), "{text} must be allowed");
        }
    }

    #[test]
    fn webhook_http_forbidden_ipv6_ranges() {
        for text in [
            "::",
            "::1",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
        ] {
            assert!(is_forbidden(ip(text)), "{text} must be forbidden");
        }
        assert_eq!(
            forbidden_range(ip("fd00:ec2::254")),
            Some("cloud metadata (fd00:ec2::254)")
        );
        assert_eq!(
            forbidden_range(ip("::ffff:127.0.0.1")),
            Some("loopback (127.0.0.0/8)")
        );
    }

    // ---- URL checks ----

    #[test]
    fn webhook_http_check_url_refusals() {
        let policy = WebhookNetworkPolicy::default();
        let code = |url: &str| check_url(url, &policy).unwrap_err().code;
        assert_eq!(code("not a url"), "WEBHOOK_URL_INVALID");
        assert_eq!(code("ftp://x"), "WEBHOOK_URL_SCHEME");
        assert_eq!(code("file:///etc/passwd"), "WEBHOOK_URL_SCHEME");
        assert_eq!(code("http://user:pw@host/"), "WEBHOOK_URL_INVALID");
        assert_eq!(code("http://user@host/"), "WEBHOOK_URL_INVALID");
        assert_eq!(code("http://10.0.0.1/"), "WEBHOOK_URL_FORBIDDEN_ADDRESS");
        assert_eq!(code("http://[::1]/"), "WEBHOOK_URL_FORBIDDEN_ADDRESS");
        assert_eq!(
            code("http://169.254.169.254/latest/meta-data"),
            "WEBHOOK_URL_FORBIDDEN_ADDRESS"
        );
        assert_eq!(
            code("http://[::ffff:a00:1]/"),
            "WEBHOOK_URL_FORBIDDEN_ADDRESS"
        );
        // Obfuscated IPv4 forms are normalised by the URL parser, then refused.
        assert_eq!(code("http://2130706433/"), "WEBHOOK_URL_FORBIDDEN_ADDRESS");
        assert_eq!(code("http://0x7f.1/"), "WEBHOOK_URL_FORBIDDEN_ADDRESS");
        assert_eq!(code("https://example.com:8080/hook"), "WEBHOOK_URL_PORT");
        assert_eq!(code("http://example.com:22/"), "WEBHOOK_URL_PORT");

        let refusal = check_url("http://169.254.169.254/latest/meta-data", &policy).unwrap_err();
        assert!(refusal.message.contains("169.254.169.254"), "{refusal}");
        assert!(refusal.message.contains("metadata"), "{refusal}");
        let refusal = check_url("https://example.com:8080/hook", &policy).unwrap_err();
        assert!(refusal.message.contains("8080"), "{refusal}");
        assert!(refusal.message.contains("80, 443"), "{refusal}");
        let refusal = check_url("ftp://x", &policy).unwrap_err();
        assert!(refusal.message.contains("ftp"), "{refusal}");
        let refusal = check_url("http://user:pw@host/", &policy).unwrap_err();
        assert!(refusal.message.contains("credentials"), "{refusal}");
    }

    #[test]
    fn webhook_http_check_url_accepts_public_https_and_allowed_ports() {
        let policy = WebhookNetworkPolicy::default();
        let url = check_url("https://example.com/hook", &policy).unwrap();
        assert_eq!(url.as_str(), "https://example.com/hook");
        assert!(check_url("http://example.com/hook", &policy).is_ok());
        assert!(check_url("https://example.com:443/hook", &policy).is_ok());
        assert!(check_url("https://example.com:80/hook", &policy).is_ok());
        assert!(check_url("https://8.8.8.8/hook", &policy).is_ok());
        assert!(check_url("https://[2606:4700:4700::1111]/hook", &policy).is_ok());
        // A name is only judged once resolved.
        assert!(check_url("http://localhost/", &policy).is_ok());

        let permissive = WebhookNetworkPolicy {
            allow_private: true,
            allowed_ports: vec![8080],
            allow_any_port: false,
        };
        assert!(check_url("https://example.com:8080/hook", &permissive).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", &permissive).is_ok());
        assert!(check_url("http://[::1]/", &permissive).is_ok());
        // Allowing private networks does not allow other schemes or credentials.
        assert!(check_url("ftp://127.0.0.1/", &permissive).is_err());
        assert!(check_url("http://a:b@127.0.0.1/", &permissive).is_err());
    }

    #[tokio::test]
    async fn webhook_http_check_url_resolved_refuses_names_of_forbidden_addresses() {
        let refusal = check_url_resolved("http://localhost/hook", &WebhookNetworkPolicy::default())
            .await
            .unwrap_err();
        assert_eq!(refusal.code, "WEBHOOK_URL_FORBIDDEN_ADDRESS");
        assert!(refusal.message.contains("localhost"), "{refusal}");

        let addrs = check_url_resolved(
            "http://localhost/hook",
            &WebhookNetworkPolicy {
                allow_private: true,
                allowed_ports: vec![],
                allow_any_port: false,
            },
        )
        .await
        .unwrap();
        assert!(addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()));

        let addrs = check_url_resolved("https://8.8.8.8/", &WebhookNetworkPolicy::default())
            .await
            .unwrap();
        assert_eq!(addrs, vec!["8.8.8.8:443".parse().unwrap()]);

        let refusal = check_url_resolved(
            "http://no-such-host.invalid/",
            &WebhookNetworkPolicy::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.code, "WEBHOOK_URL_UNRESOLVABLE");
    }

    // ---- helpers ----

    #[test]
    fn webhook_http_retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn webhook_http_response_prefix_never_exceeds_the_limit() {
        // A two-byte character cut in two at the limit is dropped, not replaced.
        let bytes = "é".repeat(300).into_bytes();
        let text = lossy_prefix(&bytes[..511], 511);
        assert_eq!(text, "é".repeat(255));
        let text = lossy_prefix(&bytes[..512], 512);
        assert_eq!(text, "é".repeat(256));
        // Invalid bytes become U+FFFD (3 bytes), and the text is still cut at 512.
        let text = lossy_prefix(&[0xFF; 512], 512);
        assert!(text.len() <= 512);
        assert!(text.chars().all(|c| c == '\u{FFFD}'));
        assert_eq!(lossy_prefix(b"short", 512), "short");
    }

    // ---- delivery ----

    #[tokio::test]
    async fn webhook_http_send_2xx_is_success_with_headers_and_body() {
        let (port, hits) = spawn_server().await;
        let sender = sender(local_policy(port));
        let attempt = sender
            .send(
                &format!("http://127.0.0.1:{port}/echo"),
                &[("webhook-id", "msg_1".to_string())],
                br#"{"a":1}"#.to_vec(),
            )
            .await;
        assert_eq!(attempt.status, Some(200));
        assert!(attempt.success);
        assert_eq!(attempt.error, None);
        assert_eq!(attempt.retry_after, None);
        assert_eq!(
            attempt.response_prefix,
            r#"application/json|Caisse-Webhooks/1|msg_1|{"a":1}"#
        );
        assert_eq!(*hits.lock().unwrap(), vec!["/echo".to_string()]);
    }

    #[tokio::test]
    async fn webhook_http_send_500_is_failure_with_retry_after() {
        let (port, _) = spawn_server().await;
        let attempt = sender(local_policy(port))
            .send(
                &format!("http://127.0.0.1:{port}/fail"),
                &[],
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(attempt.status, Some(500));
        assert!(!attempt.success);
        assert_eq!(attempt.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(attempt.response_prefix, "down for maintenance");
        assert_eq!(attempt.error, None);
    }

    #[tokio::test]
    async fn webhook_http_send_does_not_follow_redirects() {
        let (port, hits) = spawn_server().await;
        let attempt = sender(local_policy(port))
            .send(
                &format!("http://127.0.0.1:{port}/redirect"),
                &[],
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(attempt.status, Some(302));
        assert!(!attempt.success);
        assert_eq!(*hits.lock().unwrap(), vec!["/redirect".to_string()]);
    }

    #[tokio::test]
    async fn webhook_http_send_times_out() {
        let (port, _) = spawn_server().await;
        let started = Instant::now();
        let attempt = sender(local_policy(port))
            .send(
                &format!("http://127.0.0.1:{port}/slow"),
                &[],
                b"{}".to_vec(),
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(attempt.status, None);
        assert!(!attempt.success);
        let error = attempt.error.unwrap();
        assert!(error.contains("timeout"), "{error}");
        assert!(attempt.latency_ms >= 300, "{}", attempt.latency_ms);
    }

    #[tokio::test]
    async fn webhook_http_send_keeps_only_the_first_512_bytes() {
        let (port, _) = spawn_server().await;
        let attempt = sender(local_policy(port))
            .send(&format!("http://127.0.0.1:{port}/big"), &[], b"{}".to_vec())
            .await;
        assert_eq!(attempt.status, Some(200));
        assert!(attempt.success);
        assert_eq!(attempt.response_prefix, "x".repeat(512));
        assert_eq!(attempt.error, None);
    }

    #[tokio::test]
    async fn webhook_http_send_reports_connection_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let attempt = sender(local_policy(port))
            .send(&format!("http://127.0.0.1:{port}/ok"), &[], b"{}".to_vec())
            .await;
        assert_eq!(attempt.status, None);
        assert!(!attempt.success);
        assert!(attempt.error.is_some());
    }

    #[tokio::test]
    async fn webhook_http_send_refuses_a_forbidden_ip_literal_without_connecting() {
        let (port, hits) = spawn_server().await;
        // The production default: loopback and the test port refused; the address
        // is checked first, so the refusal names it.
        let attempt = sender(WebhookNetworkPolicy::default())
            .send(&format!("http://127.0.0.1:{port}/ok"), &[], b"{}".to_vec())
            .await;
        assert_eq!(attempt.status, None);
        assert!(!attempt.success);
        let error = attempt.error.unwrap();
        assert!(error.contains("WEBHOOK_URL_FORBIDDEN_ADDRESS"), "{error}");
        assert!(error.contains("127.0.0.1"), "{error}");
        // Even with the port allowed.
        let policy = WebhookNetworkPolicy {
            allow_private: false,
            allowed_ports: vec![port],
            allow_any_port: false,
        };
        let attempt = sender(policy)
            .send(&format!("http://127.0.0.1:{port}/ok"), &[], b"{}".to_vec())
            .await;
        assert!(attempt.error.unwrap().contains("127.0.0.1"));
        assert!(hits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn webhook_http_send_resolver_refuses_a_name_of_a_forbidden_address() {
        let (port, hits) = spawn_server().await;
        let policy = WebhookNetworkPolicy {
            allow_private: false,
            allowed_ports: vec![port],
            allow_any_port: false,
        };
        // check_url passes (a name), the connect-time resolver refuses.
        assert!(check_url(&format!("http://localhost:{port}/ok"), &policy).is_ok());
        let attempt = sender(policy)
            .send(&format!("http://localhost:{port}/ok"), &[], b"{}".to_vec())
            .await;
        assert_eq!(attempt.status, None);
        assert!(!attempt.success);
        let error = attempt.error.unwrap();
        assert!(error.contains("WEBHOOK_URL_FORBIDDEN_ADDRESS"), "{error}");
        assert!(error.contains("localhost resolves to"), "{error}");
        assert!(hits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn webhook_http_send_allow_private_lets_loopback_through() {
        let (port, hits) = spawn_server().await;
        let sender = sender(local_policy(port));
        let attempt = sender
            .send(&format!("http://localhost:{port}/ok"), &[], b"{}".to_vec())
            .await;
        assert_eq!(attempt.status, Some(200), "{:?}", attempt.error);
        assert!(attempt.success);
        assert_eq!(attempt.response_prefix, "ok");
        let attempt = sender
            .send(&format!("http://127.0.0.1:{port}/ok"), &[], b"{}".to_vec())
            .await;
        assert!(attempt.success);
        assert_eq!(hits.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn webhook_http_send_refuses_bad_urls_and_headers() {
        let sender = sender(WebhookNetworkPolicy::default());
        let attempt = sender.send("ftp://example.com/", &[], vec![]).await;
        assert!(attempt.error.unwrap().contains("WEBHOOK_URL_SCHEME"));
        let attempt = sender
            .send(
                "https://example.com/",
                &[("bad header", "x".to_string())],
                vec![],
            )
            .await;
        assert!(attempt.error.unwrap().contains("invalid header name"));
    }
}
