#!/bin/bash
# skopeo against ocireg with a single-platform OCI image generated here (one layer of ~4.5 MB):
# push from an OCI layout, inspect (raw manifest, config, parsed), copies inside the registry
# (same repository and a cross-repository mount), list-tags, pull back into a layout with every
# blob and the manifest byte-identical, pull by digest, delete, and inspect failing after it.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq curl tar gzip sha256sum
compat "skopeo" "$(skopeo --version | cut -d" " -f3)" "copy in/out (OCI), inspect, list-tags, delete, pull by digest"
skopeo --version >/dev/null 2>&1 || skip "skopeo is installed but cannot run"
log "$(skopeo --version)"

SRC="$E2E_DIR/src"
layout_init "$SRC"
# (a layer of several MB: uploads and downloads that take many reads and writes)
MAKE_IMAGE_BIG_MB=16 make_image "$SRC" app amd64 v1
verify_layout_blobs "$SRC"
log "layer sizes: $(jq -r '[.layers[].size] | join(" ")' "$SRC/blobs/sha256/${IMG_MANIFEST#sha256:}")"

start_server
IMG="docker://$REG/e2e/img"

# --- push ----------------------------------------------------------------------------------
sk copy --quiet --dest-tls-verify=false "oci:$SRC:v1" "$IMG:v1"

# --- inspect: the registry serves the very bytes of the layout's manifest ---------------------
sk inspect --tls-verify=false --raw "$IMG:v1" >"$E2E_DIR/raw.json"
expect_eq "digest of the raw manifest" "$(digest_of "$E2E_DIR/raw.json")" "$IMG_MANIFEST"
cmp "$E2E_DIR/raw.json" "$SRC/blobs/sha256/${IMG_MANIFEST#sha256:}" ||
    fail "raw manifest differs from the pushed one"

sk inspect --tls-verify=false --config --raw "$IMG:v1" >"$E2E_DIR/config.json"
expect_eq "digest of the raw config" "$(digest_of "$E2E_DIR/config.json")" "$IMG_CONFIG"

sk inspect --tls-verify=false "$IMG:v1" >"$E2E_DIR/inspect.json"
expect_eq "inspect .Digest" "$(jq -r .Digest "$E2E_DIR/inspect.json")" "$IMG_MANIFEST"
expect_eq "inspect .Architecture" "$(jq -r .Architecture "$E2E_DIR/inspect.json")" amd64
expect_eq "inspect .Os" "$(jq -r .Os "$E2E_DIR/inspect.json")" linux
expect_eq "inspect .Layers" "$(jq -r '.Layers | join(" ")' "$E2E_DIR/inspect.json")" "$IMG_LAYERS"
expect_eq "inspect .Labels" "$(jq -r '.Labels["org.example.e2e.name"]' "$E2E_DIR/inspect.json")" app

# The digest header and content type, as a plain HTTP client sees them.
curl -sf -I --max-time 30 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REG/v2/e2e/img/manifests/v1" | tr -d '\r' >"$E2E_DIR/head.txt" ||
    fail "HEAD manifest failed"
expect_eq "Docker-Content-Digest" \
    "$(sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p' "$E2E_DIR/head.txt")" "$IMG_MANIFEST"
expect_eq "Content-Type" "$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' "$E2E_DIR/head.txt")" \
    application/vnd.oci.image.manifest.v1+json

# --- copies inside the registry -------------------------------------------------------------
sk copy --quiet --src-tls-verify=false --dest-tls-verify=false "$IMG:v1" "$IMG:latest"
sk copy --quiet --src-tls-verify=false --dest-tls-verify=false "$IMG:v1" \
    "docker://$REG/e2e/other:v1"
for ref in "$IMG:latest" "docker://$REG/e2e/other:v1"; do
    expect_eq "digest of $ref" \
        "$(sk inspect --tls-verify=false --raw "$ref" | digest_of)" "$IMG_MANIFEST"
done

# --- list-tags ------------------------------------------------------------------------------
sk list-tags --tls-verify=false "$IMG" >"$E2E_DIR/tags.json"
expect_eq "list-tags .Tags" "$(jq -r '.Tags | sort | join(",")' "$E2E_DIR/tags.json")" latest,v1
expect_eq "list-tags of e2e/other" \
    "$(sk list-tags --tls-verify=false "docker://$REG/e2e/other" | jq -r '.Tags | join(",")')" v1

# --- pull back: every blob and the manifest byte-identical ------------------------------------
OUT="$E2E_DIR/out"
sk copy --quiet --src-tls-verify=false "$IMG:v1" "oci:$OUT:v1"
verify_layout_blobs "$OUT"
expect_eq "manifest digest in the pulled layout" "$(layout_ref_digest "$OUT" v1)" "$IMG_MANIFEST"
expect_eq "blob set of the pulled layout" "$(layout_blobs "$OUT" | xargs)" \
    "$(layout_blobs "$SRC" | xargs)"
for b in "$SRC"/blobs/sha256/*; do
    cmp "$b" "$OUT/blobs/sha256/$(basename "$b")" || fail "blob $(basename "$b") differs"
done
log "ok: every blob is byte-identical after the round trip"

# by digest, from the repository the image was mounted into
OUT2="$E2E_DIR/out-by-digest"
sk copy --quiet --src-tls-verify=false "docker://$REG/e2e/other@$IMG_MANIFEST" "oci:$OUT2:d"
verify_layout_blobs "$OUT2"
expect_eq "manifest digest pulled by digest" "$(layout_ref_digest "$OUT2" d)" "$IMG_MANIFEST"
expect_eq "blob set pulled by digest" "$(layout_blobs "$OUT2" | xargs)" \
    "$(layout_blobs "$SRC" | xargs)"

# --- delete ---------------------------------------------------------------------------------
sk delete --tls-verify=false "$IMG:v1"
run_fails sk inspect --tls-verify=false --raw "$IMG:v1"
run_fails sk inspect --tls-verify=false --raw "$IMG@$IMG_MANIFEST"
run_fails sk inspect --tls-verify=false --raw "$IMG:latest"
code=$(curl -s --max-time 30 -o /dev/null -w "%{http_code}" "http://$REG/v2/e2e/img/manifests/$IMG_MANIFEST")
expect_eq "GET of the deleted manifest" "$code" 404
# the repository the image was copied into is untouched
expect_eq "e2e/other:v1 after the delete in e2e/img" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/e2e/other:v1" | digest_of)" "$IMG_MANIFEST"
# e2e/img still exists (its blobs stay linked until gc): its tag list is empty, not unknown
# (404 NAME_UNKNOWN is for a repository the registry does not have, as e2e/none here).
expect_out "GET e2e/img/tags/list after the delete" '{"name":"e2e/img","tags":[]} 200' \
    curl -s --max-time 30 -w ' %{http_code}' "http://$REG/v2/e2e/img/tags/list"
sk list-tags --tls-verify=false "$IMG" >"$E2E_DIR/tags2.json"
expect_out "skopeo list-tags of the emptied e2e/img" "[\"$REG/e2e/img\",[]]" \
    jq -c '[.Repository, .Tags]' "$E2E_DIR/tags2.json"
code=$(curl -s --max-time 30 -o "$E2E_DIR/none.json" -w '%{http_code}' \
    "http://$REG/v2/e2e/none/tags/list")
expect_eq "GET e2e/none/tags/list" "$code $(jq -r '.errors[0].code' "$E2E_DIR/none.json")" \
    "404 NAME_UNKNOWN"
run_fails sk list-tags --tls-verify=false "docker://$REG/e2e/none"
grep -q 'status code from registry 404' "$E2E_DIR/last.out" ||
    fail "skopeo list-tags of e2e/none failed for another reason than a 404"

finish
