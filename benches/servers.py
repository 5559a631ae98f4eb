"""Start outpost and Prosody side by side on loopback for benchmarks."""

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from outpost_node import free_port, wait_for_port  # noqa: E402

OUTPOST = ROOT / "target" / "release" / "outpost"
PASSWORD = "benchmark-secret"


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def outpost(workdir: Path, users: int, extra: str = "", c2s_extra: str = ""):
    """Yield (pid, port, data_dir) of an outpost with user0..user{n-1};
    `extra` is appended to its configuration file (whole TOML sections),
    `c2s_extra` to its `[c2s]` section (keys, one per line)."""
    if not OUTPOST.exists():
        sys.exit("build first: cargo build --release")
    port = free_port()
    cfg = workdir / "outpost.toml"
    cfg.write_text(f'domain = "localhost"\ndata_dir = "data"\nlog_level = "warn"\n'
                   f'[c2s]\nlisten = "127.0.0.1:{port}"\nmax_connections = {users + 50}\n'
                   + c2s_extra.replace("[c2s]\n", "") + extra)
    for i in range(users):
        subprocess.run([str(OUTPOST), "user", "add", f"user{i}", "-c", str(cfg)],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    proc = subprocess.Popen([str(OUTPOST), "run", "-c", str(cfg)])
    try:
        wait_for_port(port, proc)
        yield proc.pid, port, workdir / "data"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


@contextlib.contextmanager
def prosody(workdir: Path, users: int, cert_dir: Path, muc_archive: bool = False,
            modules: tuple = ()):
    """Yield (pid, port) of Prosody 0.12 with the same accounts and a MUC
    component. With `muc_archive`, the rooms keep every message with
    mod_muc_mam on SQLite (no expiry); `modules` are enabled besides the
    usual ones. A second call on the same `workdir` starts it again on the
    data the first left."""
    data = workdir / "prosody-data"
    cfg = workdir / "prosody.cfg.lua"
    if cfg.exists():
        port = int(cfg.read_text().split("c2s_ports = { ")[1].split(" ")[0])
        with _running_prosody(cfg, port) as pid:
            yield pid, port
        return
    port = free_port()
    accounts = data / "localhost" / "accounts"
    accounts.mkdir(parents=True)
    for i in range(users):
        (accounts / f"user{i}.dat").write_text(f'return {{ ["password"] = "{PASSWORD}"; }};\n')
    archive = """
default_storage = "internal"
storage = { muc_log = "sql" }
sql = { driver = "SQLite3", database = "archive.sqlite" }
muc_log_by_default = true
muc_log_all_rooms = true
muc_log_expires_after = "never"
""" if muc_archive else ""
    cfg.write_text(f"""
run_as_root = true
daemonize = false
pidfile = "{workdir}/prosody.pid"
data_path = "{data}"
log = {{ warn = "{workdir}/prosody.log" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
component_ports = {{ }}
interfaces = {{ "127.0.0.1" }}
authentication = "internal_plain"
c2s_require_encryption = true
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "version"; "uptime"; "time"; "private"; "vcard_legacy"; "carbons"; "pep"; "blocklist"; "offline"{"".join(f'; "{m}"' for m in modules)} }}
modules_disabled = {{ "s2s"; "http"; "bosh"; "websocket" }}
ssl = {{ certificate = "{cert_dir}/cert.pem"; key = "{cert_dir}/key.pem" }}
{archive}
VirtualHost "localhost"
Component "conference.localhost" "muc"
{'    modules_enabled = { "muc_mam" }' if muc_archive else ''}
""")
    with _running_prosody(cfg, port) as pid:
        yield pid, port


@contextlib.contextmanager
def _running_prosody(cfg: Path, port: int):
    proc = subprocess.Popen(["prosody", "-F", "--config", str(cfg)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, 600.0)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


async def fill_rooms(port, rooms, messages, body):
    """user0 joins each room JID of `rooms`, makes it persistent, then sends
    `messages` room messages round robin (message k's body is `body(k)`),
    200 at a time, each batch acknowledged by a ping: the node stored them
    before it answered."""
    from xmpp import Raw
    raw = await Raw.open(port)
    await raw.login_plain("user0", PASSWORD)
    for i, jid in enumerate(rooms):
        await raw.send(f"<presence to='{jid}/f'><x xmlns='http://jabber.org/protocol/muc'>"
                       "<history maxstanzas='0'/></x></presence>")
        await raw.read_until("110")
        await raw.send(f"<iq type='set' id='c{i}' to='{jid}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                       "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
                       "<value>http://jabber.org/protocol/muc#roomconfig</value></field>"
                       "<field var='muc#roomconfig_persistentroom'>"
                       "<value>1</value></field></x></query></iq>")
        answer = await raw.read_until(f"id='c{i}'")
        assert "type='error'" not in answer, answer
    await send_acked(raw, messages, lambda k: (
        f"<message to='{rooms[k % len(rooms)]}' type='groupchat' id='m{k}'><body>{body(k)}</body></message>"))
    raw.close()


async def send_acked(raw, count, stanza):
    """Send `stanza(k)` for k in range(count), 200 at a time, each batch
    followed by a ping whose answer is awaited: the node handled (and
    stored) the batch before it answered."""
    batch = 200
    for start in range(0, count, batch):
        out = "".join(stanza(k) for k in range(start, min(start + batch, count)))
        await raw.send(out + f"<iq type='get' id='b{start}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.read_until(f"id='b{start}'")
        raw.buffer = ""
