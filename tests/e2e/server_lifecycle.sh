#!/usr/bin/env bash
# The server as an operator runs it: the command line, constant memory for huge uploads and
# downloads, and a graceful stop that lets an in-flight upload finish.
. "$(dirname "$0")/lib.sh" "$@"
e2e_need curl

# ---- command line
"$OCIREG" --help | grep -q "serve" || fail "--help does not list serve"
"$OCIREG" --version | grep -q "^ocireg " || fail "--version"
help=$("$OCIREG" serve --help)
for flag in --root --listen --port-file --threads --max-manifest-size --map-size \
    --conn-timeout --per-ip-limit --shutdown-grace --log-level; do
    grep -q -- "$flag" <<<"$help" || fail "serve --help does not explain $flag"
done
rc=0
"$OCIREG" serve --no-such-flag >"$E2E_DIR/out" 2>&1 || rc=$?
expect_eq "exit status of an unknown flag" "$rc" 2
grep -q "usage: ocireg serve" "$E2E_DIR/out" || fail "no usage line for an unknown flag"
rc=0
"$OCIREG" serve --threads zero >"$E2E_DIR/out" 2>&1 || rc=$?
expect_eq "exit status of a bad flag value" "$rc" 2
rc=0
"$OCIREG" frobnicate >"$E2E_DIR/out" 2>&1 || rc=$?
expect_eq "exit status of an unknown command" "$rc" 2

start_server
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status"; }

# ---- 1 GiB streamed through one PATCH: the server's peak RSS barely moves
size=$((1024 * 1024 * 1024))
loc=$(curl -s -D - -o /dev/null -X POST "http://$REG/v2/big/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
[ -n "$loc" ] || fail "no upload location"
before=$(hwm)
head -c "$size" /dev/zero | curl -s -f -o /dev/null -X PATCH -T - \
    -H 'Content-Type: application/octet-stream' "http://$REG$loc" || fail "PATCH of 1 GiB"
digest=$(head -c "$size" /dev/zero | digest_of)
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$REG$loc?digest=$digest")
expect_eq "PUT status" "$code" 201
got=$(curl -s "http://$REG/v2/big/blobs/$digest" | digest_of)
expect_eq "digest of the 1 GiB blob read back" "$got" "$digest"
after=$(hwm)
log "peak RSS before ${before} KiB, after 1 GiB up and down ${after} KiB"
[ $((after - before)) -lt 16384 ] || fail "peak RSS grew by $((after - before)) KiB"

# ---- SIGTERM during an upload: the upload completes, the server exits 0
head -c $((6 * 1024 * 1024)) /dev/urandom >"$E2E_DIR/slow"
sdigest=$(digest_of "$E2E_DIR/slow")
curl -s -o "$E2E_DIR/slow.out" -w '%{http_code}' --limit-rate 3M -X POST \
    -H 'Content-Type: application/octet-stream' --data-binary @"$E2E_DIR/slow" \
    "http://$REG/v2/slow/blobs/uploads/?digest=$sdigest" >"$E2E_DIR/slow.code" &
curl_pid=$!
# the upload is in flight once its data file has bytes in it
deadline=$((SECONDS + 20))
until [ -n "$(find "$E2E_DIR/root/uploads" -type f -size +0 2>/dev/null)" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the slow upload never started"
    sleep 0.02
done
pid=$SERVER_PID
kill -TERM "$pid"
# new connections are refused while the in-flight request finishes
deadline=$((SECONDS + 10))
while curl -s -o /dev/null --max-time 1 "http://$REG/v2/"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "still accepting connections after SIGTERM"
    sleep 0.02
done
wait "$curl_pid" || fail "curl of the in-flight upload failed"
expect_eq "status of the upload in flight at SIGTERM" "$(cat "$E2E_DIR/slow.code")" 201
rc=0
wait "$pid" || rc=$?
SERVER_PID=
expect_eq "exit status after SIGTERM" "$rc" 0

# the blob it acknowledged is there after a restart
start_server
got=$(curl -s "http://$REG/v2/slow/blobs/$sdigest" | digest_of)
expect_eq "digest after restart" "$got" "$sdigest"
finish
