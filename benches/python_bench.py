#!/usr/bin/env python3
"""Python benchmark: the longconn binding next to the PyPI websockets package
(asyncio) and websocket-client (synchronous), the clients a Python
programmer would otherwise reach for.

    python3 benches/python_bench.py        (MESSAGES=, ROUND_TRIPS=, RUNS= change sizes)

Every client runs in this process against the same longconn-server echo
process on 127.0.0.1: websockets and websocket-client on its WebSocket port,
longconn on the same port (ws://, protocol 2 under the longconn.v2
subprotocol) and on its longconn port (tcp://, protocol 2). Measured:
messages per second received (64-byte messages pipelined through the echo
server, until the last echo is in Python), with a per-message callback or
receive_many(), and round-trip latency with one message in flight. Each
round measures every client once; ratios are medians of per-round ratios.
"""

from __future__ import annotations

import asyncio
import os
import socket
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
import websocket  # noqa: E402  (websocket-client)
import websockets  # noqa: E402

MESSAGES = int(os.environ.get("MESSAGES", 200_000))
ROUND_TRIPS = int(os.environ.get("ROUND_TRIPS", 5_000))
RUNS = int(os.environ.get("RUNS", 3))
PAYLOAD = b"x" * 64

class Server:
    """longconn-server in `mode`: its tcp:// (longconn protocol), ws:// and
    wss:// URLs, and the self-signed certificate of its TLS listener."""

    def __init__(self, mode: str = "echo") -> None:
        self.proc = subprocess.Popen(
            [str(REPO / "target/release/longconn-server"), "--mode", mode, "--quiet", "--threads", "1",
             "--length-port", "off", "--line-port", "off", "--ws-port", "0", "--longconn-port", "0",
             "--wss-port", "0", "--data-dir", "memory"],
            stdout=subprocess.PIPE, text=True,
        )
        ports = {}
        self.certificate = ""
        for line in self.proc.stdout:
            if line.startswith("tls certificate "):
                self.certificate = line.split(" ", 2)[2].strip()
            if line.startswith("listening "):
                ports[line.split()[1]] = line.rsplit(":", 1)[1].strip()
            if line.startswith("ready"):
                break
        else:
            raise RuntimeError("longconn-server did not start")
        self.tcp_url = f"tcp://127.0.0.1:{ports['longconn']}"
        self.ws_url = f"ws://127.0.0.1:{ports['ws']}/"
        self.wss_url = f"wss://localhost:{ports['wss']}/"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


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


def longconn_round_trips(url: str, io_in_poll: bool = False, ca_file: str | None = None) -> list[float]:
    with longconn.Client(url, io_in_poll=io_in_poll, tls_ca_file=ca_file) as client:
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


def websocket_client_round_trips(url: str, ca_file: str | None = None) -> list[float]:
    ws = websocket.create_connection(url, sslopt={"ca_certs": ca_file} if ca_file else None)
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        samples = []
        for i in range(ROUND_TRIPS + 500):
            start = time.perf_counter()
            ws.send_binary(PAYLOAD)
            ws.recv()
            if i >= 500:
                samples.append(time.perf_counter() - start)
        return samples
    finally:
        ws.close()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[int((len(ordered) - 1) * p)]


def main() -> None:
    server = Server()
    tcp_url, ws_url, wss_url = server.tcp_url, server.ws_url, server.wss_url
    # Sends go to a sink: echoes nobody reads would fill the inbox and stall the connection.
    sink = Server("sink")
    sink_url = sink.tcp_url
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    def p50_p99(name: str, samples: list[float]) -> None:
        add(f"{name}_p50", percentile(samples, 0.5) * 1e6)
        add(f"{name}_p99", percentile(samples, 0.99) * 1e6)

    try:
        for _ in range(RUNS):
            add("ws_recv", asyncio.run(ws_receive(ws_url)))
            add("lc_ws_recv_cb", longconn_receive_callbacks(ws_url))
            add("lc_tcp_recv_cb", longconn_receive_callbacks(tcp_url))
            add("lc_ws_recv_batch", longconn_receive_batches(ws_url))
            p50_p99("wsc", websocket_client_round_trips(ws_url))
            p50_p99("ws", asyncio.run(ws_round_trips(ws_url)))
            p50_p99("lc_ws", longconn_round_trips(ws_url))
            p50_p99("lc_tcp", longconn_round_trips(tcp_url))
            p50_p99("lc_ws_iop", longconn_round_trips(ws_url, io_in_poll=True))
            p50_p99("lc_tcp_iop", longconn_round_trips(tcp_url, io_in_poll=True))
            p50_p99("wsc_wss", websocket_client_round_trips(wss_url, ca_file=server.certificate))
            p50_p99("lc_wss", longconn_round_trips(wss_url, ca_file=server.certificate))
            p50_p99("lc_wss_iop", longconn_round_trips(wss_url, io_in_poll=True, ca_file=server.certificate))
            add("lc_send", longconn_send(sink_url))
            add("lc_asend", asyncio.run(longconn_asend(sink_url)))
    finally:
        for s in (server, sink):
            s.stop()

    def ratio(name: str, peer: str) -> float:
        return statistics.median(l / p for l, p in zip(results[name], results[peer]))

    m = {k: statistics.median(v) for k, v in results.items()}
    print(f"python benchmark: {MESSAGES} x 64-byte messages, {ROUND_TRIPS} round trips, {RUNS} rounds; medians")
    print(f"python {sys.version.split()[0]}, websockets {websockets.__version__}, "
          f"websocket-client {websocket.__version__}, longconn {longconn.library_version()}")
    print()
    print(f"{'receive (pipelined echo), messages/s':<44} {'websockets':>12} {'longconn':>12} {'ratio':>8}  target")
    for label, name, target in [
        ("per-message callback, ws://", "lc_ws_recv_cb", ">= 1.50x"),
        ("per-message callback, tcp://", "lc_tcp_recv_cb", ">= 1.50x"),
        ("receive_many(), ws://", "lc_ws_recv_batch", ""),
    ]:
        print(f"{label:<44} {m['ws_recv']:>12.0f} {m[name]:>12.0f} {ratio(name, 'ws_recv'):>7.2f}x  {target}")
    print()
    print(f"{'round trip, us':<44} {'ws-client':>12} {'longconn':>12} {'ratio':>8}  target")
    for label, name in [
        ("ws://, poll()", "lc_ws"),
        ("tcp://, poll()", "lc_tcp"),
        ("ws://, poll(), io_in_poll=True", "lc_ws_iop"),
        ("tcp://, poll(), io_in_poll=True", "lc_tcp_iop"),
        ("websockets (asyncio)", "ws"),
    ]:
        for p, target in [("p50", "<= 1.00x"), ("p99", "")]:
            peer = f"wsc_{p}"
            print(f"{label + ', ' + p:<44} {m[peer]:>12.1f} {m[f'{name}_{p}']:>12.1f} "
                  f"{ratio(f'{name}_{p}', peer):>7.2f}x  {target if name != 'ws' else ''}")
    print()
    print(f"{'round trip over TLS, us':<44} {'ws-client':>12} {'longconn':>12} {'ratio':>8}")
    for label, name in [("wss://, poll()", "lc_wss"), ("wss://, poll(), io_in_poll=True", "lc_wss_iop")]:
        for p in ("p50", "p99"):
            print(f"{label + ', ' + p:<44} {m[f'wsc_wss_{p}']:>12.1f} {m[f'{name}_{p}']:>12.1f} "
                  f"{ratio(f'{name}_{p}', f'wsc_wss_{p}'):>7.2f}x")
    print()
    print(f"{'':<44} {'send()':>12} {'asend()':>12} {'ratio':>8}")
    print(f"{'queue 64-byte messages, messages/s':<44} {m['lc_send']:>12.0f} {m['lc_asend']:>12.0f} "
          f"{ratio('lc_asend', 'lc_send'):>7.2f}x")


if __name__ == "__main__":
    main()
