//! Where a file lives on the web: `{public_url}/files/{origin}/{id}/{name}`.
//! The path names the node the file was uploaded at, so any node of the
//! network can serve any file (fetching it over the link once), and a link
//! to another node's file can be rewritten to the local node by swapping
//! the part before the path.

use super::FileKey;
use crate::xml::{Element, Node as XmlNode};

pub const PREFIX: &str = "/files/";
const OOB: &str = "jabber:x:oob";
/// Longest file name kept, in bytes.
pub const MAX_NAME: usize = 255;

/// The path of a file, its name percent-encoded.
pub fn path(key: &FileKey, name: &str) -> String {
    format!("{PREFIX}{}/{}/{}", key.origin, key.id, encode(name))
}

/// A file's path, parsed: its key and its (decoded) name. None for
/// anything else, path tricks included (`..`, encoded slashes, odd ids).
pub fn parse_path(path: &str) -> Option<(FileKey, String)> {
    let rest = path.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let origin = parts.next()?;
    let id = parts.next()?;
    let name = decode(parts.next()?)?;
    if !is_domain(origin) || !is_id(id) || !is_name(&name) {
        return None;
    }
    let key = FileKey {
        origin: origin.to_string(),
        id: id.to_string(),
    };
    Some((key, name))
}

/// A key a peer may name: it becomes a path under `data_dir/files`.
pub fn is_key(key: &FileKey) -> bool {
    is_domain(&key.origin) && is_id(&key.id)
}

/// Ids are 32 lowercase hex digits (128 random bits).
pub fn is_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('.')
        && !d.contains("..")
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// A name a file may have: not empty, no path separators or control
/// characters, not `.` or `..`.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// Percent-encode a file name for a URL path or a header.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'?' | b'#' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Split a URL into the part before the path (`https://host:port`) and
/// the path (query and fragment kept with it).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let after_scheme = url.find("://")? + 3;
    let path_at = url[after_scheme..].find('/')? + after_scheme;
    Some((&url[..path_at], &url[path_at..]))
}

/// Rewrites links to other nodes' files so they point at this node.
pub struct Rewriter<'a> {
    /// This node's `public_url`.
    pub local: &'a str,
    pub domain: &'a str,
    /// Whether a domain is one of the network's (a link serves it).
    pub known: &'a dyn Fn(&str) -> bool,
}

impl Rewriter<'_> {
    /// The URL pointing here, if `url` is a file of the network served
    /// elsewhere.
    pub fn url(&self, url: &str) -> Option<(String, FileKey)> {
        let (base, rest) = split_url(url)?;
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return None;
        }
        let (key, _) = parse_path(rest)?;
        // This node's own files too: a room's archive from the master
        // names the master's copy of a file uploaded here.
        if key.origin != self.domain && !(self.known)(&key.origin) {
            return None;
        }
        // Query and fragment (an aesgcm key) stay with the path.
        let rewritten = if base == self.local {
            url.to_string()
        } else {
            format!("{}{rest}", self.local)
        };
        Some((rewritten, key))
    }

    /// Rewrite a message's body and XEP-0066 URLs; the files it names.
    pub fn message(&self, msg: &mut Element) -> Vec<FileKey> {
        let mut keys = Vec::new();
        for child in msg.children.iter_mut() {
            let XmlNode::Element(e) = child else { continue };
            if e.name == "body" && e.ns == crate::xml::ns::CLIENT {
                let text = e.text_content();
                let new = self.text(&text, &mut keys);
                if new != text {
                    e.children = vec![XmlNode::Text(new)];
                }
            } else if e.name == "x" && e.ns == OOB {
                for u in e.children.iter_mut() {
                    let XmlNode::Element(u) = u else { continue };
                    if u.name != "url" {
                        continue;
                    }
                    if let Some((new, key)) = self.url(u.text_content().trim()) {
                        u.children = vec![XmlNode::Text(new)];
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    fn text(&self, text: &str, keys: &mut Vec<FileKey>) -> String {
        let mut out = String::with_capacity(text.len());
        for (i, word) in text.split(' ').enumerate() {
            if i > 0 {
                out.push(' ');
            }
            // Lines too: a URL may end one.
            for (j, line) in word.split('\n').enumerate() {
                if j > 0 {
                    out.push('\n');
                }
                match self.url(line) {
                    Some((new, key)) => {
                        out.push_str(&new);
                        keys.push(key);
                    }
                    None => out.push_str(line),
                }
            }
        }
        out
    }
}
