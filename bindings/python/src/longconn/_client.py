"""The Client: one long-lived connection, kept up by the C library."""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping, Optional, Sequence, Union

from . import _callbacks, _events, _ffi
from ._errors import ClosedError, InvalidArgumentError, LongconnError, QueueFullError, check, error_for

lib = _ffi.lib

#: What ``send`` accepts: bytes-like objects, or text sent as UTF-8.
Data = Union[bytes, bytearray, memoryview, str]

_live: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _as_bytes(data: Data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"send() takes bytes, bytearray, memoryview or str, not {type(data).__name__}")


def _outbox_sync(sync: Union[str, float]) -> tuple[int, int]:
    """``outbox_sync`` as lc_config_set_outbox_sync()'s mode and window."""
    if sync == "every-send":
        return (0, 0)
    if sync == "never":
        return (2, 0)
    if isinstance(sync, (int, float)) and not isinstance(sync, bool):
        return (1, _ms(sync, "outbox_sync"))
    raise InvalidArgumentError(f"outbox_sync is 'every-send', 'never' or a window in seconds, not {sync!r}")


def _ms(seconds: float, name: str) -> int:
    if seconds < 0:
        raise ValueError(f"{name} must not be negative")
    return int(round(seconds * 1000))


def _wait_ms(seconds: float) -> int:
    """A send wait for the C API: -1 for no limit (``math.inf``), else milliseconds."""
    if seconds == math.inf:
        return -1
    return min(_ms(seconds, "wait"), 2**31 - 1)


@dataclass(frozen=True)
class Reconnect:
    """Reconnection schedule: attempt n waits min(max_delay, initial * multiplier**(n-1)),
    spread by +/- jitter. ``max_attempts`` 0 means never give up. Times in seconds."""

    initial: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 0

    def _args(self) -> tuple[int, int, float, float, int]:
        return (
            _ms(self.initial, "initial"),
            _ms(self.max_delay, "max_delay"),
            float(self.multiplier),
            float(self.jitter),
            int(self.max_attempts),
        )


class Client:
    """A connection to a longconn (or plain length/line framed) server.

    ``url`` is ``tcp://host:port`` for the longconn protocol, or with
    ``?framing=length`` / ``?framing=line``; ``ws://host:port/path`` for
    WebSocket; ``tls://`` and ``wss://`` for the same over TLS (verified
    against the system's roots, or ``tls_ca_file``). A list of URLs, or
    ``servers=[...]`` after ``url``, gives servers to move to when one cannot
    be reached: the next is tried at once, and one step of the ``reconnect``
    schedule is taken only when a whole round of the list failed; a
    protocol 2 session resumes on whichever answers, so they must share
    their sessions. They must all be ``tcp://``/``tls://`` with the same
    framing, or all ``ws://``/``wss://``; ``random_start=True`` begins with
    a server picked at random, so many clients spread over the list.
    ``proxy="http://[user:password@]host:port"`` sends every connection
    through a proxy (``http://``, ``https://``, ``socks5://``, ``socks5h://``;
    ``""`` for none, whatever the environment says); without it the proxy is
    taken from the environment when the client is created, as curl does
    (``ws_proxy``, ``http_proxy``, ``wss_proxy``, ``https_proxy``,
    ``all_proxy``, ``no_proxy``; see ``lc_config_set_proxy`` in the header).
    For ``http://`` and ``https://`` servers (Server-Sent Events or
    newline-delimited streams), :meth:`send` POSTs each message, in order,
    to ``send_url`` (the stream's URL by default) with an
    ``Idempotency-Key`` the server can drop retries by. ``ws_compression``
    (on by default) offers WebSocket's permessage-deflate: compressed
    messages from the server are inflated within ``max_frame_size``.
    ``outbox_path`` keeps the protocol 2 session and every message not yet
    acknowledged in that file, so a program started again with the same
    path resumes the session and the server receives every message exactly
    once, across crashes of the program and of the server
    (``stats().restored_number`` says where the file's numbering stopped);
    a second process on the same path gets :class:`StorageError`.
    ``outbox_sync``: ``"every-send"`` (the default: on disk before
    :meth:`send` returns), a window in seconds (synced within it; a power
    loss can lose that window, a crash of the program nothing) or
    ``"never"`` (the kernel decides). Times are in seconds. The client
    connects in the background after :meth:`connect`, reconnects by itself,
    and keeps messages sent while disconnected.

    Events go to :meth:`on_message` / :meth:`on_event` callbacks, which run
    on the library's callback thread; without callbacks, take them with
    :meth:`poll`, :meth:`events`, or ``async for message in client``.

    ``outbox=(messages, bytes)`` bounds what waits to be sent;
    ``inbox=(messages, bytes)`` bounds received messages you have not taken
    yet (each weighs its payload plus 128 bytes): past it the client stops
    reading until you catch up, and the server is slowed down by TCP.

    ``protocol_version=2`` (the default) offers acknowledged delivery on
    ``tcp://`` and ``tls://`` with the longconn framing, and on ``ws://``
    and ``wss://`` through the ``longconn.v2`` subprotocol: against a server
    that speaks it (the CONNECTED event says ``acknowledged``), messages are
    kept until the server acknowledges them and sessions resume across
    reconnects and server restarts, nothing lost and nothing twice. ``1``
    asks for best effort. ``acknowledgement_events=True`` adds an
    ACKNOWLEDGED event whenever the server acknowledges more messages
    (``stats().acked_number`` tells the same without events).

    ``io_in_poll=True`` does the connection's I/O on the thread that polls
    instead of the library's I/O threads, in the way of an event loop's
    service call: reading, writing, heartbeats and reconnects happen only
    while a thread is inside :meth:`poll`, :meth:`events`,
    :meth:`receive_many` or :meth:`close`, and a reply that a poll waits for
    is read by that same poll (no hand-off between threads). Poll at least
    once per heartbeat interval; such a client takes no callbacks and has
    no asyncio interface (both raise :class:`InvalidArgumentError`), and a
    send with a timeout does not wait for room.
    """

    def __init__(
        self,
        url: Union[str, Sequence[str]],
        *,
        servers: Sequence[str] = (),
        random_start: bool = False,
        proxy: Optional[str] = None,
        heartbeat: Optional[tuple[float, float]] = (5.0, 15.0),
        reconnect: Reconnect = Reconnect(),
        auto_reconnect: bool = True,
        outbox: tuple[int, int] = (100_000, 16 * 1024 * 1024),
        inbox: tuple[int, int] = (65_536, 8 * 1024 * 1024),
        max_frame_size: int = 1024 * 1024,
        connect_timeout: float = 10.0,
        plain_heartbeat: Optional[tuple[Data, Data]] = None,
        client_name: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        subprotocols: Sequence[str] = (),
        tls_ca_file: Optional[Union[str, "os.PathLike[str]"]] = None,
        tls_server_name: Optional[str] = None,
        tls_client_cert: Optional[tuple[Union[str, "os.PathLike[str]"], Union[str, "os.PathLike[str]"]]] = None,
        tls_dangerous_skip_verification: bool = False,
        protocol_version: int = 2,
        acknowledgement_events: bool = False,
        io_in_poll: bool = False,
        on_connect: Optional[Callable[[_events.ConnectAttempt], Optional[_events.ConnectRequest]]] = None,
        send_url: Optional[str] = None,
        ws_compression: bool = True,
        outbox_path: Optional[Union[str, "os.PathLike[str]"]] = None,
        outbox_sync: Union[str, float] = "every-send",
    ) -> None:
        #: The handle, and the calls in progress on it.
        self._guard = _HandleGuard()
        self._key = 0
        self._lock = threading.Lock()
        #: asyncio waiters to wake when the client is closed, from any thread.
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        #: Events taken by aconnect() while waiting, handed to the async iterators first.
        self._taken: list[_events.Event] = []
        #: The asyncio waiter whose reader is registered on the event descriptor.
        self._reader_owner: Optional[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = None
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise InvalidArgumentError("no server URL given")
        urls += list(servers)
        url = urls[0]
        config = ctypes.c_void_p()
        check(lib.lc_config_new(url.encode("utf-8"), ctypes.byref(config)))
        try:
            for more in urls[1:]:
                check(lib.lc_config_add_server(config, more.encode("utf-8")))
            check(lib.lc_config_set_server_order(config, bool(random_start)))
            if proxy is not None:
                check(lib.lc_config_set_proxy(config, proxy.encode("utf-8")))
            check(lib.lc_config_set_websocket_compression(config, bool(ws_compression)))
            if outbox_path is not None:
                check(lib.lc_config_set_outbox_path(config, os.fsencode(outbox_path)))
            check(lib.lc_config_set_outbox_sync(config, *_outbox_sync(outbox_sync)))
            if send_url is not None:
                check(lib.lc_config_set_http_send_url(config, send_url.encode("utf-8")))
            interval, timeout = heartbeat if heartbeat is not None else (0.0, 0.0)
            check(lib.lc_config_set_heartbeat(config, _ms(interval, "interval"), _ms(timeout, "timeout")))
            check(lib.lc_config_set_reconnect(config, *reconnect._args()))
            check(lib.lc_config_set_auto_reconnect(config, bool(auto_reconnect)))
            check(lib.lc_config_set_outbox_limits(config, int(outbox[0]), int(outbox[1])))
            check(lib.lc_config_set_inbox_limits(config, int(inbox[0]), int(inbox[1])))
            check(lib.lc_config_set_max_frame_size(config, int(max_frame_size)))
            check(lib.lc_config_set_connect_timeout(config, _ms(connect_timeout, "connect_timeout")))
            if plain_heartbeat is not None:
                ping, pong = (_as_bytes(p) for p in plain_heartbeat)
                check(lib.lc_config_set_plain_heartbeat(config, _buf(ping), len(ping), _buf(pong), len(pong)))
            if client_name is not None:
                check(lib.lc_config_set_client_name(config, client_name.encode("utf-8")))
            check(lib.lc_config_set_protocol_version(config, int(protocol_version)))
            check(lib.lc_config_set_acknowledgement_events(config, bool(acknowledgement_events)))
            check(lib.lc_config_set_io_in_poll(config, bool(io_in_poll)))
            for name, value in (headers or {}).items():
                check(lib.lc_config_add_header(config, name.encode("utf-8"), value.encode("utf-8")))
            for protocol in subprotocols:
                check(lib.lc_config_add_subprotocol(config, protocol.encode("utf-8")))
            if tls_ca_file is not None:
                check(lib.lc_config_set_tls_ca_file(config, os.fsencode(tls_ca_file)))
            if tls_server_name is not None:
                check(lib.lc_config_set_tls_server_name(config, tls_server_name.encode("utf-8")))
            if tls_client_cert is not None:
                cert, key = tls_client_cert
                check(lib.lc_config_set_tls_client_cert(config, os.fsencode(cert), os.fsencode(key)))
            if tls_dangerous_skip_verification:
                check(lib.lc_config_set_tls_dangerous_skip_verification(config, True))
            handle = ctypes.c_void_p()
            check(lib.lc_client_new(config, ctypes.byref(handle)))
        finally:
            lib.lc_config_free(config)
        self._guard.handle = handle.value
        self._max_frame_size = int(max_frame_size)
        #: Reused buffers for receive_many: payloads and their lengths.
        self._inbox: Optional[
            tuple["ctypes.Array[ctypes.c_char]", "ctypes.Array[ctypes.c_size_t]", "ctypes.Array[ctypes.c_bool]"]
        ] = None
        self._dispatcher = _callbacks.Dispatcher()
        self._key = _callbacks.register(self._dispatcher)
        if on_connect is not None:
            self.on_connect(on_connect)
        self.url = url
        _live.add(self)

    # -- life cycle --------------------------------------------------------

    def _use(self) -> "_HandleGuard":
        """``with self._use() as handle:`` around every library call on the
        handle, so that freeing the client waits for calls still inside it."""
        return self._guard

    def connect(self) -> "Client":
        """Starts connecting in the background; returns at once."""
        with self._use() as handle:
            check(lib.lc_client_connect(handle))
        return self

    def close(self, timeout: float = 5.0) -> Optional[int]:
        """Writes what is queued (waiting up to ``timeout`` seconds), closes,
        and frees the client. Returns how many messages could not be sent.

        Called from one of this client's callbacks, it starts the close and
        returns ``None``; the client is then freed by a later ``close()``
        from another thread, or when it is garbage-collected.
        """
        if _callbacks.in_callback():
            # Here the close only starts, and the lock must not be taken: a
            # close on another thread may hold it while it waits for this
            # callback to return.
            try:
                with self._use() as handle:
                    status = lib.lc_client_close(handle, _ms(timeout, "timeout"), None)
            except ClosedError:
                return 0
            if status != _ffi.IN_PROGRESS:
                check(status)
            return None
        with self._lock:
            current = self._guard.handle
            if current is None:
                return 0
            unsent = ctypes.c_uint64(0)
            status = lib.lc_client_close(current, _ms(timeout, "timeout"), ctypes.byref(unsent))
            if status == _ffi.IN_PROGRESS:  # on a library callback thread after all
                return None
            self._free_locked()
            if status not in (_ffi.OK, _ffi.TIMEOUT):
                raise error_for(status)
            return unsent.value

    def _free_locked(self) -> None:
        handle = self._guard.retire()
        if handle is not None:
            lib.lc_client_free(handle)  # no callback runs after this returns
            _callbacks.unregister(self._key)
        # The event descriptor went with the handle: wake asyncio iterators so they end.
        for loop, ready in list(self._async_waiters):
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # that loop is already closed
                pass

    def _free(self) -> None:
        with self._lock:
            self._free_locked()

    @property
    def closed(self) -> bool:
        return self._guard.handle is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- asyncio -----------------------------------------------------------

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aconnect(self, timeout: float = 10.0) -> "Client":
        """Connects and waits (without blocking the event loop) until the
        connection is up; raises TimeoutError after ``timeout`` seconds and
        ClosedError if the client closes first. Events that came on the way
        (errors, reconnect schedules, the connected event) are still
        delivered to ``events_async()`` afterwards."""
        self._require_poll_mode("aconnect()")
        self.connect()
        return await self._connected(timeout)

    def __await__(self) -> Generator[Any, None, "Client"]:
        """``await client.connect()``: connect() starts connecting and
        returns the client; awaiting it waits for the connection like
        :meth:`aconnect` (10 s at most)."""
        return self._connected(10.0).__await__()

    async def _connected(self, timeout: float) -> "Client":
        self._require_poll_mode("awaiting the connection")
        deadline = time.monotonic() + timeout
        events = self._wait_events(deadline)
        try:
            async for event in events:
                self._taken.append(event)
                if event.kind == _events.EventKind.CONNECTED:
                    return self
                if event.kind == _events.EventKind.CLOSED:
                    raise ClosedError("the client closed before it connected", 201)
        finally:
            await events.aclose()
        if self.closed:
            raise ClosedError("the client is closed", 201)
        raise TimeoutError(f"not connected within {timeout} s")

    async def asend(self, data: Data, timeout: Optional[float] = None) -> None:
        """Queues ``data`` like :meth:`send`; when the outbox is full, waits
        for room (up to ``timeout`` seconds, or without limit) instead of
        failing, in a worker thread so that the event loop keeps running.
        With room it is one library call, like :meth:`send`."""
        payload = _as_bytes(data)
        try:
            with self._use() as handle:
                check(lib.lc_client_send(handle, _buf(payload), len(payload)))
            return
        except QueueFullError:
            if timeout == 0:
                raise
        wait = math.inf if timeout is None else timeout
        await asyncio.get_running_loop().run_in_executor(None, lambda: self.send(payload, wait=wait))

    async def aclose(self, timeout: float = 5.0) -> Optional[int]:
        """Like :meth:`close`, in a worker thread: the event loop keeps
        running while queued messages are flushed. Tasks in ``async for``
        over this client end as soon as it is closed."""
        return await asyncio.get_running_loop().run_in_executor(None, self.close, timeout)

    def __del__(self) -> None:
        # At interpreter exit module globals may already be gone; never raise here.
        try:
            self._free()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.state.name.lower()
        return f"<longconn.Client {self.url!r} {state}>"

    # -- sending -----------------------------------------------------------

    def send(self, data: Data, wait: float | None = None) -> None:
        """Queues a copy of ``data`` (str is sent as UTF-8); returns at once.

        Raises QueueFullError when the outbox is full (nothing was queued),
        MessageTooLargeError, InvalidArgumentError, or ClosedError. With
        ``wait`` (seconds; ``math.inf`` for no limit), a full outbox is waited
        on until the writer makes room, and QueueFullError comes only if none
        came in time: backpressure without a retry loop. The GIL is released
        while waiting; inside a callback it does not wait.
        """
        payload = _as_bytes(data)
        if wait is None:
            with self._use() as handle:
                check(lib.lc_client_send(handle, _buf(payload), len(payload)))
        else:
            with self._use() as handle:
                check(lib.lc_client_send_wait(handle, _buf(payload), len(payload), False, _wait_ms(wait)))

    def send_seq(self, data: Data) -> int:
        """Like :meth:`send`, returning the message's number (from 1, in the
        order messages were queued): ACKNOWLEDGED events and
        ``stats().acked_number`` tell when the server has it."""
        payload = _as_bytes(data)
        seq = ctypes.c_uint64()
        with self._use() as handle:
            check(lib.lc_client_send_seq(handle, _buf(payload), len(payload), ctypes.byref(seq)))
        return seq.value

    def send_text(self, text: str, wait: float | None = None) -> None:
        """Queues ``text`` as a WebSocket text message (on the TCP transports,
        the same as :meth:`send`); ``wait`` as for :meth:`send`."""
        payload = text.encode("utf-8")
        if wait is None:
            with self._use() as handle:
                check(lib.lc_client_send_text(handle, payload, len(payload)))
        else:
            with self._use() as handle:
                check(lib.lc_client_send_wait(handle, _buf(payload), len(payload), True, _wait_ms(wait)))

    def send_many(self, messages: Iterable[Data]) -> int:
        """Queues many messages in order with one library call; returns how
        many were queued. Every message is checked first (a bad one queues
        nothing); if the outbox fills part-way, QueueFullError is raised with
        ``queued`` set to how many of the first messages were queued."""
        payloads = [_as_bytes(m) for m in messages]
        # One joined copy; the buffer table points into it. Filled as flat
        # (pointer, length) words, which is lc_buffer's layout.
        joined = b"".join(payloads)
        base = ctypes.cast(ctypes.c_char_p(joined), ctypes.c_void_p).value or 0
        offset = 0
        flat: list[int] = []
        for payload in payloads:
            flat.append(base + offset)
            flat.append(len(payload))
            offset += len(payload)
        words = (ctypes.c_size_t * (2 * len(payloads)))(*flat)
        buffers = ctypes.cast(words, ctypes.POINTER(_ffi.lc_buffer))
        queued = ctypes.c_size_t(0)
        with self._use() as handle:
            status = lib.lc_client_send_batch(handle, buffers, len(payloads), ctypes.byref(queued))
        if status != _ffi.OK:
            error = error_for(status)
            if isinstance(error, QueueFullError):
                error.queued = queued.value
            raise error
        return queued.value

    # -- settings and state ----------------------------------------------------

    def set_heartbeat(self, interval: float, timeout: float) -> None:
        """Changes heartbeat timing at once, also on a live connection (interval 0: off)."""
        with self._use() as handle:
            check(lib.lc_client_set_heartbeat(handle, _ms(interval, "interval"), _ms(timeout, "timeout")))

    def set_reconnect(self, reconnect: Reconnect) -> None:
        """Changes the reconnection schedule from the next delay on."""
        with self._use() as handle:
            check(lib.lc_client_set_reconnect(handle, *reconnect._args()))

    @property
    def state(self) -> _events.State:
        value = ctypes.c_uint32()
        with self._use() as handle:
            check(lib.lc_client_state(handle, ctypes.byref(value)))
        return _events.State(value.value)

    def stats(self) -> _events.Stats:
        raw = _ffi.lc_stats()
        with self._use() as handle:
            check(lib.lc_client_stats(handle, ctypes.byref(raw)))
        return _events.stats_from(raw)

    # -- callbacks -----------------------------------------------------------

    def on_message(self, callback: Optional[Callable[[_events.Message], Any]]) -> None:
        """Calls ``callback(message)`` for every message, on the library's
        callback thread. ``None`` removes it. Inside it you may call
        :meth:`send` and :meth:`close`. Exceptions are logged and kept in
        :attr:`callback_errors`; they never stop the client. A client made
        with ``io_in_poll=True`` takes none (InvalidArgumentError)."""
        previous = self._dispatcher.on_message
        self._dispatcher.on_message = callback
        try:
            self._install()
        except BaseException:
            self._dispatcher.on_message = previous
            raise

    def on_event(self, callback: Optional[Callable[[_events.Event], Any]]) -> None:
        """Calls ``callback(event)`` for every event (messages too, unless
        :meth:`on_message` is set). Same rules as :meth:`on_message`."""
        previous = self._dispatcher.on_event
        self._dispatcher.on_event = callback
        try:
            self._install()
        except BaseException:
            self._dispatcher.on_event = previous
            raise

    def on_connect(
        self, callback: Optional[Callable[[_events.ConnectAttempt], Optional[_events.ConnectRequest]]]
    ) -> None:
        """Calls ``callback(attempt)`` before each connection attempt, on a
        library thread that may wait (for a token service, say) up to the
        connect timeout. It returns None (the attempt goes as configured) or
        a :class:`ConnectRequest` with a fresh token, headers or
        subprotocols. An exception fails the attempt: an ERROR event naming
        it, then a retry with backoff (it is also kept in
        :attr:`callback_errors`). ``None`` removes the callback."""
        self._dispatcher.on_connect = callback
        trampoline = _callbacks.CONNECT_TRAMPOLINE if callback is not None else _ffi.CONNECT_CB()
        with self._use() as handle:
            check(lib.lc_client_set_connect_callback(handle, trampoline, self._key if callback else None))

    def _install(self) -> None:
        dispatcher = self._dispatcher
        wanted = dispatcher.on_event is not None or dispatcher.on_message is not None
        callback = _callbacks.EVENT_TRAMPOLINE if wanted else _ffi.EVENT_CB()
        with self._use() as handle:
            # Messages take the message callback only while on_message is set, so
            # an on_event-only client still gets them as events, with their state.
            # They come a read's worth per call: one crossing into Python per batch.
            if dispatcher.on_message is not None:
                check(lib.lc_client_set_messages_callback(handle, _callbacks.MESSAGES_TRAMPOLINE, self._key))
            else:
                check(lib.lc_client_set_messages_callback(handle, _ffi.MESSAGES_CB(), None))
            check(lib.lc_client_set_event_callback(handle, callback, self._key if wanted else None))

    @property
    def callback_errors(self) -> list[BaseException]:
        """Exceptions raised by this client's callbacks, oldest first."""
        return list(self._dispatcher.errors)

    # -- pulling events ------------------------------------------------------

    def poll(self, timeout: Optional[float] = 0.0) -> Optional[_events.Event]:
        """The next event, waiting up to ``timeout`` seconds (None: forever);
        None if none came. Only without callbacks. After the closed event has
        been taken nothing more can come: raises ClosedError at once."""
        wait = -1 if timeout is None else _ms(timeout, "timeout")
        raw = _ffi.lc_event()
        with self._use() as handle:
            status = lib.lc_client_poll(handle, min(wait, 2**31 - 1), ctypes.byref(raw))
            if status == _ffi.TIMEOUT:
                return None
            check(status)
            return _events.event_from(raw)  # its pointers stay valid until the next poll or free

    def events(self, timeout: Optional[float] = 1.0) -> Iterator[_events.Event]:
        """Yields events as they come; stops after ``timeout`` seconds without
        one, or after the closed event."""
        self._require_poll_mode("events()")
        while True:
            event = self.poll(timeout)
            if event is None:
                return
            yield event
            if event.kind == _events.EventKind.CLOSED:
                return

    def receive_many(self, max_count: int = 4096, timeout: float = 0.0) -> list[_events.Message]:
        """Up to ``max_count`` waiting messages with one library call (waiting
        up to ``timeout`` seconds for something to arrive); other events met
        on the way are skipped. WebSocket text messages come as
        :class:`TextMessage`. The fast way to drain a busy client. Raises
        ClosedError once the client has stopped and everything was taken."""
        self._require_poll_mode("receive_many()")
        if self._inbox is None or len(self._inbox[1]) < max_count:
            self._inbox = (
                ctypes.create_string_buffer(self._max_frame_size),
                (ctypes.c_size_t * max_count)(),
                (ctypes.c_bool * max_count)(),
            )
        buffer, lengths, is_text = self._inbox
        count = ctypes.c_size_t(0)
        deadline = time.monotonic() + timeout
        while True:
            wait = _ms(max(0.0, deadline - time.monotonic()), "timeout")
            with self._use() as handle:
                status = lib.lc_client_poll_messages(
                    handle, min(wait, 2**31 - 1), ctypes.cast(buffer, ctypes.POINTER(ctypes.c_uint8)),
                    len(buffer), lengths, is_text, max_count, ctypes.byref(count),
                )
            if status == _ffi.TIMEOUT:
                return []
            check(status)
            if count.value > 0:
                break
            self.poll(0.0)  # not a message: skip it and keep waiting until the deadline
        n = count.value
        sizes = lengths[:n]
        data = ctypes.string_at(buffer, sum(sizes))
        messages = []
        offset = 0
        for size, text in zip(sizes, is_text[:n]):
            kind = _events.TextMessage if text else _events.Message
            messages.append(kind(data[offset : offset + size]))
            offset += size
        return messages

    def fileno(self) -> int:
        """A descriptor readable while events wait; for select/poll/asyncio. Do not close it."""
        fd = ctypes.c_int(-1)
        with self._use() as handle:
            check(lib.lc_client_event_fd(handle, ctypes.byref(fd)))
        return fd.value

    async def events_async(self) -> AsyncIterator[_events.Event]:
        """Yields events under asyncio, woken by the event descriptor; ends
        after the closed event, or as soon as the client is closed and freed
        (by :meth:`close` or :meth:`aclose`, from any task or thread)."""
        self._require_poll_mode("async iteration")
        while self._taken:
            yield self._taken.pop(0)
        async for event in self._wait_events(None):
            yield event
            if event.kind == _events.EventKind.CLOSED:
                return

    async def _wait_events(self, deadline: Optional[float]) -> AsyncGenerator[_events.Event, None]:
        """Events as they come, until ``deadline`` (time.monotonic) or the close."""
        loop = asyncio.get_running_loop()
        try:
            fd = self.fileno()
        except ClosedError:
            return
        ready = asyncio.Event()
        waiter = (loop, ready)
        self._async_waiters.add(waiter)
        # One reader per descriptor: a newer iterator takes it over, and an
        # older one that is finalized later must not remove the newer's.
        self._reader_owner = waiter
        loop.add_reader(fd, ready.set)
        try:
            while True:
                try:
                    event = self.poll(0.0)
                except ClosedError:
                    return
                if event is not None:
                    yield event
                    continue
                ready.clear()
                if self.closed:
                    return
                if deadline is None:
                    await ready.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    try:
                        await asyncio.wait_for(ready.wait(), left)
                    except asyncio.TimeoutError:
                        return
        finally:
            self._async_waiters.discard(waiter)
            if self._reader_owner is waiter:
                self._reader_owner = None
                loop.remove_reader(fd)

    async def _messages(self) -> AsyncIterator[_events.Message]:
        async for event in self.events_async():
            if event.kind == _events.EventKind.MESSAGE and event.message is not None:
                yield event.message

    def __aiter__(self) -> AsyncIterator[_events.Message]:
        """``async for message in client``: messages until the client closes."""
        return self._messages()

    def _require_poll_mode(self, what: str) -> None:
        if self._dispatcher.on_event is not None or self._dispatcher.on_message is not None:
            raise LongconnError(f"{what} needs a client without callbacks (events go to the callbacks)")


class _HandleGuard:
    """A client's handle and the library calls in progress on it.

    ``with guard as handle:`` counts a call (a list entry: append and pop are
    atomic under the GIL), taken before the handle is read, so a free that
    starts meanwhile waits for it. It holds no reference to the client, so a
    dropped client is freed at once, not by the cycle collector.
    """

    __slots__ = ("handle", "calls", "freeing", "drained")

    def __init__(self) -> None:
        self.handle: Optional[int] = None
        self.calls: list[None] = []
        self.freeing = False
        self.drained = threading.Condition()

    def __enter__(self) -> int:
        self.calls.append(None)
        handle = self.handle
        if handle is None:
            self.calls.pop()
            raise ClosedError("the client is closed", 201)
        return handle

    def __exit__(self, *exc: object) -> None:
        self.calls.pop()
        if self.freeing:
            with self.drained:
                self.drained.notify_all()

    def retire(self) -> Optional[int]:
        """Takes the handle away from new calls and returns it once no call is
        inside the library with it: calls still there (a poll, a send waiting
        for room) are made to return by stopping the client."""
        handle, self.handle = self.handle, None
        if handle is not None and self.calls:
            self.freeing = True
            lib.lc_client_close(handle, 0, None)
            with self.drained:
                self.drained.wait_for(lambda: not self.calls)
        return handle


def _buf(payload: bytes) -> "ctypes._Pointer[ctypes.c_uint8]":
    """A borrowed pointer to the bytes of ``payload``, for the duration of a call."""
    return ctypes.cast(ctypes.c_char_p(payload), ctypes.POINTER(ctypes.c_uint8))


@atexit.register
def _free_all_at_exit() -> None:
    """Frees every live client before the interpreter goes away, so no callback
    thread calls into a finalizing interpreter."""
    for client in list(_live):
        try:
            client._free()
        except Exception:  # noqa: BLE001
            pass
