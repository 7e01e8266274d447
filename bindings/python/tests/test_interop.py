"""The Python package next to the C library's other users: the C chat
example in the same room, and the package installed with pip."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import longconn
from longconn import EventKind

from conftest import REPO, TARGET, WITHIN


class Program:
    """A line-oriented program whose output lines can be awaited."""

    def __init__(self, argv: list[str], env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            # A test run started in the background ignores SIGINT, and so would
            # the program (Python then installs no KeyboardInterrupt handler):
            # give it the default, as a terminal would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, predicate, within: float = WITHIN) -> str:
        deadline = time.monotonic() + within
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no matching line within {within} s; saw {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=WITHIN)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def c_chat(tmp_path_factory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("a C compiler is needed to build the C chat example")
    binary = tmp_path_factory.mktemp("c") / "chat"
    subprocess.run(
        [compiler, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'include'}", str(REPO / "examples/c/chat.c"),
         "-o", str(binary), f"-L{TARGET}", "-llongconn", f"-Wl,-rpath,{TARGET}"],
        check=True,
    )
    return binary


def test_a_c_client_and_a_python_client_chat_through_the_server(server_factory, c_chat):
    server = server_factory("chat")
    c_client = Program([str(c_chat), server.url("line")])
    c_client.wait_for(lambda line: line.startswith("[connected"))
    with longconn.Client(server.url()) as py_client:
        py_client.connect()
        c_client.wait_for(lambda line: "joined" in line)  # the Python client entered the room
        c_client.type("hello from C")
        heard = None
        for event in py_client.events(timeout=WITHIN):
            if event.kind == EventKind.MESSAGE and event.message.text.endswith(": hello from C"):
                heard = event.message.text
                break
        assert heard is not None
        py_client.send("hello from Python")
        c_client.wait_for(lambda line: line.endswith(": hello from Python"))
    c_client.type("/quit")
    assert c_client.finish() == 0


def test_the_python_chat_example_talks_to_the_c_one(server_factory, c_chat):
    server = server_factory("chat")
    env = dict(os.environ, PYTHONPATH=str(REPO / "bindings/python/src"))
    py_chat = Program([sys.executable, str(REPO / "examples/python/chat.py"), server.url()], env=env)
    py_chat.wait_for(lambda line: line.startswith("[connected"))
    c_client = Program([str(c_chat), server.url("length")])
    c_client.wait_for(lambda line: line.startswith("[connected"))
    py_chat.wait_for(lambda line: "joined" in line)
    py_chat.type("hi from chat.py")
    c_client.wait_for(lambda line: line.endswith(": hi from chat.py"))
    c_client.type("hi from chat.c")
    py_chat.wait_for(lambda line: line.endswith(": hi from chat.c"))
    py_chat.type("/quit")
    py_chat.wait_for(lambda line: line == "[closed]")
    assert py_chat.finish() == 0
    c_client.type("/quit")
    assert c_client.finish() == 0


def test_ctrl_c_closes_the_python_chat_cleanly(echo_server):
    env = dict(os.environ, PYTHONPATH=str(REPO / "bindings/python/src"))
    py_chat = Program([sys.executable, str(REPO / "examples/python/chat.py"), echo_server.url()], env=env)
    py_chat.wait_for(lambda line: line.startswith("[connected"))
    py_chat.type("before ctrl-c")
    py_chat.wait_for(lambda line: line == "before ctrl-c")
    py_chat.proc.send_signal(signal.SIGINT)
    py_chat.wait_for(lambda line: line == "[closed]")
    assert py_chat.finish() == 0
    assert "[interrupted]" in py_chat.seen and not any("Traceback" in line for line in py_chat.seen), py_chat.seen


def test_pip_install_works_and_says_where_it_looked(tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(site), str(REPO / "bindings/python")],
        check=True,
        cwd=tmp_path,
    )
    assert (site / "longconn" / "py.typed").is_file()
    shipped = site / "longconn" / "lib" / "liblongconn.so"
    assert shipped.is_file(), "pip built the library and put it inside the package"
    probe = "import longconn; print(longconn.library_version())"
    env = {k: v for k, v in os.environ.items() if k != "LONGCONN_LIBRARY"}
    env["PYTHONPATH"] = str(site)
    found = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == longconn.library_version(), found.stderr
    # Without the shipped copy and with a wrong LONGCONN_LIBRARY, the error lists where it looked.
    shipped.unlink()
    env["LONGCONN_LIBRARY"] = str(tmp_path / "nowhere.so")
    missing = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "cannot find the longconn C library" in missing.stderr
    assert str(tmp_path / "nowhere.so") in missing.stderr, "the message lists the places it tried"
