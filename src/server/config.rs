//! The `stet` command line: etcd's flag names and defaults, each also readable from an `ETCD_*`
//! environment variable, and the checks etcd makes before it starts (a setting given both ways, an
//! election timeout shorter than five heartbeats, this member missing from `--initial-cluster`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::member::{self, parse_initial_cluster};
use crate::proto::etcdserverpb as pb;
use crate::types::{ClusterId, MemberId};

/// etcd's flags that stet understands. Every flag can also be set through `ETCD_<FLAG>` (upper
/// case, dashes as underscores); setting one both ways is an error, as in etcd.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "stet",
    about = "A replicated, strongly consistent key-value store with etcd's v3 API",
    after_help = "Every flag can also be set through an ETCD_* environment variable \
                  (ETCD_DATA_DIR for --data-dir); giving one setting both ways is an error.",
    disable_version_flag = true
)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `<name>.stet`).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated WAL directory (default: inside the data directory).
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (gRPC and HTTP on the same port), comma-separated.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// This member's client URLs as advertised to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// This member's peer URLs as advertised to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// The initial cluster configuration for bootstrapping, `name=peer-url,...`.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Whether this member starts a new cluster or joins an existing one.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", value_enum, default_value_t = ClusterState::New)]
    pub initial_cluster_state: ClusterState,
    /// The cluster token, which makes member and cluster IDs unique across clusters.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Committed entries between snapshots of the state.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Entries a leader keeps after its own snapshot so slow followers catch up from the log
    /// rather than a snapshot.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5_000
    )]
    pub experimental_snapshot_catchup_entries: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Largest client request the server accepts, in bytes.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Most operations in one branch of a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Most concurrent HTTP/2 streams (gRPC calls, watch and keep-alive streams) one client
    /// connection may have open; etcd's default sets no limit.
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Size of the storage engine file past which writes are refused with a NOSPACE alarm, in
    /// bytes: 0 is the default (2 GiB), a negative value turns the quota off.
    #[arg(
        long,
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// Logging level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Log line format.
    #[arg(long, env = "ETCD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Restart as the only member of a new cluster, keeping this member's data (disaster recovery
    /// after losing a majority). Grow the cluster back with `member add`.
    #[arg(long, env = "ETCD_FORCE_NEW_CLUSTER", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub force_new_cluster: bool,
    /// The leader promotes a learner to a voting member once it has caught up (beyond etcd,
    /// where a person runs `member promote`: etcd-io/etcd#15107).
    #[arg(long, env = "ETCD_EXPERIMENTAL_AUTO_PROMOTE_LEARNERS", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub experimental_auto_promote_learners: bool,
    /// How often the leader compares its key-value history's hash with every member's (a
    /// divergent member raises the CORRUPT alarm); 0 turns the check off. A Go duration: 5m, 1h.
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s", value_parser = super::go_duration::parse)]
    pub experimental_corrupt_check_time: Duration,
    /// How often watchers created with `progress_notify` that saw no events are told the
    /// current revision. A Go duration; 0 means the default (10m), and under 100ms is raised
    /// to 100ms, as etcd does.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = super::go_duration::parse)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Before serving, compare this member's key-value history's hash with every reachable
    /// member's, and refuse to start if one differs.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub experimental_initial_corrupt_check: bool,
    /// Serve etcd v2's keys API (`/v2/keys`) over the v3 store (v2 and v3 clients see the same
    /// keys). On by default, unlike etcd 3.4's separate v2 store: operators' checks read it.
    #[arg(long, env = "ETCD_ENABLE_V2", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    pub enable_v2: bool,
    #[command(flatten)]
    pub tls: super::tls::flags::TlsFlags,
    /// How login tokens are made: `simple` (random, kept by every member for --auth-token-ttl
    /// after their last use) or `jwt,pub-key=<path>,priv-key=<path>,sign-method=<RS256|ES256|HS256|...>[,ttl=<duration>]`
    /// (signed; any member checks them).
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Seconds a simple token lives after its last use.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt's cost for password hashes (4 to 31).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = super::auth::settings::DEFAULT_BCRYPT_COST)]
    pub bcrypt_cost: u32,
    /// A YAML file with these settings (keys are the flag names, as in etcd's config file). When
    /// given, other flags and `ETCD_*` variables are ignored, as etcd does.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Why the command line cannot start a member.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error("conflicting environment variable {0:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)")]
    ShadowedEnv(String),
    #[error("--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]")]
    ElectionTimeout { election: u64, heartbeat: u64 },
    #[error("--heartbeat-interval must be positive")]
    ZeroHeartbeat,
    #[error(transparent)]
    InitialCluster(#[from] member::MemberError),
    #[error("couldn't find local name {0:?} in the initial cluster configuration")]
    NameNotInCluster(String),
    #[error("--initial-cluster has {name}={cluster_urls} but --initial-advertise-peer-urls is {advertised}: they must match")]
    PeerUrlMismatch {
        name: String,
        cluster_urls: String,
        advertised: String,
    },
    #[error("cannot read --config-file {path}: {why}")]
    ConfigFile { path: String, why: String },
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Auth(String),
    #[error("invalid URL {url:?} in --{flag}: {why}")]
    Url {
        flag: &'static str,
        url: String,
        why: &'static str,
    },
}

/// A listen address taken from a URL: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// An `https://` URL: served with TLS.
    pub tls: bool,
}

/// Everything the server needs, checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub listen_client: Vec<ListenAddr>,
    pub listen_peer: Vec<ListenAddr>,
    pub advertise_client_urls: Vec<String>,
    /// Restart as the only member of a new cluster, keeping the data (disaster recovery).
    pub force_new_cluster: bool,
    /// Why --name and --initial-cluster do not describe this member, accepted only with
    /// --force-new-cluster (which restarts from the data directory): starting without data
    /// fails with it.
    pub initial_cluster_problem: Option<String>,
    pub peer_urls: Vec<String>,
    pub cluster_state: ClusterState,
    pub cluster_token: String,
    pub member_id: MemberId,
    pub cluster_id: ClusterId,
    /// The members of `--initial-cluster`, with their IDs.
    pub initial_members: Vec<pb::Member>,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// Concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// The space quota; `None` when turned off.
    pub quota_backend_bytes: Option<u64>,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Serve `/v2/keys`.
    pub enable_v2: bool,
    /// The leader promotes caught-up learners.
    pub auto_promote_learners: bool,
    /// How often the leader runs the corruption check; `None` when off.
    pub corrupt_check_interval: Option<Duration>,
    /// Run the corruption check once at start, before serving.
    pub initial_corrupt_check: bool,
    /// How often quiet `progress_notify` watchers are told the current revision.
    pub watch_progress_notify_interval: Duration,
    /// Keys of `--config-file` that stet does not know (logged as a warning at start).
    pub ignored_config_keys: Vec<String>,
    /// TLS on the https client URLs (`None` when every client URL is http).
    pub client_tls: Option<super::tls::TransportSecurity>,
    /// TLS between members (`None` without https peer URLs or a peer certificate).
    pub peer_tls: Option<super::tls::PeerSecurity>,
    /// Login tokens and password hashing.
    pub auth: super::auth::AuthSettings,
}

/// Parses the command line and `ETCD_*` variables from `env` (a getter, so tests need not touch the
/// process environment). Returns `Ok(None)` for `--version`.
pub fn parse<I, T>(
    args: I,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<ServerConfig>, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    // clap would read the process environment itself; read it through `env` instead, as flags
    // appended after the command line's own.
    let command = Flags::command().mut_args(|arg| arg.env(None));
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = command.clone().try_get_matches_from(args.clone())?;
    for arg in Flags::command().get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let var = var.to_string_lossy().into_owned();
        let Some(value) = env(&var) else { continue };
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            return Err(ConfigError::ShadowedEnv(var));
        }
        let mut flag = OsString::from(format!("--{long}="));
        flag.push(value);
        args.push(flag);
    }
    let matches = command.clone().try_get_matches_from(args)?;
    let flags = Flags::from_arg_matches(&matches)?;
    if flags.version {
        return Ok(None);
    }
    let Some(path) = flags.config_file.clone() else {
        return flags.check().map(Some);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::ConfigFile {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let (file_args, ignored) = config_file_args(&text).map_err(|why| ConfigError::ConfigFile {
        path: path.display().to_string(),
        why,
    })?;
    let matches = command.try_get_matches_from(file_args)?;
    let mut config = Flags::from_arg_matches(&matches)?.check()?;
    config.ignored_config_keys = ignored;
    Ok(Some(config))
}

/// Turns a YAML config file into command-line arguments for the flags it sets, and the keys stet
/// does not know (etcd's files carry many; they are reported, not fatal).
fn config_file_args(text: &str) -> Result<(Vec<OsString>, Vec<String>), String> {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut args = vec![OsString::from("stet")];
    let mut ignored = Vec::new();
    let Some(doc) = docs.first() else {
        return Ok((args, ignored));
    };
    let Yaml::Hash(map) = doc else {
        return Err("the file must be a mapping of setting names to values".to_string());
    };
    let known: Vec<String> = Flags::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|name| name != "config-file" && name != "version")
        .collect();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err(format!("setting names must be strings, not {key:?}"));
        };
        if let ("client-transport-security" | "peer-transport-security", Yaml::Hash(block)) =
            (key, value)
        {
            security_block_args(key, block, &mut args, &mut ignored)?;
            continue;
        }
        if !known.iter().any(|k| k == key) {
            ignored.push(key.to_string());
            continue;
        }
        if let Some(value) = yaml_setting(key, value)? {
            args.push(OsString::from(format!("--{key}={value}")));
        }
    }
    Ok((args, ignored))
}

/// etcd's `client-transport-security` and `peer-transport-security` blocks: their keys name the
/// client's and the peer's TLS flags.
fn security_block_args(
    block_name: &str,
    block: &yaml_rust2::yaml::Hash,
    args: &mut Vec<OsString>,
    ignored: &mut Vec<String>,
) -> Result<(), String> {
    use super::tls::flags::{CLIENT_SECURITY_KEYS, PEER_SECURITY_KEYS};
    let keys: &[(&str, &str)] = if block_name == "peer-transport-security" {
        &PEER_SECURITY_KEYS
    } else {
        &CLIENT_SECURITY_KEYS
    };
    for (key, value) in block {
        let key = key.as_str().unwrap_or_default();
        let Some((_, flag)) = keys.iter().find(|(k, _)| *k == key) else {
            ignored.push(format!("{block_name}.{key}"));
            continue;
        };
        if let Some(value) = yaml_setting(key, value)? {
            args.push(OsString::from(format!("--{flag}={value}")));
        }
    }
    Ok(())
}

/// A setting's value as its flag takes it (lists comma-separated); `None` for an empty one.
fn yaml_setting(key: &str, value: &yaml_rust2::Yaml) -> Result<Option<String>, String> {
    use yaml_rust2::Yaml;
    Ok(Some(match value {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => return Ok(None),
        Yaml::Array(items) => {
            let mut parts = Vec::new();
            for item in items {
                match item {
                    Yaml::String(s) => parts.push(s.clone()),
                    other => return Err(format!("{key}: unexpected list item {other:?}")),
                }
            }
            parts.join(",")
        }
        other => return Err(format!("{key}: unexpected value {other:?}")),
    }))
}

/// Parses the process's own command line and environment.
pub fn from_process() -> Result<Option<ServerConfig>, ConfigError> {
    parse(std::env::args_os(), |name| std::env::var_os(name))
}

fn split_urls(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_listen_url(flag: &'static str, url: &str) -> Result<ListenAddr, ConfigError> {
    let bad = |why| ConfigError::Url {
        flag,
        url: url.to_string(),
        why,
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
    let tls = match scheme {
        "http" => false,
        "https" => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err(bad("must not contain a path"));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("must have the form http://host:port"))?;
    let port = port.parse().map_err(|_| bad("the port is not a number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(ListenAddr {
        url: url.to_string(),
        host: host.to_string(),
        port,
        tls,
    })
}

/// Checks that `--initial-cluster` names this member `name` with exactly its advertised peer URLs.
fn own_initial_urls(
    cluster: &[(String, Vec<String>)],
    name: &str,
    peer_urls: &[String],
) -> Result<(), ConfigError> {
    let Some((_, own_urls)) = cluster.iter().find(|(n, _)| n == name) else {
        return Err(ConfigError::NameNotInCluster(name.to_string()));
    };
    let (mut own_sorted, mut advertised_sorted) = (own_urls.clone(), peer_urls.to_vec());
    own_sorted.sort();
    advertised_sorted.sort();
    if own_sorted != advertised_sorted {
        return Err(ConfigError::PeerUrlMismatch {
            name: name.to_string(),
            cluster_urls: own_urls.join(","),
            advertised: peer_urls.join(","),
        });
    }
    Ok(())
}

impl Flags {
    fn check(self) -> Result<ServerConfig, ConfigError> {
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::ElectionTimeout {
                election: self.election_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        let listen_client = split_urls(&self.listen_client_urls)
            .iter()
            .map(|url| parse_listen_url("listen-client-urls", url))
            .collect::<Result<Vec<_>, _>>()?;
        let peer_urls = split_urls(&self.initial_advertise_peer_urls);
        let cluster = parse_initial_cluster(&self.initial_cluster)?;
        // With --force-new-cluster the member restarts from its data directory, which names it
        // (etcd ignores --initial-cluster once data exists): a data directory copied from another
        // member starts under any name. Only a start without data still needs a valid pair.
        let initial_cluster_problem = match own_initial_urls(&cluster, &self.name, &peer_urls) {
            Ok(()) => None,
            Err(problem) if self.force_new_cluster => Some(problem.to_string()),
            Err(problem) => return Err(problem),
        };
        let listen_peer = split_urls(&self.listen_peer_urls)
            .iter()
            .map(|url| parse_listen_url("listen-peer-urls", url))
            .collect::<Result<Vec<_>, _>>()?;
        let advertise_client_urls = split_urls(&self.advertise_client_urls);
        let token = self.initial_cluster_token;
        // Every initial member must write the very same bootstrap entries, so the membership
        // starts with peer URLs only; each member publishes its name and client URLs through raft
        // once it runs (until then `member list` shows it unstarted, as etcd does).
        let initial_members: Vec<pb::Member> = cluster
            .iter()
            .map(|(_, urls)| pb::Member {
                id: member::member_id(urls, &token, None).0,
                name: String::new(),
                peer_ur_ls: urls.clone(),
                client_ur_ls: Vec::new(),
                is_learner: false,
            })
            .collect();
        let member_id = member::member_id(&peer_urls, &token, None);
        let ids: Vec<MemberId> = initial_members.iter().map(|m| MemberId(m.id)).collect();
        let cluster_id = member::cluster_id(&ids);
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{}.stet", self.name)));
        let https_hosts: Vec<String> = listen_client
            .iter()
            .filter(|addr| addr.tls)
            .map(|addr| addr.host.clone())
            .collect();
        let client_tls = self
            .tls
            .client_security(&https_hosts, &data_dir)
            .map_err(ConfigError::Tls)?;
        let https_peer = listen_peer.iter().any(|addr| addr.tls)
            || peer_urls.iter().any(|url| url.starts_with("https://"));
        let peer_hosts: Vec<String> = listen_peer.iter().map(|addr| addr.host.clone()).collect();
        let peer_tls = self
            .tls
            .peer_security(https_peer, &peer_hosts, &data_dir)
            .map_err(ConfigError::Tls)?;
        let auth =
            super::auth::settings::parse(&self.auth_token, self.auth_token_ttl, self.bcrypt_cost)
                .map_err(ConfigError::Auth)?;
        Ok(ServerConfig {
            name: self.name,
            data_dir,
            wal_dir: self.wal_dir,
            listen_client,
            listen_peer,
            advertise_client_urls,
            force_new_cluster: self.force_new_cluster,
            initial_cluster_problem,
            peer_urls,
            cluster_state: self.initial_cluster_state,
            cluster_token: token,
            member_id,
            cluster_id,
            initial_members,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            max_concurrent_streams: self.max_concurrent_streams,
            quota_backend_bytes: quota_bytes(self.quota_backend_bytes),
            log_level: self.log_level,
            log_format: self.log_format,
            enable_v2: self.enable_v2,
            auto_promote_learners: self.experimental_auto_promote_learners,
            corrupt_check_interval: Some(self.experimental_corrupt_check_time)
                .filter(|interval| !interval.is_zero()),
            initial_corrupt_check: self.experimental_initial_corrupt_check,
            watch_progress_notify_interval: watch_progress_interval(
                self.experimental_watch_progress_notify_interval,
            ),
            ignored_config_keys: Vec::new(),
            client_tls,
            peer_tls,
            auth,
        })
    }
}

/// etcd's reading of `--experimental-watch-progress-notify-interval`: 0 is the default, 10
/// minutes; anything under 100 ms is raised to 100 ms.
fn watch_progress_interval(flag: Duration) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(600);
    const MIN: Duration = Duration::from_millis(100);
    if flag.is_zero() {
        DEFAULT
    } else {
        flag.max(MIN)
    }
}

/// etcd's reading of `--quota-backend-bytes`: 0 means the default, a negative value no quota.
fn quota_bytes(flag: i64) -> Option<u64> {
    match flag {
        0 => Some(crate::node::DEFAULT_QUOTA_BACKEND_BYTES),
        bytes if bytes < 0 => None,
        bytes => Some(bytes.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example environment file of `deploy/` describes a valid member.
    #[test]
    fn the_deploy_example_environment_file_configures_a_member() {
        let text = include_str!("../../deploy/stet.env");
        let pairs: Vec<(&str, &str)> = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| line.split_once('='))
            .collect();
        assert!(pairs.len() >= 9, "{pairs:?}");
        let config = parse_with(&[], &pairs).unwrap().unwrap();
        assert_eq!(config.name, "m1");
        assert_eq!(config.initial_members.len(), 3);
        assert_eq!(config.cluster_state, ClusterState::New);
        assert_eq!(config.listen_client.len(), 2);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/stet/m1.stet"));
    }

    fn parse_with(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Option<ServerConfig>, ConfigError> {
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let argv = std::iter::once("stet").chain(args.iter().copied());
        parse(argv, |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_quota_flag_reads_as_etcds() {
        let quota = |args: &[&str], env: &[(&str, &str)]| {
            parse_with(args, env).unwrap().unwrap().quota_backend_bytes
        };
        assert_eq!(quota(&["--quota-backend-bytes=0"], &[]), Some(2 << 30));
        assert_eq!(quota(&["--quota-backend-bytes", "-1"], &[]), None);
        assert_eq!(
            quota(&["--quota-backend-bytes=1048576"], &[]),
            Some(1 << 20)
        );
        assert_eq!(
            quota(&[], &[("ETCD_QUOTA_BACKEND_BYTES", "4096")]),
            Some(4096)
        );
        assert!(parse_with(&["--quota-backend-bytes=lots"], &[]).is_err());
    }

    #[test]
    fn the_watch_progress_interval_reads_as_etcds() {
        let interval = |args: &[&str], env: &[(&str, &str)]| {
            parse_with(args, env)
                .unwrap()
                .unwrap()
                .watch_progress_notify_interval
        };
        assert_eq!(interval(&[], &[]), Duration::from_secs(600));
        let flag = "--experimental-watch-progress-notify-interval";
        assert_eq!(interval(&[flag, "2s"], &[]), Duration::from_secs(2));
        assert_eq!(interval(&[flag, "0s"], &[]), Duration::from_secs(600));
        assert_eq!(interval(&[flag, "1ms"], &[]), Duration::from_millis(100));
        let env = [("ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", "1m30s")];
        assert_eq!(interval(&[], &env), Duration::from_secs(90));
    }

    #[test]
    fn the_corruption_check_interval_is_a_go_duration_and_off_by_default() {
        let interval = |args: &[&str], env: &[(&str, &str)]| {
            parse_with(args, env).map(|c| c.unwrap().corrupt_check_interval)
        };
        assert_eq!(interval(&[], &[]).unwrap(), None);
        assert_eq!(
            interval(&["--experimental-corrupt-check-time=5m"], &[]).unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            interval(&[], &[("ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", "1h30m")]).unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            interval(&["--experimental-corrupt-check-time", "0s"], &[]).unwrap(),
            None
        );
        let error = interval(&["--experimental-corrupt-check-time=5"], &[]).unwrap_err();
        assert!(error.to_string().contains("examples: 30s"), "{error}");
    }

    #[test]
    fn defaults_match_etcd_and_give_etcds_ids() {
        let config = parse_with(&[], &[]).unwrap().unwrap();
        assert_eq!(config.name, "default");
        assert_eq!(config.data_dir, PathBuf::from("default.stet"));
        assert_eq!(config.member_id, MemberId(0x8e9e05c52164694d));
        assert_eq!(config.cluster_id, ClusterId(0xcdf818194e3a8c32));
        assert_eq!(config.listen_client[0].host, "localhost");
        assert_eq!(config.listen_client[0].port, 2379);
        assert_eq!(config.snapshot_count, 100_000);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(config.election_timeout, Duration::from_millis(1000));
        assert_eq!(config.quota_backend_bytes, Some(2 << 30));
        assert_eq!(config.max_txn_ops, 128);
        assert_eq!(config.max_concurrent_streams, u32::MAX);
        assert_eq!(config.max_request_bytes, 1_572_864);
    }

    #[test]
    fn environment_variables_set_flags() {
        let config = parse_with(
            &[],
            &[
                ("ETCD_NAME", "n1"),
                ("ETCD_INITIAL_CLUSTER", "n1=http://localhost:2380"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.name, "n1");
        assert_eq!(config.data_dir, PathBuf::from("n1.stet"));
    }

    #[test]
    fn a_setting_given_both_ways_is_an_error() {
        let error = parse_with(&["--name", "x"], &[("ETCD_NAME", "y")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
        );
    }

    #[test]
    fn a_three_member_initial_cluster_gives_every_member_its_id() {
        let cluster = "a=http://127.0.0.1:2380,b=http://127.0.0.1:2480,c=http://127.0.0.1:2580";
        let config = parse_with(
            &[
                "--name",
                "b",
                "--initial-cluster",
                cluster,
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2480",
                "--listen-peer-urls",
                "http://127.0.0.1:2480",
                "--initial-cluster-state",
                "existing",
                "--force-new-cluster",
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.initial_members.len(), 3);
        let me = config
            .initial_members
            .iter()
            .find(|m| m.id == config.member_id.0)
            .unwrap();
        assert_eq!(me.peer_ur_ls, ["http://127.0.0.1:2480"]);
        // Names and client URLs are published through raft, not written at bootstrap.
        assert!(config.initial_members.iter().all(|m| m.name.is_empty()));
        assert_eq!(config.listen_peer[0].port, 2480);
        assert_eq!(config.cluster_state, ClusterState::Existing);
        assert!(config.force_new_cluster);
        let ids: Vec<MemberId> = config
            .initial_members
            .iter()
            .map(|m| MemberId(m.id))
            .collect();
        assert_eq!(config.cluster_id, member::cluster_id(&ids));
    }

    #[test]
    fn election_timeout_must_be_five_heartbeats() {
        let error = parse_with(
            &["--heartbeat-interval", "100", "--election-timeout", "400"],
            &[],
        )
        .unwrap_err();
        assert!(matches!(error, ConfigError::ElectionTimeout { .. }));
    }

    #[test]
    fn client_tls_comes_from_flags_variables_or_the_config_files_block() {
        use crate::server::tls::CertSource;
        let https = ["--listen-client-urls", "https://127.0.0.1:2379"];
        let error = parse_with(&https, &[]).unwrap_err().to_string();
        assert!(error.contains("--cert-file, --key-file"), "{error}");
        let files = CertSource::Files {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        let flags = [
            &https[..],
            &[
                "--cert-file",
                "c.pem",
                "--key-file",
                "k.pem",
                "--client-cert-auth",
                "--trusted-ca-file",
                "ca.pem",
            ],
        ]
        .concat();
        let config = parse_with(&flags, &[]).unwrap().unwrap();
        let tls = config.client_tls.expect("client TLS");
        assert_eq!(tls.cert, files);
        assert!(tls.client_cert_auth);
        assert!(config.listen_client[0].tls);
        let vars = [("ETCD_CERT_FILE", "c.pem"), ("ETCD_KEY_FILE", "k.pem")];
        let config = parse_with(&https, &vars).unwrap().unwrap();
        assert_eq!(config.client_tls.expect("client TLS").cert, files);
        let plain = parse_with(&["--cert-file", "c.pem", "--key-file", "k.pem"], &[])
            .unwrap()
            .unwrap();
        assert!(
            plain.client_tls.is_none(),
            "http client URLs ignore the certificate"
        );

        let dir = std::env::temp_dir().join(format!("stet-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stet.yml");
        std::fs::write(
            &path,
            "listen-client-urls: https://127.0.0.1:2379\n\
             client-transport-security:\n  cert-file: c.pem\n  key-file: k.pem\n  \
             client-cert-auth: true\n  trusted-ca-file: ca.pem\n  crl-file: x\n",
        )
        .unwrap();
        let path_arg = path.display().to_string();
        let config = parse_with(&["--config-file", &path_arg], &[])
            .unwrap()
            .unwrap();
        let tls = config.client_tls.expect("client TLS from the block");
        assert_eq!(tls.cert, files);
        assert_eq!(tls.trusted_ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            config.ignored_config_keys,
            vec!["client-transport-security.crl-file"]
        );
        let peer = ["--listen-peer-urls", "https://127.0.0.1:2380"];
        let error = parse_with(&peer, &[]).unwrap_err().to_string();
        assert!(
            error.contains("--peer-cert-file, --peer-key-file"),
            "{error}"
        );
        std::fs::write(
            &path,
            "listen-peer-urls: https://127.0.0.1:2380\n\
             peer-transport-security:\n  cert-file: p.pem\n  key-file: pk.pem\n  \
             trusted-ca-file: pca.pem\n  client-cert-auth: true\n  allowed-cn: etcd-peer\n",
        )
        .unwrap();
        let config = parse_with(&["--config-file", &path_arg], &[])
            .unwrap()
            .unwrap();
        let peer_tls = config.peer_tls.expect("peer TLS from the block");
        assert_eq!(
            peer_tls.transport.cert,
            CertSource::Files {
                cert: "p.pem".into(),
                key: "pk.pem".into()
            }
        );
        assert!(peer_tls.transport.client_cert_auth);
        assert_eq!(peer_tls.allowed_cn.as_deref(), Some("etcd-peer"));
        assert!(config.client_tls.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_config_file_sets_flags_and_overrides_the_command_line() {
        let dir = std::env::temp_dir().join(format!("stet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stet.yml");
        std::fs::write(
            &path,
            "name: 'n1'\n\
             data-dir: /var/lib/n1\n\
             initial-cluster: n1=http://10.0.0.1:2380\n\
             initial-advertise-peer-urls: http://10.0.0.1:2380\n\
             listen-client-urls: [http://10.0.0.1:2379, http://127.0.0.1:4001]\n\
             snapshot-count: 5000\n\
             force-new-cluster: false\n\
             enable-v2: false\n\
             logger: zap\n",
        )
        .unwrap();
        let path_arg = path.display().to_string();
        let config = parse_with(&["--config-file", &path_arg, "--name", "ignored"], &[])
            .unwrap()
            .unwrap();
        assert_eq!(config.name, "n1");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/n1"));
        assert_eq!(config.snapshot_count, 5000);
        assert_eq!(config.listen_client.len(), 2);
        assert_eq!(config.listen_client[1].port, 4001);
        assert_eq!(config.ignored_config_keys, vec!["logger"]);
        assert!(!config.enable_v2);
        std::fs::write(&path, "- not\n- a mapping\n").unwrap();
        let error = parse_with(&["--config-file", &path_arg], &[]).unwrap_err();
        assert!(error.to_string().contains("must be a mapping"), "{error}");
        let missing = dir.join("missing.yml").display().to_string();
        let error = parse_with(&["--config-file", &missing], &[]).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot read --config-file"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn version_flag_asks_for_the_version() {
        assert!(parse_with(&["--version"], &[]).unwrap().is_none());
    }

    #[test]
    fn name_must_be_in_initial_cluster() {
        let error = parse_with(&["--name", "other"], &[]).unwrap_err();
        assert!(matches!(error, ConfigError::NameNotInCluster(_)));
    }

    #[test]
    fn force_new_cluster_defers_the_initial_cluster_check_to_a_start_without_data() {
        let config = parse_with(&["--name", "other", "--force-new-cluster"], &[])
            .unwrap()
            .expect("a config");
        let problem = config.initial_cluster_problem.expect("the problem is kept");
        assert!(problem.contains("\"other\""), "{problem}");
        let config = parse_with(&["--force-new-cluster"], &[])
            .unwrap()
            .expect("a config");
        assert_eq!(config.initial_cluster_problem, None);
    }
}
