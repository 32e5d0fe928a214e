#!/usr/bin/env bash
# Builds the ocireg container image from nothing (no base image) and pushes it to a registry.
#
#   deploy/image/build-image.sh [--ocireg BIN] [--rootfs DIR] [--registry HOST:PORT]
#       [--repo NAME] [--tag TAG] [--tls-verify true|false] [--creds USER:PASS]
#       [--data-root DIR] [--digestfile FILE]
#
# 1. The root file system, in DIR (default build/image-rootfs; made anew):
#      /usr/local/bin/ocireg              the binary (default build/ocireg)
#      /usr/local/bin/ocireg-healthcheck  HTTP probe for /healthz (healthcheck.c; no shell, no curl)
#      every shared library `ldd` lists for both, and the dynamic loader, at the same paths
#      /etc/passwd, /etc/group            root and the unprivileged user ocireg (65532:65532)
#      /etc/nsswitch.conf, /etc/hosts     files only (localhost resolves)
#      /var/lib/ocireg                    empty, owned by 65532:65532: the storage root (VOLUME)
#      /tmp                               1777
# 2. The image, with buildah on a private vfs store (a temp dir; the machine's container storage
#    is not used): `buildah from scratch`, the root file system added as one layer from tar
#    archives (so the owners above are kept), entrypoint, cmd, user, ports, volume, env, labels,
#    commit (OCI format, timestamps from SOURCE_DATE_EPOCH, else the last git commit, else the
#    binary's mtime: the same binary gives the same image digest).
# 3. The push: to --registry (or $REGISTRY) as REPO:TAG. Without a registry, a temporary
#    `ocireg serve` on a free loopback port over --data-root (default ./data, the storage of
#    `make run`) receives it and is stopped (SIGTERM) afterwards; `make run` then serves it.
#
# Needs: bash, coreutils, tar, ldd (libc-bin), a C compiler (cc), buildah; root for buildah's
# vfs store (or run it under `buildah unshare`).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)

OCIREG_BIN=${OCIREG_BIN:-$TOP/build/ocireg}
ROOTFS=${ROOTFS:-$TOP/build/image-rootfs}
REGISTRY=${REGISTRY:-}
REPO=${IMAGE_REPO:-ocireg}
TAG=${IMAGE_TAG:-}
TLS_VERIFY=${TLS_VERIFY:-}
CREDS=${REGISTRY_CREDS:-}
DATA_ROOT=${DATA_ROOT:-./data}
DIGESTFILE=
APP_UID=65532
APP_GID=65532

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit "${1:-2}"
}

while [ $# -gt 0 ]; do
    case $1 in
    --ocireg) OCIREG_BIN=$2 ;;
    --rootfs) ROOTFS=$2 ;;
    --registry) REGISTRY=$2 ;;
    --repo) REPO=$2 ;;
    --tag) TAG=$2 ;;
    --tls-verify) TLS_VERIFY=$2 ;;
    --creds) CREDS=$2 ;;
    --data-root) DATA_ROOT=$2 ;;
    --digestfile) DIGESTFILE=$2 ;;
    -h | --help) usage 0 ;;
    *)
        echo "build-image: unknown argument '$1'" >&2
        usage
        ;;
    esac
    [ $# -ge 2 ] || {
        echo "build-image: $1 needs a value" >&2
        exit 2
    }
    shift 2
done

say() { printf '[build-image] %s\n' "$*" >&2; }
die() {
    printf 'build-image: %s\n' "$*" >&2
    exit 1
}

for c in buildah ldd tar cc; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is not installed"
done
[ -x "$OCIREG_BIN" ] || die "no ocireg binary at '$OCIREG_BIN' (build it first: make build)"
OCIREG_BIN=$(cd "$(dirname "$OCIREG_BIN")" && pwd)/$(basename "$OCIREG_BIN")

VERSION=$("$OCIREG_BIN" --version | head -n 1 | awk '{print $2}')
[ -n "$VERSION" ] || die "'$OCIREG_BIN --version' printed no version"
TAG=${TAG:-$VERSION}
REVISION=$(git -C "$TOP" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$TOP" log -1 --format=%ct 2>/dev/null || stat -c %Y "$OCIREG_BIN")
fi
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocireg-image.XXXXXX")
CTR=
TMP_SERVER_PID=
BH=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
cleanup() {
    local rc=$?
    set +e
    if [ -n "$CTR" ]; then
        "${BH[@]}" rm "$CTR" >/dev/null 2>&1
    fi
    "${BH[@]}" rmi --all --force >/dev/null 2>&1
    if [ -n "$TMP_SERVER_PID" ]; then
        kill -TERM "$TMP_SERVER_PID" 2>/dev/null
        wait "$TMP_SERVER_PID" 2>/dev/null
    fi
    chmod -R u+rwX "$WORK" 2>/dev/null
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

# ---- 1. the root file system ----------------------------------------------------------------
say "root file system in $ROOTFS"
case $ROOTFS in
/ | "") die "refusing --rootfs '$ROOTFS'" ;;
esac
rm -rf "$ROOTFS"
umask 022
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc" "$ROOTFS/var/lib/ocireg" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
install -m 0755 "$OCIREG_BIN" "$ROOTFS/usr/local/bin/ocireg"
cc -O2 -Wall -Wextra -o "$ROOTFS/usr/local/bin/ocireg-healthcheck" "$HERE/healthcheck.c"

# Shared libraries and the loader, as ldd resolves them here, copied (symlinks followed) to the
# same absolute paths: the loader is the binary's PT_INTERP, and the loader's default search
# path (/lib/<triplet>, /usr/lib/<triplet>, /lib, /usr/lib) finds the rest without ld.so.cache.
libs_of() {
    ldd "$1" | awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }'
}
n=0
for lib in $( (libs_of "$OCIREG_BIN" && libs_of "$ROOTFS/usr/local/bin/ocireg-healthcheck") | sort -u); do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
    n=$((n + 1))
done
[ "$n" -ge 2 ] || die "ldd listed $n libraries for $OCIREG_BIN (a static binary needs no script)"
say "$n shared libraries (loader included)"

cat >"$ROOTFS/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
ocireg:x:$APP_UID:$APP_GID:ocireg:/var/lib/ocireg:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<EOF
root:x:0:
ocireg:x:$APP_GID:
EOF
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$ROOTFS/etc/nsswitch.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
chmod 0750 "$ROOTFS/var/lib/ocireg"

# Smoke test of the root file system before anything is built from it (root only: chroot).
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null 2>&1; then
    chroot "$ROOTFS" /usr/local/bin/ocireg --version >/dev/null ||
        die "the binary does not run in $ROOTFS (a library missing?)"
fi

# Two reproducible tar archives: everything as root:root, and the storage root as ocireg.
tar_opts=(--sort=name --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --format=gnu)
tar -C "$ROOTFS" "${tar_opts[@]}" --owner=0 --group=0 --exclude=./var/lib/ocireg \
    -cf "$WORK/rootfs.tar" .
tar -C "$ROOTFS" "${tar_opts[@]}" --owner="$APP_UID" --group="$APP_GID" --no-recursion \
    -cf "$WORK/data.tar" ./var/lib/ocireg

# ---- 2. the image -----------------------------------------------------------------------------
say "$(buildah --version)"
CTR=$("${BH[@]}" from scratch)
"${BH[@]}" add "$CTR" "$WORK/rootfs.tar" / >/dev/null
"${BH[@]}" add "$CTR" "$WORK/data.tar" / >/dev/null
"${BH[@]}" config \
    --os linux \
    --arch "$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')" \
    --entrypoint '["/usr/local/bin/ocireg"]' \
    --cmd '["serve", "--root", "/var/lib/ocireg", "--listen", "0.0.0.0:5000", "--auth", "token", "--admin-listen", "0.0.0.0:5001"]' \
    --user "$APP_UID:$APP_GID" \
    --workingdir /var/lib/ocireg \
    --env OCIREG_ROOT=/var/lib/ocireg \
    --port 5000/tcp \
    --port 5001/tcp \
    --volume /var/lib/ocireg \
    --stop-signal SIGTERM \
    --label org.opencontainers.image.title=ocireg \
    --label "org.opencontainers.image.description=OCI container registry (ocireg serve); admin listener (/healthz, /readyz, /metrics) on 5001" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.revision=$REVISION" \
    --label "org.opencontainers.image.created=$CREATED" \
    --label org.opencontainers.image.base.name=scratch \
    --created-by "deploy/image/build-image.sh" \
    "$CTR"
LOCAL=localhost/ocireg:$TAG
"${BH[@]}" commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --rm "$CTR" "$LOCAL" >/dev/null
CTR=
say "built $LOCAL ($(du -sh "$ROOTFS" | cut -f1) unpacked)"

# ---- 3. the push ------------------------------------------------------------------------------
if [ -z "$REGISTRY" ]; then
    mkdir -p "$DATA_ROOT"
    "$OCIREG_BIN" serve --root "$DATA_ROOT" --listen 127.0.0.1:0 --port-file "$WORK/port" \
        --admin-listen 127.0.0.1:0 --log-level warn </dev/null >"$WORK/server.log" 2>&1 &
    TMP_SERVER_PID=$!
    for _ in $(seq 1 200); do
        [ ! -s "$WORK/port" ] || break
        kill -0 "$TMP_SERVER_PID" 2>/dev/null || {
            cat "$WORK/server.log" >&2
            die "the temporary ocireg exited"
        }
        sleep 0.05
    done
    [ -s "$WORK/port" ] || die "the temporary ocireg wrote no port file within 10 s"
    REGISTRY=127.0.0.1:$(cat "$WORK/port")
    say "temporary ocireg (pid $TMP_SERVER_PID) on $REGISTRY, storage $DATA_ROOT"
fi
if [ -z "$TLS_VERIFY" ]; then
    case $REGISTRY in
    127.* | localhost | localhost:* | "[::1]"*) TLS_VERIFY=false ;;
    *) TLS_VERIFY=true ;;
    esac
fi
push_args=(--tls-verify="$TLS_VERIFY" --digestfile "$WORK/digest")
[ -z "$CREDS" ] || push_args+=(--creds "$CREDS")
say "pushing to docker://$REGISTRY/$REPO:$TAG"
"${BH[@]}" push --quiet "${push_args[@]}" "$LOCAL" "docker://$REGISTRY/$REPO:$TAG"
DIGEST=$(cat "$WORK/digest")
[ -z "$DIGESTFILE" ] || printf '%s\n' "$DIGEST" >"$DIGESTFILE"
if [ -n "$TMP_SERVER_PID" ]; then
    kill -TERM "$TMP_SERVER_PID"
    rc=0
    wait "$TMP_SERVER_PID" || rc=$?
    TMP_SERVER_PID=
    [ "$rc" = 0 ] || die "the temporary ocireg exited with status $rc"
    say "pushed $REPO:$TAG@$DIGEST into $DATA_ROOT (make run serves it)"
else
    say "pushed $REGISTRY/$REPO:$TAG@$DIGEST"
fi
echo "$REGISTRY/$REPO:$TAG@$DIGEST"
