"""HQ and two sites linked to it, as real processes: the network that the
mirroring and one-network tests run on."""

from outpost_node import Node, free_port
from relay import Relay

HQ_MUC = "conference.fairfax.example"


class Federation:
    """HQ (fairfax.example, kevin) masters rooms for two sites that link to
    it over TLS with pinned keys: raleigh.example (wayne, keith) and
    durham.example (dana). With `relayed`, raleigh dials HQ through a
    `Relay` the test can cut and restore. With `upload` (a dict of
    [upload] options, possibly empty), every node serves XEP-0363 uploads
    and files over HTTPS (`Node.enable_upload`)."""

    def __init__(self, tmp_path, relayed=False, upload=None):
        self.hq = Node(tmp_path / "hq", domain="fairfax.example")
        self.raleigh = Node(tmp_path / "raleigh", domain="raleigh.example")
        self.durham = Node(tmp_path / "durham", domain="durham.example")
        self.link_port = free_port()
        self.relay = Relay(self.link_port) if relayed else None
        self.hq.append_config(f'[link]\nlisten = "127.0.0.1:{self.link_port}"\n')
        for site in self.sites:
            self.hq.append_config(f'[[link.peer]]\ndomain = "{site.domain}"\nfingerprint = "{site.fingerprint()}"\n')
            port = self.relay.port if self.relay and site is self.raleigh else self.link_port
            site.append_config(f'[[upstream]]\nmuc = "{HQ_MUC}"\nconnect = "127.0.0.1:{port}"\n'
                               f'fingerprint = "{self.hq.fingerprint()}"\n')
        if upload is not None:
            for n in (self.hq, *self.sites):
                n.enable_upload(**upload)

    @property
    def sites(self):
        return (self.raleigh, self.durham)

    def start(self):
        for n in (self.hq, *self.sites):
            n.start()
        self.hq.add_user("kevin", "k-password")
        self.raleigh.add_user("wayne", "w-password")
        self.raleigh.add_user("keith", "k-password")
        self.durham.add_user("dana", "d-password")
        for site in self.sites:
            site.wait_link_up(HQ_MUC)

    def stop(self):
        if self.relay:
            self.relay.close()
        for n in (self.hq, *self.sites):
            n.stop()
