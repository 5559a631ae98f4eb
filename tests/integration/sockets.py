"""Raw TCP helpers for attacks on a node: idle connections from an address."""

import resource
import socket


def raise_own_file_limit(n):
    """Let this process hold `n` open files (within its hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, n), hard), hard))


def idle_sockets(port, n, source="127.0.0.2"):
    """Open n TCP connections from `source` and keep them idle."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks
