"""Hostile users and strangers against a real node: each test is a finding
of the hardening review that used to succeed, and must not any more."""

import asyncio

from xmpp import Raw, login


def run(coro):
    return asyncio.run(coro)


def test_subscription_requests_cannot_bloat_a_roster(node):
    # Before: subscriptions to 20,000 long, non-existent addresses grew the
    # roster past its cap (RSS 91 MB) until it could no longer be fetched.
    async def scenario():
        raw = await Raw.open(node.port)
        await raw.login_plain("alice", "wonderland")
        local = "x" * 1000
        batch = "".join(f"<presence type='subscribe' to='{local}{i}@localhost'/>" for i in range(1500))
        await raw.send(batch)
        await raw.send("<iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>")
        out = await raw.read_until("id='done'")
        assert "your roster is full" in out
        raw.close()
        alice = await login(node.port, "alice@localhost/phone", "wonderland", presence=False)
        roster = await alice.get_roster()
        items = roster["roster"]["items"]
        assert 300 < len(items) <= 1000, len(items)
        alice.disconnect()
    run(scenario())
