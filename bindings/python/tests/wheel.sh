#!/usr/bin/env bash
# The Python package as a user gets it: `pip wheel ./bindings/python` builds
# the C library with cargo and puts it inside a platform-tagged wheel; the
# wheel, installed into a fresh venv, imports and talks to the real server
# from outside the repository, with no environment variable pointing at the
# library.
#
#   bindings/python/tests/wheel.sh SERVER_BINARY
set -uo pipefail
server_bin=$1
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
python=${PYTHON:-python3}

"$python" -m pip wheel --quiet --no-deps -w "$work/wheels" "$here" || { echo "FAIL wheel (build)"; exit 1; }
wheel=$(ls "$work"/wheels/longconn-*.whl)
case "$(basename "$wheel")" in
    longconn-*-py3-none-linux_*.whl) echo "PASS wheel_is_platform_tagged ($(basename "$wheel"))" ;;
    *) echo "FAIL wheel_is_platform_tagged: $(basename "$wheel")"; exit 1 ;;
esac
"$python" -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); sys.exit(0 if 'longconn/lib/liblongconn.so' in names else 1)" "$wheel" ||
    { echo "FAIL wheel_carries_the_library"; exit 1; }
echo "PASS wheel_carries_the_library"

"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel" || { echo "FAIL wheel (install)"; exit 1; }
"$server_bin" --mode echo --longconn-port 0 --length-port off --line-port off --ws-port off --data-dir memory --quiet \
    >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do grep -q '^ready' "$work/server.log" && break; sleep 0.05; done
port=$(sed -n 's/^listening longconn .*:\([0-9]*\)$/\1/p' "$work/server.log")
cd "$work"
if env -u LONGCONN_LIBRARY -u PYTHONPATH "$work/venv/bin/python" - "$port" <<'PY'
import sys
import longconn

assert "/venv/" in longconn.__file__, longconn.__file__
with longconn.Client(f"tcp://127.0.0.1:{sys.argv[1]}") as client:
    client.connect()
    client.send("from the wheel")
    for event in client.events(timeout=10):
        if event.message is not None:
            assert event.message.text == "from the wheel"
            break
    else:
        raise SystemExit("no echo")
PY
then
    echo "PASS installed_wheel_connects"
else
    echo "FAIL installed_wheel_connects"
    exit 1
fi
