//! XEP-0004 data forms for rooms: the owner's configuration form
//! (`muc#roomconfig`) and the public room information (`muc#roominfo`).

use crate::model::room::RoomConfig;
use crate::xml::Element;

pub use crate::xml::ns::DATA;
pub const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";

fn field(var: &str, kind: &str, label: &str, value: &str) -> Element {
    let mut f = Element::new("field", DATA)
        .attr("var", var)
        .attr("type", kind);
    if !label.is_empty() {
        f.set_attr("label", label);
    }
    f.child(Element::new("value", DATA).text(value))
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

pub fn config_form(c: &RoomConfig, max_users_limit: u32) -> Element {
    let mut maxusers = field(
        "muc#roomconfig_maxusers",
        "list-single",
        "Maximum occupants",
        &c.max_users.to_string(),
    );
    for n in [10, 20, 50, 100, 200, 500, 1000] {
        if n <= max_users_limit {
            maxusers = maxusers.child(
                Element::new("option", DATA).child(Element::new("value", DATA).text(n.to_string())),
            );
        }
    }
    let mut whois = field(
        "muc#roomconfig_whois",
        "list-single",
        "Who may see real JIDs",
        if c.whois_anyone {
            "anyone"
        } else {
            "moderators"
        },
    );
    for v in ["moderators", "anyone"] {
        whois =
            whois.child(Element::new("option", DATA).child(Element::new("value", DATA).text(v)));
    }
    Element::new("x", DATA)
        .attr("type", "form")
        .child(Element::new("title", DATA).text("Room configuration"))
        .child(field("FORM_TYPE", "hidden", "", ROOMCONFIG))
        .child(field(
            "muc#roomconfig_roomname",
            "text-single",
            "Name",
            &c.name,
        ))
        .child(field(
            "muc#roomconfig_roomdesc",
            "text-single",
            "Description",
            &c.description,
        ))
        .child(field(
            "muc#roomconfig_persistentroom",
            "boolean",
            "Persistent",
            flag(c.persistent),
        ))
        .child(field(
            "muc#roomconfig_publicroom",
            "boolean",
            "Listed in the directory",
            flag(c.public),
        ))
        .child(field(
            "muc#roomconfig_membersonly",
            "boolean",
            "Members only",
            flag(c.members_only),
        ))
        .child(field(
            "muc#roomconfig_passwordprotectedroom",
            "boolean",
            "Password protected",
            flag(c.password.is_some()),
        ))
        .child(field(
            "muc#roomconfig_roomsecret",
            "text-private",
            "Password",
            c.password.as_deref().unwrap_or(""),
        ))
        .child(maxusers)
        .child(field(
            "muc#roomconfig_moderatedroom",
            "boolean",
            "Moderated",
            flag(c.moderated),
        ))
        .child(whois)
        .child(field(
            "muc#roomconfig_changesubject",
            "boolean",
            "Occupants may change the subject",
            flag(c.subject_by_anyone),
        ))
        .child(field(
            "muc#roomconfig_allowinvites",
            "boolean",
            "Occupants may invite",
            flag(c.allow_invites),
        ))
        .child(field(
            "muc#roomconfig_historylength",
            "text-single",
            "History length",
            &c.history_length.to_string(),
        ))
        .child(field(
            "muc#roomconfig_enablearchiving",
            "boolean",
            "Archive messages",
            flag(c.archiving),
        ))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("not a boolean: {v:?}")),
    }
}

/// Apply a submitted form to `current`. Unknown fields are ignored (XEP-0045 §10.2).
pub fn apply_submission(
    form: &Element,
    current: &RoomConfig,
    max_users_limit: u32,
) -> Result<RoomConfig, String> {
    let mut c = current.clone();
    let mut password_protected = c.password.is_some();
    let mut secret = c.password.clone().unwrap_or_default();
    for f in form.elements().filter(|e| e.is("field", DATA)) {
        let Some(var) = f.get_attr("var") else {
            continue;
        };
        let values: Vec<String> = f
            .elements()
            .filter(|v| v.is("value", DATA))
            .map(|v| v.text_content())
            .collect();
        let value = values.first().cloned().unwrap_or_default();
        match var {
            "FORM_TYPE" if value != ROOMCONFIG => {
                return Err("FORM_TYPE must be muc#roomconfig".into())
            }
            "muc#roomconfig_roomname" => c.name = value,
            "muc#roomconfig_roomdesc" => c.description = value,
            "muc#roomconfig_persistentroom" => c.persistent = parse_bool(&value)?,
            "muc#roomconfig_publicroom" => c.public = parse_bool(&value)?,
            "muc#roomconfig_membersonly" => c.members_only = parse_bool(&value)?,
            "muc#roomconfig_passwordprotectedroom" => password_protected = parse_bool(&value)?,
            "muc#roomconfig_roomsecret" => secret = value,
            "muc#roomconfig_maxusers" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| format!("maxusers is not a number: {value:?}"))?;
                if n == 0 || n > max_users_limit {
                    return Err(format!("maxusers must be between 1 and {max_users_limit}"));
                }
                c.max_users = n;
            }
            "muc#roomconfig_moderatedroom" => c.moderated = parse_bool(&value)?,
            "muc#roomconfig_whois" => {
                c.whois_anyone = match value.as_str() {
                    "anyone" => true,
                    "moderators" => false,
                    _ => return Err(format!("whois must be moderators or anyone, not {value:?}")),
                }
            }
            "muc#roomconfig_changesubject" => c.subject_by_anyone = parse_bool(&value)?,
            "muc#roomconfig_allowinvites" => c.allow_invites = parse_bool(&value)?,
            "muc#roomconfig_historylength" | "muc#maxhistoryfetch" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| format!("history length is not a number: {value:?}"))?;
                c.history_length = n.min(1000);
            }
            "muc#roomconfig_enablearchiving" | "muc#roomconfig_enablelogging" => {
                c.archiving = parse_bool(&value)?
            }
            _ => {}
        }
    }
    if c.name.len() > 1023 || c.description.len() > 4096 || secret.len() > 1023 {
        return Err("a text field is too long".into());
    }
    c.password = if password_protected && !secret.is_empty() {
        Some(secret)
    } else if password_protected {
        return Err("a password-protected room needs a password".into());
    } else {
        None
    };
    Ok(c)
}

pub fn roominfo(c: &RoomConfig, occupants: usize, subject: &str) -> Element {
    Element::new("x", DATA)
        .attr("type", "result")
        .child(field("FORM_TYPE", "hidden", "", ROOMINFO))
        .child(field(
            "muc#roominfo_description",
            "text-single",
            "Description",
            &c.description,
        ))
        .child(field(
            "muc#roominfo_occupants",
            "text-single",
            "Occupants",
            &occupants.to_string(),
        ))
        .child(field(
            "muc#roominfo_subject",
            "text-single",
            "Subject",
            subject,
        ))
        .child(field(
            "muc#roomconfig_roomname",
            "text-single",
            "Name",
            &c.name,
        ))
        .child(field(
            "muc#roominfo_changesubject",
            "boolean",
            "Occupants may change the subject",
            flag(c.subject_by_anyone),
        ))
}

/// True if `x` is a submitted or cancelled data form.
pub fn is_form(x: &Element, kind: &str) -> bool {
    x.is("x", DATA) && x.get_attr("type") == Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(fields: &[(&str, &str)]) -> Element {
        let mut x = Element::new("x", DATA).attr("type", "submit");
        for (k, v) in fields {
            x = x.child(
                Element::new("field", DATA)
                    .attr("var", *k)
                    .child(Element::new("value", DATA).text(*v)),
            );
        }
        x
    }

    #[test]
    fn submission_changes_only_what_it_names() {
        let c = apply_submission(
            &submit(&[
                ("FORM_TYPE", ROOMCONFIG),
                ("muc#roomconfig_persistentroom", "1"),
                ("muc#roomconfig_passwordprotectedroom", "1"),
                ("muc#roomconfig_roomsecret", "s3"),
                ("muc#roomconfig_whois", "anyone"),
            ]),
            &RoomConfig::default(),
            1000,
        )
        .unwrap();
        assert!(c.persistent && c.whois_anyone);
        assert_eq!(c.password.as_deref(), Some("s3"));
        assert_eq!(c.max_users, RoomConfig::default().max_users);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            vec![("FORM_TYPE", "urn:other")],
            vec![("muc#roomconfig_persistentroom", "yes")],
            vec![("muc#roomconfig_maxusers", "0")],
            vec![("muc#roomconfig_maxusers", "100000")],
            vec![("muc#roomconfig_whois", "everyone")],
            vec![("muc#roomconfig_passwordprotectedroom", "1")],
        ] {
            assert!(
                apply_submission(&submit(&bad), &RoomConfig::default(), 1000).is_err(),
                "{bad:?}"
            );
        }
    }
}
