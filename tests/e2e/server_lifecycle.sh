#!/usr/bin/env bash
# The server as an operator runs it: the command line, constant memory for huge uploads and
# downloads, and a graceful stop that lets an in-flight upload finish.
. "$(dirname "$0")/lib.sh" "$@"
e2e_need curl jq

# ---- command line
"$OCIREG" --help | grep -q "serve" || fail "--help does not list serve"
"$OCIREG" --version | grep -q "^ocireg " || fail "--version"
help=$("$OCIREG" serve --help)
for flag in --root --listen --port-file --threads --max-manifest-size --map-size \
    --conn-timeout --per-ip-limit --max-connections --shutdown-grace --log-level; do
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

# ---- configuration: file < environment < command line; --check-config
printf 'listen = 127.0.0.1:0\n# a comment\nthreads = 3\ngc-delete-untagged\n' >"$E2E_DIR/conf"
out=$("$OCIREG" serve --config "$E2E_DIR/conf" --check-config)
expect_eq "check-config of a good file" "$out" "configuration ok"
rc=0
OCIREG_THREADS=zero "$OCIREG" serve --config "$E2E_DIR/conf" --check-config >/dev/null 2>&1 || rc=$?
expect_eq "a bad value from the environment" "$rc" 2
rc=0
OCIREG_THREADS=zero "$OCIREG" serve --threads 2 --check-config >/dev/null 2>&1 || rc=$?
expect_eq "the command line wins over the environment" "$rc" 0
printf 'no-such-setting = 1\n' >"$E2E_DIR/bad.conf"
rc=0
"$OCIREG" serve --config "$E2E_DIR/bad.conf" --check-config >/dev/null 2>&1 || rc=$?
expect_eq "an unknown setting in the file" "$rc" 2
rc=0
"$OCIREG" serve --listen 0.0.0.0:0 --check-config >/dev/null 2>&1 || rc=$?
expect_eq "off loopback without --auth" "$rc" 2
"$OCIREG" version | grep -q "commit .*index schema" || fail "version lacks build info"

# ---- the access log and X-Request-Id
mkdir -p "$E2E_DIR/root"
"$OCIREG" serve --root "$E2E_DIR/root" --listen 127.0.0.1:0 --port-file "$E2E_DIR/aport0" \
    --admin-port-file "$E2E_DIR/admin0" --access-log "$E2E_DIR/access.log" --log-level warn \
    2>>"$E2E_DIR/server.log" &
alog_pid=$!
on_exit "kill -KILL $alog_pid"
deadline=$((SECONDS + 20))
until [ -s "$E2E_DIR/aport0" ] && [ -s "$E2E_DIR/admin0" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no port files"
    sleep 0.02
done
p=$(cat "$E2E_DIR/aport0")
rid=$(curl -s -D - -o /dev/null -H 'X-Request-Id: abc-123' "http://127.0.0.1:$p/v2/team/x/tags/list" |
    tr -d '\r' | awk 'tolower($1) == "x-request-id:" {print $2}')
expect_eq "X-Request-Id echoed" "$rid" "abc-123"
gen=$(curl -s -D - -o /dev/null "http://127.0.0.1:$p/v2/" | tr -d '\r' |
    awk 'tolower($1) == "x-request-id:" {print $2}')
[ ${#gen} -eq 16 ] || fail "no generated X-Request-Id ('$gen')"
metrics=$(curl -s "http://127.0.0.1:$(cat "$E2E_DIR/admin0")/metrics")
grep -q '^ocireg_build_info{' <<<"$metrics" || fail "no ocireg_build_info metric"
ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$E2E_DIR/admin0")/readyz")
expect_eq "/readyz" "$ready" 200
kill -TERM "$alog_pid"
wait "$alog_pid" || fail "server with an access log did not exit 0"
line=$(grep '"request_id":"abc-123"' "$E2E_DIR/access.log") || fail "no access log line"
expect_eq "access log route" "$(jq -r .route <<<"$line")" tags
expect_eq "access log repository" "$(jq -r .repository <<<"$line")" team/x
expect_eq "access log status" "$(jq -r .status <<<"$line")" 404
expect_eq "access log lines" "$(wc -l <"$E2E_DIR/access.log")" 2

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
