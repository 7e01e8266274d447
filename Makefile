# longconn: the two commands a new user needs are `make demo` and `make test`.

CARGO   ?= cargo
CC      ?= cc
CFLAGS  ?= -std=c99 -O1 -g -Wall -Wextra -Wpedantic -Werror
CXX     ?= c++
PYTHON  ?= python3
ROOT    := $(abspath .)
DEBUG   := $(ROOT)/target/debug
RELEASE := $(ROOT)/target/release
BUILD   := $(ROOT)/build
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR   := $(word 1,$(subst ., ,$(VERSION)))
MINOR   := $(word 2,$(subst ., ,$(VERSION)))

# Where `make install` puts the library, like any autotools or CMake project.
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DESTDIR    ?=

.PHONY: all demo test test-rust test-c test-cpp test-python check-header header lint bench bench-peers bench-durable bench-connect bench-fleet bench-outbox bench-http bench-ws-compression bench-instructions check-modules install uninstall test-install fuzz fuzz-short audit audit-if-available python clean

all: $(BUILD)/chat

$(RELEASE)/liblongconn.so $(RELEASE)/longconn-server: FORCE
	$(CARGO) build --release -p longconn -p longconn-server

$(BUILD)/chat: examples/c/chat.c include/longconn.h $(RELEASE)/liblongconn.so
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Iinclude $< -L$(RELEASE) -llongconn -Wl,-rpath,$(RELEASE) -o $@

# Builds everything, starts a chat server and two scripted C chat clients,
# kills and restarts the server mid-conversation, and prints both transcripts.
demo: $(BUILD)/chat
	examples/demo.sh $(RELEASE)/longconn-server $(BUILD)/chat

# Every test: formatting, lints, Rust unit and integration tests, the header
# check, the C tests under valgrind and the sanitizers, the Python binding's
# tests, a short run of every fuzz target, and the dependency audit.
test: lint check-modules test-rust check-header test-c test-cpp test-python test-install fuzz-short audit-if-available

lint:
	$(CARGO) fmt --all -- --check
	cd fuzz && $(CARGO) fmt -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The integration tests start the real server, found next to them in target/debug.
test-rust:
	$(CARGO) build -p longconn-server
	$(CARGO) test --workspace --all-targets

# The committed header must be what the source generates (a unit test
# compares it with the one build.rs writes to OUT_DIR), and compile as C99 and C++.
check-header:
	$(CARGO) test -p longconn --lib committed_header_matches_the_source
	echo '#include "longconn.h"' | $(CC) -std=c99 -Wall -Wextra -Wpedantic -Werror -Iinclude -x c -fsyntax-only -
	echo '#include "longconn.h"' | $(CXX) -std=c++11 -Wall -Wextra -Wpedantic -Werror -Iinclude -x c++ -fsyntax-only -

# Regenerates include/longconn.h from the source; commit the result.
header:
	LONGCONN_WRITE_HEADER=1 $(CARGO) test -p longconn --lib committed_header_matches_the_source

test-c:
	$(CARGO) build -p longconn -p longconn-server
	tests/c/run.sh $(DEBUG)

# The C++ wrapper (include/longconn.hpp) and the C++ chat example, under ASan and UBSan.
test-cpp:
	$(CARGO) build -p longconn -p longconn-server
	CXX=$(CXX) tests/cpp/run.sh $(DEBUG)

test-python:
	$(CARGO) build -p longconn -p longconn-server
	$(PYTHON) -m pytest --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet pytest
	$(PYTHON) -c "import websockets" 2>/dev/null || $(PYTHON) -m pip install --quiet websockets
	$(PYTHON) -c "import sse_starlette, uvicorn" 2>/dev/null || $(PYTHON) -m pip install --quiet sse-starlette uvicorn
	@# The browser test drives Debian's Chromium; playwright-core comes from npm in the test itself.
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	PYTHONPATH=$(ROOT)/bindings/python/src LONGCONN_TARGET_DIR=$(DEBUG) $(PYTHON) -m pytest -q bindings/python/tests
	$(PYTHON) -m mypy --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet mypy
	cd bindings/python && $(PYTHON) -m mypy --strict src/longconn
	MYPYPATH=$(ROOT)/bindings/python/src $(PYTHON) -m mypy --strict examples/python/chat.py examples/python/chat_async.py
	PYTHON=$(PYTHON) bindings/python/tests/wheel.sh $(DEBUG)/longconn-server

# Installs the C library: liblongconn.so.$(VERSION) with its SONAME link
# liblongconn.so.$(MAJOR) and the link-time liblongconn.so, liblongconn.a,
# the header, a pkg-config file and a CMake package (longconn::longconn).
install: $(RELEASE)/liblongconn.so
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/longconn $(DESTDIR)$(INCLUDEDIR)
	install -m 755 $(RELEASE)/liblongconn.so $(DESTDIR)$(LIBDIR)/liblongconn.so.$(VERSION)
	ln -sf liblongconn.so.$(VERSION) $(DESTDIR)$(LIBDIR)/liblongconn.so.$(MAJOR)
	ln -sf liblongconn.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/liblongconn.so
	install -m 644 $(RELEASE)/liblongconn.a $(DESTDIR)$(LIBDIR)/liblongconn.a
	install -m 644 include/longconn.h $(DESTDIR)$(INCLUDEDIR)/longconn.h
	install -m 644 include/longconn.hpp $(DESTDIR)$(INCLUDEDIR)/longconn.hpp
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' \
	    packaging/longconn.pc.in >$(DESTDIR)$(LIBDIR)/pkgconfig/longconn.pc
	libdir_rel=$$(realpath -m --relative-to=$(PREFIX) $(LIBDIR)); \
	include_rel=$$(realpath -m --relative-to=$(PREFIX) $(INCLUDEDIR)); \
	to_prefix=$$(realpath -m --relative-to=$(LIBDIR)/cmake/longconn $(PREFIX)); \
	for f in longconn-config longconn-config-version; do \
	    sed -e "s|@CMAKE_TO_PREFIX@|$$to_prefix|; s|@LIBDIR_REL@|$$libdir_rel|; s|@INCLUDEDIR_REL@|$$include_rel|" \
	        -e 's|@VERSION@|$(VERSION)|; s|@MAJOR@|$(MAJOR)|g; s|@MINOR@|$(MINOR)|g' \
	        packaging/$$f.cmake.in >$(DESTDIR)$(LIBDIR)/cmake/longconn/$$f.cmake; \
	done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/liblongconn.so.$(VERSION) $(DESTDIR)$(LIBDIR)/liblongconn.so.$(MAJOR) \
	    $(DESTDIR)$(LIBDIR)/liblongconn.so $(DESTDIR)$(LIBDIR)/liblongconn.a $(DESTDIR)$(INCLUDEDIR)/longconn.h \
	    $(DESTDIR)$(INCLUDEDIR)/longconn.hpp $(DESTDIR)$(LIBDIR)/pkgconfig/longconn.pc
	rm -rf $(DESTDIR)$(LIBDIR)/cmake/longconn

# A staged install (DESTDIR), and programs built against it with pkg-config
# and with CMake, run.
test-install:
	command -v cmake >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq cmake)
	command -v pkg-config >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq pkg-config)
	tests/install/run.sh

# Installs the Python package with a copy of the release library inside it.
# A virtual environment in .venv with the package installed: pip builds the
# C library with cargo and puts it inside the package (a platform wheel).
python:
	$(PYTHON) -m venv .venv
	.venv/bin/pip install --quiet ./bindings/python
	@echo "installed into .venv: run . .venv/bin/activate, then python3 examples/python/chat.py tcp://127.0.0.1:7070"

# Fuzzing with cargo-afl (installed on first use): every target for
# FUZZ_SECONDS each; fails on any crash or hang. `make test` runs 15 s each.
FUZZ_SECONDS ?= 300
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

fuzz-short:
	fuzz/run.sh 15

# The RustSec audit, offline, against the advisory database snapshot:
# fails on any vulnerability, and on unmaintained or yanked crates too.
ADVISORY_DB ?= $(abspath ../shared/advisory-db)
audit:
	command -v cargo-audit >/dev/null 2>&1 || $(CARGO) install --locked cargo-audit --version 0.22.2
	$(CARGO) audit --db $(ADVISORY_DB) --no-fetch --stale --deny warnings
	cd fuzz && $(CARGO) audit --db $(ADVISORY_DB) --no-fetch --stale --deny warnings

audit-if-available:
	@if [ -d "$(ADVISORY_DB)" ]; then $(MAKE) --no-print-directory audit; \
	else echo "SKIP audit: no advisory database at $(ADVISORY_DB) (set ADVISORY_DB)"; fi

bench:
	$(CARGO) build --release -p longconn-server
	$(CARGO) bench --bench loopback

# longconn against the peers of issue 11 (docs/BENCHMARKS.md): raw tokio,
# tokio-tungstenite, the libwebsockets C client, Python's websockets and
# websocket-client; installs the C library and the Python packages if missing.
bench-peers:
	pkg-config --exists libwebsockets || (apt-get update -qq && apt-get install -y -qq libwebsockets-dev)
	$(PYTHON) -c "import websockets, websocket" 2>/dev/null || $(PYTHON) -m pip install --quiet websockets websocket-client
	$(CARGO) build --release -p longconn -p longconn-server
	$(CARGO) bench --bench peers
	$(PYTHON) benches/python_bench.py

# longconn's acknowledgements next to the durable brokers of issue 22
# (docs/BENCHMARKS.md): Redis Streams, NATS JetStream and mosquitto, from
# Debian's packages, installed if missing.
# WebSocket compression on and off, longconn next to PyPI websockets (about 30 s).
bench-ws-compression:
	$(PYTHON) -c "import websockets" 2>/dev/null || $(PYTHON) -m pip install --quiet websockets
	$(CARGO) build --release -p longconn -p longconn-server
	$(PYTHON) benches/ws_compression.py

# Server-Sent Events received per second next to a plain hyper client (about 30 s).
bench-http:
	$(CARGO) build --release -p longconn-server
	$(CARGO) bench --bench http

# Round trips through proxies next to direct, and failover times (about a minute).
bench-connect:
	command -v tinyproxy >/dev/null 2>&1 && command -v microsocks >/dev/null 2>&1 \
		|| (apt-get update -qq && apt-get install -y -qq tinyproxy microsocks)
	$(CARGO) build --release -p longconn-server
	$(CARGO) bench --bench connect

bench-fleet:
	command -v redis-server >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq redis-server)
	$(CARGO) build --release -p longconn-server
	$(CARGO) bench --bench fleet

bench-outbox:
	command -v mosquitto >/dev/null 2>&1 && [ -f /usr/include/MQTTAsync.h ] \
		|| (apt-get update -qq && apt-get install -y -qq mosquitto libpaho-mqtt-dev)
	$(CARGO) build --release -p longconn-server
	$(CARGO) bench --bench outbox

bench-durable:
	command -v redis-server >/dev/null 2>&1 && command -v nats-server >/dev/null 2>&1 && command -v mosquitto >/dev/null 2>&1 \
		&& [ -f /usr/include/MQTTAsync.h ] \
		|| (apt-get update -qq && apt-get install -y -qq redis-server nats-server mosquitto libpaho-mqtt-dev)
	$(CARGO) build --release -p longconn-server
	$(CARGO) bench --bench durable

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

FORCE:

# Instructions per lc_client_send under callgrind (docs/BENCHMARKS.md): exact
# and repeatable, for comparing two builds of the send path.
bench-instructions: $(RELEASE)/liblongconn.so
	@mkdir -p $(BUILD)
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -Iinclude benches/send_instructions.c -L$(RELEASE) -llongconn -Wl,-rpath,$(RELEASE) -o $(BUILD)/send_instructions
	@echo "lc_client_send:"
	valgrind --tool=callgrind --callgrind-out-file=$(BUILD)/send_instructions.callgrind $(BUILD)/send_instructions 2>&1 | grep 'refs'
	@echo "lc_client_send_wait, with room:"
	valgrind --tool=callgrind --callgrind-out-file=$(BUILD)/send_wait_instructions.callgrind $(BUILD)/send_instructions wait 2>&1 | grep 'refs'

# Import cycles between modules (docs/ARCHITECTURE.md), with cargo-modules.
check-modules:
	command -v cargo-modules >/dev/null 2>&1 || $(CARGO) install --locked cargo-modules --version 0.27.0
	$(CARGO) modules dependencies -p longconn-core --lib --no-externs --no-sysroot | scripts/module_cycles.py core/src
	$(CARGO) modules dependencies -p longconn --lib --no-externs --no-sysroot | scripts/module_cycles.py src
	$(CARGO) modules dependencies -p longconn-server --lib --no-externs --no-sysroot | scripts/module_cycles.py server/src
