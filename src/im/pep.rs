//! Personal eventing (XEP-0163) on every account: publish (with
//! publish-options), retract, items, node configuration and deletion
//! (XEP-0060's owner use cases), notifications to the sessions of the
//! owner and of its contacts that asked for them (`+notify` in their
//! capabilities, XEP-0115), and the last item of each node to such a
//! session when it comes online. Nodes, items and their bounds are in
//! `model::pep`; every change is a record.

use super::bookmarks;
use super::caps;
use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::model::pep::{self, Access, PepConfig, PepItem, PepNode, PepRecord, SendLast};
use crate::stanza;
use crate::state::Record;
use crate::xml::{ns, Element, Node as XmlNode};

pub const NS: &str = "http://jabber.org/protocol/pubsub";
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// What an account's PEP service does, for its disco#info.
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
];

/// A refused request: the stanza error, its type and the pubsub condition.
struct Refusal(&'static str, &'static str, Option<&'static str>);

impl Ctx<'_> {
    /// A pubsub request from `conn` to the PEP service of `owner` (a local
    /// account's bare JID).
    pub(crate) fn on_pep_iq(
        &mut self,
        conn: ConnId,
        el: &Element,
        payload: &Element,
        set: bool,
        owner: &Jid,
    ) {
        let Some(me) = self.requester(conn, el) else {
            return;
        };
        let Some(user) = self.local_account(owner) else {
            return self.bounce(conn, el, "item-not-found");
        };
        let own = me.to_bare() == *owner;
        let action = payload.elements().find(|e| e.name != "publish-options");
        let Some(action) = action.cloned() else {
            return self.bounce(conn, el, "bad-request");
        };
        // The old bookmarks node is a view of the new one; what else its
        // owner asks of it finds no node.
        let legacy = own
            && action.get_attr("node") == Some(bookmarks::LEGACY)
            && matches!(
                action.name.as_str(),
                "items" | "publish" | "create" | "retract"
            );
        let result = match (payload.ns.as_str(), action.name.as_str(), set) {
            _ if legacy => self.pep_legacy_bookmarks(&user, &action, set),
            (NS, "items", false) => self.pep_items(&user, &me, &action),
            (NS, "publish", true) if own => self.pep_publish(&user, payload, &action),
            (NS, "retract", true) if own => self.pep_retract(&user, &action),
            (NS_OWNER, "configure", false) if own => self.pep_config_form(&user, &action),
            (NS_OWNER, "configure", true) if own => self.pep_configure(&user, &action),
            (NS_OWNER, "delete", true) if own => self.pep_delete(&user, &action),
            (NS, "create", true) if own => self.pep_create(&user, payload, &action),
            (NS, "subscribe", true) => self.pep_subscribe(&user, &me, &action),
            (NS, "unsubscribe", true) => self.pep_unsubscribe(&user, &me, &action),
            (NS, "subscriptions", false) => {
                Ok(Some(self.pep_subscriptions_of(&user, &me, &action)))
            }
            (NS, "affiliations", false) => Ok(Some(self.pep_affiliations(&user, own, &action))),
            (NS_OWNER, "subscriptions", false) if own => self.pep_subscribers(&user, &action),
            (NS_OWNER, "subscriptions", true) if own => self.pep_drop_subscribers(&user, &action),
            (NS, "publish" | "retract" | "create", true) | (NS_OWNER, _, _) if !own => {
                Err(Refusal("forbidden", "auth", None))
            }
            _ => Err(Refusal(
                "feature-not-implemented",
                "cancel",
                Some("unsupported"),
            )),
        };
        match result {
            Ok(answer) => {
                let result = stanza::iq_result(el, &owner.to_string(), answer);
                // Items may come to megabytes: paced by what the client reads.
                self.send_paced(conn, result.to_xml(ns::CLIENT).into_bytes(), None);
                if action.is("subscribe", NS) {
                    self.pep_last_on_subscribe(conn, &user, &action);
                }
            }
            Err(Refusal(condition, kind, pubsub)) => {
                let Some(mut reply) = stanza::error_reply(el, condition, kind, &owner.to_string())
                else {
                    return;
                };
                if let Some(specific) = pubsub {
                    let mut c = Element::new(specific, NS_ERRORS);
                    if specific == "unsupported" {
                        c.set_attr("feature", unsupported_feature(&action.name));
                    }
                    if let Some(XmlNode::Element(error)) = reply.children.last_mut() {
                        error.children.push(XmlNode::Element(c));
                    }
                }
                self.send_el(conn, &reply);
            }
        }
    }

    fn pep_items(
        &mut self,
        user: &str,
        me: &Jid,
        items: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(items)?;
        let acc = &self.accounts[user];
        let Some(node) = acc.pep.get(&name) else {
            return Err(Refusal("item-not-found", "cancel", None));
        };
        if !may_see(acc, &self.owner_jid(user), me, &node.config) {
            return Err(not_visible(&node.config));
        }
        let wanted: Vec<&str> = items
            .elements()
            .filter(|i| i.is("item", NS))
            .filter_map(|i| i.get_attr("id"))
            .collect();
        let newest = items
            .get_attr("max_items")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let chosen: Vec<&PepItem> = if wanted.is_empty() {
            let skip = node.items.len().saturating_sub(newest);
            node.items.iter().skip(skip).collect()
        } else {
            node.items
                .iter()
                .filter(|i| wanted.contains(&i.id.as_str()))
                .collect()
        };
        let mut out = Element::new("items", NS).attr("node", name.clone());
        for item in chosen {
            out = out.child(item_element(item, NS));
        }
        Ok(Some(Element::new("pubsub", NS).child(out)))
    }

    fn pep_publish(
        &mut self,
        user: &str,
        pubsub: &Element,
        publish: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(publish)?;
        let item = publish.get_child("item", NS);
        let Some(payload) = item.and_then(|i| i.elements().next()) else {
            return Err(Refusal("bad-request", "modify", Some("payload-required")));
        };
        let id = match item.and_then(|i| i.get_attr("id")) {
            Some(id) if id.len() > pep::MAX_NAME_BYTES => {
                return Err(Refusal("bad-request", "modify", Some("item-forbidden")))
            }
            Some(id) => id.to_string(),
            None => self.random_item_id(),
        };
        let options = pubsub
            .get_child("publish-options", NS)
            .and_then(|o| o.get_child("x", ns::DATA));
        let acc = &self.accounts[user];
        let existing = acc.pep.get(&name);
        let config = match (existing, options) {
            (Some(node), Some(x)) => {
                // Preconditions: the node must be as the options say.
                let wanted = configured(node.config.clone(), x, PUBLISH_OPTIONS)
                    .map_err(|_| Refusal("conflict", "cancel", Some("precondition-not-met")))?;
                if wanted != node.config {
                    return Err(Refusal("conflict", "cancel", Some("precondition-not-met")));
                }
                None
            }
            (Some(_), None) => None,
            (None, options) => {
                if acc.pep.len() >= pep::NODES_PER_ACCOUNT {
                    return Err(Refusal("resource-constraint", "wait", None));
                }
                let config = match options {
                    Some(x) => configured(PepConfig::default(), x, PUBLISH_OPTIONS)
                        .map_err(|_| Refusal("conflict", "cancel", Some("precondition-not-met")))?,
                    None => PepConfig::default(),
                };
                Some(config)
            }
        };
        let item = PepItem {
            id: id.clone(),
            xml: payload.to_xml(ns::CLIENT),
            stamp_ms: self.now.unix_ms,
        };
        let keeps = config
            .as_ref()
            .or(existing.map(|n| &n.config))
            .cloned()
            .unwrap_or_default();
        if !self.pep_fits(user, &name, &keeps, &item) {
            return Err(Refusal("resource-constraint", "wait", None));
        }
        if let Some(config) = config {
            self.commit_pep(user, &name, PepRecord::Configured { config });
        }
        let event = pep_event_items(&name, &item);
        self.commit_pep(user, &name, PepRecord::Published { item });
        self.pep_notify(user, &name, event, None);
        if name == bookmarks::NODE {
            self.notify_legacy_bookmarks(user);
        }
        let published = Element::new("publish", NS)
            .attr("node", name)
            .child(Element::new("item", NS).attr("id", id));
        Ok(Some(Element::new("pubsub", NS).child(published)))
    }

    /// The XEP-0048 PEP node, made from the XEP-0402 one and written
    /// into it.
    fn pep_legacy_bookmarks(
        &mut self,
        user: &str,
        action: &Element,
        set: bool,
    ) -> Result<Option<Element>, Refusal> {
        let node = bookmarks::LEGACY;
        match (action.name.as_str(), set) {
            ("items", false) => {
                let item = Element::new("item", NS)
                    .attr("id", "current")
                    .child(self.legacy_bookmarks(user));
                let items = Element::new("items", NS).attr("node", node).child(item);
                Ok(Some(Element::new("pubsub", NS).child(items)))
            }
            ("publish", true) => {
                let storage = action
                    .get_child("item", NS)
                    .and_then(|i| i.get_child("storage", bookmarks::LEGACY));
                let Some(storage) = storage else {
                    return Err(Refusal("bad-request", "modify", Some("invalid-payload")));
                };
                self.set_legacy_bookmarks(user, storage)
                    .map_err(|condition| Refusal(condition, "wait", None))?;
                let published = Element::new("publish", NS)
                    .attr("node", node)
                    .child(Element::new("item", NS).attr("id", "current"));
                Ok(Some(Element::new("pubsub", NS).child(published)))
            }
            _ => Err(Refusal("not-allowed", "cancel", None)),
        }
    }

    fn pep_retract(&mut self, user: &str, retract: &Element) -> Result<Option<Element>, Refusal> {
        let name = node_name(retract)?;
        let Some(id) = retract.get_child("item", NS).and_then(|i| i.get_attr("id")) else {
            return Err(Refusal("bad-request", "modify", Some("item-required")));
        };
        let id = id.to_string();
        let node = self.accounts[user].pep.get(&name);
        if !node.is_some_and(|n| n.items.iter().any(|i| i.id == id)) {
            return Err(Refusal("item-not-found", "cancel", None));
        }
        // XEP-0060 §7.2.2.1: asked for, or the node's configuration.
        let notify = matches!(retract.get_attr("notify"), Some("true" | "1"))
            || node.is_some_and(|n| n.config.notify_retract);
        self.commit_pep(user, &name, PepRecord::Retracted { id: id.clone() });
        if notify {
            let event = Element::new("items", NS_EVENT)
                .attr("node", name.clone())
                .child(Element::new("retract", NS_EVENT).attr("id", id));
            self.pep_notify(user, &name, event, None);
        }
        if name == bookmarks::NODE {
            self.notify_legacy_bookmarks(user);
        }
        Ok(None)
    }

    /// An explicit subscription (XEP-0060 §6.1) by `me`, for its bare JID
    /// (every session) or one full JID.
    fn pep_subscribe(
        &mut self,
        user: &str,
        me: &Jid,
        subscribe: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(subscribe)?;
        if me.domain() != self.cfg.domain {
            // Users at other nodes follow through their presence
            // subscription (+notify), which crosses once per node.
            return Err(Refusal("not-allowed", "cancel", Some("closed-node")));
        }
        let jid = subscriber_jid(me, subscribe)?;
        let acc = &self.accounts[user];
        let Some(node) = acc.pep.get(&name) else {
            return Err(Refusal("item-not-found", "cancel", None));
        };
        if !may_see(acc, &self.owner_jid(user), me, &node.config) {
            return Err(not_visible(&node.config));
        }
        if !node.subscribers.contains(&jid) {
            let parsed = Jid::parse(&jid).map_err(|_| Refusal("bad-request", "modify", None))?;
            if parsed.resource().is_some() && self.bound.conn_of_full(&parsed).is_none() {
                // A session of its own that is here now, not a made-up one.
                return Err(Refusal("bad-request", "modify", Some("invalid-jid")));
            }
            let held = self.subscriptions_held(me);
            let bare = |s: &String| Jid::parse(s).map(|j| j.to_bare()).ok();
            let mine = node
                .subscribers
                .iter()
                .filter(|s| bare(s).as_ref() == Some(&me.to_bare()))
                .count();
            let subscribers: std::collections::BTreeSet<Jid> =
                node.subscribers.iter().filter_map(bare).collect();
            let new_subscriber = mine == 0;
            if (new_subscriber && subscribers.len() >= pep::SUBSCRIBERS_PER_NODE)
                || mine >= pep::SUBSCRIPTIONS_PER_SUBSCRIBER
                || held >= pep::SUBSCRIPTIONS_PER_ACCOUNT
            {
                return Err(Refusal(
                    "policy-violation",
                    "wait",
                    Some("too-many-subscriptions"),
                ));
            }
            let change = PepRecord::Subscribed { jid: jid.clone() };
            self.commit_pep(user, &name, change);
        }
        let subscription = Element::new("subscription", NS)
            .attr("node", name)
            .attr("jid", jid)
            .attr("subscription", "subscribed");
        Ok(Some(Element::new("pubsub", NS).child(subscription)))
    }

    /// A deleted account's explicit subscriptions go with it (a new
    /// account of the same name starts with none).
    pub(crate) fn forget_subscriptions_of(&mut self, user: &str) {
        let gone = self.owner_jid(user);
        let mut ended = Vec::new();
        for (owner, acc) in self.accounts.iter() {
            for (name, node) in &acc.pep {
                for s in &node.subscribers {
                    if Jid::parse(s).is_ok_and(|j| j.to_bare() == gone) {
                        ended.push((owner.clone(), name.clone(), s.clone()));
                    }
                }
            }
        }
        for (owner, name, jid) in ended {
            self.commit_pep(&owner, &name, PepRecord::Unsubscribed { jid });
        }
    }

    /// Explicit subscriptions `me`'s account holds, on every account.
    fn subscriptions_held(&self, me: &Jid) -> usize {
        let bare = me.to_bare();
        self.accounts
            .values()
            .flat_map(|a| a.pep.values())
            .flat_map(|n| &n.subscribers)
            .filter(|s| Jid::parse(s).is_ok_and(|j| j.to_bare() == bare))
            .count()
    }

    /// The last item, to the session that just subscribed (`on_sub`).
    fn pep_last_on_subscribe(&mut self, conn: ConnId, user: &str, subscribe: &Element) {
        let Some(name) = subscribe.get_attr("node") else {
            return;
        };
        let Some(node) = self.accounts[user].pep.get(name) else {
            return;
        };
        let Some(item) = node
            .last()
            .filter(|_| node.config.send_last != SendLast::Never)
        else {
            return;
        };
        let (event, stamp) = (pep_event_items(name, item), item.stamp_ms);
        self.pep_notify(user, name, event, Some((conn, stamp)));
    }

    fn pep_unsubscribe(
        &mut self,
        user: &str,
        me: &Jid,
        unsubscribe: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(unsubscribe)?;
        let jid = subscriber_jid(me, unsubscribe)?;
        let Some(node) = self.accounts[user].pep.get(&name) else {
            return Err(Refusal("item-not-found", "cancel", None));
        };
        if !node.subscribers.contains(&jid) {
            return Err(Refusal(
                "unexpected-request",
                "cancel",
                Some("not-subscribed"),
            ));
        }
        self.commit_pep(user, &name, PepRecord::Unsubscribed { jid });
        Ok(None)
    }

    /// `me`'s subscriptions to `user`'s nodes (XEP-0060 §5.6).
    fn pep_subscriptions_of(&self, user: &str, me: &Jid, request: &Element) -> Element {
        let bare = me.to_bare();
        let only = request.get_attr("node");
        let mut list = Element::new("subscriptions", NS);
        for (name, node) in &self.accounts[user].pep {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            for jid in &node.subscribers {
                if Jid::parse(jid).is_ok_and(|j| j.to_bare() == bare) {
                    list = list.child(
                        Element::new("subscription", NS)
                            .attr("node", name.clone())
                            .attr("jid", jid.clone())
                            .attr("subscription", "subscribed"),
                    );
                }
            }
        }
        Element::new("pubsub", NS).child(list)
    }

    /// The owner owns every node; nobody else has an affiliation.
    fn pep_affiliations(&self, user: &str, own: bool, request: &Element) -> Element {
        let only = request.get_attr("node");
        let mut list = Element::new("affiliations", NS);
        if own {
            for name in self.accounts[user].pep.keys() {
                if only.is_none_or(|o| o == name) {
                    list = list.child(
                        Element::new("affiliation", NS)
                            .attr("node", name.clone())
                            .attr("affiliation", "owner"),
                    );
                }
            }
        }
        Element::new("pubsub", NS).child(list)
    }

    /// The owner's view of a node's subscribers (XEP-0060 §8.8.1).
    fn pep_subscribers(&self, user: &str, request: &Element) -> Result<Option<Element>, Refusal> {
        let name = node_name(request)?;
        let Some(node) = self.accounts[user].pep.get(&name) else {
            return Err(Refusal("item-not-found", "cancel", None));
        };
        let mut list = Element::new("subscriptions", NS_OWNER).attr("node", name);
        for jid in &node.subscribers {
            list = list.child(
                Element::new("subscription", NS_OWNER)
                    .attr("jid", jid.clone())
                    .attr("subscription", "subscribed"),
            );
        }
        Ok(Some(Element::new("pubsub", NS_OWNER).child(list)))
    }

    /// The owner ends subscriptions (XEP-0060 §8.8.2; `none` is the one
    /// change an owner may make to another's subscription here).
    fn pep_drop_subscribers(
        &mut self,
        user: &str,
        request: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(request)?;
        let Some(node) = self.accounts[user].pep.get(&name) else {
            return Err(Refusal("item-not-found", "cancel", None));
        };
        let mut dropped = Vec::new();
        for s in request
            .elements()
            .filter(|e| e.is("subscription", NS_OWNER))
        {
            match (s.get_attr("jid"), s.get_attr("subscription")) {
                (Some(jid), Some("none")) => {
                    if node.subscribers.contains(jid) {
                        dropped.push(jid.to_string());
                    }
                }
                _ => return Err(Refusal("not-acceptable", "modify", None)),
            }
        }
        for jid in dropped {
            self.commit_pep(user, &name, PepRecord::Unsubscribed { jid });
        }
        Ok(None)
    }

    /// An explicit `<create/>` (XEP-0060 §8.1), with its configuration.
    fn pep_create(
        &mut self,
        user: &str,
        pubsub: &Element,
        create: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(create)?;
        let acc = &self.accounts[user];
        if acc.pep.contains_key(&name) {
            return Err(Refusal("conflict", "cancel", None));
        }
        if acc.pep.len() >= pep::NODES_PER_ACCOUNT {
            return Err(Refusal("resource-constraint", "wait", None));
        }
        let form = pubsub
            .get_child("configure", NS)
            .and_then(|c| c.get_child("x", ns::DATA));
        let config = match form {
            Some(x) => configured(PepConfig::default(), x, NODE_CONFIG)
                .map_err(|_| Refusal("not-acceptable", "modify", None))?,
            None => PepConfig::default(),
        };
        self.commit_pep(user, &name, PepRecord::Configured { config });
        Ok(None)
    }

    fn pep_delete(&mut self, user: &str, delete: &Element) -> Result<Option<Element>, Refusal> {
        let name = node_name(delete)?;
        if !self.accounts[user].pep.contains_key(&name) {
            return Err(Refusal("item-not-found", "cancel", None));
        }
        let event = Element::new("delete", NS_EVENT).attr("node", name.clone());
        // Told while the node (and who may see it) is still known.
        self.pep_notify(user, &name, event, None);
        self.commit_pep(user, &name, PepRecord::Deleted);
        if name == bookmarks::NODE {
            self.notify_legacy_bookmarks(user);
        }
        Ok(None)
    }

    fn pep_config_form(
        &mut self,
        user: &str,
        configure: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(configure)?;
        let Some(node) = self.accounts[user].pep.get(&name) else {
            return Err(Refusal("item-not-found", "cancel", None));
        };
        let form = config_form(&node.config);
        let configure = Element::new("configure", NS_OWNER)
            .attr("node", name)
            .child(form);
        Ok(Some(Element::new("pubsub", NS_OWNER).child(configure)))
    }

    fn pep_configure(
        &mut self,
        user: &str,
        configure: &Element,
    ) -> Result<Option<Element>, Refusal> {
        let name = node_name(configure)?;
        let Some(node) = self.accounts[user].pep.get(&name) else {
            return Err(Refusal("item-not-found", "cancel", None));
        };
        let Some(x) = configure.get_child("x", ns::DATA) else {
            return Err(Refusal("bad-request", "modify", None));
        };
        if x.get_attr("type") == Some("cancel") {
            return Ok(None);
        }
        let config = configured(node.config.clone(), x, NODE_CONFIG)
            .map_err(|_| Refusal("not-acceptable", "modify", None))?;
        self.commit_pep(user, &name, PepRecord::Configured { config });
        Ok(None)
    }

    /// Whether `item`, published to `user`'s node `node` (configured as
    /// `config`), keeps the account and all accounts within their bytes.
    pub(super) fn pep_fits(
        &self,
        user: &str,
        node: &str,
        config: &PepConfig,
        item: &PepItem,
    ) -> bool {
        let existing = self.accounts.get(user).and_then(|a| a.pep.get(node));
        let after = bytes_after_publish(existing, config, item);
        self.pep_bytes_fit(user, node, after)
    }

    /// Whether `user`'s node `node`, holding `after` bytes of items, keeps
    /// the account and all accounts within their bytes.
    pub(super) fn pep_bytes_fit(&self, user: &str, node: &str, after: usize) -> bool {
        let Some(acc) = self.accounts.get(user) else {
            return false;
        };
        let before = acc.pep.get(node).map_or(0, PepNode::bytes);
        let account = pep::account_bytes(&acc.pep) - before + after;
        let all: usize = self
            .accounts
            .values()
            .map(|a| pep::account_bytes(&a.pep))
            .sum();
        account <= pep::BYTES_PER_ACCOUNT && all - before + after <= pep::BYTES_TOTAL
    }

    /// The bare JID of the local account `user`.
    pub(super) fn owner_jid(&self, user: &str) -> Jid {
        Jid::parse(&format!("{user}@{}", self.cfg.domain)).expect("a local account's JID")
    }

    pub(super) fn commit_pep(&mut self, user: &str, node: &str, change: PepRecord) {
        self.commit(Record::Pep {
            user: user.to_string(),
            node: node.to_string(),
            change,
        });
    }

    fn random_item_id(&mut self) -> String {
        crate::common::random_id(&mut self.rng)
    }

    /// Tell the sessions that may see `user`'s node `node` and asked for it
    /// (`only`: that session alone) of `event` (an `items` or `delete`
    /// element of the event namespace); `delay`: when it was published.
    pub(super) fn pep_notify(
        &mut self,
        user: &str,
        node: &str,
        event: Element,
        only: Option<(ConnId, u64)>,
    ) {
        let Some(acc) = self.accounts.get(user) else {
            return;
        };
        let Some(n) = acc.pep.get(node) else {
            return;
        };
        let mut owners_of_sight = vec![user.to_string()];
        if n.config.access != Access::Whitelist {
            // Open nodes too: those subscribed to the presence are who asked.
            for (contact, item) in &acc.roster {
                if item.subscription.has_from() {
                    if let Some(local) = Jid::parse(contact)
                        .ok()
                        .and_then(|j| self.local_account(&j))
                    {
                        if self.blocked_between(user, &local) {
                            continue;
                        }
                        owners_of_sight.push(local);
                    }
                }
            }
        }
        let targets: Vec<ConnId> = match only {
            Some((c, _)) => vec![c],
            None => {
                let mut targets: Vec<ConnId> = owners_of_sight
                    .iter()
                    .flat_map(|u| self.bound.conns_of(u))
                    .filter(|c| self.bound.resources.get(c).is_some_and(|r| r.wants(node)))
                    .collect();
                // Explicit subscribers, whatever their capabilities, while
                // they may still see the node.
                for s in n.subscribers.iter().filter_map(|s| Jid::parse(s).ok()) {
                    let Some(local) = self.local_account(&s) else {
                        continue;
                    };
                    if !may_see(acc, &self.owner_jid(user), &s, &n.config)
                        || self.blocked_between(user, &local)
                    {
                        continue;
                    }
                    let conns = match s.resource() {
                        Some(_) => self.bound.conn_of_full(&s).into_iter().collect(),
                        None => self.bound.conns_of(&local),
                    };
                    for c in conns {
                        if !targets.contains(&c) {
                            targets.push(c);
                        }
                    }
                }
                targets
            }
        };
        let remote = only.is_none() && n.config.access != Access::Whitelist;
        self.send_pep_event(user, &targets, &event, only.map(|(_, stamp)| stamp));
        if remote {
            self.pep_notify_remote(user, &event);
        }
    }

    /// `event` of `user`'s node to each other node where contacts see
    /// `user`'s presence: one copy a node, which hands it to those of its
    /// sessions that asked (queued durably: a device list must not be
    /// missed).
    fn pep_notify_remote(&mut self, user: &str, event: &Element) {
        let from = self.user_jid(user);
        for domain in self.remote_audience(user) {
            let (Ok(to), Some(hidden)) = (Jid::parse(&domain), self.hidden_at(user, &domain))
            else {
                continue;
            };
            let mut m = Element::new("message", ns::CLIENT)
                .attr("from", from.clone())
                .attr("to", domain)
                .attr("type", "headline")
                .child(Element::new("event", NS_EVENT).child(event.clone()));
            if !hidden.is_empty() {
                let mut list = Element::new("hidden", super::remote_presence::NS_NETWORK);
                for j in hidden {
                    list = list.child(
                        Element::new("item", super::remote_presence::NS_NETWORK).attr("jid", j),
                    );
                }
                m = m.child(list);
            }
            self.send_remote(&to, m, false);
        }
    }

    /// A notification from `owner` at another node, addressed to this
    /// node: to the sessions of its contacts here that asked for the node.
    pub(super) fn pep_event_from_link(&mut self, el: &Element, owner: &Jid) {
        let Some(node) = el
            .get_child("event", NS_EVENT)
            .and_then(|e| e.elements().next())
            .and_then(|e| e.get_attr("node"))
            .map(str::to_string)
        else {
            return;
        };
        let bare = owner.to_bare().to_string();
        let hidden = super::remote_presence::hidden_from(el);
        let el = super::remote_presence::without_hidden(el);
        let watchers: Vec<String> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.roster.get(&bare).is_some_and(|i| i.subscription.has_to()))
            .filter(|(_, a)| !super::blocking::blocks(a, owner))
            .map(|(u, _)| u.clone())
            .filter(|u| !hidden.contains(&self.user_jid(u)))
            .collect();
        for user in watchers {
            for c in self.bound.conns_of(&user) {
                let Some(r) = self.bound.resources.get(&c).filter(|r| r.wants(&node)) else {
                    continue;
                };
                let mut m = el.clone();
                m.set_attr("to", r.jid.to_string());
                self.send_el(c, &m);
            }
        }
    }

    /// `event` from `user`'s PEP service to the sessions `targets`;
    /// `delay`: a last item sent later, stamped with when it was published.
    pub(super) fn send_pep_event(
        &mut self,
        user: &str,
        targets: &[ConnId],
        event: &Element,
        delay: Option<u64>,
    ) {
        let from = format!("{user}@{}", self.cfg.domain);
        for &c in targets {
            let Some(to) = self.bound.jid_of(c).map(Jid::to_string) else {
                continue;
            };
            let mut m = Element::new("message", ns::CLIENT)
                .attr("from", from.clone())
                .attr("to", to)
                .attr("type", "headline")
                .child(Element::new("event", NS_EVENT).child(event.clone()));
            match delay {
                // The last items of many nodes at once: paced.
                Some(stamp) => {
                    m = m.child(stanza::delay(&from, stamp));
                    self.send_paced(c, m.to_xml(ns::CLIENT).into_bytes(), None);
                }
                None => self.send_el(c, &m),
            }
        }
    }

    /// An available presence from `conn`: what it supports is looked up
    /// by its capabilities (asked of it if not known), and once known the
    /// last items it may see and asked for go to it.
    pub(crate) fn pep_presence(&mut self, conn: ConnId, el: &Element) {
        let announced = caps::announced(el);
        let Some(r) = self.bound.resources.get_mut(&conn) else {
            return;
        };
        if r.caps != announced {
            r.caps = announced;
            r.features = None;
        }
        self.learn_caps(conn);
        self.pep_prime(conn);
    }

    /// What the client of `conn` supports, from the cache or asked of it
    /// (each session asks its own: one that never answers holds up no
    /// other).
    pub(crate) fn learn_caps(&mut self, conn: ConnId) {
        let Some(r) = self.bound.resources.get_mut(&conn) else {
            return;
        };
        let Some((caps, _)) = r.caps.clone().filter(|_| r.features.is_none()) else {
            return;
        };
        if let Some(features) = self.caps.get(&caps) {
            r.features = Some(features);
            return;
        }
        let to = r.jid.to_string();
        let from = self.cfg.domain.clone();
        if let Some(q) = self.caps.ask(conn, &caps, &from, &to) {
            self.send_el(conn, &q);
        }
    }

    /// An iq result or error from `conn` to the server: an answer to a
    /// capabilities query, if it is one.
    pub(crate) fn on_caps_answer(&mut self, conn: ConnId, el: &Element) {
        let hash = self
            .bound
            .resources
            .get(&conn)
            .and_then(|r| r.caps.as_ref())
            .map_or("sha-1".to_string(), |(_, h)| h.clone());
        let Some((caps, features)) = self.caps.answered(conn, el, &hash) else {
            return;
        };
        // Every session that announced the same capabilities learns them.
        let waiting: Vec<ConnId> = self
            .bound
            .resources
            .iter()
            .filter(|(c, r)| {
                r.features.is_none()
                    && r.caps.as_ref().is_some_and(|(s, _)| *s == caps)
                    && (**c == conn || self.caps.get(&caps).is_some())
            })
            .map(|(c, _)| *c)
            .collect();
        for c in waiting {
            if let Some(r) = self.bound.resources.get_mut(&c) {
                r.features = Some(features.clone().unwrap_or_default());
            }
            self.pep_prime(c);
        }
    }

    /// The last item of each node `conn` may see and asked for, once.
    fn pep_prime(&mut self, conn: ConnId) {
        let Some(r) = self.bound.resources.get(&conn) else {
            return;
        };
        if r.pep_primed || r.features.is_none() || r.presence.is_none() {
            return;
        }
        let me = r.jid.clone();
        let Some(user) = me.local().map(str::to_string) else {
            return;
        };
        let mut owners = vec![user.clone()];
        if let Some(acc) = self.accounts.get(&user) {
            for (contact, item) in &acc.roster {
                if item.subscription.has_to() {
                    if let Some(local) = Jid::parse(contact)
                        .ok()
                        .and_then(|j| self.local_account(&j))
                    {
                        if self.blocked_between(&user, &local) {
                            continue;
                        }
                        owners.push(local);
                    }
                }
            }
        }
        let mut last = Vec::new();
        for owner in owners {
            let Some(acc) = self.accounts.get(&owner) else {
                continue;
            };
            for (name, node) in &acc.pep {
                let wanted = r.wants(name) && node.config.send_last == SendLast::OnSubAndPresence;
                if let Some(item) = node
                    .last()
                    .filter(|_| wanted && may_see(acc, &self.owner_jid(&owner), &me, &node.config))
                {
                    last.push((owner.clone(), name.clone(), item.clone()));
                }
            }
        }
        if let Some(r) = self.bound.resources.get_mut(&conn) {
            r.pep_primed = true;
        }
        for (owner, name, item) in last {
            let event = pep_event_items(&name, &item);
            self.pep_notify(&owner, &name, event, Some((conn, item.stamp_ms)));
        }
    }
}

/// The pubsub feature a request needs (XEP-0060 §10), for `<unsupported/>`.
fn unsupported_feature(action: &str) -> &str {
    match action {
        "purge" => "purge-nodes",
        "default" => "retrieve-default",
        "subscriptions" => "retrieve-subscriptions",
        "affiliations" => "retrieve-affiliations",
        "subscribe" | "unsubscribe" | "options" => "subscribe",
        other => other,
    }
}

/// Whether `who` may read the node of `owner` (its account `acc`).
pub(super) fn may_see(
    acc: &crate::state::Account,
    owner: &Jid,
    who: &Jid,
    config: &PepConfig,
) -> bool {
    // The owner: the same account, not one of the same name elsewhere.
    if who.to_bare() == owner.to_bare() {
        return true;
    }
    match config.access {
        Access::Open => true,
        Access::Presence => acc
            .roster
            .get(&who.to_bare().to_string())
            .is_some_and(|i| i.subscription.has_from()),
        Access::Whitelist => false,
    }
}

/// Why someone who may not see a node is refused (XEP-0060 §6.1.3).
fn not_visible(config: &PepConfig) -> Refusal {
    match config.access {
        Access::Presence => Refusal(
            "not-authorized",
            "auth",
            Some("presence-subscription-required"),
        ),
        _ => Refusal("not-allowed", "cancel", Some("closed-node")),
    }
}

/// The JID a (un)subscription is for: the requester's own, bare or full.
fn subscriber_jid(me: &Jid, request: &Element) -> Result<String, Refusal> {
    let jid = request
        .get_attr("jid")
        .and_then(|j| Jid::parse(j).ok())
        .ok_or(Refusal("bad-request", "modify", Some("jid-required")))?;
    if jid.to_bare() != me.to_bare() {
        return Err(Refusal("bad-request", "modify", Some("invalid-jid")));
    }
    Ok(jid.to_string())
}

fn node_name(el: &Element) -> Result<String, Refusal> {
    match el.get_attr("node") {
        Some(n) if !n.is_empty() && n.len() <= pep::MAX_NAME_BYTES => Ok(n.to_string()),
        Some(n) if !n.is_empty() => Err(Refusal("not-acceptable", "modify", None)),
        _ => Err(Refusal("bad-request", "modify", Some("nodeid-required"))),
    }
}

/// A notification of `item`, published to `node`.
pub(super) fn pep_event_items(node: &str, item: &PepItem) -> Element {
    Element::new("items", NS_EVENT)
        .attr("node", node)
        .child(item_element(item, NS_EVENT))
}

pub(super) fn item_element(item: &PepItem, namespace: &str) -> Element {
    let mut el = Element::new("item", namespace).attr("id", item.id.clone());
    if let Ok(payload) = crate::xml::parse_fragment(&item.xml) {
        el = el.child(payload);
    }
    el
}

/// Bytes the node keeps once `item` is published under `config`.
pub(super) fn bytes_after_publish(
    node: Option<&PepNode>,
    config: &PepConfig,
    item: &PepItem,
) -> usize {
    let mut after = PepNode::new(config.clone());
    if let Some(n) = node {
        after.items = n.items.clone();
    }
    after.publish(item.clone());
    after.bytes()
}

/// `config` changed by the form `x` (of `form_type`); unknown fields are
/// let be, a bad value is an error.
fn configured(mut config: PepConfig, x: &Element, form_type: &str) -> Result<PepConfig, ()> {
    for field in x.elements().filter(|f| f.is("field", ns::DATA)) {
        let Some(var) = field.get_attr("var") else {
            continue;
        };
        let value = field
            .get_child("value", ns::DATA)
            .map(|v| v.text_content())
            .unwrap_or_default();
        let flag = || match value.as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(()),
        };
        match var {
            "FORM_TYPE" if value != form_type && value != NODE_CONFIG => return Err(()),
            "pubsub#access_model" => {
                config.access = match value.as_str() {
                    "open" => Access::Open,
                    "presence" => Access::Presence,
                    "whitelist" => Access::Whitelist,
                    _ => return Err(()),
                }
            }
            "pubsub#persist_items" => config.persist_items = flag()?,
            "pubsub#notify_retract" => config.notify_retract = flag()?,
            "pubsub#max_items" => {
                config.max_items = match value.as_str() {
                    "max" => pep::MAX_ITEMS,
                    n => n.parse::<u32>().map_err(|_| ())?.clamp(1, pep::MAX_ITEMS),
                }
            }
            "pubsub#send_last_published_item" => {
                config.send_last = match value.as_str() {
                    "never" => SendLast::Never,
                    "on_sub" => SendLast::OnSub,
                    "on_sub_and_presence" => SendLast::OnSubAndPresence,
                    _ => return Err(()),
                }
            }
            _ => {}
        }
    }
    Ok(config)
}

fn config_form(c: &PepConfig) -> Element {
    let field = |var: &str, kind: &str, value: String| {
        Element::new("field", ns::DATA)
            .attr("var", var)
            .attr("type", kind)
            .child(Element::new("value", ns::DATA).text(value))
    };
    let access = match c.access {
        Access::Open => "open",
        Access::Presence => "presence",
        Access::Whitelist => "whitelist",
    };
    let send_last = match c.send_last {
        SendLast::Never => "never",
        SendLast::OnSub => "on_sub",
        SendLast::OnSubAndPresence => "on_sub_and_presence",
    };
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    let mut access_field = field("pubsub#access_model", "list-single", access.into());
    for option in ["open", "presence", "whitelist"] {
        access_field = access_field.child(
            Element::new("option", ns::DATA).child(Element::new("value", ns::DATA).text(option)),
        );
    }
    Element::new("x", ns::DATA)
        .attr("type", "form")
        .child(field("FORM_TYPE", "hidden", NODE_CONFIG.into()))
        .child(access_field)
        .child(field(
            "pubsub#persist_items",
            "boolean",
            flag(c.persist_items),
        ))
        .child(field(
            "pubsub#max_items",
            "text-single",
            c.max_items.to_string(),
        ))
        .child(field(
            "pubsub#send_last_published_item",
            "list-single",
            send_last.into(),
        ))
        .child(field(
            "pubsub#notify_retract",
            "boolean",
            flag(c.notify_retract),
        ))
}
