#!/bin/bash
# Runs the end-to-end tests of a build directory and writes the README's compatibility table
# from their results: one row per client test that passed (client, version, operations), and
# the tests that did not pass listed below it. Usage: tests/e2e/compat-table.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
readme="$here/../../README.md"
# every e2e test appends its row there when it passes (CMakeLists.txt sets E2E_RESULTS)
results=$build/e2e-results/rows
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# (-FC: without the check of the table against this run, e2e_compat_table: it is what is
# being rewritten)
(cd "$build" && ctest -L e2e -E '^e2e_compat_table$' -FC e2e_results -j2 --output-on-failure) >"$out" 2>&1 || true
touch "$results"
{
    echo "<!-- compat:begin (written by tests/e2e/compat-table.sh from an e2e run; do not edit) -->"
    echo "| client | version | operations | result |"
    echo "| --- | --- | --- | --- |"
    sort -t'|' -k1,1 -k4,4 "$results" | while IFS='|' read -r client version ops test; do
        echo "| $client | $version | $ops | pass ($test) |"
    done
    failed=$(grep -E '\*\*\*(Failed|Skipped|Timeout)|Not Run' "$out" | sed -E 's/.*: ([^ ]+) .*/\1/' | sort -u | tr '\n' ' ' || true)
    [ -z "$failed" ] || echo "| not passing in this run | | $failed | fail or skip |"
    echo "Run on $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%Y-%m-%d)."
    echo "<!-- compat:end -->"
} >"$out.table"
python3 - "$readme" "$out.table" <<'PY'
import re, sys
readme, table = sys.argv[1], open(sys.argv[2]).read()
s = open(readme).read()
new = re.sub(r"<!-- compat:begin.*?<!-- compat:end -->\n?", lambda m: table, s, flags=re.S)
if new == s and "<!-- compat:begin" not in s:
    new = s.rstrip("\n") + "\n\n## Compatibility\n\n" + table
open(readme, "w").write(new)
PY
rm -f "$out.table"
cat "$results" | wc -l | xargs echo "client tests passed:"
