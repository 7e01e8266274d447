"""Finds liblongconn and declares every C function it exports.

The declarations mirror ``include/longconn.h``; ``tests/test_header.py`` checks
them against the header, so the two cannot drift apart.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

# Status numbers (lc_status).
OK = 0
TIMEOUT = 1
IN_PROGRESS = 2

c_status = ctypes.c_uint32


class lc_event(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("state", ctypes.c_uint32),
        ("reason", ctypes.c_uint32),
        ("error", ctypes.c_uint32),
        ("attempt", ctypes.c_uint32),
        ("delay_ms", ctypes.c_uint64),
        ("unsent", ctypes.c_uint64),
        ("data", ctypes.POINTER(ctypes.c_uint8)),
        ("len", ctypes.c_size_t),
        ("text", ctypes.c_char_p),
        ("is_text", ctypes.c_bool),
        ("seq", ctypes.c_uint64),
        ("acknowledged", ctypes.c_bool),
        ("resumed", ctypes.c_bool),
        ("recovered", ctypes.c_bool),
        ("epoch", ctypes.c_uint64),
        ("server_index", ctypes.c_uint32),
        ("event_type", ctypes.c_char_p),
        ("event_id", ctypes.c_char_p),
    ]


class lc_stats(ctypes.Structure):
    _fields_ = [
        ("messages_out", ctypes.c_uint64),
        ("bytes_out", ctypes.c_uint64),
        ("messages_in", ctypes.c_uint64),
        ("bytes_in", ctypes.c_uint64),
        ("reconnects", ctypes.c_uint64),
        ("queued_messages", ctypes.c_uint64),
        ("queued_bytes", ctypes.c_uint64),
        ("last_rtt_us", ctypes.c_uint64),
        ("acked_number", ctypes.c_uint64),
        ("unacked_messages", ctypes.c_uint64),
        ("server_index", ctypes.c_uint64),
        ("restored_number", ctypes.c_uint64),
    ]


class lc_buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]


EVENT_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(lc_event))
MESSAGE_CB = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t, ctypes.c_bool
)
#: lc_messages_cb: the list of lc_message structs comes as a plain address,
#: read with struct (see _callbacks), which is cheaper than ctypes fields.
MESSAGES_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
#: struct lc_message { const uint8_t *data; size_t len; bool is_text;
#:                     const char *event_type; const char *event_id; }
LC_MESSAGE_FORMAT = "PN?PP"
LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p)


class lc_connect_info(ctypes.Structure):
    _fields_ = [("server_index", ctypes.c_uint32), ("attempt", ctypes.c_uint32), ("url", ctypes.c_char_p)]


#: lc_connect_cb(user_data, const lc_connect_info *, lc_connect_request *) -> bool
CONNECT_CB = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.POINTER(lc_connect_info), ctypes.c_void_p)

_p = ctypes.c_void_p  # opaque handles: lc_config *, lc_client *
_pp = ctypes.POINTER(ctypes.c_void_p)
_u8p = ctypes.POINTER(ctypes.c_uint8)

#: name -> (restype, argtypes), in the header's order.
SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "lc_client_new": (c_status, [_p, _pp]),
    "lc_client_free": (None, [_p]),
    "lc_client_connect": (c_status, [_p]),
    "lc_client_send": (c_status, [_p, _u8p, ctypes.c_size_t]),
    "lc_client_send_seq": (c_status, [_p, _u8p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint64)]),
    "lc_client_send_text": (c_status, [_p, ctypes.c_char_p, ctypes.c_size_t]),
    "lc_client_send_wait": (c_status, [_p, _u8p, ctypes.c_size_t, ctypes.c_bool, ctypes.c_int32]),
    "lc_client_send_batch": (c_status, [_p, ctypes.POINTER(lc_buffer), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
    "lc_client_close": (c_status, [_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint64)]),
    "lc_client_state": (c_status, [_p, ctypes.POINTER(ctypes.c_uint32)]),
    "lc_client_stats": (c_status, [_p, ctypes.POINTER(lc_stats)]),
    "lc_client_set_heartbeat": (c_status, [_p, ctypes.c_uint32, ctypes.c_uint32]),
    "lc_client_set_reconnect": (
        c_status,
        [_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_double, ctypes.c_double, ctypes.c_uint32],
    ),
    "lc_config_new": (c_status, [ctypes.c_char_p, _pp]),
    "lc_config_free": (None, [_p]),
    "lc_config_set_heartbeat": (c_status, [_p, ctypes.c_uint32, ctypes.c_uint32]),
    "lc_config_set_reconnect": (
        c_status,
        [_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_double, ctypes.c_double, ctypes.c_uint32],
    ),
    "lc_config_set_auto_reconnect": (c_status, [_p, ctypes.c_bool]),
    "lc_config_set_outbox_limits": (c_status, [_p, ctypes.c_size_t, ctypes.c_size_t]),
    "lc_config_set_inbox_limits": (c_status, [_p, ctypes.c_size_t, ctypes.c_size_t]),
    "lc_config_set_max_frame_size": (c_status, [_p, ctypes.c_size_t]),
    "lc_config_set_connect_timeout": (c_status, [_p, ctypes.c_uint32]),
    "lc_config_set_plain_heartbeat": (c_status, [_p, _u8p, ctypes.c_size_t, _u8p, ctypes.c_size_t]),
    "lc_config_add_header": (c_status, [_p, ctypes.c_char_p, ctypes.c_char_p]),
    "lc_config_add_server": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_server_order": (c_status, [_p, ctypes.c_bool]),
    "lc_config_set_proxy": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_http_send_url": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_websocket_compression": (c_status, [_p, ctypes.c_bool]),
    "lc_config_set_outbox_path": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_outbox_sync": (c_status, [_p, ctypes.c_uint32, ctypes.c_uint32]),
    "lc_config_add_subprotocol": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_tls_ca_file": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_tls_server_name": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_tls_client_cert": (c_status, [_p, ctypes.c_char_p, ctypes.c_char_p]),
    "lc_config_set_tls_dangerous_skip_verification": (c_status, [_p, ctypes.c_bool]),
    "lc_config_set_client_name": (c_status, [_p, ctypes.c_char_p]),
    "lc_config_set_protocol_version": (c_status, [_p, ctypes.c_uint32]),
    "lc_config_set_acknowledgement_events": (c_status, [_p, ctypes.c_bool]),
    # Declared for completeness; the Client does not offer it: a Python
    # callback needs the GIL, and waiting for it would stall an I/O thread.
    "lc_config_set_callbacks_on_io_thread": (c_status, [_p, ctypes.c_bool]),
    "lc_config_set_io_in_poll": (c_status, [_p, ctypes.c_bool]),
    "lc_runtime_configure": (c_status, [ctypes.c_uint32, ctypes.c_uint32]),
    "lc_client_set_event_callback": (c_status, [_p, EVENT_CB, ctypes.c_void_p]),
    "lc_client_set_connect_callback": (c_status, [_p, CONNECT_CB, ctypes.c_void_p]),
    "lc_connect_request_set_header": (c_status, [_p, ctypes.c_char_p, ctypes.c_char_p]),
    "lc_connect_request_set_subprotocols": (c_status, [_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]),
    "lc_connect_request_set_token": (c_status, [_p, _u8p, ctypes.c_size_t]),
    "lc_connect_request_set_error": (c_status, [_p, ctypes.c_char_p]),
    "lc_client_set_message_callback": (c_status, [_p, MESSAGE_CB, ctypes.c_void_p]),
    "lc_client_set_messages_callback": (c_status, [_p, MESSAGES_CB, ctypes.c_void_p]),
    "lc_client_poll": (c_status, [_p, ctypes.c_int32, ctypes.POINTER(lc_event)]),
    "lc_client_poll_messages": (
        c_status,
        [_p, ctypes.c_int32, _u8p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_bool),
         ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)],
    ),
    "lc_client_event_fd": (c_status, [_p, ctypes.POINTER(ctypes.c_int)]),
    "lc_set_log_callback": (c_status, [LOG_CB, ctypes.c_void_p, ctypes.c_uint32]),
    "lc_last_error_message": (ctypes.c_char_p, []),
    "lc_status_name": (ctypes.c_char_p, [ctypes.c_uint32]),
    "lc_version": (ctypes.c_char_p, []),
    "lc_version_number": (ctypes.c_uint32, []),
}

_LIBRARY_NAME = {"darwin": "liblongconn.dylib"}.get(sys.platform, "liblongconn.so")


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order."""
    here = Path(__file__).resolve().parent
    paths = []
    env = os.environ.get("LONGCONN_LIBRARY")
    if env:
        paths.append(Path(env))
    paths.append(here / "lib" / _LIBRARY_NAME)  # a copy shipped inside the package
    # Running from a checkout: the repository's build output.
    for parent in here.parents:
        if (parent / "Cargo.toml").is_file() and (parent / "include" / "longconn.h").is_file():
            paths += [parent / "target" / "release" / _LIBRARY_NAME, parent / "target" / "debug" / _LIBRARY_NAME]
            break
    return paths


def _load() -> ctypes.CDLL:
    tried = []
    for path in candidate_paths():
        if path.is_file():
            return ctypes.CDLL(str(path))
        tried.append(str(path))
    system = ctypes.util.find_library("longconn")
    if system:
        return ctypes.CDLL(system)
    tried.append("the system library path (ctypes.util.find_library('longconn'))")
    raise ImportError(
        "longconn: cannot find the longconn C library. Tried:\n  "
        + "\n  ".join(tried)
        + "\nSet LONGCONN_LIBRARY to the path of liblongconn.so, or build it with `cargo build --release`."
    )


lib = _load()
for _name, (_restype, _argtypes) in SIGNATURES.items():
    _function = getattr(lib, _name)
    _function.restype = _restype
    _function.argtypes = _argtypes


def last_error() -> str:
    message = lib.lc_last_error_message()
    return message.decode("utf-8", "replace") if message else ""


def status_name(status: int) -> str:
    name: bytes = lib.lc_status_name(status)
    return name.decode()
