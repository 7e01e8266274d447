"""The library's log lines, sent to Python's ``logging`` (logger ``longconn``).

The C library prints nothing; it hands its log lines to a callback, which
here logs them as records of the ``longconn`` logger: errors as ERROR,
warnings as WARNING, connection changes as INFO. Configure that logger as
any other (``logging.getLogger("longconn").setLevel(...)``). Records are made
on the library's own threads; a handler must not call back into longconn.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
from typing import Optional

from . import _ffi
from ._errors import check

log = logging.getLogger("longconn")

#: The library's levels (1 error .. 4 debug) as logging's.
_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}


def _log_trampoline(user_data: Optional[int], level: int, message: Optional[bytes]) -> None:
    try:
        log.log(_LEVELS.get(level, logging.INFO), "%s", (message or b"").decode("utf-8", "replace"))
    except BaseException:  # noqa: BLE001 - nothing may unwind into C
        pass


#: The C function pointer the library gets; a module global, so it lives as
#: long as the library may call it.
_LOG_TRAMPOLINE = _ffi.LOG_CB(_log_trampoline)


def install() -> None:
    """Routes the library's log lines to the ``longconn`` logger (done on import)."""
    check(_ffi.lib.lc_set_log_callback(_LOG_TRAMPOLINE, None, 4))


@atexit.register
def _uninstall_at_exit() -> None:
    # Registered after the client module's exit hook, so it runs first: lines
    # from clients freed at exit are dropped instead of reaching a dying
    # interpreter.
    try:
        _ffi.lib.lc_set_log_callback(_ffi.LOG_CB(), ctypes.c_void_p(), 4)
    except Exception:  # noqa: BLE001
        pass
