#!/usr/bin/env python3
"""chat: the interactive longconn chat client, in Python.

    python3 examples/python/chat.py URL        for example tcp://127.0.0.1:7070

Lines typed on stdin are sent; messages received are printed; connection
changes are shown in brackets. Ctrl-D, Ctrl-C or /quit closes cleanly,
flushing what is still queued. It shares a room of `longconn-server --mode chat` with the
C example (examples/c/chat.c), over any framing.
"""

from __future__ import annotations

import sys

import longconn
from longconn import EventKind


def show(event: longconn.Event) -> None:
    if event.kind == EventKind.MESSAGE and event.message is not None:
        print(event.message.text, flush=True)
    elif event.kind == EventKind.CONNECTED:
        print(f"[connected to {event.text}]", flush=True)
    elif event.kind == EventKind.DISCONNECTED and event.reason != longconn.DisconnectReason.CLOSED_BY_USER:
        print(f"[disconnected: {event.text}]", flush=True)
    elif event.kind == EventKind.RECONNECT_SCHEDULED:
        print(f"[reconnecting in {event.delay * 1000:.0f} ms, attempt {event.attempt}]", flush=True)
    elif event.kind == EventKind.ERROR:
        print(f"[error: {event.text}]", flush=True)


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} URL   (for example tcp://127.0.0.1:7070)", file=sys.stderr)
        return 2
    url = sys.argv[1]
    # Plain framings have no control frames: the bundled server answers "ping" with "pong".
    plain = ("ping", "pong") if "framing=" in url else None
    try:
        client = longconn.Client(
            url,
            heartbeat=(2.0, 6.0),
            reconnect=longconn.Reconnect(initial=0.5, max_delay=8.0),
            plain_heartbeat=plain,
        )
    except longconn.LongconnError as error:
        print(f"chat: {error}", file=sys.stderr)
        return 1
    with client:
        client.on_event(show)
        client.connect()
        try:
            for line in sys.stdin:
                line = line.rstrip("\r\n")
                if line == "/quit":
                    break
                if not line:
                    continue
                try:
                    client.send(line)
                except longconn.LongconnError as error:
                    print(f"chat: message not sent: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            # Ctrl-C: close as /quit does, flushing what is queued, without a traceback.
            print("[interrupted]", flush=True)
        unsent = client.close(timeout=3.0)
        if unsent:
            print(f"chat: {unsent} messages could not be delivered", file=sys.stderr)
    print("[closed]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
