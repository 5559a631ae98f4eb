//! The upload server's HTTP, without I/O: a request's head (its body is
//! streamed to a file, never held), and byte ranges (RFC 9110 §14).

pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeadParse {
    /// The head, and how many bytes of the buffer it took.
    Done(Head, usize),
    Incomplete,
    Error(u16, &'static str),
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter's value (not decoded: tokens are hex).
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The body's length: `Content-Length`, which a PUT must give (no
    /// chunked uploads: a client knows its file's size).
    pub fn content_length(&self) -> Result<u64, (u16, &'static str)> {
        if self.header("transfer-encoding").is_some() {
            return Err((411, "send Content-Length, not a chunked body"));
        }
        let mut lengths = self.headers.iter().filter(|(n, _)| n == "content-length");
        match (lengths.next(), lengths.next()) {
            (None, _) => Err((411, "Content-Length is required")),
            (Some(_), Some(_)) => Err((400, "Content-Length is given twice")),
            (Some((_, v)), None) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                v.parse().map_err(|_| (400, "Content-Length is too large"))
            }
            (Some(_), None) => Err((400, "Content-Length is not a number")),
        }
    }
}

pub fn parse_head(buf: &[u8]) -> HeadParse {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            HeadParse::Error(431, "the request head is too large")
        } else {
            HeadParse::Incomplete
        };
    };
    if end > MAX_HEAD {
        return HeadParse::Error(431, "the request head is too large");
    }
    let Ok(text) = std::str::from_utf8(&buf[..end]) else {
        return HeadParse::Error(400, "the request head is not UTF-8");
    };
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return HeadParse::Error(400, "a malformed request line");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return HeadParse::Error(400, "a malformed request line");
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return HeadParse::Error(400, "a malformed header");
        };
        if headers.len() == MAX_HEADERS {
            return HeadParse::Error(431, "too many headers");
        }
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let head = Head {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    };
    HeadParse::Done(head, end + 4)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The whole file (no range asked, or one this server ignores).
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Starts past the end: 416.
    Unsatisfiable,
}

/// The range a `Range` header asks of a file of `size` bytes. One range
/// of bytes is served; several, or another unit, get the whole file.
pub fn range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last `b` bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Range::Full;
        };
        if n == 0 || size == 0 {
            return Range::Unsatisfiable;
        }
        return Range::Part {
            start: size.saturating_sub(n),
            end: size - 1,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return Range::Full;
    };
    let end = match b {
        "" => size.saturating_sub(1),
        b => match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size.saturating_sub(1)),
            _ => return Range::Full,
        },
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    Range::Part { start, end }
}

/// A content type as the uploader gave it, if it is one (`type/subtype`,
/// parameters kept); anything else is served as bytes.
pub fn content_type(given: Option<&str>) -> String {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+/;= \"".contains(&b))
            && s.split(';').next().is_some_and(|t| {
                t.trim()
                    .split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            })
    };
    match given.map(str::trim) {
        Some(t) if ok(t) => t.to_string(),
        _ => "application/octet-stream".to_string(),
    }
}
