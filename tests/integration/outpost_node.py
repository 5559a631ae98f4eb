"""Start and stop real outpost processes for the integration tests."""

import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("OUTPOST_BIN", ROOT / "target" / "debug" / "outpost"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, deadline_s=15.0, host="127.0.0.1"):
    """Return once the port accepts connections; fail if the process dies."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"outpost exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"outpost did not listen on {port}")


class Node:
    def __init__(self, workdir: Path, domain="localhost", **c2s):
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir
        self.domain = domain
        self.port = free_port()
        self.config = workdir / "outpost.toml"
        self.log_path = workdir / "outpost.log"
        settings = {"listen": f'"127.0.0.1:{self.port}"', **c2s}
        lines = [f'domain = "{domain}"', 'data_dir = "data"', 'log_level = "debug"', "[c2s]"]
        lines += [f"{k} = {v}" for k, v in settings.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc = None

    def append_config(self, text):
        with open(self.config, "a") as f:
            f.write(text)

    def enable_upload(self, **options):
        """Append an [upload] section: HTTPS on a free port, the default
        public_url (https://<domain>:<port>), and `options` as given (TOML
        values)."""
        self.upload_port = free_port()
        self.public_url = f"https://{self.domain}:{self.upload_port}"
        lines = ["[upload]", f'listen = "127.0.0.1:{self.upload_port}"'] + [f"{k} = {v}" for k, v in options.items()]
        self.append_config("\n".join(lines) + "\n")

    def fingerprint(self):
        out = self.cli("check").stdout
        return next(line.split()[-1] for line in out.splitlines() if "link key fingerprint" in line)

    def links(self):
        """{peer: (up, bytes_in, bytes_out)} from `outpost links`."""
        rows = {}
        for line in self.cli("links").stdout.splitlines()[1:]:
            peer, state, bin_, bout, *_ = line.split()
            rows[peer] = (state == "up", int(bin_), int(bout))
        return rows

    def last_in(self, peer):
        """The peer's last event applied here (`outpost links`, "last in")."""
        for line in self.cli("links").stdout.splitlines()[1:]:
            cols = line.split()
            if cols[0] == peer:
                return int(cols[5])
        raise KeyError(peer)

    def wait_link_up(self, peer, deadline_s=15.0, up=True):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.links().get(peer, (False,))[0] == up:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.domain}: link to {peer} did not go {'up' if up else 'down'}")

    def wait_link_down(self, peer, deadline_s=15.0):
        self.wait_link_up(peer, deadline_s, up=False)

    def start(self, nofile=None):
        """Start the node; `nofile` caps its open files (RLIMIT_NOFILE)."""
        log = open(self.log_path, "a")

        def limits():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen([str(BINARY), "run", "-c", str(self.config)], stdout=log, stderr=log,
                                     preexec_fn=limits)
        wait_for_port(self.port, self.proc)
        if getattr(self, "upload_port", None):
            wait_for_port(self.upload_port, self.proc, host=getattr(self, "upload_host", "127.0.0.1"))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def restart(self, hard=False):
        self.kill9() if hard else self.stop()
        self.start()

    def cli(self, *args, stdin=None, timeout=60):
        return subprocess.run([str(BINARY), *args, "-c", str(self.config)], input=stdin, capture_output=True,
                              text=True, timeout=timeout)

    def add_user(self, user, password):
        r = self.cli("user", "add", user, stdin=password + "\n")
        assert r.returncode == 0, r.stderr

    def log_text(self):
        return self.log_path.read_text()
