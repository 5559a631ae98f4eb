#!/usr/bin/env python3
"""What a phone costs: its bytes while idle, and the server's memory for a
session that outlives its connection. Outpost and Prosody 0.12 (mod_smacks,
mod_csi_simple, mod_mam) in one run.

Idle bytes: a phone (slixmpp with stream management) subscribed to 50
contacts connects through a relay that counts bytes both ways. The 50
contacts then change their presence 6 times each (300 changes: an hour at
one change per contact every ten minutes), and the phone reads them all.
With CSI the phone says `<inactive/>` first and `<active/>` at the end, as a
phone does when its screen goes off and on. Printed: bytes across the relay
(TLS records included) from the first change to the last presence read.

Sessions held: N clients enable resumption, go online and drop their
connections; then each is sent M messages while away. Printed: RSS growth
per held session (login, hibernation and its queue).

    cargo build --release && python3 benches/mobile_idle.py [--held 200 --queued 20]

Needs Debian's prosody for the reference rows (skipped if absent).
"""

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import servers
from relay import Relay
from xmpp import Client, Raw

CONTACTS = 50
ROUNDS = 6
TIMEOUT = 60


async def subscribe_phone(port):
    """user0 (the phone's account) follows user1..user50."""
    phone = await Raw.open(port)
    await phone.login_plain("user0", servers.PASSWORD)
    await phone.send("".join(f"<presence to='user{i}@localhost' type='subscribe'/>"
                             for i in range(1, CONTACTS + 1)))
    await phone.send("<iq type='get' id='sub'><ping xmlns='urn:xmpp:ping'/></iq>")
    await phone.read_until("id='sub'")
    contacts = []
    for i in range(1, CONTACTS + 1):
        raw = await Raw.open(port)
        await raw.login_plain(f"user{i}", servers.PASSWORD)
        await raw.send("<presence to='user0@localhost' type='subscribed'/><presence/>"
                       f"<iq type='get' id='ok{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.read_until(f"id='ok{i}'")
        contacts.append(raw)
    phone.close()
    return contacts


async def idle_bytes(port, contacts, csi):
    """Bytes across the phone's relay while the contacts change presence."""
    relay = Relay(port)
    phone = Client("user0@localhost/phone", servers.PASSWORD)
    phone.register_plugin("xep_0198")
    phone.register_plugin("xep_0352")
    enabled = asyncio.get_event_loop().create_future()
    phone.add_event_handler("sm_enabled", lambda _: enabled.done() or enabled.set_result(True))
    phone.connect("127.0.0.1", relay.port)
    await asyncio.wait_for(phone.started, TIMEOUT)
    await asyncio.wait_for(enabled, TIMEOUT)
    await phone.get_roster()
    phone.send_presence()
    await phone.wait_for(lambda: len(phone.presences) >= CONTACTS, "the contacts' presence")
    if csi:
        phone.plugin["xep_0352"].send_inactive()
    await phone.plugin["xep_0199"].ping(jid="localhost")
    before = relay.bytes
    seen = len(phone.presences)
    for r in range(ROUNDS):
        for i, raw in enumerate(contacts):
            show = "<show>away</show>" if r % 2 == 0 else ""
            await raw.send(f"<presence>{show}<status>round {r}</status></presence>"
                           f"<iq type='get' id='r{r}'><ping xmlns='urn:xmpp:ping'/></iq>")
        for raw in contacts:
            await raw.read_until(f"id='r{r}'")
    last = f"round {ROUNDS - 1}"
    if csi:
        phone.plugin["xep_0352"].send_active()
        expected = CONTACTS
    else:
        expected = CONTACTS * ROUNDS

    def latest_seen():
        news = phone.presences[seen:]
        finals = {str(p["from"]) for p in news if p["status"] == last}
        return len(news) >= expected or len(finals) == CONTACTS
    await phone.wait_for(latest_seen, "the last round")
    # The phone's acknowledgements of what it read are part of the cost.
    await phone.plugin["xep_0199"].ping(jid="localhost")
    spent = relay.bytes - before
    got = len(phone.presences) - seen
    phone.disconnect()
    relay.close()
    return spent, got


async def hold_sessions(port, pid, held, queued):
    """RSS growth per session held after its connection dropped, with
    `queued` messages waiting for it."""
    before = servers.rss_kb(pid)
    sessions = []
    for i in range(held):
        raw = await Raw.open(port)
        await raw.login_plain(f"user{i + 1}", servers.PASSWORD)
        await raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/><presence/>")
        await raw.read_until("<enabled")
        sessions.append(raw)
    for raw in sessions:
        raw.writer.transport.abort()  # The phone left the Wi-Fi: no goodbye.
    sender = await Raw.open(port)
    await sender.login_plain("user0", servers.PASSWORD)
    body = "x" * 100
    for k in range(queued):
        await sender.send("".join(
            f"<message to='user{i + 1}@localhost' type='chat'><body>{k} {body}</body></message>"
            for i in range(held)) + f"<iq type='get' id='q{k}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await sender.read_until(f"id='q{k}'")
    after = servers.rss_kb(pid)
    sender.close()
    return (after - before) / held


def measure(start, held, queued):
    with start() as (pid, port):
        async def run():
            contacts = await subscribe_phone(port)
            plain = await idle_bytes(port, contacts, csi=False)
            with_csi = await idle_bytes(port, contacts, csi=True)
            for c in contacts:
                c.close()
            return plain, with_csi
        plain, with_csi = asyncio.run(run())
        per_session = asyncio.run(hold_sessions(port, pid, held, queued))
    return plain, with_csi, per_session


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--held", type=int, default=200)
    ap.add_argument("--queued", type=int, default=20)
    args = ap.parse_args()
    users = max(CONTACTS, args.held) + 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "o").mkdir()

        def outpost():
            ctx = servers.outpost(tmp / "o", users)
            return _pid_port(ctx)
        rows.append(("outpost", *measure(outpost, args.held, args.queued)))
        if shutil.which("prosody"):
            (tmp / "p").mkdir()

            def prosody():
                return servers.prosody(tmp / "p", users, tmp / "o" / "data",
                                       modules=("smacks", "csi_simple", "mam"))
            rows.append(("prosody 0.12", *measure(prosody, args.held, args.queued)))
        else:
            print("prosody not installed: reference rows skipped", file=sys.stderr)
    print(f"idle phone, {CONTACTS} contacts, {CONTACTS * ROUNDS} presence changes "
          "(an hour at one per contact every 10 minutes); bytes both ways through the relay")
    print(f"{'server':14} {'no CSI':>10} {'with CSI':>10} {'CSI saves':>10} "
          f"{'held session':>13}")
    for name, (plain, n_plain), (csi, n_csi), per in rows:
        print(f"{name:14} {plain:9d}B {csi:9d}B {1 - csi / plain:9.0%} {per:11.1f}KB"
              f"   (presences read: {n_plain}, {n_csi})")
    if len(rows) == 2:
        (_, (o_plain, _), (o_csi, _), o_per), (_, (p_plain, _), (p_csi, _), p_per) = rows
        print(f"prosody/outpost: no CSI {p_plain / o_plain:.1f}x, with CSI {p_csi / o_csi:.1f}x, "
              f"memory per held session {p_per / max(o_per, 0.1):.1f}x")


class _pid_port:
    """servers.outpost yields (pid, port, data); this yields (pid, port)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def __enter__(self):
        pid, port, _ = self.ctx.__enter__()
        return pid, port

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


if __name__ == "__main__":
    main()
