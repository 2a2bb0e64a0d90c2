//! Layered configuration: defaults, then an optional TOML file, then `CAISSE_*`
//! environment variables. Secrets are wrapped so they never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use caisse_domain::retention::{
    RETENTION_MONTHS_DEFAULT, RETENTION_MONTHS_MAX, RETENTION_MONTHS_MIN,
};
use serde::Deserialize;

/// A value that must not reach a log line.
#[derive(Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// `postgres://…` or `sqlite://…`; SQLite under `data_dir` when absent.
    pub database_url: Option<Secret>,
    /// Where the embedded database, the development vault key and mail live.
    pub data_dir: PathBuf,
    /// Base64 of 32 bytes: the AES-256-GCM key of the card vault. When absent, a
    /// development key is generated in `data_dir` (never in production).
    pub vault_key: Option<Secret>,
    /// Production refuses development conveniences (generated keys, GraphiQL).
    pub production: bool,
    /// Largest request body accepted, in bytes.
    pub request_body_bytes_max: usize,
    /// Longest a mutation waits for its own views before answering, in milliseconds.
    pub projection_wait_ms_max: u64,
    /// Seconds a buyer has to answer a 3-D Secure challenge before the payment
    /// is abandoned (`three_ds_challenge_timeout_s`, default 900).
    pub three_ds_challenge_timeout_s: u64,
    /// Connections in the database pool.
    pub database_connections_max: u32,
    /// Card brand table: the private-label ranges (COFINOGA, AURORE, SOFINCO have
    /// no public IIN; their issuers give them) and the BIN prefixes co-badged CB.
    /// Defaults are the test-environment ranges of docs/test-cards.md.
    pub card_ranges: caisse_domain::card::CardRanges,
    /// Months of history the online list and search views keep (CM-12); the
    /// retention job drops older rows from them, never from the event log.
    pub retention_months: u32,
    /// How long issuers hold an authorisation, per brand: `[authorisation_validity]`
    /// with `default_days` and a `by_brand` table (e.g. `AMEX = 7`).
    pub authorisation_validity: caisse_domain::card::AuthorisationValidity,
    /// The scheduler of due work (expiries, daily cut-offs, retention).
    pub scheduler: SchedulerConfig,
    /// `[webhooks]`: the SSRF policy of webhook URLs.
    pub webhooks: WebhooksConfig,
    /// `[plan_retry]`: how a refused instalment of a payment plan is retried
    /// (`attempts_max`, `interval_days`) before it is marked failed.
    pub plan_retry: caisse_domain::plan::RetryPolicy,
    /// `[reference]`: how often each process looks for risk reference tables
    /// loaded by `caisse reference load`.
    pub reference: ReferenceConfig,
    /// `[mail]`: how e-mail notifications leave (issue 5): SMTP, or files
    /// under `<data_dir>/mail/` in development.
    pub mail: MailConfig,
}

/// `[mail] mode`: send over SMTP, or write `.eml` files (development).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailMode {
    Smtp,
    #[default]
    Directory,
}

/// `[mail] smtp_tls`: the SMTP connection's protection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay, tests).
    None,
    /// Plain connection upgraded with STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

/// `[mail]`: the e-mail notifications' transport.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp` or `directory` (default: `<data_dir>/mail/<email_id>.eml`).
    /// Env `CAISSE_MAIL_MODE`.
    pub mode: MailMode,
    /// Env `CAISSE_MAIL_SMTP_HOST`.
    pub smtp_host: String,
    /// Env `CAISSE_MAIL_SMTP_PORT`.
    pub smtp_port: u16,
    /// `none`, `starttls` or `tls`. Env `CAISSE_MAIL_SMTP_TLS`.
    pub smtp_tls: SmtpTls,
    /// A PEM file of extra root certificates trusted for the SMTP server's
    /// certificate (a private CA, or a self-signed relay), besides the built-in
    /// webpki roots; read at startup, which fails if it is missing or holds no
    /// valid certificate. Used by `starttls` and `tls`. Env `CAISSE_MAIL_SMTP_CA_FILE`.
    pub smtp_ca_file: Option<PathBuf>,
    /// Env `CAISSE_MAIL_SMTP_USERNAME`.
    pub smtp_username: Option<String>,
    /// Env `CAISSE_MAIL_SMTP_PASSWORD`.
    pub smtp_password: Option<Secret>,
    /// The sender, `Name <address>` or an address. Env `CAISSE_MAIL_FROM`.
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            mode: MailMode::Directory,
            smtp_host: "localhost".to_string(),
            smtp_port: 587,
            smtp_tls: SmtpTls::Starttls,
            smtp_ca_file: None,
            smtp_username: None,
            smtp_password: None,
            from: "Caisse <no-reply@caisse.invalid>".to_string(),
        }
    }
}

/// `[scheduler]`: whether this process runs due work, and how often it looks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Off only for processes that must not run background work (and in tests
    /// that drive the scheduler by hand). Env `CAISSE_SCHEDULER_ENABLED`.
    pub enabled: bool,
    /// Milliseconds between two looks at what is due. Env `CAISSE_SCHEDULER_INTERVAL_MS`.
    pub interval_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            interval_ms: 1_000,
        }
    }
}

/// `[webhooks]`: where merchant webhook URLs may point (SSRF protection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow loopback, private, link-local, CGNAT and other non-public
    /// addresses. Off by default: only for tests and local development.
    /// Env `CAISSE_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES`.
    pub allow_private_addresses: bool,
    /// Ports allowed besides 80 and 443. Env `CAISSE_WEBHOOKS_ALLOWED_PORTS`
    /// (comma-separated).
    pub allowed_ports: Vec<u16>,
    /// Allow any port (tests: receivers listen on a random port).
    /// Env `CAISSE_WEBHOOKS_ALLOW_ANY_PORT`.
    pub allow_any_port: bool,
}

/// `[reference]`: the risk reference tables (BIN, IP-to-country) loaded at run time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceConfig {
    /// Milliseconds between two looks for a newer table in the database, which is
    /// then swapped in without restart. Env `CAISSE_REFERENCE_REFRESH_INTERVAL_MS`.
    pub refresh_interval_ms: u64,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig {
            refresh_interval_ms: 5_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            database_url: None,
            data_dir: PathBuf::from("./data"),
            vault_key: None,
            production: false,
            request_body_bytes_max: 64 * 1024,
            projection_wait_ms_max: 5_000,
            three_ds_challenge_timeout_s: 900,
            database_connections_max: 16,
            card_ranges: caisse_domain::card::CardRanges::default(),
            retention_months: RETENTION_MONTHS_DEFAULT,
            authorisation_validity: Default::default(),
            scheduler: SchedulerConfig::default(),
            webhooks: WebhooksConfig::default(),
            plan_retry: Default::default(),
            reference: ReferenceConfig::default(),
            mail: MailConfig::default(),
        }
    }
}

impl Config {
    /// Reads `CAISSE_CONFIG` (a TOML file) if set, then the environment.
    pub fn load() -> anyhow::Result<Config> {
        let mut config = match std::env::var("CAISSE_CONFIG") {
            Ok(path) => {
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
                toml::from_str(&text).with_context(|| format!("parsing {path}"))?
            }
            Err(_) => Config::default(),
        };
        config.apply_environment()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values the file and the environment may both have set.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=10).contains(&self.plan_retry.attempts_max)
            || !(1..=30).contains(&self.plan_retry.interval_days)
        {
            bail!("plan_retry: attempts_max must be 1 to 10 and interval_days 1 to 30");
        }
        if !(60..=86_400).contains(&self.three_ds_challenge_timeout_s) {
            bail!("three_ds_challenge_timeout_s (CAISSE_THREE_DS_CHALLENGE_TIMEOUT_S) must be 60 to 86400 seconds");
        }
        if self.production && self.webhooks.allow_private_addresses {
            bail!(
                "webhooks.allow_private_addresses (CAISSE_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES) is for tests and local development; production refuses it (SSRF)"
            );
        }
        if self.scheduler.interval_ms == 0 {
            bail!("scheduler.interval_ms (CAISSE_SCHEDULER_INTERVAL_MS) must be at least 1");
        }
        if self.reference.refresh_interval_ms == 0 {
            bail!(
                "reference.refresh_interval_ms (CAISSE_REFERENCE_REFRESH_INTERVAL_MS) must be at least 1"
            );
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            bail!(
                "mail.from (CAISSE_MAIL_FROM) = {:?}: expected an address or \"Name <address>\"",
                self.mail.from
            );
        }
        if self.mail.mode == MailMode::Smtp
            && (self.mail.smtp_host.trim().is_empty() || self.mail.smtp_port == 0)
        {
            bail!("mail: smtp mode needs smtp_host and a non-zero smtp_port (CAISSE_MAIL_SMTP_HOST, CAISSE_MAIL_SMTP_PORT)");
        }
        if self.mail.smtp_username.is_some() != self.mail.smtp_password.is_some() {
            bail!("mail: give both smtp_username and smtp_password, or neither");
        }
        // Without TLS lettre would send the password in clear text: only to a
        // relay on this very machine.
        let host = self.mail.smtp_host.trim();
        let local = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback());
        if self.mail.mode == MailMode::Smtp
            && self.mail.smtp_tls == SmtpTls::None
            && self.mail.smtp_username.is_some()
            && !local
        {
            bail!(
                "mail: smtp_tls = none (CAISSE_MAIL_SMTP_TLS) would send smtp_username and smtp_password in clear text to {host}; use starttls or tls (credentials without TLS only go to a relay on localhost)"
            );
        }
        let validity = &self.authorisation_validity;
        if let Some(days) = std::iter::once(&validity.default_days)
            .chain(validity.by_brand.values())
            .find(|days| !(1..=30).contains(*days))
        {
            bail!("authorisation_validity: {days} days: must be between 1 and 30");
        }
        if validity.reauthorisations_max > 10 {
            bail!("authorisation_validity.reauthorisations_max must be at most 10");
        }
        if !(RETENTION_MONTHS_MIN..=RETENTION_MONTHS_MAX).contains(&self.retention_months) {
            bail!(
                "retention_months (CAISSE_RETENTION_MONTHS) = {}: must be between {RETENTION_MONTHS_MIN} \
                 and {RETENTION_MONTHS_MAX} months",
                self.retention_months
            );
        }
        Ok(())
    }

    fn apply_environment(&mut self) -> anyhow::Result<()> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        if let Some(listen) = var("CAISSE_LISTEN") {
            self.listen = listen
                .parse()
                .with_context(|| format!("CAISSE_LISTEN={listen} is not host:port"))?;
        }
        if let Some(url) = var("CAISSE_DATABASE_URL") {
            self.database_url = Some(Secret::new(url));
        }
        if let Some(dir) = var("CAISSE_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(key) = var("CAISSE_VAULT_KEY") {
            self.vault_key = Some(Secret::new(key));
        }
        if let Some(production) = var("CAISSE_PRODUCTION") {
            self.production = match production.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                other => bail!("CAISSE_PRODUCTION={other}: expected true or false"),
            };
        }
        if let Some(timeout) = var("CAISSE_THREE_DS_CHALLENGE_TIMEOUT_S") {
            self.three_ds_challenge_timeout_s = timeout
                .parse()
                .context("CAISSE_THREE_DS_CHALLENGE_TIMEOUT_S")?;
        }
        if let Some(wait) = var("CAISSE_PROJECTION_WAIT_MS_MAX") {
            self.projection_wait_ms_max = wait.parse().context("CAISSE_PROJECTION_WAIT_MS_MAX")?;
        }
        if let Some(bytes) = var("CAISSE_REQUEST_BODY_BYTES_MAX") {
            self.request_body_bytes_max = bytes.parse().context("CAISSE_REQUEST_BODY_BYTES_MAX")?;
        }
        if let Some(connections) = var("CAISSE_DATABASE_CONNECTIONS_MAX") {
            self.database_connections_max = connections
                .parse()
                .context("CAISSE_DATABASE_CONNECTIONS_MAX")?;
        }
        if let Some(enabled) = var("CAISSE_SCHEDULER_ENABLED") {
            self.scheduler.enabled = match enabled.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                other => bail!("CAISSE_SCHEDULER_ENABLED={other}: expected true or false"),
            };
        }
        let flag = |name: &str, value: String| -> anyhow::Result<bool> {
            match value.as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                other => bail!("{name}={other}: expected true or false"),
            }
        };
        if let Some(value) = var("CAISSE_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES") {
            self.webhooks.allow_private_addresses =
                flag("CAISSE_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", value)?;
        }
        if let Some(value) = var("CAISSE_WEBHOOKS_ALLOW_ANY_PORT") {
            self.webhooks.allow_any_port = flag("CAISSE_WEBHOOKS_ALLOW_ANY_PORT", value)?;
        }
        if let Some(ports) = var("CAISSE_WEBHOOKS_ALLOWED_PORTS") {
            self.webhooks.allowed_ports = ports
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<u16>().with_context(|| {
                        format!("CAISSE_WEBHOOKS_ALLOWED_PORTS: {p:?} is not a port")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(interval) = var("CAISSE_SCHEDULER_INTERVAL_MS") {
            self.scheduler.interval_ms = interval.parse().with_context(|| {
                format!("CAISSE_SCHEDULER_INTERVAL_MS={interval}: expected milliseconds")
            })?;
        }
        if let Some(interval) = var("CAISSE_REFERENCE_REFRESH_INTERVAL_MS") {
            self.reference.refresh_interval_ms = interval.parse().with_context(|| {
                format!("CAISSE_REFERENCE_REFRESH_INTERVAL_MS={interval}: expected milliseconds")
            })?;
        }
        if let Some(mode) = var("CAISSE_MAIL_MODE") {
            self.mail.mode = match mode.as_str() {
                "smtp" => MailMode::Smtp,
                "directory" => MailMode::Directory,
                other => bail!("CAISSE_MAIL_MODE={other}: expected smtp or directory"),
            };
        }
        if let Some(host) = var("CAISSE_MAIL_SMTP_HOST") {
            self.mail.smtp_host = host;
        }
        if let Some(port) = var("CAISSE_MAIL_SMTP_PORT") {
            self.mail.smtp_port = port
                .parse()
                .with_context(|| format!("CAISSE_MAIL_SMTP_PORT={port}: expected a port"))?;
        }
        if let Some(tls) = var("CAISSE_MAIL_SMTP_TLS") {
            self.mail.smtp_tls = match tls.as_str() {
                "none" => SmtpTls::None,
                "starttls" => SmtpTls::Starttls,
                "tls" => SmtpTls::Tls,
                other => bail!("CAISSE_MAIL_SMTP_TLS={other}: expected none, starttls or tls"),
            };
        }
        if let Some(path) = var("CAISSE_MAIL_SMTP_CA_FILE") {
            self.mail.smtp_ca_file = Some(PathBuf::from(path));
        }
        if let Some(username) = var("CAISSE_MAIL_SMTP_USERNAME") {
            self.mail.smtp_username = Some(username);
        }
        if let Some(password) = var("CAISSE_MAIL_SMTP_PASSWORD") {
            self.mail.smtp_password = Some(Secret::new(password));
        }
        if let Some(from) = var("CAISSE_MAIL_FROM") {
            self.mail.from = from;
        }
        if let Some(months) = var("CAISSE_RETENTION_MONTHS") {
            self.retention_months = months.parse().with_context(|| {
                format!("CAISSE_RETENTION_MONTHS={months}: expected a number of months")
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caisse_domain::card::{CardBrand, PrefixRange};

    #[test]
    fn card_ranges_come_from_the_configuration_file() {
        let config: Config = toml::from_str(
            r#"
            [card_ranges]
            cb_cobadge_prefixes = ["4973"]
            [[card_ranges.private_ranges]]
            prefix = "600000"
            brand = "COFINOGA"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.card_ranges.cb_cobadge_prefixes,
            vec!["4973".to_string()]
        );
        assert_eq!(
            config.card_ranges.private_ranges,
            vec![PrefixRange {
                prefix: "600000".into(),
                brand: CardBrand::Cofinoga
            }]
        );
        assert_eq!(config.listen, Config::default().listen);
    }

    #[test]
    fn smtp_credentials_never_travel_in_clear_text_off_this_machine() {
        let with = |tls: SmtpTls, host: &str| Config {
            mail: MailConfig {
                mode: MailMode::Smtp,
                smtp_host: host.to_string(),
                smtp_tls: tls,
                smtp_username: Some("caisse".to_string()),
                smtp_password: Some(Secret::new("s3cret".to_string())),
                ..MailConfig::default()
            },
            ..Config::default()
        };
        let error = with(SmtpTls::None, "smtp.example.com")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("smtp_tls = none"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        with(SmtpTls::None, "localhost").validate().unwrap();
        with(SmtpTls::None, "127.0.0.1").validate().unwrap();
        with(SmtpTls::None, "[::1]").validate().unwrap();
        with(SmtpTls::Starttls, "smtp.example.com")
            .validate()
            .unwrap();
        with(SmtpTls::Tls, "smtp.example.com").validate().unwrap();
    }

    #[test]
    fn retention_months_defaults_to_fifteen_and_comes_from_the_file() {
        assert_eq!(Config::default().retention_months, 15);
        let config: Config = toml::from_str("retention_months = 24").unwrap();
        assert_eq!(config.retention_months, 24);
        config.validate().unwrap();
    }

    #[test]
    fn retention_months_outside_one_to_one_hundred_twenty_is_a_configuration_error() {
        for months in [0, 121] {
            let config = Config {
                retention_months: months,
                ..Config::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("retention_months"), "{error}");
            assert!(error.contains("between 1 and 120"), "{error}");
        }
    }

    #[test]
    fn reference_refresh_interval_defaults_to_five_seconds_and_must_be_positive() {
        assert_eq!(Config::default().reference.refresh_interval_ms, 5_000);
        let config: Config = toml::from_str("[reference]\nrefresh_interval_ms = 250").unwrap();
        assert_eq!(config.reference.refresh_interval_ms, 250);
        config.validate().unwrap();
        let config: Config = toml::from_str("[reference]\nrefresh_interval_ms = 0").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("CAISSE_REFERENCE_REFRESH_INTERVAL_MS"),
            "{error}"
        );
        assert!(toml::from_str::<Config>("[reference]\nrefresh_ms = 1").is_err());
    }

    #[test]
    fn mail_defaults_to_the_directory_and_smtp_comes_from_the_file() {
        let config = Config::default();
        assert_eq!(config.mail.mode, MailMode::Directory);
        config.validate().unwrap();
        let config: Config = toml::from_str(
            "[mail]\nmode = \"smtp\"\nsmtp_host = \"mail.example\"\nsmtp_port = 465\nsmtp_tls = \"tls\"\n\
             smtp_username = \"caisse\"\nsmtp_password = \"s3cret\"\nfrom = \"Shop <shop@example.com>\"",
        )
        .unwrap();
        assert_eq!(config.mail.mode, MailMode::Smtp);
        assert_eq!(config.mail.smtp_tls, SmtpTls::Tls);
        assert!(!format!("{config:?}").contains("s3cret"));
        config.validate().unwrap();
        let config: Config = toml::from_str("[mail]\nfrom = \"not an address\"").unwrap();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("CAISSE_MAIL_FROM"));
        assert!(toml::from_str::<Config>("[mail]\nsmtp_tls = \"ssl\"").is_err());
    }

    #[test]
    fn smtp_ca_file_comes_from_the_file() {
        assert_eq!(Config::default().mail.smtp_ca_file, None);
        let config: Config =
            toml::from_str("[mail]\nsmtp_ca_file = \"/etc/caisse/smtp-ca.pem\"").unwrap();
        assert_eq!(
            config.mail.smtp_ca_file,
            Some(PathBuf::from("/etc/caisse/smtp-ca.pem"))
        );
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("listn = \"127.0.0.1:1\"").is_err());
    }
}
