"""HTTP file upload (XEP-0363) and files across the links, with real
processes: slixmpp's own XEP-0363 plugin uploads, a raw HTTPS client (and
aiohttp) downloads. On one node: the upload and its bad inputs. On the
three-node network: a site's file read at HQ and at the other site through
each reader's own node, the uploader's link carrying it about once; a cut
in mid-transfer that costs neither the file nor a second copy; and links
to another node's file in a message rewritten to the reader's node."""

import asyncio
import os
import secrets
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
    taking uploads; durham has a second user, dave."""
    fed = Federation(tmp_path, relayed=True, upload={})
    fed.start()
    fed.durham.add_user("dave", "v-password")
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
        return await client["xep_0363"].upload_file(path, domain=JID(domain), timeout=TIMEOUT)


async def slot(client, service, filename, size, content_type="application/octet-stream"):
    """A slot (put URL, get URL), or the IqError that refused it."""
    iq = await client["xep_0363"].request_slot(JID(service), filename, size, content_type, timeout=TIMEOUT)
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
        items = await alice["xep_0030"].get_items(jid="localhost", timeout=TIMEOUT)
        assert "upload.localhost" in {item[0] for item in items["disco_items"]["items"]}
        info = await alice["xep_0030"].get_info(jid="upload.localhost", timeout=TIMEOUT)
        assert NS_UPLOAD in info["disco_info"]["features"]

        url = await upload(alice, photo, "localhost", ctx)
        # The service was found by disco, and its form read.
        assert alice["xep_0363"].upload_service == JID("upload.localhost")
        assert alice["xep_0363"].max_file_size == MAX_FILE
        assert url.startswith(f"{node.public_url}/files/localhost/"), url
        assert url.endswith("/holiday%20photo.jpg"), url

        # Any HTTP client, here aiohttp with verification on.
        connector = aiohttp.TCPConnector(ssl=ctx, resolver=LoopbackResolver())
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(url) as r:
                assert r.status == 200
                assert await r.read() == data
                assert r.headers["Content-Type"] == "image/jpeg"  # what the plugin declared
                assert r.headers["Accept-Ranges"] == "bytes"
            async with http.head(url) as r:
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
        # Kevin at HQ, Dana and Dave at durham, each through their own
        # node's URL, at once; then Dana and Dave again.
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
        before = net.relay.bytes
        at_hq = on_node(net.hq, url)
        third = asyncio.Event()
        # Kevin's browser keeps its connection through the cut; Keith's
        # phone at HQ drops its own at a quarter and resumes with a Range.
        kevin = asyncio.create_task(download(at_hq, ctx, progress=lambda n: n >= len(data) // 3 and third.set()))
        phone = asyncio.create_task(download(at_hq, ctx, stop_after=len(data) // 4))
        await asyncio.wait_for(third.wait(), TIMEOUT)
        assert not kevin.done(), "the transfer was over before the cut"
        net.relay.cut()
        await asyncio.to_thread(net.hq.wait_link_down, "raleigh.example")
        net.relay.restore()
        await asyncio.to_thread(net.raleigh.wait_link_up, HQ_MUC, 30)
        for task in (kevin, phone):
            body, responses = await asyncio.wait_for(task, 90)
            assert body == data, f"{len(body)} bytes of {len(data)}, in {len(responses)} responses"
        dropped, resumed = responses[0], responses[1]
        assert not dropped.whole and len(dropped.body) >= len(data) // 4
        assert resumed.status == 206, resumed.status
        assert resumed.header("content-range") == f"bytes {len(dropped.body)}-{len(data) - 1}/{len(data)}"
        carried = net.relay.bytes - before
        assert carried <= 1.5 * len(data), f"the link carried {carried} bytes for a {len(data)}-byte file"
        wayne.disconnect()
    run(scenario())


# ---- 5. links in messages point at the reader's node --------------------------

def test_a_link_to_an_hq_file_reaches_a_site_rewritten_and_small_files_come_eagerly(upload_network, tmp_path):
    net = upload_network
    ctx = trusting(net.hq, *net.sites)
    data = os.urandom(20_000)  # under eager_bytes (64 KiB)
    plan = tmp_path / "floor plan.png"
    plan.write_bytes(data)

    async def scenario():
        kevin = await uploader(net.hq.port, "kevin@fairfax.example/desk", "k-password")
        kevin.register_plugin("xep_0066")
        wayne = await login(net.raleigh.port, "wayne@raleigh.example/phone", "w-password")
        url = await upload(kevin, plan, "fairfax.example", ctx)
        assert url.startswith(f"{net.hq.public_url}/files/fairfax.example/"), url
        msg = kevin.make_message(mto=JID("wayne@raleigh.example"), mbody=f"the plan:\n{url} (new)", mtype="chat")
        msg["oob"]["url"] = url
        msg.send()
        await wayne.wait_for(lambda: wayne.bodies(), "kevin's message")
        got = wayne.messages[-1]
        local = on_node(net.raleigh, url)
        assert local.startswith(f"https://raleigh.example:{net.raleigh.upload_port}/files/fairfax.example/")
        assert got["body"] == f"the plan:\n{local} (new)", got["body"]
        oob = got.xml.find("{jabber:x:oob}x/{jabber:x:oob}url")
        assert oob is not None and oob.text == local, str(got)
        # Small: raleigh fetched it without anyone opening it, so it reads
        # with the link cut.
        key = path_of(url).split("/")[2:4]  # fairfax.example, <id>
        cached = net.raleigh.dir / "data" / "files" / key[0] / key[1]
        await asyncio.to_thread(wait_until, cached.exists, f"{cached} (an eager fetch)")
        net.relay.cut()
        await asyncio.to_thread(net.hq.wait_link_down, "raleigh.example")
        r = await request(local, ctx)
        assert (r.status, r.body) == (200, data)
        assert r.header("content-type") == "image/png"
        net.relay.restore()
        kevin.disconnect()
        wayne.disconnect()
    run(scenario())
