#!/usr/bin/env python3
"""What the data modern clients keep on their server costs it: each of N
accounts publishes a typical set to its PEP service (an OMEMO device list
and bundle in both namespaces, an avatar's data and metadata, 20
bookmarks), then logs out. Printed per account: the server's memory
(RSS growth) and the bytes its storage grew by. Outpost and Prosody 0.12
(mod_pep, mod_vcard_legacy, internal storage) in one run.

    cargo build --release && target/test-venv/bin/python benches/pep_footprint.py [--accounts 200] [--bare]

`--bare`: the accounts log in and out and publish nothing (the baseline).

Needs Debian's prosody for the reference row (skipped if absent).
"""

import argparse
import asyncio
import base64
import random
import shutil
import sys
import tempfile
from pathlib import Path

import servers
from xmpp import Raw

TIMEOUT = 60


def options(**fields):
    x = ("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
         "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>")
    for var, value in fields.items():
        x += f"<field var='pubsub#{var}'><value>{value}</value></field>"
    return x + "</x></publish-options>"


def b64(n, rng):
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


def typical_set(user, rng):
    """The publishes of one account, as a client makes them."""
    device = rng.randrange(1, 2**31)
    prekeys = "".join(f"<pk id='{i}'>{b64(33, rng)}</pk>" for i in range(1, 101))
    old_prekeys = "".join(f"<preKeyPublic preKeyId='{i}'>{b64(33, rng)}</preKeyPublic>" for i in range(1, 101))
    avatar = b64(8 * 1024, rng)
    open_max = options(access_model="open", max_items="max")
    open_one = options(access_model="open", max_items="1")
    items = [
        ("urn:xmpp:omemo:2:devices", "current",
         f"<devices xmlns='urn:xmpp:omemo:2'><device id='{device}'/></devices>", open_one),
        ("urn:xmpp:omemo:2:bundles", str(device),
         f"<bundle xmlns='urn:xmpp:omemo:2'><spk id='1'>{b64(33, rng)}</spk><spks>{b64(64, rng)}</spks>"
         f"<ik>{b64(32, rng)}</ik><prekeys>{prekeys}</prekeys></bundle>", open_max),
        ("eu.siacs.conversations.axolotl.devicelist", "current",
         f"<list xmlns='eu.siacs.conversations.axolotl'><device id='{device}'/></list>", open_one),
        (f"eu.siacs.conversations.axolotl.bundles:{device}", "current",
         f"<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>{b64(33, rng)}"
         f"</signedPreKeyPublic><signedPreKeySignature>{b64(64, rng)}</signedPreKeySignature>"
         f"<identityKey>{b64(33, rng)}</identityKey><prekeys>{old_prekeys}</prekeys></bundle>", open_one),
        ("urn:xmpp:avatar:data", "a1", f"<data xmlns='urn:xmpp:avatar:data'>{avatar}</data>", ""),
        ("urn:xmpp:avatar:metadata", "a1",
         "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='a1' bytes='8192' type='image/png' "
         "width='96' height='96'/></metadata>", ""),
    ]
    private = options(access_model="whitelist", max_items="max", persist_items="true",
                      send_last_published_item="never")
    for k in range(20):
        room = f"room{k}-of-{user}@conference.example.org"
        items.append(("urn:xmpp:bookmarks:1", room,
                      f"<conference xmlns='urn:xmpp:bookmarks:1' name='Room {k}' autojoin='true'>"
                      f"<nick>{user}</nick></conference>", private))
    return items


async def publish_all(port, accounts, bare):
    rng = random.Random(7)
    for i in range(accounts):
        user = f"user{i}"
        raw = await Raw.open(port)
        await raw.login_plain(user, servers.PASSWORD)
        batch = ""
        publishes = [] if bare else typical_set(user, rng)
        for n, (node, item_id, payload, opts) in enumerate(publishes):
            batch += (f"<iq type='set' id='p{n}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                      f"<publish node='{node}'><item id='{item_id}'>{payload}</item></publish>{opts}"
                      "</pubsub></iq>")
        await raw.send(batch + "<iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>")
        got = await raw.read_until("id='done'")
        if "type='error'" in got or 'type="error"' in got:
            sys.exit(f"a publish was refused: {got[:500]}")
        raw.close()


def dir_bytes(path: Path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(start, accounts, data_of, bare=False):
    with start() as (pid, port):
        asyncio.run(asyncio.sleep(0.5))
        rss0, disk0 = servers.rss_kb(pid), dir_bytes(data_of())
        asyncio.run(asyncio.wait_for(publish_all(port, accounts, bare), TIMEOUT * accounts))
        rss1, disk1 = servers.rss_kb(pid), dir_bytes(data_of())
    return (rss1 - rss0) / accounts, (disk1 - disk0) / accounts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--bare", action="store_true", help="log in and out only: the baseline")
    args = ap.parse_args()
    payload = sum(len(p) + len(i) for _, i, p, _ in typical_set("user0", random.Random(7)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "o").mkdir()

        class Outpost:
            def __enter__(self):
                self.ctx = servers.outpost(tmp / "o", args.accounts)
                pid, port, _ = self.ctx.__enter__()
                return pid, port

            def __exit__(self, *exc):
                return self.ctx.__exit__(*exc)
        rows.append(("outpost", *measure(Outpost, args.accounts, lambda: tmp / "o" / "data", args.bare)))
        if shutil.which("prosody"):
            (tmp / "p").mkdir()
            rows.append(("prosody 0.12", *measure(
                lambda: servers.prosody(tmp / "p", args.accounts, tmp / "o" / "data"),
                args.accounts, lambda: tmp / "p" / "prosody-data", args.bare)))
        else:
            print("prosody not installed: reference row skipped", file=sys.stderr)
    print(f"{args.accounts} accounts, each: OMEMO device list and bundle (both namespaces), "
          f"avatar data and metadata, 20 bookmarks ({payload} bytes of payload)")
    print(f"{'server':14} {'memory/account':>15} {'storage/account':>16}")
    for name, mem, disk in rows:
        print(f"{name:14} {mem:13.1f}KB {disk / 1024:14.1f}KB")
    if len(rows) == 2:
        (_, om, od), (_, pm, pd) = rows
        print(f"prosody/outpost: memory {pm / max(om, 0.1):.1f}x, storage {pd / max(od, 1):.1f}x")


if __name__ == "__main__":
    main()
