"""Personal eventing (XEP-0163) with real clients: two slixmpp-omemo
clients publish their OMEMO device lists and bundles to their accounts'
PEP services and exchange encrypted messages (XEP-0384, both
namespaces), also in a members-only, non-anonymous room; an avatar (XEP-0084) published by one reaches a contact
that asked for it in its entity capabilities."""

import asyncio
import sys

import pytest
from omemo.storage import Just, Nothing, Storage
from slixmpp import JID
from slixmpp.exceptions import PresenceError
from slixmpp.plugins import register_plugin
from slixmpp_omemo import TrustLevel, XEP_0384

from test_muc import ROOM, create_room, groupchat
from xmpp import TIMEOUT, Client, login


class MemoryStorage(Storage):
    """OMEMO's keys and sessions, in memory: one run of a test."""

    def __init__(self):
        super().__init__()
        self.data = {}

    async def _load(self, key):
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key, value):
        self.data[key] = value
        return Nothing()

    async def _delete(self, key):
        self.data.pop(key, None)
        return Nothing()


class OmemoPlugin(XEP_0384):
    """slixmpp-omemo as a client would wire it; devices trusted blindly."""

    default_config = {"fallback_message": "This message is OMEMO encrypted."}

    def plugin_init(self):
        self.__storage = MemoryStorage()
        super().plugin_init()

    @property
    def storage(self):
        return self.__storage

    @property
    def _btbv_enabled(self):
        return True

    async def _devices_blindly_trusted(self, blindly_trusted, identifier):
        pass

    async def _prompt_manual_trust(self, manually_trusted, identifier):
        session_manager = await self.get_session_manager()
        for device in manually_trusted:
            await session_manager.set_trust(device.bare_jid, device.identity_key, TrustLevel.TRUSTED.value)


OmemoPlugin.name = "xep_0384"
register_plugin(OmemoPlugin)


async def omemo_client(port, jid, password):
    c = Client(jid, password)
    c.register_plugin("xep_0115")
    c.register_plugin("xep_0163")
    c.register_plugin("xep_0380")
    c.register_plugin("xep_0384", module=sys.modules[__name__])
    ready = asyncio.get_event_loop().create_future()
    c.add_event_handler("omemo_initialized", lambda _: ready.done() or ready.set_result(True))
    c.connect("127.0.0.1", port)
    assert await asyncio.wait_for(c.started, TIMEOUT), f"{jid} could not log in"
    await c.get_roster()
    c.send_presence()
    await asyncio.wait_for(ready, 60)
    return c


def test_two_omemo_clients_exchange_encrypted_messages(node):
    async def run():
        alice = await omemo_client(node.port, "alice@localhost/phone", "wonderland")
        bob = await omemo_client(node.port, "bob@localhost/phone", "bob-the-builder")
        # Both published their device lists and bundles here.
        for owner, c in (("alice", alice), ("bob", bob)):
            for pep_node in ("urn:xmpp:omemo:2:devices", "eu.siacs.conversations.axolotl.devicelist"):
                items = await c.plugin["xep_0060"].get_items(JID(f"{owner}@localhost"), pep_node)
                assert len(items["pubsub"]["items"]) == 1, (owner, pep_node)
        decrypted = []
        got = asyncio.Event()

        async def on_message(msg):
            omemo = bob.plugin["xep_0384"]
            if msg["type"] in ("chat", "normal") and omemo.is_encrypted(msg):
                # Kept in the order they arrived: the first one, which sets
                # up the session, takes longer to decrypt.
                slot = len(decrypted)
                decrypted.append(None)
                plain, _device = await omemo.decrypt_message(msg)
                decrypted[slot] = plain["body"]
                got.set()

        bob.add_event_handler("message", on_message)
        for text in ("the first secret", "the second secret"):
            msg = alice.make_message(mto=JID("bob@localhost"), mtype="chat")
            msg["body"] = text
            encrypted, errors = await alice.plugin["xep_0384"].encrypt_message(msg, JID("bob@localhost"))
            assert encrypted is not None, errors
            assert text not in str(encrypted), "sent encrypted"
            encrypted.send()
        await asyncio.wait_for(_until(lambda: len(decrypted) == 2 and None not in decrypted, got), TIMEOUT)
        assert decrypted == ["the first secret", "the second secret"]
        # The server never saw the words: Bob's archive keeps only ciphertext.
        archived = []
        async for m in bob.plugin["xep_0313"].iterate(with_jid=JID("alice@localhost")):
            archived.append(str(m))
        # (and the empty OMEMO messages that set up the sessions)
        assert len(archived) >= 2 and not any("secret" in a for a in archived), archived
        alice.disconnect()
        bob.disconnect()

    asyncio.run(run())


def test_omemo_in_a_members_only_non_anonymous_room(node):
    """Alice's OMEMO message to a private room reaches Bob, who decrypts it
    with her real JID taken from the room; the room's archive keeps only
    ciphertext, and Carol, not a member, cannot get in."""
    secret = "the launch code is 0000"

    async def run():
        alice = await omemo_client(node.port, "alice@localhost/phone", "wonderland")
        bob = await omemo_client(node.port, "bob@localhost/phone", "bob-the-builder")
        await create_room(alice, membersonly="1", whois="anyone")
        await alice.plugin["xep_0045"].set_affiliation(ROOM, "member", jid=JID("bob@localhost"))
        me, _, occupants, _ = await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=TIMEOUT)
        assert 100 in me["muc"]["status_codes"], "the room says it is non-anonymous"
        # Each sees the other's real JID, as OMEMO needs.
        assert [str(p["muc"]["jid"].bare) for p in occupants] == ["alice@localhost", "bob@localhost"]
        await alice.wait_for(lambda: alice.plugin["xep_0045"].get_jid_property(ROOM, "Bob", "jid"), "Bob's real JID")
        members = {JID(alice.plugin["xep_0045"].get_jid_property(ROOM, nick, "jid")).bare
                   for nick in alice.plugin["xep_0045"].get_roster(ROOM)}
        assert members == {"alice@localhost", "bob@localhost"}

        msg = alice.make_message(mto=ROOM, mtype="groupchat")
        msg["body"] = secret
        encrypted, errors = await alice.plugin["xep_0384"].encrypt_message(
            msg, {JID(j) for j in members if j != alice.boundjid.bare})
        assert encrypted is not None, errors
        assert secret not in str(encrypted), "sent encrypted"
        encrypted.send()

        def arrived(c):
            return [m for m in groupchat(c) if c.plugin["xep_0384"].is_encrypted(m)]
        await bob.wait_for(lambda: arrived(bob), "the encrypted message at Bob")
        [received] = arrived(bob)
        assert received["from"] == JID(f"{ROOM}/Alice") and secret not in str(received)
        plain, device = await bob.plugin["xep_0384"].decrypt_message(received)
        assert plain["body"] == secret and device.bare_jid == "alice@localhost"
        # Alice's own client shows her reflected message (from its cache).
        await alice.wait_for(lambda: arrived(alice), "the reflection at Alice")
        plain, _ = await alice.plugin["xep_0384"].decrypt_message(arrived(alice)[0])
        assert plain["body"] == secret

        # The room's archive holds the ciphertext, never the words.
        archived = [str(m["mam_result"]["forwarded"]["stanza"])
                    async for m in bob.plugin["xep_0313"].iterate(jid=ROOM)]
        assert len(archived) == 1 and "eu.siacs.conversations.axolotl" in archived[0], archived
        assert secret not in archived[0], archived

        carol = await login(node.port, "carol@localhost/c", "carol-the-singer")
        with pytest.raises(PresenceError) as err:
            await carol.plugin["xep_0045"].join_muc_wait(ROOM, "Carol", timeout=TIMEOUT)
        assert err.value.condition == "registration-required"
        for c in (alice, bob, carol):
            c.disconnect()

    asyncio.run(run())


async def _until(predicate, event):
    while not predicate():
        event.clear()
        await event.wait()


def test_an_avatar_reaches_a_contact_that_asked_for_it(node):
    png = bytes.fromhex("89504e470d0a1a0a") + b"not really a picture" * 10

    async def run():
        alice = await login(node.port, "alice@localhost/desk", "wonderland")
        bob = Client("bob@localhost/phone", "bob-the-builder")
        for plugin in ("xep_0115", "xep_0163", "xep_0084"):
            bob.register_plugin(plugin)
        for plugin in ("xep_0115", "xep_0163", "xep_0084"):
            alice.register_plugin(plugin)
        seen = asyncio.get_event_loop().create_future()
        bob.add_event_handler("avatar_metadata_publish",
                              lambda msg: seen.done() or seen.set_result(msg))
        bob.connect("127.0.0.1", node.port)
        assert await asyncio.wait_for(bob.started, TIMEOUT)
        await bob.get_roster()
        bob.send_presence()
        # Subscribed both ways: avatars are for contacts.
        alice.send_presence(pto="bob@localhost", ptype="subscribe")
        bob.send_presence(pto="alice@localhost", ptype="subscribe")
        await asyncio.sleep(0)
        alice.send_presence(pto="bob@localhost", ptype="subscribed")
        bob.send_presence(pto="alice@localhost", ptype="subscribed")
        await bob.plugin["xep_0199"].ping(jid="localhost")
        await alice.plugin["xep_0199"].ping(jid="localhost")
        avatar_id = alice.plugin["xep_0084"].generate_id(png)
        await alice.plugin["xep_0084"].publish_avatar(png)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": avatar_id, "type": "image/png", "bytes": len(png)}])
        event = await asyncio.wait_for(seen, TIMEOUT)
        info = event["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
        assert info["id"] == avatar_id
        data = await bob.plugin["xep_0084"].retrieve_avatar(JID("alice@localhost"), avatar_id)
        assert data["pubsub"]["items"]["item"]["avatar_data"]["value"] == png
        alice.disconnect()
        bob.disconnect()

    asyncio.run(run())
