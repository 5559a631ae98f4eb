#!/usr/bin/env python3
"""What offline messages cost a node in memory: one client sends N chat
messages of ~1,000-byte bodies round robin to K accounts that are not
logged in, the node's offline bounds raised to keep them all; RSS after
the fill, and after a restart on the same data, then a login of one
recipient that reads its queue (all of it is counted). With --reference,
the same run against another build, in the same invocation.

    cargo build --release
    python3 benches/offline_footprint.py [--messages 50000] [--accounts 100] [--reference OTHER_OUTPOST]
"""

import argparse
import asyncio
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import servers
from outpost_node import wait_for_port
from xmpp import Raw

BODY = "situation report from the north road: water pump fixed, fuel low " * 15


async def fill(port, accounts, messages):
    raw = await Raw.open(port)
    await raw.login_plain("user0", servers.PASSWORD)
    await servers.send_acked(raw, messages, lambda k: (
        f"<message to='user{1 + k % accounts}@localhost' type='chat' id='m{k}'><body>{k} {BODY}</body></message>"))
    raw.close()


async def read_queue(port, expected):
    """Log in as user1, send presence, count the offline messages."""
    raw = await Raw.open(port)
    await raw.login_plain("user1", servers.PASSWORD)
    await raw.send("<presence/>")
    got = 0
    while got < expected:
        chunk = await raw.read_until("</message>")
        got += chunk.count("urn:xmpp:delay")
    raw.close()
    return got


def run(binary, workdir, accounts, messages):
    servers.OUTPOST = Path(binary)
    extra = (f"[c2s]\noffline_limit = {messages}\noffline_bytes_per_account = {messages * 2048}\n"
             f"offline_bytes_total = {messages * 2048}\n")
    r = {}
    with servers.outpost(workdir, accounts + 1, c2s_extra=extra) as (pid, port, _):
        t = time.monotonic()
        asyncio.run(fill(port, accounts, messages))
        r["fill_s"] = time.monotonic() - t
        r["rss_filled"] = servers.rss_kb(pid)
    cfg = workdir / "outpost.toml"
    port = int(cfg.read_text().split('listen = "127.0.0.1:')[1].split('"')[0])
    proc = subprocess.Popen([str(binary), "run", "-c", str(cfg)])
    try:
        wait_for_port(port, proc, 600.0)
        r["rss_restarted"] = servers.rss_kb(proc.pid)
        per_account = len(range(0, messages, accounts))
        r["read"] = asyncio.run(read_queue(port, per_account))
        r["rss_read"] = servers.rss_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--reference", help="another outpost binary, run the same way")
    args = ap.parse_args()
    builds = [("this build", str(servers.OUTPOST))]
    if args.reference:
        builds.append(("reference", args.reference))
    n, k = args.messages, args.accounts
    print(f"{n} offline messages of ~1 KB to {k} accounts, then a restart and one account's login")
    print(f"{'build':12} {'fill s':>7} {'RSS filled MB':>14} {'RSS restarted MB':>17} {'read':>6} {'RSS after read MB':>18}")
    for name, binary in builds:
        with tempfile.TemporaryDirectory() as tmp:
            r = run(binary, Path(tmp), k, n)
        print(f"{name:12} {r['fill_s']:7.1f} {r['rss_filled'] / 1024:14.1f} {r['rss_restarted'] / 1024:17.1f} "
              f"{r['read']:6} {r['rss_read'] / 1024:18.1f}", flush=True)


if __name__ == "__main__":
    main()
