"""WebSocket: the C library (through the binding) against servers we did not
write (the PyPI websockets package) and against longconn-server's listener."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import longconn
from longconn import DisconnectReason, EventKind

from conftest import WITHIN

websockets = pytest.importorskip("websockets", reason="pip install websockets")

# An echo server written with the websockets package: it reports each
# handshake's Authorization header and chosen subprotocol as a first text
# message, echoes text as text and binary as binary, closes with code 4001
# when told to (and prints the code of the client's answering close frame),
# and sends fragmented messages, with a ping between fragments, when told to.
SERVER = r"""
import asyncio, json, sys, websockets
async def handler(ws):
    hello = {"authorization": ws.request.headers.get("Authorization"), "subprotocol": ws.subprotocol}
    await ws.send(json.dumps(hello))
    async for message in ws:
        if message == "please close":
            await ws.close(4001, "bye now")
            answer = ws.protocol.close_rcvd
            print("client answered close:", answer.code if answer else None, flush=True)
            return
        if message == "please fragment":
            pong = None
            async def pieces():
                nonlocal pong
                yield "frag"
                pong = await ws.ping(b"mid")
                yield "men"
                yield "ted \u00e9"
            await ws.send(pieces())
            await ws.send([b"\x00bin", b"ary", b""])
            await asyncio.wait_for(pong, 10)
            await ws.send("pong came back")
            continue
        await ws.send(message)
def select_subprotocol(connection, offered):
    # chat.v1 when offered; clients offering nothing are welcome too.
    return "chat.v1" if "chat.v1" in offered else None
async def main(port):
    async with websockets.serve(handler, "127.0.0.1", port, select_subprotocol=select_subprotocol,
                                ping_interval=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main(int(sys.argv[1])))
"""


class ThirdPartyServer:
    def __init__(self, port: int = 0) -> None:
        # Its stderr would fill the log with the disconnects these tests cause on purpose.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.port = int(self.proc.stdout.readline())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/room"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def third_party():
    servers = [ThirdPartyServer()]
    yield servers
    for s in servers:
        s.stop()


def next_event(client, kind, within=WITHIN):
    deadline = time.monotonic() + within
    seen = []
    while time.monotonic() < deadline:
        event = client.poll(max(0.0, deadline - time.monotonic()))
        if event is None:
            break
        if event.kind == kind:
            return event
        seen.append((event.kind.name, event.text))
    pytest.fail(f"no {kind.name} within {within} s; saw {seen[-5:]}")


def next_message(client):
    return next_event(client, EventKind.MESSAGE).message


def test_headers_subprotocols_text_and_binary_with_a_third_party_server(third_party):
    server = third_party[0]
    client = longconn.Client(
        server.url,
        headers={"Authorization": "Bearer t0ken"},
        subprotocols=["chat.v2", "chat.v1"],
    )
    with client:
        client.connect()
        hello = json.loads(next_message(client).text)
        assert hello == {"authorization": "Bearer t0ken", "subprotocol": "chat.v1"}
        client.send_text("h\u00e9llo")
        client.send(b"\x00\x01\xff")
        text = next_message(client)
        binary = next_message(client)
        assert isinstance(text, longconn.TextMessage) and text.is_text and text.text == "h\u00e9llo"
        assert not binary.is_text and binary == b"\x00\x01\xff"


def test_receive_many_keeps_text_and_binary_apart(third_party):
    with longconn.Client(third_party[0].url) as client:
        client.connect()
        client.send_text("one")
        client.send(b"\x00two")
        client.send_text("thr\u00e9e")
        received = []
        deadline = time.monotonic() + WITHIN
        while len(received) < 4 and time.monotonic() < deadline:
            received += client.receive_many(timeout=max(0.0, deadline - time.monotonic()))
        hello, one, two, three = received
        assert json.loads(hello.text) == {"authorization": None, "subprotocol": None}
        assert [type(m) for m in received] == [longconn.TextMessage, longconn.TextMessage, longconn.Message,
                                               longconn.TextMessage]
        assert (one.text, bytes(two), three.text) == ("one", b"\x00two", "thr\u00e9e")


def test_survives_the_third_party_server_restarting(third_party):
    server = third_party[0]
    with longconn.Client(server.url, reconnect=longconn.Reconnect(initial=0.05, max_delay=0.3),
                         headers={"Authorization": "again"}) as client:
        client.connect()
        assert json.loads(next_message(client).text)["authorization"] == "again"
        port = server.port
        server.stop()
        next_event(client, EventKind.DISCONNECTED)
        client.send_text("sent while down")
        third_party.append(ThirdPartyServer(port))
        # Same URL and same headers on the new connection; the queued message follows.
        assert json.loads(next_message(client).text)["authorization"] == "again"
        assert next_message(client).text == "sent while down"


def test_notices_a_third_party_server_that_stops_answering_pings(third_party):
    server = third_party[0]
    with longconn.Client(server.url, heartbeat=(0.1, 0.5), reconnect=longconn.Reconnect(initial=0.05)) as client:
        client.connect()
        next_message(client)  # the handshake report: the connection is up
        # Our WebSocket pings get the third-party server's pongs (the round trip is measured)...
        deadline = time.monotonic() + WITHIN
        while client.stats().last_rtt == 0 and time.monotonic() < deadline:
            assert client.poll(0.05) is None, "nothing else happens on a healthy link"
        assert client.stats().last_rtt > 0
        # ...until the server stops answering.
        server.proc.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            event = next_event(client, EventKind.DISCONNECTED)
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert event.reason == DisconnectReason.HEARTBEAT_TIMEOUT
        # Within a few heartbeat timeouts (0.5 s), with room for a busy machine.
        assert time.monotonic() - started < 4 * 0.5


def test_the_close_handshake_reports_code_and_reason_and_is_answered(third_party):
    server = third_party[0]
    with longconn.Client(server.url, auto_reconnect=False) as client:
        client.connect()
        next_message(client)
        client.send_text("please close")
        event = next_event(client, EventKind.DISCONNECTED)
        assert event.reason == DisconnectReason.PEER_CLOSED
        assert "4001" in event.text and "bye now" in event.text
        # The server saw our close frame answer its own, with its code.
        ready, _, _ = select.select([server.proc.stdout], [], [], WITHIN)
        assert ready, "the server never finished its closing handshake"
        assert server.proc.stdout.readline().strip() == "client answered close: 4001"


def test_fragmented_messages_arrive_whole_and_a_ping_between_fragments_is_answered(third_party):
    with longconn.Client(third_party[0].url) as client:
        client.connect()
        next_message(client)
        client.send_text("please fragment")
        text, binary, after = next_message(client), next_message(client), next_message(client)
        assert text.is_text and text.text == "fragmented \u00e9"
        assert not binary.is_text and binary == b"\x00binary"
        assert after.text == "pong came back"


def next_chat_line(client):
    """The next message that is not a join or leave notice."""
    message = next_message(client)
    while message.text.startswith("* "):
        message = next_message(client)
    return message


def test_longconn_server_websocket_listener_and_chat_page(server_factory):
    server = server_factory("chat")
    ws_url = f"ws://127.0.0.1:{server.ports['ws']}/"
    with longconn.Client(ws_url) as browser_like, longconn.Client(server.url("line")) as line_client:
        browser_like.connect()
        next_event(browser_like, EventKind.CONNECTED)
        line_client.connect()
        # Join notices come first (a protocol 2 member, as this WebSocket
        # client is, also gets its own).
        assert "joined" in next_message(browser_like).text
        line_client.send("hello websocket")
        chat_line = next_chat_line(browser_like)
        assert chat_line.is_text and chat_line.text.endswith(": hello websocket")
        browser_like.send_text("hello line")
        assert next_chat_line(line_client).text.endswith(": hello line")
    page = urllib.request.urlopen(f"http://127.0.0.1:{server.ports['ws']}/", timeout=WITHIN).read().decode()
    assert "<title>longconn chat</title>" in page and "new WebSocket" in page


def test_tls_and_wss_with_a_ca_file_and_a_clear_error_without(server_factory):
    server = server_factory("echo", "--tls-port", "0", "--wss-port", "0")
    assert server.certificate is not None
    for url in (f"tls://127.0.0.1:{server.ports['tls']}", f"wss://localhost:{server.ports['wss']}/"):
        with longconn.Client(url, tls_ca_file=server.certificate) as client:
            client.connect()
            client.send_text("secret")
            assert next_message(client).text == "secret"
    with longconn.Client(f"wss://127.0.0.1:{server.ports['wss']}/", reconnect=longconn.Reconnect(initial=0.05)) as client:
        client.connect()
        error = next_event(client, EventKind.ERROR)
        assert "unknown issuer" in error.text
        next_event(client, EventKind.RECONNECT_SCHEDULED)
    with pytest.raises(longconn.InvalidArgumentError, match="cannot read CA file"):
        longconn.Client("tls://127.0.0.1:1", tls_ca_file="/nonexistent/ca.pem")


def test_longconn_server_joins_a_third_party_clients_fragments_and_answers_its_close(server_factory):
    """The server's side of the WebSocket frames, against the websockets client:
    masked fragments with a ping between them echoed as one message, and the
    client's close frame answered with its code."""
    import asyncio

    server = server_factory("echo")

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{server.ports['ws']}/", ping_interval=None) as ws:
            pong = None

            async def pieces():
                nonlocal pong
                yield b"\x00frag"
                pong = await ws.ping(b"mid")
                yield b"mented"

            await ws.send(pieces())
            echoed = await asyncio.wait_for(ws.recv(), WITHIN)
            await asyncio.wait_for(pong, WITHIN)
            await ws.close(1000, "done")
            return echoed, ws.protocol.close_rcvd

    echoed, answer = asyncio.run(run())
    assert echoed == b"\x00fragmented"
    assert answer is not None and answer.code == 1000


# A websockets server that reports the extensions it agreed to, then sends
# what it is asked for: a large compressible JSON message, or a deflate bomb.
COMPRESSING_SERVER = r"""
import asyncio, json, sys, websockets
async def handler(ws):
    await ws.send(json.dumps({"extensions": [e.name for e in ws.protocol.extensions]}))
    async for message in ws:
        if message == "json":
            await ws.send(json.dumps([{"n": i, "text": "repeated text " * 4} for i in range(3000)]))
        elif message == "bomb":
            await ws.send(b"\0" * (64 << 20))
async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, ping_interval=None, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


@pytest.fixture
def compressing_server():
    proc = subprocess.Popen([sys.executable, "-c", COMPRESSING_SERVER], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    yield f"ws://127.0.0.1:{int(proc.stdout.readline())}/"
    proc.kill()
    proc.wait()


def test_permessage_deflate_from_a_third_party_server_and_a_bomb_refused(compressing_server):
    with longconn.Client(compressing_server, max_frame_size=1 << 20) as client:
        client.connect()
        hello = json.loads(next_message(client).text)
        assert hello["extensions"] == ["permessage-deflate"], hello
        client.send_text("json")
        big = json.loads(next_message(client).text)
        assert len(big) == 3000 and big[-1]["n"] == 2999
        client.send_text("bomb")
        error = next_event(client, EventKind.ERROR)
        assert error.error == longconn.ErrorKind.FRAME_TOO_LARGE, error
        assert "1048576" in error.text, error.text
    with longconn.Client(compressing_server, ws_compression=False) as plain:
        plain.connect()
        assert json.loads(next_message(plain).text)["extensions"] == [], "not offered: not agreed"


CLIENT = r"""
import asyncio, json, sys, websockets
async def main(url):
    async with websockets.connect(url, max_size=None) as ws:
        names = [e.name for e in ws.protocol.extensions]
        message = json.dumps([{"n": i, "text": "repeated text " * 4} for i in range(3000)])
        await ws.send(message)
        echo = await ws.recv()
        print(json.dumps({"extensions": names, "same": echo == message, "size": len(message)}), flush=True)
asyncio.run(main(sys.argv[1]))
"""


def test_a_third_party_client_s_compressed_messages_reach_the_server(server_factory):
    server = server_factory("echo")
    out = subprocess.run([sys.executable, "-c", CLIENT, f"ws://127.0.0.1:{server.ports['ws']}/"],
                         capture_output=True, text=True, timeout=WITHIN)
    report = json.loads(out.stdout)
    assert report["extensions"] == ["permessage-deflate"], (report, out.stderr)
    assert report["same"] and report["size"] > 100_000


def test_our_compressed_messages_are_read_by_a_third_party_server(third_party):
    """websockets inflates what the client compressed (it fails the
    connection on a bad one) and echoes it; small messages go as they are."""
    with longconn.Client(third_party[0].url) as client:
        client.connect()
        json.loads(next_message(client).text)  # the server's hello
        big = json.dumps([{"n": i, "text": "compressible " * 8} for i in range(2000)])
        for message in (big, "tiny", big[:5000]):
            client.send_text(message)
            assert next_message(client).text == message
        assert client.stats().reconnects == 0, "no connection was failed"
