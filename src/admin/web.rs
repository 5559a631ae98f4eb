//! The local web page (sans-IO): routes, login and CSRF checks, and the
//! server-rendered pages. No script, no external asset: the site has no
//! internet, and the page must work on a phone.

use super::command::Command;
use super::http::{Request, Response};
use super::login::{AddressThrottle, Sessions};
use super::report::{pinned_fingerprint, Facts};
use crate::config::Config;
use crate::node::NodeStatus;
use crate::scram::constant_time_eq;
use crate::xml::escape;
use std::net::IpAddr;

pub const COOKIE: &str = "outpost_sid";

/// What the shell must do to answer a request.
#[derive(Debug)]
pub enum Step {
    Respond(Response),
    /// Check the password, then call `login_result`.
    Login {
        sid: String,
        password: String,
    },
    /// First run: store this admin password, then call `setup_done`.
    Setup {
        sid: String,
        password: String,
    },
    /// Run a command for a logged-in user, then call `run_result`.
    Run {
        sid: String,
        cmd: Command,
    },
    /// Gather the status and call `dashboard`.
    Dashboard {
        sid: String,
    },
}

#[derive(Default)]
pub struct Web {
    pub sessions: Sessions,
    pub throttle: AddressThrottle,
}

impl Web {
    /// `peer`: the address the request came from (sessions and the login
    /// throttle count per address). `random`: 32 fresh random bytes (for a
    /// session, if one is opened).
    pub fn route(
        &mut self,
        req: &Request,
        peer: IpAddr,
        now: u64,
        random: [u8; 32],
        password_set: bool,
    ) -> Step {
        let sid = req.cookie(COOKIE);
        let authed = self
            .sessions
            .get(sid, now)
            .filter(|s| s.authenticated)
            .map(|s| s.id.clone());
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => match authed {
                Some(sid) => Step::Dashboard { sid },
                None if !password_set => Step::Respond(Response::redirect("/setup")),
                None => Step::Respond(Response::redirect("/login")),
            },
            ("GET", "/login") if !password_set => Step::Respond(Response::redirect("/setup")),
            ("GET", "/login") => self.form_page(peer, now, random, "/login", None),
            ("GET", "/setup") if password_set => Step::Respond(Response::redirect("/login")),
            ("GET", "/setup") => self.form_page(peer, now, random, "/setup", None),
            ("POST", "/login") | ("POST", "/setup") => {
                let form = match self.checked_form(req, now, false) {
                    Ok(f) => f,
                    Err(r) => return Step::Respond(r),
                };
                let sid = sid.expect("checked_form found the session").to_string();
                let password = field(&form, "password").to_string();
                if req.path == "/setup" {
                    if password_set {
                        return Step::Respond(Response::text(
                            403,
                            "the admin password is already set",
                        ));
                    }
                    if password.is_empty() || password != field(&form, "repeat") {
                        return self.form_page(
                            peer,
                            now,
                            random,
                            "/setup",
                            Some("The passwords differ or are empty."),
                        );
                    }
                    if let Err(why) = crate::scram::check_new_password(&password) {
                        let why = format!("Not set: {why}.");
                        return self.form_page(peer, now, random, "/setup", Some(&why));
                    }
                    return Step::Setup { sid, password };
                }
                match self.throttle.attempt(peer, now) {
                    Ok(()) => Step::Login { sid, password },
                    Err(wait_ms) => Step::Respond(too_many_wrong_passwords(wait_ms)),
                }
            }
            ("POST", "/action") => {
                let form = match self.checked_form(req, now, true) {
                    Ok(f) => f,
                    Err(r) => return Step::Respond(r),
                };
                let sid = sid.expect("checked").to_string();
                match form_command(&form) {
                    Ok(Command::Logout) => {
                        self.sessions.close(&sid);
                        Step::Respond(
                            Response::redirect("/login").with_header("Set-Cookie", clear_cookie()),
                        )
                    }
                    Ok(cmd) => Step::Run { sid, cmd },
                    Err(e) => Step::Respond(Response::html(
                        400,
                        page(
                            "Bad request",
                            &format!(
                                "<p class=err>{}</p><p><a href=\"/\">Back</a></p>",
                                escape(&e)
                            ),
                        ),
                    )),
                }
            }
            (_, "/" | "/login" | "/setup" | "/action") => Step::Respond(
                Response::text(405, "method not allowed").with_header("Allow", "GET, POST".into()),
            ),
            _ => Step::Respond(Response::text(404, "not found")),
        }
    }

    /// The form of a POST, if its session and CSRF token check out.
    fn checked_form(
        &mut self,
        req: &Request,
        now: u64,
        need_login: bool,
    ) -> Result<Vec<(String, String)>, Response> {
        let form = req.form().map_err(|e| Response::text(400, e))?;
        let Some(session) = self.sessions.get(req.cookie(COOKIE), now) else {
            return Err(Response::text(
                403,
                "no session (cookies off, or it expired): load the page again",
            ));
        };
        if !constant_time_eq(field(&form, "csrf").as_bytes(), session.csrf.as_bytes()) {
            return Err(Response::text(
                403,
                "missing or wrong CSRF token: load the page again",
            ));
        }
        if need_login && !session.authenticated {
            return Err(Response::text(403, "log in first"));
        }
        Ok(form)
    }

    fn form_page(
        &mut self,
        peer: IpAddr,
        now: u64,
        random: [u8; 32],
        path: &str,
        error: Option<&str>,
    ) -> Step {
        let s = self.sessions.open(peer, now, random);
        let err = error.map_or(String::new(), |e| format!("<p class=err>{}</p>", escape(e)));
        let body = if path == "/setup" {
            format!(
                "<h1>Outpost: first run</h1><p>Choose the admin password for this page and the serial console.</p>{err}\
                 <form method=post action=/setup><input type=hidden name=csrf value=\"{}\">\
                 <label>Password <input type=password name=password autocomplete=new-password required></label>\
                 <label>Repeat <input type=password name=repeat autocomplete=new-password required></label>\
                 <button>Set password</button></form>",
                s.csrf
            )
        } else {
            format!(
                "<h1>Outpost</h1>{err}<form method=post action=/login><input type=hidden name=csrf value=\"{}\">\
                 <label>Admin password <input type=password name=password autocomplete=current-password autofocus required></label>\
                 <button>Log in</button></form>",
                s.csrf
            )
        };
        Step::Respond(
            Response::html(200, page("Outpost", &body)).with_header("Set-Cookie", cookie(&s.id)),
        )
    }

    /// After `Step::Login`: `peer` is the address the login came from.
    pub fn login_result(
        &mut self,
        sid: &str,
        peer: IpAddr,
        ok: bool,
        now: u64,
        random: [u8; 32],
    ) -> Response {
        if !ok {
            // The throttle counted the attempt already.
            return match self.form_page(peer, now, random, "/login", Some("Wrong password.")) {
                Step::Respond(mut r) => {
                    r.status = 403;
                    r
                }
                _ => unreachable!("form_page responds"),
            };
        }
        self.throttle.succeeded(peer);
        let s = self.sessions.authenticate(sid, peer, now, random);
        Response::redirect("/").with_header("Set-Cookie", cookie(&s.id))
    }

    pub fn setup_done(
        &mut self,
        sid: &str,
        peer: IpAddr,
        result: Result<(), String>,
        now: u64,
        random: [u8; 32],
    ) -> Response {
        match result {
            Ok(()) => {
                let s = self.sessions.authenticate(sid, peer, now, random);
                Response::redirect("/").with_header("Set-Cookie", cookie(&s.id))
            }
            Err(e) => Response::text(500, &format!("cannot store the password: {e}")),
        }
    }

    /// After a command: back to the page, which shows the outcome once.
    pub fn run_result(&mut self, sid: &str, now: u64, result: Result<String, String>) -> Response {
        if let Some(s) = self.sessions.get(Some(sid), now) {
            s.flash = Some(result);
        }
        Response::redirect("/")
    }

    pub fn dashboard(&mut self, sid: &str, now: u64, view: &View) -> Response {
        let Some(s) = self.sessions.get(Some(sid), now) else {
            return Response::redirect("/login");
        };
        let flash = s.flash.take();
        let csrf = s.csrf.clone();
        Response::html(200, page("Outpost", &render_dashboard(view, &csrf, flash)))
    }
}

/// Everything the dashboard shows.
pub struct View<'a> {
    pub status: &'a NodeStatus,
    pub facts: &'a Facts,
    /// The saved configuration (what the node runs after a restart).
    pub config: &'a Config,
    pub users: &'a [String],
}

/// 429 with `Retry-After`, in whole seconds.
fn too_many_wrong_passwords(wait_ms: u64) -> Response {
    let seconds = wait_ms.div_ceil(1000);
    Response::text(
        429,
        &format!("too many wrong passwords; try again in {seconds} s"),
    )
    .with_header("Retry-After", seconds.to_string())
}

fn field<'f>(form: &'f [(String, String)], name: &str) -> &'f str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A form's `op` and fields as a command.
fn form_command(form: &[(String, String)]) -> Result<Command, String> {
    let f = |name: &str| field(form, name).trim().to_string();
    let need = |name: &str| {
        let v = f(name);
        if v.is_empty() {
            Err(format!("{name} is required"))
        } else {
            Ok(v)
        }
    };
    Ok(match field(form, "op") {
        "config_set" => Command::ConfigSet {
            key: need("key")?,
            value: need("value")?,
        },
        "user_add" => Command::UserAdd {
            user: need("user")?,
            password: password(form)?,
        },
        "user_passwd" => Command::UserPasswd {
            user: need("user")?,
            password: password(form)?,
        },
        "user_del" => Command::UserDel {
            user: need("user")?,
        },
        "upstream_add" => Command::UpstreamAdd {
            muc: need("muc")?,
            connect: need("connect")?,
            fingerprint: need("fingerprint")?,
        },
        "upstream_del" => Command::UpstreamDel { muc: need("muc")? },
        "peer_add" => Command::PeerAdd {
            domain: need("domain")?,
            fingerprint: need("fingerprint")?,
        },
        "peer_del" => Command::PeerDel {
            domain: need("domain")?,
        },
        "admin_passwd" => Command::AdminPasswd {
            password: password(form)?,
        },
        "restart" => Command::Restart,
        "logout" => Command::Logout,
        other => return Err(format!("unknown action {other:?}")),
    })
}

fn password(form: &[(String, String)]) -> Result<String, String> {
    let pw = field(form, "password");
    if pw.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(pw.to_string())
}

fn cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

const STYLE: &str = "body{font:16px/1.4 system-ui,sans-serif;margin:0 auto;max-width:60em;padding:.5em}p{overflow-wrap:anywhere}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em;border-bottom:1px solid #ccc}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}td,th{padding:.3em .5em;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}\
code{word-break:break-all;white-space:normal}form{margin:.5em 0}label{display:block;margin:.3em 0}\
input{display:block;font-size:1em;padding:.3em;width:100%;box-sizing:border-box}\
form.row{display:flex;flex-wrap:wrap;gap:.4em;align-items:end}form.row label{flex:1 1 12em;max-width:24em}\
button{font-size:1em;padding:.35em .8em}.ok{background:#e6f4e6;padding:.5em}.err{background:#fbe3e3;padding:.5em}\
.up{color:#070}.down{color:#a00}.inline{display:inline;margin:0}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

fn action_form(csrf: &str, op: &str, fields: &str, button: &str) -> String {
    format!(
        "<form method=post action=/action class=row><input type=hidden name=csrf value=\"{csrf}\">\
         <input type=hidden name=op value={op}>{fields}<button>{button}</button></form>"
    )
}

/// A table that scrolls sideways on a narrow screen; cells are HTML already.
fn table(id: &str, headers: &[&str], rows: Vec<Vec<String>>, empty: &str) -> String {
    let mut t = format!("<div class=scroll><table id={id}><tr>");
    for h in headers {
        t += &format!("<th>{h}</th>");
    }
    t += "</tr>";
    for row in &rows {
        t += &format!("<tr><td>{}</td></tr>", row.join("</td><td>"));
    }
    if rows.is_empty() {
        t += &format!("<tr><td colspan={}>{empty}</td></tr>", headers.len());
    }
    t + "</table></div>"
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=hidden name={name} value=\"{}\">",
        escape(value)
    )
}

fn render_dashboard(v: &View, csrf: &str, flash: Option<Result<String, String>>) -> String {
    let s = v.status;
    let mut b = format!("<h1>Outpost: {}</h1>", escape(&s.domain));
    match flash {
        Some(Ok(msg)) => {
            b += &format!(
                "<p class=ok id=flash>OK {}</p>",
                escape(&msg).replace('\n', "<br>")
            )
        }
        Some(Err(msg)) => b += &format!("<p class=err id=flash>Error: {}</p>", escape(&msg)),
        None => {}
    }
    if v.facts.restart_pending {
        b += &format!(
            "<p class=err>Saved settings differ from the running ones.</p>{}",
            action_form(csrf, "restart", "", "Restart now")
        );
    }
    let st = &s.storage;
    b += &format!(
        "<h2>Status</h2><p>{} accounts, {} client connections, log {} bytes.<br>\
         <span id=space>Room archives: {} messages, {} of {} bytes ({}%); \
         {} bytes compressed, {} in memory. \
         Offline messages: {}, {} of {} bytes. \
         Accounts' archives: {} messages, {} of {} bytes.</span><br>\
         This node's link fingerprint: <code id=fingerprint>{}</code></p>",
        s.accounts,
        s.sessions,
        v.facts.log_bytes,
        st.archived_messages,
        st.archive_bytes,
        st.archive_budget,
        st.archive_bytes * 100 / st.archive_budget.max(1),
        st.archive_packed_bytes,
        st.archive_memory_bytes,
        st.offline_messages,
        st.offline_bytes,
        st.offline_budget,
        st.account_archive_messages,
        st.account_archive_bytes,
        st.account_archive_budget,
        escape(&v.facts.fingerprint)
    );
    let links = s
        .links
        .iter()
        .map(|l| {
            let state = if l.connected { "up" } else { "down" };
            vec![
                escape(&l.peer),
                format!("<span class={state}>{state}</span>"),
                l.rtt_ms.map_or("-".into(), |r| format!("{r} ms")),
                l.bytes_in.to_string(),
                l.bytes_out.to_string(),
                l.saved_bytes.to_string(),
                format!(
                    "<code>{}</code>",
                    escape(pinned_fingerprint(v.config, &l.peer).unwrap_or("(removed)"))
                ),
            ]
        })
        .collect();
    b += &table(
        "links",
        &[
            "Link",
            "State",
            "Round trip",
            "Bytes in",
            "Bytes out",
            "Saved by mirroring",
            "Pinned fingerprint",
        ],
        links,
        "No links configured.",
    );
    let rooms = s
        .rooms
        .iter()
        .map(|r| {
            let who: Vec<String> = r
                .occupants
                .iter()
                .map(|(n, j)| format!("{} ({})", escape(n), escape(j)))
                .collect();
            let origin = r.mirrored_from.as_ref().map_or(String::new(), |u| {
                format!("<br><small>mirror of {}</small>", escape(u))
            });
            vec![
                format!("{}{origin}", escape(&r.jid)),
                if who.is_empty() {
                    "-".into()
                } else {
                    who.join(", ")
                },
            ]
        })
        .collect();
    b += "<h2>Rooms</h2>";
    b += &table("rooms", &["Room", "Occupants"], rooms, "No rooms.");
    b += &format!(
        "<h2>Files</h2><p>Uploads: {} of {} bytes. Other nodes' files kept: {} of {} bytes.</p>",
        st.upload_bytes, st.upload_budget, st.file_cache_bytes, st.file_cache_budget
    );
    let transfers = s
        .transfers
        .iter()
        .map(|t| {
            let size = t.size.map_or("?".to_string(), |s| s.to_string());
            let percent = t.size.map_or(0, |s| t.have * 100 / s.max(1));
            vec![
                format!("{}<br><small>{}</small>", escape(&t.name), escape(&t.file)),
                escape(t.peer.as_deref().unwrap_or("(link down)")),
                format!("{} of {size} bytes ({percent}%)", t.have),
                format!("{} bytes/s", t.rate),
            ]
        })
        .collect();
    b += &table(
        "transfers",
        &["File", "From", "Progress", "Rate"],
        transfers,
        "No file is crossing a link.",
    );

    let c = v.config;
    b += &format!("<h2>Configuration</h2><p>Saved in <code>{}</code>. Changes are checked before they are saved; most apply after a restart.</p>", escape(&v.facts.config_file));
    b += &action_form(
        csrf,
        "config_set",
        &format!(
            "{}<label>Domain <input name=value value=\"{}\" required></label>",
            hidden("key", "domain"),
            escape(&c.domain.0)
        ),
        "Save",
    );
    b += &action_form(
        csrf,
        "config_set",
        "<label>Setting <input name=key placeholder=c2s.listen required></label><label>Value <input name=value required></label>",
        "Set",
    );
    let upstreams = c
        .upstream
        .iter()
        .map(|u| {
            vec![
                escape(&u.muc.0),
                escape(&u.connect),
                format!("<code>{}</code>", escape(&u.fingerprint)),
                action_form(csrf, "upstream_del", &hidden("muc", &u.muc.0), "Remove"),
            ]
        })
        .collect();
    b += "<h3>Upstreams (rooms mirrored here)</h3>";
    b += &table(
        "upstreams",
        &["MUC service", "Connect", "Fingerprint", ""],
        upstreams,
        "None.",
    );
    b += &action_form(
        csrf,
        "upstream_add",
        "<label>MUC service <input name=muc placeholder=conference.hq.example required></label>\
         <label>Connect <input name=connect placeholder=hq.example:5270 required></label>\
         <label>Fingerprint <input name=fingerprint required></label>",
        "Add upstream",
    );
    let peers = c
        .link
        .peer
        .iter()
        .map(|p| {
            vec![
                escape(&p.domain.0),
                format!("<code>{}</code>", escape(&p.fingerprint)),
                action_form(csrf, "peer_del", &hidden("domain", &p.domain.0), "Remove"),
            ]
        })
        .collect();
    b += "<h3>Peers (sites that mirror our rooms)</h3>";
    b += &table("peers", &["Domain", "Fingerprint", ""], peers, "None.");
    b += &action_form(
        csrf,
        "peer_add",
        "<label>Domain <input name=domain placeholder=site.example required></label><label>Fingerprint <input name=fingerprint required></label>",
        "Add peer",
    );
    let users = v
        .users
        .iter()
        .map(|u| {
            vec![
                escape(&format!("{u}@{}", s.domain)),
                action_form(csrf, "user_del", &hidden("user", u), "Delete"),
            ]
        })
        .collect();
    b += "<h2>Users</h2>";
    b += &table("users", &["Account", ""], users, "No accounts yet.");
    b += &action_form(
        csrf,
        "user_add",
        "<label>Name <input name=user required autocapitalize=none></label><label>Password <input type=password name=password autocomplete=new-password required></label>",
        "Add user",
    );
    b += &action_form(
        csrf,
        "user_passwd",
        "<label>Name <input name=user required autocapitalize=none></label><label>New password <input type=password name=password autocomplete=new-password required></label>",
        "Set password",
    );
    b += "<h2>Admin</h2>";
    b += &action_form(
        csrf,
        "admin_passwd",
        "<label>New admin password <input type=password name=password autocomplete=new-password required></label>",
        "Change",
    );
    b += &action_form(csrf, "restart", "", "Restart the node");
    b += &action_form(csrf, "logout", "", "Log out");
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::http::{parse, Parsed};

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn req(raw: &str) -> Request {
        match parse(raw.as_bytes()) {
            Parsed::Done(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn post(path: &str, cookie: &str, body: &str) -> Request {
        req(&format!(
            "POST {path} HTTP/1.1\r\nCookie: {COOKIE}={cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    fn session_of(r: &Response) -> (String, String) {
        let cookie = r
            .headers
            .iter()
            .find(|(n, _)| n == "Set-Cookie")
            .unwrap()
            .1
            .clone();
        let sid = cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string();
        let body = String::from_utf8(r.body.clone()).unwrap();
        let csrf = body
            .split("name=csrf value=\"")
            .nth(1)
            .map(|s| s.split('"').next().unwrap().to_string())
            .unwrap_or_default();
        (sid, csrf)
    }

    #[test]
    fn login_needs_the_token_and_actions_need_a_login() {
        let mut w = Web::default();
        let Step::Respond(r) = w.route(&req("GET / HTTP/1.1\r\n\r\n"), PEER, 0, [1; 32], true)
        else {
            panic!()
        };
        assert_eq!(r.status, 303);
        let Step::Respond(r) = w.route(&req("GET /login HTTP/1.1\r\n\r\n"), PEER, 0, [2; 32], true)
        else {
            panic!()
        };
        let (sid, csrf) = session_of(&r);
        assert!(r
            .headers
            .iter()
            .any(|(_, v)| v.contains("HttpOnly; Secure; SameSite=Strict")));
        let Step::Respond(r) = w.route(&post("/login", &sid, "password=x"), PEER, 0, [3; 32], true)
        else {
            panic!()
        };
        assert_eq!(r.status, 403, "no CSRF token");
        let Step::Respond(r) = w.route(
            &post("/action", &sid, &format!("csrf={csrf}&op=restart")),
            PEER,
            0,
            [3; 32],
            true,
        ) else {
            panic!()
        };
        assert_eq!(r.status, 403, "not logged in");
        let Step::Login { sid: s2, password } = w.route(
            &post("/login", &sid, &format!("csrf={csrf}&password=pw")),
            PEER,
            0,
            [3; 32],
            true,
        ) else {
            panic!()
        };
        assert_eq!((s2.as_str(), password.as_str()), (sid.as_str(), "pw"));
        let r = w.login_result(&sid, PEER, true, 0, [4; 32]);
        let (authed, _) = session_of(&r);
        assert_ne!(authed, sid);
        assert!(matches!(
            w.route(
                &req(&format!(
                    "GET / HTTP/1.1\r\nCookie: {COOKIE}={authed}\r\n\r\n"
                )),
                PEER,
                1,
                [5; 32],
                true
            ),
            Step::Dashboard { .. }
        ));
    }

    #[test]
    fn wrong_passwords_are_throttled() {
        let mut w = Web::default();
        let Step::Respond(r) = w.route(&req("GET /login HTTP/1.1\r\n\r\n"), PEER, 0, [2; 32], true)
        else {
            panic!()
        };
        let (sid, csrf) = session_of(&r);
        let login = post("/login", &sid, &format!("csrf={csrf}&password=no"));
        for _ in 0..3 {
            assert!(matches!(
                w.route(&login, PEER, 0, [3; 32], true),
                Step::Login { .. }
            ));
            assert_eq!(w.login_result(&sid, PEER, false, 0, [3; 32]).status, 403);
        }
        let Step::Respond(r) = w.route(&login, PEER, 0, [3; 32], true) else {
            panic!()
        };
        assert_eq!(r.status, 429);
        assert!(matches!(
            w.route(&login, PEER, 1000, [3; 32], true),
            Step::Login { .. }
        ));
    }

    /// Load the login form from `peer` as a browser does: (cookie, token).
    fn login_form(w: &mut Web, peer: IpAddr, now: u64) -> (String, String) {
        let get = req("GET /login HTTP/1.1\r\n\r\n");
        let Step::Respond(r) = w.route(&get, peer, now, [now as u8; 32], true) else {
            panic!("the form")
        };
        session_of(&r)
    }

    #[test]
    fn a_guesser_does_not_keep_the_admin_out_from_elsewhere() {
        let mut w = Web::default();
        let guesser: IpAddr = "192.0.2.66".parse().unwrap();
        let mut last = 0;
        for now in 0..50 {
            let (sid, csrf) = login_form(&mut w, guesser, now);
            let guess = post("/login", &sid, &format!("csrf={csrf}&password=no"));
            match w.route(&guess, guesser, now, [7; 32], true) {
                Step::Login { sid, .. } => {
                    w.login_result(&sid, guesser, false, now, [8; 32]);
                }
                Step::Respond(r) => last = r.status,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(last, 429, "the guesser is slowed");
        // The admin's form, loaded before the guessing went on, still works.
        let (sid, csrf) = login_form(&mut w, PEER, 50);
        for now in 51..100 {
            login_form(&mut w, guesser, now);
        }
        let login = post("/login", &sid, &format!("csrf={csrf}&password=right"));
        let Step::Login { sid, .. } = w.route(&login, PEER, 100, [9; 32], true) else {
            panic!("the admin's first try is checked at once")
        };
        let r = w.login_result(&sid, PEER, true, 100, [10; 32]);
        assert_eq!(r.status, 303);
        let (authed, _) = session_of(&r);
        let home = req(&format!(
            "GET / HTTP/1.1\r\nCookie: {COOKIE}={authed}\r\n\r\n"
        ));
        assert!(matches!(
            w.route(&home, PEER, 101, [11; 32], true),
            Step::Dashboard { .. }
        ));
    }

    #[test]
    fn forms_become_commands() {
        let form = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            form_command(&form(&[
                ("op", "config_set"),
                ("key", "domain"),
                ("value", "a.example")
            ]))
            .unwrap(),
            Command::ConfigSet {
                key: "domain".into(),
                value: "a.example".into()
            }
        );
        assert!(form_command(&form(&[("op", "user_add"), ("user", "bob")]))
            .unwrap_err()
            .contains("password"));
        assert!(form_command(&form(&[("op", "drop_tables")])).is_err());
    }
}
