"""A phone-like client in a process of its own, so a test can freeze it
(SIGSTOP) and kill it as a phone's OS does: slixmpp with stream management
(XEP-0198). Like a phone app, it keeps its stream management state (the
resumption id and how many stanzas it handled) in a file after every
stanza it handles, and a new process resumes from it. Each message it
handles is printed as `message <stanza-id> <body>`; `ready` once the
session is up and resumable (new, with its presence sent and seen, or
resumed), `resumed` or `new` before that.

Usage: phone.py PORT JID PASSWORD STATE_FILE"""

import asyncio
import json
import os
import sys

from xmpp import Client


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def main(port, jid, password, path):
    c = Client(jid, password)
    c.register_plugin("xep_0198")
    sm = c.plugin["xep_0198"]
    state = load(path)
    if state.get("sm_id"):
        sm.sm_id = state["sm_id"]
        sm.handled = state["handled"]
    up = asyncio.get_event_loop().create_future()

    def keep():
        save(path, {"sm_id": sm.sm_id, "handled": sm.handled})

    def handled(stanza):
        keep()

    def message(msg):
        if msg["body"]:
            print("message", msg["stanza_id"]["id"], msg["body"], flush=True)
        keep()

    def session(kind):
        def on(_):
            keep()
            print(kind, flush=True)
        return on

    async def online(_):
        await c.get_roster()
        c.send_presence()
        # A round trip: the server has the presence; messages to the
        # account now come here.
        await c.plugin["xep_0199"].ping(jid="localhost")
        up.set_result(True)

    async def enabled(_):
        keep()
        await up
        if sm.sm_id:
            print("ready", flush=True)

    def resumed(_):
        keep()
        print("ready", flush=True)

    c.add_event_handler("message", message)
    c.add_event_handler("presence", handled)
    c.add_event_handler("session_resumed", session("resumed"))
    c.add_event_handler("session_resumed", resumed)
    c.add_event_handler("session_start", session("new"))
    c.add_event_handler("session_start", online)
    # Enabling may be answered after the session started.
    c.add_event_handler("sm_enabled", enabled)
    c.connect("127.0.0.1", port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    port, jid, password, path = sys.argv[1:5]
    asyncio.run(main(int(port), jid, password, path))
