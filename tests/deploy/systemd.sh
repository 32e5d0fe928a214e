#!/usr/bin/env bash
# deploy/systemd: the unit, its sysusers.d file and its EnvironmentFile example.
#   1. `systemd-analyze verify` of the unit (ExecStart pointed at the built binary) prints nothing;
#      `systemd-analyze security --offline` rates its sandbox 2.0 or better ("OK");
#      `systemd-sysusers --root` creates the user 'ocireg' from ocireg.sysusers.conf;
#      every flag in ExecStart and in ocireg.env is one `ocireg serve --help` lists.
#   2. The unit run by a real systemd: a systemd of the test's own as PID 1 of new PID, mount,
#      UTS and IPC namespaces (host network, loopback only), where /usr/local/bin holds the built
#      binary, /var/lib a directory of the test, /etc/passwd the sysusers line; the unit file is
#      the shipped one, unmodified, plus a drop-in (no default dependencies, output to a file,
#      an EnvironmentFile with ocireg.env's flags on free loopback ports). Checked: it runs as
#      'ocireg' with no capabilities, no_new_privs and a seccomp filter; the StateDirectory is
#      created and owned by ocireg; `ocireg user add` as that user (online); a skopeo push and
#      pull with token auth; Restart=on-failure after a SIGKILL; `systemctl stop` (SIGTERM) ends
#      it with status 0 ("stopped" in its log) well within TimeoutStopSec.
#   Part 2, the unit actually run, is what this test is for: where it cannot run (no
#   unshare/nsenter/setpriv or /lib/systemd/systemd, no PID namespaces, a systemd that does not
#   boot in one) the test exits 77 (ctest: Skipped) with the reason, after part 1 has passed.
# Usage: systemd.sh PATH/TO/ocireg
. "$(dirname "$0")/../e2e/lib.sh" "$@"
e2e_need systemd-analyze jq curl
DEPLOY=$(cd "$(dirname "$0")/../../deploy/systemd" && pwd)
UNIT=$DEPLOY/ocireg.service

# ---- 1. static checks -------------------------------------------------------------------------
mkdir -p "$E2E_DIR/verify"
grep -q '^ExecStart=/usr/local/bin/ocireg serve ' "$UNIT" || fail "ExecStart is not /usr/local/bin/ocireg serve"
sed "s#^ExecStart=/usr/local/bin/ocireg #ExecStart=$OCIREG #" "$UNIT" >"$E2E_DIR/verify/ocireg.service"
log "+ systemd-analyze verify $E2E_DIR/verify/ocireg.service"
systemd-analyze verify "$E2E_DIR/verify/ocireg.service" >"$E2E_DIR/verify.out" 2>&1 || {
    cat "$E2E_DIR/verify.out" >&2
    fail "systemd-analyze verify failed"
}
[ ! -s "$E2E_DIR/verify.out" ] || {
    cat "$E2E_DIR/verify.out" >&2
    fail "systemd-analyze verify printed warnings"
}
log "ok: systemd-analyze verify"
# (a broken ExecStart must be caught by the same check, else it proves nothing)
sed "s#^ExecStart=/usr/local/bin/ocireg #ExecStart=$E2E_DIR/nonexistent #" "$UNIT" \
    >"$E2E_DIR/verify/broken.service"
run_fails systemd-analyze verify "$E2E_DIR/verify/broken.service"

log "+ systemd-analyze security --offline=yes --threshold=20 $E2E_DIR/verify/ocireg.service"
systemd-analyze security --offline=yes --threshold=20 "$E2E_DIR/verify/ocireg.service" \
    >"$E2E_DIR/security.out" 2>&1 || {
    grep -v '✓' "$E2E_DIR/security.out" >&2
    fail "systemd-analyze security: exposure above 2.0"
}
log "$(grep 'Overall exposure' "$E2E_DIR/security.out")"

SYSUSERS_ROOT=$E2E_DIR/sysusers-root
mkdir -p "$SYSUSERS_ROOT/etc"
if command -v systemd-sysusers >/dev/null 2>&1; then
    log "+ systemd-sysusers --root=$SYSUSERS_ROOT $DEPLOY/ocireg.sysusers.conf"
    systemd-sysusers --root="$SYSUSERS_ROOT" "$DEPLOY/ocireg.sysusers.conf" 2>&1 | sed 's/^/    /' >&2
    PWLINE=$(grep '^ocireg:' "$SYSUSERS_ROOT/etc/passwd") || fail "systemd-sysusers made no user ocireg"
    GRLINE=$(grep '^ocireg:' "$SYSUSERS_ROOT/etc/group") || fail "systemd-sysusers made no group ocireg"
    expect_eq "home and shell of ocireg" "$(echo "$PWLINE" | cut -d: -f6,7)" \
        /var/lib/ocireg:/usr/sbin/nologin
else
    log "no systemd-sysusers: using a fixed passwd line"
    PWLINE='ocireg:x:990:990:ocireg container registry:/var/lib/ocireg:/usr/sbin/nologin'
    GRLINE='ocireg:x:990:'
fi
OUID=$(echo "$PWLINE" | cut -d: -f3)
OGID=$(echo "$PWLINE" | cut -d: -f4)
if [ "$OUID" -le 0 ] || [ "$OUID" -ge 1000 ]; then fail "uid $OUID of ocireg is not a system uid"; fi

"$OCIREG" serve --help >"$E2E_DIR/serve-help.txt"
check_flags() { # check_flags WHERE TEXT: every --flag in TEXT is in `ocireg serve --help`
    local f n=0
    for f in $(printf '%s\n' "$2" | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
        grep -qE -- "(^|[[:space:]])$f([[:space:]]|$)" "$E2E_DIR/serve-help.txt" ||
            fail "$1 uses $f, which 'ocireg serve --help' does not list"
        n=$((n + 1))
    done
    log "ok: the $n flags of $1 are in 'ocireg serve --help'"
}
check_flags "ExecStart and Environment of ocireg.service" \
    "$(grep -E '^(ExecStart|Environment)=' "$UNIT")"
check_flags "ocireg.env" "$(cat "$DEPLOY/ocireg.env")"

# ---- 2. under a systemd of the test's own ------------------------------------------------------
SD_PID=
if ! command -v unshare >/dev/null 2>&1 || ! command -v nsenter >/dev/null 2>&1 ||
    [ ! -x /lib/systemd/systemd ] || ! command -v setpriv >/dev/null 2>&1; then
    skip "the unit is not run: no unshare/nsenter/setpriv or /lib/systemd/systemd here (the static checks passed)"
fi
if ! unshare --pid --fork --mount --propagation private --mount-proc true 2>"$E2E_DIR/unshare.err"; then
    skip "the unit is not run: no private PID and mount namespaces here ($(tail -n 1 "$E2E_DIR/unshare.err")) (the static checks passed)"
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
API=$(free_port)
ADMIN=$(free_port)
[ "$API" != "$ADMIN" ] || ADMIN=$(free_port)

T=$E2E_DIR/sd
mkdir -p "$T/units/ocireg.service.d" "$T/etc-systemd" "$T/varlib" "$T/bin" "$T/run-test"
cp "$UNIT" "$T/units/ocireg.service" # as shipped
grep -v '^ocireg:' /etc/passwd >"$T/passwd"
echo "$PWLINE" >>"$T/passwd"
grep -v '^ocireg:' /etc/group >"$T/group"
echo "$GRLINE" >>"$T/group"
cp "$OCIREG" "$T/bin/ocireg"
# ocireg.env with the listen addresses on free loopback ports and the token realm here
sed -e "s#127\.0\.0\.1:5000#127.0.0.1:$API#g" -e "s#127\.0\.0\.1:5001#127.0.0.1:$ADMIN#g" \
    -e "s#--public-url https://registry\.example\.com#--public-url http://127.0.0.1:$API#" \
    "$DEPLOY/ocireg.env" >"$T/run-test/ocireg.env"
grep -q "^SERVE_ARGS=.*127.0.0.1:$API.*--public-url http://127.0.0.1:$API" "$T/run-test/ocireg.env" ||
    fail "ocireg.env: the active SERVE_ARGS line did not take the test's ports"
cat >"$T/units/ocireg.service.d/test.conf" <<EOF
[Unit]
DefaultDependencies=no
[Service]
EnvironmentFile=/run/ocireg-test/ocireg.env
StandardOutput=append:$T/service.log
StandardError=inherit
EOF
if ldd "$OCIREG" 2>/dev/null | grep 'libasan' >/dev/null; then
    # (a sanitizer build, make test-asan: LeakSanitizer stops the world with ptrace, which the
    # unit's system call filter denies, as it should; AddressSanitizer itself stays on)
    printf 'Environment=ASAN_OPTIONS=detect_leaks=0\n' >>"$T/units/ocireg.service.d/test.conf"
fi
cat >"$T/units/ocireg-test.target" <<'EOF'
[Unit]
Description=the test's default target (nothing)
DefaultDependencies=no
EOF
cat >"$T/inner.sh" <<EOF
set -e
mount --bind "$T/passwd" /etc/passwd
mount --bind "$T/group" /etc/group
mount --bind "$T/etc-systemd" /etc/systemd/system   # none of the machine's enabled units
mount --bind "$T/varlib" /var/lib
mount -t tmpfs tmpfs /usr/local/bin
cp "$T/bin/ocireg" /usr/local/bin/ocireg
mount -t tmpfs tmpfs /run
# cgroup v2 only, mounted anew: systemd runs in unified mode and leaves the machine's cgroup
# tmpfs alone (in hybrid mode it would mount controllers into it and remount it read-only,
# which changes its superblock for every namespace)
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run/systemd/system /run/ocireg-test
cp -r "$T/units/." /run/systemd/system/
cp "$T/run-test/ocireg.env" /run/ocireg-test/
exec env container=ocireg-test /lib/systemd/systemd --system --unit=ocireg-test.target \
    --log-target=console --log-level=notice
EOF

# systemd makes its cgroups (init.scope, system.slice/...) below this test's own cgroup v2
# directory; the ones it leaves behind are removed at the end (those only: other tests may be
# making cgroups of their own at the same time).
CG_BASE=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -n 1)$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
CG_BASE=${CG_BASE%/}
CG_BEFORE=$E2E_DIR/cgroups.before
cg_systemd_dirs() {
    [ -n "$CG_BASE" ] || return 0
    { find "$CG_BASE/init.scope" "$CG_BASE/system.slice" "$CG_BASE/-.slice" -type d 2>/dev/null || true; } | sort
}
cg_systemd_dirs >"$CG_BEFORE"
sd_stop() {
    local deadline
    [ -n "$SD_PID" ] || return 0
    nsenter -t "$SD_PID" -m -p systemctl --no-block poweroff >/dev/null 2>&1 || true
    deadline=$((SECONDS + 15))
    while kill -0 "$SD_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$SD_PID" 2>/dev/null || true
    wait "$UNSHARE_PID" 2>/dev/null || true
    SD_PID=
    cg_systemd_dirs | comm -13 "$CG_BEFORE" - | sort -r | while read -r d; do
        rmdir "$d" 2>/dev/null || true
    done
}
on_exit sd_stop
show_on_failure "$T/systemd.log" "systemd (PID 1 of the test's namespace) log"
show_on_failure "$T/service.log" "ocireg.service output"

unshare --pid --fork --mount --uts --ipc --propagation private --mount-proc \
    bash "$T/inner.sh" </dev/null >"$T/systemd.log" 2>&1 &
UNSHARE_PID=$!
deadline=$((SECONDS + 10))
until SD_PID=$(pgrep -P "$UNSHARE_PID" -x systemd); do
    kill -0 "$UNSHARE_PID" 2>/dev/null || {
        cat "$T/systemd.log" >&2
        SD_PID=
        skip "systemd cannot run in a namespace here"
    }
    [ "$SECONDS" -lt "$deadline" ] || fail "no systemd process under unshare within 10s"
    sleep 0.05
done
sdctl() { timeout -k 5 30 nsenter -t "$SD_PID" -m -p systemctl "$@"; }
deadline=$((SECONDS + 30))
until state=$(sdctl is-system-running 2>/dev/null) && [ "$state" = running ] ||
    [ "$state" = degraded ]; do
    # (systemd not booting in a namespace is this machine's limit, not the unit's: the unit is
    # only started after this)
    kill -0 "$SD_PID" 2>/dev/null || skip "systemd cannot run in a namespace here: $(tail -n 3 "$T/systemd.log")"
    [ "$SECONDS" -lt "$deadline" ] || skip "systemd not running within 30s in a namespace here (state '$state')"
    sleep 0.1
done
log "systemd $(systemctl --version | head -n 1 | awk '{print $2}') is PID 1 of its namespace (pid $SD_PID here): $state"

run sdctl start ocireg.service
wait_ready() { # until /readyz answers ready (the unit is Type=exec: start returns before listen)
    local deadline=$((SECONDS + 20))
    until [ "$(curl -s --max-time 2 "http://127.0.0.1:$ADMIN/readyz")" = ready ]; do
        [ "$(sdctl is-active ocireg.service)" != failed ] || fail "ocireg.service failed"
        [ "$SECONDS" -lt "$deadline" ] || fail "ocireg.service not ready on $ADMIN within 20s"
        sleep 0.1
    done
}
wait_ready
expect_eq "ocireg.service" "$(sdctl is-active ocireg.service)" active
MAIN=$(sdctl show -p MainPID --value ocireg.service)
nsenter -t "$SD_PID" -m -p cat "/proc/$MAIN/status" >"$T/status"
nsenter -t "$SD_PID" -m -p cat "/proc/$MAIN/cmdline" | tr '\0' ' ' >"$T/cmdline"
log "main process $MAIN: $(cat "$T/cmdline")"
status_field() { awk -v k="$1:" '$1 == k { print $2 }' "$T/status"; }
expect_eq "uid of the service" "$(status_field Uid)" "$OUID"
expect_eq "gid of the service" "$(status_field Gid)" "$OGID"
expect_eq "capability bounding set" "$(status_field CapBnd)" 0000000000000000
expect_eq "effective capabilities" "$(status_field CapEff)" 0000000000000000
expect_eq "no_new_privs" "$(status_field NoNewPrivs)" 1
expect_eq "seccomp mode (filter)" "$(status_field Seccomp)" 2
expect_eq "owner and mode of the state directory" "$(stat -c %u:%g:%a "$T/varlib/ocireg")" "$OUID:$OGID:750"
grep -q -- "--root /var/lib/ocireg --listen 127.0.0.1:$API --auth token" "$T/cmdline" ||
    fail "ExecStart did not get SERVE_ARGS from the EnvironmentFile"

# Administration as the service's user, online (as the unit's header says, with sudo -u).
PASS=systemd-test-$RANDOM$RANDOM
AS_OCIREG=(nsenter -t "$SD_PID" -m -p setpriv --reuid="$OUID" --regid="$OGID" --clear-groups
    /usr/local/bin/ocireg)
echo "$PASS" | run "${AS_OCIREG[@]}" user add deployer --root /var/lib/ocireg >/dev/null
run "${AS_OCIREG[@]}" grant deployer 'sd/*' pull,push --root /var/lib/ocireg >/dev/null
find "$T/varlib/ocireg" ! -user "$OUID" | grep . && fail "files not owned by ocireg in the state directory"

REG=127.0.0.1:$API
write_registries_conf
layout_init "$E2E_DIR/app"
make_image "$E2E_DIR/app" app amd64 1.0
sk copy --quiet --dest-tls-verify=false --dest-creds "deployer:$PASS" \
    oci:"$E2E_DIR/app":1.0 "docker://$REG/sd/app:1.0"
sk copy --quiet --src-tls-verify=false --src-creds "deployer:$PASS" \
    "docker://$REG/sd/app:1.0" oci:"$E2E_DIR/back":1.0
expect_eq "manifest pulled back" "$(layout_ref_digest "$E2E_DIR/back" 1.0)" "$IMG_MANIFEST"

# Restart=on-failure: a SIGKILL is a failure; systemd starts it again after RestartSec.
run nsenter -t "$SD_PID" -m -p kill -KILL "$MAIN"
deadline=$((SECONDS + 20))
until NEW=$(sdctl show -p MainPID --value ocireg.service) && [ "$NEW" != 0 ] && [ "$NEW" != "$MAIN" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "ocireg.service not restarted within 20s of a SIGKILL"
    sleep 0.2
done
wait_ready
expect_eq "restarts" "$(sdctl show -p NRestarts --value ocireg.service)" 1
expect_eq "the image after the restart" "$(sk inspect --tls-verify=false --creds "deployer:$PASS" \
    --raw "docker://$REG/sd/app:1.0" | digest_of)" "$IMG_MANIFEST"

# systemctl stop: SIGTERM, graceful, status 0.
t0=$SECONDS
run sdctl stop ocireg.service
expect_eq "result of the stop" "$(sdctl show -p Result --value ocireg.service)" success
expect_eq "exit status" "$(sdctl show -p ExecMainStatus --value ocireg.service)" 0
[ $((SECONDS - t0)) -lt 30 ] || fail "systemctl stop took $((SECONDS - t0))s"
grep -q 'signal 15: shutting down' "$T/service.log" || fail "no SIGTERM in the service's log"
expect_eq "last line of the service's log" "$(tail -n 1 "$T/service.log" | awk '{print $NF}')" stopped
sd_stop
finish
