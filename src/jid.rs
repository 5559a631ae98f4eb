//! JIDs (RFC 7622): parsing, normalisation and XEP-0106 escaping.
//!
//! Normalisation is a conservative approximation of PRECIS: localpart and
//! domain are case-folded with Unicode lowercase; characters RFC 7622 forbids
//! in a localpart, controls and whitespace are refused; each part is at most
//! 1023 bytes.

use std::fmt;

pub const MAX_PART_BYTES: usize = 1023;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: Option<String>,
    domain: String,
    resource: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JidError(pub &'static str);

impl fmt::Display for JidError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for JidError {}

const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

impl Jid {
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (bare, resource) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (local, domain) = match bare.rfind('@') {
            Some(i) => (Some(&bare[..i]), &bare[i + 1..]),
            None => (None, bare),
        };
        let local = local.map(normalize_local).transpose()?;
        let domain = normalize_domain(domain)?;
        let resource = resource.map(check_resource).transpose()?;
        Ok(Jid {
            local,
            domain,
            resource,
        })
    }

    pub fn new(local: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        Ok(Jid {
            local: local.map(normalize_local).transpose()?,
            domain: normalize_domain(domain)?,
            resource: resource.map(check_resource).transpose()?,
        })
    }

    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }
    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    pub fn to_bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        Ok(Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: Some(check_resource(resource)?),
        })
    }

    /// `local@domain` (or `domain`) as a string.
    pub fn bare_string(&self) -> String {
        match &self.local {
            Some(l) => format!("{l}@{}", self.domain),
            None => self.domain.clone(),
        }
    }
}

/// Stored (in the log's typed link events) as its string form, and
/// validated again when read.
impl serde::Serialize for Jid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Jid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Jid, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Jid::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

fn check_len(s: &str, what: &'static str) -> Result<(), JidError> {
    if s.is_empty() {
        return Err(JidError(what));
    }
    if s.len() > MAX_PART_BYTES {
        return Err(JidError("JID part longer than 1023 bytes"));
    }
    Ok(())
}

pub fn normalize_local(s: &str) -> Result<String, JidError> {
    check_len(s, "empty localpart")?;
    if s.chars()
        .any(|c| LOCAL_FORBIDDEN.contains(&c) || c.is_whitespace() || c.is_control())
    {
        return Err(JidError("forbidden character in localpart"));
    }
    let lower = s.to_lowercase();
    check_len(&lower, "empty localpart")?;
    Ok(lower)
}

pub fn normalize_domain(s: &str) -> Result<String, JidError> {
    let s = s.strip_suffix('.').unwrap_or(s);
    check_len(s, "empty domain")?;
    let lower = s.to_lowercase();
    for label in lower.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(JidError("bad domain label"));
        }
        if label.chars().any(|c| {
            !(c.is_alphanumeric() || c == '-' || c == '_') || c.is_whitespace() || c.is_control()
        }) {
            return Err(JidError("forbidden character in domain"));
        }
    }
    if lower.starts_with('[') {
        return Err(JidError("IP literal domains are not supported"));
    }
    Ok(lower)
}

fn check_resource(s: &str) -> Result<String, JidError> {
    check_len(s, "empty resource")?;
    if s.chars().any(|c| c.is_control()) {
        return Err(JidError("control character in resource"));
    }
    Ok(s.to_string())
}

/// XEP-0106 escaping: characters that cannot appear in a localpart become `\hh`.
pub fn escape_node(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let code = match c {
            ' ' => Some("20"),
            '"' => Some("22"),
            '&' => Some("26"),
            '\'' => Some("27"),
            '/' => Some("2f"),
            ':' => Some("3a"),
            '<' => Some("3c"),
            '>' => Some("3e"),
            '@' => Some("40"),
            // A backslash is escaped only where it would read as an escape sequence.
            '\\' if starts_escape(&chars[i + 1..]) => Some("5c"),
            _ => None,
        };
        match code {
            Some(h) => {
                out.push('\\');
                out.push_str(h);
            }
            None => out.push(c),
        }
    }
    out
}

fn escape_code(c1: char, c2: char) -> Option<char> {
    let code: String = [c1, c2].iter().collect();
    Some(match code.to_ascii_lowercase().as_str() {
        "20" => ' ',
        "22" => '"',
        "26" => '&',
        "27" => '\'',
        "2f" => '/',
        "3a" => ':',
        "3c" => '<',
        "3e" => '>',
        "40" => '@',
        "5c" => '\\',
        _ => return None,
    })
}

fn starts_escape(rest: &[char]) -> bool {
    rest.len() >= 2
        && rest[0].is_ascii_hexdigit()
        && escape_code(rest[0], rest[1]).is_some()
        && !rest[0].is_ascii_uppercase()
        && !rest[1].is_ascii_uppercase()
}

/// XEP-0106 unescaping.
pub fn unescape_node(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && starts_escape(&chars[i + 1..]) {
            if let Some(c) = escape_code(chars[i + 1], chars[i + 2]) {
                out.push(c);
                i += 3;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let j = Jid::parse("Juliet@Example.COM/Balcony").unwrap();
        assert_eq!(j.local(), Some("juliet"));
        assert_eq!(j.domain(), "example.com");
        assert_eq!(j.resource(), Some("Balcony"));
        assert_eq!(j.to_string(), "juliet@example.com/Balcony");
        assert_eq!(j.to_bare().to_string(), "juliet@example.com");
        assert_eq!(
            Jid::parse("example.com/a/b").unwrap().resource(),
            Some("a/b")
        );
        assert_eq!(Jid::parse("example.com.").unwrap().domain(), "example.com");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "@example.com",
            "a@",
            "a@b/",
            "a b@example.com",
            "a@exa mple.com",
            "a\"b@c",
            "a@b@c",
            "a@.com",
            "a@x..y",
            "a<b@c",
            "a@b/\u{7}",
        ] {
            assert!(Jid::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(1024));
        assert!(Jid::parse(&long).is_err());
        let ok = format!("{}@example.com", "a".repeat(1023));
        assert!(Jid::parse(&ok).is_ok());
    }

    /// The table of XEP-0106 §5 (escaping) and §6 (unescaping).
    #[test]
    fn xep0106_table() {
        let table = [
            ("space cadet@example.com", "space\\20cadet"),
            ("call me \"ishmael\"", "call\\20me\\20\\22ishmael\\22"),
            ("at&t guy", "at\\26t\\20guy"),
            ("d'artagnan", "d\\27artagnan"),
            ("/.fanboy", "\\2f.fanboy"),
            ("::foo::", "\\3a\\3afoo\\3a\\3a"),
            ("<foo>", "\\3cfoo\\3e"),
            ("user@host", "user\\40host"),
            ("c:\\net", "c\\3a\\net"),
            ("c:\\\\net", "c\\3a\\\\net"),
            ("c:\\cool stuff", "c\\3a\\cool\\20stuff"),
            ("c:\\5commas", "c\\3a\\5c5commas"),
        ];
        for (raw, escaped) in table {
            let raw_local = raw.strip_suffix("@example.com").unwrap_or(raw);
            assert_eq!(escape_node(raw_local), escaped, "escape {raw_local}");
            assert_eq!(unescape_node(escaped), raw_local, "unescape {escaped}");
            // Escaped forms are valid localparts.
            assert!(normalize_local(escaped).is_ok(), "{escaped}");
        }
        // Sequences that are not escapes are left alone when unescaping.
        assert_eq!(unescape_node("\\2plus\\2is\\4"), "\\2plus\\2is\\4");
        assert_eq!(unescape_node("foo\\bar"), "foo\\bar");
        assert_eq!(unescape_node("foob\\41r"), "foob\\41r");
    }
}
