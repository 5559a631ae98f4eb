"""Hostile users and strangers against a real node: each test is a finding
of the hardening review that used to succeed, and must not any more."""

import asyncio
import base64
import os
import select
import signal
import subprocess
import time

from slixmpp import JID

from outpost_node import Node, free_port
from sockets import idle_sockets, raise_own_file_limit
from xmpp import Raw, login, plain_auth, send_as


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


def login_ok(port, user, password):
    async def go():
        c = await login(port, f"{user}@localhost/probe", password, presence=False)
        c.disconnect()
    run(go())


def test_idle_link_connections_do_not_livelock_the_node(tmp_path):
    # Before: a few hundred idle connections to [link] listen put the node
    # at 100 % CPU for good (an accept loop spinning on EMFILE): c2s, the
    # admin socket and SIGTERM stopped answering.
    node = Node(tmp_path, handshake_timeout=3)
    link_port = free_port()
    fingerprint = base64.b64encode(bytes(32)).decode()
    node.append_config(f'[link]\nlisten = "127.0.0.1:{link_port}"\n'
                       f'[[link.peer]]\ndomain = "site.example"\nfingerprint = "{fingerprint}"\n')
    node.add_user("alice", "wonderland")
    node.start(nofile=96)
    raise_own_file_limit(2048)
    socks = idle_sockets(link_port, 600)
    try:
        started = time.monotonic()
        users = node.cli("user", "list", timeout=15)
        assert users.stdout.split() == ["alice@localhost"], users.stderr
        login_ok(node.port, "alice", "wonderland")
        assert time.monotonic() - started < 10
        node.proc.send_signal(signal.SIGTERM)
        node.proc.wait(timeout=10)
    finally:
        for s in socks:
            s.close()
        node.stop()


def test_one_address_cannot_take_every_c2s_slot(tmp_path):
    # Before: 1,000 idle sockets from one address and nobody could log in
    # (for as long as the handshake timeout, and renewable). Here the node
    # allows 200 connections, and one address opens 400.
    node = Node(tmp_path, handshake_timeout=60, max_connections=200)
    node.add_user("alice", "wonderland")
    node.start()
    raise_own_file_limit(4096)
    socks = idle_sockets(node.port, 400)
    try:
        # Wait until the node has taken (or closed) every one of them.
        pending = list(socks)
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 1)
            pending = [s for s in pending if s not in writable]
        assert not pending
        login_ok(node.port, "alice", "wonderland")
    finally:
        for s in socks:
            s.close()
        node.stop()


def test_pipelined_login_guesses_are_throttled_and_others_are_served(node):
    # Before: 2,000 PLAIN attempts pipelined after STARTTLS got <success/> in
    # 1.67 s, and two such streams stalled every user's pings for 5 s.
    async def read_all(raw):
        text = ""
        try:
            while chunk := await raw.reader.read(65536):
                text += chunk.decode(errors="replace")
        except ConnectionError:
            pass  # Closed with our unread guesses still queued: a reset.
        return text

    async def scenario():
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder", presence=False)
        readers = []
        for _ in range(2):
            raw = await Raw.open(node.port)
            await raw.starttls()
            burst = "".join(plain_auth("alice", f"guess{i}") for i in range(2000))
            raw.writer.write((burst + plain_auth("alice", "wonderland")).encode())
            readers.append(asyncio.ensure_future(read_all(raw)))
        worst = 0.0
        for _ in range(10):
            t = time.monotonic()
            await bob.plugin["xep_0199"].ping(timeout=10)
            worst = max(worst, time.monotonic() - t)
            await asyncio.sleep(0.3)
        assert worst < 1.0, f"a ping took {worst:.2f} s"
        outs = await asyncio.gather(*readers)
        assert not any("<success" in out for out in outs)
        # One attempt at a time from the address, each after a growing
        # delay: a handful in all before the streams were closed.
        answered = sum(out.count("<not-authorized/>") for out in outs)
        assert 1 <= answered <= 6, outs
        bob.disconnect()
    run(scenario())


def test_offline_storage_is_bounded_in_bytes(node):
    # Before: 500 messages of 200 KB to one account grew RSS 14 -> 101 MB.
    body = "b" * 60_000
    chats = [f"<message to='carol@localhost' type='chat' id='m{i}'><body>{body}</body></message>" for i in range(150)]
    out = run(send_as(node.port, "alice", "wonderland", chats))
    assert "resource-constraint" in out and "carol is offline and their message storage is full" in out
    node.stop()
    check = node.cli("data", "check").stdout
    stored = int(check.split("offline messages ")[1].split()[2])
    assert stored <= 4 * 1024 * 1024, check


def test_offline_messages_reach_a_client_that_reads_slowly(node):
    # Before: 500 x 4 KB offline messages, the client got 249 before it was
    # cut off ("not reading"), and the other 251 were marked done and lost.
    # Now delivery goes at the pace the client reads, and nothing is marked
    # delivered before it was written. (That a client killed with written
    # but unread messages in its socket gets them again needs stream
    # management acknowledgements: the mobile issue. The simulator checks
    # that nothing unwritten is marked delivered.)
    async def scenario():
        body = "o" * 4000
        chats = [f"<message to='bob@localhost' type='chat' id='m{i}'><body>#{i}# {body}</body></message>"
                 for i in range(500)]
        await send_as(node.port, "alice", "wonderland", chats)
        slow = await Raw.open(node.port)
        await slow.login_plain("bob", "bob-the-builder")
        await slow.send("<presence/>")
        seen = ""
        while len(whole_bodies(seen)) < 500:
            chunk = await asyncio.wait_for(slow.reader.read(16384), 15)
            assert chunk, f"cut off after {len(whole_bodies(seen))} messages"
            seen += chunk.decode()
            await asyncio.sleep(0.005)  # A slow phone on bad Wi-Fi.
        assert whole_bodies(seen) == set(range(500))
        assert seen.count("<body>#") == 500, "each once"
        await slow.send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        await slow.read_until("id='still'")
        slow.close()
    run(scenario())


def test_a_room_with_a_big_history_can_still_be_joined(node):
    # Before: a room whose history exceeded the 1 MiB output bound could
    # never be joined again (the joiner was cut off every time).
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        room = JID("big@conference.localhost")
        await alice.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=15)
        form = alice.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#roomconfig")
        form.add_field(var="muc#roomconfig_historylength", value="100")
        await alice.plugin["xep_0045"].set_room_config(room, form)
        for i in range(60):
            alice.send_message(mto=room, mbody=f"{i} " + "h" * 60_000, mtype="groupchat")
        await alice.wait_for(lambda: sum(1 for m in alice.messages if m["type"] == "groupchat") >= 60, "reflections")
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        me, _, _, history = await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", maxstanzas=100, timeout=30)
        assert 110 in me["muc"]["status_codes"]
        assert history and history[-1]["body"].startswith("59 "), "the newest history arrives"
        assert len(history) < 60, "bounded in bytes"
        for c in (alice, bob):
            c.disconnect()
    run(scenario())


def whole_bodies(text):
    return {int(m.split("#")[1]) for m in text.split("<message ") if "</message>" in m and "#" in m}


def test_command_output_into_a_closed_pipe_ends_quietly():
    """`outpost check | head -0`: the reader has gone before the first line;
    the command ends with success, without an abort or a panic message."""
    from outpost_node import BINARY
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run([str(BINARY), "check"], stdout=write_end, stderr=subprocess.PIPE, timeout=30)
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert b"panicked" not in proc.stderr and b"Broken pipe" not in proc.stderr, proc.stderr
