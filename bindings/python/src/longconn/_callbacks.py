"""The C callback trampolines and the registry that keeps Python callbacks alive.

The library is given one module-level ``CFUNCTYPE`` object per callback type
and an integer key as ``user_data``. The key finds the client's Python
callbacks in a registry, so the library never holds a pointer to a Python
object. The registry refers to each client's dispatcher weakly: the client
owns it, so a client whose callbacks refer back to it (an echo written as
``client.on_message(lambda m: client.send(m))``) is still freed once the
application drops it; until the client is freed, its dispatcher lives with
it, and after that the library calls no callback of it. An exception inside a Python callback never reaches C: it is
logged and kept on the client (``Client.callback_errors``).
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import struct
import threading
import weakref
from typing import Any, Callable, Optional

from . import _events, _ffi

log = logging.getLogger("longconn")

_lock = threading.Lock()
_keys = itertools.count(1)
#: How deep the current thread is in Python callbacks (the library's callback thread).
_local = threading.local()
#: key -> the object whose callbacks the library may call (a Client's
#: dispatcher), held weakly so the registry keeps no client alive.
_registry: dict[int, "weakref.ref[Dispatcher]"] = {}


class Dispatcher:
    """The Python side of one client's callbacks."""

    def __init__(self) -> None:
        self.on_event: Optional[Callable[[_events.Event], Any]] = None
        self.on_message: Optional[Callable[[_events.Message], Any]] = None
        self.on_connect: Optional[Callable[[_events.ConnectAttempt], Optional[_events.ConnectRequest]]] = None
        #: Exceptions raised by callbacks, oldest first (at most 100 kept).
        self.errors: list[BaseException] = []

    def call(self, callback: Callable[[Any], Any], value: Any) -> None:
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            callback(value)
        except BaseException as exc:  # noqa: BLE001 - nothing may unwind into C
            self.record(exc)
        finally:
            _local.depth -= 1

    def record(self, exc: BaseException) -> None:
        """Logs and keeps an exception a callback raised."""
        log.error("longconn: exception in a callback", exc_info=exc)
        if len(self.errors) < 100:
            self.errors.append(exc)


def in_callback() -> bool:
    """Whether the current thread is running one of this library's callbacks."""
    return getattr(_local, "depth", 0) > 0


def register(dispatcher: Dispatcher) -> int:
    with _lock:
        key = next(_keys)
        _registry[key] = weakref.ref(dispatcher)
        return key


def unregister(key: int) -> None:
    """Call only once the library can no longer call back (after lc_client_free)."""
    with _lock:
        _registry.pop(key, None)


def _lookup(user_data: Optional[int]) -> Optional[Dispatcher]:
    ref = _registry.get(user_data or 0)
    return ref() if ref is not None else None


def _event_trampoline(user_data: Optional[int], c_event: "ctypes._Pointer[_ffi.lc_event]") -> None:
    dispatcher = _lookup(user_data)
    if dispatcher is None:
        return
    try:
        event = _events.event_from(c_event.contents)
    except BaseException:  # noqa: BLE001
        log.exception("longconn: could not read an event")
        return
    if event.kind == _events.EventKind.MESSAGE and dispatcher.on_message is not None:
        dispatcher.call(dispatcher.on_message, event.message)
    elif dispatcher.on_event is not None:
        dispatcher.call(dispatcher.on_event, event)


_LC_MESSAGE = struct.Struct(_ffi.LC_MESSAGE_FORMAT + "0P")  # padded to the C struct's size


def _messages_trampoline(user_data: Optional[int], messages: Optional[int], count: int) -> None:
    # One crossing into Python for all the messages of one read.
    dispatcher = _lookup(user_data)
    if dispatcher is None or dispatcher.on_message is None or not messages:
        return
    entries = _LC_MESSAGE.iter_unpack(ctypes.string_at(messages, _LC_MESSAGE.size * count))
    string_at, text_message, message = ctypes.string_at, _events.TextMessage, _events.Message
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        for data, length, is_text, event_type, event_id in entries:
            # Looked up per message: a callback may replace or remove itself.
            on_message = dispatcher.on_message
            if on_message is None:
                break
            payload = string_at(data, length) if length else b""
            try:
                if event_type:
                    on_message(
                        _events.EventMessage(
                            payload,
                            string_at(event_type).decode("utf-8", "replace"),
                            string_at(event_id).decode("utf-8", "replace"),
                        )
                    )
                else:
                    on_message(text_message(payload) if is_text else message(payload))
            except BaseException as exc:  # noqa: BLE001 - nothing may unwind into C
                dispatcher.record(exc)
    finally:
        _local.depth -= 1


def _connect_trampoline(
    user_data: Optional[int], c_info: "ctypes._Pointer[_ffi.lc_connect_info]", request: Optional[int]
) -> bool:
    # Runs on a library thread before each connection attempt; it may wait.
    dispatcher = _lookup(user_data)
    on_connect = dispatcher.on_connect if dispatcher is not None else None
    if dispatcher is None or on_connect is None:
        return True
    from ._ffi import lib

    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        info = c_info.contents
        attempt = _events.ConnectAttempt(
            server_index=info.server_index, url=(info.url or b"").decode("utf-8", "replace"), attempt=info.attempt
        )
        wanted = on_connect(attempt)
        if wanted is None:
            return True
        for name, value in (wanted.headers or {}).items():
            _apply(lib.lc_connect_request_set_header(request, name.encode("utf-8"), value.encode("utf-8")))
        if wanted.subprotocols is not None:
            names = [p.encode("utf-8") for p in wanted.subprotocols]
            array = (ctypes.c_char_p * max(len(names), 1))(*names)
            _apply(lib.lc_connect_request_set_subprotocols(request, array, len(names)))
        if wanted.token is not None:
            token = wanted.token.encode("utf-8") if isinstance(wanted.token, str) else bytes(wanted.token)
            buffer = (ctypes.c_uint8 * max(len(token), 1)).from_buffer_copy(token.ljust(1, b"\0"))
            _apply(lib.lc_connect_request_set_token(request, buffer, len(token)))
        return True
    except BaseException as exc:  # noqa: BLE001 - nothing may unwind into C
        dispatcher.record(exc)
        try:
            lib.lc_connect_request_set_error(request, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace"))
        except BaseException:  # noqa: BLE001
            pass
        return False
    finally:
        _local.depth -= 1


def _apply(status: int) -> None:
    from ._errors import check

    check(status)


#: The C function pointers the library gets; module globals, so they live as
#: long as the library may call them.
CONNECT_TRAMPOLINE = _ffi.CONNECT_CB(_connect_trampoline)
EVENT_TRAMPOLINE = _ffi.EVENT_CB(_event_trampoline)
MESSAGES_TRAMPOLINE = _ffi.MESSAGES_CB(_messages_trampoline)
