#!/bin/bash
# containerd's ctr (what Kubernetes nodes pull with) against ocireg, with a containerd of the
# test's own (containerd_init in lib.sh; nothing is pulled from anywhere else). Two images are
# generated here: one seeded into the registry by skopeo and pulled by ctr by tag and by digest
# (unpacked, its files read back), one imported into containerd and pushed by ctr. Then the same
# with credentials against --auth token and --auth basic: a user with push pushes, a user with
# pull only pulls by tag and digest and is denied a push; anonymous and wrong-password pulls
# fail. Every digest is checked against the content the test generated.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need ctr containerd skopeo jq curl tar gzip sha256sum
compat "ctr (containerd)" "$(ctr --version | awk '{print $3}')" \
    "pull by tag/digest + unpack, push, credentials (token, basic), denied push"

# --- the images: two layouts, one image each ----------------------------------------------------
SEED="$E2E_DIR/seed"
layout_init "$SEED"
make_image "$SEED" seed amd64 v1
SEED_MANIFEST=$IMG_MANIFEST
# shellcheck disable=SC2086 # IMG_LAYERS: two digests
SEED_BLOBS=$(printf '%s\n' "$IMG_MANIFEST" "$IMG_CONFIG" $IMG_LAYERS | sort | xargs)

APP="$E2E_DIR/app"
layout_init "$APP"
make_image "$APP" app amd64 v2
APP_MANIFEST=$IMG_MANIFEST APP_CONFIG=$IMG_CONFIG APP_LAYERS=$IMG_LAYERS
# shellcheck disable=SC2086 # IMG_LAYERS: two digests
APP_BLOBS=$(printf '%s\n' "$IMG_MANIFEST" "$IMG_CONFIG" $IMG_LAYERS | sort | xargs)
# an OCI archive for `ctr images import`: the layout as a tar
tar -C "$APP" -cf "$E2E_DIR/app.tar" oci-layout index.json blobs

start_server
containerd_init

# target REF: the digest containerd's image REF points to
target() { ct images ls "name==$1" | awk 'NR == 2 {print $3}'; }
# local_blobs: the digests of containerd's content store, sorted, on one line
local_blobs() { ct content ls -q | sort | xargs; }
# forget_all: removes every image and (through containerd's gc) every blob from containerd
forget_all() {
    local refs
    refs=$(ct images ls -q)
    # shellcheck disable=SC2086 # one name per word
    [ -z "$refs" ] || ct images rm --sync $refs >/dev/null
    expect_out "blobs left in containerd" "" local_blobs
}
# check_pulled REF MANIFEST BLOBS: containerd holds REF -> MANIFEST and exactly BLOBS, each of
# which hashes to its name
check_pulled() {
    local d
    expect_eq "ctr: digest of $1" "$(target "$1")" "$2"
    expect_out "ctr: blobs after pulling $1" "$3" local_blobs
    for d in $3; do
        [ "$(ct content get "$d" | digest_of)" = "$d" ] || fail "blob $d does not match its digest"
    done
}
# registry_check REPO REF MANIFEST CONFIG LAYERS [CURL-ARGS...]: what the registry serves for
# REPO:REF (anonymously, or with the curl arguments given) is the generated image
registry_check() {
    local repo=$1 ref=$2 manifest=$3 config=$4 layers=$5 d
    shift 5
    curl -sf --max-time 30 "$@" -D "$E2E_DIR/m.hdr" -o "$E2E_DIR/m.json" \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REG/v2/$repo/manifests/$ref" || fail "GET $repo/manifests/$ref"
    expect_eq "registry: digest of $repo:$ref" "$(digest_of "$E2E_DIR/m.json")" "$manifest"
    expect_eq "registry: Docker-Content-Digest of $repo:$ref" \
        "$(http_header "$E2E_DIR/m.hdr" Docker-Content-Digest)" "$manifest"
    for d in $config $layers; do
        expect_eq "registry: blob $d of $repo" \
            "$(curl -sf --max-time 30 "$@" "http://$REG/v2/$repo/blobs/$d" | digest_of)" "$d"
    done
}

# --- pull by tag, unpack, read the files ---------------------------------------------------------
sk copy --quiet --dest-tls-verify=false "oci:$SEED:v1" "docker://$REG/e2e/seed:v1"
expect_out "blobs in a fresh containerd" "" local_blobs
ct images pull --plain-http --platform linux/amd64 "$REG/e2e/seed:v1" >/dev/null
check_pulled "$REG/e2e/seed:v1" "$SEED_MANIFEST" "$SEED_BLOBS"
mkdir "$E2E_DIR/mnt"
ct images mount --platform linux/amd64 "$REG/e2e/seed:v1" "$E2E_DIR/mnt" >/dev/null
on_exit "ct images unmount --rm $E2E_DIR/mnt"
expect_eq "/e2e/seed.txt of the unpacked image" "$(cat "$E2E_DIR/mnt/e2e/seed.txt")" \
    "seed for linux/amd64"
expect_eq "/etc/e2e/base.txt of the unpacked image" "$(cat "$E2E_DIR/mnt/etc/e2e/base.txt")" \
    "base layer of seed"
ct images unmount --rm "$E2E_DIR/mnt" >/dev/null

# --- pull by digest, from nothing --------------------------------------------------------------
forget_all
ct images pull --plain-http --platform linux/amd64 "$REG/e2e/seed@$SEED_MANIFEST" >/dev/null
check_pulled "$REG/e2e/seed@$SEED_MANIFEST" "$SEED_MANIFEST" "$SEED_BLOBS"
run_fails ct images pull --plain-http --platform linux/amd64 "$REG/e2e/seed:no-such-tag"

# --- push an image generated here ---------------------------------------------------------------
forget_all
ct images import --no-unpack --base-name "e2e/app" "$E2E_DIR/app.tar" >/dev/null
LOCAL=e2e/app:v2
expect_eq "ctr: digest of the imported image" "$(target "$LOCAL")" "$APP_MANIFEST"
ct images push --plain-http "$REG/e2e/app:v2" "$LOCAL" >/dev/null
registry_check e2e/app v2 "$APP_MANIFEST" "$APP_CONFIG" "$APP_LAYERS"
registry_check e2e/app "$APP_MANIFEST" "$APP_MANIFEST" "$APP_CONFIG" "$APP_LAYERS"
# pushed again: the registry has it all; the same digest
ct images push --plain-http "$REG/e2e/app:v2" "$LOCAL" >/dev/null
registry_check e2e/app v2 "$APP_MANIFEST" "$APP_CONFIG" "$APP_LAYERS"
# and pulled back from the registry, from nothing
forget_all
ct images pull --plain-http --platform linux/amd64 "$REG/e2e/app:v2" >/dev/null
check_pulled "$REG/e2e/app:v2" "$APP_MANIFEST" "$APP_BLOBS"
stop_server

# --- with credentials ---------------------------------------------------------------------------
admin() { "$OCIREG" "$@" --root "$E2E_DIR/root"; }
ALICE_PW=alice-ctr-password
printf '%s\n' "$ALICE_PW" | admin user add alice
BOB_PW=$(admin user add bob </dev/null)
admin grant alice 'team/*' pull,push
admin grant bob 'team/*' pull

for mode in token basic; do
    log "---- --auth $mode"
    start_server --auth "$mode"
    forget_all
    ct images import --no-unpack --base-name "e2e/app" "$E2E_DIR/app.tar" >/dev/null
    # nobody without a password, or with a wrong one
    run_fails ct images push --plain-http "$REG/team/app:$mode" "$LOCAL"
    run_fails ct images push --plain-http --user "alice:wrong" "$REG/team/app:$mode" "$LOCAL"
    # alice pushes
    ct images push --plain-http --user "alice:$ALICE_PW" "$REG/team/app:$mode" "$LOCAL" >/dev/null
    if [ "$mode" = basic ]; then
        registry_check team/app "$mode" "$APP_MANIFEST" "$APP_CONFIG" "$APP_LAYERS" \
            -u "bob:$BOB_PW"
    fi
    # bob may not push: the registry says so, and stores nothing
    if ct images push --plain-http --user "bob:$BOB_PW" "$REG/team/bob:$mode" "$LOCAL" \
        >"$E2E_DIR/bobpush" 2>&1; then
        fail "$mode: bob could push without a push grant"
    fi
    grep -Eqi 'denied|unauthorized|insufficient_scope|forbidden|403' "$E2E_DIR/bobpush" ||
        fail "$mode: bob's push failed for another reason: $(cat "$E2E_DIR/bobpush")"
    forget_all
    run_fails ct images pull --plain-http --user "alice:$ALICE_PW" --platform linux/amd64 \
        "$REG/team/bob:$mode"
    # bob pulls, by tag and by digest; not without credentials, nor with a wrong password
    run_fails ct images pull --plain-http --platform linux/amd64 "$REG/team/app:$mode"
    run_fails ct images pull --plain-http --user "bob:wrong" --platform linux/amd64 \
        "$REG/team/app:$mode"
    ct images pull --plain-http --user "bob:$BOB_PW" --platform linux/amd64 \
        "$REG/team/app:$mode" >/dev/null
    check_pulled "$REG/team/app:$mode" "$APP_MANIFEST" "$APP_BLOBS"
    forget_all
    ct images pull --plain-http --user "bob:$BOB_PW" --platform linux/amd64 \
        "$REG/team/app@$APP_MANIFEST" >/dev/null
    check_pulled "$REG/team/app@$APP_MANIFEST" "$APP_MANIFEST" "$APP_BLOBS"
    stop_server
done
finish
