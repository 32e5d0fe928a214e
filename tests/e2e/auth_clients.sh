#!/bin/bash
# Access control with real clients: podman login + push + pull in token mode and in basic
# mode, skopeo with --creds, a user without push denied on push but able to pull, pulls of an
# existing image refused for lack of permission (anonymous, and a user without pull on it:
# 401/403 and "denied"/"unauthorized" from the client, never "not found"), a login password
# from `ocireg login-password`, and skopeo over native TLS with --cert-dir.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq tar gzip sha256sum curl podman openssl
compat "podman + skopeo" "$(podman --version | cut -d" " -f3)" "login (token, basic), push/pull with credentials, denied push and pull, TLS"

SRC="$E2E_DIR/src"
layout_init "$SRC"
make_image "$SRC" app amd64 v1

admin() { "$OCIREG" "$@" --root "$E2E_DIR/root"; }
ALICE_PW=alice-e2e-password
# pm_login STORE USER PASSWORD: podman login with the password on standard input
pm_login() { printf '%s\n' "$3" | pm "$1" login --tls-verify=false -u "$2" --password-stdin "$REG"; }

mkdir -p "$E2E_DIR/root"
printf '%s\n' "$ALICE_PW" | admin user add alice
BOB_PW=$(admin user add bob </dev/null)
admin grant alice 'team/*' pull,push
admin grant alice 'private/*' pull,push
admin grant bob 'team/*' pull

# denied WHAT FILE: FILE, the output of a client command that failed, says the registry refused
# for lack of permission; a "not found" would mean the check of access never ran (or ran after
# a lookup), and an image that exists would look absent.
denied() {
    if ! grep -Eqi 'denied|unauthorized|authentication required' "$2" ||
        grep -Eqi 'not found|manifest unknown|name unknown|blob unknown|\b404\b' "$2"; then
        fail "$1: refused for another reason than permission: $(cat "$2")"
    fi
    log "ok: $1: refused for lack of permission"
}
# answer MODE USER:PASSWORD REPO: "status error-code" of a manifest GET of REPO:v1 as USER
# (token mode: with the token the built-in endpoint gives USER for a pull of REPO), and the
# WWW-Authenticate error when there is one.
answer() {
    local mode=$1 auth=(-u "$2") tok code
    if [ "$mode" = token ]; then
        tok=$(curl -sf --max-time 30 -u "$2" \
            "http://$REG/auth/token?service=ocireg&scope=repository:$3:pull" | jq -er .token) || return 1
        auth=(-H "Authorization: Bearer $tok")
    fi
    code=$(curl -s --max-time 30 -o "$E2E_DIR/answer.json" -D "$E2E_DIR/answer.hdr" \
        -w '%{http_code}' "${auth[@]}" "http://$REG/v2/$3/manifests/v1") || return 1
    printf '%s %s%s\n' "$code" "$(jq -r '.errors[0].code' "$E2E_DIR/answer.json")" \
        "$(http_header "$E2E_DIR/answer.hdr" WWW-Authenticate | grep -o ',error="[a-z_]*"' || true)"
}

podman_init
for mode in token basic; do
    log "---- --auth $mode"
    start_server --auth "$mode"
    sk copy --quiet --dest-tls-verify=false --dest-creds "alice:$ALICE_PW" \
        "oci:$SRC:v1" "docker://$REG/team/app:v1"
    sk copy --quiet --dest-tls-verify=false --dest-creds "alice:$ALICE_PW" \
        "oci:$SRC:v1" "docker://$REG/private/app:v1"
    # nothing without credentials (the images exist: pushed just above)
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/team/app/tags/list")
    expect_eq "$mode: anonymous tags list" "$code" 401
    run_fails sk inspect --tls-verify=false "docker://$REG/team/app:v1"
    denied "$mode: anonymous skopeo inspect of team/app:v1" "$E2E_DIR/last.out"

    # bob has no grant on private/*: its existing image is refused to him as unauthorized
    # (token: a token without the pull, 401 insufficient_scope; basic: 403 DENIED), the very
    # answer he gets for a repository that does not exist
    if [ "$mode" = token ]; then
        want='401 UNAUTHORIZED,error="insufficient_scope"'
    else
        want='403 DENIED'
    fi
    expect_out "$mode: bob's GET of private/app:v1" "$want" answer "$mode" "bob:$BOB_PW" private/app
    expect_out "$mode: bob's GET of private/none:v1" "$want" answer "$mode" "bob:$BOB_PW" private/none
    expect_out "$mode: alice's GET of private/app:v1" "200 null" answer "$mode" "alice:$ALICE_PW" private/app
    run_fails sk inspect --tls-verify=false --creds "bob:$BOB_PW" "docker://$REG/private/app:v1"
    denied "$mode: bob's skopeo inspect of private/app:v1" "$E2E_DIR/last.out"
    run_fails sk copy --quiet --dest-tls-verify=false --dest-creds "alice:wrong" \
        "oci:$SRC:v1" "docker://$REG/team/app:v2"

    pm_login a alice "$ALICE_PW"
    pm a pull --quiet --tls-verify=false "$REG/team/app:v1" >/dev/null
    pm a tag "$REG/team/app:v1" "$REG/team/copy:$mode"
    pm a push --quiet --tls-verify=false "$REG/team/copy:$mode"
    pm a logout "$REG"

    # bob: pull yes, push no
    pm_login b bob "$BOB_PW"
    pm b pull --quiet --tls-verify=false "$REG/team/copy:$mode" >/dev/null
    run_fails pm b pull --quiet --tls-verify=false "$REG/private/app:v1"
    denied "$mode: bob's podman pull of private/app:v1" "$E2E_DIR/last.out"
    pm b tag "$REG/team/copy:$mode" "$REG/team/bob:$mode"
    if pm b push --quiet --tls-verify=false "$REG/team/bob:$mode" >"$E2E_DIR/bobpush" 2>&1; then
        fail "$mode: bob could push without a push grant"
    fi
    grep -Eqi 'denied|unauthorized|authentication required' "$E2E_DIR/bobpush" ||
        fail "$mode: bob's push failed for another reason: $(cat "$E2E_DIR/bobpush")"
    pm b logout "$REG"

    # a login password works as alice's password, until revoked
    LOGIN_PW=$(admin login-password alice --ttl 1h)
    pm_login a alice "$LOGIN_PW"
    pm a pull --quiet --tls-verify=false "$REG/team/copy:$mode" >/dev/null
    pm a logout "$REG"
    admin user revoke-tokens alice
    if pm_login a alice "$LOGIN_PW" >/dev/null 2>&1; then
        fail "$mode: a revoked login password still logs in"
    fi
    stop_server
done

# ---- native TLS: skopeo verifies the server with the test's own CA file
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$E2E_DIR/key.pem" -out "$E2E_DIR/cert.pem" -subj /CN=127.0.0.1 \
    -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
mkdir -p "$E2E_DIR/certs"
cp "$E2E_DIR/cert.pem" "$E2E_DIR/certs/ca.crt"
start_server --auth token --tls-cert "$E2E_DIR/cert.pem" --tls-key "$E2E_DIR/key.pem"
sk copy --quiet --dest-cert-dir "$E2E_DIR/certs" --dest-creds "alice:$ALICE_PW" \
    "oci:$SRC:v1" "docker://$REG/team/tls:v1"
sk copy --quiet --src-cert-dir "$E2E_DIR/certs" --src-creds "bob:$BOB_PW" \
    "docker://$REG/team/tls:v1" "oci:$E2E_DIR/out:v1"
expect_eq "manifest digest over TLS" "$(layout_ref_digest "$E2E_DIR/out" v1)" \
    "$(layout_ref_digest "$SRC" v1)"
# without the CA, the certificate is refused
run_fails sk inspect --tls-verify=true --creds "bob:$BOB_PW" "docker://$REG/team/tls:v1"
finish
