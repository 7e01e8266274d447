"""The Python binding against the real test server and the real library."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import weakref

import pytest

import longconn
from longconn import EventKind

from conftest import WITHIN, Collector

FAST = longconn.Reconnect(initial=0.05, max_delay=0.4)


def test_send_and_receive_through_callbacks(echo_server):
    got = Collector()
    threads = set()

    def on_message(message):
        threads.add(threading.get_ident())
        got(message)

    with longconn.Client(echo_server.url(), reconnect=FAST) as client:
        client.on_message(on_message)
        client.connect()
        client.send("text")
        client.send(b"bytes")
        client.send(bytearray(b"bytearray"))
        client.send(memoryview(b"xxmemoryview")[2:])
        assert got.wait_for(lambda items: len(items) == 4)
        assert got.items == [b"text", b"bytes", b"bytearray", b"memoryview"]
        assert all(isinstance(m, longconn.Message) for m in got.items)
        assert got.items[0].text == "text"
        assert threads and threading.get_ident() not in threads, "callbacks run on the library's thread"
        stats = client.stats()
        # Echoed, then acknowledged within the server's coalescing delay.
        deadline = time.monotonic() + WITHIN
        while stats.queued_messages and time.monotonic() < deadline:
            time.sleep(0.005)
            stats = client.stats()
        assert (stats.messages_out, stats.messages_in, stats.queued_messages) == (4, 4, 0)
        assert client.state == longconn.State.CONNECTED
    assert client.closed
    with pytest.raises(longconn.ClosedError):
        client.send("after close")


def test_every_framing_works(server_factory):
    server = server_factory("echo")
    for framing in ("longconn", "length", "line"):
        with longconn.Client(server.url(framing)) as client:
            client.connect()
            client.send_many([f"{framing} {i}" for i in range(100)])
            messages = []
            for event in client.events(timeout=WITHIN):
                if event.kind == EventKind.MESSAGE:
                    messages.append(event.message.text)
                if len(messages) == 100:
                    break
            assert messages == [f"{framing} {i}" for i in range(100)]


def test_reconnect_after_restart_delivers_queued_messages_in_order(echo_server):
    with longconn.Client(echo_server.url(), reconnect=FAST) as client:
        client.connect()
        assert _next(client, EventKind.CONNECTED)
        echo_server.stop()
        assert _next(client, EventKind.DISCONNECTED)
        for i in range(200):
            client.send(f"queued {i}")
        assert client.stats().queued_messages == 200
        restarted = echo_server.restart()
        try:
            assert _next(client, EventKind.CONNECTED)
            received = [m.text for m in _messages(client, 200)]
            assert received == [f"queued {i}" for i in range(200)]
            assert client.stats().reconnects == 1
        finally:
            restarted.stop()


def test_heartbeat_timeout_detects_a_stopped_server(echo_server):
    with longconn.Client(echo_server.url(), heartbeat=(0.1, 0.5), reconnect=FAST) as client:
        client.connect()
        assert _next(client, EventKind.CONNECTED)
        echo_server.signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            event = _next(client, EventKind.DISCONNECTED)
        finally:
            echo_server.signal(signal.SIGCONT)
        assert event.reason == longconn.DisconnectReason.HEARTBEAT_TIMEOUT
        # Within a few heartbeat timeouts (0.5 s), with room for a busy machine.
        assert time.monotonic() - started < 4 * 0.5
        assert _next(client, EventKind.CONNECTED), "back once the server runs again"


def test_bad_arguments_raise_typed_errors():
    with pytest.raises(longconn.InvalidUrlError) as url_error:
        longconn.Client("gopher://127.0.0.1:1")
    assert "unsupported scheme" in str(url_error.value)
    assert url_error.value.status_name == "LC_STATUS_INVALID_URL"
    with pytest.raises(longconn.InvalidArgumentError, match="heartbeat timeout"):
        longconn.Client("tcp://127.0.0.1:1", heartbeat=(5.0, 1.0))
    with pytest.raises(longconn.InvalidArgumentError):
        longconn.Client("tcp://127.0.0.1:1", reconnect=longconn.Reconnect(multiplier=0.5))
    with pytest.raises(ValueError):
        longconn.Client("tcp://127.0.0.1:1", connect_timeout=-1)
    client = longconn.Client("tcp://127.0.0.1:1?framing=line", max_frame_size=16)
    try:
        with pytest.raises(longconn.MessageTooLargeError):
            client.send(b"x" * 17)
        with pytest.raises(longconn.InvalidArgumentError, match="newline"):
            client.send("two\nlines")
        with pytest.raises(TypeError):
            client.send(12345)  # type: ignore[arg-type]
        with pytest.raises(longconn.InvalidArgumentError):
            client.send_many(["fine", "not\nfine"])
        assert client.stats().queued_messages == 0, "a bad batch queues nothing"
        client.connect()
        with pytest.raises(longconn.AlreadyStartedError):
            client.connect()
    finally:
        client.close(timeout=0.01)


def test_a_full_queue_raises_queue_full_and_keeps_what_it_had():
    client = longconn.Client("tcp://127.0.0.1:1", outbox=(3, 1000))
    try:
        for i in range(3):
            client.send(f"m{i}")
        with pytest.raises(longconn.QueueFullError) as full:
            client.send("one too many")
        assert "outbox full" in str(full.value)
        with pytest.raises(longconn.QueueFullError):
            client.send_many(["a"])
        assert client.stats().queued_messages == 3
    finally:
        assert client.close(timeout=0.01) == 3, "never connected: all three unsent"


def test_library_log_lines_reach_the_longconn_logger(caplog):
    caplog.set_level(logging.INFO, logger="longconn")
    client = longconn.Client("tcp://127.0.0.1:1", reconnect=FAST)  # nothing listens on port 1
    try:
        client.connect()
        deadline = time.monotonic() + WITHIN
        while time.monotonic() < deadline and not any("cannot connect" in r.getMessage() for r in caplog.records):
            time.sleep(0.01)
    finally:
        client.close(timeout=0.1)
    warnings = [r for r in caplog.records if r.name == "longconn" and "cannot connect" in r.getMessage()]
    assert warnings and warnings[0].levelno == logging.WARNING, caplog.records


def test_a_small_inbox_pauses_reading_and_loses_nothing(echo_server):
    with pytest.raises(longconn.InvalidArgumentError):
        longconn.Client(echo_server.url(), inbox=(0, 4096))
    sent = [f"m{i}".encode() for i in range(500)]
    with longconn.Client(echo_server.url(), inbox=(4, 4096)) as client:
        client.connect()
        client.send_many(sent)
        got: list[bytes] = []
        deadline = time.monotonic() + WITHIN
        while len(got) < len(sent) and time.monotonic() < deadline:
            # Four at a time at most wait in the inbox; the rest waits in the
            # sockets until the client reads again.
            got.extend(bytes(m) for m in client.receive_many(timeout=0.5))
        assert got == sent


def test_send_with_wait_blocks_until_the_writer_makes_room(echo_server):
    url = echo_server.url("length")
    echo_server.stop()  # nothing to flush to yet
    restarted = []
    with longconn.Client(url, outbox=(3, 1000), reconnect=FAST) as client:
        client.connect()
        for i in range(3):
            client.send(f"m{i}")
        started = time.monotonic()
        with pytest.raises(longconn.QueueFullError):
            client.send("m3", wait=0.2)  # no room comes while the server is down
        assert time.monotonic() - started >= 0.2
        with pytest.raises(longconn.QueueFullError):
            client.send("m3")
        # Room comes only once the server is back and the first three are written.
        starter = threading.Thread(target=lambda: restarted.append(echo_server.restart()))
        starter.start()
        try:
            client.send_text("m3", wait=WITHIN)
            received = []
            deadline = time.monotonic() + WITHIN
            while len(received) < 4 and time.monotonic() < deadline:
                received += client.receive_many(timeout=max(0.0, deadline - time.monotonic()))
            assert [m.text for m in received] == ["m0", "m1", "m2", "m3"]
        finally:
            starter.join()
            for server in restarted:
                server.stop()


def test_close_while_other_threads_wait_inside_the_library():
    client = longconn.Client("tcp://127.0.0.1:1", outbox=(1, 100))  # never connected
    client.send("fills the outbox")
    polled, sent = [], []

    def poll_forever():
        try:
            polled.append(client.poll(None))
        except longconn.ClosedError as e:
            polled.append(e)

    def send_waiting_forever():
        try:
            client.send("no room", wait=math.inf)
            sent.append("queued")
        except longconn.ClosedError as e:
            sent.append(e)

    threads = [threading.Thread(target=poll_forever), threading.Thread(target=send_waiting_forever)]
    for t in threads:
        t.start()
    started = time.monotonic()
    assert client.close(timeout=0.01) == 1
    for t in threads:
        t.join(WITHIN)
    assert not any(t.is_alive() for t in threads), "close woke both waiting calls"
    assert time.monotonic() - started < WITHIN
    assert isinstance(sent[0], longconn.ClosedError)
    event = polled[0]
    assert isinstance(event, longconn.ClosedError) or event.kind == EventKind.CLOSED


def test_close_from_a_callback_while_another_thread_closes_does_not_deadlock(echo_server):
    client = longconn.Client(echo_server.url(), reconnect=FAST)
    in_callback = threading.Event()
    results = []

    def on_message(message):
        in_callback.set()
        # Wait (bounded) until the main close below holds the client's lock and
        # waits for this callback to return, then close from here too.
        deadline = time.monotonic() + WITHIN
        while not client._lock.locked() and time.monotonic() < deadline:
            time.sleep(0.001)  # polling interval
        results.append(client.close())

    client.on_message(on_message)
    client.connect()
    client.send("go")
    assert in_callback.wait(WITHIN)
    closer = threading.Thread(target=lambda: results.append(client.close(timeout=1.0)), daemon=True)
    closer.start()
    closer.join(WITHIN)
    assert not closer.is_alive(), "close from the callback and from this thread deadlocked"
    # The callback's close started the close (None) or found it done (0).
    assert results[0] in (None, 0) and results[1] == 0, results


def _register_throwaway_callback(client: longconn.Client, sink: Collector) -> None:
    # The only reference to this lambda is the one the client keeps.
    client.on_message(lambda message: sink(bytes(message)))


def test_callbacks_stay_alive_through_garbage_collection(echo_server):
    sink = Collector()
    with longconn.Client(echo_server.url()) as client:
        _register_throwaway_callback(client, sink)
        gc.collect()
        gc.collect()
        client.connect()
        client.send("still here")
        assert sink.wait_for(lambda items: items == [b"still here"])


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_dropped_client_whose_callback_refers_to_it_is_freed(echo_server):
    # The library's own descriptors (the I/O runtime) exist from the first connect on.
    with longconn.Client(echo_server.url()) as warm_up:
        warm_up.connect()
    before = _open_descriptors()
    refs = []
    for i in range(50):
        client = longconn.Client(echo_server.url())
        # The natural echo: the callback holds the client.
        client.on_message(lambda message, c=client: c.send(message))
        client.connect()
        client.send(f"ping {i}")
        refs.append(weakref.ref(client))
        del client
    # A client whose callback is running on the callback thread right now is
    # still referenced by that call; it goes once the call returns.
    deadline = time.monotonic() + WITHIN
    while True:
        gc.collect()
        alive = [r for r in refs if r() is not None]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.01)  # polling interval of the bounded wait
    assert not alive, f"{len(alive)} of {len(refs)} dropped clients are still alive"
    # Their sockets close too, as their sessions wind down on the I/O threads.
    deadline = time.monotonic() + WITHIN
    while _open_descriptors() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_descriptors() <= before, (before, _open_descriptors())


def test_an_exception_in_a_callback_is_logged_and_kept(echo_server, caplog):
    seen = Collector()

    def fragile(message):
        seen(message)
        if message == b"boom":
            raise RuntimeError("callback failed on purpose")

    caplog.set_level(logging.ERROR, logger="longconn")
    with longconn.Client(echo_server.url()) as client:
        client.on_message(fragile)
        client.connect()
        client.send("boom")
        client.send("after")
        assert seen.wait_for(lambda items: items[-1:] == [b"after"])
        errors = client.callback_errors
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert any("exception in a callback" in r.getMessage() for r in caplog.records)


def test_send_and_close_from_inside_a_callback(echo_server):
    seen = Collector()
    client = longconn.Client(echo_server.url())
    results = []

    def ping_pong(message):
        n = int(message.text)
        if n < 20:
            client.send(str(n + 1))
        else:
            results.append(client.close())
        seen(message)  # last, so the waiter sees the close's result too

    client.on_message(ping_pong)
    client.connect()
    client.send("0")
    assert seen.wait_for(lambda items: len(items) == 21)
    assert results == [None], "close from a callback finishes in the background"
    assert client.close() == 0
    assert client.closed


def test_events_iterator_reports_state_changes(echo_server):
    client = longconn.Client(echo_server.url())
    client.connect()
    client.send("hi")
    kinds = []
    for event in client.events(timeout=WITHIN):
        kinds.append(event.kind)
        if event.kind == EventKind.MESSAGE:
            assert event.message == b"hi"
            break
    assert kinds == [EventKind.CONNECTED, EventKind.MESSAGE]
    with pytest.raises(longconn.LongconnError, match="without callbacks"):
        client.on_event(print)
        next(iter(client.events()))
    client.close()


def test_async_for_is_driven_by_the_event_descriptor(echo_server):
    async def main():
        client = longconn.Client(echo_server.url()).connect()
        for i in range(50):
            client.send(f"async {i}")
        received = []
        async for message in client:
            received.append(message.text)
            if len(received) == 50:
                break
        client.close()
        return received

    assert asyncio.run(asyncio.wait_for(main(), WITHIN)) == [f"async {i}" for i in range(50)]


def test_a_client_left_open_at_exit_does_not_crash_the_interpreter(echo_server):
    script = f"""
import longconn
c = longconn.Client({echo_server.url()!r})
c.on_message(lambda m: None)
c.on_event(lambda e: None)
c.connect()
for i in range(1000):
    c.send("x")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WITHIN * 3)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# -- helpers ---------------------------------------------------------------


def _next(client: longconn.Client, kind: EventKind):
    for event in client.events(timeout=WITHIN):
        if event.kind == kind:
            return event
    pytest.fail(f"no {kind.name} event within {WITHIN} s")


def _messages(client: longconn.Client, count: int) -> list:
    messages = []
    for event in client.events(timeout=WITHIN):
        if event.kind == EventKind.MESSAGE:
            messages.append(event.message)
            if len(messages) == count:
                return messages
    pytest.fail(f"only {len(messages)} of {count} messages arrived")



def test_receive_many_drains_in_order_and_skips_other_events(echo_server):
    with longconn.Client(echo_server.url()) as client:
        client.connect()  # its connected event comes first, and is skipped
        client.send_many([f"many {i}" for i in range(5000)])
        received = []
        while len(received) < 5000:
            batch = client.receive_many(max_count=700, timeout=WITHIN)
            assert batch, "messages keep coming"
            assert len(batch) <= 700
            received += batch
        assert [m.text for m in received] == [f"many {i}" for i in range(5000)]
        assert all(isinstance(m, longconn.Message) for m in received)
        assert client.receive_many(timeout=0.05) == []


def test_acknowledged_delivery_resumes_across_a_server_kill(server_factory, tmp_path):
    servers = [server_factory("echo", "--data-dir", str(tmp_path))]
    got = Collector()
    connected = Collector()
    client = longconn.Client(servers[0].url(), reconnect=FAST, heartbeat=(0.2, 0.8))
    client.on_message(got)
    client.on_event(lambda e: connected(e) if e.kind is EventKind.CONNECTED else None)
    try:
        client.connect()
        assert connected.wait_for(lambda items: len(items) == 1)
        first = connected.items[0]
        assert first.acknowledged and not first.resumed and first.recovered
        numbers = [client.send_seq(f"m{i}") for i in range(1, 501)]
        assert numbers == list(range(1, 501))
        assert got.wait_for(lambda items: len(items) >= 250)
        servers.append(servers[0].restart())  # SIGKILL, then the same ports and data directory
        for i in range(501, 1001):
            client.send(f"m{i}")
        assert got.wait_for(lambda items: len(items) >= 1000)
        assert [m.text for m in got.items] == [f"m{i}" for i in range(1, 1001)], "each once, in order"
        assert any(e.resumed and e.recovered for e in connected.items[1:])
        deadline = time.monotonic() + WITHIN
        while client.stats().acked_number < 1000 and time.monotonic() < deadline:
            time.sleep(0.005)
        stats = client.stats()
        assert (stats.acked_number, stats.unacked_messages) == (1000, 0)
    finally:
        client.close(timeout=5.0)
        for server in servers:
            server.stop()


def test_io_in_poll_carries_the_connection_inside_polls_only(echo_server):
    with longconn.Client(echo_server.url(), io_in_poll=True) as client:
        with pytest.raises(longconn.InvalidArgumentError, match="io_in_poll"):
            client.on_message(lambda m: None)
        with pytest.raises(longconn.InvalidArgumentError, match="io_in_poll"):
            client.on_event(lambda e: None)
        client.connect()
        _next(client, EventKind.CONNECTED)  # fails the test if it does not come
        # One at a time: each reply is read by the poll that waits for it.
        for i in range(200):
            client.send(f"one {i}")
            assert _messages(client, 1)[0].text == f"one {i}"
        # Many in flight: written and read by the polls that take them.
        client.send_many([f"many {i}" for i in range(3000)])
        received = []
        while len(received) < 3000:
            batch = client.receive_many(max_count=500, timeout=WITHIN)
            assert batch, "messages keep coming while polling"
            received += batch
        assert [m.text for m in received] == [f"many {i}" for i in range(3000)]
        assert client.stats().messages_in == 3200


def test_io_in_poll_has_no_asyncio_interface(echo_server):
    async def main() -> None:
        with longconn.Client(echo_server.url(), io_in_poll=True) as client:
            with pytest.raises(longconn.InvalidArgumentError, match="io_in_poll"):
                await client.aconnect(timeout=WITHIN)
            # The connection still works through the ordinary polls.
            client.send("after")
            assert _messages(client, 1)[0].text == "after"

    asyncio.run(main())


def test_a_list_of_servers_moves_past_one_that_refuses_and_refuses_a_mix(echo_server):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    # A first backoff step longer than the wait: the live server is reached within the round.
    slow = longconn.Reconnect(initial=30.0, max_delay=30.0)
    for client, dead_first in (
        (longconn.Client([dead, echo_server.url()], reconnect=slow), True),
        (longconn.Client(dead, servers=[echo_server.url()], reconnect=slow), True),
        (longconn.Client([dead, echo_server.url()], reconnect=slow, random_start=True), False),
    ):
        with client:
            client.connect()
            kinds = []
            for event in client.events(timeout=5.0):
                kinds.append(event.kind)
                if event.kind == EventKind.CONNECTED:
                    assert event.server_index == 1, event
                    assert client.stats().server_index == 1
                    break
            assert kinds[-1] == EventKind.CONNECTED, kinds
            assert EventKind.RECONNECT_SCHEDULED not in kinds, kinds
            assert (EventKind.ERROR in kinds) or not dead_first, kinds
            client.send("via the second")
            texts = []
            for event in client.events(timeout=WITHIN):
                if event.kind == EventKind.MESSAGE:
                    texts.append(event.message.text)
                    break
            assert texts == ["via the second"]
    with pytest.raises(longconn.InvalidArgumentError, match="cannot share a session"):
        longconn.Client([echo_server.url(), "ws://127.0.0.1:1/"])
    with pytest.raises(longconn.InvalidArgumentError, match="no server URL"):
        longconn.Client([])
    with pytest.raises(longconn.InvalidUrlError, match="unsupported proxy scheme"):
        longconn.Client(echo_server.url(), proxy="socks4://127.0.0.1:1080")


def test_on_connect_gives_a_fresh_token_before_each_attempt(server_factory, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    server = server_factory("echo", "--token-file", str(token_file))
    issued = {"token": "wrong"}
    attempts = []

    def on_connect(attempt):
        attempts.append(attempt)
        if attempt.attempt == 1 and len(attempts) == 1:
            raise RuntimeError("token service down")
        return longconn.ConnectRequest(token=issued["token"], headers={"X-Trace": "1"})

    fast = longconn.Reconnect(initial=0.02, max_delay=0.1)
    with longconn.Client(server.url(), reconnect=fast, on_connect=on_connect) as client:
        client.connect()
        errors = []
        for event in client.events(timeout=5.0):
            if event.kind == EventKind.ERROR:
                errors.append(event)
                if len(errors) == 2:
                    break
        assert "RuntimeError: token service down" in errors[0].text, errors[0]
        assert errors[1].error == longconn.ErrorKind.UNAUTHORIZED, errors[1]
        assert "wrong token" in errors[1].text
        issued["token"] = b"first"
        kinds = []
        for event in client.events(timeout=5.0):
            kinds.append(event.kind)
            if event.kind == EventKind.CONNECTED:
                assert event.acknowledged
                break
        assert kinds[-1] == EventKind.CONNECTED, kinds
        assert isinstance(client.callback_errors[0], RuntimeError)
    assert attempts[0] == longconn.ConnectAttempt(server_index=0, url=server.url(), attempt=1)
    assert [a.attempt for a in attempts[:3]] == [1, 2, 3]


def test_server_sent_events_from_the_room_with_types_and_ids(server_factory):
    import socket

    chat = server_factory("chat")
    events_url = f"http://127.0.0.1:{chat.ports['ws']}/events"
    got = Collector()
    with longconn.Client(events_url) as polled, longconn.Client(events_url) as called:
        called.on_message(got)
        polled.connect()
        called.connect()
        kinds = []
        for event in polled.events(timeout=5.0):
            kinds.append(event.kind)
            if event.kind == EventKind.CONNECTED:
                break
        assert kinds[-1] == EventKind.CONNECTED, kinds
        with socket.create_connection(("127.0.0.1", chat.ports["line"])) as line:
            line.sendall(b"from a line client\n")
            messages = []
            for event in polled.events(timeout=5.0):
                if event.kind == EventKind.MESSAGE and "from a line client" in event.message.text:
                    messages.append(event.message)
                    break
        assert got.wait_for(lambda items: any("from a line client" in m.text for m in items))
    message = messages[0]
    assert isinstance(message, longconn.EventMessage) and message.is_text
    assert message.event_type == "message"
    epoch, offset = message.event_id.split("-")
    assert int(epoch) > 0 and int(offset) >= 1
    batched = [m for m in got.items if "from a line client" in m.text][0]
    assert isinstance(batched, longconn.EventMessage)
    assert batched.event_id == message.event_id, "the batch callback gets the same label"
    # Sending POSTs to the room, which the stream then shows.
    with longconn.Client(events_url, send_url=events_url.replace("/events", "/messages")) as both:
        both.connect()
        both.send("posted from Python")
        assert any(
            e.kind == EventKind.MESSAGE and e.message.text.endswith(": posted from Python")
            for e in both.events(timeout=5.0)
        )
    with pytest.raises(longconn.InvalidArgumentError, match="a send URL is for http"):
        longconn.Client(chat.url(), send_url=events_url)


def test_an_outbox_file_keeps_unsent_messages_for_the_next_client_and_locks_out_a_second(echo_server, tmp_path):
    path = tmp_path / "outbox"
    dead = f"tcp://127.0.0.1:{echo_server.ports['longconn']}"
    echo_server.stop()
    # No server: the messages wait, in memory and in the file.
    first = longconn.Client(dead, reconnect=FAST, outbox_path=path)
    first.connect()
    for i in range(1, 6):
        first.send(f"n{i}")
    with pytest.raises(longconn.StorageError, match="in use by another process"):
        longconn.Client(dead, outbox_path=path)
    first.close(timeout=0.2)  # unsent: they stay in the file
    with pytest.raises(longconn.InvalidArgumentError):
        longconn.Client(dead, outbox_sync="sometimes")
    server = echo_server.restart()
    try:
        got = Collector()
        with longconn.Client(server.url(), reconnect=FAST, outbox_path=path, outbox_sync=0.01) as second:
            assert second.stats().restored_number == 5
            second.on_message(got)
            second.connect()
            second.send("n6")
            assert got.wait_for(lambda items: len(items) == 6)
            assert [bytes(m) for m in got.items] == [f"n{i}".encode() for i in range(1, 7)]
    finally:
        server.stop()
