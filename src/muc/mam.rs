//! The room archive, queried with XEP-0313 (v2) and paged with RSM
//! (XEP-0059): who may read it, and what `with` means in a room (an
//! occupant's nick). The paging is the shared one (`crate::mam`).

use super::Ctx;
use super::Origin;
use super::RoomView;
use crate::jid::Jid;
use crate::mam::{self, Page};
use crate::model::room::{Affiliation, Archived};
use crate::stanza;
use crate::xml::Element;

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
/// `query` element) asks for, its `fin` the whole iq result; or the error
/// condition to answer with.
pub fn answer(
    view: &RoomView,
    asker: &Jid,
    el: &Element,
    query: &Element,
    max_page: usize,
) -> Result<Page, &'static str> {
    let (rs, room_jid) = (view.state, view.jid.as_str());
    let aff = rs.affiliation(&asker.to_bare().to_string());
    if !rs.config.archiving {
        return Err("service-unavailable");
    }
    if aff == Affiliation::Outcast || (rs.config.members_only && aff < Affiliation::Member) {
        return Err("forbidden");
    }
    let q = mam::parse(query, max_page)?;
    // In a room, `with` names an occupant; any other JID matches nothing.
    let with_nick = q
        .with
        .as_ref()
        .map(|j| match j.to_bare().to_string() == room_jid {
            true => j.resource().unwrap_or("").to_string(),
            false => "\u{0}".to_string(),
        });
    let by_nick = |m: &Archived| with_nick.as_ref().is_none_or(|n| &m.nick == n);
    let matches: Option<&dyn Fn(&Archived) -> bool> = with_nick.as_ref().map(|_| &by_nick as _);
    let to = asker.to_string();
    let queryid = query.get_attr("queryid");
    let render = |m: &Archived| mam::result_xml(m, &to, Some(room_jid), room_jid, queryid);
    let page = mam::page(&rs.archive, &q, matches, render)?;
    Ok(Page {
        results: page.results,
        fin: stanza::iq_result(el, room_jid, Some(page.fin)),
    })
}
