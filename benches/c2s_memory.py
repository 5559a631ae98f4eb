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
import shutil
import tempfile
from pathlib import Path

import servers
from xmpp import Raw


async def login_all(port, n):
    clients = []
    for i in range(n):
        raw = await Raw.open(port)
        await raw.login_plain(f"user{i}", servers.PASSWORD)
        await raw.send("<presence/>")
        clients.append(raw)
    # One round trip per client: every session is fully set up server-side.
    for i, raw in enumerate(clients):
        await raw.send(f"<iq type='get' id='settle{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.read_until(f"settle{i}")
    return clients


def measure(pid, port, n):
    async def run():
        idle = servers.rss_kb(pid)
        clients = await login_all(port, n)
        loaded = servers.rss_kb(pid)
        for c in clients:
            c.close()
        return idle, loaded
    return asyncio.run(run())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    n = ap.parse_args().clients
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "o").mkdir()
        with servers.outpost(tmp / "o", n) as (pid, port, data):
            rows = [("outpost", *measure(pid, port, n))]
        if shutil.which("prosody"):
            (tmp / "p").mkdir()
            with servers.prosody(tmp / "p", n, data) as (pid, port):
                rows.append(("prosody 0.12", *measure(pid, port, n)))
        else:
            print("prosody not installed: reference column skipped")
    print(f"release binary (x86_64, stripped): {servers.OUTPOST.stat().st_size / 1024:.0f} KiB")
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
