"""A TCP relay between two nodes that a test controls: cut and restore the
link, throttle it (bytes per second), delay it, and count the bytes."""

import socket
import threading
import time


class Relay:
    def __init__(self, target_port, rate=0, delay=0.0):
        self.target = ("127.0.0.1", target_port)
        self.rate, self.delay = rate, delay
        self.bytes = 0
        self.up = True
        self._conns = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()  # A cut link refuses new connections too.
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(4096):
                with self._lock:
                    self.bytes += len(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Drop every connection now and refuse new ones until restore()."""
        self.up = False
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self._listener.close()
