import pytest

from outpost_node import Node


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path, handshake_timeout=3, stanza_timeout=3, max_stanza_bytes=65536)
    n.start()
    n.add_user("alice", "wonderland")
    n.add_user("bob", "bob-the-builder")
    n.add_user("carol", "carol-the-singer")
    yield n
    n.stop()
