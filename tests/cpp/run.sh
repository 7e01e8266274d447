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
    mkfifo "$out/chat.in"
    timeout 60 "$out/chat" "$url" <"$out/chat.in" >"$out/chat.log" 2>&1 &
    chat_pid=$!
    exec 5>"$out/chat.in"
    echo 'hello from the C++ chat' >&5
    for _ in $(seq 1 400); do grep -q '^hello from the C++ chat$' "$out/chat.log" && break; sleep 0.05; done
    echo '/quit' >&5
    exec 5>&-
    wait "$chat_pid"
    status=$?
    if [ $status -eq 0 ] && grep -q '^hello from the C++ chat$' "$out/chat.log" && grep -q '^\[closed\]$' "$out/chat.log" \
        && grep -q 'acknowledged delivery, new session' "$out/chat.log"; then
        pass "cpp_chat_example (asan+ubsan)"
    else
        echo "exit status $status"; cat "$out/chat.log"
        fail "cpp_chat_example (asan+ubsan)"
    fi
    mkfifo "$out/chat_int.in"
    timeout 60 "$out/chat" "$url" <"$out/chat_int.in" >"$out/chat_int.log" 2>&1 &
    chat_pid=$!
    exec 6>"$out/chat_int.in"
    echo 'before ctrl-c' >&6
    for _ in $(seq 1 400); do grep -q '^before ctrl-c$' "$out/chat_int.log" && break; sleep 0.05; done
    kill -INT "$chat_pid"
    wait "$chat_pid"
    status=$?
    exec 6>&-
    if [ $status -eq 0 ] && grep -q '^\[interrupted\]$' "$out/chat_int.log" && grep -q '^\[closed\]$' "$out/chat_int.log"; then
        pass "cpp_chat_example_ctrl_c"
    else
        echo "exit status $status"; cat "$out/chat_int.log"
        fail "cpp_chat_example_ctrl_c"
    fi
else
    fail "cpp_chat_example (build)"
fi

echo "cpp-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
