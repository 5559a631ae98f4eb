"""One network with real processes: users at HQ (fairfax.example) and at
two sites (raleigh.example, durham.example) chat one-to-one, subscribe to
each other's presence and find their messages in their archives across the
links; site-to-site traffic goes through HQ. Messages queued during a cut
or while a node is down arrive once, in order, with <delay/>; a link speaks
only for the domains it is entitled to."""

import asyncio
import ssl
from datetime import datetime, timezone

import pytest
from slixmpp import JID

from federation import HQ_MUC
from outpost_node import Node
from xmpp import TIMEOUT, login

NS_DELAY = "{urn:xmpp:delay}delay"
NS_SID = "{urn:xmpp:sid:0}stanza-id"

KEVIN = ("kevin@fairfax.example", "k-password")
WAYNE = ("wayne@raleigh.example", "w-password")
DANA = ("dana@durham.example", "d-password")


async def kevin_at(net, resource="hq"):
    return await login(net.hq.port, f"{KEVIN[0]}/{resource}", KEVIN[1])


async def wayne_at(net, resource="tv"):
    return await login(net.raleigh.port, f"{WAYNE[0]}/{resource}", WAYNE[1])


async def dana_at(net, resource="tv"):
    return await login(net.durham.port, f"{DANA[0]}/{resource}", DANA[1])


def bare(c):
    return JID(c.boundjid.bare)


def copies(c, body):
    """The messages `c` received with this body."""
    return [m for m in c.messages if m["body"] == body]


def errors(c):
    return [m for m in c.messages if m["type"] == "error"]


def stanza_id_by(msg, by):
    """The stanza-id that `by` stamped on a received message."""
    ids = [e.get("id") for e in msg.xml.findall(NS_SID) if e.get("by") == str(by)]
    assert len(ids) == 1, f"one stanza-id by {by}: {msg}"
    return ids[0]


async def archived_ids(c, body):
    """The ids under which `c`'s own archive (XEP-0313) keeps `body`."""
    ids = []
    async for msg in c.plugin["xep_0313"].iterate(rsm={"max": 50}):
        if msg["mam_result"]["forwarded"]["stanza"]["body"] == body:
            ids.append(msg["mam_result"]["id"])
    return ids


async def in_thread(fn, *args):
    """A blocking helper (polling `outpost links`) without stalling the clients."""
    await asyncio.to_thread(fn, *args)


async def settled(c):
    """Once the server answers a ping, it has handled what `c` sent before."""
    await c.plugin["xep_0199"].ping(jid=c.boundjid.domain, timeout=TIMEOUT)


def disconnect(*clients):
    for c in clients:
        c.disconnect()


# ---- 1. one-to-one chat ---------------------------------------------------

def test_chat_in_every_direction_arrives_once_with_one_stanza_id_in_both_archives(network):
    async def scenario():
        kevin, wayne, dana = await kevin_at(network), await wayne_at(network), await dana_at(network)
        pairs = [(wayne, kevin), (kevin, wayne), (wayne, dana), (dana, wayne), (kevin, dana), (dana, kevin)]
        for sender, recipient in pairs:
            tag = f"{sender.boundjid.user} to {recipient.boundjid.user}"
            sender.send_message(mto=bare(recipient), mbody=f"{tag}: first", mtype="chat")
            sender.send_message(mto=bare(recipient), mbody=f"{tag}: second", mtype="chat")
            await recipient.wait_for(lambda r=recipient, t=tag: copies(r, f"{t}: second"), f"'{tag}: second'")
        for c in (kevin, wayne, dana):
            await settled(c)  # Anything duplicated would be here by now.
        for sender, recipient in pairs:
            tag = f"{sender.boundjid.user} to {recipient.boundjid.user}"
            got = [m for m in recipient.messages if m["body"].startswith(f"{tag}:")]
            assert [m["body"] for m in got] == [f"{tag}: first", f"{tag}: second"], "once each, in order"
            for m in got:
                assert m["from"] == sender.boundjid, f"from the sender's full JID: {m}"
                assert m["type"] == "chat"
                assert m.xml.find(NS_DELAY) is None, f"sent while linked, not delayed: {m}"
                delivered_id = stanza_id_by(m, bare(recipient))
                theirs = await archived_ids(recipient, m["body"])
                mine = await archived_ids(sender, m["body"])
                assert theirs == [delivered_id], f"{recipient.boundjid.bare}'s archive: {theirs}, delivered {delivered_id}"
                assert mine == theirs, f"one stanza-id in both archives: sender {mine}, recipient {theirs}"
        for c in (kevin, wayne, dana):
            assert not errors(c), [str(m) for m in errors(c)]
        disconnect(kevin, wayne, dana)
    asyncio.run(scenario())


# ---- 2. subscriptions -----------------------------------------------------

def manual_subscriptions(*clients):
    """Nothing approved behind the test's back (slixmpp approves and asks
    back by default)."""
    for c in clients:
        c.auto_authorize = None
        c.auto_subscribe = False


def subscription_presences(c, kind, of):
    return [p for p in c.presences if p["type"] == kind and p["from"].bare == str(of)]


def available_from(c, other):
    """The available presences `c` received from `other`'s session (with
    any show: slixmpp gives an available presence's show as its type)."""
    return [p for p in c.presences if p["from"] == other.boundjid and p.xml.get("type") is None]


async def ask_and_approve(asker, approver):
    asker.send_presence(pto=bare(approver), ptype="subscribe")
    await approver.wait_for(lambda: subscription_presences(approver, "subscribe", bare(asker)),
                            f"{asker.boundjid.bare}'s request")
    approver.send_presence(pto=bare(asker), ptype="subscribed")
    await asker.wait_for(lambda: subscription_presences(asker, "subscribed", bare(approver)),
                         f"{approver.boundjid.bare}'s approval")


async def befriend(a, b):
    """`a` asks `b`, `b` approves and asks back, `a` approves; then each
    sees the other online."""
    await ask_and_approve(a, b)
    await ask_and_approve(b, a)
    await a.wait_for(lambda: available_from(a, b), f"{b.boundjid}'s presence")
    await b.wait_for(lambda: available_from(b, a), f"{a.boundjid}'s presence")


async def subscription(c, other):
    await c.get_roster()
    return c.client_roster[bare(other)]["subscription"]


def test_subscriptions_in_every_direction(network):
    async def scenario():
        kevin, wayne, dana = await kevin_at(network), await wayne_at(network), await dana_at(network)
        manual_subscriptions(kevin, wayne, dana)
        # A site user asks HQ's, HQ's asks a site's, a site's asks the other site's.
        for a, b in ((wayne, kevin), (kevin, dana), (dana, wayne)):
            await befriend(a, b)
            assert await subscription(a, b) == "both"
            assert await subscription(b, a) == "both"
        # A status change crosses too, and reaches every contact.
        kevin.send_presence(pshow="away", pstatus="at lunch")
        for c in (wayne, dana):
            await c.wait_for(lambda c=c: any(p["show"] == "away" and p["status"] == "at lunch"
                                             for p in available_from(c, kevin)), "kevin going away")
        for c in (kevin, wayne, dana):
            assert not errors(c), [str(m) for m in errors(c)]
        disconnect(kevin, wayne, dana)
    asyncio.run(scenario())


# ---- 3. a link cut during chat --------------------------------------------

def test_messages_sent_during_a_cut_arrive_once_in_order_and_delayed(relayed_network):
    net = relayed_network

    async def scenario():
        kevin, wayne = await kevin_at(net), await wayne_at(net)
        wayne.send_message(mto=bare(kevin), mbody="before the cut", mtype="chat")
        await kevin.wait_for(lambda: copies(kevin, "before the cut"), "a message before the cut")
        net.relay.cut()
        await in_thread(net.raleigh.wait_link_down, HQ_MUC)
        bodies = [f"during the cut {i}" for i in range(4)]
        for b in bodies:
            wayne.send_message(mto=bare(kevin), mbody=b, mtype="chat")
        await settled(wayne)
        assert not errors(wayne), f"no error for the sender: {[str(m) for m in errors(wayne)]}"
        assert not any(copies(kevin, b) for b in bodies), "nothing crossed a cut link"
        restored_at = datetime.now(timezone.utc)
        net.relay.restore()
        await in_thread(net.raleigh.wait_link_up, HQ_MUC)
        await kevin.wait_for(lambda: all(copies(kevin, b) for b in bodies), "the queued messages")
        wayne.send_message(mto=bare(kevin), mbody="after the cut", mtype="chat")
        await kevin.wait_for(lambda: copies(kevin, "after the cut"), "a message after the cut")
        got = [m for m in kevin.messages if m["body"]]
        assert [m["body"] for m in got] == ["before the cut", *bodies, "after the cut"], "once each, in order"
        for m in got[1:-1]:
            assert m["from"] == wayne.boundjid
            delay = m.xml.find(NS_DELAY)
            assert delay is not None, f"a queued message says it was delayed: {m}"
            assert m["delay"]["stamp"] <= restored_at, f"stamped when sent, not when delivered: {m}"
        assert not errors(wayne), [str(m) for m in errors(wayne)]
        disconnect(kevin, wayne)
    asyncio.run(scenario())


# ---- 4. kill -9 of each node in turn ----------------------------------------

def test_kill9_of_each_node_in_turn(network):
    hq, raleigh = network.hq, network.raleigh

    async def scenario():
        kevin, wayne = await kevin_at(network), await wayne_at(network)
        manual_subscriptions(kevin, wayne)
        await befriend(wayne, kevin)

        # HQ dies; the site queues what its user sends meanwhile.
        hq.kill9()
        await in_thread(raleigh.wait_link_down, HQ_MUC)
        wayne.send_message(mto=bare(kevin), mbody="while HQ is down", mtype="chat")
        await settled(wayne)
        assert not errors(wayne), [str(m) for m in errors(wayne)]
        hq.start()
        kevin = await kevin_at(network, "hq2")
        manual_subscriptions(kevin)
        await in_thread(raleigh.wait_link_up, HQ_MUC)
        await kevin.wait_for(lambda: copies(kevin, "while HQ is down"), "the message queued at the site")
        wayne.send_message(mto=bare(kevin), mbody="HQ is back", mtype="chat")
        await kevin.wait_for(lambda: copies(kevin, "HQ is back"), "a message after the restart")
        assert [m["body"] for m in kevin.messages if m["body"]] == ["while HQ is down", "HQ is back"]
        queued = copies(kevin, "while HQ is down")[0]
        assert queued["from"] == wayne.boundjid and queued.xml.find(NS_DELAY) is not None, queued
        # Each sees the other again.
        await kevin.wait_for(lambda: available_from(kevin, wayne), "wayne's presence after HQ's restart")
        await wayne.wait_for(lambda: available_from(wayne, kevin), "kevin's new session")

        # A site dies; HQ queues what its user sends meanwhile, and keeps it
        # through a crash of its own.
        raleigh.kill9()
        await in_thread(hq.wait_link_down, "raleigh.example")
        kevin.send_message(mto=bare(wayne), mbody="while raleigh is down", mtype="chat")
        await settled(kevin)
        assert not errors(kevin), [str(m) for m in errors(kevin)]
        kevin.disconnect()
        hq.kill9()
        hq.start()
        raleigh.start()
        await in_thread(raleigh.wait_link_up, HQ_MUC)
        kevin = await kevin_at(network, "hq3")
        wayne = await wayne_at(network, "tv2")
        await wayne.wait_for(lambda: copies(wayne, "while raleigh is down"), "the message queued at HQ")
        kevin.send_message(mto=bare(wayne), mbody="raleigh is back", mtype="chat")
        await wayne.wait_for(lambda: copies(wayne, "raleigh is back"), "a message after the restart")
        assert [m["body"] for m in wayne.messages if m["body"]] == ["while raleigh is down", "raleigh is back"]
        queued = copies(wayne, "while raleigh is down")[0]
        assert queued["from"].bare == KEVIN[0] and queued.xml.find(NS_DELAY) is not None, queued
        await kevin.wait_for(lambda: available_from(kevin, wayne), "wayne's presence after raleigh's restart")
        await wayne.wait_for(lambda: available_from(wayne, kevin), "kevin's presence after raleigh's restart")
        disconnect(kevin, wayne)
    asyncio.run(scenario())


@pytest.mark.parametrize("crashed", ["hq", "raleigh"])
def test_a_crashed_nodes_dead_sessions_do_not_stay_online_at_its_contacts(network, crashed):
    """After a kill -9 and a restart, the sessions that died with a node are
    not shown online any more at the other node: the contacts that saw them
    are told they went (unavailable), and a new session there is not given
    their presence (docs/xmpp.md: probes are answered from live sessions)."""
    victim, other = (network.hq, network.raleigh) if crashed == "hq" else (network.raleigh, network.hq)
    peer_of_victim = HQ_MUC if crashed == "hq" else "raleigh.example"
    at_victim, at_other = (kevin_at, wayne_at) if crashed == "hq" else (wayne_at, kevin_at)

    async def scenario():
        dead, watcher = await at_victim(network, "before"), await at_other(network, "watching")
        manual_subscriptions(dead, watcher)
        await befriend(watcher, dead)
        victim.kill9()
        await in_thread(other.wait_link_down, peer_of_victim)
        victim.start()
        reborn = await at_victim(network, "after")
        await in_thread(other.wait_link_up, peer_of_victim)
        await watcher.wait_for(lambda: available_from(watcher, reborn), "the contact's new session")
        newcomer = await at_other(network, "newcomer")
        await newcomer.wait_for(lambda: available_from(newcomer, reborn), "the contact's live session")
        await settled(newcomer)
        seen = [p for p in newcomer.presences if p["from"].bare == reborn.boundjid.bare and p.xml.get("type") is None]
        shown = sorted({str(p["from"]) for p in seen})
        ghosts = [str(p) for p in seen if p["from"] == dead.boundjid]
        told_gone = True
        try:
            await watcher.wait_for(lambda: any(p["from"] == dead.boundjid and p["type"] == "unavailable"
                                               for p in watcher.presences), f"{dead.boundjid} going")
        except AssertionError:
            told_gone = False
        assert shown == [str(reborn.boundjid)] and told_gone, (
            f"after {crashed}'s kill -9 and restart: a new session at the other node was shown {shown} "
            f"(only {reborn.boundjid} is alive); the contact that saw {dead.boundjid} was "
            f"{'' if told_gone else 'never '}told it went; the new session got {ghosts}")
        disconnect(reborn, watcher, newcomer)
    asyncio.run(scenario())


# ---- 5. a forged domain over a link ----------------------------------------

DMUC_HEADER = ("<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' "
               "from='{domain}' version='1.0'>")


def link_tls(node):
    """A TLS client context holding `node`'s link key (as its own link would)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    data = node.dir / "data"
    ctx.load_cert_chain(data / "link-cert.pem", data / "link-key.pem")
    return ctx


def relayed_chat(n, frm, to, body):
    return (f"<e n='{n}'><relay from='{frm}' to='{to}'><message xmlns='jabber:client' type='chat' id='f{n}'>"
            f"<body>{body}</body></message></relay></e>")


async def drain(reader):
    """Read (and drop) what HQ says on the link: its hello, probes, resends."""
    try:
        while await reader.read(65536):
            pass
    except (OSError, ssl.SSLError):
        pass


def test_a_link_speaks_only_for_its_own_domain(network, tmp_path):
    """A site's key opens a link only as that site (a forged-domain peer
    without a configured key cannot even finish TLS), and a link may speak
    only for users of its own domain: HQ refuses a stanza it carries from
    another site's user or from HQ's own domain."""
    hq, raleigh = network.hq, network.raleigh

    async def scenario():
        kevin = await kevin_at(network)
        # An unknown key: refused during the TLS handshake.
        stranger = Node(tmp_path / "stranger", domain="raleigh.example")
        stranger_key = stranger.fingerprint()  # Generates its link key.
        try:
            r, w = await asyncio.open_connection("127.0.0.1", network.link_port, ssl=link_tls(stranger),
                                                 server_hostname="fairfax.example")
            w.write(DMUC_HEADER.format(domain="raleigh.example").encode() + b"<hello received='0'/>")
            await w.drain()
            await asyncio.wait_for(r.read(), TIMEOUT)
            w.close()
        except (OSError, ssl.SSLError):
            pass
        # Raleigh's own key, raleigh itself stopped so that its redials do
        # not replace this link: a compromised site, speaking raw frames.
        received = raleigh.last_in(HQ_MUC)
        raleigh.stop()
        await in_thread(hq.wait_link_down, "raleigh.example")
        last = hq.last_in("raleigh.example")
        r, w = await asyncio.open_connection("127.0.0.1", network.link_port, ssl=link_tls(raleigh),
                                             server_hostname="fairfax.example")
        reading = asyncio.ensure_future(drain(r))
        frames = [
            DMUC_HEADER.format(domain="raleigh.example"),
            f"<hello received='{received}'/>",
            relayed_chat(last + 1, "dana@durham.example/x", KEVIN[0], "forged from durham"),
            relayed_chat(last + 2, "kevin@fairfax.example/x", KEVIN[0], "forged from fairfax"),
            # Raleigh speaking for its own user: delivered (and after the others).
            relayed_chat(last + 3, "wayne@raleigh.example/raw", KEVIN[0], "genuine from raleigh"),
        ]
        w.write("".join(frames).encode())
        await w.drain()
        await kevin.wait_for(lambda: copies(kevin, "genuine from raleigh"), "the genuine message")
        assert copies(kevin, "genuine from raleigh")[0]["from"] == JID("wayne@raleigh.example/raw")
        await settled(kevin)
        assert not copies(kevin, "forged from durham"), "a site spoke for another site's user"
        assert not copies(kevin, "forged from fairfax"), "a site spoke for HQ's user"
        assert [m["body"] for m in kevin.messages if m["body"]] == ["genuine from raleigh"]
        w.close()
        reading.cancel()
        kevin.disconnect()
        return stranger_key

    stranger_key = asyncio.run(scenario())
    log = hq.log_text()
    assert any("link: refused a connection" in line and f"key {stranger_key} is not configured" in line
               for line in log.splitlines()), "the unknown key was refused"
    for forged in ("dana@durham.example/x", "kevin@fairfax.example/x"):
        assert any("refused" in line and forged in line for line in log.splitlines()), \
            f"HQ's log names the refused stanza from {forged}"
