//! Parsing complete frames (from the framer) into elements with quick-xml.

use super::element::{Element, Node};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NotWellFormed(String),
    /// An element or attribute uses a prefix that was never declared.
    InvalidNamespace(String),
}

impl ParseError {
    pub fn condition(&self) -> &'static str {
        match self {
            ParseError::NotWellFormed(_) => "not-well-formed",
            ParseError::InvalidNamespace(_) => "invalid-namespace",
        }
    }
}

/// The parsed stream header, plus what is needed to parse stanzas in its scope.
#[derive(Debug, Clone)]
pub struct StreamHeader {
    /// Namespace of the root element (must be the streams namespace).
    pub ns: String,
    pub name: String,
    /// Default namespace declared on the header (`jabber:client` for c2s).
    pub default_ns: String,
    pub attrs: Vec<(String, String)>,
    /// Qualified name of the root element, for closing the parse wrapper.
    qname: String,
    raw: Vec<u8>,
}

impl StreamHeader {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn nwf(e: impl std::fmt::Display) -> ParseError {
    ParseError::NotWellFormed(e.to_string())
}

/// Text or an attribute value after unescaping: a character reference may
/// name a character XML 1.0 does not allow (`&#x1;`), refused like a raw one.
fn checked(s: &str) -> Result<&str, ParseError> {
    match s.chars().find(|c| !super::is_xml_char(*c)) {
        None => Ok(s),
        Some(c) => Err(nwf(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ))),
    }
}

fn resolved_ns(r: &ResolveResult) -> Result<String, ParseError> {
    match r {
        // quick-xml resolves to the declaration's raw bytes; the namespace
        // name is the attribute's value, with its references replaced.
        ResolveResult::Bound(ns) => {
            let raw = String::from_utf8_lossy(ns.as_ref());
            let ns = quick_xml::escape::unescape(&raw).map_err(nwf)?;
            Ok(checked(&ns)?.to_owned())
        }
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(ParseError::InvalidNamespace(format!(
            "undeclared prefix '{}'",
            String::from_utf8_lossy(p)
        ))),
    }
}

pub fn parse_header(raw: &[u8]) -> Result<StreamHeader, ParseError> {
    let text = std::str::from_utf8(raw).map_err(nwf)?;
    let mut reader = NsReader::from_str(text);
    let (res, ev) = reader.read_resolved_event().map_err(nwf)?;
    let Event::Start(start) = ev else {
        return Err(nwf("expected the stream header"));
    };
    let ns = resolved_ns(&res)?;
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let qname = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut default_ns = String::new();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(nwf)?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a.unescape_value().map_err(nwf)?.into_owned();
        checked(&value)?;
        if key == "xmlns" {
            default_ns = value;
        } else if !key.starts_with("xmlns:") {
            attrs.push((key, value));
        }
    }
    Ok(StreamHeader {
        ns,
        name,
        default_ns,
        attrs,
        qname,
        raw: raw.to_vec(),
    })
}

/// Parse a standalone element (as stored in the log or carried on a link)
/// whose default namespace is `jabber:client`.
pub fn parse_fragment(xml: &str) -> Result<Element, ParseError> {
    let header = parse_header(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    )?;
    parse_stanza(&header, xml.as_bytes())
}

/// Parse one complete stanza in the namespace scope of `header`.
pub fn parse_stanza(header: &StreamHeader, raw: &[u8]) -> Result<Element, ParseError> {
    let mut doc = Vec::with_capacity(header.raw.len() + raw.len() + header.qname.len() + 3);
    doc.extend_from_slice(&header.raw);
    doc.extend_from_slice(raw);
    doc.extend_from_slice(b"</");
    doc.extend_from_slice(header.qname.as_bytes());
    doc.push(b'>');
    let text = std::str::from_utf8(&doc).map_err(|_| nwf("stanza is not valid UTF-8"))?;
    let mut reader = NsReader::from_str(text);
    // Skip the wrapper (the stream header itself).
    match reader.read_resolved_event().map_err(nwf)? {
        (_, Event::Start(_)) => {}
        _ => return Err(nwf("bad stream header")),
    }
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let (res, ev) = reader.read_resolved_event().map_err(nwf)?;
        match ev {
            Event::Start(start) => {
                let ns = resolved_ns(&res)?;
                let el = element_from(&reader, ns, &start)?;
                stack.push(el);
            }
            Event::Empty(start) => {
                let ns = resolved_ns(&res)?;
                let el = element_from(&reader, ns, &start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let Some(el) = stack.pop() else {
                    return Err(nwf("unbalanced end tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(nwf)?;
                checked(&s)?;
                if let Some(parent) = stack.last_mut() {
                    push_text(parent, &s);
                } else if !s.trim().is_empty() {
                    return Err(nwf("text outside of a stanza"));
                }
            }
            Event::CData(c) => {
                let bytes = c.into_inner();
                let s = checked(std::str::from_utf8(&bytes).map_err(nwf)?)?;
                if let Some(parent) = stack.last_mut() {
                    push_text(parent, s);
                }
            }
            Event::Eof => return Err(nwf("incomplete stanza")),
            // The framer already refused these; a parser disagreement is still an error.
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::Decl(_) => {
                return Err(nwf("restricted XML construct"))
            }
        }
    }
}

fn push_text(parent: &mut Element, s: &str) {
    // Empty character data (`<![CDATA[]]>`) is no text: a text node of
    // nothing would not survive the writer, which writes nothing for it.
    if s.is_empty() {
        return;
    }
    if let Some(Node::Text(prev)) = parent.children.last_mut() {
        prev.push_str(s);
    } else {
        parent.children.push(Node::Text(s.to_string()));
    }
}

/// A name as Namespaces in XML allows it: an optional prefix and a local
/// part, each an XML name without ':'. quick-xml does not check names, and
/// the writer copies them as they are, so a malformed name (`<xml://>`)
/// would turn into malformed output for whoever the stanza is forwarded to.
/// Non-ASCII letters are taken broadly (from U+00C0, as XML 1.0 5th ed.).
fn is_qname(name: &[u8]) -> bool {
    fn start(c: char) -> bool {
        c.is_ascii_alphabetic() || c == '_' || (c >= '\u{c0}' && c != '\u{d7}' && c != '\u{f7}')
    }
    fn rest(c: char) -> bool {
        start(c) || c.is_ascii_digit() || c == '-' || c == '.' || c == '\u{b7}'
    }
    let ncname = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(start) && chars.all(rest)
    };
    match std::str::from_utf8(name).map(|n| n.split_once(':')) {
        Ok(Some((prefix, local))) => ncname(prefix) && ncname(local),
        Ok(None) => ncname(std::str::from_utf8(name).unwrap_or("")),
        Err(_) => false,
    }
}

fn element_from(
    reader: &NsReader<&[u8]>,
    ns: String,
    start: &BytesStart,
) -> Result<Element, ParseError> {
    if !is_qname(start.name().as_ref()) {
        return Err(nwf("invalid element name"));
    }
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(nwf)?;
        let key = a.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            continue;
        }
        if !is_qname(key) {
            return Err(nwf("invalid attribute name"));
        }
        if let Some(prefix) = a.key.prefix() {
            if prefix.as_ref() != b"xml" {
                let (r, _) = reader.resolve_attribute(a.key);
                resolved_ns(&r)?;
            }
        }
        let value = a.unescape_value().map_err(nwf)?.into_owned();
        checked(&value)?;
        attrs.push((String::from_utf8_lossy(key).into_owned(), value));
    }
    Ok(Element {
        name,
        ns,
        attrs,
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    #[test]
    fn header_fields() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        assert_eq!(h.ns, "http://etherx.jabber.org/streams");
        assert_eq!(h.name, "stream");
        assert_eq!(h.default_ns, "jabber:client");
        assert_eq!(h.attr("to"), Some("localhost"));
    }

    #[test]
    fn stanza_inherits_stream_namespaces() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        let el = parse_stanza(
            &h,
            b"<message to='a@b' xml:lang='en'><body>x &amp; y<![CDATA[<z>]]></body><x xmlns='urn:e' a='&apos;'/></message>",
        )
        .unwrap();
        assert!(el.is("message", "jabber:client"));
        assert_eq!(el.get_attr("xml:lang"), Some("en"));
        let body = el.get_child("body", "jabber:client").unwrap();
        assert_eq!(body.text_content(), "x & y<z>");
        assert_eq!(el.get_child("x", "urn:e").unwrap().get_attr("a"), Some("'"));
        // Round trip through the writer.
        let xml = el.to_xml("jabber:client");
        let again = parse_stanza(&h, xml.as_bytes()).unwrap();
        assert_eq!(el, again);
    }

    /// Found by fuzzing (framer target, in CI): an empty CDATA section
    /// made an empty text node, which the writer drops, so a forwarded
    /// stanza differed from the one received.
    #[test]
    fn an_empty_cdata_section_is_no_text_and_survives_the_writer() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        let el = parse_stanza(&h, b"<message><body><![CDATA[]]></body></message>").unwrap();
        let body = el.get_child("body", "jabber:client").unwrap();
        assert!(body.children.is_empty());
        let again = parse_stanza(&h, el.to_xml("jabber:client").as_bytes()).unwrap();
        assert_eq!(el, again);
        // Text around it joins as one node, as without it.
        let el = parse_stanza(&h, b"<body>a<![CDATA[]]>b</body>").unwrap();
        assert_eq!(el.children, vec![Node::Text("ab".into())]);
    }

    /// Found by fuzzing (framer target): the writer escapes the namespace,
    /// so the parser must have unescaped it, or forwarding changes it.
    #[test]
    fn namespace_names_are_unescaped_and_survive_the_writer() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        let el = parse_stanza(&h, b"<z xmlns='\"'/>").unwrap();
        assert_eq!(
            parse_stanza(&h, el.to_xml("jabber:client").as_bytes()).unwrap(),
            el
        );
        let el = parse_stanza(&h, b"<p:z xmlns:p='a&amp;b&#x27;'/>").unwrap();
        assert_eq!(el.ns, "a&b'");
        assert_eq!(
            parse_stanza(&h, el.to_xml("jabber:client").as_bytes()).unwrap(),
            el
        );
    }

    /// Found by fuzzing (framer target): a namespace name holding a
    /// character XML forbids was taken as it was, and the writer's repair
    /// of it then changed the stanza a node forwards. Refused like such a
    /// character anywhere else.
    #[test]
    fn a_namespace_name_with_a_forbidden_character_is_refused() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        for raw in [
            "<bind xmlns='urn:x\u{17}y'/>",
            "<p:bind xmlns:p='urn:x&#x1;y'/>",
            "<a xmlns='urn:ok'><b xmlns='urn:\u{1}'/></a>",
        ] {
            assert!(
                matches!(
                    parse_stanza(&h, raw.as_bytes()),
                    Err(ParseError::NotWellFormed(_))
                ),
                "{raw:?}"
            );
        }
    }

    /// Found by fuzzing (framer target): the writer turned `<xml://>` into
    /// `</ xmlns='…'/>`. Names that are not XML names are refused.
    #[test]
    fn malformed_names_are_not_well_formed() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        for bad in [
            &b"<xml://>"[..],
            b"<a\0b/>",
            b"<a:b:c xmlns:a='u'/>",
            b"<m x\0='1'/>",
            b"<m 1a='1'/>",
            b"<m a:='1'/>",
        ] {
            let err = parse_stanza(&h, bad).unwrap_err();
            assert_eq!(err.condition(), "not-well-formed", "{bad:?}");
        }
        let el = parse_stanza(
            &h,
            "<é:ü-1.x xmlns:é='u' xml:lang='de' a_b='1'/>".as_bytes(),
        )
        .unwrap();
        assert_eq!(el.name, "ü-1.x");
        assert_eq!(
            parse_stanza(&h, el.to_xml("jabber:client").as_bytes()).unwrap(),
            el
        );
    }

    #[test]
    fn stream_prefix_elements_resolve() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        let el = parse_stanza(&h, b"<stream:error><x/></stream:error>").unwrap();
        assert!(el.is("error", "http://etherx.jabber.org/streams"));
    }

    #[test]
    fn undeclared_prefix_is_invalid_namespace() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        let err = parse_stanza(&h, b"<foo:message/>").unwrap_err();
        assert_eq!(err.condition(), "invalid-namespace");
    }

    #[test]
    fn mismatched_tags_are_not_well_formed() {
        let h = parse_header(HEADER.as_bytes()).unwrap();
        let err = parse_stanza(&h, b"<message><body></message></body>").unwrap_err();
        assert_eq!(err.condition(), "not-well-formed");
    }
}
