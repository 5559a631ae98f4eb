"""HTTPS for the upload tests: a raw HTTP/1.1 client that sends exactly
the request it is given (no URL normalisation, any Content-Length) and
reads the response as it comes, and slixmpp's XEP-0363 plugin pointed at
the nodes. Every node's host name is reached on loopback, and its
self-signed certificate (data_dir/cert.pem) is trusted for that name:
verification stays on, host name included."""

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
import slixmpp.plugins.xep_0363.http_upload as http_upload

TIMEOUT = 30


def trusting(*nodes):
    """An SSL context that trusts the nodes' self-signed certificates (and
    checks host names against them)."""
    ctx = ssl.create_default_context()
    for n in nodes:
        ctx.load_verify_locations(cafile=str(n.dir / "data" / "cert.pem"))
    return ctx


class LoopbackResolver(AbstractResolver):
    """Every node's domain (fairfax.example, …) is on this machine."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


@contextlib.contextmanager
def plugin_https(ctx):
    """slixmpp's XEP-0363 plugin makes its own aiohttp session with
    aiohttp's defaults; give it one that resolves the nodes' names to
    loopback and trusts their certificates. The plugin's code runs as is."""
    original = http_upload.ClientSession

    def session(**kw):
        connector = aiohttp.TCPConnector(ssl=ctx, resolver=LoopbackResolver())
        return original(connector=connector, **kw)

    http_upload.ClientSession = session
    try:
        yield
    finally:
        http_upload.ClientSession = original


@dataclass
class Response:
    status: int
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    # False when the connection closed before Content-Length bytes came.
    whole: bool = True

    def header(self, name):
        return self.headers.get(name.lower())


def split(url):
    """(host, port, target) of an https URL; the target as written."""
    parts = urlsplit(url)
    assert parts.scheme == "https", url
    target = url[url.index("/", len("https://")):]
    return parts.hostname, parts.port or 443, target


async def request(url, ctx, method="GET", headers=None, body=b"", target=None, progress=None, stop_after=None,
                  address="127.0.0.1"):
    """One request on a new connection; `target` overrides the URL's path
    and query byte for byte. `progress(n)` is called as body bytes arrive.
    A connection closed mid-body gives a Response with whole=False; so does
    one this client closes after `stop_after` bytes of body (a phone that
    lost its Wi-Fi). `address` is where the URL's host name resolves to
    (what a hosts file or the site's DNS says)."""
    host, port, url_target = split(url)
    target = target or url_target
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(address, port, ssl=ctx, server_hostname=host), TIMEOUT)
    try:
        head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        hdrs = dict(headers or {})
        if method == "PUT" and "Content-Length" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        head += [f"{k}: {v}" for k, v in hdrs.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        status_line = b""
        if hdrs.get("Expect") == "100-continue":
            # The body waits for the server's go-ahead (RFC 9110 §10.1.1):
            # a refusal comes first and no body is sent into a closed socket.
            status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            if status_line.split()[1:2] == [b"100"]:
                while (await asyncio.wait_for(reader.readline(), TIMEOUT)).strip():
                    pass
                status_line = b""
            else:
                body = b""
        if not status_line:
            writer.write(body)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert status_line, f"{method} {target}: the connection closed with no response"
        status = int(status_line.split()[1])
        resp_headers = {}
        while True:
            line = (await asyncio.wait_for(reader.readline(), TIMEOUT)).decode().rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        resp = Response(status, resp_headers)
        if method == "HEAD":
            return resp
        want = int(resp_headers.get("content-length", "0"))
        chunks, got = [], 0
        while got < want:
            try:
                chunk = await asyncio.wait_for(reader.read(min(65536, want - got)), TIMEOUT)
            except (ConnectionError, ssl.SSLError):
                chunk = b""
            if not chunk:
                resp.whole = False
                break
            chunks.append(chunk)
            got += len(chunk)
            if progress:
                progress(got)
            if stop_after is not None and got >= stop_after and got < want:
                resp.whole = False
                break
        resp.body = b"".join(chunks)
        return resp
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def download(url, ctx, progress=None, attempts=50, stop_after=None):
    """The whole file at `url`, resuming with a Range request wherever a
    response stops short, as a browser or a phone would; with `stop_after`,
    the first response is dropped after that many bytes. Returns (bytes,
    responses)."""
    data, responses = b"", []
    for attempt in range(attempts):
        headers = {"Range": f"bytes={len(data)}-"} if data else {}
        base = len(data)
        try:
            resp = await request(url, ctx, headers=headers, stop_after=stop_after if attempt == 0 else None,
                                 progress=progress and (lambda n: progress(base + n)))
        except ConnectionRefusedError:
            # The node is restarting: try again shortly, as a phone would.
            await asyncio.sleep(0.2)
            continue
        responses.append(resp)
        assert resp.status in (200, 206), (resp.status, resp.body[:200])
        data = resp.body if resp.status == 200 else data + resp.body
        if resp.whole:
            return data, responses
    raise AssertionError(f"{url}: still short after {attempts} tries ({len(data)} bytes)")


async def put(url, ctx, body, content_type="application/octet-stream", **kw):
    """A PUT that waits for `100 Continue` before its body."""
    headers = {"Content-Type": content_type, "Expect": "100-continue", **kw.pop("headers", {})}
    return await request(url, ctx, method="PUT", body=body, headers=headers, **kw)
