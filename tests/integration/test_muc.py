"""Rooms with a real client: slixmpp's MUC (XEP-0045) and MAM (XEP-0313) plugins."""

import asyncio

import pytest
from slixmpp import JID
from slixmpp.exceptions import PresenceError

from xmpp import login

ROOM = JID("ops@conference.localhost")


def run(coro):
    return asyncio.run(coro)


async def create_room(owner, nick="Alice", **fields):
    """Join (creating the room), then submit the configuration form."""
    presence, _, _, _ = await owner.plugin["xep_0045"].join_muc_wait(ROOM, nick, timeout=15)
    assert "201" in {str(c) for c in presence["muc"]["status_codes"]}
    form = owner.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#roomconfig")
    for var, value in fields.items():
        form.add_field(var=f"muc#roomconfig_{var}", value=value)
    await owner.plugin["xep_0045"].set_room_config(ROOM, form)


def groupchat(client):
    return [m for m in client.messages if m["type"] == "groupchat" and m["body"]]


async def say(client, *bodies):
    for b in bodies:
        client.send_message(mto=ROOM, mbody=b, mtype="groupchat")
    await client.wait_for(lambda: all(any(m["body"] == b for m in groupchat(client)) for b in bodies), "reflections")


def test_join_sequence_history_and_subject(node):
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        await create_room(alice)
        alice.plugin["xep_0045"].set_subject(ROOM, "Weekly ops")
        await say(alice, "one", "two", "three", "four", "five")
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        me, subject, occupants, history = await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=3, timeout=15)
        assert 110 in me["muc"]["status_codes"]
        assert [m["body"] for m in history] == ["three", "four", "five"]
        assert all(m["delay"]["from"] == ROOM for m in history)
        assert subject["subject"] == "Weekly ops"
        assert [str(p["from"].resource) for p in occupants] == ["Alice", "Bob"]  # others first, self last
        # Conversations-style join: no classic history at all.
        carol = await login(node.port, "carol@localhost/c", "carol-the-singer")
        _, _, _, history = await carol.plugin["xep_0045"].join_muc_wait(ROOM, "Carol", maxstanzas=0, timeout=15)
        assert history == []
        for c in (alice, bob, carol):
            c.disconnect()
    run(scenario())


def test_messages_carry_one_stanza_id_and_archive_pages_back(node):
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        await create_room(alice)
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=15)
        bodies = [f"line {i}" for i in range(12)]
        await say(alice, *bodies)
        await bob.wait_for(lambda: len(groupchat(bob)) >= 12, "all twelve at bob")
        live_alice = {m["body"]: m["stanza_id"]["id"] for m in groupchat(alice)}
        live_bob = {m["body"]: m["stanza_id"]["id"] for m in groupchat(bob)}
        assert live_alice == live_bob and len(set(live_bob.values())) == 12
        # Page through the archive five at a time.
        archived = []
        async for msg in bob.plugin["xep_0313"].iterate(jid=ROOM, rsm={"max": 5}):
            archived.append(msg["mam_result"]["forwarded"]["stanza"])
        assert [m["body"] for m in archived] == bodies
        assert [m["stanza_id"]["id"] for m in archived] == [live_bob[b] for b in bodies]
        for c in (alice, bob):
            c.disconnect()
    run(scenario())


def test_moderation_kick_and_ban(node):
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        await create_room(alice)
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        carol = await login(node.port, "carol@localhost/c", "carol-the-singer")
        await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", timeout=15)
        await carol.plugin["xep_0045"].join_muc_wait(ROOM, "Carol", timeout=15)
        await alice.plugin["xep_0045"].set_role(ROOM, "Bob", "none", reason="cool down")
        await bob.wait_for(lambda: any(p["type"] == "unavailable" and 307 in p["muc"]["status_codes"]
                                       for p in bob.presences if p["from"].bare == ROOM), "the kick")
        await alice.plugin["xep_0045"].set_affiliation(ROOM, "outcast", jid=JID("carol@localhost"), reason="spam")
        await carol.wait_for(lambda: any(301 in p["muc"]["status_codes"]
                                         for p in carol.presences if p["from"].bare == ROOM), "the ban")
        with pytest.raises(PresenceError) as err:
            await carol.plugin["xep_0045"].join_muc_wait(ROOM, "Carol2", timeout=15)
        assert err.value.condition == "forbidden"
        outcasts = await alice.plugin["xep_0045"].get_affiliation_list(ROOM, "outcast")
        assert [str(j) for j in outcasts] == ["carol@localhost"]
        # Bob (no privileges) may not ban.
        await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", timeout=15)
        with pytest.raises(Exception):
            await bob.plugin["xep_0045"].set_affiliation(ROOM, "outcast", jid=JID("alice@localhost"))
        for c in (alice, bob, carol):
            c.disconnect()
    run(scenario())


def test_join_errors_reach_the_client(node):
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        await create_room(alice, passwordprotectedroom="1", roomsecret="sesame")
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        with pytest.raises(PresenceError) as err:
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", timeout=15)
        assert err.value.condition == "not-authorized"
        with pytest.raises(PresenceError) as err:
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Alice", password="sesame", timeout=15)
        assert err.value.condition == "conflict"
        await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", password="sesame", timeout=15)
        for c in (alice, bob):
            c.disconnect()
    run(scenario())


def test_persistent_room_survives_kill9(node):
    async def before():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        await create_room(alice, persistentroom="1", roomname="Ops")
        alice.plugin["xep_0045"].set_subject(ROOM, "kept across restarts")
        await say(alice, "remember me")
        alice.disconnect()

    async def after():
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        me, subject, _, history = await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=10, timeout=15)
        assert 201 not in me["muc"]["status_codes"]
        assert [m["body"] for m in history] == ["remember me"]
        assert subject["subject"] == "kept across restarts"
        info = await bob.plugin["xep_0030"].get_info(jid=ROOM)
        assert "muc_persistent" in info["disco_info"]["features"]
        bob.disconnect()

    run(before())
    node.restart(hard=True)
    run(after())
