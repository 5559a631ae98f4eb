//! One task per client connection: reads bytes into the core's event
//! channel, writes what the core queued for it, upgrades to TLS on demand.

use crate::node::{ConnId, Event};
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use smol::channel::{Receiver, Sender};
use smol::Async;
use std::cell::Cell;
use std::io;
use std::net::TcpStream;
use std::rc::Rc;

/// Plaintext read buffer; TLS records are buffered inside rustls.
const READ_BUF: usize = 2048;

pub enum Out {
    Bytes(Vec<u8>),
    StartTls,
    Close,
}

/// The core's handle on a connection task.
pub struct ConnHandle {
    pub tx: Sender<Out>,
    /// Bytes queued but not yet written: a slow reader is cut off past a bound.
    pub queued: Rc<Cell<usize>>,
}

/// A connection's byte stream: plain (before STARTTLS), or TLS as the
/// server (clients, sites linking in) or as the client (dialing upstream).
pub enum Io {
    Plain(Async<TcpStream>),
    Tls(Box<TlsStream<Async<TcpStream>>>),
    TlsClient(Box<futures_rustls::client::TlsStream<Async<TcpStream>>>),
    Gone,
}

impl Io {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
            Io::TlsClient(s) => s.read(buf).await,
            Io::Gone => Ok(0),
        }
    }
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(data).await,
            Io::Tls(s) => s.write_all(data).await,
            Io::TlsClient(s) => s.write_all(data).await,
            Io::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.flush().await,
            Io::Tls(s) => s.flush().await,
            Io::TlsClient(s) => s.flush().await,
            Io::Gone => Ok(()),
        }
    }
    async fn close(&mut self) {
        let _ = match self {
            Io::Plain(s) => s.close().await,
            Io::Tls(s) => s.close().await,
            Io::TlsClient(s) => s.close().await,
            Io::Gone => Ok(()),
        };
    }
}

enum Step {
    Out(Option<Out>),
    Read(io::Result<usize>),
}

pub async fn serve(
    conn: ConnId,
    mut io: Io,
    out: Receiver<Out>,
    queued: Rc<Cell<usize>>,
    events: Sender<Event>,
    tls: TlsAcceptor,
) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        // Output first: it drains what the core produced before reading more.
        let step = future::or(async { Step::Out(out.recv().await.ok()) }, async {
            Step::Read(io.read(&mut buf).await)
        })
        .await;
        match step {
            Step::Out(Some(Out::Bytes(bytes))) => {
                queued.set(queued.get().saturating_sub(bytes.len()));
                if io.write_all(&bytes).await.is_err() {
                    break;
                }
                // Write whatever else is ready before one flush.
                let mut close = false;
                let mut starttls = false;
                while let Ok(next) = out.try_recv() {
                    match next {
                        Out::Bytes(b) => {
                            queued.set(queued.get().saturating_sub(b.len()));
                            if io.write_all(&b).await.is_err() {
                                close = true;
                                break;
                            }
                        }
                        Out::Close => {
                            close = true;
                            break;
                        }
                        Out::StartTls => {
                            starttls = true;
                            break;
                        }
                    }
                }
                if io.flush().await.is_err() || close {
                    break;
                }
                if starttls && !start_tls(conn, &mut io, &out, &tls, &events).await {
                    break;
                }
            }
            Step::Out(Some(Out::StartTls)) => {
                if io.flush().await.is_err() || !start_tls(conn, &mut io, &out, &tls, &events).await
                {
                    break;
                }
            }
            Step::Out(Some(Out::Close)) | Step::Out(None) => break,
            Step::Read(Ok(0)) | Step::Read(Err(_)) => break,
            Step::Read(Ok(n)) => {
                if events
                    .send(Event::Data {
                        conn,
                        bytes: buf[..n].to_vec(),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    io.close().await;
    let _ = events.send(Event::Disconnected { conn }).await;
}

/// Run the TLS handshake, unless the core closes the connection meanwhile
/// (its handshake timeout covers a client that stalls here).
async fn start_tls(
    conn: ConnId,
    io: &mut Io,
    out: &Receiver<Out>,
    tls: &TlsAcceptor,
    events: &Sender<Event>,
) -> bool {
    let Io::Plain(stream) = std::mem::replace(io, Io::Gone) else {
        return false;
    };
    let handshake = async { Some(tls.accept(stream).await) };
    let closed = async {
        loop {
            match out.recv().await {
                Ok(Out::Close) | Err(_) => return None,
                Ok(_) => continue, // Nothing plaintext may be written any more.
            }
        }
    };
    match future::or(handshake, closed).await {
        Some(Ok(stream)) => {
            *io = Io::Tls(Box::new(stream));
            events.send(Event::TlsEstablished { conn }).await.is_ok()
        }
        Some(Err(e)) => {
            log::info!("c2s {conn}: TLS handshake failed: {e}");
            false
        }
        None => false,
    }
}
