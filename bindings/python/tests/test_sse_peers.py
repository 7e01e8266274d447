"""Server-Sent Events: the C library (through the binding) against an event
stream nobody on this team wrote the server of: sse-starlette's
EventSourceResponse (CRLF line ends, its own ping comments) served by
uvicorn, started here on a free loopback port and killed in the middle."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import longconn
from longconn import EventKind

from conftest import WITHIN

if os.environ.get("CI"):
    # .ci/run installs them: a skip there would hide a failure.
    import sse_starlette  # noqa: F401
    import uvicorn  # noqa: F401
else:
    pytest.importorskip("sse_starlette", reason="pip install sse-starlette uvicorn")
    pytest.importorskip("uvicorn", reason="pip install sse-starlette uvicorn")

APP = textwrap.dedent(
    """
    import asyncio
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    from sse_starlette.sse import EventSourceResponse

    LAST = 40

    async def events(request):
        # Numbered events from the one after Last-Event-ID; the test kills
        # the process in the middle, and a new one goes on from the header.
        after = int(request.headers.get("last-event-id") or 0)

        async def numbers():
            yield {"retry": 100, "comment": "hello"}
            for n in range(after + 1, LAST + 1):
                yield {"id": str(n), "event": "tick", "data": f"n{n}"}
                await asyncio.sleep(0.01)
            while True:
                await asyncio.sleep(1)

        return EventSourceResponse(numbers(), ping=1)

    FLAKY = {"calls": 0}

    async def flaky(request):
        FLAKY["calls"] += 1
        if FLAKY["calls"] == 1:
            return Response("busy", status_code=503, headers={"retry-after": "1"})
        async def one():
            yield {"id": "only", "data": "after the 503"}
            while True:
                await asyncio.sleep(1)
        return EventSourceResponse(one())

    async def gone(request):
        return Response(status_code=204)

    async def missing(request):
        return Response("no such stream", status_code=404)

    app = Starlette(routes=[
        Route("/events", events), Route("/flaky", flaky), Route("/gone", gone), Route("/missing", missing),
    ])
    """
)


class Uvicorn:
    def __init__(self, app_dir: Path, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(app_dir), "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
        )
        deadline = time.monotonic() + WITHIN
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, "uvicorn exited"
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def uvicorn_app(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers: list[Uvicorn] = []

    def start() -> Uvicorn:
        server = Uvicorn(tmp_path, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def test_a_restarted_third_party_stream_resumes_from_last_event_id_without_gap_or_repeat(uvicorn_app):
    server = uvicorn_app()
    fast = longconn.Reconnect(initial=0.05, max_delay=0.5)
    numbers: list[int] = []
    with longconn.Client(f"http://127.0.0.1:{server.port}/events", reconnect=fast) as client:
        client.connect()
        killed = False
        for event in client.events(timeout=WITHIN):
            if event.kind != EventKind.MESSAGE:
                continue
            message = event.message
            assert isinstance(message, longconn.EventMessage)
            assert message.event_type == "tick" and message.event_id == message.text[1:], message
            numbers.append(int(message.event_id))
            if len(numbers) == 15 and not killed:
                server.kill()
                server = uvicorn_app()
                killed = True
            if numbers[-1] == 40:
                break
        assert killed
        assert client.stats().reconnects >= 1
    assert numbers == list(range(1, 41)), "every event once, in order, across the restart"


def test_retry_after_204_and_404_from_a_third_party_server(uvicorn_app):
    server = uvicorn_app()
    fast = longconn.Reconnect(initial=0.02, max_delay=3.0)
    with longconn.Client(f"http://127.0.0.1:{server.port}/flaky", reconnect=fast) as client:
        client.connect()
        seen = []
        for event in client.events(timeout=WITHIN):
            seen.append(event)
            if event.kind == EventKind.MESSAGE:
                break
        errors = [e for e in seen if e.kind == EventKind.ERROR]
        assert "503" in errors[0].text, errors
        delays = [e.delay for e in seen if e.kind == EventKind.RECONNECT_SCHEDULED]
        assert delays[0] == pytest.approx(1.0), "Retry-After: 1, over the schedule's 20 ms"
        assert seen[-1].message.text == "after the 503" and seen[-1].message.event_id == "only"
    for path, status in (("/gone", "204"), ("/missing", "404")):
        with longconn.Client(f"http://127.0.0.1:{server.port}{path}", reconnect=fast) as client:
            client.connect()
            kinds, texts = [], []
            for event in client.events(timeout=WITHIN):
                kinds.append(event.kind)
                texts.append(event.text)
                if event.kind == EventKind.CLOSED:
                    break
            assert EventKind.RECONNECT_SCHEDULED not in kinds, kinds
            error = [t for k, t in zip(kinds, texts) if k == EventKind.ERROR][0]
            assert status in error, error
