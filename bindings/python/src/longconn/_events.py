"""Events, messages, states and statistics as Python values."""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

from . import _ffi


class Message(bytes):
    """A received message: bytes, with ``.text`` for UTF-8 content."""

    __slots__ = ()

    #: True for a WebSocket text message (a :class:`TextMessage`).
    is_text = False
    #: For a message of an event stream (an :class:`EventMessage`): its
    #: event type and the last event id; None for every other message.
    event_type: Optional[str] = None
    event_id: Optional[str] = None

    @property
    def text(self) -> str:
        """The message decoded as UTF-8 (invalid bytes become U+FFFD)."""
        return self.decode("utf-8", "replace")


class TextMessage(Message):
    """A WebSocket text message: valid UTF-8."""

    __slots__ = ()
    is_text = True


class EventMessage(TextMessage):
    """A message of an event stream (Server-Sent Events, from an
    ``http://`` or ``https://`` server): text, with ``event_type``
    (``"message"`` unless the stream named another) and ``event_id`` (the
    last event id, ``""`` when none)."""

    # bytes subclasses take no slots: the two attributes live in a dict.
    def __new__(cls, data: bytes, event_type: str, event_id: str) -> "EventMessage":
        message = super().__new__(cls, data)
        message.event_type = event_type
        message.event_id = event_id
        return message


class EventKind(enum.IntEnum):
    CONNECTED = 1
    DISCONNECTED = 2
    RECONNECT_SCHEDULED = 3
    MESSAGE = 4
    ERROR = 5
    CLOSED = 6
    ACKNOWLEDGED = 7


class State(enum.IntEnum):
    IDLE = 0
    CONNECTING = 1
    CONNECTED = 2
    WAITING_TO_RECONNECT = 3
    CLOSING = 4
    CLOSED = 5


class DisconnectReason(enum.IntEnum):
    NONE = 0
    PEER_CLOSED = 1
    IO = 2
    HEARTBEAT_TIMEOUT = 3
    PROTOCOL = 4
    FRAME_TOO_LARGE = 5
    CLOSED_BY_USER = 6


class ErrorKind(enum.IntEnum):
    NONE = 0
    CONNECT_FAILED = 1
    HANDSHAKE_FAILED = 2
    PROTOCOL = 3
    FRAME_TOO_LARGE = 4
    HEARTBEAT_TIMEOUT = 5
    IO = 6
    GAVE_UP = 7
    UNAUTHORIZED = 8


@dataclass(frozen=True)
class Event:
    """One thing that happened to a client. Fields that do not apply are zero or None."""

    kind: EventKind
    state: State
    text: str = ""
    message: Optional[Message] = None
    reason: DisconnectReason = DisconnectReason.NONE
    error: ErrorKind = ErrorKind.NONE
    attempt: int = 0
    #: Reconnect delay in seconds.
    delay: float = 0.0
    #: Messages discarded at close (queued, or written and never acknowledged).
    unsent: int = 0
    #: ACKNOWLEDGED: every message up to this number (see Client.send_seq) reached the server.
    seq: int = 0
    #: CONNECTED: acknowledged delivery (protocol version 2): nothing lost, nothing twice.
    acknowledged: bool = False
    #: CONNECTED: the server found this client's session; both directions continue.
    resumed: bool = False
    #: CONNECTED: nothing the server sent is missing (False: resynchronise by other means).
    recovered: bool = False
    #: CONNECTED: the epoch of the server's room history (0: none).
    epoch: int = 0
    #: CONNECTED: the server's place in the client's list (0: the first URL).
    server_index: int = 0


@dataclass(frozen=True)
class Stats:
    """Counters since the client was created."""

    messages_out: int
    bytes_out: int
    messages_in: int
    bytes_in: int
    reconnects: int
    queued_messages: int
    queued_bytes: int
    #: Round-trip time of the last answered ping, in seconds (0.0 before the first).
    last_rtt: float
    #: Every message up to this number is acknowledged (best effort: written).
    acked_number: int = 0
    #: Written messages still waiting for the server's acknowledgement.
    unacked_messages: int = 0
    #: The server of the current (or last) connection: its place in the list.
    server_index: int = 0
    #: With ``outbox_path``: the highest message number the file held when
    #: the client was created (its numbering goes on after it); 0 otherwise.
    restored_number: int = 0


@dataclass(frozen=True)
class ConnectAttempt:
    """What ``on_connect`` is told before each connection attempt."""

    #: The server's place in the client's list (0: the first URL).
    server_index: int
    #: The server's URL.
    url: str
    #: Attempts since the client last connected (or started), from 1.
    attempt: int


@dataclass(frozen=True)
class ConnectRequest:
    """What ``on_connect`` may return to change one attempt: headers that
    replace the configured ones of the same name, the subprotocols to offer
    instead of the configured ones, and a token the longconn protocol
    carries in its hello (protocol 2; at most 2,048 bytes)."""

    token: Optional[Union[bytes, str]] = None
    headers: Optional[Mapping[str, str]] = None
    subprotocols: Optional[Sequence[str]] = None


def message_from(
    data: "ctypes._Pointer[ctypes.c_uint8]",
    length: int,
    text: bool = False,
    event_type: Optional[bytes] = None,
    event_id: Optional[bytes] = None,
) -> Message:
    """Copies a borrowed C buffer into a Message (a TextMessage for text,
    an EventMessage for an event stream's)."""
    payload = ctypes.string_at(data, length) if length else b""
    if event_type is not None:
        return EventMessage(payload, event_type.decode("utf-8", "replace"), (event_id or b"").decode("utf-8", "replace"))
    return (TextMessage if text else Message)(payload)


# Value -> member tables: a dict lookup is much cheaper than IntEnum(value).
_KINDS = {m.value: m for m in EventKind}
_STATES = {m.value: m for m in State}
_REASONS = {m.value: m for m in DisconnectReason}
_ERRORS = {m.value: m for m in ErrorKind}


def event_from(c_event: _ffi.lc_event) -> Event:
    """Copies a borrowed lc_event into an Event."""
    kind = _KINDS[c_event.kind]
    return Event(
        kind=kind,
        state=_STATES[c_event.state],
        text=(c_event.text or b"").decode("utf-8", "replace"),
        message=message_from(c_event.data, c_event.len, c_event.is_text, c_event.event_type, c_event.event_id)
        if kind is EventKind.MESSAGE
        else None,
        reason=_REASONS[c_event.reason],
        error=_ERRORS[c_event.error],
        attempt=c_event.attempt,
        delay=c_event.delay_ms / 1000.0,
        unsent=c_event.unsent,
        seq=c_event.seq,
        acknowledged=c_event.acknowledged,
        resumed=c_event.resumed,
        recovered=c_event.recovered,
        epoch=c_event.epoch,
        server_index=c_event.server_index,
    )


def stats_from(s: _ffi.lc_stats) -> Stats:
    return Stats(
        messages_out=s.messages_out,
        bytes_out=s.bytes_out,
        messages_in=s.messages_in,
        bytes_in=s.bytes_in,
        reconnects=s.reconnects,
        queued_messages=s.queued_messages,
        queued_bytes=s.queued_bytes,
        last_rtt=s.last_rtt_us / 1e6,
        acked_number=s.acked_number,
        unacked_messages=s.unacked_messages,
        server_index=s.server_index,
        restored_number=s.restored_number,
    )
