#!/bin/bash
# buildah against ocireg (nothing is run in a container): a two-layer base image is built from
# scratch with `buildah copy` in one private storage and pushed; a second, empty storage builds on
# it (`buildah from` pulls it from ocireg), adds a layer and pushes the result to another
# repository. That second push must not upload the base layers again: buildah mounts them from
# the base repository (or finds them there), as its debug log of the HTTP requests shows. Both
# images are then read back (skopeo, and a third storage) with the expected files.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need jq curl sha256sum shuf skopeo
compat "buildah" "$(buildah --version | cut -d" " -f3)" "build FROM scratch, push, pull, build on top, push with mounts"

# --- the files of the three layers ------------------------------------------------------------
SRC="$E2E_DIR/src"
mkdir -p "$SRC/1/etc/e2e" "$SRC/2/e2e" "$SRC/3/e2e"
printf 'base layer 1\n' >"$SRC/1/etc/e2e/base.txt"
shuf -i 1-10000000 --random-source=<(yes buildah) | head -c 1000000 >"$SRC/2/e2e/data.txt" || true
[ "$(size_of "$SRC/2/e2e/data.txt")" = 1000000 ] || fail "data.txt"
printf 'derived layer\n' >"$SRC/3/e2e/derived.txt"

start_server
buildah_init
TLS=--tls-verify=false

# in_container STORE CONTAINER PATH: prints a file of a working container's root filesystem.
in_container() {
    local mnt
    mnt=$(bh "$1" mount "$2")
    [ -d "$mnt" ] || fail "buildah mount gave '$mnt'"
    cat "$mnt/$3"
    bh "$1" umount "$2" >/dev/null
}
on_exit 'bh a umount --all; bh b umount --all; bh c umount --all'

# manifest_layers REPO:TAG: the layer digests of a manifest in the registry, space-separated.
manifest_layers() {
    sk inspect --tls-verify=false --raw "docker://$REG/$1" | jq -r '[.layers[].digest] | join(" ")'
}

# --- base image: from scratch, two layers (store a) ---------------------------------------------
C=$(bh a from scratch)
bh a copy "$C" "$SRC/1" /
bh a commit --quiet "$C" localhost/e2e-base-1 >/dev/null
bh a rm "$C" >/dev/null
C=$(bh a from localhost/e2e-base-1)
bh a copy "$C" "$SRC/2" /
bh a config --label org.example.e2e.name=base --env E2E=base "$C"
bh a commit --quiet "$C" localhost/e2e-base >/dev/null
bh a rm "$C" >/dev/null
expect_eq "layers of the base image" \
    "$(bh a inspect --type image --format '{{len .OCIv1.RootFS.DiffIDs}}' localhost/e2e-base)" 2

bh a push $TLS --digestfile "$E2E_DIR/base.digest" localhost/e2e-base "docker://$REG/e2e/base:1"
BASE_DIGEST=$(cat "$E2E_DIR/base.digest")
expect_eq "digest of e2e/base:1" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/e2e/base:1" | digest_of)" "$BASE_DIGEST"
BASE_LAYERS=$(manifest_layers e2e/base:1)
read -ra base <<<"$BASE_LAYERS"
[ ${#base[@]} = 2 ] || fail "e2e/base:1 has ${#base[@]} layers, want 2"

# --- derived image: from the registry, one more layer (store b, empty) ------------------------
expect_out "images in store b" "" bh b images --quiet
C=$(bh b --log-level debug from $TLS "$REG/e2e/base:1" 2>"$E2E_DIR/from.log")
show_on_failure "$E2E_DIR/from.log" "buildah from (debug)"
for l in $BASE_LAYERS; do
    grep -q "GET http://$REG/v2/e2e/base/blobs/$l\"" "$E2E_DIR/from.log" ||
        fail "buildah from did not fetch layer $l from ocireg"
done
log "ok: buildah from fetched both base layers from ocireg"
expect_eq "base.txt in the new container" "$(in_container b "$C" etc/e2e/base.txt)" "base layer 1"
expect_eq "digest of data.txt in the new container" \
    "$(in_container b "$C" e2e/data.txt | digest_of)" "$(digest_of "$SRC/2/e2e/data.txt")"
bh b copy "$C" "$SRC/3" /
bh b config --label org.example.e2e.name=derived "$C"
bh b commit --quiet "$C" localhost/e2e-derived >/dev/null
bh b rm "$C" >/dev/null

bh b --log-level debug push $TLS --digestfile "$E2E_DIR/derived.digest" localhost/e2e-derived \
    "docker://$REG/e2e/derived:1" 2>"$E2E_DIR/push.log"
show_on_failure "$E2E_DIR/push.log" "buildah push of e2e/derived (debug)"
DERIVED_DIGEST=$(cat "$E2E_DIR/derived.digest")
DERIVED_LAYERS=$(manifest_layers e2e/derived:1)
read -ra derived <<<"$DERIVED_LAYERS"
[ ${#derived[@]} = 3 ] || fail "e2e/derived:1 has ${#derived[@]} layers, want 3"
expect_eq "base layers of e2e/derived:1" "${derived[0]} ${derived[1]}" "$BASE_LAYERS"
NEW_LAYER=${derived[2]}

# The HTTP requests of that push (containers/image logs each one at debug level as
# `msg="METHOD URL"`). For the base layers: no upload session carrying their data (a PUT
# .../blobs/uploads/...?digest=<layer>, or a POST ...?digest=<layer> for a monolithic upload);
# each was instead either mounted (POST .../blobs/uploads/?from=e2e/base&mount=<layer>) or
# found in place (HEAD .../blobs/<layer>). The new layer was uploaded.
grep -oE 'msg="(GET|HEAD|POST|PUT|PATCH|DELETE) [^"]*"' "$E2E_DIR/push.log" |
    sed 's/^msg="//; s/"$//; s/%3A/:/g; s/%2F/\//g' >"$E2E_DIR/push.requests"
log "requests of the second push:"
sed 's/^/    /' "$E2E_DIR/push.requests" >&2
for l in $BASE_LAYERS; do
    if grep -E "^(PUT|POST) .*/blobs/uploads/.*[?&]digest=$l" "$E2E_DIR/push.requests"; then
        fail "the second push uploaded base layer $l again"
    fi
    mounted=$(grep -cE "^POST http://$REG/v2/e2e/derived/blobs/uploads/\?.*mount=$l" \
        "$E2E_DIR/push.requests" || true)
    found=$(grep -cE "^HEAD http://$REG/v2/e2e/derived/blobs/$l\$" "$E2E_DIR/push.requests" || true)
    [ "$mounted" -ge 1 ] || [ "$found" -ge 1 ] ||
        fail "the second push neither mounted nor found base layer $l"
    log "ok: base layer $l not uploaded again (mount requests: $mounted, HEAD: $found)"
done
grep -qE "^PUT http://$REG/v2/e2e/derived/blobs/uploads/.*[?&]digest=$NEW_LAYER" \
    "$E2E_DIR/push.requests" || fail "the new layer $NEW_LAYER was not uploaded"
log "ok: the new layer $NEW_LAYER was uploaded"
# The registry serves every layer from the new repository.
for l in $DERIVED_LAYERS; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -I \
        "http://$REG/v2/e2e/derived/blobs/$l")
    expect_eq "HEAD e2e/derived blob $l" "$code" 200
done

# --- read back: a third, empty storage pulls the derived image -------------------------------
C=$(bh c from $TLS "$REG/e2e/derived:1")
expect_eq "derived.txt" "$(in_container c "$C" e2e/derived.txt)" "derived layer"
expect_eq "base.txt" "$(in_container c "$C" etc/e2e/base.txt)" "base layer 1"
expect_eq "digest of data.txt" "$(in_container c "$C" e2e/data.txt | digest_of)" \
    "$(digest_of "$SRC/2/e2e/data.txt")"
expect_eq "manifest digest of the pulled image" \
    "$(bh c images --format '{{.Digest}}' "$REG/e2e/derived:1")" "$DERIVED_DIGEST"
expect_eq "label of the pulled image" \
    "$(bh c inspect --type image --format '{{index .OCIv1.Config.Labels "org.example.e2e.name"}}' \
        "$REG/e2e/derived:1")" derived
bh c rm "$C" >/dev/null

finish
