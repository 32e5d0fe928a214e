#!/bin/bash
# Export, import and backup: two repositories (an image and a two-platform index) exported
# from a running registry to a zstd OCI-layout archive that skopeo reads after `zstd -d`,
# imported into a fresh registry where every image pulls with identical digests, imported a
# second time with no change, a damaged archive refused with nothing stored, and a hot backup
# served as it was.
. "$(dirname "$0")/lib.sh" "$@"

e2e_need skopeo jq tar gzip sha256sum curl zstd python3
compat "ocireg export/import + skopeo" "$(skopeo --version | cut -d" " -f3)" \
    "oci-archive read by skopeo, import into a fresh registry, backup"

SRC="$E2E_DIR/src"
layout_init "$SRC"
make_image "$SRC" app amd64 v1
make_multiarch "$SRC" multi v1m
start_server
sk copy --quiet --dest-tls-verify=false "oci:$SRC:v1" "docker://$REG/e2e/one:v1"
sk copy --quiet --all --dest-tls-verify=false "oci:$SRC:v1m" "docker://$REG/e2e/two:multi"
sk copy --quiet --dest-tls-verify=false "oci:$SRC:v1" "docker://$REG/e2e/two:app"
admin() { "$OCIREG" "$@" --root "$E2E_DIR/root"; }
digest_in() { # digest_in REPO:TAG: the manifest digest the running registry serves
    curl -s -o /dev/null -D - -H 'Accept: application/vnd.oci.image.index.v1+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REG/v2/${1%%:*}/manifests/${1##*:}" | tr -d '\r' |
        awk 'tolower($1) == "docker-content-digest:" {print $2}'
}
want_one=$(digest_in e2e/one:v1)
want_multi=$(digest_in e2e/two:multi)
want_app=$(digest_in e2e/two:app)
[ -n "$want_one" ] && [ -n "$want_multi" ] || fail "pushes did not land"

# ---- export, online
admin export e2e/one e2e/two -o "$E2E_DIR/arch.tar.zst" --threads 2
zstd -q -d "$E2E_DIR/arch.tar.zst" -o "$E2E_DIR/arch.tar"
sk copy --quiet "oci-archive:$E2E_DIR/arch.tar:e2e/one:v1" "oci:$E2E_DIR/out:v1"
expect_eq "skopeo reads the exported image" "$(layout_ref_digest "$E2E_DIR/out" v1)" "$want_one"
sk copy --quiet --all "oci-archive:$E2E_DIR/arch.tar:e2e/two:multi" "oci:$E2E_DIR/out:multi"
expect_eq "skopeo reads the exported index" "$(layout_ref_digest "$E2E_DIR/out" multi)" \
    "$want_multi"

# ---- a hot backup while the server runs
admin backup "$E2E_DIR/backup"
stop_server

# ---- import into a fresh registry, twice
mv "$E2E_DIR/root" "$E2E_DIR/root.orig"
mkdir "$E2E_DIR/root"
admin import "$E2E_DIR/arch.tar.zst"
admin import "$E2E_DIR/arch.tar.zst"
admin fsck >/dev/null || fail "fsck after import"
start_server
expect_eq "e2e/one:v1 after import" "$(digest_in e2e/one:v1)" "$want_one"
expect_eq "e2e/two:multi after import" "$(digest_in e2e/two:multi)" "$want_multi"
expect_eq "e2e/two:app after import" "$(digest_in e2e/two:app)" "$want_app"
expect_eq "tags of e2e/two after two imports" \
    "$(curl -s "http://$REG/v2/e2e/two/tags/list" | jq -c .tags)" '["app","multi"]'
sk copy --quiet --all --src-tls-verify=false "docker://$REG/e2e/two:multi" "oci:$E2E_DIR/back:m"
expect_eq "pulled index digest" "$(layout_ref_digest "$E2E_DIR/back" m)" "$want_multi"
verify_layout_blobs "$E2E_DIR/back"
stop_server

# ---- a damaged archive: one blob's content changed under its digest name
python3 - "$E2E_DIR/arch.tar" "$E2E_DIR/bad.tar" <<'PY'
import io, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
    done = False
    for m in tin.getmembers():
        data = tin.extractfile(m).read() if m.isfile() else None
        if not done and m.name.startswith("blobs/") and m.size > 100:
            data = bytearray(data)
            data[50] ^= 0x01
            data = bytes(data)
            done = True
        tout.addfile(m, io.BytesIO(data) if data is not None else None)
PY
zstd -q "$E2E_DIR/bad.tar" -o "$E2E_DIR/bad.tar.zst"
mkdir "$E2E_DIR/fresh"
if "$OCIREG" import "$E2E_DIR/bad.tar.zst" --root "$E2E_DIR/fresh" 2>"$E2E_DIR/bad.err"; then
    fail "a damaged archive was imported"
fi
grep -q "does not match its digest" "$E2E_DIR/bad.err" || fail "unclear refusal: $(cat "$E2E_DIR/bad.err")"
expect_eq "blobs stored from a refused archive" "$(find "$E2E_DIR/fresh/blobs" -type f | wc -l)" 0
expect_eq "upload files left by a refused archive" "$(find "$E2E_DIR/fresh/uploads" -type f | wc -l)" 0
"$OCIREG" usage --json --root "$E2E_DIR/fresh" | jq -e '.repositories == []' >/dev/null ||
    fail "a refused archive left repositories"
# truncated: refused too
head -c $(($(stat -c %s "$E2E_DIR/arch.tar.zst") / 2)) "$E2E_DIR/arch.tar.zst" >"$E2E_DIR/short.tar.zst"
if "$OCIREG" import "$E2E_DIR/short.tar.zst" --root "$E2E_DIR/fresh" 2>/dev/null; then
    fail "a truncated archive was imported"
fi

# ---- the backup serves what the registry held
rm -rf "$E2E_DIR/root"
mv "$E2E_DIR/backup" "$E2E_DIR/root"
start_server
expect_eq "e2e/one:v1 from the backup" "$(digest_in e2e/one:v1)" "$want_one"
expect_eq "e2e/two:multi from the backup" "$(digest_in e2e/two:multi)" "$want_multi"
"$OCIREG" fsck --root "$E2E_DIR/root" >/dev/null || fail "fsck of the backup"
finish
