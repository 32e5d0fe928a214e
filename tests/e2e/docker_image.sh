#!/bin/bash
# docker against ocireg, with a containerd + dockerd of the test's own (docker_init in lib.sh;
# nothing is pulled from anywhere else): an image archive of three layers generated here is
# `docker load`ed, tagged and pushed; pushed again (every layer already exists) and to a second
# repository (every layer mounted, not uploaded); removed and pulled back by tag and by the digest
# that push printed, with the image ID it had when loaded; `docker manifest inspect` reads it; and
# a container created (not run) from the pulled image holds the files of the archive.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need jq curl tar gzip sha256sum shuf
compat "docker" "$(dockerd --version 2>/dev/null | cut -d" " -f3 | tr -d ,)" "load, push, cross-repo mount, pull by tag/digest, manifest inspect"

# --- the image: three layers, the middle one ~2 MB ------------------------------------------
SRC="$E2E_DIR/src"
mkdir -p "$SRC/1/etc/e2e" "$SRC/2/e2e" "$SRC/3/e2e"
printf 'base layer of app\n' >"$SRC/1/etc/e2e/base.txt"
shuf -i 1-10000000 --random-source=<(yes docker) | head -c 2000000 >"$SRC/2/e2e/data.txt" || true
[ "$(size_of "$SRC/2/e2e/data.txt")" = 2000000 ] || fail "data.txt"
printf 'app, version 1\n' >"$SRC/3/e2e/app.txt"
make_docker_archive "$E2E_DIR/app.tar" e2e/app:loaded "$SRC/1" "$SRC/2" "$SRC/3"
ID=$ARCHIVE_CONFIG
log "archive: image ID $ID, diff IDs $ARCHIVE_DIFF_IDS"

start_server
docker_init

# image_field IMAGE GO-TEMPLATE
image_field() { dk image inspect --format "$2" "$1"; }
# shellcheck disable=SC2016 # a Go template: the diff IDs, space-separated
LAYERS_TMPL='{{range $i, $l := .RootFS.Layers}}{{if $i}} {{end}}{{$l}}{{end}}'
# no_images: the daemon holds no image at all
no_images() { expect_out "images left in the daemon" "" dk images -q; }

# --- load -------------------------------------------------------------------------------------
no_images
dk load -i "$E2E_DIR/app.tar" >"$E2E_DIR/load.out"
cat "$E2E_DIR/load.out" >&2
grep -qx 'Loaded image: e2e/app:loaded' "$E2E_DIR/load.out" ||
    fail "docker load did not name the image"
expect_eq "image ID after load" "$(image_field e2e/app:loaded '{{.Id}}')" "$ID"
expect_eq "diff IDs after load" "$(image_field e2e/app:loaded "$LAYERS_TMPL")" "$ARCHIVE_DIFF_IDS"

# --- push -------------------------------------------------------------------------------------
IMG="$REG/e2e/app"
dk tag e2e/app:loaded "$IMG:1"
dk push "$IMG:1" >"$E2E_DIR/push.out"
cat "$E2E_DIR/push.out" >&2
DIGEST=$(sed -n 's/^1: digest: \(sha256:[0-9a-f]\{64\}\) size: [0-9]*$/\1/p' "$E2E_DIR/push.out")
[ -n "$DIGEST" ] || fail "no digest in the output of docker push"
expect_eq "layers pushed" "$(grep -c ': Pushed$' "$E2E_DIR/push.out")" 3

# What the registry holds: a Docker schema 2 manifest whose config is the image config and whose
# layers are the gzip'd layer tars of the archive.
MT_V2S2=application/vnd.docker.distribution.manifest.v2+json
curl -sf --max-time 30 -D "$E2E_DIR/manifest.hdr" -H "Accept: $MT_V2S2" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REG/v2/e2e/app/manifests/1" -o "$E2E_DIR/manifest.json" || fail "GET manifest 1"
expect_eq "digest of the pushed manifest" "$(digest_of "$E2E_DIR/manifest.json")" "$DIGEST"
expect_eq "Docker-Content-Digest" "$(http_header "$E2E_DIR/manifest.hdr" Docker-Content-Digest)" \
    "$DIGEST"
expect_eq "Content-Type" "$(http_header "$E2E_DIR/manifest.hdr" Content-Type)" "$MT_V2S2"
expect_eq "manifest mediaType" "$(jq -r .mediaType "$E2E_DIR/manifest.json")" "$MT_V2S2"
expect_eq "manifest config digest" "$(jq -r .config.digest "$E2E_DIR/manifest.json")" "$ID"
curl -sf --max-time 30 "http://$REG/v2/e2e/app/blobs/$ID" | digest_of >"$E2E_DIR/config.digest"
expect_eq "digest of the config blob" "$(cat "$E2E_DIR/config.digest")" "$ID"
LAYERS=$(jq -r '[.layers[].digest] | join(" ")' "$E2E_DIR/manifest.json")
uncompressed=""
for l in $LAYERS; do
    curl -sf --max-time 30 "http://$REG/v2/e2e/app/blobs/$l" -o "$E2E_DIR/layer.gz" ||
        fail "GET blob $l"
    expect_eq "digest of layer blob" "$(digest_of "$E2E_DIR/layer.gz")" "$l"
    uncompressed+="${uncompressed:+ }$(gzip -dc "$E2E_DIR/layer.gz" | digest_of)"
done
expect_eq "uncompressed layers in the registry" "$uncompressed" "$ARCHIVE_DIFF_IDS"

# Pushed again: nothing to upload.
dk push "$IMG:1" >"$E2E_DIR/push2.out"
cat "$E2E_DIR/push2.out" >&2
expect_eq "layers that already exist on the second push" \
    "$(grep -c ': Layer already exists$' "$E2E_DIR/push2.out")" 3
grep -qx "1: digest: $DIGEST size: [0-9]*" "$E2E_DIR/push2.out" || fail "second push: other digest"

# To another repository of the same registry: docker mounts the layers from e2e/app.
dk tag e2e/app:loaded "$REG/e2e/app2:1"
dk push "$REG/e2e/app2:1" >"$E2E_DIR/push3.out"
cat "$E2E_DIR/push3.out" >&2
expect_eq "layers mounted from e2e/app" \
    "$(grep -c ': Mounted from e2e/app$' "$E2E_DIR/push3.out")" 3
grep -qx "1: digest: $DIGEST size: [0-9]*" "$E2E_DIR/push3.out" || fail "e2e/app2: other digest"
curl -sf --max-time 30 -H "Accept: $MT_V2S2" "http://$REG/v2/e2e/app2/manifests/1" \
    -o "$E2E_DIR/manifest2.json" || fail "GET e2e/app2 manifest 1"
expect_eq "e2e/app2 manifest digest" "$(digest_of "$E2E_DIR/manifest2.json")" "$DIGEST"

# --- remove, pull by tag ------------------------------------------------------------------------
dk rmi "$IMG:1" "$REG/e2e/app2:1" e2e/app:loaded >/dev/null
no_images
dk pull "$IMG:1" >"$E2E_DIR/pull.out"
cat "$E2E_DIR/pull.out" >&2
grep -qx "Digest: $DIGEST" "$E2E_DIR/pull.out" || fail "docker pull did not report digest $DIGEST"
expect_eq "image ID after pull by tag" "$(image_field "$IMG:1" '{{.Id}}')" "$ID"
expect_eq "diff IDs after pull by tag" "$(image_field "$IMG:1" "$LAYERS_TMPL")" "$ARCHIVE_DIFF_IDS"
expect_eq "RepoDigests after pull by tag" \
    "$(image_field "$IMG:1" '{{join .RepoDigests " "}}')" "$IMG@$DIGEST"

# The files of the image, as a container created from it (never started) sees them.
CID=$(dk create "$IMG:1")
on_exit "dk rm -f $CID"
expect_eq "/e2e/app.txt in a container" \
    "$(dk cp "$CID:/e2e/app.txt" - | tar -xOf -)" "app, version 1"
expect_eq "/etc/e2e/base.txt in a container" \
    "$(dk cp "$CID:/etc/e2e/base.txt" - | tar -xOf -)" "base layer of app"
expect_eq "digest of /e2e/data.txt in a container" \
    "$(dk cp "$CID:/e2e/data.txt" - | tar -xOf - | digest_of)" "$(digest_of "$SRC/2/e2e/data.txt")"
dk rm "$CID" >/dev/null

# --- remove, pull by digest ---------------------------------------------------------------------
dk rmi "$IMG:1" >/dev/null
no_images
dk pull "$IMG@$DIGEST" >"$E2E_DIR/pull2.out"
cat "$E2E_DIR/pull2.out" >&2
grep -qx "Digest: $DIGEST" "$E2E_DIR/pull2.out" || fail "pull by digest did not report $DIGEST"
expect_eq "image ID after pull by digest" "$(image_field "$IMG@$DIGEST" '{{.Id}}')" "$ID"
expect_eq "RepoDigests after pull by digest" \
    "$(image_field "$ID" '{{join .RepoDigests " "}}')" "$IMG@$DIGEST"

# --- docker manifest inspect (the CLI reads the registry itself) ---------------------------------
# The CLI tries https first and falls back to http only when the answer to its TLS ClientHello is
# an HTTP response ("server gave HTTP response to HTTPS client"); a connection closed without an
# answer ends the command ("error pinging v2 registry: EOF"). The first "line" of a ClientHello
# (up to its first 0x0a byte, often among its 32 random bytes) holds no space about one time in
# eight: these are the first bytes of such a hello, so that the outcome does not depend on chance.
hello_answer=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf "%b" "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8f\xd2\x41\x0a\xb7\x00\x20\x10" >&3 &&
    head -c 5 <&3' _ "$PORT" | tr -d '\0') || true
expect_eq "first bytes of the answer to a TLS ClientHello whose first line has no space" \
    "$hello_answer" "HTTP/"
dk manifest inspect --insecure "$IMG:1" >"$E2E_DIR/inspect.json"
expect_eq "manifest inspect: mediaType" "$(jq -r .mediaType "$E2E_DIR/inspect.json")" "$MT_V2S2"
expect_eq "manifest inspect: config" "$(jq -r .config.digest "$E2E_DIR/inspect.json")" "$ID"
expect_eq "manifest inspect: layers" \
    "$(jq -r '[.layers[].digest] | join(" ")' "$E2E_DIR/inspect.json")" "$LAYERS"
dk manifest inspect --insecure --verbose "$IMG@$DIGEST" >"$E2E_DIR/inspect-v.json"
expect_eq "manifest inspect -v: descriptor digest" \
    "$(jq -r .Descriptor.digest "$E2E_DIR/inspect-v.json")" "$DIGEST"
expect_eq "manifest inspect -v: descriptor size" \
    "$(jq -r .Descriptor.size "$E2E_DIR/inspect-v.json")" "$(size_of "$E2E_DIR/manifest.json")"
run_fails dk manifest inspect --insecure "$IMG:no-such-tag"

finish
