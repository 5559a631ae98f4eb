//! Byte-level stream framer: splits an XMPP stream into the stream header,
//! complete top-level stanzas and the stream close, without parsing them.
//!
//! quick-xml cannot resume a partial read, so we find stanza boundaries here
//! (tracking depth, quotes and CDATA) and hand each complete stanza to the
//! parser. This is also where RFC 6120 §11.1 restrictions and size limits are
//! enforced, before a hostile peer can make us buffer or parse anything big.

use heapless::Vec as FixedVec;

/// The largest stanza size a node may be configured to accept. Stored
/// stanzas (offline queues, archives, link queues) are at most a few times
/// this once serialised, which keeps every log record within its limit.
pub const MAX_STANZA_BYTES_LIMIT: usize = 4 * 1024 * 1024;

/// Whitespace allowed between two stanzas (keepalives are one byte each):
/// a peer that sends nothing else is wasting the node's time.
pub const MAX_WHITESPACE_RUN: usize = 1024 * 1024;

/// Bounds on what a peer may make us buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest stanza (or stream header) in bytes.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza, the stanza itself being depth 1.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_attrs: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The raw `<stream:stream ...>` start tag.
    StreamOpen(Vec<u8>),
    /// One complete top-level element, raw bytes.
    Stanza(Vec<u8>),
    /// `</stream:stream>` was received.
    StreamClose,
}

/// Why a stream has to be closed; maps onto RFC 6120 stream error conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    NotWellFormed(&'static str),
    PolicyViolation(&'static str),
    RestrictedXml(&'static str),
}

impl FrameError {
    pub fn condition(&self) -> &'static str {
        match self {
            FrameError::NotWellFormed(_) => "not-well-formed",
            FrameError::PolicyViolation(_) => "policy-violation",
            FrameError::RestrictedXml(_) => "restricted-xml",
        }
    }
    pub fn text(&self) -> &'static str {
        match self {
            FrameError::NotWellFormed(t)
            | FrameError::PolicyViolation(t)
            | FrameError::RestrictedXml(t) => t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Character data between tags.
    Content,
    /// Just read `<`.
    Lt,
    /// Inside a start tag (`end == false`) or an end tag.
    Tag { end: bool, quote: u8, slash: bool },
    /// Read `<!` plus `seen` bytes of `[CDATA[`.
    Bang { seen: u8 },
    /// Inside CDATA; `brackets` counts consecutive `]` just read.
    CData { brackets: u8 },
    /// Inside the XML declaration; `question` is true right after a `?`.
    Declaration { question: bool },
    /// Inside an entity reference; returns to `Content` or to the tag.
    Entity { in_tag: bool, quote: u8 },
    /// The stream has been closed; everything after is ignored.
    Closed,
}

const CDATA_OPEN: &[u8] = b"[CDATA[";

pub struct Framer {
    limits: Limits,
    scan: Scan,
    /// Element depth: 0 before the stream header, 1 between stanzas.
    depth: usize,
    /// Bytes of the unit being framed (header, declaration or stanza).
    unit: Vec<u8>,
    attrs_in_tag: usize,
    entity: FixedVec<u8, 12>,
    seen_declaration_or_header: bool,
    /// Where the current tag's name lies in `unit`; `name_end == 0` while it is being read.
    name_begin: usize,
    name_end: usize,
    /// Name ranges in `unit` of the elements open inside the current stanza.
    open: Vec<(usize, usize)>,
    /// Qualified name of the stream root, which the stream close must match.
    stream_name: Vec<u8>,
    /// Whitespace bytes since the last stanza.
    whitespace_run: usize,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            scan: Scan::Content,
            depth: 0,
            unit: Vec::new(),
            attrs_in_tag: 0,
            entity: FixedVec::new(),
            seen_declaration_or_header: false,
            name_begin: 0,
            name_end: 0,
            open: Vec::new(),
            stream_name: Vec::new(),
            whitespace_run: 0,
        }
    }

    /// Forget everything, as after STARTTLS or SASL success (stream restart).
    pub fn reset(&mut self) {
        *self = Framer::new(self.limits);
    }

    /// Forget everything and frame with other limits from now on (a stream
    /// restart after authentication lifts the tighter pre-auth limits).
    pub fn reset_with(&mut self, limits: Limits) {
        *self = Framer::new(limits);
    }

    /// Bytes buffered for a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.unit.len()
    }

    /// True while part of a stanza or header is buffered, awaiting the rest.
    pub fn has_partial(&self) -> bool {
        !self.unit.is_empty()
    }

    /// Consume `data`, appending every completed frame to `out`. After an
    /// error the framer must not be fed again (the stream is dead).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        let mut rest = data;
        while !rest.is_empty() {
            let (used, frame) = self.next_frame(rest)?;
            rest = &rest[used..];
            out.extend(frame);
        }
        Ok(())
    }

    /// Consume bytes up to and including the end of the next frame. Returns
    /// how many bytes were used, so that after a stream restart the caller can
    /// hand the rest to a fresh framer.
    pub fn next_frame(&mut self, data: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        let mut out = Vec::with_capacity(1);
        for (i, &b) in data.iter().enumerate() {
            self.step(b, &mut out)?;
            if let Some(frame) = out.pop() {
                self.release_large_buffer();
                return Ok((i + 1, Some(frame)));
            }
        }
        Ok((data.len(), None))
    }

    fn release_large_buffer(&mut self) {
        if self.unit.is_empty() && self.unit.capacity() > 4096 {
            // A large stanza passed through; do not keep its buffer per idle connection.
            self.unit = Vec::new();
        }
    }

    fn keep(&mut self, b: u8) -> Result<(), FrameError> {
        if self.unit.len() >= self.limits.max_stanza_bytes {
            return Err(FrameError::PolicyViolation("stanza exceeds the size limit"));
        }
        self.unit.push(b);
        Ok(())
    }

    fn step(&mut self, b: u8, out: &mut Vec<Frame>) -> Result<(), FrameError> {
        // XML 1.0 allows no control character but tab, LF and CR, raw or not.
        if b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') && self.scan != Scan::Closed {
            return Err(FrameError::NotWellFormed(
                "a control character is not allowed in XML",
            ));
        }
        match self.scan {
            Scan::Closed => {}
            Scan::Content => {
                if b == b'<' {
                    self.whitespace_run = 0;
                    self.scan = Scan::Lt;
                    self.keep(b)?;
                } else if self.depth <= 1 {
                    if !b.is_ascii_whitespace() {
                        return Err(FrameError::NotWellFormed("text outside of a stanza"));
                    }
                    self.whitespace_run += 1;
                    if self.whitespace_run > MAX_WHITESPACE_RUN {
                        return Err(FrameError::PolicyViolation(
                            "too much whitespace between stanzas",
                        ));
                    }
                } else {
                    if b == b'&' {
                        self.entity.clear();
                        self.scan = Scan::Entity {
                            in_tag: false,
                            quote: 0,
                        };
                    }
                    self.keep(b)?;
                }
            }
            Scan::Lt => {
                self.keep(b)?;
                match b {
                    b'/' => {
                        if self.depth == 0 {
                            return Err(FrameError::NotWellFormed(
                                "end tag before the stream header",
                            ));
                        }
                        self.name_begin = self.unit.len();
                        self.name_end = 0;
                        self.scan = Scan::Tag {
                            end: true,
                            quote: 0,
                            slash: false,
                        };
                    }
                    b'!' => {
                        if self.depth <= 1 {
                            return Err(FrameError::RestrictedXml(
                                "comments and DOCTYPE are not allowed",
                            ));
                        }
                        self.scan = Scan::Bang { seen: 0 };
                    }
                    b'?' => {
                        if self.depth > 0 || self.seen_declaration_or_header {
                            return Err(FrameError::RestrictedXml(
                                "processing instructions are not allowed",
                            ));
                        }
                        self.seen_declaration_or_header = true;
                        self.scan = Scan::Declaration { question: false };
                    }
                    b if is_name_start(b) => {
                        self.attrs_in_tag = 0;
                        self.name_begin = self.unit.len() - 1;
                        self.name_end = 0;
                        self.scan = Scan::Tag {
                            end: false,
                            quote: 0,
                            slash: false,
                        };
                    }
                    _ => return Err(FrameError::NotWellFormed("invalid character after '<'")),
                }
            }
            Scan::Declaration { question } => {
                self.keep(b)?;
                if self.unit.len() == 6 && !self.unit.starts_with(b"<?xml") {
                    return Err(FrameError::RestrictedXml(
                        "processing instructions are not allowed",
                    ));
                }
                if self.unit.len() == 6 && !b.is_ascii_whitespace() {
                    return Err(FrameError::RestrictedXml(
                        "processing instructions are not allowed",
                    ));
                }
                if question && b == b'>' {
                    self.unit.clear();
                    self.scan = Scan::Content;
                } else {
                    self.scan = Scan::Declaration {
                        question: b == b'?',
                    };
                }
            }
            Scan::Bang { seen } => {
                self.keep(b)?;
                if CDATA_OPEN[seen as usize] != b {
                    return Err(FrameError::RestrictedXml(
                        "comments and DOCTYPE are not allowed",
                    ));
                }
                self.scan = if seen as usize + 1 == CDATA_OPEN.len() {
                    Scan::CData { brackets: 0 }
                } else {
                    Scan::Bang { seen: seen + 1 }
                };
            }
            Scan::CData { brackets } => {
                self.keep(b)?;
                self.scan = match b {
                    b']' => Scan::CData {
                        brackets: brackets.saturating_add(1),
                    },
                    b'>' if brackets >= 2 => Scan::Content,
                    _ => Scan::CData { brackets: 0 },
                };
            }
            Scan::Entity { in_tag, quote } => {
                self.keep(b)?;
                if b == b';' {
                    if !is_predefined_entity(&self.entity) {
                        return Err(FrameError::RestrictedXml("undeclared entity reference"));
                    }
                    self.scan = if in_tag {
                        Scan::Tag {
                            end: false,
                            quote,
                            slash: false,
                        }
                    } else {
                        Scan::Content
                    };
                } else if self.entity.push(b).is_err() || !(b.is_ascii_alphanumeric() || b == b'#')
                {
                    return Err(FrameError::NotWellFormed("malformed entity reference"));
                }
            }
            Scan::Tag { end, quote, slash } => {
                self.keep(b)?;
                if quote != 0 {
                    if b == quote {
                        self.scan = Scan::Tag {
                            end,
                            quote: 0,
                            slash: false,
                        };
                    } else if b == b'<' {
                        return Err(FrameError::NotWellFormed("'<' in an attribute value"));
                    } else if b == b'&' {
                        self.entity.clear();
                        self.scan = Scan::Entity {
                            in_tag: true,
                            quote,
                        };
                    }
                    return Ok(());
                }
                if self.name_end == 0 && (b.is_ascii_whitespace() || b == b'/' || b == b'>') {
                    self.name_end = self.unit.len() - 1;
                    if self.name_end == self.name_begin {
                        return Err(FrameError::NotWellFormed("tag without a name"));
                    }
                }
                match b {
                    b'"' | b'\'' => {
                        if end {
                            return Err(FrameError::NotWellFormed("attribute in an end tag"));
                        }
                        self.attrs_in_tag += 1;
                        if self.attrs_in_tag > self.limits.max_attrs {
                            return Err(FrameError::PolicyViolation("too many attributes"));
                        }
                        self.scan = Scan::Tag {
                            end,
                            quote: b,
                            slash: false,
                        };
                    }
                    b'>' => {
                        self.scan = Scan::Content;
                        if end {
                            self.close_element(out)?;
                        } else if slash {
                            self.empty_element(out)?;
                        } else {
                            self.open_element(out)?;
                        }
                    }
                    b'/' => {
                        self.scan = Scan::Tag {
                            end,
                            quote: 0,
                            slash: true,
                        }
                    }
                    b'<' => return Err(FrameError::NotWellFormed("'<' inside a tag")),
                    _ => {
                        self.scan = Scan::Tag {
                            end,
                            quote: 0,
                            slash: false,
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn open_element(&mut self, out: &mut Vec<Frame>) -> Result<(), FrameError> {
        if self.depth == 0 {
            self.seen_declaration_or_header = true;
            self.stream_name = self.unit[self.name_begin..self.name_end].to_vec();
            out.push(Frame::StreamOpen(std::mem::take(&mut self.unit)));
        } else if self.depth > self.limits.max_depth {
            return Err(FrameError::PolicyViolation("elements nested too deeply"));
        } else {
            self.open.push((self.name_begin, self.name_end));
        }
        self.depth += 1;
        Ok(())
    }

    fn empty_element(&mut self, out: &mut Vec<Frame>) -> Result<(), FrameError> {
        match self.depth {
            0 => Err(FrameError::NotWellFormed(
                "the stream header cannot be an empty element",
            )),
            1 => {
                out.push(Frame::Stanza(std::mem::take(&mut self.unit)));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn close_element(&mut self, out: &mut Vec<Frame>) -> Result<(), FrameError> {
        let name = &self.unit[self.name_begin..self.name_end];
        let matches = match self.open.pop() {
            Some((b, e)) => self.unit[b..e] == *name,
            None => *name == self.stream_name[..],
        };
        if !matches {
            return Err(FrameError::NotWellFormed(
                "end tag does not match the start tag",
            ));
        }
        self.depth -= 1;
        match self.depth {
            0 => {
                self.unit.clear();
                self.scan = Scan::Closed;
                out.push(Frame::StreamClose);
            }
            1 => out.push(Frame::Stanza(std::mem::take(&mut self.unit))),
            _ => {}
        }
        Ok(())
    }
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_predefined_entity(name: &[u8]) -> bool {
    match name {
        b"lt" | b"gt" | b"amp" | b"quot" | b"apos" => true,
        [b'#', b'x', hex @ ..] => !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit),
        [b'#', dec @ ..] => !dec.is_empty() && dec.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    fn frames(input: &str) -> Result<Vec<Frame>, FrameError> {
        let mut f = Framer::new(Limits::default());
        let mut out = Vec::new();
        f.feed(input.as_bytes(), &mut out)?;
        Ok(out)
    }

    fn stanza(s: &str) -> Frame {
        Frame::Stanza(s.as_bytes().to_vec())
    }

    #[test]
    fn frames_header_stanzas_and_close() {
        let input = format!("{HEADER} <message to='a@b'><body>hi &amp; bye</body></message>\n<presence/></stream:stream>");
        let out = frames(&input).unwrap();
        assert_eq!(out.len(), 4);
        assert!(matches!(&out[0], Frame::StreamOpen(h) if h.starts_with(b"<stream:stream")));
        assert_eq!(
            out[1],
            stanza("<message to='a@b'><body>hi &amp; bye</body></message>")
        );
        assert_eq!(out[2], stanza("<presence/>"));
        assert_eq!(out[3], Frame::StreamClose);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_frames() {
        let input = format!(
            "{HEADER}<iq type='get' id='a&apos;b>'><q><![CDATA[<not a tag> ]] ]>]]></q></iq>"
        );
        let whole = frames(&input).unwrap();
        let mut f = Framer::new(Limits::default());
        let mut out = Vec::new();
        for b in input.as_bytes() {
            f.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(whole, out);
        assert_eq!(
            out[1],
            stanza("<iq type='get' id='a&apos;b>'><q><![CDATA[<not a tag> ]] ]>]]></q></iq>")
        );
    }

    #[test]
    fn quotes_hide_angle_brackets_and_slashes() {
        let out = frames(&format!("{HEADER}<a x='/>' y=\"'\"/>")).unwrap();
        assert_eq!(out[1], stanza("<a x='/>' y=\"'\"/>"));
    }

    #[test]
    fn partial_stanza_is_held_until_complete() {
        let mut f = Framer::new(Limits::default());
        let mut out = Vec::new();
        f.feed(format!("{HEADER}<message><bo").as_bytes(), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert!(f.has_partial());
        f.feed(b"dy>x</body></message>", &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(!f.has_partial());
    }

    #[test]
    fn whitespace_keepalives_between_stanzas_are_ignored() {
        let out = frames(&format!("{HEADER}\n \n<presence/> \t ")).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn restricted_constructs_are_refused() {
        for bad in [
            "<!DOCTYPE x [<!ENTITY a 'b'>]>",
            "<!-- hi -->",
            "<message><!-- hi --></message>",
            "<message><?php x ?></message>",
            "<message><body>&xxe;</body></message>",
            "<message to='&ent;'/>",
        ] {
            let err = frames(&format!("{HEADER}{bad}")).unwrap_err();
            assert_eq!(err.condition(), "restricted-xml", "{bad}");
        }
        assert_eq!(
            frames("<!DOCTYPE stream><stream:stream>")
                .unwrap_err()
                .condition(),
            "restricted-xml"
        );
        assert_eq!(
            frames("<?xml-stylesheet x?>").unwrap_err().condition(),
            "restricted-xml"
        );
    }

    #[test]
    fn character_references_are_allowed() {
        let out = frames(&format!("{HEADER}<m>&#65;&#x42;&lt;</m>")).unwrap();
        assert_eq!(out[1], stanza("<m>&#65;&#x42;&lt;</m>"));
    }

    #[test]
    fn broken_xml_is_not_well_formed() {
        for bad in [
            "<message <body>",
            "text at stream level",
            "<1abc/>",
            "<m a='<'/>",
            "<m>&am p;</m>",
            "<message><body>x</message>",
            "</message>",
            "<a></b>",
        ] {
            let err = frames(&format!("{HEADER}{bad}")).unwrap_err();
            assert_eq!(err.condition(), "not-well-formed", "{bad}");
        }
    }

    #[test]
    fn oversize_stanza_is_a_policy_violation_before_it_completes() {
        let mut f = Framer::new(Limits {
            max_stanza_bytes: 1000,
            ..Limits::default()
        });
        let mut out = Vec::new();
        f.feed(HEADER.as_bytes(), &mut out).unwrap();
        f.feed(b"<message><body>", &mut out).unwrap();
        let err = f.feed(&[b'x'; 2000], &mut out).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    #[test]
    fn depth_and_attribute_limits() {
        let limits = Limits {
            max_depth: 3,
            max_attrs: 5,
            ..Limits::default()
        };
        let mut f = Framer::new(limits);
        let mut out = Vec::new();
        f.feed(HEADER.as_bytes(), &mut out).unwrap();
        f.feed(b"<a><b><c/></b></a>", &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let err = f.feed(b"<a><b><c><d>", &mut out).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
        let mut f = Framer::new(limits);
        f.feed(HEADER.as_bytes(), &mut out).unwrap();
        let err = f
            .feed(b"<a u='1' v='1' w='1' x='1' y='2' z='3'/>", &mut out)
            .unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    #[test]
    fn reset_allows_a_new_header() {
        let mut f = Framer::new(Limits::default());
        let mut out = Vec::new();
        f.feed(HEADER.as_bytes(), &mut out).unwrap();
        f.reset();
        f.feed(HEADER.as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }
}
