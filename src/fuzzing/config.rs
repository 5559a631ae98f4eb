//! The configuration parser and the console's/web page's config edits:
//! whatever is accepted must show (`outpost check`) as TOML that parses
//! back to the same settings.

use crate::admin::config_edit::{effect, get, set};
use crate::config::Config;

/// A file with comments, links both ways and most tables, for edits.
pub const CONFIG_FILE: &str = r#"# site settings
domain = "site.example" # ours
data_dir = "/var/lib/outpost"

[c2s]
listen = "0.0.0.0:5222"
max_stanza_bytes = 65536

[muc]
max_rooms = 50

[link]
listen = "0.0.0.0:5270"

[[link.peer]]
domain = "other.example"
fingerprint = "K1b4sOl5ChbtKVh1SZ2NtOXsAfdxNUQpx4LD7gy4EPE="

[[upstream]]
muc = "conference.hq.example"
connect = "hq.example:5270"
fingerprint = "u1JYjkXzqkQXN2s+SjA+yw5cVKDojQfkBDt+Ixh5FQY="

[admin]
http = "127.0.0.1:8080"
"#;

/// Input: a config file; or, starting with `=`, an edit `=key=value` to
/// [`CONFIG_FILE`].
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match text.strip_prefix('=') {
        Some(edit) => {
            let (key, value) = edit.split_once('=').unwrap_or((edit, ""));
            let running = Config::parse(CONFIG_FILE, "edited.toml").expect("the file is valid");
            let _ = get(&running, key);
            if let Ok(edited) = set(CONFIG_FILE, "edited.toml", key, value) {
                let reread = Config::parse(&edited.text, "edited.toml")
                    .expect("an accepted edit leaves a valid file");
                assert_eq!(reread.effective(), edited.config.effective());
                round_trip(&edited.config);
                let _ = effect(&running, &edited.config);
            }
        }
        None => {
            if let Ok(cfg) = Config::parse(&text, "fuzz.toml") {
                round_trip(&cfg);
            }
        }
    }
}

fn round_trip(cfg: &Config) {
    let shown = cfg.effective();
    let again = Config::parse(&shown, "effective.toml")
        .unwrap_or_else(|e| panic!("the effective settings do not parse: {e}\n{shown}"));
    assert_eq!(again.effective(), shown, "the effective settings changed");
    let _ = cfg.node_config();
}
