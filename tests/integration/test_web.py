"""The local admin page, in headless Chromium (a phone-sized screen) and
with raw requests for the bad input."""

import asyncio
import os
import http.client
import socket
import ssl
import urllib.parse
from pathlib import Path

import pytest

from browser import CHROMIUM, Browser
from outpost_node import ROOT, Node, free_port, wait_for_port
from xmpp import try_login

ARTIFACTS = ROOT / "target" / "test-artifacts"
FPR = "K1b4sOl5ChbtKVh1SZ2NtOXsAfdxNUQpx4LD7gy4EPE="


@pytest.fixture
def web_node(tmp_path):
    n = Node(tmp_path)
    n.web_port = free_port()
    n.append_config(f'[admin]\nhttp = "127.0.0.1:{n.web_port}"\n')
    n.start()
    wait_for_port(n.web_port, n.proc)
    yield n
    n.stop()


def user_can_log_in(node, user, password):
    async def attempt():
        ok, c = await try_login(node.port, f"{user}@localhost", password)
        c.disconnect()
        return ok
    return asyncio.run(attempt())


# Skipped on a workstation without chromium; in CI (OUTPOST_CI=1) it must run.
@pytest.mark.skipif(not CHROMIUM and not os.environ.get("OUTPOST_CI"),
                    reason="needs Debian's chromium (.ci/run installs it)")
def test_first_run_login_change_settings_and_see_them_take_effect(web_node):
    node = web_node
    base = f"https://127.0.0.1:{node.web_port}"
    b = Browser()
    try:
        b.goto(base + "/")
        assert b.url() == base + "/setup"
        b.submit("form[action='/setup']", password="hq-admin-1", repeat="hq-admin-1")
        assert b.url() == base + "/"
        page = b.text()
        assert "Outpost: localhost" in page
        assert node.fingerprint() in page

        # A user added on the page can log in at once.
        b.submit("form:has(input[value=user_add])", user="erin", password="3rin-pw")
        assert "OK user erin added" in b.text()
        assert user_can_log_in(node, "erin", "3rin-pw")

        # A peer added on the page is saved, and in force after a restart.
        b.submit("form:has(input[value=peer_add])", domain="far.example", fingerprint=FPR)
        assert "takes effect after a restart" in b.text()
        assert 'domain = "far.example"' in node.config.read_text()
        assert "Saved settings differ" in b.text()
        # A bad setting is refused with the reason, and nothing is saved.
        before = node.config.read_text()
        b.submit("form:has(input[value=config_set]):has(input[name=key]:not([type=hidden]))",
                 key="domain", value="not a domain")
        assert "Error:" in b.text() and "invalid domain" in b.text()
        assert node.config.read_text() == before

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.screenshot(ARTIFACTS / "admin-page-phone.png")
        # The page fits a phone screen: nothing wider than the viewport.
        assert b.js("document.documentElement.scrollWidth") <= 390

        pid = node.proc.pid
        b.submit("form:has(input[value=restart])")
        wait_for_port(node.port, node.proc, deadline_s=30)
        assert node.proc.pid == pid
        # Sessions do not survive a restart: log in again.
        wait_for_port(node.web_port, node.proc)
        b.goto(base + "/")
        assert b.url() == base + "/login"
        b.submit("form[action='/login']", password="hq-admin-1")
        links = b.js("document.getElementById('links').innerText")
        assert "far.example" in links and "down" in links and FPR in links
        assert "Saved settings differ" not in b.text()
    finally:
        b.close()


def https(node):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", node.web_port, context=ctx, timeout=15)


def request(node, method, path, body=None, headers=None):
    c = https(node)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def form_session(node, path):
    """Open a session the way a browser does: load the form, keep cookie and token."""
    r, body = request(node, "GET", path)
    cookie = r.getheader("Set-Cookie").split(";")[0]
    csrf = body.decode().split('name=csrf value="')[1].split('"')[0]
    return cookie, csrf


def post(node, path, cookie, fields):
    body = urllib.parse.urlencode(fields)
    return request(node, "POST", path, body, {
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})


def raw(node, data: bytes) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", node.web_port), timeout=15) as s:
        with ctx.wrap_socket(s) as t:
            t.sendall(data)
            out = b""
            while chunk := t.recv(4096):
                out += chunk
            return out


def test_bad_requests_get_the_right_status_and_change_nothing(web_node):
    node = web_node
    cookie, csrf = form_session(node, "/setup")
    r, _ = post(node, "/setup", cookie, {"csrf": csrf, "password": "pw-1", "repeat": "pw-1"})
    assert r.status == 303
    before_config = node.config.read_text()

    # Wrong passwords: refused, then throttled.
    cookie, csrf = form_session(node, "/login")
    statuses = [post(node, "/login", cookie, {"csrf": csrf, "password": "guess"})[0].status for _ in range(4)]
    assert statuses[:3] == [403, 403, 403] and statuses[3] == 429, statuses

    # The right password, once the throttle's wait is over (a refused
    # attempt does not count as a failure, so asking again is harmless).
    cookie, csrf = form_session(node, "/login")
    while (r := post(node, "/login", cookie, {"csrf": csrf, "password": "pw-1"})[0]).status == 429:
        assert int(r.getheader("Retry-After")) <= 1
    assert r.status == 303
    cookie = r.getheader("Set-Cookie").split(";")[0]
    assert "Secure" in r.getheader("Set-Cookie") and "HttpOnly" in r.getheader("Set-Cookie")
    r, body = request(node, "GET", "/", headers={"Cookie": cookie})
    csrf = body.decode().split('name=csrf value="')[1].split('"')[0]

    # Missing or wrong CSRF token: 403 and no user.
    for fields in ({"op": "user_add", "user": "mallory", "password": "x"},
                   {"op": "user_add", "user": "mallory", "password": "x", "csrf": "forged"}):
        assert post(node, "/action", cookie, fields)[0].status == 403
    # Oversize and malformed requests.
    assert raw(node, b"POST /action HTTP/1.1\r\nContent-Length: 999999\r\n\r\n").startswith(b"HTTP/1.1 413")
    assert raw(node, b"BLAH\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(node, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n").startswith(b"HTTP/1.1 431")
    assert post(node, "/action", cookie, {"csrf": csrf, "op": "drop_tables"})[0].status == 400
    r, _ = request(node, "POST", "/action", "csrf=%zz", {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400
    assert request(node, "DELETE", "/")[0].status == 405
    assert request(node, "GET", "/nothing-here")[0].status == 404
    # Plain HTTP is sent to HTTPS.
    with socket.create_connection(("127.0.0.1", node.web_port), timeout=15) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{node.web_port}\r\n\r\n".encode())
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 301") and f"https://127.0.0.1:{node.web_port}/".encode() in answer

    assert "mallory" not in node.cli("user", "list").stdout
    assert node.config.read_text() == before_config
    # The page still works.
    assert post(node, "/action", cookie, {"csrf": csrf, "op": "user_add", "user": "grace", "password": "gr4ce"})[0].status == 303
    assert "grace" in node.cli("user", "list").stdout
