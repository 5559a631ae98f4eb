"""Real outpost processes, real clients (slixmpp), loopback only."""

import asyncio
import base64
import socket
import subprocess
import time

import slixmpp

from xmpp import HEADER, Raw, chat_and_settle, login, try_login


def run(coro):
    return asyncio.run(coro)


def test_login_over_starttls_with_scram_sha256(node):
    async def scenario():
        c = await login(node.port, "alice@localhost/laptop", "wonderland", mech="SCRAM-SHA-256")
        assert c.tls, "the stream was upgraded with STARTTLS"
        assert str(c.boundjid) == "alice@localhost/laptop"
        c.disconnect()
    run(scenario())
    assert "alice authenticated" in node.log_text()


def test_scram_sha1_and_plain_over_tls_also_work(node):
    async def scenario():
        for mech in ("SCRAM-SHA-1", "PLAIN"):
            c = await login(node.port, "bob@localhost", "bob-the-builder", mech=mech, presence=False)
            c.disconnect()
    run(scenario())


def test_wrong_password_is_refused_after_a_growing_delay(node):
    async def scenario():
        took = []
        for _ in range(2):
            start = time.monotonic()
            ok, c = await try_login(node.port, "alice@localhost", "not-the-password", mech="SCRAM-SHA-256")
            took.append(time.monotonic() - start)
            assert not ok
            c.disconnect()
        # The server holds failures back at least 250 ms, then 500 ms, for this address.
        assert took[0] >= 0.25 and took[1] >= 0.5, took
        # The right password still works.
        c = await login(node.port, "alice@localhost", "wonderland", presence=False)
        c.disconnect()
    run(scenario())


def test_plain_is_refused_without_tls(node):
    async def scenario():
        raw = await Raw.open(node.port)
        await raw.send(HEADER)
        features = await raw.read_until("</stream:features>")
        assert "<required/>" in features and "PLAIN" not in features
        token = base64.b64encode(b"\0alice\0wonderland").decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        reply = await raw.read_until("</failure>")
        assert "<encryption-required/>" in reply
        raw.close()
    run(scenario())


def test_subscription_and_presence_between_two_users(node):
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        # slixmpp approves requests and subscribes back by default.
        alice.send_presence_subscription(pto="bob@localhost")
        await alice.wait_for(lambda: alice.client_roster["bob@localhost"]["subscription"] == "both", "mutual subscription")
        await alice.wait_for(
            lambda: any(str(p["from"]) == "bob@localhost/b" and p["type"] == "available" for p in alice.presences),
            "bob's presence")
        bob.send_presence(pshow="away", pstatus="lunch")
        await alice.wait_for(
            lambda: any(p["status"] == "lunch" and p["show"] == "away" for p in alice.presences), "bob away")
        bob.disconnect()
        await alice.wait_for(
            lambda: any(str(p["from"]) == "bob@localhost/b" and p["type"] == "unavailable" for p in alice.presences),
            "bob unavailable")
        alice.disconnect()
    run(scenario())


def test_message_to_bare_jid_reaches_both_resources(node):
    async def scenario():
        phone = await login(node.port, "bob@localhost/phone", "bob-the-builder")
        laptop = await login(node.port, "bob@localhost/laptop", "bob-the-builder")
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        alice.send_message(mto="bob@localhost", mbody="to both of you", mtype="chat")
        for c in (phone, laptop):
            await c.wait_for(lambda c=c: "to both of you" in c.bodies(), "the message")
        for c in (phone, laptop, alice):
            c.disconnect()
    run(scenario())


def test_offline_message_is_delivered_on_login_with_delay(node):
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        alice.send_message(mto="carol@localhost", mbody="while you were out", mtype="chat")
        # A round trip after the message: the server has handled (and stored) it.
        await alice.plugin["xep_0199"].ping(jid="localhost")
        alice.disconnect()
        carol = await login(node.port, "carol@localhost/c", "carol-the-singer")
        await carol.wait_for(lambda: "while you were out" in carol.bodies(), "the offline message")
        msg = next(m for m in carol.messages if m["body"] == "while you were out")
        assert msg["delay"]["stamp"] is not None
        assert str(msg["from"]) == "alice@localhost/a"
        carol.disconnect()
    run(scenario())


def test_roster_survives_restart_and_kill9(node):
    async def set_roster():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        await alice.update_roster("bob@localhost", name="Bob the Builder", groups=["Crew"])
        alice.disconnect()

    async def check_roster():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        item = alice.client_roster["bob@localhost"]
        assert item["name"] == "Bob the Builder"
        assert item["groups"] == ["Crew"]
        alice.disconnect()

    run(set_roster())
    node.restart()
    run(check_roster())
    node.restart(hard=True)
    run(check_roster())


def test_hostile_connections_get_stream_errors_while_others_keep_chatting(node):
    async def scenario():
        alice = await login(node.port, "alice@localhost/a", "wonderland")
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")

        broken = await Raw.open(node.port)
        await broken.send(HEADER + "<message><body>unclosed</message>")
        out = await broken.read_to_end()
        assert "<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out

        entity = await Raw.open(node.port)
        await entity.send(HEADER + "<!DOCTYPE lol [<!ENTITY lol 'lol'>]>")
        out = await entity.read_to_end()
        assert "<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out

        big = await Raw.open(node.port)
        await big.login_plain("carol", "carol-the-singer")
        await big.send("<message to='bob@localhost'><body>" + "A" * 70000 + "</body></message>")
        out = await big.read_to_end()
        assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out

        alice.send_message(mto="bob@localhost", mbody="still here?", mtype="chat")
        await bob.wait_for(lambda: "still here?" in bob.bodies(), "alice's message")
        assert all("A" * 100 not in b for b in bob.bodies())
        alice.disconnect()
        bob.disconnect()
    run(scenario())


def test_a_client_that_never_finishes_the_handshake_is_timed_out(node):
    async def scenario():
        raw = await Raw.open(node.port)
        await raw.send(HEADER)
        out = await raw.read_to_end()  # configured handshake_timeout = 3 s
        assert "<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    run(scenario())


def test_users_can_be_managed_while_the_node_runs(node):
    node.add_user("dave", "dave-the-diver")
    listing = node.cli("user", "list").stdout.split()
    assert "dave@localhost" in listing

    async def scenario():
        c = await login(node.port, "dave@localhost", "dave-the-diver", presence=False)
        c.disconnect()
    run(scenario())
    r = node.cli("user", "passwd", "dave", stdin="short\n")
    assert r.returncode != 0 and "at least 8 characters" in r.stderr, r.stderr
    r = node.cli("user", "passwd", "dave", stdin="deeper-still\n")
    assert r.returncode == 0, r.stderr
    assert "password of dave@localhost changed" in r.stdout, r.stdout
    r = node.cli("user", "add", "erin", stdin="erin-password\n")
    assert r.returncode == 0 and "user erin@localhost added" in r.stdout, (r.stdout, r.stderr)
    r = node.cli("user", "add", "dave", stdin="another-password\n")
    assert r.returncode != 0 and "already exists" in r.stderr

    async def relogin():
        ok, c = await try_login(node.port, "dave@localhost", "dave-the-diver", mech="SCRAM-SHA-256")
        assert not ok
        c.disconnect()
        c = await login(node.port, "dave@localhost", "deeper-still", presence=False)
        c.disconnect()
    run(relogin())


def test_kill9_during_writes_loses_nothing_acknowledged(node):
    """Alice streams offline messages to carol, each followed by a ping. A
    pong means the message before it is durable. Kill -9 mid-stream; after
    restart carol gets every acknowledged message exactly once, in order."""
    acked = []

    async def writer():
        raw = await Raw.open(node.port)
        await raw.login_plain("alice", "wonderland")
        i = 0
        try:
            while True:
                await raw.send(f"<message to='carol@localhost' type='chat'><body>m{i}</body></message>"
                               f"<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
                await raw.read_until(f"id='p{i}'")
                acked.append(i)
                i += 1
                if i == 40:
                    node.kill9()
        except (AssertionError, ConnectionError, OSError, asyncio.TimeoutError):
            pass

    run(writer())
    assert len(acked) >= 40
    node.start()

    async def reader():
        carol = await login(node.port, "carol@localhost/c", "carol-the-singer")
        await carol.wait_for(lambda: f"m{acked[-1]}" in carol.bodies(), "the last acknowledged message")
        await carol.plugin["xep_0199"].ping(jid="localhost")
        got = [int(b[1:]) for b in carol.bodies()]
        assert got == list(range(len(got))), "in order, no gaps, no duplicates"
        assert len(got) >= len(acked)
        carol.disconnect()
    run(reader())


def test_direct_tls_port_logs_in_without_starttls(tmp_path):
    """XEP-0368: on `listen_tls` TLS comes first (ALPN xmpp-client), the
    features offer SASL at once (PLAIN too: the stream is encrypted), and a
    client that speaks plain XML there gets nothing and harms nothing."""
    from outpost_node import Node, free_port
    node = Node(tmp_path, listen_tls=f'"127.0.0.1:{free_port()}"')
    tls_port = int(node.config.read_text().split('listen_tls = "127.0.0.1:')[1].split('"')[0])
    node.start()
    node.add_user("alice", "wonderland")

    async def scenario():
        raw = await Raw.open_direct_tls(tls_port)
        ssl_object = raw.writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "xmpp-client"
        await raw.send(HEADER)
        features = await raw.read_until("</stream:features>")
        assert "<starttls" not in features and "<mechanism>PLAIN</mechanism>" in features, features
        token = base64.b64encode(b"\0alice\0wonderland").decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        await raw.read_until("<success")
        await raw.send(HEADER)
        await raw.read_until("</stream:features>")
        await raw.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>d</resource></bind></iq>")
        assert "alice@localhost/d" in await raw.read_until("</iq>")
        raw.close()
        # Plain XML on the TLS port: the handshake fails, the node goes on.
        plain = await Raw.open(tls_port)
        await plain.send(HEADER)
        assert "<stream:features" not in await plain.read_to_end()
        c = await login(node.port, "alice@localhost/s", "wonderland", presence=False)
        c.disconnect()
    try:
        run(scenario())
    finally:
        node.stop()


def test_an_inactive_client_reads_only_the_latest_presences(node):
    """XEP-0352 with real clients: while alice says she is inactive, bob's
    status changes ten times; what reaches her before her own ping's answer
    is only his latest, and after <active/> likewise."""
    async def scenario():
        alice = await login(node.port, "alice@localhost/phone", "wonderland")
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        alice.send_presence_subscription(pto="bob@localhost")
        await alice.wait_for(lambda: alice.client_roster["bob@localhost"]["subscription"] == "both", "subscription")
        await bob.wait_for(lambda: bob.client_roster["alice@localhost"]["subscription"] == "both", "subscription")
        # Roster pushes and answers of the handshake may still be on their
        # way, and a push releases held presences: let them all arrive.
        for c in (alice, bob, alice, bob):
            await c.plugin["xep_0199"].ping(jid="localhost")

        def statuses():
            return [p["status"] for p in alice.presences if str(p["from"]) == "bob@localhost/b"]

        for round_, release in (("one", "ping"), ("two", "active")):
            alice.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
            await alice.plugin["xep_0199"].ping(jid="localhost")  # inactive from here
            seen = len(statuses())
            for i in range(10):
                bob.send_presence(pstatus=f"{round_} {i}")
            await bob.plugin["xep_0199"].ping(jid="localhost")  # all ten handled
            if release == "ping":
                await alice.plugin["xep_0199"].ping(jid="localhost")
            else:
                alice.send_raw("<active xmlns='urn:xmpp:csi:0'/>")
                await alice.wait_for(lambda: f"{round_} 9" in statuses(), "the latest status")
            assert statuses()[seen:] == [f"{round_} 9"], statuses()[seen:]
        alice.disconnect()
        bob.disconnect()
    run(scenario())



def test_the_archive_pages_with_rsm_for_a_real_client_and_survives_a_restart(node):
    """XEP-0313 through slixmpp's own MAM plugin: what Bob received offline
    is in his archive under the ids his copies carried, page by page."""
    bodies = [f"note {i}" for i in range(15)]

    async def send():
        await chat_and_settle(node.port, "alice@localhost/a", "wonderland", "bob@localhost", bodies)

    async def read():
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        await bob.wait_for(lambda: bodies[-1] in bob.bodies(), "the offline messages")
        received = [
            m["stanza_id"]["id"] for m in bob.messages
            if m["body"] in bodies and m["stanza_id"]["by"] == "bob@localhost"
        ]
        archived = []
        async for m in bob.plugin["xep_0313"].iterate(with_jid=slixmpp.JID("alice@localhost"), rsm={"max": 4}):
            archived.append((m["mam_result"]["id"], m["mam_result"]["forwarded"]["stanza"]["body"]))
        newest = []
        async for m in bob.plugin["xep_0313"].iterate(reverse=True, rsm={"max": 4}, total=5):
            newest.append(m["mam_result"]["forwarded"]["stanza"]["body"])
        bob.disconnect()
        return received, archived, newest

    run(send())
    received, archived, newest = run(read())
    assert [b for _, b in archived] == bodies, "in order, in pages of four"
    assert [i for i, _ in archived] == received, "the ids Bob's copies carried"
    assert newest == bodies[::-1][:5]
    node.restart(hard=True)

    async def again():
        bob = await login(node.port, "bob@localhost/b", "bob-the-builder")
        ids = []
        async for m in bob.plugin["xep_0313"].iterate(rsm={"max": 10}):
            ids.append(m["mam_result"]["id"])
        bob.disconnect()
        return ids

    assert run(again()) == received, "after kill -9 and a restart"


def test_a_port_in_use_names_the_setting_and_leaves_no_data_behind(tmp_path):
    from outpost_node import BINARY
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    data = tmp_path / "data"
    cfg = tmp_path / "outpost.toml"
    cfg.write_text(f'domain = "localhost"\ndata_dir = "{data}"\n[c2s]\nlisten = "127.0.0.1:{port}"\n')
    r = subprocess.run([str(BINARY), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    busy.close()
    assert r.returncode != 0
    assert f"127.0.0.1:{port} ([c2s] listen)" in r.stderr and "set [c2s] listen to another address" in r.stderr, r.stderr
    assert not data.exists(), "nothing made before the ports are ours"
