#!/bin/bash
# skopeo against ocireg with Docker schema 2: an OCI image generated here is pushed with
# `copy --format v2s2` (skopeo converts the manifest; config and layer blobs keep their
# digests), inspected, pulled back unchanged into a dir: copy and converted into an OCI
# layout; then a two-platform index is pushed as a Docker manifest list the same way.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq tar gzip sha256sum curl
compat "skopeo" "$(skopeo --version | cut -d" " -f3)" "Docker schema 2 manifest and manifest list push/pull"
skopeo --version >/dev/null 2>&1 || skip "skopeo is installed but cannot run"
log "$(skopeo --version)"

V2S2=application/vnd.docker.distribution.manifest.v2+json
V2LIST=application/vnd.docker.distribution.manifest.list.v2+json

SRC="$E2E_DIR/src"
layout_init "$SRC"
make_image "$SRC" app amd64 v1
SINGLE_MANIFEST=$IMG_MANIFEST
make_multiarch "$SRC" multi multi # (overwrites IMG_*)
make_image "$SRC" app amd64       # the same bytes again: sets IMG_* back
[ "$IMG_MANIFEST" = "$SINGLE_MANIFEST" ] || fail "the generated image is not reproducible"
verify_layout_blobs "$SRC"

start_server
IMG="docker://$REG/e2e/v2s2"

# --- push as schema 2 -----------------------------------------------------------------------
sk copy --quiet --format v2s2 --dest-tls-verify=false "oci:$SRC:v1" "$IMG:v1"

sk inspect --tls-verify=false --raw "$IMG:v1" >"$E2E_DIR/raw.json"
M=$(digest_of "$E2E_DIR/raw.json")
log "schema 2 manifest: $M"
[ "$M" != "$SINGLE_MANIFEST" ] || fail "the manifest was not converted"
expect_eq "mediaType" "$(jq -r .mediaType "$E2E_DIR/raw.json")" "$V2S2"
expect_eq "schemaVersion" "$(jq -r .schemaVersion "$E2E_DIR/raw.json")" 2
expect_eq "config" "$(jq -r '"\(.config.mediaType) \(.config.digest)"' "$E2E_DIR/raw.json")" \
    "application/vnd.docker.container.image.v1+json $IMG_CONFIG"
expect_eq "layers" "$(jq -r '[.layers[].digest] | join(" ")' "$E2E_DIR/raw.json")" "$IMG_LAYERS"
expect_eq "layer mediaTypes" "$(jq -r '[.layers[].mediaType] | unique | join(" ")' "$E2E_DIR/raw.json")" \
    application/vnd.docker.image.rootfs.diff.tar.gzip

sk inspect --tls-verify=false "$IMG:v1" >"$E2E_DIR/inspect.json"
expect_eq "inspect .Digest" "$(jq -r .Digest "$E2E_DIR/inspect.json")" "$M"
expect_eq "inspect .Architecture" "$(jq -r .Architecture "$E2E_DIR/inspect.json")" amd64

# what a plain HTTP client sees, asking for schema 2 only
curl -sf -I --max-time 30 -H "Accept: $V2S2" "http://$REG/v2/e2e/v2s2/manifests/v1" | tr -d '\r' \
    >"$E2E_DIR/head.txt" || fail "HEAD manifest failed"
expect_eq "Content-Type" "$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' "$E2E_DIR/head.txt")" "$V2S2"
expect_eq "Docker-Content-Digest" \
    "$(sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p' "$E2E_DIR/head.txt")" "$M"

# --- pull back unchanged (dir: keeps the manifest as served) -----------------------------------
DIR="$E2E_DIR/dir"
sk copy --quiet --src-tls-verify=false "$IMG:v1" "dir:$DIR"
cmp "$DIR/manifest.json" "$E2E_DIR/raw.json" || fail "dir: manifest differs from the served one"
for d in $IMG_CONFIG $IMG_LAYERS; do
    cmp "$DIR/${d#sha256:}" "$SRC/blobs/sha256/${d#sha256:}" || fail "blob $d differs"
done
log "ok: schema 2 manifest, config and layers byte-identical in the dir: copy"

# --- pull back converted to OCI: the same config and layers -----------------------------------
OUT="$E2E_DIR/out"
sk copy --quiet --src-tls-verify=false "$IMG@$M" "oci:$OUT:v1"
verify_layout_blobs "$OUT"
OM=$(layout_ref_digest "$OUT" v1)
expect_eq "OCI manifest mediaType" "$(jq -r .mediaType "$OUT/blobs/sha256/${OM#sha256:}")" \
    application/vnd.oci.image.manifest.v1+json
expect_eq "OCI config" "$(jq -r .config.digest "$OUT/blobs/sha256/${OM#sha256:}")" "$IMG_CONFIG"
expect_eq "OCI layers" "$(jq -r '[.layers[].digest] | join(" ")' "$OUT/blobs/sha256/${OM#sha256:}")" \
    "$IMG_LAYERS"
for d in $IMG_CONFIG $IMG_LAYERS; do
    cmp "$OUT/blobs/sha256/${d#sha256:}" "$SRC/blobs/sha256/${d#sha256:}" || fail "blob $d differs"
done

# --- a schema 2 manifest list (converted from the OCI index) ---------------------------------
LIST="docker://$REG/e2e/v2s2-list"
sk copy --quiet --all --format v2s2 --dest-tls-verify=false "oci:$SRC:multi" "$LIST:v1"
sk inspect --tls-verify=false --raw "$LIST:v1" >"$E2E_DIR/list.json"
L=$(digest_of "$E2E_DIR/list.json")
expect_eq "list mediaType" "$(jq -r .mediaType "$E2E_DIR/list.json")" "$V2LIST"
expect_eq "list platforms" \
    "$(jq -r '[.manifests[] | "\(.platform.os)/\(.platform.architecture)"] | join(" ")' "$E2E_DIR/list.json")" \
    "linux/amd64 linux/arm64"
expect_eq "list children mediaTypes" \
    "$(jq -r '[.manifests[].mediaType] | unique | join(" ")' "$E2E_DIR/list.json")" "$V2S2"
for child in $(jq -r '.manifests[].digest' "$E2E_DIR/list.json"); do
    sk inspect --tls-verify=false --raw "$LIST@$child" >"$E2E_DIR/child.json"
    expect_eq "digest of child $child" "$(digest_of "$E2E_DIR/child.json")" "$child"
    expect_eq "mediaType of child $child" "$(jq -r .mediaType "$E2E_DIR/child.json")" "$V2S2"
done
expect_eq "arm64 config through the list" \
    "$(sk inspect --tls-verify=false --override-arch arm64 --config --raw "$LIST:v1" | digest_of)" \
    "$IDX_ARM64_CONFIG"

# the list pulled back unchanged
DIR2="$E2E_DIR/dir-list"
sk copy --quiet --all --src-tls-verify=false "$LIST:v1" "dir:$DIR2"
expect_eq "list digest in the dir: copy" "$(digest_of "$DIR2/manifest.json")" "$L"

finish
