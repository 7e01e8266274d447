"""Exceptions raised for non-OK statuses of the C library."""

from __future__ import annotations

from . import _ffi


class LongconnError(Exception):
    """A longconn call failed. ``status`` is the C status number, ``status_name`` its name."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.status_name = _ffi.status_name(status) if status else ""


class InvalidArgumentError(LongconnError, ValueError):
    """An argument is out of range, malformed, or inconsistent."""


class InvalidUrlError(InvalidArgumentError):
    """The server URL cannot be parsed or uses an unsupported scheme."""


class MessageTooLargeError(InvalidArgumentError):
    """The message is larger than the maximum frame size."""


class QueueFullError(LongconnError):
    """The outbox is full; the message was not queued. Retry later."""

    #: For ``send_many``: how many of the first messages were queued.
    queued: int = 0


class ClosedError(LongconnError):
    """The client has been closed."""


class AlreadyStartedError(LongconnError):
    """Already done once (connect), or too late (runtime settings)."""


class ForkedError(LongconnError):
    """Used in a child process after fork()."""


class StorageError(LongconnError, OSError):
    """The outbox file could not be opened, locked, read or written."""


class LibraryError(LongconnError):
    """The library could not start a thread, or caught an internal error."""


class LongconnTimeoutError(LongconnError, TimeoutError):
    """The operation did not finish in time."""


_BY_STATUS: dict[int, type[LongconnError]] = {
    1: LongconnTimeoutError,
    100: InvalidArgumentError,
    101: InvalidArgumentError,
    102: InvalidArgumentError,
    103: InvalidUrlError,
    104: MessageTooLargeError,
    200: QueueFullError,
    201: ClosedError,
    202: AlreadyStartedError,
    300: ForkedError,
    301: LibraryError,
    302: StorageError,
    900: LibraryError,
}


def error_for(status: int) -> LongconnError:
    """The exception for a failed call, carrying the library's message."""
    cls = _BY_STATUS.get(status, LongconnError)
    return cls(_ffi.last_error() or _ffi.status_name(status), status)


def check(status: int) -> None:
    """Raises the matching exception unless ``status`` is OK."""
    if status != _ffi.OK:
        raise error_for(status)
