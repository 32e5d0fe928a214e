#!/bin/bash
# skopeo against ocireg with a two-platform (linux/amd64 + linux/arm64) OCI image index
# generated here: `copy --all` in and out with the index and both child manifests keeping
# their digests and every blob byte-identical, platform selection from the index, a copy of
# the whole index inside the registry, and deleting the index (children stay by digest).
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq tar gzip sha256sum curl
compat "skopeo" "$(skopeo --version | cut -d" " -f3)" "copy --all of a two-platform OCI index, platform selection"
skopeo --version >/dev/null 2>&1 || skip "skopeo is installed but cannot run"
log "$(skopeo --version)"

SRC="$E2E_DIR/src"
layout_init "$SRC"
make_multiarch "$SRC" multi v1
verify_layout_blobs "$SRC"

start_server
IMG="docker://$REG/e2e/multi"

# --- push the whole index -------------------------------------------------------------------
sk copy --quiet --all --dest-tls-verify=false "oci:$SRC:v1" "$IMG:v1"

sk inspect --tls-verify=false --raw "$IMG:v1" >"$E2E_DIR/raw.json"
expect_eq "digest of the raw index" "$(digest_of "$E2E_DIR/raw.json")" "$IDX_DIGEST"
cmp "$E2E_DIR/raw.json" "$SRC/blobs/sha256/${IDX_DIGEST#sha256:}" ||
    fail "raw index differs from the pushed one"
expect_eq "index mediaType" "$(jq -r .mediaType "$E2E_DIR/raw.json")" \
    application/vnd.oci.image.index.v1+json
expect_eq "child manifests in the index" \
    "$(jq -r '[.manifests[] | "\(.platform.os)/\(.platform.architecture)=\(.digest)"] | join(" ")' \
        "$E2E_DIR/raw.json")" "linux/amd64=$IDX_AMD64 linux/arm64=$IDX_ARM64"

for child in "$IDX_AMD64" "$IDX_ARM64"; do
    sk inspect --tls-verify=false --raw "$IMG@$child" >"$E2E_DIR/child.json"
    expect_eq "digest of child $child" "$(digest_of "$E2E_DIR/child.json")" "$child"
done

# platform selection through the index
sk inspect --tls-verify=false --override-os linux --override-arch arm64 "$IMG:v1" \
    >"$E2E_DIR/arm64.json"
# (skopeo reports the digest of the top-level manifest, the index, as .Digest)
expect_eq "arm64 .Digest" "$(jq -r .Digest "$E2E_DIR/arm64.json")" "$IDX_DIGEST"
expect_eq "arm64 .Architecture" "$(jq -r .Architecture "$E2E_DIR/arm64.json")" arm64
expect_eq "arm64 .Layers" "$(jq -r '.Layers | join(" ")' "$E2E_DIR/arm64.json")" "$IDX_ARM64_LAYERS"
expect_eq "arm64 config digest" \
    "$(sk inspect --tls-verify=false --override-arch arm64 --config --raw "$IMG:v1" | digest_of)" \
    "$IDX_ARM64_CONFIG"
sk inspect --tls-verify=false --override-os linux --override-arch amd64 "$IMG:v1" \
    >"$E2E_DIR/amd64.json"
expect_eq "amd64 .Architecture" "$(jq -r .Architecture "$E2E_DIR/amd64.json")" amd64
expect_eq "amd64 .Layers" "$(jq -r '.Layers | join(" ")' "$E2E_DIR/amd64.json")" "$IDX_AMD64_LAYERS"
expect_eq "amd64 config digest" \
    "$(sk inspect --tls-verify=false --override-arch amd64 --config --raw "$IMG:v1" | digest_of)" \
    "$IDX_AMD64_CONFIG"

# --- pull the whole index back: identical digests, identical blobs ---------------------------
OUT="$E2E_DIR/out"
sk copy --quiet --all --src-tls-verify=false "$IMG:v1" "oci:$OUT:v1"
verify_layout_blobs "$OUT"
expect_eq "index digest in the pulled layout" "$(layout_ref_digest "$OUT" v1)" "$IDX_DIGEST"
expect_eq "blob set of the pulled layout" "$(layout_blobs "$OUT" | xargs)" \
    "$(layout_blobs "$SRC" | xargs)"
for b in "$SRC"/blobs/sha256/*; do
    cmp "$b" "$OUT/blobs/sha256/$(basename "$b")" || fail "blob $(basename "$b") differs"
done
log "ok: index, both manifests, configs and layers are byte-identical after the round trip"

# one platform only
OUT1="$E2E_DIR/out-arm64"
sk copy --quiet --override-os linux --override-arch arm64 --src-tls-verify=false "$IMG:v1" \
    "oci:$OUT1:arm"
verify_layout_blobs "$OUT1"
expect_eq "single-platform pull digest" "$(layout_ref_digest "$OUT1" arm)" "$IDX_ARM64"
expect_eq "config of the arm64 pull" \
    "$(jq -r .config.digest "$OUT1/blobs/sha256/${IDX_ARM64#sha256:}")" "$IDX_ARM64_CONFIG"

# --- the whole index copied to another repository of the registry -----------------------------
sk copy --quiet --all --src-tls-verify=false --dest-tls-verify=false "$IMG:v1" \
    "docker://$REG/e2e/multi-copy:v1"
expect_eq "index digest in e2e/multi-copy" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/e2e/multi-copy:v1" | digest_of)" "$IDX_DIGEST"
for child in "$IDX_AMD64" "$IDX_ARM64"; do
    expect_eq "child $child in e2e/multi-copy" \
        "$(sk inspect --tls-verify=false --raw "docker://$REG/e2e/multi-copy@$child" | digest_of)" "$child"
done
expect_eq "list-tags of e2e/multi" \
    "$(sk list-tags --tls-verify=false "$IMG" | jq -r '.Tags | join(",")')" v1

# --- delete the index: the tag goes, the children stay addressable by digest ------------------
sk delete --tls-verify=false "$IMG:v1"
run_fails sk inspect --tls-verify=false --raw "$IMG:v1"
run_fails sk inspect --tls-verify=false --raw "$IMG@$IDX_DIGEST"
for child in "$IDX_AMD64" "$IDX_ARM64"; do
    expect_eq "child $child after deleting its index" \
        "$(sk inspect --tls-verify=false --raw "$IMG@$child" | digest_of)" "$child"
done
expect_eq "e2e/multi-copy:v1 after the delete in e2e/multi" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/e2e/multi-copy:v1" | digest_of)" "$IDX_DIGEST"

finish
