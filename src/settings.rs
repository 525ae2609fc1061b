//! Vigil's configuration: one TOML file, every key overridable by an environment variable
//! named after its path (`index.retention_days` → `VIGIL_INDEX_RETENTION_DAYS`). Unknown keys
//! and values of the wrong type are errors that name the key.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use vigil_collector::{SourceAddress, StartAt};

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the index, checkpoints, keys and quarantine live.
    pub data_dir: PathBuf,
    /// This node's name, stamped on every event (defaults to the host name).
    pub node_name: String,
    /// The envelope signing key, hex; empty means `<data_dir>/signing.key`, generated on
    /// first start. Separate roles on several hosts must share one key file (a mounted
    /// Secret, say): a consumer quarantines what it cannot verify.
    pub signing_key_file: String,
    /// The HTTP API and UI.
    pub api: ApiConfig,
    /// Reading audit devices.
    pub collector: CollectorConfig,
    /// The search index.
    pub index: IndexConfig,
    /// Audit devices to read.
    pub sources: SourcesConfig,
    /// The spool behind each socket and syslog receiver.
    pub spool: SpoolSettings,
    /// The rules engine.
    pub rules: RulesSettings,
    /// Where alerts go besides the API.
    pub alerts: AlertSettings,
    /// The Kafka bus of `vigil collect`, `index` and `rules` (`vigil run` needs none).
    pub kafka: KafkaSettings,
}

/// `[kafka]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`; `--kafka` overrides.
    pub brokers: String,
    /// Topic of the signed audit events.
    pub topic: String,
    /// Topic every alert revision is published to (JSON, keyed by alert id).
    pub alerts_topic: String,
    /// Topic of messages consumers refused (JSON with the reason and the original bytes).
    pub quarantine_topic: String,
    /// Create missing topics at start-up (needs the permission to).
    pub create_topics: bool,
    /// Partitions of topics Vigil creates.
    pub partitions: u32,
    /// Replication factor of topics Vigil creates.
    pub replication: u32,
    /// `group.instance.id` (static membership) of consumers; empty means the node name,
    /// which a StatefulSet keeps across restarts.
    pub instance_id: String,
    /// Producer compression: none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// `[kafka.properties]`: librdkafka properties passed as they are (TLS:
    /// `security.protocol`, `ssl.ca.location`…; SASL: `sasl.mechanism`, `sasl.username`…).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: String::new(),
            topic: "vigil-audit".to_owned(),
            alerts_topic: "vigil-alerts".to_owned(),
            quarantine_topic: "vigil-quarantine".to_owned(),
            create_topics: true,
            partitions: 3,
            replication: 1,
            instance_id: String::new(),
            compression: "lz4".to_owned(),
            properties: std::collections::BTreeMap::new(),
        }
    }
}

/// `[rules]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesSettings {
    /// Evaluate rules in `vigil run`.
    pub enabled: bool,
    /// A directory of Sigma rules laid over the built-in pack (same file name replaces);
    /// empty for the pack alone.
    pub dir: String,
    /// After an alert fires, seconds during which more hits of the same rule and group merge
    /// into it.
    pub suppress_secs: i64,
    /// `[[rules.watchlist]]`: named lists of HMACs (`vigil hash` output).
    pub watchlist: Vec<WatchListSource>,
}

/// One `[[rules.watchlist]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchListSource {
    /// The list's name as rules use it (`%honeytokens%`).
    pub name: String,
    /// The file, one HMAC a line.
    pub file: PathBuf,
    /// The audit device whose salt made the hashes; any device when absent.
    #[serde(default)]
    pub device: Option<String>,
}

impl Default for RulesSettings {
    fn default() -> Self {
        RulesSettings {
            enabled: true,
            dir: String::new(),
            suppress_secs: 3600,
            watchlist: Vec::new(),
        }
    }
}

/// `[alerts]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// URL every alert is POSTed to as JSON (at least once, with retries); empty for none.
    pub webhook_url: String,
    /// Secret for the `X-Vigil-Signature` header (HMAC-SHA256 of `timestamp.body`).
    pub webhook_secret: String,
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on; loopback unless told otherwise.
    pub listen: String,
    /// Bearer token for `/api`; empty means the one stored in the data dir (generated once).
    pub token: String,
    /// Longest a query may run, in milliseconds.
    pub query_timeout_ms: u64,
    /// Most hits one search returns.
    pub max_results: usize,
}

/// `[collector]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Longest audit line accepted, in bytes; longer ones are quarantined.
    pub max_line_bytes: usize,
    /// How often files are checked for new data, in milliseconds.
    pub poll_interval_ms: u64,
    /// Most lines published in one batch.
    pub batch_lines: usize,
    /// Most simultaneous connections per socket or TCP syslog receiver.
    pub max_connections: usize,
    /// Batches published but not yet acknowledged, per file. Acknowledgement waits for the
    /// index commit, so this bounds throughput to about `batch_lines × this` per commit.
    pub max_in_flight_batches: usize,
}

/// `[index]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// How often the index commits (and so how fresh search is), in milliseconds.
    pub commit_interval_ms: u64,
    /// Events older than this many days are deleted; 0 keeps everything.
    pub retention_days: u64,
    /// Memory the index writer may use, in megabytes.
    pub writer_memory_mb: usize,
}

/// `[sources]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    /// `[[sources.file]]`: file audit devices.
    pub file: Vec<FileSource>,
    /// `[[sources.socket]]`: receivers for socket audit devices.
    pub socket: Vec<ReceiverSource>,
    /// `[[sources.syslog]]`: receivers for syslog audit devices.
    pub syslog: Vec<ReceiverSource>,
}

/// One `[[sources.socket]]` or `[[sources.syslog]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSource {
    /// Where to listen: `tcp://HOST:PORT` or `unix:///PATH` for sockets; `unixgram:///PATH`,
    /// `udp://HOST:PORT` or `tcp://HOST:PORT` for syslog.
    pub address: String,
    /// The audit device's name in Vault; defaults to `socket`/`syslog` (numbered when several).
    #[serde(default)]
    pub device: Option<String>,
    /// The device's `hmac_accessor` option; inferred when absent.
    #[serde(default)]
    pub hmac_accessor: Option<bool>,
}

impl ReceiverSource {
    /// A receiver on `address` with defaults.
    pub fn new(address: String) -> ReceiverSource {
        ReceiverSource {
            address,
            device: None,
            hmac_accessor: None,
        }
    }
}

/// `[spool]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSettings {
    /// Most bytes a receiver's spool holds that are not yet acknowledged; beyond it new lines
    /// are dropped and counted (Vault is never blocked).
    pub max_bytes: u64,
    /// `always`, `never`, or a number of milliseconds such as `200ms`.
    pub fsync: String,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            max_bytes: 1024 * 1024 * 1024,
            fsync: "200ms".to_owned(),
        }
    }
}

/// One `[[sources.file]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Path of the audit log.
    pub path: PathBuf,
    /// The audit device's name in Vault; defaults to the file's stem.
    #[serde(default)]
    pub device: Option<String>,
    /// Where to start without a checkpoint.
    #[serde(default)]
    pub start_at: StartAt,
    /// The device's `prefix` option.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The device's `hmac_accessor` option; inferred when absent.
    #[serde(default)]
    pub hmac_accessor: Option<bool>,
}

impl FileSource {
    /// A source for `path` with defaults.
    pub fn new(path: PathBuf) -> FileSource {
        FileSource {
            path,
            device: None,
            start_at: StartAt::default(),
            prefix: None,
            hmac_accessor: None,
        }
    }

    /// The device name: configured, or the file's stem.
    pub fn device_name(&self) -> String {
        self.device.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".to_owned())
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("vigil-data"),
            node_name: std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned()),
            signing_key_file: String::new(),
            api: ApiConfig::default(),
            collector: CollectorConfig::default(),
            index: IndexConfig::default(),
            sources: SourcesConfig::default(),
            spool: SpoolSettings::default(),
            rules: RulesSettings::default(),
            alerts: AlertSettings::default(),
            kafka: KafkaSettings::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8731".to_owned(),
            token: String::new(),
            query_timeout_ms: 10_000,
            max_results: 1000,
        }
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_line_bytes: vigil_event::DEFAULT_MAX_LINE_BYTES,
            poll_interval_ms: 100,
            batch_lines: 1024,
            max_connections: 64,
            max_in_flight_batches: 48,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            commit_interval_ms: 1000,
            retention_days: 90,
            writer_memory_mb: 64,
        }
    }
}

/// The environment prefix of overrides.
const ENV_PREFIX: &str = "VIGIL_";

impl Config {
    /// Reads `path` (when given), then applies `VIGIL_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| anyhow!("config file {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        let defaults = toml::Table::try_from(Config::default()).context("serializing defaults")?;
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        apply_env(&mut table, &defaults, &mut Vec::new(), &env)?;
        let config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| match path {
                Some(p) => anyhow!("config file {}: {e}", p.display()),
                None => anyhow!("configuration: {e}"),
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.collector.max_line_bytes == 0 {
            bail!("collector.max_line_bytes must be at least 1");
        }
        if self.collector.batch_lines == 0 {
            bail!("collector.batch_lines must be at least 1");
        }
        if self.collector.max_in_flight_batches == 0 {
            bail!("collector.max_in_flight_batches must be at least 1");
        }
        if self.api.max_results == 0 {
            bail!("api.max_results must be at least 1");
        }
        if self.index.commit_interval_ms == 0 {
            bail!("index.commit_interval_ms must be at least 1");
        }
        self.spool
            .fsync
            .parse::<vigil_collector::FsyncPolicy>()
            .map_err(|e| anyhow!("spool.fsync: {e}"))?;
        for (kind, sources, parse) in [
            (
                "socket",
                &self.sources.socket,
                SourceAddress::parse_socket as fn(&str) -> _,
            ),
            ("syslog", &self.sources.syslog, SourceAddress::parse_syslog),
        ] {
            for s in sources {
                parse(&s.address)
                    .map_err(|e| anyhow!("sources.{kind} address {:?}: {e}", s.address))?;
            }
        }
        if self.kafka.partitions == 0 || self.kafka.replication == 0 {
            bail!("kafka.partitions and kafka.replication must be at least 1");
        }
        const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
        if !CODECS.contains(&self.kafka.compression.as_str()) {
            bail!(
                "kafka.compression {:?}: expected one of {}",
                self.kafka.compression,
                CODECS.join(", ")
            );
        }
        for name in [
            &self.kafka.topic,
            &self.kafka.alerts_topic,
            &self.kafka.quarantine_topic,
        ] {
            if name.is_empty() {
                bail!("kafka topic names must not be empty");
            }
        }
        self.api
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| anyhow!("api.listen {:?}: {e}", self.api.listen))?;
        Ok(())
    }
}

/// Overrides each scalar key of `defaults` from `VIGIL_<PATH>` where set, typed like the default.
fn apply_env(
    table: &mut toml::Table,
    defaults: &toml::Table,
    path: &mut Vec<String>,
    env: &[(String, String)],
) -> anyhow::Result<()> {
    for (key, default) in defaults {
        path.push(key.clone());
        match default {
            toml::Value::Table(sub) => {
                let entry = table
                    .entry(key.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(entry) = entry {
                    apply_env(entry, sub, path, env)?;
                }
            }
            toml::Value::Array(_) => {}
            scalar => {
                let name = format!("{ENV_PREFIX}{}", path.join("_").to_uppercase());
                if let Some((_, raw)) = env.iter().find(|(k, _)| *k == name) {
                    let value = match scalar {
                        toml::Value::String(_) => toml::Value::String(raw.clone()),
                        toml::Value::Integer(_) => toml::Value::Integer(
                            raw.trim()
                                .parse()
                                .map_err(|_| anyhow!("{name}: expected an integer"))?,
                        ),
                        toml::Value::Boolean(_) => toml::Value::Boolean(
                            raw.trim()
                                .parse()
                                .map_err(|_| anyhow!("{name}: expected true or false"))?,
                        ),
                        toml::Value::Float(_) => toml::Value::Float(
                            raw.trim()
                                .parse()
                                .map_err(|_| anyhow!("{name}: expected a number"))?,
                        ),
                        _ => bail!("{name}: this key cannot be set from the environment"),
                    };
                    table.insert(key.clone(), value);
                }
            }
        }
        path.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn the_example_file_is_the_defaults_plus_a_source() {
        let example = include_str!("../vigil.example.toml");
        let config = load(example, &[]).expect("example parses");
        let mut expected = Config::default();
        expected.sources.file.push(FileSource {
            device: Some("main".into()),
            ..FileSource::new("/var/log/vault/audit.log".into())
        });
        assert_eq!(config, expected);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load("[index]\nretention_dayz = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention_dayz"), "{err}");
        let err = load("[api]\nmax_results = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_results"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load(
            "[index]\nretention_days = 3\n",
            &[
                ("VIGIL_INDEX_RETENTION_DAYS", "7"),
                ("VIGIL_API_TOKEN", "t0k"),
                ("VIGIL_OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.index.retention_days, 7);
        assert_eq!(c.api.token, "t0k");
        let err = load("", &[("VIGIL_INDEX_RETENTION_DAYS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("VIGIL_INDEX_RETENTION_DAYS"), "{err}");
        let err = load("", &[("VIGIL_API_LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("api.listen"), "{err}");
    }
}
