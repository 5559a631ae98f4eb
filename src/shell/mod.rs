//! The I/O shell: one thread, one `smol::LocalExecutor`. It owns sockets,
//! TLS, timers, the admin socket and the log file, and feeds the core.

// The one place clocks, files, sockets and threads are allowed (clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod accept;
pub mod admin;
pub mod admin_ops;
pub mod allocator;
pub mod archive_files;
pub mod config_file;
mod conn;
mod console;
pub mod data;
mod file_storage;
pub mod files;
pub use file_storage::FileStorage;
pub mod datadir;
pub mod demo;
pub mod link;
pub mod logger;
mod relay;
pub mod stdout;
mod tls;
mod upload;
mod web;

use crate::config::Config;
use crate::node::{Action, AdminReply, ConnId, Event, Node, Now};
use crate::state::snapshot::{Compaction, STEP_BYTES};
use crate::state::State;
use crate::store::Log;
use archive_files::SharedFiles;
use conn::{ConnHandle, Out};
use datadir::{admin_socket, open_state, DataLock, LockError};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::channel::{self, Receiver, Sender};
use smol::{Async, LocalExecutor, Timer};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Events handled per batch before one group commit.
const MAX_BATCH: usize = 256;
/// Compact when the log holds this much more than the last snapshot.
const COMPACT_SLACK_BYTES: u64 = 4 * 1024 * 1024;

pub fn random_seed() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .expect("the OS has randomness");
    seed
}

pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_seed()[..8].try_into().expect("8 bytes"))
}

struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Now {
        Now {
            mono_ms: self.start.elapsed().as_millis() as u64,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
    fn instant(&self, mono_ms: u64) -> Instant {
        self.start + Duration::from_millis(mono_ms)
    }
}

/// How the node stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT or SIGTERM.
    Exit,
    /// `restart` from the console or the web page: the caller starts the
    /// node again (re-executing, so it reads the saved configuration).
    Restart,
}

/// Run the node until SIGINT, SIGTERM or a restart; `config_file` is where
/// the console and the web page save configuration changes.
/// A listening socket for `what` on `addr`; an error names the setting
/// that chose the address.
fn listen(addr: SocketAddr, setting: &str, what: &str) -> Result<Async<TcpListener>, String> {
    Async::<TcpListener>::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "; another program (another outpost?) uses that port: stop it, or set {setting} to another address"
            ),
            _ => format!("; check {setting}"),
        };
        format!("cannot listen for {what} on {addr} ({setting}): {e}{hint}")
    })
}

pub fn run(cfg: Config, config_file: PathBuf) -> Result<Stopped, String> {
    // One executor for the life of the process; tasks borrow it for 'static.
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    future::block_on(ex.run(serve(ex, cfg, config_file)))
}

type Conns = Rc<RefCell<HashMap<ConnId, ConnHandle>>>;
type AdminWaiters = Rc<RefCell<HashMap<u64, Sender<AdminReply>>>>;

async fn serve(
    ex: &'static LocalExecutor<'static>,
    cfg: Config,
    config_file: PathBuf,
) -> Result<Stopped, String> {
    // Every port is tried first: one in use stops the start before the
    // data directory is made or touched. They are listened on once the
    // state is read (an open port means a node that answers).
    let clients = (cfg.c2s.listen, "[c2s] listen", "clients");
    let optional = [
        (
            cfg.c2s.listen_tls,
            "[c2s] listen_tls",
            "clients (direct TLS)",
        ),
        (cfg.admin.http, "[admin] http", "the admin page"),
        (cfg.link.listen, "[link] listen", "links"),
        (
            cfg.upload.as_ref().map(|u| u.listen),
            "[upload] listen",
            "uploads",
        ),
    ];
    drop(listen(clients.0, clients.1, clients.2)?);
    for (addr, setting, what) in optional {
        if let Some(addr) = addr {
            drop(listen(addr, setting, what)?);
        }
    }
    let _lock = match DataLock::acquire(&cfg.data_dir) {
        Ok(l) => l,
        Err(LockError::Busy) => {
            return Err(format!(
                "another outpost is already running on {}",
                cfg.data_dir.display()
            ))
        }
        Err(LockError::Io(e)) => return Err(e),
    };
    let opened = open_state(&cfg.data_dir, random_u64())?;
    let (mut log, state, archive) = (opened.log, opened.state, opened.archive);
    // Whether writing archive blocks failed last time (said once).
    let mut spill_failing = false;
    let mut snapshot_bytes = opened.snapshot_bytes;
    // A compaction under way: a step of it per turn (see `Compaction`).
    let mut compacting: Option<Compaction> = None;
    let tls_config = tls::server_config(&cfg)?;
    let tls = futures_rustls::TlsAcceptor::from(tls_config.clone());
    let mut node = Node::new(cfg.node_config(), state, random_seed());
    let listener = listen(clients.0, clients.1, clients.2)?;
    let [c2s_tls, web, links, upload] = optional
        .map(|(addr, setting, what)| addr.map(|addr| listen(addr, setting, what)).transpose());
    let (direct_tls_listener, web_listener, link_listener, upload_listener) =
        (c2s_tls?, web?, links?, upload?);
    let disk_files = Rc::new(
        files::DiskFiles::open(&cfg.data_dir)
            .map_err(|e| format!("cannot open {}/files: {e}", cfg.data_dir.display()))?,
    );
    node.install_file_store(disk_files.clone());

    let sock_path = admin_socket(&cfg.data_dir);
    let _ = std::fs::remove_file(&sock_path); // Stale from a crash; we hold the lock.
    let admin = Async::<UnixListener>::bind(&sock_path)
        .map_err(|e| format!("cannot create admin socket {}: {e}", sock_path.display()))?;
    restrict_to_owner(&sock_path);

    let (events_tx, events_rx) = channel::bounded::<Event>(1024);
    let conns: Conns = Rc::default();
    let waiters: AdminWaiters = Rc::default();
    let live_tasks = Rc::new(Cell::new(0usize));

    let wiring = Wiring {
        ex,
        conns: conns.clone(),
        events: events_tx.clone(),
        c2s_tls: tls.clone(),
        live_tasks: live_tasks.clone(),
        next_id: Rc::new(Cell::new(1)),
    };
    ex.spawn(accept_clients(
        wiring.clone(),
        listener,
        cfg.c2s.max_connections,
        None,
    ))
    .detach();
    if let Some(listener) = direct_tls_listener {
        let direct = futures_rustls::TlsAcceptor::from(tls::direct_tls_config(&tls_config));
        ex.spawn(accept_clients(
            wiring.clone(),
            listener,
            cfg.c2s.max_connections,
            Some(direct),
        ))
        .detach();
    }
    let link_tls = link::setup(&cfg)?;
    log::info!(
        "link: this node's key fingerprint is {}",
        link_tls.fingerprint
    );
    if let (Some(l), Some(addr), Some(server)) =
        (link_listener, cfg.link.listen, link_tls.server.clone())
    {
        ex.spawn(accept_links(
            wiring.clone(),
            l,
            server,
            link_tls.peer_by_key.clone(),
        ))
        .detach();
        log::info!("link: accepting sites on {addr}");
    }
    let ops = Rc::new(admin_ops::AdminOps::new(
        events_tx.clone(),
        waiters.clone(),
        cfg.clone(),
        config_file,
        link_tls.fingerprint.clone(),
    ));
    ex.spawn(accept_admin(ex, admin, ops.clone())).detach();
    if let Some(path) = cfg.admin.serial.clone() {
        ex.spawn(console::serve(path, cfg.admin.serial_trusted, ops.clone()))
            .detach();
    }
    if let Some(listener) = web_listener {
        log::info!(
            "web: admin page on https://{}/",
            cfg.admin.http.expect("bound")
        );
        ex.spawn(web::serve(ex, listener, tls.clone(), ops.clone()))
            .detach();
    }
    if let Some(listener) = upload_listener {
        let upload_tls = futures_rustls::TlsAcceptor::from(tls::upload_config(&cfg, &tls_config)?);
        log::info!(
            "upload: files served on {} as {}",
            cfg.upload.as_ref().expect("bound").listen,
            node.config().upload.public_url
        );
        ex.spawn(upload::serve(
            ex,
            listener,
            upload_tls,
            ops.clone(),
            disk_files,
        ))
        .detach();
    }
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    {
        let tx = events_tx.clone();
        ex.spawn(async move {
            use futures_lite::StreamExt;
            let mut signals = signals;
            if let Some(Ok(sig)) = signals.next().await {
                log::info!("received {sig:?}, shutting down");
                let _ = tx.send(Event::Shutdown).await;
            }
        })
        .detach();
    }
    let direct = cfg.c2s.listen_tls.map(|at| format!(", direct TLS on {at}"));
    log::info!(
        "outpost {} serving {} on {}{} (data in {})",
        env!("CARGO_PKG_VERSION"),
        cfg.domain.0,
        cfg.c2s.listen,
        direct.unwrap_or_default(),
        cfg.data_dir.display()
    );

    let clock = Clock {
        start: Instant::now(),
    };
    node.start(clock.now());
    let mut dials = Vec::new();
    apply_actions(&mut node, &mut log, &conns, &waiters, &mut dials)?;
    for peer in dials {
        dial(&wiring, peer, &link_tls.upstreams);
    }
    let mut shutting_down = false;
    loop {
        let first = if compacting.is_some() {
            // Between steps, connections run and events are taken as they
            // come, but nothing is waited for.
            future::yield_now().await;
            events_rx.try_recv().ok()
        } else {
            next_event(&events_rx, node.next_deadline(), &clock).await
        };
        let mut batch = Vec::new();
        batch.extend(first);
        while batch.len() < MAX_BATCH {
            match events_rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        for event in batch {
            shutting_down |= matches!(event, Event::Shutdown);
            if let Event::Data { conn, .. } = &event {
                if let Some(h) = conns.borrow().get(conn) {
                    h.read_handled();
                }
            }
            node.handle(clock.now(), event);
        }
        node.handle_timeout(clock.now());
        let mut dials = Vec::new();
        apply_actions(&mut node, &mut log, &conns, &waiters, &mut dials)?;
        // Connections read on only as far as the core wants their input.
        for (conn, h) in conns.borrow().iter() {
            if h.withheld.get() > 0 && node.accepts_input(*conn) {
                h.return_credits();
            }
        }
        for peer in dials {
            dial(&wiring, peer, &link_tls.upstreams);
        }
        spill_archive_blocks(&mut node, &archive, &mut spill_failing);
        if shutting_down {
            // No snapshot ends now: it would leave out the sessions kept
            // for the next start (see `State::held_sessions`).
            break;
        }
        // The state now holds exactly what the log does: a step may read it.
        let failed = |e: std::io::Error| format!("log compaction failed: {e}");
        match compacting.as_mut() {
            Some(c) => {
                // A snapshot refers only to blocks that are durable.
                archive.0.borrow_mut().sync().map_err(failed)?;
                if let Some(bytes) = c.step(&mut log, node.state(), STEP_BYTES).map_err(failed)? {
                    snapshot_bytes = bytes;
                    log::info!("log: compacted to a {snapshot_bytes}-byte snapshot");
                    collect_archive_files(&archive, c.block_files(), node.state());
                    rewrite_sparse_archive_files(&mut node, &archive);
                    compacting = None;
                }
            }
            None if log.total_bytes() > COMPACT_SLACK_BYTES + 2 * snapshot_bytes => {
                compacting = Some(Compaction::begin(&mut log, random_u64()).map_err(failed)?);
            }
            None => {}
        }
    }
    // Let connection tasks write their goodbyes, within reason.
    let deadline = Instant::now() + Duration::from_secs(2);
    while live_tasks.get() > 0 && Instant::now() < deadline {
        future::or(
            async {
                let _ = events_rx.recv().await;
            },
            async {
                Timer::after(Duration::from_millis(20)).await;
            },
        )
        .await;
    }
    let _ = std::fs::remove_file(&sock_path);
    if ops.restart_requested.get() {
        log::info!("stopped; restarting");
        return Ok(Stopped::Restart);
    }
    log::info!("stopped");
    Ok(Stopped::Exit)
}

/// Move the archive blocks sealed this turn out of memory into the archive
/// files. A failure loses nothing (the blocks stay in memory, their
/// messages are in the log); it is said once, and tried again next turn.
fn spill_archive_blocks(node: &mut Node, archive: &SharedFiles, failing: &mut bool) {
    let mut files = archive.0.borrow_mut();
    match node.spill_archive_blocks(&mut |bytes| files.append(bytes)) {
        Ok(()) if *failing => {
            *failing = false;
            log::info!("archive: writing blocks to the archive files works again");
        }
        Ok(()) => {}
        Err(e) if !*failing => {
            *failing = true;
            log::error!("archive: cannot write blocks to the archive files ({e}); they stay in memory until it works");
        }
        Err(_) => {}
    }
}

/// After a compaction: remove the archive files that neither the new
/// snapshot nor the state refers to (retention dropped their blocks).
fn collect_archive_files(archive: &SharedFiles, snapshot: &BTreeMap<u32, u64>, state: &State) {
    let mut keep = state.block_files();
    for (file, end) in snapshot {
        let e = keep.entry(*file).or_insert(0);
        *e = (*e).max(*end);
    }
    match archive.0.borrow_mut().collect(&keep, false) {
        Ok(done) if done.files > 0 => log::info!(
            "archive: removed {} files ({} bytes) that hold no kept message",
            done.files,
            done.bytes
        ),
        Ok(_) => {}
        Err(e) => log::warn!("archive: cannot remove unused archive files: {e}"),
    }
}

/// Archive bytes read back per compaction to empty sparse files (read in
/// one turn: on an SD card at 20 MB/s, about 25 ms).
const REWRITE_PER_COMPACTION: u64 = 512 * 1024;

/// Files that hold mostly blocks retention dropped, kept by a few live
/// ones: those are read back and written again with the next blocks, so
/// that a later compaction's clean-up removes the files. Disk use stays
/// near what the archives hold; each compaction rewrites a bounded amount.
fn rewrite_sparse_archive_files(node: &mut Node, archive: &SharedFiles) {
    let live = node.state().block_usage();
    let sparse = match archive.0.borrow().sparse(&live) {
        Ok(files) => files.into_iter().collect(),
        Err(e) => {
            log::warn!("archive: cannot size the archive files: {e}");
            return;
        }
    };
    let read = node.rehold_archive_blocks(&sparse, REWRITE_PER_COMPACTION);
    if read > 0 {
        log::info!(
            "archive: rewriting {read} bytes of blocks from {} sparse files",
            sparse.len()
        );
    }
}

async fn next_event(
    events: &Receiver<Event>,
    deadline: Option<u64>,
    clock: &Clock,
) -> Option<Event> {
    match deadline {
        None => events.recv().await.ok(),
        Some(d) => {
            future::or(async { events.recv().await.ok() }, async {
                Timer::at(clock.instant(d)).await;
                None
            })
            .await
        }
    }
}

/// Persist first (one group commit), then release sends and replies.
fn apply_actions(
    node: &mut Node,
    log: &mut Log<FileStorage>,
    conns: &Conns,
    waiters: &AdminWaiters,
    dials: &mut Vec<String>,
) -> Result<(), String> {
    let actions = node.drain_actions();
    // Nothing may be acknowledged that is not durable: a failed write stops the node.
    for a in &actions {
        if let Action::Persist(r) = a {
            log.append(r.kind(), &r.encode())
                .map_err(|e| format!("cannot write the log, stopping: {e}"))?;
        }
    }
    log.commit()
        .map_err(|e| format!("cannot write the log, stopping: {e}"))?;
    for a in actions {
        match a {
            Action::Persist(_) => {}
            Action::Send { conn, bytes } => {
                // Bounded by the core: a client's output is paced by what it
                // reads; a link's by its acknowledgements and queue bounds.
                if let Some(h) = conns.borrow().get(&conn) {
                    let _ = h.tx.try_send(Out::Bytes(bytes));
                }
            }
            Action::StartTls { conn } => {
                if let Some(h) = conns.borrow().get(&conn) {
                    let _ = h.tx.try_send(Out::StartTls);
                }
            }
            Action::Close { conn } => {
                if let Some(h) = conns.borrow_mut().remove(&conn) {
                    let _ = h.tx.try_send(Out::Close);
                }
            }
            Action::AdminReply { req, reply } => {
                if let Some(tx) = waiters.borrow_mut().remove(&req) {
                    let _ = tx.try_send(reply);
                }
            }
            Action::Dial { peer } => dials.push(peer.to_string()),
        }
    }
    Ok(())
}

/// What every connection task shares: the executor, the core's event
/// channel, the output queues, the id counter.
#[derive(Clone)]
struct Wiring<'a> {
    ex: &'a LocalExecutor<'a>,
    conns: Conns,
    events: Sender<Event>,
    c2s_tls: futures_rustls::TlsAcceptor,
    live_tasks: Rc<Cell<usize>>,
    next_id: Rc<Cell<ConnId>>,
}

impl<'a> Wiring<'a> {
    /// Register a connection, tell the core (`first` names the event), and
    /// run its task until it closes.
    /// `direct_tls`: the client's TLS handshake is to be run first.
    async fn start(
        &self,
        io: conn::Io,
        direct_tls: Option<futures_rustls::TlsAcceptor>,
        first: impl FnOnce(ConnId) -> Event,
    ) {
        let conn = self.next_id.get();
        self.next_id.set(conn + 1);
        let (tx, rx) = channel::unbounded();
        let (credit_tx, credit_rx) = channel::bounded(conn::READ_CREDITS);
        self.conns.borrow_mut().insert(
            conn,
            ConnHandle {
                tx,
                credits: credit_rx,
                withheld: Cell::new(0),
            },
        );
        if self.events.send(first(conn)).await.is_err() {
            return;
        }
        self.live_tasks.set(self.live_tasks.get() + 1);
        let w = self.clone();
        self.ex
            .spawn(async move {
                let (events, tls) = (w.events.clone(), w.c2s_tls.clone());
                conn::serve(conn, io, rx, credit_tx, events, tls, direct_tls).await;
                w.conns.borrow_mut().remove(&conn);
                w.live_tasks.set(w.live_tasks.get() - 1);
            })
            .detach();
    }
}

/// Clients connect here; on the direct TLS port (`direct_tls`) each starts
/// with its TLS handshake.
async fn accept_clients(
    w: Wiring<'_>,
    listener: Async<TcpListener>,
    max_connections: usize,
    direct_tls: Option<futures_rustls::TlsAcceptor>,
) {
    let what = if direct_tls.is_some() {
        "c2s direct TLS"
    } else {
        "c2s"
    };
    let mut acceptor = accept::Acceptor::new(listener, what);
    loop {
        let (stream, peer) = acceptor.next().await;
        if w.live_tasks.get() >= max_connections {
            log::debug!("c2s: refusing {peer}: {max_connections} connections already open");
            continue;
        }
        let _ = stream.get_ref().set_nodelay(true);
        w.start(conn::Io::Plain(stream), direct_tls.clone(), |conn| {
            Event::Accepted {
                conn,
                peer: peer.ip(),
            }
        })
        .await;
    }
}

/// How long a link's TCP connect plus TLS handshake may take when dialing.
const LINK_HANDSHAKE: Duration = Duration::from_secs(30);
/// How long a connecting site may take to finish its TLS handshake.
const LINK_ACCEPT_HANDSHAKE: Duration = Duration::from_secs(10);
/// Link connections whose handshake is in progress, in all and per address:
/// only configured, key-pinned sites get past it, and nobody else may hold
/// more than this of the node.
const LINK_PENDING_MAX: usize = 16;
const LINK_PENDING_PER_ADDRESS: usize = 4;

/// Sites connect here; each must present a configured peer's key.
async fn accept_links(
    w: Wiring<'static>,
    listener: Async<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    peers: HashMap<String, String>,
) {
    let acceptor = futures_rustls::TlsAcceptor::from(tls);
    let mut incoming = accept::Acceptor::new(listener, "link");
    let pending = Rc::new(RefCell::new(crate::admission::Admission::new(
        LINK_PENDING_MAX,
        LINK_PENDING_PER_ADDRESS,
    )));
    loop {
        let (stream, addr) = incoming.next().await;
        let slot = match accept::Slot::take(&pending, addr.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                log::debug!("link: refused {addr}: {}", refused.text());
                continue;
            }
        };
        let _ = stream.get_ref().set_nodelay(true);
        let (w, acceptor, peers) = (w.clone(), acceptor.clone(), peers.clone());
        let ex = w.ex;
        ex.spawn(async move {
            let handshake = async { Some(acceptor.accept(stream).await) };
            let timeout = async {
                Timer::after(LINK_ACCEPT_HANDSHAKE).await;
                None
            };
            let outcome = future::or(handshake, timeout).await;
            // Past the handshake, a link is the core's (configured peers only).
            drop(slot);
            let tls = match outcome {
                Some(Ok(t)) => t,
                Some(Err(e)) => return log::info!("link: refused a connection from {addr}: {e}"),
                None => return log::info!("link: {addr} did not finish the TLS handshake in time"),
            };
            let key = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(link::spki_fingerprint);
            let Some(peer) = key
                .and_then(|k| k.ok())
                .and_then(|k| peers.get(&k).cloned())
            else {
                return log::info!("link: {addr} presented no configured key");
            };
            log::info!("link {peer}: accepted from {addr}");
            w.start(conn::Io::Tls(Box::new(tls)), None, |conn| Event::LinkUp {
                conn,
                peer: peer.into(),
            })
            .await;
        })
        .detach();
    }
}

/// Dial an upstream; the core hears `LinkUp` or `DialFailed`.
fn dial(
    w: &Wiring<'static>,
    peer: String,
    upstreams: &HashMap<String, (String, Arc<rustls::ClientConfig>)>,
) {
    let Some((addr, config)) = upstreams.get(&peer).cloned() else {
        return log::warn!("link {peer}: no [[upstream]] entry");
    };
    let w = w.clone();
    let ex = w.ex;
    ex.spawn(async move {
        let attempt = async {
            let addrs = smol::net::resolve(addr.as_str())
                .await
                .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
            let mut last = format!("{addr} has no address");
            for a in addrs {
                match Async::<std::net::TcpStream>::connect(a).await {
                    Ok(stream) => {
                        let _ = stream.get_ref().set_nodelay(true);
                        let name = rustls_pki_types::ServerName::try_from(peer.clone())
                            .map_err(|e| format!("bad server name {peer}: {e}"))?;
                        let connector = futures_rustls::TlsConnector::from(config.clone());
                        return connector
                            .connect(name, stream)
                            .await
                            .map_err(|e| format!("TLS with {a}: {e}"));
                    }
                    Err(e) => last = format!("cannot connect to {a}: {e}"),
                }
            }
            Err(last)
        };
        let timeout = async {
            Timer::after(LINK_HANDSHAKE).await;
            Err(format!(
                "no answer from {addr} in {} s",
                LINK_HANDSHAKE.as_secs()
            ))
        };
        match future::or(attempt, timeout).await {
            Ok(tls) => {
                log::info!("link {peer}: connected to {addr}");
                w.start(conn::Io::TlsClient(Box::new(tls)), None, |conn| {
                    Event::LinkUp {
                        conn,
                        peer: peer.into(),
                    }
                })
                .await;
            }
            Err(e) => {
                log::warn!("link {peer}: {e}");
                let _ = w.events.send(Event::DialFailed { peer: peer.into() }).await;
            }
        }
    })
    .detach();
}

/// Admin socket connections served at once, and how long one may take to
/// send its request.
const ADMIN_SOCKET_MAX: usize = 16;
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_admin<'a>(
    ex: &'a LocalExecutor<'a>,
    listener: Async<UnixListener>,
    ops: Rc<admin_ops::AdminOps>,
) {
    let mut incoming = accept::Acceptor::new(listener, "admin socket");
    let open = Rc::new(Cell::new(0usize));
    loop {
        let (stream, _) = incoming.next().await;
        if open.get() >= ADMIN_SOCKET_MAX {
            continue;
        }
        open.set(open.get() + 1);
        let (ops, open) = (ops.clone(), open.clone());
        ex.spawn(async move {
            let timeout = async {
                Timer::after(ADMIN_REQUEST_TIMEOUT).await;
                None
            };
            if let Some(reply) = future::or(admin_request(stream, &ops), timeout).await {
                let (mut stream, reply) = reply;
                let _ = stream.write_all(&admin::encode_frame(&reply)).await;
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Read one admin request and get the node's answer (None: the client went).
async fn admin_request(
    mut stream: Async<std::os::unix::net::UnixStream>,
    ops: &admin_ops::AdminOps,
) -> Option<(Async<std::os::unix::net::UnixStream>, AdminReply)> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.ok()?;
    let reply = match admin::frame_len(prefix) {
        None => AdminReply::Error("request too large".into()),
        Some(len) => {
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.ok()?;
            match postcard::from_bytes(&body) {
                Err(e) => AdminReply::Error(format!("malformed request: {e}")),
                Ok(cmd) => ops.ask(cmd).await.ok()?,
            }
        }
    };
    Some((stream, reply))
}

fn restrict_to_owner(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
