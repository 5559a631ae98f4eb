//! Files across a 9600 bit/s link, in the simulator: HQ and two sites,
//! each on a link of 1200 bytes a second each way with 300 ms latency
//! (600 ms round trip). Modelled on tests/files_sim.rs, whose helpers are
//! copied here; the HTTP server is played through the questions it asks
//! the core (`FileAsk`), as there.
//!
//! 1. Chat latency between a site user (Wayne) and an HQ user (Kevin),
//!    one-to-one, alternating directions, one message every 2 to 3 s:
//!    on the idle link, then while a 1,000,000-byte incompressible file
//!    uploaded at HQ crosses to the site because a site reader GETs it.
//!    Latency is virtual time from the send until the other client has
//!    it, to the 10 ms the driver steps by.
//! 2. A reference, computed, not measured: the same messages, at the same
//!    times, had they shared one in-order byte stream with the file (see
//!    `one_stream_model`).
//! 3. Link bytes for K = 1 and K = 10 site readers GETting the same file
//!    at once, against K copies of it (what a server without a shared
//!    cache would make the link carry).
//!
//!     cargo bench --bench file_lane

use outpost::files::{FileAnswer, FileAsk};
use outpost::sim::{Network, Shape};

#[allow(dead_code)] // Each bench uses its own part of it.
mod common;
#[path = "../tests/common/files_world.rs"]
mod files_world;
use common::chat_line;
use files_world::{photo, upload, World, HQ, RALEIGH};

const LINK: Shape = Shape {
    latency_ms: 300,
    rate: 1200,
};
const FILE_BYTES: usize = 1_000_000;
const IDLE_MESSAGES: usize = 100;
/// The driver's step: latencies are measured to this.
const TICK_MS: u64 = 10;

/// The network of tests/files_sim.rs, let settle and go quiet before
/// anything is measured.
fn world(shape: Shape) -> World {
    let mut w = files_world::world(shape, |_| {});
    w.net.advance(30_000);
    w.net.node(HQ).take(w.kevin);
    w.net.node(RALEIGH).take(w.wayne);
    w
}

/// One HTTP GET at a node, followed as the HTTP server follows it (as
/// `download` in tests/files_sim.rs does), but a step at a time so that
/// the network can do other things meanwhile.
struct Reader {
    node: usize,
    req: u64,
    started_ms: u64,
    done_ms: Option<u64>,
    served: Vec<u8>,
}

impl Reader {
    fn get(net: &mut Network, node: usize, path: &str, req: u64) -> Reader {
        let started_ms = net.now_ms;
        let answer = net.node(node).file_ask(
            req,
            FileAsk::Get {
                path: path.into(),
                head: false,
            },
        );
        let mut r = Reader {
            node,
            req,
            started_ms,
            done_ms: None,
            served: Vec::new(),
        };
        r.follow(net, answer);
        r
    }

    /// Take the answer that came, if any; true once the file is whole.
    fn poll(&mut self, net: &mut Network) -> bool {
        if self.done_ms.is_none() {
            let answer = net.node(self.node).file_answer(self.req);
            self.follow(net, answer);
        }
        self.done_ms.is_some()
    }

    fn follow(&mut self, net: &mut Network, mut answer: Option<FileAnswer>) {
        loop {
            match answer {
                Some(FileAnswer::Serve {
                    key,
                    complete: true,
                    ..
                }) => {
                    self.served = net.node(self.node).files.file(&key).expect("the bytes");
                    self.done_ms = Some(net.now_ms);
                    return;
                }
                Some(FileAnswer::Serve { key, have, .. }) => {
                    self.req += 1;
                    answer = net
                        .node(self.node)
                        .file_ask(self.req, FileAsk::Wait { key, have });
                }
                Some(FileAnswer::Refused { status, why }) => panic!("refused: {status} {why}"),
                Some(other) => panic!("unexpected {other:?}"),
                None => return,
            }
        }
    }

    fn took_ms(&self) -> u64 {
        self.done_ms.expect("done") - self.started_ms
    }
}

/// One-to-one chat between Wayne (site) and Kevin (HQ): message `i` goes
/// site -> HQ when `i` is even, HQ -> site when odd, 2 to 3 s after the
/// one before (a fixed pseudo-random spread).
struct Chat {
    next_id: usize,
    next_at: u64,
    /// Sent and not yet arrived: (id, towards HQ?, sent at).
    pending: Vec<(usize, bool, u64)>,
    at_hq: String,
    at_site: String,
}

#[derive(Clone, Copy)]
struct Sample {
    up: bool,
    sent_ms: u64,
    latency_ms: u64,
}

impl Chat {
    fn new(now_ms: u64) -> Chat {
        Chat {
            next_id: 0,
            next_at: now_ms,
            pending: Vec::new(),
            at_hq: String::new(),
            at_site: String::new(),
        }
    }

    fn marker(id: usize) -> String {
        format!(">m{id} ")
    }

    /// Send what is due (if `sending`), and collect what arrived.
    fn tick(&mut self, w: &mut World, sending: bool, out: &mut Vec<Sample>) {
        let now = w.net.now_ms;
        if sending && now >= self.next_at {
            let i = self.next_id;
            let body = format!("m{i} {}", chat_line(i as u64 + 1));
            let up = i.is_multiple_of(2);
            let (node, conn, to) = if up {
                (RALEIGH, w.wayne, "kevin@fairfax.example")
            } else {
                (HQ, w.kevin, "wayne@raleigh.example")
            };
            w.net.node(node).send(
                conn,
                &format!("<message to='{to}' type='chat' id='c{i}'><body>{body}</body></message>"),
            );
            self.pending.push((i, up, now));
            self.next_id += 1;
            self.next_at = now + 2_000 + (i as u64 * 389) % 1_000;
        }
        let got_hq = w.net.node(HQ).take(w.kevin);
        self.at_hq.push_str(&got_hq);
        let got_site = w.net.node(RALEIGH).take(w.wayne);
        self.at_site.push_str(&got_site);
        let (at_hq, at_site) = (&self.at_hq, &self.at_site);
        self.pending.retain(|&(id, up, sent)| {
            let seen = if up { at_hq } else { at_site };
            if seen.contains(&Self::marker(id)) {
                out.push(Sample {
                    up,
                    sent_ms: sent,
                    latency_ms: now - sent,
                });
                false
            } else {
                assert!(now - sent < 3_600_000, "message {id} never came");
                true
            }
        });
        if !self.pending.iter().any(|p| p.1) {
            self.at_hq.clear();
        }
        if !self.pending.iter().any(|p| !p.1) {
            self.at_site.clear();
        }
    }
}

/// (count, median, 99th percentile, max) of the latencies one way.
fn stats(samples: &[Sample], up: bool) -> (usize, u64, u64, u64) {
    let mut l: Vec<u64> = samples
        .iter()
        .filter(|s| s.up == up)
        .map(|s| s.latency_ms)
        .collect();
    l.sort_unstable();
    let n = l.len();
    assert!(n > 0);
    let rank = |p: usize| l[(n * p).div_ceil(100).max(1) - 1];
    (n, rank(50), rank(99), l[n - 1])
}

/// The reference: what each message would wait had it shared one
/// in-order byte stream with the file on the same link, as a standard
/// server's s2s would (the file in the stream, say as in-band bytes), or
/// as HTTP and chat multiplexed over one TCP connection would.
///
/// This is a model, not a measurement. At `file_at` (the GET's request
/// has reached HQ) the server writes the whole file to the stream at
/// once, as an HTTP server writing a body does: TCP takes it into the
/// send buffer and the bottleneck queue, and every byte written after it
/// waits until those have drained at the link's rate. The pipe is the
/// simulator's own: one FIFO per direction, `rate` bytes a second, then
/// `latency_ms`. Each HQ -> site message enters the FIFO when sent, with
/// `msg_bytes` bytes (what a chat message cost on our idle link: a
/// standard server's uncompressed stanza would be larger); site -> HQ
/// messages go against the file, on the other direction of a full-duplex
/// link, and wait behind nothing. The file's bytes are counted as its
/// body alone (no HTTP headers, no TLS record overhead, no base64 as
/// in-band bytes would have): every choice is in the reference's favour.
/// Not modelled: a file on an HTTP connection of its own, beside s2s,
/// whose chat would wait behind the bottleneck queue's depth (the
/// modem's or radio's buffer, which TCP keeps full) rather than behind
/// the whole file; that needs a real measurement over a shaped relay.
///
/// Gives the samples and when the file would have arrived whole.
fn one_stream_model(
    sends: &[Sample],
    file_at: u64,
    file_bytes: u64,
    msg_bytes: u64,
) -> (Vec<Sample>, u64) {
    let transmit = |bytes: u64| bytes * 1000 / LINK.rate;
    let mut order: Vec<Sample> = sends.to_vec();
    order.sort_by_key(|s| s.sent_ms);
    let mut down_free = 0;
    let mut file_written = false;
    let mut file_arrives = 0;
    let mut out = Vec::new();
    for s in order {
        if !s.up {
            if !file_written && s.sent_ms >= file_at {
                down_free = down_free.max(file_at) + transmit(file_bytes);
                file_arrives = down_free + LINK.latency_ms;
                file_written = true;
            }
            down_free = down_free.max(s.sent_ms) + transmit(msg_bytes);
            out.push(Sample {
                latency_ms: down_free + LINK.latency_ms - s.sent_ms,
                ..s
            });
        } else {
            out.push(Sample {
                latency_ms: transmit(msg_bytes) + LINK.latency_ms,
                ..s
            });
        }
    }
    if !file_written {
        file_arrives = down_free.max(file_at) + transmit(file_bytes) + LINK.latency_ms;
    }
    (out, file_arrives)
}

/// K site readers GET the file at once: (link bytes down, up, time until
/// the last has it whole).
fn readers(k: usize) -> (u64, u64, u64) {
    let mut w = world(LINK);
    let data = photo(FILE_BYTES, 3);
    let path = upload(&mut w.net, HQ, w.kevin, "photo.jpg", &data);
    w.net.reset_counters();
    let start = w.net.now_ms;
    let mut rs: Vec<Reader> = (0..k)
        .map(|i| Reader::get(&mut w.net, RALEIGH, &path, 1_000_000 * (i as u64 + 1)))
        .collect();
    loop {
        w.net.advance(100);
        let mut all = true;
        for r in &mut rs {
            all &= r.poll(&mut w.net);
        }
        if all {
            break;
        }
        assert!(w.net.now_ms - start < 24 * 3_600_000, "never whole");
    }
    let took = w.net.now_ms - start;
    for r in &rs {
        assert!(r.served == data, "a reader got other bytes");
    }
    let (up, down) = w.net.link_bytes(RALEIGH);
    (down, up, took)
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    // 1a. The idle link.
    let mut w = world(LINK);
    let data = photo(FILE_BYTES, 5);
    let path = upload(&mut w.net, HQ, w.kevin, "big.jpg", &data);
    let mut chat = Chat::new(w.net.now_ms);
    let mut idle = Vec::new();
    w.net.reset_counters();
    while idle.len() < IDLE_MESSAGES {
        w.net.advance(TICK_MS);
        chat.tick(&mut w, chat.next_id < IDLE_MESSAGES, &mut idle);
    }
    let (up, down) = w.net.link_bytes(RALEIGH);
    let msg_bytes = (up + down) / IDLE_MESSAGES as u64;

    // 1b. The same chat while the file crosses: a site reader GETs it.
    w.net.reset_counters();
    let mut reader = Reader::get(&mut w.net, RALEIGH, &path, 100);
    let get_at = reader.started_ms;
    let first_busy = chat.next_id;
    let mut busy = Vec::new();
    loop {
        w.net.advance(TICK_MS);
        let whole = reader.poll(&mut w.net);
        chat.tick(&mut w, !whole, &mut busy);
        if whole && chat.pending.is_empty() {
            break;
        }
    }
    assert!(reader.served == data, "the file came other than it went");
    let (file_up, file_down) = w.net.link_bytes(RALEIGH);
    let transfer_ms = reader.took_ms();
    let during = chat.next_id - first_busy;
    assert!(during >= 100, "only {during} messages during the transfer");

    // 2. The reference model, on the same sends.
    let file_at = get_at + LINK.latency_ms;
    let (model, model_file_arrives) =
        one_stream_model(&busy, file_at, FILE_BYTES as u64, msg_bytes);
    // The model's file is whole sooner (the stream keeps the link full):
    // its rows are the messages sent while its file was crossing.
    let model: Vec<Sample> = model
        .into_iter()
        .filter(|s| s.sent_ms < model_file_arrives)
        .collect();

    println!(
        "files across a 9600 bit/s link (1200 B/s each way, 300 ms latency, 600 ms round trip), simulator"
    );
    println!(
        "chat Wayne (site) <-> Kevin (HQ), one-to-one, alternating, one message every 2-3 s; ms of virtual time, to {TICK_MS} ms"
    );
    println!(
        "{:<44} {:<11} {:>5} {:>7} {:>7} {:>7}",
        "", "direction", "msgs", "median", "p99", "max"
    );
    let rows: [(&str, &[Sample]); 3] = [
        ("idle link", &idle),
        ("1 MB file crossing HQ -> site (measured)", &busy),
        ("one shared stream (MODEL, not measured)", &model),
    ];
    for (label, samples) in rows {
        for (up, dir) in [(true, "site -> HQ"), (false, "HQ -> site")] {
            let (n, med, p99, max) = stats(samples, up);
            println!("{label:<44} {dir:<11} {n:>5} {med:>7} {p99:>7} {max:>7}");
        }
    }
    println!();
    println!(
        "file: {} bytes, incompressible, HQ -> site on a site reader's GET: whole after {:.1} s \
         (one shared stream, model: {:.1} s)",
        thousands(FILE_BYTES as u64),
        transfer_ms as f64 / 1000.0,
        (model_file_arrives - get_at) as f64 / 1000.0
    );
    println!(
        "link bytes from the GET until whole: {} down, {} up ({during} chat messages crossed meanwhile; \
         {msg_bytes} bytes a message on the idle link)",
        thousands(file_down),
        thousands(file_up)
    );
    println!(
        "the file's payload used {:.0}% of the link's {} B/s towards the site while it crossed",
        100.0 * FILE_BYTES as f64 / (transfer_ms as f64 / 1000.0 * LINK.rate as f64),
        LINK.rate
    );
    println!(
        "(model rows: the messages sent while the model's file was crossing; \
         site -> HQ goes against the file and waits behind nothing)"
    );
    println!();

    // 3. K readers.
    println!("K site readers GET the same file at once (no chat)");
    println!(
        "{:>3} {:>14} {:>10} {:>16} {:>12}",
        "K", "link down", "link up", "K x file size", "last whole"
    );
    for k in [1, 10] {
        let (down, up, took) = readers(k);
        println!(
            "{k:>3} {:>14} {:>10} {:>16} {:>10.1} s",
            thousands(down),
            thousands(up),
            thousands((k * FILE_BYTES) as u64),
            took as f64 / 1000.0
        );
    }
}
