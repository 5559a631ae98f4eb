#!/usr/bin/env python3
"""The longest stall of a node while its log grows and is compacted.

One client fills room archives (100-byte bodies, rooms of the default 8 MiB
archive each, the node's total raised to hold them all); another pings the
server every 10 ms and records each round trip. Compactions happen on their
own as the log grows (at 4 MiB plus twice the last snapshot). The longest
round trip is the longest the node kept a user waiting. With --reference,
the same fill runs against another build in the same run.

    cargo build --release
    python3 benches/compaction_stall.py [--messages 200000] [--reference OTHER_OUTPOST]
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import servers
from xmpp import Raw

ROOMS = 25
BODY = "x" * 90


def room(i):
    return f"fill{i}@conference.localhost"


async def pinger(port, stop, rtts):
    raw = await Raw.open(port)
    await raw.login_plain("user1", servers.PASSWORD)
    n = 0
    while not stop.is_set():
        n += 1
        t = time.monotonic()
        await raw.send(f"<iq type='get' id='p{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.read_until(f"id='p{n}'")
        rtts.append(time.monotonic() - t)
        await asyncio.sleep(0.01)
    raw.close()


async def filler(port, messages):
    await servers.fill_rooms(port, [room(i) for i in range(ROOMS)], messages, lambda k: f"{k} {BODY}")


async def scenario(port, messages):
    stop, rtts = asyncio.Event(), []
    ping = asyncio.create_task(pinger(port, stop, rtts))
    t = time.monotonic()
    await filler(port, messages)
    fill_s = time.monotonic() - t
    stop.set()
    await ping
    return fill_s, rtts


def run(binary, workdir, messages):
    servers.OUTPOST = Path(binary)
    extra = ("[muc]\narchive_messages = 1000000\nrooms_per_account = 100\n"
             f"archive_bytes_total = {ROOMS * 8 * 1024 * 1024}\n")
    with servers.outpost(workdir, 2, extra=extra) as (pid, port, data):
        fill_s, rtts = asyncio.run(scenario(port, messages))
        log_bytes = sum(f.stat().st_size for f in (data / "log").iterdir())
        rss = servers.rss_kb(pid)
    rtts.sort()
    return fill_s, rtts, log_bytes, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--reference", help="another outpost binary, run the same way")
    args = ap.parse_args()
    builds = [("this build", str(servers.OUTPOST))]
    if args.reference:
        builds.append(("reference", args.reference))
    print(f"{args.messages} room messages into {ROOMS} rooms; a ping every 10 ms meanwhile")
    print(f"{'build':12} {'fill s':>7} {'pings':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'log MB':>7} {'RSS MB':>7}")
    for name, binary in builds:
        with tempfile.TemporaryDirectory() as tmp:
            fill_s, rtts, log_bytes, rss = run(binary, Path(tmp), args.messages)
        med = rtts[len(rtts) // 2] * 1e3
        p99 = rtts[int(len(rtts) * 0.99)] * 1e3
        print(f"{name:12} {fill_s:7.1f} {len(rtts):6} {med:10.2f} {p99:8.2f} {rtts[-1] * 1e3:8.1f} "
              f"{log_bytes / 1e6:7.1f} {rss / 1024:7.1f}")


if __name__ == "__main__":
    main()
