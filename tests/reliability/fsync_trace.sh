#!/bin/bash
# Durability of a committed blob, observed in the system calls rather than after a crash (a
# SIGKILL cannot show a missing fsync: the page cache outlives the process). Runs the real
# ocireg under strace, pushes blobs (monolithic, in one PUT, in chunks) and a manifest through
# the API, stops it, and checks in the trace, for every blob that was committed:
#   1. its data file was fsync'd (or fdatasync'd) before it was linked or renamed into blobs/,
#   2. a blobs/<alg>/<xx> directory made for it was fsync'd in blobs/<alg> before the link,
#   3. after the link, blobs/<alg>/<xx> was fsync'd,
#   4. after that, the thread that linked it synced the index (index/data.mdb) when it
#      committed the txn that records the blob,
# and that the index writes its meta pages through a descriptor opened with O_DSYNC (LMDB's
# default; MDB_NOSYNC or MDB_NOMETASYNC would make the last acknowledged pushes losable).
# Exits 77 (skipped) when strace is missing or cannot trace here (ptrace refused).
# Usage: fsync_trace.sh PATH/TO/ocireg
set -euo pipefail

OCIREG=${1:?usage: $0 PATH/TO/ocireg}
OCIREG=$(cd "$(dirname "$OCIREG")" && pwd)/$(basename "$OCIREG")
SKIP=77

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
skip() {
    echo "SKIP: $*"
    exit "$SKIP"
}

command -v strace >/dev/null 2>&1 || skip "strace is not installed (apt-get install -y strace)"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v curl >/dev/null 2>&1 || skip "curl is not installed"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/ocireg-fsync.XXXXXX")
DIR=$(cd "$DIR" && pwd -P) # the trace names files by their real path
STRACE_PID=
SERVER_PID=
cleanup() {
    local rc=$?
    set +e
    [ -z "$SERVER_PID" ] || kill -KILL "$SERVER_PID" 2>/dev/null
    # (a strace that gets SIGTERM kills the process it started)
    [ -z "$STRACE_PID" ] || { kill -TERM "$STRACE_PID" 2>/dev/null; wait "$STRACE_PID" 2>/dev/null; }
    if [ "$rc" -ne 0 ] && [ "$rc" -ne "$SKIP" ] && [ -s "$DIR/server.log" ]; then
        echo "---- server log (last 40 lines) ----" >&2
        tail -n 40 "$DIR/server.log" >&2
    fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne "$SKIP" ] && [ "${FSYNC_TRACE_KEEP:-0}" = 1 ]; then
        echo "kept $DIR (trace.log)" >&2
    else
        rm -rf "$DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT

if ! strace -f -o /dev/null true 2>"$DIR/probe.err"; then
    skip "strace cannot trace here (ptrace refused?): $(tail -n 1 "$DIR/probe.err")"
fi

# LeakSanitizer refuses to run under ptrace; leaks are the other tests' business.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

ROOT=$DIR/root
mkdir -p "$ROOT"
strace -f -y -o "$DIR/trace.log" \
    -e trace=fsync,fdatasync,openat,open,linkat,link,renameat,renameat2,rename,mkdirat,mkdir \
    "$OCIREG" serve --root "$ROOT" --listen 127.0.0.1:0 --port-file "$DIR/port" \
    --admin-listen 127.0.0.1:0 --log-level warn </dev/null >"$DIR/server.log" 2>&1 &
STRACE_PID=$!
deadline=$((SECONDS + 60))
until [ -s "$DIR/port" ]; do
    kill -0 "$STRACE_PID" 2>/dev/null || fail "ocireg (under strace) exited before writing its port file"
    [ "$SECONDS" -lt "$deadline" ] || fail "no port file from ocireg within 60s"
    sleep 0.05
done
# the traced ocireg: strace's child (from /proc, which needs no procps)
for stat in /proc/[0-9]*/stat; do
    fields=$(cat "$stat" 2>/dev/null) || continue
    fields=${fields##*) } # after "pid (comm) ": state ppid ...
    read -r _ ppid _ <<<"$fields"
    if [ "$ppid" = "$STRACE_PID" ]; then
        SERVER_PID=${stat#/proc/}
        SERVER_PID=${SERVER_PID%/stat}
        break
    fi
done
[ -n "$SERVER_PID" ] || fail "cannot find the ocireg process under strace ($STRACE_PID)"
BASE=http://127.0.0.1:$(cat "$DIR/port")
REPO=fsync/app

digest() { printf 'sha256:%s' "$(sha256sum "$1" | cut -d' ' -f1)"; }
# status METHOD URL [curl args...]: the HTTP status; the headers go to $DIR/h
status() {
    local m=$1 u=$2
    shift 2
    curl -s -o "$DIR/body" -D "$DIR/h" -w '%{http_code}' -X "$m" "$@" "$u"
}
location() { tr -d '\r' <"$DIR/h" | awk 'tolower($1) == "location:" {print $2}'; }
# with_digest URL DIGEST: URL with ?digest= (or &digest= when it has a query already)
with_digest() {
    case $1 in
    *\?*) printf '%s&digest=%s' "$1" "$2" ;;
    *) printf '%s?digest=%s' "$1" "$2" ;;
    esac
}
expect() { # expect WHAT GOT WANT
    [ "$2" = "$3" ] || fail "$1: status $2, want $3 ($(head -c 300 "$DIR/body"))"
}

# blobs: the config (monolithic POST), a layer in one PUT, a 3 MiB layer in two chunks
printf '{"architecture":"amd64","os":"linux","fsync":"trace"}' >"$DIR/config"
seq 1 20000 >"$DIR/small"
seq 1 500000 >"$DIR/big"
truncate -s 3145728 "$DIR/big"
pushed=()
for f in config small big; do pushed+=("$(digest "$DIR/$f")"); done

expect "monolithic POST" "$(status POST "$BASE/v2/$REPO/blobs/uploads/?digest=${pushed[0]}" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$DIR/config")" 201

expect "POST (session)" "$(status POST "$BASE/v2/$REPO/blobs/uploads/")" 202
loc=$(location)
expect "PUT with the whole blob" "$(status PUT "$BASE$(with_digest "$loc" "${pushed[1]}")" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$DIR/small")" 201

expect "POST (session)" "$(status POST "$BASE/v2/$REPO/blobs/uploads/")" 202
loc=$(location)
head -c 1048576 "$DIR/big" >"$DIR/chunk1"
tail -c +1048577 "$DIR/big" >"$DIR/chunk2"
expect "PATCH chunk 1" "$(status PATCH "$BASE$loc" -H 'Content-Type: application/octet-stream' \
    -H 'Content-Range: 0-1048575' --data-binary "@$DIR/chunk1")" 202
loc=$(location)
expect "PATCH chunk 2" "$(status PATCH "$BASE$loc" -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: 1048576-$(($(stat -c %s "$DIR/big") - 1))" \
    --data-binary "@$DIR/chunk2")" 202
loc=$(location)
expect "closing PUT" "$(status PUT "$BASE$(with_digest "$loc" "${pushed[2]}")")" 201

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "${pushed[0]}" "$(stat -c %s "$DIR/config")" "${pushed[1]}" "$(stat -c %s "$DIR/small")" \
    "${pushed[2]}" "$(stat -c %s "$DIR/big")" >"$DIR/manifest"
expect "manifest PUT" "$(status PUT "$BASE/v2/$REPO/manifests/v1" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$DIR/manifest")" 201
for d in "${pushed[@]}"; do
    expect "GET $d" "$(status GET "$BASE/v2/$REPO/blobs/$d")" 200
done

# stop: SIGTERM, a clean exit, and strace ends with it
kill -TERM "$SERVER_PID"
set +e
wait "$STRACE_PID"
rc=$?
set -e
STRACE_PID=
SERVER_PID=
[ "$rc" -eq 0 ] || fail "ocireg (under strace) exited with status $rc after SIGTERM"

python3 - "$DIR/trace.log" "$ROOT" "${pushed[@]}" <<'PY'
import re, sys

log, root, digests = sys.argv[1], sys.argv[2], sys.argv[3:]
SYNC = ("fsync", "fdatasync")
calls, pending = [], {}
for i, line in enumerate(open(log, errors="replace")):
    line = line.rstrip("\n")
    m = re.match(r"^(\d+)\s+(.*)$", line)
    if m is None:
        continue
    tid, rest = m.group(1), m.group(2)
    r = re.match(r"^<\.\.\. (\w+) resumed>(.*)$", rest)
    if r is not None:
        c = pending.pop(tid, None)
        if c is None or c["name"] != r.group(1):
            continue
        c["text"] += r.group(2)
        c["end"] = i
    else:
        s = re.match(r"^(\w+)\((.*)$", rest)
        if s is None:
            continue  # signals, exits
        c = {"tid": tid, "name": s.group(1), "text": s.group(2), "start": i, "end": i}
        calls.append(c)
        if rest.endswith("<unfinished ...>"):
            c["text"] = c["text"][: -len(" <unfinished ...>")]
            pending[tid] = c
            continue
    res = re.search(r"\)\s+=\s+(-?\d+)", c["text"])
    c["ok"] = res is not None and int(res.group(1)) >= 0
    # the descriptors (-y) and strings among the arguments, in order
    c["args"] = re.findall(r'\d+<([^>]*)>|"((?:[^"\\]|\\.)*)"', c["text"].rsplit(") =", 1)[0])

def fd_path(c, n=0):
    fds = [a[0] for a in c["args"] if a[0]]
    return fds[n] if len(fds) > n else None

def strings(c):
    return [a[1] for a in c["args"] if a[1]]

def syncs(path, after=-1, before=None, tid=None):
    return [c for c in calls if c["name"] in SYNC and c.get("ok") and fd_path(c) == path
            and c["start"] > after and (before is None or c["end"] < before)
            and (tid is None or c["tid"] == tid)]

problems = []
def problem(msg):
    problems.append(msg)
    print("FAIL: " + msg, file=sys.stderr)

data_mdb = root + "/index/data.mdb"
for dg in digests:
    alg, hexd = dg.split(":")
    # the link (or rename) that gave the blob its name under blobs/<alg>/<xx>/
    link = None
    for c in calls:
        if not c.get("ok"):
            continue
        if c["name"] == "linkat" and len(strings(c)) >= 2 and strings(c)[1] == hexd:
            link = c
            src = fd_path(c, 0) + "/" + strings(c)[0]
            dirpath = fd_path(c, 1)
        elif c["name"] in ("renameat", "renameat2") and len(strings(c)) >= 2 and \
                strings(c)[1] == hexd:
            link = c
            src = fd_path(c, 0) + "/" + strings(c)[0]
            dirpath = fd_path(c, 1)
        elif c["name"] in ("link", "rename") and len(strings(c)) >= 2 and \
                strings(c)[1].endswith("/" + hexd):
            link = c
            src = strings(c)[0]
            dirpath = strings(c)[1].rsplit("/", 1)[0]
        if link is not None:
            break
    if link is None:
        problem(f"{dg}: no link or rename into blobs/ in the trace")
        continue
    want_dir = f"{root}/blobs/{alg}/{hexd[:2]}"
    if dirpath != want_dir:
        problem(f"{dg}: linked into {dirpath}, not {want_dir}")
        continue
    what = f"{dg} (linked from {src.replace(root, 'ROOT')})"
    # 1. its data, durable before it has the name
    if not syncs(src, before=link["start"]):
        problem(f"{what}: its data file was not fsync'd before the link into blobs/")
    # 2. a directory made for it, durable in blobs/<alg> before the link
    made = [c for c in calls if c["name"] == "mkdirat" and c.get("ok") and c["tid"] == link["tid"]
            and fd_path(c) == f"{root}/blobs/{alg}" and strings(c)[:1] == [hexd[:2]]
            and c["end"] < link["start"]]
    if made and not syncs(f"{root}/blobs/{alg}", after=made[-1]["end"], before=link["start"]):
        problem(f"{what}: blobs/{alg}/{hexd[:2]} was made but blobs/{alg} not fsync'd before the link")
    # 3. the name, durable
    dsync = syncs(want_dir, after=link["end"], tid=link["tid"])
    if not dsync:
        problem(f"{what}: blobs/{alg}/{hexd[:2]} was not fsync'd after the link")
        continue
    # 4. then the index txn that records it, synced by the thread that linked it
    if not syncs(data_mdb, after=dsync[0]["end"], tid=link["tid"]):
        problem(f"{what}: index/data.mdb was not synced after the directory fsync "
                f"(the commit of the txn that records the blob)")
    else:
        print(f"ok: {dg}: data fsync, link, directory fsync, index sync")

dsync_opens = [c for c in calls if c["name"] in ("openat", "open") and c.get("ok")
               and any(s.endswith("index/data.mdb") for s in strings(c))
               and re.search(r"O_(D)?SYNC", c["text"])]
if not dsync_opens:
    problem("index/data.mdb was never opened with O_DSYNC: LMDB's meta pages are not written "
            "synchronously (MDB_NOSYNC or MDB_NOMETASYNC?)")
if not calls:
    problem("the trace is empty")
sys.exit(1 if problems else 0)
PY
echo "PASS: every committed blob was durable before the index recorded it"
