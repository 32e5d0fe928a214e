#!/bin/bash
# `ocireg import` against hostile and large archives, crafted here (python3's tarfile + zstd):
#   nested  an archive of a few KiB whose indexes list their child 16 times, 8 deep: the work
#           must grow with the distinct content, not as 16^8 (the ctest TIMEOUT is the bound:
#           the import itself takes milliseconds, the unfixed one hours); and one whose index,
#           reached a second time deeper down, goes past the nesting limit: refused
#   bomb    a few KiB of zstd that unpack to hundreds of MiB of zeros under the name of a small
#           blob: refused before anything is written (run under a file-size limit that a staged
#           copy of it would break), with --max-size and --reserve, while a server keeps serving
#           the same root, which holds no new file afterwards; from a file, an entry no
#           descriptor declares is not staged at all
#   fds     600 blobs imported, exported and imported again under `ulimit -n 128`; with too few
#           descriptors to work at all, the error says so
#   pax     every entry's size in a pax record (the ustar size field then 0, as pax writers do
#           for blobs of 8 GiB and more): imported by that size, every byte as generated
# Usage: archive_import.sh OCIREG CASE
. "$(dirname "$0")/lib.sh" "$@"
CASE=${2:?usage: $0 OCIREG nested|bomb|fds|pax}

e2e_need python3 zstd curl jq prlimit

admin() { "$OCIREG" "$@" --root "$E2E_DIR/root"; }
mkdir -p "$E2E_DIR/root"

# craft KIND OUT.tar: writes an OCI layout tar made by python (see the KIND cases below); OUT
# "-" is standard output
craft() {
    python3 - "$@" <<'PY'
import hashlib, io, json, os, random, sys, tarfile

kind, out = sys.argv[1], sys.argv[2]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF = "org.opencontainers.image.ref.name"
# kind pax: every entry's size in a pax record; python's tarfile then writes 0 in the ustar
# size field, so only a reader of the record finds the data's end
pax_size = kind == "pax"
if out == "-":
    tar = tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT)
else:
    tar = tarfile.open(out, "w", format=tarfile.PAX_FORMAT)
entries = set()

def entry(name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    if pax_size:
        ti.pax_headers = {"size": str(len(data)), "comment": "size=1 path=decoy"}
    tar.addfile(ti, io.BytesIO(data))

def add(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    if d not in entries:
        entries.add(d)
        entry("blobs/sha256/" + d[7:], data)
    return d

def desc(mt, data, d):
    return {"mediaType": mt, "digest": d, "size": len(data)}

def image(layers, name):
    """an image manifest: its config and layers added first (children first)"""
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"n": name}},
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": desc("application/vnd.oci.image.config.v1+json", cfg, add(cfg)),
         "layers": [desc("application/vnd.oci.image.layer.v1.tar", l, add(l)) for l in layers]}
    data = json.dumps(m).encode()
    return desc(OCI_MANIFEST, data, add(data))

def finish(tops):
    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": tops}
    for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                       ("index.json", json.dumps(idx).encode())):
        entry(name, data)
    tar.close()

if kind == "nested":
    # depth 8, each index listing its child 16 times: 16^8 paths through 9 manifests
    child = image([b"a small layer\n"], "leaf")
    for level in range(8):
        data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [child] * 16}).encode()
        child = desc(OCI_INDEX, data, add(data))
    child["annotations"] = {REF: "nest/deep:v1"}
    finish([child])
elif kind == "deeper":
    # one index reached twice: at the top of deep/a, and 8 indexes down in deep/b, where its
    # child lies one level past the limit of 8 nested indexes
    leaf = image([b"a small layer\n"], "leaf")
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [leaf]}).encode()
    shallow = desc(OCI_INDEX, data, add(data))
    child = dict(shallow)
    for level in range(8):
        data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [child]}).encode()
        child = desc(OCI_INDEX, data, add(data))
    shallow["annotations"] = {REF: "deep/a:v1"}
    child["annotations"] = {REF: "deep/b:v1"}
    finish([shallow, child])
elif kind == "bomb":
    # the manifest names a 16-byte layer; the archive holds 300 MiB of zeros under that name,
    # ahead of the manifest (as ocireg export and skopeo order their blobs)
    small = b"a 16-byte layer\n"
    name = "blobs/sha256/" + hashlib.sha256(small).hexdigest()
    ti = tarfile.TarInfo(name)
    ti.size = 300 << 20
    zeros = open("/dev/zero", "rb")
    tar.addfile(ti, zeros)
    entries.add("sha256:" + hashlib.sha256(small).hexdigest())
    top = image([small], "bomb")
    top["annotations"] = {REF: "bomb/app:v1"}
    finish([top])
elif kind == "stray":
    # 300 MiB of zeros under a name no descriptor in the archive declares, beside a good image
    ti = tarfile.TarInfo("blobs/sha256/" + hashlib.sha256(b"nothing refers to it").hexdigest())
    ti.size = 300 << 20
    tar.addfile(ti, open("/dev/zero", "rb"))
    top = image([b"a stray layer\n"], "stray")
    top["annotations"] = {REF: "stray/app:v1"}
    finish([top])
elif kind == "many":
    # 30 images of 19 layers and a config each: 600 blobs (and 30 manifests), in 3 repositories
    rnd = random.Random(600)
    tops = []
    for i in range(30):
        layers = [rnd.randbytes(64 + rnd.randrange(200)) for _ in range(19)]
        top = image(layers, "img%d" % i)
        top["annotations"] = {REF: "many/r%d:t%d" % (i % 3, i)}
        tops.append(top)
    finish(tops)
elif kind == "pax":
    layers = [b"pax layer one\n" * 100, bytes(range(256)) * 37]
    for i, l in enumerate(layers):
        open(os.path.join(os.path.dirname(out), "layer%d" % i), "wb").write(l)
    top = image(layers, "pax")
    top["annotations"] = {REF: "pax/app:v1"}
    finish([top])
    # what a writer does past 8 GiB: the ustar size field 0 (or base-256), the size in the
    # record; here with small blobs, by rewriting each header that follows a pax header
    raw = bytearray(open(out, "rb").read())
    pos = 0
    while pos + 512 <= len(raw) and raw[pos:pos + 512] != bytes(512):
        size = int(bytes(raw[pos + 124:pos + 136]).rstrip(b"\0 ") or b"0", 8)
        nxt = pos + 512 + (size + 511) // 512 * 512
        if raw[pos + 156:pos + 157] == b"x":
            rec = bytes(raw[pos + 512:pos + 512 + size])
            real = int(rec.split(b" size=")[1].split(b"\n")[0])
            raw[nxt + 124:nxt + 136] = b"00000000000\0"
            raw[nxt + 148:nxt + 156] = b"        "
            raw[nxt + 148:nxt + 156] = b"%06o\0 " % sum(raw[nxt:nxt + 512])
            nxt = nxt + 512 + (real + 511) // 512 * 512
        pos = nxt
    open(out, "wb").write(raw)
else:
    sys.exit("unknown kind " + kind)
PY
}

# no_new_files WHAT: the root holds no upload file and no blob besides those listed in
# $E2E_DIR/blobs.before
no_new_files() {
    expect_eq "$1: upload files in the root" "$(find "$E2E_DIR/root/uploads" -type f | wc -l)" 0
    expect_eq "$1: blob files in the root" "$(find "$E2E_DIR/root/blobs" -type f | sort)" \
        "$(cat "$E2E_DIR/blobs.before")"
}

case $CASE in
nested)
    craft nested "$E2E_DIR/nested.tar"
    zstd -q -19 "$E2E_DIR/nested.tar" -o "$E2E_DIR/nested.tar.zst"
    log "archive: $(size_of "$E2E_DIR/nested.tar.zst") bytes"
    [ "$(size_of "$E2E_DIR/nested.tar.zst")" -lt 4096 ] || fail "the archive is not tiny"
    admin import "$E2E_DIR/nested.tar.zst" >"$E2E_DIR/out"
    grep -q "imported 1 images (9 manifests, 2 blobs" "$E2E_DIR/out" ||
        fail "import: $(cat "$E2E_DIR/out")"
    admin import "$E2E_DIR/nested.tar.zst" >/dev/null # again: nothing changes
    admin fsck >/dev/null || fail "fsck after import"
    # the depth limit holds on every path to a manifest, not only the first one checked: an
    # archive too deep on its second path is refused before anything is stored
    craft deeper "$E2E_DIR/deeper.tar"
    zstd -q --rm "$E2E_DIR/deeper.tar" -o "$E2E_DIR/deeper.tar.zst"
    rc=0
    admin import "$E2E_DIR/deeper.tar.zst" 2>"$E2E_DIR/err" || rc=$?
    expect_eq "exit status of an import nested too deep" "$rc" 1
    grep -q "import refused, nothing stored: .*nested too deep" "$E2E_DIR/err" ||
        fail "unclear refusal: $(cat "$E2E_DIR/err")"
    expect_eq "repositories after the refused import" \
        "$(admin usage --json | jq -c '[.repositories[].repository]')" '["nest/deep"]'
    start_server
    expect_eq "tags of nest/deep" "$(curl -sf "http://$REG/v2/nest/deep/tags/list" | jq -c .tags)" \
        '["v1"]'
    ;;

bomb)
    # a registry in use, serving an image, on the root the import goes to
    start_server
    printf 'a layer\n' >"$E2E_DIR/layer"
    printf '{}' >"$E2E_DIR/config"
    curl_push_blob keep/app "$E2E_DIR/layer"
    LAYER=$BLOB_DIGEST LAYER_SZ=$BLOB_SIZE
    curl_push_blob keep/app "$E2E_DIR/config"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
        "$BLOB_DIGEST" "$BLOB_SIZE" "$LAYER" "$LAYER_SZ" >"$E2E_DIR/manifest"
    curl_push_manifest keep/app v1 "$E2E_DIR/manifest" application/vnd.oci.image.manifest.v1+json
    KEEP=$BLOB_DIGEST
    find "$E2E_DIR/root/blobs" -type f | sort >"$E2E_DIR/blobs.before"

    craft bomb - | zstd -q -o "$E2E_DIR/bomb.tar.zst"
    log "bomb: $(size_of "$E2E_DIR/bomb.tar.zst") bytes of zstd"
    [ "$(size_of "$E2E_DIR/bomb.tar.zst")" -lt 65536 ] || fail "the bomb is not small"
    # A process that writes past RLIMIT_FSIZE is killed (SIGXFSZ): staging the 300 MiB would be.
    limited() { prlimit --fsize=$((32 << 20)) -- "$OCIREG" "$@" --root "$E2E_DIR/root"; }

    # from a file: the size its manifest declares is known before the blob is read
    rc=0
    limited import "$E2E_DIR/bomb.tar.zst" 2>"$E2E_DIR/err" || rc=$?
    cat "$E2E_DIR/err" >&2
    expect_eq "exit status of the bomb's import" "$rc" 1
    grep -q "import refused, nothing stored: .*its descriptor says 16" "$E2E_DIR/err" ||
        fail "unclear refusal: $(cat "$E2E_DIR/err")"
    no_new_files "bomb from a file"

    # from a pipe: read once, the blob comes before its manifest; --max-size stops it
    rc=0
    # shellcheck disable=SC2002 # a pipe, not the file itself
    cat "$E2E_DIR/bomb.tar.zst" | limited import - --max-size 16M 2>"$E2E_DIR/err" || rc=$?
    cat "$E2E_DIR/err" >&2
    expect_eq "exit status of the bomb's import from a pipe" "$rc" 1
    grep -q "import refused, nothing stored: .*--max-size" "$E2E_DIR/err" ||
        fail "unclear refusal: $(cat "$E2E_DIR/err")"
    no_new_files "bomb from a pipe"

    # a reserve the filesystem cannot keep: refused before anything is written
    craft many "$E2E_DIR/good.tar"
    zstd -q --rm "$E2E_DIR/good.tar" -o "$E2E_DIR/good.tar.zst"
    rc=0
    limited import "$E2E_DIR/good.tar.zst" --reserve 1000000T 2>"$E2E_DIR/err" || rc=$?
    cat "$E2E_DIR/err" >&2
    expect_eq "exit status of an import past the reserve" "$rc" 1
    grep -q "import refused, nothing stored: .*--reserve" "$E2E_DIR/err" ||
        fail "unclear refusal: $(cat "$E2E_DIR/err")"
    no_new_files "reserve"
    # bad flag values
    for bad in "--max-size 12X" "--max-size 0" "--reserve -1"; do
        rc=0
        # shellcheck disable=SC2086 # two words
        admin import "$E2E_DIR/good.tar.zst" $bad 2>/dev/null || rc=$?
        expect_eq "exit status of import $bad" "$rc" 2
    done

    # no index record either, and the registry still serves what it had
    expect_eq "repositories after the refused imports" \
        "$(admin usage --json | jq -c '[.repositories[].repository]')" '["keep/app"]'
    curl -sf "http://$REG/v2/keep/app/manifests/v1" | digest_of >"$E2E_DIR/got"
    expect_eq "keep/app:v1 after the refused imports" "$(cat "$E2E_DIR/got")" "$KEEP"
    expect_eq "keep/app's layer" "$(curl -sf "http://$REG/v2/keep/app/blobs/$LAYER" | digest_of)" \
        "$LAYER"
    # the good archive imports (through a pipe: one pass, declarations learnt as they come)
    # shellcheck disable=SC2002 # a pipe, not the file itself
    cat "$E2E_DIR/good.tar.zst" | limited import - --max-size 1M >/dev/null
    expect_eq "tags of many/r0" "$(curl -sf "http://$REG/v2/many/r0/tags/list" | jq -c '.tags | length')" 10
    # from a file, an entry that no descriptor declares is not staged at all: the image beside
    # it imports, under the file-size limit its 300 MiB would break
    craft stray - | zstd -q -o "$E2E_DIR/stray.tar.zst"
    limited import "$E2E_DIR/stray.tar.zst" >"$E2E_DIR/out" 2>&1 ||
        fail "import beside an undeclared entry: $(cat "$E2E_DIR/out")"
    expect_eq "tags of stray/app" "$(curl -sf "http://$REG/v2/stray/app/tags/list" | jq -c .tags)" \
        '["v1"]'
    expect_eq "upload files after the import" "$(find "$E2E_DIR/root/uploads" -type f | wc -l)" 0
    ;;

fds)
    craft many "$E2E_DIR/many.tar"
    zstd -q --rm "$E2E_DIR/many.tar" -o "$E2E_DIR/many.tar.zst"
    low() { prlimit --nofile=128 -- "$OCIREG" "$@"; }
    low import "$E2E_DIR/many.tar.zst" --root "$E2E_DIR/root" >"$E2E_DIR/out" 2>&1 ||
        fail "import of 600 blobs at ulimit -n 128: $(cat "$E2E_DIR/out")"
    grep -q "imported 30 images (30 manifests, 600 blobs" "$E2E_DIR/out" ||
        fail "import: $(cat "$E2E_DIR/out")"
    admin fsck >/dev/null || fail "fsck after import"
    # the whole registry out and into a fresh root, at the same limit
    low export -o "$E2E_DIR/all.tar.zst" --root "$E2E_DIR/root" >/dev/null
    low import "$E2E_DIR/all.tar.zst" --root "$E2E_DIR/copy" >"$E2E_DIR/out" 2>&1 ||
        fail "import of the export at ulimit -n 128: $(cat "$E2E_DIR/out")"
    usage() { "$OCIREG" usage --json --root "$1" | jq -c '[.repositories[] | [.repository, .stored_bytes]]'; }
    expect_eq "usage of the copy" "$(usage "$E2E_DIR/copy")" "$(usage "$E2E_DIR/root")"
    # too few descriptors to work at all: said so, never "input/output error" (from 4, the
    # least a process starts with, up to the first limit that works)
    said=0
    for n in $(seq 4 64); do
        rm -rf "$E2E_DIR/tiny"
        if prlimit --nofile="$n" -- "$OCIREG" import "$E2E_DIR/many.tar.zst" \
            --root "$E2E_DIR/tiny" >/dev/null 2>"$E2E_DIR/err"; then
            log "ulimit -n $n: imported"
            break
        fi
        log "ulimit -n $n: $(cat "$E2E_DIR/err")"
        if grep -qi "input/output error" "$E2E_DIR/err"; then
            fail "ulimit -n $n: the error hides that descriptors ran out: $(cat "$E2E_DIR/err")"
        fi
        if grep -qi "too many open files" "$E2E_DIR/err"; then
            said=$((said + 1))
        fi
        if [ -d "$E2E_DIR/tiny/uploads" ]; then
            expect_eq "ulimit -n $n: upload files left" \
                "$(find "$E2E_DIR/tiny/uploads" -type f | wc -l)" 0
        fi
    done
    [ "$said" -gt 0 ] || fail "no failure at a low descriptor limit said 'too many open files'"
    ;;
pax)
    craft pax "$E2E_DIR/pax.tar"
    # the writer did what this case is about: ustar size fields of 0 beside pax size records
    python3 - "$E2E_DIR/pax.tar" <<'PY' || fail "python's tarfile did not write pax sizes"
import sys
raw, pos, files = open(sys.argv[1], "rb").read(), 0, 0
while pos + 512 <= len(raw) and raw[pos:pos + 512] != bytes(512):
    h = raw[pos:pos + 512]
    field = h[124:136].rstrip(b"\0 ")
    size = int(field, 8) if field else 0
    if h[156:157] == b"x":
        assert b" size=" in raw[pos + 512:pos + 512 + size]
        nxt = pos + 512 + (size + 511) // 512 * 512
        real = int(raw[pos + 512:pos + 512 + size].split(b" size=")[1].split(b"\n")[0])
        assert int(raw[nxt + 124:nxt + 136].rstrip(b"\0 ") or b"0", 8) == 0
        pos, files = nxt + 512 + (real + 511) // 512 * 512, files + 1
    else:
        pos += 512 + (size + 511) // 512 * 512
assert files >= 5, files
PY
    zstd -q --rm "$E2E_DIR/pax.tar" -o "$E2E_DIR/pax.tar.zst"
    admin import "$E2E_DIR/pax.tar.zst" >"$E2E_DIR/out" || fail "import: $(cat "$E2E_DIR/out")"
    admin fsck >/dev/null || fail "fsck after import"
    start_server
    manifest=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REG/v2/pax/app/manifests/v1") || fail "no manifest pax/app:v1"
    for i in 0 1; do
        want=$(digest_of "$E2E_DIR/layer$i")
        expect_eq "layer $i digest" "$(jq -r ".layers[$i].digest" <<<"$manifest")" "$want"
        curl -sf "http://$REG/v2/pax/app/blobs/$want" -o "$E2E_DIR/got$i" || fail "GET layer $i"
        cmp -s "$E2E_DIR/got$i" "$E2E_DIR/layer$i" || fail "layer $i differs from what was made"
    done
    ;;
*) fail "unknown case $CASE" ;;
esac
finish
