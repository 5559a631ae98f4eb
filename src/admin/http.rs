//! A small HTTP/1.1 request parser and response writer for the local web
//! page (sans-IO). One request per connection, bounded head and body,
//! `Content-Length` bodies only: enough for a browser on the site LAN, and
//! every deviation gets its own status code.

/// Request line plus headers.
pub const MAX_HEAD: usize = 8 * 1024;
pub const MAX_BODY: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    Done(Request),
    /// Answer with this status and close.
    Error(u16, &'static str),
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The body as `application/x-www-form-urlencoded` fields.
    pub fn form(&self) -> Result<Vec<(String, String)>, &'static str> {
        let ctype = self.header("content-type").unwrap_or("");
        if !ctype
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err("expected a form (application/x-www-form-urlencoded)");
        }
        let body = std::str::from_utf8(&self.body).map_err(|_| "the form is not UTF-8")?;
        body.split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                Ok((url_decode(k)?, url_decode(v)?))
            })
            .collect()
    }
}

fn url_decode(s: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next(), bytes.next()];
                let [Some(h), Some(l)] = hex else {
                    return Err("a truncated %-escape in the form");
                };
                let digit = |c: u8| (c as char).to_digit(16);
                match (digit(h), digit(l)) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err("a malformed %-escape in the form"),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| "the form is not UTF-8")
}

/// Parse one request from the bytes received so far.
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        // The blank line may still arrive and start at MAX_HEAD: only once
        // it could no longer fit is the head too large (else where the
        // reads happen to split the request would decide).
        return if buf.len() >= MAX_HEAD + 4 {
            Parsed::Error(431, "request head too large")
        } else {
            Parsed::Incomplete
        };
    };
    if head_end > MAX_HEAD {
        return Parsed::Error(431, "request head too large");
    }
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Parsed::Error(400, "request head is not UTF-8");
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Error(400, "malformed request line");
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Parsed::Error(505, "HTTP/1.0 or 1.1 only");
    }
    if !target.starts_with('/') {
        return Parsed::Error(400, "the request target must be a path");
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Error(400, "malformed header line");
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            return Parsed::Error(400, "malformed header name");
        }
        if headers.len() == MAX_HEADERS {
            return Parsed::Error(431, "too many headers");
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("/").to_string(),
        headers,
        body: Vec::new(),
    };
    if req.header("transfer-encoding").is_some() {
        return Parsed::Error(501, "chunked bodies are not accepted; send Content-Length");
    }
    let length = match req.header("content-length").map(|v| v.parse::<usize>()) {
        None if req.method == "POST" => return Parsed::Error(411, "Content-Length required"),
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Parsed::Error(400, "malformed Content-Length"),
    };
    if length > MAX_BODY {
        return Parsed::Error(413, "request body too large");
    }
    let body_start = head_end + 4;
    if buf.len() < body_start + length {
        return Parsed::Incomplete;
    }
    req.body = buf[body_start..body_start + length].to_vec();
    Parsed::Done(req)
}

/// How a response travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    /// Plain HTTP: only the redirect to https goes this way.
    Plain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn html(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            body: body.into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: format!("{body}\n").into_bytes(),
        }
    }

    /// 303 See Other: after a form, the browser loads `location` with GET.
    pub fn redirect(location: &str) -> Response {
        Response {
            status: 303,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &str, value: String) -> Response {
        self.headers.push((name.into(), value));
        self
    }

    pub fn to_bytes(&self, transport: Transport) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        // Nothing from elsewhere may load, run or frame the page.
        head.push_str(
            "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'\r\n\
             X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
        );
        // Browsers that reached the page over https keep to it for a year.
        // Not over plain HTTP, where anyone could have written it (RFC 6797 §7.2).
        if transport == Transport::Tls {
            head.push_str("Strict-Transport-Security: max-age=31536000\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (http target): a head that ends just below the
    /// limit was refused when a read ended inside its blank line.
    #[test]
    fn a_head_at_the_limit_is_accepted_however_it_is_split() {
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.resize(MAX_HEAD - 2, b'a');
        raw.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse(&raw), Parsed::Done(_)));
        for cut in MAX_HEAD - 2..raw.len() {
            assert_eq!(parse(&raw[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        let mut long = raw[..MAX_HEAD].to_vec();
        long.extend_from_slice(b"bbbb");
        assert_eq!(parse(&long), Parsed::Error(431, "request head too large"));
    }

    #[test]
    fn requests_parse_in_pieces() {
        let body = "password=a+b%21&x=%C3%A9";
        let raw = format!("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nCookie: a=1; sid=abc\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let raw = raw.as_bytes();
        assert_eq!(parse(&raw[..30]), Parsed::Incomplete);
        assert_eq!(parse(&raw[..raw.len() - 3]), Parsed::Incomplete);
        let Parsed::Done(r) = parse(raw) else {
            panic!("a whole request")
        };
        assert_eq!(r.path, "/login");
        assert_eq!(r.cookie("sid"), Some("abc"));
        assert_eq!(
            r.form().unwrap(),
            vec![
                ("password".to_string(), "a b!".to_string()),
                ("x".to_string(), "\u{e9}".to_string())
            ]
        );
    }

    #[test]
    fn bad_requests_get_their_status() {
        assert_eq!(
            parse(b"GARBAGE\r\n\r\n"),
            Parsed::Error(400, "malformed request line")
        );
        assert_eq!(parse(b"GET / HTTP/2\r\n\r\n").status(), Some(505));
        assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n").status(), Some(411));
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(parse(big.as_bytes()).status(), Some(413));
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(parse(&huge).status(), Some(431));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").status(),
            Some(501)
        );
        let r = Request {
            method: "POST".into(),
            path: "/".into(),
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: b"a=%zz".to_vec(),
        };
        assert!(r.form().is_err());
    }

    #[test]
    fn responses_over_tls_and_only_those_carry_hsts() {
        let hsts = "\r\nStrict-Transport-Security: max-age=31536000\r\n";
        let has_hsts = |r: &Response, t| String::from_utf8(r.to_bytes(t)).unwrap().contains(hsts);
        for r in [
            Response::html(200, "<p>hi</p>".into()),
            Response::text(408, "too slow"),
            Response::redirect("/login"),
        ] {
            assert!(has_hsts(&r, Transport::Tls), "{r:?}");
            assert!(!has_hsts(&r, Transport::Plain), "{r:?}");
        }
    }

    impl Parsed {
        fn status(&self) -> Option<u16> {
            match self {
                Parsed::Error(s, _) => Some(*s),
                _ => None,
            }
        }
    }
}
