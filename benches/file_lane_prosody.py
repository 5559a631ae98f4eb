#!/usr/bin/env python3
"""Chat while a file crosses a 9600 bit/s link: outpost against Prosody,
real processes, in one run.

The script re-executes itself in a private network and mount namespace
(`unshare`, needs root; federation_bytes.py's set-up): HQ fairfax.example on
127.0.0.2, site raleigh.example on 127.0.0.3, each reached from the other
side only through one shaped link (benches/common/shared_link.py): 1200
bytes a second each way (9600 bit/s), 300 ms one-way delay, a FIFO of at
most --queue bytes in front of each direction's line, shared by every TCP
connection between the two sides. Kevin (HQ) and Wayne (site) are slixmpp
clients on loopback, each on his own server.

Per server, with fresh processes:

* idle: Kevin and Wayne send each other one-to-one messages (100-byte
  bodies of random words), alternating directions, one every 2-3 s,
  --idle a way; each message's latency is the time from its send until the
  other client has it.
* file: Kevin uploads a --size-byte incompressible file at HQ (slixmpp's
  XEP-0363 plugin; slot at upload.fairfax.example, PUT on HQ's side, not
  across the link). Then Wayne downloads it over HTTPS while the same chat
  goes on, until the file is whole:
  - outpost: from the site node's upload port, at the same path; the site
    node fetches it across its link in the file lane. The link is the only
    connection between the sides.
  - Prosody 0.12 (mod_http_file_share at HQ, s2s with TLS and dialback
    between the two servers): from HQ's HTTPS port, across the link, beside
    the s2s connections (one each way), as a site's uplink would carry it.
    A response cut short is resumed with a Range request, as a phone would.

Printed: per server, condition and direction, the messages and their median,
p99 and max latency; the file's transfer time (GET sent until the last
byte); the link bytes each way (TCP payload, TLS included) in each phase.

    cargo build --release
    sudo target/test-venv/bin/python benches/file_lane_prosody.py
    (quick: --size 100000 --idle 5)
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from federation_bytes import HQ_IP, HQ_RELAY, PASSWORD, SITE_IP, SITE_RELAY, chat_line, enter_namespace, write_accounts

import aiohttp  # noqa: E402
from aiohttp.abc import AbstractResolver  # noqa: E402
import slixmpp  # noqa: E402
import slixmpp.plugins.xep_0363.http_upload as http_upload  # noqa: E402
from slixmpp import JID  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "common"))
from outpost_node import wait_for_port  # noqa: E402
from shared_link import SharedLink  # noqa: E402
from xmpp import insecure_context  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPOST = Path(os.environ.get("OUTPOST_BIN", ROOT / "target" / "release" / "outpost"))
HQ, SITE = "fairfax.example", "raleigh.example"
KEVIN, WAYNE = f"kevin@{HQ}", f"wayne@{SITE}"
UPLOAD_PORT = 5281
# Where each client finds a host name: its own side's servers directly, the
# other side's through the link (as the namespace's /etc/hosts says).
ON_HQ_SIDE = {HQ: HQ_IP, f"upload.{HQ}": HQ_IP}


# ---- processes -------------------------------------------------------------

def private_network():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tmp = Path(tempfile.mkdtemp())
    hosts = tmp / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{HQ_RELAY} {HQ} conference.{HQ} upload.{HQ}\n{SITE_RELAY} {SITE}\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    return tmp


def outpost_cli(cfg, *args, stdin=None):
    return subprocess.run([str(OUTPOST), *args, "-c", str(cfg)], input=stdin, capture_output=True, text=True,
                          check=True)


def start_outpost(work, link):
    """HQ and site outpost nodes linked through `link`, each serving uploads: processes."""
    cfgs = {}
    for name, domain, ip in (("hq", HQ, HQ_IP), ("site", SITE, SITE_IP)):
        cfg = work / f"{name}.toml"
        cfg.write_text(f'domain = "{domain}"\ndata_dir = "{work}/{name}-data"\nlog_level = "info"\n'
                       f'[c2s]\nlisten = "{ip}:5222"\n[upload]\nlisten = "{ip}:{UPLOAD_PORT}"\n')
        cfgs[name] = cfg
    fp = {n: outpost_cli(c, "check").stdout.split()[-1] for n, c in cfgs.items()}
    with open(cfgs["hq"], "a") as f:
        f.write(f'[link]\nlisten = "{HQ_IP}:5270"\n[[link.peer]]\ndomain = "{SITE}"\nfingerprint = "{fp["site"]}"\n')
    with open(cfgs["site"], "a") as f:
        f.write(f'[[upstream]]\nmuc = "conference.{HQ}"\nconnect = "{HQ_RELAY}:5270"\nfingerprint = "{fp["hq"]}"\n')
    outpost_cli(cfgs["hq"], "user", "add", "kevin", stdin=PASSWORD + "\n")
    outpost_cli(cfgs["site"], "user", "add", "wayne", stdin=PASSWORD + "\n")
    link.route(HQ_RELAY, 5270, (HQ_IP, 5270), toward="hq")
    procs = []
    for name, ip in (("hq", HQ_IP), ("site", SITE_IP)):
        log = open(work / f"{name}.log", "a")
        procs.append(subprocess.Popen([str(OUTPOST), "run", "-c", str(cfgs[name])], stdout=log, stderr=log))
    for p, ip in zip(procs, (HQ_IP, SITE_IP)):
        wait_for_port(5222, p, 15.0, ip)
        wait_for_port(UPLOAD_PORT, p, 15.0, ip)
    end = time.monotonic() + 30
    while not any(line.split()[1:2] == ["up"] for line in outpost_cli(cfgs["site"], "links").stdout.splitlines()[1:]):
        if time.monotonic() > end:
            raise TimeoutError("outpost: the site's link did not come up")
        time.sleep(0.2)
    return procs


def prosody_config(work, name, domain, ip, upload):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(work / f"{name}.key"), "-out", str(work / f"{name}.crt"), "-days", "30",
                    "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain},DNS:*.{domain}"],
                   check=True, capture_output=True)
    http = f"""
http_ports = {{ }}
https_ports = {{ {UPLOAD_PORT} }}
https_ssl = {{ certificate = "{work}/{name}.crt"; key = "{work}/{name}.key" }}
""" if upload else ""
    component = f'Component "upload.{domain}" "http_file_share"\n' if upload else ""
    cfg = work / f"{name}.cfg.lua"
    cfg.write_text(f"""
run_as_root = true
daemonize = false
pidfile = "{work}/{name}.pid"
data_path = "{work}/{name}-data"
log = {{ {os.environ.get("BENCH_PROSODY_LOG", "warn")} = "{work}/{name}.log" }}
interfaces = {{ "{ip}" }}
c2s_ports = {{ 5222 }}
s2s_ports = {{ 5269 }}
component_ports = {{ }}
authentication = "internal_plain"
s2s_require_encryption = true
s2s_secure_auth = false
unbound = {{ hoststxt = "/etc/hosts" }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "offline" }}
modules_disabled = {{ {'' if upload else '"http"; '}"bosh"; "websocket" }}
ssl = {{ certificate = "{work}/{name}.crt"; key = "{work}/{name}.key" }}
{http}
VirtualHost "{domain}"
{component}""")
    return cfg


def start_prosody(work, link):
    """Prosody HQ (with mod_http_file_share) and site over s2s through `link`: processes."""
    write_accounts(work / "hq-data", HQ, ["kevin"])
    write_accounts(work / "site-data", SITE, ["wayne"])
    link.route(HQ_RELAY, 5269, (HQ_IP, 5269), toward="hq")
    link.route(SITE_RELAY, 5269, (SITE_IP, 5269), toward="site")
    link.route(HQ_RELAY, UPLOAD_PORT, (HQ_IP, UPLOAD_PORT), toward="hq")
    procs = []
    for name, domain, ip, upload in (("hq", HQ, HQ_IP, True), ("site", SITE, SITE_IP, False)):
        cfg = prosody_config(work, name, domain, ip, upload)
        procs.append(subprocess.Popen(["prosody", "-F", "--config", str(cfg)], stdout=subprocess.DEVNULL))
    for p, ip in zip(procs, (HQ_IP, SITE_IP)):
        wait_for_port(5222, p, 60.0, ip)
    wait_for_port(UPLOAD_PORT, procs[0], 60.0, HQ_IP)
    return procs


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---- clients ----------------------------------------------------------------

class Chatter(slixmpp.ClientXMPP):
    """A slixmpp client that notes when each chat message arrives (by the
    tag its body starts with)."""

    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context = insecure_context()
        for plugin in ("xep_0030", "xep_0199", "xep_0363"):
            self.register_plugin(plugin)
        self.arrived = {}
        self.errors = 0
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self.started.done() or self.started.set_result(True))
        self.add_event_handler("failed_all_auth", lambda _: self.started.done() or self.started.set_result(False))
        self.add_event_handler("message", self._message)

    def _message(self, msg):
        now = time.monotonic()
        if msg["type"] == "error":
            self.errors += 1
        elif msg["body"]:
            self.arrived.setdefault(msg["body"].split(" ", 1)[0], now)


async def online(jid, host):
    c = Chatter(jid, PASSWORD)
    c.connect(host, 5222)
    assert await asyncio.wait_for(c.started, 30), f"{jid} could not log in"
    await c.get_roster()
    c.send_presence()
    return c


class Resolver(AbstractResolver):
    """Names to addresses as this side's client sees them."""

    def __init__(self, names):
        self.names = names

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": self.names[host], "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


async def upload(kevin, path):
    """Kevin uploads `path` with slixmpp's XEP-0363 plugin (disco of his
    domain, a slot, the PUT on HQ's side): the GET URL."""
    original = http_upload.ClientSession

    def session(**kw):
        return original(connector=aiohttp.TCPConnector(ssl=insecure_context(), resolver=Resolver(ON_HQ_SIDE)), **kw)
    http_upload.ClientSession = session
    try:
        return await kevin.plugin["xep_0363"].upload_file(path, domain=JID(HQ), timeout=60)
    finally:
        http_upload.ClientSession = original


async def get(url, address, progress, read_timeout=300):
    """HTTPS GET of `url` at `address` (the URL's host name as the site sees
    it), resuming with a Range request where a response stops short:
    (bytes, status codes of the responses)."""
    parts = urlsplit(url)
    target = url[url.index("/", len("https://")):]
    data, statuses = b"", []
    for _ in range(20):
        reader, writer = await asyncio.open_connection(address, parts.port, ssl=insecure_context(),
                                                       server_hostname=parts.hostname)
        try:
            head = [f"GET {target} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}", "Connection: close"]
            if data:
                head.append(f"Range: bytes={len(data)}-")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            status = int((await asyncio.wait_for(reader.readline(), read_timeout)).split()[1])
            statuses.append(status)
            assert status in (200, 206), status
            length = None
            while line := (await asyncio.wait_for(reader.readline(), read_timeout)).strip():
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if status == 200:
                data = b""
            got = 0
            while got < length:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
                except (ConnectionError, ssl.SSLError, asyncio.TimeoutError):
                    chunk = b""
                if not chunk:
                    break
                data += chunk
                got += len(chunk)
                progress(len(data))
            if got >= length:
                return data, statuses
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    raise AssertionError(f"{url}: still short after 20 responses ({len(data)} bytes)")


# ---- the chat ---------------------------------------------------------------

async def chat(kevin, wayne, link, label, rng, count=None, until=None, settle=60):
    """Alternating one-to-one messages, one every 2-3 s: `count` a way, or
    until `until` is set. Returns one row per message: (direction, latency
    in seconds or None if it never came, link bytes queued its way when it
    was sent, seconds from the first send to its own)."""
    sent = []
    i, began = 0, time.monotonic()
    while (count is None or i < 2 * count) and not (until is not None and until.is_set()):
        up = i % 2 == 0  # site -> HQ first
        tag = f"{label}{i}"
        sender, receiver, to = (wayne, kevin, KEVIN) if up else (kevin, wayne, WAYNE)
        body = f"{tag} {chat_line(1000 * len(label) + i)}"[:100]
        queued = link.queued()[0 if up else 1]
        sender.send_message(mto=to, mbody=body, mtype="chat")
        sent.append(("site->HQ" if up else "HQ->site", tag, time.monotonic(), receiver, queued))
        i += 1
        delay = rng.uniform(2.0, 3.0)
        if until is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(until.wait(), delay)
    end = time.monotonic() + settle
    while time.monotonic() < end and not all(tag in r.arrived for _, tag, _, r, _ in sent):
        await asyncio.sleep(0.1)
    return [(d, r.arrived[tag] - t if tag in r.arrived else None, q, t - began) for d, tag, t, r, q in sent]


async def scenario(name, work, link, args):
    rng = random.Random(args.seed)
    kevin = await online(KEVIN, HQ_IP)
    wayne = await online(WAYNE, SITE_IP)
    # Server-to-server connections both ways before anything is measured
    # (outpost's link is up from the start).
    await wayne.plugin["xep_0199"].ping(jid=JID(HQ), timeout=60)
    await kevin.plugin["xep_0199"].ping(jid=JID(SITE), timeout=60)
    await asyncio.to_thread(link.quiet, 2.0)
    out = {}

    b0 = link.bytes()
    link.reset_maxima()
    idle = await chat(kevin, wayne, link, "i", rng, count=args.idle)
    await asyncio.to_thread(link.quiet, 1.0)
    b1 = link.bytes()
    out["idle"] = {"rows": idle, "up": b1[0] - b0[0], "down": b1[1] - b0[1], "maxima": link.maxima()}

    path = work / "site-report.bin"
    path.write_bytes(os.urandom(args.size))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    url = await upload(kevin, path)
    await asyncio.to_thread(link.quiet, 1.0)
    if name == "outpost":
        # The same path at the site's node, on the site's side.
        url_here, address = f"https://{SITE}:{UPLOAD_PORT}{url[url.index('/', len('https://')):]}", SITE_IP
    else:
        url_here, address = url, HQ_RELAY  # HQ's HTTPS server, across the link
    print(f"{name}: uploaded {args.size} bytes at HQ: {url}\n{name}: the site reads {url_here} at {address}",
          file=sys.stderr, flush=True)
    done = asyncio.Event()
    marks = {"last": 0}
    began = time.monotonic()

    def progress(n):
        if n * 10 // args.size > marks["last"]:
            marks["last"] = n * 10 // args.size
            print(f"{name}: {n} bytes at the site after {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)

    async def fetch():
        try:
            return await get(url_here, address, progress)
        finally:
            done.set()
    b0 = link.bytes()
    link.reset_maxima()
    fetching = asyncio.create_task(fetch())
    rows = await chat(kevin, wayne, link, "f", rng, until=done)
    data, statuses = await fetching
    took = time.monotonic() - began
    b1 = link.bytes()
    assert hashlib.sha256(data).hexdigest() == digest, f"{name}: the file read at the site differs"
    out["file"] = {"rows": rows, "up": b1[0] - b0[0], "down": b1[1] - b0[1], "maxima": link.maxima(),
                   "took": took, "responses": statuses}
    out["errors"] = kevin.errors + wayne.errors
    for c in (kevin, wayne):
        c.disconnect()
    return out


def run(name, work, args):
    link = SharedLink(rate=args.rate, delay=args.delay, queue=args.queue, segment=args.segment)
    procs = []
    try:
        procs = (start_outpost if name == "outpost" else start_prosody)(work, link)
        return asyncio.run(scenario(name, work, link, args))
    finally:
        link.close()
        stop(procs)


# ---- report -----------------------------------------------------------------

def percentile(xs, p):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))]


def report(results, args):
    print(f"\none-to-one chat between Kevin (HQ) and Wayne (site), one message every 2-3 s, alternating;\n"
          f"link: {args.rate} B/s each way, {args.delay * 1000:.0f} ms one-way delay, "
          f"{args.queue}-byte FIFO per direction shared by every connection;\n"
          f"file: {args.size:,} random bytes uploaded at HQ, read at the site over HTTPS"
          + ("" if args.size == 1_000_000 else f"  ** NOT 1 MB: {args.size:,} bytes **"))
    print(f"\n{'server':8} {'chat':14} {'direction':9} {'messages':>8} {'lost':>4} {'median':>8} {'p99':>8} "
          f"{'max':>8}  {'queued at send (median/max)':>27}")
    for name, r in results.items():
        for cond in ("idle", "file"):
            for direction in ("site->HQ", "HQ->site"):
                rows = [x for x in r[cond]["rows"] if x[0] == direction]
                lat = [x[1] * 1000 for x in rows if x[1] is not None]
                queued = [x[2] for x in rows]
                label = "idle link" if cond == "idle" else "file crossing"
                if not lat:
                    print(f"{name:8} {label:14} {direction:9} {len(rows):>8} {len(rows):>4}   (none arrived)")
                    continue
                print(f"{name:8} {label:14} {direction:9} {len(rows):>8} {len(rows) - len(lat):>4} "
                      f"{percentile(lat, 50):>6.0f}ms {percentile(lat, 99):>6.0f}ms {max(lat):>6.0f}ms  "
                      f"{percentile(queued, 50):>13} / {max(queued):<6}")
    print(f"\n{'server':8} {'phase':14} {'took':>9} {'HTTP responses':>15} {'link bytes down':>16} {'up':>9}"
          f"  {'most queued down/up':>20} {'line lag':>9}")
    for name, r in results.items():
        for cond in ("idle", "file"):
            ph = r[cond]
            took = f"{ph['took']:.1f} s" if cond == "file" else "-"
            resp = ",".join(map(str, ph["responses"])) if cond == "file" else "-"
            m = ph["maxima"]
            lag = max(m["hq"][1], m["site"][1]) * 1000
            print(f"{name:8} {'idle chat' if cond == 'idle' else 'file + chat':14} {took:>9} {resp:>15} "
                  f"{ph['down']:>16,} {ph['up']:>9,}  {m['site'][0]:>9} / {m['hq'][0]:<8} {lag:>7.0f}ms")
    for name, r in results.items():
        if r.get("errors"):
            print(f"{name}: {r['errors']} error messages to the chatting clients")
    if "outpost" in results:
        o = results["outpost"]
        for direction in ("site->HQ", "HQ->site"):
            idle = [x[1] for x in o["idle"]["rows"] if x[0] == direction and x[1] is not None]
            busy = [x[1] for x in o["file"]["rows"] if x[0] == direction and x[1] is not None]
            d = [(percentile(busy, p) - percentile(idle, p)) * 1000 for p in (50, 99)] + \
                [(max(busy) - max(idle)) * 1000]
            verdict = "within" if max(d) <= 1000 else "NOT within"
            print(f"outpost {direction}: during the transfer minus idle: median {d[0]:+.0f} ms, p99 {d[1]:+.0f} ms, "
                  f"max {d[2]:+.0f} ms: {verdict} the 1 s goal")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1_000_000, help="file bytes (default 1,000,000)")
    ap.add_argument("--idle", type=int, default=30, help="idle-link messages a way")
    ap.add_argument("--rate", type=int, default=1200, help="link bytes a second, each way")
    ap.add_argument("--delay", type=float, default=0.3, help="one-way delay, seconds")
    ap.add_argument("--queue", type=int, default=4096, help="FIFO bytes in front of each direction's line")
    ap.add_argument("--segment", type=int, default=512, help="most bytes the link reads from a connection at once")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=("outpost", "prosody"))
    ap.add_argument("--json", help="write the results here (default: results.json in the scratch directory)")
    args = ap.parse_args()
    if not OUTPOST.exists():
        sys.exit("build first: cargo build --release")
    enter_namespace(__file__)
    tmp = private_network()
    results = {}
    for name in ("outpost", "prosody"):
        if args.only and name != args.only:
            continue
        if name == "prosody" and not shutil.which("prosody"):
            print("prosody is not installed (apt-get install prosody): its rows are skipped", file=sys.stderr)
            continue
        work = tmp / name
        work.mkdir()
        os.chdir(work)
        t = time.monotonic()
        results[name] = run(name, work, args)
        print(f"{name}: done in {time.monotonic() - t:.0f} s (work dir {work})", file=sys.stderr, flush=True)
    saved = Path(args.json) if args.json else tmp / "results.json"
    saved.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"per-message rows: {saved}", file=sys.stderr)
    report(results, args)


if __name__ == "__main__":
    main()
