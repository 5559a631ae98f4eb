"""The local admin page, in headless Chromium (a phone-sized screen) and
with raw requests for the bad input."""

import asyncio
import os
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from browser import CHROMIUM, Browser
from outpost_node import ROOT, Node, free_port, wait_for_port
from xmpp import try_login

ARTIFACTS = ROOT / "target" / "test-artifacts"
FPR = "K1b4sOl5ChbtKVh1SZ2NtOXsAfdxNUQpx4LD7gy4EPE="
# Another address on this host (all of 127/8 is loopback on Linux): the
# attacker's, while the admin's browser and requests come from 127.0.0.1.
ATTACKER = "127.0.0.2"


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
        # The space the node uses, against its budgets.
        assert "Room archives: 0 messages, 0 of 67108864 bytes (0%)" in page, page
        assert "Offline messages: 0, 0 of 67108864 bytes" in page, page

        # A user added on the page can log in at once.
        b.submit("form:has(input[value=user_add])", user="erin", password="3rin-pass")
        assert "OK user erin added" in b.text()
        assert user_can_log_in(node, "erin", "3rin-pass")

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


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def https(node, source="127.0.0.1"):
    return http.client.HTTPSConnection("127.0.0.1", node.web_port, context=tls_context(),
                                       timeout=15, source_address=(source, 0))


def request(node, method, path, body=None, headers=None, source="127.0.0.1"):
    c = https(node, source)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def form_session(node, path, source="127.0.0.1"):
    """Open a session the way a browser does: load the form, keep cookie and token."""
    r, body = request(node, "GET", path, source=source)
    cookie = r.getheader("Set-Cookie").split(";")[0]
    csrf = body.decode().split('name=csrf value="')[1].split('"')[0]
    return cookie, csrf


def post(node, path, cookie, fields, source="127.0.0.1"):
    body = urllib.parse.urlencode(fields)
    return request(node, "POST", path, body, {
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}, source=source)


def tcp_from(node, source):
    """A TCP connection to the page from `source` that sends nothing."""
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", node.web_port))
    return s


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
    r, body = post(node, "/setup", cookie, {"csrf": csrf, "password": "pw-1", "repeat": "pw-1"})
    assert r.status == 200 and b"at least 8 characters" in body, body
    cookie, csrf = form_session(node, "/setup")
    r, _ = post(node, "/setup", cookie, {"csrf": csrf, "password": "admin-pw-1", "repeat": "admin-pw-1"})
    assert r.status == 303
    before_config = node.config.read_text()

    # Wrong passwords: refused, then throttled.
    cookie, csrf = form_session(node, "/login")
    statuses = [post(node, "/login", cookie, {"csrf": csrf, "password": "guess"})[0].status for _ in range(4)]
    assert statuses[:3] == [403, 403, 403] and statuses[3] == 429, statuses

    # The right password, once the throttle's wait is over (a refused
    # attempt does not count as a failure, so asking again is harmless).
    cookie, csrf = form_session(node, "/login")
    while (r := post(node, "/login", cookie, {"csrf": csrf, "password": "admin-pw-1"})[0]).status == 429:
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
    # Plain HTTP is sent to HTTPS; only HTTPS answers carry HSTS (RFC 6797 §7.2).
    with socket.create_connection(("127.0.0.1", node.web_port), timeout=15) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{node.web_port}\r\n\r\n".encode())
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 301") and f"https://127.0.0.1:{node.web_port}/".encode() in answer
    assert b"Strict-Transport-Security" not in answer
    for r, _ in (request(node, "GET", "/", headers={"Cookie": cookie}), request(node, "GET", "/nothing-here")):
        assert r.getheader("Strict-Transport-Security") == "max-age=31536000"

    assert "mallory" not in node.cli("user", "list").stdout
    assert node.config.read_text() == before_config
    # The page still works.
    assert post(node, "/action", cookie, {"csrf": csrf, "op": "user_add", "user": "grace", "password": "gr4ce-pass"})[0].status == 303
    assert "grace" in node.cli("user", "list").stdout


def hold_idle_connections(node, source):
    """Open more idle connections from `source` than the page once served in
    all (16), twice, as an attacker renewing them would (the second round
    takes any slot that came free meanwhile); return the ones still open once
    the server has seen them all."""
    held = []
    for _ in range(2):
        conns = [tcp_from(node, source) for _ in range(40)]
        waited, _ = closed_by_server(conns.pop(), time.monotonic())
        assert waited < 3, "the last one is over the cap and closed at once"
        held += conns
    return held


def test_idle_connections_from_one_address_do_not_keep_others_out(web_node):
    node = web_node
    idle = hold_idle_connections(node, ATTACKER)
    try:
        start = time.monotonic()
        r, body = request(node, "GET", "/setup")
        assert r.status == 200 and b"Outpost: first run" in body
        assert time.monotonic() - start < 3, "served promptly"
    finally:
        for s in idle:
            s.close()


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("OUTPOST_CI"),
                    reason="needs Debian's chromium (.ci/run installs it)")
def test_a_browser_gets_the_page_while_another_address_holds_idle_connections(web_node):
    node = web_node
    base = f"https://127.0.0.1:{node.web_port}"
    idle = hold_idle_connections(node, ATTACKER)
    b = Browser()
    try:
        b.goto(base + "/")
        assert b.url() == base + "/setup"
        assert "Outpost: first run" in b.text()
    finally:
        b.close()
        for s in idle:
            s.close()


def test_a_guesser_elsewhere_does_not_keep_the_admin_out(web_node):
    node = web_node
    cookie, csrf = form_session(node, "/setup")
    assert post(node, "/setup", cookie, {"csrf": csrf, "password": "admin-pw-1", "repeat": "admin-pw-1"})[0].status == 303

    answers = []  # the guesser's statuses
    changed = threading.Condition()
    stop = threading.Event()

    def guess():
        while not stop.is_set():
            cookie, csrf = form_session(node, "/login", source=ATTACKER)
            r, _ = post(node, "/login", cookie, {"csrf": csrf, "password": "guess"}, source=ATTACKER)
            with changed:
                answers.append(r.status)
                changed.notify_all()

    guesser = threading.Thread(target=guess)
    guesser.start()
    try:
        for _ in range(3):
            # The admin loads the form, the guesser goes on (and is held
            # back) meanwhile, then the admin sends the right password.
            cookie, csrf = form_session(node, "/login")
            with changed:
                seen = len(answers)
                assert changed.wait_for(lambda: len(answers) >= seen + 20 and 429 in answers[seen:], timeout=60)
            r, _ = post(node, "/login", cookie, {"csrf": csrf, "password": "admin-pw-1"})
            assert r.status == 303, "the right password gets in at its first try"
            authed = r.getheader("Set-Cookie").split(";")[0]
            r, body = request(node, "GET", "/", headers={"Cookie": authed})
            assert r.status == 200 and b"Outpost: localhost" in body
    finally:
        stop.set()
        guesser.join()
    assert answers.count(403) >= 3 and 429 in answers


def closed_by_server(sock, opened):
    """Seconds from `opened` until the server closes `sock`, and what it said before."""
    sock.settimeout(30)
    said = b""
    try:
        while chunk := sock.recv(4096):
            said += chunk
    except ConnectionResetError:
        pass
    return time.monotonic() - opened, said


def test_connections_that_stall_are_closed_within_their_deadline(web_node):
    node = web_node
    opened = time.monotonic()
    silent = tcp_from(node, ATTACKER)
    # A TLS record header and then nothing: the handshake stalls.
    stalled_handshake = tcp_from(node, ATTACKER)
    stalled_handshake.sendall(b"\x16\x03\x01")
    # Half a request over TLS.
    stalled_request = tls_context().wrap_socket(tcp_from(node, ATTACKER))
    stalled_request.sendall(b"GET / HTTP/1.1\r\n")
    try:
        waited, said = closed_by_server(silent, opened)
        assert waited < 5 + 2 and said == b"", "first byte: 5 s"
        waited, said = closed_by_server(stalled_handshake, opened)
        assert waited < 10 + 2 and said == b"", "TLS handshake: 10 s"
        waited, said = closed_by_server(stalled_request, opened)
        assert waited < 10 + 2 and said.startswith(b"HTTP/1.1 408"), "request: 10 s"
    finally:
        for s in (silent, stalled_handshake, stalled_request):
            s.close()
