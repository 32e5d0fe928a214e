#!/bin/sh
# Runs the official OCI distribution-spec conformance suite against a running registry.
#   OCI_CONFORMANCE_BIN=/path/to/conformance conformance/run-official.sh http://127.0.0.1:5000
# Every data set the suite has (sha512, referrers, subject, ...) with OCI_VERSION=dev by
# default (OCI_VERSION=1.1 for the stable checks). Prints the tally; exit status is the
# suite's (0 when every test passed). Results go to $OCI_RESULTS_DIR (default ./results).
set -eu
if [ $# -ne 1 ]; then
    echo "usage: OCI_CONFORMANCE_BIN=BIN $0 http://HOST:PORT" >&2
    exit 2
fi
: "${OCI_CONFORMANCE_BIN:?set OCI_CONFORMANCE_BIN to the conformance binary}"
url=$1
case "$url" in
    https://*) tls=enabled ;;
    http://*) tls=disabled ;;
    *) echo "$0: URL must start with http:// or https://" >&2; exit 2 ;;
esac
hostport=${url#*://}
hostport=${hostport%%/*}
results=${OCI_RESULTS_DIR:-./results}
mkdir -p "$results"
out="$results/stdout.txt"
set +e
OCI_REGISTRY="$hostport" OCI_TLS="$tls" OCI_VERSION="${OCI_VERSION:-dev}" \
    OCI_REPO1="${OCI_REPO1:-conformance/repo1}" OCI_REPO2="${OCI_REPO2:-conformance/repo2}" \
    OCI_RESULTS_DIR="$results" "$OCI_CONFORMANCE_BIN" >"$out" 2>"$results/stderr.txt"
rc=$?
set -e
sed -n '/OCI Conformance Result/,/Total/p' "$out"
grep 'failed test' "$results/stderr.txt" | head -50 || true
exit $rc
