#!/bin/bash
# OCI layouts generated here with layers that are not gzip'd, an artifact graph and the referrers
# API: an image with plain tar layers (application/vnd.oci.image.layer.v1.tar) and one with zstd
# layers (...tar+zstd, made with the zstd CLI) are pushed with skopeo, digests preserved; artifact
# manifests (artifactType set, the empty config `{}`, a `subject`) are pushed with curl; then
# GET /v2/<name>/referrers/<digest> lists them with their artifactType and annotations, and
# ?artifactType= filters (OCI-Filters-Applied). Both images are pulled back into layouts
# byte-identical and unpacked with umoci (or tar when umoci is missing); their files must match.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq curl tar zstd sha256sum
compat "skopeo + curl" "$(skopeo --version | cut -d" " -f3)" "tar and zstd layers, artifacts, subject, referrers"
skopeo --version >/dev/null 2>&1 || skip "skopeo is installed but cannot run"
log "$(skopeo --version)"

MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_INDEX=application/vnd.oci.image.index.v1+json
MT_EMPTY=application/vnd.oci.empty.v1+json
AT_SBOM=application/vnd.example.sbom.v1+json
AT_SIG=application/vnd.example.signature.v1

SRC="$E2E_DIR/src"
layout_init "$SRC"
MAKE_IMAGE_COMPRESSION=none make_image "$SRC" plain amd64 plain
PLAIN=$IMG_MANIFEST PLAIN_SIZE=$IMG_MANIFEST_SIZE
PLAIN_LAYERS=$IMG_LAYERS PLAIN_DIFF_IDS=$IMG_DIFF_IDS
MAKE_IMAGE_COMPRESSION=zstd make_image "$SRC" zst amd64 zst
ZST=$IMG_MANIFEST ZST_SIZE=$IMG_MANIFEST_SIZE
ZST_LAYERS=$IMG_LAYERS ZST_DIFF_IDS=$IMG_DIFF_IDS
verify_layout_blobs "$SRC"
expect_eq "plain layers are their own diff IDs" "$PLAIN_LAYERS" "$PLAIN_DIFF_IDS"
for l in $ZST_LAYERS; do
    [ "$(head -c 4 "$SRC/blobs/sha256/${l#sha256:}" | od -An -tx1 | tr -d ' ')" = 28b52ffd ] ||
        fail "layer $l is not a zstd frame"
done

start_server
REPO=e2e/oci

# --- push both images with skopeo, digests preserved --------------------------------------------
for t in plain zst; do
    sk copy --quiet --preserve-digests --dest-tls-verify=false "oci:$SRC:$t" \
        "docker://$REG/$REPO:$t"
done
expect_eq "digest of $REPO:plain" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/$REPO:plain" | digest_of)" "$PLAIN"
expect_eq "digest of $REPO:zst" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/$REPO:zst" | digest_of)" "$ZST"
sk inspect --tls-verify=false --raw "docker://$REG/$REPO:zst" >"$E2E_DIR/zst.json"
expect_eq "layer media types of $REPO:zst" "$(jq -r '[.layers[].mediaType] | unique | join(" ")' \
    "$E2E_DIR/zst.json")" application/vnd.oci.image.layer.v1.tar+zstd
sk inspect --tls-verify=false --raw "docker://$REG/$REPO:plain" >"$E2E_DIR/plain.json"
expect_eq "layer media types of $REPO:plain" "$(jq -r '[.layers[].mediaType] | unique | join(" ")' \
    "$E2E_DIR/plain.json")" application/vnd.oci.image.layer.v1.tar
# the blobs as served: the zstd layers decompress to the diff IDs, the plain ones are them
got=""
for l in $ZST_LAYERS; do
    got+="${got:+ }$(curl -sf --max-time 30 "http://$REG/v2/$REPO/blobs/$l" | zstd -dc | digest_of)"
done
expect_eq "decompressed zstd layers from the registry" "$got" "$ZST_DIFF_IDS"
got=""
for l in $PLAIN_LAYERS; do
    got+="${got:+ }$(curl -sf --max-time 30 "http://$REG/v2/$REPO/blobs/$l" | digest_of)"
done
expect_eq "plain layers from the registry" "$got" "$PLAIN_DIFF_IDS"

# --- artifacts with a subject, pushed with curl -------------------------------------------------
ART="$E2E_DIR/art"
mkdir -p "$ART"
printf '{}' >"$ART/empty.json"
curl_push_blob "$REPO" "$ART/empty.json"
EMPTY=$BLOB_DIGEST
expect_eq "digest of the empty config" "$EMPTY" \
    sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a

# make_artifact FILE ARTIFACT-TYPE BLOB-FILE SUBJECT-DIGEST SUBJECT-SIZE NAME: pushes BLOB-FILE
# and writes the artifact manifest (not pushed yet) to FILE.
make_artifact() {
    curl_push_blob "$REPO" "$3"
    printf '{"schemaVersion":2,"mediaType":"%s","artifactType":"%s","config":{"mediaType":"%s","digest":"%s","size":2},"layers":[{"mediaType":"%s","digest":"%s","size":%s}],"subject":{"mediaType":"%s","digest":"%s","size":%s},"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z","org.example.e2e.name":"%s"}}' \
        "$MT_MANIFEST" "$2" "$MT_EMPTY" "$EMPTY" "$2" "$BLOB_DIGEST" "$BLOB_SIZE" \
        "$MT_MANIFEST" "$4" "$5" "$6" >"$1"
}

printf '{"spdxVersion":"SPDX-2.3","name":"plain"}' >"$ART/sbom-plain.json"
make_artifact "$ART/a1.json" "$AT_SBOM" "$ART/sbom-plain.json" "$PLAIN" "$PLAIN_SIZE" sbom-plain
printf 'signature of %s' "$PLAIN" >"$ART/sig-plain"
make_artifact "$ART/a2.json" "$AT_SIG" "$ART/sig-plain" "$PLAIN" "$PLAIN_SIZE" sig-plain
printf '{"spdxVersion":"SPDX-2.3","name":"zst"}' >"$ART/sbom-zst.json"
make_artifact "$ART/a3.json" "$AT_SBOM" "$ART/sbom-zst.json" "$ZST" "$ZST_SIZE" sbom-zst

for a in a1 a2 a3; do
    curl_push_manifest "$REPO" "$(digest_of "$ART/$a.json")" "$ART/$a.json" "$MT_MANIFEST"
    declare "${a^^}=$BLOB_DIGEST" "${a^^}_SIZE=$BLOB_SIZE"
    subject=$(jq -r .subject.digest "$ART/$a.json")
    expect_eq "OCI-Subject of $a" "$(http_header "$E2E_DIR/push-manifest.hdr" OCI-Subject)" \
        "$subject"
done
# (an artifact may also be pushed by tag; the digest is what the referrers list)

# The artifact manifests are served as pushed, and a client reads them too.
curl -sf --max-time 30 -D "$E2E_DIR/a1.hdr" -H "Accept: $MT_MANIFEST" \
    "http://$REG/v2/$REPO/manifests/$A1" -o "$E2E_DIR/a1.got" || fail "GET artifact a1"
cmp "$E2E_DIR/a1.got" "$ART/a1.json" || fail "artifact a1 differs from what was pushed"
expect_eq "Content-Type of artifact a1" "$(http_header "$E2E_DIR/a1.hdr" Content-Type)" \
    "$MT_MANIFEST"
expect_eq "skopeo inspect --raw of artifact a2" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/$REPO@$A2" | digest_of)" "$A2"

# --- the referrers API ------------------------------------------------------------------------
# referrers DIGEST [QUERY]: GET .../referrers/DIGEST[?QUERY] into $E2E_DIR/ref.json and
# $E2E_DIR/ref.hdr; must answer 200 with an OCI image index.
referrers() {
    local code url="http://$REG/v2/$REPO/referrers/$1${2:+?$2}"
    log "+ curl GET $url"
    code=$(curl -s --max-time 30 -o "$E2E_DIR/ref.json" -D "$E2E_DIR/ref.hdr" -w '%{http_code}' \
        "$url") || fail "GET $url"
    [ "$code" = 200 ] || fail "GET $url answered $code, want 200: $(cat "$E2E_DIR/ref.json")"
    expect_eq "Content-Type of the referrers" "$(http_header "$E2E_DIR/ref.hdr" Content-Type)" \
        "$MT_INDEX"
    # (.manifests an array: listed below prints nothing for an empty one, and must fail when it
    # is missing or of another type rather than print nothing too)
    expect_out "referrers: schemaVersion, mediaType, type of manifests" "2 $MT_INDEX array" \
        jq -r '"\(.schemaVersion) \(.mediaType) \(.manifests | type)"' "$E2E_DIR/ref.json"
}
# listed: "digest artifactType size name" of every descriptor, sorted, one per line
listed() {
    jq -r '.manifests[]
        | "\(.digest) \(.artifactType) \(.size) \(.annotations["org.example.e2e.name"])"' \
        "$E2E_DIR/ref.json" | sort
}
entry() { echo "$1 $2 $3 $4"; }
filters() { http_header "$E2E_DIR/ref.hdr" OCI-Filters-Applied; }

referrers "$PLAIN"
expect_out "referrers of $REPO:plain" \
    "$(printf '%s\n' "$(entry "$A1" "$AT_SBOM" "$A1_SIZE" sbom-plain)" \
        "$(entry "$A2" "$AT_SIG" "$A2_SIZE" sig-plain)" | sort)" listed
expect_eq "media types of the referrers" "$(jq -r '[.manifests[].mediaType] | unique | join(" ")' \
    "$E2E_DIR/ref.json")" "$MT_MANIFEST"
expect_out "OCI-Filters-Applied without a filter" "" filters

# (the "+" of the media type is escaped in the query string)
referrers "$PLAIN" "artifactType=${AT_SBOM//+/%2B}"
expect_out "referrers of $REPO:plain, artifactType=$AT_SBOM" \
    "$(entry "$A1" "$AT_SBOM" "$A1_SIZE" sbom-plain)" listed
expect_out "OCI-Filters-Applied" artifactType filters

referrers "$PLAIN" "artifactType=$AT_SIG"
expect_out "referrers of $REPO:plain, artifactType=$AT_SIG" \
    "$(entry "$A2" "$AT_SIG" "$A2_SIZE" sig-plain)" listed
expect_out "OCI-Filters-Applied" artifactType filters

referrers "$PLAIN" "artifactType=application/vnd.example.none"
expect_out "referrers of $REPO:plain, an artifactType nobody has" "" listed
expect_out "OCI-Filters-Applied" artifactType filters

referrers "$ZST"
expect_out "referrers of $REPO:zst" "$(entry "$A3" "$AT_SBOM" "$A3_SIZE" sbom-zst)" listed

# a digest that nothing refers to (and that is not in the registry): an empty list, not 404
referrers "sha256:$(printf 'nothing' | sha256sum | cut -d' ' -f1)"
expect_out "referrers of an unknown digest" "" listed

# deleting an artifact removes it from the list
code=$(curl -s --max-time 30 -o /dev/null -w '%{http_code}' -X DELETE \
    "http://$REG/v2/$REPO/manifests/$A2")
expect_eq "DELETE of artifact a2" "$code" 202
referrers "$PLAIN"
expect_out "referrers of $REPO:plain after deleting a2" \
    "$(entry "$A1" "$AT_SBOM" "$A1_SIZE" sbom-plain)" listed

# the artifacts were pushed by digest: no tag besides the images'
expect_eq "tags of $REPO" \
    "$(sk list-tags --tls-verify=false "docker://$REG/$REPO" | jq -r '.Tags | sort | join(",")')" \
    plain,zst

# --- pull back into layouts; unpack -----------------------------------------------------------
OUT="$E2E_DIR/out"
for t in plain zst; do
    sk copy --quiet --preserve-digests --dest-oci-accept-uncompressed-layers \
        --src-tls-verify=false "docker://$REG/$REPO:$t" "oci:$OUT:$t"
done
verify_layout_blobs "$OUT"
expect_eq "manifest of the pulled plain image" "$(layout_ref_digest "$OUT" plain)" "$PLAIN"
expect_eq "manifest of the pulled zst image" "$(layout_ref_digest "$OUT" zst)" "$ZST"
for b in "$OUT"/blobs/sha256/*; do
    cmp "$b" "$SRC/blobs/sha256/$(basename "$b")" || fail "pulled blob $(basename "$b") differs"
done
log "ok: every pulled blob is byte-identical to the generated one"

# unpack_tar LAYOUT TAG DIR: the root filesystem of the image in DIR/rootfs, layer by layer
unpack_tar() {
    local m l mt
    m=$(layout_ref_digest "$1" "$2")
    mkdir -p "$3/rootfs"
    jq -r '.layers[] | "\(.mediaType) \(.digest)"' "$1/blobs/sha256/${m#sha256:}" >"$3.layers"
    while read -r mt l; do
        case $mt in
        *+zstd) zstd -dc "$1/blobs/sha256/${l#sha256:}" | tar -xf - -C "$3/rootfs" ;;
        *+gzip) tar -xzf "$1/blobs/sha256/${l#sha256:}" -C "$3/rootfs" ;;
        *) tar -xf "$1/blobs/sha256/${l#sha256:}" -C "$3/rootfs" ;;
        esac
    done <"$3.layers"
    log "unpacked $1:$2 with tar"
}
# unpack LAYOUT TAG DIR: with umoci when it is installed and knows the layers' media type
# (umoci 0.4.7, Debian 12's, has no zstd), else with tar.
unpack() {
    local m
    m=$(layout_ref_digest "$1" "$2")
    if command -v umoci >/dev/null 2>&1 &&
        ! jq -e '[.layers[].mediaType | select(endswith("+zstd"))] | length > 0' \
            "$1/blobs/sha256/${m#sha256:}" >/dev/null; then
        run umoci unpack --image "$1:$2" "$3" >/dev/null
    elif command -v umoci >/dev/null 2>&1 &&
        umoci unpack --image "$1:$2" "$3" >"$3.umoci" 2>&1; then
        log "umoci unpacked the zstd layers of $1:$2"
    else
        [ ! -s "$3.umoci" ] || log "umoci: $(tail -n 1 "$3.umoci")"
        rm -rf "$3"
        unpack_tar "$@"
    fi
}
command -v umoci >/dev/null 2>&1 && log "$(umoci --version)"
for t in plain zst; do
    unpack "$OUT" "$t" "$E2E_DIR/bundle-$t"
    expect_eq "/etc/e2e/base.txt of $t" "$(cat "$E2E_DIR/bundle-$t/rootfs/etc/e2e/base.txt")" \
        "base layer of $t"
    expect_eq "/e2e/$t.txt of $t" "$(cat "$E2E_DIR/bundle-$t/rootfs/e2e/$t.txt")" \
        "$t for linux/amd64"
done

finish
