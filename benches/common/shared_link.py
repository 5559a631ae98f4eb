"""One shaped link between a site and HQ, shared by every TCP connection
that crosses it, as a serial modem's line is: a byte rate and a one-way
delay per direction, and a bounded queue in front of each direction's
line.

Each direction has one FIFO of segments (at most `segment` bytes each, read
from whichever connection had bytes, in the order they were read) holding
at most `queue` bytes. A connection's bytes are read only when the FIFO has
room for them, so a sender that has more to say than the line can carry
waits in its own socket buffer, as it would behind a full modem buffer
(here without loss: the queue stays full rather than saw-toothing as TCP's
window would over a dropping buffer). The line serialises the FIFO's head
at `rate` bytes a second, and each byte arrives `delay` seconds after its
last bit left. What is measured is TCP payload (TLS records included): TCP
and IP headers and acknowledgements are not modelled.

The link runs its own asyncio loop in a thread, so the clients' loop
cannot hold its clock back. Listening addresses are routes: connections
made to a route's address are carried to its target, and `toward` names the
side the target is on ("hq" or "site"): what the dialer sends goes that
way, the answers the other."""

import asyncio
import collections
import threading
import time

SLICE = 60  # bytes serialised per step: 50 ms at 1200 B/s


class Direction:
    def __init__(self, loop, rate, delay, queue, segment):
        self.loop, self.rate, self.delay, self.limit, self.segment = loop, rate, delay, queue, segment
        self.fifo = collections.deque()  # [writer, bytes or None (end of stream)]
        self.queued = 0
        self.bytes = 0
        self.max_queued = 0
        # How late the line's steps ran against its clock (the thread's own lag).
        self.max_late = 0.0
        self.admit = asyncio.Lock()  # FIFO among senders waiting for room
        self.room = asyncio.Event()
        self.work = asyncio.Event()

    async def put(self, writer, data):
        async with self.admit:
            while self.queued and self.queued + len(data) > self.limit:
                self.room.clear()
                await self.room.wait()
            self.fifo.append([writer, data])
            self.queued += len(data)
            self.bytes += len(data)
            self.max_queued = max(self.max_queued, self.queued)
            self.work.set()

    async def end(self, writer):
        """The sender closed: the other end is told once its bytes are through."""
        async with self.admit:
            self.fifo.append([writer, None])
            self.work.set()

    async def line(self):
        free = self.loop.time()
        while True:
            while not self.fifo:
                self.work.clear()
                await self.work.wait()
            head = self.fifo[0]
            writer, data = head
            if data is None:
                self.fifo.popleft()
                self.loop.call_at(max(free, self.loop.time()) + self.delay, _close, writer)
                continue
            piece = data[:SLICE]
            free = max(self.loop.time(), free) + len(piece) / self.rate
            await asyncio.sleep(free - self.loop.time())
            self.max_late = max(self.max_late, self.loop.time() - free)
            head[1] = data[len(piece):]
            if not head[1]:
                self.fifo.popleft()
            self.queued -= len(piece)
            self.room.set()
            self.loop.call_at(free + self.delay, _deliver, writer, piece)


def _deliver(writer, piece):
    if not writer.is_closing():
        writer.write(piece)


def _close(writer):
    if not writer.is_closing():
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()


class SharedLink:
    def __init__(self, rate=1200, delay=0.3, queue=4096, segment=512):
        self.rate, self.delay, self.queue, self.segment = rate, delay, queue, segment
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.servers = []
        self.writers = set()
        self.connections = collections.Counter()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.to = {side: Direction(self.loop, self.rate, self.delay, self.queue, self.segment)
                   for side in ("hq", "site")}
        self.lines = [self.loop.create_task(d.line()) for d in self.to.values()]
        self.ready.set()
        self.loop.run_forever()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def route(self, host, port, target, toward):
        """Carry connections made to host:port to `target` (host, port), on the `toward` side."""
        back = "site" if toward == "hq" else "hq"
        there, home = self.to[toward], self.to[back]

        async def handle(r, w):
            try:
                tr, tw = await asyncio.open_connection(*target)
            except OSError:
                w.close()
                return
            self.connections[(host, port)] += 1
            self.writers.update((w, tw))

            async def pump(src, dst, direction):
                try:
                    while data := await src.read(self.segment):
                        await direction.put(dst, data)
                except (OSError, asyncio.CancelledError):
                    pass
                await direction.end(dst)
            await asyncio.gather(pump(r, tw, there), pump(tr, w, home), return_exceptions=True)
            self.writers.difference_update((w, tw))

        async def serve():
            self.servers.append(await asyncio.start_server(handle, host, port, reuse_address=True))
        self._call(serve())

    def bytes(self):
        """(bytes toward HQ, bytes toward the site) so far."""
        return self.to["hq"].bytes, self.to["site"].bytes

    def queued(self):
        """(bytes queued toward HQ, toward the site) now."""
        return self.to["hq"].queued, self.to["site"].queued

    def reset_maxima(self):
        for d in self.to.values():
            d.max_queued, d.max_late = 0, 0.0

    def maxima(self):
        """{side: (most bytes queued, latest step in seconds)} since the last reset."""
        return {side: (d.max_queued, d.max_late) for side, d in self.to.items()}

    def quiet(self, seconds=1.0, limit=120.0):
        """Wait (blocking) until no byte has crossed for `seconds`."""
        last, since, end = self.bytes(), time.monotonic(), time.monotonic() + limit
        while time.monotonic() - since < seconds and time.monotonic() < end:
            time.sleep(0.05)
            if self.bytes() != last:
                last, since = self.bytes(), time.monotonic()

    def close(self):
        async def stop():
            for s in self.servers:
                s.close()
            for w in list(self.writers):
                w.close()
            for t in self.lines:
                t.cancel()
            await asyncio.gather(*self.lines, return_exceptions=True)
        try:
            self._call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
