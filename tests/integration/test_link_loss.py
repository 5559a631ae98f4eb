"""Link loss with real processes: HQ and a site linked through a relay the
test cuts and restores, and nodes killed with -9. Every conversation must
end up identical at every client, in the same order in every archive."""

import asyncio

import pytest
from slixmpp import JID

from outpost_node import Node
from relay import Relay
from xmpp import login

ROOM = JID("chat@conference.fairfax.example")


@pytest.fixture
def linked(tmp_path):
    hq = Node(tmp_path / "hq", domain="fairfax.example")
    site = Node(tmp_path / "raleigh", domain="raleigh.example")
    hq_link_port = __import__("outpost_node").free_port()
    relay = Relay(hq_link_port)
    hq.append_config(f'[link]\nlisten = "127.0.0.1:{hq_link_port}"\n'
                     f'[[link.peer]]\ndomain = "raleigh.example"\nfingerprint = "{site.fingerprint()}"\n')
    site.append_config(f'[[upstream]]\nmuc = "conference.fairfax.example"\nconnect = "127.0.0.1:{relay.port}"\n'
                       f'fingerprint = "{hq.fingerprint()}"\n')
    hq.start()
    site.start()
    hq.add_user("kevin", "k-password")
    site.add_user("wayne", "w-password")
    site.add_user("keith", "k-password")
    site.wait_link_up("conference.fairfax.example")
    yield hq, site, relay
    relay.close()
    site.stop()
    hq.stop()


def bodies(c):
    return {(m["body"], m["stanza_id"]["id"]) for m in c.messages if m["type"] == "groupchat" and m["body"]}


async def archive(c, expect=None):
    """The room archive as `c` sees it; with `expect`, wait until it holds
    that many messages (a site's copy fills as HQ's events arrive)."""
    for _ in range(100):
        out = []
        async for msg in c.plugin["xep_0313"].iterate(jid=ROOM, rsm={"max": 50}):
            m = msg["mam_result"]["forwarded"]["stanza"]
            out.append((m["body"], m["stanza_id"]["id"]))
        if expect is None or len(out) >= expect:
            return out
        await asyncio.sleep(0.1)
    raise AssertionError(f"archive at {c.boundjid} holds {len(out)} of {expect}")


async def setup_room(hq, site, persistent=False):
    kevin = await login(hq.port, "kevin@fairfax.example/hq", "k-password")
    await kevin.plugin["xep_0045"].join_muc_wait(ROOM, "Kevin", timeout=15)
    form = kevin.plugin["xep_0004"].make_form(ftype="submit")
    if persistent:
        form.add_field(var="muc#roomconfig_persistentroom", value="1")
    await kevin.plugin["xep_0045"].set_room_config(ROOM, form)
    wayne = await login(site.port, "wayne@raleigh.example/tv", "w-password")
    keith = await login(site.port, "keith@raleigh.example/tv", "k-password")
    for c, nick in ((wayne, "Wayne"), (keith, "Keith")):
        await c.plugin["xep_0045"].join_muc_wait(ROOM, nick, maxstanzas=0, timeout=15)
    return kevin, wayne, keith


def test_a_cut_during_chat_at_both_ends(linked):
    hq, site, relay = linked

    async def scenario():
        kevin, wayne, keith = await setup_room(hq, site)
        relay.cut()
        for i in range(3):
            kevin.send_message(mto=ROOM, mbody=f"hq during cut {i}", mtype="groupchat")
            wayne.send_message(mto=ROOM, mbody=f"site during cut {i}", mtype="groupchat")
        # The site goes on among itself at once.
        await keith.wait_for(lambda: sum(b.startswith("site during cut") for b, _ in bodies(keith)) == 3, "local chat")
        relay.restore()
        everyone = (kevin, wayne, keith)
        for c in everyone:
            await c.wait_for(lambda c=c: len(bodies(c)) == 6, "all six messages")
        assert bodies(kevin) == bodies(wayne) == bodies(keith)
        assert len({sid for _, sid in bodies(kevin)}) == 6
        # The master's order is the order of every archive.
        assert await archive(kevin) == await archive(wayne, expect=6)
        for c in everyone:
            c.disconnect()
    asyncio.run(scenario())


def test_kill9_of_hq_during_chat(linked):
    hq, site, relay = linked

    async def before():
        kevin, wayne, keith = await setup_room(hq, site, persistent=True)
        kevin.send_message(mto=ROOM, mbody="before the crash", mtype="groupchat")
        await wayne.wait_for(lambda: any(b == "before the crash" for b, _ in bodies(wayne)), "the first message")
        return wayne, keith

    async def during_and_after(wayne, keith):
        hq.kill9()
        wayne.send_message(mto=ROOM, mbody="while HQ is down", mtype="groupchat")
        await keith.wait_for(lambda: any(b == "while HQ is down" for b, _ in bodies(keith)), "local delivery")
        hq.start()
        site.wait_link_up("conference.fairfax.example")
        kevin = await login(hq.port, "kevin@fairfax.example/hq2", "k-password")
        await kevin.plugin["xep_0045"].join_muc_wait(ROOM, "Kevin", maxstanzas=0, timeout=15)
        keith.send_message(mto=ROOM, mbody="after the restart", mtype="groupchat")
        await kevin.wait_for(lambda: any(b == "after the restart" for b, _ in bodies(kevin)), "a site message")
        hq_archive = [b for b, _ in await archive(kevin)]
        assert hq_archive == ["before the crash", "while HQ is down", "after the restart"], hq_archive
        assert [b for b, _ in await archive(wayne, expect=3)] == hq_archive
        for c in (kevin, wayne, keith):
            c.disconnect()

    async def scenario():
        wayne, keith = await before()
        await during_and_after(wayne, keith)
    asyncio.run(scenario())


def test_kill9_of_the_site_during_a_split(linked):
    hq, site, relay = linked

    async def before():
        kevin, wayne, keith = await setup_room(hq, site, persistent=True)
        relay.cut()
        wayne.send_message(mto=ROOM, mbody="queued when the site died", mtype="groupchat")
        await keith.wait_for(lambda: any(b == "queued when the site died" for b, _ in bodies(keith)), "local delivery")
        return kevin

    async def after(kevin):
        # Site users come back on the restarted site and rejoin.
        wayne = await login(site.port, "wayne@raleigh.example/tv2", "w-password")
        await wayne.plugin["xep_0045"].join_muc_wait(ROOM, "Wayne", maxstanzas=0, timeout=15)
        await kevin.wait_for(lambda: any(b == "queued when the site died" for b, _ in bodies(kevin)), "the queued message")
        wayne.send_message(mto=ROOM, mbody="back after the crash", mtype="groupchat")
        await kevin.wait_for(lambda: any(b == "back after the crash" for b, _ in bodies(kevin)), "a new message")
        hq_archive = [b for b, _ in await archive(kevin, expect=2)]
        assert hq_archive == ["queued when the site died", "back after the crash"], hq_archive
        # No ghost of the dead sessions: HQ lists Kevin and the new Wayne only.
        occupants = kevin.plugin["xep_0045"].get_roster(ROOM)
        assert sorted(occupants) == ["Kevin", "Wayne"], occupants
        for c in (kevin, wayne):
            c.disconnect()

    async def scenario():
        kevin = await before()
        site.kill9()
        site.start()
        relay.restore()
        site.wait_link_up("conference.fairfax.example")
        await after(kevin)
    asyncio.run(scenario())
