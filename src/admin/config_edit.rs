//! Edits to the configuration file from the console or the web page: one
//! key at a time, keeping the operator's comments and layout (toml_edit),
//! and validated as a whole before anything is written.

use crate::config::Config;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

/// A validated edit, ready to be written to the file.
#[derive(Debug)]
pub struct Edit {
    pub text: String,
    pub config: Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The running node takes the new value at once.
    Live,
    /// Saved; the node uses it after a restart.
    Restart,
}

/// Whether the running node can take `new` as it runs: only limits, timeouts
/// and the log level differ. Listen addresses, certificates, the domain and
/// the links are the shell's (sockets, TLS) and wait for a restart.
pub fn effect(running: &Config, new: &Config) -> Effect {
    let mut masked = new.clone();
    masked.log_level = running.log_level;
    let (c, r) = (&mut masked.c2s, &running.c2s);
    c.max_stanza_bytes = r.max_stanza_bytes;
    c.max_depth = r.max_depth;
    c.max_attrs = r.max_attrs;
    c.handshake_timeout = r.handshake_timeout;
    c.stanza_timeout = r.stanza_timeout;
    c.keepalive_interval = r.keepalive_interval;
    c.resume_timeout = r.resume_timeout;
    c.max_resources_per_user = r.max_resources_per_user;
    c.allow_registration = r.allow_registration;
    c.max_unauthenticated = r.max_unauthenticated;
    c.max_unauthenticated_per_address = r.max_unauthenticated_per_address;
    c.offline_limit = r.offline_limit;
    c.offline_bytes_per_account = r.offline_bytes_per_account;
    c.offline_bytes_total = r.offline_bytes_total;
    c.archive_messages_per_account = r.archive_messages_per_account;
    c.archive_bytes_per_account = r.archive_bytes_per_account;
    c.archive_days = r.archive_days;
    c.archive_bytes_total = r.archive_bytes_total;
    c.roster_limit = r.roster_limit;
    masked.muc.max_rooms = running.muc.max_rooms;
    masked.muc.max_occupants = running.muc.max_occupants;
    masked.muc.archive_messages = running.muc.archive_messages;
    masked.muc.archive_bytes = running.muc.archive_bytes;
    masked.muc.archive_bytes_total = running.muc.archive_bytes_total;
    masked.muc.rooms_per_account = running.muc.rooms_per_account;
    masked.link.grace = running.link.grace;
    // Per-link timing applies from each link's next connection.
    for (m, r) in masked.upstream.iter_mut().zip(&running.upstream) {
        (m.keepalive, m.dead_after) = (r.keepalive, r.dead_after);
    }
    for (m, r) in masked.link.peer.iter_mut().zip(&running.link.peer) {
        (m.keepalive, m.dead_after) = (r.keepalive, r.dead_after);
    }
    if masked.effective() == running.effective() {
        Effect::Live
    } else {
        Effect::Restart
    }
}

fn document(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>()
        .map_err(|e| format!("the configuration file does not parse: {e}"))
}

/// Show one setting as the node uses it (defaults filled in).
pub fn get(cfg: &Config, key: &str) -> Result<String, String> {
    let effective = document(&cfg.effective())?;
    let mut item: &Item = effective.as_item();
    for part in key.split('.') {
        item = item
            .get(part)
            .ok_or_else(|| format!("no setting {key:?} (or it is not set)"))?;
    }
    Ok(item.to_string().trim().to_string())
}

/// Set `key` (`name` or `table.name`) to `value` (a TOML value; bare words
/// are taken as strings).
pub fn set(text: &str, file: &str, key: &str, value: &str) -> Result<Edit, String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) || parts.len() > 2 {
        return Err(format!("{key:?} is not a setting; try e.g. c2s.listen"));
    }
    if key == "data_dir" {
        return Err("data_dir cannot be changed here: move the data and edit the file".into());
    }
    if matches!(parts[0], "upstream") || key.starts_with("link.peer") {
        return Err("use `upstream add|del` or `peer add|del` for links".into());
    }
    let value: Value = value
        .parse::<Value>()
        .unwrap_or_else(|_| Value::from(value));
    let mut doc = document(text)?;
    let table = match parts.as_slice() {
        [_] => doc.as_table_mut(),
        [t, _] => {
            let entry = doc.entry(t).or_insert(Item::Table(Table::new()));
            entry
                .as_table_mut()
                .ok_or_else(|| format!("[{t}] is not a table in the file"))?
        }
        _ => unreachable!("checked above"),
    };
    let name = parts[parts.len() - 1];
    // Keep the comment that decorates an existing key.
    match table.get_mut(name).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(name, Item::Value(value));
        }
    }
    finish(doc, file)
}

pub fn add_upstream(
    text: &str,
    file: &str,
    muc: &str,
    connect: &str,
    fingerprint: &str,
) -> Result<Edit, String> {
    let mut doc = document(text)?;
    let list = tables(&mut doc, &["upstream"])?;
    if list.iter().any(|t| same(t, "muc", muc)) {
        return Err(format!("{muc} is already an upstream; delete it first"));
    }
    let mut t = Table::new();
    t.insert("muc", toml_edit::value(muc));
    t.insert("connect", toml_edit::value(connect));
    t.insert("fingerprint", toml_edit::value(fingerprint));
    list.push(t);
    finish(doc, file)
}

pub fn add_peer(text: &str, file: &str, domain: &str, fingerprint: &str) -> Result<Edit, String> {
    let mut doc = document(text)?;
    let list = tables(&mut doc, &["link", "peer"])?;
    if list.iter().any(|t| same(t, "domain", domain)) {
        return Err(format!("{domain} is already a peer; delete it first"));
    }
    let mut t = Table::new();
    t.insert("domain", toml_edit::value(domain));
    t.insert("fingerprint", toml_edit::value(fingerprint));
    list.push(t);
    finish(doc, file)
}

pub fn del_upstream(text: &str, file: &str, muc: &str) -> Result<Edit, String> {
    remove(text, file, &["upstream"], "muc", muc)
}

pub fn del_peer(text: &str, file: &str, domain: &str) -> Result<Edit, String> {
    remove(text, file, &["link", "peer"], "domain", domain)
}

fn remove(text: &str, file: &str, path: &[&str], field: &str, name: &str) -> Result<Edit, String> {
    let mut doc = document(text)?;
    let list = tables(&mut doc, path)?;
    let before = list.len();
    list.retain(|t| !same(t, field, name));
    if list.len() == before {
        return Err(format!("no {} {name}", path.join(".")));
    }
    finish(doc, file)
}

fn same(t: &Table, field: &str, name: &str) -> bool {
    t.get(field)
        .and_then(Item::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(name))
}

/// The array of tables at `path` (`[[upstream]]`, `[[link.peer]]`), created if absent.
fn tables<'d>(doc: &'d mut DocumentMut, path: &[&str]) -> Result<&'d mut ArrayOfTables, String> {
    let mut table = doc.as_table_mut();
    for part in &path[..path.len() - 1] {
        let entry = table.entry(part).or_insert(Item::Table(Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("[{part}] is not a table in the file"))?;
    }
    let last = path[path.len() - 1];
    table
        .entry(last)
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or_else(|| format!("{} is not a list of [[{}]] tables", last, path.join(".")))
}

fn finish(doc: DocumentMut, file: &str) -> Result<Edit, String> {
    let text = doc.to_string();
    let config = Config::parse(&text, file).map_err(|e| e.0)?;
    Ok(Edit { text, config })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "# site settings\ndomain = \"site.example\" # ours\n\n[c2s]\nlisten = \"0.0.0.0:5222\"\n";
    const FPR: &str = "K1b4sOl5ChbtKVh1SZ2NtOXsAfdxNUQpx4LD7gy4EPE=";

    #[test]
    fn a_setting_changes_and_the_comments_stay() {
        let e = set(FILE, "o.toml", "domain", "other.example").unwrap();
        assert!(
            e.text.contains("domain = \"other.example\" # ours"),
            "{}",
            e.text
        );
        assert!(e.text.starts_with("# site settings"));
        assert_eq!(e.config.domain.0, "other.example");
        let running = Config::parse(FILE, "o.toml").unwrap();
        assert_eq!(effect(&running, &e.config), Effect::Restart);
        let e = set(FILE, "o.toml", "log_level", "debug").unwrap();
        assert_eq!(effect(&running, &e.config), Effect::Live);
        let e = set(&e.text, "o.toml", "muc.archive_messages", "50").unwrap();
        assert_eq!(effect(&running, &e.config), Effect::Live);
        let e = set(&e.text, "o.toml", "c2s.listen", "0.0.0.0:5333").unwrap();
        assert_eq!(effect(&running, &e.config), Effect::Restart);
        let e = set(FILE, "o.toml", "link.grace", "60").unwrap();
        assert_eq!(e.config.link.grace, 60);
        assert_eq!(get(&e.config, "link.grace").unwrap(), "60");
        assert_eq!(get(&e.config, "c2s.listen").unwrap(), "\"0.0.0.0:5222\"");
    }

    #[test]
    fn a_setting_that_would_break_the_node_is_refused() {
        let err = set(FILE, "o.toml", "domain", "bad domain!").unwrap_err();
        assert!(err.contains("invalid domain"), "{err}");
        let err = set(FILE, "o.toml", "c2s.listen", "nowhere").unwrap_err();
        assert!(err.contains("invalid socket address"), "{err}");
        let err = set(FILE, "o.toml", "c2s.colour", "blue").unwrap_err();
        assert!(err.contains("unknown field `colour`"), "{err}");
        let err = set(FILE, "o.toml", "link.grace", "\"soon\"").unwrap_err();
        assert!(err.contains("grace"), "{err}");
        assert!(set(FILE, "o.toml", "data_dir", "/tmp").is_err());
        assert!(set(FILE, "o.toml", "a.b.c", "1").is_err());
    }

    #[test]
    fn upstreams_and_peers_are_added_and_removed() {
        let e = add_upstream(
            FILE,
            "o.toml",
            "conference.hq.example",
            "hq.example:5270",
            FPR,
        )
        .unwrap();
        assert_eq!(e.config.upstream[0].connect, "hq.example:5270");
        assert!(add_upstream(&e.text, "o.toml", "conference.hq.example", "x:1", FPR).is_err());
        let err = add_upstream(FILE, "o.toml", "conference.hq.example", "hq", FPR).unwrap_err();
        assert!(err.contains("host:port"), "{err}");
        let e = del_upstream(&e.text, "o.toml", "conference.hq.example").unwrap();
        assert!(e.config.upstream.is_empty());
        let e = add_peer(FILE, "o.toml", "far.example", FPR).unwrap();
        assert_eq!(e.config.link.peer[0].domain.0, "far.example");
        assert!(add_peer(FILE, "o.toml", "far.example", "nope").is_err());
        assert!(del_peer(FILE, "o.toml", "far.example").is_err());
        assert!(del_peer(&e.text, "o.toml", "far.example")
            .unwrap()
            .config
            .link
            .peer
            .is_empty());
    }
}
