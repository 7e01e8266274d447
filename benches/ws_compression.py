#!/usr/bin/env python3
"""WebSocket compression (permessage-deflate) measured: compressible JSON
messages sent to longconn-server's WebSocket port, with compression on and
off, by the longconn binding and by the PyPI websockets package (asyncio),
in one run on one machine.

    cargo build --release -p longconn -p longconn-server
    python3 benches/ws_compression.py      (MESSAGES=, RUNS= change sizes)

Each client sends MESSAGES JSON objects of about 1 KiB (a record with
repeated field names and text, as feeds and APIs send) and waits until the
server has them: longconn until the server acknowledged the last one
(protocol 2 under the longconn.v2 subprotocol, so every message was stored
by the server); websockets until the answer to a ping sent after the last
one (the server reads frames in order). Measured: messages per second, and
the bytes the server's socket received per message (`ss -ti`
bytes_received: the wire bytes, frames and all). One server per
measurement (a sink, in memory); RUNS rounds, medians.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bindings/python/src"))
os.environ.setdefault("LONGCONN_LIBRARY", str(REPO / "target/release/liblongconn.so"))

import longconn  # noqa: E402
import websockets  # noqa: E402

MESSAGES = int(os.environ.get("MESSAGES", 20_000))
RUNS = int(os.environ.get("RUNS", 3))


def message(i: int) -> str:
    record = {
        "id": i,
        "type": "price-update",
        "instrument": {"symbol": "ACME", "exchange": "XNYS", "currency": "USD"},
        "bids": [{"price": 100 + k / 100, "size": 10 * k} for k in range(12)],
        "asks": [{"price": 101 + k / 100, "size": 10 * k} for k in range(12)],
        "note": "quotes are indicative and may change without notice",
    }
    return json.dumps(record)


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(REPO / "target/release/longconn-server"), "--mode", "sink", "--quiet", "--threads", "1",
             "--length-port", "off", "--line-port", "off", "--longconn-port", "off", "--ws-port", "0",
             "--data-dir", "memory"],
            stdout=subprocess.PIPE, text=True,
        )
        for line in self.proc.stdout:
            if line.startswith("listening ws "):
                self.url = "ws://" + line.split()[2] + "/"
            if line.startswith("ready"):
                break

    def read_bytes(self) -> int:
        """Bytes the server's established sockets received (ss -ti: the
        kernel's count of payload bytes, frames and all)."""
        port = self.url.rsplit(":", 1)[1].strip("/")
        out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
        return sum(int(field.split(":")[1]) for field in out.split() if field.startswith("bytes_received:"))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run_longconn(compress: bool, messages: list[str]) -> tuple[float, float]:
    server = Server()
    try:
        with longconn.Client(server.url, ws_compression=compress, outbox=(len(messages) + 10, 1 << 30)) as client:
            client.connect()
            for event in client.events(timeout=10):
                if event.kind == longconn.EventKind.CONNECTED:
                    assert event.acknowledged, "protocol 2 under longconn.v2"
                    break
            before = server.read_bytes()
            started = time.perf_counter()
            for text in messages:
                client.send_text(text, wait=60)
            while client.stats().acked_number < len(messages):
                time.sleep(0.0005)
            took = time.perf_counter() - started
            wire = server.read_bytes() - before
    finally:
        server.stop()
    return len(messages) / took, wire / len(messages)


def run_websockets(compress: bool, messages: list[str]) -> tuple[float, float]:
    server = Server()

    async def send_all() -> tuple[float, int]:
        async with websockets.connect(server.url, compression="deflate" if compress else None,
                                      max_size=None, ping_interval=None) as ws:
            before = server.read_bytes()
            started = time.perf_counter()
            for text in messages:
                await ws.send(text)
            pong = await ws.ping()
            await pong
            return time.perf_counter() - started, server.read_bytes() - before

    try:
        took, wire = asyncio.run(send_all())
    finally:
        server.stop()
    return len(messages) / took, wire / len(messages)


def main() -> None:
    messages = [message(i) for i in range(MESSAGES)]
    size = statistics.mean(len(m) for m in messages)
    print(f"permessage-deflate: {MESSAGES} JSON messages of about {size:.0f} bytes to longconn-server's "
          f"WebSocket port; {RUNS} rounds, medians")
    rows = {}
    for _ in range(RUNS):
        for name, run in (("longconn", run_longconn), ("websockets", run_websockets)):
            for compress in (True, False):
                rows.setdefault((name, compress), []).append(run(compress, messages))
    print(f"{'client':<12} {'compression':<12} {'messages/s':>12} {'wire bytes/msg':>15}")
    for (name, compress), figures in rows.items():
        rate = statistics.median(f[0] for f in figures)
        wire = statistics.median(f[1] for f in figures)
        print(f"{name:<12} {'on' if compress else 'off':<12} {rate:>12.0f} {wire:>15.1f}")


if __name__ == "__main__":
    main()
