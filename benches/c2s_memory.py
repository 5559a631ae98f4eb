#!/usr/bin/env python3
"""Memory per idle TLS client: outpost and Prosody under the same load, in one run.

For each server: start it on loopback, read its RSS idle, log in N clients
(STARTTLS, SASL PLAIN, bind, initial presence), wait until every one has its
session, read RSS again. Prints both side by side with the ratio.

    cargo build --release && python3 benches/c2s_memory.py [--clients 200]

Needs Debian's prosody for the reference column (skipped if absent).
"""

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from outpost_node import free_port, wait_for_port  # noqa: E402
from xmpp import Raw  # noqa: E402

OUTPOST = ROOT / "target" / "release" / "outpost"
PASSWORD = "benchmark-secret"


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def login_all(port, n):
    clients = []
    for i in range(n):
        raw = await Raw.open(port)
        await raw.login_plain(f"user{i}", PASSWORD)
        await raw.send("<presence/>")
        clients.append(raw)
    # One round trip per client: every session is fully set up server-side.
    for i, raw in enumerate(clients):
        await raw.send(f"<iq type='get' id='settle{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.read_until(f"settle{i}")
    return clients


def measure(pid, port, n):
    async def run():
        idle = rss_kb(pid)
        clients = await login_all(port, n)
        loaded = rss_kb(pid)
        for c in clients:
            c.close()
        return idle, loaded
    return asyncio.run(run())


def run_outpost(workdir, n):
    port = free_port()
    cfg = workdir / "outpost.toml"
    cfg.write_text(f'domain = "localhost"\ndata_dir = "data"\nlog_level = "warn"\n'
                   f'[c2s]\nlisten = "127.0.0.1:{port}"\nmax_connections = {n + 50}\n')
    for i in range(n):
        subprocess.run([str(OUTPOST), "user", "add", f"user{i}", "-c", str(cfg)],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    proc = subprocess.Popen([str(OUTPOST), "run", "-c", str(cfg)])
    try:
        wait_for_port(port, proc)
        return measure(proc.pid, port, n), workdir / "data"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def run_prosody(workdir, n, cert_dir):
    port = free_port()
    data = workdir / "prosody-data"
    accounts = data / "localhost" / "accounts"
    accounts.mkdir(parents=True)
    for i in range(n):
        (accounts / f"user{i}.dat").write_text(f'return {{ ["password"] = "{PASSWORD}"; }};\n')
    cfg = workdir / "prosody.cfg.lua"
    cfg.write_text(f"""
run_as_root = true
daemonize = false
pidfile = "{workdir}/prosody.pid"
data_path = "{data}"
log = {{ warn = "{workdir}/prosody.log" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
interfaces = {{ "127.0.0.1" }}
authentication = "internal_plain"
c2s_require_encryption = true
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "version"; "uptime"; "time"; "private"; "vcard_legacy"; "carbons"; "pep"; "blocklist"; "offline" }}
modules_disabled = {{ "s2s"; "http"; "bosh"; "websocket" }}
ssl = {{ certificate = "{cert_dir}/cert.pem"; key = "{cert_dir}/key.pem" }}
VirtualHost "localhost"
""")
    proc = subprocess.Popen(["prosody", "-F", "--config", str(cfg)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        return measure(proc.pid, port, n)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    args = ap.parse_args()
    n = args.clients
    if not OUTPOST.exists():
        sys.exit("build first: cargo build --release")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "o").mkdir()
        (o_idle, o_loaded), o_data = run_outpost(tmp / "o", n)
        rows = [("outpost", o_idle, o_loaded)]
        if shutil.which("prosody"):
            (tmp / "p").mkdir()
            p_idle, p_loaded = run_prosody(tmp / "p", n, o_data)
            rows.append(("prosody 0.12", p_idle, p_loaded))
        else:
            print("prosody not installed: reference column skipped")
    size = OUTPOST.stat().st_size
    print(f"release binary (x86_64, stripped): {size / 1024:.0f} KiB")
    print(f"{'server':14} {'idle RSS':>10} {'RSS ' + str(n) + ' TLS':>14} {'per conn':>10}")
    per = {}
    for name, idle, loaded in rows:
        per[name] = (loaded - idle) / n
        print(f"{name:14} {idle / 1024:9.1f}M {loaded / 1024:13.1f}M {per[name]:8.1f}KB")
    if len(rows) == 2:
        print(f"ratio per connection prosody/outpost: {per['prosody 0.12'] / per['outpost']:.1f}x; "
              f"idle: {rows[1][1] / rows[0][1]:.1f}x")


if __name__ == "__main__":
    main()
