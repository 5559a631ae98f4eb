//! Accepting connections without starving the rest of the node: every
//! listener (clients, links, the admin page, the admin socket) goes through
//! `Acceptor`, which backs off when accept fails (EMFILE, ENFILE, ENOMEM
//! would otherwise make the loop spin at 100 % CPU on one thread) and yields
//! to the executor after each connection, so a flood of connects cannot
//! keep the core loop, other connections or the signal handler from running.

use crate::admission::{Admission, Refused};
use futures_lite::future;
use smol::{Async, Timer};
use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What a listener can accept: TCP or Unix sockets.
pub trait Listener {
    type Stream;
    type Addr;
    fn accept(&self) -> impl std::future::Future<Output = io::Result<(Self::Stream, Self::Addr)>>;
}

impl Listener for Async<std::net::TcpListener> {
    type Stream = Async<std::net::TcpStream>;
    type Addr = std::net::SocketAddr;
    fn accept(&self) -> impl std::future::Future<Output = io::Result<(Self::Stream, Self::Addr)>> {
        Async::<std::net::TcpListener>::accept(self)
    }
}

impl Listener for Async<std::os::unix::net::UnixListener> {
    type Stream = Async<std::os::unix::net::UnixStream>;
    type Addr = std::os::unix::net::SocketAddr;
    fn accept(&self) -> impl std::future::Future<Output = io::Result<(Self::Stream, Self::Addr)>> {
        Async::<std::os::unix::net::UnixListener>::accept(self)
    }
}

pub struct Acceptor<L> {
    listener: L,
    what: &'static str,
    backoff: Duration,
}

impl<L: Listener> Acceptor<L> {
    /// `what` names the listener in the log ("c2s", "link", …).
    pub fn new(listener: L, what: &'static str) -> Acceptor<L> {
        Acceptor {
            listener,
            what,
            backoff: MIN_BACKOFF,
        }
    }

    /// The next connection. Errors are logged and waited out, doubling the
    /// wait up to a second while they last.
    pub async fn next(&mut self) -> (L::Stream, L::Addr) {
        loop {
            match self.listener.accept().await {
                Ok(conn) => {
                    self.backoff = MIN_BACKOFF;
                    // Let everything else run before the next accept.
                    future::yield_now().await;
                    return conn;
                }
                Err(e) => {
                    if self.backoff == MIN_BACKOFF {
                        log::warn!("{}: accept failed: {e}; backing off", self.what);
                    }
                    Timer::after(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A connection's share of an `Admission`, given back when it is dropped
/// (when the connection's task ends, however it ends).
pub struct Slot {
    admission: Rc<RefCell<Admission>>,
    ip: IpAddr,
}

impl Slot {
    pub fn take(admission: &Rc<RefCell<Admission>>, ip: IpAddr) -> Result<Slot, Refused> {
        admission.borrow_mut().admit(ip)?;
        Ok(Slot {
            admission: admission.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.borrow_mut().release(self.ip);
    }
}
