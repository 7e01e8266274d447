#!/usr/bin/env bash
# C tests: build each program with warnings as errors against the committed
# header and the built library, run it under valgrind against the real test
# server, build and run it again under AddressSanitizer and
# UndefinedBehaviorSanitizer, check the exported symbols, and run the chat
# example scripted. The stress program runs 50 cycles under valgrind and
# LONGCONN_STRESS_CYCLES (default 1000) under the sanitizers.
#
#   tests/c/run.sh TARGET_DIR      (holds liblongconn.so and longconn-server)
set -uo pipefail
target=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mktemp -d)
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$out"' EXIT

CC=${CC:-cc}
cflags=(-std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 -Wall -Wextra -Wpedantic -Werror -I"$root/include" -I"$here")
ldflags=(-L"$target" -llongconn -Wl,-rpath,"$target" -lpthread)
valgrind=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --child-silent-after-fork=yes)

sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# shellcheck source=../scripted_chat.sh
. "$here/../scripted_chat.sh"

"$target/longconn-server" --mode echo --longconn-port 0 --length-port off --line-port 0 --ws-port off --quiet >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do grep -q '^ready' "$out/server.log" && break; sleep 0.05; done
port=$(sed -n 's/^listening longconn .*:\([0-9]*\)$/\1/p' "$out/server.log")
line_port=$(sed -n 's/^listening line .*:\([0-9]*\)$/\1/p' "$out/server.log")
url="tcp://127.0.0.1:$port"

for src in "$here"/*.c; do
    name=$(basename "$src" .c)
    if ! $CC "${cflags[@]}" "$src" -o "$out/$name" "${ldflags[@]}" 2>"$out/$name.build"; then
        cat "$out/$name.build"
        fail "$name (build)"
        continue
    fi
    if LONGCONN_STRESS_CYCLES=50 timeout 300 "${valgrind[@]}" "$out/$name" "$url" >"$out/$name.log" 2>&1; then
        pass "$name"
    else
        cat "$out/$name.log"
        fail "$name"
    fi
    # The same program with ASan and UBSan compiled in (the Rust library is
    # not instrumented, but every C access and every malloc/free is checked).
    if ! $CC "${cflags[@]}" "${sanitize[@]}" "$src" -o "$out/$name.asan" "${ldflags[@]}" 2>"$out/$name.asan.build"; then
        cat "$out/$name.asan.build"
        fail "$name (sanitizer build)"
    elif LONGCONN_STRESS_CYCLES=${LONGCONN_STRESS_CYCLES:-1000} timeout 300 "$out/$name.asan" "$url" >"$out/$name.asan.log" 2>&1; then
        pass "$name (asan+ubsan)"
    else
        cat "$out/$name.asan.log"
        fail "$name (asan+ubsan)"
    fi
    # This one prints nothing itself; anything in its output came from the library.
    if [ "$name" = log_and_runtime ]; then
        if [ -s "$out/$name.log" ]; then cat "$out/$name.log"; fail "library_prints_nothing"; else pass "library_prints_nothing"; fi
    fi
done

# The header also builds as C++, and the example builds with warnings as errors.
if $CC "${cflags[@]}" "$root/examples/c/chat.c" -o "$out/chat" "${ldflags[@]}"; then
    # Scripted sessions over line framing: a line and /quit, then a line and Ctrl-C.
    line_url="tcp://127.0.0.1:$line_port?framing=line"
    chat_quits chat_example chat "$out" "${valgrind[@]}" "$out/chat" "$line_url"
    chat_interrupted chat_example_ctrl_c chat_int "$out" "${valgrind[@]}" "$out/chat" "$line_url"
else
    fail "chat_example (build)"
fi

# The static library links too: the chat example built against liblongconn.a
# starts and prints its usage (exit status 2) without the shared library.
if $CC "${cflags[@]}" "$root/examples/c/chat.c" -o "$out/chat_static" "$target/liblongconn.a" -lpthread -ldl -lm 2>"$out/static.build"; then
    "$out/chat_static" >/dev/null 2>"$out/static.log"
    if [ $? -eq 2 ] && grep -q usage "$out/static.log" && ! ldd "$out/chat_static" | grep -q liblongconn; then
        pass "static_library_links"
    else
        fail "static_library_links"
    fi
else
    cat "$out/static.build"
    fail "static_library_links (build)"
fi

# The C example in the README compiles and links as printed.
awk '/^```c$/{inside=1; next} /^```$/{inside=0} inside' "$root/README.md" >"$out/readme_example.c"
if [ -s "$out/readme_example.c" ] && $CC "${cflags[@]}" "$out/readme_example.c" -o "$out/readme_example" "${ldflags[@]}"; then
    pass "readme_example_compiles"
else
    fail "readme_example_compiles"
fi

# Only lc_* symbols may be exported.
foreign=$(nm -D --defined-only "$target/liblongconn.so" | awk '{print $3}' | grep -v '^lc_' || true)
if [ -z "$foreign" ]; then pass "exports_only_lc_symbols"; else echo "$foreign"; fail "exports_only_lc_symbols"; fi

# The library must not contain the test server's code.
if nm "$target/liblongconn.so" | grep -q 'longconn_server'; then fail "server_not_in_library"; else pass "server_not_in_library"; fi

echo "c-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
