#!/usr/bin/env bash
# Builds the fuzz targets with cargo-afl and runs each for a fixed time;
# fails if AFL++ found a crash or a hang in any of them.
#
#   fuzz/run.sh SECONDS [TARGET ...]     (default: every target in fuzz/src/bin)
#
# Findings land in target/fuzz/<target>/default/{crashes,hangs}; replay one
# with `fuzz/target/release/<target> < FILE`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for src in "$here"/src/bin/*.rs; do targets+=("$(basename "$src" .rs)"); done
fi

command -v cargo-afl >/dev/null 2>&1 || cargo install --locked cargo-afl --version 0.18.2
# AFL++ itself is built once per machine into cargo-afl's data directory.
cargo afl config --build >/dev/null 2>&1 || true  # "already built" on later runs
cd "$here"
cargo afl build --release --quiet

out="$here/../target/fuzz"
mkdir -p "$out"
# No core-dump handler or CPU governor to satisfy in containers and CI.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_QUIET=1 AFL_NO_AFFINITY=1
found=0
for target in "${targets[@]}"; do
    rm -rf "${out:?}/$target"
    echo "fuzzing $target for $seconds s"
    # -t: a single input taking over 250 ms counts as a hang: the corpus holds
    # floods (tiny WebSocket fragments, a long line in 1-byte reads) that a
    # quadratic decoder takes seconds over, and a linear one microseconds.
    cargo afl fuzz -V "$seconds" -t 250 -i "corpus/$target" -o "$out/$target" "target/release/$target" >"$out/$target.log" 2>&1 || {
        tail -20 "$out/$target.log"
        echo "FAIL $target: afl-fuzz did not run"
        found=1
        continue
    }
    crashes=$(find "$out/$target/default/crashes" -type f ! -name README.txt 2>/dev/null | wc -l)
    hangs=$(find "$out/$target/default/hangs" -type f 2>/dev/null | wc -l)
    execs=$(sed -n 's/^execs_done *: *//p' "$out/$target/default/fuzzer_stats" 2>/dev/null || echo "?")
    if [ "$crashes" -ne 0 ] || [ "$hangs" -ne 0 ]; then
        echo "FAIL $target: $crashes crashes, $hangs hangs (in $out/$target/default)"
        found=1
    else
        echo "PASS $target: $execs executions, no crash, no hang"
    fi
done
exit $found
