#!/usr/bin/env python3
"""The hardening review's attacks, measured on this build and on a reference
build (the release before the hardening) in one run, side by side.

    cargo build --release
    git worktree add /tmp/ref bbde3c9 && (cd /tmp/ref && cargo build --release)
    target/test-venv/bin/python benches/hostile.py --reference /tmp/ref/target/release/outpost

Each row is one attack against a fresh node of each build:

* offline flood: 500 chat messages of 200 KB to one offline account, as fast
  as the sender can write: RSS growth and log growth of the node, messages
  refused;
* pipelined guesses: two streams each writing 2,000 wrong PLAIN attempts and
  then the right one in one go: whether either logged in, and the slowest
  ping of another user meanwhile;
* link-port flood: 600 idle TCP connections to `[link] listen`, the node
  limited to 96 open files: how long the admin socket (`outpost user list`)
  and a client login take to answer, and the node's CPU share over 3 s;
* one address's idle sockets: 400 idle connections from 127.0.0.2 to a node
  allowing 200: whether a user from 127.0.0.1 can log in.
"""

import argparse
import asyncio
import base64
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import servers  # noqa: E402
from outpost_node import Node, free_port  # noqa: E402
from sockets import idle_sockets  # noqa: E402
from xmpp import Raw, login, plain_auth, send_as  # noqa: E402



def node_for(binary, workdir, **c2s):
    """A Node (tests/integration) that runs `binary`."""
    import outpost_node
    outpost_node.BINARY = Path(binary)
    n = Node(workdir, **c2s)
    n.add_user("alice", "wonderland")
    n.add_user("bob", "bob-the-builder")
    return n


def dir_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def offline_flood(binary, tmp):
    node = node_for(binary, tmp / "flood", max_stanza_bytes=262144)
    node.start()
    try:
        before_rss = servers.rss_kb(node.proc.pid)
        before_log = dir_bytes(node.dir / "data" / "log")
        body = "z" * 200_000
        chats = [f"<message to='bob@localhost' type='chat' id='m{i}'><body>{body}</body></message>"
                 for i in range(500)]
        out = asyncio.run(send_as(node.port, "alice", "wonderland", chats))
        refused = out.count("<error")
        rss = servers.rss_kb(node.proc.pid) - before_rss
        log = dir_bytes(node.dir / "data" / "log") - before_log
        return f"RSS +{rss / 1024:.0f} MB, log +{log / 1e6:.0f} MB, {refused} refused"
    finally:
        node.stop()


def pipelined_guesses(binary, tmp):
    node = node_for(binary, tmp / "guess")
    node.start()

    async def attack():
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder", presence=False)
        outs = []

        async def guesser():
            raw = await Raw.open(node.port)
            await raw.starttls()
            burst = "".join(plain_auth("alice", f"guess{i}") for i in range(2000))
            raw.writer.write((burst + plain_auth("alice", "wonderland")).encode())
            text, start = "", time.monotonic()
            try:
                while time.monotonic() - start < 10 and "<success" not in text:
                    chunk = await asyncio.wait_for(raw.reader.read(65536), 10)
                    if not chunk:
                        break
                    text += chunk.decode(errors="replace")
            except (ConnectionError, asyncio.TimeoutError):
                pass
            outs.append(("<success" in text, time.monotonic() - start))

        tasks = [asyncio.ensure_future(guesser()) for _ in range(2)]
        worst = 0.0
        for _ in range(10):
            t = time.monotonic()
            await bob.plugin["xep_0199"].ping(timeout=30)
            worst = max(worst, time.monotonic() - t)
            await asyncio.sleep(0.3)
        await asyncio.gather(*tasks)
        bob.disconnect()
        won = [f"{took:.2f} s" for success, took in outs if success]
        return f"logged in: {', '.join(won) if won else 'never'}; slowest ping {worst:.2f} s"
    try:
        return asyncio.run(attack())
    finally:
        node.stop()


def link_flood(binary, tmp):
    node = node_for(binary, tmp / "link", handshake_timeout=30)
    link_port = free_port()
    fingerprint = base64.b64encode(bytes(32)).decode()
    node.append_config(f'[link]\nlisten = "127.0.0.1:{link_port}"\n'
                       f'[[link.peer]]\ndomain = "site.example"\nfingerprint = "{fingerprint}"\n')
    node.start(nofile=96)
    socks = idle_sockets(link_port, 600)
    try:
        time.sleep(1)
        t = time.monotonic()
        try:
            node.cli("user", "list", timeout=20)
            admin = f"{time.monotonic() - t:.2f} s"
        except subprocess.TimeoutExpired:
            admin = "no answer in 20 s"
        cpu0, t0 = servers.cpu_seconds(node.proc.pid), time.monotonic()
        time.sleep(3)
        share = (servers.cpu_seconds(node.proc.pid) - cpu0) / (time.monotonic() - t0)
        return f"admin socket: {admin}; CPU {share * 100:.0f} %"
    finally:
        for s in socks:
            s.close()
        node.stop()


def one_address(binary, tmp):
    node = node_for(binary, tmp / "slots", handshake_timeout=60, max_connections=200)
    node.start()
    socks = idle_sockets(node.port, 400)
    try:
        pending, deadline = list(socks), time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 1)
            pending = [s for s in pending if s not in writable]

        async def try_login():
            try:
                c = await asyncio.wait_for(login(node.port, "alice@localhost/x", "wonderland", presence=False), 20)
                c.disconnect()
                return "a user logs in"
            except (AssertionError, asyncio.TimeoutError, OSError):
                return "nobody can log in"
        return asyncio.run(try_login())
    finally:
        for s in socks:
            s.close()
        node.stop()


ATTACKS = [
    ("offline flood", offline_flood),
    ("pipelined guesses", pipelined_guesses),
    ("link-port flood", link_flood),
    ("one address's sockets", one_address),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", help="an outpost binary to compare with (e.g. the previous release)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    builds = [("this build", servers.OUTPOST)]
    if args.reference:
        builds.append(("reference", Path(args.reference)))
    for name, fn in ATTACKS:
        for build, binary in builds:
            with tempfile.TemporaryDirectory() as tmp:
                print(f"{name:24} {build:11} {fn(binary, Path(tmp))}", flush=True)


if __name__ == "__main__":
    main()
