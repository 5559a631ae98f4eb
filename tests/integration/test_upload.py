"""HTTP file upload (XEP-0363) and files across the links, with real
processes: slixmpp's own XEP-0363 plugin uploads, a raw HTTPS client (and
aiohttp) downloads. On one node: the upload and its bad inputs. On the
three-node network: a site's file read at HQ and at the other site through
each reader's own node, the uploader's link carrying it about once; a cut
in mid-transfer that costs neither the file nor a second copy; and links
to another node's file in a message rewritten to the reader's node."""

import asyncio
import http.client
import os
import secrets
import socket
import ssl
import time

import aiohttp
import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from federation import HQ_MUC, Federation
from outpost_node import Node
from upload_client import LoopbackResolver, download, plugin_https, put, request, trusting
from xmpp import TIMEOUT, login

NS_UPLOAD = "urn:xmpp:http:upload:0"
MAX_FILE = 1024 * 1024
QUOTA = 4 * MAX_FILE


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def upload_node(tmp_path):
    """One node (localhost) taking uploads of up to MAX_FILE bytes, QUOTA
    per account, at its default public_url https://localhost:<port>."""
    n = Node(tmp_path)
    n.enable_upload(max_file_bytes=MAX_FILE, user_quota_bytes=QUOTA)
    n.start()
    n.add_user("alice", "wonderland")
    n.add_user("bob", "bob-the-builder")
    yield n
    n.stop()


@pytest.fixture
def upload_network(tmp_path):
    """HQ and two sites, raleigh through a counting relay, every node
    taking uploads at its default public_url https://<domain>:<port>."""
    fed = Federation(tmp_path, relayed=True, upload={})
    fed.start()
    yield fed
    fed.stop()


async def uploader(port, jid, password):
    c = await login(port, jid, password)
    c.register_plugin("xep_0363")
    return c


async def upload(client, path, domain, ctx):
    """Upload with slixmpp's plugin, as a client app does: disco of the
    domain to find the service, a slot, the PUT. The GET URL."""
    with plugin_https(ctx):
        return await client.plugin["xep_0363"].upload_file(path, domain=JID(domain), timeout=TIMEOUT)


async def slot(client, service, filename, size, content_type="application/octet-stream"):
    """A slot: (put URL, get URL); IqError if refused."""
    iq = await client.plugin["xep_0363"].request_slot(JID(service), filename, size, content_type, timeout=TIMEOUT)
    s = iq["http_upload_slot"]
    return s["put"]["url"], s["get"]["url"]


async def refusal(client, service, filename, size):
    with pytest.raises(IqError) as e:
        await slot(client, service, filename, size)
    return e.value.iq


def path_of(url):
    """The path of a file URL: /files/<origin>/<id>/<name>."""
    rest = url.split("://", 1)[1]
    return rest[rest.index("/"):].split("?")[0]


def on_node(node, url):
    """`url`'s file as served by `node`: its public_url, the same path."""
    return node.public_url + path_of(url)


def wait_until(predicate, what, deadline_s=TIMEOUT):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- 1. slixmpp's XEP-0363 plugin on one node -----------------------------

def test_slixmpp_uploads_a_file_and_its_get_url_serves_the_same_bytes(upload_node, tmp_path):
    node = upload_node
    ctx = trusting(node)
    data = os.urandom(150_000)
    photo = tmp_path / "holiday photo.jpg"
    photo.write_bytes(data)

    async def scenario():
        alice = await uploader(node.port, "alice@localhost/phone", "wonderland")
        items = await alice.plugin["xep_0030"].get_items(jid="localhost", timeout=TIMEOUT)
        assert "upload.localhost" in {item[0] for item in items["disco_items"]["items"]}
        info = await alice.plugin["xep_0030"].get_info(jid="upload.localhost", timeout=TIMEOUT)
        assert NS_UPLOAD in info["disco_info"]["features"]

        url = await upload(alice, photo, "localhost", ctx)
        # The service was found by disco, and its form read.
        assert alice.plugin["xep_0363"].upload_service == JID("upload.localhost")
        assert alice.plugin["xep_0363"].max_file_size == MAX_FILE
        assert url.startswith(f"{node.public_url}/files/localhost/"), url
        assert url.endswith("/holiday%20photo.jpg"), url

        # Any HTTP client, here aiohttp with verification on.
        connector = aiohttp.TCPConnector(ssl=ctx, resolver=LoopbackResolver())
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(url) as r:
                assert r.status == 200
                assert await r.read() == data
                assert r.headers["Content-Type"] == "image/jpeg"  # what the plugin declared
                assert r.headers["Accept-Ranges"] == "bytes"
            async with session.head(url) as r:
                assert r.status == 200
                assert int(r.headers["Content-Length"]) == len(data)
                assert await r.read() == b""
        alice.disconnect()
    run(scenario())


# ---- 2. bad input on one node -----------------------------------------------

def test_bad_slot_requests_are_refused_with_the_xep_errors(upload_node):
    node = upload_node
    service = "upload.localhost"

    async def scenario():
        alice = await uploader(node.port, "alice@localhost/phone", "wonderland")
        # Larger than the node takes: not-acceptable, with the maximum.
        iq = await refusal(alice, service, "big.bin", MAX_FILE + 1)
        assert iq["error"]["condition"] == "not-acceptable"
        max_size = iq.xml.find(f"{{jabber:client}}error/{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size")
        assert max_size is not None and int(max_size.text) == MAX_FILE, str(iq)
        # A path in the name.
        for name in ("../../outpost.toml", "dir/name.txt", ".."):
            iq = await refusal(alice, service, name, 10)
            assert iq["error"]["condition"] == "bad-request", (name, str(iq))
        # Over the account's quota: slots count as soon as they are granted.
        for _ in range(QUOTA // MAX_FILE):
            await slot(alice, service, "part.bin", MAX_FILE)
        iq = await refusal(alice, service, "one-more.bin", 1)
        assert iq["error"]["condition"] == "resource-constraint", str(iq)
        # Too many slots waiting for their uploads (another account).
        bob = await uploader(node.port, "bob@localhost/phone", "bob-the-builder")
        granted = 0
        with pytest.raises(IqError) as e:
            while granted < 100:
                await slot(bob, service, f"note{granted}.txt", 1)
                granted += 1
        assert e.value.iq["error"]["condition"] == "resource-constraint", str(e.value.iq)
        assert 1 <= granted < 100
        alice.disconnect()
        bob.disconnect()
    run(scenario())


def test_bad_puts_and_gets_are_refused_and_ranges_are_served(upload_node):
    node = upload_node
    ctx = trusting(node)
    data = os.urandom(70_000)

    async def scenario():
        alice = await uploader(node.port, "alice@localhost/phone", "wonderland")
        put_url, get_url = await slot(alice, "upload.localhost", "log.txt", len(data), "text/plain")
        assert put_url.startswith(get_url + "?token="), (put_url, get_url)
        token = put_url.split("?token=")[1]

        # Wrong token: 403, and nothing is stored.
        wrong = f"{get_url}?token={secrets.token_hex(len(token) // 2)}"
        assert (await put(wrong, ctx, data)).status == 403
        assert (await put(get_url, ctx, data)).status == 403  # no token at all
        assert (await request(get_url, ctx)).status == 404
        # Content-Length not the slot's: 400, nothing stored.
        assert (await put(put_url, ctx, data[:-1])).status == 400
        assert (await put(put_url, ctx, data + b"x")).status == 400
        assert (await request(get_url, ctx)).status == 404

        # The slot still takes the right upload.
        assert (await put(put_url, ctx, data, "text/plain")).status == 201
        whole = await request(get_url, ctx)
        assert whole.status == 200 and whole.body == data
        assert whole.header("content-type") == "text/plain"
        assert whole.header("accept-ranges") == "bytes"
        # A second PUT to a used slot is refused and changes nothing.
        assert (await put(put_url, ctx, os.urandom(len(data)))).status == 403
        assert (await request(get_url, ctx)).body == data

        # Path tricks and unknown files: 404.
        path = path_of(get_url)
        origin_id = path.rsplit("/", 1)[0]  # /files/localhost/<id>
        tricks = [
            f"{origin_id}/..%2F..%2F..%2Foutpost.toml",
            f"{origin_id}/..%2f..%2fdata%2fcert.pem",
            f"{origin_id}/%2E%2E",
            f"{origin_id}/../../../outpost.toml",
            "/files/localhost/../../outpost.toml",
            "/files/..%2F..%2Foutpost.toml/" + "0" * 32 + "/x",
            "/files/localhost/" + "0" * 32 + "/log.txt",  # unknown id
            f"/files/localhost/{secrets.token_hex(16)}/log.txt",
            "/files/localhost/NOT-AN-ID/log.txt",
            "/outpost.toml",
        ]
        for target in tricks:
            r = await request(get_url, ctx, target=target)
            assert r.status == 404, (target, r.status, r.body[:100])
            assert data[:50] not in r.body
        # A PUT with a path trick and the real token does not land anywhere.
        r = await put(put_url, ctx, data, target=f"{origin_id}/..%2F..%2Fevil?token={token}")
        assert r.status == 404, r.status

        # Ranges.
        r = await request(get_url, ctx, headers={"Range": f"bytes={len(data)}-"})
        assert r.status == 416, r.status
        assert r.header("content-range") == f"bytes */{len(data)}"
        r = await request(get_url, ctx, headers={"Range": f"bytes={len(data) + 1000}-{len(data) + 2000}"})
        assert r.status == 416, r.status
        # A download cut at 30000 bytes resumes where it stopped.
        r = await request(get_url, ctx, headers={"Range": "bytes=30000-"})
        assert r.status == 206
        assert r.header("content-range") == f"bytes 30000-{len(data) - 1}/{len(data)}"
        assert int(r.header("content-length")) == len(data) - 30000
        assert r.body == data[30000:]
        r = await request(get_url, ctx, headers={"Range": "bytes=10-19"})
        assert (r.status, r.body) == (206, data[10:20])
        assert r.header("content-range") == f"bytes 10-19/{len(data)}"
        r = await request(get_url, ctx, method="HEAD", headers={"Range": "bytes=100-"})
        assert r.status == 206 and int(r.header("content-length")) == len(data) - 100
        alice.disconnect()
    run(scenario())


# ---- 3. a site's file read at HQ and at the other site ------------------------

def test_a_sites_file_is_read_everywhere_and_crosses_its_link_about_once(upload_network, tmp_path):
    net = upload_network
    ctx = trusting(net.hq, *net.sites)
    data = os.urandom(200_000)
    report = tmp_path / "report.pdf"
    report.write_bytes(data)

    async def scenario():
        wayne = await uploader(net.raleigh.port, "wayne@raleigh.example/laptop", "w-password")
        url = await upload(wayne, report, "raleigh.example", ctx)
        assert url.startswith(f"{net.raleigh.public_url}/files/raleigh.example/"), url
        assert (await request(url, ctx)).body == data  # at its own node

        before = net.relay.bytes
        durham_before = net.durham.links()[HQ_MUC][1]
        # Kevin at HQ and two readers at durham (the URL needs no account),
        # each through their own node's URL, at once; then both again.
        at_hq, at_durham = on_node(net.hq, url), on_node(net.durham, url)
        assert at_hq.startswith("https://fairfax.example:") and "/files/raleigh.example/" in at_hq
        first = await asyncio.gather(download(at_hq, ctx), download(at_durham, ctx), download(at_durham, ctx))
        second = await asyncio.gather(download(at_durham, ctx), download(at_durham, ctx))
        for got, responses in (*first, *second):
            assert got == data
            assert responses[-1].header("content-type") == "application/pdf"
        carried = net.relay.bytes - before
        assert len(data) <= carried <= 1.3 * len(data), \
            f"raleigh's link carried {carried} bytes for a {len(data)}-byte file read 5 times"
        # HQ relayed it to durham once too.
        into_durham = net.durham.links()[HQ_MUC][1] - durham_before
        assert len(data) <= into_durham <= 1.3 * len(data), f"durham took in {into_durham} bytes"
        # Kept at HQ: reading it there again costs raleigh's link nothing.
        before = net.relay.bytes
        assert (await request(at_hq, ctx)).body == data
        assert net.relay.bytes - before < 2_000
        wayne.disconnect()
    run(scenario())


# ---- 4. a cut in mid-transfer -------------------------------------------------

def test_a_cut_in_mid_transfer_costs_neither_the_file_nor_a_second_copy(upload_network, tmp_path):
    net = upload_network
    ctx = trusting(net.hq, *net.sites)
    data = os.urandom(200_000)
    video = tmp_path / "drill.mp4"
    video.write_bytes(data)

    async def scenario():
        wayne = await uploader(net.raleigh.port, "wayne@raleigh.example/laptop", "w-password")
        url = await upload(wayne, video, "raleigh.example", ctx)
        net.relay.rate = 40_000  # bytes per second each way: about 5 s for the file
        before, durham_before = net.relay.bytes, net.durham.links()[HQ_MUC][1]
        at_hq = on_node(net.hq, url)
        third = asyncio.Event()
        # Kevin's browser keeps its connection through the cut; Keith's
        # phone at HQ drops its own at a quarter and resumes with a Range.
        kevin = asyncio.create_task(download(at_hq, ctx, progress=lambda n: n >= len(data) // 3 and third.set()))
        phone = asyncio.create_task(download(at_hq, ctx, stop_after=len(data) // 4))
        # Dana at durham reads it through HQ, which is fetching it.
        dana = asyncio.create_task(download(on_node(net.durham, url), ctx))
        await asyncio.wait_for(third.wait(), TIMEOUT)
        assert not kevin.done(), "the transfer was over before the cut"
        net.relay.cut()
        await asyncio.to_thread(net.hq.wait_link_down, "raleigh.example")
        net.relay.restore()
        await asyncio.to_thread(net.raleigh.wait_link_up, HQ_MUC, 30)
        done = {}
        for name, task in (("dana", dana), ("kevin", kevin), ("phone", phone)):
            body, done[name] = await asyncio.wait_for(task, 90)
            assert body == data, f"{name}: {len(body)} bytes of {len(data)}, in {len(done[name])} responses"
        dropped, resumed = done["phone"][:2]
        assert not dropped.whole and len(dropped.body) >= len(data) // 4
        assert resumed.status == 206, resumed.status
        assert resumed.header("content-range") == f"bytes {len(dropped.body)}-{len(data) - 1}/{len(data)}"
        carried = net.relay.bytes - before
        assert carried <= 1.5 * len(data), f"the link carried {carried} bytes for a {len(data)}-byte file"
        into_durham = net.durham.links()[HQ_MUC][1] - durham_before
        assert into_durham <= 1.5 * len(data), f"durham took in {into_durham} bytes"
        wayne.disconnect()
    run(scenario())


# ---- 5. links in messages point at the reader's node --------------------------

def test_links_to_hq_files_reach_a_site_rewritten_and_small_files_come_eagerly(upload_network, tmp_path):
    net = upload_network
    ctx = trusting(net.hq, *net.sites)
    small, big = os.urandom(20_000), os.urandom(200_000)  # under and over eager_bytes (64 KiB)
    (tmp_path / "floor plan.png").write_bytes(small)
    (tmp_path / "survey.bin").write_bytes(big)
    room = JID(f"ops@{HQ_MUC}")

    def kept_at_raleigh(url, whole=False):
        """Whether raleigh keeps the file (or, unless `whole`, any part of
        it): data_dir/files/<origin>/<id>[.part]."""
        origin, file_id = path_of(url).split("/")[2:4]
        d = net.raleigh.dir / "data" / "files" / origin
        return (d / file_id).exists() or (not whole and (d / f"{file_id}.part").exists())

    async def scenario():
        kevin = await uploader(net.hq.port, "kevin@fairfax.example/desk", "k-password")
        kevin.register_plugin("xep_0066")
        wayne = await login(net.raleigh.port, "wayne@raleigh.example/phone", "w-password")
        small_url = await upload(kevin, tmp_path / "floor plan.png", "fairfax.example", ctx)
        big_url = await upload(kevin, tmp_path / "survey.bin", "fairfax.example", ctx)
        assert small_url.startswith(f"{net.hq.public_url}/files/fairfax.example/"), small_url
        before = net.relay.bytes

        kevin.send_message(mto=JID("wayne@raleigh.example"), mbody=f"the survey: {big_url}", mtype="chat")
        msg = kevin.make_message(mto=JID("wayne@raleigh.example"), mbody=f"the plan:\n{small_url} (new)", mtype="chat")
        msg["oob"]["url"] = small_url
        msg.send()
        await wayne.wait_for(lambda: len(wayne.bodies()) == 2, "kevin's messages")
        local_small, local_big = on_node(net.raleigh, small_url), on_node(net.raleigh, big_url)
        assert local_small.startswith(f"https://raleigh.example:{net.raleigh.upload_port}/files/fairfax.example/")
        assert wayne.bodies() == [f"the survey: {local_big}", f"the plan:\n{local_small} (new)"]
        oob = wayne.messages[-1].xml.find("{jabber:x:oob}x/{jabber:x:oob}url")
        assert oob is not None and oob.text == local_small, str(wayne.messages[-1])

        # The small file comes without anyone opening it; the large one
        # only when someone does.
        await asyncio.to_thread(wait_until, lambda: kept_at_raleigh(small_url, whole=True), "an eager fetch of the small file")
        assert not kept_at_raleigh(big_url)
        assert net.relay.bytes - before < len(small) + 20_000, net.relay.bytes - before

        # A room message is rewritten the same way.
        await kevin.plugin["xep_0045"].join_muc_wait(room, "Kevin", timeout=TIMEOUT)
        await kevin.plugin["xep_0045"].set_room_config(room, kevin.plugin["xep_0004"].make_form(ftype="submit"))
        await wayne.plugin["xep_0045"].join_muc_wait(room, "Wayne", maxstanzas=0, timeout=TIMEOUT)
        kevin.send_message(mto=room, mbody=f"plan: {small_url}", mtype="groupchat")
        await wayne.wait_for(lambda: f"plan: {local_small}" in wayne.bodies(), "the room message, rewritten")

        # Kept at raleigh: it reads with the link cut.
        net.relay.cut()
        await asyncio.to_thread(net.hq.wait_link_down, "raleigh.example")
        r = await request(local_small, ctx)
        assert (r.status, r.body) == (200, small)
        assert r.header("content-type") == "image/png"
        net.relay.restore()
        kevin.disconnect()
        wayne.disconnect()
    run(scenario())


# ---- edge cases: empty files, unknown domains, refused bodies -----------------

def test_an_empty_file_reads_at_the_other_nodes(upload_network):
    net = upload_network
    ctx = trusting(net.hq, *net.sites)

    async def scenario():
        wayne = await uploader(net.raleigh.port, "wayne@raleigh.example/laptop", "w-password")
        put_url, get_url = await slot(wayne, "upload.raleigh.example", "empty.txt", 0, "text/plain")
        assert (await put(put_url, ctx, b"", "text/plain")).status == 201
        r = await request(get_url, ctx)
        assert (r.status, r.body) == (200, b"")  # at its own node: fine
        for node in (net.hq, net.durham):
            r = await request(on_node(node, get_url), ctx)
            assert (r.status, r.body) == (200, b""), (node.domain, r.status, r.body)
        wayne.disconnect()
    run(scenario())


def test_a_file_of_a_domain_outside_the_network_is_not_found(upload_node):
    ctx = trusting(upload_node)
    url = f"{upload_node.public_url}/files/elsewhere.example/{secrets.token_hex(16)}/x.bin"
    r = run(request(url, ctx))
    assert r.status == 404, (r.status, r.body)


def test_a_refused_put_is_answered_to_a_client_that_sends_its_body_first(upload_node):
    ctx = trusting(upload_node)
    data = os.urandom(MAX_FILE)

    async def a_slot():
        alice = await uploader(upload_node.port, "alice@localhost/phone", "wonderland")
        put_url, _ = await slot(alice, "upload.localhost", "f.bin", len(data))
        alice.disconnect()
        return put_url

    put_url = run(a_slot())
    target = put_url.split("?token=")[0].split(f":{upload_node.upload_port}", 1)[1]
    statuses = []
    for _ in range(10):
        c = http.client.HTTPSConnection("localhost", upload_node.upload_port, context=ctx, timeout=TIMEOUT)
        try:
            c.request("PUT", f"{target}?token={secrets.token_hex(16)}", body=data)
            statuses.append(c.getresponse().status)
        except (OSError, http.client.HTTPException) as e:
            statuses.append(type(e).__name__)
        finally:
            c.close()
    assert statuses == [403] * 10, statuses


def test_pipelined_requests_are_each_answered_and_a_body_where_none_belongs_is_refused(upload_node):
    """Two requests in one write get two answers; an OPTIONS with a body
    is refused rather than its body read as the next request."""
    ctx = trusting(upload_node)
    port = upload_node.upload_port

    def exchange(raw):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as tcp:
            with ctx.wrap_socket(tcp, server_hostname="localhost") as tls:
                tls.sendall(raw)
                got = b""
                while True:
                    try:
                        chunk = tls.recv(65536)
                    except (ssl.SSLError, OSError):
                        break
                    if not chunk:
                        break
                    got += chunk
                return got

    two = b"OPTIONS /files/x HTTP/1.1\r\nHost: localhost\r\n\r\n" \
          b"OPTIONS /files/y HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    assert exchange(two).count(b"HTTP/1.1 204") == 2
    smuggled = b"OPTIONS /files/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\r\n" \
               b"GET /files/y HTTP/1.1\r\nHost: localhost\r\n\r\n"
    answers = exchange(smuggled)
    assert answers.startswith(b"HTTP/1.1 400") and answers.count(b"HTTP/1.1") == 1, answers
