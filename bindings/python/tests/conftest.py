"""Test support: the real longconn-server process and the real library."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("LONGCONN_TARGET_DIR", REPO / "target" / "debug"))
SERVER_BIN = TARGET / "longconn-server"
# Test the library just built in TARGET, not whichever copy the package would find first.
os.environ.setdefault("LONGCONN_LIBRARY", str(TARGET / "liblongconn.so"))
WITHIN = 10.0


class Server:
    """A running longconn-server on free loopback ports; killed on stop()."""

    def __init__(self, mode: str, *flags: str, ports: Optional[dict[str, int]] = None) -> None:
        self.mode = mode
        if "--data-dir" not in flags:
            # Restarts on fixed ports would otherwise share a store under $HOME.
            flags = (*flags, "--data-dir", "memory")
        self.flags = flags
        # Every listener on a free port (0), never a fixed one.
        ports = ports or {"longconn": 0, "length": 0, "line": 0, "ws": 0}
        self.proc = subprocess.Popen(
            [str(SERVER_BIN), "--mode", mode, "--quiet"]
            + ["--longconn-port", str(ports["longconn"]), "--length-port", str(ports["length"])]
            + ["--line-port", str(ports["line"]), "--ws-port", str(ports.get("ws", 0)), *flags],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ports: dict[str, int] = {}
        #: The self-signed certificate of the TLS listeners, if any.
        self.certificate: Optional[str] = None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("tls certificate "):
                self.certificate = line.split(" ", 2)[2].strip()
            if line.startswith("listening "):
                _, framing, addr = line.split()
                self.ports[framing] = int(addr.rsplit(":", 1)[1])
            if line.startswith("ready"):
                break
        else:
            raise RuntimeError("longconn-server did not start")

    def url(self, framing: str = "longconn") -> str:
        suffix = "" if framing == "longconn" else f"?framing={framing}"
        return f"tcp://127.0.0.1:{self.ports[framing]}{suffix}"

    def signal(self, sig: int) -> None:
        """Sends `sig`; for SIGSTOP, returns once the process is stopped
        (a signal takes effect when the process next runs, which on a busy
        machine can be after it handled what came meanwhile)."""
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            deadline = time.monotonic() + WITHIN
            while Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
                assert time.monotonic() < deadline, "the server did not stop"
                time.sleep(0.001)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()

    def restart(self) -> "Server":
        """Kills this server and starts another on the same ports."""
        self.stop()
        return Server(self.mode, *self.flags, ports=dict(self.ports))


@pytest.fixture
def server_factory():
    servers: list[Server] = []

    def start(mode: str = "echo", *flags: str) -> Server:
        server = Server(mode, *flags)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def echo_server(server_factory) -> Server:
    return server_factory("echo")



class Collector:
    """Collects callback values and wakes waiters."""

    def __init__(self) -> None:
        self.items: list = []
        self.changed = threading.Condition()

    def __call__(self, item) -> None:
        with self.changed:
            self.items.append(item)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[list], bool], within: float = WITHIN) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.items), timeout=within)
