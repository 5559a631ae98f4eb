"""Phones on flaky Wi-Fi: a real client process (phone.py, slixmpp with
stream management) frozen while messages arrive, then killed, comes back
and gets every message exactly once: by resuming its session, by a new
session (offline storage), by resuming after a graceful node restart,
and from its archive after a node crash."""

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from slixmpp import JID

from relay import Relay
from xmpp import Client, chat_and_settle, login

HERE = Path(__file__).parent


class Phone:
    def __init__(self, node, jid, password, state):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "phone.py"), str(node.port), jid, password, str(state)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
        self.lines = []
        self.printed = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.printed.put(line.strip())
        self.printed.put(None)

    def read_until(self, predicate, what, deadline_s=20):
        """Lines the process prints, until predicate(lines) holds."""
        end = time.monotonic() + deadline_s
        while not predicate(self.lines):
            try:
                line = self.printed.get(timeout=max(end - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"timed out waiting for {what}: {self.lines}")
            if line is None:
                raise AssertionError(f"the phone exited waiting for {what}: {self.lines}\n{self.proc.stderr.read()}")
            self.lines.append(line)
        return self.lines

    def messages(self):
        return [tuple(l.split(" ", 2)[1:]) for l in self.lines if l.startswith("message ")]

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def send_from_alice(node, bodies):
    asyncio.run(chat_and_settle(node.port, "alice@localhost/a", "wonderland", "bob@localhost", bodies))


def frozen_phone_misses(node, tmp_path, bodies):
    """Bob's phone comes online, is frozen, `bodies` arrive, it is killed."""
    state = tmp_path / "phone.json"
    phone = Phone(node, "bob@localhost/phone", "bob-the-builder", state)
    phone.read_until(lambda l: "ready" in l, "the first session")
    phone.freeze()
    send_from_alice(node, bodies)
    phone.kill()
    return state


def received_once(phone, bodies):
    phone.read_until(lambda l: len([m for m in l if m.startswith("message ")]) >= len(bodies), "every message")
    got = phone.messages()
    assert [b for _, b in got] == bodies, got
    assert len({i for i, _ in got}) == len(bodies), "each with its own stanza-id"


def test_a_frozen_then_killed_phone_resumes_and_gets_every_message_once(node, tmp_path):
    bodies = [f"while frozen {i}" for i in range(20)]
    state = frozen_phone_misses(node, tmp_path, bodies)
    phone = Phone(node, "bob@localhost/phone", "bob-the-builder", state)
    phone.read_until(lambda l: "ready" in l, "the resumed session")
    assert "resumed" in phone.lines and "new" not in phone.lines, phone.lines
    received_once(phone, bodies)
    phone.kill()


def test_a_killed_phone_that_logs_in_anew_gets_them_from_offline_storage(node, tmp_path):
    bodies = [f"offline {i}" for i in range(12)]
    frozen_phone_misses(node, tmp_path, bodies)
    # A reinstalled app: no state, a new session on the same resource.
    phone = Phone(node, "bob@localhost/phone", "bob-the-builder", tmp_path / "fresh.json")
    phone.read_until(lambda l: "ready" in l, "a new session")
    received_once(phone, bodies)
    phone.kill()


def test_a_frozen_phone_resumes_after_a_graceful_node_restart(node, tmp_path):
    bodies = [f"before restart {i}" for i in range(8)]
    state = frozen_phone_misses(node, tmp_path, bodies)
    node.restart()
    # The stop kept the session: the phone resumes it as after a drop.
    phone = Phone(node, "bob@localhost/phone", "bob-the-builder", state)
    phone.read_until(lambda l: "ready" in l, "the resumed session after the restart")
    assert "resumed" in phone.lines and "new" not in phone.lines, phone.lines
    received_once(phone, bodies)
    send_from_alice(node, ["after restart"])
    received_once(phone, bodies + ["after restart"])
    phone.kill()


def test_after_a_node_crash_a_phone_binds_anew_and_finds_what_it_missed_in_its_archive(node, tmp_path):
    bodies = [f"before crash {i}" for i in range(8)]
    state = frozen_phone_misses(node, tmp_path, bodies)
    node.restart(hard=True)
    # A crash keeps no session: the resumption is refused, it binds anew.
    phone = Phone(node, "bob@localhost/phone", "bob-the-builder", state)
    phone.read_until(lambda l: "ready" in l, "a session after the crash")
    assert "new" in phone.lines, phone.lines
    phone.kill()

    async def archive():
        bob = await login(node.port, "bob@localhost/laptop", "bob-the-builder")
        found = []
        async for m in bob.plugin["xep_0313"].iterate(with_jid=JID("alice@localhost"), rsm={"max": 5}):
            found.append(m["mam_result"]["forwarded"]["stanza"]["body"])
        bob.disconnect()
        return found

    assert asyncio.run(archive()) == bodies


def test_a_phone_dropping_its_connection_in_three_rooms_loses_nothing_and_nobody_sees_it(node):
    """Bob's phone is in three rooms behind a relay that drops every
    connection every few seconds; it resumes each time. Every room message
    reaches it once, and Alice never sees it leave or come back."""
    rooms = [JID(f"r{i}@conference.localhost") for i in range(3)]

    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        for room in rooms:
            await alice.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=15)
            form = alice.plugin["xep_0004"].make_form(ftype="submit")
            await alice.plugin["xep_0045"].set_room_config(room, form)
        relay = Relay(node.port)
        phone = Client("bob@localhost/phone", "bob-the-builder")
        phone.register_plugin("xep_0198")
        resumed = asyncio.Event()
        phone.add_event_handler("session_resumed", lambda _: resumed.set())
        phone.connect("127.0.0.1", relay.port)
        assert await asyncio.wait_for(phone.started, 15)
        phone.send_presence()
        for room in rooms:
            await phone.plugin["xep_0045"].join_muc_wait(room, "Bob", maxstanzas=0, timeout=15)
        presences_before = len(alice.presences)
        sent = []
        for drop in range(5):
            for k in range(6):
                body = f"drop {drop} message {k}"
                alice.send_message(mto=rooms[k % 3], mbody=body, mtype="groupchat")
                sent.append(body)
                if k == 2:
                    relay.cut()  # Mid-conversation, the Wi-Fi goes.
            await alice.plugin["xep_0199"].ping(jid="localhost")
            relay.restore()
            resumed.clear()
            phone.connect("127.0.0.1", relay.port)
            await asyncio.wait_for(resumed.wait(), 15)
            await phone.wait_for(
                lambda: all(b in phone.bodies() for b in sent), f"the messages up to drop {drop}")
        got = [b for b in phone.bodies() if b.startswith("drop ")]
        assert sorted(got) == sorted(sent), "each once"
        noise = [str(p["from"]) for p in alice.presences[presences_before:]]
        assert not [f for f in noise if f.endswith("/Bob")], noise
        phone.disconnect()
        alice.disconnect()
        relay.close()
    asyncio.run(scenario())
