//! Personal eventing (XEP-0163): the nodes of an account's PEP service,
//! each with its configuration and its items. Data only: `im::pep` acts
//! on it; records and snapshot parts carry it to the log.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Nodes one account may have.
pub const NODES_PER_ACCOUNT: usize = 64;
/// Bytes of items (ids and payloads) one account may keep, all nodes
/// together: an OMEMO bundle per device, an avatar, bookmarks fit many
/// times over.
pub const BYTES_PER_ACCOUNT: usize = 2 * 1024 * 1024;
/// Bytes of items all accounts together may keep.
pub const BYTES_TOTAL: usize = 64 * 1024 * 1024;
/// Items one node may keep (`max_items` "max").
pub const MAX_ITEMS: u32 = 256;
/// Subscribers (bare JIDs, XEP-0060 §6.1) one node may have.
pub const SUBSCRIBERS_PER_NODE: usize = 128;
/// Subscriptions of one subscriber to one node: its bare JID and a few
/// of its sessions.
pub const SUBSCRIPTIONS_PER_SUBSCRIBER: usize = 4;
/// Explicit subscriptions one account may hold to other accounts' nodes.
pub const SUBSCRIPTIONS_PER_ACCOUNT: usize = 256;
/// Node names and item ids longer than this are refused.
pub const MAX_NAME_BYTES: usize = 256;

/// Who may read a node's items and is told of them (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    Open,
    /// Contacts subscribed to the owner's presence (the PEP default).
    Presence,
    /// The owner alone (private data: XEP-0223).
    Whitelist,
}

/// When the last item goes to someone who may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PepConfig {
    pub access: Access,
    pub persist_items: bool,
    pub max_items: u32,
    pub send_last: SendLast,
    pub notify_retract: bool,
}

impl Default for PepConfig {
    /// XEP-0163 §4.3: presence access, the last item kept and sent.
    fn default() -> PepConfig {
        PepConfig {
            access: Access::Presence,
            persist_items: true,
            max_items: 1,
            send_last: SendLast::OnSubAndPresence,
            notify_retract: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PepItem {
    pub id: String,
    /// The payload, as XML.
    pub xml: String,
    pub stamp_ms: u64,
}

impl PepItem {
    pub fn bytes(&self) -> usize {
        self.id.len() + self.xml.len()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PepNode {
    pub config: PepConfig,
    /// The oldest first; at most `config.max_items` (none unless
    /// `persist_items`, but the last one, kept to be sent on presence).
    pub items: VecDeque<PepItem>,
    /// Who subscribed explicitly (bare or full JIDs), told of every
    /// change whatever their client's capabilities say.
    #[serde(default)]
    pub subscribers: BTreeSet<String>,
}

impl PepNode {
    pub fn new(config: PepConfig) -> PepNode {
        PepNode {
            config,
            items: VecDeque::new(),
            subscribers: BTreeSet::new(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.items.iter().map(PepItem::bytes).sum()
    }

    /// How many items it keeps at most.
    fn keeps(&self) -> usize {
        if self.config.persist_items {
            self.config.max_items.clamp(1, MAX_ITEMS) as usize
        } else {
            1
        }
    }

    /// Publish `item`: one with the same id is replaced (and becomes the
    /// newest); the oldest go past what the node keeps.
    pub fn publish(&mut self, item: PepItem) {
        self.items.retain(|i| i.id != item.id);
        self.items.push_back(item);
        self.trim();
    }

    pub fn retract(&mut self, id: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|i| i.id != id);
        self.items.len() != before
    }

    pub fn configure(&mut self, config: PepConfig) {
        self.config = config;
        self.trim();
    }

    fn trim(&mut self) {
        while self.items.len() > self.keeps() {
            self.items.pop_front();
        }
    }

    pub fn last(&self) -> Option<&PepItem> {
        self.items.back()
    }
}

/// An account's nodes by name.
pub type PepNodes = BTreeMap<String, PepNode>;

/// Bytes of items an account keeps.
pub fn account_bytes(nodes: &PepNodes) -> usize {
    nodes.values().map(PepNode::bytes).sum()
}

/// A change to an account's PEP service; part of `state::Record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PepRecord {
    /// The node is made with this configuration, or takes it.
    Configured {
        config: PepConfig,
    },
    Published {
        item: PepItem,
    },
    Retracted {
        id: String,
    },
    Deleted,
    Subscribed {
        jid: String,
    },
    Unsubscribed {
        jid: String,
    },
}

pub fn apply(nodes: &mut PepNodes, node: &str, change: &PepRecord) {
    match change {
        PepRecord::Configured { config } => nodes
            .entry(node.to_string())
            .or_insert_with(|| PepNode::new(config.clone()))
            .configure(config.clone()),
        PepRecord::Published { item } => {
            if let Some(n) = nodes.get_mut(node) {
                n.publish(item.clone());
            }
        }
        PepRecord::Retracted { id } => {
            if let Some(n) = nodes.get_mut(node) {
                n.retract(id);
            }
        }
        PepRecord::Deleted => {
            nodes.remove(node);
        }
        PepRecord::Subscribed { jid } => {
            if let Some(n) = nodes.get_mut(node) {
                n.subscribers.insert(jid.clone());
            }
        }
        PepRecord::Unsubscribed { jid } => {
            if let Some(n) = nodes.get_mut(node) {
                n.subscribers.remove(jid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> PepItem {
        PepItem {
            id: id.into(),
            xml: format!("<x>{id}</x>"),
            stamp_ms: 0,
        }
    }

    #[test]
    fn a_node_keeps_its_newest_items_and_a_republished_id_moves_to_the_end() {
        let mut n = PepNode::new(PepConfig {
            max_items: 2,
            ..PepConfig::default()
        });
        for id in ["a", "b", "c"] {
            n.publish(item(id));
        }
        let ids: Vec<&str> = n.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        n.publish(item("b"));
        assert_eq!(n.last().unwrap().id, "b");
        assert!(n.retract("c") && !n.retract("c"));
        n.configure(PepConfig {
            persist_items: false,
            max_items: 10,
            ..PepConfig::default()
        });
        assert_eq!(n.items.len(), 1, "not persistent: the last item only");
    }
}
