#!/usr/bin/env bash
# deploy/nginx/ocireg.conf for real: TLS termination and load balancing over two ocireg on one
# storage root, on this host.
#   * a CA and a server certificate (openssl); two `ocireg serve --auth token --public-url
#     https://127.0.0.1:NGINX` on free loopback ports, the same --root; nginx as this test's own
#     process (-p DIR, daemon off) with the example configuration, only its addresses, ports and
#     certificate paths replaced;
#   * a chunked upload spread over both backends, called directly: POST on A, PATCH on B, status
#     on A, PATCH on A, PATCH on B, PUT with the last chunk on A; the blob served by both; a
#     bearer token issued by one backend is accepted by the other (shared signing key);
#   * skopeo push over https through nginx (--dest-cert-dir with the CA): both backends took
#     requests; pull, same digests;
#   * an upload session begun on A; A killed (SIGKILL) while a loop of manifest GETs runs through
#     nginx: none of them fails, nginx logs a request retried on B (proxy_next_upstream); the
#     session is finished on B; pull and push through nginx still work, same digests.
# Usage: lb.sh PATH/TO/ocireg
. "$(dirname "$0")/../e2e/lib.sh" "$@"
e2e_need nginx openssl skopeo curl jq python3
CONF_EXAMPLE=$(cd "$(dirname "$0")/../../deploy/nginx" && pwd)/ocireg.conf
NGINX_BIN=$(command -v nginx)

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- certificates -----------------------------------------------------------------------------
PKI=$E2E_DIR/pki
mkdir -p "$PKI" "$E2E_DIR/certs.d"
log "+ openssl: CA and server certificate for 127.0.0.1"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ocireg test CA" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$PKI/ext.cnf"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -extfile "$PKI/ext.cnf" -out "$PKI/server.crt" 2>/dev/null
openssl verify -CAfile "$PKI/ca.crt" "$PKI/server.crt" >/dev/null
cp "$PKI/ca.crt" "$E2E_DIR/certs.d/ca.crt"

# ---- two backends on one root -----------------------------------------------------------------
NPORT=$(free_port)
ROOT=$E2E_DIR/root
mkdir -p "$ROOT"
declare -A BPID BPORT
start_backend() { # start_backend NAME
    local n=$1 deadline
    rm -f "$E2E_DIR/$n.port"
    "$OCIREG" serve --root "$ROOT" --listen 127.0.0.1:0 --port-file "$E2E_DIR/$n.port" \
        --admin-listen 127.0.0.1:0 --admin-port-file "$E2E_DIR/$n.admin-port" \
        --auth token --public-url "https://127.0.0.1:$NPORT" --log-level "${E2E_LOG_LEVEL:-warn}" \
        </dev/null >>"$E2E_DIR/$n.log" 2>&1 &
    BPID[$n]=$!
    on_exit "e2e_stop_pid ${BPID[$n]} backend-$n"
    show_on_failure "$E2E_DIR/$n.log" "log of backend $n" 'Request malformed'
    deadline=$((SECONDS + 20))
    until [ -s "$E2E_DIR/$n.port" ]; do
        kill -0 "${BPID[$n]}" 2>/dev/null || fail "backend $n exited"
        [ "$SECONDS" -lt "$deadline" ] || fail "no port file from backend $n"
        sleep 0.05
    done
    BPORT[$n]=$(cat "$E2E_DIR/$n.port")
    log "backend $n: ocireg (pid ${BPID[$n]}) on 127.0.0.1:${BPORT[$n]}"
}
start_backend A
PASS=lb-test-$RANDOM$RANDOM
echo "$PASS" | run "$OCIREG" user add deployer --root "$ROOT" >/dev/null
run "$OCIREG" grant deployer 'lb/*' pull,push --root "$ROOT" >/dev/null
start_backend B
A=127.0.0.1:${BPORT[A]}
B=127.0.0.1:${BPORT[B]}

# ---- nginx with the example configuration ----------------------------------------------------
NG=$E2E_DIR/nginx
mkdir -p "$NG/tmp" "$NG/logs"
sed -e "s#server 127\.0\.0\.1:5000 #server $A #" \
    -e "s#server 127\.0\.0\.1:5002 #server $B #" \
    -e "s#listen 443 ssl;#listen 127.0.0.1:$NPORT ssl;#" \
    -e "s#/etc/ssl/ocireg/fullchain\.pem#$PKI/server.crt#" \
    -e "s#/etc/ssl/ocireg/privkey\.pem#$PKI/server.key#" \
    "$CONF_EXAMPLE" >"$NG/ocireg.conf"
for want in "server $A " "server $B " "listen 127.0.0.1:$NPORT ssl;" "ssl_certificate     $PKI/server.crt;" \
    "ssl_certificate_key $PKI/server.key;"; do
    grep -qF "$want" "$NG/ocireg.conf" || fail "the example nginx configuration has no line to become '$want'"
done
for directive in 'proxy_request_buffering off;' 'client_max_body_size 0;' 'proxy_http_version 1.1;' \
    'proxy_next_upstream error' 'proxy_set_header Host' 'proxy_set_header X-Forwarded-For' \
    'proxy_set_header X-Forwarded-Proto'; do
    grep -qF "$directive" "$CONF_EXAMPLE" || fail "deploy/nginx/ocireg.conf lacks '$directive'"
done
cat >"$NG/nginx.conf" <<EOF
# the test's main configuration around deploy/nginx/ocireg.conf
user root; # (workers of a root master are 'nobody' otherwise, shut out of the test's directory)
worker_processes 1;
pid $NG/nginx.pid;
error_log $NG/logs/error.log info;
events { worker_connections 512; }
http {
    log_format lb '\$request_method \$uri \$status upstream=[\$upstream_addr] upstream_status=[\$upstream_status]';
    access_log $NG/logs/access.log lb;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    include $NG/ocireg.conf;
}
EOF
run "$NGINX_BIN" -t -q -p "$NG/" -c "$NG/nginx.conf" -g 'daemon off;'
"$NGINX_BIN" -p "$NG/" -c "$NG/nginx.conf" -g 'daemon off;' </dev/null >"$NG/logs/stdout.log" 2>&1 &
NGINX_PID=$!
on_exit "e2e_stop_pid $NGINX_PID nginx"
show_on_failure "$NG/logs/error.log" "nginx error log" '\[(info|notice)\]'
show_on_failure "$NG/logs/access.log" "nginx access log"
NG_URL=https://127.0.0.1:$NPORT
deadline=$((SECONDS + 20))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" "$NG_URL/v2/")" = 401 ]; do
    kill -0 "$NGINX_PID" 2>/dev/null || fail "nginx exited: $(cat "$NG/logs/stdout.log")"
    [ "$SECONDS" -lt "$deadline" ] || fail "nginx not answering on $NG_URL within 20s"
    sleep 0.1
done
log "nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///') (pid $NGINX_PID) on $NG_URL, upstream $A $B"
curl -s -D "$E2E_DIR/challenge.hdr" -o /dev/null --cacert "$PKI/ca.crt" "$NG_URL/v2/"
expect_eq "token realm through nginx" \
    "$(http_header "$E2E_DIR/challenge.hdr" WWW-Authenticate | sed 's/^Bearer realm="\([^"]*\)".*/\1/')" \
    "$NG_URL/auth/token"

# ---- a chunked upload spread over both backends (called directly) ---------------------------
token() { # token BASEURL SCOPE [CURL ARGS]: a bearer token from BASEURL/auth/token
    local base=$1 scope=$2
    shift 2
    curl -sf "$@" -u "deployer:$PASS" "$base/auth/token?service=ocireg&scope=$scope" | jq -r .token
}
TOK=$(token "http://$A" "repository:lb/chunked:pull,push")
case $TOK in '' | null) fail "no token from backend A" ;; esac
AUTH=(-H "Authorization: Bearer $TOK")
hcurl() { # hcurl METHOD URL [ARGS]: status code; headers in $E2E_DIR/h.hdr
    local m=$1 u=$2
    shift 2
    curl -s -o "$E2E_DIR/h.body" -D "$E2E_DIR/h.hdr" -w '%{http_code}' --max-time 60 -X "$m" \
        "${AUTH[@]}" "$@" "$u"
}
patch_chunk() { # patch_chunk BACKEND LOCATION FILE OFFSET: PATCH with Content-Range; 202
    local size end code
    size=$(size_of "$3")
    end=$(($4 + size - 1))
    code=$(hcurl PATCH "http://$1$2" -H 'Content-Type: application/octet-stream' \
        -H "Content-Range: $4-$end" --data-binary "@$3")
    [ "$code" = 202 ] || fail "PATCH $4-$end on $1 answered $code: $(cat "$E2E_DIR/h.body")"
    expect_eq "Range after the PATCH of $4-$end on $1" "$(http_header "$E2E_DIR/h.hdr" Range)" "0-$end"
}

head -c 3145728 /dev/urandom >"$E2E_DIR/blob"
split -b 786432 -d "$E2E_DIR/blob" "$E2E_DIR/chunk." # chunk.00 .. chunk.03, 768 KiB each
BLOB=$(digest_of "$E2E_DIR/blob")
code=$(hcurl POST "http://$A/v2/lb/chunked/blobs/uploads/")
[ "$code" = 202 ] || fail "POST on A answered $code"
LOC=$(http_header "$E2E_DIR/h.hdr" Location)
case $LOC in /v2/*) ;; *) fail "upload Location '$LOC' is not a path (a proxy would have to rewrite it)" ;; esac
log "session $LOC opened on A"
patch_chunk "$B" "$LOC" "$E2E_DIR/chunk.00" 0
code=$(hcurl GET "http://$A$LOC")
expect_eq "upload status on A after a PATCH on B" "$code $(http_header "$E2E_DIR/h.hdr" Range)" "204 0-786431"
patch_chunk "$A" "$LOC" "$E2E_DIR/chunk.01" 786432
patch_chunk "$B" "$LOC" "$E2E_DIR/chunk.02" 1572864
case $LOC in *\?*) sep='&' ;; *) sep='?' ;; esac
code=$(hcurl PUT "http://$A$LOC${sep}digest=$BLOB" -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: 2359296-3145727" --data-binary "@$E2E_DIR/chunk.03")
[ "$code" = 201 ] || fail "closing PUT on A answered $code: $(cat "$E2E_DIR/h.body")"
expect_eq "Docker-Content-Digest of the closing PUT" "$(http_header "$E2E_DIR/h.hdr" Docker-Content-Digest)" "$BLOB"
for be in "$A" "$B"; do
    curl -sf "${AUTH[@]}" -o "$E2E_DIR/got" "http://$be/v2/lb/chunked/blobs/$BLOB" ||
        fail "GET of the blob from $be"
    expect_eq "blob assembled from chunks on both backends, served by $be" "$(digest_of "$E2E_DIR/got")" "$BLOB"
done
TOKB=$(token "http://$B" "repository:lb/chunked:pull")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKB" -I \
    "http://$A/v2/lb/chunked/blobs/$BLOB")
expect_eq "A accepts a token issued by B" "$code" 200

# ---- push and pull through nginx, both backends up ---------------------------------------------
REG=127.0.0.1:$NPORT
SK_TLS=(--dest-cert-dir "$E2E_DIR/certs.d" --dest-creds "deployer:$PASS")
SK_SRC=(--src-cert-dir "$E2E_DIR/certs.d" --src-creds "deployer:$PASS")
layout_init "$E2E_DIR/app"
MAKE_IMAGE_BIG_MB=8 make_image "$E2E_DIR/app" app amd64 1.0
PUSHED=$IMG_MANIFEST
sk copy --quiet "${SK_TLS[@]}" oci:"$E2E_DIR/app":1.0 "docker://$REG/lb/app:1.0"
expect_eq "manifest digest through nginx" \
    "$(sk inspect --cert-dir "$E2E_DIR/certs.d" --creds "deployer:$PASS" --raw "docker://$REG/lb/app:1.0" | digest_of)" \
    "$PUSHED"
for be in "$A" "$B"; do
    grep -q "upstream=\[$be\]" "$NG/logs/access.log" || fail "nginx sent nothing to $be"
done
log "requests through nginx so far: A $(grep -c "upstream=\[$A\]" "$NG/logs/access.log"), B $(grep -c "upstream=\[$B\]" "$NG/logs/access.log")"
# (round robin: skopeo's POST, PATCH and PUT of one upload usually land on different backends)
CROSSED=$(awk '$2 ~ /\/blobs\/uploads\/./ { split($2, p, "/"); id = p[length(p)]; be[id] = be[id] " " $4 }
    END { for (id in be) { split(be[id], b, " "); for (i in b) if (b[i] != b[1]) { n++; break } } print n + 0 }' \
    "$NG/logs/access.log")
log "upload sessions of the push whose requests reached both backends through nginx: $CROSSED"
sk copy --quiet "${SK_SRC[@]}" "docker://$REG/lb/app:1.0" oci:"$E2E_DIR/pull1":1.0
expect_eq "pull through nginx (both backends)" "$(layout_ref_digest "$E2E_DIR/pull1" 1.0)" "$PUSHED"
verify_layout_blobs "$E2E_DIR/pull1"

# ---- SIGKILL of backend A under load ------------------------------------------------------------
# An upload session begun on A, to be finished on B once A is gone.
code=$(hcurl POST "http://$A/v2/lb/chunked/blobs/uploads/")
[ "$code" = 202 ] || fail "POST on A answered $code"
LOC2=$(http_header "$E2E_DIR/h.hdr" Location)
patch_chunk "$A" "$LOC2" "$E2E_DIR/chunk.00" 0
patch_chunk "$A" "$LOC2" "$E2E_DIR/chunk.01" 786432

PTOK=$(token "$NG_URL" "repository:lb/app:pull" --cacert "$PKI/ca.crt")
case $PTOK in '' | null) fail "no token through nginx" ;; esac
N=120
(
    fails=0
    for ((i = 1; i <= N; i++)); do
        [ "$i" != 40 ] || touch "$E2E_DIR/loop.half"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$PKI/ca.crt" \
            -H "Authorization: Bearer $PTOK" \
            -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
            "$NG_URL/v2/lb/app/manifests/1.0") || code="curl-error-$?"
        if [ "$code" != 200 ]; then
            fails=$((fails + 1))
            echo "request $i: $code" >>"$E2E_DIR/loop.failures"
        fi
    done
    echo "$fails" >"$E2E_DIR/loop.result"
) &
LOOP_PID=$!
deadline=$((SECONDS + 60))
until [ -e "$E2E_DIR/loop.half" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the request loop made no progress"
    sleep 0.02
done
log "+ kill -KILL ${BPID[A]} (backend A) during the request loop"
kill -KILL "${BPID[A]}"
wait "${BPID[A]}" 2>/dev/null || true
wait "$LOOP_PID"
expect_eq "manifest GETs through nginx that failed (of $N, A killed after 40)" \
    "$(cat "$E2E_DIR/loop.result")" 0
grep -E "^GET /v2/lb/app/manifests/1.0 200 upstream=\[$A, $B\]" "$NG/logs/access.log" >"$E2E_DIR/retried" ||
    fail "nginx logged no request retried on B after A failed"
log "ok: nginx retried $(wc -l <"$E2E_DIR/retried") request(s) on B: $(head -n 1 "$E2E_DIR/retried")"

# The session begun on A, finished on B.
patch_chunk "$B" "$LOC2" "$E2E_DIR/chunk.02" 1572864
code=$(hcurl PUT "http://$B$LOC2${sep}digest=$BLOB" -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: 2359296-3145727" --data-binary "@$E2E_DIR/chunk.03")
[ "$code" = 201 ] || fail "closing PUT on B of the session begun on the killed A answered $code: $(cat "$E2E_DIR/h.body")"
log "ok: an upload begun on A, killed, finished on B"

# Pull (and push) through nginx with A dead.
sk copy --quiet "${SK_SRC[@]}" "docker://$REG/lb/app:1.0" oci:"$E2E_DIR/pull2":1.0
expect_eq "pull through nginx after A was killed" "$(layout_ref_digest "$E2E_DIR/pull2" 1.0)" "$PUSHED"
verify_layout_blobs "$E2E_DIR/pull2"
expect_eq "blobs of the two pulls" "$(layout_blobs "$E2E_DIR/pull2" | xargs)" "$(layout_blobs "$E2E_DIR/pull1" | xargs)"
layout_init "$E2E_DIR/app2"
make_image "$E2E_DIR/app2" app2 amd64 2.0
sk copy --quiet "${SK_TLS[@]}" oci:"$E2E_DIR/app2":2.0 "docker://$REG/lb/app:2.0"
expect_eq "push through nginx after A was killed" \
    "$(sk inspect --cert-dir "$E2E_DIR/certs.d" --creds "deployer:$PASS" --raw "docker://$REG/lb/app:2.0" | digest_of)" \
    "$IMG_MANIFEST"

# A restarted on the same root serves what was pushed while it was dead.
start_backend A
TOK=$(token "http://${A%:*}:${BPORT[A]}" "repository:lb/app:pull")
expect_eq "the restarted A serves the tag pushed through B" \
    "$(curl -sf -H "Authorization: Bearer $TOK" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://127.0.0.1:${BPORT[A]}/v2/lb/app/manifests/2.0" | digest_of)" "$IMG_MANIFEST"

for n in A B; do
    kill -TERM "${BPID[$n]}"
    rc=0
    wait "${BPID[$n]}" || rc=$?
    expect_eq "exit status of backend $n after SIGTERM" "$rc" 0
done
kill -QUIT "$NGINX_PID"
wait "$NGINX_PID" || fail "nginx exited with status $?"
finish
