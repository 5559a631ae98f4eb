"""The log on disk, with real processes: a big state survives restarts, and
damage stops start-up with the file named, changes nothing, and can be
salvaged into a new data directory."""

import asyncio
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

from slixmpp import JID

from outpost_node import BINARY, Node, free_port
from xmpp import Raw, login, send_as


def run(coro):
    return asyncio.run(coro)


def digest(path):
    """A hash of every file under path, names included."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name != "lock":
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def start_fails(node):
    """Start the node and return its error output (it must exit with failure)."""
    r = subprocess.run([str(BINARY), "run", "-c", str(node.config)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, "the node started on a damaged log"
    return r.stderr


def test_eighty_mb_of_offline_messages_survive_compaction_and_restart(tmp_path):
    # What lost every account before: ~80 MB of offline messages made
    # compaction write one snapshot record larger than the reader accepted.
    node = Node(tmp_path, max_stanza_bytes=262144, offline_limit=1000,
                offline_bytes_per_account=200_000_000, offline_bytes_total=400_000_000)
    node.start()
    node.add_user("alice", "wonderland")
    node.add_user("bob", "bob-the-builder")

    body = "z" * 200_000
    chats = [f"<message to='bob@localhost' type='chat' id='m{i}'><body>{i} {body}</body></message>" for i in range(400)]
    try:
        out = run(send_as(node.port, "alice", "wonderland", chats))
        assert "<error" not in out, out[:500]
        assert "compacted" in node.log_text()
        node.restart()
        users = node.cli("user", "list").stdout.split()
        assert users == ["alice@localhost", "bob@localhost"]
    finally:
        node.stop()
    check = node.cli("data", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "offline messages 400" in check.stdout, check.stdout


def test_damage_stops_start_up_changes_nothing_and_can_be_salvaged(tmp_path):
    node = Node(tmp_path)
    for user in ("alice", "bob", "carol", "dave"):
        node.add_user(user, "secret-password")
    data = tmp_path / "data"
    segment = next((data / "log").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    # Damage bob's account record: each `user add` was its own commit, so
    # this is data that was durable and followed by more, not a torn tail.
    at = raw.index(b"bob")
    raw[at] ^= 0x01
    segment.write_bytes(bytes(raw))
    before = digest(data)

    err = start_fails(node)
    assert str(segment.name) in err and "damaged at byte" in err, err
    assert "outpost data salvage" in err, err
    check = node.cli("data", "check")
    assert check.returncode != 0
    assert "refuses to start" in check.stdout and "verify after it" in check.stdout, check.stdout
    assert digest(data) == before, "start-up or check changed the data directory"

    salvaged = tmp_path / "salvaged"
    r = node.cli("data", "salvage", str(salvaged))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accounts: 3" in r.stdout, r.stdout
    assert digest(data) == before, "salvage changed the original"
    assert (salvaged / "cert.pem").exists() or not (data / "cert.pem").exists()

    text = node.config.read_text().replace('data_dir = "data"', f'data_dir = "{salvaged}"')
    node.config.write_text(text)
    node.start()
    try:
        users = node.cli("user", "list").stdout.split()
        assert users == ["alice@localhost", "carol@localhost", "dave@localhost"]

        async def login():
            raw = await Raw.open(node.port)
            await raw.login_plain("dave", "secret-password")
            raw.close()
        run(login())
    finally:
        node.stop()


def test_the_data_directory_is_private_to_its_owner(tmp_path):
    node = Node(tmp_path)
    node.add_user("alice", "secret-password")
    data = tmp_path / "data"
    assert data.stat().st_mode & 0o077 == 0
    assert (data / "log").stat().st_mode & 0o077 == 0
    for seg in (data / "log").glob("*.seg"):
        assert seg.stat().st_mode & 0o077 == 0


def unacked(node, peer):
    rows = node.cli("links").stdout.splitlines()[1:]
    return next(r.split() for r in rows if r.split()[0] == peer)[4]


def test_link_events_queued_by_the_previous_release_all_arrive(tmp_path):
    """An HQ and a site whose data directories the release before typed
    link queues wrote (tests/fixtures/bbde3c9, see make_old_linked_data_dirs.py),
    each holding events the other never acknowledged: the current build
    opens both, resends them, and every message is in the room's archive."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "bbde3c9"
    hq = Node(tmp_path / "hq", domain="fairfax.example")
    site = Node(tmp_path / "site", domain="raleigh.example")
    for node, name in ((hq, "hq"), (site, "site")):
        shutil.copytree(fixtures / name / "data", node.dir / "data")
    port = free_port()
    hq.append_config(f'[link]\nlisten = "127.0.0.1:{port}"\n'
                     f'[[link.peer]]\ndomain = "raleigh.example"\nfingerprint = "{site.fingerprint()}"\n')
    site.append_config(f'[[upstream]]\nmuc = "conference.fairfax.example"\nconnect = "127.0.0.1:{port}"\n'
                       f'fingerprint = "{hq.fingerprint()}"\n')
    room = JID("chat@conference.fairfax.example")
    said = {f"hq while the site was away {i}" for i in range(2)} | {f"site while hq was away {i}" for i in range(2)}

    async def archive_holds_all(port, jid, password):
        c = await login(port, jid, password)
        for _ in range(100):
            bodies = set()
            async for msg in c.plugin["xep_0313"].iterate(jid=room, rsm={"max": 50}):
                bodies.add(msg["mam_result"]["forwarded"]["stanza"]["body"])
            if said <= bodies:
                c.disconnect()
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"archive at {jid} holds {sorted(bodies)}")

    async def joins_and_sees_all():
        # The passwords the previous release set (shorter than allowed now:
        # accounts made before the rule keep working).
        wayne = await login(site.port, "wayne@raleigh.example/field", "w")
        await wayne.plugin["xep_0045"].join_muc_wait(room, "Wayne", maxstanzas=50, timeout=15)
        await wayne.wait_for(lambda: said <= {m["body"] for m in wayne.messages}, "every message at the site")
        wayne.disconnect()

    hq.start()
    site.start()
    try:
        site.wait_link_up("conference.fairfax.example")
        run(archive_holds_all(hq.port, "kevin@fairfax.example/desk", "k"))
        run(joins_and_sees_all())
        # And once acknowledged, nothing stays queued on either side.
        for node, peer in ((hq, "raleigh.example"), (site, "conference.fairfax.example")):
            end = time.monotonic() + 15
            while (row := unacked(node, peer)) != "0":
                assert time.monotonic() < end, f"{node.domain} still holds {row} events for {peer}"
                time.sleep(0.1)
    finally:
        site.stop()
        hq.stop()


ROOM = "field@conference.localhost"


async def fill_room(port, count):
    """alice creates a persistent room and sends `count` messages to it."""
    raw = await Raw.open(port)
    await raw.login_plain("alice", "secret-password")
    await raw.send(f"<presence to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'>"
                   "<history maxstanzas='0'/></x></presence>")
    await raw.read_until("110")
    await raw.send(f"<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                   "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'>"
                   "<value>1</value></field></x></query></iq>")
    await raw.read_until("id='cfg'")
    for start in range(0, count, 250):
        out = "".join(f"<message to='{ROOM}' type='groupchat'><body>report {k} from the north road</body></message>"
                      for k in range(start, min(start + 250, count)))
        await raw.send(out + f"<iq type='get' id='p{start}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.read_until(f"id='p{start}'")
        raw.buffer = ""
    raw.close()


async def mam_page(port, rsm):
    """One MAM page of the room as bob asks for it: its bodies, and the
    archive id of its last message."""
    raw = await Raw.open(port)
    await raw.login_plain("bob", "secret-password")
    await raw.send(f"<iq type='set' id='q' to='{ROOM}'><query xmlns='urn:xmpp:mam:2' queryid='q'>"
                   f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>")
    out = await raw.read_until("</fin>")
    raw.close()
    bodies = [b.split("</body>")[0] for b in out.split("<body>")[1:]]
    last = out.split("<last>")[1].split("</last>")[0] if "<last>" in out else None
    return bodies, last


async def archive_page(port, rsm):
    return (await mam_page(port, rsm))[0]


def test_room_archives_live_in_archive_files_through_a_crash_and_a_salvage(tmp_path):
    node = Node(tmp_path)
    node.append_config("[muc]\narchive_messages = 20000\n")
    node.add_user("alice", "secret-password")
    node.add_user("bob", "secret-password")
    data = tmp_path / "data"
    node.start()
    try:
        # Enough for a compaction: its snapshot refers to blocks in files.
        run(fill_room(node.port, 12000))
        assert "compacted" in node.log_text()
        oldest = [f"report {k} from the north road" for k in range(10)]
        newest = [f"report {k} from the north road" for k in range(11990, 12000)]
        assert run(archive_page(node.port, "<max>10</max>")) == oldest
        # Sealed blocks went to the archive files: a fraction of the text.
        blocks = list((data / "archive").glob("*.blk"))
        stored = sum(b.stat().st_size for b in blocks)
        assert 0 < stored < 12000 * 64, stored  # stanzas are ~300 bytes
        # A crash: blocks written since the last snapshot are written
        # again from the log's records; nothing is lost or doubled.
        node.kill9()
        node.start()
        assert run(archive_page(node.port, "<max>10</max>")) == oldest
        assert run(archive_page(node.port, "<max>10</max><before/>")) == newest
        # Paged by id from the middle (the id's block read from its file).
        _, at = run(mam_page(node.port, "<max>200</max>"))
        middle = run(archive_page(node.port, f"<max>3</max><after>{at}</after>"))
        assert middle == [f"report {k} from the north road" for k in (200, 201, 202)]
    finally:
        node.stop()
    for f in (data / "archive").glob("*.blk"):
        assert f.stat().st_mode & 0o077 == 0

    # A salvage copies the blocks into the new log, not the files.
    salvaged = tmp_path / "salvaged"
    r = node.cli("data", "salvage", str(salvaged))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(salvaged.glob("archive/*.blk"))
    node.config.write_text(node.config.read_text().replace('data_dir = "data"', f'data_dir = "{salvaged}"'))
    node.start()
    try:
        assert run(archive_page(node.port, "<max>10</max>")) == oldest
        # The node on it writes its own archive files.
        assert list(salvaged.glob("archive/*.blk"))
    finally:
        node.stop()
