//! One task per client connection: reads bytes into the core's event
//! channel, writes what the core queued for it (and says how much it
//! wrote: the core paces output by it), upgrades to TLS on demand.
//!
//! Reading is paced by the core too: before each read the task takes a
//! credit, and the core loop returns it only once the core has handled the
//! data and still wants input from this connection. So a connection is
//! never more than [`READ_CREDITS`] reads ahead of the core, and one that
//! asks faster than it reads (or guesses passwords faster than the
//! throttle allows) is simply not read.

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

/// Plaintext read buffer; TLS records are buffered inside rustls.
const READ_BUF: usize = 2048;
/// Reads a connection may be ahead of the core.
pub const READ_CREDITS: usize = 4;

pub enum Out {
    Bytes(crate::common::Payload),
    StartTls,
    Close,
}

/// The core's handle on a connection task.
pub struct ConnHandle {
    pub tx: Sender<Out>,
    /// Credits the task took for reads the core has not given back yet.
    pub credits: Receiver<()>,
    /// Reads handled by the core whose credit is held back (the core does
    /// not want more input from this connection now).
    pub withheld: Cell<usize>,
}

impl ConnHandle {
    /// The core handled one read of this connection.
    pub fn read_handled(&self) {
        self.withheld.set(self.withheld.get() + 1);
    }

    /// Let the task read again, as far as the core handled its reads.
    pub fn return_credits(&self) {
        for _ in 0..self.withheld.replace(0) {
            let _ = self.credits.try_recv();
        }
    }
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
    credits: Sender<()>,
    events: Sender<Event>,
    tls: TlsAcceptor,
    direct_tls: Option<TlsAcceptor>,
) {
    // On the direct TLS port the handshake comes first; the core was told
    // of the connection and times it as any other.
    if let Some(direct) = direct_tls {
        if !start_tls(conn, &mut io, &out, &direct, &events).await {
            io.close().await;
            let _ = events.send(Event::Disconnected { conn }).await;
            return;
        }
    }
    let mut buf = vec![0u8; READ_BUF];
    // A credit taken and not yet spent on a read (output may win the race
    // below after the credit was taken; it is kept for the next read).
    let mut credit = false;
    loop {
        // Output first: it drains what the core produced before reading
        // more; a read waits for a credit from the core.
        let read = async {
            if !credit {
                if credits.send(()).await.is_err() {
                    return Step::Read(Ok(0));
                }
                credit = true;
            }
            Step::Read(io.read(&mut buf).await)
        };
        let step = future::or(async { Step::Out(out.recv().await.ok()) }, read).await;
        match step {
            Step::Out(Some(Out::Bytes(bytes))) => {
                // Whatever else is ready joins it: one write (so TLS makes
                // as few records as it can), one flush. Shared bytes are
                // copied only here, for the moment of the write.
                let mut batch = bytes.to_vec();
                drop(bytes);
                let mut close = false;
                let mut starttls = false;
                while let Ok(next) = out.try_recv() {
                    match next {
                        Out::Bytes(b) => b.parts().for_each(|p| batch.extend_from_slice(p)),
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
                let written = batch.len();
                if io.write_all(&batch).await.is_err() {
                    break;
                }
                if io.flush().await.is_err() || close {
                    break;
                }
                let done = Event::Written {
                    conn,
                    bytes: written,
                };
                if events.send(done).await.is_err() {
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
                credit = false;
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
