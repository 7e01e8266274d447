"""longconn: a long-lived connection client, over the longconn C library.

::

    import longconn
    with longconn.Client("tcp://127.0.0.1:7070", heartbeat=(5.0, 15.0)) as client:
        client.on_message(lambda msg: print(msg.text))
        client.connect()
        client.send("hello")
"""

from ._client import Client, Data, Reconnect
from ._errors import (
    AlreadyStartedError,
    ClosedError,
    ForkedError,
    InvalidArgumentError,
    InvalidUrlError,
    LibraryError,
    LongconnError,
    LongconnTimeoutError,
    MessageTooLargeError,
    QueueFullError,
    StorageError,
)
from ._events import (
    ConnectAttempt,
    ConnectRequest,
    DisconnectReason,
    ErrorKind,
    Event,
    EventKind,
    EventMessage,
    Message,
    State,
    Stats,
    TextMessage,
)
from ._ffi import lib as _lib
from . import _log


_log.install()


def library_version() -> str:
    """The version of the loaded C library."""
    version: bytes = _lib.lc_version()
    return version.decode()


__version__ = "0.1.0"

__all__ = [
    "AlreadyStartedError",
    "Client",
    "ClosedError",
    "ConnectAttempt",
    "ConnectRequest",
    "Data",
    "DisconnectReason",
    "ErrorKind",
    "Event",
    "EventKind",
    "EventMessage",
    "ForkedError",
    "InvalidArgumentError",
    "InvalidUrlError",
    "LibraryError",
    "LongconnError",
    "LongconnTimeoutError",
    "Message",
    "MessageTooLargeError",
    "QueueFullError",
    "StorageError",
    "Reconnect",
    "State",
    "Stats",
    "TextMessage",
    "library_version",
]
