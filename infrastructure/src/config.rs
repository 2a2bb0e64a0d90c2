//! Layered configuration: defaults, then an optional TOML file, then `CAISSE_*`
//! environment variables. Secrets are wrapped so they never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
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
    /// Connections in the database pool.
    pub database_connections_max: u32,
    /// Card brand table: the private-label ranges (COFINOGA, AURORE, SOFINCO have
    /// no public IIN; their issuers give them) and the BIN prefixes co-badged CB.
    /// Defaults are the test-environment ranges of docs/test-cards.md.
    pub card_ranges: caisse_domain::card::CardRanges,
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
            database_connections_max: 16,
            card_ranges: caisse_domain::card::CardRanges::default(),
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
        Ok(config)
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
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("listn = \"127.0.0.1:1\"").is_err());
    }
}
