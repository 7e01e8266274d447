"""Builds the longconn C library with cargo and ships it inside the wheel.

``pip install ./bindings/python`` (from a checkout, with a Rust toolchain)
runs ``cargo build --release -p longconn`` and puts ``liblongconn.so`` in
``longconn/lib/``, where the package loads it from: the installed package
needs no environment variable and no separate install of the library. The
wheel is tagged ``py3-none-<platform>``: it holds native code, but no
Python extension module, so it fits every Python 3 on that platform.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LIBRARY = "liblongconn.dylib" if sys.platform == "darwin" else "liblongconn.so"


class build_py_with_library(build_py):
    """The usual build_py, then the C library, built and copied beside the package."""

    def run(self) -> None:
        super().run()
        destination = Path(self.build_lib) / "longconn" / "lib"
        destination.mkdir(parents=True, exist_ok=True)
        shipped = HERE / "src" / "longconn" / "lib" / LIBRARY
        if (ROOT / "Cargo.toml").is_file():
            cargo = os.environ.get("CARGO", "cargo")
            command = [cargo, "build", "--release", "-p", "longconn", "--manifest-path", str(ROOT / "Cargo.toml")]
            try:
                subprocess.run(command, check=True)
            except FileNotFoundError:
                sys.exit("longconn: building the C library needs cargo (https://rustup.rs) on PATH, or CARGO=...")
            target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
            built = target / "release" / LIBRARY
        elif shipped.is_file():
            built = shipped  # a source tree that already carries the library
        else:
            sys.exit("longconn: build from the longconn repository (bindings/python), where cargo can build the library")
        shutil.copy2(built, destination / LIBRARY)


class BinaryDistribution(Distribution):
    """Holds native code: built into the platform's library directory."""

    def has_ext_modules(self) -> bool:
        return True


class platform_wheel(bdist_wheel):
    """A wheel for this platform, for any Python 3: the library is not an extension module."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(distclass=BinaryDistribution, cmdclass={"build_py": build_py_with_library, "bdist_wheel": platform_wheel})
