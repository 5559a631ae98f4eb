//! The room archive, queried with XEP-0313 (v2) and paged with RSM (XEP-0059).

use super::form::DATA;
use super::mns;
use super::Ctx;
use super::Origin;
use super::RoomView;
use crate::jid::Jid;
use crate::model::room::{Affiliation, Archived};
use crate::stanza;
use crate::xml::{escape, ns, Element};

const DEFAULT_PAGE: usize = 50;
/// A page ends early past this many bytes (RSM lets a server return fewer
/// items than asked; the client asks for the next page).
const PAGE_BYTES: usize = 256 * 1024;

pub(super) fn query_form() -> Element {
    let field = |var: &str, kind: &str| {
        Element::new("field", DATA)
            .attr("var", var)
            .attr("type", kind)
    };
    Element::new("x", DATA)
        .attr("type", "form")
        .child(field("FORM_TYPE", "hidden").child(Element::new("value", DATA).text(mns::MAM)))
        .child(field("with", "jid-single"))
        .child(field("start", "text-single"))
        .child(field("end", "text-single"))
}

struct Query {
    start: Option<u64>,
    end: Option<u64>,
    with_nick: Option<String>,
    max: usize,
    after: Option<String>,
    /// `Some("")` asks for the last page.
    before: Option<String>,
}

/// A page of a room's archive as the asker gets it: the result messages,
/// in order, then the iq result that closes the page.
pub struct Page {
    pub results: Vec<String>,
    pub fin: Element,
}

impl Ctx<'_> {
    /// Answer an archive query to a room, mastered or mirrored.
    pub(crate) fn muc_mam(&mut self, origin: &Origin, el: &Element, room: &str, query: &Element) {
        let asker = self.origin_jid(origin);
        let max_page = self.cfg.muc.mam_max_page;
        match answer(&self.view(room), &asker, el, query, max_page) {
            Ok(page) => {
                for xml in page.results {
                    self.reply_raw(origin, xml);
                }
                self.reply(origin, &page.fin);
            }
            Err(condition) => self.bounce_to(origin, el, condition),
        }
    }
}

/// The page of `view`'s archive that `asker`'s query `el` (with its
/// `query` element) asks for, or the error condition to answer with.
pub fn answer(
    view: &RoomView,
    asker: &Jid,
    el: &Element,
    query: &Element,
    max_page: usize,
) -> Result<Page, &'static str> {
    let (rs, room_jid) = (view.state, view.jid.as_str());
    let bare = asker.to_bare().to_string();
    let aff = rs.affiliation(&bare);
    if !rs.config.archiving {
        return Err("service-unavailable");
    }
    if aff == Affiliation::Outcast || (rs.config.members_only && aff < Affiliation::Member) {
        return Err("forbidden");
    }
    let q = parse_query(room_jid, query, max_page)?;
    let archive = &rs.archive;
    // The span of positions the time bounds allow, found by binary search.
    let lo = q.start.map_or(0, |s| archive.first_at_or_after(s));
    let hi = q
        .end
        .map_or(archive.len(), |e| archive.first_after(e))
        .max(lo);
    let matches = |p: usize| {
        q.with_nick
            .as_ref()
            .is_none_or(|n| archive.get(p).is_some_and(|m| &m.nick == n))
    };
    // An RSM anchor: a message in the span that the query matches.
    let anchor = |id: &str| {
        let p = archive.seq_of(id).and_then(|seq| archive.position(seq));
        p.filter(|p| (lo..hi).contains(p) && matches(*p))
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
            Box::new((lo..end).rev())
        }
        (None, Some(after)) => Box::new(anchor(after)? + 1..hi),
        (None, None) => Box::new(lo..hi),
    };
    let to_attr = escape(&asker.to_string());
    let queryid = query.get_attr("queryid").map(escape);
    // Walk from the end a page is anchored to (its start going forward,
    // its end going backward), within the page's count and bytes.
    let mut page: Vec<(usize, String, String)> = Vec::new();
    let mut bytes = 0;
    let mut complete = true;
    for p in positions.filter(|p| matches(*p)) {
        if page.len() == q.max {
            complete = false;
            break;
        }
        // None only for a block damage made unreadable.
        let Some(m) = archive.get(p) else { continue };
        let xml = result_xml(&m, &to_attr, room_jid, queryid.as_deref());
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
    // RSM's count and index: by arithmetic, or by counting what a `with`
    // filter lets through.
    let count_matching = |range: std::ops::Range<usize>| match &q.with_nick {
        None => range.len(),
        Some(_) => range.filter(|p| matches(*p)).count(),
    };
    let total = count_matching(lo..hi);
    let from = page.first().map_or(0, |(p, _, _)| count_matching(lo..*p));
    let page: Vec<(String, String)> = page.into_iter().map(|(_, id, xml)| (id, xml)).collect();
    let mut set = Element::new("set", mns::RSM);
    if let (Some((first, _)), Some((last, _))) = (page.first(), page.last()) {
        set = set
            .child(
                Element::new("first", mns::RSM)
                    .attr("index", from.to_string())
                    .text(first.clone()),
            )
            .child(Element::new("last", mns::RSM).text(last.clone()));
    }
    set = set.child(Element::new("count", mns::RSM).text(total.to_string()));
    let mut fin = Element::new("fin", mns::MAM).child(set);
    if complete {
        fin.set_attr("complete", "true");
    }
    Ok(Page {
        results: page.into_iter().map(|(_, xml)| xml).collect(),
        fin: stanza::iq_result(el, room_jid, Some(fin)),
    })
}

/// The MAM query of a client to the room `room_jid`.
fn parse_query(room_jid: &str, query: &Element, max_page: usize) -> Result<Query, &'static str> {
    let mut q = Query {
        start: None,
        end: None,
        with_nick: None,
        max: DEFAULT_PAGE,
        after: None,
        before: None,
    };
    if let Some(x) = query.get_child("x", DATA) {
        for f in x.elements().filter(|f| f.is("field", DATA)) {
            let value = f
                .get_child("value", DATA)
                .map(|v| v.text_content())
                .unwrap_or_default();
            match f.get_attr("var") {
                Some("FORM_TYPE") if value != mns::MAM => return Err("bad-request"),
                Some("start") => {
                    q.start = Some(stanza::parse_timestamp(&value).ok_or("bad-request")?)
                }
                Some("end") => q.end = Some(stanza::parse_timestamp(&value).ok_or("bad-request")?),
                Some("with") => {
                    let j = Jid::parse(&value).map_err(|_| "jid-malformed")?;
                    let ours = j.to_bare().to_string() == room_jid;
                    // In a room, `with` names an occupant; anything else matches nothing.
                    q.with_nick = Some(if ours {
                        j.resource().unwrap_or("").to_string()
                    } else {
                        "\u{0}".into()
                    });
                }
                _ => {}
            }
        }
    }
    if let Some(set) = query.get_child("set", mns::RSM) {
        if let Some(m) = set.get_child("max", mns::RSM) {
            q.max = m
                .text_content()
                .trim()
                .parse::<usize>()
                .map_err(|_| "bad-request")?;
        }
        q.after = set.get_child("after", mns::RSM).map(|a| a.text_content());
        q.before = set.get_child("before", mns::RSM).map(|b| b.text_content());
    }
    q.max = q.max.min(max_page);
    Ok(q)
}

fn result_xml(m: &Archived, to: &str, room_jid: &str, queryid: Option<&str>) -> String {
    let queryid = queryid
        .map(|q| format!(" queryid='{q}'"))
        .unwrap_or_default();
    let delay = stanza::delay(room_jid, m.stamp_ms).to_xml(ns::FORWARD);
    format!(
        "<message to='{to}' from='{}'><result xmlns='{}'{queryid} id='{}'><forwarded xmlns='{}'>{}<message xmlns='{}'{}</forwarded></result></message>",
        escape(room_jid),
        mns::MAM,
        escape(&m.stanza_id),
        ns::FORWARD,
        delay,
        ns::CLIENT,
        &m.xml["<message".len()..]
    )
}
