//! Building the stanzas the server itself emits: errors, results, delays.

use crate::xml::{ns, Element};

/// An iq stanza as RFC 6120 §8.2.3 allows it.
#[derive(Debug, Clone, Copy)]
pub enum Iq<'a> {
    /// `get` or `set`, with its one payload element.
    Request { set: bool, payload: &'a Element },
    /// `result` or `error`.
    Response,
}

/// Check an iq: a known type, an id, and exactly one payload for a request.
/// Every path that acts on an iq (from a client, a site or a master) goes
/// through this first, so none of them meets a request without a payload.
pub fn check_iq(el: &Element) -> Result<Iq<'_>, &'static str> {
    if el.get_attr("id").is_none() {
        return Err("an iq needs an id");
    }
    match el.get_attr("type") {
        Some(t @ ("get" | "set")) => {
            let mut payloads = el.elements();
            match (payloads.next(), payloads.next()) {
                (Some(payload), None) => Ok(Iq::Request {
                    set: t == "set",
                    payload,
                }),
                _ => Err("an iq request carries exactly one payload"),
            }
        }
        Some("result" | "error") => Ok(Iq::Response),
        _ => Err("an iq's type is get, set, result or error"),
    }
}

/// RFC 6120 §8.3 error reply to `req`, or None if `req` is itself an error
/// (errors are never answered with errors). `from` is who answers.
pub fn error_reply(
    req: &Element,
    condition: &str,
    error_type: &str,
    from: &str,
) -> Option<Element> {
    if req.get_attr("type") == Some("error") {
        return None;
    }
    let mut reply = Element::new(&req.name, ns::CLIENT);
    if let Some(id) = req.get_attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(to) = req.get_attr("from") {
        reply.set_attr("to", to);
    }
    reply.set_attr("from", from);
    reply.set_attr("type", "error");
    Some(
        reply.child(
            Element::new("error", ns::CLIENT)
                .attr("type", error_type)
                .child(Element::new(condition, ns::STANZA_ERRORS)),
        ),
    )
}

/// Add a human-readable explanation to an error reply (RFC 6120 §8.3.2).
pub fn with_error_text(mut reply: Element, text: &str) -> Element {
    if let Some(crate::xml::Node::Element(error)) = reply
        .children
        .iter_mut()
        .find(|c| matches!(c, crate::xml::Node::Element(e) if e.name == "error"))
    {
        error.children.push(crate::xml::Node::Element(
            Element::new("text", ns::STANZA_ERRORS)
                .attr("xml:lang", "en")
                .text(text),
        ));
    }
    reply
}

/// The RFC 6120 error type that goes with a condition.
pub fn error_type_for(condition: &str) -> &'static str {
    match condition {
        "bad-request" | "jid-malformed" | "not-acceptable" | "policy-violation" => "modify",
        "not-authorized" => "auth",
        "forbidden" => "auth",
        "resource-constraint" => "wait",
        _ => "cancel",
    }
}

/// A `type='result'` reply to an iq, with optional payload.
pub fn iq_result(req: &Element, from: &str, payload: Option<Element>) -> Element {
    let mut reply = Element::new("iq", ns::CLIENT).attr("type", "result");
    if let Some(id) = req.get_attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(to) = req.get_attr("from") {
        reply.set_attr("to", to);
    }
    reply.set_attr("from", from);
    if let Some(p) = payload {
        reply = reply.child(p);
    }
    reply
}

/// Stream error followed by the stream close, as bytes.
pub fn stream_error(condition: &str, text: &str) -> Vec<u8> {
    let mut s = format!("<stream:error><{condition} xmlns='{}'/>", ns::STREAM_ERRORS);
    if !text.is_empty() {
        s.push_str(&format!(
            "<text xmlns='{}' xml:lang='en'>",
            ns::STREAM_ERRORS
        ));
        crate::xml::escape_into(&mut s, text, false);
        s.push_str("</text>");
    }
    s.push_str("</stream:error></stream:stream>");
    s.into_bytes()
}

/// XEP-0203 delay element.
pub fn delay(from: &str, unix_ms: u64) -> Element {
    Element::new("delay", ns::DELAY)
        .attr("from", from)
        .attr("stamp", timestamp(unix_ms))
}

/// XEP-0082 DateTime in UTC with milliseconds.
pub fn timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Parse an XEP-0082 DateTime (`2026-11-21T05:30:00Z`, optional fraction
/// and numeric offset) into Unix milliseconds.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let total = ((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000) + ms;
    u64::try_from(total).ok()
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Insert `child` before the closing tag of a serialised element.
pub fn insert_before_close(xml: &str, child: &str) -> String {
    match xml.rfind("</") {
        Some(i) if xml.ends_with('>') => format!("{}{child}{}", &xml[..i], &xml[i..]),
        _ => {
            // `<message .../>`: reopen it.
            let head = xml.strip_suffix("/>").unwrap_or(xml);
            let name_end = head[1..]
                .find([' ', '/', '>'])
                .map_or(head.len(), |i| i + 1);
            format!("{head}>{child}</{}>", &head[1..name_end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(timestamp(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn timestamps_parse_back() {
        for ms in [0, 951_782_400_123, 1_795_000_000_000, 4_102_444_799_999] {
            assert_eq!(parse_timestamp(&timestamp(ms)), Some(ms));
        }
        assert_eq!(
            parse_timestamp("2026-11-18T12:06:40+01:00"),
            Some(1_795_000_000_000)
        );
        assert_eq!(
            parse_timestamp("2026-11-18T11:06:40Z"),
            Some(1_795_000_000_000)
        );
        for bad in [
            "",
            "2026-11-18",
            "2026-13-18T11:06:40Z",
            "2026-11-18T11:06:40",
            "2026-11-18T11:06:40.Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_are_not_answered() {
        let e = Element::new("message", ns::CLIENT).attr("type", "error");
        assert!(error_reply(&e, "bad-request", "modify", "x").is_none());
        let m = Element::new("message", ns::CLIENT)
            .attr("from", "a@b/c")
            .attr("id", "7");
        let r = error_reply(&m, "service-unavailable", "cancel", "d@b").unwrap();
        assert_eq!(r.get_attr("to"), Some("a@b/c"));
        assert_eq!(r.get_attr("id"), Some("7"));
        assert!(r
            .get_child("error", ns::CLIENT)
            .unwrap()
            .has_child("service-unavailable", ns::STANZA_ERRORS));
    }
}
