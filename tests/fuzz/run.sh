#!/usr/bin/env bash
# Builds the libFuzzer targets in a clang build of their own and runs each one on its seed
# corpus (tests/fuzz/corpus/<name>/, never written to: new inputs go to the build dir).
#
#   tests/fuzz/run.sh [name...]       names: route httpparse manifest jwt policy (default: all)
#
# Environment:
#   FUZZ_SECONDS   seconds of fuzzing per target (default 60)
#   BUILD_DIR      the clang build directory (default build-fuzz/ at the top of the checkout);
#                  the corpora the runs grow and their logs are in $BUILD_DIR/fuzz-work/<name>/
#   CRASH_DIR      where reproducers of crashes, leaks and hangs are copied, with their log
#                  (default tests/fuzz/crashes)
#   FUZZ_PARALLEL  targets fuzzed at once (default 1)
#   CC             the clang (default clang-14, else clang)
#
# Exit status: 0 nothing found; 1 something found (reproducers in CRASH_DIR) or the build
# failed; 77 no clang with a libFuzzer runtime (apt-get install clang-14 libclang-rt-14-dev
# llvm-14).
# Reproduce one: $BUILD_DIR/tests/fuzz/fuzz_<name> <reproducer>
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-60}
build=${BUILD_DIR:-$src/build-fuzz}
crashes=${CRASH_DIR:-$here/crashes}
parallel=${FUZZ_PARALLEL:-1}
all=(route httpparse manifest jwt policy)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# -max_len per target: the longest input worth trying
declare -A max_len=([route]=1024 [httpparse]=128 [manifest]=16384 [jwt]=8200 [policy]=8192)

for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "run.sh: unknown target '$t' (${all[*]})" >&2; exit 2; }
done
case $seconds in '' | *[!0-9]*) echo "run.sh: FUZZ_SECONDS must be a number" >&2; exit 2 ;; esac

cc=${CC:-}
if [ -z "$cc" ] || ! "$cc" --version 2>/dev/null | grep -qi clang; then
    cc=$(command -v clang-14 || command -v clang || true)
fi
if [ -z "$cc" ]; then
    echo "run.sh: SKIP: no clang (apt-get install clang-14 libclang-rt-14-dev)"
    exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
    >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
    echo "run.sh: SKIP: $cc cannot build a fuzzer (apt-get install libclang-rt-14-dev):"
    head -3 "$probe/err"
    exit 77
fi

jobs=$(nproc 2>/dev/null || echo 2)
echo "== configuring $build with $cc"
CC=$cc cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug >"$probe/cmake.log" 2>&1 ||
    { cat "$probe/cmake.log"; exit 1; }
echo "== building the fuzzers"
cmake --build "$build" -j "$jobs" --target $(printf 'fuzz_%s ' "${targets[@]}") \
    >"$probe/build.log" 2>&1 || { cat "$probe/build.log"; exit 1; }

# our own settings, not the caller's (make test-asan exports abort_on_error=1); stack traces
# are symbolized by the llvm-symbolizer beside the clang (package llvm-14)
sym=$(dirname "$(readlink -f "$(command -v "$cc")")")/llvm-symbolizer
[ -x "$sym" ] || sym=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
export ASAN_OPTIONS=detect_leaks=1${sym:+:external_symbolizer_path=$sym}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${sym:+:external_symbolizer_path=$sym}

# fuzz NAME: one run of FUZZ_SECONDS; writes $work/status (0 or 1)
fuzz() {
    local t=$1 work=$build/fuzz-work/$1
    local bin=$build/tests/fuzz/fuzz_$t
    mkdir -p "$work/corpus"
    rm -rf "$work/artifacts"
    mkdir -p "$work/artifacts"
    local dict=()
    [ -f "$here/$t.dict" ] && dict=("-dict=$here/$t.dict")
    local rc=0
    "$bin" "$work/corpus" "$here/corpus/$t" "${dict[@]}" \
        -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 \
        -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/" >"$work/log" 2>&1 || rc=$?
    local found=0
    for a in "$work"/artifacts/*; do
        [ -e "$a" ] || continue
        found=1
        mkdir -p "$crashes"
        cp "$a" "$crashes/$t-$(basename "$a")"
        grep -vE '^#[0-9]+[[:space:]]' "$work/log" >"$crashes/$t-$(basename "$a").log" || true
    done
    [ "$rc" -eq 0 ] || found=1
    echo "$found" >"$work/status"
}

summary() {
    local t=$1 work=$build/fuzz-work/$1
    local line execs rate cov ft corp
    line=$(grep -E '^#[0-9]+.*cov: ' "$work/log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$line")
    if [ "$(cat "$work/status")" = 0 ]; then
        printf '%-10s ok     %10s execs %7s/s  cov %5s  ft %6s  corpus %s\n' "$t" "${execs:-?}" \
            "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
    else
        printf '%-10s FAILED (log: %s)\n' "$t" "$work/log"
        grep -E 'ERROR: |SUMMARY: |FUZZ_CHECK|runtime error|Test unit written' "$work/log" | head -8 |
            sed 's/^/    /'
    fi
}

echo "== fuzzing ${targets[*]}: ${seconds}s each, $parallel at once"
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n
        running=$((running - 1))
    fi
    fuzz "$t" &
    running=$((running + 1))
done
wait

failed=0
for t in "${targets[@]}"; do
    summary "$t"
    [ "$(cat "$build/fuzz-work/$t/status")" = 0 ] || failed=1
done
if [ "$failed" -ne 0 ]; then
    echo "run.sh: reproducers copied to $crashes"
    exit 1
fi
