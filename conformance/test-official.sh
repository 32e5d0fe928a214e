#!/bin/sh
# ctest wrapper: starts ocireg on a free port with fresh storage and runs the official suite
# against it, for OCI_VERSION=1.1 and dev. Skipped (exit 77) when OCI_CONFORMANCE_BIN is unset.
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${OCI_CONFORMANCE_BIN:-}" ]; then
    echo "SKIP: OCI_CONFORMANCE_BIN is not set (see conformance/README.md)"
    exit 77
fi
dir=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
"$bin" serve --root "$dir/root" --listen 127.0.0.1:0 --port-file "$dir/port" --log-level warn &
pid=$!
tries=0
while [ ! -s "$dir/port" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "server exited"; exit 1; }
    tries=$((tries + 1))
    [ $tries -lt 3000 ] || { echo "server did not start"; exit 1; }
    sleep 0.01
done
port=$(cat "$dir/port")
rc=0
for v in 1.1 dev; do
    echo "== OCI_VERSION=$v"
    OCI_VERSION=$v OCI_RESULTS_DIR="$dir/results-$v" OCI_REPO1="conformance/v$v" \
        OCI_REPO2="conformance/v$v-mount" "$here/run-official.sh" "http://127.0.0.1:$port" || rc=1
done
exit $rc
