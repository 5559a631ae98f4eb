"""Client helpers: slixmpp (a real client nobody here wrote) and a raw
stream for hostile input that no well-behaved client would send."""

import asyncio
import base64
import ssl

import slixmpp

TIMEOUT = 15


def insecure_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx



def plain_auth(user, password):
    """A SASL PLAIN <auth> element for `user` and `password`."""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"

class Client(slixmpp.ClientXMPP):
    """slixmpp client that records what it receives."""

    def __init__(self, jid, password, mech=None):
        super().__init__(jid, password, sasl_mech=mech)
        self.ssl_context = insecure_context()
        for plugin in ("xep_0199", "xep_0203", "xep_0030", "xep_0004", "xep_0045", "xep_0059", "xep_0313", "xep_0359"):
            self.register_plugin(plugin)
        self.messages = []
        self.presences = []
        self.tls = False
        self.started = asyncio.get_event_loop().create_future()
        self.changed = asyncio.Event()
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_all_auth", self._failed)
        self.add_event_handler("tls_success", self._tls)
        self.add_event_handler("message", self._message)
        self.add_event_handler("presence", self._presence)
        self.add_event_handler("groupchat_presence", self._presence)

    def _tls(self, _):
        self.tls = True

    async def _started(self, _):
        if not self.started.done():
            self.started.set_result(True)

    def _failed(self, _):
        if not self.started.done():
            self.started.set_result(False)

    def _message(self, msg):
        self.messages.append(msg)
        self.changed.set()

    def _presence(self, pres):
        self.presences.append(pres)
        self.changed.set()

    async def wait_for(self, predicate, what="condition"):
        """Wait until predicate() holds, re-checking on each received stanza."""
        async def loop():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        try:
            await asyncio.wait_for(loop(), TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.boundjid}: timed out waiting for {what}")

    def bodies(self):
        return [m["body"] for m in self.messages if m["body"]]


async def login(port, jid, password, mech=None, presence=True):
    c = Client(jid, password, mech)
    c.connect("127.0.0.1", port)
    ok = await asyncio.wait_for(c.started, TIMEOUT)
    assert ok, f"{jid} could not log in"
    if presence:
        await c.get_roster()
        c.send_presence()
    return c


async def try_login(port, jid, password, mech=None):
    """Return (logged_in, client)."""
    c = Client(jid, password, mech)
    c.connect("127.0.0.1", port)
    ok = await asyncio.wait_for(c.started, TIMEOUT)
    return ok, c


def header_for(domain):
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>")


HEADER = header_for("localhost")


class Raw:
    """A bare XMPP stream over asyncio, for sending exactly the bytes we mean."""

    def __init__(self, reader, writer, domain="localhost"):
        self.reader, self.writer = reader, writer
        self.buffer = ""
        self.header = header_for(domain)

    @classmethod
    async def open(cls, port, host="127.0.0.1", domain="localhost"):
        r, w = await asyncio.open_connection(host, port)
        return cls(r, w, domain)

    @classmethod
    async def open_direct_tls(cls, port, alpn=("xmpp-client",), host="127.0.0.1", domain="localhost"):
        """TLS from the first byte (XEP-0368), offering `alpn`."""
        ctx = insecure_context()
        ctx.set_alpn_protocols(list(alpn))
        r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=domain)
        return cls(r, w, domain)

    async def send(self, data):
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def read_until(self, needle):
        while needle not in self.buffer:
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not chunk:
                raise AssertionError(f"stream closed before {needle!r}; got {self.buffer!r}")
            self.buffer += chunk.decode()
        i = self.buffer.index(needle) + len(needle)
        out, self.buffer = self.buffer[:i], self.buffer[i:]
        return out

    async def read_to_end(self):
        """Everything until the server closes the connection."""
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not chunk:
                out, self.buffer = self.buffer, ""
                return out
            self.buffer += chunk.decode(errors="replace")

    async def starttls(self):
        await self.send(self.header)
        await self.read_until("</stream:features>")
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.writer.start_tls(insecure_context())
        await self.send(self.header)
        return await self.read_until("</stream:features>")

    async def login_plain(self, user, password):
        await self.starttls()
        await self.send(plain_auth(user, password))
        await self.read_until("<success")
        await self.send(self.header)
        await self.read_until("</stream:features>")
        await self.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        await self.read_until("</iq>")

    def close(self):
        self.writer.close()


async def send_as(port, user, password, stanzas):
    """Log in as `user` on a raw stream, send `stanzas`, and return what came
    back until all were handled (stanzas are handled in order, and what they
    stored is durable before the ping that follows them is answered)."""
    raw = await Raw.open(port)
    await raw.login_plain(user, password)
    for s in stanzas:
        await raw.send(s)
    await raw.send("<iq type='get' id='handled'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = await raw.read_until("id='handled'")
    raw.close()
    return out


async def chat_and_settle(port, user_jid, password, to, bodies):
    """Log in as `user_jid`, send `bodies` as chat messages to `to`, then a
    ping: once it is answered the server has handled every message."""
    c = await login(port, user_jid, password)
    for b in bodies:
        c.send_message(mto=to, mbody=b, mtype="chat")
    await c.plugin["xep_0199"].ping(jid="localhost")
    c.disconnect()
