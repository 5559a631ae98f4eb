import pytest

from federation import Federation
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


@pytest.fixture
def network(tmp_path):
    """A running `Federation`."""
    fed = Federation(tmp_path)
    fed.start()
    yield fed
    fed.stop()


@pytest.fixture
def relayed_network(tmp_path):
    """A running `Federation` whose raleigh link goes through a `Relay`."""
    fed = Federation(tmp_path, relayed=True)
    fed.start()
    yield fed
    fed.stop()


@pytest.fixture
def federation(network):
    """(hq, raleigh, durham), running and linked."""
    return network.hq, network.raleigh, network.durham
