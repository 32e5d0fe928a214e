#!/bin/bash
# podman manifest lists against ocireg: two single-platform images generated here
# (linux/amd64, linux/arm64) are pushed with skopeo; podman creates a list, adds both from the
# registry, and pushes it with --all, as Docker manifest list and as OCI index. skopeo must
# then see two manifests with the right platforms and digests, and podman pulls each platform
# back out of the list into an empty storage.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq tar gzip sha256sum curl podman
compat "podman" "$(podman --version | cut -d" " -f3)" "manifest create/add, manifest push --all (OCI, v2s2)"
skopeo --version >/dev/null 2>&1 || skip "skopeo is installed but cannot run"

V2S2=application/vnd.docker.distribution.manifest.v2+json

SRC="$E2E_DIR/src"
layout_init "$SRC"
make_image "$SRC" plat amd64 amd64
declare -A MANIFEST CONFIG LAYERS
MANIFEST[amd64]=$IMG_MANIFEST CONFIG[amd64]=$IMG_CONFIG LAYERS[amd64]=$IMG_LAYERS
make_image "$SRC" plat arm64 arm64
MANIFEST[arm64]=$IMG_MANIFEST CONFIG[arm64]=$IMG_CONFIG LAYERS[arm64]=$IMG_LAYERS
verify_layout_blobs "$SRC"

start_server
podman_init

for arch in amd64 arm64; do
    sk copy --quiet --dest-tls-verify=false "oci:$SRC:$arch" "docker://$REG/e2e/plat:$arch"
done

# --- podman manifest create / add ------------------------------------------------------------
pm a manifest create e2e-list >/dev/null
pm a manifest add --tls-verify=false e2e-list "docker://$REG/e2e/plat:amd64" >/dev/null
pm a manifest add --tls-verify=false e2e-list "docker://$REG/e2e/plat:arm64" >/dev/null
pm a manifest inspect e2e-list >"$E2E_DIR/local.json"
expect_eq "local list entries" \
    "$(jq -r '[.manifests[] | "\(.platform.os)/\(.platform.architecture)=\(.digest)"] | join(" ")' "$E2E_DIR/local.json")" \
    "linux/amd64=${MANIFEST[amd64]} linux/arm64=${MANIFEST[arm64]}"

# check_list REF MEDIATYPE DIGEST CHILD-MEDIATYPE: the list served at REF has the two platforms;
# each child is served by digest in REF's repository, of CHILD-MEDIATYPE, with the generated
# config and layers (and, when kept as OCI, with the generated manifest's very digest).
check_list() {
    local ref=$1 mt=$2 digest=$3 cmt=$4 raw="$E2E_DIR/list.json" repo=${1%:*} arch child c
    sk inspect --tls-verify=false --raw "$ref" >"$raw"
    expect_eq "digest of $ref" "$(digest_of "$raw")" "$digest"
    expect_eq "mediaType of $ref" "$(jq -r .mediaType "$raw")" "$mt"
    expect_eq "platforms in $ref" \
        "$(jq -r '[.manifests[] | "\(.platform.os)/\(.platform.architecture)"] | sort | join(" ")' "$raw")" \
        "linux/amd64 linux/arm64"
    for arch in amd64 arm64; do
        child=$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' "$raw")
        c="$E2E_DIR/child-$arch.json"
        sk inspect --tls-verify=false --raw "$repo@$child" >"$c"
        expect_eq "digest of the $arch child" "$(digest_of "$c")" "$child"
        expect_eq "mediaType of the $arch child" "$(jq -r .mediaType "$c")" "$cmt"
        if [ "${CHECK_LAYERS:-1}" = 1 ] && [ "$cmt" = application/vnd.oci.image.manifest.v1+json ]; then
            expect_eq "the $arch child is the generated manifest" "$child" "${MANIFEST[$arch]}"
        fi
        expect_eq "config of the $arch child" "$(jq -r .config.digest "$c")" "${CONFIG[$arch]}"
        if [ "${CHECK_LAYERS:-1}" = 1 ]; then
            expect_eq "layers of the $arch child" "$(jq -r '[.layers[].digest] | join(" ")' "$c")" \
                "${LAYERS[$arch]}"
        else # pushed from local storage: layers may be recompressed, but there are two of them
            expect_eq "number of layers of the $arch child" "$(jq '.layers | length' "$c")" 2
        fi
    done
    expect_eq "arm64 config through $ref" \
        "$(sk inspect --tls-verify=false --override-arch arm64 --config --raw "$ref" | digest_of)" "${CONFIG[arm64]}"
}

# --- podman manifest push --all, in the list's own format and forced to OCI / Docker ----------------
pm a manifest push --all --quiet --tls-verify=false --digestfile "$E2E_DIR/d1" \
    e2e-list "docker://$REG/e2e/list:v1"
MT=$(sk inspect --tls-verify=false --raw "docker://$REG/e2e/list:v1" | jq -r .mediaType)
log "podman's own list format: $MT"
case $MT in
application/vnd.oci.image.index.v1+json) CMT=application/vnd.oci.image.manifest.v1+json ;;
application/vnd.docker.distribution.manifest.list.v2+json) CMT=$V2S2 ;;
*) fail "unexpected list mediaType $MT" ;;
esac
check_list "docker://$REG/e2e/list:v1" "$MT" "$(cat "$E2E_DIR/d1")" "$CMT"

pm a manifest push --all --quiet --tls-verify=false --format oci --digestfile "$E2E_DIR/d2" \
    e2e-list "docker://$REG/e2e/list-oci:v1"
check_list "docker://$REG/e2e/list-oci:v1" application/vnd.oci.image.index.v1+json "$(cat "$E2E_DIR/d2")" \
    application/vnd.oci.image.manifest.v1+json

pm a manifest push --all --quiet --tls-verify=false --format v2s2 --digestfile "$E2E_DIR/d3" \
    e2e-list "docker://$REG/e2e/list-docker:v1"
check_list "docker://$REG/e2e/list-docker:v1" \
    application/vnd.docker.distribution.manifest.list.v2+json "$(cat "$E2E_DIR/d3")" "$V2S2"

# --- a list of local images (containers-storage), pushed from podman's own storage ------------------
for arch in amd64 arm64; do
    pm a pull --quiet --tls-verify=false "$REG/e2e/plat:$arch" >/dev/null
done
pm a manifest create e2e-local >/dev/null
pm a manifest add e2e-local "containers-storage:$REG/e2e/plat:amd64" >/dev/null
pm a manifest add e2e-local "containers-storage:$REG/e2e/plat:arm64" >/dev/null
pm a manifest push --all --quiet --tls-verify=false --digestfile "$E2E_DIR/d4" \
    e2e-local "docker://$REG/e2e/list-local:v1"
CHECK_LAYERS=0 check_list "docker://$REG/e2e/list-local:v1" "$MT" "$(cat "$E2E_DIR/d4")" "$CMT"

# --- podman pulls each platform out of the pushed lists (empty store b) --------------------------
pm b pull --quiet --tls-verify=false --platform linux/arm64 "$REG/e2e/list-oci:v1" >"$E2E_DIR/id"
expect_eq "image ID for linux/arm64" "$(cat "$E2E_DIR/id")" "${CONFIG[arm64]#sha256:}"
expect_eq "arm64 image .Architecture" \
    "$(pm b image inspect --format '{{.Architecture}}' "${CONFIG[arm64]#sha256:}")" arm64
pm b pull --quiet --tls-verify=false --platform linux/amd64 "$REG/e2e/list-docker:v1" >"$E2E_DIR/id"
expect_eq "image ID for linux/amd64" "$(cat "$E2E_DIR/id")" "${CONFIG[amd64]#sha256:}"
expect_eq "amd64 image .Architecture" \
    "$(pm b image inspect --format '{{.Architecture}}' "${CONFIG[amd64]#sha256:}")" amd64

finish
