#!/usr/bin/env bash
# The orchestrator examples (deploy/kubernetes, deploy/ecs, deploy/compose): parsed, checked for
# structure and flags, and their `ocireg serve` arguments, probes and health check run against
# the real binary (tests/deploy/orchestrators.py says what exactly).
# Usage: orchestrators.sh PATH/TO/ocireg
. "$(dirname "$0")/../e2e/lib.sh" "$@"
e2e_need cc
HERE=$(cd "$(dirname "$0")" && pwd)
DEPLOY=$(cd "$HERE/../../deploy" && pwd)

# A python3 with PyYAML (Debian: python3-yaml): the one in PATH, else the system's.
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml, json' 2>/dev/null; then
        PY=$p
        break
    fi
done
[ -n "$PY" ] || skip "no python3 with the yaml module (apt-get install -y python3-yaml)"
log "$("$PY" --version), PyYAML $("$PY" -c 'import yaml; print(yaml.__version__)')"

# The image's health check probe, built as build-image.sh builds it.
run cc -O2 -Wall -Wextra -Werror -o "$E2E_DIR/ocireg-healthcheck" "$DEPLOY/image/healthcheck.c"

run "$PY" "$HERE/orchestrators.py" "$OCIREG" "$E2E_DIR/ocireg-healthcheck" "$DEPLOY" "$E2E_DIR"
E2E_FINISHED=1
log PASS
