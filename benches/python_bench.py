#!/usr/bin/env python3
"""Python benchmark: the longconn binding next to the PyPI websockets package.

    python3 benches/python_bench.py        (MESSAGES=, ROUND_TRIPS=, RUNS= change sizes)

Both clients run in this process against an echo server on 127.0.0.1 started
for the run: longconn against longconn-server (longconn protocol), websockets
against a websockets echo server in a subprocess (longconn-server has no
WebSocket listener yet). Measured: messages per second received (64-byte
messages pipelined through the echo server, until the last echo is in Python)
and round-trip latency with one message in flight. Each measurement runs RUNS
times, alternating; the table shows medians.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bindings/python/src"))
os.environ.setdefault("LONGCONN_LIBRARY", str(REPO / "target/release/liblongconn.so"))

import longconn  # noqa: E402
import websockets  # noqa: E402

MESSAGES = int(os.environ.get("MESSAGES", 200_000))
ROUND_TRIPS = int(os.environ.get("ROUND_TRIPS", 5_000))
RUNS = int(os.environ.get("RUNS", 3))
PAYLOAD = b"x" * 64

WS_SERVER = """
import asyncio, sys, websockets
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=2**20) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


def start_longconn_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(REPO / "target/release/longconn-server"), "--mode", "echo", "--quiet", "--threads", "1",
         "--length-port", "off", "--line-port", "off", "--ws-port", "off", "--longconn-port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    for line in proc.stdout:
        if line.startswith("listening longconn"):
            port = line.rsplit(":", 1)[1].strip()
        if line.startswith("ready"):
            return proc, f"tcp://127.0.0.1:{port}"
    raise RuntimeError("longconn-server did not start")


def start_ws_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", WS_SERVER], stdout=subprocess.PIPE, text=True)
    return proc, f"ws://127.0.0.1:{proc.stdout.readline().strip()}"


# -- longconn -------------------------------------------------------------------


def longconn_receive_callbacks(url: str) -> float:
    done = threading.Event()
    count = 0

    def on_message(_message: longconn.Message) -> None:
        nonlocal count
        count += 1
        if count == MESSAGES:
            done.set()

    with longconn.Client(url) as client:
        client.on_message(on_message)
        client.connect()
        start = time.perf_counter()
        for i in range(0, MESSAGES, 1000):
            _send_all(client, [PAYLOAD] * min(1000, MESSAGES - i))
        assert done.wait(120)
        return MESSAGES / (time.perf_counter() - start)


def longconn_receive_batches(url: str) -> float:
    with longconn.Client(url) as client:
        client.connect()
        start = time.perf_counter()
        sender = threading.Thread(target=lambda: [_send_all(client, [PAYLOAD] * 1000) for _ in range(MESSAGES // 1000)])
        sender.start()
        received = 0
        while received < MESSAGES:
            received += len(client.receive_many(4096, timeout=10.0))
        sender.join()
        return MESSAGES / (time.perf_counter() - start)


def _send_all(client: longconn.Client, messages: list) -> None:
    while messages:
        try:
            client.send_many(messages)
            return
        except longconn.QueueFullError as full:
            messages = messages[full.queued:]
            time.sleep(0.0005)


def longconn_round_trips(url: str) -> list[float]:
    with longconn.Client(url) as client:
        client.connect()
        samples = []
        for i in range(ROUND_TRIPS + 500):
            start = time.perf_counter()
            client.send(PAYLOAD)
            while True:
                event = client.poll(10.0)
                if event is not None and event.kind == longconn.EventKind.MESSAGE:
                    break
            if i >= 500:
                samples.append(time.perf_counter() - start)
        return samples


# -- websockets -------------------------------------------------------------------


def longconn_send(url: str) -> float:
    """Messages per second queued with the synchronous send()."""
    client = longconn.Client(url, outbox=(1 << 20, 256 << 20))
    client.connect()
    payload = b"x" * 64
    start = time.perf_counter()
    for _ in range(MESSAGES):
        client.send(payload)
    rate = MESSAGES / (time.perf_counter() - start)
    client.close(30)
    return rate


async def longconn_asend(url: str) -> float:
    """Messages per second queued with the awaitable asend()."""
    client = longconn.Client(url, outbox=(1 << 20, 256 << 20))
    await client.aconnect()
    payload = b"x" * 64
    start = time.perf_counter()
    for _ in range(MESSAGES):
        await client.asend(payload)
    rate = MESSAGES / (time.perf_counter() - start)
    await client.aclose(30)
    return rate


async def ws_receive(url: str) -> float:
    async with websockets.connect(url, max_size=2**20) as ws:
        start = time.perf_counter()

        async def send_all():
            for _ in range(MESSAGES):
                await ws.send(PAYLOAD)

        sender = asyncio.create_task(send_all())
        for _ in range(MESSAGES):
            await ws.recv()
        await sender
        return MESSAGES / (time.perf_counter() - start)


async def ws_round_trips(url: str) -> list[float]:
    async with websockets.connect(url) as ws:
        samples = []
        for i in range(ROUND_TRIPS + 500):
            start = time.perf_counter()
            await ws.send(PAYLOAD)
            await ws.recv()
            if i >= 500:
                samples.append(time.perf_counter() - start)
        return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[int((len(ordered) - 1) * p)]


def main() -> None:
    lc_proc, lc_url = start_longconn_server()
    ws_proc, ws_url = start_ws_server()
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    try:
        for _ in range(RUNS):
            add("ws_recv", asyncio.run(ws_receive(ws_url)))
            add("lc_recv_cb", longconn_receive_callbacks(lc_url))
            add("lc_recv_batch", longconn_receive_batches(lc_url))
            ws = asyncio.run(ws_round_trips(ws_url))
            lc = longconn_round_trips(lc_url)
            add("ws_p50", percentile(ws, 0.5) * 1e6)
            add("ws_p99", percentile(ws, 0.99) * 1e6)
            add("lc_p50", percentile(lc, 0.5) * 1e6)
            add("lc_p99", percentile(lc, 0.99) * 1e6)
            add("lc_send", longconn_send(lc_url))
            add("lc_asend", asyncio.run(longconn_asend(lc_url)))
    finally:
        lc_proc.kill()
        ws_proc.kill()

    m = {k: statistics.median(v) for k, v in results.items()}
    print(f"python benchmark: {MESSAGES} x 64-byte messages, {ROUND_TRIPS} round trips, {RUNS} runs; medians")
    print(f"python {sys.version.split()[0]}, websockets {websockets.__version__}, longconn {longconn.library_version()}")
    print()
    print(f"{'':<40} {'websockets':>12} {'longconn':>12} {'ratio':>8}")
    print(f"{'receive, callbacks, messages/s':<40} {m['ws_recv']:>12.0f} {m['lc_recv_cb']:>12.0f} {m['lc_recv_cb'] / m['ws_recv']:>7.2f}x")
    print(f"{'receive, receive_many(), messages/s':<40} {m['ws_recv']:>12.0f} {m['lc_recv_batch']:>12.0f} {m['lc_recv_batch'] / m['ws_recv']:>7.2f}x")
    print(f"{'round trip p50, us':<40} {m['ws_p50']:>12.1f} {m['lc_p50']:>12.1f} {m['lc_p50'] - m['ws_p50']:>+8.1f}")
    print(f"{'round trip p99, us':<40} {m['ws_p99']:>12.1f} {m['lc_p99']:>12.1f} {m['lc_p99'] - m['ws_p99']:>+8.1f}")
    print()
    print(f"{'':<40} {'send()':>12} {'asend()':>12} {'ratio':>8}")
    print(f"{'queue 64-byte messages, messages/s':<40} {m['lc_send']:>12.0f} {m['lc_asend']:>12.0f} {m['lc_asend'] / m['lc_send']:>7.2f}x")


if __name__ == "__main__":
    main()
