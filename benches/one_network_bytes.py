#!/usr/bin/env python3
"""Link bytes for one-to-one traffic between a site and HQ ("one network"):
outpost's link against Prosody's plain federation (s2s), in one run.

The set-up is federation_bytes.py's, whose helpers this script uses: a private
network and mount namespace (`unshare`, needs root), HQ fairfax.example and
site raleigh.example, and a relay counting every byte between the two nodes
(TCP payload, TLS included). Per server:

* messages: Kevin at HQ and u0 at the site exchange one-to-one chat messages
  (100-byte bodies of random words, as in federation_bytes.py), site->HQ and
  HQ->site, first in a burst (all sent at once), then paced (each sent once
  the previous one has arrived). Per message: the link bytes, those the
  sender's node sent, and their ratio to the body plus its ids (the client's
  `id` and the `stanza-id` the recipient is given, counted once though
  outpost stamps it by the sender and by the recipient).
* presence: N site users subscribe to Kevin (not timed; the bytes per
  subscription are shown, and whether each new subscriber was sent Kevin's
  presence on approval), then Kevin changes his presence P times, each once
  every subscriber has the previous one. N grows through --subscribers.
* a cut: the relay drops the link for --cut seconds while u0 sends Kevin a
  message every --every seconds; after the restore, the bytes and seconds
  until Kevin has every message (or --wait seconds have passed), how many
  arrived, how many twice, whether in order, and the errors u0 was sent.

Bytes are attributed to a step once the link has been quiet for a second.
The relay does not shape the link. A one-hour cut is not measured here (real
time): see the simulator's benches/one_network_resync.rs.

    cargo build --release
    sudo target/test-venv/bin/python benches/one_network_bytes.py
    (small: --messages 20 --presences 5 --subscribers 1 3 --cut 10 --every 5)
"""

import argparse
import asyncio
import os
import re
import shutil
import sys
import time

from federation_bytes import (
    HQ_IP, HQ_RELAY, OUTPOST, PASSWORD, SITE_IP, SITE_RELAY, Raw, chat_line, enter_namespace, measure,
    private_network, start_outpost, start_prosody,
)

KEVIN = "kevin@fairfax.example"
SITE = "raleigh.example"
STANZA_ID = re.compile(r"<stanza-id [^>]*?\bid=['\"]([^'\"]*)['\"]")


def sent_by(relay, node):
    """The link bytes `node` ("site" or "hq") sent so far: the site dials
    HQ's relay address, HQ the site's."""
    there, back = (HQ_RELAY, SITE_RELAY) if node == "site" else (SITE_RELAY, HQ_RELAY)
    return relay.dialed.get(there, 0) + relay.answered.get(back, 0)


async def online(host, domain, user, status=""):
    """Logged in, roster asked for (an interested resource), available."""
    raw = await Raw.open(5222, host=host, domain=domain)
    await raw.login_plain(user, PASSWORD)
    await raw.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
    await raw.read_until("id='roster'")
    await raw.send(f"<presence><status>{status}</status></presence>" if status else "<presence/>")
    return raw


async def read_n(raw, needle, n):
    """What `raw` receives until `needle` has come n times."""
    return "".join([await raw.read_until(needle) for _ in range(n)])


async def subscribe(kevin, user, raw):
    """`user` at the site asks to see Kevin's presence and Kevin approves:
    what the user was sent until the approval."""
    await raw.send(f"<presence to='{KEVIN}' type='subscribe'/>")
    await kevin.read_until("type='subscribe'")
    await kevin.send(f"<presence to='{user}@{SITE}' type='subscribed'/>")
    return await raw.read_until("type='subscribed'")


async def pending(raw, seconds=0.05):
    """What `raw` was sent and has not read yet (its buffer, and what comes
    within `seconds`); the buffer is emptied."""
    text, raw.buffer = raw.buffer, ""
    try:
        while chunk := await asyncio.wait_for(raw.reader.read(65536), seconds):
            text += chunk.decode(errors="replace")
    except asyncio.TimeoutError:
        pass
    return text


async def drained(relay, *raws):
    """Once the link is quiet, forget what the clients were sent so far."""
    await relay.quiet()
    for r in raws:
        await pending(r)


async def messages(relay, sender, receiver, to, tag, seed, n, paced, origin):
    """Per message: link bytes, those the sender's node (`origin`) sent, and
    the yardstick (body + ids)."""
    start, forward, text = relay.bytes, sent_by(relay, origin), ""
    stanzas = [f"<message to='{to}' type='chat' id='{tag}{i}'><body>{chat_line(seed + i)}</body></message>"
               for i in range(n)]
    if paced:
        for s in stanzas:
            await sender.send(s)
            text += await receiver.read_until("</body>")
    else:
        await sender.send("".join(stanzas))
        text = await read_n(receiver, "</body>", n)
    await relay.quiet()
    # A message's stanza-id counts once, though outpost stamps it by the sender and by the recipient.
    ids = sum(len(f"{tag}{i}") for i in range(n)) + sum(len(i) for i in set(STANZA_ID.findall(text)))
    return (relay.bytes - start) / n, (sent_by(relay, origin) - forward) / n, (100 * n + ids) / n


async def presence_changes(relay, kevin, subscribers, n, first):
    """Per change: link bytes, and those HQ sent."""
    start, forward = relay.bytes, sent_by(relay, "hq")
    for i in range(first, first + n):
        await kevin.send(f"<presence><show>away</show><status>p{i}</status></presence>")
        await asyncio.gather(*(r.read_until(f">p{i}</status>") for r in subscribers))
    await relay.quiet()
    return (relay.bytes - start) / n, (sent_by(relay, "hq") - forward) / n


async def cut(relay, u0, kevin, seconds, every, wait):
    """(bytes after the restore, delivered, sent, twice, errors to u0, seconds to converge or None, in order)."""
    relay.cut()
    bodies = []
    for i in range(seconds // every):
        body = chat_line(900_000 + i)
        await u0.send(f"<message to='{KEVIN}' type='chat' id='cut{i}'><body>{body}</body></message>")
        bodies.append(body)
        await asyncio.sleep(every)
    start, began = relay.bytes, time.monotonic()
    await relay.restore()
    text, took, end = kevin.buffer, None, began + wait
    kevin.buffer = ""
    while True:
        if took is None and all(b in text for b in bodies):
            took = time.monotonic() - began
            end = time.monotonic() + 3  # a little longer: anything twice?
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            chunk = await asyncio.wait_for(kevin.reader.read(65536), left)
        except asyncio.TimeoutError:
            break
        text += chunk.decode(errors="replace")
    await relay.quiet(2)
    after = relay.bytes - start
    positions = [text.find(b) for b in bodies if b in text]
    u0_text = u0.buffer
    try:
        while chunk := await asyncio.wait_for(u0.reader.read(65536), 0.5):
            u0_text += chunk.decode(errors="replace")
    except asyncio.TimeoutError:
        pass
    errors = len(re.findall(r"<message[^>]*type=['\"]error['\"]", u0_text))
    delivered = sum(b in text for b in bodies)
    twice = sum(text.count(b) for b in bodies) - delivered
    return after, delivered, len(bodies), twice, errors, took, positions == sorted(positions)


async def scenario(name, relay, args):
    site_users = [f"u{i}" for i in range(max(args.subscribers))]
    kevin = await online(HQ_IP, "fairfax.example", "kevin", status="here")
    locals_ = [await online(SITE_IP, SITE, u) for u in site_users]
    u0 = locals_[0]
    # Warm server-to-server connections both ways (outpost's link is up from the start).
    await u0.send("<iq type='get' id='warm1' to='fairfax.example'><ping xmlns='urn:xmpp:ping'/></iq>")
    await u0.read_until("id='warm1'")
    await kevin.send(f"<iq type='get' id='warm2' to='{SITE}'><ping xmlns='urn:xmpp:ping'/></iq>")
    await kevin.read_until("id='warm2'")
    await drained(relay, kevin, *locals_)
    out = {"messages": {}, "presence": {}}
    for paced in (False, True):
        for direction, (a, b, to) in (("site->HQ", (u0, kevin, KEVIN)), ("HQ->site", (kevin, u0, f"u0@{SITE}"))):
            tag = f"{'p' if paced else 'b'}{'s' if direction[0] == 's' else 'h'}"
            seed = 100_000 * (1 + len(out["messages"]))
            origin = "site" if a is u0 else "hq"
            out["messages"][(direction, paced)] = await messages(relay, a, b, to, tag, seed, args.messages, paced, origin)
            await drained(relay, kevin, *locals_)
    subscribed, first = 0, 0
    for n in args.subscribers:
        start, seen = relay.bytes, {}
        for i in range(subscribed, n):
            seen[i] = await subscribe(kevin, site_users[i], locals_[i])
        await relay.quiet()
        # Approved: each new subscriber should have been sent Kevin's presence (RFC 6121 3.1.5).
        without = 0
        for i, text in seen.items():
            text += await pending(locals_[i], 0.3)
            if "</status>" not in text:
                without += 1
                print(f"{name}: u{i} approved but not sent Kevin's presence; it got: {text!r}", file=sys.stderr)
        await drained(relay, kevin, *locals_)
        setup = (relay.bytes - start) / (n - subscribed) if n > subscribed else 0
        subscribed = n
        per, forward = await presence_changes(relay, kevin, locals_[:n], args.presences, first)
        out["presence"][n] = (per, forward, setup, without)
        first += args.presences
        await drained(relay, kevin, *locals_)
    out["cut"] = await cut(relay, u0, kevin, args.cut, args.every, args.wait)
    for r in (kevin, *locals_):
        r.close()
    return out


async def run(name, work, args):
    users = [f"u{i}" for i in range(max(args.subscribers))]
    start = start_outpost if name == "outpost" else start_prosody
    kwargs = {} if name == "outpost" else {"muc": False}
    relay, procs = await start(work, ["kevin"], users, **kwargs)
    return await measure(relay, procs, lambda: scenario(name, relay, args))


def report(results, args):
    print(f"\none-to-one messages: link bytes per message (TCP payload incl. TLS), {args.messages} messages "
          "of 100-byte bodies;\nbody+ids: the body, the client's id and the stanza-id the recipient was given (none from Prosody without MAM)")
    print("one way: what the sender's node sent (the rest went back: acknowledgements, TLS records)")
    print(f"{'server':8} {'direction':9} {'sent':7} {'per message':>12} {'one way':>8} {'body+ids':>9} {'ratio':>6}")
    for name, r in results.items():
        for (direction, paced), (per, forward, yard) in r["messages"].items():
            print(f"{name:8} {direction:9} {'paced' if paced else 'burst':7} {per:>12.0f} {forward:>8.0f} {yard:>9.0f}"
                  f" {per / yard:>5.2f}x")
    print(f"\npresence: link bytes per presence change of an HQ user with N subscribers at the site "
          f"({args.presences} changes, each once\nevery subscriber had the previous one); set-up: bytes per subscription (request, approval, first presence)")
    print("without presence: of the subscribers added for this N, those not sent Kevin's presence on approval")
    print(f"{'server':8} {'N':>3} {'per change':>11} {'HQ->site':>9} {'set-up':>8} {'without presence':>17}")
    for name, r in results.items():
        prev = 0
        for n, (per, forward, setup, without) in r["presence"].items():
            print(f"{name:8} {n:>3} {per:>11.0f} {forward:>9.0f} {setup:>8.0f} {without:>11}/{n - prev:<5}")
            prev = n
    print(f"\na {args.cut} s cut with a site->HQ message every {args.every} s: from the restore until Kevin has "
          f"every message (or {args.wait} s)")
    print(f"{'server':8} {'bytes after':>12} {'delivered':>10} {'twice':>6} {'errors to sender':>17} {'in order':>9} {'converged':>10}")
    for name, r in results.items():
        after, got, sent, twice, errors, took, ordered = r["cut"]
        when = f"{took:.1f} s" if took is not None else f"never ({args.wait} s)"
        print(f"{name:8} {after:>12} {got:>6}/{sent:<3} {twice:>6} {errors:>17} {'yes' if ordered else 'no':>9} {when:>10}")
    if len(results) == 2:
        o, p = results["outpost"], results["prosody"]
        print("\nprosody / outpost:")
        for key in o["messages"]:
            print(f"  per message, {key[0]}, {'paced' if key[1] else 'burst'}: "
                  f"{p['messages'][key][0] / o['messages'][key][0]:.1f}x")
        for n in o["presence"]:
            print(f"  per presence change, N={n}: {p['presence'][n][0] / o['presence'][n][0]:.1f}x")
    first, last = min(args.subscribers), max(args.subscribers)
    o = results["outpost"]["presence"]
    print(f"outpost per presence change, N={last} / N={first}: {o[last][0] / o[first][0]:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--presences", type=int, default=50)
    ap.add_argument("--subscribers", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--cut", type=int, default=60)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--wait", type=int, default=90)
    ap.add_argument("--no-prosody", action="store_true")
    args = ap.parse_args()
    args.subscribers = sorted(set(args.subscribers))
    if not OUTPOST.exists():
        sys.exit("build first: cargo build --release")
    enter_namespace(__file__)
    tmp = private_network()
    results = {}
    for name in ("outpost", "prosody"):
        if name == "prosody" and (args.no_prosody or not shutil.which("prosody")):
            continue
        work = tmp / name
        work.mkdir()
        os.chdir(work)
        results[name] = asyncio.run(run(name, work, args))
    report(results, args)


if __name__ == "__main__":
    main()
