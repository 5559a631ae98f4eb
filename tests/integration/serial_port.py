"""A pseudo-terminal standing in for a serial cable: the node opens the
device end by path, the test talks on the other end."""

import os
import re
import select
import time
import tty


class PtyCable:
    def __init__(self):
        self.master, self._device = os.openpty()
        # The test's end is raw too: no echo or line editing of its own.
        tty.setraw(self.master)
        self.device = os.ttyname(self._device)
        self.seen = b""

    def send(self, data: bytes):
        os.write(self.master, data)

    def line(self, text: str):
        self.send(text.encode() + b"\r")

    def expect(self, pattern: bytes, timeout=15.0):
        """Wait until `pattern` (a regex) appears in what arrived since the
        last match; returns everything up to and including it."""
        end = time.monotonic() + timeout
        regex = re.compile(pattern, re.S)
        while True:
            m = regex.search(self.seen)
            if m:
                got, self.seen = self.seen[: m.end()], self.seen[m.end():]
                return got
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{pattern!r} not seen; got {self.seen!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    # EIO: nobody holds the device end (the node restarts).
                    time.sleep(0.05)

    def command(self, text: str, timeout=15.0) -> str:
        """Type a command; return its answer (up to OK or ERR)."""
        self.line(text)
        out = self.expect(rb"\r\n(OK|ERR [^\r]*)\r\n", timeout)
        self.expect(rb"outpost> ", timeout)
        return out.decode(errors="replace")

    def close(self):
        os.close(self.master)
        os.close(self._device)
