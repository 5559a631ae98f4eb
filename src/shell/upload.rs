//! The upload HTTPS server on `[upload] listen`: PUT of a slot's file
//! (XEP-0363), GET and HEAD with ranges, of this node's files and of other
//! nodes' (fetched over the link once, served as their bytes arrive).
//! `files` decides; this file does the I/O. A body is streamed to its part
//! file and hashed on the way, never held whole.
//!
//! Connections are capped in all and per address; every read and write
//! has a deadline for progress, not for the whole transfer (a phone on
//! bad Wi-Fi may take minutes over a photo).

use super::accept::{Acceptor, Slot};
use super::admin_ops::AdminOps;
use super::files::DiskFiles;
use crate::admission::Admission;
use crate::files::http::{self, Head, HeadParse, Range};
use crate::files::{FileAnswer, FileAsk, FileKey, FileStore};
use crate::node::{AdminCommand, AdminReply};
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::{Async, LocalExecutor, Timer};
use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

const MAX_OPEN: usize = 128;
const MAX_OPEN_PER_ADDRESS: usize = 16;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Each read or write must make progress within this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Answers from the node's file machine with nothing new before a GET of
/// a file still crossing the link gives up (the client resumes with a range).
const STALLED_WAITS: u32 = 3;
const BUF: usize = 16 * 1024;
/// A request's head, or the next request on a kept connection, must come
/// within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn serve(
    ex: &'static LocalExecutor<'static>,
    listener: Async<TcpListener>,
    tls: futures_rustls::TlsAcceptor,
    ops: Rc<AdminOps>,
    store: Rc<DiskFiles>,
) {
    let admission = Rc::new(RefCell::new(Admission::new(MAX_OPEN, MAX_OPEN_PER_ADDRESS)));
    let mut acceptor = Acceptor::new(listener, "upload");
    loop {
        let (stream, addr) = acceptor.next().await;
        let Ok(slot) = Slot::take(&admission, addr.ip()) else {
            continue;
        };
        let (ops, tls, store) = (ops.clone(), tls.clone(), store.clone());
        ex.spawn(async move {
            if let Err(e) = handle(stream, addr.ip(), &tls, &ops, &store).await {
                log::debug!("upload {addr}: {e}");
            }
            drop(slot);
        })
        .detach();
    }
}

/// `work`, or an error naming `what` once `limit` has passed.
async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = std::io::Result<T>>,
) -> Result<T, String> {
    future::or(
        async { work.await.map_err(|e| format!("{what}: {e}")) },
        async {
            Timer::after(limit).await;
            Err(format!("{what}: no progress in {} s", limit.as_secs()))
        },
    )
    .await
}

async fn handle(
    stream: Async<std::net::TcpStream>,
    _peer: IpAddr,
    tls: &futures_rustls::TlsAcceptor,
    ops: &AdminOps,
    store: &DiskFiles,
) -> Result<(), String> {
    let mut s = within(HANDSHAKE_TIMEOUT, "the TLS handshake", tls.accept(stream)).await?;
    // One request after another on the connection, while the client
    // wants; bytes past one request (pipelined) start the next.
    let mut buf = Vec::new();
    loop {
        let head_read = read_head(&mut s, std::mem::take(&mut buf));
        let (head, rest) = match within_total(HEAD_TIMEOUT, head_read).await? {
            Some(parsed) => parsed,
            None => return Ok(()), // closed between requests
        };
        let bodied = head.header("transfer-encoding").is_some()
            || head.content_length().is_ok_and(|n| n > 0);
        let keep = match head.method.as_str() {
            "PUT" => match put(&mut s, &head, rest, ops, store).await? {
                Some(after) => {
                    buf = after;
                    true
                }
                None => false,
            },
            // A body where none belongs would be read as the next request.
            _ if bodied => refuse(&mut s, 400, "this request takes no body").await?,
            "GET" | "HEAD" => {
                buf = rest;
                get(&mut s, &head, ops, store).await?
            }
            "OPTIONS" => {
                buf = rest;
                respond(&mut s, 204, &[], b"").await?;
                true
            }
            _ => refuse(&mut s, 405, "method not allowed").await?,
        };
        let close = head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if !keep || close {
            return flush_close(&mut s).await;
        }
    }
}

/// A head (a request's, or the wait for the next on a kept connection)
/// must come whole within `limit`, however slowly its bytes trickle.
async fn within_total<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    future::or(work, async {
        Timer::after(limit).await;
        Err(format!("no whole request within {} s", limit.as_secs()))
    })
    .await
}

async fn flush_close<S: AsyncWrite + Unpin>(s: &mut S) -> Result<(), String> {
    within(IDLE_TIMEOUT, "closing", async {
        s.flush().await?;
        s.close().await
    })
    .await
}

/// The next request's head, and what came after it; none if the client
/// closed before sending one. A bad head gets its status and an error.
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    mut buf: Vec<u8>,
) -> Result<Option<(Head, Vec<u8>)>, String> {
    let mut chunk = [0u8; 2048];
    loop {
        match http::parse_head(&buf) {
            HeadParse::Done(head, used) => return Ok(Some((head, buf.split_off(used)))),
            HeadParse::Error(status, why) => {
                respond(s, status, &[], format!("{why}\n").as_bytes()).await?;
                return Err(why.into());
            }
            HeadParse::Incomplete => {}
        }
        let n = within(IDLE_TIMEOUT, "the request", s.read(&mut chunk)).await?;
        if n == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err("the request ended early".into()),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn ask(ops: &AdminOps, ask: FileAsk) -> Result<FileAnswer, String> {
    match ops.ask(AdminCommand::File(ask)).await? {
        AdminReply::File(answer) => Ok(answer),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// Headers every response carries: what was uploaded is data, never a
/// page of this origin; web clients on other origins may fetch it.
fn common_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Access-Control-Allow-Origin", "*".into()),
        (
            "Access-Control-Allow-Methods",
            "GET, HEAD, PUT, OPTIONS".into(),
        ),
        ("Access-Control-Allow-Headers", "Content-Type, Range".into()),
        ("X-Content-Type-Options", "nosniff".into()),
        (
            "Content-Security-Policy",
            "default-src 'none'; sandbox".into(),
        ),
    ]
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        507 => "Insufficient Storage",
        _ => "",
    }
}

fn head_bytes(status: u16, headers: &[(&str, String)], len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in common_headers().iter().chain(headers) {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    let _ = write!(out, "Content-Length: {len}\r\n\r\n");
    out
}

async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(), String> {
    let mut out = head_bytes(status, headers, body.len() as u64);
    out.extend_from_slice(body);
    within(IDLE_TIMEOUT, "the response", s.write_all(&out)).await?;
    within(IDLE_TIMEOUT, "the response", s.flush()).await
}

async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, status: u16, why: &str) -> Result<bool, String> {
    let headers = [("Content-Type", "text/plain; charset=utf-8".to_string())];
    respond(s, status, &headers, format!("{why}\n").as_bytes()).await?;
    // After a refused PUT the body may still be coming: close.
    Ok(false)
}

/// Most of a refused PUT's body read and dropped before the connection
/// closes, so a client that sends it all before reading sees the answer.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// Refuse a PUT whose body (`remaining` bytes of it) is still coming.
async fn refuse_put<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    why: &str,
    remaining: u64,
) -> Result<bool, String> {
    refuse(s, status, why).await?;
    let mut left = remaining.min(DRAIN_MAX);
    let mut buf = vec![0u8; BUF];
    while left > 0 {
        let want = (left as usize).min(BUF);
        match within(IDLE_TIMEOUT, "the refused upload", s.read(&mut buf[..want])).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left -= n as u64,
        }
    }
    Ok(false)
}

/// A PUT: the slot's token says who may; the body goes to the part file,
/// hashed on the way; the node checks and indexes it.
async fn put<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    head: &Head,
    first: Vec<u8>,
    ops: &AdminOps,
    store: &DiskFiles,
) -> Result<Option<Vec<u8>>, String> {
    let closed = |r: Result<bool, String>| r.map(|_| None);
    let len = match head.content_length() {
        Ok(len) => len,
        Err((status, why)) => return closed(refuse(s, status, why).await),
    };
    let (path, token) = (
        head.path().to_string(),
        head.query("token").unwrap_or("").to_string(),
    );
    let put = FileAsk::Put {
        path: path.clone(),
        token: token.clone(),
        len,
    };
    let key = match ask(ops, put).await? {
        FileAnswer::PutAccepted { key } => key,
        FileAnswer::Refused { status, why } => {
            // A client waiting for 100 Continue sends no body.
            let remaining = match expects_continue(head) {
                true => 0,
                false => len.saturating_sub(first.len() as u64),
            };
            return closed(refuse_put(s, status, &why, remaining).await);
        }
        other => return Err(format!("unexpected answer: {other:?}")),
    };
    let received = async {
        if expects_continue(head) {
            let go = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            within(IDLE_TIMEOUT, "100-continue", go).await?;
        }
        receive_body(s, &key, first, len, store).await
    };
    let (sha256, after) = match received.await {
        Ok(got) => got,
        Err(e) => {
            // Nothing kept; the slot may be used again while it lives.
            store.remove(&key);
            ask(ops, FileAsk::PutFailed { token }).await?;
            return Err(e);
        }
    };
    let done = FileAsk::PutDone {
        path,
        token,
        len,
        sha256,
    };
    match ask(ops, done).await? {
        FileAnswer::Stored => {
            respond(s, 201, &[], b"").await?;
            Ok(Some(after))
        }
        FileAnswer::Refused { status, why } => {
            store.remove(&key);
            closed(refuse(s, status, &why).await)
        }
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

fn expects_continue(head: &Head) -> bool {
    head.header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
}

/// Exactly `len` bytes of body into `key`'s part file: their SHA-256, and
/// what came after them (the next request, pipelined).
async fn receive_body<S: AsyncRead + Unpin>(
    s: &mut S,
    key: &FileKey,
    mut pending: Vec<u8>,
    len: u64,
    store: &DiskFiles,
) -> Result<(String, Vec<u8>), String> {
    let io = |e: std::io::Error| format!("storing the upload: {e}");
    let mut file = store.create_part(key).map_err(io)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut got = 0u64;
    let mut buf = vec![0u8; BUF];
    let after = loop {
        let take = pending.len().min((len - got) as usize);
        let after = pending.split_off(take);
        file.write_all(&pending).map_err(io)?;
        ctx.update(&pending);
        got += pending.len() as u64;
        if got == len {
            break after;
        }
        let want = ((len - got) as usize).min(BUF);
        let n = within(IDLE_TIMEOUT, "the upload", s.read(&mut buf[..want])).await?;
        if n == 0 {
            return Err("the upload ended early".into());
        }
        pending = buf[..n].to_vec();
    };
    file.sync_all().map_err(io)?;
    Ok((crate::common::hex(ctx.finish().as_ref()), after))
}

/// A GET or HEAD: the whole file or one range of it. A file still
/// crossing the link is served as its bytes arrive.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    head: &Head,
    ops: &AdminOps,
    store: &DiskFiles,
) -> Result<bool, String> {
    let path = head.path().to_string();
    let (key, meta, mut have, mut complete) = match ask(
        ops,
        FileAsk::Get {
            path,
            head: head.method == "HEAD",
        },
    )
    .await?
    {
        FileAnswer::Serve {
            key,
            meta,
            have,
            complete,
        } => (key, meta, have, complete),
        FileAnswer::Refused { status, why } => return refuse(s, status, &why).await,
        other => return Err(format!("unexpected answer: {other:?}")),
    };
    let size = meta.size;
    let (status, start, end) = match http::range(head.header("range"), size) {
        Range::Full => (200, 0, size),
        Range::Part { start, end } => (206, start, end + 1),
        Range::Unsatisfiable => {
            let headers = [("Content-Range", format!("bytes */{size}"))];
            respond(s, 416, &headers, b"").await?;
            return Ok(true);
        }
    };
    let disposition = if meta.content_type.starts_with("image/")
        || meta.content_type.starts_with("audio/")
        || meta.content_type.starts_with("video/")
    {
        "inline"
    } else {
        "attachment"
    };
    let mut headers = vec![
        ("Content-Type", meta.content_type.clone()),
        ("Accept-Ranges", "bytes".to_string()),
        (
            "Cache-Control",
            "public, max-age=31536000, immutable".to_string(),
        ),
        ("ETag", format!("\"{}\"", meta.sha256)),
        (
            "Content-Disposition",
            format!(
                "{disposition}; filename*=UTF-8''{}",
                crate::files::url::encode(&meta.name)
            ),
        ),
    ];
    if status == 206 {
        headers.push(("Content-Range", format!("bytes {start}-{}/{size}", end - 1)));
    }
    let head_out = head_bytes(status, &headers, end - start);
    within(IDLE_TIMEOUT, "the response", s.write_all(&head_out)).await?;
    if head.method == "HEAD" {
        within(IDLE_TIMEOUT, "the response", s.flush()).await?;
        return Ok(true);
    }
    // Opened once: a file evicted from the cache (or a part file made the
    // file) while it is served stays readable to the end of the response.
    let mut file = store
        .open_file(&key)
        .map_err(|e| format!("opening {key}: {e}"))?;
    let mut at = start;
    let mut stalled = 0;
    while at < end {
        if at >= have && !complete {
            within(IDLE_TIMEOUT, "the response", s.flush()).await?;
            match ask(
                ops,
                FileAsk::Wait {
                    key: key.clone(),
                    have,
                },
            )
            .await?
            {
                FileAnswer::Serve {
                    have: h,
                    complete: c,
                    ..
                } => {
                    stalled = if h > have || c { 0 } else { stalled + 1 };
                    (have, complete) = (h, c);
                }
                // The fetch failed: the body stops short; the client sees it.
                FileAnswer::Refused { why, .. } => return Err(why),
                other => return Err(format!("unexpected answer: {other:?}")),
            }
            if stalled >= STALLED_WAITS {
                return Err("the file stopped coming".into());
            }
            continue;
        }
        let upto = if complete { end } else { end.min(have) };
        let len = ((upto - at) as usize).min(BUF);
        let bytes =
            super::files::read_at(&mut file, at, len).map_err(|e| format!("reading {key}: {e}"))?;
        if bytes.is_empty() {
            return Err(format!("{key} is shorter than its size"));
        }
        within(IDLE_TIMEOUT, "the response", s.write_all(&bytes)).await?;
        at += bytes.len() as u64;
    }
    within(IDLE_TIMEOUT, "the response", s.flush()).await?;
    Ok(true)
}
