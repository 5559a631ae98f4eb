"""Three real outpost processes on loopback: HQ masters the room, two sites
mirror it over TLS links with pinned keys; slixmpp clients at every node."""

import asyncio
import secrets
import time

import pytest
from slixmpp import JID
from slixmpp.exceptions import PresenceError

from outpost_node import Node, free_port
from xmpp import login

ROOM = JID("chat@conference.fairfax.example")


def run(coro):
    return asyncio.run(coro)


def groupchat(c):
    return [(m["body"], m["stanza_id"]["id"]) for m in c.messages if m["type"] == "groupchat" and m["body"]]


async def everyone(hq, raleigh, durham):
    kevin = await login(hq.port, "kevin@fairfax.example/hq", "k-password")
    await kevin.plugin["xep_0045"].join_muc_wait(ROOM, "Kevin", timeout=15)
    form = kevin.plugin["xep_0004"].make_form(ftype="submit")
    await kevin.plugin["xep_0045"].set_room_config(ROOM, form)
    wayne = await login(raleigh.port, "wayne@raleigh.example/tv", "w-password")
    keith = await login(raleigh.port, "keith@raleigh.example/tv", "k-password")
    dana = await login(durham.port, "dana@durham.example/tv", "d-password")
    for c, nick in ((wayne, "Wayne"), (keith, "Keith"), (dana, "Dana")):
        await c.plugin["xep_0045"].join_muc_wait(ROOM, nick, maxstanzas=0, timeout=15)
    return kevin, wayne, keith, dana


def test_a_conversation_is_identical_at_every_client(federation):
    async def scenario():
        clients = await everyone(*federation)
        for i, speaker in enumerate(clients * 2):
            body = f"line {i} from {speaker.boundjid.bare}"
            speaker.send_message(mto=ROOM, mbody=body, mtype="groupchat")
            for c in clients:
                await c.wait_for(lambda c=c: any(b == body for b, _ in groupchat(c)), f"'{body}'")
        seen = [groupchat(c) for c in clients]
        assert all(s == seen[0] for s in seen), seen
        assert len(seen[0]) == 8 and len({sid for _, sid in seen[0]}) == 8, "no duplicates, one id each"
        for c in clients:
            c.disconnect()
    run(scenario())


def test_moderation_at_hq_reaches_site_users(federation):
    async def scenario():
        kevin, wayne, keith, dana = await everyone(*federation)
        await kevin.plugin["xep_0045"].set_role(ROOM, "Keith", "none", reason="calm down")
        for c in (keith, wayne, dana):
            await c.wait_for(lambda c=c: any(p["type"] == "unavailable" and 307 in p["muc"]["status_codes"]
                                             for p in c.presences if p["from"] == JID(f"{ROOM}/Keith")), "the kick")
        await kevin.plugin["xep_0045"].set_affiliation(ROOM, "outcast", jid=JID("dana@durham.example"))
        await dana.wait_for(lambda: any(301 in p["muc"]["status_codes"] for p in dana.presences
                                        if p["from"].bare == ROOM), "the ban")
        with pytest.raises(PresenceError) as err:
            await dana.plugin["xep_0045"].join_muc_wait(ROOM, "Dana", timeout=15)
        assert err.value.condition == "forbidden"
        for c in (kevin, wayne, keith, dana):
            c.disconnect()
    run(scenario())


def test_link_bytes_are_counted_and_one_copy_crosses_per_site(federation):
    hq, raleigh, durham = federation

    async def scenario():
        kevin, wayne, keith, dana = await everyone(hq, raleigh, durham)
        keith.plugin["xep_0045"].leave_muc(ROOM, "Keith")
        await wayne.wait_for(lambda: any(p["type"] == "unavailable" for p in wayne.presences
                                         if p["from"] == JID(f"{ROOM}/Keith")), "keith leaving")

        async def burst(tag):
            before = hq.links()["raleigh.example"][2]
            for i in range(5):
                # Random text: the link is compressed, and this must not shrink.
                body = f"{tag} {i} " + secrets.token_hex(60)
                kevin.send_message(mto=ROOM, mbody=body, mtype="groupchat")
                await wayne.wait_for(lambda: any(b == body for b, _ in groupchat(wayne)), body)
            return hq.links()["raleigh.example"][2] - before

        one = await burst("one occupant")
        await keith.plugin["xep_0045"].join_muc_wait(ROOM, "Keith", maxstanzas=0, timeout=15)
        two = await burst("two occupants")
        assert one > 5 * 100, one
        assert two < one * 1.2, f"one copy per site: {one} bytes with one occupant, {two} with two"
        for c in (kevin, wayne, keith, dana):
            c.disconnect()
    run(scenario())
    up, bytes_in, bytes_out = raleigh.links()["conference.fairfax.example"]
    assert up and bytes_in > 0 and bytes_out > 0


def test_a_wrong_key_is_refused_at_both_ends(tmp_path):
    hq = Node(tmp_path / "hq", domain="fairfax.example")
    site = Node(tmp_path / "raleigh", domain="raleigh.example")
    impostor = Node(tmp_path / "impostor", domain="elsewhere.example")
    link_port = free_port()
    hq.append_config(f'[link]\nlisten = "127.0.0.1:{link_port}"\n'
                     f'[[link.peer]]\ndomain = "raleigh.example"\nfingerprint = "{site.fingerprint()}"\n')
    # The site pins a key that is not HQ's.
    site.append_config(f'[[upstream]]\nmuc = "conference.fairfax.example"\nconnect = "127.0.0.1:{link_port}"\n'
                       f'fingerprint = "{impostor.fingerprint()}"\n')
    hq.start()
    site.start()
    try:
        def refused():
            return ("not the pinned" in site.log_text()
                    and "link: refused a connection" in hq.log_text())
        end = time.monotonic() + 15
        while not refused() and time.monotonic() < end:
            time.sleep(0.1)
        assert refused(), (site.log_text(), hq.log_text())
        assert not site.links()["conference.fairfax.example"][0]
        assert hq.links()["raleigh.example"][1:] == (0, 0), "nothing crossed"
    finally:
        site.stop()
        hq.stop()
