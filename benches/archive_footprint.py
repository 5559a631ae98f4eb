#!/usr/bin/env python3
"""What a node's room archives cost it: memory, disk and start-up time.

One client fills 25 rooms with room messages of ~100-byte bodies (words
drawn from a fixed vocabulary with a fixed seed, so every build stores the
same text; a body of one repeated letter would flatter compression), the
node's retention raised to keep them all. Then, per build: RSS after the
fill, disk bytes (log and archive files) per message and per byte of
body, bytes written per byte of body (write amplification: flash wears); then the node is stopped and started again on its data, and
the time from start to a login answered and to a MAM page answered is
taken, with RSS after that restart. With --reference, the same run against
another build, in the same invocation; then the same for Prosody 0.12 with
mod_muc_mam on SQLite, if Debian's prosody and lua-dbi-sqlite3 are there.

    cargo build --release
    python3 benches/archive_footprint.py [--messages 100000] [--reference OTHER_OUTPOST]
"""

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import servers
from outpost_node import wait_for_port
from xmpp import Raw

ROOMS = 25
WORDS = ("road north water pump fuel team late early bridge truck radio "
         "battery signal crossing convoy medic supplies tent generator river "
         "checkpoint ok yes no tomorrow tonight report status copy repeat").split()


def room(i):
    return f"fill{i}@conference.localhost"


def body(rng):
    words = []
    while sum(len(w) + 1 for w in words) < 100:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:100]


async def fill(port, messages):
    rng = random.Random(7)
    await servers.fill_rooms(port, [room(i) for i in range(ROOMS)], messages, lambda _: body(rng))


async def login_then_mam(port):
    """When a login was answered, then when a MAM page of room 0 was."""
    raw = await Raw.open(port)
    await raw.login_plain("user1", servers.PASSWORD)
    login = time.monotonic()
    await raw.send(f"<iq type='set' id='q' to='{room(0)}'><query xmlns='urn:xmpp:mam:2' queryid='q'>"
                   "<set xmlns='http://jabber.org/protocol/rsm'><max>20</max><before/></set></query></iq>")
    page = await raw.read_until("<fin")
    mam = time.monotonic()
    assert page.count("<result") >= 20, f"no MAM page: {page[-300:]}"
    raw.close()
    return login, mam


def written_bytes(pid):
    """Bytes the process sent to the storage device (its files' pages,
    written back by its syncs), less those of files it cut or removed
    before they were written: what wears the flash."""
    io = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
    return int(io["write_bytes"]) - int(io["cancelled_write_bytes"])


def disk_bytes(data):
    """An outpost's log and archive files (where a build has them), or all
    of Prosody's data (its SQLite database and its account files)."""
    if (data / "log").is_dir():
        return sum(f.stat().st_size for d in ("log", "archive") if (data / d).is_dir()
                   for f in (data / d).iterdir())
    return sum(f.stat().st_size for f in data.rglob("*") if f.is_file())


def outpost_config(messages):
    """Retention raised so that the node keeps every message."""
    per_room = messages // ROOMS + 1
    return (f"[muc]\narchive_messages = {per_room}\narchive_bytes = {per_room * 1024}\n"
            f"rooms_per_account = 100\narchive_bytes_total = {messages * 1024}\n")


def run(start, data, messages):
    """`start()` is a context yielding (pid, port) of a server on its data
    in `data`; a second call starts it again on what the first left."""
    r = {}
    with start() as (pid, port):
        t = time.monotonic()
        asyncio.run(fill(port, messages))
        r["fill_s"] = time.monotonic() - t
        r["rss_filled"] = servers.rss_kb(pid)
        r["written"] = written_bytes(pid)
    # Stopped: its data as the next start finds it.
    r["disk"] = disk_bytes(data)
    t = time.monotonic()
    with start() as (pid, port):
        login, mam = asyncio.run(login_then_mam(port))
        r["start_login_s"], r["start_mam_s"] = login - t, mam - t
        r["rss_restarted"] = servers.rss_kb(pid)
    return r


def run_outpost(binary, workdir, messages):
    servers.OUTPOST = Path(binary)
    cfg = workdir / "outpost.toml"

    @contextlib.contextmanager
    def start():
        if not cfg.exists():
            with servers.outpost(workdir, 2, extra=outpost_config(messages)) as (pid, port, _):
                yield pid, port
            return
        port = int(cfg.read_text().split('listen = "127.0.0.1:')[1].split('"')[0])
        proc = subprocess.Popen([str(binary), "run", "-c", str(cfg)])
        try:
            wait_for_port(port, proc, 600.0)
            yield proc.pid, port
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()

    return run(start, workdir / "data", messages)


def run_prosody(workdir, cert_dir, messages):
    def start():
        return servers.prosody(workdir, 2, cert_dir, muc_archive=True)
    return run(start, workdir / "prosody-data", messages)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--reference", help="another outpost binary, run the same way")
    ap.add_argument("--no-prosody", action="store_true",
                    help="skip Prosody 0.12 (mod_muc_mam on SQLite), run after the builds")
    args = ap.parse_args()
    builds = [("this build", str(servers.OUTPOST))]
    if args.reference:
        builds.append(("reference", args.reference))
    n = args.messages
    print(f"{n} room messages with 100-byte bodies into {ROOMS} rooms, then a restart")
    print(f"{'build':12} {'fill s':>7} {'RSS MB':>7} {'disk MB':>8} {'B/msg':>6} {'x body':>7} "
          f"{'written/body':>13} {'start→login s':>14} {'start→MAM s':>12} {'RSS after MB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, (name, binary) in enumerate(builds):
            (tmp / str(i)).mkdir()
            show(name, run_outpost(binary, tmp / str(i), n), n)
        if args.no_prosody:
            return
        if not shutil.which("prosody"):
            print("prosody not installed: reference row skipped")
            return
        (tmp / "p").mkdir()
        # Prosody uses the certificate the first outpost made for itself.
        show("prosody 0.12", run_prosody(tmp / "p", tmp / "0" / "data", n), n)


def show(name, r, n):
    print(f"{name:12} {r['fill_s']:7.1f} {r['rss_filled'] / 1024:7.1f} {r['disk'] / 1e6:8.1f} "
          f"{r['disk'] / n:6.0f} {r['disk'] / n / 100:7.2f} {r['written'] / n / 100:13.1f} "
          f"{r['start_login_s']:14.2f} "
          f"{r['start_mam_s']:12.2f} {r['rss_restarted'] / 1024:13.1f}", flush=True)

if __name__ == "__main__":
    main()
