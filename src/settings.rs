//! What the core needs to know of the configuration, with the defaults of
//! every setting (the config file's defaults are these).

use crate::xml::Limits;

/// Bounds on the MUC service.
#[derive(Debug, Clone)]
pub struct MucLimits {
    pub max_rooms: usize,
    /// Upper bound for a room's configured maximum of occupants.
    pub max_users: u32,
    pub rooms_per_session: usize,
    /// Archive retention per room.
    pub archive_messages: usize,
    pub archive_bytes: u64,
    /// Bytes of all archives together (rooms mastered here and replicas):
    /// past it, the largest archives give up their oldest messages first.
    pub archive_bytes_total: u64,
    pub mam_max_page: usize,
    /// Rooms one account may own (create), and all the accounts of one
    /// linked site together.
    pub rooms_per_account: usize,
    pub rooms_per_site: usize,
    /// Affiliations (owners, admins, members, outcasts) kept per room.
    pub affiliations_per_room: usize,
    /// Bytes of an occupant's presence a room keeps and shows to others.
    pub presence_bytes: usize,
    /// Bytes of classic history sent on a join; the oldest are left out.
    pub join_history_bytes: usize,
    /// Bytes of history a snapshot carries to a mirroring site (recent
    /// history for a new mirror, missed messages after a split).
    pub snapshot_history_bytes: usize,
}

impl Default for MucLimits {
    fn default() -> MucLimits {
        MucLimits {
            max_rooms: 1000,
            max_users: 1000,
            rooms_per_session: 100,
            archive_messages: 10_000,
            archive_bytes: 8 * 1024 * 1024,
            archive_bytes_total: 64 * 1024 * 1024,
            mam_max_page: 250,
            rooms_per_account: 20,
            rooms_per_site: 100,
            affiliations_per_room: 1000,
            presence_bytes: 16 * 1024,
            join_history_bytes: 256 * 1024,
            snapshot_history_bytes: 2 * 1024 * 1024,
        }
    }
}

/// Links to other nodes.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// MUC services of other nodes whose rooms are mirrored here (this node dials them).
    pub upstreams: Vec<String>,
    /// Domains of sites allowed to mirror this node's rooms.
    pub peers: Vec<String>,
    /// Idle time after which a whitespace keepalive is sent.
    pub keepalive_ms: u64,
    /// Silence after which the link is taken for dead and closed.
    pub dead_ms: u64,
    /// How long a received event may wait for its acknowledgement.
    pub ack_delay_ms: u64,
    /// Redial backoff bounds (doubling, with ±25 % jitter).
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Unacknowledged outgoing events kept per peer, in count and bytes
    /// (past either, the oldest are dropped and the peer told so).
    pub max_unacked: usize,
    pub max_unacked_bytes: u64,
    /// Per-peer (keepalive, dead) overrides in milliseconds.
    pub timing: Vec<(String, u64, u64)>,
    /// How long a link may be down before each side shows the other's
    /// occupants as gone (status 333).
    pub grace_ms: u64,
    /// Offer DEFLATE on links (used when both sides offer it).
    pub compress: bool,
}

impl LinkConfig {
    /// Keepalive interval and dead-link timeout for `peer`.
    pub fn timing_for(&self, peer: &str) -> (u64, u64) {
        self.timing
            .iter()
            .find(|(p, _, _)| p == peer)
            .map_or((self.keepalive_ms, self.dead_ms), |(_, k, d)| (*k, *d))
    }
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            upstreams: Vec::new(),
            peers: Vec::new(),
            keepalive_ms: 30_000,
            dead_ms: 120_000,
            ack_delay_ms: 200,
            backoff_min_ms: 1_000,
            backoff_max_ms: 30_000,
            max_unacked: 50_000,
            max_unacked_bytes: 64 * 1024 * 1024,
            timing: Vec::new(),
            grace_ms: 300_000,
            compress: true,
        }
    }
}

/// What the core needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub domain: String,
    pub muc_service: String,
    pub muc: MucLimits,
    pub link: LinkConfig,
    pub limits: Limits,
    pub require_tls: bool,
    /// From connect until a resource is bound.
    pub handshake_timeout_ms: u64,
    /// Connections not authenticated yet, in all and per address (IPv6:
    /// per /64): the rest of `max_connections` is kept for users who are.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_address: usize,
    /// Largest stanza before authentication (SASL needs little).
    pub preauth_stanza_bytes: usize,
    /// Input buffered in unfinished stanzas, all connections together.
    pub max_buffered_input: usize,
    /// How long part of a stanza may sit unfinished.
    pub stanza_timeout_ms: u64,
    /// A bound stream gets a whitespace keepalive this often, so a dead
    /// peer is noticed by a failing write and its presence withdrawn.
    pub keepalive_ms: u64,
    /// How long a session that enabled resumption (XEP-0198) outlives its
    /// connection; 0: sessions are not resumable.
    pub resume_timeout_ms: u64,
    pub max_resources_per_user: usize,
    /// Whether clients may register new accounts themselves (XEP-0077).
    pub allow_registration: bool,
    pub offline_limit: usize,
    /// Bytes of offline messages kept per account, and for all accounts.
    pub offline_bytes_per_account: u64,
    pub offline_bytes_total: u64,
    /// Accounts' archives (XEP-0313): messages and bytes kept per account,
    /// the age of the oldest kept (0: no limit), and bytes for all
    /// accounts (past it, the largest archives give up their oldest
    /// messages first).
    pub archive_messages_per_account: usize,
    pub archive_bytes_per_account: u64,
    pub archive_days: u64,
    pub archive_bytes_total: u64,
    pub roster_limit: usize,
    /// Bytes of one account's roster (so a roster fetch always fits what a
    /// connection may queue).
    pub roster_bytes: usize,
    pub upload: UploadConfig,
}

/// File upload (XEP-0363) and files crossing the links (`[upload]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Whether this node offers upload slots (`[upload]` is configured).
    /// Files of other nodes are fetched and served either way.
    pub enabled: bool,
    /// Where clients reach the HTTPS server, without a trailing slash: the
    /// slots' URLs start with it. An organisation-wide host name that every
    /// node serves as its own (docs/operations.md) goes here too.
    pub public_url: String,
    pub max_file_bytes: u64,
    /// Bytes one account may have stored, slots granted included.
    pub user_quota_bytes: u64,
    /// Bytes of this node's users' files in all.
    pub total_bytes: u64,
    /// Bytes of other nodes' files kept here (least recently used go first).
    pub cache_bytes: u64,
    /// Files older than this go; 0 keeps them until a bound needs room.
    pub expire_days: u64,
    /// How long a slot may wait for its upload.
    pub slot_ms: u64,
    /// Slots one account may hold unused at once.
    pub slots_per_user: usize,
    /// Another node's files up to this size are fetched as soon as a
    /// message names them (thumbnails, voice notes); larger ones when
    /// someone opens them.
    pub eager_bytes: u64,
    /// Rooms (bare JIDs) whose messages' files cross at once whatever
    /// their size: a room whose photos everyone at the site looks at.
    pub eager_rooms: Vec<String>,
    /// Bytes per second of file chunks one link may carry; 0: as many as
    /// the link takes without delaying chat (the chunk window adapts).
    pub link_rate: u64,
    /// Files one account may have stored (each costs the index memory
    /// however small it is), and files kept in all, cache included.
    pub files_per_user: usize,
    pub files_total: usize,
}

impl UploadConfig {
    pub fn new(domain: &str) -> UploadConfig {
        UploadConfig {
            enabled: true,
            public_url: format!("https://{domain}:5281"),
            max_file_bytes: 10 * 1024 * 1024,
            user_quota_bytes: 100 * 1024 * 1024,
            total_bytes: 1024 * 1024 * 1024,
            cache_bytes: 256 * 1024 * 1024,
            expire_days: 30,
            slot_ms: 300_000,
            slots_per_user: 8,
            eager_bytes: 64 * 1024,
            eager_rooms: Vec::new(),
            link_rate: 0,
            files_per_user: 1_000,
            files_total: 20_000,
        }
    }
}

impl NodeConfig {
    pub fn new(domain: &str) -> NodeConfig {
        NodeConfig {
            domain: domain.to_string(),
            muc_service: format!("conference.{domain}"),
            muc: MucLimits::default(),
            link: LinkConfig::default(),
            limits: Limits::default(),
            require_tls: true,
            handshake_timeout_ms: 30_000,
            max_unauthenticated: 100,
            max_unauthenticated_per_address: 8,
            preauth_stanza_bytes: 16 * 1024,
            max_buffered_input: 64 * 1024 * 1024,
            stanza_timeout_ms: 60_000,
            keepalive_ms: 60_000,
            resume_timeout_ms: 300_000,
            max_resources_per_user: 10,
            allow_registration: false,
            offline_limit: 500,
            offline_bytes_per_account: 4 * 1024 * 1024,
            offline_bytes_total: 64 * 1024 * 1024,
            archive_messages_per_account: 20_000,
            archive_bytes_per_account: 16 * 1024 * 1024,
            archive_days: 365,
            archive_bytes_total: 256 * 1024 * 1024,
            roster_limit: 1000,
            roster_bytes: 512 * 1024,
            upload: UploadConfig::new(domain),
        }
    }
}
