#!/usr/bin/env python3
"""chat_async: the chat client under asyncio.

    python3 examples/python/chat_async.py URL        for example tcp://127.0.0.1:7070

One task prints what arrives (``async for`` over the client's events, woken
by the library's event descriptor); another reads stdin and sends each line
with ``await client.asend``. Ctrl-D, Ctrl-C or /quit closes with
``await client.aclose()``, flushing what is queued, and the printing task
ends with it.
"""

from __future__ import annotations

import asyncio
import sys

import longconn
from longconn import EventKind


async def show(client: longconn.Client) -> None:
    async for event in client.events_async():
        if event.kind == EventKind.MESSAGE and event.message is not None:
            print(event.message.text, flush=True)
        elif event.kind == EventKind.CONNECTED:
            guarantee = "acknowledged delivery" if event.acknowledged else "best effort"
            print(f"[connected to {event.text}: {guarantee}]", flush=True)
        elif event.kind == EventKind.DISCONNECTED and event.reason != longconn.DisconnectReason.CLOSED_BY_USER:
            print(f"[disconnected: {event.text}]", flush=True)
        elif event.kind == EventKind.RECONNECT_SCHEDULED:
            print(f"[reconnecting in {event.delay * 1000:.0f} ms, attempt {event.attempt}]", flush=True)


async def type_lines(client: longconn.Client) -> None:
    # stdin as an asyncio stream: no thread is left blocked in a read at exit.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode("utf-8", "replace")
        if not line or line.strip() == "/quit":
            return
        if line.strip():
            await client.asend(line.rstrip("\r\n"))


async def main(url: str) -> int:
    async with longconn.Client(url, heartbeat=(2.0, 6.0)) as client:
        client.connect()
        printer = asyncio.create_task(show(client))
        try:
            await type_lines(client)
        finally:
            await client.aclose(timeout=3.0)
            await printer
    print("[closed]", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} URL   (for example tcp://127.0.0.1:7070)", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(asyncio.run(main(sys.argv[1])))
    except KeyboardInterrupt:
        print("[interrupted]", flush=True)
        sys.exit(0)
