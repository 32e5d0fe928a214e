#!/bin/bash
# podman against ocireg: an OCI image generated here is pushed with skopeo, pulled by podman
# (by tag and by digest), tagged and pushed by podman to another repository (as OCI and as
# Docker schema 2), then pulled from there into a second, empty podman storage; then podman builds an image on top of it (FROM the
# registry, COPY a file: no container is run), pushes it and the second storage pulls it.
# Image IDs, digests, layers and file contents must agree everywhere.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq tar gzip sha256sum curl podman
compat "podman" "$(podman --version | cut -d" " -f3)" "pull by tag/digest, tag, push (OCI, v2s2), build FROM + push"
skopeo --version >/dev/null 2>&1 || skip "skopeo is installed but cannot run"

SRC="$E2E_DIR/src"
layout_init "$SRC"
make_image "$SRC" app amd64 v1
verify_layout_blobs "$SRC"

start_server
podman_init

sk copy --quiet --dest-tls-verify=false "oci:$SRC:v1" "docker://$REG/e2e/img:v1"

# image_field STORE IMAGE GO-TEMPLATE
image_field() { pm "$1" image inspect --format "$3" "$2"; }
# shellcheck disable=SC2016 # a Go template: the diff IDs, space-separated
LAYERS_TMPL='{{range $i, $l := .RootFS.Layers}}{{if $i}} {{end}}{{$l}}{{end}}'

# file_in_image STORE IMAGE PATH: prints a file of the image's root filesystem.
file_in_image() {
    local mnt
    mnt=$(pm "$1" image mount "$2")
    [ -d "$mnt" ] || fail "podman image mount gave '$mnt'"
    cat "$mnt/$3"
    pm "$1" image unmount "$2" >/dev/null
}
on_exit 'pm a image unmount --all; pm b image unmount --all'

# --- podman pull (store a) ------------------------------------------------------------------
pm a pull --quiet --tls-verify=false "$REG/e2e/img:v1" >"$E2E_DIR/pull.id"
ID=${IMG_CONFIG#sha256:}
expect_eq "image ID printed by pull" "$(cat "$E2E_DIR/pull.id")" "$ID"
expect_eq "podman inspect .Id" "$(image_field a "$REG/e2e/img:v1" '{{.Id}}')" "$ID"
expect_eq "podman inspect .Digest" "$(image_field a "$REG/e2e/img:v1" '{{.Digest}}')" "$IMG_MANIFEST"
expect_eq "podman inspect .RepoDigests" \
    "$(image_field a "$REG/e2e/img:v1" '{{range .RepoDigests}}{{.}} {{end}}')" "$REG/e2e/img@$IMG_MANIFEST "
expect_eq "podman inspect .Architecture" "$(image_field a "$REG/e2e/img:v1" '{{.Architecture}}')" amd64
expect_eq "podman inspect label" \
    "$(image_field a "$REG/e2e/img:v1" '{{index .Labels "org.example.e2e.name"}}')" app
DIFF_IDS=$(jq -r '.rootfs.diff_ids | join(" ")' "$SRC/blobs/sha256/$ID")
expect_eq "podman inspect .RootFS.Layers" \
    "$(image_field a "$REG/e2e/img:v1" "$LAYERS_TMPL")" \
    "$DIFF_IDS"
expect_eq "/e2e/app.txt in the pulled image" "$(file_in_image a "$REG/e2e/img:v1" e2e/app.txt)" \
    "app for linux/amd64"
expect_eq "/etc/e2e/base.txt in the pulled image" \
    "$(file_in_image a "$REG/e2e/img:v1" etc/e2e/base.txt)" "base layer of app"

# --- podman tag + push to another repository ---------------------------------------------------
pm a tag "$REG/e2e/img:v1" "$REG/e2e/pushed:v2"
pm a push --quiet --tls-verify=false --digestfile "$E2E_DIR/push.digest" "$REG/e2e/pushed:v2"
PUSHED=$(cat "$E2E_DIR/push.digest")
log "podman pushed $PUSHED"
expect_eq "digest served for e2e/pushed:v2" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/e2e/pushed:v2" | digest_of)" "$PUSHED"
expect_eq "config served for e2e/pushed:v2" \
    "$(sk inspect --tls-verify=false --config --raw "docker://$REG/e2e/pushed:v2" | digest_of)" "$IMG_CONFIG"
expect_eq "tags of e2e/pushed" \
    "$(sk list-tags --tls-verify=false "docker://$REG/e2e/pushed" | jq -r '.Tags | join(",")')" v2

# the same image pushed by podman as Docker schema 2
pm a push --quiet --tls-verify=false --format v2s2 --digestfile "$E2E_DIR/v2s2.digest" \
    "$REG/e2e/img:v1" "docker://$REG/e2e/pushed-v2s2:v1"
sk inspect --tls-verify=false --raw "docker://$REG/e2e/pushed-v2s2:v1" >"$E2E_DIR/v2s2.json"
expect_eq "digest served for e2e/pushed-v2s2:v1" "$(digest_of "$E2E_DIR/v2s2.json")" \
    "$(cat "$E2E_DIR/v2s2.digest")"
expect_eq "mediaType of e2e/pushed-v2s2:v1" "$(jq -r .mediaType "$E2E_DIR/v2s2.json")" \
    application/vnd.docker.distribution.manifest.v2+json
expect_eq "config of e2e/pushed-v2s2:v1" "$(jq -r .config.digest "$E2E_DIR/v2s2.json")" "$IMG_CONFIG"

# --- pull it back into an empty storage (store b) -----------------------------------------------
pm b pull --quiet --tls-verify=false "$REG/e2e/pushed:v2" >/dev/null
expect_eq "store b .Id" "$(image_field b "$REG/e2e/pushed:v2" '{{.Id}}')" "$ID"
expect_eq "store b .Digest" "$(image_field b "$REG/e2e/pushed:v2" '{{.Digest}}')" "$PUSHED"
expect_eq "store b .RootFS.Layers" \
    "$(image_field b "$REG/e2e/pushed:v2" "$LAYERS_TMPL")" \
    "$DIFF_IDS"
expect_eq "store b vs store a: .Id / .Config / .RootFS" \
    "$(image_field b "$REG/e2e/pushed:v2" '{{.Id}} {{json .Config}} {{json .RootFS}}')" \
    "$(image_field a "$REG/e2e/img:v1" '{{.Id}} {{json .Config}} {{json .RootFS}}')"
expect_eq "/e2e/app.txt after the podman round trip" \
    "$(file_in_image b "$REG/e2e/pushed:v2" e2e/app.txt)" "app for linux/amd64"

# the schema 2 push: the same image again
pm b pull --quiet --tls-verify=false "$REG/e2e/pushed-v2s2:v1" >"$E2E_DIR/pull-v2s2.id"
expect_eq "image ID pulled from the schema 2 push" "$(cat "$E2E_DIR/pull-v2s2.id")" "$ID"

# by digest, the original push: the same image
pm b pull --quiet --tls-verify=false "$REG/e2e/img@$IMG_MANIFEST" >"$E2E_DIR/pull2.id"
expect_eq "image ID pulled by digest" "$(cat "$E2E_DIR/pull2.id")" "$ID"
expect_eq "store b images" \
    "$(pm b images --no-trunc --format '{{.ID}}' | sort -u | xargs)" "$IMG_CONFIG"

# --- podman build on top of the pulled image, push (new blobs + mounts), pull into store b ------------
CTX="$E2E_DIR/ctx"
mkdir -p "$CTX"
printf 'built on top of app\n' >"$CTX/built.txt"
printf 'FROM %s\nCOPY built.txt /e2e/built.txt\nLABEL org.example.e2e.name=built\n' \
    "$REG/e2e/img:v1" >"$CTX/Containerfile"
pm a build --quiet --pull=never --isolation chroot --timestamp 0 --format oci \
    -t "$REG/e2e/built:v1" "$CTX" >"$E2E_DIR/build.id"
BUILT=$(cat "$E2E_DIR/build.id")
pm a push --quiet --tls-verify=false --digestfile "$E2E_DIR/built.digest" "$REG/e2e/built:v1"
BUILT_DIGEST=$(cat "$E2E_DIR/built.digest")
sk inspect --tls-verify=false --raw "docker://$REG/e2e/built:v1" >"$E2E_DIR/built.json"
expect_eq "digest served for e2e/built:v1" "$(digest_of "$E2E_DIR/built.json")" "$BUILT_DIGEST"
expect_eq "layers of e2e/built:v1" "$(jq '.layers | length' "$E2E_DIR/built.json")" 3
# (whether podman re-uses the registry's gzip'd base layers or recompresses them depends on its
# blob-info cache, so the base layers are compared by diff_id)
expect_eq "base diff_ids of e2e/built:v1" \
    "$(sk inspect --tls-verify=false --config --raw "docker://$REG/e2e/built:v1" |
        jq -r '.rootfs.diff_ids[:2] | join(" ")')" "$DIFF_IDS"

pm b pull --quiet --tls-verify=false "$REG/e2e/built:v1" >"$E2E_DIR/pull3.id"
expect_eq "store b: ID of the built image" "$(cat "$E2E_DIR/pull3.id")" "$BUILT"
expect_eq "store b: .Digest of the built image" \
    "$(image_field b "$REG/e2e/built:v1" '{{.Digest}}')" "$BUILT_DIGEST"
expect_eq "store b vs store a: the built image's .Config / .RootFS" \
    "$(image_field b "$REG/e2e/built:v1" '{{json .Config}} {{json .RootFS}}')" \
    "$(image_field a "$REG/e2e/built:v1" '{{json .Config}} {{json .RootFS}}')"
expect_eq "/e2e/built.txt in the built image" \
    "$(file_in_image b "$REG/e2e/built:v1" e2e/built.txt)" "built on top of app"
expect_eq "/e2e/app.txt in the built image" \
    "$(file_in_image b "$REG/e2e/built:v1" e2e/app.txt)" "app for linux/amd64"

finish
