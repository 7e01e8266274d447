# Scripted runs of a chat example, shared by tests/c/run.sh and
# tests/cpp/run.sh, which source this file and define pass and fail.
#
#   chat_quits NAME TAG DIR COMMAND...        type a line, wait for its echo, /quit
#   chat_interrupted NAME TAG DIR COMMAND...  type a line, wait for its echo, Ctrl-C
#
# COMMAND is the example and its URL (perhaps under valgrind), fed from a
# FIFO; TAG names the files in DIR. CHAT_EXPECT, if set, is one more line
# pattern the output must hold.

# Starts COMMAND with its stdin on a FIFO (descriptor 5), types a line and
# waits (bounded) for the echo server to send it back.
_chat_start() {
    local tag=$1 dir=$2
    shift 2
    mkfifo "$dir/$tag.in"
    timeout 60 "$@" <"$dir/$tag.in" >"$dir/$tag.log" 2>&1 &
    chat_pid=$!
    exec 5>"$dir/$tag.in"
    echo "hello from $tag" >&5
    for _ in $(seq 1 400); do grep -q "^hello from $tag\$" "$dir/$tag.log" && break; sleep 0.05; done
}

# Checks the run: exit status 0, the echo, "[closed]", every extra pattern.
_chat_check() {
    local name=$1 tag=$2 dir=$3 status=$4
    shift 4
    local log="$dir/$tag.log" pattern ok=1
    for pattern in "^hello from $tag\$" '^\[closed\]$' "$@" ${CHAT_EXPECT:+"$CHAT_EXPECT"}; do
        grep -q -- "$pattern" "$log" || ok=0
    done
    if [ "$status" -eq 0 ] && [ $ok -eq 1 ]; then
        pass "$name"
    else
        echo "exit status $status"
        cat "$log"
        fail "$name"
    fi
}

chat_quits() {
    local name=$1 tag=$2 dir=$3
    shift 3
    _chat_start "$tag" "$dir" "$@"
    echo '/quit' >&5
    exec 5>&-
    wait "$chat_pid"
    _chat_check "$name" "$tag" "$dir" $?
}

# Ctrl-C closes as /quit does: exit 0, after flushing, with no crash.
chat_interrupted() {
    local name=$1 tag=$2 dir=$3
    shift 3
    _chat_start "$tag" "$dir" "$@"
    kill -INT "$chat_pid"
    wait "$chat_pid"
    local status=$?
    exec 5>&-
    _chat_check "$name" "$tag" "$dir" $status '^\[interrupted\]$'
}
