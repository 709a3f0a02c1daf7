//! One [`Config`] for the whole host: every setting is a flag, a
//! `JOBHOST_*` environment variable, and a key of an optional TOML file
//! (`--config`), from one definition. A flag wins over the environment,
//! the environment over the file, the file over the default. Unknown flags
//! and unknown keys of the file are errors; `jobhost serve --help` lists
//! every setting with its default.

use crate::api::ApiConfig;
use crate::dispatch::DispatchConfig;
use crate::egress::{Cidr, EgressPolicy};
use crate::jobs::{Limits, TenantDefaults};
use crate::runtime::{DEFAULT_MAX_CORE_INSTANCES, DEFAULT_READY_PLUGINS, RuntimeConfig};
use crate::services::WebhookPolicy;
use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Every setting of a host.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// TOML file with any of the settings below (by their long names with
    /// `_` for `-`); flags and environment variables win over it.
    #[arg(long, env = "JOBHOST_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address the HTTP API listens on (port 0: any free port).
    #[arg(long, env = "JOBHOST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Data folder: the database `jobhost.redb` (unless `--database-url`
    /// says otherwise), and compiled components in `cache/` unless
    /// `--cache` says otherwise.
    #[arg(long, env = "JOBHOST_DATA", default_value = "data")]
    pub data: PathBuf,
    /// PostgreSQL database to store jobs in instead of DATA/jobhost.redb
    /// (`postgres://user:password@host:port/database`), for several hosts
    /// sharing one database. Each host still keeps its compile cache.
    #[arg(long, env = "JOBHOST_DATABASE_URL", hide_env_values = true)]
    #[serde(skip_serializing)]
    pub database_url: Option<String>,
    /// Folders of `<qualified name>.wasm` components shared by every tenant
    /// (repeat the flag, or separate with `,`).
    #[arg(long, env = "JOBHOST_PLUGINS", value_delimiter = ',', default_value = "plugins")]
    pub plugins: Vec<PathBuf>,
    /// Where compiled components are cached (default: DATA/cache).
    #[arg(long, env = "JOBHOST_CACHE")]
    pub cache: Option<PathBuf>,
    /// Secret of an admin token to create at start if no such token exists
    /// (the first start prints a random one otherwise).
    #[arg(long, env = "JOBHOST_ADMIN_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing)]
    pub admin_token: Option<String>,
    /// Log lines as `text` or `json`.
    #[arg(long, env = "JOBHOST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// This host's worker id (default: a new one each start).
    #[arg(long, env = "JOBHOST_WORKER")]
    pub worker: Option<String>,
    /// Jobs this host runs at once.
    #[arg(long, env = "JOBHOST_SLOTS", default_value_t = 64)]
    pub slots: usize,
    /// Jobs the pooling allocator has room for at once (0: map memory on
    /// demand instead, slower to start a job).
    #[arg(long, env = "JOBHOST_POOL_SLOTS", default_value_t = 128)]
    pub pool_slots: u32,
    /// KiB of each pooled memory and table reset in place when a job ends
    /// and kept for the next job, instead of handed back to the kernel
    /// (fewer page faults per job start, that much more resident memory
    /// per pool slot used).
    #[arg(long, env = "JOBHOST_POOL_KEEP_RESIDENT_KIB", default_value_t = 1024)]
    pub pool_keep_resident_kib: usize,
    /// Core wasm instances one component may create: a Rust plugin needs a
    /// few, an interpreter with native libraries one per library. Each pool
    /// slot reserves room for this many.
    #[arg(long, env = "JOBHOST_MAX_CORE_INSTANCES", default_value_t = DEFAULT_MAX_CORE_INSTANCES)]
    pub max_core_instances: u32,
    /// Versions of uploaded plugins kept ready (compiled and linked) at
    /// once. Uploads are loaded on their first job, from the compile cache;
    /// past this many the least recently used goes.
    #[arg(long, env = "JOBHOST_READY_PLUGINS", default_value_t = DEFAULT_READY_PLUGINS)]
    pub ready_plugins: usize,
    /// Lease of a running job, in ms; a worker silent this long loses it.
    #[arg(long, env = "JOBHOST_LEASE_MS", default_value_t = 30_000)]
    pub lease_ms: u64,
    /// Longest sleep of the dispatcher and the promotion and recovery
    /// services between looks at storage, in ms.
    #[arg(long, env = "JOBHOST_POLL_MS", default_value_t = 100)]
    pub poll_ms: u64,
    /// How often a running job's output is written, in ms.
    #[arg(long, env = "JOBHOST_FLUSH_MS", default_value_t = 200)]
    pub flush_ms: u64,
    /// Finished jobs are deleted this many seconds after they finished
    /// (default a week; 0: kept forever).
    #[arg(long, env = "JOBHOST_RETENTION_S", default_value_t = 7 * 24 * 3600)]
    pub retention_s: u64,
    /// How often retention runs, in seconds.
    #[arg(long, env = "JOBHOST_PRUNE_EVERY_S", default_value_t = 60)]
    pub prune_every_s: u64,
    /// At shutdown, how long running jobs get to finish, in ms.
    #[arg(long, env = "JOBHOST_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,

    /// Jobs a tenant may have waiting unless its own quota says otherwise.
    #[arg(long, env = "JOBHOST_TENANT_MAX_QUEUED", default_value_t = 100_000)]
    pub tenant_max_queued: u32,
    /// Jobs a tenant may run at once unless its own quota says otherwise
    /// (default: no limit).
    #[arg(long, env = "JOBHOST_TENANT_MAX_RUNNING")]
    pub tenant_max_running: Option<u32>,

    /// Plugins one tenant may upload.
    #[arg(long, env = "JOBHOST_TENANT_MAX_PLUGINS", default_value_t = 100)]
    pub tenant_max_plugins: usize,
    /// Children one job may spawn unless its tenant's quota says otherwise.
    #[arg(long, env = "JOBHOST_TENANT_MAX_CHILDREN", default_value_t = 100)]
    pub tenant_max_children: u32,
    /// How deep jobs may spawn jobs unless the tenant's quota says
    /// otherwise (1: children, but no grandchildren).
    #[arg(long, env = "JOBHOST_TENANT_MAX_SPAWN_DEPTH", default_value_t = 3)]
    pub tenant_max_spawn_depth: u32,
    /// Plugin uploads compiled at once; more wait their turn (a compile can
    /// take seconds and hundreds of MiB).
    #[arg(long, env = "JOBHOST_MAX_CONCURRENT_COMPILES", default_value_t = 2)]
    pub max_concurrent_compiles: usize,
    /// A plugin upload whose compile takes longer is refused, in ms.
    #[arg(long, env = "JOBHOST_COMPILE_TIMEOUT_MS", default_value_t = 120_000)]
    pub compile_timeout_ms: u64,

    /// Fuel of a job that asks for nothing else.
    #[arg(long, env = "JOBHOST_FUEL", default_value_t = 10_000_000_000)]
    pub fuel: u64,
    /// Wall time of a job that asks for nothing else, in ms.
    #[arg(long, env = "JOBHOST_WALL_TIME_MS", default_value_t = 60_000)]
    pub wall_time_ms: u64,
    /// Linear memory of a job that asks for nothing else, in MiB.
    #[arg(long, env = "JOBHOST_MEMORY_MIB", default_value_t = 64)]
    pub memory_mib: u64,
    /// Table elements of a job that asks for nothing else.
    #[arg(long, env = "JOBHOST_TABLE_ELEMENTS", default_value_t = 10_000)]
    pub table_elements: u64,
    /// Log lines kept per attempt of a job that asks for nothing else.
    #[arg(long, env = "JOBHOST_LOG_LINES", default_value_t = 10_000)]
    pub log_lines: u32,
    /// Log bytes kept per attempt of a job that asks for nothing else.
    #[arg(long, env = "JOBHOST_LOG_BYTES", default_value_t = 1 << 20)]
    pub log_bytes: u64,
    /// Size of args and of the result, in bytes, unless a job asks otherwise.
    #[arg(long, env = "JOBHOST_PAYLOAD_BYTES", default_value_t = 1 << 20)]
    pub payload_bytes: u64,
    /// Time a cancelled job gets before a hard stop, in ms.
    #[arg(long, env = "JOBHOST_CANCEL_GRACE_MS", default_value_t = 5_000)]
    pub cancel_grace_ms: u64,

    /// Most fuel any job may ask for (ten times the default: an interpreted
    /// plugin burns far more fuel for the same work).
    #[arg(long, env = "JOBHOST_MAX_FUEL", default_value_t = 100_000_000_000)]
    pub max_fuel: u64,
    /// Most wall time any job may ask for, in ms.
    #[arg(long, env = "JOBHOST_MAX_WALL_TIME_MS", default_value_t = 60_000)]
    pub max_wall_time_ms: u64,
    /// Most linear memory any job may ask for, in MiB (four times the
    /// default, for interpreters and their heaps).
    #[arg(long, env = "JOBHOST_MAX_MEMORY_MIB", default_value_t = 256)]
    pub max_memory_mib: u64,
    /// Most table elements any job may ask for.
    #[arg(long, env = "JOBHOST_MAX_TABLE_ELEMENTS", default_value_t = 10_000)]
    pub max_table_elements: u64,
    /// Most log lines any job may ask for.
    #[arg(long, env = "JOBHOST_MAX_LOG_LINES", default_value_t = 10_000)]
    pub max_log_lines: u32,
    /// Most log bytes any job may ask for.
    #[arg(long, env = "JOBHOST_MAX_LOG_BYTES", default_value_t = 1 << 20)]
    pub max_log_bytes: u64,
    /// Largest args and result any job may ask for, in bytes.
    #[arg(long, env = "JOBHOST_MAX_PAYLOAD_BYTES", default_value_t = 1 << 20)]
    pub max_payload_bytes: u64,
    /// Longest cancel grace any job may ask for, in ms.
    #[arg(long, env = "JOBHOST_MAX_CANCEL_GRACE_MS", default_value_t = 5_000)]
    pub max_cancel_grace_ms: u64,

    /// A client must send its request headers within this time, in ms.
    #[arg(long, env = "JOBHOST_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A request body must arrive whole within this time, in ms.
    #[arg(long, env = "JOBHOST_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// Open connections on the host, at most.
    #[arg(long, env = "JOBHOST_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections from one client address, at most.
    #[arg(long, env = "JOBHOST_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 2_000)]
    pub max_connections_per_address: usize,
    /// Open SSE streams on the host, at most.
    #[arg(long, env = "JOBHOST_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Open SSE streams of one tenant, at most.
    #[arg(long, env = "JOBHOST_MAX_STREAMS_PER_TENANT", default_value_t = 2_000)]
    pub max_streams_per_tenant: usize,
    /// An SSE follower that reads nothing for this long is dropped, and a
    /// connection whose writes make no progress for twice this long is
    /// closed, in ms.
    #[arg(long, env = "JOBHOST_STREAM_STALL_MS", default_value_t = 30_000)]
    pub stream_stall_ms: u64,
    /// At shutdown, how long HTTP requests in flight get, in ms.
    #[arg(long, env = "JOBHOST_HTTP_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub http_shutdown_grace_ms: u64,

    /// Address ranges completion webhooks may reach besides public
    /// addresses (`10.1.0.0/16`, `127.0.0.1`; repeat the flag or separate
    /// with `,`). Loopback, private, link-local and other internal ranges
    /// are refused unless listed here.
    #[arg(long, env = "JOBHOST_WEBHOOK_ALLOW", value_delimiter = ',')]
    #[serde(default)]
    pub webhook_allow: Vec<Cidr>,
    /// Deliveries of a completion webhook tried before it is given up.
    #[arg(long, env = "JOBHOST_WEBHOOK_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_attempts: u32,
    /// Delay before the first retry of a webhook, in ms; doubled each time.
    #[arg(long, env = "JOBHOST_WEBHOOK_BACKOFF_MS", default_value_t = 1_000)]
    pub webhook_backoff_ms: u64,
    /// Longest delay between two webhook attempts, in ms.
    #[arg(long, env = "JOBHOST_WEBHOOK_MAX_BACKOFF_MS", default_value_t = 300_000)]
    pub webhook_max_backoff_ms: u64,
    /// How long a webhook receiver gets to answer, in ms.
    #[arg(long, env = "JOBHOST_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
}

/// The command line of `jobhost serve`, for parsing a [`Config`] alone.
#[derive(Debug, clap::Parser)]
#[command(name = "jobhost-serve", no_binary_name = true)]
struct ServeLine {
    #[command(flatten)]
    config: Config,
}

impl Default for Config {
    /// Every default, as `--help` shows them (the environment is not read).
    fn default() -> Self {
        let command = <ServeLine as clap::CommandFactory>::command();
        let command = command.mut_args(|arg| arg.env(None::<&str>));
        let matches = command.get_matches_from(Vec::<String>::new());
        Config::from_arg_matches(&matches).expect("the defaults parse")
    }
}

impl Config {
    /// The settings of a parsed command line, with the TOML file of
    /// `--config` filling in whatever was neither a flag nor in the
    /// environment.
    pub fn from_matches(matches: &ArgMatches) -> anyhow::Result<Config> {
        let config = Config::from_arg_matches(matches)?;
        let Some(path) = config.config.clone() else { return Ok(config) };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut merged = serde_json::to_value(&config)?;
        let known = merged.as_object_mut().expect("a config serialises to an object");
        for (key, value) in file {
            if key == "config" || (!known.contains_key(&key) && key != "admin_token") {
                bail!("{}: unknown setting {key:?}", path.display());
            }
            if matches.value_source(&key) == Some(ValueSource::DefaultValue)
                || matches.value_source(&key).is_none()
            {
                known.insert(key, serde_json::to_value(value)?);
            }
        }
        let mut merged: Config = serde_json::from_value(merged)
            .with_context(|| format!("a setting of {} has the wrong type", path.display()))?;
        merged.config = Some(path);
        if merged.admin_token.is_none() {
            merged.admin_token = config.admin_token;
        }
        Ok(merged)
    }

    /// The limits of a job that asks for nothing.
    pub fn default_limits(&self) -> Limits {
        Limits {
            fuel: self.fuel,
            wall_time: Duration::from_millis(self.wall_time_ms),
            memory_bytes: self.memory_mib << 20,
            table_elements: self.table_elements,
            log_lines: self.log_lines,
            log_bytes: self.log_bytes,
            payload_bytes: self.payload_bytes,
            cancel_grace: Duration::from_millis(self.cancel_grace_ms),
        }
    }

    /// The most any job may ask for.
    pub fn caps(&self) -> Limits {
        Limits {
            fuel: self.max_fuel,
            wall_time: Duration::from_millis(self.max_wall_time_ms),
            memory_bytes: self.max_memory_mib << 20,
            table_elements: self.max_table_elements,
            log_lines: self.max_log_lines,
            log_bytes: self.max_log_bytes,
            payload_bytes: self.max_payload_bytes,
            cancel_grace: Duration::from_millis(self.max_cancel_grace_ms),
        }
    }

    /// Where compiled components are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| self.data.join("cache"))
    }

    /// The runtime's part.
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: Some(self.cache_dir()),
            defaults: self.default_limits(),
            caps: self.caps(),
            pool_slots: (self.pool_slots > 0).then_some(self.pool_slots),
            pool_keep_resident: self.pool_keep_resident_kib << 10,
            max_core_instances: self.max_core_instances,
            ready_plugins: self.ready_plugins,
        }
    }

    /// The dispatcher's part.
    pub fn dispatch(&self) -> DispatchConfig {
        let defaults = DispatchConfig::default();
        DispatchConfig {
            worker: self.worker.clone().unwrap_or(defaults.worker),
            slots: self.slots,
            lease: Duration::from_millis(self.lease_ms),
            poll: Duration::from_millis(self.poll_ms),
            flush: Duration::from_millis(self.flush_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            egress: self.egress(),
            ..defaults
        }
    }

    /// The HTTP server's part.
    pub fn api(&self) -> ApiConfig {
        ApiConfig {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_streams: self.max_streams,
            max_streams_per_tenant: self.max_streams_per_tenant,
            stream_stall: Duration::from_millis(self.stream_stall_ms),
            shutdown_grace: Duration::from_millis(self.http_shutdown_grace_ms),
            tenant_defaults: self.tenant_defaults(),
            max_concurrent_compiles: self.max_concurrent_compiles.max(1),
            compile_timeout: Duration::from_millis(self.compile_timeout_ms),
            egress: self.egress(),
        }
    }

    /// Where completion webhooks may go.
    pub fn egress(&self) -> EgressPolicy {
        EgressPolicy::new(self.webhook_allow.clone())
    }

    /// How completion webhooks are delivered and retried.
    pub fn webhooks(&self) -> WebhookPolicy {
        WebhookPolicy {
            egress: self.egress(),
            attempts: self.webhook_attempts.max(1),
            backoff: Duration::from_millis(self.webhook_backoff_ms),
            max_backoff: Duration::from_millis(self.webhook_max_backoff_ms),
            timeout: Duration::from_millis(self.webhook_timeout_ms),
        }
    }

    /// Quotas of a tenant that has none of its own.
    pub fn tenant_defaults(&self) -> TenantDefaults {
        TenantDefaults {
            max_queued: self.tenant_max_queued,
            max_running: self.tenant_max_running,
            max_plugins: self.tenant_max_plugins,
            max_children: self.tenant_max_children,
            max_spawn_depth: self.tenant_max_spawn_depth,
        }
    }

    /// How long finished jobs are kept; `None` is forever.
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_s > 0).then(|| Duration::from_secs(self.retention_s))
    }

    /// The settings as one line of JSON for the log, without secrets.
    pub fn summary(&self) -> String {
        serde_json::to_string(self).expect("a config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let matches = ServeLine::command().try_get_matches_from(args)?;
        Config::from_matches(&matches)
    }

    #[test]
    fn defaults_flags_and_unknown_flags() {
        let config = parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!((config.slots, config.listen.as_str()), (64, "127.0.0.1:8080"));
        let config = parse(&["--slots", "8", "--fuel", "5", "--plugins", "a,b"]).unwrap();
        assert_eq!((config.slots, config.fuel), (8, 5));
        assert_eq!(config.plugins, [PathBuf::from("a"), PathBuf::from("b")]);
        let unknown = parse(&["--wall-time", "5"]).unwrap_err().to_string();
        assert!(unknown.contains("--wall-time"), "{unknown}");
    }

    #[test]
    fn a_file_fills_in_what_flags_leave_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jobhost.toml");
        std::fs::write(&file, "slots = 4\nlease_ms = 9000\nlisten = \"127.0.0.1:9\"\n").unwrap();
        let path = file.to_str().unwrap();
        let config = parse(&["--config", path, "--slots", "16"]).unwrap();
        assert_eq!((config.slots, config.lease_ms), (16, 9000), "the flag wins");
        assert_eq!(config.listen, "127.0.0.1:9");
        std::fs::write(&file, "slotz = 4\n").unwrap();
        let error = parse(&["--config", path]).unwrap_err().to_string();
        assert!(error.contains("unknown setting \"slotz\""), "{error}");
        std::fs::write(&file, "slots = \"many\"\n").unwrap();
        assert!(parse(&["--config", path]).unwrap_err().to_string().contains("wrong type"));
    }

    #[test]
    fn the_summary_never_shows_the_admin_token() {
        let config = parse(&["--admin-token", "very-secret-token"]).unwrap();
        assert_eq!(config.admin_token.as_deref(), Some("very-secret-token"));
        assert!(!config.summary().contains("very-secret"));
    }
}
