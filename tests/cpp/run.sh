#!/usr/bin/env bash
# C++ tests: the wrapper's test program built with warnings as errors and
# run under AddressSanitizer and UndefinedBehaviorSanitizer against the real
# echo server, and the C++ chat example built the same way and run scripted
# (a line and /quit, then Ctrl-C).
#
#   tests/cpp/run.sh TARGET_DIR      (holds liblongconn.so and longconn-server)
set -uo pipefail
target=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mktemp -d)
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$out"' EXIT

CXX=${CXX:-c++}
flags=(-std=c++17 -g -O1 -Wall -Wextra -Werror -Wpedantic -I"$root/include")
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
ldflags=(-L"$target" -llongconn -Wl,-rpath,"$target" -lpthread)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# shellcheck source=../scripted_chat.sh
. "$here/../scripted_chat.sh"

"$target/longconn-server" --mode echo --longconn-port 0 --length-port off --line-port off --ws-port off \
    --data-dir memory --quiet >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do grep -q '^ready' "$out/server.log" && break; sleep 0.05; done
port=$(sed -n 's/^listening longconn .*:\([0-9]*\)$/\1/p' "$out/server.log")
url="tcp://127.0.0.1:$port"

if $CXX "${flags[@]}" "${sanitize[@]}" "$here/client_test.cpp" -o "$out/client_test" "${ldflags[@]}"; then
    if timeout 120 "$out/client_test" "$url" >"$out/client_test.log" 2>&1; then
        pass "client_test (asan+ubsan)"
    else
        cat "$out/client_test.log"
        fail "client_test (asan+ubsan)"
    fi
else
    fail "client_test (build)"
fi

if $CXX "${flags[@]}" "${sanitize[@]}" "$root/examples/cpp/chat.cpp" -o "$out/chat" "${ldflags[@]}"; then
    CHAT_EXPECT='acknowledged delivery, new session' \
        chat_quits "cpp_chat_example (asan+ubsan)" chat "$out" "$out/chat" "$url"
    chat_interrupted cpp_chat_example_ctrl_c chat_int "$out" "$out/chat" "$url"
else
    fail "cpp_chat_example (build)"
fi

echo "cpp-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
