//! XEP-0313 queries over an [`Archive`], for a room's archive and an
//! account's alike: the query (its form, RSM paging, the extended fields
//! and `flip-page`), the page walked within its count and bytes, and the
//! `<fin/>` that closes it. What a query's `with` matches is the owner's
//! to say (an occupant of a room, a contact of an account).

use crate::jid::Jid;
use crate::model::archive::Archive;
use crate::model::room::Archived;
use crate::stanza;
use crate::xml::{escape, ns, Element};
use std::ops::Range;

pub const DEFAULT_PAGE: usize = 50;
/// A page ends early past this many bytes (RSM lets a server return fewer
/// items than asked; the client asks for the next page).
pub const PAGE_BYTES: usize = 256 * 1024;
/// Ids one query may name in its `ids` field.
pub const MAX_IDS: usize = 250;

/// What a client asked of an archive.
#[derive(Debug, Default)]
pub struct Query {
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub with: Option<Jid>,
    /// Only the messages after / before these (extended fields).
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    /// Only these messages (extended field).
    pub ids: Option<Vec<String>>,
    pub max: usize,
    /// RSM anchors; `before` of `Some("")` asks for the last page.
    pub after: Option<String>,
    pub before: Option<String>,
    /// Send the page newest first.
    pub flip: bool,
}

/// The query form (XEP-0313 §4.1.1), with the extended fields.
pub fn form() -> Element {
    let field = |var: &str, kind: &str| {
        Element::new("field", ns::DATA)
            .attr("var", var)
            .attr("type", kind)
    };
    Element::new("x", ns::DATA)
        .attr("type", "form")
        .child(field("FORM_TYPE", "hidden").child(Element::new("value", ns::DATA).text(ns::MAM)))
        .child(field("with", "jid-single"))
        .child(field("start", "text-single"))
        .child(field("end", "text-single"))
        .child(field("before-id", "text-single"))
        .child(field("after-id", "text-single"))
        .child(field("ids", "text-multi"))
}

/// The query a `<query xmlns='urn:xmpp:mam:2'/>` element makes, its page
/// size at most `max_page`; or the error condition to answer with.
pub fn parse(query: &Element, max_page: usize) -> Result<Query, &'static str> {
    let mut q = Query {
        max: DEFAULT_PAGE,
        flip: query.has_child("flip-page", ns::MAM),
        ..Query::default()
    };
    if let Some(x) = query.get_child("x", ns::DATA) {
        for f in x.elements().filter(|f| f.is("field", ns::DATA)) {
            let values: Vec<String> = f
                .elements()
                .filter(|v| v.is("value", ns::DATA))
                .take(MAX_IDS + 1)
                .map(|v| v.text_content())
                .collect();
            let value = values.first().cloned().unwrap_or_default();
            match f.get_attr("var").unwrap_or("") {
                "FORM_TYPE" if value != ns::MAM => return Err("bad-request"),
                "FORM_TYPE" => {}
                "start" => q.start = Some(timestamp(&value)?),
                "end" => q.end = Some(timestamp(&value)?),
                "with" => q.with = Some(Jid::parse(&value).map_err(|_| "jid-malformed")?),
                "after-id" => q.after_id = Some(value),
                "before-id" => q.before_id = Some(value),
                "ids" if values.len() > MAX_IDS => return Err("policy-violation"),
                "ids" => q.ids = Some(values),
                // XEP-0313 §4.1.4: a field the server does not know.
                _ => return Err("feature-not-implemented"),
            }
        }
    }
    if let Some(set) = query.get_child("set", ns::RSM) {
        if let Some(m) = set.get_child("max", ns::RSM) {
            q.max = m
                .text_content()
                .trim()
                .parse::<usize>()
                .map_err(|_| "bad-request")?;
        }
        q.after = set.get_child("after", ns::RSM).map(|a| a.text_content());
        q.before = set.get_child("before", ns::RSM).map(|b| b.text_content());
    }
    q.max = q.max.min(max_page);
    Ok(q)
}

fn timestamp(value: &str) -> Result<u64, &'static str> {
    stanza::parse_timestamp(value).ok_or("bad-request")
}

/// A page as the asker gets it: the result messages in the order sent,
/// then the `<fin/>` for the iq result that closes it.
pub struct Page {
    pub results: Vec<String>,
    pub fin: Element,
}

/// The positions a query may return: a span of the archive, or the
/// messages its `ids` named (in archive order).
enum Candidates {
    Span(Range<usize>),
    Listed(Vec<usize>),
}

impl Candidates {
    /// The candidates within `from..to`, oldest first.
    fn within(&self, from: usize, to: usize) -> Box<dyn DoubleEndedIterator<Item = usize> + '_> {
        match self {
            Candidates::Span(span) => Box::new(from.max(span.start)..to.min(span.end).max(from)),
            Candidates::Listed(listed) => Box::new(
                listed
                    .iter()
                    .copied()
                    .filter(move |p| (from..to).contains(p)),
            ),
        }
    }
}

/// The page of `archive` that `q` asks for. `matches` says which messages
/// the query's `with` lets through (None: all); `render` makes a message's
/// result stanza.
pub fn page(
    archive: &Archive,
    q: &Query,
    matches: Option<&dyn Fn(&Archived) -> bool>,
    render: impl Fn(&Archived) -> String,
) -> Result<Page, &'static str> {
    let position_of = |id: &str| archive.seq_of(id).and_then(|seq| archive.position(seq));
    let named = |id: &Option<String>| {
        id.as_deref()
            .map(|id| position_of(id).ok_or("item-not-found"))
    };
    // The span the time bounds and the extended id bounds allow (time
    // bounds are found by binary search).
    let mut lo = q.start.map_or(0, |s| archive.first_at_or_after(s));
    let mut hi = q.end.map_or(archive.len(), |e| archive.first_after(e));
    if let Some(after) = named(&q.after_id).transpose()? {
        lo = lo.max(after + 1);
    }
    if let Some(before) = named(&q.before_id).transpose()? {
        hi = hi.min(before);
    }
    let hi = hi.max(lo);
    let candidates = match &q.ids {
        None => Candidates::Span(lo..hi),
        Some(ids) => {
            let mut listed: Vec<usize> = ids
                .iter()
                .filter_map(|id| position_of(id))
                .filter(|p| (lo..hi).contains(p))
                .collect();
            listed.sort_unstable();
            listed.dedup();
            Candidates::Listed(listed)
        }
    };
    let is_match = |p: usize| matches.is_none_or(|f| archive.get(p).is_some_and(|m| f(&m)));
    // An RSM anchor: a message among the candidates that the query matches.
    let anchor = |id: &str| {
        position_of(id)
            .filter(|p| candidates.within(*p, p + 1).next().is_some() && is_match(*p))
            .ok_or("item-not-found")
    };
    let backward = q.before.is_some();
    let positions: Box<dyn Iterator<Item = usize>> = match (&q.before, &q.after) {
        (Some(before), _) => {
            let end = if before.is_empty() {
                hi
            } else {
                anchor(before)?
            };
            Box::new(candidates.within(lo, end).rev())
        }
        (None, Some(after)) => Box::new(candidates.within(anchor(after)? + 1, hi)),
        (None, None) => Box::new(candidates.within(lo, hi)),
    };
    // Walk from the end a page is anchored to (its start going forward,
    // its end going backward), within the page's count and bytes.
    let mut page: Vec<(usize, String, String)> = Vec::new();
    let mut bytes = 0;
    let mut complete = true;
    for p in positions.filter(|p| is_match(*p)) {
        if page.len() == q.max {
            complete = false;
            break;
        }
        // None only for a block damage made unreadable.
        let Some(m) = archive.get(p) else { continue };
        let xml = render(&m);
        bytes += xml.len();
        if bytes > PAGE_BYTES && !page.is_empty() {
            complete = false;
            break;
        }
        page.push((p, m.stanza_id.clone(), xml));
    }
    if backward {
        page.reverse();
    }
    // RSM's count and index: by arithmetic, or by counting what a filter
    // lets through.
    let count = |from: usize, to: usize| match (&candidates, matches) {
        (Candidates::Span(_), None) => to.saturating_sub(from),
        _ => candidates.within(from, to).filter(|p| is_match(*p)).count(),
    };
    let total = count(lo, hi);
    let index = page.first().map_or(0, |(p, _, _)| count(lo, *p));
    let mut set = Element::new("set", ns::RSM);
    if let (Some((_, first, _)), Some((_, last, _))) = (page.first(), page.last()) {
        let mut first = Element::new("first", ns::RSM).text(first.clone());
        // The index is optional (XEP-0059 §2.6), and left out of pages
        // walked backwards: clients (slixmpp) read "index + page = count"
        // as the end of any walk, and would stop after the newest page.
        if !backward {
            first.set_attr("index", index.to_string());
        }
        set = set
            .child(first)
            .child(Element::new("last", ns::RSM).text(last.clone()));
    }
    set = set.child(Element::new("count", ns::RSM).text(total.to_string()));
    let mut fin = Element::new("fin", ns::MAM).child(set);
    if complete {
        fin.set_attr("complete", "true");
    }
    let mut results: Vec<String> = page.into_iter().map(|(_, _, xml)| xml).collect();
    if q.flip {
        results.reverse();
    }
    Ok(Page { results, fin })
}

/// The result stanza of one archived message (`archived_from`: the address
/// of the archive, which stamped it; `from`: the result's sender, if any).
pub fn result_xml(
    m: &Archived,
    to: &str,
    from: Option<&str>,
    archived_by: &str,
    queryid: Option<&str>,
) -> String {
    let from = from
        .map(|f| format!(" from='{}'", escape(f)))
        .unwrap_or_default();
    let queryid = queryid
        .map(|q| format!(" queryid='{}'", escape(q)))
        .unwrap_or_default();
    let delay = stanza::delay(archived_by, m.stamp_ms).to_xml(ns::FORWARD);
    // Stored without its namespace (it was written inside a client stream).
    let rest = m.xml.strip_prefix("<message").unwrap_or(&m.xml);
    format!(
        "<message to='{}'{from}><result xmlns='{}'{queryid} id='{}'><forwarded xmlns='{}'>{delay}<message xmlns='{}'{rest}</forwarded></result></message>",
        escape(to),
        ns::MAM,
        escape(&m.stanza_id),
        ns::FORWARD,
        ns::CLIENT,
    )
}

/// The archive's first and last messages (XEP-0313 §7), for the extended
/// metadata query.
pub fn metadata(archive: &Archive) -> Element {
    let mut el = Element::new("metadata", ns::MAM);
    if let (Some(first), Some(last)) = (archive.front(), archive.back()) {
        for (name, m) in [("start", first), ("end", last)] {
            el = el.child(
                Element::new(name, ns::MAM)
                    .attr("id", m.stanza_id)
                    .attr("timestamp", stanza::timestamp(m.stamp_ms)),
            );
        }
    }
    el
}
