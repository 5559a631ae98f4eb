//! The vocabulary every machine of the core shares: the time as the shell
//! sees it, and the ids of connections.

pub type ConnId = u64;

/// A connection id that names no session: replies addressed to it go nowhere.
pub const NO_CONN: ConnId = ConnId::MAX;

/// Stands for the sender of a stanza that came over a link (a user at
/// another node): what the router sends it goes back over the link.
pub const LINK_CONN: ConnId = ConnId::MAX - 1;

/// The time, as the shell (or the simulator) sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds, for timeouts.
    pub mono_ms: u64,
    /// Wall-clock Unix milliseconds, for timestamps users see.
    pub unix_ms: u64,
}

/// A linked node as the links know it: a site's domain, or the MUC service
/// of an upstream whose rooms are mirrored here. Stored as its string.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct PeerId(String);

impl PeerId {
    pub fn new(name: impl Into<String>) -> PeerId {
        PeerId(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for PeerId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by peer are looked up by name too.
impl std::borrow::Borrow<str> for PeerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Remove and return the keys whose deadline has come.
pub fn take_due<K: Ord + Clone>(
    deadlines: &mut std::collections::BTreeMap<K, u64>,
    now: u64,
) -> Vec<K> {
    let due: Vec<K> = deadlines
        .iter()
        .filter(|(_, t)| **t <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for k in &due {
        deadlines.remove(k);
    }
    due
}

/// Pop the connection timers that have come (deadline, connection), in
/// deadline order. Timers set while the caller handles them wait for the
/// next call.
pub fn pop_due(
    timers: &mut std::collections::BinaryHeap<std::cmp::Reverse<(u64, ConnId)>>,
    now: u64,
) -> Vec<(u64, ConnId)> {
    let mut due = Vec::new();
    while let Some(&std::cmp::Reverse((t, conn))) = timers.peek() {
        if t > now {
            break;
        }
        timers.pop();
        due.push((t, conn));
    }
    due
}

impl From<&str> for PeerId {
    fn from(name: &str) -> PeerId {
        PeerId::new(name)
    }
}

impl From<String> for PeerId {
    fn from(name: String) -> PeerId {
        PeerId(name)
    }
}

/// A peer is its name: compared with a domain or a service as it is.
impl PartialEq<PeerId> for str {
    fn eq(&self, other: &PeerId) -> bool {
        self == other.0
    }
}

impl PartialEq<str> for PeerId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// Bytes for one connection: its own beginning, then bytes it may share
/// with other recipients. A room message is serialised once; each
/// occupant's copy is its own `<message to='…'` and the shared rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    pub head: Vec<u8>,
    pub shared: Option<std::rc::Rc<[u8]>>,
}

impl Payload {
    /// `head` followed by the shared `rest`.
    pub fn shared(head: Vec<u8>, rest: &std::rc::Rc<[u8]>) -> Payload {
        Payload {
            head,
            shared: Some(rest.clone()),
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.shared.as_ref().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces, in order, as they go on the wire.
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.head[..]).chain(self.shared.as_deref())
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().flatten().copied().collect()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(head: Vec<u8>) -> Payload {
        Payload { head, shared: None }
    }
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random id (72 bits, as hex): stanza-ids, item ids, stream ids.
pub fn random_id(rng: &mut impl rand_core::RngCore) -> String {
    let mut b = [0u8; 9];
    rng.fill_bytes(&mut b);
    hex(&b)
}
