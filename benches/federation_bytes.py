#!/usr/bin/env python3
"""Link bytes for a room hosted at HQ with K occupants at a site: outpost's
mirroring link against Prosody's plain federation (s2s), in one run.

The script re-executes itself in a private network and mount namespace
(`unshare`, needs root), brings up loopback, and bind-mounts a private
/etc/hosts naming fairfax.example (HQ) and raleigh.example (site). Every byte
between the two nodes passes a counting relay (TCP payload, TLS included).
Scenario per server and K: 2 occupants at HQ, a room with a subject and 20
messages of history; K site users join one by one (20 messages of history
each); HQ sends 200 messages (100-byte bodies of random words: outpost's
link is compressed, and text this random is harder to compress than chat)
and 50 presence changes. Then the link is cut for 60 s while HQ sends a
message every 10 s, and restored: the bytes from then until every site user
has every missed message (or 90 s have passed), and how many arrived.
Bytes are attributed to a step once the link has been quiet for a second.

    cargo build --release && sudo python3 benches/federation_bytes.py [--k 1 5 20]
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
from outpost_node import wait_for_port  # noqa: E402
from xmpp import Raw  # noqa: E402

OUTPOST = ROOT / "target" / "release" / "outpost"
HQ_IP, SITE_IP = "127.0.0.2", "127.0.0.3"
HQ_RELAY, SITE_RELAY = "127.0.0.12", "127.0.0.13"
ROOM = "chat@conference.fairfax.example"
BODY_LEN = 100


def chat_line(n):
    """100 bytes of random lowercase words, the same for the same n."""
    x = (n * 0x9E3779B97F4A7C15 | 1) & (2**64 - 1)

    def nxt():
        nonlocal x
        x ^= (x << 13) & (2**64 - 1)
        x ^= x >> 7
        x ^= (x << 17) & (2**64 - 1)
        return x
    line = ""
    while len(line) < BODY_LEN:
        line += "".join(chr(97 + nxt() % 26) for _ in range(2 + nxt() % 8)) + " "
    return line[:BODY_LEN]
PASSWORD = "bench-password"


class Relay:
    """Counts every byte between the nodes, both ways; `dialed[host]` and
    `answered[host]` split them for the connections made to the listening
    address `host`: what the dialing node sent, and what it was sent."""

    def __init__(self):
        self.bytes = 0
        self.dialed, self.answered = {}, {}
        self.servers = []
        self.routes = []
        self.writers = set()

    async def listen(self, host, port, target):
        self.routes.append((host, port, target))
        await self._serve(host, port, target)

    def cut(self):
        """The link goes down: open connections drop, new ones are refused."""
        for s in self.servers:
            s.close()
        self.servers = []
        for w in list(self.writers):
            w.close()

    async def restore(self):
        for route in self.routes:
            await self._serve(*route)

    async def _serve(self, host, port, target):
        async def handle(r, w):
            try:
                tr, tw = await asyncio.open_connection(*target)
            except OSError:
                w.close()
                return
            self.writers.update((w, tw))

            async def pump(src, dst, counts):
                while data := await src.read(65536):
                    self.bytes += len(data)
                    counts[host] = counts.get(host, 0) + len(data)
                    dst.write(data)
                    await dst.drain()
                dst.close()
            try:
                await asyncio.gather(pump(r, tw, self.dialed), pump(tr, w, self.answered), return_exceptions=True)
            except asyncio.CancelledError:
                pass
            self.writers.difference_update((w, tw))
        self.servers.append(await asyncio.start_server(handle, host, port, reuse_address=True))

    async def quiet(self, seconds=1.0):
        """Wait until no byte has crossed for `seconds`."""
        last, since = self.bytes, time.monotonic()
        while time.monotonic() - since < seconds:
            await asyncio.sleep(0.05)
            if self.bytes != last:
                last, since = self.bytes, time.monotonic()

    def close(self):
        for s in self.servers:
            s.close()


async def login(host, port, domain, user):
    raw = await Raw.open(port, host=host, domain=domain)
    await raw.login_plain(user, PASSWORD)
    await raw.send("<presence/>")
    return raw


async def join(raw, nick, history):
    await raw.send(f"<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>"
                   f"<history maxstanzas='{history}'/></x></presence>")
    await raw.read_until("</subject>")


async def count(raw, needle, n):
    seen, tail = 0, ""
    while seen < n:
        chunk = await asyncio.wait_for(raw.reader.read(65536), 60)
        text = tail + chunk.decode(errors="replace")
        seen += text.count(needle)
        tail = "" if needle in text[-len(needle):] else text[-len(needle):]


async def receive(raw, bodies, seconds):
    """How many of `bodies` reach this client within `seconds`."""
    text, end = "", time.monotonic() + seconds
    while not all(b in text for b in bodies):
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            chunk = await asyncio.wait_for(raw.reader.read(65536), left)
        except asyncio.TimeoutError:
            break
        text += chunk.decode(errors="replace")
    return sum(b in text for b in bodies)


async def outage(relay, kevin, locals_, seconds=60, every=10):
    """Cut the link, chat at HQ, restore it: (bytes after, messages delivered, seconds to converge)."""
    relay.cut()
    missed = []
    for i in range(seconds // every):
        body = f"o{i} {chat_line(10_000 + i)}"
        await kevin.send(f"<message to='{ROOM}' type='groupchat' id='o{i}'><body>{body}</body></message>")
        missed.append(body)
        await asyncio.sleep(every)
    start, began = relay.bytes, time.monotonic()
    await relay.restore()
    got = await asyncio.gather(*(receive(r, missed, 90) for r in locals_))
    took = time.monotonic() - began
    await relay.quiet(2)
    return relay.bytes - start, min(got), len(missed), took


async def scenario(relay, hq, site, k):
    kevin = await login(HQ_IP, hq, "fairfax.example", "kevin")
    scott = await login(HQ_IP, hq, "fairfax.example", "scott")
    await kevin.send(f"<presence to='{ROOM}/Kevin'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await kevin.read_until("110")
    await kevin.send(f"<iq type='set' id='inst' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                     "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    await kevin.read_until("id='inst'")
    await kevin.send(f"<message to='{ROOM}' type='groupchat'><subject>bench</subject></message>")
    await join(scott, "Scott", 0)
    for i in range(20):
        await kevin.send(f"<message to='{ROOM}' type='groupchat' id='h{i}'><body>{chat_line(i)}</body></message>")
    locals_ = [await login(SITE_IP, site, "raleigh.example", f"u{i}") for i in range(k)]
    # Establish server-to-server connections both ways (a no-op for outpost,
    # whose link is up from the start), so joins are measured on a warm link.
    await locals_[0].send("<iq type='get' id='warm1' to='fairfax.example'><ping xmlns='urn:xmpp:ping'/></iq>")
    await locals_[0].read_until("id='warm1'")
    await kevin.send("<iq type='get' id='warm2' to='raleigh.example'><ping xmlns='urn:xmpp:ping'/></iq>")
    await kevin.read_until("id='warm2'")
    await relay.quiet()
    setup = relay.bytes
    joins = []
    for i, raw in enumerate(locals_):
        start = relay.bytes
        await join(raw, f"U{i}", 20)
        await relay.quiet()
        joins.append(relay.bytes - start)
    start = relay.bytes
    for i in range(200):
        await kevin.send(f"<message to='{ROOM}' type='groupchat' id='m{i}'><body>m{i} {chat_line(100 + i)}</body></message>")
    await asyncio.gather(*(count(r, "</body>", 200) for r in locals_))
    await relay.quiet()
    per_message = (relay.bytes - start) / 200
    start = relay.bytes
    for i in range(50):
        await kevin.send(f"<presence to='{ROOM}/Kevin'><show>away</show><status>p{i}</status></presence>")
    await asyncio.gather(*(count(r, "</status>", 50) for r in locals_))
    await relay.quiet()
    per_presence = (relay.bytes - start) / 50
    after_outage = await outage(relay, kevin, locals_)
    for r in (kevin, scott, *locals_):
        r.close()
    return per_message, per_presence, joins[0], joins[-1], setup, after_outage


def write_accounts(data, domain, users):
    d = data / domain.replace(".", "%2e") / "accounts"
    d.mkdir(parents=True)
    for u in users:
        (d / f"{u}.dat").write_text(f'return {{ ["password"] = "{PASSWORD}"; }};\n')


def prosody_config(work, name, domain, ip, muc):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(work / f"{name}.key"), "-out", str(work / f"{name}.crt"), "-days", "30",
                    "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain},DNS:*.{domain}"],
                   check=True, capture_output=True)
    component = f'Component "conference.{domain}" "muc"\n    restrict_room_creation = false\n' if muc else ""
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
modules_disabled = {{ "http"; "bosh"; "websocket" }}
ssl = {{ certificate = "{work}/{name}.crt"; key = "{work}/{name}.key" }}
VirtualHost "{domain}"
{component}""")
    return cfg


async def start_prosody(work, hq_users, site_users, muc=True):
    """Two Prosodies federating over s2s through a counting relay: (relay, processes)."""
    write_accounts(work / "hq-data", "fairfax.example", hq_users)
    write_accounts(work / "site-data", "raleigh.example", site_users)
    procs = []
    for name, domain, ip, hq in (("hq", "fairfax.example", HQ_IP, True), ("site", "raleigh.example", SITE_IP, False)):
        cfg = prosody_config(work, name, domain, ip, muc and hq)
        procs.append(subprocess.Popen(["prosody", "-F", "--config", str(cfg)], stdout=subprocess.DEVNULL))
    relay = Relay()
    await relay.listen(HQ_RELAY, 5269, (HQ_IP, 5269))
    await relay.listen(SITE_RELAY, 5269, (SITE_IP, 5269))
    return relay, procs


async def run_prosody(work, k):
    relay, procs = await start_prosody(work, ["kevin", "scott"], [f"u{i}" for i in range(k)])
    return await measure(relay, procs, lambda: scenario(relay, 5222, 5222, k))


async def measure(relay, procs, run):
    """Run `run()` once HQ's and the site's servers listen; stop them after."""
    try:
        for p, ip in zip(procs, (HQ_IP, SITE_IP)):
            await asyncio.to_thread(wait_for_port, 5222, p, 15.0, ip)
        return await run()
    finally:
        relay.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait()


def outpost_cli(cfg, *args, stdin=None):
    return subprocess.run([str(OUTPOST), *args, "-c", str(cfg)], input=stdin, capture_output=True, text=True, check=True)


async def start_outpost(work, hq_users, site_users):
    """Outpost HQ and a site linked through a counting relay: (relay, processes)."""
    hq_cfg, site_cfg = work / "hq.toml", work / "site.toml"
    hq_cfg.write_text(f'domain = "fairfax.example"\ndata_dir = "hq-data"\nlog_level = "warn"\n[c2s]\nlisten = "{HQ_IP}:5222"\n')
    site_cfg.write_text(f'domain = "raleigh.example"\ndata_dir = "site-data"\nlog_level = "warn"\n[c2s]\nlisten = "{SITE_IP}:5222"\n')
    fp = {c: outpost_cli(c, "check").stdout.split()[-1] for c in (hq_cfg, site_cfg)}
    with open(hq_cfg, "a") as f:
        f.write(f'[link]\nlisten = "{HQ_IP}:5270"\n[[link.peer]]\ndomain = "raleigh.example"\nfingerprint = "{fp[site_cfg]}"\n')
    with open(site_cfg, "a") as f:
        f.write(f'[[upstream]]\nmuc = "conference.fairfax.example"\nconnect = "{HQ_RELAY}:5270"\nfingerprint = "{fp[hq_cfg]}"\n')
    for u in hq_users:
        outpost_cli(hq_cfg, "user", "add", u, stdin=PASSWORD + "\n")
    for u in site_users:
        outpost_cli(site_cfg, "user", "add", u, stdin=PASSWORD + "\n")
    relay = Relay()
    await relay.listen(HQ_RELAY, 5270, (HQ_IP, 5270))
    procs = [subprocess.Popen([str(OUTPOST), "run", "-c", str(c)]) for c in (hq_cfg, site_cfg)]
    return relay, procs


async def run_outpost(work, k):
    relay, procs = await start_outpost(work, ["kevin", "scott"], [f"u{i}" for i in range(k)])
    return await measure(relay, procs, lambda: scenario(relay, 5222, 5222, k))


def enter_namespace(script):
    """Re-execute `script` with this process's arguments in a private network
    and mount namespace (needs root); returns at once if already inside."""
    if os.environ.get("OUTPOST_BENCH_NAMESPACE") != "1":
        env = dict(os.environ, OUTPOST_BENCH_NAMESPACE="1")
        os.execvpe("unshare", ["unshare", "--net", "--mount", "--fork", sys.executable, script, *sys.argv[1:]], env)


def private_network():
    """Inside the namespace: loopback up and a private /etc/hosts naming the
    nodes by their relay addresses. Returns a scratch directory."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tmp = Path(tempfile.mkdtemp())
    hosts = tmp / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{HQ_RELAY} fairfax.example conference.fairfax.example\n"
                     f"{SITE_RELAY} raleigh.example\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    return tmp


def inside_namespace(ks):
    tmp = private_network()
    rows = []
    for k in ks:
        for name, runner in (("outpost", run_outpost), ("prosody", run_prosody)):
            if name == "prosody" and not shutil.which("prosody"):
                continue
            work = tmp / f"{name}-{k}"
            work.mkdir()
            os.chdir(work)
            rows.append((k, name, *asyncio.run(runner(work, k))))
    print("link bytes (TCP payload incl. TLS), K site occupants, 2 at HQ, 100-byte bodies, 20-message history")
    print(f"{'K':>3} {'server':8} {'per message':>12} {'per presence':>13} {'first join':>11} {'K-th join':>10} {'link setup':>11}")
    for k, name, m, p, first, last, setup, _ in rows:
        print(f"{k:>3} {name:8} {m:>12.0f} {p:>13.0f} {first:>11} {last:>10} {setup:>11}")
    print("after a 60 s cut with a message every 10 s at HQ: bytes from the restore until every site user")
    print("has every missed message (or 90 s), the messages that arrived, and when")
    print(f"{'K':>3} {'server':8} {'bytes after':>12} {'delivered':>10} {'converged':>10}")
    for k, name, *_, (after, got, missed, took) in rows:
        print(f"{k:>3} {name:8} {after:>12} {got:>6}/{missed:<3} {took:>8.1f} s")
    by = {(k, n): r[0] for k, n, *r in rows}
    for k in ks:
        if (k, "prosody") in by:
            print(f"K={k}: prosody/outpost bytes per message = {by[(k, 'prosody')] / by[(k, 'outpost')]:.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, nargs="+", default=[1, 5, 20])
    args = ap.parse_args()
    if not OUTPOST.exists():
        sys.exit("build first: cargo build --release")
    enter_namespace(__file__)
    inside_namespace(args.k)


if __name__ == "__main__":
    main()
