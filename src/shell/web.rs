//! The local web page on `[admin] http`, over HTTPS with the node's c2s
//! certificate (so the admin password and the session cookie never cross
//! the site LAN in clear). A plain-HTTP request gets a redirect to https.
//! One request per connection; `admin::web` decides, this file does the I/O.

use super::admin_ops::AdminOps;
use crate::admin::http::{self, Parsed, Response};
use crate::admin::web::{Step, View, Web};
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::{Async, LocalExecutor, Timer};
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A request must arrive whole within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served at once; more wait in the listen backlog.
const MAX_OPEN: usize = 16;

pub async fn serve(
    ex: &'static LocalExecutor<'static>,
    listener: Async<TcpListener>,
    tls: futures_rustls::TlsAcceptor,
    ops: Rc<AdminOps>,
) {
    let web = Rc::new(RefCell::new(Web::default()));
    let start = Instant::now();
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        if open.get() >= MAX_OPEN {
            continue; // Dropped: the browser retries.
        }
        open.set(open.get() + 1);
        let (web, ops, tls, open) = (web.clone(), ops.clone(), tls.clone(), open.clone());
        ex.spawn(async move {
            let served = future::or(handle(stream, &tls, &web, &ops, start), async {
                Timer::after(REQUEST_TIMEOUT * 3).await;
                Err("timed out".to_string())
            });
            if let Err(e) = served.await {
                log::debug!("web {addr}: {e}");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn handle(
    stream: Async<TcpStream>,
    tls: &futures_rustls::TlsAcceptor,
    web: &RefCell<Web>,
    ops: &AdminOps,
    start: Instant,
) -> Result<(), String> {
    let mut first = [0u8; 1];
    stream.peek(&mut first).await.map_err(|e| e.to_string())?;
    if first[0] != 0x16 {
        // Not a TLS handshake: a browser that typed http://.
        let mut plain = stream;
        let response = match read_request(&mut plain).await {
            Ok(req) => match req.header("host") {
                Some(host) if !host.is_empty() => {
                    Response::redirect(&format!("https://{host}{}", req.path)).with_status(301)
                }
                _ => Response::text(400, "use https://"),
            },
            Err(r) => r,
        };
        return plain
            .write_all(&response.to_bytes())
            .await
            .map_err(|e| e.to_string());
    }
    let mut tls = tls.accept(stream).await.map_err(|e| format!("TLS: {e}"))?;
    let req = match read_request(&mut tls).await {
        Ok(r) => r,
        Err(response) => return send(&mut tls, response).await,
    };
    let now = || start.elapsed().as_millis() as u64;
    let password_set = ops.password_set().await;
    let step = web
        .borrow_mut()
        .route(&req, now(), super::random_seed(), password_set);
    let response = match step {
        Step::Respond(r) => r,
        Step::Login { sid, password } => {
            let ok = ops.check_password(&password).await;
            web.borrow_mut()
                .login_result(&sid, ok, now(), super::random_seed())
        }
        Step::Setup { sid, password } => {
            let result = ops.set_password(&password).await.map(|_| ());
            web.borrow_mut()
                .setup_done(&sid, result, now(), super::random_seed())
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
    };
    let sent = send(&mut tls, response).await;
    ops.restart_if_requested().await;
    sent
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, r: Response) -> Result<(), String> {
    s.write_all(&r.to_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    s.close().await.map_err(|e| e.to_string())
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

pub fn bind(addr: SocketAddr) -> Result<Async<TcpListener>, String> {
    Async::<TcpListener>::bind(addr)
        .map_err(|e| format!("cannot serve the web page on {addr}: {e}"))
}
