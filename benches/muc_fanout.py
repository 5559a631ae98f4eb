#!/usr/bin/env python3
"""Room fan-out: deliveries per CPU-second, outpost and Prosody in one run.

N clients log in (STARTTLS, PLAIN) and join one room (no history). One of
them sends M groupchat messages; every occupant reads until it has all M.
The server's CPU time (user + system, from /proc) over that phase gives
deliveries per CPU-second = M x N / CPU seconds. RSS is read before and after
the joins for the memory per room occupancy.

    cargo build --release && python3 benches/muc_fanout.py [--occupants 100] [--messages 300]
"""

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

import servers
from xmpp import Raw

ROOM = "bench@conference.localhost"
INSTANT = ("<iq type='set' id='instant' to='" + ROOM + "'><query xmlns='http://jabber.org/protocol/muc#owner'>"
           "<x xmlns='jabber:x:data' type='submit'/></query></iq>")


class Counter:
    """Reads a client's stream, counting benchmark messages as they arrive."""

    def __init__(self, raw):
        self.raw, self.seen, self.tail = raw, 0, ""

    async def until(self, n):
        while self.seen < n:
            chunk = await asyncio.wait_for(self.raw.reader.read(65536), 60)
            if not chunk:
                raise RuntimeError("connection closed")
            text = self.tail + chunk.decode(errors="replace")
            self.seen += text.count("<body>bench ")
            self.tail = text[-16:]
            # Avoid counting a marker split across reads twice.
            if "<body>bench " in self.tail:
                self.tail = ""


async def scenario(pid, port, n, m):
    clients = []
    for i in range(n):
        raw = await Raw.open(port)
        await raw.login_plain(f"user{i}", servers.PASSWORD)
        clients.append(raw)
    before_join = servers.rss_kb(pid)
    for i, raw in enumerate(clients):
        await raw.send(f"<presence to='{ROOM}/u{i}'><x xmlns='http://jabber.org/protocol/muc'>"
                       "<history maxstanzas='0'/></x></presence>")
        await raw.read_until("110")
        if i == 0:
            await raw.send(INSTANT)
            await raw.read_until("id='instant'")
    # Settle: everyone has seen the last join.
    for raw in clients:
        await raw.send("<iq type='get' id='settle'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.read_until("id='settle'")
        raw.buffer = ""
    after_join = servers.rss_kb(pid)
    counters = [Counter(c) for c in clients]
    cpu0 = servers.cpu_seconds(pid)
    sender = clients[0]
    for k in range(m):
        await sender.send(f"<message to='{ROOM}' type='groupchat' id='b{k}'><body>bench {k} " + "x" * 80 + "</body></message>")
    await asyncio.gather(*(c.until(m) for c in counters))
    cpu = servers.cpu_seconds(pid) - cpu0
    for c in clients:
        c.close()
    return cpu, (after_join - before_join) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--occupants", type=int, default=100)
    ap.add_argument("--messages", type=int, default=300)
    args = ap.parse_args()
    n, m = args.occupants, args.messages
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "o").mkdir()
        with servers.outpost(tmp / "o", n) as (pid, port, data):
            rows.append(("outpost", *asyncio.run(scenario(pid, port, n, m))))
        if shutil.which("prosody"):
            (tmp / "p").mkdir()
            with servers.prosody(tmp / "p", n, data) as (pid, port):
                rows.append(("prosody 0.12", *asyncio.run(scenario(pid, port, n, m))))
        else:
            print("prosody not installed: reference column skipped")
    deliveries = n * m
    print(f"{n} occupants, {m} messages, {deliveries} deliveries")
    print(f"{'server':14} {'CPU s':>7} {'deliveries/CPU-s':>17} {'us/delivery':>12} {'RSS/occupancy':>14}")
    rate = {}
    for name, cpu, per_occ in rows:
        rate[name] = deliveries / max(cpu, 0.01)
        print(f"{name:14} {cpu:7.2f} {rate[name]:17,.0f} {1e6 / rate[name]:12.1f} {per_occ:12.1f}KB")
    if len(rows) == 2:
        print(f"ratio deliveries per CPU-second outpost/prosody: {rate['outpost'] / rate['prosody 0.12']:.1f}x")


if __name__ == "__main__":
    main()
