# Shared helpers for the end-to-end tests (sourced by bash scripts, never run directly).
#
# A test script does:
#     . "$(dirname "$0")/lib.sh" "$@"      # $1 = path of the ocireg binary
#     e2e_need skopeo jq ...               # SKIP (exit 77) when a tool is missing
#     start_server                         # sets PORT and REG=127.0.0.1:PORT
#     ...
#     finish                               # stops the server, checks it exited 0
#
# Clients with helpers here: skopeo (sk), podman (podman_init, pm), buildah (buildah_init, bh)
# docker (docker_init starts a private containerd + dockerd; dk) and containerd's ctr
# (containerd_init starts a private containerd; ct).
#
# Everything lives under a fresh `mktemp -d` directory ($E2E_DIR); an EXIT trap stops the
# server (SIGTERM, then SIGKILL after a deadline) and removes that directory, whether the
# test passes, fails or is interrupted. Readiness is the --port-file the server writes (by
# rename) once it listens, polled with a deadline; the port is always ephemeral.
#
# Environment knobs:
#     E2E_LOG_LEVEL=debug    server log level (default warn); the log is printed on failure
#     E2E_KEEP=1             keep $E2E_DIR after the test (its path is printed)

# shellcheck disable=SC2034 # many variables set here are for the scripts that source this file
set -euo pipefail

E2E_SKIP_RC=77
OCIREG=${1:-}
if [ -z "$OCIREG" ] || [ ! -x "$OCIREG" ]; then
    echo "usage: $0 PATH/TO/ocireg (got '${OCIREG}')" >&2
    exit 2
fi
OCIREG=$(cd "$(dirname "$OCIREG")" && pwd)/$(basename "$OCIREG")

E2E_NAME=$(basename "$0" .sh)
E2E_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ocireg-e2e.XXXXXX")
# Clients put their temporary files here too, so nothing is left behind in /var/tmp.
mkdir -p "$E2E_DIR/tmp"
export TMPDIR="$E2E_DIR/tmp"
# No credentials from the machine: an empty auth file of our own.
printf '{"auths":{}}\n' >"$E2E_DIR/auth.json"
export REGISTRY_AUTH_FILE="$E2E_DIR/auth.json"
# A home of our own: the clients read their per-user containers configuration from it
# ($HOME/.config/containers/policy.json takes precedence over /etc/containers/policy.json,
# also for the podman commands that have no --signature-policy flag).
export HOME="$E2E_DIR/home" XDG_CONFIG_HOME="$E2E_DIR/home/.config"
mkdir -p "$XDG_CONFIG_HOME/containers"
E2E_POLICY="$XDG_CONFIG_HOME/containers/policy.json"
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$E2E_POLICY"

E2E_RUNBASE= # short directory for run-time state and sockets (see e2e_runbase)
SERVER_PID=
PORT=
REG=
E2E_CLEANUP_HOOKS=()
E2E_FAIL_LOGS=() # more logs shown on failure (see show_on_failure)
E2E_FINISHED=0

log() { printf '[%s %s] %s\n' "$E2E_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
skip() {
    echo "SKIP: $*"
    exit "$E2E_SKIP_RC"
}

# Runs a command, echoing it first; its output goes to stderr so that $(...) stays clean.
run() {
    log "+ $*"
    "$@"
}

# Like run, but the command must fail.
run_fails() {
    log "+ (must fail) $*"
    if "$@" >"$E2E_DIR/last.out" 2>&1; then
        cat "$E2E_DIR/last.out" >&2
        fail "command succeeded but should have failed: $*"
    fi
    sed 's/^/    /' "$E2E_DIR/last.out" | tail -n 5 >&2
}

# e2e_need CMD...: skip the test when one of the commands is not installed.
e2e_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "'$c' is not installed (apt-get install -y $c)"
    done
}

# on_exit CMD...: a cleanup step run by the EXIT trap before the server stops (last in, first out).
on_exit() { E2E_CLEANUP_HOOKS+=("$*"); }

# show_on_failure FILE TITLE [OMIT-REGEX]: the EXIT trap prints the tail of FILE (without the
# lines that match OMIT-REGEX) when the test fails.
show_on_failure() { E2E_FAIL_LOGS+=("$1" "$2" "${3:-^\$}"); }

# e2e_stop_pid PID NAME [SECONDS]: SIGTERM, then SIGKILL after the deadline (default 20 s); waits.
e2e_stop_pid() {
    local pid=$1 deadline=$((SECONDS + ${3:-20}))
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$2 ($pid) did not stop within ${3:-20}s of SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
}

# e2e_runbase: sets E2E_RUNBASE, a short directory for run-time state and unix sockets (podman
# refuses a runroot longer than 50 characters; a socket path has at most 107 bytes). It is
# removed with $E2E_DIR.
e2e_runbase() {
    [ -z "$E2E_RUNBASE" ] || return 0
    if [ ${#E2E_DIR} -le 30 ]; then
        E2E_RUNBASE=$E2E_DIR
    else
        E2E_RUNBASE=$(mktemp -d /tmp/e2e-run.XXXXXX)
    fi
}

stop_server() {
    local pid=$SERVER_PID rc=0 deadline
    [ -n "$pid" ] || return 0
    SERVER_PID=
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "server $pid did not stop within 20s of SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

e2e_cleanup() {
    local rc=$? i
    set +e
    trap - ERR
    for ((i = ${#E2E_CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${E2E_CLEANUP_HOOKS[i]}" >/dev/null 2>&1
    done
    stop_server
    if [ "$rc" -ne 0 ] && [ "$rc" -ne "$E2E_SKIP_RC" ] && [ -s "$E2E_DIR/server.log" ]; then
        # (clients probe https:// first; the server logs each TLS hello as a malformed request)
        echo "---- server log (last 80 lines, without the $(grep -c 'Request malformed' \
            "$E2E_DIR/server.log") 'Request malformed' lines of TLS probes) ----" >&2
        grep -v 'Request malformed' "$E2E_DIR/server.log" | tail -n 80 >&2
        echo "------------------------------------" >&2
    fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne "$E2E_SKIP_RC" ]; then
        for ((i = 0; i < ${#E2E_FAIL_LOGS[@]}; i += 3)); do
            [ -s "${E2E_FAIL_LOGS[i]}" ] || continue
            echo "---- ${E2E_FAIL_LOGS[i + 1]} (last 40 lines) ----" >&2
            grep -Ev -- "${E2E_FAIL_LOGS[i + 2]}" "${E2E_FAIL_LOGS[i]}" | tail -n 40 >&2
            echo "------------------------------------" >&2
        done
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        echo "kept $E2E_DIR" >&2
    else
        # podman's vfs storage may hold read-only directories; make them removable first
        chmod -R u+rwX "$E2E_DIR" 2>/dev/null
        rm -rf "$E2E_DIR"
        if [ -n "$E2E_RUNBASE" ] && [ "$E2E_RUNBASE" != "$E2E_DIR" ]; then
            chmod -R u+rwX "$E2E_RUNBASE" 2>/dev/null
            rm -rf "$E2E_RUNBASE"
        fi
    fi
    if [ "$rc" -eq 0 ] && [ "$E2E_FINISHED" != 1 ]; then
        echo "FAIL: script exited early without finishing" >&2
        rc=1
    fi
    e2e_record_outcome "$rc"
    exit "$rc"
}
# With E2E_OUTCOMES set (ctest sets it, see CMakeLists.txt), each test appends "name|pass",
# "name|skip" or "name|fail" there: the compatibility table's check (compat-check.sh) tells a
# README row whose test was skipped from one whose test no longer produces it.
e2e_record_outcome() {
    local o=fail
    [ -n "${E2E_OUTCOMES:-}" ] || return 0
    [ "$1" -ne 0 ] || o=pass
    [ "$1" -ne "$E2E_SKIP_RC" ] || o=skip
    mkdir -p "$(dirname "$E2E_OUTCOMES")" && printf '%s|%s\n' "$E2E_NAME" "$o" >>"$E2E_OUTCOMES"
}
trap e2e_cleanup EXIT
# Under set -e a failing command ends the test: say which one, and where it was called from.
e2e_on_err() {
    local rc=$1 cmd=$2 line=$3 i where
    where="${BASH_SOURCE[1]##*/}:$line"
    for ((i = 1; i < ${#FUNCNAME[@]} - 1; i++)); do
        where="$where <- ${BASH_SOURCE[i + 1]##*/}:${BASH_LINENO[i]}"
    done
    echo "FAIL: status $rc from: $cmd (at $where)" >&2
}
set -o errtrace
trap '[ "$BASH_SUBSHELL" != 0 ] || e2e_on_err $? "$BASH_COMMAND" $LINENO' ERR
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Starts ocireg on 127.0.0.1:0 with the storage root $E2E_DIR/root (kept across restarts);
# further serve flags may follow (--auth token, --tls-cert ...). Sets PORT and REG.
start_server() {
    local deadline scheme=http arg
    for arg in "$@"; do [ "$arg" != --tls-cert ] || scheme=https; done
    mkdir -p "$E2E_DIR/root"
    rm -f "$E2E_DIR/port"
    "$OCIREG" serve --root "$E2E_DIR/root" --listen 127.0.0.1:0 \
        --port-file "$E2E_DIR/port" --log-level "${E2E_LOG_LEVEL:-warn}" "$@" \
        </dev/null >>"$E2E_DIR/server.log" 2>&1 &
    SERVER_PID=$!
    deadline=$((SECONDS + 20))
    until [ -s "$E2E_DIR/port" ]; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            SERVER_PID=
            fail "ocireg exited before writing its port file"
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "no port file from ocireg within 20s"
        sleep 0.05
    done
    PORT=$(cat "$E2E_DIR/port")
    case $PORT in
    '' | *[!0-9]*) fail "bad port file content: '$PORT'" ;;
    esac
    REG=127.0.0.1:$PORT
    write_registries_conf
    log "ocireg (pid $SERVER_PID) listening on $REG"
    # The port file is written once listening, so /v2/ must answer right away (200, or 401
    # when access control is on).
    local code
    code=$(curl -s -k -o /dev/null -w '%{http_code}' --max-time 10 "$scheme://$REG/v2/") ||
        fail "GET /v2/ failed"
    case $code in
    200 | 401) ;;
    *) fail "GET /v2/ answered $code, want 200 (or 401 with auth)" ;;
    esac
}

# Stops the server (it must exit 0 on SIGTERM) and marks the test as complete.
finish() {
    local rc=0
    stop_server || rc=$?
    [ "$rc" -eq 0 ] || fail "ocireg exited with status $rc after SIGTERM (want 0)"
    E2E_FINISHED=1
    if [ -n "${E2E_RESULTS:-}" ] && [ -n "${E2E_COMPAT_CLIENT:-}" ]; then
        mkdir -p "$(dirname "$E2E_RESULTS")"
        printf '%s|%s|%s|%s\n' "$E2E_COMPAT_CLIENT" "$E2E_COMPAT_VERSION" "$E2E_COMPAT_OPS" \
            "$E2E_NAME" >>"$E2E_RESULTS"
    fi
    log "PASS"
}

# compat CLIENT VERSION OPERATIONS: what this test proves, for the README's compatibility
# table: a test that passes appends "client|version|operations|test" to $E2E_RESULTS
# (tests/e2e/compat-table.sh writes the table from those lines; compat-check.sh, run last by
# ctest, fails when the README's table differs from them).
compat() {
    E2E_COMPAT_CLIENT=$1
    E2E_COMPAT_VERSION=$2
    E2E_COMPAT_OPS=$3
}

# ---------------------------------------------------------------------------------------------
# Digests and small checks

# sha256 digest ("sha256:<hex>") of a file, or of stdin when no file is given.
digest_of() { printf 'sha256:%s' "$(sha256sum "${1:--}" | cut -d' ' -f1)"; }
size_of() { stat -c %s "$1"; }

expect_eq() { # expect_eq WHAT GOT WANT
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
    log "ok: $1 = $3"
}

# expect_out WHAT WANT CMD...: CMD must exit 0 and print exactly WANT (trailing newlines aside,
# as with $(...)). Use it rather than expect_eq "$(CMD)" where a failing CMD would print what
# is wanted, above all an empty WANT: $(CMD) of a command that fails is "" too, and an
# argument's command substitution does not stop the script under set -e.
expect_out() {
    local what=$1 want=$2 got rc=0
    shift 2
    got=$("$@") || rc=$?
    [ "$rc" -eq 0 ] || fail "$what: status $rc from: $*"
    expect_eq "$what" "$got" "$want"
}

# Every file under LAYOUT/blobs/sha256 must hash to its own name.
verify_layout_blobs() {
    local f n=0
    for f in "$1"/blobs/sha256/*; do
        [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$(basename "$f")" ] ||
            fail "blob $f does not match its digest"
        n=$((n + 1))
    done
    log "ok: $n blobs in $1 match their digests"
}

# Sorted list of the blob digests of a layout.
layout_blobs() { find "$1/blobs/sha256" -type f -printf 'sha256:%f\n' | sort; }

# Digest of the manifest/index tagged TAG in a layout's index.json.
layout_ref_digest() { # layout_ref_digest LAYOUT TAG
    jq -r --arg t "$2" \
        '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)]
         | if length == 1 then .[0].digest else error("tag \($t): \(length) entries") end' \
        "$1/index.json"
}

# ---------------------------------------------------------------------------------------------
# OCI image layouts, generated from nothing but tar, gzip and sha256sum.
#
# The generated JSON is compact, with fixed key order and no trailing newline, and the tar
# layers are reproducible (sorted names, mtime 0, uid/gid 0), so the digests are stable.

# layout_init DIR: an empty OCI image layout.
layout_init() {
    mkdir -p "$1/blobs/sha256"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
    : >"$1.refs"
    layout_write_index "$1"
}

# layout_add_blob LAYOUT FILE: moves FILE into the layout; sets BLOB_DIGEST and BLOB_SIZE.
layout_add_blob() {
    BLOB_SIZE=$(size_of "$2")
    BLOB_DIGEST=$(digest_of "$2")
    mv -f "$2" "$1/blobs/sha256/${BLOB_DIGEST#sha256:}"
}

layout_write_index() {
    local entries
    entries=$(paste -sd, "$1.refs")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
        "$entries" >"$1/index.json"
}

# layout_tag LAYOUT MEDIATYPE DIGEST SIZE TAG: records a tagged top-level entry in index.json.
layout_tag() {
    printf '{"mediaType":"%s","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}\n' \
        "$2" "$3" "$4" "$5" >>"$1.refs"
    layout_write_index "$1"
}

# tar_dir SRCDIR OUT: a reproducible tar of SRCDIR's contents (sorted names, mtime 0, uid/gid 0).
tar_dir() {
    local names
    names=$(cd "$1" && ls -A)
    # shellcheck disable=SC2086 # the names are ours, without blanks
    (cd "$1" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        --mode='u+rwX,go+rX,go-w' --format=ustar -cf "$2" $names)
}

# make_layer LAYOUT SRCDIR: a gzip'd tar of SRCDIR's contents as a blob; sets LAYER_DIGEST,
# LAYER_SIZE, LAYER_DIFF_ID (digest of the uncompressed tar) and LAYER_MEDIA_TYPE.
make_layer() { make_layer_as "$1" "$2" gzip; }

# make_layer_as LAYOUT SRCDIR COMPRESSION: the same, compressed with gzip or zstd, or none (a
# plain tar); LAYER_MEDIA_TYPE is the matching OCI layer media type.
make_layer_as() {
    local tarf="$E2E_DIR/tmp/layer.$$.tar"
    rm -f "$tarf" "$tarf.gz" "$tarf.zst"
    tar_dir "$2" "$tarf"
    LAYER_DIFF_ID=$(digest_of "$tarf")
    case $3 in
    gzip)
        gzip -n -9 "$tarf"
        tarf=$tarf.gz
        LAYER_MEDIA_TYPE=application/vnd.oci.image.layer.v1.tar+gzip
        ;;
    zstd)
        zstd -q -19 --rm "$tarf" -o "$tarf.zst"
        tarf=$tarf.zst
        LAYER_MEDIA_TYPE=application/vnd.oci.image.layer.v1.tar+zstd
        ;;
    none) LAYER_MEDIA_TYPE=application/vnd.oci.image.layer.v1.tar ;;
    *) fail "make_layer_as: unknown compression '$3'" ;;
    esac
    layout_add_blob "$1" "$tarf"
    LAYER_DIGEST=$BLOB_DIGEST
    LAYER_SIZE=$BLOB_SIZE
}

# make_image LAYOUT NAME ARCH [TAG]: a two-layer linux/ARCH image whose files are
#     /etc/e2e/base.txt   "base layer of NAME"
#     /e2e/NAME.txt       "NAME for linux/ARCH"
#     /e2e/big.txt        MAKE_IMAGE_BIG_MB megabytes of shuffled numbers, when that is set
# The layers are compressed with MAKE_IMAGE_COMPRESSION: gzip (the default), zstd or none.
# Sets IMG_MANIFEST (digest), IMG_MANIFEST_SIZE, IMG_CONFIG (digest), IMG_LAYERS and
# IMG_DIFF_IDS (two digests each, space-separated); tags it TAG in index.json when TAG is given.
make_image() {
    local layout=$1 name=$2 arch=$3 tag=${4:-} src l1 l2 d1 d2 s1 s2 f
    src="$E2E_DIR/tmp/src.$name.$arch"
    rm -rf "$src"
    mkdir -p "$src/1/etc/e2e" "$src/2/e2e"
    printf 'base layer of %s\n' "$name" >"$src/1/etc/e2e/base.txt"
    printf '%s for linux/%s\n' "$name" "$arch" >"$src/2/e2e/$name.txt"
    if [ "${MAKE_IMAGE_BIG_MB:-0}" -gt 0 ]; then
        # reproducible, poorly compressible filler: a shuffle driven by a fixed random source
        shuf -i 1-10000000 --random-source=<(yes "$name") | head -c "${MAKE_IMAGE_BIG_MB}000000" \
            >"$src/2/e2e/big.txt" || true
        [ "$(size_of "$src/2/e2e/big.txt")" = "${MAKE_IMAGE_BIG_MB}000000" ] || fail "big.txt"
    fi

    make_layer_as "$layout" "$src/1" "${MAKE_IMAGE_COMPRESSION:-gzip}"
    l1=$LAYER_DIGEST s1=$LAYER_SIZE d1=$LAYER_DIFF_ID
    make_layer_as "$layout" "$src/2" "${MAKE_IMAGE_COMPRESSION:-gzip}"
    l2=$LAYER_DIGEST s2=$LAYER_SIZE d2=$LAYER_DIFF_ID
    rm -rf "$src"

    f="$E2E_DIR/tmp/config.json"
    printf '{"created":"2024-01-01T00:00:00Z","architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/bin:/bin"],"Cmd":["/bin/sh"],"Labels":{"org.example.e2e.name":"%s"}},"rootfs":{"type":"layers","diff_ids":["%s","%s"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"e2e: base layer"},{"created":"2024-01-01T00:00:00Z","created_by":"e2e: %s layer"}]}' \
        "$arch" "$name" "$d1" "$d2" "$name" >"$f"
    layout_add_blob "$layout" "$f"
    IMG_CONFIG=$BLOB_DIGEST
    local csize=$BLOB_SIZE

    f="$E2E_DIR/tmp/manifest.json"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"%s","digest":"%s","size":%s},{"mediaType":"%s","digest":"%s","size":%s}]}' \
        "$IMG_CONFIG" "$csize" "$LAYER_MEDIA_TYPE" "$l1" "$s1" "$LAYER_MEDIA_TYPE" "$l2" "$s2" >"$f"
    layout_add_blob "$layout" "$f"
    IMG_MANIFEST=$BLOB_DIGEST
    IMG_MANIFEST_SIZE=$BLOB_SIZE
    IMG_LAYERS="$l1 $l2"
    IMG_DIFF_IDS="$d1 $d2"
    if [ -n "$tag" ]; then
        layout_tag "$layout" application/vnd.oci.image.manifest.v1+json "$IMG_MANIFEST" \
            "$IMG_MANIFEST_SIZE" "$tag"
    fi
}

# make_multiarch LAYOUT NAME TAG: a linux/amd64 + linux/arm64 image index tagged TAG.
# Sets IDX_DIGEST, IDX_SIZE, IDX_AMD64 / IDX_ARM64 (manifest digests), IDX_AMD64_CONFIG /
# IDX_ARM64_CONFIG and IDX_AMD64_LAYERS / IDX_ARM64_LAYERS. (It overwrites make_image's IMG_*.)
make_multiarch() {
    local layout=$1 name=$2 tag=$3 m1 s1 m2 s2 f
    make_image "$layout" "$name" amd64
    m1=$IMG_MANIFEST s1=$IMG_MANIFEST_SIZE IDX_AMD64_CONFIG=$IMG_CONFIG IDX_AMD64_LAYERS=$IMG_LAYERS
    make_image "$layout" "$name" arm64
    m2=$IMG_MANIFEST s2=$IMG_MANIFEST_SIZE IDX_ARM64_CONFIG=$IMG_CONFIG IDX_ARM64_LAYERS=$IMG_LAYERS
    f="$E2E_DIR/tmp/index.json"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"arm64","os":"linux"}}]}' \
        "$m1" "$s1" "$m2" "$s2" >"$f"
    layout_add_blob "$layout" "$f"
    IDX_DIGEST=$BLOB_DIGEST IDX_SIZE=$BLOB_SIZE IDX_AMD64=$m1 IDX_ARM64=$m2
    layout_tag "$layout" application/vnd.oci.image.index.v1+json "$IDX_DIGEST" "$IDX_SIZE" "$tag"
}

# ---------------------------------------------------------------------------------------------
# The distribution API with curl, for what no client here pushes (artifacts, subject).

# http_header FILE NAME: the value of header NAME in a `curl -D FILE` dump (the last response's).
http_header() {
    tr -d '\r' <"$1" | awk -v n="$2" '
        BEGIN { n = tolower(n) }
        /^HTTP\// { v = "" }
        {
            i = index($0, ":")
            if (i > 0 && tolower(substr($0, 1, i - 1)) == n) {
                v = substr($0, i + 1)
                sub(/^[ \t]+/, "", v)
            }
        }
        END { print v }'
}

# curl_push_blob REPO FILE: uploads FILE as a blob of REPO (POST, then PUT ?digest= with the
# body); sets BLOB_DIGEST and BLOB_SIZE.
curl_push_blob() {
    local repo=$1 f=$2 hdr="$E2E_DIR/tmp/push-blob.hdr" code loc sep
    BLOB_DIGEST=$(digest_of "$f") BLOB_SIZE=$(size_of "$f")
    log "+ curl: push blob $BLOB_DIGEST ($BLOB_SIZE bytes) to $repo"
    code=$(curl -s --max-time 30 -o /dev/null -D "$hdr" -w '%{http_code}' -X POST \
        "http://$REG/v2/$repo/blobs/uploads/") || fail "POST $repo/blobs/uploads/"
    [ "$code" = 202 ] || fail "POST $repo/blobs/uploads/ answered $code, want 202"
    loc=$(http_header "$hdr" Location)
    case $loc in
    http://* | https://*) ;;
    /*) loc="http://$REG$loc" ;;
    *) fail "bad upload Location '$loc'" ;;
    esac
    case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
    code=$(curl -s --max-time 30 -o /dev/null -D "$hdr" -w '%{http_code}' -X PUT \
        -H 'Content-Type: application/octet-stream' --data-binary "@$f" \
        "$loc${sep}digest=$BLOB_DIGEST") || fail "PUT upload of $BLOB_DIGEST"
    [ "$code" = 201 ] || fail "PUT upload of $BLOB_DIGEST answered $code, want 201"
    expect_eq "Docker-Content-Digest of blob upload" "$(http_header "$hdr" Docker-Content-Digest)" \
        "$BLOB_DIGEST"
}

# curl_push_manifest REPO REF FILE MEDIATYPE: PUT of a manifest (201 expected); its response
# headers are left in $E2E_DIR/push-manifest.hdr. Sets BLOB_DIGEST and BLOB_SIZE of FILE.
curl_push_manifest() {
    local code
    BLOB_DIGEST=$(digest_of "$3") BLOB_SIZE=$(size_of "$3")
    log "+ curl: PUT $1/manifests/$2 ($4, $BLOB_DIGEST)"
    code=$(curl -s --max-time 30 -o "$E2E_DIR/push-manifest.out" -D "$E2E_DIR/push-manifest.hdr" \
        -w '%{http_code}' -X PUT -H "Content-Type: $4" --data-binary "@$3" \
        "http://$REG/v2/$1/manifests/$2") || fail "PUT $1/manifests/$2"
    [ "$code" = 201 ] ||
        fail "PUT $1/manifests/$2 answered $code, want 201: $(cat "$E2E_DIR/push-manifest.out")"
    expect_eq "Docker-Content-Digest of manifest PUT" \
        "$(http_header "$E2E_DIR/push-manifest.hdr" Docker-Content-Digest)" "$BLOB_DIGEST"
}

# curl_push_tree REPO REF LAYOUT DIGEST: pushes the manifest or index DIGEST of LAYOUT to REPO
# under REF (a tag, or its digest), with everything it references first: blobs, then the
# manifests of an index by digest.
curl_push_tree() {
    local repo=$1 ref=$2 layout=$3 d=$4 f mt child children
    f="$layout/blobs/sha256/${d#sha256:}"
    mt=$(jq -r .mediaType "$f")
    case $mt in
    application/vnd.oci.image.index.v1+json)
        children=$(jq -r '.manifests[].digest' "$f")
        for child in $children; do
            curl_push_tree "$repo" "$child" "$layout" "$child"
        done
        ;;
    application/vnd.oci.image.manifest.v1+json)
        children=$(jq -r '.config.digest, .layers[].digest' "$f")
        for child in $children; do
            curl_push_blob "$repo" "$layout/blobs/sha256/${child#sha256:}"
        done
        ;;
    *) fail "curl_push_tree: $d has media type '$mt'" ;;
    esac
    curl_push_manifest "$repo" "$ref" "$f" "$mt"
}

# registry_holds REPO REF LAYOUT DIGEST: the registry serves REPO:REF as the manifest or index
# DIGEST of LAYOUT, byte for byte, and every manifest and blob it references in REPO with the
# very bytes of LAYOUT (whose blobs hash to their names: verify_layout_blobs).
registry_holds() {
    local repo=$1 ref=$2 layout=$3 d=$4 f got="$E2E_DIR/tmp/held" code child manifests blobs
    f="$layout/blobs/sha256/${d#sha256:}"
    [ -f "$f" ] || fail "registry_holds: $d is not a blob of $layout"
    code=$(curl -s --max-time 30 -o "$got" -D "$got.hdr" -w '%{http_code}' \
        -H 'Accept: application/vnd.oci.image.index.v1+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REG/v2/$repo/manifests/$ref") || fail "GET $repo/manifests/$ref"
    [ "$code" = 200 ] || fail "GET $repo/manifests/$ref answered $code, want 200"
    [ "$(http_header "$got.hdr" Docker-Content-Digest)" = "$d" ] ||
        fail "$repo:$ref: Docker-Content-Digest '$(http_header "$got.hdr" Docker-Content-Digest)', want $d"
    cmp -s "$got" "$f" || fail "$repo:$ref: the manifest served is not the generated $d"
    manifests=$(jq -r '.manifests[]?.digest' "$f")
    blobs=$(jq -r 'select(.config != null) | .config.digest, .layers[].digest' "$f")
    [ -n "$manifests$blobs" ] || fail "registry_holds: $d references nothing"
    for child in $manifests; do
        registry_holds "$repo" "$child" "$layout" "$child"
    done
    for child in $blobs; do
        curl -sf --max-time 30 -o "$got" "http://$REG/v2/$repo/blobs/$child" ||
            fail "GET $repo/blobs/$child"
        cmp -s "$got" "$layout/blobs/sha256/${child#sha256:}" ||
            fail "$repo: blob $child served is not the generated one"
    done
    log "ok: $repo:$ref is the generated $d, with all it references"
}

# archive_holds ARCHIVE LAYOUT REF=DIGEST...: the archive (an ocireg export, .tar.zst) is an
# OCI layout whose blobs are exactly those of LAYOUT (the generated ones: none missing, none
# more, each byte-identical and hashing to its name) and whose index.json names exactly the
# images REF (REPO:TAG) as DIGEST, each with the size and media type of that blob of LAYOUT.
# Every check ends in fail, so that it also detects a damaged archive in a subshell.
archive_holds() {
    local archive=$1 layout=$2 dir="$E2E_DIR/tmp/archive-holds" want="" ref d f
    shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    zstd -q -d -c "$archive" >"$dir.tar" || fail "$archive: not zstd"
    tar -xf "$dir.tar" -C "$dir" || fail "$archive: not a tar"
    rm -f "$dir.tar"
    jq -e '.imageLayoutVersion == "1.0.0"' "$dir/oci-layout" >/dev/null ||
        fail "$archive: oci-layout is not version 1.0.0"
    [ "$(find "$dir" -type f ! -path "$dir/blobs/sha256/*" | sed "s#^$dir/##" | sort | xargs)" = \
        "index.json oci-layout" ] || fail "$archive: files besides oci-layout, index.json, blobs"
    for f in "$dir"/blobs/sha256/*; do
        [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$(basename "$f")" ] ||
            fail "$archive: blob $(basename "$f") does not hash to its name"
        cmp -s "$f" "$layout/blobs/sha256/$(basename "$f")" ||
            fail "$archive: blob $(basename "$f") is not a generated one"
    done
    [ "$(layout_blobs "$dir" | xargs)" = "$(layout_blobs "$layout" | xargs)" ] ||
        fail "$archive: blobs $(layout_blobs "$dir" | xargs), want $(layout_blobs "$layout" | xargs)"
    for ref in "$@"; do
        d=${ref#*=}
        f="$layout/blobs/sha256/${d#sha256:}"
        want+="${ref%%=*} $d $(size_of "$f") $(jq -r .mediaType "$f")"$'\n'
    done
    [ "$(jq -r '.manifests[] | "\(.annotations["org.opencontainers.image.ref.name"]) \(.digest) \(.size) \(.mediaType)"' \
        "$dir/index.json" | sort)" = "$(printf '%s' "$want" | sort)" ] ||
        fail "$archive: index.json names $(jq -c '[.manifests[] | {(.annotations["org.opencontainers.image.ref.name"]): .digest}]' "$dir/index.json"), want $*"
    log "ok: $archive holds exactly the generated $(layout_blobs "$layout" | wc -l) blobs and $*"
}

# ---------------------------------------------------------------------------------------------
# skopeo, isolated from the machine's configuration (own policy, registries.conf, auth file,
# temp dir).

E2E_REGISTRIES_CONF="$E2E_DIR/registries.conf"
# Filled in by start_server (write_registries_conf) once the port is known.
: >"$E2E_REGISTRIES_CONF"
export CONTAINERS_REGISTRIES_CONF="$E2E_REGISTRIES_CONF"

write_registries_conf() {
    cat >"$E2E_REGISTRIES_CONF" <<EOF
unqualified-search-registries = []
short-name-mode = "enforcing"

[[registry]]
location = "$REG"
insecure = true
EOF
}

# Each client command gets this long before it is killed (a hang fails the test, with cleanup,
# instead of running into the ctest TIMEOUT).
E2E_CMD_TIMEOUT=${E2E_CMD_TIMEOUT:-60}

# sk ARGS...: skopeo with the isolation flags (logged without them).
sk() {
    log "+ skopeo $*"
    timeout -k 5 "$E2E_CMD_TIMEOUT" skopeo --policy "$E2E_POLICY" --registries-conf "$E2E_REGISTRIES_CONF" \
        --tmpdir "$E2E_DIR/tmp" "$@"
}

# ---------------------------------------------------------------------------------------------
# podman, with its own storage under $E2E_DIR (vfs driver, cgroupfs, file events: works as root
# without systemd) and its own containers.conf / storage.conf, so the machine's images and
# settings are neither used nor touched.

# containers_conf_init: a containers.conf and storage.conf of the test's own (cgroupfs, file
# events, vfs storage under $E2E_DIR) for podman and buildah; sets E2E_RUNBASE.
containers_conf_init() {
    e2e_runbase
    [ ! -s "$E2E_DIR/containers.conf" ] || return 0
    cat >"$E2E_DIR/containers.conf" <<'CONF'
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    # (pm and bh pass --root/--runroot per store; these defaults only keep them off /var/lib)
    cat >"$E2E_DIR/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$E2E_DIR/containers-default/storage"
runroot = "$E2E_RUNBASE/run-default"
CONF
    export CONTAINERS_CONF="$E2E_DIR/containers.conf"
    export CONTAINERS_STORAGE_CONF="$E2E_DIR/storage.conf"
}

# podman_init: checks that podman can run here at all (else SKIP); call after start_server.
podman_init() {
    e2e_need podman
    containers_conf_init
    podman --version >/dev/null 2>&1 || skip "podman is installed but cannot run"
    log "$(podman --version)"
    if ! pm probe info >"$E2E_DIR/podman-info.txt" 2>&1; then
        cat "$E2E_DIR/podman-info.txt" >&2
        skip "podman cannot set up its storage here: $(grep -m1 -i error "$E2E_DIR/podman-info.txt" || tail -n 1 "$E2E_DIR/podman-info.txt")"
    fi
}

# pm STORE ARGS...: podman on the private storage STORE (a name: a, b, ...).
pm() {
    local s="$E2E_DIR/podman-$1" r="$E2E_RUNBASE/run-$1"
    mkdir -p "$s/tmp"
    shift
    log "+ podman [$(basename "$s")] $*"
    timeout -k 5 "$E2E_CMD_TIMEOUT" podman --root "$s/storage" --runroot "$r" --tmpdir "$s/tmp" \
        --storage-driver vfs --cgroup-manager cgroupfs --events-backend file "$@"
}

# ---------------------------------------------------------------------------------------------
# buildah, on private storages under $E2E_DIR (vfs driver; the same containers.conf and
# storage.conf as podman). Nothing here runs a container.

# The blob info cache (which blob is known under which digests, and in which repositories of
# which registry: what lets a push mount a layer from another repository instead of uploading
# it) is /var/lib/containers/cache for root, shared by every root client on the machine, and other
# tools delete it (tests/bench/run.sh does, for cold measurements). buildah has no flag to move
# it, so bh runs buildah in a mount namespace of its own where a directory of the test is bound
# over /var/lib/containers/cache, when the machine allows that (BH_OWN_CACHE=1).
BH_OWN_CACHE=0
BH_SYSTEM_CACHE=/var/lib/containers/cache

# buildah_init: checks that buildah can run here at all (else SKIP).
buildah_init() {
    e2e_need buildah
    containers_conf_init
    buildah --version >/dev/null 2>&1 || skip "buildah is installed but cannot run"
    log "$(buildah --version)"
    mkdir -p "$E2E_DIR/buildah-cache"
    # (buildah as root creates that directory itself on its first pull or push)
    if command -v unshare >/dev/null 2>&1 && mkdir -p "$BH_SYSTEM_CACHE" 2>/dev/null &&
        unshare --mount --propagation private -- \
            mount --bind "$E2E_DIR/buildah-cache" "$BH_SYSTEM_CACHE" 2>"$E2E_DIR/unshare.err"; then
        BH_OWN_CACHE=1
        log "buildah runs with a blob info cache of its own ($E2E_DIR/buildah-cache)"
    else
        log "buildah shares the machine's blob info cache (no private mount namespace here:" \
            "$(tail -n 1 "$E2E_DIR/unshare.err" 2>/dev/null))"
    fi
    if ! bh probe info >"$E2E_DIR/buildah-info.txt" 2>&1; then
        cat "$E2E_DIR/buildah-info.txt" >&2
        skip "buildah cannot set up its storage here: $(grep -m1 -i error "$E2E_DIR/buildah-info.txt" || tail -n 1 "$E2E_DIR/buildah-info.txt")"
    fi
}

# bh STORE ARGS...: buildah on the private storage STORE (a name: a, b, ...). Global flags such
# as --log-level go first in ARGS.
bh() {
    local s="$E2E_DIR/buildah-$1" r="$E2E_RUNBASE/brun-$1" ns=()
    mkdir -p "$s/tmp"
    shift
    log "+ buildah [$(basename "$s")] $*"
    if [ "$BH_OWN_CACHE" = 1 ]; then
        # shellcheck disable=SC2016 # expanded by that sh
        ns=(unshare --mount --propagation private -- sh -c
            'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$E2E_DIR/buildah-cache"
            "$BH_SYSTEM_CACHE")
    fi
    TMPDIR="$s/tmp" timeout -k 5 "$E2E_CMD_TIMEOUT" "${ns[@]}" buildah --root "$s/storage" \
        --runroot "$r" --storage-driver vfs "$@"
}

# ---------------------------------------------------------------------------------------------
# containerd: a daemon of the test's own (containerd_init), for dockerd and for ctr. All its state
# is under $E2E_DIR/containerd and $E2E_RUNBASE/ctrd (no CRI plugin, no systemd); the machine's
# containerd (/run/containerd) is neither used nor touched. The EXIT trap stops it and unmounts
# whatever it left mounted under the test's directories.

CONTAINERD_PID=
CONTAINERD_SOCK=

# containerd_init: starts the test's containerd (else SKIP, with the reason); sets CONTAINERD_SOCK.
containerd_init() {
    local d r deadline
    [ -z "$CONTAINERD_PID" ] || return 0
    e2e_need containerd
    [ "$(id -u)" = 0 ] || skip "containerd needs root here (no rootless set-up)"
    e2e_runbase
    d=$E2E_DIR/containerd r=$E2E_RUNBASE/ctrd
    mkdir -p "$d/root" "$d/opt" "$r"
    CONTAINERD_SOCK=$r/containerd.sock
    cat >"$d/containerd.toml" <<CONF
version = 2
root = "$d/root"
state = "$r/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
CONF
    containerd --config "$d/containerd.toml" </dev/null >"$d/containerd.log" 2>&1 &
    CONTAINERD_PID=$!
    on_exit containerd_stop
    show_on_failure "$d/containerd.log" "containerd log" 'level=info'
    deadline=$((SECONDS + 30))
    until [ -S "$CONTAINERD_SOCK" ]; do
        if ! kill -0 "$CONTAINERD_PID" 2>/dev/null; then
            tail -n 20 "$d/containerd.log" >&2
            skip "containerd cannot run here: $(docker_log_error "$d/containerd.log")"
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "containerd did not create its socket within 30s"
        sleep 0.05
    done
    log "containerd (pid $CONTAINERD_PID) ready: $(containerd --version)"
}

# Stops containerd (SIGTERM, SIGKILL after a deadline), and unmounts whatever it (or dockerd, or
# ctr) left mounted under the test's directories.
containerd_stop() {
    local m
    e2e_stop_pid "$CONTAINERD_PID" containerd 20
    CONTAINERD_PID=
    for m in $(findmnt -rn -o TARGET | grep -F -e "$E2E_DIR/" -e "$E2E_RUNBASE/" | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

# ct ARGS...: ctr against the test's containerd, in the namespace "e2e", with the native
# snapshotter (plain directories: unpacking works on any filesystem, without overlayfs).
ct() {
    log "+ ctr $*"
    CONTAINERD_SNAPSHOTTER=native timeout -k 5 "$E2E_CMD_TIMEOUT" ctr --address "$CONTAINERD_SOCK" \
        --namespace e2e "$@"
}

# ---------------------------------------------------------------------------------------------
# docker: a dockerd of the test's own on the test's containerd (call docker_init after
# start_server). It keeps all its state under $E2E_DIR/docker and $E2E_RUNBASE/dk (vfs storage
# driver, no bridge, no iptables, no systemd); the EXIT trap stops it. The docker CLI talks to that
# daemon only (DOCKER_HOST) and keeps its configuration in a directory of the test's own
# (DOCKER_CONFIG, with the experimental CLI commands enabled for `docker manifest`).

DOCKERD_PID=
DOCKER_CLI=
E2E_RUN_DOCKER_NEW=0 # dockerd creates /run/docker/plugins (a fixed path): remove it if it was new

docker_init() {
    local d r deadline c
    for c in dockerd containerd runc; do
        command -v "$c" >/dev/null 2>&1 ||
            skip "'$c' is not installed (apt-get install -y docker.io)"
    done
    [ "$(id -u)" = 0 ] || skip "dockerd needs root here (no rootless set-up)"
    # The client of the same package as the daemon (another docker may come first in PATH).
    DOCKER_CLI=$(dirname "$(command -v dockerd)")/docker
    [ -x "$DOCKER_CLI" ] || DOCKER_CLI=$(command -v docker) || skip "no docker client"
    # dockerd would start a containerd itself, but would use the machine's instead when
    # /run/containerd/containerd.sock exists; this one is ours in every case.
    containerd_init
    d=$E2E_DIR/docker r=$E2E_RUNBASE/dk
    mkdir -p "$d/config" "$r"
    export DOCKER_HOST="unix://$r/docker.sock" DOCKER_CONFIG="$d/config"
    printf '{"auths":{},"experimental":"enabled"}\n' >"$DOCKER_CONFIG/config.json"

    [ -e /run/docker ] || E2E_RUN_DOCKER_NEW=1
    # (deprecated-key-path: else dockerd 20.10 writes its identity key to /etc/docker/key.json)
    printf '{"deprecated-key-path":"%s"}\n' "$d/key.json" >"$d/daemon.json"
    on_exit docker_stop
    dockerd --config-file "$d/daemon.json" --containerd "$CONTAINERD_SOCK" \
        --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none --ip-forward=false \
        --insecure-registry "$REG" --data-root "$d/data" --exec-root "$r/exec" \
        --pidfile "$r/docker.pid" -H "$DOCKER_HOST" </dev/null >"$d/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    show_on_failure "$d/dockerd.log" "dockerd log" 'module=grpc'
    deadline=$((SECONDS + 60))
    until "$DOCKER_CLI" info >"$d/info.txt" 2>&1; do
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -n 20 "$d/dockerd.log" >&2
            skip "dockerd cannot run here: $(docker_log_error "$d/dockerd.log")"
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "dockerd did not answer 'docker info' within 60s"
        sleep 0.1
    done
    log "dockerd (pid $DOCKERD_PID, containerd $CONTAINERD_PID) ready: client $("$DOCKER_CLI" version --format '{{.Client.Version}}'), server $("$DOCKER_CLI" version --format '{{.Server.Version}}')"
}

# docker_log_error LOG: the first error of a containerd/dockerd log (else its last line).
docker_log_error() { grep -m1 -iE 'level=(fatal|error)' "$1" || tail -n 1 "$1"; }

# Stops dockerd (SIGTERM, SIGKILL after a deadline); containerd_stop, run after it, unmounts what
# it left mounted.
docker_stop() {
    e2e_stop_pid "$DOCKERD_PID" dockerd 30
    DOCKERD_PID=
    if [ "$E2E_RUN_DOCKER_NEW" = 1 ]; then
        rmdir /run/docker/plugins /run/docker 2>/dev/null || true
    fi
}

# dk ARGS...: the docker client against the test's own daemon.
dk() {
    log "+ docker $*"
    timeout -k 5 "$E2E_CMD_TIMEOUT" "$DOCKER_CLI" "$@"
}

# make_docker_archive TARFILE REPO:TAG SRCDIR...: a `docker save` style archive (manifest.json,
# the config as <hex>.json, N/layer.tar) of a linux/amd64 image with one uncompressed layer per
# SRCDIR, for `docker load`. Sets ARCHIVE_CONFIG (its digest: the docker image ID) and
# ARCHIVE_DIFF_IDS (space-separated).
make_docker_archive() {
    local out=$1 tag=$2 dir="$E2E_DIR/tmp/archive.$$" i=0 src d diff_ids="" layers="" history=""
    shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    for src in "$@"; do
        i=$((i + 1))
        mkdir "$dir/$i"
        tar_dir "$src" "$dir/$i/layer.tar"
        d=$(digest_of "$dir/$i/layer.tar")
        diff_ids+="${diff_ids:+,}\"$d\""
        layers+="${layers:+,}\"$i/layer.tar\""
        history+="${history:+,}{\"created\":\"2024-01-01T00:00:00Z\",\"created_by\":\"e2e: layer $i\"}"
    done
    printf '{"architecture":"amd64","config":{"Env":["PATH=/usr/bin:/bin"],"Cmd":["/bin/sh"],"Labels":{"org.example.e2e.name":"%s"}},"created":"2024-01-01T00:00:00Z","history":[%s],"os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}' \
        "$tag" "$history" "$diff_ids" >"$dir/config.json"
    ARCHIVE_CONFIG=$(digest_of "$dir/config.json")
    mv "$dir/config.json" "$dir/${ARCHIVE_CONFIG#sha256:}.json"
    ARCHIVE_DIFF_IDS=$(echo "$diff_ids" | tr -d '"' | tr , ' ')
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]' \
        "${ARCHIVE_CONFIG#sha256:}" "$tag" "$layers" >"$dir/manifest.json"
    tar -C "$dir" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$out" .
    rm -rf "$dir"
}
