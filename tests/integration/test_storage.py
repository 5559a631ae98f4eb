"""The log on disk, with real processes: a big state survives restarts, and
damage stops start-up with the file named, changes nothing, and can be
salvaged into a new data directory."""

import asyncio
import hashlib
import subprocess

from outpost_node import BINARY, Node
from xmpp import Raw, send_as


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
    node.add_user("bob", "builder")

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
        node.add_user(user, "secret")
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
            await raw.login_plain("dave", "secret")
            raw.close()
        run(login())
    finally:
        node.stop()


def test_the_data_directory_is_private_to_its_owner(tmp_path):
    node = Node(tmp_path)
    node.add_user("alice", "secret")
    data = tmp_path / "data"
    assert data.stat().st_mode & 0o077 == 0
    assert (data / "log").stat().st_mode & 0o077 == 0
    for seg in (data / "log").glob("*.seg"):
        assert seg.stat().st_mode & 0o077 == 0
