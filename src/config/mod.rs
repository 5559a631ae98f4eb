//! The TOML configuration (DESIGN §2): parsing with errors that name the
//! file, line and problem; validation; the embedded default.

use crate::jid::normalize_domain;
use crate::settings::NodeConfig;
use crate::xml::Limits;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// A domain name, normalised; refused at parse time if malformed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Domain(pub String);

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Domain, D::Error> {
        let s = String::deserialize(d)?;
        normalize_domain(&s)
            .map(Domain)
            .map_err(|e| serde::de::Error::custom(format!("invalid domain {s:?}: {e}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub domain: Domain,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_log_level")]
    pub log_level: LogLevel,
    #[serde(default)]
    pub c2s: C2s,
    #[serde(default)]
    pub muc: Muc,
    #[serde(default)]
    pub link: Link,
    #[serde(default)]
    pub upstream: Vec<Upstream>,
    #[serde(default)]
    pub admin: Admin,
    /// File upload (XEP-0363) over HTTPS; none: this node takes no
    /// uploads (it still fetches and serves other nodes' files for its
    /// links).
    pub upload: Option<Upload>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upload {
    pub listen: SocketAddr,
    /// Where clients reach `listen` (an organisation-wide host name goes
    /// here); default `https://<domain>:<listen's port>`.
    pub public_url: Option<String>,
    /// The certificate for `public_url`'s host; default the c2s one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub max_file_bytes: u64,
    pub user_quota_bytes: u64,
    pub total_bytes: u64,
    pub cache_bytes: u64,
    pub expire_days: u64,
    pub eager_bytes: u64,
    pub eager_rooms: Vec<String>,
    pub link_rate: u64,
}

impl Default for Upload {
    fn default() -> Upload {
        let core = crate::settings::UploadConfig::new("localhost");
        Upload {
            listen: "127.0.0.1:5281".parse().expect("literal"),
            public_url: None,
            cert: None,
            key: None,
            max_file_bytes: core.max_file_bytes,
            user_quota_bytes: core.user_quota_bytes,
            total_bytes: core.total_bytes,
            cache_bytes: core.cache_bytes,
            expire_days: core.expire_days,
            eager_bytes: core.eager_bytes,
            eager_rooms: core.eager_rooms,
            link_rate: core.link_rate,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2s {
    pub listen: SocketAddr,
    /// Where clients connect with TLS from the first byte (XEP-0368);
    /// unset: nowhere (the embedded default sets 127.0.0.1:5223).
    pub listen_tls: Option<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub require_tls: bool,
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attrs: usize,
    /// Seconds from connect until a resource must be bound.
    pub handshake_timeout: u64,
    /// Seconds a stanza may be left unfinished.
    pub stanza_timeout: u64,
    /// Seconds between whitespace keepalives on an established stream.
    pub keepalive_interval: u64,
    /// Seconds a session that enabled resumption (XEP-0198) outlives its
    /// connection; 0: no resumption.
    pub resume_timeout: u64,
    pub max_connections: usize,
    /// Connections not authenticated yet, in all and from one address.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_address: usize,
    pub max_resources_per_user: usize,
    /// Clients may register accounts themselves (XEP-0077, rate-limited).
    pub allow_registration: bool,
    pub offline_limit: usize,
    /// Bytes of offline messages kept per account and for all accounts.
    pub offline_bytes_per_account: u64,
    pub offline_bytes_total: u64,
    /// Accounts' archives: kept per account (messages, bytes, days; 0
    /// days is no age limit) and for all accounts (bytes).
    pub archive_messages_per_account: usize,
    pub archive_bytes_per_account: u64,
    pub archive_days: u64,
    pub archive_bytes_total: u64,
    pub roster_limit: usize,
}

/// The defaults of the configurable settings are the core's (`NodeConfig`,
/// `MucLimits`, `LinkConfig`): written once, there.
impl Default for C2s {
    fn default() -> C2s {
        let core = NodeConfig::new("localhost");
        C2s {
            listen: "127.0.0.1:5222".parse().expect("literal"),
            listen_tls: None,
            cert: None,
            key: None,
            require_tls: core.require_tls,
            max_stanza_bytes: core.limits.max_stanza_bytes,
            max_depth: core.limits.max_depth,
            max_attrs: core.limits.max_attrs,
            handshake_timeout: core.handshake_timeout_ms / 1000,
            stanza_timeout: core.stanza_timeout_ms / 1000,
            keepalive_interval: core.keepalive_ms / 1000,
            resume_timeout: core.resume_timeout_ms / 1000,
            // The shell's, not the core's: how many sockets it accepts.
            max_connections: 1000,
            max_unauthenticated: core.max_unauthenticated,
            max_unauthenticated_per_address: core.max_unauthenticated_per_address,
            max_resources_per_user: core.max_resources_per_user,
            allow_registration: core.allow_registration,
            offline_limit: core.offline_limit,
            offline_bytes_per_account: core.offline_bytes_per_account,
            offline_bytes_total: core.offline_bytes_total,
            archive_messages_per_account: core.archive_messages_per_account,
            archive_bytes_per_account: core.archive_bytes_per_account,
            archive_days: core.archive_days,
            archive_bytes_total: core.archive_bytes_total,
            roster_limit: core.roster_limit,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Muc {
    /// Defaults to `conference.<domain>`.
    pub service: Option<Domain>,
    #[serde(default = "default_max_rooms")]
    pub max_rooms: usize,
    /// Upper bound on any room's maximum of occupants.
    #[serde(default = "default_max_occupants")]
    pub max_occupants: u32,
    /// Archive retention per room: messages kept.
    #[serde(default = "default_archive_messages")]
    pub archive_messages: usize,
    /// Archive retention per room: bytes kept.
    #[serde(default = "default_archive_bytes")]
    pub archive_bytes: u64,
    /// Archive retention for the whole node (rooms and mirrored rooms):
    /// bytes kept in all archives together.
    #[serde(default = "default_archive_bytes_total")]
    pub archive_bytes_total: u64,
    /// Rooms one account may create (own).
    #[serde(default = "default_rooms_per_account")]
    pub rooms_per_account: usize,
}

impl Default for Muc {
    fn default() -> Muc {
        Muc {
            service: None,
            max_rooms: default_max_rooms(),
            max_occupants: default_max_occupants(),
            archive_messages: default_archive_messages(),
            archive_bytes: default_archive_bytes(),
            archive_bytes_total: default_archive_bytes_total(),
            rooms_per_account: default_rooms_per_account(),
        }
    }
}

fn default_max_rooms() -> usize {
    crate::settings::MucLimits::default().max_rooms
}
fn default_max_occupants() -> u32 {
    crate::settings::MucLimits::default().max_users
}
fn default_archive_messages() -> usize {
    crate::settings::MucLimits::default().archive_messages
}
fn default_archive_bytes() -> u64 {
    crate::settings::MucLimits::default().archive_bytes
}
fn default_archive_bytes_total() -> u64 {
    crate::settings::MucLimits::default().archive_bytes_total
}
fn default_rooms_per_account() -> usize {
    crate::settings::MucLimits::default().rooms_per_account
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Where this node accepts links from mirroring sites.
    pub listen: Option<SocketAddr>,
    /// Seconds a link may be down before the other side's occupants are
    /// shown as gone (status 333), on this node's side of every link.
    #[serde(default = "default_grace")]
    pub grace: u64,
    #[serde(default)]
    pub peer: Vec<Peer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub domain: Domain,
    pub fingerprint: String,
    /// Seconds of silence after which a keepalive is sent.
    #[serde(default = "default_keepalive")]
    pub keepalive: u64,
    /// Seconds of silence after which the link is taken for dead.
    #[serde(default = "default_dead_after")]
    pub dead_after: u64,
}

fn default_grace() -> u64 {
    crate::settings::LinkConfig::default().grace_ms / 1000
}

impl Default for Link {
    fn default() -> Link {
        Link {
            listen: None,
            grace: default_grace(),
            peer: Vec::new(),
        }
    }
}

fn default_keepalive() -> u64 {
    crate::settings::LinkConfig::default().keepalive_ms / 1000
}
fn default_dead_after() -> u64 {
    crate::settings::LinkConfig::default().dead_ms / 1000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub muc: Domain,
    pub connect: String,
    pub fingerprint: String,
    #[serde(default = "default_keepalive")]
    pub keepalive: u64,
    #[serde(default = "default_dead_after")]
    pub dead_after: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// The local web page (HTTPS).
    pub http: Option<SocketAddr>,
    /// The serial console's device.
    pub serial: Option<PathBuf>,
    /// Whoever reaches the serial port may administer without the admin
    /// password (a board whose console is inside a locked enclosure).
    #[serde(default)]
    pub serial_trusted: bool,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./outpost-data")
}
fn default_log_level() -> LogLevel {
    LogLevel::Info
}

/// True if `s` has the form of a link key fingerprint (base64 of 32 bytes).
pub fn is_fingerprint(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .is_ok_and(|b| b.len() == 32)
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The embedded default (domain `localhost`, data in `./outpost-data`).
    pub fn embedded() -> Config {
        Config::parse(EMBEDDED_DEFAULT, "<embedded default>")
            .expect("the embedded default is valid")
    }

    /// Where the console and the web page save settings when the node runs
    /// without `-c`: inside the embedded default's data directory.
    pub fn saved_default_path() -> PathBuf {
        default_data_dir().join("outpost.toml")
    }

    /// Parse the text of the file at `path`: relative paths in it are
    /// relative to the file's directory. (The shell reads the file:
    /// `shell::config_file`.)
    pub fn parse_file(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::parse(text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{name}: {}", e.to_string().trim_end())))?;
        cfg.validate()
            .map_err(|e| ConfigError(format!("{name}: {e}")))?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        if let Some(p) = self.c2s.cert.as_mut() {
            fix(p);
        }
        if let Some(p) = self.c2s.key.as_mut() {
            fix(p);
        }
    }

    fn validate(&self) -> Result<(), String> {
        let c = &self.c2s;
        if c.cert.is_some() != c.key.is_some() {
            return Err("[c2s] cert and key must be set together".into());
        }
        // Bounded so that every log record and link frame a stanza can end
        // up in stays within what the log and the links accept.
        if !(512..=crate::xml::MAX_STANZA_BYTES_LIMIT).contains(&c.max_stanza_bytes) {
            return Err(format!(
                "[c2s] max_stanza_bytes must be between 512 and {}",
                crate::xml::MAX_STANZA_BYTES_LIMIT
            ));
        }
        if !(2..=256).contains(&c.max_depth) {
            return Err("[c2s] max_depth must be between 2 and 256".into());
        }
        if !(8..=1024).contains(&c.max_attrs) {
            return Err("[c2s] max_attrs must be between 8 and 1024".into());
        }
        for (key, v) in [
            ("handshake_timeout", c.handshake_timeout),
            ("stanza_timeout", c.stanza_timeout),
            ("keepalive_interval", c.keepalive_interval),
        ] {
            if v == 0 || v > 3600 {
                return Err(format!("[c2s] {key} must be between 1 and 3600 seconds"));
            }
        }
        if c.resume_timeout > 86_400 {
            return Err(
                "[c2s] resume_timeout must be at most 86400 seconds (0: no resumption)".into(),
            );
        }
        for (key, v) in [
            ("max_connections", c.max_connections),
            ("max_unauthenticated", c.max_unauthenticated),
            (
                "max_unauthenticated_per_address",
                c.max_unauthenticated_per_address,
            ),
            ("max_resources_per_user", c.max_resources_per_user),
            ("roster_limit", c.roster_limit),
        ] {
            if v == 0 {
                return Err(format!("[c2s] {key} must be at least 1"));
            }
        }
        if c.offline_bytes_per_account == 0 || c.offline_bytes_per_account > c.offline_bytes_total {
            return Err(
                "[c2s] offline_bytes_per_account must be at least 1 and at most offline_bytes_total"
                    .into(),
            );
        }
        if c.archive_days > 36_500 {
            return Err("[c2s] archive_days must be at most 36500 (0: no age limit)".into());
        }
        if c.archive_bytes_per_account > c.archive_bytes_total {
            return Err(
                "[c2s] archive_bytes_per_account must be at most archive_bytes_total".into(),
            );
        }
        if let Some(u) = &self.upload {
            if u.max_file_bytes == 0 || u.max_file_bytes > u.user_quota_bytes {
                return Err(
                    "[upload] max_file_bytes must be at least 1 and at most user_quota_bytes"
                        .into(),
                );
            }
            if u.user_quota_bytes > u.total_bytes {
                return Err("[upload] user_quota_bytes must be at most total_bytes".into());
            }
            if u.expire_days > 36_500 {
                return Err(
                    "[upload] expire_days must be at most 36500 (0: kept until a bound needs room)"
                        .into(),
                );
            }
            for room in &u.eager_rooms {
                if crate::jid::Jid::parse(room)
                    .map_or(true, |j| j.local().is_none() || j.resource().is_some())
                {
                    return Err(format!(
                        "[upload] eager_rooms: {room:?} is not a room's address"
                    ));
                }
            }
            if u.cert.is_some() != u.key.is_some() {
                return Err("[upload] cert and key go together".into());
            }
            if let Some(url) = &u.public_url {
                let rest = url.strip_prefix("https://").unwrap_or("");
                if rest.is_empty() || rest.contains('/') || rest.contains('?') {
                    return Err(format!(
                        "[upload] public_url must be https://host[:port] with no path, not {url:?}"
                    ));
                }
            }
        }
        if self.muc_service() == self.domain.0 {
            return Err("[muc] service must differ from domain".into());
        }
        for p in &self.link.peer {
            if !is_fingerprint(&p.fingerprint) {
                return Err(format!("[[link.peer]] {}: fingerprint must be the base64 SHA-256 that `outpost check` shows", p.domain.0));
            }
            if p.domain.0 == self.domain.0 {
                return Err(format!(
                    "[[link.peer]] {} is this node's own domain",
                    p.domain.0
                ));
            }
        }
        let timings = self
            .link
            .peer
            .iter()
            .map(|p| (&p.domain.0, p.keepalive, p.dead_after));
        for (name, keepalive, dead) in timings.chain(
            self.upstream
                .iter()
                .map(|u| (&u.muc.0, u.keepalive, u.dead_after)),
        ) {
            if keepalive == 0 || dead <= keepalive || dead > 86_400 {
                return Err(format!(
                    "link {name}: keepalive must be at least 1 s and dead_after above it (at most 86400 s)"
                ));
            }
        }
        for u in &self.upstream {
            if !is_fingerprint(&u.fingerprint) {
                return Err(format!("[[upstream]] {}: fingerprint must be the base64 SHA-256 that `outpost check` shows", u.muc.0));
            }
            if !u
                .connect
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(format!(
                    "[[upstream]] {}: connect must be host:port, not {:?}",
                    u.muc.0, u.connect
                ));
            }
            if u.muc.0 == self.muc_service() {
                return Err(format!(
                    "[[upstream]] {} is this node's own MUC service",
                    u.muc.0
                ));
            }
        }
        Ok(())
    }

    pub fn muc_service(&self) -> String {
        match &self.muc.service {
            Some(d) => d.0.clone(),
            None => format!("conference.{}", self.domain.0),
        }
    }

    pub fn node_config(&self) -> NodeConfig {
        let c = &self.c2s;
        NodeConfig {
            domain: self.domain.0.clone(),
            muc_service: self.muc_service(),
            link: crate::settings::LinkConfig {
                upstreams: self.upstream.iter().map(|u| u.muc.0.clone()).collect(),
                peers: self.link.peer.iter().map(|p| p.domain.0.clone()).collect(),
                timing: self
                    .link
                    .peer
                    .iter()
                    .map(|p| (p.domain.0.clone(), p.keepalive * 1000, p.dead_after * 1000))
                    .chain(
                        self.upstream
                            .iter()
                            .map(|u| (u.muc.0.clone(), u.keepalive * 1000, u.dead_after * 1000)),
                    )
                    .collect(),
                grace_ms: self.link.grace * 1000,
                ..Default::default()
            },
            muc: crate::settings::MucLimits {
                max_rooms: self.muc.max_rooms,
                max_users: self.muc.max_occupants,
                archive_messages: self.muc.archive_messages,
                archive_bytes: self.muc.archive_bytes,
                archive_bytes_total: self.muc.archive_bytes_total,
                rooms_per_account: self.muc.rooms_per_account,
                ..Default::default()
            },
            limits: Limits {
                max_stanza_bytes: c.max_stanza_bytes,
                max_depth: c.max_depth,
                max_attrs: c.max_attrs,
            },
            require_tls: c.require_tls,
            handshake_timeout_ms: c.handshake_timeout * 1000,
            max_unauthenticated: c.max_unauthenticated,
            max_unauthenticated_per_address: c.max_unauthenticated_per_address,
            stanza_timeout_ms: c.stanza_timeout * 1000,
            keepalive_ms: c.keepalive_interval * 1000,
            resume_timeout_ms: c.resume_timeout * 1000,
            max_resources_per_user: c.max_resources_per_user,
            allow_registration: c.allow_registration,
            offline_limit: c.offline_limit,
            offline_bytes_per_account: c.offline_bytes_per_account,
            offline_bytes_total: c.offline_bytes_total,
            archive_messages_per_account: c.archive_messages_per_account,
            archive_bytes_per_account: c.archive_bytes_per_account,
            archive_days: c.archive_days,
            archive_bytes_total: c.archive_bytes_total,
            roster_limit: c.roster_limit,
            upload: self.upload_config(),
            // Not configurable: the bounds the node keeps fixed.
            ..NodeConfig::new(&self.domain.0)
        }
    }

    pub fn upload_config(&self) -> crate::settings::UploadConfig {
        let core = crate::settings::UploadConfig::new(&self.domain.0);
        let Some(u) = &self.upload else {
            return crate::settings::UploadConfig {
                enabled: false,
                ..core
            };
        };
        crate::settings::UploadConfig {
            enabled: true,
            public_url: u
                .public_url
                .clone()
                .unwrap_or_else(|| format!("https://{}:{}", self.domain.0, u.listen.port())),
            max_file_bytes: u.max_file_bytes,
            user_quota_bytes: u.user_quota_bytes,
            total_bytes: u.total_bytes,
            cache_bytes: u.cache_bytes,
            expire_days: u.expire_days,
            eager_bytes: u.eager_bytes,
            eager_rooms: u.eager_rooms.clone(),
            link_rate: u.link_rate,
            ..core
        }
    }

    pub fn cert_paths(&self) -> (PathBuf, PathBuf, bool) {
        match (&self.c2s.cert, &self.c2s.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), false),
            _ => (
                self.data_dir.join("cert.pem"),
                self.data_dir.join("key.pem"),
                true,
            ),
        }
    }

    /// The effective settings as TOML, for `outpost check`.
    pub fn effective(&self) -> String {
        let mut shown = self.clone();
        shown.muc.service = Some(Domain(self.muc_service()));
        toml::to_string(&shown).expect("config serialises")
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // A test writes a config file.
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_the_contract() {
        let c = Config::embedded();
        assert_eq!(c.domain.0, "localhost");
        assert_eq!(c.c2s.listen.to_string(), "127.0.0.1:5222");
        assert_eq!(c.muc_service(), "conference.localhost");
        assert_eq!(c.admin.http.unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./outpost-data"));
        assert!(c.c2s.require_tls);
    }

    #[test]
    fn full_contract_parses() {
        let c = Config::parse(
            r#"
            domain = "Raleigh.Example"
            data_dir = "/var/lib/outpost"
            [c2s]
            listen = "0.0.0.0:5222"
            cert = "/etc/outpost/cert.pem"
            key = "/etc/outpost/key.pem"
            [muc]
            service = "conf.raleigh.example"
            [link]
            listen = "0.0.0.0:5270"
            [[link.peer]]
            domain = "fairfax.example"
            fingerprint = "K1b4sOl5ChbtKVh1SZ2NtOXsAfdxNUQpx4LD7gy4EPE="
            [[upstream]]
            muc = "conference.fairfax.example"
            connect = "hq.fairfax.example:5270"
            fingerprint = "u1JYjkXzqkQXN2s+SjA+yw5cVKDojQfkBDt+Ixh5FQY="
            [admin]
            http = "0.0.0.0:8080"
            serial = "/dev/ttyS0"
            "#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.domain.0, "raleigh.example");
        assert_eq!(c.link.peer[0].domain.0, "fairfax.example");
        assert_eq!(c.upstream[0].connect, "hq.fairfax.example:5270");
        let again = Config::parse(&c.effective(), "effective").unwrap();
        assert_eq!(again.effective(), c.effective());
    }

    #[test]
    fn errors_name_the_file_line_and_problem() {
        let err = Config::parse(
            "domain = \"localhost\"\n[c2s]\nlisten = \"nowhere\"\n",
            "site.toml",
        )
        .unwrap_err()
        .0;
        assert!(err.starts_with("site.toml:"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("invalid socket address"), "{err}");
        let err = Config::parse("domain = \"bad domain\"\n", "x.toml")
            .unwrap_err()
            .0;
        assert!(
            err.contains("line 1") && err.contains("invalid domain"),
            "{err}"
        );
        let err = Config::parse("domain = \"a\"\ndomian = 1\n", "x.toml")
            .unwrap_err()
            .0;
        assert!(
            err.contains("line 2") && err.contains("unknown field `domian`"),
            "{err}"
        );
        let err = Config::parse("domain = \"a\"\n[c2s]\ncert = \"x\"\n", "x.toml")
            .unwrap_err()
            .0;
        assert!(err.contains("cert and key"), "{err}");
        let err = Config::parse("domain = \"a\"\n[c2s]\nmax_depth = 1000\n", "x.toml")
            .unwrap_err()
            .0;
        assert!(err.contains("max_depth"), "{err}");
        let err = Config::parse("domain = \"a\"\n[[upstream]]\nmuc = \"conf.b\"\nconnect = \"b:5270\"\nfingerprint = \"ab:cd\"\n", "x.toml")
            .unwrap_err()
            .0;
        assert!(err.contains("fingerprint must be"), "{err}");
        let err = Config::parse("[c2s\n", "x.toml").unwrap_err().0;
        assert!(err.contains("line 1"), "{err}");
        let err = Config::parse("log_level = \"loud\"\ndomain=\"a\"", "x.toml")
            .unwrap_err()
            .0;
        assert!(err.contains("line 1") && err.contains("loud"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.toml");
        std::fs::write(&p, "domain = \"x.example\"\ndata_dir = \"data\"\n").unwrap();
        let c = crate::shell::config_file::load(&p).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        let err = crate::shell::config_file::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .0;
        assert!(err.contains("missing.toml"), "{err}");
    }
}
