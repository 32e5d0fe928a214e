#!/usr/bin/env bash
# The container image of deploy/image/build-image.sh, end to end:
#   built from scratch and pushed (buildah) to an ocireg started here, twice (same digest: the
#   build is reproducible); its config checked
#   (entrypoint, cmd, user, ports, volume, labels); pulled back with podman (private vfs store)
#   by tag, same digest; `podman image mount`, then inside it with chroot, as its own user:
#     ocireg --version (the same as the build's), ocireg-healthcheck,
#     the image's own ENTRYPOINT + CMD (token auth, --root /var/lib/ocireg) with only the listen
#     addresses moved to free loopback ports: 401 on /v2/, /healthz and /readyz, a user added
#     with `ocireg user add` inside the image, a push and a pull with skopeo using that login,
#     the image itself copied into it; SIGTERM, exit 0, and nothing written outside the volume.
# Usage: image.sh PATH/TO/ocireg
. "$(dirname "$0")/../e2e/lib.sh" "$@"
e2e_need buildah podman skopeo jq curl chroot tar cc ldd
[ "$(id -u)" = 0 ] || skip "needs root (chroot, podman image mount)"
if ldd "$OCIREG" 2>/dev/null | grep -E 'lib(asan|ubsan|tsan)' >/dev/null; then
    # (make test-asan: the sanitizer runtime needs /proc, which the image has not; images are
    # made from release builds)
    skip "$OCIREG is a sanitizer build: the image is made from a release build"
fi
BUILD_IMAGE=$(cd "$(dirname "$0")/../../deploy/image" && pwd)/build-image.sh

# shellcheck disable=SC2119 # (no extra serve flags)
start_server
buildah_init
podman_init

# ---- build and push ---------------------------------------------------------------------------
run "$BUILD_IMAGE" --ocireg "$OCIREG" --rootfs "$E2E_DIR/rootfs" --registry "$REG" \
    --repo deploy/ocireg --tag test --digestfile "$E2E_DIR/pushed.digest" >"$E2E_DIR/build.out"
PUSHED=$(cat "$E2E_DIR/pushed.digest")
expect_eq "build-image's last line" "$(tail -n 1 "$E2E_DIR/build.out")" \
    "$REG/deploy/ocireg:test@$PUSHED"
expect_eq "manifest digest in the registry" \
    "$(sk inspect --tls-verify=false --raw "docker://$REG/deploy/ocireg:test" | digest_of)" "$PUSHED"

sk inspect --tls-verify=false --config "docker://$REG/deploy/ocireg:test" >"$E2E_DIR/config.json"
cfg() { jq -c "$1" "$E2E_DIR/config.json"; }
expect_eq "os/arch" "$(cfg '[.os, .architecture]')" '["linux","amd64"]'
expect_eq "entrypoint" "$(cfg .config.Entrypoint)" '["/usr/local/bin/ocireg"]'
expect_eq "cmd" "$(cfg .config.Cmd)" \
    '["serve","--root","/var/lib/ocireg","--listen","0.0.0.0:5000","--auth","token","--admin-listen","0.0.0.0:5001"]'
expect_eq "user" "$(cfg .config.User)" '"65532:65532"'
expect_eq "ports" "$(cfg '.config.ExposedPorts | keys')" '["5000/tcp","5001/tcp"]'
expect_eq "volumes" "$(cfg '.config.Volumes | keys')" '["/var/lib/ocireg"]'
expect_eq "env OCIREG_ROOT" "$(cfg '.config.Env | map(select(startswith("OCIREG_ROOT="))) ')" \
    '["OCIREG_ROOT=/var/lib/ocireg"]'
expect_eq "stop signal" "$(cfg .config.StopSignal)" '"SIGTERM"'
expect_eq "label version" "$(cfg '.config.Labels["org.opencontainers.image.version"]')" \
    "\"$("$OCIREG" --version | head -n 1 | awk '{print $2}')\""
expect_eq "one layer" "$(cfg '.rootfs.diff_ids | length')" 1
# Reproducible: the same binary gives the same image, byte for byte.
run "$BUILD_IMAGE" --ocireg "$OCIREG" --rootfs "$E2E_DIR/rootfs2" --registry "$REG" \
    --repo deploy/ocireg --tag again --digestfile "$E2E_DIR/again.digest" >/dev/null
expect_eq "digest of a second build" "$(cat "$E2E_DIR/again.digest")" "$PUSHED"

# ---- pull with podman, mount ------------------------------------------------------------------
pm a pull --tls-verify=false "$REG/deploy/ocireg:test" >/dev/null
expect_eq "podman's digest of the pulled image" \
    "$(pm a images --format '{{.Digest}}' "$REG/deploy/ocireg:test")" "$PUSHED"
MNT=$(pm a image mount "$REG/deploy/ocireg:test")
on_exit "pm a image umount --all"
[ -x "$MNT/usr/local/bin/ocireg" ] || fail "no /usr/local/bin/ocireg in the mounted image ($MNT)"
log "image contents: $(cd "$MNT" && find . -mindepth 1 ! -type d | sort | xargs)"
[ ! -e "$MNT/bin/sh" ] || fail "the image has a shell: it should hold the binary and its libraries only"
expect_eq "owner of /var/lib/ocireg" "$(stat -c %u:%g:%a "$MNT/var/lib/ocireg")" 65532:65532:750
expect_eq "mode of /tmp" "$(stat -c %a "$MNT/tmp")" 1777
expect_eq "ocireg user" "$(grep '^ocireg:' "$MNT/etc/passwd" | cut -d: -f3,4)" 65532:65532

CH=(chroot --userspec=65532:65532 "$MNT")
expect_eq "ocireg --version inside the image" "$(run "${CH[@]}" /usr/local/bin/ocireg --version)" \
    "$("$OCIREG" --version)"
run_fails "${CH[@]}" /usr/local/bin/ocireg-healthcheck "http://$REG/nonexistent"

# ---- the image's own ENTRYPOINT + CMD, listen addresses moved to loopback ---------------------
mapfile -t ARGV < <(cfg '(.config.Entrypoint + .config.Cmd)[]' | jq -r .)
for ((i = 0; i < ${#ARGV[@]}; i++)); do
    case ${ARGV[i]} in --listen | --admin-listen) ARGV[i + 1]=127.0.0.1:0 ;; esac
done
STAMP=$E2E_DIR/stamp
touch "$STAMP"
sleep 1 # (mtimes of what the server writes are after the stamp's second)
log "+ ${CH[*]} ${ARGV[*]}"
"${CH[@]}" "${ARGV[@]}" --port-file /tmp/port --admin-port-file /tmp/admin-port \
    --log-level warn </dev/null >"$E2E_DIR/image-server.log" 2>&1 &
IMG_PID=$!
on_exit "e2e_stop_pid $IMG_PID image-server"
show_on_failure "$E2E_DIR/image-server.log" "log of the ocireg inside the image"
deadline=$((SECONDS + 20))
until [ -s "$MNT/tmp/port" ] && [ -s "$MNT/tmp/admin-port" ]; do
    kill -0 "$IMG_PID" 2>/dev/null || fail "the ocireg inside the image exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "no port files from the ocireg inside the image"
    sleep 0.05
done
IREG=127.0.0.1:$(cat "$MNT/tmp/port")
IADMIN=127.0.0.1:$(cat "$MNT/tmp/admin-port")
log "the image's ocireg (pid $IMG_PID) on $IREG, admin $IADMIN"
expect_eq "GET /v2/ (token auth from the image's CMD)" \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$IREG/v2/")" 401
expect_eq "/healthz" "$(curl -s "http://$IADMIN/healthz")" ok
expect_eq "/readyz" "$(curl -s "http://$IADMIN/readyz")" ready
run "${CH[@]}" /usr/local/bin/ocireg-healthcheck "http://$IADMIN/healthz"
run "${CH[@]}" /usr/local/bin/ocireg-healthcheck "http://$IADMIN/readyz"
[ -d "$MNT/var/lib/ocireg/blobs" ] || fail "the image's ocireg does not store under /var/lib/ocireg"

PASS=image-test-$RANDOM$RANDOM
echo "$PASS" | run "${CH[@]}" /usr/local/bin/ocireg user add deployer --root /var/lib/ocireg >/dev/null
run "${CH[@]}" /usr/local/bin/ocireg grant deployer '*' pull,push --root /var/lib/ocireg >/dev/null

layout_init "$E2E_DIR/app"
make_image "$E2E_DIR/app" app amd64 1.0
sk copy --quiet --dest-tls-verify=false --dest-creds "deployer:$PASS" \
    oci:"$E2E_DIR/app":1.0 "docker://$IREG/team/app:1.0"
run_fails sk inspect --tls-verify=false --no-creds --raw "docker://$IREG/team/app:1.0"
sk copy --quiet --src-tls-verify=false --src-creds "deployer:$PASS" \
    "docker://$IREG/team/app:1.0" oci:"$E2E_DIR/back":1.0
expect_eq "manifest pulled back from the image's ocireg" \
    "$(layout_ref_digest "$E2E_DIR/back" 1.0)" "$IMG_MANIFEST"
verify_layout_blobs "$E2E_DIR/back"
# The image itself, registry to registry (the image serving itself).
sk copy --quiet --src-tls-verify=false --dest-tls-verify=false --dest-creds "deployer:$PASS" \
    "docker://$REG/deploy/ocireg:test" "docker://$IREG/deploy/ocireg:test"
expect_eq "the image in the image's ocireg" \
    "$(sk inspect --tls-verify=false --creds "deployer:$PASS" --raw \
        "docker://$IREG/deploy/ocireg:test" | digest_of)" "$PUSHED"

log "+ SIGTERM the image's ocireg"
kill -TERM "$IMG_PID"
rc=0
wait "$IMG_PID" || rc=$?
expect_eq "exit status of the image's ocireg after SIGTERM" "$rc" 0

# A read-only root file system (readOnlyRootFilesystem in kubernetes/, read_only in compose/)
# holds: nothing changed outside the volume and the port files this test asked for in /tmp.
CHANGED=$(cd "$MNT" && find . -newer "$STAMP" ! -path './var/lib/ocireg' ! -path './var/lib/ocireg/*' \
    ! -path ./tmp ! -path ./tmp/port ! -path ./tmp/admin-port | sort | tr '\n' ' ')
expect_eq "files written outside /var/lib/ocireg" "$CHANGED" ""
finish
