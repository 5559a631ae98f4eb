//! `outpost demo`: an HQ node and two site nodes on loopback, each site's
//! link through a relay shaped like a 9600 bit/s line with 300 ms latency,
//! with accounts to log in with and the link counters printed as they go.

use super::relay::{self, Counters, Shaping};
use crate::node::{AdminCommand, AdminReply};
use futures_lite::{future, StreamExt};
use smol::{Async, LocalExecutor, Timer};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

struct DemoNode {
    name: &'static str,
    domain: &'static str,
    c2s: u16,
    user: &'static str,
}

const NODES: [DemoNode; 3] = [
    DemoNode {
        name: "hq",
        domain: "hq.example",
        c2s: 5222,
        user: "alice",
    },
    DemoNode {
        name: "raleigh",
        domain: "raleigh.example",
        c2s: 5223,
        user: "bob",
    },
    DemoNode {
        name: "durham",
        domain: "durham.example",
        c2s: 5224,
        user: "carol",
    },
];
const LINK_PORT: u16 = 5270;
const RELAY_PORTS: [u16; 2] = [5271, 5272];
const PASSWORD: &str = "outpost-demo";
const SHAPING: Shaping = Shaping {
    rate: 1200,
    latency: Duration::from_millis(300),
};

fn write_config(dir: &Path, node: &DemoNode, extra: &str) -> Result<PathBuf, String> {
    let d = dir.join(node.name);
    std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    let path = d.join("outpost.toml");
    let text = format!(
        "domain = \"{}\"\ndata_dir = \"data\"\nlog_level = \"info\"\n[c2s]\nlisten = \"127.0.0.1:{}\"\n{extra}",
        node.domain, node.c2s
    );
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn fingerprint(path: &Path) -> Result<String, String> {
    let cfg = super::config_file::load(path).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| e.to_string())?;
    Ok(super::link::identity(&cfg)?.fingerprint)
}

fn ensure_user(path: &Path, user: &str) -> Result<(), String> {
    let cfg = super::config_file::load(path).map_err(|e| e.to_string())?;
    let creds = super::admin_ops::new_credentials(PASSWORD);
    match super::admin::execute(
        &cfg,
        AdminCommand::UserAdd {
            user: user.into(),
            creds,
        },
    )? {
        AdminReply::Done => Ok(()),
        AdminReply::Error(e) if e.contains("already exists") => Ok(()),
        other => Err(format!("creating {user}: {other:?}")),
    }
}

pub fn run(dir: PathBuf) -> Result<(), String> {
    // Sites first: HQ's config names their keys.
    let mut configs = Vec::new();
    let mut peers = String::new();
    let mut hq_fp = None;
    let hq_path = write_config(&dir, &NODES[0], "")?;
    hq_fp.get_or_insert(fingerprint(&hq_path)?);
    for (i, node) in NODES[1..].iter().enumerate() {
        let upstream = format!(
            "[[upstream]]\nmuc = \"conference.hq.example\"\nconnect = \"127.0.0.1:{}\"\nfingerprint = \"{}\"\n",
            RELAY_PORTS[i],
            hq_fp.as_ref().expect("set")
        );
        let path = write_config(&dir, node, &upstream)?;
        peers.push_str(&format!(
            "[[link.peer]]\ndomain = \"{}\"\nfingerprint = \"{}\"\n",
            node.domain,
            fingerprint(&path)?
        ));
        configs.push(path);
    }
    let hq_path = write_config(
        &dir,
        &NODES[0],
        &format!("[link]\nlisten = \"127.0.0.1:{LINK_PORT}\"\n{peers}"),
    )?;
    configs.insert(0, hq_path);
    for (node, path) in NODES.iter().zip(&configs) {
        ensure_user(path, node.user)?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut children: Vec<Child> = Vec::new();
    for (node, path) in NODES.iter().zip(&configs) {
        let log_path = dir.join(node.name).join("outpost.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let child = Command::new(&exe)
            .args(["run", "-c"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the {} node: {e}", node.name))?;
        children.push(child);
    }
    let result = serve_relays(&dir, &mut children);
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}

fn serve_relays(dir: &Path, children: &mut [Child]) -> Result<(), String> {
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    future::block_on(ex.run(async {
        let mut counters = Vec::new();
        for (i, port) in RELAY_PORTS.iter().enumerate() {
            let listen = Async::<TcpListener>::bind(([127, 0, 0, 1], *port)).map_err(|e| {
                format!("cannot listen on 127.0.0.1:{port} for the shaped link: {e}")
            })?;
            let c = Rc::new(Counters::default());
            counters.push((NODES[i + 1].name, c.clone()));
            ex.spawn(relay::run(
                ex,
                listen,
                ([127, 0, 0, 1], LINK_PORT).into(),
                SHAPING,
                c,
            ))
            .detach();
        }
        crate::out!("Outpost demo: HQ and two sites on loopback, each site linked to HQ through");
        crate::out!(
            "a relay shaped like a 9600 bit/s line with 300 ms latency. Files in {}.",
            dir.display()
        );
        crate::out!();
        for n in &NODES {
            crate::out!(
                "  {:8} {}@{}  password '{PASSWORD}'  server 127.0.0.1 port {}",
                n.name,
                n.user,
                n.domain,
                n.c2s
            );
        }
        crate::out!();
        crate::out!("Log in (Profanity: /connect bob@raleigh.example server 127.0.0.1 port 5223),");
        crate::out!("join ops@conference.hq.example from several nodes, and watch the link bytes.");
        crate::out!("Ctrl-C stops everything.");
        crate::out!();
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
                .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        loop {
            let tick = async {
                Timer::after(Duration::from_secs(5)).await;
                false
            };
            let stop = async {
                signals.next().await;
                true
            };
            if future::or(stop, tick).await {
                return Ok(());
            }
            for (i, c) in children.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    let log = dir.join(NODES[i].name).join("outpost.log");
                    return Err(format!(
                        "the {} node stopped ({status}); see {}",
                        NODES[i].name,
                        log.display()
                    ));
                }
            }
            let line: Vec<String> = counters
                .iter()
                .map(|(name, c)| format!("{name}: up {} B, down {} B", c.up.get(), c.down.get()))
                .collect();
            crate::out!("link bytes  {}", line.join("   "));
        }
    }))
}
