//! Vigil's settings: one TOML file, every key overridable by an environment variable named
//! after its path (`index.retention_days` → `VIGIL_INDEX_RETENTION_DAYS`), read once into
//! typed values (addresses, fsync policy, compression, optional paths) that build the stages.
//! Unknown keys and values of the wrong type are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use vigil_collector::{FsyncPolicy, PeerNet, ReceiverKind, SourceAddress, StartAt};

use crate::data_dir::DataDir;

/// The flags every command that reads the configuration takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Configuration file (TOML); see vigil.example.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the index, checkpoints, keys, alerts and quarantine live.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl CommonArgs {
    /// Loads the settings (file, then environment, then `--data-dir`) and prepares the data dir.
    pub fn load(&self) -> anyhow::Result<(Settings, DataDir)> {
        let mut settings = Settings::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            settings.data_dir = dir.clone();
        }
        let data_dir = DataDir::create(&settings.data_dir)?;
        Ok((settings, data_dir))
    }
}

/// The audit devices to read, as given on the command line (`vigil run`, `vigil collect`),
/// added to the configured ones.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A file audit device to tail; repeatable. A glob (`'/var/log/vault/*.log'`) tails every
    /// matching file present at start-up.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// A socket audit device to receive: tcp://HOST:PORT or unix:///PATH; repeatable.
    #[arg(long = "socket", value_name = "ADDR", value_parser = SourceAddress::parse_socket)]
    pub sockets: Vec<SourceAddress>,
    /// A syslog audit device to receive: unixgram:///PATH, udp://HOST:PORT or tcp://HOST:PORT;
    /// repeatable.
    #[arg(long = "syslog", value_name = "ADDR", value_parser = SourceAddress::parse_syslog)]
    pub syslogs: Vec<SourceAddress>,
}

impl SourceArgs {
    /// Adds these sources to the configured ones.
    pub fn add_to(self, sources: &mut SourcesSettings) {
        sources
            .file
            .extend(self.files.into_iter().map(FileSource::new));
        sources
            .socket
            .extend(self.sockets.into_iter().map(ReceiverSource::new));
        sources
            .syslog
            .extend(self.syslogs.into_iter().map(ReceiverSource::new));
    }
}

/// The flags of the commands that serve the API (`vigil run`, `vigil serve`).
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address of the HTTP API.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Bearer token of the API (default: api.token, VIGIL_API_TOKEN, api.token_file, else
    /// generated in the data dir).
    #[arg(long, value_name = "T", conflicts_with = "api_token_file")]
    pub api_token: Option<String>,
    /// A file holding the bearer token of the API (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// Lays these flags over `[api]`.
    pub fn apply(self, api: &mut ApiSettings) {
        if let Some(listen) = self.listen {
            api.listen = listen;
        }
        if let Some(file) = self.api_token_file {
            api.token = None;
            api.token_file = Some(file);
        }
        if let Some(token) = self.api_token {
            api.token = Some(token);
        }
    }
}

/// The flags every Kafka role takes.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT…] (default: kafka.brokers, VIGIL_KAFKA_BROKERS).
    #[arg(long = "kafka", value_name = "BROKERS")]
    pub brokers: Option<String>,
    /// Serve `/metrics` and `/healthz` on this address (none by default).
    #[arg(long = "metrics", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the index, checkpoints, keys and quarantine live.
    pub data_dir: PathBuf,
    /// This node's name, stamped on every event (defaults to the host name).
    pub node_name: String,
    /// The envelope signing key file (hex); none means `<data_dir>/signing.key`, generated on
    /// first start. Separate roles on several hosts must share one key file (a mounted
    /// Secret, say): a consumer quarantines what it cannot verify.
    #[serde(with = "empty_is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The HTTP API and UI.
    pub api: ApiSettings,
    /// Reading audit devices.
    pub collector: CollectorSettings,
    /// The search index.
    pub index: IndexSettings,
    /// Audit devices to read.
    pub sources: SourcesSettings,
    /// The spool behind each socket and syslog receiver.
    pub spool: SpoolSettings,
    /// Where refused input is kept.
    pub quarantine: QuarantineSettings,
    /// The rules engine.
    pub rules: RulesSettings,
    /// Where alerts go besides the API.
    pub alerts: AlertSettings,
    /// The Kafka bus of `vigil collect`, `index` and `rules` (`vigil run` needs none).
    pub kafka: KafkaSettings,
}

/// Producer compression of the Kafka roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (the default: cheap on CPU, good on JSON).
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The name librdkafka's `compression.type` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`; `--kafka` overrides.
    #[serde(with = "empty_is_none")]
    pub brokers: Option<String>,
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
    /// `group.instance.id` (static membership) of consumers; none means the node name,
    /// which a StatefulSet keeps across restarts.
    #[serde(with = "empty_is_none")]
    pub instance_id: Option<String>,
    /// Producer compression.
    pub compression: Compression,
    /// Largest record the producer sends (librdkafka's `message.max.bytes`); the topic's
    /// `max.message.bytes` must accept it (checked at start-up). Lines whose envelope is
    /// larger are quarantined by the collector.
    pub max_message_bytes: usize,
    /// A consumer holding partitions with records left that receives nothing for this many
    /// seconds re-joins its group with a fresh client (logged, counted).
    pub stall_timeout_secs: u64,
    /// `[kafka.properties]`: librdkafka properties passed as they are (TLS:
    /// `security.protocol`, `ssl.ca.location`…; SASL: `sasl.mechanism`, `sasl.username`…).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: None,
            topic: "vigil-audit".to_owned(),
            alerts_topic: "vigil-alerts".to_owned(),
            quarantine_topic: "vigil-quarantine".to_owned(),
            create_topics: true,
            partitions: 3,
            replication: 1,
            instance_id: None,
            compression: Compression::Lz4,
            max_message_bytes: vigil_bus::DEFAULT_MAX_MESSAGE_BYTES,
            stall_timeout_secs: vigil_bus::DEFAULT_STALL_TIMEOUT.as_secs(),
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
    /// none for the pack alone.
    #[serde(with = "empty_is_none")]
    pub dir: Option<PathBuf>,
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
            dir: None,
            suppress_secs: 3600,
            watchlist: Vec::new(),
        }
    }
}

/// `[alerts]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// URL every alert is POSTed to as JSON (at least once, with retries); none for no
    /// webhook. A secret for Slack-style hooks: logs show only its host.
    #[serde(with = "empty_is_none")]
    pub webhook_url: Option<String>,
    /// Secret for the `X-Vigil-Signature` header (HMAC-SHA256 of `timestamp.body`).
    #[serde(with = "empty_is_none")]
    pub webhook_secret: Option<String>,
    /// Accept an `http://` webhook URL off loopback (`https://` otherwise).
    pub webhook_allow_http: bool,
    /// Attempts at an alert the webhook refuses with a 4xx (other than 408/429) before it is
    /// moved to the dead letters; it never holds back other alerts meanwhile.
    pub webhook_max_attempts: u32,
    /// Days alerts (by their last event), dead letters and undelivered revisions are kept.
    pub retention_days: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook_url: None,
            webhook_secret: None,
            webhook_allow_http: false,
            webhook_max_attempts: vigil_rules::DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            retention_days: vigil_rules::DEFAULT_ALERT_RETENTION.as_secs() / 86_400,
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Address to listen on; loopback unless told otherwise.
    pub listen: SocketAddr,
    /// Bearer token for `/api`; none means the one stored in the data dir (generated once).
    #[serde(with = "empty_is_none")]
    pub token: Option<String>,
    /// A file holding the bearer token (a mounted Secret, say), readable by its owner only;
    /// used when `token` is not set.
    #[serde(with = "empty_is_none")]
    pub token_file: Option<PathBuf>,
    /// Longest a query may run, in milliseconds.
    pub query_timeout_ms: u64,
    /// Most hits one search returns.
    pub max_results: usize,
    /// Searches running at once; more wait up to `search_queue_timeout_ms`, then get 429.
    /// 0: the number of CPUs (at least 2).
    pub max_concurrent_searches: usize,
    /// How long a search waits for a free place before it is answered 429.
    pub search_queue_timeout_ms: u64,
    /// Largest page of `/api/v1/alerts`.
    pub max_alerts_page: usize,
    /// Longest time to receive a request's head, or the next request on a kept-alive
    /// connection (slow clients cannot hold connections).
    pub header_read_timeout_secs: u64,
    /// Longest time from a request's head to its answer (then 503).
    pub request_timeout_secs: u64,
    /// A connection on which nothing moves for this long is closed.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// `/readyz` reports a stage stuck when it has work left and has not committed for this
    /// many seconds.
    pub stuck_after_secs: u64,
}

/// `[collector]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorSettings {
    /// Longest audit line accepted, in bytes; longer ones are quarantined.
    pub max_line_bytes: usize,
    /// How often files are checked for new data, in milliseconds.
    pub poll_interval_ms: u64,
    /// Most lines published in one batch.
    pub batch_lines: usize,
    /// Most simultaneous connections per socket or TCP syslog receiver.
    pub max_connections: usize,
    /// Most simultaneous connections from one peer address, so that one peer's idle sockets
    /// cannot lock Vault out.
    pub max_connections_per_peer: usize,
    /// A receiver's connection that sends nothing for this many seconds is closed; 0 never.
    /// Over TCP the first entry Vault writes after such a close can be lost in its kernel:
    /// keep it above the cluster's longest quiet spell, or use a unix socket.
    pub idle_timeout_secs: u64,
    /// Largest signed envelope published; a line whose envelope is larger is quarantined.
    /// 0: derived (the Kafka roles: `kafka.max_message_bytes` less 1 KiB for key and
    /// framing; `vigil run`: room for any line up to `max_line_bytes`).
    pub max_envelope_bytes: usize,
    /// Batches published but not yet acknowledged, per file. Acknowledgement waits for the
    /// index commit, so this bounds throughput to about `batch_lines × this` per commit.
    pub max_in_flight_batches: usize,
}

/// `[index]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSettings {
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
pub struct SourcesSettings {
    /// `[[sources.file]]`: file audit devices.
    pub file: Vec<FileSource>,
    /// `[[sources.socket]]`: receivers for socket audit devices.
    pub socket: Vec<ReceiverSource>,
    /// `[[sources.syslog]]`: receivers for syslog audit devices.
    pub syslog: Vec<ReceiverSource>,
}

impl SourcesSettings {
    /// Whether no source is configured.
    pub fn is_empty(&self) -> bool {
        self.file.is_empty() && self.socket.is_empty() && self.syslog.is_empty()
    }
}

/// One `[[sources.socket]]` or `[[sources.syslog]]` entry: a receiver for a socket or
/// syslog audit device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSource {
    /// Where to listen: `tcp://HOST:PORT` or `unix:///PATH` for a socket device;
    /// `unixgram:///PATH`, `udp://HOST:PORT` or `tcp://HOST:PORT` for a syslog device.
    #[serde(with = "source_address")]
    pub address: SourceAddress,
    /// The audit device's name in Vault; defaults to `socket`/`syslog` (numbered when several).
    #[serde(default)]
    pub device: Option<String>,
    /// The device's `hmac_accessor` option; inferred when absent.
    #[serde(default)]
    pub hmac_accessor: Option<bool>,
    /// Peers allowed to connect or send (`10.0.0.0/8`, `::1`); empty allows every peer.
    /// Unix sockets have no address and are governed by `unix_mode` instead.
    #[serde(default)]
    pub allow: Vec<PeerNet>,
    /// Mode of a unix socket file, e.g. `0o660` (TOML octal); default: the umask's.
    #[serde(default)]
    pub unix_mode: Option<u32>,
    /// Owner of a unix socket file, `UID:GID` (numeric), so that Vault's user can write to it.
    #[serde(default, with = "unix_owner")]
    pub unix_owner: Option<(u32, u32)>,
}

impl ReceiverSource {
    /// A receiver on `address` with defaults.
    pub fn new(address: SourceAddress) -> ReceiverSource {
        ReceiverSource {
            address,
            device: None,
            hmac_accessor: None,
            allow: Vec::new(),
            unix_mode: None,
            unix_owner: None,
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
    #[serde(with = "fsync_policy")]
    pub fsync: FsyncPolicy,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            max_bytes: 1024 * 1024 * 1024,
            fsync: FsyncPolicy::Every(std::time::Duration::from_millis(200)),
        }
    }
}

/// `[quarantine]`: `<data_dir>/quarantine.jsonl`, what the collector refused, with the
/// reason, plaintext tokens replaced by their HMAC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineSettings {
    /// Size at which the file is renamed to `quarantine.jsonl.1` (replacing the older one).
    pub max_bytes: u64,
    /// Records written per second at most, after a burst of `burst_entries`; beyond it
    /// records are dropped and counted, so a flood of garbage cannot fill the disk.
    pub max_entries_per_second: u32,
    /// Records that may be written at once before the rate applies.
    pub burst_entries: u32,
}

impl Default for QuarantineSettings {
    fn default() -> Self {
        QuarantineSettings {
            max_bytes: vigil_collector::DEFAULT_QUARANTINE_MAX_BYTES,
            max_entries_per_second: vigil_collector::DEFAULT_QUARANTINE_ENTRIES_PER_SECOND,
            burst_entries: vigil_collector::DEFAULT_QUARANTINE_BURST_ENTRIES,
        }
    }
}

/// One `[[sources.file]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Path of the audit log, or a glob of several.
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

impl Default for Settings {
    fn default() -> Self {
        Settings {
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
            signing_key_file: None,
            api: ApiSettings::default(),
            collector: CollectorSettings::default(),
            index: IndexSettings::default(),
            sources: SourcesSettings::default(),
            spool: SpoolSettings::default(),
            quarantine: QuarantineSettings::default(),
            rules: RulesSettings::default(),
            alerts: AlertSettings::default(),
            kafka: KafkaSettings::default(),
        }
    }
}

impl ApiSettings {
    /// `max_concurrent_searches`, 0 resolved to the number of CPUs (at least 2).
    pub fn concurrent_searches(&self) -> usize {
        match self.max_concurrent_searches {
            0 => std::thread::available_parallelism()
                .map_or(2, usize::from)
                .max(2),
            n => n,
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8731)),
            token: None,
            token_file: None,
            query_timeout_ms: 10_000,
            max_results: 1000,
            max_concurrent_searches: 0,
            search_queue_timeout_ms: 2000,
            max_alerts_page: vigil_dashboards::DEFAULT_MAX_ALERTS_PAGE,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 256,
            stuck_after_secs: 120,
        }
    }
}

impl Default for CollectorSettings {
    fn default() -> Self {
        CollectorSettings {
            max_line_bytes: vigil_event::DEFAULT_MAX_LINE_BYTES,
            poll_interval_ms: 100,
            batch_lines: 1024,
            max_connections: 64,
            max_connections_per_peer: vigil_collector::DEFAULT_MAX_CONNECTIONS_PER_PEER,
            idle_timeout_secs: vigil_collector::DEFAULT_IDLE_TIMEOUT.as_secs(),
            max_envelope_bytes: 0,
            max_in_flight_batches: 48,
        }
    }
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            commit_interval_ms: 1000,
            retention_days: 90,
            writer_memory_mb: 64,
        }
    }
}

/// The environment prefix of overrides.
const ENV_PREFIX: &str = "VIGIL_";

impl Settings {
    /// Reads `path` (when given), then applies `VIGIL_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| anyhow!("config file {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        let defaults =
            toml::Table::try_from(Settings::default()).context("serializing defaults")?;
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        apply_env(&mut table, &defaults, &mut Vec::new(), &env)?;
        let config: Settings =
            Settings::deserialize(toml::Value::Table(table)).map_err(|e| match path {
                Some(p) => anyhow!("config file {}: {e}", p.display()),
                None => anyhow!("configuration: {e}"),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot: counts that must be positive, non-empty names.
    fn validate(&self) -> anyhow::Result<()> {
        for (key, value) in [
            (
                "collector.max_line_bytes",
                self.collector.max_line_bytes as u64,
            ),
            ("collector.batch_lines", self.collector.batch_lines as u64),
            (
                "collector.max_in_flight_batches",
                self.collector.max_in_flight_batches as u64,
            ),
            ("api.max_results", self.api.max_results as u64),
            ("api.max_alerts_page", self.api.max_alerts_page as u64),
            ("api.max_connections", self.api.max_connections as u64),
            (
                "api.header_read_timeout_secs",
                self.api.header_read_timeout_secs,
            ),
            ("api.request_timeout_secs", self.api.request_timeout_secs),
            ("api.idle_timeout_secs", self.api.idle_timeout_secs),
            ("api.stuck_after_secs", self.api.stuck_after_secs),
            ("index.commit_interval_ms", self.index.commit_interval_ms),
            ("kafka.partitions", u64::from(self.kafka.partitions)),
            ("kafka.replication", u64::from(self.kafka.replication)),
            (
                "kafka.max_message_bytes",
                self.kafka.max_message_bytes as u64,
            ),
            ("kafka.stall_timeout_secs", self.kafka.stall_timeout_secs),
        ] {
            if value == 0 {
                bail!("{key} must be at least 1");
            }
        }
        for (key, kind, sources) in [
            ("sources.socket", ReceiverKind::Socket, &self.sources.socket),
            ("sources.syslog", ReceiverKind::Syslog, &self.sources.syslog),
        ] {
            for source in sources {
                if !kind.accepts(&source.address) {
                    bail!(
                        "{key} address {}: a {kind} receiver takes {}",
                        source.address,
                        kind.accepted_forms()
                    );
                }
            }
        }
        for (key, name) in [
            ("kafka.topic", &self.kafka.topic),
            ("kafka.alerts_topic", &self.kafka.alerts_topic),
            ("kafka.quarantine_topic", &self.kafka.quarantine_topic),
        ] {
            if name.is_empty() {
                bail!("{key} must not be empty");
            }
        }
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

/// `""` in the file (or the environment) means "not set": optional strings and paths are
/// written as empty strings, so that every key stays settable from the environment.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => v.serialize(serializer),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: From<String>,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        Ok(Some(text).filter(|t| !t.trim().is_empty()).map(T::from))
    }
}

/// Values kept in the file as text: `$parse` reads it, `$show` writes it.
macro_rules! text_value {
    ($module:ident, $ty:ty, $parse:expr, $show:expr) => {
        mod $module {
            use serde::{Deserialize, Deserializer, Serializer};

            pub fn serialize<S: Serializer>(value: &$ty, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&$show(value))
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<$ty, D::Error> {
                let text = String::deserialize(deserializer)?;
                $parse(text.as_str()).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_value!(
    source_address,
    vigil_collector::SourceAddress,
    vigil_collector::SourceAddress::parse,
    ToString::to_string
);

/// `UID:GID` ↔ `Some((uid, gid))`; absent is `None`.
mod unix_owner {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<(u32, u32)>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some((uid, gid)) => serializer.serialize_str(&format!("{uid}:{gid}")),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<(u32, u32)>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = text
            .split_once(':')
            .and_then(|(u, g)| Some((u.trim().parse().ok()?, g.trim().parse().ok()?)));
        parsed
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?}: expected UID:GID")))
    }
}
text_value!(
    fsync_policy,
    vigil_collector::FsyncPolicy,
    str::parse::<vigil_collector::FsyncPolicy>,
    super::fsync_text
);

/// How `spool.fsync` is written: the text [`FsyncPolicy`]'s `FromStr` reads back.
fn fsync_text(policy: &FsyncPolicy) -> String {
    match policy {
        FsyncPolicy::Always => "always".to_owned(),
        FsyncPolicy::Never => "never".to_owned(),
        FsyncPolicy::Every(every) => format!("{}ms", every.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, toml).unwrap();
        Settings::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn the_example_file_is_the_defaults_plus_a_source() {
        let example = include_str!("../vigil.example.toml");
        let config = load(example, &[]).expect("example parses");
        let mut expected = Settings::default();
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
        assert_eq!(c.api.token.as_deref(), Some("t0k"));
        let err = load("", &[("VIGIL_INDEX_RETENTION_DAYS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("VIGIL_INDEX_RETENTION_DAYS"), "{err}");
        let err = load("", &[("VIGIL_API_LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn values_are_read_into_types() {
        let c = load(
            "signing_key_file = \"\"\n[spool]\nfsync = \"always\"\n[kafka]\ncompression = \"zstd\"\n\
             [[sources.socket]]\naddress = \"tcp://127.0.0.1:9090\"\n\
             [[sources.syslog]]\naddress = \"udp://127.0.0.1:5514\"\n",
            &[("VIGIL_RULES_DIR", "/etc/vigil/rules")],
        )
        .unwrap();
        assert_eq!(c.signing_key_file, None);
        assert_eq!(c.spool.fsync, FsyncPolicy::Always);
        assert_eq!(c.kafka.compression, Compression::Zstd);
        assert_eq!(c.rules.dir, Some(PathBuf::from("/etc/vigil/rules")));
        assert_eq!(
            c.sources.socket[0].address.to_string(),
            "tcp://127.0.0.1:9090"
        );
        for bad in [
            "[[sources.socket]]\naddress = \"udp://127.0.0.1:1\"\n",
            "[spool]\nfsync = \"sometimes\"\n",
            "[kafka]\ncompression = \"brotli\"\n",
            "[kafka]\npartitions = 0\n",
        ] {
            let err = format!("{:#}", load(bad, &[]).unwrap_err());
            let key = bad.split(['\n', ' ']).nth(1).unwrap();
            assert!(err.contains(key), "{bad:?}: {err}");
        }
    }

    #[test]
    fn defaults_round_trip_through_the_file_form() {
        let text = toml::to_string(&Settings::default()).unwrap();
        assert_eq!(load(&text, &[]).unwrap(), Settings::default());
    }
}
