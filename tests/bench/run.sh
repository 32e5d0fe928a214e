#!/usr/bin/env bash
# Benchmark of ocireg against CNCF Distribution (docker-registry 2.8) on loopback.
#
#   tests/bench/run.sh /path/to/ocireg          (make bench does this)
#
# Environment:
#   BENCH_ROUNDS   rounds per workload and server, medians reported (default 3; quick: 1)
#   BENCH_SECONDS  duration of each small-request run (default 10; quick: 3)
#   BENCH_QUICK=1  smoke run: 1 round, 3 s runs, small content (32 MiB blob, 4 x 32 MiB
#                  layers, 16 x 1 MiB images)
#   BENCH_CACHE    content cache, kept across runs (default /var/tmp/ocireg-bench-cache)
#   BENCH_TMP      where server storage and scratch go (default /var/tmp)
#   BENCH_OUT      JSON document with every raw figure (default ./bench-results.json)
#
# See tests/bench/README.md for what each workload measures and how to read the table.
set -euo pipefail

BIN=${1:-${OCIREG_BIN:-}}
[[ -n $BIN && -x $BIN ]] || { echo "usage: $0 /path/to/ocireg" >&2; exit 2; }
BIN=$(readlink -f "$BIN")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

QUICK=${BENCH_QUICK:-0}
[[ $QUICK == 0 || $QUICK == "" ]] && QUICK=0 || QUICK=1
if ((QUICK)); then
    ROUNDS=${BENCH_ROUNDS:-1}
    SECONDS_RUN=${BENCH_SECONDS:-3}
    BLOB_BYTES=$((32 << 20)) LAYER_BYTES=$((32 << 20)) SMALL_IMG_BYTES=$((1 << 20))
    DD_MIB=256 IPERF_SECONDS=2 SHA_SECONDS=1
else
    ROUNDS=${BENCH_ROUNDS:-3}
    SECONDS_RUN=${BENCH_SECONDS:-10}
    BLOB_BYTES=$((256 << 20)) LAYER_BYTES=$((256 << 20)) SMALL_IMG_BYTES=$((8 << 20))
    DD_MIB=1024 IPERF_SECONDS=5 SHA_SECONDS=3
fi
CONNS=64
SCALE_CONNS=(1 4 16 64)
CACHE_ROOT=${BENCH_CACHE:-/var/tmp/ocireg-bench-cache}
CACHE=$CACHE_ROOT/$( ((QUICK)) && echo quick || echo full)
OUT=${BENCH_OUT:-./bench-results.json}
OUT=$(readlink -f "$OUT")
MANIFEST_MT=application/vnd.oci.image.manifest.v1+json
SKOPEO_BIC=/var/lib/containers/cache/blob-info-cache-v1.boltdb

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- dependencies
install_deps() {
    local want=() p
    command -v docker-registry >/dev/null || want+=(docker-registry)
    command -v wrk >/dev/null || want+=(wrk)
    command -v hey >/dev/null || want+=(hey)
    command -v skopeo >/dev/null || want+=(skopeo)
    command -v iperf3 >/dev/null || want+=(iperf3)
    command -v curl >/dev/null || want+=(curl)
    command -v jq >/dev/null || want+=(jq)
    command -v python3 >/dev/null || want+=(python3)
    command -v openssl >/dev/null || want+=(openssl)
    ((${#want[@]})) || return 0
    log "installing: ${want[*]}"
    local sudo=
    [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        "${want[@]}" >&2
    for p in docker-registry wrk hey skopeo iperf3 curl jq python3 openssl; do
        command -v "$p" >/dev/null || die "$p is still missing after apt-get install"
    done
}

# ---------------------------------------------------------------- cleanup
WORK=
PIDS=()
cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
now() { echo "$EPOCHREALTIME"; }
# calc EXPR: floating point via awk
calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }
CLK_TCK=$(getconf CLK_TCK)
# utime+stime of a process, seconds
cpu_s() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    awk -v t="$CLK_TCK" '{ printf "%.3f", ($12 + $13) / t }' <<<"$stat"
}
# VmHWM / VmRSS of a process, MiB
status_mib() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

RAW=
# rec METRIC SERVER ROUND VALUE
rec() {
    printf '{"metric":"%s","server":"%s","round":%s,"value":%s}\n' "$1" "$2" "$3" "$4" >>"$RAW"
}

# ---------------------------------------------------------------- servers
# Globals set by start_*: SRV_NAME SRV_PID SRV_PORT SRV_DIR BASE
wait_ready() {
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        kill -0 "$SRV_PID" 2>/dev/null || { tail -20 "$SRV_DIR/log" >&2; die "$SRV_NAME exited during start"; }
        if [[ -n ${SRV_PORT:-} ]] &&
            [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$SRV_PORT/v2/" || true) == 200 ]]; then
            return 0
        fi
        sleep 0.05
    done
    tail -20 "$SRV_DIR/log" >&2
    die "$SRV_NAME did not answer GET /v2/ within 30 s"
}

start_ocireg() {
    SRV_NAME=ocireg
    SRV_DIR=$(mktemp -d "$WORK/ocireg.XXXXXX")
    SRV_PORT=
    "$BIN" serve --root "$SRV_DIR/root" --listen 127.0.0.1:0 --port-file "$SRV_DIR/port" \
        --log-level warn >"$SRV_DIR/log" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    local deadline=$((SECONDS + 30))
    while [[ ! -s $SRV_DIR/port ]]; do
        kill -0 "$SRV_PID" 2>/dev/null || { cat "$SRV_DIR/log" >&2; die "ocireg exited during start"; }
        ((SECONDS < deadline)) || die "ocireg wrote no port file within 30 s"
        sleep 0.02
    done
    SRV_PORT=$(<"$SRV_DIR/port")
    wait_ready
    BASE=http://127.0.0.1:$SRV_PORT
}

start_distribution() {
    SRV_NAME=distribution
    SRV_DIR=$(mktemp -d "$WORK/distribution.XXXXXX")
    SRV_PORT=$(free_port)
    cat >"$SRV_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $SRV_DIR/root
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$SRV_PORT
EOF
    docker-registry serve "$SRV_DIR/config.yml" >"$SRV_DIR/log" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    wait_ready
    BASE=http://127.0.0.1:$SRV_PORT
}

# start_server NAME ROUND: fresh storage; records idle RSS and returns with globals set
start_server() {
    "start_$1"
    IDLE_CPU=$(cpu_s "$SRV_PID")
    rec idle_rss_mib "$1" "$2" "$(status_mib "$SRV_PID" VmRSS)"
}

# stop_server GROUP ROUND: records peak RSS of this group, stops, removes storage
stop_server() {
    rec "peak_rss_mib_$1" "$SRV_NAME" "$2" "$(status_mib "$SRV_PID" VmHWM)"
    kill -TERM "$SRV_PID"
    local deadline=$((SECONDS + 30))
    while kill -0 "$SRV_PID" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$SRV_NAME did not stop within 30 s of SIGTERM; killing it"
            kill -KILL "$SRV_PID" 2>/dev/null || true
        fi
        sleep 0.05
    done
    wait "$SRV_PID" 2>/dev/null || true
    forget_pid "$SRV_PID"
    # Distribution logs every 4xx answer (e.g. skopeo's HEAD of a blob not yet pushed) at
    # level=error as "response completed with error": expected, not shown
    local errs
    errs=$(grep -v 'response completed with error' "$SRV_DIR/log" | grep -iE 'panic|fatal|error' || true)
    if [[ -n $errs ]]; then
        log "$SRV_NAME logged errors:"
        tail -5 <<<"$errs" >&2
    fi
    rm -rf "$SRV_DIR"
}

# cpu_mark / cpu_rec METRIC ROUND: server CPU seconds spent between the two
cpu_mark() { CPU0=$(cpu_s "$SRV_PID"); }
cpu_rec() { rec "cpu_s_$1" "$SRV_NAME" "$2" "$(calc "$(cpu_s "$SRV_PID") - $CPU0")"; }
# client_mark / client_rec METRIC ROUND: CPU seconds of the client processes this shell
# waited for in between (the servers are reaped only when stopped, outside these windows).
# `times` must run in this shell: in a $(...) subshell it would see no children.
children_cpu_s() {
    times >"$WORK/times"
    CHILD_CPU=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/);
                               t += a[1] * 60 + a[2] }; printf "%.3f\n", t }' "$WORK/times")
}
client_mark() { children_cpu_s; CLI0=$CHILD_CPU; }
client_rec() { children_cpu_s; rec "client_cpu_s_$1" "$SRV_NAME" "$2" "$(calc "$CHILD_CPU - $CLI0")"; }
# cpu_rec_per_req METRIC ROUND: the same per request (REQS), for the fixed-duration runs
cpu_rec_per_req() {
    local cpu
    cpu=$(calc "$(cpu_s "$SRV_PID") - $CPU0")
    rec "cpu_s_$1" "$SRV_NAME" "$2" "$cpu"
    rec "cpu_us_per_req_$1" "$SRV_NAME" "$2" "$(calc "$cpu * 1e6 / ($REQS > 0 ? $REQS : 1)")"
}

# ---------------------------------------------------------------- clients
hdr_location() { awk 'tolower($1) == "location:" { sub(/\r$/, "", $2); print $2 }'; }
abs_url() { if [[ $1 == http* ]]; then echo "$1"; else echo "$BASE$1"; fi; }

# upload_blob REPO FILE DIGEST: POST, one PATCH with the whole file, PUT ?digest=
# Sets UP_POST_S UP_PATCH_S UP_PUT_S (seconds of each request).
upload_blob() {
    local repo=$1 file=$2 digest=$3 loc sep code t0 t1 t2 t3
    t0=$(now)
    loc=$(curl -sS -f -X POST -D - -o /dev/null "$BASE/v2/$repo/blobs/uploads/" | hdr_location)
    [[ -n $loc ]] || die "$SRV_NAME: POST upload gave no Location"
    loc=$(abs_url "$loc")
    t1=$(now)
    loc=$(curl -sS -f -X PATCH -H 'Content-Type: application/octet-stream' -H 'Expect:' \
        -T "$file" -D - -o /dev/null "$loc" | hdr_location)
    [[ -n $loc ]] || die "$SRV_NAME: PATCH gave no Location"
    loc=$(abs_url "$loc")
    sep='?'
    [[ $loc == *\?* ]] && sep='&'
    t2=$(now)
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary '' "$loc${sep}digest=$digest")
    [[ $code == 201 ]] || die "$SRV_NAME: PUT ?digest= answered $code"
    t3=$(now)
    UP_POST_S=$(calc "$t1 - $t0") UP_PATCH_S=$(calc "$t2 - $t1") UP_PUT_S=$(calc "$t3 - $t2")
}

skopeo_fresh_cache() { rm -f "$SKOPEO_BIC"; }
SKOPEO=(skopeo --insecure-policy)

# run_wrk CONNS URL [ACCEPT]: sets RPS P99_MS ERRS REQS
run_wrk() {
    local c=$1 url=$2 t=2 out js
    ((c < t)) && t=$c
    out=$(WRK_METHOD=GET WRK_ACCEPT=${3:-} wrk -t"$t" -c"$c" -d"${SECONDS_RUN}s" --timeout 5s \
        -s "$HERE/wrk.lua" "$url")
    js=$(sed -n 's/^BENCHJSON //p' <<<"$out")
    [[ -n $js ]] || { echo "$out" >&2; die "wrk printed no summary"; }
    RPS=$(jq -r '.requests / (.duration_us / 1e6) | round' <<<"$js")
    P99_MS=$(jq -r '.p99_us / 1000' <<<"$js")
    REQS=$(jq -r '.requests' <<<"$js")
    ERRS=$(jq -r '.err_connect + .err_read + .err_write + .err_status + .err_timeout' <<<"$js")
}

# run_hey_head CONNS URL ACCEPT: sets RPS P99_MS ERRS REQS (wrk cannot do HEAD: it waits for a body)
run_hey_head() {
    local out ok total
    out=$(hey -z "${SECONDS_RUN}s" -c "$1" -m HEAD -H "Accept: $3" "$2")
    RPS=$(awk '/Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    P99_MS=$(awk '$1 == "99%" { printf "%.4g", $3 * 1000 }' <<<"$out")
    ok=$(awk '/\[200\]/ { print $2 }' <<<"$out")
    total=$(awk '/^ *\[[0-9]+\]/ { n += $2 } END { print n + 0 }' <<<"$out")
    ERRS=$((total - ${ok:-0}))
    REQS=$total
    if grep -q 'Error distribution' <<<"$out"; then
        ERRS=$((ERRS + $(awk '/Error distribution/ { f = 1; next } f && /\[/ { gsub(/[\[\]]/, "", $1); n += $1 } END { print n + 0 }' <<<"$out")))
    fi
    [[ -n $RPS && -n $P99_MS ]] || { echo "$out" >&2; die "cannot parse hey output"; }
}

# push_small_image REPO: config + 4 KiB layer + manifest "latest" (setup, not measured)
push_small_image() {
    upload_blob "$1" "$CACHE/small4k.bin" "$D4K"
    upload_blob "$1" "$CACHE/smallcfg.json" "$(<"$CACHE/smallcfg.json.digest")"
    local code
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: $MANIFEST_MT" \
        --data-binary "@$CACHE/manifest.json" "$BASE/v2/$1/manifests/latest")
    [[ $code == 201 ]] || die "$SRV_NAME: manifest PUT answered $code"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Accept: $MANIFEST_MT" "$BASE/v2/$1/manifests/latest")
    [[ $code == 200 ]] || die "$SRV_NAME: manifest GET answered $code"
}

warn_errs() {
    if ((${ERRS:-0} > 0)); then
        log "WARNING: $SRV_NAME $1: $ERRS failed/non-2xx requests"
        rec "errors_$1" "$SRV_NAME" "$2" "$ERRS"
    fi
}

# ---------------------------------------------------------------- workloads
# Each takes the round; the server is running (globals set).
wl_upload() {
    local r=$1 t0 t1 repo=up-r$r
    cpu_mark
    t0=$(now)
    upload_blob "$repo" "$CACHE/blob.bin" "$BLOB_DIGEST"
    t1=$(now)
    cpu_rec upload "$r"
    [[ $(curl -sS -o /dev/null -w '%{http_code}' -I "$BASE/v2/$repo/blobs/$BLOB_DIGEST") == 200 ]] ||
        die "$SRV_NAME: uploaded blob not found"
    rec upload_MBps "$SRV_NAME" "$r" "$(calc "$BLOB_BYTES / 1e6 / ($t1 - $t0)")"
    rec upload_post_s "$SRV_NAME" "$r" "$UP_POST_S"
    rec upload_patch_s "$SRV_NAME" "$r" "$UP_PATCH_S"
    rec upload_put_s "$SRV_NAME" "$r" "$UP_PUT_S"
    log "  $SRV_NAME upload: $(calc "$BLOB_BYTES / 1e6 / ($t1 - $t0)") MB/s" \
        "(POST $UP_POST_S s, PATCH $UP_PATCH_S s, PUT $UP_PUT_S s)"
}

wl_pushpull() {
    local r=$1 t0 t1 repo=big-r$r d code pulldir
    skopeo_fresh_cache
    cpu_mark
    client_mark
    t0=$(now)
    "${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$CACHE/big:latest" \
        "docker://127.0.0.1:$SRV_PORT/$repo:latest" >&2
    t1=$(now)
    cpu_rec push "$r"
    client_rec push "$r"
    rec push_MBps "$SRV_NAME" "$r" "$(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)")"
    log "  $SRV_NAME skopeo push: $(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)") MB/s"

    # the layers must arrive as they are in the layout: a recompressing skopeo would make
    # the push figure measure its gzip (see mkcontent.py)
    d=$(curl -sS -f -H "Accept: $MANIFEST_MT" "$BASE/v2/$repo/manifests/latest" | jq -r '.layers[].digest')
    [[ $d == "$(printf '%s\n' "${BIG_LAYERS[@]}")" ]] ||
        die "$SRV_NAME: the pushed manifest has other layers than the layout (did skopeo recompress?)"

    cpu_mark
    client_mark
    t0=$(now)
    for d in "${BIG_LAYERS[@]}"; do
        code=$(curl -sS -o /dev/null -w '%{http_code}' "$BASE/v2/$repo/blobs/$d")
        [[ $code == 200 ]] || die "$SRV_NAME: GET layer answered $code"
    done
    t1=$(now)
    cpu_rec get "$r"
    client_rec get "$r"
    rec get_MBps "$SRV_NAME" "$r" "$(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)")"
    log "  $SRV_NAME curl GET layers: $(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)") MB/s"

    local paths=() got
    for d in "${BIG_LAYERS[@]}"; do paths+=("/v2/$repo/blobs/$d"); done
    cpu_mark
    t0=$(now)
    got=$(python3 "$HERE/getraw.py" 127.0.0.1 "$SRV_PORT" "${paths[@]}") ||
        die "$SRV_NAME: raw GET of the layers failed"
    t1=$(now)
    cpu_rec getraw "$r"
    ((got == BIG_BYTES)) || die "$SRV_NAME: raw GET read $got bytes, expected $BIG_BYTES"
    rec getraw_MBps "$SRV_NAME" "$r" "$(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)")"
    log "  $SRV_NAME GET layers, 1 MiB reads: $(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)") MB/s"

    pulldir=$(mktemp -d "$WORK/pull.XXXXXX")
    skopeo_fresh_cache
    cpu_mark
    client_mark
    t0=$(now)
    "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://127.0.0.1:$SRV_PORT/$repo:latest" \
        "oci:$pulldir/img:latest" >&2
    t1=$(now)
    cpu_rec pull "$r"
    client_rec pull "$r"
    rm -rf "$pulldir"
    rec pull_MBps "$SRV_NAME" "$r" "$(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)")"
    log "  $SRV_NAME skopeo pull: $(calc "$BIG_BYTES / 1e6 / ($t1 - $t0)") MB/s"
}

wl_small() {
    local r=$1 repo=small
    push_small_image "$repo"
    local murl=$BASE/v2/$repo/manifests/latest burl=$BASE/v2/$repo/blobs/$D4K

    cpu_mark
    run_wrk "$CONNS" "$murl" "$MANIFEST_MT"
    cpu_rec_per_req get_manifest "$r"
    rec get_manifest_rps "$SRV_NAME" "$r" "$RPS"
    rec get_manifest_p99_ms "$SRV_NAME" "$r" "$P99_MS"
    warn_errs get_manifest "$r"
    log "  $SRV_NAME GET manifest: $RPS req/s, p99 $P99_MS ms"

    cpu_mark
    run_hey_head "$CONNS" "$murl" "$MANIFEST_MT"
    cpu_rec_per_req head_manifest "$r"
    rec head_manifest_rps "$SRV_NAME" "$r" "$RPS"
    rec head_manifest_p99_ms "$SRV_NAME" "$r" "$P99_MS"
    warn_errs head_manifest "$r"
    log "  $SRV_NAME HEAD manifest: $RPS req/s, p99 $P99_MS ms"

    cpu_mark
    run_wrk "$CONNS" "$burl"
    cpu_rec_per_req get_blob4k "$r"
    rec get_blob4k_rps "$SRV_NAME" "$r" "$RPS"
    rec get_blob4k_p99_ms "$SRV_NAME" "$r" "$P99_MS"
    warn_errs get_blob4k "$r"
    log "  $SRV_NAME GET 4 KiB blob: $RPS req/s, p99 $P99_MS ms"
}

wl_push16() {
    local r=$1 t0 t1 i pids=() p failed=0
    skopeo_fresh_cache
    cpu_mark
    client_mark
    t0=$(now)
    for i in $(seq -w 0 15); do
        "${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$CACHE/many:img$i" \
            "docker://127.0.0.1:$SRV_PORT/many-r$r-$i:latest" >"$WORK/push16.$i.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
    t1=$(now)
    cpu_rec push16 "$r"
    client_rec push16 "$r"
    if ((failed)); then
        cat "$WORK"/push16.*.log >&2
        die "$SRV_NAME: $failed of 16 concurrent pushes failed"
    fi
    rec push16_wall_s "$SRV_NAME" "$r" "$(calc "$t1 - $t0")"
    log "  $SRV_NAME 16 concurrent pushes: $(calc "$t1 - $t0") s"
}

wl_scale() {
    local r=$1 c
    push_small_image small
    for c in "${SCALE_CONNS[@]}"; do
        run_wrk "$c" "$BASE/v2/small/manifests/latest" "$MANIFEST_MT"
        rec "scale_c${c}_rps" "$SRV_NAME" "$r" "$RPS"
        rec "scale_c${c}_p99_ms" "$SRV_NAME" "$r" "$P99_MS"
        warn_errs "scale_c$c" "$r"
        log "  $SRV_NAME GET manifest, $c connections: $RPS req/s, p99 $P99_MS ms"
    done
}

# ---------------------------------------------------------------- machine limits
# measure_limits ROUND: once per round; the report takes the best of the rounds, since a
# busy machine (other jobs on the same cores and disk) only ever lowers these figures
measure_limits() {
    local r=$1 out v port ipid
    log "machine limits: openssl speed -evp sha256 (one core, 16 KiB blocks)"
    out=$(openssl speed -seconds "$SHA_SECONDS" -bytes 16384 -evp sha256 2>/dev/null)
    # last line: "sha256   123456.78k" in 1000s of bytes per second
    v=$(awk '/^sha256/ { x = $NF } END { sub(/k$/, "", x); printf "%.1f", x / 1000 }' <<<"$out")
    [[ -n $v ]] || { echo "$out" >&2; die "cannot parse openssl speed"; }
    rec sha256_MBps machine "$r" "$v"

    log "machine limits: dd ${DD_MIB} MiB conv=fdatasync into $WORK"
    local t0 t1
    t0=$(now)
    dd if=/dev/zero of="$WORK/dd.bin" bs=1M count="$DD_MIB" conv=fdatasync status=none
    t1=$(now)
    rm -f "$WORK/dd.bin"
    rec disk_fdatasync_MBps machine "$r" "$(calc "$DD_MIB * 1048576 / 1e6 / ($t1 - $t0)")"

    log "machine limits: iperf3 loopback, one stream, ${IPERF_SECONDS} s"
    port=$(free_port)
    iperf3 -s -B 127.0.0.1 -p "$port" >"$WORK/iperf3-server.log" 2>&1 &
    ipid=$!
    PIDS+=("$ipid")
    # ready when listening (a probe connection would disturb iperf3's control protocol)
    local deadline=$((SECONDS + 15))
    until [[ -n $(ss -Hltn "sport = :$port") ]]; do
        kill -0 "$ipid" 2>/dev/null || { cat "$WORK/iperf3-server.log" >&2; die "iperf3 -s exited"; }
        ((SECONDS < deadline)) || die "iperf3 -s is not listening after 15 s"
        sleep 0.05
    done
    out=$(iperf3 -c 127.0.0.1 -p "$port" -t "$IPERF_SECONDS" -J) || die "iperf3 -c failed"
    kill -TERM "$ipid" 2>/dev/null || true
    wait "$ipid" 2>/dev/null || true
    forget_pid "$ipid"
    rec loopback_tcp_GBps machine "$r" "$(jq -r '.end.sum_received.bits_per_second / 8e9' <<<"$out")"
}

# ---------------------------------------------------------------- main
install_deps
mkdir -p "$CACHE_ROOT" "${BENCH_TMP:-/var/tmp}"
WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/ocireg-bench.XXXXXX")
RAW=$WORK/raw.jsonl
: >"$RAW"
START_TIME=$(date -u +%FT%TZ)
T_START=$SECONDS

python3 "$HERE/mkcontent.py" "$CACHE" "$BLOB_BYTES" "$LAYER_BYTES" "$SMALL_IMG_BYTES"
BLOB_DIGEST=$(<"$CACHE/blob.bin.digest")
D4K=$(<"$CACHE/small4k.bin.digest")
big_manifest=$CACHE/big/blobs/sha256/$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$CACHE/big/index.json")
mapfile -t BIG_LAYERS < <(jq -r '.layers[].digest' "$big_manifest")
BIG_BYTES=$(jq '[.layers[].size] | add' "$big_manifest")

for ((r = 1; r <= ROUNDS; r++)); do
    measure_limits "$r"
    for group in upload pushpull small push16; do
        # other load on the machine skews everything: recorded, shown under the table
        rec loadavg_1m machine "$r" "$(cut -d' ' -f1 /proc/loadavg)"
        # alternate which server goes first, round by round
        if ((r % 2)); then order=(ocireg distribution); else order=(distribution ocireg); fi
        for s in "${order[@]}"; do
            log "round $r/$ROUNDS, $group, $s"
            start_server "$s" "$r"
            "wl_$group" "$r"
            stop_server "$group" "$r"
        done
    done
    log "round $r/$ROUNDS, scaling (ocireg only)"
    start_server ocireg "$r"
    wl_scale "$r"
    stop_server scale "$r"
done

skopeo_fresh_cache
META=$(jq -n --arg start "$START_TIME" --arg bin "$BIN" --argjson quick "$QUICK" \
    --argjson rounds "$ROUNDS" --argjson seconds "$SECONDS_RUN" --argjson conns "$CONNS" \
    --argjson blob "$BLOB_BYTES" --argjson layer "$LAYER_BYTES" --argjson small "$SMALL_IMG_BYTES" \
    --argjson big "$BIG_BYTES" --arg ocv "$("$BIN" --version 2>&1 | head -1)" \
    --arg dv "$(docker-registry --version 2>&1 | head -1)" --arg sk "$(skopeo --version)" \
    --arg kernel "$(uname -r)" --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
    --argjson cores "$(nproc)" --argjson elapsed "$((SECONDS - T_START))" \
    --arg commit "$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    '{started: $start, elapsed_s: $elapsed, quick: ($quick == 1), rounds: $rounds,
      small_request_seconds: $seconds, connections: $conns,
      sizes: {upload_blob: $blob, layer: $layer, layers: 4, image_bytes: $big, small_image: $small,
              small_images: 16, small_blob: 4096},
      ocireg: {binary: $bin, version: $ocv, commit: $commit}, distribution: $dv, skopeo: $sk,
      machine: {cpu: $cpu, cores: $cores, kernel: $kernel}}')
python3 "$HERE/report.py" "$RAW" "$OUT" <<<"$META"
echo "raw figures: $OUT"
