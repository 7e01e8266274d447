"""The asyncio API against the real server: async with, aconnect, asend
with backpressure, aclose that never blocks the loop, and async for that
ends as soon as the client closes, from any task or thread."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

import longconn

FAST = longconn.Reconnect(initial=0.05, max_delay=0.4)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_async_with_aconnect_asend_and_async_for(echo_server):
    async def main():
        async with longconn.Client(echo_server.url()) as client:
            await client.aconnect(timeout=10)
            for i in range(100):
                await client.asend(f"m{i}")
            got = []
            async for message in client:
                got.append(message.text)
                if len(got) == 100:
                    break
            assert got == [f"m{i}" for i in range(100)]
        assert client.closed

    run(main())


def test_async_for_ends_at_once_when_another_task_closes(echo_server):
    async def main():
        client = longconn.Client(echo_server.url())
        await client.aconnect()
        received = []

        async def reader():
            async for message in client:
                received.append(message)

        task = asyncio.create_task(reader())
        await client.asend("one")
        while not received:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await client.aclose(timeout=2)
        await asyncio.wait_for(task, 3.0)  # ends, instead of waiting forever
        return time.monotonic() - started

    # Well under the close's own 2 s deadline plus the reader's wait.
    assert run(main()) < 3.0


def test_async_for_ends_when_a_thread_closes(echo_server):
    async def main():
        client = longconn.Client(echo_server.url())
        assert await client.connect() is client  # connect() is awaitable too
        assert client.state == longconn.State.CONNECTED
        closer = threading.Timer(0.2, client.close)
        closer.start()
        async for _ in client:
            pass
        closer.join()
        assert client.closed

    run(main())


def test_aclose_keeps_the_loop_running_while_it_flushes(server_factory):
    server = server_factory("sink")

    async def main():
        client = longconn.Client(server.url(), reconnect=FAST, heartbeat=None)
        await client.aconnect()
        server.signal(signal.SIGSTOP)  # acknowledgements stop: close waits for its deadline
        await client.asend("never acknowledged")
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        unsent = await client.aclose(timeout=1.0)
        tick_task.cancel()
        server.signal(signal.SIGCONT)
        return unsent, ticks

    unsent, ticks = run(main())
    assert unsent == 1, "the unacknowledged message is reported"
    assert ticks >= 10, f"the loop ran during the close ({ticks} ticks)"


def test_asend_waits_for_room_instead_of_failing(server_factory):
    server = server_factory("sink")

    async def main():
        client = longconn.Client(server.url(), outbox=(2, 1 << 20), reconnect=FAST)
        await client.aconnect()
        server.signal(signal.SIGSTOP)
        await client.asend("a")
        await client.asend("b")
        with pytest.raises(longconn.QueueFullError):
            await client.asend("c", timeout=0.2)
        waiting = asyncio.create_task(client.asend("c"))
        await asyncio.sleep(0.2)
        assert not waiting.done(), "a full outbox is waited on"
        server.signal(signal.SIGCONT)
        await asyncio.wait_for(waiting, 10)
        assert await client.aclose() == 0

    run(main())


def test_aconnect_times_out_without_a_server():
    async def main():
        client = longconn.Client("tcp://127.0.0.1:9", reconnect=FAST)
        with pytest.raises(TimeoutError):
            await client.aconnect(timeout=0.5)
        await client.aclose()

    run(main())


def test_the_asyncio_chat_example_sends_receives_and_closes(echo_server):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "python" / "chat_async.py"
    done = subprocess.run(
        [sys.executable, str(example), echo_server.url()],
        input="hello from asyncio\n/quit\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "hello from asyncio" in lines and lines[-1] == "[closed]", done.stdout
