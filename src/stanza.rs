//! Building the stanzas the server itself emits: errors, results, delays.

use crate::xml::{ns, Element};

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
