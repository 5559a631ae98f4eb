//! The local web page on `[admin] http`, over HTTPS with the node's c2s
//! certificate (so the admin password and the session cookie never cross
//! the site LAN in clear). A plain-HTTP request gets a redirect to https.
//! One request per connection; `admin::web` decides, this file does the I/O.
//!
//! No one may keep the page from the admin: connections are capped in all
//! and per address, and every phase of a connection has a deadline, so an
//! address holds at most its share of the slots, each for a bounded time.

use super::accept::{Acceptor, Slot};
use super::admin_ops::AdminOps;
use crate::admin::http::{self, Parsed, Response, Transport};
use crate::admin::web::{Step, View, Web};
use crate::admission::Admission;
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::{Async, LocalExecutor, Timer};
use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Connections served at once; one over the cap is closed at once.
const MAX_OPEN: usize = 64;
/// Connections one address (an IPv6 /64) may hold at once: a browser opens
/// up to six to one host.
const MAX_OPEN_PER_ADDRESS: usize = 8;
/// A connection must start its TLS handshake (or plain request) within this.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request must arrive whole within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The response must be taken within this.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection holds a slot longer than this, whatever it waits for.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(
    ex: &'static LocalExecutor<'static>,
    listener: Async<TcpListener>,
    tls: futures_rustls::TlsAcceptor,
    ops: Rc<AdminOps>,
) {
    let web = Rc::new(RefCell::new(Web::default()));
    let start = Instant::now();
    let admission = Rc::new(RefCell::new(Admission::new(MAX_OPEN, MAX_OPEN_PER_ADDRESS)));
    let mut acceptor = Acceptor::new(listener, "web");
    loop {
        let (stream, addr) = acceptor.next().await;
        let slot = match Slot::take(&admission, addr.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                // Debug only: a flood of connections must not flood the log.
                log::debug!("web {addr}: closed at once: {}", why.text());
                continue;
            }
        };
        let (web, ops, tls) = (web.clone(), ops.clone(), tls.clone());
        ex.spawn(async move {
            let handled = handle(stream, addr.ip(), &tls, &web, &ops, start);
            if let Err(e) = within(CONNECTION_TIMEOUT, "the connection", handled).await {
                log::debug!("web {addr}: {e}");
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
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    future::or(work, async {
        Timer::after(limit).await;
        Err(format!("{what} took longer than {} s", limit.as_secs()))
    })
    .await
}

async fn handle(
    stream: Async<TcpStream>,
    peer: IpAddr,
    tls: &futures_rustls::TlsAcceptor,
    web: &RefCell<Web>,
    ops: &AdminOps,
    start: Instant,
) -> Result<(), String> {
    let mut first = [0u8; 1];
    let peeked = within(FIRST_BYTE_TIMEOUT, "the first byte", async {
        stream.peek(&mut first).await.map_err(|e| e.to_string())
    });
    if peeked.await? == 0 {
        return Err("closed before sending anything".into());
    }
    if first[0] != 0x16 {
        // Not a TLS handshake: a browser that typed http://.
        return redirect_to_https(stream).await;
    }
    let handshake = within(HANDSHAKE_TIMEOUT, "the TLS handshake", async {
        tls.accept(stream).await.map_err(|e| format!("TLS: {e}"))
    });
    let mut tls = handshake.await?;
    let req = match read_request(&mut tls).await {
        Ok(r) => r,
        Err(response) => return send(&mut tls, response, Transport::Tls).await,
    };
    let response = answer(&req, peer, web, ops, start).await;
    let sent = send(&mut tls, response, Transport::Tls).await;
    ops.restart_if_requested().await;
    sent
}

async fn redirect_to_https(mut plain: Async<TcpStream>) -> Result<(), String> {
    let response = match read_request(&mut plain).await {
        Ok(req) => match req.header("host") {
            Some(host) if !host.is_empty() => {
                Response::redirect(&format!("https://{host}{}", req.path)).with_status(301)
            }
            _ => Response::text(400, "use https://"),
        },
        Err(r) => r,
    };
    send(&mut plain, response, Transport::Plain).await
}

/// Route the request and do what the route asks of the node.
async fn answer(
    req: &http::Request,
    peer: IpAddr,
    web: &RefCell<Web>,
    ops: &AdminOps,
    start: Instant,
) -> Response {
    let now = || start.elapsed().as_millis() as u64;
    let password_set = ops.password_set().await;
    let step = web
        .borrow_mut()
        .route(req, peer, now(), super::random_seed(), password_set);
    match step {
        Step::Respond(r) => r,
        Step::Login { sid, password } => {
            let ok = ops.check_password(&password).await;
            web.borrow_mut()
                .login_result(&sid, peer, ok, now(), super::random_seed())
        }
        Step::Setup { sid, password } => {
            let result = ops.set_password(&password).await.map(|_| ());
            web.borrow_mut()
                .setup_done(&sid, peer, result, now(), super::random_seed())
        }
        Step::Run { sid, cmd } => {
            let result = ops.run(cmd).await;
            web.borrow_mut().run_result(&sid, now(), result)
        }
        Step::Dashboard { sid } => match (ops.status().await, ops.users().await) {
            (Ok(status), Ok(users)) => {
                let (facts, config) = (ops.facts(), ops.saved_config());
                let view = View {
                    status: &status,
                    facts: &facts,
                    config: &config,
                    users: &users,
                };
                web.borrow_mut().dashboard(&sid, now(), &view)
            }
            (Err(e), _) | (_, Err(e)) => Response::text(500, &e),
        },
    }
}

async fn send<S: AsyncWrite + Unpin>(
    s: &mut S,
    r: Response,
    transport: Transport,
) -> Result<(), String> {
    within(RESPONSE_TIMEOUT, "sending the response", async {
        let io = |e: std::io::Error| e.to_string();
        s.write_all(&r.to_bytes(transport)).await.map_err(io)?;
        s.flush().await.map_err(io)?;
        s.close().await.map_err(io)
    })
    .await
}

/// Read until one whole request is in; a bad or slow one gets its status.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Result<http::Request, Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let deadline = Timer::after(REQUEST_TIMEOUT);
    let read = async {
        loop {
            match http::parse(&buf) {
                Parsed::Done(r) => return Ok(r),
                Parsed::Error(status, why) => return Err(Response::text(status, why)),
                Parsed::Incomplete => {}
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(Response::text(400, "the request ended early")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    future::or(read, async {
        deadline.await;
        Err(Response::text(408, "the request took too long"))
    })
    .await
}
