#!/bin/bash
# The README's compatibility table against the end-to-end results of this ctest run (run by
# ctest after every e2e test, as the cleanup of their fixture). Fails when a row this run
# produced is missing from the README or differs there, or when a README row's test passed but
# produced another row (or none); a README row whose test was skipped, failed or did not run
# in this run is only noted. Skipped (77) when no e2e test passed, so nothing was compared.
# Usage: compat-check.sh RESULTS_DIR README   (RESULTS_DIR holds rows and outcomes: lib.sh)
set -euo pipefail
dir=${1:?usage: $0 RESULTS_DIR README}
readme=${2:?usage: $0 RESULTS_DIR README}
[ -f "$readme" ] || {
    echo "FAIL: no $readme"
    exit 1
}
mkdir -p "$dir"
touch "$dir/rows" "$dir/outcomes"

python3 - "$dir/rows" "$dir/outcomes" "$readme" <<'PY'
import re, sys

rows_file, outcomes_file, readme = sys.argv[1:4]
produced = {}  # test -> row
for line in open(rows_file, errors="replace"):
    line = line.rstrip("\n")
    parts = line.split("|")
    if len(parts) == 4:
        produced.setdefault(parts[3], []).append(tuple(parts))
outcome = {}
for line in open(outcomes_file, errors="replace"):
    name, _, o = line.rstrip("\n").partition("|")
    if name:
        outcome[name] = o  # a test run twice: its last outcome

text = open(readme, errors="replace").read()
m = re.search(r"<!-- compat:begin.*?\n(.*?)<!-- compat:end -->", text, re.S)
documented = {}  # test -> row
if m is not None:
    for line in m.group(1).splitlines():
        r = re.match(r"^\| (.*?) \| (.*?) \| (.*?) \| pass \((.*?)\) \|$", line)
        if r is not None:
            documented.setdefault(r.group(4), []).append(r.groups())

def show(row):
    return f"| {row[0]} | {row[1]} | {row[2]} | pass ({row[3]}) |"

problems, notes, matched = [], [], 0
for test in sorted(produced):
    for row in produced[test]:
        if row in documented.get(test, []):
            matched += 1
        elif test in documented:
            problems.append(f"{test} produced\n      {show(row)}\n    but the README says\n"
                            + "\n".join(f"      {show(d)}" for d in documented[test]))
        else:
            problems.append(f"{test} produced a row the README does not have:\n      {show(row)}")
for test in sorted(documented):
    for row in documented[test]:
        if row in produced.get(test, []):
            continue
        o = outcome.get(test)
        if o == "pass" and test not in produced:
            problems.append(f"{test} passed but produced no row; the README still has\n"
                            f"      {show(row)}")
        elif o == "pass":
            pass  # reported above, as a difference
        elif o == "skip":
            notes.append(f"{test} was skipped in this run: not checked: {show(row)}")
        elif o == "fail":
            notes.append(f"{test} failed in this run (see its own result): {show(row)}")
        else:
            notes.append(f"{test} did not run in this run: not checked: {show(row)}")
if m is None:
    problems.append("README.md has no compatibility table (<!-- compat:begin ... compat:end -->)")

for n in notes:
    print("note: " + n)
if problems:
    print("FAIL: the README's compatibility table does not match the e2e results of this run:")
    for p in problems:
        print("  - " + p)
    print("Rewrite it from a passing run: tests/e2e/compat-table.sh BUILD_DIR (runs the e2e "
          "tests and writes the table into README.md), then commit README.md.")
    sys.exit(1)
if matched == 0:
    print("SKIP: no e2e test passed in this run: no row to compare")
    sys.exit(77)
print(f"ok: the {matched} row(s) this run produced are the README's")
PY
