#!/bin/bash
# Mutation testing: puts each deliberate bug of tests/mutation/patches/ into a copy of the
# source tree, builds it, runs the tests that must catch it, and reports every bug the suite
# did not catch. See tests/mutation/README.md.
#
#   tests/mutation/run.sh              every mutation
#   MUTATIONS="001 017" run.sh         the named ones (number or full name)
#   MUTATION_SUBSET=N run.sh           N of them, a window that moves on with every commit
#   run.sh --list                      the mutations with their area and tests, nothing run
#
# Results: KILLED (the tests failed: the bug is caught), SURVIVED (the tests passed: a gap),
# STALE (the patch no longer applies: refresh it), BROKEN (the mutant does not compile: fix
# the patch), NOTESTS (its tests regex matches no test). Any but KILLED makes the exit status 1;
# a baseline that is not green, 2.
#
# Environment: MUTATION_JOBS (build and ctest parallelism, default 2), MUTATION_KEEP=1 (keep
# the work directory with the per-mutation logs), MUTATION_BUILD_TYPE (default Release).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
patch_dir="$here/patches"
jobs=${MUTATION_JOBS:-2}
build_type=${MUTATION_BUILD_TYPE:-Release}
# ctest without the check of the README's compatibility table that the e2e tests' fixture
# adds after them (tests/e2e/CMakeLists.txt): it says nothing about a mutation.
ctest_flags=(-j "$jobs" --output-on-failure -FC e2e_results)

say() { printf '[mutation %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf 'mutation: %s\n' "$*" >&2
    exit 2
}

# header FILE KEY: the value of the "# KEY: value" line of a patch.
header() { sed -n "s/^# $2: *//p" "$1" | head -n 1; }

# The files a patch changes (paths relative to the tree).
patched_files() { sed -n 's#^+++ b/##p' "$1" | sed 's/[[:space:]]*$//' | sort -u; }

# ---- the mutations, checked before anything is built

mapfile -t all < <(find "$patch_dir" -maxdepth 1 -name '[0-9][0-9][0-9]-*.patch' | sort)
[ ${#all[@]} -gt 0 ] || die "no patches under $patch_dir"
for p in "${all[@]}"; do
    for key in bug area tests; do
        [ -n "$(header "$p" "$key")" ] || die "$(basename "$p"): no '# $key:' header line"
    done
    [ -n "$(patched_files "$p")" ] || die "$(basename "$p"): no unified diff (+++ b/FILE) in it"
done

if [ "${1:-}" = --list ]; then
    for p in "${all[@]}"; do
        printf '%-44s %-12s %s\n    %s\n' "$(basename "$p" .patch)" "$(header "$p" area)" \
            "$(header "$p" tests)" "$(header "$p" bug)"
    done
    exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [--list] (select with MUTATIONS or MUTATION_SUBSET)"

selected=()
if [ -n "${MUTATIONS:-}" ]; then
    for want in $MUTATIONS; do
        want=${want%.patch}
        hit=
        for p in "${all[@]}"; do
            b=$(basename "$p" .patch)
            if [ "$b" = "$want" ] || [ "${b%%-*}" = "$want" ]; then
                hit=$p
                break
            fi
        done
        [ -n "$hit" ] || die "no mutation '$want' (tests/mutation/run.sh --list shows them)"
        selected+=("$hit")
    done
elif [ -n "${MUTATION_SUBSET:-}" ]; then
    case $MUTATION_SUBSET in
    '' | *[!0-9]*) die "MUTATION_SUBSET must be a number" ;;
    esac
    n=$MUTATION_SUBSET
    [ "$n" -le ${#all[@]} ] || n=${#all[@]}
    # The window moves on by N with every commit, so successive commits cover them all. A
    # shallow clone cannot count its commits: there the commit hash places the window.
    if [ "$(git -C "$src" rev-parse --is-shallow-repository 2>/dev/null)" = false ]; then
        commits=$(git -C "$src" rev-list --count HEAD)
        why="commit count $commits"
    else
        hash=$(git -C "$src" rev-parse --short=7 HEAD 2>/dev/null || echo 0)
        commits=$((16#$hash))
        why="shallow clone or no git: commit hash $hash"
    fi
    start=$(((commits * n) % ${#all[@]}))
    for ((i = 0; i < n; i++)); do
        selected+=("${all[(start + i) % ${#all[@]}]}")
    done
    say "subset: $n of ${#all[@]} mutations, window from #$((start + 1)) ($why)"
else
    selected=("${all[@]}")
fi
[ ${#selected[@]} -gt 0 ] || die "no mutation selected"

# ---- a copy of the working tree (uncommitted changes count), built once

work=$(mktemp -d "${TMPDIR:-/tmp}/ocireg-mutation.XXXXXX")
cleanup() {
    if [ "${MUTATION_KEEP:-0}" = 1 ]; then
        say "kept $work (logs under logs/)"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
trap 'exit 141' PIPE # (its reader gone, e.g. | head): still clean up
tree=$work/src
bld=$work/build
mkdir -p "$tree" "$work/logs" "$work/pristine"

if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked and untracked files that are not ignored (build directories are), as they are now
    (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$src" && while IFS= read -r -d '' f; do
            [ -e "$f" ] && printf '%s\0' "$f"
        done) |
        tar -C "$src" --null -T - -cf - | tar -C "$tree" -xf -
else
    tar -C "$src" --exclude=./.git --exclude='./build' --exclude='./build-*' --exclude=./data \
        -cf - . | tar -C "$tree" -xf -
fi
# git apply must not take the copy for a subdirectory of a repository above it
export GIT_CEILING_DIRECTORIES=$work

say "configuring and building a copy of the tree in $work ($build_type, -j$jobs)"
t0=$SECONDS
if ! cmake -S "$tree" -B "$bld" -DCMAKE_BUILD_TYPE="$build_type" >"$work/logs/build.log" 2>&1 ||
    ! cmake --build "$bld" -j "$jobs" >>"$work/logs/build.log" 2>&1; then
    tail -n 30 "$work/logs/build.log" >&2
    die "the unpatched copy does not build"
fi
say "built in $((SECONDS - t0)) s"

# ---- the baseline: every test a selected mutation uses passes on the unpatched copy

# (alternation binds loosest: the regexes joined by | match what any of them does; CMake
# allows few parentheses, so none are added)
union=$(for p in "${selected[@]}"; do
    t=$(header "$p" tests)
    case $t in
    *[\(\)]*) echo "$t" ;;
    *) echo "$t" | tr '|' '\n' ;;
    esac
done | sort -u | paste -sd'|')
say "baseline: ctest -R '$union'"
t0=$SECONDS
if ! (cd "$bld" && ctest -R "$union" "${ctest_flags[@]}") >"$work/logs/baseline.log" 2>&1; then
    grep -E '\*\*\*|tests passed|Failed|FAIL' "$work/logs/baseline.log" | tail -n 30 >&2
    die "the tests fail on the unpatched copy: a mutation is caught only against a green baseline"
fi
grep -q 'tests passed' "$work/logs/baseline.log" || die "baseline: ctest ran no test"
say "baseline green in $((SECONDS - t0)) s"

# ---- one mutation at a time

results=()
bad=0
stamp=$bld/.mutation-stamp

# revert FILES...: puts the pristine files back, newer than anything the build made, so the
# next incremental build recompiles them (a restored file with an old time would not be).
revert() {
    local f
    for f in "$@"; do
        if [ -e "$work/pristine/$f" ]; then
            cat "$work/pristine/$f" >"$tree/$f"
            cmp -s "$work/pristine/$f" "$tree/$f" || die "cannot restore $f"
        else
            rm -f "$tree/$f" # a file the patch created
        fi
    done
    touch "$stamp"
    for f in "$@"; do
        [ -e "$tree/$f" ] || continue
        until [ "$tree/$f" -nt "$stamp" ]; do
            sleep 0.01
            touch "$tree/$f"
        done
    done
}

for p in "${selected[@]}"; do
    name=$(basename "$p" .patch)
    area=$(header "$p" area)
    regex=$(header "$p" tests)
    log=$work/logs/$name.log
    mapfile -t files < <(patched_files "$p")
    t0=$SECONDS
    result=
    note=
    rm -rf "$work/pristine"
    mkdir -p "$work/pristine"
    for f in "${files[@]}"; do
        if [ -e "$tree/$f" ]; then
            mkdir -p "$work/pristine/$(dirname "$f")"
            cp "$tree/$f" "$work/pristine/$f"
        fi
    done
    say "$name: $(header "$p" bug)"
    if ! (cd "$tree" && git apply --check "$p") >"$log" 2>&1; then
        result=STALE
        note="does not apply to this tree (see below)"
    else
        (cd "$tree" && git apply "$p") >>"$log" 2>&1 || die "$name: git apply failed after --check"
        if ! cmake --build "$bld" -j "$jobs" >>"$log" 2>&1; then
            result=BROKEN
            note="the mutant does not compile"
        else
            set +e
            (cd "$bld" && ctest -R "$regex" "${ctest_flags[@]}") >>"$log" 2>&1
            rc=$?
            set -e
            ran=$(sed -n 's/.*tests passed, \([0-9]*\) tests* failed out of \([0-9]*\).*/\2/p' "$log" | tail -n 1)
            failed=$(grep -cE 'Test +#[0-9]+: .*\*\*\*(Failed|Exception|Timeout)|Test +#[0-9]+: .*Not Run' "$log" || true)
            timeouts=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Timeout' "$log" || true)
            skipped=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' "$log" || true)
            if grep -q 'No tests were found' "$log" || [ -z "$ran" ]; then
                result=NOTESTS
                note="no test matches '$regex'"
            elif [ "$rc" -ne 0 ]; then
                result=KILLED
                note=$(grep -E 'Test +#[0-9]+: .*\*\*\*' "$log" | grep -v Skipped |
                    sed -E 's/.*Test +#[0-9]+: ([^ ]+) .*\*\*\*([A-Za-z]+).*/\1 (\2)/' | paste -sd, - || true)
                if [ "$failed" -gt 0 ] && [ "$timeouts" -eq "$failed" ]; then
                    note="TIMEOUT ONLY: $note"
                fi
            else
                result=SURVIVED
                note="$ran test(s) passed"
            fi
            [ "$skipped" -eq 0 ] || note="$note; $skipped skipped"
        fi
        revert "${files[@]}"
    fi
    secs=$((SECONDS - t0))
    results+=("$name|$area|$result|$secs|$note")
    say "$name: $result in ${secs}s${note:+ ($note)}"
    case $result in
    KILLED) ;;
    STALE)
        bad=1
        sed 's/^/    /' "$log" >&2
        echo "    -> refresh it: make the change of '# bug:' by hand in a clean tree, then" >&2
        echo "       git diff > tests/mutation/patches/$name.patch (keeping the header lines)" >&2
        ;;
    BROKEN)
        bad=1
        grep -E 'error|Error' "$log" | head -n 15 | sed 's/^/    /' >&2
        ;;
    SURVIVED)
        bad=1
        echo "    -> the tests '$regex' pass with this bug in: write the test that catches it" >&2
        echo "       (in the test file of its area), or fix the patch if it is no bug" >&2
        ;;
    *)
        bad=1
        ;;
    esac
done

# ---- the table

{
    echo
    printf '| %-44s | %-11s | %-8s | %7s | %s\n' mutation area result seconds notes
    printf '| %-44s | %-11s | %-8s | %7s | %s\n' --- --- --- --- ---
    for row in "${results[@]}"; do
        IFS='|' read -r name area result secs note <<<"$row"
        printf '| %-44s | %-11s | %-8s | %7s | %s\n' "$name" "$area" "$result" "$secs" "$note"
    done
    echo
    for r in KILLED SURVIVED STALE BROKEN NOTESTS; do
        n=$(printf '%s\n' "${results[@]}" | cut -d'|' -f3 | grep -cx "$r" || true)
        [ "$n" -eq 0 ] || printf '%s %s  ' "$n" "$r"
    done
    echo "(of ${#results[@]})"
}
[ "$bad" -eq 0 ] || say "not every deliberate bug was caught: see the table (MUTATION_KEEP=1 keeps the logs)"
exit "$bad"
