"""The chat page in a real headless Chromium, in one room with a C client
over TCP and a Python client over TLS: everyone sees everyone's messages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import longconn
from longconn import EventKind

from conftest import REPO, WITHIN
from test_interop import Program, c_chat  # noqa: F401  (the C chat fixture)

BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def page_driver() -> Path:
    """Chromium from the system and playwright-core from npm; installs the latter if needed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install playwright-core")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=BROWSER_DIR, check=True)
    return BROWSER_DIR / "chat_page.mjs"


def test_browser_c_and_python_clients_share_the_room(server_factory, c_chat, page_driver):  # noqa: F811
    server = server_factory("chat", "--tls-port", "0")
    c_client = Program([str(c_chat), server.url("line")])
    c_client.wait_for(lambda line: line.startswith("[connected"))
    with longconn.Client(f"tls://localhost:{server.ports['tls']}", tls_ca_file=server.certificate) as py_client:
        py_client.connect()
        for event in py_client.events(timeout=WITHIN):
            if event.kind == EventKind.CONNECTED:
                break
        browser = Program(
            ["node", str(page_driver), f"http://127.0.0.1:{server.ports['ws']}/", "hello from the browser",
             "hello from C", "hello from Python"],
            env=dict(os.environ, CHROMIUM=CHROMIUM),
        )
        browser.wait_for(lambda line: line == "connected", within=30)
        c_client.type("hello from C")
        py_client.send("hello from Python over TLS")
        browser.wait_for(lambda line: line == "saw: hello from Python")
        assert browser.finish() == 0
        c_client.wait_for(lambda line: line.endswith(": hello from the browser"))
        heard = [e.message.text for e in py_client.events(timeout=2.0) if e.kind == EventKind.MESSAGE]
        assert any(text.endswith(": hello from the browser") for text in heard), heard
        assert any(text.endswith(": hello from C") for text in heard), heard
    c_client.type("/quit")
    assert c_client.finish() == 0


def test_the_browser_s_event_source_a_c_client_and_websocket_and_sse_clients_share_the_room(
    server_factory, c_chat, page_driver  # noqa: F811
):
    server = server_factory("chat")
    c_client = Program([str(c_chat), server.url("line")])
    c_client.wait_for(lambda line: line.startswith("[connected"))
    origin = f"http://127.0.0.1:{server.ports['ws']}"
    with longconn.Client(f"ws://127.0.0.1:{server.ports['ws']}/") as ws_client, longconn.Client(
        origin + "/events"
    ) as sse_client:
        for client in (ws_client, sse_client):
            client.connect()
            for event in client.events(timeout=WITHIN):
                if event.kind == EventKind.CONNECTED:
                    break
        browser = Program(
            ["node", str(page_driver.parent / "event_source.mjs"), origin, "hello from C", "hello over WebSocket"],
            env=dict(os.environ, CHROMIUM=CHROMIUM),
        )
        browser.wait_for(lambda line: line == "open", within=30)
        c_client.type("hello from C")
        ws_client.send("hello over WebSocket")
        browser.wait_for(lambda line: line.startswith("saw: ") and line.endswith("hello over WebSocket"))
        browser_lines = [line for line in browser.seen if line.startswith("saw: ")]
        assert browser.finish() == 0
        wanted = {line[len("saw: "):].split(" ", 1)[1] for line in browser_lines}
        ours = {}
        for event in sse_client.events(timeout=WITHIN):
            if event.kind == EventKind.MESSAGE:
                ours[event.message.text] = event.message.event_id
                if wanted <= ours.keys():
                    break
        # The browser and the longconn SSE client read the same events, under the same ids.
        for line in browser_lines:
            event_id, text = line[len("saw: "):].split(" ", 1)
            assert ours.get(text) == event_id, (line, ours)
    c_client.type("/quit")
    assert c_client.finish() == 0
