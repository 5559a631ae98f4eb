//! A TCP relay that shapes a link like the field does: a byte rate and a
//! latency each way, with byte counters. Used by `outpost demo`.

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::channel;
use smol::{Async, LocalExecutor, Timer};
use std::cell::Cell;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Shaping {
    /// Bytes per second each way.
    pub rate: u64,
    pub latency: Duration,
}

/// Bytes carried each way since the relay started.
#[derive(Default)]
pub struct Counters {
    pub up: Cell<u64>,
    pub down: Cell<u64>,
}

/// Accept on `listen` and relay every connection to `target`, shaped.
pub async fn run(
    ex: &'static LocalExecutor<'static>,
    listen: Async<TcpListener>,
    target: SocketAddr,
    shaping: Shaping,
    counters: Rc<Counters>,
) {
    loop {
        let Ok((client, _)) = listen.accept().await else {
            continue;
        };
        let Ok(server) = Async::<TcpStream>::connect(target).await else {
            continue;
        };
        let counters = counters.clone();
        ex.spawn(async move {
            let (c_read, c_write) = (Async::new(client.get_ref().try_clone().ok()?).ok()?, client);
            let (s_read, s_write) = (Async::new(server.get_ref().try_clone().ok()?).ok()?, server);
            let up = pipe(ex, c_read, s_write, shaping, counters.clone(), true);
            let down = pipe(ex, s_read, c_write, shaping, counters, false);
            future::or(up, down).await;
            Some(())
        })
        .detach();
    }
}

/// Copy one direction: pace by rate at the sender, deliver after the latency.
async fn pipe(
    ex: &'static LocalExecutor<'static>,
    mut from: Async<TcpStream>,
    mut to: Async<TcpStream>,
    shaping: Shaping,
    counters: Rc<Counters>,
    upwards: bool,
) {
    let (tx, rx) = channel::unbounded::<(Instant, Vec<u8>)>();
    let writer = ex.spawn(async move {
        while let Ok((due, bytes)) = rx.recv().await {
            Timer::at(due).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.close().await;
    });
    let mut buf = vec![0u8; 512];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let counter = if upwards {
            &counters.up
        } else {
            &counters.down
        };
        counter.set(counter.get() + n as u64);
        Timer::after(Duration::from_micros(
            n as u64 * 1_000_000 / shaping.rate.max(1),
        ))
        .await;
        if tx
            .send((Instant::now() + shaping.latency, buf[..n].to_vec()))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    writer.await;
}
