#!/usr/bin/env bash
# The longconn demo: a chat server with its store in a data directory, two
# C chat clients (alice and bob, both with acknowledged delivery), a
# conversation, a server crash (kill -9) and restart, and the conversation
# going on afterwards: both sessions resume under their names, and a line
# typed while the server was down reaches bob exactly once.
#
#   examples/demo.sh SERVER_BINARY CHAT_BINARY
set -euo pipefail
server_bin=$1
chat_bin=$2
work=$(mktemp -d)
server_pid=""
cleanup() {
    exec 3>&- 4>&- 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 10 s for a line matching $2 in file $1.
wait_for() {
    for _ in $(seq 1 200); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "demo: timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    exit 1
}

start_server() {
    "$server_bin" --mode chat --longconn-port "$1" --length-port off --line-port off --ws-port off \
        --data-dir "$work/data" >>"$work/server.log" 2>&1 &
    server_pid=$!
    wait_for "$work/server.log" "^ready"
}

start_server 0
lc_port=$(sed -n 's/^listening longconn .*:\([0-9]*\)$/\1/p' "$work/server.log")
echo "== chat server on 127.0.0.1:$lc_port, store in $work/data"

mkfifo "$work/alice.in" "$work/bob.in"
# Bob joins first, so the server names him client-1 and alice client-2;
# their sessions keep these names across the restart.
"$chat_bin" "tcp://127.0.0.1:$lc_port" <"$work/bob.in" >"$work/bob.out" 2>&1 &
exec 4>"$work/bob.in"
wait_for "$work/server.log" "connect client-1"
"$chat_bin" "tcp://127.0.0.1:$lc_port" <"$work/alice.in" >"$work/alice.out" 2>&1 &
exec 3>"$work/alice.in"
wait_for "$work/server.log" "connect client-2"

echo "hello bob, this is alice" >&3
wait_for "$work/bob.out" "hello bob"
echo "hi alice! bob here" >&4
wait_for "$work/alice.out" "bob here"

echo "== killing the server"
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null || true
wait_for "$work/alice.out" "reconnecting in"
echo "alice: this was typed while the server was down" >&3
echo "== restarting the server on the same port and data"
start_server "$lc_port"
wait_for "$work/server.log" "connect client-1 .*(resumed session)"
wait_for "$work/server.log" "connect client-2 .*(resumed session)"
echo "still here after the restart" >&4
wait_for "$work/alice.out" "still here"
wait_for "$work/bob.out" "typed while the server was down"

echo "/quit" >&3
echo "/quit" >&4
wait_for "$work/alice.out" "^\[closed\]"
wait_for "$work/bob.out" "^\[closed\]"
echo
echo "== alice's terminal (tcp://127.0.0.1:$lc_port)"
sed 's/^/  /' "$work/alice.out"
echo "== bob's terminal (tcp://127.0.0.1:$lc_port)"
sed 's/^/  /' "$work/bob.out"
echo "== demo finished"
